//! Decoding with a drafter equals plain decoding: greedy token for token, sampling seed for
//! seed, stop conditions inside accepted chunks, chains-only targets, inside a composite.

use decoding_core::{
    Composite, DecodeConfig, Generation, LogitsModel, NodeBudget, Plain, Sampling, Token, generate,
};
use decoding_testkit::toy::ChainsOnlyModel;
use draft::{DraftConfig, DraftStrategy};
use proptest::prelude::*;
use reference::{ReferenceConfig, ReferenceStrategy};

use crate::common::{Drafter, Target, config, drafter, prompt, rng, target};

fn run(
    model: &mut dyn LogitsModel,
    drafter: Box<dyn LogitsModel>,
    config: &DraftConfig,
    prompt: &[Token],
    decode: &DecodeConfig,
    seed: u64,
) -> Generation {
    let strategy = DraftStrategy::new(drafter, config.clone()).unwrap();
    generate(model, strategy, prompt, decode, &mut rng(seed)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn greedy_output_equals_plain(
        target in target(), drafter in drafter(), vocab in 2usize..24,
        prompt in prompt(24), max_new in 1usize..60, nodes in 1usize..40,
        eos in prop::option::of(0u32..24), config in config(), chains in any::<bool>(),
    ) {
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let mut decode = DecodeConfig::new(max_new).with_max_nodes(nodes);
        if let Some(eos) = eos {
            decode = decode.with_eos([eos % vocab as Token]);
        }
        let mut model = target.model(vocab);
        let plain = generate(&mut *model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
        let out = if chains {
            let mut chained = ChainsOnlyModel(model);
            run(&mut chained, drafter.model(&target, vocab), &config, &prompt, &decode, 0)
        } else {
            run(&mut *model, drafter.model(&target, vocab), &config, &prompt, &decode, 0)
        };
        prop_assert_eq!(&out.tokens, &plain.tokens);
        prop_assert_eq!(out.stop, plain.stop);
        prop_assert!(out.stats.forward_passes() <= plain.stats.forward_passes());
        prop_assert!(out.stats.steps.iter().all(|s| s.draft_nodes <= nodes.max(1)));
    }

    #[test]
    fn sampling_is_seed_identical_to_plain(
        target in target(), drafter in drafter(), vocab in 2usize..12,
        prompt in prompt(12), max_new in 1usize..40, seed in any::<u64>(),
        temperature in 0.2f32..1.5, top_k in prop::option::of(1usize..8),
        top_p in prop::option::of(0.3f32..1.0), config in config(),
    ) {
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let sampling = Sampling::new(temperature, top_k, top_p).unwrap();
        let decode = DecodeConfig::new(max_new).with_sampling(sampling);
        let mut model = target.model(vocab);
        let plain = generate(&mut *model, Plain, &prompt, &decode, &mut rng(seed)).unwrap();
        let out = run(&mut *model, drafter.model(&target, vocab), &config, &prompt, &decode, seed);
        prop_assert_eq!(out.tokens, plain.tokens);
    }

    #[test]
    fn stop_sequences_are_honoured_inside_accepted_chunks(
        seed in any::<u64>(), prompt in prompt(8), at in 0usize..50, stop_len in 1usize..4,
        max_new in 1usize..60, config in config(),
    ) {
        let target = Target::Induction { seed };
        let mut model = target.model(8);
        let free = generate(&mut *model, Plain, &prompt, &DecodeConfig::new(60), &mut rng(0))
            .unwrap();
        let at = at.min(free.tokens.len() - stop_len);
        let decode = DecodeConfig::new(max_new)
            .with_stop_sequence(free.tokens[at..at + stop_len].to_vec());
        let plain = generate(&mut *model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
        // The target itself as the drafter: every chunk is accepted whole, then cut.
        let same = Drafter::Noisy { noise: 0.0, seed: 0 }.model(&target, 8);
        let out = run(&mut *model, same, &config, &prompt, &decode, 0);
        prop_assert_eq!(&out.tokens, &plain.tokens);
        prop_assert_eq!(out.stop, plain.stop);
    }

    #[test]
    fn in_a_composite_with_reference_greedy_output_equals_plain(
        target in target(), drafter in drafter(), vocab in 2usize..16, prompt in prompt(16),
        max_new in 1usize..50, nodes in 1usize..32, config in config(),
        cost_aware in any::<bool>(),
    ) {
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let decode = DecodeConfig::new(max_new).with_max_nodes(nodes);
        let mut model = target.model(vocab);
        let plain = generate(&mut *model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
        let budget = if cost_aware {
            NodeBudget::CostAware(decoding_core::CostCurve::linear(1.0, 0.3).unwrap())
        } else {
            NodeBudget::Fixed
        };
        let sources: Vec<Box<dyn decoding_core::Strategy>> = vec![
            Box::new(ReferenceStrategy::with_documents(ReferenceConfig::suffix(), [&prompt]).unwrap()),
            Box::new(DraftStrategy::new(drafter.model(&target, vocab), config).unwrap()),
        ];
        let composite = Composite::new(sources, budget).unwrap();
        let out = generate(&mut *model, composite, &prompt, &decode, &mut rng(0)).unwrap();
        prop_assert_eq!(out.tokens, plain.tokens);
    }
}

/// The target as its own drafter: a chain is always accepted whole, `k + 1` tokens per
/// step; a tree at least keeps the greedy child of the root.
#[test]
fn a_perfect_drafter_is_always_accepted() {
    let target = Target::Hash { seed: 3, order: 2 };
    let mut model = target.model(32);
    let decode = DecodeConfig::new(61);
    let plain = generate(&mut *model, Plain, &[1, 2, 3], &decode, &mut rng(0)).unwrap();
    let mut narrow = DraftConfig::tree();
    narrow.width = 1;
    for config in [DraftConfig::chain(), narrow, DraftConfig::tree()] {
        let same = Drafter::Noisy {
            noise: 0.0,
            seed: 0,
        }
        .model(&target, 32);
        let k = config.k;
        let width = config.width;
        let out = run(&mut *model, same, &config, &[1, 2, 3], &decode, 0);
        assert_eq!(out.tokens, plain.tokens);
        let passes = out.stats.forward_passes();
        if width == 1 {
            assert_eq!(passes, 61usize.div_ceil(k + 1));
        } else {
            assert!(passes <= 61usize.div_ceil(2), "{passes}");
        }
    }
}
