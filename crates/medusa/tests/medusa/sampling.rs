//! Under sampling, exact acceptance keeps the model's distribution exactly (enumerated, no
//! statistical slack); typical acceptance does not, and says so.

use std::collections::BTreeMap;

use crate::common::{OracleHeads, arc_heads, rng};
use decoding_core::{
    DecodeConfig, Plain, Sampling, Strategy, Token, enumerate_draws, generate, target_probability,
};
use decoding_testkit::toy::HashModel;
use medusa::{Acceptance, HeadSource, Medusa, MedusaConfig, TypicalAcceptance};
use proptest::prelude::*;

fn distribution_of(
    model: &mut OracleHeads,
    make: &dyn Fn() -> Box<dyn Strategy>,
    prompt: &[Token],
    config: &DecodeConfig,
) -> BTreeMap<Vec<Token>, f64> {
    enumerate_draws(|draw| {
        generate(&mut *model, make(), prompt, config, draw)
            .unwrap()
            .tokens
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn exact_acceptance_keeps_the_target_distribution(
        seed in any::<u64>(), vocab in 2usize..4, heads in 1usize..4, library in any::<bool>(),
        prompt in prop::collection::vec(0u32..2, 1..4), max_new in 1usize..5,
        temperature in 0.5f32..2.0, top_k in prop::option::of(1usize..4),
    ) {
        let sampling = Sampling::new(temperature, top_k, None).unwrap();
        let config = DecodeConfig::new(max_new).with_sampling(sampling).with_eos([0]);
        let mut model = OracleHeads::new(HashModel::new(vocab, seed).with_hidden_size(3), heads, 0.7);
        let library_heads = arc_heads(seed ^ 1, heads, 3, vocab);
        let make = || -> Box<dyn Strategy> {
            let source = if library {
                HeadSource::Library(library_heads.clone())
            } else {
                HeadSource::Engine { num_heads: heads }
            };
            Box::new(Medusa::new(source, MedusaConfig::default()).unwrap())
        };
        let outcomes = distribution_of(&mut model, &make, &prompt, &config);
        let total: f64 = outcomes.values().sum();
        prop_assert!((total - 1.0).abs() < 1e-9);
        for (output, &p) in &outcomes {
            let target = target_probability(&mut model, &prompt, output, &sampling).unwrap();
            prop_assert!((p - target).abs() < 1e-9, "{output:?}: {p} vs {target}");
        }
    }

    #[test]
    fn seeded_sampling_is_token_identical_to_plain(
        seed in any::<u64>(), sample_seed in any::<u64>(), vocab in 2usize..10,
        heads in 1usize..5, prompt in prop::collection::vec(0u32..2, 1..6),
        max_new in 1usize..40, temperature in 0.3f32..1.5, top_p in prop::option::of(0.3f32..1.0),
    ) {
        let sampling = Sampling::new(temperature, None, top_p).unwrap();
        let config = DecodeConfig::new(max_new).with_sampling(sampling);
        let mut model = OracleHeads::new(HashModel::new(vocab, seed).with_hidden_size(3), heads, 0.8);
        let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(sample_seed)).unwrap();
        let medusa = Medusa::new(HeadSource::Engine { num_heads: heads }, MedusaConfig::default()).unwrap();
        let out = generate(&mut model, medusa, &prompt, &config, &mut rng(sample_seed)).unwrap();
        prop_assert_eq!(out.tokens, plain.tokens);
    }
}

#[test]
fn typical_acceptance_is_lossy_and_says_so() {
    let sampling = Sampling::new(1.0, None, None).unwrap();
    let config = DecodeConfig::new(3).with_sampling(sampling);
    let prompt = [1, 0];
    let rule = Acceptance::TypicalLossy(TypicalAcceptance::default());
    let typical = || {
        Medusa::new(
            HeadSource::Engine { num_heads: 3 },
            MedusaConfig::default().with_acceptance(rule),
        )
        .unwrap()
    };
    assert!(!typical().is_lossless());
    let exact = Medusa::new(HeadSource::Engine { num_heads: 3 }, MedusaConfig::default()).unwrap();
    assert!(exact.is_lossless());
    // Some small model on which the output distribution visibly changes.
    let lossy = (0..20u64).any(|seed| {
        let mut model = OracleHeads::new(HashModel::with_order(3, seed, 2, 2.0).unwrap(), 3, 0.9);
        let make = || -> Box<dyn Strategy> { Box::new(typical()) };
        let outcomes = distribution_of(&mut model, &make, &prompt, &config);
        outcomes.iter().any(|(output, &p)| {
            (p - target_probability(&mut model, &prompt, output, &sampling).unwrap()).abs() > 1e-3
        })
    });
    assert!(
        lossy,
        "typical acceptance should shift the distribution on some model"
    );
}
