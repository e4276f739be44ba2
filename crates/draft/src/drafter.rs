//! The drafter and its cache, kept in step with the target's committed context.
//!
//! The target's cache holds every token but the pending one (the root of each step's tree);
//! the drafter's cache should hold the same, recomputing as little as possible. Three rules
//! do it, each stated in terms of tokens, so that they hold whatever the verifier accepted,
//! wherever a stop condition cut the step, and whatever a composite did with the tree:
//!
//! * **Catch up.** A step starts by cutting the drafter's cache to its longest common prefix
//!   with the target's context (drafts it committed and the target rejected go here: the
//!   truncate on rejection) and evaluating the rest of the context as a chain below which the
//!   draft hangs: at the first step that is the prompt (the drafter's prefill), afterwards
//!   usually nothing, or the one accepted token the drafter never evaluated.
//! * **Commit on the way down.** A drafter forward evaluates the nodes to expand at one depth
//!   (the *frontier*), with their ancestors up to the frontier's lowest common ancestor;
//!   before the next forward, the nodes above the next frontier's common ancestor are
//!   committed, since every later node descends from them. A chain thus evaluates each
//!   token once.
//! * **Commit what was accepted.** The last forward of a step stays uncommitted until the
//!   step is verified; then the part of it the target accepted (the longest path of its
//!   tokens along the target's new context) is committed, the rest dropped. So the accepted
//!   drafts the drafter already evaluated are never evaluated again.
//!
//! A failed model call leaves the cache as it was by the model contract, but the step is
//! lost: the drafter is then rebuilt from an empty cache at the next step (as it is when
//! its committed length is not what the drafter left, the model having been used outside).

use std::time::{Duration, Instant};

use decoding_core::{DecodeError, LogitsModel, NodeId, SourceSet, Token, TokenTree, TreeSupport};
use ndarray::{Array2, ArrayView1};

/// A node of the last drafter forward: a token of the catch-up chain, or a candidate node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Prefix,
    Candidate(NodeId),
}

/// Counters of the drafter's work.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DrafterStats {
    /// Drafter forward passes.
    pub(crate) forwards: usize,
    /// Nodes the drafter evaluated (catch-up and recomputed ancestors included).
    pub(crate) nodes: usize,
    /// Of those, catch-up nodes.
    pub(crate) catch_up: usize,
    /// Time inside the drafter's forward, commit and truncate calls.
    pub(crate) time: Duration,
}

/// A drafter model and what its cache holds.
#[derive(Debug)]
pub(crate) struct Drafter<M> {
    model: M,
    /// The tokens of the model's committed context.
    committed: Vec<Token>,
    /// False after a failed model call: rebuild from an empty cache.
    trusted: bool,
    /// The context tokens past the common prefix, to catch up on this step.
    prefix: Vec<Token>,
    /// How many of `prefix` are committed.
    prefix_done: usize,
    /// The candidate nodes committed this step, root first.
    committed_nodes: Vec<NodeId>,
    /// The last forward, not yet committed, and its nodes' origins.
    last: Option<(TokenTree, Vec<Origin>)>,
    /// `in_last[c]`: candidate `c`'s node in the last forward.
    in_last: Vec<Option<NodeId>>,
    logits: Array2<f32>,
    marks: Vec<bool>,
    path: Vec<NodeId>,
    pub(crate) stats: DrafterStats,
}

impl<M: LogitsModel> Drafter<M> {
    pub(crate) fn new(model: M) -> Self {
        Self {
            model,
            committed: Vec::new(),
            trusted: false,
            prefix: Vec::new(),
            prefix_done: 0,
            committed_nodes: Vec::new(),
            last: None,
            in_last: Vec::new(),
            logits: Array2::zeros((0, 0)),
            marks: Vec::new(),
            path: Vec::new(),
            stats: DrafterStats::default(),
        }
    }

    pub(crate) fn model(&self) -> &M {
        &self.model
    }

    /// The model, mutably: a change to its cache is noticed (by its length) at the next
    /// step, which then rebuilds it.
    pub(crate) fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    pub(crate) fn into_model(self) -> M {
        self.model
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    pub(crate) fn evaluates_trees(&self) -> bool {
        self.model.tree_support() == TreeSupport::Trees
    }

    /// Forgets the sequence (the cache is emptied at the next step) and the statistics.
    pub(crate) fn begin(&mut self) {
        self.trusted = false;
        self.last = None;
        self.stats = DrafterStats::default();
    }

    /// Runs a model call, timing it and distrusting the cache if it fails.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut M) -> Result<T, decoding_core::ModelError>,
    ) -> Result<T, DecodeError> {
        let started = Instant::now();
        let result = f(&mut self.model);
        self.stats.time += started.elapsed();
        if result.is_err() {
            self.trusted = false;
            self.last = None;
        }
        Ok(result?)
    }

    /// Starts a step on top of `context` (the target's committed context): cuts the cache to
    /// its common prefix with `context` and notes the rest as the chain to catch up on.
    pub(crate) fn start_step(&mut self, context: &[Token]) -> Result<(), DecodeError> {
        self.last = None;
        if !self.trusted || self.model.committed_len() != self.committed.len() {
            self.call(|m| m.reset())?;
            self.committed.clear();
            self.trusted = true;
        }
        let common = self.cut_to(context)?;
        self.prefix.clear();
        self.prefix.extend_from_slice(&context[common..]);
        self.prefix_done = 0;
        self.committed_nodes.clear();
        Ok(())
    }

    /// Positions left for candidate nodes this step (the root's included), if the drafter's
    /// context is bounded.
    pub(crate) fn room(&self) -> Option<usize> {
        let used = self.committed.len() + self.prefix.len() - self.prefix_done;
        self.model.max_context().map(|max| max.saturating_sub(used))
    }

    /// Evaluates the candidate nodes `frontier` of `candidates` (a tree rooted at the pending
    /// token, grown by the caller), first committing what the previous forward of the step
    /// computed above them. Returns the logits rows in `frontier` order.
    pub(crate) fn evaluate(
        &mut self,
        candidates: &TokenTree,
        frontier: &[NodeId],
    ) -> Result<Vec<ArrayView1<'_, f32>>, DecodeError> {
        let Some(&first) = frontier.first() else {
            return Err(DecodeError::State("a drafter forward needs a frontier"));
        };
        // The frontier's lowest common ancestor.
        let mut top = first;
        for &node in &frontier[1..] {
            top = common_ancestor(candidates, top, node);
        }
        candidates.path_to(top, &mut self.path);
        self.path.pop();
        if !self.path.starts_with(&self.committed_nodes) {
            return Err(DecodeError::State(
                "a drafter frontier must descend from the nodes committed before it",
            ));
        }
        // `path` now lists the candidates strictly above `top`: commit them (and the
        // catch-up chain) as far as the last forward holds them.
        self.commit_above(candidates)?;

        // The new forward: what is still uncommitted above `top`, then `top` and the paths
        // from it to the frontier.
        let mut tree = TokenTree::new(0);
        let mut origins = Vec::new();
        let mut chain: Vec<(Token, Origin)> = self.prefix[self.prefix_done..]
            .iter()
            .map(|&t| (t, Origin::Prefix))
            .collect();
        let uncommitted = &self.path[self.committed_nodes.len()..];
        chain.extend(
            uncommitted
                .iter()
                .map(|&c| (candidates.token(c), Origin::Candidate(c))),
        );
        self.in_last.clear();
        self.in_last.resize(candidates.len(), None);
        self.marks.clear();
        self.marks.resize(candidates.len(), false);
        for &f in frontier {
            let mut node = f;
            while !self.marks[node] {
                self.marks[node] = true;
                if node == top {
                    break;
                }
                node = candidates.parent(node).unwrap_or(top);
            }
        }
        let mut last_chain = None;
        for (i, &(token, origin)) in chain.iter().enumerate() {
            let node = if i == 0 {
                tree.reset(token);
                tree.set_needs_logits(0, false);
                0
            } else {
                tree.push_with(i - 1, token, false, SourceSet::EMPTY)?
            };
            origins.push(origin);
            if let Origin::Candidate(c) = origin {
                self.in_last[c] = Some(node);
            }
            last_chain = Some(node);
        }
        for c in (top..candidates.len()).filter(|&c| self.marks[c]) {
            let token = candidates.token(c);
            let node = match (c == top, last_chain) {
                (true, None) => {
                    tree.reset(token);
                    tree.set_needs_logits(0, false);
                    0
                }
                (true, Some(parent)) => tree.push_with(parent, token, false, SourceSet::EMPTY)?,
                (false, _) => {
                    let parent = candidates
                        .parent(c)
                        .and_then(|p| self.in_last[p])
                        .ok_or(DecodeError::State("a frontier node outside the tree"))?;
                    tree.push_with(parent, token, false, SourceSet::EMPTY)?
                }
            };
            origins.push(Origin::Candidate(c));
            self.in_last[c] = Some(node);
        }
        for &f in frontier {
            let node = self.in_last[f].ok_or(DecodeError::State("a frontier node is lost"))?;
            tree.set_needs_logits(node, true);
        }
        let vocab = self.model.vocab_size();
        if self.logits.dim() != (tree.logits_rows(), vocab) {
            self.logits = Array2::zeros((tree.logits_rows(), vocab));
        }
        let mut logits = std::mem::take(&mut self.logits);
        let result = self.call(|m| m.forward(&tree, logits.view_mut()));
        self.logits = logits;
        result?;
        self.stats.forwards += 1;
        self.stats.nodes += tree.len();
        self.stats.catch_up += self.prefix.len() - self.prefix_done;
        let rows = frontier
            .iter()
            .map(|&f| {
                let node = self.in_last[f].unwrap_or_default();
                self.logits.row(tree.logits_row(node).unwrap_or_default())
            })
            .collect();
        self.last = Some((tree, origins));
        Ok(rows)
    }

    /// Commits, from the last forward, the catch-up chain and the candidates of `self.path`
    /// (root first) as far as it holds them in one root-to-node path.
    fn commit_above(&mut self, candidates: &TokenTree) -> Result<(), DecodeError> {
        let Some((tree, origins)) = self.last.take() else {
            return Ok(());
        };
        let mut keep = Vec::new();
        let mut node = 0;
        let wanted = (self.prefix_done..self.prefix.len())
            .map(|_| Origin::Prefix)
            .chain(
                self.path[self.committed_nodes.len()..]
                    .iter()
                    .map(|&c| Origin::Candidate(c)),
            );
        for want in wanted {
            let next = if keep.is_empty() {
                Some(0)
            } else {
                tree.children(node).find(|&n| origins[n] == want)
            };
            match next {
                Some(n) if origins[n] == want => {
                    keep.push(n);
                    node = n;
                }
                _ => break,
            }
        }
        self.call(|m| m.commit(&keep))?;
        for &n in &keep {
            match origins[n] {
                Origin::Prefix => {
                    self.committed.push(self.prefix[self.prefix_done]);
                    self.prefix_done += 1;
                }
                Origin::Candidate(c) => {
                    self.committed.push(candidates.token(c));
                    self.committed_nodes.push(c);
                }
            }
        }
        Ok(())
    }

    /// Ends a step once the target has verified it: commits the longest path of the last
    /// forward along `context` (the target's new committed context), drops the rest, and cuts
    /// the cache back to what `context` shares with it.
    pub(crate) fn settle(&mut self, context: &[Token]) -> Result<(), DecodeError> {
        if !self.trusted {
            return Ok(());
        }
        if let Some((tree, _)) = self.last.take() {
            let mut keep = Vec::new();
            let start = self.committed.len();
            if context.get(start) == Some(&tree.token(0)) {
                keep.push(0);
                let mut node = 0;
                for &token in context.iter().skip(start + 1) {
                    match tree.child_with_token(node, token) {
                        Some(child) => {
                            keep.push(child);
                            node = child;
                        }
                        None => break,
                    }
                }
            }
            self.call(|m| m.commit(&keep))?;
            self.committed.extend(keep.iter().map(|&n| tree.token(n)));
        }
        self.cut_to(context)?;
        Ok(())
    }

    /// Cuts the cache to its longest common prefix with `context`; returns its length.
    fn cut_to(&mut self, context: &[Token]) -> Result<usize, DecodeError> {
        let common = self
            .committed
            .iter()
            .zip(context)
            .take_while(|(a, b)| a == b)
            .count();
        if common < self.committed.len() {
            self.call(|m| m.truncate(common))?;
            self.committed.truncate(common);
        }
        Ok(common)
    }
}

/// The lowest common ancestor of `a` and `b` (parents come before children).
fn common_ancestor(tree: &TokenTree, mut a: NodeId, mut b: NodeId) -> NodeId {
    while a != b {
        if a > b {
            a = tree.parent(a).unwrap_or(0);
        } else {
            b = tree.parent(b).unwrap_or(0);
        }
    }
    a
}
