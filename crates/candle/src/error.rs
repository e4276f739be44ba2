//! Why a model could not be loaded.

use std::path::PathBuf;

/// An error while reading a configuration or a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A configuration that does not parse, is inconsistent, or asks for an unsupported
    /// feature.
    #[error(transparent)]
    Config(#[from] llama_cpu::LoadError),
    /// A malformed or truncated safetensors file, as candle reports it.
    #[error("bad safetensors data: {0}")]
    Safetensors(#[source] candle_core::Error),
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("tensor `{0}` is missing from the checkpoint")]
    MissingTensor(String),
    /// A tensor whose shape disagrees with the configuration.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    Shape {
        /// The tensor.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        actual: Vec<usize>,
    },
    /// A tensor stored in a type other than f32, f16 or bf16.
    #[error("tensor `{name}` has dtype {dtype}; only f32, f16 and bf16 are supported")]
    Dtype {
        /// The tensor.
        name: String,
        /// The type in the file.
        dtype: String,
    },
    /// candle failed while preparing the weights (converting them, moving them to the
    /// device, building the RoPE tables).
    #[error("candle failed while loading the model: {0}")]
    Candle(#[from] candle_core::Error),
    /// The thread pool of [`with_threads`](crate::CandleLlama::with_threads) could not
    /// be started.
    #[error("cannot start the thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}
