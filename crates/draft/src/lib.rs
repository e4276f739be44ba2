//! # draft
//!
//! Speculative decoding with a draft model: a small model (or the target's own first
//! layers) proposes tokens, the target verifies them all in one forward pass. The classic
//! technique of every serving engine, here as one more drafting source that composes with
//! the others of this workspace. Lossless: the drafts are deterministic functions of the
//! context and verification is [`decoding_core`]'s exact verifier, so greedy output is
//! token-identical to plain greedy decoding, and sampled output is identically distributed
//! (with the same seed, the same tokens).
//!
//! Use it when a drafter much cheaper than the target agrees with it often: a small model
//! of the same family on a GPU, or the target's first layers (self-speculation) where a
//! forward over a few nodes costs little more than over one. Two modes:
//!
//! * [`Mode::Chain`]: `k` greedy steps of the drafter, one chain (Leviathan et al., 2023;
//!   Chen et al., 2023).
//! * [`Mode::Tree`]: EAGLE-2's dynamic draft tree (Li et al., 2024): per depth the `width`
//!   nodes of highest cumulative drafter probability are expanded, all in one drafter forward
//!   (the drafter evaluates trees through the same [`LogitsModel`] contract as the target),
//!   and the best `max_nodes` nodes of all depths make the tree. Its nodes' estimates are
//!   reported as [`Strategy::draft_scores`], so a [`Composite`] ranks them against other
//!   sources' drafts.
//!
//! ```
//! use decoding_core::{generate, DecodeConfig, Plain};
//! use decoding_testkit::toy::HashModel;
//! use draft::{DraftConfig, DraftStrategy};
//! # use rand::SeedableRng;
//!
//! // The target, and a drafter that differs from it: another model entirely.
//! let mut target = HashModel::new(32, 7);
//! let drafter = HashModel::new(32, 8);
//! let config = DecodeConfig::new(40);
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
//! let plain = generate(&mut target, Plain, &[1, 2, 3], &config, &mut rng).unwrap();
//! for mode in [DraftConfig::chain(), DraftConfig::tree()] {
//!     let strategy = DraftStrategy::new(drafter.clone(), mode).unwrap();
//!     let out = generate(&mut target, strategy, &[1, 2, 3], &config, &mut rng).unwrap();
//!     assert_eq!(out.tokens, plain.tokens); // whatever the drafter proposes
//! }
//! ```
//!
//! ## The drafter's cache
//!
//! The drafter keeps a cache of its own, equal to the target's committed context (every
//! token but the pending one) with as little recomputation as possible: a chain evaluates
//! each drafted token once, the accepted tokens the drafter evaluated while drafting are
//! committed from that forward instead of being evaluated again, drafts the target rejected
//! are truncated, and what the drafter never saw (the prompt at the first step, the token
//! after a fully accepted chain, steps a composite rested it) is evaluated as a chain at the
//! start of the next step, below which the draft hangs. All of it is stated in tokens, so it
//! holds however the step ended (a stop condition inside the accepted chunk, a composite
//! cutting the tree). A drafter error is returned as an error, and the drafter's cache is
//! rebuilt at the next step.
//!
//! ## Sizing to the hardware
//!
//! Every drafter forward is time outside the target's forward (reported separately as the
//! `drafter_ms` metric), and every node costs the target too. Without a cost curve a step
//! drafts `k` levels and keeps `max_nodes` nodes, as the papers do. Given the target's
//! [`CostCurve`] and the drafter's relative cost ([`DraftConfig::cost`],
//! [`DraftConfig::drafter_cost`], measured by [`relative_cost`]), each step drafts only as deep as the next drafter forward
//! is expected to pay, and keeps the nodes that maximise expected tokens per unit of cost,
//! the drafting already spent included. Expected tokens come from the drafter's confidences,
//! calibrated against the target as the steps are verified (a correction per confidence
//! bucket, for the drafter's first choices and for the others, learned from how often their
//! nodes were accepted).
//!
//! ## Why exact verification, and not the p/q rule
//!
//! Leviathan et al.'s rule accepts a draft `x` *sampled from the drafter's* `q` with
//! probability `min(1, p(x) / q(x))` and resamples a rejection from `max(0, p - q)`,
//! normalised. It is lossless only because `x` really was drawn from `q`. The drafts here
//! are deterministic (the drafter's top tokens), so the distribution they were drawn from is
//! a point mass: with `q = 1` on the draft `x`, the rule accepts with probability `p(x)` and
//! resamples from `p` without `x`, which is exactly the residual rule decoding-core's
//! verifier implements (SpecInfer's multi-step form of it for several children). And no
//! lossless rule can do better for a given deterministic tree: a lossless verifier emits
//! each token `t` at a node with probability `p(t)`, so it descends into one of the children
//! `c1..cm` with probability at most `p(c1) + ... + p(cm)`, which the exact verifier reaches
//! at every node. Under greedy decoding the drafter's argmax is moreover the best single
//! guess. Sampling drafts from `q` instead (with the p/q rule) can accept more when `p` and
//! `q` are both flat, but it is only distributionally lossless, not seed for seed, and needs
//! randomness in drafting; it is not offered here (see the measurements below).
//!
//! ## Performance
//!
//! On pycoder-16m (8 layers, 384 wide) drafting for itself with its first `L` layers
//! (`cargo run --release --example eval -- --strategy draft:layers=L --threads 1`), every
//! output identical to plain greedy decoding. How often the early exit's greedy token is the
//! model's, along the model's own outputs (`--example draft_agreement`, 2560 positions):
//!
//! | L | 1 | 2 | 3 | 4 | 5 | 6 | 7 |
//! | --- | --- | --- | --- | --- | --- | --- | --- |
//! | agreement | 0.17 | 0.23 | 0.25 | 0.60 | 0.59 | 0.77 | 0.85 |
//!
//! The model was not trained to exit early (LayerSkip trains for it), so its first three
//! layers are poor drafters. tau over the 70 dev cases with chains of `k = 4`: 1.21, 1.27,
//! 1.31 and 1.99 for `L` = 1 to 4; EAGLE-2 trees of 24 nodes reach 2.66 with `L` = 4 (2.96
//! on completion, 2.45 on edit), and 1.39, 1.54, 1.63 with `L` = 1 to 3 on the first 12
//! completion cases (3.22 with `L` = 4). On a CPU, though, the drafter costs a good share
//! of the target (about 0.3 + 0.1 L of a forward by multiply-adds: the output projection
//! over 8192 tokens is a fifth of the model), and a 2-node target forward costs 1.5 single
//! ones: no configuration pays. In process CPU time against plain greedy decoding on those
//! 12 cases (one thread; wall-clock time was too noisy on the shared machine), fixed chains
//! run at 0.69x to 0.73x and trees at 0.22x to 0.36x (0.27x for `L` = 4 over the dev set). Under a cost curve (`cost=...`) the
//! strategy sees that and rests, drafting on 3% of the steps, at 0.86x to 0.98x (what is
//! left is the drafter's prefill of the prompt and its catch-up after a rest; 0.85x over
//! the 70 dev cases). Added to the cost-aware composite of reference drafting, it raises tau
//! from 1.73 to 1.79 over the dev set but brings the composite's CPU-time speedup from
//! 1.24x down to 1.01x: the composite rests it on 96% of the steps, but the drafter's
//! prefill of every prompt is paid in full. Remeasured in wall-clock time with issue 17's
//! kernels (Zen 5 core, 2026-12-07; forwards of 2 and 4 nodes now cost 1.17 and 1.28
//! single ones; the 70 dev cases, greedy 844.6 and 714.0 tokens/s bracketing, the machine
//! growing busier): `draft` (chain, `L` = 4, `k` = 4) tau 1.99, drafter 2.0 ms a step, 496
//! tokens/s (0.64x of the greedy mean); `draft:mode=tree` tau 2.66, 23.8 nodes, drafter 5.1
//! ms, 243 tokens/s (0.31x); `draft:cost=auto --measure-cost` 605 (0.78x, drafting on few
//! steps); `composite:sources=reference+draft --measure-cost` 828 against 1026 for
//! `composite:sources=reference` alone. A drafter
//! several times cheaper per agreement (a small distilled model, a tuned exit) or hardware
//! on which trees are cheap is what this strategy is for.
//!
//! Acceptance under sampling (temperature 1, the same positions): a deterministic top-1
//! draft is accepted with probability 0.16, 0.22, 0.23, 0.56 for `L` = 1 to 4, a draft
//! sampled from the drafter under the p/q rule with 0.17, 0.22, 0.24, 0.55, and a
//! deterministic node of 4 children with 0.31, 0.36, 0.41, 0.75. The p/q rule gains at most
//! 0.01 at these depths (0.02 to 0.04 at 6 and 7 layers) and loses seed-for-seed identity,
//! while a top-4 node gains far more: it is not implemented.
//!
//! ## The papers, in this crate's terms
//!
//! | paper | here |
//! | --- | --- |
//! | speculative decoding: draft length `gamma` (Leviathan), `K` (Chen) | [`DraftConfig::k`] in [`Mode::Chain`] |
//! | EAGLE-2: depth, top-`k` per expansion, total tokens `m`; value = product of confidences | [`DraftConfig::k`], [`DraftConfig::width`], [`DraftConfig::max_nodes`]; the calibrated estimates |
//! | dynamic draft length (confidence threshold, as Hugging Face's `assistant_confidence_threshold`) | [`DraftConfig::min_prob`] |
//! | LayerSkip / Draft & Verify: self-speculation with the target's early layers | a drafter made by `llama_cpu::Llama::early_exit(L)` |
//!
//! [`LogitsModel`]: decoding_core::LogitsModel
//! [`Strategy::draft_scores`]: decoding_core::Strategy::draft_scores
//! [`Composite`]: decoding_core::Composite
//! [`CostCurve`]: decoding_core::CostCurve

mod calibration;
mod config;
mod cost;
mod drafter;
mod expand;
mod strategy;
mod topk;

pub use config::{ConfigError, DraftConfig, Mode};
pub use cost::relative_cost;
pub use strategy::DraftStrategy;
