// The Cache Storage benchmark's page code (scripts/bench-cache.mjs bundles
// it with esbuild, workbox-expiration included): expiring 1,000 of 2,000
// cached responses with workbox-expiration, with kvsweep, and with plain
// cache.delete calls, each on its own cache, in one page run.
import { CacheExpiration } from "workbox-expiration";

const body = "x".repeat(200);
const urls = (name, n) => Array.from({ length: n }, (_, i) => `${location.origin}/bench-cache/${name}/${String(i).padStart(5, "0")}`);

async function fill(name, n) {
  const cache = await caches.open(name);
  const list = urls(name, n);
  for (let i = 0; i < list.length; i += 100) {
    await Promise.all(list.slice(i, i + 100).map((u) => cache.put(u, new Response(body, { headers: { date: new Date().toUTCString() } }))));
  }
  return { cache, list };
}

async function time(fn) {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** kvsweep's run over the cache `name` filled with `total`, keeping `keep`, on a store opened again first when `reopen`: [ms, responses left]. */
async function kvsweepRun(kv, name, total, keep, reopen) {
  const { cache, list } = await fill(name, total);
  let store = await kv.openCacheStorage(name);
  let sweeper = new kv.Sweeper(store, { policy: { maxEntries: keep } });
  for (let i = 0; i < list.length; i += 500) {
    await sweeper.putMany(list.slice(i, i + 500).map((key) => ({ key, value: null, size: body.length })));
  }
  if (reopen) {
    sweeper.close();
    store.close();
    store = await kv.openCacheStorage(name);
    sweeper = new kv.Sweeper(store, { policy: { maxEntries: keep } });
  }
  const ms = await time(() => sweeper.run());
  const left = (await cache.keys()).length;
  sweeper.close();
  store.close();
  await kv.deleteCacheStorage(name);
  return [ms, left];
}

// One round: each code once, in this order.
async function round(kv, total, keep) {
  const out = {};

  // workbox-expiration: what ExpirationPlugin runs.
  {
    const { cache, list } = await fill("wb", total);
    const expiration = new CacheExpiration("wb", { maxEntries: keep });
    for (const u of list) await expiration.updateTimestamp(u);
    out.workbox = await time(() => expiration.expireEntries());
    out.workboxLeft = (await cache.keys()).length;
    await expiration.delete();
  }

  // kvsweep: entries recorded as expirationPlugin records them, then one
  // run by the store object that wrote them (it lists them from the copy it
  // keeps), and on a store opened just before its run (another service
  // worker start, a page load: its records are read whole once, and the
  // run waits for that).
  [out.kvsweep, out.kvsweepLeft] = await kvsweepRun(kv, "kv", total, keep, false);
  [out.kvsweepCold, out.kvsweepColdLeft] = await kvsweepRun(kv, "kvcold", total, keep, true);

  // Plain code: cache.delete of the oldest, one after another, and all at once.
  {
    const { cache, list } = await fill("loop", total);
    out.loop = await time(async () => {
      for (const u of list.slice(0, total - keep)) await cache.delete(u);
    });
    await caches.delete("loop");
  }
  {
    const { cache, list } = await fill("all", total);
    out.all = await time(() => Promise.all(list.slice(0, total - keep).map((u) => cache.delete(u))));
    await caches.delete("all");
  }
  return out;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** `rounds` rounds; each figure is the median of its rounds, each ratio the median of the rounds' ratios. */
window.benchCache = async (total, keep, rounds) => {
  const kv = await import("/pkg/index.js");
  const all = [];
  for (let i = 0; i < rounds; i++) all.push(await round(kv, total, keep));
  const out = {};
  for (const k of Object.keys(all[0])) out[k] = median(all.map((r) => r[k]));
  for (const k of ["kvsweep", "kvsweepCold", "loop", "all"]) out[`${k}Ratio`] = median(all.map((r) => r.workbox / r[k]));
  out.workboxLeft = all.every((r) => r.workboxLeft === keep) ? keep : all.find((r) => r.workboxLeft !== keep).workboxLeft;
  out.kvsweepLeft = all.every((r) => r.kvsweepLeft === keep) ? keep : all.find((r) => r.kvsweepLeft !== keep).kvsweepLeft;
  out.kvsweepColdLeft = all.every((r) => r.kvsweepColdLeft === keep) ? keep : all.find((r) => r.kvsweepColdLeft !== keep).kvsweepColdLeft;
  out.rounds = all;
  return out;
};
