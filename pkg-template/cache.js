// Cache Storage (issue #11): a service worker's cached responses managed as
// kvsweep entries. The responses stay where the service worker (or Workbox)
// put them, in Cache Storage; kvsweep keeps one entry per request URL in
// IndexedDB — its size the response's, so `maxBytes` counts them — and when
// a run deletes an entry, its response goes too, right after the batch that
// deleted the entry commits (`cache.delete`, a few at a time). A crash in
// between leaves a response without an entry, which `track()` adopts again.
//
// `expirationPlugin(options)` is a Workbox plugin in place of
// `ExpirationPlugin`: the same options with the same meaning, plus kvsweep's.
import { kvStoreOfDriver } from "./kvsweep.js";
import { Sweeper, describe } from "./api.js";

const done = (req) =>
  new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });

const finished = (tx) =>
  new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(true);
    // A failed request aborts the transaction: nothing of the batch is written.
    tx.onabort = () => (tx.error ? reject(tx.error) : resolve(false));
  });

function equal(a, b) {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const bytesOf = (v) => (v instanceof Uint8Array ? v : v instanceof ArrayBuffer ? new Uint8Array(v) : undefined);

/** The metadata database: one object store of kvsweep records, keyed by name. */
async function openMeta(dbName) {
  const req = indexedDB.open(dbName, 1);
  req.onupgradeneeded = () => req.result.createObjectStore("records");
  const db = await done(req);
  db.onversionchange = () => db.close();
  return db;
}

/**
 * A driver (see src/store/jskv.rs) over one IndexedDB object store, in
 * transactions: batches are atomic and their checks hold. `onDeleted(keys)`
 * hears the entry keys each committed batch deleted.
 */
function cacheDriver(db, cache, matchOptions, concurrency) {
  const spend = (n = 1) => {
    d.ops += n;
  };
  const d = {
    kind: "cache-storage",
    prefix: "",
    caps: { atomic: true, compareAndSet: true, visibilityMs: 0, nativeExpiry: false, batchSize: 1000 },
    ops: 0,
    async get(names) {
      spend();
      const store = db.transaction("records").objectStore("records");
      const got = await Promise.all(names.map((n) => done(store.get(n))));
      return got.map((v) => {
        const bytes = v === undefined ? null : bytesOf(v) ?? false;
        return [bytes, bytes || null];
      });
    },
    async list(prefix, startAfter, _cursor, limit, maxCalls = Infinity) {
      if (maxCalls < 1) {
        const e = new Error("the run's backend calls (maxOps) are used up");
        e.name = "KvsweepOutOfCalls";
        throw e;
      }
      spend();
      const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
      const range = IDBKeyRange.bound(startAfter ?? prefix, end, startAfter !== undefined, true);
      const store = db.transaction("records").objectStore("records");
      const [keys, values] = await Promise.all([done(store.getAllKeys(range, limit)), done(store.getAll(range, limit))]);
      return { items: keys.map((k, i) => [k, bytesOf(values[i]) ?? false]), done: keys.length < limit };
    },
    async apply(checks, writes) {
      spend();
      const tx = db.transaction("records", "readwrite");
      const store = tx.objectStore("records");
      const result = finished(tx);
      const ok = await new Promise((resolve) => {
        tx.addEventListener("abort", () => resolve(false));
        // Every check first, in this transaction; the writes only when all hold.
        let left = checks.length;
        let good = true;
        const write = () => {
          for (const [name, bytes] of writes) {
            if (bytes === null) store.delete(name);
            else store.put(bytes, name);
          }
          resolve(true);
        };
        if (left === 0) return write();
        for (const [name, token] of checks) {
          const req = store.get(name);
          req.onsuccess = () => {
            if (!equal(bytesOf(req.result) ?? null, token)) good = false;
            if (--left === 0) {
              if (good) write();
              else {
                tx.abort();
                resolve(false);
              }
            }
          };
        }
      });
      const committed = await result;
      if (!ok || !committed) return false;
      // The responses of deleted entries, once the batch deleting them has
      // committed, many at a time.
      const urls = writes.filter(([n, b]) => b === null && n.startsWith("m/")).map(([n]) => n.slice(n.indexOf("\0") + 1));
      for (let i = 0; i < urls.length; i += concurrency) {
        await Promise.all(urls.slice(i, i + concurrency).map((u) => cache.delete(u, matchOptions)));
      }
      return true;
    },
  };
  return d;
}

/** The size of a response's body, without reading it when its headers say. */
async function responseSize(response) {
  const header = response.headers.get("content-length");
  const length = header === null ? NaN : Number(header);
  if (Number.isSafeInteger(length) && length >= 0 && response.headers.get("content-encoding") === null) return length;
  return (await response.clone().arrayBuffer()).byteLength;
}

/**
 * A kvsweep store for the Cache Storage cache `name`: entries are its
 * responses by request URL, their metadata in the IndexedDB database
 * `kvsweep-cache:<name>`. Use it with a Sweeper and `track(sweeper, request,
 * response)` after each `cache.put`, or through `expirationPlugin`.
 * Options: `matchOptions` (for `cache.delete`), `concurrency` (default 256).
 */
export async function openCacheStorage(name, options = {}) {
  if (typeof name !== "string" || name === "") {
    throw new TypeError(`kvsweep: openCacheStorage(name): name must be a non-empty string, got ${describe(name)}`);
  }
  if (typeof caches === "undefined" || typeof indexedDB === "undefined") {
    throw new TypeError("kvsweep: openCacheStorage(name): Cache Storage and IndexedDB are not available here (a page, a worker or a service worker has them)");
  }
  await loader();
  if (options === null || typeof options !== "object") {
    throw new TypeError(`kvsweep: openCacheStorage(name, options): options must be an object, got ${describe(options)}`);
  }
  for (const k of Object.keys(options)) {
    if (k !== "matchOptions" && k !== "concurrency") {
      throw new TypeError(`kvsweep: openCacheStorage(name, options): unknown option ${JSON.stringify(k)}; the options are matchOptions, concurrency`);
    }
  }
  const { matchOptions, concurrency = 256 } = options;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw new TypeError(`kvsweep: openCacheStorage(name, options): options.concurrency must be a whole number, 1 or more, got ${describe(concurrency)}`);
  }
  const [db, cache] = await Promise.all([openMeta(`kvsweep-cache:${name}`), caches.open(name)]);
  const store = kvStoreOfDriver(cacheDriver(db, cache, matchOptions, concurrency));
  meta.set(store, { db, cache, name });
  return store;
}

const meta = new WeakMap();

// What loads the WebAssembly first, where importing did not (kvsweep/sw).
let loader = async () => {};
export function setLoader(load) {
  loader = load;
}

/** Records (or refreshes) `request`'s cached response as an entry of `sweeper`'s Cache Storage store. */
export async function track(sweeper, request, response, options = {}) {
  const url = typeof request === "string" ? request : request?.url;
  if (typeof url !== "string") throw new TypeError(`kvsweep: track(sweeper, request, response): request must be a Request or a URL string, got ${describe(request)}`);
  const size = response ? await responseSize(response) : 0;
  await sweeper.put(url, null, { ...options, size });
}

/**
 * Deletes the cache `name` and its kvsweep metadata database: nothing of
 * either is left behind.
 */
export async function deleteCacheStorage(name) {
  if (typeof name !== "string" || name === "") {
    throw new TypeError(`kvsweep: deleteCacheStorage(name): name must be a non-empty string, got ${describe(name)}`);
  }
  await caches.delete(name);
  await new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(`kvsweep-cache:${name}`);
    req.onsuccess = () => resolve();
    req.onerror = () => reject(req.error);
    req.onblocked = () => resolve(); // deleted once the last connection closes
  });
}

const KNOWN = new Set(["maxEntries", "maxAgeSeconds", "purgeOnQuotaError", "matchOptions", "maxBytes", "pinned", "groups", "registerQuotaErrorCallback", "concurrency"]);

/**
 * A Workbox plugin in place of `new ExpirationPlugin(options)`, with its
 * options — `maxEntries`, `maxAgeSeconds`, `purgeOnQuotaError` (pass
 * `registerQuotaErrorCallback` from workbox-core with it: kvsweep does not
 * depend on Workbox), `matchOptions` — and kvsweep's: `maxBytes` (response
 * bytes), `pinned(url)` (true: never expired), `groups` ({ name: { match:
 * (url) => boolean, keepLast } }). Freshness on use is judged by the
 * response's `Date` header, as ExpirationPlugin judges it.
 */
export function expirationPlugin(options = {}) {
  if (options === null || typeof options !== "object") throw new TypeError(`kvsweep: expirationPlugin(options): options must be an object, got ${describe(options)}`);
  for (const k of Object.keys(options)) {
    if (!KNOWN.has(k)) throw new TypeError(`kvsweep: expirationPlugin(options): unknown option ${JSON.stringify(k)}; the options are ${[...KNOWN].join(", ")}`);
  }
  const { maxEntries, maxAgeSeconds, purgeOnQuotaError = false, matchOptions, maxBytes, pinned, groups = {}, registerQuotaErrorCallback, concurrency } = options;
  const whole = (v, n) => {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new TypeError(`kvsweep: expirationPlugin(options): options.${n} must be a whole number, 1 or more, got ${describe(v)}`);
  };
  whole(maxEntries, "maxEntries");
  whole(maxAgeSeconds, "maxAgeSeconds");
  whole(maxBytes, "maxBytes");
  if (maxEntries === undefined && maxAgeSeconds === undefined && maxBytes === undefined) {
    throw new TypeError("kvsweep: expirationPlugin(options): set at least one of maxEntries, maxAgeSeconds and maxBytes");
  }
  if (pinned !== undefined && typeof pinned !== "function") throw new TypeError(`kvsweep: expirationPlugin(options): options.pinned must be a function (url) => boolean, got ${describe(pinned)}`);
  if (purgeOnQuotaError === true && typeof registerQuotaErrorCallback !== "function") {
    throw new TypeError("kvsweep: expirationPlugin(options): purgeOnQuotaError needs options.registerQuotaErrorCallback, from workbox-core (kvsweep does not depend on Workbox)");
  }
  if (groups === null || typeof groups !== "object") throw new TypeError(`kvsweep: expirationPlugin(options): options.groups must be an object, got ${describe(groups)}`);
  const groupRules = {};
  for (const [g, rule] of Object.entries(groups)) {
    if (typeof rule?.match !== "function") throw new TypeError(`kvsweep: expirationPlugin(options): options.groups.${g}.match must be a function (url) => boolean, got ${describe(rule?.match)}`);
    if (!Number.isSafeInteger(rule.keepLast) || rule.keepLast < 0) {
      throw new TypeError(`kvsweep: expirationPlugin(options): options.groups.${g}.keepLast must be a whole number, 0 or more, got ${describe(rule.keepLast)}`);
    }
    groupRules[g] = { keepLast: rule.keepLast };
  }
  if (concurrency !== undefined && (!Number.isSafeInteger(concurrency) || concurrency < 1)) {
    throw new TypeError(`kvsweep: expirationPlugin(options): options.concurrency must be a whole number, 1 or more, got ${describe(concurrency)}`);
  }
  const policy = { orphanGraceMs: 0 };
  if (maxEntries !== undefined) policy.maxEntries = maxEntries;
  if (maxAgeSeconds !== undefined) policy.maxAgeMs = maxAgeSeconds * 1000;
  if (maxBytes !== undefined) policy.maxBytes = maxBytes;
  if (Object.keys(groupRules).length) policy.groups = groupRules;

  const sweepers = new Map();
  const sweeperFor = (cacheName) => {
    if (!sweepers.has(cacheName)) {
      sweepers.set(
        cacheName,
        openCacheStorage(cacheName, { matchOptions, concurrency }).then((store) => ({ store, sweeper: new Sweeper(store, { policy }) })),
      );
    }
    return sweepers.get(cacheName);
  };
  // One expiration at a time per cache; one asked for meanwhile runs after it.
  const expiring = new Map();
  const expire = (cacheName) => {
    const state = expiring.get(cacheName) ?? { running: null, again: false };
    expiring.set(cacheName, state);
    if (state.running) {
      state.again = true;
      return state.running;
    }
    state.running = (async () => {
      do {
        state.again = false;
        const { sweeper } = await sweeperFor(cacheName);
        await sweeper.run({ mode: "full" });
      } while (state.again);
    })().finally(() => (state.running = null));
    return state.running;
  };
  const entryOptions = (url) => {
    const group = Object.entries(groups).find(([, r]) => r.match(url))?.[0];
    return { pinned: pinned?.(url) === true, ...(group ? { group } : {}) };
  };
  const isFresh = (response) => {
    if (maxAgeSeconds === undefined) return true;
    const date = response.headers.get("date");
    if (!date) return true;
    const at = new Date(date).getTime();
    if (Number.isNaN(at)) return true;
    return at >= Date.now() - maxAgeSeconds * 1000;
  };
  const plugin = {
    async cacheDidUpdate({ cacheName, request, newResponse }) {
      const { sweeper } = await sweeperFor(cacheName);
      await track(sweeper, request, newResponse, entryOptions(request.url));
      await expire(cacheName);
    },
    async cachedResponseWillBeUsed({ cacheName, request, cachedResponse, event }) {
      if (!cachedResponse) return null;
      const fresh = isFresh(cachedResponse);
      if (fresh) {
        // As ExpirationPlugin: a use makes the entry the newest (for
        // maxEntries and maxAgeSeconds alike), and expiry runs after, both
        // kept alive by the event so that an idle worker does not drop them.
        const after = (async () => {
          const { sweeper } = await sweeperFor(cacheName);
          await track(sweeper, request, cachedResponse, entryOptions(request.url));
          await expire(cacheName);
        })().catch(() => {});
        event?.waitUntil?.(after);
      }
      return fresh ? cachedResponse : null;
    },
    /** Deletes every cache this plugin has seen, with its metadata. */
    async deleteCacheAndMetadata() {
      const names = [...sweepers.keys()];
      for (const name of names) {
        const { store, sweeper } = await sweepers.get(name);
        sweeper.close();
        meta.get(store)?.db.close();
        sweepers.delete(name);
        await deleteCacheStorage(name);
      }
    },
  };
  if (purgeOnQuotaError === true) registerQuotaErrorCallback(() => plugin.deleteCacheAndMetadata());
  return plugin;
}
