//! `Sweeper`: the API users call (SPEC §8), over any [`Store`]. Time is passed
//! in as `now`; the JS binding reads its injected clock and passes it on.

use crate::error::Quoted;
use crate::vecmap::VecMap;
use std::cell::{Cell, RefCell};

use crate::codec::{self, DecodeError, StoredValue};
pub use crate::error::Error;
use crate::exec::{self, Cursor, ExecConfig, Progress, RunHost, RunReport};
use crate::model::{blob_id, is_blob_id, EntryId, EntryMeta, Inventory, InventoryEntry, Millis};
use crate::plan::{self, Mode, Plan, Reason};
use crate::policy::Policy;
use crate::refcount::distinct;
use crate::store::{id_key, value_key, Access, Op, Read, Step, Store, StoreError, Table};
use crate::write::{self, entry_tables, EntryWrite, Unreadable};

mod maint;
pub use maint::{
    assess, decode_run_log, Health, HealthFacts, HealthStatus, LoggedRun, MoveReport, Referrer,
    Resolved, Shard, VerifyReport, Zombie, AMBIGUOUS_MAX, RUN_LOG_LEN,
};

/// How long a put trusts that a namespace it registered is still registered
/// (see `Sweeper::registered`): later, it writes the record again.
pub const REGISTRATION_RECHECK_MS: Millis = 10_000;

/// Default largest value `put` and `putBlob` accept: 64 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 << 20;

/// Options of `put`, besides the key and value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Expires this long after the put (past 2^53 - 1 ms, then).
    pub ttl_ms: Option<Millis>,
    /// Expires at this time (past 2^53 - 1 ms, then); with `ttl_ms` too,
    /// the earlier of the two (JavaScript refuses both).
    pub expires_at: Option<Millis>,
    /// The retention group (`keepLast`) the entry counts in; `None`: none.
    pub group: Option<String>,
    /// Never deleted by any policy (nor does it expire).
    pub pinned: bool,
    /// Never deleted by retention (`keepLast`).
    pub locked: bool,
    /// Not a root of its own: lives only while a live entry references it
    /// (an attachment, a chunk).
    pub dependent: bool,
    /// Keys of other entries in the same namespace that this one keeps alive;
    /// each must be in the store and not expired.
    pub refs: Vec<String>,
    /// Ids of blobs (from `putBlob`) that this entry keeps alive; each must
    /// be in the store.
    pub blobs: Vec<String>,
    /// Bytes the entry counts for against `maxBytes`, when it stands for
    /// more than its value (a cached response kept elsewhere); default: the
    /// value's size.
    pub size: Option<u64>,
}

/// Settings of a sweeper besides its policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How runs are cut into batches and listings into pages.
    pub exec: ExecConfig,
    /// Largest value or blob accepted, in bytes; default
    /// [`DEFAULT_MAX_VALUE_BYTES`]. Not capped here: the JavaScript option
    /// `maxValueBytes` is (256 MiB), for the module's memory.
    pub max_value_bytes: usize,
    /// Seeds the ids of this sweeper's writes; sweepers sharing a store need
    /// different ones (the JS binding draws one at random).
    pub write_nonce: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            exec: ExecConfig::default(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            write_nonce: default_nonce(),
        }
    }
}

/// A nonce that differs between processes and between calls.
fn default_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let calls = CALLS.fetch_add(1, Ordering::Relaxed);
    // Neither a clock nor a process id exists on wasm32-unknown-unknown (both
    // panic there): the JS binding passes a random nonce instead.
    #[cfg(not(target_arch = "wasm32"))]
    let process = {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        time ^ u64::from(std::process::id()).rotate_left(40)
    };
    #[cfg(target_arch = "wasm32")]
    let process = 0;
    splitmix64(process ^ calls.wrapping_mul(0xbf58_476d_1ce4_e5b9))
}

/// A well-mixed 64-bit hash of `x` (splitmix64's finaliser).
#[doc(hidden)]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `State` record of a run that stopped early.
const CURSOR_KEY: &str = "run-cursor";

/// How long a stopped run's plan serves the runs that go on from it (see
/// [`Sweeper::run`]), counted from the `now` it was made at.
pub const PLAN_KEEP_MS: Millis = 30_000;

/// The plan of this sweeper's last run, kept when it stopped early and saved
/// its place: the next run of its mode goes on with it rather than listing
/// and planning the store again (a sliced run re-planned every slice).
struct KeptPlan {
    mode: Mode,
    made_at: Millis,
    /// The cursor record as the run saved it: a run elsewhere since (another
    /// tab, a worker) writes or deletes it, and the plan is dropped.
    cursor: Vec<u8>,
    plan: Plan,
}

/// The `State` record of the run lease (see [`Sweeper::take_lease`]).
const LEASE_KEY: &str = "run-lease";
/// The end of a lease owner's name when taken under the store's lock (see
/// `take_lease`).
const LOCKED_LEASE: &str = "\u{1}locked";

/// A lease owner's name without its `LOCKED_LEASE` ending.
fn unlocked(owner: &str) -> &str {
    owner.strip_suffix(LOCKED_LEASE).unwrap_or(owner)
}

/// The latest time an expiry can be: 2^53 - 1 ms, JavaScript's largest exact integer.
const LAST_TIME: Millis = (1 << 53) - 1;

/// Who holds the run lease, and until when: `until` as 8 bytes, little
/// endian, then `owner` as UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Lease {
    owner: String,
    until: Millis,
}

impl Lease {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.until.to_le_bytes().to_vec();
        out.extend_from_slice(self.owner.as_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Lease> {
        let (until, owner) = (bytes.get(..8)?, bytes.get(8..)?);
        Some(Lease {
            owner: String::from_utf8(owner.to_vec()).ok()?,
            until: Millis::from_le_bytes(until.try_into().ok()?),
        })
    }
}

/// How many entry records a sweeper keeps as guesses for its next writes.
const SEEN_RECORDS: usize = 1024;

/// Blobs up to this size are guessed new by `put_blob` (see there).
const BLOB_GUESS_MAX: usize = 256 * 1024;

/// Whether to guess that a record this sweeper has not seen is absent, by
/// what writes of such records found lately. A right guess lets a store
/// write without reading first, a round trip saved; a wrong one costs a
/// round trip more. So the guess is made while records have more often been
/// absent than present, within the last [`AbsentGuess::BOUND`] or so: a
/// burst of overwrites turns it off, and writes of new records (which are
/// still counted when not guessed) turn it on again.
#[derive(Debug, Default)]
struct AbsentGuess(Cell<i8>);

impl AbsentGuess {
    const BOUND: i8 = 4;

    /// Whether to guess the next unseen record absent.
    fn guess(&self) -> bool {
        self.0.get() >= 0
    }

    /// What a write of an unseen record found.
    fn found(&self, present: bool) {
        let s = self.0.get();
        self.0.set(if present {
            (s - 1).max(-Self::BOUND)
        } else {
            (s + 1).min(Self::BOUND)
        });
    }
}

/// Records of a listing page decoded between two of the host's pauses.
const DECODE_CHUNK: usize = 250;

/// How often a read may refresh an entry's `accessedAt`.
pub const TOUCH_INTERVAL_MS: Millis = 1000;

/// Reads' deferred refreshes of `accessedAt` are written once reads have
/// paused this long: a write transaction on the entries holds back every read
/// begun after it, so a burst of reads does not wait for its own refreshes.
pub const TOUCH_QUIET_MS: Millis = 1000;

/// ... and at the latest this long after the first read deferred one.
pub const TOUCH_MAX_DELAY_MS: Millis = 10_000;

/// Refreshes written per transaction: each is a read and a write, and a
/// slice this size keeps the page's main thread free well under 50 ms.
const TOUCH_BATCH: usize = 512;

/// When deferred refreshes are due, for reads first deferring one at
/// `first` and last reading at `last`: `None` now, else how long to wait
/// (never more than [`TOUCH_MAX_DELAY_MS`]). A clock set back before
/// `first` makes them due at once.
#[doc(hidden)]
pub fn touch_flush_wait(first: Millis, last: Millis, now: Millis) -> Option<Millis> {
    let due = last
        .saturating_add(TOUCH_QUIET_MS)
        .min(first.saturating_add(TOUCH_MAX_DELAY_MS));
    (first <= now && now < due).then(|| (due - now).min(TOUCH_MAX_DELAY_MS))
}

pub use crate::write::temp_id;

/// Keeps a store clean under a policy.
pub struct Sweeper<S: Store> {
    store: S,
    policy: Policy,
    config: Config,
    /// Namespaces known to be registered, and when this sweeper last wrote
    /// or listed their record (0: listed), so `put` writes it only now and
    /// then: another context may delete the namespace meanwhile
    /// (`deleteNamespace`), and an entry written after that, unregistered,
    /// would be a zombie no run touches. A put [`REGISTRATION_RECHECK_MS`]
    /// after the last write of the record writes it again.
    registered: RefCell<VecMap<String, Millis>>,
    progress: RefCell<Progress>,
    /// Writes made, for write ids.
    writes: Cell<u64>,
    /// Entry records as this sweeper last wrote them (`None`: deleted), a
    /// bounded few: guesses that let a store write without waiting to read.
    seen: RefCell<crate::vecmap::VecMap<EntryId, Option<Vec<u8>>>>,
    /// `accessedAt` refreshes that reads deferred, by entry: written in
    /// slices by `flush_touches` (before every run and plan, and by the JS
    /// binding once reads pause), so a read costs no write of its own. In
    /// read order, with repeats: the flush merges them.
    touches: RefCell<Vec<(EntryId, Millis)>>,
    /// The length of `touches` at which reads merge it.
    touch_merge_at: Cell<usize>,
    /// Whether entries and blobs not seen are guessed absent.
    absent_entries: AbsentGuess,
    absent_blobs: AbsentGuess,
    /// Blobs whose bytes `verify` found missing or removed as corrupt:
    /// `putBlob` of their bytes writes them again (else it refreshes the
    /// record alone), keeping the record and its reference count.
    pub(crate) lost_blobs: RefCell<crate::vecmap::VecSet<String>>,
    kept_plan: RefCell<Option<KeptPlan>>,
    /// Bumped by `forget_plan`: a run keeps no plan when a deletion of
    /// this sweeper's own came during it.
    forgotten: Cell<u64>,
}

/// Deferred refreshes are merged once this many are pending, at the least.
const TOUCH_MERGE_MIN: usize = 4096;

impl<S: Store> Sweeper<S> {
    /// A sweeper of `store` under `policy`.
    pub fn new(store: S, policy: Policy, config: Config) -> Self {
        Sweeper {
            store,
            policy,
            config,
            registered: RefCell::new(VecMap::new()),
            progress: RefCell::new(Progress {
                phase: "idle",
                ..Progress::default()
            }),
            writes: Cell::new(0),
            touches: RefCell::new(Vec::new()),
            touch_merge_at: Cell::new(TOUCH_MERGE_MIN),
            absent_entries: AbsentGuess::default(),
            absent_blobs: AbsentGuess::default(),
            lost_blobs: RefCell::new(crate::vecmap::VecSet::new()),
            seen: RefCell::new(crate::vecmap::VecMap::new()),
            kept_plan: RefCell::new(None),
            forgotten: Cell::new(0),
        }
    }

    /// The plan kept by this sweeper's last run, if it stopped early and
    /// saved the very cursor `stored` (a run elsewhere since would have
    /// rewritten or deleted it), in `mode`, under [`PLAN_KEEP_MS`] before `now`.
    fn take_plan(&self, mode: Mode, stored: Option<&[u8]>, now: Millis) -> Option<KeptPlan> {
        self.kept_plan.borrow_mut().take().filter(|k| {
            k.mode == mode
                && stored == Some(&k.cursor[..])
                && now >= k.made_at
                && now - k.made_at <= PLAN_KEEP_MS
        })
    }

    /// Keeps `plan` for the run that goes on from the cursor `saved`, when
    /// what is left of it holds nothing a quota or a group's keepLast chose:
    /// those count other entries and recency (reads move accessedAt, deletes
    /// shrink a namespace), which no re-check at deletion sees, so they are
    /// planned again each run.
    fn keep_plan(&self, mode: Mode, made_at: Millis, saved: &[u8], plan: Plan) {
        let counted = |a: &plan::Action| {
            matches!(
                a.reason,
                Reason::MaxEntries | Reason::MaxBytes | Reason::Retention
            )
        };
        if !plan.actions.iter().any(counted) {
            *self.kept_plan.borrow_mut() = Some(KeptPlan {
                mode,
                made_at,
                cursor: saved.to_vec(),
                plan,
            });
        }
    }

    /// Drops the plan kept for a stopped run's next slice: what a
    /// maintenance call deleted would be counted again as the run's.
    pub(crate) fn forget_plan(&self) {
        self.kept_plan.borrow_mut().take();
        self.forgotten.set(self.forgotten.get() + 1);
    }

    /// Keeps the entry records a write made as the guesses for the next.
    fn remember_all(&self, written: Vec<(EntryId, Option<Vec<u8>>)>) {
        for (id, record) in written {
            self.remember(&id, record);
        }
    }

    /// Keeps `record` as the guess for the next write of `id`.
    fn remember(&self, id: &EntryId, record: Option<Vec<u8>>) {
        let mut seen = self.seen.borrow_mut();
        if seen.len() >= SEEN_RECORDS {
            seen.clear();
        }
        seen.insert(id.clone(), record);
    }

    /// The store it sweeps.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The largest value or blob it stores (`maxValueBytes`).
    pub fn max_value_bytes(&self) -> usize {
        self.config.max_value_bytes
    }

    /// The policy its plans follow.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether this sweeper wrote `namespace`'s record lately (see `registered`).
    fn registered_lately(&self, namespace: &str, now: Millis) -> bool {
        self.registered
            .borrow()
            .get(namespace)
            // A clock that went back is no measure: write it again.
            .is_some_and(|&at| at != 0 && at <= now && now - at < REGISTRATION_RECHECK_MS)
    }

    /// Stores `value` at `id`. What it references must exist: blobs (store
    /// them with `put_blob` first) and entries of the same namespace. The
    /// namespace is registered on first write.
    ///
    /// A malformed record there (a write torn by a crash) is replaced: see
    /// [`write::Unreadable`].
    pub async fn put(
        &self,
        id: &EntryId,
        value: StoredValue,
        opts: PutOptions,
        now: Millis,
    ) -> Result<(), Error> {
        let mut write = self.entry_write(id, &value, opts, now)?;
        let register = !self.registered_lately(&id.namespace, now);
        let atomic = self.store.atomic();
        // The record as this sweeper last saw it, or none: a store may write
        // on that guess and keep the write only if it was right. Unseen
        // records are guessed absent only for small values (a wrong guess
        // then costs one small write more), and while such guesses pay (see
        // `AbsentGuess`).
        let mut guess = crate::store::Reads::default();
        let last_seen = self.seen.borrow_mut().remove(id);
        let unseen = last_seen.is_none();
        if !unseen || (write.value.len() <= codec::INLINE_MAX && self.absent_entries.guess()) {
            guess.insert(Table::Meta, id.clone(), last_seen.flatten());
        }
        let tables = entry_tables(atomic, register);
        // Whether the record was there, as read (not as guessed).
        let present = Cell::new(false);
        // The entry records the write makes, its own and those whose counts
        // it changes: remembered as guesses.
        let written = RefCell::new(Vec::new());
        loop {
            let w = &write;
            let step = |reads: &crate::store::Reads| {
                if !core::ptr::eq(reads, &guess)
                    && matches!(reads.get(Table::Meta, id), Some(Some(_)))
                {
                    present.set(true);
                }
                let out = write::put_step(reads, w, now, atomic, register);
                if let Ok(Step::Write(ops, _)) = &out {
                    self.within_checks(reads, core::slice::from_ref(w), "this put")?;
                    *written.borrow_mut() = meta_writes(ops);
                }
                out
            };
            let record = if guess.keys().is_empty() {
                self.store.transact(Access::Write, &tables, step).await
            } else {
                self.store.transact_with_guess(&tables, &guess, step).await
            };
            match record {
                Err(Error::Store(crate::store::StoreError::Busy(_))) => {
                    return Err(Error::Busy(format!("put of {}", Quoted(&id.key))))
                }
                // Its record is malformed (a write torn by a crash): replaced.
                Err(e @ Error::Corrupt { .. }) if w.over.is_none() => {
                    self.over_unreadable(core::slice::from_mut(&mut write), e)
                        .await?;
                    guess = Default::default();
                    continue;
                }
                other => other?,
            };
            break;
        }
        if unseen {
            self.absent_entries.found(present.get());
        }
        self.remember_all(written.into_inner());
        if register {
            self.registered
                .borrow_mut()
                .insert(id.namespace.clone(), now);
        }
        Ok(())
    }

    /// Refuses a write, before it is made, that a store checking at most so
    /// many records in one commit (Deno KV: 100) cannot take: one whose
    /// commit would check more (one check of each record `reads` holds, as
    /// the default `transact` makes them), or an entry referencing more
    /// entries and blobs than its deletion could check with it later.
    fn within_checks(
        &self,
        reads: &crate::store::Reads,
        writes: &[EntryWrite],
        what: &str,
    ) -> Result<(), Error> {
        let Some(most) = self.store.capabilities().max_batch_checks else {
            return Ok(());
        };
        for w in writes {
            let named = w.refs.len() + w.blobs.len();
            if named >= most {
                return Err(Error::InvalidInput(format!(
                    "{} references {named} entries and blobs, more than the {} this store lets one entry reference (its deletion checks each in one commit)",
                    Quoted(&w.id.key),
                    most - 1
                )));
            }
        }
        let checks = reads.keys().len();
        if checks > most {
            return Err(Error::InvalidInput(format!(
                "{what} would check {checks} records (each entry's and what it references) in one \
                 commit, more than the {most} this store checks at once: split it over several calls"
            )));
        }
        Ok(())
    }

    /// Stores several entries in one batch (one transaction where the store
    /// has them), in order: an entry may reference one put before it in the
    /// same batch. All go, or none.
    pub async fn put_many(
        &self,
        items: Vec<(EntryId, StoredValue, PutOptions)>,
        now: Millis,
    ) -> Result<(), Error> {
        let mut writes = Vec::with_capacity(items.len());
        for (i, (id, value, opts)) in items.into_iter().enumerate() {
            let w = self
                .entry_write(&id, &value, opts, now)
                .map_err(|e| match e {
                    Error::InvalidInput(m) => Error::InvalidInput(format!("items[{i}]: {m}")),
                    other => other,
                })?;
            writes.push(w);
        }
        let mut tried = false;
        loop {
            match self.put_many_writes(&writes, now).await {
                // Malformed records among them (writes torn by a crash) are replaced.
                Err(e @ Error::Corrupt { .. }) if !tried => {
                    tried = true;
                    self.over_unreadable(&mut writes, e).await?;
                }
                other => return other,
            }
        }
    }

    /// Sets each write's `over` to the malformed record it replaces, if its
    /// entry's is one; `err` (what the writes failed with) if none is.
    async fn over_unreadable(&self, writes: &mut [EntryWrite], err: Error) -> Result<(), Error> {
        let mut found = false;
        for w in writes.iter_mut() {
            w.over = self.unreadable(&w.id).await?.flatten();
            found |= w.over.is_some();
        }
        if found {
            Ok(())
        } else {
            Err(err)
        }
    }

    /// [`Sweeper::put_many`] of checked writes.
    async fn put_many_writes(&self, writes: &[EntryWrite], now: Millis) -> Result<(), Error> {
        let mut register: Vec<String> = writes
            .iter()
            .map(|w| w.id.namespace.clone())
            .filter(|ns| !self.registered_lately(ns, now))
            .collect();
        crate::sort::sort(&mut register);
        register.dedup();
        let atomic = self.store.atomic();
        let tables = entry_tables(atomic, !register.is_empty());
        // The entry records the last step wrote, remembered as guesses.
        let written = RefCell::new(Vec::new());
        let step = |reads: &crate::store::Reads| {
            let step = write::put_many_step(reads, writes, now, atomic, &register)?;
            if let Step::Write(ops, ()) = &step {
                self.within_checks(reads, writes, "items")?;
                *written.borrow_mut() = meta_writes(ops);
            }
            Ok(step)
        };
        // Entries this sweeper never saw are guessed absent; a store may then
        // write without reading first. Only when every write is one such
        // entry's record: a guess that touches counts is not worth its risk.
        let mut guess = crate::store::Reads::default();
        if self.absent_entries.guess() {
            let seen = self.seen.borrow();
            for w in writes {
                if w.value.len() <= codec::INLINE_MAX && seen.get(&w.id).is_none_or(Option::is_none)
                {
                    guess.insert(Table::Meta, w.id.clone(), None);
                }
            }
        }
        // The step on the guess is worked out once: for the check here, and
        // for a store that writes on the guess (it asks first, for the guess
        // itself).
        let on_guess = RefCell::new(Some(step(&guess)));
        let records_only = match &*on_guess.borrow() {
            Some(Ok(Step::Write(ops, ()))) => {
                ops.len() == guess.keys().len()
                    && ops.iter().all(|op| {
                        matches!(op, Op::Put(Table::Meta, k, _) if guess.get(Table::Meta, k) == Some(None))
                    })
            }
            _ => false,
        };
        // Whether some record not seen was there, as read (not as guessed).
        let unseen: Vec<&EntryId> = {
            let seen = self.seen.borrow();
            writes
                .iter()
                .map(|w| &w.id)
                .filter(|id| seen.get(id).is_none())
                .collect()
        };
        let present = Cell::new(false);
        let step = |reads: &crate::store::Reads| {
            if core::ptr::eq(reads, &guess) {
                if let Some(known) = on_guess.borrow_mut().take() {
                    return known;
                }
            } else if unseen
                .iter()
                .any(|id| matches!(reads.get(Table::Meta, id), Some(Some(_))))
            {
                present.set(true);
            }
            step(reads)
        };
        let outcome = if records_only {
            self.store.transact_with_guess(&tables, &guess, step).await
        } else {
            self.store.transact(Access::Write, &tables, step).await
        };
        match outcome {
            Err(Error::Store(crate::store::StoreError::Busy(_))) => {
                return Err(Error::Busy(format!("putMany of {} entries", writes.len())))
            }
            other => other?,
        }
        if !unseen.is_empty() {
            self.absent_entries.found(present.get());
        }
        self.remember_all(written.into_inner());
        let mut known = self.registered.borrow_mut();
        for ns in register {
            known.insert(ns, now);
        }
        Ok(())
    }

    /// Checks a put's input and prepares its write.
    fn entry_write(
        &self,
        id: &EntryId,
        value: &StoredValue,
        opts: PutOptions,
        now: Millis,
    ) -> Result<EntryWrite, Error> {
        if id.key.is_empty() {
            return Err(Error::InvalidInput("key must be a non-empty string".into()));
        }
        if value.len() > self.config.max_value_bytes {
            return Err(Error::ValueTooLarge {
                size: value.len() as u64,
                limit: self.config.max_value_bytes,
            });
        }
        if let Some(b) = opts.blobs.iter().find(|b| !is_blob_id(b)) {
            return Err(Error::InvalidInput(format!(
                "blobs: {} is not a blob id (64 lower-case hex digits, as returned by putBlob)",
                Quoted(b)
            )));
        }
        if let Some(r) = opts.refs.iter().find(|r| r.is_empty()) {
            return Err(Error::InvalidInput(format!(
                "refs: {} is not a key",
                Quoted(r)
            )));
        }
        // A TTL reaching past 2^53 - 1 ms (`ttlMs: Number.MAX_SAFE_INTEGER`
        // for "never") ends there: every time stays a JavaScript number.
        let until = |ttl: Millis| now.saturating_add(ttl).min(LAST_TIME);
        let until_at = |at: Millis| at.min(LAST_TIME);
        let expires_at = match (opts.ttl_ms.map(until), opts.expires_at.map(until_at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(EntryWrite {
            id: id.clone(),
            value: value.encode(),
            size: opts.size.unwrap_or(value.len() as u64),
            expires_at,
            group: opts.group,
            pinned: opts.pinned,
            locked: opts.locked,
            dependent: opts.dependent,
            refs: distinct(&opts.refs),
            blobs: distinct(&opts.blobs),
            write_id: self.next_write_id(),
            over: None,
        })
    }

    fn next_write_id(&self) -> u64 {
        let n = self.writes.get().wrapping_add(1);
        self.writes.set(n);
        splitmix64(self.config.write_nonce ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The entry at `id`, or `None` when it is missing or expired (unless pinned).
    pub async fn get(&self, id: &EntryId, now: Millis) -> Result<Option<StoredValue>, Error> {
        Ok(self.detail(id, now, false).await?.map(|(_, v)| v))
    }

    /// The entry's metadata and value; expired ones too when `include_expired`.
    /// A read refreshes `accessedAt` (at most once a second) for LRU
    /// eviction, deferred: see [`Sweeper::flush_touches`].
    pub async fn detail(
        &self,
        id: &EntryId,
        now: Millis,
        include_expired: bool,
    ) -> Result<Option<(EntryMeta, StoredValue)>, Error> {
        self.read_entry(id, now, include_expired, true).await
    }

    /// [`Sweeper::detail`] as an operator reads it (`touch` false): the
    /// read does not count as a use, so it moves no `accessedAt`.
    pub async fn read_entry(
        &self,
        id: &EntryId,
        now: Millis,
        include_expired: bool,
        touch: bool,
    ) -> Result<Option<(EntryMeta, StoredValue)>, Error> {
        // The record first, alone: a transaction over one table is the
        // cheapest read, and most values live in their entry's record. A value
        // with a record of its own is read next; if a newer write replaced it
        // in between, read again.
        let mut found = None;
        for _ in 0..crate::store::MAX_ATTEMPTS {
            let record = self
                .store
                .transact(Access::Read, &[Table::Meta], |reads| {
                    match reads.get(Table::Meta, id) {
                        None => Ok(Step::Read(vec![Read::Key(Table::Meta, id.clone())])),
                        Some(record) => {
                            judge_record(id, record, now, include_expired).map(Step::Done)
                        }
                    }
                })
                .await?;
            found = match record {
                None => return Ok(None),
                Some((meta, Some(value))) => Some((meta, value)),
                Some((meta, None)) => {
                    let key = value_key(id, meta.write_id);
                    match self.store.get(Table::Values, &[key]).await?.pop().flatten() {
                        Some(value) => Some((meta, value)),
                        None => continue,
                    }
                }
            };
            break;
        }
        let Some((meta, bytes)) = found else {
            return Err(Error::Busy(format!("read of {}", Quoted(&id.key))));
        };
        self.finish_read(id, meta, &bytes, now, touch).map(Some)
    }

    /// A read whose caller fetched the entry's record itself (`None`: no
    /// record), as [`Sweeper::detail`] would judge it: `Ok(None)` when the
    /// entry is missing or expired, `Ok(Some(None))` when its value lives in
    /// a record of its own (read it with `detail`), else the value, its
    /// read counted as a use. The JS bindings read IndexedDB this way, with
    /// one plain request and no async glue.
    pub fn read_record(
        &self,
        id: &EntryId,
        record: Option<&[u8]>,
        now: Millis,
        include_expired: bool,
    ) -> Result<Option<Option<StoredValue>>, Error> {
        Ok(match judge_record(id, record, now, include_expired)? {
            None => None,
            Some((_, None)) => Some(None),
            Some((meta, Some(bytes))) => {
                Some(Some(self.finish_read(id, meta, &bytes, now, true)?.1))
            }
        })
    }

    /// Decodes a read's value and, when `touch`, defers its refresh of
    /// `accessedAt` (at most once a second).
    fn finish_read(
        &self,
        id: &EntryId,
        meta: EntryMeta,
        bytes: &[u8],
        now: Millis,
        touch: bool,
    ) -> Result<(EntryMeta, StoredValue), Error> {
        let value = StoredValue::decode(bytes).map_err(|cause| value_corrupt(id, cause))?;
        if touch && now >= meta.accessed_at.saturating_add(TOUCH_INTERVAL_MS) {
            let mut touches = self.touches.borrow_mut();
            touches.push((id.clone(), now));
            // Reads of the same entries between flushes (a caller that never
            // flushes): merged at each doubling past a few thousand, so the
            // list grows with the entries read, not with the reads.
            if touches.len() >= self.touch_merge_at.get() {
                let read = std::mem::take(&mut *touches);
                *touches = merged_touches(read);
                // Next at twice what is left, so a large working set is not
                // sorted again at every read.
                self.touch_merge_at
                    .set((2 * touches.len()).max(TOUCH_MERGE_MIN));
            }
        }
        Ok((meta, value))
    }

    /// Raises the listed `accessedAt` of entries whose reads' refreshes are
    /// still pending (a run with a call budget leaves them unwritten), so
    /// that eviction by recency sees those reads all the same.
    fn touch_inventory(&self, inv: &mut Inventory) {
        if !self.touches_pending() {
            return;
        }
        // Merged (sorted by id, one each) as reads merge them.
        let read = merged_touches(std::mem::take(&mut *self.touches.borrow_mut()));
        for e in &mut inv.entries {
            if let Ok(i) = read.binary_search_by(|(id, _)| id.cmp(&e.id)) {
                e.meta.accessed_at = e.meta.accessed_at.max(read[i].1);
            }
        }
        // Still to be written by a flush of their own.
        self.touches.borrow_mut().extend(read);
    }

    /// Whether reads have deferred `accessedAt` refreshes not yet written.
    pub fn touches_pending(&self) -> bool {
        !self.touches.borrow().is_empty()
    }

    /// One page of the keys `get` would return in `namespace` that start with
    /// `prefix`, in key order, after `after`: at most `limit`, with the
    /// values their records hold when `with_values` (`None`: read it with
    /// `get`). The second part is where the next page
    /// starts, `None` at the end. Reads the store's listing from the
    /// namespace's (or prefix's) place in key order, not from its start.
    pub async fn keys_page(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        with_values: bool,
        now: Millis,
    ) -> Result<(Vec<(String, Option<StoredValue>)>, Option<String>), Error> {
        let limit = limit.max(1);
        // Listing is exclusive of its start: start just before the prefix
        // (the prefix less its last character sorts before every key it begins).
        let mut start = prefix.to_string();
        start.pop();
        let start = match after {
            Some(a) if a >= prefix => a.to_string(),
            _ => start,
        };
        let mut cursor = EntryId::new(namespace, start);
        let page = self.config.exec.page_size.max(1);
        let mut out: Vec<(String, Option<StoredValue>)> = Vec::new();
        loop {
            let listed = self.store.list(Table::Meta, Some(&cursor), page).await?;
            let full = listed.len() == page;
            for (id, bytes) in listed {
                cursor = id.clone();
                // Past the prefix's keys, which are contiguous in any string
                // order: stores order by code point (memory) or by UTF-16
                // unit (IndexedDB), which disagree past U+DFFF, so stop only
                // where both orders agree that the key comes after them.
                let after_prefix = !id.key.starts_with(prefix)
                    && id.key.as_str() > prefix
                    && id.key.encode_utf16().gt(prefix.encode_utf16());
                if id.namespace != namespace || after_prefix {
                    return Ok((out, None));
                }
                if !id.key.starts_with(prefix) {
                    continue;
                }
                let Ok(meta) = codec::decode_meta(&bytes) else {
                    continue; // Unreadable: not something get returns.
                };
                if !meta.pinned && meta.expires_at.is_some_and(|t| t <= now) {
                    continue;
                }
                // A value with a record of its own is left to the caller to
                // read with `get` (`None`).
                let value = if with_values {
                    codec::inline_value(&bytes)
                        .ok()
                        .flatten()
                        .and_then(|v| StoredValue::decode(&v).ok())
                } else {
                    None
                };
                out.push((id.key, value));
                if out.len() == limit {
                    return Ok((out, Some(cursor.key)));
                }
            }
            if !full {
                return Ok((out, None));
            }
        }
    }

    /// Deletes every entry of `namespace`, with the executor's guarantees:
    /// each entry re-read before it goes, references and blob counts kept.
    /// Entries written while it runs are kept (counted in `kept`).
    pub async fn clear<H: RunHost>(
        &self,
        namespace: &str,
        host: &mut H,
    ) -> Result<RunReport, Error> {
        let mut actions = Vec::new();
        for (id, bytes) in self.namespace_records(namespace).await? {
            // Named, with the way past it: delete(key) removes such a record.
            let meta = codec::decode_meta(&bytes).map_err(|cause| Error::Corrupt {
                what: format!(
                    "entry {} in namespace {} (nothing was deleted; delete it by its key, then call again)",
                    Quoted(&id.key),
                    Quoted(namespace)
                ),
                cause,
            })?;
            let listed = u32::try_from(actions.len()).ok();
            actions.push(entry_action(id, plan::Reason::Cleared, &meta, listed));
        }
        Ok(self.delete_entries(actions, host).await)
    }

    /// Runs `actions` (entries to delete, planned by hand) with the
    /// executor's guarantees, reporting progress as a run does.
    async fn delete_entries<H: RunHost>(
        &self,
        actions: Vec<plan::Action>,
        host: &mut H,
    ) -> RunReport {
        self.forget_plan();
        let plan = Plan {
            summary: plan::Summary {
                mode: Mode::Full,
                scanned: actions.len() as u64,
                ..Default::default()
            },
            actions,
        };
        let mut tracked = Tracked {
            inner: host,
            progress: &self.progress,
            before: (0, 0),
        };
        exec::execute(&self.store, &plan, self.config.exec, &mut tracked).await
    }

    /// Writes the `accessedAt` refreshes reads deferred, a slice of them
    /// per transaction; returns how many entries moved. Those not yet
    /// written stay pending meanwhile, so a flush begun later (a plan's, a
    /// run's) writes the rest itself before it reads: none is read stale. It
    /// writes as many as were pending when it began, not the refreshes of
    /// reads that keep coming. Best effort: an entry rewritten or deleted
    /// since its read is left alone; a slice that fails is dropped, the rest
    /// stay pending.
    pub async fn flush_touches(&self) -> Result<usize, Error> {
        let mut left = self.touches.borrow().len();
        let mut moved = 0;
        while left > 0 {
            let slice = {
                let mut touches = self.touches.borrow_mut();
                let mut slice = merged_touches(std::mem::take(&mut *touches));
                if slice.len() > TOUCH_BATCH {
                    *touches = slice.split_off(TOUCH_BATCH);
                }
                slice
            };
            if slice.is_empty() {
                break;
            }
            left = left.saturating_sub(slice.len());
            let written = RefCell::new(Vec::new());
            moved += write::run(
                &self.store,
                &[Table::Meta],
                || "a refresh of accessedAt".into(),
                |reads| {
                    let out = write::touch_step(reads, &slice);
                    if let Ok(Step::Write(ops, _)) = &out {
                        *written.borrow_mut() = meta_writes(ops);
                    }
                    out
                },
            )
            .await?;
            self.remember_all(written.into_inner());
        }
        Ok(moved)
    }

    /// Deletes the entry at `id`; true if it existed. Refused while other
    /// entries reference it. Its blobs go in the next run.
    pub async fn delete(&self, id: &EntryId) -> Result<bool, Error> {
        // A kept plan would count this deletion as its own.
        self.forget_plan();
        let atomic = self.store.atomic();
        self.seen.borrow_mut().remove(id);
        let written = RefCell::new(Vec::new());
        let existed = write::run(
            &self.store,
            &entry_tables(atomic, false),
            || format!("delete of {}", Quoted(&id.key)),
            |reads| {
                let out = write::delete_step(reads, id, atomic);
                if let Ok(Step::Write(ops, _)) = &out {
                    *written.borrow_mut() = meta_writes(ops);
                }
                out
            },
        )
        .await?;
        self.remember_all(written.into_inner());
        self.remember(id, None);
        Ok(existed)
    }

    /// Deletes `id`'s record when it is malformed (`delete` refused it with
    /// `err`): how many reference it is then unknown, so it goes only when
    /// no readable entry record of its namespace references it (a malformed
    /// one's references cannot be followed by any reader) and none is a
    /// later release's (which that release reads). The
    /// counts of what it referenced stay as they were, too high: nothing is
    /// lost, and `rebuild` lowers them. Its value records go with it.
    async fn delete_unreadable(&self, id: &EntryId, err: Error) -> Result<bool, Error> {
        // The record that could not be read is another (one it references),
        // or one a later release wrote, which that release reads: left as it is.
        let u = match self.unreadable(id).await? {
            None => return Ok(false),
            Some(None) => return Err(err),
            Some(Some(u)) => u,
        };
        if u.referrers > 0 {
            return Err(Error::Referenced {
                id: id.clone(),
                referrers: u.referrers,
            });
        }
        let mut ops = vec![
            Op::Expect(Table::Meta, id.clone(), Some(crate::store::stamp(&u.bytes))),
            Op::Delete(Table::Meta, id.clone()),
        ];
        ops.extend(
            u.values
                .into_iter()
                .map(|vid| Op::Delete(Table::Values, vid)),
        );
        self.store.apply(ops).await?;
        self.remember(id, None);
        Ok(true)
    }

    /// `id`'s record if it is malformed (what a put over it replaces, and
    /// what a delete of it removes): `None` when it is gone, `Some(None)`
    /// when it reads, or a later release wrote it (which that release reads).
    ///
    /// Its count is how many readable entry records of its namespace
    /// reference it (a malformed one's references cannot be followed by any
    /// reader); if a later release wrote one of them, which may reference
    /// it, an error. Its value records: its key, U+0001, then hex digits.
    async fn unreadable(&self, id: &EntryId) -> Result<Option<Option<Unreadable>>, Error> {
        let Some(bytes) = self
            .store
            .get(Table::Meta, std::slice::from_ref(id))
            .await?
            .pop()
            .flatten()
        else {
            return Ok(None);
        };
        if !matches!(codec::decode_meta(&bytes), Err(DecodeError::Malformed(_))) {
            return Ok(Some(None));
        }
        let mut referrers = 0;
        for (other, record) in self.namespace_records(&id.namespace).await? {
            match codec::decode_meta(&record) {
                _ if other == *id => {}
                Ok(meta) => referrers += u64::from(meta.refs.contains(&id.key)),
                Err(DecodeError::UnsupportedVersion(_)) => {
                    return Err(Error::InvalidInput(format!(
                        "{} in namespace {} cannot be read, and the record of {} there was \
                         written by a later release, which may reference it: it is left as it is",
                        Quoted(&id.key),
                        Quoted(&id.namespace),
                        Quoted(&other.key)
                    )))
                }
                Err(DecodeError::Malformed(_)) => {}
            }
        }
        let mark = format!("{}\u{1}", id.key);
        let from = EntryId::new(id.namespace.clone(), mark.clone());
        let values = self.store.list(Table::Values, Some(&from), 64).await?;
        let values = values
            .into_iter()
            .map(|(vid, _)| vid)
            .take_while(|vid| vid.namespace == id.namespace && vid.key.starts_with(&mark))
            .filter(|vid| vid.key[mark.len()..].bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        Ok(Some(Some(Unreadable {
            bytes,
            referrers,
            values,
        })))
    }

    /// Every entry record of `namespace`, in key order.
    async fn namespace_records(&self, namespace: &str) -> Result<Vec<crate::store::Record>, Error> {
        let mut out = Vec::new();
        let mut cursor = Some(EntryId::new(namespace, ""));
        loop {
            let page = self.namespace_page(namespace, &mut cursor).await?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }

    /// The next page of `namespace`'s entry records after `cursor`, which it
    /// moves on (to `None` after the last page); empty at the end.
    async fn namespace_page(
        &self,
        namespace: &str,
        cursor: &mut Option<EntryId>,
    ) -> Result<Vec<crate::store::Record>, Error> {
        let Some(after) = cursor.take() else {
            return Ok(Vec::new());
        };
        let page = self.config.exec.page_size.max(1);
        let listed = self.store.list(Table::Meta, Some(&after), page).await?;
        let full = listed.len() == page;
        let out: Vec<crate::store::Record> = listed
            .into_iter()
            .take_while(|(id, _)| id.namespace == namespace)
            .collect();
        if full && out.len() == page {
            *cursor = out.last().map(|(id, _)| id.clone());
        }
        Ok(out)
    }

    /// [`Sweeper::delete`] at `now`, where an entry whose referrers have all
    /// expired may go too: `get` returns none of them, so nothing readable
    /// references it. Those referrers go with it, in one batch, each re-read
    /// as a run would delete them; if one has changed, the delete is refused.
    pub async fn delete_at(&self, id: &EntryId, now: Millis) -> Result<bool, Error> {
        self.delete_at_hosted(id, now, &mut exec::RunToEnd).await
    }

    /// [`Sweeper::delete_at`], its batch run by `host` (a caller whose runs
    /// use one host type passes it, so that the executor is compiled once).
    pub async fn delete_at_hosted<H: RunHost>(
        &self,
        id: &EntryId,
        now: Millis,
        host: &mut H,
    ) -> Result<bool, Error> {
        let refused = match self.delete(id).await {
            Err(e @ Error::Referenced { .. }) => e,
            Err(e @ Error::Corrupt { .. }) => return self.delete_unreadable(id, e).await,
            other => return other,
        };
        // The referrers are the namespace's entries whose refs name `id`;
        // read page by page, since the first live one settles it.
        let mut actions = Vec::new();
        let mut cursor = Some(EntryId::new(id.namespace.clone(), ""));
        loop {
            let page = self.namespace_page(&id.namespace, &mut cursor).await?;
            if page.is_empty() {
                break;
            }
            for (eid, bytes) in page {
                // Unreadable metadata may reference anything: keep the refusal.
                let meta = codec::decode_meta(&bytes).map_err(|_| refused.clone())?;
                let refers = eid != *id && meta.refs.contains(&id.key);
                if !(refers || eid == *id) {
                    continue;
                }
                let expired = !meta.pinned && meta.expires_at.is_some_and(|t| t <= now);
                if refers && !expired {
                    return Err(refused);
                }
                actions.push(plan::Action {
                    kind: plan::ActionKind::Entry,
                    namespace: Some(eid.namespace),
                    key: eid.key,
                    reason: if refers {
                        plan::Reason::Expired
                    } else {
                        plan::Reason::Cleared
                    },
                    bytes: meta.size,
                    version: Some(meta.write_id),
                    listed: None,
                });
            }
        }
        let config = ExecConfig {
            batch_size: actions.len().max(1),
            ..self.config.exec
        };
        let plan = Plan {
            summary: plan::Summary::default(),
            actions,
        };
        // Progress of its own: a run going meanwhile keeps its progress().
        let progress = RefCell::new(Progress::default());
        let mut tracked = Tracked {
            inner: host,
            progress: &progress,
            before: (0, 0),
        };
        let report = exec::execute(&self.store, &plan, config, &mut tracked).await;
        self.seen.borrow_mut().clear();
        match report.deleted.get(&plan::Reason::Cleared) {
            Some(t) if t.count > 0 => Ok(true),
            _ => Err(refused),
        }
    }

    /// Stores `bytes` under their SHA-256 and returns the id; the same bytes
    /// are stored once. Storing bytes again restarts the blob's grace period,
    /// so the caller can reference it safely for `orphanGraceMs`.
    pub async fn put_blob(&self, bytes: &[u8], now: Millis) -> Result<String, Error> {
        self.put_blob_as(bytes, None, now).await
    }

    /// [`Sweeper::put_blob`] with the id already worked out, where `id` is
    /// given: it must be the SHA-256 of `bytes` in lower-case hex (the JS
    /// binding has the host's Web Crypto work it out, off the main thread).
    pub(crate) async fn put_blob_as(
        &self,
        bytes: &[u8],
        id: Option<String>,
        now: Millis,
    ) -> Result<String, Error> {
        if bytes.len() > self.config.max_value_bytes {
            return Err(Error::ValueTooLarge {
                size: bytes.len() as u64,
                limit: self.config.max_value_bytes,
            });
        }
        let id = id.unwrap_or_else(|| blob_id(bytes));
        debug_assert!(is_blob_id(&id));
        let atomic = self.store.atomic();
        let tables = [Table::Blobs, Table::BlobMeta, Table::Temps];
        let key = id_key(&id);
        // A small blob is guessed new while such guesses pay (see
        // `AbsentGuess`): a store may then write it without reading first,
        // and a wrong guess costs a write of its bytes (at most
        // `BLOB_GUESS_MAX`) more, over the same bytes (under their SHA-256).
        let mut guess = crate::store::Reads::default();
        if bytes.len() <= BLOB_GUESS_MAX && self.absent_blobs.guess() {
            guess.insert(Table::BlobMeta, key.clone(), None);
        }
        // Whether the blob was there, as read (not as guessed).
        let present = Cell::new(false);
        let lost = self.lost_blobs.borrow().contains(id.as_str());
        let mut step = |reads: &crate::store::Reads| {
            if !core::ptr::eq(reads, &guess)
                && matches!(reads.get(Table::BlobMeta, &key), Some(Some(_)))
            {
                present.set(true);
            }
            write::put_blob_step(reads, &id, bytes, now, atomic, lost)
        };
        let mut outcome = if guess.keys().is_empty() {
            self.store.transact(Access::Write, &tables, &mut step).await
        } else {
            self.store
                .transact_with_guess(&tables, &guess, &mut step)
                .await
        };
        // A write on the guess stores the bytes; if the blob was there after
        // all, the usual way only refreshes its record, and may succeed where
        // that failed (storage full, say). Nothing of a failed write stays.
        if !guess.keys().is_empty() && outcome.is_err() && !present.get() {
            outcome = self.store.transact(Access::Write, &tables, &mut step).await;
        }
        match outcome {
            Err(Error::Store(crate::store::StoreError::Busy(_))) => {
                return Err(Error::Busy(format!("putBlob of {id}")))
            }
            other => other?,
        }
        self.absent_blobs.found(present.get());
        if lost {
            self.lost_blobs.borrow_mut().remove(id.as_str());
        }
        Ok(id)
    }

    /// The blob's bytes, or `None` if the store does not hold it.
    pub async fn get_blob(&self, id: &str) -> Result<Option<Vec<u8>>, Error> {
        if !is_blob_id(id) {
            return Err(Error::InvalidInput(format!(
                "{} is not a blob id (64 lower-case hex digits, as returned by putBlob)",
                Quoted(id)
            )));
        }
        Ok(self
            .store
            .get(Table::Blobs, &[id_key(id)])
            .await?
            .pop()
            .flatten())
    }

    /// Reads the whole store's metadata, page by page, decoding each page as
    /// it comes (so no step decodes the whole store at once). Undecodable
    /// records are listed as corrupt, never dropped.
    pub async fn inventory(&self) -> Result<Inventory, Error> {
        self.inventory_hosted(&mut exec::RunToEnd).await
    }

    /// [`Sweeper::inventory`], asking `host` between pages whether to stop.
    async fn inventory_hosted<H: RunHost>(&self, host: &mut H) -> Result<Inventory, Error> {
        let mut inv = Inventory::default();
        self.list_pages_hosted(host, Table::Meta, |page| {
            for (id, bytes) in page {
                match codec::decode_meta(&bytes) {
                    Ok(meta) => inv.entries.push(InventoryEntry { id, meta }),
                    Err(_) => inv.corrupt.push(id),
                }
            }
        })
        .await?;
        self.list_pages_hosted(host, Table::BlobMeta, |page| {
            for (id, bytes) in page {
                match codec::decode_blob_info(&id.key, &bytes) {
                    Ok(b) => inv.blobs.push(b),
                    Err(_) => inv.corrupt_blobs.push(id.key),
                }
            }
        })
        .await?;
        self.list_pages_hosted(host, Table::Temps, |page| {
            for (id, bytes) in page {
                match codec::decode_temp_info(&id.key, &bytes) {
                    Ok(t) => inv.temps.push(t),
                    Err(_) => inv.corrupt_temps.push(id.key),
                }
            }
        })
        .await?;
        let mut namespaces: Vec<String> = Vec::new();
        self.list_pages_hosted(host, Table::Namespaces, |page| {
            namespaces.extend(page.into_iter().map(|(id, _)| id.key));
        })
        .await?;
        // As listed: a namespace deleted elsewhere is forgotten; one listed
        // keeps the time this sweeper last wrote its record.
        let mut sorted = namespaces.clone();
        crate::sort::sort(&mut sorted);
        let mut known = self.registered.borrow_mut();
        known.retain(|ns, _| sorted.binary_search(ns).is_ok());
        for ns in sorted {
            known.entry(ns).or_insert(0);
        }
        drop(known);
        inv.namespaces = Some(namespaces);
        Ok(inv)
    }

    /// Lists `table` in pages, handing each page to `each` as it comes, in
    /// parts of at most [`DECODE_CHUNK`] records; between parts `host` may
    /// pause, and between pages it may stop the listing.
    async fn list_pages_hosted<H: RunHost>(
        &self,
        host: &mut H,
        table: Table,
        mut each: impl FnMut(Vec<crate::store::Record>),
    ) -> Result<(), Error> {
        let page = self.config.exec.page_size.max(1);
        let mut after: Option<EntryId> = None;
        loop {
            if host.stopped() {
                return Err(Error::Stopped);
            }
            let got = match self
                .store
                .list_capped(table, after.as_ref(), page, host.list_cap())
                .await
            {
                // The run's calls ran out in the middle of a page: it stops
                // as a budget stops it, planning nothing on half a listing.
                Err(StoreError::OutOfCalls(_)) => return Err(Error::Stopped),
                other => other?,
            };
            let n = got.len();
            after = got.last().map(|(k, _)| k.clone());
            // Decoded a part at a time, the host pausing in between: a whole
            // page decoded in one go is one long task on a page's main thread.
            let mut rest = got;
            while !rest.is_empty() {
                host.pause().await;
                let tail = rest.split_off(rest.len().min(DECODE_CHUNK));
                each(rest);
                rest = tail;
            }
            if n < page {
                return Ok(());
            }
            host.pause().await;
        }
    }

    /// A dry run: what a run in `mode` would delete now, and why.
    pub async fn plan(&self, mode: Mode, now: Millis) -> Result<Plan, Error> {
        self.plan_hosted(mode, now, &mut exec::RunToEnd).await
    }

    /// [`Sweeper::plan`], pausing where `host` says (a page's event loop).
    pub async fn plan_hosted<H: RunHost>(
        &self,
        mode: Mode,
        now: Millis,
        host: &mut H,
    ) -> Result<Plan, Error> {
        // Reads' deferred refreshes count for LRU eviction; a failure only
        // leaves accessedAt older, which the next read raises again.
        if !host.calls_counted() {
            let _ = self.flush_touches().await;
        }
        let mut inv = self.inventory_hosted(host).await?;
        self.touch_inventory(&mut inv);
        Ok(plan::plan_with(&inv, &self.policy, now, mode, &mut HostPause(host)).await)
    }

    /// Plans and runs a cleanup. `host` yields, reports progress and may stop the run.
    /// The run is not logged: [`Sweeper::log_run`] does that, for [`Sweeper::health`].
    pub async fn run<H: RunHost>(
        &self,
        mode: Mode,
        now: Millis,
        host: &mut H,
    ) -> Result<RunReport, Error> {
        // A run stopped early (budget, abort) left a cursor: a run of its mode
        // goes on from it, over a fresh plan of the store as it is. A run of
        // the other mode starts from the beginning: a full run's entries come
        // before where a light one stopped, and a light run deletes no entry.
        // A light run leaves a full run's cursor as it is, for the next full
        // run; a full run replaces a light one's.
        let cursor_key = id_key(CURSOR_KEY);
        let stored: Option<Vec<u8>> = self
            .store
            .get(Table::State, std::slice::from_ref(&cursor_key))
            .await?
            .pop()
            .flatten();
        let found: Option<Cursor> = stored.as_deref().and_then(|b| Cursor::decode(b).ok());
        let keep_cursor = found.as_ref().is_some_and(|c| c.mode > mode);
        let had_cursor = found.is_some();
        let cursor = found.filter(|c| c.mode == mode);
        if !host.calls_counted() {
            let _ = self.flush_touches().await;
        }
        // The plan of this sweeper's run that saved this very cursor goes on,
        // while young: each deletion is re-checked as its batch runs (an entry
        // written or referenced since stays), so it is as safe as a run that
        // takes this long. (No plan holding quota or keepLast evictions is
        // kept: see `keep_plan`.)
        let kept = self.take_plan(mode, stored.as_deref(), now);
        let forgotten = self.forgotten.get();
        let plan_reused = kept.is_some();
        let (mut plan, made_at) = match kept {
            Some(k) => (k.plan, k.made_at),
            None => {
                let mut inv = match self.inventory_hosted(host).await {
                    // Stopped before anything was deleted: the cursor stays as it was.
                    Err(Error::Stopped) => {
                        return Ok(RunReport {
                            mode,
                            ..Default::default()
                        })
                    }
                    other => other?,
                };
                self.touch_inventory(&mut inv);
                let plan =
                    plan::plan_with(&inv, &self.policy, now, mode, &mut HostPause(host)).await;
                (plan, now)
            }
        };
        if let Some(c) = &cursor {
            plan.actions.retain(|a| exec::position(a) > c.after);
        }
        let before = cursor.as_ref().map_or((0, 0), |c| {
            let deleted: u64 = c.deleted.values().map(|t| t.count).sum();
            (deleted + c.kept, deleted)
        });
        let mut tracked = Tracked {
            inner: host,
            progress: &self.progress,
            before,
        };
        let mut report = exec::execute(&self.store, &plan, self.config.exec, &mut tracked).await;
        report.plan_reused = plan_reused;
        if let Some(c) = &cursor {
            report.resumed = true;
            report.kept += c.kept;
            for (reason, t) in &c.deleted {
                let total = report.deleted.entry(*reason).or_default();
                total.count += t.count;
                total.bytes = total.bytes.saturating_add(t.bytes);
                report.carried.count += t.count;
                report.carried.bytes = report.carried.bytes.saturating_add(t.bytes);
            }
        }
        let op = match (&report.stopped_after, report.done) {
            // Another mode's progress, kept for a run of that mode.
            _ if keep_cursor => None,
            (Some(after), false) => {
                let next = Cursor {
                    mode,
                    started_at: cursor.as_ref().map_or(now, |c| c.started_at),
                    after: after.clone(),
                    deleted: report.deleted.clone(),
                    kept: report.kept,
                };
                Some(Op::Put(Table::State, cursor_key, next.encode()))
            }
            // Stopped before its first batch, or among entries that waited
            // for their referrers: the place, if any, stays as it was (none:
            // before everything), with the totals so far, so that the run's
            // last report counts what this part deleted too.
            (None, false) => {
                let deleted = report.deleted.values().any(|t| t.count > 0);
                let after = match &cursor {
                    Some(c) => Some(c.after.clone()),
                    None => (deleted || report.kept > 0)
                        .then(|| (plan::ActionKind::Entry, String::new(), String::new())),
                };
                after.map(|after| {
                    let same = Cursor {
                        mode,
                        started_at: cursor.as_ref().map_or(now, |c| c.started_at),
                        after,
                        deleted: report.deleted.clone(),
                        kept: report.kept,
                    };
                    Op::Put(Table::State, cursor_key, same.encode())
                })
            }
            (_, true) => had_cursor.then_some(Op::Delete(Table::State, cursor_key)),
        };
        // Kept only by a run that saved a place of its own, past everything
        // it handled: one stopped before it (among entries that wait, or
        // held now by a referrer written since) would go round that batch
        // again on the plan, counting what it deleted there again.
        if let (Some(Op::Put(_, _, bytes)), false, false, true, true) = (
            &op,
            report.halted,
            report.waited,
            report.stopped_after.is_some(),
            self.forgotten.get() == forgotten,
        ) {
            self.keep_plan(mode, made_at, bytes, plan);
        }
        if let Some(op) = op {
            if let Err(e) = self.store.apply(vec![op]).await {
                // The run itself went well; the next one starts from the beginning.
                self.forget_plan();
                report.errors.push(exec::ItemError {
                    kind: crate::plan::ActionKind::Temp,
                    namespace: None,
                    key: CURSOR_KEY.into(),
                    message: format!("could not save where the run stopped: {e}"),
                });
            }
        }
        Ok(report)
    }

    /// Takes the store's run lease for `owner` until `now + ttl_ms` (SPEC §4:
    /// at the edge, where no lock spans isolates): `Ok(None)` when taken (or
    /// renewed), `Ok(Some(holder))` when another owner holds it unexpired.
    /// The record is read and written in one step, checked where the store
    /// can check (Deno KV, Durable Objects, memory, IndexedDB); on a store
    /// without compare-and-set (Workers KV) two isolates may both take it, and
    /// safety rests on the executor's re-checks and grace periods, not on it.
    ///
    /// `locked`: the caller holds a lock every `locked` taker takes first
    /// (the store's Web Lock, see the JS binding's `run_leased`). Its lease
    /// is marked so, and it takes a marked lease another holds: that holder
    /// died, as the lock is the caller's now. Any other lease (a taker
    /// without the lock, an earlier release) is respected until it lapses.
    pub async fn take_lease(
        &self,
        owner: &str,
        ttl_ms: Millis,
        now: Millis,
        locked: bool,
    ) -> Result<Option<String>, Error> {
        let key = id_key(LEASE_KEY);
        let mut name = owner.to_owned();
        if locked {
            name.push_str(LOCKED_LEASE);
        }
        let mine = Lease {
            owner: name,
            until: now.saturating_add(ttl_ms),
        }
        .encode();
        self.store
            .transact(Access::Write, &[Table::State], |reads| {
                let Some(held) = reads.get(Table::State, &key) else {
                    return Ok(Step::Read(vec![Read::Key(Table::State, key.clone())]));
                };
                match held.and_then(Lease::decode) {
                    // Its own, marked or not (a release that failed), it renews.
                    Some(l)
                        if unlocked(&l.owner) != owner
                            && l.until > now
                            && !(locked && l.owner.ends_with(LOCKED_LEASE)) =>
                    {
                        Ok(Step::Done(Some(unlocked(&l.owner).to_owned())))
                    }
                    _ => Ok(Step::Write(
                        vec![Op::Put(Table::State, key.clone(), mine.clone())],
                        None,
                    )),
                }
            })
            .await
    }

    /// Gives the lease back, if `owner` still holds it (`locked` or not).
    pub async fn release_lease(&self, owner: &str) -> Result<(), Error> {
        let key = id_key(LEASE_KEY);
        self.store
            .transact(Access::Write, &[Table::State], |reads| {
                let Some(held) = reads.get(Table::State, &key) else {
                    return Ok(Step::Read(vec![Read::Key(Table::State, key.clone())]));
                };
                match held.and_then(Lease::decode) {
                    Some(l) if unlocked(&l.owner) == owner => {
                        Ok(Step::Write(vec![Op::Delete(Table::State, key.clone())], ()))
                    }
                    _ => Ok(Step::Done(())),
                }
            })
            .await
    }

    /// Recomputes every reference count from the entries and repairs those
    /// that differ (SPEC §5): over-counts that batches cut short on
    /// non-atomic stores leave behind, which would otherwise leak. Safe while
    /// writers run (see `rebuild`).
    pub async fn rebuild(&self) -> Result<crate::rebuild::RebuildReport, Error> {
        let cfg = self.config.exec;
        Ok(
            crate::rebuild::rebuild(&self.store, cfg.page_size.max(1), cfg.batch_size.max(1))
                .await?,
        )
    }

    /// The current run's progress (idle when none runs).
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }
}

/// A live entry's metadata, and its value's bytes when its record holds them.
type Judged = (EntryMeta, Option<Vec<u8>>);

/// What an entry's record (`None`: none) says to a read at `now`: `None`
/// when the entry is missing or expired (pinned entries never are, and
/// `include_expired` keeps expired ones), else its metadata and its value's
/// bytes when the record holds them (`None`: the value has a record of its own).
fn judge_record(
    id: &EntryId,
    record: Option<&[u8]>,
    now: Millis,
    include_expired: bool,
) -> Result<Option<Judged>, Error> {
    let Some(bytes) = record else {
        return Ok(None);
    };
    let meta = write::decode_entry_meta(id, bytes)?;
    let expired = !meta.pinned && meta.expires_at.is_some_and(|t| t <= now);
    if expired && !include_expired {
        return Ok(None);
    }
    let inline = codec::inline_value(bytes).map_err(|cause| value_corrupt(id, cause))?;
    Ok(Some((meta, inline)))
}

/// The error for an entry whose value cannot be decoded.
fn value_corrupt(id: &EntryId, cause: codec::DecodeError) -> Error {
    Error::Corrupt {
        what: format!(
            "value of {} in namespace {}",
            Quoted(&id.key),
            Quoted(&id.namespace)
        ),
        cause,
    }
}

/// One refresh per entry of `read`, to its latest read, in entry order.
fn merged_touches(mut read: Vec<(EntryId, Millis)>) -> Vec<(EntryId, Millis)> {
    crate::sort::sort_by(&mut read, |a, b| a.0.cmp(&b.0));
    let mut touches: Vec<(EntryId, Millis)> = Vec::with_capacity(read.len());
    for (id, at) in read {
        match touches.last_mut() {
            Some(last) if last.0 == id => last.1 = last.1.max(at),
            _ => touches.push((id, at)),
        }
    }
    touches
}

/// An action deleting the entry `id` as `meta` describes it.
fn entry_action(
    id: EntryId,
    reason: plan::Reason,
    meta: &EntryMeta,
    listed: Option<u32>,
) -> plan::Action {
    plan::Action {
        kind: plan::ActionKind::Entry,
        namespace: Some(id.namespace),
        key: id.key,
        reason,
        bytes: meta.size,
        version: Some(meta.write_id),
        listed,
    }
}

/// A run's host as the planner's pauser.
struct HostPause<'a, H>(&'a mut H);

impl<H: RunHost> plan::Pause for HostPause<'_, H> {
    async fn pause(&mut self) {
        self.0.pause().await;
    }
}

/// Copies each progress snapshot into the sweeper before passing it on.
struct Tracked<'a, H> {
    inner: &'a mut H,
    progress: &'a RefCell<Progress>,
    /// What the slices before this one of the run handled and deleted:
    /// `progress()` shows the run as a whole, not each slice from nought.
    /// (The host sees the slice's own: its budget waits for it to get on.)
    before: (u64, u64),
}

impl<H: RunHost> RunHost for Tracked<'_, H> {
    fn calls_counted(&self) -> bool {
        self.inner.calls_counted()
    }

    fn list_cap(&self) -> Option<u64> {
        self.inner.list_cap()
    }

    async fn pause(&mut self) {
        self.inner.pause().await;
    }

    fn stopped(&mut self) -> bool {
        self.inner.stopped()
    }

    fn batch_room(&mut self, wanted: usize) -> usize {
        self.inner.batch_room(wanted)
    }

    fn fits(&mut self, items: usize) -> bool {
        self.inner.fits(items)
    }

    async fn between_batches(&mut self, progress: &Progress) -> exec::Flow {
        let (handled, deleted) = self.before;
        *self.progress.borrow_mut() = Progress {
            processed: progress.processed + handled,
            total: progress.total + handled,
            deleted: progress.deleted + deleted,
            ..progress.clone()
        };
        let flow = self.inner.between_batches(progress).await;
        if flow == exec::Flow::Stop {
            let mut p = self.progress.borrow_mut();
            p.running = false;
            p.phase = "idle";
        }
        flow
    }
}

/// The entry records `ops` write (`None`: deleted).
fn meta_writes(ops: &[Op]) -> Vec<(EntryId, Option<Vec<u8>>)> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Put(Table::Meta, k, v) => Some((k.clone(), Some(v.clone()))),
            Op::Delete(Table::Meta, k) => Some((k.clone(), None)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::AbsentGuess;

    #[test]
    fn absent_guesses_stop_after_overwrites_and_resume_after_new_records() {
        let g = AbsentGuess::default();
        assert!(g.guess(), "a new sweeper guesses");
        g.found(true);
        assert!(!g.guess(), "one record found there: no guess");
        g.found(false);
        assert!(g.guess());
        for _ in 0..20 {
            g.found(true);
        }
        // Bounded: as many new records as the bound bring the guess back.
        for _ in 0..AbsentGuess::BOUND - 1 {
            g.found(false);
        }
        assert!(!g.guess());
        g.found(false);
        assert!(g.guess());
    }
}
