//! The verifiers: greedy against a brute-force oracle; sampling by exact enumeration of its
//! output distribution (no statistical slack) and a chi-square smoke test.

use std::collections::BTreeMap;

use crate::common::{RandomDrafts, random_tree};
use decoding_core::{
    DecodeConfig, Plain, Sampling, Token, TokenTree, Verification, argmax, enumerate_draws,
    generate, verify_tree,
};
use decoding_testkit::toy::HashModel;
use ndarray::Array2;
use proptest::prelude::*;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

fn random_logits(
    rng: &mut Xoshiro256PlusPlus,
    rows: usize,
    vocab: usize,
    ties: bool,
) -> Array2<f32> {
    Array2::from_shape_fn((rows, vocab), |_| {
        if ties {
            rng.random_range(0..3) as f32
        } else {
            rng.random_range(-3.0f32..3.0)
        }
    })
}

/// The longest root path whose every token is the argmax at its parent, by trying every node.
fn brute_force_greedy(tree: &TokenTree, logits: &Array2<f32>) -> (Vec<usize>, Token) {
    let next =
        |n: usize| argmax(logits.row(tree.logits_row(n).unwrap()).as_slice().unwrap()).unwrap();
    let mut best = vec![0];
    for node in 0..tree.len() {
        let mut path = Vec::new();
        tree.path_to(node, &mut path);
        let valid = path.iter().all(|&n| tree.needs_logits(n))
            && path.windows(2).all(|w| next(w[0]) == tree.token(w[1]));
        if valid && path.len() > best.len() {
            best = path;
        }
    }
    let bonus = next(*best.last().unwrap());
    (best, bonus)
}

/// The literal residual rule's output distribution, computed exactly: at a node with target
/// `p`, try each child with logits in order, accepting it with its residual probability;
/// when all are rejected, the bonus comes from the residual. Keys: emitted tokens.
fn residual_rule(
    tree: &TokenTree,
    logits: &Array2<f32>,
    sampling: &Sampling,
    node: usize,
    prefix: &mut Vec<Token>,
    mass: f64,
    out: &mut BTreeMap<Vec<Token>, f64>,
) {
    let mut p = Vec::new();
    let row = logits.row(tree.logits_row(node).unwrap()).to_vec();
    sampling.distribution(&row, &mut p).unwrap();
    let mut rejected = 1.0;
    for child in tree.children(node).filter(|&c| tree.needs_logits(c)) {
        let token = tree.token(child) as usize;
        let total: f64 = p.iter().sum();
        let accept = if total > 0.0 { p[token] / total } else { 0.0 };
        if accept > 0.0 {
            prefix.push(token as Token);
            residual_rule(
                tree,
                logits,
                sampling,
                child,
                prefix,
                mass * rejected * accept,
                out,
            );
            prefix.pop();
        }
        rejected *= 1.0 - accept;
        p[token] = 0.0;
    }
    let total: f64 = p.iter().sum();
    for (token, &q) in p.iter().enumerate() {
        if q > 0.0 {
            prefix.push(token as Token);
            *out.entry(prefix.clone()).or_default() += mass * rejected * q / total;
            prefix.pop();
        }
    }
}

fn sampling_strategy() -> impl Strategy<Value = Sampling> {
    (
        0.3f32..2.0,
        prop::option::of(1usize..5),
        prop::option::of(0.3f32..1.0),
    )
        .prop_map(|(t, k, p)| Sampling::new(t, k, p).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn greedy_verification_matches_brute_force(
        seed in any::<u64>(), vocab in 1u32..5, nodes in 1usize..30, ties in any::<bool>(),
    ) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let tree = random_tree(&mut rng, 0, vocab, nodes);
        let logits = random_logits(&mut rng, tree.logits_rows(), vocab as usize, ties);
        let mut out = Verification::default();
        verify_tree(&tree, 0, logits.view(), &Sampling::greedy(), &mut rng, &mut Vec::new(), &mut out).unwrap();
        let (path, bonus) = brute_force_greedy(&tree, &logits);
        prop_assert_eq!(out.path, path);
        prop_assert_eq!(out.bonus, bonus);
    }

    /// The verifier's exact output distribution (every random branch enumerated) equals the
    /// literal residual rule's, and both equal plain sampling along the tree.
    #[test]
    fn sampling_verification_is_exactly_the_residual_rule(
        seed in any::<u64>(), vocab in 1u32..5, nodes in 1usize..12, sampling in sampling_strategy(),
    ) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let tree = random_tree(&mut rng, 0, vocab, nodes);
        let logits = random_logits(&mut rng, tree.logits_rows(), vocab as usize, false);
        let mut out = Verification::default();
        let enumerated = enumerate_draws(|draw| {
            verify_tree(&tree, 0, logits.view(), &sampling, draw, &mut Vec::new(), &mut out).unwrap();
            let mut emitted: Vec<Token> = out.path[1..].iter().map(|&n| tree.token(n)).collect();
            emitted.push(out.bonus);
            emitted
        }).unwrap();
        let mut expected = BTreeMap::new();
        residual_rule(&tree, &logits, &sampling, 0, &mut Vec::new(), 1.0, &mut expected);
        let total: f64 = enumerated.values().sum();
        prop_assert!((total - 1.0).abs() < 1e-9);
        prop_assert_eq!(enumerated.len(), expected.len());
        for (tokens, p) in &expected {
            let q = enumerated.get(tokens).copied().unwrap_or(0.0);
            prop_assert!((p - q).abs() < 1e-9, "{:?}: residual rule {} verifier {}", tokens, p, q);
        }
    }

    /// Whole decoding runs: the exact distribution of the generated sequence with random
    /// drafts equals that of plain sampling.
    #[test]
    fn decoding_with_drafts_has_exactly_the_plain_distribution(
        seed in any::<u64>(), draft_seed in any::<u64>(), vocab in 2u32..4,
        max_new in 1usize..4, sampling in sampling_strategy(),
    ) {
        let config = DecodeConfig::new(max_new).with_sampling(sampling).with_max_nodes(8);
        let distribution = |drafts: bool| {
            let mut model = HashModel::with_order(vocab as usize, seed, 2, 2.0).unwrap();
            enumerate_draws(|draw| {
                if drafts {
                    generate(&mut model, RandomDrafts::new(draft_seed, 8), &[1], &config, draw)
                } else {
                    generate(&mut model, Plain, &[1], &config, draw)
                }.unwrap().tokens
            }).unwrap()
        };
        let (plain, drafted) = (distribution(false), distribution(true));
        prop_assert_eq!(plain.len(), drafted.len());
        for (tokens, p) in &plain {
            let q = drafted.get(tokens).copied().unwrap_or(0.0);
            prop_assert!((p - q).abs() < 1e-9, "{:?}: plain {} drafted {}", tokens, p, q);
        }
    }
}

/// Smoke test with a real generator: the first emitted token's frequencies over many seeded
/// runs fit the target distribution (chi-square, 3 degrees of freedom, p = 0.001 cut-off).
#[test]
fn chi_square_smoke_test() {
    let tree =
        TokenTree::from_parents(&[0, 1, 2, 3], &[None, Some(0), Some(0), Some(1)], None).unwrap();
    let logits = Array2::from_shape_vec(
        (4, 4),
        vec![
            0.5, 1.0, 0.2, -0.3, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.3, 0.2, 0.1, 0.0,
        ],
    )
    .unwrap();
    let sampling = Sampling::new(1.0, None, None).unwrap();
    let mut target = Vec::new();
    sampling
        .distribution(logits.row(0).as_slice().unwrap(), &mut target)
        .unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2024);
    let runs = 40_000;
    let mut counts = [0usize; 4];
    let mut out = Verification::default();
    for _ in 0..runs {
        verify_tree(
            &tree,
            0,
            logits.view(),
            &sampling,
            &mut rng,
            &mut Vec::new(),
            &mut out,
        )
        .unwrap();
        let first = out.path.get(1).map_or(out.bonus, |&n| tree.token(n));
        counts[first as usize] += 1;
    }
    let chi2: f64 = (0..4)
        .map(|t| {
            let expected = target[t] * runs as f64;
            (counts[t] as f64 - expected).powi(2) / expected
        })
        .sum();
    assert!(
        chi2 < 16.27,
        "chi-square {chi2} with counts {counts:?} and target {target:?}"
    );
}
