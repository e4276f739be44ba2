//! # lookahead
//!
//! Lookahead decoding (Fu, Bailis, Stoica and Zhang, "Break the Sequential Dependency of LLM
//! Inference Using Lookahead Decoding", ICML 2024): lossless parallel decoding without a draft
//! model. One forward pass runs two branches side by side:
//!
//! * the **lookahead branch**, a 2D window of `W` columns and `N - 1` levels of Jacobi
//!   iteration (see the `jacobi` crate) that keeps running ahead of the text and, as a side
//!   product, produces n-grams the model is likely to write soon;
//! * the **verification branch**, up to `G` of those n-grams, taken from a pool keyed by the
//!   pending token, checked against the model's own predictions.
//!
//! Every accepted candidate token is a token plain decoding would have produced, so the output
//! is exactly plain greedy decoding (or, under sampling, distributed exactly as plain sampling:
//! the drafts are deterministic and `decoding_core`'s residual rule verifies them).
//!
//! Use it when there is no draft model and no reference text: it learns its drafts from the
//! model itself. With a prompt worth copying from, turn on the prompt pool
//! ([`LookaheadConfig::with_prompt_pool`], the paper's "prompt as reference" variant).
//!
//! ## The window
//!
//! With the pending token `r` at position `P`, the cell of level `l`, column `i` guesses the
//! token at `P + l + i`. Each step the top level's predictions become the new top level, every
//! level moves down one, and the n-gram of each column (its level-0 token and the cells above
//! it, plus the new prediction) goes to the pool. For `W = 4`, `N = 4`:
//!
//! ```text
//! position   P    P+1   P+2   P+3   P+4   P+5
//! level 2               a2    b2    c2    d2     top level: asks for logits
//! level 1          a1   b1    c1    d1
//! level 0    r     b0   c0    d0                 (a0 is the pending token r)
//! ```
//!
//! ## One pass, one tree
//!
//! The paper's attention mask (reference implementation: `j_make_causal_mask_multilevel`
//! in `lade/models/llama.py`) lets the level-`l` token of column `i` attend to the committed
//! context, to level 0 up to column `i` (the pending token included), and to the column-`i`
//! token of every level between, itself last; its position id is `P + l + i`. That is exactly
//! the ancestor set of a node in a tree where level 0 is a chain from the root and each
//! column's higher levels hang below its level-0 token, at tree depth `l + i`:
//!
//! ```text
//! r ─┬─ b0 ─┬─ c0 ─┬─ d0 ── d1 ── d2           lookahead branch: column d
//!    │      │      └─ c1 ── c2                                   column c
//!    │      └─ b1 ── b2                                          column b
//!    ├─ a1 ── a2                                                 column a
//!    ├─ x1 ── x2 ── x3                         verification branch: pool[r] = (x1 x2 x3),
//!    └─ y1 ── y2 ── y3                                                        (y1 y2 y3)
//! ```
//!
//! So the two branches are one [`TokenTree`](decoding_core::TokenTree) for any engine that
//! implements `decoding_core`'s tree contract: no model-specific mask code. Identical
//! siblings are stored once (a candidate that starts like a window column shares its nodes,
//! and its logits), which [`LookaheadWindow`] tracks by keeping each cell's node.
//!
//! ## Notation
//!
//! | paper | code |
//! | --- | --- |
//! | `W`, `N`, `G` | [`LookaheadConfig::window`], [`ngram`](LookaheadConfig::ngram), [`guesses`](LookaheadConfig::guesses) |
//! | 2D window, Jacobi trajectories | [`LookaheadWindow`], one `jacobi::Trajectory` per level |
//! | n-gram pool `C` | [`NgramPool`] (LRU, `G` per key), [`SharedPool`] across sequences |
//! | verification branch | the pool's continuations of the pending token, chains from the root |
//! | verification | `decoding_core::verify_tree` (the trait's default [`verify`](decoding_core::Strategy::verify)) |
//!
//! ## What this implementation does differently from the reference
//!
//! * The bonus token is emitted on a full match too (the reference drops it).
//! * Several EOS ids and stop sequences (through `decoding_core::DecodeConfig`), honoured
//!   inside accepted chunks.
//! * Window initialisation is deterministic and seeded ([`jacobi::Init`]); new cells can
//!   also be guessed from the pool ([`Fill::Pool`], default).
//! * The window is aligned by absolute positions, so it stays aligned however many tokens a
//!   step accepts (the reference always shifts by one).
//! * Only the top level and the candidates ask for logits ([`WindowLogits::Top`]).
//! * The pool also learns the output's n-grams (verified ones), and can be shared.
//! * Candidates are not capped at `N - 1` tokens: each may run on through the pool
//!   ([`LookaheadConfig::with_extension`]): the token after a draft's last `N - 1` tokens is
//!   the last token of the most recent pool n-gram starting with them, an order-`N` walk that
//!   follows repeated text as far as it repeats. Extensions only use the node budget the
//!   window and the candidates leave.
//! * The tree is sized to a node budget; a chains-only engine gets one chain per step (the
//!   freshest candidate, else a Jacobi step).
//! * No per-step mask construction, sans-IO, any batch size.
//!
//! ## Example
//!
//! ```
//! use decoding_core::{generate, DecodeConfig, Plain};
//! use decoding_testkit::toy::InductionModel;
//! use lookahead::{Lookahead, LookaheadConfig};
//! # use rand::SeedableRng;
//!
//! let mut model = InductionModel::induction(40, 9);
//! let prompt = [1, 2, 3, 4, 5, 6, 1, 2, 3];
//! let la = LookaheadConfig::new(7, 5, 7).with_prompt_pool(true);
//! let config = DecodeConfig::new(64).with_max_nodes(la.max_nodes());
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
//! let plain = generate(&mut model, Plain, &prompt, &config, &mut rng).unwrap();
//! let out = generate(&mut model, Lookahead::new(la).unwrap(), &prompt, &config, &mut rng).unwrap();
//! assert_eq!(out.tokens, plain.tokens);
//! println!("tau {:.2}, nodes/step {:.1}", out.stats.tau(), out.stats.draft_nodes_per_step());
//! ```

mod config;
mod pool;
mod strategy;
mod window;

pub use config::{ConfigError, Fill, LookaheadConfig, WindowLogits};
pub use pool::{NgramPool, SharedPool};
pub use strategy::{Lookahead, LookaheadStats, POOL_SOURCE};
pub use window::{CellContext, LookaheadWindow, WINDOW_SOURCE};
