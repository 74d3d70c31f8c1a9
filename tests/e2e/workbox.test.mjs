// kvsweep's expirationPlugin with the real workbox-routing and
// workbox-strategies in a registered service worker (issue #11), checked
// from the page through `caches` and `indexedDB`.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { build } from "esbuild";
import { withBrowser } from "../shared/chromium.mjs";

const env = withBrowser();

before(async () => {
  await build({
    entryPoints: ["tests/shared/workbox-sw.src.js"],
    bundle: true,
    format: "esm",
    outfile: "tests/shared/.gen/workbox-sw.js",
    external: ["/pkg/*"],
    define: { "process.env.NODE_ENV": '"production"' },
    logLevel: "error",
  });
});

/** A page controlled by the Workbox service worker. */
async function controlledPage() {
  await env.ready;
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(env.server.url);
  await page.evaluate(async () => {
    const reg = await navigator.serviceWorker.register("/tests/shared/.gen/workbox-sw.js", { type: "module", scope: "/" });
    if (!navigator.serviceWorker.controller) {
      await new Promise((resolve) => navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true }));
    }
    return reg.scope;
  });
  return { context, page };
}

/** Polls `fn` in the page until it returns a truthy value (or the time is up). */
async function until(page, fn, arg, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const cachedUrls = async (name) => {
  const cache = await caches.open(name);
  return (await cache.keys()).map((r) => new URL(r.url).pathname).sort();
};

test("a cache-first route whose cache holds at most one entry (maxEntries: 1)", { timeout: 60_000 }, async () => {
  const { context, page } = await controlledPage();
  await page.evaluate(() => fetch("/tests/data/one/a").then((r) => r.text()));
  await until(page, async () => (await (await caches.open("one")).keys()).length === 1);
  await page.evaluate(() => fetch("/tests/data/one/b").then((r) => r.text()));
  const left = await until(page, async (src) => {
    const urls = await new Function(`return (${src})`)()("one");
    return urls.length === 1 && urls[0] === "/tests/data/one/b" ? urls : null;
  }, cachedUrls.toString());
  assert.deepEqual(left, ["/tests/data/one/b"]);
  // Served from the cache now: the same body as the first fetch of b.
  const [first, again] = await page.evaluate(async () => {
    const a = await (await fetch("/tests/data/one/b")).text();
    const b = await (await fetch("/tests/data/one/b")).text();
    return [a, b];
  });
  assert.equal(first, again);
  await context.close();
});

test("entries expire after a second (maxAgeSeconds: 1), judged by the response's Date header", { timeout: 60_000 }, async () => {
  const { context, page } = await controlledPage();
  const bodies = await page.evaluate(async () => {
    // A Date header counts whole seconds: start early in one, so that the
    // response is under a second old when it is used again at once. On a
    // loaded machine the second can end before that: then again, on a new URL.
    for (let attempt = 0; ; attempt++) {
      const url = `/tests/data/age/x${attempt}`;
      const get = async () => (await fetch(url)).text();
      while (Date.now() % 1000 > 200) await new Promise((r) => setTimeout(r, 20));
      const second = Math.floor(Date.now() / 1000);
      const first = await get();
      // Workbox puts the response in the cache after answering: wait for it.
      while (!(await caches.match(url))) await new Promise((r) => setTimeout(r, 10));
      const cached = await get();
      if (Math.floor(Date.now() / 1000) !== second && attempt < 4) continue;
      await new Promise((r) => setTimeout(r, 2100));
      const afterExpiry = await get();
      return { first, cached, afterExpiry };
    }
  });
  assert.equal(bodies.cached, bodies.first, "served from the cache within its second");
  assert.notEqual(bodies.afterExpiry, bodies.first, "fetched again once expired");
  await context.close();
});

test("maxBytes counts response bytes; a pinned URL is never expired", { timeout: 60_000 }, async () => {
  const { context, page } = await controlledPage();
  // Each body is about 25 bytes: 60 bytes hold two.
  for (const p of ["keep", "a", "b", "c"]) {
    // One after another: each in the cache (and recorded) before the next.
    await page.evaluate(async (p) => {
      await (await fetch(`/tests/data/bytes/${p}`)).text();
      while (!(await caches.match(`/tests/data/bytes/${p}`))) await new Promise((r) => setTimeout(r, 10));
    }, p);
  }
  const left = await until(page, async (src) => {
    const urls = await new Function(`return (${src})`)()("bytes");
    return urls.length === 2 ? urls : null;
  }, cachedUrls.toString());
  const now = await page.evaluate(async (src) => new Function(`return (${src})`)()("bytes"), cachedUrls.toString());
  assert.deepEqual(left, ["/tests/data/bytes/c", "/tests/data/bytes/keep"], JSON.stringify(now));
  await context.close();
});

test("deleteCacheAndMetadata leaves no cache and no database behind", { timeout: 60_000 }, async () => {
  const { context, page } = await controlledPage();
  await page.evaluate(() => fetch("/tests/data/one/z").then((r) => r.text()));
  assert.ok(await until(page, async () => (await indexedDB.databases()).some((d) => d.name === "kvsweep-cache:one")), "the metadata database was made");
  const after = await page.evaluate(async () => {
    const answer = new Promise((resolve) => navigator.serviceWorker.addEventListener("message", (e) => resolve(e.data), { once: true }));
    navigator.serviceWorker.controller.postMessage("delete");
    await answer;
    return { cache: await caches.has("one"), dbs: (await indexedDB.databases()).map((d) => d.name) };
  });
  assert.equal(after.cache, false);
  assert.ok(!after.dbs.includes("kvsweep-cache:one"), JSON.stringify(after.dbs));
  await context.close();
});
