//! Integration tests of the CPU LLaMA model: batch invariance, agreement with a from-scratch
//! reference and with the recompute adapter, the model contract, checkpoint loading, the
//! batched model against the single-sequence one, and early-exit views.

mod batch;
mod common;
mod contract;
mod early_exit;
mod invariance;
mod loading;
mod reference;
