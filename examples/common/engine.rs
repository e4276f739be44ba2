//! Which engine runs the model: this workspace's CPU LLaMA (`llama-cpu`), or the candle
//! adapter (`decoding-candle`, built with the root package's `candle` feature). Both load
//! the same model directory; the examples see them as `dyn LogitsModel` /
//! `dyn BatchLogitsModel`.

#![allow(dead_code)]

use std::path::Path;

use decoding_core::{BatchLogitsModel, LogitsModel};

/// The engine of `--engine`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Engine {
    /// `llama-cpu`: this workspace's CPU model (bit-exact, batch-invariant).
    #[default]
    LlamaCpu,
    /// `decoding-candle`: the LLaMA model on candle (needs the `candle` feature). Its CPU
    /// ops run on a pool of `--threads` threads; set `RAYON_NUM_THREADS` to the same number
    /// so that candle's matmuls split their work for that many.
    Candle,
}

/// A loaded model of one engine.
pub(crate) enum Loaded {
    LlamaCpu(llama_cpu::Llama),
    #[cfg(feature = "candle")]
    Candle(decoding_candle::CandleLlama),
}

impl Engine {
    /// Loads the model in `dir` with `threads` threads per forward pass.
    pub(crate) fn load(
        self,
        dir: &Path,
        threads: usize,
    ) -> Result<Loaded, Box<dyn std::error::Error>> {
        match self {
            Self::LlamaCpu => Ok(Loaded::LlamaCpu(
                llama_cpu::Llama::load(dir)?.with_threads(threads),
            )),
            #[cfg(feature = "candle")]
            Self::Candle => Ok(Loaded::Candle(
                decoding_candle::CandleLlama::load(dir)?.with_threads(threads)?,
            )),
            #[cfg(not(feature = "candle"))]
            Self::Candle => Err(
                "--engine candle needs the `candle` feature (cargo run --features candle ...)"
                    .into(),
            ),
        }
    }
}

impl Loaded {
    /// The single-sequence model.
    pub(crate) fn model(&mut self) -> &mut dyn LogitsModel {
        match self {
            Self::LlamaCpu(model) => model,
            #[cfg(feature = "candle")]
            Self::Candle(model) => model,
        }
    }

    /// The single-sequence model, owned.
    pub(crate) fn into_model(self) -> Box<dyn LogitsModel> {
        match self {
            Self::LlamaCpu(model) => Box::new(model),
            #[cfg(feature = "candle")]
            Self::Candle(model) => Box::new(model),
        }
    }

    /// The llama-cpu model, if that is the engine (the draft strategy's early exit shares
    /// its weights).
    pub(crate) fn llama(&self) -> Option<&llama_cpu::Llama> {
        match self {
            Self::LlamaCpu(model) => Some(model),
            #[cfg(feature = "candle")]
            Self::Candle(_) => None,
        }
    }

    /// A batched model with no sequences, sharing the weights.
    pub(crate) fn batch(&self) -> Box<dyn BatchLogitsModel> {
        match self {
            Self::LlamaCpu(model) => Box::new(model.batch()),
            #[cfg(feature = "candle")]
            Self::Candle(model) => Box::new(model.batch()),
        }
    }
}
