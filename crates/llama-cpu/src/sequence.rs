//! One sequence's state (its caches, committed length, last tree and final hidden states),
//! and the forward pass over several sequences that both [`Llama`](crate::Llama) (one
//! sequence) and [`BatchLlama`](crate::BatchLlama) (many) run.

use decoding_core::{ModelError, NodeId, TokenTree};
use ndarray::{Array2, ArrayViewMut1, ArrayViewMut2, Axis};

use crate::cache::LayerCache;
use crate::net::{Net, Slot};

/// What forwards and commits change, for one sequence.
#[derive(Clone, Debug)]
pub(crate) struct Sequence {
    /// One cache per layer: `committed` rows, then the rows of the last forward's nodes.
    caches: Vec<LayerCache>,
    committed: usize,
    /// The tree of the last forward, until it is committed.
    uncommitted: Option<TokenTree>,
    /// Final hidden states of the last forward: one row per node that asked for logits.
    hidden: Array2<f32>,
    /// `hidden_row[node]`: the row of `hidden` holding `node`, for the last forward.
    hidden_row: Vec<Option<usize>>,
}

impl Sequence {
    /// An empty sequence of a model running the first `layers` blocks of `net`.
    pub(crate) fn new(net: &Net, layers: usize) -> Self {
        Self {
            caches: net.new_caches(layers),
            committed: 0,
            uncommitted: None,
            hidden: Array2::zeros((0, net.config.hidden_size)),
            hidden_row: Vec::new(),
        }
    }

    /// Tokens in the committed context.
    pub(crate) fn committed_len(&self) -> usize {
        self.committed
    }

    /// Keeps the uncommitted nodes of `path` and drops the others.
    pub(crate) fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        let tree = self
            .uncommitted
            .take()
            .ok_or_else(|| ModelError::msg("commit without a forward since the last commit"))?;
        tree.check_path(path)?;
        for cache in &mut self.caches {
            cache.compact(self.committed, path);
        }
        self.committed += path.len();
        Ok(())
    }

    /// Shortens the committed context to `len` tokens and drops the uncommitted nodes.
    pub(crate) fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        if len > self.committed {
            return Err(ModelError::msg(format!(
                "cannot truncate to {len} tokens: only {} are committed",
                self.committed
            )));
        }
        self.committed = len;
        self.uncommitted = None;
        for cache in &mut self.caches {
            cache.truncate(len);
        }
        Ok(())
    }

    /// Writes the final hidden state of `node` of the last forward into `out`.
    pub(crate) fn hidden_state(
        &self,
        node: NodeId,
        mut out: ArrayViewMut1<'_, f32>,
    ) -> Result<(), ModelError> {
        let row = self
            .hidden_row
            .get(node)
            .copied()
            .flatten()
            .ok_or_else(|| {
                ModelError::msg(format!(
                    "node {node} asked for no logits in the last forward, so it has no hidden state"
                ))
            })?;
        if out.len() != self.hidden.ncols() {
            return Err(ModelError::msg(format!(
                "hidden state buffer has {} entries, expected {}",
                out.len(),
                self.hidden.ncols()
            )));
        }
        out.assign(&self.hidden.row(row));
        Ok(())
    }

    /// Checks that `tree` can be evaluated on top of this sequence.
    fn check(&self, net: &Net, tree: &TokenTree) -> Result<(), ModelError> {
        let config = &net.config;
        tree.check_vocab(config.vocab_size)?;
        let needed = self.committed + tree.max_depth() + 1;
        if needed > config.max_position_embeddings {
            return Err(ModelError::msg(format!(
                "the tree needs {needed} positions, over the model's {}",
                config.max_position_embeddings
            )));
        }
        Ok(())
    }
}

/// Evaluates each sequence's tree on top of its committed context in one forward pass of
/// `net` through its first `layers` blocks ([`Net::forward`]; every sequence was made for
/// that many), the logits rows stacked in `items` order. Everything is checked first, so an
/// error leaves every sequence as it was.
pub(crate) fn forward(
    net: &Net,
    layers: usize,
    threads: usize,
    min_work: usize,
    mut items: Vec<(&mut Sequence, &TokenTree)>,
    logits: ArrayViewMut2<'_, f32>,
) -> Result<(), ModelError> {
    for (sequence, tree) in &items {
        sequence.check(net, tree)?;
    }
    let rows: usize = items.iter().map(|(_, tree)| tree.logits_rows()).sum();
    let expected = (rows, net.config.vocab_size);
    if logits.dim() != expected {
        return Err(ModelError::msg(format!(
            "logits buffer is {:?}, expected {expected:?}",
            logits.dim()
        )));
    }
    if items.is_empty() {
        return Ok(());
    }
    let slots = items
        .iter_mut()
        .map(|(sequence, tree)| {
            sequence.uncommitted = None;
            Slot {
                tree,
                committed: sequence.committed,
                caches: &mut sequence.caches,
            }
        })
        .collect();
    let hidden = net.forward(threads, min_work, layers, slots, logits);
    let mut first = 0;
    for (sequence, tree) in items {
        let rows = tree.logits_rows();
        sequence.hidden = hidden
            .slice_axis(Axis(0), (first..first + rows).into())
            .to_owned();
        sequence.hidden_row = (0..tree.len()).map(|n| tree.logits_row(n)).collect();
        sequence.uncommitted = Some(tree.clone());
        first += rows;
    }
    Ok(())
}
