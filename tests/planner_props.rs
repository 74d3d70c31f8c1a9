//! Property tests of the planner (SPEC §2) against a reference model.
//!
//! The reference model below is written separately and naively from the SPEC:
//! quadratic loops, `BTreeMap`s and exact `u128` byte sums, no shared code with
//! `src/plan.rs` (not even `Policy::rules_for` or `Rules::byte_target`). The
//! generators build small stores so that collisions are common: few
//! namespaces, few keys, few blobs, close timestamps (ties), refs to missing
//! keys and blobs, cycles, shared blobs, duplicate listings, corrupt entries,
//! zombie namespaces and per-namespace policy overrides.
//!
//! Conventions shared with the planner (SPEC §2 leaves them open):
//! - ages are `now - t` clamped at 0, so a timestamp from the future (clock
//!   skew) has age 0;
//! - a blob is kept while its age `< orphanGraceMs`; a temp is stale once its
//!   age `>= tempMaxAgeMs`; an entry is too old once `now - updatedAt > maxAgeMs`;
//! - a listing that returns an id twice is planned over its first copy (the
//!   generators make duplicates exact copies, as a store listing would);
//! - `dependent` entries are no roots unless pinned (deleted as `unreachable`)
//!   or younger than `orphanGraceMs` by `updatedAt` (a writer may be about to
//!   reference them, as with blobs),
//!   so they neither count towards `keepLast` nor towards `maxEntries`/`maxBytes`;
//! - `locked` protects from rule 3 (`retention`) only, not from the quotas;
//! - a blob referenced by an entry but absent from the listing weighs 0 bytes.
//!
//! On failure proptest prints the minimal failing case and the seed (`cc …`),
//! and saves it in `tests/planner_props.proptest-regressions`.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::{BTreeMap, BTreeSet};

use kvsweep::{
    plan, ActionKind, BlobInfo, EntryId, EntryMeta, GroupRule, Inventory, InventoryEntry, Millis,
    Mode, Plan, Policy, Reason, Rules, TempInfo,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

/// One planned deletion, as compared: kind, namespace, key or id, reason, bytes.
type Item = (ActionKind, Option<String>, String, Reason, u64);

/// What the reference model expects a plan to contain.
#[derive(Debug, Default)]
struct Expected {
    actions: BTreeSet<Item>,
    reachable: u64,
    young_blobs: u64,
    zombies: Vec<String>,
}

/// The rules in force in one namespace, merged by hand.
struct NsRules {
    max_age_ms: Option<u64>,
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    low_watermark: f64,
    groups: BTreeMap<String, u64>,
}

fn rules_in(policy: &Policy, ns: &str) -> NsRules {
    let g = &policy.rules;
    let o = policy.namespaces.get(ns);
    let pick = |f: fn(&Rules) -> Option<u64>| o.and_then(f).or_else(|| f(g));
    let mut groups: BTreeMap<String, u64> = g
        .groups
        .iter()
        .map(|(k, r)| (k.clone(), r.keep_last))
        .collect();
    if let Some(o) = o {
        for (k, r) in &o.groups {
            groups.insert(k.clone(), r.keep_last);
        }
    }
    NsRules {
        max_age_ms: pick(|r| r.max_age_ms),
        max_entries: pick(|r| r.max_entries),
        max_bytes: pick(|r| r.max_bytes),
        low_watermark: o
            .and_then(|o| o.low_watermark)
            .or(g.low_watermark)
            .unwrap_or(0.9),
        groups,
    }
}

fn age(now: Millis, t: Millis) -> u64 {
    now.saturating_sub(t)
}

/// Size of each listed blob (first listing wins).
fn blob_sizes(inv: &Inventory) -> BTreeMap<String, &BlobInfo> {
    let mut out = BTreeMap::new();
    for b in &inv.blobs {
        out.entry(b.id.clone()).or_insert(b);
    }
    out
}

/// The entries of a listing with duplicates removed (first copy wins).
fn distinct_entries(inv: &Inventory) -> Vec<&InventoryEntry> {
    let mut seen = BTreeSet::new();
    inv.entries
        .iter()
        .filter(|e| seen.insert(e.id.clone()))
        .collect()
}

/// Own bytes plus each distinct known blob once, exactly.
fn weight(set: &[&InventoryEntry], sizes: &BTreeMap<String, &BlobInfo>) -> u128 {
    let mut blobs = BTreeSet::new();
    let mut total: u128 = 0;
    for e in set {
        total += e.meta.size as u128;
        for b in &e.meta.blobs {
            if let Some(info) = sizes.get(b) {
                if blobs.insert(b.clone()) {
                    total += info.size as u128;
                }
            }
        }
    }
    total
}

fn reference(inv: &Inventory, policy: &Policy, now: Millis, mode: Mode) -> Expected {
    let mut out = Expected::default();
    let entries = distinct_entries(inv);
    let sizes = blob_sizes(inv);

    let mut present: BTreeSet<String> = entries.iter().map(|e| e.id.namespace.clone()).collect();
    present.extend(inv.corrupt.iter().map(|c| c.namespace.clone()));
    if let Some(registered) = &inv.namespaces {
        out.zombies = present
            .iter()
            .filter(|ns| !registered.contains(ns))
            .cloned()
            .collect();
    }
    let corrupt_ns: BTreeSet<&str> = inv.corrupt.iter().map(|c| c.namespace.as_str()).collect();

    let mut live_entries: Vec<&InventoryEntry> = Vec::new();
    for ns in &present {
        let members: Vec<&InventoryEntry> = entries
            .iter()
            .copied()
            .filter(|e| &e.id.namespace == ns)
            .collect();
        let frozen =
            mode == Mode::Light || corrupt_ns.contains(ns.as_str()) || out.zombies.contains(ns);
        if frozen {
            live_entries.extend(members);
            continue;
        }
        let r = rules_in(policy, ns);
        // Why each entry is not a root; absent = a root.
        let mut dropped: BTreeMap<&str, Reason> = BTreeMap::new();
        for e in &members {
            let m = &e.meta;
            if m.pinned {
                continue;
            }
            if m.expires_at.is_some_and(|x| x <= now) {
                dropped.insert(&e.id.key, Reason::Expired);
            } else if r.max_age_ms.is_some_and(|max| age(now, m.updated_at) > max) {
                dropped.insert(&e.id.key, Reason::MaxAge);
            } else if m.dependent && age(now, m.updated_at) >= policy.orphan_grace_ms {
                dropped.insert(&e.id.key, Reason::Unreachable);
            }
        }
        // Rule 3, group by group.
        for (group, &keep_last) in &r.groups {
            let mut ranked: Vec<&InventoryEntry> = members
                .iter()
                .copied()
                .filter(|e| {
                    e.meta.group.as_deref() == Some(group.as_str())
                        && !e.meta.pinned
                        && !e.meta.locked
                        && !dropped.contains_key(e.id.key.as_str())
                })
                .collect();
            ranked.sort_by(|a, b| {
                b.meta
                    .created_at
                    .cmp(&a.meta.created_at)
                    .then(a.id.key.cmp(&b.id.key))
            });
            for (rank, e) in ranked.iter().enumerate() {
                if rank as u64 >= keep_last {
                    dropped.insert(&e.id.key, Reason::Retention);
                }
            }
        }
        // What lives: the roots (entries no rule dropped), and what they
        // reference within the namespace, transitively.
        let live_of = |dropped: &BTreeMap<&str, Reason>| -> BTreeSet<&str> {
            let mut live: BTreeSet<&str> = members
                .iter()
                .map(|e| e.id.key.as_str())
                .filter(|k| !dropped.contains_key(k))
                .collect();
            loop {
                let before = live.len();
                for e in &members {
                    if live.contains(e.id.key.as_str()) {
                        for r in &e.meta.refs {
                            if let Some(t) = members.iter().find(|t| &t.id.key == r) {
                                live.insert(&t.id.key);
                            }
                        }
                    }
                }
                if live.len() == before {
                    break;
                }
            }
            live
        };
        let weight_of = |dropped: &BTreeMap<&str, Reason>| -> u128 {
            let live = live_of(dropped);
            let set: Vec<&InventoryEntry> = members
                .iter()
                .copied()
                .filter(|e| live.contains(e.id.key.as_str()))
                .collect();
            weight(&set, &sizes)
        };
        // Quotas: the least recently accessed unpinned roots go, one at a
        // time, until what lives fits (an evicted entry a root references
        // lives on and still counts).
        let mut lru: Vec<&InventoryEntry> = members
            .iter()
            .copied()
            .filter(|e| !dropped.contains_key(e.id.key.as_str()) && !e.meta.pinned)
            .collect();
        lru.sort_by(|a, b| {
            a.meta
                .accessed_at
                .cmp(&b.meta.accessed_at)
                .then(a.id.key.cmp(&b.id.key))
        });
        if let Some(max) = r.max_entries {
            for e in &lru {
                if live_of(&dropped).len() as u64 <= max {
                    break;
                }
                dropped.insert(&e.id.key, Reason::MaxEntries);
            }
        }
        let mut byte_bound = None;
        if let Some(max) = r.max_bytes {
            let target = (max as f64 * r.low_watermark).floor() as u64;
            byte_bound = Some(max as u128);
            if weight_of(&dropped) > max as u128 {
                byte_bound = Some(target as u128);
                for e in &lru {
                    if weight_of(&dropped) <= target as u128 {
                        break;
                    }
                    if !dropped.contains_key(e.id.key.as_str()) {
                        dropped.insert(&e.id.key, Reason::MaxBytes);
                    }
                }
            }
        }
        // What the quotas evicted beyond need is kept again, most recently
        // accessed first, wherever what lives still fits (the byte bound:
        // the target when maxBytes evicted, else maxBytes).
        for e in lru.iter().rev() {
            let key = e.id.key.as_str();
            if !matches!(
                dropped.get(key),
                Some(Reason::MaxEntries | Reason::MaxBytes)
            ) {
                continue;
            }
            let mut trial = dropped.clone();
            trial.remove(key);
            if r.max_entries
                .is_none_or(|m| live_of(&trial).len() as u64 <= m)
                && byte_bound.is_none_or(|b| weight_of(&trial) <= b)
            {
                dropped = trial;
            }
        }
        let live = live_of(&dropped);
        for e in &members {
            if live.contains(e.id.key.as_str()) {
                live_entries.push(e);
            } else {
                out.actions.insert((
                    ActionKind::Entry,
                    Some(ns.clone()),
                    e.id.key.clone(),
                    dropped[e.id.key.as_str()],
                    e.meta.size,
                ));
            }
        }
    }
    out.reachable = (live_entries.len() + inv.corrupt.len()) as u64;

    let live_blobs: BTreeSet<&String> = live_entries.iter().flat_map(|e| &e.meta.blobs).collect();
    if inv.corrupt.is_empty() {
        for (id, b) in &sizes {
            if live_blobs.contains(id) {
                continue;
            }
            if age(now, b.created_at) < policy.orphan_grace_ms {
                out.young_blobs += 1;
            } else {
                out.actions.insert((
                    ActionKind::Blob,
                    None,
                    id.clone(),
                    Reason::OrphanBlob,
                    b.size,
                ));
            }
        }
    }
    for t in &inv.temps {
        if age(now, t.created_at) >= policy.temp_max_age_ms {
            out.actions.insert((
                ActionKind::Temp,
                None,
                t.id.clone(),
                Reason::StaleTemp,
                t.size,
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Helpers over plans
// ---------------------------------------------------------------------------

fn items(p: &Plan) -> BTreeSet<Item> {
    p.actions
        .iter()
        .map(|a| {
            (
                a.kind,
                a.namespace.clone(),
                a.key.clone(),
                a.reason,
                a.bytes,
            )
        })
        .collect()
}

fn deleted_entries(p: &Plan) -> BTreeSet<EntryId> {
    p.actions
        .iter()
        .filter(|a| a.kind == ActionKind::Entry)
        .map(|a| EntryId::new(a.namespace.clone().unwrap_or_default(), a.key.clone()))
        .collect()
}

fn deleted(p: &Plan, kind: ActionKind) -> BTreeSet<String> {
    p.actions
        .iter()
        .filter(|a| a.kind == kind)
        .map(|a| a.key.clone())
        .collect()
}

/// The store left after every action of `p` succeeded.
fn apply(inv: &Inventory, p: &Plan) -> Inventory {
    let entries = deleted_entries(p);
    let blobs = deleted(p, ActionKind::Blob);
    let temps = deleted(p, ActionKind::Temp);
    let mut out = inv.clone();
    out.entries.retain(|e| !entries.contains(&e.id));
    out.blobs.retain(|b| !blobs.contains(&b.id));
    out.temps.retain(|t| !temps.contains(&t.id));
    out
}

/// Entries not deleted by `p`, and all they reach through refs (same namespace).
fn reachable_from_kept(inv: &Inventory, p: &Plan) -> BTreeSet<EntryId> {
    let gone = deleted_entries(p);
    let mut reached: BTreeSet<EntryId> = inv
        .entries
        .iter()
        .map(|e| e.id.clone())
        .filter(|id| !gone.contains(id))
        .collect();
    let mut todo: Vec<EntryId> = reached.iter().cloned().collect();
    while let Some(id) = todo.pop() {
        for e in inv.entries.iter().filter(|e| e.id == id) {
            for r in &e.meta.refs {
                let next = EntryId::new(id.namespace.clone(), r.clone());
                if reached.insert(next.clone()) {
                    todo.push(next);
                }
            }
        }
    }
    reached
}

fn describe(items: &BTreeSet<Item>) -> String {
    if items.is_empty() {
        return "  (none)\n".into();
    }
    items
        .iter()
        .map(|(kind, ns, key, reason, bytes)| {
            format!(
                "  {kind:?} {}/{key} {reason} {bytes} B\n",
                ns.as_deref().unwrap_or("-")
            )
        })
        .collect()
}

/// Compares `plan` with the reference model, listing the difference on failure.
/// The reference model run to its fixpoint (SPEC §2): apply what it deletes,
/// model again at the same `now`, until a round deletes no entry. Each item
/// keeps the reason of the round that deleted it; the counts are the last
/// round's.
fn reference_fixpoint(inv: &Inventory, policy: &Policy, now: Millis, mode: Mode) -> Expected {
    let mut round = reference(inv, policy, now, mode);
    let mut actions = BTreeSet::new();
    let mut current = inv.clone();
    loop {
        let entries: BTreeSet<EntryId> = round
            .actions
            .iter()
            .filter(|a| a.0 == ActionKind::Entry && !actions.contains(*a))
            .map(|a| EntryId::new(a.1.clone().unwrap_or_default(), a.2.clone()))
            .collect();
        let gone = |kind: ActionKind| -> BTreeSet<String> {
            round
                .actions
                .iter()
                .filter(|a| a.0 == kind)
                .map(|a| a.2.clone())
                .collect()
        };
        let (blobs, temps) = (gone(ActionKind::Blob), gone(ActionKind::Temp));
        actions.extend(round.actions.iter().cloned());
        if entries.is_empty() {
            round.actions = actions;
            return round;
        }
        current.entries.retain(|e| !entries.contains(&e.id));
        current.blobs.retain(|b| !blobs.contains(&b.id));
        current.temps.retain(|t| !temps.contains(&t.id));
        round = reference(&current, policy, now, mode);
    }
}

fn matches_reference(inv: &Inventory, policy: &Policy, mode: Mode) -> Result<(), TestCaseError> {
    let p = plan(inv, policy, NOW, mode);
    let want = reference_fixpoint(inv, policy, NOW, mode);
    let got = items(&p);
    let missing: BTreeSet<Item> = want.actions.difference(&got).cloned().collect();
    let extra: BTreeSet<Item> = got.difference(&want.actions).cloned().collect();
    prop_assert!(
        missing.is_empty() && extra.is_empty() && got.len() == p.actions.len(),
        "plan differs from the reference model (now = {NOW}, {mode:?})\n\
         expected but not planned:\n{}planned but not expected:\n{}\
         actions: {} (distinct {})",
        describe(&missing),
        describe(&extra),
        p.actions.len(),
        got.len(),
    );
    prop_assert_eq!(p.summary.reachable, want.reachable, "summary.reachable");
    prop_assert_eq!(
        p.summary.young_blobs,
        want.young_blobs,
        "summary.young_blobs"
    );
    prop_assert_eq!(&p.summary.zombies, &want.zombies, "summary.zombies");
    Ok(())
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// Namespaces entries are written in; the last one only ever holds corrupt entries.
const NAMESPACES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
const KEYS: usize = 10;
const BLOBS: usize = 8;
const GROUPS: [&str; 3] = ["nightly", "drafts", "unruled"];
const NOW: Millis = 100_000;

fn blob(i: usize) -> String {
    format!("{:064x}", 0xb10b_0000_u64 + i as u64)
}

/// Timestamps close to `NOW` (ties are common), a few in the future.
fn time() -> impl Strategy<Value = Millis> {
    prop_oneof![
        8 => (0..=60u64).prop_map(|k| NOW - 50 * k),
        1 => Just(NOW),
        1 => NOW - 3_000..NOW + 200,
        1 => Just(0),
    ]
}

/// Timestamps on a coarse grid, for orders where ties must be common
/// (`createdAt` for `keepLast`, `accessedAt` for LRU).
fn coarse_time() -> impl Strategy<Value = Millis> {
    prop_oneof![
        3 => (0..=5u64).prop_map(|k| NOW - 500 * k),
        2 => time(),
    ]
}

/// Durations on the same 50 ms grid as `time()`, so `now - t == limit` happens.
fn duration() -> impl Strategy<Value = Millis> {
    prop_oneof![
        4 => (0..=60u64).prop_map(|k| 50 * k),
        1 => 0..4_000u64,
    ]
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        10 => (0..12u64).prop_map(|x| 10 * x),
        3 => 0..120u64,
        1 => u64::MAX / 2..=u64::MAX,
    ]
}

fn flag(p: f64) -> impl Strategy<Value = bool> {
    proptest::bool::weighted(p)
}

fn entry() -> impl Strategy<Value = InventoryEntry> {
    // One big namespace and two small ones.
    let namespace = prop_oneof![5 => Just(0usize), 3 => Just(1), 2 => Just(2)];
    let id = (namespace, 0..KEYS);
    let expiry = prop_oneof![time(), (0..=20u64).prop_map(|k| NOW + 50 * k)];
    let times = (
        coarse_time(),
        time(),
        coarse_time(),
        proptest::option::weighted(0.3, expiry),
    );
    let flags = (flag(0.15), flag(0.15), flag(0.15));
    let links = (
        proptest::collection::vec(0..KEYS + 2, 0..3),
        proptest::collection::vec(0..BLOBS + 2, 0..3),
        proptest::option::weighted(0.6, 0..GROUPS.len()),
    );
    (id, times, size(), flags, links).prop_map(
        |((ns, k), (c, u, a, x), size, (pinned, locked, dependent), (refs, blobs, group))| {
            InventoryEntry {
                id: EntryId::new(NAMESPACES[ns], format!("k{k}")),
                meta: EntryMeta {
                    created_at: c,
                    updated_at: u,
                    accessed_at: a,
                    expires_at: x,
                    size,
                    group: group.map(|g| GROUPS[g].to_string()),
                    pinned,
                    locked,
                    dependent,
                    refs: refs.into_iter().map(|r| format!("k{r}")).collect(),
                    blobs: blobs.into_iter().map(blob).collect(),
                    ..EntryMeta::default()
                },
            }
        },
    )
}

fn low_watermark() -> impl Strategy<Value = f64> {
    prop_oneof![2 => Just(1.0), 2 => Just(0.5), 1 => Just(0.9), 1 => 0.01f64..=1.0]
}

fn rules() -> impl Strategy<Value = Rules> {
    (
        proptest::option::weighted(0.4, duration()),
        proptest::option::weighted(0.5, 0..8u64),
        proptest::option::weighted(
            0.5,
            prop_oneof![6 => (0..8u64).prop_map(|x| 100 * x), 2 => 0..600u64, 1 => Just(u64::MAX)],
        ),
        proptest::option::weighted(0.5, low_watermark()),
        proptest::collection::btree_map(0..GROUPS.len(), 0..4u64, 0..=2),
    )
        .prop_map(
            |(max_age_ms, max_entries, max_bytes, low_watermark, groups)| Rules {
                max_age_ms,
                max_entries,
                max_bytes,
                low_watermark,
                groups: groups
                    .into_iter()
                    .map(|(g, keep_last)| (GROUPS[g].to_string(), GroupRule { keep_last }))
                    .collect(),
            },
        )
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        rules(),
        proptest::collection::btree_map(0..NAMESPACES.len(), rules(), 0..3),
        duration(),
        duration(),
    )
        .prop_map(
            |(rules, overrides, orphan_grace_ms, temp_max_age_ms)| Policy {
                rules,
                namespaces: overrides
                    .into_iter()
                    .map(|(ns, r)| (NAMESPACES[ns].to_string(), r))
                    .collect(),
                orphan_grace_ms,
                temp_max_age_ms,
            },
        )
}

/// Picks `len`-bounded positions to list a second time (exact copies).
fn duplicate<T: Clone>(items: &mut Vec<T>, picks: &[usize]) {
    if items.is_empty() {
        return;
    }
    for &p in picks {
        let copy = items[p % items.len()].clone();
        let at = (p / 7) % (items.len() + 1);
        items.insert(at, copy);
    }
}

prop_compose! {
    fn inventory(max_entries: usize)(
        mut entries in proptest::collection::vec(entry(), 0..max_entries),
        entry_dups in proptest::collection::vec(any::<usize>(), 0..3),
        listed in proptest::collection::vec(
            proptest::option::weighted(0.85, (size(), time())), BLOBS),
        blob_dups in proptest::collection::vec(any::<usize>(), 0..3),
        mut temps in proptest::collection::vec((0..4usize, size(), time()), 0..4),
        temp_dups in proptest::collection::vec(any::<usize>(), 0..2),
        corrupt in proptest::option::weighted(
            0.1, proptest::collection::vec((0..NAMESPACES.len(), 0..3usize), 1..3)),
        corrupt_blobs in proptest::collection::vec(0..3usize, 0..2),
        registry in proptest::option::weighted(
            0.4, proptest::collection::vec(0..NAMESPACES.len(), 1..6)),
    ) -> Inventory {
        // A store holds one record per key; only the listing may repeat it.
        let mut ids = BTreeSet::new();
        entries.retain(|e| ids.insert(e.id.clone()));
        duplicate(&mut entries, &entry_dups);
        let mut blobs: Vec<BlobInfo> = listed
            .into_iter()
            .enumerate()
            .filter_map(|(i, b)| b.map(|(size, created_at)| BlobInfo { id: blob(i), size, created_at }))
            .collect();
        duplicate(&mut blobs, &blob_dups);
        // One record per temp id; a listing may still repeat it.
        temps.sort_by_key(|t| t.0);
        temps.dedup_by_key(|t| t.0);
        let mut temps: Vec<TempInfo> = temps
            .into_iter()
            .map(|(i, size, created_at)| TempInfo { id: format!("tmp{i}"), size, created_at })
            .collect();
        duplicate(&mut temps, &temp_dups);
        Inventory {
            entries,
            // Corrupt keys never collide with decodable ones: a record either decodes or not.
            corrupt: corrupt
                .unwrap_or_default()
                .into_iter()
                .map(|(ns, k)| EntryId::new(NAMESPACES[ns], format!("bad{k}")))
                .collect(),
            blobs,
            corrupt_blobs: corrupt_blobs.into_iter().map(|i| blob(BLOBS + i)).collect(),
            temps,
            corrupt_temps: Vec::new(),
            namespaces: registry
                .map(|r| r.into_iter().map(|ns| NAMESPACES[ns].to_string()).collect()),
        }
    }
}

/// Policies whose quotas and group rules always apply, on the 100-byte grid.
fn quota_policy() -> impl Strategy<Value = Policy> {
    (
        proptest::option::weighted(0.5, 0..8u64),
        (0..8u64).prop_map(|x| 100 * x),
        prop_oneof![Just(None), Just(Some(1.0)), Just(Some(0.5))],
        proptest::collection::btree_map(0..2usize, 0..3u64, 1..=2),
    )
        .prop_map(|(max_entries, max_bytes, low_watermark, groups)| Policy {
            rules: Rules {
                max_entries,
                max_bytes: Some(max_bytes),
                low_watermark,
                groups: groups
                    .into_iter()
                    .map(|(g, keep_last)| (GROUPS[g].to_string(), GroupRule { keep_last }))
                    .collect(),
                ..Rules::default()
            },
            ..Policy::default()
        })
}

/// Every entry moved into one namespace (first copy of each key kept), none
/// expired, no corrupt entries, no registry: only the quotas and groups decide.
fn one_busy_namespace(mut inv: Inventory) -> Inventory {
    let mut ids = BTreeSet::new();
    inv.entries.retain_mut(|e| {
        e.id.namespace = NAMESPACES[0].to_string();
        e.meta.expires_at = None;
        ids.insert(e.id.clone())
    });
    inv.corrupt.clear();
    inv.namespaces = None;
    inv
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![1 => Just(Mode::Light), 4 => Just(Mode::Full)]
}

/// A store with no refs between entries: then the entries that survive a full
/// plan are exactly its roots (nothing is kept by being referenced).
fn without_entry_refs(mut inv: Inventory) -> Inventory {
    for e in &mut inv.entries {
        e.meta.refs.clear();
    }
    inv
}

/// Fisher–Yates with a SplitMix64 stream, so a shuffle is reproducible from its seed.
fn shuffle<T>(items: &mut [T], seed: &mut u64) {
    for i in (1..items.len()).rev() {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        items.swap(i, (z % (i as u64 + 1)) as usize);
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    // The default case count; regressions go beside this file.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn plan_equals_the_reference_model(
        inv in inventory(40), policy in policy(), mode in mode(),
    ) {
        matches_reference(&inv, &policy, mode)?;
    }

    // The same comparison on stores where the quotas and `keepLast` bite hard
    // and exact boundaries (bytes landing on the target, ties) are common.
    #[test]
    fn quota_and_retention_rules_equal_the_reference_model(
        inv in inventory(40).prop_map(one_busy_namespace), policy in quota_policy(),
    ) {
        matches_reference(&inv, &policy, Mode::Full)?;
    }

    #[test]
    fn pinned_entries_survive_every_policy(
        inv in inventory(40), policy in policy(), mode in mode(),
    ) {
        let p = plan(&inv, &policy, NOW, mode);
        let gone = deleted_entries(&p);
        for e in inv.entries.iter().filter(|e| e.meta.pinned) {
            prop_assert!(!gone.contains(&e.id), "pinned entry {:?} planned for deletion", e.id);
        }
    }

    #[test]
    fn nothing_reachable_from_a_kept_entry_is_planned(
        inv in inventory(40), policy in policy(), mode in mode(),
    ) {
        let p = plan(&inv, &policy, NOW, mode);
        let gone = deleted_entries(&p);
        let reached = reachable_from_kept(&inv, &p);
        let both: Vec<&EntryId> = gone.intersection(&reached).collect();
        prop_assert!(both.is_empty(), "planned yet reachable from a kept entry: {both:?}");
    }

    #[test]
    fn no_blob_referenced_by_a_live_entry_is_planned(
        inv in inventory(40), policy in policy(), mode in mode(),
    ) {
        let p = plan(&inv, &policy, NOW, mode);
        let gone = deleted_entries(&p);
        let blobs = deleted(&p, ActionKind::Blob);
        for e in inv.entries.iter().filter(|e| !gone.contains(&e.id)) {
            for b in &e.meta.blobs {
                prop_assert!(
                    !blobs.contains(b),
                    "blob {b} planned although kept entry {:?} references it", e.id
                );
            }
        }
    }

    #[test]
    fn grace_periods_hold(
        inv in inventory(40), policy in policy(), mode in mode(),
    ) {
        let p = plan(&inv, &policy, NOW, mode);
        for a in &p.actions {
            match a.kind {
                ActionKind::Blob => {
                    for b in inv.blobs.iter().filter(|b| b.id == a.key) {
                        prop_assert!(
                            NOW.saturating_sub(b.created_at) >= policy.orphan_grace_ms,
                            "blob {} created at {} planned within its grace of {} ms",
                            b.id, b.created_at, policy.orphan_grace_ms
                        );
                    }
                }
                ActionKind::Temp => {
                    for t in inv.temps.iter().filter(|t| t.id == a.key) {
                        prop_assert!(
                            NOW.saturating_sub(t.created_at) >= policy.temp_max_age_ms,
                            "temp {} created at {} planned before {} ms",
                            t.id, t.created_at, policy.temp_max_age_ms
                        );
                    }
                }
                ActionKind::Entry => {}
            }
        }
    }

    #[test]
    fn corrupt_data_is_never_inferred_to_be_garbage(
        inv in inventory(40), policy in policy(), mode in mode(),
    ) {
        let p = plan(&inv, &policy, NOW, mode);
        let frozen: BTreeSet<&str> = inv.corrupt.iter().map(|c| c.namespace.as_str()).collect();
        for a in &p.actions {
            prop_assert!(a.reason != Reason::Corrupt, "a corrupt item is planned: {a:?}");
            prop_assert!(
                !inv.corrupt_blobs.contains(&a.key),
                "undecodable blob record {} planned", a.key
            );
            match a.kind {
                ActionKind::Blob => prop_assert!(
                    inv.corrupt.is_empty(),
                    "blob {} planned although undecodable entries {:?} may reference it",
                    a.key, inv.corrupt
                ),
                ActionKind::Entry => {
                    let ns = a.namespace.as_deref().unwrap_or_default();
                    prop_assert!(
                        !frozen.contains(ns),
                        "entry {ns}/{} planned in a namespace holding undecodable entries", a.key
                    );
                }
                ActionKind::Temp => {}
            }
        }
        let mut reported = inv.corrupt.clone();
        reported.sort();
        prop_assert_eq!(&p.summary.corrupt, &reported, "undecodable entries are reported");
    }

    #[test]
    fn zombie_namespaces_are_reported_and_never_swept(
        inv in inventory(40), policy in policy(), mode in mode(),
    ) {
        let p = plan(&inv, &policy, NOW, mode);
        let zombies: BTreeSet<String> = match &inv.namespaces {
            None => BTreeSet::new(),
            Some(reg) => inv
                .entries
                .iter()
                .map(|e| &e.id.namespace)
                .chain(inv.corrupt.iter().map(|c| &c.namespace))
                .filter(|ns| !reg.contains(ns))
                .cloned()
                .collect(),
        };
        let reported: BTreeSet<String> = p.summary.zombies.iter().cloned().collect();
        prop_assert_eq!(&reported, &zombies);
        for a in p.actions.iter().filter(|a| a.kind == ActionKind::Entry) {
            let ns = a.namespace.clone().unwrap_or_default();
            prop_assert!(!zombies.contains(&ns), "entry {ns}/{} of a zombie namespace planned", a.key);
        }
    }

    #[test]
    fn light_mode_never_deletes_an_entry(
        inv in inventory(40), policy in policy(),
    ) {
        let p = plan(&inv, &policy, NOW, Mode::Light);
        prop_assert!(deleted_entries(&p).is_empty(), "light plan deletes entries: {:?}", p.actions);
    }

    // Replanning the store a full plan leaves, at the same `now`: what is
    // left is meant to be stable. Quotas count what lives (an entry evicted
    // but kept alive by a reference counts), so what is left fits them and
    // the next plan evicts nothing; the first plan's roots stay roots, so all
    // that lived lives. Blobs and temps: same live set, same `now`, so no new
    // orphans or stale temps.
    //
    #[test]
    fn replanning_the_applied_plan_finds_nothing_more(
        inv in inventory(40), policy in policy(),
    ) {
        let first = plan(&inv, &policy, NOW, Mode::Full);
        let after = apply(&inv, &first);
        let second = plan(&after, &policy, NOW, Mode::Full);
        prop_assert!(
            second.actions.is_empty(),
            "second full plan at the same now still deletes:\n{}first plan:\n{}",
            describe(&items(&second)),
            describe(&items(&first)),
        );
    }

    // Refs are cleared so that survivors are exactly the roots (SPEC: a
    // dropped entry lives on if referenced, and may then hold more bytes).
    #[test]
    fn max_bytes_leaves_roots_within_the_low_watermark(
        inv in inventory(40).prop_map(without_entry_refs), policy in policy(),
    ) {
        let p = plan(&inv, &policy, NOW, Mode::Full);
        let gone = deleted_entries(&p);
        let sizes = blob_sizes(&inv);
        let entries = distinct_entries(&inv);
        let frozen: BTreeSet<&str> = inv.corrupt.iter().map(|c| c.namespace.as_str()).collect();
        for ns in NAMESPACES {
            let r = rules_in(&policy, ns);
            let Some(max) = r.max_bytes else { continue };
            if frozen.contains(ns) || p.summary.zombies.iter().any(|z| z == ns) {
                continue;
            }
            let target = (max as f64 * r.low_watermark).floor() as u128;
            let roots: Vec<&InventoryEntry> = entries
                .iter()
                .copied()
                .filter(|e| e.id.namespace == ns && !gone.contains(&e.id))
                .collect();
            let bytes = weight(&roots, &sizes);
            let only_pinned = roots.iter().all(|e| e.meta.pinned);
            let evicted = p.actions.iter().any(|a| {
                a.reason == Reason::MaxBytes && a.namespace.as_deref() == Some(ns)
            });
            prop_assert!(
                bytes <= max as u128 || only_pinned,
                "{ns}: roots hold {bytes} B > maxBytes {max} with unpinned roots left"
            );
            prop_assert!(
                !evicted || bytes <= target || only_pinned,
                "{ns}: after eviction roots hold {bytes} B > target {target} with unpinned roots left"
            );
        }
    }

    #[test]
    fn plan_is_deterministic_under_shuffled_listings(
        inv in inventory(40), policy in policy(), mode in mode(), mut seed in any::<u64>(),
    ) {
        let p = plan(&inv, &policy, NOW, mode);
        let mut shuffled = inv.clone();
        shuffle(&mut shuffled.entries, &mut seed);
        shuffle(&mut shuffled.blobs, &mut seed);
        shuffle(&mut shuffled.temps, &mut seed);
        shuffle(&mut shuffled.corrupt, &mut seed);
        shuffle(&mut shuffled.corrupt_blobs, &mut seed);
        if let Some(ns) = &mut shuffled.namespaces {
            shuffle(ns, &mut seed);
        }
        let q = plan(&shuffled, &policy, NOW, mode);
        // Where each entry stood in the listing is a hint for the executor:
        // it moves with the listing, and is all that may.
        let unlisted = |mut p: Plan| {
            p.actions.iter_mut().for_each(|a| a.listed = None);
            p
        };
        let (p, q) = (unlisted(p), unlisted(q));
        prop_assert!(
            p == q,
            "shuffling the listing changed the plan\nbefore:\n{}after:\n{}",
            describe(&items(&p)),
            describe(&items(&q)),
        );
    }
}

// ---------------------------------------------------------------------------
// Regressions found by the properties above, pinned as plain examples
// ---------------------------------------------------------------------------

fn listed_entry(key: &str, meta: EntryMeta) -> InventoryEntry {
    InventoryEntry {
        id: EntryId::new("alpha", key),
        meta,
    }
}

/// The blob index mapped an id to its last listing while liveness was read
/// at the first one, so a live blob listed twice was planned as an orphan.
#[test]
fn a_live_blob_listed_twice_is_not_planned() {
    let b = BlobInfo {
        id: blob(0),
        size: 1,
        created_at: 0,
    };
    let inv = Inventory {
        entries: vec![listed_entry(
            "doc",
            EntryMeta {
                blobs: vec![blob(0)],
                ..EntryMeta::default()
            },
        )],
        blobs: vec![b.clone(), b],
        ..Inventory::default()
    };
    for mode in [Mode::Light, Mode::Full] {
        assert!(plan(&inv, &Policy::default(), NOW, mode).actions.is_empty());
    }
}

/// Byte sums saturated (then underflowed on eviction) and the report's
/// tallies overflowed: sizes are stored metadata, any u64 may appear.
#[test]
fn huge_sizes_neither_overflow_nor_skew_max_bytes() {
    let big = |key: &str, accessed_at| {
        listed_entry(
            key,
            EntryMeta {
                size: u64::MAX / 2 + 1,
                accessed_at,
                ..EntryMeta::default()
            },
        )
    };
    let inv = Inventory {
        entries: vec![big("a", 1), big("b", 2), big("c", 3)],
        ..Inventory::default()
    };
    let mut policy = Policy::default();
    policy.rules.max_bytes = Some(u64::MAX);
    policy.rules.low_watermark = Some(1.0);
    let p = plan(&inv, &policy, NOW, Mode::Full);
    // 3 × 2^63 bytes; two must go to get under 2^64 − 1.
    let gone: Vec<&str> = p.actions.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(gone, ["a", "b"]);
    assert_eq!(p.summary.deleted[&Reason::MaxBytes].bytes, u64::MAX);
}

/// Where rules interact (SPEC §2, fixpoint): the draft retention dropped,
/// kept alive by a reference, counts towards `maxEntries`, and goes with the
/// entry that kept it alive when the quota evicts that one. The second plan
/// deletes nothing.
#[test]
fn a_quota_eviction_that_promotes_a_rescued_entry_is_planned_at_once() {
    let draft = |key: &str, accessed_at, refs: &[&str]| {
        listed_entry(
            key,
            EntryMeta {
                accessed_at,
                group: Some("drafts".into()),
                refs: refs.iter().map(|r| r.to_string()).collect(),
                ..EntryMeta::default()
            },
        )
    };
    let inv = Inventory {
        entries: vec![
            draft("k0", 30, &["k2"]),
            draft("k1", 10, &[]),
            draft("k2", 30, &[]),
            listed_entry(
                "k3",
                EntryMeta {
                    accessed_at: 20,
                    refs: vec!["k0".into()],
                    ..EntryMeta::default()
                },
            ),
            listed_entry(
                "k4",
                EntryMeta {
                    accessed_at: 30,
                    ..EntryMeta::default()
                },
            ),
        ],
        ..Inventory::default()
    };
    let mut policy = Policy::default();
    policy
        .rules
        .groups
        .insert("drafts".into(), GroupRule { keep_last: 2 });
    policy.rules.max_entries = Some(2);
    let gone = |p: &Plan| -> Vec<(String, Reason)> {
        p.actions
            .iter()
            .map(|a| (a.key.clone(), a.reason))
            .collect()
    };
    // keepLast keeps k0, k1 (same createdAt: by key) and drops k2, which k0
    // keeps alive; five entries live. maxEntries evicts the least recently
    // accessed until what lives fits: k1 and k3 leave k0, k2 and k4 living,
    // three, so k0 goes too, and with it k2, which lived only through k0.
    // That leaves one: k1, evicted on the way, fits again and stays.
    let first = plan(&inv, &policy, NOW, Mode::Full);
    assert_eq!(
        gone(&first),
        [
            ("k0".to_string(), Reason::MaxEntries),
            ("k2".to_string(), Reason::Retention),
            ("k3".to_string(), Reason::MaxEntries)
        ]
    );
    let second = plan(&apply(&inv, &first), &policy, NOW, Mode::Full);
    assert_eq!(gone(&second), []);
}

/// A quota evicts no more than it needs (SPEC §2): evicting the entry that
/// kept an older one alive, a prefix of the order can leave room it need
/// not. What fits again is kept, most recently accessed first, with what it
/// references (found by a tester: maxEntries 2 over a, b, c → a, d left d
/// alone).
#[test]
fn quotas_give_back_what_the_eviction_order_took_beyond_need() {
    let entry = |key: &str, accessed_at, refs: &[&str]| {
        listed_entry(
            key,
            EntryMeta {
                accessed_at,
                size: 90,
                refs: refs.iter().map(|r| r.to_string()).collect(),
                ..EntryMeta::default()
            },
        )
    };
    let inv = Inventory {
        entries: vec![
            entry("a", 1, &[]),
            entry("b", 2, &[]),
            entry("c", 3, &["a"]),
            entry("d", 4, &[]),
        ],
        ..Inventory::default()
    };
    let mut by_count = Policy::default();
    by_count.rules.max_entries = Some(2);
    let mut by_bytes = Policy::default();
    by_bytes.rules.max_bytes = Some(200);
    by_bytes.rules.low_watermark = Some(1.0);
    for (policy, reason) in [(by_count, Reason::MaxEntries), (by_bytes, Reason::MaxBytes)] {
        let first = plan(&inv, &policy, NOW, Mode::Full);
        let gone: Vec<(&str, Reason)> = first
            .actions
            .iter()
            .map(|a| (a.key.as_str(), a.reason))
            .collect();
        // c goes, and a with it (a is older than b): b and d stay, two.
        assert_eq!(gone, [("a", reason), ("c", reason)]);
        let second = plan(&apply(&inv, &first), &policy, NOW, Mode::Full);
        assert!(second.actions.is_empty(), "{second:?}");
    }
}

/// A quota counts what lives (SPEC §2): an entry it evicts that a root still
/// references lives on and still counts, so eviction goes on down the order
/// until what lives fits. Counting roots alone, the least recently accessed
/// attachments were "evicted", lived on through their documents, and the
/// store stayed over its quota for good.
#[test]
fn quotas_count_what_lives_so_referenced_entries_do_not_stop_eviction() {
    let entry = |key: &str, accessed_at, refs: &[&str], size| {
        listed_entry(
            key,
            EntryMeta {
                accessed_at,
                size,
                refs: refs.iter().map(|r| r.to_string()).collect(),
                ..EntryMeta::default()
            },
        )
    };
    // Attachments first, each read as its document is.
    let mut entries = Vec::new();
    for i in 1..=4 {
        entries.push(entry(&format!("att{i}"), i, &[], 10));
        entries.push(entry(&format!("doc{i}"), i, &[&format!("att{i}")], 10));
    }
    let inv = Inventory {
        entries,
        ..Inventory::default()
    };
    let gone = |p: &Plan| -> Vec<(String, Reason)> {
        p.actions
            .iter()
            .map(|a| (a.key.clone(), a.reason))
            .collect()
    };
    let mut by_count = Policy::default();
    by_count.rules.max_entries = Some(4);
    let mut by_bytes = Policy::default();
    by_bytes.rules.max_bytes = Some(70);
    by_bytes.rules.low_watermark = Some(0.6);
    for (policy, reason) in [(by_count, Reason::MaxEntries), (by_bytes, Reason::MaxBytes)] {
        let first = plan(&inv, &policy, NOW, Mode::Full);
        let want: Vec<(String, Reason)> = ["att1", "att2", "doc1", "doc2"]
            .iter()
            .map(|k| (k.to_string(), reason))
            .collect();
        assert_eq!(gone(&first), want);
        let second = plan(&apply(&inv, &first), &policy, NOW, Mode::Full);
        assert_eq!(gone(&second), []);
    }

    // An expired entry a root references counts too: y (read first) goes,
    // and x with it.
    let inv = Inventory {
        entries: vec![
            listed_entry(
                "x",
                EntryMeta {
                    accessed_at: 1,
                    expires_at: Some(NOW - 1),
                    ..EntryMeta::default()
                },
            ),
            entry("y", 2, &["x"], 0),
            entry("z", 3, &[], 0),
        ],
        ..Inventory::default()
    };
    let mut policy = Policy::default();
    policy.rules.max_entries = Some(2);
    let first = plan(&inv, &policy, NOW, Mode::Full);
    assert_eq!(
        gone(&first),
        [
            ("x".to_string(), Reason::Expired),
            ("y".to_string(), Reason::MaxEntries)
        ]
    );
}

/// A long reference chain under `maxEntries` (each entry references the one
/// before it, the oldest accessed least recently): keeping the newest
/// needs the whole chain, so eviction takes all of it, and the entries given
/// back are the newest whose chain fits. Each of the newest entries' walk
/// passed the room left, and together they spent the given-back budget
/// before the first that fits: the whole namespace was deleted.
#[test]
fn quotas_over_a_long_chain_give_back_what_fits() {
    for (len, max) in [(1_000usize, 500u64), (20_000, 10_000), (20_000, 3)] {
        let key = |i: usize| format!("e{i:06}");
        let entries = (0..len)
            .map(|i| {
                listed_entry(
                    &key(i),
                    EntryMeta {
                        accessed_at: 1 + i as u64,
                        size: 10,
                        refs: if i == 0 { vec![] } else { vec![key(i - 1)] },
                        ..EntryMeta::default()
                    },
                )
            })
            .collect();
        let inv = Inventory {
            entries,
            ..Inventory::default()
        };
        let mut policy = Policy::default();
        policy.rules.max_entries = Some(max);
        let first = plan(&inv, &policy, NOW, Mode::Full);
        let gone: BTreeSet<String> = first.actions.iter().map(|a| a.key.clone()).collect();
        let expected: BTreeSet<String> = (max as usize..len).map(key).collect();
        assert_eq!(
            gone.len(),
            expected.len(),
            "chain of {len}, maxEntries {max}"
        );
        assert_eq!(gone, expected, "chain of {len}, maxEntries {max}");
        let second = plan(&apply(&inv, &first), &policy, NOW, Mode::Full);
        assert!(second.actions.is_empty(), "{second:?}");
    }
}
