//! The engine a run decodes on, chosen by `--engine`: one match arm per engine, so every
//! strategy specification runs unchanged on each.
//!
//! * `llama-cpu`: this repository's CPU LLaMA (`llama-cpu`), reading the safetensors of
//!   `--model`.
//! * `llama-cpp`: llama.cpp through `decoding-llama-cpp` (build with `--features llama-cpp`),
//!   reading `--gguf FILE`, or `--model` converted to an f32 GGUF file in the system's
//!   temporary directory when `--gguf` is absent.
//! * `candle`: the LLaMA model on candle (`decoding-candle`, build with `--features
//!   candle`), reading the safetensors of `--model`. Its CPU ops run on a pool of
//!   `--threads` threads; set `RAYON_NUM_THREADS` to the same number so that candle's
//!   matmuls split their work for that many.

#![allow(dead_code)]

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use decoding_core::{BatchLogitsModel, LogitsModel, Requirements};
use llama_cpu::Llama;
use parallel_decoding::spec::{CaseInputs, SpecError, StrategyFactory};

use super::eval_data::Case;

/// What the strategies of `factory` need beyond logits (Medusa heads run by the library
/// read hidden states, which an engine may provide only when asked), from one built for
/// `case`.
pub(crate) fn needs(factory: &dyn StrategyFactory, case: &Case) -> Result<Requirements, SpecError> {
    let strategy = factory.build(&CaseInputs {
        prompt: &case.prompt_ids,
        references: &case.references,
    })?;
    Ok(strategy.requirements())
}

/// The engines.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Engine {
    /// This repository's CPU LLaMA.
    LlamaCpu,
    /// llama.cpp (needs `--features llama-cpp`).
    LlamaCpp,
    /// candle (needs `--features candle`).
    Candle,
}

/// The engine options of a run.
#[derive(clap::Args, Debug)]
pub(crate) struct EngineArgs {
    /// The engine to decode on.
    #[arg(long, value_enum, default_value = "llama-cpu")]
    pub(crate) engine: Engine,
    /// The GGUF file for `--engine llama-cpp` (default: `--model` converted to f32).
    #[arg(long)]
    pub(crate) gguf: Option<PathBuf>,
}

/// A single-sequence model of some engine.
pub(crate) trait EngineModel: LogitsModel {
    /// Threads per forward pass.
    fn threads(&self) -> usize;
}

impl EngineModel for Llama {
    fn threads(&self) -> usize {
        Llama::threads(self)
    }
}

#[cfg(feature = "candle")]
impl EngineModel for decoding_candle::CandleLlama {
    fn threads(&self) -> usize {
        0 // its own pool, or rayon's
    }
}

#[cfg(feature = "llama-cpp")]
impl EngineModel for decoding_llama_cpp::LlamaCpp<'_> {
    fn threads(&self) -> usize {
        decoding_llama_cpp::LlamaCpp::threads(self)
    }
}

/// An engine's loaded weights, from which models (contexts) are made.
pub(crate) enum Loaded {
    LlamaCpu(Box<Llama>),
    #[cfg(feature = "llama-cpp")]
    LlamaCpp(decoding_llama_cpp::LlamaCppModel, usize),
    #[cfg(feature = "candle")]
    Candle(decoding_candle::CandleLlama),
}

impl Loaded {
    /// Loads the weights `args` name, for `threads` threads per forward pass.
    pub(crate) fn load(
        args: &EngineArgs,
        model_dir: &Path,
        threads: usize,
    ) -> Result<Self, Box<dyn Error>> {
        let started = Instant::now();
        let loaded = match args.engine {
            Engine::LlamaCpu => {
                Self::LlamaCpu(Box::new(Llama::load(model_dir)?.with_threads(threads)))
            }
            #[cfg(feature = "llama-cpp")]
            Engine::LlamaCpp => {
                let path = match &args.gguf {
                    Some(path) => path.clone(),
                    None => {
                        let name = model_dir
                            .file_name()
                            .map_or("model".into(), |n| n.to_string_lossy());
                        let path = std::env::temp_dir().join(format!("{name}-f32.gguf"));
                        let weights = decoding_llama_cpp::WeightType::F32;
                        decoding_llama_cpp::convert_dir(model_dir, &path, weights)?;
                        eprintln!("converted {} to {}", model_dir.display(), path.display());
                        path
                    }
                };
                Self::LlamaCpp(decoding_llama_cpp::LlamaCppModel::load(path)?, threads)
            }
            #[cfg(feature = "candle")]
            Engine::Candle => {
                Self::Candle(decoding_candle::CandleLlama::load(model_dir)?.with_threads(threads)?)
            }
            #[cfg(not(feature = "candle"))]
            Engine::Candle => {
                return Err(
                    "--engine candle needs the example built with --features candle".into(),
                );
            }
            #[cfg(not(feature = "llama-cpp"))]
            Engine::LlamaCpp => {
                return Err(
                    "--engine llama-cpp needs the example built with --features llama-cpp".into(),
                );
            }
        };
        eprintln!(
            "loaded {:?} in {:.0} ms ({threads} threads)",
            args.engine,
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok(loaded)
    }

    /// The vocabulary size.
    pub(crate) fn vocab_size(&self) -> usize {
        match self {
            Self::LlamaCpu(llama) => llama.config().vocab_size,
            #[cfg(feature = "llama-cpp")]
            Self::LlamaCpp(model, _) => model.vocab_size(),
            #[cfg(feature = "candle")]
            Self::Candle(model) => model.config().vocab_size,
        }
    }

    /// The llama-cpu model, if that is the engine (the draft strategy's early exit shares
    /// its weights).
    pub(crate) fn llama(&self) -> Option<&Llama> {
        match self {
            Self::LlamaCpu(llama) => Some(llama),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// A single-sequence model providing what `needs` asks for.
    pub(crate) fn model(
        &self,
        needs: Requirements,
    ) -> Result<Box<dyn EngineModel + '_>, Box<dyn Error>> {
        let _ = needs;
        let model: Box<dyn EngineModel + '_> = match self {
            Self::LlamaCpu(llama) => llama.clone(),
            #[cfg(feature = "llama-cpp")]
            Self::LlamaCpp(model, threads) => {
                Box::new(model.context(&llama_cpp_options(*threads, needs))?)
            }
            #[cfg(feature = "candle")]
            Self::Candle(model) => Box::new(model.fresh()),
        };
        Ok(model)
    }

    /// A batched model for up to `sequences` sequences, providing what `needs` asks for.
    pub(crate) fn batch(
        &self,
        needs: Requirements,
        sequences: usize,
    ) -> Result<Box<dyn BatchLogitsModel + '_>, Box<dyn Error>> {
        let _ = (needs, sequences);
        let model: Box<dyn BatchLogitsModel + '_> = match self {
            Self::LlamaCpu(llama) => Box::new(llama.batch()),
            #[cfg(feature = "llama-cpp")]
            Self::LlamaCpp(model, threads) => {
                Box::new(model.batch(&llama_cpp_options(*threads, needs), sequences)?)
            }
            #[cfg(feature = "candle")]
            Self::Candle(model) => Box::new(model.batch()),
        };
        Ok(model)
    }
}

#[cfg(feature = "llama-cpp")]
fn llama_cpp_options(threads: usize, needs: Requirements) -> decoding_llama_cpp::LlamaCppOptions {
    decoding_llama_cpp::LlamaCppOptions::new()
        .with_threads(threads)
        .with_hidden_states(needs.hidden_state)
}
