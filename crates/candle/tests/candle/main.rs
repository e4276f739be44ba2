//! Integration tests of the candle LLaMA model: tree logits against recomputing each path
//! from scratch, lossless decoding with drafted trees, the batched model against the single
//! one, the model contract, checkpoint loading, and the real pycoder-16m against llama-cpu.

mod batch;
mod common;
mod conformance;
mod contract;
mod loading;
mod real_model;
mod reference;
