//! The drafter's cache: always a prefix of the target's committed context, at most the
//! deepest draft behind it in chain mode, every token evaluated once when drafts are
//! accepted; drafter errors are errors, and the next run recovers.

use decoding_core::{
    DecodeConfig, DecodeError, Decoder, LogitsModel, ModelExtras, Plain, Token, generate,
};
use decoding_testkit::toy::{ChainsOnlyModel, HashModel};
use draft::{ConfigError, DraftConfig, DraftStrategy, Mode};
use ndarray::Array2;
use proptest::prelude::*;

use crate::common::{Drafter, Probe, Target, config, drafter, prompt, rng, target};

/// Decodes step by step, checking the drafter's cache after every step.
fn decode_checking(
    target: &mut dyn LogitsModel,
    strategy: DraftStrategy<Probe<Box<dyn LogitsModel>>>,
    prompt: &[Token],
    decode: &DecodeConfig,
) -> Result<Vec<Token>, TestCaseError> {
    let chain = strategy.config().mode == Mode::Chain
        || target.tree_support() == decoding_core::TreeSupport::ChainsOnly;
    let mut decoder = Decoder::new(strategy, decode.clone());
    target.reset().unwrap();
    let vocab = target.vocab_size();
    decoder
        .start(prompt, vocab, target.tree_support(), target.max_context())
        .unwrap();
    let mut draw = rng(0);
    while !decoder.is_finished() {
        let tree = decoder.propose().unwrap().clone();
        let mut logits = Array2::zeros((tree.logits_rows(), vocab));
        target.forward(&tree, logits.view_mut()).unwrap();
        let outcome = decoder
            .advance(logits.view(), &mut ModelExtras(&mut *target), &mut draw)
            .unwrap();
        let path = outcome.commit_path.to_vec();
        target.commit(&path).unwrap();
        let tokens = decoder.tokens();
        let context = &tokens[..tokens.len() - 1];
        let drafter = decoder.strategy().drafter();
        prop_assert!(context.starts_with(&drafter.committed));
        prop_assert_eq!(drafter.committed.len(), drafter.inner.committed_len());
        let drafted = decoder.stats().steps.last().unwrap().draft_nodes > 1;
        if chain && drafted {
            prop_assert!(context.len() - drafter.committed.len() <= 1);
        }
    }
    Ok(decoder.generated().to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_drafter_cache_stays_a_prefix_of_the_target_context(
        target in target(), drafter in drafter(), vocab in 2usize..20, prompt in prompt(20),
        max_new in 1usize..50, nodes in 2usize..32, config in config(), chains in any::<bool>(),
    ) {
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let decode = DecodeConfig::new(max_new).with_max_nodes(nodes);
        let mut model = target.model(vocab);
        let plain = generate(&mut *model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
        let strategy = DraftStrategy::new(Probe::new(drafter.model(&target, vocab)), config)
            .unwrap();
        let out = if chains {
            decode_checking(&mut ChainsOnlyModel(model), strategy, &prompt, &decode)?
        } else {
            decode_checking(&mut *model, strategy, &prompt, &decode)?
        };
        prop_assert_eq!(out, plain.tokens);
    }

    #[test]
    fn drafter_errors_are_errors_and_the_next_run_recovers(
        target in target(), vocab in 2usize..16, prompt in prompt(16), max_new in 1usize..40,
        fail_at in 1usize..40, config in config(),
    ) {
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let decode = DecodeConfig::new(max_new);
        let mut model = target.model(vocab);
        let plain = generate(&mut *model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
        let noisy = Drafter::Noisy { noise: 0.5, seed: 1 }.model(&target, vocab);
        let mut probe = Probe::new(noisy);
        probe.fail_at = Some(fail_at);
        let mut strategy = DraftStrategy::new(probe, config).unwrap();
        match generate(&mut *model, &mut strategy, &prompt, &decode, &mut rng(0)) {
            Ok(out) => prop_assert_eq!(&out.tokens, &plain.tokens),
            Err(e) => prop_assert!(matches!(e, DecodeError::Model(_)), "{e}"),
        }
        strategy.drafter_mut().fail_at = None;
        let again = generate(&mut *model, &mut strategy, &prompt, &decode, &mut rng(0)).unwrap();
        prop_assert_eq!(again.tokens, plain.tokens);
    }
}

/// With a drafter that is always right, a chain evaluates every token of the sequence once:
/// its drafter forwards hold exactly the tokens its cache ends with.
#[test]
fn accepted_drafts_are_never_evaluated_twice() {
    let target = Target::Hash { seed: 5, order: 2 };
    let same = Drafter::Noisy {
        noise: 0.0,
        seed: 0,
    };
    let prompt = [1, 2, 3, 4];
    for k in 1..6 {
        for max_new in [2, 7, 40] {
            let mut model = target.model(24);
            let mut config = DraftConfig::chain();
            config.k = k;
            let mut strategy =
                DraftStrategy::new(Probe::new(same.model(&target, 24)), config).unwrap();
            let out = generate(
                &mut *model,
                &mut strategy,
                &prompt,
                &DecodeConfig::new(max_new),
                &mut rng(0),
            )
            .unwrap();
            let probe = strategy.drafter();
            // Steps that drafted nothing (the last token) leave the drafter behind.
            let undrafted: usize = out
                .stats
                .steps
                .iter()
                .rev()
                .take_while(|s| s.draft_nodes == 1)
                .map(|s| s.emitted)
                .sum();
            let context = prompt.len() + out.tokens.len() - 1;
            assert!(
                context - probe.committed.len() <= 1 + undrafted,
                "k {k}, {max_new} tokens"
            );
            assert_eq!(
                probe.nodes,
                probe.committed.len(),
                "k {k}, {max_new} tokens"
            );
        }
    }
}

#[test]
fn misconfigured_drafters_are_refused() {
    let mut chains = Probe::new(Box::new(HashModel::new(8, 1)) as Box<dyn LogitsModel>);
    chains.chains_only = true;
    let Err(err) = DraftStrategy::new(chains, DraftConfig::tree()) else {
        panic!("a chains-only drafter cannot draft trees");
    };
    assert!(matches!(err, ConfigError::Drafter(_)), "{err}");
    // A chain drafts fine with a chains-only drafter.
    let mut chains = Probe::new(Box::new(HashModel::new(8, 1)) as Box<dyn LogitsModel>);
    chains.chains_only = true;
    let mut target = HashModel::new(8, 1);
    let plain = generate(
        &mut target,
        Plain,
        &[1, 2],
        &DecodeConfig::new(20),
        &mut rng(0),
    )
    .unwrap();
    let strategy = DraftStrategy::new(chains, DraftConfig::chain()).unwrap();
    let out = generate(
        &mut target,
        strategy,
        &[1, 2],
        &DecodeConfig::new(20),
        &mut rng(0),
    )
    .unwrap();
    assert_eq!(out.tokens, plain.tokens);
    // A drafter over another vocabulary.
    let strategy = DraftStrategy::new(HashModel::new(9, 1), DraftConfig::chain()).unwrap();
    let err = generate(
        &mut target,
        strategy,
        &[1, 2],
        &DecodeConfig::new(5),
        &mut rng(0),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::VocabMismatch {
                expected: 8,
                actual: 9
            }
        ),
        "{err}"
    );
}

/// A drafter with a shorter context than the target drafts less near its end, never past it.
#[test]
fn a_drafter_with_a_shorter_context_stops_drafting_at_its_end() {
    let target = Target::Induction { seed: 2 };
    let mut model = target.model(16);
    let prompt: Vec<Token> = (0..10).collect();
    let decode = DecodeConfig::new(40);
    let plain = generate(&mut *model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
    for limit in [9, 10, 11, 20, 30] {
        let drafter =
            decoding_testkit::toy::InductionModel::induction(16, 2).with_max_context(limit);
        for config in [DraftConfig::chain(), DraftConfig::tree()] {
            let strategy = DraftStrategy::new(drafter.clone(), config).unwrap();
            let out = generate(&mut *model, strategy, &prompt, &decode, &mut rng(0)).unwrap();
            assert_eq!(out.tokens, plain.tokens, "limit {limit}");
        }
    }
}
