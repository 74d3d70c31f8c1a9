//! Fuzz target: the decoders of stored records (`kvsweep::codec`).
//!
//! A store can hold anything: records written by another release, by another
//! library sharing the database, or cut short by a crash. Reading them must
//! never panic; a record that is not ours is an `Err(DecodeError)`.
//!
//! Every input is fed, as it is, to every decoder of a stored record:
//! `decode_meta` (entry metadata), `decode_blob` and `decode_blob_info` (blob
//! records), `decode_temp` and `decode_temp_info` (temp records),
//! `decode::<exec::Cursor>` (the cursor a stopped run leaves) and
//! `StoredValue::decode` (an entry's inline value). The checks:
//!
//! * no decoder panics (libFuzzer reports a panic as a crash);
//! * whatever decodes round-trips: `decode_meta(&encode_meta(&m)) == Ok(m)`,
//!   and likewise for blob, temp and cursor records (the `*_info` forms keep
//!   the id passed in);
//! * the `*_info` forms agree with the full records they are read from;
//! * `StoredValue::decode` is the exact inverse of `StoredValue::encode`, and
//!   fails only on an empty record or an unknown tag;
//! * an error has a non-empty message, and `UnsupportedVersion(v)` never names
//!   the version this release writes.
//!
//! The same input is then also read as the recipe for a *valid* record (an
//! `EntryMeta`, blob, temp or cursor record built from it), which must
//! round-trip exactly, and which is then corrupted (truncated, bytes
//! overwritten, inserted or removed, as the input says) and decoded again
//! under the checks above, so that the fuzzer spends its time near real
//! records and not only on noise.

#![no_main]
// Built field by field on purpose, see `meta`.
#![allow(clippy::field_reassign_with_default)]

use arbitrary::{Arbitrary, Unstructured};
use kvsweep::codec::{
    self, BlobRecord, DecodeError, Staged, StoredValue, TempRecord, FORMAT_VERSION,
};
use kvsweep::exec::Cursor;
use kvsweep::{ActionKind, BlobInfo, EntryMeta, Mode, Reason, Tally, TempInfo};
use libfuzzer_sys::fuzz_target;

/// Blob and temp records are keyed by their id; the decoder is handed it.
const ID: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

fn check_error(what: &str, data: &[u8], e: &DecodeError) {
    assert!(
        !e.to_string().is_empty(),
        "{what}: empty error message for {data:02x?}"
    );
    if let DecodeError::UnsupportedVersion(v) = e {
        assert_ne!(
            *v, FORMAT_VERSION,
            "{what}: the current format version reported as unsupported for {data:02x?}"
        );
    }
}

/// Every decoder on `data`, with the checks of the module doc.
fn check_bytes(data: &[u8]) {
    match codec::decode_meta(data) {
        Ok(meta) => {
            let again = codec::decode_meta(&codec::encode_meta(&meta));
            assert_eq!(
                again,
                Ok(meta),
                "decode_meta(encode_meta(m)) != m for input {data:02x?}"
            );
        }
        Err(e) => check_error("decode_meta", data, &e),
    }

    match codec::decode_blob_info(ID, data) {
        Ok(info) => {
            assert_eq!(info.id, ID);
            let again = codec::decode_blob_info(ID, &codec::encode_blob_info(&info));
            assert_eq!(
                again,
                Ok(info),
                "blob record does not round-trip for {data:02x?}"
            );
        }
        Err(e) => check_error("decode_blob_info", data, &e),
    }

    match codec::decode_temp_info(ID, data) {
        Ok(info) => {
            assert_eq!(info.id, ID);
            let again = codec::decode_temp_info(ID, &codec::encode_temp_info(&info));
            assert_eq!(
                again,
                Ok(info),
                "temp record does not round-trip for {data:02x?}"
            );
        }
        Err(e) => check_error("decode_temp_info", data, &e),
    }

    // The full records behind the two above, as the executor reads them.
    let blob = codec::decode_blob(data);
    match &blob {
        Ok(rec) => {
            let again = codec::decode_blob(&codec::encode_blob(rec));
            assert_eq!(
                again.as_ref(),
                Ok(rec),
                "blob record does not round-trip for {data:02x?}"
            );
        }
        Err(e) => check_error("decode_blob", data, e),
    }
    assert_eq!(
        codec::decode_blob_info(ID, data),
        blob.map(|rec| rec.info(ID)),
        "decode_blob_info disagrees with decode_blob"
    );

    let temp = codec::decode_temp(data);
    match &temp {
        Ok(rec) => {
            let again = codec::decode_temp(&codec::encode_temp(rec));
            assert_eq!(
                again.as_ref(),
                Ok(rec),
                "temp record does not round-trip for {data:02x?}"
            );
        }
        Err(e) => check_error("decode_temp", data, e),
    }
    assert_eq!(
        codec::decode_temp_info(ID, data).is_ok(),
        temp.is_ok(),
        "decode_temp_info disagrees with decode_temp"
    );

    // The cursor a stopped run leaves for the next one.
    match Cursor::decode(data) {
        Ok(c) => {
            let again = Cursor::decode(&c.encode());
            assert_eq!(
                again,
                Ok(c),
                "run cursor does not round-trip for {data:02x?}"
            );
        }
        Err(e) => check_error("decode::<Cursor>", data, &e),
    }

    match StoredValue::decode(data) {
        Ok(v) => {
            assert_eq!(v.encode(), data, "StoredValue::encode(decode(b)) != b");
            assert_eq!(v.len() + 1, data.len());
        }
        Err(e) => {
            assert!(
                !matches!(data.first(), Some(0 | 1)),
                "StoredValue::decode rejected a record with a known tag: {data:02x?}: {e}"
            );
            check_error("StoredValue::decode", data, &e);
        }
    }
}

fn small_string(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    // Real keys, groups and blob ids, or anything.
    Ok(match u.int_in_range(0u8..=3)? {
        0 => String::new(),
        1 => ID.to_string(),
        2 => "nightly".to_string(),
        _ => String::arbitrary(u)?,
    })
}

fn strings(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<String>> {
    let n = u.int_in_range(0usize..=4)?;
    (0..n).map(|_| small_string(u)).collect()
}

fn millis(u: &mut Unstructured<'_>) -> arbitrary::Result<u64> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => 0,
        1 => u64::MAX,
        2 => (1 << 53) - 1,
        3 => u64::from(u32::arbitrary(u)?),
        _ => u64::arbitrary(u)?,
    })
}

fn meta(u: &mut Unstructured<'_>) -> arbitrary::Result<EntryMeta> {
    // Field by field on a default, so fields added to `EntryMeta` later keep
    // this compiling (they stay at their default here; the raw-bytes pass
    // still reaches them).
    let mut m = EntryMeta::default();
    m.created_at = millis(u)?;
    m.updated_at = millis(u)?;
    m.accessed_at = millis(u)?;
    m.expires_at = if bool::arbitrary(u)? {
        Some(millis(u)?)
    } else {
        None
    };
    m.size = millis(u)?;
    m.group = if bool::arbitrary(u)? {
        Some(small_string(u)?)
    } else {
        None
    };
    m.pinned = bool::arbitrary(u)?;
    m.locked = bool::arbitrary(u)?;
    m.dependent = bool::arbitrary(u)?;
    m.refs = strings(u)?;
    m.blobs = strings(u)?;
    m.write_id = millis(u)?;
    m.referrers = millis(u)?;
    m.rev = millis(u)?;
    Ok(m)
}

fn cursor(u: &mut Unstructured<'_>) -> arbitrary::Result<Cursor> {
    let mode = if bool::arbitrary(u)? {
        Mode::Light
    } else {
        Mode::Full
    };
    let kind = *u.choose(&[ActionKind::Entry, ActionKind::Blob, ActionKind::Temp])?;
    let after = (kind, small_string(u)?, small_string(u)?);
    let mut deleted = std::collections::BTreeMap::new();
    for reason in Reason::ALL {
        if bool::arbitrary(u)? {
            deleted.insert(
                reason,
                Tally {
                    count: millis(u)?,
                    bytes: millis(u)?,
                },
            );
        }
    }
    Ok(Cursor {
        mode,
        started_at: millis(u)?,
        after,
        deleted,
        kept: millis(u)?,
    })
}

/// Corrupts `bytes` as `u` says: a few overwrites, inserts, removals, a cut.
fn corrupt(u: &mut Unstructured<'_>, bytes: &mut Vec<u8>) -> arbitrary::Result<()> {
    let edits = u.int_in_range(0u8..=4)?;
    for _ in 0..edits {
        if bytes.is_empty() {
            break;
        }
        let at = u.choose_index(bytes.len())?;
        match u.int_in_range(0u8..=3)? {
            0 => bytes[at] = u8::arbitrary(u)?,
            1 => bytes.insert(at, u8::arbitrary(u)?),
            2 => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    Ok(())
}

/// A valid record built from the input must round-trip; then corrupt it.
fn check_structured(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let mut bytes = match u.int_in_range(0u8..=5)? {
        0 | 1 => {
            let m = meta(&mut u)?;
            let bytes = codec::encode_meta(&m);
            assert_eq!(
                codec::decode_meta(&bytes),
                Ok(m.clone()),
                "a valid entry record does not round-trip: {m:?}"
            );
            bytes
        }
        2 => {
            let rec = BlobRecord {
                size: millis(&mut u)?,
                created_at: millis(&mut u)?,
                refs: millis(&mut u)?,
                rev: millis(&mut u)?,
            };
            let bytes = codec::encode_blob(&rec);
            assert_eq!(codec::decode_blob(&bytes), Ok(rec.clone()));
            assert_eq!(codec::decode_blob_info(ID, &bytes), Ok(rec.info(ID)));
            bytes
        }
        3 => {
            let info = BlobInfo {
                id: ID.to_string(),
                size: millis(&mut u)?,
                created_at: millis(&mut u)?,
            };
            let bytes = codec::encode_blob_info(&info);
            assert_eq!(codec::decode_blob_info(ID, &bytes), Ok(info));
            bytes
        }
        4 => {
            let rec = TempRecord {
                created_at: millis(&mut u)?,
                size: millis(&mut u)?,
                staged: if bool::arbitrary(&mut u)? {
                    Staged::Entry {
                        namespace: small_string(&mut u)?,
                        key: small_string(&mut u)?,
                        writes: vec![millis(&mut u)?, millis(&mut u)?],
                    }
                } else {
                    Staged::Blob {
                        id: small_string(&mut u)?,
                    }
                },
            };
            let bytes = codec::encode_temp(&rec);
            assert_eq!(codec::decode_temp(&bytes), Ok(rec.clone()));
            let info = TempInfo {
                id: ID.to_string(),
                size: rec.size,
                created_at: rec.created_at,
            };
            assert_eq!(codec::decode_temp_info(ID, &bytes), Ok(info.clone()));
            assert_eq!(
                codec::decode_temp_info(ID, &codec::encode_temp_info(&info)),
                Ok(info)
            );
            bytes
        }
        _ => {
            let c = cursor(&mut u)?;
            let bytes = codec::encode(&c);
            assert_eq!(
                Cursor::decode(&bytes),
                Ok(c.clone()),
                "a valid run cursor does not round-trip: {c:?}"
            );
            bytes
        }
    };
    corrupt(&mut u, &mut bytes)?;
    check_bytes(&bytes);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    check_bytes(data);
    let _ = check_structured(data);
});
