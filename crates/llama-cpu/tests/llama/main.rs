//! Integration tests of the CPU LLaMA model: batch invariance, agreement with a from-scratch
//! reference and with the recompute adapter, the model contract, checkpoint loading, and the
//! batched model against the single-sequence one.

mod batch;
mod common;
mod contract;
mod invariance;
mod loading;
mod reference;
