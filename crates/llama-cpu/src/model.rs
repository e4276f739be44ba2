//! The model: a LLaMA forward pass over a token tree, with a compacting KV cache.

use std::path::Path;

use decoding_core::{HiddenStates, LogitsModel, ModelError, NodeId, TokenTree};
use ndarray::{Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};

use crate::cache::KvCache;
use crate::config::LlamaConfig;
use crate::error::LoadError;
use crate::math::{Rope, dot, matmul, rms_norm, silu};
use crate::weights::{Layer, Weights};

/// A LLaMA-architecture model on the CPU, in f32, implementing [`LogitsModel`] with tree
/// attention and [`HiddenStates`].
///
/// Every node's logits are a function of its path alone, bit for bit: they do not depend on
/// the other nodes of the tree, on how the cache was filled, or on the thread count (see the
/// crate docs).
#[derive(Clone, Debug)]
pub struct Llama {
    config: LlamaConfig,
    weights: Weights,
    rope: Rope,
    threads: usize,
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
        Ok(Self {
            cache: (0..config.num_hidden_layers)
                .map(|_| KvCache::new(config.kv_heads() * config.head_width()))
                .collect(),
            config,
            weights,
            rope,
            threads: 1,
            committed: 0,
            uncommitted: None,
            hidden: Array2::zeros((0, 0)),
            hidden_row: Vec::new(),
        })
    }

    /// Uses `threads` threads (at least 1) per forward pass: big projections are split by
    /// output columns and attention by heads, between threads started inside the call and
    /// joined before it returns. Results are bit-identical for every thread count.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The threads used per forward pass.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
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

    /// One transformer block over the `n` nodes of `tree`, updating the residual stream `x`
    /// and appending the nodes' keys and values to `cache`.
    fn block(&self, layer: &Layer, cache: &mut KvCache, tree: &TokenTree, x: &mut Array2<f32>) {
        let c = &self.config;
        let (n, head) = (tree.len(), c.head_width());
        let (q_dim, kv_dim) = (c.num_attention_heads * head, c.kv_heads() * head);

        let h = self.norm_rows(x, &layer.attn_norm);
        let mut qkv = Array2::zeros((n, q_dim + 2 * kv_dim));
        matmul(h.view(), layer.qkv.view(), qkv.view_mut(), self.threads);
        for (node, mut row) in qkv.rows_mut().into_iter().enumerate() {
            let position = self.committed + tree.depth(node);
            let row = row.as_slice_mut().expect("standard layout");
            for head_vector in row[..q_dim + kv_dim].chunks_exact_mut(head) {
                self.rope.apply(head_vector, position);
            }
            cache.push(&row[q_dim..q_dim + kv_dim], &row[q_dim + kv_dim..]);
        }

        let mut attended = Array2::zeros((n, q_dim));
        self.attention(cache, tree, qkv.view(), attended.view_mut());
        let mut out = Array2::zeros((n, c.hidden_size));
        matmul(
            attended.view(),
            layer.o.view(),
            out.view_mut(),
            self.threads,
        );
        *x += &out;

        let h = self.norm_rows(x, &layer.mlp_norm);
        let ffn = c.intermediate_size;
        let mut gate_up = Array2::zeros((n, 2 * ffn));
        matmul(
            h.view(),
            layer.gate_up.view(),
            gate_up.view_mut(),
            self.threads,
        );
        let act = Array2::from_shape_fn((n, ffn), |(i, j)| {
            silu(gate_up[[i, j]]) * gate_up[[i, ffn + j]]
        });
        matmul(act.view(), layer.down.view(), out.view_mut(), self.threads);
        *x += &out;
    }

    /// Tree attention (`q` is read from the first columns of each row of `q`): node `n` attends to the committed rows of `cache` and to the rows of
    /// its root-to-`n` path, in position order. Heads are split between threads.
    fn attention(
        &self,
        cache: &KvCache,
        tree: &TokenTree,
        q: ArrayView2<'_, f32>,
        mut out: ArrayViewMut2<'_, f32>,
    ) {
        let head = self.config.head_width();
        let heads = self.config.num_attention_heads;
        let work = tree.len() * (self.committed + tree.max_depth() + 1) * heads * head;
        let threads = self.threads.min(heads).min(1 + work / (1 << 16));
        let per_thread = heads.div_ceil(threads);
        let run = |first_head: usize, out: ArrayViewMut2<'_, f32>| {
            self.attend_heads(cache, tree, q, first_head, out);
        };
        std::thread::scope(|scope| {
            let mut parts = out
                .axis_chunks_iter_mut(Axis(1), per_thread * head)
                .enumerate();
            let mine = parts.next();
            for (i, part) in parts {
                scope.spawn(move || run(i * per_thread, part));
            }
            if let Some((_, part)) = mine {
                run(0, part);
            }
        });
    }

    /// Attention of every node for the heads `first_head..` that `out`'s columns cover.
    fn attend_heads(
        &self,
        cache: &KvCache,
        tree: &TokenTree,
        q: ArrayView2<'_, f32>,
        first_head: usize,
        mut out: ArrayViewMut2<'_, f32>,
    ) {
        let head = self.config.head_width();
        let group = self.config.num_attention_heads / self.config.kv_heads();
        let scale = 1.0 / (head as f32).sqrt();
        let committed = self.committed;
        let (mut path, mut rows, mut scores) = (Vec::new(), Vec::new(), Vec::new());
        let mut acc = vec![0.0f32; head];
        for node in 0..tree.len() {
            tree.path_to(node, &mut path);
            rows.clear();
            rows.extend(0..committed);
            rows.extend(path.iter().map(|&a| committed + a));
            for (k, mut out_head) in out
                .row_mut(node)
                .exact_chunks_mut(head)
                .into_iter()
                .enumerate()
            {
                let h = first_head + k;
                let kv = h / group;
                let q = &q.row(node).to_slice().expect("standard layout")[h * head..(h + 1) * head];
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
    }

    /// Checks a forward's arguments against the model.
    fn check_forward(
        &self,
        tree: &TokenTree,
        logits: &ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        tree.check_vocab(self.config.vocab_size)?;
        let expected = (tree.logits_rows(), self.config.vocab_size);
        if logits.dim() != expected {
            return Err(ModelError::msg(format!(
                "logits buffer is {:?}, expected {expected:?}",
                logits.dim()
            )));
        }
        let needed = self.committed + tree.max_depth() + 1;
        if needed > self.config.max_position_embeddings {
            return Err(ModelError::msg(format!(
                "the tree needs {needed} positions, over the model's {}",
                self.config.max_position_embeddings
            )));
        }
        Ok(())
    }
}

impl LogitsModel for Llama {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn committed_len(&self) -> usize {
        self.committed
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        mut logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        self.check_forward(tree, &logits)?;
        self.uncommitted = None;
        let mut cache = std::mem::take(&mut self.cache);
        let mut x = Array2::zeros((tree.len(), self.config.hidden_size));
        for (mut row, &token) in x.rows_mut().into_iter().zip(tree.tokens()) {
            row.assign(&self.weights.embed.row(token as usize));
        }
        for (layer, cache) in self.weights.layers.iter().zip(&mut cache) {
            cache.truncate(self.committed);
            self.block(layer, cache, tree, &mut x);
        }
        self.cache = cache;

        let picked: Vec<NodeId> = tree.logits_nodes().collect();
        let mut hidden = std::mem::take(&mut self.hidden);
        if hidden.dim() != (picked.len(), self.config.hidden_size) {
            hidden = Array2::zeros((picked.len(), self.config.hidden_size));
        }
        let chosen = x.select(Axis(0), &picked);
        hidden.assign(&self.norm_rows(&chosen, &self.weights.norm));
        matmul(
            hidden.view(),
            self.weights.output().view(),
            logits.view_mut(),
            self.threads,
        );
        self.hidden = hidden;
        self.hidden_row = (0..tree.len()).map(|n| tree.logits_row(n)).collect();
        self.uncommitted = Some(tree.clone());
        Ok(())
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        let tree = self
            .uncommitted
            .take()
            .ok_or_else(|| ModelError::msg("commit without a forward since the last commit"))?;
        tree.check_path(path)?;
        for cache in &mut self.cache {
            cache.compact(self.committed, path);
        }
        self.committed += path.len();
        Ok(())
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        if len > self.committed {
            return Err(ModelError::msg(format!(
                "cannot truncate to {len} tokens: only {} are committed",
                self.committed
            )));
        }
        self.committed = len;
        self.uncommitted = None;
        for cache in &mut self.cache {
            cache.truncate(len);
        }
        Ok(())
    }

    fn max_context(&self) -> Option<usize> {
        Some(self.config.max_position_embeddings)
    }

    fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
        Some(self)
    }
}

impl HiddenStates for Llama {
    fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    fn hidden_state(
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
        if out.len() != self.config.hidden_size {
            return Err(ModelError::msg(format!(
                "hidden state buffer has {} entries, expected {}",
                out.len(),
                self.config.hidden_size
            )));
        }
        out.assign(&self.hidden.row(row));
        Ok(())
    }
}
