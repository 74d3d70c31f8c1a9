// The package's service-worker entry (kvsweep/sw, issue #11) in a registered
// module service worker in Chromium: the main entry's top-level await makes
// registration fail; this one registers, loads on first use, and works.
import { test } from "node:test";
import assert from "node:assert/strict";
import { build } from "esbuild";
import { withBrowser } from "../shared/chromium.mjs";

const env = withBrowser();

async function register(page, script, db, type = "module") {
  return page.evaluate(
    async ([script, db, type]) => {
      let reg;
      try {
        reg = await navigator.serviceWorker.register(script, { type, scope: `/tests/shared/${db}/` });
      } catch (e) {
        return { registerError: String(e) };
      }
      const worker = reg.installing ?? reg.waiting ?? reg.active;
      if (worker.state !== "activated") {
        await new Promise((resolve) => worker.addEventListener("statechange", () => worker.state === "activated" && resolve()));
      }
      return new Promise((resolve) => {
        navigator.serviceWorker.addEventListener("message", (e) => resolve(e.data));
        worker.postMessage({ db });
      });
    },
    [script, db, type],
  );
}

test("kvsweep/sw loads in a module service worker without top-level await, on first use", { timeout: 60_000 }, async () => {
  await env.ready;
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(env.server.url);
  const out = await register(page, "/tests/shared/sw-entry.js", `swe-${Date.now()}`);
  assert.equal(out.error, undefined, JSON.stringify(out));
  assert.match(out.early ?? JSON.stringify(out), /^kvsweep: memoryStore\(\): the WebAssembly module is not loaded yet; call `await ready\(\)` first/);
  assert.equal(out.deleted, 25);
  assert.equal(out.value, true);
  await context.close();
});

test("the main entry cannot be a service worker's import (its top-level await), which is why kvsweep/sw exists", { timeout: 60_000 }, async () => {
  await env.ready;
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(env.server.url);
  const out = await register(page, "/tests/shared/sw-main-entry.js", `swm-${Date.now()}`);
  console.log(`# registering the main entry: ${out.registerError}`);
  assert.match(out.registerError ?? "", /^TypeError: .*(evaluat|start)/i, JSON.stringify(out));
  await context.close();
});

test("kvsweep/sw bundled into a classic service worker (an IIFE, no import.meta.url) loads from the URL given to ready()", { timeout: 60_000 }, async () => {
  await build({
    entryPoints: ["tests/shared/sw-classic.src.js"],
    bundle: true,
    format: "iife",
    outfile: "tests/shared/.gen/sw-classic.js",
    logLevel: "silent",
  });
  await env.ready;
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(env.server.url);
  const out = await register(page, "/tests/shared/.gen/sw-classic.js", `swc-${Date.now()}`, "classic");
  assert.equal(out.error, undefined, JSON.stringify(out));
  assert.match(out.early ?? JSON.stringify(out), /^kvsweep: ready\(source\): this bundle cannot find kvsweep_bg\.wasm next to itself/);
  assert.equal(out.deleted, 25);
  assert.equal(out.value, true);
  await context.close();
});
