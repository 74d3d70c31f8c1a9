// Listing a kvStore over a backend that lists everything unsorted (unstorage,
// keyv, generic objects, a Map): the names are read once per listing, not once
// per page, and what this realm writes meanwhile is seen.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createStorage } from "unstorage";
import { Sweeper, kvStore } from "../../pkg/node.js";

/** An unstorage instance that counts its getKeys calls. */
function counted() {
  const storage = createStorage();
  const getKeys = storage.getKeys.bind(storage);
  const counter = { calls: 0 };
  storage.getKeys = (...a) => (counter.calls++, getKeys(...a));
  return { storage, counter };
}

async function fill(sweeper, n, prefix = "k") {
  for (let i = 0; i < n; i += 1000) {
    const items = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) items.push({ key: `${prefix}${String(j).padStart(6, "0")}`, value: j });
    await sweeper.putMany(items);
  }
}

test("keys() over 4,500 entries (five pages) asks unstorage for its names once, not once a page", async () => {
  const { storage, counter } = counted();
  const sweeper = new Sweeper(kvStore(storage));
  await fill(sweeper, 4500);
  counter.calls = 0;
  let n = 0;
  for await (const _ of sweeper.keys()) n++;
  assert.equal(n, 4500);
  // One listing of the entry table (a page per 1,000 keys before), and at
  // most one of the namespaces'.
  assert.ok(counter.calls <= 2, `getKeys called ${counter.calls} times`);
});

test("a full run over 6,000 entries on unstorage lists names a bounded number of times, and deletes what the quota says", async () => {
  const { storage, counter } = counted();
  const sweeper = new Sweeper(kvStore(storage), { policy: { maxEntries: 1000 } });
  await fill(sweeper, 6000);
  counter.calls = 0;
  const report = await sweeper.run();
  assert.equal(report.deleted.maxEntries.count, 5000);
  let n = 0;
  for await (const _ of sweeper.keys()) n++;
  assert.equal(n, 1000);
  assert.ok(counter.calls <= 6, `getKeys called ${counter.calls} times`);
});

test("what this realm writes during a listing is seen by it: a key put ahead is listed, one deleted ahead is not, also through another kvStore over the same backend", async () => {
  for (const backend of [() => createStorage(), () => new Map()]) {
    const raw = backend();
    const sweeper = new Sweeper(kvStore(raw));
    const other = new Sweeper(kvStore(raw));
    await fill(sweeper, 2500);
    const seen = [];
    for await (const key of sweeper.keys()) {
      seen.push(key);
      if (seen.length === 1000) {
        await other.put("z-late", 1);
        await sweeper.put("k002499x", 2);
        await other.delete("k002400");
      }
    }
    assert.equal(seen.length, 2500 - 1 + 2, raw.constructor.name);
    assert.ok(seen.includes("z-late") && seen.includes("k002499x"), raw.constructor.name);
    assert.ok(!seen.includes("k002400"), raw.constructor.name);
    assert.deepEqual(seen, [...seen].sort(), raw.constructor.name);
  }
});

test("a put that lands while the backend is listing is seen by the listings after it: the backend's list may be older than the put", async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const storage = createStorage();
  const getKeys = storage.getKeys.bind(storage);
  let slow = false;
  storage.getKeys = async (...a) => {
    const keys = await getKeys(...a); // its list, as of now
    if (slow) await sleep(100); // a slow backend (a large fs directory)
    return keys;
  };
  const s = new Sweeper(kvStore(storage));
  await s.put("a", 1);
  slow = true;
  const plan = s.plan({ mode: "full" });
  await sleep(20);
  await s.put("b", 2, { refs: ["a"] });
  await plan;
  slow = false;
  const keys = [];
  for await (const k of s.keys()) keys.push(k);
  assert.deepEqual(keys, ["a", "b"]);
  // The count a put over a torn record takes from the listing is right too.
  const name = (await storage.getKeys()).find((k) => decodeURIComponent(k).endsWith("m/\0a"));
  await storage.setItemRaw(name, new Uint8Array(0)); // torn by a crash
  await s.put("a", 3);
  await assert.rejects(s.delete("a"), /referenced by 1 other entry/);
  assert.equal(await s.get("a"), 3);
});
