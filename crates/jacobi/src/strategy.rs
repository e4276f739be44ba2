//! The Jacobi strategy: draft the trajectory as a chain, replace it by the model's predictions.

use decoding_core::{
    DecodeError, DraftContext, InvalidLogits, Metric, NodeId, SourceId, SourceSet, StepFeedback,
    Strategy, Token, TokenTree, argmax, checked_argmax,
};
use ndarray::ArrayView2;

use crate::config::{ConfigError, JacobiConfig};
use crate::init::Initializer;
use crate::trajectory::Trajectory;

/// The source tag of Jacobi guesses in the drafted tree (see [`DecodeStats::accepted_by_source`]).
///
/// [`DecodeStats::accepted_by_source`]: decoding_core::DecodeStats::accepted_by_source
pub const JACOBI_SOURCE: SourceId = match SourceId::new(0) {
    Some(id) => id,
    None => unreachable!(),
};

/// The greedy prediction (argmax, lowest id on ties) at `node`, or `None` if its logits were
/// not requested.
pub fn greedy_prediction(
    tree: &TokenTree,
    logits: ArrayView2<'_, f32>,
    node: NodeId,
) -> Result<Option<Token>, DecodeError> {
    let Some(row) = tree.logits_row(node) else {
        return Ok(None);
    };
    if row >= logits.nrows() {
        return Err(DecodeError::Contract(
            "fewer logits rows than the tree asked for",
        ));
    }
    let values = logits.row(row);
    let token = match values.as_slice() {
        Some(slice) => fast_argmax(slice),
        None => argmax(&values.to_vec()),
    };
    match token {
        Some(token) => Ok(Some(token)),
        None => Err(checked_argmax(&values.to_vec())
            .err()
            .unwrap_or(InvalidLogits::Empty)
            .at_row(row)),
    }
}

/// [`argmax`] (lowest index on ties, `None` when empty or holding a NaN), computed in two
/// passes that the compiler vectorises: the maximum (and a NaN check) over 16 lanes, then the
/// first index holding it. Several times faster on vocabulary-sized rows.
pub fn fast_argmax(values: &[f32]) -> Option<Token> {
    const LANES: usize = 16;
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut nan = false;
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        let mut any_nan = 0u32;
        for (lane, &x) in max.iter_mut().zip(chunk) {
            any_nan |= u32::from(x.is_nan());
            *lane = lane.max(x);
        }
        nan |= any_nan != 0;
    }
    if nan || rest.iter().any(|x| x.is_nan()) {
        return None;
    }
    let best = max
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |best, &x| best.max(x));
    let mut base = 0;
    for block in values.chunks(64) {
        if block.iter().fold(false, |hit, &x| hit | (x == best)) {
            let i = block.iter().position(|&x| x == best)?;
            return Some((base + i) as Token);
        }
        base += block.len();
    }
    None
}

/// Counters of a Jacobi run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JacobiStats {
    /// Steps (forward passes) observed.
    pub steps: usize,
    /// Guesses drafted, over all steps.
    pub drafted: usize,
    /// Guesses accepted, over all steps.
    pub accepted: usize,
    /// Steps at a fixed point: every drafted guess equalled the model's prediction.
    pub fixed_points: usize,
}

impl JacobiStats {
    /// Mean guesses accepted per step.
    pub fn accepted_per_step(&self) -> f64 {
        ratio(self.accepted, self.steps)
    }

    /// Share of steps whose whole window was a fixed point.
    pub fn fixed_point_rate(&self) -> f64 {
        ratio(self.fixed_points, self.steps)
    }

    /// Mean guesses drafted per step.
    pub fn drafted_per_step(&self) -> f64 {
        ratio(self.drafted, self.steps)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Jacobi decoding as a sans-IO [`Strategy`].
///
/// Each step drafts the trajectory (the guesses for the `k` positions after the pending
/// token) as a chain; after the forward pass the verified prefix and the bonus token are
/// emitted, and every later guess is replaced by the model's prediction at the position
/// before it, the Jacobi update. The guesses that survive keep their positions
/// ([`Trajectory::advance_to`]); the positions uncovered at the end are filled by the
/// [`Init`](crate::Init) policy.
///
/// ```
/// use decoding_core::{generate, DecodeConfig, Plain};
/// use decoding_testkit::toy::HashModel;
/// use jacobi::{Jacobi, JacobiConfig};
/// # use rand::SeedableRng;
///
/// let mut model = HashModel::new(16, 3);
/// let config = DecodeConfig::new(40);
/// let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
/// let plain = generate(&mut model, Plain, &[1, 2], &config, &mut rng).unwrap();
/// let jacobi = Jacobi::new(JacobiConfig::new(4)).unwrap();
/// let out = generate(&mut model, jacobi, &[1, 2], &config, &mut rng).unwrap();
/// assert_eq!(out.tokens, plain.tokens);
/// assert!(out.stats.forward_passes() <= plain.stats.forward_passes());
/// ```
#[derive(Clone, Debug)]
pub struct Jacobi {
    config: JacobiConfig,
    init: Initializer,
    trajectory: Trajectory,
    pending_position: usize,
    drafted: usize,
    predictions: Vec<Token>,
    stats: JacobiStats,
}

impl Jacobi {
    /// A Jacobi strategy with this configuration, once it is validated.
    pub fn new(config: JacobiConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            init: Initializer::new(config.init),
            trajectory: Trajectory::new(0),
            pending_position: 0,
            drafted: 0,
            predictions: Vec::new(),
            stats: JacobiStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &JacobiConfig {
        &self.config
    }

    /// The current guesses (after the pending token).
    pub fn trajectory(&self) -> &Trajectory {
        &self.trajectory
    }

    /// Counters of the current sequence.
    pub fn stats(&self) -> &JacobiStats {
        &self.stats
    }
}

impl Strategy for Jacobi {
    fn name(&self) -> &str {
        "jacobi"
    }

    fn begin(&mut self, prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        self.init.begin(prompt, vocab_size)?;
        self.trajectory.reset(prompt.len());
        self.stats = JacobiStats::default();
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        self.pending_position = ctx.tokens.len() - 1;
        self.trajectory.advance_to(ctx.tokens.len());
        let len = self
            .config
            .window
            .min(ctx.max_depth)
            .min(ctx.max_nodes.saturating_sub(1));
        self.init.fill(&mut self.trajectory, len, ctx.tokens);
        let guesses = &self.trajectory.tokens()[..len];
        tree.extend_chain(0, guesses, true, SourceSet::of(JACOBI_SOURCE))?;
        self.drafted = len;
        Ok(())
    }

    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        let tree = feedback.tree;
        if tree.len() != self.drafted + 1 || !tree.is_chain() {
            return Err(DecodeError::Contract(
                "jacobi observed a tree it did not draft",
            ));
        }
        // Node i sits at depth i; its prediction is the new guess for the position after it.
        self.predictions.clear();
        for node in 0..tree.len() {
            let token = greedy_prediction(tree, feedback.logits, node)?.ok_or(
                DecodeError::Contract("jacobi drafted a node without logits"),
            )?;
            self.predictions.push(token);
        }
        let accepted = feedback.verification.accepted();
        self.stats.steps += 1;
        self.stats.drafted += self.drafted;
        self.stats.accepted += accepted;
        if self.drafted > 0 && accepted == self.drafted {
            self.stats.fixed_points += 1;
        }
        self.trajectory
            .assign(self.pending_position + 1, self.predictions.iter().copied());
        self.trajectory.advance_to(feedback.tokens.len());
        self.init.observe(feedback.tokens);
        Ok(())
    }

    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::new("accepted_per_step", self.stats.accepted_per_step()),
            Metric::new("fixed_point_rate", self.stats.fixed_point_rate()),
            Metric::new("drafted_per_step", self.stats.drafted_per_step()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_argmax_agrees_with_argmax() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let specials = [f32::NEG_INFINITY, f32::INFINITY, -0.0, 0.0, f32::NAN, 1.0];
        for len in [0usize, 1, 3, 15, 16, 17, 40, 100, 1000] {
            for _ in 0..200 {
                let values: Vec<f32> = (0..len)
                    .map(|_| match next() % 10 {
                        0 => specials[next() as usize % 5],
                        1 if next() % 50 == 0 => f32::NAN,
                        _ => (next() % 7) as f32,
                    })
                    .collect();
                assert_eq!(fast_argmax(&values), argmax(&values), "{values:?}");
            }
        }
        assert_eq!(fast_argmax(&[f32::NEG_INFINITY; 20]), Some(0));
        assert_eq!(fast_argmax(&[-0.0, 0.0]), Some(0));
    }
}
