//! Agreement with a from-scratch f64 forward (through the recompute adapter), exact agreement
//! with recomputing every node from its full context, and lossless decoding with random
//! drafted trees.

use decoding_core::{DecodeConfig, HiddenStates, LogitsModel, Plain, Token, TokenTree, generate};
use decoding_testkit::toy::RecomputeModel;
use llama_cpu::Llama;
use ndarray::{Array1, Array2};
use proptest::prelude::*;
use rand::SeedableRng;

use crate::common::{RandomTrees, reference_forward, tiny_config, tiny_model};

/// The logits of `context`'s last token, from a fresh forward over the whole context.
fn full_context_logits(model: &mut Llama, context: &[Token], out: &mut [f32]) {
    model.reset().unwrap();
    let tree = TokenTree::from_chain(context).unwrap();
    let mut logits = Array2::zeros((tree.logits_rows(), model.vocab_size()));
    model.forward(&tree, logits.view_mut()).unwrap();
    out.copy_from_slice(logits.row(context.len() - 1).as_slice().unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn tree_logits_match_the_f64_reference_through_the_recompute_adapter(
        seed in 0..4u64,
        tied in any::<bool>(),
        context in prop::collection::vec(0..37u32, 0..12),
        nodes in prop::collection::vec((any::<usize>(), 0..37u32), 0..10),
        root in 0..37u32,
    ) {
        let config = tiny_config().with_tied_embeddings(tied);
        let tensors = crate::common::random_tensors(&config, seed);
        let bytes = crate::common::to_safetensors(&tensors, safetensors::Dtype::F32);
        let mut model = Llama::from_safetensors(config.clone(), &bytes).unwrap();
        let mut reference = RecomputeModel::new(config.vocab_size, |ctx: &[u32], out: &mut [f32]| {
            let (_, logits) = reference_forward(&config, &tensors, ctx);
            for (o, l) in out.iter_mut().zip(logits) {
                *o = l as f32;
            }
        });
        let mut tree = TokenTree::new(root);
        for &(pick, token) in &nodes {
            tree.push(pick % tree.len(), token).unwrap();
        }
        for m in [&mut model as &mut dyn LogitsModel, &mut reference] {
            if !context.is_empty() {
                let chain = TokenTree::from_chain(&context).unwrap();
                let mut sink = Array2::zeros((chain.logits_rows(), config.vocab_size));
                m.forward(&chain, sink.view_mut()).unwrap();
                m.commit(&(0..context.len()).collect::<Vec<_>>()).unwrap();
            }
        }
        let mut ours = Array2::zeros((tree.logits_rows(), config.vocab_size));
        let mut theirs = ours.clone();
        model.forward(&tree, ours.view_mut()).unwrap();
        reference.forward(&tree, theirs.view_mut()).unwrap();
        let gap = (&ours - &theirs).iter().fold(0.0f32, |m, d| m.max(d.abs()));
        prop_assert!(gap < 1e-4, "max logit difference {gap}");

        // The final hidden state of the last node against the reference's.
        let last = tree.len() - 1;
        let mut full = context.clone();
        full.extend(tree.path_tokens(last));
        let (expected, _) = reference_forward(&config, &tensors, &full);
        let mut hidden = Array1::zeros(model.hidden_size());
        model.hidden_state(last, hidden.view_mut()).unwrap();
        for (a, b) in hidden.iter().zip(expected) {
            prop_assert!((f64::from(*a) - b).abs() < 1e-4);
        }
    }

    #[test]
    fn decoding_equals_full_recompute_and_survives_random_trees(
        seed in 0..4u64,
        prompt in prop::collection::vec(0..37u32, 1..10),
        tokens in 1..30usize,
        draft_seed in any::<u64>(),
    ) {
        let (model, _) = tiny_model(seed);
        let config = DecodeConfig::new(tokens).with_eos([0]);
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);

        let plain = generate(&mut model.clone(), Plain, &prompt, &config, &mut rng).unwrap();

        let mut inner = model.clone();
        let mut recompute = RecomputeModel::new(37, move |ctx: &[u32], out: &mut [f32]| {
            full_context_logits(&mut inner, ctx, out);
        });
        let recomputed = generate(&mut recompute, Plain, &prompt, &config, &mut rng).unwrap();
        prop_assert_eq!(&plain.tokens, &recomputed.tokens);

        let drafts = RandomTrees {
            rng: rand::rngs::Xoshiro256PlusPlus::seed_from_u64(draft_seed),
            vocab: 37,
            truth: plain.tokens.clone(),
        };
        let mut drafted_model = model.clone().with_threads(2).with_min_work_per_thread(0);
        let drafted = generate(&mut drafted_model, drafts, &prompt, &config, &mut rng).unwrap();
        prop_assert_eq!(&plain.tokens, &drafted.tokens);
        prop_assert_eq!(drafted_model.committed_len(), prompt.len() + plain.tokens.len() - 1);
    }
}
