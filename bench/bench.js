// The kvsweep browser benchmark: kvsweep on a real IndexedDB against plain
// IndexedDB code doing the same work, measured in the same page run.
// scripts/bench-browser.mjs serves this page and calls window.runBench(size, only)
// once per size, each in a fresh browser context (so IndexedDB starts empty).
import { Sweeper, memoryStore, openIndexedDb } from "/pkg/index.js";

/** Every value is a 200-character string, on both sides. */
const VALUE_BYTES = 200;
/** One-at-a-time operations are timed over at most this many calls (both sides the same). */
const MAX_TIMED_OPS = 5000;
/** Items per putMany call, and records per transaction in the batched baselines. */
const CHUNK = 1000;
/** Puts in flight at once when filling a store without putMany (untimed). */
const FILL_CONCURRENCY = 32;
/** The heartbeat's interval; the longest gap between its ticks is the main thread's worst stall. */
const HEARTBEAT_MS = 5;
/** The TTL of entries meant to expire, and how far the clock jumps before the runs. */
const TTL_MS = 1000;
const CLOCK_JUMP_MS = 10_000;
/** The sliced background run's `sliceMs`. */
const SLICE_MS = 20;
/** Pause between measurements, so one's background work (compaction, GC) bleeds less into the next. */
const SETTLE_MS = 200;
/** Slices a put or get row is timed in, kvsweep's and the baseline's alternating. */
const ROUNDS = 10;
/** How long after the writes the get row reads: over a second, so reads refresh accessedAt. */
const READ_LATER_MS = 2000;
/** The rows runBench knows; `only` picks a subset. */
const ROWS = ["put", "putMany", "get", "list", "scattered", "adjacent", "range", "background", "sliced", "memory"];

const STORE = "kv"; // the object store of the plain-IndexedDB baselines

// ---------- small helpers ----------

/** Progress for the node driver (it prints console lines starting with [bench]) and for a person watching. */
function log(message) {
  console.log(`[bench] ${message}`);
  const el = document.getElementById("log");
  if (el) el.textContent += `${message}\n`;
}

/** An error's message, whatever was thrown, so a row can show it. */
function messageOf(err) {
  if (err instanceof Error) return err.message;
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
const settle = () => sleep(SETTLE_MS);

/** Zero-padded indexes keep key order equal to index order. */
const pad = (i) => String(i).padStart(7, "0");
/** Keys of the main and scattered stores: k0000000, k0000001, … */
const mainKey = (i) => `k${pad(i)}`;
/** Keys of the adjacent store: the first half a…, the rest b…, so the expired half is one key range. */
const adjacentKey = (i, half) => (i < half ? `a${pad(i)}` : `b${pad(i)}`);

/** A 200-character value that differs per key, the same on both sides. */
function valueFor(i) {
  const head = `value #${i} `;
  return head + "x".repeat(VALUE_BYTES - head.length);
}

/** A seeded PRNG (mulberry32), so both sides read the same "random" keys in the same order. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Indexes [from, to) split into chunks of `size`, for batched writes. */
function* chunks(from, to, size) {
  for (let start = from; start < to; start += size) {
    const end = Math.min(to, start + size);
    yield Array.from({ length: end - start }, (_, j) => start + j);
  }
}

// ---------- measuring ----------

/**
 * Watches the main thread while an operation runs: a setTimeout loop records the
 * longest gap between ticks (what a user would feel as a frozen page), and a
 * "longtask" PerformanceObserver, where the browser has one, the longest task.
 */
function startHeartbeat() {
  let last = performance.now();
  let gapMs = 0;
  let longTaskMs = 0;
  let running = true;
  let timer;
  const tick = () => {
    const t = performance.now();
    gapMs = Math.max(gapMs, t - last);
    last = t;
    if (running) timer = setTimeout(tick, HEARTBEAT_MS);
  };
  timer = setTimeout(tick, HEARTBEAT_MS);

  let observer = null;
  const noteTasks = (entries) => {
    for (const e of entries) longTaskMs = Math.max(longTaskMs, e.duration);
  };
  try {
    if (PerformanceObserver.supportedEntryTypes?.includes("longtask")) {
      observer = new PerformanceObserver((list) => noteTasks(list.getEntries()));
      observer.observe({ type: "longtask" });
    }
  } catch {
    observer = null;
  }

  return function stop() {
    running = false;
    clearTimeout(timer);
    // A stall that lasted until the operation ended counts too.
    gapMs = Math.max(gapMs, performance.now() - last);
    if (observer) {
      noteTasks(observer.takeRecords());
      observer.disconnect();
    }
    return { gapMs, longTaskMs: observer ? longTaskMs : null };
  };
}

/**
 * Times `fn` with performance.now() and turns the outcome into a measurement:
 * { count, ms, rate (per second) } plus the heartbeat's figures when asked for,
 * or { error } when it throws, so one failing call never stops the whole bench.
 * `fn` may return { count } to report how many items it really handled.
 */
async function measure(what, count, fn, { heartbeat = false } = {}) {
  const stop = heartbeat ? startHeartbeat() : null;
  const t0 = performance.now();
  try {
    const out = (await fn()) ?? {};
    const ms = performance.now() - t0;
    const beat = stop ? stop() : {};
    const n = typeof out.count === "number" ? out.count : count;
    const m = { count: n, ms, rate: ms > 0 ? (n / ms) * 1000 : Infinity, ...beat };
    log(`${what}: ${n} in ${ms.toFixed(0)} ms = ${m.rate.toFixed(0)}/s${stop ? `, longest gap ${beat.gapMs.toFixed(0)} ms` : ""}`);
    return m;
  } catch (err) {
    stop?.();
    log(`${what}: ERROR ${messageOf(err)}`);
    return { error: messageOf(err) };
  }
}

/**
 * Times the sides of one row (kvsweep, the baseline, and where there is one
 * the floor) in alternating slices of `items` (ROUNDS of them), so that the
 * machine's speed drifting over seconds weighs on all alike; one long block
 * each was at the mercy of that drift. With two sides, each goes first every
 * other round; with three, kvsweep goes in the middle and the other two
 * swap, so no more than two slices of theirs come between two of kvsweep's
 * (reads' deferred refreshes wait for a 1 s pause: a longer wait would let
 * them be written during another side's slice). Returns one measurement per
 * side, as `measure` would.
 */
async function interleaved(what, items, sides, names = ["kvsweep", "baseline", "floor"]) {
  const ms = sides.map(() => 0);
  const errors = sides.map(() => null);
  const per = Math.ceil(items.length / ROUNDS);
  const rounds = Math.ceil(items.length / per);
  for (let r = 0; r < rounds; r++) {
    const slice = items.slice(r * per, (r + 1) * per);
    const order = sides.length === 3 ? (r % 2 ? [2, 0, 1] : [1, 0, 2]) : r % 2 ? [1, 0] : [0, 1];
    for (const side of order) {
      if (errors[side]) continue;
      const t0 = performance.now();
      try {
        await sides[side](slice);
      } catch (err) {
        errors[side] = messageOf(err);
      }
      ms[side] += performance.now() - t0;
    }
  }
  return sides.map((_, side) => {
    const name = names[side];
    if (errors[side]) {
      log(`${what} ${name}: ERROR ${errors[side]}`);
      return { error: errors[side] };
    }
    const m = { count: items.length, ms: ms[side], rate: ms[side] > 0 ? (items.length / ms[side]) * 1000 : Infinity };
    log(`${what} ${name}: ${items.length} in ${ms[side].toFixed(0)} ms = ${m.rate.toFixed(0)}/s (${rounds} alternating slices)`);
    return m;
  });
}

// ---------- plain IndexedDB (the baselines) ----------

/** Resolves with a request's result, rejects with its error. */
function request(req) {
  return new Promise((ok, fail) => {
    req.onsuccess = () => ok(req.result);
    req.onerror = () => fail(req.error);
  });
}

/** Resolves when a transaction has committed; a write counts only once it has. */
function committed(tx) {
  return new Promise((ok, fail) => {
    tx.oncomplete = () => ok();
    tx.onerror = () => fail(tx.error);
    tx.onabort = () => fail(tx.error ?? new Error("transaction aborted"));
  });
}

/** Opens (creating) a baseline database with one object store and out-of-line keys. */
function openPlainDb(name) {
  const req = indexedDB.open(name, 1);
  req.onupgradeneeded = () => req.result.createObjectStore(STORE);
  return request(req);
}

/** Deletes a database; never hangs on a connection something forgot to close. */
function deleteDatabase(name) {
  return new Promise((ok) => {
    const req = indexedDB.deleteDatabase(name);
    req.onsuccess = req.onerror = () => ok();
    req.onblocked = () => {
      log(`deleting ${name}: blocked by an open connection`);
      ok();
    };
    setTimeout(ok, 10_000);
  });
}

/** Baseline put: one readwrite transaction per put, awaited until committed. */
async function plainPutEach(db, indexes, keyOf) {
  for (const i of indexes) {
    const tx = db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).put(valueFor(i), keyOf(i));
    await committed(tx);
  }
}

/** Baseline batched put: CHUNK puts per readwrite transaction. */
async function plainPutBatched(db, from, to, keyOf) {
  for (const batch of chunks(from, to, CHUNK)) {
    const tx = db.transaction(STORE, "readwrite");
    const store = tx.objectStore(STORE);
    for (const i of batch) store.put(valueFor(i), keyOf(i));
    await committed(tx);
  }
}

/** Baseline get: one readonly transaction per get; counts keys that were missing. */
async function plainGetEach(db, keys) {
  let missing = 0;
  for (const key of keys) {
    const value = await request(db.transaction(STORE, "readonly").objectStore(STORE).get(key));
    if (value === undefined) missing++;
  }
  return missing;
}

/** Baseline listing: getAllKeys + getAll in pages of CHUNK records, one transaction a page. */
async function plainListAll(db, storeName = STORE) {
  let count = 0;
  let after;
  for (;;) {
    const range = after === undefined ? undefined : IDBKeyRange.lowerBound(after, true);
    const store = db.transaction(storeName, "readonly").objectStore(storeName);
    const [keys, values] = await Promise.all([
      request(store.getAllKeys(range, CHUNK)),
      request(store.getAll(range, CHUNK)),
    ]);
    count += values.length;
    if (keys.length < CHUNK) return count;
    after = keys[keys.length - 1];
  }
}

/** Baseline delete, like idb-keyval delMany: one readwrite transaction, one delete request per key. */
async function plainDeleteMany(db, keys) {
  const tx = db.transaction(STORE, "readwrite");
  const store = tx.objectStore(STORE);
  for (const key of keys) store.delete(key);
  await committed(tx);
}

/** The reference: one delete over a key range, the cheapest way to drop adjacent keys. */
async function plainDeleteRange(db, lower, upper) {
  const tx = db.transaction(STORE, "readwrite");
  tx.objectStore(STORE).delete(IDBKeyRange.bound(lower, upper));
  await committed(tx);
}

/** How many records a baseline store holds, to check a baseline did what it claims. */
function plainCount(db, storeName = STORE) {
  return request(db.transaction(storeName, "readonly").objectStore(storeName).count());
}

// ---------- the floors: plain code doing kvsweep's I/O ----------
//
// About the most a design keeping kvsweep's stored format (SPEC §1) can
// reach, so a target above it asks for another format, not faster code:
// - put and get: plain requests on records as kvsweep stores them (its
//   object stores, `[namespace, key]` keys, the bytes it writes for the same
//   value), in a transaction over the object stores its put spans, a put
//   committed right behind its request as kvsweep's own is;
// - runs: reading every record of that shape (a plan must: what is garbage
//   depends on each entry's metadata), then deleting the garbage's records
//   one request each (scattered garbage) or as one key range (adjacent).
// One measurement each, on a shared machine: an estimate, not a bound.

/** kvsweep's object stores, made by opening the database with kvsweep once, then opened plainly. */
async function openFloorDb(name) {
  const store = await openIndexedDb(name);
  store.close?.();
  return request(indexedDB.open(name));
}

/** The object stores a kvsweep put of a small value spans (write::entry_tables). */
const PUT_SCOPE = ["blobMeta", "meta", "values"];

/** The record kvsweep stores for `valueFor(0)`, written by kvsweep itself into the floor's database. */
async function kvsweepRecord(name, clock) {
  const store = await openIndexedDb(name);
  const sweeper = sweeperOn(store, clock);
  await sweeper.put(mainKey(0), valueFor(0));
  sweeper.close?.();
  store.close?.();
  const db = await request(indexedDB.open(name));
  const record = await request(db.transaction("meta", "readonly").objectStore("meta").get(["", mainKey(0)]));
  // The floor's records are all its own.
  const tx = db.transaction("meta", "readwrite");
  tx.objectStore("meta").delete(["", mainKey(0)]);
  await committed(tx);
  db.close();
  if (!(record instanceof Uint8Array)) throw new Error("the floor: kvsweep's record of key 0 is not bytes");
  return record;
}

/**
 * Floor put: one readwrite transaction per put of kvsweep's record,
 * committed right behind it (`commit()`, as kvsweep's own put of a new
 * record is), not once the request's success has come back.
 */
async function floorPutEach(db, indexes, record) {
  for (const i of indexes) {
    const tx = db.transaction(PUT_SCOPE, "readwrite");
    tx.objectStore("meta").put(record, ["", mainKey(i)]);
    tx.commit?.();
    await committed(tx);
  }
}

/** Floor batched put (and the floor's fill): CHUNK puts of kvsweep's record per transaction. */
async function floorPutBatched(db, from, to, record, keyOf = mainKey) {
  for (const batch of chunks(from, to, CHUNK)) {
    const tx = db.transaction(PUT_SCOPE, "readwrite");
    const store = tx.objectStore("meta");
    for (const i of batch) store.put(record, ["", keyOf(i)]);
    await committed(tx);
  }
}

/** Floor get: one readonly transaction per get of a record; counts keys that were missing. */
async function floorGetEach(db, keys) {
  let missing = 0;
  for (const key of keys) {
    const record = await request(db.transaction("meta", "readonly").objectStore("meta").get(["", key]));
    if (record === undefined) missing++;
  }
  return missing;
}

/** Floor delete: one readwrite transaction, one delete request per record. */
async function floorDeleteMany(db, keys) {
  const tx = db.transaction("meta", "readwrite");
  const store = tx.objectStore("meta");
  for (const key of keys) store.delete(["", key]);
  await committed(tx);
}

/**
 * The floor of a run, set up beside the stores it compares with: kvsweep's
 * record for `valueFor(0)` under every key of `keyOf` in [0, size), in a
 * database of kvsweep's object stores. Returns the open database, or
 * { error } so that the rows beside it are still measured.
 */
async function floorRunStore(name, size, keyOf, clock, openExisting) {
  try {
    const record = await kvsweepRecord(name, clock);
    const db = await openExisting(name);
    await floorPutBatched(db, 0, size, record, keyOf);
    return { db };
  } catch (err) {
    log(`floor ${name}: ERROR ${messageOf(err)}`);
    return { error: messageOf(err) };
  }
}

// ---------- kvsweep ----------

/** A Sweeper on `store` whose clock is `clock.now`, so the page decides when entries expire. */
function sweeperOn(store, clock) {
  return new Sweeper(store, { clock: () => clock.now, policy: {} });
}

/** Does this build of the package have putMany? (Older builds do not.) */
const hasPutMany = (sweeper) => typeof sweeper.putMany === "function";

/** putMany's items for indexes [from, to): { key, value } plus ttlMs where `ttlOf` gives one. */
function itemsFor(indexes, keyOf, ttlOf) {
  return indexes.map((i) => {
    const item = { key: keyOf(i), value: valueFor(i) };
    const ttl = ttlOf(i);
    if (ttl !== undefined) item.ttlMs = ttl;
    return item;
  });
}

/** Options of one put: a TTL where `ttlOf` gives one. */
function putOptions(i, ttlOf) {
  const ttl = ttlOf(i);
  return ttl === undefined ? undefined : { ttlMs: ttl };
}

/** kvsweep putMany over [from, to) in chunks of CHUNK items. */
async function kvPutManyChunks(sweeper, from, to, keyOf, ttlOf) {
  for (const batch of chunks(from, to, CHUNK)) await sweeper.putMany(itemsFor(batch, keyOf, ttlOf));
}

/**
 * Fills [from, to) of a kvsweep store, untimed: putMany in chunks when the build
 * has it; otherwise puts, FILL_CONCURRENCY at a time (a group that fails is
 * redone one put at a time, in case concurrent writers conflict).
 */
async function kvFill(sweeper, from, to, keyOf, ttlOf = () => undefined) {
  if (from >= to) return;
  const t0 = performance.now();
  let redone = 0;
  if (hasPutMany(sweeper)) {
    await kvPutManyChunks(sweeper, from, to, keyOf, ttlOf);
  } else {
    for (const group of chunks(from, to, FILL_CONCURRENCY)) {
      try {
        await Promise.all(group.map((i) => sweeper.put(keyOf(i), valueFor(i), putOptions(i, ttlOf))));
      } catch {
        redone++;
        for (const i of group) await sweeper.put(keyOf(i), valueFor(i), putOptions(i, ttlOf));
      }
    }
  }
  const ms = performance.now() - t0;
  const how = hasPutMany(sweeper) ? "with putMany" : `with puts, ${FILL_CONCURRENCY} at a time (${redone} groups redone one by one)`;
  log(`filled ${to - from} entries ${how} in ${(ms / 1000).toFixed(1)} s`);
}

/** Sums a run report's deleted tally over every reason. */
function totalDeleted(report) {
  return Object.values(report?.deleted ?? {}).reduce((sum, t) => sum + (t?.count ?? 0), 0);
}

/**
 * Runs a full cleanup and checks it deleted exactly the expired half: anything
 * else (fewer, more, other reasons, an unfinished run) goes into `warnings`.
 */
async function kvRunExpecting(sweeper, expected, what, warnings) {
  const report = await sweeper.run({ mode: "full" });
  const expired = report?.deleted?.expired?.count ?? 0;
  const total = totalDeleted(report);
  if (expired !== expected) {
    warnings.push(`${what}: run deleted ${expired} expired entries, expected ${expected} (deleted ${JSON.stringify(report?.deleted)})`);
  } else if (total !== expected) {
    warnings.push(`${what}: run deleted ${total} entries in all, expected ${expected} (${JSON.stringify(report?.deleted)})`);
  }
  if (report && report.done === false) warnings.push(`${what}: run stopped early (${report.stopped ?? "?"})`);
  if (report?.errors?.length) warnings.push(`${what}: run reported ${report.errors.length} errors, first: ${JSON.stringify(report.errors[0])}`);
  return { count: total };
}

// ---------- the benchmark ----------

/** The rows `only` asks for (all when it is empty); unknown names are an error. */
function selection(only) {
  const names = Array.isArray(only) ? only : typeof only === "string" && only ? only.split(",") : [];
  const unknown = names.filter((n) => !ROWS.includes(n));
  if (unknown.length) throw new Error(`unknown rows: ${unknown.join(", ")} (known: ${ROWS.join(", ")})`);
  const chosen = new Set(names.length ? names : ROWS);
  return (name) => chosen.has(name);
}

/**
 * One benchmark size. Stores (each its own database, names unique per run):
 *   main      kvsweep, N entries without TTL: put, get, listing rows
 *   scattered kvsweep, N entries, odd indexes with a TTL (putMany row, then run)
 *   adjacent  kvsweep, N entries, the first half with a TTL (run)
 * and plain-IndexedDB twins of each, plus a memory store. Everything is written
 * at a fixed clock time; then the clock jumps so the TTL entries have expired.
 */
async function benchSize(size, want, ctx) {
  const { names, clock, rows, warnings, open } = ctx;
  const half = Math.floor(size / 2);
  const timed = Math.min(size, MAX_TIMED_OPS);
  const oddTtl = (i) => (i % 2 === 1 ? TTL_MS : undefined);
  const firstHalfTtl = (i) => (i < half ? TTL_MS : undefined);
  const adjKey = (i) => adjacentKey(i, half);
  const row = (name) => (rows[name] ??= {});

  /** Opens a kvsweep store and its Sweeper, remembered for cleanup. */
  const kvOpen = async (name) => {
    const store = await openIndexedDb(name);
    const sweeper = sweeperOn(store, clock);
    open.push(() => {
      sweeper.close?.();
      store.close?.();
    });
    return sweeper;
  };
  /** Opens the floor's database (kvsweep's object stores, see openFloorDb), remembered for cleanup. */
  const plainOpenExisting = async (name) => {
    const db = await openFloorDb(name);
    open.push(() => db.close());
    return db;
  };
  /** Opens a baseline database, remembered for cleanup. */
  const plainOpen = async (name) => {
    const db = await openPlainDb(name);
    open.push(() => db.close());
    return db;
  };

  // Row 1, put: timed over the first `timed` keys, then both stores filled to N untimed.
  const needMain = want("put") || want("get") || want("list");
  let kvMain = null;
  let plainMain = null;
  let floorMain = null; // the floor of put and get (see floorPutEach)
  let floorRecord = null;
  let floorError = null;
  if (needMain || want("range")) plainMain = await plainOpen(names.plainMain);
  if (needMain) {
    kvMain = await kvOpen(names.kvMain);
    if (want("put") || want("get")) {
      try {
        floorRecord = await kvsweepRecord(names.floorMain, clock);
        floorMain = await plainOpenExisting(names.floorMain);
      } catch (err) {
        floorError = messageOf(err);
        log(`floor of put and get: ERROR ${floorError}`);
      }
    }
    if (want("put")) {
      const indexes = Array.from({ length: timed }, (_, i) => i);
      await settle();
      [row("put").kvsweep, row("put").baseline, row("put").floor] = await interleaved("put", indexes, [
        async (slice) => {
          for (const i of slice) await kvMain.put(mainKey(i), valueFor(i));
        },
        (slice) => plainPutEach(plainMain, slice, mainKey),
        ...(floorMain ? [(slice) => floorPutEach(floorMain, slice, floorRecord)] : []),
      ]);
      if (floorError) row("put").floor = { error: floorError };
      await settle();
      await kvFill(kvMain, row("put").kvsweep.error ? 0 : timed, size, mainKey);
      await plainPutBatched(plainMain, timed, size, mainKey);
    } else {
      await kvFill(kvMain, 0, size, mainKey);
      await plainPutBatched(plainMain, 0, size, mainKey);
    }
  } else if (plainMain) {
    await plainPutBatched(plainMain, 0, size, mainKey);
  }

  // Row 2, putMany: N items in chunks; the store it fills is the scattered run's.
  let kvScattered = null;
  let plainScattered = null;
  let scatteredFloor = null; // the scattered run's floor (floorRunStore)
  if (want("putMany") || want("scattered")) {
    kvScattered = await kvOpen(names.kvScattered);
    plainScattered = await plainOpen(names.plainScattered);
    await settle();
    if (want("putMany") && hasPutMany(kvScattered)) {
      row("putMany").kvsweep = await measure("putMany kvsweep", size, () =>
        kvPutManyChunks(kvScattered, 0, size, mainKey, oddTtl),
      );
    } else {
      if (want("putMany")) row("putMany").kvsweep = { na: "this build has no putMany" };
      // Without putMany the fill is slow: only worth it when the scattered run needs it.
      if (want("scattered")) await kvFill(kvScattered, 0, size, mainKey, oddTtl);
    }
    await settle();
    const plainBatched = () => plainPutBatched(plainScattered, 0, size, mainKey);
    if (want("scattered")) scatteredFloor = await floorRunStore(names.floorScattered, size, mainKey, clock, plainOpenExisting);
    if (want("putMany")) row("putMany").baseline = await measure("putMany baseline", size, plainBatched);
    else await plainBatched();
    if (want("putMany")) {
      try {
        const record = await kvsweepRecord(names.floorMany, clock);
        const floor = await plainOpenExisting(names.floorMany);
        await settle();
        row("putMany").floor = await measure("putMany floor", size, () => floorPutBatched(floor, 0, size, record));
      } catch (err) {
        row("putMany").floor = { error: messageOf(err) };
      }
    }
  }

  // Row 3, get: the same seeded random existing keys on both sides.
  if (want("get")) {
    const random = prng(size);
    const keys = Array.from({ length: timed }, () => mainKey(Math.floor(random() * size)));
    let kvMissing = 0;
    // The reads come over a second after the writes, as a user's do: each
    // defers a refresh of accessedAt (SPEC §1), written once reads pause.
    clock.now += READ_LATER_MS;
    await settle();
    let plainMissing = 0;
    let floorMissing = 0;
    if (floorMain) await floorPutBatched(floorMain, 0, size, floorRecord);
    await settle();
    [row("get").kvsweep, row("get").baseline, row("get").floor] = await interleaved("get", keys, [
      async (slice) => {
        for (const key of slice) if ((await kvMain.get(key)) === undefined) kvMissing++;
      },
      async (slice) => {
        plainMissing += await plainGetEach(plainMain, slice);
      },
      ...(floorMain ? [async (slice) => (floorMissing += await floorGetEach(floorMain, slice))] : []),
    ]);
    if (floorError) row("get").floor = { error: floorError };
    if (floorMissing) warnings.push(`get: the floor found no record for ${floorMissing} of ${timed} keys`);
    // What the reads deferred, timed apart: detail() writes pending refreshes first.
    const t0 = performance.now();
    await kvMain.detail(keys[0]);
    row("get").deferredMs = performance.now() - t0;
    log(`get: the refreshes of accessedAt the reads deferred, written by the next call, in ${row("get").deferredMs.toFixed(0)} ms`);
    if (kvMissing) warnings.push(`get: kvsweep found no value for ${kvMissing} of ${timed} existing keys`);
    if (plainMissing) warnings.push(`get: the baseline found no value for ${plainMissing} of ${timed} keys`);
  }

  // Row 4, listing: kvsweep's full plan against paging through every record.
  if (want("list")) {
    await settle();
    let plan = null;
    row("list").kvsweep = await measure("plan(full) kvsweep", size, async () => {
      plan = await kvMain.plan({ mode: "full" });
    }, { heartbeat: true });
    if (plan && plan.summary?.scanned !== size) warnings.push(`listing: plan scanned ${plan.summary?.scanned}, expected ${size}`);
    if (plan && plan.actions?.length) warnings.push(`listing: plan found ${plan.actions.length} actions in a store with no garbage`);
    await settle();
    let listed = 0;
    row("list").baseline = await measure("getAllKeys+getAll baseline", size, async () => {
      listed = await plainListAll(plainMain);
    }, { heartbeat: true });
    if (listed !== size) warnings.push(`listing: the baseline listed ${listed} records, expected ${size}`);
  }

  // The adjacent stores: the first half expires.
  let kvAdjacent = null;
  let plainAdjacent = null;
  let adjacentFloor = null;
  if (want("adjacent")) {
    kvAdjacent = await kvOpen(names.kvAdjacent);
    plainAdjacent = await plainOpen(names.plainAdjacent);
    await kvFill(kvAdjacent, 0, size, adjKey, firstHalfTtl);
    await plainPutBatched(plainAdjacent, 0, size, adjKey);
    adjacentFloor = await floorRunStore(names.floorAdjacent, size, adjKey, clock, plainOpenExisting);
  }

  // The background stores: odd keys expire; their Sweepers have a schedule
  // (one in slices of SLICE_MS), and say when a background run ends: when a
  // report says done, or a run fails.
  const scheduled = async (name, sliceMs) => {
    const store = await openIndexedDb(name);
    let ended = null;
    const onRun = (e) => (e.type === "error" || (e.type === "end" && e.report.done)) && ended?.(e);
    const sweeper = new Sweeper(store, { clock: () => clock.now, schedule: { debounceMs: 0, periodMs: 0, sliceMs, onRun } });
    open.push(() => {
      sweeper.close();
      store.close?.();
    });
    await kvFill(sweeper, 0, size, mainKey, oddTtl);
    return { sweeper, end: () => new Promise((resolve) => (ended = resolve)) };
  };
  const hasScheduler = typeof Sweeper.prototype.request === "function";
  const background = want("background") && hasScheduler ? await scheduled(names.kvBackground, 0) : null;
  if (want("background") && !hasScheduler) row("background").kvsweep = { na: "this build has no scheduler" };
  const sliced = want("sliced") && hasScheduler ? await scheduled(names.kvSliced, SLICE_MS) : null;

  // Time passes: every entry written with a TTL has now expired.
  clock.now += CLOCK_JUMP_MS;

  // Row 5, full run over scattered garbage (every other key) vs deleting those keys one request each.
  if (want("scattered")) {
    await settle();
    row("scattered").kvsweep = await measure("run(full) scattered kvsweep", half, () =>
      kvRunExpecting(kvScattered, half, "run scattered", warnings), { heartbeat: true });
    await settle();
    const oddKeys = Array.from({ length: half }, (_, j) => mainKey(2 * j + 1));
    row("scattered").baseline = await measure("delMany scattered baseline", half, () =>
      plainDeleteMany(plainScattered, oddKeys), { heartbeat: true });
    const left = await plainCount(plainScattered);
    if (left !== size - half) warnings.push(`run scattered: the baseline left ${left} records, expected ${size - half}`);
    // The floor: kvsweep's records, all read (as a plan must), then the same keys deleted.
    if (scatteredFloor.db) {
      await settle();
      row("scattered").floor = await measure("listing + delMany scattered floor", half, async () => {
        await plainListAll(scatteredFloor.db, "meta");
        await floorDeleteMany(scatteredFloor.db, oddKeys);
      }, { heartbeat: true });
      const floorLeft = await plainCount(scatteredFloor.db, "meta");
      if (floorLeft !== size - half) warnings.push(`run scattered: the floor left ${floorLeft} records, expected ${size - half}`);
    } else row("scattered").floor = { error: scatteredFloor.error };
  }

  // Row 6, full run where the garbage is one run of adjacent keys.
  if (want("adjacent")) {
    await settle();
    row("adjacent").kvsweep = await measure("run(full) adjacent kvsweep", half, () =>
      kvRunExpecting(kvAdjacent, half, "run adjacent", warnings), { heartbeat: true });
    await settle();
    const firstHalf = Array.from({ length: half }, (_, i) => adjKey(i));
    row("adjacent").baseline = await measure("delMany adjacent baseline", half, () =>
      plainDeleteMany(plainAdjacent, firstHalf), { heartbeat: true });
    // The floor: kvsweep's records, all read, then the garbage's as one key range.
    if (adjacentFloor.db) {
      await settle();
      row("adjacent").floor = await measure("listing + key-range delete adjacent floor", half, async () => {
        await plainListAll(adjacentFloor.db, "meta");
        const tx = adjacentFloor.db.transaction("meta", "readwrite");
        tx.objectStore("meta").delete(IDBKeyRange.bound(["", adjKey(0)], ["", adjKey(half - 1)]));
        await committed(tx);
      }, { heartbeat: true });
      const floorLeft = await plainCount(adjacentFloor.db, "meta");
      if (floorLeft !== size - half) warnings.push(`run adjacent: the floor left ${floorLeft} records, expected ${size - half}`);
    } else row("adjacent").floor = { error: adjacentFloor.error };
  }

  // Reference: one key-range delete over the first half of the main baseline store.
  if (want("range") && half > 0) {
    await settle();
    row("range").baseline = await measure("key-range delete baseline", half, () =>
      plainDeleteRange(plainMain, mainKey(0), mainKey(half - 1)), { heartbeat: true });
  }

  // Rows 7 and 8, a background cleanup (unsliced, then in slices of
  // SLICE_MS): request("full"), then the page goes on with its heartbeat
  // until the scheduler's run ends.
  const timeBackground = async (what, { sweeper, end }) => {
    await settle();
    return measure(`${what} kvsweep`, half, async () => {
      const ended = end();
      sweeper.request("full");
      const e = await ended;
      if (e.type !== "end") throw new Error(`the ${what} failed: ${e.error?.message}`);
      const deleted = totalDeleted(e.report);
      if (deleted !== half) warnings.push(`${what}: deleted ${deleted}, expected ${half}`);
      return { count: deleted };
    }, { heartbeat: true });
  };
  if (background) row("background").kvsweep = await timeBackground("background run(full)", background);
  if (sliced) {
    row("sliced").kvsweep = await timeBackground(`background run(full) in ${SLICE_MS} ms slices`, sliced);
    row("sliced").baseline = rows.background?.kvsweep ?? { na: "the background row was not measured" };
  }

  if (want("memory")) await benchMemory(size, timed, rows, warnings);
}

/**
 * kvsweep on memoryStore(): put, get and a full run over N entries, for scale
 * (no baseline). Odd keys get a TTL so the run has scattered garbage to delete.
 */
async function benchMemory(size, timed, rows, warnings) {
  const half = Math.floor(size / 2);
  const clock = { now: Date.now() };
  const sweeper = sweeperOn(memoryStore(), clock);
  const oddTtl = (i) => (i % 2 === 1 ? TTL_MS : undefined);
  await settle();
  rows.memPut = {
    kvsweep: await measure("memory put", size, async () => {
      for (let i = 0; i < size; i++) await sweeper.put(mainKey(i), valueFor(i), putOptions(i, oddTtl));
    }),
  };
  const random = prng(size + 1);
  const keys = Array.from({ length: timed }, () => mainKey(Math.floor(random() * size)));
  rows.memGet = {
    kvsweep: await measure("memory get", timed, async () => {
      for (const key of keys) await sweeper.get(key);
    }),
  };
  clock.now += CLOCK_JUMP_MS;
  rows.memRun = {
    kvsweep: await measure("memory run(full)", half, () => kvRunExpecting(sweeper, half, "memory run", warnings), {
      heartbeat: true,
    }),
  };
  sweeper.close?.();
}

/**
 * The entry point: benchmarks one size and returns plain JSON. Errors of single
 * calls land in their rows; anything else in `fatal`. The databases are deleted
 * at the end whatever happened.
 */
async function runBench(size, only) {
  const started = performance.now();
  const tag = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const names = {
    kvMain: `bench-kv-main-${tag}`,
    kvScattered: `bench-kv-scattered-${tag}`,
    kvAdjacent: `bench-kv-adjacent-${tag}`,
    kvBackground: `bench-kv-background-${tag}`,
    kvSliced: `bench-kv-sliced-${tag}`,
    plainMain: `bench-plain-main-${tag}`,
    plainScattered: `bench-plain-scattered-${tag}`,
    plainAdjacent: `bench-plain-adjacent-${tag}`,
    floorMain: `bench-floor-main-${tag}`,
    floorMany: `bench-floor-many-${tag}`,
    floorScattered: `bench-floor-scattered-${tag}`,
    floorAdjacent: `bench-floor-adjacent-${tag}`,
  };
  const ctx = { names, clock: { now: Date.now() }, rows: {}, warnings: [], open: [] };
  const result = {
    size,
    timedOps: Math.min(size, MAX_TIMED_OPS),
    valueBytes: VALUE_BYTES,
    hasPutMany: typeof Sweeper.prototype.putMany === "function",
    userAgent: navigator.userAgent,
    rows: ctx.rows,
    warnings: ctx.warnings,
  };
  log(`size ${size}: start`);
  try {
    await benchSize(size, selection(only), ctx);
  } catch (err) {
    result.fatal = messageOf(err);
    log(`size ${size}: FATAL ${result.fatal}`);
  } finally {
    for (const close of ctx.open) {
      try {
        close();
      } catch {
        // closing is best effort; deleteDatabase reports a blocked delete
      }
    }
    for (const name of Object.values(names)) await deleteDatabase(name);
  }
  result.totalMs = performance.now() - started;
  log(`size ${size}: done in ${(result.totalMs / 1000).toFixed(1)} s`);
  return result;
}

window.runBench = runBench;
window.benchRows = ROWS;
document.getElementById("status").textContent = "Ready: call runBench(size).";
