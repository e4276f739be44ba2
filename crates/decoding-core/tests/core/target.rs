//! The whole target under speculation: logits processors, constraints and logprobs give
//! exactly what plain decoding gives, by exact enumeration on tiny vocabularies and by
//! property tests; a failed step leaves the decoder as it was.

use crate::common::{Oracle, RandomDrafts};
use decoding_core::process::{
    FrequencyPenalty, LogitBias, NoRepeatNgram, PresencePenalty, RepetitionPenalty,
};
use decoding_core::{
    Composite, Constraint, ConstraintError, ConstraintState, DecodeConfig, DecodeError, Decoder,
    LogitsModel, LogprobsConfig, LogprobsMode, NodeBudget, NodeId, Plain, Requirements, Sampling,
    StepExtras, StepFeedback, Strategy, Token, TokenTree, enumerate_draws, generate,
    target_probability_with,
};
use decoding_testkit::toy::{ChainsOnlyModel, HashModel};
use ndarray::{Array1, Array2};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

/// A toy grammar: no token may follow itself, and token 0 (the EOS) only after an even
/// number of generated tokens.
#[derive(Debug)]
struct NoStutter;

#[derive(Debug, Clone)]
struct NoStutterState {
    last: Option<Token>,
    generated: usize,
    vocab: usize,
}

impl Constraint for NoStutter {
    fn name(&self) -> &str {
        "no_stutter"
    }

    fn start(
        &self,
        _prompt: &[Token],
        vocab_size: usize,
    ) -> Result<Box<dyn ConstraintState>, ConstraintError> {
        Ok(Box::new(NoStutterState {
            last: None,
            generated: 0,
            vocab: vocab_size,
        }))
    }
}

impl ConstraintState for NoStutterState {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        for token in 0..self.vocab as Token {
            if !self.allows(token) {
                logits[token as usize] = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn allows(&mut self, token: Token) -> bool {
        Some(token) != self.last && (token != 0 || self.generated.is_multiple_of(2))
    }

    fn advance(&mut self, token: Token) -> Result<(), ConstraintError> {
        if !self.allows(token) {
            return Err(ConstraintError::NotAllowed { token });
        }
        self.last = Some(token);
        self.generated += 1;
        Ok(())
    }

    fn fork(&self) -> Box<dyn ConstraintState> {
        Box::new(self.clone())
    }
}

/// Every processor of the library, one configuration each, and the constraint.
fn targets(sampling: Sampling) -> Vec<(&'static str, DecodeConfig)> {
    let base = || DecodeConfig::new(3).with_sampling(sampling).with_eos([0]);
    vec![
        ("none", base()),
        ("repetition", base().with_processor(RepetitionPenalty(1.7))),
        ("frequency", base().with_processor(FrequencyPenalty(0.8))),
        ("presence", base().with_processor(PresencePenalty(1.1))),
        (
            "bias",
            base().with_processor(LogitBias(vec![(1, 1.5), (2, f32::NEG_INFINITY)])),
        ),
        ("no_repeat", base().with_processor(NoRepeatNgram(2))),
        ("constraint", base().with_constraint(NoStutter)),
        (
            "all",
            base()
                .with_processor(RepetitionPenalty(1.3))
                .with_processor(PresencePenalty(0.4))
                .with_constraint(NoStutter),
        ),
    ]
}

fn strategies(seed: u64) -> Vec<(&'static str, Box<dyn Strategy>)> {
    let mut prunable = RandomDrafts::new(seed + 1, 8);
    prunable.prunable = true;
    vec![
        ("plain", Box::new(Plain)),
        ("random", Box::new(RandomDrafts::new(seed, 8))),
        (
            "composite",
            Box::new(
                Composite::new(
                    vec![Box::new(prunable), Box::new(RandomDrafts::new(seed + 2, 5))],
                    NodeBudget::Fixed,
                )
                .unwrap(),
            ),
        ),
    ]
}

/// Exact enumeration: for every processor and the constraint, under sampling with and
/// without truncation, every strategy's output distribution is the target's.
#[test]
fn every_processor_and_mask_is_exact_under_every_strategy() {
    let prompt = [1, 3, 1];
    let samplings = [
        Sampling::new(1.0, None, None).unwrap(),
        Sampling::new(0.7, Some(3), Some(0.9)).unwrap(),
        Sampling::with_temperature(1.3).with_min_p(Some(0.2)),
    ];
    for sampling in samplings {
        for (name, config) in targets(sampling) {
            for (strategy_name, _) in strategies(0) {
                let outputs = enumerate_draws(|draw| {
                    let strategy = strategies(7)
                        .into_iter()
                        .find(|(n, _)| *n == strategy_name)
                        .unwrap()
                        .1;
                    let mut model = HashModel::new(5, 11);
                    generate(&mut model, strategy, &prompt, &config, draw)
                        .unwrap()
                        .tokens
                })
                .unwrap();
                let total: f64 = outputs.values().sum();
                assert!(
                    (total - 1.0).abs() < 1e-9,
                    "{name}/{strategy_name}: {total}"
                );
                let mut model = HashModel::new(5, 11);
                for (output, p) in &outputs {
                    let expected =
                        target_probability_with(&mut model, &prompt, output, &config).unwrap();
                    assert!(
                        (p - expected).abs() < 1e-9,
                        "{name}/{strategy_name}/{sampling:?}: {output:?} has {p}, target {expected}"
                    );
                }
                if name == "constraint" {
                    for output in outputs.keys() {
                        assert!(output.windows(2).all(|w| w[0] != w[1]), "{output:?}");
                    }
                }
            }
        }
    }
}

/// Logprobs are those of plain decoding, bit for bit, in both modes and under sampling.
#[test]
fn logprobs_equal_plain_decodings() {
    let prompt = [2, 4, 2, 4];
    for mode in [LogprobsMode::Processed, LogprobsMode::Sampled] {
        for sampling in [
            Sampling::greedy(),
            Sampling::new(0.8, None, Some(0.95)).unwrap(),
        ] {
            let config = DecodeConfig::new(30)
                .with_sampling(sampling)
                .with_processor(RepetitionPenalty(1.2))
                .with_logprobs(LogprobsConfig::top(3).with_mode(mode));
            let mut model = HashModel::new(9, 4);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
            let plain = generate(&mut model, Plain, &prompt, &config, &mut rng).unwrap();
            assert_eq!(plain.logprobs.len(), plain.tokens.len());
            for (entry, &token) in plain.logprobs.iter().zip(&plain.tokens) {
                assert_eq!(entry.token, token);
                assert_eq!(entry.top.len(), 3);
                assert!(entry.logprob <= 0.0);
            }
            for (name, strategy) in strategies(3) {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
                let out = generate(&mut model, strategy, &prompt, &config, &mut rng).unwrap();
                assert_eq!(out.tokens, plain.tokens, "{name}");
                assert_eq!(out.logprobs, plain.logprobs, "{name} {mode:?}");
            }
        }
    }
}

#[test]
fn logprobs_follow_the_processed_distribution() {
    let config = DecodeConfig::new(1).with_logprobs(LogprobsConfig::top(2));
    let mut model = HashModel::new(6, 1);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let out = generate(&mut model, Plain, &[1, 2], &config, &mut rng).unwrap();
    let mut logits = Array2::zeros((1, 6));
    let mut tree = TokenTree::from_chain(&[1, 2]).unwrap();
    tree.set_needs_logits(0, false);
    model.reset().unwrap();
    model.forward(&tree, logits.view_mut()).unwrap();
    let row = logits.row(0);
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let log_sum = max
        + row
            .iter()
            .map(|&x| (f64::from(x) - max).exp())
            .sum::<f64>()
            .ln();
    let entry = &out.logprobs[0];
    assert!((entry.logprob - (f64::from(row[entry.token as usize]) - log_sum)).abs() < 1e-9);
    assert_eq!(entry.top[0].0, entry.token); // greedy: the best token
}

/// The extras of a step that fail the first time they are read.
struct FlakyExtras {
    failures: usize,
}

impl StepExtras for FlakyExtras {
    fn hidden_state(&mut self, _node: NodeId, out: &mut Array1<f32>) -> Result<(), DecodeError> {
        if self.failures > 0 {
            self.failures -= 1;
            return Err(DecodeError::MissingCapability(
                "final hidden states (flaky)",
            ));
        }
        *out = Array1::zeros(4);
        Ok(())
    }

    fn head_logits(&mut self, _node: NodeId, _out: &mut Array2<f32>) -> Result<(), DecodeError> {
        Err(DecodeError::MissingCapability("decoding-head logits"))
    }
}

/// A drafter that needs hidden states (as Medusa heads run by the library do).
struct NeedsHidden(Oracle);

impl Strategy for NeedsHidden {
    fn name(&self) -> &str {
        "needs_hidden"
    }
    fn begin(&mut self, prompt: &[Token], vocab: usize) -> Result<(), DecodeError> {
        self.0.begin(prompt, vocab)
    }
    fn draft(
        &mut self,
        ctx: &decoding_core::DraftContext<'_>,
        tree: &mut TokenTree,
    ) -> Result<(), DecodeError> {
        self.0.draft(ctx, tree)
    }
    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        assert!(feedback.hidden_state.is_some());
        self.0.observe(feedback)
    }
    fn requirements(&self) -> Requirements {
        Requirements::HIDDEN_STATE
    }
}

/// Issue 16, item 1: `advance` appended the emitted tokens before reading the extras, so a
/// retry after an extras error emitted the same step twice. Now a failed `advance` leaves
/// the decoder as before, constraint state and logprobs included, and a retry with the
/// same logits emits the step once.
#[test]
fn issue16_failed_advance_leaves_the_decoder_unchanged() {
    let prompt = [1, 2, 3];
    let mut model = HashModel::new(7, 3);
    let config = DecodeConfig::new(12)
        .with_constraint(NoStutter)
        .with_logprobs(LogprobsConfig::top(1));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let plain = generate(&mut model, Plain, &prompt, &config, &mut rng).unwrap();
    let oracle = Oracle {
        continuation: plain.tokens.clone(),
        depth: 4,
    };
    let mut decoder = Decoder::new(NeedsHidden(oracle), config);
    model.reset().unwrap();
    decoder
        .start(&prompt, 7, model.tree_support(), model.max_context())
        .unwrap();
    let mut retries = 0;
    while !decoder.is_finished() {
        let tree = decoder.propose().unwrap().clone();
        let mut logits = Array2::zeros((tree.logits_rows(), 7));
        model.forward(&tree, logits.view_mut()).unwrap();
        let before = (decoder.tokens().to_vec(), decoder.logprobs().len());
        let mut flaky = FlakyExtras { failures: 1 };
        let err = decoder.advance(logits.view(), &mut flaky, &mut rng);
        assert!(err.is_err());
        assert_eq!(
            (decoder.tokens().to_vec(), decoder.logprobs().len()),
            before
        );
        retries += 1;
        let outcome = decoder
            .advance(logits.view(), &mut flaky, &mut rng)
            .unwrap();
        let path = outcome.commit_path.to_vec();
        model.commit(&path).unwrap();
        decoder.check_committed(model.committed_len()).unwrap();
    }
    assert!(retries > 0);
    assert_eq!(decoder.generated(), &plain.tokens[..]);
    assert_eq!(decoder.logprobs(), &plain.logprobs[..]);
}

/// Speculation can be switched off and on between steps; the output does not change.
#[test]
fn speculation_switches_per_step() {
    let prompt = [3, 1, 4, 1, 5];
    let mut model = HashModel::new(8, 6);
    let config = DecodeConfig::new(40);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let plain = generate(&mut model, Plain, &prompt, &config, &mut rng).unwrap();
    let oracle = Oracle {
        continuation: plain.tokens.clone(),
        depth: 5,
    };
    let mut decoder = Decoder::new(oracle, config);
    model.reset().unwrap();
    decoder
        .start(&prompt, 8, model.tree_support(), model.max_context())
        .unwrap();
    let mut step = 0;
    while !decoder.is_finished() {
        decoder.set_speculation(step % 3 != 1);
        let speculating = decoder.speculation();
        let tree = decoder.propose().unwrap().clone();
        if !speculating {
            assert_eq!(tree.logits_rows(), 1, "the root alone");
        }
        let mut logits = Array2::zeros((tree.logits_rows(), 8));
        model.forward(&tree, logits.view_mut()).unwrap();
        let outcome = decoder
            .advance(logits.view(), &mut decoding_core::NoExtras, &mut rng)
            .unwrap();
        let (emitted, path) = (outcome.emitted.len(), outcome.commit_path.to_vec());
        if !speculating {
            assert_eq!(emitted, 1);
        }
        model.commit(&path).unwrap();
        step += 1;
    }
    assert_eq!(decoder.generated(), &plain.tokens[..]);
    assert!(decoder.stats().forward_passes() < plain.stats.forward_passes());
}

fn processors_config(max_new: usize, choice: u8) -> DecodeConfig {
    let config = DecodeConfig::new(max_new).with_eos([0]);
    match choice % 6 {
        0 => config.with_processor(RepetitionPenalty(1.5)),
        1 => config.with_processor(FrequencyPenalty(0.7)),
        2 => config.with_processor(PresencePenalty(0.9)),
        3 => config.with_processor(NoRepeatNgram(3)),
        4 => config.with_constraint(NoStutter),
        _ => config
            .with_processor(LogitBias(vec![(1, 2.0)]))
            .with_processor(RepetitionPenalty(1.1))
            .with_constraint(NoStutter),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Greedy identity with processors and masks, for random drafts on trees and chains.
    #[test]
    fn greedy_identity_with_processors(
        seed in any::<u64>(), vocab in 3usize..12, max_new in 1usize..30, choice in any::<u8>(),
        prompt in prop::collection::vec(1u32..12, 1..8), chains in any::<bool>(),
    ) {
        let prompt: Vec<Token> = prompt.iter().map(|t| 1 + t % (vocab as Token - 1)).collect();
        let config = processors_config(max_new, choice);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let plain = generate(&mut HashModel::new(vocab, seed), Plain, &prompt, &config, &mut rng)
            .unwrap();
        for (name, strategy) in strategies(seed) {
            let out = if chains {
                let mut model = ChainsOnlyModel(HashModel::new(vocab, seed));
                generate(&mut model, strategy, &prompt, &config, &mut rng)
            } else {
                generate(&mut HashModel::new(vocab, seed), strategy, &prompt, &config, &mut rng)
            };
            prop_assert_eq!(&out.unwrap().tokens, &plain.tokens, "{}", name);
        }
    }
}
