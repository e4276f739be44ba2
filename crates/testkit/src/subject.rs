//! The model under test, seen through the calls the check makes: a [`LogitsModel`], or one
//! sequence of a [`BatchLogitsModel`].

use std::panic::{AssertUnwindSafe, catch_unwind};

use decoding_core::{
    BatchLogitsModel, DecodeError, LogitsModel, ModelError, NodeId, SeqId, TokenTree, TreeSupport,
};
use ndarray::{Array1, Array2, ArrayViewMut2};

use crate::violation::{Violation, ViolationKind};

/// One sequence's worth of model calls.
pub(crate) trait Subject {
    fn vocab_size(&self) -> usize;
    /// `None` when the interface has no such query (a batched model).
    fn committed_len(&self) -> Option<usize>;
    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError>;
    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError>;
    /// Whether [`truncate`](Self::truncate) exists.
    fn can_truncate(&self) -> bool;
    fn truncate(&mut self, len: usize) -> Result<(), ModelError>;
    /// Empties the context (for a batched model: a fresh sequence).
    fn reset(&mut self) -> Result<(), ModelError>;
    fn tree_support(&self) -> TreeSupport;
    fn max_context(&self) -> Option<usize>;
    /// The final hidden state of `node` of the last forward; `None` if not exposed.
    fn hidden_state(&mut self, node: NodeId) -> Option<Result<Vec<f32>, String>>;
    /// The head logits of `node` of the last forward, heads by vocabulary, row-major;
    /// `None` if the model has no heads.
    fn head_logits(&mut self, node: NodeId) -> Option<Result<Vec<f32>, String>>;
}

/// A [`LogitsModel`] as a subject.
pub(crate) struct Single<'a, M: ?Sized>(pub(crate) &'a mut M);

impl<M: LogitsModel + ?Sized> Subject for Single<'_, M> {
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }

    fn committed_len(&self) -> Option<usize> {
        Some(self.0.committed_len())
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        self.0.forward(tree, logits)
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        self.0.commit(path)
    }

    fn can_truncate(&self) -> bool {
        true
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        self.0.truncate(len)
    }

    fn reset(&mut self) -> Result<(), ModelError> {
        self.0.reset()
    }

    fn tree_support(&self) -> TreeSupport {
        self.0.tree_support()
    }

    fn max_context(&self) -> Option<usize> {
        self.0.max_context()
    }

    fn hidden_state(&mut self, node: NodeId) -> Option<Result<Vec<f32>, String>> {
        let states = self.0.hidden_states()?;
        let mut out = Array1::zeros(states.hidden_size());
        Some(
            states
                .hidden_state(node, out.view_mut())
                .map(|()| out.to_vec())
                .map_err(|e| e.to_string()),
        )
    }

    fn head_logits(&mut self, node: NodeId) -> Option<Result<Vec<f32>, String>> {
        let vocab = self.0.vocab_size();
        let heads = self.0.head_logits()?;
        let mut out = Array2::zeros((heads.num_heads(), vocab));
        Some(
            heads
                .head_logits(node, out.view_mut())
                .map(|()| out.iter().copied().collect())
                .map_err(|e| e.to_string()),
        )
    }
}

/// One sequence of a [`BatchLogitsModel`], evaluated alone in each batch; `reset` replaces
/// it with a fresh sequence. The batch interface has neither `committed_len` nor
/// `truncate`.
pub(crate) struct OneSequence<'a, B: ?Sized> {
    model: &'a mut B,
    seq: Option<SeqId>,
}

impl<'a, B: BatchLogitsModel + ?Sized> OneSequence<'a, B> {
    pub(crate) fn new(model: &'a mut B) -> Self {
        Self { model, seq: None }
    }

    fn seq(&mut self) -> Result<SeqId, ModelError> {
        match self.seq {
            Some(seq) => Ok(seq),
            None => {
                let seq = self.model.add_sequence()?;
                self.seq = Some(seq);
                Ok(seq)
            }
        }
    }

    /// Removes the sequence.
    pub(crate) fn finish(&mut self) -> Result<(), ModelError> {
        match self.seq.take() {
            Some(seq) => self.model.remove_sequence(seq),
            None => Ok(()),
        }
    }
}

/// Turns a batched extra into a subject's: a missing capability is `None`.
fn extra<T>(result: Result<T, DecodeError>) -> Option<Result<T, String>> {
    match result {
        Err(DecodeError::MissingCapability(_)) => None,
        other => Some(other.map_err(|e| e.to_string())),
    }
}

impl<B: BatchLogitsModel + ?Sized> Subject for OneSequence<'_, B> {
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn committed_len(&self) -> Option<usize> {
        None
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let seq = self.seq()?;
        self.model.forward_batch(&[(seq, tree)], logits)
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        let seq = self.seq()?;
        self.model.commit(seq, path)
    }

    fn can_truncate(&self) -> bool {
        false
    }

    fn truncate(&mut self, _len: usize) -> Result<(), ModelError> {
        Err(ModelError::msg("a batched model has no truncate"))
    }

    fn reset(&mut self) -> Result<(), ModelError> {
        self.finish()?;
        self.seq().map(drop)
    }

    fn tree_support(&self) -> TreeSupport {
        self.model.tree_support()
    }

    fn max_context(&self) -> Option<usize> {
        self.model.max_context()
    }

    fn hidden_state(&mut self, node: NodeId) -> Option<Result<Vec<f32>, String>> {
        let seq = self.seq.ok_or(()).ok()?;
        let mut out = Array1::zeros(0);
        extra(self.model.hidden_state(seq, node, &mut out)).map(|r| r.map(|()| out.to_vec()))
    }

    fn head_logits(&mut self, node: NodeId) -> Option<Result<Vec<f32>, String>> {
        let seq = self.seq.ok_or(()).ok()?;
        let mut out = Array2::zeros((0, 0));
        extra(self.model.head_logits(seq, node, &mut out))
            .map(|r| r.map(|()| out.iter().copied().collect()))
    }
}

/// The value of a guarded call that must succeed, or the violation it is: a panic, or an
/// error for a valid call.
pub(crate) fn succeeded<T>(
    what: &str,
    result: Result<Result<T, ModelError>, String>,
) -> Result<T, Violation> {
    match result {
        Err(panic) => Err(Violation::new(
            ViolationKind::Panicked,
            format!("{what} panicked: {panic}"),
        )),
        Ok(Err(e)) => Err(Violation::new(
            ViolationKind::UnexpectedError,
            format!("{what} failed: {e}"),
        )),
        Ok(Ok(value)) => Ok(value),
    }
}

/// Runs a model call, turning a panic into its message.
pub(crate) fn guarded<T>(call: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(call)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}
