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

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use kvsweep::{
    plan, BlobInfo, EntryId, EntryMeta, GroupRule, Inventory, InventoryEntry, Millis, Mode, Plan,
    Policy, Reason, Rules, TempInfo,
};
use peak_alloc::PeakAlloc;

// Counts every allocation (realloc as a new block plus the old one, as a
// copying allocator does), so `peak_usage` is an upper bound.
#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const NAMESPACES: usize = 1_000;
const ENTRIES: usize = 1_000_000;
const RUNS: usize = 5;
/// 2026-01-01T00:00:00Z.
const NOW: Millis = 1_767_225_600_000;
const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * 60 * MINUTE;

// ---------------------------------------------------------------------------
// The store (alloc only: portable to a wasm example)
// ---------------------------------------------------------------------------

/// SplitMix64: deterministic, tiny, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A 64-hex-digit id standing in for the SHA-256 of blob `i`.
fn blob_id(i: u64) -> String {
    let mut r = Rng(i ^ 0x5eed_b10b);
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        out.push_str(&format!("{:016x}", r.next()));
    }
    out
}

fn namespace_name(n: usize) -> String {
    format!("user-{n:04}")
}

/// The policy the store is planned under: global age and group rules, and
/// quotas on some namespaces.
fn bench_policy(namespaces: usize) -> Policy {
    let mut groups = BTreeMap::new();
    groups.insert("nightly".to_string(), GroupRule { keep_last: 7 });
    groups.insert("drafts".to_string(), GroupRule { keep_last: 20 });
    let mut overrides = BTreeMap::new();
    for n in 0..namespaces {
        let rules = if n % 10 == 3 {
            Rules {
                max_entries: Some(600),
                ..Rules::default()
            }
        } else if n % 10 == 7 {
            Rules {
                max_bytes: Some(256 << 20),
                low_watermark: Some(0.8),
                ..Rules::default()
            }
        } else {
            continue;
        };
        overrides.insert(namespace_name(n), rules);
    }
    Policy {
        rules: Rules {
            max_age_ms: Some(60 * DAY),
            groups,
            ..Rules::default()
        },
        namespaces: overrides,
        ..Policy::default()
    }
}

/// `entries` entries in `namespaces` namespaces referencing about as many
/// blobs, listed as a store would list them (namespace by namespace).
fn bench_inventory(entries: usize, namespaces: usize, now: Millis, seed: u64) -> Inventory {
    let mut r = Rng(seed);
    let per_ns = entries / namespaces;
    let total_blobs = (per_ns * namespaces) as u64;
    // Blobs many entries share (logos, fonts, common attachments).
    let shared = (total_blobs / 1000).max(1);
    let mut inv = Inventory {
        entries: Vec::with_capacity(per_ns * namespaces),
        blobs: Vec::with_capacity(total_blobs as usize),
        ..Inventory::default()
    };
    let mut registered = Vec::with_capacity(namespaces);
    for n in 0..namespaces {
        let ns = namespace_name(n);
        // 1% of namespaces were deleted or written by something else: zombies.
        if n % 100 != 99 {
            registered.push(ns.clone());
        }
        for j in 0..per_ns {
            let g = (n * per_ns + j) as u64;
            let created_at = now - r.below(90 * DAY);
            let updated_at = created_at + r.below(now - created_at + 1);
            let accessed_at = updated_at + r.below(now - updated_at + 1);
            let expires_at = r.chance(20).then(|| created_at + HOUR + r.below(30 * DAY));
            let group = match r.below(100) {
                0..=4 => Some("nightly".to_string()),
                5..=9 => Some("drafts".to_string()),
                10..=14 => Some("scratch".to_string()),
                _ => None,
            };
            // Every tenth entry is an attachment of the entry before it.
            let dependent = j % 10 == 9;
            let mut refs = Vec::new();
            if j % 10 == 8 {
                refs.push(format!("item-{:05}", j + 1));
            }
            if r.chance(20) {
                for _ in 0..1 + r.below(2) {
                    // 1 in 50 points at a key that does not exist.
                    let k = r.below(per_ns as u64 + per_ns as u64 / 50);
                    refs.push(format!("item-{k:05}"));
                }
            }
            // Its own blob (5% of blobs are left over by interrupted writes),
            // sometimes a widely shared one, sometimes another entry's.
            let mut blobs = Vec::new();
            if r.chance(95) {
                blobs.push(blob_id(g));
            }
            if r.chance(10) {
                blobs.push(blob_id(r.below(shared)));
            }
            if r.chance(5) {
                blobs.push(blob_id(r.below(total_blobs)));
            }
            inv.entries.push(InventoryEntry {
                id: EntryId::new(ns.clone(), format!("item-{j:05}")),
                meta: EntryMeta {
                    created_at,
                    updated_at,
                    accessed_at,
                    expires_at,
                    size: 100 + r.below(10_000),
                    group,
                    pinned: r.chance(1),
                    locked: r.chance(2),
                    dependent,
                    refs,
                    blobs,
                    write_id: g + 1,
                    ..EntryMeta::default()
                },
            });
        }
    }
    for i in 0..total_blobs {
        // 1% were written in the last minutes: within their grace period.
        let created_at = if r.chance(1) {
            now - r.below(10 * MINUTE)
        } else {
            now - r.below(90 * DAY)
        };
        inv.blobs.push(BlobInfo {
            id: blob_id(i),
            size: 1_000 + r.below(1 << 20),
            created_at,
        });
    }
    // Stores list records in key order.
    inv.blobs.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    inv.temps = (0..1_000u64)
        .map(|i| TempInfo {
            id: format!("tmp-{i:04}"),
            size: r.below(1 << 20),
            created_at: now - r.below(2 * DAY),
        })
        .collect();
    inv.namespaces = Some(registered);
    inv
}

// ---------------------------------------------------------------------------
// Measurement (std only)
// ---------------------------------------------------------------------------

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
    assert!(
        shuffled.plan == m.plan,
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
