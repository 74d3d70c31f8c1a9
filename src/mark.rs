//! Reachability: which nodes a set of roots reaches through references. Cycles terminate.

use alloc::vec;
use alloc::vec::Vec;

/// Marks every node reachable from `roots` (inclusive). `edges(i, out)` pushes
/// the successors of node `i` onto `out`; successors out of range are ignored.
pub fn mark_reachable<F>(
    nodes: usize,
    roots: impl IntoIterator<Item = usize>,
    mut edges: F,
) -> Vec<bool>
where
    F: FnMut(usize, &mut Vec<usize>),
{
    let mut live = vec![false; nodes];
    let mut stack: Vec<usize> = Vec::new();
    for r in roots {
        if r < nodes && !live[r] {
            live[r] = true;
            stack.push(r);
        }
    }
    let mut next = Vec::new();
    while let Some(i) = stack.pop() {
        next.clear();
        edges(i, &mut next);
        for &j in &next {
            if j < nodes && !live[j] {
                live[j] = true;
                stack.push(j);
            }
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_terminate_and_unreached_nodes_stay_unmarked() {
        // 0 -> 1 -> 2 -> 0, 3 -> 0, 4 alone
        let adj: Vec<Vec<usize>> = vec![vec![1], vec![2], vec![0], vec![0], vec![]];
        let live = mark_reachable(5, [0], |i, out| out.extend_from_slice(&adj[i]));
        assert_eq!(live, vec![true, true, true, false, false]);
    }
}
