//! A toy model with an induction head: it continues the way the current suffix continued
//! before.

use super::recompute::{ContextLogits, RecomputeModel};
use super::window::{HashLogits, WindowLogits};
use super::{mix, unit};
use decoding_core::Token;

/// Longest suffix the induction search matches.
const MAX_MATCH: usize = 16;

/// Logits of an "induction head" model: pseudo-random logits of the last two tokens, plus a
/// boost of `2 + match length` for the token that followed the most recent earlier occurrence
/// of the longest matching suffix of the context (up to 16 tokens). Text that repeats is
/// continued by copying, which is what copy-based drafters (prompt lookup, reference,
/// lookahead's pool) exploit.
#[derive(Clone, Debug)]
pub struct InductionLogits {
    base: HashLogits,
}

impl InductionLogits {
    /// Vocabulary of `vocab_size` tokens and seed `seed`.
    pub fn new(vocab_size: usize, seed: u64) -> Self {
        Self {
            base: HashLogits::new(vocab_size, mix(seed ^ 0x1D), 2, 3.0),
        }
    }

    /// The continuation the induction head copies, with the match length.
    pub fn copied(context: &[Token]) -> Option<(Token, usize)> {
        let n = context.len();
        let mut best: Option<(Token, usize)> = None;
        for end in (0..n.saturating_sub(1)).rev() {
            let len = (0..=end.min(MAX_MATCH - 1))
                .take_while(|&i| context[end - i] == context[n - 1 - i])
                .count();
            if len > best.map_or(0, |(_, l)| l) {
                best = Some((context[end + 1], len));
                if len == MAX_MATCH {
                    break;
                }
            }
        }
        best
    }
}

impl ContextLogits for InductionLogits {
    fn logits(&mut self, context: &[Token], out: &mut [f32]) {
        let start = context.len().saturating_sub(self.base.order());
        self.base.logits(&context[start..], out);
        if let Some((token, len)) = Self::copied(context) {
            out[token as usize] += 2.0 + len as f32 + 0.5 * unit(mix(len as u64));
        }
    }
}

/// The induction toy model, evaluated by recomputing every node from its path.
pub type InductionModel = RecomputeModel<InductionLogits>;

impl InductionModel {
    /// An induction model with this vocabulary and seed.
    pub fn induction(vocab_size: usize, seed: u64) -> Self {
        RecomputeModel::new(vocab_size, InductionLogits::new(vocab_size, seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_longest_most_recent_match() {
        assert_eq!(
            InductionLogits::copied(&[1, 2, 3, 9, 2, 3, 7, 2, 3]),
            Some((7, 2))
        );
        assert_eq!(InductionLogits::copied(&[5, 6, 5]), Some((6, 1)));
        assert_eq!(InductionLogits::copied(&[1, 2, 3]), None);
    }
}
