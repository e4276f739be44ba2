//! Medusa's own statistics: accepted length per step, acceptance by depth and by head rank.

use decoding_core::Metric;

/// Ranks reported one by one in [`MedusaStats::metrics`]; higher ranks are summed.
const REPORTED_RANKS: usize = 8;

/// Per-sequence statistics of the steps drafted from head predictions (the first step,
/// which has none yet, is not counted).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MedusaStats {
    /// Steps whose tree was drafted from head predictions.
    pub head_steps: usize,
    /// Nodes drafted below the root over those steps.
    pub drafted_nodes: usize,
    /// Heads evaluated over those steps (a dynamic tree evaluates a head only when a chosen
    /// path reaches its depth).
    pub heads_evaluated: usize,
    /// `accepted_histogram[a]`: steps that accepted exactly `a` drafted tokens.
    pub accepted_histogram: Vec<usize>,
    /// `drafted_by_depth[d - 1]`: steps whose tree reached depth `d`.
    pub drafted_by_depth: Vec<usize>,
    /// `accepted_by_depth[d - 1]`: steps that accepted at least `d` drafted tokens.
    pub accepted_by_depth: Vec<usize>,
    /// `accepted_by_rank[k][r]`: accepted tokens that were head `k`'s candidate of rank `r`.
    pub accepted_by_rank: Vec<Vec<usize>>,
}

impl MedusaStats {
    /// Mean drafted tokens accepted per head step.
    pub fn mean_accepted(&self) -> f64 {
        let total: usize = self.accepted_by_depth.iter().sum();
        ratio(total, self.head_steps)
    }

    /// `rate[d - 1]`: among steps whose tree reached depth `d`, the fraction that accepted
    /// `d` or more tokens.
    pub fn acceptance_by_depth(&self) -> Vec<f64> {
        self.accepted_by_depth
            .iter()
            .zip(&self.drafted_by_depth)
            .map(|(&a, &d)| ratio(a, d))
            .collect()
    }

    /// Records one head step: `path` holds the (depth, rank) of each accepted node, root
    /// excluded, and the tree reached `max_depth`.
    pub(crate) fn record(
        &mut self,
        drafted: usize,
        max_depth: usize,
        heads: usize,
        path: &[(usize, usize)],
    ) {
        self.head_steps += 1;
        self.drafted_nodes += drafted;
        self.heads_evaluated += heads;
        grow(&mut self.accepted_histogram, path.len() + 1);
        self.accepted_histogram[path.len()] += 1;
        grow(&mut self.drafted_by_depth, max_depth);
        grow(&mut self.accepted_by_depth, max_depth.max(path.len()));
        for d in 0..max_depth {
            self.drafted_by_depth[d] += 1;
        }
        for (d, &(_, rank)) in path.iter().enumerate() {
            self.accepted_by_depth[d] += 1;
            if self.accepted_by_rank.len() <= d {
                self.accepted_by_rank.resize(d + 1, Vec::new());
            }
            let ranks = &mut self.accepted_by_rank[d];
            grow(ranks, rank + 1);
            ranks[rank] += 1;
        }
    }

    /// The statistics as named metrics: `head_steps`, `mean_accepted`, `draft_nodes_per_step`,
    /// `heads_per_step`,
    /// `accept_rate_depth{d}` and `head{k}_rank{r}` (the share of head steps in which head
    /// `k`'s accepted candidate had rank `r`; `head{k}_rank8plus` for the rest).
    pub fn metrics(&self) -> Vec<Metric> {
        let mut out = vec![
            Metric::new("head_steps", self.head_steps as f64),
            Metric::new("mean_accepted", self.mean_accepted()),
            Metric::new(
                "draft_nodes_per_step",
                ratio(self.drafted_nodes, self.head_steps),
            ),
            Metric::new(
                "heads_per_step",
                ratio(self.heads_evaluated, self.head_steps),
            ),
        ];
        for (d, rate) in self.acceptance_by_depth().into_iter().enumerate() {
            out.push(Metric::new(format!("accept_rate_depth{}", d + 1), rate));
        }
        for (k, ranks) in self.accepted_by_rank.iter().enumerate() {
            for (r, &n) in ranks.iter().enumerate().take(REPORTED_RANKS) {
                out.push(Metric::new(
                    format!("head{k}_rank{r}"),
                    ratio(n, self.head_steps),
                ));
            }
            let rest: usize = ranks.iter().skip(REPORTED_RANKS).sum();
            if rest > 0 {
                out.push(Metric::new(
                    format!("head{k}_rank{REPORTED_RANKS}plus"),
                    ratio(rest, self.head_steps),
                ));
            }
        }
        out
    }
}

fn grow(v: &mut Vec<usize>, len: usize) {
    if v.len() < len {
        v.resize(len, 0);
    }
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_depths_and_ranks() {
        let mut s = MedusaStats::default();
        s.record(10, 3, 3, &[(1, 0), (2, 2)]);
        s.record(5, 2, 2, &[]);
        assert_eq!(s.head_steps, 2);
        assert_eq!(s.accepted_histogram, vec![1, 0, 1]);
        assert_eq!(s.acceptance_by_depth(), vec![0.5, 0.5, 0.0]);
        assert_eq!(s.accepted_by_rank, vec![vec![1], vec![0, 0, 1]]);
        assert_eq!(s.mean_accepted(), 1.0);
        let m = s.metrics();
        assert!(m.iter().any(|m| m.name == "head1_rank2" && m.value == 0.5));
    }
}
