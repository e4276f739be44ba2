//! The sequences a model holds (slot, committed length, last tree, final hidden states) and
//! the forward pass over several of them that both [`CandleLlama`](crate::CandleLlama) (one
//! sequence) and [`BatchCandleLlama`](crate::BatchCandleLlama) (many) run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use decoding_core::{ModelError, NodeId, SeqId, TokenTree};
use ndarray::{ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};

use crate::cache::KvCache;
use crate::net::{Net, Outputs};
use crate::plan::Plan;

/// What forwards and commits change, for one sequence.
#[derive(Debug)]
struct Sequence {
    /// Its slot in the cache.
    slot: usize,
    committed: usize,
    /// The tree of the last forward, until it is committed.
    uncommitted: Option<TokenTree>,
    /// Final hidden states of the last forward, one row per node that asked for logits.
    hidden: Vec<f32>,
    /// `hidden_row[node]`: the row of `hidden` holding `node`.
    hidden_row: Vec<Option<usize>>,
}

/// Every sequence of a model, and their cache.
#[derive(Debug)]
pub(crate) struct Sequences {
    cache: KvCache,
    sequences: BTreeMap<SeqId, Sequence>,
    free_slots: BTreeSet<usize>,
    slots: usize,
    next: u64,
    /// Width of a final hidden state.
    width: usize,
}

fn unknown(seq: SeqId) -> ModelError {
    ModelError::msg(format!("sequence {} is unknown", seq.0))
}

fn candle(error: candle_core::Error) -> ModelError {
    ModelError::new(error)
}

impl Sequences {
    pub(crate) fn new(net: &Net) -> Self {
        Self {
            cache: net.new_cache(),
            sequences: BTreeMap::new(),
            free_slots: BTreeSet::new(),
            slots: 0,
            next: 0,
            width: net.config.hidden_size,
        }
    }

    /// Number of sequences.
    pub(crate) fn len(&self) -> usize {
        self.sequences.len()
    }

    /// A new empty sequence, in the lowest free slot (so that a full batch is slots
    /// `0 .. b` and attention reads the cache without copying it).
    pub(crate) fn add(&mut self) -> SeqId {
        let slot = self.free_slots.pop_first().unwrap_or_else(|| {
            self.slots += 1;
            self.slots - 1
        });
        let seq = SeqId(self.next);
        self.next += 1;
        self.sequences.insert(
            seq,
            Sequence {
                slot,
                committed: 0,
                uncommitted: None,
                hidden: Vec::new(),
                hidden_row: Vec::new(),
            },
        );
        seq
    }

    pub(crate) fn remove(&mut self, seq: SeqId) -> Result<(), ModelError> {
        let sequence = self.sequences.remove(&seq).ok_or_else(|| unknown(seq))?;
        self.free_slots.insert(sequence.slot);
        Ok(())
    }

    fn get(&self, seq: SeqId) -> Result<&Sequence, ModelError> {
        self.sequences.get(&seq).ok_or_else(|| unknown(seq))
    }

    pub(crate) fn committed_len(&self, seq: SeqId) -> Result<usize, ModelError> {
        Ok(self.get(seq)?.committed)
    }

    /// Keeps the uncommitted nodes of `path` and drops the others.
    pub(crate) fn commit(&mut self, seq: SeqId, path: &[NodeId]) -> Result<(), ModelError> {
        let sequence = self.sequences.get_mut(&seq).ok_or_else(|| unknown(seq))?;
        let tree = sequence
            .uncommitted
            .as_ref()
            .ok_or_else(|| ModelError::msg("commit without a forward since the last commit"))?;
        tree.check_path(path)?;
        self.cache
            .commit(sequence.slot, sequence.committed, path)
            .map_err(candle)?;
        sequence.uncommitted = None;
        sequence.committed += path.len();
        Ok(())
    }

    /// Shortens the committed context to `len` tokens and drops the uncommitted nodes.
    pub(crate) fn truncate(&mut self, seq: SeqId, len: usize) -> Result<(), ModelError> {
        let sequence = self.sequences.get_mut(&seq).ok_or_else(|| unknown(seq))?;
        if len > sequence.committed {
            return Err(ModelError::msg(format!(
                "cannot truncate to {len} tokens: only {} are committed",
                sequence.committed
            )));
        }
        sequence.committed = len;
        sequence.uncommitted = None;
        Ok(())
    }

    /// Writes the final hidden state of `node` of `seq`'s last forward into `out`.
    pub(crate) fn hidden_state(
        &self,
        seq: SeqId,
        node: NodeId,
        mut out: ArrayViewMut1<'_, f32>,
    ) -> Result<(), ModelError> {
        let sequence = self.get(seq)?;
        let row = sequence
            .hidden_row
            .get(node)
            .copied()
            .flatten()
            .ok_or_else(|| {
                ModelError::msg(format!(
                    "node {node} asked for no logits in the last forward, so it has no hidden state"
                ))
            })?;
        let width = self.width;
        if out.len() != width {
            return Err(ModelError::msg(format!(
                "hidden state buffer has {} entries, expected {width}",
                out.len()
            )));
        }
        for (o, &h) in out
            .iter_mut()
            .zip(&sequence.hidden[row * width..(row + 1) * width])
        {
            *o = h;
        }
        Ok(())
    }

    /// Evaluates each sequence's tree on top of its committed context in one forward pass,
    /// the logits rows stacked in `items` order. Everything is checked first, so an error
    /// leaves every committed context as it was.
    pub(crate) fn forward(
        &mut self,
        net: &Net,
        pool: Option<&Arc<rayon::ThreadPool>>,
        items: &[(SeqId, &TokenTree)],
        mut logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let config = &net.config;
        let mut seen = BTreeSet::new();
        for &(seq, tree) in items {
            if !seen.insert(seq) {
                return Err(ModelError::msg(format!(
                    "sequence {} appears twice in the batch",
                    seq.0
                )));
            }
            let committed = self.get(seq)?.committed;
            tree.check_vocab(config.vocab_size)?;
            let needed = committed + tree.max_depth() + 1;
            if needed > config.max_position_embeddings {
                return Err(ModelError::msg(format!(
                    "the tree needs {needed} positions, over the model's {}",
                    config.max_position_embeddings
                )));
            }
        }
        let rows: usize = items.iter().map(|(_, tree)| tree.logits_rows()).sum();
        let expected = (rows, config.vocab_size);
        if logits.dim() != expected {
            return Err(ModelError::msg(format!(
                "logits buffer is {:?}, expected {expected:?}",
                logits.dim()
            )));
        }
        if items.is_empty() {
            return Ok(());
        }
        // The padded batch runs in slot order; `order[k]` is the item in place `k`.
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| self.sequences[&items[i].0].slot);
        let laid_out: Vec<(usize, usize, &TokenTree)> = order
            .iter()
            .map(|&i| {
                let sequence = &self.sequences[&items[i].0];
                (sequence.slot, sequence.committed, items[i].1)
            })
            .collect();
        let slots = laid_out
            .iter()
            .map(|&(slot, _, _)| slot + 1)
            .max()
            .unwrap_or(0);
        let keys = laid_out
            .iter()
            .map(|&(_, committed, tree)| committed + tree.len())
            .max()
            .unwrap_or(0);
        // From here on the uncommitted rows of these sequences get overwritten.
        for &(seq, _) in items {
            self.sequences.get_mut(&seq).expect("checked").uncommitted = None;
        }
        self.cache.reserve(slots, keys).map_err(candle)?;
        let plan = Plan::new(&laid_out, &net.device).map_err(candle)?;
        let cache = &self.cache;
        let outputs: Outputs = match pool {
            Some(pool) => pool.install(|| net.forward(cache, &plan)),
            None => net.forward(cache, &plan),
        }
        .map_err(candle)?;
        let (hidden, values) = match outputs {
            Some((hidden, logits)) => (
                hidden.flatten_all().and_then(|t| t.to_vec1::<f32>()),
                logits.flatten_all().and_then(|t| t.to_vec1::<f32>()),
            ),
            None => (Ok(Vec::new()), Ok(Vec::new())),
        };
        let (hidden, values) = (hidden.map_err(candle)?, values.map_err(candle)?);
        let values = ArrayView2::from_shape((rows, config.vocab_size), &values)
            .map_err(|e| ModelError::msg(format!("logits of the wrong size: {e}")))?;
        // Rows of the item in place `k` start at `first[k]` of the outputs; they go to the
        // item's own place in `logits`.
        let mut out_start = vec![0; items.len()];
        let mut start = 0;
        for (i, (_, tree)) in items.iter().enumerate() {
            out_start[i] = start;
            start += tree.logits_rows();
        }
        let width = self.width;
        let mut first = 0;
        for &i in &order {
            let (seq, tree) = items[i];
            let count = tree.logits_rows();
            logits
                .slice_axis_mut(Axis(0), (out_start[i]..out_start[i] + count).into())
                .assign(&values.slice_axis(Axis(0), (first..first + count).into()));
            let sequence = self.sequences.get_mut(&seq).expect("checked");
            sequence.hidden = hidden[first * width..(first + count) * width].to_vec();
            sequence.hidden_row = (0..tree.len()).map(|n| tree.logits_row(n)).collect();
            sequence.uncommitted = Some(tree.clone());
            first += count;
        }
        Ok(())
    }
}
