//! The real pycoder-16m (f16 weights, computed in f32) on candle against llama-cpu, this
//! workspace's independent CPU implementation: the same logits within the tolerance, and
//! the same greedy tokens.

use decoding_candle::CandleLlama;
use decoding_core::{DecodeConfig, LogitsModel, Plain, TokenTree, generate};
use ndarray::Array2;
use rand::SeedableRng;

use crate::common::{TOLERANCE, relative_gap};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/pycoder-16m");

/// A prompt of the dev set's first case (its first 48 tokens).
const PROMPT: [u32; 48] = [
    308, 3174, 821, 301, 1323, 1360, 8065, 14, 2404, 26, 711, 199, 199, 275, 1554, 26, 199, 312,
    698, 903, 672, 311, 3991, 2372, 199, 260, 362, 199, 260, 1159, 273, 292, 343, 699, 4994, 2510,
    1375, 2647, 15, 1607, 490, 199, 199, 260, 516, 7302, 14, 1607,
];

#[test]
fn pycoder_logits_and_greedy_tokens_match_llama_cpu() {
    if !std::path::Path::new(DIR).exists() {
        return;
    }
    let mut candle = CandleLlama::load(DIR).unwrap();
    let mut cpu = llama_cpu::Llama::load(DIR).unwrap();
    let tree = TokenTree::from_chain(&PROMPT).unwrap();
    let mut ours = Array2::zeros((PROMPT.len(), candle.vocab_size()));
    let mut theirs = ours.clone();
    candle.forward(&tree, ours.view_mut()).unwrap();
    cpu.forward(&tree, theirs.view_mut()).unwrap();
    let mut worst = 0.0f32;
    for (a, b) in ours.rows().into_iter().zip(theirs.rows()) {
        let gap = relative_gap(a.as_slice().unwrap(), b.as_slice().unwrap());
        assert!(gap < TOLERANCE, "relative logit gap {gap}");
        worst = worst.max(gap);
    }
    eprintln!("largest relative logit gap to llama-cpu {worst:e}");
    let config = DecodeConfig::new(24).with_eos([0]);
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
    let a = generate(&mut candle.fresh(), Plain, &PROMPT, &config, &mut rng).unwrap();
    let b = generate(&mut cpu, Plain, &PROMPT, &config, &mut rng).unwrap();
    assert_eq!(a.tokens, b.tokens);
}
