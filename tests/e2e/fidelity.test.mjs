// Values round-trip exactly through a real IndexedDB in Debian's Chromium
// (issue #8): the same cases as the Node test, run in a page that loads the
// built package from pkg/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withBrowser } from "../shared/chromium.mjs";

const env = withBrowser();

test("every structured-clone type comes back exactly from IndexedDB in Chromium", { timeout: 60_000 }, async () => {
  const page = await (await env.browser.newContext()).newPage();
  await page.goto(env.server.url);
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
