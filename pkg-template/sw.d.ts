// kvsweep/sw: the API without loading the WebAssembly on import (service workers).
export * from "./index.js";
/** Loads the WebAssembly module, once; everything else needs it loaded (async functions wait for it). */
export declare function ready(): Promise<void>;
