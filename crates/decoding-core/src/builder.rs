//! Merging drafts from several sources into one deduplicated tree under a node budget.
//!
//! Sources add chains or single nodes with a *score*: an estimate of the probability that the
//! node is accepted (in [0, 1] by convention; only the order matters). A node proposed twice
//! is stored once, keeps the higher score, and is tagged with both sources.
//! [`TreeBuilder::build`] then keeps the best `budget` nodes by growing the tree best-first
//! from the root: a node can only be chosen after its parent, so the result is always a valid
//! tree, and when scores never increase along a path (as probabilities of acceptance do) it
//! is exactly the `budget` highest-scoring nodes. Ties prefer shallower nodes, then earlier
//! ones.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::error::TreeError;
use crate::tree::{NodeId, SourceId, SourceSet, Token, TokenTree};

/// Collects scored drafts from tagged sources and builds the budgeted tree.
#[derive(Clone, Debug)]
pub struct TreeBuilder {
    candidates: TokenTree,
    scores: Vec<f32>,
    chosen: Vec<bool>,
    ranked: Vec<NodeId>,
    heap: BinaryHeap<Entry>,
}

impl TreeBuilder {
    /// A builder whose tree is rooted at the pending token `root`.
    pub fn new(root: Token) -> Self {
        Self {
            candidates: TokenTree::new(root),
            scores: vec![f32::INFINITY],
            chosen: Vec::new(),
            ranked: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    /// Forgets all drafts and starts again from `root`, keeping allocations.
    pub fn reset(&mut self, root: Token) {
        self.candidates.reset(root);
        self.scores.clear();
        self.scores.push(f32::INFINITY);
    }

    /// The deduplicated trie of every draft added so far.
    pub fn candidates(&self) -> &TokenTree {
        &self.candidates
    }

    /// The score of candidate `node` (the root's is infinite).
    pub fn score(&self, node: NodeId) -> f32 {
        self.scores[node]
    }

    /// Adds `token` below candidate `parent` with `score`, tagged with `source`, and returns
    /// its candidate id. Logits are requested for it.
    pub fn add(
        &mut self,
        parent: NodeId,
        token: Token,
        score: f32,
        source: SourceId,
    ) -> Result<NodeId, TreeError> {
        self.add_with(parent, token, score, SourceSet::of(source), true)
    }

    /// Like [`add`](Self::add), with the logits flag and any set of sources.
    pub fn add_with(
        &mut self,
        parent: NodeId,
        token: Token,
        score: f32,
        sources: SourceSet,
        needs_logits: bool,
    ) -> Result<NodeId, TreeError> {
        if score.is_nan() || score < 0.0 {
            return Err(TreeError::InvalidScore { token, score });
        }
        // -0.0 would order below 0.0 (ranking uses a total order): make it 0.0.
        let score = score + 0.0;
        let before = self.candidates.len();
        let node = self
            .candidates
            .push_with(parent, token, needs_logits, sources)?;
        if node == before {
            self.scores.push(score);
        } else if score > self.scores[node] {
            self.scores[node] = score;
        }
        Ok(node)
    }

    /// Adds a chain below candidate `parent`, node `i` scored `scores[i]`; returns the last
    /// node (or `parent` for an empty chain). Extra scores are ignored; missing ones repeat
    /// the last given score (or 1.0 if none).
    pub fn add_chain(
        &mut self,
        parent: NodeId,
        tokens: &[Token],
        scores: &[f32],
        source: SourceId,
    ) -> Result<NodeId, TreeError> {
        let mut node = parent;
        let mut score = 1.0;
        for (i, &token) in tokens.iter().enumerate() {
            score = scores.get(i).copied().unwrap_or(score);
            node = self.add(node, token, score, source)?;
        }
        Ok(node)
    }

    /// Every candidate in the order the best-first build takes them: the root, then always
    /// the best candidate whose parent is already taken. The first `n` entries are what
    /// [`build`](Self::build) keeps with a budget of `n`.
    pub fn rank(&mut self) -> &[NodeId] {
        self.ranked.clear();
        self.heap.clear();
        self.heap.push(self.entry(0));
        while let Some(Entry { node, .. }) = self.heap.pop() {
            self.ranked.push(node);
            for child in self.candidates.children(node) {
                self.heap.push(self.entry(child));
            }
        }
        &self.ranked
    }

    /// The order computed by the last [`rank`](Self::rank) (or [`build`](Self::build)).
    pub fn ranked(&self) -> &[NodeId] {
        &self.ranked
    }

    /// Writes into `out` the best `budget` candidates (the root always included) and fills
    /// `map` so that `map[candidate] = Some(node in out)` for every kept candidate.
    pub fn build(
        &mut self,
        budget: usize,
        out: &mut TokenTree,
        map: &mut Vec<Option<NodeId>>,
    ) -> Result<(), TreeError> {
        if budget == 0 {
            return Err(TreeError::ZeroBudget);
        }
        let n = self.candidates.len();
        self.rank();
        self.chosen.clear();
        self.chosen.resize(n, false);
        for &node in self.ranked.iter().take(budget) {
            self.chosen[node] = true;
        }
        out.reset(self.candidates.root_token());
        out.set_needs_logits(0, self.candidates.needs_logits(0));
        map.clear();
        map.resize(n, None);
        map[0] = Some(0);
        for node in 1..n {
            if !self.chosen[node] {
                continue;
            }
            let parent =
                self.candidates
                    .parent(node)
                    .and_then(|p| map[p])
                    .ok_or(TreeError::InvalidPath(
                        "builder chose a node before its parent",
                    ))?;
            map[node] = Some(out.push_with(
                parent,
                self.candidates.token(node),
                self.candidates.needs_logits(node),
                self.candidates.sources(node),
            )?);
        }
        Ok(())
    }

    /// Writes into `out` the chain of candidates from the root to `end` (a tree for a model
    /// that evaluates chains only) and fills `map` as [`build`](Self::build) does.
    pub fn build_path(
        &mut self,
        end: NodeId,
        out: &mut TokenTree,
        map: &mut Vec<Option<NodeId>>,
    ) -> Result<(), TreeError> {
        self.candidates.check_node(end)?;
        let n = self.candidates.len();
        let mut path = Vec::with_capacity(self.candidates.depth(end) + 1);
        self.candidates.path_to(end, &mut path);
        out.reset(self.candidates.root_token());
        out.set_needs_logits(0, self.candidates.needs_logits(0));
        map.clear();
        map.resize(n, None);
        map[0] = Some(0);
        for (parent, &node) in path[1..].iter().enumerate() {
            map[node] = Some(out.push_with(
                parent,
                self.candidates.token(node),
                self.candidates.needs_logits(node),
                self.candidates.sources(node),
            )?);
        }
        Ok(())
    }

    fn entry(&self, node: NodeId) -> Entry {
        Entry {
            score: self.scores[node],
            depth: self.candidates.depth(node),
            node,
        }
    }
}

/// Heap entry: highest score first, then shallowest, then earliest.
#[derive(Debug, Clone, Copy)]
struct Entry {
    score: f32,
    depth: usize,
    node: NodeId,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.depth.cmp(&self.depth))
            .then(other.node.cmp(&self.node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(i: usize) -> SourceId {
        SourceId::new(i).unwrap()
    }

    #[test]
    fn merges_shared_prefixes_and_tags_sources() {
        let mut b = TreeBuilder::new(9);
        b.add_chain(0, &[1, 2, 3], &[0.9, 0.5, 0.2], src(0))
            .unwrap();
        b.add_chain(0, &[1, 2, 4], &[0.8, 0.6, 0.3], src(1))
            .unwrap();
        let (mut out, mut map) = (TokenTree::new(0), Vec::new());
        b.build(10, &mut out, &mut map).unwrap();
        assert_eq!(out.tokens(), &[9, 1, 2, 3, 4]);
        assert!(out.sources(1).contains(src(0)) && out.sources(1).contains(src(1)));
        assert_eq!(b.score(2), 0.6);
    }

    #[test]
    fn budget_keeps_best_nodes() {
        let mut b = TreeBuilder::new(0);
        b.add_chain(0, &[1, 2, 3], &[0.9, 0.8, 0.1], src(0))
            .unwrap();
        b.add_chain(0, &[5, 6], &[0.7, 0.2], src(1)).unwrap();
        let (mut out, mut map) = (TokenTree::new(0), Vec::new());
        b.build(4, &mut out, &mut map).unwrap();
        assert_eq!(out.tokens(), &[0, 1, 2, 5]);
        assert_eq!(map, vec![Some(0), Some(1), Some(2), None, Some(3), None]);
        assert_eq!(b.build(0, &mut out, &mut map), Err(TreeError::ZeroBudget));
    }

    #[test]
    fn builds_one_path() {
        let mut b = TreeBuilder::new(0);
        b.add_chain(0, &[1, 2, 3], &[0.9, 0.8, 0.1], src(0))
            .unwrap();
        let end = b.add_chain(0, &[5, 6], &[0.7, 0.2], src(1)).unwrap();
        let (mut out, mut map) = (TokenTree::new(0), Vec::new());
        b.build_path(end, &mut out, &mut map).unwrap();
        assert_eq!(out.tokens(), &[0, 5, 6]);
        assert!(out.is_chain());
        assert_eq!(map, vec![Some(0), None, None, None, Some(1), Some(2)]);
        assert!(b.build_path(9, &mut out, &mut map).is_err());
    }

    #[test]
    fn rejects_nan_scores() {
        let mut b = TreeBuilder::new(0);
        assert!(matches!(
            b.add(0, 1, f32::NAN, src(0)),
            Err(TreeError::InvalidScore { .. })
        ));
    }

    #[test]
    fn negative_zero_scores_tie_with_zero() {
        let s = SourceId::new(0).unwrap();
        let mut b = TreeBuilder::new(0);
        b.add(0, 1, -0.0, s).unwrap();
        b.add(0, 2, 0.0, s).unwrap();
        b.rank();
        // Equal scores: the earlier candidate first.
        assert_eq!(b.ranked(), &[0, 1, 2]);
    }
}
