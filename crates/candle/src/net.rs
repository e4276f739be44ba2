//! The forward pass: the LLaMA blocks over the flat rows of a [`Plan`], with tree attention
//! against each sequence's slot of the [`KvCache`].

use candle_core::{Device, Result, Tensor};
use candle_nn::Module;
use llama_cpu::LlamaConfig;

use crate::cache::KvCache;
use crate::plan::Plan;
use crate::rope::{self, RopeTables};
use crate::weights::{Layer, Weights};

/// The weights, the RoPE tables and the shape of the model.
#[derive(Debug)]
pub(crate) struct Net {
    pub(crate) config: LlamaConfig,
    pub(crate) weights: Weights,
    pub(crate) rope: RopeTables,
    pub(crate) device: Device,
}

/// What a forward pass returns: the final hidden states (after the last norm) and the
/// logits of the rows that asked for them, `[R, hidden]` and `[R, vocab]`; `None` when no
/// row did.
pub(crate) type Outputs = Option<(Tensor, Tensor)>;

impl Net {
    /// A new, empty cache for this model.
    pub(crate) fn new_cache(&self) -> KvCache {
        KvCache::new(
            self.config.num_hidden_layers,
            self.config.kv_heads(),
            self.config.head_width(),
            &self.device,
        )
    }

    /// Evaluates the trees laid out by `plan`, writing their keys and values into `cache`
    /// (which must have room for them: [`KvCache::reserve`]).
    pub(crate) fn forward(&self, cache: &KvCache, plan: &Plan) -> Result<Outputs> {
        let (cos, sin) = self.rope.gather(&plan.positions)?;
        let mut x = self.weights.embed.forward(&plan.tokens)?;
        for (index, layer) in self.weights.layers.iter().enumerate() {
            let h = layer.attn_norm.forward(&x)?;
            let attended = self.attention(layer, index, &h, &cos, &sin, cache, plan)?;
            x = (x + layer.o.forward(&attended)?)?;
            let h = layer.mlp_norm.forward(&x)?;
            let gated =
                (candle_nn::ops::silu(&layer.gate.forward(&h)?)? * layer.up.forward(&h)?)?;
            x = (x + layer.down.forward(&gated)?)?;
        }
        if plan.logits_count == 0 {
            return Ok(None);
        }
        // Logits only for the rows that want them: a prefill needs one row, not thousands.
        let hidden = self
            .weights
            .norm
            .forward(&x.index_select(&plan.logits_rows, 0)?)?;
        let logits = self.weights.lm_head.forward(&hidden)?;
        Ok(Some((hidden, logits)))
    }

    /// Grouped-query tree attention of one layer over the flat rows `h` (`[T, hidden]`);
    /// returns `[T, heads * head]`, the input of `o_proj`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: &Layer,
        index: usize,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: &KvCache,
        plan: &Plan,
    ) -> Result<Tensor> {
        let config = &self.config;
        let (heads, kv_heads, head) = (
            config.num_attention_heads,
            config.kv_heads(),
            config.head_width(),
        );
        let group = heads / kv_heads;
        let (b, n, l) = (plan.batch(), plan.nodes, plan.keys);
        // 1/sqrt(head) on the queries (fewer elements than the scores).
        let q = (layer.q.forward(h)? * (1.0 / (head as f64).sqrt()))?;
        let q = rope::rotate(&q, heads, cos, sin)?; // [1, heads, T, head]
        let k = rope::rotate(&layer.k.forward(h)?, kv_heads, cos, sin)?;
        let total = h.dim(0)?;
        let v = layer
            .v
            .forward(h)?
            .reshape((1, total, kv_heads, head))?
            .transpose(1, 2)?;
        // The new rows go behind each sequence's committed ones, in node order.
        for item in &plan.items {
            let rows = |t: &Tensor| t.narrow(2, item.offset, item.nodes)?.contiguous();
            cache.write(index, item.slot, item.committed, &rows(&k)?, &rows(&v)?)?;
        }
        let slots: Vec<usize> = plan.items.iter().map(|item| item.slot).collect();
        let (keys, values) = cache.read(index, &slots, plan.slots_are_leading(), l)?;
        // Queries as [b, kv_heads, group * N, head]: query head `j * group + g` reads
        // key/value head `j`, so each key/value head serves its group in one product,
        // without repeating the keys.
        let q = match &plan.padding {
            None => q.reshape((1, kv_heads, group * n, head))?,
            Some((pad, _)) => q
                .index_select(pad, 2)?
                .reshape((heads, b, n, head))?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((b, kv_heads, group * n, head))?,
        };
        let scores = q.matmul(&keys.t()?)?.reshape((b, kv_heads, group, n, l))?;
        let mask = plan.mask.reshape((b, 1, 1, n, l))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?.reshape((
            b,
            kv_heads,
            group * n,
            l,
        ))?;
        let out = probs
            .matmul(&values)?
            .reshape((b, heads, n, head))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * n, heads * head))?;
        match &plan.padding {
            None => Ok(out),
            Some((_, unpad)) => out.index_select(unpad, 0),
        }
    }
}
