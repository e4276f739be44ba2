//! Sampling: the lossless verifier is used, and seeded runs are reproducible and identical to
//! plain sampling with the same seed.

use crate::common::{init_policy, prompt, rng, toy_kind};
use decoding_core::{DecodeConfig, Plain, Sampling, Token, generate};
use jacobi::{Jacobi, JacobiConfig};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn seeded_jacobi_sampling_is_plain_sampling(
        kind in toy_kind(), vocab in 2usize..12, prompt in prompt(2), k in 1usize..12,
        init in init_policy(), max_new in 1usize..40, seed in any::<u64>(),
        temperature in 0.2f32..2.0, top_k in prop::option::of(1usize..8),
        top_p in prop::option::of(0.2f32..1.0),
    ) {
        let mut model = kind.build(vocab);
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let sampling = Sampling::new(temperature, top_k, top_p).unwrap();
        let config = DecodeConfig::new(max_new).with_sampling(sampling);
        let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(seed)).unwrap();
        let strategy = || Jacobi::new(JacobiConfig::new(k).with_init(init)).unwrap();
        let a = generate(&mut model, strategy(), &prompt, &config, &mut rng(seed)).unwrap();
        let b = generate(&mut model, strategy(), &prompt, &config, &mut rng(seed)).unwrap();
        prop_assert_eq!(&a.tokens, &plain.tokens);
        prop_assert_eq!(&a.tokens, &b.tokens);
        prop_assert_eq!(a.stats.forward_passes(), b.stats.forward_passes());
    }
}
