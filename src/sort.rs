//! One stable sort for every list the crate orders. Each `sort_by` call is a
//! copy of the standard sort for its element type and comparator (1–3 KB of
//! the .wasm each); these helpers sort `u32` indices under a `dyn` comparator,
//! so the module holds a single copy. Stable, they order exactly as `sort_by`.

use alloc::vec::Vec;
use core::cmp::Ordering;

/// Sorts `ixs` under `cmp`, stably.
pub fn sort_ixs_by(ixs: &mut [u32], cmp: &dyn Fn(u32, u32) -> Ordering) {
    ixs.sort_by(|&a, &b| cmp(a, b));
}

/// Sorts `items` under `cmp`, stably: what `items.sort_by(cmp)` does.
pub fn sort_by<T>(items: &mut [T], cmp: impl Fn(&T, &T) -> Ordering) {
    let mut order: Vec<u32> = (0..items.len() as u32).collect();
    sort_ixs_by(&mut order, &|a, b| {
        cmp(&items[a as usize], &items[b as usize])
    });
    // Put the item `order[k]` names at `k`, one cycle of the permutation at a time.
    for start in 0..items.len() {
        let mut k = start;
        loop {
            let from = order[k] as usize;
            order[k] = k as u32;
            if from == start {
                break;
            }
            items.swap(k, from);
            k = from;
        }
    }
}

/// Sorts `items` in their order: what `items.sort()` does.
pub fn sort<T: Ord>(items: &mut [T]) {
    sort_by(items, T::cmp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn sort_by_orders_as_the_standard_stable_sort_does() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in [0, 1, 2, 3, 7, 20, 21, 64, 500, 5000] {
            let items: Vec<(u8, u32)> = (0..len)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x % 7) as u8, i)
                })
                .collect();
            let mut want = items.clone();
            want.sort_by_key(|a| a.0);
            let mut got = items.clone();
            sort_by(&mut got, |a, b| a.0.cmp(&b.0));
            assert_eq!(got, want, "len {len}");
        }
        let mut words = vec!["b", "a", "c", "a"];
        sort(&mut words);
        assert_eq!(words, ["a", "a", "b", "c"]);
    }
}
