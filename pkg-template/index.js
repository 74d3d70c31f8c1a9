// Browsers, workers, bundlers and Deno: fetch the module next to this file, then export the API.
import init from "./kvsweep.js";

await init({ module_or_path: new URL("./kvsweep_bg.wasm", import.meta.url) });

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
