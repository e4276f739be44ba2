//! Every strategy the specifications build, alone and composed, on toy models: greedy output
//! equals plain greedy on chains-only models, and sampling several sequences one after the
//! other with one generator equals plain sampling's output (issue 18's general cases).

use decoding_core::{DecodeConfig, LogitsModel, Plain, Sampling, Token, generate};
use decoding_testkit::toy::{ChainsOnlyModel, InductionModel, WithRolloutHeads};
use parallel_decoding::spec::{self, CaseInputs, SpecEnv};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

/// Specifications covering every strategy, its main modes, and composites of them.
const SPECS: &[&str] = &[
    "greedy",
    "jacobi:k=4",
    "lookahead:w=4,n=3,g=4",
    "lookahead:w=3,n=4,g=3,pool=prompt",
    "reference",
    "reference:mode=llma",
    "reference:mode=pld",
    "medusa:heads=engine:3",
    "medusa:heads=engine:3,tree=cartesian:2x2x2",
    "composite:sources=reference+medusa:heads=engine:3",
    "composite:sources=jacobi:k=3+jacobi:k=5",
    "composite:sources=lookahead:w=3;n=3;g=3+reference+jacobi:k=2",
];

fn model(vocab: usize, seed: u64) -> WithRolloutHeads<decoding_testkit::toy::InductionLogits> {
    WithRolloutHeads::new(
        InductionModel::induction(vocab, seed),
        vec![0.9, 0.6, 0.3],
        seed,
    )
    .unwrap()
}

fn build(spec_text: &str, vocab: usize, prompt: &[Token]) -> Box<dyn decoding_core::Strategy> {
    let env = SpecEnv::new(vocab);
    let factory = spec::parse(spec_text, &env).unwrap_or_else(|e| panic!("{spec_text}: {e}"));
    factory
        .build(&CaseInputs {
            prompt,
            references: &[],
        })
        .unwrap()
}

/// The exact reproduction of issue 18, item 1: two Jacobi sources with different pad tokens
/// on a chains-only model failed with `NotAChain`.
#[test]
fn issue18_two_jacobi_sources_on_a_chains_only_model() {
    let mut model = ChainsOnlyModel(decoding_testkit::toy::HashModel::new(4, 1));
    let config = DecodeConfig::new(5);
    let prompt = [1, 2, 3];
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let plain = generate(&mut model, Plain, &prompt, &config, &mut rng).unwrap();
    let jacobi = |pad| {
        let init = jacobi::Init::Pad(pad);
        Box::new(jacobi::Jacobi::new(jacobi::JacobiConfig::new(3).with_init(init)).unwrap())
            as Box<dyn decoding_core::Strategy>
    };
    let composite =
        decoding_core::Composite::new(vec![jacobi(0), jacobi(2)], decoding_core::NodeBudget::Fixed)
            .unwrap();
    let out = generate(&mut model, composite, &prompt, &config, &mut rng).unwrap();
    assert_eq!(out.tokens, plain.tokens);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Every specification on a chains-only model equals plain greedy.
    #[test]
    fn every_strategy_on_chains_only_models_equals_plain_greedy(
        seed in any::<u64>(), vocab in 3usize..16, max_new in 1usize..40,
        prompt in prop::collection::vec(0u32..16, 1..12), budget in 1usize..40,
    ) {
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let config = DecodeConfig::new(max_new).with_max_nodes(budget);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let plain = generate(&mut model(vocab, seed), Plain, &prompt, &config, &mut rng).unwrap();
        for spec_text in SPECS {
            let mut chains = ChainsOnlyModel(model(vocab, seed));
            let strategy = build(spec_text, vocab, &prompt);
            let out = generate(&mut chains, strategy, &prompt, &config, &mut rng);
            let out = out.unwrap_or_else(|e| panic!("{spec_text}: {e}"));
            prop_assert_eq!(&out.tokens, &plain.tokens, "{}", spec_text);
        }
    }

    /// Several sequences decoded one after another with one generator: every strategy emits
    /// what plain sampling emits, sequence by sequence, because each consumes exactly one
    /// draw per emitted token (stop conditions inside accepted chunks included).
    #[test]
    fn one_generator_over_several_sequences_matches_plain_sampling(
        seed in any::<u64>(), vocab in 3usize..12, max_new in 1usize..25,
        prompts in prop::collection::vec(prop::collection::vec(0u32..12, 1..8), 2..4),
        eos in 0u32..12, temperature in 0.3f32..1.5, top_p in prop::option::of(0.5f32..1.0),
    ) {
        let sampling = Sampling::new(temperature, None, top_p).unwrap();
        let config = DecodeConfig::new(max_new)
            .with_sampling(sampling)
            .with_eos([eos % vocab as Token]);
        let prompts: Vec<Vec<Token>> = prompts
            .iter()
            .map(|p| p.iter().map(|t| t % vocab as Token).collect())
            .collect();
        let decode_all = |spec_text: &str| -> Vec<Vec<Token>> {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let mut m = model(vocab, seed);
            prompts
                .iter()
                .map(|prompt| {
                    let strategy = build(spec_text, vocab, prompt);
                    let m: &mut dyn LogitsModel = &mut m;
                    generate(m, strategy, prompt, &config, &mut rng)
                        .unwrap_or_else(|e| panic!("{spec_text}: {e}"))
                        .tokens
                })
                .collect()
        };
        let plain = decode_all("greedy");
        for spec_text in SPECS.iter().skip(1) {
            prop_assert_eq!(&decode_all(spec_text), &plain, "{}", spec_text);
        }
    }
}
