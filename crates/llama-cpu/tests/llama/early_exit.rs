//! The early-exit view: the first `L` blocks of the same weights, bit for bit the model of a
//! checkpoint cut to `L` layers, alone and batched.

use decoding_core::{BatchLogitsModel, LogitsModel, Token, TokenTree};
use llama_cpu::{Llama, LoadError};
use ndarray::Array2;
use proptest::prelude::*;
use safetensors::Dtype;

use crate::common::{random_tensors, tiny_config, to_safetensors};

/// Prefills `context` (if any) into `model` and returns the logits of `tree` above it.
fn logits_after(model: &mut dyn LogitsModel, context: &[Token], tree: &TokenTree) -> Array2<f32> {
    let vocab = model.vocab_size();
    if !context.is_empty() {
        let chain = TokenTree::from_chain(context).unwrap();
        let mut sink = Array2::zeros((chain.logits_rows(), vocab));
        model.forward(&chain, sink.view_mut()).unwrap();
        model
            .commit(&(0..context.len()).collect::<Vec<_>>())
            .unwrap();
    }
    let mut logits = Array2::zeros((tree.logits_rows(), vocab));
    model.forward(tree, logits.view_mut()).unwrap();
    logits
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn an_early_exit_is_the_checkpoint_cut_to_its_layers(
        seed in 0..4u64,
        layers in 1..=3usize,
        tied in any::<bool>(),
        context in prop::collection::vec(0..37u32, 0..12),
        nodes in prop::collection::vec((any::<usize>(), 0..37u32), 0..10),
        root in 0..37u32,
    ) {
        let mut config = tiny_config().with_tied_embeddings(tied);
        config.num_hidden_layers = 3;
        let bytes = to_safetensors(&random_tensors(&config, seed), Dtype::F32);
        let full = Llama::from_safetensors(config.clone(), &bytes).unwrap();
        let mut cut_config = config.clone();
        cut_config.num_hidden_layers = layers;
        let mut cut = Llama::from_safetensors(cut_config, &bytes).unwrap();
        let mut view = full.early_exit(layers).unwrap().with_threads(2).with_min_work_per_thread(0);
        prop_assert_eq!(view.layers(), layers);
        let mut tree = TokenTree::new(root);
        for &(pick, token) in &nodes {
            tree.push(pick % tree.len(), token).unwrap();
        }
        let expected = logits_after(&mut cut, &context, &tree);
        prop_assert_eq!(&logits_after(&mut view, &context, &tree), &expected);
        if layers < 3 {
            let mut whole = full.clone();
            prop_assert_ne!(&logits_after(&mut whole, &context, &tree), &expected);
        }

        // Batched, beside another sequence.
        let mut batch = view.batch();
        let (a, b) = (batch.add_sequence().unwrap(), batch.add_sequence().unwrap());
        if !context.is_empty() {
            let chain = TokenTree::from_chain(&context).unwrap();
            let mut sink = Array2::zeros((chain.logits_rows(), 37));
            batch.forward_batch(&[(a, &chain)], sink.view_mut()).unwrap();
            batch.commit(a, &(0..context.len()).collect::<Vec<_>>()).unwrap();
        }
        let other = TokenTree::from_chain(&[1, 2, 3]).unwrap();
        let mut both = Array2::zeros((other.logits_rows() + tree.logits_rows(), 37));
        batch.forward_batch(&[(b, &other), (a, &tree)], both.view_mut()).unwrap();
        let ours = both.slice_axis(ndarray::Axis(0), (other.logits_rows()..).into());
        prop_assert_eq!(&ours, &expected);
    }
}

#[test]
fn layer_counts_outside_the_model_are_errors() {
    let (full, _) = crate::common::tiny_model(0);
    for layers in [0, 3] {
        let err = full.early_exit(layers).unwrap_err();
        assert!(
            matches!(err, LoadError::Layers { layers: l, available: 2 } if l == layers),
            "{err}"
        );
        assert!(err.to_string().contains("1 to 2 layers"), "{err}");
    }
    assert_eq!(full.early_exit(2).unwrap().layers(), full.layers());
}
