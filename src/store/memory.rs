//! `MemoryStore`: the store in a `BTreeMap`, for tests, demos and Node.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use super::{Op, Record, Store, StoreError, Table};
use crate::model::EntryId;

/// Every record of every table, in key order.
type Records = BTreeMap<(Table, EntryId), Vec<u8>>;

/// An in-memory store. Clones share the same records.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    records: Rc<RefCell<Records>>,
}

impl MemoryStore {
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

    fn atomic(&self) -> bool {
        true
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut records = self.records.borrow_mut();
        for op in &ops {
            if let Op::Expect(t, k, want) = op {
                let have = records.get(&(*t, k.clone())).map(|v| super::stamp(v));
                if have != *want {
                    return Err(StoreError::Conflict(format!("{} record {k:?}", t.name())));
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
                Op::Expect(..) => {}
            }
        }
        Ok(())
    }
}
