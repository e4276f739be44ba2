//! # decoding-constraints

mod mask;
mod regex;
mod token_bytes;
mod trie;

pub use mask::CacheStats;
pub use regex::{RegexConstraint, RegexError, RegexOptions, RegexState};
pub use token_bytes::{TokenBytes, TokenizerError};
