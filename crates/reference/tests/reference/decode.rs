//! Decoding with every mode equals plain decoding: greedy token for token, sampling seed for
//! seed.

use decoding_core::{CostCurve, DecodeConfig, LogitsModel, Plain, Sampling, Token, generate};
use decoding_testkit::toy::{ChainsOnlyModel, HashModel, InductionModel};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use reference::{Mode, ReferenceConfig, ReferenceStrategy};

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

fn mode_strategy() -> impl Strategy<Value = ReferenceConfig> {
    (
        (0usize..4, 1usize..40, 1usize..3, any::<bool>()),
        (0.0f32..0.5, 0.5f32..4.0, any::<bool>()),
    )
        .prop_map(|((mode, k, n, periodic), (min_prob, factor, costly))| {
            let mut c = match mode {
                0 => ReferenceConfig::suffix(),
                1 => {
                    let mut c = ReferenceConfig::suffix();
                    c.tree = false;
                    c
                }
                2 => ReferenceConfig::llma(),
                _ => ReferenceConfig::prompt_lookup(),
            };
            c.k = k;
            if c.mode == Mode::PromptLookup {
                c.max_match = n;
            } else {
                c.min_match = n;
                c.max_match = c.max_match.max(n);
            }
            c.periodic = periodic;
            c.min_prob = min_prob;
            c.depth_factor = factor;
            if costly {
                c.cost = Some(CostCurve::new(vec![(1, 1.0), (2, 1.4), (8, 2.0)]).unwrap());
            }
            c
        })
}

/// Reference documents: random tokens, and pieces of the text the model will produce (so
/// that drafts are accepted, partly).
fn documents(noise: &[Vec<Token>], future: &[Token], cut: usize) -> Vec<Vec<Token>> {
    let mut docs = noise.to_vec();
    let cut = cut.min(future.len());
    docs.push(future[cut / 2..cut].to_vec());
    docs.push(future[cut..].iter().rev().copied().collect());
    docs
}

fn run(
    model: &mut dyn LogitsModel,
    config: &ReferenceConfig,
    docs: &[Vec<Token>],
    prompt: &[Token],
    decode: &DecodeConfig,
    seed: u64,
) -> decoding_core::Generation {
    let strategy = ReferenceStrategy::with_documents(config.clone(), docs).unwrap();
    generate(model, strategy, prompt, decode, &mut rng(seed)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn greedy_output_equals_plain(
        seed in any::<u64>(), vocab in 2usize..24, induction in any::<bool>(),
        prompt in prop::collection::vec(0u32..24, 1..20),
        noise in prop::collection::vec(prop::collection::vec(0u32..24, 0..16), 0..3),
        cut in 0usize..60, max_new in 1usize..60, nodes in 1usize..40, chains in any::<bool>(),
        eos in prop::option::of(0u32..24), config in mode_strategy(),
    ) {
        let vocab_t = vocab as Token;
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab_t).collect();
        let mut decode = DecodeConfig::new(max_new).with_max_nodes(nodes);
        if let Some(eos) = eos {
            decode = decode.with_eos([eos % vocab_t]);
        }
        let mut model: Box<dyn LogitsModel> = if induction {
            Box::new(InductionModel::induction(vocab, seed))
        } else {
            Box::new(HashModel::new(vocab, seed))
        };
        let free = generate(&mut *model, Plain, &prompt, &DecodeConfig::new(80), &mut rng(0))
            .unwrap();
        // Out-of-vocabulary reference tokens must never be drafted.
        let mut noise = noise;
        noise.push(vec![vocab_t, vocab_t + 1]);
        let docs = documents(&noise, &free.tokens, cut);
        let plain = generate(&mut *model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
        let out = if chains {
            run(&mut ChainsOnlyModel(model), &config, &docs, &prompt, &decode, 0)
        } else {
            run(&mut *model, &config, &docs, &prompt, &decode, 0)
        };
        prop_assert_eq!(&out.tokens, &plain.tokens);
        prop_assert_eq!(out.stop, plain.stop);
        prop_assert!(out.stats.forward_passes() <= plain.stats.forward_passes());
    }

    #[test]
    fn sampling_is_seed_identical_to_plain(
        seed in any::<u64>(), sample_seed in any::<u64>(), vocab in 2usize..12,
        prompt in prop::collection::vec(0u32..12, 1..16), max_new in 1usize..40,
        temperature in 0.2f32..1.5, top_k in prop::option::of(1usize..8),
        top_p in prop::option::of(0.3f32..1.0), config in mode_strategy(), cut in 0usize..40,
    ) {
        let prompt: Vec<Token> = prompt.iter().map(|t| t % vocab as Token).collect();
        let sampling = Sampling::new(temperature, top_k, top_p).unwrap();
        let decode = DecodeConfig::new(max_new).with_sampling(sampling).with_max_nodes(24);
        let mut model = InductionModel::induction(vocab, seed);
        let free = generate(&mut model, Plain, &prompt, &DecodeConfig::new(60), &mut rng(0))
            .unwrap();
        let docs = documents(&[], &free.tokens, cut);
        let plain = generate(&mut model, Plain, &prompt, &decode, &mut rng(sample_seed)).unwrap();
        let out = run(&mut model, &config, &docs, &prompt, &decode, sample_seed);
        prop_assert_eq!(out.tokens, plain.tokens);
    }

    #[test]
    fn stop_sequences_are_honoured_inside_copied_spans(
        seed in any::<u64>(), prompt in prop::collection::vec(0u32..8, 1..10),
        at in 0usize..50, stop_len in 1usize..4, max_new in 1usize..60,
        config in mode_strategy(),
    ) {
        let mut model = InductionModel::induction(8, seed);
        let free = generate(&mut model, Plain, &prompt, &DecodeConfig::new(60), &mut rng(0))
            .unwrap();
        let at = at.min(free.tokens.len() - stop_len);
        let stop = free.tokens[at..at + stop_len].to_vec();
        let decode = DecodeConfig::new(max_new).with_stop_sequence(stop);
        let docs = vec![free.tokens.clone()];
        let plain = generate(&mut model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
        let out = run(&mut model, &config, &docs, &prompt, &decode, 0);
        prop_assert_eq!(&out.tokens, &plain.tokens);
        prop_assert_eq!(out.stop, plain.stop);
    }
}

/// Copying the whole future from a reference: every mode accepts long drafts.
#[test]
fn copying_the_future_saves_forward_passes() {
    let mut model = InductionModel::induction(64, 11);
    let prompt: Vec<Token> = vec![3, 1, 4, 1, 5, 9, 2, 6];
    let decode = DecodeConfig::new(100);
    let free = generate(&mut model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
    let mut doc = prompt[prompt.len() - 3..].to_vec();
    doc.extend_from_slice(&free.tokens);
    for config in [
        ReferenceConfig::suffix(),
        ReferenceConfig::llma(),
        ReferenceConfig::prompt_lookup(),
    ] {
        let mut config = config;
        config.references = true;
        let out = run(&mut model, &config, &[doc.clone()], &prompt, &decode, 0);
        assert_eq!(out.tokens, free.tokens);
        let passes = out.stats.forward_passes();
        assert!(
            passes * 3 < free.stats.forward_passes(),
            "{:?}: {passes}",
            config.mode
        );
        let metric = |name: &str| out.metrics.iter().find(|m| m.name == name).unwrap().value;
        assert!(metric("match_len") >= 1.0);
        assert!(metric("accepted_per_step") > 1.0);
        assert!(metric("draft_nodes") >= metric("draft_depth"));
    }
}

/// A looping output is continued around its loop, so drafts outgrow the period.
#[test]
fn loops_are_drafted_beyond_their_period() {
    // Generates 0 1 2 3 4 0 1 2 3 4 ... whatever the rest of the context.
    let mut model =
        decoding_testkit::toy::RecomputeModel::new(8, |ctx: &[Token], out: &mut [f32]| {
            out.fill(0.0);
            out[(ctx[ctx.len() - 1] as usize + 1) % 5] = 1.0;
        });
    let decode = DecodeConfig::new(120);
    let prompt = [0, 1, 2, 3, 4, 0, 1];
    let periodic = run(
        &mut model,
        &ReferenceConfig::suffix(),
        &[],
        &prompt,
        &decode,
        0,
    );
    let mut flat = ReferenceConfig::suffix();
    flat.periodic = false;
    let bounded = run(&mut model, &flat, &[], &prompt, &decode, 0);
    assert_eq!(periodic.tokens, bounded.tokens);
    assert!(periodic.stats.steps.iter().any(|s| s.accepted > 5));
    assert!(periodic.stats.forward_passes() < bounded.stats.forward_passes());
}

#[test]
fn invalid_configs_are_errors() {
    let mut c = ReferenceConfig::suffix();
    c.k = 0;
    assert!(ReferenceStrategy::with_documents(c, [[1u32]]).is_err());
    let mut c = ReferenceConfig::suffix();
    c.depth_factor = f32::NAN;
    assert!(ReferenceStrategy::with_documents(c, [[1u32]]).is_err());
}

/// Inside a composite that cuts drafted nodes to a budget (NaN rows for the cut ones), the
/// strategy still learns and the output is still plain greedy.
#[test]
fn composite_pruning_is_lossless() {
    use decoding_core::{Composite, NodeBudget};
    let mut model = InductionModel::induction(32, 5);
    let prompt: Vec<Token> = vec![1, 2, 3, 4, 5, 6, 7, 1, 2, 3];
    let decode = DecodeConfig::new(80).with_max_nodes(6);
    let plain = generate(&mut model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
    let docs = vec![plain.tokens[10..40].to_vec(), plain.tokens[5..25].to_vec()];
    for budget in [
        NodeBudget::Fixed,
        NodeBudget::CostAware(CostCurve::new(vec![(1, 1.0), (2, 1.5), (6, 2.5)]).unwrap()),
    ] {
        let source = ReferenceStrategy::with_documents(ReferenceConfig::suffix(), &docs).unwrap();
        let composite = Composite::new(vec![Box::new(source)], budget).unwrap();
        let out = generate(&mut model, composite, &prompt, &decode, &mut rng(0)).unwrap();
        assert_eq!(out.tokens, plain.tokens);
        assert!(out.stats.forward_passes() < plain.stats.forward_passes());
    }
}
