//! # jacobi
//!
//! Jacobi (fixed-point) decoding: guess the next `k` tokens, run all of them through the model
//! in one forward pass, replace each guess by the model's prediction at its position, and
//! repeat. Every step keeps the prefix of guesses that the model confirms, plus one token, so
//! the output is exactly that of plain decoding and no step yields fewer tokens than plain
//! decoding does.
//!
//! ## The iteration (Santilli et al., 2023; Kou et al., 2024)
//!
//! Santilli et al. ("Accelerating Transformer Inference for Translation via Parallel
//! Decoding", ACL 2023) write greedy decoding of `m` tokens after a context `x` as the system
//! `y_i = argmax_y p(y | y_{1:i-1}, x)` for `i = 1..m`, and solve it by Jacobi iteration from
//! an initial guess `y^(0)`:
//!
//! ```text
//! y_i^(j+1) = argmax_y p(y | y_{1:i-1}^(j), x)      for all i at once (one forward pass)
//! ```
//!
//! stopping at the fixed point `y^(j+1) = y^(j)`. Since `y_1^(j+1)` depends on `x` alone, each
//! iteration fixes at least one more token, so at most `m` iterations are ever needed; their
//! hybrid GS-Jacobi variant commits the fixed prefix as it goes. CLLM (Kou et al., "CLLMs:
//! Consistency Large Language Models", ICML 2024) calls the sequence `y^(0), y^(1), ...` the
//! *Jacobi trajectory*.
//!
//! Here the iteration runs inside the token-tree loop of `decoding_core`:
//!
//! | paper | code |
//! | --- | --- |
//! | context `x` | the committed sequence and the pending token (the tree's root) |
//! | window `m` | [`JacobiConfig::window`] (option `k`; cut to the node budget and tokens left) |
//! | guess `y^(j)` | [`Trajectory`] (guesses at absolute positions), drafted as a chain |
//! | `y^(j+1)`, one forward | the argmax at each chain node ([`greedy_prediction`]) |
//! | fixed prefix | the verified path; the verifier then adds the *bonus* token `y_{a+1}` |
//! | `y^(0)` | [`Init`]: from the prompt, repeat the last token, a pad token, an n-gram source |
//!
//! After a step that accepted `a` guesses, the new pending token is the bonus, and the guesses
//! for the later positions are the predictions made beyond it; the positions uncovered at the
//! end are guessed by the [`Init`] policy. Under sampling the verifier is
//! `decoding_core`'s lossless residual rule (the guesses stay greedy, deterministic drafts), so
//! the output is distributed exactly as plain sampling, and a seeded run emits the same tokens
//! as plain sampling with the same seed.
//!
//! ## When it helps (honestly: rarely)
//!
//! A guess is only accepted if it equals the model's own prediction *given the guesses before
//! it*, so Jacobi decoding gains only where the model's continuation is forced (boilerplate,
//! closing brackets, repeated text) and the guesses happen to converge before the window moves
//! on. The CLLM authors measure about 1.05x on ordinary language models, and it takes a model
//! trained for consistency (CLLM) to do much better. Expect tau close to 1.0 to 1.1; the
//! statistics ([`JacobiStats`]: accepted guesses per step, how often the whole window is a fixed
//! point) show how close. Its real use is as the engine of lookahead decoding (the `lookahead`
//! crate), which keeps the trajectories this iteration produces and harvests n-grams from them;
//! [`Trajectory`] and [`Initializer`] are shared with it.
//!
//! ## Example
//!
//! ```
//! use decoding_core::{generate, DecodeConfig, Plain};
//! use decoding_testkit::toy::InductionModel;
//! use jacobi::{Init, Jacobi, JacobiConfig};
//! # use rand::SeedableRng;
//!
//! let mut model = InductionModel::induction(24, 5);
//! let prompt = [3, 4, 5, 6, 3, 4];
//! let config = DecodeConfig::new(48);
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
//! let plain = generate(&mut model, Plain, &prompt, &config, &mut rng).unwrap();
//!
//! let strategy = Jacobi::new(JacobiConfig::new(8).with_init(Init::Ngram)).unwrap();
//! let out = generate(&mut model, strategy, &prompt, &config, &mut rng).unwrap();
//! assert_eq!(out.tokens, plain.tokens); // lossless
//! println!("tau = {:.2}, {:?}", out.stats.tau(), out.metrics);
//! ```

mod config;
mod init;
mod strategy;
mod trajectory;

pub use config::{ConfigError, JacobiConfig};
pub use init::{Init, Initializer, SuccessorIndex};
pub use strategy::{JACOBI_SOURCE, Jacobi, JacobiStats, fast_argmax, greedy_prediction};
pub use trajectory::Trajectory;
