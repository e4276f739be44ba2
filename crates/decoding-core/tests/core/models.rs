//! Every caching toy model agrees with the recompute adapter on random trees and commits.

use crate::common::random_tree;
use decoding_core::{LogitsModel, NodeId, Token, TokenTree};
use decoding_testkit::toy::{
    ContextLogits, HashModel, InductionModel, NgramModel, RecomputeModel, WindowLogits,
    WindowModel, WithCost,
};
use ndarray::{Array1, Array2};
use proptest::prelude::*;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use std::time::Duration;

/// The hidden state a model should expose for a whole context.
type HiddenOf<'a> = &'a dyn Fn(&[Token], &mut [f32]);

/// Drives both models through the same random forwards, commits and truncations, checking
/// that every logits row (and hidden state, when `hidden` is set) is bit-identical.
fn agree(
    cached: &mut dyn LogitsModel,
    reference: &mut dyn LogitsModel,
    seed: u64,
    vocab: u32,
    hidden: Option<HiddenOf<'_>>,
) -> Result<(), TestCaseError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut committed: Vec<Token> = Vec::new();
    for _round in 0..12 {
        let root = rng.random_range(0..vocab);
        let tree = random_tree(&mut rng, root, vocab, 10);
        let mut a = Array2::zeros((tree.logits_rows(), vocab as usize));
        let mut b = a.clone();
        cached.forward(&tree, a.view_mut()).unwrap();
        reference.forward(&tree, b.view_mut()).unwrap();
        prop_assert_eq!(&a, &b);
        if let Some(hidden_of) = hidden {
            let states = cached.hidden_states().unwrap();
            let mut h = Array1::zeros(states.hidden_size());
            let mut expected = vec![0.0; states.hidden_size()];
            for node in tree.logits_nodes() {
                states.hidden_state(node, h.view_mut()).unwrap();
                let mut context = committed.clone();
                context.extend(tree.path_tokens(node));
                hidden_of(&context, &mut expected);
                prop_assert_eq!(h.as_slice().unwrap(), &expected[..]);
            }
        }
        match rng.random_range(0..10) {
            0 => {
                // Drop the whole tree.
                cached.commit(&[]).unwrap();
                reference.commit(&[]).unwrap();
            }
            1 if !committed.is_empty() => {
                let len = rng.random_range(0..committed.len());
                cached.truncate(len).unwrap();
                reference.truncate(len).unwrap();
                committed.truncate(len);
            }
            _ => {
                let node: NodeId = rng.random_range(0..tree.len());
                let mut path = Vec::new();
                tree.path_to(node, &mut path);
                cached.commit(&path).unwrap();
                reference.commit(&path).unwrap();
                committed.extend(tree.path_tokens(node));
            }
        }
        prop_assert_eq!(cached.committed_len(), committed.len());
        prop_assert_eq!(reference.committed_len(), committed.len());
    }
    Ok(())
}

fn reference_of<L: WindowLogits + Clone>(
    model: &WindowModel<L>,
) -> RecomputeModel<impl ContextLogits + use<L>> {
    let window = model.clone();
    RecomputeModel::new(model.vocab_size(), move |ctx: &[Token], out: &mut [f32]| {
        window.logits_of_context(ctx, out)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hash_model_agrees_with_recompute(seed in any::<u64>(), vocab in 1u32..8, order in 1usize..5) {
        let mut model = HashModel::with_order(vocab as usize, seed, order, 4.0).unwrap().with_hidden_size(5);
        let mut reference = reference_of(&model);
        let probe = model.clone();
        let hidden = move |ctx: &[Token], out: &mut [f32]| probe.hidden_of_context(ctx, out);
        agree(&mut model, &mut reference, seed, vocab, Some(&hidden))?;
    }

    #[test]
    fn ngram_model_agrees_with_recompute(
        seed in any::<u64>(), text in prop::collection::vec(0u32..5, 0..60), order in 1usize..5,
    ) {
        let mut model = NgramModel::from_text(5, order, &text).unwrap();
        let mut reference = reference_of(&model);
        agree(&mut model, &mut reference, seed, 5, None)?;
    }

    #[test]
    fn wrappers_are_transparent(seed in any::<u64>()) {
        let mut model = WithCost::new(InductionModel::induction(6, seed), Duration::ZERO, Duration::ZERO);
        let mut reference = InductionModel::induction(6, seed);
        agree(&mut model, &mut reference, seed, 6, None)?;
    }
}

#[test]
fn commit_protocol_is_enforced() {
    let mut model = HashModel::new(4, 1);
    assert!(model.commit(&[0]).is_err(), "commit without a forward");
    let tree = TokenTree::from_parents(&[1, 2, 3], &[None, Some(0), Some(0)], None).unwrap();
    let mut logits = Array2::zeros((3, 4));
    model.forward(&tree, logits.view_mut()).unwrap();
    assert!(model.commit(&[0, 1, 2]).is_err(), "not a path");
    model.forward(&tree, logits.view_mut()).unwrap();
    model.commit(&[0, 2]).unwrap();
    assert!(model.commit(&[0]).is_err(), "second commit");
    assert_eq!(model.committed_len(), 2);
    assert!(model.truncate(3).is_err());
    let bad = TokenTree::from_chain(&[9]).unwrap();
    assert!(
        model
            .forward(&bad, Array2::zeros((1, 4)).view_mut())
            .is_err(),
        "token outside vocab"
    );
    assert!(
        model
            .forward(&tree, Array2::zeros((2, 4)).view_mut())
            .is_err(),
        "wrong logits shape"
    );
}

#[test]
fn rollout_heads_predict_the_greedy_continuation() {
    use decoding_core::{DecodeConfig, Plain, argmax, generate};
    use decoding_testkit::toy::WithRolloutHeads;
    let prompt = [1, 2, 3];
    let mut plain_model = InductionModel::induction(16, 4);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let free = generate(
        &mut plain_model,
        Plain,
        &prompt,
        &DecodeConfig::new(8),
        &mut rng,
    )
    .unwrap();
    let mut model =
        WithRolloutHeads::new(InductionModel::induction(16, 4), vec![1.0, 1.0, 0.0], 9).unwrap();
    let tree = TokenTree::from_chain(&prompt).unwrap();
    let mut logits = Array2::zeros((3, 16));
    model.forward(&tree, logits.view_mut()).unwrap();
    let heads = LogitsModel::head_logits(&mut model).unwrap();
    let mut out = Array2::zeros((3, 16));
    heads.head_logits(2, out.view_mut()).unwrap();
    // At the last prompt token the base predicts free[0]; head k predicts free[k + 1].
    assert_eq!(argmax(out.row(0).as_slice().unwrap()), Some(free.tokens[1]));
    assert_eq!(argmax(out.row(1).as_slice().unwrap()), Some(free.tokens[2]));
    assert!(WithRolloutHeads::new(InductionModel::induction(4, 1), vec![1.5], 0).is_err());
}

#[test]
fn cost_curves_are_measured_on_a_model_and_leave_its_cache_empty() {
    let mut model = HashModel::new(8, 1);
    let curve = decoding_core::CostCurve::measure(&mut model, &[1, 2, 3], &[1, 4], 3).unwrap();
    assert_eq!(curve.points().len(), 2);
    assert_eq!(model.committed_len(), 0);
}
