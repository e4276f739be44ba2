//! Candidate tree construction: validity, budgets, and the optimality of sparse trees.

use crate::common::{OracleHeads, rng};
use decoding_core::{DecodeConfig, DraftContext, Strategy as _, TokenTree, generate};
use decoding_testkit::toy::HashModel;
use medusa::{
    CandidateTree, DynamicTree, HeadSource, Medusa, MedusaConfig, RankAccuracies, TreePolicy,
};
use proptest::prelude::*;

/// Random cumulative accuracies: non-decreasing lists in [0, 1].
fn accuracies() -> impl Strategy<Value = RankAccuracies> {
    prop::collection::vec(prop::collection::vec(0.0f64..0.3, 1..8), 1..5).prop_map(|heads| {
        let cumulative = heads
            .into_iter()
            .map(|steps| {
                let mut total = 0.0f64;
                steps
                    .into_iter()
                    .map(|s| {
                        total = (total + s).min(1.0);
                        total
                    })
                    .collect()
            })
            .collect();
        RankAccuracies::new(cumulative).unwrap()
    })
}

/// Checks parent order, depth bookkeeping and distinct sibling ranks.
fn check_valid(tree: &CandidateTree) -> Result<(), TestCaseError> {
    let nodes = tree.nodes();
    prop_assert_eq!(nodes[0].depth, 0);
    for (i, n) in nodes.iter().enumerate().skip(1) {
        prop_assert!(n.parent < i);
        prop_assert_eq!(n.depth, nodes[n.parent].depth + 1);
        prop_assert!(n.depth <= tree.max_depth());
    }
    let mut choices = tree.choices();
    let count = choices.len();
    choices.sort();
    choices.dedup();
    prop_assert_eq!(choices.len(), count, "duplicate choices");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sparse_trees_are_valid_and_best_for_their_size(acc in accuracies(), nodes in 1usize..40) {
        let tree = CandidateTree::sparse(&acc, nodes).unwrap();
        check_valid(&tree)?;
        prop_assert!(tree.len() <= nodes);
        prop_assert!(tree.check_heads(acc.num_heads()).is_ok());
        // Growing by one node never lowers the expected acceptance, and no other tree of the
        // same size built from the same ranks does better (checked against Cartesian trees
        // and the paper's preset cut to the same size).
        let bigger = CandidateTree::sparse(&acc, nodes + 1).unwrap();
        prop_assert!(bigger.expected_accepted(&acc) >= tree.expected_accepted(&acc) - 1e-12);
        let best = tree.expected_accepted(&acc);
        let mut others = vec![CandidateTree::mc_sim_7b_63()];
        for w in 1..4 {
            others.push(CandidateTree::cartesian(&vec![w; acc.num_heads()]).unwrap());
        }
        for other in others {
            let cut = CandidateTree::from_choices(&other.choices()[..(tree.len() - 1).min(other.len() - 1)]).unwrap();
            prop_assert!(cut.expected_accepted(&acc) <= best + 1e-12);
        }
    }

    #[test]
    fn choices_round_trip(widths in prop::collection::vec(1usize..4, 1..4)) {
        let tree = CandidateTree::cartesian(&widths).unwrap();
        check_valid(&tree)?;
        let expected: usize = (1..=widths.len()).map(|d| widths[..d].iter().product::<usize>()).sum();
        prop_assert_eq!(tree.len(), 1 + expected);
        prop_assert_eq!(CandidateTree::from_choices(&tree.choices()).unwrap(), tree);
    }

    #[test]
    fn drafted_trees_respect_budget_depth_and_heads(
        seed in any::<u64>(), vocab in 3usize..30, heads in 1usize..6, budget in 1usize..80,
        max_depth in 0usize..8, cap in 1usize..80, min_score in 0.0f32..0.2, pick in 0u8..3,
    ) {
        let mut model = OracleHeads::new(HashModel::new(vocab, seed).with_hidden_size(3), heads, 0.5);
        let policy = match pick {
            0 => TreePolicy::Dynamic(DynamicTree::new().with_max_nodes(cap).unwrap().with_min_score(min_score).unwrap()),
            1 => TreePolicy::Static(CandidateTree::cartesian(&vec![3; heads]).unwrap()),
            _ => TreePolicy::Static(CandidateTree::from_choices(&CandidateTree::mc_sim_7b_63().choices().into_iter().filter(|c| c.len() <= heads).collect::<Vec<_>>()).unwrap()),
        };
        // Run a few steps so the strategy holds head predictions, then draft directly.
        let mut medusa = Medusa::new(HeadSource::Engine { num_heads: heads }, MedusaConfig::new(policy)).unwrap();
        let out = generate(&mut model, &mut medusa, &[1, 2], &DecodeConfig::new(5), &mut rng(0)).unwrap();
        let tokens: Vec<u32> = [1, 2].into_iter().chain(out.tokens).collect();
        let ctx = DraftContext::new(&tokens, 2, budget, max_depth, vocab);
        let mut tree = TokenTree::new(ctx.pending());
        medusa.draft(&ctx, &mut tree).unwrap();
        prop_assert!(tree.len() <= budget);
        if pick == 0 {
            prop_assert!(tree.len() <= cap);
        }
        prop_assert!(tree.max_depth() <= max_depth.min(heads));
        prop_assert!(tree.check_vocab(vocab).is_ok());
        prop_assert_eq!(tree.root_token(), ctx.pending());
    }
}

#[test]
fn dynamic_trees_follow_confidence() {
    // Heads that are always right and confident: the dynamic tree is one deep chain first.
    let mut model = OracleHeads::new(HashModel::new(50, 3).with_hidden_size(3), 4, 1.0);
    let mut medusa =
        Medusa::new(HeadSource::Engine { num_heads: 4 }, MedusaConfig::default()).unwrap();
    let out = generate(
        &mut model,
        &mut medusa,
        &[1, 2],
        &DecodeConfig::new(40),
        &mut rng(0),
    )
    .unwrap();
    // Every step after the first accepts four drafts.
    assert!(
        out.stats.steps[1..]
            .iter()
            .filter(|s| s.emitted == 5)
            .count()
            >= 6
    );
    let tokens: Vec<u32> = [1, 2].into_iter().chain(out.tokens).collect();
    let ctx = DraftContext::new(&tokens, 2, 5, 10, 50);
    let mut tree = TokenTree::new(ctx.pending());
    medusa.draft(&ctx, &mut tree).unwrap();
    assert_eq!(
        (tree.len(), tree.max_depth()),
        (5, 4),
        "a chain of the four heads' best guesses"
    );
}
