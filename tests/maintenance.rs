//! The maintenance operations of SPEC §5 on a MemoryStore, natively: each
//! checked against the store read back, not only against its own report.
#![cfg(not(target_arch = "wasm32"))]

use futures_executor::block_on;
use kvsweep::codec::StoredValue;
use kvsweep::exec::RunToEnd;
use kvsweep::store::{id_key, Op, Store, Table};
use kvsweep::sweeper::{
    assess, HealthFacts, HealthStatus, LoggedRun, Resolved, Shard, AMBIGUOUS_MAX, RUN_LOG_LEN,
};
use kvsweep::{EntryId, MemoryStore, Mode, Policy, PutOptions, Reason, Sweeper};

const T0: u64 = 1_700_000_000_000;

fn sweeper() -> Sweeper<MemoryStore> {
    Sweeper::new(MemoryStore::new(), Policy::default(), Default::default())
}

fn put(s: &Sweeper<MemoryStore>, ns: &str, key: &str, at: u64, opts: PutOptions) {
    block_on(s.put(
        &EntryId::new(ns, key),
        StoredValue::Bytes(key.as_bytes().to_vec()),
        opts,
        at,
    ))
    .unwrap();
}

#[test]
fn history_lists_the_newest_updates_first_in_one_namespace_or_all() {
    let s = sweeper();
    for i in 0..30u64 {
        let ns = if i % 3 == 0 { "a" } else { "b" };
        put(
            &s,
            ns,
            &format!("k{i:02}"),
            T0 + i * 10,
            PutOptions::default(),
        );
    }
    // Rewriting an old entry makes it the newest.
    put(&s, "b", "k01", T0 + 1_000, PutOptions::default());
    block_on(async {
        let all = s.history(None, 4, &mut RunToEnd).await.unwrap();
        let keys: Vec<&str> = all.iter().map(|e| e.id.key.as_str()).collect();
        assert_eq!(keys, ["k01", "k29", "k28", "k27"]);
        assert_eq!(all[0].meta.updated_at, T0 + 1_000);
        let a = s.history(Some("a"), 100, &mut RunToEnd).await.unwrap();
        assert_eq!(a.len(), 10);
        assert!(a.iter().all(|e| e.id.namespace == "a"));
        assert!(a
            .windows(2)
            .all(|w| w[0].meta.updated_at >= w[1].meta.updated_at));
        assert!(s.known_namespace("nope", "history").await.is_err());
    });
}

#[test]
fn resolve_prefix_finds_one_key_several_or_none() {
    let s = sweeper();
    for k in ["app", "apple", "apricot", "banana"] {
        put(&s, "", k, T0, PutOptions::default());
    }
    put(
        &s,
        "",
        "cherry",
        T0,
        PutOptions {
            ttl_ms: Some(1_000),
            ..Default::default()
        },
    );
    for i in 0..30 {
        put(&s, "", &format!("z{i:02}"), T0, PutOptions::default());
    }
    let now = T0 + 5_000;
    block_on(async {
        let r = |p: &'static str| s.resolve_prefix("", p, now);
        assert_eq!(
            r("ap").await.unwrap(),
            Resolved::Ambiguous(vec!["app".into(), "apple".into(), "apricot".into()])
        );
        assert_eq!(r("app").await.unwrap(), Resolved::Key("app".into()));
        assert_eq!(r("appl").await.unwrap(), Resolved::Key("apple".into()));
        assert_eq!(r("b").await.unwrap(), Resolved::Key("banana".into()));
        // Expired: get would not return it, so no prefix names it.
        assert_eq!(r("ch").await.unwrap(), Resolved::None);
        assert_eq!(r("q").await.unwrap(), Resolved::None);
        match r("z").await.unwrap() {
            Resolved::Ambiguous(keys) => assert_eq!(keys.len(), AMBIGUOUS_MAX),
            other => panic!("{other:?}"),
        }
        let e = r("").await.unwrap_err().to_string();
        assert!(e.contains("prefix must be a non-empty string"), "{e}");
    });
}

#[test]
fn prune_deletes_old_entries_but_not_pinned_or_referenced_ones() {
    let s = sweeper();
    let day = 86_400_000;
    put(&s, "", "old", T0, PutOptions::default());
    put(
        &s,
        "",
        "old-pinned",
        T0,
        PutOptions {
            pinned: true,
            ..Default::default()
        },
    );
    put(&s, "", "old-referenced", T0, PutOptions::default());
    put(
        &s,
        "",
        "fresh",
        T0 + 10 * day,
        PutOptions {
            refs: vec!["old-referenced".into()],
            ..Default::default()
        },
    );
    block_on(async {
        let report = s
            .prune(5 * day, T0 + 10 * day, &mut RunToEnd)
            .await
            .unwrap();
        assert!(report.done);
        assert_eq!(report.deleted[&Reason::MaxAge].count, 1, "{report:?}");
        let keys: Vec<String> = s
            .store()
            .keys(Table::Meta)
            .into_iter()
            .map(|id| id.key)
            .collect();
        assert_eq!(keys, ["fresh", "old-pinned", "old-referenced"]);
        // The sweeper's own policy (none) is untouched: a run deletes nothing more.
        let again = s
            .run(Mode::Full, T0 + 10 * day, &mut RunToEnd)
            .await
            .unwrap();
        assert!(again.deleted.values().all(|t| t.count == 0), "{again:?}");
    });
}

/// `n` blobs of 100 bytes (`[i; 100]`), each referenced by entry `d{i}` of
/// namespace "docs"; their ids.
async fn blobs_each_referenced(s: &Sweeper<MemoryStore>, n: u8) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = s.put_blob(&[i; 100], T0).await.unwrap();
        let opts = PutOptions {
            blobs: vec![id.clone()],
            ..Default::default()
        };
        let entry = EntryId::new("docs", format!("d{i}"));
        s.put(&entry, StoredValue::Bytes(vec![i]), opts, T0)
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

/// Damages the bytes of blob `ids[0]` and loses those of `ids[1]`, in the
/// store directly.
async fn damage_first_two(s: &Sweeper<MemoryStore>, ids: &[String]) {
    s.store()
        .apply(vec![
            Op::Put(Table::Blobs, id_key(&ids[0]), vec![9; 100]),
            Op::Delete(Table::Blobs, id_key(&ids[1])),
        ])
        .await
        .unwrap();
}

#[test]
fn verify_finds_corrupt_and_missing_blobs_and_repair_clears_the_way_for_put_blob() {
    let s = sweeper();
    block_on(async {
        let ids = blobs_each_referenced(&s, 8).await;
        let clean = s.verify(None, false, &mut RunToEnd).await.unwrap();
        assert_eq!((clean.checked, clean.bytes), (8, 800));
        assert!(clean.corrupt.is_empty() && clean.missing.is_empty() && clean.referrers.is_empty());

        // Damage one blob's bytes and lose another's, in the store directly.
        let store = s.store();
        damage_first_two(&s, &ids).await;
        let found = s.verify(None, false, &mut RunToEnd).await.unwrap();
        assert_eq!(found.checked, 7);
        assert_eq!(found.corrupt, [ids[0].clone()]);
        assert_eq!(found.missing, [ids[1].clone()]);
        let referrers: Vec<(&str, &str)> = found
            .referrers
            .iter()
            .map(|r| (r.key.as_str(), r.blob.as_str()))
            .collect();
        assert_eq!(referrers.len(), 2);
        assert!(referrers.contains(&("d0", ids[0].as_str())));
        assert!(referrers.contains(&("d1", ids[1].as_str())));
        assert!(found.removed.is_empty());
        assert!(store.get(Table::Blobs, &[id_key(&ids[0])]).await.unwrap()[0].is_some());

        // Shards cover every blob exactly once.
        let mut per_shard = 0;
        for index in 0..3 {
            let part = s
                .verify(Some(Shard { index, count: 3 }), false, &mut RunToEnd)
                .await
                .unwrap();
            per_shard += part.checked + part.missing.len() as u64;
        }
        assert_eq!(per_shard, 8);

        // The repair removes the corrupt bytes; the record, and the count of
        // the entry referencing it, stay.
        let repaired = s.verify(None, true, &mut RunToEnd).await.unwrap();
        assert_eq!(repaired.removed, [ids[0].clone()]);
        assert!(store.get(Table::Blobs, &[id_key(&ids[0])]).await.unwrap()[0].is_none());
        assert!(store
            .get(Table::BlobMeta, &[id_key(&ids[0])])
            .await
            .unwrap()[0]
            .is_some());
        // The entries that referenced them are reported, never deleted.
        assert!(s.store().keys(Table::Meta).iter().any(|id| id.key == "d0"));
        let after = s.verify(None, false, &mut RunToEnd).await.unwrap();
        assert!(after.corrupt.is_empty());
        assert_eq!(after.missing.len(), 2, "{after:?}");
        // putBlob of the right bytes writes them again (it refreshed the
        // record alone, so a lost blob stayed lost), and no count is wrong:
        // a new record would count no referrer, and runs trust the count.
        for (i, id) in ids[..2].iter().enumerate() {
            assert_eq!(&s.put_blob(&[i as u8; 100], T0 + 10).await.unwrap(), id);
            assert_eq!(s.get_blob(id).await.unwrap(), Some(vec![i as u8; 100]));
        }
        let rebuilt = s.rebuild().await.unwrap();
        assert_eq!((rebuilt.blobs_fixed, rebuilt.entries_fixed), (0, 0));
        let clean = s.verify(None, false, &mut RunToEnd).await.unwrap();
        assert!(
            clean.corrupt.is_empty() && clean.missing.is_empty(),
            "{clean:?}"
        );
        let plan = s.plan(Mode::Full, T0 + 86_400_000).await.unwrap();
        assert!(plan.actions.is_empty(), "{plan:?}");
    });
}

#[test]
fn after_verify_with_repair_put_blob_on_another_sweeper_writes_lost_bytes_again() {
    let s = sweeper();
    block_on(async {
        let ids = blobs_each_referenced(&s, 3).await;
        // One blob's bytes damaged, one's lost (and, later, a third's lost
        // but only seen by a verify without repair).
        let store = s.store();
        damage_first_two(&s, &ids).await;
        let repaired = s
            .verify(Some(Shard { index: 0, count: 1 }), true, &mut RunToEnd)
            .await
            .unwrap();
        assert_eq!(repaired.removed, [ids[0].clone()]);
        // A page reload: a new Sweeper over the same store. Its putBlob
        // writes the bytes again where the record says they were lost.
        let other = Sweeper::new(store.clone(), Policy::default(), Default::default());
        for (i, id) in ids[..2].iter().enumerate() {
            assert_eq!(&other.put_blob(&[i as u8; 100], T0 + 10).await.unwrap(), id);
            assert_eq!(other.get_blob(id).await.unwrap(), Some(vec![i as u8; 100]));
        }
        // Written once: the mark is gone, and the next putBlob refreshes alone.
        let rec = store
            .get(Table::BlobMeta, &[id_key(&ids[0])])
            .await
            .unwrap()[0]
            .clone()
            .unwrap();
        assert!(!kvsweep::codec::decode_blob(&rec).unwrap().lost);
        let rebuilt = other.rebuild().await.unwrap();
        assert_eq!((rebuilt.blobs_fixed, rebuilt.entries_fixed), (0, 0));
        store
            .apply(vec![Op::Delete(Table::Blobs, id_key(&ids[2]))])
            .await
            .unwrap();
        let clean = other.verify(None, false, &mut RunToEnd).await.unwrap();
        assert!(clean.corrupt.is_empty(), "{clean:?}");
        assert_eq!(clean.missing, [ids[2].clone()], "still lost: {clean:?}");
        // Without repair nothing is marked: only the Sweeper that found it
        // writes it again.
        let third = Sweeper::new(store.clone(), Policy::default(), Default::default());
        third.put_blob(&[2; 100], T0 + 20).await.unwrap();
        assert_eq!(third.get_blob(&ids[2]).await.unwrap(), None);
        other.put_blob(&[2; 100], T0 + 30).await.unwrap();
        assert_eq!(other.get_blob(&ids[2]).await.unwrap(), Some(vec![2; 100]));
    });
}

/// Without compare-and-set, verify's repair writes no blob record: the
/// write could put back an older count and time over a put's (found by a
/// review). Only the Sweeper that found the loss writes the bytes again.
#[test]
fn without_compare_and_set_verify_marks_no_record_and_its_own_put_blob_restores() {
    let records = MemoryStore::new();
    let store = kvsweep::store::faulty::FaultyStore::new(records.clone(), 1);
    store.set_atomic(false);
    store.set_compare_and_set(false);
    let s = Sweeper::new(store, Policy::default(), Default::default());
    block_on(async {
        let id = s.put_blob(&[7; 100], T0).await.unwrap();
        let opts = PutOptions {
            blobs: vec![id.clone()],
            ..Default::default()
        };
        s.put(
            &EntryId::new("", "d"),
            StoredValue::Bytes(vec![1]),
            opts,
            T0,
        )
        .await
        .unwrap();
        let meta = |records: &MemoryStore| {
            let key = id_key(&id);
            let records = records.clone();
            async move { records.get(Table::BlobMeta, &[key]).await.unwrap()[0].clone() }
        };
        let before = meta(&records).await;
        records
            .apply(vec![Op::Put(Table::Blobs, id_key(&id), vec![9; 100])])
            .await
            .unwrap();
        let repaired = s.verify(None, true, &mut RunToEnd).await.unwrap();
        assert_eq!(repaired.removed, std::slice::from_ref(&id));
        assert_eq!(meta(&records).await, before, "the record is as it was");
        assert_eq!(s.put_blob(&[7; 100], T0 + 10).await.unwrap(), id);
        assert_eq!(s.get_blob(&id).await.unwrap(), Some(vec![7; 100]));
    });
}

#[test]
fn zombies_are_listed_and_delete_namespace_removes_entries_and_record() {
    let s = sweeper();
    for i in 0..5 {
        put(&s, "ghost", &format!("g{i}"), T0, PutOptions::default());
        put(&s, "live", &format!("l{i}"), T0, PutOptions::default());
    }
    block_on(async {
        assert!(s.zombies(&mut RunToEnd).await.unwrap().is_empty());
        // The namespace's record lost (a partial restore, another writer).
        s.store()
            .apply(vec![Op::Delete(Table::Namespaces, id_key("ghost"))])
            .await
            .unwrap();
        let z = Sweeper::new(s.store().clone(), Policy::default(), Default::default());
        let zombies = z.zombies(&mut RunToEnd).await.unwrap();
        assert_eq!(zombies.len(), 1);
        assert_eq!(
            (
                zombies[0].namespace.as_str(),
                zombies[0].entries,
                zombies[0].bytes
            ),
            ("ghost", 5, 10)
        );
        // A full run keeps a zombie's entries: deletion is explicit.
        z.run(Mode::Full, T0, &mut RunToEnd).await.unwrap();
        assert_eq!(z.store().keys(Table::Meta).len(), 10);

        let report = z.delete_namespace("ghost", &mut RunToEnd).await.unwrap();
        assert_eq!(report.deleted[&Reason::Cleared].count, 5);
        assert!(z
            .store()
            .keys(Table::Meta)
            .iter()
            .all(|id| id.namespace == "live"));
        assert!(z.zombies(&mut RunToEnd).await.unwrap().is_empty());

        let report = z.delete_namespace("live", &mut RunToEnd).await.unwrap();
        assert_eq!(report.deleted[&Reason::Cleared].count, 5);
        assert_eq!(z.store().count(Table::Namespaces), 0);
        let e = z
            .delete_namespace("live", &mut RunToEnd)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no namespace \"live\""), "{e}");
    });
}

#[test]
fn health_says_when_the_last_run_found_records_it_cannot_read_without_a_backlog_check() {
    let s = sweeper();
    block_on(async {
        s.store()
            .apply(vec![Op::Put(
                Table::Meta,
                EntryId::new("", "damaged"),
                vec![0xc1],
            )])
            .await
            .unwrap();
        let report = s.run(Mode::Full, T0, &mut RunToEnd).await.unwrap();
        s.log_run(LoggedRun::of(T0, Ok(&report))).await;
        // Read back from the log's record, as another context would.
        let h = s.health(0, T0 + 1).await.unwrap();
        assert_eq!(h.status, HealthStatus::Warning, "{h:?}");
        assert!(
            h.reasons
                .iter()
                .any(|r| r.contains("records it cannot read")),
            "{h:?}"
        );
        // Gone once a run finds none.
        assert!(s
            .delete_at_hosted(&EntryId::new("", "damaged"), T0 + 1, &mut RunToEnd)
            .await
            .unwrap());
        let report = s.run(Mode::Full, T0 + 2, &mut RunToEnd).await.unwrap();
        s.log_run(LoggedRun::of(T0 + 2, Ok(&report))).await;
        let h = s.health(0, T0 + 3).await.unwrap();
        assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
    });
}

#[test]
fn the_run_log_keeps_the_last_runs_and_health_reads_it() {
    let s = sweeper();
    block_on(async {
        let h = s.health(1_000, T0).await.unwrap();
        assert_eq!(h.status, HealthStatus::Warning, "{h:?}");
        for i in 0..(RUN_LOG_LEN as u64 + 5) {
            let report = s.run(Mode::Full, T0 + i, &mut RunToEnd).await.unwrap();
            s.log_run(LoggedRun::of(T0 + i, Ok(&report))).await;
        }
        let log = s.run_log().await.unwrap();
        assert_eq!(log.len(), RUN_LOG_LEN);
        assert_eq!(log.last().unwrap().at, T0 + RUN_LOG_LEN as u64 + 4);
        assert!(log
            .iter()
            .all(|r| r.done && !r.failed && r.mode == Mode::Full));
        let h = s.health(1_000, T0 + 100).await.unwrap();
        assert_eq!(
            (h.status, h.reasons.len()),
            (HealthStatus::Healthy, 0),
            "{h:?}"
        );
        // Two periods without success.
        let h = s.health(1_000, T0 + 5_000).await.unwrap();
        assert_eq!(h.status, HealthStatus::Critical, "{h:?}");
        assert!(h.reasons[0].contains("no successful run"), "{h:?}");
        for i in 0..3 {
            s.log_run(LoggedRun::of(T0 + 200 + i, Err(()))).await;
        }
        let h = s.health(0, T0 + 300).await.unwrap();
        assert_eq!(h.status, HealthStatus::Critical, "{h:?}");
        assert!(
            h.reasons
                .iter()
                .any(|r| r.contains("the last 3 runs failed")),
            "{h:?}"
        );
    });
}

/// Stops a run after its first batch, as a slice's budget would.
struct OneBatch;

impl kvsweep::exec::RunHost for OneBatch {
    async fn between_batches(&mut self, p: &kvsweep::exec::Progress) -> kvsweep::exec::Flow {
        match p.processed {
            0 => kvsweep::exec::Flow::Continue,
            _ => kvsweep::exec::Flow::Stop,
        }
    }
}

/// Runs at `at` a batch a slice, logging each slice, until done; returns how many slices.
async fn slices(s: &Sweeper<MemoryStore>, at: u64) -> usize {
    let mut n = 0;
    loop {
        let r = s.run(Mode::Full, at, &mut OneBatch).await.unwrap();
        let mut line = LoggedRun::of(at, Ok(&r));
        line.duration_ms = 7;
        s.log_run(line).await;
        n += 1;
        if r.done {
            return n;
        }
    }
}

#[test]
fn the_slices_of_a_run_are_one_line_of_the_run_log() {
    // Each slice had a line: a sliced run of 40 slices pushed every older run
    // out of the 32 the log keeps.
    let config = kvsweep::Config {
        exec: kvsweep::exec::ExecConfig {
            batch_size: 10,
            page_size: 100,
        },
        ..Default::default()
    };
    let s = Sweeper::new(MemoryStore::new(), Policy::default(), config);
    let expiring = || PutOptions {
        ttl_ms: Some(1),
        ..Default::default()
    };
    for i in 0..45 {
        put(&s, "", &format!("k{i:02}"), T0, expiring());
    }
    block_on(async {
        assert!(slices(&s, T0 + 10).await >= 5);
        let log = s.run_log().await.unwrap();
        assert_eq!(log.len(), 1, "{log:?}");
        let line = &log[0];
        assert!(line.done && !line.failed, "{line:?}");
        assert_eq!((line.at, line.deleted), (T0 + 10, 45));
        assert_eq!(line.duration_ms % 7, 0);
        assert!(line.duration_ms >= 35, "each slice's time: {line:?}");
    });
    // A run that is not resumed has a line of its own; so has one after a
    // failure, though it resumes the run the failure cut short.
    for i in 0..20 {
        put(&s, "", &format!("m{i:02}"), T0, expiring());
    }
    block_on(async {
        let r = s.run(Mode::Full, T0 + 20, &mut OneBatch).await.unwrap();
        assert!(!r.done);
        s.log_run(LoggedRun::of(T0 + 20, Ok(&r))).await;
        s.log_run(LoggedRun::of(T0 + 21, Err(()))).await;
        slices(&s, T0 + 22).await;
        let log = s.run_log().await.unwrap();
        let lines: Vec<(u64, bool, bool, u64)> = log
            .iter()
            .map(|r| (r.at, r.done, r.failed, r.deleted))
            .collect();
        assert_eq!(
            lines,
            vec![
                (T0 + 10, true, false, 45),
                (T0 + 20, false, false, 10),
                (T0 + 21, false, true, 0),
                (T0 + 22, true, false, 10),
            ]
        );
    });
    // A light run logged between two slices of a full run (one after a
    // delete, say): the full run's slices still share a line.
    for i in 0..20 {
        put(&s, "", &format!("n{i:02}"), T0, expiring());
    }
    block_on(async {
        let r = s.run(Mode::Full, T0 + 30, &mut OneBatch).await.unwrap();
        s.log_run(LoggedRun::of(T0 + 30, Ok(&r))).await;
        let light = s.run(Mode::Light, T0 + 31, &mut RunToEnd).await.unwrap();
        s.log_run(LoggedRun::of(T0 + 31, Ok(&light))).await;
        slices(&s, T0 + 32).await;
        let log = s.run_log().await.unwrap();
        let lines: Vec<(u64, Mode, bool, u64)> = log
            .iter()
            .map(|r| (r.at, r.mode, r.done, r.deleted))
            .skip(4)
            .collect();
        // The full run's line moves last, with the time of its last part:
        // health judges the last run, and when one last succeeded, by it.
        assert_eq!(
            lines,
            vec![
                (T0 + 31, Mode::Light, true, 0),
                (T0 + 32, Mode::Full, true, 20)
            ]
        );
        let h = s.health(1_000, T0 + 500).await.unwrap();
        assert_eq!(h.last_success_at, Some(T0 + 32));
    });
}

#[test]
fn health_weighs_each_reason() {
    let ok = |at| LoggedRun {
        at,
        done: true,
        ..Default::default()
    };
    let facts = HealthFacts {
        period_ms: 1_000,
        ..Default::default()
    };
    assert_eq!(
        assess(vec![ok(T0)], facts.clone(), T0 + 10).status,
        HealthStatus::Healthy
    );
    let with_errors = LoggedRun {
        errors: 2,
        ..ok(T0)
    };
    let h = assess(
        vec![ok(T0 - 10), with_errors.clone()],
        facts.clone(),
        T0 + 10,
    );
    assert_eq!(h.status, HealthStatus::Warning);
    assert_eq!(h.last_success_at, Some(T0 - 10));
    let lapsed = HealthFacts {
        lapsed_lease: Some(T0),
        ..facts.clone()
    };
    let h = assess(vec![ok(T0)], lapsed.clone(), T0 + 10);
    assert_eq!(h.status, HealthStatus::Warning);
    assert!(h.reasons[0].contains("lease ran out"), "{h:?}");
    let unfinished = HealthFacts {
        unfinished_since: Some(T0),
        ..facts.clone()
    };
    assert_eq!(
        assess(vec![ok(T0 + 1_500)], unfinished.clone(), T0 + 1_600).status,
        HealthStatus::Warning
    );
    assert_eq!(
        assess(vec![ok(T0 + 500)], unfinished.clone(), T0 + 600).status,
        HealthStatus::Healthy
    );
    // A run stopped before it saved a cursor (aborted before its first
    // batch): no success, and garbage left once a period has passed.
    let stopped = LoggedRun {
        done: false,
        ..ok(T0 + 100)
    };
    let h = assess(vec![ok(T0), stopped.clone()], facts.clone(), T0 + 1_200);
    assert_eq!(h.status, HealthStatus::Warning, "{h:?}");
    assert!(h.reasons[0].contains("stopped before its end"), "{h:?}");
    assert_eq!(h.last_success_at, Some(T0), "a stopped run is no success");
    let h = assess(vec![ok(T0), stopped.clone()], facts.clone(), T0 + 600);
    assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
    // Only runs stopped by hand: no better than none (it read healthy), but
    // no worse however many (three read critical, as three failures do).
    let h = assess(vec![stopped.clone(); 2], facts.clone(), T0 + 600);
    assert_eq!(h.status, HealthStatus::Warning, "{h:?}");
    assert!(h.reasons[0].contains("has gone to its end"), "{h:?}");
    let h = assess(vec![stopped.clone(); 5], facts.clone(), T0 + 600);
    assert_eq!(h.status, HealthStatus::Warning, "{h:?}");
    let failed = LoggedRun {
        failed: true,
        ..stopped.clone()
    };
    let some_failed = vec![failed.clone(), stopped.clone(), with_errors, failed];
    let h = assess(some_failed, facts.clone(), T0 + 600);
    assert_eq!(h.status, HealthStatus::Critical, "{h:?}");
    assert!(
        h.reasons.iter().any(|r| r == "no run in the log succeeded"),
        "{h:?}"
    );
    // A period of 0 (no periodic runs) never makes a run overdue.
    let none = HealthFacts::default();
    assert_eq!(
        assess(vec![ok(T0)], none, T0 + 1_000_000).status,
        HealthStatus::Healthy
    );
}

#[test]
fn delete_is_tolerant_of_a_missing_blob_and_leaves_it_to_a_light_run() {
    let s = sweeper();
    block_on(async {
        let blob = s.put_blob(&[5; 50], T0).await.unwrap();
        let other = s.put_blob(&[6; 50], T0).await.unwrap();
        let opts = PutOptions {
            blobs: vec![blob.clone(), other.clone()],
            ..Default::default()
        };
        let id = EntryId::new("", "doc");
        s.put(&id, StoredValue::Bytes(vec![1]), opts, T0)
            .await
            .unwrap();
        // One blob lost entirely (bytes and record), as a bad restore leaves it.
        s.store()
            .apply(vec![
                Op::Delete(Table::Blobs, id_key(&blob)),
                Op::Delete(Table::BlobMeta, id_key(&blob)),
            ])
            .await
            .unwrap();
        assert!(s.delete(&id).await.unwrap());
        assert!(s.store().keys(Table::Meta).is_empty());
        // The other blob, now unreferenced, goes in the next light run past its grace.
        let grace = Policy::default().orphan_grace_ms;
        let light = s
            .run(Mode::Light, T0 + grace + 1, &mut RunToEnd)
            .await
            .unwrap();
        assert_eq!(light.deleted[&Reason::OrphanBlob].count, 1, "{light:?}");
        assert_eq!(s.store().count(Table::Blobs), 0);
    });
}

/// A store with entries in two namespaces, a value too large to live in its
/// entry's record, and two blobs, one shared.
fn filled() -> Sweeper<MemoryStore> {
    let s = sweeper();
    block_on(async {
        let a = s.put_blob(&[1; 3000], T0).await.unwrap();
        let b = s.put_blob(&[2; 10], T0).await.unwrap();
        for (ns, key, blobs) in [("x", "one", vec![a.clone()]), ("y", "two", vec![a, b])] {
            let opts = PutOptions {
                blobs,
                ..Default::default()
            };
            s.put(
                &EntryId::new(ns, key),
                StoredValue::Bytes(key.as_bytes().to_vec()),
                opts,
                T0,
            )
            .await
            .unwrap();
        }
        let big = StoredValue::Bytes(vec![7; 20_000]);
        s.put(&EntryId::new("x", "big"), big, PutOptions::default(), T0)
            .await
            .unwrap();
    });
    s
}

#[test]
fn move_to_copies_verifies_and_then_clears_the_source() {
    let s = filled();
    let other = filled();
    let target = MemoryStore::new();
    block_on(async {
        let report = s.move_to(&target, &mut RunToEnd).await.unwrap();
        assert_eq!(
            (
                report.entries,
                report.values,
                report.blobs,
                report.namespaces
            ),
            (3, 1, 2, 2),
            "{report:?}"
        );
        assert_eq!(report.blob_bytes, 3010);
        assert!(report.verified && report.left == 0 && !report.resumed);
        for t in [
            Table::Meta,
            Table::Values,
            Table::Blobs,
            Table::BlobMeta,
            Table::Namespaces,
        ] {
            assert_eq!(s.store().count(t), 0, "{t:?} left in the source");
        }
        assert_eq!(target.count(Table::State), 0, "the move's mark is gone");
        let t = Sweeper::new(target.clone(), Policy::default(), Default::default());
        let big = t.get(&EntryId::new("x", "big"), T0).await.unwrap();
        assert_eq!(big, Some(StoredValue::Bytes(vec![7; 20_000])));
        let two = t
            .detail(&EntryId::new("y", "two"), T0, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            t.get_blob(&two.0.blobs[0]).await.unwrap().unwrap(),
            vec![1; 3000]
        );
        let plan = t.plan(Mode::Full, T0 + 86_400_000).await.unwrap();
        assert!(plan.actions.is_empty(), "{plan:?}");
        let check = t.verify(None, false, &mut RunToEnd).await.unwrap();
        assert_eq!(
            (check.checked, check.corrupt.len(), check.missing.len()),
            (2, 0, 0)
        );
        assert!(t.zombies(&mut RunToEnd).await.unwrap().is_empty());
        // A second move into a store that now holds entries is refused.
        let e = other
            .move_to(&target, &mut RunToEnd)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("the target store already holds entries"), "{e}");
    });
}

#[test]
fn move_to_stops_before_clearing_when_a_source_blob_is_corrupt() {
    let s = filled();
    let target = MemoryStore::new();
    block_on(async {
        let blob = s.store().keys(Table::Blobs)[0].clone();
        s.store()
            .apply(vec![Op::Put(Table::Blobs, blob.clone(), vec![0; 3])])
            .await
            .unwrap();
        let report = s.move_to(&target, &mut RunToEnd).await.unwrap();
        assert_eq!(report.corrupt_blobs, [blob.key]);
        assert!(report.corrupt.is_empty());
        assert!(!report.verified);
        assert_eq!(report.cleared, 0);
        assert_eq!(s.store().count(Table::Meta), 3);
        assert_eq!(s.store().count(Table::Blobs), 2);
        // Resumable: the mark stays, so a second try is not refused as a non-empty target.
        let again = s.move_to(&target, &mut RunToEnd).await.unwrap();
        assert!(again.resumed);
    });
}

#[test]
fn move_to_reports_a_source_blob_recorded_without_its_bytes() {
    let s = filled();
    let target = MemoryStore::new();
    block_on(async {
        let blob = s.store().keys(Table::Blobs)[0].clone();
        s.store()
            .apply(vec![Op::Delete(Table::Blobs, blob.clone())])
            .await
            .unwrap();
        let report = s.move_to(&target, &mut RunToEnd).await.unwrap();
        // Copied as it was, and said so: not "verified" and silent.
        assert_eq!(
            report.missing_blobs,
            std::slice::from_ref(&blob.key),
            "{report:?}"
        );
        assert!(report.verified && report.corrupt_blobs.is_empty());
        assert_eq!(report.blobs, 1);
        let t = Sweeper::new(target.clone(), Policy::default(), Default::default());
        let check = t.verify(None, false, &mut RunToEnd).await.unwrap();
        assert_eq!(check.missing, [blob.key]);
    });
}

#[test]
fn move_to_stops_before_clearing_when_an_entry_cannot_be_read_and_resumes_once_it_is_gone() {
    let s = filled();
    let target = MemoryStore::new();
    block_on(async {
        let bad = EntryId::new("x", "one");
        s.store()
            .apply(vec![Op::Put(Table::Meta, bad.clone(), vec![0xc1])])
            .await
            .unwrap();
        let report = s.move_to(&target, &mut RunToEnd).await.unwrap();
        assert_eq!(
            report.corrupt,
            std::slice::from_ref(&bad),
            "the entry, with its namespace"
        );
        assert!(report.corrupt_blobs.is_empty());
        assert!(!report.verified);
        assert_eq!(report.cleared, 0);
        assert_eq!(s.store().count(Table::Meta), 3, "the source is untouched");
        // Once the record is gone, the move resumes and finishes.
        s.store()
            .apply(vec![Op::Delete(Table::Meta, bad)])
            .await
            .unwrap();
        let again = s.move_to(&target, &mut RunToEnd).await.unwrap();
        assert!(again.resumed && again.verified && again.corrupt.is_empty());
        assert_eq!(again.entries, 2);
        assert_eq!(s.store().count(Table::Meta), 0);
        assert_eq!(target.count(Table::Meta), 2);
    });
}

#[test]
fn move_to_stops_before_clearing_when_a_blob_record_cannot_be_read() {
    let s = filled();
    let target = MemoryStore::new();
    block_on(async {
        let blob = s.store().keys(Table::BlobMeta)[0].clone();
        s.store()
            .apply(vec![Op::Put(Table::BlobMeta, blob.clone(), vec![0xc1])])
            .await
            .unwrap();
        let report = s.move_to(&target, &mut RunToEnd).await.unwrap();
        assert_eq!(report.corrupt_blobs, [blob.key]);
        assert!(report.corrupt.is_empty());
        assert!(!report.verified);
        assert_eq!(report.cleared, 0);
        assert_eq!(s.store().count(Table::Meta), 3, "the source is untouched");
    });
}

#[test]
fn move_to_refuses_the_source_itself_even_when_marked_as_a_move_target() {
    let s = filled();
    block_on(async {
        // A mark left by a move into this store that was cut short.
        s.store()
            .apply(vec![Op::Put(Table::State, id_key("move-in"), vec![1])])
            .await
            .unwrap();
        let same = s.store().clone();
        let e = s
            .move_to(&same, &mut RunToEnd)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("the target is the source store itself"), "{e}");
        assert_eq!(s.store().count(Table::Meta), 3);
    });
}

#[test]
fn the_rolling_audit_covers_every_blob_in_count_calls_and_health_reports_what_it_found() {
    let s = sweeper();
    block_on(async {
        let mut ids = Vec::new();
        for i in 0..12u8 {
            ids.push(s.put_blob(&[i; 40], T0).await.unwrap());
        }
        let mut seen = 0;
        let mut shards = Vec::new();
        for _ in 0..4 {
            let (shard, report) = s.audit(4, T0, &mut RunToEnd).await.unwrap();
            shards.push(shard.index);
            seen += report.checked;
        }
        assert_eq!(shards, [0, 1, 2, 3]);
        assert_eq!(seen, 12, "4 audits of 4 shards see every blob once");
        // Another shard count starts over.
        assert_eq!(s.audit(3, T0, &mut RunToEnd).await.unwrap().0.index, 0);

        s.store()
            .apply(vec![Op::Put(Table::Blobs, id_key(&ids[5]), vec![0; 40])])
            .await
            .unwrap();
        let holds = |c: u32| {
            (0..c)
                .find(|&i| Shard { index: i, count: c }.holds(&ids[5]))
                .unwrap()
        };
        while s.audit(3, T0, &mut RunToEnd).await.unwrap().0.index != holds(3) {}
        let h = s.health(0, T0).await.unwrap();
        let audit = h
            .reasons
            .iter()
            .find(|r| r.contains("rolling audit"))
            .expect("an audit reason");
        assert!(
            audit.contains(&format!(
                "found 1 corrupt, missing or unreadable blobs in shard {} of 3",
                holds(3)
            )),
            "{audit}"
        );
        // Audits of clean shards keep it; the shard's own next audit, once
        // repaired and its bytes put back, clears it.
        s.audit(3, T0, &mut RunToEnd).await.unwrap();
        let h = s.health(0, T0).await.unwrap();
        assert!(
            h.reasons.iter().any(|r| r.contains("rolling audit")),
            "{h:?}"
        );
        s.verify(None, true, &mut RunToEnd).await.unwrap();
        assert_eq!(s.put_blob(&[5; 40], T0).await.unwrap(), ids[5]);
        while s.audit(3, T0, &mut RunToEnd).await.unwrap().0.index != holds(3) {}
        let h = s.health(0, T0).await.unwrap();
        assert!(
            !h.reasons.iter().any(|r| r.contains("rolling audit")),
            "{h:?}"
        );
    });
}

/// Calls `act` once, at the first pause (or between two of the executor's
/// batches) where `when` holds: a writer racing the move at a chosen moment.
struct RaceAt<W, A> {
    when: W,
    act: Option<A>,
}

impl<W: FnMut() -> bool, A: AsyncFnOnce()> RaceAt<W, A> {
    async fn maybe(&mut self) {
        if (self.when)() {
            if let Some(act) = self.act.take() {
                act().await;
            }
        }
    }
}

impl<W: FnMut() -> bool, A: AsyncFnOnce()> kvsweep::exec::RunHost for RaceAt<W, A> {
    async fn between_batches(&mut self, _: &kvsweep::exec::Progress) -> kvsweep::exec::Flow {
        self.maybe().await;
        kvsweep::exec::Flow::Continue
    }
    async fn pause(&mut self) {
        self.maybe().await;
    }
}

/// A sweeper over `filled()` that pauses after every record it lists.
fn filled_small_pages() -> Sweeper<MemoryStore> {
    let s = filled();
    let mut config = kvsweep::Config::default();
    config.exec.page_size = 1;
    config.exec.batch_size = 1;
    Sweeper::new(s.store().clone(), Policy::default(), config)
}

#[test]
fn an_entry_written_during_the_copy_is_moved_by_a_later_pass() {
    let s = filled_small_pages();
    let writer = Sweeper::new(s.store().clone(), Policy::default(), Default::default());
    let target = MemoryStore::new();
    let late = EntryId::new("x", "a-late");
    block_on(async {
        let mut host = RaceAt {
            when: || true,
            act: Some(async || {
                let blob = writer.put_blob(&[9; 500], T0).await.unwrap();
                let opts = PutOptions {
                    blobs: vec![blob],
                    ..Default::default()
                };
                let value = StoredValue::Bytes(vec![4; 30_000]);
                writer.put(&late, value, opts, T0).await.unwrap();
            }),
        };
        let report = s.move_to(&target, &mut host).await.unwrap();
        assert!(report.passes >= 2, "{report:?}");
        assert_eq!(
            (report.entries, report.blobs, report.left),
            (4, 3, 0),
            "{report:?}"
        );
        let t = Sweeper::new(target.clone(), Policy::default(), Default::default());
        let got = t.detail(&late, T0, false).await.unwrap().unwrap();
        assert_eq!(got.1, StoredValue::Bytes(vec![4; 30_000]));
        assert_eq!(
            t.get_blob(&got.0.blobs[0]).await.unwrap().unwrap(),
            vec![9; 500]
        );
        for table in [
            Table::Meta,
            Table::Values,
            Table::Blobs,
            Table::BlobMeta,
            Table::Namespaces,
        ] {
            assert_eq!(s.store().count(table), 0, "{table:?}");
        }
    });
}

#[test]
fn an_entry_written_during_the_clear_keeps_its_blob_and_namespace_in_the_source() {
    let s = filled_small_pages();
    let source = s.store().clone();
    let writer = Sweeper::new(source.clone(), Policy::default(), Default::default());
    let target = MemoryStore::new();
    let fresh = EntryId::new("y", "fresh");
    block_on(async {
        let shared = {
            let two = writer
                .detail(&EntryId::new("y", "two"), T0, false)
                .await
                .unwrap()
                .unwrap();
            two.0.blobs.clone()
        };
        let mut host = RaceAt {
            // Once the clear has deleted an entry.
            when: || source.count(Table::Meta) < 3,
            act: Some(async || {
                // The same bytes again (as an app re-caching them), then an entry using them.
                writer.put_blob(&[2; 10], T0).await.unwrap();
                let opts = PutOptions {
                    blobs: shared.clone(),
                    ..Default::default()
                };
                writer
                    .put(&fresh, StoredValue::Bytes(vec![1]), opts, T0)
                    .await
                    .unwrap();
            }),
        };
        let report = s.move_to(&target, &mut host).await.unwrap();
        assert_eq!(report.left, 1, "{report:?}");
        assert_eq!(s.store().keys(Table::Meta), std::slice::from_ref(&fresh));
        assert_eq!(s.store().keys(Table::Namespaces), [id_key("y")]);
        // Every blob the entry left behind uses is whole: nothing missing.
        let check = writer.verify(None, false, &mut RunToEnd).await.unwrap();
        assert!(
            check.missing.is_empty() && check.corrupt.is_empty(),
            "{check:?}"
        );
        assert_eq!(check.checked, shared.len() as u64);
        assert!(writer.zombies(&mut RunToEnd).await.unwrap().is_empty());
        assert_eq!(target.count(Table::Meta), 3);
    });
}

#[test]
fn the_rolling_audit_remembers_every_bad_shard_until_each_is_audited_clean() {
    let s = sweeper();
    block_on(async {
        let mut ids = Vec::new();
        for i in 0..40u8 {
            ids.push(s.put_blob(&[i; 40], T0).await.unwrap());
        }
        let shard_of = |id: &str| {
            (0..4)
                .find(|&i| Shard { index: i, count: 4 }.holds(id))
                .unwrap()
        };
        // Two damaged blobs in two different shards.
        let a = ids[0].clone();
        let b = ids
            .iter()
            .find(|id| shard_of(id) != shard_of(&a))
            .unwrap()
            .clone();
        for id in [&a, &b] {
            s.store()
                .apply(vec![Op::Put(Table::Blobs, id_key(id), vec![255; 40])])
                .await
                .unwrap();
        }
        for _ in 0..4 {
            s.audit(4, T0, &mut RunToEnd).await.unwrap();
        }
        let mut bad = [shard_of(&a), shard_of(&b)];
        bad.sort();
        let h = s.health(0, T0).await.unwrap();
        let want = format!(
            "found 2 corrupt, missing or unreadable blobs in shards {}, {} of 4",
            bad[0], bad[1]
        );
        assert!(h.reasons.iter().any(|r| r.contains(&want)), "{h:?}");
    });
}

#[test]
fn deferred_refreshes_grow_with_the_entries_read_not_with_the_reads() {
    let s = sweeper();
    for i in 0..3 {
        put(&s, "", &format!("k{i}"), T0, PutOptions::default());
    }
    block_on(async {
        // 10,000 reads of three entries, merged as they come (past 4,096):
        // one refresh each, to its latest read.
        for n in 0..10_000u64 {
            let id = EntryId::new("", format!("k{}", n % 3));
            s.get(&id, T0 + 2_000 + n).await.unwrap();
        }
        assert_eq!(s.flush_touches().await.unwrap(), 3);
        let (meta, _) = s
            .detail(&EntryId::new("", "k1"), T0, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(meta.accessed_at, T0 + 2_000 + 9_997);
    });
}

#[test]
fn an_entry_written_again_during_the_move_stays_in_the_source_with_what_it_uses() {
    let s = filled();
    let writer = Sweeper::new(s.store().clone(), Policy::default(), Default::default());
    let target = MemoryStore::new();
    let big = EntryId::new("x", "big");
    block_on(async {
        let (meta, _) = writer
            .detail(&EntryId::new("x", "one"), T0, false)
            .await
            .unwrap()
            .unwrap();
        // At the first pause (the read-back, after the copy): a new write of
        // an entry with a value record of its own, now using a blob.
        let mut host = RaceAt {
            when: || true,
            act: Some(async || {
                let opts = PutOptions {
                    blobs: meta.blobs.clone(),
                    ..Default::default()
                };
                let value = StoredValue::Bytes(vec![8; 25_000]);
                writer.put(&big, value, opts, T0 + 1).await.unwrap();
            }),
        };
        let report = s.move_to(&target, &mut host).await.unwrap();
        assert!(report.verified);
        assert_eq!(report.left, 1, "{report:?}");
        assert_eq!(s.store().keys(Table::Meta), std::slice::from_ref(&big));
        // It stays whole: its value, its namespace, its blob.
        assert_eq!(
            writer.get(&big, T0).await.unwrap(),
            Some(StoredValue::Bytes(vec![8; 25_000]))
        );
        assert_eq!(s.store().keys(Table::Namespaces), [id_key("x")]);
        let check = writer.verify(None, false, &mut RunToEnd).await.unwrap();
        assert_eq!((check.checked, check.missing.len()), (1, 0), "{check:?}");
        // The target has the copy as it was.
        let t = Sweeper::new(target.clone(), Policy::default(), Default::default());
        assert_eq!(
            t.get(&big, T0).await.unwrap(),
            Some(StoredValue::Bytes(vec![7; 20_000]))
        );
    });
}

#[test]
fn an_entry_referenced_by_one_written_again_during_the_move_stays_too() {
    let s = sweeper();
    let writer = Sweeper::new(s.store().clone(), Policy::default(), Default::default());
    let (a, b) = (EntryId::new("n", "a"), EntryId::new("n", "b"));
    let refs_a = || PutOptions {
        refs: vec!["a".into()],
        ..Default::default()
    };
    put(&s, "n", "a", T0, PutOptions::default());
    put(&s, "n", "b", T0, refs_a());
    let target = MemoryStore::new();
    block_on(async {
        let mut host = RaceAt {
            when: || true,
            act: Some(async || {
                writer
                    .put(&b, StoredValue::Bytes(vec![2]), refs_a(), T0 + 1)
                    .await
                    .unwrap();
            }),
        };
        let report = s.move_to(&target, &mut host).await.unwrap();
        assert_eq!(report.left, 2, "{report:?}");
        assert_eq!(s.store().keys(Table::Meta), [a.clone(), b.clone()]);
        // Nothing in the source points at a missing entry: a run deletes nothing.
        let run = writer.run(Mode::Full, T0 + 2, &mut RunToEnd).await.unwrap();
        assert!(run.deleted.values().all(|t| t.count == 0), "{run:?}");
        assert!(writer.get(&a, T0 + 2).await.unwrap().is_some());
    });
}

/// Stops the move at its `n`th look at whether to stop.
struct StopAt(usize);

impl kvsweep::exec::RunHost for StopAt {
    async fn between_batches(&mut self, _: &kvsweep::exec::Progress) -> kvsweep::exec::Flow {
        kvsweep::exec::Flow::Continue
    }
    fn stopped(&mut self) -> bool {
        self.0 = self.0.saturating_sub(1);
        self.0 == 0
    }
}

#[test]
fn a_resumed_move_drops_from_the_target_what_the_source_deleted_meanwhile() {
    let s = filled_small_pages();
    let target = MemoryStore::new();
    block_on(async {
        // Cut short in the copy: blobs and records copied, entries not all.
        let cut = s.move_to(&target, &mut StopAt(8)).await;
        assert!(matches!(cut, Err(kvsweep::Error::Stopped)), "{cut:?}");
        assert!(target.count(Table::Meta) > 0 || target.count(Table::Blobs) > 0);
        // Meanwhile the source loses an entry (a delete, a run).
        let one = EntryId::new("x", "one");
        assert!(s.delete(&one).await.unwrap());
        let report = s.move_to(&target, &mut RunToEnd).await.unwrap();
        assert!(report.resumed && report.verified, "{report:?}");
        assert_eq!(report.entries, 2);
        assert!(
            !target.keys(Table::Meta).contains(&one),
            "deleted in the source, so not in the target"
        );
        let t = Sweeper::new(target.clone(), Policy::default(), Default::default());
        assert!(t.plan(Mode::Full, T0).await.unwrap().actions.is_empty());
    });
}

#[test]
fn move_to_refuses_a_source_without_compare_and_set() {
    // A source whose deletes cannot be checked (Workers KV) would lose a
    // write landing between a copy and its delete.
    let store = || {
        let s = kvsweep::store::faulty::FaultyStore::new(MemoryStore::new(), 1);
        s.set_compare_and_set(false);
        s
    };
    let s = Sweeper::new(store(), Policy::default(), Default::default());
    let e = block_on(s.move_to(&store(), &mut RunToEnd))
        .unwrap_err()
        .to_string();
    assert!(e.contains("the source store has no compare-and-set"), "{e}");
}

/// `meta`'s record as a release from before `accessedAt` wrote it.
fn without_accessed_at(record: &[u8]) -> Vec<u8> {
    let value = rmpv::decode::read_value(&mut &record[..]).unwrap();
    let rmpv::Value::Array(mut parts) = value else {
        panic!("not a record")
    };
    let rmpv::Value::Map(fields) = &mut parts[1] else {
        panic!("no fields")
    };
    fields.retain(|(k, _)| k.as_str() != Some("accessedAt"));
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &rmpv::Value::Array(parts)).unwrap();
    out
}

#[test]
fn migrate_rewrites_records_of_older_layouts_and_touches_nothing_else() {
    use kvsweep::codec;
    use kvsweep::store::value_key;
    let s = sweeper();
    for key in ["current", "old-meta", "old-value", "both"] {
        put(&s, "m", key, T0, PutOptions::default());
    }
    let big = StoredValue::Bytes(vec![3; 20_000]);
    block_on(s.put(
        &EntryId::new("m", "big"),
        big.clone(),
        PutOptions::default(),
        T0,
    ))
    .unwrap();
    let id = |k: &str| EntryId::new("m", k);
    let read = |t: Table, k: &EntryId| {
        block_on(s.store().get(t, std::slice::from_ref(k))).unwrap()[0].clone()
    };
    // Older layouts, written as earlier releases wrote them.
    let mut older = Vec::new();
    for key in ["old-meta", "old-value", "both"] {
        let record = read(Table::Meta, &id(key)).unwrap();
        let meta = codec::decode_meta(&record).unwrap();
        let value = codec::inline_value(&record).unwrap().unwrap();
        let mut ops = Vec::new();
        let mut meta_record = record.clone();
        if key != "old-meta" {
            // The value in a record of its own.
            meta_record = codec::encode_meta(&meta);
            ops.push(Op::Put(
                Table::Values,
                value_key(&id(key), meta.write_id),
                value,
            ));
        }
        if key != "old-value" {
            meta_record = without_accessed_at(&meta_record);
        }
        ops.push(Op::Put(Table::Meta, id(key), meta_record));
        block_on(s.store().apply(ops)).unwrap();
        older.push((key, meta));
    }
    // A record no release can read: reported, never rewritten.
    block_on(
        s.store()
            .apply(vec![Op::Put(Table::Meta, id("damaged"), vec![0xc1])]),
    )
    .unwrap();
    let report = block_on(s.migrate(&mut RunToEnd)).unwrap();
    assert_eq!(
        (
            report.scanned,
            report.current,
            report.upgraded,
            report.inlined,
            report.changed
        ),
        (6, 2, 3, 2, 0),
        "{report:?}"
    );
    assert_eq!(report.unreadable, vec![id("damaged")]);
    assert_eq!(read(Table::Meta, &id("damaged")), Some(vec![0xc1]));
    for (key, meta) in older {
        let record = read(Table::Meta, &id(key)).unwrap();
        let (now, before) = codec::decode_meta_layout(&record).unwrap();
        assert!(!before, "{key} has accessedAt now");
        assert_eq!(now.accessed_at, now.updated_at);
        assert_eq!(
            now,
            kvsweep::EntryMeta {
                accessed_at: now.updated_at,
                ..meta
            }
        );
        // Every value inline, its own record gone.
        assert!(codec::inline_value(&record).unwrap().is_some(), "{key}");
        assert_eq!(
            read(Table::Values, &value_key(&id(key), now.write_id)),
            None
        );
        let got = block_on(s.get(&id(key), T0 + 1)).unwrap().unwrap();
        assert_eq!(got, StoredValue::Bytes(key.as_bytes().to_vec()));
    }
    let got = block_on(s.get(&id("big"), T0 + 1)).unwrap().unwrap();
    assert_eq!(got, big);
    // Again: nothing left to do.
    let again = block_on(s.migrate(&mut RunToEnd)).unwrap();
    assert_eq!((again.scanned, again.current, again.upgraded), (6, 5, 0));
}

#[test]
fn migrate_refuses_a_store_without_compare_and_set() {
    let store = kvsweep::store::faulty::FaultyStore::new(MemoryStore::new(), 1);
    store.set_compare_and_set(false);
    let s = Sweeper::new(store, Policy::default(), Default::default());
    let e = block_on(s.migrate(&mut RunToEnd)).unwrap_err();
    assert!(e.to_string().contains("no compare-and-set"), "{e}");
}

/// Runs a future that does not wait (the memory store's) to its end, from
/// inside a hook, where `block_on` cannot nest.
fn now<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("the memory store never waits"),
    }
}

#[test]
fn migrate_without_transactions_leaves_an_entry_that_keeps_changing_and_rewrites_the_rest() {
    use kvsweep::codec;
    use kvsweep::store::faulty::{CallKind, FaultyStore};
    let inner = MemoryStore::new();
    let store = FaultyStore::new(inner.clone(), 1);
    let s = Sweeper::new(store.clone(), Policy::default(), Default::default());
    let id = |k: &str| EntryId::new("m", k);
    for key in ["a", "busy", "c"] {
        let value = StoredValue::Bytes(key.as_bytes().to_vec());
        block_on(s.put(&id(key), value, PutOptions::default(), T0)).unwrap();
        let record = block_on(inner.get(Table::Meta, &[id(key)])).unwrap()[0]
            .clone()
            .unwrap();
        let old = without_accessed_at(&record);
        block_on(inner.apply(vec![Op::Put(Table::Meta, id(key), old)])).unwrap();
    }
    // Before every batch the migrate applies, a writer rewrites "busy" (in
    // the older layout, so that it stays a candidate).
    let writer = inner.clone();
    let mut rev = 0u64;
    store.set_hook(move |call| {
        if call.kind == CallKind::Apply {
            let record = now(writer.get(Table::Meta, &[id("busy")])).unwrap()[0]
                .clone()
                .unwrap();
            let mut meta = codec::decode_meta(&record).unwrap();
            rev += 1;
            meta.rev = rev;
            let again = without_accessed_at(&codec::encode_entry(
                &meta,
                codec::inline_value(&record).unwrap().as_deref(),
            ));
            now(writer.apply(vec![Op::Put(Table::Meta, id("busy"), again)])).unwrap();
        }
    });
    let report = block_on(s.migrate(&mut RunToEnd)).unwrap();
    store.clear_hook();
    assert_eq!(
        (report.scanned, report.upgraded, report.changed),
        (3, 2, 1),
        "{report:?}"
    );
    for (key, upgraded) in [("a", true), ("busy", false), ("c", true)] {
        let record = block_on(inner.get(Table::Meta, &[id(key)])).unwrap()[0]
            .clone()
            .unwrap();
        assert_eq!(
            !codec::decode_meta_layout(&record).unwrap().1,
            upgraded,
            "{key}"
        );
    }
}

#[test]
fn huge_arguments_and_out_of_range_inputs_give_errors_or_limits_not_panics() {
    let s = sweeper();
    put(&s, "", "k", T0, PutOptions::default());
    block_on(async {
        // 2 * limit and 2 * period overflowed (a panic with overflow checks).
        assert_eq!(
            s.history(None, usize::MAX, &mut RunToEnd)
                .await
                .unwrap()
                .len(),
            1
        );
        let report = s.run(Mode::Full, T0, &mut RunToEnd).await.unwrap();
        s.log_run(LoggedRun::of(T0, Ok(&report))).await;
        assert_eq!(
            s.health(u64::MAX, T0 + 1).await.unwrap().status,
            HealthStatus::Healthy
        );
        // A shard past its count checked nothing and said it was fine.
        for shard in [Shard { index: 5, count: 2 }, Shard { index: 0, count: 0 }] {
            let e = s
                .verify(Some(shard), false, &mut RunToEnd)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("index must be below its count"), "{e}");
        }
        // An expiry past 2^53 - 1 ms ends there, as a TTL does.
        let opts = PutOptions {
            expires_at: Some(u64::MAX),
            ..Default::default()
        };
        let far = StoredValue::Bytes(vec![1]);
        s.put(&EntryId::new("", "far"), far, opts, T0)
            .await
            .unwrap();
        let (meta, _) = s
            .detail(&EntryId::new("", "far"), T0, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(meta.expires_at, Some((1 << 53) - 1));
    });
}

#[test]
fn a_low_watermark_outside_zero_to_one_is_the_default_not_no_eviction_or_all() {
    for mark in [2.0, f64::NAN, 0.0, -1.0] {
        let mut policy = Policy::default();
        policy.rules.max_bytes = Some(100);
        policy.rules.low_watermark = Some(mark);
        let s = Sweeper::new(MemoryStore::new(), policy, Default::default());
        for i in 0..5u64 {
            let opts = PutOptions {
                size: Some(30),
                ..Default::default()
            };
            put(&s, "", &format!("k{i}"), T0 + i, opts);
        }
        // 150 bytes over 100: down to 90 (0.9) keeps 3 of 5.
        let plan = block_on(s.plan(Mode::Full, T0 + 10)).unwrap();
        assert_eq!(plan.actions.len(), 2, "low_watermark {mark}");
    }
}
