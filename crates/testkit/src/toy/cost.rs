//! Wrappers that change how a model behaves from the outside: its cost, its tree support.

use std::time::{Duration, Instant};

use ndarray::ArrayViewMut2;

use decoding_core::{
    HeadLogits, HiddenStates, LogitsModel, ModelError, NodeId, TokenTree, TreeSupport,
};

/// Gives a model a realistic cost: every forward pass takes at least `fixed + per_node *
/// nodes` of wall-clock time (spent spinning, as a GPU kernel or a CPU GEMM would keep the
/// caller busy). With `per_node` small against `fixed` it behaves like a large model on a
/// GPU, where a tree costs about as much as one token.
#[derive(Clone, Debug)]
pub struct WithCost<M> {
    inner: M,
    fixed: Duration,
    per_node: Duration,
}

impl<M> WithCost<M> {
    /// Wraps `inner` with this cost per forward pass.
    pub fn new(inner: M, fixed: Duration, per_node: Duration) -> Self {
        Self {
            inner,
            fixed,
            per_node,
        }
    }

    /// The wrapped model.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The cost of a forward over `nodes` nodes.
    pub fn cost(&self, nodes: usize) -> Duration {
        self.fixed + self.per_node * u32::try_from(nodes).unwrap_or(u32::MAX)
    }
}

impl<M: LogitsModel> LogitsModel for WithCost<M> {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn committed_len(&self) -> usize {
        self.inner.committed_len()
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let started = Instant::now();
        self.inner.forward(tree, logits)?;
        let target = self.cost(tree.len());
        while started.elapsed() < target {
            std::hint::spin_loop();
        }
        Ok(())
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        self.inner.commit(path)
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        self.inner.truncate(len)
    }

    fn tree_support(&self) -> TreeSupport {
        self.inner.tree_support()
    }

    fn max_context(&self) -> Option<usize> {
        self.inner.max_context()
    }

    fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
        self.inner.hidden_states()
    }

    fn head_logits(&mut self) -> Option<&mut dyn HeadLogits> {
        self.inner.head_logits()
    }
}

/// Restricts a model to chains, like an engine with a contiguous KV cache and no tree mask:
/// it reports [`TreeSupport::ChainsOnly`], rejects branching trees and only commits prefixes.
#[derive(Clone, Debug)]
pub struct ChainsOnlyModel<M>(pub M);

impl<M: LogitsModel> LogitsModel for ChainsOnlyModel<M> {
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }

    fn committed_len(&self) -> usize {
        self.0.committed_len()
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        tree.check_chain()?;
        self.0.forward(tree, logits)
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        if path.iter().enumerate().any(|(i, &n)| i != n) {
            return Err(ModelError::msg(
                "a chains-only model commits a prefix of its chain",
            ));
        }
        self.0.commit(path)
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        self.0.truncate(len)
    }

    fn tree_support(&self) -> TreeSupport {
        TreeSupport::ChainsOnly
    }

    fn max_context(&self) -> Option<usize> {
        self.0.max_context()
    }

    fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
        self.0.hidden_states()
    }

    fn head_logits(&mut self) -> Option<&mut dyn HeadLogits> {
        self.0.head_logits()
    }
}
