//! How fast `plan()` is on a large store, and how much memory it needs.
//!
//! Builds 1,000,000 entries referencing 1,000,000 blobs in 1,000 namespaces
//! (expiries, maxAge, groups with `keepLast`, quotas, refs between entries,
//! shared blobs, orphans, dependents, zombies), then plans a full run a few
//! times. Prints wall time (best and median), entries per second, the
//! planner's peak extra heap (peak during `plan()` minus the heap before it,
//! the plan it returns included) per entry, and the inventory's own heap.
//! The baseline, measured in the same run, is the least any planner must do:
//! index every blob id and every entry key once.
//!
//! `cargo bench --bench plan_bench` (an optional argument scales the store:
//! `cargo bench --bench plan_bench -- 100000`).
//!
//! The store generator uses only `alloc` types and its own PRNG, so it can be
//! copied as is into a wasm example.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kvsweep::{plan, Inventory, Mode, Plan, Policy, Reason};

#[path = "common/synth.rs"]
mod synth;
use peak_alloc::PeakAlloc;
use synth::{bench_inventory, bench_policy, Rng, NOW};

// Counts every allocation (realloc as a new block plus the old one, as a
// copying allocator does), so `peak_usage` is an upper bound.
#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const NAMESPACES: usize = 1_000;
const ENTRIES: usize = 1_000_000;
const RUNS: usize = 5;
/// The least any planner must do: index every blob id and every entry key.
fn baseline(inv: &Inventory) -> usize {
    let blobs: std::collections::HashSet<&str> = inv.blobs.iter().map(|b| b.id.as_str()).collect();
    let keys: std::collections::HashSet<(&str, &str)> = inv
        .entries
        .iter()
        .map(|e| (e.id.namespace.as_str(), e.id.key.as_str()))
        .collect();
    blobs.len() + keys.len()
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `runs` plans of `inv`: their times sorted, the largest peak of extra heap
/// during one, and the heap the returned plan holds.
struct Measured {
    times: Vec<Duration>,
    peak_extra: usize,
    plan_bytes: usize,
    plan: Plan,
}

impl Measured {
    fn best(&self) -> Duration {
        self.times[0]
    }
    fn median(&self) -> Duration {
        self.times[self.times.len() / 2]
    }
}

fn measure(inv: &Inventory, policy: &Policy, runs: usize) -> Measured {
    let mut times = Vec::new();
    let mut peak_extra = 0;
    let mut plan_bytes = 0;
    let mut last = None;
    for _ in 0..runs {
        drop(last.take());
        let before = HEAP.current_usage();
        HEAP.reset_peak_usage();
        let (p, t) = timed(|| plan(black_box(inv), policy, NOW, Mode::Full));
        peak_extra = peak_extra.max(HEAP.peak_usage() - before);
        plan_bytes = HEAP.current_usage() - before;
        times.push(t);
        last = Some(p);
    }
    times.sort();
    Measured {
        times,
        peak_extra,
        plan_bytes,
        plan: last.expect("at least one run"),
    }
}

fn main() {
    let entries: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(ENTRIES);
    let namespaces = NAMESPACES.min(entries);

    let before = HEAP.current_usage();
    let (mut inv, build) = timed(|| bench_inventory(entries, namespaces, NOW, 42));
    let policy = bench_policy(namespaces);
    let inv_bytes = HEAP.current_usage() - before;
    let n = inv.entries.len();
    println!(
        "store: {n} entries, {} blobs, {} temps in {namespaces} namespaces (built in {:.2} s)",
        inv.blobs.len(),
        inv.temps.len(),
        build.as_secs_f64()
    );
    println!(
        "inventory heap: {:.1} MiB ({:.0} B/entry)",
        mib(inv_bytes),
        inv_bytes as f64 / n as f64
    );

    let mut base_times: Vec<Duration> = (0..RUNS)
        .map(|_| timed(|| black_box(baseline(black_box(&inv)))).1)
        .collect();
    base_times.sort();
    let base = base_times[RUNS / 2];

    let m = measure(&inv, &policy, RUNS);
    println!(
        "plan(): best {:.3} s, median {:.3} s over {RUNS} runs; {:.2} M entries/s (median)",
        m.best().as_secs_f64(),
        m.median().as_secs_f64(),
        n as f64 / m.median().as_secs_f64() / 1e6
    );
    println!(
        "        {:.2}x the baseline (index every blob id and entry key once: {:.3} s)",
        m.median().as_secs_f64() / base.as_secs_f64(),
        base.as_secs_f64()
    );
    println!(
        "memory: peak extra {:.1} MiB = {:.1} B/entry, of which the returned plan {:.1} MiB = {:.1} B/entry",
        mib(m.peak_extra),
        m.peak_extra as f64 / n as f64,
        mib(m.plan_bytes),
        m.plan_bytes as f64 / n as f64,
    );
    let s = &m.plan.summary;
    println!(
        "plan: {} actions; reachable {} ({:.0}% of entries); young blobs {}; zombies {}",
        m.plan.actions.len(),
        s.reachable,
        100.0 * s.reachable as f64 / n as f64,
        s.young_blobs,
        s.zombies.len()
    );
    for reason in Reason::ALL {
        if let Some(t) = s.deleted.get(&reason) {
            println!(
                "  {:<12} {:>8} items {:>10.1} MiB",
                reason.as_str(),
                t.count,
                mib(t.bytes as usize)
            );
        }
    }

    // Stores list in key order; a listing in any other order must give the
    // same plan, at some cost.
    let mut r = Rng(7);
    shuffle(&mut inv.entries, &mut r);
    shuffle(&mut inv.blobs, &mut r);
    let shuffled = measure(&inv, &policy, 3);
    // Listing positions (`Action::listed`, a hint for the executor) move with
    // the listing; nothing else may.
    let unlisted = |p: &kvsweep::Plan| {
        let mut p = p.clone();
        p.actions.iter_mut().for_each(|a| a.listed = None);
        p
    };
    assert!(
        unlisted(&shuffled.plan) == unlisted(&m.plan),
        "the plan depends on the listing order"
    );
    println!(
        "listing in random order: best {:.3} s, median {:.3} s; peak extra {:.1} B/entry (same plan)",
        shuffled.best().as_secs_f64(),
        shuffled.median().as_secs_f64(),
        shuffled.peak_extra as f64 / n as f64
    );
}

fn shuffle<T>(items: &mut [T], r: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, r.below(i as u64 + 1) as usize);
    }
}
