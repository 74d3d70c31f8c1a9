//! The Rust core against a real IndexedDB in headless Chromium
//! (`cargo test --target wasm32-unknown-unknown --tests`).
#![cfg(target_arch = "wasm32")]

use kvsweep::codec::{self, StoredValue};
use kvsweep::exec::RunToEnd;
use kvsweep::store::idb::IdbStore;
use kvsweep::store::{Op, Store, StoreError, Table};
use kvsweep::{EntryId, Mode, Policy, PutOptions, Reason, Sweeper};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn fresh(name: &str) -> IdbStore {
    let unique = format!("{name}-{}", js_sys::Math::random());
    IdbStore::open(&unique).await.expect("IndexedDB opens")
}

async fn all_keys(store: &IdbStore, table: Table) -> Vec<EntryId> {
    let mut out: Vec<EntryId> = Vec::new();
    loop {
        let page = store.list(table, out.last(), 128).await.unwrap();
        let n = page.len();
        out.extend(page.into_iter().map(|(k, _)| k));
        if n < 128 {
            return out;
        }
    }
}

#[wasm_bindgen_test]
async fn run_leaves_exactly_the_live_half_in_indexeddb() {
    let store = fresh("half").await;
    let s = Sweeper::new(store, Policy::default(), Default::default());
    let t0 = 1_700_000_000_000;
    for i in 0..1000u64 {
        let ttl = if i % 2 == 0 { 1_000 } else { 100_000 };
        let opts = PutOptions {
            ttl_ms: Some(ttl),
            ..Default::default()
        };
        s.put(
            &EntryId::new("ns", format!("k{i:04}")),
            StoredValue::Bytes(vec![(i % 251) as u8; 16]),
            opts,
            t0,
        )
        .await
        .unwrap();
    }
    let report = s.run(Mode::Full, t0 + 50_000, &mut RunToEnd).await.unwrap();
    assert!(report.done);
    assert_eq!(report.deleted[&Reason::Expired].count, 500);
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    // Read the database back, not the report.
    let meta = all_keys(s.store(), Table::Meta).await;
    let values = all_keys(s.store(), Table::Values).await;
    assert_eq!(meta.len(), 500);
    // Small values live in their entry's record: no value records at all.
    assert!(values.is_empty(), "{values:?}");
    let records = s.store().get(Table::Meta, &meta).await.unwrap();
    assert!(records
        .iter()
        .all(|r| kvsweep::write::has_inline_value(r.as_ref().unwrap())));
    for id in &meta {
        let i: u64 = id.key[1..].parse().unwrap();
        assert_eq!(i % 2, 1, "{id:?} should have been deleted");
    }
}

/// `n` temp records, the i-th at `key(i)` holding the byte `i`.
fn temps(n: usize, key: impl Fn(usize) -> String) -> Vec<Op> {
    (0..n)
        .map(|i| Op::Put(Table::Temps, EntryId::new("", key(i)), vec![i as u8]))
        .collect()
}

#[wasm_bindgen_test]
async fn list_pages_cover_every_record_once_in_order() {
    let store = fresh("pages").await;
    store
        .apply(temps(300, |i| format!("t{i:03}")))
        .await
        .unwrap();
    let keys = all_keys(&store, Table::Temps).await;
    assert_eq!(keys.len(), 300);
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
}

/// Counts the `put`s issued from now on and the transactions they went in,
/// and, at the first turn of the event loop (a `MessageChannel` message, which
/// no timer throttling delays), records how many were issued and, when
/// `abort` is true, aborts their transaction. `restore()` undoes it.
fn watch_puts(abort: bool) -> JsValue {
    js_sys::Function::new_with_args(
        "abort",
        r#"
        const put = IDBObjectStore.prototype.put;
        const seen = { puts: 0, atTurn: -1, transactions: new Set() };
        IDBObjectStore.prototype.put = function (...args) {
          seen.puts++;
          seen.transactions.add(this.transaction);
          return put.apply(this, args);
        };
        const channel = new MessageChannel();
        channel.port1.onmessage = () => {
          seen.atTurn = seen.puts;
          if (abort) for (const tx of seen.transactions) tx.abort();
          channel.port1.close();
        };
        channel.port2.postMessage(0);
        seen.restore = () => (IDBObjectStore.prototype.put = put);
        seen.count = () => seen.transactions.size;
        return seen;
        "#,
    )
    .call1(&JsValue::NULL, &abort.into())
    .unwrap()
}

/// What [`long_batch`] saw: the puts made, how many of them had been made at
/// the first turn of the event loop, and the transactions they went in.
struct Seen {
    puts: f64,
    at_turn: f64,
    transactions: f64,
}

const LONG_BATCH: usize = 5000;

impl Seen {
    fn turned_mid_batch(&self) -> bool {
        self.at_turn > 0.0 && self.at_turn < LONG_BATCH as f64
    }
}

/// Applies a batch of [`LONG_BATCH`] puts, watched by [`watch_puts`].
async fn long_batch(store: &IdbStore, abort: bool) -> (Result<(), StoreError>, Seen) {
    let watch = watch_puts(abort);
    let ops = (0..LONG_BATCH)
        .map(|i| {
            Op::Put(
                Table::Temps,
                EntryId::new("", format!("t{i:05}")),
                vec![7; 64],
            )
        })
        .collect();
    let applied = store.apply(ops).await;
    let field = |name: &str| js_sys::Reflect::get(&watch, &name.into()).unwrap();
    let call = |name: &str| js_sys::Function::from(field(name)).call0(&watch).unwrap();
    call("restore");
    let seen = Seen {
        puts: field("puts").as_f64().unwrap(),
        at_turn: field("atTurn").as_f64().unwrap(),
        transactions: call("count").as_f64().unwrap(),
    };
    (applied, seen)
}

/// A batch of thousands of writes is issued over several tasks (the event
/// loop turns with only part of its requests made) and still goes in one
/// transaction, whole.
#[wasm_bindgen_test]
async fn a_long_batch_lets_the_event_loop_run_and_commits_whole() {
    let store = fresh("slices").await;
    let (applied, seen) = long_batch(&store, false).await;
    applied.unwrap();
    assert_eq!(seen.puts, LONG_BATCH as f64);
    assert_eq!(seen.transactions, 1.0, "one transaction");
    assert!(
        seen.turned_mid_batch(),
        "the event loop turned after {} of {LONG_BATCH} puts",
        seen.at_turn
    );
    assert_eq!(all_keys(&store, Table::Temps).await.len(), LONG_BATCH);
}

/// The same batch, its transaction aborted at the first turn of the event
/// loop, mid-batch: the batch fails and leaves nothing written.
#[wasm_bindgen_test]
async fn a_long_batch_aborted_midway_writes_nothing() {
    let store = fresh("slices-abort").await;
    let (applied, seen) = long_batch(&store, true).await;
    assert!(
        seen.turned_mid_batch(),
        "the event loop turned after {} of {LONG_BATCH} puts",
        seen.at_turn
    );
    assert!(applied.is_err(), "an aborted batch must fail");
    assert!(all_keys(&store, Table::Temps).await.is_empty());
}

#[wasm_bindgen_test]
async fn undecodable_metadata_in_indexeddb_is_kept_and_reported() {
    let store = fresh("corrupt").await;
    store
        .apply(vec![Op::Put(
            Table::Meta,
            EntryId::new("", "bad"),
            b"not msgpack".to_vec(),
        )])
        .await
        .unwrap();
    let s = Sweeper::new(store, Policy::default(), Default::default());
    let report = s
        .run(Mode::Full, u32::MAX as u64, &mut RunToEnd)
        .await
        .unwrap();
    assert_eq!(report.corrupt, vec![EntryId::new("", "bad")]);
    let left = s
        .store()
        .get(Table::Meta, &[EntryId::new("", "bad")])
        .await
        .unwrap();
    assert!(left[0].is_some());
    assert!(codec::decode_meta(left[0].as_ref().unwrap()).is_err());
}

/// Runs `n` puts at once (each its own future on the event loop) and waits for all.
async fn concurrent_puts(
    s: &std::rc::Rc<Sweeper<IdbStore>>,
    n: usize,
    key: impl Fn(usize) -> String,
    opts: impl Fn(usize) -> PutOptions,
) -> Vec<Result<(), String>> {
    let promises = js_sys::Array::new();
    for i in 0..n {
        let s = s.clone();
        let (id, o) = (EntryId::new("ns", key(i)), opts(i));
        promises.push(&wasm_bindgen_futures::future_to_promise(async move {
            let r = s
                .put(
                    &id,
                    StoredValue::Bytes(vec![i as u8; 4]),
                    o,
                    1_000 + i as u64,
                )
                .await
                .map_err(|e| e.to_string());
            Ok(r.err().map_or(JsValue::NULL, |e| JsValue::from_str(&e)))
        }));
    }
    let settled = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::all(&promises))
        .await
        .unwrap();
    js_sys::Array::from(&settled)
        .iter()
        .map(|v| match v.as_string() {
            Some(e) => Err(e),
            None => Ok(()),
        })
        .collect()
}

#[wasm_bindgen_test]
async fn two_hundred_concurrent_writes_all_succeed_and_the_last_wins() {
    let s = std::rc::Rc::new(Sweeper::new(
        fresh("contention").await,
        Policy::default(),
        Default::default(),
    ));
    let t = EntryId::new("ns", "target");
    s.put(&t, StoredValue::Bytes(vec![0]), PutOptions::default(), 1)
        .await
        .unwrap();
    let blob = s.put_blob(b"shared bytes", 1).await.unwrap();

    // One key, written 200 times at once.
    let same = concurrent_puts(&s, 200, |_| "same".into(), |_| PutOptions::default()).await;
    assert!(same.iter().all(Result::is_ok), "{same:?}");
    let last = s.get(&EntryId::new("ns", "same"), 5_000).await.unwrap();
    assert_eq!(last, Some(StoredValue::Bytes(vec![199; 4])));

    // 200 new entries referencing one entry, and 200 referencing one blob.
    let refs = concurrent_puts(
        &s,
        200,
        |i| format!("r{i:03}"),
        |_| PutOptions {
            refs: vec!["target".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(refs.iter().all(Result::is_ok), "{refs:?}");
    let blobs = concurrent_puts(
        &s,
        200,
        |i| format!("b{i:03}"),
        |_| PutOptions {
            blobs: vec![blob.clone()],
            ..Default::default()
        },
    )
    .await;
    assert!(blobs.iter().all(Result::is_ok), "{blobs:?}");

    // Every reference was counted: the counts equal the referrers.
    let meta = s.store().get(Table::Meta, &[t]).await.unwrap();
    assert_eq!(
        codec::decode_meta(meta[0].as_ref().unwrap())
            .unwrap()
            .referrers,
        200
    );
    let rec = s
        .store()
        .get(Table::BlobMeta, &[kvsweep::store::id_key(&blob)])
        .await
        .unwrap();
    assert_eq!(
        codec::decode_blob(rec[0].as_ref().unwrap()).unwrap().refs,
        200
    );
}

#[wasm_bindgen_test]
async fn adjacent_garbage_goes_as_key_ranges_and_nothing_between_is_touched() {
    let s = Sweeper::new(fresh("ranges").await, Policy::default(), Default::default());
    let items: Vec<_> = (0..600u64)
        .map(|i| {
            // a000–a299 expire; b000–b299 stay; c010 stays between expiring c-keys.
            let (key, ttl) = match i {
                0..=299 => (format!("a{i:03}"), Some(10)),
                300..=589 => (format!("b{:03}", i - 300), None),
                _ => (format!("c{:03}", i - 590), (i != 595).then_some(10)),
            };
            let opts = PutOptions {
                ttl_ms: ttl,
                ..Default::default()
            };
            // The a-range's values are too big to live in their records.
            let size = if i < 300 {
                kvsweep::codec::INLINE_MAX + 1
            } else {
                8
            };
            (
                EntryId::new("ns", key),
                StoredValue::Bytes(vec![1; size]),
                opts,
            )
        })
        .collect();
    s.put_many(items, 1_000).await.unwrap();
    let report = s.run(Mode::Full, 5_000, &mut RunToEnd).await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.deleted[&Reason::Expired].count, 309);
    let meta = all_keys(s.store(), Table::Meta).await;
    let keys: Vec<&str> = meta.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys.len(), 291);
    assert!(
        keys.iter().all(|k| k.starts_with('b') || *k == "c005"),
        "{keys:?}"
    );
    // The a-range's value records went with it (as one key range).
    assert_eq!(all_keys(s.store(), Table::Values).await.len(), 0);
}

/// Two sweepers on one new database, as two tabs would have.
async fn two_sweepers(name: &str) -> (Sweeper<IdbStore>, Sweeper<IdbStore>) {
    let name = format!("{name}-{}", js_sys::Math::random());
    let open = || async {
        Sweeper::new(
            IdbStore::open(&name).await.unwrap(),
            Policy::default(),
            Default::default(),
        )
    };
    (open().await, open().await)
}

#[wasm_bindgen_test]
async fn a_put_on_a_stale_guess_still_counts_exactly() {
    let (one, two) = two_sweepers("guess").await;
    let (k, t) = (EntryId::new("ns", "k"), EntryId::new("ns", "t"));
    one.put(&t, StoredValue::Bytes(vec![1]), PutOptions::default(), 1)
        .await
        .unwrap();
    one.put(&k, StoredValue::Bytes(vec![2]), PutOptions::default(), 2)
        .await
        .unwrap();
    // Another sweeper rewrites k with a reference: `one`'s guess of k is stale.
    let refs = PutOptions {
        refs: vec!["t".into()],
        ..Default::default()
    };
    two.put(&k, StoredValue::Bytes(vec![3]), refs, 3)
        .await
        .unwrap();
    one.put(&k, StoredValue::Bytes(vec![4]), PutOptions::default(), 4)
        .await
        .unwrap();
    assert_eq!(
        two.get(&k, 5).await.unwrap(),
        Some(StoredValue::Bytes(vec![4]))
    );
    let meta = one
        .store()
        .get(Table::Meta, std::slice::from_ref(&t))
        .await
        .unwrap();
    assert_eq!(
        codec::decode_meta(meta[0].as_ref().unwrap())
            .unwrap()
            .referrers,
        0
    );
    // And a right guess: k again, as `one` last wrote it.
    one.put(
        &k,
        StoredValue::Bytes(vec![5; 9000]),
        PutOptions::default(),
        6,
    )
    .await
    .unwrap();
    one.put(&k, StoredValue::Bytes(vec![6]), PutOptions::default(), 7)
        .await
        .unwrap();
    assert_eq!(
        two.get(&k, 8).await.unwrap(),
        Some(StoredValue::Bytes(vec![6]))
    );
    assert!(all_keys(one.store(), Table::Values).await.is_empty());
    assert!(one.delete(&t).await.unwrap());
}

#[wasm_bindgen_test]
async fn writes_on_an_absent_guess_that_was_wrong_still_count_exactly() {
    let (a, b) = two_sweepers("guess").await;
    let id = |k: &str| EntryId::new("ns", k);
    let bytes = |b: u8| StoredValue::Bytes(vec![b; 8]);
    let refs = PutOptions {
        refs: vec!["target".into()],
        ..Default::default()
    };
    a.put(&id("target"), bytes(0), PutOptions::default(), 1)
        .await
        .unwrap();
    for k in ["k1", "k2", "k3"] {
        a.put(&id(k), bytes(1), refs.clone(), 1).await.unwrap();
    }
    // b never saw them: it adds on the guess that they are absent, meets
    // the records a wrote, and must drop their references in the same
    // transaction; "fresh" is added on the way.
    b.put_many(
        vec![
            (id("fresh"), bytes(2), PutOptions::default()),
            (id("k1"), bytes(2), PutOptions::default()),
            (id("k2"), bytes(2), PutOptions::default()),
        ],
        2,
    )
    .await
    .unwrap();
    b.put(&id("k3"), bytes(3), PutOptions::default(), 3)
        .await
        .unwrap();
    for (k, v) in [("fresh", 2), ("k1", 2), ("k2", 2), ("k3", 3)] {
        assert_eq!(a.get(&id(k), 4).await.unwrap(), Some(bytes(v)), "{k}");
    }
    let meta = a.store().get(Table::Meta, &[id("target")]).await.unwrap();
    let target = codec::decode_meta(meta[0].as_ref().unwrap()).unwrap();
    assert_eq!(target.referrers, 0);
    assert!(a.delete(&id("target")).await.unwrap());
}

/// Writes records whose keys kvsweep never makes into the object store
/// `table` of the database `name`, in plain IndexedDB: a string (which sorts
/// before every array key), an array of one string and one of three, which
/// sort among kvsweep's `[namespace, key]`.
async fn put_foreign_keys(name: &str, table: &str) {
    in_plain_idb(
        name,
        table,
        r#"
        store.put(new Uint8Array([1]), "foreign");
        store.put(new Uint8Array([2]), ["ns"]);
        store.put(new Uint8Array([3]), ["ns", "k0150", 1]);
        "#,
    )
    .await;
}

/// How many records of any key the object store `table` of `name` holds.
async fn count_all(name: &str, table: &str) -> f64 {
    in_plain_idb(name, table, "return store.count();")
        .await
        .as_f64()
        .unwrap()
}

/// Runs `body` (JS, with `store` the object store `table` of the database
/// `name`, in a readwrite transaction) in plain IndexedDB; resolves to the
/// result of the request it returns, if any, once the transaction commits.
async fn in_plain_idb(name: &str, table: &str, body: &str) -> JsValue {
    let promise = js_sys::Function::new_with_args(
        "name, table, body",
        r#"
        return new Promise((ok, fail) => {
          const open = indexedDB.open(name);
          open.onerror = () => fail(open.error);
          open.onsuccess = () => {
            const db = open.result;
            const tx = db.transaction(table, "readwrite");
            const store = tx.objectStore(table);
            const request = new Function("store", body)(store);
            tx.oncomplete = () => { db.close(); ok(request?.result); };
            tx.onabort = () => { db.close(); fail(tx.error); };
          };
        });
        "#,
    )
    .call3(&JsValue::NULL, &name.into(), &table.into(), &body.into())
    .unwrap();
    wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(promise))
        .await
        .unwrap()
}

/// Records of another key shape (written by other code into kvsweep's
/// object stores) are skipped, and the listing still goes on to the end: a
/// page short of them would read as the end of the table, and `rebuild`,
/// counting references over half a listing, would lower a blob's count that
/// an unlisted entry holds, so that the next run deleted a live blob. A run
/// of adjacent garbage around one of them goes, and it stays.
#[wasm_bindgen_test]
async fn records_of_another_key_shape_neither_end_a_listing_nor_lose_a_blob() {
    let store = fresh("foreign").await;
    let name = store.name();
    let config = kvsweep::Config {
        exec: kvsweep::exec::ExecConfig {
            page_size: 100,
            ..Default::default()
        },
        ..Default::default()
    };
    let s = Sweeper::new(store, Policy::default(), config);
    let t0 = 1_700_000_000_000;
    let blob = s.put_blob(b"attachment", t0).await.unwrap();
    for i in 0..300u64 {
        let opts = PutOptions {
            // The last entry, on the listing's third page, holds the blob.
            blobs: if i == 299 { vec![blob.clone()] } else { vec![] },
            // Adjacent garbage on both sides of ["ns", "k0150", 1].
            ttl_ms: (140..=160).contains(&i).then_some(1000),
            ..Default::default()
        };
        s.put(
            &EntryId::new("ns", format!("k{i:04}")),
            StoredValue::Bytes(vec![1]),
            opts,
            t0,
        )
        .await
        .unwrap();
    }
    put_foreign_keys(&name, "meta").await;

    let keys = all_keys(s.store(), Table::Meta).await;
    assert_eq!(keys.len(), 300, "a listing with records of another shape");
    assert!(keys.windows(2).all(|w| w[0] < w[1]));

    s.rebuild().await.unwrap();
    // Well past the blob's grace period: only its holder keeps it.
    let later = t0 + 24 * 60 * 60 * 1000;
    let report = s.run(Mode::Full, later, &mut RunToEnd).await.unwrap();
    assert_eq!(report.scanned, 300, "{report:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.deleted.len(), 1, "{:?}", report.deleted);
    assert_eq!(report.deleted[&Reason::Expired].count, 21);
    assert_eq!(
        s.get_blob(&blob).await.unwrap().as_deref(),
        Some(&b"attachment"[..])
    );
    // The other records are left as they were, and nothing else went.
    assert_eq!(all_keys(s.store(), Table::Meta).await.len(), 279);
    assert_eq!(count_all(&name, "meta").await, 282.0);
    let foreign = in_plain_idb(&name, "meta", r#"return store.get(["ns", "k0150", 1]);"#).await;
    assert_eq!(js_sys::Uint8Array::new(&foreign).to_vec(), vec![3]);
}

/// Starts `calls` at once, in order (none waits for another), and gives
/// what each came to, as `{:?}` of its result.
async fn at_once(
    calls: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = String>>>>,
) -> Vec<String> {
    let promises = js_sys::Array::new();
    for f in calls {
        promises.push(&wasm_bindgen_futures::future_to_promise(async move {
            Ok(JsValue::from_str(&f.await))
        }));
    }
    let done = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::all(&promises))
        .await
        .unwrap();
    js_sys::Array::from(&done)
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect()
}

/// Counts, until `restore()`, the `commit()` calls on transactions and the
/// `add`s whose request failed: a put that committed early on a wrong guess
/// shows as one of each.
fn watch_early_commits() -> JsValue {
    js_sys::Function::new_no_args(
        r#"
        const add = IDBObjectStore.prototype.add;
        const commit = IDBTransaction.prototype.commit;
        const seen = { commits: 0, failedAdds: 0 };
        IDBObjectStore.prototype.add = function (...args) {
          const request = add.apply(this, args);
          request.addEventListener("error", () => seen.failedAdds++);
          return request;
        };
        IDBTransaction.prototype.commit = function () {
          seen.commits++;
          return commit.call(this);
        };
        seen.restore = () => {
          IDBObjectStore.prototype.add = add;
          IDBTransaction.prototype.commit = commit;
          return [seen.commits, seen.failedAdds];
        };
        return seen;
        "#,
    )
    .call0(&JsValue::NULL)
    .unwrap()
}

/// Undoes [`watch_early_commits`]; `[commits, failed adds]` it counted.
fn early_commits_seen(watch: &JsValue) -> Vec<f64> {
    let restore = js_sys::Reflect::get(watch, &"restore".into()).unwrap();
    let counts = js_sys::Function::from(restore).call0(watch).unwrap();
    js_sys::Array::from(&counts)
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// `s.put(key, [1; 8])` in namespace "ns", as a call for [`at_once`].
fn put_call(
    s: std::rc::Rc<Sweeper<IdbStore>>,
    key: &'static str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = String>>> {
    Box::pin(async move {
        let id = EntryId::new("ns", key);
        let put = s.put(
            &id,
            StoredValue::Bytes(vec![1; 8]),
            PutOptions::default(),
            2,
        );
        format!("{:?}", put.await)
    })
}

/// A write committed early on a wrong guess (its add met a record another
/// sweeper wrote, so nothing was written) goes again in a transaction of
/// its own; the calls made after it, before it was confirmed, still come
/// after it: a read sees it, a delete removes what it wrote.
#[wasm_bindgen_test]
async fn calls_after_a_write_on_a_wrong_guess_keep_their_order() {
    let (a, b) = two_sweepers("order").await;
    let b = std::rc::Rc::new(b);
    let id = |k: &str| EntryId::new("ns", k);
    let bytes = |b: u8| StoredValue::Bytes(vec![b; 8]);
    for k in ["read", "gone"] {
        a.put(&id(k), bytes(0), PutOptions::default(), 1)
            .await
            .unwrap();
    }
    // b registered the namespace, so its puts need no other write, and it
    // never saw those two: a put of one of them, made while no other call
    // waits, commits its add at once, meets a's record and goes again.
    b.put(&id("b's own"), bytes(0), PutOptions::default(), 1)
        .await
        .unwrap();
    let t = b.clone();
    let watch = watch_early_commits();
    let read = at_once(vec![
        put_call(b.clone(), "read"),
        Box::pin(async move { format!("{:?}", t.get(&id("read"), 3).await) }),
    ])
    .await;
    let some_1 = format!("{:?}", Ok::<_, ()>(Some(bytes(1))));
    assert_eq!(read, ["Ok(())", some_1.as_str()]);
    assert_eq!(
        early_commits_seen(&watch),
        [1.0, 1.0],
        "one early commit, one failed add"
    );
    let (t, u) = (b.clone(), b.clone());
    let watch = watch_early_commits();
    let gone = at_once(vec![
        put_call(b.clone(), "gone"),
        Box::pin(async move { format!("{:?}", t.delete(&id("gone")).await) }),
        Box::pin(async move { format!("{:?}", u.get(&id("gone"), 3).await) }),
    ])
    .await;
    assert_eq!(gone, ["Ok(())", "Ok(true)", "Ok(None)"]);
    assert_eq!(
        early_commits_seen(&watch),
        [1.0, 1.0],
        "one early commit, one failed add"
    );
    assert_eq!(a.get(&id("read"), 4).await.unwrap(), Some(bytes(1)));
    assert_eq!(a.get(&id("gone"), 4).await.unwrap(), None);
}

/// A listing page that ends on a key of another shape is read as the next
/// page of that listing only: a listing from the start does not take it.
#[wasm_bindgen_test]
async fn a_page_after_a_key_of_another_shape_serves_no_other_listing() {
    let store = fresh("foreign-end").await;
    let name = store.name();
    store
        .apply(temps(20, |i| format!("k{i:02}")))
        .await
        .unwrap();
    // Five keys of another shape after k04 and five after k09: the first
    // listing of 10 reads k00-k04 and five of them, then k05-k09 and five
    // more, and asks for the page after the last of those.
    in_plain_idb(
        &name,
        "temps",
        r#"
        for (let i = 1; i <= 5; i++) {
          store.put(new Uint8Array([i]), ["", "k04", i]);
          store.put(new Uint8Array([i]), ["", "k09", i]);
        }
        "#,
    )
    .await;
    let keys = |page: Vec<(EntryId, Vec<u8>)>| -> Vec<String> {
        page.into_iter().map(|(k, _)| k.key).collect()
    };
    let first: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
    assert_eq!(
        keys(store.list(Table::Temps, None, 10).await.unwrap()),
        first
    );
    assert_eq!(
        keys(store.list(Table::Temps, None, 10).await.unwrap()),
        first
    );
}
