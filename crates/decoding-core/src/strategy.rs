//! Sans-IO strategies: per-sequence state machines that draft a tree and learn from the result.

use std::borrow::Cow;

use ndarray::{ArrayView1, ArrayView2};

use crate::error::DecodeError;
use crate::tree::{Token, TokenTree};
use crate::verify::{Verification, Verifier};

/// What a strategy sees when it drafts.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct DraftContext<'a> {
    /// The prompt and every token emitted so far; the last one is the pending token, the
    /// root of the tree to draft.
    pub tokens: &'a [Token],
    /// How many of `tokens` are the prompt.
    pub prompt_len: usize,
    /// The most nodes the tree may hold, root included.
    pub max_nodes: usize,
    /// The deepest draft that can still be used: tokens left to generate, minus the bonus
    /// token every step produces (and bounded by the model's context).
    pub max_depth: usize,
    /// The model evaluates chains only: draft a chain.
    pub chains_only: bool,
    /// The model's vocabulary size.
    pub vocab_size: usize,
    /// How many sequences share this step's forward pass (1 alone). Cost-aware strategies
    /// size their trees on [`CostCurve::per_sequence`](crate::CostCurve::per_sequence).
    pub batch_size: usize,
}

impl<'a> DraftContext<'a> {
    /// The context of a sequence holding `tokens` (the first `prompt_len` the prompt, the
    /// last one pending) for a model of `vocab_size` tokens: a tree of at most `max_nodes`
    /// nodes and `max_depth` deep, over any tree shape, alone in its forward pass.
    pub fn new(
        tokens: &'a [Token],
        prompt_len: usize,
        max_nodes: usize,
        max_depth: usize,
        vocab_size: usize,
    ) -> Self {
        Self {
            tokens,
            prompt_len,
            max_nodes,
            max_depth,
            chains_only: false,
            vocab_size,
            batch_size: 1,
        }
    }

    /// The same context for a model that evaluates chains only.
    pub fn with_chains_only(mut self, chains_only: bool) -> Self {
        self.chains_only = chains_only;
        self
    }

    /// The same context for `batch` sequences sharing the forward pass.
    pub fn with_batch_size(mut self, batch: usize) -> Self {
        self.batch_size = batch.max(1);
        self
    }

    /// The same context with another node budget.
    pub fn with_max_nodes(mut self, max_nodes: usize) -> Self {
        self.max_nodes = max_nodes;
        self
    }
}

impl DraftContext<'_> {
    /// The pending token: the root of the tree to draft.
    pub fn pending(&self) -> Token {
        self.tokens[self.tokens.len() - 1]
    }

    /// The tokens emitted after the prompt, the pending one included.
    pub fn generated(&self) -> &[Token] {
        &self.tokens[self.prompt_len..]
    }
}

/// What a strategy learns after the forward pass and the verification of its tree.
#[derive(Clone, Copy, Debug)]
pub struct StepFeedback<'a> {
    /// The tree the strategy drafted (node ids as it built them).
    pub tree: &'a TokenTree,
    /// One logits row per node that asked for logits (see [`TokenTree::logits_row`]).
    pub logits: ArrayView2<'a, f32>,
    /// The accepted path, root first, and the bonus token.
    pub verification: &'a Verification,
    /// The tokens emitted by this step: the accepted drafts and the bonus token, cut short
    /// when a stop condition fired inside them.
    pub emitted: &'a [Token],
    /// The whole sequence after this step (prompt and emitted tokens); the last token is the
    /// new pending token.
    pub tokens: &'a [Token],
    /// The final hidden state at the last accepted node, if the strategy asked for it.
    pub hidden_state: Option<ArrayView1<'a, f32>>,
    /// Extra decoding-head logits at the last accepted node (one row per head), if the
    /// strategy asked for them.
    pub head_logits: Option<ArrayView2<'a, f32>>,
}

/// What a strategy needs from the model beyond logits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Requirements {
    /// The final hidden state at the last accepted node (Medusa heads run by the library).
    pub hidden_state: bool,
    /// Engine-computed decoding-head logits at the last accepted node.
    pub head_logits: bool,
}

impl Requirements {
    /// Nothing beyond logits.
    pub const NONE: Self = Self {
        hidden_state: false,
        head_logits: false,
    };

    /// The final hidden state at the last accepted node.
    pub const HIDDEN_STATE: Self = Self {
        hidden_state: true,
        head_logits: false,
    };

    /// Engine-computed head logits at the last accepted node.
    pub const HEAD_LOGITS: Self = Self {
        hidden_state: false,
        head_logits: true,
    };

    /// What either `self` or `other` needs (a model serving both strategies provides it).
    pub const fn union(self, other: Self) -> Self {
        Self {
            hidden_state: self.hidden_state || other.hidden_state,
            head_logits: self.head_logits || other.head_logits,
        }
    }
}

/// A named statistic a strategy reports (pool hit rate, mean match length, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Short snake_case name.
    pub name: Cow<'static, str>,
    /// Its value.
    pub value: f64,
}

impl Metric {
    /// A metric.
    pub fn new(name: impl Into<Cow<'static, str>>, value: f64) -> Self {
        Self {
            name: name.into(),
            value,
        }
    }
}

/// A drafting technique, as a deterministic per-sequence state machine.
///
/// The decoder calls [`begin`](Self::begin) once with the prompt, then per step
/// [`draft`](Self::draft) (fill a tree rooted at the pending token), runs the model itself,
/// calls [`verify`](Self::verify) and finally [`observe`](Self::observe). No method calls the
/// model, so the same strategy serves a single-sequence loop and a batching engine.
///
/// Drafts never change what is emitted (verification decides that); a strategy only decides
/// how many tokens each forward pass yields. The one exception is a strategy that overrides
/// [`verify`](Self::verify) with a lossy rule, which must say so in
/// [`is_lossless`](Self::is_lossless).
pub trait Strategy {
    /// A short name for reports, such as `lookahead`.
    fn name(&self) -> &str;

    /// Starts a new sequence: forget per-sequence state and read the prompt.
    fn begin(&mut self, prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError>;

    /// Drafts this step's tree. `tree` arrives holding only the root (the pending token, with
    /// logits requested); add nodes below it within `ctx.max_nodes`.
    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError>;

    /// Learns from the verified step (update trajectories, pools, statistics).
    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError>;

    /// What the strategy needs from the model beyond logits.
    fn requirements(&self) -> Requirements {
        Requirements::NONE
    }

    /// Verifies the drafted tree and emits its tokens. The default is
    /// [`Verifier::exact`], lossless under greedy decoding and sampling; a lossy rule reads
    /// [`Verifier::distribution`] and emits the path it accepts with [`Verifier::accept`].
    fn verify(&mut self, verifier: &mut Verifier<'_>) -> Result<(), DecodeError> {
        verifier.exact()
    }

    /// Whether a [`Composite`](crate::Composite) may drop some of this strategy's drafted
    /// nodes to fit its node budget. A strategy that allows it must accept, in
    /// [`observe`](Self::observe), feedback in which the logits rows of dropped nodes are NaN
    /// (those nodes were never evaluated), and may be asked to draft with a budget of one
    /// node when its drafts have not been paying (it should then return at once, without its
    /// expensive work). The default, `false`, keeps every drafted node.
    fn prunable(&self) -> bool {
        false
    }

    /// The strategy's own estimate, for every node of the tree its last
    /// [`draft`](Self::draft) built (node order, the root's 1), of the probability that the
    /// node is accepted: that the model agrees with its whole path. A
    /// [`Composite`](crate::Composite) calibrates these against what it observes and ranks the
    /// nodes of all its sources by them. The default, `None`, has no estimates; a composite
    /// then learns acceptance rates by depth and sibling rank.
    fn draft_scores(&self) -> Option<&[f32]> {
        None
    }

    /// Whether the output is exactly that of plain decoding. Only strategies that override
    /// [`verify`](Self::verify) with an approximate rule return `false`.
    fn is_lossless(&self) -> bool {
        true
    }

    /// Strategy-specific statistics for reports.
    fn metrics(&self) -> Vec<Metric> {
        Vec::new()
    }
}

macro_rules! forward_strategy {
    ($($ty:ty),*) => {$(
        impl<S: Strategy + ?Sized> Strategy for $ty {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn begin(&mut self, prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
                (**self).begin(prompt, vocab_size)
            }
            fn draft(
                &mut self,
                ctx: &DraftContext<'_>,
                tree: &mut TokenTree,
            ) -> Result<(), DecodeError> {
                (**self).draft(ctx, tree)
            }
            fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
                (**self).observe(feedback)
            }
            fn requirements(&self) -> Requirements {
                (**self).requirements()
            }
            fn verify(&mut self, verifier: &mut Verifier<'_>) -> Result<(), DecodeError> {
                (**self).verify(verifier)
            }
            fn prunable(&self) -> bool {
                (**self).prunable()
            }
            fn draft_scores(&self) -> Option<&[f32]> {
                (**self).draft_scores()
            }
            fn is_lossless(&self) -> bool {
                (**self).is_lossless()
            }
            fn metrics(&self) -> Vec<Metric> {
                (**self).metrics()
            }
        }
    )*};
}

forward_strategy!(&mut S, Box<S>);

/// Plain autoregressive decoding: the tree is the root alone, one token per forward pass.
/// The baseline every technique is measured against.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Strategy for Plain {
    fn name(&self) -> &str {
        "plain"
    }

    fn begin(&mut self, _prompt: &[Token], _vocab_size: usize) -> Result<(), DecodeError> {
        Ok(())
    }

    fn draft(&mut self, _ctx: &DraftContext<'_>, _tree: &mut TokenTree) -> Result<(), DecodeError> {
        Ok(())
    }

    fn observe(&mut self, _feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        Ok(())
    }
}
