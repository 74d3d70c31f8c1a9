// The raw records of the browser stores built on pkg-template/idbkv.js,
// read directly (IndexedDB records, and an OPFS store's files), named as
// kv-scenario's recordsOf reads them.

/** The names of the records in the IndexedDB database `dbName`. */
export async function recordNames(dbName) {
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open(dbName);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const keys = await new Promise((resolve, reject) => {
    const req = db.transaction("records").objectStore("records").getAllKeys();
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  db.close();
  return keys.map((n) => `kvsweep/${n}`);
}

/** An OPFS store's records and files. */
export async function opfsNames(name) {
  const keys = await recordNames(`kvsweep-opfs:${name}`);
  const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(`kvsweep-${name}`);
  const files = [];
  for await (const [file] of dir.entries()) files.push(file);
  return [...keys, ...files.map((f) => `kvsweep/b/\0${f}`)];
}

/** The names of the files in an OPFS store's directory. */
export async function opfsFiles(name) {
  const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(`kvsweep-${name}`);
  const files = [];
  for await (const [file] of dir.entries()) files.push(file);
  return files.sort();
}
