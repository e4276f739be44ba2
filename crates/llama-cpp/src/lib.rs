//! # decoding-llama-cpp
//!
//! Every decoding technique of this workspace inside llama.cpp: [`LlamaCpp`] implements
//! [`LogitsModel`](decoding_core::LogitsModel) and [`LlamaCppBatch`] implements
//! [`BatchLogitsModel`](decoding_core::BatchLogitsModel) over llama.cpp, through the safe
//! `llama-cpp-2` bindings (which build llama.cpp from its bundled source: cmake and libclang
//! are needed). [`convert_dir`] writes a Hugging Face LLaMA checkpoint as a GGUF file, so
//! pycoder-16m (or any HF LLaMA with a byte-level BPE tokenizer) runs on llama.cpp.
//!
//! Use it to run Jacobi, lookahead, Medusa, inference with reference or their composite on
//! the engine most CPUs run, with token-identical greedy output.
//!
//! ```no_run
//! use decoding_core::{generate, DecodeConfig, Plain};
//! use decoding_llama_cpp::{LlamaCppModel, LlamaCppOptions, WeightType};
//! # use rand::SeedableRng;
//!
//! decoding_llama_cpp::convert_dir("assets/pycoder-16m", "/tmp/pycoder.gguf", WeightType::F32)?;
//! let model = LlamaCppModel::load("/tmp/pycoder.gguf")?;
//! let mut llama = model.context(&LlamaCppOptions::new().with_threads(1))?;
//! let config = DecodeConfig::new(64).with_eos([0]);
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
//! let out = generate(&mut llama, Plain, &[1394, 2002, 12], &config, &mut rng)?;
//! println!("{:?}", out.tokens);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## How a token tree maps onto llama.cpp
//!
//! * **Batch entries and sequence ids.** A forward is one `llama_decode`. Each tree node is
//!   one batch entry at position `committed + depth`. Each root-to-leaf branch of the tree
//!   gets a llama.cpp sequence id, and a node carries the ids of every branch through it
//!   (leaves are numbered depth first, so those ids are one contiguous slice). llama.cpp
//!   masks attention by the *first* sequence id of an entry and by position, so a node sees
//!   the cells of one branch through it up to its own position: the committed context, its
//!   ancestors and itself, never a sibling. That is exact tree attention; fewer ids than
//!   leaves cannot be. Logits are requested only for the nodes that ask for them.
//! * **The committed context** lives in the cells of one *canonical* sequence id. Before a
//!   forward, `llama_memory_seq_cp` tags those cells with every other branch id of the tree
//!   (it copies no data). Branch 0 (first children from the root) uses the canonical id.
//! * **Commit** of a path ending at node `a`: keep the id `k` of the first branch through
//!   `a` (`llama_memory_seq_keep(k)` when the context holds one sequence; otherwise
//!   `llama_memory_seq_rm` of every other id of the tree), then remove `k`'s cells past the
//!   path. `k` now holds exactly the committed context plus the path, and becomes the
//!   canonical id: no data moves, and an empty commit drops all the tree's nodes.
//!   `truncate` removes the canonical id's cells from a position on.
//! * **The pending token.** As the decoder requires, the last emitted token is not in the
//!   cache: it is the root of the next tree.
//! * **Several sequences** ([`LlamaCppBatch`]): slot `s` owns ids `s * b .. (s + 1) * b`
//!   (`b` = [`LlamaCppOptions::with_branches`]); all share one unified KV cache (llama.cpp
//!   accepts entries with several sequence ids only there) and one `llama_decode` per step.
//! * **Chains only** ([`TreeSupport::ChainsOnly`](decoding_core::TreeSupport)): one id per
//!   sequence, chains appended and cut back with `llama_memory_seq_rm`, for models whose
//!   memory has no per-cell mask (recurrent layers; trees are refused for them).
//! * **Hidden states** ([`LlamaCppOptions::with_hidden_states`]): llama.cpp's embeddings
//!   output (the final norm's output, what Medusa heads read); llama.cpp then outputs every
//!   node.
//! * **Errors, never panics.** Trees that do not fit (context, KV cells, sequence ids),
//!   tokens outside the vocabulary, misuse (commit without forward, bad path), a failed
//!   `llama_decode` (no KV slot), a missing or bad model file, bad options: all are
//!   [`LlamaCppError`]s, checked before llama.cpp is called where llama.cpp would abort,
//!   and a failed call leaves the committed context as it was.
//!
//! ## Exactness
//!
//! Contexts use an f32 KV cache and no flash attention by default. A node's logits are then
//! the f32 function of its path, but not bit for bit: llama.cpp's CPU matrix products take
//! `ggml_vec_dot` for a batch of one row and tinyBLAS for more (different summation
//! orders), and its softmax and attention-value sums group KV cells by index, so which cells
//! hold the context (rejected drafts leave holes that later nodes fill) changes the last
//! bits. The tests bound the difference (2e-4 on logits of size ~10) and require identical
//! argmax except at such near-ties; on the real model the difference shows only where two
//! logits are within that distance (on the dev set, none: see the measurements below).
//!
//! ## Measured: our drafting against llama.cpp's own, on llama.cpp
//!
//! The 70 dev cases, pycoder-16m as an f32 GGUF ([`convert_dir`]), llama.cpp built by
//! `llama-cpp-sys-2` (x86-64-v3 features: AVX2, FMA, F16C; no OpenMP), one AMD EPYC Zen 5
//! core (2026-12-07, quiet, pinned), runs interleaved in one session. Ours: `eval --engine
//! llama-cpp --threads T --strategy S --expected assets/eval/dev_greedy.json`. llama.cpp's
//! prompt lookup (`examples/lookup`: its `common_ngram_cache` n-gram drafts, n_draft 16,
//! greedy) cannot be built from the bundled source (the crate ships no examples), so a small
//! harness ran its loop, linked against the same llama.cpp source and build flags and with
//! the same context settings (f32 KV cache, no flash attention); n_draft 0 is llama.cpp's
//! plain greedy in the same loop. Tokens per wall-clock second, prefill included; every
//! output of every run equals `dev_greedy.json` (70/70, so llama.cpp f32 greedy agrees with
//! the independent implementation on every dev case).
//!
//! | threads | run | tau | nodes/step | tok/s | vs greedy |
//! | --- | --- | --- | --- | --- | --- |
//! | 1 | ours: greedy (two runs bracketing) | 1.000 | 1 | 319.7 / 320.8 | 1.00x |
//! | 1 | llama.cpp greedy (two runs) | 1.000 | 1 | 330.8 / 314.4 | 1.01x |
//! | 1 | ours: `reference` (fixed 8-node budget) | 2.710 | 8.0 | 271.9 | 0.85x |
//! | 1 | ours: `reference:cost=auto --measure-cost` | 1.905 | 2.3 | 388.7 | **1.21x** |
//! | 1 | llama.cpp `lookup`, n_draft 16 | 2.275 | 5.2 | 329.1 | 1.02x |
//! | 2 | ours: greedy (two runs) | 1.000 | 1 | 426.1 / 426.9 | 1.00x |
//! | 2 | llama.cpp greedy (two runs) | 1.000 | 1 | 426.1 / 425.4 | 1.00x |
//! | 2 | ours: `reference` | 2.710 | 8.0 | 364.7 | 0.86x |
//! | 2 | ours: `reference:cost=auto --measure-cost` | 1.973 | 2.4 | 480.9 | **1.13x** |
//! | 2 | llama.cpp `lookup`, n_draft 16 | 2.275 | 5.2 | 441.3 | 1.04x |
//!
//! (llama.cpp's lookup: 20038 tokens drafted, 31% accepted.) Cost-aware reference drafting
//! beats llama.cpp's own lookup by 18% at one thread and 9% at two, on the same engine. Both
//! gain little because llama.cpp's forward is steep on this CPU (`eval --engine llama-cpp
//! --cost-curve --threads 1`, chain over a 512-token cache: 1 node 2.12 ms, 2 nodes 1.68x, 4
//! 2.92x, 8 3.84x, 16 5.83x, 64 17.1x): a fixed 8-node tree costs more than its tau of 2.7
//! returns, lookup's 5-node drafts about break even, and cost-aware trees keep 2-3 nodes.
//! Without the prompt's prefill (155 ms a case at one thread) the cost-aware reference
//! decodes 1.35x faster than greedy. On the KVM Xeon of an earlier session the curve was
//! flatter (8 nodes 1.85x) and the same strategy gave 1.46-1.73x in CPU time.
//!
//! ## Unsafe code
//!
//! None: `llama-cpp-2` is the safe wrapper. Two of its functions assume what this crate
//! checks before calling them: `LlamaBatch::add` writes sequence ids without checking the
//! buffer's width (the batch is reallocated for the widest node first), and the KV-cache
//! operations abort inside llama.cpp on an id outside the context (ids come only from each
//! sequence's own range).
//!
//! ## GGUF conversion
//!
//! [`convert_dir`] / [`to_gguf`]: the LLaMA architecture (`general.architecture = llama`),
//! HF tensor names mapped to llama.cpp's, `W_q` and `W_k` rows permuted from HF's
//! half-split RoPE layout to llama.cpp's interleaved one, tied embeddings kept tied (no
//! `output.weight`), the byte-level BPE tokenizer as `gpt2` with the `gpt-2` pre-tokenizer,
//! id 0 a control token and the EOS, no automatic BOS. `cargo run -p decoding-llama-cpp
//! --example prompts` writes eval prompts as text for llama.cpp's own programs.

mod batch;
mod branches;
mod convert;
mod engine;
mod error;
mod gguf;
mod model;
mod options;
mod single;

pub use batch::LlamaCppBatch;
pub use convert::{ConvertError, WeightType, convert_dir, to_gguf};
pub use error::LlamaCppError;
pub use model::LlamaCppModel;
pub use options::{KvPrecision, LlamaCppOptions, MAX_SEQUENCE_IDS};
pub use single::LlamaCpp;
