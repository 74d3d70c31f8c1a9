// kvStore over the key–value objects Node users already have: a Map, a real
// unstorage (memory driver), a real keyv, a generic get/put/delete/list
// object, and a Workers KV double for 10,000-entry slices under an operation
// limit. Real Workers KV and Durable Objects: tests/edge/workers.test.mjs;
// real Deno KV: tests/edge/deno.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createStorage } from "unstorage";
import Keyv from "keyv";
import { Sweeper, kvStore, durableObjectStore, memoryStore, r2, collectR2Orphans, runFromAlarm, scheduleCleanup } from "../../pkg/node.js";
import { kvScenario, checkScenario, POLICY } from "../shared/kv-scenario.mjs";
import { roundTripFailures } from "../shared/fidelity.mjs";
import { Generic } from "../shared/generic-store.mjs";

const pkg = { Sweeper };


/**
 * Workers KV as its documentation describes it, in memory: list pages of at
 * most 1,000 keys in byte order with a cursor, `list_complete`, metadata
 * with each key; pages that come back short (even empty) before the end.
 * Every call is counted.
 */
class KvDouble {
  constructor() {
    this.map = new Map();
    this.calls = 0;
    this.lists = 0;
  }
  async get(name, type) {
    this.calls++;
    assert.equal(type, "arrayBuffer");
    const e = this.map.get(name);
    return e ? e.value.slice().buffer : null;
  }
  async getWithMetadata(name) {
    this.calls++;
    const e = this.map.get(name);
    return { value: e ? e.value.slice().buffer : null, metadata: e?.metadata ?? null };
  }
  async put(name, value, options = {}) {
    this.calls++;
    assert.ok(value instanceof Uint8Array);
    if (options.metadata !== undefined) assert.ok(JSON.stringify(options.metadata).length <= 1024, "metadata over 1024 bytes");
    this.map.set(name, { value: new Uint8Array(value), metadata: options.metadata, expiration: options.expiration });
  }
  async delete(name) {
    this.calls++;
    this.map.delete(name);
  }
  async list({ prefix = "", cursor, limit = 1000 }) {
    this.calls++;
    this.lists++;
    assert.ok(limit >= 1 && limit <= 1000, `list limit ${limit}`);
    const names = [...this.map.keys()].filter((n) => n.startsWith(prefix)).sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1));
    let at = cursor ? names.findIndex((n) => Buffer.from(n) > Buffer.from(cursor)) : 0;
    if (at < 0) at = names.length;
    // Every third page is cut short, and some come back empty.
    const take = this.lists % 3 === 0 ? Math.floor(limit / 3) : limit;
    const page = names.slice(at, at + take);
    const complete = at + page.length >= names.length;
    return {
      keys: page.map((name) => ({ name, metadata: this.map.get(name).metadata })),
      list_complete: complete,
      cursor: complete ? undefined : page.at(-1) ?? names[at - 1] ?? "",
    };
  }
}

test("kvStore recognises each backend and says what it promises", () => {
  const kinds = [
    [new Map(), "map", { atomic: true, compareAndSet: true }],
    [createStorage(), "unstorage", { atomic: false, compareAndSet: false }],
    [new Keyv(), "keyv", { atomic: false, compareAndSet: false }],
    [new Generic(), "kv", { atomic: false, compareAndSet: false }],
    [new KvDouble(), "workers-kv", { atomic: false, compareAndSet: false, visibilityMs: 60_000, nativeExpiry: true }],
  ];
  for (const [x, kind, caps] of kinds) {
    const store = kvStore(x);
    assert.equal(store.kind, kind);
    const got = store.capabilities();
    for (const [k, v] of Object.entries(caps)) assert.equal(got[k], v, `${kind}.${k}`);
  }
  assert.equal(kvStore(createStorage(), { visibilityMs: 5000 }).capabilities().visibilityMs, 5000);
});

test("kvStore and durableObjectStore refuse what they cannot use, by name", () => {
  assert.throws(() => kvStore({ get() {} }), /kvStore\(x\): x must be a Workers KV binding, a Deno\.Kv, .* got an object/);
  assert.throws(() => kvStore(null), /got null/);
  assert.throws(() => kvStore(new Map(), { prefix: 5 }), /kvStore\(x\): options\.prefix must be a string, got 5/);
  // Encoded as UTF-8 a lone surrogate turns into U+FFFD: two prefixes would be one store.
  assert.throws(() => kvStore(new Map(), { prefix: "a\ud800/" }), /kvStore\(x\): options\.prefix holds a lone surrogate \(it must be well-formed UTF-16\)/);
  assert.throws(() => kvStore(new Map(), { visibilityMs: -1 }), /options\.visibilityMs must be a whole number/);
  assert.throws(() => durableObjectStore(new Map()), /durableObjectStore\(storage\): storage must be a Durable Object's ctx\.storage, got a Map/);
});

test("on a store without compare-and-set, grace periods shorter than its visibility window and a write are refused", () => {
  const store = kvStore(new KvDouble());
  assert.throws(
    () => new Sweeper(store, { policy: { orphanGraceMs: 60_000 } }),
    /options\.policy\.orphanGraceMs must be at least 120000 ms on a workers-kv store/,
  );
  assert.throws(() => new Sweeper(store, { policy: { tempMaxAgeMs: 1000 } }), /options\.policy\.tempMaxAgeMs must be at least 120000 ms/);
  new Sweeper(store, { policy: POLICY });
  // With compare-and-set, the window does not matter.
  new Sweeper(kvStore(new Map()), { policy: { orphanGraceMs: 0 } });
});

for (const [name, make, raw] of [
  ["a Map", () => new Map(), (m) => [...m.keys()]],
  // (Without the copies of records rewritten in place: see unstorageDriver.)
  ["unstorage (memory driver)", () => createStorage(), async (s) => (await s.getKeys()).filter((k) => !k.endsWith("~")).map(decodeURIComponent)],
  ["keyv (memory)", () => new Keyv(), async (k) => {
    const out = [];
    for await (const [key] of k.iterator()) out.push(key);
    return out;
  }],
  ["a generic get/put/delete/list object", () => new Generic(), (g) => [...g.map.keys()]],
  ["a Workers KV double", () => new KvDouble(), (d) => [...d.map.keys()]],
]) {
  test(`the cleanup scenario on ${name}: survivors exact, nothing left to clean`, async () => {
    const backend = make();
    const out = await kvScenario(pkg, kvStore(backend), () => raw(backend));
    checkScenario(out, assert);
  });
}

test("a record that is not bytes (a string put there by other code) is unreadable, kept and reported, and a put replaces it: its namespace does not stay frozen", async () => {
  const m = new Map();
  let now = 1.8e12;
  const s = new Sweeper(kvStore(m), { clock: () => now, policy: { maxAgeMs: 1000 } });
  await s.put("victim", 1);
  await s.put("old", 2);
  m.set("kvsweep/m/\u0000victim", "garbage");
  now += 5000;
  const frozen = await s.run();
  assert.deepEqual(frozen.corrupt, [{ namespace: "", key: "victim" }]);
  assert.deepEqual(frozen.deleted, {});
  await assert.rejects(s.put("user", 3, { refs: ["victim"] }), /^Error: kvsweep: put: metadata of "victim" in namespace "" .*put or delete it to replace it/);
  assert.equal(m.get("kvsweep/m/\u0000victim"), "garbage", "kept as it was");
  await s.put("victim", 3);
  assert.equal(await s.get("victim"), 3);
  const after = await s.run();
  assert.deepEqual(after.corrupt, []);
  assert.deepEqual(after.deleted, { maxAge: { count: 1, bytes: 1 } });
  assert.equal(await s.get("victim"), 3);
});

test("on unstorage and keyv too, a value that is not bytes at an entry's record (other code's) is replaced by a put, and removed by a delete", async () => {
  const backends = [
    ["unstorage", () => createStorage(), async (b, v) => b.setItem((await b.getKeys()).find((k) => decodeURIComponent(k).endsWith("\0victim")), v)],
    ["keyv", () => new Keyv(), async (b, v) => b.set("kvsweep/m/\0victim", v, 0)],
  ];
  for (const [kind, make, spoil] of backends) {
    const backend = make();
    const s = new Sweeper(kvStore(backend));
    await s.put("victim", 1);
    await spoil(backend, { not: "bytes" });
    await assert.rejects(s.get("victim"), /could not be read/, kind);
    await s.put("victim", 2);
    assert.equal(await s.get("victim"), 2, kind);
    await spoil(backend, { not: "bytes" });
    assert.equal(await s.delete("victim"), true, kind);
    assert.equal(await s.get("victim"), undefined, kind);
  }
});

test("a namespace holding U+0000 is refused by every call, by its argument's name: on a key-value store it would name another namespace's entry", async () => {
  const m = new Map();
  const s = new Sweeper(kvStore(m));
  await s.put("b\u0000k", "secret of a", { namespace: "a" }); // backend name "a\0b\0k"
  const bad = (name) => ({ message: `kvsweep: ${name} must not contain U+0000, which separates a namespace from its key on key–value stores, got "a\\u0000b"` });
  await assert.rejects(s.put("k", 1, { namespace: "a\u0000b" }), bad("put options.namespace"));
  await assert.rejects(s.putMany([{ key: "k", value: 1, namespace: "a\u0000b" }]), bad("putMany items[0].namespace"));
  await assert.rejects(s.get("k", { namespace: "a\u0000b" }), bad("get options.namespace"));
  await assert.rejects(s.delete("k", { namespace: "a\u0000b" }), bad("delete options.namespace"));
  await assert.rejects(s.clear("a\u0000b"), bad("clear: namespace"));
  await assert.rejects(s.history({ namespace: "a\u0000b" }), bad("history options.namespace"));
  await assert.rejects(async () => {
    for await (const key of s.keys({ namespace: "a\u0000b" })) assert.fail(key);
  }, bad("keys options.namespace"));
  assert.equal(await s.get("b\u0000k", { namespace: "a" }), "secret of a", "namespace a's entry untouched");
  // A prefix long enough for no key is named as what is long, whatever the namespace.
  // At the boundary, a prefix that leaves room for an empty namespace only
  // says so of the namespace (it blamed the prefix; review).
  const edge = new Sweeper(kvStore(new KvDouble(), { prefix: "p".repeat(471) }), { policy: POLICY });
  await edge.put("k", 1);
  await assert.rejects(edge.put("k", 1, { namespace: "x" }), /options\.namespace is 1 bytes, too long .*\(a namespace may have at most 0 bytes, with a key of one byte\)$/);
  const prefixed = new Sweeper(kvStore(new KvDouble(), { prefix: "p".repeat(600) }), { policy: POLICY });
  await assert.rejects(prefixed.put("k", 1, { namespace: "a" }), /^Error: kvsweep: put\("k"\): kvStore options\.prefix is 600 bytes, too long/);
});

test("while close() waits for a get under way, the timer is cancelled, no run starts, stats() answers, and later calls are refused", async () => {
  const g = new Generic();
  const get = g.get.bind(g);
  let release = null;
  g.get = (k) => (release === null && k.endsWith("\u0000stuck") && g.hold ? new Promise((r) => (release = () => r(get(k)))) : get(k));
  let lists = 0;
  const list = g.list.bind(g);
  g.list = (prefix) => (lists++, list(prefix));
  const s = new Sweeper(kvStore(g), { schedule: { periodMs: 30, debounceMs: 0 } });
  await s.put("stuck", 1);
  await s.put("old", 2, { ttlMs: 1 });
  g.hold = true;
  const read = s.get("stuck");
  await new Promise((r) => setTimeout(r, 5));
  const closing = s.close();
  const listsAtClose = lists;
  assert.equal(typeof s.stats().state, "string", "stats() answers while close() waits");
  assert.equal(s.progress().running, false);
  await assert.rejects(s.put("late", 1), /^Error: kvsweep: put: this Sweeper is closed \(close\(\) was called\)$/);
  await assert.rejects(async () => {
    for await (const key of s.keys()) assert.fail(key);
  }, /^Error: kvsweep: keys: this Sweeper is closed/);
  await new Promise((r) => setTimeout(r, 200)); // periods of 30 ms pass
  assert.equal(lists, listsAtClose, "no background run after close()");
  assert.ok([...g.map.keys()].some((k) => k.endsWith("\u0000old")), "the expired entry was not collected after close()");
  release();
  assert.equal(await read, 1);
  await closing;
  assert.equal(s.stats().state, "closed");
});

test("close() waits for a refresh of accessedAt a timed flush is already writing (a slow store)", async () => {
  const g = new Generic();
  const put = g.put.bind(g);
  let slow = 0;
  let closed = false;
  const late = [];
  g.put = async (k, v) => {
    if (slow) await new Promise((r) => setTimeout(r, slow));
    if (closed) late.push(k);
    return put(k, v);
  };
  const clock = () => clock.now;
  clock.now = 1_700_000_000_000;
  const s = new Sweeper(kvStore(g), { clock });
  await s.put("a", 1);
  clock.now += 5_000;
  assert.equal(await s.get("a"), 1);
  slow = 500;
  await new Promise((r) => setTimeout(r, 1_200)); // the flush, a second after the reads, is writing
  await s.close();
  closed = true; // as store.close() would
  await new Promise((r) => setTimeout(r, 700));
  assert.deepEqual(late, [], "nothing written after close() resolved");
  slow = 0;
  const other = new Sweeper(kvStore(g), { clock });
  assert.equal((await other.detail("a")).accessedAt, clock.now);
  await other.close();
});

test("entries() over a value it cannot read says entries, not get", async () => {
  const m = new Map();
  const s = new Sweeper(kvStore(m));
  await s.put("big", "x".repeat(100_000)); // a value in a record of its own
  const name = [...m.keys()].find((k) => k.startsWith("kvsweep/v/"));
  m.set(name, Uint8Array.of(0xc1));
  await assert.rejects(async () => {
    for await (const entry of s.entries()) assert.fail(`read ${entry[0]}`);
  }, { message: 'kvsweep: entries: value of "big" in namespace "" could not be read: record is not one kvsweep wrote: unknown value tag 193' });
  await assert.rejects(s.get("big"), /^Error: kvsweep: get: value of "big"/);
});

test("entries() is no use of an entry, whatever its value's size: an export loop leaves maxEntries' choice as it was", async () => {
  const clock = () => clock.now;
  clock.now = 1_700_000_000_000;
  const s = new Sweeper(kvStore(new Map()), { clock, policy: { maxEntries: 1 } });
  await s.put("old", "y".repeat(20_000)); // a value in a record of its own
  clock.now += 1_000;
  await s.put("new", "x");
  clock.now += 5_000;
  const read = [];
  for await (const [k, v] of s.entries()) read.push([k, v.length]);
  assert.deepEqual(read, [["new", 1], ["old", 20_000]]);
  assert.equal((await s.detail("old")).accessedAt, 1_700_000_000_000);
  await s.run();
  const left = [];
  for await (const k of s.keys()) left.push(k);
  assert.deepEqual(left, ["new"], "the least recently used goes");
  await s.close();
});

test("an unstorage read that resolves with an Error (the fs driver's EMFILE, ENAMETOOLONG) fails as that error, never as a record kvsweep did not write", async () => {
  const storage = createStorage();
  const s = new Sweeper(kvStore(storage), { clock: () => 1_000 });
  await s.put("doc", { ok: true });
  await s.put("old", 1, { ttlMs: 1 });
  // What unstorage's fs driver does with a read error other than ENOENT.
  const getItemRaw = storage.getItemRaw;
  storage.getItemRaw = async () => Object.assign(new Error("EMFILE: too many open files"), { code: "EMFILE" });
  await assert.rejects(s.get("doc"), { message: "kvsweep: get: store error: EMFILE: too many open files" });
  // A put fails with it too (its read first; a batch's checks read through the same guard).
  await assert.rejects(s.put("doc", 2), { message: "kvsweep: put: store error: EMFILE: too many open files" });
  const plan = await s.plan().then((p) => p.summary.corrupt, (e) => e.message);
  storage.getItemRaw = getItemRaw;
  assert.match(String(plan), /EMFILE/, "the plan fails, rather than keeping live records as corrupt");
  assert.deepEqual(await s.get("doc"), { ok: true });
  const getKeys = storage.getKeys;
  storage.getKeys = async () => new Error("EIO: i/o error");
  await assert.rejects(s.plan(), /^Error: kvsweep: plan: store error: EIO: i\/o error$/);
  storage.getKeys = getKeys;
  await s.close();
});

test("values round-trip exactly through a byte store (kvsweep's encoding)", async () => {
  const failures = await roundTripFailures(new Sweeper(kvStore(new Generic())));
  assert.deepEqual(failures, []);
});

test("10,000 entries are cleaned in slices, none over 1,000 backend calls, and the result is exact", async () => {
  const kv = new KvDouble();
  let now = 1_800_000_000_000;
  const sweeper = new Sweeper(kvStore(kv), { clock: () => now, policy: POLICY });
  const items = [];
  for (let i = 0; i < 10_000; i++) {
    items.push({ key: `k${String(i).padStart(5, "0")}`, value: i, ttlMs: i % 2 ? 60_000 : 3_600_000 });
  }
  for (let i = 0; i < items.length; i += 500) await sweeper.putMany(items.slice(i, i + 500));
  now += 120_000;
  let runs = 0;
  let most = 0;
  let report;
  do {
    const before = kv.calls;
    report = await sweeper.run({ maxOps: 1000 });
    const calls = kv.calls - before;
    most = Math.max(most, calls);
    assert.ok(calls <= 1000, `run ${runs + 1} made ${calls} calls`);
    assert.equal(report.ops, calls, "the report counts the calls the backend saw");
    if (!report.done) assert.equal(report.stopped, "ops");
    runs++;
  } while (!report.done && runs < 500);
  assert.equal(report.done, true);
  assert.ok(runs > 1, "it took more than one slice");
  assert.equal(report.deleted.expired.count, 5000);
  const metas = [...kv.map.keys()].filter((n) => n.startsWith("kvsweep/m/"));
  assert.equal(metas.length, 5000);
  assert.ok(metas.every((n) => Number(n.slice(-5)) % 2 === 0), "only the expired half went");
  console.log(`# 10,000 entries on a Workers KV double: ${runs} runs, at most ${most} calls each (limit 1,000)`);
});

/**
 * Runs `sweeper` with `maxOps` until a run is done (or `most` runs), each
 * checked to make no more backend calls than that; a rejection ends the
 * slices and is returned as the last report.
 */
async function slices(sweeper, kv, maxOps, most, label) {
  let report;
  let runs = 0;
  do {
    const before = kv.calls;
    report = await sweeper.run({ maxOps }).catch((e) => e);
    if (report instanceof Error) break;
    assert.ok(kv.calls - before <= maxOps, `${label}: run ${runs + 1} made ${kv.calls - before} calls`);
    runs++;
  } while (!report.done && runs < most);
  return { report, runs };
}

test("small maxOps hold from the first batch: batches are sized to the calls left", async () => {
  // [entries, blobs each, maxOps]: items that cost more (a blob's count to
  // lower, blobs to delete after them) are measured, not assumed.
  for (const [n, blobs, maxOps] of [[10, 0, 30], [10, 0, 40], [100, 0, 60], [50, 1, 60], [20, 5, 40], [10, 1, 30]]) {
    const kv = new KvDouble();
    let now = 1_800_000_000_000;
    const sweeper = new Sweeper(kvStore(kv), { clock: () => now, policy: { orphanGraceMs: 120_000 } });
    for (let i = 0; i < n; i++) {
      const ids = [];
      for (let b = 0; b < blobs; b++) ids.push(await sweeper.putBlob(new Uint8Array([i, b, 7])));
      await sweeper.put(`k${i}`, i, { ttlMs: 10, blobs: ids });
    }
    now += 200_000;
    const label = `${n} entries with ${blobs} blobs each, maxOps ${maxOps}`;
    const { report, runs } = await slices(sweeper, kv, maxOps, 200, label);
    assert.equal(report.done, true, `${label}: done in ${runs} runs (${report.message ?? ""})`);
    assert.equal(report.deleted.expired.count, n);
    assert.equal(report.deleted.orphanBlob?.count ?? 0, n * blobs);
  }
});

test("maxOps and a chain of references: no run passes its limit, and limited runs finish the chain", async () => {
  // Each entry references the one before: all but the last wait for their
  // referrers, and go together in one batch, or (when that batch cannot
  // fit) one a run, from the end of the chain.
  // Blobs make deleting an entry cost more than the read of one that waits.
  for (const [maxOps, blobs] of [[60, 0], [120, 0], [1000, 0], [150, 4]]) {
    const kv = new KvDouble();
    let now = 1_800_000_000_000;
    const s = new Sweeper(kvStore(kv), { clock: () => now, policy: { orphanGraceMs: 120_000 } });
    const key = (i) => `k${String(i).padStart(2, "0")}`;
    for (let i = 0; i < 40; i++) {
      const ids = [];
      for (let b = 0; b < blobs; b++) ids.push(await s.putBlob(new Uint8Array([i, b])));
      await s.put(key(i), i, { ttlMs: 10, refs: i ? [key(i - 1)] : [], blobs: ids });
    }
    now += 200_000;
    const { report, runs } = await slices(s, kv, maxOps, 60, `maxOps ${maxOps}`);
    assert.equal(report.done, true, `maxOps ${maxOps}: ${runs} runs (${report.message ?? ""})`);
    assert.equal((await s.plan()).actions.length, 0, `maxOps ${maxOps}: done means nothing is left`);
  }
});

test("maxOps and a garbage cycle a store without all-or-nothing batches keeps: the blobs still go", async () => {
  const kv = new KvDouble();
  let now = 1_800_000_000_000;
  const s = new Sweeper(kvStore(kv), { clock: () => now, policy: { orphanGraceMs: 120_000 } });
  const key = (i) => `c${String(i).padStart(2, "0")}`;
  // A cycle: c00 is written first, and the last entry's reference closes it.
  await s.put(key(0), 0, { ttlMs: 10 });
  for (let i = 1; i < 30; i++) await s.put(key(i), i, { ttlMs: 10, refs: [key(i - 1)] });
  await s.put(key(0), 0, { ttlMs: 10, refs: [key(29)] });
  const orphans = [];
  for (let i = 0; i < 5; i++) orphans.push(await s.putBlob(new Uint8Array([9, i])));
  now += 200_000;
  await slices(s, kv, 150, 10, "a cycle, maxOps 150");
  for (const id of orphans) assert.equal(await s.getBlob(id), undefined, "orphan blobs are collected even with the cycle left");
});

test("small Workers KV records are listed a whole page a call, even under a small maxOps", async () => {
  const kv = new KvDouble();
  let now = 1_800_000_000_000;
  const s = new Sweeper(kvStore(kv), { clock: () => now });
  const items = Array.from({ length: 2000 }, (_, i) => ({ key: `k${i}`, value: i, ttlMs: 10 }));
  for (let i = 0; i < items.length; i += 200) await s.putMany(items.slice(i, i + 200));
  now += 1000;
  const report = await s.run({ maxOps: 100 });
  assert.ok(report.ops <= 100, `${report.ops} calls`);
  assert.ok(report.deleted.expired.count > 0, JSON.stringify(report));
});

test("two Sweepers on one store: while one holds the run lease, the other's run stops at once", async () => {
  const map = new Map();
  const a = new Sweeper(kvStore(map));
  const b = new Sweeper(kvStore(map));
  for (let i = 0; i < 300; i++) await a.put(`k${i}`, i, { ttlMs: 1 });
  await new Promise((r) => setTimeout(r, 5));
  let blocked;
  const first = a.run({
    onProgress: async () => {
      blocked ??= await b.run();
    },
  });
  const report = await first;
  assert.equal(report.done, true);
  assert.equal(blocked.done, false);
  assert.equal(blocked.stopped, "leased");
  assert.match(blocked.leasedBy, /^[0-9a-f]{16}$/);
  // Given back at the end: the other runs now.
  assert.equal((await b.run()).done, true);
});

test("keys() over Workers KV past 1,000 entries, some expired, yields each live key once, in order", async () => {
  let now = 1_000_000;
  const s = new Sweeper(kvStore(new KvDouble()), { clock: () => now });
  const key = (i) => `item/${String(i).padStart(5, "0")}`;
  for (let f = 0; f < 1250; f += 100) {
    await s.putMany(Array.from({ length: Math.min(100, 1250 - f) }, (_, j) => ({ key: key(f + j), value: f + j, ttlMs: (f + j) % 7 === 0 ? 60_000 : undefined })));
  }
  now += 3_600_000;
  const live = Array.from({ length: 1250 }, (_, i) => i).filter((i) => i % 7 !== 0).map(key);
  // A page ends mid-listing, on a live key whose listing cursor is not kept:
  // the next one listed from the table's start, and gave back keys before it.
  const got = [];
  for await (const k of s.keys()) got.push(k);
  assert.deepEqual(got, live);
  const pages = [];
  for await (const k of s.keys({ limit: 700 })) pages.push(k);
  assert.deepEqual(pages, live.slice(0, 700));
});

test("reads before a run with maxOps: their deferred accessedAt refreshes spend none of its calls", async () => {
  const key = (i) => `item/${String(i).padStart(5, "0")}`;
  const slice = async (reads) => {
    let now = 1_000_000;
    const kv = new KvDouble();
    const s = new Sweeper(kvStore(kv), { clock: () => now });
    for (let f = 0; f < 1000; f += 100) {
      await s.putMany(Array.from({ length: 100 }, (_, j) => ({ key: key(f + j), value: f + j, ttlMs: (f + j) % 2 === 0 ? 60_000 : undefined })));
    }
    now += 3_600_000;
    for (let i = 1; i <= reads; i += 2) assert.equal(await s.get(key(i)), i);
    const before = kv.calls;
    const report = await s.run({ maxOps: 100 });
    return { calls: kv.calls - before, ops: report.ops, deleted: report.deleted.expired?.count };
  };
  // 100 reads (200 calls of refreshes on Workers KV, a get and a put each)
  // change nothing of the slice: the refreshes wait for a flush of their own.
  assert.deepEqual(await slice(200), await slice(0));
});

test("a run with maxOps evicts by recency with reads it has not written: their refreshes count, unwritten", async () => {
  let now = 1_000_000;
  const kv = new KvDouble();
  const s = new Sweeper(kvStore(kv), { clock: () => now, policy: { maxEntries: 2 } });
  for (const k of ["a", "b", "c"]) {
    now += 1_000;
    await s.put(k, k);
  }
  now += 1_000;
  assert.equal(await s.get("a"), "a"); // a is now the most recent; b the least
  const report = await s.run({ maxOps: 1000 });
  assert.equal(report.deleted.maxEntries?.count, 1);
  assert.equal(await s.get("b"), undefined);
  assert.equal(await s.get("a"), "a");
});

test("Workers KV keeps values of at most 25 MiB: a larger one is refused at put, by name, and never cut", async () => {
  const kv = new KvDouble();
  const sweeper = new Sweeper(kvStore(kv), { policy: POLICY });
  const most = 25 * 1024 * 1024 - 1024;
  await assert.rejects(sweeper.putBlob(new Uint8Array(most + 1)), /putBlob: bytes holds 26213377 bytes, more than the limit of 26213376 bytes/);
  assert.equal([...kv.map.keys()].filter((n) => n.startsWith("kvsweep/b/")).length, 0);
  const id = await sweeper.putBlob(new Uint8Array(most).fill(7));
  assert.equal((await sweeper.getBlob(id)).length, most);
  assert.throws(
    () => new Sweeper(kvStore(kv), { policy: POLICY, maxValueBytes: 30e6 }),
    /options\.maxValueBytes must be at most 26213376 on a workers-kv store, which keeps values of at most 26214400 bytes/,
  );
});

test("keys and values past what the backend keeps are refused at put, naming the user's key and the limit; a get of such a key is undefined", async () => {
  const kv = new KvDouble();
  const s = new Sweeper(kvStore(kv), { policy: POLICY });
  const long = "k".repeat(500);
  // Under Workers KV's 512 bytes itself, but not with kvsweep's prefix and suffixes.
  await assert.rejects(s.put(long, 1), /^Error: kvsweep: put\("k{100}"…\): key is 500 bytes, too long for a workers-kv store: .* kvsweep keeps them to 512 there \(a key may have at most \d+ bytes\)$/);
  await assert.rejects(s.putMany([{ key: "a", value: 1 }, { key: long, value: 2 }]), /^Error: kvsweep: putMany items\[1\] \("k{100}"…\): key is 500 bytes, too long/);
  assert.equal(kv.map.size, 0, "nothing written, not even a temp");
  const room = Number(/a key may have at most (\d+) bytes/.exec(await s.put(long, 1).catch((e) => e.message))[1]);
  await s.put("k".repeat(room), 1);
  assert.equal(await s.get("k".repeat(room)), 1);
  await assert.rejects(s.put("k".repeat(room + 1), 1), /key is \d+ bytes, too long/);
  // A namespace, or a prefix, that leaves no room for any key is named as what is long.
  // A namespace, or a prefix, that leaves no room for any key is named as
  // what is long, with the most a namespace may have (it said "a key may
  // have at most 0 bytes").
  const nsRefusal = /^Error: kvsweep: put\("k"\): options\.namespace is 470 bytes, too long for a workers-kv store: .*\(a namespace may have at most (\d+) bytes, with a key of one byte\)$/;
  const nsRoom = Number(nsRefusal.exec(await s.put("k", 1, { namespace: "n".repeat(470) }).catch((e) => String(e)))?.[1]);
  assert.ok(nsRoom > 0 && nsRoom < 470, `a namespace may have ${nsRoom} bytes`);
  await s.put("k", 1, { namespace: "n".repeat(nsRoom) });
  assert.equal(await s.get("k", { namespace: "n".repeat(nsRoom) }), 1);
  await assert.rejects(s.put("k", 1, { namespace: "n".repeat(nsRoom + 1) }), /options\.namespace is \d+ bytes, too long/);
  await s.delete("k", { namespace: "n".repeat(nsRoom) });
  // At the boundary, a prefix that leaves room for an empty namespace only
  // says so of the namespace (it blamed the prefix; review).
  const edge = new Sweeper(kvStore(new KvDouble(), { prefix: "p".repeat(471) }), { policy: POLICY });
  await edge.put("k", 1);
  await assert.rejects(edge.put("k", 1, { namespace: "x" }), /options\.namespace is 1 bytes, too long .*\(a namespace may have at most 0 bytes, with a key of one byte\)$/);
  const prefixed = new Sweeper(kvStore(new KvDouble(), { prefix: "p".repeat(600) }), { policy: POLICY });
  await assert.rejects(prefixed.put("k", 1), /^Error: kvsweep: put\("k"\): kvStore options\.prefix is 600 bytes, too long for a workers-kv store: .*\(the prefix leaves no room for a namespace and a key\)$/);
  const calls = kv.calls;
  assert.equal(await s.get("k".repeat(600)), undefined);
  assert.equal(kv.calls, calls, "a key the backend cannot hold is not asked for");
  // A record an earlier version wrote with a key within the backend's limit
  // but past the room a write now leaves (for a chunk's key) is still read.
  const storage = new DoStorage();
  const d = new Sweeper(durableObjectStore(storage));
  await d.put("short", "kept");
  const longer = "x".repeat(2000);
  const name = [...storage.map.keys()].find((n) => n.endsWith("\0short"));
  storage.map.set(name.replace("\0short", `\0${longer}`), storage.map.get(name));
  assert.ok(name.length - 5 + longer.length <= 2048);
  assert.equal(await d.get(longer), "kept");
  await assert.rejects(d.put(longer, 1), /too long for a durable-object store/);
  // With blobs in R2 an entry's record stays held to Workers KV's 25 MiB.
  const objects = new Map();
  const bucket = {
    async get(k) {
      const o = objects.get(k);
      return o ? { arrayBuffer: async () => o.slice().buffer } : null;
    },
    async put(k, v) {
      objects.set(k, new Uint8Array(v));
    },
    async delete(keys) {
      for (const k of [].concat(keys)) objects.delete(k);
    },
    async head(k) {
      return objects.has(k) ? { uploaded: new Date() } : null;
    },
    async list() {
      return { objects: [...objects.keys()].map((key) => ({ key })), truncated: false };
    },
  };
  const withR2 = new Sweeper(kvStore(new KvDouble(), { blobs: r2(bucket) }));
  await assert.rejects(withR2.put("big", new Uint8Array(26 * 1024 * 1024)), /^Error: kvsweep: put\("big"\): value is 27262976 bytes, more than the limit of 26213376 bytes \(a workers-kv\+r2 store keeps no larger values\)$/);
  const id = await withR2.putBlob(new Uint8Array(26 * 1024 * 1024).fill(1));
  assert.equal((await withR2.getBlob(id)).length, 26 * 1024 * 1024, "blobs in R2 are not held to it");
});

test("run options of kvStore runs are checked by name", async () => {
  const s = new Sweeper(memoryStore());
  await assert.rejects(s.run({ maxOps: 0 }), /run options\.maxOps must be a whole number from 1 to 2\^53 - 1, got 0$/);
  await assert.rejects(s.run({ maxOps: -1 }), /run options\.maxOps must be a whole number from 1 to 2\^53 - 1, got -1$/);
  await assert.rejects(s.run({ leaseMs: 0 }), /run options\.leaseMs must be a whole number from 1 to 2\^53 - 1, got 0$/);
});

test("a record that is not kvsweep's bytes, mid-table, is reported as corrupt and the listing goes on past it", async () => {
  const map = new Map();
  let now = 1_800_000_000_000;
  const s = new Sweeper(kvStore(map), { clock: () => now, batchSize: 50 });
  const items = [];
  for (let i = 0; i < 1500; i++) items.push({ key: `k${String(i).padStart(4, "0")}`, value: i, ttlMs: i >= 1000 ? 1000 : undefined });
  for (let i = 0; i < items.length; i += 100) await s.putMany(items.slice(i, i + 100));
  map.set("kvsweep/m/\0k0500", 42); // not bytes: another program wrote it
  now += 5000;
  const plan = await s.plan();
  assert.deepEqual(plan.summary.corrupt, [{ namespace: "", key: "k0500" }]);
  // The namespace with a record it cannot read is frozen (SPEC §2): nothing of it goes.
  assert.equal(plan.actions.length, 0);
  assert.equal(plan.summary.scanned, 1500, "every entry was listed, the unreadable one too");
  await assert.rejects(s.get("k0500"), /^Error: kvsweep: get: metadata of "k0500" in namespace "" .*could not be read: record is not one kvsweep wrote/);
});

test("two runs started at the same moment: one takes the lease, the other stops at once", async () => {
  const map = new Map();
  const a = new Sweeper(kvStore(map));
  const b = new Sweeper(kvStore(map));
  for (let i = 0; i < 50; i++) await a.put(`k${i}`, i, { ttlMs: 1 });
  await new Promise((r) => setTimeout(r, 5));
  const reports = await Promise.all([a.run(), b.run()]);
  assert.deepEqual(reports.map((r) => r.stopped ?? "ran").sort(), ["leased", "ran"]);
  assert.equal(reports.find((r) => r.done).deleted.expired.count, 50);
});

test("maxOps holds even when Workers KV listing needs a read per key (metadata too large to carry the record)", async () => {
  const kv = new KvDouble();
  let now = 1_800_000_000_000;
  const s = new Sweeper(kvStore(kv), { clock: () => now, policy: POLICY });
  const group = "g".repeat(800); // makes every entry record too large for a key's metadata
  const items = [];
  for (let i = 0; i < 1200; i++) items.push({ key: `k${String(i).padStart(4, "0")}`, value: i, group, ttlMs: i % 3 ? 3_600_000 : 1000 });
  for (let i = 0; i < items.length; i += 200) await s.putMany(items.slice(i, i + 200));
  now += 10_000;
  // Listing 1,200 records one read each cannot fit 500 calls: the run stops
  // within its limit rather than failing in the backend, and, since every run
  // with that limit would stop there too, rejects saying so.
  for (let runs = 0; runs < 2; runs++) {
    const before = kv.calls;
    await assert.rejects(s.run({ maxOps: 500 }), /^Error: kvsweep: run: options\.maxOps is 500, too few for this store: this run made \d+ calls/);
    const calls = kv.calls - before;
    assert.ok(calls <= 500, `run ${runs + 1} made ${calls} calls`);
  }
  // ...and gives its lease back: another Sweeper runs at once.
  const other = new Sweeper(kvStore(kv), { clock: () => now, policy: POLICY });
  await assert.rejects(other.run({ maxOps: 500 }), /too few for this store/);
  // A user's writes during a limited run are never refused for its limit.
  const during = s.run({ maxOps: 50 });
  await s.put("written-during", 1);
  await assert.rejects(during, /maxOps is 50, too few/);
  const all = await s.run();
  assert.equal(all.done, true);
  assert.equal(all.deleted.expired.count, 400);
});

test("a keyv's default ttl expires none of kvsweep's records; a keyv that rewrites keys is refused", async () => {
  const keyv = new Keyv({ ttl: 50 });
  const s = new Sweeper(kvStore(keyv));
  const blob = await s.putBlob(new Uint8Array([1, 2, 3]));
  await s.put("doc", "kept", { pinned: true, blobs: [blob] });
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(await s.get("doc"), "kept");
  assert.deepEqual(await s.getBlob(blob), new Uint8Array([1, 2, 3]));
  assert.deepEqual((await s.verify()).missing, []);
  await s.put("child", 1, { refs: ["doc"] });
  assert.throws(() => kvStore(new Keyv({ sanitize: { keys: true } })), /kvStore\(x\): this Keyv rewrites keys \(sanitize\)/);
  // A generic list giving one page of more is refused, not taken as all.
  const paged = { get: async () => null, put: async () => {}, delete: async () => {}, list: async () => ({ keys: [{ name: "a" }], list_complete: false, cursor: "c" }) };
  await assert.rejects(new Sweeper(kvStore(paged)).plan(), /list\(prefix\) returned one page of names \(list_complete: false\)/);
});

test("options are checked by name: unknown ones, visibilityMs where the backend knows its own, collectR2Orphans", async () => {
  assert.throws(() => kvStore(new Map(), { blob: {} }), /kvStore\(x\): unknown option "blob"; the options are prefix, visibilityMs, blobs/);
  assert.throws(() => kvStore(new Map(), { visibilityMs: 5 }), /options\.visibilityMs is for unstorage, keyv and generic stores; a Map store knows its own/);
  assert.throws(() => kvStore(new KvDouble(), { blobs: {} }), /options\.blobs must be r2\(bucket\), got an object/);
  await assert.rejects(collectR2Orphans(kvStore(new Map())), /collectR2Orphans\(store, options\): store must be a kvStore or durableObjectStore made with \{ blobs: r2\(bucket\) \}/);
  const bucket = { get() {}, put() {}, delete() {}, list() {}, head() {} };
  const store = kvStore(new Map(), { blobs: r2(bucket) });
  await assert.rejects(collectR2Orphans(store, { dryRun: "true" }), /options\.dryRun must be true or false, got "true"/);
  await assert.rejects(collectR2Orphans(store, { limit: 0 }), /options\.limit must be a whole number, 1 or more, got 0/);
  await assert.rejects(collectR2Orphans(store, { grace: 1 }), /unknown option "grace"/);
});

test("a generic store keeps values as text, so a store that keeps only JSON gives them back exactly", async () => {
  const json = new Map();
  const store = {
    async get(k) {
      return json.has(k) ? JSON.parse(json.get(k)) : undefined;
    },
    async put(k, v) {
      json.set(k, JSON.stringify(v));
    },
    async delete(k) {
      json.delete(k);
    },
    async list(p) {
      return [...json.keys()].filter((k) => k.startsWith(p));
    },
  };
  const s = new Sweeper(kvStore(store));
  await s.put("k", new Map([[1, new Uint8Array([1, 2])]]));
  const id = await s.putBlob(new Uint8Array([9, 8, 7]));
  assert.deepEqual([...(await s.getBlob(id))], [9, 8, 7]);
  assert.deepEqual([...(await s.get("k")).get(1)], [1, 2]);
});

/** A Map that counts its reads. */
class Counted extends Map {
  reads = 0;
  get(k) {
    this.reads++;
    return super.get(k);
  }
}

/** Durable Object storage as its API reads, in memory; reads are counted. */
class DoStorage {
  map = new Map();
  gets = 0;
  async get(keys) {
    this.gets++;
    if (!Array.isArray(keys)) return this.map.get(keys);
    return new Map(keys.filter((k) => this.map.has(k)).map((k) => [k, this.map.get(k)]));
  }
  async put(k, v) {
    for (const [name, value] of typeof k === "string" ? [[k, v]] : Object.entries(k)) this.map.set(name, value);
  }
  async delete(keys) {
    for (const k of [].concat(keys)) this.map.delete(k);
  }
  async list({ prefix = "", startAfter, limit = Infinity } = {}) {
    const names = [...this.map.keys()].filter((n) => n.startsWith(prefix) && (startAfter === undefined || n > startAfter)).sort();
    return new Map(names.slice(0, limit).map((n) => [n, this.map.get(n)]));
  }
  alarm = null;
  async setAlarm(at) {
    this.alarm = at;
  }
  async getAlarm() {
    return this.alarm;
  }
}

test("on a compare-and-set store, a new entry or blob is written without a read first; over one that is there, the write reads and keeps its counts", async () => {
  const map = new Counted();
  const clock = () => clock.now;
  clock.now = 1_000_000;
  const a = new Sweeper(kvStore(map), { clock, policy: { orphanGraceMs: 0 } });
  await a.put("first", 1); // registers the namespace
  const reads = async (fn) => {
    const before = map.reads;
    await fn();
    return map.reads - before;
  };
  // One read: the check, in the write itself. Reading first would make two.
  assert.equal(await reads(() => a.put("doc", "v1")), 1, "a put of a new entry");
  const bytes = new Uint8Array([1, 2, 3]);
  let blob;
  assert.equal(await reads(async () => (blob = await a.putBlob(bytes))), 1, "a putBlob of a new blob");

  // Another Sweeper has not seen them: it guesses them new, and is wrong.
  await a.put("att", "x");
  await a.put("note", "n", { refs: ["att"], blobs: [blob] });
  clock.now += 5_000;
  const b = new Sweeper(kvStore(map), { clock, policy: { orphanGraceMs: 0 } });
  await b.put("att", "y");
  assert.equal(await b.get("att"), "y");
  // The reference from "note" still counts, as does the blob's.
  await assert.rejects(b.delete("att"), /referenced by 1 other entry/);
  assert.equal(await b.putBlob(bytes), blob);
  let report = await b.run({ mode: "full" });
  assert.equal(report.deleted.orphanBlob?.count ?? 0, 0, "the blob is referenced");
  assert.deepEqual(await b.getBlob(blob), bytes);
  // Nothing for rebuild() to mend: every count is as the records say.
  const rebuilt = await b.rebuild();
  assert.equal(rebuilt.raised + rebuilt.lowered, 0, JSON.stringify(rebuilt));
  await b.delete("note");
  report = await b.run({ mode: "full" });
  assert.equal(report.deleted.orphanBlob.count, 1, "its last reference gone, the blob goes");
  assert.equal(await b.getBlob(blob), undefined);
  assert.equal(await b.delete("att"), true);
});

test("a Sweeper stops guessing unseen records absent while they turn out to be there, and starts again when they are not", async () => {
  const map = new Counted();
  const a = new Sweeper(kvStore(map));
  for (let i = 0; i < 20; i++) await a.put(`k${i}`, i);
  const b = new Sweeper(kvStore(map));
  await b.put("b", 0);
  const reads = async (fn) => {
    const before = map.reads;
    await fn();
    return map.reads - before;
  };
  // Reading first costs two reads (the read, the check); a right guess one,
  // a wrong one three. Guessing on would make 60.
  const over = await reads(async () => {
    for (let i = 0; i < 20; i++) await b.put(`k${i}`, -i);
  });
  assert.ok(over <= 44, `20 overwrites made ${over} reads`);
  for (let i = 0; i < 20; i++) assert.equal(await b.get(`k${i}`), -i);
  // Guessing off for good would make 40.
  const fresh = await reads(async () => {
    for (let i = 0; i < 20; i++) await b.put(`n${i}`, i);
  });
  assert.ok(fresh <= 26, `20 new entries made ${fresh} reads`);
});

test("puts racing to one new key from two Sweepers, each guessing it absent, all succeed on a Map and on unstorage, and the last to commit wins", async () => {
  for (const backend of [new Map(), createStorage()]) {
    const store = kvStore(backend);
    const a = new Sweeper(store);
    const b = new Sweeper(store);
    await a.put("target", "t");
    await b.put("b", 0);
    const puts = Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).put("same", i, { refs: i % 4 === 0 ? ["target"] : [] }));
    const outcomes = await Promise.allSettled(puts);
    assert.deepEqual(outcomes.filter((o) => o.status === "rejected").map((o) => String(o.reason)), []);
    const last = await a.get("same");
    assert.ok(Number.isInteger(last) && last >= 0 && last < 40);
    // The reference is counted exactly once, or not at all, as the winner says.
    const refs = last % 4 === 0;
    if (refs) await assert.rejects(a.delete("target"), /referenced by 1 other entry/);
    // Nothing left over for a run to clean.
    const plan = await a.plan({ mode: "full" });
    assert.deepEqual(plan.actions, []);
    if (refs) await a.delete("same");
    assert.equal(await a.delete("target"), true);
  }
});

test("Durable Object storage: a batch reads what it writes once, in its checks, not again for old chunks", async () => {
  const storage = new DoStorage();
  const clock = () => clock.now;
  clock.now = 1_000_000;
  const sweeper = new Sweeper(durableObjectStore(storage), { clock, batchSize: 20 });
  await sweeper.put("first", 0);
  const gets = async (fn) => {
    const before = storage.gets;
    await fn();
    return storage.gets - before;
  };
  // A new entry: one read, the check that it is absent.
  assert.equal(await gets(() => sweeper.put("doc", "v")), 1);
  // Over a split value (over 128 KiB), its old chunks still go.
  await sweeper.put("big", new Uint8Array(300_000).fill(1));
  await sweeper.put("big", new Uint8Array(200_000).fill(2));
  assert.equal([...storage.map.keys()].filter((n) => n.startsWith("kvsweep-chunk/")).length, 2);
  assert.deepEqual(await sweeper.get("big"), new Uint8Array(200_000).fill(2));
  for (let i = 0; i < 40; i++) await sweeper.put(`t${i}`, i, { ttlMs: 10 });
  await sweeper.delete("big");
  assert.equal([...storage.map.keys()].filter((n) => n.startsWith("kvsweep-chunk/")).length, 0);
  clock.now += 100;
  let report;
  const run = await gets(async () => (report = await sweeper.run()));
  assert.equal(report.deleted.expired.count, 40);
  // Two batches of 20, each read by the executor and by its checks (4); the
  // lease taken and given back, the cursor and the history (7; the listing
  // lists, it does not get). Reading written records again would make 5 more.
  assert.ok(run <= 4 + 7, `the run made ${run} reads`);
});

test("a write on a guess never overwrites what it cannot read, nor uploads blob bytes to R2", async () => {
  // Durable Object storage holding, at an entry's record, a value that is not kvsweep's bytes.
  const storage = new DoStorage();
  const sweeper = new Sweeper(durableObjectStore(storage));
  await sweeper.put("probe", 1);
  const probe = [...storage.map.keys()].find((n) => n.endsWith("probe"));
  const name = probe.replace("probe", "foreign");
  // A later release's record (format version 127), which a put leaves as it is.
  const later = new Uint8Array(storage.map.get(probe));
  later[1] = 0x7f;
  storage.map.set(name, later);
  await assert.rejects(sweeper.put("foreign", 2), /put: metadata of "foreign" in namespace "" .*a later release wrote it, which reads it\) could not be read: record has format version 127/);
  assert.deepEqual(storage.map.get(name), later);
  // A value that is not bytes (other code's) is replaced by a put, once read.
  storage.map.set(name, { not: "bytes" });
  await sweeper.put("foreign", 3);
  assert.equal(await sweeper.get("foreign"), 3);

  // Blob bytes in R2 go up only after a read found the blob's record absent.
  const objects = new Map();
  const bucket = {
    async get(k) {
      const o = objects.get(k);
      return o ? { arrayBuffer: async () => o.bytes.slice().buffer } : null;
    },
    async put(k, v) {
      objects.set(k, { bytes: new Uint8Array(v), uploaded: new Date() });
    },
    async delete(keys) {
      for (const k of [].concat(keys)) objects.delete(k);
    },
    async head(k) {
      return objects.has(k) ? { uploaded: objects.get(k).uploaded } : null;
    },
    async list() {
      return { objects: [...objects.keys()].map((key) => ({ key })), truncated: false };
    },
  };
  const map = new Counted();
  const withR2 = new Sweeper(kvStore(map, { blobs: r2(bucket) }));
  await withR2.put("first", 0);
  const before = map.reads;
  const id = await withR2.putBlob(new Uint8Array([4, 5, 6]));
  assert.equal(map.reads - before, 2, "the blob's record read, then checked");
  assert.deepEqual(await withR2.getBlob(id), new Uint8Array([4, 5, 6]));
});

test("on Workers KV, writes and the refreshes reads deferred never overlap in one isolate: neither undoes the other", async () => {
  // No compare-and-set: a refresh read before a put or a delete and written
  // after it wrote the old record back (a put's value lost, a deleted entry
  // back with its value gone).
  for (let round = 0; round < 5; round++) {
    const kv = new KvDouble();
    let now = 1_800_000_000_000;
    const s = new Sweeper(kvStore(kv), { clock: () => now });
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    for (const k of keys) await s.put(k, "old");
    now += 3_600_000;
    for (const k of keys) assert.equal(await s.get(k), "old");
    s.__flushReads();
    await Promise.all(keys.map((k, i) => (i % 2 ? s.put(k, "new") : s.delete(k))));
    await new Promise((r) => setTimeout(r, 50));
    for (const [i, k] of keys.entries()) {
      assert.equal(await s.get(k), i % 2 ? "new" : undefined, `round ${round}: ${k}`);
    }
    const report = await s.run();
    assert.deepEqual(report.errors, []);
    assert.equal(report.corrupt.length, 0);
    s.close();
  }
});

test("on Workers KV, a write that never ends holds the isolate's turn for turnWait.ms, not for good; the queue behind it goes on one at a time", async (t) => {
  // In a Worker, a request that returns with a write in flight runs no
  // further: its turn was never given back, and every later write of the
  // isolate waited for ever (found in workerd through miniflare). The wait
  // counts from when the turn before began: a first version timed each
  // waiter from when it queued, so a whole queue went on at once.
  const { turnWait } = await import("../../pkg/kv.js");
  const saved = turnWait.ms;
  turnWait.ms = 600; // longer than a put holds the turn here (three writes of 100 ms)
  t.after(() => (turnWait.ms = saved));
  const kv = new KvDouble();
  const s = new Sweeper(kvStore(kv));
  await s.put("a", 1);
  const put = kv.put.bind(kv);
  const writes = [];
  kv.put = async (name, value, options) => {
    if (name.endsWith("\0stuck")) return new Promise(() => {}); // never ends
    const at = { name, start: Date.now() };
    writes.push(at);
    await new Promise((r) => setTimeout(r, 100)); // a slow write
    await put(name, value, options);
    at.end = Date.now();
  };
  void s.put("stuck", 0);
  const started = Date.now();
  await Promise.all([s.put("b", 2), s.put("c", 3)]);
  const [b, c] = ["b", "c"].map((k) => writes.find((w) => w.name.endsWith(`\0${k}`)));
  assert.ok(b.start - started >= 550, `b waited ${b.start - started} ms for the stuck turn`);
  assert.ok(c.start >= writes.filter((w) => w.start < c.start).at(-1).end, "c began after b's writes ended");
  assert.ok(writes.every((w, i) => i === 0 || w.start >= writes[i - 1].end), `no two writes overlapped: ${JSON.stringify(writes.map((w) => [w.name.replace(/\0/g, "~"), w.start - started, w.end - started]))}`);
  // Later writes do not wait again.
  const again = Date.now();
  await s.put("d", 4);
  assert.ok(Date.now() - again < 1000);
  assert.deepEqual([await s.get("b"), await s.get("c"), await s.get("d")], [2, 3, 4]);
});

test("runFromAlarm sets the alarm at once only after a slice that got on; one stopped otherwise waits retryMs, deletions of the slices before it not counting", async () => {
  const storage = new DoStorage();
  const alarms = [];
  storage.setAlarm = async (at) => void alarms.push(at - Date.now());
  const clock = () => clock.now;
  clock.now = 1_000_000;
  const sweeper = new Sweeper(durableObjectStore(storage), { clock, batchSize: 10 });
  for (let i = 0; i < 60; i++) await sweeper.put(`t${i}`, i, { ttlMs: 10 });
  clock.now += 100;
  const first = await runFromAlarm(sweeper, storage, { maxOps: 40, retryMs: 5_000 });
  assert.equal(first.stopped, "ops");
  assert.ok(first.deleted.expired.count > 0);
  assert.ok(alarms.at(-1) <= 1, `a slice that deleted: at once, not in ${alarms.at(-1)} ms`);
  // Aborted before its first batch: the slice itself did nothing, though its
  // report counts what the slice before deleted.
  const abort = new AbortController();
  const second = await runFromAlarm(sweeper, storage, { signal: abort.signal, onProgress: () => abort.abort(), retryMs: 5_000 });
  assert.equal(second.stopped, "aborted");
  assert.ok(second.resumed && second.deleted.expired.count >= first.deleted.expired.count, JSON.stringify(second));
  assert.ok(alarms.at(-1) > 4_000, `a slice that did nothing: in retryMs, not in ${alarms.at(-1)} ms`);
  const last = await runFromAlarm(sweeper, storage, { retryMs: 5_000, periodMs: 60_000 });
  assert.ok(last.done);
  assert.equal(last.deleted.expired.count, 60);
  assert.ok(alarms.at(-1) > 59_000, "done: in periodMs");
});

test("plan() beside a run limited by maxOps lists the whole store, and the run stops by its limit", async () => {
  const kv = new KvDouble();
  const clock = () => clock.now;
  clock.now = 1_000_000;
  const sweeper = new Sweeper(kvStore(kv), { clock, batchSize: 10, policy: POLICY });
  for (let i = 0; i < 3000; i++) await sweeper.put(`t${String(i).padStart(4, "0")}`, i, { ttlMs: 10 });
  clock.now += 100_000;
  // A plan begins at each of the run's steps, up to its last.
  const plans = [];
  const report = await sweeper.run({ maxOps: 60, onProgress: () => plans.push(sweeper.plan()) });
  const planned = await Promise.all(plans);
  // (report.ops counts the plans' calls too, made beside the run.)
  assert.equal(report.stopped, "ops");
  const deleted = report.deleted.expired.count;
  assert.ok(deleted > 0 && planned.length > 2);
  // What the run had not deleted when each plan listed, at least.
  for (const p of planned) assert.ok(p.actions.length >= 3000 - deleted, `a plan has ${p.actions.length} actions`);
});

test("runFromAlarm refuses a bad call by its own name, before it sets any alarm", async () => {
  const storage = new DoStorage();
  const alarms = [];
  storage.setAlarm = async (at) => void alarms.push(at);
  const sweeper = new Sweeper(durableObjectStore(storage));
  const call = "kvsweep: runFromAlarm(sweeper, storage, options)";
  const bad = [
    [sweeper, { perodMs: 5 }, `${call}: unknown option "perodMs"; the options are periodMs, retryMs, mode, signal, budgetMs, maxOps, leaseMs, onProgress`],
    [{}, {}, `${call}: sweeper must be a Sweeper, got an object`],
    [sweeper, 5, `${call}: options must be an object, got 5`],
    [sweeper, { maxOps: 0 }, `${call}: options.maxOps must be a whole number from 1 to 2^53 - 1, got 0`],
    [sweeper, { mode: "x" }, `${call}: options.mode must be "light" or "full", got "x"`],
  ];
  for (const [s, options, message] of bad) await assert.rejects(runFromAlarm(s, storage, options), { name: "TypeError", message });
  assert.deepEqual(alarms, [], "no alarm for a call that cannot run");
  await runFromAlarm(sweeper, storage);
  assert.equal(alarms.length, 1);
});

test("runFromAlarm keeps an alarm set sooner while it ran (scheduleCleanup after a write)", async () => {
  const storage = new DoStorage();
  const sweeper = new Sweeper(durableObjectStore(storage), { batchSize: 10 });
  for (let i = 0; i < 30; i++) await sweeper.put(`t${i}`, i, { ttlMs: 1 });
  await new Promise((r) => setTimeout(r, 5));
  // The alarm fires (Durable Objects clear it as alarm() begins); a request
  // during the run writes and asks for a cleanup within a second.
  storage.alarm = null;
  let asked = false;
  const report = await runFromAlarm(sweeper, storage, {
    periodMs: 3_600_000,
    onProgress: async () => {
      if (asked) return;
      asked = true;
      await sweeper.put("fresh", 1, { ttlMs: 1 });
      await scheduleCleanup(storage, 1_000);
    },
  });
  assert.ok(report.done);
  const left = storage.alarm - Date.now();
  assert.ok(left <= 1_000, `the alarm is in ${left} ms, not within the second scheduleCleanup asked for`);
  // With none set sooner, a done run's alarm is a period away.
  storage.alarm = null;
  await runFromAlarm(sweeper, storage, { periodMs: 3_600_000 });
  assert.ok(storage.alarm - Date.now() > 3_500_000);
});

test("a backend that rejects with undefined or null is named so in the error, not left blank", async () => {
  for (const thrown of [undefined, null]) {
    const m = new Map();
    const backend = {
      get: async () => {
        throw thrown;
      },
      put: async (k, v) => void m.set(k, v),
      delete: async (k) => void m.delete(k),
      list: async (p) => [...m.keys()].filter((k) => k.startsWith(p)),
    };
    const sweeper = new Sweeper(kvStore(backend));
    await assert.rejects(sweeper.get("a"), { message: `kvsweep: get: store error: ${thrown}` });
  }
});

test("unstorage: a mount that drops writes (fs with readOnly, a driver without setItem) refuses them, where unstorage resolved them with nothing written", async () => {
  const { mkdtemp, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { default: fsDriver } = await import("unstorage/drivers/fs");
  const dir = await mkdtemp(join(tmpdir(), "kvsweep-readonly-"));
  try {
    const writer = new Sweeper(kvStore(createStorage({ driver: fsDriver({ base: dir }) })));
    await writer.put("kept", "v");
    writer.close();
    const refusal = /^Error: kvsweep: (put|delete|putMany): store error: kvStore: this unstorage store drops writes \(its driver is readOnly, or has no setItem\)/;
    const reader = new Sweeper(kvStore(createStorage({ driver: fsDriver({ base: dir, readOnly: true }) })));
    assert.equal(await reader.get("kept"), "v");
    await assert.rejects(reader.put("new", "w"), (e) => refusal.test(String(e)));
    await assert.rejects(reader.putMany([{ key: "new", value: "w" }]), (e) => refusal.test(String(e)));
    await assert.rejects(reader.delete("kept"), (e) => refusal.test(String(e)));
    assert.equal(await reader.get("kept"), "v");
    reader.close();
    // A driver with no setItem at all (a read-only source), over a fresh store.
    const map = new Map();
    const source = { name: "source", hasItem: async (k) => map.has(k), getItem: async (k) => map.get(k) ?? null, getKeys: async () => [...map.keys()] };
    const fromSource = new Sweeper(kvStore(createStorage({ driver: source })));
    await assert.rejects(fromSource.put("a", 1), (e) => refusal.test(String(e)));
    fromSource.close();
    // A writable mount beside a readOnly one still writes (the probe reads its write back).
    const both = createStorage();
    both.mount("assets", fsDriver({ base: dir, readOnly: true }));
    const beside = new Sweeper(kvStore(both));
    await beside.put("a", 1);
    assert.equal(await beside.get("a"), 1);
    beside.close();
    // Declared with a visibility window, no probe (a read may miss a write):
    // the mount kvsweep's keys go to is refused if it drops writes (review:
    // a put resolved, and nothing was written).
    const windowed = new Sweeper(kvStore(createStorage({ driver: fsDriver({ base: dir, readOnly: true }) }), { visibilityMs: 1000 }), { policy: { orphanGraceMs: 120_000 } });
    await assert.rejects(windowed.put("new", "w"), (e) => refusal.test(String(e)));
    windowed.close();
    // Nor does an eventually consistent backend beside a mount without
    // setItem (Nitro's assets), declared so: no probe there, whose read
    // right after its write would miss it (review: every write refused).
    const seen = new Map();
    const at = new Map();
    const eventual = {
      name: "eventual",
      hasItem: async (k) => seen.has(k) && Date.now() - at.get(k) >= 50,
      getItem: async (k) => (seen.has(k) && Date.now() - at.get(k) >= 50 ? seen.get(k) : null),
      setItem: async (k, v) => void (seen.set(k, v), at.set(k, Date.now())),
      removeItem: async (k) => void (seen.delete(k), at.delete(k)),
      getKeys: async () => [...seen.keys()],
    };
    const edge = createStorage({ driver: eventual });
    edge.mount("assets", source);
    const { prefixStorage } = await import("unstorage");
    const late = new Sweeper(kvStore(prefixStorage(edge, "data"), { visibilityMs: 60_000 }), { policy: { orphanGraceMs: 120_000 } });
    await late.put("a", 1);
    late.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
