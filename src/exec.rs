//! The executor: runs a plan against a store in batches, entries first, then
//! the blobs they freed, then temps, re-checking each item before it goes.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::codec::{self, Staged, TempRecord};
use crate::model::{EntryId, EntryMeta};
use crate::plan::{Action, ActionKind, Mode, Plan, Reason, Tally};
use crate::refcount::{distinct, Counts};
use crate::store::{id_key, stamp, value_key, Op, Store, StoreError, Table};
use crate::sweeper::{temp_id, Error};

/// How a run is cut into batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecConfig {
    /// Items per batch (one IndexedDB transaction each).
    pub batch_size: usize,
    /// Records per listing page.
    pub page_size: usize,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            batch_size: 250,
            page_size: 1000,
        }
    }
}

/// A failure on one item; the run went on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemError {
    pub kind: ActionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub key: String,
    pub message: String,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// False when the run stopped early (aborted or out of budget).
    pub done: bool,
    pub mode: Mode,
    pub deleted: BTreeMap<Reason, Tally>,
    /// Items planned for deletion that were kept because they were no longer garbage.
    pub kept: u64,
    pub scanned: u64,
    pub reachable: u64,
    pub errors: Vec<ItemError>,
    pub duration_ms: u64,
    pub corrupt: Vec<EntryId>,
    pub zombies: Vec<String>,
    /// This run went on from one stopped earlier; `deleted` counts both.
    pub resumed: bool,
    /// Where the run stopped, when it did not finish: the last item handled.
    #[serde(skip)]
    pub stopped_after: Option<Position>,
}

/// An item's place in execution order: entries by namespace and key, then
/// blobs, then temps, by id.
pub type Position = (ActionKind, String, String);

pub fn position(a: &Action) -> Position {
    (
        a.kind,
        a.namespace.clone().unwrap_or_default(),
        a.key.clone(),
    )
}

/// What a stopped run leaves in the store so that the next run resumes it.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    pub mode: Mode,
    pub started_at: crate::model::Millis,
    pub after: Position,
    pub deleted: BTreeMap<Reason, Tally>,
    pub kept: u64,
}

/// Where a run is, readable while it goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub running: bool,
    /// "entries", "blobs", "temps" or "idle".
    pub phase: &'static str,
    pub processed: u64,
    pub total: u64,
    pub deleted: u64,
}

/// What the driver says between batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The driver of a run: yields to the event loop, reports progress, and
/// decides whether to go on (abort signal, time budget).
#[allow(async_fn_in_trait)]
pub trait RunHost {
    async fn between_batches(&mut self, progress: &Progress) -> Flow;
}

/// A host that never yields and never stops: native tests and tools.
pub struct RunToEnd;

impl RunHost for RunToEnd {
    async fn between_batches(&mut self, _: &Progress) -> Flow {
        Flow::Continue
    }
}

/// The least batch size for entries that waited for their referrers.
const WAITING_BATCH: usize = 1024;

/// Runs `plan` against `store`. Errors on items are collected, not returned.
///
/// Every item is read again before it goes and deleted under `Op::Expect`
/// preconditions, so the plan may be stale: an entry rewritten since planning,
/// an entry still referenced by one that stays, a blob referenced or written
/// again, or a temp whose write completed, is kept.
pub async fn execute<S: Store, H: RunHost>(
    store: &S,
    plan: &Plan,
    cfg: ExecConfig,
    host: &mut H,
) -> RunReport {
    let batch_size = cfg.batch_size.max(1);
    let mut report = RunReport {
        done: true,
        mode: plan.summary.mode,
        scanned: plan.summary.scanned,
        reachable: plan.summary.reachable,
        corrupt: plan.summary.corrupt.clone(),
        zombies: plan.summary.zombies.clone(),
        ..RunReport::default()
    };
    let mut progress = Progress {
        running: true,
        phase: "entries",
        total: plan.actions.len() as u64,
        ..Progress::default()
    };
    let of_kind =
        |kind| -> Vec<&Action> { plan.actions.iter().filter(|a| a.kind == kind).collect() };
    let (entries, blobs, temps) = (
        of_kind(ActionKind::Entry),
        of_kind(ActionKind::Blob),
        of_kind(ActionKind::Temp),
    );

    // Entries whose referrers are garbage in a later batch wait, then go together.
    let mut waiting: Vec<&Action> = Vec::new();
    for batch in entries.chunks(batch_size) {
        if host.between_batches(&progress).await == Flow::Stop {
            report.done = false;
            return report;
        }
        waiting.extend(delete_entries(store, batch, &mut report).await);
        report.stopped_after = batch.last().map(|a| position(a));
        progress.processed += batch.len() as u64;
        progress.deleted = deleted_count(&report);
    }
    // Garbage cycles go only in one batch: these batches may be larger.
    let waiting_batch = batch_size.max(WAITING_BATCH);
    while !waiting.is_empty() {
        let before = waiting.len();
        let mut still = Vec::new();
        for batch in waiting.chunks(waiting_batch) {
            if host.between_batches(&progress).await == Flow::Stop {
                report.done = false;
                return report;
            }
            still.extend(delete_entries(store, batch, &mut report).await);
        }
        progress.deleted = deleted_count(&report);
        if still.len() == before {
            // Referenced by entries that stay.
            report.kept += still.len() as u64;
            break;
        }
        waiting = still;
    }

    // Then the blobs the entries freed, then temps: each item re-read, then deleted.
    for (phase, actions) in [("blobs", &blobs), ("temps", &temps)] {
        progress.phase = phase;
        for batch in actions.chunks(batch_size) {
            if host.between_batches(&progress).await == Flow::Stop {
                report.done = false;
                return report;
            }
            let items = match phase {
                "blobs" => blob_deletions(store, batch, &mut report).await,
                _ => temp_deletions(store, batch, &mut report).await,
            };
            apply_items(store, items, &mut report).await;
            report.stopped_after = batch.last().map(|a| position(a));
            progress.processed += batch.len() as u64;
            progress.deleted = deleted_count(&report);
        }
    }
    progress.phase = "idle";
    progress.running = false;
    host.between_batches(&progress).await;
    report.stopped_after = None;
    report
}

fn deleted_count(report: &RunReport) -> u64 {
    report.deleted.values().map(|t| t.count).sum()
}

fn count_deleted(report: &mut RunReport, a: &Action) {
    let t = report.deleted.entry(a.reason).or_default();
    t.count += 1;
    t.bytes = t.bytes.saturating_add(a.bytes);
}

fn item_error(a: &Action, message: String) -> ItemError {
    ItemError {
        kind: a.kind,
        namespace: a.namespace.clone(),
        key: a.key.clone(),
        message,
    }
}

/// Records `message` as the error of every action: the run goes on without them.
fn fail_all<'a>(
    report: &mut RunReport,
    actions: impl IntoIterator<Item = &'a Action>,
    message: &str,
) {
    for a in actions {
        report.errors.push(item_error(a, message.to_string()));
    }
}

fn entry_id(a: &Action) -> EntryId {
    EntryId::new(a.namespace.clone().unwrap_or_default(), a.key.clone())
}

/// An entry that is still what the plan saw.
struct Doomed<'a> {
    action: &'a Action,
    id: EntryId,
    stamp: u64,
    meta: EntryMeta,
}

/// Deletes what it can of a batch of entries. Returns the entries held back
/// because a referrer outside the batch still exists.
async fn delete_entries<'a, S: Store>(
    store: &S,
    batch: &[&'a Action],
    report: &mut RunReport,
) -> Vec<&'a Action> {
    let (doomed, mut held) = match read_doomed(store, batch, report).await {
        Ok(r) => r,
        Err(e) => {
            fail_all(
                report,
                batch.iter().copied(),
                &format!("re-check failed: {e}"),
            );
            return Vec::new();
        }
    };
    if doomed.is_empty() {
        return held;
    }
    match apply_entry_deletions(store, &doomed).await {
        Ok(()) => doomed.iter().for_each(|d| count_deleted(report, d.action)),
        // Something changed since the re-read: try each entry alone.
        Err(StoreError::Conflict(_)) if doomed.len() > 1 => {
            for d in &doomed {
                match read_doomed(store, &[d.action], report).await {
                    Ok((one, h)) => {
                        held.extend(h);
                        if one.is_empty() {
                            continue;
                        }
                        match apply_entry_deletions(store, &one).await {
                            Ok(()) => count_deleted(report, d.action),
                            Err(StoreError::Conflict(_)) => report.kept += 1,
                            Err(e) => report.errors.push(item_error(d.action, e.to_string())),
                        }
                    }
                    Err(e) => report
                        .errors
                        .push(item_error(d.action, format!("re-check failed: {e}"))),
                }
            }
        }
        Err(StoreError::Conflict(_)) => report.kept += 1,
        Err(e) => fail_all(report, doomed.iter().map(|d| d.action), &e.to_string()),
    }
    held
}

/// Reads a batch's entries again: those gone count as deleted, those changed
/// are kept, and those still referenced from outside the batch are held.
async fn read_doomed<'a, S: Store>(
    store: &S,
    batch: &[&'a Action],
    report: &mut RunReport,
) -> Result<(Vec<Doomed<'a>>, Vec<&'a Action>), StoreError> {
    let ids: Vec<EntryId> = batch.iter().map(|a| entry_id(a)).collect();
    let fresh = store.get(Table::Meta, &ids).await?;
    let mut doomed = Vec::new();
    for ((a, id), raw) in batch.iter().zip(ids).zip(fresh) {
        let Some(bytes) = raw else {
            count_deleted(report, a); // already gone
            continue;
        };
        match codec::decode_meta(&bytes) {
            Ok(meta) if Some(meta.write_id) == a.version => doomed.push(Doomed {
                action: a,
                id,
                stamp: stamp(&bytes),
                meta,
            }),
            // Written again since planning, or unreadable now: it stays.
            _ => report.kept += 1,
        }
    }
    // An entry goes only if every entry referencing it goes in the same batch.
    let mut held = Vec::new();
    loop {
        let members: HashSet<&EntryId> = doomed.iter().map(|d| &d.id).collect();
        let mut incoming: HashMap<EntryId, u64> = HashMap::new();
        for d in &doomed {
            for r in distinct(&d.meta.refs) {
                let target = EntryId::new(d.id.namespace.clone(), r);
                if members.contains(&target) {
                    *incoming.entry(target).or_default() += 1;
                }
            }
        }
        let (go, stay): (Vec<Doomed>, Vec<Doomed>) = doomed
            .into_iter()
            .partition(|d| d.meta.referrers <= incoming.get(&d.id).copied().unwrap_or(0));
        doomed = go;
        if stay.is_empty() {
            return Ok((doomed, held));
        }
        held.extend(stay.iter().map(|d| d.action));
    }
}

/// One batch: preconditions, then the entries' metadata (the commit), then
/// the counts they held, then their values. A store that is not atomic gets a
/// temp per entry first, so a batch cut short leaves values a run can find.
async fn apply_entry_deletions<S: Store>(
    store: &S,
    doomed: &[Doomed<'_>],
) -> Result<(), StoreError> {
    let members: HashSet<&EntryId> = doomed.iter().map(|d| &d.id).collect();
    let mut outside = Vec::new();
    let mut blobs = Vec::new();
    for d in doomed {
        for r in distinct(&d.meta.refs) {
            let rid = EntryId::new(d.id.namespace.clone(), r);
            if !members.contains(&rid) {
                outside.push(rid);
            }
        }
        blobs.extend(distinct(&d.meta.blobs));
    }
    let mut counts = Counts::read(store, distinct_ids(outside.clone()), distinct(&blobs))
        .await
        .map_err(|e| match e {
            Error::Store(e) => e,
            other => StoreError::Backend(format!("reference counts could not be updated: {other}")),
        })?;
    for rid in &outside {
        counts.add_entry(rid, -1);
    }
    for b in &blobs {
        counts.add_blob(b, -1);
    }
    let mut ops: Vec<Op> = doomed
        .iter()
        .map(|d| Op::Expect(Table::Meta, d.id.clone(), Some(d.stamp)))
        .collect();
    ops.extend(counts.expects());
    let temps: Vec<(EntryId, Vec<u8>)> = if store.atomic() {
        Vec::new()
    } else {
        doomed
            .iter()
            .map(|d| {
                let staged = Staged::Entry {
                    namespace: d.id.namespace.clone(),
                    key: d.id.key.clone(),
                    writes: vec![d.meta.write_id],
                };
                let key = id_key(&temp_id(&staged));
                let rec = TempRecord {
                    created_at: d.meta.updated_at,
                    size: d.meta.size,
                    staged,
                };
                (key, codec::encode_temp(&rec))
            })
            .collect()
    };
    ops.extend(
        temps
            .iter()
            .map(|(k, v)| Op::Put(Table::Temps, k.clone(), v.clone())),
    );
    // Referrers before the entries they reference: a batch cut short must not
    // leave an entry of the batch referencing one already deleted.
    ops.extend(
        referrers_first(doomed)
            .into_iter()
            .map(|d| Op::Delete(Table::Meta, d.id.clone())),
    );
    ops.extend(counts.decrements());
    ops.extend(
        doomed
            .iter()
            .map(|d| Op::Delete(Table::Values, value_key(&d.id, d.meta.write_id))),
    );
    ops.extend(temps.into_iter().map(|(k, _)| Op::Delete(Table::Temps, k)));
    store.apply(ops).await
}

/// `doomed` ordered so that every entry comes after the entries of `doomed`
/// that reference it (a self-reference aside). Members of a reference cycle,
/// which no order can serve, follow in their own order.
fn referrers_first<'d, 'a>(doomed: &'d [Doomed<'a>]) -> Vec<&'d Doomed<'a>> {
    let index: HashMap<&EntryId, usize> =
        doomed.iter().enumerate().map(|(i, d)| (&d.id, i)).collect();
    let targets: Vec<Vec<usize>> = doomed
        .iter()
        .enumerate()
        .map(|(i, d)| {
            distinct(&d.meta.refs)
                .into_iter()
                .filter_map(|r| index.get(&EntryId::new(d.id.namespace.clone(), r)).copied())
                .filter(|&t| t != i)
                .collect()
        })
        .collect();
    let mut pending = vec![0usize; doomed.len()];
    for ts in &targets {
        for &t in ts {
            pending[t] += 1;
        }
    }
    let mut done = vec![false; doomed.len()];
    let mut order = Vec::with_capacity(doomed.len());
    while let Some(i) = (0..doomed.len()).find(|&i| !done[i] && pending[i] == 0) {
        done[i] = true;
        order.push(&doomed[i]);
        for &t in &targets[i] {
            pending[t] -= 1;
        }
    }
    order.extend((0..doomed.len()).filter(|&i| !done[i]).map(|i| &doomed[i]));
    order
}

fn distinct_ids(mut ids: Vec<EntryId>) -> Vec<EntryId> {
    ids.sort();
    ids.dedup();
    ids
}

/// One item's deletion: its ops, applied with others or alone.
struct Item<'a> {
    action: &'a Action,
    ops: Vec<Op>,
}

/// Applies items as one batch; if a precondition fails, each alone.
async fn apply_items<S: Store>(store: &S, items: Vec<Item<'_>>, report: &mut RunReport) {
    if items.is_empty() {
        return;
    }
    let all: Vec<Op> = items.iter().flat_map(|i| i.ops.iter().cloned()).collect();
    match store.apply(all).await {
        Ok(()) => items.iter().for_each(|i| count_deleted(report, i.action)),
        Err(StoreError::Conflict(_)) => {
            for item in items {
                match store.apply(item.ops).await {
                    Ok(()) => count_deleted(report, item.action),
                    Err(StoreError::Conflict(_)) => report.kept += 1,
                    Err(e) => report.errors.push(item_error(item.action, e.to_string())),
                }
            }
        }
        Err(e) => fail_all(report, items.iter().map(|i| i.action), &e.to_string()),
    }
}

/// Reads a batch of blob records again and returns the deletions of those
/// still unreferenced and unchanged since planning (not written again).
async fn blob_deletions<'a, S: Store>(
    store: &S,
    batch: &[&'a Action],
    report: &mut RunReport,
) -> Vec<Item<'a>> {
    let keys: Vec<EntryId> = batch.iter().map(|a| id_key(&a.key)).collect();
    let fresh = match store.get(Table::BlobMeta, &keys).await {
        Ok(f) => f,
        Err(e) => {
            fail_all(
                report,
                batch.iter().copied(),
                &format!("re-check failed: {e}"),
            );
            return Vec::new();
        }
    };
    let mut items = Vec::new();
    for ((a, key), raw) in batch.iter().zip(keys).zip(fresh) {
        let Some(bytes) = raw else {
            count_deleted(report, a);
            continue;
        };
        match codec::decode_blob(&bytes) {
            Ok(rec) if rec.refs == 0 && Some(rec.created_at) == a.version => {
                let mut ops = vec![Op::Expect(
                    Table::BlobMeta,
                    key.clone(),
                    Some(stamp(&bytes)),
                )];
                let temp = (!store.atomic()).then(|| {
                    let staged = Staged::Blob { id: a.key.clone() };
                    let tkey = id_key(&temp_id(&staged));
                    let rec = TempRecord {
                        created_at: rec.created_at,
                        size: rec.size,
                        staged,
                    };
                    (tkey, codec::encode_temp(&rec))
                });
                if let Some((k, v)) = &temp {
                    ops.push(Op::Put(Table::Temps, k.clone(), v.clone()));
                }
                // The record first: once it is gone no writer can reference the blob.
                ops.push(Op::Delete(Table::BlobMeta, key.clone()));
                ops.push(Op::Delete(Table::Blobs, key));
                if let Some((k, _)) = temp {
                    ops.push(Op::Delete(Table::Temps, k));
                }
                items.push(Item { action: a, ops });
            }
            // Referenced, written again, or unreadable: it stays.
            _ => report.kept += 1,
        }
    }
    items
}

/// Reads a batch of stale temps again and returns their deletions: the temp,
/// and what it staged if the write it belonged to never committed.
async fn temp_deletions<'a, S: Store>(
    store: &S,
    batch: &[&'a Action],
    report: &mut RunReport,
) -> Vec<Item<'a>> {
    let mut items = Vec::new();
    for a in batch {
        let key = id_key(&a.key);
        let found = match store.get(Table::Temps, std::slice::from_ref(&key)).await {
            Ok(mut f) => f.pop().flatten(),
            Err(e) => {
                report
                    .errors
                    .push(item_error(a, format!("re-check failed: {e}")));
                continue;
            }
        };
        let Some(bytes) = found else {
            count_deleted(report, a);
            continue;
        };
        let mut ops = vec![Op::Expect(Table::Temps, key.clone(), Some(stamp(&bytes)))];
        // An unreadable temp names nothing to clean: only the temp goes.
        if let Ok(rec) = codec::decode_temp(&bytes) {
            let (commit_table, commit_key) = match &rec.staged {
                Staged::Entry { namespace, key, .. } => {
                    (Table::Meta, EntryId::new(namespace.clone(), key.clone()))
                }
                Staged::Blob { id } => (Table::BlobMeta, id_key(id)),
            };
            let commit = match store
                .get(commit_table, std::slice::from_ref(&commit_key))
                .await
            {
                Ok(mut f) => f.pop().flatten(),
                Err(e) => {
                    report
                        .errors
                        .push(item_error(a, format!("re-check failed: {e}")));
                    continue;
                }
            };
            ops.push(Op::Expect(
                commit_table,
                commit_key.clone(),
                commit.as_deref().map(stamp),
            ));
            match rec.staged {
                // The value of the write the metadata names stays; other staged ones are left over.
                Staged::Entry { writes, .. } => match commit.as_deref().map(codec::decode_meta) {
                    // Unreadable metadata: which value is live is unknown, so all stay.
                    Some(Err(_)) => {}
                    named => {
                        let current = named.and_then(Result::ok).map(|m| m.write_id);
                        for w in writes.into_iter().filter(|w| Some(*w) != current) {
                            ops.push(Op::Delete(Table::Values, value_key(&commit_key, w)));
                        }
                    }
                },
                Staged::Blob { id } => {
                    if commit.is_none() {
                        ops.push(Op::Delete(Table::Blobs, id_key(&id)));
                    }
                }
            }
        }
        ops.push(Op::Delete(Table::Temps, key));
        items.push(Item { action: a, ops });
    }
    items
}
