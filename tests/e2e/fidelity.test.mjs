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

test("a Float16Array is refused as a value, saying what to store, and taken as a blob's bytes", { timeout: 60_000 }, async () => {
  const page = await (await env.browser.newContext()).newPage();
  await page.goto(env.server.url);
  const out = await page.evaluate(async () => {
    const kv = await import("/pkg/index.js");
    if (typeof Float16Array !== "function") return { skipped: true };
    const s = new kv.Sweeper(kv.memoryStore());
    const half = new Float16Array([1, -2, 0.5]);
    const refused = await s.put("h", half).then(() => "stored", (e) => e.message);
    const id = await s.putBlob(half);
    const same = await s.putBlob(new Uint8Array(half.buffer));
    const back = await s.getBlob(id);
    return { refused, same: id === same, back: [...back], bytes: [...new Uint8Array(half.buffer)] };
  });
  assert.equal(out.skipped, undefined, "this Chromium has Float16Array");
  assert.match(out.refused, /^kvsweep: put\("h"\): value is a Float16Array, which cannot be stored \(.*\); store a Uint8Array over its buffer$/);
  assert.ok(out.same, "the same bytes, the same id");
  assert.deepEqual(out.back, out.bytes);
});
