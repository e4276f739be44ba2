//! The contract's edges: misuse and every llama.cpp failure are errors, never panics, and
//! leave the committed context as it was.

use decoding_core::{LogitsModel, ModelError, TokenTree, TreeSupport};
use decoding_llama_cpp::{LlamaCppError, LlamaCppModel, LlamaCppOptions};
use ndarray::Array2;

use crate::common::{TOLERANCE, compare, context, forward, temp_file, tiny};

fn adapter_error(e: &ModelError) -> &LlamaCppError {
    e.inner()
        .downcast_ref::<LlamaCppError>()
        .expect("a LlamaCppError")
}

fn tree(tokens: &[u32], parents: &[Option<usize>]) -> TokenTree {
    TokenTree::from_parents(tokens, parents, None).unwrap()
}

#[test]
fn commits_must_follow_a_forward_and_be_root_paths() {
    let mut model = context(tiny());
    assert!(model.commit(&[0]).is_err(), "commit before any forward");
    let t = tree(&[1, 2, 3], &[None, Some(0), Some(0)]);
    forward(&mut model, &t);
    for bad in [&[1][..], &[0, 1, 2], &[0, 5], &[2, 0]] {
        assert!(model.commit(bad).is_err(), "{bad:?} is not a root path");
    }
    model.commit(&[0, 2]).unwrap();
    assert_eq!(model.committed_len(), 2);
    let err = model.commit(&[0]).unwrap_err();
    assert!(
        matches!(adapter_error(&err), LlamaCppError::Usage(_)),
        "{err}"
    );
    assert!(
        model.truncate(3).is_err(),
        "truncate past the committed context"
    );
    model.truncate(1).unwrap();
    model.reset().unwrap();
    assert_eq!(model.committed_len(), 0);
}

#[test]
fn bad_trees_and_shapes_are_errors_that_keep_the_context() {
    let mut model = tiny()
        .context(&LlamaCppOptions::new().with_context(16))
        .unwrap();
    let prompt = TokenTree::from_chain(&[4, 5, 6]).unwrap();
    let before = forward(&mut model, &prompt);
    model.commit(&[0, 1]).unwrap();
    let next = TokenTree::new(6);
    let expected = forward(&mut model, &next);
    let (diff, agree) = compare(
        expected.row(0).as_slice().unwrap(),
        before.row(2).as_slice().unwrap(),
    );
    assert!(
        diff <= TOLERANCE && agree,
        "committing equals the prefill rows"
    );

    let failures: Vec<(TokenTree, usize)> = vec![
        (TokenTree::new(300), 1),                       // outside the vocabulary
        (TokenTree::from_chain(&[1; 15]).unwrap(), 15), // past the context of 16
        (TokenTree::new(6), 2),                         // wrong logits shape
    ];
    for (bad, rows) in failures {
        let mut logits = Array2::zeros((rows, model.vocab_size()));
        assert!(model.forward(&bad, logits.view_mut()).is_err());
        assert_eq!(model.committed_len(), 2);
    }
    // The context is intact: the same logits as before the failures.
    assert_eq!(forward(&mut model, &next), expected);
}

#[test]
fn capacity_limits_are_errors() {
    // Two sequence ids per sequence: a tree with three leaves does not fit.
    let mut model = tiny()
        .context(&LlamaCppOptions::new().with_branches(2))
        .unwrap();
    let wide = tree(&[1, 2, 3, 4], &[None, Some(0), Some(0), Some(0)]);
    let mut logits = Array2::zeros((4, model.vocab_size()));
    let err = model.forward(&wide, logits.view_mut()).unwrap_err();
    assert!(
        matches!(adapter_error(&err), LlamaCppError::Capacity(_)),
        "{err}"
    );
    let two = tree(&[1, 2, 3], &[None, Some(0), Some(0)]);
    forward(&mut model, &two);

    // Eight tree cells beyond a context of 16.
    let options = LlamaCppOptions::new().with_context(16).with_tree_cells(8);
    let mut model = tiny().context(&options).unwrap();
    let prompt = TokenTree::from_chain(&[3; 10]).unwrap();
    forward(&mut model, &prompt);
    model.commit(&(0..10).collect::<Vec<_>>()).unwrap();
    let parents: Vec<Option<usize>> = std::iter::once(None)
        .chain((0..15).map(|_| Some(0)))
        .collect();
    let bush = TokenTree::from_parents(&(1..=16).collect::<Vec<_>>(), &parents, None).unwrap();
    let mut logits = Array2::zeros((16, model.vocab_size()));
    let err = model.forward(&bush, logits.view_mut()).unwrap_err();
    assert!(
        matches!(adapter_error(&err), LlamaCppError::Capacity(_)),
        "{err}"
    );
    assert_eq!(model.committed_len(), 10);
}

#[test]
fn chains_only_rejects_branching_trees() {
    let options = LlamaCppOptions::new().with_tree_support(TreeSupport::ChainsOnly);
    let mut model = tiny().context(&options).unwrap();
    assert_eq!(model.tree_support(), TreeSupport::ChainsOnly);
    let fork = tree(&[1, 2, 3], &[None, Some(0), Some(0)]);
    let mut logits = Array2::zeros((3, model.vocab_size()));
    let err = model.forward(&fork, logits.view_mut()).unwrap_err();
    assert!(
        matches!(adapter_error(&err), LlamaCppError::Tree(_)),
        "{err}"
    );
    forward(&mut model, &TokenTree::from_chain(&[1, 2, 3]).unwrap());
    model.commit(&[0, 1]).unwrap();
    assert_eq!(model.committed_len(), 2);
}

#[test]
fn bad_options_and_model_files_are_errors() {
    for options in [
        LlamaCppOptions::new().with_threads(0),
        LlamaCppOptions::new().with_branches(300),
        LlamaCppOptions::new().with_context(0),
    ] {
        let err = tiny().context(&options).unwrap_err();
        assert!(matches!(err, LlamaCppError::Options(_)), "{err}");
    }
    assert!(matches!(
        tiny().batch(&LlamaCppOptions::new().with_branches(64), 5),
        Err(LlamaCppError::Options(_))
    ));

    let missing = temp_file("no-such-model.gguf");
    assert!(matches!(
        LlamaCppModel::load(&missing),
        Err(LlamaCppError::NoModelFile(_))
    ));
    let garbage = temp_file("garbage.gguf");
    std::fs::write(&garbage, b"GGUF but not really a model file").unwrap();
    assert!(matches!(
        LlamaCppModel::load(&garbage),
        Err(LlamaCppError::Load { .. })
    ));
    let whole = std::fs::read(tiny().path()).unwrap();
    let truncated = temp_file("truncated.gguf");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let err = LlamaCppModel::load(&truncated).unwrap_err();
    assert!(matches!(err, LlamaCppError::Load { .. }), "{err}");
}

#[test]
fn hidden_states_only_when_asked_for() {
    let mut plain = context(tiny());
    assert!(plain.hidden_states().is_none());
    let mut model = tiny()
        .context(&LlamaCppOptions::new().with_hidden_states(true))
        .unwrap();
    let t = tree(&[1, 2, 3], &[None, Some(0), Some(0)]);
    forward(&mut model, &t);
    let states = model.hidden_states().unwrap();
    let mut out = ndarray::Array1::zeros(states.hidden_size());
    states.hidden_state(2, out.view_mut()).unwrap();
    assert!(out.iter().all(|v| v.is_finite()) && out.iter().any(|&v| v != 0.0));
    assert!(states.hidden_state(3, out.view_mut()).is_err());
    let mut short = ndarray::Array1::zeros(3);
    assert!(states.hidden_state(0, short.view_mut()).is_err());
}
