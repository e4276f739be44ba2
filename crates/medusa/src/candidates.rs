//! Candidate tree shapes: which (head, rank) combinations a step drafts.
//!
//! A *choice* is a path of ranks `[r_1, ..., r_d]`: the node at depth `d` below the root
//! carries head `d - 1`'s candidate of rank `r_d` (0 = its best), below the node of choice
//! `[r_1, ..., r_{d-1}]`. The Medusa paper writes the same lists with its 1-based heads
//! (head `d` fills depth `d`); `medusa_choices.py` of the reference implementation uses
//! exactly these 0-based rank paths.

use crate::accuracy::RankAccuracies;
use crate::error::MedusaError;

/// Largest candidate tree accepted (root included), to catch Cartesian products that
/// explode; a step's node budget usually cuts much earlier.
pub const MAX_CANDIDATE_NODES: usize = 1 << 16;

/// The paper's default sparse tree for Vicuna-7B (`mc_sim_7b_63` in the reference
/// implementation's `medusa_choices.py`): 63 choices, 64 nodes with the root, 4 deep.
pub const MC_SIM_7B_63: &[&[usize]] = &[
    &[0],
    &[0, 0],
    &[1],
    &[0, 1],
    &[2],
    &[0, 0, 0],
    &[1, 0],
    &[0, 2],
    &[3],
    &[0, 3],
    &[4],
    &[0, 4],
    &[2, 0],
    &[0, 5],
    &[0, 0, 1],
    &[5],
    &[0, 6],
    &[6],
    &[0, 7],
    &[0, 1, 0],
    &[1, 1],
    &[7],
    &[0, 8],
    &[0, 0, 2],
    &[3, 0],
    &[0, 9],
    &[8],
    &[9],
    &[1, 0, 0],
    &[0, 2, 0],
    &[1, 2],
    &[0, 0, 3],
    &[4, 0],
    &[2, 1],
    &[0, 0, 4],
    &[0, 0, 5],
    &[0, 0, 0, 0],
    &[0, 1, 1],
    &[0, 0, 6],
    &[0, 3, 0],
    &[5, 0],
    &[1, 3],
    &[0, 0, 7],
    &[0, 0, 8],
    &[0, 0, 9],
    &[6, 0],
    &[0, 4, 0],
    &[1, 4],
    &[7, 0],
    &[0, 1, 2],
    &[2, 0, 0],
    &[3, 1],
    &[2, 2],
    &[8, 0],
    &[0, 5, 0],
    &[1, 5],
    &[1, 0, 1],
    &[0, 2, 1],
    &[9, 0],
    &[0, 6, 0],
    &[0, 0, 0, 1],
    &[1, 6],
    &[0, 7, 0],
];

/// One node of a candidate tree (node 0 is the root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandidateNode {
    /// The parent node (0 for depth-1 nodes; the root's own entry is 0 too).
    pub parent: usize,
    /// Depth below the root: the node holds a candidate of head `depth - 1`.
    pub depth: usize,
    /// The candidate's rank in its head's ordering (0 = best).
    pub rank: usize,
}

/// A static candidate tree: the (head, rank) paths drafted at every step, in priority
/// order (a step with a smaller node budget keeps a prefix of the nodes, which is always a
/// valid tree because parents come first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidateTree {
    nodes: Vec<CandidateNode>,
    max_depth: usize,
}

impl CandidateTree {
    /// The root alone.
    fn root() -> Self {
        Self {
            nodes: vec![CandidateNode {
                parent: 0,
                depth: 0,
                rank: 0,
            }],
            max_depth: 0,
        }
    }

    /// A tree from choices (rank paths) in priority order. Every choice must be non-empty
    /// and appear after its prefix; duplicates are errors.
    pub fn from_choices<C: AsRef<[usize]>>(choices: &[C]) -> Result<Self, MedusaError> {
        let mut tree = Self::root();
        let mut index = std::collections::HashMap::new();
        index.insert(Vec::new(), 0usize);
        for choice in choices {
            let path = choice.as_ref();
            if path.is_empty() {
                return Err(MedusaError::tree("a choice must hold at least one rank"));
            }
            if index.contains_key(path) {
                return Err(MedusaError::tree(format!("choice {path:?} appears twice")));
            }
            let parent = *index.get(&path[..path.len() - 1]).ok_or_else(|| {
                MedusaError::tree(format!(
                    "choice {path:?} comes before its prefix {:?}",
                    &path[..path.len() - 1]
                ))
            })?;
            tree.push(parent, path[path.len() - 1])?;
            index.insert(path.to_vec(), tree.nodes.len() - 1);
        }
        Ok(tree)
    }

    /// The paper's default 64-node tree, [`MC_SIM_7B_63`].
    pub fn mc_sim_7b_63() -> Self {
        Self::from_choices(MC_SIM_7B_63).unwrap_or_else(|_| unreachable!("a checked preset"))
    }

    /// The Cartesian product of the top `widths[d]` candidates of head `d` (breadth first, by
    /// ascending ranks within a level): `w1 + w1*w2 + ...` nodes below the root.
    pub fn cartesian(widths: &[usize]) -> Result<Self, MedusaError> {
        if widths.is_empty() || widths.contains(&0) {
            return Err(MedusaError::tree(
                "a Cartesian tree needs at least one head and widths of at least 1",
            ));
        }
        let mut tree = Self::root();
        let mut level = vec![0usize];
        for &width in widths {
            let mut next = Vec::with_capacity(level.len() * width);
            for &parent in &level {
                for rank in 0..width {
                    tree.push(parent, rank)?;
                    next.push(tree.nodes.len() - 1);
                }
            }
            level = next;
        }
        Ok(tree)
    }

    /// The paper's sparse tree: the `nodes - 1` choices of highest expected acceptance, each
    /// choice `[r_1..r_d]` scored `prod_d P(head d - 1's target has rank r_d)` from
    /// measured rank accuracies (heads assumed independent), grown greedily from the root.
    /// `nodes` counts the root; the tree is at most `accuracies.num_heads()` deep.
    pub fn sparse(accuracies: &RankAccuracies, nodes: usize) -> Result<Self, MedusaError> {
        if nodes == 0 || nodes > MAX_CANDIDATE_NODES {
            return Err(MedusaError::tree(format!(
                "a sparse tree needs 1 to {MAX_CANDIDATE_NODES} nodes, got {nodes}"
            )));
        }
        let mut tree = Self::root();
        // Best-first search: taking a node offers all its children.
        let mut frontier = Frontier::default();
        frontier.offer_children(accuracies, 0, 0, 1.0);
        while tree.nodes.len() < nodes {
            let Some(Offer {
                score: p,
                parent,
                rank,
                ..
            }) = frontier.heap.pop()
            else {
                break;
            };
            tree.push(parent, rank)?;
            let node = tree.nodes.len() - 1;
            frontier.offer_children(accuracies, node, tree.nodes[node].depth, p);
        }
        Ok(tree)
    }

    fn push(&mut self, parent: usize, rank: usize) -> Result<(), MedusaError> {
        if self.nodes.len() >= MAX_CANDIDATE_NODES {
            return Err(MedusaError::tree(format!(
                "a candidate tree holds at most {MAX_CANDIDATE_NODES} nodes"
            )));
        }
        let depth = self.nodes[parent].depth + 1;
        self.max_depth = self.max_depth.max(depth);
        self.nodes.push(CandidateNode {
            parent,
            depth,
            rank,
        });
        Ok(())
    }

    /// Nodes, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: the root is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The nodes in priority order (node 0 is the root).
    pub fn nodes(&self) -> &[CandidateNode] {
        &self.nodes
    }

    /// Depth of the deepest node: the number of heads the tree needs.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// The highest rank used at `depth` plus one (how many candidates head `depth - 1` must
    /// rank), looking only at the first `limit` nodes.
    pub fn ranks_needed(&self, depth: usize, limit: usize) -> usize {
        self.nodes
            .iter()
            .take(limit)
            .skip(1)
            .filter(|n| n.depth == depth)
            .map(|n| n.rank + 1)
            .max()
            .unwrap_or(0)
    }

    /// The choices (rank paths) of the tree, in node order, the root excluded.
    pub fn choices(&self) -> Vec<Vec<usize>> {
        let mut paths: Vec<Vec<usize>> = vec![Vec::new()];
        for node in &self.nodes[1..] {
            let mut path = paths[node.parent].clone();
            path.push(node.rank);
            paths.push(path);
        }
        paths.remove(0);
        paths
    }

    /// Checks that `num_heads` heads can fill the tree.
    pub fn check_heads(&self, num_heads: usize) -> Result<(), MedusaError> {
        if self.max_depth > num_heads {
            return Err(MedusaError::TreeTooDeep {
                depth: self.max_depth,
                heads: num_heads,
            });
        }
        Ok(())
    }

    /// Expected drafted tokens accepted per step under `accuracies` with independent heads
    /// (the sum over nodes of the probability that the node's whole path is right); tau is
    /// about one more than this.
    pub fn expected_accepted(&self, accuracies: &RankAccuracies) -> f64 {
        let mut p = vec![1.0f64; self.nodes.len()];
        for i in 1..self.nodes.len() {
            let n = self.nodes[i];
            p[i] = p[n.parent] * accuracies.rank_probability(n.depth - 1, n.rank);
        }
        p[1..].iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_is_the_paper_tree() {
        let tree = CandidateTree::mc_sim_7b_63();
        assert_eq!(tree.len(), 64);
        assert_eq!(tree.max_depth(), 4);
        assert_eq!(tree.choices().len(), 63);
        assert_eq!(tree.choices()[36], vec![0, 0, 0, 0]);
        assert_eq!(tree.ranks_needed(1, 64), 10);
        assert_eq!(tree.ranks_needed(4, 64), 2);
        assert!(tree.check_heads(3).is_err());
        assert!(tree.check_heads(4).is_ok());
    }

    #[test]
    fn malformed_choices_are_errors() {
        assert!(CandidateTree::from_choices(&[vec![0, 1]]).is_err());
        assert!(CandidateTree::from_choices(&[vec![0], vec![0]]).is_err());
        assert!(CandidateTree::from_choices(&[Vec::<usize>::new()]).is_err());
        assert!(CandidateTree::cartesian(&[]).is_err());
        assert!(CandidateTree::cartesian(&[2, 0]).is_err());
        assert!(CandidateTree::cartesian(&[100, 100, 100]).is_err());
    }

    #[test]
    fn cartesian_counts() {
        let tree = CandidateTree::cartesian(&[3, 2]).unwrap();
        assert_eq!(tree.len(), 1 + 3 + 6);
        assert_eq!(tree.choices()[3], vec![0, 0]);
        assert_eq!(tree.choices()[8], vec![2, 1]);
    }

    #[test]
    fn sparse_takes_the_most_likely_paths() {
        let acc = RankAccuracies::new(vec![vec![0.5, 0.65], vec![0.4, 0.5]]).unwrap();
        // Path scores: [0] .5, [1] .15, [0,0] .2, [0,1] .05, [1,0] .06, [1,1] .015
        let tree = CandidateTree::sparse(&acc, 4).unwrap();
        assert_eq!(tree.choices(), vec![vec![0], vec![0, 0], vec![1]]);
        let all = CandidateTree::sparse(&acc, 100).unwrap();
        assert_eq!(all.len(), 7);
        assert!((all.expected_accepted(&acc) - 0.975).abs() < 1e-12);
    }
}

/// The frontier of the sparse-tree search.
#[derive(Debug, Default)]
struct Frontier {
    heap: std::collections::BinaryHeap<Offer>,
    offers: u64,
}

impl Frontier {
    /// Offers every measured candidate below `parent` (at `depth`) with a positive score.
    fn offer_children(
        &mut self,
        acc: &RankAccuracies,
        parent: usize,
        depth: usize,
        parent_score: f64,
    ) {
        if depth >= acc.num_heads() {
            return;
        }
        for rank in 0..acc.num_ranks(depth) {
            let score = parent_score * acc.rank_probability(depth, rank);
            if score > 0.0 {
                self.offers += 1;
                let order = std::cmp::Reverse(self.offers);
                self.heap.push(Offer {
                    score,
                    order,
                    parent,
                    rank,
                });
            }
        }
    }
}

/// A frontier entry of the sparse-tree search: highest score first, then the earliest offer.
#[derive(Clone, Copy, Debug)]
struct Offer {
    score: f64,
    order: std::cmp::Reverse<u64>,
    parent: usize,
    rank: usize,
}

impl PartialEq for Offer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Offer {}

impl PartialOrd for Offer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Offer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then(self.order.cmp(&other.order))
    }
}
