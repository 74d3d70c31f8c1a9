// Runs on a store of one origin (the IndexedDB records of OPFS and Cache
// Storage) under a Web Lock and the run lease, in Node with fake-indexeddb
// and a Web Locks API of this file's own, so that a lock request can fail
// and a lock can be let go while its run still goes (its context died).
import "fake-indexeddb/auto";
import { test } from "node:test";
import assert from "node:assert/strict";

/** Exclusive by name, as navigator.locks is; see `failNext` and `drop`. */
const locks = {
  held: new Map(), // name → the queue of requests waiting for it
  failNext: false,
  request(name, options, callback) {
    if (this.failNext) {
      this.failNext = false;
      return Promise.reject(new DOMException("the request failed", "InvalidStateError"));
    }
    return new Promise((resolve, reject) => {
      const go = () => {
        this.held.set(name, []);
        Promise.resolve(callback({ name }))
          .then(resolve, reject)
          .finally(() => this.drop(name));
      };
      if (!this.held.has(name)) return go();
      this.held.get(name).push(go);
      // As navigator.locks: an aborted signal withdraws a request that waits.
      options?.signal?.addEventListener("abort", () => {
        const queue = this.held.get(name) ?? [];
        if (!queue.includes(go)) return;
        queue.splice(queue.indexOf(go), 1);
        reject(new DOMException("the request was aborted", "AbortError"));
      });
    });
  },
  /** Lets `name` go, to the next request (as when its holder's context dies). */
  drop(name) {
    const queue = this.held.get(name);
    if (!queue) return;
    this.held.delete(name);
    queue.shift()?.();
    if (queue.length) this.held.set(name, queue);
  },
};
Object.defineProperty(globalThis, "navigator", { value: { locks }, configurable: true });

const { Sweeper } = await import("../../pkg/node.js");
const { kvStoreOfDriver } = await import("../../pkg/kvsweep.js");
const { openRecords, recordsDriver, runLock } = await import("../../pkg/idbkv.js");
const { OWN_LOCKS } = await import("../../pkg/api.js");

/** A store of one origin over `db`, as openOpfs and openCacheStorage make them. */
function store(db) {
  const s = kvStoreOfDriver(recordsDriver(db, "records", 250));
  OWN_LOCKS.set(s, runLock(db));
  return s;
}

async function setUp(name) {
  const db = await openRecords(`${name}-${Math.random()}`);
  const clock = () => clock.now;
  clock.now = 1_700_000_000_000;
  const make = () => new Sweeper(store(db), { clock, batchSize: 5 });
  const first = make();
  for (let i = 0; i < 60; i++) await first.put(`k${String(i).padStart(3, "0")}`, i, { ttlMs: 1000 });
  clock.now += 5000;
  return { db, make, first };
}

// A regression here could leave one run waiting for a lock the other holds
// while that one waits for it: the timeout says so rather than hanging.
test("a run whose lock request failed holds the lease, and a run with the lock respects it: never two at once", { timeout: 10_000 }, async () => {
  const { db, make, first: b } = await setUp("failed");
  const a = make();
  let during;
  locks.failNext = true; // b's request fails: b goes on with the lease alone
  const report = await b.run({
    onProgress: async () => {
      during ??= await a.run();
    },
  });
  assert.equal(report.done, true);
  assert.equal(report.deleted.expired.count, 60);
  assert.equal(during.stopped, "leased", JSON.stringify(during));
  assert.equal(during.deleted.expired, undefined);
  a.close();
  b.close();
  db.close();
});

test("a run that holds the lock takes the lease of one that took it under the lock and died", { timeout: 10_000 }, async () => {
  const { db, make, first: dead } = await setUp("died");
  const next = make();
  let taken;
  const report = await dead.run({
    onProgress: async () => {
      if (taken) return;
      // The browser lets a dead context's lock go; its lease stays behind.
      locks.drop(runLock(db));
      taken = await next.run();
    },
  });
  assert.equal(taken.done, true, JSON.stringify(taken));
  assert.equal(taken.stopped, undefined);
  assert.equal(taken.deleted.expired.count, 60);
  // The "dead" run here goes on after, and finds its entries gone (which
  // SPEC §3 counts as deleted: it reports them too).
  assert.equal(report.done, true);
  for await (const k of next.keys()) assert.fail(`left ${k}`);
  next.close();
  dead.close();
  db.close();
});

test("close() while run() waits for the lock another context holds ends the wait as an abort does: stopped \"closed\"", { timeout: 10_000 }, async () => {
  const { db, make } = await setUp("close-waiting");
  let release;
  const other = locks.request(runLock(db), {}, () => new Promise((r) => (release = r)));
  const s = make();
  const running = s.run();
  await new Promise((r) => setTimeout(r, 50));
  await s.close();
  const report = await running;
  assert.equal(report.done, false);
  assert.equal(report.stopped, "closed");
  assert.deepEqual(report.deleted, {});
  release();
  await other;
  db.close();
});
