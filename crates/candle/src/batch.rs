//! The batched model: many sequences, one forward pass over all their trees.

use std::sync::Arc;

use candle_core::Device;
use decoding_core::{BatchLogitsModel, DecodeError, ModelError, NodeId, SeqId, TokenTree};
use llama_cpu::LlamaConfig;
use ndarray::{Array1, ArrayViewMut2};

use crate::net::Net;
use crate::sequences::Sequences;

/// A LLaMA model on candle serving many sequences at once: [`BatchLogitsModel`] with the
/// weights of a [`CandleLlama`](crate::CandleLlama) (made by
/// [`CandleLlama::batch`](crate::CandleLlama::batch)) and one cache slot per sequence.
///
/// [`forward_batch`](BatchLogitsModel::forward_batch) stacks the nodes of every sequence's
/// tree into one set of rows: the projections and the MLP run once over all of them (each
/// weight is read once per step for the whole batch). Attention runs as one padded batch,
/// `[sequences, heads, largest tree, longest context]`, with a mask per sequence that also
/// hides the padding; when the batch holds the sequences of slots `0 .. b` (the usual case
/// in [`decode_batch`](decoding_core::decode_batch)), it reads the cache in place.
///
/// ```
/// use decoding_core::{BatchLogitsModel, TokenTree};
/// use ndarray::Array2;
/// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/pycoder-16m");
/// # if !std::path::Path::new(dir).exists() { return Ok(()); }
/// let mut model = decoding_candle::CandleLlama::load(dir)?.batch();
/// let (a, b) = (model.add_sequence()?, model.add_sequence()?);
/// let (prompt_a, prompt_b) = (TokenTree::from_chain(&[1394, 2002])?, TokenTree::new(12));
/// // Rows: prompt_a's logits rows, then prompt_b's.
/// let mut logits = Array2::zeros((prompt_a.logits_rows() + 1, model.vocab_size()));
/// model.forward_batch(&[(a, &prompt_a), (b, &prompt_b)], logits.view_mut())?;
/// model.commit(a, &[0, 1])?;
/// model.commit(b, &[0])?;
/// assert_eq!(model.committed_len(a)?, 2);
/// model.remove_sequence(a)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BatchCandleLlama {
    pub(crate) net: Arc<Net>,
    pub(crate) pool: Option<Arc<rayon::ThreadPool>>,
    pub(crate) sequences: Sequences,
}

impl BatchCandleLlama {
    pub(crate) fn new(net: Arc<Net>, pool: Option<Arc<rayon::ThreadPool>>) -> Self {
        Self {
            sequences: Sequences::new(&net),
            net,
            pool,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.net.config
    }

    /// The device the weights and the cache live on.
    pub fn device(&self) -> &Device {
        &self.net.device
    }

    /// Width of a final hidden state.
    pub fn hidden_size(&self) -> usize {
        self.net.config.hidden_size
    }

    /// Sequences currently held.
    pub fn sequences(&self) -> usize {
        self.sequences.len()
    }

    /// Tokens in `seq`'s committed context.
    pub fn committed_len(&self, seq: SeqId) -> Result<usize, ModelError> {
        self.sequences.committed_len(seq)
    }

    /// Shortens `seq`'s committed context to `len` tokens and drops its uncommitted nodes.
    pub fn truncate(&mut self, seq: SeqId, len: usize) -> Result<(), ModelError> {
        self.sequences.truncate(seq, len)
    }
}

impl BatchLogitsModel for BatchCandleLlama {
    fn vocab_size(&self) -> usize {
        self.net.config.vocab_size
    }

    fn add_sequence(&mut self) -> Result<SeqId, ModelError> {
        Ok(self.sequences.add())
    }

    fn remove_sequence(&mut self, seq: SeqId) -> Result<(), ModelError> {
        self.sequences.remove(seq)
    }

    fn forward_batch(
        &mut self,
        items: &[(SeqId, &TokenTree)],
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        self.sequences
            .forward(&self.net, self.pool.as_ref(), items, logits)
    }

    fn commit(&mut self, seq: SeqId, path: &[NodeId]) -> Result<(), ModelError> {
        self.sequences.commit(seq, path)
    }

    fn max_context(&self) -> Option<usize> {
        Some(self.net.config.max_position_embeddings)
    }

    fn hidden_state(
        &mut self,
        seq: SeqId,
        node: NodeId,
        out: &mut Array1<f32>,
    ) -> Result<(), DecodeError> {
        if out.len() != self.hidden_size() {
            *out = Array1::zeros(self.hidden_size());
        }
        Ok(self.sequences.hidden_state(seq, node, out.view_mut())?)
    }
}
