//! The batched model: many sequences, one forward pass over all their trees.

use std::collections::BTreeMap;
use std::sync::Arc;

use decoding_core::{BatchLogitsModel, DecodeError, ModelError, NodeId, SeqId, TokenTree};
use ndarray::{Array1, ArrayViewMut2};

use crate::config::LlamaConfig;
use crate::net::Net;
use crate::sequence::{self, Sequence};

/// A LLaMA model serving many sequences at once: [`BatchLogitsModel`] with the weights of a
/// [`Llama`](crate::Llama) (made by [`Llama::batch`](crate::Llama::batch)) and one KV cache
/// per sequence.
///
/// [`forward_batch`](BatchLogitsModel::forward_batch) stacks the nodes of every sequence's
/// tree into one set of rows: the projections (QKV, O, MLP, output) run once over all of
/// them, so each weight is read once per step however many sequences share it, and each
/// sequence attends only to its own cache and the node's ancestors. A node's logits and
/// final hidden state are the same bits as when its sequence is decoded alone by
/// [`Llama`](crate::Llama) (which runs the same code with one sequence): greedy decoding
/// of a batch reproduces decoding each sequence alone exactly.
///
/// ```
/// use decoding_core::{BatchLogitsModel, TokenTree};
/// use ndarray::Array2;
/// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/pycoder-16m");
/// # if !std::path::Path::new(dir).exists() { return Ok(()); }
/// let mut model = llama_cpu::Llama::load(dir)?.batch();
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
#[derive(Clone, Debug)]
pub struct BatchLlama {
    net: Arc<Net>,
    /// The blocks run: all of them, or the first few of an early-exit view.
    layers: usize,
    threads: usize,
    min_work: usize,
    sequences: BTreeMap<SeqId, Sequence>,
    next: u64,
}

impl BatchLlama {
    pub(crate) fn new(net: Arc<Net>, layers: usize, threads: usize, min_work: usize) -> Self {
        Self {
            net,
            layers,
            threads,
            min_work,
            sequences: BTreeMap::new(),
            next: 0,
        }
    }

    /// Uses `threads` threads (at least 1) per forward pass, as
    /// [`Llama::with_threads`](crate::Llama::with_threads).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// As [`Llama::with_min_work_per_thread`](crate::Llama::with_min_work_per_thread).
    pub fn with_min_work_per_thread(mut self, multiply_adds: usize) -> Self {
        self.min_work = multiply_adds;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.net.config
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
        self.sequences
            .get(&seq)
            .map(Sequence::committed_len)
            .ok_or_else(|| unknown(seq))
    }

    fn sequence(&mut self, seq: SeqId) -> Result<&mut Sequence, ModelError> {
        self.sequences.get_mut(&seq).ok_or_else(|| unknown(seq))
    }
}

fn unknown(seq: SeqId) -> ModelError {
    ModelError::msg(format!("sequence {} is unknown", seq.0))
}

impl BatchLogitsModel for BatchLlama {
    fn vocab_size(&self) -> usize {
        self.net.config.vocab_size
    }

    fn add_sequence(&mut self) -> Result<SeqId, ModelError> {
        let seq = SeqId(self.next);
        self.next += 1;
        self.sequences
            .insert(seq, Sequence::new(&self.net, self.layers));
        Ok(seq)
    }

    fn remove_sequence(&mut self, seq: SeqId) -> Result<(), ModelError> {
        self.sequences
            .remove(&seq)
            .map(drop)
            .ok_or_else(|| unknown(seq))
    }

    fn forward_batch(
        &mut self,
        items: &[(SeqId, &TokenTree)],
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let mut by_id: BTreeMap<SeqId, &mut Sequence> =
            self.sequences.iter_mut().map(|(&id, s)| (id, s)).collect();
        let mut batch = Vec::with_capacity(items.len());
        for (i, &(seq, tree)) in items.iter().enumerate() {
            let Some(sequence) = by_id.remove(&seq) else {
                if items[..i].iter().any(|&(other, _)| other == seq) {
                    return Err(ModelError::msg(format!(
                        "sequence {} appears twice in the batch",
                        seq.0
                    )));
                }
                return Err(unknown(seq));
            };
            batch.push((sequence, tree));
        }
        sequence::forward(
            &self.net,
            self.layers,
            self.threads,
            self.min_work,
            batch,
            logits,
        )
    }

    fn commit(&mut self, seq: SeqId, path: &[NodeId]) -> Result<(), ModelError> {
        self.sequence(seq)?.commit(path)
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
        Ok(self.sequence(seq)?.hidden_state(node, out.view_mut())?)
    }
}
