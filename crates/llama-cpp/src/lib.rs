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
//! logits are within that distance (see the measurements below).
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
