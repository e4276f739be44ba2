//! Greedy decoding: Jacobi's output is plain greedy's, token for token.

use crate::common::{init_policy, prompt, rng, toy_kind};
use decoding_core::{DecodeConfig, Plain, Token, generate};
use decoding_testkit::toy::{ChainsOnlyModel, RecomputeModel};
use jacobi::{Init, Jacobi, JacobiConfig};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn jacobi_equals_plain_greedy(
        kind in toy_kind(), vocab in 2usize..40, prompt in prompt(2), k in 1usize..20,
        init in init_policy(), max_new in 1usize..60, nodes in 1usize..24,
        chains in any::<bool>(), eos in 0u32..40,
    ) {
        let mut model = kind.build(vocab);
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let config = DecodeConfig::new(max_new)
            .with_eos([eos % vocab as Token])
            .with_max_nodes(nodes);
        let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(0)).unwrap();
        let jacobi = Jacobi::new(JacobiConfig::new(k).with_init(init)).unwrap();
        let out = if chains {
            generate(&mut ChainsOnlyModel(&mut model), jacobi, &prompt, &config, &mut rng(0))
        } else {
            generate(&mut model, jacobi, &prompt, &config, &mut rng(0))
        }.unwrap();
        prop_assert_eq!(&out.tokens, &plain.tokens);
        prop_assert_eq!(out.stop, plain.stop);
        prop_assert!(out.stats.forward_passes() <= plain.stats.forward_passes());
        prop_assert!(out.stats.steps.iter().all(|s| s.draft_nodes <= nodes.min(k + 1)));
    }
}

/// A model that always predicts token 3: after one step every guess is 3, and every later step
/// is a fixed point that accepts the whole window.
#[test]
fn constant_model_reaches_the_fixed_point() {
    let mut model = RecomputeModel::new(5, |_: &[Token], out: &mut [f32]| {
        out.fill(0.0);
        out[3] = 1.0;
    });
    let config = DecodeConfig::new(41);
    let jacobi = Jacobi::new(JacobiConfig::new(4).with_init(Init::RepeatLast)).unwrap();
    let out = generate(&mut model, jacobi, &[1, 2], &config, &mut rng(0)).unwrap();
    assert_eq!(out.tokens, vec![3; 41]);
    // Step 1 (prefill) rejects the guesses (2, 2, ...): 1 token; then 5 per step: 1 + 8 * 5.
    assert_eq!(out.stats.forward_passes(), 9);
    let metric = |name: &str| out.metrics.iter().find(|m| m.name == name).unwrap().value;
    assert_eq!(metric("fixed_point_rate"), 8.0 / 9.0);
    assert_eq!(metric("accepted_per_step"), 32.0 / 9.0);
}

/// The trajectory survives a step: a guess that was wrong only because of an earlier wrong
/// guess is accepted at the next step.
#[test]
fn trajectory_carries_predictions_forward() {
    // Predicts (last + 1) mod 7, except after 0, where it predicts 5.
    let mut model = RecomputeModel::new(7, |ctx: &[Token], out: &mut [f32]| {
        out.fill(0.0);
        let last = ctx[ctx.len() - 1];
        out[if last == 0 {
            5
        } else {
            (last as usize + 1) % 7
        }] = 1.0;
    });
    let config = DecodeConfig::new(12);
    let plain = generate(&mut model, Plain, &[1], &config, &mut rng(0)).unwrap();
    let jacobi = Jacobi::new(JacobiConfig::new(6).with_init(Init::RepeatLast)).unwrap();
    let out = generate(&mut model, jacobi, &[1], &config, &mut rng(0)).unwrap();
    assert_eq!(out.tokens, plain.tokens);
}
