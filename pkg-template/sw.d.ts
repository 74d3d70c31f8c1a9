// kvsweep/sw: the API without loading the WebAssembly on import (service workers).
export * from "./index.js";
/**
 * Loads the WebAssembly module, once; everything else needs it loaded (async functions wait for it).
 * `source`: where the bundle cannot find `kvsweep_bg.wasm` next to itself (a classic service
 * worker, an IIFE bundle), its URL, a `Response` or a compiled module. Later calls share the first load.
 */
export declare function ready(source?: string | URL | Request | Response | WebAssembly.Module): Promise<void>;
