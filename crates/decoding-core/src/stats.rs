//! Per-step statistics: forward passes, tree sizes, acceptance, and where the time went.

use std::time::Duration;

use crate::tree::{SourceId, SourceSet};

/// One forward pass of a decoding run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepRecord {
    /// Nodes the model evaluated (the prompt prefix included on the first step).
    pub tree_nodes: usize,
    /// Nodes of the drafted tree, root included.
    pub draft_nodes: usize,
    /// Drafted tokens accepted by verification.
    pub accepted: usize,
    /// Tokens emitted (accepted drafts plus the bonus token, cut by stop conditions).
    pub emitted: usize,
    /// Time inside the model: forward, commit, and reading hidden states or head logits.
    pub model_time: Duration,
    /// Time outside the model: drafting, tree building, verification, bookkeeping.
    pub overhead_time: Duration,
}

/// Statistics of one decoding run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodeStats {
    /// Every forward pass, in order; the first one also prefilled the prompt.
    pub steps: Vec<StepRecord>,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Accepted drafted tokens per draft source (a token proposed by several sources counts
    /// for each).
    pub accepted_by_source: [usize; SourceId::MAX],
}

impl DecodeStats {
    /// Model forward passes, the prefill included.
    pub fn forward_passes(&self) -> usize {
        self.steps.len()
    }

    /// Tokens emitted.
    pub fn generated(&self) -> usize {
        self.steps.iter().map(|s| s.emitted).sum()
    }

    /// Drafted tokens accepted.
    pub fn accepted(&self) -> usize {
        self.steps.iter().map(|s| s.accepted).sum()
    }

    /// tau: tokens emitted per forward pass, the prefill included (plain decoding: 1.0).
    pub fn tau(&self) -> f64 {
        ratio(self.generated() as f64, self.forward_passes())
    }

    /// Nodes evaluated by the model, the prompt prefix included.
    pub fn tree_nodes(&self) -> usize {
        self.steps.iter().map(|s| s.tree_nodes).sum()
    }

    /// Drafted-tree nodes per step, root included (the prompt prefix excluded).
    pub fn draft_nodes_per_step(&self) -> f64 {
        ratio(
            self.steps.iter().map(|s| s.draft_nodes).sum::<usize>() as f64,
            self.forward_passes(),
        )
    }

    /// Time inside the model.
    pub fn model_time(&self) -> Duration {
        self.steps.iter().map(|s| s.model_time).sum()
    }

    /// Time outside the model.
    pub fn overhead_time(&self) -> Duration {
        self.steps.iter().map(|s| s.overhead_time).sum()
    }

    /// Mean time outside the model per step.
    pub fn overhead_per_step(&self) -> Duration {
        match u32::try_from(self.forward_passes()) {
            Ok(n) if n > 0 => self.overhead_time() / n,
            _ => Duration::ZERO,
        }
    }

    /// `histogram[k]`: steps that accepted exactly `k` drafted tokens.
    pub fn accepted_histogram(&self) -> Vec<usize> {
        let longest = self.steps.iter().map(|s| s.accepted).max().unwrap_or(0);
        let mut histogram = vec![0; longest + 1];
        for step in &self.steps {
            histogram[step.accepted] += 1;
        }
        histogram
    }

    /// `rate[d - 1]`: the fraction of steps that accepted at least `d` drafted tokens.
    pub fn acceptance_by_depth(&self) -> Vec<f64> {
        let histogram = self.accepted_histogram();
        (1..histogram.len())
            .map(|d| {
                ratio(
                    histogram[d..].iter().sum::<usize>() as f64,
                    self.steps.len(),
                )
            })
            .collect()
    }

    /// Counts accepted nodes for their sources.
    pub(crate) fn credit_sources(&mut self, sources: SourceSet) {
        for source in sources.iter() {
            self.accepted_by_source[source.index()] += 1;
        }
    }

    /// Adds another run's statistics (for totals over many prompts).
    pub fn merge(&mut self, other: &DecodeStats) {
        self.steps.extend_from_slice(&other.steps);
        self.prompt_tokens += other.prompt_tokens;
        for (a, b) in self
            .accepted_by_source
            .iter_mut()
            .zip(other.accepted_by_source)
        {
            *a += b;
        }
    }
}

fn ratio(numerator: f64, denominator: usize) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator / denominator as f64
    }
}
