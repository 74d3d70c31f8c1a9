// The package initialises its WebAssembly on import; these are the API's types.
export * from "./kvsweep.js";
import { Sweeper as GlueSweeper, type ListOptions } from "./kvsweep.js";

/** The glue's Sweeper, with readable errors and the iterators below. */
export declare class Sweeper extends GlueSweeper {
  /** The keys `get` would return, in key order, read in pages. */
  keys(options?: ListOptions): AsyncGenerator<string, void, undefined>;
  /** `[key, value]` pairs of the entries `get` would return, in key order. */
  entries(options?: ListOptions): AsyncGenerator<[string, unknown], void, undefined>;
}
