//! The `LogitsModel` contract: errors on misuse leave the committed context unchanged.

use decoding_core::{LogitsModel, TokenTree, TreeSupport};
use ndarray::{Array1, Array2};

use crate::common::tiny_model;

fn logits_for(tree: &TokenTree) -> Array2<f32> {
    Array2::zeros((tree.logits_rows(), 37))
}

#[test]
fn misuse_is_an_error_and_leaves_the_cache_as_it_was() {
    let (mut model, _) = tiny_model(1);
    assert_eq!(model.max_context(), Some(64));
    assert_eq!(model.tree_support(), TreeSupport::Trees);
    assert!(model.commit(&[0]).is_err(), "commit before any forward");

    let prompt = TokenTree::from_chain(&[3, 4, 5]).unwrap();
    let mut logits = logits_for(&prompt);
    model.forward(&prompt, logits.view_mut()).unwrap();
    assert!(model.commit(&[0, 2]).is_err(), "not a path");
    // A failed commit consumed the forward; evaluate again and commit properly.
    model.forward(&prompt, logits.view_mut()).unwrap();
    model.commit(&[0, 1, 2]).unwrap();
    assert!(model.commit(&[0]).is_err(), "second commit");
    assert_eq!(model.committed_len(), 3);

    let next = TokenTree::new(6);
    let mut before = logits_for(&next);
    model.forward(&next, before.view_mut()).unwrap();

    let bad_vocab = TokenTree::new(37);
    assert!(
        model
            .forward(&bad_vocab, logits_for(&bad_vocab).view_mut())
            .is_err()
    );
    assert!(
        model
            .forward(&next, Array2::zeros((2, 37)).view_mut())
            .is_err()
    );
    assert!(
        model
            .forward(&next, Array2::zeros((1, 36)).view_mut())
            .is_err()
    );
    let too_deep = TokenTree::from_chain(&[1; 62]).unwrap();
    assert!(
        model
            .forward(&too_deep, logits_for(&too_deep).view_mut())
            .is_err()
    );
    let fits = TokenTree::from_chain(&[1; 61]).unwrap();
    model.forward(&fits, logits_for(&fits).view_mut()).unwrap();
    assert!(model.truncate(4).is_err());
    assert_eq!(model.committed_len(), 3);

    let mut after = logits_for(&next);
    model.forward(&next, after.view_mut()).unwrap();
    assert_eq!(before, after);

    model.truncate(1).unwrap();
    assert!(
        model.commit(&[0]).is_err(),
        "truncate drops the uncommitted nodes"
    );
    let mut fresh = tiny_model(1).0;
    let short = TokenTree::from_chain(&[3, 6]).unwrap();
    let (mut a, mut b) = (logits_for(&short), logits_for(&next));
    fresh.forward(&short, a.view_mut()).unwrap();
    model.forward(&next, b.view_mut()).unwrap();
    assert_eq!(a.row(1), b.row(0));
    model.reset().unwrap();
    assert_eq!(model.committed_len(), 0);
}

#[test]
fn hidden_states_exist_only_for_nodes_that_asked_for_logits() {
    let (mut model, _) = tiny_model(2);
    let mut tree = TokenTree::from_chain(&[1, 2, 3]).unwrap();
    tree.set_needs_logits(1, false);
    let mut logits = logits_for(&tree);
    model.forward(&tree, logits.view_mut()).unwrap();
    let states = model
        .hidden_states()
        .expect("the model exposes hidden states");
    assert_eq!(states.hidden_size(), 24);
    let mut out = Array1::zeros(24);
    states.hidden_state(2, out.view_mut()).unwrap();
    assert!(out.iter().all(|x| x.is_finite()) && out.iter().any(|&x| x != 0.0));
    assert!(states.hidden_state(1, out.view_mut()).is_err());
    assert!(states.hidden_state(3, out.view_mut()).is_err());
    assert!(
        states
            .hidden_state(0, Array1::zeros(23).view_mut())
            .is_err()
    );
}
