//! Integration tests of the conformance kit: it catches each deliberately broken model as
//! the right violation, and passes every correct model of the workspace (the toy models,
//! the CPU LLaMA, single and batched).

mod batch;
mod broken;
mod llama;
mod toys;
