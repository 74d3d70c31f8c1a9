// Background runs (issue #9, SPEC §4) through the built package under Node:
// requests debounce and coalesce, deletes and writes trigger runs, failures
// back off and recover, close() stops everything, and a waiting timer never
// keeps a Node process alive.
import "fake-indexeddb/auto";
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Sweeper, memoryStore, openIndexedDb, kvStore } from "../../pkg/node.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `check()` is true, or fails after `ms`. */
async function until(check, ms = 5_000, what = "condition") {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function putExpired(sweeper, n, prefix = "k") {
  for (let i = 0; i < n; i++) await sweeper.put(`${prefix}${i}`, i, { ttlMs: 1 });
  await sleep(5);
}

test("requests debounce and coalesce into one run, in the stronger mode", async () => {
  const events = [];
  let atEnd;
  const s = new Sweeper(memoryStore(), {
    schedule: {
      debounceMs: 30,
      periodMs: 0,
      onRun: (e) => {
        events.push(e);
        if (e.type === "end") atEnd = s.stats();
      },
    },
  });
  await putExpired(s, 100);
  s.request("light");
  s.request("full");
  s.request("light");
  assert.equal(s.stats().pending, "full");
  assert.equal(s.stats().runs, 0, "debounced: nothing ran yet");
  await until(() => s.stats().runs === 1, 5_000, "the run");
  await sleep(100);
  const st = s.stats();
  assert.equal(st.runs, 1, "three requests, one run");
  assert.equal(st.lastRun.mode, "full");
  assert.equal(st.lastRun.outcome, "done");
  assert.equal(st.lastRun.deleted, 100);
  assert.equal(st.state, "idle");
  assert.equal(st.nextRunAt, undefined, "periodMs 0: no timer left");
  assert.deepEqual(events.map((e) => e.type), ["start", "end"]);
  assert.equal(events[1].report.deleted.expired.count, 100);
  // onRun hears of the end once stats() shows it.
  assert.equal(atEnd.runs, 1);
  assert.equal(atEnd.state, "idle");
  assert.equal(await s.get("k1", { includeExpired: true }), undefined);
  s.close();
});

test("a request during a run reruns after it; run() by hand waits for a background run", async () => {
  const starts = [];
  let manual;
  let seen;
  const s = new Sweeper(memoryStore(), {
    batchSize: 10,
    schedule: {
      debounceMs: 0,
      periodMs: 0,
      onRun: (e) => {
        if (e.type !== "start") return;
        starts.push(e.mode);
        if (starts.length === 1) {
          // During the first run: a request, and a run by hand.
          s.request("full");
          seen = { ...s.stats() };
          manual = s.run({ mode: "full" });
        }
      },
    },
  });
  await putExpired(s, 300);
  s.request("light");
  await until(() => manual !== undefined, 5_000, "the first run");
  assert.equal(seen.state, "running");
  assert.equal(seen.pending, "full", "a request during a run waits to rerun");
  const report = await manual;
  assert.equal(report.done, true);
  await until(() => s.stats().runs === 2, 5_000, "the rerun");
  assert.deepEqual(starts, ["light", "full"]);
  s.close();
});

test("run() with an aborted signal settles at once behind this Sweeper's background run, not at its end", async () => {
  const order = [];
  let byHand;
  const s = new Sweeper(await openIndexedDb(`abort-behind-${Math.random()}`), {
    batchSize: 1,
    schedule: {
      debounceMs: 0,
      periodMs: 0,
      onRun: (e) => {
        order.push(e.type);
        if (e.type === "start") {
          byHand = s.run({ signal: AbortSignal.abort() }).then((r) => (order.push(`by hand: ${r.stopped}`), r));
        }
      },
    },
  });
  await putExpired(s, 200);
  s.request("full");
  await until(() => order.includes("end"), 30_000, "the background run");
  const report = await byHand;
  assert.deepEqual(order, ["start", "by hand: aborted", "end"]);
  assert.equal(report.done, false);
  assert.equal(s.stats().lastRun.deleted, 200, "the background run went on to its end");
  s.close();
});

test("a full run by hand puts the periodic run off by periodMs; a light one does not", async () => {
  const s = new Sweeper(memoryStore(), { schedule: { periodMs: 60_000 } });
  const armed = s.stats().nextRunAt;
  await sleep(30);
  await s.run({ mode: "light" });
  // nextRunAt is on the wall clock, converted at each call: within a millisecond or two.
  assert.ok(Math.abs(s.stats().nextRunAt - armed) <= 2, "a light run leaves the period");
  await s.run();
  const after = s.stats().nextRunAt;
  assert.ok(after - armed >= 25, `the period counts from the hand run's end: ${after - armed} ms later`);
  assert.equal(s.stats().runs, 0, "runs counts the background ones");
  await s.close();
  // One that could not delete some items leaves the period, as a background
  // run that failed would be retried.
  class Stubborn extends Map {
    delete(k) {
      if (String(k).includes("stuck")) throw new Error("no");
      return super.delete(k);
    }
  }
  const t = new Sweeper(kvStore(new Stubborn()), { schedule: { periodMs: 60_000 } });
  await t.put("stuck", 1, { ttlMs: 1 });
  const before = t.stats().nextRunAt;
  await sleep(30);
  const report = await t.run();
  assert.equal(report.errors.length, 1);
  assert.ok(Math.abs(t.stats().nextRunAt - before) <= 2, "the period stays");
  await t.close();
});

test("a periodic run falling due during a full run by hand is not run after it", async () => {
  // Written first, by another: the period counts from the Sweeper's making.
  const store = memoryStore();
  await putExpired(new Sweeper(store), 50);
  const s = new Sweeper(store, { batchSize: 10, schedule: { periodMs: 60 } });
  // Five batches, 40 ms each: the period falls due while it goes.
  const t0 = Date.now();
  const report = await s.run({ onProgress: () => sleep(40) });
  const ended = Date.now();
  assert.ok(ended - t0 > 60, `the hand run outlasted the period (${ended - t0} ms)`);
  assert.equal(report.deleted.expired.count, 50);
  await sleep(30);
  assert.equal(s.stats().runs, 0, "no background run behind it");
  assert.ok(s.stats().nextRunAt >= ended + 50, "the period counts from the hand run's end");
  // The next period runs as ever.
  await until(() => s.stats().runs === 1, 5_000, "the next periodic run");
  await s.close();
});

test("a delete asks for a light run, which takes the blob the entry held", async () => {
  const s = new Sweeper(memoryStore(), {
    policy: { orphanGraceMs: 0 },
    schedule: { debounceMs: 10, periodMs: 0 },
  });
  const id = await s.putBlob(new Uint8Array([1, 2, 3]));
  await s.put("doc", "text", { blobs: [id] });
  assert.equal(await s.delete("doc"), true);
  assert.equal(s.stats().pending, "light");
  await until(() => s.stats().runs === 1, 5_000, "the light run");
  assert.equal(s.stats().lastRun.mode, "light");
  assert.equal(await s.getBlob(id), undefined);
  // A delete of nothing asks for nothing.
  assert.equal(await s.delete("doc"), false);
  assert.equal(s.stats().pending, undefined);
  s.close();
});

test("schedule: null is no schedule, as schedule: undefined is", async () => {
  for (const schedule of [undefined, null]) {
    const s = new Sweeper(memoryStore(), { schedule });
    await s.put("doc", "text");
    assert.equal(await s.delete("doc"), true);
    assert.equal(s.stats().pending, undefined, `schedule: ${schedule}`);
    assert.equal(s.stats().nextRunAt, undefined, `schedule: ${schedule}`);
    s.close();
  }
  assert.throws(() => new Sweeper(memoryStore(), { schedule: false }), /^Error: kvsweep: new Sweeper\(store, options\): options.schedule must be an object, got false$/);
});

test("autoAfterWrites asks for a full run after that many writes", async () => {
  const s = new Sweeper(memoryStore(), { schedule: { debounceMs: 10, periodMs: 0, autoAfterWrites: 5 } });
  for (let i = 0; i < 4; i++) await s.put(`k${i}`, i);
  assert.equal(s.stats().pending, undefined);
  await s.putMany([{ key: "k4", value: 4 }]);
  assert.equal(s.stats().pending, "full");
  await until(() => s.stats().runs === 1, 5_000, "the run");
  s.close();
});

test("the periodic run comes by itself and is re-armed after each run", async () => {
  const s = new Sweeper(memoryStore(), { schedule: { periodMs: 50 } });
  const first = s.stats().nextRunAt;
  assert.ok(first > Date.now() - 5 && first <= Date.now() + 50);
  await until(() => s.stats().runs >= 2, 5_000, "two periodic runs");
  assert.equal(s.stats().lastRun.mode, "full");
  s.close();
});

test("runOnStart runs once the Sweeper is made", async () => {
  const store = memoryStore();
  await putExpired(new Sweeper(store), 10);
  const s = new Sweeper(store, { schedule: { runOnStart: true, debounceMs: 0, periodMs: 0 } });
  await until(() => s.stats().runs === 1, 5_000, "the start-up run");
  assert.equal(s.stats().lastRun.deleted, 10);
  s.close();
});

test("a store that fails every call: runs back off, then recover when it heals", async () => {
  const store = await openIndexedDb(`failing-${Date.now()}`);
  const failures = [];
  const s = new Sweeper(store, {
    schedule: {
      debounceMs: 0,
      periodMs: 0,
      retryMs: 40,
      retryMaxMs: 200,
      onRun: (e) => e.type === "error" && failures.push({ at: Date.now(), message: e.error.message }),
    },
  });
  await putExpired(s, 20);
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function () {
    throw new DOMException("the disk is on fire", "UnknownError");
  };
  try {
    s.request("full");
    await until(() => failures.length >= 5, 10_000, "five failures");
    const gaps = failures.slice(1).map((f, i) => f.at - failures[i].at);
    // 40, 80, 160, 200 (capped), each plus the event loop's delay.
    // Lower bounds only: a loaded machine makes any wait longer, never shorter.
    assert.ok(gaps[0] >= 35, `first retry after ${gaps[0]} ms`);
    assert.ok(gaps[1] >= 75, `second retry after ${gaps[1]} ms`);
    assert.ok(gaps[2] >= 150, `third retry after ${gaps[2]} ms`);
    assert.ok(gaps[3] >= 195, `capped retry after ${gaps[3]} ms`);
    // (The cap itself is checked without timers in tests/scheduler.rs.)
    assert.match(failures[0].message, /disk is on fire/);
    const st = s.stats();
    assert.ok(st.failuresInRow >= 5);
    assert.equal(st.lastRun.outcome, "failed");
    assert.match(st.lastRun.error, /disk is on fire/);
    assert.ok(st.nextRunAt !== undefined, "a retry is armed: never stuck");
  } finally {
    IDBDatabase.prototype.transaction = transaction;
  }
  await until(() => s.stats().runs === 1, 5_000, "recovery");
  assert.equal(s.stats().failuresInRow, 0);
  assert.equal(s.stats().lastRun.outcome, "done");
  assert.equal(s.stats().lastRun.deleted, 20);
  s.close();
  store.close();
});

test("an onRun that throws or rejects never stops scheduling", async () => {
  const s = new Sweeper(memoryStore(), {
    schedule: {
      debounceMs: 0,
      periodMs: 0,
      onRun: (e) => {
        if (e.type === "start") throw new Error("boom");
        return Promise.reject(new Error("async boom"));
      },
    },
  });
  s.request();
  await until(() => s.stats().runs === 1, 5_000, "the first run");
  s.request();
  await until(() => s.stats().runs === 2, 5_000, "the second run");
  s.close();
});

test("a run that uses up its slice goes on in the next one, with the plan the first slice made", async () => {
  const ends = [];
  const s = new Sweeper(memoryStore(), {
    batchSize: 5,
    schedule: {
      debounceMs: 0,
      periodMs: 0,
      sliceMs: 1,
      onRun: (e) => e.type === "end" && ends.push({ report: e.report, last: s.stats().lastRun }),
    },
  });
  await putExpired(s, 200);
  s.request("full");
  await until(() => s.stats().runs === 1, 10_000, "the sliced run");
  const st = s.stats();
  assert.ok(st.slices > 1, `${st.slices} slices`);
  assert.equal(st.lastRun.outcome, "done");
  assert.equal(await s.get("k7", { includeExpired: true }), undefined);
  // Each slice's lastRun counts its own deletions; its report, every slice's so far.
  assert.equal(ends.length, st.slices);
  assert.equal(ends.reduce((n, e) => n + e.last.deleted, 0), 200);
  assert.equal(ends.at(-1).report.deleted.expired.count, 200);
  assert.ok(ends.at(-1).last.deleted < 200, `the last slice deleted ${ends.at(-1).last.deleted}`);
  assert.deepEqual(ends.map((e) => e.report.planReused), ends.map((_, i) => i > 0));
  s.close();
});

test("close() cancels the timer and refuses requests", async () => {
  const s = new Sweeper(memoryStore(), { schedule: { debounceMs: 20 } });
  s.request("full");
  assert.ok(s.stats().nextRunAt !== undefined);
  s.close();
  const st = s.stats();
  assert.equal(st.state, "closed");
  assert.equal(st.nextRunAt, undefined);
  assert.equal(st.pending, undefined);
  assert.throws(() => s.request("full"), /^Error: kvsweep: request: this Sweeper is closed \(close\(\) was called\)$/);
  await sleep(60);
  assert.equal(s.stats().runs, 0);
});

test("request() and schedule options are checked", () => {
  const s = new Sweeper(memoryStore());
  assert.throws(() => s.request("medium"), /^Error: kvsweep: request: mode must be "light" or "full", got "medium"$/);
  assert.throws(() => s.request(1), /got 1$/);
  const bad = [
    // One message for every value outside the range, with the range it is.
    [{ debounceMs: -1 }, /schedule\.debounceMs must be a whole number from 0 to 31536000000 \(a year\), got -1$/],
    [{ periodMs: 1.5 }, /schedule\.periodMs must be a whole number from 0 to 31536000000 \(a year\), got 1\.5$/],
    [{ retryMaxMs: 2 ** 53 }, /schedule\.retryMaxMs must be a whole number from 0 to 31536000000 \(a year\), got 9007199254740992$/],
    [{ periodMs: 400 * 24 * 3600 * 1000 }, /schedule\.periodMs must be a whole number from 0 to 31536000000 \(a year\), got 34560000000$/],
    [{ debounceMs: 500, maxWaitMs: 100 }, /^Error: kvsweep: new Sweeper\(store, options\): options\.schedule\.maxWaitMs must be at least options\.schedule\.debounceMs \(500\), got 100$/],
    [{ retryMs: 500, retryMaxMs: 100 }, /^Error: kvsweep: new Sweeper\(store, options\): options\.schedule\.retryMaxMs must be at least options\.schedule\.retryMs \(500\), got 100$/],
    [{ runOnStart: "yes" }, /schedule\.runOnStart must be true or false, got "yes"/],
    [{ lockName: "" }, /schedule\.lockName must be a non-empty string, got ""$/],
    [{ storageFraction: 2 }, /schedule\.storageFraction must be a number from 0 to 1/],
    [{ onRun: 1 }, /schedule\.onRun must be a function, got 1/],
    [{ every: 5 }, /schedule: unknown option "every"/],
    [5, /schedule must be an object, got 5/],
  ];
  for (const [schedule, message] of bad) {
    assert.throws(() => new Sweeper(memoryStore(), { schedule }), message, JSON.stringify(schedule));
  }
  // One of a pair given alone moves the other's default out of its way, either way round.
  for (const schedule of [{ maxWaitMs: 500 }, { debounceMs: 20_000 }, { retryMaxMs: 500 }, { retryMs: 2_000_000 }]) {
    new Sweeper(memoryStore(), { schedule }).free();
  }
});

test("a Sweeper waiting for its next period does not keep Node running", async () => {
  const pkg = fileURLToPath(new URL("../../pkg/node.js", import.meta.url));
  const script = `
    const { Sweeper, memoryStore } = await import(${JSON.stringify(pkg)});
    const s = new Sweeper(memoryStore(), { schedule: { periodMs: 3_600_000 } });
    s.request("full");
    if (s.stats().nextRunAt === undefined) process.exit(3);
  `;
  const started = Date.now();
  const code = await new Promise((resolve) => {
    const child = execFile(process.execPath, ["--input-type=module", "-e", script], { timeout: 30_000 }, (err) =>
      resolve(err ? err.code ?? err.signal : 0),
    );
    child.stdin?.end();
  });
  assert.equal(code, 0);
  assert.ok(Date.now() - started < 20_000);
});

test("a put refused as over quota asks for a full run and says so", async () => {
  const store = await openIndexedDb(`full-${Date.now()}`);
  const s = new Sweeper(store, { schedule: { debounceMs: 0, periodMs: 0 } });
  await putExpired(s, 10);
  const put = IDBObjectStore.prototype.put;
  const add = IDBObjectStore.prototype.add;
  const full = function () {
    throw new DOMException("no room left", "QuotaExceededError");
  };
  IDBObjectStore.prototype.put = full;
  IDBObjectStore.prototype.add = full;
  try {
    await assert.rejects(
      s.put("more", "data"),
      /^QuotaExceededError: kvsweep: put: storage quota exceeded: no room left; a full cleanup has been requested \(see stats\(\)\): try again after it$/,
    );
  } finally {
    IDBObjectStore.prototype.put = put;
    IDBObjectStore.prototype.add = add;
  }
  // No silent retry: the value is not there.
  assert.equal(await s.get("more"), undefined);
  await until(() => s.stats().runs === 1, 5_000, "the full run");
  assert.equal(s.stats().lastRun.mode, "full");
  assert.equal(s.stats().lastRun.deleted, 10);
  s.close();
  store.close();
});

test("a Sweeper freed with its timer armed leaves nothing to fire", async () => {
  const uncaught = [];
  const onError = (e) => uncaught.push(e);
  process.on("uncaughtException", onError);
  try {
    const s = new Sweeper(memoryStore(), { schedule: { debounceMs: 10 } });
    s.request("full");
    s.free();
    await sleep(60);
    assert.deepEqual(uncaught, []);
    assert.throws(() => s.request("full"), /this Sweeper was freed/);
  } finally {
    process.off("uncaughtException", onError);
  }
});

test("timers run on real time: a frozen injected clock still gets its background runs", async () => {
  // A year ahead: the entry below has expired by this clock, not by Date.now().
  const inAYear = Date.now() + 365 * 86400e3;
  const s = new Sweeper(memoryStore(), { clock: () => inAYear, schedule: { debounceMs: 10, periodMs: 0 } });
  await s.put("old", 1, { expiresAt: Date.now() + 86400e3 });
  s.request("full");
  assert.ok(Math.abs(s.stats().nextRunAt - (Date.now() + 10)) < 1_000, "nextRunAt is by Date.now()");
  await until(() => s.stats().runs === 1, 5_000, "the run");
  assert.equal(s.stats().lastRun.deleted, 1, "the run dated entries by the injected clock");
  s.close();
});

test("a wall clock set back an hour does not hold a requested run back", async () => {
  const s = new Sweeper(memoryStore(), { schedule: { debounceMs: 50, periodMs: 0 } });
  const realNow = Date.now;
  s.request("full");
  Date.now = () => realNow() - 3600e3;
  try {
    await until(() => s.stats().runs === 1, 3_000, "the run, 50 ms after its request");
    // nextRunAt reads on the wall clock as it is now.
    s.request("full");
    assert.ok(Math.abs(s.stats().nextRunAt - (Date.now() + 50)) < 1_000, `nextRunAt ${s.stats().nextRunAt - Date.now()} ms ahead`);
  } finally {
    Date.now = realNow;
    s.close();
  }
});

test("a store closed for good stops background runs rather than retrying them for ever", async () => {
  const store = await openIndexedDb(`closed-${Date.now()}`);
  const errors = [];
  const s = new Sweeper(store, { schedule: { debounceMs: 10, retryMs: 20, retryMaxMs: 40, periodMs: 0, onRun: (e) => e.type === "error" && errors.push(e.error.message) } });
  await s.put("a", 1);
  await s.delete("a"); // asks for a light run
  store.close();
  await until(() => s.stats().state === "closed", 3_000, "background runs stopped");
  await sleep(300);
  assert.equal(s.stats().failures, 1);
  assert.equal(s.stats().nextRunAt, undefined);
  assert.ok(errors.length <= 1 && errors.every((m) => /closed/.test(m)), JSON.stringify(errors));
  s.close();
});

test("a clock that throws in a background run: its error says so once", async () => {
  let broken = false;
  const events = [];
  const clock = () => {
    if (broken) throw new Error("clock broke");
    return Date.now();
  };
  const s = new Sweeper(memoryStore(), { clock, schedule: { debounceMs: 10, retryMs: 60_000, periodMs: 0, onRun: (e) => e.type === "error" && events.push(e.error.message) } });
  broken = true;
  s.request("full");
  await until(() => events.length === 1, 3_000, "the failed run");
  assert.equal(events[0], "kvsweep: clock() threw Error: clock broke");
  assert.equal(s.stats().lastRun.error, "clock() threw Error: clock broke");
  s.close();
});

test("a background run that could not delete some items counts as failed and is retried", async () => {
  const store = await openIndexedDb(`errors-${Date.now()}`);
  let now = Date.now();
  const clock = () => now;
  const s = new Sweeper(store, { clock, batchSize: 10, schedule: { debounceMs: 0, periodMs: 0, retryMs: 50, retryMaxMs: 100 } });
  for (let i = 0; i < 30; i++) await s.put(`k${i}`, i, { ttlMs: 1_000 });
  now += 10_000;
  const del = IDBObjectStore.prototype.delete;
  let calls = 0;
  IDBObjectStore.prototype.delete = function (...args) {
    calls += 1;
    if (calls % 3 === 0) throw new DOMException("delete refused", "UnknownError");
    return del.apply(this, args);
  };
  try {
    s.request("full");
    await until(() => s.stats().lastRun !== undefined, 5_000, "the first run");
    const { lastRun, failures } = s.stats();
    assert.equal(lastRun.outcome, "failed");
    assert.match(lastRun.error, /delete refused/);
    assert.equal(failures, 1);
    assert.match((await s.health()).reasons.join(" "), /could not delete \d+ items/);
  } finally {
    IDBObjectStore.prototype.delete = del;
  }
  // Retried without another request, and done once deletes work again.
  await until(() => s.stats().lastRun.outcome === "done", 5_000, "the retry");
  assert.equal((await s.plan()).actions.length, 0);
  s.close();
  store.close();
});

test("items that keep failing are retried three times, then wait for the period", async () => {
  const store = await openIndexedDb(`stuck-${Date.now()}`);
  let now = Date.now();
  const clock = () => now;
  const s = new Sweeper(store, { clock, schedule: { debounceMs: 0, periodMs: 0, retryMs: 20, retryMaxMs: 40 } });
  await s.put("stuck", 1, { ttlMs: 1_000 });
  now += 10_000;
  const del = IDBObjectStore.prototype.delete;
  IDBObjectStore.prototype.delete = function () {
    throw new DOMException("refused for good", "UnknownError");
  };
  try {
    s.request("full");
    await until(() => s.stats().slices === 4, 5_000, "the run and its three retries");
    await sleep(300);
    // Each counted failed, the fourth too (it counted as a run, and reset
    // failuresInRow).
    const { slices, runs, failures, failuresInRow, pending, nextRunAt, lastRun } = s.stats();
    assert.deepEqual(
      { slices, runs, failures, failuresInRow, pending, nextRunAt, outcome: lastRun.outcome },
      { slices: 4, runs: 0, failures: 4, failuresInRow: 4, pending: undefined, nextRunAt: undefined, outcome: "failed" },
    );
  } finally {
    IDBObjectStore.prototype.delete = del;
    s.close();
    store.close();
  }
});

test("free() during a background run stops it at its next batch", async () => {
  let s;
  const ended = new Promise((resolve) => {
    s = new Sweeper(memoryStore(), {
      batchSize: 10,
      schedule: {
        debounceMs: 0,
        periodMs: 0,
        onRun: (e) => {
          if (e.type === "start") s.free();
          else resolve(e);
        },
      },
    });
  });
  await putExpired(s, 300);
  s.request("full");
  const e = await ended;
  assert.equal(e.type, "end");
  assert.equal(e.report.done, false, "the run stopped early");
  assert.ok(totalOf(e.report) < 300, `deleted ${totalOf(e.report)} of 300`);
});

const totalOf = (report) => Object.values(report.deleted).reduce((n, t) => n + t.count, 0);

test("without a schedule a quota error asks for nothing", async () => {
  const store = await openIndexedDb(`full-manual-${Date.now()}`);
  const s = new Sweeper(store);
  const put = IDBObjectStore.prototype.put;
  const add = IDBObjectStore.prototype.add;
  let said = "no room left";
  const full = function () {
    throw new DOMException(said, "QuotaExceededError");
  };
  IDBObjectStore.prototype.put = full;
  IDBObjectStore.prototype.add = full;
  try {
    // Named as the browser names it, for apps that check e.name.
    await assert.rejects(s.put("more", "data"), { name: "QuotaExceededError", message: "kvsweep: put: storage quota exceeded: no room left" });
    await assert.rejects(s.putMany([{ key: "a", value: 1 }]), { name: "QuotaExceededError", message: "kvsweep: putMany: storage quota exceeded: no room left" });
    // Chromium's IndexedDB says nothing more: nor does the message (it ended in ": ").
    said = "";
    await assert.rejects(s.put("more", "data"), { name: "QuotaExceededError", message: "kvsweep: put: storage quota exceeded" });
  } finally {
    IDBObjectStore.prototype.put = put;
    IDBObjectStore.prototype.add = add;
  }
  await sleep(50);
  assert.equal(s.stats().pending, undefined);
  assert.equal(s.stats().runs, 0);
  s.close();
  store.close();
});
