//! Exact enumeration: under sampling, lookahead's output distribution is the target
//! distribution, computed token by token from the model, with no statistical slack.

use crate::common::{config, prompt, toy_kind};
use decoding_core::{
    DecodeConfig, LogitsModel, Plain, Sampling, Strategy, Token, enumerate_draws, generate,
    target_probability,
};
use lookahead::Lookahead;
use proptest::prelude::*;

fn check<S: Strategy>(
    model: &mut dyn LogitsModel,
    prompt: &[Token],
    config: &DecodeConfig,
    mut strategy: impl FnMut() -> S,
) -> Result<(), TestCaseError> {
    let outcomes = enumerate_draws(|draw| {
        generate(&mut *model, strategy(), prompt, config, draw)
            .unwrap()
            .tokens
    })
    .unwrap();
    let total: f64 = outcomes.values().sum();
    prop_assert!((total - 1.0).abs() < 1e-9, "total mass {}", total);
    for (output, p) in &outcomes {
        let want = target_probability(model, prompt, output, config.sampling()).unwrap();
        prop_assert!((p - want).abs() < 1e-12, "{:?}: {} vs {}", output, p, want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sampling_keeps_the_target_distribution(
        kind in toy_kind(), vocab in 2usize..4, prompt in prompt(4), la in config(),
        max_new in 1usize..5, temperature in 0.3f32..2.0,
        top_k in prop::option::of(1usize..4), top_p in prop::option::of(0.3f32..1.0),
        eos in prop::option::of(0u32..4),
    ) {
        let mut model = kind.build(vocab);
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let sampling = Sampling::new(temperature, top_k, top_p).unwrap();
        let mut config = DecodeConfig::new(max_new)
            .with_sampling(sampling)
            .with_max_nodes(la.max_nodes().max(1));
        if let Some(eos) = eos {
            config = config.with_eos([eos % vocab as Token]);
        }
        check(&mut *model, &prompt, &config, || Plain)?;
        check(&mut *model, &prompt, &config, || Lookahead::new(la).unwrap())?;
    }
}
