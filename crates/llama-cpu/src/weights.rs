//! Reading a safetensors checkpoint (HF `LlamaForCausalLM` tensor names) into f32 matrices.

use ndarray::Array2;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::config::LlamaConfig;
use crate::error::LoadError;

/// One transformer block. Projections are stored as HF stores them, `[out, in]` row-major, so
/// output `o` of a projection is the dot product of row `o` with the input.
#[derive(Clone, Debug)]
pub(crate) struct Layer {
    /// RMSNorm weight before attention.
    pub(crate) attn_norm: Vec<f32>,
    /// `q_proj`, `k_proj` and `v_proj` stacked: `[q_dim + 2 kv_dim, hidden]`.
    pub(crate) qkv: Array2<f32>,
    /// `o_proj`: `[hidden, q_dim]`.
    pub(crate) o: Array2<f32>,
    /// RMSNorm weight before the feed-forward layer.
    pub(crate) mlp_norm: Vec<f32>,
    /// `gate_proj` and `up_proj` stacked: `[2 ffn, hidden]`.
    pub(crate) gate_up: Array2<f32>,
    /// `down_proj`: `[hidden, ffn]`.
    pub(crate) down: Array2<f32>,
}

/// Every weight of the model, in f32.
#[derive(Clone, Debug)]
pub(crate) struct Weights {
    /// `embed_tokens`: `[vocab, hidden]`.
    pub(crate) embed: Array2<f32>,
    pub(crate) layers: Vec<Layer>,
    /// The final RMSNorm weight.
    pub(crate) norm: Vec<f32>,
    /// `lm_head`: `[vocab, hidden]`; `None` when tied to the embedding.
    pub(crate) lm_head: Option<Array2<f32>>,
}

impl Weights {
    /// The output projection (`lm_head`, or the embedding when tied).
    pub(crate) fn output(&self) -> &Array2<f32> {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Reads the checkpoint `bytes` (a whole safetensors file) for `config` (validated).
    pub(crate) fn from_safetensors(config: &LlamaConfig, bytes: &[u8]) -> Result<Self, LoadError> {
        let file =
            SafeTensors::deserialize(bytes).map_err(|e| LoadError::Safetensors(e.to_string()))?;
        let (hidden, ffn, vocab) = (
            config.hidden_size,
            config.intermediate_size,
            config.vocab_size,
        );
        let q_dim = config.num_attention_heads * config.head_width();
        let kv_dim = config.kv_heads() * config.head_width();
        let read = |name: &str, shape: &[usize]| read_tensor(&file, name, shape);
        let matrix = |names: &[(&str, usize)], cols: usize| -> Result<Array2<f32>, LoadError> {
            let mut data = Vec::new();
            for &(name, rows) in names {
                data.extend(read(name, &[rows, cols])?);
            }
            let rows = names.iter().map(|&(_, rows)| rows).sum();
            Ok(Array2::from_shape_vec((rows, cols), data).expect("rows * cols elements"))
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let name = |suffix: &str| format!("model.layers.{i}.{suffix}");
            layers.push(Layer {
                attn_norm: read(&name("input_layernorm.weight"), &[hidden])?,
                qkv: matrix(
                    &[
                        (&name("self_attn.q_proj.weight"), q_dim),
                        (&name("self_attn.k_proj.weight"), kv_dim),
                        (&name("self_attn.v_proj.weight"), kv_dim),
                    ],
                    hidden,
                )?,
                o: matrix(&[(&name("self_attn.o_proj.weight"), hidden)], q_dim)?,
                mlp_norm: read(&name("post_attention_layernorm.weight"), &[hidden])?,
                gate_up: matrix(
                    &[
                        (&name("mlp.gate_proj.weight"), ffn),
                        (&name("mlp.up_proj.weight"), ffn),
                    ],
                    hidden,
                )?,
                down: matrix(&[(&name("mlp.down_proj.weight"), hidden)], ffn)?,
            });
        }
        let lm_head = match read("lm_head.weight", &[vocab, hidden]) {
            Ok(data) => {
                Some(Array2::from_shape_vec((vocab, hidden), data).expect("vocab x hidden"))
            }
            Err(LoadError::MissingTensor(_)) if config.tie_word_embeddings => None,
            Err(e) => return Err(e),
        };
        Ok(Self {
            embed: matrix(&[("model.embed_tokens.weight", vocab)], hidden)?,
            layers,
            norm: read("model.norm.weight", &[hidden])?,
            lm_head,
        })
    }
}

/// Reads one tensor as f32, checking its shape.
fn read_tensor(file: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>, LoadError> {
    let view = file.tensor(name).map_err(|e| match e {
        SafeTensorError::TensorNotFound(_) => LoadError::MissingTensor(name.to_string()),
        e => LoadError::Safetensors(e.to_string()),
    })?;
    if view.shape() != shape {
        return Err(LoadError::Shape {
            name: name.to_string(),
            expected: shape.to_vec(),
            actual: view.shape().to_vec(),
        });
    }
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        dtype => {
            return Err(LoadError::Dtype {
                name: name.to_string(),
                dtype: format!("{dtype:?}"),
            });
        }
    };
    if values.len() != shape.iter().product::<usize>() {
        return Err(LoadError::Safetensors(format!(
            "tensor `{name}` holds {} values, its shape needs {}",
            values.len(),
            shape.iter().product::<usize>()
        )));
    }
    Ok(values)
}
