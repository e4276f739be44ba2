//! Drafting from occurrences: a trie of continuations weighted by frequency (SuffixDecoding),
//! or the continuation of one occurrence (LLMA, prompt lookup).

use decoding_core::{
    CostCurve, NodeId, SourceId, SourceSet, Token, TokenTree, TreeBuilder, TreeError,
};

use crate::calibration::{Calibration, NodeCalibration, best_size};

use crate::matcher::{Matcher, Occurrence, OccurrenceQuery, Source};

/// Source tag of nodes copied from reference documents.
pub const REFERENCE_SOURCE: SourceId = match SourceId::new(0) {
    Some(id) => id,
    None => panic!("source 0 exists"),
};

/// Source tag of nodes copied from the context (prompt and output).
pub const CONTEXT_SOURCE: SourceId = match SourceId::new(1) {
    Some(id) => id,
    None => panic!("source 1 exists"),
};

fn tag(source: Source) -> SourceSet {
    SourceSet::of(match source {
        Source::Reference => REFERENCE_SOURCE,
        Source::Context => CONTEXT_SOURCE,
    })
}

/// Limits of one weighted draft.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrieLimits<'a> {
    /// Deepest draft (tokens below the root).
    pub(crate) depth: usize,
    /// Most nodes, root included.
    pub(crate) nodes: usize,
    /// Drop nodes whose frequency is below this.
    pub(crate) min_prob: f32,
    /// Only the most frequent chain.
    pub(crate) chain: bool,
    /// Occurrence weight: `match_len ^ length_weight`.
    pub(crate) length_weight: f32,
    /// Continue context occurrences periodically past the end of the context.
    pub(crate) periodic: bool,
    /// Tokens at or above this are never drafted.
    pub(crate) vocab_size: usize,
    /// Size each tree to this cost curve (otherwise fill `nodes`).
    pub(crate) cost: Option<&'a CostCurve>,
}

/// A group of occurrences sharing a trie node, still to expand.
#[derive(Clone, Copy, Debug)]
struct Frame {
    node: u32,
    depth: usize,
    start: usize,
    end: usize,
}

/// A node of the candidate trie.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    parent: u32,
    token: Token,
    sources: SourceSet,
    /// Weight of the occurrences through it over the total (its frequency estimate).
    freq: f32,
    /// How its acceptance is estimated.
    calibration: NodeCalibration,
}

/// Reusable buffers for drafting.
#[derive(Clone, Debug)]
pub(crate) struct Drafter {
    pub(crate) occurrences: Vec<Occurrence>,
    weights: Vec<f32>,
    order: Vec<u32>,
    keys: Vec<(u64, u32)>,
    frames: Vec<Frame>,
    candidates: Vec<Candidate>,
    estimates: Vec<f32>,
    builder: TreeBuilder,
    map: Vec<Option<NodeId>>,
    /// The calibration of each node of the last drafted tree.
    pub(crate) cells: Vec<NodeCalibration>,
    /// The acceptance estimate of each node of the last drafted tree (empty: none drafted).
    pub(crate) node_estimates: Vec<f32>,
    pub(crate) calibration: Calibration,
}

impl Default for Drafter {
    fn default() -> Self {
        Self {
            occurrences: Vec::new(),
            weights: Vec::new(),
            order: Vec::new(),
            keys: Vec::new(),
            frames: Vec::new(),
            candidates: Vec::new(),
            estimates: Vec::new(),
            builder: TreeBuilder::new(0),
            map: Vec::new(),
            cells: Vec::new(),
            node_estimates: Vec::new(),
            calibration: Calibration::default(),
        }
    }
}

impl Drafter {
    /// Collects occurrences and drafts the trie of their continuations into `tree` (which
    /// holds the root).
    ///
    /// Each occurrence weighs `w = match_len ^ length_weight`; a trie node's *frequency* is
    /// the weight of the occurrences whose continuation passes through it over the total
    /// weight: the product of the frequency-weighted conditional probabilities along its
    /// path, as in SuffixDecoding. Nodes below `min_prob` are cut. Each node's acceptance
    /// estimate is its parent's times the learned rate of its cell (see
    /// [`Calibration`]); the tree builder keeps the best nodes by estimate (estimates never
    /// grow along a path, so they form a tree): `nodes` of them, or as many as maximise
    /// expected tokens per unit of cost on `cost`.
    pub(crate) fn weighted(
        &mut self,
        matcher: &mut Matcher,
        query: &OccurrenceQuery,
        limits: &TrieLimits<'_>,
        tree: &mut TokenTree,
    ) -> Result<(), TreeError> {
        self.cells.clear();
        self.cells.push(NodeCalibration::default());
        self.node_estimates.clear();
        self.occurrences.clear();
        matcher.occurrences(query, &mut self.occurrences);
        if self.occurrences.is_empty() || limits.depth == 0 || limits.nodes < 2 {
            return Ok(());
        }
        self.weights.clear();
        self.weights.extend(
            self.occurrences
                .iter()
                .map(|o| (o.match_len as f32).powf(limits.length_weight)),
        );
        let total: f32 = self.weights.iter().sum();
        self.order.clear();
        self.order.extend(0..self.occurrences.len() as u32);
        self.candidates.clear();
        self.candidates.push(Candidate {
            parent: u32::MAX,
            token: tree.root_token(),
            sources: SourceSet::EMPTY,
            freq: 1.0,
            calibration: NodeCalibration::default(),
        });
        self.frames.clear();
        self.frames.push(Frame {
            node: 0,
            depth: 0,
            start: 0,
            end: self.order.len(),
        });
        while let Some(frame) = self.frames.pop() {
            self.expand(matcher, frame, total, limits);
        }
        // Acceptance estimates, parents first.
        self.estimates.clear();
        self.estimates.push(1.0);
        self.builder.reset(tree.root_token());
        for i in 1..self.candidates.len() {
            let c = self.candidates[i];
            let q = self.estimates[c.parent as usize] * self.calibration.rate(c.calibration);
            self.estimates.push(q);
            self.builder
                .add_with(c.parent as usize, c.token, q, c.sources, true)?;
        }
        let nodes = match limits.cost {
            None => limits.nodes,
            Some(cost) => {
                let ranked = self.builder.rank();
                self.weights.clear();
                self.weights
                    .extend(ranked[1..].iter().map(|&n| self.estimates[n]));
                best_size(&self.weights, limits.nodes, cost)
            }
        };
        self.builder.build(nodes, tree, &mut self.map)?;
        self.cells.resize(tree.len(), NodeCalibration::default());
        self.node_estimates.clear();
        self.node_estimates.resize(tree.len(), 0.0);
        for (candidate, node) in self.map.iter().enumerate() {
            if let Some(node) = *node {
                self.cells[node] = self.candidates[candidate].calibration;
                self.node_estimates[node] = self.estimates[candidate];
            }
        }
        Ok(())
    }

    /// Groups the occurrences of `frame` by their next token and adds one child per group.
    fn expand(&mut self, matcher: &Matcher, frame: Frame, total: f32, limits: &TrieLimits<'_>) {
        let parent_freq = self.candidates[frame.node as usize].freq;
        if frame.end - frame.start == 1 {
            // A lone occurrence: its continuation is a chain of constant frequency.
            let i = self.order[frame.start] as usize;
            let (occ, freq) = (self.occurrences[i], self.weights[i] / total);
            if freq < limits.min_prob {
                return;
            }
            let mut node = frame.node;
            for depth in frame.depth..limits.depth {
                match matcher.continuation(&occ, depth, limits.periodic) {
                    Some(t) if (t as usize) < limits.vocab_size => {
                        let agreement = if depth == frame.depth {
                            freq / parent_freq
                        } else {
                            1.0
                        };
                        node = self.push(
                            node,
                            t,
                            tag(occ.source),
                            freq,
                            occ.match_len,
                            depth + 1,
                            agreement,
                        );
                    }
                    _ => break,
                }
            }
            return;
        }
        self.keys.clear();
        for &i in &self.order[frame.start..frame.end] {
            let occ = &self.occurrences[i as usize];
            let key = matcher
                .continuation(occ, frame.depth, limits.periodic)
                .filter(|&t| (t as usize) < limits.vocab_size)
                .map_or(u64::MAX, u64::from);
            self.keys.push((key, i));
        }
        self.keys.sort_unstable();
        for (slot, &(_, i)) in self.order[frame.start..frame.end]
            .iter_mut()
            .zip(&self.keys)
        {
            *slot = i;
        }
        let mut best: Option<Group> = None;
        let mut a = 0;
        while a < self.keys.len() && self.keys[a].0 != u64::MAX {
            let key = self.keys[a].0;
            let mut b = a;
            let (mut weight, mut sources, mut longest) = (0.0, SourceSet::EMPTY, 0);
            while b < self.keys.len() && self.keys[b].0 == key {
                let occ = &self.occurrences[self.keys[b].1 as usize];
                weight += self.weights[self.keys[b].1 as usize];
                sources = sources.union(tag(occ.source));
                longest = longest.max(occ.match_len);
                b += 1;
            }
            let freq = weight / total;
            if freq >= limits.min_prob {
                let group = Group {
                    freq,
                    token: key as Token,
                    sources,
                    longest,
                    a,
                    b,
                };
                if !limits.chain {
                    self.add(frame, group, parent_freq, limits);
                } else if best.is_none_or(|g| freq > g.freq) {
                    best = Some(group);
                }
            }
            a = b;
        }
        if let Some(group) = best {
            self.add(frame, group, parent_freq, limits);
        }
    }

    fn add(&mut self, frame: Frame, g: Group, parent_freq: f32, limits: &TrieLimits<'_>) {
        let depth = frame.depth + 1;
        let node = self.push(
            frame.node,
            g.token,
            g.sources,
            g.freq,
            g.longest,
            depth,
            g.freq / parent_freq,
        );
        if depth < limits.depth {
            self.frames.push(Frame {
                node,
                depth,
                start: frame.start + g.a,
                end: frame.start + g.b,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        parent: u32,
        token: Token,
        sources: SourceSet,
        freq: f32,
        match_len: usize,
        depth: usize,
        agreement: f32,
    ) -> u32 {
        self.candidates.push(Candidate {
            parent,
            token,
            sources,
            freq,
            calibration: NodeCalibration::new(match_len, depth, agreement),
        });
        (self.candidates.len() - 1) as u32
    }
}

/// Occurrences that continue with the same token.
#[derive(Clone, Copy, Debug)]
struct Group {
    freq: f32,
    token: Token,
    sources: SourceSet,
    longest: usize,
    a: usize,
    b: usize,
}

/// Drafts the continuation of `occ` as a chain below the root, at most `len` tokens, stopping
/// at a token outside the vocabulary.
pub(crate) fn chain_from(
    matcher: &Matcher,
    occ: &Occurrence,
    len: usize,
    periodic: bool,
    vocab_size: usize,
    tree: &mut TokenTree,
) -> Result<(), TreeError> {
    let mut node = 0;
    for depth in 0..len {
        match matcher.continuation(occ, depth, periodic) {
            Some(t) if (t as usize) < vocab_size => {
                node = tree.push_with(node, t, true, tag(occ.source))?;
            }
            _ => break,
        }
    }
    Ok(())
}
