// OPFS (issue #11): blob bytes as files in a directory of the origin private
// file system, `kvsweep-<name>`, one file per blob named by its SHA-256;
// every other record (entries, values, blob records with their reference
// counts, temps, namespaces, run state) in the IndexedDB database
// `kvsweep-opfs:<name>` (see idbkv.js).
//
// The IndexedDB transaction stays the one commit point, so the store is as
// atomic as IndexedDB alone:
// - a blob's file is written before the transaction that records it, so
//   that no reader ever sees part of it (see writeFile);
// - a blob's file is removed after the transaction that deleted its record;
// - both hold one Web Lock per store (`kvsweep-opfs:<name>`), in every tab
//   and worker, so that a file is never removed between another writer's
//   write of it and that writer's commit.
// A crash between writing a file and recording it (or between deleting a
// record and its file) leaves a file that no record claims: the next
// `openOpfs` removes it, holding the lock, when no write can be in flight.
//
// In a dedicated worker, files are written through sync access handles
// (`createSyncAccessHandle`); elsewhere through `createWritable`.
import { kvStoreOfDriver } from "./kvsweep.js";
import { CHECKED_BLOBS, OWN_LOCKS, describe, wellFormed } from "./api.js";
import { checkOpen, closesWith, done, loaded, openRecords, recordsDriver, outOfCalls, runLock } from "./idbkv.js";

const BLOBS = "b/\0"; // blob bytes: the names of files (blobs have no namespace)
const RECORDS = "c/\0"; // blob records
const HASH = /^[0-9a-f]{64}$/;
const isBlob = (name) => name.startsWith("b/");
const PART = ".part-";

function fileOf(name) {
  const file = name.slice(BLOBS.length);
  if (!name.startsWith(BLOBS) || !HASH.test(file)) {
    throw new Error(`kvsweep: an OPFS store keeps blob bytes by SHA-256 id only, got ${JSON.stringify(name)}`);
  }
  return file;
}

const notFound = (e) => e?.name === "NotFoundError";

async function readFile(dir, file) {
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await dir.getFileHandle(file);
      const bytes = new Uint8Array(await (await handle.getFile()).arrayBuffer());
      // Empty while its first write is under way (see writeFile): not there yet.
      return bytes.length === 0 && file !== EMPTY ? null : bytes;
    } catch (e) {
      if (notFound(e)) return null;
      // Replaced or removed between getFile() and reading it: read again.
      if (e?.name !== "NotReadableError" || attempt === 2) throw e;
    }
  }
}

/** The SHA-256 of no bytes: the one blob whose file may be empty. */
const EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** The size of `file`, or null when it is not there. */
async function sizeOf(dir, file) {
  try {
    return (await (await dir.getFileHandle(file)).getFile()).size;
  } catch (e) {
    if (notFound(e)) return null;
    throw e;
  }
}

/**
 * Writes `bytes` as `file`, so that no reader ever sees part of it, and
 * never over a file there whole (a file is named by its bytes' SHA-256: as
 * many bytes, the same bytes), which may be live: a browser may replace a
 * file by removing it first, in a step of its own. `createWritable` writes
 * a swap file that replaces the file on `close()` (until then the file is
 * empty, which `readFile` takes for no file), and a sync access handle
 * (dedicated workers) writes a new file of another name, moved into place
 * after. When `expectNew` (the batch checks that no record claims the file:
 * it is new, a crash's leftover, or, on a wrong guess, the live file of the
 * same bytes) the file is looked up while the bytes are written, not
 * before (a lookup first took about 0.7 ms of a 64 KiB blob's 5 ms).
 */
async function writeFile(dir, file, bytes, sync, expectNew) {
  const there = sizeOf(dir, file);
  there.catch(() => {}); // awaited below, unless the write fails first
  if (!expectNew && (await there) === bytes.length) return;
  if (!sync) {
    const w = await (await dir.getFileHandle(file, { create: true })).createWritable();
    try {
      await w.write(bytes);
      // Whole already: the swap file goes, and the file stays as it is. A
      // lookup that failed (a browser that would not read a file a writable
      // is open on, say) leaves it to the swap file, as a plain write would.
      const size = await there.catch(() => null);
      await (size === bytes.length ? w.abort() : w.close());
    } catch (e) {
      await w.abort().catch(() => {});
      throw e;
    }
    return;
  }
  // A name no file has had (122 random bits): the file is new and empty, so
  // the bytes need no truncate before them (another 0.8 ms).
  const part = `${file}${PART}${crypto.randomUUID()}`;
  const handle = await dir.getFileHandle(part, { create: true });
  try {
    const access = await handle.createSyncAccessHandle();
    try {
      for (let at = 0; at < bytes.length; ) at += access.write(bytes.subarray(at), { at });
      access.flush();
    } finally {
      access.close();
    }
    const size = await there;
    if (size === bytes.length) {
      await dir.removeEntry(part).catch(() => {}); // else the next openOpfs, run or plan removes it
      return;
    }
    // Not whole, so not live: a crash's leftover, gone before the move.
    if (size !== null) await removeFile(dir, file);
    await handle.move(file);
  } catch (e) {
    await dir.removeEntry(part).catch(() => {});
    throw e;
  }
}

async function removeFile(dir, file) {
  try {
    await dir.removeEntry(file);
  } catch (e) {
    if (!notFound(e)) throw e;
  }
}

/** The names of the directory's files, sorted. */
async function filesOf(dir) {
  const out = [];
  for await (const [name, handle] of dir.entries()) if (handle.kind === "file") out.push(name);
  return out.sort();
}

/** Holds the store's Web Lock while `fn` runs (where there are Web Locks). */
const locked = (lock, fn) => (globalThis.navigator?.locks ? navigator.locks.request(lock, fn) : fn());

/**
 * The OPFS driver: IndexedDB records (idbkv.js), and the blob table's bytes
 * as files of `dir`.
 */
function opfsDriver(db, dir, lock, sync) {
  const records = recordsDriver(db, "opfs", 250);
  let swept = -Infinity; // when a listing last removed unclaimed files (performance.now())
  const d = {
    kind: "opfs",
    prefix: "",
    caps: records.caps,
    get ops() {
      return records.ops;
    },
    set ops(n) {
      records.ops = n;
    },
    async get(names) {
      const blobs = names.filter(isBlob);
      if (blobs.length === 0) return records.get(names);
      // The files outlive the store's connection: closed, it reads nothing.
      checkOpen(db);
      const others = names.filter((n) => !isBlob(n));
      records.ops += blobs.length;
      const [got, files] = await Promise.all([others.length ? records.get(others) : [], Promise.all(blobs.map((n) => readFile(dir, fileOf(n))))]);
      const by = new Map();
      others.forEach((n, i) => by.set(n, got[i]));
      // A blob's bytes are its name's: whether the file is there is its version.
      blobs.forEach((n, i) => by.set(n, [files[i], files[i] ? true : null]));
      return names.map((n) => by.get(n));
    },
    async list(prefix, startAfter, cursor, limit, maxCalls = Infinity) {
      // A listing of the blob records (a run's, a plan's) begins by removing
      // files no record claims, at most once a minute: a crashed tab or
      // worker leaves them while others keep the store open. Only under Web
      // Locks (without them no write would be kept out), and as
      // housekeeping: a failure fails nothing.
      if (prefix === RECORDS.slice(0, -1) && startAfter === undefined && maxCalls >= 1 && globalThis.navigator?.locks && performance.now() - swept > 60_000) {
        swept = performance.now();
        await removeUnclaimed(db, dir, lock).catch(() => {});
      }
      if (!isBlob(prefix)) return records.list(prefix, startAfter, cursor, limit, maxCalls);
      checkOpen(db);
      if (maxCalls < 1) throw outOfCalls();
      records.ops += 1;
      const names = (await filesOf(dir)).filter((f) => HASH.test(f)).map((f) => BLOBS + f);
      const page = names.filter((n) => n.startsWith(prefix) && (startAfter === undefined || n > startAfter)).slice(0, limit);
      const items = await Promise.all(page.map(async (n) => [n, await readFile(dir, fileOf(n))]));
      return { items, done: page.length < limit };
    },
    async apply(checks, writes) {
      if (!writes.some(([n]) => isBlob(n)) && !checks.some(([n]) => isBlob(n))) return records.apply(checks, writes);
      checkOpen(db); // before any file is written, and again once the lock is held
      return locked(lock, async () => {
        checkOpen(db);
        for (const [name, token] of checks.filter(([n]) => isBlob(n))) {
          if (((await readFile(dir, fileOf(name))) !== null) !== (token !== null)) return false;
        }
        // Files first: invisible to the store until the transaction records them.
        const written = [];
        // Files whose record the transaction checks is absent: new blobs',
        // the common case (see writeFile).
        const expectNew = new Set(checks.filter(([n, token]) => n.startsWith(RECORDS) && token === null).map(([n]) => n.slice(RECORDS.length)));
        let ok = false;
        try {
          for (const [name, bytes] of writes) {
            if (isBlob(name) && bytes !== null) {
              // Listed first: a write that fails may leave an empty file.
              written.push(fileOf(name));
              await writeFile(dir, fileOf(name), bytes, sync, expectNew.has(fileOf(name)));
            }
          }
          records.ops += writes.filter(([n]) => isBlob(n)).length;
          // A batch that removes files commits durably first: were a system
          // crash to undo a relaxed commit, a record would come back
          // claiming a file that is gone.
          const removes = writes.some(([n, b]) => isBlob(n) && b === null);
          ok = await records.commit(
            checks.filter(([n]) => !isBlob(n)),
            writes.filter(([n]) => !isBlob(n)),
            removes ? "strict" : undefined,
          );
        } finally {
          // Not recorded after all: what this batch wrote goes, unless a
          // record claims it (written before by another batch).
          if (!ok && written.length) await removeUnrecorded(db, dir, written).catch(() => {});
        }
        // Files last: only once no record claims them. The records are gone,
        // so the blobs are: a file that cannot go yet (a sync access handle
        // of another worker holds it) fails nothing, and the next listing
        // for a run or plan, or the next openOpfs, removes it.
        if (ok) {
          for (const [name, bytes] of writes) {
            if (isBlob(name) && bytes === null) await removeFile(dir, fileOf(name)).catch(() => (swept = -Infinity));
          }
        }
        return ok;
      });
    },
  };
  return d;
}

/** Removes those of `files` that no blob record claims (the caller holds the lock). */
async function removeUnrecorded(db, dir, files) {
  const store = db.transaction("records").objectStore("records");
  const claimed = await Promise.all(files.map((f) => done(store.get(RECORDS + f))));
  for (let i = 0; i < files.length; i++) if (claimed[i] === undefined) await removeFile(dir, files[i]);
}

/**
 * Removes the files no record claims — left by a crash between writing a
 * file and recording it, or between deleting a record and its file — and
 * the parts of writes a crash cut short. Holds the store's lock, so no write
 * is in flight.
 */
async function removeUnclaimed(db, dir, lock) {
  return locked(lock, async () => {
    const range = IDBKeyRange.bound(RECORDS, RECORDS + "\uffff");
    const claimed = new Set((await done(db.transaction("records").objectStore("records").getAllKeys(range))).map((n) => n.slice(RECORDS.length)));
    for (const file of await filesOf(dir)) {
      if (file.includes(PART) || (HASH.test(file) && !claimed.has(file))) await removeFile(dir, file);
    }
  });
}

function checkName(name, call) {
  if (typeof name !== "string" || name === "") {
    throw new TypeError(`kvsweep: ${call}(name): name must be a non-empty string, got ${describe(name)}`);
  }
  if (name.length > 200 || /[\/\\\0]/.test(name)) {
    throw new TypeError(`kvsweep: ${call}(name): name must be at most 200 characters, without / \\ or U+0000 (it names a directory), got ${JSON.stringify(name.slice(0, 40))}`);
  }
  if (!wellFormed(name)) throw new TypeError(`kvsweep: ${call}(name): name holds a lone surrogate (it must be well-formed UTF-16: it names a directory)`);
  if (typeof navigator === "undefined" || typeof navigator.storage?.getDirectory !== "function" || typeof indexedDB === "undefined") {
    throw new TypeError(`kvsweep: ${call}(name): the origin private file system and IndexedDB are not available here (pages, workers and service workers have them, in a secure context: https or localhost)`);
  }
}

/**
 * A kvsweep store whose blob bytes are files in the origin private file
 * system (directory `kvsweep-<name>`), the rest of its records in the
 * IndexedDB database `kvsweep-opfs:<name>`. Opening it removes files a crash
 * left unrecorded. Works on the main thread and in workers; in a dedicated
 * worker it writes through sync access handles.
 */
export async function openOpfs(name, options = {}) {
  checkName(name, "openOpfs");
  if (options === null || typeof options !== "object" || Object.keys(options).length) {
    throw new TypeError(`kvsweep: openOpfs(name, options): openOpfs takes no options yet, got ${describe(options)}`);
  }
  await loaded();
  const root = await navigator.storage.getDirectory();
  const [db, dir] = await Promise.all([openRecords(`kvsweep-opfs:${name}`), root.getDirectoryHandle(`kvsweep-${name}`, { create: true })]);
  const lock = `kvsweep-opfs:${name}`;
  await removeUnclaimed(db, dir, lock);
  // Sync access handles exist in dedicated workers only.
  const sync = typeof globalThis.FileSystemFileHandle?.prototype.createSyncAccessHandle === "function";
  const store = kvStoreOfDriver(opfsDriver(db, dir, lock, sync));
  closesWith(store, db);
  OWN_LOCKS.set(store, runLock(db));
  CHECKED_BLOBS.add(store);
  return store;
}

/** Deletes the OPFS store `name`: its directory and its database. */
export async function deleteOpfs(name) {
  checkName(name, "deleteOpfs");
  const root = await navigator.storage.getDirectory();
  // Holding the lock: no write of the store's is under way.
  await locked(`kvsweep-opfs:${name}`, () =>
    root.removeEntry(`kvsweep-${name}`, { recursive: true }).catch((e) => {
      if (!notFound(e)) throw e;
    }),
  );
  await new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(`kvsweep-opfs:${name}`);
    req.onsuccess = () => resolve();
    req.onerror = () => reject(req.error);
    req.onblocked = () => resolve(); // deleted once the last connection closes
  });
}
