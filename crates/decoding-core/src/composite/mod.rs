//! Composition: several strategies draft into one deduplicated tree and share one forward
//! pass.
//!
//! Every source drafts its own tree as if it were alone. The composite merges them into a
//! [`TreeBuilder`] (a path proposed by two sources becomes one node, tagged with both), scores
//! each node by an estimate of the probability that it is accepted, and keeps the best nodes
//! under the node budget. After verification each source observes the step through its own
//! tree: its nodes' logits (rows of nodes that were dropped are NaN), the accepted path as far
//! as its tree follows it, and the same emitted tokens.
//!
//! **Scores are calibrated.** A source that scores its own nodes
//! ([`Strategy::draft_scores`]) has each node ranked by the conditional score (its score over
//! its parent's), calibrated per source in 20 buckets: the composite counts how often nodes
//! of each bucket were tested and accepted, starting from the bucket's centre, so a source
//! whose scores are too optimistic or too shy is corrected as the steps come in.
//!
//! **Otherwise scores are learned.** For every (source, depth, sibling rank) the composite
//! counts how often a node was *tested* (its parent was accepted and it had logits) and how
//! often it was accepted; a node's acceptance estimate is its parent's times that rate. A
//! rate is shrunk towards the source's overall rate (itself starting from an optimistic prior
//! of 1), so a rarely seen key starts from what its source usually achieves. Counts are
//! forgotten by 1% per step, so a source that stopped paying off is tried again once its
//! record fades. Sources that need every drafted node (the default, see
//! [`Strategy::prunable`]) share a reserved part of the budget and are never cut.
//!
//! **Budget.** [`NodeBudget::Fixed`] fills the decoder's `max_nodes`. [`NodeBudget::CostAware`]
//! takes the model's [`CostCurve`] and keeps, each step, the `n` best nodes that maximise
//! expected tokens per unit of time, `(1 + sum of the n - 1 best acceptance estimates) /
//! cost(n)`: on hardware where a tree costs about one step that fills the budget, and on a
//! CPU where it does not, it keeps only the nodes that pay for themselves.
//!
//! **Idle sources rest.** A prunable source that does not pay is asked to draft with a budget
//! of one node, the root, so that a well-behaved source returns at once and saves its
//! drafting time (Medusa heads on a CPU can cost more than a forward pass of a small model).
//! It still observes every step, and drafts in full after 16 steps to see whether that
//! changed (after twice as many each time it still does not pay, up to 256). Under a fixed
//! budget a source does not pay when none of its nodes makes the tree (an exponential average
//! of the kept nodes it was first to propose, below 0.05). Under a cost-aware budget the
//! composite also times, on its [`Clock`] (injectable: [`Composite::with_clock`]; with a
//! fixed clock a seeded run is reproducible), each source's drafting and observing, converts it to units of the
//! cost curve (the time from a draft to its feedback is the forward pass, whose cost the
//! curve gives), and rests a source whose *surplus* (the expected tokens of its kept nodes
//! beyond what their share of the forward would yield at the step's rate, averaged over about
//! 20 steps) is worth less than its own time.
//!
//! Verification is always decoding-core's exact verifier: a source's own (possibly lossy)
//! [`Strategy::verify`] is not used, so a composite is lossless whatever it combines.

mod learners;

use std::time::Duration;

use ndarray::Array2;

use self::learners::{AcceptanceRates, ChainLeads, NO_BUCKET, Pacing, ScoreCalibration};
use crate::builder::TreeBuilder;
use crate::clock::{Clock, SystemClock};
use crate::cost_curve::CostCurve;
use crate::error::DecodeError;
use crate::strategy::{DraftContext, Metric, Requirements, StepFeedback, Strategy};
use crate::tree::{NodeId, SourceId, SourceSet, Token, TokenTree};
use crate::verify::Verification;

/// How many nodes a composite's tree may hold each step.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum NodeBudget {
    /// Up to the decoder's `max_nodes`, every step.
    Fixed,
    /// Up to `max_nodes`, sized each step to maximise expected tokens per unit of time on
    /// this cost curve.
    CostAware(CostCurve),
}

/// The current step's accounting, from its draft to its feedback.
#[derive(Clone, Debug, Default)]
struct StepAccount {
    /// The clock's time when the tree was handed over (the forward pass follows).
    drafted_at: Option<Duration>,
    nodes: usize,
    source_time: Vec<Duration>,
    source_node_cost: Vec<f64>,
    /// The expected tokens of the kept nodes each source was first to propose.
    source_gain: Vec<f64>,
    /// The step's expected tokens (the bonus token's 1 included).
    expected: f64,
    /// On a chains-only model, the source that must keep its whole chain this step (one
    /// that is not prunable), if any.
    lead: Option<usize>,
    /// Sequences sharing the step's forward pass.
    batch: usize,
}

/// One source's draft and how its nodes map into the merged tree.
#[derive(Clone, Debug)]
struct SourceDraft {
    tree: TokenTree,
    candidate: Vec<NodeId>,
    rank: Vec<u8>,
    /// The score bucket of each node, or [`NO_BUCKET`].
    bucket: Vec<u8>,
}

/// Several strategies drafting into one tree; see the module docs.
pub struct Composite {
    sources: Vec<Box<dyn Strategy>>,
    budget: NodeBudget,
    /// Where time comes from: sans-IO, injectable (a fixed clock makes a run reproducible).
    clock: Box<dyn Clock>,
    drafts: Vec<SourceDraft>,
    builder: TreeBuilder,
    /// Per candidate of the builder: the estimated probability that it is accepted.
    estimate: Vec<f64>,
    merged: Vec<Option<NodeId>>,
    rates: AcceptanceRates,
    calibration: ScoreCalibration,
    pacing: Pacing,
    leads: ChainLeads,
    step: StepAccount,
    /// The cost curve as one of the step's batch sees it, for batches of more than one.
    batch_curve: Option<(usize, CostCurve)>,
    replay: ReplayScratch,
    totals: Totals,
}

/// Buffers for replaying a step to each source through its own tree.
#[derive(Clone, Debug, Default)]
struct ReplayScratch {
    /// Per source: the first candidate it added (those after it are its own new nodes).
    first_new: Vec<usize>,
    on_path: Vec<bool>,
    logits: Array2<f32>,
    verification: Verification,
}

/// Counts over the sequence, for [`Strategy::metrics`].
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    steps: usize,
    candidates: usize,
    kept: usize,
    expected: f64,
}

impl Composite {
    /// Composes `sources` (1 to 32) under `budget`, timing sources and forward passes with
    /// the system clock (see [`with_clock`](Self::with_clock)).
    pub fn new(sources: Vec<Box<dyn Strategy>>, budget: NodeBudget) -> Result<Self, DecodeError> {
        if sources.is_empty() || sources.len() > SourceId::MAX {
            return Err(DecodeError::config(format!(
                "a composite needs 1 to {} sources, got {}",
                SourceId::MAX,
                sources.len()
            )));
        }
        let empty = SourceDraft {
            tree: TokenTree::new(0),
            candidate: Vec::new(),
            rank: Vec::new(),
            bucket: Vec::new(),
        };
        let n = sources.len();
        Ok(Self {
            drafts: vec![empty; n],
            rates: AcceptanceRates::new(n),
            calibration: ScoreCalibration::new(n),
            pacing: Pacing::new(n),
            leads: ChainLeads::default(),
            step: StepAccount::default(),
            batch_curve: None,
            replay: ReplayScratch {
                first_new: vec![0; n],
                logits: Array2::zeros((0, 0)),
                ..ReplayScratch::default()
            },
            totals: Totals::default(),
            sources,
            budget,
            clock: Box::new(SystemClock::new()),
            builder: TreeBuilder::new(0),
            estimate: Vec::new(),
            merged: Vec::new(),
        })
    }

    /// Reads time from `clock` instead of the system's: the only time a composite uses is
    /// its sources' drafting and the forward pass between a draft and its feedback (to rest
    /// sources that do not pay under a cost-aware budget), so with a clock that always reads
    /// the same time, or advances by a fixed tick per reading, a seeded run is reproducible.
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// The composed strategies; source `i` tags its nodes with `SourceId::new(i)`.
    pub fn sources(&self) -> &[Box<dyn Strategy>] {
        &self.sources
    }

    /// The cost curve of this step under a cost-aware budget, per sequence of its batch.
    fn curve(&self) -> Option<&CostCurve> {
        match (&self.budget, &self.batch_curve) {
            (NodeBudget::Fixed, _) => None,
            (NodeBudget::CostAware(_), Some((batch, scaled))) if *batch == self.step.batch => {
                Some(scaled)
            }
            (NodeBudget::CostAware(curve), _) => Some(curve),
        }
    }

    /// Notes the step's batch size, rescaling the cost curve when it changed.
    fn set_batch(&mut self, batch: usize) {
        self.step.batch = batch;
        if let NodeBudget::CostAware(curve) = &self.budget
            && batch > 1
            && self.batch_curve.as_ref().is_none_or(|(b, _)| *b != batch)
        {
            self.batch_curve = Some((batch, curve.per_sequence(batch).into_owned()));
        }
    }

    /// Adds source `i`'s draft to the builder, scoring each node: by the source's own score,
    /// calibrated, when it gives one, else by the learned rate of its depth and rank.
    fn merge_source(&mut self, i: usize) -> Result<(), DecodeError> {
        let forced = !self.sources[i].prunable();
        let tag = SourceSet::of(SourceId::new(i).unwrap_or_else(|| unreachable!()));
        let draft = &mut self.drafts[i];
        let tree = &draft.tree;
        let scores = self.sources[i]
            .draft_scores()
            .filter(|s| s.len() == tree.len());
        draft.candidate.clear();
        draft.candidate.push(0);
        draft.rank.clear();
        draft.rank.push(0);
        draft.bucket.clear();
        draft.bucket.push(NO_BUCKET);
        let mut children_seen = vec![0u8; tree.len()];
        for node in 1..tree.len() {
            let parent = tree.parent(node).unwrap_or(0);
            let rank = children_seen[parent];
            children_seen[parent] = rank.saturating_add(1);
            let parent_candidate = draft.candidate[parent];
            let bucket = match scores {
                Some(s) if tree.needs_logits(node) => {
                    let parent_score = f64::from(s[parent]);
                    let conditional = if parent_score > 0.0 {
                        (f64::from(s[node]) / parent_score).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    ScoreCalibration::bucket(conditional)
                }
                _ => NO_BUCKET,
            };
            let rate = if !tree.needs_logits(node) {
                0.0
            } else if bucket == NO_BUCKET {
                self.rates.rate(i, tree.depth(node), usize::from(rank))
            } else {
                self.calibration.rate(i, bucket)
            };
            let estimate = self.estimate[parent_candidate] * rate;
            let priority = if forced {
                f32::INFINITY
            } else {
                estimate as f32
            };
            let candidate = self.builder.add_with(
                parent_candidate,
                tree.token(node),
                priority,
                tag,
                tree.needs_logits(node),
            )?;
            if candidate == self.estimate.len() {
                self.estimate.push(estimate);
            } else {
                self.estimate[candidate] = self.estimate[candidate].max(estimate);
            }
            draft.candidate.push(candidate);
            draft.rank.push(rank);
            draft.bucket.push(bucket);
        }
        Ok(())
    }

    /// How many of the ranked candidates to keep; notes the step's expected tokens.
    fn choose_size(&mut self, max_nodes: usize) -> usize {
        self.builder.rank();
        let ranked = self.builder.ranked();
        let limit = max_nodes.min(ranked.len()).max(1);
        let forced = ranked
            .iter()
            .take_while(|&&c| self.builder.score(c) == f32::INFINITY)
            .count()
            .clamp(1, limit);
        let mut expected = 1.0;
        // (size, its value, its expected tokens)
        let mut best = (forced, 0.0, 1.0);
        for (n, &candidate) in ranked.iter().enumerate().take(limit) {
            if n > 0 {
                expected += self.estimate[candidate];
            }
            let size = n + 1;
            let value = match self.curve() {
                None => size as f64,
                Some(curve) => expected / curve.cost(size),
            };
            if size >= forced && value > best.1 {
                best = (size, value, expected);
            }
        }
        self.step.expected = best.2;
        self.totals.expected += best.2 - 1.0;
        best.0
    }

    /// On a chains-only model: the candidate ending the chain to evaluate, the one of highest
    /// value (expected tokens, per unit of cost under a cost-aware budget) within
    /// `max_nodes` nodes that runs through `through` (the lead source's chain end) if given.
    /// Notes the step's expected tokens.
    fn best_chain(&mut self, max_nodes: usize, through: Option<NodeId>) -> NodeId {
        let candidates = self.builder.candidates();
        let curve = self.curve();
        let value = |expected: f64, nodes: usize| match curve {
            None => expected,
            Some(curve) => expected / curve.cost(nodes),
        };
        // Expected tokens of the chain ending at each candidate, the bonus token's 1 included.
        let mut expected = vec![1.0; candidates.len()];
        let start = through.unwrap_or(0);
        for node in 1..candidates.len() {
            let parent = candidates.parent(node).unwrap_or(0);
            expected[node] = expected[parent] + self.estimate[node];
        }
        let start_depth = candidates.depth(start);
        let mut best = (start, value(expected[start], start_depth + 1));
        for (node, &tokens) in expected.iter().enumerate().skip(start + 1) {
            let depth = candidates.depth(node);
            if depth + 1 > max_nodes || depth <= start_depth {
                continue;
            }
            let below_start = start == 0
                || candidates
                    .ancestors(node)
                    .nth(depth - start_depth - 1)
                    .is_some_and(|a| a == start);
            let v = value(tokens, depth + 1);
            if below_start && v > best.1 {
                best = (node, v);
            }
        }
        self.step.expected = expected[best.0];
        self.totals.expected += expected[best.0] - 1.0;
        best.0
    }

    /// Learns acceptance rates from the step and replays it to source `i` through its tree.
    fn replay_to(&mut self, i: usize, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        let merged = feedback.tree;
        let draft = &self.drafts[i];
        let own = &draft.tree;
        let vocab = feedback.logits.ncols();
        self.replay.logits = Array2::from_elem((own.logits_rows(), vocab), f32::NAN);
        for node in 0..own.len() {
            let Some(m) = self.merged[draft.candidate[node]] else {
                continue;
            };
            if let (Some(own_row), Some(row)) = (own.logits_row(node), merged.logits_row(m)) {
                self.replay
                    .logits
                    .row_mut(own_row)
                    .assign(&feedback.logits.row(row));
            }
            if let Some(parent) = merged.parent(m)
                && self.replay.on_path[parent]
                && merged.needs_logits(m)
            {
                let rank = usize::from(draft.rank[node]);
                self.rates
                    .record(i, own.depth(node), rank, self.replay.on_path[m]);
                if draft.bucket[node] != NO_BUCKET {
                    self.calibration
                        .record(i, draft.bucket[node], self.replay.on_path[m]);
                }
            }
        }
        // The accepted path as far as this source's tree follows it.
        let path = &feedback.verification.path;
        self.replay.verification.path.clear();
        self.replay.verification.path.push(0);
        let mut node = 0;
        for &m in &path[1..] {
            match own.child_with_token(node, merged.token(m)) {
                Some(child) => {
                    self.replay.verification.path.push(child);
                    node = child;
                }
                None => break,
            }
        }
        let followed = self.replay.verification.path.len();
        self.replay.verification.bonus = match path.get(followed) {
            Some(&m) => merged.token(m),
            None => feedback.verification.bonus,
        };
        let own_feedback = StepFeedback {
            tree: own,
            logits: self.replay.logits.view(),
            verification: &self.replay.verification,
            ..*feedback
        };
        self.sources[i].observe(&own_feedback)
    }
}

impl Strategy for Composite {
    fn name(&self) -> &str {
        "composite"
    }

    fn begin(&mut self, prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        self.rates = AcceptanceRates::new(self.sources.len());
        self.calibration = ScoreCalibration::new(self.sources.len());
        self.pacing = Pacing::new(self.sources.len());
        self.leads.reset(self.sources.len());
        self.totals = Totals::default();
        for source in &mut self.sources {
            source.begin(prompt, vocab_size)?;
        }
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        let pending = ctx.pending();
        self.set_batch(ctx.batch_size);
        let forced_sources = self.sources.iter().filter(|s| !s.prunable()).count();
        let reserved = (ctx.max_nodes - 1) / forced_sources.max(1) + 1;
        self.builder.reset(pending);
        self.estimate.clear();
        self.estimate.push(1.0);
        let n = self.sources.len();
        self.step.source_time.clear();
        self.step.source_time.resize(n, Duration::ZERO);
        // One chain per step on a chains-only model: of the sources that need all their
        // nodes, only the lead drafts in full.
        self.step.lead = if ctx.chains_only {
            let forced: Vec<bool> = self.sources.iter().map(|s| !s.prunable()).collect();
            self.leads.choose(&forced)
        } else {
            None
        };
        for i in 0..n {
            let prunable = self.sources[i].prunable();
            let cost_aware = matches!(self.budget, NodeBudget::CostAware(_));
            let idle = prunable && self.pacing.rests(i, cost_aware);
            let source_ctx = ctx.with_max_nodes(match (idle, prunable) {
                (true, _) => 1,
                (false, true) => ctx.max_nodes,
                (false, false) if ctx.chains_only => {
                    if self.step.lead == Some(i) {
                        ctx.max_nodes
                    } else {
                        1
                    }
                }
                (false, false) => reserved,
            });
            self.replay.first_new[i] = self.builder.candidates().len();
            let own = &mut self.drafts[i].tree;
            own.reset(pending);
            let started = self.clock.now();
            self.sources[i].draft(&source_ctx, own)?;
            self.step.source_time[i] += self.clock.now().saturating_sub(started);
            if own.root_token() != pending || own.len() > source_ctx.max_nodes {
                return Err(DecodeError::Contract(
                    "a composed source replaced the root or overran its node budget",
                ));
            }
            self.merge_source(i)?;
        }
        if ctx.chains_only {
            let through = self
                .step
                .lead
                .and_then(|i| self.drafts[i].candidate.last().copied());
            let end = self.best_chain(ctx.max_nodes, through);
            self.builder.build_path(end, tree, &mut self.merged)?;
        } else {
            let size = self.choose_size(ctx.max_nodes);
            self.builder.build(size, tree, &mut self.merged)?;
        }
        self.step.nodes = tree.len();
        self.step.source_gain.clear();
        self.step.source_node_cost.clear();
        for i in 0..n {
            let first_new = self.replay.first_new[i];
            let (mut kept, mut gain) = (0, 0.0);
            for &c in &self.drafts[i].candidate[1..] {
                if c >= first_new && self.merged[c].is_some() {
                    kept += 1;
                    gain += self.estimate[c];
                }
            }
            self.step.source_gain.push(gain);
            let node_cost = match self.curve() {
                Some(curve) => curve.cost(tree.len()) - curve.cost(tree.len() - kept),
                None => 0.0,
            };
            self.step.source_node_cost.push(node_cost);
            self.pacing.note_kept(i, kept);
        }
        self.step.drafted_at = Some(self.clock.now());
        self.totals.steps += 1;
        self.totals.candidates += self.builder.candidates().len();
        self.totals.kept += tree.len();
        Ok(())
    }

    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        self.rates.forget();
        self.calibration.forget();
        let on_path = &mut self.replay.on_path;
        on_path.clear();
        on_path.resize(feedback.tree.len(), false);
        for &node in &feedback.verification.path {
            on_path[node] = true;
        }
        let now = self.clock.now();
        let forward = self.step.drafted_at.take().map(|t| now.saturating_sub(t));
        for i in 0..self.sources.len() {
            let started = self.clock.now();
            self.replay_to(i, feedback)?;
            if let Some(t) = self.step.source_time.get_mut(i) {
                *t += self.clock.now().saturating_sub(started);
            }
        }
        if let Some(lead) = self.step.lead {
            self.leads.observe(lead, feedback.verification.accepted());
        }
        let cost = self.curve().map(|curve| curve.cost(self.step.nodes));
        if let (Some(forward), Some(cost)) = (forward, cost) {
            let step = &self.step;
            let time: Vec<f64> = step.source_time.iter().map(Duration::as_secs_f64).collect();
            self.pacing.account(
                forward.as_secs_f64(),
                cost,
                step.expected,
                &step.source_gain,
                &step.source_node_cost,
                &time,
            );
        }
        Ok(())
    }

    fn requirements(&self) -> Requirements {
        self.sources
            .iter()
            .fold(Requirements::NONE, |needs, source| {
                needs.union(source.requirements())
            })
    }

    fn metrics(&self) -> Vec<Metric> {
        let per_step = |x: f64| {
            if self.totals.steps == 0 {
                0.0
            } else {
                x / self.totals.steps as f64
            }
        };
        let mut metrics = vec![
            Metric::new(
                "candidates_per_step",
                per_step(self.totals.candidates as f64),
            ),
            Metric::new("nodes_per_step", per_step(self.totals.kept as f64)),
            Metric::new("expected_accepted_per_step", per_step(self.totals.expected)),
            Metric::new(
                "idle_sources_per_step",
                per_step(self.pacing.skipped as f64),
            ),
        ];
        for source in &self.sources {
            for m in source.metrics() {
                metrics.push(Metric::new(
                    format!("{}.{}", source.name(), m.name),
                    m.value,
                ));
            }
        }
        metrics
    }
}
