//! A token tree as llama.cpp sequences: one sequence id per root-to-leaf branch.
//!
//! llama.cpp masks attention by sequence: a batch entry attends to the cached cells that
//! carry its *first* sequence id and sit at a position up to its own. So if every branch
//! (root-to-leaf path) of the tree gets its own id, every node carries the ids of the
//! branches through it (the leaves of its subtree), and the committed context carries all
//! of them, then a node's first id names a branch through it, whose cells at positions up to
//! the node's are exactly the committed context, the node's ancestors and the node itself:
//! tree attention, exactly. Fewer ids cannot work: two leaves sharing an id would see each
//! other's branch.
//!
//! Leaves are numbered in depth-first order (first child first), so the leaves below any
//! node form one contiguous range of branches, and a node's ids are a slice of the id list.
//! Branch 0 follows first children from the root: the chain drafters put first.

use decoding_core::{NodeId, TokenTree};

/// The branches of one tree: which range of branches passes through each node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Branches {
    /// Per node, the first branch through it and one past its last.
    ranges: Vec<(u32, u32)>,
    count: usize,
    stack: Vec<NodeId>,
}

impl Branches {
    /// Computes the branches of `tree`, reusing the buffers.
    pub(crate) fn compute(&mut self, tree: &TokenTree) {
        let n = tree.len();
        self.ranges.clear();
        self.ranges.resize(n, (u32::MAX, 0));
        // Depth-first, first child first: number the leaves.
        self.count = 0;
        self.stack.clear();
        self.stack.push(0);
        while let Some(node) = self.stack.pop() {
            let before = self.stack.len();
            self.stack.extend(tree.children(node));
            if self.stack.len() == before {
                self.ranges[node] = (self.count as u32, self.count as u32 + 1);
                self.count += 1;
            } else {
                self.stack[before..].reverse();
            }
        }
        // Children come after their parents: fold the ranges up in reverse node order.
        for node in (1..n).rev() {
            let parent = tree.parent(node).expect("non-root nodes have parents");
            let (lo, hi) = self.ranges[node];
            let range = &mut self.ranges[parent];
            *range = (range.0.min(lo), range.1.max(hi));
        }
    }

    /// Number of branches (leaves).
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The branches through `node`, as a range of branch indices.
    pub(crate) fn through(&self, node: NodeId) -> std::ops::Range<usize> {
        let (lo, hi) = self.ranges[node];
        lo as usize..hi as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_carries_the_leaves_below_it_and_first_children_make_branch_zero() {
        //        0
        //      /   \
        //     1     2
        //    / \     \
        //   3   4     5
        //   |
        //   6
        let tree = TokenTree::from_parents(
            &[10, 11, 12, 13, 14, 15, 16],
            &[None, Some(0), Some(0), Some(1), Some(1), Some(2), Some(3)],
            None,
        )
        .unwrap();
        let mut b = Branches::default();
        b.compute(&tree);
        assert_eq!(b.count(), 3);
        let through: Vec<_> = (0..7).map(|n| b.through(n)).collect();
        assert_eq!(through, [0..3, 0..2, 2..3, 0..1, 1..2, 2..3, 0..1]);
        // A branch's nodes form a root path: branch 1 is 0 -> 1 -> 4.
        let branch_1: Vec<_> = (0..7).filter(|&n| b.through(n).contains(&1)).collect();
        assert_eq!(branch_1, [0, 1, 4]);
    }

    #[test]
    fn a_chain_is_one_branch() {
        let tree = TokenTree::from_chain(&[1, 2, 3, 4]).unwrap();
        let mut b = Branches::default();
        b.compute(&tree);
        assert_eq!(b.count(), 1);
        assert!((0..4).all(|n| b.through(n) == (0..1)));
    }
}
