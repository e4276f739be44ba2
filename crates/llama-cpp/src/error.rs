//! What can go wrong between this adapter and llama.cpp.

use std::path::PathBuf;

/// An error of the llama.cpp adapter. Model calls return it wrapped in a
/// [`ModelError`](decoding_core::ModelError) (reach it with
/// [`ModelError::inner`](decoding_core::ModelError::inner) and `downcast_ref`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlamaCppError {
    /// llama.cpp's backend could not be initialised.
    #[error("cannot initialise the llama.cpp backend: {0}")]
    Backend(String),
    /// The model file does not exist or is not a file.
    #[error("no model file at {0}")]
    NoModelFile(PathBuf),
    /// llama.cpp could not load the model file (not GGUF, truncated, unknown architecture, ...).
    #[error("llama.cpp cannot load {path}: {source}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What llama-cpp-2 reported.
        #[source]
        source: llama_cpp_2::LlamaModelLoadError,
    },
    /// llama.cpp could not create a context (out of memory, bad parameters).
    #[error("llama.cpp cannot create a context: {0}")]
    Context(#[source] llama_cpp_2::LlamaContextLoadError),
    /// Invalid options, rejected when the context is made.
    #[error("invalid options: {0}")]
    Options(String),
    /// `llama_decode` failed. Code 1 means no room in the KV cache for the batch.
    #[error("llama.cpp decode failed: {0}")]
    Decode(#[source] llama_cpp_2::DecodeError),
    /// The tree does not fit what the context was made for.
    #[error("{0}")]
    Capacity(String),
    /// A call out of order or with arguments that do not match the model's state.
    #[error("{0}")]
    Usage(String),
    /// A KV-cache operation llama.cpp refused (a recurrent model's memory cannot drop the
    /// end of a sequence); the sequence must be reset before it is used again.
    #[error(
        "llama.cpp refused to remove positions {from}.. of a sequence (recurrent memory cannot roll back); reset the sequence"
    )]
    Rollback {
        /// First position that should have been removed.
        from: usize,
    },
    /// A malformed tree or commit path.
    #[error(transparent)]
    Tree(#[from] decoding_core::TreeError),
    /// An unknown sequence of a batched model.
    #[error("unknown sequence {0}")]
    UnknownSequence(u64),
}

impl From<LlamaCppError> for decoding_core::ModelError {
    fn from(error: LlamaCppError) -> Self {
        decoding_core::ModelError::new(error)
    }
}
