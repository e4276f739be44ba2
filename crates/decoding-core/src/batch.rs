//! Batched decoding: many sequences, each with its own strategy, advanced together with one
//! forward pass per step over all their trees.
//!
//! [`BatchLogitsModel`] is the batched form of [`LogitsModel`]: the model keeps one committed
//! context per sequence and evaluates several sequences' trees in one call. [`PerSequence`]
//! turns any single-sequence model into one (a loop; the semantic reference), and
//! [`decode_batch`] is the serving loop: sequences join as slots free up and leave when they
//! finish, and each produces exactly what [`generate`](crate::generate) produces alone.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use ndarray::{Array1, Array2, ArrayViewMut2, Axis};

use crate::decoder::{DecodeConfig, Decoder, StepExtras};
use crate::error::{DecodeError, ModelError};
use crate::generate::Generation;
use crate::model::{LogitsModel, TreeSupport};
use crate::sampling::Draw;
use crate::strategy::Strategy;
use crate::tree::{NodeId, Token, TokenTree};

/// Identifies one sequence inside a [`BatchLogitsModel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

/// A model that keeps one committed context per sequence and evaluates the trees of several
/// sequences in one forward pass.
///
/// # Contract
///
/// Per sequence, exactly the contract of [`LogitsModel`]: positions, attention to the
/// sequence's own committed context and the node's ancestors, commit of one path of the last
/// forward. Sequences never see each other. [`forward_batch`](Self::forward_batch) stacks the
/// logits rows: the rows of `items[0]`'s tree first (as [`TokenTree::logits_row`] numbers
/// them), then those of `items[1]`, and so on. A sequence may be absent from a batch (it then
/// keeps its uncommitted nodes until its next forward). For lossless batched decoding, a
/// node's logits must not depend on the other sequences in the batch.
pub trait BatchLogitsModel {
    /// The number of logits per row.
    fn vocab_size(&self) -> usize;

    /// Creates an empty sequence.
    fn add_sequence(&mut self) -> Result<SeqId, ModelError>;

    /// Frees a sequence and its cache.
    fn remove_sequence(&mut self, seq: SeqId) -> Result<(), ModelError>;

    /// Evaluates each sequence's tree on top of its committed context.
    fn forward_batch(
        &mut self,
        items: &[(SeqId, &TokenTree)],
        logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError>;

    /// Keeps `path` of `seq`'s last forward and drops its other uncommitted nodes.
    fn commit(&mut self, seq: SeqId, path: &[NodeId]) -> Result<(), ModelError>;

    /// Which trees the model can evaluate.
    fn tree_support(&self) -> TreeSupport {
        TreeSupport::Trees
    }

    /// The longest context per sequence, if bounded.
    fn max_context(&self) -> Option<usize> {
        None
    }

    /// Writes the final hidden state of `node` of `seq`'s last forward into `out`, resizing
    /// it. Models without hidden states keep the default, an error.
    fn hidden_state(
        &mut self,
        seq: SeqId,
        node: NodeId,
        out: &mut Array1<f32>,
    ) -> Result<(), DecodeError> {
        let _ = (seq, node, out);
        Err(DecodeError::MissingCapability("final hidden states"))
    }

    /// Writes the head logits of `node` of `seq`'s last forward into `out`, resizing it.
    fn head_logits(
        &mut self,
        seq: SeqId,
        node: NodeId,
        out: &mut Array2<f32>,
    ) -> Result<(), DecodeError> {
        let _ = (seq, node, out);
        Err(DecodeError::MissingCapability("decoding-head logits"))
    }
}

/// A [`BatchLogitsModel`] made of one single-sequence model per sequence, evaluated one after
/// the other. The reference for batched implementations, and a way to batch toy models.
pub struct PerSequence<M, F> {
    make: F,
    models: HashMap<SeqId, M>,
    next: u64,
    vocab_size: usize,
    tree_support: TreeSupport,
    max_context: Option<usize>,
}

impl<M: LogitsModel, F: FnMut() -> M> PerSequence<M, F> {
    /// Creates models with `make` (each must be empty and alike).
    pub fn new(mut make: F) -> Self {
        let probe = make();
        Self {
            vocab_size: probe.vocab_size(),
            tree_support: probe.tree_support(),
            max_context: probe.max_context(),
            make,
            models: HashMap::new(),
            next: 0,
        }
    }

    fn model(&mut self, seq: SeqId) -> Result<&mut M, ModelError> {
        self.models
            .get_mut(&seq)
            .ok_or_else(|| ModelError::msg(format!("unknown sequence {}", seq.0)))
    }
}

impl<M: LogitsModel, F: FnMut() -> M> BatchLogitsModel for PerSequence<M, F> {
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn add_sequence(&mut self) -> Result<SeqId, ModelError> {
        let seq = SeqId(self.next);
        self.next += 1;
        self.models.insert(seq, (self.make)());
        Ok(seq)
    }

    fn remove_sequence(&mut self, seq: SeqId) -> Result<(), ModelError> {
        self.models
            .remove(&seq)
            .map(drop)
            .ok_or_else(|| ModelError::msg(format!("unknown sequence {}", seq.0)))
    }

    fn forward_batch(
        &mut self,
        items: &[(SeqId, &TokenTree)],
        mut logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let total: usize = items.iter().map(|(_, t)| t.logits_rows()).sum();
        if logits.nrows() != total {
            return Err(ModelError::msg(format!(
                "logits have {} rows, the batch needs {total}",
                logits.nrows()
            )));
        }
        let mut row = 0;
        for &(seq, tree) in items {
            let rows = tree.logits_rows();
            let view = logits.slice_axis_mut(Axis(0), (row..row + rows).into());
            self.model(seq)?.forward(tree, view)?;
            row += rows;
        }
        Ok(())
    }

    fn commit(&mut self, seq: SeqId, path: &[NodeId]) -> Result<(), ModelError> {
        self.model(seq)?.commit(path)
    }

    fn tree_support(&self) -> TreeSupport {
        self.tree_support
    }

    fn max_context(&self) -> Option<usize> {
        self.max_context
    }

    fn hidden_state(
        &mut self,
        seq: SeqId,
        node: NodeId,
        out: &mut Array1<f32>,
    ) -> Result<(), DecodeError> {
        crate::ModelExtras(self.model(seq)?).hidden_state(node, out)
    }

    fn head_logits(
        &mut self,
        seq: SeqId,
        node: NodeId,
        out: &mut Array2<f32>,
    ) -> Result<(), DecodeError> {
        crate::ModelExtras(self.model(seq)?).head_logits(node, out)
    }
}

/// The extras of one sequence of a batched model.
struct SeqExtras<'a> {
    model: &'a mut dyn BatchLogitsModel,
    seq: SeqId,
}

impl StepExtras for SeqExtras<'_> {
    fn hidden_state(&mut self, node: NodeId, out: &mut Array1<f32>) -> Result<(), DecodeError> {
        self.model.hidden_state(self.seq, node, out)
    }

    fn head_logits(&mut self, node: NodeId, out: &mut Array2<f32>) -> Result<(), DecodeError> {
        self.model.head_logits(self.seq, node, out)
    }
}

/// One sequence to decode in a batch.
pub struct BatchRequest {
    /// The prompt.
    pub prompt: Vec<Token>,
    /// Its strategy.
    pub strategy: Box<dyn Strategy>,
    /// Its stop conditions and sampling.
    pub config: DecodeConfig,
    /// Its own randomness (a seeded generator gives the same output as decoding it alone
    /// with the same seed).
    pub draw: Box<dyn Draw>,
}

/// Totals of a batched run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batched forward passes.
    pub forward_passes: usize,
    /// Tree nodes evaluated over all sequences.
    pub nodes: usize,
    /// Tokens emitted over all sequences.
    pub tokens: usize,
    /// Most sequences in one forward pass.
    pub max_in_flight: usize,
    /// Most tree nodes in one forward pass, over all its sequences.
    pub max_nodes_per_pass: usize,
}

/// How [`decode_batch_with`] shares its forward passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// At most this many sequences in flight (at least 1).
    pub concurrency: usize,
    /// At most this many tree nodes per forward pass over all sequences: each of the `B`
    /// sequences in flight may draft `total / B` nodes (the first `total % B` one more; at
    /// least its root), within its own configuration's budget. `None`: each sequence's own
    /// budget.
    pub max_total_nodes: Option<usize>,
    /// Speculate only while at most this many sequences are in flight (above it, every
    /// sequence decodes plainly until the batch shrinks again). `None`: always, as each
    /// request's configuration says.
    pub speculate_up_to: Option<usize>,
}

impl BatchOptions {
    /// Up to `concurrency` sequences in flight, each within its own budget.
    pub fn new(concurrency: usize) -> Self {
        Self {
            concurrency,
            max_total_nodes: None,
            speculate_up_to: None,
        }
    }

    /// At most `total` nodes per forward pass over all sequences.
    pub fn with_max_total_nodes(mut self, total: Option<usize>) -> Self {
        self.max_total_nodes = total;
        self
    }

    /// Speculation only while at most `limit` sequences are in flight.
    pub fn with_speculate_up_to(mut self, limit: Option<usize>) -> Self {
        self.speculate_up_to = limit;
        self
    }
}

struct Active {
    index: usize,
    seq: SeqId,
    decoder: Decoder<Box<dyn Strategy>>,
    draw: Box<dyn Draw>,
}

/// Decodes `requests` with at most `concurrency` sequences in flight: sequences join in
/// order as slots free up, all in-flight sequences share each forward pass, and each leaves
/// when it finishes. Returns one result per request, in request order: a sequence whose
/// strategy or configuration fails gets its error while the others go on; a model error
/// stops everything.
///
/// Each sequence's [`DecodeStats`](crate::DecodeStats) records the whole batched forward as
/// its model time (the pass it waited for), so summing model time over sequences counts each
/// shared pass once per sequence in it ([`BatchStats`] counts the passes themselves).
///
/// Equivalent to [`decode_batch_with`] and [`BatchOptions::new`]`(concurrency)`.
pub fn decode_batch(
    model: &mut dyn BatchLogitsModel,
    requests: Vec<BatchRequest>,
    concurrency: usize,
) -> Result<(Vec<Result<Generation, DecodeError>>, BatchStats), DecodeError> {
    decode_batch_with(model, requests, &BatchOptions::new(concurrency))
}

/// Like [`decode_batch`], sharing the passes as `options` say. Each step, every sequence's
/// strategy learns how many sequences share the pass ([`DraftContext::batch_size`]), so
/// cost-aware trees shrink as the batch grows; a total node budget caps the pass itself.
/// Outputs are unchanged by any option.
///
/// [`DraftContext::batch_size`]: crate::DraftContext::batch_size
pub fn decode_batch_with(
    model: &mut dyn BatchLogitsModel,
    requests: Vec<BatchRequest>,
    options: &BatchOptions,
) -> Result<(Vec<Result<Generation, DecodeError>>, BatchStats), DecodeError> {
    let concurrency = options.concurrency;
    if concurrency == 0 {
        return Err(DecodeError::config("concurrency must be at least 1"));
    }
    if options.max_total_nodes == Some(0) {
        return Err(DecodeError::config(
            "a batch's total node budget must be at least 1",
        ));
    }
    let vocab_size = model.vocab_size();
    let mut results: Vec<Option<Result<Generation, DecodeError>>> =
        (0..requests.len()).map(|_| None).collect();
    let mut waiting: VecDeque<(usize, BatchRequest)> = requests.into_iter().enumerate().collect();
    let mut active: Vec<Active> = Vec::new();
    let mut stats = BatchStats::default();
    let mut buffer: Vec<f32> = Vec::new();
    let mut rows: Vec<usize> = Vec::new();
    loop {
        while active.len() < concurrency {
            let Some((index, request)) = waiting.pop_front() else {
                break;
            };
            let mut decoder = Decoder::new(request.strategy, request.config);
            let started = decoder.start(
                &request.prompt,
                vocab_size,
                model.tree_support(),
                model.max_context(),
            );
            match started {
                Err(e) => results[index] = Some(Err(e)),
                Ok(()) if decoder.is_finished() => {
                    results[index] = Some(Ok(Generation::from_decoder(&decoder)))
                }
                Ok(()) => active.push(Active {
                    index,
                    seq: model.add_sequence()?,
                    decoder,
                    draw: request.draw,
                }),
            }
        }
        if active.is_empty() {
            break;
        }
        // Draft every tree; a failing strategy fails its own sequence only.
        let batch = active.len();
        let speculate = options.speculate_up_to.is_none_or(|limit| batch <= limit);
        let mut leaving = Vec::new();
        for (i, a) in active.iter_mut().enumerate() {
            a.decoder.set_batch_size(batch);
            a.decoder
                .set_speculation(speculate && a.decoder.config().speculation());
            let share = options
                .max_total_nodes
                .map(|total| total / batch + usize::from(i < total % batch));
            a.decoder.set_node_limit(share);
            if let Err(e) = a.decoder.propose() {
                leaving.push((i, Some(e)));
            }
        }
        retire(model, &mut active, leaving, &mut results)?;
        if active.is_empty() {
            continue;
        }
        let items: Vec<(SeqId, &TokenTree)> = active
            .iter()
            .map(|a| (a.seq, a.decoder.step_tree()))
            .collect();
        rows.clear();
        rows.extend(items.iter().map(|(_, t)| t.logits_rows()));
        let total: usize = rows.iter().sum();
        buffer.clear();
        buffer.resize(total * vocab_size, f32::NAN);
        let mut logits = ArrayViewMut2::from_shape((total, vocab_size), &mut buffer)
            .map_err(|_| DecodeError::Contract("logits buffer shape"))?;
        let started = Instant::now();
        model.forward_batch(&items, logits.view_mut())?;
        let forward_time = started.elapsed();
        stats.forward_passes += 1;
        let nodes: usize = items.iter().map(|(_, t)| t.len()).sum();
        stats.nodes += nodes;
        stats.max_nodes_per_pass = stats.max_nodes_per_pass.max(nodes);
        stats.max_in_flight = stats.max_in_flight.max(items.len());
        drop(items);
        let mut offset = 0;
        let mut leaving: Vec<(usize, Option<DecodeError>)> = Vec::new();
        for (i, a) in active.iter_mut().enumerate() {
            let view = logits.slice_axis(Axis(0), (offset..offset + rows[i]).into());
            offset += rows[i];
            let mut extras = SeqExtras {
                model: &mut *model,
                seq: a.seq,
            };
            match a.decoder.advance(view, &mut extras, &mut *a.draw) {
                Err(e) => leaving.push((i, Some(e))),
                Ok(outcome) => {
                    stats.tokens += outcome.emitted.len();
                    let path = outcome.commit_path.to_vec();
                    let started = Instant::now();
                    model.commit(a.seq, &path)?;
                    a.decoder
                        .record_model_time(forward_time + started.elapsed());
                    if a.decoder.is_finished() {
                        leaving.push((i, None));
                    }
                }
            }
        }
        retire(model, &mut active, leaving, &mut results)?;
    }
    let results = results
        .into_iter()
        .map(|r| r.unwrap_or(Err(DecodeError::Contract("a request was never decoded"))))
        .collect();
    Ok((results, stats))
}

/// Removes the sequences at `leaving` (indices into `active`, with the error of those that
/// failed) and records their results.
fn retire(
    model: &mut dyn BatchLogitsModel,
    active: &mut Vec<Active>,
    mut leaving: Vec<(usize, Option<DecodeError>)>,
    results: &mut [Option<Result<Generation, DecodeError>>],
) -> Result<(), DecodeError> {
    leaving.sort_unstable_by_key(|(i, _)| *i);
    for (i, error) in leaving.into_iter().rev() {
        let a = active.remove(i);
        model.remove_sequence(a.seq)?;
        results[a.index] = Some(match error {
            Some(e) => Err(e),
            None => Ok(Generation::from_decoder(&a.decoder)),
        });
    }
    Ok(())
}
