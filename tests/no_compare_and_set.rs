//! A run racing a writer on a store without compare-and-set (SPEC §6, issue
//! #10). With compare-and-set the run's delete of an expired entry checks the
//! record it read and a `put` of the same key in between wins; without it the
//! delete lands blind and the new write is lost. No grace period closes this
//! window: it opens between the run's last read and its delete, whatever the
//! ages involved. The ignored test states what should hold; it is the
//! reproduction of the known issue written up in the README ("Not built yet").
#![cfg(not(target_arch = "wasm32"))]

use std::cell::Cell;
use std::rc::Rc;

use futures_executor::block_on;
use kvsweep::codec::StoredValue;
use kvsweep::exec::RunToEnd;
use kvsweep::store::faulty::{ready, CallKind, FaultyStore};
use kvsweep::{EntryId, MemoryStore, Mode, Policy, PutOptions, Sweeper};

const T0: u64 = 1_700_000_000_000;

/// Puts an entry that expires, then runs a cleanup during which, just before
/// the run's deleting batch, another writer puts the same key again with no
/// expiry. Returns what a reader sees afterwards.
fn race(compare_and_set: bool) -> Option<StoredValue> {
    let records = MemoryStore::new();
    let store = |seed| {
        let s = FaultyStore::new(records.clone(), seed);
        s.set_atomic(false);
        s.set_compare_and_set(compare_and_set);
        s
    };
    let policy = Policy {
        orphan_grace_ms: 120_000,
        temp_max_age_ms: 120_000,
        ..Policy::default()
    };
    let writer = Rc::new(Sweeper::new(store(1), policy.clone(), Default::default()));
    let run_store = store(2);
    let cleaner = Sweeper::new(run_store.clone(), policy, Default::default());
    let id = EntryId::new("", "cache:/api/items");
    let expiring = PutOptions {
        ttl_ms: Some(1_000),
        ..Default::default()
    };
    block_on(writer.put(&id, StoredValue::Bytes(b"old".to_vec()), expiring, T0)).unwrap();

    let done = Rc::new(Cell::new(false));
    let (w, i, d) = (writer.clone(), id.clone(), done.clone());
    run_store.set_hook(move |call| {
        if call.kind == CallKind::Apply && call.writes > 0 && !d.replace(true) {
            ready(w.put(
                &i,
                StoredValue::Bytes(b"new".to_vec()),
                PutOptions::default(),
                T0 + 60_000,
            ))
            .unwrap();
        }
    });
    let report = block_on(cleaner.run(Mode::Full, T0 + 60_000, &mut RunToEnd)).unwrap();
    assert!(done.get(), "the writer acted during the run");
    assert!(report.done);
    block_on(writer.get(&id, T0 + 60_001)).unwrap()
}

#[test]
fn with_compare_and_set_a_put_racing_a_runs_delete_survives() {
    assert_eq!(race(true), Some(StoredValue::Bytes(b"new".to_vec())));
}

#[test]
#[ignore = "known issue: without compare-and-set a run's delete is blind (README, Not built yet)"]
fn without_compare_and_set_a_put_racing_a_runs_delete_survives() {
    assert_eq!(race(false), Some(StoredValue::Bytes(b"new".to_vec())));
}
