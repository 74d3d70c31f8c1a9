// Cache Storage (issue #11): a service worker's cached responses managed as
// kvsweep entries. The responses stay where the service worker (or Workbox)
// put them, in Cache Storage; kvsweep keeps one entry per request URL in
// IndexedDB — its size the response's, so `maxBytes` counts them — and when
// a run deletes an entry, its response goes too, right after the batch that
// deleted the entry commits (`cache.delete`, many at a time, while the next
// batch runs), unless the entry is back by then (its URL cached and tracked
// again: each entry is read again right before its response goes; a
// `cache.put` whose `track` has not yet written is the window left, as in
// Workbox, and its entry then stands for no response until the URL is
// cached again). The batch records those URLs in its own transaction, and the
// record goes when they are gone: a crash in between leaves it, and the
// store, before its first listing after it opens again, deletes the responses
// whose entries are still gone.
//
// `expirationPlugin(options)` is a Workbox plugin in place of
// `ExpirationPlugin`: the same options with the same meaning, plus kvsweep's.
import { kvStoreOfDriver } from "./kvsweep.js";
import { OWN_LOCKS, PUT_CHECKS, SETTLES, Sweeper, describe, storeOf, wellFormed } from "./api.js";
import { closesWith, done, finished, loaded, openRecords, readRange, recordsDriver, runLock } from "./idbkv.js";

/**
 * The Cache Storage driver: records in IndexedDB (see idbkv.js). The
 * responses of the entries a batch deleted go from the cache after it
 * commits, at most `concurrency` at a time, while the next batches run: a
 * batch of deletions waits only for those of the batches two before it, and
 * a run's own last writes (giving its lease back, its log) wait for all of
 * them, so a run returns when every response it deleted is gone. Each
 * batch records those URLs in its own transaction (`PENDING`), and the
 * first batch after they are gone deletes the record.
 */
function cacheDriver(db, name, matchOptions, concurrency) {
  let recovered = null; // finishPending, once, before the first listing
  // Records of batches whose responses are gone: the next batch deletes them.
  const emptied = [];
  // The cache as it is now, opened again for each burst of deletions (see
  // responseDeleter's cacheOf) and for finishPending: after an app's
  // caches.delete(name), a Cache object opened before deletes nothing (the
  // responses cached since would stay for good). A cache that
  // is gone holds no response to delete, and is not made again (null;
  // unless the app deletes it between has() and open(), which makes it
  // again, empty, as a Workbox strategy's next put would).
  const cacheNow = () => caches.has(name).then((there) => (there ? caches.open(name) : null));
  const responses = responseDeleter(db, cacheNow, matchOptions, concurrency, (pending) => emptied.push(pending));
  const d = recordsDriver(db, "cache-storage", 250, {
    extra(store, writes) {
      const cleared = emptied.splice(0);
      for (const name of cleared) store.delete(name);
      const gone = writes.filter(([n, b]) => b === null && n.startsWith("m/")).map(([n]) => n);
      const pending = gone.length ? `${PENDING}${Date.now()}-${Math.random().toString(36).slice(2)}` : null;
      if (pending) {
        store.put(gone, pending);
        responses.ahead();
      }
      return { cleared, gone, pending };
    },
    async committed(writes, ok, batch) {
      if (!ok) {
        emptied.push(...(batch?.cleared ?? []));
        if (batch?.pending) responses.forget();
      }
      // The responses of deleted entries, once the batch deleting them has committed.
      else if (batch.pending) return responses.delete(batch.gone, batch.pending);
      // A run's own records (its lease given back, its log: its last writes)
      // wait for every response to go, and then for their records to: a run
      // returns with the responses it deleted gone, none left to be finished
      // again after the store opens again. Other writes do not wait: a put
      // that made an entry again is written at once, and its response, read
      // again before it would go, stays.
      if (!writes.some(([name]) => name.startsWith("s/"))) return;
      await responses.delete([]);
      if (emptied.length) {
        const names = emptied.splice(0);
        try {
          const tx = db.transaction("records", "readwrite");
          for (const name of names) tx.objectStore("records").delete(name);
          await finished(tx);
        } catch {
          // Closed meanwhile: left for the next time the store opens.
        }
      }
    },
  });
  // Every response deletion queued so far, finished (see SETTLES).
  d.settle = () => responses.delete([]);
  const list = d.list;
  d.list = async (...args) => {
    recovered ??= finishPending(db, cacheNow, matchOptions).catch(() => {});
    await recovered;
    return list(...args);
  };
  return d;
}

/**
 * `cache.delete` of the responses of deleted entries (by entry record name),
 * at most `concurrency` at a time, one batch's after another's without
 * waiting for the slowest of each. Right before its `cache.delete`, each
 * name is read again (the names about to go, together, in one transaction):
 * an entry made again since its batch (the URL cached and tracked anew)
 * keeps its response. `delete(names, pending)` queues a batch and returns
 * once the batches two before it are done; with no names, once all are; it
 * never fails. When a batch's responses are gone (or back in use), `onGone`
 * hears its `pending` record's name. When a `cache.delete` or the reading
 * failed, the record stays, and the store tries again after it opens again.
 */
function responseDeleter(db, cacheNow, matchOptions, concurrency, onGone) {
  const noSearch = matchOptions.ignoreSearch === true;
  const queue = [];
  let head = 0;
  let active = 0;
  let batches = [];
  // Refilled by halves: with a queue longer than `concurrency`, not one
  // transaction of reads per cache.delete settled.
  const settled = (settle) => {
    let once = false;
    return (e) => {
      if (once) return;
      once = true;
      active--;
      settle(e);
      if (active <= concurrency >> 1) pump();
      if (active === 0) opened = known = undefined; // the next burst opens the cache again
    };
  };
  // The cache as this burst of deletions found it: opened once for the
  // rounds that follow one another (a run's batches), not for each, and
  // opened ahead of a burst by the commit of the batch it follows (`ahead`),
  // so that the burst waits for no opening; forgotten when no burst
  // follows (`forget`), so that a later one opens the cache again.
  let opened;
  let known; // what `opened` gave (a Cache, or null: none), once it has
  const cacheOf = () => {
    if (opened) return opened;
    const o = (opened = cacheNow().then(
      (cache) => {
        if (opened === o) known = cache;
        return cache;
      },
      (e) => {
        if (opened === o) opened = known = undefined;
        throw e;
      },
    ));
    return o;
  };
  const pump = () => {
    while (active < concurrency && head < queue.length) {
      const take = [];
      while (active + take.length < concurrency && head < queue.length) {
        take.push(queue[head]);
        queue[head++] = undefined;
      }
      if (head === queue.length) queue.length = head = 0;
      active += take.length;
      const finishes = take.map(([, settle]) => settled(settle));
      const stands = take.map(([name]) => standsFor(name, noSearch)); // a URL parsed each: once
      const fail = (e) => finishes.forEach((finish) => finish(e ?? new Error("the entries could not be read")));
      // The cache first, then the read, then the deletes in the read's own
      // continuation: nothing waits between the read and a cache.delete
      // (a response cached and tracked again there would go).
      const go = (cache) => {
        if (!cache) return finishes.forEach((finish) => finish(null)); // no cache: no response
        // Closed, it throws: each record stays for the next time the store opens.
        const store = db.transaction("records").objectStore("records");
        return presentNames(store, stands.flat()).then((there) =>
          take.forEach(([name], i) => {
            if (stands[i].some((n) => there.has(n))) return finishes[i](null); // made again: its response is live
            cache.delete(urlOf(name), matchOptions).then(() => finishes[i](null), finishes[i]);
          }),
        );
      };
      const opening = cacheOf();
      if (known === undefined) opening.then(go).catch(fail);
      else {
        // Opened already: the read's transaction now, before the batch
        // that follows makes its own, which the read would wait behind.
        try {
          go(known)?.catch(fail);
        } catch (e) {
          fail(e);
        }
      }
    }
  };
  const batch = (names, pending) =>
    Promise.all(names.map((name) => new Promise((settle) => queue.push([name, settle])))).then((errors) => {
      if (errors.every((e) => e === null)) onGone(pending);
    });
  return {
    /** Opens the cache ahead of a burst (while the batch it follows commits). */
    ahead() {
      cacheOf().catch(() => {});
    },
    /** Forgets a cache opened ahead of a burst that does not come. */
    forget() {
      if (active === 0) opened = known = undefined;
    },
    async delete(names, pending) {
      if (names.length) {
        const b = batch(names, pending);
        // In flight until settled, for every caller that waits for it.
        batches.push(b);
        b.then(() => (batches = batches.filter((x) => x !== b)));
        pump();
      }
      const keep = names.length ? 2 : 0;
      await Promise.all(batches.slice(0, Math.max(0, batches.length - keep)));
    },
  };
}

/**
 * Which of `names` are records in `store` now: the keys of their range at
 * once where they lie close together (as a batch's deleted entries do),
 * else one read each.
 */
function presentNames(store, names) {
  const sorted = [...new Set(names)].sort(); // UTF-16 order, as IndexedDB compares string keys
  if (sorted.length >= 8) {
    const most = 2 * sorted.length + 1;
    const range = IDBKeyRange.bound(sorted[0], sorted[sorted.length - 1]);
    const keys = done(store.getAllKeys(range, most));
    return keys.then((got) => (got.length < most ? new Set(got) : each()));
  }
  return each();
  function each() {
    return Promise.all(sorted.map((n) => done(store.get(n)))).then((got) => new Set(sorted.filter((_, i) => got[i] !== undefined)));
  }
}

/** Where the entries a committed batch deleted wait for their responses to go. */
const PENDING = "d/";
const urlOf = (name) => name.slice(name.indexOf("\0") + 1);

/**
 * The records that stand for `name`'s response: its own and, for an entry an
 * earlier version keyed by a relative or `#fragment` URL, the one `track`
 * keys the same response by now. Either present keeps the response.
 */
function standsFor(name, noSearch) {
  const url = urlOf(name);
  try {
    const now = entryUrl(url, noSearch);
    return now === url ? [name] : [name, name.slice(0, name.length - url.length) + now];
  } catch {
    return [name];
  }
}

/**
 * Finishes what a crash (or a failed `cache.delete`) left: the responses of
 * entries that batches deleted, unless an entry of the URL is back since.
 * It runs before the store's first listing (a run's or a plan's), not when
 * the store opens: a service worker's first `cacheDidUpdate` opens the store
 * between its `cache.put` and its `track`, and the response it just cached
 * must not go. A record whose deletions fail stays for the next time.
 */
async function finishPending(db, cacheNow, matchOptions) {
  const range = IDBKeyRange.bound(PENDING, PENDING.slice(0, -1) + "0", false, true);
  const store = () => db.transaction("records").objectStore("records");
  const [names, lists] = await readRange(store(), range);
  for (let i = 0; i < names.length; i++) {
    try {
      const entries = Array.isArray(lists[i]) ? lists[i].filter((n) => typeof n === "string") : [];
      // The cache first: nothing waits between the read and the deletes
      // (an entry made again there would lose its response).
      const cache = entries.length ? await cacheNow() : null;
      const s = store();
      const back = await Promise.all(entries.map((n) => Promise.all(standsFor(n, matchOptions.ignoreSearch === true).map((m) => done(s.get(m))))));
      const gone = entries.filter((_, j) => back[j].every((r) => r === undefined));
      if (cache) await Promise.all(gone.map((n) => cache.delete(urlOf(n), matchOptions)));
      const tx = db.transaction("records", "readwrite");
      tx.objectStore("records").delete(names[i]);
      await finished(tx);
    } catch {
      // Left for the next time the store opens.
    }
  }
}

/** The size of a response's body as its headers give it (Content-Length, not compressed), or undefined. */
function headerSize(response) {
  const header = response.headers.get("content-length")?.trim();
  const length = header && /^[0-9]+$/.test(header) ? Number(header) : NaN;
  return Number.isSafeInteger(length) && response.headers.get("content-encoding") === null ? length : undefined;
}

/** Per Cache Storage store: the response its cache holds for a URL. */
const CACHED = new WeakMap();

/**
 * The size of a response's body, without reading it when its headers say.
 * An opaque response (a no-cors fetch) shows neither: it counts 0 bytes
 * unless `track` is given its `size`.
 */
async function responseSize(response) {
  const length = headerSize(response);
  if (length !== undefined) return length;
  if (response.type === "opaque" || response.type === "opaqueredirect") return 0;
  if (response.bodyUsed) {
    throw new TypeError("kvsweep: track(sweeper, request, response): response's body is already read, and its headers give no content-length; pass a response before reading it, or its size in options.size");
  }
  return (await response.clone().arrayBuffer()).byteLength;
}

/**
 * A kvsweep store for the Cache Storage cache `name`: entries are its
 * responses by request URL, their metadata in the IndexedDB database
 * `kvsweep-cache:<name>`. Use it with a Sweeper and `track(sweeper, request,
 * response)` after each `cache.put`, or through `expirationPlugin`.
 * Options: `matchOptions` (for `cache.delete`; `ignoreVary` is true unless
 * they say otherwise, since an entry stands for every response cached under
 * its URL), `concurrency` (`cache.delete` calls at once, default 1024).
 */
export function openCacheStorage(name, options = {}) {
  return openCache(name, options);
}

/** `openCacheStorage`, telling `onClosed` when the database is deleted from elsewhere. */
async function openCache(name, options, onClosed) {
  if (typeof name !== "string" || name === "") {
    throw new TypeError(`kvsweep: openCacheStorage(name): name must be a non-empty string, got ${describe(name)}`);
  }
  if (!wellFormed(name)) throw new TypeError("kvsweep: openCacheStorage(name): name holds a lone surrogate (it must be well-formed UTF-16)");
  if (typeof caches === "undefined" || typeof indexedDB === "undefined") {
    throw new TypeError("kvsweep: openCacheStorage(name): Cache Storage and IndexedDB are not available here (pages, workers and service workers have them, in a secure context: https or localhost)");
  }
  await loaded();
  if (options === null || typeof options !== "object") {
    throw new TypeError(`kvsweep: openCacheStorage(name, options): options must be an object, got ${describe(options)}`);
  }
  for (const k of Object.keys(options)) {
    if (k !== "matchOptions" && k !== "concurrency") {
      throw new TypeError(`kvsweep: openCacheStorage(name, options): unknown option ${JSON.stringify(k)}; the options are matchOptions, concurrency`);
    }
  }
  const { matchOptions, concurrency = 1024 } = options;
  checkMatchOptions(matchOptions, "openCacheStorage(name, options)");
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw new TypeError(`kvsweep: openCacheStorage(name, options): options.concurrency must be a whole number, 1 or more, got ${describe(concurrency)}`);
  }
  const db = await openRecords(`kvsweep-cache:${name}`, onClosed);
  // An entry stands for every response cached under its URL: without
  // ignoreVary, a response cached with a Vary header would not match the
  // bare URL and would outlive its entry.
  const match = { ignoreVary: true, ...matchOptions };
  const driver = cacheDriver(db, name, match, concurrency);
  const store = kvStoreOfDriver(driver);
  SETTLES.set(store, driver.settle);
  if (match.ignoreSearch === true) SEARCHLESS.add(store);
  PUT_CHECKS.set(store, (key, options, name) => entryRefused(key, options, name, match.ignoreSearch === true));
  // track() without a response measures the one cached (a cache that is
  // gone is not made again).
  CACHED.set(store, async (url) => ((await caches.has(name)) ? (await caches.open(name)).match(url, match) : undefined));
  closesWith(store, db);
  OWN_LOCKS.set(store, runLock(db));
  return store;
}


/**
 * What a put on a Cache Storage store may not write (see api.js's
 * PUT_CHECKS): an entry in a namespace, which would share its URL's
 * response with the same URL's entry in another (a run deleting one would
 * take the other's), or under a key other than its URL as `track` keys it
 * (absolute, no fragment; no query where `ignoreSearch`): `/a` beside
 * `https://host/a` is a second entry for one response. A key that is no
 * http or https URL names no response Cache Storage can hold.
 */
function entryRefused(key, options, name, noSearch) {
  const namespace = options !== null && typeof options === "object" ? options.namespace : undefined;
  if (namespace !== undefined && namespace !== "") {
    return new TypeError(`kvsweep: ${name("namespace")} is ${describe(namespace)}, but a Cache Storage store has one namespace (one cached response per URL, one entry); use a group`);
  }
  if (typeof key !== "string") return undefined; // the module says what a key must be
  let url = null;
  try {
    url = new URL(key, globalThis.document?.baseURI ?? globalThis.location?.href);
  } catch {
    // Not a URL: refused below.
  }
  if (url?.protocol !== "http:" && url?.protocol !== "https:") {
    return new TypeError(`kvsweep: ${name("key")} is ${describe(key)}, not an http or https URL: a Cache Storage store's keys are the URLs of its cached responses`);
  }
  const canonical = entryUrl(url.href, noSearch);
  if (canonical !== key) {
    return new TypeError(`kvsweep: ${name("key")} is ${describe(key)}; this response's entry is keyed ${describe(canonical)} (the URL as Cache Storage matches it, as track keys it)`);
  }
  return undefined;
}

/**
 * Stores whose `matchOptions.ignoreSearch` makes one `cache.delete` take
 * every response of a URL whatever its query: their entries are keyed
 * without it, one entry for all of them.
 */
const SEARCHLESS = new WeakSet();

/**
 * The entry key of `request`: its URL as Cache Storage matches it, absolute
 * (resolved as `cache.put` resolves it) and without its fragment, so that
 * `/a`, `https://host/a` and `/a#top` are one entry, as they are one
 * cached response.
 */
function entryUrl(request, noSearch = false) {
  const url = typeof request === "string" ? request : request instanceof Request ? request.url : request instanceof URL ? request.href : undefined;
  if (typeof url !== "string" || url === "") {
    throw new TypeError(`kvsweep: track(sweeper, request, response): request must be a Request, a URL or a non-empty URL string, got ${describe(request)}`);
  }
  let parsed;
  try {
    parsed = new URL(url, globalThis.document?.baseURI ?? globalThis.location?.href);
  } catch {
    throw new TypeError(`kvsweep: track(sweeper, request, response): request ${JSON.stringify(url)} is not a URL here`);
  }
  parsed.hash = "";
  if (noSearch) parsed.search = "";
  return parsed.href;
}

/** Records (or refreshes) `request`'s cached response as an entry of `sweeper`'s Cache Storage store. */
export async function track(sweeper, request, response, options = {}) {
  if (!(sweeper instanceof Sweeper)) {
    throw new TypeError(`kvsweep: track(sweeper, request, response): sweeper must be a Sweeper, got ${describe(sweeper)}`);
  }
  // On another store it would write an entry that stands for no response.
  if (!PUT_CHECKS.has(storeOf(sweeper))) {
    throw new TypeError(`kvsweep: track(sweeper, request, response): sweeper must be a Sweeper of an openCacheStorage() store, not of ${/^[aeiou]/.test(storeOf(sweeper)?.kind ?? "") ? "an" : "a"} ${storeOf(sweeper)?.kind ?? "unknown"} store`);
  }
  const url = entryUrl(request, SEARCHLESS.has(storeOf(sweeper)));
  if (!url.startsWith("http:") && !url.startsWith("https:")) {
    throw new TypeError(`kvsweep: track(sweeper, request, response): request is ${describe(url)}, not an http or https URL: Cache Storage holds no response for it`);
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(`kvsweep: track(sweeper, request, response, options): options must be an object, got ${describe(options)}`);
  }
  // One cached response is one entry: in two namespaces, a run deleting
  // one would take the other's response.
  if (options.namespace !== undefined) {
    throw new TypeError("kvsweep: track(sweeper, request, response, options): options.namespace is not for Cache Storage entries (one response, one entry); use options.group");
  }
  if (response !== undefined && response !== null && !(response instanceof Response)) {
    throw new TypeError(`kvsweep: track(sweeper, request, response): response must be a Response (or null), got ${describe(response)}`);
  }
  if (options.size !== undefined && !(Number.isSafeInteger(options.size) && options.size >= 0)) {
    throw new TypeError(`kvsweep: track(sweeper, request, response, options): options.size must be a whole number of bytes, 0 or more, got ${describe(options.size)}`);
  }
  const cached = response ?? (options.size === undefined ? await CACHED.get(storeOf(sweeper))(url) : undefined);
  const size = options.size ?? (cached ? await responseSize(cached) : 0);
  try {
    await sweeper.put(url, null, { ...options, size });
  } catch (e) {
    // Its options are put's, and so are its refusals: named by the call made.
    if (typeof e?.message === "string" && e.message.startsWith("kvsweep: put")) e.message = `kvsweep: track${e.message.slice(12)}`;
    throw e;
  }
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

/** `matchOptions` as Cache Storage takes them (CacheQueryOptions), or undefined. */
function checkMatchOptions(m, call) {
  if (m === undefined) return;
  if (m === null || typeof m !== "object") throw new TypeError(`kvsweep: ${call}: options.matchOptions must be an object, got ${describe(m)}`);
  for (const [k, v] of Object.entries(m)) {
    if (k !== "ignoreSearch" && k !== "ignoreMethod" && k !== "ignoreVary") {
      throw new TypeError(`kvsweep: ${call}: options.matchOptions has an unknown option ${JSON.stringify(k)}; the options are ignoreSearch, ignoreMethod, ignoreVary`);
    }
    if (v !== undefined && typeof v !== "boolean") throw new TypeError(`kvsweep: ${call}: options.matchOptions.${k} must be true or false, got ${describe(v)}`);
  }
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
  whole(maxBytes, "maxBytes");
  // Seconds as ExpirationPlugin takes them: any number above 0 (0.5 is half
  // a second), up to what milliseconds can count.
  if (maxAgeSeconds !== undefined && !(typeof maxAgeSeconds === "number" && maxAgeSeconds > 0 && maxAgeSeconds * 1000 <= Number.MAX_SAFE_INTEGER)) {
    throw new TypeError(`kvsweep: expirationPlugin(options): options.maxAgeSeconds must be a number of seconds above 0, at most ${Number.MAX_SAFE_INTEGER / 1000}, got ${describe(maxAgeSeconds)}`);
  }
  checkMatchOptions(matchOptions, "expirationPlugin(options)");
  if (maxEntries === undefined && maxAgeSeconds === undefined && maxBytes === undefined) {
    throw new TypeError("kvsweep: expirationPlugin(options): set at least one of maxEntries, maxAgeSeconds and maxBytes");
  }
  if (pinned !== undefined && typeof pinned !== "function") throw new TypeError(`kvsweep: expirationPlugin(options): options.pinned must be a function (url) => boolean, got ${describe(pinned)}`);
  // Any truthy value, as ExpirationPlugin reads it.
  if (purgeOnQuotaError && typeof registerQuotaErrorCallback !== "function") {
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
  if (maxAgeSeconds !== undefined) policy.maxAgeMs = Math.max(1, Math.round(maxAgeSeconds * 1000));
  if (maxBytes !== undefined) policy.maxBytes = maxBytes;
  if (Object.keys(groupRules).length) policy.groups = groupRules;

  const sweepers = new Map();
  const sweeperFor = (cacheName) => {
    if (!sweepers.has(cacheName)) {
      // Deleted from elsewhere (deleteCacheStorage), the store is closed and
      // forgotten, and the next use opens it again.
      let opened = null;
      const forget = () => {
        if (sweepers.get(cacheName) === opening) sweepers.delete(cacheName);
        opened?.sweeper.close();
      };
      const opening = openCache(cacheName, { matchOptions, concurrency }, forget).then((store) => (opened = { store, sweeper: new Sweeper(store, { policy }) }));
      // A failed open is tried again on the next use, not kept.
      opening.catch(forget);
      sweepers.set(cacheName, opening);
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
  // The entry's options at a hook, with what it holds now (`known`, if it
  // can be read). Without a `pinned` option, a pin a page gave it with
  // track() stays (a hit unpinned a page's "keep offline" entry, and
  // maxEntries then expired it); with one, `pinned(url)` decides, so that
  // a pin it gave can be taken back. A group a page gave stays where the
  // plugin's `groups` give none.
  const hookOptions = async (sweeper, request) => {
    const options = entryOptions(request.url);
    const known = await sweeper.detail(entryUrl(request, SEARCHLESS.has(storeOf(sweeper)))).catch(() => undefined);
    if (!pinned && known?.pinned) options.pinned = true;
    if (options.group === undefined && known?.group !== undefined) options.group = known.group;
    return [options, known];
  };
  const isFresh = (response) => {
    if (maxAgeSeconds === undefined) return true;
    const date = response.headers.get("date");
    if (!date) return true;
    const at = new Date(date).getTime();
    if (Number.isNaN(at)) return true;
    return at >= Date.now() - maxAgeSeconds * 1000;
  };
  // What the plugin's hooks still do (tracking, expiring): deleteCacheAndMetadata
  // waits for it, or a hook finishing after the deletion would make the cache again.
  const busy = new Set();
  const inFlight = (work) => {
    busy.add(work);
    work.then(() => busy.delete(work), () => busy.delete(work));
    return work;
  };
  // A deleteCacheAndMetadata under way: hooks begun meanwhile belong to
  // later traffic, and wait for it to end, then open the store afresh
  // (they found it closed, or wrote into the database being deleted).
  let deleting = null;
  // Only the deletion under way when the hook began: a later one waits for
  // this hook (it began before that one), so waiting for it would hang both.
  const afterDeleting = async () => {
    await deleting?.catch(() => {});
  };
  // What Workbox gives a hook; called by hand without it, say so by name.
  const hookArgs = (hook, arg) => {
    if (typeof arg?.cacheName !== "string" || arg.cacheName === "" || !(arg.request instanceof Request)) {
      throw new TypeError(`kvsweep: expirationPlugin: ${hook}({ cacheName, request }): Workbox calls it with a cache name and a Request, got ${describe(arg?.cacheName)} and ${describe(arg?.request)}`);
    }
    return arg;
  };
  const plugin = {
    async cacheDidUpdate(arg) {
      const { cacheName, request, newResponse } = hookArgs("cacheDidUpdate", arg);
      return inFlight((async () => {
        await afterDeleting();
        const { sweeper } = await sweeperFor(cacheName);
        await track(sweeper, request, newResponse, (await hookOptions(sweeper, request))[0]);
        await expire(cacheName);
      })());
    },
    async cachedResponseWillBeUsed(arg) {
      const { cacheName, request, cachedResponse, event } = hookArgs("cachedResponseWillBeUsed", arg);
      if (!cachedResponse) return null;
      // A pinned URL is never expired, by age either: pinned by the
      // plugin, or (asked only of a stale response, and only where the
      // plugin leaves pins to pages) by a page's track().
      let fresh = entryOptions(request.url).pinned || isFresh(cachedResponse);
      if (!fresh && !pinned) {
        try {
          await afterDeleting();
          const { sweeper } = await sweeperFor(cacheName);
          fresh = (await sweeper.detail(entryUrl(request, SEARCHLESS.has(storeOf(sweeper)))))?.pinned === true;
        } catch {
          // Unknown: stale, as ExpirationPlugin would have it.
        }
      }
      if (fresh) {
        // As ExpirationPlugin: a use makes the entry the newest (for
        // maxEntries and maxAgeSeconds alike), and expiry runs after, both
        // kept alive by the event so that an idle worker does not drop them.
        const after = inFlight((async () => {
          await afterDeleting();
          const { sweeper } = await sweeperFor(cacheName);
          const [options, known] = await hookOptions(sweeper, request);
          // Unused for longer than maxAgeSeconds (its Date header, if any,
          // said fresh, or gave no date): served this once, as
          // ExpirationPlugin serves it, and deleted, not made new again
          // (deleted by name: a pin pinned(url) has taken back since is on
          // its record still, and a run would keep it).
          const idle = policy.maxAgeMs !== undefined && !options.pinned && known && Date.now() - known.updatedAt > policy.maxAgeMs;
          // Sized by its headers where they say; else as when it was
          // tracked: a response whose headers do not give it (compressed,
          // chunked) is not read again on every hit.
          if (idle) await sweeper.delete(entryUrl(request, SEARCHLESS.has(storeOf(sweeper))));
          else await track(sweeper, request, cachedResponse, known && headerSize(cachedResponse) === undefined ? { ...options, size: known.size } : options);
          await expire(cacheName);
        })().catch(() => {}));
        try {
          event?.waitUntil?.(after);
        } catch {
          // An event past its lifetime (InvalidStateError): the work goes on
          // without it, and the response is served all the same.
        }
      }
      return fresh ? cachedResponse : null;
    },
    /** Deletes every cache this plugin has seen, with its metadata. */
    async deleteCacheAndMetadata() {
      // Hooks begun before this call; later ones belong to later traffic.
      const before = [...busy];
      const previous = deleting;
      const work = (async () => {
        await previous?.catch(() => {});
        await Promise.allSettled(before);
        const names = [...sweepers.keys()];
        for (const name of names) {
          const opened = await sweepers.get(name)?.catch(() => null);
          if (opened) {
            await opened.sweeper.close(); // a run going stops first
            opened.store.close();
          }
          sweepers.delete(name);
          await deleteCacheStorage(name);
        }
      })();
      deleting = work;
      try {
        await work;
      } finally {
        if (deleting === work) deleting = null;
      }
    },
  };
  if (purgeOnQuotaError) registerQuotaErrorCallback(() => plugin.deleteCacheAndMetadata());
  return plugin;
}
