// Cloudflare Workers (workerd): it refuses to compile WebAssembly from bytes,
// so the module is imported as a compiled module and instantiated at once.
// Bundlers for Workers (wrangler, the Vite plugin) treat `.wasm` imports so.
import module from "./kvsweep_bg.wasm";
import { initSync } from "./kvsweep.js";

initSync({ module });

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
