//! What a passing check measured.

use std::fmt;

use decoding_core::{NodeId, Token, TreeSupport};

/// Near-ties listed in a report; the rest are only counted.
pub(crate) const NEAR_TIES_KEPT: usize = 16;

/// A row whose argmax differed from the recompute's at a near-tie (accepted under a
/// tolerance).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NearTie {
    /// The episode.
    pub episode: usize,
    /// The step of the episode.
    pub step: usize,
    /// The node.
    pub node: NodeId,
    /// The recompute's argmax.
    pub expected: Token,
    /// The model's argmax.
    pub actual: Token,
    /// How far apart the recompute's logits of the two tokens are.
    pub gap: f32,
}

/// The largest difference seen in one kind of comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Agreement {
    /// Rows compared.
    pub rows: usize,
    /// Largest element difference over them.
    pub max_abs_diff: f32,
}

impl Agreement {
    pub(crate) fn record(&mut self, diff: f32) {
        self.rows += 1;
        self.max_abs_diff = self.max_abs_diff.max(diff);
    }

    pub(crate) fn merge(&mut self, other: Self) {
        self.rows += other.rows;
        self.max_abs_diff = self.max_abs_diff.max(other.max_abs_diff);
    }
}

/// What a passing check did and measured.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CheckReport {
    /// The seed.
    pub seed: u64,
    /// Episodes run.
    pub episodes: usize,
    /// Calls made by the schedule (forwards with their commits, truncations, resets, misuse
    /// checks, batched passes), not counting the recompute.
    pub steps: usize,
    /// Forward passes, including the recompute's.
    pub forwards: usize,
    /// Tree nodes evaluated over all forward passes.
    pub nodes: usize,
    /// Misuse checks run (each one a call that had to fail).
    pub misuse_checks: usize,
    /// Batched forward passes with more than one sequence (batch check only).
    pub multi_sequence_passes: usize,
    /// Logits rows compared with the recompute.
    pub logits: Agreement,
    /// Hidden states compared (0 rows when the model exposes none or the check is off).
    pub hidden_states: Agreement,
    /// Head logits compared (0 rows when the model has none or the check is off).
    pub head_logits: Agreement,
    /// Argmax flips accepted as near-ties (the first few).
    pub near_ties: Vec<NearTie>,
    /// Number of near-ties in all.
    pub near_tie_count: usize,
    /// The model's tree support (a `ChainsOnly` model was given chains only).
    pub tree_support: TreeSupport,
    /// The longest context the check built.
    pub max_context: usize,
}

impl CheckReport {
    pub(crate) fn new(seed: u64, tree_support: TreeSupport, max_context: usize) -> Self {
        Self {
            seed,
            episodes: 0,
            steps: 0,
            forwards: 0,
            nodes: 0,
            misuse_checks: 0,
            multi_sequence_passes: 0,
            logits: Agreement::default(),
            hidden_states: Agreement::default(),
            head_logits: Agreement::default(),
            near_ties: Vec::new(),
            near_tie_count: 0,
            tree_support,
            max_context,
        }
    }

    /// Whether every compared value was bit-identical to the recompute's (the model could
    /// be checked with the default, exact configuration).
    pub fn is_bit_exact(&self) -> bool {
        self.logits.max_abs_diff == 0.0
            && self.hidden_states.max_abs_diff == 0.0
            && self.head_logits.max_abs_diff == 0.0
            && self.near_tie_count == 0
    }

    pub(crate) fn near_tie(&mut self, tie: NearTie) {
        self.near_tie_count += 1;
        if self.near_ties.len() < NEAR_TIES_KEPT {
            self.near_ties.push(tie);
        }
    }

    pub(crate) fn merge(&mut self, other: Self) {
        self.episodes += other.episodes;
        self.steps += other.steps;
        self.forwards += other.forwards;
        self.nodes += other.nodes;
        self.misuse_checks += other.misuse_checks;
        self.multi_sequence_passes += other.multi_sequence_passes;
        self.logits.merge(other.logits);
        self.hidden_states.merge(other.hidden_states);
        self.head_logits.merge(other.head_logits);
        self.near_tie_count += other.near_tie_count;
        for tie in other.near_ties {
            if self.near_ties.len() < NEAR_TIES_KEPT {
                self.near_ties.push(tie);
            }
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let support = match self.tree_support {
            TreeSupport::ChainsOnly => "chains only",
            _ => "trees",
        };
        writeln!(
            f,
            "conformance check passed (seed {}): {} episodes, {} steps, {} forward passes over {} nodes ({support}, contexts up to {} tokens)",
            self.seed, self.episodes, self.steps, self.forwards, self.nodes, self.max_context
        )?;
        let agreement = |name: &str, a: &Agreement| {
            if a.rows == 0 {
                format!("{name}: not compared")
            } else {
                format!("{name}: {} rows, max abs diff {:e}", a.rows, a.max_abs_diff)
            }
        };
        writeln!(f, "  {}", agreement("logits", &self.logits))?;
        writeln!(f, "  {}", agreement("hidden states", &self.hidden_states))?;
        writeln!(f, "  {}", agreement("head logits", &self.head_logits))?;
        write!(
            f,
            "  misuse checks: {}; multi-sequence passes: {}; near-ties: {}; bit-exact: {}",
            self.misuse_checks,
            self.multi_sequence_passes,
            self.near_tie_count,
            if self.is_bit_exact() { "yes" } else { "no" }
        )?;
        for tie in &self.near_ties {
            write!(
                f,
                "\n    near-tie at episode {} step {} node {}: argmax {} instead of {} (gap {:e})",
                tie.episode, tie.step, tie.node, tie.actual, tie.expected, tie.gap
            )?;
        }
        Ok(())
    }
}
