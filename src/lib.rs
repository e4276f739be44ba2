//! # parallel-decoding
//!
//! Lossless parallel decoding of language models: techniques that produce more than one token
//! per forward pass without changing what the model outputs. Every technique drafts a token
//! tree and verifies it in one forward pass of a [`LogitsModel`](decoding_core::LogitsModel),
//! the one trait an engine implements. This facade re-exports the member crates; depend on
//! it, or on the one crate you need.
//!
//! | crate | what it holds |
//! | --- | --- |
//! | [`decoding_core`] | the token tree, the model contract, exact verification, sampling, the decoding loop |
//! | [`jacobi`] | Jacobi (fixed-point) decoding |
//! | [`lookahead`] | lookahead decoding (Fu et al., 2024) |
//! | [`medusa`] | Medusa heads and tree verification (Cai et al., 2024) |
//! | [`mod@reference`] | inference with reference (LLMA), prompt lookup, suffix-automaton drafting |
//! | [`draft`] | speculative decoding with a draft model: greedy chains, EAGLE-2 dynamic trees |
//! | [`llama_cpu`] | a CPU LLaMA implementation of the model contract |
//!
//! [`spec`] parses strategy specifications such as `lookahead:w=15,n=5,g=15`.

pub use decoding_core;
pub use draft;
pub use jacobi;
pub use llama_cpu;
pub use lookahead;
pub use medusa;
pub use reference;

pub mod spec;
