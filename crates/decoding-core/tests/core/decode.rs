//! The decoding loop: every strategy equals plain decoding; stop conditions never overshoot.

use crate::common::{Oracle, RandomDrafts, naive_greedy};
use decoding_core::{DecodeConfig, Plain, Sampling, StopReason, Token, generate};
use decoding_testkit::toy::{ChainsOnlyModel, HashModel, InductionModel};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

fn prompt_strategy(vocab: u32) -> impl Strategy<Value = Vec<Token>> {
    prop::collection::vec(0..vocab, 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn plain_generate_equals_naive_loop(
        seed in any::<u64>(), vocab in 2u32..40, prompt in prompt_strategy(2),
        max_new in 0usize..30, eos in 0u32..40,
    ) {
        let mut model = HashModel::new(vocab as usize, seed);
        let eos = eos % vocab;
        let config = DecodeConfig::new(max_new).with_eos([eos]);
        let out = generate(&mut model, Plain, &prompt, &config, &mut rng(0)).unwrap();
        let naive = naive_greedy(&mut model, &prompt, &config);
        prop_assert_eq!(&out.tokens, &naive);
        prop_assert_eq!(out.stats.forward_passes(), out.tokens.len());
    }

    #[test]
    fn random_drafts_never_change_greedy_output(
        seed in any::<u64>(), draft_seed in any::<u64>(), vocab in 2u32..12,
        prompt in prompt_strategy(2), max_new in 1usize..40, nodes in 1usize..24,
        chains in any::<bool>(),
    ) {
        let config = DecodeConfig::new(max_new).with_eos([0]).with_max_nodes(nodes);
        let mut model = HashModel::new(vocab as usize, seed);
        let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(0)).unwrap();
        let drafts = RandomDrafts::new(draft_seed, nodes);
        let out = if chains {
            generate(&mut ChainsOnlyModel(model), drafts, &prompt, &config, &mut rng(0))
        } else {
            generate(&mut model, drafts, &prompt, &config, &mut rng(0))
        }.unwrap();
        prop_assert_eq!(out.tokens, plain.tokens);
        prop_assert_eq!(out.stop, plain.stop);
    }

    #[test]
    fn random_drafts_are_seed_identical_to_plain_sampling(
        seed in any::<u64>(), draft_seed in any::<u64>(), sample_seed in any::<u64>(),
        vocab in 2u32..10, prompt in prompt_strategy(2), max_new in 1usize..30,
        temperature in 0.3f32..2.0, top_k in prop::option::of(1usize..8),
        top_p in prop::option::of(0.2f32..1.0),
    ) {
        let sampling = Sampling::new(temperature, top_k, top_p).unwrap();
        let config = DecodeConfig::new(max_new).with_sampling(sampling).with_max_nodes(16);
        let mut model = HashModel::new(vocab as usize, seed);
        let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(sample_seed)).unwrap();
        let drafts = RandomDrafts::new(draft_seed, 16);
        let out = generate(&mut model, drafts, &prompt, &config, &mut rng(sample_seed)).unwrap();
        prop_assert_eq!(out.tokens, plain.tokens);
    }

    #[test]
    fn stops_never_overshoot_inside_accepted_chunks(
        seed in any::<u64>(), vocab in 3u32..12, prompt in prompt_strategy(3),
        max_new in 1usize..40, depth in 1usize..16, stop_len in 1usize..3, stop_at in 0usize..40,
    ) {
        let mut model = InductionModel::induction(vocab as usize, seed);
        let free = generate(&mut model, Plain, &prompt, &DecodeConfig::new(60), &mut rng(0)).unwrap();
        // A stop sequence taken from the free run, so it fires somewhere inside it.
        let at = stop_at.min(free.tokens.len() - stop_len);
        let stop: Vec<Token> = free.tokens[at..at + stop_len].to_vec();
        let config = DecodeConfig::new(max_new).with_stop_sequence(stop.clone());
        let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(0)).unwrap();
        let oracle = Oracle { continuation: free.tokens.clone(), depth };
        let out = generate(&mut model, oracle, &prompt, &config, &mut rng(0)).unwrap();
        prop_assert_eq!(&out.tokens, &plain.tokens);
        prop_assert_eq!(out.stop, plain.stop);
        prop_assert!(out.tokens.len() <= max_new);
        if out.stop == StopReason::StopSequence(0) {
            prop_assert!(out.tokens.ends_with(&stop));
        }
        prop_assert_eq!(model.committed().len(), prompt.len() + out.tokens.len() - 1);
    }
}

#[test]
fn oracle_reaches_full_acceptance() {
    let mut model = InductionModel::induction(16, 3);
    let prompt = [1, 2, 3, 4];
    let free = generate(
        &mut model,
        Plain,
        &prompt,
        &DecodeConfig::new(50),
        &mut rng(0),
    )
    .unwrap();
    let oracle = Oracle {
        continuation: free.tokens.clone(),
        depth: 9,
    };
    let out = generate(
        &mut model,
        oracle,
        &prompt,
        &DecodeConfig::new(50),
        &mut rng(0),
    )
    .unwrap();
    assert_eq!(out.tokens, free.tokens);
    assert_eq!(out.stats.forward_passes(), 5);
    assert_eq!(out.stats.tau(), 10.0);
}
