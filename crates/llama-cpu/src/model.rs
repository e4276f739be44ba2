//! The model: a LLaMA forward pass over a token tree, with a compacting KV cache.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use decoding_core::{HiddenStates, LogitsModel, ModelError, NodeId, TokenTree};
use ndarray::{Array2, ArrayViewMut1, ArrayViewMut2, Axis};

use crate::cache::KvCache;
use crate::config::LlamaConfig;
use crate::error::LoadError;
use crate::math::{COLS, Rope, dot, matmul, rms_norm, silu};
use crate::team::{Task, Team, split};
use crate::weights::{Layer, Weights};

/// A LLaMA-architecture model on the CPU, in f32, implementing [`LogitsModel`] with tree
/// attention and [`HiddenStates`].
///
/// Every node's logits are a function of its path alone, bit for bit: they do not depend on
/// the other nodes of the tree, on how the cache was filled, or on the thread count (see the
/// crate docs).
#[derive(Clone, Debug)]
pub struct Llama {
    net: Net,
    threads: usize,
    min_work: usize,
    state: State,
}

/// What a forward pass reads: the configuration, the weights and the RoPE tables.
#[derive(Clone, Debug)]
struct Net {
    config: LlamaConfig,
    weights: Weights,
    rope: Rope,
}

/// What a forward pass and a commit change.
#[derive(Clone, Debug)]
struct State {
    /// One cache per layer: `committed` rows, then the rows of the last forward's nodes.
    cache: Vec<KvCache>,
    committed: usize,
    /// The tree of the last forward, until it is committed.
    uncommitted: Option<TokenTree>,
    /// Final hidden states of the last forward: one row per node that asked for logits.
    hidden: Array2<f32>,
    /// `hidden_row[node]`: the row of `hidden` holding `node`, for the last forward.
    hidden_row: Vec<Option<usize>>,
}

/// Multiply-adds below which handing work to another thread costs more than it saves
/// (a channel round trip is a few microseconds).
const MIN_WORK_PER_THREAD: usize = 1 << 16;

impl Llama {
    /// Loads `dir/config.json` and `dir/model.safetensors`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| LoadError::Io { path, source })
        };
        let config_text = String::from_utf8(read("config.json")?)
            .map_err(|e| LoadError::Config(format!("config.json is not UTF-8: {e}")))?;
        let config = LlamaConfig::from_json(&config_text)?;
        Self::from_safetensors(config, &read("model.safetensors")?)
    }

    /// Builds the model from a configuration and the bytes of a safetensors checkpoint.
    pub fn from_safetensors(config: LlamaConfig, checkpoint: &[u8]) -> Result<Self, LoadError> {
        config.validate()?;
        let weights = Weights::from_safetensors(&config, checkpoint)?;
        let rope = Rope::new(
            config.head_width(),
            config.rope_theta,
            config.max_position_embeddings,
        );
        let state = State {
            cache: (0..config.num_hidden_layers)
                .map(|_| KvCache::new(config.kv_heads() * config.head_width()))
                .collect(),
            committed: 0,
            uncommitted: None,
            hidden: Array2::zeros((0, config.hidden_size)),
            hidden_row: Vec::new(),
        };
        Ok(Self {
            net: Net {
                config,
                weights,
                rope,
            },
            threads: 1,
            min_work: MIN_WORK_PER_THREAD,
            state,
        })
    }

    /// Uses `threads` threads (at least 1) per forward pass: projections are split by output
    /// columns and attention by heads, between helper threads started inside each call and
    /// joined before it returns. Results are bit-identical for every thread count.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Splits a projection or an attention between threads only when each thread gets at
    /// least `multiply_adds` of work (default 65536); 0 splits everything (for tests).
    pub fn with_min_work_per_thread(mut self, multiply_adds: usize) -> Self {
        self.min_work = multiply_adds;
        self
    }

    /// The threads used per forward pass.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.net.config
    }

    /// Checks a forward's arguments against the model.
    fn check_forward(
        &self,
        tree: &TokenTree,
        logits: &ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let config = &self.net.config;
        tree.check_vocab(config.vocab_size)?;
        let expected = (tree.logits_rows(), config.vocab_size);
        if logits.dim() != expected {
            return Err(ModelError::msg(format!(
                "logits buffer is {:?}, expected {expected:?}",
                logits.dim()
            )));
        }
        let needed = self.state.committed + tree.max_depth() + 1;
        if needed > config.max_position_embeddings {
            return Err(ModelError::msg(format!(
                "the tree needs {needed} positions, over the model's {}",
                config.max_position_embeddings
            )));
        }
        Ok(())
    }
}

impl Net {
    /// The residual stream after all layers for every node of `tree`, whose keys and values
    /// are appended to the caches after the `committed` rows.
    fn layers<'env>(
        &'env self,
        team: &Team<'env>,
        caches: Vec<&'env mut KvCache>,
        tree: &'env TokenTree,
        committed: usize,
    ) -> Array2<f32> {
        let mut x = Array2::zeros((tree.len(), self.config.hidden_size));
        for (mut row, &token) in x.rows_mut().into_iter().zip(tree.tokens()) {
            row.assign(&self.weights.embed.row(token as usize));
        }
        for (layer, cache) in self.weights.layers.iter().zip(caches) {
            cache.truncate(committed);
            self.block(team, layer, cache, tree, committed, &mut x);
        }
        x
    }

    /// One transformer block: updates the residual stream `x` and appends the nodes' keys and
    /// values to `cache`.
    fn block<'env>(
        &'env self,
        team: &Team<'env>,
        layer: &'env Layer,
        cache: &'env mut KvCache,
        tree: &'env TokenTree,
        committed: usize,
        x: &mut Array2<f32>,
    ) {
        let c = &self.config;
        let head = c.head_width();
        let (q_dim, kv_dim) = (c.num_attention_heads * head, c.kv_heads() * head);

        let h = Arc::new(self.norm_rows(x, &layer.attn_norm));
        let mut qkv = project(team, &h, &layer.qkv);
        for (node, mut row) in qkv.rows_mut().into_iter().enumerate() {
            let position = committed + tree.depth(node);
            let row = row.as_slice_mut().expect("standard layout");
            for head_vector in row[..q_dim + kv_dim].chunks_exact_mut(head) {
                self.rope.apply(head_vector, position);
            }
            cache.push(&row[q_dim..q_dim + kv_dim], &row[q_dim + kv_dim..]);
        }
        let cache: &'env KvCache = cache;
        let attended = Arc::new(self.attention(team, cache, tree, committed, Arc::new(qkv)));
        *x += &project(team, &attended, &layer.o);

        let h = Arc::new(self.norm_rows(x, &layer.mlp_norm));
        let gate_up = project(team, &h, &layer.gate_up);
        let ffn = c.intermediate_size;
        let act = Array2::from_shape_fn((tree.len(), ffn), |(i, j)| {
            silu(gate_up[[i, j]]) * gate_up[[i, ffn + j]]
        });
        *x += &project(team, &Arc::new(act), &layer.down);
    }

    /// RMSNorm of every row of `x`.
    fn norm_rows(&self, x: &Array2<f32>, weight: &[f32]) -> Array2<f32> {
        let eps = self.config.rms_norm_eps as f32;
        let mut out = Array2::zeros(x.dim());
        for (x, mut o) in x.rows().into_iter().zip(out.rows_mut()) {
            rms_norm(
                x.as_slice().expect("standard layout"),
                weight,
                eps,
                o.as_slice_mut().expect("standard layout"),
            );
        }
        out
    }

    /// Tree attention of every node (queries in the first columns of `qkv`), its heads split
    /// between the team.
    fn attention<'env>(
        &'env self,
        team: &Team<'env>,
        cache: &'env KvCache,
        tree: &'env TokenTree,
        committed: usize,
        qkv: Arc<Array2<f32>>,
    ) -> Array2<f32> {
        let (heads, head) = (self.config.num_attention_heads, self.config.head_width());
        let work = tree.len() * (committed + tree.max_depth() + 1) * heads * head;
        let tasks = split(heads, team.parts(work), 1)
            .into_iter()
            .map(|heads| {
                let qkv = Arc::clone(&qkv);
                Box::new(move || self.attend(cache, tree, committed, &qkv, heads)) as Task<'env>
            })
            .collect();
        concatenate_columns(team.run(tasks))
    }

    /// Attention of every node for the query heads `heads`: node `n` attends to the
    /// committed rows of `cache` and to the rows of its root-to-`n` path, in position order.
    fn attend(
        &self,
        cache: &KvCache,
        tree: &TokenTree,
        committed: usize,
        qkv: &Array2<f32>,
        heads: Range<usize>,
    ) -> Array2<f32> {
        let head = self.config.head_width();
        let group = self.config.num_attention_heads / self.config.kv_heads();
        let scale = 1.0 / (head as f32).sqrt();
        let mut out = Array2::zeros((tree.len(), heads.len() * head));
        let (mut path, mut rows, mut scores) = (Vec::new(), Vec::new(), Vec::new());
        let mut acc = vec![0.0f32; head];
        for node in 0..tree.len() {
            tree.path_to(node, &mut path);
            rows.clear();
            rows.extend(0..committed);
            rows.extend(path.iter().map(|&a| committed + a));
            let q_row = qkv.row(node).to_slice().expect("standard layout");
            for (h, mut out_head) in heads.clone().zip(out.row_mut(node).exact_chunks_mut(head)) {
                let kv = h / group;
                let q = &q_row[h * head..(h + 1) * head];
                scores.clear();
                scores.extend(rows.iter().map(|&r| dot(q, cache.key(r, kv, head)) * scale));
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0f32;
                for s in &mut scores {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                acc.fill(0.0);
                for (&r, &e) in rows.iter().zip(&scores) {
                    let p = e / sum;
                    for (a, &v) in acc.iter_mut().zip(cache.value(r, kv, head)) {
                        *a += p * v;
                    }
                }
                out_head.assign(&ndarray::aview1(&acc));
            }
        }
        out
    }
}

/// `x` projected by `w` (`[out, in]`), the output columns split between the team when the
/// work is large enough.
fn project<'env>(team: &Team<'env>, x: &Arc<Array2<f32>>, w: &'env Array2<f32>) -> Array2<f32> {
    let tasks = split(w.nrows(), team.parts(x.len() * w.nrows()), COLS)
        .into_iter()
        .map(|cols| {
            let x = Arc::clone(x);
            Box::new(move || {
                let w = w.slice_axis(Axis(0), cols.into());
                let mut out = Array2::zeros((x.nrows(), w.nrows()));
                matmul(x.view(), w, out.view_mut());
                out
            }) as Task<'env>
        })
        .collect();
    concatenate_columns(team.run(tasks))
}

/// The blocks side by side, in a standard-layout array (a single block is returned as is).
fn concatenate_columns(mut blocks: Vec<Array2<f32>>) -> Array2<f32> {
    if blocks.len() == 1 {
        return blocks.pop().expect("one block");
    }
    let rows = blocks.first().map_or(0, |b| b.nrows());
    let mut out = Array2::zeros((rows, blocks.iter().map(|b| b.ncols()).sum()));
    let mut start = 0;
    for block in &blocks {
        let cols = start..start + block.ncols();
        out.slice_axis_mut(Axis(1), cols.into()).assign(block);
        start += block.ncols();
    }
    out
}

impl LogitsModel for Llama {
    fn vocab_size(&self) -> usize {
        self.net.config.vocab_size
    }

    fn committed_len(&self) -> usize {
        self.state.committed
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        mut logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        self.check_forward(tree, &logits)?;
        let (net, state) = (&self.net, &mut self.state);
        state.uncommitted = None;
        let committed = state.committed;
        let caches: Vec<&mut KvCache> = state.cache.iter_mut().collect();
        let picked: Vec<NodeId> = tree.logits_nodes().collect();
        let hidden = std::thread::scope(|scope| {
            let team = Team::start(scope, self.threads - 1, self.min_work);
            let x = net.layers(&team, caches, tree, committed);
            let hidden = Arc::new(net.norm_rows(&x.select(Axis(0), &picked), &net.weights.norm));
            logits.assign(&project(&team, &hidden, net.weights.output()));
            hidden
        });
        state.hidden = Arc::unwrap_or_clone(hidden);
        state.hidden_row = (0..tree.len()).map(|n| tree.logits_row(n)).collect();
        state.uncommitted = Some(tree.clone());
        Ok(())
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        let state = &mut self.state;
        let tree = state
            .uncommitted
            .take()
            .ok_or_else(|| ModelError::msg("commit without a forward since the last commit"))?;
        tree.check_path(path)?;
        for cache in &mut state.cache {
            cache.compact(state.committed, path);
        }
        state.committed += path.len();
        Ok(())
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        let state = &mut self.state;
        if len > state.committed {
            return Err(ModelError::msg(format!(
                "cannot truncate to {len} tokens: only {} are committed",
                state.committed
            )));
        }
        state.committed = len;
        state.uncommitted = None;
        for cache in &mut state.cache {
            cache.truncate(len);
        }
        Ok(())
    }

    fn max_context(&self) -> Option<usize> {
        Some(self.net.config.max_position_embeddings)
    }

    fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
        Some(self)
    }
}

impl HiddenStates for Llama {
    fn hidden_size(&self) -> usize {
        self.net.config.hidden_size
    }

    fn hidden_state(
        &self,
        node: NodeId,
        mut out: ArrayViewMut1<'_, f32>,
    ) -> Result<(), ModelError> {
        let state = &self.state;
        let row = state
            .hidden_row
            .get(node)
            .copied()
            .flatten()
            .ok_or_else(|| {
                ModelError::msg(format!(
                    "node {node} asked for no logits in the last forward, so it has no hidden state"
                ))
            })?;
        if out.len() != self.hidden_size() {
            return Err(ModelError::msg(format!(
                "hidden state buffer has {} entries, expected {}",
                out.len(),
                self.hidden_size()
            )));
        }
        out.assign(&state.hidden.row(row));
        Ok(())
    }
}
