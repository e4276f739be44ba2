//! The forward pass: the weights shared by every sequence, and one evaluation of several
//! sequences' token trees with their rows stacked.
//!
//! Rows of all trees go through the projections (QKV, O, MLP, output) together, so the
//! weights are read once per forward however many sequences share it; attention is per
//! sequence, against its own cache and the node's ancestors. Every output element is one
//! fixed chain of float operations over its own row (`math.rs`), so a node's results do not
//! depend on which other rows, of its tree or of other sequences, are stacked with it.

use std::ops::Range;
use std::sync::Arc;

use decoding_core::TokenTree;
use ndarray::{Array2, ArrayViewMut2, Axis};

use crate::cache::LayerCache;
use crate::config::LlamaConfig;
use crate::error::LoadError;
use crate::gemm::{PANEL, Packed, gemm, gemm_panels, gemm_strided};
use crate::math::{Rope, Sum, exp, rms_norm, silu};
use crate::team::{Task, Team, split};
use crate::weights::{Layer, Weights};

/// What a forward pass reads, shared by every sequence: the configuration, the weights
/// (projections packed for [`gemm`]) and the RoPE tables.
#[derive(Debug)]
pub(crate) struct Net {
    pub(crate) config: LlamaConfig,
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
#[derive(Debug)]
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

/// One sequence's share of a forward pass.
pub(crate) struct Slot<'a> {
    /// The tree to evaluate.
    pub(crate) tree: &'a TokenTree,
    /// The sequence's committed length: the tree's keys and values go after these rows.
    pub(crate) committed: usize,
    /// The sequence's caches, one per layer.
    pub(crate) caches: &'a mut [LayerCache],
}

/// Where one sequence's nodes sit in the stacked rows, and what each of them sees.
struct Part<'a> {
    tree: &'a TokenTree,
    committed: usize,
    rows: Range<usize>,
    paths: Paths,
}

impl Net {
    /// Packs the weights of a checkpoint.
    pub(crate) fn from_safetensors(
        config: LlamaConfig,
        checkpoint: &[u8],
    ) -> Result<Self, LoadError> {
        config.validate()?;
        let weights = Weights::from_safetensors(&config, checkpoint)?;
        let output = Packed::from_out_in(weights.output().view());
        let Weights {
            embed,
            layers,
            norm,
            ..
        } = weights;
        let rope = Rope::new(
            config.head_width(),
            config.rope_theta,
            config.max_position_embeddings,
        );
        Ok(Self {
            blocks: layers.into_iter().map(Block::pack).collect(),
            config,
            embed,
            norm,
            output,
            rope,
        })
    }

    /// Empty caches for one sequence of a model running the first `layers` blocks, one per
    /// layer.
    pub(crate) fn new_caches(&self, layers: usize) -> Vec<LayerCache> {
        let width = self.config.kv_heads() * self.config.head_width();
        (0..layers).map(|_| LayerCache::new(width)).collect()
    }

    /// Evaluates the trees of `slots` in one pass through the first `layers` blocks (then
    /// the final norm and the output projection), their nodes stacked in slot order, on
    /// `threads` threads that each take at least `min_work` multiply-adds: writes the logits
    /// of the nodes that ask for them into `logits` (rows stacked the same way: each tree's
    /// [`TokenTree::logits_row`]s, slot after slot) and returns those nodes' final hidden
    /// states, stacked likewise. The caller has checked the trees and the shape of `logits`,
    /// and each slot holds `layers` caches.
    pub(crate) fn forward<'a>(
        &'a self,
        threads: usize,
        min_work: usize,
        layers: usize,
        slots: Vec<Slot<'a>>,
        mut logits: ArrayViewMut2<'_, f32>,
    ) -> Array2<f32> {
        let (mut parts, mut caches, mut picked) = (Vec::new(), Vec::new(), Vec::new());
        let mut rows = 0;
        for Slot {
            tree,
            committed,
            caches: slot_caches,
        } in slots
        {
            picked.extend(tree.logits_nodes().map(|node| rows + node));
            parts.push(Part {
                tree,
                committed,
                rows: rows..rows + tree.len(),
                paths: Paths::new(tree),
            });
            caches.push(slot_caches);
            rows += tree.len();
        }
        let hidden = std::thread::scope(|scope| {
            let team = Team::start(scope, threads.max(1) - 1, min_work);
            let x = self.layers(&team, layers, caches, Arc::new(parts));
            let hidden = Arc::new(self.norm_rows(&x.select(Axis(0), &picked), &self.norm));
            logits.assign(&project(&team, &hidden, &self.output));
            hidden
        });
        Arc::unwrap_or_clone(hidden)
    }

    /// The residual stream after the first `layers` blocks for every node of `parts`, whose
    /// keys and values are appended to their sequence's `caches` after its committed rows.
    fn layers<'env>(
        &'env self,
        team: &Team<'env>,
        layers: usize,
        caches: Vec<&'env mut [LayerCache]>,
        parts: Arc<Vec<Part<'env>>>,
    ) -> Array2<f32> {
        let rows = parts.last().map_or(0, |p| p.rows.end);
        let mut x = Array2::zeros((rows, self.config.hidden_size));
        let tokens = parts.iter().flat_map(|p| p.tree.tokens());
        for (mut row, &token) in x.rows_mut().into_iter().zip(tokens) {
            row.assign(&self.embed.row(token as usize));
        }
        // The caches of each layer, sequence by sequence.
        let mut by_layer: Vec<Vec<&'env mut LayerCache>> =
            (0..layers).map(|_| Vec::new()).collect();
        for (sequence, part) in caches.into_iter().zip(parts.iter()) {
            debug_assert_eq!(sequence.len(), layers);
            for (layer, cache) in by_layer.iter_mut().zip(sequence) {
                cache.truncate(part.committed);
                layer.push(cache);
            }
        }
        for (block, caches) in self.blocks[..layers].iter().zip(by_layer) {
            self.block(team, block, caches, &parts, &mut x);
        }
        x
    }

    /// One transformer block: updates the residual stream `x` and appends the nodes' keys and
    /// values to their sequence's cache of this layer.
    fn block<'env>(
        &'env self,
        team: &Team<'env>,
        layer: &'env Block,
        mut caches: Vec<&'env mut LayerCache>,
        parts: &Arc<Vec<Part<'env>>>,
        x: &mut Array2<f32>,
    ) {
        let c = &self.config;
        let head = c.head_width();
        let (q_dim, kv_dim) = (c.num_attention_heads * head, c.kv_heads() * head);

        let h = Arc::new(self.norm_rows(x, &layer.attn_norm));
        let mut qkv = project(team, &h, &layer.qkv);
        for (part, cache) in parts.iter().zip(&mut caches) {
            let mut rows = qkv.slice_axis_mut(Axis(0), part.rows.clone().into());
            for (node, mut row) in rows.rows_mut().into_iter().enumerate() {
                let position = part.committed + part.tree.depth(node);
                let row = row.as_slice_mut().expect("standard layout");
                for head_vector in row[..q_dim + kv_dim].chunks_exact_mut(head) {
                    self.rope.apply(head_vector, position);
                }
                cache.push(&row[q_dim..q_dim + kv_dim], &row[q_dim + kv_dim..]);
            }
        }
        let mut shared: Vec<&'env LayerCache> = Vec::with_capacity(caches.len());
        for cache in caches {
            shared.push(cache);
        }
        let attended = Arc::new(self.attention(team, Arc::new(shared), parts, Arc::new(qkv)));
        *x += &project(team, &attended, &layer.o);

        let h = Arc::new(self.norm_rows(x, &layer.mlp_norm));
        let gate_up = project(team, &h, &layer.gate_up);
        let ffn = c.intermediate_size;
        let mut act = Array2::zeros((x.nrows(), ffn));
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

    /// Tree attention of every node of `parts` (queries in the first columns of `qkv`)
    /// against its sequence's cache, the heads split between the team.
    fn attention<'env>(
        &'env self,
        team: &Team<'env>,
        caches: Arc<Vec<&'env LayerCache>>,
        parts: &Arc<Vec<Part<'env>>>,
        qkv: Arc<Array2<f32>>,
    ) -> Array2<f32> {
        let (heads, head) = (self.config.num_attention_heads, self.config.head_width());
        let pairs: usize = parts
            .iter()
            .map(|p| p.rows.len() * (p.committed + p.rows.len()))
            .sum();
        let tasks = split(heads, team.parts(pairs * heads * head), 1)
            .into_iter()
            .map(|heads| {
                let (caches, parts, qkv) =
                    (Arc::clone(&caches), Arc::clone(parts), Arc::clone(&qkv));
                Box::new(move || {
                    let width = heads.len() * head;
                    let mut out = vec![0.0f32; qkv.nrows() * width];
                    let queries: Vec<&[f32]> = qkv
                        .rows()
                        .into_iter()
                        .map(|row| row.to_slice().expect("standard layout"))
                        .collect();
                    for (part, cache) in parts.iter().zip(caches.iter()) {
                        let (rows, out) = (part.rows.clone(), &mut out[..]);
                        let out = &mut out[rows.start * width..rows.end * width];
                        self.attend(cache, part, &queries[rows], heads.clone(), out);
                    }
                    Array2::from_shape_vec((qkv.nrows(), width), out).expect("rows x width")
                }) as Task<'env>
            })
            .collect();
        concatenate_columns(team.run(tasks))
    }

    /// Attention of one sequence's nodes (their `queries`) for the query heads `heads`, into
    /// `out` (a row of `heads.len() * head` per node): node `n` attends to the committed rows
    /// of `cache` and to the rows of its root-to-`n` path, in position order.
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
        part: &Part<'_>,
        queries: &[&[f32]],
        heads: Range<usize>,
        out: &mut [f32],
    ) {
        let head = self.config.head_width();
        let group = self.config.num_attention_heads / self.config.kv_heads();
        let scale = 1.0 / (head as f32).sqrt();
        let (paths, committed) = (&part.paths, part.committed);
        let nodes = paths.len();
        let width = heads.len() * head;
        let all = committed + nodes;
        let mut scores = Vec::new();
        for kv in heads.start / group..heads.end.div_ceil(group) {
            let shared = heads.start.max(kv * group)..heads.end.min((kv + 1) * group);
            let keys = cache.keys.panels(kv, head, all);
            let (values, value_stride) = cache.rows.values(kv, head);
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
                        let (row, path) = (&mut row[..rows], paths.path(who(q).0));
                        softmax_weights(row, committed, path, scale);
                        // The sum over the rows seen, in order: the committed ones, then
                        // the path (the same sequence however the tree branches around it).
                        let mut total = Sum::new();
                        total.add_all(&row[..committed]);
                        for &t in path {
                            total.add(row[committed + t]);
                        }
                        total.total()
                    })
                    .collect();
                let weights: Vec<&[f32]> =
                    scores.chunks_exact(stride).map(|r| &r[..rows]).collect();
                gemm_strided(
                    &weights,
                    values,
                    value_stride,
                    rows,
                    head,
                    &mut |q, d, v| {
                        let (node, h) = who(q);
                        let at = node * width + (h - heads.start) * head + d;
                        let n = PANEL.min(head - d);
                        // All 16 lanes divided at once (the same quotients as one by one).
                        let quotients: [f32; PANEL] = std::array::from_fn(|c| v[c] / sums[q]);
                        out[at..at + n].copy_from_slice(&quotients[..n]);
                    },
                );
            }
        }
    }
}

/// Tree nodes whose queries go through attention together.
const NODES: usize = 16;

/// Turns one query's scores over `committed + t` rows (the committed ones, then the tree
/// rows `t`, of which the query sees those of `path`, increasing) into `e^(scale s - max)`,
/// 0 for the rows it does not see, `max` taken over the visible scaled scores.
fn softmax_weights(row: &mut [f32], committed: usize, path: &[usize], scale: f32) {
    for s in row.iter_mut() {
        *s *= scale;
    }
    let mut visible = path.iter().peekable();
    for (t, s) in row[committed..].iter_mut().enumerate() {
        if visible.next_if_eq(&&t).is_none() {
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

/// The tree rows each node sees: its root-to-node path (ancestors and itself), in
/// increasing order, every node's list one after the other (`O(sum of depths)`, not the
/// `len x len` of a dense mask).
#[derive(Debug)]
struct Paths {
    /// Node `n`'s path is `nodes[starts[n]..starts[n + 1]]`.
    starts: Vec<usize>,
    nodes: Vec<usize>,
}

impl Paths {
    fn new(tree: &TokenTree) -> Self {
        let mut starts = Vec::with_capacity(tree.len() + 1);
        starts.push(0);
        let mut nodes = Vec::new();
        for n in 0..tree.len() {
            if let Some(parent) = tree.parent(n) {
                // Parents come before their children, so the parent's path is complete.
                nodes.extend_from_within(starts[parent]..starts[parent + 1]);
            }
            nodes.push(n);
            starts.push(nodes.len());
        }
        Self { starts, nodes }
    }

    /// Nodes in the tree.
    fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// The tree rows node `n` sees, increasing.
    fn path(&self, n: usize) -> &[usize] {
        &self.nodes[self.starts[n]..self.starts[n + 1]]
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
