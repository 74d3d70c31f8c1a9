// What the page tests (tests/e2e/) share: Debian's Chromium through
// playwright-core, and the demo's static server on 127.0.0.1 (www/, pkg/,
// tests/shared/).
import { before, after } from "node:test";
import { chromium } from "playwright-core";
import { serve } from "../../scripts/serve.mjs";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Resolves with `promise`, or rejects after `ms` so a stuck close cannot hang the run. */
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Starts the server and the browser before the calling file's tests and
 * closes them after: the returned object's `server` and `browser` are set
 * once `ready` resolves. (Node 20 runs a file's `before` hooks side by side,
 * so a hook of the caller's that needs the browser awaits `ready`.)
 */
export function withBrowser() {
  let started;
  const env = { server: null, browser: null, ready: new Promise((ok, fail) => (started = { ok, fail })) };
  env.ready.catch(() => {}); // reported by the hook below
  before(async () => {
    try {
      env.server = await serve(0);
      env.browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30_000 });
      started.ok();
    } catch (e) {
      started.fail(e);
      throw e;
    }
  }, { timeout: 60_000 });
  after(async () => {
    try {
      if (env.browser) await within(10_000, env.browser.close(), "closing the browser");
    } finally {
      if (env.server) await within(5_000, env.server.close(), "closing the server");
    }
  }, { timeout: 20_000 });
  return env;
}

/** Kills `page`'s renderer, as a crash would (CDP Page.crash), and waits until it is gone. */
export async function crashPage(context, page) {
  const cdp = await context.newCDPSession(page);
  const crashed = new Promise((resolve) => page.once("crash", resolve));
  cdp.send("Page.crash").catch(() => {}); // never answered: the session goes with the renderer
  await crashed;
  await page.close().catch(() => {});
}

/**
 * In `page`, makes `globalThis[cls].prototype[method]` hang after its first
 * `n` calls (they return a promise that never settles): a crash then finds
 * the work those calls would have done not done.
 */
export function stallAfter(page, cls, method, n) {
  return page.evaluate(
    ([cls, method, n]) => {
      const proto = globalThis[cls].prototype;
      const real = proto[method];
      let calls = 0;
      proto[method] = function (...args) {
        return ++calls > n ? new Promise(() => {}) : real.apply(this, args);
      };
    },
    [cls, method, n],
  );
}
