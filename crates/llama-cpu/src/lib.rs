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
//! KVM Xeon this crate was tuned on (family 6 model 207, AVX-512): f32 FMA peak 178.9
//! GFLOP/s with AVX-512 and 95.8 with AVX2 on one core; reads at 25.9 GB/s from a buffer
//! the size of the weights (L3) and 4.7 to 12 GB/s from 1 GB (DRAM, shared). The table is
//! the fastest forward seen over all runs of the example and of `eval --cost-curve` with
//! the final kernels, on a machine that other jobs kept at a load average of 12 to 16 the
//! whole time: a forward of 12 nodes or more (several milliseconds) was never seen
//! without a preemption, so those rows (and the ratios) overstate the time, and the
//! fraction of the bound is a lower bound. Rerun the example on a quiet machine.
//!
//! ```text
//!   k |     ms  ratio | GFLOP/s | flops ms  bytes ms |   bound  of bound
//!   1 |  1.432   1.00 |    26.3 |    0.211     1.377 |  memory     96%
//!   2 |  2.388   1.67 |    31.6 |    0.422     1.377 |  memory     58%
//!   4 |  3.262   2.28 |    46.3 |    0.845     1.378 |  memory     42%
//!   8 |  4.843   3.38 |    62.4 |    1.691     1.379 | compute     35%
//!  16 |  7.990   5.58 |    75.8 |    3.386     1.382 | compute     42%
//!  32 | 20.920  14.61 |    58.1 |    6.790     1.387 | compute     32%
//!  64 | 60.803  42.46 |    40.2 |   13.650     1.397 | compute     22%
//! ```
//!
//! `of bound`: the larger of `flops / peak` and `bytes / bandwidth` over the measured time,
//! flops and bytes being the useful work (`2 x` the weights per node, plus attention over
//! `512 + depth + 1` rows; the weights and the cache read once). What the tiles can reach
//! by port counts (a `VCVTPH2PS` takes two slots of the two FMA ports): the 16-row f16 tile
//! spends 16 of every 18 slots on FMAs (89%), the 8-row ones 80%, the f32 ones of
//! attention all of them; a single row is limited by memory.
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
