//! A Hugging Face LLaMA checkpoint (`config.json`, `model.safetensors`, `tokenizer.json`) as a
//! GGUF file for llama.cpp's `llama` architecture.
//!
//! What the conversion does, and why:
//! * **Tensor names and layout.** HF `model.layers.{i}.self_attn.q_proj.weight` becomes
//!   `blk.{i}.attn_q.weight`, and so on (see [`TENSORS`]). A `[out, in]` row-major HF matrix
//!   is a GGUF tensor with `ne = [in, out]`: the same bytes.
//! * **Tied embeddings.** Without `lm_head.weight` no `output.weight` is written, and
//!   llama.cpp uses `token_embd.weight` as the output projection.
//! * **RoPE layout.** HF LLaMA rotates the two halves of each head (`rotate_half`:
//!   dimension `j` pairs with `j + d/2`); llama.cpp's `llama` architecture rotates adjacent
//!   pairs (`2i` with `2i + 1`). Permuting the rows of `W_q` and `W_k` within each head, new
//!   row `2i + h` = old row `h d/2 + i`, makes the two compute the same attention scores
//!   (the permutation of `convert_hf_to_gguf.py`; `W_k` uses the key-value head count).
//! * **Tokenizer.** The byte-level BPE of `tokenizer.json` as `tokenizer.ggml.model = gpt2`
//!   with the `gpt-2` pre-tokenizer (the regex of HF's `ByteLevel` pre-tokenizer), the
//!   vocabulary in id order, merges as `"left right"` strings, added special tokens as
//!   control tokens, `<|endoftext|>`-style BOS/EOS ids from the configuration, and no
//!   automatic BOS or EOS.
//! * **Precision.** Matrices are written in f32 (exact: the f16 or bf16 checkpoint values
//!   widened) or f16; norm weights are always f32, as llama.cpp expects.

use std::path::{Path, PathBuf};

use llama_cpu::LlamaConfig;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde_json::Value;

use crate::gguf::{GgufWriter, TensorType};

/// The precision of the matrices in the GGUF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WeightType {
    /// 32-bit floats: every checkpoint value exactly (for f16, bf16 and f32 checkpoints).
    F32,
    /// 16-bit floats (half the size; llama.cpp then rounds activations to f16 in matmuls).
    F16,
}

impl WeightType {
    /// The name used in file names and options (`f32`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        }
    }

    fn tensor_type(self) -> TensorType {
        match self {
            Self::F32 => TensorType::F32,
            Self::F16 => TensorType::F16,
        }
    }

    /// `general.file_type` (`llama_ftype`): all F32 = 0, mostly F16 = 1.
    fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
        }
    }
}

impl std::str::FromStr for WeightType {
    type Err = ConvertError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            other => Err(ConvertError::Unsupported(format!(
                "weight type `{other}` (expected f32 or f16)"
            ))),
        }
    }
}

/// Why a checkpoint could not be converted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A bad or unsupported `config.json`.
    #[error(transparent)]
    Config(llama_cpu::LoadError),
    /// A malformed or truncated safetensors file.
    #[error("bad safetensors data: {0}")]
    Safetensors(#[source] SafeTensorError),
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("tensor `{0}` is missing from the checkpoint")]
    MissingTensor(String),
    /// A tensor whose shape disagrees with the configuration.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    Shape {
        /// The tensor.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        actual: Vec<usize>,
    },
    /// A malformed `tokenizer.json`.
    #[error("bad tokenizer: {0}")]
    Tokenizer(String),
    /// Something the converter does not handle (a tensor dtype, a tokenizer model, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// HF tensor name (per layer after `model.layers.{i}.`) and GGUF name (after `blk.{i}.`),
/// with the row count the configuration gives (`q`, `kv`, `hidden` or `ffn`) and the column
/// count.
const TENSORS: [(&str, &str, Dim, Dim); 9] = [
    (
        "input_layernorm.weight",
        "attn_norm.weight",
        Dim::Vector,
        Dim::Hidden,
    ),
    (
        "self_attn.q_proj.weight",
        "attn_q.weight",
        Dim::Q,
        Dim::Hidden,
    ),
    (
        "self_attn.k_proj.weight",
        "attn_k.weight",
        Dim::Kv,
        Dim::Hidden,
    ),
    (
        "self_attn.v_proj.weight",
        "attn_v.weight",
        Dim::Kv,
        Dim::Hidden,
    ),
    (
        "self_attn.o_proj.weight",
        "attn_output.weight",
        Dim::Hidden,
        Dim::Q,
    ),
    (
        "post_attention_layernorm.weight",
        "ffn_norm.weight",
        Dim::Vector,
        Dim::Hidden,
    ),
    (
        "mlp.gate_proj.weight",
        "ffn_gate.weight",
        Dim::Ffn,
        Dim::Hidden,
    ),
    ("mlp.up_proj.weight", "ffn_up.weight", Dim::Ffn, Dim::Hidden),
    (
        "mlp.down_proj.weight",
        "ffn_down.weight",
        Dim::Hidden,
        Dim::Ffn,
    ),
];

#[derive(Clone, Copy, Debug)]
enum Dim {
    Vector,
    Hidden,
    Q,
    Kv,
    Ffn,
    Vocab,
}

impl Dim {
    fn size(self, c: &LlamaConfig) -> Option<usize> {
        match self {
            Self::Vector => None,
            Self::Hidden => Some(c.hidden_size),
            Self::Q => Some(c.num_attention_heads * c.head_width()),
            Self::Kv => Some(c.kv_heads() * c.head_width()),
            Self::Ffn => Some(c.intermediate_size),
            Self::Vocab => Some(c.vocab_size),
        }
    }
}

/// Converts the checkpoint in `dir` (`config.json`, `model.safetensors`, `tokenizer.json`)
/// and writes the GGUF file to `out`.
pub fn convert_dir(
    dir: impl AsRef<Path>,
    out: impl AsRef<Path>,
    weights: WeightType,
) -> Result<(), ConvertError> {
    let dir = dir.as_ref();
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| ConvertError::Io { path, source })
    };
    let text = |name: &str| {
        String::from_utf8(read(name)?)
            .map_err(|e| ConvertError::Unsupported(format!("{name} is not UTF-8: {e}")))
    };
    let bytes = to_gguf(
        &text("config.json")?,
        &read("model.safetensors")?,
        &text("tokenizer.json")?,
        weights,
    )?;
    let out = out.as_ref();
    std::fs::write(out, bytes).map_err(|source| ConvertError::Io {
        path: out.to_path_buf(),
        source,
    })
}

/// The bytes of a GGUF file holding the model of `config_json` (the text of a HF LLaMA
/// `config.json`) with the weights of `checkpoint` (a safetensors file) and the tokenizer of
/// `tokenizer_json`.
pub fn to_gguf(
    config_json: &str,
    checkpoint: &[u8],
    tokenizer_json: &str,
    weights: WeightType,
) -> Result<Vec<u8>, ConvertError> {
    let config = &LlamaConfig::from_json(config_json).map_err(ConvertError::Config)?;
    let special = SpecialTokens::from_config(config_json)?;
    let file = SafeTensors::deserialize(checkpoint).map_err(ConvertError::Safetensors)?;
    let to_u32 = |what: &str, v: usize| {
        u32::try_from(v).map_err(|_| ConvertError::Unsupported(format!("{what} {v} over u32")))
    };
    let mut w = GgufWriter::default();
    w.string("general.architecture", "llama");
    w.string("general.name", "converted by decoding-llama-cpp");
    w.u32("general.file_type", weights.file_type());
    let head = config.head_width();
    for (key, value) in [
        ("context_length", config.max_position_embeddings),
        ("embedding_length", config.hidden_size),
        ("feed_forward_length", config.intermediate_size),
        ("block_count", config.num_hidden_layers),
        ("attention.head_count", config.num_attention_heads),
        ("attention.head_count_kv", config.kv_heads()),
        ("attention.key_length", head),
        ("attention.value_length", head),
        ("rope.dimension_count", head),
        ("vocab_size", config.vocab_size),
    ] {
        w.u32(&format!("llama.{key}"), to_u32(key, value)?);
    }
    w.f32("llama.rope.freq_base", config.rope_theta as f32);
    w.f32(
        "llama.attention.layer_norm_rms_epsilon",
        config.rms_norm_eps as f32,
    );
    write_tokenizer(&mut w, config, special, tokenizer_json)?;

    let matrix_type = weights.tensor_type();
    let tensor =
        |w: &mut GgufWriter, hf: &str, gguf: &str, rows: Dim, cols: Dim, permute: Option<usize>| {
            let (rows, cols) = (rows.size(config), cols.size(config).unwrap_or(0));
            let mut values = read_f32(&file, hf, rows, cols)?;
            if let (Some(heads), Some(rows)) = (permute, rows) {
                values = permute_rope_rows(&values, heads, rows / heads, cols);
            }
            // Vectors (norm weights) stay f32.
            let kind = if rows.is_some() {
                matrix_type
            } else {
                TensorType::F32
            };
            w.tensor(gguf, rows, cols, kind, &values);
            Ok::<(), ConvertError>(())
        };
    tensor(
        &mut w,
        "model.embed_tokens.weight",
        "token_embd.weight",
        Dim::Vocab,
        Dim::Hidden,
        None,
    )?;
    for layer in 0..config.num_hidden_layers {
        for (hf, gguf, rows, cols) in TENSORS {
            let permute = match gguf {
                "attn_q.weight" => Some(config.num_attention_heads),
                "attn_k.weight" => Some(config.kv_heads()),
                _ => None,
            };
            let hf = format!("model.layers.{layer}.{hf}");
            let gguf = format!("blk.{layer}.{gguf}");
            tensor(&mut w, &hf, &gguf, rows, cols, permute)?;
        }
    }
    tensor(
        &mut w,
        "model.norm.weight",
        "output_norm.weight",
        Dim::Vector,
        Dim::Hidden,
        None,
    )?;
    match tensor(
        &mut w,
        "lm_head.weight",
        "output.weight",
        Dim::Vocab,
        Dim::Hidden,
        None,
    ) {
        Err(ConvertError::MissingTensor(_)) if config.tie_word_embeddings => {}
        other => other?,
    }
    Ok(w.finish())
}

/// Reads tensor `name` as f32 values, checking it is `rows x cols` (a vector of `cols` when
/// `rows` is `None`).
fn read_f32(
    file: &SafeTensors<'_>,
    name: &str,
    rows: Option<usize>,
    cols: usize,
) -> Result<Vec<f32>, ConvertError> {
    let view = file.tensor(name).map_err(|e| match e {
        SafeTensorError::TensorNotFound(_) => ConvertError::MissingTensor(name.to_string()),
        e => ConvertError::Safetensors(e),
    })?;
    let expected: Vec<usize> = rows.into_iter().chain([cols]).collect();
    if view.shape() != expected {
        return Err(ConvertError::Shape {
            name: name.to_string(),
            expected,
            actual: view.shape().to_vec(),
        });
    }
    let bytes = view.data();
    let width = match view.dtype() {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        other => {
            return Err(ConvertError::Unsupported(format!(
                "tensor `{name}` has dtype {other:?} (only f32, f16 and bf16)"
            )));
        }
    };
    let dtype = view.dtype();
    Ok(bytes
        .chunks_exact(width)
        .map(|b| match dtype {
            Dtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            Dtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            _ => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        })
        .collect())
}

/// Reorders the rows of a `[heads * width, cols]` projection from the halves layout of HF
/// (`rotate_half`) to the adjacent-pairs layout of llama.cpp: within each head, new row
/// `2 i + h` is old row `h width / 2 + i`.
fn permute_rope_rows(values: &[f32], heads: usize, width: usize, cols: usize) -> Vec<f32> {
    let half = width / 2;
    let mut out = Vec::with_capacity(values.len());
    for head in 0..heads {
        for i in 0..half {
            for h in 0..2 {
                let row = head * width + h * half + i;
                out.extend_from_slice(&values[row * cols..(row + 1) * cols]);
            }
        }
    }
    out
}

/// The BOS and EOS ids of `config.json` (`bos_token_id`, `eos_token_id`; the first of a list).
#[derive(Clone, Copy, Debug, Default)]
struct SpecialTokens {
    bos: Option<u32>,
    eos: Option<u32>,
}

impl SpecialTokens {
    fn from_config(config_json: &str) -> Result<Self, ConvertError> {
        let root: Value = serde_json::from_str(config_json)
            .map_err(|e| ConvertError::Config(llama_cpu::LoadError::Config(e.to_string())))?;
        let id = |key: &str| {
            let value = &root[key];
            let first = value.as_array().and_then(|a| a.first()).unwrap_or(value);
            first.as_u64().and_then(|id| u32::try_from(id).ok())
        };
        Ok(Self {
            bos: id("bos_token_id"),
            eos: id("eos_token_id"),
        })
    }
}

/// GGUF token types (`llama_token_type`).
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;
const TOKEN_UNUSED: i32 = 5;

/// Writes the `tokenizer.ggml.*` metadata of a byte-level BPE `tokenizer.json`.
fn write_tokenizer(
    w: &mut GgufWriter,
    config: &LlamaConfig,
    special: SpecialTokens,
    json: &str,
) -> Result<(), ConvertError> {
    let bad = |msg: &str| ConvertError::Tokenizer(msg.to_string());
    let root: Value =
        serde_json::from_str(json).map_err(|e| ConvertError::Tokenizer(e.to_string()))?;
    let model = &root["model"];
    if model["type"] != "BPE" {
        return Err(ConvertError::Unsupported(format!(
            "tokenizer model {} (only byte-level BPE)",
            model["type"]
        )));
    }
    let pre = &root["pre_tokenizer"];
    if pre["type"] != "ByteLevel" || pre["add_prefix_space"] == true || pre["use_regex"] == false {
        return Err(ConvertError::Unsupported(format!(
            "pre-tokenizer {pre} (only ByteLevel with the GPT-2 regex and no prefix space)"
        )));
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| bad("model.vocab is not a map"))?;
    let mut tokens: Vec<Option<String>> = vec![None; config.vocab_size];
    let mut place = |token: &str, id: &Value| -> Result<(), ConvertError> {
        let id = id
            .as_u64()
            .ok_or_else(|| bad("a token id is not an integer"))? as usize;
        let slot = tokens.get_mut(id).ok_or_else(|| {
            ConvertError::Tokenizer(format!(
                "token id {id} is outside the model's vocabulary of {}",
                config.vocab_size
            ))
        })?;
        *slot = Some(token.to_string());
        Ok(())
    };
    for (token, id) in vocab {
        place(token, id)?;
    }
    let mut types = vec![TOKEN_NORMAL; config.vocab_size];
    for added in root["added_tokens"].as_array().into_iter().flatten() {
        let content = added["content"]
            .as_str()
            .ok_or_else(|| bad("an added token has no content"))?;
        place(content, &added["id"])?;
        let id = added["id"].as_u64().unwrap_or_default() as usize;
        types[id] = if added["special"] == true {
            TOKEN_CONTROL
        } else {
            TOKEN_USER_DEFINED
        };
    }
    // Ids the tokenizer never produces (a vocabulary padded for the matrices).
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| {
            t.unwrap_or_else(|| {
                types[id] = TOKEN_UNUSED;
                format!("[PAD{id}]")
            })
        })
        .collect();
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| bad("model.merges is not a list"))?;
    let merges: Vec<String> = merges
        .iter()
        .map(|m| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Ok(format!("{a} {b}")),
                _ => Err(bad("a merge is not a pair of strings")),
            },
            _ => Err(bad("a merge is neither a string nor a pair")),
        })
        .collect::<Result<_, _>>()?;
    w.string("tokenizer.ggml.model", "gpt2");
    w.string("tokenizer.ggml.pre", "gpt-2");
    w.strings("tokenizer.ggml.tokens", tokens.iter().map(String::as_str));
    w.i32s("tokenizer.ggml.token_type", &types);
    w.strings("tokenizer.ggml.merges", merges.iter().map(String::as_str));
    for (key, id) in [("bos", special.bos), ("eos", special.eos)] {
        if let Some(id) = id {
            if id as usize >= config.vocab_size {
                return Err(ConvertError::Tokenizer(format!(
                    "{key}_token_id {id} is outside the vocabulary"
                )));
            }
            w.u32(&format!("tokenizer.ggml.{key}_token_id"), id);
        }
    }
    w.bool("tokenizer.ggml.add_bos_token", false);
    w.bool("tokenizer.ggml.add_eos_token", false);
    Ok(())
}
