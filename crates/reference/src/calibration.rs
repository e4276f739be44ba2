//! Acceptance estimates for drafted nodes, learned from verification.
//!
//! The trie's frequencies say how the sources continue, not how likely the model is to
//! agree. Whether a copied token is accepted depends mostly on how long the copy has been
//! going, its *effective length* `l` (the match length plus the depth of the node: a copy
//! that has held for 20 tokens tends to hold), and on how much the sources agree at that
//! node, its conditional frequency `f` given its parent. The prior estimate that a node is
//! accepted when its parent is, is `l / (l + 1.3) * f` (fitted on pycoder-16m's code
//! completions and edits, where it is within a few points of the observed rates from `l = 1`
//! to `l > 32`). Each (effective length, agreement) cell then learns a correction factor,
//! accepted over expected, from every verified step, so the estimates follow the model at
//! hand. A node's estimate is its parent's times its rate: the probability that the whole
//! path up to it is accepted.

use decoding_core::CostCurve;

/// Upper bounds of the effective-length buckets (the last one is open).
const LENGTHS: [usize; 8] = [1, 2, 3, 5, 8, 12, 20, 32];
/// Lower bounds of the conditional-frequency buckets, highest first.
const AGREEMENT: [f32; 3] = [0.95, 0.7, 0.4];
const CELLS: usize = (LENGTHS.len() + 1) * (AGREEMENT.len() + 1);
/// The effective length at which the prior rate is one half, before agreement.
const HALF_LENGTH: f32 = 1.3;
/// Pseudo-observations behind each correction factor (which starts at 1).
const PRIOR_WEIGHT: f32 = 4.0;
/// Estimates stay below certainty.
const MAX_RATE: f32 = 0.995;

/// How a drafted node is calibrated: its cell and its prior rate.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct NodeCalibration {
    cell: u16,
    prior: f32,
}

impl NodeCalibration {
    /// A node copied by occurrences matching `match_len` tokens, at `depth` below the root,
    /// with conditional frequency `agreement` given its parent.
    pub(crate) fn new(match_len: usize, depth: usize, agreement: f32) -> Self {
        let effective = match_len + depth.saturating_sub(1);
        let l = LENGTHS
            .iter()
            .position(|&b| effective <= b)
            .unwrap_or(LENGTHS.len());
        let a = AGREEMENT
            .iter()
            .position(|&b| agreement >= b)
            .unwrap_or(AGREEMENT.len());
        let effective = effective as f32;
        Self {
            cell: (l * (AGREEMENT.len() + 1) + a) as u16,
            prior: effective / (effective + HALF_LENGTH) * agreement.clamp(0.0, 1.0),
        }
    }
}

/// Learned corrections of the prior rates, per cell.
#[derive(Clone, Debug)]
pub(crate) struct Calibration {
    /// (accepted, expected by the prior) per cell.
    counts: Vec<(f32, f32)>,
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            counts: vec![(0.0, 0.0); CELLS],
        }
    }
}

impl Calibration {
    /// The estimated probability that `node` is accepted when its parent is.
    pub(crate) fn rate(&self, node: NodeCalibration) -> f32 {
        let (accepted, expected) = self.counts[node.cell as usize];
        let correction = (accepted + PRIOR_WEIGHT) / (expected + PRIOR_WEIGHT);
        (node.prior * correction).min(MAX_RATE)
    }

    /// Records that `node` was tested, and whether it was accepted.
    pub(crate) fn record(&mut self, node: NodeCalibration, accepted: bool) {
        let c = &mut self.counts[node.cell as usize];
        c.0 += f32::from(u8::from(accepted));
        c.1 += node.prior;
    }
}

/// How many of the ranked nodes to keep: the `n` (root included, at most `budget`) that
/// maximise expected tokens per unit of cost, `(1 + sum of the first n - 1 estimates) /
/// cost(n)`, where `estimates` are the acceptance estimates of the non-root nodes in rank
/// order.
pub(crate) fn best_size(estimates: &[f32], budget: usize, cost: &CostCurve) -> usize {
    let mut best = (1.0 / cost.relative(1), 1);
    let mut expected = 1.0;
    for (i, &q) in estimates.iter().take(budget.saturating_sub(1)).enumerate() {
        expected += f64::from(q);
        let n = i + 2;
        let value = expected / cost.relative(n);
        if value > best.0 {
            best = (value, n);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priors_rise_with_length_and_agreement_and_learn() {
        let short = NodeCalibration::new(1, 1, 1.0);
        let long = NodeCalibration::new(10, 11, 1.0);
        let split = NodeCalibration::new(10, 11, 0.5);
        let mut c = Calibration::default();
        assert!(c.rate(short) < c.rate(split) && c.rate(split) < c.rate(long));
        assert!((c.rate(short) - 1.0 / 2.3).abs() < 1e-6);
        let before = c.rate(short);
        for _ in 0..20 {
            c.record(short, true);
        }
        assert!(c.rate(short) > before && c.rate(short) <= MAX_RATE);
        for _ in 0..20 {
            c.record(long, false);
        }
        assert!(c.rate(long) < 0.5);
    }

    #[test]
    fn sizes_trees_to_the_cost_curve() {
        let flat = CostCurve::new(vec![(1, 1.0), (64, 1.0)]).unwrap();
        let steep = CostCurve::linear(0.0, 1.0).unwrap();
        let q = [0.9, 0.8, 0.5, 0.1];
        assert_eq!(best_size(&q, 64, &flat), 5); // on a flat curve every node pays
        assert_eq!(best_size(&q, 3, &flat), 3);
        assert_eq!(best_size(&q, 64, &steep), 1); // every node costs a full step
    }
}
