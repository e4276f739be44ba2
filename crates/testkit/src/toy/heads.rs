//! A toy model with engine-computed decoding heads of a chosen accuracy.

use ndarray::{ArrayViewMut2, aview1};

use super::recompute::{ContextLogits, RecomputeModel};
use super::{mix, unit};
use decoding_core::{
    HeadLogits, LogitsModel, ModelError, NodeId, Token, TokenTree, TreeSupport, argmax,
};

/// A context-function model whose extra decoding heads (Medusa-style, computed by the
/// "engine": see [`HeadLogits`]) predict the greedy continuation with a chosen accuracy.
///
/// Head `k` at a node is right, with probability `accuracy[k]`, about the token that greedy
/// decoding would produce `k + 2` positions later (it rolls the model out to find it);
/// otherwise its top token is a pseudo-random one. Its other logits are low pseudo-random
/// noise, so its top-k candidates beyond the first are mostly wrong, as with real heads.
/// Everything is a deterministic function of the context and the seed.
pub struct WithRolloutHeads<F> {
    model: RecomputeModel<F>,
    accuracy: Vec<f32>,
    seed: u64,
    contexts: Vec<Option<Vec<Token>>>,
}

impl<F: ContextLogits> WithRolloutHeads<F> {
    /// Adds `accuracy.len()` heads to `model`; accuracies must be in [0, 1].
    pub fn new(
        model: RecomputeModel<F>,
        accuracy: Vec<f32>,
        seed: u64,
    ) -> Result<Self, ModelError> {
        if accuracy.iter().any(|a| !(0.0..=1.0).contains(a)) {
            return Err(ModelError::msg("head accuracies must be in [0, 1]"));
        }
        Ok(Self {
            model,
            accuracy,
            seed,
            contexts: Vec::new(),
        })
    }

    /// The wrapped model.
    pub fn model(&self) -> &RecomputeModel<F> {
        &self.model
    }
}

impl<F: ContextLogits> LogitsModel for WithRolloutHeads<F> {
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn committed_len(&self) -> usize {
        self.model.committed_len()
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        self.model.forward(tree, logits)?;
        self.contexts.clear();
        for node in 0..tree.len() {
            self.contexts.push(tree.needs_logits(node).then(|| {
                let mut context = self.model.committed().to_vec();
                context.extend(tree.path_tokens(node));
                context
            }));
        }
        Ok(())
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        self.model.commit(path)
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        self.model.truncate(len)
    }

    fn tree_support(&self) -> TreeSupport {
        self.model.tree_support()
    }

    fn head_logits(&mut self) -> Option<&mut dyn HeadLogits> {
        Some(self)
    }
}

impl<F: ContextLogits> HeadLogits for WithRolloutHeads<F> {
    fn num_heads(&self) -> usize {
        self.accuracy.len()
    }

    fn head_logits(
        &mut self,
        node: NodeId,
        mut out: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let vocab = self.model.vocab_size();
        if out.dim() != (self.accuracy.len(), vocab) {
            return Err(ModelError::msg("head logits buffer has the wrong shape"));
        }
        let mut context = self
            .contexts
            .get(node)
            .cloned()
            .flatten()
            .ok_or_else(|| ModelError::msg(format!("node {node} has no head logits")))?;
        let h = context
            .iter()
            .fold(mix(self.seed), |h, &t| mix(h ^ u64::from(t)));
        let mut row = vec![0.0; vocab];
        // Greedy rollout: the token after the node, then the ones the heads predict.
        for k in 0..=self.accuracy.len() {
            self.model.function_mut().logits(&context, &mut row);
            let next = argmax(&row).ok_or_else(|| ModelError::msg("NaN logits in rollout"))?;
            context.push(next);
            if k == 0 {
                continue;
            }
            let head = k - 1;
            let salt = mix(h ^ (head as u64 + 1));
            for (v, x) in row.iter_mut().enumerate() {
                *x = unit(mix(salt ^ (v as u64) << 16));
            }
            let right = unit(mix(salt ^ 0xACC)) < self.accuracy[head];
            let top = if right {
                next as usize
            } else {
                (mix(salt ^ 0x70B) % vocab as u64) as usize
            };
            row[top] += 5.0;
            out.row_mut(head).assign(&aview1(&row));
        }
        Ok(())
    }
}
