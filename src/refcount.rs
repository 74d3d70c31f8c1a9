//! Reference counts kept by writes and deletes: every entry's metadata counts
//! the entries that reference it, every blob record the entries that
//! reference the blob. A batch that changes counts reads the records fresh,
//! expects them unchanged when it applies, and writes increments before its
//! commit record and decrements after, so a batch cut short over-counts
//! (a leak a rebuild repairs) and never under-counts (a live reference lost).

use crate::vecmap::{VecMap, VecSet};

use crate::codec::{self, BlobRecord};
use crate::error::Error;
use crate::model::{EntryId, EntryMeta, Millis};
use crate::store::{id_key, Op, Read, Reads, Table};

/// The records whose counts a batch changes, and by how much. Built from what
/// a step read (`Store::transact`), which also keeps them from changing
/// before the batch applies.
#[derive(Default)]
pub struct Counts {
    /// Each entry's metadata with its record as read (which may hold its value).
    entries: VecMap<EntryId, Option<(EntryMeta, Vec<u8>)>>,
    blobs: VecMap<String, Option<BlobRecord>>,
    entry_delta: VecMap<EntryId, i64>,
    blob_delta: VecMap<String, i64>,
}

impl Counts {
    /// The counts of `entries` and `blobs` from `reads`, or the reads still
    /// missing. Unreadable records are an error: a count that cannot be read
    /// cannot be changed safely.
    pub fn from_reads(
        reads: &Reads,
        entries: &[EntryId],
        blobs: &[String],
    ) -> Result<Result<Counts, Vec<Read>>, Error> {
        Counts::read(reads, entries, blobs, false)
    }

    /// [`Counts::from_reads`] for lowering counts only: an unreadable record
    /// is left as it is (its count, unknown, stays too high: nothing is
    /// lost). A delete of what references it goes on.
    pub fn to_lower(
        reads: &Reads,
        entries: &[EntryId],
        blobs: &[String],
    ) -> Result<Result<Counts, Vec<Read>>, Error> {
        Counts::read(reads, entries, blobs, true)
    }

    fn read(
        reads: &Reads,
        entries: &[EntryId],
        blobs: &[String],
        lenient: bool,
    ) -> Result<Result<Counts, Vec<Read>>, Error> {
        let mut missing: Vec<Read> = entries
            .iter()
            .filter(|id| !reads.has(Table::Meta, id))
            .map(|id| Read::Key(Table::Meta, id.clone()))
            .collect();
        missing.extend(
            blobs
                .iter()
                .map(|b| id_key(b))
                .filter(|k| !reads.has(Table::BlobMeta, k))
                .map(|k| Read::Key(Table::BlobMeta, k)),
        );
        if !missing.is_empty() {
            return Ok(Err(missing));
        }
        let mut counts = Counts::default();
        for id in entries {
            let meta = match reads.get(Table::Meta, id).flatten() {
                None => None,
                Some(bytes) => match codec::decode_meta(bytes) {
                    Ok(meta) => Some((meta, bytes.to_vec())),
                    Err(_) if lenient => None,
                    Err(cause) => return Err(Error::corrupt_entry(id, cause)),
                },
            };
            counts.entries.insert(id.clone(), meta);
        }
        for b in blobs {
            let rec = match reads.get(Table::BlobMeta, &id_key(b)).flatten() {
                None => None,
                Some(bytes) => match codec::decode_blob(bytes) {
                    Ok(rec) => Some(rec),
                    Err(_) if lenient => None,
                    Err(cause) => {
                        return Err(Error::Corrupt {
                            what: format!("record of blob {b}"),
                            cause,
                        })
                    }
                },
            };
            counts.blobs.insert(b.clone(), rec);
        }
        Ok(Ok(counts))
    }

    pub fn entry(&self, id: &EntryId) -> Option<&EntryMeta> {
        self.entries
            .get(id)
            .and_then(|m| m.as_ref())
            .map(|(m, _)| m)
    }

    pub fn blob(&self, id: &str) -> Option<&BlobRecord> {
        self.blobs.get(id).and_then(|b| b.as_ref())
    }

    pub fn add_entry(&mut self, id: &EntryId, delta: i64) {
        *self.entry_delta.entry(id.clone()).or_default() += delta;
    }

    pub fn add_blob(&mut self, id: &str, delta: i64) {
        *self.blob_delta.entry(id.to_string()).or_default() += delta;
    }

    /// The writes that raise counts (they go before the batch's commit record).
    /// A referenced entry counts as accessed now.
    pub fn increments(&self, now: Millis) -> Vec<Op> {
        self.writes(|d| d > 0, now)
    }

    /// The writes that lower counts (they go after the batch's commit record).
    pub fn decrements(&self) -> Vec<Op> {
        self.writes(|d| d < 0, 0)
    }

    fn writes(&self, pick: impl Fn(i64) -> bool, now: Millis) -> Vec<Op> {
        let mut ops = Vec::new();
        for (id, &d) in self.entry_delta.iter().filter(|(_, &d)| pick(d)) {
            if let Some((meta, record)) = self.entries.get(id).and_then(|m| m.as_ref()) {
                let mut meta = meta.clone();
                meta.referrers = apply_delta(meta.referrers, d);
                meta.rev = meta.rev.wrapping_add(1);
                meta.accessed_at = meta.accessed_at.max(now);
                // Decoded above, so its record re-encodes; the value it holds stays.
                let record = codec::reencode_meta(record, &meta)
                    .unwrap_or_else(|_| codec::encode_meta(&meta));
                ops.push(Op::Put(Table::Meta, id.clone(), record));
            }
        }
        for (id, &d) in self.blob_delta.iter().filter(|(_, &d)| pick(d)) {
            if let Some(rec) = self.blobs.get(id).and_then(|b| b.as_ref()) {
                let mut rec = rec.clone();
                rec.refs = apply_delta(rec.refs, d);
                rec.rev = rec.rev.wrapping_add(1);
                // A write that references a blob restarts its grace period,
                // before the write commits (SPEC §6: on a store without
                // compare-and-set, a run that read the record before this
                // write may still be deciding; the grace outlasts it).
                rec.created_at = rec.created_at.max(now);
                ops.push(Op::Put(
                    Table::BlobMeta,
                    id_key(id),
                    codec::encode_blob(&rec),
                ));
            }
        }
        ops
    }
}

fn apply_delta(count: u64, delta: i64) -> u64 {
    if delta >= 0 {
        count.saturating_add(delta as u64)
    } else {
        count.saturating_sub(delta.unsigned_abs())
    }
}

/// `items` without repeats, in first-seen order.
pub fn distinct(items: &[String]) -> Vec<String> {
    let mut seen = VecSet::new();
    items
        .iter()
        .filter(|i| seen.insert(i.as_str()))
        .cloned()
        .collect()
}
