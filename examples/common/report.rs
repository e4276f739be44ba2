//! Aggregates per-case results into the per-task table the eval runner prints.

#![allow(dead_code)]

use std::collections::BTreeMap;

use super::eval_data::CaseResult;

/// Totals over a group of cases.
#[derive(Clone, Debug, Default)]
pub(crate) struct Summary {
    /// Cases in the group.
    pub(crate) cases: usize,
    /// Generated tokens.
    pub(crate) tokens: usize,
    /// Forward passes, prefills included.
    pub(crate) forward_passes: usize,
    /// Drafted tree nodes (root included, prompt excluded).
    pub(crate) draft_nodes: usize,
    /// Model time, in milliseconds.
    pub(crate) model_ms: f64,
    /// Model time of the first passes (prefills), in milliseconds.
    pub(crate) prefill_ms: f64,
    /// Time outside the model, in milliseconds.
    pub(crate) overhead_ms: f64,
    /// Wall-clock time, in milliseconds.
    pub(crate) wall_ms: f64,
    /// Cases identical to the expected output, if known.
    pub(crate) identical: Option<usize>,
}

impl Summary {
    /// Sums `results`.
    pub(crate) fn of<'a>(results: impl IntoIterator<Item = &'a CaseResult>) -> Self {
        let mut s = Self::default();
        for r in results {
            s.cases += 1;
            s.tokens += r.generated.len();
            s.forward_passes += r.forward_passes;
            s.draft_nodes += r.draft_nodes;
            s.model_ms += r.model_ms;
            s.prefill_ms += r.prefill_ms;
            s.overhead_ms += r.overhead_ms;
            s.wall_ms += r.wall_ms;
            if let Some(same) = r.identical {
                *s.identical.get_or_insert(0) += usize::from(same);
            }
        }
        s
    }

    /// tau: generated tokens per forward pass, prefills included.
    pub(crate) fn tau(&self) -> f64 {
        self.tokens as f64 / self.forward_passes.max(1) as f64
    }

    /// Drafted nodes per forward pass.
    pub(crate) fn nodes_per_step(&self) -> f64 {
        self.draft_nodes as f64 / self.forward_passes.max(1) as f64
    }

    /// Microseconds outside the model per forward pass.
    pub(crate) fn overhead_us_per_step(&self) -> f64 {
        1e3 * self.overhead_ms / self.forward_passes.max(1) as f64
    }

    /// Model milliseconds per forward pass after the prefill.
    pub(crate) fn decode_ms_per_step(&self) -> f64 {
        let steps = self.forward_passes.saturating_sub(self.cases).max(1);
        (self.model_ms - self.prefill_ms) / steps as f64
    }

    /// Generated tokens per wall-clock second (prefill included).
    pub(crate) fn tokens_per_second(&self) -> f64 {
        1e3 * self.tokens as f64 / self.wall_ms.max(1e-9)
    }
}

/// Prints one row per task and per looping / non-looping subset, then the overall totals.
pub(crate) fn print_table(results: &[CaseResult]) {
    let mut tasks: Vec<&str> = results.iter().map(|r| r.task.as_str()).collect();
    tasks.sort_unstable();
    tasks.dedup();
    println!(
        "{:<12} {:<11} {:>5} {:>6} {:>6} {:>9} {:>12} {:>11} {:>10} {:>9} {:>9}",
        "task",
        "subset",
        "cases",
        "tokens",
        "tau",
        "nodes/st",
        "overhead us",
        "decode ms",
        "prefill ms",
        "wall tok/s",
        "identical"
    );
    let all = "all";
    for task in tasks.iter().copied().chain([all]) {
        let in_task = |r: &&CaseResult| task == all || r.task == task;
        for (subset, keep) in [
            ("all", None),
            ("looping", Some(true)),
            ("non-looping", Some(false)),
        ] {
            let group = results
                .iter()
                .filter(in_task)
                .filter(|r| keep.is_none_or(|k| r.looping == k));
            let s = Summary::of(group);
            if s.cases == 0 {
                continue;
            }
            let identical = match s.identical {
                Some(n) => format!("{n}/{}", s.cases),
                None => "-".to_string(),
            };
            println!(
                "{:<12} {:<11} {:>5} {:>6} {:>6.3} {:>9.2} {:>12.1} {:>11.3} {:>10.2} {:>9.1} {:>9}",
                task,
                subset,
                s.cases,
                s.tokens,
                s.tau(),
                s.nodes_per_step(),
                s.overhead_us_per_step(),
                s.decode_ms_per_step(),
                s.prefill_ms / s.cases as f64,
                s.tokens_per_second(),
                identical
            );
        }
    }
}

/// The mean of each strategy metric over the cases that report it.
pub(crate) fn mean_metrics(results: &[CaseResult]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for r in results {
        for (name, &value) in &r.metrics {
            let entry = sums.entry(name.clone()).or_default();
            entry.0 += value;
            entry.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(name, (sum, n))| (name, sum / n as f64))
        .collect()
}
