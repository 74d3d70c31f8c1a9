//! The data model of SPEC §1: entries, blobs, temps and the inventory the planner reads.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Where an entry lives: its namespace and its key within it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntryId {
    /// The tenant the entry belongs to.
    pub namespace: String,
    /// The entry's key, unique within its namespace.
    pub key: String,
}

impl EntryId {
    /// The id of `key` in `namespace`.
    pub fn new(namespace: impl Into<String>, key: impl Into<String>) -> Self {
        EntryId {
            namespace: namespace.into(),
            key: key.into(),
        }
    }
}

/// An entry's metadata, as stored (MessagePack, see `codec`) and as planned over.
///
/// Times, size, write id and referrer count are required when decoding: a
/// record without them is corrupt (kept and reported), never read as zeros.
/// Only `accessedAt` may be missing, in records written before it existed:
/// it reads as `updatedAt` (no use known since the write).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryMeta {
    /// When the entry was first written; later writes keep it. Retention
    /// (`keepLast`) ranks by it.
    pub created_at: Millis,
    /// When the entry was last written; `maxAgeMs` counts from it.
    pub updated_at: Millis,
    /// When the entry was last written, read or referenced by a new write;
    /// `maxEntries` and `maxBytes` evict the least recent first.
    pub accessed_at: Millis,
    /// When the entry expires: from then on, unless pinned, it reads as
    /// missing and a run deletes it (`expired`). `None`: never.
    #[serde(default)]
    pub expires_at: Option<Millis>,
    /// Bytes of the entry's own inline value.
    pub size: u64,
    /// The retention group (`keepLast`) the entry counts in; `None`: none.
    #[serde(default)]
    pub group: Option<String>,
    /// Never deleted by any policy.
    #[serde(default)]
    pub pinned: bool,
    /// Never deleted by retention (`keepLast`).
    #[serde(default)]
    pub locked: bool,
    /// Not a root of its own: lives only while a live entry references it
    /// (an attachment, a chunk). Deleted as `unreachable` otherwise.
    #[serde(default)]
    pub dependent: bool,
    /// Keys of other entries in the same namespace.
    #[serde(default)]
    pub refs: Vec<String>,
    /// Ids (SHA-256, lower-case hex) of blobs.
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Identifies one write of the entry: the executor deletes an entry only
    /// if it still carries the write it planned over.
    pub write_id: u64,
    /// How many entries reference this one (kept by every write and delete):
    /// an entry is deleted only when every referrer goes with it.
    pub referrers: u64,
    /// Raised by every write of this record (puts, count changes, touches),
    /// so a record never returns to bytes it had: an unchanged stamp means
    /// not written, which `rebuild` relies on.
    #[serde(default)]
    pub rev: u64,
}

/// One entry as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryEntry {
    /// Where the entry lives.
    pub id: EntryId,
    /// Its decoded metadata.
    pub meta: EntryMeta,
}

/// A blob's metadata: its id, byte length and when it was first written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobInfo {
    /// SHA-256 of the bytes, lower-case hex.
    pub id: String,
    /// Length of the bytes.
    pub size: u64,
    /// When the blob was last written (a put of the same bytes refreshes it);
    /// its orphan grace (`orphanGraceMs`) counts from it.
    pub created_at: Millis,
}

/// A staging item left by a write that did not commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TempInfo {
    /// The temp's key in the store.
    pub id: String,
    /// Bytes of what it staged.
    pub size: u64,
    /// When it was staged; it is stale `tempMaxAgeMs` later.
    pub created_at: Millis,
}

/// Everything the planner needs to know about a store, read in one listing.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// Entries whose metadata decoded.
    pub entries: Vec<InventoryEntry>,
    /// Entries whose metadata could not be decoded: kept and reported.
    pub corrupt: Vec<EntryId>,
    /// Blobs whose metadata decoded.
    pub blobs: Vec<BlobInfo>,
    /// Blob metadata records that could not be decoded (by id): kept and reported.
    pub corrupt_blobs: Vec<String>,
    /// Temps whose records decoded.
    pub temps: Vec<TempInfo>,
    /// Temp records that could not be decoded (by id): kept and reported,
    /// since what they staged is unknown.
    pub corrupt_temps: Vec<String>,
    /// Namespaces registered through the API. `None` when the store keeps no
    /// registry (then no namespace is a zombie).
    pub namespaces: Option<Vec<String>>,
}

/// Is `id` a well-formed blob id (64 lower-case hex digits)?
pub fn is_blob_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The blob id of `bytes`: their SHA-256 in lower-case hex.
pub fn blob_id(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// `bytes` in lower-case hex: a blob id, given their SHA-256.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_id_is_lowercase_sha256_hex() {
        assert_eq!(
            blob_id(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_blob_id(&blob_id(b"")));
        assert!(!is_blob_id("BA7816BF"));
    }
}
