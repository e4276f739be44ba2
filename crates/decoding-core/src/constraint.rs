//! Constraints: token masks with a state that advances token by token (grammar-constrained
//! decoding).
//!
//! A [`Constraint`] starts one [`ConstraintState`] per sequence. The state says which tokens
//! may come next ([`mask`](ConstraintState::mask)) and moves past each token the sequence
//! emits ([`advance`](ConstraintState::advance)). The decoder masks every row it draws a
//! token from with the state after that row's history, after the logits processors and
//! before the sampling rule, exactly as plain constrained decoding does, so a draft that
//! violates the constraint has probability 0 and is never accepted.
//!
//! In a tree, the state of a node is its parent's advanced by the node's token: branches fork
//! it ([`fork`](ConstraintState::fork)). The exact verifier walks a single path and so only
//! ever advances the sequence's own state along the tokens it emits; custom verifiers that
//! look at several branches get a fork per node. Rolling back to the accepted path is then
//! free: the sequence's state has only seen accepted tokens. A failed step restores the state
//! it had before the step.

use std::fmt;

use crate::tree::Token;

/// Why a constraint refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConstraintError {
    /// A token the state does not allow was advanced over.
    #[error("token {token} is not allowed by the constraint here")]
    NotAllowed {
        /// The token.
        token: Token,
    },
    /// The state allows no token at all (a dead end of the grammar).
    #[error("the constraint allows no token here")]
    NothingAllowed,
    /// The constraint cannot work with this vocabulary or prompt.
    #[error("the constraint cannot start: {0}")]
    Start(String),
    /// Any other failure, with its source.
    #[error("constraint failure: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A family of token masks: starts one state per sequence.
pub trait Constraint: fmt::Debug + Send + Sync {
    /// A short name for reports.
    fn name(&self) -> &str;

    /// The state at the start of generation, after `prompt` (which is context, not
    /// constrained), for a model with `vocab_size` tokens.
    fn start(
        &self,
        prompt: &[Token],
        vocab_size: usize,
    ) -> Result<Box<dyn ConstraintState>, ConstraintError>;
}

/// Where a constrained sequence stands.
///
/// # Contract
///
/// [`mask`](Self::mask) and [`allows`](Self::allows) agree, and depend only on the tokens the
/// state has advanced over since [`Constraint::start`]; [`fork`](Self::fork) gives an
/// independent copy that behaves identically.
pub trait ConstraintState: fmt::Debug + Send {
    /// Sets the logit of every token not allowed next to `-inf`.
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError>;

    /// Whether `token` is allowed next.
    fn allows(&mut self, token: Token) -> bool;

    /// Moves past `token`; an error (and no change) if it is not allowed.
    fn advance(&mut self, token: Token) -> Result<(), ConstraintError>;

    /// An independent copy, for a branch of a tree or to restore after a failed step.
    fn fork(&self) -> Box<dyn ConstraintState>;
}

/// Applies `state`'s mask to `logits`, failing if it leaves no token.
pub(crate) fn apply_mask(
    state: &mut dyn ConstraintState,
    logits: &mut [f32],
) -> Result<(), ConstraintError> {
    state.mask(logits)?;
    if logits.iter().all(|&x| x == f32::NEG_INFINITY) {
        return Err(ConstraintError::NothingAllowed);
    }
    Ok(())
}
