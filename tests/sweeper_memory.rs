//! The Sweeper over a MemoryStore, natively: the walking skeleton's scenario
//! and the write paths the planner relies on.
#![cfg(not(target_arch = "wasm32"))]

use futures_executor::block_on;
use kvsweep::codec::StoredValue;
use kvsweep::exec::RunToEnd;
use kvsweep::store::Table;
use kvsweep::{EntryId, MemoryStore, Mode, Policy, PutOptions, Reason, Sweeper};

fn sweeper() -> Sweeper<MemoryStore> {
    Sweeper::new(MemoryStore::new(), Policy::default(), Default::default())
}

#[test]
fn run_deletes_exactly_the_expired_half() {
    let s = sweeper();
    let t0 = 1_000_000;
    block_on(async {
        for i in 0..1000u64 {
            let ttl = if i % 2 == 0 { 1_000 } else { 10_000 };
            let opts = PutOptions {
                ttl_ms: Some(ttl),
                ..Default::default()
            };
            s.put(
                &EntryId::new("", format!("k{i:04}")),
                StoredValue::Bytes(vec![i as u8]),
                opts,
                t0,
            )
            .await
            .unwrap();
        }
        let report = s.run(Mode::Full, t0 + 5_000, &mut RunToEnd).await.unwrap();
        assert!(report.done);
        assert_eq!(report.deleted[&Reason::Expired].count, 500);
        // Read the store back, not just the report.
        let keys = s.store().keys(Table::Meta);
        assert_eq!(keys.len(), 500);
        assert!(keys
            .iter()
            .all(|k| k.key[1..].parse::<u64>().unwrap() % 2 == 1));
        assert_eq!(s.store().count(Table::Values), 500);
    });
}

#[test]
fn expired_entry_reads_as_missing_before_any_run() {
    let s = sweeper();
    block_on(async {
        let id = EntryId::new("", "a");
        let opts = PutOptions {
            ttl_ms: Some(10),
            ..Default::default()
        };
        s.put(&id, StoredValue::Bytes(vec![1]), opts, 100)
            .await
            .unwrap();
        assert!(s.get(&id, 109).await.unwrap().is_some());
        assert!(s.get(&id, 110).await.unwrap().is_none());
        assert!(s.detail(&id, 110, true).await.unwrap().is_some());
    });
}

#[test]
fn same_bytes_make_one_blob_and_unreferenced_blobs_go_after_grace() {
    let s = sweeper();
    block_on(async {
        let a = s.put_blob(b"hello", 0).await.unwrap();
        let b = s.put_blob(b"hello", 5).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(s.store().count(Table::Blobs), 1);
        let kept = s.put_blob(b"kept", 0).await.unwrap();
        s.put(
            &EntryId::new("n", "doc"),
            StoredValue::Bytes(vec![]),
            PutOptions {
                blobs: vec![kept.clone()],
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
        let grace = s.policy().orphan_grace_ms;
        let report = s.run(Mode::Light, grace, &mut RunToEnd).await.unwrap();
        assert_eq!(report.deleted[&Reason::OrphanBlob].count, 1);
        assert!(s.get_blob(&a).await.unwrap().is_none());
        assert_eq!(
            s.get_blob(&kept).await.unwrap().as_deref(),
            Some(&b"kept"[..])
        );
    });
}

#[test]
fn put_refuses_a_reference_to_a_missing_blob() {
    let s = sweeper();
    let missing = kvsweep::model::blob_id(b"never stored");
    let err = block_on(s.put(
        &EntryId::new("", "k"),
        StoredValue::Bytes(vec![]),
        PutOptions {
            blobs: vec![missing],
            ..Default::default()
        },
        0,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("putBlob"), "{err}");
}

#[test]
fn entry_rewritten_after_planning_is_kept() {
    let s = sweeper();
    block_on(async {
        let id = EntryId::new("", "a");
        s.put(
            &id,
            StoredValue::Bytes(vec![1]),
            PutOptions {
                ttl_ms: Some(1),
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
        let plan = s.plan(Mode::Full, 10).await.unwrap();
        assert_eq!(plan.actions.len(), 1);
        s.put(&id, StoredValue::Bytes(vec![2]), PutOptions::default(), 11)
            .await
            .unwrap();
        let report =
            kvsweep::exec::execute(s.store(), &plan, Default::default(), &mut RunToEnd).await;
        assert_eq!(report.kept, 1);
        assert!(s.get(&id, 12).await.unwrap().is_some());
    });
}

#[test]
fn undecodable_metadata_is_kept_and_reported() {
    let s = sweeper();
    block_on(async {
        use kvsweep::store::{Op, Store};
        let blob = s.put_blob(b"x", 0).await.unwrap();
        s.store()
            .apply(vec![Op::Put(
                Table::Meta,
                EntryId::new("", "bad"),
                vec![0xff, 0x00],
            )])
            .await
            .unwrap();
        let report = s.run(Mode::Full, 1 << 40, &mut RunToEnd).await.unwrap();
        assert_eq!(report.corrupt, vec![EntryId::new("", "bad")]);
        assert!(report.deleted.values().all(|t| t.count == 0));
        assert!(s.get_blob(&blob).await.unwrap().is_some());
    });
}
