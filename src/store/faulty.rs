//! `FaultyStore`: wraps a store and injects the faults real backends show —
//! failed calls, partially applied batches, crashes, stale and duplicate list
//! pages (Workers KV does all of these) — deterministically, from a seed.
//!
//! Tests schedule faults by call index ([`FaultyStore::fail_call`],
//! [`FaultyStore::partial_apply_at`], [`FaultyStore::crash_after`]) or draw
//! them at random per call ([`FaultRates`]). A hook runs before each call, so a
//! single-threaded test can interleave a concurrent writer between the calls
//! of a run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::memory::MemoryStore;
use super::{Capabilities, Op, Record, Store, StoreError};
use crate::model::EntryId;
use crate::store::Table;

/// A small seeded PRNG (SplitMix64): the same seed gives the same faults, on
/// every platform, with no dependency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-high: no modulo bias worth caring about at these sizes.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p` (never for `p <= 0`, always for `p >= 1`).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        ((self.next_u64() >> 11) as f64) < p * (1u64 << 53) as f64
    }
}

/// Which store method a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    List,
    Get,
    Apply,
}

/// A store call, as the hook sees it before it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Calls made through this wrapper before this one (its clones share the count).
    pub index: u64,
    pub kind: CallKind,
    /// The table listed or read; `None` for `apply`.
    pub table: Option<Table>,
    /// `Put`s and `Delete`s in the batch (0 for `list` and `get`).
    pub writes: usize,
    /// The page size asked for (0 for `get` and `apply`).
    pub limit: usize,
}

/// A fault to inject into one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with `StoreError::Backend` without touching the store.
    Fail,
    /// `apply` checks every `Op::Expect` as the inner store would (a failed
    /// one fails the batch with its `Conflict`, writing nothing), applies only
    /// the first `n` writes, then fails with `StoreError::Backend`. With `n`
    /// at least the batch's writes, everything is applied and the success is
    /// lost. On `list` and `get` it acts as `Fail`.
    PartialApply(usize),
    /// The call takes effect, then its caller "crashes": the call returns
    /// `StoreError::Closed`, and so does every later call until `recover`.
    CrashAfter,
    /// `list` serves the page from the last snapshot, when that page ends the
    /// listing exactly where the live one does (full pages stay full, short
    /// stay short), so the `Store::list` contract holds.
    StalePage,
    /// `list` returns one record twice: the record before the cursor again
    /// (an inclusive cursor) or a record of the page repeated in place.
    /// The page stays at most `limit` long, so nothing is skipped.
    DuplicateRecord,
    /// `list` returns at most `n` records (never `limit`) although more may
    /// follow. The `Store::list` contract reads a short page as the end of
    /// the listing, so this truncates listings: for demonstrating, not for
    /// runs that should pass.
    ShortPage(usize),
}

/// Per-call probabilities of random faults, each in `[0, 1]`. All zero by default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultRates {
    pub fail: f64,
    /// The number of writes applied is drawn uniformly from `0..=writes`.
    pub partial_apply: f64,
    pub crash: f64,
    /// Only while a snapshot is held.
    pub stale_page: f64,
    pub duplicate_record: f64,
    /// Contract-breaking (see [`Fault::ShortPage`]).
    pub short_page: f64,
}

/// What was injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Calls made (refused ones while crashed included).
    pub calls: u64,
    pub failed: u64,
    pub partial_applies: u64,
    /// Writes past a cut that a partial apply made too (see `Store::apply`).
    pub scattered_writes: u64,
    pub crashes: u64,
    pub stale_pages: u64,
    pub duplicate_records: u64,
    pub short_pages: u64,
    /// Calls refused with `Closed` because the store had crashed.
    pub refused: u64,
}

impl FaultStats {
    /// Faults injected, refused calls after a crash not counted.
    pub fn injected(&self) -> u64 {
        self.failed
            + self.partial_applies
            + self.crashes
            + self.stale_pages
            + self.duplicate_records
            + self.short_pages
    }
}

type Hook = Box<dyn FnMut(&Call)>;

struct FaultState {
    rng: SplitMix64,
    rates: FaultRates,
    scheduled: BTreeMap<u64, Fault>,
    crashed: bool,
    snapshot: Option<MemoryStore>,
    hook: Option<Hook>,
    stats: FaultStats,
    /// What `atomic()` answers; `None`: whatever the inner store answers.
    atomic: Option<bool>,
    /// False: the store has no compare-and-set; `apply` ignores `Op::Expect`.
    compare_and_set: bool,
}

/// A store that injects faults into calls to `inner`. Clones share the
/// schedule, the crash state, the hook and the counters.
#[derive(Clone)]
pub struct FaultyStore<S: Store + Clone> {
    inner: S,
    state: Rc<RefCell<FaultState>>,
}

impl<S: Store + Clone> FaultyStore<S> {
    /// A wrapper that injects nothing until told to; `seed` drives random faults.
    pub fn new(inner: S, seed: u64) -> Self {
        FaultyStore {
            inner,
            state: Rc::new(RefCell::new(FaultState {
                rng: SplitMix64::new(seed),
                rates: FaultRates::default(),
                scheduled: BTreeMap::new(),
                crashed: false,
                snapshot: None,
                hook: None,
                stats: FaultStats::default(),
                atomic: None,
                compare_and_set: true,
            })),
        }
    }

    /// The wrapped store: calls to it bypass every fault and the hook.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Presents the wrapper as a backend that applies batches atomically or
    /// not, whatever the inner store does. Writers stage temps only on
    /// non-atomic stores; on a store presented as atomic, random partial
    /// applies apply all of a batch or none of it (a lost acknowledgement or a
    /// plain failure), never a prefix.
    pub fn set_atomic(&self, atomic: bool) {
        self.state.borrow_mut().atomic = Some(atomic);
    }

    /// Presents the wrapper as a backend without compare-and-set (Workers
    /// KV): it says so in its capabilities, and `apply` writes without
    /// checking any `Op::Expect`.
    pub fn set_compare_and_set(&self, compare_and_set: bool) {
        self.state.borrow_mut().compare_and_set = compare_and_set;
    }

    pub fn set_rates(&self, rates: FaultRates) {
        self.state.borrow_mut().rates = rates;
    }

    pub fn rates(&self) -> FaultRates {
        self.state.borrow().rates
    }

    /// Injects `fault` into the call with this index (see [`FaultyStore::calls`]).
    pub fn schedule(&self, index: u64, fault: Fault) {
        self.state.borrow_mut().scheduled.insert(index, fault);
    }

    /// Fails call `index` with `StoreError::Backend`.
    pub fn fail_call(&self, index: u64) {
        self.schedule(index, Fault::Fail);
    }

    /// Applies only the first `writes` writes of call `index` (an `apply`).
    pub fn partial_apply_at(&self, index: u64, writes: usize) {
        self.schedule(index, Fault::PartialApply(writes));
    }

    /// Lets call `index` take effect, then crashes.
    pub fn crash_after(&self, index: u64) {
        self.schedule(index, Fault::CrashAfter);
    }

    /// Forgets every scheduled fault (random rates stay).
    pub fn clear_scheduled(&self) {
        self.state.borrow_mut().scheduled.clear();
    }

    /// Calls made so far: the index the next call gets.
    pub fn calls(&self) -> u64 {
        self.state.borrow().stats.calls
    }

    /// Crashes now: every call fails with `StoreError::Closed` until `recover`.
    pub fn crash(&self) {
        self.state.borrow_mut().crashed = true;
    }

    pub fn is_crashed(&self) -> bool {
        self.state.borrow().crashed
    }

    /// Ends a crash: calls reach the store again (a restarted process).
    pub fn recover(&self) {
        self.state.borrow_mut().crashed = false;
    }

    /// Runs `hook` before each call (not while crashed, and not for calls the
    /// hook itself makes through this wrapper).
    pub fn set_hook(&self, hook: impl FnMut(&Call) + 'static) {
        self.state.borrow_mut().hook = Some(Box::new(hook));
    }

    pub fn clear_hook(&self) {
        self.state.borrow_mut().hook = None;
    }

    pub fn stats(&self) -> FaultStats {
        self.state.borrow().stats
    }

    /// Copies every table of the inner store; stale pages are served from
    /// this copy until the next snapshot.
    pub async fn snapshot(&self) -> Result<(), StoreError> {
        const PAGE: usize = 1024;
        let copy = MemoryStore::new();
        for table in Table::ALL {
            let mut after: Option<EntryId> = None;
            loop {
                let page = self.inner.list(table, after.as_ref(), PAGE).await?;
                let n = page.len();
                after = page.last().map(|(k, _)| k.clone());
                let ops = page
                    .into_iter()
                    .map(|(k, v)| Op::Put(table, k, v))
                    .collect();
                copy.apply(ops).await?;
                if n < PAGE {
                    break;
                }
            }
        }
        self.state.borrow_mut().snapshot = Some(copy);
        Ok(())
    }

    pub fn drop_snapshot(&self) {
        self.state.borrow_mut().snapshot = None;
    }

    /// Counts the call, runs the hook, and picks its fault; `Err` when the
    /// store has crashed or the call simply fails.
    fn begin(
        &self,
        kind: CallKind,
        table: Option<Table>,
        writes: usize,
        limit: usize,
    ) -> Result<Option<Fault>, StoreError> {
        let call = {
            let mut st = self.state.borrow_mut();
            st.stats.calls += 1;
            if st.crashed {
                st.stats.refused += 1;
                return Err(StoreError::Closed("the store crashed (injected)".into()));
            }
            Call {
                index: st.stats.calls - 1,
                kind,
                table,
                writes,
                limit,
            }
        };
        // Take the hook out while it runs: calls it makes here see no hook.
        let hook = self.state.borrow_mut().hook.take();
        if let Some(mut hook) = hook {
            hook(&call);
            let mut st = self.state.borrow_mut();
            if st.hook.is_none() {
                st.hook = Some(hook);
            }
        }
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let atomic = st
            .atomic
            .unwrap_or_else(|| self.inner.capabilities().atomic);
        let fault = match st.scheduled.remove(&call.index) {
            Some(f) => Some(f),
            None => random_fault(&mut st.rng, &st.rates, &call, st.snapshot.is_some(), atomic),
        };
        match fault {
            Some(Fault::Fail) => {
                st.stats.failed += 1;
                Err(StoreError::Backend(format!(
                    "call {} failed (injected)",
                    call.index
                )))
            }
            Some(Fault::PartialApply(_)) if kind != CallKind::Apply => {
                st.stats.failed += 1;
                Err(StoreError::Backend(format!(
                    "call {} failed (injected)",
                    call.index
                )))
            }
            Some(Fault::StalePage | Fault::DuplicateRecord | Fault::ShortPage(_))
                if kind != CallKind::List =>
            {
                Ok(None)
            }
            Some(Fault::StalePage) if st.snapshot.is_none() => Ok(None),
            other => {
                match other {
                    Some(Fault::PartialApply(_)) => st.stats.partial_applies += 1,
                    Some(Fault::CrashAfter) => st.stats.crashes += 1,
                    Some(Fault::StalePage) => st.stats.stale_pages += 1,
                    Some(Fault::DuplicateRecord) => st.stats.duplicate_records += 1,
                    Some(Fault::ShortPage(_)) => st.stats.short_pages += 1,
                    _ => {}
                }
                Ok(other)
            }
        }
    }

    fn crash_now(&self) -> StoreError {
        self.crash();
        StoreError::Closed("the store crashed after this call took effect (injected)".into())
    }
}

/// Draws a random fault that fits the call, in a fixed order so that the same
/// seed and the same calls give the same faults.
fn random_fault(
    rng: &mut SplitMix64,
    rates: &FaultRates,
    call: &Call,
    has_snapshot: bool,
    atomic: bool,
) -> Option<Fault> {
    if rng.chance(rates.fail) {
        return Some(Fault::Fail);
    }
    if rng.chance(rates.crash) {
        return Some(Fault::CrashAfter);
    }
    match call.kind {
        CallKind::Apply if call.writes > 0 && rng.chance(rates.partial_apply) => {
            let n = if atomic {
                call.writes * rng.below(2) as usize
            } else {
                rng.below(call.writes as u64 + 1) as usize
            };
            Some(Fault::PartialApply(n))
        }
        CallKind::List => {
            if has_snapshot && rng.chance(rates.stale_page) {
                Some(Fault::StalePage)
            } else if rng.chance(rates.duplicate_record) {
                Some(Fault::DuplicateRecord)
            } else if rng.chance(rates.short_page) {
                Some(Fault::ShortPage(rng.below(call.limit as u64) as usize))
            } else {
                None
            }
        }
        _ => None,
    }
}

impl<S: Store + Clone> Store for FaultyStore<S> {
    async fn list(
        &self,
        table: Table,
        after: Option<&EntryId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let fault = self.begin(CallKind::List, Some(table), 0, limit)?;
        let live = self.inner.list(table, after, limit).await;
        let mut page = match fault {
            Some(Fault::CrashAfter) => return Err(self.crash_now()),
            _ => live?,
        };
        match fault {
            Some(Fault::StalePage) => {
                let snapshot = self.state.borrow().snapshot.clone();
                if let Some(snapshot) = snapshot {
                    let stale = snapshot.list(table, after, limit).await?;
                    // Serve it only if the listing ends where the live one does.
                    if (stale.len() < limit) == (page.len() < limit) {
                        page = stale;
                    }
                }
            }
            Some(Fault::DuplicateRecord) => {
                let (inclusive, at) = {
                    let mut st = self.state.borrow_mut();
                    let inclusive = st.rng.chance(0.5);
                    (inclusive, st.rng.below(page.len() as u64) as usize)
                };
                // An inclusive cursor needs room for progress: `limit >= 2`.
                let again = match after {
                    Some(k) if inclusive && limit >= 2 => self
                        .inner
                        .get(table, std::slice::from_ref(k))
                        .await?
                        .pop()
                        .flatten()
                        .map(|v| (k.clone(), v)),
                    _ => None,
                };
                match again {
                    Some(record) => page.insert(0, record),
                    None if !page.is_empty() => {
                        let record = page[at].clone();
                        page.insert(at + 1, record);
                    }
                    None => {}
                }
                page.truncate(limit);
            }
            Some(Fault::ShortPage(n)) => page.truncate(n.min(limit.saturating_sub(1))),
            _ => {}
        }
        Ok(page)
    }

    async fn get(
        &self,
        table: Table,
        keys: &[EntryId],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let fault = self.begin(CallKind::Get, Some(table), 0, 0)?;
        let got = self.inner.get(table, keys).await;
        match fault {
            Some(Fault::CrashAfter) => Err(self.crash_now()),
            _ => got,
        }
    }

    /// The inner store's, without its transactions (every call here is one
    /// faulty call), and atomic or not as set.
    fn capabilities(&self) -> Capabilities {
        let (claimed, cas) = {
            let st = self.state.borrow();
            (st.atomic, st.compare_and_set)
        };
        let inner = self.inner.capabilities();
        Capabilities {
            atomic: claimed.unwrap_or(inner.atomic),
            transactions: false,
            range_delete: false,
            compare_and_set: cas && inner.compare_and_set,
            ..inner
        }
    }

    async fn apply(&self, mut ops: Vec<Op>) -> Result<(), StoreError> {
        if !self.state.borrow().compare_and_set {
            ops.retain(|op| !matches!(op, Op::Expect(..)));
        }
        let writes = ops
            .iter()
            .filter(|op| !matches!(op, Op::Expect(..)))
            .count();
        match self.begin(CallKind::Apply, None, writes, 0)? {
            Some(Fault::PartialApply(n)) => {
                // Every Expect first (as the contract checks them), then the
                // writes before the cut, and on a store that is not atomic
                // some of the run the cut falls in (see `Store::apply`).
                let (mut prefix, rest): (Vec<Op>, Vec<Op>) =
                    ops.into_iter().partition(|op| matches!(op, Op::Expect(..)));
                let applied = n.min(rest.len());
                let scattered = if self.capabilities().atomic {
                    Vec::new()
                } else {
                    scattered_past(&rest, applied)
                };
                let landed = applied + scattered.len();
                self.state.borrow_mut().stats.scattered_writes += scattered.len() as u64;
                prefix.extend(rest[..applied].iter().cloned());
                prefix.extend(scattered.into_iter().map(|i| rest[i].clone()));
                self.inner.apply(prefix).await?;
                Err(StoreError::Backend(format!(
                    "batch partially applied: {landed} of {writes} writes (injected)"
                )))
            }
            Some(Fault::CrashAfter) => {
                let _ = self.inner.apply(ops).await;
                Err(self.crash_now())
            }
            _ => self.inner.apply(ops).await,
        }
    }
}

/// Which writes past a cut at `cut` a store that is not atomic may also have
/// made: some of the run the cut falls in (consecutive puts, or deletes, to
/// values or to temps, each of another key), chosen by a hash of the
/// positions, as a backend making the run's writes at once leaves them (see
/// `Store::apply`).
fn scattered_past(writes: &[Op], cut: usize) -> Vec<usize> {
    let kind = |op: &Op| match op {
        Op::Delete(t @ (Table::Values | Table::Temps), _) => Some((*t, false)),
        Op::Put(t @ (Table::Values | Table::Temps), ..) => Some((*t, true)),
        _ => None,
    };
    let key = |op: &Op| match op {
        Op::Delete(_, k) | Op::Put(_, k, _) => Some(k.clone()),
        _ => None,
    };
    let Some(run) = writes.get(cut).and_then(kind) else {
        return Vec::new();
    };
    // The stretch of writes of that kind around the cut, cut into runs of
    // distinct keys as a backend makes them (a repeated key begins the next
    // run): the run the cut falls in is the one to scatter.
    let mut start = cut;
    while start > 0 && kind(&writes[start - 1]) == Some(run) {
        start -= 1;
    }
    let mut seen: Vec<EntryId> = Vec::new();
    let mut out = Vec::new();
    for (i, op) in writes.iter().enumerate().skip(start) {
        let Some(k) = key(op).filter(|_| kind(op) == Some(run)) else {
            break;
        };
        if seen.contains(&k) {
            if i > cut {
                break;
            }
            seen.clear();
        }
        seen.push(k);
        let mixed = (cut as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (i as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        if i > cut && mixed.rotate_left(29) & 1 == 1 {
            out.push(i);
        }
    }
    out
}

/// Polls a future once and returns its output: for futures over in-memory
/// stores, which are ready at once, where `block_on` may not nest (inside a
/// hook). A test utility: panics if the future is not ready.
pub fn ready<F: std::future::Future>(fut: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    match std::pin::pin!(fut).poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a store future over MemoryStore was not ready"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{id_key, stamp};

    fn put(k: &str, v: &[u8]) -> Op {
        Op::Put(Table::Meta, id_key(k), v.to_vec())
    }

    fn store_with(keys: &[&str]) -> FaultyStore<MemoryStore> {
        let inner = MemoryStore::new();
        ready(inner.apply(keys.iter().map(|k| put(k, k.as_bytes())).collect())).unwrap();
        FaultyStore::new(inner, 1)
    }

    fn keys(page: &[Record]) -> Vec<&str> {
        page.iter().map(|(k, _)| k.key.as_str()).collect()
    }

    #[test]
    fn scheduled_call_fails_without_touching_the_store() {
        let s = store_with(&[]);
        s.fail_call(1);
        ready(s.apply(vec![put("a", b"1")])).unwrap();
        let err = ready(s.apply(vec![put("b", b"2")])).unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)));
        ready(s.apply(vec![put("c", b"3")])).unwrap();
        assert_eq!(s.inner().keys(Table::Meta), vec![id_key("a"), id_key("c")]);
        assert_eq!(s.stats().failed, 1);
    }

    #[test]
    fn partial_apply_writes_a_prefix_and_only_if_every_expect_holds() {
        let s = store_with(&["x"]);
        let expect_x = Op::Expect(Table::Meta, id_key("x"), Some(stamp(b"x")));
        s.partial_apply_at(0, 1);
        let err =
            ready(s.apply(vec![put("a", b"1"), expect_x.clone(), put("b", b"2")])).unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)));
        assert_eq!(s.inner().keys(Table::Meta), vec![id_key("a"), id_key("x")]);
        // A failing Expect fails the batch as the inner store would: nothing written.
        s.partial_apply_at(1, 1);
        let stale = Op::Expect(Table::Meta, id_key("x"), Some(stamp(b"other")));
        let err = ready(s.apply(vec![put("c", b"3"), stale])).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)));
        assert_eq!(s.inner().count(Table::Meta), 2);
    }

    /// `ops` applied, cut at `cut`, on a store that is not atomic holding
    /// the value records `values`: the store, and the values left.
    fn cut_over_values(
        values: &[&str],
        ops: Vec<Op>,
        cut: usize,
    ) -> (FaultyStore<MemoryStore>, Vec<String>) {
        let inner = MemoryStore::new();
        let fill = values
            .iter()
            .map(|k| Op::Put(Table::Values, id_key(k), b"v".to_vec()));
        ready(inner.apply(fill.collect())).unwrap();
        let s = FaultyStore::new(inner, 1);
        s.set_atomic(false);
        s.partial_apply_at(0, cut);
        assert!(ready(s.apply(ops)).is_err());
        let there = s
            .inner()
            .keys(Table::Values)
            .iter()
            .map(|k| k.key.clone())
            .collect();
        (s, there)
    }

    #[test]
    fn partial_apply_on_a_store_not_atomic_may_land_part_of_a_run_of_value_or_temp_writes() {
        // Runs: value deletes a..f, a temp write x, value deletes g, h; then
        // entry records i, j (never past a cut: their order may matter).
        let names = ["a", "b", "c", "d", "e", "f", "x", "g", "h", "i", "j"];
        let ops = || -> Vec<Op> {
            names
                .iter()
                .map(|k| match *k {
                    "x" => Op::Put(Table::Temps, id_key(k), b"t".to_vec()),
                    "i" | "j" => put(k, b"new"),
                    _ => Op::Delete(Table::Values, id_key(k)),
                })
                .collect()
        };
        let values = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let mut scattered = 0;
        for cut in 0..names.len() {
            let (s, there) = cut_over_values(&values, ops(), cut);
            let gone: Vec<&str> = values
                .into_iter()
                .filter(|k| !there.iter().any(|t| t == k))
                .collect();
            let before = &names[..cut];
            for k in before.iter().filter(|k| values.contains(k)) {
                assert!(gone.contains(k), "cut {cut}: {k} still there");
            }
            let temp = s.inner().count(Table::Temps) == 1;
            assert_eq!(temp, before.contains(&"x"), "cut {cut}: the temp");
            let records: Vec<String> = s
                .inner()
                .keys(Table::Meta)
                .iter()
                .map(|k| k.key.clone())
                .collect();
            let written: Vec<&str> = ["i", "j"]
                .into_iter()
                .filter(|k| before.contains(k))
                .collect();
            assert_eq!(records, written, "cut {cut}: entry records");
            // Past the cut, only deletes of the run it falls in.
            let past: Vec<&&str> = gone.iter().filter(|k| !before.contains(k)).collect();
            let run: &[&str] = match cut {
                0..=5 => &["a", "b", "c", "d", "e", "f"],
                7..=8 => &["g", "h"],
                _ => &[],
            };
            assert!(past.iter().all(|k| run.contains(k)), "cut {cut}: {past:?}");
            scattered += past.len();
        }
        assert!(scattered > 0, "no cut landed a delete past it");
        // A repeated key begins the next run: a cut before it never lands
        // what follows it, and one after it may land the rest of its run.
        let repeated = || -> Vec<Op> {
            ["a", "b", "a", "c", "d"]
                .iter()
                .map(|k| Op::Delete(Table::Values, id_key(k)))
                .collect()
        };
        let mut after_repeat = 0;
        for cut in 0..5 {
            let (_, there) = cut_over_values(&["a", "b", "c", "d"], repeated(), cut);
            if cut < 2 {
                assert!(
                    there.contains(&"c".to_string()) && there.contains(&"d".to_string()),
                    "cut {cut}: {there:?}"
                );
            } else {
                // c at 3, d at 4: gone though at or past the cut.
                let past = [("c", 3), ("d", 4)]
                    .into_iter()
                    .filter(|&(_, at)| at >= cut);
                after_repeat += past
                    .filter(|(k, _)| !there.contains(&k.to_string()))
                    .count();
            }
        }
        assert!(
            after_repeat > 0,
            "no cut after the repeat landed the rest of its run"
        );
        // Nor past a cut in a run of entry records, or on an atomic store.
        for atomic in [false, true] {
            let s = store_with(&[]);
            s.set_atomic(atomic);
            s.partial_apply_at(0, 1);
            let records: Vec<Op> = ["a", "b", "c", "d", "e", "f"]
                .iter()
                .map(|k| put(k, b"1"))
                .collect();
            assert!(ready(s.apply(records)).is_err());
            assert_eq!(s.inner().keys(Table::Meta), vec![id_key("a")]);
        }
    }

    #[test]
    fn crash_lets_the_call_land_then_refuses_everything_until_recover() {
        let s = store_with(&[]);
        s.crash_after(0);
        let err = ready(s.apply(vec![put("a", b"1")])).unwrap_err();
        assert!(matches!(err, StoreError::Closed(_)));
        assert_eq!(s.inner().count(Table::Meta), 1);
        assert!(ready(s.get(Table::Meta, &[id_key("a")])).is_err());
        assert!(ready(s.list(Table::Meta, None, 10)).is_err());
        s.recover();
        assert_eq!(ready(s.list(Table::Meta, None, 10)).unwrap().len(), 1);
        assert_eq!(s.stats().refused, 2);
    }

    #[test]
    fn stale_page_comes_from_the_snapshot_and_ends_where_the_live_listing_ends() {
        let s = store_with(&["a", "b", "c"]);
        ready(s.snapshot()).unwrap();
        ready(
            s.inner()
                .apply(vec![Op::Delete(Table::Meta, id_key("b")), put("d", b"d")]),
        )
        .unwrap();
        s.schedule(0, Fault::StalePage);
        assert_eq!(
            keys(&ready(s.list(Table::Meta, None, 2)).unwrap()),
            ["a", "b"]
        );
        // Live after "b": [c, d] (full); snapshot: [c] (short). The live page is served.
        s.schedule(1, Fault::StalePage);
        let page = ready(s.list(Table::Meta, Some(&id_key("b")), 2)).unwrap();
        assert_eq!(keys(&page), ["c", "d"]);
    }

    #[test]
    fn duplicate_records_never_exceed_the_limit_nor_skip_a_record() {
        let names: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let s = store_with(&refs);
        s.set_rates(FaultRates {
            duplicate_record: 1.0,
            ..FaultRates::default()
        });
        for limit in 1..6 {
            let mut seen: Vec<String> = Vec::new();
            let mut after: Option<EntryId> = None;
            loop {
                let page = ready(s.list(Table::Meta, after.as_ref(), limit)).unwrap();
                assert!(page.len() <= limit);
                after = page.last().map(|(k, _)| k.clone());
                seen.extend(page.iter().map(|(k, _)| k.key.clone()));
                if page.len() < limit {
                    break;
                }
            }
            seen.dedup();
            assert_eq!(seen, names, "limit {limit}");
        }
        assert!(s.stats().duplicate_records > 0);
    }

    #[test]
    fn hook_runs_before_each_call_and_not_for_its_own_calls() {
        let s = store_with(&[]);
        let seen: Rc<RefCell<Vec<(u64, CallKind)>>> = Rc::default();
        let (log, inner) = (seen.clone(), s.clone());
        s.set_hook(move |call| {
            log.borrow_mut().push((call.index, call.kind));
            // A writer racing the caller: it lands before the call runs.
            ready(inner.apply(vec![put(&format!("w{}", call.index), b"w")])).unwrap();
        });
        assert_eq!(ready(s.list(Table::Meta, None, 10)).unwrap().len(), 1);
        ready(s.get(Table::Meta, &[id_key("w0")])).unwrap();
        assert_eq!(
            *seen.borrow(),
            // The hook's own apply is call 1 and runs unhooked.
            [(0, CallKind::List), (2, CallKind::Get)]
        );
    }

    #[test]
    fn same_seed_same_faults() {
        let run = |seed| {
            let s = FaultyStore::new(MemoryStore::new(), seed);
            s.set_rates(FaultRates {
                fail: 0.3,
                partial_apply: 0.3,
                ..FaultRates::default()
            });
            (0..64)
                .map(|i| ready(s.apply(vec![put(&format!("{i}"), b"v"), put("z", b"v")])).is_ok())
                .collect::<Vec<bool>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
