//! The cost of one forward pass of the real model (assets/pycoder-16m) over a tree of k nodes
//! on top of a 512-token cache, k = 1, 2, 4, ..., 128: a chain, and a bushy tree (every node
//! has up to 4 children, filled breadth first). Engines size their trees with this curve.
//!
//! ```text
//! cargo bench --bench llama_forward
//! cargo run --release --example eval -- --cost-curve      # the same curve as a ratio table
//! ```
//!
//! Threads: `LLAMA_THREADS` (default: all cores).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use decoding_core::{LogitsModel, TokenTree};
use llama_cpu::Llama;
use ndarray::Array2;

const CACHE: usize = 512;
const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/pycoder-16m");

/// A tree of `k` nodes where each node gets up to `fanout` children, breadth first.
fn bushy(k: usize, fanout: usize) -> TokenTree {
    let mut tree = TokenTree::new(1);
    let mut parent = 0;
    while tree.len() < k {
        for child in 0..fanout {
            if tree.len() == k {
                break;
            }
            tree.push(parent, (2 + parent * fanout + child) as u32)
                .expect("valid tree");
        }
        parent += 1;
    }
    tree
}

fn forward_cost(c: &mut Criterion) {
    let Ok(model) = Llama::load(MODEL) else {
        eprintln!("{MODEL} not found: skipping the llama_forward bench");
        return;
    };
    let threads = std::env::var("LLAMA_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut model = model.with_threads(threads);
    let context: Vec<u32> = (0..CACHE as u32).map(|i| 1 + (i * 7919) % 8000).collect();
    let mut prefill = TokenTree::from_chain(&context).expect("non-empty");
    for node in 0..CACHE {
        prefill.set_needs_logits(node, false);
    }
    let mut none = Array2::zeros((0, model.vocab_size()));
    model.forward(&prefill, none.view_mut()).expect("prefill");
    model
        .commit(&(0..CACHE).collect::<Vec<_>>())
        .expect("commit");

    let mut group = c.benchmark_group(format!("llama_forward_cache{CACHE}_threads{threads}"));
    group.sample_size(10);
    for k in [1usize, 2, 4, 8, 16, 32, 64, 128] {
        group.throughput(Throughput::Elements(k as u64));
        let chain = TokenTree::from_chain(&context[..k]).expect("non-empty");
        for (shape, tree) in [("chain", chain), ("bushy", bushy(k, 4))] {
            let mut logits = Array2::zeros((tree.logits_rows(), model.vocab_size()));
            group.bench_with_input(BenchmarkId::new(shape, k), &tree, |b, tree| {
                // Each forward drops the previous uncommitted nodes: the cache stays at 512.
                b.iter(|| {
                    model
                        .forward(black_box(tree), logits.view_mut())
                        .expect("forward")
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward_cost);
criterion_main!(benches);
