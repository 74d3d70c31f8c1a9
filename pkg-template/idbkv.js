// A key–value driver (see src/store/jskv.rs) over one IndexedDB object
// store of kvsweep records keyed by name, shared by the Cache Storage and
// OPFS stores, which keep their records here and their bytes elsewhere.
// Batches are transactions: atomic, their checks read in them. Names lying
// close together are read as one key range, runs of adjacent deletes go as
// one range delete, and listing reads the next page while one is converted.
// A store of at most MIRROR.limit records (and MIRROR.bytes) is listed from
// a copy the driver keeps, checked against a token every commit writing a
// copied record writes (see recordsDriver).

import { afterFlushes } from "./api.js";

export const done = (req) =>
  new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });

export const finished = (tx) =>
  new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(true);
    // A failed request aborts the transaction: nothing of the batch is written.
    tx.onabort = () => (tx.error ? reject(tx.error) : resolve(false));
  });

export function equal(a, b) {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export const bytesOf = (v) => (v instanceof Uint8Array ? v : v instanceof ArrayBuffer ? new Uint8Array(v) : undefined);

/**
 * Opens (creating) the database `dbName`: one object store of records, keyed
 * by name. Deleted from elsewhere, the connection closes, and `onClosed` hears it.
 */
export async function openRecords(dbName, onClosed) {
  // Version 2: every commit writes VERSION (see recordsDriver), which a
  // driver's copy of the records relies on. Code that does not (earlier
  // builds, at version 1) can no longer open the database, and its open
  // connections close when this one upgrades it: a write of theirs would
  // leave a copy stale for good.
  const req = indexedDB.open(dbName, 2);
  req.onupgradeneeded = () => {
    if (!req.result.objectStoreNames.contains("records")) req.result.createObjectStore("records");
  };
  const db = await done(req);
  db.onversionchange = () => {
    CLOSED_BY.set(db, "elsewhere");
    db.close();
    onClosed?.();
  };
  // A closed connection's transaction() says why it closed, as openIndexedDb's
  // store does, not the browser's "The database connection is closing".
  db.transaction = (...args) => {
    try {
      return Object.getPrototypeOf(db).transaction.apply(db, args);
    } catch (e) {
      if (e?.name !== "InvalidStateError" || !CLOSED_BY.has(db)) throw e;
      throw closedError(db);
    }
  };
  return db;
}

function closedError(db) {
  const error = new Error(
    CLOSED_BY.get(db) === "elsewhere"
      ? `another tab or worker deleted the database ${db.name} or upgraded it, and this connection closed to let it; open the store again for a new Sweeper`
      : "the store was closed (store.close())",
  );
  error.name = "InvalidStateError";
  return error;
}

/**
 * Throws what a transaction on `db` would once it is closed: for what the
 * store keeps outside it (OPFS files), which stays readable after.
 */
export function checkOpen(db) {
  if (CLOSED_BY.has(db)) throw closedError(db);
}

/** Why a records database's connection closed: "elsewhere" (deleted or upgraded there) or "here" (store.close()). */
const CLOSED_BY = new WeakMap();

/** Per records database: what lets its drivers' copies of the records go (see recordsDriver), called by store.close(). */
const FORGET = new WeakMap();

// What loads the WebAssembly first, where importing did not (kvsweep/sw).
let loader = async () => {};
export function setLoader(load) {
  loader = load;
}
export const loaded = () => loader();

/**
 * `store.close()` closes `db` too (a KvStore's own close() has no connection
 * to close), and the store is marked closed when `db` closes for another
 * context (its background runs then stop once one fails).
 */
export function closesWith(store, db) {
  const close = store.close.bind(store);
  const letGo = db.onversionchange;
  db.onversionchange = (e) => {
    letGo?.call(db, e);
    close();
  };
  Object.defineProperty(store, "close", {
    // After the refreshes freed Sweepers are writing (see api.js), as the
    // KvStore's own close() does.
    value: () =>
      afterFlushes(store, () => {
        if (!CLOSED_BY.has(db)) CLOSED_BY.set(db, "here");
        db.close();
        FORGET.get(db)?.(); // the drivers' copies of its records
        close();
      }),
  });
}

/** The error a listing page past a run's maxOps fails with. */
export function outOfCalls() {
  const e = new Error("the run's backend calls (maxOps) are used up");
  e.name = "KvsweepOutOfCalls";
  return e;
}

/**
 * Keys and values of the records of `range` in `store`, at most `limit`
 * (all if undefined): `[keys, values]`. One request where the browser has
 * `getAllRecords` (2,000 records with their fields took 32 ms here, against
 * 39 ms for the two requests), two where it has not.
 */
export function readRange(store, range, limit) {
  if (typeof store.getAllRecords === "function") {
    return done(store.getAllRecords({ query: range, count: limit })).then((rs) => [rs.map((r) => r.primaryKey), rs.map((r) => r.value)]);
  }
  return Promise.all([done(store.getAllKeys(range, limit)), done(store.getAll(range, limit))]);
}

/**
 * Reads `names` from `store` (in one transaction): `[values, keys]`, values
 * by name, and — when the names lie close together — every key between the
 * first and the last, read as one key range (two requests, not one per
 * name), so that runs of adjacent deletes can go as one range delete.
 */
async function readMany(store, names) {
  const sorted = [...new Set(names)].sort(); // UTF-16 order, as IndexedDB compares string keys
  const values = new Map();
  if (sorted.length >= 8) {
    // Keys and values together (one round trip), of at most twice as
    // many records as asked for; more than that between the first and the
    // last, and single reads cost less than the range.
    const range = IDBKeyRange.bound(sorted[0], sorted[sorted.length - 1]);
    const most = 2 * sorted.length + 1;
    const [keys, got] = await readRange(store, range, most);
    if (keys.length < most) {
      keys.forEach((k, i) => values.set(k, got[i]));
      return [values, keys];
    }
  }
  const got = await Promise.all(sorted.map((n) => done(store.get(n))));
  sorted.forEach((n, i) => got[i] !== undefined && values.set(n, got[i]));
  return [values, null];
}

/**
 * Deletes `names` from `store`: each run of names that are adjacent among
 * `keys` (every key of the range, read in this same transaction, so nothing
 * can come between) as one range delete, the rest one by one.
 */
function deleteMany(store, names, keys) {
  const doomed = new Set(names);
  if (keys) {
    for (let i = 0; i < keys.length; ) {
      if (!doomed.has(keys[i])) {
        i++;
        continue;
      }
      let j = i;
      while (j + 1 < keys.length && doomed.has(keys[j + 1])) j++;
      store.delete(i === j ? keys[i] : IDBKeyRange.bound(keys[i], keys[j]));
      for (let k = i; k <= j; k++) doomed.delete(keys[k]);
      i = j + 1;
    }
  }
  for (const n of doomed) store.delete(n);
}

/**
 * Records a driver keeps a copy of, at most, and their bytes at most (see
 * recordsDriver; entries hold values of up to 8 KiB): above either,
 * listings read the database page by page. Tests lower them.
 */
export const MIRROR = { limit: 10_000, bytes: 8 << 20 };

/**
 * The record every commit writing a copied record writes a new random
 * token to: another context's such commit shows as a token this driver did
 * not write. Part of the stored format (the database's version 2).
 */
const VERSION = "~version";

/**
 * The tables copied: entries, blob records, temps, namespaces, state (the
 * records a listing reads), not values or blob bytes (any size, read one at
 * a time), nor the Cache Storage store's pending deletions ("d/").
 */
const COPIED = "mctns";
const mirrored = (name) => name.length > 1 && name[1] === "/" && COPIED.includes(name[0]);
const tableRange = (letter) => IDBKeyRange.bound(`${letter}/`, `${letter}0`, false, true);

const newToken = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;

/** The index of the first of `sorted` not below `name` (UTF-16 order, as IndexedDB's). */
function lowerBound(sorted, name) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The Web Lock that keeps runs on the records in `db` one at a time (api.js's OWN_LOCKS). */
export const runLock = (db) => `kvsweep:${db.name}`;

/**
 * The driver over `db`'s records. `hooks` (all optional):
 * - `extra(store, writes)`: more writes for the batch's transaction, made
 *   once its checks hold (to names outside kvsweep's tables: the driver's
 *   copy of those follows `writes` only); what it returns goes to `committed`;
 * - `committed(writes, ok, extra)`: awaited after the transaction ends (ok:
 *   it committed), before `apply` returns — also when it failed.
 * `commit(checks, writes, durability)` is `apply` with IndexedDB's
 * durability hint: "strict" where something outside the database is
 * deleted once the batch commits (browsers may default to "relaxed", which a
 * system crash could undo after the outside deletion).
 */
export function recordsDriver(db, kind, batchSize, hooks = {}) {
  const spend = (n = 1) => {
    d.ops += n;
  };
  let prefetched = null; // the page after the one list() last returned
  const page = (range, limit) => {
    return readRange(db.transaction("records").objectStore("records"), range, limit);
  };
  // A copy of kvsweep's listed records (COPIED), as of the database's
  // VERSION `token`, while there are at most MIRROR.limit of them and
  // MIRROR.bytes: listings read it, not the database, while the token is
  // still the one there (one read). This driver's commits bring it along;
  // another context's (a service worker's, another tab's) write a token of
  // their own, and the copy is dropped. `sorted`: the names in order (made
  // at a listing, kept by commits).
  let mirror = null;
  let building = null; // the copy being read (a promise of it, or of null)
  // The token when the store was found too large to copy: not probed
  // again until another write.
  let tooLarge;
  const sizeOf = (name, value) => name.length * 2 + (bytesOf(value)?.length ?? 0);
  const build = () =>
    (building ??= (async () => {
      // One transaction: the records and the token as of one moment. The
      // names first, table by table, at most one more than the limit (a
      // larger store costs that much, not a walk of all of it).
      const store = db.transaction("records").objectStore("records");
      const token = await done(store.get(VERSION));
      if (tooLarge !== undefined && token === tooLarge) return null;
      let count = 0;
      const tables = [];
      for (const letter of COPIED) {
        const range = tableRange(letter);
        const n = (await done(store.getAllKeys(range, MIRROR.limit + 1))).length;
        count += n;
        if (count > MIRROR.limit) {
          tooLarge = token;
          return null;
        }
        if (n) tables.push(range);
      }
      const records = new Map();
      let bytes = 0;
      for (const [keys, values] of await Promise.all(tables.map((r) => readRange(store, r)))) {
        keys.forEach((k, i) => {
          records.set(k, values[i]);
          bytes += sizeOf(k, values[i]);
        });
      }
      if (bytes > MIRROR.bytes) {
        tooLarge = token;
        return null;
      }
      tooLarge = undefined;
      return { token, records, bytes, sorted: null };
    })().then(
      (m) => {
        building = null;
        mirror = CLOSED_BY.has(db) ? null : m; // not kept past close()
        return mirror;
      },
      () => (building = null),
    ));
  // Read ahead while the store opens for its first listing.
  build().catch(() => {});
  const forget = FORGET.get(db);
  FORGET.set(db, () => {
    forget?.();
    mirror = null;
  });
  const fromMirror = (m, prefix, end, startAfter, limit) => {
    m.sorted ??= [...m.records.keys()].sort();
    const sorted = m.sorted;
    let i = lowerBound(sorted, startAfter ?? prefix);
    if (sorted[i] === startAfter) i++;
    const items = [];
    while (i < sorted.length && sorted[i] < end && !(limit > 0 && items.length === limit)) {
      const name = sorted[i++];
      items.push([name, bytesOf(m.records.get(name)) ?? false]);
    }
    return { items, done: !(i < sorted.length && sorted[i] < end) };
  };
  // After a commit that began with `m` as the copy and read `seen` as the
  // token: the copy, brought along (its writes, the token it wrote, if
  // any), or dropped when the token it read was another context's.
  const follow = (m, seen, ok, writes, token) => {
    if (m === null || mirror !== m) return;
    if (seen !== m.token) {
      mirror = null;
      return;
    }
    if (!ok || token === null) return; // nothing copied written
    for (const [name, bytes] of writes) {
      if (!mirrored(name)) continue;
      const had = m.records.has(name);
      if (had) m.bytes -= sizeOf(name, m.records.get(name));
      if (bytes === null) m.records.delete(name);
      else {
        m.records.set(name, bytes);
        m.bytes += sizeOf(name, bytes);
      }
      // The names in order, kept so (a name added or removed in place).
      if (had !== (bytes !== null) && m.sorted) {
        const i = lowerBound(m.sorted, name);
        if (bytes === null) m.sorted.splice(i, 1);
        else m.sorted.splice(i, 0, name);
      }
    }
    m.token = token;
    if (m.records.size > MIRROR.limit || m.bytes > MIRROR.bytes) mirror = null;
  };
  const d = {
    kind,
    prefix: "",
    // A token is the bytes themselves (checks compare them). Runs take the
    // database's Web Lock (every writer is of this origin), then the lease.
    caps: { atomic: true, compareAndSet: true, visibilityMs: 0, nativeExpiry: false, batchSize, tokensAreBytes: true, webLock: runLock(db) },
    ops: 0,
    async get(names) {
      spend();
      prefetched = null;
      const [values] = await readMany(db.transaction("records").objectStore("records"), names);
      return names.map((n) => {
        const v = values.get(n);
        // `false`: something there that is not bytes, as the token too.
        const bytes = v === undefined ? null : bytesOf(v) ?? false;
        return [bytes, bytes];
      });
    },
    async list(prefix, startAfter, _cursor, limit, maxCalls = Infinity) {
      if (maxCalls < 1) throw outOfCalls();
      spend();
      const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
      if (mirrored(prefix)) {
        // A store small enough is read whole (its copied tables), once,
        // and again at the start of a listing of entries (after nothing,
        // or after the empty key's name) once another context wrote; the
        // listings between read pages of the database.
        checkOpen(db);
        let m = mirror;
        if (m && (await done(db.transaction("records").objectStore("records").get(VERSION))) !== m.token) {
          if (mirror === m) mirror = null;
          m = null;
        }
        m ??= await (building ?? (prefix.startsWith("m/") && !(startAfter > `${prefix}\0`) ? build() : null));
        if (m && mirror === m) {
          prefetched = null;
          return fromMirror(m, prefix, end, startAfter, limit);
        }
      }
      const rangeAfter = (after) => IDBKeyRange.bound(after ?? prefix, end, after !== undefined, true);
      // One record more than asked for says whether more follow: a store
      // of a whole number of pages ends without reading an empty one.
      const ask = prefetched?.prefix === prefix && prefetched.after === startAfter && prefetched.limit === limit ? prefetched.page : page(rangeAfter(startAfter), limit > 0 ? limit + 1 : limit);
      prefetched = null;
      const [keys, values] = await ask;
      const more = limit > 0 && keys.length > limit;
      if (more) {
        keys.length = values.length = limit;
        // Read the next page while this one is converted.
        const after = keys[limit - 1];
        prefetched = { prefix, after, limit, page: page(rangeAfter(after), limit + 1) };
        prefetched.page.catch(() => {});
      } else if (limit > 0 && keys.length === limit) {
        // A full page that ended the range: the next one, which a caller
        // paging by whole pages asks for, is empty as of this read.
        prefetched = { prefix, after: keys[limit - 1], limit, page: Promise.resolve([[], []]) };
      }
      return { items: keys.map((k, i) => [k, bytesOf(values[i]) ?? false]), done: !more };
    },
    apply(checks, writes) {
      return d.commit(checks, writes);
    },
    async commit(checks, writes, durability) {
      spend();
      prefetched = null;
      const onlyDeletes = writes.every(([, bytes]) => bytes === null);
      let extra;
      let committed = false;
      try {
        const tx = db.transaction("records", "readwrite", durability ? { durability } : undefined);
        const store = tx.objectStore("records");
        const result = finished(tx);
        result.catch(() => {}); // awaited below, unless a request threw first
        // The token as this transaction finds it: the copy's, unless
        // another context wrote since. A copy being read was asked for
        // before this transaction began, so it reads what was there before.
        const m = mirror ?? building;
        const before = done(store.get(VERSION));
        before.catch(() => {});
        // Only a commit writing a copied record tells the others.
        const token = writes.some(([name]) => mirrored(name)) ? newToken() : null;
        const ok = await (async () => {
          // Every check first, in this transaction; the writes only when all hold.
          const names = checks.map(([n]) => n);
          if (onlyDeletes) names.push(...writes.map(([n]) => n));
          const [values, keys] = names.length ? await readMany(store, names) : [new Map(), null];
          // Absent means nothing there at all, readable or not; `false`,
          // something there that is not bytes (any such: kvsweep reads none).
          const holds = ([name, token]) => {
            const v = values.get(name);
            return token === null ? v === undefined : token === false ? v !== undefined && bytesOf(v) === undefined : equal(bytesOf(v) ?? null, token);
          };
          if (!checks.every(holds)) {
            tx.abort();
            return false;
          }
          if (onlyDeletes) deleteMany(store, writes.map(([n]) => n), keys);
          else {
            for (const [name, bytes] of writes) {
              if (bytes === null) store.delete(name);
              else store.put(bytes, name);
            }
          }
          extra = hooks.extra?.(store, writes);
          if (token !== null) store.put(token, VERSION);
          return true;
        })().catch((e) => {
          try {
            tx.abort();
          } catch {} // already finished
          throw e;
        });
        committed = (await result) && ok;
        follow(await m, await before.catch(() => NaN), committed, writes, token);
        return committed;
      } finally {
        await hooks.committed?.(writes, committed, extra);
      }
    },
  };
  return d;
}
