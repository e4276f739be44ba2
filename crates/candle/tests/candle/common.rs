//! A tiny random-weight checkpoint serialised through candle's own safetensors support, the
//! from-scratch reference (the same model over a whole context from an empty cache), and
//! the tolerance the tree forward is held to.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use decoding_candle::{CandleLlama, LlamaConfig};
use decoding_core::{LogitsModel, Token, TokenTree};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};

/// Logits of the tree forward may differ from the from-scratch ones by this much, relative
/// to the largest logit magnitude of the row (at least 1): the two runs reduce in
/// different orders (other matmul shapes, masked keys), which is f32 rounding. Observed:
/// about 1e-6 on the tiny models, 2e-6 between pycoder-16m on candle and on llama-cpu.
pub(crate) const TOLERANCE: f32 = 2e-5;

/// A tiny GQA configuration (4 query heads, 2 key/value heads of width 6), odd widths so
/// that no kernel sees only full SIMD lanes.
pub(crate) fn tiny_config() -> LlamaConfig {
    LlamaConfig::new(37, 24, 20, 2, 4, 2, 96).with_rope_theta(500.0)
}

/// Random weights for `config`, HF names, as candle tensors (f32).
pub(crate) fn random_weights(config: &LlamaConfig, seed: u64) -> BTreeMap<String, Tensor> {
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
    let head = config.head_width();
    let (d, f, v) = (
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
    );
    let (q, kv) = (config.num_attention_heads * head, config.kv_heads() * head);
    let mut shapes: Vec<(String, Vec<usize>, f32, f32)> =
        vec![("model.embed_tokens.weight".into(), vec![v, d], 1.0, 0.0)];
    let s = 1.5 / (d as f32).sqrt();
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}.");
        shapes.extend([
            (format!("{p}input_layernorm.weight"), vec![d], 0.2, 1.0),
            (
                format!("{p}post_attention_layernorm.weight"),
                vec![d],
                0.2,
                1.0,
            ),
            (
                format!("{p}self_attn.q_proj.weight"),
                vec![q, d],
                2.0 * s,
                0.0,
            ),
            (
                format!("{p}self_attn.k_proj.weight"),
                vec![kv, d],
                2.0 * s,
                0.0,
            ),
            (format!("{p}self_attn.v_proj.weight"), vec![kv, d], s, 0.0),
            (format!("{p}self_attn.o_proj.weight"), vec![d, q], s, 0.0),
            (format!("{p}mlp.gate_proj.weight"), vec![f, d], s, 0.0),
            (format!("{p}mlp.up_proj.weight"), vec![f, d], s, 0.0),
            (format!("{p}mlp.down_proj.weight"), vec![d, f], s, 0.0),
        ]);
    }
    shapes.push(("model.norm.weight".into(), vec![d], 0.2, 1.0));
    if !config.tie_word_embeddings {
        shapes.push((
            "lm_head.weight".into(),
            vec![v, d],
            2.0 / (d as f32).sqrt(),
            0.0,
        ));
    }
    shapes
        .into_iter()
        .map(|(name, shape, scale, offset)| {
            let n = shape.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|_| offset + scale * rng.random_range(-1.0f32..1.0))
                .collect();
            (name, Tensor::from_vec(data, shape, &Device::Cpu).unwrap())
        })
        .collect()
}

/// `weights` as a safetensors file with every float tensor in `dtype` (others as they are).
pub(crate) fn checkpoint(weights: &BTreeMap<String, Tensor>, dtype: DType) -> Vec<u8> {
    let converted: Vec<(String, Tensor)> = weights
        .iter()
        .map(|(name, t)| {
            let t = if t.dtype().is_float() {
                t.to_dtype(dtype).unwrap()
            } else {
                t.clone()
            };
            (name.clone(), t)
        })
        .collect();
    safetensors::serialize(converted.iter().map(|(n, t)| (n.as_str(), t)), None).unwrap()
}

/// The tiny model of `seed`, loaded from an f32 checkpoint.
pub(crate) fn tiny_model(seed: u64) -> CandleLlama {
    let config = tiny_config();
    let bytes = checkpoint(&random_weights(&config, seed), DType::F32);
    CandleLlama::from_safetensors(config, &bytes, &Device::Cpu).unwrap()
}

/// The logits after `context` (its last token's row), from a forward over the whole
/// context as one chain on an empty cache.
pub(crate) fn from_scratch(model: &mut CandleLlama, context: &[Token]) -> Vec<f32> {
    model.reset().unwrap();
    let mut chain = TokenTree::from_chain(context).unwrap();
    for node in 0..context.len() - 1 {
        chain.set_needs_logits(node, false);
    }
    let mut logits = Array2::zeros((1, model.vocab_size()));
    model.forward(&chain, logits.view_mut()).unwrap();
    model.reset().unwrap();
    logits.row(0).to_vec()
}

/// The largest difference between two logits rows, relative to the larger magnitude of the
/// row (at least 1).
pub(crate) fn relative_gap(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().chain(b).fold(1.0f32, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}
