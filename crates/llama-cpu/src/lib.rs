//! # llama-cpu
//!
//! A small, clear CPU implementation of a LLaMA-architecture transformer (the Hugging Face
//! `LlamaForCausalLM` layout: RMSNorm, rotary positions with `rotate_half`, grouped-query
//! attention, SwiGLU, tied or untied output embeddings) that implements the
//! [`LogitsModel`](decoding_core::LogitsModel) contract of this workspace. Use it to decode
//! real checkpoints with any strategy of the workspace, and read it as the reference for
//! implementing the contract in your own engine.
//!
//! ```
//! use decoding_core::{generate, DecodeConfig, LogitsModel, Plain};
//! use llama_cpu::Llama;
//!
//! # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/pycoder-16m");
//! # if !std::path::Path::new(dir).exists() { return Ok(()); }
//! let mut model = Llama::load(dir)?.with_threads(2);
//! let prompt = [1394, 2002, 12]; // token ids from the model's tokenizer
//! let config = DecodeConfig::new(8).with_eos([0]);
//! # use rand::SeedableRng;
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1); // unused when greedy
//! let out = generate(&mut model, Plain, &prompt, &config, &mut rng)?;
//! assert_eq!(out.stats.tau(), 1.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## How it implements the contract
//!
//! * **Tree attention.** A forward evaluates every node of the [`TokenTree`] at position
//!   `committed_len + depth(node)`; node `n` attends to the committed keys and values and to
//!   those of its root-to-`n` path (ancestors and itself), in position order, never to other
//!   branches. No mask matrix is built: the visible rows are listed from the parent links.
//! * **KV cache.** Each layer keeps the committed rows, then one row per node of the last
//!   forward, in node order. `commit(path)` moves the rows of the path right behind the
//!   committed ones and drops the rest.
//! * **Logits on demand.** The final norm and the output projection run only for the nodes
//!   that asked for logits; their final hidden states stay readable through
//!   [`HiddenStates`](decoding_core::HiddenStates) (for Medusa heads).
//! * **Batch invariance.** A node's logits are bit-identical whatever else is in the tree and
//!   however the cache was filled (one prefill or many commits), and for any thread count:
//!   every output element is computed by one fixed sequence of float operations that depends
//!   only on that row's inputs (per-row dot products with a fixed accumulation order; no
//!   GEMM whose blocking changes with the batch). Greedy decoding with any drafting strategy
//!   therefore reproduces plain greedy decoding exactly, with no near-tie exceptions.
//! * **Threads.** [`Llama::with_threads`] splits the projections by output columns and the
//!   attention by heads between scoped threads started inside each forward pass. There is
//!   no global thread pool.
//!
//! ## Batched serving
//!
//! [`Llama::batch`] gives a [`BatchLlama`]: the same weights (shared, not copied) serving
//! many sequences, each with its own KV cache, through
//! [`BatchLogitsModel`](decoding_core::BatchLogitsModel) and
//! [`decode_batch`](decoding_core::decode_batch). One forward pass stacks the nodes of every
//! sequence's tree: the projections (QKV, O, MLP, output) run once over all the rows, so the
//! weights are read once per step for the whole batch, while attention runs per sequence
//! against its own cache and the node's ancestors. [`Llama`] is this same forward with one
//! sequence (one code path; `net.rs` is the forward, `sequence.rs` one sequence's state), so
//! a node's logits and hidden state are bit-identical batched or alone, and every sequence
//! of a batch decodes exactly as it would alone.
//!
//! ## Kernels and the roofline
//!
//! A forward over `k` nodes reads every weight once and does `k` multiply-adds with it, so
//! a small tree is limited by memory (the weights, 31.5 MB in f16 for pycoder-16m) and a
//! large one by the multiply-adds. The products run on 512-bit AVX-512 tiles where the CPU
//! has them (chosen at run time, safely, through the `pulp` crate), and on portable tiles
//! (256-bit AVX2 + FMA with the workspace's x86-64-v3 build) elsewhere; [`kernels`] says
//! which, and `LLAMA_CPU_KERNELS=portable` forces the portable ones. Both compute every
//! element as the same chain of fused multiply-adds, so the logits are the same bits.
//!
//! `cargo run --release -p llama-cpu --example roofline` measures this machine's bounds and
//! the forward over a chain of `k` nodes on a 512-token cache, one thread. On the 2-core
//! KVM AMD EPYC (Zen 5, family 26, AVX-512 with full-width FMAs) of 2026-12-07, quiet (load
//! average 0.4): f32 FMA peak 281.1 GFLOP/s with AVX-512 and 139.6 with AVX2 on one core;
//! reads at 178.7 GB/s from L2, 49.6 GB/s from a buffer the size of the weights (mostly L3,
//! 32 MB) and 32.5 GB/s from 1 GB (DRAM, shared with other machines: k = 1 ranged 0.90 to
//! 1.02 ms over three runs that hour).
//!
//! ```text
//!   k |      ms ratio | GFLOP/s   GB/s | flops ms bytes ms |   bound  of bound
//!   1 |   1.018  1.00 |    37.1   35.0 |    0.134    0.719 |  memory       71%
//!   2 |   1.004  0.99 |    75.2   35.5 |    0.269    0.719 |  memory       72%
//!   4 |   1.048  1.03 |   144.2   34.1 |    0.538    0.720 |  memory       69%
//!   8 |   1.621  1.59 |   186.6   22.1 |    1.076    0.720 | compute       66%
//!  16 |   3.119  3.06 |   194.2   11.5 |    2.155    0.722 | compute       69%
//!  32 |   6.036  5.93 |   201.2    6.0 |    4.321    0.724 | compute       72%
//!  64 |  11.940 11.72 |   204.5    3.0 |    8.687    0.729 | compute       73%
//! ```
//!
//! `of bound`: the larger of `flops / peak` and `bytes / bandwidth` over the measured time,
//! flops and bytes being the useful work (`2 x` the weights per node, plus attention over
//! `512 + depth + 1` rows; the weights and the cache read once). Up to 4 nodes the forward
//! costs what reading the weights costs; from 8 on the f16 tiles (8 rows x 2 panels: 16 FMAs
//! per two `VCVTPH2PS`) run at 66-73% of the FMA peak, the rest of the time being
//! attention (about a fifth at k = 16: the softmax and two products per key/value head) and
//! the per-node work of norms, RoPE and SwiGLU. The tiles' prefetch of the next panel
//! group (issue 17), same example, old and new kernels run alternately twice: k = 1 1.26 /
//! 1.18 -> 0.85 / 0.91 ms, 8 2.12 / 2.21 -> 1.64 / 1.59, 16 3.97 / 4.02 -> 3.12 / 3.03, 64
//! 14.8 / 14.9 -> 12.1 / 11.9. The ratios to k = 1 hardly moved (k = 8 1.7-1.9x, 16 3.3-3.7x)
//! because k = 1 gained as much as the rest. On the KVM Xeon this crate was first tuned on
//! (family 6 model 207; 179 GFLOP/s AVX-512 peak, 26 GB/s from L3) the old kernels gave
//! 1.37 ms at k = 1 and 2.16x / 4.50x at k = 8 / 16.
//!
//! ## Early exit
//!
//! [`Llama::early_exit`] gives a model that runs only the first `L` blocks, then the final
//! norm and the (tied) output projection: a drafter made of the target's own weights
//! (shared, not copied), for self-speculative decoding (LayerSkip; Draft & Verify). It has
//! its own cache, holding `L` layers, and is an ordinary [`LogitsModel`]: a node's logits
//! are a function of its path alone, bit for bit, as for the whole model.
//!
//! ## The architecture and its notation
//!
//! LLaMA (Touvron et al., 2023, "LLaMA: Open and Efficient Foundation Language Models") with
//! grouped-query attention (Ainslie et al., 2023). For the residual stream `x` of a node at
//! position `p`, each block computes (`Net::block` in `net.rs`)
//!
//! ```text
//! n = RMSNorm(x)                        rms_norm: w * x / sqrt(mean(x^2) + eps)
//! q, k, v = W_q n, W_k n, W_v n         one stacked projection, `qkv`
//! q, k = RoPE(q, p), RoPE(k, p)         Rope::apply, non-interleaved halves (rotate_half)
//! x = x + W_o softmax(q K^T / sqrt(d)) V    K, V: the visible rows of the cache; query head
//!                                           h reads key/value head h / (heads / kv_heads)
//! n = RMSNorm(x)
//! x = x + W_down (SiLU(W_gate n) * W_up n)  SwiGLU (Shazeer, 2020)
//! ```
//!
//! and the logits are `W_out RMSNorm(x)` (`W_out` = `lm_head`, or the embedding when tied).
//! Tree attention is the token-tree verification of SpecInfer (Miao et al., 2024) and Medusa
//! (Cai et al., 2024): their topology-aware causal mask is here the list of a node's
//! ancestors, read from the tree's parent links.
//!
//! Weights are read from safetensors in f32, f16 or bf16 and computed in f32. Loading
//! reports a missing tensor, a wrong shape, an unsupported dtype, a truncated file or a bad
//! configuration as a [`LoadError`].
//!
//! [`TokenTree`]: decoding_core::TokenTree
//! [`LogitsModel`]: decoding_core::LogitsModel

#[cfg(target_arch = "x86_64")]
mod avx512;
mod batch;
mod cache;
mod config;
mod error;
mod gemm;
mod math;
mod model;
mod net;
mod sequence;
mod team;
mod weights;

pub use batch::BatchLlama;
pub use config::LlamaConfig;
pub use error::LoadError;
pub use gemm::kernels;
pub use model::Llama;
