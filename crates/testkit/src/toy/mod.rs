//! Small deterministic models for tests, examples and benchmarks.
//!
//! * [`RecomputeModel`] turns any context-to-logits function into a [`LogitsModel`] by
//!   recomputing every node from its full path. It is the semantic reference: any correct
//!   implementation of the trait gives the same logits for the same path.
//! * [`HashModel`] (pseudo-random logits of the last few tokens, so greedy output tends to
//!   loop) and [`NgramModel`] (an n-gram table built from a token text) are *caching* models:
//!   they keep one state per committed position and derive each tree node's state from its
//!   parent's, the way a transformer keeps a KV cache.
//! * [`InductionModel`] copies the continuation of the previous occurrence of the current
//!   suffix, like the induction heads of real models; copy-based drafters shine on it.
//! * [`WithRolloutHeads`] adds engine-computed Medusa-style heads of a chosen accuracy to a
//!   context-function model.
//! * [`WithCost`] gives any model a realistic cost per forward pass (a fixed part plus a part
//!   per node), and [`ChainsOnlyModel`] turns any model into one that evaluates chains only.
//!
//! [`LogitsModel`]: decoding_core::LogitsModel

mod cost;
mod heads;
mod induction;
mod recompute;
mod window;

pub use cost::{ChainsOnlyModel, WithCost};
pub use heads::WithRolloutHeads;
pub use induction::{InductionLogits, InductionModel};
pub use recompute::{ContextLogits, RecomputeModel};
pub use window::{
    HashLogits, HashModel, MAX_ORDER, NgramModel, NgramTable, WindowLogits, WindowModel,
};

use decoding_core::{ModelError, NodeId, TokenTree};

/// The uncommitted tree of the last forward, shared bookkeeping of the toy models.
#[derive(Clone, Debug, Default)]
struct Uncommitted {
    tree: Option<TokenTree>,
}

impl Uncommitted {
    fn set(&mut self, tree: &TokenTree) {
        match &mut self.tree {
            Some(kept) => kept.clone_from(tree),
            None => self.tree = Some(tree.clone()),
        }
    }

    /// Checks `path` against the last forward and forgets that forward.
    fn take(&mut self, path: &[NodeId]) -> Result<TokenTree, ModelError> {
        let tree = self
            .tree
            .take()
            .ok_or_else(|| ModelError::msg("commit without a forward since the last commit"))?;
        tree.check_path(path)?;
        Ok(tree)
    }

    fn clear(&mut self) {
        self.tree = None;
    }
}

/// Checks the tree's tokens and the logits buffer shape.
fn check_forward(
    tree: &TokenTree,
    logits: &ndarray::ArrayViewMut2<'_, f32>,
    vocab_size: usize,
) -> Result<(), ModelError> {
    tree.check_vocab(vocab_size)?;
    if logits.dim() != (tree.logits_rows(), vocab_size) {
        return Err(ModelError::msg(format!(
            "logits buffer is {:?}, expected ({}, {vocab_size})",
            logits.dim(),
            tree.logits_rows()
        )));
    }
    Ok(())
}

fn check_truncate(len: usize, committed: usize) -> Result<(), ModelError> {
    if len > committed {
        return Err(ModelError::msg(format!(
            "cannot truncate {committed} committed tokens to {len}"
        )));
    }
    Ok(())
}

/// A 64-bit mix (SplitMix64 finaliser): cheap, well distributed, deterministic everywhere.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform value in `[0, 1)` from a hash.
fn unit(hash: u64) -> f32 {
    (hash >> 40) as f32 / (1u64 << 24) as f32
}
