//! How records are stored: MessagePack (rmp-serde) with a format version, so a
//! store written by one release is read by the next.

use core::fmt;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::model::{BlobInfo, EntryMeta, Millis, TempInfo};

/// The format version written by this release.
pub const FORMAT_VERSION: u32 = 1;

/// Why a stored record could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Written by a newer release, or not a kvsweep record.
    UnsupportedVersion(u32),
    /// The bytes are not a record of this kind.
    Malformed(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnsupportedVersion(v) => write!(
                f,
                "record has format version {v}; this release reads version {FORMAT_VERSION}"
            ),
            DecodeError::Malformed(why) => write!(f, "record is not valid kvsweep metadata: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[derive(Serialize)]
struct Envelope<'a, T>(u32, &'a T);

#[derive(Deserialize)]
struct Versioned<T>(serde::de::IgnoredAny, T);

/// Any record, versioned like the others.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Serializing plain structs of strings and integers into a Vec cannot fail.
    rmp_serde::to_vec_named(&Envelope(FORMAT_VERSION, record)).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    // Read the version alone first, so a newer record says so instead of "malformed".
    let version: (u32, serde::de::IgnoredAny) =
        rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if version.0 != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version.0));
    }
    let Versioned(_, record) = rmp_serde::from_slice::<Versioned<T>>(bytes)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    Ok(record)
}

pub fn encode_meta(meta: &EntryMeta) -> Vec<u8> {
    encode(meta)
}

pub fn decode_meta(bytes: &[u8]) -> Result<EntryMeta, DecodeError> {
    decode(bytes)
}

/// A blob's record, without its id (the id is the record's key).
/// Every field is required: a record without them is corrupt, never zeros.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRecord {
    pub size: u64,
    /// When the blob was written, or last written again: its grace starts here.
    pub created_at: Millis,
    /// How many entries reference the blob: it is deleted only at zero.
    pub refs: u64,
    /// Raised by every write of the record (see `EntryMeta::rev`).
    #[serde(default)]
    pub rev: u64,
}

impl BlobRecord {
    pub fn info(&self, id: &str) -> BlobInfo {
        BlobInfo {
            id: id.to_string(),
            size: self.size,
            created_at: self.created_at,
        }
    }
}

pub fn encode_blob(record: &BlobRecord) -> Vec<u8> {
    encode(record)
}

pub fn decode_blob(bytes: &[u8]) -> Result<BlobRecord, DecodeError> {
    decode(bytes)
}

/// The record of an unreferenced blob described by `info`.
pub fn encode_blob_info(info: &BlobInfo) -> Vec<u8> {
    encode_blob(&BlobRecord {
        size: info.size,
        created_at: info.created_at,
        refs: 0,
        rev: 0,
    })
}

pub fn decode_blob_info(id: &str, bytes: &[u8]) -> Result<BlobInfo, DecodeError> {
    Ok(decode_blob(bytes)?.info(id))
}

/// What a write staged before it committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Staged {
    /// Values of an entry's writes (by write id); the entry's metadata is the
    /// commit record: a value whose write it does not name is left over.
    Entry {
        namespace: String,
        key: String,
        writes: Vec<u64>,
    },
    /// A blob's bytes; its blob record is the commit record.
    Blob { id: String },
}

/// A temp: what a write staged and when. A write puts it first and deletes it
/// in the same batch, so only an interrupted write leaves one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TempRecord {
    pub created_at: Millis,
    pub size: u64,
    pub staged: Staged,
}

pub fn encode_temp(record: &TempRecord) -> Vec<u8> {
    encode(record)
}

pub fn decode_temp(bytes: &[u8]) -> Result<TempRecord, DecodeError> {
    decode(bytes)
}

/// The record of a temp described by `info` that staged the blob `info.id`.
pub fn encode_temp_info(info: &TempInfo) -> Vec<u8> {
    encode_temp(&TempRecord {
        created_at: info.created_at,
        size: info.size,
        staged: Staged::Blob {
            id: info.id.clone(),
        },
    })
}

pub fn decode_temp_info(id: &str, bytes: &[u8]) -> Result<TempInfo, DecodeError> {
    let r = decode_temp(bytes)?;
    Ok(TempInfo {
        id: id.to_string(),
        size: r.size,
        created_at: r.created_at,
    })
}

/// A namespace's registration record.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamespaceRecord {
    registered_at: Millis,
}

pub fn encode_namespace(registered_at: Millis) -> Vec<u8> {
    encode(&NamespaceRecord { registered_at })
}

/// An entry's inline value as stored: raw bytes, or any value as MessagePack.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredValue {
    Bytes(Vec<u8>),
    MsgPack(Vec<u8>),
}

const TAG_BYTES: u8 = 0;
const TAG_MSGPACK: u8 = 1;

impl StoredValue {
    /// Bytes the value takes, as counted against `maxBytes`.
    pub fn len(&self) -> usize {
        match self {
            StoredValue::Bytes(b) | StoredValue::MsgPack(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encode(&self) -> Vec<u8> {
        let (tag, body) = match self {
            StoredValue::Bytes(b) => (TAG_BYTES, b),
            StoredValue::MsgPack(b) => (TAG_MSGPACK, b),
        };
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(tag);
        out.extend_from_slice(body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<StoredValue, DecodeError> {
        match bytes.split_first() {
            Some((&TAG_BYTES, rest)) => Ok(StoredValue::Bytes(rest.to_vec())),
            Some((&TAG_MSGPACK, rest)) => Ok(StoredValue::MsgPack(rest.to_vec())),
            Some((tag, _)) => Err(DecodeError::Malformed(format!("unknown value tag {tag}"))),
            None => Err(DecodeError::Malformed("empty value record".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_through_msgpack() {
        let meta = EntryMeta {
            created_at: 1,
            updated_at: 2,
            accessed_at: 3,
            expires_at: Some(4),
            size: 5,
            group: Some("nightly".into()),
            pinned: true,
            locked: false,
            dependent: true,
            refs: vec!["a".into()],
            blobs: vec!["b".into()],
            write_id: 6,
            referrers: 7,
            rev: 8,
        };
        assert_eq!(decode_meta(&encode_meta(&meta)), Ok(meta));
    }

    #[test]
    fn newer_format_version_is_an_error_not_garbage() {
        let bytes =
            rmp_serde::to_vec_named(&Envelope(FORMAT_VERSION + 1, &EntryMeta::default())).unwrap();
        assert_eq!(
            decode_meta(&bytes),
            Err(DecodeError::UnsupportedVersion(FORMAT_VERSION + 1))
        );
    }

    #[test]
    fn records_missing_required_fields_are_corrupt_not_zeros() {
        // [1, {}] and [1, []]: the right version, nothing in it.
        assert!(decode_meta(&[0x92, 0x01, 0x80]).is_err());
        assert!(decode_meta(&[0x92, 0x01, 0x90]).is_err());
        assert!(decode_blob(&[0x92, 0x01, 0x80]).is_err());
    }

    #[test]
    fn arbitrary_bytes_decode_to_an_error() {
        for bytes in [&b""[..], b"\xff\xff", b"\x92\x01", b"hello"] {
            assert!(decode_meta(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn values_keep_their_kind() {
        for v in [
            StoredValue::Bytes(vec![1, 2]),
            StoredValue::MsgPack(vec![0xc0]),
        ] {
            assert_eq!(StoredValue::decode(&v.encode()), Ok(v));
        }
        assert!(StoredValue::decode(&[9]).is_err());
    }
}
