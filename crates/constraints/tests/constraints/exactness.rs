//! Lossless under the constraint: on a tiny vocabulary, every strategy's exact output
//! distribution under a regex constraint (every random branch enumerated) equals plain
//! constrained sampling's, which equals the product of the masked target probabilities;
//! greedy output is token-identical; and no output breaks the pattern.

use std::collections::BTreeMap;

use decoding_core::process::RepetitionPenalty;
use decoding_core::{
    Composite, DecodeConfig, Draw, NodeBudget, Plain, Sampling, Strategy, Token, enumerate_draws,
    generate, target_probability_with,
};
use decoding_testkit::toy::HashModel;
use lookahead::{Lookahead, LookaheadConfig};
use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use reference::{ReferenceConfig, ReferenceStrategy};

use crate::common::{EOS, Oracle, PATTERNS, RandomDrafts, constraint, obeys};

const VOCAB: usize = 7;
const PROMPT: [Token; 3] = [1, 2, 1];

/// Makes a fresh strategy for each run.
type MakeStrategy = Box<dyn Fn() -> Box<dyn Strategy>>;

fn lookahead() -> Box<dyn Strategy> {
    Box::new(Lookahead::new(LookaheadConfig::new(2, 3, 2)).unwrap())
}

fn prompt_lookup() -> Box<dyn Strategy> {
    let config = ReferenceConfig::prompt_lookup();
    Box::new(ReferenceStrategy::with_documents(config, Vec::<Vec<Token>>::new()).unwrap())
}

/// The strategies compared with plain decoding: random trees, lookahead, prompt lookup, and
/// the three drafting into one tree.
fn strategies(seed: u64) -> Vec<(&'static str, MakeStrategy)> {
    vec![
        (
            "random",
            Box::new(move || Box::new(RandomDrafts::new(seed, 8))),
        ),
        ("lookahead", Box::new(lookahead)),
        ("prompt lookup", Box::new(prompt_lookup)),
        (
            "composite",
            Box::new(move || {
                let sources = vec![
                    lookahead(),
                    prompt_lookup(),
                    Box::new(RandomDrafts::new(seed, 4)),
                ];
                Box::new(Composite::new(sources, NodeBudget::Fixed).unwrap())
            }),
        ),
    ]
}

fn model(seed: u64) -> HashModel {
    HashModel::with_order(VOCAB, seed, 2, 2.0).unwrap()
}

/// The exact distribution of the generated tokens.
fn distribution(
    seed: u64,
    config: &DecodeConfig,
    strategy: &dyn Fn() -> Box<dyn Strategy>,
) -> BTreeMap<Vec<Token>, f64> {
    let mut model = model(seed);
    enumerate_draws(|draw: &mut dyn Draw| {
        generate(&mut model, strategy(), &PROMPT, config, draw)
            .unwrap()
            .tokens
    })
    .unwrap()
}

fn sampling_strategy() -> impl proptest::strategy::Strategy<Value = Sampling> {
    (
        0.5f32..1.5,
        prop::option::of(2usize..5),
        prop::option::of(0.5f32..1.0),
    )
        .prop_map(|(t, k, p)| Sampling::new(t, k, p).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Sampling: every strategy's exact distribution equals plain constrained sampling's,
    /// which is the product of each step's masked target probability; every output obeys
    /// the pattern.
    #[test]
    fn sampled_outputs_have_exactly_the_constrained_distribution(
        seed in any::<u64>(), draft_seed in any::<u64>(), pattern in 0..PATTERNS.len(),
        max_new in 2usize..6, sampling in sampling_strategy(), penalty in any::<bool>(),
    ) {
        let mut config = DecodeConfig::new(max_new)
            .with_eos([EOS])
            .with_sampling(sampling)
            .with_max_nodes(8)
            .with_constraint(constraint(&PATTERNS[pattern]));
        if penalty {
            config = config.with_processor(RepetitionPenalty(1.5));
        }
        let plain = distribution(seed, &config, &|| Box::new(Plain));
        let total: f64 = plain.values().sum();
        prop_assert!((total - 1.0).abs() < 1e-9, "total {}", total);
        let mut target_model = model(seed);
        for (tokens, &p) in &plain {
            if let Err(e) = obeys(&PATTERNS[pattern], tokens) {
                return Err(TestCaseError::fail(e));
            }
            let q = target_probability_with(&mut target_model, &PROMPT, tokens, &config).unwrap();
            prop_assert!((p - q).abs() < 1e-12, "{:?}: enumerated {} target {}", tokens, p, q);
        }
        for (name, strategy) in strategies(draft_seed) {
            let drafted = distribution(seed, &config, &*strategy);
            prop_assert_eq!(plain.len(), drafted.len(), "{}", name);
            for (tokens, p) in &plain {
                let q = drafted.get(tokens).copied().unwrap_or(0.0);
                prop_assert!((p - q).abs() < 1e-12, "{} {:?}: plain {} drafted {}", name, tokens, p, q);
            }
        }
    }

    /// Greedy: every strategy emits plain constrained greedy's tokens, including an oracle
    /// that drafts the unconstrained greedy output (drafts the mask rejects) and one that
    /// drafts the constrained output itself (long acceptances, stops inside a chunk).
    #[test]
    fn greedy_output_is_plain_constrained_greedy(
        seed in any::<u64>(), draft_seed in any::<u64>(), pattern in 0..PATTERNS.len(),
        max_new in 1usize..16, depth in 1usize..6,
    ) {
        let free = DecodeConfig::new(max_new).with_eos([EOS]).with_max_nodes(8);
        let config = free.clone().with_constraint(constraint(&PATTERNS[pattern]));
        let run = |strategy: Box<dyn Strategy>, config: &DecodeConfig| {
            let mut rng = <rand::rngs::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(0);
            generate(&mut model(seed), strategy, &PROMPT, config, &mut rng).unwrap()
        };
        let plain = run(Box::new(Plain), &config).tokens;
        if let Err(e) = obeys(&PATTERNS[pattern], &plain) {
            return Err(TestCaseError::fail(e));
        }
        let unconstrained = run(Box::new(Plain), &free).tokens;
        let oracles = [plain.clone(), unconstrained];
        for continuation in oracles {
            let out = run(Box::new(Oracle { continuation, depth }), &config);
            prop_assert_eq!(&out.tokens, &plain, "oracle");
        }
        for (name, strategy) in strategies(draft_seed) {
            prop_assert_eq!(&run(strategy(), &config).tokens, &plain, "{}", name);
        }
    }
}

/// With the constrained output drafted, the steps accept it: the constraint does not make
/// verification reject valid drafts.
#[test]
fn valid_drafts_are_accepted() {
    let config = DecodeConfig::new(12)
        .with_eos([EOS])
        .with_constraint(constraint(&PATTERNS[4]));
    let mut rng = <rand::rngs::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(0);
    let plain = generate(&mut model(3), Plain, &PROMPT, &config, &mut rng).unwrap();
    let oracle = Oracle {
        continuation: plain.tokens.clone(),
        depth: 4,
    };
    let drafted = generate(&mut model(3), oracle, &PROMPT, &config, &mut rng).unwrap();
    assert_eq!(drafted.tokens, plain.tokens);
    assert_eq!(drafted.stats.steps.len(), plain.tokens.len().div_ceil(5));
}
