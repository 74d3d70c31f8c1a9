//! The JavaScript API (SPEC §8). Every function validates what JS passes and
//! rejects with an `Error` whose message names the problem; nothing here panics
//! on input.

use crate::error::Quoted;
use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::convert;
use super::driver::{feed, Driver};
use super::options::{self, OptValue};
use crate::codec::StoredValue;
use crate::error::Error;
use crate::exec::{Flow, Progress, RunHost};
use crate::model::{EntryId, Millis};
use crate::plan::Mode;
use crate::plan::{ActionKind, Plan, Reason, Summary};
use crate::schedule::{Input, ScheduleConfig};
pub use crate::store::idb::IdbStore;
use crate::store::jskv::JsKvStore;
use crate::store::{
    memory::MemoryStore, Access, Capabilities, DynStep, Op, Reads, Record, Store, StoreError, Table,
};
use crate::sweeper::{PutOptions, Sweeper};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
export type Mode = "light" | "full";
export type Reason = "expired" | "maxAge" | "retention" | "maxEntries" | "maxBytes" | "unreachable" | "orphanBlob" | "staleTemp" | "cleared" | "corrupt";
export interface Rules {
  maxAgeMs?: number | undefined; maxEntries?: number | undefined; maxBytes?: number | undefined; lowWatermark?: number | undefined;
  groups?: Record<string, { keepLast: number }> | undefined;
}
export interface Policy extends Rules {
  orphanGraceMs?: number | undefined; tempMaxAgeMs?: number | undefined;
  namespaces?: Record<string, Rules> | undefined;
}
export interface SweeperOptions {
  policy?: Policy | undefined;
  /** Whole milliseconds since the Unix epoch (Math.floor a fractional clock); defaults to Date.now. It dates entries; the scheduler's timers run on real time. */
  clock?: (() => number) | undefined;
  /** Items deleted per transaction (default 250). */
  batchSize?: number | undefined;
  /** Largest value put/putBlob accept, in bytes (default 64 MiB, at most 256 MiB). */
  maxValueBytes?: number | undefined;
  /** Background runs. Without it, runs happen only on run() and request(). */
  schedule?: ScheduleOptions | null | undefined;
}
export interface ScheduleOptions {
  /** A full run this long after the last full run ended (default 24 h; 0 = never). */
  periodMs?: number | undefined;
  /** A request waits this long for more (default 1000). */
  debounceMs?: number | undefined;
  /** ...but never longer than this after the first (default 10000, at least debounceMs). */
  maxWaitMs?: number | undefined;
  /** A full run soon after the Sweeper is made. */
  runOnStart?: boolean | undefined;
  /** A full run after this many writes (default 0 = never). */
  autoAfterWrites?: number | undefined;
  /** The Web Locks name that keeps runs of tabs and workers one at a time (default "kvsweep:" + the IndexedDB name; refused on OPFS and Cache Storage stores, whose runs take their own). */
  lockName?: string | undefined;
  /** Each run's time budget; a run that uses it up goes on in the next slice (default 0 = no budget). */
  sliceMs?: number | undefined;
  /** A full run when navigator.storage.estimate() says usage passed this fraction of the quota (default 0.8; 0 = never). */
  storageFraction?: number | undefined;
  /** After a failed run, the first retry waits this long (default 1000), doubling with each failure in a row up to retryMaxMs (default 15 min). */
  retryMs?: number | undefined;
  retryMaxMs?: number | undefined;
  /** The rolling audit: after each scheduled full run that finishes, verify() the next of this many shards of the blobs, so every blob is hashed again every auditShards runs; what it finds shows in health() (default 0 = never). */
  auditShards?: number | undefined;
  /** Called as background runs start, end ("end" too for a run that could not delete some items: its report's errors say which, and stats() counts it failed and retries it) and throw ("error"); what it throws is ignored. */
  onRun?: ((event: RunEvent) => void) | undefined;
}
export type RunEvent =
  | { type: "start"; mode: Mode; at: number }
  | { type: "end"; mode: Mode; at: number; report: RunReport }
  | { type: "error"; mode: Mode; at: number; error: Error };
export interface Stats {
  state: "idle" | "locking" | "running" | "closed";
  /** The mode of the run waiting for its time (or to follow the one running). */
  pending?: Mode;
  /** When the scheduler's timer fires next (ms since the epoch, by Date.now(): timers run on real time, whatever the clock option says). */
  nextRunAt?: number;
  /** Background runs that went to their end; slices started; failed runs. */
  runs: number; slices: number; failures: number; failuresInRow: number;
  /** Runs skipped because the lock was held: by another tab or worker cleaning, or by a run() called by hand. */
  skipped: number;
  lastRun?: {
    startedAt: number; durationMs: number; mode: Mode;
    /** "skipped": another context held the store's run lease (kvStore); "failed": it threw, or could not delete some items (error says why for the first; health() counts them), and is retried. */
    outcome: "done" | "stopped" | "skipped" | "failed";
    /** What this run deleted itself: of a sliced run, this slice (its report's totals count the slices before it too). */
    deleted: number; bytes: number; error?: string;
  };
}
/** Options are checked by name: one the method does not take is refused, not ignored. Numbers of milliseconds and counts are whole numbers. */
export interface PutOptions {
  namespace?: string | undefined;
  /** Expiry: after ttlMs from now, or at expiresAt (ms since the epoch); one of the two (put refuses both). */
  ttlMs?: number | undefined; expiresAt?: number | undefined;
  group?: string | undefined;
  pinned?: boolean | undefined; locked?: boolean | undefined;
  /** Lives only while a live entry references it (an attachment). */
  dependent?: boolean | undefined;
  refs?: string[] | undefined; blobs?: string[] | undefined;
  /** Bytes the entry counts for against maxBytes (default: its value's size): what it stands for, such as a cached response. */
  size?: number | undefined;
}
/** A value is anything but `undefined` (`put` refuses it; `null` records an empty value). */
export interface PutManyItem extends PutOptions { key: string; value: {} | null }
export interface KeyOptions { namespace?: string | undefined; includeExpired?: boolean | undefined }
export interface DeleteOptions { namespace?: string | undefined; includeExpired?: never }
export interface ListOptions { namespace?: string | undefined; prefix?: string | undefined; limit?: number | undefined }
export interface PageOptions extends ListOptions { after?: string | undefined }
export interface Progress { running: boolean; phase: "entries" | "blobs" | "temps" | "idle"; processed: number; total: number; deleted: number }
export interface PlanOptions {
  mode?: Mode | undefined;
  /** Checked between listing pages and once planning ends: an abort rejects the plan. */
  signal?: AbortSignal | undefined;
  /** run()'s own options: plan() refuses them. */
  budgetMs?: never; maxOps?: never; leaseMs?: never; onProgress?: never;
}
export interface RunOptions {
  mode?: Mode | undefined; signal?: AbortSignal | undefined; budgetMs?: number | undefined;
  /** Most backend calls (list pages, reads, writes) the run may make: an edge request's limit (kvStore only). The run stops before the next batch would pass it; the next run resumes. */
  maxOps?: number | undefined;
  /** How long the run holds a kvStore's run lease (default 5 minutes); another Sweeper's run meanwhile stops at once with stopped: "leased" (on OPFS and Cache Storage, a run holding the store's Web Lock takes a lease another took under it: that run died). */
  leaseMs?: number | undefined;
  /** Called between batches with the slice's own figures (progress() shows a resumed run as a whole); the run waits for a promise it returns (until the run is aborted or the Sweeper closed). A throw or a rejected promise stops the run, which then rejects with it. */
  onProgress?: ((p: Progress) => void | PromiseLike<void>) | undefined;
}
export interface Tally { count: number; bytes: number }
/** What a store promises (SPEC §6). */
export interface Capabilities {
  atomic: boolean; transactions: boolean; compareAndSet: boolean;
  maxBatchOps?: number; maxBatchChecks?: number;
  /** How long a write may take to show in a listing or a read elsewhere. */
  visibilityMs: number;
  /** The backend expires keys itself (Workers KV expiration, Deno KV expireIn). */
  nativeExpiry: boolean; rangeDelete: boolean;
}
export interface Action { kind: "entry" | "blob" | "temp"; namespace?: string; key?: string; id?: string; reason: Reason; bytes: number }
export interface PlanSummary {
  mode: Mode; now: number; scanned: number; reachable: number; blobs: number; temps: number; youngBlobs: number;
  deleted: Partial<Record<Reason, Tally>>;
  corrupt: { namespace: string; key: string }[]; corruptBlobs: string[]; corruptTemps: string[]; zombies: string[];
}
export interface PlanResult { actions: Action[]; summary: PlanSummary }
export interface RebuildReport {
  entriesChecked: number; blobsChecked: number; entriesFixed: number; blobsFixed: number;
  raised: number; lowered: number; skippedChanged: number; skippedCorrupt: number;
  corrupt: { namespace: string; key: string }[]; corruptBlobs: string[]; superseded: boolean;
  errors: { kind: "entry" | "blob"; namespace?: string; key: string; message: string }[];
}
export interface RunReport {
  /** False when the run stopped early; the next run resumes it. `stopped: "closed"`: this Sweeper, or its store's connection, was closed (then `errors` says which batch found the store closed). */
  done: boolean; stopped?: "aborted" | "budget" | "closed" | "ops" | "leased"; mode: Mode;
  /** The lease holder's id, when stopped is "leased". */
  leasedBy?: string;
  /** Backend calls made on the store while this run went (kvStore with maxOps): its own, and any made beside it (a user's writes, a plan()), which count against its limit. */
  ops?: number;
  /** This run went on from one that stopped early; `deleted` counts both. */
  resumed: boolean;
  /** Of `deleted`, what the runs it went on from had deleted: this run's own is `deleted` less this (0 when not resumed). */
  carried: Tally;
  /** This run went on with the plan its Sweeper's previous run made (that run stopped early, having saved a place, and planned at most 30 s before this run began), without listing the store again. */
  planReused: boolean;
  deleted: Partial<Record<Reason, Tally>>; kept: number; scanned: number; reachable: number;
  errors: { kind: string; namespace?: string; key: string; message: string }[];
  durationMs: number; corrupt: { namespace: string; key: string }[];
  /** Blob records the run could not read: their blobs stay (verify() lists them). */
  corruptBlobs: string[]; zombies: string[];
}
/** What moveTo did. */
export interface MoveReport {
  /** Entries copied, and those whose values have records of their own. */
  entries: number; values: number;
  /** Blobs copied (each hashed on the way), and the bytes this call copied: a move resumed after one cut short counts every blob, but only the bytes it copied itself. */
  blobs: number; blobBytes: number; namespaces: number;
  /** Passes over the source: each after the first copies what changed meanwhile. */
  passes: number;
  /** Every record was read back from the target and found as written; false leaves the source untouched. */
  verified: boolean;
  /** Entries, namespaces and blobs deleted from the source once the copy was verified. */
  cleared: number;
  /** Entries the source kept: written during the move (they and what they use stay). */
  left: number;
  /** Entries whose metadata cannot be read: the move stopped before clearing anything (mend or delete them, then call moveTo again to resume). */
  corrupt: { namespace: string; key: string }[];
  /** Blobs whose record cannot be read or whose source bytes do not hash to their id: the move stopped before clearing anything, as for corrupt. */
  corruptBlobs: string[];
  /** Blobs recorded in the source without their bytes (lost before the move; verify reports them missing): copied as they were, so the target lacks the bytes too. putBlob of the bytes mends them. */
  missingBlobs: string[];
  /** A move cut short before was resumed. */
  resumed: boolean;
}
"#;

pub(super) fn js_err(msg: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&format!("kvsweep: {msg}")).into()
}

/// `e` as the error of the call `what`, named once.
fn named(what: &str, e: Error) -> JsValue {
    // Cut short between pages: by close(), the one stop a call without a
    // signal or a budget has.
    if matches!(e, Error::Stopped) {
        let resume = if what == "moveTo" {
            "; moveTo on a new Sweeper resumes the move"
        } else {
            ""
        };
        return js_err(format!(
            "{what}: stopped, this Sweeper was closed (close() was called){resume}"
        ));
    }
    let message = e.to_string();
    match message.strip_prefix(what) {
        Some(rest) if rest.starts_with(':') => js_err(message),
        _ => js_err(format!("{what}: {message}")),
    }
}

pub(super) fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    super::tojs::to_js(v).map_err(js_err)
}

/// An options argument as a tree; `root` names it in messages ("put options").
fn opt(v: &JsValue, root: &str) -> Result<OptValue, JsValue> {
    convert::to_opt(v, root).map_err(js_err)
}

/// Whether `signal` (an AbortSignal, or anything) has aborted.
pub(super) fn aborted(signal: &JsValue) -> bool {
    field(signal, "aborted").as_bool() == Some(true)
}

pub(super) fn field(obj: &JsValue, name: &str) -> JsValue {
    if obj.is_object() {
        Reflect::get(obj, &name.into()).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

fn key_arg(key: &JsValue, what: &str) -> Result<String, JsValue> {
    match key.as_string() {
        Some(k) if convert::lone_surrogate(key, &k) => Err(js_err(format!(
            "{what}: key must be well-formed UTF-16, got a string with a lone surrogate"
        ))),
        Some(k) if !k.is_empty() => Ok(k),
        _ => Err(js_err(format!(
            "{what}: key must be a non-empty string, got {}",
            convert::describe(key)
        ))),
    }
}

/// A backend's future behind one pointer: each backend's is compiled once,
/// not again in every caller it would be inlined into.
type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// The backends a JS store can be.
#[derive(Clone, Debug)]
pub enum AnyStore {
    Memory(MemoryStore),
    Idb(Rc<IdbStore>),
    Kv(Rc<JsKvStore>),
}

impl AnyStore {
    /// Whether the store was closed, here or (IndexedDB, OPFS, Cache
    /// Storage) by another context deleting or upgrading its database.
    pub(super) fn closed_for_good(&self) -> bool {
        match self {
            AnyStore::Idb(s) => s.closed_for_good(),
            AnyStore::Kv(s) => s.closed_for_good(),
            AnyStore::Memory(_) => false,
        }
    }

    /// Backend calls made so far, where the backend counts them (kvStore).
    pub(super) fn ops(&self) -> Option<u64> {
        match self {
            AnyStore::Kv(s) => Some(s.ops()),
            _ => None,
        }
    }
}

impl Store for AnyStore {
    async fn list(
        &self,
        table: Table,
        after: Option<&EntryId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.list_capped(table, after, limit, None).await
    }

    async fn list_capped(
        &self,
        table: Table,
        after: Option<&EntryId>,
        limit: usize,
        cap: Option<u64>,
    ) -> Result<Vec<Record>, StoreError> {
        let f: Boxed<'_, Result<Vec<Record>, StoreError>> = match self {
            AnyStore::Memory(s) => Box::pin(s.list(table, after, limit)),
            AnyStore::Idb(s) => Box::pin(s.list(table, after, limit)),
            AnyStore::Kv(s) => Box::pin(s.list_capped(table, after, limit, cap)),
        };
        f.await
    }

    async fn get(
        &self,
        table: Table,
        keys: &[EntryId],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let f: Boxed<'_, Result<Vec<Option<Vec<u8>>>, StoreError>> = match self {
            AnyStore::Memory(s) => Box::pin(s.get(table, keys)),
            AnyStore::Idb(s) => Box::pin(s.get(table, keys)),
            AnyStore::Kv(s) => Box::pin(s.get(table, keys)),
        };
        f.await
    }

    fn capabilities(&self) -> Capabilities {
        match self {
            AnyStore::Memory(s) => s.capabilities(),
            AnyStore::Idb(s) => s.capabilities(),
            AnyStore::Kv(s) => s.capabilities(),
        }
    }

    async fn transact_guess(
        &self,
        tables: &[Table],
        guess: &Reads,
        step: &mut DynStep<'_>,
    ) -> Result<(), Error> {
        let f: Boxed<'_, Result<(), Error>> = match self {
            AnyStore::Memory(s) => Box::pin(s.transact_guess(tables, guess, step)),
            AnyStore::Idb(s) => Box::pin(s.transact_guess(tables, guess, step)),
            AnyStore::Kv(s) => Box::pin(s.transact_guess(tables, guess, step)),
        };
        f.await
    }

    async fn transact_dyn(
        &self,
        access: Access,
        tables: &[Table],
        step: &mut DynStep<'_>,
    ) -> Result<(), Error> {
        let f: Boxed<'_, Result<(), Error>> = match self {
            AnyStore::Memory(s) => Box::pin(s.transact_dyn(access, tables, step)),
            AnyStore::Idb(s) => Box::pin(s.transact_dyn(access, tables, step)),
            AnyStore::Kv(s) => Box::pin(s.transact_dyn(access, tables, step)),
        };
        f.await
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let f: Boxed<'_, Result<(), StoreError>> = match self {
            AnyStore::Memory(s) => Box::pin(s.apply(ops)),
            AnyStore::Idb(s) => Box::pin(s.apply(ops)),
            AnyStore::Kv(s) => Box::pin(s.apply(ops)),
        };
        f.await
    }
}

/// A store a `Sweeper` can clean: `memoryStore()` or `await openIndexedDb(name)`.
#[wasm_bindgen(js_name = KvStore)]
pub struct JsStore {
    inner: AnyStore,
}

#[wasm_bindgen(js_class = KvStore)]
impl JsStore {
    /// "memory", "indexeddb", "opfs", "cache-storage", or a kvStore's
    /// backend: "workers-kv", "deno-kv", "durable-object", "map",
    /// "unstorage", "keyv", "kv" (with "+r2" where R2 holds its blobs).
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        match &self.inner {
            AnyStore::Memory(_) => "memory".into(),
            AnyStore::Idb(_) => "indexeddb".into(),
            AnyStore::Kv(s) => s.kind().into(),
        }
    }

    /// What the backend promises (SPEC §6).
    #[wasm_bindgen(unchecked_return_type = "Capabilities")]
    pub fn capabilities(&self) -> Result<JsValue, JsValue> {
        let c = self.inner.capabilities();
        let out = js_sys::Object::new();
        let set = |k: &str, v: JsValue| Reflect::set(&out, &k.into(), &v).map(|_| ());
        set("atomic", c.atomic.into())?;
        set("transactions", c.transactions.into())?;
        set("compareAndSet", c.compare_and_set.into())?;
        if let Some(n) = c.max_batch_ops {
            set("maxBatchOps", (n as f64).into())?;
        }
        if let Some(n) = c.max_batch_checks {
            set("maxBatchChecks", (n as f64).into())?;
        }
        set("visibilityMs", (c.visibility_ms as f64).into())?;
        set("nativeExpiry", c.native_expiry.into())?;
        set("rangeDelete", c.range_delete.into())?;
        Ok(out.into())
    }

    /// Closes the underlying database connection (IndexedDB).
    pub fn close(&self) {
        match &self.inner {
            AnyStore::Idb(s) => s.close(),
            AnyStore::Kv(s) => s.close(),
            AnyStore::Memory(_) => {}
        }
    }
}

/// A store over a driver from the package's `kv.js` (use `kvStore(x)` or
/// `durableObjectStore(storage)`, which make the driver).
#[wasm_bindgen(js_name = kvStoreOfDriver, skip_typescript)]
pub fn kv_store_of_driver(driver: JsValue) -> Result<JsStore, JsValue> {
    let store = JsKvStore::new(driver).map_err(js_err)?;
    Ok(JsStore {
        inner: AnyStore::Kv(Rc::new(store)),
    })
}

/// A store held in memory: for tests, demos, and caches that need not persist.
#[wasm_bindgen(js_name = memoryStore)]
pub fn memory_store() -> JsStore {
    JsStore {
        inner: AnyStore::Memory(MemoryStore::new()),
    }
}

/// Opens (creating it if needed) the IndexedDB database `name` as a store.
#[wasm_bindgen(js_name = openIndexedDb)]
pub async fn open_indexed_db(
    #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
) -> Result<JsStore, JsValue> {
    let name = match name.as_string() {
        Some(n) if !n.is_empty() && !convert::lone_surrogate(&name, &n) => n,
        _ => {
            return Err(js_err(format!(
                "openIndexedDb: name must be a non-empty, well-formed string, got {}",
                convert::describe(&name)
            )))
        }
    };
    let store = IdbStore::open(&name).await.map_err(|e| {
        let why = match e {
            StoreError::Backend(m) => m,
            e => e.to_string(),
        };
        js_err(format!("openIndexedDb({}): {why}", Quoted(&name)))
    })?;
    Ok(JsStore {
        inner: AnyStore::Idb(Rc::new(store)),
    })
}

pub(super) struct Inner {
    pub(super) sweeper: Sweeper<AnyStore>,
    clock: Option<Function>,
    /// A run (by hand or scheduled) or a clear is going.
    pub(super) running: Cell<bool>,
    pub(super) closed: Cell<bool>,
    /// Runs stop and start no more, while calls under way end (the
    /// package's close() waits for gets under way before it closes).
    pub(super) halted: Cell<bool>,
    /// The run going is the scheduler's (`run()` waits for it).
    pub(super) background: Cell<bool>,
    /// A write of the `accessedAt` refreshes reads deferred is due.
    touch_flush: Cell<bool>,
    /// Flushes of reads' refreshes writing (the one reads schedule, and one
    /// at close or when the page is hidden): a run, and what deletes as a
    /// run does (`exclusive`), waits for them.
    flushing: Cell<u32>,
    /// When a read last deferred a refresh of `accessedAt` (real time).
    last_read: Cell<Millis>,
    /// Background runs (SPEC §4).
    pub(super) driver: Driver,
    /// This Sweeper's name as the holder of a kvStore's run lease.
    lease_owner: String,
}

/// Bytes kept free in a backend's largest value for kvsweep's encoding.
const VALUE_HEADROOM: usize = 1024;

/// Backend calls kept for after a run: saving where it stopped, giving its
/// lease back and logging it. Workers KV makes 5 (a write; a read and a
/// write; a read and a write), Durable Objects 8 (their transactions read
/// the state record and its value's chunk list: 2, 3, 3).
const AFTER_RUN_CALLS: u64 = 8;

/// Items per batch on a kvStore whose backend sets no limit of its own.
const KV_BATCH: usize = 25;

/// Records per listing page on IndexedDB.
const IDB_PAGE: usize = 500;

/// How long a run holds a kvStore's lease unless `leaseMs` says otherwise:
/// past it, a run that died without giving it back no longer blocks others.
const DEFAULT_LEASE_MS: Millis = 5 * 60 * 1000;

impl Inner {
    /// Runs a cleanup; on a kvStore, only while holding the store's run lease
    /// (SPEC §4: two isolates never clean at once), which it gives back after.
    pub(super) async fn run_leased(
        &self,
        mode: Mode,
        now: Millis,
        host: &mut JsHost,
        lease_ms: Option<Millis>,
        web_locked: bool,
    ) -> Result<crate::exec::RunReport, Error> {
        // After a flush of reads' refreshes already writing (see schedule_touch_flush).
        while self.flushing.get() > 0 {
            gloo_timers::future::TimeoutFuture::new(5).await;
        }
        // A run holding its store's Web Lock (a store of one origin: OPFS,
        // Cache Storage) takes a lease another took under that lock: its
        // run died (its lease held every other context's runs back until it
        // lapsed). A lease taken without the lock (its request failed, or an
        // earlier release) is respected until it lapses.
        let leased = matches!(self.sweeper.store(), AnyStore::Kv(_));
        let held_by = match leased {
            true => {
                let ttl = lease_ms.unwrap_or(DEFAULT_LEASE_MS);
                self.sweeper
                    .take_lease(&self.lease_owner, ttl, now, web_locked)
                    .await
            }
            false => Ok(None),
        };
        let took = leased && matches!(held_by, Ok(None));
        let started = js_sys::Date::now();
        let report = match held_by {
            Ok(None) => self.sweeper.run(mode, now, host).await,
            Ok(Some(holder)) => {
                host.stopped = Some("leased");
                host.leased_by = Some(holder);
                Ok(crate::exec::RunReport {
                    mode,
                    ..Default::default()
                })
            }
            Err(e) => Err(e),
        };
        if took {
            // A lease not given back lapses after its TTL.
            let _ = self.sweeper.release_lease(&self.lease_owner).await;
        }
        if host.leased_by.is_none() {
            let mut logged = crate::sweeper::LoggedRun::of(now, report.as_ref().map_err(|_| ()));
            logged.mode = mode;
            logged.duration_ms = (js_sys::Date::now() - started).max(0.0) as u64;
            self.sweeper.log_run(logged).await;
        }
        let report = report?;
        // The store was closed under the run (its connection, not this Sweeper).
        if report.halted && host.stopped.is_none() {
            host.stopped = Some("closed");
        }
        // Stopped inside a listing page by the call limit.
        if !report.done && host.stopped.is_none() && host.max_ops.is_some() {
            host.stopped = Some("ops");
        }
        // Stopped by the call limit having deleted nothing and saved no
        // place to go on from (before its first batch, or with entries that
        // wait for their referrers, which go together): every run with this
        // limit would stop the same way, so say so.
        let own = crate::sweeper::LoggedRun::of(now, Ok(&report)).deleted;
        if let (Some("ops"), 0, None, Some((used, max))) =
            (host.stopped, own, &report.stopped_after, host.ops_used())
        {
            return Err(Error::InvalidInput(format!(
                "options.maxOps is {max}, too few for this store: this run made {used} \
                 calls (its lease, the listing, its batches, giving the lease back and \
                 logging itself) and stopped before it could delete anything or save a \
                 place to go on from (entries that reference one another go together, in \
                 one batch); give it more calls, or keep the store smaller"
            )));
        }
        Ok(report)
    }
}

impl Inner {
    /// Writes reads' deferred `accessedAt` refreshes together once reads
    /// pause (see `touch_flush_wait`), so that a read costs no write of its
    /// own and a burst of reads does not wait behind its refreshes.
    fn schedule_touch_flush(self: &Rc<Self>) {
        // Closed, the package's close() writes them once its reads end.
        if !self.sweeper.touches_pending() || self.stopping() {
            return;
        }
        let now = js_sys::Date::now() as Millis;
        self.last_read.set(now);
        if self.touch_flush.replace(true) {
            return;
        }
        let inner = self.clone();
        super::driver::spawn(async move {
            while let Some(wait) = crate::sweeper::touch_flush_wait(
                now,
                inner.last_read.get(),
                js_sys::Date::now() as Millis,
            ) {
                // At most TOUCH_MAX_DELAY_MS: it fits.
                gloo_timers::future::TimeoutFuture::new(wait as u32).await;
            }
            // Not while a run deletes: on a store without compare-and-set a
            // refresh read before a deletion would write the entry back (and
            // a run waits for a flush begun: `flushing`).
            while inner.running.get() {
                gloo_timers::future::TimeoutFuture::new(20).await;
            }
            inner.touch_flush.set(false);
            // Best effort: a refresh that fails leaves accessedAt older.
            inner.flushing.set(inner.flushing.get() + 1);
            let _ = inner.sweeper.flush_touches().await;
            inner.flushing.set(inner.flushing.get() - 1);
        });
    }
}

impl Inner {
    /// Closed, or halted on the way there: runs stop at their batch's end.
    pub(super) fn stopping(&self) -> bool {
        self.closed.get() || self.halted.get()
    }

    pub(super) fn now(&self) -> Result<Millis, JsValue> {
        clock_now(self.clock.as_ref())
    }

    /// The most bytes one value may take: `maxValueBytes`, and no more than
    /// the backend keeps in an entry's record (less the encoding's header).
    fn value_limit(&self) -> usize {
        let most = self.sweeper.max_value_bytes();
        match self.sweeper.store() {
            AnyStore::Kv(kv) => kv
                .max_entry_bytes()
                .map_or(most, |cap| most.min(cap.saturating_sub(VALUE_HEADROOM))),
            _ => most,
        }
    }

    /// Why the store cannot hold the backend keys of `id`'s records, if it cannot.
    fn key_too_long(&self, id: &EntryId) -> Option<String> {
        match self.sweeper.store() {
            AnyStore::Kv(kv) => kv.key_too_long(id),
            _ => None,
        }
    }

    fn open(&self) -> Result<(), JsValue> {
        if self.closed.get() {
            Err(js_err("this Sweeper is closed"))
        } else {
            Ok(())
        }
    }

    /// What `clear`, `prune` and `deleteNamespace` do first, so that they
    /// never overlap a run: wait for a background run, take the store's
    /// lock (across tabs), and mark a run as going. The caller sets
    /// `running` back to false when done, and holds the lock till then.
    /// (At the edge, the kvStore run lease is not taken: on a store with
    /// compare-and-set the executor's checks keep an overlap safe.)
    async fn exclusive(&self, what: &str) -> Result<super::driver::HandLock, JsValue> {
        let busy = || {
            js_err(format!(
                "{what}: a run is in progress on this Sweeper; await it first"
            ))
        };
        self.after_background(&JsValue::UNDEFINED).await?;
        if self.running.get() {
            return Err(busy());
        }
        let lock = super::driver::hand_lock(self, &JsValue::UNDEFINED).await;
        self.open()?;
        if self.running.replace(true) {
            return Err(busy());
        }
        // After a flush of reads' refreshes begun (one read before a deletion
        // would write the entry back, on a store without compare-and-set);
        // none begins while `running`.
        while self.flushing.get() > 0 {
            gloo_timers::future::TimeoutFuture::new(5).await;
        }
        Ok(lock)
    }

    /// Waits for a background run to end: a call by hand comes after it,
    /// unless its `signal` aborts the wait.
    async fn after_background(&self, signal: &JsValue) -> Result<(), JsValue> {
        while self.running.get() && self.background.get() && !self.stopping() && !aborted(signal) {
            gloo_timers::future::TimeoutFuture::new(20).await;
        }
        self.open()
    }

    /// A write went: the scheduler counts it. A write the store refused as
    /// full asks for a full run, and says so.
    /// `method` names the call in a quota error's message (and in every
    /// error of putMany's, as before).
    fn wrote(
        self: &Rc<Self>,
        n: u64,
        result: Result<(), Error>,
        method: &str,
    ) -> Result<(), JsValue> {
        match result {
            Ok(()) => {
                feed(self, Input::Wrote(n));
                Ok(())
            }
            Err(e @ Error::Store(StoreError::QuotaExceeded(_))) => {
                let err = if self.driver.auto {
                    feed(self, Input::Pressure);
                    js_err(format!(
                        "{method}: {e}; a full cleanup has been requested (see stats()): try again after it"
                    ))
                } else {
                    named(method, e)
                };
                // As the browser names it, for apps that check `e.name`.
                let _ = Reflect::set(&err, &"name".into(), &"QuotaExceededError".into());
                Err(err)
            }
            Err(e) => Err(named(method, e)),
        }
    }
}

fn clock_now(clock: Option<&Function>) -> Result<Millis, JsValue> {
    let Some(clock) = clock else {
        return Ok(js_sys::Date::now() as Millis);
    };
    let v = clock
        .call0(&JsValue::UNDEFINED)
        .map_err(|e| js_err(format!("clock() threw {}", convert::thrown(&e))))?;
    match v.as_f64() {
        Some(ms) if (0.0..=options::MAX_SAFE_INTEGER).contains(&ms) && ms.fract() == 0.0 => {
            Ok(ms as Millis)
        }
        _ => Err(js_err(format!(
            "clock() must return a whole number of milliseconds since the Unix epoch, 0 to 2^53 - 1, got {}",
            convert::describe(&v)
        ))),
    }
}

/// Keeps a store clean under a policy (SPEC §8).
#[wasm_bindgen(js_name = Sweeper)]
pub struct JsSweeper {
    inner: Rc<Inner>,
}

/// Runs `body` as a promise, turning every error into a rejected `Error`.
fn promise<F>(inner: &Rc<Inner>, body: impl FnOnce(Rc<Inner>) -> F) -> Promise
where
    F: std::future::Future<Output = Result<JsValue, JsValue>> + 'static,
{
    if let Err(e) = inner.open() {
        return Promise::reject(&e);
    }
    // One future type for every method: the promise glue is compiled once.
    let body: std::pin::Pin<Box<dyn std::future::Future<Output = Result<JsValue, JsValue>>>> =
        Box::pin(body(inner.clone()));
    future_to_promise(body)
}

#[wasm_bindgen(js_class = Sweeper)]
impl JsSweeper {
    #[wasm_bindgen(constructor)]
    pub fn new(
        store: &JsStore,
        #[wasm_bindgen(unchecked_param_type = "SweeperOptions | undefined")] options: JsValue,
    ) -> Result<JsSweeper, JsValue> {
        let (policy, mut config, schedule) =
            options::parse_sweeper_options(&opt(&options, "new Sweeper(store, options): options")?)
                .map_err(|e| {
                    let e = e.to_string();
                    let sep = if e.starts_with("options") {
                        ""
                    } else {
                        "options."
                    };
                    js_err(format!("new Sweeper(store, options): {sep}{e}"))
                })?;
        // Sweepers in other tabs and workers share the store: their write ids must differ.
        config.write_nonce = crate::sweeper::splitmix64(
            (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
                ^ (js_sys::Date::now() as u64).rotate_left(32),
        );
        let config_nonce = config.write_nonce;
        let caps = store.inner.capabilities();
        if let Err((name, least)) = policy.check_grace(caps.compare_and_set, caps.visibility_ms) {
            return Err(js_err(format!(
                "new Sweeper(store, options): options.policy.{name} must be at least {least} ms on {} {} store, which has no compare-and-set and shows writes everywhere only after {} ms: a shorter grace could delete what a write elsewhere is about to reference (SPEC §6)",
                crate::store::jskv::article(&store.kind()),
                store.kind(),
                caps.visibility_ms
            )));
        }
        // IndexedDB hands a listing page over in one task, with the code
        // converting it: smaller pages keep that task short.
        if let AnyStore::Idb(_) = &store.inner {
            config.exec.page_size = IDB_PAGE;
        }
        // Smaller batches where the backend limits a commit (Deno KV: 100
        // checks) or counts every call (Workers KV), unless batchSize says.
        if let (AnyStore::Kv(kv), true) =
            (&store.inner, field(&options, "batchSize").is_undefined())
        {
            config.exec.batch_size = kv.batch_size().unwrap_or_else(|| {
                caps.max_batch_checks
                    .or(caps.max_batch_ops)
                    .map_or(KV_BATCH, |n| (n / 8).clamp(1, KV_BATCH))
            });
        }
        // A backend that keeps values up to a size: refuse larger ones at put
        // with a clear error, before the backend would.
        if let AnyStore::Kv(kv) = &store.inner {
            if let Some(cap) = kv.max_value_bytes() {
                // Room for the encoding's header around the value.
                let most = cap.saturating_sub(VALUE_HEADROOM);
                if field(&options, "maxValueBytes").is_undefined() {
                    config.max_value_bytes = config.max_value_bytes.min(most);
                } else if config.max_value_bytes > most {
                    return Err(js_err(format!(
                        "new Sweeper(store, options): options.maxValueBytes must be at most {most} on a {} store, which keeps values of at most {cap} bytes",
                        kv.kind()
                    )));
                }
            }
        }
        let clock = field(&options, "clock").dyn_into::<Function>().ok();
        // Without `schedule`, runs happen only when asked (run(), request()).
        // Sweepers of one IndexedDB database share a lock across tabs and workers.
        let auto = schedule.is_some();
        let (schedule, lock_name, fraction, audit_shards) = match schedule {
            Some(o) => (o.config, o.lock_name, o.storage_fraction, o.audit_shards),
            None => (ScheduleConfig::manual(), None, 0.0, 0),
        };
        // A store of one origin has a Web Lock of its own, which every
        // Sweeper on it takes (api.js refuses a lockName there).
        let lock_name = lock_name.or_else(|| match &store.inner {
            AnyStore::Idb(s) => Some(format!("kvsweep:{}", s.name())),
            AnyStore::Kv(s) => s.web_lock().map(str::to_owned),
            AnyStore::Memory(_) => None,
        });
        let on_run = field(&field(&options, "schedule"), "onRun")
            .dyn_into::<Function>()
            .ok();
        // The scheduler runs on real time, like its timers (see driver::feed).
        let driver = Driver::new(
            schedule,
            lock_name,
            fraction,
            on_run,
            super::driver::sched_now(),
            auto,
            audit_shards,
        );
        let inner = Rc::new(Inner {
            sweeper: Sweeper::new(store.inner.clone(), policy, config),
            clock,
            running: Cell::new(false),
            closed: Cell::new(false),
            halted: Cell::new(false),
            background: Cell::new(false),
            touch_flush: Cell::new(false),
            flushing: Cell::new(0),
            last_read: Cell::new(0),
            driver,
            lease_owner: format!(
                "{:016x}",
                crate::sweeper::splitmix64(config_nonce ^ 0x006c_6561_7365)
            ),
        });
        // The first timer (the period, a run on start).
        feed(&inner, Input::Timer);
        Ok(JsSweeper { inner })
    }

    /// Stores `value` (any structured value, or a `Uint8Array` as bytes) at `key`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn put(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "{} | null")] value: JsValue,
        #[wasm_bindgen(unchecked_param_type = "PutOptions | undefined")] options: JsValue,
    ) -> Promise {
        let parsed = (|| {
            let key = key_arg(&key, "put")?;
            let limit = self.inner.value_limit();
            let past = past_limit(limit, self.inner.sweeper.store());
            let value = convert::to_stored(&value, limit, &past)
                .map_err(|e| js_err(format!("put({}): {e}", Quoted(&key))))?;
            let (ns, opts) =
                options::parse_put_options(&opt(&options, "put options")?).map_err(js_err)?;
            let id = EntryId::new(ns, key);
            if let Some(why) = self.inner.key_too_long(&id) {
                return Err(js_err(format!("put({}): {why}", Quoted(&id.key))));
            }
            Ok::<_, JsValue>((id, value, opts))
        })();
        promise(&self.inner, |inner| async move {
            let (id, value, opts) = parsed?;
            let now = inner.now()?;
            let result = inner.sweeper.put(&id, value, opts, now).await;
            inner.wrote(1, result, "put")?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stores several entries in one transaction (where the store has them),
    /// in order: an item may reference one put before it. All go, or none.
    #[wasm_bindgen(js_name = putMany, unchecked_return_type = "Promise<void>")]
    pub fn put_many(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PutManyItem[]")] items: JsValue,
    ) -> Promise {
        let limit = self.inner.value_limit();
        let past = past_limit(limit, self.inner.sweeper.store());
        let parsed = put_items(&items, limit, &past).and_then(|items| {
            for (i, (id, ..)) in items.iter().enumerate() {
                if let Some(why) = self.inner.key_too_long(id) {
                    let item = format!("putMany items[{i}] ({})", Quoted(&id.key));
                    return Err(js_err(format!("{item}: {why}")));
                }
            }
            Ok(items)
        });
        promise(&self.inner, |inner| async move {
            let items = parsed?;
            let now = inner.now()?;
            let n = items.len() as u64;
            let result = inner.sweeper.put_many(items, now).await;
            inner.wrote(n, result, "putMany")?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The value at `key`, or `undefined` when it is missing or expired.
    #[wasm_bindgen(unchecked_return_type = "Promise<unknown>")]
    pub fn get(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "KeyOptions | undefined")] options: JsValue,
    ) -> Promise {
        let parsed = key_options(&key, &options, "get");
        promise(&self.inner, |inner| async move {
            let (id, include_expired) = parsed?;
            let now = inner.now()?;
            let found = inner
                .sweeper
                .detail(&id, now, include_expired)
                .await
                .map_err(|e| named("get", e))?;
            inner.schedule_touch_flush();
            match found {
                Some((_, value)) => {
                    convert::from_stored(&value).map_err(|e| js_err(format!("get: {e}")))
                }
                None => Ok(JsValue::UNDEFINED),
            }
        })
    }

    /// `get`'s fast path on IndexedDB, first half: checks the arguments as
    /// `get` does and, on an IndexedDB store, calls `read(database,
    /// recordKey, includeExpired)` from the module's own task queue, where
    /// every method begins its transaction, once the calls before it have
    /// begun theirs and a put committed early before it is confirmed (the
    /// store's gate): so `api.js`'s one plain request for
    /// the record keeps its place among the calls before and after it.
    /// Returns false on other stores (`get` then). It spares a read the
    /// glue of an async method: a promise, a future, a closure per request.
    #[wasm_bindgen(js_name = readStart, skip_typescript)]
    pub fn read_start(
        &self,
        key: JsValue,
        options: JsValue,
        read: Function,
    ) -> Result<bool, JsValue> {
        self.inner.open()?;
        let (id, include_expired) = key_options(&key, &options, "get")?;
        let AnyStore::Idb(store) = self.inner.sweeper.store() else {
            return Ok(false);
        };
        let store = store.clone();
        let record_key = crate::store::idb::key_js(&id);
        super::driver::spawn(async move {
            // Its transaction comes after those of the calls before it.
            store.gate().pass().await;
            let db: JsValue = store.database().clone().into();
            // What it throws it reports itself, by rejecting its promise.
            let _ = read.call3(
                &JsValue::UNDEFINED,
                &db,
                &record_key,
                &include_expired.into(),
            );
        });
        Ok(true)
    }

    /// `get`'s fast path, second half: the record read (`undefined`: none)
    /// judged as `get` judges it. Returns `[value]`, `undefined` when the
    /// entry is missing or expired, or `null` when its value lives in a
    /// record of its own (`get` reads it).
    #[wasm_bindgen(js_name = readEnd, skip_typescript)]
    pub fn read_end(
        &self,
        record_key: JsValue,
        include_expired: bool,
        record: JsValue,
    ) -> Result<JsValue, JsValue> {
        let part = |i| js_sys::Reflect::get_u32(&record_key, i).ok()?.as_string();
        let (Some(namespace), Some(key)) = (part(0), part(1)) else {
            return Err(js_err("get: the record key is not [namespace, key]"));
        };
        let id = EntryId::new(namespace, key);
        let bytes = (!record.is_undefined()).then(|| crate::store::idb::bytes_from_js(&record));
        let now = self.inner.now()?;
        let found = self
            .inner
            .sweeper
            .read_record(&id, bytes.as_deref(), now, include_expired)
            .map_err(|e| named("get", e))?;
        self.inner.schedule_touch_flush();
        match found {
            None => Ok(JsValue::UNDEFINED),
            Some(None) => Ok(JsValue::NULL),
            Some(Some(value)) => {
                let value =
                    convert::from_stored(&value).map_err(|e| js_err(format!("get: {e}")))?;
                Ok(js_sys::Array::of1(&value).into())
            }
        }
    }

    /// Deletes the entry at `key`; resolves to true if it existed. An entry
    /// other live entries reference is refused; one whose referrers have all
    /// expired goes with them.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn delete(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "DeleteOptions | undefined")] options: JsValue,
    ) -> Promise {
        let parsed = key_options(&key, &options, "delete");
        promise(&self.inner, |inner| async move {
            let (id, _) = parsed?;
            let now = inner.now()?;
            // The run's host type: the executor is compiled once for both.
            let mut host = JsHost::new(inner.clone(), JsValue::UNDEFINED, None, None);
            let existed = inner
                .sweeper
                .delete_at_hosted(&id, now, &mut host)
                .await
                .map_err(|e| named("delete", e))?;
            if existed {
                // What the entry held (blobs, attachments) goes in a light run.
                feed(&inner, Input::Deleted);
            }
            Ok(JsValue::from_bool(existed))
        })
    }

    /// Stores bytes under their SHA-256; resolves to the id (lower-case hex).
    #[wasm_bindgen(js_name = putBlob, unchecked_return_type = "Promise<string>")]
    pub fn put_blob(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | ArrayBuffer | ArrayBufferView | Blob")]
        bytes: JsValue,
    ) -> Promise {
        // Looked up before the bytes are copied in, and begun right after:
        // no code of the caller's runs between the copy and the digest's own
        // (Web Crypto copies the bytes it is given at once), so both hold the
        // same bytes whatever the caller does with them next. Not begun on
        // a closed Sweeper, whose promise would leave it unawaited.
        if let Err(e) = self.inner.open() {
            return Promise::reject(&e);
        }
        // Refused before the bytes are copied in or hashed: a copy larger
        // than the module's memory would trap.
        let limit = self.inner.sweeper.max_value_bytes();
        let past = past_limit(limit, self.inner.sweeper.store());
        let too_large = move |size: f64| {
            let n = size as u64;
            js_err(format!(
                "putBlob: bytes holds {n} {}, more than {past}",
                if n == 1 { "byte" } else { "bytes" }
            ))
        };
        let size = convert::blob_size(&bytes);
        if size > limit as f64 {
            return Promise::reject(&too_large(size));
        }
        let web = WebDigest::find();
        let parsed = convert::blob_bytes(&bytes).map_err(|why| js_err(format!("putBlob: {why}")));
        let digest = match (&parsed, &web) {
            (Ok(convert::BlobBytes::Now(bytes, view)), Some(web)) => web.start(view, bytes.len()),
            _ => None,
        };
        promise(&self.inner, |inner| async move {
            let (bytes, digest) = match parsed? {
                convert::BlobBytes::Now(bytes, _) => (bytes, digest),
                convert::BlobBytes::Later(read) => {
                    let buf = wasm_bindgen_futures::JsFuture::from(read)
                        .await
                        .map_err(|e| {
                            js_err(format!(
                                "putBlob: the Blob could not be read: {}",
                                convert::thrown(&e)
                            ))
                        })?;
                    // The Blob's own buffer: no one else holds it.
                    let view = Uint8Array::new(&buf);
                    if view.length() as usize > limit {
                        return Err(too_large(view.length().into()));
                    }
                    let bytes = view.to_vec();
                    let digest = web.and_then(|web| web.start(&buf, bytes.len()));
                    (bytes, digest)
                }
            };
            let id = match digest {
                Some(d) => digest_hex(d).await,
                None => None,
            };
            let now = inner.now()?;
            let (id, result) = match inner.sweeper.put_blob_as(&bytes, id, now).await {
                Ok(id) => (id, Ok(())),
                Err(e) => (String::new(), Err(e)),
            };
            inner.wrote(1, result, "putBlob")?;
            Ok(id.into())
        })
    }

    /// The blob's bytes, or `undefined` if the store does not hold it.
    #[wasm_bindgen(js_name = getBlob, unchecked_return_type = "Promise<Uint8Array<ArrayBuffer> | undefined>")]
    pub fn get_blob(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
    ) -> Promise {
        promise(&self.inner, |inner| async move {
            let id = id.as_string().ok_or_else(|| {
                js_err(format!(
                    "getBlob: id must be a string, got {}",
                    convert::describe(&id)
                ))
            })?;
            match inner
                .sweeper
                .get_blob(&id)
                .await
                .map_err(|e| named("getBlob", e))?
            {
                Some(bytes) => Ok(Uint8Array::from(&bytes[..]).into()),
                None => Ok(JsValue::UNDEFINED),
            }
        })
    }

    /// One page of keys (or `[key, value]` pairs): `{ items, next }`, where
    /// `next` is the `after` of the following page (absent at the end). The
    /// package's `keys()` and `entries()` iterate over these pages (it is
    /// theirs alone: `api.js` takes it off the public prototype).
    #[wasm_bindgen(js_name = keysPage, skip_typescript)]
    pub fn keys_page(
        &self,
        values: bool,
        #[wasm_bindgen(unchecked_param_type = "PageOptions | undefined")] options: JsValue,
    ) -> Promise {
        let what = if values { "entries" } else { "keys" };
        let parsed = opt(&options, &format!("{what} options"))
            .and_then(|o| options::parse_list_options(&o, what).map_err(js_err));
        promise(&self.inner, |inner| async move {
            let o = parsed?;
            let now = inner.now()?;
            let limit = o.limit.unwrap_or(options::MAX_PAGE).min(options::MAX_PAGE) as usize;
            let (items, next) = inner
                .sweeper
                .keys_page(
                    &o.namespace,
                    &o.prefix,
                    o.after.as_deref(),
                    limit,
                    values,
                    now,
                )
                .await
                .map_err(|e| js_err(format!("{what}: {e}")))?;
            let out = js_sys::Array::new();
            for (key, value) in items {
                let key = JsValue::from_str(&key);
                match value {
                    // `entries()` reads a value with a record of its own with get.
                    None if values => out.push(&js_sys::Array::of1(&key)),
                    None => out.push(&key),
                    Some(v) => {
                        let v = convert::from_stored(&v).map_err(js_err)?;
                        out.push(&js_sys::Array::of2(&key, &v))
                    }
                };
            }
            let page = js_sys::Object::new();
            let _ = Reflect::set(&page, &"items".into(), &out);
            if let Some(next) = next {
                let _ = Reflect::set(&page, &"next".into(), &next.into());
            }
            Ok(page.into())
        })
    }

    /// Deletes every entry of a namespace (re-checked as a run does; entries
    /// still referenced from outside stay). Resolves with a run report.
    #[wasm_bindgen(unchecked_return_type = "Promise<RunReport>")]
    pub fn clear(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] namespace: JsValue,
    ) -> Promise {
        let parsed = match namespace.as_string() {
            Some(ns) if !convert::lone_surrogate(&namespace, &ns) => {
                options::no_nul(&ns, "clear: namespace").map(|_| ns).map_err(js_err)
            }
            _ => Err(js_err(format!(
                "clear: namespace must be a well-formed string (\"\" is the default namespace), got {}",
                convert::describe(&namespace)
            ))),
        };
        promise(&self.inner, |inner| async move {
            let ns = parsed?;
            let _lock = inner.exclusive("clear").await?;
            let mut host = JsHost::new(inner.clone(), JsValue::UNDEFINED, None, None);
            let result = inner.sweeper.clear(&ns, &mut host).await;
            inner.running.set(false);
            let report = result.map_err(|e| js_err(format!("clear: {e}")))?;
            host.report_js(&report)
        })
    }

    /// A dry run: what `run` would delete now, and why.
    #[wasm_bindgen(unchecked_return_type = "Promise<PlanResult>")]
    pub fn plan(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PlanOptions | undefined")] options: JsValue,
    ) -> Promise {
        let parsed = opt(&options, "plan options")
            .and_then(|o| options::parse_run_options(&o, "plan").map_err(js_err));
        let signal = field(&options, "signal");
        promise(&self.inner, |inner| async move {
            let run = parsed?;
            // Named as fetch() names its abort, for apps that check e.name.
            let aborted = || {
                aborted(&signal).then(|| {
                    let e = js_err("plan: aborted by options.signal");
                    let _ = Reflect::set(&e, &"name".into(), &"AbortError".into());
                    e
                })
            };
            if let Some(e) = aborted() {
                return Err(e);
            }
            let now = inner.now()?;
            let mut host = JsHost::new(inner.clone(), signal.clone(), None, None);
            let plan = match inner.sweeper.plan_hosted(run.mode, now, &mut host).await {
                Ok(plan) => plan,
                Err(e) => {
                    return Err(aborted().unwrap_or_else(|| match e {
                        Error::Stopped => js_err("plan: this Sweeper was closed while it planned"),
                        e => named("plan", e),
                    }))
                }
            };
            if let Some(e) = aborted() {
                return Err(e);
            }
            // 50,000 actions take a long task to convert: convert them in
            // small slices, letting the page run between them.
            let out = PlanOut::from(&plan);
            let actions = js_sys::Array::new();
            for slice in out.actions.chunks(256) {
                let part: js_sys::Array = to_js(&slice)?.unchecked_into();
                for action in part.iter() {
                    actions.push(&action);
                }
                host.pause().await;
            }
            let result = js_sys::Object::new();
            let _ = Reflect::set(&result, &"actions".into(), &actions);
            let _ = Reflect::set(&result, &"summary".into(), &to_js(out.summary)?);
            Ok(result.into())
        })
    }

    /// Plans and runs a cleanup, yielding to the event loop between batches.
    #[wasm_bindgen(unchecked_return_type = "Promise<RunReport>")]
    pub fn run(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RunOptions | undefined")] options: JsValue,
    ) -> Promise {
        let parsed = opt(&options, "run options")
            .and_then(|o| options::parse_run_options(&o, "run").map_err(js_err));
        let signal = field(&options, "signal");
        let on_progress = field(&options, "onProgress").dyn_into::<Function>().ok();
        promise(&self.inner, |inner| async move {
            let run = parsed?;
            inner.after_background(&signal).await?;
            let busy =
                || js_err("run: a run is already in progress on this Sweeper; await it first");
            // Aborted, it settles at once below, even behind a run going.
            if inner.running.get() && !aborted(&signal) {
                return Err(busy());
            }
            // Across tabs and workers too: held until this run ends.
            let lock = super::driver::hand_lock(&inner, &signal).await;
            // An aborted signal stops every run the same way, however much
            // the store holds: before it starts; and so does a close() that
            // ended the wait for the lock (as it stops a run going).
            let stopped = if inner.stopping() {
                "closed"
            } else if aborted(&signal) {
                "aborted"
            } else {
                ""
            };
            if !stopped.is_empty() {
                let report = crate::exec::RunReport {
                    mode: run.mode,
                    ..Default::default()
                };
                let out = to_js(&report)?;
                let _ = Reflect::set(&out, &"stopped".into(), &stopped.into());
                return Ok(out);
            }
            if inner.running.replace(true) {
                return Err(busy());
            }
            let started = js_sys::Date::now();
            let deadline = run.budget_ms.map(|b| started + b as f64);
            let mut host = JsHost::new(inner.clone(), signal, on_progress, deadline);
            let result = match inner.now() {
                Ok(now) => {
                    host.limit_ops(run.max_ops);
                    inner
                        .run_leased(
                            run.mode,
                            now,
                            &mut host,
                            run.lease_ms,
                            lock.store_own(&inner),
                        )
                        .await
                        .map_err(|e| named("run", e))
                }
                Err(e) => Err(e),
            };
            inner.running.set(false);
            let mut report = result?;
            // A progress callback that threw or rejected stopped the run: the
            // run rejects with what it threw (where the run stopped is saved).
            if let Some(e) = host.failure.take() {
                // An object (another realm's Error too) as it is; a number,
                // a string or undefined thrown, in an Error naming it.
                if e.is_object() {
                    return Err(e);
                }
                let thrown = convert::describe(&e);
                return Err(js_err(format!(
                    "run: options.onProgress failed with {thrown}"
                )));
            }
            report.duration_ms = (js_sys::Date::now() - started).max(0.0) as u64;
            // Only a whole one: one that could not delete some items leaves
            // the period (a background run would be retried).
            if report.done && report.errors.is_empty() && run.mode == Mode::Full {
                feed(&inner, Input::FullRunByHand);
            }
            let out = to_js(&report)?;
            if let Some(why) = host.stopped {
                let _ = Reflect::set(&out, &"stopped".into(), &why.into());
            }
            if let Some(holder) = &host.leased_by {
                let _ = Reflect::set(&out, &"leasedBy".into(), &holder.into());
            }
            if let Some((used, _)) = host.ops_used() {
                let _ = Reflect::set(&out, &"ops".into(), &(used as f64).into());
            }
            Ok(out)
        })
    }

    /// Recomputes reference counts from the entries and repairs those that
    /// differ; safe while writers run.
    #[wasm_bindgen(unchecked_return_type = "Promise<RebuildReport>")]
    pub fn rebuild(&self) -> Promise {
        promise(&self.inner, |inner| async move {
            let report = inner
                .sweeper
                .rebuild()
                .await
                .map_err(|e| named("rebuild", e))?;
            to_js(&report)
        })
    }

    /// A snapshot of the current run's progress; a slice of a run stopped
    /// part-way goes on from what the slices before it handled and deleted,
    /// out of the run's total (`onProgress` gets the slice's own).
    #[wasm_bindgen(unchecked_return_type = "Progress")]
    pub fn progress(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.sweeper.progress())
    }

    /// Asks for a background run (default `"full"`): debounced, coalesced
    /// with other requests (the stronger mode wins), never two at once, and
    /// across tabs and workers one at a time (Web Locks).
    pub fn request(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Mode | undefined")] mode: JsValue,
    ) -> Result<(), JsValue> {
        self.inner.open()?;
        let mode = match mode.as_string().as_deref() {
            _ if mode.is_undefined() => Mode::Full,
            Some("full") => Mode::Full,
            Some("light") => Mode::Light,
            _ => {
                return Err(js_err(format!(
                    "request: mode must be \"light\" or \"full\", got {}",
                    convert::describe(&mode)
                )))
            }
        };
        // The background runs stopped on a store closed for good: say so.
        if self.inner.driver.stopped() {
            return Err(js_err(
                "request: the store is closed, so no run can start; open it again for a new Sweeper",
            ));
        }
        feed(&self.inner, Input::Request(mode));
        Ok(())
    }

    /// The maintenance operations of SPEC §5 behind one entry point, so the
    /// promise glue is compiled once: `api.js` gives each its method
    /// (`history`, `detail`, `resolvePrefix`, `prune`, `verify`, `zombies`,
    /// `deleteNamespace`, `health`), `a` and `b` being that method's arguments.
    #[wasm_bindgen(skip_typescript)]
    pub fn maintain(&self, op: &str, a: JsValue, b: JsValue) -> Promise {
        let op = op.to_string();
        promise(&self.inner, |inner| async move {
            let now = inner.now()?;
            let sw = &inner.sweeper;
            let fail = |e: Error| named(&op, e);
            // The run's host type: listing and planning are compiled once.
            let mut host = JsHost::new(inner.clone(), JsValue::UNDEFINED, None, None);
            match op.as_str() {
                "history" => {
                    let (ns, limit) = options::parse_history_options(&opt(&a, "history options")?)
                        .map_err(js_err)?;
                    // The default namespace of a store that holds nothing
                    // yet is empty, not missing (so in detail, resolvePrefix).
                    if let Some(ns) = ns.as_deref().filter(|ns| !ns.is_empty()) {
                        sw.known_namespace(ns, "history").await.map_err(js_err)?;
                    }
                    let _ = sw.flush_touches().await;
                    let found = sw
                        .history(ns.as_deref(), limit, &mut host)
                        .await
                        .map_err(fail)?;
                    let out: Vec<EntryOut> =
                        found.iter().map(|e| EntryOut::of(&e.id, &e.meta)).collect();
                    to_js(&out)
                }
                "detail" => {
                    let (id, include_expired) = key_options(&a, &b, "detail")?;
                    if !id.namespace.is_empty() {
                        sw.known_namespace(&id.namespace, "detail")
                            .await
                            .map_err(js_err)?;
                    }
                    let _ = sw.flush_touches().await;
                    let Some((meta, value)) = sw
                        .read_entry(&id, now, include_expired, false)
                        .await
                        .map_err(fail)?
                    else {
                        return Ok(JsValue::UNDEFINED);
                    };
                    let out = to_js(&EntryOut::of(&id, &meta))?;
                    let value =
                        convert::from_stored(&value).map_err(|e| js_err(format!("detail: {e}")))?;
                    let _ = Reflect::set(&out, &"value".into(), &value);
                    Ok(out)
                }
                "resolvePrefix" => {
                    let prefix = match a.as_string() {
                        Some(p) if !p.is_empty() && !convert::lone_surrogate(&a, &p) => p,
                        _ => {
                            return Err(js_err(format!(
                            "resolvePrefix: prefix must be a non-empty, well-formed string, got {}",
                            convert::describe(&a)
                        )))
                        }
                    };
                    let ns = options::parse_namespace_options(
                        &opt(&b, "resolvePrefix options")?,
                        "resolvePrefix",
                    )
                    .map_err(js_err)?;
                    if !ns.is_empty() {
                        sw.known_namespace(&ns, "resolvePrefix")
                            .await
                            .map_err(js_err)?;
                    }
                    let out = js_sys::Object::new();
                    let (k, v): (&str, JsValue) =
                        match sw.resolve_prefix(&ns, &prefix, now).await.map_err(fail)? {
                            crate::sweeper::Resolved::Key(k) => ("key", k.into()),
                            crate::sweeper::Resolved::Ambiguous(keys) => {
                                ("ambiguous", to_js(&keys)?)
                            }
                            crate::sweeper::Resolved::None => ("none", true.into()),
                        };
                    let _ = Reflect::set(&out, &k.into(), &v);
                    Ok(out.into())
                }
                "prune" => {
                    let older =
                        options::parse_prune_options(&opt(&a, "prune options")?).map_err(js_err)?;
                    let _lock = inner.exclusive("prune").await?;
                    let report = sw.prune(older, now, &mut host).await;
                    inner.running.set(false);
                    host.report_js(&report.map_err(fail)?)
                }
                "verify" => {
                    let (shard, repair) =
                        options::parse_verify_options(&opt(&a, "verify options")?)
                            .map_err(js_err)?;
                    to_js(&sw.verify(shard, repair, &mut host).await.map_err(fail)?)
                }
                "zombies" => to_js(&sw.zombies(&mut host).await.map_err(fail)?),
                "deleteNamespace" => {
                    let ns = match a.as_string() {
                        Some(ns) if !convert::lone_surrogate(&a, &ns) => ns,
                        _ => {
                            return Err(js_err(format!(
                                "deleteNamespace: namespace must be a well-formed string, got {}",
                                convert::describe(&a)
                            )))
                        }
                    };
                    let _lock = inner.exclusive("deleteNamespace").await?;
                    let report = sw.delete_namespace(&ns, &mut host).await;
                    inner.running.set(false);
                    host.report_js(&report.map_err(fail)?)
                }
                "health" => {
                    let period = inner.driver.period_ms();
                    let max_backlog = options::parse_health_options(&opt(&a, "health options")?)
                        .map_err(js_err)?;
                    let mut health = sw.health(period, now).await.map_err(fail)?;
                    if let Some(max) = max_backlog {
                        let found = sw.backlog(now, &mut host).await.map_err(fail)?;
                        health.weigh_backlog(found, max);
                    }
                    to_js(&health)
                }
                "migrate" => {
                    let _lock = inner.exclusive("migrate").await?;
                    let report = sw.migrate(&mut host).await;
                    inner.running.set(false);
                    to_js(&report.map_err(fail)?)
                }
                _ => Err(js_err(format!(
                    "Sweeper.maintain: unknown operation {}",
                    Quoted(&op)
                ))),
            }
        })
    }

    /// Copies every namespace, entry and blob to `target`, reads the copy
    /// back (blobs hashed), then empties this store of what was copied (an
    /// entry rewritten meanwhile stays); resumes a move cut short.
    #[wasm_bindgen(js_name = moveTo, unchecked_return_type = "Promise<MoveReport>")]
    pub fn move_to(&self, target: &JsStore) -> Promise {
        let target = target.inner.clone();
        promise(&self.inner, |inner| async move {
            let _lock = inner.exclusive("moveTo").await?;
            let mut host = JsHost::new(inner.clone(), JsValue::UNDEFINED, None, None);
            let report = inner.sweeper.move_to(&target, &mut host).await;
            inner.running.set(false);
            to_js(&report.map_err(|e| named("moveTo", e))?)
        })
    }

    /// The scheduler's state: runs so far, failures, the next run, the last one.
    #[wasm_bindgen(unchecked_return_type = "Stats")]
    pub fn stats(&self) -> JsValue {
        self.inner.driver.stats(self.inner.running.get())
    }

    /// Stops accepting calls and cancels the scheduler's timer. A run in
    /// progress stops after its current batch (`stopped: "closed"`), saving
    /// where it stopped for the next run. Reads' deferred refreshes of
    /// `accessedAt` are written now. Resolves once that run has stopped and
    /// those refreshes are written (or failed to be: a store closed
    /// meanwhile), so that `await sweeper.close(); store.close()` loses
    /// nothing; it never rejects.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        self.inner.closed.set(true);
        feed(&self.inner, Input::Close);
        // Reads' deferred refreshes of accessedAt go now, not when reads pause.
        Promise::new(&mut |resolve, _| self.inner.flush_now(Some(resolve)))
    }

    /// close()'s first half, while gets under way end: the scheduler's
    /// timer is cancelled and a run going stops after its batch.
    #[wasm_bindgen(js_name = "__halt", skip_typescript)]
    pub fn halt(&self) {
        self.inner.halted.set(true);
        feed(&self.inner, Input::Close);
    }

    /// Writes reads' deferred refreshes of `accessedAt` now: the package
    /// calls it when the page is hidden (it may be about to go away), and
    /// at free(), with `done`, called once they are written (or none were
    /// due): the store's close() waits for it.
    #[wasm_bindgen(js_name = "__flushReads", skip_typescript)]
    pub fn flush_reads(&self, done: Option<Function>) {
        if !self.inner.closed.get() && self.inner.sweeper.touches_pending() {
            self.inner.flush_now(done);
        } else if let Some(done) = done {
            // Nothing to write: the store closes at once.
            let _ = done.call0(&JsValue::UNDEFINED);
        }
    }
}

impl Inner {
    /// Writes reads' deferred refreshes now, after a run going stops at its
    /// batch's end (see `schedule_touch_flush`); then calls `done`.
    fn flush_now(self: &Rc<Self>, done: Option<Function>) {
        if !self.sweeper.touches_pending() && done.is_none() {
            return;
        }
        let inner = self.clone();
        super::driver::spawn(async move {
            // After a run going, and a flush already writing what it took.
            while inner.running.get() || inner.flushing.get() > 0 {
                gloo_timers::future::TimeoutFuture::new(20).await;
            }
            if inner.sweeper.touches_pending() {
                inner.flushing.set(inner.flushing.get() + 1);
                let _ = inner.sweeper.flush_touches().await;
                inner.flushing.set(inner.flushing.get() - 1);
            }
            if let Some(done) = done {
                let _ = done.call0(&JsValue::UNDEFINED);
            }
        });
    }
}

impl Drop for JsSweeper {
    /// free(): as close(), so that a background run stops at its next batch.
    fn drop(&mut self) {
        self.inner.closed.set(true);
        feed(&self.inner, Input::Close);
    }
}

/// The limit a value is held to, as its error says it: raising
/// `maxValueBytes` is the way past it unless the store holds no more.
fn past_limit(limit: usize, store: &AnyStore) -> String {
    match store {
        AnyStore::Kv(kv)
            if kv
                .max_entry_bytes()
                .is_some_and(|cap| limit == cap.saturating_sub(VALUE_HEADROOM)) =>
        {
            format!(
                "the limit of {limit} bytes (a {} store keeps no larger values)",
                kv.kind()
            )
        }
        _ => format!("the limit of {limit} bytes (raise maxValueBytes to store it)"),
    }
}

/// Most items one `putMany` call takes.
const MAX_PUT_MANY: usize = 100_000;

/// `putMany`'s items: `[{ key, value, ...putOptions }]`.
fn put_items(
    items: &JsValue,
    limit: usize,
    past_it: &str,
) -> Result<Vec<(EntryId, StoredValue, PutOptions)>, JsValue> {
    let Some(array) = items.dyn_ref::<js_sys::Array>() else {
        return Err(js_err(format!(
            "putMany: items must be an array of {{ key, value, ...options }}, got {}",
            convert::describe(items)
        )));
    };
    let read = |e: JsValue| {
        js_err(format!(
            "putMany: items threw {} when read (a getter or a Proxy)",
            convert::thrown(&e)
        ))
    };
    let n = Reflect::get(array, &"length".into())
        .map_err(read)?
        .as_f64()
        .unwrap_or(0.0) as usize;
    if n > MAX_PUT_MANY {
        return Err(js_err(format!(
            "putMany: items holds {n} entries, more than the limit of {MAX_PUT_MANY}; split it into several calls"
        )));
    }
    // A copy: a Proxy's traps run here, once, and what they throw is an error.
    let array = convert::try_array_from(array).map_err(read)?;
    let mut out = Vec::with_capacity(n);
    let mut left = options::MAX_VALUE_BYTES;
    for (i, item) in array.iter().enumerate() {
        if !item.is_object() {
            return Err(js_err(format!(
                "putMany: items[{i}] must be an object {{ key, value, ...options }}, got {}",
                convert::describe(&item)
            )));
        }
        // Getters run here: what they throw is this item's error.
        let read = |e: JsValue| {
            js_err(format!(
                "putMany: items[{i}] threw {} when read (a getter or a Proxy)",
                convert::thrown(&e)
            ))
        };
        let key = Reflect::get(&item, &"key".into()).map_err(read)?;
        let key = key_arg(&key, &format!("putMany items[{i}]"))?;
        let value = Reflect::get(&item, &"value".into()).map_err(read)?;
        // Each value within the limit, and all within what the module's memory takes.
        let (most, past) = if left < limit {
            (
                left,
                format!(
                    "the {} bytes one putMany call takes in all (split it into several calls)",
                    options::MAX_VALUE_BYTES
                ),
            )
        } else {
            (limit, past_it.to_string())
        };
        let value = convert::to_stored(&value, most, &past)
            .map_err(|e| js_err(format!("putMany items[{i}] ({}): {e}", Quoted(&key))))?;
        left = left.saturating_sub(value.len());
        // The options are the item less its key and value.
        let rest = js_sys::Object::new();
        convert::try_assign(&rest, &item).map_err(read)?;
        let _ = Reflect::delete_property(&rest, &"key".into());
        let _ = Reflect::delete_property(&rest, &"value".into());
        let (ns, opts) = options::parse_put_item(&opt(&rest, &format!("putMany items[{i}]"))?, i)
            .map_err(js_err)?;
        out.push((EntryId::new(ns, key), value, opts));
    }
    Ok(out)
}

/// An entry as `history` and `detail` show it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryOut<'a> {
    namespace: &'a str,
    key: &'a str,
    created_at: Millis,
    updated_at: Millis,
    accessed_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<Millis>,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    pinned: bool,
    locked: bool,
    dependent: bool,
    refs: &'a [String],
    blobs: &'a [String],
    /// Entries that reference this one.
    referrers: u64,
}

impl<'a> EntryOut<'a> {
    fn of(id: &'a EntryId, m: &'a crate::model::EntryMeta) -> Self {
        EntryOut {
            namespace: &id.namespace,
            key: &id.key,
            created_at: m.created_at,
            updated_at: m.updated_at,
            accessed_at: m.accessed_at,
            expires_at: m.expires_at,
            size: m.size,
            group: m.group.as_deref(),
            pinned: m.pinned,
            locked: m.locked,
            dependent: m.dependent,
            refs: &m.refs,
            blobs: &m.blobs,
            referrers: m.referrers,
        }
    }
}

fn key_options(key: &JsValue, options: &JsValue, what: &str) -> Result<(EntryId, bool), JsValue> {
    let key = key_arg(key, what)?;
    let (ns, include_expired) =
        options::parse_key_options(&opt(options, &format!("{what} options"))?, what)
            .map_err(js_err)?;
    Ok((EntryId::new(ns, key), include_expired))
}

/// The run's driver in JS: progress callback, abort signal, `close()`, time
/// budget, yielding.
pub(super) struct JsHost {
    inner: Rc<Inner>,
    signal: JsValue,
    on_progress: Option<Function>,
    deadline: Option<f64>,
    pub(super) stopped: Option<&'static str>,
    /// What the progress callback threw, or its promise rejected with.
    failure: Option<JsValue>,
    /// Batches begun: the budget never stops a run before its first, so that
    /// repeated budgeted runs always make progress.
    batches: u32,
    /// When this host last let the event loop run.
    yielded_at: f64,
    /// Who held a kvStore's run lease when this run could not take it.
    leased_by: Option<String>,
    /// The most backend calls the run may make, and the count when it began.
    max_ops: Option<(u64, u64)>,
    /// The most backend calls one item has cost in each phase of the run
    /// (entries, blobs, temps; 0: none measured yet).
    item_ops: [u64; 3],
    /// The phase the run is in (`Progress::phase`, as an index of `item_ops`).
    phase: usize,
    /// The items of the batch begun, the call count when it began, and its phase.
    batch: (usize, u64, usize),
    /// Items the run had deleted at the last report of progress.
    deleted_seen: u64,
    /// The run has deleted something or has a place to save (see `should_stop`).
    progressed: bool,
}

/// What one item is taken to cost before one of its phase was measured.
const FIRST_ITEM_CALLS: u64 = 6;

/// How long a long computation (planning) holds the main thread before it
/// yields: well under the 50 ms a page may freeze.
const HOLD_MS: f64 = 12.0;

impl JsHost {
    pub(super) fn new(
        inner: Rc<Inner>,
        signal: JsValue,
        on_progress: Option<Function>,
        deadline: Option<f64>,
    ) -> JsHost {
        JsHost {
            inner,
            signal,
            on_progress,
            deadline,
            stopped: None,
            failure: None,
            batches: 0,
            yielded_at: js_sys::Date::now(),
            max_ops: None,
            item_ops: [0; 3],
            phase: 0,
            batch: (0, 0, 0),
            deleted_seen: 0,
            leased_by: None,
            progressed: false,
        }
    }

    /// Stops the run before its backend calls would pass `max` (a kvStore).
    pub(super) fn limit_ops(&mut self, max: Option<u64>) {
        if let (Some(max), Some(now)) = (max, self.inner.sweeper.store().ops()) {
            self.max_ops = Some((max, now));
        }
    }

    /// Backend calls this run has made.
    fn ops_used(&self) -> Option<(u64, u64)> {
        let (max, start) = self.max_ops?;
        let now = self.inner.sweeper.store().ops()?;
        Some((now.saturating_sub(start), max))
    }

    /// A run-like report (clear, prune, deleteNamespace) as JS, saying why
    /// it stopped when it did (`stopped: "closed"`, as a run's).
    pub(super) fn report_js(&self, report: &crate::exec::RunReport) -> Result<JsValue, JsValue> {
        let out = to_js(report)?;
        let why = self.stopped.or(report.halted.then_some("closed"));
        if let (Some(why), false) = (why, report.done) {
            let _ = Reflect::set(&out, &"stopped".into(), &why.into());
        }
        Ok(out)
    }

    /// Charges the batch just done to its phase: the most calls an item
    /// cost there. A batch that deleted nothing (its items kept, or waiting
    /// for their referrers: a read each) is no sample of what deleting
    /// costs. Then the run is in `progress.phase`.
    fn settle_batch(&mut self, progress: &Progress) {
        let Some(now) = self.inner.sweeper.store().ops() else {
            return;
        };
        let phase = progress.phase;
        let (items, start, of) = self.batch;
        let deleted = progress.deleted > self.deleted_seen;
        self.deleted_seen = progress.deleted;
        if items > 0 && deleted {
            let per = now.saturating_sub(start).div_ceil(items as u64);
            self.item_ops[of] = self.item_ops[of].max(per);
        }
        self.batch = (0, now, 0);
        self.phase = match phase {
            "blobs" => 1,
            "temps" => 2,
            _ => 0,
        };
    }

    /// What the next item is taken to cost: the most an item of its phase
    /// cost so far, and never less than any phase's (or a first guess).
    fn next_item_ops(&self) -> u64 {
        let most = self.item_ops.iter().copied().max().unwrap_or(0);
        self.item_ops[self.phase].max(most).max(FIRST_ITEM_CALLS)
    }

    /// Whether not even one more item fits the limit, with room for giving
    /// the lease back and logging the run.
    fn out_of_ops(&mut self) -> bool {
        let Some((used, max)) = self.ops_used() else {
            return false;
        };
        used.saturating_add(self.next_item_ops())
            .saturating_add(AFTER_RUN_CALLS)
            > max
    }

    fn should_stop(&mut self) -> bool {
        if self.failure.is_some() {
            self.stopped = Some("failed");
        } else if aborted(&self.signal) {
            self.stopped = Some("aborted");
        } else if self.inner.stopping() {
            self.stopped = Some("closed");
        } else if self.batches > 0
            && self.progressed
            && self.deadline.is_some_and(|d| js_sys::Date::now() >= d)
        {
            self.stopped = Some("budget");
        } else if self.out_of_ops() {
            // Before the first batch too: a limit that leaves no room for one
            // item after the listing would stop every run there (the run
            // then rejects, saying so).
            self.stopped = Some("ops");
        }
        self.stopped.is_some()
    }

    /// Calls the progress callback, and waits for the promise it returns.
    async fn report(&mut self, progress: &Progress) {
        let Some(cb) = &self.on_progress else {
            return;
        };
        let Ok(p) = to_js(progress) else {
            return;
        };
        let failure = match cb.call1(&JsValue::UNDEFINED, &p) {
            Err(e) => Some(e),
            // A promise of another realm (an iframe's), or any thenable, is
            // waited for too, adopted once (`wait_for` races it again and again).
            Ok(returned) if returned.is_object() => {
                self.wait_for(Promise::resolve(&returned)).await
            }
            Ok(_) => None,
        };
        // The last report comes after the run finished: nothing to stop.
        if progress.running {
            self.failure = self.failure.take().or(failure);
        }
    }
}

impl JsHost {
    /// Waits for the promise a progress callback returned, and what it
    /// rejects with; a promise that never settles holds the run only until
    /// the run is aborted or the Sweeper closed.
    async fn wait_for(&self, pending: Promise) -> Option<JsValue> {
        let stop = || aborted(&self.signal) || self.inner.stopping();
        super::driver::settle_or(&pending, stop).await?.err()
    }
}

impl RunHost for JsHost {
    fn calls_counted(&self) -> bool {
        self.max_ops.is_some()
    }

    /// The run's listing pages are sized to fit, keeping room to give the
    /// lease back and log the run.
    fn list_cap(&self) -> Option<u64> {
        let (max, start) = self.max_ops?;
        Some(start.saturating_add(max).saturating_sub(AFTER_RUN_CALLS))
    }

    /// Under `maxOps`: the first batch of each phase holds one item, to
    /// learn what an item costs; later ones half as many as the calls left
    /// pay for at the costliest item so far (items differ: one with more
    /// references costs more).
    fn batch_room(&mut self, wanted: usize) -> usize {
        let n = match self.ops_used() {
            None => wanted,
            Some(_) if self.item_ops[self.phase] == 0 => 1,
            Some((used, max)) => {
                let left = max.saturating_sub(used).saturating_sub(AFTER_RUN_CALLS);
                usize::try_from(left / (2 * self.next_item_ops())).unwrap_or(usize::MAX)
            }
        }
        .clamp(1, wanted.max(1));
        let now = self.inner.sweeper.store().ops().unwrap_or(0);
        self.batch = (n, now, self.phase);
        n
    }

    /// Under `maxOps`: entries that go together (they reference one
    /// another) go only if all of them fit; else the run leaves them to a
    /// later run and goes on to blobs and temps.
    fn fits(&mut self, items: usize) -> bool {
        let Some((used, max)) = self.ops_used() else {
            return true;
        };
        // Not a stop: the run goes on to blobs and temps (it then reports
        // stopped: "ops", not being done).
        let cost = (items as u64).saturating_mul(self.next_item_ops());
        used.saturating_add(cost).saturating_add(AFTER_RUN_CALLS) <= max
    }

    fn stopped(&mut self) -> bool {
        // Listing: stop when the calls are used up (a store too large to
        // list within the limit says so in its report, rather than failing).
        if self.batches == 0 && self.ops_used().is_some_and(|(used, max)| used >= max) {
            self.stopped = Some("ops");
            return true;
        }
        self.should_stop()
    }

    async fn pause(&mut self) {
        if js_sys::Date::now() - self.yielded_at >= HOLD_MS {
            yield_now().await;
            self.yielded_at = js_sys::Date::now();
        }
    }

    async fn between_batches(&mut self, progress: &Progress) -> Flow {
        // A time budget stops a run only once it has somewhere to go on
        // from: a garbage cycle filling the first batches (every entry
        // waiting for a referrer in a later one) stopped every slice there.
        self.progressed |= progress.placed || progress.deleted > 0;
        self.settle_batch(progress);
        self.report(progress).await;
        if !progress.running || self.should_stop() {
            return if progress.running {
                Flow::Stop
            } else {
                Flow::Continue
            };
        }
        yield_now().await;
        self.yielded_at = js_sys::Date::now();
        if self.should_stop() {
            Flow::Stop
        } else {
            self.batches += 1;
            Flow::Continue
        }
    }
}

/// Lets the event loop run: a message to itself through a `MessageChannel`,
/// else a 0 ms timer. Not `scheduler.yield()`: its continuation runs before
/// the page's own timers, so a run yielding with it still starved them (a
/// 100,000-entry run held a heartbeat timer back 52–60 ms). Not a timer
/// first: nested timers wait at least 4 ms, which doubled a memory store's
/// runs.
async fn yield_now() {
    let global = js_sys::global();
    if let Some(channel) = field(&global, "MessageChannel")
        .dyn_into::<Function>()
        .ok()
        .and_then(|c| Reflect::construct(&c, &js_sys::Array::new()).ok())
    {
        let (inbox, outbox) = (field(&channel, "port1"), field(&channel, "port2"));
        let delivered = Promise::new(&mut |resolve, _| {
            let _ = Reflect::set(&inbox, &"onmessage".into(), &resolve);
        });
        let post = field(&outbox, "postMessage").dyn_into::<Function>();
        if post.is_ok_and(|post| post.call1(&outbox, &JsValue::NULL).is_ok()) {
            let _ = wasm_bindgen_futures::JsFuture::from(delivered).await;
            // Closed, the ports keep no Node process alive.
            for port in [&inbox, &outbox] {
                if let Ok(close) = field(port, "close").dyn_into::<Function>() {
                    let _ = close.call0(port);
                }
            }
            return;
        }
    }
    gloo_timers::future::TimeoutFuture::new(0).await;
}

/// A plan as JS sees it: entries carry `key`, blobs and temps `id`.
struct PlanOut<'a> {
    actions: Vec<ActionOut<'a>>,
    summary: &'a Summary,
}

#[derive(Serialize)]
struct ActionOut<'a> {
    kind: ActionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    reason: Reason,
    bytes: u64,
}

impl<'a> From<&'a Plan> for PlanOut<'a> {
    fn from(plan: &'a Plan) -> Self {
        let actions = plan
            .actions
            .iter()
            .map(|a| {
                let is_entry = a.kind == ActionKind::Entry;
                ActionOut {
                    kind: a.kind,
                    namespace: a.namespace.as_deref(),
                    key: is_entry.then_some(a.key.as_str()),
                    id: (!is_entry).then_some(a.key.as_str()),
                    reason: a.reason,
                    bytes: a.bytes,
                }
            })
            .collect();
        PlanOut {
            actions,
            summary: &plan.summary,
        }
    }
}

/// Blobs at least this large are hashed by the host's Web Crypto: below it,
/// hashing here costs less than the hop to another thread.
const WEB_DIGEST_MIN: usize = 16 * 1024;

/// The host's Web Crypto `digest`: it copies the bytes it is given at once
/// and hashes them off the main thread, about ten times faster than this
/// module's own code does on it. The host is trusted for it as it is for
/// its storage. Absent where the host has no Web Crypto (a page that is not
/// a secure context): the module then hashes the bytes itself.
struct WebDigest {
    subtle: JsValue,
    digest: Function,
}

impl WebDigest {
    fn find() -> Option<WebDigest> {
        let get = |o: &JsValue, k: &str| Reflect::get(o, &k.into()).ok();
        let subtle = get(&js_sys::global(), "crypto").and_then(|c| get(&c, "subtle"))?;
        let digest = get(&subtle, "digest")?.dyn_into().ok()?;
        Some(WebDigest { subtle, digest })
    }

    /// The SHA-256 of `data` (a view of `len` bytes, or an `ArrayBuffer`),
    /// begun now; `None` for small data, and for shared memory (which Web
    /// Crypto refuses).
    fn start(&self, data: &JsValue, len: usize) -> Option<Promise> {
        let buffer = match data.dyn_ref::<Uint8Array>() {
            Some(view) => view.buffer().into(),
            None => data.clone(),
        };
        if len < WEB_DIGEST_MIN || !buffer.is_instance_of::<js_sys::ArrayBuffer>() {
            return None;
        }
        self.digest
            .call2(&self.subtle, &"SHA-256".into(), data)
            .ok()?
            .dyn_into()
            .ok()
    }
}

/// The blob id of a digest begun by [`WebDigest::start`]; `None` if it
/// failed, and the module hashes the bytes itself.
async fn digest_hex(digest: Promise) -> Option<String> {
    let buf: js_sys::ArrayBuffer = wasm_bindgen_futures::JsFuture::from(digest)
        .await
        .ok()?
        .dyn_into()
        .ok()?;
    let bytes = Uint8Array::new(&buf).to_vec();
    (bytes.len() == 32).then(|| crate::model::hex(&bytes))
}
