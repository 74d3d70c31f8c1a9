// Writes a kvStore over a backend without batches (a generic object here;
// unstorage and keyv alike) makes at once: runs of value and temp writes and
// deletes, each of another name, go 16 at a time (src/store/mod.rs,
// Store::apply); every other write waits for the one before. A failure in a
// run is heard only once every call of it has settled. A putMany writes
// every temp, then every value, then the records one by one, then deletes
// the temps (src/write.rs, put_many_step).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Sweeper, kvStore } from "../../pkg/node.js";

/** A generic store whose calls each take a macrotask, recording what overlaps what. */
class Watched {
  constructor() {
    this.map = new Map();
    this.now = []; // names of the writes in flight
    this.overlaps = []; // [name, names in flight when it began]
    this.fail = null; // a name whose delete fails
    this.late = 0; // writes that began after `closed`
    this.closed = false;
  }
  async write(name, fn) {
    if (this.closed) this.late++;
    this.overlaps.push([name, [...this.now]]);
    this.now.push(name);
    await new Promise((r) => setTimeout(r, 1));
    this.now.splice(this.now.indexOf(name), 1);
    return fn();
  }
  async get(k) {
    return this.map.get(k);
  }
  put(k, v) {
    return this.write(k, () => void this.map.set(k, v));
  }
  delete(k) {
    return this.write(k, () => {
      if (this.fail && k.includes(this.fail)) throw new Error("disk on fire");
      this.map.delete(k);
    });
  }
  async list(prefix) {
    return [...this.map.keys()].filter((k) => k.startsWith(prefix));
  }
}

const table = (name) => name.match(/^kvsweep\/(.)\//)?.[1];
const items = (n) => Array.from({ length: n }, (_, i) => ({ key: `k${String(i).padStart(3, "0")}`, value: "x".repeat(100), ttlMs: i < n / 2 ? 1 : undefined }));

test("a run's value and temp deletes go many at a time, and entry records one at a time", async () => {
  const backend = new Watched();
  const sweeper = new Sweeper(kvStore(backend));
  await sweeper.putMany(items(40));
  await new Promise((r) => setTimeout(r, 5));
  backend.overlaps = [];
  const report = await sweeper.run();
  assert.equal(report.deleted.expired?.count, 20);
  const most = (t) => Math.max(0, ...backend.overlaps.filter(([n]) => table(n) === t).map(([, during]) => during.length + 1));
  // Without the runs, every write waits for the one before: at most 1.
  assert.ok(most("v") > 1 && most("t") > 1, `values ${most("v")}, temps ${most("t")} at once`);
  // An entry's record, its count or run state never overlaps another write.
  for (const [name, during] of backend.overlaps) {
    if (!["v", "t"].includes(table(name))) assert.deepEqual(during, [], `${name} began while ${during} were in flight`);
    else assert.ok(during.every((d) => table(d) === table(name)), `${name} overlapped ${during}`);
  }
  sweeper.close();
});

test("putMany writes its temps and values many at a time, its entry records one at a time, and reads back every value", async () => {
  const backend = new Watched();
  const sweeper = new Sweeper(kvStore(backend));
  const many = items(40).map(({ key, value }, i) => ({ key, value: `${value}${i}`, refs: i > 0 ? [items(1)[0].key] : [] }));
  await sweeper.putMany(many);
  const most = (t) => Math.max(0, ...backend.overlaps.filter(([n]) => table(n) === t).map(([, during]) => during.length + 1));
  assert.ok(most("v") > 1 && most("t") > 1, `values ${most("v")}, temps ${most("t")} at once`);
  for (const [name, during] of backend.overlaps) {
    if (!["v", "t"].includes(table(name))) assert.deepEqual(during, [], `${name} began while ${during} were in flight`);
  }
  for (const { key, value } of many) assert.equal(await sweeper.get(key), value);
  assert.equal((await sweeper.detail(many[0].key)).referrers, 39);
  sweeper.close();
});

test("a delete failing among others in flight fails the run's batch only once they have all settled", async () => {
  const backend = new Watched();
  const sweeper = new Sweeper(kvStore(backend));
  await sweeper.putMany(items(40));
  await new Promise((r) => setTimeout(r, 5));
  backend.fail = "v/\0k005";
  const report = await sweeper.run();
  backend.closed = true;
  const inFlight = backend.now.length;
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(inFlight, 0, "writes still in flight when the run returned");
  assert.equal(backend.late, 0);
  assert.ok(report.errors.length > 0, "the failure is reported");
  // What the failed batch left, the next run finishes: every expired entry goes.
  backend.fail = null;
  backend.closed = false;
  await sweeper.run();
  const left = [];
  for await (const k of sweeper.keys()) left.push(k);
  assert.deepEqual(left, items(40).slice(20).map((i) => i.key));
  sweeper.close();
});
