//! The target distribution: one definition of "what the model would sample", used by the
//! plain decoder and by every verifier alike.
//!
//! Greedy decoding takes the argmax, ties broken towards the lowest token id. Random sampling
//! applies, in this order (as Hugging Face's warpers do), temperature, top-k (ties at the
//! cut-off broken towards lower ids), top-p (the smallest prefix of tokens, by descending
//! probability then ascending id, whose mass reaches `p`) and min-p (tokens less likely than
//! `min_p` times the most likely one are dropped), then renormalises.
//!
//! A row that defines no distribution is an error ([`InvalidLogits`]), under greedy decoding
//! and sampling alike: an empty row, a NaN anywhere in it, or every logit `-inf` (no token
//! can be chosen; a constraint that masks every token reports itself instead).

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

/// How the next token is chosen from logits.
///
/// Built with infallible setters and checked once by [`validate`](Self::validate) (the
/// decoder does it when a sequence starts; [`new`](Self::new) is the validated shorthand);
/// [`distribution`](Self::distribution) and [`sample`](Self::sample) refuse an invalid one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
    min_p: Option<f32>,
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
            min_p: None,
        }
    }

    /// Random sampling at `temperature` (finite, `>= 0`; 0 means greedy), no truncation.
    pub const fn with_temperature(temperature: f32) -> Self {
        Self {
            temperature,
            ..Self::greedy()
        }
    }

    /// Random sampling at `temperature`, optionally restricted to the `top_k` most likely
    /// tokens and to the nucleus of mass `top_p`; validated.
    pub fn new(
        temperature: f32,
        top_k: Option<usize>,
        top_p: Option<f32>,
    ) -> Result<Self, DecodeError> {
        let sampling = Self {
            top_k,
            top_p,
            ..Self::with_temperature(temperature)
        };
        sampling.validate()?;
        Ok(sampling)
    }

    /// Keeps only the `k` most likely tokens (`k >= 1`); `None` keeps all.
    pub fn with_top_k(mut self, k: Option<usize>) -> Self {
        self.top_k = k;
        self
    }

    /// Keeps the nucleus of mass `p` (in `(0, 1]`); `None` keeps all.
    pub fn with_top_p(mut self, p: Option<f32>) -> Self {
        self.top_p = p;
        self
    }

    /// Drops the tokens less likely than `p` (in `[0, 1]`) times the most likely one, after
    /// top-k and top-p; `None` keeps all.
    pub fn with_min_p(mut self, p: Option<f32>) -> Self {
        self.min_p = p;
        self
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return Err(DecodeError::config(format!(
                "temperature must be finite and >= 0, got {t}"
            )));
        }
        if self.top_k == Some(0) {
            return Err(DecodeError::config("top_k must be at least 1"));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(DecodeError::config(format!(
                "top_p must be in (0, 1], got {p}"
            )));
        }
        if let Some(p) = self.min_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(DecodeError::config(format!(
                "min_p must be in [0, 1], got {p}"
            )));
        }
        Ok(())
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

    /// The min-p ratio, if any.
    pub fn min_p(&self) -> Option<f32> {
        self.min_p
    }

    /// Writes the target distribution for `logits` into `probs` (one probability per token,
    /// summing to 1). Fails when the row defines no distribution (see the module docs) or
    /// the sampling parameters are invalid. A `+inf` logit takes all the mass (the lowest
    /// such id).
    pub fn distribution(&self, logits: &[f32], probs: &mut Vec<f64>) -> Result<(), InvalidLogits> {
        probs.clear();
        probs.resize(logits.len(), 0.0);
        let best = checked_argmax(logits)?;
        if self.validate().is_err() {
            return Err(InvalidLogits::InvalidSampling);
        }
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
        if let Some(min_p) = self.min_p {
            // The most likely token weighs exp(0) = 1 and survives every cut, so the
            // threshold relative to it is `min_p` itself.
            let threshold = f64::from(min_p);
            probs.iter_mut().for_each(|p| {
                if *p < threshold {
                    *p = 0.0;
                }
            });
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
            return checked_argmax(logits);
        }
        self.distribution(logits, scratch)?;
        Ok(draw.categorical(scratch) as Token)
    }
}

/// The greedy choice of a row that defines a distribution: the argmax (lowest id on ties) of
/// a row that is not empty, holds no NaN and not only `-inf`; else why not.
pub fn checked_argmax(logits: &[f32]) -> Result<Token, InvalidLogits> {
    match argmax(logits) {
        Some(best) if logits[best as usize] > f32::NEG_INFINITY => Ok(best),
        Some(_) => Err(InvalidLogits::AllNegativeInfinite),
        None if logits.is_empty() => Err(InvalidLogits::Empty),
        None => {
            let token = logits.iter().position(|x| x.is_nan()).unwrap_or(0) as Token;
            Err(InvalidLogits::Nan { token })
        }
    }
}

/// Why a logits row defines no distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidLogits {
    /// The row has no entries.
    #[error("the row is empty")]
    Empty,
    /// A NaN logit (the first one is named).
    #[error("the logit of token {token} is NaN")]
    Nan {
        /// The first token whose logit is NaN.
        token: Token,
    },
    /// Every logit is `-inf`: no token can be chosen.
    #[error("every logit is -inf, so no token can be chosen")]
    AllNegativeInfinite,
    /// The sampling parameters are out of range (see [`Sampling::validate`]).
    #[error("the sampling parameters are invalid")]
    InvalidSampling,
}

impl InvalidLogits {
    /// The decode error for logits row `row`.
    pub fn at_row(self, row: usize) -> DecodeError {
        DecodeError::InvalidLogits { row, reason: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

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
    fn infinite_logits_are_limits() {
        let mut probs = Vec::new();
        let t = Sampling::new(0.7, None, Some(0.9)).unwrap();
        t.distribution(&[0.0, f32::INFINITY, f32::INFINITY], &mut probs)
            .unwrap();
        assert_eq!(probs, [0.0, 1.0, 0.0]);
        t.distribution(&[f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY], &mut probs)
            .unwrap();
        assert_eq!(probs, [0.0, 1.0, 0.0]);
    }

    /// Issue 16: an all -inf row used to yield token 0 silently; it is an error, under
    /// greedy decoding and sampling alike, and a NaN is named where it is.
    #[test]
    fn rows_without_a_distribution_are_errors_naming_why() {
        let mut probs = Vec::new();
        let mut draw = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
        for sampling in [
            Sampling::greedy(),
            Sampling::new(0.7, Some(2), None).unwrap(),
        ] {
            let all_neg = [f32::NEG_INFINITY; 3];
            assert_eq!(
                sampling.sample(&all_neg, &mut draw, &mut probs),
                Err(InvalidLogits::AllNegativeInfinite)
            );
            assert_eq!(
                sampling.sample(&[0.0, 1.0, f32::NAN, f32::NAN], &mut draw, &mut probs),
                Err(InvalidLogits::Nan { token: 2 })
            );
            assert_eq!(
                sampling.sample(&[], &mut draw, &mut probs),
                Err(InvalidLogits::Empty)
            );
        }
        let err = InvalidLogits::Nan { token: 2 }.at_row(3).to_string();
        assert_eq!(err, "invalid logits in row 3: the logit of token 2 is NaN");
    }

    #[test]
    fn min_p_drops_tokens_below_its_share_of_the_best() {
        let mut probs = Vec::new();
        // exp(0), exp(-1), exp(-3): relative weights 1, 0.37, 0.05.
        let logits = [0.0f32, -1.0, -3.0];
        let sampling = Sampling::with_temperature(1.0).with_min_p(Some(0.1));
        sampling.validate().unwrap();
        sampling.distribution(&logits, &mut probs).unwrap();
        let kept = 1.0 + (-1.0f64).exp();
        assert_eq!(probs[2], 0.0);
        assert!((probs[0] - 1.0 / kept).abs() < 1e-12);
        // Applied after the temperature: at 10, every token is within 0.1 of the best.
        let hot = Sampling::with_temperature(10.0).with_min_p(Some(0.1));
        hot.distribution(&logits, &mut probs).unwrap();
        assert!(probs.iter().all(|&p| p > 0.0));
        assert!(
            Sampling::with_temperature(1.0)
                .with_min_p(Some(1.5))
                .validate()
                .is_err()
        );
        assert_eq!(
            Sampling::with_temperature(-1.0).distribution(&logits, &mut probs),
            Err(InvalidLogits::InvalidSampling)
        );
    }
}
