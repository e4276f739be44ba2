//! Growing the candidate tree with the drafter, one forward per depth, and cutting it to the
//! step's tree.
//!
//! Both modes grow the same way (EAGLE-2's *expand* phase): the root is evaluated, and at
//! every depth the *frontier*, the `width` new nodes of highest estimate, is evaluated in one
//! drafter forward, each frontier node getting its `width` likeliest tokens as children. A
//! chain is width 1: `k` greedy drafter steps. The step's tree is then the best nodes of all
//! depths (EAGLE-2's *rerank*): estimates only fall along a path, so the best `n` nodes,
//! ties to the earlier node, always include their parents.
//!
//! Growth stops at depth `k`, at the context's end, when no new node is confident enough to
//! expand (`min_prob`), or, with a cost curve, when the next drafter forward is not expected
//! to pay: its cost against the tokens it may add (each frontier node's best child, guessed
//! at the frontier node's estimate times its own rate, drafters being confident in runs).

use decoding_core::{CostCurve, DecodeError, NodeId, SourceSet, Token, TokenTree};

use crate::calibration::{Calibration, best_size};
use crate::config::{DraftConfig, Mode};
use crate::drafter::Drafter;
use crate::topk::top_tokens;

/// The candidate tree of a step and each node's drafter confidence, calibration cell and
/// estimate.
#[derive(Clone, Debug)]
pub(crate) struct Candidates {
    pub(crate) tree: TokenTree,
    pub(crate) confidence: Vec<f32>,
    pub(crate) cell: Vec<u8>,
    pub(crate) estimate: Vec<f32>,
    /// Drafting cost spent this step, in units of the target's one-node forward.
    pub(crate) spent: f64,
    top: Vec<(Token, f32)>,
    order: Vec<NodeId>,
}

impl Default for Candidates {
    fn default() -> Self {
        Self {
            tree: TokenTree::new(0),
            confidence: Vec::new(),
            cell: Vec::new(),
            estimate: Vec::new(),
            spent: 0.0,
            top: Vec::new(),
            order: Vec::new(),
        }
    }
}

/// What bounds one step's growth.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Deepest candidate.
    pub(crate) depth: usize,
    /// Most nodes of the step's tree, root included.
    pub(crate) nodes: usize,
    /// Draft a chain whatever the mode.
    pub(crate) chain: bool,
}

impl Candidates {
    fn reset(&mut self, root: Token) {
        self.tree.reset(root);
        self.confidence.clear();
        self.confidence.push(1.0);
        self.cell.clear();
        self.cell.push(0);
        self.estimate.clear();
        self.estimate.push(1.0);
        self.spent = 0.0;
    }

    fn push(
        &mut self,
        parent: NodeId,
        token: Token,
        confidence: f32,
        first: bool,
        calibration: &Calibration,
    ) -> Result<NodeId, DecodeError> {
        let node = self.tree.push(parent, token)?;
        let cell = Calibration::cell(confidence, first);
        self.confidence.push(confidence);
        self.cell.push(cell);
        self.estimate
            .push(self.estimate[parent] * calibration.rate(cell, confidence));
        Ok(node)
    }

    /// Grows the candidate tree below `root` with `drafter` (whose step has started).
    pub(crate) fn grow<M: decoding_core::LogitsModel>(
        &mut self,
        root: Token,
        drafter: &mut Drafter<M>,
        config: &DraftConfig,
        calibration: &Calibration,
        limits: Limits,
    ) -> Result<(), DecodeError> {
        self.reset(root);
        let width = if limits.chain || config.mode == Mode::Chain {
            1
        } else {
            config.width
        };
        let depth = limits.depth.min(if width == 1 {
            limits.nodes - 1
        } else {
            usize::MAX
        });
        let mut frontier = vec![0];
        let mut fresh = Vec::new();
        for level in 0..depth {
            let forward_nodes = forward_size(&self.tree, &frontier);
            let rows = drafter.evaluate(&self.tree, &frontier)?;
            let mut children = Vec::with_capacity(frontier.len());
            for (i, row) in rows.iter().enumerate() {
                let row = row
                    .as_slice()
                    .ok_or(DecodeError::State("drafter logits are not contiguous"))?;
                top_tokens(row, width, i, &mut self.top)?;
                children.push(self.top.clone());
            }
            if let Some(curve) = &config.cost {
                self.spent += config.drafter_cost * curve.relative(forward_nodes);
            }
            fresh.clear();
            for (&parent, top) in frontier.iter().zip(&children) {
                for (i, &(token, p)) in top.iter().enumerate() {
                    fresh.push(self.push(parent, token, p, i == 0, calibration)?);
                }
            }
            if level + 1 == depth {
                break;
            }
            // The next frontier: the best new nodes that are confident enough.
            fresh.retain(|&n| self.confidence[n] >= config.min_prob && self.confidence[n] > 0.0);
            fresh.sort_by(|&a, &b| {
                self.estimate[b]
                    .total_cmp(&self.estimate[a])
                    .then(a.cmp(&b))
            });
            fresh.truncate(width);
            fresh.sort_unstable();
            if fresh.is_empty() {
                break;
            }
            if let Some(curve) = &config.cost
                && !self.next_forward_pays(&fresh, calibration, curve, config, limits.nodes)
            {
                break;
            }
            std::mem::swap(&mut frontier, &mut fresh);
        }
        Ok(())
    }

    /// Whether evaluating `frontier` is expected to raise the step's tokens per unit of
    /// cost: the best value with each frontier node's guessed best child and the forward's
    /// cost, against the best value now.
    fn next_forward_pays(
        &mut self,
        frontier: &[NodeId],
        calibration: &Calibration,
        curve: &CostCurve,
        config: &DraftConfig,
        budget: usize,
    ) -> bool {
        self.rank();
        let now = best_size(self.ranked_estimates(), budget, curve, self.spent).1;
        let guesses: Vec<f32> = frontier
            .iter()
            .map(|&f| self.estimate[f] * calibration.rate(self.cell[f], self.confidence[f]))
            .collect();
        let mut merged: Vec<f32> = self.ranked_estimates().chain(guesses).collect();
        merged.sort_by(|a, b| b.total_cmp(a));
        let cost = config.drafter_cost * curve.relative(forward_size(&self.tree, frontier));
        let next = best_size(merged, budget, curve, self.spent + cost).1;
        next > now
    }

    /// Orders the non-root nodes by estimate, best first, ties to the earlier node.
    fn rank(&mut self) {
        self.order.clear();
        self.order.extend(1..self.tree.len());
        let estimate = &self.estimate;
        self.order
            .sort_by(|&a, &b| estimate[b].total_cmp(&estimate[a]).then(a.cmp(&b)));
    }

    fn ranked_estimates(&self) -> impl Iterator<Item = f32> + '_ {
        self.order.iter().map(|&n| self.estimate[n])
    }

    /// Writes the step's tree into `out` (holding the root): the best nodes, up to
    /// `budget` with the root, or as many as pay for themselves on `cost` (the drafting
    /// spent included). Fills `picked[n]` with the candidate of `out`'s node `n`.
    pub(crate) fn cut(
        &mut self,
        budget: usize,
        cost: Option<&CostCurve>,
        out: &mut TokenTree,
        picked: &mut Vec<NodeId>,
    ) -> Result<(), DecodeError> {
        self.rank();
        let size = match cost {
            Some(curve) => best_size(self.ranked_estimates(), budget, curve, self.spent).0,
            None => budget.min(self.tree.len()),
        };
        let mut keep = vec![false; self.tree.len()];
        keep[0] = true;
        for &n in &self.order[..size - 1] {
            keep[n] = true;
        }
        let mut node_of = vec![None; self.tree.len()];
        node_of[0] = Some(0);
        picked.clear();
        picked.push(0);
        for c in 1..self.tree.len() {
            let parent = self.tree.parent(c).and_then(|p| node_of[p]);
            if let (true, Some(parent)) = (keep[c], parent) {
                let node = out.push_with(parent, self.tree.token(c), true, SourceSet::EMPTY)?;
                node_of[c] = Some(node);
                picked.push(c);
            }
        }
        Ok(())
    }
}

/// Nodes of the drafter forward that evaluates `frontier`: the paths from the frontier's
/// lowest common ancestor down to it (what is above was committed before).
fn forward_size(tree: &TokenTree, frontier: &[NodeId]) -> usize {
    if frontier.len() == 1 {
        return 1;
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut top = frontier[0];
    for &f in frontier {
        let mut node = f;
        while seen.insert(node) {
            match tree.parent(node) {
                Some(p) => node = p,
                None => break,
            }
        }
    }
    for &f in &frontier[1..] {
        let (mut a, mut b) = (top, f);
        while a != b {
            if a > b {
                a = tree.parent(a).unwrap_or(0);
            } else {
                b = tree.parent(b).unwrap_or(0);
            }
        }
        top = a;
    }
    seen.iter().filter(|&&n| n >= top).count()
}
