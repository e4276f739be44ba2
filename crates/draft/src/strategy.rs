//! The strategy: draft with the drafter, keep its cache in step, learn what its confidence
//! is worth, report statistics.

use std::time::{Duration, Instant};

use decoding_core::{
    DecodeError, DraftContext, LogitsModel, Metric, NodeId, StepFeedback, Strategy, Token,
    TokenTree,
};

use crate::calibration::Calibration;
use crate::config::{ConfigError, DraftConfig, Mode};
use crate::drafter::Drafter;
use crate::expand::{Candidates, Limits};

/// Weight of the past in the averages of a drafted step's tokens and cost.
const MEMORY: f64 = 0.9;
/// Steps a drafter that does not pay rests before it drafts again: doubling from the first
/// to the second each time it still does not pay.
const RETRY: (usize, usize) = (16, 256);

/// Whether drafting pays, under a cost curve: averages over the drafted steps of their
/// tokens (accepted drafts and the bonus) and their cost (the target's forward over the tree
/// and the drafting, in units of a one-node forward), against plain decoding's one token
/// per unit. A drafter that does not pay rests (the step drafts nothing) and is retried
/// after a back-off, so drafting costs little where it cannot win.
#[derive(Clone, Copy, Debug)]
struct Payoff {
    tokens: f64,
    cost: f64,
    seen: bool,
    /// This step's cost, until its tokens are known.
    pending: Option<f64>,
    idle: usize,
    retry: usize,
    rested: usize,
}

impl Default for Payoff {
    fn default() -> Self {
        Self {
            tokens: 0.0,
            cost: 0.0,
            seen: false,
            pending: None,
            idle: 0,
            retry: RETRY.0,
            rested: 0,
        }
    }
}

impl Payoff {
    fn pays(&self) -> bool {
        !self.seen || self.tokens >= self.cost
    }

    /// Whether this step drafts: yes while drafting pays; otherwise after `retry` steps
    /// of rest.
    fn drafts(&mut self) -> bool {
        if self.pays() {
            self.retry = RETRY.0;
            return true;
        }
        if self.idle + 1 < self.retry {
            self.idle += 1;
            self.rested += 1;
            return false;
        }
        self.idle = 0;
        self.retry = (self.retry * 2).min(RETRY.1);
        true
    }

    fn record(&mut self, tokens: usize) {
        if let Some(cost) = self.pending.take() {
            let tokens = tokens as f64;
            (self.tokens, self.cost) = if self.seen {
                (
                    MEMORY * self.tokens + (1.0 - MEMORY) * tokens,
                    MEMORY * self.cost + (1.0 - MEMORY) * cost,
                )
            } else {
                (tokens, cost)
            };
            self.seen = true;
        }
    }
}

/// Running statistics of one sequence.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    steps: usize,
    drafted_steps: usize,
    nodes: usize,
    depth: usize,
    accepted: usize,
    drafting: Duration,
}

/// Speculative decoding with a draft model, as a [`Strategy`]: chains of greedy drafter
/// steps, or EAGLE-2's dynamic trees, as its [`DraftConfig`] says.
///
/// The strategy owns the drafter, any [`LogitsModel`] over the target's vocabulary (a small
/// model, or the target's own first layers, as `llama_cpu::Llama::early_exit` gives), and
/// keeps the
/// drafter's cache equal to the target's committed context (see the crate docs). Drafts are
/// deterministic functions of the context, so decoding-core's exact verifier keeps the output
/// the target's own: token for token under greedy decoding, seed for seed under sampling.
///
/// ```
/// use decoding_core::{generate, DecodeConfig, Plain};
/// use decoding_testkit::toy::InductionModel;
/// use draft::{DraftConfig, DraftStrategy};
/// # use rand::SeedableRng;
///
/// let mut target = InductionModel::induction(48, 3);
/// let drafter = InductionModel::induction(48, 3);
/// let prompt = [1, 2, 3, 4, 5, 1, 2];
/// let config = DecodeConfig::new(30);
/// let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
/// let plain = generate(&mut target, Plain, &prompt, &config, &mut rng).unwrap();
/// let strategy = DraftStrategy::new(drafter, DraftConfig::tree()).unwrap();
/// let out = generate(&mut target, strategy, &prompt, &config, &mut rng).unwrap();
/// assert_eq!(out.tokens, plain.tokens); // lossless
/// // A drafter identical to the target is always right: up to k + 1 = 6 tokens per pass.
/// assert!(out.stats.tau() > 3.0);
/// ```
#[derive(Debug)]
pub struct DraftStrategy<M> {
    config: DraftConfig,
    drafter: Drafter<M>,
    candidates: Candidates,
    /// `picked[n]`: the candidate behind node `n` of the last drafted tree.
    picked: Vec<NodeId>,
    scores: Vec<f32>,
    calibration: Calibration,
    payoff: Payoff,
    vocab_size: usize,
    stats: Stats,
}

impl<M: LogitsModel> DraftStrategy<M> {
    /// A strategy drafting with `drafter` under `config`. Tree mode needs a drafter that
    /// evaluates trees.
    pub fn new(drafter: M, config: DraftConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let drafter = Drafter::new(drafter);
        if config.mode == Mode::Tree && config.width > 1 && !drafter.evaluates_trees() {
            return Err(ConfigError::Drafter(
                "tree mode needs a drafter that evaluates trees; this one evaluates chains only"
                    .to_string(),
            ));
        }
        Ok(Self {
            config,
            drafter,
            candidates: Candidates::default(),
            picked: Vec::new(),
            scores: Vec::new(),
            calibration: Calibration::default(),
            payoff: Payoff::default(),
            vocab_size: 0,
            stats: Stats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DraftConfig {
        &self.config
    }

    /// The drafter.
    pub fn drafter(&self) -> &M {
        self.drafter.model()
    }

    /// The drafter, mutably. If its cache is changed, the next step rebuilds it.
    pub fn drafter_mut(&mut self) -> &mut M {
        self.drafter.model_mut()
    }

    /// Gives back the drafter.
    pub fn into_drafter(self) -> M {
        self.drafter.into_model()
    }
}

impl<M: LogitsModel> Strategy for DraftStrategy<M> {
    fn name(&self) -> &str {
        "draft"
    }

    fn begin(&mut self, _prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        if self.drafter.vocab_size() != vocab_size {
            return Err(DecodeError::VocabMismatch {
                expected: vocab_size,
                actual: self.drafter.vocab_size(),
            });
        }
        self.vocab_size = vocab_size;
        self.drafter.begin();
        self.calibration = Calibration::default();
        self.payoff = Payoff::default();
        self.picked.clear();
        self.scores.clear();
        self.stats = Stats::default();
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        let started = Instant::now();
        self.stats.steps += 1;
        self.picked.clear();
        self.picked.push(0);
        self.scores.clear();
        self.scores.push(1.0);
        let nodes = ctx.max_nodes.min(self.config.max_nodes);
        if ctx.max_depth == 0 || nodes < 2 {
            return Ok(());
        }
        if self.config.cost.is_some() && !self.payoff.drafts() {
            return Ok(());
        }
        let context = &ctx.tokens[..ctx.tokens.len() - 1];
        self.drafter.start_step(context)?;
        let room = self.drafter.room().unwrap_or(usize::MAX);
        let limits = Limits {
            depth: self.config.k.min(ctx.max_depth).min(room),
            nodes,
            chain: ctx.chains_only,
        };
        if limits.depth == 0 {
            return Ok(());
        }
        self.candidates.grow(
            ctx.pending(),
            &mut self.drafter,
            &self.config,
            &self.calibration,
            limits,
        )?;
        self.candidates
            .cut(nodes, self.config.cost.as_ref(), tree, &mut self.picked)?;
        if let Some(curve) = &self.config.cost {
            self.payoff.pending = Some(curve.relative(tree.len()) + self.candidates.spent);
        }
        self.scores.extend(
            self.picked[1..]
                .iter()
                .map(|&c| self.candidates.estimate[c]),
        );
        let s = &mut self.stats;
        s.drafted_steps += 1;
        s.nodes += tree.len() - 1;
        s.depth += tree.max_depth();
        s.drafting += started.elapsed();
        Ok(())
    }

    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        let started = Instant::now();
        let path = &feedback.verification.path;
        self.stats.accepted += feedback.verification.accepted();
        self.payoff.record(feedback.verification.accepted() + 1);
        let tree = feedback.tree;
        if self.picked.len() == tree.len() {
            // Every evaluated child of an accepted node was tested (a composite may have cut
            // some: their logits rows are NaN).
            for (i, &node) in path.iter().enumerate() {
                for child in tree.children(node) {
                    let evaluated = tree
                        .logits_row(child)
                        .and_then(|row| feedback.logits.get((row, 0)))
                        .is_some_and(|x| !x.is_nan());
                    if evaluated {
                        let c = self.picked[child];
                        let (cell, confidence) =
                            (self.candidates.cell[c], self.candidates.confidence[c]);
                        self.calibration
                            .record(cell, confidence, path.get(i + 1) == Some(&child));
                    }
                }
            }
        }
        let tokens = feedback.tokens;
        self.drafter.settle(&tokens[..tokens.len() - 1])?;
        self.stats.drafting += started.elapsed();
        Ok(())
    }

    /// Drafted nodes may be cut by a composite: observing reads only the accepted path and
    /// which nodes were evaluated.
    fn prunable(&self) -> bool {
        true
    }

    /// Each node's estimate that the target accepts its path: the drafter's confidences
    /// along it, calibrated (see the crate docs).
    fn draft_scores(&self) -> Option<&[f32]> {
        Some(&self.scores)
    }

    /// `drafter_ms`: mean milliseconds per step inside the drafter (forwards, commits,
    /// truncations), `drafting_ms`: per step in the strategy in all (drafter, growing and
    /// cutting trees, learning); `drafter_forwards`, `drafter_nodes`, `catch_up_nodes`:
    /// drafter forward passes and nodes they evaluated per step (catch-up: context tokens the
    /// drafter had not seen); `draft_nodes`, `draft_depth`: drafted nodes (root excluded) and
    /// depth per step; `accepted_per_step`; `drafted_steps`: the share of steps with a draft;
    /// `rested_steps`: the share of steps a drafter that did not pay rested (cost curve only).
    fn metrics(&self) -> Vec<Metric> {
        let (s, d) = (&self.stats, &self.drafter.stats);
        let per_step = |x: f64| {
            if s.steps == 0 {
                0.0
            } else {
                x / s.steps as f64
            }
        };
        vec![
            Metric::new("drafter_ms", per_step(d.time.as_secs_f64() * 1e3)),
            Metric::new("drafting_ms", per_step(s.drafting.as_secs_f64() * 1e3)),
            Metric::new("drafter_forwards", per_step(d.forwards as f64)),
            Metric::new("drafter_nodes", per_step(d.nodes as f64)),
            Metric::new("catch_up_nodes", per_step(d.catch_up as f64)),
            Metric::new("draft_nodes", per_step(s.nodes as f64)),
            Metric::new("draft_depth", per_step(s.depth as f64)),
            Metric::new("accepted_per_step", per_step(s.accepted as f64)),
            Metric::new("drafted_steps", per_step(s.drafted_steps as f64)),
            Metric::new("rested_steps", per_step(self.payoff.rested as f64)),
        ]
    }
}
