//! The conformance kit (`decoding-testkit`) on llama.cpp, alone and batched, on the tiny
//! converted checkpoint: random trees, commits, truncations and prefills against its
//! recompute oracle. llama.cpp's kernels and reduction orders depend on the batch, so the
//! logits are held to a tolerance, not to bits.

use decoding_llama_cpp::LlamaCppOptions;
use decoding_testkit::{CheckConfig, check_batch_model, check_model};

use crate::common::{TOLERANCE, context, tiny};

/// Per element `|tree - recompute| <= TOLERANCE (1 + |recompute|)`, the bound of the
/// crate's own tree tests.
fn config() -> CheckConfig {
    CheckConfig::default()
        .with_tolerance(TOLERANCE)
        .with_relative_tolerance(TOLERANCE)
}

#[test]
fn llama_cpp_passes_the_conformance_check() {
    let report = check_model(&mut context(tiny()), &config()).unwrap();
    assert!(report.logits.rows > 0, "{report}");
    eprintln!("{report}");
}

#[test]
fn llama_cpp_batch_passes_the_conformance_check() {
    let mut batch = tiny().batch(&LlamaCppOptions::new(), 4).unwrap();
    let report = check_batch_model(&mut batch, &config().with_episodes(2)).unwrap();
    assert!(report.multi_sequence_passes > 0, "{report}");
    eprintln!("{report}");
}
