//! Integration tests of the llama.cpp adapter, on llama.cpp itself: tiny random checkpoints
//! converted to GGUF (trees and commits against recomputation, the contract's errors, the
//! batched model, the converter against this repository's CPU model) and pycoder-16m
//! (tokenizer, greedy, every strategy against plain greedy, batched decoding).

mod batch;
mod common;
mod conformance;
mod contract;
mod convert;
mod pycoder;
mod trees;
