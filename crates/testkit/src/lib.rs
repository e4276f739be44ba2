//! # decoding-testkit
//!
//! A conformance kit for engine authors: before decoding anything, check that your
//! [`LogitsModel`](decoding_core::LogitsModel) (or
//! [`BatchLogitsModel`](decoding_core::BatchLogitsModel)) keeps the contract every
//! technique of this workspace relies on. Lossless parallel decoding is only as exact as the
//! model's tree forward: a node that sees its siblings, sits at the wrong position, or a
//! commit that keeps the wrong cache entries, gives wrong output silently, often only on
//! some prompts. [`check_model`] finds such mistakes in seconds and says which one it is.
//!
//! ```
//! use decoding_testkit::toy::HashModel;
//! use decoding_testkit::{check_model, CheckConfig};
//!
//! let mut model = HashModel::new(32, 7); // your engine's model here
//! let report = check_model(&mut model, &CheckConfig::default())?;
//! assert!(report.is_bit_exact());
//! println!("{report}");
//! # Ok::<(), decoding_testkit::CheckError>(())
//! ```
//!
//! An engine that is not bit-exact across batch shapes (reduced precision, GEMMs whose
//! blocking depends on the number of rows) checks with a tolerance instead; argmax flips
//! are then accepted at near-ties only, and listed in the [`CheckReport`]:
//!
//! ```
//! # use decoding_testkit::{check_model, CheckConfig};
//! # let mut model = decoding_testkit::toy::HashModel::new(32, 7);
//! check_model(&mut model, &CheckConfig::default().with_tolerance(1e-3))?;
//! # Ok::<(), decoding_testkit::CheckError>(())
//! ```
//!
//! ## What it checks
//!
//! The check runs seeded *episodes* of random calls from an empty context: prefills (long
//! chains, committed whole or in part), forwards of random trees and chains, commits of
//! random root-to-node paths, empty commits, forwards left uncommitted (the next forward
//! must drop them), truncations, resets, and misuse that must fail without changing the
//! committed context (a second commit, a commit without a forward, a bad path, a wrong
//! logits shape, a token outside the vocabulary). It checks at once what needs no
//! reference (`committed_len`, errors, every asked-for row written: the buffer is filled
//! with NaN first, panics) and records every logits row, hidden state and head logit.
//!
//! Then comes the **recompute oracle**: the same model, after `reset`, evaluating each
//! node's whole context (the committed tokens and the node's path) as one chain. By the
//! contract a node's logits are a function of that context alone, so they must agree,
//! exactly by default or within the configured tolerance. A `ChainsOnly` model is given
//! chains (and prefix commits) only.
//!
//! ## How a violation is classified
//!
//! The first row that disagrees, in call order, is diagnosed by experiments that replay the
//! episode and change one thing at a time ([`ViolationKind`] lists the classes):
//!
//! | experiment | verdict |
//! | --- | --- |
//! | the same calls again (the recompute, or the episode replayed) give another row | [`Nondeterministic`](ViolationKind::Nondeterministic) |
//! | the recompute disagrees with itself (one row alone vs inside a longer chain) | [`TreeComposition`](ViolationKind::TreeComposition) |
//! | the row is another node's expected row | [`RowsMisplaced`](ViolationKind::RowsMisplaced) |
//! | the path alone, as a chain on the same cache, is right; the tree with other tokens on the non-ancestor nodes changes the row | [`AttentionLeak`](ViolationKind::AttentionLeak), naming one node that leaks |
//! | ... the other tokens do not matter, but the tree reordered so that the node's index equals its depth is right | [`WrongPosition`](ViolationKind::WrongPosition) |
//! | ... neither explains it | [`TreeComposition`](ViolationKind::TreeComposition) |
//! | the path alone is wrong too: replaying from a prefill of the context before each earlier step finds the step that spoils a correct cache | by that step: a commit, a drop or a left forward: [`CommitNotAppended`](ViolationKind::CommitNotAppended) (or [`TreeComposition`](ViolationKind::TreeComposition) if the difference is numerical noise, or [`WrongPosition`](ViolationKind::WrongPosition) if a committed node, asked for its logits, is right only once its index equals its depth); a truncate or reset: [`TruncateWrong`](ViolationKind::TruncateWrong); a failed call: [`ErrorChangedState`](ViolationKind::ErrorChangedState) |
//! | a prefill of the committed context alone spoils it | [`CommitNotAppended`](ViolationKind::CommitNotAppended) when it behaves as a shorter context, else [`CachedContext`](ViolationKind::CachedContext) |
//!
//! The spoiling step's effect is then matched against likely wrong contexts (nothing kept,
//! the first nodes in node order kept, the path reversed, every node kept, `k` tokens kept
//! after a truncate, the path appended twice), and the [`Violation`] says which one fits.
//! Every violation names the seed, episode and step, the node and its path, the expected and
//! actual row ([`RowDiff`]: max abs diff, argmax), what to fix, and the calls of the episode
//! up to it; `Display` prints all of it. [`broken`] holds a model per classic mistake, to
//! see what each looks like.
//!
//! ## Cost
//!
//! Each episode costs its own forwards plus about one chain forward per distinct leaf
//! context for the recompute (a chain's rows give all its prefixes). With the defaults (3
//! episodes of 16 steps, trees up to 10 nodes, contexts up to 64 tokens) that is a few
//! hundred forwards of at most 64 tokens: milliseconds on toy models, seconds on a 16M
//! model on one CPU core. Diagnosis runs only after a failure.
//!
//! ## Toy models
//!
//! [`toy`] holds small deterministic models (a recompute adapter over any context function,
//! caching hash and n-gram models, an induction model, engine-computed heads, a cost
//! wrapper and a chains-only wrapper) for the tests, examples and benchmarks of this
//! workspace and of engines that use it: they keep the contract, so they are what a correct
//! model looks like to [`check_model`].
//!
//! ## Batched models
//!
//! [`check_batch_model`] checks a [`BatchLogitsModel`](decoding_core::BatchLogitsModel):
//! first the single-sequence contract on one sequence at a time (each episode a fresh
//! sequence, evaluated alone), then batches of several sequences that join and leave, are
//! absent from some passes (and commit their earlier tree afterwards), appear in random item
//! order, and must each get exactly the rows they get alone.

// A violation ends a check, so its size on the error path costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

mod batch;
pub mod broken;
mod compare;
mod config;
mod diagnose;
mod oracle;
mod plan;
mod report;
mod run;
mod subject;
pub mod toy;
mod violation;

pub use batch::check_batch_model;
pub use compare::RowDiff;
pub use config::CheckConfig;
pub use report::{Agreement, CheckReport, NearTie};
pub use run::check_model;
pub use violation::{CheckError, Violation, ViolationKind};

/// The engine guide's snippets, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/ENGINE_GUIDE.md")]
struct EngineGuide;
