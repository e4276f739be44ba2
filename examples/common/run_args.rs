//! The command-line options the eval runner and the serving example share.

use std::collections::BTreeMap;
use std::path::PathBuf;

use decoding_core::{CostCurve, DecodeConfig, LogitsModel, Sampling};

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

    /// The cases to decode (the first `--limit` of them).
    pub(crate) fn cases(&self) -> Result<Vec<eval_data::Case>, String> {
        let mut cases = eval_data::load_cases(&self.cases)?.cases;
        cases.truncate(self.limit.unwrap_or(usize::MAX));
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
    pub(crate) fn sampling(&self) -> Result<Sampling, decoding_core::DecodeError> {
        Sampling::new(self.temperature, self.top_k, self.top_p)
    }
}
