//! Log probabilities of the emitted tokens and their top alternatives.
//!
//! Each emitted token comes with its log probability under a documented distribution at its
//! position, computed from the same row it was drawn from, by the same code under every
//! strategy: a strategy changes the number of forward passes, not these numbers (bit for bit
//! when the model's rows do not depend on the tree around them).

use crate::tree::Token;

/// Which distribution logprobs report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogprobsMode {
    /// `log_softmax` of the logits after the processors and the constraint's mask, before
    /// temperature, top-k, top-p and min-p (what OpenAI-style APIs report: the model's
    /// processed distribution, whatever the sampling parameters).
    #[default]
    Processed,
    /// The log of the distribution tokens are drawn from: after temperature and truncation
    /// too (under greedy decoding, the point mass at the argmax).
    Sampled,
}

/// What to report per emitted token: its logprob and the `top` most likely alternatives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogprobsConfig {
    /// How many alternatives to list (0: the token's own logprob only).
    pub top: usize,
    /// Which distribution.
    pub mode: LogprobsMode,
}

impl LogprobsConfig {
    /// The emitted token's logprob and the `top` best alternatives, in the default mode.
    pub fn top(top: usize) -> Self {
        Self {
            top,
            mode: LogprobsMode::default(),
        }
    }

    /// Reports in `mode`.
    pub fn with_mode(mut self, mode: LogprobsMode) -> Self {
        self.mode = mode;
        self
    }
}

/// One emitted token's log probability, and the most likely tokens at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The emitted token.
    pub token: Token,
    /// Its natural log probability (`-inf` for a token the distribution excludes).
    pub logprob: f64,
    /// The most likely tokens and their logprobs, best first (ties: lower id first).
    pub top: Vec<(Token, f64)>,
}

/// The log of every token's probability under `logits` (`log_softmax`, in f64), into `out`.
pub(crate) fn log_softmax(logits: &[f32], out: &mut Vec<f64>) {
    out.clear();
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let sum: f64 = logits.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    let log_sum = max + sum.ln();
    out.extend(logits.iter().map(|&x| f64::from(x) - log_sum));
}

/// The entry for `token` from the log probabilities of its position.
pub(crate) fn token_logprob(token: Token, logprobs: &[f64], top: usize) -> TokenLogprob {
    let mut best: Vec<(Token, f64)> = Vec::with_capacity(top + 1);
    if top > 0 {
        let better = |a: &(Token, f64), b: &(Token, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        for (i, &lp) in logprobs.iter().enumerate() {
            let entry = (i as Token, lp);
            if best.len() == top && better(&best[top - 1], &entry).is_le() {
                continue;
            }
            let at = best.partition_point(|e| better(e, &entry).is_lt());
            best.insert(at, entry);
            best.truncate(top);
        }
    }
    TokenLogprob {
        token,
        logprob: logprobs
            .get(token as usize)
            .copied()
            .unwrap_or(f64::NEG_INFINITY),
        top: best,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_normalises() {
        let mut out = Vec::new();
        log_softmax(&[0.0, 2.0f32.ln(), f32::NEG_INFINITY], &mut out);
        assert!((out[0] - (1.0f64 / 3.0).ln()).abs() < 1e-7);
        assert!((out[1] - (2.0f64 / 3.0).ln()).abs() < 1e-7);
        assert_eq!(out[2], f64::NEG_INFINITY);
    }

    #[test]
    fn top_alternatives_are_best_first_lowest_id_on_ties() {
        let lp = [-1.0, -0.5, -2.0, -0.5, -3.0];
        let entry = token_logprob(2, &lp, 3);
        assert_eq!(entry.logprob, -2.0);
        assert_eq!(entry.top, vec![(1, -0.5), (3, -0.5), (0, -1.0)]);
        assert!(token_logprob(0, &lp, 0).top.is_empty());
        assert_eq!(token_logprob(0, &lp, 9).top.len(), 5);
    }
}
