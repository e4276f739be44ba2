//! Integration tests of the draft crate: decoding equals plain decoding (greedy token for
//! token, sampling seed for seed) with drafters that differ from the target, the drafter's
//! cache stays in step with the target's, errors are errors, and the real model's early exits.

mod cache;
mod common;
mod decode;
mod real;
