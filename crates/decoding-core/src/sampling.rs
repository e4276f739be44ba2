//! The target distribution: one definition of "what the model would sample", used by the
//! plain decoder and by every verifier alike.
//!
//! Greedy decoding takes the argmax, ties broken towards the lowest token id. Random sampling
//! applies, in this order, temperature, top-k (ties at the cut-off broken towards lower ids)
//! and top-p (the smallest prefix of tokens, by descending probability then ascending id,
//! whose mass reaches `p`), then renormalises.

use crate::error::DecodeError;
use crate::tree::Token;

/// Index of the largest logit, the lowest index on ties; `None` if `logits` is empty or
/// holds a NaN.
pub fn argmax(logits: &[f32]) -> Option<Token> {
    // A maximum over 8 independent lanes vectorises; then the first index holding it.
    const LANES: usize = 8;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut nan = false;
    let chunks = logits.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            nan |= x.is_nan();
            *lane = if x > *lane { x } else { *lane };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &x in lanes.iter().chain(rest) {
        nan |= x.is_nan();
        max = if x > max { x } else { max };
    }
    if nan {
        return None;
    }
    logits.iter().position(|&x| x == max).map(|i| i as Token)
}

/// A source of randomness for sampling and verification.
///
/// Implemented for every [`rand::Rng`]. Tests implement it to enumerate all outcomes of a
/// verifier exactly: everything random in this crate goes through
/// [`categorical`](Self::categorical).
pub trait Draw {
    /// A uniform sample from `[0, 1)`.
    fn uniform(&mut self) -> f64;

    /// An index `i` drawn with probability `weights[i] / sum(weights)`. `weights` are
    /// non-negative with a positive sum; an index with weight 0 is never returned.
    fn categorical(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let target = self.uniform() * total;
        let mut cumulative = 0.0;
        let mut last_positive = 0;
        for (i, &w) in weights.iter().enumerate() {
            if w > 0.0 {
                cumulative += w;
                last_positive = i;
                if cumulative > target {
                    return i;
                }
            }
        }
        // Rounding can leave `target` a hair above the final sum.
        last_positive
    }
}

impl<R: rand::Rng + ?Sized> Draw for R {
    fn uniform(&mut self) -> f64 {
        // 53 random bits: every multiple of 2^-53 in [0, 1) equally likely.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// How the next token is chosen from logits. Validated at construction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self::greedy()
    }
}

impl Sampling {
    /// Greedy decoding: the argmax, lowest id on ties.
    pub const fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
        }
    }

    /// Random sampling at `temperature` (0 means greedy), optionally restricted to the `top_k`
    /// most likely tokens and to the nucleus of mass `top_p`.
    pub fn new(
        temperature: f32,
        top_k: Option<usize>,
        top_p: Option<f32>,
    ) -> Result<Self, DecodeError> {
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(DecodeError::config(format!(
                "temperature must be finite and >= 0, got {temperature}"
            )));
        }
        if top_k == Some(0) {
            return Err(DecodeError::config("top_k must be at least 1"));
        }
        if let Some(p) = top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(DecodeError::config(format!(
                "top_p must be in (0, 1], got {p}"
            )));
        }
        Ok(Self {
            temperature,
            top_k,
            top_p,
        })
    }

    /// Whether this is greedy decoding (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// The temperature (0 for greedy).
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// The top-k cut, if any.
    pub fn top_k(&self) -> Option<usize> {
        self.top_k
    }

    /// The top-p (nucleus) mass, if any.
    pub fn top_p(&self) -> Option<f32> {
        self.top_p
    }

    /// Writes the target distribution for `logits` into `probs` (one probability per token,
    /// summing to 1). Fails when `logits` is empty or holds a NaN. Infinite logits are
    /// limits: `+inf` takes all the mass (the lowest such id), and a row where every logit is
    /// `-inf` gives all of it to token 0, as greedy decoding's lowest-id tie-break does.
    pub fn distribution(&self, logits: &[f32], probs: &mut Vec<f64>) -> Result<(), InvalidLogits> {
        probs.clear();
        probs.resize(logits.len(), 0.0);
        let best = argmax(logits).ok_or(InvalidLogits)?;
        let max = logits[best as usize];
        if self.is_greedy() || max.is_infinite() {
            probs[best as usize] = 1.0;
            return Ok(());
        }
        let inv_t = 1.0 / f64::from(self.temperature);
        for (p, &x) in probs.iter_mut().zip(logits) {
            *p = ((f64::from(x) - f64::from(max)) * inv_t).exp();
        }
        if self.top_k.is_some() || self.top_p.is_some() {
            self.truncate(probs);
        }
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        Ok(())
    }

    /// Zeroes the tokens outside top-k and top-p (before normalisation).
    ///
    /// Sorting the whole vocabulary is the expensive part, so the best tokens are selected in
    /// growing batches until the top-k cut or the nucleus is reached; the ordering (by
    /// probability, then by id) and hence the result are those of a full sort.
    fn truncate(&self, probs: &mut [f64]) {
        let by_prob = |a: &u32, b: &u32| {
            probs[*b as usize]
                .total_cmp(&probs[*a as usize])
                .then(a.cmp(b))
        };
        let vocab = probs.len();
        let cap = self.top_k.unwrap_or(vocab).min(vocab);
        // Top-p applies to the distribution left by top-k: its target is a share of the
        // top-k mass, so with a top-k cut the first batch is the whole cut.
        let total: f64 = probs.iter().sum();
        let mut order: Vec<u32> = (0..vocab as u32).collect();
        let mut batch = if self.top_k.is_some() {
            cap
        } else {
            64.min(cap)
        };
        let kept = loop {
            if batch < order.len() {
                order.select_nth_unstable_by(batch - 1, by_prob);
            }
            order[..batch].sort_unstable_by(by_prob);
            let nucleus = self.top_p.and_then(|top_p| {
                let mass = match self.top_k {
                    Some(_) => order[..batch].iter().map(|&i| probs[i as usize]).sum(),
                    None => total,
                };
                let target = f64::from(top_p) * mass;
                let mut cumulative = 0.0;
                order[..batch].iter().position(|&i| {
                    cumulative += probs[i as usize];
                    cumulative >= target
                })
            });
            match nucleus {
                Some(n) => break n + 1,
                None if batch == cap => break cap,
                None => batch = (batch * 4).min(cap),
            }
        };
        let kept: Vec<(u32, f64)> = order[..kept]
            .iter()
            .map(|&i| (i, probs[i as usize]))
            .collect();
        probs.fill(0.0);
        for (i, p) in kept {
            probs[i as usize] = p;
        }
    }

    /// Samples one token from `logits` (the argmax when greedy; `draw` is then unused).
    pub fn sample(
        &self,
        logits: &[f32],
        draw: &mut dyn Draw,
        scratch: &mut Vec<f64>,
    ) -> Result<Token, InvalidLogits> {
        if self.is_greedy() {
            return argmax(logits).ok_or(InvalidLogits);
        }
        self.distribution(logits, scratch)?;
        Ok(draw.categorical(scratch) as Token)
    }
}

/// Logits that define no distribution: empty, or holding a NaN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("logits are empty or hold a NaN")]
pub struct InvalidLogits;

impl InvalidLogits {
    /// The decode error for logits row `row`.
    pub fn at_row(self, row: usize) -> DecodeError {
        DecodeError::InvalidLogits { row }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious definitions the fast paths must match.
    fn naive_argmax(logits: &[f32]) -> Option<Token> {
        if logits.is_empty() || logits.iter().any(|x| x.is_nan()) {
            return None;
        }
        let mut best = 0;
        for (i, &x) in logits.iter().enumerate() {
            if x > logits[best] {
                best = i;
            }
        }
        Some(best as Token)
    }

    fn naive_truncate(sampling: &Sampling, probs: &mut [f64]) {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let mut keep = sampling.top_k.unwrap_or(probs.len()).min(probs.len());
        if let Some(p) = sampling.top_p {
            let target = f64::from(p) * order[..keep].iter().map(|&i| probs[i]).sum::<f64>();
            let mut cumulative = 0.0;
            for (n, &i) in order[..keep].iter().enumerate() {
                cumulative += probs[i];
                if cumulative >= target {
                    keep = n + 1;
                    break;
                }
            }
        }
        for &i in &order[keep..] {
            probs[i] = 0.0;
        }
    }

    fn logit() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => (-4i32..4).prop_map(|x| x as f32),
            4 => -10.0f32..10.0,
            1 => Just(f32::NEG_INFINITY),
            1 => Just(f32::NAN),
        ]
    }

    proptest! {
        #[test]
        fn argmax_matches_the_naive_scan(logits in prop::collection::vec(logit(), 0..300)) {
            prop_assert_eq!(argmax(&logits), naive_argmax(&logits));
        }

        #[test]
        fn truncation_matches_a_full_sort(
            probs in prop::collection::vec(prop_oneof![Just(0.0f64), 0.0f64..1.0, Just(0.5)], 1..600),
            top_k in prop::option::of(1usize..400), top_p in prop::option::of(0.01f32..1.0),
        ) {
            let sampling = Sampling::new(1.0, top_k, top_p).unwrap();
            let (mut fast, mut slow) = (probs.clone(), probs);
            sampling.truncate(&mut fast);
            naive_truncate(&sampling, &mut slow);
            prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn argmax_breaks_ties_low_and_rejects_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), Some(0));
        assert_eq!(argmax(&[0.0, f32::NAN]), None);
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn top_k_and_top_p_cut_as_documented() {
        let logits = [0.0f32, 2.0, 2.0, 1.0, -1.0];
        let mut probs = Vec::new();
        Sampling::new(1.0, Some(2), None)
            .unwrap()
            .distribution(&logits, &mut probs)
            .unwrap();
        assert_eq!(probs, vec![0.0, 0.5, 0.5, 0.0, 0.0]);
        Sampling::new(1.0, None, Some(0.3))
            .unwrap()
            .distribution(&logits, &mut probs)
            .unwrap();
        assert_eq!(probs, vec![0.0, 1.0, 0.0, 0.0, 0.0]);
        Sampling::new(1.0, Some(1), Some(1.0))
            .unwrap()
            .distribution(&[5.0, 5.0], &mut probs)
            .unwrap();
        assert_eq!(probs, vec![1.0, 0.0]);
    }

    #[test]
    fn temperature_scales_logits() {
        let mut probs = Vec::new();
        Sampling::new(2.0, None, None)
            .unwrap()
            .distribution(&[0.0, 2.0f32.ln() * 2.0], &mut probs)
            .unwrap();
        assert!((probs[0] - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn invalid_configs_are_errors() {
        assert!(Sampling::new(-1.0, None, None).is_err());
        assert!(Sampling::new(f32::NAN, None, None).is_err());
        assert!(Sampling::new(1.0, Some(0), None).is_err());
        assert!(Sampling::new(1.0, None, Some(0.0)).is_err());
        assert!(Sampling::new(1.0, None, Some(1.5)).is_err());
    }

    #[test]
    fn categorical_never_returns_zero_weight() {
        struct Fixed(f64);
        impl Draw for Fixed {
            fn uniform(&mut self) -> f64 {
                self.0
            }
        }
        let w = [0.0, 0.5, 0.0, 0.5, 0.0];
        assert_eq!(Fixed(0.0).categorical(&w), 1);
        assert_eq!(Fixed(0.4999).categorical(&w), 1);
        assert_eq!(Fixed(0.5).categorical(&w), 3);
        assert_eq!(Fixed(1.0 - 1e-16).categorical(&w), 3);
    }

    #[test]
    fn infinite_rows_are_limits() {
        let mut probs = Vec::new();
        let t = Sampling::new(0.7, None, Some(0.9)).unwrap();
        t.distribution(&[f32::NEG_INFINITY; 3], &mut probs).unwrap();
        assert_eq!(probs, [1.0, 0.0, 0.0]);
        t.distribution(&[0.0, f32::INFINITY, f32::INFINITY], &mut probs)
            .unwrap();
        assert_eq!(probs, [0.0, 1.0, 0.0]);
    }
}
