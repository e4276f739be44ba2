//! Evaluation cases and per-case results, shared by the eval runner and the serving example.
//!
//! An eval file (see `assets/eval/README.md`) is
//! `{"tokenizer": ..., "cases": [{"id", "task", "prompt_ids", "references", "max_new_tokens"}]}`;
//! an expected-output file maps case ids to generated token ids, or is a results file of an
//! earlier run (`--out`), whose `generated` tokens are then the expected ones (how a sampled
//! run is compared with plain sampling at the same seed).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use decoding_core::{Generation, TokenLogprob};
use serde::{Deserialize, Serialize};

/// One evaluation case.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Case {
    /// Unique id, such as `dev-completion-00`.
    pub(crate) id: String,
    /// The task (`completion`, `edit`, ...): results are grouped by it.
    pub(crate) task: String,
    /// The prompt's token ids.
    pub(crate) prompt_ids: Vec<u32>,
    /// Reference documents a copy-based drafter may use.
    #[serde(default)]
    pub(crate) references: Vec<Vec<u32>>,
    /// How many tokens to generate (decoding also stops at EOS).
    pub(crate) max_new_tokens: usize,
}

/// An eval file.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct EvalSet {
    /// The tokenizer the ids come from, as written in the file.
    #[serde(default)]
    pub(crate) tokenizer: Option<String>,
    /// The cases, in file order.
    pub(crate) cases: Vec<Case>,
}

/// Reads an eval file.
pub(crate) fn load_cases(path: &Path) -> Result<EvalSet, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads an expected-output file: `{case id: [token ids]}`, or the results (`--out`) of an
/// earlier run.
pub(crate) fn load_expected(path: &Path) -> Result<BTreeMap<String, Vec<u32>>, String> {
    /// The two layouts.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Expected {
        Outputs(BTreeMap<String, Vec<u32>>),
        Results(Vec<Recorded>),
    }
    /// What an expected output needs of a result record.
    #[derive(Deserialize)]
    struct Recorded {
        id: String,
        generated: Vec<u32>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let expected = serde_json::from_str(&text).map_err(|_| {
        format!(
            "{}: neither {{case id: [token ids]}} nor a results file of the eval runner",
            path.display()
        )
    })?;
    Ok(match expected {
        Expected::Outputs(outputs) => outputs,
        Expected::Results(results) => results.into_iter().map(|r| (r.id, r.generated)).collect(),
    })
}

/// Length of the repeat that makes an output "loop".
pub(crate) const LOOP_LEN: usize = 32;

/// Whether an output *loops*: its last [`LOOP_LEN`] (32) tokens already occur verbatim
/// earlier in the output, in an occurrence that ends before they start (so the output
/// repeats at least 32 of its own tokens at its end). Only generated tokens count, not the
/// prompt. On the dev set's reference greedy outputs this marks 26 of the 70 cases, as
/// `assets/eval/README.md` says.
pub(crate) fn loops(tokens: &[u32]) -> bool {
    let n = tokens.len();
    if n < 2 * LOOP_LEN {
        return false;
    }
    let tail = &tokens[n - LOOP_LEN..];
    tokens[..n - LOOP_LEN]
        .windows(LOOP_LEN)
        .any(|window| window == tail)
}

/// What the runner records about one decoded case (one line of the `--out` file).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CaseResult {
    /// The case id.
    pub(crate) id: String,
    /// The case's task.
    pub(crate) task: String,
    /// The generated token ids.
    pub(crate) generated: Vec<u32>,
    /// Model forward passes, the prefill included.
    pub(crate) forward_passes: usize,
    /// Tree nodes the model evaluated, the prompt prefix included.
    pub(crate) nodes: usize,
    /// Drafted tree nodes (root included), summed over steps, the prompt excluded.
    pub(crate) draft_nodes: usize,
    /// Time inside the model (forward, commit, hidden states).
    pub(crate) model_ms: f64,
    /// Time inside the model for the first forward pass (prefill and first token).
    pub(crate) prefill_ms: f64,
    /// Time outside the model (drafting, verification, bookkeeping).
    pub(crate) overhead_ms: f64,
    /// Wall-clock time of the whole decode.
    pub(crate) wall_ms: f64,
    /// CPU time of the process during the decode (all threads; 10 ms resolution; Linux).
    pub(crate) cpu_ms: Option<f64>,
    /// CPU time after the first forward pass (prefill excluded).
    pub(crate) cpu_decode_ms: Option<f64>,
    /// Whether the output loops (see [`loops`]).
    pub(crate) looping: bool,
    /// Whether the output equals the expected one (only with `--expected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) identical: Option<bool>,
    /// The strategy's own statistics.
    pub(crate) metrics: BTreeMap<String, f64>,
    /// Per generated token, its logprob and the most likely alternatives (only with
    /// `--logprobs`; a logprob of `null` is `-inf`, a token the distribution excludes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logprobs: Option<Vec<LogprobRecord>>,
}

/// One generated token's log probability and the most likely tokens at its position.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LogprobRecord {
    /// The token.
    pub(crate) token: u32,
    /// Its natural log probability.
    pub(crate) logprob: f64,
    /// `[token, logprob]` pairs, best first.
    pub(crate) top: Vec<(u32, f64)>,
}

impl From<TokenLogprob> for LogprobRecord {
    fn from(l: TokenLogprob) -> Self {
        Self {
            token: l.token,
            logprob: l.logprob,
            top: l.top,
        }
    }
}

/// CPU times of one decode, where the caller could measure them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuTimes {
    /// The whole decode.
    pub(crate) total_ms: Option<f64>,
    /// After the first forward pass.
    pub(crate) decode_ms: Option<f64>,
}

impl CaseResult {
    /// The record of `case` decoded into `out`, with the wall-clock time (`None`: model
    /// plus overhead time) and CPU times the caller measured, compared with `expected`.
    pub(crate) fn new(
        case: &Case,
        out: Generation,
        wall_ms: Option<f64>,
        cpu: CpuTimes,
        expected: Option<&[u32]>,
    ) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let (model_ms, overhead_ms) = (ms(out.stats.model_time()), ms(out.stats.overhead_time()));
        Self {
            id: case.id.clone(),
            task: case.task.clone(),
            looping: loops(&out.tokens),
            forward_passes: out.stats.forward_passes(),
            nodes: out.stats.tree_nodes(),
            draft_nodes: out.stats.steps.iter().map(|s| s.draft_nodes).sum(),
            model_ms,
            prefill_ms: out.stats.steps.first().map_or(0.0, |s| ms(s.model_time)),
            overhead_ms,
            wall_ms: wall_ms.unwrap_or(model_ms + overhead_ms),
            cpu_ms: cpu.total_ms,
            cpu_decode_ms: cpu.decode_ms,
            identical: expected.map(|tokens| *tokens == out.tokens),
            metrics: out
                .metrics
                .iter()
                .map(|m| (m.name.to_string(), m.value))
                .collect(),
            logprobs: (!out.logprobs.is_empty())
                .then(|| out.logprobs.into_iter().map(LogprobRecord::from).collect()),
            generated: out.tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_detection() {
        let block: Vec<u32> = (0..32).collect();
        let mut looped = vec![99; 5];
        looped.extend(&block);
        looped.extend(&block);
        assert!(loops(&looped));
        // The last 32 tokens were never seen whole before.
        let mut short: Vec<u32> = (0..31).collect();
        short.extend(0..33);
        assert!(!loops(&short));
        assert!(!loops(&block));
    }
}
