//! A store over a JavaScript key–value object: Cloudflare Workers KV, Deno
//! KV, Durable Object storage, a `Map`, unstorage, keyv, or any object with
//! `get`, `put`, `delete` and `list`. The package's `kv.js` turns each into
//! one small *driver* with the same five members, and says what the backend
//! promises (SPEC §6); this file maps the store trait onto it.
//!
//! Layout: one backend key per record, `<prefix><table>/<namespace>\0<key>`
//! (the table letters are in [`letter`]). U+0000 sorts below every other
//! character, so backends that list in UTF-8 byte order (Workers KV, Deno KV,
//! Durable Objects) list records in the order of their `(namespace, key)`,
//! as the store trait asks; a namespace therefore cannot contain U+0000.
//!
//! The driver (`kv.js`):
//! - `caps`: `{ atomic, compareAndSet, maxBatchOps, maxBatchChecks,
//!   visibilityMs, nativeExpiry }`;
//! - `ops`: how many calls it has made to the backend so far;
//! - `get(names)` → `[[bytes | undefined, token], …]`: a token names the
//!   version read (a Deno KV versionstamp, or the bytes themselves);
//! - `list(prefix, startAfter, cursor, limit)` → `{ items: [[name, bytes],
//!   …], cursor }`: up to `limit` records after `startAfter` (or where
//!   `cursor` says), `cursor` undefined at the end;
//! - `apply(checks, writes)` → `true`, or `false` when a check failed and
//!   nothing was written: `checks` are `[name, token]` (token `null`: absent),
//!   `writes` `[name, bytes | null, expiresAt | undefined]`.

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::model::{EntryId, Millis};
use crate::store::{stamp, value_key, Capabilities, Op, Record, Store, StoreError, Table};

/// The letter of each table in backend keys.
fn letter(table: Table) -> char {
    match table {
        Table::Meta => 'm',
        Table::Values => 'v',
        Table::Blobs => 'b',
        Table::BlobMeta => 'c',
        Table::Temps => 't',
        Table::Namespaces => 'n',
        Table::State => 's',
    }
}

/// How long after an entry expires the backend's own expiry removes it, when
/// the backend has one: late enough that a run normally deletes it first (and
/// lowers the counts of what it referenced), early enough that a store no run
/// reaches still empties itself.
pub const NATIVE_EXPIRY_MARGIN_MS: Millis = 24 * 60 * 60 * 1000;

/// The most tokens kept from reads; past it the oldest half goes (a check
/// then reads its record again).
const MAX_TOKENS: usize = 4096;

/// A store over a driver from `kv.js`.
#[derive(Debug)]
pub struct JsKvStore {
    driver: JsValue,
    kind: String,
    prefix: String,
    caps: Capabilities,
    /// The version each record was last read at: its stamp and the driver's token.
    tokens: RefCell<HashMap<String, (Option<u64>, JsValue)>>,
    /// Where the listing of a table goes on after a name it returned last.
    cursors: RefCell<Vec<(String, JsValue)>>,
    /// The largest record the backend keeps (`None`: the driver splits larger ones).
    max_value_bytes: Option<usize>,
}

fn err(e: JsValue) -> StoreError {
    let name = Reflect::get(&e, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    let message = Reflect::get(&e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "the store failed".into());
    match name.as_str() {
        "QuotaExceededError" => StoreError::QuotaExceeded(message),
        _ => StoreError::Backend(message),
    }
}

fn member(obj: &JsValue, name: &str) -> JsValue {
    Reflect::get(obj, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

fn limit(obj: &JsValue, name: &str) -> Option<usize> {
    member(obj, name)
        .as_f64()
        .filter(|n| *n >= 1.0)
        .map(|n| n as usize)
}

impl JsKvStore {
    /// A store over `driver` (see the module's documentation), its keys under `prefix`.
    pub fn new(driver: JsValue) -> Result<JsKvStore, String> {
        for m in ["get", "list", "apply"] {
            if !member(&driver, m).is_function() {
                return Err(format!("the driver has no {m}() (internal error in kv.js)"));
            }
        }
        let caps_js = member(&driver, "caps");
        let flag = |n: &str| member(&caps_js, n).as_bool() == Some(true);
        let caps = Capabilities {
            atomic: flag("atomic"),
            transactions: false,
            compare_and_set: flag("compareAndSet"),
            max_batch_ops: limit(&caps_js, "maxBatchOps"),
            max_batch_checks: limit(&caps_js, "maxBatchChecks"),
            visibility_ms: member(&caps_js, "visibilityMs").as_f64().unwrap_or(0.0) as Millis,
            native_expiry: flag("nativeExpiry"),
            range_delete: false,
        };
        Ok(JsKvStore {
            kind: member(&driver, "kind")
                .as_string()
                .unwrap_or_else(|| "kv".into()),
            prefix: member(&driver, "prefix").as_string().unwrap_or_default(),
            driver,
            caps,
            tokens: RefCell::new(HashMap::new()),
            cursors: RefCell::new(Vec::new()),
            max_value_bytes: limit(&caps_js, "maxValueBytes"),
        })
    }

    /// What the backend is: "workers-kv", "deno-kv", "durable-object", "map", …
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The largest record the backend keeps, if it limits them and the
    /// driver does not split larger ones (Workers KV: 25 MiB).
    pub fn max_value_bytes(&self) -> Option<usize> {
        self.max_value_bytes
    }

    /// Backend calls made so far (list pages, reads, writes, commits).
    pub fn ops(&self) -> u64 {
        member(&self.driver, "ops").as_f64().unwrap_or(0.0) as u64
    }

    fn table_prefix(&self, table: Table) -> String {
        format!("{}{}/", self.prefix, letter(table))
    }

    fn name(&self, table: Table, id: &EntryId) -> String {
        format!(
            "{}{}/{}\0{}",
            self.prefix,
            letter(table),
            id.namespace,
            id.key
        )
    }

    /// The record key a backend key names, if it is one of `table`'s.
    fn id_of(&self, table_prefix: &str, name: &str) -> Option<EntryId> {
        let rest = name.strip_prefix(table_prefix)?;
        let (ns, key) = rest.split_once('\0')?;
        Some(EntryId::new(ns, key))
    }

    async fn call(&self, method: &str, args: &[JsValue]) -> Result<JsValue, StoreError> {
        let f: Function = member(&self.driver, method).unchecked_into();
        let argv = Array::new();
        for a in args {
            argv.push(a);
        }
        let out = f.apply(&self.driver, &argv).map_err(err)?;
        match out.dyn_into::<Promise>() {
            Ok(p) => JsFuture::from(p).await.map_err(err),
            Err(v) => Ok(v),
        }
    }

    fn remember(&self, name: String, bytes: Option<u64>, token: JsValue) {
        let mut tokens = self.tokens.borrow_mut();
        if tokens.len() >= MAX_TOKENS {
            tokens.clear();
        }
        tokens.insert(name, (bytes, token));
    }

    /// Reads `names`, remembering each version's token.
    async fn read(&self, names: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let arr = Array::new();
        for n in names {
            arr.push(&JsValue::from_str(n));
        }
        let got: Array = self
            .call("get", &[arr.into()])
            .await?
            .dyn_into()
            .map_err(|_| {
                StoreError::Backend("the driver's get() did not return an array".into())
            })?;
        let mut out = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let pair = got.get(i as u32);
            let value = Reflect::get(&pair, &0.into()).unwrap_or(JsValue::UNDEFINED);
            let token = Reflect::get(&pair, &1.into()).unwrap_or(JsValue::NULL);
            let bytes = value.dyn_ref::<Uint8Array>().map(Uint8Array::to_vec);
            self.remember(name.clone(), bytes.as_deref().map(stamp), token);
            out.push(bytes);
        }
        Ok(out)
    }

    /// When the backend should expire each record a batch writes, if it
    /// expires keys itself: an entry's metadata and its value, some time
    /// after the entry expires (see [`NATIVE_EXPIRY_MARGIN_MS`]).
    fn expiries(&self, ops: &[Op]) -> HashMap<String, Millis> {
        let mut at = HashMap::new();
        if !self.caps.native_expiry {
            return at;
        }
        for op in ops {
            let Op::Put(Table::Meta, id, bytes) = op else {
                continue;
            };
            let Ok(meta) = crate::codec::decode_meta(bytes) else {
                continue;
            };
            let Some(expires) = meta.expires_at.filter(|_| !meta.pinned) else {
                continue;
            };
            let when = expires.saturating_add(NATIVE_EXPIRY_MARGIN_MS);
            at.insert(self.name(Table::Meta, id), when);
            at.insert(
                self.name(Table::Values, &value_key(id, meta.write_id)),
                when,
            );
        }
        at
    }
}

impl Store for JsKvStore {
    async fn list(
        &self,
        table: Table,
        after: Option<&EntryId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let prefix = self.table_prefix(table);
        let start_after = after.map(|a| self.name(table, a));
        let cursor = start_after
            .as_ref()
            .and_then(|s| {
                let mut cursors = self.cursors.borrow_mut();
                let i = cursors.iter().position(|(n, _)| n == s)?;
                Some(cursors.swap_remove(i).1)
            })
            .unwrap_or(JsValue::UNDEFINED);
        let start = start_after
            .as_deref()
            .map_or(JsValue::UNDEFINED, JsValue::from_str);
        let page = self
            .call(
                "list",
                &[
                    JsValue::from_str(&prefix),
                    start,
                    cursor,
                    JsValue::from_f64(limit as f64),
                ],
            )
            .await?;
        let items: Array = member(&page, "items")
            .dyn_into()
            .map_err(|_| StoreError::Backend("the driver's list() gave no items".into()))?;
        let mut out = Vec::with_capacity(items.length() as usize);
        let mut last = None;
        for item in items.iter() {
            let Some(name) = Reflect::get(&item, &0.into())
                .ok()
                .and_then(|n| n.as_string())
            else {
                continue;
            };
            let bytes = Reflect::get(&item, &1.into())
                .ok()
                .and_then(|b| b.dyn_into::<Uint8Array>().ok())
                .map(|b| b.to_vec());
            // Names of another shape are not kvsweep's: skip them.
            if let (Some(id), Some(bytes)) = (self.id_of(&prefix, &name), bytes) {
                out.push((id, bytes));
            }
            last = Some(name);
        }
        let next = member(&page, "cursor");
        if let (Some(last), false) = (last, next.is_undefined() || next.is_null()) {
            let mut cursors = self.cursors.borrow_mut();
            if cursors.len() >= 16 {
                cursors.remove(0);
            }
            cursors.push((last, next));
        }
        Ok(out)
    }

    async fn get(
        &self,
        table: Table,
        keys: &[EntryId],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let names: Vec<String> = keys.iter().map(|k| self.name(table, k)).collect();
        self.read(&names).await
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let expiries = self.expiries(&ops);
        // Each check needs the token of the version it expects: the one read
        // last, when that is the version expected; else read it again now.
        let mut checks: Vec<(String, Option<u64>)> = Vec::new();
        let writes = Array::new();
        for op in &ops {
            match op {
                Op::Expect(t, id, expected) => checks.push((self.name(*t, id), *expected)),
                Op::Put(t, id, bytes) => {
                    if id.namespace.contains('\0') {
                        return Err(StoreError::Backend(format!(
                            "namespace {:?} contains U+0000, which a key–value store's layout cannot hold",
                            id.namespace
                        )));
                    }
                    let name = self.name(*t, id);
                    let when = expiries
                        .get(&name)
                        .map_or(JsValue::UNDEFINED, |w| JsValue::from_f64(*w as f64));
                    let bytes: JsValue = Uint8Array::from(bytes.as_slice()).into();
                    writes.push(&Array::of3(&JsValue::from_str(&name), &bytes, &when));
                    self.tokens.borrow_mut().remove(&name);
                }
                Op::Delete(t, id) => {
                    let name = self.name(*t, id);
                    writes.push(&Array::of2(&JsValue::from_str(&name), &JsValue::NULL));
                    self.tokens.borrow_mut().remove(&name);
                }
                Op::DeleteRange(t, ..) => {
                    return Err(StoreError::Backend(format!(
                        "range deletes of {} need a store with range deletes",
                        t.name()
                    )))
                }
            }
        }
        let stale: Vec<String> = checks
            .iter()
            .filter(|(name, expected)| {
                !matches!(self.tokens.borrow().get(name), Some((s, _)) if s == expected)
            })
            .map(|(name, _)| name.clone())
            .collect();
        // Without compare-and-set the backend cannot check: reading again
        // would cost a call and prove nothing once the read is done.
        // It can only refuse a batch that this store itself saw go stale.
        if !self.caps.compare_and_set {
            let tokens = self.tokens.borrow();
            if let Some((name, _)) = checks
                .iter()
                .find(|(name, expected)| matches!(tokens.get(name), Some((s, _)) if s != expected))
            {
                return Err(StoreError::Conflict(format!(
                    "{name:?} changed since it was read"
                )));
            }
            checks.clear();
        } else if !stale.is_empty() {
            self.read(&stale).await?;
        }
        // Over the backend's limits the batch would fail inside it: say why here.
        let over = |n: usize, most: Option<usize>| most.is_some_and(|m| n > m);
        if over(writes.length() as usize, self.caps.max_batch_ops)
            || over(checks.len(), self.caps.max_batch_checks)
        {
            return Err(StoreError::Backend(format!(
                "one batch would make {} writes and {} checks, and a {} store commits at most {} writes and {} checks at once: write fewer entries per call (putMany) or lower batchSize",
                writes.length(),
                checks.len(),
                self.kind,
                self.caps.max_batch_ops.map_or("any".into(), |n| n.to_string()),
                self.caps.max_batch_checks.map_or("any".into(), |n| n.to_string()),
            )));
        }
        let checks_js = Array::new();
        for (name, expected) in &checks {
            let tokens = self.tokens.borrow();
            match tokens.get(name) {
                Some((s, token)) if s == expected => {
                    checks_js.push(&Array::of2(&JsValue::from_str(name), token));
                }
                _ => {
                    return Err(StoreError::Conflict(format!(
                        "{name:?} changed since it was read"
                    )))
                }
            }
        }
        let ok = self
            .call("apply", &[checks_js.into(), writes.into()])
            .await?;
        if ok.as_bool() == Some(false) {
            for (name, _) in &checks {
                self.tokens.borrow_mut().remove(name);
            }
            return Err(StoreError::Conflict(
                "a record changed since it was read".into(),
            ));
        }
        Ok(())
    }
}
