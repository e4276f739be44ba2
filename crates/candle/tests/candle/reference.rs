//! Random trees and commits against recomputing each path from scratch, and lossless
//! decoding with drafted trees.

use decoding_core::{
    DecodeConfig, DecodeError, DraftContext, HiddenStates, LogitsModel, Plain, SourceSet,
    StepFeedback, Strategy, Token, TokenTree, argmax, generate,
};
use ndarray::{Array1, Array2};
use rand::{Rng, RngExt, SeedableRng};

use crate::common::{TOLERANCE, from_scratch, relative_gap, tiny_model};

/// A random tree of up to `max` nodes (random root): random parents, random tokens (siblings
/// distinct), a quarter of the nodes without logits.
pub(crate) fn random_tree(rng: &mut impl Rng, max: usize, vocab: u32) -> TokenTree {
    let mut tree = TokenTree::new(rng.random_range(0..vocab));
    let size = rng.random_range(1..=max);
    while tree.len() < size {
        let parent = rng.random_range(0..tree.len());
        let token = rng.random_range(0..vocab);
        if tree.child_with_token(parent, token).is_none() {
            tree.push_with(parent, token, rng.random_range(0..4) != 0, SourceSet::EMPTY)
                .unwrap();
        }
    }
    tree
}

#[test]
fn random_trees_and_commits_match_recomputing_each_path() {
    let (mut rows, mut worst) = (0, 0.0f32);
    for seed in 0..6u64 {
        let mut model = tiny_model(seed % 3);
        let mut scratch = model.fresh();
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut context: Vec<Token> = (0..rng.random_range(0..40))
            .map(|_| rng.random_range(0..37))
            .collect();
        if !context.is_empty() {
            let chain = TokenTree::from_chain(&context).unwrap();
            let mut sink = Array2::zeros((chain.logits_rows(), 37));
            model.forward(&chain, sink.view_mut()).unwrap();
            model
                .commit(&(0..context.len()).collect::<Vec<_>>())
                .unwrap();
        }
        for _step in 0..8 {
            let tree = random_tree(&mut rng, 24, 37);
            let mut logits = Array2::zeros((tree.logits_rows(), 37));
            model.forward(&tree, logits.view_mut()).unwrap();
            for node in tree.logits_nodes() {
                let mut path_context = context.clone();
                path_context.extend(tree.path_tokens(node));
                let expected = from_scratch(&mut scratch, &path_context);
                let got = logits.row(tree.logits_row(node).unwrap()).to_vec();
                let gap = relative_gap(&got, &expected);
                assert!(
                    gap < TOLERANCE,
                    "seed {seed}: node {node}: relative gap {gap}"
                );
                assert_eq!(argmax(&got), argmax(&expected), "seed {seed}: node {node}");
                worst = worst.max(gap);
                rows += 1;
            }
            // Keep a random root-to-node path, sometimes cut the context back.
            let mut path = Vec::new();
            tree.path_to(rng.random_range(0..tree.len()), &mut path);
            model.commit(&path).unwrap();
            context.extend(path.iter().map(|&n| tree.token(n)));
            if rng.random_range(0..4) == 0 {
                let len = rng.random_range(0..=context.len());
                model.truncate(len).unwrap();
                context.truncate(len);
            }
            assert_eq!(model.committed_len(), context.len());
        }
    }
    eprintln!("{rows} rows, largest relative logit gap {worst:e}");
}

#[test]
fn hidden_states_are_the_normed_inputs_of_the_output_projection() {
    let mut model = tiny_model(1);
    let tree =
        TokenTree::from_parents(&[3, 4, 5, 6], &[None, Some(0), Some(0), Some(2)], None).unwrap();
    let mut logits = Array2::zeros((4, 37));
    model.forward(&tree, logits.view_mut()).unwrap();
    let mut scratch = model.fresh();
    for node in 0..tree.len() {
        let mut hidden = Array1::zeros(model.hidden_size());
        model.hidden_state(node, hidden.view_mut()).unwrap();
        // A second model over the node's path alone gives the same hidden state.
        let path = tree.path_tokens(node);
        let chain = TokenTree::from_chain(&path).unwrap();
        let mut sink = Array2::zeros((path.len(), 37));
        scratch.reset().unwrap();
        scratch.forward(&chain, sink.view_mut()).unwrap();
        let mut alone = Array1::zeros(model.hidden_size());
        scratch
            .hidden_state(path.len() - 1, alone.view_mut())
            .unwrap();
        let gap = relative_gap(hidden.as_slice().unwrap(), alone.as_slice().unwrap());
        assert!(gap < TOLERANCE, "node {node}: relative gap {gap}");
    }
    let mut wrong = Array1::zeros(5);
    assert!(model.hidden_state(0, wrong.view_mut()).is_err());
}

/// Drafts, every step, the next tokens of the known greedy output `truth` as a chain (with
/// a wrong token at a random depth now and then) and random branches beside it.
pub(crate) struct OracleTrees {
    pub(crate) rng: rand::rngs::Xoshiro256PlusPlus,
    pub(crate) truth: Vec<Token>,
}

impl Strategy for OracleTrees {
    fn name(&self) -> &str {
        "oracle-trees"
    }

    fn begin(&mut self, _prompt: &[Token], _vocab_size: usize) -> Result<(), DecodeError> {
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        let future = self.truth.get(ctx.generated().len()..).unwrap_or_default();
        let depth = self
            .rng
            .random_range(0..=future.len().min(ctx.max_depth).min(8));
        let wrong = self.rng.random_range(0..=2 * depth);
        let mut node = 0;
        for (i, &token) in future[..depth].iter().enumerate() {
            let token = if i == wrong {
                (token + 1) % ctx.vocab_size as Token
            } else {
                token
            };
            node = tree.push(node, token)?;
        }
        for _ in 0..self.rng.random_range(0..8) {
            let parent = self.rng.random_range(0..tree.len());
            let token = self.rng.random_range(0..ctx.vocab_size as Token);
            if tree.depth(parent) + 1 < ctx.max_depth
                && tree.child_with_token(parent, token).is_none()
            {
                tree.push(parent, token)?;
            }
        }
        Ok(())
    }

    fn observe(&mut self, _feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        Ok(())
    }
}

#[test]
fn decoding_with_drafted_trees_equals_plain_greedy() {
    for seed in 0..8u64 {
        let model = tiny_model(seed % 3);
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(100 + seed);
        let prompt: Vec<Token> = (0..rng.random_range(1..20))
            .map(|_| rng.random_range(0..37))
            .collect();
        let config = DecodeConfig::new(40).with_eos([0]);
        let plain = generate(&mut model.fresh(), Plain, &prompt, &config, &mut rng).unwrap();
        let strategy = OracleTrees {
            rng: rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed),
            truth: plain.tokens.clone(),
        };
        let mut drafted_model = model.fresh();
        let drafted = generate(&mut drafted_model, strategy, &prompt, &config, &mut rng).unwrap();
        assert_eq!(plain.tokens, drafted.tokens, "seed {seed}");
        assert!(
            drafted.stats.forward_passes() < plain.stats.forward_passes() || plain.tokens.len() < 3
        );
        assert_eq!(
            drafted_model.committed_len(),
            prompt.len() + plain.tokens.len() - 1
        );
    }
}
