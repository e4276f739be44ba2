//! Per-step costs of Medusa outside the base model, at the size of pycoder-16m's heads
//! (4 heads, hidden 384, vocabulary 8192, random weights): running the heads on one hidden
//! state, and a whole step of the strategy (heads, ranking, tree building, bookkeeping) for
//! each tree policy, plus typical acceptance against exact verification.
//!
//! ```text
//! cargo bench --bench medusa_overhead
//! ```

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use decoding_core::{
    DecodeConfig, DraftContext, Sampling, StepFeedback, Strategy, TokenTree, Verification,
    verify_step, verify_tree,
};
use medusa::{
    Acceptance, CandidateTree, DynamicTree, HeadScratch, HeadSource, HeadWeights, Medusa,
    MedusaConfig, MedusaHeads, RankAccuracies, ResBlock, TreePolicy, TypicalAcceptance,
};
use ndarray::{Array1, Array2};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

const VOCAB: usize = 8192;
const HIDDEN: usize = 384;
const HEADS: usize = 4;

fn random_heads(rng: &mut Xoshiro256PlusPlus) -> MedusaHeads {
    let mut matrix = |r: usize, c: usize, scale: f32| {
        Array2::from_shape_fn((r, c), |_| rng.random_range(-scale..scale))
    };
    let heads = (0..HEADS)
        .map(|_| {
            let block = ResBlock::new(matrix(HIDDEN, HIDDEN, 0.05), Array1::zeros(HIDDEN)).unwrap();
            HeadWeights::new(vec![block], Some(matrix(VOCAB, HIDDEN, 0.3)))
        })
        .collect();
    MedusaHeads::new(heads, None).unwrap()
}

fn heads_logits(c: &mut Criterion) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let heads = random_heads(&mut rng);
    let hidden = Array1::from_shape_fn(HIDDEN, |_| rng.random_range(-1.0f32..1.0));
    let mut out = Array2::zeros((HEADS, VOCAB));
    let mut scratch = HeadScratch::default();
    c.bench_function("medusa_heads_logits_4x8192x384", |b| {
        b.iter(|| {
            heads
                .logits(black_box(hidden.view()), out.view_mut(), &mut scratch)
                .unwrap()
        })
    });
    let packed = heads.with_bf16_outputs();
    c.bench_function("medusa_heads_logits_4x8192x384_bf16", |b| {
        b.iter(|| {
            packed
                .logits(black_box(hidden.view()), out.view_mut(), &mut scratch)
                .unwrap()
        })
    });
}

/// One step of the strategy outside the model: observe (keep the hidden state) and draft.
fn strategy_step(c: &mut Criterion) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let heads = Arc::new(random_heads(&mut rng));
    let hidden = Array1::from_shape_fn(HIDDEN, |_| rng.random_range(-1.0f32..1.0));
    let accuracies = RankAccuracies::new(
        (0..HEADS)
            .map(|k| {
                (1..=10)
                    .map(|r| 0.3 / (k + 1) as f64 + 0.03 * r as f64)
                    .collect()
            })
            .collect(),
    )
    .unwrap();
    let policies = [
        ("dynamic_64", TreePolicy::Dynamic(DynamicTree::new())),
        (
            "dynamic_16",
            TreePolicy::Dynamic(DynamicTree::new().with_max_nodes(16).unwrap()),
        ),
        (
            "mc_sim_7b_63",
            TreePolicy::Static(CandidateTree::mc_sim_7b_63()),
        ),
        (
            "sparse_64",
            TreePolicy::Static(CandidateTree::sparse(&accuracies, 64).unwrap()),
        ),
        (
            "cartesian_4x3x2",
            TreePolicy::Static(CandidateTree::cartesian(&[4, 3, 2]).unwrap()),
        ),
    ];
    let tokens: Vec<u32> = (0..300).map(|i| (i * 37 % VOCAB) as u32).collect();
    let root = TokenTree::new(tokens[tokens.len() - 1]);
    let logits = Array2::zeros((1, VOCAB));
    let verification = Verification {
        path: vec![0],
        bonus: 5,
    };
    let mut group = c.benchmark_group("medusa_step_outside_model");
    for (name, policy) in policies {
        let mut medusa = Medusa::new(
            HeadSource::Library(heads.clone()),
            MedusaConfig::new(policy),
        )
        .unwrap();
        medusa.begin(&tokens[..200], VOCAB).unwrap();
        let mut tree = TokenTree::new(0);
        group.bench_function(name, |b| {
            b.iter(|| {
                let feedback = StepFeedback {
                    tree: &root,
                    logits: logits.view(),
                    verification: &verification,
                    emitted: &tokens[299..],
                    tokens: &tokens,
                    hidden_state: Some(hidden.view()),
                    head_logits: None,
                };
                medusa.observe(&feedback).unwrap();
                let ctx = DraftContext::new(&tokens, 200, 64, 50, VOCAB);
                tree.reset(ctx.pending());
                medusa.draft(&ctx, &mut tree).unwrap();
                black_box(tree.len())
            })
        });
    }
    group.finish();
}

/// Exact and typical verification of a dynamic 64-node tree against random logits.
fn verification(c: &mut Criterion) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let mut tree = TokenTree::new(1);
    for chain in 0..9u32 {
        let mut parent = 0;
        for i in 0..7u32 {
            parent = tree.push(parent, 100 * chain + i + 2).unwrap();
        }
    }
    let logits = Array2::from_shape_fn((tree.logits_rows(), VOCAB), |_| {
        rng.random_range(-4.0f32..4.0)
    });
    let sampling = Sampling::new(0.7, None, None).unwrap();
    let mut group = c.benchmark_group("medusa_verify_64_nodes_t0.7");
    let mut out = Verification::default();
    let mut scratch = Vec::new();
    group.bench_function("exact", |b| {
        b.iter(|| {
            verify_tree(
                &tree,
                0,
                logits.view(),
                &sampling,
                &mut rng,
                &mut scratch,
                &mut out,
            )
            .unwrap()
        })
    });
    let heads = Arc::new(random_heads(&mut Xoshiro256PlusPlus::seed_from_u64(4)));
    let config = MedusaConfig::default()
        .with_acceptance(Acceptance::TypicalLossy(TypicalAcceptance::default()));
    let mut medusa = Medusa::new(HeadSource::Library(heads), config).unwrap();
    let decode = DecodeConfig::new(64).with_sampling(sampling);
    group.bench_function("typical_lossy", |b| {
        b.iter(|| {
            let root = [tree.root_token()];
            verify_step(
                &mut medusa,
                &tree,
                logits.view(),
                &decode,
                &root,
                1,
                &mut rng,
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, heads_logits, strategy_step, verification);
criterion_main!(benches);
