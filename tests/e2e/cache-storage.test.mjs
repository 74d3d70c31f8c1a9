// Cache Storage (issue #11) through a crash: the page's renderer is killed
// (CDP Page.crash) while a run deletes entries and their responses, at a
// different moment each round. Afterwards no live response is missing, and
// after the store is opened again and one run the cache holds exactly the
// entries the policy keeps, every one with its response. And a response
// cached with a Vary header goes with its entry, and the key–value scenario
// of the other stores (references, shared blobs, TTLs) runs on it. And each
// cached response is one entry however its URL is written; a response cached
// again while its old entry's deletion waits stays; the Workbox plugin opens
// its store again after a deletion from elsewhere.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withBrowser, crashPage, stallAfter } from "../shared/chromium.mjs";
import { checkScenario } from "../shared/kv-scenario.mjs";

const env = withBrowser();
const TOTAL = 400;
const KEEP = 150;

/** In the page: the URLs, oldest first, and the Sweeper over the cache `name`. */
const setUp = async ([name, total, keep, fill, start]) => {
  const kv = await import("/pkg/index.js");
  const urls = Array.from({ length: total }, (_, i) => `${location.origin}/crash/${name}/${String(i).padStart(4, "0")}`);
  let now = start;
  if (fill) {
    const cache = await caches.open(name);
    await Promise.all(urls.map((u) => cache.put(u, new Response(`body of ${u}`))));
  }
  const store = await kv.openCacheStorage(name);
  const sweeper = new kv.Sweeper(store, { policy: { maxEntries: keep }, batchSize: 10, clock: () => now });
  if (fill) {
    // One entry at a time, each a millisecond newer: the newest `keep` are live.
    for (const u of urls) {
      now += 1;
      await kv.track(sweeper, u, new Response(`body of ${u}`));
    }
  }
  now += 1;
  window.state = { kv, urls, store, sweeper };
};

const cachedUrls = async (name) => (await (await caches.open(name)).keys()).map((r) => r.url).sort();

/** `fn` run in a fresh page of its own (a context closed after, whatever happens). */
async function inPage(fn) {
  await env.ready;
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(env.server.url);
    return await page.evaluate(fn);
  } finally {
    await context.close();
  }
}

// The crash comes `delay` ms after the run has deleted 20 entries; with
// `stall`, once the run has deleted that many responses the rest of its
// cache.delete calls never return, and the crash finds batches committed
// whose responses are not gone.
for (const [round, delay, stall] of [[1, 0], [2, 100], [3, 0, 25]]) {
  const when = stall ? `while the responses of committed batches are still being deleted` : `${delay} ms after a run deleted 20 entries`;
  test(`a crash ${when} loses no live response, and the next open and run finish the job (round ${round})`, { timeout: 90_000 }, async () => {
    await env.ready;
    const name = `crash-${round}`;
    const context = await env.browser.newContext();
    let page = await context.newPage();
    await page.goto(env.server.url);
    await page.evaluate(setUp, [name, TOTAL, KEEP, true, 1_000_000]);
    const live = await page.evaluate((keep) => window.state.urls.slice(-keep), KEEP);
    assert.equal((await page.evaluate(cachedUrls, name)).length, TOTAL);

    // A slow run (each batch waits 10 ms), killed part of the way through.
    if (stall) await stallAfter(page, "Cache", "delete", stall);
    await page.evaluate(() => {
      window.progress = [];
      window.state.sweeper.run({ onProgress: (p) => (window.progress.push(p.deleted), new Promise((r) => setTimeout(r, 10))) }).catch(() => {});
    });
    await page.waitForFunction((n) => window.progress.at(-1) >= n, stall ? stall + 5 : 20);
    // Some responses gone already, so that the crash finds the run under way.
    while ((await page.evaluate(cachedUrls, name)).length === TOTAL) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, delay));
    await crashPage(context, page);

    page = await context.newPage();
    await page.goto(env.server.url);
    const afterCrash = await page.evaluate(cachedUrls, name);
    for (const u of live) assert.ok(afterCrash.includes(u), `live response ${u} was deleted`);
    assert.ok(afterCrash.length < TOTAL, "the run had deleted responses before the crash");
    assert.ok(afterCrash.length > KEEP, "the crash came before the run was done");
    if (stall) assert.equal(afterCrash.length, TOTAL - stall, "the crash came with responses of deleted entries left");

    // Reopened (which finishes deletions a crash interrupted) and run to the
    // end at once: the crashed run held the store's Web Lock, which the
    // browser let go with it, not a lease that would hold every run back
    // until it lapsed.
    await page.evaluate(setUp, [name, TOTAL, KEEP, false, 1_000_000 + TOTAL + 1]);
    const report = await page.evaluate(() => window.state.sweeper.run().then((r) => ({ done: r.done, errors: r.errors.length })));
    assert.deepEqual(report, { done: true, errors: 0 });
    const entries = await page.evaluate(async () => {
      const out = [];
      for await (const k of window.state.sweeper.keys()) out.push(k);
      return out.sort();
    });
    assert.deepEqual(entries, [...live].sort(), "the entries are the newest, as maxEntries keeps");
    assert.deepEqual(await page.evaluate(cachedUrls, name), [...live].sort(), "each kept entry has its response, and no other response is left");
    const pending = await page.evaluate(async (db) => {
      const { recordNames } = await import("/tests/shared/store-names.js");
      return (await recordNames(db)).filter((n) => n.startsWith("kvsweep/d/"));
    }, `kvsweep-cache:${name}`);
    assert.deepEqual(pending, [], "the run left no record of pending deletions");
    await page.evaluate(async (n) => {
      window.state.sweeper.close();
      window.state.store.close();
      await window.state.kv.deleteCacheStorage(n);
    }, name);
    await context.close();
  });
}

test("a response cached with a Vary header goes with its entry", { timeout: 60_000 }, async () => {
  const left = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const cache = await caches.open("vary");
    const [old, fresh] = [`${location.origin}/vary/old`, `${location.origin}/vary/new`];
    let now = 1_000;
    const store = await kv.openCacheStorage("vary");
    const sweeper = new kv.Sweeper(store, { policy: { maxEntries: 1 }, clock: () => now });
    for (const url of [old, fresh]) {
      // As a fetch with an Accept header caches it: cache.delete(url) alone would not match it.
      const response = new Response(`body of ${url}`, { headers: { vary: "accept" } });
      await cache.put(new Request(url, { headers: { accept: "text/x-kvsweep" } }), response.clone());
      now += 1;
      await kv.track(sweeper, url, response);
    }
    const report = await sweeper.run();
    const urls = (await cache.keys()).map((r) => new URL(r.url).pathname);
    sweeper.close();
    store.close();
    await kv.deleteCacheStorage("vary");
    return { deleted: report.deleted, urls };
  });
  assert.deepEqual(left.urls, ["/vary/new"]);
});

test("the key–value scenario on a Cache Storage store", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const { kvScenario } = await import("/tests/shared/kv-scenario.mjs");
    const { recordNames } = await import("/tests/shared/store-names.js");
    const store = await kv.openCacheStorage("scenario");
    // The scenario's keys are names, not URLs, which a Cache Storage store's
    // put refuses (its entries are responses): its Sweeper writes them with
    // the module's own put, past the package's check, to test the store's
    // records and runs like every other backend's.
    const raw = Object.getPrototypeOf(kv.Sweeper.prototype);
    class Sweeper extends kv.Sweeper {
      put(...args) {
        return raw.put.apply(this, args);
      }
      putMany(...args) {
        return raw.putMany.apply(this, args);
      }
    }
    const { sweeper, ...out } = await kvScenario({ ...kv, Sweeper }, store, () => recordNames("kvsweep-cache:scenario"));
    out.kind = store.kind;
    sweeper.close();
    store.close();
    await kv.deleteCacheStorage("scenario");
    return out;
  });
  assert.equal(out.kind, "cache-storage");
  checkScenario(out, assert);
});

test("one entry per cached response: a URL's fragment, or its relative form, names the same entry, and track checks what it is given", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    let now = 1_000;
    // Cache Storage ignores the fragment and resolves a relative URL: each
    // pair below is one response, which must outlive the run.
    const runs = {};
    for (const [name, first, second] of [
      ["fragment", "/forms/a#one", "/forms/a#two"],
      ["relative", "/forms/b", new Request("/forms/b")],
    ]) {
      const cache = await caches.open(`forms-${name}`);
      const store = await kv.openCacheStorage(`forms-${name}`);
      const sweeper = new kv.Sweeper(store, { policy: { maxEntries: 1 }, clock: () => now });
      for (const request of [first, second]) {
        await cache.put(request, new Response(`body of ${name}`));
        now += 1;
        await kv.track(sweeper, request, new Response(`body of ${name}`));
      }
      const report = await sweeper.run();
      const keys = [];
      for await (const k of sweeper.keys()) keys.push(k);
      runs[name] = { deleted: report.deleted, keys, cached: (await cache.keys()).map((r) => new URL(r.url).pathname) };
      sweeper.close();
      store.close();
      await kv.deleteCacheStorage(`forms-${name}`);
    }
    {
      // An entry an earlier version keyed by the relative URL, and the one
      // track keys the same response by now: the older goes, the response stays.
      const cache = await caches.open("forms-legacy");
      const store = await kv.openCacheStorage("forms-legacy");
      const sweeper = new kv.Sweeper(store, { policy: { maxEntries: 1 }, clock: () => now });
      await cache.put("/forms/c", new Response("c"));
      // As an earlier version wrote it (put now refuses a key track would not make).
      await Object.getPrototypeOf(kv.Sweeper.prototype).put.call(sweeper, "/forms/c", null, { size: 1 });
      now += 1;
      await kv.track(sweeper, "/forms/c", new Response("c"));
      const report = await sweeper.run();
      runs.legacy = { deleted: report.deleted, cached: (await cache.keys()).map((r) => new URL(r.url).pathname) };
      sweeper.close();
      store.close();
      await kv.deleteCacheStorage("forms-legacy");
    }
    {
      // With ignoreSearch one cache.delete takes every query of a URL: the
      // entry stands for all of them, and goes with all of them.
      const cache = await caches.open("forms-search");
      const store = await kv.openCacheStorage("forms-search", { matchOptions: { ignoreSearch: true } });
      const sweeper = new kv.Sweeper(store, { policy: { maxEntries: 1 }, clock: () => now });
      for (const url of ["/forms/s?v=1", "/forms/s?v=2", "/forms/t"]) {
        await cache.put(url, new Response(url));
        now += 1;
        await kv.track(sweeper, url, new Response(url));
        if (url === "/forms/s?v=2") {
          const report = await sweeper.run();
          runs.searchKept = { deleted: report.deleted, cached: (await cache.keys()).map((r) => new URL(r.url).pathname + new URL(r.url).search).sort() };
        }
      }
      const report = await sweeper.run();
      const keys = [];
      for await (const k of sweeper.keys()) keys.push(new URL(k).pathname + new URL(k).search);
      runs.searchGone = { deleted: report.deleted, keys, cached: (await cache.keys()).map((r) => new URL(r.url).pathname + new URL(r.url).search) };
      sweeper.close();
      store.close();
      await kv.deleteCacheStorage("forms-search");
    }
    const store = await kv.openCacheStorage("forms");
    const sweeper = new kv.Sweeper(store, { clock: () => now });
    const message = async (f) => {
      try {
        await f();
        return "no error";
      } catch (e) {
        return e.message;
      }
    };
    const used = new Response("read already");
    await used.text();
    const bad = {
      noSweeper: await message(() => kv.track(store, "/forms/c", new Response("x"))),
      noUrl: await message(() => kv.track(sweeper, "", new Response("x"))),
      notResponse: await message(() => kv.track(sweeper, "/forms/c", { headers: {} })),
      usedBody: await message(() => kv.track(sweeper, "/forms/c", used)),
      namespace: await message(() => kv.track(sweeper, "/forms/c", new Response("x"), { namespace: "n" })),
      ttl: await message(() => kv.track(sweeper, "/forms/c", new Response("x"), { ttlMs: -5 })),
      ftp: await message(() => kv.track(sweeper, "ftp://x/y", new Response("x"))),
      memory: await message(() => kv.track(new kv.Sweeper(kv.memoryStore()), "/forms/c", new Response("x"))),
    };
    // A content-length in hexadecimal is not a size: the body is measured.
    await kv.track(sweeper, "/forms/hex", new Response("1234567890", { headers: { "content-length": "0x10" } }));
    await kv.track(sweeper, "/forms/given", new Response("x"), { size: 99 });
    const sizes = {};
    for await (const [k] of sweeper.entries()) sizes[new URL(k).pathname] = (await sweeper.detail(k)).size;
    sweeper.close();
    store.close();
    await kv.deleteCacheStorage("forms");
    return { runs, bad, sizes, origin: location.origin };
  });
  for (const [name, path] of [["fragment", "/forms/a"], ["relative", "/forms/b"]]) {
    const run = out.runs[name];
    assert.deepEqual(run.deleted, {}, `${name}: the one response is one live entry`);
    assert.deepEqual(run.keys, [`${out.origin}${path}`], `${name}: its key is the absolute URL without its fragment`);
    assert.ok(run.cached.includes(path), `${name}: its response stays`);
  }
  assert.match(out.bad.noSweeper, /^kvsweep: track\(sweeper, request, response\): sweeper must be a Sweeper, got a KvStore$/);
  assert.match(out.bad.noUrl, /request must be a Request, a URL or a non-empty URL string, got ""/);
  assert.match(out.bad.notResponse, /response must be a Response \(or null\), got an object/);
  assert.match(out.bad.usedBody, /response's body is already read, and its headers give no content-length/);
  assert.match(out.bad.namespace, /options.namespace is not for Cache Storage entries/);
  assert.match(out.bad.ttl, /^kvsweep: track options\.ttlMs must not be negative, got -5$/, "put's refusal, named by the call made");
  assert.match(out.bad.ftp, /^kvsweep: track\(sweeper, request, response\): request is "ftp:\/\/x\/y", not an http or https URL: Cache Storage holds no response for it$/);
  assert.match(out.bad.memory, /^kvsweep: track\(sweeper, request, response\): sweeper must be a Sweeper of an openCacheStorage\(\) store, not of a memory store$/);
  assert.deepEqual(out.runs.searchKept, { deleted: {}, cached: ["/forms/s?v=1", "/forms/s?v=2"] }, "two queries of one URL are one entry under ignoreSearch");
  assert.equal(out.runs.searchGone.deleted.maxEntries?.count, 1);
  assert.deepEqual(out.runs.searchGone.keys, ["/forms/t"]);
  assert.deepEqual(out.runs.searchGone.cached, ["/forms/t"], "the entry's responses went together, the live one stayed");
  assert.equal(out.runs.legacy.deleted.maxEntries?.count, 1, "the older entry goes");
  assert.deepEqual(out.runs.legacy.cached, ["/forms/c"], "the response the newer entry stands for stays");
  assert.equal(out.sizes["/forms/hex"], 10);
  assert.equal(out.sizes["/forms/given"], 99);
});

test("a response cached and tracked again while its old entry's deletion waits its turn stays", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const cache = await caches.open("again");
    // One cache.delete at a time: the run's deletions wait in line long
    // after the batch that deleted their entries committed.
    const store = await kv.openCacheStorage("again", { concurrency: 1 });
    let now = 1_000;
    const sweeper = new kv.Sweeper(store, { policy: { maxAgeMs: 1_000 }, clock: () => now });
    const urls = Array.from({ length: 200 }, (_, i) => `${location.origin}/again/${String(i).padStart(3, "0")}`);
    for (const u of urls) {
      await cache.put(u, new Response(`old ${u}`));
      await kv.track(sweeper, u, new Response(`old ${u}`));
    }
    now += 5_000;
    const last = urls[urls.length - 1];
    let again = false;
    const report = await sweeper.run({
      async onProgress(p) {
        // The app fetches the last URL again once its entry is deleted.
        if (!again && p.deleted > 0) {
          again = true;
          await cache.put(last, new Response("fresh"));
          await kv.track(sweeper, last, new Response("fresh"));
        }
      },
    });
    const cached = await cache.match(last);
    const out = { again, deleted: report.deleted.maxAge?.count, live: (await sweeper.detail(last)) !== undefined, body: cached ? await cached.text() : null, left: (await cache.keys()).length };
    sweeper.close();
    store.close();
    await kv.deleteCacheStorage("again");
    return out;
  });
  assert.equal(out.again, true);
  assert.equal(out.deleted, 200);
  assert.equal(out.live, true, "the entry made again is live");
  assert.equal(out.body, "fresh", "and its response stays");
  assert.equal(out.left, 1);
});

test("delete, clear, deleteNamespace and prune resolve once their responses are gone, as a run does: a URL cached and tracked right after keeps its new response", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const cache = await caches.open("settled");
    // One cache.delete at a time: responses go long after their entries' commit.
    const store = await kv.openCacheStorage("settled", { concurrency: 1 });
    let now = 1_000;
    const sweeper = new kv.Sweeper(store, { clock: () => now });
    const urls = Array.from({ length: 60 }, (_, i) => `${location.origin}/settled/${String(i).padStart(3, "0")}`);
    const fill = async () => {
      for (const u of urls) {
        await cache.put(u, new Response(`old ${u}`));
        await kv.track(sweeper, u, new Response(`old ${u}`));
      }
    };
    const left = async () => (await cache.keys()).length;
    const out = {};
    await fill();
    await sweeper.delete(urls[0]);
    out.delete = await left();
    await sweeper.clear("");
    out.clear = await left();
    await fill();
    now += 10_000;
    await sweeper.prune({ olderThanMs: 1_000 });
    out.prune = await left();
    // Cached and tracked again at once: the new response stays.
    await fill();
    await sweeper.clear("");
    await cache.put(urls[5], new Response("fresh"));
    await kv.track(sweeper, urls[5], new Response("fresh"));
    await new Promise((r) => setTimeout(r, 200));
    const fresh = await cache.match(urls[5]);
    out.fresh = fresh ? await fresh.text() : null;
    await sweeper.close();
    store.close();
    await kv.deleteCacheStorage("settled");
    return out;
  });
  assert.deepEqual(out, { delete: 59, clear: 0, prune: 0, fresh: "fresh" });
});

test("expirationPlugin opens its store again after its cache and database were deleted from elsewhere", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const plugin = kv.expirationPlugin({ maxEntries: 2 });
    const cacheName = "reopened";
    // As a Workbox strategy calls it: cache.put, then cacheDidUpdate.
    const cacheOne = async (i) => {
      const request = new Request(`${location.origin}/reopened/${i}`);
      const cache = await caches.open(cacheName);
      await cache.put(request, new Response(`body ${i}`));
      await plugin.cacheDidUpdate({ cacheName, request, newResponse: new Response(`body ${i}`) });
      await new Promise((r) => setTimeout(r, 5));
    };
    for (let i = 0; i < 3; i++) await cacheOne(i);
    const before = (await (await caches.open(cacheName)).keys()).length;
    await kv.deleteCacheStorage(cacheName);
    const errors = [];
    for (let i = 3; i < 7; i++) await cacheOne(i).catch((e) => errors.push(e.message));
    const after = (await (await caches.open(cacheName)).keys()).map((r) => new URL(r.url).pathname);
    await plugin.deleteCacheAndMetadata();
    return { before, after, errors };
  });
  assert.equal(out.before, 2);
  assert.deepEqual(out.errors, []);
  assert.deepEqual(out.after, ["/reopened/5", "/reopened/6"]);
});

test("a Cache Storage store refuses puts in a namespace, or under a key no response can have; a pinned URL's plugin serves it however old", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const store = await kv.openCacheStorage("refusals");
    const sweeper = new kv.Sweeper(store, { policy: { namespaces: { a: { maxAgeMs: 1 } } } });
    const url = `${location.origin}/shared`;
    const message = (p) => p.then(() => "accepted", (e) => `${e.name}: ${e.message}`);
    const got = {
      namespaced: await message(sweeper.put(url, null, { namespace: "a", size: 1 })),
      namespacedMany: await message(sweeper.putMany([{ key: url, value: null }, { key: `${url}2`, value: null, namespace: "b", pinned: true }])),
      notUrl: await message(sweeper.put("http://[bad", null, { size: 1 })),
      ftp: await message(sweeper.putMany([{ key: "ftp://example.com/x", value: null }])),
      plain: await message(sweeper.put(url, null, { namespace: "", size: 1 })),
      relative: await message(sweeper.put("/relative", null, { size: 1 })),
      fragment: await message(sweeper.put(`${url}#top`, null, { size: 1 })),
      // A getter read once: what was checked is what is written.
      twoFaced: await message(
        sweeper.put(`${url}3`, null, {
          size: 1,
          get namespace() {
            this.reads = (this.reads ?? 0) + 1;
            return this.reads === 1 ? "" : "other";
          },
        }),
      ),
      throwing: await message(
        (() => {
          try {
            return sweeper.put(`${url}4`, null, {
              get namespace() {
                throw new Error("from the getter");
              },
            });
          } catch (e) {
            return Promise.resolve(`threw at once: ${e.message}`);
          }
        })(),
      ),
    };
    got.origin = location.origin;
    for (const [name, lockName] of [["lockName", "mine"], ["lockNameType", 5]]) {
      try {
        new kv.Sweeper(store, { schedule: { lockName } }).close();
        got[name] = "accepted";
      } catch (e) {
        got[name] = `${e.name}: ${e.message}`;
      }
    }
    try {
      new kv.Sweeper(store, { schedule: { get lockName() { throw 1; } } }).close();
      got.lockNameThrows = "accepted";
    } catch (e) {
      got.lockNameThrows = `${e.name}: ${e.message}`;
    }
    // Options that are not a plain object go as they are, refused by the module.
    got.mapOptions = await message(sweeper.put(`${url}5`, null, new Map([["pinned", true]])));
    const keys = [];
    for await (const k of sweeper.keys()) keys.push(k);
    got.keys = keys;
    sweeper.close();
    store.close();
    await kv.deleteCacheStorage("refusals");

    // pinned(url): never expired, by the Date header's age either.
    const plugin = kv.expirationPlugin({ maxAgeSeconds: 60, pinned: (u) => u.endsWith("/shell") });
    const cache = await caches.open("pinned-age");
    const hourOld = new Date(Date.now() - 3_600_000).toUTCString();
    got.used = {};
    for (const path of ["/shell", "/other"]) {
      const request = new Request(`${location.origin}${path}`);
      const response = new Response("x", { headers: { date: hourOld } });
      await cache.put(request, response.clone());
      await plugin.cacheDidUpdate({ cacheName: "pinned-age", request, newResponse: response });
      const cachedResponse = await cache.match(request);
      got.used[path] = (await plugin.cachedResponseWillBeUsed({ cacheName: "pinned-age", request, cachedResponse })) !== null;
    }
    await plugin.deleteCacheAndMetadata();
    return got;
  });
  const refused = (m, name, what) => assert.match(m, new RegExp(`^TypeError: kvsweep: ${name} is ${what}`), m);
  refused(out.namespaced, "put\\(key, value, options\\): options\\.namespace", '"a", but a Cache Storage store has one namespace');
  refused(out.namespacedMany, "putMany\\(items\\): items\\[1\\]\\.namespace", '"b"');
  refused(out.notUrl, "put\\(key, value, options\\): key", '"http://\\[bad", not an http or https URL');
  refused(out.ftp, "putMany\\(items\\): items\\[0\\]\\.key", '"ftp://example.com/x"');
  assert.equal(out.plain, "accepted");
  refused(out.relative, "put\\(key, value, options\\): key", `"/relative"; this response's entry is keyed "${out.origin}/relative"`);
  refused(out.fragment, "put\\(key, value, options\\): key", `"${out.origin}/shared#top"; this response's entry is keyed "${out.origin}/shared"`);
  assert.equal(out.twoFaced, "accepted");
  assert.match(out.lockNameType, /schedule\.lockName must be a string/);
  assert.equal(out.lockNameThrows, "Error: kvsweep: new Sweeper(store, options): options.schedule.lockName threw 1 when read (a getter or a Proxy)");
  assert.match(out.mapOptions, /^Error: kvsweep: put options must be .*got a Map/);
  assert.equal(out.lockName, `Error: kvsweep: new Sweeper(store, options): options.schedule.lockName is not for a cache-storage store, whose runs take its own Web Lock "kvsweep:kvsweep-cache:refusals"`);
  assert.match(out.throwing, /^Error: from the getter$/, "a getter that throws rejects the put's promise");
  assert.deepEqual(out.keys, [`${out.origin}/shared`, `${out.origin}/shared3`], "nothing of a refused putMany was written, nor in another namespace");
  assert.deepEqual(out.used, { "/shell": true, "/other": false });
});

test("expirationPlugin takes ExpirationPlugin's options as it does (any truthy purgeOnQuotaError, seconds in fractions), checks matchOptions and its hooks' arguments by name; track takes URL objects", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const message = async (fn) => {
      try {
        await fn();
        return "accepted";
      } catch (e) {
        return `${e.name}: ${e.message}`;
      }
    };
    const got = {};
    got.huge = await message(() => kv.expirationPlugin({ maxAgeSeconds: 1e13 }));
    got.zero = await message(() => kv.expirationPlugin({ maxAgeSeconds: 0 }));
    got.half = await message(() => kv.expirationPlugin({ maxAgeSeconds: 0.5 }));
    got.matchType = await message(() => kv.expirationPlugin({ maxEntries: 1, matchOptions: "x" }));
    got.matchTypo = await message(() => kv.expirationPlugin({ maxEntries: 1, matchOptions: { ignoreSerch: true } }));
    got.matchValue = await message(() => kv.openCacheStorage("checks", { matchOptions: { ignoreSearch: 1 } }));
    let registered = 0;
    got.truthy = await message(() => kv.expirationPlugin({ maxEntries: 1, purgeOnQuotaError: "yes", registerQuotaErrorCallback: () => registered++ }));
    got.registered = registered;
    const plugin = kv.expirationPlugin({ maxEntries: 1 });
    got.hookEmpty = await message(() => plugin.cacheDidUpdate({}));
    got.hookUsed = await message(() => plugin.cachedResponseWillBeUsed({ cacheName: "checks", request: "/a" }));
    const store = await kv.openCacheStorage("checks");
    const sweeper = new kv.Sweeper(store);
    got.url = await message(() => kv.track(sweeper, new URL("/by-url", location.href), null));
    got.size = await message(() => kv.track(sweeper, "/sized", null, { size: -1 }));
    got.keys = [];
    for await (const k of sweeper.keys()) got.keys.push(new URL(k).pathname);
    sweeper.close();
    store.close();
    await kv.deleteCacheStorage("checks");
    return got;
  });
  assert.match(out.huge, /^TypeError: kvsweep: expirationPlugin\(options\): options\.maxAgeSeconds must be a number of seconds above 0, at most 9007199254740\.99, got 10000000000000$/);
  assert.match(out.zero, /options\.maxAgeSeconds must be a number of seconds above 0/);
  assert.equal(out.half, "accepted");
  assert.match(out.matchType, /^TypeError: kvsweep: expirationPlugin\(options\): options\.matchOptions must be an object, got "x"$/);
  assert.match(out.matchTypo, /options\.matchOptions has an unknown option "ignoreSerch"; the options are ignoreSearch, ignoreMethod, ignoreVary$/);
  assert.match(out.matchValue, /^TypeError: kvsweep: openCacheStorage\(name, options\): options\.matchOptions\.ignoreSearch must be true or false, got 1$/);
  assert.equal(out.truthy, "accepted");
  assert.equal(out.registered, 1, "a truthy purgeOnQuotaError registers the purge, as in ExpirationPlugin");
  assert.match(out.hookEmpty, /^TypeError: kvsweep: expirationPlugin: cacheDidUpdate\(\{ cacheName, request \}\): Workbox calls it with a cache name and a Request, got undefined and undefined$/);
  assert.match(out.hookUsed, /cachedResponseWillBeUsed\(\{ cacheName, request \}\): .* got "checks" and "\/a"$/);
  assert.equal(out.url, "accepted");
  assert.match(out.size, /^TypeError: kvsweep: track\(sweeper, request, response, options\): options\.size must be a whole number of bytes, 0 or more, got -1$/);
  assert.deepEqual(out.keys, ["/by-url"]);
});

test("a hook begun while deleteCacheAndMetadata() goes waits for it, then tracks its response in a fresh database", { timeout: 60_000 }, async () => {
  const { rows, burst } = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const rows = [];
    for (const ticks of [0, 5, 50, 200]) {
      const name = `race-${ticks}`;
      const plugin = kv.expirationPlugin({ maxEntries: 3 });
      const cache = await caches.open(name);
      const old = `${location.origin}/race/old`;
      await cache.put(old, new Response("old"));
      await plugin.cacheDidUpdate({ cacheName: name, request: new Request(old), newResponse: new Response("old") });
      const deleted = plugin.deleteCacheAndMetadata().then(() => "ok", (e) => e.message);
      for (let i = 0; i < ticks; i++) await null;
      const url = `${location.origin}/race/new`;
      const hook = await plugin.cacheDidUpdate({ cacheName: name, request: new Request(url), newResponse: new Response("new") }).then(() => "ok", (e) => e.message);
      const store = await kv.openCacheStorage(name);
      const sweeper = new kv.Sweeper(store);
      const keys = [];
      for await (const k of sweeper.keys()) keys.push(new URL(k).pathname);
      sweeper.close();
      store.close();
      rows.push({ ticks, deleted: await deleted, hook, keys });
      await kv.deleteCacheStorage(name);
    }
    // A second deletion begun while a hook waits for the first (quota errors
    // come in bursts with purgeOnQuotaError): all three end.
    const plugin = kv.expirationPlugin({ maxEntries: 3 });
    const request = new Request(`${location.origin}/race/burst`);
    await plugin.cacheDidUpdate({ cacheName: "race-burst", request, newResponse: new Response("b") });
    const first = plugin.deleteCacheAndMetadata();
    const hook = plugin.cacheDidUpdate({ cacheName: "race-burst", request, newResponse: new Response("b") });
    const second = plugin.deleteCacheAndMetadata();
    const timeout = new Promise((r) => setTimeout(() => r("hung"), 10_000));
    const burst = await Promise.race([Promise.all([first, hook, second]).then(() => "ended"), timeout]);
    await plugin.deleteCacheAndMetadata();
    return { rows, burst };
  });
  assert.equal(burst, "ended");
  for (const row of rows) assert.deepEqual(row, { ticks: row.ticks, deleted: "ok", hook: "ok", keys: ["/race/new"] });
});

test("a cache hit refreshes its entry without reading the response's body again (its size is the one measured when cached)", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const plugin = kv.expirationPlugin({ maxEntries: 10 });
    const cache = await caches.open("hits");
    const request = new Request(`${location.origin}/hits/bundle.js`);
    // As a compressed response comes back: its Content-Length is not its body's.
    const response = () => new Response("x".repeat(5000), { headers: { "content-encoding": "gzip" } });
    await cache.put(request, response());
    await plugin.cacheDidUpdate({ cacheName: "hits", request, newResponse: response() });
    let reads = 0;
    const arrayBuffer = Response.prototype.arrayBuffer;
    Response.prototype.arrayBuffer = function (...args) {
      reads++;
      return arrayBuffer.apply(this, args);
    };
    const waits = [];
    try {
      for (let i = 0; i < 3; i++) {
        const cachedResponse = await cache.match(request);
        await plugin.cachedResponseWillBeUsed({ cacheName: "hits", request, cachedResponse, event: { waitUntil: (p) => waits.push(p) } });
      }
      await Promise.all(waits);
    } finally {
      Response.prototype.arrayBuffer = arrayBuffer;
    }
    const sweeper = new kv.Sweeper(await kv.openCacheStorage("hits"));
    const size = (await sweeper.detail(request.url)).size;
    // Replaced behind the plugin's back by one whose headers give its size:
    // a hit takes that size.
    await cache.put(request, new Response("y".repeat(100), { headers: { "content-length": "100" } }));
    const after = [];
    await plugin.cachedResponseWillBeUsed({ cacheName: "hits", request, cachedResponse: await cache.match(request), event: { waitUntil: (p) => after.push(p) } });
    await Promise.all(after);
    const resized = (await sweeper.detail(request.url)).size;
    sweeper.close();
    await plugin.deleteCacheAndMetadata();
    return { reads, size, waits: waits.length, resized };
  });
  assert.deepEqual(out, { reads: 0, size: 5000, waits: 3, resized: 100 });
});

test("a pin a page gave an entry with track() stays through the plugin's hooks, and keeps it served however old", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const plugin = kv.expirationPlugin({ maxEntries: 1, maxAgeSeconds: 60 });
    const name = "page-pins";
    const cache = await caches.open(name);
    const old = new Date(Date.now() - 3600e3).toUTCString();
    const response = (body) => new Response(body, { headers: { date: old, "content-length": String(body.length) } });
    const offline = new Request(`${location.origin}/pins/article`);
    await cache.put(offline, response("kept for offline"));
    // The page's "keep offline" button.
    const page = new kv.Sweeper(await kv.openCacheStorage(name));
    await kv.track(page, offline, response("kept for offline"), { pinned: true, group: "saved" });
    page.close();
    // The strategy fetches it again, then serves it from the cache, stale by
    // its Date; then caches another URL, which maxEntries: 1 expires.
    await plugin.cacheDidUpdate({ cacheName: name, request: offline, newResponse: response("kept for offline") });
    const waits = [];
    const served = await plugin.cachedResponseWillBeUsed({ cacheName: name, request: offline, cachedResponse: await cache.match(offline), event: { waitUntil: (p) => waits.push(p) } });
    await Promise.all(waits);
    const other = new Request(`${location.origin}/pins/other`);
    await cache.put(other, response("other"));
    await plugin.cacheDidUpdate({ cacheName: name, request: other, newResponse: response("other") });
    const reader = new kv.Sweeper(await kv.openCacheStorage(name));
    const entry = await reader.detail(offline.url);
    reader.close();
    const left = (await cache.keys()).map((r) => new URL(r.url).pathname);
    await plugin.deleteCacheAndMetadata();
    return { served: served ? await served.text() : null, pinned: entry?.pinned, group: entry?.group, left };
  });
  assert.deepEqual(out, { served: "kept for offline", pinned: true, group: "saved", left: ["/pins/article"] });
});

test("with a pinned option, the plugin's pinned(url) decides: a pin it gave is taken back when it stops saying so", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const saved = new Set();
    const plugin = kv.expirationPlugin({ maxEntries: 1, pinned: (url) => saved.has(url) });
    const name = "plugin-pins";
    const cache = await caches.open(name);
    const response = (body) => new Response(body, { headers: { "content-length": String(body.length) } });
    const hit = async (request) => {
      const waits = [];
      await plugin.cachedResponseWillBeUsed({ cacheName: name, request, cachedResponse: await cache.match(request), event: { waitUntil: (p) => waits.push(p) } });
      await Promise.all(waits);
    };
    const a = new Request(`${location.origin}/saved/a`);
    saved.add(a.url);
    await cache.put(a, response("a"));
    await plugin.cacheDidUpdate({ cacheName: name, request: a, newResponse: response("a") });
    await hit(a);
    const reader = new kv.Sweeper(await kv.openCacheStorage(name));
    const pinnedAtFirst = (await reader.detail(a.url))?.pinned;
    saved.delete(a.url);
    await hit(a);
    const pinnedAfter = (await reader.detail(a.url))?.pinned;
    reader.close();
    // Unpinned, a then goes as the least recently used when b comes.
    const b = new Request(`${location.origin}/saved/b`);
    await cache.put(b, response("b"));
    await plugin.cacheDidUpdate({ cacheName: name, request: b, newResponse: response("b") });
    const left = (await cache.keys()).map((r) => new URL(r.url).pathname);
    await plugin.deleteCacheAndMetadata();
    return { pinnedAtFirst, pinnedAfter, left };
  });
  assert.deepEqual(out, { pinnedAtFirst: true, pinnedAfter: false, left: ["/saved/b"] });
});

test("after the app deletes the cache itself (caches.delete), runs still delete the responses cached since", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const name = "deleted-by-app";
    const store = await kv.openCacheStorage(name);
    const sweeper = new kv.Sweeper(store, { policy: { maxEntries: 1 } });
    const add = async (path) => {
      const request = new Request(`${location.origin}/gone/${path}`);
      const response = new Response(path, { headers: { "content-length": String(path.length) } });
      await (await caches.open(name)).put(request, response.clone());
      await kv.track(sweeper, request, response);
    };
    await add("a");
    // "Clear offline data": the app deletes the cache; its entry stays.
    await caches.delete(name);
    for (const path of ["b", "c", "d"]) await add(path);
    const report = await sweeper.run();
    const left = (await (await caches.open(name)).keys()).map((r) => new URL(r.url).pathname);
    const keys = [];
    for await (const k of sweeper.keys()) keys.push(new URL(k).pathname);
    sweeper.close();
    store.close();
    // A cache deleted while entries wait: the run deletes their records and
    // makes no cache again.
    const store2 = await kv.openCacheStorage(name);
    const again = new kv.Sweeper(store2, { policy: { maxEntries: 0 + 1 } });
    await caches.delete(name);
    await kv.track(again, new Request(`${location.origin}/gone/e`), new Response("e"));
    const second = await again.run();
    const remade = await caches.has(name);
    again.close();
    store2.close();
    await kv.deleteCacheStorage(name);
    return { deleted: report.deleted.maxEntries?.count, errors: report.errors.length, left, keys, second: second.deleted.maxEntries?.count, remade };
  });
  assert.deepEqual(out, { deleted: 3, errors: 0, left: ["/gone/d"], keys: ["/gone/d"], second: 1, remade: false });
});

test("expirationPlugin: a response with no usable Date header, unused for longer than maxAgeSeconds, is served once more and then expired, as ExpirationPlugin does", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const name = "idle-age";
    const plugin = kv.expirationPlugin({ maxAgeSeconds: 0.3 });
    const cache = await caches.open(name);
    const use = async (request) => {
      const waits = [];
      const served = await plugin.cachedResponseWillBeUsed({ cacheName: name, request, cachedResponse: await cache.match(request), event: { waitUntil: (p) => waits.push(p) } });
      await Promise.all(waits);
      return served !== null;
    };
    const got = {};
    for (const [label, headers] of [["no date", {}], ["bad date", { date: "not a date" }], ["future date", { date: new Date(Date.now() + 3600e3).toUTCString() }]]) {
      const request = new Request(`${location.origin}/idle/${encodeURIComponent(label)}`);
      const response = new Response(label, { headers });
      await cache.put(request, response.clone());
      await plugin.cacheDidUpdate({ cacheName: name, request, newResponse: response });
      const soon = await use(request); // within the age: served, made new
      await new Promise((r) => setTimeout(r, 450)); // idle past it
      const late = await use(request); // served once more, then expired
      got[label] = { soon, late, cached: (await cache.match(request)) !== undefined };
    }
    await plugin.deleteCacheAndMetadata();
    // A pin pinned(url) gave and then took back: the entry goes all the same
    // (its record still says pinned; an expiring run alone would keep it).
    const saved = new Set();
    const pinning = kv.expirationPlugin({ maxAgeSeconds: 0.3, pinned: (u) => saved.has(u) });
    const pinName = "idle-unpinned";
    const pinCache = await caches.open(pinName);
    const request = new Request(`${location.origin}/idle/saved`);
    saved.add(request.url);
    await pinCache.put(request, new Response("saved"));
    await pinning.cacheDidUpdate({ cacheName: pinName, request, newResponse: new Response("saved") });
    const usePinned = async () => {
      const waits = [];
      const served = await pinning.cachedResponseWillBeUsed({ cacheName: pinName, request, cachedResponse: await pinCache.match(request), event: { waitUntil: (p) => waits.push(p) } });
      await Promise.all(waits);
      return served !== null;
    };
    await new Promise((r) => setTimeout(r, 450));
    const whilePinned = await usePinned(); // pinned: served and kept however idle
    const keptPinned = (await pinCache.match(request)) !== undefined;
    saved.delete(request.url);
    await new Promise((r) => setTimeout(r, 450));
    const unpinned = await usePinned(); // served once more, then gone
    got.unpinned = { whilePinned, keptPinned, unpinned, cached: (await pinCache.match(request)) !== undefined };
    await pinning.deleteCacheAndMetadata();
    return got;
  });
  const expected = { soon: true, late: true, cached: false };
  assert.deepEqual(out, { "no date": expected, "bad date": expected, "future date": expected, unpinned: { whilePinned: true, keptPinned: true, unpinned: true, cached: false } });
});

test("track without a response measures the one the cache holds for the URL (0 with none there), and makes no cache", { timeout: 60_000 }, async () => {
  const got = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const cache = await caches.open("measured");
    await cache.put("/measured/a", new Response("x".repeat(1234)));
    const store = await kv.openCacheStorage("measured");
    const sweeper = new kv.Sweeper(store);
    await kv.track(sweeper, "/measured/a");
    await kv.track(sweeper, "/measured/b", null);
    const sizes = Object.fromEntries((await sweeper.history()).map((e) => [new URL(e.key).pathname, e.size]));
    sweeper.close();
    store.close();
    await kv.deleteCacheStorage("measured");
    // A cache that is not there is not made.
    const other = await kv.openCacheStorage("never-cached");
    const s2 = new kv.Sweeper(other);
    await kv.track(s2, "/never/a");
    const made = await caches.has("never-cached");
    s2.close();
    other.close();
    await kv.deleteCacheStorage("never-cached");
    return { sizes, made };
  });
  assert.deepEqual(got.sizes, { "/measured/a": 1234, "/measured/b": 0 });
  assert.equal(got.made, false);
});

test("a run reads no empty listing page, and a batch's responses are checked before the next batch commits", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    // No copy of the records: the listing reads pages of the database.
    const { MIRROR } = await import("/pkg/idbkv.js");
    MIRROR.limit = 0;
    const name = "order";
    const cache = await caches.open(name);
    // Two whole listing pages (1,000 records each), half of them expired.
    const urls = Array.from({ length: 2000 }, (_, i) => `${location.origin}/order/${String(i).padStart(5, "0")}`);
    await Promise.all(urls.map((u) => cache.put(u, new Response("x"))));
    const store = await kv.openCacheStorage(name);
    const sweeper = new kv.Sweeper(store, { policy: { maxEntries: 1000 } });
    for (let i = 0; i < urls.length; i += 500) await sweeper.putMany(urls.slice(i, i + 500).map((key) => ({ key, value: null, size: 1 })));
    // Each transaction as it is made: its mode, then each request on it.
    const log = [];
    const transaction = IDBDatabase.prototype.transaction;
    IDBDatabase.prototype.transaction = function (...args) {
      const tx = transaction.apply(this, args);
      const entry = { mode: args[1] ?? "readonly", calls: [] };
      log.push(entry);
      const objectStore = tx.objectStore.bind(tx);
      tx.objectStore = (n) => {
        const s = objectStore(n);
        return new Proxy(s, {
          get(t, k) {
            const v = t[k];
            if (typeof v !== "function") return v;
            return (...b) => {
              const q = b[0]?.query ?? b[0];
              entry.calls.push([String(k), q instanceof IDBKeyRange ? String(q.lower) : String(q)]);
              return v.apply(t, b);
            };
          },
        });
      };
      return tx;
    };
    let report;
    try {
      report = await sweeper.run();
    } finally {
      IDBDatabase.prototype.transaction = transaction;
    }
    const left = (await cache.keys()).length;
    sweeper.close();
    store.close();
    await kv.deleteCacheStorage(name);
    // Listing pages of entry records: reads of their values, in ranges
    // within "m/", in transactions of their own (a response's check reads keys only).
    const pages = log.filter((t) => t.mode === "readonly" && t.calls.some(([m, lower]) => (m === "getAllRecords" || m === "getAll") && lower.startsWith("m/"))).length;
    // The transaction made right after the first batch that deleted entries.
    const first = log.findIndex((t) => t.mode === "readwrite" && t.calls.some(([m, n]) => m === "delete" && n.startsWith("m/")));
    const next = log[first + 1];
    return { deleted: report.deleted.maxEntries?.count, left, pages, next: next && [next.mode, next.calls[0]?.[0], next.calls[0]?.[1].startsWith("m/\0http")] };
  });
  // Read before the next batch's transaction, the check (over the deleted
  // entries' names, not a table's) waits for none.
  assert.deepEqual(out, { deleted: 1000, left: 1000, pages: 2, next: ["readonly", "getAllKeys", true] });
});

test("a store small enough is listed from the copy its driver keeps, and sees at once what another store object (another context) wrote", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const name = "copy";
    const urls = Array.from({ length: 32 }, (_, i) => `${location.origin}/copy/${String(i).padStart(3, "0")}`);
    const cache = await caches.open(name);
    let now = 1_000;
    // Two store objects on one database: each a context of its own (as a
    // page and its service worker are).
    const a = await kv.openCacheStorage(name);
    const b = await kv.openCacheStorage(name);
    const sa = new kv.Sweeper(a, { policy: { maxEntries: 25 }, clock: () => now });
    const sb = new kv.Sweeper(b, { policy: { maxEntries: 25 }, clock: () => now });
    for (const u of urls.slice(0, 20)) {
      now += 1;
      await cache.put(u, new Response(u));
      await kv.track(sa, u, new Response(u));
    }
    // Reads of entry records' values from the database, counted.
    let reads = 0;
    const getAllRecords = IDBObjectStore.prototype.getAllRecords;
    const getAll = IDBObjectStore.prototype.getAll;
    const counted = (real) =>
      function (...args) {
        const q = args[0] !== null && typeof args[0] === "object" && !(args[0] instanceof IDBKeyRange) ? args[0].query : args[0];
        if (q === undefined || q === null || (q instanceof IDBKeyRange && String(q.lower).startsWith("m/"))) reads++;
        return real.apply(this, args);
      };
    if (getAllRecords) IDBObjectStore.prototype.getAllRecords = counted(getAllRecords);
    IDBObjectStore.prototype.getAll = counted(getAll);
    const keysOf = async (sweeper) => {
      const out = [];
      for await (const k of sweeper.keys()) out.push(k);
      return out.sort();
    };
    const dbNames = async () => {
      const { recordNames } = await import("/tests/shared/store-names.js");
      return (await recordNames(`kvsweep-cache:${name}`)).filter((n) => n.startsWith("kvsweep/m/")).map((n) => n.slice("kvsweep/m/\0".length)).sort();
    };
    const steps = {};
    try {
      reads = 0;
      steps.own = { keys: await keysOf(sa), reads };
      // b writes: new entries, and two of a's deleted.
      for (const u of urls.slice(20, 30)) {
        now += 1;
        await cache.put(u, new Response(u));
        await kv.track(sb, u, new Response(u));
      }
      await sb.delete(urls[0]);
      await sb.delete(urls[1]);
      // a lists at once: the token is b's, not its copy's.
      reads = 0;
      steps.afterOther = { keys: await keysOf(sa), reads };
      // a writes a new entry: its copy, read again just now, takes it in.
      now += 1;
      await cache.put(urls[30], new Response(urls[30]));
      await kv.track(sa, urls[30], new Response(urls[30]));
      reads = 0;
      steps.again = { keys: await keysOf(sa), reads };
      // b deletes one more, then a writes before it lists: its commit finds
      // b's token, not its copy's, and does not bring the stale copy along.
      await sb.delete(urls[2]);
      now += 1;
      await cache.put(urls[31], new Response(urls[31]));
      await kv.track(sa, urls[31], new Response(urls[31]));
      reads = 0;
      steps.afterBoth = { keys: await keysOf(sa), reads };
      // a's run, with b's entries: 29 entries, 25 kept (the oldest four go).
      const report = await sa.run();
      steps.run = { deleted: report.deleted.maxEntries?.count ?? 0, keys: await keysOf(sa), other: await keysOf(sb) };
    } finally {
      if (getAllRecords) IDBObjectStore.prototype.getAllRecords = getAllRecords;
      IDBObjectStore.prototype.getAll = getAll;
    }
    const db = await dbNames();
    const cached = (await cache.keys()).map((r) => r.url).sort();
    sa.close();
    sb.close();
    a.close();
    b.close();
    await kv.deleteCacheStorage(name);
    return { steps, db, cached, urls };
  });
  const { steps, urls } = out;
  assert.deepEqual(steps.own.keys, urls.slice(0, 20));
  assert.equal(steps.own.reads, 0, "a store object lists what it wrote itself from its copy");
  assert.deepEqual(steps.afterOther.keys, urls.slice(2, 30), "another context's writes are seen at once");
  assert.ok(steps.afterOther.reads > 0, "after another context wrote, the records are read again");
  assert.deepEqual(steps.again.keys, urls.slice(2, 31), "the store object's own new entry is in its copy");
  assert.equal(steps.again.reads, 0, "and the copy is listed, not the database");
  assert.deepEqual(steps.afterBoth.keys, urls.slice(3), "a write of its own after another context's does not keep the stale copy");
  assert.ok(steps.afterBoth.reads > 0);
  assert.equal(steps.run.deleted, 4);
  assert.deepEqual(steps.run.keys, urls.slice(7));
  assert.deepEqual(steps.run.other, urls.slice(7), "the other store object sees the run's deletions");
  assert.deepEqual(out.db, urls.slice(7), "the database holds what the listings said");
  assert.deepEqual(out.cached, urls.slice(7));
});

test("a metadata database of version 1 (earlier builds) opens and keeps its records; code opening it at version 1 after is refused, and its open connections close", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const req = (r) => new Promise((resolve, reject) => ((r.onsuccess = () => resolve(r.result)), (r.onerror = () => reject(r.error))));
    const url = `${location.origin}/legacy/a`;
    // Records as the current code writes them, copied into a database
    // made at version 1, as earlier builds made it.
    const src = await kv.openCacheStorage("legacy-src");
    const s = new kv.Sweeper(src);
    await s.put(url, null, { size: 3 });
    s.close();
    src.close();
    const db0 = await req(indexedDB.open("kvsweep-cache:legacy-src"));
    const os = db0.transaction("records").objectStore("records");
    const [recordKeys, recordValues] = await Promise.all([req(os.getAllKeys()), req(os.getAll())]);
    db0.close();
    await kv.deleteCacheStorage("legacy-src");
    const open1 = indexedDB.open("kvsweep-cache:legacy", 1);
    open1.onupgradeneeded = () => open1.result.createObjectStore("records");
    const old = await req(open1);
    const tx = old.transaction("records", "readwrite");
    recordKeys.forEach((k, i) => k !== "~version" && tx.objectStore("records").put(recordValues[i], k));
    await new Promise((resolve) => (tx.oncomplete = resolve));
    // The old code's connection stays open, as a tab of an earlier build's would.
    let closed = false;
    old.onversionchange = () => {
      closed = true;
      old.close();
    };
    const store = await kv.openCacheStorage("legacy");
    const sweeper = new kv.Sweeper(store);
    const keys = [];
    for await (const k of sweeper.keys()) keys.push(k);
    let refused = null;
    try {
      (await req(indexedDB.open("kvsweep-cache:legacy", 1))).close();
    } catch (e) {
      refused = e.name;
    }
    sweeper.close();
    store.close();
    await kv.deleteCacheStorage("legacy");
    return { keys, closed, refused, url };
  });
  assert.deepEqual(out.keys, [out.url], "the entry an earlier build's database holds is read");
  assert.equal(out.closed, true, "an earlier build's open connection is asked to close");
  assert.equal(out.refused, "VersionError", "an earlier build opening it after is refused");
});
