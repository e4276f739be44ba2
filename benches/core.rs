//! Per-step costs of decoding-core, outside any model: verifying a tree against realistic
//! logits (vocabulary 8192), merging drafts from several sources under a budget, and the
//! decoder's own bookkeeping per step.
//!
//! ```text
//! cargo bench --bench core
//! ```

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use decoding_core::{
    DecodeConfig, Plain, Sampling, SourceId, TokenTree, TreeBuilder, Verification, generate,
    verify_tree,
};
use decoding_testkit::toy::HashModel;
use ndarray::Array2;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use std::hint::black_box;

const VOCAB: usize = 8192;

/// A 64-node tree: 8 chains of 8 below the root, and logits that accept 5 tokens of the
/// first chain.
fn tree_and_logits() -> (TokenTree, Array2<f32>) {
    let mut tree = TokenTree::new(1);
    for chain in 0..8u32 {
        let tokens: Vec<u32> = (0..8).map(|i| 100 * chain + i + 2).collect();
        let mut parent = 0;
        for &t in &tokens[..if chain == 0 { 8 } else { 7 }] {
            parent = tree.push(parent, t).unwrap();
        }
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let mut logits = Array2::from_shape_fn((tree.logits_rows(), VOCAB), |_| {
        rng.random_range(-4.0f32..4.0)
    });
    for depth in 0..5 {
        logits[[depth, 2 + depth]] = 20.0;
    }
    (tree, logits)
}

fn verification(c: &mut Criterion) {
    let (tree, logits) = tree_and_logits();
    let mut group = c.benchmark_group("verify_64_nodes_vocab_8192");
    group.throughput(Throughput::Elements(6));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut out = Verification::default();
    let mut scratch = Vec::new();
    for (name, sampling) in [
        ("greedy", Sampling::greedy()),
        (
            "t0.8_top_p0.9",
            Sampling::new(0.8, None, Some(0.9)).unwrap(),
        ),
        ("t0.8_top_k50", Sampling::new(0.8, Some(50), None).unwrap()),
    ] {
        group.bench_function(name, |b| {
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
                .unwrap();
                black_box(out.bonus)
            })
        });
    }
    group.finish();
}

fn tree_building(c: &mut Criterion) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let drafts: Vec<Vec<u32>> = (0..4)
        .map(|_| (0..16).map(|_| rng.random_range(0..8u32)).collect())
        .collect();
    let mut builder = TreeBuilder::new(0);
    let (mut out, mut map) = (TokenTree::new(0), Vec::new());
    c.bench_function("merge_4_sources_x16_budget_32", |b| {
        b.iter(|| {
            builder.reset(0);
            for (s, draft) in drafts.iter().enumerate() {
                let scores: Vec<f32> = (0..draft.len())
                    .map(|i| 0.9f32.powi(i as i32 + 1))
                    .collect();
                builder
                    .add_chain(0, draft, &scores, SourceId::new(s).unwrap())
                    .unwrap();
            }
            builder.build(32, &mut out, &mut map).unwrap();
            black_box(out.len())
        })
    });
}

fn decoder_loop(c: &mut Criterion) {
    let mut model = HashModel::new(64, 5);
    let config = DecodeConfig::new(256);
    let mut group = c.benchmark_group("plain_decode_toy_model");
    group.throughput(Throughput::Elements(256));
    group.bench_function("256_tokens", |b| {
        b.iter(|| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
            generate(&mut model, Plain, &[1, 2, 3], &config, &mut rng)
                .unwrap()
                .tokens
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, verification, tree_building, decoder_loop);
criterion_main!(benches);
