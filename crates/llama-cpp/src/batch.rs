//! Many sequences sharing one llama.cpp context: [`BatchLogitsModel`].

use std::collections::BTreeMap;

use decoding_core::{
    BatchLogitsModel, DecodeError, ModelError, NodeId, SeqId, TokenTree, TreeSupport,
};
use ndarray::{Array1, ArrayViewMut2};

use crate::engine::{Engine, Sequence};
use crate::error::LlamaCppError;
use crate::model::LlamaCppModel;
use crate::options::LlamaCppOptions;

/// Up to `max_sequences` sequences in one llama.cpp context, implementing
/// [`BatchLogitsModel`]: every forward is one `llama_decode` over the nodes of all the
/// sequences' trees. Sequence slot `s` owns llama.cpp sequence ids
/// `s * branches .. (s + 1) * branches`, so sequences never see each other; they share one
/// unified KV cache (tree nodes carry several ids, which llama.cpp allows only there). Made
/// by [`LlamaCppModel::batch`].
///
/// In a unified cache every entry's attention spans the cells of all sequences (masked),
/// so attention cost grows with the total context in flight, as in llama.cpp's own batched
/// examples.
#[derive(Debug)]
pub struct LlamaCppBatch<'m> {
    engine: Engine<'m>,
    slots: Vec<Option<Sequence>>,
    by_id: BTreeMap<SeqId, usize>,
    next: u64,
}

impl<'m> LlamaCppBatch<'m> {
    pub(crate) fn new(
        model: &'m LlamaCppModel,
        options: &LlamaCppOptions,
        max_sequences: usize,
    ) -> Result<Self, LlamaCppError> {
        let engine = Engine::new(model, options, max_sequences)?;
        Ok(Self {
            engine,
            slots: (0..max_sequences).map(|_| None).collect(),
            by_id: BTreeMap::new(),
            next: 0,
        })
    }

    /// Threads per forward pass.
    pub fn threads(&self) -> usize {
        self.engine.threads()
    }

    /// Sequences currently held.
    pub fn sequences(&self) -> usize {
        self.by_id.len()
    }

    /// Tokens in `seq`'s committed context.
    pub fn committed_len(&self, seq: SeqId) -> Result<usize, LlamaCppError> {
        Ok(self.get(seq)?.committed())
    }

    fn slot(&self, seq: SeqId) -> Result<usize, LlamaCppError> {
        self.by_id
            .get(&seq)
            .copied()
            .ok_or(LlamaCppError::UnknownSequence(seq.0))
    }

    fn get(&self, seq: SeqId) -> Result<&Sequence, LlamaCppError> {
        let slot = self.slot(seq)?;
        self.slots[slot]
            .as_ref()
            .ok_or(LlamaCppError::UnknownSequence(seq.0))
    }
}

impl BatchLogitsModel for LlamaCppBatch<'_> {
    fn vocab_size(&self) -> usize {
        self.engine.vocab_size()
    }

    fn add_sequence(&mut self) -> Result<SeqId, ModelError> {
        let slot = self.slots.iter().position(Option::is_none).ok_or_else(|| {
            LlamaCppError::Capacity(format!(
                "all {} sequences of the context are in use",
                self.slots.len()
            ))
        })?;
        let seq = SeqId(self.next);
        self.next += 1;
        self.slots[slot] = Some(self.engine.sequence(slot));
        self.by_id.insert(seq, slot);
        Ok(seq)
    }

    fn remove_sequence(&mut self, seq: SeqId) -> Result<(), ModelError> {
        let slot = self.slot(seq)?;
        self.by_id.remove(&seq);
        if let Some(mut sequence) = self.slots[slot].take() {
            self.engine.release(&mut sequence)?;
        }
        Ok(())
    }

    fn forward_batch(
        &mut self,
        items: &[(SeqId, &TokenTree)],
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let by_id = &self.by_id;
        let mut slots: Vec<Option<&mut Sequence>> =
            self.slots.iter_mut().map(Option::as_mut).collect();
        let mut batch = Vec::with_capacity(items.len());
        for &(seq, tree) in items {
            let slot = *by_id
                .get(&seq)
                .ok_or(LlamaCppError::UnknownSequence(seq.0))?;
            let sequence = slots[slot].take().ok_or_else(|| {
                LlamaCppError::Usage(format!("sequence {} appears twice in the batch", seq.0))
            })?;
            batch.push((sequence, tree));
        }
        Ok(self.engine.forward(&mut batch, logits)?)
    }

    fn commit(&mut self, seq: SeqId, path: &[NodeId]) -> Result<(), ModelError> {
        let slot = self.slot(seq)?;
        let sequence = self.slots[slot]
            .as_mut()
            .ok_or(LlamaCppError::UnknownSequence(seq.0))?;
        Ok(self.engine.commit(sequence, path)?)
    }

    fn tree_support(&self) -> TreeSupport {
        self.engine.tree_support()
    }

    fn max_context(&self) -> Option<usize> {
        Some(self.engine.context())
    }

    fn hidden_state(
        &mut self,
        seq: SeqId,
        node: NodeId,
        out: &mut Array1<f32>,
    ) -> Result<(), DecodeError> {
        let Some(width) = self.engine.hidden_size() else {
            return Err(DecodeError::MissingCapability("final hidden states"));
        };
        if out.len() != width {
            *out = Array1::zeros(width);
        }
        let sequence = self.get(seq).map_err(ModelError::from)?;
        Ok(self
            .engine
            .hidden_state(sequence, node, out.view_mut())
            .map_err(ModelError::from)?)
    }
}
