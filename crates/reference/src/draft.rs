//! Drafting from occurrences: a trie of continuations weighted by frequency (SuffixDecoding),
//! or the continuation of one occurrence (LLMA, prompt lookup).

use decoding_core::{NodeId, SourceId, SourceSet, Token, TokenTree, TreeBuilder, TreeError};

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
pub(crate) struct TrieLimits {
    /// Deepest draft (tokens below the root).
    pub(crate) depth: usize,
    /// Most nodes, root included.
    pub(crate) nodes: usize,
    /// Drop nodes whose estimated probability is below this.
    pub(crate) min_prob: f32,
    /// Only the most frequent chain.
    pub(crate) chain: bool,
    /// Occurrence weight: `match_len ^ length_weight`.
    pub(crate) length_weight: f32,
    /// Continue context occurrences periodically past the end of the context.
    pub(crate) periodic: bool,
    /// Tokens at or above this are never drafted.
    pub(crate) vocab_size: usize,
}

/// A group of occurrences sharing a trie node, still to expand.
#[derive(Clone, Copy, Debug)]
struct Frame {
    node: NodeId,
    depth: usize,
    start: usize,
    end: usize,
}

/// Reusable buffers for drafting.
#[derive(Clone, Debug)]
pub(crate) struct Drafter {
    pub(crate) occurrences: Vec<Occurrence>,
    weights: Vec<f32>,
    order: Vec<u32>,
    keys: Vec<(u64, u32)>,
    frames: Vec<Frame>,
    builder: TreeBuilder,
    map: Vec<Option<NodeId>>,
}

impl Default for Drafter {
    fn default() -> Self {
        Self {
            occurrences: Vec::new(),
            weights: Vec::new(),
            order: Vec::new(),
            keys: Vec::new(),
            frames: Vec::new(),
            builder: TreeBuilder::new(0),
            map: Vec::new(),
        }
    }
}

impl Drafter {
    /// Collects occurrences and drafts the trie of their continuations into `tree` (which
    /// holds the root).
    ///
    /// Each occurrence weighs `w = match_len ^ length_weight`; a trie node's probability is
    /// the weight of the occurrences whose continuation passes through it over the total
    /// weight: the product of the frequency-weighted conditional probabilities along its
    /// path, as in SuffixDecoding. Nodes below `min_prob` are cut; the tree builder keeps the
    /// most probable `nodes` (probabilities never grow along a path, so they form a tree).
    pub(crate) fn weighted(
        &mut self,
        matcher: &mut Matcher,
        query: &OccurrenceQuery,
        limits: &TrieLimits,
        tree: &mut TokenTree,
    ) -> Result<(), TreeError> {
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
        self.builder.reset(tree.root_token());
        self.frames.clear();
        self.frames.push(Frame {
            node: 0,
            depth: 0,
            start: 0,
            end: self.order.len(),
        });
        while let Some(frame) = self.frames.pop() {
            self.expand(matcher, frame, total, limits)?;
        }
        self.builder.build(limits.nodes, tree, &mut self.map)
    }

    /// Groups the occurrences of `frame` by their next token and adds one child per group.
    fn expand(
        &mut self,
        matcher: &Matcher,
        frame: Frame,
        total: f32,
        limits: &TrieLimits,
    ) -> Result<(), TreeError> {
        if frame.end - frame.start == 1 {
            // A lone occurrence: its continuation is a chain of constant probability.
            let i = self.order[frame.start] as usize;
            let (occ, prob) = (self.occurrences[i], self.weights[i] / total);
            if prob < limits.min_prob {
                return Ok(());
            }
            let mut node = frame.node;
            for depth in frame.depth..limits.depth {
                match matcher.continuation(&occ, depth, limits.periodic) {
                    Some(t) if (t as usize) < limits.vocab_size => {
                        node = self
                            .builder
                            .add_with(node, t, prob, tag(occ.source), true)?;
                    }
                    _ => break,
                }
            }
            return Ok(());
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
        let mut best: Option<(f32, Token, SourceSet, usize, usize)> = None;
        let mut a = 0;
        while a < self.keys.len() && self.keys[a].0 != u64::MAX {
            let key = self.keys[a].0;
            let mut b = a;
            let (mut weight, mut sources) = (0.0, SourceSet::EMPTY);
            while b < self.keys.len() && self.keys[b].0 == key {
                let i = self.keys[b].1 as usize;
                weight += self.weights[i];
                sources = sources.union(tag(self.occurrences[i].source));
                b += 1;
            }
            let prob = weight / total;
            if prob >= limits.min_prob {
                let group = (prob, key as Token, sources, a, b);
                if limits.chain {
                    if best.is_none_or(|(p, ..)| prob > p) {
                        best = Some(group);
                    }
                } else {
                    self.add(frame, group, limits)?;
                }
            }
            a = b;
        }
        if let Some(group) = best {
            self.add(frame, group, limits)?;
        }
        Ok(())
    }

    fn add(
        &mut self,
        frame: Frame,
        (prob, token, sources, a, b): (f32, Token, SourceSet, usize, usize),
        limits: &TrieLimits,
    ) -> Result<(), TreeError> {
        let node = self
            .builder
            .add_with(frame.node, token, prob, sources, true)?;
        if frame.depth + 1 < limits.depth {
            self.frames.push(Frame {
                node,
                depth: frame.depth + 1,
                start: frame.start + a,
                end: frame.start + b,
            });
        }
        Ok(())
    }
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
