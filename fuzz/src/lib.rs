//! Shared pieces of the fuzz targets: decoding fuzz bytes into inputs, and the *oracles*,
//! the obvious and slow definitions that the library's fast code must agree with.
//!
//! * [`tree`]: invariants of a [`TokenTree`](decoding_core::TokenTree) checked from scratch,
//!   and arbitrary trees from fuzz bytes.
//! * [`sampling`]: the target distribution by a full sort, and replayed random draws.
//! * [`text`]: brute-force occurrences and continuations for the reference matcher.

pub mod sampling;
pub mod text;
pub mod tree;

use std::borrow::Cow;

/// The bytes a target decodes its case from: `data` itself, or, when it is shorter than 32
/// bytes, 2 KiB of pseudo-random bytes seeded by it.
///
/// libFuzzer starts from tiny inputs and only grows them when coverage feedback rewards it;
/// a build without coverage instrumentation (plain `cargo build`, as CI does) would test
/// only tiny cases. Stretching short inputs makes every run a full-size random case there,
/// while coverage-guided runs still mutate longer inputs byte by byte.
pub fn input(data: &[u8]) -> Cow<'_, [u8]> {
    if data.len() >= 32 {
        return Cow::Borrowed(data);
    }
    let mut state = data
        .iter()
        .fold(0x9E37_79B9_7F4A_7C15u64 ^ data.len() as u64, |h, &b| {
            (h ^ u64::from(b))
                .wrapping_mul(0x0100_0000_01B3)
                .rotate_left(29)
        });
    let mut bytes = Vec::with_capacity(2048);
    while bytes.len() < 2048 {
        // SplitMix64.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    Cow::Owned(bytes)
}
