//! Rollback: a failed step leaves the constraint's state as it was before the step, and
//! drafts the mask forbids are never accepted, however high their logits.

use std::sync::Arc;

use decoding_constraints::{RegexConstraint, TokenBytes};
use decoding_core::{
    DecodeConfig, DecodeError, Decoder, NoExtras, Plain, Sampling, Token, TokenTree, TreeSupport,
    enumerate_draws, verify_step,
};
use ndarray::{Array2, array};

use crate::common::Oracle;

/// `""` (the EOS), `"a"`, `"b"`; the text must be `ab`.
fn ab() -> RegexConstraint {
    let vocab = Arc::new(TokenBytes::new(["", "a", "b"]));
    RegexConstraint::new("ab", vocab, [0]).unwrap()
}

fn rng() -> rand::rngs::Xoshiro256PlusPlus {
    rand::SeedableRng::seed_from_u64(0)
}

/// One step of a decoder drafting `a b` below the prompt `b`, fed `logits`.
fn decoder() -> Decoder<Oracle> {
    let oracle = Oracle {
        continuation: vec![1, 2],
        depth: 2,
    };
    let config = DecodeConfig::new(8).with_eos([0]).with_constraint(ab());
    let mut decoder = Decoder::new(oracle, config);
    decoder.start(&[2], 3, TreeSupport::Trees, None).unwrap();
    decoder
}

#[test]
fn a_failed_step_restores_the_constraint() {
    // Rows of the root, `a` and `b`: the argmax is `a`, then `b`, then `a` (which the
    // constraint turns into the EOS, the only token allowed after "ab").
    let good = array![[0.0f32, 2.0, 1.0], [0.0, 1.0, 2.0], [0.0, 2.0, 1.0]];
    let mut bad = good.clone();
    bad[[2, 0]] = f32::NAN;

    let mut fresh = decoder();
    assert_eq!(fresh.propose().unwrap().len(), 3);
    let expected = fresh
        .advance(good.view(), &mut NoExtras, &mut rng())
        .unwrap()
        .emitted
        .to_vec();
    assert_eq!(expected, [1, 2, 0]);

    let mut decoder = decoder();
    decoder.propose().unwrap();
    // The failure comes after `a` and `b` were emitted and the constraint advanced over
    // them; had the state not been restored, the retry's root could only emit the EOS.
    let err = decoder
        .advance(bad.view(), &mut NoExtras, &mut rng())
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::InvalidLogits { row: 2, .. }),
        "{err}"
    );
    assert_eq!(decoder.generated(), [] as [Token; 0]);
    let retried = decoder
        .advance(good.view(), &mut NoExtras, &mut rng())
        .unwrap();
    assert_eq!(retried.emitted, expected);
}

#[test]
fn forbidden_drafts_are_never_accepted() {
    // The prompt `b`; the draft `b` has by far the highest logit, but the text must start
    // with `a`.
    let tree = TokenTree::from_parents(&[2, 2], &[None, Some(0)], None).unwrap();
    let logits: Array2<f32> = array![[0.0, 1.0, 9.0], [0.0, 1.0, 9.0]];
    let config = DecodeConfig::new(4).with_eos([0]).with_constraint(ab());
    let step = verify_step(
        &mut Plain,
        &tree,
        logits.view(),
        &config,
        &[2],
        1,
        &mut rng(),
    )
    .unwrap();
    assert_eq!((step.verification.path, step.emitted), (vec![0], vec![1]));

    let sampled = config.with_sampling(Sampling::new(1.0, None, None).unwrap());
    let outcomes = enumerate_draws(|draw| {
        let step = verify_step(&mut Plain, &tree, logits.view(), &sampled, &[2], 1, draw).unwrap();
        (step.verification.path, step.emitted)
    })
    .unwrap();
    let only: Vec<_> = outcomes.keys().cloned().collect();
    assert_eq!(only, [(vec![0], vec![1])]);
    assert!((outcomes.values().sum::<f64>() - 1.0).abs() < 1e-12);
}
