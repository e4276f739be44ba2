//! pycoder-16m drafting for itself with its first layers (skipped when the model is absent):
//! greedy output identical to plain decoding, and the whole model as its own drafter always
//! accepted.

use decoding_core::{DecodeConfig, LogitsModel, Plain, Token, generate};
use draft::{DraftConfig, DraftStrategy};
use llama_cpu::Llama;

use crate::common::rng;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/pycoder-16m");
const CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/eval/dev_eval.json"
);

/// The model and the first 96 tokens of the first dev case, if the assets are there.
fn model_and_prompt() -> Option<(Llama, Vec<Token>)> {
    let model = Llama::load(DIR).ok()?;
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(CASES).ok()?).ok()?;
    let prompt = cases["cases"][0]["prompt_ids"].as_array()?;
    let prompt = prompt
        .iter()
        .take(96)
        .map(|t| t.as_u64().map(|t| t as Token))
        .collect::<Option<_>>()?;
    Some((model, prompt))
}

#[test]
fn early_exits_draft_for_pycoder_losslessly() {
    let Some((mut model, prompt)) = model_and_prompt() else {
        return;
    };
    let decode = DecodeConfig::new(24).with_eos([0]);
    let plain = generate(&mut model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
    for layers in [1, 3] {
        for config in [DraftConfig::chain(), DraftConfig::tree()] {
            let drafter = model.early_exit(layers).unwrap();
            let strategy = DraftStrategy::new(drafter, config).unwrap();
            let out = generate(&mut model, strategy, &prompt, &decode, &mut rng(0)).unwrap();
            assert_eq!(out.tokens, plain.tokens, "{layers} layers");
        }
    }
    // All 8 layers: the drafter is the target, bit for bit, so every draft is accepted.
    let whole = model.early_exit(model.layers()).unwrap();
    let strategy = DraftStrategy::new(whole, DraftConfig::chain()).unwrap();
    let out = generate(&mut model, strategy, &prompt, &decode, &mut rng(0)).unwrap();
    assert_eq!(out.tokens, plain.tokens);
    assert_eq!(out.stats.forward_passes(), 24usize.div_ceil(5));
    assert_eq!(model.vocab_size(), 8192);
}
