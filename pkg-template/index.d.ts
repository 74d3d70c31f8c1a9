// The package initialises its WebAssembly on import; these are the API's types.
export { KvStore, memoryStore, openIndexedDb } from "./kvsweep.js";
// Every type of the glue's but its loader's (scripts/build.sh checks).
export type {
  Action, Capabilities, DeleteOptions, KeyOptions, ListOptions, Mode, MoveReport, PageOptions, PlanOptions,
  PlanResult, PlanSummary, Policy, Progress, PutManyItem, PutOptions, Reason, RebuildReport, Rules, RunEvent,
  RunOptions, RunReport, ScheduleOptions, Stats, SweeperOptions, Tally,
} from "./kvsweep.js";
import { Sweeper as GlueSweeper, type ListOptions, type PageOptions, type RunReport } from "./kvsweep.js";

/** The glue's Sweeper, with readable errors and the iterators below. */
export declare class Sweeper extends GlueSweeper {
  /** The keys `get` would return, in key order, read in pages. */
  keys(options?: PageOptions): AsyncGenerator<string, void, undefined>;
  /** `[key, value]` pairs of the entries `get` would return, in key order. */
  entries(options?: PageOptions): AsyncGenerator<[string, unknown], void, undefined>;
  /** The most recently updated entries (of one namespace, or of all), newest first; limit 1–10,000, default 50. */
  history(options?: { namespace?: string | undefined; limit?: number | undefined }): Promise<EntryDetail[]>;
  /** One entry with its metadata and decoded value; expired ones only with includeExpired. Does not count as a use (no accessedAt refresh). */
  detail(key: string, options?: { namespace?: string | undefined; includeExpired?: boolean | undefined }): Promise<(EntryDetail & { value: unknown }) | undefined>;
  /** The key a prefix names: itself when it is a key, the only key it begins, else up to 20 candidates, or none. */
  resolvePrefix(prefix: string, options?: { namespace?: string | undefined }): Promise<{ key: string } | { ambiguous: string[] } | { none: true }>;
  /** Deletes entries not updated for olderThanMs (pinned ones, and old ones fresher entries reference, stay): a full run under that age alone. */
  prune(options: { olderThanMs: number }): Promise<RunReport>;
  /** Hashes blobs again (those of one shard when given) and reports corrupt and missing ones and the entries that reference them; repair removes corrupt blobs' bytes (their records and counts stay) and, on a store with compare-and-set, marks the records of blobs removed or found missing lost, so that putBlob of the right bytes on any Sweeper writes them again (else on this Sweeper only). */
  verify(options?: { shard?: { index: number; count: number } | undefined; repair?: boolean | undefined }): Promise<VerifyReport>;
  /** Namespaces that hold entries but have no registration record. */
  zombies(): Promise<{ namespace: string; entries: number; bytes: number }[]>;
  /** Deletes every entry of a namespace, then its registration record. */
  deleteNamespace(namespace: string): Promise<RunReport>;
  /** healthy / warning / critical, with the reasons, from the run log kept in the store; with maxBacklog, a full plan is made too and more garbage than that warns. */
  health(options?: { maxBacklog?: number | undefined }): Promise<Health>;
  /** Rewrites entry records an earlier release wrote in an older layout (metadata without accessedAt; small values in records of their own): guarded, resumable by calling it again; unreadable records are reported, never touched. */
  migrate(): Promise<MigrateReport>;
}

/** An entry's metadata, as history() and detail() show it. */
export interface EntryDetail {
  namespace: string; key: string;
  createdAt: number; updatedAt: number; accessedAt: number; expiresAt?: number;
  size: number; group?: string; pinned: boolean; locked: boolean; dependent: boolean;
  refs: string[]; blobs: string[];
  /** How many entries reference this one. */
  referrers: number;
}
/** What verify() found. */
export interface VerifyReport {
  checked: number; bytes: number;
  corrupt: string[]; missing: string[]; unreadable: string[]; removed: string[];
  referrers: { namespace: string; key: string; blob: string }[];
}
/** One run in the store's run log. */
export interface LoggedRun {
  /** When it began; of a run in parts (slices, a run resumed), when its last part began. `durationMs` sums the parts. */
  at: number; durationMs: number; mode: "light" | "full";
  done: boolean; failed: boolean;
  /** What this run deleted itself (a resumed run's RunReport counts the run it went on from too; its log line does not). */
  deleted: number; bytes: number; errors: number;
}
export interface MigrateReport {
  scanned: number; current: number; upgraded: number;
  /** Of upgraded: values moved into their entry's record. */
  inlined: number;
  /** Entries written again meanwhile, left as their writer wrote them. */
  changed: number;
  unreadable: { namespace: string; key: string }[];
}
export interface Health {
  status: "healthy" | "warning" | "critical";
  reasons: string[];
  /** When the last run that went to its end without errors began (of a run in parts, its last part; a run stopped part-way is none). */
  lastSuccessAt?: number;
  /** The last runs, newest last (at most 32). */
  runs: LoggedRun[];
}

import type { KvStore } from "./kvsweep.js";

export interface KvStoreOptions {
  /** Every key kvsweep writes starts with it (default "kvsweep/"), so it can share a store with other data. */
  prefix?: string | undefined;
  /** How long a write takes to show everywhere (unstorage, keyv and generic objects; default 0). */
  visibilityMs?: number | undefined;
  /** Keep blob bytes in an R2 bucket: `{ blobs: r2(env.BUCKET) }`. */
  blobs?: R2Blobs | undefined;
}
/** An R2 bucket as the home of a store's blob bytes (from r2()). */
export interface R2Blobs { readonly __kvsweepR2: unique symbol }
/** Resolves once the WebAssembly module is loaded: at once from this entry, which loads it on import (code shared with a service worker, which imports `kvsweep/sw`, calls it). */
export declare function ready(): Promise<void>;
/** Keeps blob bytes in an R2 bucket binding, records in the store it is given to. */
export declare function r2(bucket: object): R2Blobs;
/**
 * Deletes blob bytes in the store's R2 bucket that no record names and are
 * older than graceMs (default 10 minutes); dryRun only lists them.
 */
export declare function collectR2Orphans(
  store: KvStore,
  options?: { graceMs?: number | undefined; dryRun?: boolean | undefined; limit?: number | undefined },
): Promise<{ checked: number; orphans: string[]; bytes: number; deleted: number }>;
/**
 * Any key–value object kvStore accepts besides the known backends: one with
 * get, put, delete and list(prefix). kvsweep writes each
 * record as base64 text (what any store keeps exactly) and reads back the
 * string `get` resolves to.
 */
export interface GenericKv {
  get(name: string): unknown;
  put(name: string, value: string): unknown;
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
 * again: at once when maxOps or budgetMs stopped it with more to do, after
 * periodMs when done, after retryMs when it failed or stopped otherwise.
 */
export declare function runFromAlarm(
  sweeper: Sweeper,
  storage: object,
  options?: { periodMs?: number | undefined; retryMs?: number | undefined } & import("./kvsweep.js").RunOptions,
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
export declare function openCacheStorage(name: string, options?: { matchOptions?: CacheQueryOptions | undefined; concurrency?: number | undefined }): Promise<KvStore>;
/** Records (or refreshes) a cached response as an entry, its size the response's (without one, the response the cache holds for the URL; with none there, 0). */
export declare function track(sweeper: Sweeper, request: Request | URL | string, response?: Response | null, options?: Omit<import("./kvsweep.js").PutOptions, "namespace">): Promise<void>;
/** Deletes a cache and its kvsweep metadata database. */
export declare function deleteCacheStorage(name: string): Promise<void>;
export interface ExpirationPluginOptions {
  maxEntries?: number | undefined;
  /** Seconds, fractions too (0.5), as ExpirationPlugin takes them. */
  maxAgeSeconds?: number | undefined;
  purgeOnQuotaError?: boolean | undefined; matchOptions?: CacheQueryOptions | undefined;
  /** workbox-core's registerQuotaErrorCallback, needed with purgeOnQuotaError. */
  registerQuotaErrorCallback?: ((callback: () => void) => void) | undefined;
  /** Response bytes the cache may hold. */
  maxBytes?: number | undefined;
  /** URLs never expired, by count, bytes or age: served however old their Date header. */
  pinned?: ((url: string) => boolean) | undefined;
  /** Keep the newest keepLast responses of each group. */
  groups?: Record<string, { match: (url: string) => boolean; keepLast: number }> | undefined;
  concurrency?: number | undefined;
}
/** A Workbox plugin in place of ExpirationPlugin. */
export declare function expirationPlugin(options: ExpirationPluginOptions): {
  cacheDidUpdate(param: { cacheName: string; request: Request; newResponse: Response }): Promise<void>;
  cachedResponseWillBeUsed(param: { cacheName: string; request: Request; cachedResponse?: Response }): Promise<Response | null>;
  deleteCacheAndMetadata(): Promise<void>;
};
