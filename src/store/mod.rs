//! The store trait: a few tables of byte records, listed in pages, read and
//! written in batches. Backends implement it; everything above speaks only to it.

use core::fmt;

use crate::model::EntryId;

pub mod memory;

/// The record tables of a store. Entry tables are keyed by `(namespace, key)`;
/// the others use an empty namespace and the id as the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Entry metadata (MessagePack, `codec::encode_meta`).
    Meta,
    /// Entry values (`codec::StoredValue`).
    Values,
    /// Blob bytes, keyed by SHA-256.
    Blobs,
    /// Blob records (`codec::encode_blob_info`).
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

/// One write of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Put(Table, EntryId, Vec<u8>),
    /// Deleting a key that is absent is not an error.
    Delete(Table, EntryId),
}

/// Why a store call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store is full (`QuotaExceededError`).
    QuotaExceeded(String),
    /// The store was closed or deleted under us.
    Closed(String),
    /// Anything else the backend reported.
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::QuotaExceeded(m) => write!(f, "storage quota exceeded: {m}"),
            StoreError::Closed(m) => write!(f, "store is closed: {m}"),
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
    /// Applies `ops` atomically where the backend can (one IndexedDB transaction).
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;
}
