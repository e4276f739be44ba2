//! Sampling: seeded runs are reproducible and token-identical to plain sampling with the same
//! seed (the drafts are deterministic, so the verifier draws exactly as plain sampling does).

use crate::common::{config, prompt, rng, toy_kind};
use decoding_core::{DecodeConfig, Plain, Sampling, Token, generate};
use lookahead::Lookahead;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn seeded_lookahead_sampling_is_plain_sampling(
        kind in toy_kind(), vocab in 2usize..16, prompt in prompt(16), la in config(),
        max_new in 1usize..50, seed in any::<u64>(), temperature in 0.2f32..2.0,
        top_k in prop::option::of(1usize..8), top_p in prop::option::of(0.2f32..1.0),
    ) {
        let mut model = kind.build(vocab);
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let sampling = Sampling::new(temperature, top_k, top_p).unwrap();
        let config = DecodeConfig::new(max_new)
            .with_sampling(sampling)
            .with_max_nodes(la.max_nodes().max(1));
        let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(seed)).unwrap();
        let a = generate(&mut model, Lookahead::new(la).unwrap(), &prompt, &config, &mut rng(seed)).unwrap();
        let b = generate(&mut model, Lookahead::new(la).unwrap(), &prompt, &config, &mut rng(seed)).unwrap();
        prop_assert_eq!(&a.tokens, &plain.tokens);
        prop_assert_eq!(&a.tokens, &b.tokens);
        prop_assert_eq!(&a.stats.steps.len(), &b.stats.steps.len());
    }
}
