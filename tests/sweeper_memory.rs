//! The Sweeper over a MemoryStore, natively: the walking skeleton's scenario
//! and the write paths the planner relies on.
#![cfg(not(target_arch = "wasm32"))]

use futures_executor::block_on;
use kvsweep::codec::StoredValue;
use kvsweep::exec::{RunReport, RunToEnd};
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
        // Small values live in their entry's record on an atomic store.
        assert_eq!(s.store().count(Table::Values), 0);
        let records = kvsweep::store::Store::get(s.store(), Table::Meta, &keys)
            .await
            .unwrap();
        assert!(records
            .iter()
            .all(|r| kvsweep::write::has_inline_value(r.as_ref().unwrap())));
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
        // Storing "hello" again at 5 restarted its grace period.
        let early = s.run(Mode::Light, grace, &mut RunToEnd).await.unwrap();
        assert!(!early.deleted.contains_key(&Reason::OrphanBlob));
        let report = s.run(Mode::Light, grace + 5, &mut RunToEnd).await.unwrap();
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

#[test]
fn an_unreadable_entry_is_deleted_by_name_when_nothing_can_reference_it() {
    let s = sweeper();
    block_on(async {
        use kvsweep::store::{Op, Store};
        let garble = |key: &str| {
            s.store().apply(vec![Op::Put(
                Table::Meta,
                EntryId::new("n", key),
                vec![0xc1],
            )])
        };
        let id = |key: &str| EntryId::new("n", key);
        s.put(&id("bad"), bytes(&[7; 100_000]), Default::default(), 0)
            .await
            .unwrap();
        s.put(&id("user"), bytes(b"u"), refs(&["bad"]), 0)
            .await
            .unwrap();
        garble("bad").await.unwrap();
        // A live entry references it: refused, as for a readable one.
        let err = s.delete_at(&id("bad"), 1).await.unwrap_err();
        assert!(
            matches!(err, kvsweep::Error::Referenced { referrers: 1, .. }),
            "{err}"
        );
        // What references it goes, the unreadable count left as it is.
        assert!(s.delete_at(&id("user"), 1).await.unwrap());
        // A put referencing it says how to replace it.
        let err = s
            .put(&id("new"), bytes(b"new"), refs(&["bad"]), 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("put or delete it"), "{err}");
        // Another unreadable record's references cannot be followed: it
        // holds nothing back. Each goes, with its value record.
        s.put(&id("other"), bytes(b"o"), Default::default(), 0)
            .await
            .unwrap();
        garble("other").await.unwrap();
        assert!(s.store().count(Table::Values) > 0);
        assert!(s.delete_at(&id("bad"), 1).await.unwrap());
        assert!(s.delete_at(&id("other"), 1).await.unwrap());
        assert!(!s.delete_at(&id("bad"), 1).await.unwrap());
        assert_eq!(s.store().count(Table::Meta), 0);
        assert_eq!(s.store().count(Table::Values), 0);
        // The namespace is no longer frozen: a run collects again.
        s.put(&id("old"), bytes(b"."), expiring(1, &[]), 0)
            .await
            .unwrap();
        let report = s.run(Mode::Full, 10, &mut RunToEnd).await.unwrap();
        assert!(report.corrupt.is_empty());
        assert_eq!(report.deleted[&Reason::Expired].count, 1);
    });
}

#[test]
fn a_put_over_a_torn_record_replaces_it_and_keeps_the_count_of_what_references_it() {
    // A process killed mid-put on a store that writes in place (unstorage's
    // fs driver) leaves the entry's record malformed. A put over it was
    // refused, and a delete too while anything referenced it.
    use kvsweep::store::{faulty::FaultyStore, Op, Store};
    for atomic in [true, false] {
        let fs = FaultyStore::new(MemoryStore::new(), 1);
        fs.set_atomic(atomic);
        let s = Sweeper::new(fs.clone(), Policy::default(), in_batches_of(100));
        let id = |key: &str| EntryId::new("n", key);
        block_on(async {
            s.put(&id("bad"), bytes(&[7; 100_000]), Default::default(), 0)
                .await
                .unwrap();
            for user in ["u1", "u2"] {
                s.put(&id(user), bytes(b"u"), refs(&["bad"]), 0)
                    .await
                    .unwrap();
            }
            // Torn: an empty record, and one a later write left unreadable.
            for torn in [vec![], vec![0xc1]] {
                fs.apply(vec![Op::Put(Table::Meta, id("bad"), torn)])
                    .await
                    .unwrap();
                s.put(&id("bad"), bytes(b"fresh"), Default::default(), 1)
                    .await
                    .unwrap();
                let got = s.get(&id("bad"), 1).await.unwrap();
                assert_eq!(got, Some(bytes(b"fresh")), "atomic: {atomic}");
            }
            // Its old value records went with it (the new value is in its
            // entry's record on an atomic store); the count of its two
            // referrers stayed.
            let values = fs.inner().keys(Table::Values);
            let of_bad = values.iter().filter(|v| v.key.starts_with("bad")).count();
            assert_eq!(of_bad, usize::from(!atomic), "atomic: {atomic}: {values:?}");
            let err = s.delete_at(&id("bad"), 1).await.unwrap_err();
            assert!(
                matches!(err, kvsweep::Error::Referenced { referrers: 2, .. }),
                "atomic: {atomic}: {err}"
            );
            // putMany replaces one too.
            fs.apply(vec![Op::Put(Table::Meta, id("bad"), vec![0xc1])])
                .await
                .unwrap();
            s.put_many(vec![(id("bad"), bytes(b"again"), Default::default())], 2)
                .await
                .unwrap();
            assert_eq!(s.get(&id("bad"), 2).await.unwrap(), Some(bytes(b"again")));
            for user in ["u1", "u2"] {
                assert!(s.delete_at(&id(user), 2).await.unwrap());
            }
            assert!(s.delete_at(&id("bad"), 2).await.unwrap());
            let report = s.run(Mode::Full, 3, &mut RunToEnd).await.unwrap();
            assert!(report.corrupt.is_empty(), "atomic: {atomic}");
            assert_eq!(fs.inner().count(Table::Meta), 0, "atomic: {atomic}");
            assert_eq!(fs.inner().count(Table::Values), 0, "atomic: {atomic}");
        });
    }
}

#[test]
fn a_later_releases_record_is_neither_deleted_as_unreadable_nor_ignored_as_a_referrer() {
    let s = sweeper();
    block_on(async {
        use kvsweep::store::{Op, Store};
        let id = |key: &str| EntryId::new("n", key);
        let put_raw =
            |key: &str, bytes: Vec<u8>| s.store().apply(vec![Op::Put(Table::Meta, id(key), bytes)]);
        // [2, {}]: a record of format version 2, which a later release reads.
        put_raw("future", vec![0x92, 0x02, 0x80]).await.unwrap();
        put_raw("bad", vec![0xc1]).await.unwrap();
        let err = s.delete_at(&id("future"), 1).await.unwrap_err();
        assert!(matches!(err, kvsweep::Error::Corrupt { .. }), "{err}");
        // It may reference the malformed one: that stays too, and says why.
        let err = s.delete_at(&id("bad"), 1).await.unwrap_err();
        assert!(
            err.to_string().contains("written by a later release"),
            "{err}"
        );
        assert_eq!(s.store().count(Table::Meta), 2);
    });
}

/// A config whose runs delete in batches of `batch_size`.
fn in_batches_of(batch_size: usize) -> kvsweep::Config {
    kvsweep::Config {
        exec: kvsweep::exec::ExecConfig {
            batch_size,
            page_size: 100,
        },
        ..Default::default()
    }
}

/// Puts entry `k{i:02}`, expiring 1 ms after time 0.
async fn put_expired<S: kvsweep::store::Store>(s: &Sweeper<S>, i: usize) {
    s.put(
        &EntryId::new("", format!("k{i:02}")),
        bytes(b"."),
        expiring(1, &[]),
        0,
    )
    .await
    .unwrap();
}

fn bytes(b: &[u8]) -> StoredValue {
    StoredValue::Bytes(b.to_vec())
}

fn refs(keys: &[&str]) -> PutOptions {
    PutOptions {
        refs: keys.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    }
}

fn expiring(ttl: u64, keys: &[&str]) -> PutOptions {
    PutOptions {
        ttl_ms: Some(ttl),
        ..refs(keys)
    }
}

async fn referrers(s: &Sweeper<MemoryStore>, key: &str) -> u64 {
    let detail = s.detail(&EntryId::new("", key), 0, true).await.unwrap();
    detail.unwrap().0.referrers
}

#[test]
fn references_must_exist_and_are_counted_through_rewrites() {
    let s = sweeper();
    block_on(async {
        let err = s
            .put(&EntryId::new("", "doc"), bytes(b"d"), refs(&["att"]), 0)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("put it first"), "{err}");
        s.put(
            &EntryId::new("", "att"),
            bytes(b"a"),
            PutOptions::default(),
            0,
        )
        .await
        .unwrap();
        s.put(
            &EntryId::new("", "doc"),
            bytes(b"d"),
            refs(&["att", "att"]),
            0,
        )
        .await
        .unwrap();
        assert_eq!(referrers(&s, "att").await, 1);
        s.put(&EntryId::new("", "doc2"), bytes(b"d"), refs(&["att"]), 0)
            .await
            .unwrap();
        assert_eq!(referrers(&s, "att").await, 2);
        s.put(
            &EntryId::new("", "doc2"),
            bytes(b"d"),
            PutOptions::default(),
            0,
        )
        .await
        .unwrap();
        assert_eq!(referrers(&s, "att").await, 1);
        let err = s.delete(&EntryId::new("", "att")).await.unwrap_err();
        assert!(
            err.to_string().contains("referenced by 1 other entry"),
            "{err}"
        );
        assert!(s.delete(&EntryId::new("", "doc")).await.unwrap());
        assert_eq!(referrers(&s, "att").await, 0);
        assert!(s.delete(&EntryId::new("", "att")).await.unwrap());
    });
}

#[test]
fn entry_referenced_after_planning_is_kept() {
    let s = sweeper();
    block_on(async {
        // A dependent entry nothing references: garbage once past its grace
        // (an expired one could not be referenced again at all).
        let dependent = PutOptions {
            dependent: true,
            ..Default::default()
        };
        s.put(&EntryId::new("", "old"), bytes(b"o"), dependent, 0)
            .await
            .unwrap();
        let later = kvsweep::policy::DEFAULT_ORPHAN_GRACE_MS + 10;
        let plan = s.plan(Mode::Full, later).await.unwrap();
        assert_eq!(plan.actions.len(), 1);
        // A writer references it before the run deletes it.
        s.put(
            &EntryId::new("", "new"),
            bytes(b"n"),
            refs(&["old"]),
            later + 1,
        )
        .await
        .unwrap();
        let report =
            kvsweep::exec::execute(s.store(), &plan, Default::default(), &mut RunToEnd).await;
        assert_eq!(report.kept, 1);
        assert!(s
            .detail(&EntryId::new("", "old"), later + 2, true)
            .await
            .unwrap()
            .is_some());
    });
}

#[test]
fn blob_referenced_after_planning_is_kept() {
    let s = sweeper();
    block_on(async {
        let b = s.put_blob(b"shared", 0).await.unwrap();
        let grace = s.policy().orphan_grace_ms;
        let plan = s.plan(Mode::Light, grace).await.unwrap();
        assert_eq!(plan.actions.len(), 1);
        let opts = PutOptions {
            blobs: vec![b.clone()],
            ..Default::default()
        };
        s.put(&EntryId::new("", "doc"), bytes(b"d"), opts, grace)
            .await
            .unwrap();
        let report =
            kvsweep::exec::execute(s.store(), &plan, Default::default(), &mut RunToEnd).await;
        assert_eq!(report.kept, 1);
        assert!(s.get_blob(&b).await.unwrap().is_some());
    });
}

#[test]
fn garbage_cycles_and_chains_go_even_across_batches() {
    let config = kvsweep::Config {
        exec: kvsweep::exec::ExecConfig {
            batch_size: 1,
            page_size: 3,
        },
        ..Default::default()
    };
    let s = Sweeper::new(MemoryStore::new(), Policy::default(), config);
    block_on(async {
        // a -> b -> c -> a, all expired; chain x -> y -> z with z first in key order.
        for k in ["a", "b", "c", "z"] {
            s.put(&EntryId::new("", k), bytes(b"."), expiring(1, &[]), 0)
                .await
                .unwrap();
        }
        s.put(&EntryId::new("", "y"), bytes(b"."), expiring(1, &["z"]), 0)
            .await
            .unwrap();
        s.put(&EntryId::new("", "x"), bytes(b"."), expiring(1, &["y"]), 0)
            .await
            .unwrap();
        s.put(&EntryId::new("", "a"), bytes(b"."), expiring(1, &["b"]), 0)
            .await
            .unwrap();
        s.put(&EntryId::new("", "b"), bytes(b"."), expiring(1, &["c"]), 0)
            .await
            .unwrap();
        s.put(&EntryId::new("", "c"), bytes(b"."), expiring(1, &["a"]), 0)
            .await
            .unwrap();
        let report = s.run(Mode::Full, 10, &mut RunToEnd).await.unwrap();
        assert_eq!(report.deleted[&Reason::Expired].count, 6, "{report:?}");
        assert_eq!(s.store().count(Table::Meta), 0);
        assert_eq!(s.store().count(Table::Values), 0);
    });
}

/// Garbage cycles longer than a waiting batch (1,024 entries) were split
/// over batches, each referenced from the next, and stayed for good; long
/// chains went a batch per pass over what waits, each pass reading all of it.
/// Now what waits goes referrers first, each cycle in one batch.
#[test]
fn garbage_cycles_and_chains_longer_than_a_batch_go_in_one_run() {
    let s = sweeper();
    block_on(async {
        let put = |key: String, refs: Vec<String>| {
            let s = &s;
            async move {
                let opts = PutOptions {
                    ttl_ms: Some(1),
                    refs,
                    ..Default::default()
                };
                s.put(&EntryId::new("", &key), bytes(b"."), opts, 0)
                    .await
                    .unwrap();
            }
        };
        let n = 3_000;
        // A cycle: c0 <- c1 <- ... <- c2999 <- c0.
        let c = |i: usize| format!("c{i:05}");
        put(c(0), vec![]).await;
        for i in 1..n {
            put(c(i), vec![c(i - 1)]).await;
        }
        put(c(0), vec![c(n - 1)]).await;
        // Chains both ways in key order: u_i references u_{i+1}, d_i d_{i-1}.
        let u = |i: usize| format!("u{i:05}");
        let d = |i: usize| format!("d{i:05}");
        put(u(n - 1), vec![]).await;
        for i in (0..n - 1).rev() {
            put(u(i), vec![u(i + 1)]).await;
        }
        put(d(0), vec![]).await;
        for i in 1..n {
            put(d(i), vec![d(i - 1)]).await;
        }
        let report = s.run(Mode::Full, 10, &mut RunToEnd).await.unwrap();
        assert_eq!(
            (report.deleted[&Reason::Expired].count, report.kept),
            (3 * n as u64, 0),
            "{:?}",
            (report.deleted, report.kept, report.errors.len())
        );
        assert_eq!(s.store().count(Table::Meta), 0);
        let plan = s.plan(Mode::Full, 10).await.unwrap();
        assert!(plan.actions.is_empty());
    });
}

#[test]
fn live_referrer_holds_an_expired_entry_and_counts_stay_exact() {
    let s = sweeper();
    block_on(async {
        let blob = s.put_blob(b"payload", 0).await.unwrap();
        let att = PutOptions {
            ttl_ms: Some(1),
            blobs: vec![blob.clone()],
            ..Default::default()
        };
        s.put(&EntryId::new("", "att"), bytes(b"a"), att, 0)
            .await
            .unwrap();
        s.put(
            &EntryId::new("", "doc"),
            bytes(b"d"),
            expiring(100, &["att"]),
            0,
        )
        .await
        .unwrap();
        let later = s.policy().orphan_grace_ms;
        let r1 = s.run(Mode::Full, 50, &mut RunToEnd).await.unwrap();
        assert!(r1.deleted.is_empty(), "{r1:?}");
        let r2 = s.run(Mode::Full, later, &mut RunToEnd).await.unwrap();
        assert_eq!(r2.deleted[&Reason::Expired].count, 2);
        assert_eq!(r2.deleted[&Reason::OrphanBlob].count, 1);
        assert!(s.get_blob(&blob).await.unwrap().is_none());
    });
}

/// A full run at `now` that stops after `batches` batches, as a slice's
/// time budget would.
async fn slice<S: kvsweep::store::Store>(s: &Sweeper<S>, now: u64, batches: usize) -> RunReport {
    s.run(Mode::Full, now, &mut StopAfter { batches })
        .await
        .unwrap()
}

/// Stops a run after `batches` batches, as a time budget would.
struct StopAfter {
    batches: usize,
}

impl kvsweep::exec::RunHost for StopAfter {
    async fn between_batches(&mut self, progress: &kvsweep::exec::Progress) -> kvsweep::exec::Flow {
        if !progress.running {
            return kvsweep::exec::Flow::Continue;
        }
        if self.batches == 0 {
            return kvsweep::exec::Flow::Stop;
        }
        self.batches -= 1;
        kvsweep::exec::Flow::Continue
    }
}

#[test]
fn a_stopped_run_leaves_a_cursor_and_the_next_run_resumes_it() {
    let config = in_batches_of(10);
    let s = Sweeper::new(MemoryStore::new(), Policy::default(), config);
    block_on(async {
        for i in 0..45 {
            put_expired(&s, i).await;
        }
        let first = slice(&s, 10, 2).await;
        assert!(!first.done);
        assert_eq!(first.deleted[&Reason::Expired].count, 20);
        assert_eq!(s.store().count(Table::State), 1, "cursor saved");
        // A light run deletes no entry, and leaves the full run's cursor.
        let light = s.run(Mode::Light, 10, &mut RunToEnd).await.unwrap();
        assert!(!light.resumed && light.done);
        assert_eq!(light.mode, Mode::Light);
        assert!(light.deleted.is_empty());
        assert_eq!(s.store().count(Table::Meta), 25);
        assert_eq!(
            s.store().count(Table::State),
            1,
            "the full run's cursor kept"
        );
        let second = slice(&s, 10, 1).await;
        assert!(second.resumed && !second.done);
        assert_eq!(second.mode, Mode::Full);
        assert_eq!(second.deleted[&Reason::Expired].count, 30);
        let last = s.run(Mode::Full, 10, &mut RunToEnd).await.unwrap();
        assert!(last.resumed && last.done);
        assert_eq!(last.deleted[&Reason::Expired].count, 45);
        assert_eq!(s.store().count(Table::Meta), 0);
        assert_eq!(s.store().count(Table::State), 0, "cursor cleared");
        let fresh = s.run(Mode::Full, 10, &mut RunToEnd).await.unwrap();
        assert!(!fresh.resumed);
    });
}

#[test]
fn a_stopped_runs_plan_serves_the_next_run_which_still_re_checks_each_item() {
    // A sliced run listed and planned the whole store every slice (Chromium:
    // 150 ms a slice at 20,000 entries, a cleanup of 0.8 s took 15 s).
    let s = Sweeper::new(MemoryStore::new(), Policy::default(), in_batches_of(10));
    block_on(async {
        for i in 0..40 {
            put_expired(&s, i).await;
        }
        let first = slice(&s, 10, 2).await;
        assert!(!first.done && !first.plan_reused);
        assert_eq!(first.deleted[&Reason::Expired].count, 20);
        // Written between the slices: k35 again (live now), and k40
        // (expired, never planned).
        let key = |k: &str| EntryId::new("", k);
        s.put(&key("k35"), bytes(b"live"), PutOptions::default(), 11)
            .await
            .unwrap();
        s.put(&key("k40"), bytes(b"."), expiring(1, &[]), 0)
            .await
            .unwrap();
        let second = slice(&s, 12, 1).await;
        assert!(second.resumed && second.plan_reused && !second.done);
        assert_eq!(second.deleted[&Reason::Expired].count, 30);
        let last = s.run(Mode::Full, 13, &mut RunToEnd).await.unwrap();
        assert!(last.resumed && last.plan_reused && last.done, "{last:?}");
        assert_eq!(last.deleted[&Reason::Expired].count, 39);
        assert_eq!(last.kept, 1, "k35 re-checked and kept");
        for k in ["k35", "k40"] {
            assert!(s.get(&key(k), 0).await.unwrap().is_some(), "{k}");
        }
        // Done: the next run plans afresh, and finds k40.
        let fresh = s.run(Mode::Full, 14, &mut RunToEnd).await.unwrap();
        assert!(!fresh.resumed && !fresh.plan_reused);
        assert_eq!(fresh.deleted[&Reason::Expired].count, 1);
    });
}

/// Entry `k` of the default namespace.
fn key(k: &str) -> EntryId {
    EntryId::new("", k)
}

/// Puts entries `{prefix}{i:02}` for `i` in `range`, each written (and
/// last used) at `at(i)`, with `opts`.
async fn put_each(
    s: &Sweeper<MemoryStore>,
    prefix: &str,
    range: std::ops::Range<u64>,
    at: impl Fn(u64) -> u64,
    opts: PutOptions,
) {
    for i in range {
        let id = key(&format!("{prefix}{i:02}"));
        s.put(&id, bytes(&[1]), opts.clone(), at(i)).await.unwrap();
    }
}

// A kept plan went on with evictions counted before the app deleted or read
// entries (a review of the kept plan found these): a plan that holds any
// goes no further than its run.

#[test]
fn a_kept_plan_never_evicts_by_max_entries_counted_before_deletes() {
    let mut policy = Policy::default();
    policy.rules.max_entries = Some(20);
    let s = Sweeper::new(MemoryStore::new(), policy, in_batches_of(5));
    block_on(async {
        put_each(&s, "k", 0..40, |i| 1_000 + i * 10, PutOptions::default()).await;
        let t = 10_000;
        let first = slice(&s, t, 1).await;
        assert!(!first.done);
        assert_eq!(first.deleted[&Reason::MaxEntries].count, 5);
        // The app deletes its 20 newest: 15 are left, under maxEntries.
        for i in 20..40 {
            assert!(s.delete(&key(&format!("k{i:02}"))).await.unwrap());
        }
        assert!(s.plan(Mode::Full, t + 1).await.unwrap().actions.is_empty());
        let next = s.run(Mode::Full, t + 1, &mut RunToEnd).await.unwrap();
        assert!(!next.plan_reused);
        assert_eq!(s.store().count(Table::Meta), 15);
    });
}

#[test]
fn a_kept_plan_never_evicts_by_recency_entries_read_since() {
    let mut policy = Policy::default();
    policy.rules.max_entries = Some(10);
    let s = Sweeper::new(MemoryStore::new(), policy, in_batches_of(5));
    block_on(async {
        put_each(&s, "k", 0..20, |i| 1_000 + i * 10, PutOptions::default()).await;
        let t = 10_000;
        assert!(!slice(&s, t, 1).await.done);
        // The plan's k05..k09 are read: the most recently used now.
        for i in 5..10 {
            let id = key(&format!("k{i:02}"));
            assert!(s.get(&id, t + 2_000).await.unwrap().is_some());
        }
        let next = s.run(Mode::Full, t + 3_000, &mut RunToEnd).await.unwrap();
        assert!(!next.plan_reused && next.done);
        for i in 5..10 {
            let id = key(&format!("k{i:02}"));
            assert!(s.get(&id, t + 4_000).await.unwrap().is_some(), "{id:?}");
        }
        assert_eq!(s.store().count(Table::Meta), 10);
    });
}

#[test]
fn a_kept_plan_never_applies_keep_last_counted_before_deletes() {
    let mut policy = Policy::default();
    policy
        .rules
        .groups
        .insert("g".into(), kvsweep::policy::GroupRule { keep_last: 3 });
    let s = Sweeper::new(MemoryStore::new(), policy, in_batches_of(1));
    block_on(async {
        let grouped = PutOptions {
            group: Some("g".into()),
            ..Default::default()
        };
        put_each(&s, "g", 0..6, |i| 1_000 + i, grouped).await;
        let t = 10_000;
        assert!(!slice(&s, t, 1).await.done);
        // g00 went; the app deletes g04 and g05: g01..g03 are the newest 3.
        assert!(s.delete(&key("g04")).await.unwrap());
        assert!(s.delete(&key("g05")).await.unwrap());
        let next = s.run(Mode::Full, t + 1, &mut RunToEnd).await.unwrap();
        assert!(!next.plan_reused);
        assert_eq!(s.store().count(Table::Meta), 3);
    });
}

#[test]
fn a_stale_temp_written_again_since_planning_is_kept_with_its_blob() {
    // A blob's temp is named by the blob: a putBlob of the same bytes, begun
    // after a plan found an old interrupted one's temp stale, writes it
    // again. A kept plan (or a long run) deleted it, and the bytes with it,
    // just before the putBlob recorded the blob for an entry.
    use kvsweep::codec::{encode_blob, encode_temp, BlobRecord, Staged, TempRecord};
    use kvsweep::store::{faulty::FaultyStore, id_key, Op, Store};
    let fs = FaultyStore::new(MemoryStore::new(), 1);
    fs.set_atomic(false);
    let policy = Policy::default();
    let day = policy.temp_max_age_ms;
    let s = Sweeper::new(fs.clone(), policy, in_batches_of(1));
    let data = b"attachment".to_vec();
    let bid = kvsweep::model::blob_id(&data);
    let blob_key = id_key(&bid);
    let temp_key = id_key(&kvsweep::write::temp_id(&Staged::Blob { id: bid.clone() }));
    let temp = |at| {
        let staged = Staged::Blob { id: bid.clone() };
        let size = data.len() as u64;
        Op::Put(
            Table::Temps,
            temp_key.clone(),
            encode_temp(&TempRecord {
                created_at: at,
                size,
                staged,
            }),
        )
    };
    let expiring = PutOptions {
        ttl_ms: Some(1),
        ..Default::default()
    };
    block_on(async {
        // A putBlob interrupted at 0: its temp and bytes, no record.
        let bytes_op = Op::Put(Table::Blobs, blob_key.clone(), data.clone());
        fs.apply(vec![temp(0), bytes_op.clone()]).await.unwrap();
        s.put(&key("e"), bytes(&[1]), expiring, 0).await.unwrap();
        let t1 = day + 10_000;
        let first = slice(&s, t1, 1).await;
        assert!(!first.done && first.deleted[&Reason::Expired].count == 1);
        // A putBlob of the same bytes begins: its temp, then its bytes...
        let tw = t1 + 1_000;
        fs.apply(vec![temp(tw), bytes_op]).await.unwrap();
        // ...the next slice runs...
        let next = s.run(Mode::Full, t1 + 2_000, &mut RunToEnd).await.unwrap();
        assert!(next.plan_reused && next.done, "{next:?}");
        assert_eq!(next.kept, 1, "the temp, written again since planning");
        // ...and the putBlob records the blob, and an entry references it.
        let size = data.len() as u64;
        let rec = BlobRecord {
            size,
            created_at: tw,
            ..BlobRecord::default()
        };
        let record = Op::Put(Table::BlobMeta, blob_key, encode_blob(&rec));
        fs.apply(vec![record, Op::Delete(Table::Temps, temp_key.clone())])
            .await
            .unwrap();
        let doc = PutOptions {
            blobs: vec![bid.clone()],
            ..Default::default()
        };
        s.put(&key("doc"), bytes(&[1]), doc, t1 + 3_000)
            .await
            .unwrap();
        assert_eq!(s.get_blob(&bid).await.unwrap(), Some(data.clone()));
    });
}

#[test]
fn a_kept_plan_is_dropped_when_old_or_when_another_run_moved_the_cursor() {
    let store = MemoryStore::new();
    let s = Sweeper::new(store.clone(), Policy::default(), in_batches_of(10));
    let other = Sweeper::new(store, Policy::default(), in_batches_of(10));
    block_on(async {
        for i in 0..100 {
            put_expired(&s, i).await;
        }
        let t = 10;
        assert!(!slice(&s, t, 1).await.done);
        // Too old: planned again.
        let late = t + kvsweep::sweeper::PLAN_KEEP_MS + 1;
        let r = slice(&s, late, 1).await;
        assert!(r.resumed && !r.plan_reused);
        // A clock gone back: planned again.
        let r = slice(&s, late - 1, 1).await;
        assert!(r.resumed && !r.plan_reused);
        // Another sweeper's slice saved its own place: planned again.
        let r = slice(&other, late, 1).await;
        assert!(r.resumed && !r.plan_reused);
        let r = slice(&s, late, 1).await;
        assert!(r.resumed && !r.plan_reused);
        // A run of the other mode between two slices: planned again.
        s.run(Mode::Light, late, &mut RunToEnd).await.unwrap();
        let r = slice(&s, late, 1).await;
        assert!(r.resumed && !r.plan_reused);
        // A maintenance call between two slices: planned again.
        s.clear("other", &mut RunToEnd).await.unwrap();
        let r = s.run(Mode::Full, late, &mut RunToEnd).await.unwrap();
        assert!(r.resumed && !r.plan_reused && r.done);
        assert_eq!(r.deleted[&Reason::Expired].count, 100);
    });
}

#[test]
fn a_full_run_after_a_stopped_light_run_plans_every_entry() {
    // A light run stopped among the blobs; a full run then resumed from its
    // place and skipped every entry, saying done (found in Chromium).
    let config = in_batches_of(10);
    let policy = Policy {
        orphan_grace_ms: 0,
        ..Policy::default()
    };
    let s = Sweeper::new(MemoryStore::new(), policy, config);
    block_on(async {
        for i in 0..30u32 {
            s.put_blob(&i.to_le_bytes(), 0).await.unwrap();
            put_expired(&s, i as usize).await;
        }
        let light = s
            .run(Mode::Light, 10, &mut StopAfter { batches: 1 })
            .await
            .unwrap();
        assert!(!light.done);
        assert_eq!(light.deleted[&Reason::OrphanBlob].count, 10);
        let full = s.run(Mode::Full, 10, &mut RunToEnd).await.unwrap();
        assert!(full.done && !full.resumed);
        assert_eq!(full.deleted[&Reason::Expired].count, 30);
        assert_eq!(full.deleted[&Reason::OrphanBlob].count, 20);
        assert_eq!(s.store().count(Table::Meta), 0);
        assert_eq!(
            s.store().count(Table::State),
            0,
            "the light run's cursor is gone"
        );
        let again = s.plan(Mode::Full, 10).await.unwrap();
        assert!(again.actions.is_empty());
    });
}

#[test]
fn unreadable_temp_is_kept_and_reported() {
    let s = sweeper();
    block_on(async {
        use kvsweep::store::{id_key, Op, Store};
        s.store()
            .apply(vec![Op::Put(
                Table::Temps,
                id_key("t?"),
                b"not a temp".to_vec(),
            )])
            .await
            .unwrap();
        let report = s
            .run(Mode::Full, u64::MAX / 2, &mut RunToEnd)
            .await
            .unwrap();
        assert!(report.deleted.is_empty(), "{report:?}");
        assert_eq!(s.store().count(Table::Temps), 1);
        let plan = s.plan(Mode::Full, u64::MAX / 2).await.unwrap();
        assert_eq!(plan.summary.corrupt_temps, vec!["t?".to_string()]);
    });
}

#[test]
fn values_move_between_the_record_and_their_own_without_loss_or_leftovers() {
    let s = sweeper();
    block_on(async {
        let id = EntryId::new("", "v");
        let big = vec![7u8; kvsweep::codec::INLINE_MAX + 1];
        let t = EntryId::new("", "t");
        s.put(&t, bytes(b"target"), PutOptions::default(), 0)
            .await
            .unwrap();
        // Small, then big, then small again: one value record at most, and only for the big one.
        for (i, value) in [b"small".to_vec(), big.clone(), b"again".to_vec()]
            .into_iter()
            .enumerate()
        {
            s.put(
                &id,
                StoredValue::Bytes(value.clone()),
                PutOptions::default(),
                i as u64,
            )
            .await
            .unwrap();
            assert_eq!(
                s.get(&id, 10).await.unwrap(),
                Some(StoredValue::Bytes(value.clone()))
            );
            let separate = value.len() > kvsweep::codec::INLINE_MAX;
            assert_eq!(
                s.store().count(Table::Values),
                separate as usize,
                "write {i}"
            );
        }
        // Count changes and touches rewrite the target's record: its value stays.
        let opts = PutOptions {
            refs: vec!["t".into()],
            ..PutOptions::default()
        };
        s.put(&id, bytes(b"ref"), opts, 20).await.unwrap();
        s.get(&t, 5_000).await.unwrap();
        s.flush_touches().await.unwrap();
        s.put(&id, bytes(b"unref"), PutOptions::default(), 30)
            .await
            .unwrap();
        assert_eq!(s.get(&t, 9_000).await.unwrap(), Some(bytes(b"target")));
        assert!(s.delete(&id).await.unwrap());
        assert!(s.delete(&t).await.unwrap());
        assert_eq!(s.store().count(Table::Meta), 0);
        assert_eq!(s.store().count(Table::Values), 0);
    });
}

#[test]
fn garbage_keys_that_cannot_bound_a_range_are_deleted_one_by_one() {
    // "a" < "a\0" as keys, but their value keys sort the other way; an emoji
    // orders differently in UTF-16 stores. Neither may bound a range delete.
    let s = sweeper();
    block_on(async {
        for key in ["a", "a\0", "a\u{1}", "x\u{1F600}", "y", "z"] {
            s.put(&EntryId::new("", key), bytes(b"v"), expiring(1, &[]), 0)
                .await
                .unwrap();
        }
        s.put(
            &EntryId::new("", "x\u{FF01}"),
            bytes(b"live"),
            PutOptions::default(),
            0,
        )
        .await
        .unwrap();
        let report = s.run(Mode::Full, 10, &mut RunToEnd).await.unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.deleted[&Reason::Expired].count, 6);
        assert_eq!(
            s.store().keys(Table::Meta),
            vec![EntryId::new("", "x\u{FF01}")]
        );
    });
}

#[test]
fn delete_at_takes_an_entry_whose_referrers_all_expired_with_them() {
    let s = sweeper();
    let id = |k: &str| EntryId::new("", k);
    block_on(async {
        s.put(&id("x"), bytes(b"x"), PutOptions::default(), 0)
            .await
            .unwrap();
        s.put(&id("y"), bytes(b"y"), expiring(10, &["x"]), 0)
            .await
            .unwrap();
        s.put(&id("z"), bytes(b"z"), expiring(10, &["x"]), 0)
            .await
            .unwrap();
        s.put(&id("other"), bytes(b"o"), expiring(10, &[]), 0)
            .await
            .unwrap();
        // Before they expire, the referrers keep it.
        assert!(matches!(
            s.delete_at(&id("x"), 5).await,
            Err(kvsweep::Error::Referenced { referrers: 2, .. })
        ));
        assert!(s.delete_at(&id("x"), 20).await.unwrap());
        for k in ["x", "y", "z"] {
            assert_eq!(s.detail(&id(k), 20, true).await.unwrap(), None, "{k}");
        }
        // Expired but unrelated: left to a run.
        assert!(s.detail(&id("other"), 20, true).await.unwrap().is_some());

        // A pinned referrer never expires; a live one refuses too.
        s.put(&id("a"), bytes(b"a"), PutOptions::default(), 0)
            .await
            .unwrap();
        let pinned = PutOptions {
            pinned: true,
            ..expiring(10, &["a"])
        };
        s.put(&id("p"), bytes(b"p"), pinned, 0).await.unwrap();
        s.put(&id("old"), bytes(b"o"), expiring(10, &["a"]), 0)
            .await
            .unwrap();
        assert!(s.delete_at(&id("a"), 20).await.is_err());
        assert!(s.detail(&id("a"), 20, true).await.unwrap().is_some());
        assert!(s.detail(&id("old"), 20, true).await.unwrap().is_some());
        assert!(!s.delete_at(&id("missing"), 20).await.unwrap());
    });
}

#[test]
fn delete_at_reads_the_namespace_page_by_page() {
    let mut config = kvsweep::Config::default();
    config.exec.page_size = 2;
    let s = Sweeper::new(MemoryStore::new(), Policy::default(), config);
    let id = |ns: &str, k: &str| EntryId::new(ns, k);
    block_on(async {
        for ns in ["a", "b", "c"] {
            s.put(&id(ns, "x"), bytes(b"x"), PutOptions::default(), 0)
                .await
                .unwrap();
            for k in ["r1", "r2", "r3", "r4", "r5"] {
                s.put(&id(ns, k), bytes(b"r"), expiring(10, &["x"]), 0)
                    .await
                    .unwrap();
            }
        }
        // A live referrer on a later page still refuses the delete.
        s.put(&id("b", "z-live"), bytes(b"l"), refs(&["x"]), 0)
            .await
            .unwrap();
        assert!(s.delete_at(&id("b", "x"), 20).await.is_err());
        assert!(s.delete_at(&id("b", "x"), 20).await.is_err());
        // Five expired referrers over three pages go with the entry; the
        // namespaces either side are untouched.
        assert!(s.delete_at(&id("a", "x"), 20).await.unwrap());
        for k in ["x", "r1", "r5"] {
            assert_eq!(s.detail(&id("a", k), 20, true).await.unwrap(), None, "{k}");
            assert!(
                s.detail(&id("c", k), 20, true).await.unwrap().is_some(),
                "c/{k}"
            );
        }
        assert!(s.detail(&id("b", "x"), 20, true).await.unwrap().is_some());
    });
}

#[test]
fn one_owner_holds_the_run_lease_until_it_lapses_or_is_given_back() {
    let s = sweeper();
    block_on(async {
        assert_eq!(s.take_lease("a", 1_000, 0, false).await.unwrap(), None);
        // Another owner is refused while the lease runs, told who holds it.
        assert_eq!(
            s.take_lease("b", 1_000, 999, false).await.unwrap(),
            Some("a".to_string())
        );
        // The holder renews it.
        assert_eq!(s.take_lease("a", 1_000, 500, false).await.unwrap(), None);
        assert_eq!(
            s.take_lease("b", 1_000, 1_400, false).await.unwrap(),
            Some("a".to_string())
        );
        // Lapsed: another takes it, and the first one's release leaves it be.
        assert_eq!(s.take_lease("b", 1_000, 1_500, false).await.unwrap(), None);
        s.release_lease("a").await.unwrap();
        assert_eq!(
            s.take_lease("c", 1_000, 1_600, false).await.unwrap(),
            Some("b".to_string())
        );
        s.release_lease("b").await.unwrap();
        assert_eq!(s.take_lease("c", 1_000, 1_600, false).await.unwrap(), None);
        // Under the store's lock: a lease taken without it is respected
        // while it runs; one taken under it was a run that died, as the
        // lock is this taker's now.
        assert_eq!(
            s.take_lease("d", 1_000, 1_700, true).await.unwrap(),
            Some("c".to_string())
        );
        s.release_lease("c").await.unwrap();
        assert_eq!(s.take_lease("d", 1_000, 1_700, true).await.unwrap(), None);
        assert_eq!(s.take_lease("e", 1_000, 1_800, true).await.unwrap(), None);
        // Others are told who holds it, by name; its holder gives it back.
        assert_eq!(
            s.take_lease("f", 1_000, 1_900, false).await.unwrap(),
            Some("e".to_string())
        );
        s.release_lease("e").await.unwrap();
        assert_eq!(s.take_lease("f", 1_000, 1_900, false).await.unwrap(), None);
        // A holder's own lease, taken the other way (its release failed),
        // it renews either way.
        assert_eq!(s.take_lease("f", 1_000, 1_950, true).await.unwrap(), None);
        assert_eq!(s.take_lease("f", 1_000, 1_960, false).await.unwrap(), None);
        assert_eq!(
            s.take_lease("g", 1_000, 1_970, false).await.unwrap(),
            Some("f".to_string())
        );
    });
}

#[test]
fn without_compare_and_set_grace_periods_must_outlast_visibility_and_a_write() {
    let mut p = Policy::default();
    assert_eq!(p.check_grace(true, 60_000), Ok(()));
    assert_eq!(p.check_grace(false, 60_000), Ok(()));
    p.orphan_grace_ms = 119_999;
    assert_eq!(
        p.check_grace(false, 60_000),
        Err(("orphanGraceMs", 120_000))
    );
    assert_eq!(p.check_grace(true, 60_000), Ok(()));
    p.orphan_grace_ms = 120_000;
    p.temp_max_age_ms = 1_000;
    assert_eq!(p.check_grace(false, 60_000), Err(("tempMaxAgeMs", 120_000)));
}

#[test]
fn a_write_that_references_a_blob_restarts_its_grace() {
    let s = sweeper();
    block_on(async {
        let blob = s.put_blob(b"attachment", 0).await.unwrap();
        let grace = s.policy().orphan_grace_ms;
        // Referenced just before its grace ends, then unreferenced at once:
        // the grace counts from the reference, not from the upload.
        let opts = PutOptions {
            blobs: vec![blob.clone()],
            ..Default::default()
        };
        s.put(
            &EntryId::new("", "note"),
            StoredValue::Bytes(vec![1]),
            opts,
            grace - 1,
        )
        .await
        .unwrap();
        s.put(
            &EntryId::new("", "note"),
            StoredValue::Bytes(vec![2]),
            PutOptions::default(),
            grace,
        )
        .await
        .unwrap();
        let plan = s.plan(Mode::Full, grace + 10).await.unwrap();
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        let plan = s.plan(Mode::Full, 2 * grace).await.unwrap();
        assert_eq!(plan.actions.len(), 1);
        assert_eq!(plan.actions[0].key, blob);
    });
}

/// `read_record` (the JS bindings' IndexedDB fast path for `get`) judges a
/// record exactly as `detail` does, and counts the read as a use.
#[test]
fn read_record_agrees_with_detail() {
    use kvsweep::store::Store;
    let s = sweeper();
    let t0 = 1_000_000;
    let id = |k: &str| EntryId::new("", k);
    block_on(async {
        for (k, bytes, ttl_ms, pinned) in [
            ("small", 10, None, false),
            ("large", 20_000, None, false),
            ("ttl", 10, Some(5), false),
            ("pinned", 10, Some(5), true),
        ] {
            let opts = PutOptions {
                ttl_ms,
                pinned,
                ..Default::default()
            };
            s.put(&id(k), StoredValue::Bytes(vec![7; bytes]), opts, t0)
                .await
                .unwrap();
        }
        let now = t0 + 10;
        let mut own_record = 0;
        for key in ["small", "large", "ttl", "pinned", "missing"] {
            let record = s
                .store()
                .get(Table::Meta, &[id(key)])
                .await
                .unwrap()
                .pop()
                .flatten();
            for include_expired in [false, true] {
                let read = s
                    .read_record(&id(key), record.as_deref(), now, include_expired)
                    .unwrap();
                let detail = s.detail(&id(key), now, include_expired).await.unwrap();
                // What each read must give, not only that both agree.
                let small = Some(StoredValue::Bytes(vec![7; 10]));
                let want = match (key, include_expired) {
                    ("small" | "pinned", _) | ("ttl", true) => Some(small),
                    ("large", _) => Some(None),
                    _ => None,
                };
                assert_eq!(read, want, "{key}, include_expired {include_expired}");
                match read {
                    None => assert!(detail.is_none(), "{key}: {include_expired}"),
                    // The value has a record of its own: detail reads it.
                    Some(None) => {
                        let (_, value) = detail.expect("large");
                        assert_eq!(value, StoredValue::Bytes(vec![7; 20_000]));
                        own_record += 1;
                    }
                    Some(Some(value)) => assert_eq!(Some(value), detail.map(|d| d.1), "{key}"),
                }
            }
        }
        assert_eq!(own_record, 2, "the large value's record of its own");
        // A read at least a second later is a use: accessedAt moves when flushed.
        let later = t0 + 2_000;
        let record = s.store().get(Table::Meta, &[id("small")]).await.unwrap();
        let read = s.read_record(&id("small"), record[0].as_deref(), later, false);
        assert!(matches!(read, Ok(Some(Some(_)))));
        assert_eq!(s.flush_touches().await.unwrap(), 1);
        let (meta, _) = s
            .read_entry(&id("small"), later, false, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(meta.accessed_at, later);
        // A record that does not decode is an error, never a missing entry.
        assert!(s
            .read_record(&id("bad"), Some(&[0xc1]), later, false)
            .is_err());
    });
}

/// Reads' refreshes of `accessedAt` are written a second after reads pause,
/// and at the latest ten seconds after the first; in slices, every one.
#[test]
fn touches_wait_for_a_pause_and_flush_in_slices() {
    use kvsweep::store::faulty::{CallKind, FaultyStore};
    use kvsweep::sweeper::{touch_flush_wait, TOUCH_MAX_DELAY_MS, TOUCH_QUIET_MS};
    use std::{cell::RefCell, rc::Rc};
    let first = 50_000;
    assert_eq!(touch_flush_wait(first, first, first), Some(TOUCH_QUIET_MS));
    assert_eq!(touch_flush_wait(first, first + 600, first + 900), Some(700));
    assert_eq!(touch_flush_wait(first, first + 600, first + 1_600), None);
    // Reads that never pause wait no longer than the bound.
    let busy = first + TOUCH_MAX_DELAY_MS - 10;
    assert_eq!(touch_flush_wait(first, busy, busy), Some(10));
    assert_eq!(touch_flush_wait(first, busy + 10, busy + 10), None);
    // A clock set back makes them due at once, never later.
    assert_eq!(touch_flush_wait(first, first, first - 5_000), None);
    assert_eq!(
        touch_flush_wait(first, u64::MAX - 1, first),
        Some(TOUCH_MAX_DELAY_MS)
    );

    let store = FaultyStore::new(MemoryStore::new(), 1);
    let s = Rc::new(Sweeper::new(
        store.clone(),
        Policy::default(),
        Default::default(),
    ));
    let t0 = 1_000_000;
    block_on(async {
        let n = 1_300u64; // over two slices
        for i in 0..n {
            let id = EntryId::new("", format!("k{i:05}"));
            s.put(&id, StoredValue::Bytes(vec![1]), PutOptions::default(), t0)
                .await
                .unwrap();
            assert!(s.get(&id, t0 + 5_000).await.unwrap().is_some());
        }
        let writes = Rc::new(RefCell::new(Vec::new()));
        let seen = writes.clone();
        // While a slice is written, the rest stay pending: a plan begun
        // meanwhile writes them itself before it reads.
        let pending = Rc::new(RefCell::new(Vec::new()));
        let (sweeper, during) = (s.clone(), pending.clone());
        store.set_hook(move |call| {
            if call.kind == CallKind::Apply {
                seen.borrow_mut().push(call.writes);
                during.borrow_mut().push(sweeper.touches_pending());
            }
        });
        assert_eq!(s.flush_touches().await.unwrap(), n as usize);
        store.clear_hook();
        assert_eq!(
            *writes.borrow(),
            vec![512, 512, 276],
            "a transaction a slice"
        );
        assert!(!s.touches_pending());
        for i in [0, 511, 512, 1_299] {
            let id = EntryId::new("", format!("k{i:05}"));
            let (meta, _) = s
                .read_entry(&id, t0 + 5_000, false, false)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(meta.accessed_at, t0 + 5_000, "k{i}");
        }
    });
}

/// Crashes the store after `batches` batches: its connection closed under the run.
struct CloseAfter {
    store: kvsweep::store::faulty::FaultyStore<MemoryStore>,
    batches: usize,
}

impl kvsweep::exec::RunHost for CloseAfter {
    async fn between_batches(&mut self, progress: &kvsweep::exec::Progress) -> kvsweep::exec::Flow {
        if progress.running {
            if self.batches == 0 {
                self.store.crash();
            }
            self.batches = self.batches.saturating_sub(1);
        }
        kvsweep::exec::Flow::Continue
    }
}

#[test]
fn a_store_closed_under_a_run_stops_it_not_done() {
    use kvsweep::store::faulty::FaultyStore;
    let config = in_batches_of(10);
    let faulty = FaultyStore::new(MemoryStore::new(), 3);
    let s = Sweeper::new(faulty.clone(), Policy::default(), config);
    block_on(async {
        for i in 0..45 {
            put_expired(&s, i).await;
        }
        let mut host = CloseAfter {
            store: faulty.clone(),
            batches: 2,
        };
        let report = s.run(Mode::Full, 10, &mut host).await.unwrap();
        // Two batches went; the third found the store closed and the run
        // stopped there, rather than failing every later item and saying done.
        assert!(!report.done);
        assert_eq!(report.deleted[&Reason::Expired].count, 20);
        assert_eq!(report.errors.len(), 10 + 1, "one batch, and the cursor");
        assert!(report.errors[0].message.contains("store is closed"));
        faulty.recover();
        assert_eq!(faulty.inner().count(Table::Meta), 25);
        let rest = s.run(Mode::Full, 10, &mut RunToEnd).await.unwrap();
        assert!(rest.done);
        assert_eq!(faulty.inner().count(Table::Meta), 0);
    });
}

#[test]
fn a_namespace_deleted_by_another_sweeper_is_registered_again_by_a_later_put() {
    let store = MemoryStore::new();
    let a = Sweeper::new(store.clone(), Policy::default(), Default::default());
    let b = Sweeper::new(store.clone(), Policy::default(), Default::default());
    let t0 = 1_000_000;
    let recheck = kvsweep::sweeper::REGISTRATION_RECHECK_MS;
    block_on(async {
        let id = |k: &str| EntryId::new("user-1", k);
        a.put(&id("draft"), bytes(b"x"), Default::default(), t0)
            .await
            .unwrap();
        // Another tab signs the user out.
        b.delete_namespace("user-1", &mut RunToEnd).await.unwrap();
        assert_eq!(store.count(Table::Namespaces), 0);
        // This one writes again soon after: the record it wrote lately is
        // trusted, and the entry lands unregistered (a zombie, reported).
        a.put(&id("session"), bytes(b"s"), expiring(1_000, &[]), t0 + 1)
            .await
            .unwrap();
        assert_eq!(store.count(Table::Namespaces), 0);
        a.put(
            &id("more"),
            bytes(b"m"),
            Default::default(),
            t0 + recheck - 1,
        )
        .await
        .unwrap();
        assert_eq!(store.count(Table::Namespaces), 0, "still trusted");
        // Its next put past the recheck registers the namespace again: the
        // expired session is then collected.
        let later = t0 + recheck;
        a.put(&id("other"), bytes(b"o"), Default::default(), later)
            .await
            .unwrap();
        assert_eq!(store.count(Table::Namespaces), 1);
        let report = a.run(Mode::Full, later + 1, &mut RunToEnd).await.unwrap();
        assert!(report.zombies.is_empty());
        assert_eq!(report.deleted[&Reason::Expired].count, 1);
        // A run forgets namespaces deleted elsewhere: the next put registers
        // at once, whenever it comes.
        b.delete_namespace("user-1", &mut RunToEnd).await.unwrap();
        a.run(Mode::Full, later + 2, &mut RunToEnd).await.unwrap();
        a.put(&id("again"), bytes(b"a"), Default::default(), later + 3)
            .await
            .unwrap();
        assert_eq!(store.count(Table::Namespaces), 1);
    });
}

#[test]
fn a_long_cascade_of_retention_and_quota_settles_in_one_run() {
    // Each group keeps its newest member; its older one is referenced by a
    // pinned entry (which moves its accessedAt). The quota evicts one newest
    // member a round, whose older sibling then climbs into the kept and
    // counts: 40 rounds. A second run at the same `now` deletes nothing.
    let k = 40u64;
    let mut policy = Policy::default();
    for i in 0..k {
        policy
            .rules
            .groups
            .insert(format!("G{i}"), kvsweep::policy::GroupRule { keep_last: 1 });
    }
    policy.rules.max_entries = Some(2 * k - 1);
    let s = Sweeper::new(MemoryStore::new(), policy, Default::default());
    block_on(async {
        let mut t = 1_000;
        let grouped = |i: u64| PutOptions {
            group: Some(format!("G{i}")),
            ..Default::default()
        };
        for i in 0..k {
            for name in ["y", "x"] {
                s.put(
                    &EntryId::new("", format!("{name}{i}")),
                    bytes(b"."),
                    grouped(i),
                    t,
                )
                .await
                .unwrap();
                t += 1_000;
            }
        }
        for i in 0..k {
            let pinned = PutOptions {
                pinned: true,
                refs: vec![format!("y{i}")],
                ..Default::default()
            };
            s.put(&EntryId::new("", format!("p{i}")), bytes(b"."), pinned, t)
                .await
                .unwrap();
            t += 1_000;
        }
        let first = s.run(Mode::Full, t, &mut RunToEnd).await.unwrap();
        assert_eq!(first.deleted[&Reason::MaxEntries].count, k);
        let second = s.run(Mode::Full, t, &mut RunToEnd).await.unwrap();
        assert!(second.deleted.is_empty(), "{:?}", second.deleted);
    });
}

#[test]
fn a_run_stopped_among_entries_waiting_for_their_referrers_leaves_them_to_the_next() {
    let config = in_batches_of(10);
    let s = Sweeper::new(MemoryStore::new(), Policy::default(), config);
    block_on(async {
        let key = |i: usize| format!("k{i:02}");
        for i in 0..20 {
            s.put(&EntryId::new("", key(i)), bytes(b"."), expiring(1, &[]), 0)
                .await
                .unwrap();
        }
        // Each of the first 20 is referenced by one of the last 20: in
        // their batches they wait for their referrers' batches.
        for i in 20..40 {
            s.put(
                &EntryId::new("", key(i)),
                bytes(b"."),
                expiring(1, &[&key(i - 20)]),
                0,
            )
            .await
            .unwrap();
        }
        let first = slice(&s, 10, 4).await;
        assert!(!first.done);
        assert_eq!(first.deleted[&Reason::Expired].count, 20);
        let rest = s.run(Mode::Full, 10, &mut RunToEnd).await.unwrap();
        assert!(rest.done);
        assert_eq!(
            s.store().count(Table::Meta),
            0,
            "the waiting entries went too"
        );
    });
}

#[test]
fn a_stopped_run_saves_no_place_past_the_earliest_waiting_entry_of_its_batch() {
    // The batch [a0, a1, a2, k00, k01]: k01 (referenced by k02, outside the
    // batch) holds k00 back, and comes back first among the held.
    let config = in_batches_of(5);
    let s = Sweeper::new(MemoryStore::new(), Policy::default(), config);
    block_on(async {
        for k in ["a0", "a1", "a2"] {
            s.put(&EntryId::new("", k), bytes(b"."), expiring(1, &[]), 0)
                .await
                .unwrap();
        }
        let key = |i: usize| format!("k{i:02}");
        for i in 0..8 {
            let refs = if i == 0 { vec![] } else { vec![key(i - 1)] };
            let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
            s.put(
                &EntryId::new("", key(i)),
                bytes(b"."),
                expiring(1, &refs),
                0,
            )
            .await
            .unwrap();
        }
        let first = slice(&s, 10, 1).await;
        assert!(!first.done);
        let mut runs = 0;
        loop {
            let r = s.run(Mode::Full, 10, &mut RunToEnd).await.unwrap();
            runs += 1;
            if r.done || runs > 5 {
                break;
            }
        }
        assert!(s.plan(Mode::Full, 10).await.unwrap().actions.is_empty());
        assert_eq!(s.store().count(Table::Meta), 0);
    });
}

/// Records what `progress()` shows at each step of a run.
struct Peek<'a> {
    s: &'a Sweeper<MemoryStore>,
    seen: Vec<(bool, u64, u64, u64)>,
}

impl kvsweep::exec::RunHost for Peek<'_> {
    async fn between_batches(&mut self, _: &kvsweep::exec::Progress) -> kvsweep::exec::Flow {
        let p = self.s.progress();
        self.seen.push((p.running, p.processed, p.total, p.deleted));
        kvsweep::exec::Flow::Continue
    }
}

#[test]
fn progress_shows_a_sliced_run_as_one_not_each_slice_from_nought() {
    let s = Sweeper::new(MemoryStore::new(), Policy::default(), in_batches_of(10));
    block_on(async {
        for i in 0..30 {
            put_expired(&s, i).await;
        }
        let first = slice(&s, 10, 1).await;
        assert!(!first.done);
        let mut peek = Peek {
            s: &s,
            seen: Vec::new(),
        };
        let rest = s.run(Mode::Full, 10, &mut peek).await.unwrap();
        assert!(rest.done && rest.resumed);
        // Going on from the 10 the first slice handled, out of 30 in all.
        assert_eq!(peek.seen.first(), Some(&(true, 10, 30, 10)));
        assert_eq!(peek.seen.last(), Some(&(false, 30, 30, 30)));
        assert!(
            peek.seen.windows(2).all(|w| w[0].1 <= w[1].1),
            "{:?}",
            peek.seen
        );
    });
}

/// Stops a run after `batches` batches, once it has made progress (deleted
/// something, or has a place to go on from): the rule a time budget needs
/// (see `RunHost`), as the package's own host keeps it.
struct BudgetAfter {
    batches: usize,
}

impl kvsweep::exec::RunHost for BudgetAfter {
    async fn between_batches(&mut self, p: &kvsweep::exec::Progress) -> kvsweep::exec::Flow {
        self.batches = self.batches.saturating_sub(1);
        if p.running && self.batches == 0 && (p.placed || p.deleted > 0) {
            kvsweep::exec::Flow::Stop
        } else {
            kvsweep::exec::Flow::Continue
        }
    }
}

/// A chain of garbage (each entry references the one before) is deleted by
/// runs in slices, and the last slice's report counts every slice's
/// deletions (found by a tester: a slice that stopped among entries waiting
/// for their referrers saved no place, and its deletions fell out of the
/// totals: 21 of 31).
#[test]
fn sliced_runs_over_a_chain_of_garbage_finish_and_count_every_deletion() {
    let s = Sweeper::new(MemoryStore::new(), Policy::default(), in_batches_of(2));
    block_on(async {
        for i in 0..20usize {
            let opts = PutOptions {
                ttl_ms: Some(1),
                refs: (i > 0)
                    .then(|| format!("k{:02}", i - 1))
                    .into_iter()
                    .collect(),
                ..Default::default()
            };
            s.put(
                &EntryId::new("", format!("k{i:02}")),
                StoredValue::Bytes(vec![1]),
                opts,
                0,
            )
            .await
            .unwrap();
        }
        let mut slices = 0;
        let last = loop {
            slices += 1;
            assert!(slices < 100, "the run never finished");
            let r = s
                .run(Mode::Full, 10, &mut BudgetAfter { batches: 2 })
                .await
                .unwrap();
            if r.done {
                break r;
            }
        };
        assert!(slices > 1, "it ran in slices");
        assert!(s.store().keys(Table::Meta).is_empty());
        assert_eq!(last.deleted[&Reason::Expired].count, 20, "{last:?}");
    });
}
