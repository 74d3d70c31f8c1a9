//! Rebuilding reference counts from the entries (SPEC §5).
//!
//! Writers keep every entry's `referrers` and every blob record's `refs` (see
//! `refcount`). On a store whose batches are not atomic, a batch cut short
//! leaves a count too high (increments go before a put's commit record,
//! decrements after a delete's), and the entry or blob then leaks forever.
//! [`rebuild`] recomputes every count from the entries and rewrites the
//! records that differ, while writers may go on writing.
//!
//! # Why raising and lowering differ
//!
//! A count that is too high leaks; one that is too low lets a run delete an
//! entry or blob that a live entry still references. So raising a count is
//! always safe: the fix only expects the record to be as it was read, and
//! writes a higher count. Lowering is the dangerous direction, and a listing
//! is paged, not a snapshot: a writer that adds a reference to `X` from an
//! entry the listing has already passed is not counted.
//!
//! # The protocol
//!
//! 0. Take the rebuild epoch: a counter in the `State` table, raised by one
//!    under an `Expect`. Every fix batch expects it unchanged, so a rebuild
//!    that started later supersedes this one (its lowering is a write that no
//!    reference change explains, which the argument below does not allow for).
//! 1. Three collects, one after the other, each listing `Meta` and then
//!    `BlobMeta` completely: **first**, **fix** and **last**. The fix collect
//!    gives the records to rewrite and their stamps; the last one gives the
//!    counts (every distinct ref of an entry, itself included, counts one for
//!    the entry of that key in its namespace; every distinct blob one for the
//!    blob; refs to absent keys and blobs are ignored).
//! 2. A count below the stored one is lowered only if
//!    - the record's stamp is the same in all three collects;
//!    - no undecodable metadata was seen in any collect in the record's
//!      namespace (for a blob: anywhere), as its references are unknown;
//!    - no *unstable* entry was ever seen referencing the record, where an
//!      entry is stable when all three collects saw it, decodable, with the
//!      same identity (its metadata less `referrers` and `accessedAt`, which
//!      count changes and reads rewrite; any `put` changes its `writeId`);
//!
//!    and the fix is `Expect(record, stamp of the fix collect)` plus the
//!    record with the new count, everything else as the fix collect read it.
//! 3. A count below what both the fix and the last collect give is raised,
//!    to the lesser of the two, under `Expect(record, stamp of the last
//!    collect)`, if the fix collect read the same stored count as the last.
//!    A count too low lets a run delete what a live entry references, so no
//!    more is asked: it is raised however busy the store (a record touched
//!    by reads, its referrers rewritten). The two conditions rule out the
//!    false raises writers made likely, which leak until the next rebuild:
//!    a reference moved, within one collect, from an entry it had listed to
//!    one it listed after was counted twice (a tester saw it on IndexedDB,
//!    among writers), and the other collect counts it once; a reference
//!    dropped (or its referrer deleted) after the last collect listed the
//!    referrer, with the count lowered before that collect read the record,
//!    was counted by both (a tester saw it beside a run, on a store without
//!    transactions), and the stored count fell between the two reads. What
//!    is left needs writes in both collects' windows that undo each other.
//!
//! Fixes go in batches; a batch that conflicts is retried item by item, and an
//! item that conflicts again is left for the next rebuild.
//!
//! # Why lowering is safe
//!
//! Batches are taken to apply at one instant, or a prefix of them when cut
//! short (as `FaultyStore` models them). Write `t` for the instant the fix
//! collect read record `X`, `T` for the instant the fix applies, `stored` for
//! the count in the record and `true` for the number of entries referencing
//! `X`. Writers never lower `stored - true`: an increment is written with or
//! before the commit record that adds the reference, a decrement with or after
//! the one that removes it, and every count write is a read-modify-write under
//! `Expect`. The fix applies only if `X`'s bytes at `T` are its bytes at `t`,
//! so `stored(T) = stored(t)` and therefore `true(T) <= true(t)`, however `X`
//! changed in between (even if it changed and changed back).
//!
//! It remains to show that the computed count `C` is at least `true(t)`. An
//! entry referencing `X` at `t` is counted unless the last collect read a
//! version that does not reference it. If the entry is stable, its references
//! did not change between its first and last reads, which enclose `t` (the
//! fix collect lies between the two, and within a collect `Meta` is listed
//! before `BlobMeta`), so it is counted. If it is unstable and a version it
//! was seen in references `X`, `X` is not lowered. What is left is an entry
//! whose version at `t` was never seen, a version that added the reference at
//! some instant `a`. If `a` came before the first collect read `X`, then one of
//! the first two collects read the entry after `a` and before `t` and saw it.
//! So `a` lies between the first collect's read of `X` and `t`, and `X` was
//! written at `a` (an increment) although its stamp was the same at both
//! reads: a write was undone byte for byte by a later one (ABA).
//!
//! # ABA, and the revision number that rules it out
//!
//! Without more, that ABA is possible: a blob record holds nothing an
//! increment changes but its count, so an increment and a decrement would give
//! back the same bytes, and an entry's increment with a clock that does not
//! move (a frozen or injected clock, clocks skewed between writers) changes
//! nothing but the count either. So every write of a count record also raises
//! its revision number (`EntryMeta::rev`, `BlobRecord::rev`: puts, count
//! changes, touches, putBlob refreshes and this module's fixes), and equal
//! stamps do mean "not written". The tests
//! `four_writes_with_a_frozen_clock_cannot_hide_a_reference` and
//! `five_writes_to_blob_references_cannot_hide_a_reference` in
//! `tests/rebuild.rs` build the interleavings that defeated the protocol
//! before revisions existed. The three collects, the epoch and the
//! unstable-entry rule stay as a second line of defence (records written by a
//! writer that does not raise `rev`).
//!
//! Backends whose batches become visible to readers one write at a time (not
//! just cut short) break the writers' counts as well as this argument.

use crate::vecmap::{VecMap, VecSet};

use serde::Serialize;

use crate::codec::{self, BlobRecord};
use crate::model::{EntryId, EntryMeta};
use crate::refcount::distinct;
use crate::store::{id_key, stamp, Op, Record, Store, StoreError, Table};

/// The `State` record holding the epoch of the latest rebuild.
pub const EPOCH_KEY: &str = "rebuild-epoch";

/// How often taking the epoch is retried when another rebuild takes it first.
const EPOCH_ATTEMPTS: usize = 16;

/// What a rebuild checked and changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildReport {
    /// Entries whose `referrers` were recomputed (decodable in the last collect).
    pub entries_checked: u64,
    /// Blob records whose `refs` were recomputed.
    pub blobs_checked: u64,
    /// Entry records rewritten with a corrected count.
    pub entries_fixed: u64,
    /// Blob records rewritten with a corrected count.
    pub blobs_fixed: u64,
    /// Fixes (entries and blobs) that raised a count that was too low.
    pub raised: u64,
    /// Fixes that lowered a count that was too high (a leak).
    pub lowered: u64,
    /// Wrong counts left as they are because the record, or an entry seen
    /// referencing it, changed while the rebuild read the store, or because
    /// the record changed before the fix applied (or a later rebuild took
    /// over). Running the rebuild again when the store is quieter fixes them.
    pub skipped_changed: u64,
    /// Counts too high that were not lowered because undecodable metadata
    /// (in the namespace; for blobs, anywhere) may reference the record.
    pub skipped_corrupt: u64,
    /// Entries whose metadata could not be decoded (last collect): neither
    /// their count nor their references are known.
    pub corrupt: Vec<EntryId>,
    /// Blob records that could not be decoded: their counts are not rewritten.
    pub corrupt_blobs: Vec<String>,
    /// A rebuild started after this one: the fixes not yet applied were
    /// dropped (and counted in `skipped_changed`).
    pub superseded: bool,
    /// Fixes that failed for another reason than a concurrent change.
    pub errors: Vec<FixError>,
}

/// Which kind of record a fix rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RecordKind {
    /// An entry's metadata (its `referrers` count).
    Entry,
    /// A blob's record (its `refs` count).
    Blob,
}

/// A fix that failed; the rebuild went on. A batch cut short may have
/// applied some of its fixes before failing: a fix is idempotent, so running
/// the rebuild again settles them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FixError {
    /// Whether the fix was to an entry or a blob record.
    pub kind: RecordKind,
    /// The entry's namespace; `None` for blobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The entry's key or the blob's id.
    pub key: String,
    /// What went wrong, for a person to read.
    pub message: String,
}

/// Recomputes every entry's `referrers` and every blob record's `refs` from
/// the entries and rewrites the records that differ, safely while writers
/// run (see the module documentation for the protocol).
///
/// `page_size` records are listed per call and `batch_size` fixes applied per
/// batch. Listing errors end the rebuild; errors applying fixes are collected
/// in the report.
pub async fn rebuild<S: Store>(
    store: &S,
    page_size: usize,
    batch_size: usize,
) -> Result<RebuildReport, StoreError> {
    let page = page_size.max(1);
    let epoch = take_epoch(store).await?;
    let first = Collect::read(store, page).await?;
    let fix = Collect::read(store, page).await?;
    let last = Collect::read(store, page).await?;
    let mut report = RebuildReport::default();
    let fixes = plan(&first, &fix, &last, &mut report);
    apply(store, &epoch, fixes, batch_size.max(1), &mut report).await;
    Ok(report)
}

/// Raises the rebuild epoch and returns the precondition that it is still ours.
async fn take_epoch<S: Store>(store: &S) -> Result<Op, StoreError> {
    let key = id_key(EPOCH_KEY);
    for _ in 0..EPOCH_ATTEMPTS {
        let old = store
            .get(Table::State, std::slice::from_ref(&key))
            .await?
            .pop()
            .flatten();
        // An unreadable epoch is replaced (its stamp is still expected).
        let epoch: u64 = old
            .as_deref()
            .and_then(|b| codec::decode_number(b).ok())
            .unwrap_or(0);
        let bytes = codec::encode_number(epoch.wrapping_add(1));
        let ops = vec![
            Op::Expect(Table::State, key.clone(), old.as_deref().map(stamp)),
            Op::Put(Table::State, key.clone(), bytes.clone()),
        ];
        match store.apply(ops).await {
            Ok(()) => return Ok(Op::Expect(Table::State, key, Some(stamp(&bytes)))),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict(
        "the rebuild epoch: other rebuilds kept starting".into(),
    ))
}

/// A record as one listing read it.
enum Seen<T> {
    Ok { stamp: u64, record: T },
    Corrupt { stamp: u64 },
}

impl<T> Seen<T> {
    fn stamp(&self) -> u64 {
        match self {
            Seen::Ok { stamp, .. } | Seen::Corrupt { stamp } => *stamp,
        }
    }

    fn record(&self) -> Option<&T> {
        match self {
            Seen::Ok { record, .. } => Some(record),
            Seen::Corrupt { .. } => None,
        }
    }
}

/// One complete listing of `Meta`, then of `BlobMeta`.
struct Collect {
    entries: VecMap<EntryId, Seen<EntryMeta>>,
    /// The values entry records held in themselves, with the record's stamp:
    /// a fix rewrites the record it expects, value and all.
    inline: VecMap<EntryId, (u64, Vec<u8>)>,
    blobs: VecMap<String, Seen<BlobRecord>>,
}

impl Collect {
    async fn read<S: Store>(store: &S, page: usize) -> Result<Collect, StoreError> {
        let mut inline = VecMap::new();
        let entries = VecMap::from_iter(list_all(store, Table::Meta, page).await?.into_iter().map(
            |(id, bytes)| {
                let stamp = stamp(&bytes);
                let seen = match codec::decode_meta(&bytes) {
                    Ok(record) => Seen::Ok { stamp, record },
                    Err(_) => Seen::Corrupt { stamp },
                };
                if let Ok(Some(value)) = codec::inline_value(&bytes) {
                    inline.insert(id.clone(), (stamp, value));
                }
                (id, seen)
            },
        ));
        let blobs = VecMap::from_iter(
            list_all(store, Table::BlobMeta, page)
                .await?
                .into_iter()
                .map(|(id, bytes)| {
                    let stamp = stamp(&bytes);
                    let seen = match codec::decode_blob(&bytes) {
                        Ok(record) => Seen::Ok { stamp, record },
                        Err(_) => Seen::Corrupt { stamp },
                    };
                    (id.key, seen)
                }),
        );
        Ok(Collect {
            entries,
            inline,
            blobs,
        })
    }
}

/// Every record of `table`, page by page. A record listed twice (some
/// backends repeat one) is kept once.
async fn list_all<S: Store>(
    store: &S,
    table: Table,
    page: usize,
) -> Result<Vec<Record>, StoreError> {
    let mut out: Vec<Record> = Vec::new();
    loop {
        let after = out.last().map(|(k, _)| k.clone());
        let got = store.list(table, after.as_ref(), page).await?;
        let n = got.len();
        for (k, v) in got {
            if out.last().is_some_and(|(last, _)| *last >= k) {
                continue;
            }
            out.push((k, v));
        }
        if n < page {
            return Ok(out);
        }
    }
}

/// An entry's metadata less what count changes and reads rewrite: equal
/// identities at two reads mean the same write, so the same references.
fn identity(meta: &EntryMeta) -> EntryMeta {
    EntryMeta {
        referrers: 0,
        accessed_at: 0,
        ..meta.clone()
    }
}

/// One record to rewrite.
struct Fix {
    kind: RecordKind,
    table: Table,
    key: EntryId,
    expect: u64,
    bytes: Vec<u8>,
    raise: bool,
}

impl Fix {
    fn ops(&self) -> [Op; 2] {
        [
            Op::Expect(self.table, self.key.clone(), Some(self.expect)),
            Op::Put(self.table, self.key.clone(), self.bytes.clone()),
        ]
    }

    fn error(&self, message: String) -> FixError {
        FixError {
            kind: self.kind,
            namespace: (self.kind == RecordKind::Entry).then(|| self.key.namespace.clone()),
            key: self.key.key.clone(),
            message,
        }
    }
}

/// What the collects say about who may reference what.
#[derive(Default)]
struct Doubts {
    /// Namespaces with undecodable metadata in some collect.
    corrupt_namespaces: VecSet<String>,
    /// Entries that an unstable entry was seen referencing.
    entries: VecSet<EntryId>,
    /// Blobs that an unstable entry was seen referencing.
    blobs: VecSet<String>,
}

fn doubts(collects: [&Collect; 3]) -> Doubts {
    let mut d = Doubts::default();
    let keys: VecSet<&EntryId> = VecSet::from_iter(collects.iter().flat_map(|c| c.entries.keys()));
    for id in keys {
        let seen: Vec<Option<&Seen<EntryMeta>>> =
            collects.iter().map(|c| c.entries.get(id)).collect();
        if seen.iter().flatten().any(|s| s.record().is_none()) {
            d.corrupt_namespaces.insert(id.namespace.clone());
            continue;
        }
        let versions: Vec<&EntryMeta> = seen.iter().flatten().filter_map(|s| s.record()).collect();
        let stable = versions.len() == collects.len()
            && versions
                .windows(2)
                .all(|w| identity(w[0]) == identity(w[1]));
        if stable {
            continue;
        }
        for meta in versions {
            d.entries.extend(
                meta.refs
                    .iter()
                    .map(|r| EntryId::new(id.namespace.clone(), r.clone())),
            );
            d.blobs.extend(meta.blobs.iter().cloned());
        }
    }
    d
}

/// Why a count that is too high may not be lowered, if it may not.
enum Hold {
    Changed,
    Corrupt,
}

/// The fixes to make, from the three collects (see the module documentation).
fn plan(first: &Collect, fix: &Collect, last: &Collect, report: &mut RebuildReport) -> Vec<Fix> {
    // The counts, from the last collect, and from the fix collect: a raise
    // goes no higher than the lesser (see the module documentation).
    for (id, seen) in &last.entries {
        if seen.record().is_none() {
            report.corrupt.push(id.clone());
        }
    }
    let (entry_counts, blob_counts) = tally(last);
    let (fix_entries, fix_blobs) = tally(fix);
    let doubts = doubts([first, fix, last]);
    let any_corrupt = !doubts.corrupt_namespaces.is_empty();
    let mut fixes = Vec::new();

    for (id, seen) in &last.entries {
        let Seen::Ok { stamp, record } = seen else {
            continue;
        };
        report.entries_checked += 1;
        let count = entry_counts.get(id).copied().unwrap_or(0);
        let floor = count.min(fix_entries.get(id).copied().unwrap_or(0));
        let hold = if doubts.corrupt_namespaces.contains(&id.namespace) {
            Some(Hold::Corrupt)
        } else if doubts.entries.contains(id) {
            Some(Hold::Changed)
        } else {
            None
        };
        let chosen = choose(
            (count, floor),
            (*stamp, record),
            [first.entries.get(id), fix.entries.get(id)],
            |m| m.referrers,
            hold,
            report,
        );
        if let Some((expect, base, raise, count)) = chosen {
            let meta = EntryMeta {
                referrers: count,
                rev: base.rev.wrapping_add(1),
                ..base.clone()
            };
            // The value the expected record holds in itself, if any.
            let inline = [first, fix, last]
                .iter()
                .find_map(|c| c.inline.get(id).filter(|(s, _)| *s == expect))
                .map(|(_, v)| v.as_slice());
            fixes.push(Fix {
                kind: RecordKind::Entry,
                table: Table::Meta,
                key: id.clone(),
                expect,
                bytes: codec::encode_entry(&meta, inline),
                raise,
            });
        }
    }

    for (id, seen) in &last.blobs {
        let Seen::Ok { stamp, record } = seen else {
            report.corrupt_blobs.push(id.clone());
            continue;
        };
        report.blobs_checked += 1;
        let count = blob_counts.get(id).copied().unwrap_or(0);
        let floor = count.min(fix_blobs.get(id).copied().unwrap_or(0));
        let hold = if any_corrupt {
            Some(Hold::Corrupt)
        } else if doubts.blobs.contains(id) {
            Some(Hold::Changed)
        } else {
            None
        };
        let chosen = choose(
            (count, floor),
            (*stamp, record),
            [first.blobs.get(id), fix.blobs.get(id)],
            |b| b.refs,
            hold,
            report,
        );
        if let Some((expect, base, raise, count)) = chosen {
            let rec = BlobRecord {
                refs: count,
                rev: base.rev.wrapping_add(1),
                ..base.clone()
            };
            fixes.push(Fix {
                kind: RecordKind::Blob,
                table: Table::BlobMeta,
                key: id_key(id),
                expect,
                bytes: codec::encode_blob(&rec),
                raise,
            });
        }
    }
    fixes
}

/// Whether and how to fix one record whose count the last collect gives as
/// `count` (and the lesser of the fix and last collects' as `floor`), and which
/// the last collect read as `last`: the stamp to expect, the record to
/// rewrite, whether the fix raises the count, and the count to write.
fn choose<'a, T>(
    (count, floor): (u64, u64),
    last: (u64, &'a T),
    earlier: [Option<&'a Seen<T>>; 2],
    stored: impl Fn(&T) -> u64,
    hold: Option<Hold>,
    report: &mut RebuildReport,
) -> Option<(u64, &'a T, bool, u64)> {
    let (last_stamp, last_record) = last;
    let have = stored(last_record);
    if floor > have {
        // Raised only where the fix collect read the same stored count: one
        // that fell since was a reference dropped after the last collect
        // listed its referrer (see the module documentation).
        if let [_, Some(Seen::Ok { record, .. })] = earlier {
            if stored(record) == have {
                return Some((last_stamp, last_record, true, floor));
            }
        }
        report.skipped_changed += 1;
        return None;
    }
    if count >= have {
        return None;
    }
    match hold {
        Some(Hold::Corrupt) => report.skipped_corrupt += 1,
        Some(Hold::Changed) => report.skipped_changed += 1,
        None => {
            let [first, fix] = earlier;
            match (first, fix) {
                (Some(first), Some(Seen::Ok { stamp, record }))
                    if first.stamp() == *stamp && *stamp == last_stamp =>
                {
                    return Some((*stamp, record, false, count));
                }
                _ => report.skipped_changed += 1,
            }
        }
    }
    None
}

/// The counts one collect gives: every distinct ref of a decodable entry,
/// itself included, counts one for the entry of that key in its namespace;
/// every distinct blob one for the blob. Every reference once per referrer,
/// then counted in one sort: the targets come in no order (blob ids are
/// hashes), and inserting each into a sorted vector would take quadratic
/// time over a large store.
fn tally(c: &Collect) -> (VecMap<EntryId, u64>, VecMap<String, u64>) {
    let mut entry_refs: Vec<EntryId> = Vec::new();
    let mut blob_refs: Vec<String> = Vec::new();
    for (id, seen) in &c.entries {
        let Some(meta) = seen.record() else { continue };
        let namespace = &id.namespace;
        entry_refs.extend(
            distinct(&meta.refs)
                .into_iter()
                .map(|r| EntryId::new(namespace.clone(), r)),
        );
        blob_refs.extend(distinct(&meta.blobs));
    }
    (counted(entry_refs), counted(blob_refs))
}

/// Applies `fixes` in batches, each under the epoch precondition.
async fn apply<S: Store>(
    store: &S,
    epoch: &Op,
    fixes: Vec<Fix>,
    batch_size: usize,
    report: &mut RebuildReport,
) {
    let mut batches = fixes.chunks(batch_size);
    while let Some(batch) = batches.next() {
        let mut ops = vec![epoch.clone()];
        ops.extend(batch.iter().flat_map(Fix::ops));
        match store.apply(ops).await {
            Ok(()) => batch.iter().for_each(|f| applied(report, f)),
            Err(StoreError::Conflict(_)) => {
                if superseded(store, epoch).await {
                    report.superseded = true;
                    let left = batch.len() + batches.by_ref().map(<[Fix]>::len).sum::<usize>();
                    report.skipped_changed += left as u64;
                    return;
                }
                if batch.len() == 1 {
                    report.skipped_changed += 1;
                    continue;
                }
                for f in batch {
                    let mut ops = vec![epoch.clone()];
                    ops.extend(f.ops());
                    match store.apply(ops).await {
                        Ok(()) => applied(report, f),
                        Err(StoreError::Conflict(_)) => report.skipped_changed += 1,
                        Err(e) => report.errors.push(f.error(e.to_string())),
                    }
                }
            }
            Err(e) => {
                for f in batch {
                    report.errors.push(f.error(e.to_string()));
                }
            }
        }
    }
}

fn applied(report: &mut RebuildReport, f: &Fix) {
    match f.kind {
        RecordKind::Entry => report.entries_fixed += 1,
        RecordKind::Blob => report.blobs_fixed += 1,
    }
    if f.raise {
        report.raised += 1;
    } else {
        report.lowered += 1;
    }
}

/// Whether a later rebuild took the epoch. Unknown (the read failed) is no.
async fn superseded<S: Store>(store: &S, epoch: &Op) -> bool {
    let Op::Expect(table, key, want) = epoch else {
        return false;
    };
    match store.get(*table, std::slice::from_ref(key)).await {
        Ok(mut got) => got.pop().flatten().as_deref().map(stamp) != *want,
        Err(_) => false,
    }
}

/// How many times each key occurs in `keys`, in key order.
fn counted<K: Ord>(mut keys: Vec<K>) -> VecMap<K, u64> {
    crate::sort::sort(&mut keys);
    let mut counts: Vec<(K, u64)> = Vec::new();
    for k in keys {
        match counts.last_mut() {
            Some((last, n)) if *last == k => *n += 1,
            _ => counts.push((k, 1)),
        }
    }
    counts.into_iter().collect()
}
