//! One sequence over a llama.cpp context: [`LogitsModel`].

use decoding_core::{HiddenStates, LogitsModel, ModelError, NodeId, TokenTree, TreeSupport};
use ndarray::{ArrayViewMut1, ArrayViewMut2};

use crate::engine::{Engine, Sequence};
use crate::error::LlamaCppError;
use crate::model::LlamaCppModel;
use crate::options::LlamaCppOptions;

/// A llama.cpp context holding one sequence, implementing [`LogitsModel`] with tree
/// attention (or chains only, as the options say) and, when asked for,
/// [`HiddenStates`]. Made by [`LlamaCppModel::context`]; it borrows the model.
///
/// How trees map onto llama.cpp's batch and KV cache is described in the crate docs.
#[derive(Debug)]
pub struct LlamaCpp<'m> {
    engine: Engine<'m>,
    sequence: Sequence,
}

impl<'m> LlamaCpp<'m> {
    pub(crate) fn new(
        model: &'m LlamaCppModel,
        options: &LlamaCppOptions,
    ) -> Result<Self, LlamaCppError> {
        let engine = Engine::new(model, options, 1)?;
        let sequence = engine.sequence(0);
        Ok(Self { engine, sequence })
    }

    /// Threads per forward pass.
    pub fn threads(&self) -> usize {
        self.engine.threads()
    }

    /// The llama-cpp-2 context, for what this adapter does not cover (reading it only: the
    /// adapter keeps track of the KV cache itself).
    pub fn inner(&self) -> &llama_cpp_2::context::LlamaContext<'m> {
        self.engine.inner()
    }
}

impl LogitsModel for LlamaCpp<'_> {
    fn vocab_size(&self) -> usize {
        self.engine.vocab_size()
    }

    fn committed_len(&self) -> usize {
        self.sequence.committed()
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let mut items = [(&mut self.sequence, tree)];
        Ok(self.engine.forward(&mut items, logits)?)
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        Ok(self.engine.commit(&mut self.sequence, path)?)
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        Ok(self.engine.truncate(&mut self.sequence, len)?)
    }

    fn tree_support(&self) -> TreeSupport {
        self.engine.tree_support()
    }

    fn max_context(&self) -> Option<usize> {
        Some(self.engine.context())
    }

    fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
        if self.engine.hidden_size().is_some() {
            Some(self)
        } else {
            None
        }
    }
}

impl HiddenStates for LlamaCpp<'_> {
    fn hidden_size(&self) -> usize {
        self.engine.hidden_size().unwrap_or(0)
    }

    fn hidden_state(&self, node: NodeId, out: ArrayViewMut1<'_, f32>) -> Result<(), ModelError> {
        Ok(self.engine.hidden_state(&self.sequence, node, out)?)
    }
}
