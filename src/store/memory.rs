//! `MemoryStore`: the store in a `BTreeMap`, for tests, demos and Node.

use crate::error::Quoted;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use super::{
    Access, Capabilities, DynStep, Op, Read, Reads, Record, Step, Store, StoreError, Table,
};
use crate::error::Error;
use crate::model::EntryId;

/// Every record of every table, in key order.
type Records = BTreeMap<(Table, EntryId), Vec<u8>>;

/// An in-memory store. Clones share the same records.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    records: Rc<RefCell<Records>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records `table` holds.
    pub fn count(&self, table: Table) -> usize {
        self.records
            .borrow()
            .keys()
            .filter(|(t, _)| *t == table)
            .count()
    }

    /// The keys of `table`, in order.
    pub fn keys(&self, table: Table) -> Vec<EntryId> {
        let records = self.records.borrow();
        records
            .keys()
            .filter(|(t, _)| *t == table)
            .map(|(_, k)| k.clone())
            .collect()
    }
}

impl Store for MemoryStore {
    async fn list(
        &self,
        table: Table,
        after: Option<&EntryId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let records = self.records.borrow();
        let start = match after {
            Some(k) => Bound::Excluded((table, k.clone())),
            None => Bound::Included((table, EntryId::new("", ""))),
        };
        Ok(records
            .range((start, Bound::Unbounded))
            .take_while(|((t, _), _)| *t == table)
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn get(
        &self,
        table: Table,
        keys: &[EntryId],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let records = self.records.borrow();
        Ok(keys
            .iter()
            .map(|k| records.get(&(table, k.clone())).cloned())
            .collect())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::transactional()
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.apply_now(ops)
    }

    /// A real transaction: the step runs against the records with no await in
    /// between, so no other task can write meanwhile.
    async fn transact_dyn(
        &self,
        _: Access,
        _: &[Table],
        step: &mut DynStep<'_>,
    ) -> Result<(), Error> {
        let mut reads = Reads::default();
        loop {
            match step(&reads)? {
                Step::Read(wanted) => {
                    let records = self.records.borrow();
                    for r in wanted {
                        match r {
                            Read::Key(t, k) => {
                                let v = records.get(&(t, k.clone())).cloned();
                                reads.insert(t, k, v);
                            }
                            Read::Range(t, from, to) => {
                                let found = range(&records, t, &from, &to)
                                    .into_iter()
                                    .map(|((_, k), v)| (k.clone(), v.clone()))
                                    .collect();
                                reads.insert_range(t, from, to, found);
                            }
                        }
                    }
                }
                Step::Write(ops, out) => {
                    self.apply_now(ops)?;
                    return Ok(out);
                }
                Step::Done(out) => return Ok(out),
            }
        }
    }
}

fn range<'a>(
    records: &'a Records,
    table: Table,
    from: &EntryId,
    to: &EntryId,
) -> Vec<(&'a (Table, EntryId), &'a Vec<u8>)> {
    // A range whose start is after its end holds nothing (BTreeMap would panic).
    if from > to {
        return Vec::new();
    }
    records
        .range((
            Bound::Included((table, from.clone())),
            Bound::Included((table, to.clone())),
        ))
        .collect()
}

impl MemoryStore {
    fn apply_now(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut records = self.records.borrow_mut();
        for op in &ops {
            if let Op::Expect(t, k, want) = op {
                let have = records.get(&(*t, k.clone())).map(|v| super::stamp(v));
                if have != *want {
                    return Err(StoreError::Conflict(format!(
                        "{} record {} in namespace {}",
                        t.name(),
                        Quoted(&k.key),
                        Quoted(&k.namespace)
                    )));
                }
            }
        }
        for op in ops {
            match op {
                Op::Put(t, k, v) => {
                    records.insert((t, k), v);
                }
                Op::Delete(t, k) => {
                    records.remove(&(t, k));
                }
                Op::DeleteRange(t, from, to) => {
                    let doomed: Vec<(Table, EntryId)> = range(&records, t, &from, &to)
                        .into_iter()
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        records.remove(&k);
                    }
                }
                Op::Expect(..) => {}
            }
        }
        Ok(())
    }
}
