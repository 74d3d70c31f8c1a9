// The package initialises its WebAssembly on import; these are the API's types.
export * from "./kvsweep.js";
