//! # decoding-candle
//!
//! A LLaMA-family model on [candle](https://github.com/huggingface/candle) (the Rust ML
//! framework that mistral.rs and others build on) implementing this workspace's
//! [`LogitsModel`](decoding_core::LogitsModel) and
//! [`BatchLogitsModel`](decoding_core::BatchLogitsModel): every technique of the workspace
//! (Jacobi, lookahead, Medusa, reference drafting, their composite) and the batched serving
//! loop run on it unchanged. It loads the Hugging Face `LlamaForCausalLM` safetensors layout
//! (RMSNorm, RoPE with `rotate_half`, grouped-query attention, SwiGLU, tied or untied
//! embeddings; f32, f16 or bf16 weights, computed in f32), on the CPU by default and on CUDA
//! or Metal with the `cuda` or `metal` feature (passed through to candle; not tested here).
//!
//! Use it to decode with candle, and read it as the worked example of adapting *your own*
//! candle model: the three changes below are all it takes, and each lives in one small
//! module.
//!
//! ```
//! use decoding_core::{generate, DecodeConfig, LogitsModel, Plain};
//! use decoding_candle::CandleLlama;
//!
//! # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/pycoder-16m");
//! # if !std::path::Path::new(dir).exists() { return Ok(()); }
//! let mut model = CandleLlama::load(dir)?; // CandleLlama::load_on(dir, &device) for a GPU
//! let prompt = [1394, 2002, 12]; // token ids from the model's tokenizer
//! let config = DecodeConfig::new(8).with_eos([0]);
//! # use rand::SeedableRng;
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1); // unused when greedy
//! let out = generate(&mut model, Plain, &prompt, &config, &mut rng)?;
//! assert_eq!(out.stats.tau(), 1.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What changes from the stock candle-transformers LLaMA, and why
//!
//! The stock model (`candle_transformers::models::llama`) is built for one causal chain:
//! a causal mask, RoPE over the contiguous positions `index_pos .. index_pos + seq_len`, a
//! private cache that only grows (concatenating every step), and logits for the last
//! position only. A token tree breaks each of these. What this crate does instead:
//!
//! 1. **The mask comes from the tree's parents** (`plan.rs`). A forward over `n` nodes on
//!    top of `c` committed tokens uses an additive mask of shape `[1, 1, n, c + n]`: row `r`
//!    is 0 on the `c` cached columns and on the columns `c + m` of its ancestors `m` and
//!    itself, and -inf elsewhere (siblings and other branches). Since a parent precedes its
//!    children, row `r` is its parent's row plus one column, so the mask costs one pass.
//!    It is added to the scores before the softmax, exactly where the stock model applies
//!    its causal mask; a chain gives back the causal mask.
//! 2. **Positions are per node** (`rope.rs`). Node `n` sits at `c + depth(n)`, so siblings
//!    share a position and a node's position is not `c + n`. The cos/sin tables are
//!    *gathered* by position (`index_select`, one row per node) instead of narrowed, and
//!    candle's `rope` kernel (which takes a `[rows, head / 2]` table) applies them row by
//!    row.
//! 3. **The cache commits a path and truncates** (`cache.rs`). Each layer keeps
//!    preallocated key and value tensors; a forward writes its nodes' rows behind the
//!    committed ones in node order (`slice_set`, no concatenation), `commit(path)` gathers
//!    the kept rows (`index_select`) and writes them right behind the committed ones, and
//!    `truncate` just shortens the committed length (rows past it are only ever read
//!    masked).
//!
//! Two smaller changes make it cheap: **logits only for the rows that ask** (the final norm
//! and `lm_head` run on `index_select`ed rows: a prefill of 500 tokens needs one row of
//! logits, not 500), and **final hidden states** of those rows kept for
//! [`HiddenStates`](decoding_core::HiddenStates), which Medusa heads run by the library read.
//! Grouped-query attention runs without repeating the keys: the queries of the heads that
//! share a key/value head are stacked into one product (`[b, kv_heads, group * n, head]`).
//!
//! ## Batched serving
//!
//! [`CandleLlama::batch`] gives a [`BatchCandleLlama`]: the same weights serving many
//! sequences, one cache slot each. A forward stacks every sequence's nodes into one set of
//! rows for the projections and the MLP (each weight read once per step for the whole
//! batch), and runs attention as one padded batch `[b, heads, N, L]` (`N` the largest tree,
//! `L` the longest `committed + nodes`) with a mask per sequence that also hides the padding.
//! [`CandleLlama`] is this same forward with one sequence.
//!
//! ## Numerics: within f32 rounding, not bit-identical
//!
//! candle's CPU matmul (the `gemm` crate) picks its kernel and blocking from the matrix
//! shapes: a one-row product is a matrix-vector kernel, small products use a horizontal
//! kernel, and the reduction over keys is blocked by the key count. So a node's logits in a
//! 64-node tree differ in the last bits from the same node decoded alone, and batched from
//! single. The crate's tests hold every node of random trees to a relative error of 1e-4
//! against recomputing its path from scratch, with the same argmax; at a true near-tie of
//! the logits a drafted tree can still flip a greedy token (see the crate's measurements in
//! `docs/ENGINE_GUIDE.md`). `llama-cpu`, whose every output element is one fixed chain of
//! operations, is the bit-exact reference.
//!
//! ## Threads
//!
//! candle's CPU ops run on rayon's global pool, sized from `RAYON_NUM_THREADS` (else the
//! number of cores). [`CandleLlama::with_threads`] runs each forward on a pool of its own
//! instead.
//!
//! ## The architecture and its notation
//!
//! LLaMA (Touvron et al., 2023) with grouped-query attention (Ainslie et al., 2023); for the
//! residual stream `x` of a node at position `p`, each block (`Net::forward` in `net.rs`)
//! computes `x += W_o softmax(RoPE(W_q n, p) K^T / sqrt(d) + mask) V` with `n = RMSNorm(x)`
//! and `K`, `V` the cached rows of the sequence plus this forward's, then
//! `x += W_down (SiLU(W_gate n) * W_up n)` with `n = RMSNorm(x)`; the logits are
//! `W_out RMSNorm(x)`. The tree mask is the topology-aware causal mask of SpecInfer (Miao
//! et al., 2024) and Medusa (Cai et al., 2024). The configuration is `llama-cpu`'s
//! [`LlamaConfig`] (the HF `config.json` fields, validated once).

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
