//! The target distribution by its definition, replayed random draws, arbitrary logits.

use arbitrary::{Result, Unstructured};
use decoding_core::{Draw, Sampling, Token};
use ndarray::Array2;

/// Replays a fixed list of uniforms (cycling), recording every one it hands out.
#[derive(Clone, Debug)]
pub struct ReplayDraw {
    values: Vec<f64>,
    next: usize,
    /// The uniforms handed out so far, in order.
    pub drawn: Vec<f64>,
}

impl ReplayDraw {
    /// Uniforms in `[0, 1)` from 16-bit values (`0.5` if there are none).
    pub fn new(raw: &[u16]) -> Self {
        let values = if raw.is_empty() {
            vec![0.5]
        } else {
            raw.iter().map(|&v| f64::from(v) / 65536.0).collect()
        };
        Self {
            values,
            next: 0,
            drawn: Vec::new(),
        }
    }
}

impl Draw for ReplayDraw {
    fn uniform(&mut self) -> f64 {
        let v = self.values[self.next % self.values.len()];
        self.next += 1;
        self.drawn.push(v);
        v
    }
}

/// Arbitrary sampling settings: temperature in (0, 2.5], optional top-k and top-p; greedy
/// now and then.
pub fn arbitrary_sampling(u: &mut Unstructured<'_>, vocab: usize) -> Result<Sampling> {
    if u.ratio(1, 8)? {
        return Ok(Sampling::greedy());
    }
    let temperature = f32::from(u.int_in_range(1u8..=25)?) / 10.0;
    let top_k = if u.arbitrary()? {
        Some(u.int_in_range(1..=vocab + 1)?)
    } else {
        None
    };
    let top_p = if u.arbitrary()? {
        Some(f32::from(u.int_in_range(1u8..=20)?) / 20.0)
    } else {
        None
    };
    Ok(Sampling::new(temperature, top_k, top_p).expect("valid sampling settings"))
}

/// Arbitrary logits, mostly small integers (so ties are exact), some `-inf`, some arbitrary
/// finite values; `+inf` and NaN only when `specials` says so.
pub fn arbitrary_logits(
    u: &mut Unstructured<'_>,
    rows: usize,
    vocab: usize,
    specials: bool,
) -> Result<Array2<f32>> {
    let mut values = Vec::with_capacity(rows * vocab);
    for _ in 0..rows * vocab {
        let b: u8 = u.arbitrary()?;
        values.push(match b % 32 {
            0..=23 => f32::from(b % 8) - 4.0,
            24..=26 => f32::NEG_INFINITY,
            27..=29 => f32::from(u.int_in_range(-3000i16..=3000)?) / 100.0,
            30 if specials => f32::INFINITY,
            31 if specials => f32::NAN,
            _ => 0.5,
        });
    }
    Ok(Array2::from_shape_vec((rows, vocab), values).unwrap())
}

/// Index of the first maximum; `None` for a row that defines no distribution: empty, holding
/// a NaN, or every logit `-inf`.
pub fn naive_argmax(logits: &[f32]) -> Option<Token> {
    if logits.is_empty()
        || logits.iter().any(|x| x.is_nan())
        || logits.iter().all(|&x| x == f32::NEG_INFINITY)
    {
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

/// What the definition says the target distribution is.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// The distribution.
    Dist(Vec<f64>),
    /// Empty, NaN or all `-inf` logits: sampling must fail.
    Invalid,
    /// A top-p cut so close to a boundary that rounding decides it: not checked.
    Unchecked,
}

/// The target distribution of `logits` by the documented definition: greedy is the argmax
/// (lowest id on ties); otherwise temperature, then top-k (ties towards lower ids), then
/// top-p (the shortest prefix by descending probability, then ascending id, whose mass
/// reaches `p` of what top-k kept), renormalised. A `+inf` logit takes all the mass; a row
/// of only `-inf` is invalid.
pub fn naive_distribution(logits: &[f32], sampling: &Sampling) -> Target {
    let Some(best) = naive_argmax(logits) else {
        return Target::Invalid;
    };
    let best = best as usize;
    let one_hot = || {
        let mut p = vec![0.0; logits.len()];
        p[best] = 1.0;
        Target::Dist(p)
    };
    if sampling.is_greedy() || logits[best].is_infinite() {
        return one_hot();
    }
    let t = f64::from(sampling.temperature());
    let max = f64::from(logits[best]);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&x| ((f64::from(x) - max) / t).exp())
        .collect();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let cap = sampling.top_k().unwrap_or(logits.len()).min(logits.len());
    let keep_for = |p: f64| -> usize {
        let mass: f64 = order[..cap].iter().map(|&i| weights[i]).sum();
        let target = p * mass;
        let mut cumulative = 0.0;
        for (n, &i) in order[..cap].iter().enumerate() {
            cumulative += weights[i];
            if cumulative >= target {
                return n + 1;
            }
        }
        cap
    };
    let keep = match sampling.top_p() {
        None => cap,
        Some(p) => {
            let p = f64::from(p);
            // Unclamped: at `p = 1` the upper bound keeps every token, so a tail too light to
            // move a floating-point sum leaves the cut to rounding (not checked).
            let (low, high) = (keep_for(p * (1.0 - 1e-9)), keep_for(p * (1.0 + 1e-9)));
            if low != high {
                return Target::Unchecked;
            }
            low
        }
    };
    let mut probs = vec![0.0; logits.len()];
    for &i in &order[..keep] {
        probs[i] = weights[i];
    }
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    Target::Dist(probs)
}

/// Checks the library's distribution of `logits` against the definition and returns the
/// definition's (or `None` where it is not checked). Panics on disagreement.
pub fn check_distribution(logits: &[f32], sampling: &Sampling) -> Option<Vec<f64>> {
    let mut got = Vec::new();
    let result = sampling.distribution(logits, &mut got);
    match naive_distribution(logits, sampling) {
        Target::Invalid => {
            assert!(result.is_err(), "logits {logits:?} define no distribution");
            None
        }
        Target::Unchecked => None,
        Target::Dist(expected) => {
            result.unwrap_or_else(|e| panic!("{e} for {logits:?}"));
            assert_eq!(got.len(), expected.len());
            for (i, (&g, &e)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(
                    g > 0.0,
                    e > 0.0,
                    "support differs at {i}: {got:?} vs {expected:?} ({sampling:?}, {logits:?})"
                );
                assert!(
                    (g - e).abs() <= 1e-9,
                    "p[{i}] = {g}, expected {e} ({sampling:?}, {logits:?})"
                );
            }
            Some(expected)
        }
    }
}

/// Checks that drawing `token` with uniform `u` from `probs` is what inverse-CDF sampling
/// (tokens in id order) gives, up to rounding at the interval ends.
pub fn check_draw(probs: &[f64], u: f64, token: Token) {
    let t = token as usize;
    assert!(probs[t] > 0.0, "drew token {token} of probability 0");
    let before: f64 = probs[..t].iter().sum();
    let through = before + probs[t];
    assert!(
        before <= u + 1e-9 && u < through + 1e-9,
        "u = {u} does not fall in token {token}'s interval [{before}, {through})"
    );
}

/// Makes drafts likely to be accepted, as good drafters are: at each node with logits, now
/// and then, raises the logit of one child's token (if inside the vocabulary) above the rest.
pub fn favour_children(
    u: &mut Unstructured<'_>,
    tree: &decoding_core::TokenTree,
    logits: &mut Array2<f32>,
) -> Result<()> {
    for node in 0..tree.len() {
        let Some(row) = tree.logits_row(node) else {
            continue;
        };
        let children: Vec<usize> = tree.children(node).collect();
        if children.is_empty() || !u.ratio(2, 3)? {
            continue;
        }
        let token = tree.token(*u.choose(&children)?) as usize;
        if token < logits.ncols() {
            logits[[row, token]] = f32::from(u.int_in_range(3u8..=8)?);
        }
    }
    Ok(())
}
