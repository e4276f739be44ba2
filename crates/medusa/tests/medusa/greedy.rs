//! Greedy decoding with Medusa equals plain greedy decoding, whatever the heads, the tree,
//! the budget, the stop conditions or the model's tree support.

use std::sync::Arc;

use crate::common::{OracleHeads, arc_heads, rng};
use decoding_core::{CostCurve, DecodeConfig, LogitsModel, Plain, StopReason, Token, generate};
use decoding_testkit::toy::{ChainsOnlyModel, HashModel};
use medusa::{
    Acceptance, CandidateTree, ContextPrior, DynamicTree, HeadSource, Medusa, MedusaConfig,
    RankAccuracies, TreePolicy, TypicalAcceptance,
};
use proptest::prelude::*;

/// Every tree policy, parameterised by `pick` and a node count.
fn policy(pick: u8, nodes: usize, heads: usize) -> TreePolicy {
    let acc = RankAccuracies::new(
        (0..heads)
            .map(|k| {
                (1..=6)
                    .map(|r| (0.5 / (k + 1) as f64 + 0.05 * r as f64).min(1.0))
                    .collect()
            })
            .collect(),
    )
    .unwrap();
    match pick % 7 {
        6 => TreePolicy::Dynamic(
            DynamicTree::new()
                .with_max_nodes(nodes)
                .unwrap()
                .with_context_prior(ContextPrior::default()),
        ),
        5 => {
            let cost = CostCurve::new(vec![(1, 1.0), (2, 1.2), (4, 1.6), (8, 2.4), (64, 14.0)]);
            TreePolicy::Dynamic(DynamicTree::new().with_cost(cost.unwrap()))
        }
        0 => TreePolicy::Dynamic(DynamicTree::new()),
        1 => TreePolicy::Dynamic(
            DynamicTree::new()
                .with_max_nodes(nodes)
                .unwrap()
                .with_min_score(0.01)
                .unwrap(),
        ),
        2 => TreePolicy::Static(CandidateTree::sparse(&acc, nodes).unwrap()),
        3 => TreePolicy::Static(CandidateTree::cartesian(&vec![2; heads.min(3)]).unwrap()),
        _ if heads >= 4 => TreePolicy::Static(CandidateTree::mc_sim_7b_63()),
        _ => TreePolicy::Static(CandidateTree::cartesian(&[3]).unwrap()),
    }
}

fn prompt() -> impl Strategy<Value = Vec<Token>> {
    prop::collection::vec(0u32..3, 1..10)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn library_heads_equal_plain_greedy(
        seed in any::<u64>(), head_seed in any::<u64>(), vocab in 3usize..12,
        d in 1usize..9, heads in 1usize..6, pick in any::<u8>(), nodes in 1usize..40,
        budget in 1usize..70, prompt in prompt(), max_new in 1usize..50, eos in 0u32..12,
        chains in any::<bool>(),
    ) {
        let mut model = HashModel::new(vocab, seed).with_hidden_size(d);
        let config = DecodeConfig::new(max_new).with_eos([eos % vocab as u32]).with_max_nodes(budget);
        let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(0)).unwrap();
        let source = HeadSource::Library(arc_heads(head_seed, heads, d, vocab));
        let medusa = Medusa::new(source, MedusaConfig::new(policy(pick, nodes, heads))).unwrap();
        let out = if chains {
            generate(&mut ChainsOnlyModel(model), medusa, &prompt, &config, &mut rng(0))
        } else {
            generate(&mut model, medusa, &prompt, &config, &mut rng(0))
        }.unwrap();
        prop_assert_eq!(&out.tokens, &plain.tokens);
        prop_assert_eq!(out.stop, plain.stop);
        prop_assert!(out.stats.steps.iter().all(|s| s.draft_nodes <= budget));
    }

    #[test]
    fn engine_heads_equal_plain_greedy_and_stop_inside_chunks(
        seed in any::<u64>(), vocab in 3usize..10, heads in 1usize..6, pick in any::<u8>(),
        nodes in 1usize..40, prompt in prompt(), max_new in 1usize..60, hit in 0.0f64..1.0,
        stop_at in 0usize..40, stop_len in 1usize..3, typical in any::<bool>(),
    ) {
        let inner = HashModel::new(vocab, seed).with_hidden_size(4);
        let mut model = OracleHeads::new(inner, heads, hit);
        let free = generate(&mut model, Plain, &prompt, &DecodeConfig::new(60), &mut rng(0)).unwrap();
        let at = stop_at.min(free.tokens.len() - stop_len);
        let stop = free.tokens[at..at + stop_len].to_vec();
        let config = DecodeConfig::new(max_new).with_stop_sequence(stop.clone());
        let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(0)).unwrap();
        let mut medusa_config = MedusaConfig::new(policy(pick, nodes, heads));
        if typical {
            // Under greedy decoding typical acceptance is exact too.
            let rule = Acceptance::TypicalLossy(TypicalAcceptance::default());
            medusa_config = medusa_config.with_acceptance(rule);
        }
        let medusa = Medusa::new(HeadSource::Engine { num_heads: heads }, medusa_config).unwrap();
        let out = generate(&mut model, medusa, &prompt, &config, &mut rng(0)).unwrap();
        prop_assert_eq!(&out.tokens, &plain.tokens);
        prop_assert_eq!(out.stop, plain.stop);
        prop_assert!(out.tokens.len() <= max_new);
        if out.stop == StopReason::StopSequence(0) {
            prop_assert!(out.tokens.ends_with(&stop));
        }
        prop_assert_eq!(model.committed_len(), prompt.len() + out.tokens.len() - 1);
    }
}

#[test]
fn good_heads_gain_tokens_and_statistics_add_up() {
    let inner = HashModel::new(12, 5).with_hidden_size(4);
    let mut model = OracleHeads::new(inner, 4, 0.9);
    let config = DecodeConfig::new(120);
    let prompt = [1, 2, 3];
    let plain = generate(&mut model, Plain, &prompt, &config, &mut rng(0)).unwrap();
    let medusa = Medusa::new(HeadSource::Engine { num_heads: 4 }, MedusaConfig::default()).unwrap();
    let out = generate(&mut model, medusa, &prompt, &config, &mut rng(0)).unwrap();
    assert_eq!(out.tokens, plain.tokens);
    assert!(out.stats.tau() > 3.0, "tau {}", out.stats.tau());
    let metric = |name: &str| out.metrics.iter().find(|m| m.name == name).map(|m| m.value);
    let head_steps = metric("head_steps").unwrap();
    // Every step but the first (no hidden state yet) and the last (no room to draft).
    let passes = out.stats.forward_passes();
    assert!((passes - 2..passes).contains(&(head_steps as usize)));
    let mean = metric("mean_accepted").unwrap();
    let accepted = out.stats.accepted() as f64;
    assert!(
        (mean * head_steps - accepted).abs() < 1e-9,
        "{mean} * {head_steps} vs {accepted}"
    );
    assert!(metric("head0_rank0").unwrap() > 0.5);
    assert!(metric("accept_rate_depth4").unwrap() > 0.3);
}

#[test]
fn missing_capabilities_and_mismatches_are_errors() {
    let heads = arc_heads(1, 2, 4, 8);
    let config = DecodeConfig::new(10);
    let medusa =
        || Medusa::new(HeadSource::Library(heads.clone()), MedusaConfig::default()).unwrap();
    // No hidden states.
    let mut model = HashModel::new(8, 1);
    assert!(generate(&mut model, medusa(), &[1, 2], &config, &mut rng(0)).is_err());
    // Wrong width of hidden states.
    let mut model = HashModel::new(8, 1).with_hidden_size(5);
    assert!(generate(&mut model, medusa(), &[1, 2], &config, &mut rng(0)).is_err());
    // Wrong vocabulary.
    let mut model = HashModel::new(9, 1).with_hidden_size(4);
    assert!(generate(&mut model, medusa(), &[1, 2], &config, &mut rng(0)).is_err());
    // Engine heads on a model without them.
    let mut model = HashModel::new(8, 1).with_hidden_size(4);
    let engine = Medusa::new(HeadSource::Engine { num_heads: 2 }, MedusaConfig::default()).unwrap();
    assert!(generate(&mut model, engine, &[1, 2], &config, &mut rng(0)).is_err());
    // A static tree deeper than the heads.
    let deep = MedusaConfig::new(TreePolicy::Static(CandidateTree::mc_sim_7b_63()));
    assert!(matches!(
        Medusa::new(HeadSource::Library(Arc::clone(&heads)), deep.clone()),
        Err(medusa::MedusaError::TreeTooDeep { depth: 4, heads: 2 })
    ));
    assert!(Medusa::new(HeadSource::Engine { num_heads: 3 }, deep).is_err());
    // Fewer engine heads than configured.
    let mut model = OracleHeads::new(HashModel::new(8, 1), 2, 0.5);
    let engine = Medusa::new(HeadSource::Engine { num_heads: 3 }, MedusaConfig::default()).unwrap();
    assert!(generate(&mut model, engine, &[1, 2], &config, &mut rng(0)).is_err());
}
