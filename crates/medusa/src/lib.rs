//! # medusa
//!
//! Medusa decoding (Cai et al., 2024, *Medusa: Simple LLM Inference Acceleration Framework
//! with Multiple Decoding Heads*; reference implementation FasterDecoding/Medusa) for any
//! model that implements decoding-core's [`LogitsModel`](decoding_core::LogitsModel).
//!
//! Extra *heads* on a frozen base model read its final hidden state at one position and each
//! guess a token further ahead. Their top candidates form a tree below the pending token,
//! which the base model verifies in one forward pass with tree attention; every accepted
//! node is a token gained.
//!
//! **When to use it.** You have trained Medusa heads for your model (or your engine computes
//! such heads), and you want more than one token per forward pass on any text, not only on
//! text that repeats the context (for that, see the `reference` and `lookahead` crates, and
//! decoding-core's `Composite` to combine them with Medusa).
//!
//! ```
//! use std::sync::Arc;
//! use decoding_core::{generate, DecodeConfig, Plain};
//! use decoding_testkit::toy::HashModel;
//! use medusa::{HeadSource, HeadWeights, Medusa, MedusaConfig, MedusaHeads, ResBlock};
//! use ndarray::{Array1, Array2};
//!
//! // A toy model exposing 8-wide hidden states, and two (untrained) heads over it.
//! let (vocab, d) = (16, 8);
//! let mut model = HashModel::new(vocab, 7).with_hidden_size(d);
//! let head = |seed: f32| {
//!     let w = Array2::from_shape_fn((d, d), |(i, j)| ((i * 7 + j) as f32 * seed).sin());
//!     let out = Array2::from_shape_fn((vocab, d), |(i, j)| ((i * 3 + j) as f32 * seed).cos());
//!     HeadWeights::new(vec![ResBlock::new(w, Array1::zeros(d)).unwrap()], Some(out))
//! };
//! let heads = Arc::new(MedusaHeads::new(vec![head(0.3), head(0.7)], None)?);
//!
//! let medusa = Medusa::new(HeadSource::Library(heads), MedusaConfig::default())?;
//! let config = DecodeConfig::new(40);
//! # use rand::SeedableRng;
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
//! let fast = generate(&mut model, medusa, &[1, 2, 3], &config, &mut rng)?;
//! let plain = generate(&mut model, Plain, &[1, 2, 3], &config, &mut rng)?;
//! assert_eq!(fast.tokens, plain.tokens); // exact acceptance: identical to greedy
//! assert!(fast.stats.forward_passes() <= plain.stats.forward_passes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The paper's notation in this crate
//!
//! | paper | here |
//! | --- | --- |
//! | head `k` (1-based), predicts `x_{t+k+1}` from `h_t` | head `k - 1` (0-based, as in [`MedusaHeads`] and decoding-core's [`HeadLogits`](decoding_core::HeadLogits)): head `k` predicts `t + k + 2` |
//! | `p_t^{(k)} = softmax(W_2^{(k)} (SiLU(W_1^{(k)} h_t) + h_t))` | [`MedusaHeads::logits`]: a [`ResBlock`] `h + SiLU(W h + b)` then the output projection, keys `medusa_head.{k}.0.linear.{weight,bias}` and `medusa_head.{k}.1.weight` |
//! | `h_t`, the last hidden state | the final (post-norm) hidden state at the *last accepted node*: the node whose logits produced the bonus token, which is the root (pending token) of the next tree |
//! | tree of top-`s_k` predictions (Cartesian product) | [`CandidateTree::cartesian`] |
//! | sparse tree from top-k accuracies, chosen greedily | [`CandidateTree::sparse`] from [`RankAccuracies`] (measured by [`RankAccuracyMeter`]); the paper's `mc_sim_7b_63` is [`CandidateTree::mc_sim_7b_63`] |
//! | typical acceptance, `p(x) > min(epsilon, delta exp(-H(p)))` | [`Acceptance::TypicalLossy`] with [`TypicalAcceptance`] (lossy, opt-in) |
//!
//! **Indices.** The hidden state `h_t` of the last accepted node at position `t` gave, through
//! the base model's logits, the bonus token at `t + 1`: the new pending token, root of the
//! next tree (depth 0). Head `k` guesses the token at `t + k + 2`, which sits at depth `k + 1`
//! of that tree. So a tree of depth `D` needs `D` heads; a deeper static tree is an error
//! ([`MedusaError::TreeTooDeep`]), not an index panic. On the first step there is no hidden
//! state yet and the tree is the root alone (the prefill pass yields one token, as in plain
//! decoding).
//!
//! ## Trees
//!
//! * [`TreePolicy::Static`]: the same (head, rank) paths every step. [`CandidateTree`] builds
//!   the paper's trees: Cartesian products of each head's top candidates, sparse trees chosen
//!   greedily by expected acceptance from measured rank accuracies ([`RankAccuracies`], as in
//!   the `medusa_topk_acc_heldout.json` the Medusa training scripts write, or measured on your
//!   model and data by [`RankAccuracyMeter`]), and the paper's 64-node `mc_sim_7b_63`.
//! * [`TreePolicy::Dynamic`] (the default): each step, the paths of highest estimated
//!   acceptance under *this step's* head probabilities, chosen best-first from all ranks.
//!   Confident heads give deep narrow trees, unsure ones wide shallow trees. Two additions of
//!   this library, both only re-ordering or cutting the heads' own candidates:
//!   * the [`ContextPrior`] re-weights a candidate by whether it already followed its parent
//!     token in the context. Medusa-1 heads guess every position independently of the
//!     tokens drafted before it; the prior gives the tree that missing dependence;
//!   * [`DynamicTree::with_cost`] sizes each step's tree to maximise expected tokens per unit
//!     of forward time on a measured [`CostCurve`](decoding_core::CostCurve): on hardware
//!     where a 64-node tree costs many single steps (a small model on a CPU), only the nodes
//!     that pay for themselves are drafted.
//!
//! ## What this crate does differently from the reference implementation
//!
//! * Heads run once per step, on the one node that needs them (the last accepted node), not
//!   on every node of the tree; a dynamic tree evaluates a head only once a chosen path
//!   reaches its depth, a static tree only the heads its depth uses. Their output
//!   projections, most of their cost, can be kept in bfloat16
//!   ([`MedusaHeads::with_bf16_outputs`]).
//! * Verification is decoding-core's exact verifier: token-identical to greedy decoding, and
//!   identically distributed under sampling (no silent switch to greedy); typical
//!   acceptance is a separate, explicitly lossy option ([`Strategy::is_lossless`] says
//!   `false`).
//! * Trees are validated against the number of heads; stop conditions inside an accepted
//!   chunk are honoured by decoding-core's decoder.
//!
//! [`Strategy::is_lossless`]: decoding_core::Strategy::is_lossless

mod accuracy;
mod candidates;
mod context;
mod error;
mod heads;
mod load;
mod ranking;
mod stats;
mod strategy;
mod typical;

pub use accuracy::{RankAccuracies, RankAccuracyMeter};
pub use candidates::{CandidateNode, CandidateTree, MAX_CANDIDATE_NODES, MC_SIM_7B_63};
pub use context::ContextPrior;
pub use error::MedusaError;
pub use heads::{HeadScratch, HeadWeights, MedusaHeads, ResBlock};
pub use stats::MedusaStats;
pub use strategy::{Acceptance, DynamicTree, HeadSource, Medusa, MedusaConfig, TreePolicy};
pub use typical::TypicalAcceptance;
