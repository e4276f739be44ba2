//! The command-line options the eval runner and the serving example share.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use decoding_core::process::{FrequencyPenalty, PresencePenalty, RepetitionPenalty};
use decoding_core::{CostCurve, DecodeConfig, LogitsModel, LogprobsConfig, LogprobsMode, Sampling};

use super::engine::{EngineArgs, Loaded};
use super::{cost, eval_data};

/// What to decode, with which strategy and sampling, and where the results go.
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// Model directory (config.json, model.safetensors, ...).
    #[arg(long, default_value = "assets/pycoder-16m")]
    pub(crate) model: PathBuf,
    /// Eval cases (JSON).
    #[arg(long, default_value = "assets/eval/dev_eval.json")]
    pub(crate) cases: PathBuf,
    /// Strategy specification, such as `greedy` or `lookahead:w=15,n=5,g=15`.
    #[arg(long, default_value = "greedy")]
    pub(crate) strategy: String,
    /// Write per-case results (JSON) here.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Decode only the first N cases.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long)]
    pub(crate) top_p: Option<f32>,
    /// Top-k sampling.
    #[arg(long)]
    pub(crate) top_k: Option<usize>,
    /// Min-p sampling: drops the tokens less likely than this fraction of the most likely
    /// one (after temperature).
    #[arg(long)]
    pub(crate) min_p: Option<f32>,
    /// Repetition penalty (Hugging Face's `repetition_penalty`, over the prompt and the
    /// output; above 1 discourages repeats).
    #[arg(long)]
    pub(crate) repetition_penalty: Option<f32>,
    /// Frequency penalty (OpenAI's `frequency_penalty`, over the generated tokens).
    #[arg(long)]
    pub(crate) frequency_penalty: Option<f32>,
    /// Presence penalty (OpenAI's `presence_penalty`, over the generated tokens).
    #[arg(long)]
    pub(crate) presence_penalty: Option<f32>,
    /// Report every generated token's logprob and its N most likely alternatives (in the
    /// `--out` file, per case).
    #[arg(long, value_name = "N")]
    pub(crate) logprobs: Option<usize>,
    /// Which distribution `--logprobs` reports: after the penalties and before temperature
    /// (`processed`, as OpenAI-style APIs), or the one tokens are drawn from (`sampled`).
    #[arg(long, value_enum, default_value = "processed")]
    pub(crate) logprobs_mode: LogprobsModeArg,
    /// Seed of the sampler (each case gets its own stream derived from it, so sampled outputs
    /// depend neither on the strategy nor on the concurrency).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Expected outputs (`{case id: [token ids]}`) to compare with.
    #[arg(long)]
    pub(crate) expected: Option<PathBuf>,
    /// Tree node budget per sequence and forward pass, root included.
    #[arg(long, default_value_t = DecodeConfig::DEFAULT_MAX_NODES)]
    pub(crate) max_nodes: usize,
    /// Threads per forward pass (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Before decoding, measure the model's forward cost by tree size (1 to 64 nodes over
    /// the first prompt): what `cost=auto` and plain `composite` use.
    #[arg(long)]
    pub(crate) measure_cost: bool,
}

impl RunArgs {
    /// The threads per forward pass.
    pub(crate) fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Loads the engine's weights with the threads asked for, saying how long it took.
    pub(crate) fn load_engine(&self) -> Result<Loaded, Box<dyn std::error::Error>> {
        Loaded::load(&self.engine, &self.model, self.threads())
    }

    /// The cases to decode (the first `--limit` of them; at least one).
    pub(crate) fn cases(&self) -> Result<Vec<eval_data::Case>, String> {
        let mut cases = eval_data::load_cases(&self.cases)?.cases;
        cases.truncate(self.limit.unwrap_or(usize::MAX));
        if cases.is_empty() {
            return Err(match self.limit {
                Some(0) => "--limit 0 leaves no case to decode".to_string(),
                _ => format!("{}: the file has no cases", self.cases.display()),
            });
        }
        Ok(cases)
    }

    /// The expected outputs, if `--expected` names them.
    pub(crate) fn expected(&self) -> Result<Option<BTreeMap<String, Vec<u32>>>, String> {
        self.expected
            .as_ref()
            .map(|path| eval_data::load_expected(path))
            .transpose()
    }

    /// With `--measure-cost`, the model's cost curve over `prompt` (printed).
    pub(crate) fn measure_cost(
        &self,
        model: &mut dyn LogitsModel,
        prompt: &[u32],
    ) -> Result<Option<CostCurve>, Box<dyn std::error::Error>> {
        if !self.measure_cost {
            return Ok(None);
        }
        let curve = cost::measure(model, prompt)?;
        println!("cost curve: {curve:.2}");
        Ok(Some(curve))
    }

    /// The sampling the options describe.
    pub(crate) fn sampling(&self) -> Sampling {
        Sampling::with_temperature(self.temperature)
            .with_top_k(self.top_k)
            .with_top_p(self.top_p)
            .with_min_p(self.min_p)
    }

    /// The sampler's stream for case number `index`, derived from `--seed` (so that sampled
    /// outputs depend neither on the strategy nor on the concurrency).
    pub(crate) fn case_rng(&self, index: usize) -> rand::rngs::Xoshiro256PlusPlus {
        use rand::SeedableRng;
        rand::rngs::Xoshiro256PlusPlus::seed_from_u64(
            self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
    }

    /// The decoding configuration of one case: its token budget, EOS 0, and the sampling,
    /// penalties, logprobs and node budget of the options.
    pub(crate) fn decode_config(&self, max_new_tokens: usize) -> DecodeConfig {
        let mut config = DecodeConfig::new(max_new_tokens)
            .with_eos([0])
            .with_sampling(self.sampling())
            .with_max_nodes(self.max_nodes);
        if let Some(r) = self.repetition_penalty {
            config = config.with_processor(RepetitionPenalty(r));
        }
        if let Some(f) = self.frequency_penalty {
            config = config.with_processor(FrequencyPenalty(f));
        }
        if let Some(p) = self.presence_penalty {
            config = config.with_processor(PresencePenalty(p));
        }
        if let Some(top) = self.logprobs {
            let mode = match self.logprobs_mode {
                LogprobsModeArg::Processed => LogprobsMode::Processed,
                LogprobsModeArg::Sampled => LogprobsMode::Sampled,
            };
            config = config.with_logprobs(LogprobsConfig::top(top).with_mode(mode));
        }
        config
    }

    /// Checks the decoding options against the model's vocabulary before any case runs.
    pub(crate) fn check_decoding(&self, vocab_size: usize) -> Result<(), String> {
        self.decode_config(1)
            .validate(vocab_size)
            .map_err(|e| format!("invalid decoding options: {e}"))
    }

    /// Whether the run decodes greedily (with no processor changing the argmax).
    pub(crate) fn is_plain_greedy(&self) -> bool {
        self.sampling().is_greedy()
            && self.repetition_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.presence_penalty.is_none()
    }
}

/// `--logprobs-mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum LogprobsModeArg {
    /// After the penalties, before temperature and truncation.
    Processed,
    /// The distribution tokens are drawn from.
    Sampled,
}
