//! # decoding-candle
//!
//! (docs follow)

mod batch;
mod cache;
mod error;
mod model;
mod net;
mod plan;
mod rope;
mod sequences;
mod weights;

pub use batch::BatchCandleLlama;
pub use error::LoadError;
pub use llama_cpu::LlamaConfig;
pub use model::CandleLlama;
