//! Configuration limits: extreme values of `G` and the extension are accepted and decode as
//! plain greedy does (issue 18, items 4 and 5); windows too large to allocate are refused.

use crate::common::{counting, rng};
use decoding_core::{DecodeConfig, Plain, Token, generate};
use lookahead::{ConfigError, Lookahead, LookaheadConfig, NgramPool};

fn decode_like_plain(config: LookaheadConfig) {
    let mut model = counting(11);
    let prompt: Vec<Token> = vec![1, 2, 3, 1, 2, 3, 4];
    let decode = DecodeConfig::new(40).with_max_nodes(48);
    let plain = generate(&mut model, Plain, &prompt, &decode, &mut rng(0)).unwrap();
    let out = generate(
        &mut model,
        Lookahead::new(config).unwrap(),
        &prompt,
        &decode,
        &mut rng(0),
    )
    .unwrap();
    assert_eq!(out.tokens, plain.tokens);
    assert!(out.stats.forward_passes() < plain.stats.forward_passes());
}

/// Item 4: `lookahead:ext=18446744073709551615` overflowed in candidate collection.
#[test]
fn unbounded_extension_decodes_like_plain() {
    let config = LookaheadConfig::new(5, 3, 5)
        .with_extension(usize::MAX)
        .with_prompt_pool(true);
    decode_like_plain(config);
}

/// Item 5: `lookahead:g=18446744073709551615` (N >= 3) overflowed on the first insertion.
#[test]
fn unbounded_guesses_decode_like_plain() {
    for ngram in [3, 5] {
        let config = LookaheadConfig::new(4, ngram, usize::MAX).with_prompt_pool(true);
        assert_eq!(config.max_nodes(), usize::MAX);
        decode_like_plain(config);
    }
    let mut pool = NgramPool::new(4, usize::MAX).unwrap();
    for i in 0..50u32 {
        assert!(pool.insert(7, &[i, i + 1, i + 2]));
    }
    assert_eq!(pool.len(), 50);
    pool.check_invariants().unwrap();
}

#[test]
fn node_counts_saturate() {
    let config = LookaheadConfig::new(1, 2, usize::MAX);
    assert_eq!(config.max_nodes(), usize::MAX);
    assert_eq!(LookaheadConfig::new(15, 5, 15).max_nodes(), 120);
}

/// Issue 16: `w >= 1e8` aborted on allocation; such windows are refused up front.
#[test]
fn oversized_windows_are_errors() {
    let max = LookaheadConfig::MAX_WINDOW_CELLS;
    assert!(LookaheadConfig::new(max, 2, 1).validate().is_ok());
    for (w, n) in [
        (max + 1, 2),
        (100_000_000, 5),
        (usize::MAX, 3),
        (2, usize::MAX),
    ] {
        let err = Lookahead::new(LookaheadConfig::new(w, n, 1)).unwrap_err();
        assert!(matches!(err, ConfigError::WindowTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("cells"));
    }
}

/// Issue 16: strategy errors were flattened into strings at the crate boundary; they keep
/// their source.
#[test]
fn config_errors_keep_their_source() {
    use std::error::Error;
    let error: decoding_core::DecodeError = ConfigError::ZeroWindow(0).into();
    let source = error.source().expect("a source");
    assert_eq!(
        source.downcast_ref::<ConfigError>(),
        Some(&ConfigError::ZeroWindow(0))
    );
    assert!(error.to_string().contains("W must be at least 1"));
}
