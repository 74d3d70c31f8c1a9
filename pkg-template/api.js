// The API as JavaScript sees it: wasm-bindgen's classes with the checks its
// glue cannot make readable. A Sweeper needs a KvStore; a freed object says
// it was freed (the glue's own words are "expected instance of KvStore" and
// "null pointer passed to rust").
import { KvStore, Sweeper as RawSweeper } from "./kvsweep.js";

/** Whether `s` is well-formed UTF-16: a lone surrogate, encoded as UTF-8 or read as a USVString, becomes U+FFFD, so two names would name one thing. */
export const wellFormed = (s) => s.isWellFormed?.() ?? !/[\uD800-\uDFFF]/.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ""));

/** A value as an error message shows it, the way JavaScript would write it; a string past 100 characters in part. */
export function describe(v) {
  if (v === null || v === undefined || typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "string") return v.length > 100 ? `${JSON.stringify(v.slice(0, 100))}…` : JSON.stringify(v); // as the module quotes keys
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "function") return "a function";
  if (Array.isArray(v)) return "an array";
  const name = v?.constructor?.name;
  return !name || name === "Object" ? "an object" : `${/^(?!Ui|U[A-Z])[AEIOU]/.test(name) ? "an" : "a"} ${name}`; // "a Uint8Array", "a URL"
}

/** Whether `obj` holds no object of the module: freed, or never one (a look-alike, or `undefined` when a method is called off its object). */
const freed = (obj) => typeof obj?.__wbg_ptr !== "number" || obj.__wbg_ptr === 0;
/** Why a KvStore that `freed` says is not live is not. */
const notLive = (store) =>
  typeof store?.__wbg_ptr === "number"
    ? "was freed (free() was called on it)"
    : "has KvStore's prototype but was not made by the module: make one with memoryStore(), openIndexedDb(), openOpfs(), openCacheStorage(), kvStore() or durableObjectStore()";

/** Why the call `what` cannot be made on `obj` (see `freed`). */
function gone(obj, what, kind = "Sweeper") {
  if (typeof obj?.__wbg_ptr === "number") return new Error(`kvsweep: ${what}: this ${kind} was freed (free() was called); make a new one`);
  if (obj === undefined || obj === null) return new Error(`kvsweep: ${what}: called without its ${kind}, on ${obj} (a method taken off its ${kind} needs .bind)`);
  return new Error(`kvsweep: ${what}: called on ${describe(obj)} the module did not make (not a live ${kind})`);
}

/**
 * free() for the glue's class `Class`: a second call does nothing, and a call
 * while one of the object's own methods runs (from a getter or a Proxy of its
 * argument) frees it once that method returns — what the glue does, while
 * throwing "attempted to take ownership of Rust value while it was borrowed".
 */
function safeFree(Class, flush) {
  const free = Class.prototype.free;
  const safe = function free_() {
    if (freed(this)) return;
    stopFlushWhenHidden(this);
    CLOSING_STORES.get(this)?.(); // a store's close() still waiting: now
    try {
      // A Sweeper's refreshes of accessedAt its reads deferred are written
      // after it goes (the write holds what it needs), as at close(); its
      // store's close() waits for them (free() gives nothing to await).
      if (flush) {
        const store = STORES.get(this);
        let written;
        const writing = new Promise((resolve) => (written = resolve));
        flush.call(this, written);
        if (store) flushing(store, writing);
      }
    } catch {
      // Best effort, as at close().
    }
    try {
      free.call(this);
    } catch {
      // Released by JS already; the module drops it when the call ends.
    }
  };
  for (const key of ["free", Symbol.dispose].filter((k) => k !== undefined)) {
    Object.defineProperty(Class.prototype, key, { configurable: true, writable: true, value: safe });
  }
}
safeFree(RawSweeper, RawSweeper.prototype.__flushReads);
safeFree(KvStore);

// Per store, the refreshes freed Sweepers are still writing: `sweeper.free();
// store.close()` closes the store once they are written, as IndexedDB's
// close() lets the transactions begun before it finish.
const FLUSHING = new WeakMap();
function flushing(store, writing) {
  let pending = FLUSHING.get(store);
  if (!pending) FLUSHING.set(store, (pending = new Set()));
  pending.add(writing);
  writing.then(() => pending.delete(writing));
}
// Per store, its close() waiting for those refreshes: the store's free()
// closes it at once (the refreshes not yet written are dropped).
const CLOSING_STORES = new WeakMap();
/** Calls `close` now, or once the refreshes freed Sweepers of `store` are writing are written. */
export function afterFlushes(store, close) {
  const pending = FLUSHING.get(store);
  if (!pending?.size) return close();
  let done = false;
  const now = () => {
    if (done) return;
    done = true;
    CLOSING_STORES.delete(store);
    FLUSHING.delete(store); // a close() it makes goes at once
    close();
  };
  CLOSING_STORES.set(store, now);
  Promise.all(pending).then(now);
}

// A freed KvStore says so, by name.
for (const name of ["capabilities", "close", "kind"]) {
  const d = Object.getOwnPropertyDescriptor(KvStore.prototype, name);
  const key = d.get ? "get" : "value";
  const raw = d[key];
  Object.defineProperty(KvStore.prototype, name, {
    ...d,
    [key]: {
      [name](...args) {
        if (freed(this)) throw gone(this, `KvStore.${name}`, "KvStore");
        if (name === "close") return afterFlushes(this, () => raw.apply(this, args));
        return raw.apply(this, args);
      },
    }[name],
  });
}

export class Sweeper extends RawSweeper {
  constructor(store, options) {
    if (!(store instanceof KvStore)) {
      throw new Error(`kvsweep: new Sweeper(store, options): store must be a KvStore from memoryStore(), openIndexedDb(), openOpfs(), openCacheStorage(), kvStore() or durableObjectStore(), got ${describe(store)}`);
    }
    if (freed(store)) throw new Error(`kvsweep: new Sweeper(store, options): store ${notLive(store)}`);
    // Every Sweeper on a store of one origin (OPFS, Cache Storage) takes the
    // store's own Web Lock, or two could run at once.
    const own = OWN_LOCKS.get(store);
    let lockName;
    try {
      if (own !== undefined) lockName = options?.schedule?.lockName;
    } catch (e) {
      // Refused here, not left for the module to read again: a getter that
      // threw once and then gave another lock would pass the check below.
      throw new Error(`kvsweep: new Sweeper(store, options): options.schedule.lockName threw ${e instanceof Error ? `${e.name}: ${e.message}` : describe(e)} when read (a getter or a Proxy)`);
    }
    if (own !== undefined && typeof lockName === "string" && lockName !== own) {
      throw new Error(`kvsweep: new Sweeper(store, options): options.schedule.lockName is not for ${/^[aeiou]/.test(store.kind) ? "an" : "a"} ${store.kind} store, whose runs take its own Web Lock ${JSON.stringify(own)}`);
    }
    super(store, options);
    STORES.set(this, store);
    flushWhenHidden(this);
  }
}

// Reads' refreshes of accessedAt wait for reads to pause; a page hidden
// (another tab, closed, navigated away) may not come back: write them then.
// The listener holds the Sweeper weakly, and goes with free() or close().
const HIDE_LISTENERS = new WeakMap();
function flushWhenHidden(sweeper) {
  const doc = globalThis.document;
  if (typeof doc?.addEventListener !== "function" || typeof WeakRef !== "function") return;
  const ref = new WeakRef(sweeper);
  const onHide = () => {
    const s = ref.deref();
    if (!s) return doc.removeEventListener("visibilitychange", onHide);
    if (doc.visibilityState === "hidden" && !freed(s)) RawSweeper.prototype.__flushReads.call(s);
  };
  doc.addEventListener("visibilitychange", onHide);
  HIDE_LISTENERS.set(sweeper, () => doc.removeEventListener("visibilitychange", onHide));
}
function stopFlushWhenHidden(sweeper) {
  HIDE_LISTENERS.get(sweeper)?.();
  HIDE_LISTENERS.delete(sweeper);
}

const STORES = new WeakMap();

/** Stores of one origin (OPFS, Cache Storage) → the Web Lock their runs take (see idbkv.js's runLock). */
export const OWN_LOCKS = new WeakMap();
/** The store a Sweeper of this package was made with. */
export const storeOf = (sweeper) => STORES.get(sweeper);

/**
 * Checks of what a store's put and putMany may write, beyond the module's:
 * `(key, options, name)` → an Error, or undefined; `name(field)` names the
 * argument ("key", "namespace") as the call has it. A Cache Storage store
 * holds one namespace, and keys that are URLs as Cache Storage keys them.
 */
export const PUT_CHECKS = new WeakMap();
/**
 * Stores whose deletions finish after their commit (Cache Storage's
 * responses) → a function whose promise settles once every deletion
 * committed so far has finished: delete, clear and the other calls that
 * delete outside a run resolve after it, as a run does.
 */
export const SETTLES = new WeakMap();

/**
 * Stores whose blob bytes live outside kvsweep's records, where other code
 * can change them (OPFS files, R2 objects): getBlob checks that the bytes
 * it read are the ones their id (their SHA-256) names.
 */
export const CHECKED_BLOBS = new WeakSet();

// A Blob is told by its brand (the built-in size getter accepts it), not by
// its constructor's name: a subclass's instance, or another realm's (an
// iframe's), is one, and an object that only calls itself Blob is not.
const BLOB_SIZE = typeof Blob === "function" ? Object.getOwnPropertyDescriptor(Blob.prototype, "size")?.get : undefined;
function blobArgument(v) {
  if (v === null || typeof v !== "object" || ArrayBuffer.isView(v)) return v;
  try {
    BLOB_SIZE.call(v);
  } catch {
    const name = (() => {
      try {
        return v.constructor?.name;
      } catch {}
    })();
    if (name === "Blob" || name === "File") {
      throw new Error(`kvsweep: putBlob: bytes must be a Uint8Array, an ArrayBuffer, a typed array or a Blob, got an object whose constructor is named ${name} but that is not one`);
    }
    return v;
  }
  // This realm's own Blob of the same bytes (not copied): read with the
  // built-in arrayBuffer(), whatever the object's own methods say.
  return new Blob([v]);
}

/**
 * `args` of putBlob (its bytes: see blobArgument), or of put or putMany on a
 * store with PUT_CHECKS, checked: a copy of the options (each item) read
 * once, so that what was checked is what the module writes (a getter could
 * answer otherwise the second time). Throws what a check refused, or what a
 * getter threw.
 */
function checkedPut(sweeper, method, args) {
  if (method === "putBlob") return [blobArgument(args[0]), ...args.slice(1)];
  const check = (method === "put" || method === "putMany") && PUT_CHECKS.get(STORES.get(sweeper));
  if (!check) return args;
  // Plain objects only: anything else goes as it is, for the module to refuse by name.
  const plain = (o) => o !== null && typeof o === "object" && [Object.prototype, null].includes(Object.getPrototypeOf(o));
  const copy = (o) => (plain(o) ? { ...o } : o);
  if (method === "put") {
    const options = copy(args[2]);
    const refused = check(args[0], options, (field) => `put(key, value, options): ${field === "key" ? "key" : `options.${field}`}`);
    if (refused) throw refused;
    return [args[0], args[1], options, ...args.slice(3)];
  }
  if (!Array.isArray(args[0])) return args;
  const items = args[0].map(copy);
  items.forEach((item, i) => {
    const refused = item !== null && typeof item === "object" ? check(item.key, item, (field) => `putMany(items): items[${i}].${field}`) : undefined;
    if (refused) throw refused;
  });
  return [items, ...args.slice(1)];
}

// The module says only that the Sweeper is closed: the package names the call.
const CLOSED = "kvsweep: this Sweeper is closed";
const closedError = (name) => new Error(`kvsweep: ${name}: this Sweeper is closed (close() was called)`);
// Sweepers whose close() waits for their gets under way before it closes the
// module's, with what it returned: meanwhile no call begins.
const CLOSING = new WeakMap();
function nameClosed(error, name) {
  if (error?.message === "null pointer passed to rust") {
    // The glue's words for a Sweeper freed while the call read its arguments.
    return new Error(`kvsweep: ${name}: this Sweeper was freed (free() was called) while the call went`);
  }
  return error?.message === CLOSED ? closedError(name) : error;
}
// `owner`, the Sweeper, is held by the promise's reactions until it
// settles: one that nothing else holds (`event.waitUntil(new
// Sweeper(store).run())`) is not collected, which closes it, mid-call.
const namingClosed = (promise, name, owner) =>
  promise.then(
    (value) => (held(owner), value),
    (error) => {
      held(owner);
      throw nameClosed(error, name);
    },
  );
const held = () => {};

// Every method but free(): a call on a freed Sweeper says so, the way the
// method fails (a rejected promise where it returns one).
const SYNC = new Set(["progress", "request", "stats"]);
// The module's internal entry points, kept here and taken off the public
// prototype: called with other arguments than this file passes, they would
// not fail the way a method does.
const INTERNAL = {};
for (const name of ["maintain", "readStart", "readEnd", "keysPage"]) {
  INTERNAL[name] = RawSweeper.prototype[name];
  delete RawSweeper.prototype[name];
}
for (const name of Object.getOwnPropertyNames(RawSweeper.prototype)) {
  const method = RawSweeper.prototype[name];
  if (name === "constructor" || name === "free" || name.startsWith("__") || typeof method !== "function") continue;
  Object.defineProperty(Sweeper.prototype, name, {
    configurable: true,
    writable: true,
    value: {
      [name](...args) {
        // A freed Sweeper is closed already: close() has nothing to wait for
        // (called off a Sweeper, it fails as every method does).
        if (name === "close" && freed(this) && typeof this?.__wbg_ptr === "number") return Promise.resolve();
        // stats() and progress() answer while close() waits, as before and after.
        if (CLOSING.has(this) && name !== "stats" && name !== "progress") {
          const error = closedError(name);
          if (SYNC.has(name)) throw error;
          return Promise.reject(error);
        }
        if (freed(this)) {
          const error = gone(this, `Sweeper.${name}`);
          if (SYNC.has(name)) throw error;
          return Promise.reject(error);
        }
        try {
          if (name === "close") stopFlushWhenHidden(this);
          const out = method.apply(this, checkedPut(this, name, args));
          return typeof out?.then === "function" ? namingClosed(out, name, this) : out;
        } catch (error) {
          // A method that returns a promise fails the way it says: by rejecting.
          if (SYNC.has(name)) throw nameClosed(error, name);
          return Promise.reject(nameClosed(error, name));
        }
      },
    }[name],
  });
}

// get(key, options) on IndexedDB: one plain request for the entry's record,
// judged by the module in one synchronous call (readStart checks the
// arguments, readEnd decodes and counts the read for LRU), without an async
// method's promise, future and closures.
// readStart calls back from the module's task queue, where its methods begin
// their transactions, so the read keeps its place among the calls before and
// after it. Any other store, a value kept in a record of its own, or a
// request that fails (a closed database, say) goes the module's way, which
// says what went wrong.
const rawGet = RawSweeper.prototype.get;
const { readStart, readEnd } = INTERNAL;
const ONLY_SLOW = Symbol("kvsweep.getSlow");
// Gets under way, per Sweeper: close() writes the refreshes of accessedAt
// they defer once they end (a read cut off by close() is still a use).
const READING = new WeakMap();
function began(sweeper) {
  let r = READING.get(sweeper);
  if (!r) READING.set(sweeper, (r = { n: 0, idle: [] }));
  r.n++;
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    if (--r.n === 0) for (const idle of r.idle.splice(0)) idle();
  };
}
function tracked(sweeper, promise) {
  const done = began(sweeper);
  promise.then(done, done);
  return promise;
}
Object.defineProperty(Sweeper.prototype, "get", {
  configurable: true,
  writable: true,
  value: function get(key, options) {
    const dead = () => gone(this, "Sweeper.get");
    if (freed(this)) return Promise.reject(dead());
    if (CLOSING.has(this)) return Promise.reject(closedError("get"));
    if (this[ONLY_SLOW]) return tracked(this, namingClosed(rawGet.call(this, key, options), "get", this));
    const slow = () => (freed(this) ? Promise.reject(dead()) : tracked(this, namingClosed(rawGet.call(this, key, options), "get", this)));
    let resolve, reject;
    const done = began(this);
    const result = new Promise((ok, fail) => {
      resolve = (value) => (ok(value), done());
      reject = (error) => (fail(error), done());
    });
    const read = (db, recordKey, includeExpired) => {
      let request;
      try {
        request = db.transaction("meta", "readonly").objectStore("meta").get(recordKey);
      } catch {
        return resolve(slow()); // a closed database, say: get says what went wrong
      }
      request.onsuccess = () => {
        if (freed(this)) return reject(dead());
        try {
          const found = readEnd.call(this, recordKey, includeExpired, request.result);
          resolve(found === null ? slow() : found?.[0]);
        } catch (error) {
          reject(error);
        }
      };
      request.onerror = (event) => {
        event.preventDefault();
        resolve(slow());
      };
    };
    try {
      if (!readStart.call(this, key, options, read)) {
        this[ONLY_SLOW] = true;
        done();
        return tracked(this, namingClosed(rawGet.call(this, key, options), "get", this));
      }
    } catch (error) {
      done();
      return Promise.reject(nameClosed(error, "get"));
    }
    return result;
  },
});

// close() resolves once the gets under way have ended and their refreshes
// are written too (the module's close() writes those deferred so far).
const closeNow = Sweeper.prototype.close;
Object.defineProperty(Sweeper.prototype, "close", {
  configurable: true,
  writable: true,
  value: function close() {
    const r = READING.get(this);
    if (CLOSING.has(this)) return CLOSING.get(this);
    if (!r?.n || freed(this)) return closeNow.call(this);
    // Gets under way end first (one may yet need the module, to read a value
    // kept in a record of its own); meanwhile no call begins, the timer is
    // cancelled and a run going stops after its batch.
    RawSweeper.prototype.__halt.call(this);
    const closing = new Promise((idle) => r.idle.push(idle)).then(() => {
      CLOSING.delete(this);
      return closeNow.call(this);
    });
    CLOSING.set(this, closing);
    return closing;
  },
});

// keys() and entries(): async iterators over the pages the module's keysPage
// (internal) reads, like idb-keyval's keys() and entries() but lazy. `limit`
// caps how many come.
async function* pages(sweeper, values, options = {}) {
  const what = `Sweeper.${values ? "entries" : "keys"}`;
  if (freed(sweeper)) throw gone(sweeper, what);
  if (CLOSING.has(sweeper)) throw closedError(values ? "entries" : "keys");
  // Spread below, a Date or a class instance would pass as {}: refused as keysPage refuses it.
  const proto = options === null || typeof options !== "object" ? undefined : Object.getPrototypeOf(options);
  if (options !== undefined && options !== null && proto !== Object.prototype && proto !== null) {
    throw new TypeError(`kvsweep: ${what}(options): options must be a plain object, got ${describe(options)}`);
  }
  const { limit } = options ?? {};
  // A limit that is not a whole number above 0 goes as it is, to be refused by name.
  const valid = limit === undefined || (Number.isSafeInteger(limit) && limit > 0);
  let left = valid ? limit ?? Infinity : 1;
  let after = options?.after;
  while (left > 0) {
    if (freed(sweeper)) throw gone(sweeper, what);
    const page = await namingClosed(
      INTERNAL.keysPage.call(sweeper, values, { ...options, after, limit: valid ? Math.min(left, 1000) : limit }),
      values ? "entries" : "keys",
      sweeper,
    );
    for (const item of page.items) {
      if (values && item.length === 1) {
        // A value kept in a record of its own: read as detail reads it, which
        // is no use (get's read would move accessedAt, and so change what
        // maxEntries and maxBytes evict after an export loop).
        const found = await sweeper.detail(item[0], { namespace: options?.namespace }).catch((e) => {
          // A namespace emptied and unregistered meanwhile: the entry is gone.
          if (typeof e?.message === "string" && e.message.startsWith("kvsweep: detail: no namespace ")) return undefined;
          throw typeof e?.message === "string" && e.message.startsWith("kvsweep: detail: ") ? new Error(`kvsweep: entries: ${e.message.slice(17)}`) : e;
        });
        if (found === undefined) continue; // deleted or expired meanwhile
        yield [item[0], found.value];
      } else {
        yield item;
      }
      left -= 1;
    }
    if (page.next === undefined) return;
    after = page.next;
  }
}

Object.defineProperty(Sweeper.prototype, "keys", {
  configurable: true,
  writable: true,
  value: function keys(options) {
    return pages(this, false, options);
  },
});
Object.defineProperty(Sweeper.prototype, "entries", {
  configurable: true,
  writable: true,
  value: function entries(options) {
    return pages(this, true, options);
  },
});

// The maintenance operations (SPEC §5): the module has one entry point for
// all of them (maintain), so their promise glue is compiled once; each is a
// method here.
for (const name of ["history", "detail", "resolvePrefix", "prune", "verify", "zombies", "deleteNamespace", "health", "migrate"]) {
  Object.defineProperty(Sweeper.prototype, name, {
    configurable: true,
    writable: true,
    value: {
      [name](a, b) {
        if (freed(this)) return Promise.reject(gone(this, `Sweeper.${name}`));
        if (CLOSING.has(this)) return Promise.reject(closedError(name));
        try {
          return namingClosed(INTERNAL.maintain.call(this, name, a, b), name, this);
        } catch (error) {
          return Promise.reject(nameClosed(error, name));
        }
      },
    }[name],
  });
}

// moveTo(target): the glue's own check of its argument says "expected
// instance of KvStore"; say which call and what it got.
const rawMoveTo = Sweeper.prototype.moveTo;
Object.defineProperty(Sweeper.prototype, "moveTo", {
  configurable: true,
  writable: true,
  value: function moveTo(target) {
    try {
      // (A revoked Proxy throws here: the promise rejects with it.)
      if (!(target instanceof KvStore)) {
        return Promise.reject(new Error(`kvsweep: Sweeper.moveTo(target): target must be a KvStore from memoryStore(), openIndexedDb(), openOpfs(), kvStore() or durableObjectStore(), got ${describe(target)}`));
      }
      if (freed(target)) return Promise.reject(new Error(`kvsweep: Sweeper.moveTo(target): target ${notLive(target)}`));
      return rawMoveTo.call(this, target);
    } catch (error) {
      return Promise.reject(error);
    }
  },
});

// getBlob on a store of CHECKED_BLOBS: bytes changed outside kvsweep (a
// file cut short, appended to or overwritten) are refused, not returned.
const rawGetBlob = Sweeper.prototype.getBlob;
Object.defineProperty(Sweeper.prototype, "getBlob", {
  configurable: true,
  writable: true,
  value: async function getBlob(id) {
    const bytes = await rawGetBlob.call(this, id);
    if (!(bytes instanceof Uint8Array) || !CHECKED_BLOBS.has(STORES.get(this))) return bytes;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    if (hex !== id) {
      throw new Error(
        `kvsweep: getBlob: the ${bytes.length} bytes read for blob ${id} are not the ones its id names (their SHA-256 is ${hex}): they were changed outside kvsweep; verify({ repair: true }) removes them, and putBlob of the right bytes then writes them again`,
      );
    }
    return bytes;
  },
});

// Deletions outside a run resolve once the store has finished them (Cache
// Storage deletes a deleted entry's response after the commit): a URL
// cached and tracked right after keeps its new response.
for (const name of ["delete", "clear", "deleteNamespace", "prune", "moveTo"]) {
  const method = Sweeper.prototype[name];
  Object.defineProperty(Sweeper.prototype, name, {
    configurable: true,
    writable: true,
    value: {
      [name](...args) {
        // moveTo deletes in its target too (what it copied and then saw go).
        const stores = [STORES.get(this), name === "moveTo" ? args[0] : undefined];
        const settles = stores.map((store) => store && SETTLES.get(store)).filter(Boolean);
        const settle = settles.length ? () => Promise.all(settles.map((f) => f())) : undefined;
        const out = method.apply(this, args);
        if (!settle) return out;
        // Failed part way, it may have deleted some: settled all the same.
        return out.then(
          async (value) => (await settle(), value),
          async (error) => {
            await settle();
            throw error;
          },
        );
      },
    }[name],
  });
}
