//! Batch invariance: a node's logits (and hidden state) are bit-identical whatever else is
//! in the tree, however the cache was filled, and whatever the thread count.

use decoding_core::{HiddenStates, LogitsModel, NodeId, SourceSet, Token, TokenTree};
use llama_cpu::Llama;
use ndarray::{Array1, Array2};
use proptest::prelude::*;

use crate::common::{random_tensors, tiny_model, to_safetensors};

/// A random tree: each entry `(parent pick, token, needs logits)` adds one node below node
/// `pick % len` (or finds the existing sibling with that token).
fn build_tree(root: Token, nodes: &[(usize, Token, bool)]) -> TokenTree {
    let mut tree = TokenTree::new(root);
    for &(pick, token, logits) in nodes {
        let parent = pick % tree.len();
        tree.push_with(parent, token, logits, SourceSet::EMPTY)
            .unwrap();
    }
    tree
}

fn forward(model: &mut Llama, tree: &TokenTree) -> Array2<f32> {
    let mut logits = Array2::from_elem((tree.logits_rows(), model.vocab_size()), f32::NAN);
    model.forward(tree, logits.view_mut()).unwrap();
    logits
}

/// Commits `context` as one chain (no logits asked for).
fn prefill(model: &mut Llama, context: &[Token]) {
    model.reset().unwrap();
    if context.is_empty() {
        return;
    }
    let mut tree = TokenTree::from_chain(context).unwrap();
    for node in 0..tree.len() {
        tree.set_needs_logits(node, false);
    }
    forward(model, &tree);
    model
        .commit(&(0..context.len()).collect::<Vec<NodeId>>())
        .unwrap();
}

/// Commits `context` chunk by chunk, each chunk the kept path of a tree with extra branches.
fn fill_by_tree_paths(
    model: &mut Llama,
    context: &[Token],
    cuts: &[usize],
    noise: &[(usize, Token, bool)],
) {
    model.reset().unwrap();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (context.len() + 1)).collect();
    cuts.push(context.len());
    cuts.sort_unstable();
    for end in cuts {
        if end <= start {
            continue;
        }
        let chunk = &context[start..end];
        let mut tree = TokenTree::new(chunk[0]);
        let mut path = vec![0];
        for &token in &chunk[1..] {
            let parent = *path.last().unwrap();
            path.push(tree.push(parent, token).unwrap());
        }
        for &(pick, token, logits) in noise {
            let parent = pick % tree.len();
            tree.push_with(parent, token, logits, SourceSet::EMPTY)
                .unwrap();
        }
        forward(model, &tree);
        model.commit(&path).unwrap();
        start = end;
    }
    assert_eq!(model.committed_len(), context.len());
}

fn node() -> impl Strategy<Value = (usize, Token, bool)> {
    (any::<usize>(), 0..37u32, any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn logits_depend_only_on_the_path(
        seed in 0..4u64,
        context in prop::collection::vec(0..37u32, 1..20),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
        noise in prop::collection::vec(node(), 0..6),
        root in 0..37u32,
        nodes in prop::collection::vec(node(), 0..14),
    ) {
        let (model, _) = tiny_model(seed);
        let tree = build_tree(root, &nodes);

        // One prefill, one thread.
        let mut a = model.clone().with_threads(1);
        prefill(&mut a, &context);
        let logits_a = forward(&mut a, &tree);

        // Cache filled by commits of tree paths with other branches around, three threads.
        let mut b = model.clone().with_threads(3).with_min_work_per_thread(0);
        fill_by_tree_paths(&mut b, &context, &cuts, &noise);
        let logits_b = forward(&mut b, &tree);
        prop_assert_eq!(&logits_a, &logits_b);

        // Each node alone: its path as a chain after the context, only its row asked for.
        let mut alone = model.clone().with_threads(2).with_min_work_per_thread(0);
        let mut hidden_a = Array1::zeros(a.hidden_size());
        let mut hidden_alone = Array1::zeros(a.hidden_size());
        for n in tree.logits_nodes() {
            let mut chain = context.clone();
            chain.extend(tree.path_tokens(n));
            alone.reset().unwrap();
            let mut single = TokenTree::from_chain(&chain).unwrap();
            for m in 0..single.len() - 1 {
                single.set_needs_logits(m, false);
            }
            let row = forward(&mut alone, &single);
            let r = tree.logits_row(n).unwrap();
            prop_assert_eq!(row.row(0), logits_a.row(r), "node {}", n);
            a.hidden_state(n, hidden_a.view_mut()).unwrap();
            alone.hidden_state(single.len() - 1, hidden_alone.view_mut()).unwrap();
            prop_assert_eq!(&hidden_a, &hidden_alone);
        }
    }

    #[test]
    fn committing_a_path_equals_prefilling_it(
        context in prop::collection::vec(0..37u32, 1..12),
        root in 0..37u32,
        nodes in prop::collection::vec(node(), 1..14),
        pick in any::<usize>(),
        next in 0..37u32,
    ) {
        let (model, _) = tiny_model(9);
        let tree = build_tree(root, &nodes);
        let target = pick % tree.len();
        let mut path = Vec::new();
        tree.path_to(target, &mut path);

        let mut a = model.clone();
        prefill(&mut a, &context);
        forward(&mut a, &tree);
        a.commit(&path).unwrap();
        let after_commit = forward(&mut a, &TokenTree::new(next));

        let mut full = context.clone();
        full.extend(tree.path_tokens(target));
        let mut b = model.clone();
        prefill(&mut b, &full);
        let after_prefill = forward(&mut b, &TokenTree::new(next));
        prop_assert_eq!(a.committed_len(), b.committed_len());
        prop_assert_eq!(after_commit, after_prefill);
    }

    /// The same property on a model shaped like the real ones where the tiny one is not:
    /// head width 16 (value rows read in place), three query heads per key/value head,
    /// contexts over 64 rows (key panels in groups of four), trees of more than 16 nodes
    /// (several query blocks), an FFN of 5 panels, f16 weights.
    #[test]
    fn logits_depend_only_on_the_path_with_real_shapes(
        context in prop::collection::vec(0..37u32, 0..90),
        cuts in prop::collection::vec(any::<usize>(), 0..3),
        root in 0..37u32,
        nodes in prop::collection::vec(node(), 0..40),
    ) {
        let config = llama_cpu::LlamaConfig::new(37, 96, 80, 2, 6, 2, 256);
        // Half-precision weights, as real checkpoints have (kept in f16 by the model).
        let bytes = to_safetensors(&random_tensors(&config, 5), safetensors::Dtype::F16);
        let model = Llama::from_safetensors(config, &bytes).unwrap();
        let tree = build_tree(root, &nodes);

        let mut a = model.clone().with_threads(1);
        prefill(&mut a, &context);
        let logits_a = forward(&mut a, &tree);

        if !context.is_empty() {
            let mut b = model.clone().with_threads(2).with_min_work_per_thread(0);
            fill_by_tree_paths(&mut b, &context, &cuts, &nodes[..nodes.len().min(5)]);
            prop_assert_eq!(&logits_a, &forward(&mut b, &tree));
        }

        let mut alone = model.clone().with_threads(2).with_min_work_per_thread(0);
        for n in tree.logits_nodes() {
            let mut chain = context.clone();
            chain.extend(tree.path_tokens(n));
            alone.reset().unwrap();
            let mut single = TokenTree::from_chain(&chain).unwrap();
            for m in 0..single.len() - 1 {
                single.set_needs_logits(m, false);
            }
            let row = forward(&mut alone, &single);
            prop_assert_eq!(row.row(0), logits_a.row(tree.logits_row(n).unwrap()), "node {}", n);
        }
    }
}
