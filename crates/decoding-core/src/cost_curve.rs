//! What a forward pass costs as a function of the number of tree nodes, measured on the
//! model at hand, so that strategies can size their trees to the hardware.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use ndarray::Array2;

use crate::error::DecodeError;
use crate::model::LogitsModel;
use crate::tree::{Token, TokenTree};

/// Forward time as a function of tree size: measured points, linearly interpolated between
/// them and extrapolated from the last two.
///
/// On a large GPU model a 64-node tree costs about one plain step (the curve is flat); on a
/// small CPU model it costs several (the curve climbs). Only ratios matter: the unit is yours.
#[derive(Clone, Debug, PartialEq)]
pub struct CostCurve {
    points: Vec<(usize, f64)>,
}

impl CostCurve {
    /// A curve through `(nodes, cost)` points: at least one, node counts at least 1 and
    /// distinct, costs positive and finite.
    pub fn new(mut points: Vec<(usize, f64)>) -> Result<Self, DecodeError> {
        points.sort_by_key(|&(n, _)| n);
        if points.is_empty() {
            return Err(DecodeError::config("a cost curve needs at least one point"));
        }
        if points[0].0 == 0 || points.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(DecodeError::config(
                "cost curve node counts must be at least 1 and distinct",
            ));
        }
        if points.iter().any(|&(_, c)| !(c.is_finite() && c > 0.0)) {
            return Err(DecodeError::config(
                "cost curve costs must be positive and finite",
            ));
        }
        Ok(Self { points })
    }

    /// A curve where every node costs the same: `fixed + per_node * nodes`.
    pub fn linear(fixed: f64, per_node: f64) -> Result<Self, DecodeError> {
        Self::new(vec![(1, fixed + per_node), (2, fixed + 2.0 * per_node)])
    }

    /// The measured points.
    pub fn points(&self) -> &[(usize, f64)] {
        &self.points
    }

    /// The cost of a forward over `nodes` nodes.
    ///
    /// The curve is read as measured: exactly at each measured point, linearly between two
    /// neighbouring points, at the first point's cost below it, and past the last point along
    /// the last segment's slope when that rises (flat when it does not). Measurements on a
    /// noisy machine can dip (a larger tree timed cheaper than a smaller one); such a curve
    /// is not smoothed, so a dip is read where it was measured, and every cost stays
    /// positive.
    pub fn cost(&self, nodes: usize) -> f64 {
        let p = &self.points;
        let (n0, c0, n1, c1) = match p.iter().position(|&(n, _)| n >= nodes) {
            Some(0) => return p[0].1,
            Some(i) => (p[i - 1].0, p[i - 1].1, p[i].0, p[i].1),
            None if p.len() == 1 => return p[0].1,
            None => {
                let ((n0, c0), (n1, c1)) = (p[p.len() - 2], p[p.len() - 1]);
                if c1 <= c0 {
                    return c1;
                }
                (n0, c0, n1, c1)
            }
        };
        let slope = (c1 - c0) / (n1 - n0) as f64;
        c0 + slope * (nodes as f64 - n0 as f64)
    }

    /// The curve as one of `batch` sequences sees it when they share each forward pass,
    /// each with a tree of `n` nodes: `cost(batch * n) / batch`. On a model whose forward
    /// stacks the rows of every sequence (the projections run once over all of them), the
    /// curve of one sequence alone, read at the batch's total, is the batched forward's; the
    /// per-sequence curve then climbs faster as the batch grows, so cost-aware trees shrink.
    /// `batch <= 1` is the curve itself.
    pub fn per_sequence(&self, batch: usize) -> Cow<'_, CostCurve> {
        if batch <= 1 {
            return Cow::Borrowed(self);
        }
        let b = batch as f64;
        let points = self
            .points
            .iter()
            .map(|&(n, _)| (n, self.cost(n.saturating_mul(batch)) / b))
            .collect();
        Cow::Owned(Self { points })
    }

    /// The cost of `nodes` relative to a single node.
    pub fn relative(&self, nodes: usize) -> f64 {
        self.cost(nodes) / self.cost(1)
    }

    /// Measures `model`: prefills `context` (so attention costs are realistic), then times a
    /// forward of a chain of each size in `sizes` (every node asking for logits, as a
    /// verification tree does), `repeats` times, keeping the median in seconds. The model is
    /// reset before and after.
    pub fn measure(
        model: &mut dyn LogitsModel,
        context: &[Token],
        sizes: &[usize],
        repeats: usize,
    ) -> Result<Self, DecodeError> {
        let vocab = model.vocab_size();
        let mut points = Vec::with_capacity(sizes.len());
        for &size in sizes {
            if size == 0 {
                return Err(DecodeError::config("cannot time a tree of 0 nodes"));
            }
            model.reset()?;
            if !context.is_empty() {
                let mut prefill = TokenTree::from_chain(context)?;
                for node in 0..prefill.len() {
                    prefill.set_needs_logits(node, false);
                }
                model.forward(&prefill, Array2::zeros((0, vocab)).view_mut())?;
                model.commit(&(0..context.len()).collect::<Vec<_>>())?;
            }
            let tokens: Vec<Token> = (0..size).map(|i| (i % vocab) as Token).collect();
            let tree = TokenTree::from_chain(&tokens)?;
            let mut logits = Array2::zeros((size, vocab));
            let mut times: Vec<Duration> = Vec::with_capacity(repeats.max(1));
            for _ in 0..repeats.max(1) {
                let started = Instant::now();
                model.forward(&tree, logits.view_mut())?;
                times.push(started.elapsed());
                model.commit(&[])?;
            }
            times.sort();
            points.push((size, times[times.len() / 2].as_secs_f64().max(1e-9)));
        }
        model.reset()?;
        Self::new(points)
    }
}

/// `k:cost/k:cost/...`, each point's cost relative to one node's (so a measured curve in
/// seconds reads as ratios); a precision (`{:.2}`) applies to the costs. Parses back with
/// [`FromStr`].
impl fmt::Display for CostCurve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(k, _)) in self.points.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            match f.precision() {
                Some(digits) => write!(f, "{k}:{:.digits$}", self.relative(k))?,
                None => write!(f, "{k}:{}", self.relative(k))?,
            }
        }
        Ok(())
    }
}

/// Reads `k:cost/k:cost/...` (the cost of a forward over `k` nodes, in any unit), as the
/// strategies' `cost` options write it.
impl FromStr for CostCurve {
    type Err = DecodeError;

    fn from_str(text: &str) -> Result<Self, DecodeError> {
        let points = text
            .split('/')
            .map(|point| {
                let (k, cost) = point
                    .split_once(':')
                    .ok_or_else(|| DecodeError::config(format!("`{point}`: expected k:cost")))?;
                let k = k
                    .trim()
                    .parse()
                    .map_err(|e| DecodeError::config(format!("`{k}`: {e}")))?;
                let cost = cost
                    .trim()
                    .parse()
                    .map_err(|e| DecodeError::config(format!("`{cost}`: {e}")))?;
                Ok((k, cost))
            })
            .collect::<Result<Vec<(usize, f64)>, DecodeError>>()?;
        Self::new(points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_read_back() {
        let curve = CostCurve::new(vec![(1, 2.0), (4, 3.0), (8, 5.0)]).unwrap();
        assert_eq!(curve.to_string(), "1:1/4:1.5/8:2.5");
        assert_eq!(format!("{curve:.2}"), "1:1.00/4:1.50/8:2.50");
        let read: CostCurve = curve.to_string().parse().unwrap();
        assert_eq!(read.points(), &[(1, 1.0), (4, 1.5), (8, 2.5)]);
        for bad in ["", "1", "1:x", "x:1", "1:1/1:2", "0:1", "1:-1"] {
            assert!(bad.parse::<CostCurve>().is_err(), "{bad}");
        }
    }

    #[test]
    fn interpolates_and_extrapolates() {
        let curve = CostCurve::new(vec![(4, 3.0), (1, 1.0), (8, 5.0)]).unwrap();
        assert_eq!(curve.cost(1), 1.0);
        assert!((curve.cost(2) - 5.0 / 3.0).abs() < 1e-12);
        assert_eq!(curve.cost(6), 4.0);
        assert_eq!(curve.cost(16), 9.0);
        assert_eq!(curve.relative(8), 5.0);
        assert!(CostCurve::new(vec![]).is_err());
        assert!(CostCurve::new(vec![(0, 1.0)]).is_err());
        assert!(CostCurve::new(vec![(1, 1.0), (1, 2.0)]).is_err());
        assert!(CostCurve::new(vec![(1, f64::NAN)]).is_err());
    }

    #[test]
    fn per_sequence_curves_climb_with_the_batch() {
        let curve = CostCurve::new(vec![(1, 1.0), (8, 1.5), (64, 8.0)]).unwrap();
        assert_eq!(*curve.per_sequence(1), curve);
        let four = curve.per_sequence(4);
        assert_eq!(four.cost(1), curve.cost(4) / 4.0);
        assert_eq!(four.cost(8), curve.cost(32) / 4.0);
        assert!(four.relative(8) > curve.relative(8));
    }

    /// Issue 18, item 6: a measured point is read as measured, also where the curve dips.
    #[test]
    fn non_monotone_curves_are_read_as_measured() {
        let curve = CostCurve::new(vec![(1, 2.0), (4, 1.0), (8, 3.0)]).unwrap();
        assert_eq!(curve.cost(1), 2.0);
        assert_eq!(curve.cost(4), 1.0);
        assert_eq!(curve.cost(8), 3.0);
        assert!((curve.cost(2) - 5.0 / 3.0).abs() < 1e-12);
        assert_eq!(curve.cost(6), 2.0);
        assert_eq!(curve.cost(12), 5.0);
        // A falling last segment is not extrapolated below its last point.
        let falling = CostCurve::new(vec![(1, 1.0), (4, 3.0), (8, 2.0)]).unwrap();
        assert_eq!(falling.cost(8), 2.0);
        assert_eq!(falling.cost(1000), 2.0);
        assert!((1..2000).all(|n| falling.cost(n) > 0.0));
    }
}
