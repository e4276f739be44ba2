//! The context prior: Medusa-1 heads guess each position independently of the tokens drafted
//! before it; the prior re-weights a head's candidate by whether it followed the candidate's
//! parent token somewhere in the context (prompt and output so far).
//!
//! Head `k` guesses `x_{t+k+2}` from `h_t` alone, so below two different depth-`k` parents it
//! offers the same list. Real text is not that independent: a candidate that already followed
//! its parent token in the context is far more likely right than its head probability says,
//! and one that never did is less likely. The prior multiplies head `k`'s probability by
//! `seen[k]` in the first case and `unseen[k]` in the second (capped at 1), which is the
//! likelihood-ratio correction a calibration on real data measures
//! ([`RankAccuracyMeter::context_prior`](crate::RankAccuracyMeter::context_prior)). It only
//! re-orders the heads' own candidates within the dynamic tree: it never proposes a token the
//! heads did not rank, and like any drafting choice it cannot change the output.

use std::collections::HashMap;

use decoding_core::Token;

use crate::error::MedusaError;

/// Per-head factors of the context prior (the last value repeats for deeper heads).
#[derive(Clone, Debug, PartialEq)]
pub struct ContextPrior {
    seen: Vec<f32>,
    unseen: Vec<f32>,
}

impl Default for ContextPrior {
    /// A generic prior, `seen = 3`, `unseen = 0.6` for every head. On pycoder-16m's heads,
    /// calibrated on the evaluation prompts, the factors are about 1.9, 2.9, 4.1, 5.0 and
    /// 0.68, 0.61, 0.58, 0.56.
    fn default() -> Self {
        Self {
            seen: vec![3.0],
            unseen: vec![0.6],
        }
    }
}

impl ContextPrior {
    /// Factors per head (non-empty lists of positive, finite numbers; the last value of each
    /// list applies to deeper heads).
    pub fn new(seen: Vec<f32>, unseen: Vec<f32>) -> Result<Self, MedusaError> {
        for (name, list) in [("seen", &seen), ("unseen", &unseen)] {
            if list.is_empty() || list.iter().any(|f| !(f.is_finite() && *f > 0.0)) {
                return Err(MedusaError::config(format!(
                    "context prior `{name}` factors must be a non-empty list of positive numbers"
                )));
            }
        }
        Ok(Self { seen, unseen })
    }

    /// The factor for head `k`'s candidates that followed their parent in the context.
    pub fn seen(&self, k: usize) -> f32 {
        self.seen[k.min(self.seen.len() - 1)]
    }

    /// The factor for head `k`'s candidates that never followed their parent.
    pub fn unseen(&self, k: usize) -> f32 {
        self.unseen[k.min(self.unseen.len() - 1)]
    }

    /// The factors, head by head: `(seen, unseen)`.
    pub fn factors(&self) -> (&[f32], &[f32]) {
        (&self.seen, &self.unseen)
    }
}

/// Which tokens followed each token in a sequence, kept up to date as the sequence grows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Successors {
    next: HashMap<Token, Vec<Token>>,
    seen_len: usize,
    last: Option<Token>,
}

impl Successors {
    pub(crate) fn clear(&mut self) {
        self.next.clear();
        self.seen_len = 0;
        self.last = None;
    }

    /// Adds the bigrams of `tokens[seen_len..]`; `tokens` must extend what was seen before.
    pub(crate) fn update(&mut self, tokens: &[Token]) {
        if tokens.len() < self.seen_len {
            self.clear();
        }
        for &token in &tokens[self.seen_len..] {
            if let Some(prev) = self.last {
                let list = self.next.entry(prev).or_default();
                if !list.contains(&token) {
                    list.push(token);
                }
            }
            self.last = Some(token);
        }
        self.seen_len = tokens.len();
    }

    /// The distinct tokens that followed `token`.
    pub(crate) fn of(&self, token: Token) -> &[Token] {
        self.next.get(&token).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn contains(&self, parent: Token, token: Token) -> bool {
        self.of(parent).contains(&token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors_grow_incrementally() {
        let mut s = Successors::default();
        s.update(&[1, 2, 1]);
        s.update(&[1, 2, 1, 3, 1, 2]);
        assert_eq!(s.of(1), &[2, 3]);
        assert_eq!(s.of(3), &[1]);
        assert!(s.of(9).is_empty());
        assert!(s.contains(2, 1) && !s.contains(2, 3));
        s.update(&[5, 6]);
        assert_eq!(s.of(5), &[6]);
        assert!(s.of(1).is_empty(), "a shorter sequence starts over");
    }

    #[test]
    fn factors_validate_and_repeat() {
        let p = ContextPrior::new(vec![2.0, 4.0], vec![0.5]).unwrap();
        assert_eq!((p.seen(0), p.seen(7), p.unseen(3)), (2.0, 4.0, 0.5));
        assert!(ContextPrior::new(vec![], vec![1.0]).is_err());
        assert!(ContextPrior::new(vec![1.0], vec![0.0]).is_err());
        assert!(ContextPrior::new(vec![f32::NAN], vec![1.0]).is_err());
    }
}
