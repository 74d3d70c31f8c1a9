// The maintenance operations (SPEC §5, issue #12) through the built package's
// JS API in Node: on memoryStore(), on IndexedDB (fake-indexeddb) and on a
// key-value store (a Map), whose bytes the test can damage directly.
import "fake-indexeddb/auto";
import { test } from "node:test";
import assert from "node:assert/strict";
import { createStorage } from "unstorage";
import { Sweeper, memoryStore, openIndexedDb, kvStore } from "../../pkg/node.js";
import { kvStoreOfDriver } from "../../pkg/kvsweep.js";
import { openRecords, recordsDriver } from "../../pkg/idbkv.js";

const T0 = 1_700_000_000_000;
const DAY = 86_400_000;

function manualClock(start = T0) {
  const clock = () => clock.now;
  clock.now = start;
  return clock;
}

const stores = {
  memory: async () => memoryStore(),
  indexeddb: async () => openIndexedDb(`maintenance-${Math.random()}`),
  map: async () => kvStore(new Map()),
};

for (const [kind, open] of Object.entries(stores)) {
  test(`${kind}: history, detail and resolvePrefix show what is stored`, async () => {
    const clock = manualClock();
    const s = new Sweeper(await open(), { clock });
    await s.put("apple", new Map([["a", 1n]]), { namespace: "fruit", group: "g", refs: [] });
    clock.now += 10;
    await s.put("apricot", new Uint8Array([1, 2, 3]), { namespace: "fruit", ttlMs: 1_000 });
    clock.now += 10;
    await s.put("banana", { n: -0 }, { namespace: "fruit", pinned: true });
    clock.now += 10;
    await s.put("x", 1);

    const all = await s.history();
    assert.deepEqual(all.map((e) => e.key), ["x", "banana", "apricot", "apple"]);
    const fruit = await s.history({ namespace: "fruit", limit: 2 });
    assert.deepEqual(fruit.map((e) => [e.namespace, e.key]), [["fruit", "banana"], ["fruit", "apricot"]]);
    assert.equal(fruit[0].pinned, true);
    assert.equal(fruit[1].expiresAt, T0 + 10 + 1_000);
    assert.equal(fruit[1].updatedAt, T0 + 10);

    const apple = await s.detail("apple", { namespace: "fruit" });
    assert.deepEqual(apple.value, new Map([["a", 1n]]));
    assert.equal(apple.group, "g");
    assert.equal(apple.createdAt, T0);
    const banana = await s.detail("banana", { namespace: "fruit" });
    assert.ok(Object.is(banana.value.n, -0));
    assert.deepEqual((await s.detail("apricot", { namespace: "fruit" })).value, new Uint8Array([1, 2, 3]));
    assert.equal(await s.detail("nope", { namespace: "fruit" }), undefined);

    // Expired: only when asked, and then no prefix names it.
    clock.now += 5_000;
    assert.equal(await s.detail("apricot", { namespace: "fruit" }), undefined);
    assert.deepEqual((await s.detail("apricot", { namespace: "fruit", includeExpired: true })).value, new Uint8Array([1, 2, 3]));
    assert.deepEqual(await s.resolvePrefix("ap", { namespace: "fruit" }), { key: "apple" });
    await s.put("apple pie", 2, { namespace: "fruit" });
    assert.deepEqual(await s.resolvePrefix("ap", { namespace: "fruit" }), { ambiguous: ["apple", "apple pie"] });
    assert.deepEqual(await s.resolvePrefix("apple", { namespace: "fruit" }), { key: "apple" });
    assert.deepEqual(await s.resolvePrefix("c", { namespace: "fruit" }), { none: true });

    // detail is an operator's look, not a use: accessedAt stays.
    const before = (await s.detail("banana", { namespace: "fruit" })).accessedAt;
    clock.now += 60_000;
    await s.detail("banana", { namespace: "fruit" });
    await s.run({ mode: "light" }); // flushes deferred refreshes, were there any
    assert.equal((await s.detail("banana", { namespace: "fruit" })).accessedAt, before);
    // A get is a use: the same steps move it.
    await s.get("banana", { namespace: "fruit" });
    await s.run({ mode: "light" });
    assert.equal((await s.detail("banana", { namespace: "fruit" })).accessedAt, clock.now);
    s.close();
  });

  test(`${kind}: prune deletes what was not updated for a while, zombies and deleteNamespace`, async () => {
    const clock = manualClock();
    const store = await open();
    const s = new Sweeper(store, { clock, policy: { orphanGraceMs: 0 } });
    const blob = await s.putBlob(new Uint8Array(64).fill(7));
    for (let i = 0; i < 10; i++) await s.put(`old${i}`, i, { namespace: "n", blobs: i === 0 ? [blob] : [] });
    await s.put("old-pinned", 1, { namespace: "n", pinned: true });
    clock.now += 10 * DAY;
    await s.put("fresh", 2, { namespace: "n", refs: ["old5"] });

    const report = await s.prune({ olderThanMs: 5 * DAY });
    assert.equal(report.done, true);
    assert.equal(report.deleted.maxAge.count, 9);
    assert.equal(report.deleted.orphanBlob.count, 1);
    const keys = [];
    for await (const k of s.keys({ namespace: "n" })) keys.push(k);
    assert.deepEqual(keys, ["fresh", "old-pinned", "old5"]);
    assert.equal(await s.getBlob(blob), undefined);

    assert.deepEqual(await s.zombies(), []);
    const gone = await s.deleteNamespace("n");
    assert.equal(gone.deleted.cleared.count, 3);
    assert.deepEqual(await s.history({ limit: 10 }), []);
    await assert.rejects(s.deleteNamespace("n"), { message: 'kvsweep: deleteNamespace: no namespace "n" (none is registered or holds entries)' });
    s.close();
  });
}

test("verify finds a damaged and a lost blob on a key-value store; repair removes the damaged bytes, and putBlob restores both with their counts", async () => {
  const map = new Map();
  const s = new Sweeper(kvStore(map));
  const ids = [];
  for (let i = 0; i < 4; i++) {
    const id = await s.putBlob(new Uint8Array(1000).fill(i));
    await s.put(`doc${i}`, { i }, { blobs: [id] });
    ids.push(id);
  }
  const clean = await s.verify();
  assert.deepEqual([clean.checked, clean.bytes, clean.corrupt, clean.missing], [4, 4000, [], []]);

  const bytesKey = (id) => [...map.keys()].find((k) => k.includes(id) && map.get(k)?.length === 1000);
  const damaged = bytesKey(ids[0]);
  const bytes = new Uint8Array(map.get(damaged));
  bytes[10] ^= 1;
  map.set(damaged, bytes);
  map.delete(bytesKey(ids[1]));

  const found = await s.verify();
  assert.deepEqual(found.corrupt, [ids[0]]);
  assert.deepEqual(found.missing, [ids[1]]);
  assert.deepEqual(
    found.referrers.map((r) => r.key).sort(),
    ["doc0", "doc1"],
  );
  assert.deepEqual(found.removed, []);
  // One shard of two sees part of the store; both see all of it.
  const parts = [await s.verify({ shard: { index: 0, count: 2 } }), await s.verify({ shard: { index: 1, count: 2 } })];
  assert.equal(parts[0].checked + parts[1].checked, 3);

  const repaired = await s.verify({ repair: true });
  assert.deepEqual(repaired.removed, [ids[0]]);
  assert.equal(await s.getBlob(ids[0]), undefined);
  // The entry that referenced it stays, reported.
  assert.deepEqual(await s.get("doc0"), { i: 0 });
  assert.deepEqual((await s.verify()).missing.sort(), [ids[0], ids[1]].sort());
  // putBlob writes their bytes again (it refreshed the record alone, so a
  // lost blob stayed lost), keeping the records and their counts.
  for (const i of [0, 1]) {
    assert.equal(await s.putBlob(new Uint8Array(1000).fill(i)), ids[i]);
    assert.deepEqual(await s.getBlob(ids[i]), new Uint8Array(1000).fill(i));
  }
  const rebuilt = await s.rebuild();
  assert.deepEqual([rebuilt.blobsFixed, rebuilt.entriesFixed], [0, 0]);
  const after = await s.verify();
  assert.deepEqual([after.checked, after.corrupt, after.missing], [4, [], []]);
});

test("health reads the run log kept in the store, across sweepers", async () => {
  const clock = manualClock();
  const store = memoryStore();
  const s = new Sweeper(store, { clock, schedule: { periodMs: 60_000 } });
  const fresh = await s.health();
  assert.equal(fresh.status, "warning");
  assert.deepEqual(fresh.reasons, ["no run is logged in this store yet"]);
  await s.put("a", 1, { ttlMs: 1 });
  clock.now += 10;
  await s.run({ mode: "full" });
  const ok = await s.health();
  assert.equal(ok.status, "healthy");
  assert.equal(ok.lastSuccessAt, T0 + 10);
  assert.equal(ok.runs.length, 1);
  assert.equal(ok.runs[0].deleted, 1);
  assert.equal(ok.runs[0].mode, "full");
  s.close();
  // A new sweeper (a reload) sees the same log; two periods later it is critical.
  clock.now += 3 * 60_000;
  const later = new Sweeper(store, { clock, schedule: { periodMs: 60_000 } });
  const h = await later.health();
  assert.equal(h.status, "critical");
  assert.match(h.reasons[0], /^no successful run for 180000 ms, more than two periods of 60000 ms$/);
  later.close();
});

test("the run log counts what each run deleted itself; a resumed run adds to the line of the run it went on from", async () => {
  const s = new Sweeper(memoryStore(), { batchSize: 10 });
  await s.putMany(Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, value: i, expiresAt: 1 })));
  const stop = new AbortController();
  const first = await s.run({ mode: "full", signal: stop.signal, onProgress: (p) => { if (p.processed >= 10) stop.abort(); } });
  const firstDeleted = first.deleted.expired.count;
  assert.ok(!first.done && firstDeleted > 0 && firstDeleted < 50, JSON.stringify(first));
  const second = await s.run({ mode: "full" });
  assert.equal(second.resumed, true);
  assert.equal(second.deleted.expired.count, 50, "the report counts the run it resumed too");
  const { runs } = await s.health();
  // One line for the run, not one per part: the 50 once, not 50 + firstDeleted.
  assert.deepEqual(runs.map((r) => [r.done, r.deleted]), [[true, 50]]);
  assert.equal(runs[0].bytes, second.deleted.expired.bytes);
  // The next run, not resumed, has a line of its own.
  await s.put("late", 1, { expiresAt: 1 });
  await s.run();
  assert.deepEqual((await s.health()).runs.map((r) => [r.done, r.deleted]), [[true, 50], [true, 1]]);
  s.close();
});

// Byte surgery on entry records, to write them as earlier releases did.
const enc = new TextEncoder();
function find(bytes, needle) {
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
/** The length and value of the MessagePack unsigned integer at `at`. */
function uintAt(bytes, at) {
  const m = bytes[at];
  if (m < 0x80) return [1, BigInt(m)];
  const n = { 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8 }[m];
  let v = 0n;
  for (let i = 1; i <= n; i++) v = (v << 8n) | BigInt(bytes[at + i]);
  return [1 + n, v];
}
/** The record without its `accessedAt` field (and one field less in its map header). */
function withoutAccessedAt(record) {
  const name = Uint8Array.of(0xaa, ...enc.encode("accessedAt"));
  const at = find(record, name);
  assert.ok(at > 0 && (record[2] & 0xf0) === 0x80);
  const [len] = uintAt(record, at + name.length);
  const out = Uint8Array.of(...record.slice(0, at), ...record.slice(at + name.length + len));
  out[2] -= 1;
  return out;
}
/** An inline record `[1, meta, bin]` split into `[1, meta]` and the value's bytes, with the write id. */
function splitInline(record) {
  assert.equal(record[0], 0x93);
  let n = 1;
  while (!(record[record.length - n - 2] === 0xc4 && record[record.length - n - 1] === n)) n++;
  const meta = Uint8Array.of(0x92, ...record.slice(1, record.length - n - 2));
  const value = record.slice(record.length - n);
  const name = Uint8Array.of(0xa7, ...enc.encode("writeId"));
  const [, writeId] = uintAt(record, find(record, name) + name.length);
  return { meta, value, writeId: writeId.toString(16).padStart(16, "0") };
}

test("migrate rewrites entry records written in older layouts, on a key-value store", async () => {
  const map = new Map();
  const clock = manualClock();
  const s = new Sweeper(kvStore(map), { clock });
  await s.put("fresh", { v: 0 }, { namespace: "n" });
  await s.put("no-accessed", { v: 1 }, { namespace: "n" });
  await s.put("own-value", { v: 2 }, { namespace: "n" });
  clock.now += 1_000;
  await s.get("no-accessed", { namespace: "n" });
  await s.get("own-value", { namespace: "n" });
  await s.history(); // writes the deferred accessedAt refreshes
  const meta = (key) => `kvsweep/m/n\u0000${key}`;
  map.set(meta("no-accessed"), withoutAccessedAt(new Uint8Array(map.get(meta("no-accessed")))));
  const split = splitInline(new Uint8Array(map.get(meta("own-value"))));
  map.set(meta("own-value"), split.meta);
  const valueKey = `kvsweep/v/n\u0000own-value\u0001${split.writeId}`;
  map.set(valueKey, split.value);
  map.set(meta("damaged"), Uint8Array.of(0xc1));
  // Older records read as they are: no use known since the write.
  const old = await s.detail("no-accessed", { namespace: "n" });
  assert.equal(old.accessedAt, old.updatedAt);
  assert.deepEqual((await s.detail("own-value", { namespace: "n" })).value, { v: 2 });

  const report = await s.migrate();
  assert.deepEqual(report, { scanned: 4, current: 1, upgraded: 2, inlined: 1, changed: 0, unreadable: [{ namespace: "n", key: "damaged" }] });
  assert.ok(find(new Uint8Array(map.get(meta("no-accessed"))), enc.encode("accessedAt")) > 0);
  assert.equal(map.get(meta("own-value"))[0], 0x93, "the value is in the entry's record");
  assert.equal(map.has(valueKey), false);
  assert.deepEqual(map.get(meta("damaged")), Uint8Array.of(0xc1), "never rewritten");
  for (const [key, v] of [["fresh", 0], ["no-accessed", 1], ["own-value", 2]]) {
    assert.deepEqual(await s.get(key, { namespace: "n" }), { v });
  }
  const again = await s.migrate();
  assert.deepEqual([again.scanned, again.current, again.upgraded], [4, 3, 0]);
  s.close();
  // Without compare-and-set a rewrite could undo a write made meanwhile.
  const k = new Sweeper(kvStore(createStorage()));
  await assert.rejects(k.migrate(), { message: /^kvsweep: migrate: the store has no compare-and-set/ });
  k.close();
});

test("health({ maxBacklog }) warns when a full plan finds more garbage than that", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock });
  await s.run();
  await s.putMany(Array.from({ length: 5 }, (_, i) => ({ key: `k${i}`, value: i, ttlMs: 10 })));
  clock.now += 100;
  assert.equal((await s.health()).status, "healthy");
  assert.equal((await s.health({ maxBacklog: 5 })).status, "healthy");
  const h = await s.health({ maxBacklog: 4 });
  assert.equal(h.status, "warning");
  assert.deepEqual(h.reasons, ["5 items of garbage wait for a cleanup, more than maxBacklog (4); run a full cleanup"]);
  await assert.rejects(s.health({ maxBacklog: -1 }), { message: "kvsweep: health options.maxBacklog must not be negative, got -1" });
  await assert.rejects(s.health({ backlog: 1 }), { message: /^kvsweep: health options: unknown option "backlog"; the options are maxBacklog$/ });
  s.close();
});

test("a store that holds nothing yet is empty in the default namespace: history, detail and resolvePrefix answer, not refuse", async () => {
  const s = new Sweeper(memoryStore());
  assert.deepEqual(await s.history(), []);
  assert.deepEqual(await s.history({ namespace: "" }), []);
  assert.equal(await s.detail("a"), undefined);
  assert.deepEqual(await s.resolvePrefix("a"), { none: true });
  await assert.rejects(s.detail("a", { namespace: "nobody" }), /detail: no namespace "nobody"/);
  // Deleting is another matter: nothing there to delete is refused by name.
  await assert.rejects(s.deleteNamespace(""), /deleteNamespace: no namespace "" \(none is registered or holds entries\)/);
  s.close();
});

test("maintenance calls refuse bad arguments by name", async () => {
  const s = new Sweeper(memoryStore());
  await s.put("k", 1);
  const cases = [
    [() => s.resolvePrefix(""), 'kvsweep: resolvePrefix: prefix must be a non-empty, well-formed string, got ""'],
    [() => s.resolvePrefix(5), "kvsweep: resolvePrefix: prefix must be a non-empty, well-formed string, got 5"],
    [() => s.resolvePrefix("k", { namespace: "nobody" }), 'kvsweep: resolvePrefix: no namespace "nobody" (none is registered or holds entries)'],
    [() => s.history({ namespace: "nobody" }), 'kvsweep: history: no namespace "nobody" (none is registered or holds entries)'],
    [() => s.history({ limit: 0 }), "kvsweep: history options.limit must be a whole number from 1 to 10000, got 0"],
    [() => s.history({ limit: 2.5 }), "kvsweep: history options.limit must be a whole number from 1 to 10000, got 2.5"],
    [() => s.history({ limit: 1.5 }), "kvsweep: history options.limit must be a whole number from 1 to 10000, got 1.5"],
    [() => s.history({ lmit: 1 }), 'kvsweep: history options: unknown option "lmit"; the options are namespace, limit'],
    [() => s.prune(), "kvsweep: prune options.olderThanMs is required: entries not updated for that many milliseconds are deleted"],
    [() => s.prune({ olderThanMs: -1 }), "kvsweep: prune options.olderThanMs must not be negative, got -1"],
    [() => s.prune({ olderThanMs: 1e21 }), "kvsweep: prune options.olderThanMs must be a whole number from 0 to 2^53 - 1 (Number.MAX_SAFE_INTEGER), got 1e+21"],
    [() => s.verify({ shard: { index: 2, count: 2 } }), "kvsweep: verify options.shard must have 0 <= index < count <= 4294967295, got index 2 and count 2"],
    [() => s.verify({ shard: { index: 0 } }), "kvsweep: verify options.shard must be { index, count } with both set, got an object"],
    [() => s.verify({ repair: "yes" }), 'kvsweep: verify options.repair must be true or false, got "yes"'],
    [() => s.detail("", {}), "kvsweep: detail: key must be a non-empty string, got \"\""],
    [() => s.deleteNamespace(7), "kvsweep: deleteNamespace: namespace must be a well-formed string, got 7"],
  ];
  for (const [call, message] of cases) await assert.rejects(call(), { message });
  s.free();
  await assert.rejects(s.health(), { message: "kvsweep: Sweeper.health: this Sweeper was freed (free() was called); make a new one" });
});

test("moveTo copies a store to another backend, reads it back, and empties the source", async () => {
  for (const [from, to] of [
    [memoryStore(), await openIndexedDb(`move-${Math.random()}`)],
    [await openIndexedDb(`move-${Math.random()}`), memoryStore()],
  ]) {
    const clock = manualClock();
    const s = new Sweeper(from, { clock });
    const photo = await s.putBlob(new Uint8Array(20_000).fill(9));
    await s.put("note", { title: "t", at: new Date(5) }, { namespace: "a", blobs: [photo], group: "g" });
    await s.put("big", new Uint8Array(50_000).fill(1), { namespace: "b", ttlMs: 60_000 });
    await s.put("x", 1n);
    const report = await s.moveTo(to);
    const what = `${from.kind} → ${to.kind}: ${JSON.stringify(report)}`;
    assert.deepEqual(
      [report.entries, report.blobs, report.blobBytes, report.namespaces, report.verified, report.left, report.corrupt, report.corruptBlobs, report.missingBlobs, report.resumed],
      [3, 1, 20_000, 3, true, 0, [], [], [], false],
      what,
    );
    // Three entries, three namespaces and the blob went from the source.
    assert.equal(report.cleared, 7, what);
    assert.equal(report.passes, 2, what);
    assert.deepEqual(await s.history(), []);
    assert.equal(await s.getBlob(photo), undefined);
    const t = new Sweeper(to, { clock });
    const note = await t.detail("note", { namespace: "a" });
    assert.deepEqual(note.value, { title: "t", at: new Date(5) });
    assert.equal(note.group, "g");
    assert.equal(note.createdAt, T0);
    assert.deepEqual(await t.get("big", { namespace: "b" }), new Uint8Array(50_000).fill(1));
    assert.equal(await t.get("x"), 1n);
    assert.deepEqual(await t.getBlob(photo), new Uint8Array(20_000).fill(9));
    assert.equal((await t.verify()).checked, 1);
    assert.deepEqual((await t.plan({ mode: "full" })).actions, []);
    // Not into a store that holds entries, not into the source itself.
    await s.put("again", 2);
    await assert.rejects(s.moveTo(to), { message: "kvsweep: moveTo: the target store already holds entries; move into an empty store" });
    await assert.rejects(s.moveTo(from), { message: "kvsweep: moveTo: the target is the source store itself" });
    s.close();
    t.close();
  }
});

test("moveTo takes reads' pending accessedAt refreshes with it: the entry just read is the one a quota keeps", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock });
  await s.put("a", 1);
  clock.now += 5_000;
  await s.put("b", 2);
  clock.now += 5_000;
  assert.equal(await s.get("a"), 1); // its refresh is deferred
  const to = memoryStore();
  await s.moveTo(to);
  const t = new Sweeper(to, { clock, policy: { maxEntries: 1 } });
  assert.deepEqual((await t.plan({ mode: "full" })).actions.map((a) => a.key), ["b"]);
  s.close();
  t.close();
});

test("moveTo refuses a target that is not a store, the source opened twice, and a source without compare-and-set", async () => {
  const name = `twice-${Math.random()}`;
  const s = new Sweeper(await openIndexedDb(name));
  await assert.rejects(s.moveTo({}), { message: "kvsweep: Sweeper.moveTo(target): target must be a KvStore from memoryStore(), openIndexedDb(), openOpfs(), kvStore() or durableObjectStore(), got an object" });
  await assert.rejects(s.moveTo(), { message: /target must be a KvStore .* got undefined$/ });
  // Empty, so only the probe can tell that it is the same database.
  await assert.rejects(s.moveTo(await openIndexedDb(name)), { message: "kvsweep: moveTo: the target is the source store itself" });
  const target = memoryStore();
  target.free();
  await assert.rejects(s.moveTo(target), { message: "kvsweep: Sweeper.moveTo(target): target was freed (free() was called on it)" });
  s.close();
  // unstorage: no compare-and-set.
  const k = new Sweeper(kvStore(createStorage()));
  await k.put("a", 1);
  await assert.rejects(k.moveTo(memoryStore()), { message: /^kvsweep: moveTo: the source store has no compare-and-set, so a write during the move could be lost/ });
  assert.equal(await k.get("a"), 1);
  k.close();
});

test("schedule.auditShards: scheduled full runs verify the next shard each, and health() says what they found", async () => {
  const map = new Map();
  const s = new Sweeper(kvStore(map), { schedule: { periodMs: 0, debounceMs: 0, maxWaitMs: 0, auditShards: 2 } });
  const ids = [];
  for (let i = 0; i < 6; i++) ids.push(await s.putBlob(new Uint8Array(300).fill(i)));
  await s.put("doc", 1, { blobs: ids });
  const key = [...map.keys()].find((k) => k.includes(ids[4]) && map.get(k)?.length === 300);
  map.set(key, new Uint8Array(300));
  for (let runs = 1; runs <= 2; runs++) {
    s.request("full");
    while (s.stats().runs < runs) await new Promise((r) => setTimeout(r, 5));
  }
  const h = await s.health();
  assert.equal(h.status, "warning", JSON.stringify(h));
  assert.match(h.reasons.join("\n"), /^the rolling audit found 1 corrupt, missing or unreadable blobs in shard [01] of 2; verify\(\) lists them$/m);
  s.close();
  assert.throws(() => new Sweeper(memoryStore(), { schedule: { auditShards: 2e6 } }), { message: "kvsweep: new Sweeper(store, options): options.schedule.auditShards must be a whole number from 0 to 1000000, got 2000000" });
  assert.throws(() => new Sweeper(memoryStore(), { schedule: { auditShards: -2 } }), { message: "kvsweep: new Sweeper(store, options): options.schedule.auditShards must be a whole number from 0 to 1000000, got -2" });
  assert.throws(() => new Sweeper(memoryStore(), { schedule: { auditShards: 1.5 } }), { message: "kvsweep: new Sweeper(store, options): options.schedule.auditShards must be a whole number from 0 to 1000000, got 1.5" });
});

test("an unreadable blob record: runs and health report it, its blob stays, and it holds back no other entry of a batch (kvStore, fake-indexeddb)", async () => {
  const stores = [
    ["kv", async () => {
      const m = new Map();
      return { store: kvStore(m), damage: async (id) => m.set(`kvsweep/c/\u0000${id}`, Uint8Array.of(0xc1)) };
    }],
    ["indexeddb", async () => {
      const name = `blob-torn-${Date.now()}`;
      const store = await openIndexedDb(name);
      const damage = async (id) => {
        const db = await new Promise((ok, fail) => Object.assign(indexedDB.open(name), { onsuccess: (e) => ok(e.target.result), onerror: fail }));
        await new Promise((ok) => (Object.assign(db.transaction("blobMeta", "readwrite"), { oncomplete: ok }).objectStore("blobMeta").put(Uint8Array.of(0xc1), ["", id])));
        db.close();
      };
      return { store, damage };
    }],
  ];
  for (const [kind, open] of stores) {
    const { store, damage } = await open();
    const s = new Sweeper(store);
    const id = await s.putBlob(new Uint8Array([1, 2]));
    await s.put("a", 1, { namespace: "N", blobs: [id] });
    await s.put("b", 2, { namespace: "N" });
    await damage(id);
    const run = await s.run();
    assert.deepEqual(run.corruptBlobs, [id], kind);
    assert.deepEqual(run.errors, [], kind);
    const health = await s.health({ maxBacklog: 10 });
    assert.equal(health.status, "warning", kind);
    assert.ok(health.reasons.includes("blob records that cannot be read: 1; their blobs are kept (verify() lists them)"), JSON.stringify(health.reasons));
    // A batch holding the entry that references it, and one that does not:
    // both go, and the blob stays (its count, unknown, is not lowered).
    const cleared = await s.clear("N");
    assert.deepEqual(cleared.errors, [], kind);
    assert.equal(cleared.deleted.cleared?.count, 2, kind);
    assert.deepEqual(await s.getBlob(id), new Uint8Array([1, 2]), kind);
    await s.close();
    store.close();
  }
});

test("moveTo names an unreadable entry with its namespace, and an unreadable blob record apart, and clears nothing", async () => {
  const m = new Map();
  const s = new Sweeper(kvStore(m));
  const id = await s.putBlob(new Uint8Array([7]));
  await s.put("bad", 1, { namespace: "N" });
  await s.put("good", 2, { namespace: "M", blobs: [id] });
  m.set("kvsweep/m/N\u0000bad", Uint8Array.of(0xc1));
  m.set(`kvsweep/c/\u0000${id}`, Uint8Array.of(0xc1));
  m.set(`kvsweep/b/\u0000${id}`, Uint8Array.of(8)); // its bytes no longer its hash either: listed once
  const report = await s.moveTo(memoryStore());
  assert.deepEqual(report.corrupt, [{ namespace: "N", key: "bad" }]);
  assert.deepEqual(report.corruptBlobs, [id]);
  assert.equal(report.verified, false);
  assert.equal(report.cleared, 0);
  assert.equal(await s.get("good", { namespace: "M" }), 2);
  await s.close();
});

test("an unreadable run log: health says so, not that no run is logged yet", async () => {
  const m = new Map();
  const s = new Sweeper(kvStore(m), { schedule: { periodMs: 3_600_000 } });
  await s.run();
  assert.equal((await s.health()).runs.length, 1);
  // Damaged, one byte of a newer format, or not bytes at all.
  for (const damaged of [Uint8Array.of(0xc1, 1, 2, 3), Uint8Array.of(0xc1), "not bytes"]) {
    m.set("kvsweep/s/\u0000runs", damaged);
    const health = await s.health();
    assert.equal(health.status, "warning");
    assert.deepEqual(health.reasons, ["the run log cannot be read (damaged, or a newer version's); the next run starts a new one"], String(damaged));
  }
  await s.close();
});

test("a maintenance call cut short by close() says so, by name (fake-indexeddb)", async () => {
  const store = await openIndexedDb(`cut-${Date.now()}`);
  const s = new Sweeper(store);
  for (let i = 0; i < 3000; i += 1000) await s.putMany(Array.from({ length: 1000 }, (_, j) => ({ key: `k${i + j}`, value: i + j })));
  const verifying = s.verify();
  await 0;
  s.close();
  await assert.rejects(verifying, { message: "kvsweep: verify: stopped, this Sweeper was closed (close() was called)" });
  store.close();
});

test("an unreadable entry record: health warns of it, delete removes it, and runs collect again", async () => {
  const m = new Map();
  let now = 1_700_000_000_000;
  const s = new Sweeper(kvStore(m), { clock: () => now, policy: { orphanGraceMs: 0 } });
  const orphan = await s.putBlob(new Uint8Array([42]));
  await s.put("bad", 1, { namespace: "N" });
  await s.put("session", 1, { namespace: "N", ttlMs: 5 });
  m.set("kvsweep/m/N\0bad", new Uint8Array([0xc1])); // a torn record
  now += 60_000;
  const frozen = await s.run();
  assert.deepEqual(frozen.corrupt, [{ namespace: "N", key: "bad" }]);
  assert.deepEqual(frozen.deleted, {});
  const health = await s.health({ maxBacklog: 10 });
  assert.equal(health.status, "warning");
  assert.ok(health.reasons.some((r) => /^1 entry cannot be read: no run deletes in its namespace, nor any blob, until it is put again or deleted \(put\(key\), delete\(key\)\)$/.test(r)), JSON.stringify(health.reasons));
  await assert.rejects(s.put("user", 2, { namespace: "N", refs: ["bad"] }), /put: metadata of "bad" in namespace "N" .*put or delete it to replace it/);
  assert.equal(await s.delete("bad", { namespace: "N" }), true);
  const after = await s.run();
  assert.equal(after.deleted.expired.count, 1);
  assert.equal(after.deleted.orphanBlob.count, 1);
  assert.equal(await s.getBlob(orphan), undefined);
  assert.equal((await s.health({ maxBacklog: 10 })).status, "healthy");
});

test("clear, prune and deleteNamespace stopped by close() say so: stopped \"closed\"", async () => {
  for (const call of [(s) => s.clear(""), (s) => s.prune({ olderThanMs: 0 }), (s) => s.deleteNamespace("")]) {
    let now = 1_700_000_000_000;
    const s = new Sweeper(memoryStore(), { clock: () => now, batchSize: 10 });
    await s.putMany(Array.from({ length: 100 }, (_, i) => ({ key: `k${i}`, value: i })));
    now += 1000;
    const pending = call(s);
    await new Promise((r) => setTimeout(r, 0));
    s.close();
    const report = await pending;
    assert.equal(report.done, false, JSON.stringify(report));
    assert.equal(report.stopped, "closed");
  }
});

test("a run that finishes one stopped periods ago leaves health healthy: its log line takes the time of its last part", async () => {
  let now = 1_800_000_000_000;
  const s = new Sweeper(memoryStore(), { clock: () => now, batchSize: 10, schedule: { periodMs: 3_600_000 } });
  await s.putMany(Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, value: i, ttlMs: 10 })));
  now += 1000;
  const stop = new AbortController();
  const first = await s.run({ signal: stop.signal, onProgress: (p) => p.processed >= 10 && stop.abort() });
  assert.equal(first.done, false);
  now += 3 * 3_600_000;
  const second = await s.run();
  assert.deepEqual([second.done, second.resumed], [true, true]);
  const h = await s.health();
  assert.equal(h.status, "healthy", JSON.stringify(h.reasons));
  assert.equal(h.lastSuccessAt, now);
  assert.deepEqual(h.runs.map((r) => [r.at, r.done, r.deleted]), [[now, true, 50]]);
  s.close();
});

test("IndexedDB: blob bytes that are not bytes (other code's) fail getBlob, not read as made-up bytes (review)", async () => {
  const name = `blob-not-bytes-${Math.random()}`;
  const s = new Sweeper(await openIndexedDb(name));
  const id = await s.putBlob(new Uint8Array([1, 2, 3]));
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open(name);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const tx = db.transaction("blobs", "readwrite");
  const store = tx.objectStore("blobs");
  const key = await new Promise((resolve) => (store.getAllKeys().onsuccess = (e) => resolve(e.target.result[0])));
  store.put("not bytes", key);
  await new Promise((r) => (tx.oncomplete = r));
  db.close();
  await assert.rejects(s.getBlob(id), /blob bytes that are not bytes kvsweep wrote/);
  s.close();
});

test("the IndexedDB records of OPFS and Cache Storage stores: a value that is not bytes at an entry's record (other code's) is replaced by a put (its check took it for absent, and the put failed with \"kept colliding\")", async () => {
  const db = await openRecords(`not-bytes-${Date.now()}`, () => {});
  const s = new Sweeper(kvStoreOfDriver(recordsDriver(db, "opfs", 250)));
  await s.put("victim", 1);
  const tx = db.transaction("records", "readwrite");
  tx.objectStore("records").put({ not: "bytes" }, "m/\u0000victim");
  await new Promise((r) => (tx.oncomplete = r));
  await assert.rejects(s.get("victim"), /could not be read: record is not one kvsweep wrote/);
  await s.put("victim", 2);
  assert.equal(await s.get("victim"), 2);
  s.close();
  db.close();
});
