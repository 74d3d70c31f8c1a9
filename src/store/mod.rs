//! The store trait: a few tables of byte records, listed in pages, read and
//! written in batches. Backends implement it; everything above speaks only to it.

use crate::vecmap::VecMap;
use core::fmt;

use crate::error::Error;
use crate::model::{EntryId, Millis};

#[cfg(feature = "testing")]
#[doc(hidden)] // a test double for this crate's own tests, not API
pub mod faulty;
/// IndexedDB, in browsers, workers and (with fake-indexeddb) Node.
#[cfg(target_arch = "wasm32")]
pub mod idb;
/// Workers KV, Deno KV, Durable Objects and other JS key–value objects.
#[cfg(target_arch = "wasm32")]
pub mod jskv;
pub mod memory;

/// The record tables of a store. Entry tables are keyed by `(namespace, key)`;
/// the others use an empty namespace and the id as the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Entry metadata (MessagePack, `codec::encode_meta`).
    Meta,
    /// Entry values (`codec::StoredValue`), one per write: see [`value_key`].
    Values,
    /// Blob bytes, keyed by SHA-256.
    Blobs,
    /// Blob records (`codec::BlobRecord`: size, grace start, reference count).
    BlobMeta,
    /// Staging records of writes that have not committed.
    Temps,
    /// One record per registered namespace.
    Namespaces,
    /// The store's own state: run cursor, lease.
    State,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 7] = [
        Table::Meta,
        Table::Values,
        Table::Blobs,
        Table::BlobMeta,
        Table::Temps,
        Table::Namespaces,
        Table::State,
    ];

    /// The table's name in backends that name tables (IndexedDB object stores).
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Values => "values",
            Table::Blobs => "blobs",
            Table::BlobMeta => "blobMeta",
            Table::Temps => "temps",
            Table::Namespaces => "namespaces",
            Table::State => "state",
        }
    }
}

/// A key in a table that is not keyed by namespace.
pub fn id_key(id: &str) -> EntryId {
    EntryId::new("", id)
}

/// The `Values` record of one write of an entry. Every write has its own
/// (the metadata names it by `writeId`), so neither a reader nor a batch cut
/// short can pair one write's metadata with another write's value.
pub fn value_key(id: &EntryId, write_id: u64) -> EntryId {
    // The key's last U+0001 ends it: hex digits never contain one.
    EntryId::new(
        id.namespace.clone(),
        format!("{}\u{1}{write_id:016x}", id.key),
    )
}

/// One step of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Writes the record at the key, replacing any there.
    Put(Table, EntryId, Vec<u8>),
    /// Deleting a key that is absent is not an error.
    Delete(Table, EntryId),
    /// Deletes every record of the table with a key in `from..=to` (only on
    /// stores with [`Capabilities::range_delete`]).
    DeleteRange(Table, EntryId, EntryId),
    /// A precondition: the batch applies only if the record's bytes have this
    /// [`stamp`] (`None`: the record is absent). Every `Expect` of a batch is
    /// checked before any of its writes; one that fails fails the batch with
    /// [`StoreError::Conflict`] and writes nothing.
    Expect(Table, EntryId, Option<u64>),
}

impl Op {
    /// The table the step touches.
    pub fn table(&self) -> Table {
        match self {
            Op::Put(t, ..) | Op::Delete(t, _) | Op::DeleteRange(t, ..) | Op::Expect(t, ..) => *t,
        }
    }
}

/// A fingerprint of a record's bytes (64-bit FNV-1a): equal bytes, equal stamps.
pub fn stamp(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Why a store call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store is full (`QuotaExceededError`).
    QuotaExceeded(String),
    /// The store was closed or deleted under us.
    Closed(String),
    /// An `Op::Expect` did not hold: the record changed since it was read.
    Conflict(String),
    /// An optimistic write kept meeting concurrent writes (stores without transactions).
    Busy(String),
    /// A call would have passed the limit of backend calls set for a run
    /// (`maxOps`); it was not made.
    OutOfCalls(String),
    /// Anything else the backend reported.
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Chromium's IndexedDB says nothing more.
            StoreError::QuotaExceeded(m) if m.is_empty() => f.write_str("storage quota exceeded"),
            StoreError::QuotaExceeded(m) => write!(f, "storage quota exceeded: {m}"),
            StoreError::Closed(m) => write!(f, "store is closed: {m}"),
            StoreError::Conflict(m) => write!(f, "changed concurrently: {m}"),
            StoreError::Busy(m) => write!(f, "{m}; try again"),
            StoreError::OutOfCalls(m) => write!(f, "out of backend calls: {m}"),
            StoreError::Backend(m) => write!(f, "store error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A record as listed: its key and its bytes.
pub type Record = (EntryId, Vec<u8>);

/// An async, batched key–value store. Futures need not be `Send`: in wasm they
/// run on one thread, driven by the JS event loop.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Up to `limit` records of `table` in key order, starting after `after`.
    async fn list(
        &self,
        table: Table,
        after: Option<&EntryId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;
    /// [`Store::list`] within a cap on backend calls, for a run limited to
    /// so many (`maxOps`): the page is sized so that the store's count of
    /// its calls (where it counts them: kvStore) stays at or under `cap`,
    /// and one that cannot fit fails with [`StoreError::OutOfCalls`] before
    /// calling. Only the run's own listing is capped, not a `plan()` or a
    /// user's read beside it. Stores that do not count calls list as `list`.
    async fn list_capped(
        &self,
        table: Table,
        after: Option<&EntryId>,
        limit: usize,
        _cap: Option<u64>,
    ) -> Result<Vec<Record>, StoreError> {
        self.list(table, after, limit).await
    }
    /// The records at `keys`, `None` where absent, in the order asked.
    async fn get(&self, table: Table, keys: &[EntryId])
        -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Checks every `Op::Expect`, then applies the writes in order, atomically
    /// where the backend can (one IndexedDB transaction). A backend that
    /// cannot may make each run of consecutive writes of one kind (puts, or
    /// deletes) to values or to temps, each of another key, in any order or
    /// at once (kvStore over unstorage, keyv and generic objects does, 16 at
    /// a time): cut short, a batch leaves every write before the run the cut
    /// falls in, and any part of that run. Callers order writes so that any
    /// such cut leaves a consistent store. Other writes keep their order: a
    /// count's increment goes before the entry record that references it, a
    /// referrer's record before the record it references.
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;

    /// What the store promises (SPEC §6); the write protocol and the
    /// executor pick their steps from it.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Whether `apply` is all-or-nothing. When it is not, writers stage a temp
    /// record first so that a batch cut short leaves something a run can find.
    fn atomic(&self) -> bool {
        self.capabilities().atomic
    }

    /// Runs a read-check-write: `step` is called with what has been read so
    /// far and asks for more records, or answers with the writes to make.
    /// Where the store has transactions ([`Capabilities::transactions`]) the
    /// reads and the writes are one transaction, so nothing can change in
    /// between and the step never conflicts. Elsewhere (the default) the
    /// writes carry an `Op::Expect` of every record read, and when one fails
    /// the step runs again from nothing read, up to [`MAX_ATTEMPTS`] times.
    /// `step` must be a pure function of what it is given.
    async fn transact<T, F>(
        &self,
        access: Access,
        tables: &[Table],
        mut step: F,
    ) -> Result<T, Error>
    where
        F: FnMut(&Reads) -> Result<Step<T>, Error>,
    {
        // Backends implement one untyped loop (`transact_dyn`); the answer
        // travels beside it, so the loop is not compiled once per caller.
        let mut answer: Option<T> = None;
        self.transact_dyn(access, tables, &mut |reads| {
            keep_answer(step(reads)?, &mut answer)
        })
        .await?;
        answered(answer)
    }

    /// [`Store::transact`] of a write, told what the records it will read
    /// probably hold (`guess`, for instance what this process last wrote
    /// there). A store may write on the guess in the same flight as the reads
    /// and keep the writes only if the guess was right; by default the guess
    /// is ignored. The answer is the step's on what was actually read.
    async fn transact_with_guess<T, F>(
        &self,
        tables: &[Table],
        guess: &Reads,
        mut step: F,
    ) -> Result<T, Error>
    where
        F: FnMut(&Reads) -> Result<Step<T>, Error>,
    {
        let mut answer: Option<T> = None;
        self.transact_guess(tables, guess, &mut |reads| {
            keep_answer(step(reads)?, &mut answer)
        })
        .await?;
        answered(answer)
    }

    /// [`Store::transact_with_guess`] for backends.
    async fn transact_guess(
        &self,
        tables: &[Table],
        guess: &Reads,
        step: &mut DynStep<'_>,
    ) -> Result<(), Error> {
        let _ = guess;
        self.transact_dyn(Access::Write, tables, step).await
    }

    /// [`Store::transact`] for backends: the step's answer is kept by the caller.
    async fn transact_dyn(
        &self,
        access: Access,
        tables: &[Table],
        step: &mut DynStep<'_>,
    ) -> Result<(), Error> {
        let _ = (access, tables);
        optimistic(self, step).await
    }
}

/// A typed step's outcome as an untyped one, its answer kept in `answer`.
#[inline(always)]
fn keep_answer<T>(step: Step<T>, answer: &mut Option<T>) -> Result<Step<()>, Error> {
    Ok(match step {
        Step::Read(r) => Step::Read(r),
        Step::Done(t) => {
            *answer = Some(t);
            Step::Done(())
        }
        Step::Write(ops, t) => {
            *answer = Some(t);
            Step::Write(ops, ())
        }
    })
}

/// The answer `keep_answer` kept; a transaction that ended without one is a bug.
#[inline(always)]
fn answered<T>(answer: Option<T>) -> Result<T, Error> {
    answer.ok_or_else(|| StoreError::Backend("internal error: a step gave no answer".into()).into())
}

/// A step whose answer its caller keeps (see [`Store::transact`]).
pub type DynStep<'a> = dyn FnMut(&Reads) -> Result<Step<()>, Error> + 'a;

/// How many times an optimistic step runs before it gives up ([`StoreError::Busy`]).
pub const MAX_ATTEMPTS: usize = 16;

/// Whether a transaction writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only.
    Read,
    /// Reads and writes.
    Write,
}

/// What a store promises (SPEC §6), rather than one "atomic" flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `apply` is all or nothing.
    pub atomic: bool,
    /// `transact` reads and writes in one transaction: steps never conflict,
    /// and a step may read key ranges and see that no other key is there.
    pub transactions: bool,
    /// `Op::Expect` is checked in the same step as the writes.
    pub compare_and_set: bool,
    /// Most writes one `apply` may hold (`None`: no limit).
    pub max_batch_ops: Option<usize>,
    /// Most `Op::Expect` checks one `apply` may hold (`None`: no limit).
    pub max_batch_checks: Option<usize>,
    /// How long a write may take to show in a listing or a read elsewhere.
    pub visibility_ms: Millis,
    /// The store expires keys itself (Workers KV `expirationTtl`, Deno KV `expireIn`).
    pub native_expiry: bool,
    /// `Op::DeleteRange` deletes a key range in one request.
    pub range_delete: bool,
}

impl Default for Capabilities {
    /// A store that promises nothing beyond `get`, `list` and `apply` with
    /// compare-and-set checked per batch.
    fn default() -> Self {
        Capabilities {
            atomic: false,
            transactions: false,
            compare_and_set: true,
            max_batch_ops: None,
            max_batch_checks: None,
            visibility_ms: 0,
            native_expiry: false,
            range_delete: false,
        }
    }
}

impl Capabilities {
    /// A store with real transactions over key ranges (memory, IndexedDB).
    pub fn transactional() -> Self {
        Capabilities {
            atomic: true,
            transactions: true,
            range_delete: true,
            ..Capabilities::default()
        }
    }
}

/// A read a step asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// The record at one key (absent reads as `None`).
    Key(Table, EntryId),
    /// Every record with a key in `from..=to` (only on stores with
    /// [`Capabilities::transactions`]); keys in the range not found read as absent.
    Range(Table, EntryId, EntryId),
}

/// What a step wants next.
#[derive(Debug)]
pub enum Step<T> {
    /// Read these records too, then call the step again.
    Read(Vec<Read>),
    /// Make these writes and answer `T`.
    Write(Vec<Op>, T),
    /// Nothing to write: answer `T`.
    Done(T),
}

/// The records a step has read, by table and key; `None` where absent.
#[derive(Clone, Debug, Default)]
pub struct Reads {
    records: VecMap<(Table, EntryId), Option<Vec<u8>>>,
    ranges: Vec<(Table, EntryId, EntryId)>,
    tainted: Vec<(Table, EntryId, EntryId)>,
}

impl Reads {
    /// The record at `key`: `None` if not read yet, `Some(None)` if absent.
    pub fn get(&self, table: Table, key: &EntryId) -> Option<Option<&[u8]>> {
        if let Some(r) = self.records.get(&(table, key.clone())) {
            return Some(r.as_deref());
        }
        let in_range = self
            .ranges
            .iter()
            .any(|(t, from, to)| *t == table && from <= key && key <= to);
        in_range.then_some(None)
    }

    /// The keys read one by one (not ranges), in order.
    pub fn keys(&self) -> Vec<(Table, EntryId)> {
        self.records.keys().cloned().collect()
    }

    /// Whether `key` has been read (found or not).
    pub fn has(&self, table: Table, key: &EntryId) -> bool {
        self.get(table, key).is_some()
    }

    /// The records found in `table` between `from` and `to`, in key order.
    pub fn found_in(&self, table: Table, from: &EntryId, to: &EntryId) -> Vec<&EntryId> {
        if from > to {
            return Vec::new();
        }
        self.records
            .range_incl(&(table, from.clone()), &(table, to.clone()))
            .filter(|(_, v)| v.is_some())
            .map(|((_, k), _)| k)
            .collect()
    }

    /// Records what was read at `key`: its bytes, or `None` if absent.
    pub fn insert(&mut self, table: Table, key: EntryId, value: Option<Vec<u8>>) {
        self.records.insert((table, key), value);
    }

    /// A range read held a record that is not kvsweep's (a key of another
    /// shape): what it holds is not known exactly, so it is no range to delete.
    pub fn taint(&mut self, table: Table, from: EntryId, to: EntryId) {
        self.tainted.push((table, from, to));
    }

    /// Whether a range read overlapping `from..=to` held a foreign record.
    pub fn tainted(&self, table: Table, from: &EntryId, to: &EntryId) -> bool {
        self.tainted
            .iter()
            .any(|(t, f, l)| *t == table && f <= to && from <= l)
    }

    /// Records a range read of `from..=to`: the records `found`, and every
    /// other key in the range as absent.
    pub fn insert_range(&mut self, table: Table, from: EntryId, to: EntryId, found: Vec<Record>) {
        for (k, v) in found {
            self.records.insert((table, k), Some(v));
        }
        self.ranges.push((table, from, to));
    }

    /// These reads as they will be once `ops` apply: a step that makes several
    /// writes in one batch lets each see the ones before it.
    pub fn overlay(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::Put(t, k, v) => self.insert(*t, k.clone(), Some(v.clone())),
                Op::Delete(t, k) => self.insert(*t, k.clone(), None),
                Op::DeleteRange(t, from, to) => {
                    for (key, v) in self.records.iter_mut() {
                        if key.0 == *t && from <= &key.1 && &key.1 <= to {
                            *v = None;
                        }
                    }
                }
                Op::Expect(..) => {}
            }
        }
    }

    /// Whether nothing has been read.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Preconditions that every record read is still as read.
    pub fn expects(&self) -> Vec<Op> {
        self.records
            .iter()
            .map(|((t, k), v)| Op::Expect(*t, k.clone(), v.as_deref().map(stamp)))
            .collect()
    }

    /// `reads` without those already read.
    pub fn missing(&self, reads: Vec<Read>) -> Vec<Read> {
        reads
            .into_iter()
            .filter(|r| match r {
                Read::Key(t, k) => !self.has(*t, k),
                Read::Range(..) => true,
            })
            .collect()
    }
}

/// The default `transact`: reads with `get`, writes with `apply` under an
/// `Op::Expect` of every record read, again from the start on a conflict.
pub async fn optimistic<S: Store + ?Sized>(store: &S, step: &mut DynStep<'_>) -> Result<(), Error> {
    'attempt: for _ in 0..MAX_ATTEMPTS {
        let mut reads = Reads::default();
        loop {
            match step(&reads)? {
                Step::Read(wanted) => {
                    let wanted = reads.missing(wanted);
                    if wanted.is_empty() {
                        return Err(StoreError::Backend(
                            "internal error: a step asked again for records it had read".into(),
                        )
                        .into());
                    }
                    let mut by_table: Vec<(Table, Vec<EntryId>)> = Vec::new();
                    for r in wanted {
                        let (t, k) = match r {
                            Read::Key(t, k) => (t, k),
                            Read::Range(t, ..) => {
                                return Err(StoreError::Backend(format!(
                                    "range reads of {} need a store with transactions",
                                    t.name()
                                ))
                                .into())
                            }
                        };
                        match by_table.iter_mut().find(|(bt, _)| *bt == t) {
                            Some((_, ks)) if !ks.contains(&k) => ks.push(k),
                            Some(_) => {}
                            None => by_table.push((t, vec![k])),
                        }
                    }
                    for (t, keys) in by_table {
                        let got = store.get(t, &keys).await?;
                        for (k, v) in keys.into_iter().zip(got) {
                            reads.insert(t, k, v);
                        }
                    }
                }
                Step::Done(out) => return Ok(out),
                Step::Write(ops, out) => {
                    let mut all = reads.expects();
                    all.extend(ops);
                    match store.apply(all).await {
                        Ok(()) => return Ok(out),
                        Err(StoreError::Conflict(_)) => continue 'attempt,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    Err(StoreError::Busy(format!(
        "a write kept colliding with concurrent writes ({MAX_ATTEMPTS} attempts)"
    ))
    .into())
}
