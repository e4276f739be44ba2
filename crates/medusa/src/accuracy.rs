//! Per-head rank accuracies: how often the token a head should predict is among its top `r`
//! candidates. Sparse candidate trees are built from them (the paper's method), and
//! [`RankAccuracyMeter`] measures them for any heads on any data.

use std::fmt::Write as _;
use std::path::Path;

use decoding_core::{LogitsModel, Token, TokenTree};
use ndarray::{Array1, Array2, ArrayView1};

use crate::context::{ContextPrior, Successors};
use crate::error::MedusaError;
use crate::ranking::RankedHead;
use crate::strategy::HeadSource;

/// Top-`r` accuracies per head: `top_r(k, r)` is the fraction of positions at which the
/// token head `k` predicts (`t + k + 2`) was among its `r` best candidates.
///
/// The file format is the one the Medusa training scripts write,
/// `{"head0": [top1, top2, ...], "head1": [...], ...}`, as shipped in
/// `medusa_topk_acc_heldout.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct RankAccuracies {
    cumulative: Vec<Vec<f64>>,
}

impl RankAccuracies {
    /// From cumulative accuracies: `cumulative[k][r - 1]` is head `k`'s top-`r` accuracy.
    /// Each list must be non-empty, within [0, 1] and non-decreasing.
    pub fn new(cumulative: Vec<Vec<f64>>) -> Result<Self, MedusaError> {
        if cumulative.is_empty() {
            return Err(MedusaError::InvalidAccuracies("no heads".to_string()));
        }
        for (k, list) in cumulative.iter().enumerate() {
            if list.is_empty() {
                return Err(MedusaError::InvalidAccuracies(format!(
                    "head {k} has no ranks"
                )));
            }
            if list.iter().any(|a| !(0.0..=1.0).contains(a)) {
                return Err(MedusaError::InvalidAccuracies(format!(
                    "head {k} has an accuracy outside [0, 1]"
                )));
            }
            if list.windows(2).any(|w| w[1] < w[0]) {
                return Err(MedusaError::InvalidAccuracies(format!(
                    "head {k}: top-r accuracy must not decrease with r"
                )));
            }
        }
        Ok(Self { cumulative })
    }

    /// Parses `{"head0": [...], "head1": [...], ...}` (heads numbered from 0 without gaps).
    pub fn from_json(text: &str) -> Result<Self, MedusaError> {
        let bad = |m: String| MedusaError::InvalidAccuracies(m);
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| bad("expected an object {\"head0\": [...], ...}".to_string()))?;
        let mut cumulative = Vec::new();
        while let Some(list) = object.get(&format!("head{}", cumulative.len())) {
            let list = list
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(serde_json::Value::as_f64)
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| bad(format!("head{} is not a list of numbers", cumulative.len())))?;
            cumulative.push(list);
        }
        if object.len() != cumulative.len() {
            return Err(bad(format!(
                "expected keys head0..head{} only, found {} keys",
                cumulative.len().saturating_sub(1),
                object.len()
            )));
        }
        Self::new(cumulative)
    }

    /// Reads a JSON file; see [`from_json`](Self::from_json).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, MedusaError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| MedusaError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// The same format as [`from_json`](Self::from_json) reads.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (k, list) in self.cumulative.iter().enumerate() {
            let values: Vec<String> = list.iter().map(|a| format!("{a:.6}")).collect();
            let sep = if k == 0 { "" } else { ", " };
            let _ = write!(out, "{sep}\"head{k}\": [{}]", values.join(", "));
        }
        out.push('}');
        out
    }

    /// Number of heads.
    pub fn num_heads(&self) -> usize {
        self.cumulative.len()
    }

    /// Number of ranks measured for head `k`.
    pub fn num_ranks(&self, k: usize) -> usize {
        self.cumulative.get(k).map_or(0, Vec::len)
    }

    /// Head `k`'s top-`r` accuracy (0 for `r = 0`; the last measured value beyond).
    pub fn top_r(&self, k: usize, r: usize) -> f64 {
        match (self.cumulative.get(k), r) {
            (_, 0) | (None, _) => 0.0,
            (Some(list), r) => list[(r - 1).min(list.len() - 1)],
        }
    }

    /// The probability that head `k`'s target is exactly its candidate of rank `rank`
    /// (0-based): `top_r(k, rank + 1) - top_r(k, rank)`; 0 beyond the measured ranks.
    pub fn rank_probability(&self, k: usize, rank: usize) -> f64 {
        if rank >= self.num_ranks(k) {
            return 0.0;
        }
        self.top_r(k, rank + 1) - self.top_r(k, rank)
    }
}

/// Measures [`RankAccuracies`] of heads on a model and token sequences (teacher forcing).
///
/// For each sequence the model runs one forward over it as a chain; at every position `t`,
/// head `k` is scored on the token at `t + k + 2`. To tune trees for greedy verification,
/// feed the model's own greedy continuations (targets are then exactly what verification
/// accepts) and count only the generated part, with `first_target` = prompt length.
#[derive(Clone, Debug)]
pub struct RankAccuracyMeter {
    hits: Vec<Vec<u64>>,
    positions: Vec<u64>,
    max_rank: usize,
    /// Per head: hits and probability mass of candidates that followed their parent token
    /// in the context, then of those that did not.
    context: Vec<[f64; 4]>,
    successors: Successors,
    ranked: RankedHead,
    order: Vec<u32>,
    logits: Array2<f32>,
    row: Array2<f32>,
    hidden: Array1<f32>,
    scratch: crate::heads::HeadScratch,
}

impl RankAccuracyMeter {
    /// A meter for `num_heads` heads counting ranks up to `max_rank` (at least 1).
    pub fn new(num_heads: usize, max_rank: usize) -> Result<Self, MedusaError> {
        if num_heads == 0 || max_rank == 0 {
            return Err(MedusaError::config(
                "the meter needs at least one head and one rank",
            ));
        }
        Ok(Self {
            hits: vec![vec![0; max_rank]; num_heads],
            positions: vec![0; num_heads],
            max_rank,
            context: vec![[0.0; 4]; num_heads],
            successors: Successors::default(),
            ranked: RankedHead::default(),
            order: Vec::new(),
            logits: Array2::zeros((0, 0)),
            row: Array2::zeros((0, 0)),
            hidden: Array1::zeros(0),
            scratch: Default::default(),
        })
    }

    /// Scores one position: `logits` holds one row per head at position `t`, `targets[k]`
    /// the token at `t + k + 2` (`None` when it is outside the data or not to be counted).
    pub fn record(&mut self, head_logits: ndarray::ArrayView2<'_, f32>, targets: &[Option<Token>]) {
        for (k, (row, target)) in head_logits.rows().into_iter().zip(targets).enumerate() {
            let (Some(&target), Some(hits)) = (target.as_ref(), self.hits.get_mut(k)) else {
                continue;
            };
            self.positions[k] += 1;
            if let Some(rank) = rank_of(row, target)
                && rank < self.max_rank
            {
                hits[rank] += 1;
            }
        }
    }

    /// Runs `model` over `tokens` (the model is reset first) and scores every position whose
    /// target index is at least `first_target`. Heads come from `heads`: the library's
    /// (fed the model's hidden states) or the engine's.
    pub fn observe_sequence(
        &mut self,
        model: &mut dyn LogitsModel,
        heads: &HeadSource,
        tokens: &[Token],
        first_target: usize,
    ) -> Result<(), MedusaError> {
        if tokens.len() < 2 {
            return Ok(());
        }
        let vocab = model.vocab_size();
        let num_heads = heads.num_heads().min(self.hits.len());
        model.reset().map_err(decoding_core::DecodeError::from)?;
        self.successors.clear();
        let tree = TokenTree::from_chain(tokens).map_err(decoding_core::DecodeError::from)?;
        self.logits = Array2::zeros((tree.logits_rows(), vocab));
        model
            .forward(&tree, self.logits.view_mut())
            .map_err(decoding_core::DecodeError::from)?;
        self.row = Array2::zeros((num_heads, vocab));
        let mut targets = vec![None; num_heads];
        let start = first_target.saturating_sub(num_heads + 1);
        for t in start..tokens.len() - 2 {
            for (k, target) in targets.iter_mut().enumerate() {
                let at = t + k + 2;
                *target = (at >= first_target)
                    .then(|| tokens.get(at).copied())
                    .flatten();
            }
            if targets.iter().all(Option::is_none) {
                continue;
            }
            heads.head_logits_at(
                model,
                t,
                &mut self.hidden,
                self.row.view_mut(),
                &mut self.scratch,
            )?;
            let row = std::mem::take(&mut self.row);
            self.record(row.view(), &targets);
            // The context prior: at the anchor t the context holds tokens up to the root t + 1.
            self.successors.update(&tokens[..(t + 2).min(tokens.len())]);
            for (k, target) in targets.iter().enumerate() {
                if let (Some(target), Some(logits)) = (target, row.row(k).to_slice()) {
                    self.record_context(k, logits, tokens[t + k + 1], *target);
                }
            }
            self.row = row;
        }
        model.reset().map_err(decoding_core::DecodeError::from)?;
        Ok(())
    }

    /// Adds head `k`'s candidates at one position to the context-prior counts.
    fn record_context(&mut self, k: usize, logits: &[f32], parent: Token, target: Token) {
        self.ranked
            .rank(logits, self.max_rank, true, &mut self.order);
        let counts = &mut self.context[k];
        for (&token, &p) in self.ranked.tokens.iter().zip(&self.ranked.probs) {
            let side = if self.successors.contains(parent, token) {
                0
            } else {
                2
            };
            counts[side] += f64::from(u8::from(token == target));
            counts[side + 1] += f64::from(p);
        }
    }

    /// The context prior measured by [`observe_sequence`](Self::observe_sequence): for each
    /// head, the hit rate per unit of head probability of the candidates (up to `max_rank`)
    /// that followed their parent token in the context (`seen`), and of those that did not
    /// (`unseen`). Heads without data get factor 1.
    pub fn context_prior(&self) -> Result<ContextPrior, MedusaError> {
        let ratio = |hits: f64, mass: f64| {
            if mass > 0.0 && hits > 0.0 {
                (hits / mass) as f32
            } else {
                1.0
            }
        };
        let seen = self.context.iter().map(|c| ratio(c[0], c[1])).collect();
        let unseen = self.context.iter().map(|c| ratio(c[2], c[3])).collect();
        ContextPrior::new(seen, unseen)
    }

    /// Positions scored for head `k`.
    pub fn positions(&self, k: usize) -> u64 {
        self.positions.get(k).copied().unwrap_or(0)
    }

    /// The accuracies measured so far (0 for heads that saw no position).
    pub fn accuracies(&self) -> RankAccuracies {
        let cumulative = self
            .hits
            .iter()
            .zip(&self.positions)
            .map(|(hits, &n)| {
                let mut total = 0;
                hits.iter()
                    .map(|&h| {
                        total += h;
                        if n == 0 { 0.0 } else { total as f64 / n as f64 }
                    })
                    .collect()
            })
            .collect();
        RankAccuracies { cumulative }
    }
}

/// The 0-based rank of `target` in `row` under the candidate order (higher logit first, lower
/// token id first on ties; NaN last); `None` if the target is outside the row or NaN.
pub(crate) fn rank_of(row: ArrayView1<'_, f32>, target: Token) -> Option<usize> {
    let t = target as usize;
    let value = *row.get(t)?;
    if value.is_nan() {
        return None;
    }
    let mut rank = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > value || (x == value && i < t) {
            rank += 1;
        }
    }
    Some(rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_validation() {
        let acc = RankAccuracies::from_json(r#"{"head0": [0.3, 0.5], "head1": [0.2, 0.25, 0.3]}"#)
            .unwrap();
        assert_eq!(acc.num_heads(), 2);
        assert!((acc.rank_probability(0, 1) - 0.2).abs() < 1e-12);
        assert_eq!(acc.rank_probability(0, 2), 0.0);
        assert_eq!(acc.top_r(1, 9), 0.3);
        assert_eq!(RankAccuracies::from_json(&acc.to_json()).unwrap(), acc);
        for bad in [
            "[]",
            "{}",
            r#"{"head0": [0.5, 0.4]}"#,
            r#"{"head0": [1.5]}"#,
            r#"{"head0": [0.5], "head2": [0.1]}"#,
            r#"{"head0": ["x"]}"#,
            r#"{"head0": []}"#,
        ] {
            assert!(RankAccuracies::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranks_break_ties_towards_lower_ids() {
        let row = ndarray::arr1(&[1.0f32, 3.0, 3.0, f32::NAN, 2.0]);
        assert_eq!(rank_of(row.view(), 1), Some(0));
        assert_eq!(rank_of(row.view(), 2), Some(1));
        assert_eq!(rank_of(row.view(), 4), Some(2));
        assert_eq!(rank_of(row.view(), 3), None);
        assert_eq!(rank_of(row.view(), 9), None);
    }

    #[test]
    fn meter_counts_cumulative_hits() {
        let mut meter = RankAccuracyMeter::new(2, 2).unwrap();
        let logits = ndarray::arr2(&[[0.0f32, 1.0, 2.0], [2.0, 1.0, 0.0]]);
        meter.record(logits.view(), &[Some(2), Some(1)]); // head0 rank 0, head1 rank 1
        meter.record(logits.view(), &[Some(0), None]); // head0 rank 2 (not counted as hit)
        let acc = meter.accuracies();
        assert_eq!(acc.top_r(0, 1), 0.5);
        assert_eq!(acc.top_r(0, 2), 0.5);
        assert_eq!(acc.top_r(1, 1), 0.0);
        assert_eq!(acc.top_r(1, 2), 1.0);
        assert_eq!((meter.positions(0), meter.positions(1)), (2, 1));
    }
}
