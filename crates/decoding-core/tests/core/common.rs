//! Test helpers: strategies that draft arbitrary trees, reference decoders.

use decoding_core::{
    DecodeConfig, DecodeError, DraftContext, LogitsModel, StepFeedback, Strategy, Token, TokenTree,
    argmax,
};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// Drafts seeded random trees: any draft must leave the output unchanged.
pub(crate) struct RandomDrafts {
    rng: Xoshiro256PlusPlus,
    pub(crate) max_nodes: usize,
    pub(crate) vocab: usize,
    /// Whether a composite may cut this source's tree.
    pub(crate) prunable: bool,
    /// Whether it scores its nodes (arbitrary scores in [0, 1], root 1).
    pub(crate) scored: bool,
    scores: Vec<f32>,
}

impl RandomDrafts {
    pub(crate) fn new(seed: u64, max_nodes: usize) -> Self {
        Self {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            max_nodes,
            vocab: 0,
            prunable: false,
            scored: false,
            scores: Vec::new(),
        }
    }
}

impl Strategy for RandomDrafts {
    fn name(&self) -> &str {
        "random"
    }

    fn begin(&mut self, _prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        self.vocab = vocab_size;
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        let budget = self.max_nodes.min(ctx.max_nodes);
        let target = self.rng.random_range(1..=budget);
        for _attempt in 0..4 * target {
            if tree.len() >= target {
                break;
            }
            let parent = self.rng.random_range(0..tree.len());
            if tree.depth(parent) >= ctx.max_depth {
                continue;
            }
            if ctx.chains_only && parent != tree.len() - 1 {
                continue;
            }
            let token = self.rng.random_range(0..self.vocab as Token);
            let logits = self.rng.random_bool(0.9);
            tree.push_with(parent, token, logits, decoding_core::SourceSet::EMPTY)?;
        }
        self.scores.clear();
        if self.scored {
            self.scores.push(1.0);
            for _ in 1..tree.len() {
                self.scores.push(self.rng.random_range(0.0..=1.0));
            }
        }
        Ok(())
    }

    fn observe(&mut self, _feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        Ok(())
    }

    fn prunable(&self) -> bool {
        self.prunable
    }

    fn draft_scores(&self) -> Option<&[f32]> {
        self.scored.then_some(self.scores.as_slice())
    }
}

/// Drafts the true greedy continuation (known in advance), `depth` tokens deep, plus noise
/// siblings: exercises long acceptances and stops inside a chunk.
pub(crate) struct Oracle {
    pub(crate) continuation: Vec<Token>,
    pub(crate) depth: usize,
}

impl Strategy for Oracle {
    fn name(&self) -> &str {
        "oracle"
    }

    fn begin(&mut self, _prompt: &[Token], _vocab_size: usize) -> Result<(), DecodeError> {
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        let done = ctx.generated().len();
        let take = self.depth.min(ctx.max_depth).min(ctx.max_nodes - 1);
        let end = (done + take).min(self.continuation.len());
        let next = &self.continuation[done.min(end)..end];
        tree.extend_chain(0, next, true, decoding_core::SourceSet::EMPTY)?;
        Ok(())
    }

    fn observe(&mut self, _feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// Plain greedy decoding by recomputing every step from scratch with the model's logits of
/// the whole context, no cache reuse: the naive reference loop.
pub(crate) fn naive_greedy(
    model: &mut dyn LogitsModel,
    prompt: &[Token],
    config: &DecodeConfig,
) -> Vec<Token> {
    let vocab = model.vocab_size();
    let mut context = prompt.to_vec();
    let mut out = Vec::new();
    while out.len() < config.max_new_tokens() {
        model.reset().unwrap();
        let tree = TokenTree::from_chain(&context).unwrap();
        let mut logits = ndarray::Array2::zeros((tree.logits_rows(), vocab));
        model.forward(&tree, logits.view_mut()).unwrap();
        let last = logits.row(tree.len() - 1).to_vec();
        let token = argmax(&last).unwrap();
        context.push(token);
        out.push(token);
        if config.eos_tokens().contains(&token)
            || config.stop_sequences().iter().any(|s| out.ends_with(s))
        {
            break;
        }
    }
    out
}

/// A random tree of at most `max_nodes` nodes over `vocab` tokens, built by pushing random
/// children (duplicates merge), with random logits flags (root always flagged).
pub(crate) fn random_tree(
    rng: &mut Xoshiro256PlusPlus,
    root: Token,
    vocab: u32,
    max_nodes: usize,
) -> TokenTree {
    let mut tree = TokenTree::new(root);
    let target = rng.random_range(1..=max_nodes);
    for _ in 0..3 * target {
        if tree.len() >= target {
            break;
        }
        let parent = rng.random_range(0..tree.len());
        let logits = rng.random_bool(0.8);
        tree.push_with(
            parent,
            rng.random_range(0..vocab),
            logits,
            decoding_core::SourceSet::EMPTY,
        )
        .unwrap();
    }
    tree
}
