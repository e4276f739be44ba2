//! Random trees and commits: every node's logits equal (within `TOLERANCE`, argmax
//! identical) recomputing its path from scratch in a fresh context.

use decoding_core::{LogitsModel, NodeId, SourceSet, Token, TokenTree, TreeSupport};
use decoding_llama_cpp::LlamaCppOptions;
use proptest::prelude::*;

use crate::common::{TOLERANCE, compare, context, forward, from_scratch, tiny};

/// A tree from `(parent choice, token, needs logits)` triples below `root`; siblings with
/// equal tokens merge.
fn build(root: Token, nodes: &[(usize, Token, bool)]) -> TokenTree {
    let mut tree = TokenTree::new(root);
    for &(parent, token, logits) in nodes {
        let parent = parent % tree.len();
        tree.push_with(parent, token, logits, SourceSet::EMPTY)
            .unwrap();
    }
    tree
}

/// One step: the root, the other nodes as `(parent choice, token, needs logits)`, and what
/// follows the forward.
type Step = (Token, Vec<(usize, Token, bool)>, After);

/// What happens after a forward.
#[derive(Clone, Debug)]
enum After {
    /// Commit the path to node `choice % len`.
    Commit(usize),
    /// Commit nothing.
    Drop,
    /// Drop the nodes and shorten the context by this many tokens.
    Truncate(usize),
    /// Forward again without committing.
    Nothing,
}

fn after() -> impl Strategy<Value = After> {
    prop_oneof![
        6 => any::<usize>().prop_map(After::Commit),
        1 => Just(After::Drop),
        1 => (0usize..6).prop_map(After::Truncate),
        1 => Just(After::Nothing),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        1u32..300,
        prop::collection::vec(
            (any::<usize>(), 1u32..300, prop::bool::weighted(0.8)),
            0..14,
        ),
        after(),
    )
}

/// Runs the steps on `model` and checks every logits row against a from-scratch
/// recomputation; returns the largest difference seen.
fn check_steps(options: &LlamaCppOptions, prompt: &[Token], steps: &[Step]) -> f32 {
    let mut model = tiny().context(options).unwrap();
    let mut reference = context(tiny());
    let chains = options.tree_support() == TreeSupport::ChainsOnly;
    let mut committed: Vec<Token> = Vec::new();
    let mut worst = 0.0f32;
    let mut path: Vec<NodeId> = Vec::new();
    let prefill = TokenTree::from_chain(prompt).unwrap();
    forward(&mut model, &prefill);
    model
        .commit(&(0..prompt.len()).collect::<Vec<_>>())
        .unwrap();
    committed.extend(prompt);
    for (root, nodes, after) in steps {
        let mut tree = build(*root, nodes);
        if chains {
            // A chain: each node below the previous one.
            let tokens: Vec<Token> = tree.tokens().to_vec();
            tree = TokenTree::from_chain(&tokens).unwrap();
        }
        let logits = forward(&mut model, &tree);
        for node in tree.logits_nodes() {
            let mut context = committed.clone();
            context.extend(tree.path_tokens(node));
            let expected = from_scratch(&mut reference, &context);
            let row = logits.row(tree.logits_row(node).unwrap());
            let (diff, agree) = compare(row.as_slice().unwrap(), &expected);
            assert!(diff <= TOLERANCE, "node {node}: logits differ by {diff}");
            assert!(agree, "node {node}: argmax differs");
            worst = worst.max(diff);
        }
        match *after {
            After::Commit(choice) => {
                let node = choice % tree.len();
                tree.path_to(node, &mut path);
                model.commit(&path).unwrap();
                committed.extend(tree.path_tokens(node));
            }
            After::Drop => model.commit(&[]).unwrap(),
            After::Truncate(by) => {
                let len = committed.len().saturating_sub(by).max(1);
                model.truncate(len).unwrap();
                committed.truncate(len);
            }
            After::Nothing => {}
        }
        assert_eq!(model.committed_len(), committed.len());
    }
    worst
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn tree_logits_equal_recomputing_each_path(
        prompt in prop::collection::vec(1u32..300, 1..20),
        steps in prop::collection::vec(step(), 1..6),
    ) {
        check_steps(&LlamaCppOptions::new(), &prompt, &steps);
    }

    #[test]
    fn chains_only_fallback_equals_recomputing(
        prompt in prop::collection::vec(1u32..300, 1..20),
        steps in prop::collection::vec(step(), 1..5),
    ) {
        let options = LlamaCppOptions::new().with_tree_support(TreeSupport::ChainsOnly);
        check_steps(&options, &prompt, &steps);
    }

    #[test]
    fn results_do_not_depend_on_threads(
        prompt in prop::collection::vec(1u32..300, 1..20),
        steps in prop::collection::vec(step(), 1..4),
    ) {
        check_steps(&LlamaCppOptions::new().with_threads(2), &prompt, &steps);
    }
}

/// Many commits (the context grows in scattered KV cells) and a deep, wide tree.
#[test]
fn long_runs_of_commits_and_big_trees_stay_exact() {
    let mut nodes = Vec::new();
    for i in 0..60usize {
        nodes.push((i * 7 / 3, (i * 37 % 299 + 1) as Token, true));
    }
    let steps: Vec<_> = (0..40)
        .map(|i| {
            let take = if i % 5 == 0 { 60 } else { 6 };
            (
                (i * 11 % 299 + 1) as Token,
                nodes[..take].to_vec(),
                After::Commit(i * 13),
            )
        })
        .collect();
    let worst = check_steps(&LlamaCppOptions::new(), &[5, 6, 7], &steps);
    eprintln!("largest logit difference against recomputation: {worst:e}");
}
