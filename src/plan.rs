//! The planner: inventory + policy + `now` → plan. Pure: no I/O, no clock.

use crate::vecmap::{VecMap, VecSet};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use core::hash::BuildHasher;
use hashbrown::{hash_table, DefaultHashBuilder, HashMap, HashTable};
use serde::{Deserialize, Serialize};

use crate::mark::mark_reachable;
use crate::model::{BlobInfo, EntryId, EntryMeta, Inventory, InventoryEntry, Millis};
use crate::policy::{Policy, Rules};
use crate::sort::{sort, sort_by, sort_ixs_by};

/// Why an item is in a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// An unpinned entry whose `expiresAt` is at or before `now`.
    Expired,
    /// An unpinned entry not written for longer than `maxAgeMs`.
    MaxAge,
    /// An entry not among the `keepLast` newest (by `createdAt`) of its group.
    Retention,
    /// An entry evicted, least recently accessed first, to bring its
    /// namespace within `maxEntries`.
    MaxEntries,
    /// An entry evicted, least recently accessed first, to bring its
    /// namespace's bytes down to the low watermark of `maxBytes`.
    MaxBytes,
    /// A dependent entry that no live entry references any more, once
    /// `orphanGraceMs` has passed since it was written.
    Unreachable,
    /// A blob that no live entry references, once `orphanGraceMs` has passed
    /// since it was written.
    OrphanBlob,
    /// A temp left by an interrupted write, once `tempMaxAgeMs` old.
    StaleTemp,
    /// Deleted by `clear(namespace)`, not by a rule.
    Cleared,
    /// Report only: never deleted.
    Corrupt,
}

impl Reason {
    /// Every reason, in report order.
    pub const ALL: [Reason; 10] = [
        Reason::Expired,
        Reason::MaxAge,
        Reason::Retention,
        Reason::MaxEntries,
        Reason::MaxBytes,
        Reason::Unreachable,
        Reason::OrphanBlob,
        Reason::StaleTemp,
        Reason::Cleared,
        Reason::Corrupt,
    ];

    /// The reason's name in reports and in JavaScript (`"maxAge"`).
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
            Reason::Cleared => "cleared",
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
    /// The mode's name in reports and in JavaScript (`"light"`, `"full"`).
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
    /// An entry: its metadata, value and the references it holds.
    Entry,
    /// A blob's bytes and metadata.
    Blob,
    /// A temp left by an interrupted write.
    Temp,
}

/// One deletion, with the reason for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// Whether an entry, a blob or a temp goes.
    pub kind: ActionKind,
    /// The entry's namespace; `None` for blobs and temps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The entry key, blob id or temp id.
    pub key: String,
    /// The rule that dropped the item (the first one, for an entry).
    pub reason: Reason,
    /// Bytes freed: an entry's own value size, a blob's or a temp's size.
    pub bytes: u64,
    /// What the item was when planned (an entry's `writeId`, a blob's
    /// `createdAt`): the executor deletes it only if it is unchanged.
    #[serde(skip)]
    pub version: Option<u64>,
    /// Where an entry stood in the inventory it was planned from (the
    /// store's key order): a hint that lets the executor read entries close
    /// together as one key range. It checks every range when it goes.
    #[serde(skip)]
    pub listed: Option<u32>,
}

/// Count and bytes under one reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// How many items (deleted by a run, or to delete in a plan).
    pub count: u64,
    /// Their bytes, added up (capped at `u64::MAX`).
    pub bytes: u64,
}

/// What a plan found, besides its actions.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The mode planned in.
    pub mode: Mode,
    /// The time planned at.
    pub now: Millis,
    /// Entries listed (decodable and corrupt).
    pub scanned: u64,
    /// Entries that stay: roots and what they reach.
    pub reachable: u64,
    /// Blobs listed.
    pub blobs: u64,
    /// Temps listed.
    pub temps: u64,
    /// Unreferenced blobs kept because they are younger than `orphanGraceMs`.
    pub young_blobs: u64,
    /// What the actions delete, by reason. `corrupt` is present, at zero,
    /// when some entries could not be decoded.
    pub deleted: VecMap<Reason, Tally>,
    /// Entries whose metadata could not be decoded: kept and reported.
    pub corrupt: Vec<EntryId>,
    /// Blobs whose metadata could not be decoded (by id): kept and reported.
    pub corrupt_blobs: Vec<String>,
    /// Temps whose records could not be decoded (by id): kept and reported.
    pub corrupt_temps: Vec<String>,
    /// Namespaces holding entries but not registered: reported, never deleted by a run.
    pub zombies: Vec<String>,
}

/// A plan: what to delete, in execution order (entries, then blobs, then temps).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    /// The deletions, entries first, then blobs, then temps.
    pub actions: Vec<Action>,
    /// Counts and findings.
    pub summary: Summary,
}

/// Item indices. An inventory of 2^32 items would not fit in memory (each
/// takes tens of bytes), and `u32` halves the planner's tables on 64-bit hosts.
type Ix = u32;

fn ix(i: usize) -> Ix {
    Ix::try_from(i).expect("an inventory holds fewer than 2^32 items")
}

/// Blob state bits.
const LIVE: u8 = 1;
/// A later listing of an id already listed: planned over the first one.
const REPEATED: u8 = 2;

/// Each blob id's first listing, found by hashing the id.
struct BlobIndex<'a> {
    list: &'a [BlobInfo],
    table: HashTable<Ix>,
    hasher: &'a DefaultHashBuilder,
}

impl BlobIndex<'_> {
    fn get(&self, id: &str) -> Option<usize> {
        let h = self.hasher.hash_one(id);
        self.table
            .find(h, |&k| self.list[k as usize].id == id)
            .map(|&k| k as usize)
    }
}

/// Numbers namespaces in order of first appearance. Listings come grouped by
/// namespace, so the last one is checked before hashing.
struct NamespaceIds<'a> {
    ids: HashMap<&'a str, Ix>,
    names: Vec<&'a str>,
    last: Option<(&'a str, Ix)>,
}

impl<'a> NamespaceIds<'a> {
    fn id(&mut self, ns: &'a str) -> Ix {
        if let Some((name, id)) = self.last {
            if name == ns {
                return id;
            }
        }
        let next = ix(self.names.len());
        let id = *self.ids.entry(ns).or_insert(next);
        if id == next {
            self.names.push(ns);
        }
        self.last = Some((ns, id));
        id
    }
}

impl<'a> BlobIndex<'a> {
    /// Indexes `list`, and returns each listing's state: a listing may return
    /// a blob twice, every id maps to its first copy, and liveness is marked
    /// and read there only.
    fn new(list: &'a [BlobInfo], hasher: &'a DefaultHashBuilder) -> (Self, Vec<u8>) {
        let mut state = vec![0u8; list.len()];
        let mut table: HashTable<Ix> = HashTable::with_capacity(list.len());
        for (i, b) in list.iter().enumerate() {
            let h = hasher.hash_one(b.id.as_str());
            let same = |&k: &Ix| list[k as usize].id == b.id;
            let rehash = |&k: &Ix| hasher.hash_one(list[k as usize].id.as_str());
            match table.entry(h, same, rehash) {
                hash_table::Entry::Vacant(v) => {
                    v.insert(ix(i));
                }
                hash_table::Entry::Occupied(_) => state[i] = REPEATED,
            }
        }
        (
            BlobIndex {
                list,
                table,
                hasher,
            },
            state,
        )
    }
}

/// A listing's entries grouped by namespace: `order[starts[k]..starts[k + 1]]`
/// are the indices of namespace `names[k]`'s entries, in listing order (so
/// the first copy of a repeated key comes first).
struct Grouped<'a> {
    names: Vec<&'a str>,
    starts: Vec<usize>,
    order: Vec<Ix>,
}

/// Groups by a counting sort: 4 bytes per entry, no per-namespace vectors.
fn group_by_namespace(entries: &[InventoryEntry]) -> Grouped<'_> {
    let mut ns_ids = NamespaceIds {
        ids: HashMap::new(),
        names: Vec::new(),
        last: None,
    };
    let mut starts: Vec<usize> = Vec::new();
    for e in entries {
        let id = ns_ids.id(&e.id.namespace) as usize;
        if id == starts.len() {
            starts.push(0);
        }
        starts[id] += 1;
    }
    let mut offset = 0;
    for s in starts.iter_mut() {
        let count = *s;
        *s = offset;
        offset += count;
    }
    starts.push(offset);
    let mut order: Vec<Ix> = vec![0; entries.len()];
    let mut next: Vec<usize> = starts[..starts.len() - 1].to_vec();
    ns_ids.last = None;
    for (i, e) in entries.iter().enumerate() {
        let id = ns_ids.id(&e.id.namespace) as usize;
        order[next[id]] = ix(i);
        next[id] += 1;
    }
    Grouped {
        names: ns_ids.names,
        starts,
        order,
    }
}

/// Where a long plan lets its caller pause: planning stays pure, and a
/// driver on a browser's main thread yields to its event loop there (a plan
/// of 100,000 entries is too long for one task). Called often; the driver
/// decides whether to yield.
#[allow(async_fn_in_trait)]
pub trait Pause {
    /// A point where the caller may yield before planning goes on.
    async fn pause(&mut self);
}

/// Never pauses.
pub struct NoPause;

impl Pause for NoPause {
    async fn pause(&mut self) {}
}

/// Items a planner loop handles between two pauses.
const PAUSE_EVERY: usize = 4096;

/// Plans a cleanup of `inv` under `policy` at time `now`.
pub fn plan(inv: &Inventory, policy: &Policy, now: Millis, mode: Mode) -> Plan {
    let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    let mut no_pause = NoPause;
    let mut planning = core::pin::pin!(plan_with(inv, policy, now, mode, &mut no_pause));
    match core::future::Future::poll(planning.as_mut(), &mut cx) {
        core::task::Poll::Ready(plan) => plan,
        // `NoPause` never waits, so the plan is done in one poll.
        core::task::Poll::Pending => unreachable!("a plan without pauses never waits"),
    }
}

/// [`plan`], pausing between its phases and every few thousand items.
pub async fn plan_with<P: Pause>(
    inv: &Inventory,
    policy: &Policy,
    now: Millis,
    mode: Mode,
    pauser: &mut P,
) -> Plan {
    let mut summary = Summary {
        mode,
        now,
        scanned: (inv.entries.len() + inv.corrupt.len()) as u64,
        blobs: inv.blobs.len() as u64,
        temps: inv.temps.len() as u64,
        ..Summary::default()
    };
    let hasher = DefaultHashBuilder::default();
    let (blobs, mut blob_state) = BlobIndex::new(&inv.blobs, &hasher);
    pauser.pause().await;
    let grouped = group_by_namespace(&inv.entries);
    pauser.pause().await;
    summary.zombies = zombies(inv, &grouped.names);

    let doomed = EntryPlanner {
        inv,
        policy,
        now,
        mode,
        hasher: &hasher,
        blobs: &blobs,
    }
    .plan(&grouped, &mut blob_state, &mut summary, pauser)
    .await;
    summary.reachable += inv.corrupt.len() as u64;
    drop((grouped, blobs));

    let orphans = orphan_blobs(inv, &blob_state, policy, now, &mut summary);
    drop(blob_state);
    let stale = stale_temps(inv, policy, now);
    pauser.pause().await;
    let actions = actions(inv, doomed, &orphans, &stale, pauser).await;
    tally(&mut summary, &actions, inv);
    Plan { actions, summary }
}

/// Namespaces with data but no namespace record, in order.
fn zombies(inv: &Inventory, names: &[&str]) -> Vec<String> {
    let Some(registered) = &inv.namespaces else {
        return Vec::new();
    };
    let registered: VecSet<&str> = VecSet::from_iter(registered.iter().map(String::as_str));
    let present: VecSet<&str> = VecSet::from_iter(
        names
            .iter()
            .copied()
            .chain(inv.corrupt.iter().map(|id| id.namespace.as_str())),
    );
    present
        .into_iter()
        .filter(|ns| !registered.contains(ns))
        .map(String::from)
        .collect()
}

/// What the entry phase of a plan reads.
struct EntryPlanner<'a> {
    inv: &'a Inventory,
    policy: &'a Policy,
    now: Millis,
    mode: Mode,
    hasher: &'a DefaultHashBuilder,
    blobs: &'a BlobIndex<'a>,
}

impl EntryPlanner<'_> {
    /// Plans every namespace, in name order: returns the entries to delete
    /// with the first rule that dropped each (by namespace, then key), marks
    /// the blobs live entries hold, and counts the reachable.
    async fn plan<P: Pause>(
        &self,
        grouped: &Grouped<'_>,
        blob_state: &mut [u8],
        summary: &mut Summary,
        pauser: &mut P,
    ) -> Vec<(Ix, Reason)> {
        let inv = self.inv;
        // Namespaces whose entries are all kept: they hold undecodable
        // entries (whose references are unknown) or they are zombies
        // (deleted explicitly).
        let corrupt_ns: VecSet<&str> =
            VecSet::from_iter(inv.corrupt.iter().map(|id| id.namespace.as_str()));
        let names = &grouped.names;
        let mut by_name: Vec<Ix> = (0..names.len()).map(ix).collect();
        sort_ixs_by(&mut by_name, &|a, b| {
            names[a as usize].cmp(names[b as usize])
        });

        let mut scratch = Scratch::default();
        let mut doomed: Vec<(Ix, Reason)> = Vec::new();
        for k in by_name {
            let k = k as usize;
            let ns = names[k];
            let members = &grouped.order[grouped.starts[k]..grouped.starts[k + 1]];
            scratch.distinct(&inv.entries, members, self.hasher);
            pauser.pause().await;
            let frozen = self.mode == Mode::Light
                || corrupt_ns.contains(ns)
                || summary
                    .zombies
                    .binary_search_by(|z| z.as_str().cmp(ns))
                    .is_ok();
            let live = if frozen {
                None
            } else {
                Some(
                    self.plan_namespace(ns, &mut scratch, &mut doomed, pauser)
                        .await,
                )
            };
            for (j, &i) in scratch.unique.iter().enumerate() {
                if live.as_ref().is_none_or(|live| live[j]) {
                    summary.reachable += 1;
                    for id in &inv.entries[i as usize].meta.blobs {
                        if let Some(bi) = self.blobs.get(id) {
                            blob_state[bi] |= LIVE;
                        }
                    }
                }
            }
        }
        doomed
    }

    /// Plans one namespace (listed in `scratch` by `distinct`) to its
    /// fixpoint, appending what it drops to `doomed` sorted by key; returns
    /// which of its entries are live.
    async fn plan_namespace<P: Pause>(
        &self,
        ns: &str,
        scratch: &mut Scratch,
        doomed: &mut Vec<(Ix, Reason)>,
        pauser: &mut P,
    ) -> Vec<bool> {
        let inv = self.inv;
        let merged;
        let rules = match self.policy.namespaces.get(ns) {
            Some(over) => {
                merged = self.policy.rules.overridden_by(over);
                &merged
            }
            None => &self.policy.rules,
        };
        let grace = self.policy.orphan_grace_ms;
        let mut live = scratch
            .apply_rules(&inv.entries, rules, self.blobs, self.now, grace, pauser)
            .await;
        let first = doomed.len();
        let mut rounds = 1;
        loop {
            let round = doomed.len();
            for (j, &i) in scratch.unique.iter().enumerate() {
                if !live[j] {
                    // Every entry that is not live was dropped by a rule.
                    doomed.push((i, scratch.dropped[j].unwrap_or(Reason::Unreachable)));
                }
            }
            // A run leaves a fixpoint (SPEC §2). Quotas count what lives,
            // so what survives a round fits them; the one interaction left
            // is `keepLast`, which ranks the group members rules 1–2 left:
            // when a quota evicts a ruled group member, another climbs into
            // the kept. Plan the survivors again until nothing more drops
            // (a safeguard: a review found no case where it drops more).
            let unsettled = doomed[round..].iter().any(|&(i, reason)| {
                matches!(reason, Reason::MaxEntries | Reason::MaxBytes)
                    && inv.entries[i as usize]
                        .meta
                        .group
                        .as_ref()
                        .is_some_and(|g| rules.groups.contains_key(g))
            });
            // Each round replans the namespace; a long cascade (many old
            // group members kept alive by references) is cut off here and
            // the next run goes on where this one stopped.
            if !unsettled || rounds >= max_fixpoint_rounds(scratch.unique.len()) {
                break;
            }
            rounds += 1;
            let survivors: Vec<Ix> = scratch
                .unique
                .iter()
                .zip(&live)
                .filter(|(_, &l)| l)
                .map(|(&i, _)| i)
                .collect();
            scratch.distinct(&inv.entries, &survivors, self.hasher);
            pauser.pause().await;
            live = scratch
                .apply_rules(&inv.entries, rules, self.blobs, self.now, grace, pauser)
                .await;
        }
        pauser.pause().await;
        // Keys are distinct within a namespace: a total order.
        sort_by(&mut doomed[first..], |a, b| {
            let key = |i: Ix| inv.entries[i as usize].id.key.as_str();
            key(a.0).cmp(key(b.0))
        });
        pauser.pause().await;
        live
    }
}

/// Blobs no live entry holds and past their grace, by id; young ones are
/// counted. Undecodable entries may reference any blob: then none is garbage.
fn orphan_blobs(
    inv: &Inventory,
    blob_state: &[u8],
    policy: &Policy,
    now: Millis,
    summary: &mut Summary,
) -> Vec<Ix> {
    let mut orphans: Vec<Ix> = Vec::new();
    if inv.corrupt.is_empty() {
        for (i, b) in inv.blobs.iter().enumerate() {
            if blob_state[i] != 0 {
                continue;
            }
            if now.saturating_sub(b.created_at) < policy.orphan_grace_ms {
                summary.young_blobs += 1;
            } else {
                orphans.push(ix(i));
            }
        }
    }
    sort_by_id(&mut orphans, |i| inv.blobs[i as usize].id.as_str());
    orphans
}

/// Temps older than `tempMaxAgeMs`, by id, each id once.
fn stale_temps(inv: &Inventory, policy: &Policy, now: Millis) -> Vec<Ix> {
    let mut stale: Vec<Ix> = (0..inv.temps.len())
        .filter(|&i| now.saturating_sub(inv.temps[i].created_at) >= policy.temp_max_age_ms)
        .map(ix)
        .collect();
    // Stable, so a repeated id keeps its first listing.
    sort_ixs_by(&mut stale, &|a, b| {
        inv.temps[a as usize].id.cmp(&inv.temps[b as usize].id)
    });
    stale.dedup_by(|a, b| inv.temps[*a as usize].id == inv.temps[*b as usize].id);
    stale
}

/// The plan's actions: entries, then blobs, then temps.
async fn actions<P: Pause>(
    inv: &Inventory,
    doomed: Vec<(Ix, Reason)>,
    orphans: &[Ix],
    stale: &[Ix],
    pauser: &mut P,
) -> Vec<Action> {
    let mut actions = Vec::with_capacity(doomed.len() + orphans.len() + stale.len());
    for (n, (i, reason)) in doomed.into_iter().enumerate() {
        if n % PAUSE_EVERY == PAUSE_EVERY - 1 {
            pauser.pause().await;
        }
        let e = &inv.entries[i as usize];
        actions.push(Action {
            kind: ActionKind::Entry,
            namespace: Some(e.id.namespace.clone()),
            key: e.id.key.clone(),
            reason,
            bytes: e.meta.size,
            version: Some(e.meta.write_id),
            listed: Some(i),
        });
    }
    for &i in orphans {
        let b = &inv.blobs[i as usize];
        actions.push(Action {
            kind: ActionKind::Blob,
            namespace: None,
            key: b.id.clone(),
            reason: Reason::OrphanBlob,
            bytes: b.size,
            version: Some(b.created_at),
            listed: None,
        });
    }
    for &i in stale {
        let t = &inv.temps[i as usize];
        actions.push(Action {
            kind: ActionKind::Temp,
            namespace: None,
            key: t.id.clone(),
            reason: Reason::StaleTemp,
            bytes: t.size,
            // The temp of a later write of the same blob has the same key.
            version: Some(t.created_at),
            listed: None,
        });
    }
    actions
}

/// Counts the actions by reason, and lists what could not be read.
fn tally(summary: &mut Summary, actions: &[Action], inv: &Inventory) {
    for a in actions {
        let t = summary.deleted.entry(a.reason).or_default();
        t.count += 1;
        // Sizes come from stored metadata: a huge one must not overflow the report.
        t.bytes = t.bytes.saturating_add(a.bytes);
    }
    let mut corrupt = inv.corrupt.clone();
    sort(&mut corrupt);
    if !corrupt.is_empty() {
        summary.deleted.entry(Reason::Corrupt).or_default();
    }
    summary.corrupt = corrupt;
    summary.corrupt_blobs = inv.corrupt_blobs.clone();
    sort(&mut summary.corrupt_blobs);
    summary.corrupt_temps = inv.corrupt_temps.clone();
    sort(&mut summary.corrupt_temps);
}

/// How many times a namespace is planned again towards its fixpoint (SPEC §2)
/// in one plan: each round costs a full plan of the namespace, so a
/// namespace may take as many rounds as [`FIXPOINT_WORK`] entries planned
/// pay for, and never fewer than [`MIN_FIXPOINT_ROUNDS`]. A cascade (each
/// round's quota evicting a group member whose older sibling, kept alive by
/// a reference, then climbs into the kept) needs a round per step: up to
/// 800 steps in a namespace of 10,000 entries, 8 in one of 1,000,000.
fn max_fixpoint_rounds(entries: usize) -> usize {
    (FIXPOINT_WORK / entries.max(1)).max(MIN_FIXPOINT_ROUNDS)
}
const FIXPOINT_WORK: usize = 8_000_000;
const MIN_FIXPOINT_ROUNDS: usize = 8;

/// Per-namespace working memory, reused from one namespace to the next.
#[derive(Default)]
struct Scratch {
    /// Inventory indices of the namespace's distinct keys (first copy of each).
    unique: Vec<Ix>,
    /// `unique` positions, found by hashing the key.
    keys: HashTable<Ix>,
    /// The first rule that dropped each entry (`None`: a root).
    dropped: Vec<Option<Reason>>,
    /// Entries in the order a rule looks at them.
    ranked: Vec<Ix>,
    /// Each entry's known blobs, by index: where its own begin in the
    /// second, which holds them all (for `maxBytes`).
    blob_ixs: (Vec<Ix>, Vec<Ix>),
    /// Per blob, the weighing that last counted it, and the last weighing's
    /// number: `maxBytes` counts each blob once.
    blob_seen: (Vec<u32>, u32),
    /// Per blob, the roots holding it while `maxBytes` ranks them (else 0).
    holders: Vec<u32>,
}

impl Scratch {
    /// Lists the namespace's distinct keys: a listing may return a key twice
    /// (Workers KV does), and the namespace is planned over the first copy.
    fn distinct(
        &mut self,
        entries: &[InventoryEntry],
        members: &[Ix],
        hasher: &DefaultHashBuilder,
    ) {
        self.unique.clear();
        self.keys.clear();
        self.keys.reserve(members.len(), |&k| {
            hasher.hash_one(entries[self.unique[k as usize] as usize].id.key.as_str())
        });
        for &i in members {
            let key = entries[i as usize].id.key.as_str();
            let unique = &mut self.unique;
            let h = hasher.hash_one(key);
            let same = |&k: &Ix| entries[unique[k as usize] as usize].id.key == key;
            if self.keys.find(h, same).is_none() {
                let k = ix(unique.len());
                unique.push(i);
                self.keys.insert_unique(h, k, |&k| {
                    hasher.hash_one(entries[unique[k as usize] as usize].id.key.as_str())
                });
            }
        }
    }

    /// Applies the rules to the namespace listed by `distinct`. Returns which
    /// of its entries are live, and leaves in `dropped` the first rule that
    /// dropped each entry.
    async fn apply_rules<P: Pause>(
        &mut self,
        entries: &[InventoryEntry],
        rules: &Rules,
        blobs: &BlobIndex<'_>,
        now: Millis,
        orphan_grace_ms: Millis,
        pauser: &mut P,
    ) -> Vec<bool> {
        let Scratch {
            unique,
            keys,
            dropped,
            ranked,
            blob_ixs,
            blob_seen,
            holders,
        } = self;
        let n = unique.len();
        let entry = |j: Ix| &entries[unique[j as usize] as usize];
        dropped.clear();
        dropped.resize(n, None);

        // Rules 1–2: expiry and age. Dependent entries are no roots of their own.
        for (&i, drop) in unique.iter().zip(dropped.iter_mut()) {
            let m = &entries[i as usize].meta;
            if m.pinned {
                continue;
            }
            if m.expires_at.is_some_and(|t| t <= now) {
                *drop = Some(Reason::Expired);
            } else if rules
                .max_age_ms
                .is_some_and(|max| now.saturating_sub(m.updated_at) > max)
            {
                *drop = Some(Reason::MaxAge);
            } else if m.dependent && now.saturating_sub(m.updated_at) >= orphan_grace_ms {
                // Young dependents are kept like young blobs: their referrer may be on its way.
                *drop = Some(Reason::Unreachable);
            }
        }

        pauser.pause().await;
        // Rule 3: keep the newest `keepLast` of each group (unpinned, unlocked, not dropped).
        if !rules.groups.is_empty() {
            ranked.clear();
            ranked.extend((0..n).map(ix).filter(|&j| {
                let m = &entry(j).meta;
                !m.pinned
                    && !m.locked
                    && dropped[j as usize].is_none()
                    && m.group
                        .as_ref()
                        .is_some_and(|g| rules.groups.contains_key(g))
            }));
            // By group, newest first, ties broken by key (unique: a total order).
            sort_ixs_by(ranked, &|a, b| {
                let (ea, eb) = (entry(a), entry(b));
                ea.meta
                    .group
                    .cmp(&eb.meta.group)
                    .then_with(|| eb.meta.created_at.cmp(&ea.meta.created_at))
                    .then_with(|| ea.id.key.cmp(&eb.id.key))
            });
            let mut kept = 0;
            let mut keep_last = 0;
            for (pos, &j) in ranked.iter().enumerate() {
                let group = &entry(j).meta.group;
                if pos == 0 || *group != entry(ranked[pos - 1]).meta.group {
                    kept = 0;
                    keep_last = group
                        .as_ref()
                        .and_then(|g| rules.groups.get(g))
                        .map_or(0, |r| r.keep_last);
                }
                if kept < keep_last {
                    kept += 1;
                } else {
                    dropped[j as usize] = Some(Reason::Retention);
                }
            }
        }

        // Liveness: roots are the entries no rule dropped (pinned ones always),
        // plus everything they reference within the namespace.
        // Of the first `most` references of `j`, those to entries of the
        // namespace, in `out`; returns how many it looked at.
        let edges_upto = |j: usize, out: &mut Vec<usize>, most: usize| {
            let refs = &entry(ix(j)).meta.refs;
            for r in refs.iter().take(most) {
                let h = blobs.hasher.hash_one(r.as_str());
                if let Some(&k) = keys.find(h, |&k| entry(k).id.key == *r) {
                    out.push(k as usize);
                }
            }
            refs.len().min(most)
        };
        let edges = |j: usize, out: &mut Vec<usize>| {
            edges_upto(j, out, usize::MAX);
        };
        let live_for = |dropped: &[Option<Reason>]| {
            mark_reachable(n, (0..n).filter(|&j| dropped[j].is_none()), edges)
        };

        pauser.pause().await;
        // Rule 4: maxEntries, then maxBytes, over what is left, least recently
        // accessed first. A quota counts what lives: an entry it evicts that
        // a root still references lives on and still counts (SPEC §2), so
        // eviction goes on down the order until what lives fits. Eviction
        // takes a prefix of the unpinned roots in that order, and what lives
        // only shrinks as the prefix grows: the shortest prefix that fits is
        // found by bisection, from the shortest that counting roots alone
        // allows (where nothing evicted is referenced, that one fits).
        if rules.max_entries.is_none() && rules.max_bytes.is_none() {
            return live_for(dropped);
        }
        ranked.clear();
        ranked.extend((0..n).map(ix).filter(|&j| dropped[j as usize].is_none()));
        // Ties broken by key: a total order.
        sort_ixs_by(ranked, &|a, b| {
            let (ea, eb) = (entry(a), entry(b));
            ea.meta
                .accessed_at
                .cmp(&eb.meta.accessed_at)
                .then_with(|| ea.id.key.cmp(&eb.id.key))
        });
        let roots = ranked.len();
        ranked.retain(|&j| !entry(j).meta.pinned);
        let all = ranked.len();
        // `ranked[from..k]` evicted for `reason`, `ranked[k..]` not.
        let evict = |dropped: &mut [Option<Reason>], from: usize, k: usize, reason: Reason| {
            for (pos, &j) in ranked.iter().enumerate().skip(from) {
                dropped[j as usize] = (pos < k).then_some(reason);
            }
        };
        // The known blobs of each entry, by index, looked up once (only
        // `maxBytes` asks).
        let (starts, flat) = blob_ixs;
        starts.clear();
        flat.clear();
        if rules.max_bytes.is_some() {
            for j in 0..n {
                starts.push(ix(flat.len()));
                flat.extend(held(&entry(ix(j)).meta, blobs).map(ix));
            }
            starts.push(ix(flat.len()));
        }
        let held_by = |j: usize| &flat[starts[j] as usize..starts[j + 1] as usize];
        // Bytes of what lives: entries' own, and each distinct blob once
        // (`seen` holds, per blob, the number of the weighing that last
        // counted it). Exact: a sum of u64 sizes fits in u128, so eviction
        // never compares or subtracts against a saturated total.
        let weight = |live: &[bool], blob_seen: &mut (Vec<u32>, u32)| {
            blob_seen.0.resize(blobs.list.len(), 0);
            let weighing = new_weighing(blob_seen);
            let seen = &mut blob_seen.0;
            let mut bytes: u128 = 0;
            for j in (0..n).filter(|&j| live[j]) {
                bytes += u128::from(entry(ix(j)).meta.size);
                for &b in held_by(j) {
                    if seen[b as usize] != weighing {
                        seen[b as usize] = weighing;
                        bytes += u128::from(blobs.list[b as usize].size);
                    }
                }
            }
            bytes
        };
        // Whether what lives with `ranked[..k]` evicted fits: maxEntries,
        // and the byte target once maxBytes is passed; with what lives.
        let max_entries = rules.max_entries.unwrap_or(u64::MAX);
        let fits = |dropped: &mut [Option<Reason>],
                    blob_seen: &mut (Vec<u32>, u32),
                    k: usize,
                    target: Option<u128>| {
            evict(dropped, 0, k, Reason::MaxEntries);
            let l = live_for(dropped);
            let ok = l.iter().filter(|&&x| x).count() as u64 <= max_entries
                && target.is_none_or(|t| weight(&l, blob_seen) <= t);
            (ok, l)
        };
        let lo = usize::try_from((roots as u64).saturating_sub(max_entries))
            .unwrap_or(usize::MAX)
            .min(all);
        let (k_entries, mut live) =
            least_fitting(lo, all, pauser, &mut |k| fits(dropped, blob_seen, k, None)).await;
        let mut k = k_entries;
        if let (Some(max), Some(target)) = (rules.max_bytes, rules.byte_target()) {
            evict(dropped, 0, k, Reason::MaxEntries);
            let now_live = live.take().unwrap_or_else(|| live_for(dropped));
            if weight(&now_live, blob_seen) > u128::from(max) {
                // The roots alone: evicting in order until their bytes fit
                // is as short as a prefix that fits can be (`holders` counts
                // the roots holding each blob, and is left all 0).
                holders.resize(blobs.list.len(), 0);
                let roots = || (0..n).filter(|&j| dropped[j].is_none());
                let mut bytes: u128 = 0;
                for j in roots() {
                    bytes += u128::from(entry(ix(j)).meta.size);
                    for &b in held_by(j) {
                        if holders[b as usize] == 0 {
                            bytes += u128::from(blobs.list[b as usize].size);
                        }
                        holders[b as usize] += 1;
                    }
                }
                let mut lo = k_entries;
                for &j in &ranked[k_entries..] {
                    if bytes <= u128::from(target) {
                        break;
                    }
                    lo += 1;
                    bytes -= u128::from(entry(j).meta.size);
                    for &b in held_by(j as usize) {
                        holders[b as usize] -= 1;
                        if holders[b as usize] == 0 {
                            bytes -= u128::from(blobs.list[b as usize].size);
                        }
                    }
                }
                for j in roots() {
                    for &b in held_by(j) {
                        holders[b as usize] = 0;
                    }
                }
                pauser.pause().await;
                (k, live) = least_fitting(lo, all, pauser, &mut |k| {
                    fits(dropped, blob_seen, k, Some(u128::from(target)))
                })
                .await;
            } else {
                live = Some(now_live);
            }
        }
        evict(dropped, 0, k_entries, Reason::MaxEntries);
        evict(dropped, k_entries, k, Reason::MaxBytes);
        let mut live = live.unwrap_or_else(|| live_for(dropped));
        if k == 0 {
            return live;
        }
        // Given back: the shortest prefix that fits may evict more than the
        // quota needs. Evicting the entry that kept an older one alive can
        // leave room for that one, or for others the prefix took (maxEntries
        // 2 over a, b, c → a, d, least recently accessed first: the prefix
        // a, b, c leaves d alone). So each evicted entry, most recently
        // accessed first, is kept again when it fits, with what it
        // references, under maxEntries and the byte bound: the target when
        // maxBytes evicted, else maxBytes itself (what is kept never
        // starts a new eviction).
        let bound = rules.max_bytes.map(|max| {
            u128::from(if k > k_entries {
                rules.byte_target().unwrap_or(max)
            } else {
                max
            })
        });
        let mut count = live.iter().filter(|&&x| x).count() as u64;
        let mut bytes = bound.map_or(0, |_| weight(&live, blob_seen));
        // Per blob, whether what lives holds it (`holders`, left all 0).
        holders.resize(blobs.list.len(), 0);
        if bound.is_some() {
            for j in (0..n).filter(|&j| live[j]) {
                for &b in held_by(j) {
                    holders[b as usize] = 1;
                }
            }
        }
        // Entries that can never be kept again (by count): keeping others
        // takes room at least as fast as it takes entries from what one
        // needs kept with it, so one found too big stays too big, and so
        // does any entry that reaches it. Found up front from a lower
        // bound: in a forest grown from the evicted entries in the order
        // they are tried, what is under an entry is reachable from it.
        let room = max_entries.saturating_sub(count);
        let mut doomed = vec![false; n];
        if room < n as u64 {
            let (mut size, mut parent, mut order) = (vec![0u32; n], vec![u32::MAX; n], Vec::new());
            let mut stack = Vec::new();
            let mut next = Vec::new();
            for &j in ranked[..k].iter().rev() {
                let j = j as usize;
                if live[j] || size[j] != 0 {
                    continue;
                }
                size[j] = 1;
                stack.push(j);
                while let Some(x) = stack.pop() {
                    order.push(x);
                    next.clear();
                    edges(x, &mut next);
                    for &y in &next {
                        if !live[y] && size[y] == 0 {
                            size[y] = 1;
                            parent[y] = x as u32;
                            stack.push(y);
                        }
                    }
                }
            }
            // Children were taken after their parents: sizes add up backwards.
            for &x in order.iter().rev() {
                doomed[x] = u64::from(size[x]) > room;
                if let Some(p) = parent.get(x).copied().filter(|&p| p != u32::MAX) {
                    size[p as usize] += size[x];
                }
            }
        }
        // Bounded: what an evicted entry needs kept with it is walked until
        // it passes the room left (or the byte bound), which over many
        // entries could cost the square of the namespace. Past this budget,
        // each entry left gets a short walk, reference by reference: those
        // needing few others are still kept again, so an older entry may be
        // kept where a newer one needing many stays evicted (the budget
        // spent, the greedy order by recency holds only for short walks).
        // A failure on count or bytes is for good (see above), and dooms
        // the entry; one on steps does not.
        let mut work = 4 * n + 100_000;
        let (mut trial, mut stack, mut next) = (Vec::new(), Vec::new(), Vec::new());
        for &j in ranked[..k].iter().rev() {
            let j = j as usize;
            if doomed[j] {
                continue;
            }
            trial.clear();
            stack.clear();
            let limit = work.max(SHORT_WALK);
            let mut steps = 0usize;
            let mut add: u128 = 0;
            let weighing = new_weighing(blob_seen);
            let seen = &mut blob_seen.0;
            let mut fits = true;
            // Whether the walk now shows `j` can never be kept: `x` is one
            // that cannot, or what the walk took passes a bound.
            let mut visit = |x: usize, trial: &mut Vec<usize>, stack: &mut Vec<usize>| {
                if live[x] {
                    return false;
                }
                live[x] = true;
                trial.push(x);
                stack.push(x);
                if bound.is_some() {
                    add += u128::from(entry(ix(x)).meta.size);
                    for &b in held_by(x) {
                        let b = b as usize;
                        if holders[b] == 0 && seen[b] != weighing {
                            seen[b] = weighing;
                            add += u128::from(blobs.list[b].size);
                        }
                    }
                }
                doomed[x]
                    || count + trial.len() as u64 > max_entries
                    || bound.is_some_and(|b| bytes + add > b)
            };
            let mut never = visit(j, &mut trial, &mut stack);
            while let Some(x) = stack.pop().filter(|_| !never) {
                next.clear();
                steps += 1 + edges_upto(x, &mut next, limit.saturating_sub(steps));
                for &y in &next {
                    never |= visit(y, &mut trial, &mut stack);
                }
                if steps > limit {
                    fits = false;
                    break;
                }
            }
            // Without `never`, each entry the walk took passed both bounds
            // as it was taken: no check is left for the end.
            fits &= !never;
            work = work.saturating_sub(steps);
            doomed[j] = never;
            if fits {
                count += trial.len() as u64;
                bytes += add;
                for &x in trial.iter().filter(|_| bound.is_some()) {
                    for &b in held_by(x) {
                        holders[b as usize] = 1;
                    }
                }
                dropped[j] = None;
            } else {
                for &x in &trial {
                    live[x] = false;
                }
            }
        }
        for j in (0..n).filter(|&j| bound.is_some() && live[j]) {
            for &b in held_by(j) {
                holders[b as usize] = 0;
            }
        }
        live
    }
}

/// Steps an evicted entry's walk may take, once the given-back budget is
/// spent (see `apply_rules`).
const SHORT_WALK: usize = 32;

/// The number of a new weighing of blobs (see `Scratch::blob_seen`): a
/// blob it has counted holds it; on wrap-around none holds it.
fn new_weighing((seen, weighing): &mut (Vec<u32>, u32)) -> u32 {
    *weighing = weighing.wrapping_add(1);
    if *weighing == 0 {
        seen.fill(0);
        *weighing = 1;
    }
    *weighing
}

/// The inventory indices of the known blobs `m` references.
fn held<'a>(m: &'a EntryMeta, blobs: &'a BlobIndex<'_>) -> impl Iterator<Item = usize> + 'a {
    m.blobs.iter().filter_map(|id| blobs.get(id))
}

/// The least `k` in `lo..=hi` for which `fits(k)` holds, where `fits` is
/// false below some `k` and true from there on, and `hi` is taken to fit
/// (unasked); with what `fits` gave for that `k`, if it was asked. `lo` is
/// asked first: where it fits, once is enough.
async fn least_fitting<P: Pause>(
    mut lo: usize,
    mut hi: usize,
    pauser: &mut P,
    fits: &mut dyn FnMut(usize) -> (bool, Vec<bool>),
) -> (usize, Option<Vec<bool>>) {
    let mut found = None;
    let mut first = true;
    while lo < hi {
        let k = if first { lo } else { lo + (hi - lo) / 2 };
        first = false;
        let (ok, t) = fits(k);
        pauser.pause().await;
        if ok {
            hi = k;
            found = Some((k, t));
        } else {
            lo = k + 1;
        }
    }
    match found {
        Some((k, t)) if k == lo => (lo, Some(t)),
        _ => (lo, None),
    }
}

/// Sorts item indices by the items' ids. Stores list in key order, so the
/// indices usually are sorted already; otherwise they are sorted by the ids'
/// first 8 bytes, kept beside the index, so that comparisons rarely have to
/// follow the ids' pointers (scattered on the heap).
fn sort_by_id<'a>(ixs: &mut Vec<Ix>, id: impl Fn(Ix) -> &'a str) {
    if ixs.windows(2).all(|w| id(w[0]) <= id(w[1])) {
        return;
    }
    let prefix = |i: Ix| {
        let bytes = id(i).as_bytes();
        let mut p = [0u8; 8];
        let n = bytes.len().min(8);
        p[..n].copy_from_slice(&bytes[..n]);
        // Zero-padded and big-endian: ordered like the ids wherever prefixes differ.
        u64::from_be_bytes(p)
    };
    let mut keyed: Vec<(u64, Ix)> = ixs.iter().map(|&i| (prefix(i), i)).collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| id(a.1).cmp(id(b.1))));
    ixs.clear();
    ixs.extend(keyed.into_iter().map(|(_, i)| i));
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

    /// Counts its pauses, and really suspends at each.
    struct Suspending {
        pauses: usize,
    }

    impl Pause for Suspending {
        async fn pause(&mut self) {
            self.pauses += 1;
            let mut waited = false;
            core::future::poll_fn(|_| {
                if core::mem::replace(&mut waited, true) {
                    core::task::Poll::Ready(())
                } else {
                    core::task::Poll::Pending
                }
            })
            .await;
        }
    }

    #[test]
    fn a_paused_plan_is_the_plan_and_pauses_all_along() {
        let mut inv = Inventory::default();
        for i in 0..20_000u64 {
            let meta = EntryMeta {
                updated_at: i,
                accessed_at: i,
                expires_at: (i % 3 == 0).then_some(5),
                group: Some(alloc::format!("g{}", i % 7)),
                refs: if i % 5 == 0 {
                    vec![alloc::format!("k{:05}", i / 2)]
                } else {
                    vec![]
                },
                ..EntryMeta::default()
            };
            inv.entries.push(entry(
                ["a", "b"][(i % 2) as usize],
                &alloc::format!("k{i:05}"),
                meta,
            ));
        }
        let mut policy = Policy::default();
        policy.rules.max_entries = Some(5_000);
        policy
            .rules
            .groups
            .insert("g1".into(), crate::policy::GroupRule { keep_last: 10 });
        let whole = plan(&inv, &policy, 100, Mode::Full);
        let mut pauser = Suspending { pauses: 0 };
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        let mut planning = core::pin::pin!(plan_with(&inv, &policy, 100, Mode::Full, &mut pauser));
        let mut polls = 0;
        let sliced = loop {
            polls += 1;
            if let core::task::Poll::Ready(p) =
                core::future::Future::poll(planning.as_mut(), &mut cx)
            {
                break p;
            }
        };
        assert_eq!(sliced, whole);
        assert!(!whole.actions.is_empty());
        // Every phase of both namespaces, and the actions in slices.
        assert!(polls > 12, "only {polls} slices");
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
