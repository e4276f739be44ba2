//! The model contract: a forward over a token tree, and a commit of one path.

use ndarray::{ArrayViewMut1, ArrayViewMut2};

use crate::error::ModelError;
use crate::tree::{NodeId, TokenTree};

/// What shapes of tree a model can evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeSupport {
    /// Any tree: the model has tree attention and can keep any root-to-node path.
    Trees,
    /// Chains only: the model can append a run of tokens and roll back to a prefix of it
    /// (engines with a contiguous KV cache and no custom attention mask). Strategies then
    /// draft chains, and the decoder rejects a branching tree with an error.
    ChainsOnly,
}

/// A language model seen as a function from a cached context plus a token tree to logits.
///
/// This is the one trait an engine implements. Every technique in this library drafts a
/// [`TokenTree`], asks the model for the logits of its nodes in one forward pass, verifies the
/// drafts against those logits and then commits the accepted path.
///
/// # Contract
///
/// The model holds a *committed* context of `committed_len()` tokens (its KV cache).
///
/// * [`forward`](Self::forward) evaluates every node of `tree` as if it were appended to
///   the committed context: node `n` sits at position `committed_len() + tree.depth(n)` and
///   attends to the whole committed context and to its own ancestors (and itself), never to
///   its siblings or to other branches. For each node with
///   [`needs_logits`](TokenTree::needs_logits), the model writes that node's next-token
///   logits into row [`logits_row(n)`](TokenTree::logits_row) of `logits`, which has
///   exactly [`tree.logits_rows()`](TokenTree::logits_rows) rows and `vocab_size()` columns.
///   Nodes without the flag need no logits; the model may skip their output projection.
/// * The nodes of the last forward are *uncommitted*. [`commit`](Self::commit) keeps the
///   nodes of one root-to-node `path` of that tree, appending them to the committed context
///   in path order, and drops every other uncommitted node. An empty path drops them all.
///   A second `commit`, or a `commit` without a forward since the last one, is an error.
///   A new `forward` without a `commit` drops the previous uncommitted nodes first.
/// * [`truncate`](Self::truncate) shortens the committed context to `len` tokens (and drops
///   uncommitted nodes); [`reset`](Self::reset) empties it.
/// * Logits must be a pure function of the tokens on the node's path (committed context plus
///   ancestors): they must not depend on which other nodes share the tree, nor on whether the
///   committed context arrived by one long prefill or by many commits. Decoding is lossless
///   only to the extent this holds; a model that cannot promise it bit for bit (batched
///   GEMMs in reduced precision, for example) will still agree with plain decoding almost
///   always, and any disagreement comes from a near-tie in the logits.
/// * Errors leave the committed context as it was before the call.
///
/// A chain is a tree, so prefill (the prompt as a chain) and plain decoding (a root-only
/// tree) use the same two calls.
///
/// # Implementing
///
/// * **Tree attention.** Build the attention mask from [`TokenTree::parent`]: node `n` sees
///   every cached position and the nodes of its root-to-`n` path. Positions (RoPE) are
///   `committed_len() + depth(n)`, not `committed_len() + n`. Write the new K/V entries after
///   the committed ones, in node order; `commit(path)` then moves the entries of `path` to
///   the front of the uncommitted region, in order, and sets the committed length. With a
///   paged cache, commit can remap pages instead of copying.
/// * **Chains only.** An engine without a custom mask returns
///   [`TreeSupport::ChainsOnly`] from [`tree_support`](Self::tree_support). It then only
///   sees chains; `commit(path)` is always a prefix of the chain, so it keeps the first
///   `path.len()` entries and truncates the rest.
/// * **Logits on demand.** Computing the output projection only for the rows asked for
///   saves most of the cost of big trees (and of prefill).
/// * **Extras.** Models that expose final hidden states (for Medusa heads run by the library)
///   return them from [`hidden_states`](Self::hidden_states); engines that compute extra
///   decoding-head logits themselves return them from [`head_logits`](Self::head_logits).
/// * Validate what you are given: `tree.check_vocab(vocab_size)`, the logits shape, and the
///   commit path with [`TokenTree::check_path`]; return [`ModelError`] rather than panic.
///
/// The trait is object safe; the decoding loop takes `&mut dyn LogitsModel`. It is
/// implemented for `&mut M` and `Box<M>`.
pub trait LogitsModel {
    /// The number of logits per row.
    fn vocab_size(&self) -> usize;

    /// Number of tokens in the committed context.
    fn committed_len(&self) -> usize;

    /// Evaluates `tree` on top of the committed context; see the trait docs.
    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError>;

    /// Keeps the uncommitted nodes of `path` (root first) and drops the others.
    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError>;

    /// Shortens the committed context to `len` tokens and drops uncommitted nodes.
    fn truncate(&mut self, len: usize) -> Result<(), ModelError>;

    /// Empties the committed context.
    fn reset(&mut self) -> Result<(), ModelError> {
        self.truncate(0)
    }

    /// Which trees the model can evaluate. Defaults to any tree.
    fn tree_support(&self) -> TreeSupport {
        TreeSupport::Trees
    }

    /// The longest context (committed plus tree depth) the model accepts, if bounded.
    fn max_context(&self) -> Option<usize> {
        None
    }

    /// Access to the final hidden states of the last forward, if the model exposes them.
    fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
        None
    }

    /// Access to extra decoding-head logits, if the engine computes them itself.
    fn head_logits(&mut self) -> Option<&mut dyn HeadLogits> {
        None
    }
}

/// Final hidden states (after the last norm, the input of the output projection) of the nodes
/// of the last forward that asked for logits. Medusa heads run by the library read them.
pub trait HiddenStates {
    /// Width of a hidden state.
    fn hidden_size(&self) -> usize;

    /// Writes the final hidden state of `node` of the last forward into `out`
    /// (`hidden_size()` long). Only nodes that asked for logits are guaranteed to have one.
    fn hidden_state(&self, node: NodeId, out: ArrayViewMut1<'_, f32>) -> Result<(), ModelError>;
}

/// Extra decoding heads computed by the engine: head `k` (0-based) predicts the token
/// `k + 2` positions after a node (the base model's own logits predict the next one).
pub trait HeadLogits {
    /// Number of extra heads.
    fn num_heads(&self) -> usize;

    /// Writes the logits of every head at `node` of the last forward into `out`
    /// (`num_heads()` rows by vocabulary size). Only nodes that asked for logits are
    /// guaranteed to have them.
    fn head_logits(&mut self, node: NodeId, out: ArrayViewMut2<'_, f32>) -> Result<(), ModelError>;
}

macro_rules! forward_logits_model {
    ($($ty:ty),*) => {$(
        impl<M: LogitsModel + ?Sized> LogitsModel for $ty {
            fn vocab_size(&self) -> usize {
                (**self).vocab_size()
            }
            fn committed_len(&self) -> usize {
                (**self).committed_len()
            }
            fn forward(
                &mut self,
                tree: &TokenTree,
                logits: ArrayViewMut2<'_, f32>,
            ) -> Result<(), ModelError> {
                (**self).forward(tree, logits)
            }
            fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
                (**self).commit(path)
            }
            fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
                (**self).truncate(len)
            }
            fn reset(&mut self) -> Result<(), ModelError> {
                (**self).reset()
            }
            fn tree_support(&self) -> TreeSupport {
                (**self).tree_support()
            }
            fn max_context(&self) -> Option<usize> {
                (**self).max_context()
            }
            fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
                (**self).hidden_states()
            }
            fn head_logits(&mut self) -> Option<&mut dyn HeadLogits> {
                (**self).head_logits()
            }
        }
    )*};
}

forward_logits_model!(&mut M, Box<M>);
