//! Why a model could not be loaded.

use std::path::PathBuf;

/// An error while reading a configuration or a checkpoint, or making a view of a model.
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
    #[error("bad model configuration: {0}")]
    Config(String),
    /// A malformed or truncated safetensors file.
    #[error("bad safetensors data: {0}")]
    Safetensors(String),
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
    /// An early exit after a number of layers the model does not have.
    #[error("an early exit needs 1 to {available} layers (the model's), got {layers}")]
    Layers {
        /// The layers asked for.
        layers: usize,
        /// The model's layers.
        available: usize,
    },
    /// A tensor stored in a type other than f32, f16 or bf16.
    #[error("tensor `{name}` has dtype {dtype}; only f32, f16 and bf16 are supported")]
    Dtype {
        /// The tensor.
        name: String,
        /// The type in the file.
        dtype: String,
    },
}
