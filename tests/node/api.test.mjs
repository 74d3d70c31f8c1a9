// The built npm package (pkg/), not the source, under Node's test runner.
import "fake-indexeddb/auto";
import { test } from "node:test";
import assert from "node:assert/strict";
import { Sweeper, memoryStore, openIndexedDb, KvStore } from "../../pkg/node.js";

const T0 = 1_700_000_000_000;

/** A clock the test moves by hand. */
function manualClock(start = T0) {
  const clock = () => clock.now;
  clock.now = start;
  return clock;
}

async function expireHalf(store) {
  const clock = manualClock();
  const sweeper = new Sweeper(store, { clock });
  for (let i = 0; i < 1000; i++) {
    await sweeper.put(`k${i}`, { i, tags: ["a", "b"] }, { ttlMs: i % 2 === 0 ? 1_000 : 60_000 });
  }
  clock.now += 10_000;
  const plan = await sweeper.plan({ mode: "full" });
  assert.equal(plan.actions.length, 500);
  assert.ok(plan.actions.every((a) => a.kind === "entry" && a.reason === "expired"));
  const report = await sweeper.run({ mode: "full" });
  assert.equal(report.done, true);
  assert.equal(report.deleted.expired.count, 500);
  // Read back through a fresh sweeper with includeExpired, so lazy expiry cannot hide a leftover.
  const reader = new Sweeper(store, { clock });
  for (let i = 0; i < 1000; i++) {
    const v = await reader.get(`k${i}`, { includeExpired: true });
    if (i % 2 === 0) assert.equal(v, undefined, `k${i} should be gone`);
    else assert.deepEqual(v, { i, tags: ["a", "b"] });
  }
  return sweeper;
}

test("memoryStore: a full run deletes exactly the expired half", async () => {
  await expireHalf(memoryStore());
});

test("openIndexedDb (fake-indexeddb): a full run deletes exactly the expired half", async () => {
  const store = await openIndexedDb(`node-${Date.now()}`);
  await expireHalf(store);
  store.close();
});

test("expired entries read as undefined before any run", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock });
  await s.put("a", "x", { ttlMs: 5 });
  assert.equal(await s.get("a"), "x");
  clock.now += 5;
  assert.equal(await s.get("a"), undefined);
});

test("values keep their types: bytes, nested objects, dates", async () => {
  const s = new Sweeper(memoryStore());
  const bytes = new Uint8Array([1, 2, 3]);
  await s.put("b", bytes);
  assert.deepEqual(await s.get("b"), bytes);
  const value = { n: 1.5, big: 2 ** 40, s: "é", nil: null, arr: [true, false], when: new Date(1234567), raw: new Uint8Array([9]) };
  await s.put("o", value);
  assert.deepEqual(await s.get("o"), value);
});

test("bad input rejects with an Error that says what is wrong", async () => {
  const s = new Sweeper(memoryStore());
  await assert.rejects(s.put("k", 1, { ttlMs: -5 }), { name: "Error", message: /ttlMs must not be negative/ });
  await assert.rejects(s.put("", 1), /key must be a non-empty string/);
  await assert.rejects(s.put(42, 1), /key must be a non-empty string/);
  await assert.rejects(s.put("k", undefined), /value is undefined/);
  await assert.rejects(s.put("k", () => 1), /value is a function, which cannot be stored/);
  const cyclic = {};
  cyclic.self = cyclic;
  await assert.rejects(s.put("k", cyclic), /value\.self is a cycle/);
  await assert.rejects(s.plan({ mode: "fast" }), /mode must be "light" or "full"/);
  await assert.rejects(s.getBlob("nope"), /not a blob id/);
  assert.throws(() => new Sweeper(memoryStore(), { policy: { maxAge: 1 } }), /unknown option "maxAge"/);
  assert.throws(() => new Sweeper(memoryStore(), { policy: { maxBytes: -1 } }), /policy.maxBytes must not be negative/);
  assert.throws(() => new Sweeper(memoryStore(), { clock: 5 }), /clock must be a function/);
  for (const [batchSize, got] of [[1.5, "1.5"], [0, "0"], [100_001, "100001"], ["10", '"10"']]) {
    assert.throws(() => new Sweeper(memoryStore(), { batchSize }), { message: `kvsweep: new Sweeper(store, options): options.batchSize must be a whole number from 1 to 100000, got ${got}` });
  }
  const badClock = new Sweeper(memoryStore(), { clock: () => "soon" });
  await assert.rejects(badClock.put("k", 1), { message: 'kvsweep: clock() must return a whole number of milliseconds since the Unix epoch, 0 to 2^53 - 1, got "soon"' });
  await assert.rejects(openIndexedDb(""), /name must be a non-empty, well-formed string/);
  // After all that, the module still works.
  await s.put("k", 1);
  assert.equal(await s.get("k"), 1);
});

test("blobs: same bytes give the same id and are stored once; orphans go after grace", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock, policy: { orphanGraceMs: 1000 } });
  const id = await s.putBlob(new TextEncoder().encode("hello"));
  assert.equal(id, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  assert.equal(await s.putBlob(new TextEncoder().encode("hello")), id);
  const kept = await s.putBlob(new Uint8Array([7]));
  await s.put("doc", { title: "t" }, { blobs: [kept] });
  clock.now += 1000;
  const report = await s.run({ mode: "light" });
  assert.equal(report.deleted.orphanBlob.count, 1);
  assert.equal(await s.getBlob(id), undefined);
  assert.deepEqual(await s.getBlob(kept), new Uint8Array([7]));
});

test("run reports progress and honours an abort signal", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock, batchSize: 10 });
  for (let i = 0; i < 100; i++) await s.put(`k${i}`, i, { ttlMs: 1 });
  clock.now += 10;
  const seen = [];
  const ctrl = new AbortController();
  const report = await s.run({
    onProgress: (p) => {
      seen.push(p.processed);
      if (p.processed >= 30) ctrl.abort();
    },
    signal: ctrl.signal,
  });
  assert.equal(report.done, false);
  assert.equal(report.stopped, "aborted");
  assert.equal(report.deleted.expired.count, 30);
  assert.deepEqual(seen.slice(0, 4), [0, 10, 20, 30]);
  // The aborted run saved a cursor; this one resumes it and counts both.
  const rest = await s.run();
  assert.equal(rest.done, true);
  assert.equal(rest.resumed, true);
  assert.equal(rest.deleted.expired.count, 100);
});

test("budgetMs stops a run early and the next run resumes from the saved cursor", async () => {
  const clock = manualClock();
  const store = memoryStore();
  const s = new Sweeper(store, { clock, batchSize: 10 });
  for (let i = 0; i < 100; i++) await s.put(`k${String(i).padStart(3, "0")}`, i, { ttlMs: 1 });
  clock.now += 10;
  const reports = [];
  for (let calls = 0; calls < 50; calls++) {
    // A budget of 0 still lets each run do one batch, so the loop always progresses.
    const r = await s.run({ budgetMs: 0 });
    reports.push(r);
    if (r.done) break;
  }
  const last = reports.at(-1);
  assert.ok(reports.length >= 2, `expected several budgeted runs, got ${reports.length}`);
  assert.equal(reports[0].stopped, "budget");
  assert.equal(last.done, true);
  assert.equal(last.resumed, true);
  assert.equal(last.deleted.expired.count, 100);
  // What each run carried from the one before: its own is the difference.
  assert.deepEqual(reports[0].carried, { count: 0, bytes: 0 });
  for (let i = 1; i < reports.length; i++) assert.equal(reports[i].carried.count, reports[i - 1].deleted.expired.count, `run ${i}`);
  // Each run after the first went on with the plan the first made, without
  // listing the store again (the clock stood still).
  assert.equal(reports[0].planReused, false);
  assert.deepEqual(reports.slice(1).map((r) => r.planReused), reports.slice(1).map(() => true));
  const reader = new Sweeper(store, { clock });
  for (let i = 0; i < 100; i++) {
    assert.equal(await reader.get(`k${String(i).padStart(3, "0")}`, { includeExpired: true }), undefined);
  }
});

test("a stopped run's plan serves the next run for 30 s; a later run lists and plans again", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock, batchSize: 10 });
  for (let i = 0; i < 50; i++) await s.put(`k${String(i).padStart(3, "0")}`, i, { ttlMs: 1 });
  clock.now += 10;
  const first = await s.run({ budgetMs: 0 });
  assert.equal(first.planReused, false);
  clock.now += 30_000;
  const second = await s.run({ budgetMs: 0 });
  assert.deepEqual([second.resumed, second.planReused], [true, true]);
  // Written meanwhile and expired: not in the kept plan, so the kept plan's
  // runs leave it; a run planned afresh finds it.
  await s.put("late", 1, { ttlMs: 1 });
  clock.now += 10;
  const third = await s.run({ budgetMs: 0 });
  assert.deepEqual([third.resumed, third.planReused], [true, false], "planned 30,010 ms ago: too old");
  const rest = await s.run();
  assert.equal(rest.done, true);
  assert.equal(rest.deleted.expired.count, 51);
});

test("a message quotes a long key in part: an 8 KB key gives a message of a line", async () => {
  const s = new Sweeper(memoryStore());
  const key = "k".repeat(8192);
  const err = await s.put("doc", 1, { refs: [key] }).then(() => null, (e) => e);
  assert.match(err?.message ?? "", new RegExp(`entry "${"k".repeat(100)}"… is not in namespace`));
  assert.ok(err.message.length < 300, err.message.length);
});

test("references are checked and counted: a referenced entry cannot be deleted", async () => {
  const s = new Sweeper(memoryStore());
  await assert.rejects(s.put("doc", 1, { refs: ["att"] }), /entry "att" is not in namespace "": put it first/);
  await s.put("att", "a");
  await s.put("doc", 1, { refs: ["att"] });
  await assert.rejects(s.delete("att"), /referenced by 1 other entry: delete or rewrite those first \(if none does, a crash left its count high: rebuild\(\) recounts\)$/);
  assert.equal(await s.delete("doc"), true);
  assert.equal(await s.delete("att"), true);
  assert.equal(await s.delete("att"), false);
});

test("rebuild checks every count and leaves correct ones alone", async () => {
  const s = new Sweeper(memoryStore());
  const blob = await s.putBlob(new Uint8Array([1, 2, 3]));
  await s.put("att", "a", { blobs: [blob] });
  await s.put("doc", "d", { refs: ["att"], blobs: [blob] });
  const r = await s.rebuild();
  assert.equal(r.entriesChecked, 2);
  assert.equal(r.blobsChecked, 1);
  assert.equal(r.entriesFixed + r.blobsFixed, 0);
  assert.deepEqual(r.errors, []);
});

test("putMany writes a batch in order: an item may reference one before it", async () => {
  for (const store of [memoryStore(), await openIndexedDb(`putmany-${Date.now()}`)]) {
    const s = new Sweeper(store);
    await s.putMany([
      { key: "att/1", value: "bytes", dependent: true },
      { key: "doc/1", value: { title: "Notes" }, refs: ["att/1"], namespace: "" },
    ]);
    assert.deepEqual(await s.get("doc/1"), { title: "Notes" });
    // A referenced entry cannot be deleted; the batch counted the reference.
    await assert.rejects(s.delete("att/1"), /referenced by 1 other entry/);
    // All or nothing: a bad reference fails the whole batch.
    await assert.rejects(
      s.putMany([{ key: "x", value: 1 }, { key: "y", value: 2, refs: ["missing"] }]),
      /putMany: refs: entry "missing"/,
    );
    assert.equal(await s.get("x"), undefined);
    await assert.rejects(s.putMany("nope"), /putMany: items must be an array .*got "nope"/);
    await assert.rejects(s.putMany([{ key: "k", value: 1, ttl: 5 }]), /putMany items\[0\]: unknown option "ttl"/);
    store.close();
  }
});

test("concurrent puts to one key and referencing one entry never fail on IndexedDB", async () => {
  const s = new Sweeper(await openIndexedDb(`contend-${Date.now()}`));
  await s.put("target", 0);
  const results = await Promise.allSettled([
    ...Array.from({ length: 50 }, (_, i) => s.put("same", i)),
    ...Array.from({ length: 50 }, (_, i) => s.put(`r${i}`, i, { refs: ["target"] })),
  ]);
  assert.deepEqual(results.filter((r) => r.status === "rejected"), []);
  assert.equal(await s.get("same"), 49);
  await assert.rejects(s.delete("target"), /referenced by 50 other entries/);
});

test("on IndexedDB a Sweeper stops adding on a guess while its guesses are wrong, and starts again (fake-indexeddb)", async () => {
  const store = await openIndexedDb(`guess-${Date.now()}`);
  const a = new Sweeper(store);
  for (let i = 0; i < 20; i++) await a.put(`k${i}`, i);
  const b = new Sweeper(store);
  await b.put("b", 0);
  // Each add is a write on the guess that its record is absent.
  const add = IDBObjectStore.prototype.add;
  let adds = 0;
  IDBObjectStore.prototype.add = function (...args) {
    adds++;
    return add.apply(this, args);
  };
  try {
    for (let i = 0; i < 20; i++) await b.put(`k${i}`, -i);
    // Guessing on would make 20 (each failing); the guess stops after two.
    assert.ok(adds <= 2, `${adds} adds over 20 records that were there`);
    for (let i = 0; i < 20; i++) assert.equal(await b.get(`k${i}`), -i);
    adds = 0;
    for (let i = 0; i < 20; i++) await b.put(`n${i}`, i);
    // New records bring the guess back within a few writes.
    assert.ok(adds >= 15, `${adds} adds for 20 new records`);
  } finally {
    IDBObjectStore.prototype.add = add;
  }
});

test("calls made after a put on a wrong guess come after it, the get's plain read too (fake-indexeddb)", async () => {
  const store = await openIndexedDb(`order-${Date.now()}`);
  const a = new Sweeper(store);
  await a.put("read", "old");
  await a.put("gone", "old");
  // b never saw them: a put of one, made while no other call waits, adds
  // on the guess it is absent, commits at once, meets a's record and goes
  // again. The calls after it, made before it was confirmed, must still
  // come after it.
  const b = new Sweeper(store);
  await b.put("b's own", 0);
  // Each round is one early commit and one failed add: the path it names.
  const commit = IDBTransaction.prototype.commit;
  const add = IDBObjectStore.prototype.add;
  const seen = { commits: 0, failedAdds: 0 };
  IDBTransaction.prototype.commit = function () {
    seen.commits++;
    return commit.call(this);
  };
  IDBObjectStore.prototype.add = function (...args) {
    const request = add.apply(this, args);
    request.addEventListener("error", () => seen.failedAdds++);
    return request;
  };
  try {
    const [, read] = await Promise.all([b.put("read", "new"), b.get("read")]);
    assert.equal(read, "new");
    assert.deepEqual(seen, { commits: 1, failedAdds: 1 });
    const [, deleted, again] = await Promise.all([b.put("gone", "new"), b.delete("gone"), b.get("gone")]);
    assert.equal(deleted, true);
    assert.equal(again, undefined);
    assert.deepEqual(seen, { commits: 2, failedAdds: 2 });
  } finally {
    IDBTransaction.prototype.commit = commit;
    IDBObjectStore.prototype.add = add;
  }
  assert.equal(await a.get("read"), "new");
  assert.equal(await a.get("gone"), undefined);
  store.close();
});

test("a put whose add, committed at once, failed without aborting its transaction still writes (fake-indexeddb)", async () => {
  // A put of a record it guesses absent commits its add at once. By the
  // spec's text a failed request then leaves its transaction to commit
  // without it (Chromium aborts it; fake-indexeddb does what the text says
  // when the error event is cancelled, as here): the add's own error, not
  // how the transaction ended, must send the write again.
  const store = await openIndexedDb(`quiet-${Date.now()}`);
  const a = new Sweeper(store);
  await a.put("k", "old");
  const b = new Sweeper(store);
  await b.put("b's own", 0);
  const add = IDBObjectStore.prototype.add;
  let cancelled = 0;
  IDBObjectStore.prototype.add = function (...args) {
    const request = add.apply(this, args);
    request.addEventListener("error", (event) => {
      cancelled++;
      event.preventDefault();
    });
    return request;
  };
  try {
    await b.put("k", "new");
  } finally {
    IDBObjectStore.prototype.add = add;
  }
  assert.equal(cancelled, 1, "the add met a's record");
  assert.equal(await a.get("k"), "new");
  store.close();
});

test("putMany over records another sweeper wrote counts their references exactly (fake-indexeddb)", async () => {
  const store = await openIndexedDb(`adds-${Date.now()}`);
  const a = new Sweeper(store);
  await a.put("target", 0);
  await a.put("k1", "old", { refs: ["target"] });
  // b never saw k1: it writes on the guess that k1 is absent, finds it is
  // not, and must then drop k1's old reference in the same transaction.
  const b = new Sweeper(store);
  await b.putMany([
    { key: "fresh", value: "new entry" },
    { key: "k1", value: "new" },
  ]);
  // The existing key first, then a fresh one: the last add succeeds after one failed.
  await a.put("k0", "old", { refs: ["target"] });
  await b.putMany([
    { key: "k0", value: "new" },
    { key: "fresh2", value: "new entry" },
  ]);
  assert.equal(await a.get("k0"), "new");
  assert.equal(await a.get("fresh2"), "new entry");
  assert.equal(await b.get("k1"), "new");
  assert.equal(await b.get("fresh"), "new entry");
  assert.equal(await a.delete("target"), true);
  // And a single put the same way.
  await a.put("target", 0);
  await a.put("k2", "old", { refs: ["target"] });
  await b.put("k2", "new");
  assert.equal(await a.get("k2"), "new");
  assert.equal(await a.delete("target"), true);
  store.close();
});

test("values come back exactly as they were put (memory store and fake-indexeddb)", async () => {
  const { roundTripFailures } = await import("../shared/fidelity.mjs");
  assert.deepEqual(await roundTripFailures(new Sweeper(memoryStore())), []);
  const store = await openIndexedDb(`fidelity-${Date.now()}`);
  assert.deepEqual(await roundTripFailures(new Sweeper(store)), []);
  store.close();
});

test("what cannot be stored exactly is refused, by path, briefly", async () => {
  const s = new Sweeper(memoryStore());
  const extra = [1, , 3]; // eslint-disable-line no-sparse-arrays
  extra.x = 1;
  await assert.rejects(s.put("e", { a: extra }), /value\.a is an array with a property besides its items \("x"\)/);
  const huge = [];
  huge.length = 2 ** 32 - 1;
  await assert.rejects(s.put("h", huge), /value is an array of 4294967295 items, more than the 4194304/);
  const cyclic = { a: 1 };
  cyclic.self = { back: cyclic };
  await assert.rejects(s.put("c", cyclic), { message: 'kvsweep: put("c"): value.self.back is a cycle: it holds an object it is inside of' });
  await assert.rejects(s.put("f", { a: 1, f() {} }), /value\.f is a function, which cannot be stored/);
  await assert.rejects(s.put("s", [Symbol("x")]), /value\[0\] is a symbol, which cannot be stored/);
  await assert.rejects(s.put("w", new WeakMap()), /value is a WeakMap, which cannot be stored/);
  let deep = 0;
  for (let i = 0; i < 1005; i++) deep = [deep];
  const err = await s.put("d", deep).catch((e) => e);
  assert.match(err.message, /nests deeper than 1000 levels/);
  assert.ok(err.message.length < 200, err.message);
  await assert.rejects(s.put("u", undefined), /value is undefined; store null/);
});

test("messages show values as JavaScript writes them", async () => {
  const s = new Sweeper(memoryStore());
  await assert.rejects(s.put(42, 1), { message: "kvsweep: put: key must be a non-empty string, got 42" });
  await assert.rejects(s.put("\ud800", "hi"), /put: key must be well-formed UTF-16, got a string with a lone surrogate/);
  await assert.rejects(s.get("\udc00"), /get: key must be well-formed UTF-16/);
  await assert.rejects(s.put("k", 1, { namespace: "n\ud800" }), /put options\.namespace must be well-formed UTF-16, got a string with a lone surrogate/);
  // A lone surrogate in any option's value is named by its path.
  await assert.rejects(s.put("k", 1, { group: "g\udc00" }), /put options\.group must be well-formed UTF-16/);
  await assert.rejects(s.run({ mode: "\ud800" }), /run options\.mode must be well-formed UTF-16/);
  await assert.rejects(s.putMany([{ key: "a", value: 1 }, { key: "b", value: 2, refs: ["a", "\ud800"] }]), /putMany items\[1\]\.refs\[1\] must be well-formed UTF-16/);
  assert.throws(() => new Sweeper(memoryStore(), { policy: { groups: { g: { keepLast: "\ud800" } } } }), /policy\.groups\.g\.keepLast must be well-formed UTF-16/);
  // A policy's namespace or group named with a lone surrogate would name
  // U+FFFD's, and delete there: refused.
  assert.throws(() => new Sweeper(memoryStore(), { policy: { namespaces: { "\ud800": { maxEntries: 0 } } } }), /policy\.namespaces has a property name with a lone surrogate \(names must be well-formed UTF-16\)/);
  assert.throws(() => new Sweeper(memoryStore(), { policy: { groups: { "\udc00": { keepLast: 1 } } } }), /policy\.groups has a property name with a lone surrogate/);
  const throwing = new Sweeper(memoryStore(), { clock: () => { throw new RangeError("no time"); } });
  await assert.rejects(throwing.put("k", 1), { message: "kvsweep: clock() threw RangeError: no time" });
  const fractional = new Sweeper(memoryStore(), { clock: () => 1.5 });
  await assert.rejects(fractional.put("k", 1), /whole number of milliseconds .* got 1\.5$/);
  await assert.rejects(s.getBlob(7), { message: "kvsweep: getBlob: id must be a string, got 7" });
  await assert.rejects(openIndexedDb(Infinity), { message: "kvsweep: openIndexedDb: name must be a non-empty, well-formed string, got Infinity" });
  // A lone surrogate would open U+FFFD's database: two names, one database.
  await assert.rejects(openIndexedDb("app-\ud800"), { message: "kvsweep: openIndexedDb: name must be a non-empty, well-formed string, got a string with a lone surrogate" });
  const { openCacheStorage, openOpfs } = await import("../../pkg/node.js");
  await assert.rejects(openCacheStorage("app-\ud800"), /openCacheStorage\(name\): name holds a lone surrogate/);
  await assert.rejects(openOpfs("app-\udc00"), /openOpfs\(name\): name holds a lone surrogate/);
  // Quoted, it showed as U+FFFD, which the caller never passed.
  await assert.rejects(s.clear("\ud800"), /clear: namespace must be a well-formed string .*, got a string with a lone surrogate$/);
  await assert.rejects(s.put("k", new (class {})()), /value is an object, which cannot be stored/);
  await assert.rejects(s.put("k", new URL("http://x/")), /value is a URL, which cannot be stored/);
});

test("a long string with a lone surrogate comes back: it was rebuilt with one call spreading every unit, which overflowed the stack", async () => {
  const long = "\ud800" + "x".repeat(200_000) + "\udc00";
  const s = new Sweeper(memoryStore());
  await s.put("k", { long, list: [long] });
  const got = await s.get("k");
  assert.ok(got.long === long && got.list[0] === long);
});

test("fractions and huge numbers in messages read as JavaScript prints them (String(n))", async () => {
  const s = new Sweeper(memoryStore());
  const cases = [
    [1.5, "1.5"],
    [-0.1, "-0.1"],
    [1e-7, "1e-7"],
    [0.000001, "0.000001"],
    [981446413237567.25, "981446413237567.2"],
    [1.5e21, "1.5e+21"],
    [123456789012345680000, "123456789012345680000"],
    [1e300, "1e+300"],
    [5e-324, "5e-324"],
  ];
  for (const [n, shown] of cases) {
    await assert.rejects(s.getBlob(n), { message: `kvsweep: getBlob: id must be a string, got ${shown}` });
  }
});

test("putBlob takes a Uint8Array, an ArrayBuffer, any typed array or a Blob, all the same bytes", async () => {
  const s = new Sweeper(memoryStore());
  const bytes = new Uint8Array([1, 2, 3, 4]);
  const id = await s.putBlob(bytes);
  assert.equal(await s.putBlob(bytes.buffer), id);
  assert.equal(await s.putBlob(new Uint16Array(bytes.buffer)), id);
  assert.equal(await s.putBlob(new DataView(new Uint8Array([9, 1, 2, 3, 4]).buffer, 1)), id);
  assert.equal(await s.putBlob(new Blob([bytes])), id);
  assert.deepEqual(await s.getBlob(id), bytes);
  await assert.rejects(s.putBlob("text"), /putBlob: bytes must be a Uint8Array, an ArrayBuffer, a typed array or a Blob, got "text"/);
  // A buffer whose bytes were transferred away is refused by putBlob's own
  // rejection (named as detached where the runtime says so: not Node 20).
  const gone = new ArrayBuffer(8);
  structuredClone(gone, { transfer: [gone] });
  await assert.rejects(s.putBlob(gone), /^Error: kvsweep: putBlob: bytes (is a detached ArrayBuffer \(its bytes were transferred away\)|cannot be viewed): TypeError: .*detached/);
  // A view's own byteLength cannot make putBlob read other bytes.
  const view = new Uint16Array(new Uint8Array([9, 9, 9, 9, 1, 2, 3, 4]).buffer, 4);
  Object.defineProperty(view, "byteLength", { value: 64 });
  assert.equal(await s.putBlob(view), id);
  assert.equal(await s.putBlob(bytes), id);
  // getBlob names itself in what it refuses.
  await assert.rejects(s.getBlob(id.toUpperCase()), /^Error: kvsweep: getBlob: "[0-9A-F]{64}" is not a blob id/);
});

test("put and putBlob read a buffer's or a view's bytes through the built-in getters: no subclass, own property or detached buffer makes them copy other bytes", async () => {
  const s = new Sweeper(memoryStore());
  // A length that lies would have copied module memory past the two bytes.
  class Lying extends Uint8Array {
    get length() {
      return 1 << 20;
    }
  }
  await s.put("lying", new Lying([1, 2]));
  assert.deepEqual(await s.get("lying"), new Uint8Array([1, 2]));
  // A byteLength that throws would have stored nothing, silently.
  const throwing = (v) => Object.defineProperty(v, "byteLength", { get: () => { throw new Error("no"); } });
  await s.put("floats", { f: throwing(new Float64Array([1.5, 2.5])) });
  assert.deepEqual(await s.get("floats"), { f: new Float64Array([1.5, 2.5]) });
  const id = await s.putBlob(throwing(new Uint8Array([1, 2, 3])));
  assert.deepEqual(await s.getBlob(id), new Uint8Array([1, 2, 3]));
  // What would come back as something else is refused, by path.
  await assert.rejects(s.put("shared", { v: new Uint8Array(new SharedArrayBuffer(4)) }), /^Error: kvsweep: put\("shared"\): value\.v is a view of a SharedArrayBuffer, which would come back as an ArrayBuffer/);
  await assert.rejects(s.put("resizable", new ArrayBuffer(4, { maxByteLength: 8 })), /value is \(a view of\) a resizable ArrayBuffer, which would come back fixed-length/);
  // A detached buffer is refused, and leaves no call of the Sweeper's half done.
  const gone = new ArrayBuffer(8);
  structuredClone(gone, { transfer: [gone] });
  await assert.rejects(s.put("gone", { b: gone }), /^Error: kvsweep: put\("gone"\): value\.b (is a detached ArrayBuffer|cannot be viewed)/);
  const emptied = new Uint8Array(8);
  structuredClone(emptied.buffer, { transfer: [emptied.buffer] });
  await assert.rejects(s.put("gone", emptied), /value (is a detached ArrayBuffer|cannot be viewed)/);
  await s.put("after", 1);
  assert.equal(await s.get("after"), 1);
  // Buffers and views from another realm (a vm context, an iframe) are
  // buffers and views all the same.
  const { runInNewContext } = await import("node:vm");
  const [buffer, view, bytes] = runInNewContext("[new Uint8Array([1, 2, 3]).buffer, new Uint16Array(new Uint8Array([5, 0, 6, 0]).buffer), new Uint8Array([7, 8])]");
  await s.put("realm", { buffer, view, bytes });
  const back = await s.get("realm");
  assert.deepEqual(new Uint8Array(back.buffer), new Uint8Array([1, 2, 3]));
  assert.deepEqual([...back.view], [5, 6]);
  assert.deepEqual(back.bytes, new Uint8Array([7, 8]));
  await s.put("realm", bytes);
  assert.deepEqual(await s.get("realm"), new Uint8Array([7, 8]));
  // A view's kind is its built-in tag's, whatever its prototype claims.
  const posing = Object.setPrototypeOf(new Int16Array([1, -2]), Float64Array.prototype);
  await s.put("posing", { posing, also: Object.setPrototypeOf(new Int16Array([3]), Uint8Array.prototype) });
  const posed = await s.get("posing");
  assert.ok(posed.posing instanceof Int16Array && posed.also instanceof Int16Array);
  assert.deepEqual([...posed.posing, ...posed.also], [1, -2, 3]);
  s.free();
});

test("an object met twice in one value is written twice; a value repeating its parts without end is refused in about a second, not after minutes", async () => {
  const s = new Sweeper(memoryStore());
  const tags = ["a"];
  const d = new Date(0);
  await s.put("k", { a: tags, b: tags, d, e: d });
  assert.deepEqual(await s.get("k"), { a: ["a"], b: ["a"], d: new Date(0), e: new Date(0) });
  // Each level holds the one below twice: 2^40 paths through 40 Maps.
  let v = new Map();
  for (let i = 0; i < 40; i++) v = new Map([[v, v]]);
  const started = performance.now();
  await assert.rejects(s.put("k", v), /repeats objects met before in this value more than 100000 times/);
  assert.ok(performance.now() - started < 5_000, `${Math.round(performance.now() - started)} ms`);
  await s.put("after", 1);
  assert.equal(await s.get("after"), 1);
  // Rows sharing one object are many repeats, but no more than their own objects.
  const meta = { kind: "row" };
  await s.put("rows", Array.from({ length: 150_000 }, (_, i) => ({ i, meta })));
  assert.equal((await s.get("rows")).length, 150_000);
});

test("a TTL past 2^53 - 1 ms ends there: the entry's times stay JavaScript numbers, and listing it works", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock });
  await s.put("forever", 1, { ttlMs: Number.MAX_SAFE_INTEGER });
  assert.equal((await s.detail("forever")).expiresAt, Number.MAX_SAFE_INTEGER);
  assert.equal((await s.history()).length, 1);
});

test("byte totals past 2^53 come back as the nearest Number: plan and run resolve, and the run's deletions are reported", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock, policy: { maxBytes: 1 } });
  const size = 2 ** 52 + 10;
  for (const k of ["a", "b", "c"]) await s.put(k, null, { size });
  clock.now += 1;
  const plan = await s.plan();
  assert.equal(plan.actions.length, 3);
  assert.deepEqual(plan.actions.map((a) => a.bytes), [size, size, size]);
  assert.equal(plan.summary.deleted.maxBytes.bytes, 3 * size);
  const report = await s.run();
  assert.equal(report.deleted.maxBytes.count, 3);
  assert.equal(report.deleted.maxBytes.bytes, 3 * size, "the nearest Number to the exact total");
  assert.equal(await s.get("a"), undefined);
});

test("putBlob's id is the SHA-256 of the bytes it was given, hashed by Web Crypto or by the module", async () => {
  const { createHash } = await import("node:crypto");
  const sha = (b) => createHash("sha256").update(b).digest("hex");
  const sized = (n, seed) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);
  // Count the digests Web Crypto makes, so the test knows which path hashed.
  const subtle = globalThis.crypto.subtle;
  const digest = subtle.digest;
  let digests = 0;
  subtle.digest = function (...args) {
    digests++;
    return digest.apply(this, args);
  };
  try {
    const s = new Sweeper(memoryStore());
    // Below 16 KiB the module hashes; from it up, Web Crypto does.
    for (const [n, web] of [[0, 0], [16 * 1024 - 1, 0], [16 * 1024, 1], [1 << 20, 1]]) {
      const bytes = sized(n, n & 7);
      const before = digests;
      assert.equal(await s.putBlob(bytes), sha(bytes), `${n} bytes`);
      assert.equal(digests - before, web, `${n} bytes: Web Crypto digests`);
      assert.deepEqual(await s.getBlob(sha(bytes)), bytes);
    }
    const big = sized(100_000, 3);
    // A view at an offset, a Blob, and shared memory (which Web Crypto may refuse).
    const framed = new Uint8Array(big.length + 10);
    framed.set(big, 7);
    assert.equal(await s.putBlob(new DataView(framed.buffer, 7, big.length)), sha(big));
    assert.equal(await s.putBlob(new Blob([big])), sha(big));
    const shared = new Uint8Array(new SharedArrayBuffer(big.length));
    shared.set(big);
    assert.equal(await s.putBlob(shared), sha(big));
    // Bytes changed by the caller right after the call: what was given is stored, under its id.
    const changing = sized(50_000, 5);
    const given = changing.slice();
    const put = s.putBlob(changing);
    changing.fill(0);
    assert.equal(await put, sha(given));
    assert.deepEqual(await s.getBlob(sha(given)), given);
    // Shared memory is not given to Web Crypto (it refuses it), and nothing
    // is begun for a closed Sweeper: no digest is left unawaited.
    const before = digests;
    const closed = new Sweeper(memoryStore());
    closed.close();
    await assert.rejects(closed.putBlob(shared), /closed/);
    assert.equal(digests, before);
    // A Web Crypto that fails: the module hashes instead.
    subtle.digest = () => Promise.reject(new Error("no"));
    const other = sized(40_000, 9);
    assert.equal(await s.putBlob(other), sha(other));
  } finally {
    subtle.digest = digest;
  }
  // No Web Crypto at all (a page that is not a secure context).
  const crypto = Object.getOwnPropertyDescriptor(globalThis, "crypto");
  Object.defineProperty(globalThis, "crypto", { value: undefined, configurable: true });
  try {
    const bytes = sized(70_000, 1);
    assert.equal(await new Sweeper(memoryStore()).putBlob(bytes), sha(bytes));
  } finally {
    Object.defineProperty(globalThis, "crypto", crypto);
  }
});

/** A memory store with `n` entries that expired at T0 + 1, and a clock past that. */
async function expiredStore(n) {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock, batchSize: 10 });
  for (let i = 0; i < n; i++) await s.put(`k${String(i).padStart(3, "0")}`, i, { ttlMs: 1 });
  clock.now += 10;
  return s;
}

test("values and blobs over maxValueBytes are refused before they are copied in, read or hashed", async () => {
  const subtle = globalThis.crypto.subtle;
  const { digest } = subtle;
  const { arrayBuffer } = Blob.prototype;
  const calls = { digest: 0, arrayBuffer: 0 };
  subtle.digest = function (...args) {
    calls.digest++;
    return digest.apply(this, args);
  };
  Blob.prototype.arrayBuffer = function (...args) {
    calls.arrayBuffer++;
    return arrayBuffer.apply(this, args);
  };
  try {
    const s = new Sweeper(memoryStore(), { maxValueBytes: 16_000 });
    // The walk stops at the string past the limit: what comes after it is
    // never read (an object's own getters run when it is reached).
    let read = false;
    const value = {
      text: "x".repeat(20_000),
      later: {
        get after() {
          read = true;
          return 1;
        },
      },
    };
    await assert.rejects(s.put("k", value), { message: 'kvsweep: put("k"): value.text is at least 20000 bytes as encoded, more than the 15994 left of the limit of 16000 bytes (raise maxValueBytes to store it)' });
    assert.equal(read, false);
    await assert.rejects(s.put("k", new Uint8Array(20_000)), { message: 'kvsweep: put("k"): value is 20000 bytes, more than the limit of 16000 bytes (raise maxValueBytes to store it)' });
    await assert.rejects(s.putMany([{ key: "a", value: [new ArrayBuffer(10_000), new Float64Array(1_000)] }]), /putMany items\[0\] \("a"\): value\[1\] is at least 8000 bytes as encoded, more than the 5997 left of the limit of 16000 bytes/);
    // Blobs by their byteLength or size: no digest begun, no Blob read.
    for (const bytes of [new Uint8Array(20_000), new DataView(new ArrayBuffer(20_000)), new Blob([new Uint8Array(20_000)])]) {
      await assert.rejects(s.putBlob(bytes), { message: "kvsweep: putBlob: bytes holds 20000 bytes, more than the limit of 16000 bytes (raise maxValueBytes to store it)" });
    }
    assert.deepEqual(calls, { digest: 0, arrayBuffer: 0 });
    // Keys count too. A string alone past the limit says so as the value.
    await assert.rejects(s.put("k", "x".repeat(20_000)), { message: 'kvsweep: put("k"): value is at least 20000 bytes as encoded, more than the 15999 left of the limit of 16000 bytes (raise maxValueBytes to store it)' });
    await assert.rejects(s.put("k", { ["k".repeat(20_000)]: 0 }), { message: 'kvsweep: put("k"): value is at least 20000 bytes as encoded, more than the 15999 left of the limit of 16000 bytes (raise maxValueBytes to store it)' });
    // At the limit by content, past it by the encoding's header: by name too.
    await assert.rejects(s.put("k", "x".repeat(15_998)), { message: 'kvsweep: put("k"): value is 16001 bytes as encoded, more than the limit of 16000 bytes (raise maxValueBytes to store it)' });
    // A wrapper object of a primitive is refused as what it is.
    await assert.rejects(s.put("k", Object(5n)), /^Error: kvsweep: put\("k"\): value is a BigInt object \(a wrapper; pass the primitive\), which cannot be stored/);
    await assert.rejects(s.put("k", { n: new Number(1) }), /^Error: kvsweep: put\("k"\): value\.n is a Number object \(a wrapper; pass the primitive\)/);
    // Within the limit all goes as before.
    await s.put("k", { text: "x".repeat(15_000) });
    assert.equal(typeof (await s.putBlob(new Uint8Array(16_000))), "string");
    // Larger than the module's memory could take in: refused, not a trap.
    let huge = null;
    try {
      huge = new Uint8Array(3 * 2 ** 30);
    } catch {
      // This host cannot make one: nothing more to check.
    }
    if (huge) {
      const big = new Sweeper(memoryStore());
      await assert.rejects(big.put("huge", huge), /^Error: kvsweep: put\("huge"\): value is 3221225472 bytes, more than the limit of 67108864 bytes/);
      await assert.rejects(big.putBlob(huge), /^Error: kvsweep: putBlob: bytes holds 3221225472 bytes, more than the limit of 67108864 bytes/);
      assert.equal(await big.put("after", 1).then(() => "ok"), "ok");
      // A closed Sweeper says so before it looks at the bytes.
      const shut = new Sweeper(memoryStore());
      shut.close();
      await assert.rejects(shut.putBlob(huge), { message: "kvsweep: putBlob: this Sweeper is closed (close() was called)" });
    }
    // The limit itself is held to what the module's memory can take, and so
    // is all that one putMany takes: the items past it are not copied in.
    assert.throws(() => new Sweeper(memoryStore(), { maxValueBytes: 2 ** 28 + 1 }), { message: "kvsweep: new Sweeper(store, options): options.maxValueBytes must be a whole number from 0 to 268435456 (256 MiB), got 268435457" });
    assert.throws(() => new Sweeper(memoryStore(), { maxValueBytes: 1024.5 }), { message: "kvsweep: new Sweeper(store, options): options.maxValueBytes must be a whole number from 0 to 268435456 (256 MiB), got 1024.5" });
    const many = new Sweeper(memoryStore());
    const sixty = "x".repeat(60 * 2 ** 20);
    await assert.rejects(many.putMany(Array.from({ length: 5 }, (_, i) => ({ key: `k${i}`, value: sixty }))), {
      message: 'kvsweep: putMany items[4] ("k4"): value is at least 62914560 bytes as encoded, more than the 16777195 left of the 268435456 bytes one putMany call takes in all (split it into several calls)',
    });
    assert.equal(await many.get("k0"), undefined, "nothing of a refused putMany is written");
  } finally {
    subtle.digest = digest;
    Blob.prototype.arrayBuffer = arrayBuffer;
  }
});

test("onProgress that throws or rejects stops the run, which rejects with that error", async () => {
  const boom = new Error("progress failed");
  const s = await expiredStore(50);
  await assert.rejects(s.run({ onProgress: (p) => { if (p.processed >= 10) throw boom; } }), (e) => e === boom);
  // Where it stopped was saved: the next run goes on and finishes.
  const rejected = new TypeError("async progress failed");
  await assert.rejects(s.run({ onProgress: async (p) => { if (p.processed >= 10) throw rejected; } }), (e) => e === rejected);
  const rest = await s.run();
  assert.equal(rest.done, true);
  assert.equal(rest.resumed, true);
  assert.equal((await s.plan()).actions.length, 0);
});

test("onProgress: a thenable or another realm's promise is waited for, its rejection stops the run; a non-Error thrown becomes an Error naming it", async () => {
  const { runInNewContext } = await import("node:vm");
  const s = await expiredStore(50);
  // A thenable resolving later holds the run until it does.
  const order = [];
  const thenable = { then: (ok) => setTimeout(() => (order.push("resolved"), ok()), 50) };
  const report = await s.run({ onProgress: (p) => (p.running ? thenable : undefined) });
  order.push("run ended");
  assert.equal(report.done, true);
  assert.equal(order[0], "resolved", order.join(", "));
  assert.equal(order.at(-1), "run ended", order.join(", "));
  // Rejections of a thenable and of a vm context's promise stop the run.
  const t = await expiredStore(50);
  const bad = new Error("thenable failed");
  await assert.rejects(t.run({ onProgress: (p) => (p.processed >= 10 ? { then: (_, fail) => fail(bad) } : undefined) }), (e) => e === bad);
  const foreign = runInNewContext("new Error('vm failed')");
  const u = await expiredStore(50);
  await assert.rejects(u.run({ onProgress: (p) => (p.processed >= 10 ? runInNewContext("(e) => Promise.reject(e)")(foreign) : undefined) }), (e) => e === foreign || e?.message?.includes("vm failed"));
  // Not an Error: the run rejects with an Error saying what was thrown.
  const v = await expiredStore(50);
  await assert.rejects(v.run({ onProgress: (p) => { if (p.processed >= 10) throw 42; } }), { message: "kvsweep: run: options.onProgress failed with 42" });
  const w = await expiredStore(50);
  await assert.rejects(w.run({ onProgress: async (p) => { if (p.processed >= 10) throw undefined; } }), { message: "kvsweep: run: options.onProgress failed with undefined" });
});

test("putBlob tells a Blob by what it is: a subclass's is read with the built-in arrayBuffer(), an object that only calls itself Blob is refused", async () => {
  const { createHash } = await import("node:crypto");
  const sha = (bytes) => createHash("sha256").update(bytes).digest("hex");
  const s = new Sweeper(memoryStore());
  class MyBlob extends Blob {
    arrayBuffer() {
      return Promise.resolve("not bytes");
    }
  }
  const bytes = new TextEncoder().encode("subclassed blob bytes");
  const id = await s.putBlob(new MyBlob([bytes]));
  assert.equal(id, sha(bytes));
  assert.deepEqual(await s.getBlob(id), bytes);
  const own = new Blob([bytes]);
  own.arrayBuffer = async () => new ArrayBuffer(0);
  assert.equal(await s.putBlob(own), sha(bytes), "a Blob's own arrayBuffer is not what is read");
  const fake = { constructor: { name: "Blob" }, size: 3, arrayBuffer: async () => "not bytes" };
  await assert.rejects(s.putBlob(fake), { message: "kvsweep: putBlob: bytes must be a Uint8Array, an ArrayBuffer, a typed array or a Blob, got an object whose constructor is named Blob but that is not one" });
  assert.equal(await s.getBlob(sha(new Uint8Array(0))), undefined, "no empty blob was stored");
});

test("a Map, Set or Date of another realm is refused, saying to copy it here", async () => {
  const { runInNewContext } = await import("node:vm");
  const s = new Sweeper(memoryStore());
  const refused = (path, what) => `kvsweep: put("k"): ${path} is ${what}, which cannot be stored; store plain objects, arrays, Map, Set, Date (this realm's: structuredClone() another's), BigInt, ArrayBuffer or typed arrays`;
  for (const [code, what] of [["new Map([[1, 2]])", "a Map"], ["new Set([1])", "a Set"], ["new Date(0)", "a Date"]]) {
    await assert.rejects(s.put("k", { v: runInNewContext(code) }), { message: refused("value.v", what) });
  }
  const copied = structuredClone(runInNewContext("new Map([[1, 2]])"));
  await s.put("k", copied);
  assert.deepEqual(await s.get("k"), new Map([[1, 2]]));
});

test("close() from onProgress stops the run after its current batch", async () => {
  const s = await expiredStore(50);
  const seen = [];
  const report = await s.run({ onProgress: (p) => { seen.push(p.processed); if (p.processed >= 10) s.close(); } });
  assert.equal(report.done, false);
  assert.equal(report.stopped, "closed");
  assert.ok(report.deleted.expired.count < 50, JSON.stringify(report));
  await assert.rejects(s.run(), /^Error: kvsweep: run: this Sweeper is closed \(close\(\) was called\)$/);
  // Every call names itself, the maintenance ones and the iterators too.
  await assert.rejects(s.history(), { message: "kvsweep: history: this Sweeper is closed (close() was called)" });
  await assert.rejects(s.health(), { message: "kvsweep: health: this Sweeper is closed (close() was called)" });
  await assert.rejects(s.keys().next(), { message: "kvsweep: keys: this Sweeper is closed (close() was called)" });
  await assert.rejects(s.entries().next(), { message: "kvsweep: entries: this Sweeper is closed (close() was called)" });
});

test("an aborted signal gives the same answer on an empty store and a full one; plan takes a signal", async () => {
  const aborted = AbortSignal.abort();
  for (const s of [new Sweeper(memoryStore()), await expiredStore(30)]) {
    const report = await s.run({ signal: aborted });
    assert.equal(report.done, false);
    assert.equal(report.stopped, "aborted");
    assert.deepEqual(report.deleted, {});
    await assert.rejects(s.plan({ signal: aborted }), { name: "AbortError", message: "kvsweep: plan: aborted by options.signal" });
  }
  const s = new Sweeper(memoryStore());
  await assert.rejects(s.plan({ budgetMs: 0 }), /plan options: unknown option "budgetMs"/);
  await assert.rejects(s.plan({ onProgress() {} }), /unknown option "onProgress"/);
  await assert.rejects(s.run({ signal: {} }), /run options.signal must be an AbortSignal, got an object/);
  await assert.rejects(s.put("k", 1, { ttlMs: 5, expiresAt: T0 }), /ttlMs and expiresAt cannot both be set/);
  await assert.rejects(s.put("k", 1, { ttlMs: 2 ** 53 }), /from 0 to 2\^53 - 1 \(Number.MAX_SAFE_INTEGER\), got 9007199254740992/);
  await assert.rejects(s.put("k", 1, { ttlMs: Infinity }), /got Infinity$/);
  assert.throws(() => new Sweeper(memoryStore(), { policy: { lowWatermark: 0.5 } }), /policy.lowWatermark needs policy.maxBytes/);
});

test("a Sweeper without a store, or after free(), says so by name", async () => {
  assert.throws(() => new Sweeper(), { message: "kvsweep: new Sweeper(store, options): store must be a KvStore from memoryStore(), openIndexedDb(), openOpfs(), openCacheStorage(), kvStore() or durableObjectStore(), got undefined" });
  assert.throws(() => new Sweeper({}), /store must be a KvStore .* got an object/);
  const s = new Sweeper(memoryStore());
  await s.put("k", 1);
  s.free();
  await assert.rejects(s.get("k"), { message: "kvsweep: Sweeper.get: this Sweeper was freed (free() was called); make a new one" });
  assert.throws(() => s.progress(), /Sweeper.progress: this Sweeper was freed/);
  const store = memoryStore();
  store.free();
  assert.throws(() => new Sweeper(store), /store was freed/);
});

test("free() twice, dispose after free(), a method off its Sweeper, or free() from inside a call: errors by name, never a crash or an object no one can free", async () => {
  const rejections = [];
  const onRejection = (e) => rejections.push(e);
  process.on("unhandledRejection", onRejection);
  try {
    const s = new Sweeper(memoryStore());
    s.free();
    s.free(); // nothing more to do
    s[Symbol.dispose]?.();
    const store = memoryStore();
    store.free();
    store.free();
    assert.throws(() => store.kind, { message: "kvsweep: KvStore.kind: this KvStore was freed (free() was called); make a new one" });
    assert.throws(() => store.capabilities(), /KvStore.capabilities: this KvStore was freed/);
    assert.throws(() => store.close(), /KvStore.close: this KvStore was freed/);
    // A method taken off its Sweeper fails as the method does, saying why.
    const t = new Sweeper(memoryStore());
    const { get, put, run } = t;
    for (const [name, p] of [["get", get("k")], ["put", put("k", 1)], ["run", run()]]) {
      await assert.rejects(p, { message: `kvsweep: Sweeper.${name}: called without its Sweeper, on undefined (a method taken off its Sweeper needs .bind)` });
    }
    await assert.rejects(Sweeper.prototype.plan.call(Object.create(Sweeper.prototype)), { message: "kvsweep: Sweeper.plan: called on a Sweeper the module did not make (not a live Sweeper)" });
    // free() from a getter of the value a put is reading frees the Sweeper
    // once the put returns (the put itself goes on).
    let threw = null;
    await t.put("k", {
      get a() {
        try {
          t.free();
        } catch (e) {
          threw = e;
        }
        return 1;
      },
    });
    assert.equal(threw, null);
    await assert.rejects(t.get("k"), /Sweeper.get: this Sweeper was freed/);
    t.free();
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(rejections, []);
  } finally {
    process.off("unhandledRejection", onRejection);
  }
});

test("a put may not reference an entry get would not return", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock });
  await s.put("x", 1, { ttlMs: 10 });
  await s.put("pinned", 1, { ttlMs: 10, pinned: true });
  clock.now += 20;
  assert.equal(await s.get("x"), undefined);
  await assert.rejects(s.put("y", 1, { refs: ["x"] }), { message: 'kvsweep: put: refs: entry "x" in namespace "" has expired: put it again first' });
  await s.put("y", 1, { refs: ["pinned"] }); // a pinned entry never expires for get
  await s.put("x", 2);
  await s.put("y", 1, { refs: ["x"] });
});

test("keys, entries and clear, as idb-keyval users expect", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock, batchSize: 7 });
  for (let i = 0; i < 30; i++) await s.put(`a/${String(i).padStart(2, "0")}`, i, { namespace: "n" });
  await s.put("b/1", "b", { namespace: "n" });
  await s.put("a/99", "gone", { namespace: "n", ttlMs: 5 });
  await s.put("other", 1);
  clock.now += 10;
  const all = [];
  for await (const k of s.keys({ namespace: "n" })) all.push(k);
  assert.equal(all.length, 31);
  assert.ok(!all.includes("a/99"), "an expired key is not listed");
  const some = [];
  for await (const k of s.keys({ namespace: "n", prefix: "a/1", limit: 5 })) some.push(k);
  assert.deepEqual(some, ["a/10", "a/11", "a/12", "a/13", "a/14"]);
  const pairs = [];
  for await (const pair of s.entries({ namespace: "n", prefix: "b/" })) pairs.push(pair);
  assert.deepEqual(pairs, [["b/1", "b"]]);
  const blob = await s.putBlob(new Uint8Array([1]));
  await s.put("a/ref", 1, { namespace: "n", refs: ["a/00"], blobs: [blob] });
  const report = await s.clear("n");
  assert.equal(report.deleted.cleared.count, 33);
  const left = [];
  for await (const k of s.keys({ namespace: "n" })) left.push(k);
  assert.deepEqual(left, []);
  assert.equal(await s.get("other"), 1);
  // The blob lost its last reference: a light run collects it after its grace.
  await assert.rejects(s.clear(5), /clear: namespace must be a well-formed string/);
  await assert.rejects(s.keys({ limit: 0 }).next(), /keys options.limit must be a whole number from 1 to 2\^53 - 1, got 0$/);
  // A fraction gets the same range, not one that 0 then fails.
  await assert.rejects(s.keys({ limit: 0.5 }).next(), /keys options.limit must be a whole number from 1 to 2\^53 - 1, got 0\.5$/);
  await assert.rejects(s.keys(new Date()).next(), { message: "kvsweep: Sweeper.keys(options): options must be a plain object, got a Date" });
  await assert.rejects(s.entries(5).next(), /Sweeper.entries\(options\): options must be a plain object, got 5/);
});

test("keys with a prefix on IndexedDB, whose order differs from code point order past U+DFFF", async () => {
  const store = await openIndexedDb(`keys-${Date.now()}`);
  const s = new Sweeper(store, { batchSize: 3 });
  const keys = ["\u{1F600}", "\uFF01x", "\uFF01y", "\uFF02", "a", "ab", "b"];
  for (const k of keys) await s.put(k, k);
  const list = async (options) => {
    const out = [];
    for await (const k of s.keys(options)) out.push(k);
    return out;
  };
  assert.deepEqual(await list({ prefix: "\uFF01" }), ["\uFF01x", "\uFF01y"]);
  assert.deepEqual(await list({ prefix: "\u{1F600}" }), ["\u{1F600}"]);
  assert.deepEqual(await list({ prefix: "a" }), ["a", "ab"]);
  assert.deepEqual((await list()).sort(), [...keys].sort());
  const pairs = [];
  for await (const p of s.entries({ prefix: "a", limit: 1 })) pairs.push(p);
  assert.deepEqual(pairs, [["a", "a"]]);
  store.close();
});

test("an entry whose referrers have all expired can be deleted; a live referrer still refuses it", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock });
  await s.put("x", 1);
  await s.put("y", 2, { refs: ["x"], ttlMs: 10 });
  await s.put("z", 3, { refs: ["x"], ttlMs: 10 });
  await assert.rejects(s.delete("x"), /referenced by 2 other entries/);
  clock.now += 20;
  assert.equal(await s.delete("x"), true);
  assert.equal(await s.get("x"), undefined);
  assert.equal(await s.get("y", { includeExpired: true }), undefined, "the expired referrers went with it");
  await s.put("a", 1);
  await s.put("live", 2, { refs: ["a"] });
  await s.put("old", 3, { refs: ["a"], ttlMs: 1 });
  clock.now += 5;
  await assert.rejects(s.delete("a"), /referenced by 2 other entries/);
  assert.equal((await s.plan()).actions.length, 1, "only the expired referrer is garbage");
});

test("values whose getters or Proxy traps throw are refused by rejection, and the Sweeper lives on", async () => {
  const s = new Sweeper(memoryStore());
  const cases = [
    [{ get a() { throw new Error("getter threw"); } }, /^Error: kvsweep: put\("k"\): value threw Error: getter threw when read \(a getter or a Proxy\)$/],
    [{ deep: [new Proxy({}, { ownKeys() { throw new Error("ownKeys threw"); } })] }, /value\.deep\[0\] threw Error: ownKeys threw/],
    [new Proxy([1, 2], { get(t, k) { if (k === "length") throw new Error("length threw"); return t[k]; } }), /value threw Error: length threw/],
    [new Proxy(new Map(), {}), /value threw TypeError: .*Map.*incompatible receiver/],
    [new Proxy(new Date(), {}), /value threw TypeError/],
    // A Proxy of bytes would read as empty: refused, never stored changed.
    [new Proxy(new ArrayBuffer(4), {}), /value threw TypeError/],
    [new Proxy(new Uint8Array([1, 2]), {}), /value threw TypeError/],
    [{ bytes: new Proxy(new Uint8Array([1, 2]), {}) }, /value\.bytes threw TypeError/],
  ];
  for (const [value, message] of cases) {
    const p = s.put("k", value); // a promise, never a synchronous throw
    assert.ok(p instanceof Promise);
    await assert.rejects(p, message);
  }
  await assert.rejects(
    s.putMany([{ key: "a", get value() { throw new Error("item getter"); } }]),
    /^Error: kvsweep: putMany: items\[0\] threw Error: item getter when read \(a getter or a Proxy\)$/,
  );
  await assert.rejects(
    s.putMany(new Proxy([], { get(t, k) { if (k === "length") throw new Error("no length"); return t[k]; } })),
    /putMany: items threw Error: no length/,
  );
  await assert.rejects(s.put("k", 1, { get ttlMs() { throw new Error("option getter"); } }), /option getter/);
  await assert.rejects(s.putBlob(new Proxy(new Uint8Array([1]), {})), /^Error: kvsweep: putBlob: bytes threw TypeError: .*incompatible receiver/);
  await s.put("after", 1);
  assert.equal(await s.get("after"), 1);
  s.free(); // no borrow was left behind by an exception
});

test("a progress callback's promise that never settles holds a run only until it is aborted or closed", async () => {
  for (const how of ["aborted", "closed"]) {
    const s = new Sweeper(memoryStore(), { batchSize: 10 });
    for (let i = 0; i < 50; i++) await s.put(`k${i}`, i, { ttlMs: 1 });
    await new Promise((r) => setTimeout(r, 5));
    const controller = new AbortController();
    let calls = 0;
    const run = s.run({
      signal: controller.signal,
      onProgress: () => {
        calls++;
        return new Promise(() => {});
      },
    });
    await new Promise((r) => setTimeout(r, 30));
    if (how === "aborted") controller.abort();
    else s.close();
    const report = await run;
    assert.equal(report.stopped, how);
    assert.equal(report.done, false);
    assert.equal(calls, 1);
  }
});

test("plan({ signal }) stops listing a store as soon as it is aborted", async () => {
  const store = await openIndexedDb(`abort-plan-${Date.now()}`);
  const s = new Sweeper(store);
  const items = Array.from({ length: 6000 }, (_, i) => ({ key: `k${String(i).padStart(5, "0")}`, value: i }));
  await s.putMany(items);
  const controller = new AbortController();
  const getAll = IDBObjectStore.prototype.getAll;
  let pages = 0;
  IDBObjectStore.prototype.getAll = function (...args) {
    if (++pages === 1) controller.abort();
    return getAll.apply(this, args);
  };
  try {
    await assert.rejects(s.plan({ signal: controller.signal }), { name: "AbortError", message: "kvsweep: plan: aborted by options.signal" });
  } finally {
    IDBObjectStore.prototype.getAll = getAll;
  }
  assert.ok(pages <= 2, `${pages} pages read of 12`);
  // Nothing was changed: a plan without a signal lists all of it.
  const full = await s.plan();
  assert.equal(full.summary.scanned, 6000);
  store.close();
});

test("get on IndexedDB reads the entry's record with one plain request, and goes the module's way where it must", async () => {
  const clock = manualClock();
  const name = `fast-get-${Math.random()}`;
  const store = await openIndexedDb(name);
  const s = new Sweeper(store, { clock });
  // Which way each read went: api.js names its one object store as a string,
  // the module's IndexedDB code passes a list of names.
  const reads = { fast: 0, module: 0 };
  let refreshes = 0; // write transactions on the entries' records alone: accessedAt refreshes
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (names, mode, ...rest) {
    if (this.name === name && (mode === undefined || mode === "readonly")) reads[typeof names === "string" ? "fast" : "module"]++;
    if (this.name === name && mode === "readwrite" && [].concat(names).join() === "meta") refreshes++;
    return transaction.call(this, names, mode, ...rest);
  };
  try {
    const value = { n: 1, when: new Date(5), set: new Set(["a"]), raw: new Uint8Array([1, 2]) };
    await s.put("small", value);
    await s.put("large", "x".repeat(20_000)); // over 8 KiB: a record of its own
    await s.put("ttl", "soon gone", { ttlMs: 10 });
    await s.put("pinned", "stays", { ttlMs: 10, pinned: true });
    await s.put("other", "in b", { namespace: "b" });
    const count = () => ({ ...reads });
    reads.fast = reads.module = 0;
    assert.deepEqual(await s.get("small"), value);
    assert.deepEqual(count(), { fast: 1, module: 0 });
    assert.equal(await s.get("large"), "x".repeat(20_000));
    assert.deepEqual(count(), { fast: 2, module: 2 }, "judged from its record, then read by the module (record, then value)");
    assert.equal(await s.get("missing"), undefined);
    assert.equal(await s.get("other"), undefined);
    assert.equal(await s.get("other", { namespace: "b" }), "in b");
    clock.now += 10;
    assert.equal(await s.get("ttl"), undefined);
    assert.equal(await s.get("ttl", { includeExpired: true }), "soon gone");
    assert.equal(await s.get("pinned"), "stays");
    assert.deepEqual(count(), { fast: 8, module: 2 });

    // A read keeps its place among the writes called before and after it, awaited or not.
    s.put("small", 2);
    assert.equal(await s.get("small"), 2);
    s.put("small", 3);
    s.put("small", 4);
    assert.equal(await s.get("small"), 4);
    s.put("other", 0); // the module's task queue is busy when the read is called
    let read = s.get("small");
    s.put("small", 5);
    assert.equal(await read, 4);
    read = s.get("small");
    s.delete("small");
    assert.equal(await read, 5);
    assert.equal(await s.get("small"), undefined);
    await s.put("small", value);
    const putAt = clock.now;

    // Bad arguments reject with get's own words, before any request.
    const before = count();
    await assert.rejects(s.get(""), { message: 'kvsweep: get: key must be a non-empty string, got ""' });
    await assert.rejects(s.get("k", { namespace: 5 }), /get options.namespace must be a string, got 5/);
    assert.deepEqual(count(), before);

    // A read counts as a use: its deferred refresh of accessedAt is written a second later.
    clock.now += 5_000;
    assert.equal((await s.detail("small")).accessedAt, putAt, "detail is not a use");
    const written = refreshes;
    await s.get("small");
    await new Promise((ok) => setTimeout(ok, 400));
    assert.equal(refreshes, written, "not written before reads pause for a second");
    for (let i = 0; i < 50 && refreshes === written; i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.equal(refreshes, written + 1, "written once reads paused");
    assert.equal((await s.detail("small")).accessedAt, clock.now);

    // A record that does not decode is reported, never read as missing.
    const db = await new Promise((ok, fail) => {
      const req = indexedDB.open(name);
      req.onsuccess = () => ok(req.result);
      req.onerror = () => fail(req.error);
    });
    await new Promise((ok, fail) => {
      const tx = db.transaction("meta", "readwrite");
      tx.objectStore("meta").put(new Uint8Array([0xc1]), ["", "bad"]);
      tx.oncomplete = ok;
      tx.onerror = () => fail(tx.error);
    });
    db.close();
    await assert.rejects(s.get("bad"), /metadata of "bad" in namespace "" .*left as it is/);
    // clear names it and the way past it, which works.
    await assert.rejects(s.clear(""), /^Error: kvsweep: clear: entry "bad" in namespace "" \(nothing was deleted; delete it by its key, then call again\) could not be read: /);
    assert.equal(await s.delete("bad"), true);

    // A Sweeper freed while its read is under way rejects it by name.
    const other = new Sweeper(store, { clock });
    const pending = other.get("small");
    other.free();
    await assert.rejects(pending, { message: "kvsweep: Sweeper.get: this Sweeper was freed (free() was called); make a new one" });
    // A closed Sweeper, a closed store and a freed Sweeper fail as the module's get fails.
    const closing = new Sweeper(store, { clock });
    closing.close();
    await assert.rejects(closing.get(""), { message: "kvsweep: get: this Sweeper is closed (close() was called)" });
    store.close();
    await assert.rejects(s.get("small"), /^Error: kvsweep: get: store is closed: /);
    s.free();
    await assert.rejects(s.get("small"), { message: "kvsweep: Sweeper.get: this Sweeper was freed (free() was called); make a new one" });
  } finally {
    IDBDatabase.prototype.transaction = transaction;
  }
});

/**
 * The IndexedDB records driver of OPFS and Cache Storage on a database of
 * its own: a store whose driver's reads are counted, and more stores on
 * the same database (other writers).
 */
async function recordsDb(name) {
  // An internal of the glue (not exported by the package), loaded by node.js.
  await import("../../pkg/node.js");
  const { kvStoreOfDriver } = await import("../../pkg/kvsweep.js");
  const { openRecords, recordsDriver } = await import("../../pkg/idbkv.js");
  const db = await openRecords(`${name}-${Date.now()}`);
  const driver = recordsDriver(db, "records", 250);
  const count = { gets: 0 };
  const get = driver.get;
  driver.get = (...args) => (count.gets++, get(...args));
  const another = () => kvStoreOfDriver(recordsDriver(db, "records", 250));
  return { db, driver, count, store: kvStoreOfDriver(driver), another };
}

/**
 * Counts the calls of the IDBObjectStore methods `names` and makes the
 * store lack getAllRecords (as browsers before it do) when `withRecords` is
 * false; `restore()` undoes both.
 */
function countStoreCalls(names, withRecords, probe) {
  const proto = IDBObjectStore.prototype;
  const saved = Object.fromEntries(names.map((n) => [n, Object.getOwnPropertyDescriptor(proto, n)]));
  const calls = Object.fromEntries(names.map((n) => [n, 0]));
  for (const n of names) {
    const f = saved[n].value;
    const counted = function (...a) {
      // Not the probes of a store's size before it is copied (keys only,
      // at most one more than the copy's limit: see MIRROR in idbkv.js).
      if (!(n === "getAllKeys" && a[1] === probe)) calls[n]++;
      return f.apply(this, a);
    };
    Object.defineProperty(proto, n, { ...saved[n], value: withRecords || n !== "getAllRecords" ? counted : undefined });
  }
  return { calls, restore: () => names.forEach((n) => Object.defineProperty(proto, n, saved[n])) };
}

for (const [withRecords, copied] of [[true, true], [false, true], [true, false], [false, false]]) {
  const how = `${withRecords ? "read with getAllRecords" : "where there is no getAllRecords"}, ${copied ? "listed from the driver's copy" : "listed page by page"}`;
  test(`a run on the IndexedDB records of OPFS and Cache Storage deletes each batch from the records it listed, rechecked in its transaction, ${how} (fake-indexeddb)`, async () => {
    const { MIRROR } = await import("../../pkg/idbkv.js");
    const limit = MIRROR.limit;
    if (!copied) MIRROR.limit = 0;
    const { calls, restore } = countStoreCalls(["getAllRecords", "getAll", "getAllKeys"], withRecords, MIRROR.limit + 1);
    try {
      await recordsRun(`records-run-${withRecords}-${copied}`);
    } finally {
      restore();
      MIRROR.limit = limit;
    }
    // Listing pages and batches read keys and values in one request where they can.
    if (withRecords) assert.ok(calls.getAllRecords >= 6 && calls.getAll === 0 && calls.getAllKeys === 0, JSON.stringify(calls));
    else assert.ok(calls.getAll >= 6 && calls.getAll === calls.getAllKeys, JSON.stringify(calls));
  });
}

async function recordsRun(name) {
  const { db, driver, count, store, another } = await recordsDb(name);
  let refused = 0;
  const apply = driver.apply;
  driver.apply = async (...args) => {
    const ok = await apply(...args);
    if (ok === false) refused++;
    return ok;
  };
  const clock = manualClock();
  const s = new Sweeper(store, { clock, batchSize: 10 });
  const key = (i) => `k${String(i).padStart(3, "0")}`;
  for (let i = 0; i < 100; i++) await s.put(key(i), i, { ttlMs: i % 2 ? 1_000 : 60_000 });
  clock.now += 5_000;
  // Another writer rewrites an expired entry of the last batch after the
  // run listed it: the batch's check must find it changed, and keep it.
  const other = new Sweeper(another(), { clock });
  let rewritten = false;
  count.gets = 0;
  const report = await s.run({
    onProgress: async () => {
      if (!rewritten) await other.put(key(99), "rewritten");
      rewritten = true;
    },
  });
  assert.equal(report.deleted.expired.count, 49);
  // The batch holding the rewritten record found it changed in its own
  // transaction, and wrote nothing; read again, it kept it.
  assert.equal(refused, 1);
  // Five batches, none read before its transaction but that one (read
  // again after its check failed); the rest are the run's lease, cursor and
  // history.
  assert.ok(count.gets <= 6, `${count.gets} reads in the run`);
  // Exactly the 50 live entries and the rewritten one are left.
  const left = (await driver.list("m/", undefined, undefined, 1000)).items.map(([name]) => name.slice(name.indexOf("\0") + 1));
  const live = Array.from({ length: 99 }, (_, i) => i).filter((i) => i % 2 === 0).map(key);
  assert.deepEqual(left, [...live, key(99)]);
  assert.equal(await s.get(key(99)), "rewritten");
  db.close();
}

test("on the IndexedDB records of OPFS and Cache Storage, a put over an entry the Sweeper wrote is one transaction, checked as it wrote it (fake-indexeddb)", async () => {
  const { db, count, store, another } = await recordsDb("records-put");
  const s = new Sweeper(store);
  await s.put("page", 1);
  count.gets = 0;
  for (let i = 2; i <= 10; i++) await s.put("page", i);
  assert.equal(count.gets, 0, "no read before the writes");
  assert.equal(await s.get("page"), 10);
  // Another writer's change makes the guess wrong: the put reads and still writes.
  const other = new Sweeper(another());
  await other.put("page", "theirs", { refs: [] });
  await other.put("ref", 0, { refs: ["page"] });
  await s.put("page", 11);
  assert.equal(await s.get("page"), 11);
  // The reference from "ref" still counts.
  await assert.rejects(s.delete("page"), /referenced by 1 other entry/);
  db.close();
});

test("on the IndexedDB records of OPFS and Cache Storage, a write that ends without writing never decides on remembered records (fake-indexeddb)", async () => {
  const { db, store, another } = await recordsDb("records-done");
  const clock = manualClock();
  const a = new Sweeper(store, { clock });
  const b = new Sweeper(another(), { clock });
  await a.put("target", 1, { ttlMs: 1_000 });
  clock.now += 5_000;
  // a's listing remembers "target" as expired...
  assert.equal((await a.plan()).actions.length, 1);
  // ...then another store writes it again, with a longer TTL.
  await b.put("target", 2, { ttlMs: 60_000 });
  // A refusal ("expired") would rest on the remembered record: it reads again first.
  await a.put("ref", 3, { refs: ["target"] });
  await assert.rejects(b.delete("target"), /referenced by 1 other entry/);
  db.close();
});

test("on the IndexedDB records of OPFS and Cache Storage, a put over an entry the Sweeper wrote stays one transaction after a run and a refresh of accessedAt (fake-indexeddb)", async () => {
  const { db, count, store } = await recordsDb("records-seen");
  const clock = manualClock();
  const s = new Sweeper(store, { clock });
  await s.put("page", 1);
  await s.put("old", 0, { ttlMs: 10 });
  clock.now += 2_000;
  // A read that defers a refresh of accessedAt, then a run: it writes the
  // refresh first and deletes "old".
  assert.equal(await s.get("page"), 1);
  assert.equal((await s.run()).deleted.expired.count, 1);
  count.gets = 0;
  await s.put("page", 2);
  assert.equal(count.gets, 0, "the record as refreshed is the guess");
  assert.equal(await s.get("page"), 2);
  db.close();
});

test("a store closed under a run stops it: done false, stopped \"closed\", the rest kept for the next run (fake-indexeddb)", async () => {
  const name = `closed-run-${Date.now()}`;
  const clock = manualClock();
  const store = await openIndexedDb(name);
  const s = new Sweeper(store, { clock, batchSize: 10 });
  await s.putMany(Array.from({ length: 45 }, (_, i) => ({ key: `k${String(i).padStart(2, "0")}`, value: i, ttlMs: 1 })));
  clock.now += 10;
  let batches = 0;
  const report = await s.run({ onProgress: (p) => { if (p.running && ++batches === 3) store.close(); } });
  assert.equal(report.done, false);
  assert.equal(report.stopped, "closed");
  assert.equal(report.deleted.expired.count, 20);
  assert.ok(report.errors.length >= 10 && report.errors.length <= 11, `${report.errors.length} errors: one batch, and maybe the cursor`);
  assert.match(report.errors[0].message, /store is closed/);
  s.free();
  const again = new Sweeper(await openIndexedDb(name), { clock });
  const rest = await again.run();
  assert.equal(rest.done, true);
  assert.equal(rest.deleted.expired.count, 25, "nothing went after the store closed; the rest goes now");
  assert.equal((await again.plan()).actions.length, 0);
  again.free();
});

test("openIndexedDb refuses a database that is not kvsweep's, naming what it holds (fake-indexeddb)", async () => {
  const make = (name, version) =>
    new Promise((resolve, reject) => {
      const req = indexedDB.open(name, version);
      req.onupgradeneeded = () => req.result.createObjectStore("todos");
      req.onsuccess = () => {
        req.result.close();
        resolve();
      };
      req.onerror = () => reject(req.error);
    });
  const same = `app-v1-${Date.now()}`;
  await make(same, 1);
  await assert.rejects(openIndexedDb(same), {
    message: `kvsweep: openIndexedDb("${same}"): the database is not kvsweep's: it has no object store "meta"; give kvsweep a database of its own`,
  });
  const later = `app-v3-${Date.now()}`;
  await make(later, 3);
  await assert.rejects(openIndexedDb(later), /openIndexedDb\(".*"\): the database is at a later version than kvsweep's \(1\): another library's database, or a later kvsweep's; give kvsweep a database of its own$/);
  // The app's database is as it was, and kvsweep's own opens.
  const names = await new Promise((resolve) => {
    const req = indexedDB.open(same);
    req.onsuccess = () => {
      resolve([...req.result.objectStoreNames]);
      req.result.close();
    };
  });
  assert.deepEqual(names, ["todos"]);
  (await openIndexedDb(`own-${Date.now()}`)).close();
});

test("after another context deletes the database, calls say so (fake-indexeddb)", async () => {
  const name = `let-go-${Date.now()}`;
  const s = new Sweeper(await openIndexedDb(name), { schedule: { debounceMs: 0, retryMs: 20, periodMs: 0 } });
  await s.put("k", 1);
  // Another tab deletes it: this connection closes so as not to block it.
  await new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(name);
    req.onsuccess = resolve;
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error("blocked: the connection did not let go"));
  });
  await assert.rejects(s.put("k", 2), /put: store is closed: another tab or worker deleted the database or upgraded it, and this connection closed to let it; open the database again \(openIndexedDb\) for a new Sweeper/);
  await assert.rejects(s.plan(), /^Error: kvsweep: plan: store is closed: another tab or worker deleted the database/);
  // A background run fails on it and the background runs stop: a request
  // then says so, where it returned and nothing ever ran.
  s.request("full");
  for (let i = 0; i < 100 && s.stats().state !== "closed"; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(s.stats().state, "closed");
  assert.throws(() => s.request("full"), /^Error: kvsweep: request: the store is closed, so no run can start; open it again for a new Sweeper$/);
  s.free();
});

test("reads' deferred accessedAt refreshes are written when the page is hidden", async () => {
  // A page's document, as far as the package looks at it.
  const doc = Object.assign(new EventTarget(), { visibilityState: "visible" });
  globalThis.document = doc;
  try {
    const clock = manualClock();
    const store = memoryStore();
    const s = new Sweeper(store, { clock });
    await s.put("k", 1);
    clock.now += 5_000;
    assert.equal(await s.get("k"), 1);
    // What the store holds, read by another Sweeper (not this one's pending refresh).
    const other = new Sweeper(store, { clock });
    const stored = async () => (await other.history())[0].accessedAt;
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(await stored(), T0, "deferred: reads pause for a second first");
    doc.visibilityState = "hidden";
    doc.dispatchEvent(new Event("visibilitychange"));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(await stored(), T0 + 5_000);
    // Closed or freed, a Sweeper no longer listens.
    const raw = Object.getPrototypeOf(Sweeper.prototype);
    const flush = raw.__flushReads;
    let flushes = 0;
    raw.__flushReads = function (...args) {
      flushes++;
      return flush.apply(this, args);
    };
    try {
      doc.dispatchEvent(new Event("visibilitychange"));
      assert.equal(flushes, 2, "both Sweepers listen while open");
      s.close();
      other.free();
      doc.dispatchEvent(new Event("visibilitychange"));
      assert.equal(flushes, 2);
    } finally {
      raw.__flushReads = flush;
    }
    s.free();
  } finally {
    delete globalThis.document;
  }
});

test("close() resolves once reads' refreshes are written and a run going has stopped, so the store can close right after (fake-indexeddb)", async () => {
  const name = `close-${Date.now()}`;
  const clock = manualClock();
  let store = await openIndexedDb(name);
  const s = new Sweeper(store, { clock, batchSize: 1 });
  for (let i = 0; i < 5; i++) await s.put(`k${i}`, i, { ttlMs: 1 });
  await s.put("kept", 1);
  clock.now += 5_000;
  assert.equal(await s.get("kept"), 1); // a refresh of accessedAt, deferred
  // A run held at its first batch's end until the Sweeper closes.
  let settled = false;
  const run = s.run({ onProgress: () => new Promise(() => {}) }).then((report) => ((settled = true), report));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(settled, false, "the run waits at its batch's end");
  const closing = s.close();
  assert.ok(closing instanceof Promise);
  assert.equal(await closing, undefined);
  assert.equal(settled, true, "the run stopped before close() resolved");
  assert.equal((await run).stopped, "closed");
  store.close();
  // Another connection sees the refresh: it was written before the store closed.
  store = await openIndexedDb(name);
  const other = new Sweeper(store, { clock });
  const kept = (await other.history()).find((e) => e.key === "kept");
  assert.equal(kept.accessedAt, T0 + 5_000);
  // Again, or after free(): nothing to wait for.
  assert.equal(await s.close(), undefined);
  s.free();
  assert.equal(await s.close(), undefined);
  await other.close();
  store.close();
});

test("a get still under way when close() is called is a use: close() writes its refresh, and a quota keeps that entry (memory, fake-indexeddb)", async () => {
  for (const open of [async () => memoryStore(), () => openIndexedDb(`close-read-${Date.now()}`)]) {
    const clock = manualClock();
    const store = await open();
    const s = new Sweeper(store, { clock });
    for (const key of ["a", "b", "c"]) {
      await s.put(key, key);
      clock.now += 1;
    }
    await s.put("big", "x".repeat(100_000)); // a value in a record of its own
    clock.now += 5_000;
    const read = s.get("a");
    const big = s.get("big"); // on IndexedDB, the module reads its value after the record
    const closing = s.close();
    await assert.rejects(s.put("late", 1), /^Error: kvsweep: put: this Sweeper is closed \(close\(\) was called\)$/);
    assert.equal(await read, "a");
    assert.equal((await big).length, 100_000);
    await closing;
    // Another Sweeper on the same store evicts by recency: "a" was read last.
    await new Sweeper(store).delete("big");
    const other = new Sweeper(store, { clock, policy: { maxEntries: 2 } });
    await other.run();
    const keys = [];
    for await (const key of other.keys()) keys.push(key);
    assert.deepEqual(keys, ["a", "c"], store.kind);
    // close() taken off its Sweeper fails as every method does, closing nothing.
    const { close } = other;
    await assert.rejects(close(), /^Error: kvsweep: Sweeper\.close: called without its Sweeper, on undefined/);
    assert.notEqual(other.stats().state, "closed");
    await other.close();
    store.close();
  }
});

test("free() and a disposed Sweeper (using) write the refreshes of accessedAt its reads deferred, as close() does", async () => {
  for (const end of [(s) => s.free(), (s) => s[Symbol.dispose]()]) {
    const clock = manualClock();
    const store = memoryStore();
    const s = new Sweeper(store, { clock });
    await s.put("a", 1);
    clock.now += 5_000;
    assert.equal(await s.get("a"), 1);
    end(s);
    await new Promise((r) => setTimeout(r, 20));
    const other = new Sweeper(store, { clock });
    assert.equal((await other.detail("a")).accessedAt, T0 + 5_000);
    other.free();
  }
});

test("free() then store.close() at once still writes the refreshes: the store closes once they are written (fake-indexeddb)", async () => {
  for (const end of [(s) => s.free(), (s) => s[Symbol.dispose]()]) {
    const name = `free-close-${Date.now()}-${Math.random()}`;
    const clock = manualClock();
    const store = await openIndexedDb(name);
    const s = new Sweeper(store, { clock });
    await s.put("a", 1);
    clock.now += 5_000;
    assert.equal(await s.get("a"), 1);
    end(s);
    store.close(); // nothing to await: free() returns nothing
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(new Sweeper(store).get("a"), /store is closed|was closed/, "closed after all");
    const again = await openIndexedDb(name);
    const other = new Sweeper(again, { clock });
    assert.equal((await other.detail("a")).accessedAt, T0 + 5_000);
    await other.close();
    again.close();
  }
});

test("a store closed while freed Sweepers' refreshes are written, then freed, closes at once, without an unhandled rejection (fake-indexeddb)", async () => {
  const { kvStoreOfDriver } = await import("../../pkg/kvsweep.js");
  const { openRecords, recordsDriver, closesWith } = await import("../../pkg/idbkv.js");
  const unhandled = [];
  const listen = (e) => unhandled.push(String(e?.message ?? e));
  process.on("unhandledRejection", listen);
  try {
    // As openOpfs and openCacheStorage make theirs, and openIndexedDb's.
    const records = async () => {
      const db = await openRecords(`free-close-${Math.random()}`);
      const store = kvStoreOfDriver(recordsDriver(db, "records", 250));
      closesWith(store, db);
      return { store, closed: () => assert.throws(() => db.transaction("records"), /the store was closed/) };
    };
    const idb = async () => {
      const store = await openIndexedDb(`free-close-idb-${Math.random()}`);
      return { store, closed: () => {} };
    };
    for (const make of [records, idb]) {
      const { store, closed } = await make();
      const clock = manualClock();
      const s = new Sweeper(store, { clock });
      await s.put("a", 1);
      clock.now += 5_000;
      assert.equal(await s.get("a"), 1);
      s.free();
      store.close();
      store.free();
      await new Promise((r) => setTimeout(r, 100));
      closed();
    }
    assert.deepEqual(unhandled, []);
  } finally {
    process.off("unhandledRejection", listen);
  }
});

test("get of an entry whose record cannot be read names get, on IndexedDB's one-request read too (fake-indexeddb)", async () => {
  const name = `torn-get-${Date.now()}`;
  const store = await openIndexedDb(name);
  const s = new Sweeper(store);
  await s.put("a", 1);
  const db = await new Promise((ok, fail) => Object.assign(indexedDB.open(name), { onsuccess: (e) => ok(e.target.result), onerror: fail }));
  await new Promise((ok) => (Object.assign(db.transaction("meta", "readwrite"), { oncomplete: ok }).objectStore("meta").put(Uint8Array.of(0xc1, 0xff, 0), ["", "a"])));
  db.close();
  await assert.rejects(s.get("a"), /^Error: kvsweep: get: metadata of "a" in namespace ""/);
  await s.close();
  store.close();
});

test("every entry exports the same API, and none of the glue's internals", async () => {
  const api = [
    "KvStore", "Sweeper", "collectR2Orphans", "deleteCacheStorage", "deleteOpfs", "durableObjectStore",
    "expirationPlugin", "kvStore", "memoryStore", "openCacheStorage", "openIndexedDb", "openOpfs", "r2",
    "ready", "runFromAlarm", "scheduleCleanup", "track",
  ];
  // kvsweep/sw (no top-level await) and the Node entry; the browser and
  // workerd entries are imported by tests/packaging.
  for (const entry of ["../../pkg/node.js", "../../pkg/sw.js"]) {
    assert.deepEqual(Object.keys(await import(entry)).sort(), api, entry);
  }
  // The module's internal entry points are not methods a user can reach: a
  // number where they take a string trapped in the module ("memory access
  // out of bounds").
  const s = new Sweeper(memoryStore());
  for (const name of ["maintain", "readStart", "readEnd", "keysPage"]) assert.equal(name in s, false, name);
  await s.put("k", 1);
  assert.equal(await s.get("k"), 1);
  assert.deepEqual((await s.history()).map((e) => e.key), ["k"]);
  s.free();
});

test("a budgeted run whose first batches hold only a garbage cycle still gets on (each run deleted nothing, for ever)", async () => {
  const clock = manualClock();
  const s = new Sweeper(memoryStore(), { clock, batchSize: 1 });
  await s.put("b", "B", { ttlMs: 10 });
  await s.put("a", "A", { ttlMs: 10, refs: ["b"] });
  await s.put("b", "B", { ttlMs: 10, refs: ["a"] }); // a <-> b
  for (let i = 0; i < 5; i++) await s.put(`k${i}`, i, { ttlMs: 10 });
  clock.now += 1000;
  const runs = [];
  for (let i = 0; i < 20 && !runs.at(-1)?.done; i++) runs.push(await s.run({ budgetMs: 0 }));
  assert.equal(runs.at(-1).done, true, JSON.stringify(runs.map((r) => r.deleted)));
  assert.ok(runs.slice(0, -1).every((r) => Object.keys(r.deleted).length > 0), "every run deleted something");
  for (const k of ["a", "b", "k0", "k4"]) assert.equal(await s.get(k, { includeExpired: true }), undefined, k);
});

test("a kept plan is dropped when an entry it planned is referenced again: the run goes on past it, counting each deletion once", async () => {
  let now = 1_000_000;
  const s = new Sweeper(memoryStore(), { clock: () => now, batchSize: 3, policy: { maxAgeMs: 60_000 } });
  for (const k of ["a1", "a2", "a3", "b", "c", "d"]) await s.put(k, "v");
  now += 120_000;
  let r = await s.run({ budgetMs: 0 });
  assert.deepEqual([r.done, r.deleted.maxAge.count], [false, 3]);
  await s.put("live", "note", { refs: ["b"] }); // b is in use again
  const runs = [r];
  for (let i = 0; i < 10 && !r.done; i++) runs.push((r = await s.run({ budgetMs: 0 })));
  assert.equal(r.done, true, `${runs.length} runs`);
  assert.equal(r.deleted.maxAge.count, 5, "a1, a2, a3, c, d: each once");
  assert.deepEqual((await s.health()).runs.map((x) => [x.done, x.deleted]), [[true, 5]]);
  assert.equal(await s.get("b"), "v");
});

test("runs on a kept plan count each deletion once: not those behind an entry that waited, nor the app's own deletes", async () => {
  for (const deleteG of ["never", "between slices", "during the first slice"]) {
    let now = 1_000_000;
    const s = new Sweeper(memoryStore(), { clock: () => now, batchSize: 3 });
    // Key order a, b, c | d, e, f | g: f references b, so b waits in the first batch.
    for (const k of ["a", "b", "c", "d", "e", "g"]) await s.put(k, "v", { ttlMs: 10 });
    await s.put("f", "v", { ttlMs: 10, refs: ["b"] });
    now += 1000;
    let deleting;
    const onProgress = (p) => deleteG === "during the first slice" && p.processed === 0 && (deleting ??= s.delete("g"));
    const runs = [await s.run({ budgetMs: 0, onProgress })];
    if (deleteG === "between slices") assert.equal(await s.delete("g"), true);
    if (deleting) assert.equal(await deleting, true);
    while (!runs.at(-1).done && runs.length < 20) runs.push(await s.run({ budgetMs: 0 }));
    const last = runs.at(-1);
    assert.equal(last.done, true);
    const expected = deleteG === "never" ? 7 : 6;
    assert.equal(last.deleted.expired.count, expected, `${deleteG}: ${JSON.stringify(runs.map((r) => [r.planReused, r.deleted.expired?.count]))}`);
    assert.deepEqual((await s.health()).runs.filter((x) => x.mode === "full").map((x) => x.deleted), [expected]);
  }
});

test("a Sweeper no one holds but its pending call is not collected, nor closed, mid-call", async () => {
  const { setFlagsFromString } = await import("node:v8");
  const { runInNewContext } = await import("node:vm");
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc");
  const tick = (ms) => new Promise((r) => setTimeout(r, ms));
  for (const open of [async () => memoryStore(), () => openIndexedDb(`gc-${Math.random()}`)]) {
    const store = await open();
    const setup = new Sweeper(store, { clock: () => 1_000_000 });
    for (let i = 0; i < 60; i++) await setup.put(`k${i}`, i);
    // As `event.waitUntil(new Sweeper(store, options).run())` holds it: by its promise alone.
    const run = (() =>
      new Sweeper(store, { policy: { maxEntries: 1 }, batchSize: 5, clock: () => 2_000_000 }).run({
        onProgress: () => tick(20),
      }))();
    await tick(60);
    gc();
    await tick(40);
    gc();
    const report = await run;
    assert.equal(report.stopped, undefined, JSON.stringify(report));
    assert.equal(report.done, true);
    assert.equal(report.deleted.maxEntries.count, 59);
  }
});

test("odd arguments fail by kvsweep's words: a store the module did not make, a revoked Proxy given to moveTo, a Sweeper freed by a getter of its own call", async () => {
  const fake = Object.create(KvStore.prototype);
  const made = "has KvStore's prototype but was not made by the module: make one with memoryStore(), openIndexedDb(), openOpfs(), openCacheStorage(), kvStore() or durableObjectStore()";
  assert.throws(() => new Sweeper(fake), { message: `kvsweep: new Sweeper(store, options): store ${made}` });
  const s = new Sweeper(memoryStore());
  await assert.rejects(s.moveTo(fake), { message: `kvsweep: Sweeper.moveTo(target): target ${made}` });
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  const moved = s.moveTo(proxy); // rejects, not throws
  await assert.rejects(moved, TypeError);
  await s.put("a", 1);
  await assert.rejects(
    s.get("a", {
      get namespace() {
        s.free();
        return "";
      },
    }),
    { message: "kvsweep: get: this Sweeper was freed (free() was called) while the call went" },
  );
});

test("new Sweeper's options name their path when a getter throws or a string is not well-formed", () => {
  const store = memoryStore();
  assert.throws(() => new Sweeper(store, { get schedule() { throw 1; } }), { message: "kvsweep: new Sweeper(store, options): options threw 1 when read (a getter or a Proxy)" });
  assert.throws(() => new Sweeper(store, { schedule: { lockName: "\ud800" } }), { message: "kvsweep: new Sweeper(store, options): options.schedule.lockName must be well-formed UTF-16, got a string with a lone surrogate" });
});
