//! The IndexedDB backend: one object store per table, keys `[namespace, key]`,
//! values `Uint8Array`. Each `apply` is one transaction. `indexedDB` comes from
//! the global object, so pages, workers and Node (fake-indexeddb) all work.

use crate::error::Quoted;
use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    IdbDatabase, IdbFactory, IdbKeyRange, IdbObjectStore, IdbRequest, IdbTransaction,
    IdbTransactionMode,
};

use crate::error::Error;
use crate::model::EntryId;
use crate::store::{
    stamp, Access, Capabilities, DynStep, Op, Read, Reads, Record, Step, Store, StoreError, Table,
};

/// The schema version this release creates.
const DB_VERSION: u32 = 1;

/// A kvsweep store in one IndexedDB database.
#[derive(Debug)]
pub struct IdbStore {
    db: IdbDatabase,
    /// The page after the one `list` last read, requested before that page
    /// was converted, so IndexedDB reads it while wasm decodes. Used only by
    /// that `list` call, reading on past keys of another shape, or by the
    /// very next call on this store if that is the `list` call asking for
    /// it; any call that begins a transaction drops it.
    next_page: std::cell::RefCell<Option<PageRequest>>,
    /// Holds later calls back while a write committed early is unconfirmed.
    gate: Gate,
    /// `close()` was called.
    closed: std::cell::Cell<bool>,
}

/// The order of this store's transactions is the order of the calls that
/// make them: IndexedDB runs transactions over the same tables in the order
/// they were created. A write of one `add`, made while no call waits here,
/// is committed without waiting for its success (`IdbStore::add_one`), and
/// when the add meets a record after
/// all, the write goes again in a transaction of its own that must still
/// come before every later call's. So while such a write is unconfirmed, the
/// calls after it wait here, in call order, before they begin their
/// transactions. (One retry is outside this, as it was before the gate: a
/// write on guessed records whose step writes nothing on the records as
/// read goes again after the calls begun meanwhile.)
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// The last place taken in the queue, released when its holder lets
    /// the calls after it go.
    tail: std::cell::RefCell<Option<Promise>>,
}

/// A place in a [`Gate`]'s queue: the calls after it wait until it drops.
pub(crate) struct Place<'a> {
    gate: &'a Gate,
    /// Resolved when it lets the calls after it go: what they wait for.
    mine: Promise,
    release: Option<Function>,
    /// The place before it, while this one still waits for it.
    before: Option<Promise>,
}

impl Gate {
    /// Waits until every call queued before this one has gone; at once when
    /// none is. A transaction begun right after (no `await` in between)
    /// keeps its call's place.
    pub(crate) async fn pass(&self) {
        if self.busy() {
            drop(self.hold().await);
        }
    }

    /// Whether a call waits here, or holds the calls after it back.
    fn busy(&self) -> bool {
        self.tail.borrow().is_some()
    }

    /// [`Gate::pass`], holding every call after this one back until the
    /// place returned drops.
    async fn hold(&self) -> Place<'_> {
        let mut release = None;
        let mine = Promise::new(&mut |resolve: Function, _| release = Some(resolve));
        let before = self.tail.replace(Some(mine.clone()));
        let mut place = Place {
            gate: self,
            mine,
            release,
            before: before.clone(),
        };
        if let Some(before) = before {
            // It only ever resolves.
            let _ = JsFuture::from(before).await;
        }
        place.before = None;
        place
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        // A place given up while it still waits (its future dropped) lets
        // the calls after it go only when the one before it does: resolved
        // with that promise, it follows it. It stays the gate's tail until a
        // later call takes its place there (so one more call waits for it).
        let Some(release) = &self.release else { return };
        if let Some(before) = &self.before {
            let _ = release.call1(&JsValue::UNDEFINED, before);
            return;
        }
        let last =
            matches!(&*self.gate.tail.borrow(), Some(p) if js_sys::Object::is(p, &self.mine));
        if last {
            self.gate.tail.replace(None);
        }
        let _ = release.call0(&JsValue::UNDEFINED);
    }
}

/// A requested page of a listing: the table, the key it starts after, its
/// limit, and the two requests reading its keys and values.
#[derive(Debug)]
struct PageRequest {
    table: Table,
    /// The key it starts after, when it is kvsweep's (`None`: from the
    /// start, or after a key of another shape: see `after_foreign`).
    after: Option<EntryId>,
    /// It starts after a key of another shape: no call asks for it.
    after_foreign: bool,
    limit: u32,
    keys: IdbRequest,
    values: IdbRequest,
}

/// A JS error as a store error, by its name (shared with `jskv`).
pub(crate) fn js_error(e: &JsValue) -> StoreError {
    let name = Reflect::get(e, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    let message = Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| e.as_string())
        // String(e), for a thrown value that is neither an Error nor a
        // string (join gives "" for undefined and null).
        .unwrap_or_else(|| match e.is_null() {
            _ if e.is_undefined() => "undefined".into(),
            true => "null".into(),
            false => String::from(js_sys::Array::of1(e).join("")),
        });
    // kvsweep's own refusals (kv.js's) say "kvsweep: " once, where the
    // message they end up in begins.
    let message = match message.strip_prefix("kvsweep: ") {
        Some(rest) => rest.to_string(),
        None => message,
    };
    match name.as_str() {
        "QuotaExceededError" => StoreError::QuotaExceeded(message),
        "InvalidStateError" => StoreError::Closed(message),
        // A key–value driver refusing a listing page past a run's maxOps.
        "KvsweepOutOfCalls" => StoreError::OutOfCalls(message),
        "" | "Error" => StoreError::Backend(message),
        _ => StoreError::Backend(format!("{name}: {message}")),
    }
}

/// Waits for a request to succeed or fail, resolving on a microtask so the
/// transaction stays open for the next request.
async fn settle(req: &IdbRequest) -> Result<JsValue, StoreError> {
    // A request that finished while we awaited an earlier one has fired its event already.
    if req.ready_state() == web_sys::IdbRequestReadyState::Done {
        return match req.error() {
            Ok(Some(e)) => Err(js_error(&e)),
            _ => req.result().map_err(|e| js_error(&e)),
        };
    }
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    req.set_onsuccess(None);
    req.set_onerror(None);
    match outcome {
        Ok(_) => req.result().map_err(|e| js_error(&e)),
        Err(_) => Err(req.error().ok().flatten().map_or_else(
            || StoreError::Backend("request failed".into()),
            |e| js_error(&e),
        )),
    }
}

/// Waits for a transaction to commit.
async fn committed(tx: &IdbTransaction) -> Result<(), StoreError> {
    ended(tx).await.map_err(aborted)
}

/// How `tx` ended: with the error it aborted with, if it did (`None`: an
/// abort with no error, as `abort()` makes).
async fn ended(tx: &IdbTransaction) -> Result<(), Option<web_sys::DomException>> {
    // A failed request aborts the transaction unless its error event is
    // cancelled (or, by the spec's text, `commit()` was called: see
    // `add_one`), and a failed commit aborts it too: `abort` is the failure.
    // (`error` events are left to `ExistingKeys`, which cancels the expected ones.)
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        tx.set_oncomplete(Some(&resolve));
        tx.set_onabort(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    tx.set_oncomplete(None);
    tx.set_onabort(None);
    outcome.map(|_| ()).map_err(|_| tx.error())
}

/// The store error of a transaction that aborted with `error`.
fn aborted(error: Option<web_sys::DomException>) -> StoreError {
    error.map_or_else(
        || StoreError::Backend("transaction aborted".into()),
        |e| js_error(&e),
    )
}

/// An entry's IndexedDB key, `[namespace, key]`.
pub(crate) fn key_js(id: &EntryId) -> JsValue {
    Array::of2(
        &JsValue::from_str(&id.namespace),
        &JsValue::from_str(&id.key),
    )
    .into()
}

/// One transaction's object stores, each fetched once, and the keys its
/// requests use, converting a namespace once while it repeats: a batch of
/// 250 deletes made 500 calls more than its 250 `delete`s otherwise.
struct Scope<'a> {
    tx: &'a IdbTransaction,
    stores: Vec<(Table, IdbObjectStore)>,
    namespace: Option<(String, JsValue)>,
}

impl<'a> Scope<'a> {
    fn new(tx: &'a IdbTransaction) -> Self {
        Scope {
            tx,
            stores: Vec::new(),
            namespace: None,
        }
    }

    fn store(&mut self, table: Table) -> Result<IdbObjectStore, StoreError> {
        if let Some((_, s)) = self.stores.iter().find(|(t, _)| *t == table) {
            return Ok(s.clone());
        }
        let s = IdbStore::object_store(self.tx, table)?;
        self.stores.push((table, s.clone()));
        Ok(s)
    }

    fn key(&mut self, id: &EntryId) -> JsValue {
        let ns = match &self.namespace {
            Some((name, js)) if *name == id.namespace => js.clone(),
            _ => {
                let js = JsValue::from_str(&id.namespace);
                self.namespace = Some((id.namespace.clone(), js.clone()));
                js
            }
        };
        Array::of2(&ns, &JsValue::from_str(&id.key)).into()
    }

    fn range(&mut self, from: &EntryId, to: &EntryId) -> Result<IdbKeyRange, StoreError> {
        IdbKeyRange::bound(&self.key(from), &self.key(to)).map_err(|e| js_error(&e))
    }
}

/// kvsweep's key `[namespace, key]`; `None` for a key of any other shape.
fn key_from_js(v: &JsValue) -> Option<EntryId> {
    let arr = v.dyn_ref::<Array>().filter(|a| a.length() == 2)?;
    Some(EntryId::new(
        arr.get(0).as_string()?,
        arr.get(1).as_string()?,
    ))
}

/// What a record that is not bytes (other code's value) reads as: a byte
/// MessagePack never uses, so it decodes as "not one kvsweep wrote" (empty
/// bytes read as a write cut short).
pub(crate) const NOT_BYTES: [u8; 1] = [0xc1];

pub(crate) fn bytes_from_js(v: &JsValue) -> Vec<u8> {
    // Anything else was not written by kvsweep: it decodes as corrupt.
    v.dyn_ref::<Uint8Array>()
        .map_or_else(|| NOT_BYTES.to_vec(), Uint8Array::to_vec)
}

impl IdbStore {
    /// Where a call waits for its turn to begin a transaction: the JS
    /// glue's own reads (`Sweeper.get`) pass it too.
    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The database, for reads the JS glue makes itself (`Sweeper.get`).
    pub(crate) fn database(&self) -> &IdbDatabase {
        &self.db
    }

    /// Opens (creating if needed) the database `name`.
    pub async fn open(name: &str) -> Result<IdbStore, StoreError> {
        let global = js_sys::global();
        let factory = Reflect::get(&global, &"indexedDB".into()).unwrap_or(JsValue::UNDEFINED);
        if !factory.is_object() {
            return Err(StoreError::Backend(
                "IndexedDB is not available here (in Node, import 'fake-indexeddb/auto' first; at the edge, use kvStore)".into(),
            ));
        }
        let factory: IdbFactory = factory.unchecked_into();
        let req = factory
            .open_with_u32(name, DB_VERSION)
            .map_err(|e| js_error(&e))?;
        let upgrade_req = req.clone();
        let on_upgrade = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(move || {
            let Ok(db) = upgrade_req.result() else { return };
            let db: IdbDatabase = db.unchecked_into();
            let existing = db.object_store_names();
            for t in Table::ALL {
                if !existing.contains(t.name()) {
                    // Failure aborts the upgrade, and the open request then reports it.
                    let _ = db.create_object_store(t.name());
                }
            }
        });
        req.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
        let result = settle(&req).await;
        req.set_onupgradeneeded(None);
        drop(on_upgrade);
        let db: IdbDatabase = match result {
            Ok(db) => db.unchecked_into(),
            Err(StoreError::Backend(m)) if m.starts_with("VersionError") => {
                return Err(StoreError::Backend(format!(
                    "the database is at a later version than kvsweep's ({DB_VERSION}): \
                     another library's database, or a later kvsweep's; give kvsweep a \
                     database of its own"
                )))
            }
            Err(e) => return Err(e),
        };
        // A database of the same name made by something else, at kvsweep's
        // version: every call would fail on a missing object store.
        let existing = db.object_store_names();
        if let Some(missing) = Table::ALL.iter().find(|t| !existing.contains(t.name())) {
            db.close();
            return Err(StoreError::Backend(format!(
                "the database is not kvsweep's: it has no object store {}; give kvsweep \
                 a database of its own",
                Quoted(missing.name()),
            )));
        }
        // Another tab deleting the database or upgrading its schema asks us
        // to let go; later calls say why the connection is closed.
        db.set_onversionchange(Some(&Function::new_no_args(
            "this.close(); this.kvsweepLetGo = true",
        )));
        Ok(IdbStore {
            db,
            next_page: std::cell::RefCell::new(None),
            gate: Gate::default(),
            closed: std::cell::Cell::new(false),
        })
    }

    /// The database's name.
    pub fn name(&self) -> String {
        self.db.name()
    }

    /// Closes the connection: every call after it fails as closed here.
    pub fn close(&self) {
        self.closed.set(true);
        self.db.close();
    }

    /// Whether this connection is closed for good: by `close()`, or to let
    /// another context delete or upgrade the database.
    pub fn closed_for_good(&self) -> bool {
        self.closed.get() || self.let_go()
    }

    fn transaction(
        &self,
        tables: &[Table],
        mode: IdbTransactionMode,
    ) -> Result<IdbTransaction, StoreError> {
        // Every call but the listing that asked for it drops a prefetched page.
        self.next_page.borrow_mut().take();
        let names = Array::new();
        for t in tables {
            names.push(&JsValue::from_str(t.name()));
        }
        self.db
            .transaction_with_str_sequence_and_mode(&names, mode)
            .map_err(|e| match js_error(&e) {
                StoreError::Closed(_) if self.let_go() => StoreError::Closed(
                    "another tab or worker deleted the database or upgraded it, and this \
                     connection closed to let it; open the database again (openIndexedDb) \
                     for a new Sweeper"
                        .into(),
                ),
                other => other,
            })
    }

    /// Whether this connection closed for another context's deletion or upgrade.
    fn let_go(&self) -> bool {
        Reflect::get(&self.db, &"kvsweepLetGo".into()).is_ok_and(|v| v.is_truthy())
    }

    /// Requests one page of `table`'s keys and values after `lower` (a raw
    /// IndexedDB key; `undefined`: from the start), in a transaction of its own.
    fn request_page(
        &self,
        table: Table,
        lower: &JsValue,
        limit: u32,
    ) -> Result<PageRequest, StoreError> {
        let tx = self.transaction(&[table], IdbTransactionMode::Readonly)?;
        let store = Self::object_store(&tx, table)?;
        let (range, after): (JsValue, _) = if lower.is_undefined() {
            (JsValue::UNDEFINED, None)
        } else {
            let range =
                IdbKeyRange::lower_bound_with_open(lower, true).map_err(|e| js_error(&e))?;
            (range.into(), Some(key_from_js(lower)))
        };
        Ok(PageRequest {
            table,
            after_foreign: matches!(after, Some(None)),
            after: after.flatten(),
            limit,
            keys: store
                .get_all_keys_with_key_and_limit(&range, limit)
                .map_err(|e| js_error(&e))?,
            values: store
                .get_all_with_key_and_limit(&range, limit)
                .map_err(|e| js_error(&e))?,
        })
    }

    fn object_store(tx: &IdbTransaction, table: Table) -> Result<IdbObjectStore, StoreError> {
        tx.object_store(table.name()).map_err(|e| js_error(&e))
    }
}

impl Store for IdbStore {
    async fn list(
        &self,
        table: Table,
        after: Option<&EntryId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let want = limit;
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        self.gate.pass().await;
        let prefetched = self.next_page.borrow_mut().take().filter(|p| {
            p.table == table && p.limit == limit && !p.after_foreign && p.after.as_ref() == after
        });
        let mut page = match prefetched {
            Some(p) => p,
            None => self.request_page(table, &after.map_or(JsValue::UNDEFINED, key_js), limit)?,
        };
        let mut out = Vec::new();
        loop {
            let keys: Array = settle(&page.keys).await?.unchecked_into();
            // A full page: ask for the next one now, while this one is
            // converted. Any other call on this store drops it meanwhile
            // (`transaction`): it reads what was there before that call.
            let last = (keys.length() == limit).then(|| keys.get(limit - 1));
            let mut next = None;
            if let Some(last) = &last {
                let p = self.request_page(table, last, limit)?;
                // Its request tells it from a page another call stored.
                next = Some(p.keys.clone());
                *self.next_page.borrow_mut() = Some(p);
            }
            let values: Array = settle(&page.values).await?.unchecked_into();
            out.reserve(keys.length() as usize);
            for (k, v) in keys.iter().zip(values.iter()) {
                // Keys of another shape were not written by kvsweep: skip them.
                if let Some(id) = key_from_js(&k) {
                    out.push((id, bytes_from_js(&v)));
                }
            }
            let (Some(last), Some(next)) = (last, next) else {
                return Ok(out);
            };
            if out.len() >= want {
                if out.len() > want {
                    // The next call goes on after the last record returned,
                    // not where the page asked for starts.
                    out.truncate(want);
                    self.next_page.borrow_mut().take();
                }
                return Ok(out);
            }
            // Short of `want` by keys of another shape: read on after them,
            // so that a short answer still means the end of the table.
            let asked = self
                .next_page
                .borrow_mut()
                .take()
                .filter(|p| js_sys::Object::is(&p.keys, &next));
            page = match asked {
                Some(p) => p,
                None => self.request_page(table, &last, limit)?,
            };
        }
    }

    async fn get(
        &self,
        table: Table,
        keys: &[EntryId],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.gate.pass().await;
        let tx = self.transaction(&[table], IdbTransactionMode::Readonly)?;
        let store = Self::object_store(&tx, table)?;
        let reqs = keys
            .iter()
            .map(|k| store.get(&key_js(k)).map_err(|e| js_error(&e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(reqs.len());
        for req in &reqs {
            let v = settle(req).await?;
            // A blob's bytes have no unreadable form (a record's NOT_BYTES):
            // something else there is an error, as kvStore's.
            if table == Table::Blobs && !v.is_undefined() && !v.is_instance_of::<Uint8Array>() {
                return Err(StoreError::Backend(
                    "the database holds blob bytes that are not bytes kvsweep wrote".into(),
                ));
            }
            out.push(if v.is_undefined() {
                None
            } else {
                Some(bytes_from_js(&v))
            });
        }
        Ok(out)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::transactional()
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut tables: Vec<Table> = ops.iter().map(Op::table).collect();
        crate::sort::sort(&mut tables);
        tables.dedup();
        self.gate.pass().await;
        let tx = self.transaction(&tables, IdbTransactionMode::Readwrite)?;
        let done = committed(&tx);
        // Preconditions and writes in one transaction: nothing can change in between.
        let outcome = self.apply_in(&tx, &ops).await;
        if let Err(e) = outcome {
            let _ = tx.abort();
            let _ = done.await;
            return Err(e);
        }
        done.await
    }

    /// Writes on the guess and reads in the same flight: the step runs on
    /// `guess` first, and its writes are issued right behind the reads of
    /// every guessed record. If the reads match the guess the transaction
    /// commits, a round trip sooner; if not, the step runs on what was read,
    /// in the same transaction, and its writes follow the guessed ones. So the
    /// order of transactions is the order of calls, and a step given a guess
    /// must be one whose writes on the actual records overwrite whatever its
    /// writes on a wrong guess did (`write::put_step` is: see there). Writes
    /// of records guessed absent are `add`s instead, which need no reads: one
    /// alone, with no call waiting at the gate, is committed at once
    /// (`add_one`); others are watched by [`ExistingKeys`].
    async fn transact_guess(
        &self,
        tables: &[Table],
        guess: &Reads,
        step: &mut DynStep<'_>,
    ) -> Result<(), Error> {
        let Ok(Step::Write(ops, ())) = step(guess) else {
            return self.transact_dyn(Access::Write, tables, step).await;
        };
        if let [Op::Put(table, key, bytes)] = &ops[..] {
            // Behind other calls, a write is better queued in IndexedDB
            // with theirs than held back until they are confirmed.
            if adds_only(guess, &ops) && !self.gate.busy() {
                return self.add_one(tables, *table, key, bytes, step).await;
            }
        }
        if adds_only(guess, &ops) {
            self.gate.pass().await;
            // `add` writes only where no record is: its success is the read.
            // Nothing waits for the adds' success events, so the transaction
            // commits as soon as they are done; only one that meets a record
            // wakes this code, while the transaction is still open.
            let tx = self.transaction(tables, IdbTransactionMode::Readwrite)?;
            let mut watch = ExistingKeys::watch(&tx);
            if let Err(e) = issue_adds(&tx, &ops) {
                let _ = tx.abort();
                let _ = (&mut watch.outcome).await;
                return Err(e.into());
            }
            match (&mut watch.outcome).await {
                Ok(Adds::Committed) => return Ok(()),
                Err(e) => return Err(e.into()),
                Ok(Adds::Found) => {}
            }
            // Some record was there after all. The step reads and writes in
            // this same transaction, so calls keep their order. It reads the
            // records added here too: a put over its own record, with no
            // references, blobs or value record of its own, writes that
            // record again and changes nothing else.
            let done = committed(&tx);
            return match self.run_in(&tx, step, Reads::default()).await {
                Ok(true) => self.finish(&tx, done, Access::Write, Ok(())).await,
                // It wrote nothing on what was read: the adds must not stay.
                Ok(false) => {
                    let _ = tx.abort();
                    let _ = done.await;
                    self.transact_in(Access::Write, tables, step).await
                }
                Err(e) => self.finish(&tx, done, Access::Write, Err(e)).await,
            };
        }
        self.gate.pass().await;
        let tx = self.transaction(tables, IdbTransactionMode::Readwrite)?;
        let done = committed(&tx);
        let guessed = guess.keys();
        let mut actual = Reads::default();
        let flight: Result<bool, StoreError> = async {
            let wanted = guessed
                .iter()
                .map(|(t, k)| Read::Key(*t, k.clone()))
                .collect();
            let pending = issue_reads(&tx, wanted)?;
            self.apply_in(&tx, &ops).await?;
            await_reads(pending, &mut actual).await?;
            Ok(guessed
                .iter()
                .all(|(t, k)| actual.get(*t, k) == guess.get(*t, k)))
        }
        .await;
        let outcome = match flight {
            Ok(true) => Ok(true),
            // The step on what was read must write, after the guessed writes.
            Ok(false) => self.run_in(&tx, step, actual).await,
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(true) => self.finish(&tx, done, Access::Write, Ok(())).await,
            // It wrote nothing: the guessed writes must not stay.
            Ok(false) => {
                let _ = tx.abort();
                let _ = done.await;
                self.transact_in(Access::Write, tables, step).await
            }
            Err(e) => self.finish(&tx, done, Access::Write, Err(e)).await,
        }
    }

    /// One IndexedDB transaction: every read the step asks for is issued at
    /// once and awaited on microtasks, which keeps the transaction open, then
    /// the writes go in the same transaction.
    async fn transact_dyn(
        &self,
        access: Access,
        tables: &[Table],
        step: &mut DynStep<'_>,
    ) -> Result<(), Error> {
        self.gate.pass().await;
        self.transact_in(access, tables, step).await
    }
}

impl IdbStore {
    /// A write of one record guessed absent: one `add`, and the transaction
    /// committed at once, a round trip sooner than waiting for the add's
    /// success. If the add meets a record after all, it wrote nothing
    /// (engines differ on whether the transaction then aborts, and with
    /// which error: its own error is what counts), and the write goes again
    /// on the record as it is, in a transaction of its own; the calls after
    /// this one wait at the gate until then, so theirs still come after it.
    /// One record only: after `commit()` a failed request need not abort its
    /// transaction, so a batch of adds could commit in part.
    async fn add_one(
        &self,
        tables: &[Table],
        table: Table,
        key: &EntryId,
        bytes: &[u8],
        step: &mut DynStep<'_>,
    ) -> Result<(), Error> {
        let place = self.gate.hold().await;
        let tx = self.transaction(tables, IdbTransactionMode::Readwrite)?;
        let done = ended(&tx);
        let added = Self::object_store(&tx, table).and_then(|s| {
            s.add_with_key(&Uint8Array::from(bytes), &key_js(key))
                .map_err(|e| js_error(&e))
        });
        let request = match added {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.abort();
                let _ = done.await;
                return Err(e.into());
            }
        };
        // `commit()` is IndexedDB 3.0's, in every current engine (web-sys
        // marks it deprecated by mistake); where it is missing, the
        // transaction commits once the add is done.
        #[allow(deprecated)]
        let _ = tx.commit();
        let outcome = done.await;
        match request.error() {
            Ok(Some(e)) if e.name() == "ConstraintError" => {}
            // The add's own failure (WebKit refuses quota per request); an
            // AbortError only says the transaction failed: its error says why.
            Ok(Some(e)) if e.name() != "AbortError" => return Err(js_error(&e).into()),
            _ => return outcome.map_err(|e| aborted(e).into()),
        }
        let again = self.transact_in(Access::Write, tables, step).await;
        drop(place);
        again
    }

    /// [`Store::transact_dyn`] once this call's turn has come.
    async fn transact_in(
        &self,
        access: Access,
        tables: &[Table],
        step: &mut DynStep<'_>,
    ) -> Result<(), Error> {
        let mode = match access {
            Access::Read => IdbTransactionMode::Readonly,
            Access::Write => IdbTransactionMode::Readwrite,
        };
        let tx = self.transaction(tables, mode)?;
        let done = committed(&tx);
        let outcome = self.run_in(&tx, step, Reads::default()).await.map(|_| ());
        self.finish(&tx, done, access, outcome).await
    }
}

/// Whether every write puts a record guessed absent, and each guessed
/// record is so written: then `add`s need no reads.
fn adds_only(guess: &Reads, ops: &[Op]) -> bool {
    let mut keys: Vec<(Table, &EntryId)> = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Put(t, k, _) if guess.get(*t, k) == Some(None) => keys.push((*t, k)),
            _ => return false,
        }
    }
    crate::sort::sort(&mut keys);
    keys.dedup();
    keys.len() == ops.len() && keys.len() == guess.keys().len()
}

/// What a transaction of `add`s came to, as [`ExistingKeys::watch`] sees it.
enum Adds {
    /// It committed: every add wrote its record.
    Committed,
    /// An add met an existing record; the transaction is still open.
    Found,
}

/// Cancels the error events of `add`s that met an existing key, so that
/// they do not abort their transaction, for as long as it lives (an error
/// event reaches the transaction after the request's own listeners), and
/// says when the first one comes (`outcome`), or the transaction ends.
struct ExistingKeys {
    tx: IdbTransaction,
    _on_error: wasm_bindgen::closure::Closure<dyn FnMut(web_sys::Event)>,
    /// `Found` once an add meets a record, else how the transaction ended.
    outcome: std::pin::Pin<Box<dyn std::future::Future<Output = Result<Adds, StoreError>>>>,
}

impl ExistingKeys {
    fn watch(tx: &IdbTransaction) -> Self {
        let mut settle: Option<Function> = None;
        let promise = Promise::new(&mut |resolve: Function, reject: Function| {
            tx.set_oncomplete(Some(&resolve));
            tx.set_onabort(Some(&reject));
            settle = Some(resolve);
        });
        let on_error = wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::Event)>::new(
            move |event: web_sys::Event| {
                let exists = event
                    .target()
                    .and_then(|t| t.dyn_into::<IdbRequest>().ok())
                    .and_then(|r| r.error().ok().flatten())
                    .is_some_and(|e| e.name() == "ConstraintError");
                if exists {
                    event.prevent_default();
                    // The waiting code runs on a microtask of this event,
                    // while the transaction still takes requests.
                    if let Some(found) = &settle {
                        let _ = found.call1(&JsValue::UNDEFINED, &JsValue::FALSE);
                    }
                }
            },
        );
        tx.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let ended = tx.clone();
        let outcome = Box::pin(async move {
            let outcome = JsFuture::from(promise).await;
            ended.set_oncomplete(None);
            ended.set_onabort(None);
            match outcome {
                // `complete` resolves with its event; a found record with false.
                Ok(v) if v.is_object() => Ok(Adds::Committed),
                Ok(_) => Ok(Adds::Found),
                Err(_) => Err(ended.error().map_or_else(
                    || StoreError::Backend("transaction aborted".into()),
                    |e| js_error(&e),
                )),
            }
        });
        ExistingKeys {
            tx: tx.clone(),
            _on_error: on_error,
            outcome,
        }
    }
}

impl Drop for ExistingKeys {
    fn drop(&mut self) {
        self.tx.set_onerror(None);
    }
}

/// Issues an `add` for every put of `ops` (see [`adds_only`]), in a
/// transaction that [`ExistingKeys`] watches.
fn issue_adds(tx: &IdbTransaction, ops: &[Op]) -> Result<(), StoreError> {
    let mut scope = Scope::new(tx);
    for op in ops {
        if let Op::Put(t, k, v) = op {
            let key = scope.key(k);
            scope
                .store(*t)?
                .add_with_key(&Uint8Array::from(&v[..]), &key)
                .map_err(|e| js_error(&e))?;
        }
    }
    Ok(())
}

/// A read issued in a transaction, not yet awaited.
enum Pending {
    Key(Table, EntryId, IdbRequest),
    Range(Table, EntryId, EntryId, IdbRequest, IdbRequest),
}

/// Issues every read at once, then awaits them.
async fn read_in(
    tx: &IdbTransaction,
    wanted: Vec<Read>,
    reads: &mut Reads,
) -> Result<(), StoreError> {
    let pending = issue_reads(tx, reads.missing(wanted))?;
    await_reads(pending, reads).await
}

fn issue_reads(tx: &IdbTransaction, wanted: Vec<Read>) -> Result<Vec<Pending>, StoreError> {
    let mut pending = Vec::with_capacity(wanted.len());
    let mut scope = Scope::new(tx);
    for r in wanted {
        match r {
            Read::Key(t, k) => {
                let key = scope.key(&k);
                let req = scope.store(t)?.get(&key).map_err(|e| js_error(&e))?;
                pending.push(Pending::Key(t, k, req));
            }
            Read::Range(t, from, to) => {
                let store = scope.store(t)?;
                let range = scope.range(&from, &to)?;
                let keys = store
                    .get_all_keys_with_key(&range)
                    .map_err(|e| js_error(&e))?;
                let values = store.get_all_with_key(&range).map_err(|e| js_error(&e))?;
                pending.push(Pending::Range(t, from, to, keys, values));
            }
        }
    }
    Ok(pending)
}

async fn await_reads(pending: Vec<Pending>, reads: &mut Reads) -> Result<(), StoreError> {
    // Requests of a transaction succeed in the order they were made: once the
    // last has, every other is done and reads without another wait.
    match pending.last() {
        Some(Pending::Key(_, _, req)) | Some(Pending::Range(_, _, _, _, req)) => {
            settle(req).await?;
        }
        None => {}
    }
    for p in pending {
        match p {
            Pending::Key(t, k, req) => {
                let v = settle(&req).await?;
                reads.insert(t, k, (!v.is_undefined()).then(|| bytes_from_js(&v)));
            }
            Pending::Range(t, from, to, keys, values) => {
                let keys: Array = settle(&keys).await?.unchecked_into();
                let values: Array = settle(&values).await?.unchecked_into();
                let mut found = Vec::with_capacity(keys.length() as usize);
                let mut foreign = false;
                for (k, v) in keys.iter().zip(values.iter()) {
                    match key_from_js(&k) {
                        Some(id) => found.push((id, bytes_from_js(&v))),
                        None => foreign = true,
                    }
                }
                if foreign {
                    reads.taint(t, from.clone(), to.clone());
                }
                reads.insert_range(t, from, to, found);
            }
        }
    }
    Ok(())
}

impl IdbStore {
    /// Runs `step` in `tx` from what has been `read` until it writes (true)
    /// or is done without writing (false).
    async fn run_in(
        &self,
        tx: &IdbTransaction,
        step: &mut DynStep<'_>,
        mut reads: Reads,
    ) -> Result<bool, Error> {
        loop {
            match step(&reads)? {
                Step::Read(wanted) => read_in(tx, wanted, &mut reads).await?,
                Step::Write(ops, ()) => {
                    self.apply_in(tx, &ops).await?;
                    return Ok(true);
                }
                Step::Done(()) => return Ok(false),
            }
        }
    }

    /// Commits a transaction that wrote, or aborts one that failed.
    async fn finish(
        &self,
        tx: &IdbTransaction,
        done: impl std::future::Future<Output = Result<(), StoreError>>,
        access: Access,
        outcome: Result<(), Error>,
    ) -> Result<(), Error> {
        match outcome {
            Ok(()) => {
                if access == Access::Write {
                    done.await?;
                }
                Ok(())
            }
            Err(e) => {
                let _ = tx.abort();
                let _ = done.await;
                Err(e)
            }
        }
    }

    async fn apply_in(&self, tx: &IdbTransaction, ops: &[Op]) -> Result<(), StoreError> {
        let mut scope = Scope::new(tx);
        let mut checks = Vec::new();
        for op in ops {
            if let Op::Expect(t, k, want) = op {
                let key = scope.key(k);
                let req = scope.store(*t)?.get(&key).map_err(|e| js_error(&e))?;
                checks.push((req, *t, k, *want));
            }
        }
        for (req, t, k, want) in checks {
            let v = settle(&req).await?;
            let have = if v.is_undefined() {
                None
            } else {
                Some(stamp(&bytes_from_js(&v)))
            };
            if have != want {
                return Err(StoreError::Conflict(format!(
                    "{} record {} in namespace {}",
                    t.name(),
                    Quoted(&k.key),
                    Quoted(&k.namespace)
                )));
            }
        }
        let mut slice = Slice::new(tx);
        for op in ops {
            let req = match op {
                Op::Put(t, k, v) => {
                    let key = scope.key(k);
                    scope
                        .store(*t)?
                        .put_with_key(&Uint8Array::from(&v[..]), &key)
                        .map_err(|e| js_error(&e))?
                }
                Op::Delete(t, k) => {
                    let key = scope.key(k);
                    scope.store(*t)?.delete(&key).map_err(|e| js_error(&e))?
                }
                Op::DeleteRange(t, from, to) => {
                    let range = scope.range(from, to)?;
                    scope.store(*t)?.delete(&range).map_err(|e| js_error(&e))?
                }
                Op::Expect(..) => continue,
            };
            slice.issued(req).await?;
        }
        Ok(())
    }
}

/// Spreads a batch's requests over several tasks of the event loop, in its
/// one transaction. Each request costs the main thread IndexedDB's own
/// `delete` or `put` call, so a batch of hundreds held it in one long task,
/// and a page froze when a garbage collection fell in the same task. After
/// [`SLICE_MS`] of issuing, this waits for the success of a request from
/// the middle of the slice: the event loop runs meanwhile, the transaction
/// stays active (the code goes on in that success event's microtasks), and
/// the requests after it usually keep IndexedDB busy until then.
struct Slice<'a> {
    tx: &'a IdbTransaction,
    started: f64,
    count: u32,
    /// Every [`MARK_EVERY`]th request of this slice.
    marks: Vec<IdbRequest>,
}

/// How long one task issues requests before it lets the event loop run.
const SLICE_MS: f64 = 6.0;
/// Every how many requests one is kept to be waited for, and the clock read.
const MARK_EVERY: u32 = 16;

impl<'a> Slice<'a> {
    fn new(tx: &'a IdbTransaction) -> Self {
        Slice {
            tx,
            started: js_sys::Date::now(),
            count: 0,
            marks: Vec::new(),
        }
    }

    async fn issued(&mut self, req: IdbRequest) -> Result<(), StoreError> {
        self.count += 1;
        if self.count % MARK_EVERY != 0 {
            return Ok(());
        }
        self.marks.push(req);
        if js_sys::Date::now() - self.started < SLICE_MS {
            return Ok(());
        }
        let middle = self.marks.swap_remove(self.marks.len() / 2);
        self.marks.clear();
        // An earlier request that failed aborted the transaction, and this
        // one then fails with an AbortError: the transaction says why.
        settle(&middle)
            .await
            .map_err(|e| self.tx.error().map_or(e, |cause| js_error(&cause)))?;
        self.started = js_sys::Date::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::future::Future;
    use std::rc::Rc;
    use wasm_bindgen_test::wasm_bindgen_test;

    /// Lets the promise jobs queued so far, and those they queue, run.
    async fn turns(n: usize) {
        for _ in 0..n {
            let _ = JsFuture::from(Promise::resolve(&JsValue::UNDEFINED)).await;
        }
    }

    #[wasm_bindgen_test]
    async fn a_place_given_up_while_waiting_keeps_later_calls_behind_the_one_before_it() {
        let gate = Rc::new(Gate::default());
        let first = gate.hold().await;
        // A second call queues behind it, and is given up while it waits.
        let mut second = Box::pin(gate.hold());
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        drop(second);
        // A third call still waits for the first.
        let passed = Rc::new(Cell::new(false));
        let (g, p) = (gate.clone(), passed.clone());
        wasm_bindgen_futures::spawn_local(async move {
            g.pass().await;
            p.set(true);
        });
        turns(20).await;
        assert!(!passed.get(), "the third call went before the first let it");
        drop(first);
        turns(20).await;
        assert!(passed.get(), "the third call never went");
    }
}
