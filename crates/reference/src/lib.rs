//! # reference
//!
//! Inference with reference: when the output repeats spans of its input (retrieved
//! documents, the code being edited, earlier turns, its own earlier output), copy those spans
//! as drafts and verify them in one forward pass. Lossless: verification is
//! [`decoding_core`]'s exact verifier, so greedy output is token-identical to plain greedy
//! decoding and sampled output is identically distributed.
//!
//! Use it for retrieval-augmented answers, code edits, summaries and chat, and for small
//! models whose greedy output loops; it needs no extra model and no training. Three modes:
//!
//! * [`Mode::Suffix`] (the default): the *longest* suffix of the context (prompt and output)
//!   found in the references or earlier in the context, with no cap on its length, found in
//!   amortised O(1) per token by suffix automata ([`Matcher`]); drafts are a trie of the
//!   continuations of *every* occurrence of it and of shorter suffixes, weighted by
//!   frequency (SuffixDecoding's scoring), cut by a probability threshold and a node budget,
//!   and as deep as the match is long. A context occurrence that runs into the end of a loop
//!   continues around it. Nodes are ranked by an acceptance estimate learned from
//!   verification (from how long the copy has held and how much the sources agree); given
//!   the model's [`CostCurve`](decoding_core::CostCurve) ([`ReferenceConfig::cost`]), each
//!   step keeps only the nodes that pay for their cost, which matters on CPUs where a forward
//!   over 8 tokens costs several single-token forwards.
//! * [`Mode::Llma`]: LLMA (Yang et al., 2023, *Inference with Reference: Lossless
//!   Acceleration of Large Language Models*): the last `n` output tokens matched in the
//!   references, the next `k` tokens of the first occurrence copied as a chain.
//! * [`Mode::PromptLookup`]: prompt lookup decoding (Saxena, 2023; Hugging Face's
//!   `prompt_lookup_num_tokens`): the same over the prompt and output.
//!
//! ```
//! use decoding_core::{generate, DecodeConfig, Plain};
//! use decoding_testkit::toy::InductionModel;
//! use reference::{ReferenceConfig, ReferenceStrategy};
//! # use rand::SeedableRng;
//!
//! // An "induction" toy model continues text the way it continued before, as real models do.
//! let mut model = InductionModel::induction(50, 3);
//! let document: Vec<u32> = (10..40).collect();
//! let prompt = [1, 2, 10, 11, 12];
//! let config = DecodeConfig::new(40);
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
//!
//! let plain = generate(&mut model, Plain, &prompt, &config, &mut rng).unwrap();
//! let strategy =
//!     ReferenceStrategy::with_documents(ReferenceConfig::suffix(), [&document]).unwrap();
//! let fast = generate(&mut model, strategy, &prompt, &config, &mut rng).unwrap();
//! assert_eq!(fast.tokens, plain.tokens);
//! println!("tau {:.2} (plain 1.00)", fast.stats.tau());
//! ```
//!
//! ## The papers, in this crate's terms
//!
//! | paper | here |
//! | --- | --- |
//! | LLMA: match length `n`, copy length `k` (block `K` = `k` + 1 with the decoded token) | [`ReferenceConfig::min_match`], [`ReferenceConfig::k`] |
//! | prompt lookup: `max_ngram_size`, `num_pred_tokens` | [`ReferenceConfig::max_match`], [`ReferenceConfig::k`] |
//! | SuffixDecoding: pattern match, `C(child)/C(parent)` scores, `max_spec_factor` `alpha`, `min_token_prob` | [`Matcher::occurrences`], trie probabilities, [`ReferenceConfig::depth_factor`], [`ReferenceConfig::min_prob`] |
//! | SAM-Decoding: static automaton over the corpus, dynamic one over the generation | [`ReferenceIndex`], the matcher's context automaton |
//!
//! The suffix mode differs from SuffixDecoding in four ways: matches have no length cap (an
//! automaton rather than a depth-limited suffix tree), the prompt and references join the
//! output as sources, occurrences of shorter suffixes join the trie with a lower weight
//! (`match_len ^ length_weight`) instead of being tried only when the longest has none, and
//! tree sizes follow learned acceptance estimates and the hardware's cost curve rather than a
//! fixed `alpha * match length` budget alone.
//!
//! ## Performance
//!
//! On pycoder-16m over the dev eval set (40 completion and 30 edit cases, every output
//! identical to plain greedy), tau with the defaults is 3.04 on completion and 2.48 on edit
//! (prompt lookup with Hugging Face's defaults: 2.46 and 2.07; LLMA `n = 1, K = 20` on the
//! references: 1.29 on edit). Matching costs about 0.1 us per token, and a whole drafting
//! step (match, occurrences, trie, budgeted tree) under 10 us on a 100k-token reference
//! (`cargo bench --bench reference_lookup`).
//!
//! Wall-clock depends on what a tree costs. On a 2-core CPU running llama-cpu, where a
//! forward over 8 tokens costs 2.6 single-token forwards and over 16 tokens 7.5, the default
//! 24-node budget (8 nodes per step on average) gains 1.13x on completion and 0.98x on edit
//! against plain greedy in the same run, while the same mode given that cost curve
//! (`cost=1:1/2:1.25/4:1.7/8:2.64/16:7.48/32:14.25`, 2.7 nodes per step) gains 1.58x and
//! 1.44x at tau 2.26 and 1.94 (prompt lookup: 0.92x and 0.82x).

mod automaton;
mod calibration;
mod config;
mod draft;
mod edges;
mod index;
mod matcher;
mod strategy;

pub use automaton::{StateId, SuffixAutomaton};
pub use config::{ConfigError, Mode, ReferenceConfig};
pub use draft::{CONTEXT_SOURCE, REFERENCE_SOURCE};
pub use index::{RefCursor, ReferenceIndex};
pub use matcher::{Matcher, Occurrence, OccurrenceQuery, Source};
pub use strategy::ReferenceStrategy;
