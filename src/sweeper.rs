//! `Sweeper`: the API users call (SPEC §8), over any [`Store`]. Time is passed
//! in as `now`; the JS binding reads its injected clock and passes it on.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

use crate::codec::{self, DecodeError, StoredValue};
use crate::exec::{self, ExecConfig, Progress, RunHost, RunReport};
use crate::model::{
    blob_id, is_blob_id, BlobInfo, EntryId, EntryMeta, Inventory, InventoryEntry, Millis,
};
use crate::plan::{self, Mode, Plan};
use crate::policy::Policy;
use crate::store::{id_key, Op, Store, StoreError, Table};

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
    /// A record could not be decoded.
    Corrupt {
        what: String,
        cause: DecodeError,
    },
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
            Error::Corrupt { what, cause } => write!(f, "{what} could not be read: {cause}"),
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            exec: ExecConfig::default(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
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
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Stores `value` at `id`. Entries it references must exist (blobs) or may
    /// come later (entries); the namespace is registered on first write.
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
        for b in &opts.blobs {
            if !is_blob_id(b) {
                return Err(Error::InvalidInput(format!(
                    "blobs: {b:?} is not a blob id (64 lower-case hex digits, as returned by putBlob)"
                )));
            }
        }
        if let Some(r) = opts.refs.iter().find(|r| r.is_empty()) {
            return Err(Error::InvalidInput(format!("refs: {r:?} is not a key")));
        }
        if !opts.blobs.is_empty() {
            let keys: Vec<EntryId> = opts.blobs.iter().map(|b| id_key(b)).collect();
            let found = self.store.get(Table::BlobMeta, &keys).await?;
            if let Some((b, _)) = opts.blobs.iter().zip(found).find(|(_, f)| f.is_none()) {
                return Err(Error::MissingBlob(b.clone()));
            }
        }
        let existing = self
            .store
            .get(Table::Meta, std::slice::from_ref(id))
            .await?;
        let created_at = existing
            .into_iter()
            .flatten()
            .find_map(|bytes| codec::decode_meta(&bytes).ok())
            .map_or(now, |m| m.created_at);
        let expires_at = match (opts.ttl_ms, opts.expires_at) {
            (Some(ttl), Some(at)) => Some(now.saturating_add(ttl).min(at)),
            (Some(ttl), None) => Some(now.saturating_add(ttl)),
            (None, at) => at,
        };
        let meta = EntryMeta {
            created_at,
            updated_at: now,
            accessed_at: now,
            expires_at,
            size: value.len() as u64,
            group: opts.group,
            pinned: opts.pinned,
            locked: opts.locked,
            dependent: opts.dependent,
            refs: opts.refs,
            blobs: opts.blobs,
        };
        let mut ops = vec![
            Op::Put(Table::Values, id.clone(), value.encode()),
            Op::Put(Table::Meta, id.clone(), codec::encode_meta(&meta)),
        ];
        let new_namespace = !self.registered.borrow().contains(&id.namespace);
        if new_namespace {
            ops.push(Op::Put(
                Table::Namespaces,
                id_key(&id.namespace),
                codec::encode_namespace(now),
            ));
        }
        self.store.apply(ops).await?;
        if new_namespace {
            self.registered.borrow_mut().insert(id.namespace.clone());
        }
        Ok(())
    }

    /// The entry at `id`, or `None` when it is missing or expired (unless pinned).
    pub async fn get(&self, id: &EntryId, now: Millis) -> Result<Option<StoredValue>, Error> {
        Ok(self.detail(id, now, false).await?.map(|(_, v)| v))
    }

    /// The entry's metadata and value; expired ones too when `include_expired`.
    pub async fn detail(
        &self,
        id: &EntryId,
        now: Millis,
        include_expired: bool,
    ) -> Result<Option<(EntryMeta, StoredValue)>, Error> {
        let ids = std::slice::from_ref(id);
        let Some(meta_bytes) = self.store.get(Table::Meta, ids).await?.pop().flatten() else {
            return Ok(None);
        };
        let meta = codec::decode_meta(&meta_bytes).map_err(|cause| Error::Corrupt {
            what: format!("metadata of {:?} in namespace {:?}", id.key, id.namespace),
            cause,
        })?;
        let expired = !meta.pinned && meta.expires_at.is_some_and(|t| t <= now);
        if expired && !include_expired {
            return Ok(None);
        }
        let Some(value_bytes) = self.store.get(Table::Values, ids).await?.pop().flatten() else {
            return Ok(None);
        };
        let value = StoredValue::decode(&value_bytes).map_err(|cause| Error::Corrupt {
            what: format!("value of {:?} in namespace {:?}", id.key, id.namespace),
            cause,
        })?;
        Ok(Some((meta, value)))
    }

    /// Deletes the entry at `id`; true if it existed. Its blobs go in the next light run.
    pub async fn delete(&self, id: &EntryId) -> Result<bool, Error> {
        let existed = self
            .store
            .get(Table::Meta, std::slice::from_ref(id))
            .await?
            .pop()
            .flatten()
            .is_some();
        self.store
            .apply(vec![
                Op::Delete(Table::Meta, id.clone()),
                Op::Delete(Table::Values, id.clone()),
            ])
            .await?;
        Ok(existed)
    }

    /// Stores `bytes` under their SHA-256 and returns the id; the same bytes are stored once.
    pub async fn put_blob(&self, bytes: &[u8], now: Millis) -> Result<String, Error> {
        if bytes.len() > self.config.max_value_bytes {
            return Err(Error::ValueTooLarge {
                size: bytes.len(),
                limit: self.config.max_value_bytes,
            });
        }
        let id = blob_id(bytes);
        let key = id_key(&id);
        if self
            .store
            .get(Table::BlobMeta, std::slice::from_ref(&key))
            .await?
            .pop()
            .flatten()
            .is_some()
        {
            return Ok(id);
        }
        let info = BlobInfo {
            id: id.clone(),
            size: bytes.len() as u64,
            created_at: now,
        };
        self.store
            .apply(vec![
                Op::Put(Table::Blobs, key.clone(), bytes.to_vec()),
                Op::Put(Table::BlobMeta, key, codec::encode_blob_info(&info)),
            ])
            .await?;
        Ok(id)
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
            // An unreadable temp is still a temp: date it 0 so it counts as stale.
            let t = codec::decode_temp_info(&id.key, &bytes).unwrap_or(crate::model::TempInfo {
                id: id.key.clone(),
                size: 0,
                created_at: 0,
            });
            inv.temps.push(t);
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
        let plan = self.plan(mode, now).await?;
        let mut tracked = Tracked {
            inner: host,
            progress: &self.progress,
        };
        Ok(exec::execute(&self.store, &plan, self.config.exec, &mut tracked).await)
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
