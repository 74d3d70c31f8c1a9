// kvStore(x) and durableObjectStore(storage): kvsweep's stores over the
// key–value objects JavaScript already has. Each backend becomes one small
// *driver* with the same members (see src/store/jskv.rs for the contract),
// which says honestly what the backend promises (SPEC §6).
//
// Layout: one backend key per kvsweep record, `<prefix><table>/<namespace>\0<key>`
// (tables: m entry metadata, v values, b blob bytes, c blob records, t temps,
// n namespaces, s run state and lease). Values are kvsweep's own bytes.
// - Workers KV: each key's value is the record; records up to 700 bytes are
//   also kept in the key's metadata, so a listing reads them without a get.
// - Deno KV: key `[name]`; values over 64 KiB are split into chunks at
//   `["kvsweep-chunk", name, i]`, the record holding `{ chunks, size }`.
// - Durable Objects: key `name`; values over 128 KiB split the same way at
//   `"kvsweep-chunk/" + name + "/" + i`.
// - Map, keyv, generic objects: key `name`; keyv and generic objects hold
//   base64 text (what any store keeps exactly).
// - unstorage: key `name` escaped, upper case too (see unstorageDriver),
//   and a marker `<prefix>kvsweep-names-format` outside the tables; on the
//   fs drivers, records rewritten in place framed, with a copy at `name~`.
//
// Every driver counts its backend calls (`ops`) and refuses the call that
// would pass `limit` (a run's `maxOps`) with an error named KvsweepOutOfCalls,
// before making it (all but a few calls once per driver: unstorage's format
// marker and listing to tell the format, the case probe before a first
// write). `list` returns every name it looked at, its value a
// Uint8Array, null (gone since listed) or anything else (not kvsweep's
// bytes: reported as corrupt), with `done` once the table has no more.
import { kvStoreOfDriver } from "./kvsweep.js";
import { CHECKED_BLOBS, Sweeper, describe, wellFormed } from "./api.js";

const PREFIX = "kvsweep/";

const fn = (x, ...names) => x != null && names.every((n) => typeof x[n] === "function");

/** Counts `n` backend calls. */
function spend(d, n = 1) {
  d.ops += n;
}

/**
 * A listing page may make at most `maxCalls` backend calls (what is left of a
 * run's `maxOps`): past it, it fails before calling, with an error named
 * KvsweepOutOfCalls, and the run stops there.
 */
function budget(maxCalls, n) {
  if (n > maxCalls) {
    const e = new Error(`a listing page needs ${n} backend calls and the run has ${maxCalls} left (maxOps)`);
    e.name = "KvsweepOutOfCalls";
    throw e;
  }
}

/** A driver's common members. */
const base = (kind, prefix, caps) => ({ kind, prefix, caps, ops: 0 });

/**
 * Bytes as a fresh Uint8Array, from what a backend handed back: `null` when
 * nothing is there, `undefined` when what is there is not bytes.
 */
function bytesOf(v, text = false) {
  if (v === undefined || v === null) return null;
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (v instanceof ArrayBuffer) return new Uint8Array(v.slice(0));
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  if (text && typeof v === "string") {
    try {
      return fromBase64(v);
    } catch {
      return undefined;
    }
  }
  // A Node Buffer serialised to JSON by a store.
  if (v && v.type === "Buffer" && Array.isArray(v.data)) return Uint8Array.from(v.data);
  return undefined;
}

/** A listed or read value as the Rust side takes it: bytes, null (absent) or `false` (not bytes). */
const listed = (bytes) => (bytes === undefined ? false : bytes);

/**
 * Whether a check whose token is `false` (a record read as not bytes, which
 * other code put there) holds: something is there, still not bytes. Any such
 * value will do: kvsweep reads none of them, and a put or delete replaces it.
 */
const notBytes = (bytes, raw) => bytes === undefined && raw !== undefined && raw !== null;

function equal(a, b) {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Compares names in UTF-8 byte order (code point order), the order Workers KV, Deno KV and Durable Objects list in. */
export function compareNames(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      const sx = x >= 0xd800 && x <= 0xdfff;
      const sy = y >= 0xd800 && y <= 0xdfff;
      if (sx !== sy) return sx ? 1 : -1;
      return x < y ? -1 : 1;
    }
  }
  return a.length - b.length;
}

/** The first name after every name that starts with `prefix`. */
function prefixEnd(prefix) {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

// One check-and-write at a time per backing object, within this realm.
const queues = new WeakMap();

/**
 * How long a turn may be held before the next one goes on without it: the
 * longest a write is taken to last (SPEC §6, `LONGEST_WRITE_MS` in the
 * crate). A turn can be held for good: in a Worker, a request that ends with
 * a write in flight (not awaited, not in waitUntil) runs no further, and its
 * turn would block every later write of the isolate. Counted from when the
 * turn ahead began (or from when this one queued, if later), so a queue
 * behind it goes on one at a time. (`ms` is settable for tests.)
 */
export const turnWait = { ms: 60_000 };

/** Waits for `target`'s turn; resolves to the function that ends it. */
function acquire(target) {
  let release;
  const done = new Promise((r) => (release = r));
  const before = queues.get(target);
  // Uncontended: no timer.
  const began =
    before === undefined
      ? Promise.resolve()
      : before.began.then(
          () =>
            new Promise((go) => {
              const timer = setTimeout(go, turnWait.ms);
              before.done.then(() => (clearTimeout(timer), go()));
            }),
        );
  const mine = { began, done };
  queues.set(target, mine);
  return began.then(() => () => {
    release();
    if (queues.get(target) === mine) queues.delete(target);
  });
}

async function serialised(target, task, held = false) {
  if (held) return task();
  const release = await acquire(target);
  try {
    return await task();
  } finally {
    release();
  }
}

/**
 * `each` of a batch's `writes` ([name, bytes or null, ...]) on a backend
 * without batches: one after another, in order, but for runs of writes (or
 * deletes) of values or of temps, each of another name, which go 16 at a
 * time: a batch cut short in one leaves any part of it (src/store/mod.rs,
 * Store::apply; the simulation cuts them so).
 */
async function inRuns(prefix, writes, each) {
  const loose = ([name, bytes]) => {
    const table = name.slice(prefix.length, prefix.length + 2);
    return (table === "t/" || table === "v/") && table + (bytes === null);
  };
  for (let i = 0; i < writes.length; ) {
    const kind = loose(writes[i]);
    const names = new Set([writes[i][0]]);
    let j = i + 1;
    while (kind && j < writes.length && loose(writes[j]) === kind && !names.has(writes[j][0])) names.add(writes[j++][0]);
    await inParallel(writes.slice(i, j), each);
    i = j;
  }
}

/**
 * `fn` of each of `items`, in order, at most 16 at a time: a listing page's
 * reads, one a record, need not wait for each other (on unstorage's fs
 * driver, one after another made a run's listing most of its time).
 */
async function inParallel(items, fn) {
  const out = new Array(items.length);
  let next = 0;
  let failed = null;
  const worker = async () => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        out[i] = await fn(items[i]);
      } catch (e) {
        failed ??= { e };
      }
    }
  };
  // A failure starts nothing more, and is thrown once every call under way
  // has settled: none lands after the caller has heard of it.
  await Promise.all(Array.from({ length: Math.min(16, items.length) }, worker));
  if (failed) throw failed.e;
  return out;
}

// Each backing object's sorted table names (see sortedDriver), shared by the
// drivers over it, so that one's writes are added to what another lists.
const namesOf = new WeakMap();
function tableNames(target) {
  let kept = namesOf.get(target);
  if (!kept) namesOf.set(target, (kept = new Map()));
  return kept;
}
// The listings of each backing object under way: the names written meanwhile.
const listings = new WeakMap();
function listingsOf(target) {
  let under = listings.get(target);
  if (!under) listings.set(target, (under = new Set()));
  return under;
}

/**
 * A driver over a backend that can list every name under a prefix (a Map,
 * unstorage, keyv, a generic object): sorted and paged here. `sync`: reads
 * and writes return at once (a Map), so a batch's checks and writes run with
 * no await between them and no other code can see half of it.
 */
function sortedDriver({ kind, target, caps, prefix, read, write, remove, names, versioned, text, sync }) {
  // unstorage's fs driver resolves with the Error of a failed read (EMFILE,
  // ENAMETOOLONG, EIO...) rather than rejecting: a failure, not a record
  // kvsweep did not write (which a run would keep as corrupt).
  const failed = (v, list = false) => {
    if (v instanceof Error) throw v;
    if (list && !Array.isArray(v)) throw new TypeError(`the ${kind} store listed ${describe(v)}, not an array of names`);
    return v;
  };
  // A table's names, sorted, kept from a listing's first page for its next
  // ones: listing every page afresh (the backends list everything, unsorted)
  // made a listing of n names cost n²/page. They are listed again for a
  // listing without a start (a run's inventory), and when older than ten
  // times what listing them cost (at least a second, at most ten: another
  // process's new names show that much, plus a listing's length, late: within
  // the minute the grace rule leaves for the longest write; and such stores
  // take one writing process anyway). Names this realm writes are added,
  // those written while the backend lists too (its snapshot may be older);
  // one removed is read as gone (null). A write that failed midway may or
  // may not have landed: the kept names go.
  const kept = tableNames(target);
  const listing = listingsOf(target);
  const usable = (tablePrefix, startAfter) => {
    const known = kept.get(tablePrefix);
    return startAfter !== undefined && known && performance.now() - known.at <= known.keep ? known.names : undefined;
  };
  const sortedNames = async (tablePrefix, startAfter) => {
    const known = usable(tablePrefix, startAfter);
    if (known) return known;
    const began = performance.now();
    spend(d);
    const meanwhile = new Set();
    listing.add(meanwhile);
    let all;
    try {
      all = failed(await names(tablePrefix), true).filter((n) => n.startsWith(tablePrefix));
    } finally {
      listing.delete(meanwhile);
    }
    const have = new Set(all);
    for (const n of meanwhile) if (n.startsWith(tablePrefix) && !have.has(n)) all.push(n);
    all.sort(compareNames);
    const now = performance.now();
    kept.set(tablePrefix, { names: all, at: now, keep: Math.min(10_000, Math.max(1000, 10 * (now - began))) });
    return all;
  };
  const wrote = (name) => {
    for (const meanwhile of listing) meanwhile.add(name);
    for (const [tablePrefix, { names: all, at, keep }] of kept) {
      if (!name.startsWith(tablePrefix)) continue;
      // Too old to be listed from again: let it go rather than keep it up.
      if (performance.now() - at > keep) {
        kept.delete(tablePrefix);
        continue;
      }
      let from = 0;
      for (let to = all.length; from < to; ) {
        const mid = (from + to) >>> 1;
        if (compareNames(all[mid], name) < 0) from = mid + 1;
        else to = mid;
      }
      if (all[from] !== name) all.splice(from, 0, name);
    }
  };
  const d = {
    ...base(kind, prefix, caps),
    async get(list) {
      spend(d, list.length);
      return inParallel(list, async (name) => {
        const raw = failed(await read(name));
        const bytes = bytesOf(raw, text);
        // A versioned backend (a Map) names the version by the object held.
        return [listed(bytes), versioned ? raw ?? null : bytes ?? null];
      });
    },
    async list(tablePrefix, startAfter, _cursor, want, maxCalls = Infinity) {
      // One call for the names (unless kept), and one read per record unless reads are free.
      const naming = usable(tablePrefix, startAfter) ? 0 : 1;
      const limit = sync ? want : Math.max(1, Math.min(want, maxCalls - naming));
      budget(maxCalls, sync ? naming : naming + 1);
      const all = await sortedNames(tablePrefix, startAfter);
      let from = 0;
      for (let to = all.length; from < to; ) {
        const mid = (from + to) >>> 1;
        if (startAfter !== undefined && compareNames(all[mid], startAfter) <= 0) from = mid + 1;
        else to = mid;
      }
      const page = all.slice(from, from + limit);
      if (!sync) spend(d, page.length);
      const items = await inParallel(page, async (name) => [name, listed(bytesOf(failed(await read(name)), text))]);
      return { items, done: all.length - from <= limit, last: page.at(-1) };
    },
    // A read-check-write of kvsweep's holds this turn from its first read to
    // its write (src/store/jskv.rs), so that writers of this realm never collide.
    lock: () => acquire(target),
    apply(checks, writes, held) {
      // Absent (a null token) means nothing there at all, readable or not.
      const same = (now, token) => (versioned || token === null ? (now ?? null) === token : equal(bytesOf(now, text) ?? null, token));
      if (sync) {
        spend(d, checks.length + writes.length);
        for (const [name, token] of checks) if (!same(read(name), token)) return Promise.resolve(false);
        for (const [name, bytes] of writes) {
          if (bytes === null) remove(name);
          else write(name, bytes), wrote(name);
        }
        return Promise.resolve(true);
      }
      return serialised(target, async () => {
        for (const [name, token] of checks) {
          spend(d);
          if (!same(failed(await read(name)), token)) return false;
        }
        try {
          await inRuns(prefix, writes, async ([name, bytes]) => {
            spend(d);
            if (bytes === null) await remove(name);
            else await write(name, bytes), wrote(name);
          });
        } catch (e) {
          kept.clear();
          throw e;
        }
        return true;
      }, held);
    },
  };
  return d;
}

function mapDriver(map, prefix) {
  return sortedDriver({
    kind: "map",
    target: map,
    prefix,
    // Only this realm reaches a Map, and a batch's checks and writes run with
    // no await between them: checks hold, and no one sees half a batch.
    caps: { atomic: true, compareAndSet: true, visibilityMs: 0, nativeExpiry: false },
    read: (n) => map.get(n),
    write: (n, b) => void map.set(n, b),
    remove: (n) => void map.delete(n),
    names: () => [...map.keys()].filter((k) => typeof k === "string"),
    versioned: true,
    sync: true,
  });
}

/** `task` run once, its promise kept for every later call, unless it fails: then the next call tries again. */
function once(task) {
  let kept;
  return () =>
    (kept ??= task().catch((e) => {
      kept = undefined;
      throw e;
    }));
}

/** A name under `prefix` but outside every table, for a probe of `what` (unique enough to meet no other). */
const probeName = (prefix, what) => `${prefix}${what}-probe-${Date.now().toString(36)}${Math.random().toString(16).slice(2, 10)}`;

/**
 * Whether a backend folds case (unstorage's fs driver on a case-insensitive
 * file system, MySQL under a case-insensitive collation), which would make
 * kvsweep's records "A" and "a" one: writes a name under `prefix` but outside
 * every table, ending "-A", and reads it as "-a". Made on the backend itself,
 * so that no driver counts it as one of its calls.
 */
async function foldsCase(prefix, put, get, del) {
  const name = `${probeName(prefix, "case")}-`;
  await put(name + "A");
  try {
    const seen = await get(name + "a");
    // unstorage's fs driver resolves with the Error of a failed read.
    if (seen instanceof Error) throw seen;
    return seen !== undefined && seen !== null;
  } finally {
    await del(name + "A");
  }
}

/** A check to await before each write to a store that keeps names as they are: refuses them all if it folds case. */
function caseChecked(prefix, put, get, del, refusal) {
  const folds = once(() => foldsCase(prefix, put, get, del));
  return async () => {
    if (await folds()) throw new Error(refusal);
  };
}

/** What an unstorage store's format marker holds, in the names of this release. */
const NAMES = "kvsweep names 2";

let crcTable;
/** CRC-32 (IEEE) of `bytes`. */
function crc32(bytes) {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
      crcTable[n] = c;
    }
  }
  let c = ~0;
  for (let i = 0; i < bytes.length; i++) c = (c >>> 8) ^ crcTable[(c ^ bytes[i]) & 0xff];
  return ~c >>> 0;
}

/** A record framed as `k`, its length, its bytes and their CRC-32: a write cut short (a torn file) does not pass as whole. */
function frame(bytes) {
  const out = new Uint8Array(bytes.length + 9);
  const view = new DataView(out.buffer);
  out[0] = 0x6b;
  view.setUint32(1, bytes.length, true);
  out.set(bytes, 5);
  view.setUint32(5 + bytes.length, crc32(bytes), true);
  return out;
}

/**
 * Whether `raw` is what a write of a frame cut short leaves: empty, or a
 * frame's start, shorter than its header says. The records framed (entry
 * metadata, blob records and temps, namespaces, run state) are small: a
 * header saying a MiB or more is other bytes ("keep this" begins as one).
 */
function cutFrame(raw) {
  const b = bytesOf(raw);
  if (!b || b.length === 0) return true;
  if (b[0] !== 0x6b) return false;
  if (b.length < 5) return true;
  const size = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(1, true);
  return size < 1 << 20 && size > b.length - 9;
}

/** The bytes `frame` framed, or undefined if `raw` is not a whole frame. */
function unframe(raw) {
  const b = bytesOf(raw);
  if (!b || b.length < 9 || b[0] !== 0x6b) return undefined;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const size = view.getUint32(1, true);
  if (size !== b.length - 9) return undefined;
  const inner = b.slice(5, 5 + size);
  return crc32(inner) === view.getUint32(5 + size, true) ? inner : undefined;
}

/**
 * unstorage: names are escaped, since unstorage rewrites ":", "/", "\\", "?"
 * and "#"; and in stores made by this release, every upper-case letter too
 * (all but a-z, 0-9, "_" and "-"), so that on a file system that folds case
 * no two names are one file. Such a store holds the marker
 * `<prefix>kvsweep-names-format`. Without one (lost, or never written), the
 * names tell: only an earlier release's keep upper case (and "!~*'()"), only
 * this release's escape them. An earlier release's store is read as it is,
 * and written only if the backend keeps case.
 *
 * unstorage's fs drivers write a file in place: a process killed in the
 * middle leaves it torn. Records that kvsweep rewrites in place (entry
 * metadata, refreshed by reads and counted by referrers; blob records and
 * a blob's temp, which a putBlob of the same bytes writes again; namespaces;
 * run state) are there, in this release's stores, framed with their length
 * and CRC-32 and written twice, a copy (`~` after the name) first: a record
 * torn by a crash reads as its copy, which is the write that was under way,
 * whole. Values, blob bytes and entries' temps are written once, under names
 * of their own, before the records that name them.
 */
function unstorageDriver(storage, prefix, visibilityMs) {
  // Earlier releases' names, kept for their stores.
  const legacyEsc = (n) => encodeURIComponent(n).replace(/\./g, "%2E");
  // Escapes write upper-case hex, and "%" itself is escaped: folding them cannot make two names one.
  const esc = (n) =>
    encodeURIComponent(n).replace(/%[0-9A-F]{2}|[^a-z0-9_-]/g, (c) => (c.length > 1 ? c : `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`));
  const unesc = (k) => {
    try {
      return decodeURIComponent(k);
    } catch {
      return undefined;
    }
  };
  // Named as no app key under the prefix is likely to be, and escaped as
  // new names are (so "App/" and "app/" keep two).
  const markerName = prefix + "kvsweep-names-format";
  const marker = esc(markerName);
  const markerBytes = new TextEncoder().encode(NAMES);
  // Whether an unstorage key is one of kvsweep's records (the marker is not).
  const record = (k) => {
    const n = unesc(k);
    return n !== undefined && n.startsWith(prefix) && /^[mvbctns]\/[^]*\0/.test(n.slice(prefix.length));
  };
  // Records rewritten in place: framed and kept twice in this release's
  // stores, on the drivers that write files in place (fs, fs-lite); other
  // backends replace a value whole. Either reads the other's.
  // Any fs mount: a prefixStorage (Nitro's useStorage("data")) answers
  // getMount for its root, not for where its keys go.
  const mounts = storage.getMounts?.("") ?? [storage.getMount?.(marker)];
  const tears = mounts.some((m) => /^fs/.test(m?.driver?.name ?? ""));
  // A blob's temp too: a putBlob of the same bytes writes it again in place.
  const twice = (n) => /^(?:[mcns]\/|t\/\0b:)/.test(n.slice(prefix.length));
  // unstorage resolves a write to a mount that drops it (readOnly set, or a
  // driver without setItem) with nothing written. Where one is mounted (any:
  // a prefixStorage answers getMount for its root, not for where its keys
  // go), a probe written and read back before the first write tells whether
  // ours does, where reads see a write at once (visibilityMs 0, as the store
  // is declared). Elsewhere a read right after a write may miss it: there
  // the mount getMount names for kvsweep's keys (theirs, but on a
  // prefixStorage its root's) is refused if it drops writes, and that is all.
  const drops = (m) => Boolean(m?.driver && (m.driver.options?.readOnly === true || (typeof m.driver.setItem !== "function" && typeof m.driver.setItemRaw !== "function")));
  const mayDrop = mounts.some(drops);
  const dropsWrites = () => new Error("kvsweep: kvStore: this unstorage store drops writes (its driver is readOnly, or has no setItem): its writes would resolve with nothing written; give kvsweep a mount it can write to");
  const dropping = async () => {
    if (!mayDrop) return;
    if (visibilityMs > 0) {
      if (drops(storage.getMount?.(marker))) throw dropsWrites();
      return;
    }
    const probe = esc(probeName(prefix, "write"));
    await storage.setItemRaw(probe, new Uint8Array([1]));
    const seen = await storage.getItemRaw(probe);
    await storage.removeItem(probe);
    if (seen instanceof Error) throw seen;
    if (seen === null || seen === undefined) throw dropsWrites();
  };
  // A copy's key: this release's escape never ends a name with "~".
  const copy = (k) => k + "~";
  const got = (v) => {
    if (v instanceof Error) throw v;
    return v ?? null;
  };
  const current = { esc, legacy: false };
  // Bytes that are a frame, or what a write of one cut short leaves (empty,
  // or a frame's start); not other code's value, nor an unframed record.
  const framedOrTorn = (v) => {
    const view = ArrayBuffer.isView(v) ? v : v instanceof ArrayBuffer ? new Uint8Array(v) : undefined;
    return view !== undefined && (view.byteLength === 0 || new Uint8Array(view.buffer, view.byteOffset, 1)[0] === 0x6b);
  };
  const tornMain = (v) => v !== null && framedOrTorn(v) && unframe(v) === undefined;
  // Decided at the first read, write or remove: the names' escape, and what
  // to do before each write (write the marker once; probe a legacy store).
  const format = once(async () => {
    const held = got(await storage.getItemRaw(marker));
    const text = held === null ? "" : typeof held === "string" ? held : new TextDecoder().decode(bytesOf(held) ?? new Uint8Array());
    if (text === NAMES) return { ...current, before: once(dropping) };
    // Another release's format; anything else (a marker torn by a crash) tells nothing.
    if (/^kvsweep names \d+$/.test(text)) {
      throw new Error(`kvsweep: kvStore: this unstorage store's names are in a format this release does not know (its marker ${describe(markerName)} holds ${describe(text)}); open it with the release that wrote it`);
    }
    const keys = got(await storage.getKeys());
    if (!Array.isArray(keys)) throw new TypeError(`kvsweep: kvStore: the unstorage store listed ${describe(keys)}, not an array of names`);
    const records = keys.filter(record);
    // Only an earlier release's names hold these; only this release's escape
    // them. (A copy's trailing "~" tells nothing: an earlier release's key may end so.)
    const older = records.some((k) => /[A-Z!*'()]|~./.test(k.replace(/%[0-9A-F]{2}/g, "")));
    const newer = keys.includes(marker) || records.some((k) => /%(?:4[1-9A-F]|5[0-9A]|2[1789A]|7E)/.test(k));
    if (older && newer) {
      throw new Error(`kvsweep: kvStore: this unstorage store holds kvsweep records under names of two releases (its marker ${describe(markerName)} is gone): two releases wrote it at once; copy its entries to a new store with the release that wrote most of them`);
    }
    // A new store, or this release's: marked at its first write, not by a reader.
    if (!older) {
      return {
        ...current,
        before: once(async () => {
          await dropping();
          await storage.setItemRaw(marker, markerBytes);
        }),
      };
    }
    const folding = caseChecked(
      prefix,
      (n) => storage.setItemRaw(legacyEsc(n), new Uint8Array([1])),
      (n) => storage.getItemRaw(legacyEsc(n)),
      (n) => storage.removeItem(legacyEsc(n)),
      `kvsweep: kvStore: this unstorage store folds case (a case-insensitive file system?): kvsweep's records "A" and "a" would be one; its records were written by an earlier release in names that keep case; copy its entries to a new store (entries(), then put() into a kvStore over a new unstorage: new stores escape case), or keep it in a case-sensitive directory`,
    );
    const before = once(async () => {
      await dropping();
      await folding();
    });
    return { esc: legacyEsc, legacy: true, before };
  });
  // Once decided, without a wait per call (a listing reads each record).
  let decided;
  const known = () => decided ?? format().then((f) => (decided = f));
  const written = async () => {
    const f = decided ?? (await known());
    await f.before();
    return f;
  };
  return sortedDriver({
    kind: "unstorage",
    target: storage,
    prefix,
    caps: {
      atomic: false,
      compareAndSet: false,
      visibilityMs,
      nativeExpiry: false,
      // A file name (each escaped name is one) is at most 255 bytes, a copy's "~" included.
      ...(tears && { maxKeyBytes: 255, keyRoom: 1, keyUriEscaped: true }),
    },
    async read(n) {
      const f = decided ?? (await known());
      const k = f.esc(n);
      const main = got(await storage.getItemRaw(k));
      if (f.legacy || main === null || !twice(n)) return main;
      // Unframed (written by another backend or an earlier release), or not
      // bytes (other code's): as it is. Framed and whole: its bytes. Only
      // what a write cut short leaves (empty, or a frame's start) reads as
      // its copy.
      if (!framedOrTorn(main)) return main;
      // Both torn: what is left of a frame cut short reads as cut short
      // (empty); other bytes that begin as a frame does, as they are.
      return unframe(main) ?? unframe(got(await storage.getItemRaw(copy(k)))) ?? (cutFrame(main) ? new Uint8Array(0) : main);
    },
    async write(n, b) {
      const f = await written();
      const k = f.esc(n);
      if (f.legacy || !tears || !twice(n)) return storage.setItemRaw(k, b);
      const framed = frame(b);
      // The copy first, so that a main torn by this write has a whole one;
      // but where the main is torn already (a crash, a failed write), the
      // copy is the only whole version: the main first then.
      if (tornMain(got(await storage.getItemRaw(k)))) {
        await storage.setItemRaw(k, framed);
        return storage.setItemRaw(copy(k), framed);
      }
      await storage.setItemRaw(copy(k), framed);
      return storage.setItemRaw(k, framed);
    },
    async remove(n) {
      const f = await written();
      const k = f.esc(n);
      // The main first: absent, it reads as absent whatever its copy holds
      // (hidden from listings, and written over first by a later write).
      const out = await storage.removeItem(k);
      if (!f.legacy && tears && twice(n)) await storage.removeItem(copy(k));
      return out;
    },
    names: async () => {
      const f = decided ?? (await known());
      const keys = await storage.getKeys();
      // Both formats unescape the same way; copies are no records. Anything
      // else (an Error it resolved with) is for the listing to refuse.
      if (!Array.isArray(keys)) return keys;
      return keys.filter((k) => f.legacy || !k.endsWith("~")).map(unesc).filter((n) => n !== undefined);
    },
  });
}

/**
 * keyv: values as base64 text, which every keyv store and serialiser keeps
 * exactly. Written with a ttl of 0, "never expires", whatever the instance's
 * default `ttl` (which expired pinned entries and blob records behind the
 * runs' back). A keyv that rewrites keys (`sanitize`) is refused: it merged
 * kvsweep's record names, and one namespace's get answered with another's
 * value; so are writes to one whose store folds case (a MySQL collation).
 */
function keyvDriver(keyv, prefix, visibilityMs, what) {
  if (keyv.sanitize?.enabled === true) {
    throw new TypeError(`kvsweep: ${what}: this Keyv rewrites keys (sanitize), which would merge kvsweep's records; give kvsweep a Keyv without sanitize`);
  }
  const checked = caseChecked(
    prefix,
    (n) => keyv.set(n, "AQ==", 0),
    (n) => keyv.get(n),
    (n) => keyv.delete(n),
    `kvsweep: ${what}: this Keyv's store folds case (a case-insensitive collation?): kvsweep's records "A" and "a" would be one; give kvsweep a case-sensitive store (a binary or case-sensitive collation)`,
  );
  return sortedDriver({
    kind: "keyv",
    target: keyv,
    prefix,
    caps: { atomic: false, compareAndSet: false, visibilityMs, nativeExpiry: false },
    read: (n) => keyv.get(n),
    write: async (n, b) => (await checked(), keyv.set(n, toBase64(b), 0)),
    remove: async (n) => (await checked(), keyv.delete(n)),
    names: async () => {
      const out = [];
      for await (const [k] of keyv.iterator()) if (typeof k === "string") out.push(k);
      return out;
    },
    text: true,
  });
}

/**
 * Any object with get, put, delete and list(prefix) (names, { keys }, or an
 * iterable): values as base64 text, which any store keeps exactly. Writes to
 * one that folds case are refused.
 */
function genericDriver(x, prefix, visibilityMs) {
  const checked = caseChecked(
    prefix,
    (n) => x.put(n, "AQ=="),
    (n) => x.get(n),
    (n) => x.delete(n),
    `kvsweep: kvStore: this store (get, put, delete, list) folds case (a case-insensitive collation?): kvsweep's records "A" and "a" would be one; give kvsweep a case-sensitive store (a binary or case-sensitive collation)`,
  );
  return sortedDriver({
    kind: "kv",
    target: x,
    prefix,
    caps: { atomic: false, compareAndSet: false, visibilityMs, nativeExpiry: false },
    read: (n) => x.get(n),
    write: async (n, b) => (await checked(), x.put(n, toBase64(b))),
    remove: async (n) => (await checked(), x.delete(n)),
    names: async (p) => {
      const got = await x.list(p);
      const out = [];
      const add = (k) => out.push(typeof k === "string" ? k : k?.name ?? k?.key);
      if (Array.isArray(got)) got.forEach(add);
      else if (Array.isArray(got?.keys)) {
        // One page of more: taking it as all would hide the rest from runs.
        if (got.list_complete === false || got.done === false) {
          throw new TypeError("kvsweep: kvStore: list(prefix) returned one page of names (list_complete: false); it must return them all: wrap it to page on");
        }
        got.keys.forEach(add);
      }
      else if (got && typeof got[Symbol.asyncIterator] === "function") for await (const k of got) add(k);
      else if (got && typeof got[Symbol.iterator] === "function") for (const k of got) add(k);
      else throw new TypeError(`kvsweep: kvStore: list(prefix) must return names (an array, { keys }, or an iterable), got ${describe(got)}`);
      return out.filter((k) => typeof k === "string");
    },
    text: true,
  });
}

/** Cloudflare Workers KV: no compare-and-set, 60 s until a write shows everywhere, keys expire themselves. */
function workersKvDriver(kv, prefix) {
  const META_MAX = 700; // bytes kept in a key's metadata too (its limit is 1024 bytes of JSON)
  const d = {
    ...base("workers-kv", prefix, {
      atomic: false,
      compareAndSet: false,
      visibilityMs: 60_000,
      nativeExpiry: true,
      maxValueBytes: 25 * 1024 * 1024,
      maxKeyBytes: 512,
    }),
    async get(names) {
      spend(d, names.length);
      return Promise.all(names.map(async (name) => [listed(bytesOf(await kv.get(name, "arrayBuffer"))), null]));
    },
    async list(tablePrefix, startAfter, cursor, limit, maxCalls = Infinity) {
      // Without a cursor, a start after a name is found by listing from the
      // table's first name (Workers KV lists by prefix and cursor only); the
      // pages after that one come with a cursor and the same start.
      const skip = startAfter;
      budget(maxCalls, 1);
      spend(d);
      // Whole pages: most records come in their key's metadata, and the
      // listing must read every record whatever its pages, so a page whose
      // gets the calls left cannot pay for stops the listing (below) where
      // smaller pages would have stopped it later, having spent more.
      const size = Math.max(1, Math.min(1000, limit));
      const page = await kv.list({ prefix: tablePrefix, cursor, limit: size });
      const items = [];
      const slow = [];
      for (const k of page.keys) {
        if (skip !== undefined && compareNames(k.name, skip) <= 0) continue;
        const inline = typeof k.metadata?.v === "string" ? fromBase64(k.metadata.v) : undefined;
        const slot = items.push([k.name, inline]) - 1;
        if (!inline) slow.push(slot);
      }
      budget(maxCalls - 1, slow.length);
      spend(d, slow.length);
      await Promise.all(
        slow.map(async (slot) => {
          items[slot][1] = listed(bytesOf(await kv.get(items[slot][0], "arrayBuffer")));
        }),
      );
      // A page may come back short, even empty, before the listing is complete.
      const last = page.keys.at(-1)?.name;
      return { items, done: page.list_complete === true, cursor: page.list_complete ? undefined : page.cursor, last };
    },
    // No compare-and-set, so nothing checks a write against what its
    // read-check-write read: within this isolate, holding this turn from the
    // first read to the write (src/store/jskv.rs) is what keeps two of
    // kvsweep's writers (a put and a refresh of accessedAt a read deferred,
    // say) from writing over each other. Across isolates, SPEC §6's grace rule.
    lock: () => acquire(kv),
    apply(_checks, writes, held) {
      // Checks cannot be made here (see above). In order, as inRuns goes:
      // kvsweep orders a batch so that any cut of it is consistent.
      return serialised(
        kv,
        async () => {
          await inRuns(prefix, writes, async ([name, bytes, expiresAt]) => {
            spend(d);
            if (bytes === null) return kv.delete(name);
            const options = {};
            if (bytes.length <= META_MAX) options.metadata = { v: toBase64(bytes) };
            // Workers KV expires keys at least 60 s ahead; nearer ones are left to a run.
            if (expiresAt !== undefined && expiresAt - Date.now() >= 120_000) options.expiration = Math.floor(expiresAt / 1000);
            await kv.put(name, bytes, options);
          });
          return true;
        },
        held,
      );
    },
  };
  return d;
}

/**
 * Splits a value into chunks of `max` bytes, each a copy: a Durable Object
 * stores a view with its whole buffer, so views of one value made each chunk
 * as large as the value (and one of 3 MiB too big for SQLite).
 */
function split(bytes, max) {
  const parts = [];
  for (let i = 0; i < bytes.length; i += max) parts.push(bytes.slice(i, i + max));
  return parts;
}

function join(parts, size) {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const isHead = (v) => v !== null && typeof v === "object" && !ArrayBuffer.isView(v) && Number.isSafeInteger(v.chunks);

/**
 * Deno KV: atomic commits with versionstamp checks (at most 100 checks,
 * 1,000 mutations and 800 KiB each), values up to 64 KiB: larger ones are
 * split into chunks, written in commits of their own before the commit that
 * records them, and deleted again if that commit fails.
 */
function denoKvDriver(kv, prefix) {
  const MAX_VALUE = 65536;
  const MAX_COMMIT = 800 * 1024;
  const MAX_COMMIT_KEYS = 80 * 1024;
  const keyBytes = new TextEncoder();
  const CHUNK = "kvsweep-chunk";
  const d = {
    ...base("deno-kv", prefix, {
      atomic: true,
      compareAndSet: true,
      maxBatchOps: 1000,
      maxBatchChecks: 100,
      visibilityMs: 0,
      nativeExpiry: true,
      // 2,048 bytes per key as Deno encodes it; a write leaves room for a chunk's key.
      maxKeyBytes: 2048,
      keyRoom: 48,
      keyEscaped: true,
    }),
    // Writes check what they read, so they need no turn to be safe; but
    // thirty of this isolate's at once on one record collide again and
    // again. One that collided waits for this turn and goes again holding
    // it, so they go one at a time (src/store/jskv.rs).
    lockAfterConflict: () => acquire(kv),
    async value(name, v) {
      if (!isHead(v)) return bytesOf(v);
      const keys = d.chunkKeys(name, v);
      const parts = [];
      for (let i = 0; i < keys.length; i += 10) {
        spend(d);
        for (const e of await kv.getMany(keys.slice(i, i + 10))) {
          if (!(e.value instanceof Uint8Array)) return undefined; // a chunk gone: unreadable
          parts.push(e.value);
        }
      }
      return join(parts, v.size);
    },
    /** The chunks of a split record's head, as their keys. */
    chunkKeys(name, v) {
      return isHead(v) ? Array.from({ length: v.chunks }, (_, i) => [CHUNK, name, v.gen ?? 0, i]) : [];
    },
    /** The chunks each of `names` holds now, as their keys. */
    async heads(names) {
      const out = new Map();
      for (let i = 0; i < names.length; i += 10) {
        spend(d);
        for (const e of await kv.getMany(names.slice(i, i + 10).map((n) => [n]))) {
          if (isHead(e.value)) out.set(e.key[0], d.chunkKeys(e.key[0], e.value));
        }
      }
      return out;
    },
    async get(names) {
      const out = [];
      for (let i = 0; i < names.length; i += 10) {
        spend(d);
        const got = await kv.getMany(names.slice(i, i + 10).map((n) => [n]));
        for (const e of got) {
          out.push([listed(await d.value(e.key[0], e.value)), e.versionstamp]);
          if (e.versionstamp !== null) d.read(e.key[0], e.versionstamp, d.chunkKeys(e.key[0], e.value));
        }
      }
      return out;
    },
    /**
     * The chunks of records as read, by name, with the versionstamp read: a
     * write checked at that versionstamp finds the record as read, and
     * `apply` does not read its chunks again. A bounded few.
     */
    seen: new Map(),
    read(name, versionstamp, chunks) {
      if (d.seen.size >= 4096) d.seen.clear();
      d.seen.set(name, [versionstamp, chunks]);
    },
    async list(tablePrefix, startAfter, _cursor, limit) {
      spend(d);
      const start = startAfter === undefined ? [tablePrefix] : [startAfter + "\0"];
      const items = [];
      let seen = 0;
      let last;
      for await (const e of kv.list({ start, end: [prefixEnd(tablePrefix)] }, { limit })) {
        seen++;
        if (e.key.length !== 1 || typeof e.key[0] !== "string") continue;
        last = e.key[0];
        items.push([e.key[0], listed(await d.value(e.key[0], e.value))]);
      }
      return { items, done: seen < limit, last };
    },
    async apply(checks, writes) {
      const now = Date.now();
      // Old chunks of every record written go with it (a put over a split
      // record, or a delete of one). Where the commit checks the record, it
      // is as checked: none if absent, else as read at that versionstamp.
      const known = new Map();
      for (const [name, versionstamp] of checks) {
        const seen = d.seen.get(name);
        if (versionstamp === null) known.set(name, []);
        else if (seen?.[0] === versionstamp) known.set(name, seen[1]);
      }
      const heads = await d.heads(writes.map(([n]) => n).filter((n) => !known.has(n)));
      for (const [name, chunks] of known) heads.set(name, chunks);
      const atomic = kv.atomic();
      for (const [name, versionstamp] of checks) atomic.check({ key: [name], versionstamp });
      let mutations = 0;
      let size = 0;
      // Deno KV's limit on the keys of one commit (checks and mutations):
      // a record's key is its name and 2 bytes, each U+0000 in it taking 2;
      // a chunk's adds about 44.
      const keyOf = (name) => keyBytes.encode(name).length + (name.match(/\0/g)?.length ?? 0) + 2;
      let keys = checks.reduce((n, [name]) => n + keyOf(name), 0);
      const chunks = [];
      for (const [name, bytes, expiresAt] of writes) {
        // Deno KV refuses an expireIn past about 8.2e15 ms from now; expiry
        // that far off is left to runs (1e15 ms is 31,000 years).
        const options = expiresAt !== undefined && expiresAt > now && expiresAt - now <= 1e15 ? { expireIn: expiresAt - now } : undefined;
        mutations++;
        size += name.length * 3;
        keys += keyOf(name);
        if (bytes === null) {
          atomic.delete([name]);
        } else if (bytes.length > MAX_VALUE) {
          // Chunks of their own for this write (a generation): a reader of
          // the old record still finds the old chunks until this commit.
          const gen = `${now.toString(36)}${Math.random().toString(36).slice(2, 8)}`;
          const parts = split(bytes, MAX_VALUE);
          parts.forEach((p, i) => chunks.push([[CHUNK, name, gen, i], p, options]));
          atomic.set([name], { chunks: parts.length, size: bytes.length, gen }, options);
          size += 96;
        } else {
          atomic.set([name], bytes, options);
          size += bytes.length;
        }
        // The old record's chunks go in the same commit as the new record.
        for (const key of heads.get(name) ?? []) {
          atomic.delete(key);
          mutations++;
          keys += keyOf(name) + 44;
        }
      }
      if (mutations > 1000 || checks.length > 100 || size > MAX_COMMIT || keys > MAX_COMMIT_KEYS) {
        throw new Error(
          `a Deno KV commit would hold ${mutations} mutations, ${checks.length} checks, about ${size} bytes and ${keys} bytes of keys, over Deno KV's limits (1,000, 100, 800 KiB and 80 KiB of keys): write fewer or smaller entries per call (putMany), with shorter keys, or, for a run's batches, lower batchSize`,
        );
      }
      // New chunks first, in commits of their own: a crash leaves chunks no
      // record names, never a record without its chunks.
      const written = [];
      try {
        for (let i = 0; i < chunks.length; i += 10) {
          const commit = kv.atomic();
          for (const [key, part, options] of chunks.slice(i, i + 10)) commit.set(key, part, options);
          spend(d);
          await commit.commit();
          written.push(...chunks.slice(i, i + 10).map(([key]) => key));
        }
        spend(d);
        const result = await atomic.commit();
        if (result.ok) return true;
      } catch (e) {
        // Another connection to the same file holds SQLite's lock: nothing
        // was committed, so it counts as a conflict (read again, try again).
        if (!/database is locked|busy/i.test(String(e?.message))) throw e;
        await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
      }
      // A check failed (or the file was locked) and nothing of the record was
      // written: its new chunks are named by nothing (the old ones stay).
      await d.drop(written);
      return false;
    },
    /** Deletes chunks whose record was not written after all (best effort). */
    async drop(keys) {
      for (let i = 0; i < keys.length; i += 1000) {
        const commit = kv.atomic();
        for (const k of keys.slice(i, i + 1000)) commit.delete(k);
        await commit.commit().catch(() => {});
      }
    },
  };
  return d;
}

/**
 * Durable Object storage: strongly consistent. Every batch of this object's
 * kvsweep stores goes through one queue, and its checks and writes run in
 * it: no other kvsweep write of the object can come between (input gates do
 * not stop two tasks of one event, so the queue does). The writes of a batch
 * are made with no await between them, in order, and commit together (write
 * coalescing). Values up to 128 KiB (larger ones are split), 128 keys a call.
 */
function durableObjectDriver(storage, prefix) {
  const MAX_VALUE = 128 * 1024;
  const CHUNK = "kvsweep-chunk/";
  const chunkKey = (name, i) => `${CHUNK}${name}/${i}`;
  const d = {
    // 2,048 bytes per key; a write leaves room for a chunk's key.
    ...base("durable-object", prefix, { atomic: true, compareAndSet: true, visibilityMs: 0, nativeExpiry: false, maxKeyBytes: 2048, keyRoom: 24 }),
    async many(keys) {
      const out = new Map();
      for (let i = 0; i < keys.length; i += 128) {
        spend(d);
        for (const [k, v] of await storage.get(keys.slice(i, i + 128))) out.set(k, v);
      }
      return out;
    },
    async value(name, v) {
      if (!isHead(v)) return bytesOf(v);
      const keys = Array.from({ length: v.chunks }, (_, i) => chunkKey(name, i));
      const got = await d.many(keys);
      const parts = keys.map((k) => got.get(k));
      if (parts.some((p) => !(p instanceof Uint8Array))) return undefined;
      return join(parts, v.size);
    },
    async get(names) {
      const got = await d.many(names);
      const out = [];
      for (const n of names) {
        const bytes = await d.value(n, got.get(n));
        out.push([listed(bytes), listed(bytes)]);
      }
      return out;
    },
    async list(tablePrefix, startAfter, _cursor, limit) {
      spend(d);
      const options = { prefix: tablePrefix, limit };
      if (startAfter !== undefined) options.startAfter = startAfter;
      const page = await storage.list(options);
      const items = [];
      let last;
      for (const [name, v] of page) {
        last = name;
        items.push([name, listed(await d.value(name, v))]);
      }
      return { items, done: page.size < limit, last };
    },
    lock: () => acquire(storage),
    apply(checks, writes, held) {
      return serialised(storage, async () => {
        const now = await d.many(checks.map(([n]) => n));
        for (const [name, token] of checks) {
          // Absent means nothing there at all, readable or not.
          const value = token === null ? undefined : await d.value(name, now.get(name));
          if (token === null ? now.get(name) !== undefined : token === false ? !notBytes(value, now.get(name)) : !equal(value ?? null, token)) return false;
        }
        // What the checks read is as it is now (the queue holds this
        // object's kvsweep writes): only records written unchecked are read.
        const checked = new Set(checks.map(([n]) => n));
        const more = await d.many(writes.map(([n]) => n).filter((n) => !checked.has(n)));
        const heads = { get: (n) => (checked.has(n) ? now : more).get(n) };
        // In batch order: each write as puts and deletes of 128 keys a call at most.
        const calls = [];
        let puts = {};
        let deletes = [];
        const flushPuts = () => {
          const names = Object.keys(puts);
          for (let i = 0; i < names.length; i += 128) calls.push(["put", Object.fromEntries(names.slice(i, i + 128).map((n) => [n, puts[n]]))]);
          puts = {};
        };
        const flushDeletes = () => {
          for (let i = 0; i < deletes.length; i += 128) calls.push(["delete", deletes.slice(i, i + 128)]);
          deletes = [];
        };
        const put = (k, v) => {
          flushDeletes();
          puts[k] = v;
        };
        const del = (k) => {
          flushPuts();
          deletes.push(k);
        };
        for (const [name, bytes] of writes) {
          const head = heads.get(name);
          const old = isHead(head) ? head.chunks : 0;
          let fresh = 0;
          if (bytes === null) del(name);
          else if (bytes.length > MAX_VALUE) {
            const parts = split(bytes, MAX_VALUE);
            fresh = parts.length;
            parts.forEach((p, i) => put(chunkKey(name, i), p));
            put(name, { chunks: parts.length, size: bytes.length });
          } else put(name, bytes);
          for (let i = fresh; i < old; i++) del(chunkKey(name, i));
        }
        flushPuts();
        flushDeletes();
        spend(d, calls.length);
        // Every call now, none awaited in between: one atomic write.
        await Promise.all(calls.map(([op, arg]) => storage[op](arg)));
        return true;
      }, held);
    },
  };
  return d;
}

/** Marks a bucket as the home of a store's blob bytes: `kvStore(x, { blobs: r2(env.BUCKET) })`. */
const R2 = Symbol("kvsweep.r2");

/**
 * An R2 bucket to keep blob bytes in, beside records in Workers KV, Deno KV
 * or a Durable Object: `kvStore(env.KV, { blobs: r2(env.BUCKET) })`.
 */
export function r2(bucket) {
  if (!fn(bucket, "get", "put", "delete", "list", "head")) {
    throw new TypeError(`kvsweep: r2(bucket): bucket must be an R2 bucket binding (get, put, delete, list, head), got ${describe(bucket)}`);
  }
  return { [R2]: bucket };
}

/**
 * `inner` with blob bytes (table b) in an R2 bucket, under the same names.
 * Bytes go up before the batch that records them commits, and are deleted
 * only after the batch that dropped their record did, unless uploaded again
 * since: a crash between the two leaves bytes without a record, which
 * collectR2Orphans finds after the grace period, never a record without its
 * bytes.
 */
function withR2(inner, bucket) {
  const blobs = `${inner.prefix}b/`;
  const records = `${inner.prefix}c/`;
  const isBlob = (n) => n.startsWith(blobs);
  // Blob bytes in R2 are not held to the records' store's value limit. They
  // are uploaded before the batch that records them, and a run deletes
  // bytes uploaded before its batch: a blob's bytes go only after a read
  // found its record absent, never on a guess (src/store/jskv.rs).
  const { maxValueBytes: _, ...innerCaps } = inner.caps;
  // Entries stay held to the records' store's limit.
  const caps = { ...innerCaps, maxEntryBytes: inner.caps.maxValueBytes, blobsUnlocked: true };
  const d = {
    kind: `${inner.kind}+r2`,
    prefix: inner.prefix,
    caps,
    bucket,
    inner,
    own: 0,
    get ops() {
      return inner.ops + d.own;
    },
    spend(n = 1) {
      d.own += n;
    },
    async blobBytes(name) {
      d.spend();
      const obj = await bucket.get(name);
      return obj ? new Uint8Array(await obj.arrayBuffer()) : null;
    },
    async get(names) {
      const out = new Array(names.length);
      const rest = [];
      await Promise.all(
        names.map(async (n, i) => {
          if (!isBlob(n)) return rest.push(i);
          const bytes = await d.blobBytes(n);
          out[i] = [bytes, bytes ?? null];
        }),
      );
      const got = await inner.get(rest.map((i) => names[i]));
      rest.forEach((i, j) => (out[i] = got[j]));
      return out;
    },
    async list(tablePrefix, startAfter, cursor, limit, maxCalls = Infinity) {
      if (tablePrefix !== blobs) return inner.list(tablePrefix, startAfter, cursor, limit, maxCalls);
      budget(maxCalls, 2);
      d.spend();
      const size = Math.max(1, Math.min(limit, 1000, maxCalls - 1));
      const page = await bucket.list({ prefix: blobs, startAfter: cursor === undefined ? startAfter : undefined, cursor, limit: size });
      const items = [];
      // With a cursor, R2 leaves startAfter out: what it passes over is skipped here.
      const after = (o) => startAfter === undefined || compareNames(o.key, startAfter) > 0;
      for (const o of page.objects.filter(after)) items.push([o.key, await d.blobBytes(o.key)]);
      return { items, done: !page.truncated, cursor: page.truncated ? page.cursor : undefined, last: page.objects.at(-1)?.key };
    },
    lock: inner.lock,
    lockAfterConflict: inner.lockAfterConflict,
    async apply(checks, writes, held) {
      const started = Date.now();
      // Blob bytes never change under a name: a check of them is a check of presence.
      for (const [name, token] of checks.filter(([n]) => isBlob(n))) {
        d.spend();
        if (((await bucket.head(name)) !== null) !== (token !== null)) return false;
      }
      const puts = writes.filter(([n, b]) => isBlob(n) && b !== null);
      const deletes = writes.filter(([n, b]) => isBlob(n) && b === null).map(([n]) => n);
      d.spend(puts.length);
      await Promise.all(puts.map(([name, bytes]) => bucket.put(name, bytes)));
      const ok = await inner.apply(
        checks.filter(([n]) => !isBlob(n)),
        writes.filter(([n]) => !isBlob(n)),
        held,
      );
      if (!ok || deletes.length === 0) return ok;
      // Bytes uploaded again since this batch began belong to a new record: keep them.
      d.spend(deletes.length);
      const heads = await Promise.all(deletes.map((n) => bucket.head(n)));
      const gone = deletes.filter((_, i) => heads[i] !== null && heads[i].uploaded.getTime() < started);
      for (let i = 0; i < gone.length; i += 1000) {
        d.spend();
        await bucket.delete(gone.slice(i, i + 1000));
      }
      return true;
    },
    /** Bytes in the bucket whose record is gone, older than `graceMs`. */
    async orphans({ graceMs, dryRun, limit }) {
      const out = { checked: 0, orphans: [], bytes: 0, deleted: 0 };
      let cursor;
      do {
        d.spend();
        const page = await bucket.list({ prefix: blobs, cursor, limit: 1000 });
        const old = page.objects.filter((o) => o.uploaded.getTime() < Date.now() - graceMs);
        out.checked += page.objects.length;
        const recorded = await inner.get(old.map((o) => records + o.key.slice(blobs.length)));
        const doomed = old.filter((_, i) => recorded[i][0] === null).slice(0, Math.max(0, limit - out.orphans.length));
        for (const o of doomed) {
          out.orphans.push(o.key.slice(o.key.indexOf("\0") + 1));
          out.bytes += o.size;
        }
        if (!dryRun && doomed.length) {
          // Looked at again just before: bytes put again since the listing are young.
          const still = [];
          for (const o of doomed) {
            d.spend();
            const now = await bucket.head(o.key);
            if (now && now.uploaded.getTime() < Date.now() - graceMs) still.push(o.key);
          }
          for (let i = 0; i < still.length; i += 1000) {
            d.spend();
            await bucket.delete(still.slice(i, i + 1000));
          }
          out.deleted += still.length;
        }
        cursor = page.truncated && out.orphans.length < limit ? page.cursor : undefined;
      } while (cursor);
      return out;
    },
  };
  return d;
}

const drivers = new WeakMap();

/**
 * Deletes blob bytes in a store's R2 bucket that no record names and that
 * are older than `graceMs` (default 10 minutes): bytes a crash left between
 * uploading and recording, or between forgetting and deleting them.
 * `dryRun: true` only lists them; `limit` caps how many are taken (default
 * all). Returns `{ checked, orphans, bytes, deleted }`.
 */
export async function collectR2Orphans(store, o = {}) {
  const what = "collectR2Orphans(store, options)";
  const d = drivers.get(store);
  if (!d?.bucket) throw new TypeError(`kvsweep: ${what}: store must be a kvStore or durableObjectStore made with { blobs: r2(bucket) }, got ${describe(store)}`);
  if (o === null || typeof o !== "object") throw new TypeError(`kvsweep: ${what}: options must be an object, got ${describe(o)}`);
  for (const k of Object.keys(o)) {
    if (!["graceMs", "dryRun", "limit"].includes(k)) throw new TypeError(`kvsweep: ${what}: unknown option ${JSON.stringify(k)}; the options are graceMs, dryRun, limit`);
  }
  const { graceMs = 600_000, dryRun = false, limit = Infinity } = o;
  if (!Number.isSafeInteger(graceMs) || graceMs < 0) {
    throw new TypeError(`kvsweep: ${what}: options.graceMs must be a whole number of milliseconds, 0 or more, got ${describe(graceMs)}`);
  }
  if (typeof dryRun !== "boolean") throw new TypeError(`kvsweep: ${what}: options.dryRun must be true or false, got ${describe(dryRun)}`);
  if (limit !== Infinity && (!Number.isSafeInteger(limit) || limit < 1)) {
    throw new TypeError(`kvsweep: ${what}: options.limit must be a whole number, 1 or more, got ${describe(limit)}`);
  }
  if (d.caps.compareAndSet === false && graceMs < d.caps.visibilityMs + 60_000) {
    throw new TypeError(`kvsweep: ${what}: options.graceMs must be at least ${d.caps.visibilityMs + 60_000} ms on ${/^[aeiou]/.test(d.inner.kind) ? "an" : "a"} ${d.inner.kind} store (its visibility window plus the longest write)`);
  }
  return d.orphans({ graceMs, dryRun, limit });
}

function make(driver) {
  const store = kvStoreOfDriver(driver);
  drivers.set(store, driver);
  if (driver.bucket) CHECKED_BLOBS.add(store); // blob bytes in R2
  return store;
}

const OPTIONS = ["prefix", "visibilityMs", "blobs"];

function options(o, what, allowed = OPTIONS) {
  if (o === undefined) return { prefix: PREFIX };
  if (o === null || typeof o !== "object") throw new TypeError(`kvsweep: ${what}: options must be an object, got ${describe(o)}`);
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new TypeError(`kvsweep: ${what}: unknown option ${JSON.stringify(k)}; the options are ${allowed.join(", ")}`);
  }
  const prefix = o.prefix ?? PREFIX;
  if (typeof prefix !== "string") throw new TypeError(`kvsweep: ${what}: options.prefix must be a string, got ${describe(prefix)}`);
  if (prefix.includes("\0")) throw new TypeError(`kvsweep: ${what}: options.prefix must not contain U+0000`);
  if (!wellFormed(prefix)) {
    throw new TypeError(`kvsweep: ${what}: options.prefix holds a lone surrogate (it must be well-formed UTF-16)`);
  }
  const blobs = o.blobs;
  if (blobs !== undefined && !blobs?.[R2]) throw new TypeError(`kvsweep: ${what}: options.blobs must be r2(bucket), got ${describe(blobs)}`);
  const visibilityMs = o.visibilityMs;
  if (visibilityMs !== undefined && (!Number.isSafeInteger(visibilityMs) || visibilityMs < 0)) {
    throw new TypeError(`kvsweep: ${what}: options.visibilityMs must be a whole number of milliseconds, 0 or more, got ${describe(visibilityMs)}`);
  }
  return { prefix, visibilityMs, bucket: blobs?.[R2] };
}

const isDurableObjectStorage = (x) => fn(x, "get", "put", "delete", "list", "setAlarm", "getAlarm");
const isDenoKv = (x) => fn(x, "get", "getMany", "set", "delete", "list", "atomic");
const isWorkersKv = (x) => fn(x, "get", "put", "delete", "list", "getWithMetadata");
const isUnstorage = (x) => fn(x, "getItemRaw", "setItemRaw", "removeItem", "getKeys");
const isKeyv = (x) => fn(x, "get", "set", "delete", "iterator");

/** The driver for `x`, recognised by its methods. */
export function driverOf(x, o, what = "kvStore(x)") {
  const { bucket, ...rest } = options(o, what);
  const d = baseDriver(x, rest, what);
  return bucket ? withR2(d, bucket) : d;
}

function baseDriver(x, { prefix, visibilityMs }, what) {
  // Backends that know their own window take no visibilityMs.
  const known = (kind) => {
    if (visibilityMs !== undefined) {
      throw new TypeError(`kvsweep: ${what}: options.visibilityMs is for unstorage, keyv and generic stores; a ${kind} store knows its own`);
    }
  };
  if (x instanceof Map) return known("Map"), mapDriver(x, prefix);
  if (isDurableObjectStorage(x)) return known("Durable Object"), durableObjectDriver(x, prefix);
  if (isDenoKv(x)) return known("Deno KV"), denoKvDriver(x, prefix);
  if (isWorkersKv(x)) return known("Workers KV"), workersKvDriver(x, prefix);
  if (isUnstorage(x)) return unstorageDriver(x, prefix, visibilityMs ?? 0);
  if (isKeyv(x)) return keyvDriver(x, prefix, visibilityMs ?? 0, what);
  if (fn(x, "get", "put", "delete", "list")) return genericDriver(x, prefix, visibilityMs ?? 0);
  throw new TypeError(
    `kvsweep: ${what}: x must be a Workers KV binding, a Deno.Kv, Durable Object storage, a Map, an unstorage or keyv instance, or an object with get, put, delete and list; got ${describe(x)}`,
  );
}

/**
 * A kvsweep store over a key–value object: a Cloudflare Workers KV binding,
 * a `Deno.Kv`, Durable Object storage, a `Map`, an unstorage or keyv
 * instance, or any object with `get`, `put`, `delete` and `list`.
 * Options: `prefix` (default "kvsweep/") under which every key goes;
 * `visibilityMs`, how long the backend takes to show a write everywhere
 * (unstorage, keyv and generic objects; the others know their own);
 * `blobs: r2(bucket)` to keep blob bytes in R2.
 */
export function kvStore(x, o) {
  return make(driverOf(x, o));
}

/** A kvsweep store in a Durable Object's storage (`ctx.storage`). Options: `prefix`, `blobs`. */
export function durableObjectStore(storage, o) {
  if (!isDurableObjectStorage(storage)) {
    throw new TypeError(`kvsweep: durableObjectStore(storage): storage must be a Durable Object's ctx.storage, got ${describe(storage)}`);
  }
  const { prefix, bucket } = options(o, "durableObjectStore(storage)", ["prefix", "blobs"]);
  const d = durableObjectDriver(storage, prefix);
  return make(bucket ? withR2(d, bucket) : d);
}

/** runFromAlarm's options: its own, then run()'s. */
const ALARM_OPTIONS = ["periodMs", "retryMs", "mode", "signal", "budgetMs", "maxOps", "leaseMs", "onProgress"];

/**
 * Runs one slice of cleanup from a Durable Object's `alarm()` handler and
 * sets the object's alarm again: at once when its `maxOps` or `budgetMs`
 * stopped it with more to do, after `periodMs` (default 24 h) when it is
 * done, after `retryMs` (default 10 s) when it failed or stopped otherwise
 * (aborted, closed, another isolate's run holding the lease). Alarms are delivered at least once: a repeated delivery
 * runs one more slice, which is safe (a run re-checks every item it
 * deletes). Other options go to `run()` (`maxOps`, `budgetMs`, `mode`).
 */
export async function runFromAlarm(sweeper, storage, options) {
  if (!isDurableObjectStorage(storage)) {
    throw new TypeError(`kvsweep: runFromAlarm(sweeper, storage, options): storage must be a Durable Object's ctx.storage, got ${describe(storage)}`);
  }
  const call = "kvsweep: runFromAlarm(sweeper, storage, options)";
  if (!(sweeper instanceof Sweeper)) {
    throw new TypeError(`${call}: sweeper must be a Sweeper, got ${describe(sweeper)}`);
  }
  if (options !== undefined && (options === null || typeof options !== "object")) {
    throw new TypeError(`${call}: options must be an object, got ${describe(options)}`);
  }
  const unknown = Object.keys(options ?? {}).find((k) => !ALARM_OPTIONS.includes(k));
  if (unknown !== undefined) {
    throw new TypeError(`${call}: unknown option ${JSON.stringify(unknown)}; the options are ${ALARM_OPTIONS.join(", ")}`);
  }
  const { periodMs = 86_400_000, retryMs = 10_000, ...runOptions } = options ?? {};
  for (const [name, v] of [["periodMs", periodMs], ["retryMs", retryMs]]) {
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new TypeError(`${call}: options.${name} must be a whole number of milliseconds, 1 or more, got ${describe(v)}`);
    }
  }
  let report;
  try {
    report = await sweeper.run(runOptions);
  } catch (e) {
    // A run option refused: a mistake no retry mends, said by this call's name.
    if (typeof e?.message === "string" && e.message.startsWith("kvsweep: run options")) {
      throw new TypeError(`${call}: options${e.message.slice("kvsweep: run options".length)}`);
    }
    await setAlarmBy(storage, Date.now() + retryMs);
    throw e;
  }
  // At once only after a slice stopped by its limits, which stop a slice
  // only once it got on (deleted something or saved a place; one that
  // could not is refused, as too few maxOps). Aborted, closed, or another
  // isolate's run holding the lease: later. (A resumed report's `deleted`
  // counts the slices before, so it cannot tell.)
  const next = report.done ? periodMs : report.stopped === "ops" || report.stopped === "budget" ? 1 : retryMs;
  await setAlarmBy(storage, Date.now() + next);
  return report;
}

/**
 * Sets the Durable Object's alarm for `at`, unless it is set sooner: one
 * set while a run went (`scheduleCleanup` after a write) stays.
 */
async function setAlarmBy(storage, at) {
  const current = await storage.getAlarm();
  if (current === null || current > at) await storage.setAlarm(at);
}

/**
 * Asks for a cleanup on a Durable Object's alarm `delayMs` from now (default
 * 0), unless the alarm is set sooner already. Call it from the object's
 * constructor or after writes; `runFromAlarm` does the rest.
 */
export async function scheduleCleanup(storage, delayMs = 0) {
  if (!isDurableObjectStorage(storage)) {
    throw new TypeError(`kvsweep: scheduleCleanup(storage, delayMs): storage must be a Durable Object's ctx.storage, got ${describe(storage)}`);
  }
  if (!Number.isSafeInteger(delayMs) || delayMs < 0) {
    throw new TypeError(`kvsweep: scheduleCleanup(storage, delayMs): delayMs must be a whole number of milliseconds, 0 or more, got ${describe(delayMs)}`);
  }
  await setAlarmBy(storage, Date.now() + delayMs);
}
