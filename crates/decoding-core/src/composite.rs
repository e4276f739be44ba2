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
//! composite also times each source's drafting and observing, converts it to units of the
//! cost curve (the time from a draft to its feedback is the forward pass, whose cost the
//! curve gives), and rests a source whose *surplus* (the expected tokens of its kept nodes
//! beyond what their share of the forward would yield at the step's rate, averaged over about
//! 20 steps) is worth less than its own time.
//!
//! Verification is always decoding-core's exact verifier: a source's own (possibly lossy)
//! [`Strategy::verify`] is not used, so a composite is lossless whatever it combines.

use std::time::{Duration, Instant};

use ndarray::Array2;

use crate::builder::TreeBuilder;
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

const MAX_DEPTH_KEY: usize = 16;
const MAX_RANK_KEY: usize = 8;
const PRIOR_RATE: f64 = 1.0;
const PRIOR_WEIGHT: f64 = 1.0;
/// Per-step forgetting of the counts: a key that stops being tested drifts back to the
/// prior, so a source that was poor once is tried again later (exploration).
const DECAY: f64 = 0.99;
/// Weight of the past in each source's average of kept nodes per step.
const KEPT_MEMORY: f64 = 0.7;
/// A prunable source whose average of kept nodes per step is below this is idle.
const IDLE_BELOW: f64 = 0.05;
/// An idle source still drafts once in this many steps.
const IDLE_RETRY: usize = 16;
/// Weight of the past in a source's averages of surplus and time: long enough to credit a
/// source that pays only now and then (a reference that matches every few steps).
const SPENDING_MEMORY: f64 = 0.95;
/// The longest wait between retries of a source that keeps not paying.
const IDLE_RETRY_MAX: usize = 256;

/// Tested / accepted counts per (source, depth, sibling rank), and per source, exponentially
/// forgotten. A key's rate is shrunk towards its source's overall rate, so a key seen
/// rarely (a deep node, a low-ranked sibling) starts from what the source usually achieves.
#[derive(Clone, Debug)]
struct AcceptanceRates {
    counts: Vec<(f64, f64)>,
    per_source: Vec<(f64, f64)>,
}

impl AcceptanceRates {
    fn new(sources: usize) -> Self {
        Self {
            counts: vec![(0.0, 0.0); sources * MAX_DEPTH_KEY * MAX_RANK_KEY],
            per_source: vec![(0.0, 0.0); sources],
        }
    }

    fn key(source: usize, depth: usize, rank: usize) -> usize {
        let depth = depth.clamp(1, MAX_DEPTH_KEY) - 1;
        (source * MAX_DEPTH_KEY + depth) * MAX_RANK_KEY + rank.min(MAX_RANK_KEY - 1)
    }

    fn rate(&self, source: usize, depth: usize, rank: usize) -> f64 {
        let (tested, accepted) = self.per_source[source];
        let prior = (accepted + PRIOR_RATE * PRIOR_WEIGHT) / (tested + PRIOR_WEIGHT);
        let (tested, accepted) = self.counts[Self::key(source, depth, rank)];
        (accepted + prior * PRIOR_WEIGHT) / (tested + PRIOR_WEIGHT)
    }

    fn record(&mut self, source: usize, depth: usize, rank: usize, accepted: bool) {
        for entry in [
            &mut self.counts[Self::key(source, depth, rank)],
            &mut self.per_source[source],
        ] {
            entry.0 += 1.0;
            entry.1 += f64::from(u8::from(accepted));
        }
    }

    fn forget(&mut self) {
        for (tested, accepted) in self.counts.iter_mut().chain(&mut self.per_source) {
            *tested *= DECAY;
            *accepted *= DECAY;
        }
    }
}

/// Buckets of a source's conditional scores (the score of a node over its parent's).
const SCORE_BUCKETS: usize = 20;
/// Marks a node without a source score.
const NO_BUCKET: u8 = u8::MAX;
/// Weight of a bucket's own centre as its prior rate.
const SCORE_PRIOR_WEIGHT: f64 = 2.0;

/// Tested / accepted counts per (source, score bucket): what a source's conditional score
/// is worth, learned as the step results come in, exponentially forgotten.
#[derive(Clone, Debug)]
struct ScoreCalibration {
    counts: Vec<(f64, f64)>,
}

impl ScoreCalibration {
    fn new(sources: usize) -> Self {
        Self {
            counts: vec![(0.0, 0.0); sources * SCORE_BUCKETS],
        }
    }

    fn bucket(conditional: f64) -> u8 {
        ((conditional * SCORE_BUCKETS as f64) as usize).min(SCORE_BUCKETS - 1) as u8
    }

    fn rate(&self, source: usize, bucket: u8) -> f64 {
        let centre = (f64::from(bucket) + 0.5) / SCORE_BUCKETS as f64;
        let (tested, accepted) = self.counts[source * SCORE_BUCKETS + usize::from(bucket)];
        (accepted + centre * SCORE_PRIOR_WEIGHT) / (tested + SCORE_PRIOR_WEIGHT)
    }

    fn record(&mut self, source: usize, bucket: u8, accepted: bool) {
        let entry = &mut self.counts[source * SCORE_BUCKETS + usize::from(bucket)];
        entry.0 += 1.0;
        entry.1 += f64::from(u8::from(accepted));
    }

    fn forget(&mut self) {
        for (tested, accepted) in &mut self.counts {
            *tested *= DECAY;
            *accepted *= DECAY;
        }
    }
}

/// What a source brings and costs, averaged over the steps it drafted in full (cost-aware
/// budgets), in units of the cost curve: its *surplus*, the expected tokens of the kept nodes
/// it was first to propose minus what their share of the forward would have yielded at the
/// step's rate, and the *time* it spent drafting and observing.
#[derive(Clone, Copy, Debug)]
struct SourceSpending {
    surplus: f64,
    time: f64,
    /// Whether a step has been accounted yet (the first one sets the averages).
    seen: bool,
    /// Steps an idle source waits before drafting in full again: doubles each time a retry
    /// finds it still not paying, back to [`IDLE_RETRY`] once it pays.
    retry: usize,
}

impl Default for SourceSpending {
    /// Unproven: worth drafting.
    fn default() -> Self {
        Self {
            surplus: 1.0,
            time: 0.0,
            seen: false,
            retry: IDLE_RETRY,
        }
    }
}

impl SourceSpending {
    fn record(&mut self, surplus: f64, time: f64) {
        let mix = |old: f64, new: f64| SPENDING_MEMORY * old + (1.0 - SPENDING_MEMORY) * new;
        (self.surplus, self.time) = if self.seen {
            (mix(self.surplus, surplus), mix(self.time, time))
        } else {
            (surplus, time)
        };
        self.seen = true;
    }
}

/// The current step's accounting, from its draft to its feedback.
#[derive(Clone, Debug, Default)]
struct StepAccount {
    drafted_at: Option<Instant>,
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

/// Which of the sources that need all their nodes drafts in full on a chains-only model,
/// where one chain is all a step can hold: the one whose chains have been accepted furthest
/// (an average of accepted tokens per step it led), each of the others given a turn after
/// [`IDLE_RETRY`] steps without one.
#[derive(Clone, Debug, Default)]
struct ChainLeads {
    /// Per source: average accepted tokens per step it led (optimistic 1 at first), and steps
    /// since it last led.
    record: Vec<(f64, usize)>,
}

impl ChainLeads {
    fn reset(&mut self, sources: usize) {
        self.record.clear();
        self.record.resize(sources, (1.0, 0));
    }

    /// The lead among the sources `forced` marks.
    fn choose(&mut self, forced: &[bool]) -> Option<usize> {
        let candidates = (0..forced.len()).filter(|&i| forced[i]);
        let overdue = candidates
            .clone()
            .filter(|&i| self.record[i].1 >= IDLE_RETRY)
            .max_by_key(|&i| self.record[i].1);
        let best = candidates.fold(None, |best: Option<usize>, i| match best {
            Some(b) if self.record[b].0 >= self.record[i].0 => Some(b),
            _ => Some(i),
        });
        let lead = overdue.or(best)?;
        for (i, record) in self.record.iter_mut().enumerate() {
            record.1 = if i == lead { 0 } else { record.1 + 1 };
        }
        Some(lead)
    }

    fn observe(&mut self, lead: usize, accepted: usize) {
        let gain = &mut self.record[lead].0;
        *gain = KEPT_MEMORY * *gain + (1.0 - KEPT_MEMORY) * accepted as f64;
    }
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
    drafts: Vec<SourceDraft>,
    builder: TreeBuilder,
    estimate: Vec<f64>,
    merged: Vec<Option<NodeId>>,
    rates: AcceptanceRates,
    calibration: ScoreCalibration,
    kept_recently: Vec<f64>,
    spending: Vec<SourceSpending>,
    /// Seconds per unit of the cost curve, from the time between a draft and its feedback
    /// (the forward pass) over the curve's cost of the tree.
    unit_seconds: Option<f64>,
    /// Expected tokens per unit of cost of recent steps, sources' time included.
    value: f64,
    step: StepAccount,
    /// The cost curve as one of the step's batch sees it, for batches of more than one.
    batch_curve: Option<(usize, CostCurve)>,
    leads: ChainLeads,
    idle_steps: Vec<usize>,
    first_new: Vec<usize>,
    skipped: usize,
    on_path: Vec<bool>,
    logits: Array2<f32>,
    verification: Verification,
    steps: usize,
    candidates: usize,
    kept: usize,
    expected: f64,
}

impl Composite {
    /// Composes `sources` (1 to 32) under `budget`.
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
        Ok(Self {
            drafts: vec![empty; sources.len()],
            rates: AcceptanceRates::new(sources.len()),
            calibration: ScoreCalibration::new(sources.len()),
            kept_recently: vec![1.0; sources.len()],
            spending: vec![SourceSpending::default(); sources.len()],
            unit_seconds: None,
            value: 0.0,
            step: StepAccount::default(),
            batch_curve: None,
            leads: ChainLeads::default(),
            idle_steps: vec![0; sources.len()],
            first_new: vec![0; sources.len()],
            skipped: 0,
            sources,
            budget,
            builder: TreeBuilder::new(0),
            estimate: Vec::new(),
            merged: Vec::new(),
            on_path: Vec::new(),
            logits: Array2::zeros((0, 0)),
            verification: Verification::default(),
            steps: 0,
            candidates: 0,
            kept: 0,
            expected: 0.0,
        })
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
        self.expected += best.2 - 1.0;
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
        self.expected += expected[best.0] - 1.0;
        best.0
    }

    /// Updates what each source brings and costs from the step just observed; `forward` is
    /// the time between the draft and its feedback, `cost` the curve's cost of the tree.
    fn account_step(&mut self, forward: Duration, cost: f64) {
        let unit = forward.as_secs_f64() / cost;
        let unit = match self.unit_seconds {
            Some(u) => KEPT_MEMORY * u + (1.0 - KEPT_MEMORY) * unit,
            None => unit,
        };
        self.unit_seconds = Some(unit);
        let step = &self.step;
        let source_cost: Vec<f64> = step
            .source_time
            .iter()
            .map(|t| t.as_secs_f64() / unit)
            .collect();
        let value = step.expected / (cost + source_cost.iter().sum::<f64>());
        self.value = if self.value == 0.0 {
            value
        } else {
            KEPT_MEMORY * self.value + (1.0 - KEPT_MEMORY) * value
        };
        for (i, s) in self.spending.iter_mut().enumerate() {
            if self.idle_steps[i] == 0 {
                let surplus = step.source_gain[i] - value * step.source_node_cost[i];
                s.record(surplus, source_cost[i]);
            }
        }
    }

    /// Learns acceptance rates from the step and replays it to source `i` through its tree.
    fn replay(&mut self, i: usize, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        let merged = feedback.tree;
        let draft = &self.drafts[i];
        let own = &draft.tree;
        let vocab = feedback.logits.ncols();
        self.logits = Array2::from_elem((own.logits_rows(), vocab), f32::NAN);
        for node in 0..own.len() {
            let Some(m) = self.merged[draft.candidate[node]] else {
                continue;
            };
            if let (Some(own_row), Some(row)) = (own.logits_row(node), merged.logits_row(m)) {
                self.logits
                    .row_mut(own_row)
                    .assign(&feedback.logits.row(row));
            }
            if let Some(parent) = merged.parent(m)
                && self.on_path[parent]
                && merged.needs_logits(m)
            {
                let rank = usize::from(draft.rank[node]);
                self.rates.record(i, own.depth(node), rank, self.on_path[m]);
                if draft.bucket[node] != NO_BUCKET {
                    self.calibration
                        .record(i, draft.bucket[node], self.on_path[m]);
                }
            }
        }
        // The accepted path as far as this source's tree follows it.
        let path = &feedback.verification.path;
        self.verification.path.clear();
        self.verification.path.push(0);
        let mut node = 0;
        for &m in &path[1..] {
            match own.child_with_token(node, merged.token(m)) {
                Some(child) => {
                    self.verification.path.push(child);
                    node = child;
                }
                None => break,
            }
        }
        let followed = self.verification.path.len();
        self.verification.bonus = match path.get(followed) {
            Some(&m) => merged.token(m),
            None => feedback.verification.bonus,
        };
        let own_feedback = StepFeedback {
            tree: own,
            logits: self.logits.view(),
            verification: &self.verification,
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
        self.kept_recently.fill(1.0);
        self.spending.fill(SourceSpending::default());
        (self.unit_seconds, self.value) = (None, 0.0);
        self.idle_steps.fill(0);
        self.leads.reset(self.sources.len());
        (self.steps, self.candidates, self.kept, self.expected) = (0, 0, 0, 0.0);
        self.skipped = 0;
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
            let unpaying = prunable
                && match self.budget {
                    NodeBudget::Fixed => self.kept_recently[i] < IDLE_BELOW,
                    NodeBudget::CostAware(_) => {
                        let s = self.spending[i];
                        s.surplus < self.value * s.time
                    }
                };
            let retry = &mut self.spending[i].retry;
            let idle = unpaying && self.idle_steps[i] + 1 < *retry;
            if !unpaying {
                *retry = IDLE_RETRY;
            } else if !idle && self.idle_steps[i] > 0 {
                *retry = (*retry * 2).min(IDLE_RETRY_MAX);
            }
            if idle {
                self.idle_steps[i] += 1;
                self.skipped += 1;
            } else {
                self.idle_steps[i] = 0;
            }
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
            self.first_new[i] = self.builder.candidates().len();
            let own = &mut self.drafts[i].tree;
            own.reset(pending);
            let started = Instant::now();
            self.sources[i].draft(&source_ctx, own)?;
            self.step.source_time[i] += started.elapsed();
            if own.root_token() != pending || own.len() > source_ctx.max_nodes {
                return Err(DecodeError::State(
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
            let first_new = self.first_new[i];
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
            if self.idle_steps[i] == 0 {
                self.kept_recently[i] =
                    KEPT_MEMORY * self.kept_recently[i] + (1.0 - KEPT_MEMORY) * kept as f64;
            }
        }
        self.step.drafted_at = Some(Instant::now());
        self.steps += 1;
        self.candidates += self.builder.candidates().len();
        self.kept += tree.len();
        Ok(())
    }

    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        self.rates.forget();
        self.calibration.forget();
        self.on_path.clear();
        self.on_path.resize(feedback.tree.len(), false);
        for &node in &feedback.verification.path {
            self.on_path[node] = true;
        }
        let forward = self.step.drafted_at.take().map(|t| t.elapsed());
        for i in 0..self.sources.len() {
            let started = Instant::now();
            self.replay(i, feedback)?;
            if let Some(t) = self.step.source_time.get_mut(i) {
                *t += started.elapsed();
            }
        }
        if let Some(lead) = self.step.lead {
            self.leads.observe(lead, feedback.verification.accepted());
        }
        let cost = self.curve().map(|curve| curve.cost(self.step.nodes));
        if let (Some(forward), Some(cost)) = (forward, cost) {
            self.account_step(forward, cost);
        }
        Ok(())
    }

    fn requirements(&self) -> Requirements {
        let mut needs = Requirements::NONE;
        for source in &self.sources {
            let r = source.requirements();
            needs.hidden_state |= r.hidden_state;
            needs.head_logits |= r.head_logits;
        }
        needs
    }

    fn metrics(&self) -> Vec<Metric> {
        let per_step = |x: f64| {
            if self.steps == 0 {
                0.0
            } else {
                x / self.steps as f64
            }
        };
        let mut metrics = vec![
            Metric::new("candidates_per_step", per_step(self.candidates as f64)),
            Metric::new("nodes_per_step", per_step(self.kept as f64)),
            Metric::new("expected_accepted_per_step", per_step(self.expected)),
            Metric::new("idle_sources_per_step", per_step(self.skipped as f64)),
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
