// Background runs in Debian's Chromium (issue #9): two pages of one origin
// cleaning one IndexedDB database take turns through the Web Locks API; the
// scheduler runs in a dedicated worker and in a service worker.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withBrowser } from "../shared/chromium.mjs";

const env = withBrowser();

/** A page with a scheduled Sweeper on `db` that logs its runs' starts and ends in localStorage. */
async function cleaner(context, db, tag, lockName) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(env.server.url);
  await page.evaluate(
    async ({ db, tag, lockName }) => {
      const kv = await import("/pkg/index.js");
      const store = await kv.openIndexedDb(db);
      const log = (type) => {
        const key = `runs-${tag}`;
        const runs = JSON.parse(localStorage.getItem(key) ?? "[]");
        runs.push({ type, at: performance.timeOrigin + performance.now() });
        localStorage.setItem(key, JSON.stringify(runs));
      };
      window.sweeper = new kv.Sweeper(store, {
        batchSize: 50,
        schedule: { debounceMs: 0, periodMs: 0, ...(lockName ? { lockName } : {}), onRun: (e) => log(e.type) },
      });
      const items = [];
      for (let i = 0; i < 3000; i++) items.push({ key: `${tag}${i}`, value: { i, pad: "x".repeat(100) }, ttlMs: 1 });
      await window.sweeper.putMany(items);
      await new Promise((r) => setTimeout(r, 5));
    },
    { db, tag, lockName },
  );
  page.errors = errors;
  return page;
}

const stats = (page) => page.evaluate(() => window.sweeper.stats());

async function until(check, ms, what) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The [start, end] intervals each page logged. */
async function intervals(page, tag) {
  const runs = await page.evaluate((key) => JSON.parse(localStorage.getItem(key) ?? "[]"), `runs-${tag}`);
  const out = [];
  for (const r of runs) {
    if (r.type === "start") out.push([r.at, Infinity]);
    else out[out.length - 1][1] = r.at;
  }
  return out;
}

const overlaps = (as, bs) => as.some(([s1, e1]) => bs.some(([s2, e2]) => s1 < e2 && s2 < e1));

test("two pages of one origin: one cleans at a time, and the other's request is served after", { timeout: 90_000 }, async () => {
  const context = await env.browser.newContext();
  const db = `shared-${Date.now()}`;
  const a = await cleaner(context, db, "A");
  const b = await cleaner(context, db, "B");
  await a.evaluate(() => window.sweeper.request("full"));
  await until(async () => (await stats(a)).state === "running", 10_000, "A's run to start");
  // While A cleans, B asks: it cannot take the lock, skips, and tries again.
  await b.evaluate(() => window.sweeper.request("full"));
  await until(async () => (await stats(b)).skipped >= 1, 10_000, "B to find the lock taken");
  await until(
    async () => {
      const [sa, sb] = [await stats(a), await stats(b)];
      return sa.runs >= 1 && sb.runs >= 1 && sa.state === "idle" && sb.state === "idle" && !sa.pending && !sb.pending;
    },
    60_000,
    "both pages' runs",
  );
  const [ia, ib] = [await intervals(a, "A"), await intervals(b, "B")];
  assert.ok(ia.length >= 1 && ib.length >= 1, `runs: A ${ia.length}, B ${ib.length}`);
  assert.ok(ia.concat(ib).every(([, end]) => end !== Infinity), "every run ended");
  assert.equal(overlaps(ia, ib), false, `runs overlapped: A ${JSON.stringify(ia)} B ${JSON.stringify(ib)}`);
  assert.ok(ib[0][0] >= ia[0][1], "B ran after A released the lock");
  // Between them, every expired entry of both pages is gone.
  const left = await a.evaluate(async () => (await window.sweeper.plan({ mode: "full" })).actions.length);
  assert.equal(left, 0);
  assert.equal((await stats(a)).lastRun.outcome, "done");
  assert.deepEqual([...a.errors, ...b.errors], []);
  await context.close();
});

test("the same two pages with different lock names do overlap (the check above can fail)", { timeout: 90_000 }, async () => {
  const context = await env.browser.newContext();
  const db = `unshared-${Date.now()}`;
  const c = await cleaner(context, db, "C", "lock-C");
  const d = await cleaner(context, db, "D", "lock-D");
  await Promise.all([c.evaluate(() => window.sweeper.request("full")), d.evaluate(() => window.sweeper.request("full"))]);
  await until(async () => (await stats(c)).runs >= 1 && (await stats(d)).runs >= 1, 60_000, "both runs");
  const [ic, id] = [await intervals(c, "C"), await intervals(d, "D")];
  assert.equal(overlaps(ic, id), true, `C ${JSON.stringify(ic)} D ${JSON.stringify(id)}`);
  await context.close();
});

test("the scheduler runs in a dedicated worker", { timeout: 60_000 }, async () => {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(env.server.url);
  const result = await page.evaluate(
    (db) =>
      new Promise((resolve) => {
        const worker = new Worker(`/tests/shared/schedule-worker.mjs?db=${db}`, { type: "module" });
        worker.onmessage = (e) => resolve(e.data);
        worker.onerror = (e) => resolve({ type: "failed", message: e.message });
      }),
    `worker-${Date.now()}`,
  );
  assert.equal(result.type, "end", result.message);
  assert.equal(result.stats.runs, 1);
  assert.equal(result.stats.lastRun.deleted, 100);
  assert.deepEqual(result.held, [`kvsweep:${result.db}`], "the run held the database's lock");
  await context.close();
});

test("the scheduler runs in a service worker", { timeout: 60_000 }, async () => {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(env.server.url);
  const result = await page.evaluate(async (db) => {
    const reg = await navigator.serviceWorker.register("/tests/shared/schedule-sw.js", { type: "module" });
    const worker = reg.installing ?? reg.waiting ?? reg.active;
    if (worker.state !== "activated") {
      await new Promise((resolve) => worker.addEventListener("statechange", () => worker.state === "activated" && resolve()));
    }
    return new Promise((resolve) => {
      navigator.serviceWorker.addEventListener("message", (e) => resolve(e.data));
      worker.postMessage({ db });
    });
  }, `sw-${Date.now()}`);
  assert.equal(result.type, "end", result.message);
  assert.equal(result.stats.runs, 1);
  assert.equal(result.stats.lastRun.deleted, 100);
  assert.deepEqual(result.held, [`kvsweep:${result.db}`], "the run held the database's lock");
  await context.close();
});

test("storage use past storageFraction of the quota asks for a full run after a write", { timeout: 60_000 }, async () => {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(env.server.url);
  const result = await page.evaluate(async (db) => {
    const kv = await import("/pkg/index.js");
    const store = await kv.openIndexedDb(db);
    const real = navigator.storage.estimate.bind(navigator.storage);
    let asked = 0;
    let full = false;
    // The page's storage as the browser would report it: nearly full once `full` is set.
    navigator.storage.estimate = async () => {
      asked++;
      const e = await real();
      return full ? { usage: e.quota * 0.95, quota: e.quota } : e;
    };
    const sweeper = new kv.Sweeper(store, { schedule: { debounceMs: 0, periodMs: 0, storageFraction: 0.9 } });
    for (let i = 0; i < 20; i++) await sweeper.put(`k${i}`, i, { ttlMs: 1 });
    await new Promise((r) => setTimeout(r, 50));
    const before = sweeper.stats().runs;
    full = true;
    // At most one check a minute: a new Sweeper checks on its first write.
    const second = new kv.Sweeper(store, { schedule: { debounceMs: 0, periodMs: 0, storageFraction: 0.9 } });
    await second.put("one-more", 1);
    const end = Date.now() + 10_000;
    while (second.stats().runs < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    return { before, asked, after: second.stats(), left: (await second.plan()).actions.length };
  }, `pressure-${Date.now()}`);
  assert.equal(result.before, 0, "usage under the line: no run");
  assert.ok(result.asked >= 2, `estimate() called ${result.asked} times`);
  assert.equal(result.after.runs, 1);
  assert.equal(result.after.lastRun.mode, "full");
  assert.equal(result.after.lastRun.deleted, 20);
  assert.equal(result.left, 0);
  await context.close();
});

test("a run called by hand waits for the lock another context holds", { timeout: 60_000 }, async () => {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(env.server.url);
  const result = await page.evaluate(async (db) => {
    const kv = await import("/pkg/index.js");
    const sweeper = new kv.Sweeper(await kv.openIndexedDb(db));
    await sweeper.put("k", 1, { ttlMs: 1 });
    let release;
    // Another tab's cleaner, as far as the lock is concerned.
    await new Promise((held) =>
      navigator.locks.request(`kvsweep:${db}`, () => {
        held();
        return new Promise((r) => (release = r));
      }),
    );
    let finished = false;
    let heldDuring = null;
    const run = sweeper
      .run({
        // While the run deletes, it holds the lock itself.
        onProgress: async () => {
          heldDuring ??= (await navigator.locks.query()).held.map((l) => l.name);
        },
      })
      .then((r) => ((finished = true), r));
    await new Promise((r) => setTimeout(r, 300));
    const early = finished;
    release();
    const report = await run;
    // An abort ends a wait for the lock, which another context keeps.
    await sweeper.put("k2", 1, { ttlMs: 1 });
    await new Promise((held) =>
      navigator.locks.request(`kvsweep:${db}`, () => {
        held();
        return new Promise((r) => (release = r));
      }),
    );
    const controller = new AbortController();
    const started = performance.now();
    const aborted = sweeper.run({ signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    const stopped = (await aborted).stopped;
    const waited = performance.now() - started;
    release();
    return { early, deleted: report.deleted.expired?.count, heldDuring, stopped, waited };
  }, `hand-${Date.now()}`);
  assert.equal(result.early, false, "the run went on while another context held the lock");
  assert.equal(result.deleted, 1);
  assert.ok(result.heldDuring?.some((n) => n.startsWith("kvsweep:hand-")), JSON.stringify(result.heldDuring));
  assert.equal(result.stopped, "aborted");
  assert.ok(result.waited < 5_000, `the aborted run waited ${result.waited} ms`);
  await context.close();
});
