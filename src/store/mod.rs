//! The store trait: a few tables of byte records, listed in pages, read and
//! written in batches. Backends implement it; everything above speaks only to it.

use core::fmt;

use crate::model::EntryId;

pub mod faulty;
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
    Put(Table, EntryId, Vec<u8>),
    /// Deleting a key that is absent is not an error.
    Delete(Table, EntryId),
    /// A precondition: the batch applies only if the record's bytes have this
    /// [`stamp`] (`None`: the record is absent). Every `Expect` of a batch is
    /// checked before any of its writes; one that fails fails the batch with
    /// [`StoreError::Conflict`] and writes nothing.
    Expect(Table, EntryId, Option<u64>),
}

impl Op {
    pub fn table(&self) -> Table {
        match self {
            Op::Put(t, ..) | Op::Delete(t, _) | Op::Expect(t, ..) => *t,
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
    /// Anything else the backend reported.
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::QuotaExceeded(m) => write!(f, "storage quota exceeded: {m}"),
            StoreError::Closed(m) => write!(f, "store is closed: {m}"),
            StoreError::Conflict(m) => write!(f, "changed concurrently: {m}"),
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
    /// The records at `keys`, `None` where absent, in the order asked.
    async fn get(&self, table: Table, keys: &[EntryId])
        -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Checks every `Op::Expect`, then applies the writes in order, atomically
    /// where the backend can (one IndexedDB transaction). Callers order writes
    /// so that any prefix leaves a consistent store, for backends that cannot.
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;

    /// Whether `apply` is all-or-nothing. When it is not, writers stage a temp
    /// record first so that a batch cut short leaves something a run can find.
    fn atomic(&self) -> bool {
        false
    }
}
