// Service workers, and anywhere a top-level `await` is not allowed: the API
// without loading the WebAssembly on import. `await ready()` loads it, once,
// on first use (in a service worker: inside an event handler, e.g. install
// or fetch); the async functions here wait for it themselves. Constructors
// (`new Sweeper`, `memoryStore()`, `kvStore()`) need it loaded first and say
// so if it is not.
import init, * as glue from "./kvsweep.js";
import { Sweeper as ApiSweeper } from "./api.js";
import * as kv from "./kv.js";
import { setLoader } from "./idbkv.js";

// The glue's own exports, less its internals (kvStoreOfDriver, initSync);
// memoryStore and openIndexedDb are below.
export { KvStore } from "./kvsweep.js";

let loading;
let loaded = false;

export { openCacheStorage, track, deleteCacheStorage, expirationPlugin } from "./cache.js";
export { openOpfs, deleteOpfs } from "./opfs.js";
// Cache Storage and OPFS stores and the Workbox plugin load the module when first used.
setLoader(ready);

/**
 * Loads the WebAssembly module, once; resolves when it is ready. `source`,
 * where the bundle cannot find `kvsweep_bg.wasm` next to itself (a classic
 * service worker, an IIFE bundle: no `import.meta.url`), is its URL, a
 * `Response` or a compiled `WebAssembly.Module`. Later calls share the first
 * load.
 */
export function ready(source) {
  if (loading) return loading;
  let from = source;
  if (from === undefined) {
    try {
      from = new URL("./kvsweep_bg.wasm", import.meta.url);
    } catch {
      return Promise.reject(new Error(
        "kvsweep: ready(source): this bundle cannot find kvsweep_bg.wasm next to itself (a classic service worker or an IIFE bundle has no import.meta.url): serve kvsweep_bg.wasm and call `await ready(new URL(\"/kvsweep_bg.wasm\", self.location))` before anything else",
      ));
    }
  }
  loading = init({ module_or_path: from }).then(
    () => {
      loaded = true;
    },
    (e) => {
      loading = undefined; // a failed load (the network) is tried again on next use
      throw e;
    },
  );
  return loading;
}

function needReady(what) {
  if (!loaded) {
    throw new Error(`kvsweep: ${what}: the WebAssembly module is not loaded yet; call \`await ready()\` first (in a service worker, inside an event handler)`);
  }
}

export class Sweeper extends ApiSweeper {
  constructor(store, options) {
    needReady("new Sweeper(store, options)");
    super(store, options);
  }
}

export async function openIndexedDb(name) {
  await ready();
  return glue.openIndexedDb(name);
}

export function memoryStore() {
  needReady("memoryStore()");
  return glue.memoryStore();
}

export function kvStore(x, options) {
  needReady("kvStore(x)");
  return kv.kvStore(x, options);
}

export function durableObjectStore(storage, options) {
  needReady("durableObjectStore(storage)");
  return kv.durableObjectStore(storage, options);
}

export const { r2, collectR2Orphans, runFromAlarm, scheduleCleanup } = kv;
