//! The executor: runs a plan against a store in batches, entries first, then
//! the blobs they freed, then temps, re-checking each item before it goes.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::codec;
use crate::model::EntryId;
use crate::plan::{Action, ActionKind, Mode, Plan, Reason, Tally};
use crate::store::{id_key, Op, Store, Table};

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

/// Runs `plan` against `store`. Errors on items are collected, not returned.
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
    let (entries, rest): (Vec<&Action>, Vec<&Action>) = plan
        .actions
        .iter()
        .partition(|a| a.kind == ActionKind::Entry);
    let (blobs, temps): (Vec<&Action>, Vec<&Action>) =
        rest.into_iter().partition(|a| a.kind == ActionKind::Blob);

    for batch in entries.chunks(batch_size) {
        if host.between_batches(&progress).await == Flow::Stop {
            report.done = false;
            return report;
        }
        delete_entries(store, batch, &mut report).await;
        progress.processed += batch.len() as u64;
        progress.deleted = deleted_count(&report);
    }

    progress.phase = "blobs";
    if !blobs.is_empty() {
        // Re-read which blobs entries reference now: one written since planning keeps its blob.
        match referenced_blobs(store, cfg.page_size).await {
            Ok(Some(referenced)) => {
                for batch in blobs.chunks(batch_size) {
                    if host.between_batches(&progress).await == Flow::Stop {
                        report.done = false;
                        return report;
                    }
                    let (keep, go): (Vec<&Action>, Vec<&Action>) = batch
                        .iter()
                        .partition(|a| referenced.contains(a.key.as_str()));
                    report.kept += keep.len() as u64;
                    let ops = go
                        .iter()
                        .flat_map(|a| {
                            [
                                Op::Delete(Table::Blobs, id_key(&a.key)),
                                Op::Delete(Table::BlobMeta, id_key(&a.key)),
                            ]
                        })
                        .collect();
                    apply_batch(store, ops, &go, &mut report).await;
                    progress.processed += batch.len() as u64;
                    progress.deleted = deleted_count(&report);
                }
            }
            // Metadata that could not be read may reference any blob: keep them all.
            Ok(None) => report.kept += blobs.len() as u64,
            Err(e) => {
                for a in &blobs {
                    report
                        .errors
                        .push(item_error(a, format!("blob re-check failed: {e}")));
                }
            }
        }
    }

    progress.phase = "temps";
    for batch in temps.chunks(batch_size) {
        if host.between_batches(&progress).await == Flow::Stop {
            report.done = false;
            return report;
        }
        let ops = batch
            .iter()
            .map(|a| Op::Delete(Table::Temps, id_key(&a.key)))
            .collect();
        apply_batch(store, ops, batch, &mut report).await;
        progress.processed += batch.len() as u64;
        progress.deleted = deleted_count(&report);
    }
    progress.phase = "idle";
    progress.running = false;
    host.between_batches(&progress).await;
    report
}

fn deleted_count(report: &RunReport) -> u64 {
    report.deleted.values().map(|t| t.count).sum()
}

fn item_error(a: &Action, message: String) -> ItemError {
    ItemError {
        kind: a.kind,
        namespace: a.namespace.clone(),
        key: a.key.clone(),
        message,
    }
}

fn entry_id(a: &Action) -> EntryId {
    EntryId::new(a.namespace.clone().unwrap_or_default(), a.key.clone())
}

/// Deletes a batch of entries, each only if its metadata is unchanged since planning.
async fn delete_entries<S: Store>(store: &S, batch: &[&Action], report: &mut RunReport) {
    let ids: Vec<EntryId> = batch.iter().map(|a| entry_id(a)).collect();
    let current = match store.get(Table::Meta, &ids).await {
        Ok(c) => c,
        Err(e) => {
            for a in batch {
                report
                    .errors
                    .push(item_error(a, format!("re-check failed: {e}")));
            }
            return;
        }
    };
    let mut go = Vec::new();
    let mut ops = Vec::new();
    for ((a, id), meta) in batch.iter().zip(ids).zip(current) {
        match meta {
            // Already gone: counts as deleted.
            None => go.push(*a),
            Some(bytes) => match codec::decode_meta(&bytes) {
                Ok(m) if Some(m.updated_at) == a.updated_at => {
                    go.push(*a);
                    ops.push(Op::Delete(Table::Meta, id.clone()));
                    ops.push(Op::Delete(Table::Values, id));
                }
                // Rewritten since planning, or unreadable now: keep it.
                _ => report.kept += 1,
            },
        }
    }
    apply_batch(store, ops, &go, report).await;
}

async fn apply_batch<S: Store>(
    store: &S,
    ops: Vec<Op>,
    actions: &[&Action],
    report: &mut RunReport,
) {
    let result = if ops.is_empty() {
        Ok(())
    } else {
        store.apply(ops).await
    };
    match result {
        Ok(()) => {
            for a in actions {
                let t = report.deleted.entry(a.reason).or_default();
                t.count += 1;
                t.bytes += a.bytes;
            }
        }
        Err(e) => {
            for a in actions {
                report.errors.push(item_error(a, e.to_string()));
            }
        }
    }
}

/// Every blob id any entry references now; `None` if some metadata is unreadable.
async fn referenced_blobs<S: Store>(
    store: &S,
    page_size: usize,
) -> Result<Option<HashSet<String>>, crate::store::StoreError> {
    let mut referenced = HashSet::new();
    let mut after: Option<EntryId> = None;
    loop {
        let page = store
            .list(Table::Meta, after.as_ref(), page_size.max(1))
            .await?;
        let last = page.last().map(|(k, _)| k.clone());
        for (_, bytes) in &page {
            match codec::decode_meta(bytes) {
                Ok(m) => referenced.extend(m.blobs),
                Err(_) => return Ok(None),
            }
        }
        if page.len() < page_size.max(1) {
            return Ok(Some(referenced));
        }
        after = last;
    }
}
