//! A tiny random-weight checkpoint built in memory, and a from-scratch reference forward
//! that evaluates a whole context with plain loops in f64, sharing no code with the crate;
//! a strategy drafting random trees.

use std::collections::BTreeMap;

use decoding_core::{
    DecodeError, DraftContext, SourceSet, StepFeedback, Strategy, Token, TokenTree,
};
use llama_cpu::{Llama, LlamaConfig};
use rand::{RngExt, SeedableRng};
use safetensors::Dtype;

pub(crate) type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// A tiny GQA configuration whose widths are not multiples of the kernels' 8 lanes
/// (hidden 24, head 6, FFN 20), so the tail paths run too.
pub(crate) fn tiny_config() -> LlamaConfig {
    LlamaConfig::new(37, 24, 20, 2, 4, 2, 64).with_rope_theta(500.0)
}

/// Random weights for `config`, named as in HF checkpoints.
pub(crate) fn random_tensors(config: &LlamaConfig, seed: u64) -> Tensors {
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
    let head = config.head_width();
    let (d, f, v) = (
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
    );
    let (q, kv) = (config.num_attention_heads * head, config.kv_heads() * head);
    let mut tensors = Tensors::new();
    let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| offset + scale * rng.random_range(-1.0f32..1.0))
            .collect();
        tensors.insert(name, (shape, data));
    };
    add("model.embed_tokens.weight".into(), vec![v, d], 1.0, 0.0);
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}.");
        add(format!("{p}input_layernorm.weight"), vec![d], 0.2, 1.0);
        add(
            format!("{p}post_attention_layernorm.weight"),
            vec![d],
            0.2,
            1.0,
        );
        let s = 1.5 / (d as f32).sqrt();
        add(
            format!("{p}self_attn.q_proj.weight"),
            vec![q, d],
            2.0 * s,
            0.0,
        );
        add(
            format!("{p}self_attn.k_proj.weight"),
            vec![kv, d],
            2.0 * s,
            0.0,
        );
        add(format!("{p}self_attn.v_proj.weight"), vec![kv, d], s, 0.0);
        add(format!("{p}self_attn.o_proj.weight"), vec![d, q], s, 0.0);
        add(format!("{p}mlp.gate_proj.weight"), vec![f, d], s, 0.0);
        add(format!("{p}mlp.up_proj.weight"), vec![f, d], s, 0.0);
        add(format!("{p}mlp.down_proj.weight"), vec![d, f], s, 0.0);
    }
    add("model.norm.weight".into(), vec![d], 0.2, 1.0);
    if !config.tie_word_embeddings {
        add(
            "lm_head.weight".into(),
            vec![v, d],
            2.0 / (d as f32).sqrt(),
            0.0,
        );
    }
    tensors
}

/// Serialises `tensors` as a safetensors file in `dtype` (F32, F16 or BF16).
pub(crate) fn to_safetensors(tensors: &Tensors, dtype: Dtype) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, data))| {
            let raw = match dtype {
                Dtype::F32 => data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                Dtype::F16 => data
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
                Dtype::BF16 => data
                    .iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect(),
                _ => unimplemented!("test helper"),
            };
            (name.clone(), shape.clone(), raw)
        })
        .collect();
    let views = bytes.iter().map(|(name, shape, raw)| {
        let view = safetensors::tensor::TensorView::new(dtype, shape.clone(), raw).unwrap();
        (name.clone(), view)
    });
    safetensors::serialize(views, None).unwrap()
}

/// The model for `tensors`, loaded through the f32 safetensors path.
pub(crate) fn tiny_model(seed: u64) -> (Llama, Tensors) {
    let config = tiny_config();
    let tensors = random_tensors(&config, seed);
    let model = Llama::from_safetensors(config, &to_safetensors(&tensors, Dtype::F32)).unwrap();
    (model, tensors)
}

/// The textbook forward over a whole context, in f64: returns the final (post-norm) hidden
/// state and the logits of the last position.
pub(crate) fn reference_forward(
    config: &LlamaConfig,
    t: &Tensors,
    context: &[u32],
) -> (Vec<f64>, Vec<f64>) {
    let w = |name: &str| -> &Vec<f32> { &t[name].1 };
    let (d, f, n) = (config.hidden_size, config.intermediate_size, context.len());
    let head = config.head_width();
    let (heads, kv_heads) = (config.num_attention_heads, config.kv_heads());
    let eps = config.rms_norm_eps;
    // y = W x for W stored [out, in].
    let project = |name: &str, x: &[f64], out: usize| -> Vec<f64> {
        let m = w(name);
        let cols = x.len();
        (0..out)
            .map(|o| (0..cols).map(|i| f64::from(m[o * cols + i]) * x[i]).sum())
            .collect()
    };
    let norm = |x: &[f64], name: &str| -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let r = 1.0 / (ms + eps).sqrt();
        x.iter()
            .zip(w(name))
            .map(|(v, &g)| v * r * f64::from(g))
            .collect()
    };
    let rope = |x: &mut [f64], pos: usize| {
        let half = head / 2;
        for i in 0..half {
            let freq = config.rope_theta.powf(-((2 * i) as f64) / head as f64);
            let (s, c) = (pos as f64 * freq).sin_cos();
            let (a, b) = (x[i], x[i + half]);
            x[i] = a * c - b * s;
            x[i + half] = b * c + a * s;
        }
    };
    let embed = w("model.embed_tokens.weight");
    let mut xs: Vec<Vec<f64>> = context
        .iter()
        .map(|&tok| {
            embed[tok as usize * d..(tok as usize + 1) * d]
                .iter()
                .map(|&v| f64::from(v))
                .collect()
        })
        .collect();
    for layer in 0..config.num_hidden_layers {
        let p = format!("model.layers.{layer}.");
        let h: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| norm(x, &format!("{p}input_layernorm.weight")))
            .collect();
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, h) in h.iter().enumerate() {
            let mut q = project(&format!("{p}self_attn.q_proj.weight"), h, heads * head);
            let mut k = project(&format!("{p}self_attn.k_proj.weight"), h, kv_heads * head);
            for chunk in q.chunks_mut(head).chain(k.chunks_mut(head)) {
                rope(chunk, pos);
            }
            qs.push(q);
            ks.push(k);
            vs.push(project(
                &format!("{p}self_attn.v_proj.weight"),
                h,
                kv_heads * head,
            ));
        }
        for i in 0..n {
            let mut attended = vec![0.0; heads * head];
            for hd in 0..heads {
                let kvh = hd / (heads / kv_heads);
                let q = &qs[i][hd * head..(hd + 1) * head];
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        let k = &ks[j][kvh * head..(kvh + 1) * head];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (head as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for (j, e) in e.iter().enumerate() {
                    for c in 0..head {
                        attended[hd * head + c] += e / total * vs[j][kvh * head + c];
                    }
                }
            }
            let o = project(&format!("{p}self_attn.o_proj.weight"), &attended, d);
            for (x, o) in xs[i].iter_mut().zip(o) {
                *x += o;
            }
            let h = norm(&xs[i], &format!("{p}post_attention_layernorm.weight"));
            let g = project(&format!("{p}mlp.gate_proj.weight"), &h, f);
            let u = project(&format!("{p}mlp.up_proj.weight"), &h, f);
            let act: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let down = project(&format!("{p}mlp.down_proj.weight"), &act, d);
            for (x, y) in xs[i].iter_mut().zip(down) {
                *x += y;
            }
        }
    }
    let hidden = norm(&xs[n - 1], "model.norm.weight");
    let head_name = if t.contains_key("lm_head.weight") {
        "lm_head.weight"
    } else {
        "model.embed_tokens.weight"
    };
    let logits = project(head_name, &hidden, config.vocab_size);
    (hidden, logits)
}

/// Drafts a random tree every step: a chain that follows the known greedy output `truth`
/// for a random number of tokens (sometimes with one wrong token), plus random branches.
pub(crate) struct RandomTrees {
    pub(crate) rng: rand::rngs::Xoshiro256PlusPlus,
    pub(crate) vocab: u32,
    pub(crate) truth: Vec<Token>,
}

impl Strategy for RandomTrees {
    fn name(&self) -> &str {
        "random-trees"
    }

    fn begin(&mut self, _prompt: &[Token], _vocab_size: usize) -> Result<(), DecodeError> {
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        let size = self.rng.random_range(1..=ctx.max_nodes.min(12));
        let future = self.truth.get(ctx.generated().len()..).unwrap_or_default();
        let depth = self
            .rng
            .random_range(0..=future.len().min(ctx.max_depth).min(size - 1));
        let wrong = self.rng.random_range(0..2 * depth.max(1));
        let mut node = 0;
        for (i, &token) in future[..depth].iter().enumerate() {
            let token = if i == wrong {
                (token + 1) % self.vocab
            } else {
                token
            };
            node = tree.push(node, token)?;
        }
        while tree.len() < size {
            let parent = self.rng.random_range(0..tree.len());
            if tree.depth(parent) + 1 >= ctx.max_depth {
                break;
            }
            let token = self.rng.random_range(0..self.vocab);
            tree.push_with(parent, token, true, SourceSet::EMPTY)?;
        }
        Ok(())
    }

    fn observe(&mut self, _feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        Ok(())
    }
}
