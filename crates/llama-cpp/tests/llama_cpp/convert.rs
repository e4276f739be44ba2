//! The GGUF converter: llama.cpp running a converted checkpoint computes what this
//! repository's CPU model computes on the original (tied and untied embeddings, GQA, the
//! RoPE permutation of `W_q` and `W_k`), and bad checkpoints are errors.

use decoding_core::{HiddenStates, LogitsModel, TokenTree};
use decoding_llama_cpp::{ConvertError, LlamaCppOptions, WeightType, to_gguf};
use llama_cpu::{Llama, LlamaConfig};

use crate::common::{
    Checkpoint, compare, context, forward, load_gguf, tiny_checkpoint, tiny_tokenizer,
};

/// Two implementations (different kernels, one f32 and one f32-with-f64-free sums) of the
/// same forward agree to this much on every logit.
const CROSS_TOLERANCE: f32 = 1e-3;

fn cpu_model(checkpoint: &Checkpoint) -> Llama {
    let config = LlamaConfig::from_json(&checkpoint.config_json).unwrap();
    Llama::from_safetensors(config, &checkpoint.safetensors).unwrap()
}

#[test]
fn converted_checkpoints_match_the_cpu_model() {
    for (seed, tied) in [(1, true), (2, false)] {
        let checkpoint = tiny_checkpoint(seed, tied);
        let gguf = load_gguf(&checkpoint, &format!("cross-{seed}"));
        let mut ours = cpu_model(&checkpoint);
        let mut theirs = context(&gguf);
        let tokens: Vec<u32> = (0..40).map(|i| (i * 53 + 11) % 300).collect();
        let chain = TokenTree::from_chain(&tokens).unwrap();
        let (a, b) = (forward(&mut theirs, &chain), forward(&mut ours, &chain));
        for row in 0..chain.len() {
            let (diff, agree) = compare(
                a.row(row).as_slice().unwrap(),
                b.row(row).as_slice().unwrap(),
            );
            assert!(
                diff <= CROSS_TOLERANCE,
                "tied {tied}, row {row}: differ by {diff}"
            );
            assert!(agree, "tied {tied}, row {row}: argmax differs");
        }
        // The final hidden states agree too (what Medusa heads read).
        let mut with_states = gguf
            .context(&LlamaCppOptions::new().with_hidden_states(true))
            .unwrap();
        forward(&mut with_states, &chain);
        let mut x = ndarray::Array1::zeros(64);
        let mut y = ndarray::Array1::zeros(64);
        with_states
            .hidden_states()
            .unwrap()
            .hidden_state(39, x.view_mut())
            .unwrap();
        ours.hidden_state(39, y.view_mut()).unwrap();
        let diff = (&x - &y).iter().fold(0.0f32, |m, d| m.max(d.abs()));
        assert!(diff <= CROSS_TOLERANCE, "hidden states differ by {diff}");
    }
}

#[test]
fn f16_files_load_and_stay_close() {
    let checkpoint = tiny_checkpoint(3, true);
    let bytes = to_gguf(
        &checkpoint.config_json,
        &checkpoint.safetensors,
        &tiny_tokenizer(300),
        WeightType::F16,
    )
    .unwrap();
    let path = crate::common::temp_file("f16.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let model = decoding_llama_cpp::LlamaCppModel::load(&path).unwrap();
    let mut theirs = context(&model);
    let mut ours = cpu_model(&checkpoint);
    let chain = TokenTree::from_chain(&[5, 17, 250, 3]).unwrap();
    let diff = (&forward(&mut theirs, &chain) - &forward(&mut ours, &chain))
        .iter()
        .fold(0.0f32, |m, d| m.max(d.abs()));
    assert!(diff < 0.1, "f16 weights differ by {diff}");
    let f32_bytes = to_gguf(
        &checkpoint.config_json,
        &checkpoint.safetensors,
        &tiny_tokenizer(300),
        WeightType::F32,
    )
    .unwrap();
    assert!(
        bytes.len() * 10 < f32_bytes.len() * 6,
        "f16 files are about half the size"
    );
}

#[test]
fn bad_checkpoints_are_errors() {
    let good = tiny_checkpoint(4, true);
    let tokenizer = tiny_tokenizer(300);
    let convert = |config: &str, weights: &[u8], tokenizer: &str| {
        to_gguf(config, weights, tokenizer, WeightType::F32).unwrap_err()
    };
    let err = convert(&good.config_json, &good.safetensors[..100], &tokenizer);
    assert!(matches!(err, ConvertError::Safetensors(_)), "{err}");
    let untied = good.config_json.replace(
        "\"tie_word_embeddings\":true",
        "\"tie_word_embeddings\":false",
    );
    assert_ne!(untied, good.config_json);
    let err = convert(&untied, &good.safetensors, &tokenizer);
    assert!(matches!(err, ConvertError::MissingTensor(_)), "{err}");
    let wider = good
        .config_json
        .replace("\"intermediate_size\":96", "\"intermediate_size\":128");
    let err = convert(&wider, &good.safetensors, &tokenizer);
    assert!(matches!(err, ConvertError::Shape { .. }), "{err}");
    let err = convert("{}", &good.safetensors, &tokenizer);
    assert!(matches!(err, ConvertError::Config(_)), "{err}");
    let small_vocab = tiny_tokenizer(300).replace("\"<|endoftext|>\":0", "\"<|endoftext|>\":400");
    let err = convert(&good.config_json, &good.safetensors, &small_vocab);
    assert!(matches!(err, ConvertError::Tokenizer(_)), "{err}");
    let wordpiece = tokenizer.replace("\"BPE\"", "\"WordPiece\"");
    let err = convert(&good.config_json, &good.safetensors, &wordpiece);
    assert!(matches!(err, ConvertError::Unsupported(_)), "{err}");
    assert!("f8".parse::<WeightType>().is_err());
}
