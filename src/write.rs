//! The write protocol, in one place: every write the store sees (`put`,
//! `putMany`, `delete`, `putBlob`, a read's deferred touch) is a pure step
//! over the records it has read, run by [`Store::transact`]: one transaction
//! where the store has them (memory, IndexedDB), an optimistic batch retried
//! on conflict elsewhere. Steps order their ops so that a batch cut short on a
//! store that is not atomic over-counts and never under-counts: a temp first
//! (what the write staged), the new value, count increments, the commit record
//! (the entry's metadata), count decrements, what the old write held, and the
//! temp last. The executor's deletions (`exec`) follow the same order.

use crate::codec::{self, BlobRecord, Staged, TempRecord};
use crate::error::Error;
use crate::model::{EntryId, EntryMeta, Millis};
use crate::refcount::{distinct, Counts};
use crate::store::{id_key, value_key, Access, Op, Read, Reads, Step, Store, Table};

/// The tables a write of entries touches: its records, values and the blob
/// records whose counts it changes; temps where batches are not atomic; the
/// namespace registry when it registers one. IndexedDB charges for every
/// table in a transaction's scope (a read over two tables is about a third
/// slower than over one), so none is added that the write cannot touch.
pub fn entry_tables(atomic: bool, register: bool) -> Vec<Table> {
    let mut tables = vec![Table::Meta, Table::Values, Table::BlobMeta];
    if !atomic {
        tables.push(Table::Temps);
    }
    if register {
        tables.push(Table::Namespaces);
    }
    tables
}

/// One entry to write, its value already encoded and its options checked.
#[derive(Clone, Debug)]
pub struct EntryWrite {
    pub id: EntryId,
    /// The encoded value (`codec::StoredValue::encode`).
    pub value: Vec<u8>,
    /// Bytes of the value as counted against `maxBytes`.
    pub size: u64,
    pub expires_at: Option<Millis>,
    pub group: Option<String>,
    pub pinned: bool,
    pub locked: bool,
    pub dependent: bool,
    /// Distinct keys of entries in the same namespace.
    pub refs: Vec<String>,
    /// Distinct blob ids.
    pub blobs: Vec<String>,
    /// Unique to this write.
    pub write_id: u64,
    /// The malformed record this write replaces, if it is still there.
    pub over: Option<Unreadable>,
}

/// A malformed entry record (a write torn by a crash) that a put replaces:
/// what it referenced is unknown, so those counts stay as they were (too
/// high: nothing is lost, and `rebuild` lowers them); its own count is what
/// its namespace's readable records say.
#[derive(Clone, Debug)]
pub struct Unreadable {
    /// The record's bytes, as read: the put replaces only these.
    pub bytes: Vec<u8>,
    /// How many readable entry records of its namespace reference it,
    /// counted before the put: never too low, since adding a reference to
    /// it reads it (and fails), but a referrer deleted meanwhile leaves it
    /// too high (a delete lowers only the counts it can read).
    pub referrers: u64,
    /// Its value records (each write's), which go with it.
    pub values: Vec<EntryId>,
}

/// The key of the temp that stages `staged`.
pub fn temp_id(staged: &Staged) -> String {
    match staged {
        // Named by every write it stages: a put's temp (new and old write) and
        // a later delete's (the new write alone) never overwrite each other.
        Staged::Entry {
            namespace,
            key,
            writes,
        } => {
            let writes: Vec<String> = writes.iter().map(|w| format!("{w:016x}")).collect();
            format!(
                "e{}:{namespace}{key}\u{1}{}",
                namespace.len(),
                writes.join(",")
            )
        }
        Staged::Blob { id } => format!("b:{id}"),
    }
}

/// On a store that is not atomic, the temp recording `staged`: its put (to go
/// first) and its delete (to go last).
pub fn stage(atomic: bool, staged: Staged, size: u64, created_at: Millis) -> Option<(Op, Op)> {
    if atomic {
        return None;
    }
    let key = id_key(&temp_id(&staged));
    let record = TempRecord {
        created_at,
        size,
        staged,
    };
    Some((
        Op::Put(Table::Temps, key.clone(), codec::encode_temp(&record)),
        Op::Delete(Table::Temps, key),
    ))
}

/// The entry's metadata as read: `None` if not read yet, `Some(None)` if absent.
pub fn read_meta(reads: &Reads, id: &EntryId) -> Result<Option<Option<EntryMeta>>, Error> {
    match reads.get(Table::Meta, id) {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(bytes)) => decode_entry_meta(id, bytes).map(|m| Some(Some(m))),
    }
}

/// The metadata in `id`'s record, or the error that says it is corrupt.
pub fn decode_entry_meta(id: &EntryId, bytes: &[u8]) -> Result<EntryMeta, Error> {
    codec::decode_meta(bytes).map_err(|cause| Error::corrupt_entry(id, cause))
}

/// Whether an entry record holds its value itself (see `codec::encode_entry`).
pub fn has_inline_value(record: &[u8]) -> bool {
    // A fixed array of three: the record's first byte says it.
    record.first() == Some(&0x93)
}

/// `refs` as entry ids of `id`'s namespace, without `id` itself (a reference
/// to itself changes its own count, in its own record).
fn others(id: &EntryId, refs: &[String]) -> Vec<EntryId> {
    refs.iter()
        .filter(|r| **r != id.key)
        .map(|r| EntryId::new(id.namespace.clone(), r.clone()))
        .collect()
}

fn minus(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|x| !b.contains(x)).cloned().collect()
}

/// The step of one put: read the entry, then the counts its references
/// change, then write. `register` adds the namespace's record.
///
/// A store may run it on a guess of the entry's record and, when the guess
/// was wrong, follow those writes with the ones on the actual record, in the
/// same transaction (`Store::transact_with_guess`). That is safe: on a guess
/// it writes only when the references it guessed need no count changes, so it
/// touches only the entry's record (overwritten by the actual writes), the
/// new write's value record (the same key and bytes), the value record of the
/// guessed old write (not the current write of the actual record, so no live
/// value), and the namespace record (the same).
pub fn put_step(
    reads: &Reads,
    w: &EntryWrite,
    now: Millis,
    atomic: bool,
    register: bool,
) -> Result<Step<Vec<u8>>, Error> {
    let over = w
        .over
        .as_ref()
        .filter(|u| reads.get(Table::Meta, &w.id) == Some(Some(&u.bytes[..])));
    let old = match over {
        // Counted as an entry with no write, no references and no blobs.
        Some(u) => Some(EntryMeta {
            created_at: now,
            updated_at: now,
            accessed_at: now,
            expires_at: None,
            size: 0,
            group: None,
            pinned: false,
            locked: false,
            dependent: false,
            refs: Vec::new(),
            blobs: Vec::new(),
            write_id: w.write_id,
            referrers: u.referrers,
            rev: 0,
        }),
        None => match read_meta(reads, &w.id)? {
            Some(old) => old,
            None => return Ok(Step::Read(vec![Read::Key(Table::Meta, w.id.clone())])),
        },
    };
    let old_refs = old.as_ref().map(|m| distinct(&m.refs)).unwrap_or_default();
    let old_blobs = old.as_ref().map(|m| distinct(&m.blobs)).unwrap_or_default();
    let (added_refs, removed_refs) = (minus(&w.refs, &old_refs), minus(&old_refs, &w.refs));
    let (added_blobs, removed_blobs) = (minus(&w.blobs, &old_blobs), minus(&old_blobs, &w.blobs));

    let mut referrers = old.as_ref().map_or(0, |m| m.referrers);
    if added_refs.contains(&w.id.key) {
        referrers += 1;
    }
    if removed_refs.contains(&w.id.key) {
        referrers = referrers.saturating_sub(1);
    }
    let (added_ids, removed_ids) = (others(&w.id, &added_refs), others(&w.id, &removed_refs));
    let ref_ids: Vec<EntryId> = added_ids.iter().chain(&removed_ids).cloned().collect();
    let blob_ids: Vec<String> = added_blobs.iter().chain(&removed_blobs).cloned().collect();
    let mut counts = match Counts::from_reads(reads, &ref_ids, &blob_ids)? {
        Ok(c) => c,
        Err(missing) => return Ok(Step::Read(missing)),
    };
    for rid in &added_ids {
        let Some(target) = counts.entry(rid) else {
            return Err(Error::MissingEntry(rid.clone()));
        };
        // What `get` would not return cannot be referenced (SPEC §1).
        if !target.pinned && target.expires_at.is_some_and(|t| t <= now) {
            return Err(Error::ExpiredEntry(rid.clone()));
        }
        counts.add_entry(rid, 1);
    }
    for rid in &removed_ids {
        counts.add_entry(rid, -1);
    }
    for b in &added_blobs {
        if counts.blob(b).is_none() {
            return Err(Error::MissingBlob(b.clone()));
        }
        counts.add_blob(b, 1);
    }
    for b in &removed_blobs {
        counts.add_blob(b, -1);
    }

    let meta = EntryMeta {
        created_at: old.as_ref().map_or(now, |m| m.created_at),
        updated_at: now,
        accessed_at: now,
        expires_at: w.expires_at,
        size: w.size,
        group: w.group.clone(),
        pinned: w.pinned,
        locked: w.locked,
        dependent: w.dependent,
        refs: w.refs.clone(),
        blobs: w.blobs.clone(),
        write_id: w.write_id,
        referrers,
        rev: old.as_ref().map_or(0, |m| m.rev.wrapping_add(1)),
    };
    let old_write = old.as_ref().filter(|_| over.is_none()).map(|m| m.write_id);
    // The old write's value has its own record unless its entry record held it.
    let old_value_record = match reads.get(Table::Meta, &w.id).flatten() {
        Some(bytes) => !has_inline_value(bytes),
        None => false,
    };
    let inline = atomic && w.value.len() <= codec::INLINE_MAX;
    let staged = Staged::Entry {
        namespace: w.id.namespace.clone(),
        key: w.id.key.clone(),
        writes: std::iter::once(w.write_id).chain(old_write).collect(),
    };
    let temp = stage(atomic, staged, w.size, now);
    let mut ops = Vec::with_capacity(8);
    if let Some((put, _)) = &temp {
        ops.push(put.clone());
    }
    if !inline {
        ops.push(Op::Put(
            Table::Values,
            value_key(&w.id, w.write_id),
            w.value.clone(),
        ));
    }
    ops.extend(counts.increments(now));
    let record = codec::encode_entry(&meta, inline.then_some(&w.value[..]));
    ops.push(Op::Put(Table::Meta, w.id.clone(), record.clone()));
    ops.extend(counts.decrements());
    if let (Some(old_write), true) = (old_write, old_value_record) {
        ops.push(Op::Delete(Table::Values, value_key(&w.id, old_write)));
    }
    let mine = value_key(&w.id, w.write_id);
    for v in over.iter().flat_map(|u| &u.values).filter(|v| **v != mine) {
        ops.push(Op::Delete(Table::Values, v.clone()));
    }
    if register {
        ops.push(Op::Put(
            Table::Namespaces,
            id_key(&w.id.namespace),
            codec::encode_namespace(now),
        ));
    }
    if let Some((_, delete)) = temp {
        ops.push(delete);
    }
    Ok(Step::Write(ops, record))
}

/// The step of several puts in one batch, in order: each sees the writes of
/// those before it (so one may reference an entry put earlier in the batch).
/// `register` lists the namespaces whose record the batch adds.
pub fn put_many_step(
    reads: &Reads,
    writes: &[EntryWrite],
    now: Millis,
    atomic: bool,
    register: &[String],
) -> Result<Step<()>, Error> {
    let mut view = reads.clone();
    let mut ops = Vec::with_capacity(writes.len() * 4);
    let mut missing: Vec<Read> = Vec::new();
    let mut registered: Vec<&String> = Vec::new();
    for w in writes {
        let first_of_ns =
            register.contains(&w.id.namespace) && !registered.contains(&&w.id.namespace);
        match put_step(&view, w, now, atomic, first_of_ns) {
            Ok(Step::Write(item, _)) => {
                if first_of_ns {
                    registered.push(&w.id.namespace);
                }
                view.overlay(&item);
                ops.extend(item);
            }
            Ok(Step::Read(more)) => missing.extend(more),
            Ok(Step::Done(_)) => {}
            // An error may come from not seeing an earlier write yet.
            Err(e) if missing.is_empty() => return Err(e),
            Err(_) => {}
        }
    }
    if !missing.is_empty() {
        let mut wanted = reads.missing(missing);
        wanted.dedup();
        return Ok(Step::Read(wanted));
    }
    // Where batches are not atomic, every temp and value written goes first
    // (temps before values) and every one deleted last (values before temps):
    // runs a backend may make at once (see `Store::apply`). Staging sooner and
    // cleaning up later is safe; what lies between (counts and records, as
    // each step saw them) keeps its order.
    if !atomic {
        let class = |op: &Op| match op {
            Op::Put(Table::Temps, ..) => 0,
            Op::Put(Table::Values, ..) => 1,
            Op::Delete(Table::Values, _) => 3,
            Op::Delete(Table::Temps, _) => 4,
            _ => 2,
        };
        crate::sort::sort_by(&mut ops, |a, b| class(a).cmp(&class(b)));
    }
    Ok(Step::Write(ops, ()))
}

/// The step of a delete: `true` if the entry existed. Refused while other
/// entries reference it. Its blobs go in the next run.
pub fn delete_step(reads: &Reads, id: &EntryId, atomic: bool) -> Result<Step<bool>, Error> {
    let Some(old) = read_meta(reads, id)? else {
        return Ok(Step::Read(vec![Read::Key(Table::Meta, id.clone())]));
    };
    let Some(old) = old else {
        return Ok(Step::Done(false));
    };
    let refs = distinct(&old.refs);
    let self_ref = refs.contains(&id.key) as u64;
    if old.referrers > self_ref {
        return Err(Error::Referenced {
            id: id.clone(),
            referrers: old.referrers - self_ref,
        });
    }
    let ref_ids = others(id, &refs);
    let blobs = distinct(&old.blobs);
    // What it references and cannot be read keeps its count (too high).
    let mut counts = match Counts::to_lower(reads, &ref_ids, &blobs)? {
        Ok(c) => c,
        Err(missing) => return Ok(Step::Read(missing)),
    };
    for r in &ref_ids {
        counts.add_entry(r, -1);
    }
    for b in &blobs {
        counts.add_blob(b, -1);
    }
    let staged = Staged::Entry {
        namespace: id.namespace.clone(),
        key: id.key.clone(),
        writes: vec![old.write_id],
    };
    let temp = stage(atomic, staged, old.size, old.updated_at);
    let mut ops = Vec::new();
    if let Some((put, _)) = &temp {
        ops.push(put.clone());
    }
    ops.push(Op::Delete(Table::Meta, id.clone()));
    ops.extend(counts.decrements());
    let inline = reads
        .get(Table::Meta, id)
        .flatten()
        .is_some_and(has_inline_value);
    if !inline {
        ops.push(Op::Delete(Table::Values, value_key(id, old.write_id)));
    }
    if let Some((_, delete)) = temp {
        ops.push(delete);
    }
    Ok(Step::Write(ops, true))
}

/// The step of `putBlob`: stores the bytes once, and restarts the grace
/// period of bytes stored again, so that the caller can reference them
/// safely for `orphanGraceMs` (referenced now or not: dropping today's
/// referrer must not let a run take them from under the caller).
///
/// On a guess of the blob absent, a store may write its bytes before it
/// learns the blob was there, and keep that write beside the refreshed
/// record: the bytes are the same, since a blob's id is their SHA-256.
/// `rewrite` writes the bytes beside a record that is there too (a blob
/// whose bytes `verify` found missing, or removed as corrupt): its record,
/// and the reference count in it, stay.
pub fn put_blob_step(
    reads: &Reads,
    id: &str,
    bytes: &[u8],
    now: Millis,
    atomic: bool,
    rewrite: bool,
) -> Result<Step<()>, Error> {
    let key = id_key(id);
    let counts = match Counts::from_reads(reads, &[], &[id.to_string()])? {
        Ok(c) => c,
        Err(missing) => return Ok(Step::Read(missing)),
    };
    let record = counts.blob(id);
    // Its bytes found gone (by `verify`): written again.
    let rewrite = rewrite || record.is_some_and(|r| r.lost);
    let rec = match record {
        Some(rec) if rec.created_at >= now && !rewrite => return Ok(Step::Done(())),
        // Refreshed: its reference count stays.
        Some(rec) => BlobRecord {
            created_at: now.max(rec.created_at),
            rev: rec.rev.wrapping_add(1),
            lost: false,
            ..rec.clone()
        },
        None => BlobRecord {
            size: bytes.len() as u64,
            created_at: now,
            ..BlobRecord::default()
        },
    };
    let mut ops = Vec::new();
    // The bytes, staged where batches are not atomic (a batch cut short
    // after them leaves a temp that a run cleans, not bytes no record claims).
    let temp = (record.is_none() || rewrite)
        .then(|| {
            stage(
                atomic,
                Staged::Blob { id: id.to_string() },
                bytes.len() as u64,
                now,
            )
        })
        .flatten();
    if let Some((put, _)) = &temp {
        ops.push(put.clone());
    }
    if record.is_none() || rewrite {
        ops.push(Op::Put(Table::Blobs, key.clone(), bytes.to_vec()));
    }
    ops.push(Op::Put(Table::BlobMeta, key, codec::encode_blob(&rec)));
    if let Some((_, delete)) = temp {
        ops.push(delete);
    }
    Ok(Step::Write(ops, ()))
}

/// The step that moves `accessedAt` forward for entries read earlier, in one
/// transaction: a read defers its touch so that it costs no write of its own. An
/// entry gone, rewritten later than the read, or unreadable is left alone.
pub fn touch_step(reads: &Reads, touches: &[(EntryId, Millis)]) -> Result<Step<usize>, Error> {
    let missing: Vec<Read> = touches
        .iter()
        .filter(|(id, _)| !reads.has(Table::Meta, id))
        .map(|(id, _)| Read::Key(Table::Meta, id.clone()))
        .collect();
    if !missing.is_empty() {
        return Ok(Step::Read(missing));
    }
    let mut ops = Vec::new();
    for (id, at) in touches {
        let Some(bytes) = reads.get(Table::Meta, id).flatten() else {
            continue;
        };
        let Ok(mut meta) = codec::decode_meta(bytes) else {
            continue;
        };
        if meta.accessed_at >= *at {
            continue;
        }
        meta.accessed_at = *at;
        meta.rev = meta.rev.wrapping_add(1);
        let Ok(record) = codec::reencode_meta(bytes, &meta) else {
            continue;
        };
        ops.push(Op::Put(Table::Meta, id.clone(), record));
    }
    let n = ops.len();
    Ok(if ops.is_empty() {
        Step::Done(0)
    } else {
        Step::Write(ops, n)
    })
}

/// Runs a write step against `store`, turning a store that stays busy into
/// [`Error::Busy`] for `what`.
pub async fn run<S: Store, T>(
    store: &S,
    tables: &[Table],
    what: impl FnOnce() -> String,
    step: impl FnMut(&Reads) -> Result<Step<T>, Error>,
) -> Result<T, Error> {
    match store.transact(Access::Write, tables, step).await {
        Err(Error::Store(crate::store::StoreError::Busy(_))) => Err(Error::Busy(what())),
        other => other,
    }
}
