//! The executor: runs a plan against a store in batches, entries first, then
//! the blobs they freed, then temps, re-checking each item before it goes.

use crate::vecmap::VecMap;

use serde::Serialize;

use crate::codec::{self, Staged};
use crate::error::Error;
use crate::model::{EntryId, EntryMeta};
use crate::plan::{Action, ActionKind, Mode, Plan, Reason, Tally};
use crate::refcount::{distinct, Counts};
use crate::store::{
    id_key, stamp, value_key, Access, Op, Read, Reads, Step, Store, StoreError, Table,
};
use crate::write::{entry_tables, has_inline_value, stage};

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
    /// Whether the item is an entry, a blob or a temp.
    pub kind: ActionKind,
    /// The entry's namespace; `None` for blobs and temps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The entry key, blob id or temp id.
    pub key: String,
    /// What went wrong, for a person to read.
    pub message: String,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// False when the run stopped early (aborted or out of budget).
    pub done: bool,
    /// The mode of the plan run.
    pub mode: Mode,
    /// Items deleted, with their bytes, by reason.
    pub deleted: VecMap<Reason, Tally>,
    /// Items planned for deletion that were kept because they were no longer garbage.
    pub kept: u64,
    /// Entries listed when the plan was made (decodable and corrupt).
    pub scanned: u64,
    /// Entries the plan keeps: roots and what they reach.
    pub reachable: u64,
    /// Items that could not be deleted; they stay for a later run.
    pub errors: Vec<ItemError>,
    /// How long the run took, in milliseconds. The JavaScript driver measures
    /// it; a run from Rust leaves it 0.
    pub duration_ms: u64,
    /// Entries whose metadata could not be decoded: kept and reported.
    pub corrupt: Vec<EntryId>,
    /// Blob records the plan could not read: their blobs stay.
    pub corrupt_blobs: Vec<String>,
    /// Namespaces holding entries but not registered: reported, never deleted
    /// by a run.
    pub zombies: Vec<String>,
    /// This run went on from one stopped earlier; `deleted` counts both.
    pub resumed: bool,
    /// This run went on with the plan of the run it resumed (made by this
    /// sweeper moments before), not a new listing of the store.
    pub plan_reused: bool,
    /// Where the run stopped, when it did not finish: the last item handled.
    #[serde(skip)]
    pub stopped_after: Option<Position>,
    /// Of `deleted`, what the run it resumed had deleted (the run log counts
    /// each run's own deletions): what this run deleted itself is `deleted`
    /// less this.
    pub carried: Tally,
    /// The store closed under the run: it stopped at the batch that found it so.
    #[serde(skip)]
    pub halted: bool,
    /// Entries of the run waited for their referrers, or were left for a
    /// later run: `stopped_after` may come before items it handled.
    #[serde(skip)]
    pub waited: bool,
}

/// An item's place in execution order: entries by namespace and key, then
/// blobs, then temps, by id.
pub type Position = (ActionKind, String, String);

/// Where `a` stands in execution order.
pub fn position(a: &Action) -> Position {
    (
        a.kind,
        a.namespace.clone().unwrap_or_default(),
        a.key.clone(),
    )
}

/// What a stopped run leaves in the store so that the next run resumes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    /// The mode of the run stopped: only a run of that mode goes on from it.
    pub mode: Mode,
    /// When the run's first part started.
    pub started_at: crate::model::Millis,
    /// The last item handled: the next part starts after it.
    pub after: Position,
    /// What the run's parts so far deleted, by reason.
    pub deleted: VecMap<Reason, Tally>,
    /// Items the run's parts so far kept because they were no longer garbage.
    pub kept: u64,
}

impl Cursor {
    /// The cursor as stored (MessagePack).
    pub fn encode(&self) -> Vec<u8> {
        codec::Writer::record(|w| {
            w.map(5);
            w.str("mode");
            w.str(self.mode.as_str());
            w.uints(&[("startedAt", self.started_at)]);
            w.str("after");
            w.array(3);
            let (kind, namespace, key) = &self.after;
            let kind = match kind {
                ActionKind::Entry => "entry",
                ActionKind::Blob => "blob",
                ActionKind::Temp => "temp",
            };
            for s in [kind, namespace, key] {
                w.str(s);
            }
            w.str("deleted");
            w.map(self.deleted.len());
            for (reason, t) in &self.deleted {
                w.str(reason.as_str());
                w.map(2);
                w.uints(&[("count", t.count), ("bytes", t.bytes)]);
            }
            w.uints(&[("kept", self.kept)]);
        })
    }

    /// Reads a cursor stored by [`Cursor::encode`]; `Err` if it is malformed.
    pub fn decode(bytes: &[u8]) -> Result<Cursor, codec::DecodeError> {
        use codec::{malformed, Fields};
        let body = codec::body(bytes)?;
        let f = Fields::of(&body)?;
        let mode = match f.string("mode")?.as_str() {
            "light" => Mode::Light,
            "full" => Mode::Full,
            _ => return Err(malformed("unknown mode")),
        };
        let after = match f.list("after")? {
            [kind, ns, key] => {
                let kind = match kind.as_str() {
                    Some("entry") => ActionKind::Entry,
                    Some("blob") => ActionKind::Blob,
                    Some("temp") => ActionKind::Temp,
                    _ => return Err(malformed("unknown item kind")),
                };
                let text = |v: &crate::mpv::Value| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| malformed("a position is not a string"))
                };
                (kind, text(ns)?, text(key)?)
            }
            _ => return Err(malformed("a cursor position is not [kind, namespace, key]")),
        };
        let mut deleted = VecMap::new();
        match f.required("deleted")? {
            crate::mpv::Value::Map(pairs) => {
                for (k, v) in pairs {
                    let reason = Reason::ALL
                        .into_iter()
                        .find(|r| Some(r.as_str()) == k.as_str())
                        .ok_or_else(|| malformed("unknown reason"))?;
                    let t = Fields::of(v)?;
                    let tally = Tally {
                        count: t.u64("count")?,
                        bytes: t.u64("bytes")?,
                    };
                    if deleted.insert(reason, tally).is_some() {
                        return Err(malformed("a reason is counted twice"));
                    }
                }
            }
            _ => return Err(malformed("deleted is not a map")),
        }
        Ok(Cursor {
            mode,
            started_at: f.u64("startedAt")?,
            after,
            deleted,
            kept: f.u64("kept")?,
        })
    }
}

/// Where a run is, readable while it goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Whether a run is going.
    pub running: bool,
    /// "entries", "blobs", "temps" or "idle".
    pub phase: &'static str,
    /// Actions of the plan handled so far, deleted or not.
    pub processed: u64,
    /// Actions in the plan.
    pub total: u64,
    /// Items deleted so far.
    pub deleted: u64,
    /// The run has a place to save: stopped now, the next run goes on past
    /// what it handled. (Not so while every entry handled waits for its
    /// referrers: a time budget then lets the run go on to where it has.)
    #[serde(skip)]
    pub placed: bool,
}

/// What the driver says between batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next batch.
    Continue,
    /// Stop here: the run is not done, and the next run of its mode goes on
    /// from its place.
    Stop,
}

/// The driver of a run: yields to the event loop, reports progress, and
/// decides whether to go on (abort signal, time budget).
#[allow(async_fn_in_trait)]
pub trait RunHost {
    /// Called after each batch: [`Flow::Stop`] ends the run there (not
    /// done; the next run of the mode goes on from its place). A time
    /// budget should stop only once the run has made progress
    /// (`progress.deleted > 0` or `progress.placed`): entries that wait for
    /// their referrers (a chain of garbage) fill the first batches of a
    /// run, and a host that stops every run within them never deletes the
    /// chain. An abort may stop at any batch.
    async fn between_batches(&mut self, progress: &Progress) -> Flow;

    /// Called often during long computations (planning): a host on a
    /// page's main thread yields to the event loop when it has held it long.
    async fn pause(&mut self) {}

    /// Asked between listing pages: true stops the listing (and the plan or
    /// run it is for) with [`Error::Stopped`].
    fn stopped(&mut self) -> bool {
        false
    }

    /// True when the run may make only so many backend calls (`maxOps`):
    /// then it spends none of them on reads' deferred `accessedAt`
    /// refreshes, which stay pending for a flush of their own.
    fn calls_counted(&self) -> bool {
        false
    }

    /// The store's count of backend calls (where it counts them) that the
    /// run's listing may not pass (`maxOps`): see [`Store::list_capped`].
    fn list_cap(&self) -> Option<u64> {
        None
    }

    /// How many items the next batch may hold, of `wanted` (at least 1): a
    /// host that counts calls (`maxOps`) sizes batches to what is left.
    fn batch_room(&mut self, wanted: usize) -> usize {
        wanted
    }

    /// Whether a batch of `items` that cannot be split (entries that
    /// reference one another go together) fits what the host allows.
    fn fits(&mut self, _items: usize) -> bool {
        true
    }
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
///
/// Entries the plan says were listed close together (`Action::listed`, the
/// store's key order) are read as one key range and runs of adjacent ones
/// deleted as one: a hint only, as a run goes as a range only if the range
/// holds exactly its entries and their values when it goes.
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
        corrupt_blobs: plan.summary.corrupt_blobs.clone(),
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

    // Entries whose referrers are garbage in a later batch wait, then go
    // referrers first (see `waiting_batches`).
    let mut waiting: Vec<Held<'_>> = Vec::new();
    // Where the first entry that waits is in `entries`: a run stopped later
    // saves no place past it, or the next run would skip it.
    let mut first_waiting: Option<usize> = None;
    let mut rest = &entries[..];
    while !rest.is_empty() {
        if host.between_batches(&progress).await == Flow::Stop {
            report.done = false;
            return report;
        }
        let at = entries.len() - rest.len();
        let batch;
        (batch, rest) = rest.split_at(
            host.batch_room(batch_size.min(rest.len()))
                .clamp(1, rest.len()),
        );
        let held = delete_entries(store, batch, true, &mut report).await;
        // `held` is not in batch order: the earliest of them in the batch.
        if first_waiting.is_none() {
            first_waiting = batch
                .iter()
                .position(|a| held.iter().any(|h| core::ptr::eq(*a, h.0)))
                .map(|i| at + i);
        }
        report.waited |= !held.is_empty();
        waiting.extend(held);
        if report.halted {
            report.done = false;
            return report;
        }
        report.stopped_after = match first_waiting {
            Some(0) => None,
            Some(i) => Some(position(entries[i - 1])),
            None => batch.last().map(|a| position(a)),
        };
        progress.processed += batch.len() as u64;
        progress.deleted = deleted_count(&report);
        progress.placed = report.stopped_after.is_some();
    }
    // Garbage cycles go only in one batch: these batches may be larger,
    // and one holds a whole cycle, however long.
    let waiting_batch = batch_size.max(WAITING_BATCH);
    // Entries that wait but do not fit what the host allows are left to a
    // later run; the blobs and temps still go (each is re-checked).
    let mut deferred = false;
    'waiting: while !waiting.is_empty() {
        let before = waiting.len();
        let mut still = Vec::new();
        for batch in waiting_batches(&waiting, waiting_batch) {
            // Stopped here, the run saves no place past these entries (they
            // come before it in execution order): the next run plans them.
            if host.between_batches(&progress).await == Flow::Stop {
                report.done = false;
                report.stopped_after = None;
                return report;
            }
            if !host.fits(batch.len()) {
                deferred = true;
                break 'waiting;
            }
            still.extend(delete_entries(store, &batch, false, &mut report).await);
            if report.halted {
                report.done = false;
                report.stopped_after = None;
                return report;
            }
            progress.deleted = deleted_count(&report);
        }
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
        let mut rest = &actions[..];
        while !rest.is_empty() {
            if host.between_batches(&progress).await == Flow::Stop {
                report.done = false;
                return report;
            }
            let batch;
            (batch, rest) = rest.split_at(
                host.batch_room(batch_size.min(rest.len()))
                    .clamp(1, rest.len()),
            );
            match phase {
                "blobs" => delete_blobs(store, batch, &mut report).await,
                _ => {
                    let items = temp_deletions(store, batch, &mut report).await;
                    apply_items(store, items, &mut report).await;
                }
            }
            if report.halted {
                report.done = false;
                return report;
            }
            // Not past entries left waiting: they come before in execution order.
            if !deferred {
                report.stopped_after = batch.last().map(|a| position(a));
            }
            progress.processed += batch.len() as u64;
            progress.deleted = deleted_count(&report);
            progress.placed = report.stopped_after.is_some();
        }
    }
    progress.phase = "idle";
    progress.running = false;
    host.between_batches(&progress).await;
    if deferred {
        report.done = false;
    } else {
        report.stopped_after = None;
    }
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

/// Records `message` as the error of every action: the run goes on without
/// them, unless the store was closed under it (`closed`), which stops it.
fn fail_all<'a>(
    report: &mut RunReport,
    actions: impl IntoIterator<Item = &'a Action>,
    message: &str,
    closed: bool,
) {
    report.halted |= closed;
    for a in actions {
        report.errors.push(item_error(a, message.to_string()));
    }
}

fn closed(e: &Error) -> bool {
    matches!(e, Error::Store(StoreError::Closed(_)))
}

fn entry_id(a: &Action) -> EntryId {
    EntryId::new(a.namespace.clone().unwrap_or_default(), a.key.clone())
}

/// An entry that is still what the plan saw.
struct Doomed<'a> {
    action: &'a Action,
    id: EntryId,
    meta: EntryMeta,
    /// Its record holds its value: there is no `Values` record to delete.
    inline: bool,
}

/// What one batch of entries came to.
#[derive(Default)]
struct EntryOutcome<'a> {
    /// Deleted now, or already gone.
    deleted: Vec<&'a Action>,
    /// Written again since planning, or unreadable now: they stay.
    kept: u64,
    /// Referenced from outside the batch: they wait for their referrers.
    held: Vec<Held<'a>>,
}

/// An entry held back by a referrer outside its batch, with the keys it
/// references (as read): what orders the batches of those that wait.
type Held<'a> = (&'a Action, Vec<String>);

/// Deletes what it can of a batch of entries, in one transaction where the
/// store has them. Returns the entries held back because a referrer outside
/// the batch still exists.
async fn delete_entries<'a, S: Store>(
    store: &S,
    batch: &[&'a Action],
    by_listing: bool,
    report: &mut RunReport,
) -> Vec<Held<'a>> {
    let caps = store.capabilities();
    let layout = if by_listing && caps.transactions && caps.range_delete {
        Layout::of(batch)
    } else {
        Layout::by_key(batch.len())
    };
    let outcome = store
        .transact(Access::Write, &entry_tables(caps.atomic, false), |reads| {
            entry_batch_step(reads, batch, &layout, caps.atomic)
        })
        .await;
    match outcome {
        Ok(o) => {
            o.deleted.iter().for_each(|a| count_deleted(report, a));
            report.kept += o.kept;
            o.held
        }
        // Kept meeting concurrent writes (stores without transactions): the
        // next run tries again.
        Err(Error::Store(StoreError::Busy(_))) => {
            report.kept += batch.len() as u64;
            Vec::new()
        }
        Err(e) => {
            fail_all(report, batch.iter().copied(), &e.to_string(), closed(&e));
            Vec::new()
        }
    }
}

/// How a batch is read and deleted: spans of entries close together in the
/// listing are read as one key range (one request instead of one per entry),
/// and runs of adjacent ones are candidates for one range delete. Spans and
/// runs are `(start, length)` in the batch.
struct Layout {
    reads: Vec<(usize, usize)>,
    runs: Vec<(usize, usize)>,
}

/// Entries at most this far apart in the listing share a range read: what
/// lies between is read too, so the gap stays small.
const READ_GAP: usize = 4;

impl Layout {
    fn by_key(n: usize) -> Layout {
        Layout {
            reads: (0..n).map(|i| (i, 1)).collect(),
            runs: Vec::new(),
        }
    }

    fn of(batch: &[&Action]) -> Layout {
        let at: Vec<Option<usize>> = batch.iter().map(|a| a.listed.map(|i| i as usize)).collect();
        // The gap between entry i-1 and i in the listing, when both were
        // listed in one namespace and both keys order the same way here as in
        // every store (see `rangeable`).
        let gap = |i: usize| -> Option<usize> {
            let (p, q) = (at[i - 1]?, at[i]?);
            let same_ns = batch[i - 1].namespace == batch[i].namespace;
            let plain = rangeable(batch[i - 1]) && rangeable(batch[i]);
            (q > p && same_ns && plain).then_some(q - p)
        };
        let spans = |joins: &dyn Fn(usize) -> bool| -> Vec<(usize, usize)> {
            let mut out: Vec<(usize, usize)> = Vec::new();
            for i in 0..batch.len() {
                match out.last_mut() {
                    Some((_, len)) if i > 0 && joins(i) => *len += 1,
                    _ => out.push((i, 1)),
                }
            }
            out
        };
        Layout {
            reads: spans(&|i| gap(i).is_some_and(|g| g <= READ_GAP)),
            runs: spans(&|i| gap(i) == Some(1))
                .into_iter()
                .filter(|(_, len)| *len > 1)
                .collect(),
        }
    }
}

/// Whether an entry's namespace and key may bound a key range. Rust orders
/// strings by code point, IndexedDB by UTF-16 unit, and the two disagree only
/// past U+D7FF; U+0000 and U+0001 could put a value key after the range of
/// values it should close. Bounds within U+0002..=U+D7FF put every key on the
/// same side of them in both orders, so a range read and checked here is the
/// range the store deletes.
fn rangeable(a: &Action) -> bool {
    let plain = |s: &str| s.chars().all(|c| ('\u{2}'..='\u{d7ff}').contains(&c));
    plain(a.namespace.as_deref().unwrap_or_default()) && plain(&a.key)
}

/// The `Values` keys of every write of every entry from `first` to `last`.
fn value_range(first: &EntryId, last: &EntryId) -> (EntryId, EntryId) {
    (value_key(first, 0), value_key(last, u64::MAX))
}

/// The pure step of one batch of entry deletions: read the entries (a run of
/// adjacent ones as one key range), keep those changed since planning, hold
/// those still referenced from outside the batch, read the counts the rest
/// hold, then delete: referrers before what they reference, then the counts
/// they held, then their values. A run goes as one range delete only if the
/// range holds exactly its entries and their current values, nothing else.
fn entry_batch_step<'a>(
    reads: &Reads,
    batch: &[&'a Action],
    layout: &Layout,
    atomic: bool,
) -> Result<Step<EntryOutcome<'a>>, Error> {
    let ids: Vec<EntryId> = batch.iter().map(|a| entry_id(a)).collect();
    let mut wanted = Vec::new();
    for &(start, len) in &layout.reads {
        let (first, last) = (&ids[start], &ids[start + len - 1]);
        if reads.has(Table::Meta, first) {
            continue;
        }
        wanted.push(if len == 1 {
            Read::Key(Table::Meta, first.clone())
        } else {
            Read::Range(Table::Meta, first.clone(), last.clone())
        });
    }
    for &(start, len) in &layout.runs {
        let (vfirst, vlast) = value_range(&ids[start], &ids[start + len - 1]);
        if vfirst <= vlast && !reads.has(Table::Values, &vfirst) {
            wanted.push(Read::Range(Table::Values, vfirst, vlast));
        }
    }
    if !wanted.is_empty() {
        return Ok(Step::Read(wanted));
    }

    let mut outcome = EntryOutcome::default();
    let mut doomed: Vec<Doomed<'a>> = Vec::new();
    for (a, id) in batch.iter().zip(&ids) {
        match reads.get(Table::Meta, id).flatten() {
            None => outcome.deleted.push(a),
            Some(bytes) => match codec::decode_meta(bytes) {
                Ok(meta) if Some(meta.write_id) == a.version => doomed.push(Doomed {
                    action: a,
                    id: id.clone(),
                    meta,
                    inline: has_inline_value(bytes),
                }),
                _ => outcome.kept += 1,
            },
        }
    }
    // An entry goes only if every entry referencing it goes in the same batch.
    let (go, stay) = referenced_from_outside(doomed);
    doomed = go;
    outcome
        .held
        .extend(stay.into_iter().map(|d| (d.action, d.meta.refs)));
    if doomed.is_empty() {
        return Ok(Step::Done(outcome));
    }

    if !atomic {
        // No order of deletes serves a reference cycle on a store that is not
        // atomic: a batch cut short would leave a member referencing one
        // deleted, and a later put of that key would start its count at zero
        // while the reference stands. Cycle members (and what they reference
        // alone) stay; see `cycle_members`.
        let cyclic = cycle_members(&doomed);
        if cyclic.contains(&true) {
            let before = doomed.len();
            let mut on_cycle = cyclic.into_iter();
            doomed.retain(|_| on_cycle.next() != Some(true));
            outcome.kept += (before - doomed.len()) as u64;
            // What only the cycle referenced now waits in vain: keep it too.
            let (go, stay) = referenced_from_outside(doomed);
            doomed = go;
            outcome.kept += stay.len() as u64;
            if doomed.is_empty() {
                return Ok(Step::Done(outcome));
            }
        }
    }

    let members = id_map(&doomed);
    let mut outside = Vec::new();
    let mut blobs = Vec::new();
    for d in &doomed {
        for r in distinct(&d.meta.refs) {
            let rid = EntryId::new(d.id.namespace.clone(), r);
            if !members.contains_key(&rid) {
                outside.push(rid);
            }
        }
        blobs.extend(distinct(&d.meta.blobs));
    }
    // What they reference and cannot be read keeps its count, too high: it
    // stays, and nothing else in the batch is held back by it.
    let mut counts =
        match Counts::to_lower(reads, &distinct_ids(outside.clone()), &distinct(&blobs))? {
            Ok(c) => c,
            Err(missing) => return Ok(Step::Read(missing)),
        };
    for rid in &outside {
        counts.add_entry(rid, -1);
    }
    for b in &blobs {
        counts.add_blob(b, -1);
    }

    // Runs whose range holds exactly their doomed entries and current values.
    let whole: Vec<(EntryId, EntryId)> = layout
        .runs
        .iter()
        .filter_map(|&(start, len)| {
            let (first, last) = (&ids[start], &ids[start + len - 1]);
            let run: IdMap = doomed
                .iter()
                .filter(|d| first <= &d.id && &d.id <= last)
                .map(|d| (&d.id, d.meta.write_id))
                .collect();
            let metas = reads.found_in(Table::Meta, first, last);
            let (vfirst, vlast) = value_range(first, last);
            let values = reads.found_in(Table::Values, &vfirst, &vlast);
            let exact = vfirst <= vlast
                && !reads.tainted(Table::Meta, first, last)
                && !reads.tainted(Table::Values, &vfirst, &vlast)
                && run.len() == len
                && metas.len() == len
                && metas.iter().all(|k| run.contains_key(k))
                && values
                    .iter()
                    .all(|v| run.iter().any(|(id, w)| value_key(id, *w) == **v));
            exact.then(|| (first.clone(), last.clone()))
        })
        .collect();
    let in_whole = |id: &EntryId| whole.iter().any(|(f, l)| f <= id && id <= l);

    let temps: Vec<(Op, Op)> = doomed
        .iter()
        .filter_map(|d| {
            let staged = Staged::Entry {
                namespace: d.id.namespace.clone(),
                key: d.id.key.clone(),
                writes: vec![d.meta.write_id],
            };
            stage(atomic, staged, d.meta.size, d.meta.updated_at)
        })
        .collect();
    let mut ops: Vec<Op> = temps.iter().map(|(put, _)| put.clone()).collect();
    for (first, last) in &whole {
        ops.push(Op::DeleteRange(Table::Meta, first.clone(), last.clone()));
    }
    // Referrers before the entries they reference: a batch cut short must not
    // leave an entry of the batch referencing one already deleted.
    ops.extend(
        referrers_first(&doomed)
            .into_iter()
            .filter(|d| !in_whole(&d.id))
            .map(|d| Op::Delete(Table::Meta, d.id.clone())),
    );
    ops.extend(counts.decrements());
    for (first, last) in &whole {
        let (vfirst, vlast) = value_range(first, last);
        if !reads.found_in(Table::Values, &vfirst, &vlast).is_empty() {
            ops.push(Op::DeleteRange(Table::Values, vfirst, vlast));
        }
    }
    ops.extend(
        doomed
            .iter()
            .filter(|d| !d.inline && !in_whole(&d.id))
            .map(|d| Op::Delete(Table::Values, value_key(&d.id, d.meta.write_id))),
    );
    ops.extend(temps.into_iter().map(|(_, delete)| delete));
    outcome.deleted.extend(doomed.iter().map(|d| d.action));
    Ok(Step::Write(ops, outcome))
}

/// `doomed` split into those every referrer of which is in the set (they may
/// go together) and those still referenced from outside it: an entry held
/// back holds back what it references, until what may go references only
/// itself. Linear: each reference is followed at most once.
fn referenced_from_outside<'a>(doomed: Vec<Doomed<'a>>) -> (Vec<Doomed<'a>>, Vec<Doomed<'a>>) {
    let targets = member_targets(&doomed, true);
    // How many members reference each member, by index.
    let mut incoming = vec![0u64; doomed.len()];
    for &t in targets.iter().flatten() {
        incoming[t] += 1;
    }
    let outside = |i: usize, incoming: &[u64]| doomed[i].meta.referrers > incoming[i];
    let mut stays: Vec<bool> = (0..doomed.len()).map(|i| outside(i, &incoming)).collect();
    let mut work: Vec<usize> = (0..doomed.len()).filter(|&i| stays[i]).collect();
    while let Some(i) = work.pop() {
        for &t in &targets[i] {
            incoming[t] -= 1;
            if !stays[t] && outside(t, &incoming) {
                stays[t] = true;
                work.push(t);
            }
        }
    }
    let (mut go, mut stay) = (Vec::new(), Vec::new());
    for (d, held) in doomed.into_iter().zip(stays) {
        if held {
            stay.push(d);
        } else {
            go.push(d);
        }
    }
    (go, stay)
}

/// The members of `doomed` each references, by index, each once (with a
/// self-reference when `with_self`).
fn member_targets(doomed: &[Doomed<'_>], with_self: bool) -> Vec<Vec<usize>> {
    let members: Vec<(&EntryId, &[String])> =
        doomed.iter().map(|d| (&d.id, &d.meta.refs[..])).collect();
    targets_among(&members, with_self)
}

/// Of `members` (entries and the keys each references), the members each
/// references, by index, each once (with a self-reference when `with_self`).
fn targets_among(members: &[(&EntryId, &[String])], with_self: bool) -> Vec<Vec<usize>> {
    let index: IdMap = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.0, i as u64))
        .collect();
    members
        .iter()
        .enumerate()
        .map(|(i, (id, refs))| {
            distinct(refs)
                .into_iter()
                .filter_map(|r| index.get(&EntryId::new(id.namespace.clone(), r)))
                .map(|&t| t as usize)
                .filter(|&t| with_self || t != i)
                .collect()
        })
        .collect()
}

/// Entry ids of `doomed` by reference, each with its index there: the one
/// map type the executor uses (each map type costs the module its own code).
type IdMap<'a> = VecMap<&'a EntryId, u64>;

fn id_map<'a>(doomed: &'a [Doomed<'_>]) -> IdMap<'a> {
    doomed
        .iter()
        .enumerate()
        .map(|(i, d)| (&d.id, i as u64))
        .collect()
}

/// Which members of `doomed` are on reference cycles among them
/// (self-references aside), by index, found by peeling: an entry that no
/// remaining entry references, or that references none, is on no cycle.
fn cycle_members(doomed: &[Doomed<'_>]) -> Vec<bool> {
    let targets = member_targets(doomed, false);
    let n = doomed.len();
    let mut sources: Vec<Vec<usize>> = vec![Vec::new(); n];
    let (mut incoming, mut outgoing) = (vec![0usize; n], vec![0usize; n]);
    for (i, ts) in targets.iter().enumerate() {
        outgoing[i] = ts.len();
        for &t in ts {
            incoming[t] += 1;
            sources[t].push(i);
        }
    }
    let mut rest = vec![true; n];
    let mut work: Vec<usize> = (0..n)
        .filter(|&i| incoming[i] == 0 || outgoing[i] == 0)
        .collect();
    while let Some(i) = work.pop() {
        if !rest[i] {
            continue;
        }
        rest[i] = false;
        for &t in &targets[i] {
            incoming[t] -= 1;
            if incoming[t] == 0 {
                work.push(t);
            }
        }
        for &f in &sources[i] {
            outgoing[f] -= 1;
            if outgoing[f] == 0 {
                work.push(f);
            }
        }
    }
    rest
}

/// `doomed` ordered so that every entry comes after the entries of `doomed`
/// that reference it (a self-reference aside). Members of a reference cycle,
/// which no order can serve, follow in their own order.
fn referrers_first<'d, 'a>(doomed: &'d [Doomed<'a>]) -> Vec<&'d Doomed<'a>> {
    let (order, rest) = referrers_order(&member_targets(doomed, false));
    order.into_iter().chain(rest).map(|i| &doomed[i]).collect()
}

/// Indices of a reference graph (`targets[i]`: those `i` references, none
/// itself) in an order where each comes after those referencing it; then
/// the rest: those on a cycle, or referenced from one.
fn referrers_order(targets: &[Vec<usize>]) -> (Vec<usize>, Vec<usize>) {
    let n = targets.len();
    let mut pending = vec![0usize; n];
    for &t in targets.iter().flatten() {
        pending[t] += 1;
    }
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop() {
        order.push(i);
        for &t in &targets[i] {
            pending[t] -= 1;
            if pending[t] == 0 {
                ready.push(t);
            }
        }
    }
    let rest = (0..n).filter(|&i| pending[i] > 0).collect();
    (order, rest)
}

/// The entries that wait, in batches of up to `size`: referrers before what
/// they reference, so that each batch's entries are referenced, of those that
/// wait, only from their batch or batches before it, and a chain of any length
/// goes in one pass; then, in one last batch however large, the cycles among
/// them (a cycle goes only all at once) with what they reference.
fn waiting_batches<'a>(waiting: &[Held<'a>], size: usize) -> Vec<Vec<&'a Action>> {
    let ids: Vec<EntryId> = waiting.iter().map(|h| entry_id(h.0)).collect();
    let members: Vec<(&EntryId, &[String])> = ids
        .iter()
        .zip(waiting)
        .map(|(id, h)| (id, &h.1[..]))
        .collect();
    let (order, rest) = referrers_order(&targets_among(&members, false));
    let of = |ixs: &[usize]| ixs.iter().map(|&i| waiting[i].0).collect::<Vec<_>>();
    let mut batches: Vec<Vec<&'a Action>> = order.chunks(size).map(of).collect();
    if !rest.is_empty() {
        batches.push(of(&rest));
    }
    batches
}

fn distinct_ids(mut ids: Vec<EntryId>) -> Vec<EntryId> {
    crate::sort::sort(&mut ids);
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
                    Err(e) => {
                        report.halted |= matches!(e, StoreError::Closed(_));
                        report.errors.push(item_error(item.action, e.to_string()))
                    }
                }
            }
        }
        Err(e) => fail_all(
            report,
            items.iter().map(|i| i.action),
            &e.to_string(),
            matches!(e, StoreError::Closed(_)),
        ),
    }
}

/// Deletes a batch of blobs, in one transaction where the store has them:
/// each blob record is read again, and the blob goes only if nothing
/// references it and it was not written again since planning.
async fn delete_blobs<S: Store>(store: &S, batch: &[&Action], report: &mut RunReport) {
    let atomic = store.atomic();
    let outcome = store
        .transact(
            Access::Write,
            &[Table::Blobs, Table::BlobMeta, Table::Temps],
            |reads| blob_batch_step(reads, batch, atomic),
        )
        .await;
    match outcome {
        Ok((deleted, kept)) => {
            deleted.iter().for_each(|a| count_deleted(report, a));
            report.kept += kept;
        }
        Err(Error::Store(StoreError::Busy(_))) => report.kept += batch.len() as u64,
        Err(e) => fail_all(
            report,
            batch.iter().copied(),
            &format!("re-check failed: {e}"),
            closed(&e),
        ),
    }
}

/// The pure step of one batch of blob deletions: (deleted, kept).
fn blob_batch_step<'a>(
    reads: &Reads,
    batch: &[&'a Action],
    atomic: bool,
) -> Result<Step<(Vec<&'a Action>, u64)>, Error> {
    let keys: Vec<EntryId> = batch.iter().map(|a| id_key(&a.key)).collect();
    let missing: Vec<Read> = keys
        .iter()
        .filter(|k| !reads.has(Table::BlobMeta, k))
        .map(|k| Read::Key(Table::BlobMeta, k.clone()))
        .collect();
    if !missing.is_empty() {
        return Ok(Step::Read(missing));
    }
    let (mut deleted, mut kept) = (Vec::new(), 0);
    let mut ops = Vec::new();
    let mut temps = Vec::new();
    for (a, key) in batch.iter().zip(keys) {
        let Some(bytes) = reads.get(Table::BlobMeta, &key).flatten() else {
            deleted.push(*a); // already gone
            continue;
        };
        match codec::decode_blob(bytes) {
            Ok(rec) if rec.refs == 0 && Some(rec.created_at) == a.version => {
                let staged = Staged::Blob { id: a.key.clone() };
                if let Some((put, delete)) = stage(atomic, staged, rec.size, rec.created_at) {
                    ops.push(put);
                    temps.push(delete);
                }
                // The record first: once it is gone no writer can reference the blob.
                ops.push(Op::Delete(Table::BlobMeta, key.clone()));
                ops.push(Op::Delete(Table::Blobs, key));
                deleted.push(*a);
            }
            // Referenced, written again, or unreadable: it stays.
            _ => kept += 1,
        }
    }
    ops.extend(temps);
    Ok(if ops.is_empty() {
        Step::Done((deleted, kept))
    } else {
        Step::Write(ops, (deleted, kept))
    })
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
        let rec = codec::decode_temp(&bytes);
        // Written again since it was planned (a blob's temp is named by the
        // blob: a putBlob of the same bytes begun now): it is not stale.
        if matches!((&rec, a.version), (Ok(r), Some(v)) if r.created_at != v) {
            report.kept += 1;
            continue;
        }
        // An unreadable temp names nothing to clean: only the temp goes.
        if let Ok(rec) = rec {
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
                    report.halted |= matches!(e, StoreError::Closed(_));
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
