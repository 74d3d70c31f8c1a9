//! Maintenance operations (SPEC §5) beside a cleanup: history, prefix
//! lookup, prune, blob verification, zombie namespaces, the run log and
//! health. Each works through the [`Store`] trait, so on every backend.

use crate::error::Quoted;
use serde::Serialize;

use super::{Sweeper, Tracked};
use crate::codec;
use crate::error::Error;
use crate::exec::{self, RunHost, RunReport};
use crate::model::{blob_id, EntryId, InventoryEntry, Millis};
use crate::plan::{self, Mode};
use crate::policy::{Policy, Rules};
use crate::store::{id_key, Access, Op, Read, Step, Store, StoreError, Table};
use crate::vecmap::{VecMap, VecSet};

/// How many keys `resolve_prefix` lists when a prefix is ambiguous.
pub const AMBIGUOUS_MAX: usize = 20;
/// How many runs the run log keeps.
pub const RUN_LOG_LEN: usize = 32;
/// Blobs `verify` reads at once.
const VERIFY_BATCH: usize = 16;
/// The `State` record of the run log.
const RUN_LOG_KEY: &str = "runs";

/// What a prefix names: one key, several, or none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The key named: the prefix itself when an entry has it, else the only
    /// key that starts with it.
    Key(String),
    /// Several keys start with it: the first [`AMBIGUOUS_MAX`] of them, in
    /// key order.
    Ambiguous(Vec<String>),
    /// No key starts with it.
    None,
}

/// A namespace with entries and no registration record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Zombie {
    /// The namespace's name.
    pub namespace: String,
    /// Entries it holds, readable or not.
    pub entries: u64,
    /// Bytes of their values (an entry that cannot be read counts 0).
    pub bytes: u64,
}

/// Which blobs `verify` reads: those whose id falls in shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which shard: from 0 to `count - 1`.
    pub index: u32,
    /// How many shards the blobs are split into; 0 or 1: one shard, every blob.
    pub count: u32,
}

impl Shard {
    /// Whether the blob `id` (64 hex digits) is in this shard: by its first
    /// eight hex digits, which SHA-256 spreads evenly.
    pub fn holds(&self, id: &str) -> bool {
        let head = id.get(..8).and_then(|h| u32::from_str_radix(h, 16).ok());
        self.count <= 1 || head.is_some_and(|h| h % self.count == self.index)
    }
}

/// An entry that references a blob `verify` found corrupt or missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Referrer {
    /// The entry's namespace.
    pub namespace: String,
    /// The entry's key.
    pub key: String,
    /// The id of the corrupt or missing blob it references.
    pub blob: String,
}

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Blobs read and hashed.
    pub checked: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs whose bytes no longer hash to their id.
    pub corrupt: Vec<String>,
    /// Blobs entries reference that the store does not hold (no record, or
    /// a record without bytes).
    pub missing: Vec<String>,
    /// Blob records that could not be decoded (kept, never inferred garbage).
    pub unreadable: Vec<String>,
    /// Corrupt blobs whose bytes were removed (with `repair`; their records stay).
    pub removed: Vec<String>,
    /// The entries that reference a corrupt or missing blob: reported, never deleted.
    pub referrers: Vec<Referrer>,
}

/// One run as the run log keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRun {
    /// When it started (the run's `now`); of a run in parts, its last part.
    pub at: Millis,
    /// How long it took, in milliseconds (of a run in parts, all its parts).
    pub duration_ms: u64,
    /// The mode it ran in.
    pub mode: Mode,
    /// It went to the end of its plan.
    pub done: bool,
    /// It failed as a whole (the store could not be listed, …).
    pub failed: bool,
    /// What this run deleted itself: a resumed run's report counts the run
    /// it went on from too, its log line does not.
    pub deleted: u64,
    /// The bytes of what it deleted itself.
    pub bytes: u64,
    /// Items that could not be deleted.
    pub errors: u64,
    /// It found entries or blob records it could not read, and kept them
    /// (told by `health`: they hold deletions back).
    #[serde(skip)]
    pub unreadable: bool,
    /// It went on from a run stopped part-way (not kept in the log: a
    /// resumed run's line is that run's, see [`Sweeper::log_run`]).
    #[serde(skip)]
    pub resumed: bool,
}

impl LoggedRun {
    /// The log line of a run that ended with `report` or failed.
    pub fn of(at: Millis, result: Result<&RunReport, ()>) -> LoggedRun {
        match result {
            Ok(r) => LoggedRun {
                at,
                duration_ms: r.duration_ms,
                mode: r.mode,
                done: r.done,
                failed: false,
                deleted: r
                    .deleted
                    .values()
                    .map(|t| t.count)
                    .sum::<u64>()
                    .saturating_sub(r.carried.count),
                bytes: r
                    .deleted
                    .values()
                    .fold(0u64, |a, t| a.saturating_add(t.bytes))
                    .saturating_sub(r.carried.bytes),
                errors: r.errors.len() as u64,
                unreadable: !r.corrupt.is_empty() || !r.corrupt_blobs.is_empty(),
                resumed: r.resumed,
            },
            Err(()) => LoggedRun {
                at,
                failed: true,
                ..LoggedRun::default()
            },
        }
    }

    const BYTES: usize = 41;

    fn encode_into(&self, out: &mut Vec<u8>) {
        for n in [
            self.at,
            self.duration_ms,
            self.deleted,
            self.bytes,
            self.errors,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        let flags = u8::from(self.done)
            | u8::from(self.failed) << 1
            | u8::from(self.mode == Mode::Full) << 2
            | u8::from(self.unreadable) << 3;
        out.push(flags);
    }

    fn decode(b: &[u8]) -> Option<LoggedRun> {
        let n = |i: usize| {
            Some(u64::from_le_bytes(
                b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        let flags = *b.get(40)?;
        Some(LoggedRun {
            at: n(0)?,
            duration_ms: n(1)?,
            deleted: n(2)?,
            bytes: n(3)?,
            errors: n(4)?,
            done: flags & 1 != 0,
            failed: flags & 2 != 0,
            mode: if flags & 4 != 0 {
                Mode::Full
            } else {
                Mode::Light
            },
            unreadable: flags & 8 != 0,
            resumed: false,
        })
    }
}

/// Adds `run` to the log `runs`: a run that went on from one stopped
/// part-way, the last logged of its mode, adds to its line (one line a run,
/// though a light run after a delete came in between), which moves to the
/// end with the time of its last part: health judges the last run, and when
/// one last succeeded, by it.
fn append_run(runs: &mut Vec<LoggedRun>, run: &LoggedRun) {
    let at = runs.iter().rposition(|r| r.mode == run.mode);
    match at.filter(|&i| run.resumed && !runs[i].done && !runs[i].failed) {
        Some(i) => {
            let mut line = runs.remove(i);
            // Each at most what one run can reach.
            line.duration_ms += run.duration_ms;
            line.deleted += run.deleted;
            line.bytes += run.bytes;
            line.errors += run.errors;
            line.done = run.done;
            line.unreadable = run.unreadable;
            line.at = run.at;
            runs.push(line);
        }
        None => runs.push(run.clone()),
    }
}

/// The run log's record: newest last, at most [`RUN_LOG_LEN`]. Bytes that are
/// not a whole log read as none (a log is advice, not data).
pub fn decode_run_log(bytes: &[u8]) -> Vec<LoggedRun> {
    match bytes.split_first() {
        Some((&STATE_FORMAT, runs)) if runs.len() % LoggedRun::BYTES == 0 => runs,
        _ => return Vec::new(),
    }
    .chunks(LoggedRun::BYTES)
    .filter_map(LoggedRun::decode)
    .collect()
}

fn encode_run_log(runs: &[LoggedRun]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + runs.len() * LoggedRun::BYTES);
    out.push(STATE_FORMAT);
    for r in runs {
        r.encode_into(&mut out);
    }
    out
}

/// The first byte of the run log and the audit record: their layout's
/// version, so that a later layout is read as none rather than misread.
const STATE_FORMAT: u8 = 1;

/// How maintenance is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Nothing to report.
    Healthy,
    /// Something wants a look: the last run failed or could not delete some
    /// items, a lease lapsed, garbage was left behind, the audit found bad
    /// blobs, records cannot be read, the backlog is large, or no run is
    /// logged yet.
    Warning,
    /// Cleanup is not happening: no successful run within two periods, the
    /// last three runs failed, or none of three or more logged succeeded.
    Critical,
}

/// `health()`: a status, the reasons for it, and what it was judged on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// The worst status any reason gives.
    pub status: HealthStatus,
    /// Why, one sentence each for a person to read; empty when healthy.
    pub reasons: Vec<String>,
    /// When the last run that went to its end without errors began (of a
    /// run in parts, its last part).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<Millis>,
    /// The run log, newest last.
    pub runs: Vec<LoggedRun>,
}

/// What `health` judges besides the run log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthFacts {
    /// The scheduler's period (0: no periodic runs).
    pub period_ms: Millis,
    /// A run's lease that ran out without being released: its end.
    pub lapsed_lease: Option<Millis>,
    /// A run stopped before the end of its plan and left a cursor: when that run began.
    pub unfinished_since: Option<Millis>,
    /// The rolling audit's last shard, when it found problems.
    pub audit: Option<AuditState>,
}

/// Judges health from the run log (SPEC §5), purely. Critical: no successful
/// run within two periods, or the last three runs failed. Warning: a run's
/// lease lapsed (it crashed or is stuck), the last run failed or could not
/// delete some items, a run left garbage behind for more than a period, the
/// rolling audit found bad blobs, or no run is logged yet.
pub fn assess(runs: Vec<LoggedRun>, facts: HealthFacts, now: Millis) -> Health {
    let mut reasons: Vec<(HealthStatus, String)> = Vec::new();
    // A run stopped part-way (a budget, an abort) is no success: the
    // garbage past where it stopped is still there.
    let success = |r: &&LoggedRun| r.done && !r.failed && r.errors == 0;
    let last_success_at = runs.iter().rev().find(success).map(|r| r.at);
    let period = facts.period_ms;
    match (runs.last(), last_success_at) {
        (None, _) => reasons.push((
            HealthStatus::Warning,
            "no run is logged in this store yet".into(),
        )),
        (Some(_), Some(at)) if period > 0 && now.saturating_sub(at) > period.saturating_mul(2) => {
            reasons.push((
                HealthStatus::Critical,
                format!(
                    "no successful run for {} ms, more than two periods of {period} ms",
                    now - at
                ),
            ))
        }
        // Runs stopped part-way alone (cancelled by hand, say) are not
        // alarming: one that failed or could not delete items is.
        (Some(_), None) if runs.iter().filter(|r| r.failed || r.errors > 0).count() >= 3 => {
            reasons.push((HealthStatus::Critical, "no run in the log succeeded".into()))
        }
        // Fewer: not yet alarming, but no better than no run at all (runs
        // stopped by hand read as healthy beside "last success: never").
        (Some(_), None) => reasons.push((
            HealthStatus::Warning,
            "no run in the log has gone to its end without errors yet".into(),
        )),
        _ => {}
    }
    let failed_in_row = runs.iter().rev().take_while(|r| r.failed).count();
    if failed_in_row >= 3 {
        reasons.push((
            HealthStatus::Critical,
            format!("the last {failed_in_row} runs failed"),
        ));
    } else if let Some(last) = runs.last() {
        if last.failed {
            reasons.push((HealthStatus::Warning, "the last run failed".into()));
        } else if last.errors > 0 {
            reasons.push((
                HealthStatus::Warning,
                format!(
                    "the last run could not delete {} {}",
                    last.errors,
                    if last.errors == 1 { "item" } else { "items" }
                ),
            ));
        }
    }
    if runs.last().is_some_and(|r| r.unreadable) {
        reasons.push((
            HealthStatus::Warning,
            "the last run found records it cannot read and kept them (plan() lists them): an unreadable entry holds back deletions in its namespace, and of every unreferenced blob, until it is put again or deleted by key".into(),
        ));
    }
    if let Some(until) = facts.lapsed_lease {
        reasons.push((
            HealthStatus::Warning,
            format!(
                "a run's lease ran out {} ms ago without being released: it crashed or is stuck",
                now.saturating_sub(until)
            ),
        ));
    }
    // Its cursor, or, where it stopped before saving one (before its first
    // batch, or among entries waiting for others), the log's last line.
    let unfinished = facts
        .unfinished_since
        .or_else(|| runs.last().filter(|r| !r.done && !r.failed).map(|r| r.at));
    if let Some(since) = unfinished {
        let age = now.saturating_sub(since);
        if period > 0 && age > period {
            reasons.push((
                HealthStatus::Warning,
                format!("garbage is left behind: a run begun {age} ms ago stopped before its end and has not been finished"),
            ));
        }
    }
    if let Some(a) = &facts.audit {
        let problems: u64 = a.bad.iter().map(|b| b.1).sum();
        let shards: Vec<String> = a.bad.iter().map(|b| b.0.to_string()).collect();
        let s = if shards.len() == 1 { "" } else { "s" };
        reasons.push((
            HealthStatus::Warning,
            format!(
                "the rolling audit found {problems} corrupt, missing or unreadable blobs in shard{s} {} of {}; verify() lists them",
                shards.join(", "),
                a.count
            ),
        ));
    }
    let status = reasons
        .iter()
        .map(|r| r.0)
        .max()
        .unwrap_or(HealthStatus::Healthy);
    Health {
        status,
        reasons: reasons.into_iter().map(|r| r.1).collect(),
        last_success_at,
        runs,
    }
}

impl Health {
    /// Weighs the garbage backlog too: a warning when a full plan found
    /// more than `max` items to delete, or entries it could not read (which
    /// hold back their namespace and every blob).
    pub fn weigh_backlog(&mut self, (found, unreadable, blobs): (u64, usize, usize), max: u64) {
        if blobs > 0 {
            self.status = self.status.max(HealthStatus::Warning);
            self.reasons.push(format!(
                "blob records that cannot be read: {blobs}; their blobs are kept (verify() lists them)"
            ));
        }
        if unreadable > 0 {
            self.status = self.status.max(HealthStatus::Warning);
            self.reasons.push(format!(
                "{unreadable} {} cannot be read: no run deletes in {} namespace, nor any blob, \
                 until {} put again or deleted (put(key), delete(key))",
                if unreadable == 1 { "entry" } else { "entries" },
                if unreadable == 1 { "its" } else { "their" },
                if unreadable == 1 { "it is" } else { "they are" },
            ));
        }
        if found > max {
            self.status = self.status.max(HealthStatus::Warning);
            self.reasons.push(format!(
                "{found} {} of garbage wait for a cleanup, more than maxBacklog ({max}); run a full cleanup",
                if found == 1 { "item" } else { "items" }
            ));
        }
    }
}

impl<S: Store> Sweeper<S> {
    /// Whether `namespace` is registered or holds entries.
    async fn namespace_exists(&self, namespace: &str) -> Result<bool, Error> {
        if self.registered.borrow().contains_key(namespace) {
            return Ok(true);
        }
        let record = self
            .store
            .get(Table::Namespaces, &[id_key(namespace)])
            .await?;
        if record.into_iter().flatten().next().is_some() {
            return Ok(true);
        }
        let mut cursor = Some(EntryId::new(namespace, ""));
        Ok(!self
            .namespace_page(namespace, &mut cursor)
            .await?
            .is_empty())
    }

    /// An error for a namespace that is neither registered nor holds entries.
    pub async fn known_namespace(&self, namespace: &str, what: &str) -> Result<(), Error> {
        if self.namespace_exists(namespace).await? {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "{what}: no namespace {} (none is registered or holds entries)",
                Quoted(namespace)
            )))
        }
    }

    /// The `limit` most recently updated entries (of `namespace`, or of
    /// all), newest first, with their metadata. Expired entries count; undecodable ones do not.
    pub async fn history<H: RunHost>(
        &self,
        namespace: Option<&str>,
        limit: usize,
        host: &mut H,
    ) -> Result<Vec<InventoryEntry>, Error> {
        let limit = limit.max(1);
        let mut best: Vec<InventoryEntry> = Vec::new();
        let newest_first = |a: &InventoryEntry, b: &InventoryEntry| {
            b.meta
                .updated_at
                .cmp(&a.meta.updated_at)
                .then_with(|| a.id.cmp(&b.id))
        };
        let keep = |page: Vec<crate::store::Record>, best: &mut Vec<InventoryEntry>| {
            for (id, bytes) in page {
                if let Ok(meta) = codec::decode_meta(&bytes) {
                    best.push(InventoryEntry { id, meta });
                }
            }
            if best.len() > limit.saturating_mul(2) {
                crate::sort::sort_by(best, newest_first);
                best.truncate(limit);
            }
        };
        match namespace {
            Some(ns) => {
                let mut cursor = Some(EntryId::new(ns, ""));
                loop {
                    let page = self.namespace_page(ns, &mut cursor).await?;
                    if page.is_empty() {
                        break;
                    }
                    keep(page, &mut best);
                }
            }
            None => {
                self.list_pages_hosted(host, Table::Meta, |page| keep(page, &mut best))
                    .await?
            }
        }
        crate::sort::sort_by(&mut best, newest_first);
        best.truncate(limit);
        Ok(best)
    }

    /// The key `prefix` names in `namespace`: itself when an entry has it,
    /// else the only key that starts with it; the candidates (at most
    /// [`AMBIGUOUS_MAX`]) when several do. Only keys `get` would return count.
    /// Reads from the prefix's place in key order, never the whole store.
    pub async fn resolve_prefix(
        &self,
        namespace: &str,
        prefix: &str,
        now: Millis,
    ) -> Result<Resolved, Error> {
        if prefix.is_empty() {
            return Err(Error::InvalidInput(
                "resolvePrefix: prefix must be a non-empty string, got \"\"".into(),
            ));
        }
        let (keys, _) = self
            .keys_page(namespace, prefix, None, AMBIGUOUS_MAX + 1, false, now)
            .await?;
        let mut keys: Vec<String> = keys.into_iter().map(|(k, _)| k).collect();
        Ok(match keys.len() {
            0 => Resolved::None,
            1 => Resolved::Key(keys.remove(0)),
            _ if keys.iter().any(|k| k == prefix) => Resolved::Key(prefix.to_string()),
            _ => {
                keys.truncate(AMBIGUOUS_MAX);
                Resolved::Ambiguous(keys)
            }
        })
    }

    /// Deletes the entries not updated for `older_than_ms` (pinned ones
    /// excepted), with what they alone held: a full run under a policy of that
    /// age alone, so an old entry a fresher one references stays (SPEC §2).
    /// It neither resumes nor leaves a run cursor.
    pub async fn prune<H: RunHost>(
        &self,
        older_than_ms: Millis,
        now: Millis,
        host: &mut H,
    ) -> Result<RunReport, Error> {
        let policy = Policy {
            rules: Rules {
                max_age_ms: Some(older_than_ms),
                ..Rules::default()
            },
            namespaces: VecMap::new(),
            ..self.policy.clone()
        };
        self.forget_plan();
        let _ = self.flush_touches().await;
        let inv = match self.inventory_hosted(host).await {
            Err(Error::Stopped) => {
                return Ok(RunReport {
                    mode: Mode::Full,
                    ..Default::default()
                })
            }
            other => other?,
        };
        let plan =
            plan::plan_with(&inv, &policy, now, Mode::Full, &mut super::HostPause(host)).await;
        drop(inv);
        let mut tracked = Tracked {
            inner: host,
            progress: &self.progress,
            before: (0, 0),
        };
        Ok(exec::execute(&self.store, &plan, self.config.exec, &mut tracked).await)
    }

    /// Namespaces that hold entries but have no registration record, with
    /// their entries and bytes.
    pub async fn zombies<H: RunHost>(&self, host: &mut H) -> Result<Vec<Zombie>, Error> {
        let inv = self.inventory_hosted(host).await?;
        let registered: VecSet<&str> = inv
            .namespaces
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let mut found: VecMap<&str, Zombie> = VecMap::new();
        let ids = inv
            .entries
            .iter()
            .map(|e| (&e.id, e.meta.size))
            .chain(inv.corrupt.iter().map(|id| (id, 0)));
        for (id, size) in ids {
            if registered.contains(id.namespace.as_str()) {
                continue;
            }
            let z = found
                .entry(id.namespace.as_str())
                .or_insert_with(|| Zombie {
                    namespace: id.namespace.clone(),
                    entries: 0,
                    bytes: 0,
                });
            z.entries += 1;
            z.bytes = z.bytes.saturating_add(size);
        }
        Ok(found.into_values().collect())
    }

    /// Deletes a namespace: every entry (as `clear` does, counted under
    /// `cleared`), then its registration record. Entries written meanwhile
    /// are kept, and so is the record then (they would be zombies otherwise).
    pub async fn delete_namespace<H: RunHost>(
        &self,
        namespace: &str,
        host: &mut H,
    ) -> Result<RunReport, Error> {
        self.known_namespace(namespace, "deleteNamespace").await?;
        let report = self.clear(namespace, host).await?;
        // The record goes only if no entry is left (one written since the
        // clear keeps it, or that entry would be a zombie). A put racing this
        // check in another context can still land unregistered: zombies()
        // lists it.
        let mut after = Some(EntryId::new(namespace, ""));
        let left = !self.namespace_page(namespace, &mut after).await?.is_empty();
        if report.done && !left && report.errors.is_empty() {
            let key = id_key(namespace);
            self.registered.borrow_mut().remove(namespace);
            self.store
                .transact(Access::Write, &[Table::Namespaces], |reads| {
                    match reads.get(Table::Namespaces, &key) {
                        None => Ok(Step::Read(vec![Read::Key(Table::Namespaces, key.clone())])),
                        Some(None) => Ok(Step::Done(())),
                        Some(Some(_)) => Ok(Step::Write(
                            vec![Op::Delete(Table::Namespaces, key.clone())],
                            (),
                        )),
                    }
                })
                .await?;
        }
        Ok(report)
    }

    /// Recomputes the SHA-256 of the blobs in `shard` (all by default) and
    /// compares it with their ids; with `repair`, removes a corrupt blob's
    /// bytes (re-checked in the transaction that removes them; its record
    /// and counts stay) and reports the entries that referenced it, which
    /// are never deleted for it. `putBlob` on this Sweeper of a blob found
    /// missing or removed writes its bytes again; with `repair`, on any
    /// Sweeper too (the blob's record is marked lost).
    pub async fn verify<H: RunHost>(
        &self,
        shard: Option<Shard>,
        repair: bool,
        host: &mut H,
    ) -> Result<VerifyReport, Error> {
        let shard = shard.unwrap_or(Shard { index: 0, count: 1 });
        if shard.index >= shard.count {
            return Err(Error::InvalidInput(
                "verify: a shard's index must be below its count".into(),
            ));
        }
        let inv = self.inventory_hosted(host).await?;
        let mut report = VerifyReport::default();
        let held: VecSet<&str> = inv
            .blobs
            .iter()
            .map(|b| b.id.as_str())
            .chain(inv.corrupt_blobs.iter().map(String::as_str))
            .collect();
        report.unreadable = inv
            .corrupt_blobs
            .iter()
            .filter(|id| shard.holds(id))
            .cloned()
            .collect();
        let ids: Vec<&str> = inv
            .blobs
            .iter()
            .map(|b| b.id.as_str())
            .filter(|id| shard.holds(id))
            .collect();
        let mut missing: VecSet<String> = VecSet::new();
        let mut corrupt: VecSet<String> = VecSet::new();
        // Blobs whose bytes are right, and recorded ones without their bytes.
        let (mut fine, mut gone): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for chunk in ids.chunks(VERIFY_BATCH) {
            let keys: Vec<EntryId> = chunk.iter().map(|id| id_key(id)).collect();
            let got = self.store.get(Table::Blobs, &keys).await?;
            for (id, bytes) in chunk.iter().zip(got) {
                match bytes {
                    None => {
                        missing.insert(id.to_string());
                        gone.push(id);
                    }
                    Some(b) => {
                        report.checked += 1;
                        report.bytes += b.len() as u64;
                        if blob_id(&b) != *id {
                            corrupt.insert(id.to_string());
                        } else {
                            fine.push(id);
                        }
                    }
                }
            }
        }
        // Referenced blobs that have no record at all.
        for e in &inv.entries {
            for b in &e.meta.blobs {
                if shard.holds(b) && !held.contains(b.as_str()) {
                    missing.insert(b.clone());
                }
            }
        }
        for e in &inv.entries {
            for b in &e.meta.blobs {
                if missing.contains(b.as_str()) || corrupt.contains(b.as_str()) {
                    report.referrers.push(Referrer {
                        namespace: e.id.namespace.clone(),
                        key: e.id.key.clone(),
                        blob: b.clone(),
                    });
                }
            }
        }
        // What putBlob should write again (see `lost_blobs`): recorded
        // blobs found without their bytes (a blob with no record at all is
        // written whole anyway), then those whose corrupt bytes go below.
        // Not borrowed across an await: a call beside this one may use it.
        {
            let mut lost = self.lost_blobs.borrow_mut();
            for id in fine {
                lost.remove(id);
            }
            for id in &gone {
                lost.insert(id.to_string());
            }
        }
        if repair {
            // Marked in their records too, for every Sweeper's putBlob
            // (only where the mark's write is checked: see `mark_lost`).
            let cas = self.store.capabilities().compare_and_set;
            for id in gone.into_iter().filter(|_| cas) {
                self.mark_lost(id).await?;
            }
            for id in corrupt.iter() {
                if self.mark_lost(id).await? {
                    report.removed.push(id.clone());
                    self.lost_blobs.borrow_mut().insert(id.clone());
                }
            }
        }
        report.corrupt = corrupt.into_iter().collect();
        report.missing = missing.into_iter().collect();
        Ok(report)
    }

    /// Marks blob `id`'s record lost (see `BlobRecord::lost`) if, read again
    /// in the same transaction, its bytes are gone or do not hash to it,
    /// and removes such bytes; whether it removed them. Not marked on a
    /// store without compare-and-set (only this Sweeper's `putBlob` writes
    /// the bytes again there). The record, and the
    /// reference count in it, stay: the blob reads as missing until
    /// `putBlob` of its bytes, by any Sweeper, writes them again (a record
    /// written anew would count no referrer, and a run would trust it). The
    /// mark goes first: a batch cut short leaves bytes still to remove, not
    /// bytes gone unmarked.
    async fn mark_lost(&self, id: &str) -> Result<bool, Error> {
        let key = id_key(id);
        let cas = self.store.capabilities().compare_and_set;
        self.store
            .transact(Access::Write, &[Table::Blobs, Table::BlobMeta], |reads| {
                let (Some(bytes), Some(record)) = (
                    reads.get(Table::Blobs, &key),
                    reads.get(Table::BlobMeta, &key),
                ) else {
                    return Ok(Step::Read(vec![
                        Read::Key(Table::Blobs, key.clone()),
                        Read::Key(Table::BlobMeta, key.clone()),
                    ]));
                };
                let corrupt = bytes.as_ref().is_some_and(|b| blob_id(b) != id);
                if bytes.is_some() && !corrupt {
                    return Ok(Step::Done(false));
                }
                let mut ops = Vec::new();
                // Only where the write is checked against the record read:
                // without compare-and-set it could put back an older count
                // and time over a put's, and a run trust them.
                if let Some(rec) = record
                    .filter(|_| cas)
                    .and_then(|r| codec::decode_blob(r).ok())
                {
                    if !rec.lost {
                        let rec = codec::BlobRecord {
                            lost: true,
                            rev: rec.rev.wrapping_add(1),
                            ..rec
                        };
                        ops.push(Op::Put(
                            Table::BlobMeta,
                            key.clone(),
                            codec::encode_blob(&rec),
                        ));
                    }
                }
                if corrupt {
                    ops.push(Op::Delete(Table::Blobs, key.clone()));
                }
                Ok(if ops.is_empty() {
                    Step::Done(false)
                } else {
                    Step::Write(ops, corrupt)
                })
            })
            .await
    }

    /// The rolling audit (SPEC §5): verifies the next of `count` shards (no
    /// repair) and records where it stands, so that successive calls, one
    /// per scheduled full run, cover the whole store every `count` calls.
    /// Problems found are kept for `health` until the next audit of a shard.
    pub async fn audit<H: RunHost>(
        &self,
        count: u32,
        now: Millis,
        host: &mut H,
    ) -> Result<(Shard, VerifyReport), Error> {
        let key = id_key(AUDIT_KEY);
        let got = self
            .store
            .get(Table::State, std::slice::from_ref(&key))
            .await?;
        let state = got[0]
            .as_deref()
            .and_then(AuditState::decode)
            .unwrap_or_default();
        let count = count.max(1);
        let index = if state.count == u64::from(count) {
            (state.next % u64::from(count)) as u32
        } else {
            0
        };
        let shard = Shard { index, count };
        let report = self.verify(Some(shard), false, host).await?;
        let problems =
            (report.corrupt.len() + report.missing.len() + report.unreadable.len()) as u64;
        // What other shards found stays until each is audited again; another
        // shard count starts afresh.
        let mut bad = if state.count == u64::from(count) {
            state.bad
        } else {
            Vec::new()
        };
        bad.retain(|&(s, _)| s != u64::from(index));
        let mut at = state.at;
        if problems > 0 {
            bad.push((u64::from(index), problems));
            at = now;
        }
        let drop = bad.len().saturating_sub(AUDIT_BAD_MAX);
        bad.drain(..drop);
        let next = AuditState {
            next: u64::from((index + 1) % count),
            count: u64::from(count),
            at,
            bad,
        };
        self.store
            .apply(vec![Op::Put(Table::State, key, next.encode())])
            .await?;
        Ok((shard, report))
    }

    /// Appends a run to the store's run log (best effort: a log is advice).
    /// A run that went on from the one logged last, stopped part-way (the
    /// slices of a sliced run), adds to its line: one line a run, so that
    /// slices do not push older runs out of the log.
    pub async fn log_run(&self, run: LoggedRun) {
        let key = id_key(RUN_LOG_KEY);
        let _ = self
            .store
            .transact(Access::Write, &[Table::State], |reads| {
                let Some(old) = reads.get(Table::State, &key) else {
                    return Ok(Step::Read(vec![Read::Key(Table::State, key.clone())]));
                };
                let mut runs = old.map(decode_run_log).unwrap_or_default();
                append_run(&mut runs, &run);
                let drop = runs.len().saturating_sub(RUN_LOG_LEN);
                runs.drain(..drop);
                Ok(Step::Write(
                    vec![Op::Put(Table::State, key.clone(), encode_run_log(&runs))],
                    (),
                ))
            })
            .await;
    }

    /// The run log, newest last.
    pub async fn run_log(&self) -> Result<Vec<LoggedRun>, Error> {
        let got = self.store.get(Table::State, &[id_key(RUN_LOG_KEY)]).await?;
        Ok(got
            .into_iter()
            .flatten()
            .next()
            .map(|b| decode_run_log(&b))
            .unwrap_or_default())
    }

    /// How many items a full run would delete now, and how many entries and
    /// blob records it could not read: the garbage backlog `health` can
    /// weigh ([`Health::weigh_backlog`]).
    pub async fn backlog<H: RunHost>(
        &self,
        now: Millis,
        host: &mut H,
    ) -> Result<(u64, usize, usize), Error> {
        let plan = self.plan_hosted(Mode::Full, now, host).await?;
        let s = &plan.summary;
        Ok((
            plan.actions.len() as u64,
            s.corrupt.len(),
            s.corrupt_blobs.len(),
        ))
    }

    /// Health from the run log, the lease and the run cursor (see [`assess`]).
    /// [`Sweeper::run`] logs nothing: a caller logs each run with
    /// [`Sweeper::log_run`], as the JavaScript binding does.
    pub async fn health(&self, period_ms: Millis, now: Millis) -> Result<Health, Error> {
        let keys = [
            id_key(RUN_LOG_KEY),
            id_key(super::LEASE_KEY),
            id_key(super::CURSOR_KEY),
            id_key(AUDIT_KEY),
        ];
        let mut got = self.store.get(Table::State, &keys).await?.into_iter();
        let log = got.next().flatten();
        let runs = log.as_deref().map(decode_run_log).unwrap_or_default();
        // A record there, no run read from it, and not an empty log: not
        // "no run yet".
        let unreadable_log = runs.is_empty() && log.is_some_and(|b| b != [STATE_FORMAT]);
        let lapsed_lease = got
            .next()
            .flatten()
            .and_then(|b| super::Lease::decode(&b))
            .map(|l| l.until)
            .filter(|&until| until <= now);
        let unfinished_since = got
            .next()
            .flatten()
            .and_then(|b| exec::Cursor::decode(&b).ok())
            .map(|c| c.started_at);
        let audit = got
            .next()
            .flatten()
            .and_then(|b| AuditState::decode(&b))
            .filter(|a| !a.bad.is_empty());
        let facts = HealthFacts {
            period_ms,
            lapsed_lease,
            unfinished_since,
            audit,
        };
        let mut health = assess(runs, facts, now);
        if unreadable_log {
            health.reasons[0] =
                "the run log cannot be read (damaged, or a newer version's); the next run starts a new one"
                    .into();
        }
        Ok(health)
    }
}

/// The `State` record of the rolling audit: after a format byte, the next
/// shard, the shard count, when a shard last found problems, then each shard
/// found with problems and how many; each a little-endian u64.
const AUDIT_KEY: &str = "audit";

/// Most shards with problems the audit record keeps (the oldest go first).
const AUDIT_BAD_MAX: usize = 64;

/// Where the rolling audit stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditState {
    pub next: u64,
    pub count: u64,
    pub at: Millis,
    /// Shards found with problems (corrupt, missing or unreadable blobs) and
    /// how many, oldest first: each stays until that shard is audited clean.
    pub bad: Vec<(u64, u64)>,
}

impl AuditState {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![STATE_FORMAT];
        let numbers = [self.next, self.count, self.at].into_iter();
        for n in numbers.chain(self.bad.iter().flat_map(|&(s, p)| [s, p])) {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out
    }

    fn decode(b: &[u8]) -> Option<AuditState> {
        let (&STATE_FORMAT, rest) = b.split_first()? else {
            return None;
        };
        if rest.len() < 24 || rest.len() % 16 != 8 {
            return None;
        }
        let n: Vec<u64> = rest
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        Some(AuditState {
            next: n[0],
            count: n[1],
            at: n[2],
            bad: n[3..].chunks(2).map(|p| (p[0], p[1])).collect(),
        })
    }
}

/// The target's `State` record that marks a move into it as begun, so that
/// a move cut short is resumed rather than refused as a non-empty target.
const MOVE_MARK_KEY: &str = "move-in";

/// The tables `move_to` copies, blobs first so that no entry copied ever
/// references a blob the target lacks. The source is cleared the other way
/// round, entries first and blobs last, so that it stays consistent if the
/// clear is cut short.
const MOVED: [Table; 5] = [
    Table::Blobs,
    Table::BlobMeta,
    Table::Values,
    Table::Namespaces,
    Table::Meta,
];

/// How many times `move_to` lists the source before it gives up on a
/// source that keeps changing under it.
const MOVE_PASSES: usize = 4;

/// The move mark's phases: copying (a resumed move may delete from the
/// target what the source no longer holds), and clearing (it must not: the
/// source's copies may be what the move already cleared).
const MOVE_COPYING: u8 = 1;
const MOVE_CLEARING: u8 = 2;

/// What `move_to` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveReport {
    /// Entries (metadata records) copied, and their values kept in records of their own.
    pub entries: u64,
    /// Value records copied (of entries whose value has a record of its own).
    pub values: u64,
    /// Blobs copied and their bytes, every one hashed on the way.
    pub blobs: u64,
    /// Bytes of the blobs copied.
    pub blob_bytes: u64,
    /// Namespace registration records copied.
    pub namespaces: u64,
    /// Passes over the source: the first copies, each next one copies what
    /// changed meanwhile, until one finds nothing new.
    pub passes: u64,
    /// Every copied record was read back from the target and found equal
    /// (blobs hashed again there). False leaves the source untouched.
    pub verified: bool,
    /// Entries, namespaces and blobs deleted from the source after the copy
    /// was verified.
    pub cleared: u64,
    /// Entries the source kept (rewritten since their copy, or referenced by
    /// one written since): with the namespaces and blobs they use.
    pub left: u64,
    /// Entries whose metadata cannot be read, and blobs whose record cannot
    /// be read or whose source bytes do not hash to their id: the move
    /// stops before it clears anything (delete or mend them, and call it
    /// again to resume).
    pub corrupt: Vec<EntryId>,
    /// Blobs, by id, whose record cannot be read or whose source bytes do not
    /// hash to their id.
    pub corrupt_blobs: Vec<String>,
    /// Blobs, by id, recorded in the source without their bytes (lost
    /// before the move, as `verify` reports them missing): their records
    /// are copied as they are, so the target lacks the bytes as the source
    /// did. Not a reason to stop: `putBlob` of the bytes mends them.
    pub missing_blobs: Vec<String>,
    /// A move cut short before was resumed.
    pub resumed: bool,
}

/// What one move has copied, per table of [`MOVED`]: each record's stamp;
/// and of entries their write and size, of blobs when their record began.
#[derive(Default)]
struct Copied {
    stamps: [VecMap<EntryId, u64>; 5],
    entries: VecMap<EntryId, (u64, u64)>,
    blobs: VecMap<EntryId, Millis>,
}

impl Copied {
    fn of(&self, table: Table) -> &VecMap<EntryId, u64> {
        &self.stamps[MOVED.iter().position(|m| *m == table).unwrap_or(0)]
    }
}

impl<S: Store> Sweeper<S> {
    /// Copies every namespace, entry and blob to `target`, verifies the copy
    /// (record by record, blobs hashed), then empties the source of what it
    /// copied the way `clear` deletes (the executor's checks: an entry goes
    /// only if it still holds the write copied and nothing left references
    /// it), then namespaces no entry is left in, then blobs no entry
    /// references. A write during the copy is copied by a later pass; one
    /// during the clear stays in the source with what it uses. The target
    /// must hold no entries, unless a move into it was cut short: then it
    /// resumes. Runs' state (cursor, lease, log), temps and stray value
    /// records stay with the source. Refused on a source without
    /// compare-and-set, whose deletes could not be checked.
    pub async fn move_to<H: RunHost>(&self, target: &S, host: &mut H) -> Result<MoveReport, Error> {
        if !self.store.capabilities().compare_and_set {
            return Err(Error::InvalidInput(
                "moveTo: the source store has no compare-and-set, so a write during the move could be lost; copy it with the store's own tools".into(),
            ));
        }
        // The same store twice (one database opened twice) would be copied
        // onto itself and then cleared: a record only the source holds tells.
        let probe = id_key("move-probe");
        let nonce = self.next_write_id().to_le_bytes().to_vec();
        self.store
            .apply(vec![Op::Put(Table::State, probe.clone(), nonce.clone())])
            .await?;
        let seen = target.get(Table::State, std::slice::from_ref(&probe)).await;
        self.store
            .apply(vec![Op::Delete(Table::State, probe)])
            .await?;
        if seen?[0].as_deref() == Some(&nonce[..]) {
            return Err(Error::InvalidInput(
                "moveTo: the target is the source store itself".into(),
            ));
        }
        // Reads' deferred refreshes of accessedAt go with the copy: else the
        // target would rank entries just read as unused.
        let _ = self.flush_touches().await;
        let mark = id_key(MOVE_MARK_KEY);
        let phase = target
            .get(Table::State, std::slice::from_ref(&mark))
            .await?[0]
            .as_ref()
            .and_then(|m| m.first().copied());
        if phase.is_none() && !target.list(Table::Meta, None, 1).await?.is_empty() {
            return Err(Error::InvalidInput(
                "moveTo: the target store already holds entries; move into an empty store".into(),
            ));
        }
        let mut report = MoveReport {
            resumed: phase.is_some(),
            ..MoveReport::default()
        };
        let clearing = phase == Some(MOVE_CLEARING);
        let mut copied = Copied::default();
        if !clearing {
            target
                .apply(vec![Op::Put(
                    Table::State,
                    mark.clone(),
                    vec![MOVE_COPYING],
                )])
                .await?;
            if phase.is_some() {
                // What an earlier try copied: so that what the source has
                // dropped since goes from the target too.
                for (i, table) in MOVED.into_iter().enumerate() {
                    let mut listed = Vec::new();
                    list_all_into(target, table, &mut listed).await?;
                    copied.stamps[i] = listed.into_iter().collect();
                }
            }
        }
        loop {
            report.passes += 1;
            let changes = self
                .copy_pass(target, &mut copied, !clearing, &mut report, host)
                .await?;
            if !report.corrupt.is_empty() || !report.corrupt_blobs.is_empty() {
                // A blob whose record and bytes are both bad: once.
                crate::sort::sort(&mut report.corrupt_blobs);
                report.corrupt_blobs.dedup();
                return Ok(report);
            }
            if changes == 0 {
                break;
            }
            if report.passes as usize == MOVE_PASSES {
                return Err(Error::InvalidInput(format!(
                    "moveTo: the source changed during each of {MOVE_PASSES} passes over it; stop writing to it and call moveTo again (the target holds a partial copy, the source is untouched)"
                )));
            }
        }
        report.entries = copied.of(Table::Meta).len() as u64;
        report.values = copied.of(Table::Values).len() as u64;
        report.blobs = copied.of(Table::Blobs).len() as u64;
        report.namespaces = copied.of(Table::Namespaces).len() as u64;
        let bytes = copied.of(Table::Blobs);
        report.missing_blobs = copied
            .of(Table::BlobMeta)
            .keys()
            .filter(|k| !bytes.contains_key(*k))
            .map(|k| k.key.clone())
            .collect();
        self.check_copy(target, &copied, host).await?;
        report.verified = true;
        target
            .apply(vec![Op::Put(
                Table::State,
                mark.clone(),
                vec![MOVE_CLEARING],
            )])
            .await?;
        self.clear_moved(&copied, &mut report, host).await?;
        target.apply(vec![Op::Delete(Table::State, mark)]).await?;
        Ok(report)
    }

    /// One pass over the source: copies to `target` every record that is
    /// new or changed since its last copy and, when `drop_gone`, deletes
    /// from `target` what the source no longer holds; returns how many
    /// records it copied or deleted.
    async fn copy_pass<H: RunHost>(
        &self,
        target: &S,
        copied: &mut Copied,
        drop_gone: bool,
        report: &mut MoveReport,
        host: &mut H,
    ) -> Result<usize, Error> {
        let batch = self.config.exec.batch_size.max(1);
        let mut changes = 0;
        let mut entries: Vec<(EntryId, (u64, u64))> = Vec::new();
        let mut blobs: Vec<(EntryId, Millis)> = Vec::new();
        for (i, table) in MOVED.into_iter().enumerate() {
            // This pass's listing, in key order: the next state of `copied`.
            let mut listed: Vec<(EntryId, u64)> = Vec::new();
            let mut after: Option<EntryId> = None;
            // Blobs a few at a time: their bytes may be large.
            let page = if table == Table::Blobs {
                VERIFY_BATCH
            } else {
                self.config.exec.page_size.max(1)
            };
            loop {
                if host.stopped() {
                    return Err(Error::Stopped);
                }
                let records = self.store.list(table, after.as_ref(), page).await?;
                let n = records.len();
                after = records.last().map(|(k, _)| k.clone());
                let mut ops = Vec::new();
                for (key, bytes) in records {
                    let stamp = crate::store::stamp(&bytes);
                    match table {
                        Table::Meta => match codec::decode_meta(&bytes) {
                            Ok(m) => entries.push((key.clone(), (m.write_id, m.size))),
                            // Not cleared, so not moved: the move stops
                            // before clearing, and resumes once it is mended.
                            Err(_) => report.corrupt.push(key.clone()),
                        },
                        Table::BlobMeta => match codec::decode_blob(&bytes) {
                            Ok(b) => blobs.push((key.clone(), b.created_at)),
                            Err(_) => report.corrupt_blobs.push(key.key.clone()),
                        },
                        _ => {}
                    }
                    listed.push((key.clone(), stamp));
                    if copied.stamps[i].get(&key) == Some(&stamp) {
                        continue;
                    }
                    if table == Table::Blobs {
                        if blob_id(&bytes) != key.key {
                            report.corrupt_blobs.push(key.key);
                            continue;
                        }
                        report.blob_bytes += bytes.len() as u64;
                    }
                    ops.push(Op::Put(table, key, bytes));
                }
                changes += ops.len();
                while !ops.is_empty() {
                    let rest = ops.split_off(ops.len().min(batch));
                    target.apply(std::mem::replace(&mut ops, rest)).await?;
                }
                if n < page {
                    break;
                }
                host.pause().await;
            }
            let now: VecMap<EntryId, u64> = listed.into_iter().collect();
            let gone: Vec<Op> = copied.stamps[i]
                .keys()
                .filter(|k| !now.contains_key(*k))
                .map(|k| Op::Delete(table, k.clone()))
                .collect();
            if drop_gone {
                changes += gone.len();
                for chunk in gone.chunks(batch) {
                    target.apply(chunk.to_vec()).await?;
                }
            }
            copied.stamps[i] = now;
        }
        copied.entries = entries.into_iter().collect();
        copied.blobs = blobs.into_iter().collect();
        Ok(changes)
    }

    /// Reads every copied record back from `target`, a table at a time
    /// (blobs a few at once), and checks it is what was copied.
    async fn check_copy<H: RunHost>(
        &self,
        target: &S,
        copied: &Copied,
        host: &mut H,
    ) -> Result<(), Error> {
        let batch = self.config.exec.batch_size.max(1);
        for (i, table) in MOVED.into_iter().enumerate() {
            let pairs: Vec<(&EntryId, &u64)> = copied.stamps[i].iter().collect();
            let size = if table == Table::Blobs {
                VERIFY_BATCH
            } else {
                batch
            };
            for chunk in pairs.chunks(size) {
                let keys: Vec<EntryId> = chunk.iter().map(|(k, _)| (*k).clone()).collect();
                let got = target.get(table, &keys).await?;
                for ((key, stamp), bytes) in chunk.iter().zip(got) {
                    let same = bytes.is_some_and(|b| {
                        crate::store::stamp(&b) == **stamp
                            && (table != Table::Blobs || blob_id(&b) == key.key)
                    });
                    if !same {
                        return Err(Error::InvalidInput(format!(
                            "moveTo: the target did not keep the record {} of {} as written; the source is untouched",
                            Quoted(&key.key),
                            table.name()
                        )));
                    }
                }
                host.pause().await;
            }
        }
        Ok(())
    }

    /// Empties the source of what was copied: the entries through the
    /// executor (as `clear` does), then each namespace no entry is left in,
    /// then each blob no entry references and not written again since.
    async fn clear_moved<H: RunHost>(
        &self,
        copied: &Copied,
        report: &mut MoveReport,
        host: &mut H,
    ) -> Result<(), Error> {
        let actions: Vec<plan::Action> = copied
            .entries
            .iter()
            .map(|(id, &(write_id, size))| plan::Action {
                kind: plan::ActionKind::Entry,
                namespace: Some(id.namespace.clone()),
                key: id.key.clone(),
                reason: plan::Reason::Cleared,
                bytes: size,
                version: Some(write_id),
                listed: None,
            })
            .collect();
        let run = self.delete_entries(actions, host).await;
        report.cleared += run.deleted.values().map(|t| t.count).sum::<u64>();
        if !run.done {
            return Err(Error::Stopped);
        }
        // A put by this sweeper would skip registering a namespace it knows.
        self.registered.borrow_mut().clear();
        for (ns, stamp) in copied.of(Table::Namespaces).iter() {
            let mut after = Some(EntryId::new(ns.key.as_str(), ""));
            if !self.namespace_page(&ns.key, &mut after).await?.is_empty() {
                continue;
            }
            let gone = self
                .store
                .transact(Access::Write, &[Table::Namespaces], |reads| {
                    match reads.get(Table::Namespaces, ns) {
                        None => Ok(Step::Read(vec![Read::Key(Table::Namespaces, ns.clone())])),
                        Some(Some(b)) if crate::store::stamp(b) == *stamp => Ok(Step::Write(
                            vec![Op::Delete(Table::Namespaces, ns.clone())],
                            true,
                        )),
                        Some(_) => Ok(Step::Done(false)),
                    }
                })
                .await?;
            report.cleared += u64::from(gone);
        }
        for (id, created_at) in copied.blobs.iter() {
            let gone = self
                .store
                .transact(Access::Write, &[Table::BlobMeta, Table::Blobs], |reads| {
                    let (Some(record), Some(bytes)) =
                        (reads.get(Table::BlobMeta, id), reads.get(Table::Blobs, id))
                    else {
                        return Ok(Step::Read(vec![
                            Read::Key(Table::BlobMeta, id.clone()),
                            Read::Key(Table::Blobs, id.clone()),
                        ]));
                    };
                    // Unreferenced and not written again since its copy.
                    let unused = record
                        .and_then(|r| codec::decode_blob(r).ok())
                        .is_some_and(|r| r.refs == 0 && r.created_at == *created_at);
                    if !unused {
                        return Ok(Step::Done(false));
                    }
                    let mut ops = vec![Op::Delete(Table::BlobMeta, id.clone())];
                    if bytes.is_some() {
                        ops.push(Op::Delete(Table::Blobs, id.clone()));
                    }
                    Ok(Step::Write(ops, true))
                })
                .await?;
            report.cleared += u64::from(gone);
            host.pause().await;
        }
        self.list_pages_hosted(host, Table::Meta, |page| report.left += page.len() as u64)
            .await
    }
}

/// What `migrate` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrateReport {
    /// Entry records read.
    pub scanned: u64,
    /// Already in the layout this release writes.
    pub current: u64,
    /// Rewritten in this release's layout.
    pub upgraded: u64,
    /// Of those, entries whose value moved from a record of its own into
    /// the entry's record (stores with all-or-nothing batches).
    pub inlined: u64,
    /// Entries written again while `migrate` read them: left as their
    /// writer wrote them (in this release's layout).
    pub changed: u64,
    /// Records that could not be read (damaged, or written by a newer
    /// format version): kept as they are, never rewritten.
    pub unreadable: Vec<EntryId>,
}

impl<S: Store> Sweeper<S> {
    /// Rewrites entry records an earlier release wrote in an older layout of
    /// the format: metadata from before `accessedAt` (SPEC §1) gets the
    /// field (its `updatedAt`: no use known since), and on stores with
    /// all-or-nothing batches a value of at most [`codec::INLINE_MAX`] bytes
    /// kept in a record of its own moves into its entry's record, the way
    /// this release writes it (one record to read). Each rewrite is guarded:
    /// an entry written meanwhile is left as its writer wrote it. Records
    /// that cannot be read are reported, never touched. Safe to call again:
    /// a migrate cut short resumes where it finds older records, and the
    /// records already rewritten count as current. Refused on a store
    /// without compare-and-set, where a rewrite could undo a write made
    /// meanwhile (its older records are read as they are). Whether a value
    /// may move is judged by the entry's recorded `size`: an entry put with
    /// a `size` above 8 KiB (Cache Storage's, which records the response's
    /// size) keeps its value in its own record.
    pub async fn migrate<H: RunHost>(&self, host: &mut H) -> Result<MigrateReport, Error> {
        if !self.store.capabilities().compare_and_set {
            return Err(Error::InvalidInput(
                "migrate: the store has no compare-and-set, so a rewrite could undo a write made meanwhile; its older records are read as they are".into(),
            ));
        }
        let atomic = self.store.atomic();
        let page = self.config.exec.page_size.max(1);
        let batch = self.config.exec.batch_size.max(1);
        let mut report = MigrateReport::default();
        let mut after: Option<EntryId> = None;
        loop {
            if host.stopped() {
                return Err(Error::Stopped);
            }
            let records = self.store.list(Table::Meta, after.as_ref(), page).await?;
            let n = records.len();
            after = records.last().map(|(k, _)| k.clone());
            // Older records, each with its stamp and whether its value may move inline.
            let mut older: Vec<(EntryId, u64, bool)> = Vec::new();
            for (id, bytes) in records {
                report.scanned += 1;
                match codec::decode_meta_layout(&bytes) {
                    Err(_) => report.unreadable.push(id),
                    Ok((meta, before)) => {
                        let inline = atomic
                            && !crate::write::has_inline_value(&bytes)
                            && meta.size <= codec::INLINE_MAX as u64;
                        if before || inline {
                            older.push((id, crate::store::stamp(&bytes), inline));
                        } else {
                            report.current += 1;
                        }
                    }
                }
            }
            // Values to move are read in the transaction: a few at a time,
            // as `size` (which `put` may be given) only hints at their bytes.
            let (values, metas): (Vec<_>, Vec<_>) = older.into_iter().partition(|o| o.2);
            for chunk in values.chunks(VERIFY_BATCH).chain(metas.chunks(batch)) {
                let counts = match self.migrate_chunk(chunk).await {
                    // Without transactions, an entry that keeps changing fails
                    // its whole chunk: the others go one by one, and it counts
                    // as changed.
                    Err(Error::Store(StoreError::Busy(_))) => {
                        let mut sum = [0u64; 4];
                        for one in chunk.chunks(1) {
                            let counts = match self.migrate_chunk(one).await {
                                Err(Error::Store(StoreError::Busy(_))) => [0, 0, 0, 1],
                                other => other?,
                            };
                            for (s, c) in sum.iter_mut().zip(counts) {
                                *s += c;
                            }
                        }
                        sum
                    }
                    other => other?,
                };
                let [current, upgraded, inlined, changed] = counts;
                report.current += current;
                report.upgraded += upgraded;
                report.inlined += inlined;
                report.changed += changed;
            }
            if n < page {
                return Ok(report);
            }
            host.pause().await;
        }
    }
}

impl<S: Store> Sweeper<S> {
    /// One guarded rewrite of some older entries (see [`migrate_step`]).
    async fn migrate_chunk(&self, chunk: &[(EntryId, u64, bool)]) -> Result<[u64; 4], Error> {
        self.store
            .transact(Access::Write, &[Table::Meta, Table::Values], |reads| {
                migrate_step(reads, chunk)
            })
            .await
    }
}

/// The step of `migrate` over some older entries (id, stamp when listed,
/// whether the value may move inline): answers how many were current after
/// all, rewritten, inlined, and changed meanwhile.
fn migrate_step(
    reads: &crate::store::Reads,
    older: &[(EntryId, u64, bool)],
) -> Result<Step<[u64; 4]>, Error> {
    let mut need: Vec<Read> = older
        .iter()
        .filter(|(id, _, _)| reads.get(Table::Meta, id).is_none())
        .map(|(id, _, _)| Read::Key(Table::Meta, id.clone()))
        .collect();
    if !need.is_empty() {
        return Ok(Step::Read(need));
    }
    let mut ops = Vec::new();
    let mut counts = [0u64; 4];
    for (id, listed, inline) in older {
        let Some(Some(bytes)) = reads.get(Table::Meta, id) else {
            counts[3] += 1;
            continue;
        };
        let decoded = codec::decode_meta_layout(bytes);
        let (Ok((meta, before)), true) = (decoded, crate::store::stamp(bytes) == *listed) else {
            counts[3] += 1;
            continue;
        };
        let mut value = None;
        if *inline {
            let key = crate::store::value_key(id, meta.write_id);
            match reads.get(Table::Values, &key) {
                None => {
                    need.push(Read::Key(Table::Values, key));
                    continue;
                }
                Some(Some(v)) if v.len() <= codec::INLINE_MAX => value = Some((key, v)),
                Some(_) => {}
            }
        }
        let record = match &value {
            Some((_, v)) => codec::encode_entry(&meta, Some(v)),
            None if before => {
                codec::reencode_meta(bytes, &meta).map_err(|cause| Error::Corrupt {
                    what: format!(
                        "metadata of {} in namespace {}",
                        Quoted(&id.key),
                        Quoted(&id.namespace)
                    ),
                    cause,
                })?
            }
            None => {
                counts[0] += 1;
                continue;
            }
        };
        ops.push(Op::Put(Table::Meta, id.clone(), record));
        counts[1] += 1;
        if let Some((key, _)) = value {
            ops.push(Op::Delete(Table::Values, key));
            counts[2] += 1;
        }
    }
    if !need.is_empty() {
        return Ok(Step::Read(need));
    }
    Ok(if ops.is_empty() {
        Step::Done(counts)
    } else {
        Step::Write(ops, counts)
    })
}

/// Every record of `table` in `store`, with its stamp, in key order.
async fn list_all_into<S: Store>(
    store: &S,
    table: Table,
    out: &mut Vec<(EntryId, u64)>,
) -> Result<(), Error> {
    let mut after: Option<EntryId> = None;
    loop {
        let page = store.list(table, after.as_ref(), 1000).await?;
        let n = page.len();
        after = page.last().map(|(k, _)| k.clone());
        out.extend(page.into_iter().map(|(k, b)| (k, crate::store::stamp(&b))));
        if n < 1000 {
            return Ok(());
        }
    }
}
