//! The benchmark's store: a large, realistic inventory and policy, built
//! deterministically from a seed with `alloc` types only, so the native bench
//! (`benches/plan_bench.rs`) and the wasm one (`examples/plan_bench_wasm.rs`)
//! plan the very same store.

use kvsweep::vecmap::VecMap;

use kvsweep::{
    BlobInfo, EntryId, EntryMeta, GroupRule, Inventory, InventoryEntry, Millis, Policy, Rules,
    TempInfo,
};

/// 2026-01-01T00:00:00Z.
pub const NOW: Millis = 1_767_225_600_000;
const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * 60 * MINUTE;

// ---------------------------------------------------------------------------
// The store (alloc only: portable to a wasm example)
// ---------------------------------------------------------------------------

/// SplitMix64: deterministic, tiny, no dependencies.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
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
pub fn bench_policy(namespaces: usize) -> Policy {
    let mut groups = VecMap::new();
    groups.insert("nightly".to_string(), GroupRule { keep_last: 7 });
    groups.insert("drafts".to_string(), GroupRule { keep_last: 20 });
    let mut overrides = VecMap::new();
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
pub fn bench_inventory(entries: usize, namespaces: usize, now: Millis, seed: u64) -> Inventory {
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
