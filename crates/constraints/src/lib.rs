//! # decoding-constraints
//!
//! Grammar-constrained decoding that stays lossless under speculation: a
//! [`decoding_core::Constraint`] that keeps the generated text a prefix of a full match of a
//! regular expression, over the real bytes of a tokenizer's vocabulary.
//!
//! * [`TokenBytes`]: the byte string of every token id, read from a Hugging Face
//!   `tokenizer.json` of the byte-level BPE kind (GPT-2's byte-to-unicode alphabet; special
//!   tokens have no bytes) or given directly.
//! * [`RegexConstraint`]: the generated text (the bytes of the tokens after the prompt)
//!   must stay a prefix of a string that fully matches the pattern, anchored at the start of
//!   the generated text; an EOS is allowed exactly when the text is a full match. Its state,
//!   [`RegexState`], is a DFA state: forking it copies an id and two reference counts.
//!
//! Use it when the output must have a shape: a number list, an identifier, a JSON object of
//! a fixed schema written as a regular expression, a line of code, one of several answers.
//! Use no constraint when any text will do: a mask costs a pass over the row each step.
//!
//! ```
//! use std::sync::Arc;
//! use decoding_constraints::{RegexConstraint, TokenBytes};
//! use decoding_core::{generate, DecodeConfig, Plain};
//! use decoding_testkit::toy::HashModel;
//! # use rand::SeedableRng;
//!
//! // A vocabulary of 6 tokens: id 0 is the EOS and has no bytes.
//! let tokens = Arc::new(TokenBytes::new(["", "1", "2", ", ", "12", "x"]));
//! let numbers = RegexConstraint::new("[0-9]+(, [0-9]+)*", tokens.clone(), [0])?;
//! let config = DecodeConfig::new(8).with_eos([0]).with_constraint(numbers);
//! let mut model = HashModel::new(6, 3); // any `LogitsModel` with this vocabulary
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
//! let out = generate(&mut model, Plain, &[5, 5], &config, &mut rng)?;
//!
//! let text = tokens.decode(&out.tokens).unwrap();
//! let text = String::from_utf8(text).unwrap();
//! assert!(text.starts_with(|c: char| c.is_ascii_digit()), "{text:?}");
//! assert!(text.chars().all(|c| c.is_ascii_digit() || c == ',' || c == ' '));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Any strategy can replace `Plain` (lookahead, Jacobi, Medusa, reference, a composite):
//! the output is the same tokens under greedy decoding and the same distribution (the same
//! tokens with the same seed) under sampling.
//!
//! ## Where the mask applies
//!
//! The decoder builds the *target* of every row it draws a token from in one order, the
//! same for plain decoding and for every node of a drafted tree:
//!
//! ```text
//! logits -> processors (penalties, bias, with the node's own history)
//!        -> constraint mask (disallowed tokens set to -inf)
//!        -> sampling rule (temperature, top-k, top-p, min-p; or argmax)
//! ```
//!
//! So the mask applies after the processors and before temperature and truncation: top-k
//! keeps the `k` best *allowed* tokens, and a processor cannot revive a masked token. A draft
//! token the mask forbids has probability 0 and is never accepted, whatever its logit;
//! logprobs in `LogprobsMode::Processed` are those of the masked row.
//!
//! ## Forks and rollback
//!
//! A [`RegexState`] is the DFA state after the text so far, plus a handle on the shared
//! automaton and mask cache. The exact verifier advances the sequence's own state along the
//! tokens it emits, one token at a time, and masks each next row with it; a custom verifier
//! that looks at several branches gets a [`fork`](decoding_core::ConstraintState::fork) per
//! node. Nothing needs undoing after a step: the state has seen only accepted tokens. When a
//! step fails midway (bad logits, a strategy's error), the decoder restores the fork it took
//! before the step, so the retry starts from the same state. After an EOS the state allows
//! only the EOS tokens: give the same EOS tokens to `DecodeConfig::with_eos`, so decoding
//! stops there.
//!
//! ## How a mask is computed
//!
//! The pattern is compiled once into a dense DFA ([regex-automata]) that is anchored at the
//! start and reports every match (so a longer full match is never cut off by a shorter one,
//! as leftmost-first semantics would). Every reachable state gets two flags, computed once by
//! a walk over the whole DFA: *accepting* (its end-of-input transition reports a match: the
//! text is complete) and *live* (an accepting state is reachable: the text can still be
//! completed). A token is allowed when the state after its bytes is live. A mask is one
//! preorder pass over the vocabulary's prefix tree that skips the subtree of every prefix
//! leading to a state that is not live, so a restrictive pattern visits few nodes. Masks are
//! cached by DFA state, bounded ([`RegexOptions::with_cache_bytes`], the oldest evicted) and
//! shared by every fork and sequence of the constraint, so a state's mask costs one pass the
//! first time any branch reaches it and a lookup afterwards; applying a mask writes `-inf`
//! into the row, 64 tokens per bitset word.
//!
//! This is the index of Outlines (Willard and Louf, 2023, *Efficient Guided Generation for
//! Large Language Models*): for a DFA state `q`, the set of tokens whose bytes lead from `q`
//! to a state from which a match can still be reached, and the EOS when `q` accepts. Outlines
//! computes it for every state up front; here it is computed for the states decoding
//! actually reaches, when it first reaches them, and kept in a bounded cache.
//!
//! [regex-automata]: https://docs.rs/regex-automata
//!
//! ## Cost
//!
//! Measured on pycoder-16m's 8,192-token vocabulary (`cargo bench -p decoding-constraints
//! --bench masks`, 2-core CPU shared with other jobs, criterion medians; the state is the one
//! after a short prefix of each pattern):
//!
//! | pattern | DFA | build | allowed | cold mask | cached mask | fork + advance |
//! | --- | ---: | ---: | ---: | ---: | ---: | ---: |
//! | `[0-9]+(, [0-9]+)*` | 420 B | 54 us | 152 | 14 us | 5.9 us | 0.13 us |
//! | `[A-Za-z_][A-Za-z0-9_]*(, [A-Za-z_][A-Za-z0-9_]*)*\n` | 640 B | 68 us | 4,638 | 151 us | 5.2 us | 0.12 us |
//! | a JSON object of three fields (in the bench) | 13.9 kB | 617 us | 111 | 7.0 us | 4.3 us | 0.12 us |
//! | `[^\n]*\n` | 1.6 kB | 105 us | 8,113 | 295 us | 0.56 us | 0.11 us |
//! | `\w+(, \w+)*` (Unicode) | 359 kB | 20 ms | 4,691 | 192 us | 3.5 us | 0.07 us |
//!
//! "allowed": tokens the measured state allows, of 8,192. Once per vocabulary: reading
//! `tokenizer.json` takes 8.5 ms and building its prefix tree 2.6 ms (done by the first
//! constraint over a [`TokenBytes`]).
//!
//! A cached mask costs a few microseconds, mostly writing `-inf` into the 8,192-entry row,
//! far below a forward pass of even this 16M model (milliseconds); a cold mask is paid once
//! per DFA state, and costs with the number of allowed tokens (the prefix tree is pruned
//! at the first refused byte). The DFA is determinised up front: under a millisecond for
//! the ASCII patterns, 20 ms for Unicode `\w`. A pattern whose DFA would exceed
//! [`RegexOptions::with_size_limit`] is an error ([`RegexError::TooLarge`]); a lazy DFA
//! would take such patterns at the price of slower cold masks, and is not implemented.

mod mask;
mod regex;
mod token_bytes;
mod trie;

pub use mask::CacheStats;
pub use regex::{RegexConstraint, RegexError, RegexOptions, RegexState};
pub use token_bytes::{TokenBytes, TokenizerError};
