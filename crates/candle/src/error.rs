//! Why a model could not be loaded.

/// An error while reading a configuration or a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// An unreadable file, a bad configuration, or a checkpoint tensor that is missing, of
    /// the wrong shape or of an unsupported dtype: the same checks, and the same errors, as
    /// `llama-cpu` (the layout is the same).
    #[error(transparent)]
    Checkpoint(#[from] llama_cpu::LoadError),
    /// A malformed or truncated safetensors file, as candle reports it.
    #[error("bad safetensors data: {0}")]
    Safetensors(#[source] candle_core::Error),
    /// candle failed while preparing the weights (converting them, moving them to the
    /// device, building the RoPE tables).
    #[error("candle failed while loading the model: {0}")]
    Candle(#[from] candle_core::Error),
    /// The thread pool of [`with_threads`](crate::CandleLlama::with_threads) could not
    /// be started.
    #[error("cannot start the thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}
