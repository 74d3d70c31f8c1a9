//! The planner: inventory + policy + `now` → plan. Pure: no I/O, no clock.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::mark::mark_reachable;
use crate::model::{EntryId, Inventory, InventoryEntry, Millis};
use crate::policy::{Policy, Rules};

/// Why an item is in a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    Expired,
    MaxAge,
    Retention,
    MaxEntries,
    MaxBytes,
    Unreachable,
    OrphanBlob,
    StaleTemp,
    /// Report only: never deleted.
    Corrupt,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Expired,
        Reason::MaxAge,
        Reason::Retention,
        Reason::MaxEntries,
        Reason::MaxBytes,
        Reason::Unreachable,
        Reason::OrphanBlob,
        Reason::StaleTemp,
        Reason::Corrupt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::MaxAge => "maxAge",
            Reason::Retention => "retention",
            Reason::MaxEntries => "maxEntries",
            Reason::MaxBytes => "maxBytes",
            Reason::Unreachable => "unreachable",
            Reason::OrphanBlob => "orphanBlob",
            Reason::StaleTemp => "staleTemp",
            Reason::Corrupt => "corrupt",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a run looks at.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Every entry counts as live; only unreferenced blobs and stale temps go.
    Light,
    /// Every policy, then unreachable entries, then orphan blobs and temps.
    #[default]
    Full,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Light => "light",
            Mode::Full => "full",
        }
    }
}

/// What an action deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ActionKind {
    Entry,
    Blob,
    Temp,
}

/// One deletion, with the reason for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub kind: ActionKind,
    /// The entry's namespace; `None` for blobs and temps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The entry key, blob id or temp id.
    pub key: String,
    pub reason: Reason,
    pub bytes: u64,
    /// What the item was when planned (an entry's `writeId`, a blob's
    /// `createdAt`): the executor deletes it only if it is unchanged.
    #[serde(skip)]
    pub version: Option<u64>,
}

/// Count and bytes under one reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: u64,
    pub bytes: u64,
}

/// What a plan found, besides its actions.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub mode: Mode,
    pub now: Millis,
    /// Entries listed (decodable and corrupt).
    pub scanned: u64,
    /// Entries that stay: roots and what they reach.
    pub reachable: u64,
    pub blobs: u64,
    pub temps: u64,
    /// Unreferenced blobs kept because they are younger than `orphanGraceMs`.
    pub young_blobs: u64,
    pub deleted: BTreeMap<Reason, Tally>,
    /// Entries whose metadata could not be decoded: kept and reported.
    pub corrupt: Vec<EntryId>,
    pub corrupt_blobs: Vec<String>,
    /// Namespaces holding entries but not registered: reported, never deleted by a run.
    pub zombies: Vec<String>,
}

/// A plan: what to delete, in execution order (entries, then blobs, then temps).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub summary: Summary,
}

/// Plans a cleanup of `inv` under `policy` at time `now`.
pub fn plan(inv: &Inventory, policy: &Policy, now: Millis, mode: Mode) -> Plan {
    let mut summary = Summary {
        mode,
        now,
        scanned: (inv.entries.len() + inv.corrupt.len()) as u64,
        blobs: inv.blobs.len() as u64,
        temps: inv.temps.len() as u64,
        ..Summary::default()
    };

    // A listing may return a blob twice: every id maps to its first copy, and
    // liveness is marked and read there only.
    let mut blob_index: HashMap<&str, usize> = HashMap::with_capacity(inv.blobs.len());
    for (i, b) in inv.blobs.iter().enumerate() {
        blob_index.entry(b.id.as_str()).or_insert(i);
    }
    let mut blob_live = vec![false; inv.blobs.len()];
    let mut entry_actions: Vec<Action> = Vec::new();

    // Namespaces whose entries are all kept: they hold undecodable entries
    // (whose references are unknown) or they are zombies (deleted explicitly).
    let corrupt_ns: BTreeSet<&str> = inv.corrupt.iter().map(|id| id.namespace.as_str()).collect();
    let mut by_ns: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in inv.entries.iter().enumerate() {
        by_ns.entry(e.id.namespace.as_str()).or_default().push(i);
    }
    if let Some(registered) = &inv.namespaces {
        let registered: BTreeSet<&str> = registered.iter().map(String::as_str).collect();
        let present: BTreeSet<&str> = by_ns
            .keys()
            .copied()
            .chain(corrupt_ns.iter().copied())
            .collect();
        summary.zombies = present
            .into_iter()
            .filter(|ns| !registered.contains(ns))
            .map(String::from)
            .collect();
    }
    let mut namespaces: Vec<&str> = by_ns.keys().copied().collect();
    namespaces.sort_unstable();

    for ns in namespaces {
        let members = by_ns.get_mut(ns).expect("listed above");
        // A listing may return a key twice (Workers KV does): plan over the first copy.
        let mut seen: hashbrown::HashSet<&str> = hashbrown::HashSet::with_capacity(members.len());
        members.retain(|&i| seen.insert(inv.entries[i].id.key.as_str()));
        let members = &*members;
        let frozen = mode == Mode::Light
            || corrupt_ns.contains(ns)
            || summary
                .zombies
                .binary_search_by(|z| z.as_str().cmp(ns))
                .is_ok();
        let live = if frozen {
            vec![true; members.len()]
        } else {
            let entries: Vec<&InventoryEntry> = members.iter().map(|&i| &inv.entries[i]).collect();
            let rules = policy.rules_for(ns);
            let (live, dropped) = plan_namespace(
                &entries,
                &rules,
                &inv.blobs,
                &blob_index,
                now,
                policy.orphan_grace_ms,
            );
            for (j, e) in entries.iter().enumerate() {
                if !live[j] {
                    // Every entry that is not live was dropped by a rule.
                    let reason = dropped[j].unwrap_or(Reason::Unreachable);
                    entry_actions.push(Action {
                        kind: ActionKind::Entry,
                        namespace: Some(e.id.namespace.clone()),
                        key: e.id.key.clone(),
                        reason,
                        bytes: e.meta.size,
                        version: Some(e.meta.write_id),
                    });
                }
            }
            live
        };
        for (j, &i) in members.iter().enumerate() {
            if live[j] {
                summary.reachable += 1;
                for b in &inv.entries[i].meta.blobs {
                    if let Some(&bi) = blob_index.get(b.as_str()) {
                        blob_live[bi] = true;
                    }
                }
            }
        }
    }
    summary.reachable += inv.corrupt.len() as u64;
    entry_actions.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));

    // Undecodable entries may reference any blob: then no blob is garbage.
    let blobs_unknowable = !inv.corrupt.is_empty();
    let mut blob_actions = Vec::new();
    for (i, b) in inv.blobs.iter().enumerate() {
        if blob_live[i] || blobs_unknowable || blob_index[b.id.as_str()] != i {
            continue;
        }
        if now.saturating_sub(b.created_at) < policy.orphan_grace_ms {
            summary.young_blobs += 1;
            continue;
        }
        blob_actions.push(Action {
            kind: ActionKind::Blob,
            namespace: None,
            key: b.id.clone(),
            reason: Reason::OrphanBlob,
            bytes: b.size,
            version: Some(b.created_at),
        });
    }
    blob_actions.sort_by(|a, b| a.key.cmp(&b.key));

    let mut temp_actions: Vec<Action> = inv
        .temps
        .iter()
        .filter(|t| now.saturating_sub(t.created_at) >= policy.temp_max_age_ms)
        .map(|t| Action {
            kind: ActionKind::Temp,
            namespace: None,
            key: t.id.clone(),
            reason: Reason::StaleTemp,
            bytes: t.size,
            version: None,
        })
        .collect();
    temp_actions.sort_by(|a, b| a.key.cmp(&b.key));
    temp_actions.dedup_by(|a, b| a.key == b.key);

    let mut actions = entry_actions;
    actions.extend(blob_actions);
    actions.extend(temp_actions);
    for a in &actions {
        let t = summary.deleted.entry(a.reason).or_default();
        t.count += 1;
        // Sizes come from stored metadata: a huge one must not overflow the report.
        t.bytes = t.bytes.saturating_add(a.bytes);
    }
    let mut corrupt = inv.corrupt.clone();
    corrupt.sort();
    if !corrupt.is_empty() {
        summary.deleted.entry(Reason::Corrupt).or_default();
    }
    summary.corrupt = corrupt;
    summary.corrupt_blobs = inv.corrupt_blobs.clone();
    summary.corrupt_blobs.sort();
    Plan { actions, summary }
}

/// Applies the rules to one namespace. Returns which entries are live and the
/// first rule that dropped each entry.
fn plan_namespace(
    entries: &[&InventoryEntry],
    rules: &Rules,
    blobs: &[crate::model::BlobInfo],
    blob_index: &HashMap<&str, usize>,
    now: Millis,
    orphan_grace_ms: Millis,
) -> (Vec<bool>, Vec<Option<Reason>>) {
    let n = entries.len();
    let mut dropped: Vec<Option<Reason>> = vec![None; n];
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (j, e) in entries.iter().enumerate() {
        index.insert(e.id.key.as_str(), j);
    }

    // Rules 1–2: expiry and age. Dependent entries are no roots of their own.
    for (j, e) in entries.iter().enumerate() {
        let m = &e.meta;
        if m.pinned {
            continue;
        }
        if m.expires_at.is_some_and(|t| t <= now) {
            dropped[j] = Some(Reason::Expired);
        } else if rules
            .max_age_ms
            .is_some_and(|max| now.saturating_sub(m.updated_at) > max)
        {
            dropped[j] = Some(Reason::MaxAge);
        } else if m.dependent && now.saturating_sub(m.updated_at) >= orphan_grace_ms {
            // Young dependents are kept like young blobs: their referrer may be on its way.
            dropped[j] = Some(Reason::Unreachable);
        }
    }

    // Rule 3: keep the newest `keepLast` of each group (unpinned, unlocked, not dropped).
    if !rules.groups.is_empty() {
        let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
        for (j, e) in entries.iter().enumerate() {
            let m = &e.meta;
            if let Some(g) = m.group.as_deref() {
                if rules.groups.contains_key(g) && !m.pinned && !m.locked && dropped[j].is_none() {
                    members.entry(g).or_default().push(j);
                }
            }
        }
        for (g, mut js) in members {
            let keep = rules.groups[g].keep_last;
            js.sort_by(|&a, &b| {
                let (ea, eb) = (entries[a], entries[b]);
                eb.meta
                    .created_at
                    .cmp(&ea.meta.created_at)
                    .then_with(|| ea.id.key.cmp(&eb.id.key))
            });
            for &j in js.iter().skip(usize::try_from(keep).unwrap_or(usize::MAX)) {
                dropped[j] = Some(Reason::Retention);
            }
        }
    }

    // Rule 4: maxEntries, then maxBytes, over what is left, least recently accessed first.
    if rules.max_entries.is_some() || rules.max_bytes.is_some() {
        let mut left: Vec<usize> = (0..n).filter(|&j| dropped[j].is_none()).collect();
        left.sort_by(|&a, &b| {
            let (ea, eb) = (entries[a], entries[b]);
            ea.meta
                .accessed_at
                .cmp(&eb.meta.accessed_at)
                .then_with(|| ea.id.key.cmp(&eb.id.key))
        });
        let mut count = left.len() as u64;
        if let Some(max) = rules.max_entries {
            for &j in &left {
                if count <= max {
                    break;
                }
                if !entries[j].meta.pinned {
                    dropped[j] = Some(Reason::MaxEntries);
                    count -= 1;
                }
            }
        }
        if let (Some(max), Some(target)) = (rules.max_bytes, rules.byte_target()) {
            // Exact: a sum of u64 sizes fits in u128, so eviction never
            // compares or subtracts against a saturated total.
            let mut refcount: HashMap<usize, u32> = HashMap::new();
            let mut bytes: u128 = 0;
            for &j in left.iter().filter(|&&j| dropped[j].is_none()) {
                let m = &entries[j].meta;
                bytes += u128::from(m.size);
                for bi in distinct_blobs(&m.blobs, blob_index) {
                    let c = refcount.entry(bi).or_insert(0);
                    if *c == 0 {
                        bytes += u128::from(blobs[bi].size);
                    }
                    *c += 1;
                }
            }
            if bytes > u128::from(max) {
                for &j in &left {
                    if bytes <= u128::from(target) {
                        break;
                    }
                    let m = &entries[j].meta;
                    if m.pinned || dropped[j].is_some() {
                        continue;
                    }
                    dropped[j] = Some(Reason::MaxBytes);
                    bytes -= u128::from(m.size);
                    for bi in distinct_blobs(&m.blobs, blob_index) {
                        let c = refcount.get_mut(&bi).expect("counted above");
                        *c -= 1;
                        if *c == 0 {
                            bytes -= u128::from(blobs[bi].size);
                        }
                    }
                }
            }
        }
    }

    // Liveness: roots are the entries no rule dropped (pinned ones always),
    // plus everything they reference within the namespace.
    let roots = (0..n).filter(|&j| dropped[j].is_none());
    let live = mark_reachable(n, roots, |j, out| {
        for r in &entries[j].meta.refs {
            if let Some(&k) = index.get(r.as_str()) {
                out.push(k);
            }
        }
    });
    (live, dropped)
}

/// The inventory indices of the distinct known blobs in `ids`.
fn distinct_blobs(ids: &[String], blob_index: &HashMap<&str, usize>) -> Vec<usize> {
    let mut out: Vec<usize> = ids
        .iter()
        .filter_map(|id| blob_index.get(id.as_str()).copied())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BlobInfo, EntryMeta, TempInfo};
    use alloc::string::ToString;

    fn entry(ns: &str, key: &str, meta: EntryMeta) -> InventoryEntry {
        InventoryEntry {
            id: EntryId::new(ns, key),
            meta,
        }
    }

    fn keys(p: &Plan) -> Vec<(String, Reason)> {
        p.actions
            .iter()
            .map(|a| (a.key.clone(), a.reason))
            .collect()
    }

    #[test]
    fn expired_entries_are_planned_and_live_ones_are_not() {
        let inv = Inventory {
            entries: vec![
                entry(
                    "a",
                    "old",
                    EntryMeta {
                        expires_at: Some(99),
                        ..Default::default()
                    },
                ),
                entry(
                    "a",
                    "new",
                    EntryMeta {
                        expires_at: Some(101),
                        ..Default::default()
                    },
                ),
                entry("a", "forever", EntryMeta::default()),
            ],
            ..Default::default()
        };
        let p = plan(&inv, &Policy::default(), 100, Mode::Full);
        assert_eq!(keys(&p), vec![("old".to_string(), Reason::Expired)]);
        assert_eq!(p.summary.reachable, 2);
    }

    #[test]
    fn entry_expiring_exactly_now_is_expired() {
        let inv = Inventory {
            entries: vec![entry(
                "a",
                "edge",
                EntryMeta {
                    expires_at: Some(100),
                    ..Default::default()
                },
            )],
            ..Default::default()
        };
        assert_eq!(
            plan(&inv, &Policy::default(), 100, Mode::Full)
                .actions
                .len(),
            1
        );
        assert_eq!(
            plan(&inv, &Policy::default(), 99, Mode::Full).actions.len(),
            0
        );
    }

    #[test]
    fn expired_entry_referenced_by_live_entry_survives() {
        let inv = Inventory {
            entries: vec![
                entry(
                    "a",
                    "doc",
                    EntryMeta {
                        refs: vec!["att".into()],
                        ..Default::default()
                    },
                ),
                entry(
                    "a",
                    "att",
                    EntryMeta {
                        expires_at: Some(1),
                        ..Default::default()
                    },
                ),
            ],
            ..Default::default()
        };
        assert!(plan(&inv, &Policy::default(), 100, Mode::Full)
            .actions
            .is_empty());
    }

    #[test]
    fn light_mode_deletes_only_orphan_blobs_and_stale_temps() {
        let inv = Inventory {
            entries: vec![entry(
                "a",
                "x",
                EntryMeta {
                    expires_at: Some(1),
                    ..Default::default()
                },
            )],
            blobs: vec![BlobInfo {
                id: "b".into(),
                size: 3,
                created_at: 0,
            }],
            temps: vec![TempInfo {
                id: "t".into(),
                size: 1,
                created_at: 0,
            }],
            ..Default::default()
        };
        let now = crate::policy::DEFAULT_TEMP_MAX_AGE_MS;
        let p = plan(&inv, &Policy::default(), now, Mode::Light);
        assert_eq!(
            keys(&p),
            vec![
                ("b".to_string(), Reason::OrphanBlob),
                ("t".to_string(), Reason::StaleTemp)
            ]
        );
    }

    #[test]
    fn young_orphan_blob_is_kept_for_its_grace_period() {
        let inv = Inventory {
            blobs: vec![BlobInfo {
                id: "b".into(),
                size: 3,
                created_at: 1000,
            }],
            ..Default::default()
        };
        let grace = crate::policy::DEFAULT_ORPHAN_GRACE_MS;
        assert!(plan(&inv, &Policy::default(), 1000 + grace - 1, Mode::Full)
            .actions
            .is_empty());
        assert_eq!(
            plan(&inv, &Policy::default(), 1000 + grace, Mode::Full)
                .actions
                .len(),
            1
        );
    }
}
