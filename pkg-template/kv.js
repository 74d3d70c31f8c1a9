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
// - Map, unstorage, keyv, generic objects: key `name`; keyv holds base64 text.
import { kvStoreOfDriver } from "./kvsweep.js";

const PREFIX = "kvsweep/";

function describe(v) {
  if (v === null || v === undefined || typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "function") return "a function";
  if (Array.isArray(v)) return "an array";
  const name = v?.constructor?.name;
  return !name || name === "Object" ? "an object" : `${/^[AEIOU]/.test(name) ? "an" : "a"} ${name}`;
}

const fn = (x, ...names) => x != null && names.every((n) => typeof x[n] === "function");

/** Bytes as a fresh Uint8Array, from what a backend handed back. */
function bytesOf(v) {
  if (v === undefined || v === null) return undefined;
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (v instanceof ArrayBuffer) return new Uint8Array(v.slice(0));
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  if (typeof v === "string") return fromBase64(v);
  // A Node Buffer serialised to JSON by a store (keyv's JSON serialiser).
  if (v && v.type === "Buffer" && Array.isArray(v.data)) return Uint8Array.from(v.data);
  return undefined;
}

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
function serialised(target, task) {
  const before = queues.get(target) ?? Promise.resolve();
  const run = before.then(task, task);
  queues.set(target, run.then(() => undefined, () => undefined));
  return run;
}

/**
 * A driver over a backend that can list every name under a prefix (a Map,
 * unstorage, keyv, a generic object): sorted and paged here.
 */
function sortedDriver({ kind, target, caps, prefix, read, write, remove, names, versioned }) {
  const d = {
    kind,
    prefix,
    caps,
    ops: 0,
    async get(list) {
      const out = [];
      for (const name of list) {
        d.ops++;
        const raw = await read(name);
        const bytes = bytesOf(raw);
        // A versioned backend (a Map) names the version by the object held.
        out.push([bytes, versioned ? raw ?? null : bytes ?? null]);
      }
      return out;
    },
    async list(tablePrefix, startAfter, _cursor, limit) {
      d.ops++;
      const all = (await names(tablePrefix)).filter(
        (n) => n.startsWith(tablePrefix) && (startAfter === undefined || compareNames(n, startAfter) > 0),
      );
      all.sort(compareNames);
      const items = [];
      for (const name of all.slice(0, limit)) {
        d.ops++;
        const bytes = bytesOf(await read(name));
        if (bytes) items.push([name, bytes]);
      }
      return { items };
    },
    apply(checks, writes) {
      return serialised(target, async () => {
        for (const [name, token] of checks) {
          d.ops++;
          const now = await read(name);
          const same = versioned ? (now ?? null) === token : equal(bytesOf(now) ?? null, token);
          if (!same) return false;
        }
        for (const [name, bytes] of writes) {
          d.ops++;
          if (bytes === null) await remove(name);
          else await write(name, bytes);
        }
        return true;
      });
    },
  };
  return d;
}

function mapDriver(map, prefix) {
  return sortedDriver({
    kind: "map",
    target: map,
    prefix,
    // Only this realm reaches a Map, and every write goes through one queue:
    // checks hold, and a batch's writes happen with no await between them.
    caps: { atomic: true, compareAndSet: true, visibilityMs: 0, nativeExpiry: false },
    read: (n) => map.get(n),
    write: (n, b) => void map.set(n, b),
    remove: (n) => void map.delete(n),
    names: () => [...map.keys()].filter((k) => typeof k === "string"),
    versioned: true,
  });
}

/** unstorage: names are escaped, since unstorage rewrites ":", "/", "\\", "?" and "#". */
function unstorageDriver(storage, prefix, visibilityMs) {
  const esc = (n) => encodeURIComponent(n).replace(/\./g, "%2E");
  const unesc = (k) => {
    try {
      return decodeURIComponent(k);
    } catch {
      return undefined;
    }
  };
  return sortedDriver({
    kind: "unstorage",
    target: storage,
    prefix,
    caps: { atomic: false, compareAndSet: false, visibilityMs, nativeExpiry: false },
    read: (n) => storage.getItemRaw(esc(n)),
    write: (n, b) => storage.setItemRaw(esc(n), b),
    remove: (n) => storage.removeItem(esc(n)),
    names: async () => (await storage.getKeys()).map(unesc).filter((n) => n !== undefined),
  });
}

/** keyv: values as base64 text, which every keyv store and serialiser keeps exactly. */
function keyvDriver(keyv, prefix, visibilityMs) {
  return sortedDriver({
    kind: "keyv",
    target: keyv,
    prefix,
    caps: { atomic: false, compareAndSet: false, visibilityMs, nativeExpiry: false },
    read: (n) => keyv.get(n),
    write: (n, b) => keyv.set(n, toBase64(b)),
    remove: (n) => keyv.delete(n),
    names: async () => {
      const out = [];
      for await (const [k] of keyv.iterator()) if (typeof k === "string") out.push(k);
      return out;
    },
  });
}

/** Any object with get, put, delete and list(prefix) (names, { keys }, or an async iterable). */
function genericDriver(x, prefix, visibilityMs) {
  return sortedDriver({
    kind: "kv",
    target: x,
    prefix,
    caps: { atomic: false, compareAndSet: false, visibilityMs, nativeExpiry: false },
    read: (n) => x.get(n),
    write: (n, b) => x.put(n, b),
    remove: (n) => x.delete(n),
    names: async (p) => {
      const listed = await x.list(p);
      const out = [];
      const add = (k) => out.push(typeof k === "string" ? k : k?.name ?? k?.key);
      if (Array.isArray(listed)) listed.forEach(add);
      else if (Array.isArray(listed?.keys)) listed.keys.forEach(add);
      else if (listed && typeof listed[Symbol.asyncIterator] === "function") for await (const k of listed) add(k);
      else if (listed && typeof listed[Symbol.iterator] === "function") for (const k of listed) add(k);
      else throw new TypeError(`kvsweep: kvStore: list(prefix) must return names (an array, { keys }, or an iterable), got ${describe(listed)}`);
      return out.filter((k) => typeof k === "string");
    },
  });
}

/** Cloudflare Workers KV: no compare-and-set, 60 s until a write shows everywhere, keys expire themselves. */
function workersKvDriver(kv, prefix) {
  const META_MAX = 700; // bytes kept in a key's metadata too (its limit is 1024 bytes of JSON)
  const d = {
    kind: "workers-kv",
    prefix,
    caps: { atomic: false, compareAndSet: false, visibilityMs: 60_000, nativeExpiry: true, maxValueBytes: 25 * 1024 * 1024 },
    ops: 0,
    async get(names) {
      return Promise.all(
        names.map(async (name) => {
          d.ops++;
          const bytes = bytesOf(await kv.get(name, "arrayBuffer"));
          return [bytes, null];
        }),
      );
    },
    async list(tablePrefix, startAfter, cursor, limit) {
      const items = [];
      let next = cursor;
      // Without a cursor, a start after a name is found by listing from the
      // table's first name (Workers KV lists by prefix and cursor only).
      const skip = next === undefined ? startAfter : undefined;
      for (;;) {
        d.ops++;
        const page = await kv.list({ prefix: tablePrefix, cursor: next, limit: Math.min(1000, Math.max(1, limit - items.length)) });
        const slow = [];
        for (const k of page.keys) {
          if (skip !== undefined && compareNames(k.name, skip) <= 0) continue;
          const inline = typeof k.metadata?.v === "string" ? fromBase64(k.metadata.v) : undefined;
          const slot = items.push([k.name, inline]) - 1;
          if (!inline) slow.push(slot);
        }
        await Promise.all(
          slow.map(async (slot) => {
            d.ops++;
            items[slot][1] = bytesOf(await kv.get(items[slot][0], "arrayBuffer"));
          }),
        );
        // A page may come back short, even empty, before the listing is complete.
        if (page.list_complete) return { items: items.filter((i) => i[1]) };
        next = page.cursor;
        if (items.length >= limit) return { items: items.filter((i) => i[1]), cursor: next };
      }
    },
    async apply(_checks, writes) {
      // No compare-and-set: checks cannot be made here (see SPEC §6 on the
      // grace rule that keeps such stores safe). One write after another, in
      // order: kvsweep orders a batch so that any prefix of it is consistent.
      for (const [name, bytes, expiresAt] of writes) {
        d.ops++;
        if (bytes === null) {
          await kv.delete(name);
          continue;
        }
        const options = {};
        if (bytes.length <= META_MAX) options.metadata = { v: toBase64(bytes) };
        // Workers KV expires keys at least 60 s ahead; nearer ones are left to a run.
        if (expiresAt !== undefined && expiresAt - Date.now() >= 120_000) options.expiration = Math.floor(expiresAt / 1000);
        await kv.put(name, bytes, options);
      }
      return true;
    },
  };
  return d;
}

/** Splits a value into chunks of `max` bytes. */
function split(bytes, max) {
  const parts = [];
  for (let i = 0; i < bytes.length; i += max) parts.push(bytes.subarray(i, i + max));
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

/** Deno KV: atomic commits with versionstamp checks (at most 100 checks and 1,000 mutations each), values up to 64 KiB. */
function denoKvDriver(kv, prefix) {
  const MAX_VALUE = 65536;
  const CHUNK = "kvsweep-chunk";
  const d = {
    kind: "deno-kv",
    prefix,
    caps: { atomic: true, compareAndSet: true, maxBatchOps: 1000, maxBatchChecks: 100, visibilityMs: 0, nativeExpiry: true },
    ops: 0,
    async value(name, v) {
      if (!isHead(v)) return bytesOf(v);
      const keys = Array.from({ length: v.chunks }, (_, i) => [CHUNK, name, i]);
      const parts = [];
      for (let i = 0; i < keys.length; i += 10) {
        d.ops++;
        for (const e of await kv.getMany(keys.slice(i, i + 10))) {
          if (!(e.value instanceof Uint8Array)) return undefined; // a chunk gone: the record is unreadable
          parts.push(e.value);
        }
      }
      return join(parts, v.size);
    },
    async get(names) {
      const out = [];
      for (let i = 0; i < names.length; i += 10) {
        d.ops++;
        const got = await kv.getMany(names.slice(i, i + 10).map((n) => [n]));
        for (const e of got) out.push([await d.value(e.key[0], e.value), e.versionstamp]);
      }
      return out;
    },
    async list(tablePrefix, startAfter, _cursor, limit) {
      d.ops++;
      const start = startAfter === undefined ? [tablePrefix] : [startAfter + "\0"];
      const items = [];
      for await (const e of kv.list({ start, end: [prefixEnd(tablePrefix)] }, { limit })) {
        if (e.key.length !== 1 || typeof e.key[0] !== "string") continue;
        const bytes = await d.value(e.key[0], e.value);
        if (bytes) items.push([e.key[0], bytes]);
      }
      return { items };
    },
    async apply(checks, writes) {
      const atomic = kv.atomic();
      for (const [name, versionstamp] of checks) atomic.check({ key: [name], versionstamp });
      // Chunks go first, each in commits of their own: a crash leaves chunks
      // no record names, never a record without its chunks.
      const dropped = writes.filter(([, bytes]) => bytes === null).map(([name]) => name);
      const heads = new Map();
      for (let i = 0; i < dropped.length; i += 10) {
        d.ops++;
        for (const e of await kv.getMany(dropped.slice(i, i + 10).map((n) => [n]))) if (isHead(e.value)) heads.set(e.key[0], e.value.chunks);
      }
      let mutations = 0;
      for (const [name, bytes, expiresAt] of writes) {
        const options = expiresAt !== undefined && expiresAt > Date.now() ? { expireIn: expiresAt - Date.now() } : undefined;
        mutations++;
        if (bytes === null) {
          atomic.delete([name]);
          for (let i = 0; i < (heads.get(name) ?? 0); i++) {
            atomic.delete([CHUNK, name, i]);
            mutations++;
          }
        } else if (bytes.length > MAX_VALUE) {
          const parts = split(bytes, MAX_VALUE);
          for (let i = 0; i < parts.length; i += 10) {
            const chunkCommit = kv.atomic();
            parts.slice(i, i + 10).forEach((p, j) => chunkCommit.set([CHUNK, name, i + j], p, options));
            d.ops++;
            await chunkCommit.commit();
          }
          atomic.set([name], { chunks: parts.length, size: bytes.length }, options);
        } else {
          atomic.set([name], bytes, options);
        }
      }
      if (mutations > 1000 || checks.length > 100) {
        throw new Error(`kvsweep: a Deno KV commit would hold ${mutations} mutations and ${checks.length} checks, over Deno KV's limits (1,000 and 100); use a smaller batchSize`);
      }
      d.ops++;
      const result = await atomic.commit();
      return result.ok;
    },
  };
  return d;
}

/**
 * Durable Object storage: strongly consistent. While the object awaits its
 * storage no other event is delivered to it (input gates), so a read and the
 * writes after it are one step; writes made with no await between them
 * commit together (write coalescing). Values up to 128 KiB, 128 keys a call.
 */
function durableObjectDriver(storage, prefix) {
  const MAX_VALUE = 128 * 1024;
  const CHUNK = "kvsweep-chunk/";
  const chunkKey = (name, i) => `${CHUNK}${name}/${i}`;
  const d = {
    kind: "durable-object",
    prefix,
    caps: { atomic: true, compareAndSet: true, visibilityMs: 0, nativeExpiry: false },
    ops: 0,
    async many(keys) {
      const out = new Map();
      for (let i = 0; i < keys.length; i += 128) {
        d.ops++;
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
        out.push([bytes, bytes ?? null]);
      }
      return out;
    },
    async list(tablePrefix, startAfter, _cursor, limit) {
      d.ops++;
      const options = { prefix: tablePrefix, limit };
      if (startAfter !== undefined) options.startAfter = startAfter;
      const items = [];
      for (const [name, v] of await storage.list(options)) {
        const bytes = await d.value(name, v);
        if (bytes) items.push([name, bytes]);
      }
      return { items };
    },
    async apply(checks, writes) {
      const now = await d.many(checks.map(([n]) => n));
      for (const [name, token] of checks) {
        if (!equal((await d.value(name, now.get(name))) ?? null, token)) return false;
      }
      const dropped = writes.filter(([, b]) => b === null).map(([n]) => n);
      const heads = await d.many(dropped);
      const puts = {};
      const deletes = [];
      for (const [name, bytes] of writes) {
        if (bytes === null) {
          deletes.push(name);
          const head = heads.get(name);
          if (isHead(head)) for (let i = 0; i < head.chunks; i++) deletes.push(chunkKey(name, i));
        } else if (bytes.length > MAX_VALUE) {
          const parts = split(bytes, MAX_VALUE);
          parts.forEach((p, i) => (puts[chunkKey(name, i)] = p));
          puts[name] = { chunks: parts.length, size: bytes.length };
        } else {
          puts[name] = bytes;
        }
      }
      // Every call now, none awaited in between: one atomic write.
      const calls = [];
      const names = Object.keys(puts);
      for (let i = 0; i < names.length; i += 128) {
        d.ops++;
        calls.push(storage.put(Object.fromEntries(names.slice(i, i + 128).map((n) => [n, puts[n]]))));
      }
      for (let i = 0; i < deletes.length; i += 128) {
        d.ops++;
        calls.push(storage.delete(deletes.slice(i, i + 128)));
      }
      await Promise.all(calls);
      return true;
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
 * `base` with blob bytes (table b) in an R2 bucket, under the same names.
 * Bytes go up before the batch that records them commits, and are deleted
 * only after the batch that dropped their record did: a crash between the
 * two leaves bytes without a record, which collectR2Orphans finds after the
 * grace period, never a record without its bytes.
 */
function withR2(base, bucket) {
  const blobs = `${base.prefix}b/`;
  const records = `${base.prefix}c/`;
  const isBlob = (n) => n.startsWith(blobs);
  let own = 0;
  const d = {
    kind: `${base.kind}+r2`,
    prefix: base.prefix,
    caps: base.caps,
    bucket,
    base,
    get ops() {
      return base.ops + own;
    },
    async blobBytes(name) {
      own++;
      const obj = await bucket.get(name);
      return obj ? new Uint8Array(await obj.arrayBuffer()) : undefined;
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
      const got = await base.get(rest.map((i) => names[i]));
      rest.forEach((i, j) => (out[i] = got[j]));
      return out;
    },
    async list(tablePrefix, startAfter, cursor, limit) {
      if (tablePrefix !== blobs) return base.list(tablePrefix, startAfter, cursor, limit);
      own++;
      const page = await bucket.list({ prefix: blobs, startAfter: cursor === undefined ? startAfter : undefined, cursor, limit: Math.min(limit, 1000) });
      const items = [];
      for (const o of page.objects) {
        const bytes = await d.blobBytes(o.key);
        if (bytes) items.push([o.key, bytes]);
      }
      return { items, cursor: page.truncated ? page.cursor : undefined };
    },
    async apply(checks, writes) {
      // Blob bytes never change under a name: a check of them is a check of presence.
      for (const [name, token] of checks.filter(([n]) => isBlob(n))) {
        own++;
        if (((await bucket.head(name)) !== null) !== (token !== null)) return false;
      }
      const puts = writes.filter(([n, b]) => isBlob(n) && b !== null);
      const deletes = writes.filter(([n, b]) => isBlob(n) && b === null).map(([n]) => n);
      await Promise.all(
        puts.map(([name, bytes]) => {
          own++;
          return bucket.put(name, bytes);
        }),
      );
      const ok = await base.apply(
        checks.filter(([n]) => !isBlob(n)),
        writes.filter(([n]) => !isBlob(n)),
      );
      if (!ok) return false;
      for (let i = 0; i < deletes.length; i += 1000) {
        own++;
        await bucket.delete(deletes.slice(i, i + 1000));
      }
      return true;
    },
    /** Bytes in the bucket whose record is gone, older than `graceMs`. */
    async orphans({ graceMs, dryRun, limit }) {
      const out = { checked: 0, orphans: [], bytes: 0, deleted: 0 };
      let cursor;
      do {
        own++;
        const page = await bucket.list({ prefix: blobs, cursor, limit: 1000 });
        const old = page.objects.filter((o) => o.uploaded.getTime() < Date.now() - graceMs);
        out.checked += page.objects.length;
        const recorded = await base.get(old.map((o) => records + o.key.slice(blobs.length)));
        const doomed = old.filter((_, i) => recorded[i][0] === undefined).slice(0, Math.max(0, limit - out.orphans.length));
        for (const o of doomed) {
          out.orphans.push(o.key.slice(o.key.indexOf("\0") + 1));
          out.bytes += o.size;
        }
        if (!dryRun && doomed.length) {
          // Looked at again just before: bytes put again since the listing are young.
          const still = [];
          for (const o of doomed) {
            own++;
            const now = await bucket.head(o.key);
            if (now && now.uploaded.getTime() < Date.now() - graceMs) still.push(o.key);
          }
          for (let i = 0; i < still.length; i += 1000) {
            own++;
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
 * `dryRun: true` only lists them. Returns `{ checked, orphans, bytes, deleted }`.
 */
export async function collectR2Orphans(store, o = {}) {
  const d = drivers.get(store);
  if (!d?.bucket) throw new TypeError(`kvsweep: collectR2Orphans(store, options): store must be a kvStore or durableObjectStore made with { blobs: r2(bucket) }, got ${describe(store)}`);
  const { graceMs = 600_000, dryRun = false, limit = Infinity } = o ?? {};
  if (!Number.isSafeInteger(graceMs) || graceMs < 0) {
    throw new TypeError(`kvsweep: collectR2Orphans(store, options): options.graceMs must be a whole number of milliseconds, 0 or more, got ${describe(graceMs)}`);
  }
  if (d.caps.compareAndSet === false && graceMs < d.caps.visibilityMs + 60_000) {
    throw new TypeError(`kvsweep: collectR2Orphans(store, options): options.graceMs must be at least ${d.caps.visibilityMs + 60_000} ms on a ${d.base.kind} store (its visibility window plus the longest write)`);
  }
  return d.orphans({ graceMs, dryRun: dryRun === true, limit });
}

function make(driver) {
  const store = kvStoreOfDriver(driver);
  drivers.set(store, driver);
  return store;
}

function options(o, what) {
  if (o === undefined) return { prefix: PREFIX, visibilityMs: 0 };
  if (o === null || typeof o !== "object") throw new TypeError(`kvsweep: ${what}: options must be an object, got ${describe(o)}`);
  const prefix = o.prefix ?? PREFIX;
  if (typeof prefix !== "string") throw new TypeError(`kvsweep: ${what}: options.prefix must be a string, got ${describe(prefix)}`);
  if (prefix.includes("\0")) throw new TypeError(`kvsweep: ${what}: options.prefix must not contain U+0000`);
  const blobs = o.blobs;
  if (blobs !== undefined && !blobs?.[R2]) throw new TypeError(`kvsweep: ${what}: options.blobs must be r2(bucket), got ${describe(blobs)}`);
  const visibilityMs = o.visibilityMs ?? 0;
  if (!Number.isSafeInteger(visibilityMs) || visibilityMs < 0) {
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
  if (x instanceof Map) return mapDriver(x, prefix);
  if (isDurableObjectStorage(x)) return durableObjectDriver(x, prefix);
  if (isDenoKv(x)) return denoKvDriver(x, prefix);
  if (isWorkersKv(x)) return workersKvDriver(x, prefix);
  if (isUnstorage(x)) return unstorageDriver(x, prefix, visibilityMs);
  if (isKeyv(x)) return keyvDriver(x, prefix, visibilityMs);
  if (fn(x, "get", "put", "delete", "list")) return genericDriver(x, prefix, visibilityMs);
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
 * (unstorage, keyv and generic objects; the others know their own).
 */
export function kvStore(x, o) {
  return make(driverOf(x, o));
}

/** A kvsweep store in a Durable Object's storage (`ctx.storage`). */
export function durableObjectStore(storage, o) {
  if (!isDurableObjectStorage(storage)) {
    throw new TypeError(`kvsweep: durableObjectStore(storage): storage must be a Durable Object's ctx.storage, got ${describe(storage)}`);
  }
  const { prefix, bucket } = options(o, "durableObjectStore(storage)");
  const d = durableObjectDriver(storage, prefix);
  return make(bucket ? withR2(d, bucket) : d);
}

/**
 * Runs one slice of cleanup from a Durable Object's `alarm()` handler and
 * sets the object's alarm again: at once when the run has more to do, after
 * `periodMs` (default 24 h) when it is done, after `retryMs` (default 10 s)
 * when it failed. Alarms are delivered at least once: a repeated delivery
 * runs one more slice, which is safe (a run re-checks every item it
 * deletes). Other options go to `run()` (`maxOps`, `budgetMs`, `mode`).
 */
export async function runFromAlarm(sweeper, storage, options = {}) {
  if (!isDurableObjectStorage(storage)) {
    throw new TypeError(`kvsweep: runFromAlarm(sweeper, storage, options): storage must be a Durable Object's ctx.storage, got ${describe(storage)}`);
  }
  const { periodMs = 86_400_000, retryMs = 10_000, ...runOptions } = options ?? {};
  for (const [name, v] of [["periodMs", periodMs], ["retryMs", retryMs]]) {
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new TypeError(`kvsweep: runFromAlarm(sweeper, storage, options): options.${name} must be a whole number of milliseconds, 1 or more, got ${describe(v)}`);
    }
  }
  let report;
  try {
    report = await sweeper.run(runOptions);
  } catch (e) {
    await storage.setAlarm(Date.now() + retryMs);
    throw e;
  }
  // Another isolate's run holds the lease: try again when it may be done.
  const next = report.done ? periodMs : report.stopped === "leased" ? retryMs : 1;
  await storage.setAlarm(Date.now() + next);
  return report;
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
  const at = Date.now() + delayMs;
  const current = await storage.getAlarm();
  if (current === null || current > at) await storage.setAlarm(at);
}
