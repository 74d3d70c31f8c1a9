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
//!   visibilityMs, nativeExpiry, maxValueBytes, maxKeyBytes }`;
//! - `ops`: how many calls it has made to the backend so far;
//! - `get(names)` → `[[value, token], …]`: the value a `Uint8Array`, `null`
//!   when absent, anything else when what is there is not kvsweep's bytes;
//!   a token names the version read (a Deno KV versionstamp, or the bytes);
//! - `list(prefix, startAfter, cursor, limit, maxCalls)` → `{ items: [[name, value],
//!   …], done, last, cursor }`: names after `startAfter` (or where `cursor`
//!   says), every one it looked at (values as for `get`), `done` once the
//!   table has no more; `last` and `cursor` say where to go on; a page that
//!   would make more than `maxCalls` calls fails first (`KvsweepOutOfCalls`);
//! - `lock()` (optional) → a function ending the turn it waited for;
//! - `lockAfterConflict()` (optional) → the same, taken by a write only once
//!   its checks failed, for the rest of it (Deno KV);
//! - `apply(checks, writes)` → `true`, or `false` when a check failed and
//!   nothing was written: `checks` are `[name, token]` (token `null`:
//!   nothing at all is there, not even what is not kvsweep's bytes or a
//!   split value missing a part), `writes` `[name, bytes | null, expiresAt |
//!   undefined]`, made in order;
//! - `caps.tokensAreBytes`: a token is the value's bytes (as `get` and
//!   `list` give them), blob bytes kept outside the records aside (OPFS
//!   files: their token says only that they are there): a write may begin
//!   from the records as listed;
//! - `caps.blobsUnlocked`: blob bytes are written outside the batch, before
//!   its checks, where a concurrent run may delete them (R2): a batch of
//!   blob bytes is never written on a guess.

use crate::error::Quoted;
use std::cell::RefCell;

use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::error::Error;
use crate::model::{EntryId, Millis};
use crate::store::{
    optimistic, stamp, Access, Capabilities, DynStep, Op, Reads, Record, Step, Store, StoreError,
    Table,
};

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

/// The most tokens kept from reads; past it they are all dropped (a check
/// then reads its record again).
const MAX_TOKENS: usize = 4096;

/// The largest listed record remembered as read (see `remember_listed`).
const LISTED_MAX: usize = 1024;

/// The version each record was last read at, by backend key: its stamp and
/// the driver's token. A vector kept in key order (a map type of its own
/// would cost the module more than the lookups cost time).
#[derive(Debug, Default)]
struct Tokens(Vec<(String, Option<u64>, JsValue)>);

impl Tokens {
    fn at(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, ..)| n.as_str().cmp(name))
    }

    fn get(&self, name: &str) -> Option<(&Option<u64>, &JsValue)> {
        self.at(name).ok().map(|i| (&self.0[i].1, &self.0[i].2))
    }

    fn insert(&mut self, name: String, stamp: Option<u64>, token: JsValue) {
        match self.at(&name) {
            Ok(i) => self.0[i] = (name, stamp, token),
            Err(i) => self.0.insert(i, (name, stamp, token)),
        }
    }

    /// Forgets `names` in one pass: a `Vec::remove` each moved the tail, so
    /// a batch of 250 among 4,096 tokens moved some 30 MB.
    fn remove(&mut self, names: &[String]) {
        let mut gone = vec![false; self.0.len()];
        for n in names {
            if let Ok(i) = self.at(n) {
                gone[i] = true;
            }
        }
        let mut kept = 0;
        for (i, gone) in gone.into_iter().enumerate() {
            if !gone {
                self.0.swap(kept, i);
                kept += 1;
            }
        }
        self.0.truncate(kept);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// A store over a driver from `kv.js`.
#[derive(Debug)]
pub struct JsKvStore {
    driver: JsValue,
    kind: String,
    prefix: String,
    caps: Capabilities,
    /// The version each record was last read at: its stamp and the driver's token.
    tokens: RefCell<Tokens>,
    /// Where the listing of a table goes on after a name it returned last.
    cursors: RefCell<Vec<(String, JsValue)>>,
    /// The largest record the backend keeps (`None`: the driver splits larger ones).
    max_value_bytes: Option<usize>,
    /// The longest backend key, in UTF-8 bytes.
    max_key_bytes: Option<usize>,
    /// Bytes a write leaves free in each record's key (for a chunk's key).
    key_room: usize,
    /// Keys are tuples whose encoding adds 2 bytes and escapes each U+0000 (Deno KV).
    key_escaped: bool,
    /// Keys are escaped as unstorage's are: each byte but a-z, 0-9, `_` and
    /// `-` as three (`%XX`), and the limit is a file name's.
    key_uri: bool,
    /// The largest entry record, where only blobs may be larger (R2).
    max_entry_bytes: Option<usize>,
    /// The Web Lock that keeps this store's runs one at a time, where every
    /// context that writes it is of one origin (Cache Storage, OPFS): the
    /// browser lets it go when its holder dies, unlike a lease.
    web_lock: Option<String>,
    /// Items per batch the driver asks for, if it knows better than the default.
    batch_size: Option<usize>,
    /// A token is the bytes read themselves (the IndexedDB records of OPFS
    /// and Cache Storage): a listing's records are remembered as read.
    tokens_are_bytes: bool,
    /// The driver writes blob bytes outside the batch, before its checks,
    /// where a concurrent run may delete them (R2): see `transact_guess`.
    blobs_unlocked: bool,
    /// `store.close()` was called, or (OPFS, Cache Storage) another context
    /// deleted or upgraded the database: see [`JsKvStore::closed_for_good`].
    closed: std::cell::Cell<bool>,
}

fn err(e: JsValue) -> StoreError {
    crate::store::idb::js_error(&e)
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
            tokens: RefCell::new(Tokens::default()),
            cursors: RefCell::new(Vec::new()),
            max_value_bytes: limit(&caps_js, "maxValueBytes"),
            max_entry_bytes: limit(&caps_js, "maxEntryBytes"),
            max_key_bytes: limit(&caps_js, "maxKeyBytes"),
            key_room: limit(&caps_js, "keyRoom").unwrap_or(0),
            key_escaped: flag("keyEscaped"),
            key_uri: flag("keyUriEscaped"),
            batch_size: limit(&caps_js, "batchSize"),
            web_lock: member(&caps_js, "webLock").as_string(),
            blobs_unlocked: flag("blobsUnlocked"),
            closed: std::cell::Cell::new(false),
            tokens_are_bytes: flag("tokensAreBytes"),
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

    /// A record's key as the backend measures it against its limit.
    fn key_bytes(&self, name: &str) -> usize {
        match self.key_escaped {
            true => name.len() + name.bytes().filter(|b| *b == 0).count() + 2,
            false => self.measure(name),
        }
    }

    /// A part of a key as the backend measures it (see `key_uri`).
    fn measure(&self, part: &str) -> usize {
        match self.key_uri {
            true => part
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => 1,
                    _ => 3,
                })
                .sum(),
            false => part.len(),
        }
    }

    /// Why a put of `id` would write a backend key past the store's limit
    /// (its records' names: the entry's, its value's and the staging
    /// temp's, each with kvsweep's prefix, namespace and suffix), in words
    /// naming the key's own length and the most it may have.
    pub fn key_too_long(&self, id: &EntryId) -> Option<String> {
        let most = self.max_key_bytes?.saturating_sub(self.key_room);
        let temp = crate::write::temp_id(&crate::codec::Staged::Entry {
            namespace: id.namespace.clone(),
            key: id.key.clone(),
            writes: vec![0, 0],
        });
        // A store with all-or-nothing batches stages no temps.
        let mut names = vec![
            self.name(Table::Meta, id),
            self.name(Table::Values, &crate::store::value_key(id, 0)),
        ];
        if !self.caps.atomic {
            names.push(self.name(Table::Temps, &crate::store::id_key(&temp)));
        }
        let longest = names.iter().map(|n| self.key_bytes(n)).max()?;
        let own = self.measure(&id.key);
        let room = (most + own).saturating_sub(longest);
        // No key fits: the namespace is what is long, or, when no name
        // would fit even without a namespace and a key, the prefix.
        let ns = self.measure(&id.namespace);
        // Each name holds the namespace and the key once: what a namespace
        // may have with a key of one byte (about: a temp's name counts the
        // namespace's digits too), none if not even an empty one fits.
        let ns_room = (most + own + ns).checked_sub(longest + 1);
        let (what, len, limit) = match (room, ns_room) {
            (0, None) => ("kvStore options.prefix", self.measure(&self.prefix), None),
            (0, Some(n)) => (
                "options.namespace",
                ns,
                Some(("a namespace", n, ", with a key of one byte")),
            ),
            _ => ("key", own, Some(("a key", room, ""))),
        };
        let escaped = match self.key_uri {
            true => ", each byte but a-z, 0-9, _ and - counting three, as its names escape them",
            false => "",
        };
        (longest > most).then(|| {
            let limit = match limit {
                Some((part, n, with)) => {
                    let s = if n == 1 { "" } else { "s" };
                    format!("{part} may have at most {n} byte{s}{escaped}{with}")
                }
                None => format!("the prefix leaves no room for a namespace and a key{escaped}"),
            };
            format!(
                "{what} is {len} bytes, too long for {} {} store: with kvsweep's prefix, namespace and suffixes its records would need keys of {longest} bytes, and kvsweep keeps them to {most} there ({limit})",
                article(&self.kind),
                self.kind,
            )
        })
    }

    /// The largest entry record the backend keeps: as any record's, or
    /// smaller where blob bytes go elsewhere (R2).
    pub fn max_entry_bytes(&self) -> Option<usize> {
        self.max_entry_bytes.or(self.max_value_bytes)
    }

    /// See [`JsKvStore::web_lock`]'s field.
    pub fn web_lock(&self) -> Option<&str> {
        self.web_lock.as_deref()
    }

    /// Items per batch the driver asks for (Cache Storage: as IndexedDB).
    pub fn batch_size(&self) -> Option<usize> {
        self.batch_size
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
        // By byte, not a char pattern (its searcher is code of its own).
        let at = rest.bytes().position(|b| b == 0)?;
        Some(EntryId::new(&rest[..at], &rest[at + 1..]))
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
        if tokens.len() >= MAX_TOKENS && tokens.get(&name).is_none() {
            tokens.clear();
        }
        tokens.insert(name, bytes, token);
    }

    /// Remembers a listed record as read, where a token is its bytes: an
    /// entry's or a blob's record (what a run's batches read), small, and
    /// while there is room: a listing clears no token, though the next read
    /// past the limit clears them all, as ever.
    fn remember_listed(&self, table: Table, name: &str, bytes: &[u8], value: &JsValue) {
        let wanted = matches!(table, Table::Meta | Table::BlobMeta) && bytes.len() <= LISTED_MAX;
        if self.tokens_are_bytes && wanted && self.tokens.borrow().len() < MAX_TOKENS {
            self.remember(name.to_string(), Some(stamp(bytes)), value.clone());
        }
    }

    /// Reads `names`, remembering each version's token.
    /// A value that is not bytes reads as empty bytes (unreadable) under a
    /// record's name, and as an error under a blob's.
    async fn read(&self, names: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        // A name past the store's key limit holds nothing it could have
        // written: absent, without asking a backend that would refuse it.
        let fits = |n: &str| {
            self.max_key_bytes
                .is_none_or(|most| self.key_bytes(n) <= most)
        };
        if names.iter().all(|n| !fits(n)) {
            return Ok(vec![None; names.len()]);
        }
        let arr = Array::new();
        for n in names.iter().filter(|n| fits(n)) {
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
        let mut asked = 0;
        for name in names {
            if !fits(name) {
                out.push(None);
                continue;
            }
            let pair = got.get(asked);
            asked += 1;
            let value = Reflect::get(&pair, &0.into()).unwrap_or(JsValue::UNDEFINED);
            let token = Reflect::get(&pair, &1.into()).unwrap_or(JsValue::NULL);
            let bytes = match value.dyn_ref::<Uint8Array>() {
                Some(b) => Some(b.to_vec()),
                None if value.is_null() || value.is_undefined() => None,
                // Never read as absent: that would let a put or a run act on
                // a record it cannot see. A record kvsweep decodes reads as
                // NOT_BYTES, which does not decode: unreadable, kept and
                // reported, as a listing has it, and delete(key) removes it.
                // A blob's bytes have no such form: an error.
                None if !name.starts_with(&self.table_prefix(Table::Blobs)) => {
                    Some(crate::store::idb::NOT_BYTES.to_vec())
                }
                None => {
                    return Err(StoreError::Backend(format!(
                        "the backend holds a value at {} that is not bytes kvsweep wrote",
                        Quoted(name)
                    )))
                }
            };
            self.remember(name.clone(), bytes.as_deref().map(stamp), token);
            out.push(bytes);
        }
        Ok(out)
    }

    /// When the backend should expire an entry record a batch writes, if it
    /// expires keys itself: the record of an entry that stands alone — its
    /// value inside it, no references to or from it, not pinned, not
    /// dependent — some time after the entry expires (see
    /// [`NATIVE_EXPIRY_MARGIN_MS`]). Any other entry's record is left to
    /// runs: the backend dropping it would leave the counts of what it
    /// references high, or take an entry something still references (SPEC §2
    /// keeps those), or leave its value record behind. Judged by each write
    /// of the record itself: a batch may write one record twice (an entry,
    /// then its count raised by an entry written after it), and the last
    /// write, the one the backend keeps, carries its own expiry or none.
    fn expiry(&self, table: Table, bytes: &[u8]) -> Option<Millis> {
        if !self.caps.native_expiry
            || table != Table::Meta
            || !crate::write::has_inline_value(bytes)
        {
            return None;
        }
        let meta = crate::codec::decode_meta(bytes).ok()?;
        let alone = !meta.pinned
            && !meta.dependent
            && meta.refs.is_empty()
            && meta.blobs.is_empty()
            && meta.referrers == 0;
        alone
            .then_some(meta.expires_at?)
            .map(|at| at.saturating_add(NATIVE_EXPIRY_MARGIN_MS))
    }
}

impl Store for JsKvStore {
    async fn list(
        &self,
        table: Table,
        after: Option<&EntryId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.list_capped(table, after, limit, None).await
    }

    /// Only listings are capped (a page of Workers KV can cost a call per
    /// key); writes and reads never are.
    async fn list_capped(
        &self,
        table: Table,
        after: Option<&EntryId>,
        limit: usize,
        cap: Option<u64>,
    ) -> Result<Vec<Record>, StoreError> {
        let prefix = self.table_prefix(table);
        let mut start = after.map(|a| self.name(table, a));
        let mut cursor = start
            .as_ref()
            .and_then(|s| {
                let mut cursors = self.cursors.borrow_mut();
                let i = cursors.iter().position(|(n, _)| n == s)?;
                Some(cursors.swap_remove(i).1)
            })
            .unwrap_or(JsValue::UNDEFINED);
        let mut out: Vec<Record> = Vec::new();
        let mut last_returned: Option<String> = None;
        // The driver's pages may come back short (records gone between a
        // listing and a read, names of another shape, Workers KV pages cut
        // short): page on until `limit` records or the end of the table, so
        // that a short answer always means the end (the trait's contract).
        loop {
            let max_calls = match cap {
                None => f64::INFINITY,
                Some(cap) => match cap.checked_sub(self.ops()) {
                    Some(left) if left > 0 => left as f64,
                    _ => {
                        return Err(StoreError::OutOfCalls(
                            "the run's backend calls (maxOps) are used up".into(),
                        ))
                    }
                },
            };
            let page = self
                .call(
                    "list",
                    &[
                        JsValue::from_str(&prefix),
                        start
                            .as_deref()
                            .map_or(JsValue::UNDEFINED, JsValue::from_str),
                        cursor.clone(),
                        JsValue::from_f64((limit - out.len()) as f64),
                        JsValue::from_f64(max_calls),
                    ],
                )
                .await?;
            let items: Array = member(&page, "items")
                .dyn_into()
                .map_err(|_| StoreError::Backend("the driver's list() gave no items".into()))?;
            let mut last_seen = None;
            for item in items.iter() {
                let Some(name) = Reflect::get(&item, &0.into())
                    .ok()
                    .and_then(|n| n.as_string())
                else {
                    continue;
                };
                let value = Reflect::get(&item, &1.into()).unwrap_or(JsValue::NULL);
                last_seen = Some(name.clone());
                // Gone since it was listed: skip it. Names of another shape
                // are not kvsweep's: skip them too.
                let (false, Some(id)) = (
                    value.is_null() || value.is_undefined(),
                    self.id_of(&prefix, &name),
                ) else {
                    continue;
                };
                // A value that is not bytes was not written by kvsweep:
                // NOT_BYTES decodes as corrupt, so it is reported and kept.
                let bytes = value
                    .dyn_ref::<Uint8Array>()
                    .map_or_else(|| crate::store::idb::NOT_BYTES.to_vec(), Uint8Array::to_vec);
                if value.is_instance_of::<Uint8Array>() {
                    self.remember_listed(table, &name, &bytes, &value);
                }
                out.push((id, bytes));
                last_returned = Some(name);
            }
            let done = member(&page, "done").as_bool() != Some(false);
            let next_cursor = member(&page, "cursor");
            let last = member(&page, "last").as_string().or(last_seen);
            if done {
                return Ok(out);
            }
            if out.len() >= limit {
                if let (Some(name), false) = (last_returned, next_cursor.is_undefined()) {
                    let mut cursors = self.cursors.borrow_mut();
                    if cursors.len() >= 16 {
                        cursors.remove(0);
                    }
                    cursors.push((name, next_cursor));
                }
                return Ok(out);
            }
            if last.is_none() && next_cursor.is_undefined() {
                return Err(StoreError::Backend(
                    "the driver's list() said more was left but gave no way on".into(),
                ));
            }
            // With a cursor to go on from, the start stays where the caller
            // asked the listing to begin: a driver that found no cursor for
            // it (Workers KV) lists from the table's first name and skips up
            // to it, and passing it the page's last name instead would make
            // it return names before the start (each twice).
            if last.is_some() && next_cursor.is_undefined() {
                start = last;
            }
            cursor = next_cursor;
        }
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
        self.apply_with(ops, false).await
    }

    /// A write on a guess, where the backend checks (compare-and-set): the
    /// step's writes go at once, under checks that the records are still as
    /// guessed, one backend call and no read. A guess found wrong commits no
    /// record (blob bytes kept outside the batch may have been written
    /// again: the same bytes, under their SHA-256), and the write goes again
    /// the usual way, reading first. A record guessed present needs the
    /// token of its version: only where a token is the bytes themselves is
    /// the guess its token; elsewhere only a read gives one, and the write
    /// goes the usual way. So does a batch of blob bytes a driver writes
    /// unlocked before its checks (R2): a run deleting that blob's record
    /// between the upload and the check would then delete the bytes as
    /// uploaded before it, and the record written on the guess would have
    /// none.
    async fn transact_guess(
        &self,
        tables: &[Table],
        guess: &Reads,
        step: &mut DynStep<'_>,
    ) -> Result<(), Error> {
        // A record guessed present can be checked without a read only where
        // its token is its bytes.
        let keys = guess.keys();
        let checkable =
            |g: Option<Option<&[u8]>>| g == Some(None) || (self.tokens_are_bytes && g.is_some());
        if self.caps.compare_and_set
            && !keys.is_empty()
            && keys.iter().all(|(t, k)| checkable(guess.get(*t, k)))
        {
            // A step that fails on the guess may not on the records as they are.
            if let Ok(Step::Write(ops, ())) = step(guess) {
                let unlocked = self.blobs_unlocked
                    && ops.iter().any(|op| matches!(op, Op::Put(Table::Blobs, ..)));
                if !unlocked {
                    // The guess is the token its checks send.
                    for (t, k) in &keys {
                        if let Some(Some(bytes)) = guess.get(*t, k) {
                            let token = Uint8Array::from(bytes).into();
                            self.remember(self.name(*t, k), Some(stamp(bytes)), token);
                        }
                    }
                    let mut all = guess.expects();
                    all.extend(ops);
                    match self.apply_with(all, false).await {
                        Err(StoreError::Conflict(_)) => {}
                        other => return other.map_err(Error::from),
                    }
                }
            }
        }
        self.transact_dyn(Access::Write, tables, step).await
    }

    /// A read-check-write where the driver can hold its backend's turn
    /// (`lock`: a Durable Object, a Map, unstorage, keyv, generic objects):
    /// held from the first read to the write, so that kvsweep's writers in
    /// this realm never collide and retry (twenty writes at once referencing
    /// one entry would otherwise use up their attempts).
    async fn transact_dyn(
        &self,
        access: Access,
        _tables: &[Table],
        step: &mut DynStep<'_>,
    ) -> Result<(), Error> {
        let turn = access == Access::Write && member(&self.driver, "lock").is_function();
        // Given back on every path, a dropped future's too.
        let _turn = match turn {
            true => Some(Turn(self.call("lock", &[]).await?)),
            false => None,
        };
        // A write may begin from records remembered as read (see `Held`).
        if access == Access::Read || !(self.tokens_are_bytes && self.caps.compare_and_set) {
            return optimistic(&Held::new(self, turn, false), step).await;
        }
        let held = Held::new(self, turn, true);
        let doubtful = std::cell::Cell::new(false);
        let first = optimistic(&held, &mut |reads: &Reads| {
            if reads.is_empty() {
                held.used.borrow_mut().clear(); // an attempt begins
            }
            let out = step(reads);
            let wrote_or_reads = matches!(out, Ok(Step::Read(_) | Step::Write(..)));
            if !wrote_or_reads && !held.used.borrow().is_empty() {
                doubtful.set(true);
            }
            out
        })
        .await;
        if !doubtful.get() {
            return first;
        }
        // It wrote nothing, so no check held it to the records it
        // remembered (a lease another store gave back since, say): it goes
        // again on records read now.
        self.tokens.borrow_mut().remove(&held.used.take());
        optimistic(&Held::new(self, turn, false), step).await
    }
}

/// A driver's turn, given back when dropped.
struct Turn(JsValue);

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(release) = self.0.dyn_ref::<Function>() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
    }
}

/// A store whose driver's turn this task holds: its batches go straight in.
/// `turn` says whether the turn is held (`false`: the driver takes one per
/// batch); one wrapper for both keeps one copy of the optimistic loop.
/// `remembered` says whether reads may be answered by the records as last
/// read or listed, where a token is the bytes themselves (`used` names
/// those): a write's checks hold it to them, and one that finds them
/// changed forgets them, so its next attempt reads (a run's batch, listed
/// just before, saves its read that way). A step that ends without writing
/// sent no check: `transact_dyn` runs it again on records read then.
struct Held<'a> {
    store: &'a JsKvStore,
    turn: bool,
    remembered: bool,
    used: RefCell<Vec<String>>,
    /// The turn taken after a conflict, where the driver offers one for
    /// that (`lockAfterConflict`: Deno KV), held to the end of the write:
    /// writes of this realm that collided go again one at a time, so thirty
    /// at once all succeed, while writes that do not collide still go
    /// together. (Checks still guard against other processes.)
    late: RefCell<Option<Turn>>,
}

impl<'a> Held<'a> {
    fn new(store: &'a JsKvStore, turn: bool, remembered: bool) -> Self {
        Held {
            store,
            turn,
            remembered,
            used: RefCell::new(Vec::new()),
            late: RefCell::new(None),
        }
    }
}

impl Store for Held<'_> {
    async fn list(
        &self,
        table: Table,
        after: Option<&EntryId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.store.list(table, after, limit).await
    }

    async fn get(
        &self,
        table: Table,
        keys: &[EntryId],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if !self.remembered {
            return self.store.get(table, keys).await;
        }
        let names: Vec<String> = keys.iter().map(|k| self.store.name(table, k)).collect();
        let mut out: Vec<Option<Option<Vec<u8>>>> = {
            let tokens = self.store.tokens.borrow();
            names
                .iter()
                .map(|n| match tokens.get(n) {
                    Some((Some(_), token)) => {
                        token.dyn_ref::<Uint8Array>().map(|b| Some(b.to_vec()))
                    }
                    _ => None,
                })
                .collect()
        };
        let mut missing = Vec::new();
        for (name, got) in names.into_iter().zip(&out) {
            match got {
                None => missing.push(name),
                Some(_) => self.used.borrow_mut().push(name),
            }
        }
        let mut read = self.store.read(&missing).await?.into_iter();
        Ok(out
            .iter_mut()
            .map(|got| got.take().unwrap_or_else(|| read.next().flatten()))
            .collect())
    }

    fn capabilities(&self) -> Capabilities {
        self.store.caps
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let out = self.store.apply_with(ops, self.turn).await;
        let first = !self.turn && self.late.borrow().is_none();
        if first
            && matches!(out, Err(StoreError::Conflict(_)))
            && member(&self.store.driver, LATE_TURN).is_function()
        {
            let turn = Turn(self.store.call(LATE_TURN, &[]).await?);
            self.late.replace(Some(turn));
        }
        out
    }
}

/// A driver's method taking its turn for a write that collided (see `Held`).
const LATE_TURN: &str = "lockAfterConflict";

impl JsKvStore {
    /// Marks the store closed: see [`JsKvStore::closed_for_good`].
    pub fn close(&self) {
        self.closed.set(true);
    }

    /// Whether `close()` was called: a backend that then fails every call
    /// (OPFS, Cache Storage) will not work again.
    pub fn closed_for_good(&self) -> bool {
        self.closed.get()
    }

    async fn apply_with(&self, ops: Vec<Op>, held: bool) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        // Each check needs the token of the version it expects: the one read
        // last, when that is the version expected; else read it again now.
        let mut checks: Vec<(String, Option<u64>)> = Vec::new();
        let writes = Array::new();
        // Forgotten once the checks have their tokens: a batch checks and
        // then deletes the same records (a run's), and forgetting first
        // would read every one of them again.
        let mut written: Vec<String> = Vec::new();
        for op in &ops {
            match op {
                Op::Expect(t, id, expected) => checks.push((self.name(*t, id), *expected)),
                Op::Put(t, id, bytes) => {
                    if id.namespace.bytes().any(|b| b == 0) {
                        return Err(StoreError::Backend(format!(
                            "namespace {} contains U+0000, which a key–value store's layout cannot hold",
                            Quoted(&id.namespace)
                        )));
                    }
                    let name = self.name(*t, id);
                    // Room left for what a write adds to a name (a chunk's key, a copy's).
                    let most = self.max_key_bytes.map(|m| m.saturating_sub(self.key_room));
                    if let Some(most) = most.filter(|m| self.key_bytes(&name) > *m) {
                        return Err(StoreError::Backend(format!(
                            "a record's key of {} bytes (namespace {}) is too long for {} {} store, which keeps keys of at most {most} bytes",
                            self.key_bytes(&name),
                            Quoted(&id.namespace),
                            article(&self.kind),
                            self.kind,
                        )));
                    }
                    let when = self
                        .expiry(*t, bytes)
                        .map_or(JsValue::UNDEFINED, |w| JsValue::from_f64(w as f64));
                    let bytes: JsValue = Uint8Array::from(bytes.as_slice()).into();
                    writes.push(&Array::of3(&JsValue::from_str(&name), &bytes, &when));
                    written.push(name);
                }
                Op::Delete(t, id) => {
                    let name = self.name(*t, id);
                    writes.push(&Array::of2(&JsValue::from_str(&name), &JsValue::NULL));
                    written.push(name);
                }
                Op::DeleteRange(t, ..) => {
                    return Err(StoreError::Backend(format!(
                        "range deletes of {} need a store with range deletes",
                        t.name()
                    )))
                }
            }
        }
        // A check of absence needs no token: the driver's is `null`.
        let stale: Vec<String> = checks
            .iter()
            .filter(|(name, expected)| {
                expected.is_some()
                    && !matches!(self.tokens.borrow().get(name), Some((s, _)) if s == expected)
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
                    "{} changed since it was read",
                    Quoted(name)
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
                "one batch would make {} writes and {} checks, and a {} store commits at most {} writes and {} checks at once: write fewer entries per call (putMany), reference fewer entries and blobs from one entry, or lower batchSize",
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
                _ if expected.is_none() => {
                    checks_js.push(&Array::of2(&JsValue::from_str(name), &JsValue::NULL));
                }
                Some((s, token)) if s == expected => {
                    checks_js.push(&Array::of2(&JsValue::from_str(name), token));
                }
                _ => {
                    return Err(StoreError::Conflict(format!(
                        "{} changed since it was read",
                        Quoted(name)
                    )))
                }
            }
        }
        self.tokens.borrow_mut().remove(&written);
        let ok = self
            .call("apply", &[checks_js.into(), writes.into(), held.into()])
            .await?;
        if ok.as_bool() == Some(false) {
            // Read again, all of them, before the next checks (rare: a writer raced).
            self.tokens.borrow_mut().clear();
            return Err(StoreError::Conflict(
                "a record changed since it was read".into(),
            ));
        }
        Ok(())
    }
}

/// "a" or "an", as English puts it before `word`.
pub(crate) fn article(word: &str) -> &'static str {
    match word.bytes().next() {
        Some(b'a' | b'e' | b'i' | b'o' | b'u') => "an",
        _ => "a",
    }
}
