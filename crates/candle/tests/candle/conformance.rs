//! The conformance kit (`decoding-testkit`) on the candle model, alone and batched: random
//! trees, commits, truncations and prefills against its recompute oracle. candle's matmul
//! picks its kernel from the shapes, so the logits are held to a tolerance, not to bits.

use decoding_testkit::{CheckConfig, check_batch_model, check_model};

use crate::common::tiny_model;

/// Per element `|tree - recompute| <= 1e-4 + 2e-5 |recompute|` (the tiny models' logits are
/// of order 1 to 10; observed differences: 3e-6 alone, 5e-6 batched).
fn config() -> CheckConfig {
    CheckConfig::default()
        .with_tolerance(1e-4)
        .with_relative_tolerance(2e-5)
}

#[test]
fn candle_passes_the_conformance_check() {
    let report = check_model(&mut tiny_model(3), &config()).unwrap();
    assert!(report.logits.rows > 0, "{report}");
    assert!(report.hidden_states.rows > 0, "{report}");
    eprintln!("{report}");
}

#[test]
fn batch_candle_passes_the_conformance_check() {
    let mut batch = tiny_model(4).batch();
    let report = check_batch_model(&mut batch, &config().with_episodes(2)).unwrap();
    assert!(report.multi_sequence_passes > 0, "{report}");
    eprintln!("{report}");
}
