// Cache Storage (issue #11) through a crash: the page's renderer is killed
// (CDP Page.crash) while a run deletes entries and their responses, at a
// different moment each round. Afterwards no live response is missing, and
// after the store is opened again and one run the cache holds exactly the
// entries the policy keeps, every one with its response. And a response
// cached with a Vary header goes with its entry, and the key–value scenario
// of the other stores (references, shared blobs, TTLs) runs on it.
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
    // end, once the crashed run's lease (5 minutes) has run out.
    await page.evaluate(setUp, [name, TOTAL, KEEP, false, 1_000_000 + TOTAL + 5 * 60_000 + 1_000]);
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
  await env.ready;
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(env.server.url);
  const left = await page.evaluate(async () => {
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
  await context.close();
});

test("the key–value scenario on a Cache Storage store", { timeout: 60_000 }, async () => {
  await env.ready;
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(env.server.url);
  const out = await page.evaluate(async () => {
    const kv = await import("/pkg/index.js");
    const { kvScenario } = await import("/tests/shared/kv-scenario.mjs");
    const { recordNames } = await import("/tests/shared/store-names.js");
    const store = await kv.openCacheStorage("scenario");
    const { sweeper, ...out } = await kvScenario(kv, store, () => recordNames("kvsweep-cache:scenario"));
    out.kind = store.kind;
    sweeper.close();
    store.close();
    await kv.deleteCacheStorage("scenario");
    return out;
  });
  assert.equal(out.kind, "cache-storage");
  checkScenario(out, assert);
  await context.close();
});
