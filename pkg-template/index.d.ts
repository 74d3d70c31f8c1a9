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

import type { KvStore } from "./kvsweep.js";

export interface KvStoreOptions {
  /** Every key kvsweep writes starts with it (default "kvsweep/"), so it can share a store with other data. */
  prefix?: string;
  /** How long a write takes to show everywhere (unstorage, keyv and generic objects; default 0). */
  visibilityMs?: number;
  /** Keep blob bytes in an R2 bucket: `{ blobs: r2(env.BUCKET) }`. */
  blobs?: R2Blobs;
}
/** An R2 bucket as the home of a store's blob bytes (from r2()). */
export interface R2Blobs { readonly __kvsweepR2: unique symbol }
/** Keeps blob bytes in an R2 bucket binding, records in the store it is given to. */
export declare function r2(bucket: object): R2Blobs;
/**
 * Deletes blob bytes in the store's R2 bucket that no record names and are
 * older than graceMs (default 10 minutes); dryRun only lists them.
 */
export declare function collectR2Orphans(
  store: KvStore,
  options?: { graceMs?: number; dryRun?: boolean; limit?: number },
): Promise<{ checked: number; orphans: string[]; bytes: number; deleted: number }>;
/** Any key–value object kvStore accepts besides the known backends. */
export interface GenericKv {
  get(name: string): unknown;
  put(name: string, value: Uint8Array): unknown;
  delete(name: string): unknown;
  list(prefix: string): unknown;
}
/**
 * A store over a key–value object: a Cloudflare Workers KV binding, a
 * `Deno.Kv`, Durable Object storage, a `Map`, an unstorage or keyv instance,
 * or any object with get, put, delete and list.
 */
export declare function kvStore(x: object, options?: KvStoreOptions): KvStore;
/** A store in a Durable Object's storage (`ctx.storage`). */
export declare function durableObjectStore(storage: object, options?: Pick<KvStoreOptions, "prefix" | "blobs">): KvStore;
/**
 * One slice of cleanup from a Durable Object's alarm, then the alarm set
 * again: at once while there is more to do, after periodMs when done.
 */
export declare function runFromAlarm(
  sweeper: Sweeper,
  storage: object,
  options?: { periodMs?: number; retryMs?: number } & import("./kvsweep.js").RunOptions,
): Promise<import("./kvsweep.js").RunReport>;
/** Sets the Durable Object's alarm delayMs from now (default 0) unless it is set sooner. */
export declare function scheduleCleanup(storage: object, delayMs?: number): Promise<void>;

/**
 * A store whose blob bytes are files in the origin private file system
 * (directory `kvsweep-<name>`), its other records in IndexedDB
 * (`kvsweep-opfs:<name>`). Opening it removes files a crash left unrecorded.
 */
export declare function openOpfs(name: string, options?: Record<string, never>): Promise<KvStore>;
/** Deletes an OPFS store: its directory and its database. */
export declare function deleteOpfs(name: string): Promise<void>;

/** A store for a Cache Storage cache's responses, their metadata in IndexedDB (`kvsweep-cache:<name>`). */
export declare function openCacheStorage(name: string, options?: { matchOptions?: CacheQueryOptions; concurrency?: number }): Promise<KvStore>;
/** Records (or refreshes) a cached response as an entry, its size the response's. */
export declare function track(sweeper: Sweeper, request: Request | string, response?: Response, options?: import("./kvsweep.js").PutOptions): Promise<void>;
/** Deletes a cache and its kvsweep metadata database. */
export declare function deleteCacheStorage(name: string): Promise<void>;
export interface ExpirationPluginOptions {
  maxEntries?: number; maxAgeSeconds?: number; purgeOnQuotaError?: boolean; matchOptions?: CacheQueryOptions;
  /** workbox-core's registerQuotaErrorCallback, needed with purgeOnQuotaError. */
  registerQuotaErrorCallback?: (callback: () => void) => void;
  /** Response bytes the cache may hold. */
  maxBytes?: number;
  /** URLs never expired. */
  pinned?: (url: string) => boolean;
  /** Keep the newest keepLast responses of each group. */
  groups?: Record<string, { match: (url: string) => boolean; keepLast: number }>;
  concurrency?: number;
}
/** A Workbox plugin in place of ExpirationPlugin. */
export declare function expirationPlugin(options: ExpirationPluginOptions): {
  cacheDidUpdate(param: { cacheName: string; request: Request; newResponse: Response }): Promise<void>;
  cachedResponseWillBeUsed(param: { cacheName: string; request: Request; cachedResponse?: Response }): Promise<Response | null>;
  deleteCacheAndMetadata(): Promise<void>;
};
