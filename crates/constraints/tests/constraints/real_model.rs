//! The real model: pycoder-16m's greedy output under a regex constraint over its own
//! tokenizer matches the pattern, and lookahead and reference decoding emit exactly plain
//! constrained greedy's tokens.

use std::sync::Arc;

use decoding_constraints::{RegexConstraint, TokenBytes};
use decoding_core::{DecodeConfig, Plain, Strategy, Token, generate};
use llama_cpu::Llama;
use lookahead::{Lookahead, LookaheadConfig};
use reference::{ReferenceConfig, ReferenceStrategy};

use crate::common::{assets, dev_cases};

/// Prompts are cut to their last tokens to keep the test fast (the prefill dominates).
const PROMPT_TOKENS: usize = 96;
const MAX_NEW: usize = 12;

#[test]
fn constrained_greedy_on_pycoder_is_lossless_and_matches() {
    let Ok(model) = Llama::load(assets().join("pycoder-16m")) else {
        eprintln!("assets/pycoder-16m not found; skipping");
        return;
    };
    let mut model = model.with_threads(1);
    let tokens = Arc::new(
        TokenBytes::from_tokenizer_file(assets().join("pycoder-16m/tokenizer.json")).unwrap(),
    );
    let patterns = [
        "[0-9]+(, [0-9]+)*",
        " ?[A-Za-z_][A-Za-z0-9_]*(, [A-Za-z_][A-Za-z0-9_]*)*\n",
    ];
    let cases = dev_cases();
    for (pattern, case) in patterns.iter().zip([&cases[3], &cases[45]]) {
        let constraint = Arc::new(RegexConstraint::new(pattern, tokens.clone(), [0]).unwrap());
        let config = DecodeConfig::new(MAX_NEW)
            .with_eos([0])
            .with_shared_constraint(constraint.clone());
        let prompt = &case.prompt[case.prompt.len().saturating_sub(PROMPT_TOKENS)..];
        let mut run = |strategy: Box<dyn Strategy>| -> Vec<Token> {
            let mut rng = <rand::rngs::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(0);
            generate(&mut model, strategy, prompt, &config, &mut rng)
                .unwrap()
                .tokens
        };
        let plain = run(Box::new(Plain));
        let (body, ended) = match plain.split_last() {
            Some((0, body)) => (body, true),
            _ => (&plain[..], false),
        };
        let text = tokens.decode(body).unwrap();
        let shown = String::from_utf8_lossy(&text);
        eprintln!("{}, {pattern:?}: {plain:?} {shown:?}", case.id);
        if ended {
            assert!(constraint.is_match(&text), "{pattern}: {shown:?}");
        } else {
            assert_eq!(plain.len(), MAX_NEW);
            assert!(constraint.is_prefix(&text), "{pattern}: {shown:?}");
        }
        assert!(!text.is_empty(), "{pattern}: {plain:?}");

        let lookahead = Lookahead::new(LookaheadConfig::new(4, 4, 4)).unwrap();
        assert_eq!(run(Box::new(lookahead)), plain, "lookahead, {pattern}");
        let reference =
            ReferenceStrategy::with_documents(ReferenceConfig::default(), &case.references)
                .unwrap();
        assert_eq!(run(Box::new(reference)), plain, "reference, {pattern}");
        let stats = constraint.cache_stats();
        assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
    }
}
