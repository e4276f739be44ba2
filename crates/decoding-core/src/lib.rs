//! # decoding-core
//!
//! The foundation of lossless parallel decoding: every technique in this workspace (Jacobi,
//! lookahead, Medusa, inference with reference) *drafts a token tree and verifies it in one
//! forward pass*. This crate holds what they share:
//!
//! * [`TokenTree`]: the drafted tree, rooted at the pending token, and [`TreeBuilder`], which
//!   merges drafts from several tagged sources under a node budget;
//! * [`LogitsModel`]: the one trait an engine implements (a forward over a tree, a commit of
//!   one path), with optional [`HiddenStates`] and [`HeadLogits`];
//! * [`Sampling`] and [`verify_tree`]: one definition of the target distribution, and the
//!   exact verifier (greedy: token-identical; sampling: the residual rule, identically
//!   distributed, and in fact token-identical to plain sampling with the same seed);
//! * [`process`] (penalties, logit bias, no-repeat-n-gram, your own [`LogitsProcessor`]) and
//!   [`constraint`] (token masks with state, for grammar-constrained decoding): applied to
//!   each row with that row's own history, so they are exact under every strategy;
//!   [`logprobs`] of every emitted token;
//! * [`Strategy`] and [`Decoder`]: sans-IO state machines (draft, observe) and the
//!   per-sequence loop around them, with stop conditions honoured inside accepted chunks and
//!   per-step [`DecodeStats`]; [`generate`] drives one sequence over a model;
//! * [`Composite`]: several strategies drafting into one deduplicated tree under a node
//!   budget, fixed or sized by the model's [`CostCurve`];
//! * [`decode_batch`] over a [`BatchLogitsModel`]: many sequences, each with its own strategy,
//!   sharing every forward pass;
//! * [`enumerate_draws`] and [`target_probability`]: exact output distributions, to test
//!   that a strategy is lossless under sampling.
//!
//! Toy models for tests, examples and benchmarks, and a conformance check for your own
//! model, are in the `decoding-testkit` crate.
//!
//! ```
//! use decoding_core::{generate, DecodeConfig, Plain};
//! use decoding_testkit::toy::HashModel;
//!
//! let mut model = HashModel::new(32, 7);
//! let config = DecodeConfig::new(20).with_eos([0]);
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
//! # use rand::SeedableRng;
//! let out = generate(&mut model, Plain, &[1, 2, 3], &config, &mut rng).unwrap();
//! assert_eq!(out.stats.tau(), 1.0); // plain decoding: one token per forward pass
//! ```

mod batch;
mod builder;
pub mod clock;
mod composite;
pub mod constraint;
mod cost_curve;
mod decoder;
mod error;
mod exact;
mod generate;
pub mod logprobs;
mod model;
mod options;
pub mod process;
mod sampling;
mod stats;
mod strategy;
mod tree;
mod verify;

pub use batch::{
    BatchLogitsModel, BatchOptions, BatchRequest, BatchStats, PerSequence, SeqId, decode_batch,
    decode_batch_with,
};
pub use builder::TreeBuilder;
pub use clock::{Clock, ManualClock, SystemClock};
pub use composite::{Composite, NodeBudget};
pub use constraint::{Constraint, ConstraintError, ConstraintState};
pub use cost_curve::CostCurve;
pub use decoder::{
    DecodeConfig, Decoder, ModelExtras, NoExtras, StepExtras, StepOutcome, StopReason,
};
pub use error::{DecodeError, ModelError, TreeError};
pub use exact::{enumerate_draws, target_probability, target_probability_with};
pub use generate::{Generation, generate, generate_streaming};
pub use logprobs::{LogprobsConfig, LogprobsMode, TokenLogprob};
pub use model::{HeadLogits, HiddenStates, LogitsModel, TreeSupport};
pub use options::{apply_options, option_pairs};
pub use process::{History, LogitsProcessor};
pub use sampling::{Draw, InvalidLogits, Sampling, argmax, checked_argmax};
pub use stats::{DecodeStats, StepRecord};
pub use strategy::{DraftContext, Metric, Plain, Requirements, StepFeedback, Strategy};
pub use tree::{
    Ancestors, Children, MAX_TREE_NODES, NodeId, SourceId, SourceSet, Token, TokenTree,
};
pub use verify::{
    StepVerification, Verification, Verifier, check_logits_shape, verify_step, verify_tree,
};
