//! The Rust core against a real IndexedDB in headless Chromium
//! (`cargo test --target wasm32-unknown-unknown --tests`).
#![cfg(target_arch = "wasm32")]

use kvsweep::codec::{self, StoredValue};
use kvsweep::exec::RunToEnd;
use kvsweep::store::{Op, Store, Table};
use kvsweep::wasm::IdbStore;
use kvsweep::{EntryId, Mode, Policy, PutOptions, Reason, Sweeper};
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
    // One value per live write, keyed by the entry's key and write id.
    assert_eq!(values.len(), 500);
    assert!(values
        .iter()
        .zip(&meta)
        .all(|(v, m)| v.key.starts_with(&format!("{}\u{1}", m.key))));
    for id in &meta {
        let i: u64 = id.key[1..].parse().unwrap();
        assert_eq!(i % 2, 1, "{id:?} should have been deleted");
    }
}

#[wasm_bindgen_test]
async fn list_pages_cover_every_record_once_in_order() {
    let store = fresh("pages").await;
    let ops = (0..300)
        .map(|i| {
            Op::Put(
                Table::Temps,
                EntryId::new("", format!("t{i:03}")),
                vec![i as u8],
            )
        })
        .collect();
    store.apply(ops).await.unwrap();
    let keys = all_keys(&store, Table::Temps).await;
    assert_eq!(keys.len(), 300);
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
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
