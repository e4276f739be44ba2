//! Reading a safetensors checkpoint (HF `LlamaForCausalLM` tensor names) into candle
//! modules, in f32 on the chosen device.
//!
//! candle parses the file (`candle_core::safetensors::load_buffer`); this module checks
//! every tensor's presence, shape and dtype against the configuration, so that a broken
//! checkpoint is reported by name instead of failing somewhere inside the first forward.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm};
use llama_cpu::LlamaConfig;
use llama_cpu::LoadError as Checkpoint;

use crate::error::LoadError;

/// One transformer block, as candle modules (weights `[out, in]`, as HF stores them).
#[derive(Clone, Debug)]
pub(crate) struct Layer {
    pub(crate) attn_norm: RmsNorm,
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) o: Linear,
    pub(crate) mlp_norm: RmsNorm,
    pub(crate) gate: Linear,
    pub(crate) up: Linear,
    pub(crate) down: Linear,
}

/// Every weight of the model, in f32.
#[derive(Clone, Debug)]
pub(crate) struct Weights {
    pub(crate) embed: Embedding,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: RmsNorm,
    /// `lm_head`, or the embedding matrix when the embeddings are tied.
    pub(crate) lm_head: Linear,
}

impl Weights {
    /// Reads the checkpoint `bytes` (a whole safetensors file) for `config` (validated).
    pub(crate) fn from_safetensors(
        config: &LlamaConfig,
        bytes: &[u8],
        device: &Device,
    ) -> Result<Self, LoadError> {
        // Parse on the CPU: the checks below read only shapes and dtypes, and each tensor
        // then moves to the device once, already in f32.
        let mut tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(LoadError::Safetensors)?;
        let (hidden, ffn, vocab) = (
            config.hidden_size,
            config.intermediate_size,
            config.vocab_size,
        );
        let q_dim = config.num_attention_heads * config.head_width();
        let kv_dim = config.kv_heads() * config.head_width();
        let eps = config.rms_norm_eps;
        let mut take = |name: &str, shape: &[usize]| take(&mut tensors, name, shape, device);
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let name = |suffix: &str| format!("model.layers.{i}.{suffix}");
            let mut linear = |suffix: &str, rows: usize, cols: usize| {
                take(&name(suffix), &[rows, cols]).map(|w| Linear::new(w, None))
            };
            let q = linear("self_attn.q_proj.weight", q_dim, hidden)?;
            let k = linear("self_attn.k_proj.weight", kv_dim, hidden)?;
            let v = linear("self_attn.v_proj.weight", kv_dim, hidden)?;
            let o = linear("self_attn.o_proj.weight", hidden, q_dim)?;
            let gate = linear("mlp.gate_proj.weight", ffn, hidden)?;
            let up = linear("mlp.up_proj.weight", ffn, hidden)?;
            let down = linear("mlp.down_proj.weight", hidden, ffn)?;
            let attn_norm = RmsNorm::new(take(&name("input_layernorm.weight"), &[hidden])?, eps);
            let mlp_norm = RmsNorm::new(
                take(&name("post_attention_layernorm.weight"), &[hidden])?,
                eps,
            );
            layers.push(Layer {
                attn_norm,
                q,
                k,
                v,
                o,
                mlp_norm,
                gate,
                up,
                down,
            });
        }
        let embed = take("model.embed_tokens.weight", &[vocab, hidden])?;
        let norm = RmsNorm::new(take("model.norm.weight", &[hidden])?, eps);
        // A checkpoint's own lm_head wins; a tied model may omit it.
        let lm_head = match take("lm_head.weight", &[vocab, hidden]) {
            Ok(weight) => weight,
            Err(LoadError::Checkpoint(Checkpoint::MissingTensor(_)))
                if config.tie_word_embeddings =>
            {
                embed.clone()
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            embed: Embedding::new(embed, hidden),
            layers,
            norm,
            lm_head: Linear::new(lm_head, None),
        })
    }
}

/// Removes tensor `name` from `tensors`, checks its shape and dtype, and returns it in f32
/// on `device`.
fn take(
    tensors: &mut HashMap<String, Tensor>,
    name: &str,
    shape: &[usize],
    device: &Device,
) -> Result<Tensor, LoadError> {
    let tensor = tensors
        .remove(name)
        .ok_or_else(|| Checkpoint::MissingTensor(name.to_string()))?;
    if tensor.dims() != shape {
        return Err(Checkpoint::Shape {
            name: name.to_string(),
            expected: shape.to_vec(),
            actual: tensor.dims().to_vec(),
        }
        .into());
    }
    if !matches!(tensor.dtype(), DType::F32 | DType::F16 | DType::BF16) {
        return Err(Checkpoint::Dtype {
            name: name.to_string(),
            dtype: format!("{:?}", tensor.dtype()),
        }
        .into());
    }
    Ok(tensor.to_dtype(DType::F32)?.to_device(device)?)
}
