//! Acceptance estimates: what the drafter's probabilities are worth against the target,
//! learned from verification, and the tree size they make pay on a cost curve.
//!
//! A drafter's probability of its token given the parent (its *confidence*) ranks drafts
//! well, but it is not the probability that the *target* agrees: a small drafter is often
//! too sure, and under greedy verification only the target's argmax is accepted, so the
//! drafter's first choice is worth more than its confidence says and the others less. A
//! node's rate (the chance it is accepted when its parent is) is therefore its confidence
//! times a correction learned per cell, a cell being one of 10 confidence buckets for first
//! choices and 10 for the others: accepted over expected (the sum of the confidences) among
//! the cell's tested nodes (those whose parent was accepted and that the target evaluated),
//! starting from 1 as if the drafter were calibrated. A node's estimate is its parent's
//! times its rate: the probability that its whole path is accepted.

use decoding_core::CostCurve;

/// Confidence buckets per rank class.
const BUCKETS: usize = 10;
/// Pseudo-observations behind each correction (which starts at 1).
const PRIOR_WEIGHT: f32 = 2.0;
/// Rates stay below certainty.
const MAX_RATE: f32 = 0.99;

/// Accepted and expected counts per cell.
#[derive(Clone, Debug)]
pub(crate) struct Calibration {
    counts: [(f32, f32); 2 * BUCKETS],
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            counts: [(0.0, 0.0); 2 * BUCKETS],
        }
    }
}

impl Calibration {
    /// The cell of a node: its confidence in `[0, 1]` and whether it is its parent's
    /// first child (the drafter's likeliest token).
    pub(crate) fn cell(confidence: f32, first: bool) -> u8 {
        let bucket = ((confidence.clamp(0.0, 1.0) * BUCKETS as f32) as usize).min(BUCKETS - 1);
        (bucket + if first { 0 } else { BUCKETS }) as u8
    }

    /// The estimated probability that a node is accepted when its parent is.
    pub(crate) fn rate(&self, cell: u8, confidence: f32) -> f32 {
        let (accepted, expected) = self.counts[usize::from(cell)];
        let correction = (accepted + PRIOR_WEIGHT) / (expected + PRIOR_WEIGHT);
        (confidence * correction).min(MAX_RATE)
    }

    /// Records that a node was tested, and whether it was accepted.
    pub(crate) fn record(&mut self, cell: u8, confidence: f32, accepted: bool) {
        let c = &mut self.counts[usize::from(cell)];
        c.0 += f32::from(u8::from(accepted));
        c.1 += confidence;
    }
}

/// The best tree size for a step: the `n` (root included, at most `budget`) that maximises
/// expected tokens per unit of cost, `(1 + sum of the n - 1 best estimates) / (cost(n) +
/// spent)`, where `estimates` are the non-root nodes' estimates in descending order and
/// `spent` is the drafting already paid for this step, in the curve's unit. Returns the size
/// and its value.
pub(crate) fn best_size(
    estimates: impl IntoIterator<Item = f32>,
    budget: usize,
    cost: &CostCurve,
    spent: f64,
) -> (usize, f64) {
    let mut best = (1, 1.0 / (cost.relative(1) + spent));
    let mut expected = 1.0;
    for (i, q) in estimates
        .into_iter()
        .take(budget.saturating_sub(1))
        .enumerate()
    {
        expected += f64::from(q);
        let n = i + 2;
        let value = expected / (cost.relative(n) + spent);
        if value > best.1 {
            best = (n, value);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_start_at_the_confidence_and_learn() {
        let mut c = Calibration::default();
        let cell = Calibration::cell(0.6, true);
        assert_eq!(cell, 6);
        assert_eq!(Calibration::cell(1.0, false), 19);
        assert!((c.rate(cell, 0.6) - 0.6).abs() < 1e-6);
        // First choices accepted more often than their confidence says are trusted more.
        for _ in 0..30 {
            c.record(cell, 0.6, true);
        }
        assert!(c.rate(cell, 0.6) > 0.9 && c.rate(cell, 0.6) <= MAX_RATE);
        let other = Calibration::cell(0.6, false);
        for _ in 0..30 {
            c.record(other, 0.6, false);
        }
        assert!(c.rate(other, 0.6) < 0.1);
    }

    #[test]
    fn sizes_pay_for_themselves() {
        let flat = CostCurve::new(vec![(1, 1.0), (64, 1.0)]).unwrap();
        let steep = CostCurve::linear(0.0, 1.0).unwrap();
        let q = [0.9, 0.8, 0.5, 0.1];
        assert_eq!(best_size(q, 64, &flat, 0.0).0, 5);
        assert_eq!(best_size(q, 3, &flat, 0.0).0, 3);
        assert_eq!(best_size(q, 64, &steep, 0.0).0, 1);
        // Drafting already paid for makes its nodes cheaper to keep.
        assert_eq!(best_size(q, 64, &steep, 1.0).0, 3);
    }
}
