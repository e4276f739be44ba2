//! The model: a LLaMA forward pass over a token tree, with a compacting KV cache.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use decoding_core::{HiddenStates, LogitsModel, ModelError, NodeId, TokenTree};
use ndarray::{Array2, ArrayViewMut1, ArrayViewMut2, Axis};

use crate::cache::KvCache;
use crate::config::LlamaConfig;
use crate::error::LoadError;
use crate::math::{PANEL, Packed, Rope, Sum, exp, gemm, gemm_panels, gemm_rows, rms_norm, silu};
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

/// What a forward pass reads: the configuration, the weights (projections packed for
/// [`gemm`]) and the RoPE tables.
#[derive(Clone, Debug)]
struct Net {
    config: LlamaConfig,
    /// `embed_tokens`: `[vocab, hidden]`, read row by row.
    embed: Array2<f32>,
    blocks: Vec<Block>,
    /// The final RMSNorm weight.
    norm: Vec<f32>,
    /// The output projection (`lm_head`, or the embedding when tied), packed.
    output: Packed,
    rope: Rope,
}

/// The weights of one transformer block, projections packed (`W = w^T` for HF `[out, in]`
/// weights `w`).
#[derive(Clone, Debug)]
struct Block {
    attn_norm: Vec<f32>,
    /// `q_proj`, `k_proj` and `v_proj` side by side: `hidden x (q_dim + 2 kv_dim)`.
    qkv: Packed,
    o: Packed,
    mlp_norm: Vec<f32>,
    /// `gate_proj` and `up_proj` side by side: `hidden x 2 ffn`.
    gate_up: Packed,
    down: Packed,
}

impl Block {
    fn pack(layer: Layer) -> Self {
        Self {
            qkv: Packed::from_out_in(layer.qkv.view()),
            o: Packed::from_out_in(layer.o.view()),
            gate_up: Packed::from_out_in(layer.gate_up.view()),
            down: Packed::from_out_in(layer.down.view()),
            attn_norm: layer.attn_norm,
            mlp_norm: layer.mlp_norm,
        }
    }
}

/// What a forward pass and a commit change.
#[derive(Clone, Debug)]
struct State {
    /// One cache per layer: `committed` rows, then the rows of the last forward's nodes.
    cache: Vec<LayerCache>,
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
        let output = Packed::from_out_in(weights.output().view());
        let Weights {
            embed,
            layers,
            norm,
            ..
        } = weights;
        let blocks = layers.into_iter().map(Block::pack).collect();
        let rope = Rope::new(
            config.head_width(),
            config.rope_theta,
            config.max_position_embeddings,
        );
        let state = State {
            cache: (0..config.num_hidden_layers)
                .map(|_| LayerCache::new(config.kv_heads() * config.head_width()))
                .collect(),
            committed: 0,
            uncommitted: None,
            hidden: Array2::zeros((0, config.hidden_size)),
            hidden_row: Vec::new(),
        };
        Ok(Self {
            net: Net {
                config,
                embed,
                blocks,
                norm,
                output,
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
        caches: Vec<&'env mut LayerCache>,
        tree: &'env TokenTree,
        committed: usize,
    ) -> Array2<f32> {
        let mut x = Array2::zeros((tree.len(), self.config.hidden_size));
        for (mut row, &token) in x.rows_mut().into_iter().zip(tree.tokens()) {
            row.assign(&self.embed.row(token as usize));
        }
        let sight = Arc::new(Sight::new(tree));
        for (block, cache) in self.blocks.iter().zip(caches) {
            cache.truncate(committed);
            self.block(team, block, cache, tree, &sight, committed, &mut x);
        }
        x
    }

    /// One transformer block: updates the residual stream `x` and appends the nodes' keys and
    /// values to `cache`.
    #[allow(clippy::too_many_arguments)]
    fn block<'env>(
        &'env self,
        team: &Team<'env>,
        layer: &'env Block,
        cache: &'env mut LayerCache,
        tree: &'env TokenTree,
        sight: &Arc<Sight>,
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
        let cache: &'env LayerCache = cache;
        let attended = Arc::new(self.attention(team, cache, sight, committed, Arc::new(qkv)));
        *x += &project(team, &attended, &layer.o);

        let h = Arc::new(self.norm_rows(x, &layer.mlp_norm));
        let gate_up = project(team, &h, &layer.gate_up);
        let ffn = c.intermediate_size;
        let mut act = Array2::zeros((tree.len(), ffn));
        for (a, g) in act.rows_mut().into_iter().zip(gate_up.rows()) {
            let (gate, up) = g.to_slice().expect("standard layout").split_at(ffn);
            let a = a.into_slice().expect("standard layout");
            for ((a, &g), &u) in a.iter_mut().zip(gate).zip(up) {
                *a = silu(g) * u;
            }
        }
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
        cache: &'env LayerCache,
        sight: &Arc<Sight>,
        committed: usize,
        qkv: Arc<Array2<f32>>,
    ) -> Array2<f32> {
        let (heads, head) = (self.config.num_attention_heads, self.config.head_width());
        let work = sight.len() * (committed + sight.len()) * heads * head;
        let tasks = split(heads, team.parts(work), 1)
            .into_iter()
            .map(|heads| {
                let (qkv, sight) = (Arc::clone(&qkv), Arc::clone(sight));
                Box::new(move || self.attend(cache, &sight, committed, &qkv, heads)) as Task<'env>
            })
            .collect();
        concatenate_columns(team.run(tasks))
    }

    /// Attention of every node for the query heads `heads`: node `n` attends to the
    /// committed rows of `cache` and to the rows of its root-to-`n` path, in position order.
    ///
    /// The queries that share a key/value head go [`NODES`] nodes at a time through two
    /// products: scores `S = Q K^T` over the committed rows and the tree rows up to the
    /// block's last node, then `E V` for the exponentials `E = e^(S - max)`, divided by their
    /// sums ([`Sum`] over the rows seen, in order) at the end. A row a query does not see
    /// gets score `-inf` and weight exactly 0, which changes neither its maximum nor its
    /// `E V` chains (they start at +0 and never become -0): each element comes out of the
    /// same operations whatever else the block holds.
    fn attend(
        &self,
        cache: &LayerCache,
        sight: &Sight,
        committed: usize,
        qkv: &Array2<f32>,
        heads: Range<usize>,
    ) -> Array2<f32> {
        let head = self.config.head_width();
        let group = self.config.num_attention_heads / self.config.kv_heads();
        let scale = 1.0 / (head as f32).sqrt();
        let nodes = sight.len();
        let width = heads.len() * head;
        let mut out = vec![0.0f32; nodes * width];
        let queries: Vec<&[f32]> = qkv
            .rows()
            .into_iter()
            .map(|row| row.to_slice().expect("standard layout"))
            .collect();
        let all = committed + nodes;
        let mut scores = Vec::new();
        for kv in heads.start / group..heads.end.div_ceil(group) {
            let shared = heads.start.max(kv * group)..heads.end.min((kv + 1) * group);
            let keys = cache.keys.panels(kv, head, all);
            let values: Vec<&[f32]> = (0..all).map(|r| cache.rows.value(r, kv, head)).collect();
            for first in (0..nodes).step_by(NODES) {
                let block = first..nodes.min(first + NODES);
                let rows = committed + block.end;
                let stride = rows.next_multiple_of(PANEL);
                // Query `q` is head `shared.start + q % shared.len()` of node
                // `block.start + q / shared.len()`.
                let who = |q: usize| {
                    (
                        block.start + q / shared.len(),
                        shared.start + q % shared.len(),
                    )
                };
                let x: Vec<&[f32]> = (0..block.len() * shared.len())
                    .map(|q| {
                        let (node, h) = who(q);
                        &queries[node][h * head..(h + 1) * head]
                    })
                    .collect();
                if scores.len() < x.len() * stride {
                    scores.resize(x.len() * stride, 0.0);
                }
                let scores = &mut scores[..x.len() * stride];
                gemm_panels(&x, &keys[..stride / PANEL], head, &mut |q, r, s| {
                    scores[q * stride + r..q * stride + r + PANEL].copy_from_slice(s);
                });
                let sums: Vec<f32> = scores
                    .chunks_exact_mut(stride)
                    .enumerate()
                    .map(|(q, row)| {
                        let (row, seen) = (&mut row[..rows], sight.row(who(q).0));
                        softmax_weights(row, committed, seen, scale);
                        // The sum over the rows seen, in order: the committed ones, then
                        // the path (the same sequence however the tree branches around it).
                        let mut total = Sum::new();
                        total.add_all(&row[..committed]);
                        for (&e, _) in row[committed..].iter().zip(seen).filter(|(_, s)| **s) {
                            total.add(e);
                        }
                        total.total()
                    })
                    .collect();
                let weights: Vec<&[f32]> =
                    scores.chunks_exact(stride).map(|r| &r[..rows]).collect();
                gemm_rows(&weights, &values[..rows], head, &mut |q, d, v| {
                    let (node, h) = who(q);
                    let at = node * width + (h - heads.start) * head + d;
                    let n = PANEL.min(head - d);
                    for (o, &v) in out[at..at + n].iter_mut().zip(&v[..n]) {
                        *o = v / sums[q];
                    }
                });
            }
        }
        Array2::from_shape_vec((nodes, width), out).expect("nodes x width")
    }
}

/// Tree nodes whose queries go through attention together.
const NODES: usize = 16;

/// Turns one query's scores over `committed + t` rows (the committed ones, then the tree
/// rows `t` of which `seen[t]` tells the visible ones) into `e^(scale s - max)`, 0 for the
/// rows it does not see, `max` taken over the visible scaled scores.
fn softmax_weights(row: &mut [f32], committed: usize, seen: &[bool], scale: f32) {
    for s in row.iter_mut() {
        *s *= scale;
    }
    for (s, &seen) in row[committed..].iter_mut().zip(seen) {
        if !seen {
            *s = f32::NEG_INFINITY;
        }
    }
    // The maximum is exact, so it may be taken in any order: by lanes, which vectorises.
    let mut lanes = [f32::NEG_INFINITY; PANEL];
    let chunks = row.chunks_exact(PANEL);
    for &s in chunks.remainder() {
        lanes[0] = if s > lanes[0] { s } else { lanes[0] };
    }
    for chunk in chunks {
        for (m, &s) in lanes.iter_mut().zip(chunk) {
            *m = if s > *m { s } else { *m };
        }
    }
    let max = lanes
        .iter()
        .fold(f32::NEG_INFINITY, |m, &s| if s > m { s } else { m });
    for s in row.iter_mut() {
        *s = if *s == f32::NEG_INFINITY {
            0.0
        } else {
            exp(*s - max)
        };
    }
}

/// The cache of one layer: keys and values row by row ([`KvCache`]), and the keys again as
/// panels of `K^T` ([`KeyPanels`]), the layout the score product reads.
#[derive(Clone, Debug)]
struct LayerCache {
    rows: KvCache,
    keys: KeyPanels,
}

impl LayerCache {
    fn new(width: usize) -> Self {
        Self {
            rows: KvCache::new(width),
            keys: KeyPanels {
                width,
                rows: 0,
                data: Vec::new(),
            },
        }
    }

    /// Keeps the first `rows` rows.
    fn truncate(&mut self, rows: usize) {
        self.rows.truncate(rows);
        self.keys.truncate(rows);
    }

    /// Appends one row.
    fn push(&mut self, key: &[f32], value: &[f32]) {
        self.rows.push(key, value);
        self.keys.push(key);
    }

    /// Moves the rows `start + kept[i]` to `start + i` (`kept` increasing) and drops every
    /// row after them.
    fn compact(&mut self, start: usize, kept: &[usize]) {
        self.rows.compact(start, kept);
        self.keys.compact(start, kept);
        debug_assert!((0..self.keys.rows).all(|r| {
            let key = self.rows.key(r, 0, self.keys.width);
            (0..key.len()).all(|i| self.keys.data[self.keys.at(r, i)] == key[i])
        }));
    }
}

/// Keys in blocks of [`PANEL`] rows: block `b` holds rows `PANEL b .. PANEL (b + 1)` as
/// `width` rows of `PANEL` floats (element `i` of key `r` at `PANEL (width b + i) + r %
/// PANEL`), so the elements of head `h` in block `b` are a panel of `K^T` for
/// [`gemm_panels`]. Lanes past the last row hold stale or zero keys, whose scores are
/// computed and never read.
#[derive(Clone, Debug)]
struct KeyPanels {
    width: usize,
    rows: usize,
    data: Vec<f32>,
}

impl KeyPanels {
    fn at(&self, row: usize, i: usize) -> usize {
        (row / PANEL * self.width + i) * PANEL + row % PANEL
    }

    fn truncate(&mut self, rows: usize) {
        self.rows = self.rows.min(rows);
        self.data
            .truncate(self.rows.div_ceil(PANEL) * PANEL * self.width);
    }

    fn push(&mut self, key: &[f32]) {
        let row = self.rows;
        if row.is_multiple_of(PANEL) {
            self.data
                .resize((row / PANEL + 1) * PANEL * self.width, 0.0);
        }
        for (i, &k) in key.iter().enumerate() {
            let at = self.at(row, i);
            self.data[at] = k;
        }
        self.rows += 1;
    }

    fn compact(&mut self, start: usize, kept: &[usize]) {
        for (i, &node) in kept.iter().enumerate() {
            let (from, to) = (start + node, start + i);
            if from != to {
                for e in 0..self.width {
                    let (a, b) = (self.at(from, e), self.at(to, e));
                    self.data[b] = self.data[a];
                }
            }
        }
        self.truncate(start + kept.len());
    }

    /// The panels of `K^T` for head `kv` (of width `head`) over the rows `0 .. rows`
    /// (rounded up to whole blocks).
    fn panels(&self, kv: usize, head: usize, rows: usize) -> Vec<&[f32]> {
        (0..rows.div_ceil(PANEL))
            .map(|b| {
                let start = (b * self.width + kv * head) * PANEL;
                &self.data[start..start + head * PANEL]
            })
            .collect()
    }
}

/// Which tree rows each node sees: `sees[n * len + t]` when node `t` is on the
/// root-to-`n` path (ancestors and `n` itself).
#[derive(Debug)]
struct Sight {
    len: usize,
    sees: Vec<bool>,
}

impl Sight {
    fn new(tree: &TokenTree) -> Self {
        let len = tree.len();
        let mut sees = vec![false; len * len];
        for n in 0..len {
            if let Some(parent) = tree.parent(n) {
                // Parents come before their children, so the parent's row is complete.
                sees.copy_within(parent * len..parent * len + parent + 1, n * len);
            }
            sees[n * len + n] = true;
        }
        Self { len, sees }
    }

    /// Nodes in the tree.
    fn len(&self) -> usize {
        self.len
    }

    /// The tree rows node `n` sees.
    fn row(&self, n: usize) -> &[bool] {
        &self.sees[n * self.len..(n + 1) * self.len]
    }
}

/// `x W` for packed `w`, the output columns split (by panels) between the team when the
/// work is large enough.
fn project<'env>(team: &Team<'env>, x: &Arc<Array2<f32>>, w: &'env Packed) -> Array2<f32> {
    let panels = w.cols().div_ceil(PANEL);
    let tasks = split(panels, team.parts(x.nrows() * w.depth() * w.cols()), 1)
        .into_iter()
        .map(|range| {
            let x = Arc::clone(x);
            Box::new(move || {
                let first = range.start * PANEL;
                let cols = (range.end * PANEL).min(w.cols()) - first;
                let rows: Vec<&[f32]> = x
                    .rows()
                    .into_iter()
                    .map(|row| row.to_slice().expect("standard layout"))
                    .collect();
                let mut out = vec![0.0f32; x.nrows() * cols];
                gemm(&rows, w, range, &mut |i, j, v: &[f32; PANEL]| {
                    let at = i * cols + j;
                    if j + PANEL <= cols {
                        out[at..at + PANEL].copy_from_slice(v);
                    } else {
                        out[at..at + cols - j].copy_from_slice(&v[..cols - j]);
                    }
                });
                Array2::from_shape_vec((x.nrows(), cols), out).expect("rows x cols")
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
        let caches: Vec<&mut LayerCache> = state.cache.iter_mut().collect();
        let picked: Vec<NodeId> = tree.logits_nodes().collect();
        let hidden = std::thread::scope(|scope| {
            let team = Team::start(scope, self.threads - 1, self.min_work);
            let x = net.layers(&team, caches, tree, committed);
            let hidden = Arc::new(net.norm_rows(&x.select(Axis(0), &picked), &net.norm));
            logits.assign(&project(&team, &hidden, &net.output));
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
