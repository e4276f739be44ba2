//! The model contract: bad input gives errors (never panics) and leaves the committed
//! context as it was.

use decoding_core::{BatchLogitsModel, LogitsModel, SeqId, TokenTree};
use ndarray::Array2;

use crate::common::tiny_model;

#[test]
fn bad_calls_are_errors_that_keep_the_context() {
    let mut model = tiny_model(0);
    let chain = TokenTree::from_chain(&[1, 2, 3]).unwrap();
    let mut logits = Array2::zeros((3, 37));
    assert!(model.commit(&[0]).is_err(), "commit before any forward");
    model.forward(&chain, logits.view_mut()).unwrap();
    model.commit(&[0, 1, 2]).unwrap();
    assert!(model.commit(&[0]).is_err(), "a second commit");

    let mut wrong_rows = Array2::zeros((2, 37));
    assert!(model.forward(&chain, wrong_rows.view_mut()).is_err());
    let out_of_vocab = TokenTree::from_chain(&[1, 37]).unwrap();
    let mut two = Array2::zeros((2, 37));
    assert!(model.forward(&out_of_vocab, two.view_mut()).is_err());
    assert!(
        model.truncate(4).is_err(),
        "truncate past the committed context"
    );
    // Past the 96 positions of the tiny configuration.
    let long = TokenTree::from_chain(&[1; 94]).unwrap();
    let mut many = Array2::zeros((94, 37));
    assert!(model.forward(&long, many.view_mut()).is_err());
    assert_eq!(model.committed_len(), 3);

    // A path that is not a root-to-node path of the last tree.
    let tree = TokenTree::from_parents(&[4, 5, 6], &[None, Some(0), Some(0)], None).unwrap();
    model.forward(&tree, logits.view_mut()).unwrap();
    assert!(model.commit(&[0, 1, 2]).is_err());
    assert_eq!(model.committed_len(), 3);
    // The failed commit consumed nothing: the context is intact, a new forward works.
    model.forward(&tree, logits.view_mut()).unwrap();
    model.commit(&[0, 2]).unwrap();
    assert_eq!(model.committed_len(), 5);
    model.reset().unwrap();
    assert_eq!(model.committed_len(), 0);
}

#[test]
fn the_batched_model_rejects_unknown_and_repeated_sequences() {
    let mut batch = tiny_model(0).batch();
    let a = batch.add_sequence().unwrap();
    let tree = TokenTree::new(1);
    let mut logits = Array2::zeros((2, 37));
    assert!(
        batch
            .forward_batch(&[(a, &tree), (a, &tree)], logits.view_mut())
            .is_err()
    );
    assert!(
        batch
            .forward_batch(&[(a, &tree), (SeqId(99), &tree)], logits.view_mut())
            .is_err()
    );
    assert!(batch.remove_sequence(SeqId(99)).is_err());
    batch.remove_sequence(a).unwrap();
    assert!(batch.commit(a, &[0]).is_err());
}
