//! What a composite learns from the steps it observes: acceptance rates by depth and rank,
//! calibrations of the sources' own scores, whether each source pays for its drafting
//! (pacing), and which source leads on a chains-only model.

const MAX_DEPTH_KEY: usize = 16;
const MAX_RANK_KEY: usize = 8;
const PRIOR_RATE: f64 = 1.0;
const PRIOR_WEIGHT: f64 = 1.0;
/// Per-step forgetting of the counts: a key that stops being tested drifts back to the
/// prior, so a source that was poor once is tried again later (exploration).
const DECAY: f64 = 0.99;
/// Weight of the past in each source's average of kept nodes per step.
pub(super) const KEPT_MEMORY: f64 = 0.7;
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
pub(super) struct AcceptanceRates {
    counts: Vec<(f64, f64)>,
    per_source: Vec<(f64, f64)>,
}

impl AcceptanceRates {
    pub(super) fn new(sources: usize) -> Self {
        Self {
            counts: vec![(0.0, 0.0); sources * MAX_DEPTH_KEY * MAX_RANK_KEY],
            per_source: vec![(0.0, 0.0); sources],
        }
    }

    fn key(source: usize, depth: usize, rank: usize) -> usize {
        let depth = depth.clamp(1, MAX_DEPTH_KEY) - 1;
        (source * MAX_DEPTH_KEY + depth) * MAX_RANK_KEY + rank.min(MAX_RANK_KEY - 1)
    }

    pub(super) fn rate(&self, source: usize, depth: usize, rank: usize) -> f64 {
        let (tested, accepted) = self.per_source[source];
        let prior = (accepted + PRIOR_RATE * PRIOR_WEIGHT) / (tested + PRIOR_WEIGHT);
        let (tested, accepted) = self.counts[Self::key(source, depth, rank)];
        (accepted + prior * PRIOR_WEIGHT) / (tested + PRIOR_WEIGHT)
    }

    pub(super) fn record(&mut self, source: usize, depth: usize, rank: usize, accepted: bool) {
        for entry in [
            &mut self.counts[Self::key(source, depth, rank)],
            &mut self.per_source[source],
        ] {
            entry.0 += 1.0;
            entry.1 += f64::from(u8::from(accepted));
        }
    }

    pub(super) fn forget(&mut self) {
        for (tested, accepted) in self.counts.iter_mut().chain(&mut self.per_source) {
            *tested *= DECAY;
            *accepted *= DECAY;
        }
    }
}

/// Buckets of a source's conditional scores (the score of a node over its parent's).
const SCORE_BUCKETS: usize = 20;
/// Marks a node without a source score.
pub(super) const NO_BUCKET: u8 = u8::MAX;
/// Weight of a bucket's own centre as its prior rate.
const SCORE_PRIOR_WEIGHT: f64 = 2.0;

/// Tested / accepted counts per (source, score bucket): what a source's conditional score
/// is worth, learned as the step results come in, exponentially forgotten.
#[derive(Clone, Debug)]
pub(super) struct ScoreCalibration {
    counts: Vec<(f64, f64)>,
}

impl ScoreCalibration {
    pub(super) fn new(sources: usize) -> Self {
        Self {
            counts: vec![(0.0, 0.0); sources * SCORE_BUCKETS],
        }
    }

    pub(super) fn bucket(conditional: f64) -> u8 {
        ((conditional * SCORE_BUCKETS as f64) as usize).min(SCORE_BUCKETS - 1) as u8
    }

    pub(super) fn rate(&self, source: usize, bucket: u8) -> f64 {
        let centre = (f64::from(bucket) + 0.5) / SCORE_BUCKETS as f64;
        let (tested, accepted) = self.counts[source * SCORE_BUCKETS + usize::from(bucket)];
        (accepted + centre * SCORE_PRIOR_WEIGHT) / (tested + SCORE_PRIOR_WEIGHT)
    }

    pub(super) fn record(&mut self, source: usize, bucket: u8, accepted: bool) {
        let entry = &mut self.counts[source * SCORE_BUCKETS + usize::from(bucket)];
        entry.0 += 1.0;
        entry.1 += f64::from(u8::from(accepted));
    }

    pub(super) fn forget(&mut self) {
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
    pub(super) fn record(&mut self, surplus: f64, time: f64) {
        let mix = |old: f64, new: f64| SPENDING_MEMORY * old + (1.0 - SPENDING_MEMORY) * new;
        (self.surplus, self.time) = if self.seen {
            (mix(self.surplus, surplus), mix(self.time, time))
        } else {
            (surplus, time)
        };
        self.seen = true;
    }
}

/// Which of the sources that need all their nodes drafts in full on a chains-only model,
/// where one chain is all a step can hold: the one whose chains have been accepted furthest
/// (an average of accepted tokens per step it led), each of the others given a turn after
/// [`IDLE_RETRY`] steps without one.
#[derive(Clone, Debug, Default)]
pub(super) struct ChainLeads {
    /// Per source: average accepted tokens per step it led (optimistic 1 at first), and steps
    /// since it last led.
    record: Vec<(f64, usize)>,
}

impl ChainLeads {
    pub(super) fn reset(&mut self, sources: usize) {
        self.record.clear();
        self.record.resize(sources, (1.0, 0));
    }

    /// The lead among the sources `forced` marks.
    pub(super) fn choose(&mut self, forced: &[bool]) -> Option<usize> {
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

    pub(super) fn observe(&mut self, lead: usize, accepted: usize) {
        let gain = &mut self.record[lead].0;
        *gain = KEPT_MEMORY * *gain + (1.0 - KEPT_MEMORY) * accepted as f64;
    }
}

/// Whether each prunable source pays for what it costs, and the resting of those that do not.
///
/// Under a fixed budget a source does not pay when none of its nodes makes the tree (an
/// exponential average of the kept nodes it was first to propose, below [`IDLE_BELOW`]).
/// Under a cost-aware budget the step's forward time (between a draft and its feedback, read
/// from the composite's clock) converts the sources' own drafting time into units of the cost
/// curve, and a source rests when its surplus is worth less than its time.
#[derive(Clone, Debug)]
pub(super) struct Pacing {
    kept_recently: Vec<f64>,
    spending: Vec<SourceSpending>,
    idle_steps: Vec<usize>,
    /// Seconds per unit of the cost curve.
    unit_seconds: Option<f64>,
    /// Expected tokens per unit of cost of recent steps, sources' time included.
    value: f64,
    /// Drafts skipped by resting sources.
    pub(super) skipped: usize,
}

impl Pacing {
    pub(super) fn new(sources: usize) -> Self {
        Self {
            kept_recently: vec![1.0; sources],
            spending: vec![SourceSpending::default(); sources],
            idle_steps: vec![0; sources],
            unit_seconds: None,
            value: 0.0,
            skipped: 0,
        }
    }

    /// Whether prunable source `i` rests this step (drafts with a budget of one node).
    pub(super) fn rests(&mut self, i: usize, cost_aware: bool) -> bool {
        let s = self.spending[i];
        let unpaying = if cost_aware {
            s.surplus < self.value * s.time
        } else {
            self.kept_recently[i] < IDLE_BELOW
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
        idle
    }

    /// Source `i` drafted in full this step and `kept` of the nodes it was first to propose
    /// made the tree.
    pub(super) fn note_kept(&mut self, i: usize, kept: usize) {
        if self.idle_steps[i] == 0 {
            self.kept_recently[i] =
                KEPT_MEMORY * self.kept_recently[i] + (1.0 - KEPT_MEMORY) * kept as f64;
        }
    }

    /// Updates what each source brings and costs from a step whose forward took `forward`
    /// seconds at `cost` on the curve; `expected` is the step's expected tokens, and per
    /// source its gain, the curve's cost of its kept nodes and its own time in seconds.
    pub(super) fn account(
        &mut self,
        forward: f64,
        cost: f64,
        expected: f64,
        gain: &[f64],
        node_cost: &[f64],
        time: &[f64],
    ) {
        if !(forward > 0.0 && cost > 0.0) {
            return; // a clock that stands still measures nothing
        }
        let unit = forward / cost;
        let unit = match self.unit_seconds {
            Some(u) => KEPT_MEMORY * u + (1.0 - KEPT_MEMORY) * unit,
            None => unit,
        };
        self.unit_seconds = Some(unit);
        let source_cost: Vec<f64> = time.iter().map(|t| t / unit).collect();
        let value = expected / (cost + source_cost.iter().sum::<f64>());
        self.value = if self.value == 0.0 {
            value
        } else {
            KEPT_MEMORY * self.value + (1.0 - KEPT_MEMORY) * value
        };
        for (i, s) in self.spending.iter_mut().enumerate() {
            if self.idle_steps[i] == 0 {
                s.record(gain[i] - value * node_cost[i], source_cost[i]);
            }
        }
    }
}
