//! `Sweeper`: the API users call (SPEC §8), over any [`Store`]. Time is passed
//! in as `now`; the JS binding reads its injected clock and passes it on.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt;

use crate::codec::{self, BlobRecord, DecodeError, Staged, StoredValue, TempRecord};
use crate::exec::{self, Cursor, ExecConfig, Progress, RunHost, RunReport};
use crate::model::{blob_id, is_blob_id, EntryId, EntryMeta, Inventory, InventoryEntry, Millis};
use crate::plan::{self, Mode, Plan};
use crate::policy::Policy;
use crate::refcount::{distinct, Counts};
use crate::store::{id_key, stamp, value_key, Op, Store, StoreError, Table};

/// Default largest value `put` and `putBlob` accept: 64 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 << 20;

/// Why a sweeper call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something unusable; the message says what.
    InvalidInput(String),
    /// A value is larger than `maxValueBytes`.
    ValueTooLarge {
        size: usize,
        limit: usize,
    },
    /// An entry references a blob the store does not hold.
    MissingBlob(String),
    /// An entry references another that the store does not hold.
    MissingEntry(EntryId),
    /// `delete` of an entry that other entries still reference.
    Referenced {
        id: EntryId,
        referrers: u64,
    },
    /// A record could not be decoded.
    Corrupt {
        what: String,
        cause: DecodeError,
    },
    /// A write kept colliding with concurrent writes to the same records.
    Busy(String),
    Store(StoreError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidInput(m) => f.write_str(m),
            Error::ValueTooLarge { size, limit } => write!(
                f,
                "value is {size} bytes, more than the limit of {limit} bytes (raise maxValueBytes to store it)"
            ),
            Error::MissingBlob(id) => write!(f, "blob {id} is not in the store: store it with putBlob first"),
            Error::MissingEntry(id) => write!(
                f,
                "refs: entry {:?} is not in namespace {:?}: put it first",
                id.key, id.namespace
            ),
            Error::Referenced { id, referrers } => write!(
                f,
                "entry {:?} in namespace {:?} is referenced by {referrers} other entr{}: delete or rewrite those first",
                id.key,
                id.namespace,
                if *referrers == 1 { "y" } else { "ies" }
            ),
            Error::Corrupt { what, cause } => write!(f, "{what} could not be read: {cause}"),
            Error::Busy(what) => write!(f, "{what} kept colliding with concurrent writes; try again"),
            Error::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

/// Options of `put`, besides the key and value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub ttl_ms: Option<Millis>,
    pub expires_at: Option<Millis>,
    pub group: Option<String>,
    pub pinned: bool,
    pub locked: bool,
    pub dependent: bool,
    pub refs: Vec<String>,
    pub blobs: Vec<String>,
}

/// Settings of a sweeper besides its policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub exec: ExecConfig,
    pub max_value_bytes: usize,
    /// Seeds the ids of this sweeper's writes; sweepers sharing a store need
    /// different ones (the JS binding draws one at random).
    pub write_nonce: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            exec: ExecConfig::default(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            write_nonce: default_nonce(),
        }
    }
}

/// A nonce that differs between processes and between calls.
fn default_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let calls = CALLS.fetch_add(1, Ordering::Relaxed);
    // Neither a clock nor a process id exists on wasm32-unknown-unknown (both
    // panic there): the JS binding passes a random nonce instead.
    #[cfg(not(target_arch = "wasm32"))]
    let process = {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        time ^ u64::from(std::process::id()).rotate_left(40)
    };
    #[cfg(target_arch = "wasm32")]
    let process = 0;
    splitmix64(process ^ calls.wrapping_mul(0xbf58_476d_1ce4_e5b9))
}

/// A well-mixed 64-bit hash of `x` (splitmix64's finaliser).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `State` record of a run that stopped early.
const CURSOR_KEY: &str = "run-cursor";

/// How often a read may refresh an entry's `accessedAt`.
pub const TOUCH_INTERVAL_MS: Millis = 1000;
/// How often a write retries when records it read changed before it applied.
const MAX_ATTEMPTS: usize = 16;

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

/// Keeps a store clean under a policy.
pub struct Sweeper<S: Store> {
    store: S,
    policy: Policy,
    config: Config,
    /// Namespaces known to be registered, so `put` writes the record once.
    registered: RefCell<BTreeSet<String>>,
    progress: RefCell<Progress>,
    /// Writes made, for write ids.
    writes: Cell<u64>,
}

impl<S: Store> Sweeper<S> {
    pub fn new(store: S, policy: Policy, config: Config) -> Self {
        Sweeper {
            store,
            policy,
            config,
            registered: RefCell::new(BTreeSet::new()),
            progress: RefCell::new(Progress {
                phase: "idle",
                ..Progress::default()
            }),
            writes: Cell::new(0),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Stores `value` at `id`. What it references must exist: blobs (store
    /// them with `put_blob` first) and entries of the same namespace. The
    /// namespace is registered on first write.
    pub async fn put(
        &self,
        id: &EntryId,
        value: StoredValue,
        opts: PutOptions,
        now: Millis,
    ) -> Result<(), Error> {
        if id.key.is_empty() {
            return Err(Error::InvalidInput("key must be a non-empty string".into()));
        }
        if value.len() > self.config.max_value_bytes {
            return Err(Error::ValueTooLarge {
                size: value.len(),
                limit: self.config.max_value_bytes,
            });
        }
        if let Some(b) = opts.blobs.iter().find(|b| !is_blob_id(b)) {
            return Err(Error::InvalidInput(format!(
                "blobs: {b:?} is not a blob id (64 lower-case hex digits, as returned by putBlob)"
            )));
        }
        if let Some(r) = opts.refs.iter().find(|r| r.is_empty()) {
            return Err(Error::InvalidInput(format!("refs: {r:?} is not a key")));
        }
        let refs = distinct(&opts.refs);
        let blobs = distinct(&opts.blobs);
        let expires_at = match (opts.ttl_ms, opts.expires_at) {
            (Some(ttl), Some(at)) => Some(now.saturating_add(ttl).min(at)),
            (Some(ttl), None) => Some(now.saturating_add(ttl)),
            (None, at) => at,
        };
        let encoded_value = value.encode();
        for _ in 0..MAX_ATTEMPTS {
            let (old_stamp, old) = self.read_meta(id).await?;
            let old_refs = old.as_ref().map(|m| distinct(&m.refs)).unwrap_or_default();
            let old_blobs = old.as_ref().map(|m| distinct(&m.blobs)).unwrap_or_default();
            let added_refs: Vec<String> = refs
                .iter()
                .filter(|r| !old_refs.contains(r))
                .cloned()
                .collect();
            let removed_refs: Vec<String> = old_refs
                .iter()
                .filter(|r| !refs.contains(r))
                .cloned()
                .collect();
            let added_blobs: Vec<String> = blobs
                .iter()
                .filter(|b| !old_blobs.contains(b))
                .cloned()
                .collect();
            let removed_blobs: Vec<String> = old_blobs
                .iter()
                .filter(|b| !blobs.contains(b))
                .cloned()
                .collect();

            // A reference to itself changes its own count, in its own record.
            let mut referrers = old.as_ref().map_or(0, |m| m.referrers);
            if added_refs.contains(&id.key) {
                referrers += 1;
            }
            if removed_refs.contains(&id.key) {
                referrers = referrers.saturating_sub(1);
            }
            let in_ns = |rs: &[String]| -> Vec<EntryId> {
                rs.iter()
                    .filter(|r| **r != id.key)
                    .map(|r| EntryId::new(id.namespace.clone(), r.clone()))
                    .collect()
            };
            let (added_ids, removed_ids) = (in_ns(&added_refs), in_ns(&removed_refs));
            let ref_ids: Vec<EntryId> = added_ids.iter().chain(&removed_ids).cloned().collect();
            let blob_ids: Vec<String> = added_blobs.iter().chain(&removed_blobs).cloned().collect();
            let mut counts = Counts::read(&self.store, ref_ids, blob_ids).await?;
            for rid in &added_ids {
                if counts.entry(rid).is_none() {
                    return Err(Error::MissingEntry(rid.clone()));
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
                expires_at,
                size: value.len() as u64,
                group: opts.group.clone(),
                pinned: opts.pinned,
                locked: opts.locked,
                dependent: opts.dependent,
                refs: refs.clone(),
                blobs: blobs.clone(),
                write_id: self.next_write_id(),
                referrers,
                rev: old.as_ref().map_or(0, |m| m.rev.wrapping_add(1)),
            };
            let old_write = old.as_ref().map(|m| m.write_id);
            let mut ops = vec![Op::Expect(Table::Meta, id.clone(), old_stamp)];
            ops.extend(counts.expects());
            let temp = self.stage(
                &mut ops,
                Staged::Entry {
                    namespace: id.namespace.clone(),
                    key: id.key.clone(),
                    writes: std::iter::once(meta.write_id).chain(old_write).collect(),
                },
                value.len() as u64,
                now,
            );
            // The new value under its own key, the counts it adds, the commit,
            // then what the old write held.
            ops.push(Op::Put(
                Table::Values,
                value_key(id, meta.write_id),
                encoded_value.clone(),
            ));
            ops.extend(counts.increments(now));
            ops.push(Op::Put(Table::Meta, id.clone(), codec::encode_meta(&meta)));
            ops.extend(counts.decrements());
            if let Some(w) = old_write {
                ops.push(Op::Delete(Table::Values, value_key(id, w)));
            }
            let new_namespace = !self.registered.borrow().contains(&id.namespace);
            if new_namespace {
                ops.push(Op::Put(
                    Table::Namespaces,
                    id_key(&id.namespace),
                    codec::encode_namespace(now),
                ));
            }
            ops.extend(temp);
            match self.store.apply(ops).await {
                Ok(()) => {
                    if new_namespace {
                        self.registered.borrow_mut().insert(id.namespace.clone());
                    }
                    return Ok(());
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Busy(format!("put of {:?}", id.key)))
    }

    /// When the store is not atomic, puts a temp recording `staged` into `ops`
    /// and returns the op that removes it, to go last.
    fn stage(&self, ops: &mut Vec<Op>, staged: Staged, size: u64, now: Millis) -> Option<Op> {
        if self.store.atomic() {
            return None;
        }
        let key = id_key(&temp_id(&staged));
        let record = TempRecord {
            created_at: now,
            size,
            staged,
        };
        ops.push(Op::Put(
            Table::Temps,
            key.clone(),
            codec::encode_temp(&record),
        ));
        Some(Op::Delete(Table::Temps, key))
    }

    fn next_write_id(&self) -> u64 {
        let n = self.writes.get().wrapping_add(1);
        self.writes.set(n);
        splitmix64(self.config.write_nonce ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The entry's metadata with its stamp; `(None, None)` when absent.
    async fn read_meta(&self, id: &EntryId) -> Result<(Option<u64>, Option<EntryMeta>), Error> {
        match self
            .store
            .get(Table::Meta, std::slice::from_ref(id))
            .await?
            .pop()
            .flatten()
        {
            None => Ok((None, None)),
            Some(bytes) => {
                let meta = codec::decode_meta(&bytes).map_err(|cause| Error::Corrupt {
                    what: format!(
                        "metadata of {:?} in namespace {:?} (its references are unknown, so it is left as it is)",
                        id.key, id.namespace
                    ),
                    cause,
                })?;
                Ok((Some(stamp(&bytes)), Some(meta)))
            }
        }
    }

    /// The entry at `id`, or `None` when it is missing or expired (unless pinned).
    pub async fn get(&self, id: &EntryId, now: Millis) -> Result<Option<StoredValue>, Error> {
        Ok(self.detail(id, now, false).await?.map(|(_, v)| v))
    }

    /// The entry's metadata and value; expired ones too when `include_expired`.
    /// A read refreshes `accessedAt` (at most once a second) for LRU eviction.
    pub async fn detail(
        &self,
        id: &EntryId,
        now: Millis,
        include_expired: bool,
    ) -> Result<Option<(EntryMeta, StoredValue)>, Error> {
        for _ in 0..MAX_ATTEMPTS {
            let (Some(meta_stamp), Some(meta)) = self.read_meta(id).await? else {
                return Ok(None);
            };
            let expired = !meta.pinned && meta.expires_at.is_some_and(|t| t <= now);
            if expired && !include_expired {
                return Ok(None);
            }
            let key = value_key(id, meta.write_id);
            let Some(value_bytes) = self.store.get(Table::Values, &[key]).await?.pop().flatten()
            else {
                // A newer write replaced this one between the two reads: read again.
                continue;
            };
            let value = StoredValue::decode(&value_bytes).map_err(|cause| Error::Corrupt {
                what: format!("value of {:?} in namespace {:?}", id.key, id.namespace),
                cause,
            })?;
            if now >= meta.accessed_at.saturating_add(TOUCH_INTERVAL_MS) {
                let mut touched = meta.clone();
                touched.accessed_at = now;
                touched.rev = touched.rev.wrapping_add(1);
                let ops = vec![
                    Op::Expect(Table::Meta, id.clone(), Some(meta_stamp)),
                    Op::Put(Table::Meta, id.clone(), codec::encode_meta(&touched)),
                ];
                // Best effort: a read must not fail because the entry changed meanwhile.
                let _ = self.store.apply(ops).await;
            }
            return Ok(Some((meta, value)));
        }
        Err(Error::Busy(format!("read of {:?}", id.key)))
    }

    /// Deletes the entry at `id`; true if it existed. Refused while other
    /// entries reference it. Its blobs go in the next run.
    pub async fn delete(&self, id: &EntryId) -> Result<bool, Error> {
        for _ in 0..MAX_ATTEMPTS {
            let (Some(old_stamp), Some(old)) = self.read_meta(id).await? else {
                return Ok(false);
            };
            let refs = distinct(&old.refs);
            let self_ref = refs.contains(&id.key) as u64;
            if old.referrers > self_ref {
                return Err(Error::Referenced {
                    id: id.clone(),
                    referrers: old.referrers - self_ref,
                });
            }
            let ref_ids: Vec<EntryId> = refs
                .iter()
                .filter(|r| **r != id.key)
                .map(|r| EntryId::new(id.namespace.clone(), r.clone()))
                .collect();
            let blobs = distinct(&old.blobs);
            let mut counts = Counts::read(&self.store, ref_ids.clone(), blobs.clone()).await?;
            for r in &ref_ids {
                counts.add_entry(r, -1);
            }
            for b in &blobs {
                counts.add_blob(b, -1);
            }
            let mut ops = vec![Op::Expect(Table::Meta, id.clone(), Some(old_stamp))];
            ops.extend(counts.expects());
            let staged = Staged::Entry {
                namespace: id.namespace.clone(),
                key: id.key.clone(),
                writes: vec![old.write_id],
            };
            let temp = self.stage(&mut ops, staged, old.size, old.updated_at);
            ops.push(Op::Delete(Table::Meta, id.clone()));
            ops.extend(counts.decrements());
            ops.push(Op::Delete(Table::Values, value_key(id, old.write_id)));
            ops.extend(temp);
            match self.store.apply(ops).await {
                Ok(()) => return Ok(true),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Busy(format!("delete of {:?}", id.key)))
    }

    /// Stores `bytes` under their SHA-256 and returns the id; the same bytes
    /// are stored once. Storing bytes again restarts the blob's grace period,
    /// so the caller can reference it safely for `orphanGraceMs`.
    pub async fn put_blob(&self, bytes: &[u8], now: Millis) -> Result<String, Error> {
        if bytes.len() > self.config.max_value_bytes {
            return Err(Error::ValueTooLarge {
                size: bytes.len(),
                limit: self.config.max_value_bytes,
            });
        }
        let id = blob_id(bytes);
        let key = id_key(&id);
        for _ in 0..MAX_ATTEMPTS {
            let counts = Counts::read(&self.store, Vec::new(), vec![id.clone()]).await?;
            let mut ops = counts.expects();
            match counts.blob(&id) {
                // Referenced now or not, the caller may reference it soon: its
                // grace restarts, so that dropping today's referrer does not
                // let a run take it from under the caller.
                Some(rec) if rec.created_at >= now => return Ok(id),
                Some(rec) => {
                    let refreshed = BlobRecord {
                        created_at: now,
                        rev: rec.rev.wrapping_add(1),
                        ..rec.clone()
                    };
                    ops.push(Op::Put(
                        Table::BlobMeta,
                        key.clone(),
                        codec::encode_blob(&refreshed),
                    ));
                }
                None => {
                    let staged = Staged::Blob { id: id.clone() };
                    let temp = self.stage(&mut ops, staged, bytes.len() as u64, now);
                    ops.push(Op::Put(Table::Blobs, key.clone(), bytes.to_vec()));
                    let rec = BlobRecord {
                        size: bytes.len() as u64,
                        created_at: now,
                        refs: 0,
                        rev: 0,
                    };
                    ops.push(Op::Put(
                        Table::BlobMeta,
                        key.clone(),
                        codec::encode_blob(&rec),
                    ));
                    ops.extend(temp);
                }
            }
            match self.store.apply(ops).await {
                Ok(()) => return Ok(id),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Busy(format!("putBlob of {id}")))
    }

    /// The blob's bytes, or `None` if the store does not hold it.
    pub async fn get_blob(&self, id: &str) -> Result<Option<Vec<u8>>, Error> {
        if !is_blob_id(id) {
            return Err(Error::InvalidInput(format!(
                "{id:?} is not a blob id (64 lower-case hex digits, as returned by putBlob)"
            )));
        }
        Ok(self
            .store
            .get(Table::Blobs, &[id_key(id)])
            .await?
            .pop()
            .flatten())
    }

    /// Reads the whole store's metadata, page by page. Undecodable records are
    /// listed as corrupt, never dropped.
    pub async fn inventory(&self) -> Result<Inventory, Error> {
        let mut inv = Inventory::default();
        for (id, bytes) in self.list_all(Table::Meta).await? {
            match codec::decode_meta(&bytes) {
                Ok(meta) => inv.entries.push(InventoryEntry { id, meta }),
                Err(_) => inv.corrupt.push(id),
            }
        }
        for (id, bytes) in self.list_all(Table::BlobMeta).await? {
            match codec::decode_blob_info(&id.key, &bytes) {
                Ok(b) => inv.blobs.push(b),
                Err(_) => inv.corrupt_blobs.push(id.key),
            }
        }
        for (id, bytes) in self.list_all(Table::Temps).await? {
            match codec::decode_temp_info(&id.key, &bytes) {
                Ok(t) => inv.temps.push(t),
                Err(_) => inv.corrupt_temps.push(id.key),
            }
        }
        let namespaces: Vec<String> = self
            .list_all(Table::Namespaces)
            .await?
            .into_iter()
            .map(|(id, _)| id.key)
            .collect();
        self.registered
            .borrow_mut()
            .extend(namespaces.iter().cloned());
        inv.namespaces = Some(namespaces);
        Ok(inv)
    }

    async fn list_all(&self, table: Table) -> Result<Vec<crate::store::Record>, Error> {
        let page = self.config.exec.page_size.max(1);
        let mut out: Vec<crate::store::Record> = Vec::new();
        loop {
            let after = out.last().map(|(k, _)| k.clone());
            let got = self.store.list(table, after.as_ref(), page).await?;
            let n = got.len();
            out.extend(got);
            if n < page {
                return Ok(out);
            }
        }
    }

    /// A dry run: what a run in `mode` would delete now, and why.
    pub async fn plan(&self, mode: Mode, now: Millis) -> Result<Plan, Error> {
        let inv = self.inventory().await?;
        Ok(plan::plan(&inv, &self.policy, now, mode))
    }

    /// Plans and runs a cleanup. `host` yields, reports progress and may stop the run.
    pub async fn run<H: RunHost>(
        &self,
        mode: Mode,
        now: Millis,
        host: &mut H,
    ) -> Result<RunReport, Error> {
        // A run stopped early (budget, abort) left a cursor: go on from it, in
        // the stronger of the two modes, over a fresh plan of the store as it is.
        let cursor_key = id_key(CURSOR_KEY);
        let stored = self
            .store
            .get(Table::State, std::slice::from_ref(&cursor_key))
            .await?;
        let cursor: Option<Cursor> = stored
            .into_iter()
            .flatten()
            .find_map(|b| codec::decode(&b).ok());
        let mode = cursor.as_ref().map_or(mode, |c| c.mode.max(mode));
        let mut plan = self.plan(mode, now).await?;
        if let Some(c) = &cursor {
            plan.actions.retain(|a| exec::position(a) > c.after);
        }
        let mut tracked = Tracked {
            inner: host,
            progress: &self.progress,
        };
        let mut report = exec::execute(&self.store, &plan, self.config.exec, &mut tracked).await;
        if let Some(c) = &cursor {
            report.resumed = true;
            report.kept += c.kept;
            for (reason, t) in &c.deleted {
                let total = report.deleted.entry(*reason).or_default();
                total.count += t.count;
                total.bytes = total.bytes.saturating_add(t.bytes);
            }
        }
        let op = match (&report.stopped_after, report.done) {
            (Some(after), false) => {
                let next = Cursor {
                    mode,
                    started_at: cursor.as_ref().map_or(now, |c| c.started_at),
                    after: after.clone(),
                    deleted: report.deleted.clone(),
                    kept: report.kept,
                };
                Some(Op::Put(Table::State, cursor_key, codec::encode(&next)))
            }
            // Stopped before its first batch: the cursor, if any, stays as it was.
            (None, false) => None,
            (_, true) => cursor
                .is_some()
                .then_some(Op::Delete(Table::State, cursor_key)),
        };
        if let Some(op) = op {
            if let Err(e) = self.store.apply(vec![op]).await {
                // The run itself went well; the next one starts from the beginning.
                report.errors.push(exec::ItemError {
                    kind: crate::plan::ActionKind::Temp,
                    namespace: None,
                    key: CURSOR_KEY.into(),
                    message: format!("could not save where the run stopped: {e}"),
                });
            }
        }
        Ok(report)
    }

    /// Recomputes every reference count from the entries and repairs those
    /// that differ (SPEC §5): over-counts that batches cut short on
    /// non-atomic stores leave behind, which would otherwise leak. Safe while
    /// writers run (see `rebuild`).
    pub async fn rebuild(&self) -> Result<crate::rebuild::RebuildReport, Error> {
        let cfg = self.config.exec;
        Ok(
            crate::rebuild::rebuild(&self.store, cfg.page_size.max(1), cfg.batch_size.max(1))
                .await?,
        )
    }

    /// The current run's progress (idle when none runs).
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }
}

/// Copies each progress snapshot into the sweeper before passing it on.
struct Tracked<'a, H> {
    inner: &'a mut H,
    progress: &'a RefCell<Progress>,
}

impl<H: RunHost> RunHost for Tracked<'_, H> {
    async fn between_batches(&mut self, progress: &Progress) -> exec::Flow {
        *self.progress.borrow_mut() = progress.clone();
        let flow = self.inner.between_batches(progress).await;
        if flow == exec::Flow::Stop {
            let mut p = self.progress.borrow_mut();
            p.running = false;
            p.phase = "idle";
        }
        flow
    }
}
