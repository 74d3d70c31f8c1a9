//! Deterministic simulation: writers racing cleanup runs over a store that
//! fails, crashes, cuts batches short and lists stale and duplicate pages.
//!
//! One seeded loop drives writers (puts with refs, TTLs, pins, dependents and
//! blobs; putBlob of new and repeated bytes; deletes; re-references of old
//! blobs; reads) and cleanup runs (light and full, cut short by budgets and
//! aborts, crashed at random calls) over `FaultyStore<MemoryStore>`s: one for
//! the writers, one for the runs, both over the same records. Races happen
//! through the stores' hooks: before a run's store call a writer may act, and
//! before a writer's store call a whole run or another writer's action may
//! happen. Odd seeds present the store as non-atomic (Workers KV): batches
//! are then cut short anywhere, not only failed or applied whole.
//!
//! Invariants, checked against a model of what the writers were told:
//! - cheaply after every step: what the step read or wrote agrees with the
//!   model (a read returns a write current at some moment of the read, its
//!   metadata and value from the same write; a failed write happened whole
//!   or not at all), and one random entry is where the model says;
//! - fully after every step with a run and after every crash recovery:
//!   * no entry that must live is missing or differs from its last write
//!     (must live: written and not deleted by a writer, and pinned, or
//!     unexpired and not dependent, or dependent and younger than the grace
//!     period — in namespace `c`, which evicts by `maxEntries`, `maxAge` and
//!     `keepLast`, only pinned; and what those reference, transitively);
//!   * every entry in the store, live or not, has its value, and its refs
//!     and blobs exist (blob record and bytes, the bytes those of the id);
//!   * no entry exists that no writer wrote (or that a writer deleted);
//!   * reference counts never under-count (exact when batches are atomic);
//!   * a value or blob without its record is staged by a temp (a run will clean it);
//!   * a put refused with `MissingBlob` never names a blob whose grace
//!     period (restarted by putBlob) has not ended;
//! - after a quiet `rebuild()` and a quiet, fault-free full run: no garbage
//!   older than its grace period remains (the rebuild repairs what batches
//!   cut short over-counted on non-atomic stores, and must do so safely).
//!
//! Environment:
//! - `SIM_SEED=<n>`: run this seed only; `SIM_SEEDS=<n>`: run seeds 1..=n
//!   (default: `DEFAULT_SEEDS`);
//! - `SIM_STEPS=<n>`: steps per seed (default: `DEFAULT_STEPS`);
//! - `SIM_THREADS=<n>`: seeds run on n threads (default: cores, at most 2);
//! - `SIM_TRACE=1`: print every step; `SIM_KEEP_GOING=1`: report the first
//!   violation of each kind and go on, failing at the end;
//! - `SIM_SHORT_PAGES=<p>`: runs also get short list pages that do not end
//!   the listing, at rate p (this breaks the `Store::list` contract);
//! - `SIM_STRICT=1`: the `KNOWN_ISSUES` fail too.
//!
//! The default (`cargo test`, debug) runs 8 seeds x 130,000 = 1,040,000 steps:
//! about 2 minutes on 2 idle cores, 4 when they are busy. Release check, 50
//! million steps, about 25 minutes on 2 cores (18,000 steps/s per core):
//! `SIM_SEEDS=100 SIM_STEPS=500000 cargo test --release --test simulation -- --nocapture`
#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures_executor::block_on;
use kvsweep::codec::{self, Staged, StoredValue};
use kvsweep::exec::{ExecConfig, Flow, Progress, RunHost, RunToEnd};
use kvsweep::model::blob_id;
use kvsweep::store::faulty::{ready, Call, CallKind, Fault, FaultRates, FaultyStore, SplitMix64};
use kvsweep::store::{id_key, stamp, value_key, Record, Store, StoreError, Table};
use kvsweep::sweeper::Error;
use kvsweep::{
    Config, EntryId, EntryMeta, GroupRule, MemoryStore, Millis, Mode, Policy, PutOptions, Rules,
    Sweeper,
};

/// Seeds `cargo test` runs, `DEFAULT_STEPS` each.
const DEFAULT_SEEDS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
const DEFAULT_STEPS: u64 = 130_000;

const TORN_PUT: &str = "a failed put left a torn entry (neither the old nor the new write)";
const TORN_DETAIL: &str = "detail returned metadata and a value that are not one write";

/// Broken invariants already reported, each with its minimal reproduction
/// below (an ignored test): printed with their counts, failing only with
/// `SIM_STRICT=1`. Remove a line when its bug is fixed.
/// (Both reported ones are fixed: values are stored per write, see
/// `store::value_key`; their reproductions below now run as regression tests.)
const KNOWN_ISSUES: [(&str, &str); 0] = [];

const T0: Millis = 1_700_000_000_000;
/// The namespace with eviction rules (`maxEntries`, `maxAge`, `keepLast`).
const EVICTING_NS: &str = "c";
const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const KEYS: u64 = 16;
/// Distinct blob contents: putBlob often repeats bytes.
const BLOB_CONTENTS: u64 = 24;
const GRACE_MS: Millis = 60_000;
const TEMP_MAX_AGE_MS: Millis = 600_000;

type Faulty = FaultyStore<MemoryStore>;
type Sw = Sweeper<Faulty>;

/// What the writers were told: the last successful write of an entry.
#[derive(Clone, Debug, PartialEq)]
struct ModelEntry {
    value: Vec<u8>,
    written_at: Millis,
    expires_at: Option<Millis>,
    pinned: bool,
    dependent: bool,
    refs: BTreeSet<String>,
    blobs: BTreeSet<String>,
    /// In the namespace whose rules evict by count, age and retention.
    evictable: bool,
}

impl ModelEntry {
    fn expired(&self, now: Millis) -> bool {
        !self.pinned && self.expires_at.is_some_and(|t| t <= now)
    }

    /// A root for every run up to `now`: the planner keeps it whatever it references.
    fn root(&self, now: Millis) -> bool {
        self.pinned
            || (!self.evictable
                && !self.expired(now)
                && (!self.dependent || now.saturating_sub(self.written_at) < GRACE_MS))
    }
}

#[derive(Clone, Debug)]
struct ModelBlob {
    bytes: Vec<u8>,
    /// The grace start the store recorded when putBlob last returned Ok:
    /// until `grace_from + orphanGraceMs` the blob may not be collected.
    grace_from: Option<Millis>,
    /// When putBlob last returned Ok.
    put_at: Option<Millis>,
}

#[derive(Default, Debug)]
struct Stats {
    puts: u64,
    put_blobs: u64,
    deletes: u64,
    gets: u64,
    writer_errors: u64,
    conflicts: u64,
    busy: u64,
    missing_blob: u64,
    missing_entry: u64,
    refused_deletes: u64,
    /// MissingBlob for a blob putBlob returned within the grace period, when
    /// the blob was referenced then (so its grace was not restarted).
    hooked_writes: u64,
    runs: u64,
    light_runs: u64,
    nested_runs: u64,
    stopped_runs: u64,
    failed_runs: u64,
    resumed_runs: u64,
    reused_plans: u64,
    deleted: u64,
    deleted_by: BTreeMap<&'static str, u64>,
    kept: u64,
    run_item_errors: u64,
    crashes: u64,
    quiet_runs: u64,
    snapshots: u64,
    clock_jumps: u64,
    leaked_entries: u64,
    leaked_blobs: u64,
    /// Garbage entries kept by quiet runs because they are on (or only
    /// referenced from) a reference cycle, on stores that are not atomic.
    kept_cycles: u64,
    full_checks: u64,
}

struct World {
    rng: SplitMix64,
    now: Millis,
    step: u64,
    /// Where in the step we are, for failure messages.
    phase: String,
    entries: BTreeMap<EntryId, ModelEntry>,
    /// Entries whose state a broken invariant left unknown (keep-going mode only).
    unknown: BTreeSet<EntryId>,
    blobs: BTreeMap<String, ModelBlob>,
    seq: u64,
    /// Every write the model recorded this step, in order: what reads may see.
    log: Vec<(EntryId, Option<ModelEntry>)>,
    /// Blobs the model recorded a putBlob of this step.
    blob_log: Vec<String>,
    stats: Stats,
    trace: u64,
    /// Hooks do not nest: a writer racing a run does not start another run.
    in_hook: bool,
    /// No hooks and no faults (quiet runs, checks).
    quiet: bool,
    ran: bool,
}

struct Sim {
    seed: u64,
    atomic: bool,
    knobs: Knobs,
    policy: Policy,
    raw: MemoryStore,
    writer_store: Faulty,
    gc_store: Faulty,
    /// Two writer processes: the second races the first inside its calls.
    writers: RefCell<[Rc<Sw>; 2]>,
    /// Cleanup processes: the second one's runs overlap the first one's (a
    /// lock or lease that failed).
    gcs: RefCell<[Rc<Sw>; 2]>,
    world: RefCell<World>,
    meta_cache: RefCell<HashMap<Vec<u8>, EntryMeta>>,
    blob_cache: RefCell<HashMap<Vec<u8>, codec::BlobRecord>>,
    /// Broken invariants: kind → (count, first message).
    violations: RefCell<BTreeMap<&'static str, (u64, String)>>,
}

fn fnv(h: u64, bytes: &[u8]) -> u64 {
    let mut h = h ^ 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn pick<T: Clone>(rng: &mut SplitMix64, items: &[T]) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[rng.below(items.len() as u64) as usize].clone())
    }
}

/// A temp's staged items as sortable keys: one per staged write of an entry.
fn staged_keys(staged: &Staged) -> Vec<String> {
    match staged {
        Staged::Entry {
            namespace,
            key,
            writes,
        } => writes
            .iter()
            .map(|w| staged_value_key(&EntryId::new(namespace.clone(), key.clone()), *w))
            .collect(),
        Staged::Blob { id } => vec![format!("blob {id}")],
    }
}

fn staged_value_key(id: &EntryId, write_id: u64) -> String {
    format!("entry {:?} {:?} {write_id}", id.namespace, id.key)
}

/// The entry and write a `Values` key belongs to (see `store::value_key`).
fn value_owner(key: &EntryId) -> Option<(EntryId, u64)> {
    let (entry_key, write) = key.key.rsplit_once('\u{1}')?;
    let write_id = u64::from_str_radix(write, 16).ok()?;
    Some((EntryId::new(key.namespace.clone(), entry_key), write_id))
}

fn blob_bytes(n: u64) -> Vec<u8> {
    format!("blob #{n}").into_bytes()
}

/// An entry as the store holds it: decoded metadata and value, either may be absent.
#[derive(Clone, Debug, PartialEq)]
struct Stored {
    meta: Option<EntryMeta>,
    value: Option<Vec<u8>>,
}

impl Stored {
    /// What a reader sees: both halves, or nothing.
    fn visible(&self) -> Option<(&EntryMeta, &Vec<u8>)> {
        self.meta.as_ref().zip(self.value.as_ref())
    }

    fn is(&self, m: &ModelEntry) -> bool {
        self.visible()
            .is_some_and(|(meta, value)| matches(meta, value, m))
    }
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

fn matches(meta: &EntryMeta, value: &[u8], m: &ModelEntry) -> bool {
    value == m.value.as_slice()
        && meta.size == m.value.len() as u64
        && meta.expires_at == m.expires_at
        && meta.pinned == m.pinned
        && meta.dependent == m.dependent
        && meta.updated_at == m.written_at
        && set(&meta.refs) == m.refs
        && set(&meta.blobs) == m.blobs
}

fn decode_value(bytes: &[u8]) -> Option<Vec<u8>> {
    match StoredValue::decode(bytes) {
        Ok(StoredValue::Bytes(b)) => Some(b),
        _ => None,
    }
}

/// Where a read began: the last write then, and how far the write log went.
struct Read {
    before: Option<ModelEntry>,
    log_from: usize,
}

/// How far the write logs went when a write began.
#[derive(Clone, Copy)]
struct Mark {
    entries: usize,
    blobs: usize,
}

/// One writer action, chosen before it runs.
#[derive(Clone, Debug)]
enum WriterOp {
    Put {
        id: EntryId,
        entry: Box<ModelEntry>,
        opts: PutOptions,
    },
    PutBlob(Vec<u8>),
    Delete(EntryId),
    Get(EntryId),
    Detail(EntryId),
    GetBlob(String),
}

/// Drives a run: stops it at a budget of batches or at a random abort.
struct SimHost<'a> {
    sim: &'a Sim,
    budget: Option<u64>,
    abort: f64,
    batches: u64,
}

impl RunHost for SimHost<'_> {
    async fn between_batches(&mut self, _progress: &Progress) -> Flow {
        self.batches += 1;
        if self.budget.is_some_and(|b| self.batches > b) {
            return Flow::Stop;
        }
        let abort = self.abort;
        if self.sim.world.borrow_mut().rng.chance(abort) {
            return Flow::Stop;
        }
        Flow::Continue
    }
}

impl Sim {
    fn new(seed: u64, knobs: Knobs) -> Rc<Sim> {
        let mut rng = SplitMix64::new(seed ^ 0x5eed_0000_0000_0000);
        // Odd seeds present a store that cannot apply batches atomically (Workers KV).
        let atomic = seed % 2 == 0;
        let raw = MemoryStore::new();
        let writer_store = FaultyStore::new(raw.clone(), rng.next_u64());
        let gc_store = FaultyStore::new(raw.clone(), rng.next_u64());
        writer_store.set_atomic(atomic);
        gc_store.set_atomic(atomic);
        writer_store.set_rates(FaultRates {
            fail: 0.01,
            partial_apply: 0.03,
            ..FaultRates::default()
        });
        let mut policy = Policy {
            orphan_grace_ms: GRACE_MS,
            temp_max_age_ms: TEMP_MAX_AGE_MS,
            ..Policy::default()
        };
        // One namespace evicts by count, age and group retention: there only
        // pinned entries (and what they reference) must live.
        policy.namespaces.insert(
            EVICTING_NS.into(),
            Rules {
                max_entries: Some(6),
                max_age_ms: Some(10 * GRACE_MS),
                groups: [("g".to_string(), GroupRule { keep_last: 2 })].into(),
                ..Rules::default()
            },
        );
        let writers = [(); 2].map(|()| {
            Rc::new(Sweeper::new(
                writer_store.clone(),
                policy.clone(),
                Config {
                    write_nonce: rng.next_u64(),
                    ..Config::default()
                },
            ))
        });
        let gcs = [(); 2].map(|()| Rc::new(Self::gc_sweeper(&mut rng, &gc_store, &policy)));
        let sim = Rc::new(Sim {
            seed,
            atomic,
            knobs,
            policy,
            raw,
            writer_store,
            gc_store,
            writers: RefCell::new(writers),
            gcs: RefCell::new(gcs),
            world: RefCell::new(World {
                rng,
                now: T0,
                step: 0,
                phase: String::new(),
                entries: BTreeMap::new(),
                unknown: BTreeSet::new(),
                blobs: BTreeMap::new(),
                seq: 0,
                log: Vec::new(),
                blob_log: Vec::new(),
                stats: Stats::default(),
                trace: seed,
                in_hook: false,
                quiet: false,
                ran: false,
            }),
            meta_cache: RefCell::new(HashMap::new()),
            blob_cache: RefCell::new(HashMap::new()),
            violations: RefCell::new(BTreeMap::new()),
        });
        let weak: Weak<Sim> = Rc::downgrade(&sim);
        sim.gc_store.set_hook(move |call| {
            if let Some(sim) = weak.upgrade() {
                sim.before_run_call(call);
            }
        });
        let weak: Weak<Sim> = Rc::downgrade(&sim);
        sim.writer_store.set_hook(move |call| {
            if let Some(sim) = weak.upgrade() {
                sim.before_writer_call(call);
            }
        });
        sim
    }

    /// A cleanup process: small batches and pages, so a run makes many calls.
    fn gc_sweeper(rng: &mut SplitMix64, store: &Faulty, policy: &Policy) -> Sw {
        let exec = ExecConfig {
            batch_size: 1 + rng.below(6) as usize,
            page_size: 1 + rng.below(8) as usize,
        };
        Sweeper::new(
            store.clone(),
            policy.clone(),
            Config {
                exec,
                write_nonce: rng.next_u64(),
                ..Config::default()
            },
        )
    }

    fn rng<T>(&self, f: impl FnOnce(&mut SplitMix64) -> T) -> T {
        f(&mut self.world.borrow_mut().rng)
    }

    fn now(&self) -> Millis {
        self.world.borrow().now
    }

    /// Runs a future: with `block_on` at the top of a step, polled once inside hooks.
    fn drive<F: Future>(&self, fut: F) -> F::Output {
        let nested = self.world.borrow().in_hook;
        if nested {
            ready(fut)
        } else {
            block_on(fut)
        }
    }

    fn note(&self, event: impl AsRef<str>) {
        let event = event.as_ref();
        let mut w = self.world.borrow_mut();
        w.trace = fnv(w.trace, event.as_bytes());
        if self.knobs.trace {
            println!(
                "[seed {} step {} t+{}] {event}",
                self.seed,
                w.step,
                w.now - T0
            );
        }
    }

    fn violation(&self, kind: &'static str, detail: String) {
        let (step, phase) = {
            let w = self.world.borrow();
            (w.step, w.phase.clone())
        };
        let message = format!(
            "simulation invariant broken: {kind}\n  {detail}\n  at step {step} ({phase}), \
             store {}atomic: SIM_SEED={seed} SIM_STEPS={step}\n  reproduce: SIM_SEED={seed} \
             SIM_STEPS={step} SIM_TRACE=1 cargo test --test simulation \
             simulation_keeps_every_invariant -- --nocapture",
            if self.atomic { "" } else { "non-" },
            seed = self.seed,
        );
        let known = !self.knobs.strict && KNOWN_ISSUES.iter().any(|(k, _)| *k == kind);
        if !known && !self.knobs.keep_going {
            panic!("{message}");
        }
        let mut v = self.violations.borrow_mut();
        let slot = v.entry(kind).or_insert_with(|| {
            if !known {
                eprintln!("{message}");
            }
            (0, message)
        });
        slot.0 += 1;
    }

    // -----------------------------------------------------------------------
    // Reading the store directly (no faults, no hooks)
    // -----------------------------------------------------------------------

    fn raw_all(&self, table: Table) -> Vec<Record> {
        ready(self.raw.list(table, None, usize::MAX)).expect("memory store lists")
    }

    fn raw_get(&self, table: Table, key: &EntryId) -> Option<Vec<u8>> {
        ready(self.raw.get(table, std::slice::from_ref(key)))
            .expect("memory store reads")
            .pop()
            .flatten()
    }

    /// Decodes metadata, remembering the result by its bytes: checks read
    /// the same records again and again, and decoding is most of their cost.
    fn decode_meta(&self, bytes: &[u8]) -> EntryMeta {
        let mut cache = self.meta_cache.borrow_mut();
        if let Some(meta) = cache.get(bytes) {
            return meta.clone();
        }
        if cache.len() > 4096 {
            cache.clear();
        }
        let meta = codec::decode_meta(bytes).expect("the simulation writes no corrupt metadata");
        cache.insert(bytes.to_vec(), meta.clone());
        meta
    }

    fn decode_blob(&self, bytes: &[u8]) -> codec::BlobRecord {
        let mut cache = self.blob_cache.borrow_mut();
        if let Some(rec) = cache.get(bytes) {
            return rec.clone();
        }
        if cache.len() > 4096 {
            cache.clear();
        }
        let rec = codec::decode_blob(bytes).expect("the simulation writes no corrupt blob records");
        cache.insert(bytes.to_vec(), rec.clone());
        rec
    }

    fn read_entry(&self, id: &EntryId) -> Stored {
        let record = self.raw_get(Table::Meta, id);
        let meta = record.as_ref().map(|b| self.decode_meta(b));
        let inline = record.and_then(|b| codec::inline_value(&b).ok().flatten());
        let value = meta
            .as_ref()
            .and_then(|m| {
                inline.or_else(|| self.raw_get(Table::Values, &value_key(id, m.write_id)))
            })
            .and_then(|b| decode_value(&b));
        Stored { meta, value }
    }

    /// Entries that must exist at `now`: the model's roots and what they reference.
    fn must_exist(&self) -> BTreeSet<EntryId> {
        let w = self.world.borrow();
        let mut live: BTreeSet<EntryId> = BTreeSet::new();
        let mut stack: Vec<EntryId> = w
            .entries
            .iter()
            .filter(|(id, e)| e.root(w.now) && !w.unknown.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        while let Some(id) = stack.pop() {
            if !live.insert(id.clone()) {
                continue;
            }
            for r in &w.entries[&id].refs {
                let rid = EntryId::new(id.namespace.clone(), r.clone());
                if w.entries.contains_key(&rid) && !w.unknown.contains(&rid) && !live.contains(&rid)
                {
                    stack.push(rid);
                }
            }
        }
        live
    }

    // -----------------------------------------------------------------------
    // Steps
    // -----------------------------------------------------------------------

    fn step(&self) {
        let choice = {
            let mut w = self.world.borrow_mut();
            w.step += 1;
            w.phase = "top level".into();
            w.ran = false;
            w.log.clear();
            w.blob_log.clear();
            let tick = w.rng.below(400);
            w.now += tick;
            w.rng.below(1000)
        };
        match choice {
            0..=819 => self.writer_step(),
            820..=899 => self.run_step(false),
            900..=939 => self.snapshot_step(),
            940..=954 => {
                let jump = self.rng(|r| {
                    if r.below(5) == 0 {
                        TEMP_MAX_AGE_MS + r.below(TEMP_MAX_AGE_MS)
                    } else {
                        r.below(3 * GRACE_MS)
                    }
                });
                self.world.borrow_mut().now += jump;
                self.world.borrow_mut().stats.clock_jumps += 1;
                self.note(format!("clock jumps {jump} ms"));
            }
            955..=964 => {
                // A new writer process: its namespace cache starts empty.
                let (which, nonce) = self.rng(|r| (r.below(2) as usize, r.next_u64()));
                self.writers.borrow_mut()[which] = Rc::new(Sweeper::new(
                    self.writer_store.clone(),
                    self.policy.clone(),
                    Config {
                        write_nonce: nonce,
                        ..Config::default()
                    },
                ));
                self.note("writer restarts");
            }
            965..=974 => {
                self.restart_gc();
                self.note("cleanup process restarts");
            }
            975..=977 => self.quiet_step(),
            _ => {
                let op = self.choose_writer_op(true);
                self.writer_op(op);
            }
        }
        if self.gc_store.is_crashed() {
            self.gc_store.recover();
            self.restart_gc();
            self.note("cleanup process recovers from its crash");
            self.world.borrow_mut().phase = "after crash recovery".into();
            self.full_check();
        } else if self.world.borrow().ran {
            self.world.borrow_mut().phase = "after a run".into();
            self.full_check();
        }
        self.world.borrow_mut().phase = "spot check".into();
        self.spot_check();
    }

    fn restart_gc(&self) {
        let gcs = {
            let mut w = self.world.borrow_mut();
            [(); 2].map(|()| Rc::new(Self::gc_sweeper(&mut w.rng, &self.gc_store, &self.policy)))
        };
        *self.gcs.borrow_mut() = gcs;
    }

    fn snapshot_step(&self) {
        if self.rng(|r| r.below(8)) == 0 {
            self.gc_store.drop_snapshot();
            self.note("stale listings off");
        } else {
            ready(self.gc_store.snapshot()).expect("memory store snapshots");
            self.world.borrow_mut().stats.snapshots += 1;
            self.note("snapshot for stale listings");
        }
    }

    fn writer_step(&self) {
        let op = self.choose_writer_op(false);
        self.writer_op(op);
    }

    /// Before a run's store call: maybe a writer acts first.
    fn before_run_call(&self, call: &Call) {
        let (outer, overlap) = {
            let mut w = self.world.borrow_mut();
            if w.in_hook || w.quiet {
                return;
            }
            let roll = w.rng.below(1000);
            if roll >= 200 {
                return;
            }
            w.in_hook = true;
            let overlap = roll < 2;
            let racer = if overlap { "another run" } else { "writer" };
            let phase = format!("{racer} racing run call #{} ({:?})", call.index, call.kind);
            (std::mem::replace(&mut w.phase, phase), overlap)
        };
        if overlap {
            self.run_by(1, true);
            let mut w = self.world.borrow_mut();
            w.in_hook = false;
            w.phase = outer;
            return;
        }
        let n = 1 + self.rng(|r| r.below(2));
        for _ in 0..n {
            {
                let mut w = self.world.borrow_mut();
                let tick = w.rng.below(30);
                w.now += tick;
                w.stats.hooked_writes += 1;
            }
            let op = self.choose_writer_op(false);
            self.writer_op(op);
        }
        let mut w = self.world.borrow_mut();
        w.in_hook = false;
        w.phase = outer;
    }

    /// Before a writer's store call: rarely, a whole run or another writer's
    /// action happens first.
    fn before_writer_call(&self, call: &Call) {
        let (outer, run) = {
            let mut w = self.world.borrow_mut();
            if w.in_hook || w.quiet {
                return;
            }
            let roll = w.rng.below(100);
            if roll >= 5 {
                return;
            }
            w.in_hook = true;
            let run = roll < 2;
            let racer = if run { "run" } else { "other writer" };
            let phase = format!(
                "{racer} racing writer call #{} ({:?})",
                call.index, call.kind
            );
            (std::mem::replace(&mut w.phase, phase), run)
        };
        if run {
            self.run_step(true);
        } else {
            self.world.borrow_mut().stats.hooked_writes += 1;
            let op = self.choose_writer_op(false);
            self.writer_op_by(1, op);
        }
        let mut w = self.world.borrow_mut();
        w.in_hook = false;
        w.phase = outer;
    }

    fn choose_writer_op(&self, reref: bool) -> WriterOp {
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        let now = w.now;
        let rng = &mut w.rng;
        let ns = NAMESPACES[rng.below(NAMESPACES.len() as u64) as usize];
        let key_id = |rng: &mut SplitMix64| EntryId::new(ns, format!("k{:02}", rng.below(KEYS)));
        let present: Vec<EntryId> = w
            .entries
            .keys()
            .filter(|id| id.namespace == ns && !w.unknown.contains(*id))
            .cloned()
            .collect();
        let roll = if reref { 0 } else { rng.below(100) };
        match roll {
            0..=44 => {
                let id = key_id(rng);
                w.seq += 1;
                let value = format!("{}/{}#{}", id.namespace, id.key, w.seq).into_bytes();
                let ttl = (rng.below(4) == 0).then(|| 1_000 + rng.below(120_000));
                let pinned = rng.below(25) == 0;
                let dependent = rng.below(4) == 0;
                let evictable = id.namespace == EVICTING_NS;
                let group = (evictable && rng.below(2) == 0).then(|| "g".to_string());
                let locked = evictable && rng.below(8) == 0;
                let mut refs = BTreeSet::new();
                for _ in 0..rng.below(3) {
                    if let Some(r) = pick(rng, &present) {
                        refs.insert(r.key);
                    }
                }
                if rng.below(20) == 0 {
                    refs.insert(id.key.clone());
                }
                let all_blobs: Vec<String> = w.blobs.keys().cloned().collect();
                let recent: Vec<String> = w
                    .blobs
                    .iter()
                    .filter(|(_, b)| b.put_at.is_some_and(|t| now - t < GRACE_MS))
                    .map(|(id, _)| id.clone())
                    .collect();
                let mut blobs = BTreeSet::new();
                for _ in 0..rng.below(3) {
                    // Re-referencing an old blob (maybe collected) or a recent one.
                    let from = if reref || rng.below(4) == 0 {
                        &all_blobs
                    } else {
                        &recent
                    };
                    if let Some(b) = pick(rng, from) {
                        blobs.insert(b);
                    }
                }
                if reref {
                    if let Some(b) = pick(rng, &all_blobs) {
                        blobs.insert(b);
                    }
                }
                let entry = ModelEntry {
                    value: value.clone(),
                    written_at: now,
                    expires_at: ttl.map(|t| now + t),
                    pinned,
                    dependent,
                    refs: refs.clone(),
                    blobs: blobs.clone(),
                    evictable,
                };
                let opts = PutOptions {
                    ttl_ms: ttl,
                    pinned,
                    dependent,
                    group,
                    locked,
                    refs: refs.into_iter().collect(),
                    blobs: blobs.into_iter().collect(),
                    ..PutOptions::default()
                };
                WriterOp::Put {
                    id,
                    entry: Box::new(entry),
                    opts,
                }
            }
            45..=62 => WriterOp::PutBlob(blob_bytes(rng.below(BLOB_CONTENTS))),
            63..=74 => {
                let id = if rng.below(4) == 0 {
                    key_id(rng)
                } else {
                    pick(rng, &present).unwrap_or_else(|| key_id(rng))
                };
                WriterOp::Delete(id)
            }
            75..=86 => {
                let id = pick(rng, &present).unwrap_or_else(|| key_id(rng));
                WriterOp::Get(id)
            }
            87..=94 => {
                let id = pick(rng, &present).unwrap_or_else(|| key_id(rng));
                WriterOp::Detail(id)
            }
            _ => {
                let all: Vec<String> = w.blobs.keys().cloned().collect();
                match pick(rng, &all) {
                    Some(b) => WriterOp::GetBlob(b),
                    None => WriterOp::PutBlob(blob_bytes(rng.below(BLOB_CONTENTS))),
                }
            }
        }
    }

    fn writer_op(&self, op: WriterOp) {
        self.writer_op_by(0, op)
    }

    fn writer_op_by(&self, which: usize, op: WriterOp) {
        let writer = self.writers.borrow()[which].clone();
        let now = self.now();
        match op {
            WriterOp::Put { id, entry, opts } => {
                self.world.borrow_mut().stats.puts += 1;
                let value = StoredValue::Bytes(entry.value.clone());
                let mark = self.mark();
                let result = self.drive(writer.put(&id, value, opts.clone(), now));
                self.note(format!(
                    "put {}/{} refs={:?} blobs={} ttl={:?} pinned={} dependent={} -> {:?}",
                    id.namespace,
                    id.key,
                    opts.refs,
                    opts.blobs.len(),
                    opts.ttl_ms,
                    opts.pinned,
                    opts.dependent,
                    result.as_ref().err()
                ));
                self.settle_put(&id, *entry, mark, result);
            }
            WriterOp::PutBlob(bytes) => {
                self.world.borrow_mut().stats.put_blobs += 1;
                let result = self.drive(writer.put_blob(&bytes, now));
                self.note(format!(
                    "putBlob {:?} -> {:?}",
                    String::from_utf8_lossy(&bytes),
                    result
                ));
                self.settle_put_blob(bytes, result);
            }
            WriterOp::Delete(id) => {
                self.world.borrow_mut().stats.deletes += 1;
                let read = self.begin_read(&id);
                let result = self.drive(writer.delete(&id));
                self.note(format!(
                    "delete {}/{} -> {:?}",
                    id.namespace, id.key, result
                ));
                self.settle_delete(&id, read, result);
            }
            WriterOp::Get(id) => {
                self.world.borrow_mut().stats.gets += 1;
                let read = self.begin_read(&id);
                let result = self.drive(writer.get(&id, now));
                self.note(format!(
                    "get {}/{} -> {:?}",
                    id.namespace,
                    id.key,
                    result.as_ref().map(|v| v.is_some())
                ));
                self.settle_get(&id, read, result);
            }
            WriterOp::Detail(id) => {
                self.world.borrow_mut().stats.gets += 1;
                let read = self.begin_read(&id);
                let result = self.drive(writer.detail(&id, now, true));
                self.note(format!(
                    "detail {}/{} -> {:?}",
                    id.namespace,
                    id.key,
                    result.as_ref().map(|v| v.is_some())
                ));
                self.settle_detail(&id, read, result);
            }
            WriterOp::GetBlob(b) => {
                let result = self.drive(writer.get_blob(&b));
                self.note(format!(
                    "getBlob {} -> {:?}",
                    &b[..8],
                    result.as_ref().map(|v| v.is_some())
                ));
                if let Ok(Some(bytes)) = result {
                    let want = self.world.borrow().blobs[&b].bytes.clone();
                    if bytes != want {
                        self.violation("getBlob returned other bytes", format!("blob {b}"));
                    }
                }
            }
        }
    }

    fn count_error(&self, e: &Error) {
        let mut w = self.world.borrow_mut();
        w.stats.writer_errors += 1;
        match e {
            Error::Store(StoreError::Conflict(_)) => w.stats.conflicts += 1,
            Error::Busy(_) => w.stats.busy += 1,
            Error::MissingBlob(_) => w.stats.missing_blob += 1,
            Error::MissingEntry(_) | Error::ExpiredEntry(_) => w.stats.missing_entry += 1,
            Error::Referenced { .. } => w.stats.refused_deletes += 1,
            _ => {}
        }
    }

    fn expected_error(&self, e: &Error) -> bool {
        matches!(
            e,
            Error::Store(StoreError::Backend(_) | StoreError::Conflict(_) | StoreError::Closed(_))
                | Error::Busy(_)
                | Error::MissingBlob(_)
                | Error::MissingEntry(_)
                | Error::ExpiredEntry(_)
                | Error::Referenced { .. }
        )
    }

    /// The model's last write of `id`, `None` when absent or unknown.
    fn last_write(&self, id: &EntryId) -> Option<ModelEntry> {
        let w = self.world.borrow();
        w.entries
            .get(id)
            .filter(|_| !w.unknown.contains(id))
            .cloned()
    }

    fn settle_put(&self, id: &EntryId, entry: ModelEntry, mark: Mark, result: Result<(), Error>) {
        let after = self.read_entry(id);
        let old = self.last_write(id);
        let unknown = self.world.borrow().unknown.contains(id);
        match result {
            Ok(()) => {
                if !after.is(&entry) {
                    self.violation(
                        "put returned Ok but the store does not hold the write",
                        format!("{id:?}: wrote {entry:?}, store has {after:?}"),
                    );
                }
                self.set_model(id, Some(entry));
            }
            Err(e) => {
                self.count_error(&e);
                if !self.expected_error(&e) {
                    self.violation("put failed unexpectedly", format!("{id:?}: {e}"));
                }
                // An error judged by the model as it is now, unless a racing
                // writer changed what the error is about while the put ran.
                if let Error::MissingBlob(b) = e.clone() {
                    let b = &b;
                    let raced = self.world.borrow().blob_log[mark.blobs..].contains(b);
                    let young = {
                        let w = self.world.borrow();
                        let now = w.now;
                        w.blobs
                            .get(b)
                            .and_then(|b| b.grace_from)
                            .is_some_and(|t| now.saturating_sub(t) < GRACE_MS)
                    };
                    // Unless a racing putBlob stored the bytes after this put looked for them.
                    if young && !raced {
                        self.violation(
                            "a blob was collected within the grace period putBlob gave",
                            format!("put {id:?} referencing blob {b} failed: {e}"),
                        );
                    }
                }
                if let Error::MissingEntry(r) = &e {
                    let raced = self.world.borrow().log[mark.entries..]
                        .iter()
                        .any(|(k, _)| k == r);
                    if !raced && self.must_exist().contains(r) {
                        self.violation(
                            "an entry that must live is missing",
                            format!("put {id:?} refused: {e}"),
                        );
                    }
                }
                // Did the write happen? Read it back: all of it, none of it, or torn.
                if after.is(&entry) {
                    self.set_model(id, Some(entry));
                } else if !unknown
                    && after.visible().is_some()
                    && !old.as_ref().is_some_and(|m| after.is(m))
                {
                    self.violation(
                        TORN_PUT,
                        format!(
                            "{id:?} after {e}:\n  last write {old:?}\n  wrote {entry:?}\n  now {after:?}"
                        ),
                    );
                    self.world.borrow_mut().unknown.insert(id.clone());
                }
            }
        }
    }

    fn settle_put_blob(&self, bytes: Vec<u8>, result: Result<String, Error>) {
        let id = blob_id(&bytes);
        let record = self.raw_get(Table::BlobMeta, &id_key(&id)).map(|b| {
            codec::decode_blob(&b).expect("the simulation writes no corrupt blob records")
        });
        let stored = self.raw_get(Table::Blobs, &id_key(&id));
        let now = self.now();
        match result {
            Ok(got) => {
                if got != id {
                    self.violation("putBlob returned another id", format!("{got} for {id}"));
                }
                let Some(record) = record else {
                    self.violation("putBlob returned Ok but the blob has no record", id);
                    return;
                };
                if stored.as_deref() != Some(bytes.as_slice()) {
                    self.violation(
                        "putBlob returned Ok but the bytes are not stored",
                        id.clone(),
                    );
                }
                let grace_from = Some(record.created_at);
                if now.saturating_sub(record.created_at) >= GRACE_MS {
                    self.violation(
                        "putBlob did not restart the bytes' grace period",
                        format!("{id}: {record:?} at {now}"),
                    );
                }
                let mut w = self.world.borrow_mut();
                w.blob_log.push(id.clone());
                w.blobs.insert(
                    id,
                    ModelBlob {
                        bytes,
                        grace_from,
                        put_at: Some(now),
                    },
                );
            }
            Err(e) => {
                self.count_error(&e);
                if !self.expected_error(&e) {
                    self.violation("putBlob failed unexpectedly", format!("{id}: {e}"));
                }
                if record.is_some() {
                    // Stored (perhaps before): writers may reference it, with no grace promised.
                    let mut w = self.world.borrow_mut();
                    w.blob_log.push(id.clone());
                    w.blobs.entry(id).or_insert(ModelBlob {
                        bytes,
                        grace_from: None,
                        put_at: None,
                    });
                }
            }
        }
    }

    fn settle_delete(&self, id: &EntryId, read: Read, result: Result<bool, Error>) {
        let after = self.read_entry(id);
        let old = self.last_write(id);
        let unknown = self.world.borrow().unknown.contains(id);
        match result {
            Ok(existed) => {
                if !existed && !self.readable(id, read).1 && self.must_exist().contains(id) {
                    self.violation(
                        "an entry that must live is missing",
                        format!("delete {id:?} found nothing"),
                    );
                }
                // A value left without metadata by a cut put is a temp's to clean.
                if after.meta.is_some() || (existed && after.value.is_some()) {
                    self.violation(
                        "delete returned Ok but the entry is still stored",
                        format!("{id:?}: {after:?}"),
                    );
                }
                self.set_model(id, None);
            }
            Err(e) => {
                self.count_error(&e);
                if !self.expected_error(&e) {
                    self.violation("delete failed unexpectedly", format!("{id:?}: {e}"));
                }
                if let Error::Referenced { .. } = e {
                    // Referrers may be phantoms (over-counts left by cut batches); real
                    // ones must exist when the count is exact (and no racer deleted them).
                    let raced = self.world.borrow().log.len() > read.log_from;
                    if self.atomic && !raced && self.true_referrers(id) == 0 {
                        self.violation(
                            "delete refused for referrers that do not exist",
                            format!("{id:?}: {e}"),
                        );
                    }
                }
                if after.visible().is_none() {
                    self.set_model(id, None);
                } else if !unknown && !old.as_ref().is_some_and(|m| after.is(m)) {
                    self.violation(
                        "a failed delete changed the entry",
                        format!("{id:?} after {e}: last write {old:?}, now {after:?}"),
                    );
                    self.world.borrow_mut().unknown.insert(id.clone());
                }
            }
        }
    }

    /// A detail read returns one write's metadata with that write's value.
    /// Records a writer's outcome in the model (and in the log reads check against).
    fn set_model(&self, id: &EntryId, entry: Option<ModelEntry>) {
        let mut w = self.world.borrow_mut();
        w.unknown.remove(id);
        match &entry {
            Some(e) => w.entries.insert(id.clone(), e.clone()),
            None => w.entries.remove(id),
        };
        w.log.push((id.clone(), entry));
    }

    /// Where the write logs are: what a writer's error is judged against.
    fn mark(&self) -> Mark {
        let w = self.world.borrow();
        Mark {
            entries: w.log.len(),
            blobs: w.blob_log.len(),
        }
    }

    /// Before a read: what it may return is the last write now or any write
    /// made while it runs (a racing writer's).
    fn begin_read(&self, id: &EntryId) -> Read {
        let w = self.world.borrow();
        Read {
            before: w.entries.get(id).cloned(),
            log_from: w.log.len(),
        }
    }

    /// The writes of `id` a read that began at `read` may have seen, and
    /// whether any write raced it.
    fn readable(&self, id: &EntryId, read: Read) -> (Vec<Option<ModelEntry>>, bool, bool) {
        let w = self.world.borrow();
        let mut versions = vec![read.before];
        versions.extend(
            w.log[read.log_from..]
                .iter()
                .filter(|(k, _)| k == id)
                .map(|(_, e)| e.clone()),
        );
        let raced = versions.len() > 1;
        (versions, raced, w.unknown.contains(id))
    }

    fn settle_detail(
        &self,
        id: &EntryId,
        read: Read,
        result: Result<Option<(EntryMeta, StoredValue)>, Error>,
    ) {
        let (versions, raced, unknown) = self.readable(id, read);
        match result {
            Ok(Some((meta, StoredValue::Bytes(value)))) if !unknown => {
                if !versions.iter().flatten().any(|m| matches(&meta, &value, m)) {
                    self.violation(
                        TORN_DETAIL,
                        format!(
                            "{id:?}: got {meta:?} with {:?}, writes it may see {versions:?}",
                            String::from_utf8_lossy(&value)
                        ),
                    );
                }
            }
            Ok(None) => {
                if !raced && self.must_exist().contains(id) {
                    self.violation(
                        "an entry that must live is missing",
                        format!("detail {id:?} found nothing"),
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                self.count_error(&e);
                if !self.expected_error(&e) {
                    self.violation("detail failed unexpectedly", format!("{id:?}: {e}"));
                }
            }
        }
    }

    fn settle_get(&self, id: &EntryId, read: Read, result: Result<Option<StoredValue>, Error>) {
        let now = self.now();
        let (versions, raced, unknown) = self.readable(id, read);
        if unknown {
            return;
        }
        let model = versions.last().cloned().flatten();
        match result {
            Ok(Some(v)) => {
                let got = match v {
                    StoredValue::Bytes(b) => b,
                    StoredValue::MsgPack(b) => b,
                };
                let seen: Vec<&ModelEntry> = versions
                    .iter()
                    .flatten()
                    .filter(|m| m.value == got)
                    .collect();
                if seen.is_empty() {
                    self.violation(
                        "get returned a value no write it may see made",
                        format!(
                            "{id:?}: got {:?}, writes it may see {versions:?}",
                            String::from_utf8_lossy(&got)
                        ),
                    );
                } else if seen.iter().all(|m| m.expired(now)) {
                    self.violation(
                        "get returned an expired entry",
                        format!("{id:?}: {seen:?}, now {now}"),
                    );
                }
            }
            Ok(None) => {
                if !raced
                    && model.is_some_and(|m| !m.expired(now))
                    && self.must_exist().contains(id)
                {
                    self.violation(
                        "an entry that must live is missing",
                        format!("get {id:?} found nothing"),
                    );
                }
            }
            Err(e) => {
                self.count_error(&e);
                if !self.expected_error(&e) {
                    self.violation("get failed unexpectedly", format!("{id:?}: {e}"));
                }
            }
        }
    }

    /// One cleanup run: a random mode, budget, abort rate, faults and maybe a crash.
    fn run_step(&self, nested: bool) {
        self.run_by(0, nested)
    }

    fn run_by(&self, which: usize, nested: bool) {
        let (mode, now, budget, abort, rates, crash_in) = {
            let mut w = self.world.borrow_mut();
            let r = &mut w.rng;
            let mode = if r.below(5) < 3 {
                Mode::Full
            } else {
                Mode::Light
            };
            let budget = (r.below(4) == 0).then(|| r.below(6));
            let abort = if r.below(8) == 0 { 0.2 } else { 0.0 };
            let rates = if r.below(2) == 0 {
                FaultRates::default()
            } else {
                FaultRates {
                    fail: 0.02,
                    partial_apply: 0.05,
                    stale_page: 0.3,
                    duplicate_record: 0.1,
                    short_page: self.knobs.short_pages,
                    ..FaultRates::default()
                }
            };
            let crash_in = (r.below(6) == 0).then(|| r.below(60));
            (mode, w.now, budget, abort, rates, crash_in)
        };
        self.gc_store.set_rates(rates);
        if let Some(k) = crash_in {
            self.gc_store.crash_after(self.gc_store.calls() + k);
        }
        let gc = self.gcs.borrow()[which].clone();
        let mut host = SimHost {
            sim: self,
            budget,
            abort,
            batches: 0,
        };
        let result = self.drive(gc.run(mode, now, &mut host));
        self.gc_store.set_rates(FaultRates::default());
        self.gc_store.clear_scheduled();
        let crashed = self.gc_store.is_crashed();
        {
            let mut w = self.world.borrow_mut();
            w.ran = true;
            let s = &mut w.stats;
            s.runs += 1;
            s.light_runs += u64::from(mode == Mode::Light);
            s.nested_runs += u64::from(nested);
            s.crashes += u64::from(crashed);
            match &result {
                Ok(report) => {
                    s.deleted += report.deleted.values().map(|t| t.count).sum::<u64>();
                    for (reason, t) in &report.deleted {
                        *s.deleted_by.entry(reason.as_str()).or_default() += t.count;
                    }
                    s.stopped_runs += u64::from(!report.done);
                    s.resumed_runs += u64::from(report.resumed);
                    s.reused_plans += u64::from(report.plan_reused);
                    s.kept += report.kept;
                    s.run_item_errors += report.errors.len() as u64;
                }
                Err(_) => s.failed_runs += 1,
            }
        }
        let summary = match &result {
            Ok(r) => {
                let deleted: u64 = r.deleted.values().map(|t| t.count).sum();
                format!(
                    "done={} deleted={deleted} kept={} errors={} resumed={}",
                    r.done,
                    r.kept,
                    r.errors.len(),
                    r.resumed
                )
            }
            Err(e) => format!("failed: {e}"),
        };
        self.note(format!(
            "{}run {mode:?} budget={budget:?} abort={abort} faults={} crash_in={crash_in:?} -> {summary}{}",
            if nested { "nested " } else { "" },
            rates != FaultRates::default(),
            if crashed { " (crashed)" } else { "" },
        ));
        if crashed && nested {
            // The crashed process is gone; the writer it raced goes on.
            self.gc_store.recover();
            self.restart_gc();
        }
    }

    /// A quiet, fault-free full run with nobody writing, then every check and
    /// the garbage check.
    fn quiet_step(&self) {
        self.world.borrow_mut().quiet = true;
        self.world.borrow_mut().phase = "quiet full run".into();
        self.gc_store.recover();
        self.gc_store.drop_snapshot();
        let gc = self.gcs.borrow()[0].clone();
        let now = self.now();
        // Repair what batches cut short over-counted, so the run can take it.
        match block_on(gc.rebuild()) {
            Ok(r) if r.errors.is_empty() && !r.superseded && r.skipped_changed == 0 => {}
            Ok(r) => self.violation("a quiet rebuild did not finish cleanly", format!("{r:?}")),
            Err(e) => self.violation("a quiet rebuild failed", e.to_string()),
        }
        let mut finished = false;
        // A run stopped earlier left a cursor: the first run resumes it.
        for _ in 0..2 {
            match block_on(gc.run(Mode::Full, now, &mut RunToEnd)) {
                Ok(report) => {
                    if !report.done || !report.errors.is_empty() {
                        self.violation("a quiet run did not finish cleanly", format!("{report:?}"));
                    }
                    if !report.resumed {
                        finished = true;
                        break;
                    }
                }
                Err(e) => self.violation("a quiet run failed", e.to_string()),
            }
        }
        if !finished {
            self.violation("a quiet run resumed twice", String::new());
        }
        self.world.borrow_mut().stats.quiet_runs += 1;
        self.note("quiet full run");
        self.world.borrow_mut().phase = "after a quiet full run".into();
        self.full_check();
        self.garbage_check();
        self.world.borrow_mut().quiet = false;
    }

    // -----------------------------------------------------------------------
    // Checks
    // -----------------------------------------------------------------------

    fn true_referrers(&self, id: &EntryId) -> u64 {
        self.raw_all(Table::Meta)
            .into_iter()
            .filter(|(k, _)| k.namespace == id.namespace)
            .map(|(_, b)| self.decode_meta(&b))
            .filter(|m| m.refs.contains(&id.key))
            .count() as u64
    }

    /// One random entry of the model is where the model says it is.
    fn spot_check(&self) {
        let (id, entry) = {
            let mut w = self.world.borrow_mut();
            let ids: Vec<EntryId> = w.entries.keys().cloned().collect();
            let Some(id) = pick(&mut w.rng, &ids) else {
                return;
            };
            if w.unknown.contains(&id) {
                return;
            }
            let e = w.entries[&id].clone();
            (id, e)
        };
        let stored = self.read_entry(&id);
        if stored.is(&entry) {
            return;
        }
        if stored.visible().is_some() {
            self.violation(
                "an entry differs from its last write",
                format!("{id:?}: wrote {entry:?}, store has {stored:?}"),
            );
        } else if self.must_exist().contains(&id) {
            self.violation(
                "an entry that must live is missing",
                format!("{id:?}: last write {entry:?}, store has {stored:?}"),
            );
        }
    }

    /// The whole store against the model and the structural invariants.
    fn full_check(&self) {
        self.world.borrow_mut().stats.full_checks += 1;
        let metas: BTreeMap<EntryId, EntryMeta> = self
            .raw_all(Table::Meta)
            .into_iter()
            .map(|(k, b)| (k, self.decode_meta(&b)))
            .collect();
        let values: BTreeMap<EntryId, Vec<u8>> = self.raw_all(Table::Values).into_iter().collect();
        // Values entry records hold in themselves (atomic stores, small values).
        let inline: BTreeMap<EntryId, Vec<u8>> = self
            .raw_all(Table::Meta)
            .into_iter()
            .filter_map(|(k, b)| Some((k, codec::inline_value(&b).ok()??)))
            .collect();
        let blob_records: BTreeMap<String, codec::BlobRecord> = self
            .raw_all(Table::BlobMeta)
            .into_iter()
            .map(|(k, b)| (k.key, self.decode_blob(&b)))
            .collect();
        let blob_bytes: BTreeMap<String, Vec<u8>> = self
            .raw_all(Table::Blobs)
            .into_iter()
            .map(|(k, b)| (k.key, b))
            .collect();
        let staged: BTreeSet<String> = self
            .raw_all(Table::Temps)
            .into_iter()
            .filter_map(|(_, b)| codec::decode_temp(&b).ok())
            .flat_map(|t| staged_keys(&t.staged))
            .collect();
        let w = self.world.borrow();
        let (entries, unknown) = (&w.entries, &w.unknown);

        let mut referrers: BTreeMap<EntryId, u64> = BTreeMap::new();
        let mut blob_refs: BTreeMap<&str, u64> = BTreeMap::new();
        for (id, meta) in &metas {
            for r in set(&meta.refs) {
                let rid = EntryId::new(id.namespace.clone(), r);
                if !metas.contains_key(&rid) {
                    self.violation(
                        "an entry references a missing entry",
                        format!("{id:?} -> {rid:?}"),
                    );
                }
                *referrers.entry(rid).or_default() += 1;
            }
            for b in set(&meta.blobs) {
                if let Some((k, _)) = blob_records.get_key_value(&b) {
                    *blob_refs.entry(k.as_str()).or_default() += 1;
                }
                if !blob_records.contains_key(&b) || !blob_bytes.contains_key(&b) {
                    self.violation(
                        "an entry references a missing blob",
                        format!(
                            "{id:?} -> {b} (record {}, bytes {})",
                            blob_records.contains_key(&b),
                            blob_bytes.contains_key(&b)
                        ),
                    );
                }
            }
            if unknown.contains(id) {
                continue;
            }
            match (
                inline
                    .get(id)
                    .or_else(|| values.get(&value_key(id, meta.write_id)))
                    .and_then(|v| decode_value(v)),
                entries.get(id),
            ) {
                (None, _) => self.violation(
                    "an entry's metadata is stored without its value",
                    format!("{id:?}: {meta:?}"),
                ),
                (Some(_), None) => self.violation(
                    "an entry exists that no writer holds",
                    format!("{id:?}: {meta:?}"),
                ),
                (Some(v), Some(m)) if !matches(meta, &v, m) => self.violation(
                    "an entry differs from its last write",
                    format!(
                        "{id:?}: wrote {m:?}, store has {meta:?} {:?}",
                        String::from_utf8_lossy(&v)
                    ),
                ),
                _ => {}
            }
        }
        for (id, meta) in &metas {
            let truth = referrers.get(id).copied().unwrap_or(0);
            if meta.referrers < truth || (self.atomic && meta.referrers != truth) {
                self.violation(
                    "an entry's reference count is wrong",
                    format!("{id:?} counts {} referrers, {truth} exist", meta.referrers),
                );
            }
        }
        for (b, rec) in &blob_records {
            let truth = blob_refs.get(b.as_str()).copied().unwrap_or(0);
            if rec.refs < truth || (self.atomic && rec.refs != truth) {
                self.violation(
                    "a blob's reference count is wrong",
                    format!("{b} counts {} referrers, {truth} exist", rec.refs),
                );
            }
            match blob_bytes.get(b) {
                None => self.violation("a blob record has no bytes", b.clone()),
                // The model holds each id's bytes: no need to hash them again.
                Some(bytes)
                    if self.world.borrow().blobs.get(b).map(|m| &m.bytes) != Some(bytes) =>
                {
                    self.violation("a blob's bytes are not the bytes of its id", b.clone())
                }
                _ => {}
            }
        }
        for key in values.keys() {
            let Some((id, write_id)) = value_owner(key) else {
                self.violation("a value record has a key no write made", format!("{key:?}"));
                continue;
            };
            let current = metas.get(&id).is_some_and(|m| m.write_id == write_id);
            if !current && !staged.contains(&staged_value_key(&id, write_id)) {
                self.violation(
                    "a value no metadata names is not staged by a temp (nothing will clean it)",
                    format!("{id:?} write {write_id:x}"),
                );
            }
        }
        for b in blob_bytes.keys().filter(|b| !blob_records.contains_key(*b)) {
            if !staged.contains(&format!("blob {b}")) {
                self.violation(
                    "blob bytes without a record are not staged by a temp (nothing will clean them)",
                    b.clone(),
                );
            }
        }
        for id in self.must_exist() {
            if !metas.contains_key(&id) {
                self.violation(
                    "an entry that must live is missing",
                    format!("{id:?}: last write {:?}", entries[&id]),
                );
            }
        }
    }

    /// After a quiet full run: nothing is garbage but what grace periods keep
    /// (and, on non-atomic stores, what cut batches over-counted).
    fn garbage_check(&self) {
        let now = self.now();
        let metas: BTreeMap<EntryId, EntryMeta> = self
            .raw_all(Table::Meta)
            .into_iter()
            .map(|(k, b)| (k, self.decode_meta(&b)))
            .collect();
        let registered: BTreeSet<String> = self
            .raw_all(Table::Namespaces)
            .into_iter()
            .map(|(k, _)| k.key)
            .collect();
        let mark = |roots: Vec<&EntryId>| -> BTreeSet<EntryId> {
            let mut live = BTreeSet::new();
            let mut stack: Vec<EntryId> = roots.into_iter().cloned().collect();
            while let Some(id) = stack.pop() {
                if !live.insert(id.clone()) {
                    continue;
                }
                for r in &metas[&id].refs {
                    let rid = EntryId::new(id.namespace.clone(), r.clone());
                    if metas.contains_key(&rid) {
                        stack.push(rid);
                    }
                }
            }
            live
        };
        let live = mark(
            metas
                .iter()
                .filter(|(_, m)| {
                    m.pinned
                        || (m.expires_at.is_none_or(|t| t > now)
                            && (!m.dependent || now.saturating_sub(m.updated_at) < GRACE_MS))
                })
                .map(|(id, _)| id)
                .collect(),
        );
        let mut referrers: BTreeMap<EntryId, u64> = BTreeMap::new();
        for (id, m) in &metas {
            for r in set(&m.refs) {
                *referrers
                    .entry(EntryId::new(id.namespace.clone(), r))
                    .or_default() += 1;
            }
        }
        // Over-counted entries (a cut batch's increments) stay, and so does what they reference.
        let leaked = mark(
            metas
                .iter()
                .filter(|(id, m)| {
                    !live.contains(*id) && m.referrers > referrers.get(*id).copied().unwrap_or(0)
                })
                .map(|(id, _)| id)
                .collect(),
        );
        // On a store that is not atomic, garbage reference cycles are kept
        // (no order of deletes serves them; see `exec::cycle_members`), and so
        // is what they reference: a leak, never a loss.
        let cycles = if self.atomic {
            BTreeSet::new()
        } else {
            let mut rest: BTreeSet<EntryId> = metas
                .keys()
                .filter(|id| !live.contains(*id))
                .cloned()
                .collect();
            loop {
                let targets = |id: &EntryId| -> Vec<EntryId> {
                    set(&metas[id].refs)
                        .into_iter()
                        .filter(|r| *r != id.key)
                        .map(|r| EntryId::new(id.namespace.clone(), r))
                        .collect()
                };
                let referenced: BTreeSet<EntryId> = rest.iter().flat_map(&targets).collect();
                let before = rest.len();
                let keep: BTreeSet<EntryId> = rest
                    .iter()
                    .filter(|id| {
                        referenced.contains(*id) && targets(id).iter().any(|t| rest.contains(t))
                    })
                    .cloned()
                    .collect();
                rest = keep;
                if rest.len() == before {
                    break;
                }
            }
            mark(rest.iter().collect())
        };
        let mut leaked_entries = 0;
        for (id, m) in &metas {
            if live.contains(id) {
                continue;
            }
            if cycles.contains(id) {
                self.world.borrow_mut().stats.kept_cycles += 1;
                continue;
            }
            if !registered.contains(&id.namespace) {
                self.violation(
                    "a namespace holds entries but is not registered (a zombie no writer made)",
                    format!("{id:?}"),
                );
            } else if leaked.contains(id) {
                leaked_entries += 1;
            } else {
                self.violation(
                    "garbage entry survived a quiet full run",
                    format!("{id:?}: {m:?} at {now}"),
                );
            }
        }
        let referenced: BTreeSet<&String> = metas.values().flat_map(|m| m.blobs.iter()).collect();
        let mut leaked_blobs = 0;
        for (k, b) in self.raw_all(Table::BlobMeta) {
            let rec = self.decode_blob(&b);
            if referenced.contains(&k.key) || now.saturating_sub(rec.created_at) < GRACE_MS {
                continue;
            }
            if rec.refs > 0 {
                leaked_blobs += 1;
            } else {
                self.violation(
                    "orphan blob survived a quiet full run",
                    format!("{}: {rec:?} at {now}", k.key),
                );
            }
        }
        for (k, b) in self.raw_all(Table::Temps) {
            let created_at = codec::decode_temp(&b).map_or(0, |t| t.created_at);
            if now.saturating_sub(created_at) >= TEMP_MAX_AGE_MS {
                self.violation(
                    "stale temp survived a quiet full run",
                    format!("{}: created {created_at}, now {now}", k.key),
                );
            }
        }
        let mut w = self.world.borrow_mut();
        w.stats.leaked_entries = w.stats.leaked_entries.max(leaked_entries);
        w.stats.leaked_blobs = w.stats.leaked_blobs.max(leaked_blobs);
        drop(w);
        // The quiet step rebuilt every count first: nothing may stay over-counted.
        if leaked_entries + leaked_blobs > 0 {
            self.violation(
                "garbage over-counted by cut batches survived a rebuild and a quiet full run",
                format!("{leaked_entries} entries, {leaked_blobs} blobs"),
            );
        }
    }

    /// The store's records, hashed: the end of a trace.
    fn store_digest(&self) -> u64 {
        let mut h = 0;
        for table in Table::ALL {
            for (k, v) in self.raw_all(table) {
                h = fnv(h, table.name().as_bytes());
                h = fnv(h, k.namespace.as_bytes());
                h = fnv(h, k.key.as_bytes());
                h = fnv(h, &stamp(&v).to_le_bytes());
            }
        }
        h
    }
}

/// What one seed did.
struct Outcome {
    trace: u64,
    summary: String,
    violations: Vec<String>,
}

/// How a simulation reports and which contract-breaking faults it injects.
#[derive(Clone, Copy, Debug, Default)]
struct Knobs {
    /// Print every step.
    trace: bool,
    /// Record the first violation of each kind and go on.
    keep_going: bool,
    /// Rate of short list pages that do not end the listing (`Fault::ShortPage`).
    short_pages: f64,
    /// Known issues fail too.
    strict: bool,
}

impl Knobs {
    fn from_env() -> Knobs {
        Knobs {
            trace: env_flag("SIM_TRACE"),
            keep_going: env_flag("SIM_KEEP_GOING"),
            strict: env_flag("SIM_STRICT"),
            short_pages: std::env::var("SIM_SHORT_PAGES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
        }
    }
}

fn simulate(seed: u64, steps: u64, knobs: Knobs) -> Outcome {
    let started = Instant::now();
    let sim = Sim::new(seed, knobs);
    for _ in 0..steps {
        sim.step();
    }
    sim.world.borrow_mut().phase = "end of simulation".into();
    sim.full_check();
    let digest = sim.store_digest();
    let w = sim.world.borrow();
    let s = &w.stats;
    let gc = sim.gc_store.stats();
    let wr = sim.writer_store.stats();
    let trace = fnv(w.trace, &digest.to_le_bytes());
    let summary = format!(
        "sim seed={seed} {} steps={steps} in {:.1}s: runs={} (light {}, nested {}, stopped {}, \
         failed {}, resumed {}, on a kept plan {}), crashes={}, quiet={}, faults={} (run store {}: stale pages {}, \
         duplicates {}, cut batches {}; writer store {}; writes landed past a cut {}), deletions={} {:?}, kept={}, conflicts={}, \
         busy={}, writes: puts {} putBlobs {} deletes {} gets {} errors {} (missing blob {}, \
         missing entry {}, refused deletes {}, hooked {}), \
         leaks: entries {} blobs {}, kept on garbage cycles {}, full checks={}, trace={trace:016x}",
        if sim.atomic { "atomic" } else { "non-atomic" },
        started.elapsed().as_secs_f64(),
        s.runs,
        s.light_runs,
        s.nested_runs,
        s.stopped_runs,
        s.failed_runs,
        s.resumed_runs,
        s.reused_plans,
        s.crashes,
        s.quiet_runs,
        gc.injected() + wr.injected(),
        gc.injected(),
        gc.stale_pages,
        gc.duplicate_records,
        gc.partial_applies,
        wr.injected(),
        gc.scattered_writes + wr.scattered_writes,
        s.deleted,
        s.deleted_by,
        s.kept,
        s.conflicts,
        s.busy,
        s.puts,
        s.put_blobs,
        s.deletes,
        s.gets,
        s.writer_errors,
        s.missing_blob,
        s.missing_entry,
        s.refused_deletes,
        s.hooked_writes,
        s.leaked_entries,
        s.leaked_blobs,
        s.kept_cycles,
        s.full_checks,
    );
    let mut summary = summary;
    let mut violations = Vec::new();
    for (kind, (n, first)) in sim.violations.borrow().iter() {
        match KNOWN_ISSUES.iter().find(|(k, _)| k == kind) {
            Some((_, repro)) if !knobs.strict => {
                summary += &format!("\n  KNOWN ISSUE ({n} times, reproduced by {repro}): {kind}");
            }
            _ => violations.push(format!("{kind}: {n} times; first:\n{first}")),
        }
    }
    Outcome {
        trace,
        summary,
        violations,
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

#[test]
fn simulation_keeps_every_invariant() {
    let seeds: Vec<u64> = match (env_u64("SIM_SEED"), env_u64("SIM_SEEDS")) {
        (Some(seed), _) => vec![seed],
        (None, Some(n)) => (1..=n).collect(),
        (None, None) => DEFAULT_SEEDS.to_vec(),
    };
    let steps = env_u64("SIM_STEPS").unwrap_or(DEFAULT_STEPS);
    let knobs = Knobs::from_env();
    let threads = env_u64("SIM_THREADS")
        .map(|n| n as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(2)))
        .clamp(1, seeds.len().max(1));
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = Vec::new();
                    while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let outcome = simulate(seed, steps, knobs);
                        println!("{}", outcome.summary);
                        failures.extend(outcome.violations);
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    println!(
        "sim: {} seeds x {steps} steps = {} steps in {:.1}s on {threads} threads",
        seeds.len(),
        seeds.len() as u64 * steps,
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn same_seed_gives_the_same_trace() {
    let knobs = Knobs {
        keep_going: true,
        ..Knobs::default()
    };
    let a = simulate(11, 3_000, knobs);
    let b = simulate(11, 3_000, knobs);
    assert_eq!(a.trace, b.trace, "{}\n{}", a.summary, b.summary);
    let c = simulate(12, 3_000, knobs);
    assert_ne!(a.trace, c.trace);
}

// ---------------------------------------------------------------------------
// Minimal reproductions of what the simulation found (known issues: `-- --ignored`)
// ---------------------------------------------------------------------------

fn sweeper<S: Store>(store: S, nonce: u64) -> Sweeper<S> {
    Sweeper::new(
        store,
        Policy::default(),
        Config {
            write_nonce: nonce,
            ..Config::default()
        },
    )
}

fn bytes(b: &[u8]) -> StoredValue {
    StoredValue::Bytes(b.to_vec())
}

#[test]
fn cut_put_on_non_atomic_store_is_all_or_nothing() {
    let store = FaultyStore::new(MemoryStore::new(), 0);
    store.set_atomic(false);
    let s = sweeper(store.clone(), 1);
    let id = EntryId::new("n", "k");
    block_on(s.put(&id, bytes(b"v1"), PutOptions::default(), 1_000)).unwrap();
    // The next put reads the entry (one call), then applies its batch: temp,
    // value, metadata, temp removal. Cut the batch after the value.
    store.partial_apply_at(store.calls() + 1, 2);
    let opts = PutOptions {
        ttl_ms: Some(60_000),
        ..PutOptions::default()
    };
    assert!(block_on(s.put(&id, bytes(b"v2"), opts, 2_000)).is_err());
    let (meta, value) = block_on(s.detail(&id, 2_000, true)).unwrap().unwrap();
    let old = value == bytes(b"v1") && meta.expires_at.is_none();
    let new = value == bytes(b"v2") && meta.expires_at == Some(62_000);
    assert!(old || new, "{value:?} under {meta:?}");
}

/// The first `apply` from now on is cut after `cut` writes (and, the store
/// not atomic, may land some of the run the cut falls in).
fn cut_next_apply(store: &FaultyStore<MemoryStore>, cut: usize) {
    let hooked = store.clone();
    let armed = std::cell::Cell::new(true);
    store.set_hook(move |call| {
        if call.kind == CallKind::Apply && armed.replace(false) {
            hooked.schedule(call.index, Fault::PartialApply(cut));
        }
    });
}

/// A day in ms: past the default age of a stale temp.
const DAY: Millis = 24 * 60 * 60 * 1000;

/// How many entries of namespace "n" reference `key`, as the store holds them now.
fn referencing(s: &Sweeper<FaultyStore<MemoryStore>>, keys: &[&str], key: &str) -> u64 {
    keys.iter()
        .filter_map(|k| block_on(s.detail(&EntryId::new("n", *k), 10_000, true)).unwrap())
        .filter(|(meta, _)| meta.refs.iter().any(|r| r == key))
        .count() as u64
}

/// A putMany, then a run deleting half the entries, cut at every write on a
/// store that is not atomic, where a run of value or temp writes (or deletes)
/// may land in part, as kvStore over unstorage makes them 16 at a time: every
/// entry reads whole (old or new, or absent), no count is ever too low, and
/// after a run and a rebuild nothing is left over.
#[test]
fn cuts_anywhere_in_runs_of_value_and_temp_writes_leave_every_entry_whole() {
    let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let id = |k: &str| EntryId::new("n", k);
    let refs = |r: &[&str]| PutOptions {
        refs: r.iter().map(|k| k.to_string()).collect(),
        ..PutOptions::default()
    };
    let value = |tag: &str| bytes(format!("{tag}-{}", "x".repeat(64)).as_bytes());
    let check = |s: &Sweeper<FaultyStore<MemoryStore>>, when: &str| {
        for k in keys {
            let got = block_on(s.detail(&id(k), 10_000, true));
            let ok = match &got {
                Ok(None) => true,
                Ok(Some((_, v))) => [value(&format!("{k}1")), value(&format!("{k}2"))].contains(v),
                Err(_) => false,
            };
            assert!(ok, "{when}: {k} reads {got:?}");
            if let Ok(Some((meta, _))) = got {
                let real = referencing(s, &keys, k);
                assert!(
                    meta.referrers >= real,
                    "{when}: {k} counts {} referrers, {real} exist",
                    meta.referrers
                );
            }
        }
    };
    for phase in ["putMany", "run"] {
        let mut scattered = 0;
        for cut in 0..48 {
            let store = FaultyStore::new(MemoryStore::new(), 0);
            store.set_atomic(false);
            let s = sweeper(store.clone(), 1);
            for k in ["a", "b", "c"] {
                block_on(s.put(
                    &id(k),
                    value(&format!("{k}1")),
                    PutOptions::default(),
                    1_000,
                ))
                .unwrap();
            }
            let expiring = || PutOptions {
                ttl_ms: Some(1),
                ..PutOptions::default()
            };
            let mut items = vec![
                (id("a"), value("a2"), refs(&["c"])),
                (id("b"), value("b2"), PutOptions::default()),
                (id("d"), value("d2"), refs(&["a", "c"])),
            ];
            // Expired by the run: its batch deletes their values and temps.
            for k in ["e", "f", "g", "h"] {
                items.push((id(k), value(&format!("{k}2")), expiring()));
            }
            if phase == "putMany" {
                cut_next_apply(&store, cut);
            }
            let put = block_on(s.put_many(items, 2_000));
            store.clear_hook();
            if phase == "putMany" {
                check(&s, &format!("putMany cut at {cut} ({put:?})"));
            } else {
                put.unwrap();
                // The run deletes e and f (expired): cut its first batch.
                cut_next_apply(&store, cut);
                let _ = block_on(s.run(Mode::Full, 5_000, &mut RunToEnd));
                store.clear_hook();
                check(&s, &format!("run cut at {cut}"));
            }
            scattered += store.stats().scattered_writes;
            // A run past every grace finishes what the cut left; a rebuild
            // lowers what it over-counted. Then nothing is left over.
            block_on(s.run(Mode::Full, DAY * 2, &mut RunToEnd)).unwrap();
            block_on(s.rebuild()).unwrap();
            block_on(s.run(Mode::Full, DAY * 3, &mut RunToEnd)).unwrap();
            check(&s, &format!("{phase} cut at {cut}, then a run"));
            for k in keys {
                if let Some((meta, _)) = block_on(s.detail(&id(k), DAY * 3, true)).unwrap() {
                    assert_eq!(
                        meta.referrers,
                        referencing(&s, &keys, k),
                        "{phase} cut at {cut}: {k}'s count after rebuild"
                    );
                }
            }
            let inner = store.inner();
            let entries = keys
                .iter()
                .filter(|k| block_on(s.detail(&id(k), DAY * 3, true)).unwrap().is_some())
                .count();
            assert_eq!(
                inner.count(Table::Temps),
                0,
                "{phase} cut at {cut}: temps left: {:?}, {:?}",
                inner.keys(Table::Temps),
                store.stats()
            );
            assert_eq!(
                inner.count(Table::Values),
                entries,
                "{phase} cut at {cut}: values left"
            );
        }
        assert!(scattered > 0, "{phase}: no cut landed a write past it");
    }
}

#[test]
fn detail_returns_metadata_and_value_of_one_write() {
    let raw = MemoryStore::new();
    let reader_store = FaultyStore::new(raw.clone(), 0);
    let writer = Rc::new(sweeper(raw.clone(), 1));
    let reader = sweeper(reader_store.clone(), 2);
    let id = EntryId::new("n", "k");
    block_on(writer.put(&id, bytes(b"v1"), PutOptions::default(), 1_000)).unwrap();
    // Between the reader's metadata read (call 0) and value read (call 1), a writer puts v2.
    let (w, wid) = (writer.clone(), id.clone());
    reader_store.set_hook(move |call| {
        if call.index == 1 {
            let opts = PutOptions {
                ttl_ms: Some(60_000),
                ..PutOptions::default()
            };
            ready(w.put(&wid, bytes(b"v2"), opts, 1_500)).unwrap();
        }
    });
    let (meta, value) = block_on(reader.detail(&id, 2_000, true)).unwrap().unwrap();
    let old = value == bytes(b"v1") && meta.expires_at.is_none();
    let new = value == bytes(b"v2") && meta.expires_at == Some(61_500);
    assert!(old || new, "{value:?} under {meta:?}");
}

/// Found by the simulation, fixed in 6457938: a regression test now.
#[test]
fn put_blob_restarts_grace_even_for_bytes_referenced_then() {
    let s = sweeper(MemoryStore::new(), 1);
    let grace = s.policy().orphan_grace_ms;
    let b = block_on(s.put_blob(b"shared", 0)).unwrap();
    let x = EntryId::new("n", "x");
    let refs_b = PutOptions {
        blobs: vec![b.clone()],
        ..PutOptions::default()
    };
    block_on(s.put(&x, bytes(b"x"), refs_b.clone(), 0)).unwrap();
    // Much later a writer stores the same bytes, about to reference them...
    let t = 2 * grace;
    assert_eq!(block_on(s.put_blob(b"shared", t)).unwrap(), b);
    // ...while another drops the last reference, and a run comes by.
    assert!(block_on(s.delete(&x)).unwrap());
    block_on(s.run(Mode::Light, t + 1, &mut RunToEnd)).unwrap();
    let y = EntryId::new("n", "y");
    block_on(s.put(&y, bytes(b"y"), refs_b, t + 2)).expect("putBlob returned 2 ms ago");
}
