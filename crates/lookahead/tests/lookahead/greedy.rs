//! Greedy decoding: lookahead's output is plain greedy's, token for token, whatever the model,
//! prompt, configuration and node budget; the window stays aligned; full matches keep the bonus.

use crate::common::{config, counting, prompt, rng, toy_kind};
use decoding_core::{DecodeConfig, Decoder, ModelExtras, Plain, Token, generate};
use decoding_testkit::toy::{ChainsOnlyModel, InductionModel};
use lookahead::{Lookahead, LookaheadConfig, NgramPool, SharedPool};
use ndarray::Array2;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lookahead_equals_plain_greedy(
        kind in toy_kind(), vocab in 2usize..40, prompt in prompt(40), la in config(),
        max_new in 1usize..60, budget in prop::option::of(1usize..80), chains in any::<bool>(),
        eos in prop::collection::vec(0u32..40, 0..3),
    ) {
        let mut model = kind.build(vocab);
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let nodes = budget.unwrap_or(la.max_nodes().max(1));
        // Several EOS ids (the reference implementation honours one).
        let config = DecodeConfig::new(max_new)
            .with_eos(eos.iter().map(|e| e % vocab as Token))
            .with_max_nodes(nodes);
        let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(0)).unwrap();
        let strategy = Lookahead::new(la).unwrap();
        let out = if chains {
            generate(&mut ChainsOnlyModel(&mut model), strategy, &prompt, &config, &mut rng(0))
        } else {
            generate(&mut model, strategy, &prompt, &config, &mut rng(0))
        }.unwrap();
        prop_assert_eq!(&out.tokens, &plain.tokens);
        prop_assert_eq!(out.stop, plain.stop);
        prop_assert!(out.stats.forward_passes() <= plain.stats.forward_passes());
        prop_assert!(out.stats.steps.iter().all(|s| s.draft_nodes <= nodes));
    }

    /// After every step each level starts where the window says: level 0 right after the
    /// pending token, level l at pending + l, however many tokens the step emitted.
    #[test]
    fn window_stays_aligned(
        seed in any::<u64>(), vocab in 4usize..24, prompt in prompt(24), la in config(),
    ) {
        let mut model = InductionModel::induction(vocab, seed);
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let config = DecodeConfig::new(50).with_max_nodes(la.max_nodes());
        let mut decoder = Decoder::new(Lookahead::new(la).unwrap(), config);
        decoding_core::LogitsModel::reset(&mut model).unwrap();
        decoder.start(&prompt, vocab, decoding_core::TreeSupport::Trees, None).unwrap();
        let mut draw = rng(0);
        while !decoder.is_finished() {
            let tree = decoder.propose().unwrap();
            let mut logits = Array2::zeros((tree.logits_rows(), vocab));
            decoding_core::LogitsModel::forward(&mut model, tree, logits.view_mut()).unwrap();
            let outcome = decoder
                .advance(logits.view(), &mut ModelExtras(&mut model), &mut draw)
                .unwrap();
            let path = outcome.commit_path.to_vec();
            decoding_core::LogitsModel::commit(&mut model, &path).unwrap();
            let pending = decoder.tokens().len() - 1;
            for (l, level) in decoder.strategy().window().levels().iter().enumerate() {
                prop_assert_eq!(level.start(), pending + l.max(1));
            }
        }
    }
}

/// A full match emits the bonus token too: on a model that always continues a constant run,
/// every step accepts a whole (N - 1)-token candidate and adds the bonus: N tokens per step.
#[test]
fn full_match_keeps_the_bonus_token() {
    let mut model =
        decoding_testkit::toy::RecomputeModel::new(4, |_: &[Token], out: &mut [f32]| {
            out.fill(0.0);
            out[3] = 1.0;
        });
    let la = LookaheadConfig::new(1, 5, 1)
        .with_prompt_pool(true)
        .with_extension(0);
    let config = DecodeConfig::new(41).with_max_nodes(la.max_nodes());
    let out = generate(
        &mut model,
        Lookahead::new(la).unwrap(),
        &[3; 6],
        &config,
        &mut rng(0),
    )
    .unwrap();
    assert_eq!(out.tokens, vec![3; 41]);
    // Every step, the prefill included, accepts the candidate (3 3 3 3) and the bonus 3.
    assert!(out.stats.steps.iter().take(8).all(|s| s.emitted == 5));
    assert_eq!(out.stats.forward_passes(), 9);
}

/// Extended candidates run past N - 1 tokens through the pool: on the same constant run, a
/// budget of 1 + 12 nodes lets each step accept 12 tokens plus the bonus.
#[test]
fn extended_candidates_accept_more_than_n_minus_one() {
    let mut model =
        decoding_testkit::toy::RecomputeModel::new(4, |_: &[Token], out: &mut [f32]| {
            out.fill(0.0);
            out[3] = 1.0;
        });
    let la = LookaheadConfig::new(1, 5, 1)
        .with_prompt_pool(true)
        .with_extension(8);
    let config = DecodeConfig::new(39).with_max_nodes(13);
    let out = generate(
        &mut model,
        Lookahead::new(la).unwrap(),
        &[3; 6],
        &config,
        &mut rng(0),
    )
    .unwrap();
    assert_eq!(out.tokens, vec![3; 39]);
    assert_eq!(out.stats.forward_passes(), 3);
}

/// The window alone (no prompt, no output n-grams) learns a counting model's n-grams: once
/// the window is full its columns are exact (k, k+1, ..., k+N-1) runs, and the verification
/// branch accepts them.
#[test]
fn window_ngrams_pay_off_on_a_predictable_model() {
    let mut model = counting(50);
    let la = LookaheadConfig::new(8, 4, 8)
        .with_output_pool(false)
        .with_init(jacobi::Init::Prompt { seed: 1 });
    let config = DecodeConfig::new(120).with_max_nodes(la.max_nodes());
    let prompt = [7, 23, 41, 2, 15, 33, 48, 11];
    let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(0)).unwrap();
    let strategy = Lookahead::new(la).unwrap();
    let out = generate(&mut model, strategy, &prompt, &config, &mut rng(0)).unwrap();
    assert_eq!(out.tokens, plain.tokens);
    let metric = |name: &str| out.metrics.iter().find(|m| m.name == name).unwrap().value;
    assert!(metric("accepted_from_pool") > 0.0);
    assert!(out.stats.tau() > 2.5, "tau {}", out.stats.tau());
}

/// Two sequences over one shared pool: the second profits from the first's n-grams, and both
/// outputs stay plain greedy's.
#[test]
fn shared_pool_carries_ngrams_between_sequences() {
    let mut model = InductionModel::induction(30, 4);
    let la = LookaheadConfig::new(4, 4, 6);
    let shared = SharedPool::new(NgramPool::new(4, 6).unwrap());
    let config = DecodeConfig::new(60).with_max_nodes(la.max_nodes());
    let prompt = [1, 2, 3, 4, 5, 6, 7];
    let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(0)).unwrap();
    let first = Lookahead::with_shared_pool(la, shared.clone()).unwrap();
    let a = generate(&mut model, first, &prompt, &config, &mut rng(0)).unwrap();
    let learnt = shared.lock().len();
    assert!(learnt > 0);
    let second = Lookahead::with_shared_pool(la, shared.clone()).unwrap();
    let b = generate(&mut model, second, &prompt, &config, &mut rng(0)).unwrap();
    assert_eq!((&a.tokens, &b.tokens), (&plain.tokens, &plain.tokens));
    assert!(b.stats.forward_passes() < a.stats.forward_passes());
    assert!(
        Lookahead::with_shared_pool(la, SharedPool::new(NgramPool::new(3, 6).unwrap())).is_err()
    );
}
