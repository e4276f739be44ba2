//! Token-tree invariants and the budgeted multi-source builder.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::random_tree;
use decoding_core::{NodeId, SourceId, Token, TokenTree, TreeBuilder};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn tree_invariants_hold(seed in any::<u64>(), vocab in 1u32..6, nodes in 1usize..40) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let tree = random_tree(&mut rng, 0, vocab, nodes);
        let mut rows = 0;
        let mut path = Vec::new();
        for n in 0..tree.len() {
            // Parents come first; depth is the parent's plus one; rows are in node order.
            match tree.parent(n) {
                None => prop_assert_eq!(n, 0),
                Some(p) => {
                    prop_assert!(p < n);
                    prop_assert_eq!(tree.depth(n), tree.depth(p) + 1);
                }
            }
            if tree.needs_logits(n) {
                prop_assert_eq!(tree.logits_row(n), Some(rows));
                rows += 1;
            }
            // Siblings carry distinct tokens.
            let tokens: Vec<Token> = tree.children(n).map(|c| tree.token(c)).collect();
            let distinct: BTreeSet<Token> = tokens.iter().copied().collect();
            prop_assert_eq!(tokens.len(), distinct.len());
            // Paths run from the root to the node through parents.
            tree.path_to(n, &mut path);
            prop_assert_eq!(path.len(), tree.depth(n) + 1);
            prop_assert_eq!((path[0], path[path.len() - 1]), (0, n));
            prop_assert!(tree.check_path(&path).is_ok());
            prop_assert_eq!(tree.ancestors(n).count(), tree.depth(n));
        }
        prop_assert_eq!(rows, tree.logits_rows());
        prop_assert_eq!(tree.is_chain(), tree.check_chain().is_ok());
        // The raw arrays rebuild the same tree.
        let parents: Vec<Option<NodeId>> = (0..tree.len()).map(|n| tree.parent(n)).collect();
        let flags: Vec<bool> = (0..tree.len()).map(|n| tree.needs_logits(n)).collect();
        let rebuilt = TokenTree::from_parents(tree.tokens(), &parents, Some(&flags)).unwrap();
        prop_assert_eq!(rebuilt, tree);
    }

    #[test]
    fn builder_merges_and_keeps_the_best_nodes(
        chains in prop::collection::vec(
            (0usize..4, prop::collection::vec((0u32..4, 0.05f32..1.0), 1..6)), 1..8),
        budget in 1usize..30,
    ) {
        let mut builder = TreeBuilder::new(9);
        // Scores decay along each chain, so the best-first build is exactly the top nodes.
        let mut proposed: BTreeMap<Vec<Token>, (f32, BTreeSet<usize>)> = BTreeMap::new();
        for (source, steps) in &chains {
            let mut node = 0;
            let mut score = 1.0f32;
            let mut prefix = Vec::new();
            for &(token, factor) in steps {
                score *= factor;
                node = builder.add(node, token, score, SourceId::new(*source).unwrap()).unwrap();
                prefix.push(token);
                let entry = proposed.entry(prefix.clone()).or_insert((0.0, BTreeSet::new()));
                entry.0 = entry.0.max(score);
                entry.1.insert(*source);
            }
        }
        prop_assert_eq!(builder.candidates().len(), proposed.len() + 1);
        let (mut out, mut map) = (TokenTree::new(0), Vec::new());
        builder.build(budget, &mut out, &mut map).unwrap();
        prop_assert_eq!(out.len(), budget.min(proposed.len() + 1));
        let kept: BTreeSet<Vec<Token>> = (1..out.len()).map(|n| out.path_tokens(n)[1..].to_vec()).collect();
        for (prefix, (score, sources)) in &proposed {
            let node = (1..out.len()).find(|&n| out.path_tokens(n)[1..] == prefix[..]);
            if let Some(node) = node {
                let tags: BTreeSet<usize> = out.sources(node).iter().map(SourceId::index).collect();
                prop_assert_eq!(&tags, sources);
                // Nothing left out beats anything kept (ties: shallower, then earlier).
                for (other, (other_score, _)) in &proposed {
                    if !kept.contains(other) {
                        prop_assert!(
                            other_score < score
                                || (other_score == score && other.len() >= prefix.len()),
                            "dropped {:?} ({}) while keeping {:?} ({})", other, other_score, prefix, score
                        );
                    }
                }
            }
        }
        // The map sends each kept candidate to the node with its path.
        for (cand, target) in map.iter().enumerate() {
            if let Some(node) = target {
                prop_assert_eq!(builder.candidates().path_tokens(cand), out.path_tokens(*node));
            }
        }
    }
}

#[test]
fn chain_constructor_and_graft_roundtrip() {
    let tree = TokenTree::from_chain(&[4, 5, 6]).unwrap();
    assert!(tree.is_chain());
    assert_eq!(tree.max_depth(), 2);
    assert!(TokenTree::from_chain(&[]).is_err());
    let mut grafted = TokenTree::new(0);
    tree.graft_below(&[], &mut grafted);
    assert_eq!(grafted, tree);
}
