//! Integration tests of the CPU LLaMA model: batch invariance, agreement with a from-scratch
//! reference and with the recompute adapter, the model contract, and checkpoint loading.

mod common;
mod contract;
mod invariance;
mod loading;
mod reference;
