// Values round-trip exactly through a real IndexedDB in Debian's Chromium
// (issue #8): the same cases as the Node test, run in a page that loads the
// built package from pkg/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { serve } from "../../scripts/serve.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

let server;
let browser;

before(async () => {
  server = await serve(0);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30_000 });
}, { timeout: 60_000 });

after(async () => {
  try {
    if (browser) await browser.close();
  } finally {
    if (server) await server.close();
  }
});

test("every structured-clone type comes back exactly from IndexedDB in Chromium", { timeout: 60_000 }, async () => {
  const page = await (await browser.newContext()).newPage();
  await page.goto(server.url);
  const failures = await page.evaluate(async () => {
    const kv = await import("/pkg/index.js");
    const { roundTripFailures } = await import("/tests/shared/fidelity.mjs");
    const store = await kv.openIndexedDb(`fidelity-${Date.now()}`);
    const failed = await roundTripFailures(new kv.Sweeper(store));
    // A second sweeper reads what the first wrote, from the database.
    const reader = new kv.Sweeper(store);
    const { fidelityCases, same } = await import("/tests/shared/fidelity.mjs");
    for (const [name, value] of fidelityCases()) {
      if (!same(await reader.get(name), value)) failed.push(`${name} (read again)`);
    }
    return failed;
  });
  assert.deepEqual(failures, []);
});
