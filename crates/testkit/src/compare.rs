//! Comparing a row the model produced with the recompute's: element tolerance, argmax
//! agreement and near-ties.

use std::fmt;

use decoding_core::{Token, argmax};

use crate::config::CheckConfig;

/// How a row differs from the expected one.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RowDiff {
    /// Largest `|actual - expected|` over the row (infinite where one side is NaN or an
    /// infinity the other lacks).
    pub max_abs_diff: f32,
    /// The index (token id, or hidden-state component) of the largest difference.
    pub index: usize,
    /// The expected value at `index`.
    pub expected: f32,
    /// The actual value at `index`.
    pub actual: f32,
    /// The expected row's argmax (lowest index among equal maxima; `None` with a NaN).
    pub expected_argmax: Option<Token>,
    /// The actual row's argmax.
    pub actual_argmax: Option<Token>,
}

impl RowDiff {
    /// Compares two rows of the same length.
    pub(crate) fn of(expected: &[f32], actual: &[f32]) -> Self {
        let mut diff = Self {
            max_abs_diff: 0.0,
            index: 0,
            expected: expected.first().copied().unwrap_or(0.0),
            actual: actual.first().copied().unwrap_or(0.0),
            expected_argmax: argmax(expected),
            actual_argmax: argmax(actual),
        };
        for (i, (&e, &a)) in expected.iter().zip(actual).enumerate() {
            let d = element_diff(e, a);
            if d > diff.max_abs_diff {
                diff.max_abs_diff = d;
                diff.index = i;
                diff.expected = e;
                diff.actual = a;
            }
        }
        if expected.len() != actual.len() {
            diff.max_abs_diff = f32::INFINITY;
        }
        diff
    }
}

fn element_diff(e: f32, a: f32) -> f32 {
    if e == a {
        0.0
    } else if e.is_nan() || a.is_nan() {
        f32::INFINITY
    } else {
        (a - e).abs()
    }
}

impl fmt::Display for RowDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = |t: Option<Token>| t.map_or("none (NaN)".to_string(), |t| t.to_string());
        write!(
            f,
            "max abs diff {:e} at index {} (expected {}, actual {}); argmax expected {}, actual {}",
            self.max_abs_diff,
            self.index,
            self.expected,
            self.actual,
            token(self.expected_argmax),
            token(self.actual_argmax)
        )
    }
}

/// The result of comparing one row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Within tolerance, same argmax.
    Pass,
    /// Within tolerance, but the argmax differs at a near-tie: the recompute's logits of the
    /// two tokens are `gap` apart.
    NearTie { gap: f32 },
    /// Outside tolerance, or an argmax flip that is not a near-tie.
    Fail,
}

/// The tolerance of the comparisons, taken from the configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Tolerance {
    abs: f32,
    rel: f32,
    tie_margin: Option<f32>,
}

impl Tolerance {
    pub(crate) fn of(config: &CheckConfig) -> Self {
        Self {
            abs: config.abs_tolerance(),
            rel: config.rel_tolerance(),
            tie_margin: config.tie_margin(),
        }
    }

    /// The exact tolerance: bit-identical values (`==`, so `-0.0 == 0.0`).
    #[cfg(test)]
    pub(crate) const EXACT: Self = Self {
        abs: 0.0,
        rel: 0.0,
        tie_margin: None,
    };

    fn allowed(&self, expected: f32) -> f32 {
        self.abs + self.rel * expected.abs()
    }

    /// Compares rows element by element, and (`logits`) their argmax.
    pub(crate) fn judge(&self, expected: &[f32], actual: &[f32], logits: bool) -> Verdict {
        if expected.len() != actual.len() {
            return Verdict::Fail;
        }
        let within = expected.iter().zip(actual).all(|(&e, &a)| {
            let d = element_diff(e, a);
            d == 0.0 || d <= self.allowed(e)
        });
        if !within {
            return Verdict::Fail;
        }
        if !logits {
            return Verdict::Pass;
        }
        match (argmax(expected), argmax(actual)) {
            (Some(e), Some(a)) if e != a => {
                let (top, other) = (expected[e as usize], expected[a as usize]);
                let gap = top - other;
                let margin = self
                    .tie_margin
                    .unwrap_or_else(|| self.allowed(top) + self.allowed(other));
                if gap <= margin {
                    Verdict::NearTie { gap }
                } else {
                    Verdict::Fail
                }
            }
            (e, a) if e == a => Verdict::Pass,
            _ => Verdict::Fail,
        }
    }

    /// Whether two rows agree (a near-tie counts as agreeing).
    pub(crate) fn close(&self, expected: &[f32], actual: &[f32], logits: bool) -> bool {
        self.judge(expected, actual, logits) != Verdict::Fail
    }
}

/// Whether a difference looks like floating-point noise (a different reduction order)
/// rather than a different computation: small against the row's scale, same argmax.
pub(crate) fn looks_numerical(diff: &RowDiff, expected: &[f32]) -> bool {
    let scale = expected
        .iter()
        .filter(|x| x.is_finite())
        .fold(1.0f32, |m, x| m.max(x.abs()));
    diff.max_abs_diff <= 1e-2 * scale && diff.expected_argmax == diff.actual_argmax
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_tolerance_needs_equal_rows() {
        let t = Tolerance::EXACT;
        assert_eq!(t.judge(&[1.0, 2.0], &[1.0, 2.0], true), Verdict::Pass);
        assert_eq!(t.judge(&[1.0, 2.0], &[1.0, 2.000001], true), Verdict::Fail);
        assert_eq!(
            t.judge(&[1.0, f32::NAN], &[1.0, f32::NAN], true),
            Verdict::Fail
        );
        let inf = f32::NEG_INFINITY;
        assert_eq!(t.judge(&[inf, 2.0], &[inf, 2.0], true), Verdict::Pass);
    }

    #[test]
    fn tolerance_allows_near_ties_only() {
        let config = CheckConfig::default().with_tolerance(1e-3);
        let t = Tolerance::of(&config);
        assert_eq!(t.judge(&[1.0, 2.0], &[1.0005, 2.0], true), Verdict::Pass);
        // Flip between two logits 1e-4 apart: a near-tie.
        assert!(matches!(
            t.judge(&[1.0, 1.0001], &[1.0004, 1.0001], true),
            Verdict::NearTie { .. }
        ));
        assert_eq!(t.judge(&[1.0, 2.0], &[1.01, 2.0], true), Verdict::Fail);
        // Argmax only: huge tolerance, small margin.
        let loose = Tolerance::of(&config.with_tolerance(f32::INFINITY).with_tie_margin(0.1));
        assert_eq!(loose.judge(&[1.0, 2.0], &[5.0, 1.0], true), Verdict::Fail);
        assert!(matches!(
            loose.judge(&[1.95, 2.0], &[2.0, 1.0], true),
            Verdict::NearTie { .. }
        ));
    }

    #[test]
    fn row_diff_finds_the_largest_difference() {
        let d = RowDiff::of(&[1.0, 2.0, 3.0], &[1.0, 2.5, f32::NAN]);
        assert_eq!((d.max_abs_diff, d.index), (f32::INFINITY, 2));
        assert_eq!(d.actual_argmax, None);
        assert!(looks_numerical(
            &RowDiff::of(&[10.0, 1.0], &[10.001, 1.0]),
            &[10.0, 1.0]
        ));
        assert!(!looks_numerical(
            &RowDiff::of(&[10.0, 1.0], &[1.0, 10.0]),
            &[10.0, 1.0]
        ));
    }
}
