// Node: read the module from disk (fetch of file: URLs is not available there).
import { readFile } from "node:fs/promises";
import { initSync } from "./kvsweep.js";

initSync({ module: await readFile(new URL("./kvsweep_bg.wasm", import.meta.url)) });

// The glue's own exports, less its internals (kvStoreOfDriver, initSync).
export { KvStore, memoryStore, openIndexedDb } from "./kvsweep.js";
// In place of the glue's Sweeper: the same class, with readable errors.
export { Sweeper } from "./api.js";
export { kvStore, durableObjectStore, r2, collectR2Orphans, runFromAlarm, scheduleCleanup } from "./kv.js";
export { openCacheStorage, track, deleteCacheStorage, expirationPlugin } from "./cache.js";
export { openOpfs, deleteOpfs } from "./opfs.js";

/** The module is loaded on import here: resolves at once (`kvsweep/sw` code shared with a service worker calls it). */
export function ready() {
  return Promise.resolve();
}
