//! Fixtures: tiny random LLaMA checkpoints (with a byte-level BPE tokenizer) converted to
//! GGUF, pycoder-16m converted to GGUF, and a from-scratch recomputation of a path.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use decoding_core::{LogitsModel, Token, TokenTree};
use decoding_llama_cpp::{LlamaCpp, LlamaCppModel, LlamaCppOptions, WeightType};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};

/// Logits of the same path computed by two different llama.cpp batches agree to this much
/// (absolute, on logits of magnitude up to ~10): llama.cpp's CPU kernels sum in an order
/// that depends on the batch size (one row uses `ggml_vec_dot`, several use tinyBLAS) and
/// on which KV-cache cells hold the context (softmax and value sums group cells by 8),
/// so the last bits differ; both are f32 computations of the same function.
pub(crate) const TOLERANCE: f32 = 2e-4;

/// The directory of the workspace's assets.
pub(crate) fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets")
}

/// A file under this test binary's temporary directory.
pub(crate) fn temp_file(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("decoding-llama-cpp");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", std::process::id()))
}

/// GPT-2's byte-to-character map of byte-level BPE (printable bytes map to themselves, the
/// others to U+0100 onwards, in byte order).
fn byte_char(byte: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(byte) {
        char::from(byte)
    } else {
        let rank = (0..byte).filter(|&b| !printable(b)).count() as u32;
        char::from_u32(256 + rank).unwrap()
    }
}

/// A byte-level BPE tokenizer of `vocab` tokens: `<|endoftext|>` (id 0, special), the 256
/// bytes, then merges of two spaces, three spaces, ...
pub(crate) fn tiny_tokenizer(vocab: usize) -> String {
    assert!(vocab >= 258);
    let mut tokens = vec!["<|endoftext|>".to_string()];
    tokens.extend((0..=255u8).map(|b| byte_char(b).to_string()));
    let space = byte_char(b' ');
    let mut merges = Vec::new();
    while tokens.len() < vocab {
        let run = tokens.len() - 257 + 2;
        merges.push(format!("{} {space}", space.to_string().repeat(run - 1)));
        tokens.push(space.to_string().repeat(run));
    }
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), id.into()))
        .collect();
    serde_json::json!({
        "added_tokens": [{"id": 0, "content": "<|endoftext|>", "special": true}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
        "model": {"type": "BPE", "vocab": vocab, "merges": merges},
    })
    .to_string()
}

/// A tiny LLaMA checkpoint: `config.json` text and safetensors bytes (f32).
pub(crate) struct Checkpoint {
    pub(crate) config_json: String,
    pub(crate) safetensors: Vec<u8>,
}

/// Random weights for a tiny GQA model (vocabulary 300, hidden 64, 4 heads of 16, 2 KV heads,
/// 2 layers), tied or not.
pub(crate) fn tiny_checkpoint(seed: u64, tied: bool) -> Checkpoint {
    let (vocab, hidden, ffn, layers, heads, kv_heads, head) = (300, 64, 96, 2, 4, 2, 16);
    let config_json = serde_json::json!({
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": ffn,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": tied,
        "hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 0,
    })
    .to_string();
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, offset: f32, scale: f32| {
        let n: usize = shape.iter().product();
        let bytes = (0..n)
            .flat_map(|_| (offset + scale * rng.random_range(-1.0f32..1.0)).to_le_bytes())
            .collect();
        tensors.push((name, shape, bytes));
    };
    let s = 1.5 / (hidden as f32).sqrt();
    add(
        "model.embed_tokens.weight".into(),
        vec![vocab, hidden],
        0.0,
        1.0,
    );
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        for (name, rows, cols, offset, scale) in [
            ("input_layernorm", 0, hidden, 1.0, 0.2),
            ("post_attention_layernorm", 0, hidden, 1.0, 0.2),
            ("self_attn.q_proj", heads * head, hidden, 0.0, 2.0 * s),
            ("self_attn.k_proj", kv_heads * head, hidden, 0.0, 2.0 * s),
            ("self_attn.v_proj", kv_heads * head, hidden, 0.0, s),
            ("self_attn.o_proj", hidden, heads * head, 0.0, s),
            ("mlp.gate_proj", ffn, hidden, 0.0, s),
            ("mlp.up_proj", ffn, hidden, 0.0, s),
            ("mlp.down_proj", hidden, ffn, 0.0, s),
        ] {
            let shape = if rows == 0 {
                vec![cols]
            } else {
                vec![rows, cols]
            };
            add(format!("{p}.{name}.weight"), shape, offset, scale);
        }
    }
    add("model.norm.weight".into(), vec![hidden], 1.0, 0.2);
    if !tied {
        add("lm_head.weight".into(), vec![vocab, hidden], 0.0, 2.0 * s);
    }
    let views = tensors.iter().map(|(name, shape, bytes)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .unwrap();
        (name.clone(), view)
    });
    Checkpoint {
        config_json,
        safetensors: safetensors::serialize(views, None).unwrap(),
    }
}

/// `checkpoint` converted to an f32 GGUF file and loaded by llama.cpp.
pub(crate) fn load_gguf(checkpoint: &Checkpoint, name: &str) -> LlamaCppModel {
    let bytes = decoding_llama_cpp::to_gguf(
        &checkpoint.config_json,
        &checkpoint.safetensors,
        &tiny_tokenizer(300),
        WeightType::F32,
    )
    .unwrap();
    let path = temp_file(&format!("{name}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    LlamaCppModel::load(&path).unwrap()
}

/// The tiny tied model, loaded once for the whole test binary.
pub(crate) fn tiny() -> &'static LlamaCppModel {
    static MODEL: OnceLock<LlamaCppModel> = OnceLock::new();
    MODEL.get_or_init(|| load_gguf(&tiny_checkpoint(7, true), "tiny"))
}

/// pycoder-16m as an f32 GGUF file, converted once; `None` when the assets are absent.
pub(crate) fn pycoder() -> Option<&'static LlamaCppModel> {
    static MODEL: OnceLock<Option<LlamaCppModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = assets().join("pycoder-16m");
            if !dir.join("model.safetensors").exists() {
                return None;
            }
            let path = temp_file("pycoder-16m-f32.gguf");
            decoding_llama_cpp::convert_dir(&dir, &path, WeightType::F32).unwrap();
            Some(LlamaCppModel::load(&path).unwrap())
        })
        .as_ref()
}

/// Runs `tree` and returns its logits rows.
pub(crate) fn forward(model: &mut dyn LogitsModel, tree: &TokenTree) -> Array2<f32> {
    let mut logits = Array2::from_elem((tree.logits_rows(), model.vocab_size()), f32::NAN);
    model.forward(tree, logits.view_mut()).unwrap();
    logits
}

/// The logits after `context`, computed from scratch: `model` reset, the whole context as
/// one chain with logits at its end only.
pub(crate) fn from_scratch(model: &mut LlamaCpp<'_>, context: &[Token]) -> Vec<f32> {
    model.reset().unwrap();
    let mut tree = TokenTree::from_chain(context).unwrap();
    for node in 0..tree.len() - 1 {
        tree.set_needs_logits(node, false);
    }
    let logits = forward(model, &tree);
    model.commit(&[]).unwrap();
    logits.row(0).to_vec()
}

/// A fresh single-sequence context with default options.
pub(crate) fn context(model: &LlamaCppModel) -> LlamaCpp<'_> {
    model.context(&LlamaCppOptions::new()).unwrap()
}

/// Largest absolute difference between two rows, and whether their argmax agree (ties to
/// the lowest id) or are within `TOLERANCE` of a tie in `reference`.
pub(crate) fn compare(row: &[f32], reference: &[f32]) -> (f32, bool) {
    let diff = row
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let argmax = |r: &[f32]| decoding_core::argmax(r).unwrap() as usize;
    let (a, b) = (argmax(row), argmax(reference));
    let agree = a == b || (reference[b] - reference[a]).abs() <= 2.0 * TOLERANCE;
    (diff, agree)
}
