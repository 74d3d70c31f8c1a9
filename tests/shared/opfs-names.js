// The raw records of an OPFS store, read directly (IndexedDB records and the
// directory's files), named as kv-scenario's recordsOf reads them.
export async function opfsNames(name) {
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open(`kvsweep-opfs:${name}`);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const keys = await new Promise((resolve, reject) => {
    const req = db.transaction("records").objectStore("records").getAllKeys();
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  db.close();
  const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(`kvsweep-${name}`);
  const files = [];
  for await (const [file] of dir.entries()) files.push(file);
  return [...keys, ...files.map((f) => `b/\0${f}`)].map((n) => `kvsweep/${n}`);
}

/** The names of the files in an OPFS store's directory. */
export async function opfsFiles(name) {
  const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(`kvsweep-${name}`);
  const files = [];
  for await (const [file] of dir.entries()) files.push(file);
  return files.sort();
}
