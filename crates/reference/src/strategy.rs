//! The strategy: keep the matcher in step with the context, draft from its matches, report
//! statistics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use decoding_core::{DecodeError, DraftContext, Metric, StepFeedback, Strategy, Token, TokenTree};

use crate::config::{ConfigError, Mode, ReferenceConfig};
use crate::draft::{Drafter, TrieLimits, chain_from};
use crate::index::ReferenceIndex;
use crate::matcher::{Matcher, OccurrenceQuery, Source};

/// Running statistics of one sequence.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    steps: usize,
    drafted_steps: usize,
    match_len: usize,
    depth: usize,
    nodes: usize,
    accepted: usize,
    occurrences: usize,
    lookup: Duration,
}

/// Inference with reference as a [`Strategy`]: LLMA, prompt lookup, or suffix-automaton
/// drafting, as its [`ReferenceConfig`] says.
///
/// Per step it brings its [`Matcher`] up to date with the new tokens (amortised O(1) each),
/// then drafts from the match below the pending token. Verification is decoding-core's exact
/// verifier: the output is the model's own, token for token under greedy decoding, and
/// identically distributed (seed for seed identical) under sampling.
///
/// ```
/// use decoding_core::{generate, DecodeConfig, Plain};
/// use decoding_testkit::toy::InductionModel;
/// use reference::{ReferenceConfig, ReferenceStrategy};
/// # use rand::SeedableRng;
///
/// let mut model = InductionModel::induction(64, 7);
/// let docs = vec![vec![5, 6, 7, 8, 9, 10, 11, 12, 13, 14]];
/// let prompt = [1, 2, 5, 6, 7];
/// let config = DecodeConfig::new(24);
/// let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
/// let plain = generate(&mut model, Plain, &prompt, &config, &mut rng).unwrap();
/// let strategy = ReferenceStrategy::with_documents(ReferenceConfig::suffix(), &docs).unwrap();
/// let out = generate(&mut model, strategy, &prompt, &config, &mut rng).unwrap();
/// assert_eq!(out.tokens, plain.tokens); // lossless
/// assert!(out.stats.forward_passes() < plain.stats.forward_passes());
/// ```
#[derive(Clone, Debug)]
pub struct ReferenceStrategy {
    config: ReferenceConfig,
    matcher: Matcher,
    drafter: Drafter,
    prompt_len: usize,
    vocab_size: usize,
    stats: Stats,
}

impl ReferenceStrategy {
    /// A strategy drafting from `index` (shared, see [`ReferenceIndex`]) and the context.
    pub fn new(config: ReferenceConfig, index: Arc<ReferenceIndex>) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            matcher: Matcher::new(index),
            drafter: Drafter::default(),
            prompt_len: 0,
            vocab_size: 0,
            stats: Stats::default(),
        })
    }

    /// A strategy over these reference documents (indexed here).
    pub fn with_documents<D: AsRef<[Token]>>(
        config: ReferenceConfig,
        documents: impl IntoIterator<Item = D>,
    ) -> Result<Self, ConfigError> {
        Self::new(config, Arc::new(ReferenceIndex::new(documents)))
    }

    /// The configuration.
    pub fn config(&self) -> &ReferenceConfig {
        &self.config
    }

    /// The matcher (its context is the sequence as of the last draft).
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Brings the matcher's context up to `tokens` (appending what is new; rebuilding if the
    /// sequence is not a continuation of what it has seen).
    fn sync(&mut self, tokens: &[Token]) {
        let seen = self.matcher.context().len();
        let continues = seen <= tokens.len()
            && (seen == 0 || self.matcher.context()[seen - 1] == tokens[seen - 1]);
        if continues {
            self.matcher.extend(&tokens[seen..]);
        } else {
            self.matcher.reset();
            self.matcher.extend(tokens);
        }
    }

    fn draft_first_occurrence(
        &mut self,
        ctx: &DraftContext<'_>,
        depth: usize,
        tree: &mut TokenTree,
    ) -> Result<usize, DecodeError> {
        let c = &self.config;
        let mut cap = c.max_match;
        if c.output_only {
            cap = cap.min(ctx.tokens.len().saturating_sub(self.prompt_len));
        }
        let best = |source, enabled: bool| {
            if enabled {
                let len = match source {
                    Source::Reference => self.matcher.reference_match(),
                    _ => self.matcher.context_match(),
                };
                len.min(cap)
            } else {
                0
            }
        };
        let from_refs = best(Source::Reference, c.references);
        let from_context = best(Source::Context, c.context);
        let (source, len) = if from_refs >= from_context {
            (Source::Reference, from_refs)
        } else {
            (Source::Context, from_context)
        };
        if len < c.min_match {
            return Ok(len);
        }
        if let Some(occ) = self.matcher.first_occurrence(source, len) {
            chain_from(&self.matcher, &occ, depth, c.periodic, ctx.vocab_size, tree)?;
        }
        Ok(len)
    }

    fn draft_weighted(
        &mut self,
        ctx: &DraftContext<'_>,
        depth: usize,
        tree: &mut TokenTree,
    ) -> Result<usize, DecodeError> {
        let c = &self.config;
        let mut matched = 0;
        if c.references {
            matched = self.matcher.reference_match();
        }
        if c.context {
            matched = matched.max(self.matcher.context_match());
        }
        if matched < c.min_match {
            return Ok(matched);
        }
        let adaptive = (c.depth_factor * matched as f32).ceil() as usize;
        let cost = c
            .cost
            .as_ref()
            .map(|curve| curve.per_sequence(ctx.batch_size));
        let limits = TrieLimits {
            depth: depth.min(adaptive.max(1)),
            nodes: c.max_nodes.min(ctx.max_nodes),
            min_prob: c.min_prob,
            chain: !c.tree || ctx.chains_only,
            length_weight: c.length_weight,
            periodic: c.periodic,
            vocab_size: ctx.vocab_size,
            cost: cost.as_deref(),
        };
        let query = OccurrenceQuery {
            references: c.references,
            context: c.context,
            min_len: c.min_match,
            max_occurrences: c.max_occurrences,
        };
        self.drafter
            .weighted(&mut self.matcher, &query, &limits, tree)?;
        self.stats.occurrences += self.drafter.occurrences.len();
        Ok(matched)
    }
}

impl Strategy for ReferenceStrategy {
    fn name(&self) -> &str {
        "reference"
    }

    fn begin(&mut self, prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        self.matcher.reset();
        self.matcher.extend(prompt);
        self.prompt_len = prompt.len();
        self.vocab_size = vocab_size;
        self.stats = Stats::default();
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        let started = Instant::now();
        self.prompt_len = ctx.prompt_len;
        self.drafter.cells.clear();
        self.drafter.node_estimates.clear();
        self.sync(ctx.tokens);
        let depth = self.config.k.min(ctx.max_depth);
        let depth = if self.config.mode == Mode::Suffix {
            depth
        } else {
            depth.min(ctx.max_nodes.saturating_sub(1))
        };
        let matched = if depth == 0 {
            0
        } else if self.config.mode == Mode::Suffix {
            self.draft_weighted(ctx, depth, tree)?
        } else {
            self.draft_first_occurrence(ctx, depth, tree)?
        };
        let s = &mut self.stats;
        s.steps += 1;
        s.match_len += matched;
        s.depth += tree.max_depth();
        s.nodes += tree.len() - 1;
        s.drafted_steps += usize::from(tree.len() > 1);
        s.lookup += started.elapsed();
        Ok(())
    }

    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        self.stats.accepted += feedback.verification.accepted();
        let (tree, cells) = (feedback.tree, &self.drafter.cells);
        if self.config.mode != Mode::Suffix || cells.len() != tree.len() {
            return Ok(());
        }
        // Every child of an accepted node was tested, unless a composite cut it (its logits
        // row is NaN then).
        let path = &feedback.verification.path;
        for (i, &node) in path.iter().enumerate() {
            for child in tree.children(node) {
                let evaluated = tree
                    .logits_row(child)
                    .and_then(|row| feedback.logits.get((row, 0)))
                    .is_some_and(|x| !x.is_nan());
                if evaluated {
                    let accepted = path.get(i + 1) == Some(&child);
                    self.drafter.calibration.record(cells[child], accepted);
                }
            }
        }
        Ok(())
    }

    /// Drafted nodes may be cut by a composite: observing reads only the accepted count.
    fn prunable(&self) -> bool {
        true
    }

    /// Suffix mode: each node's learned acceptance estimate (see the crate docs).
    fn draft_scores(&self) -> Option<&[f32]> {
        let scores = &self.drafter.node_estimates;
        (!scores.is_empty()).then_some(scores.as_slice())
    }

    /// `match_len`: mean longest match per step; `draft_depth` and `draft_nodes`: mean tree
    /// depth and drafted nodes (root excluded) per step; `accepted_per_step`; `drafted_steps`:
    /// the share of steps with a draft; `occurrences_per_step` (suffix mode); `lookup_us`:
    /// mean microseconds per step spent syncing, matching and drafting.
    fn metrics(&self) -> Vec<Metric> {
        let s = &self.stats;
        let per_step = |x: f64| {
            if s.steps == 0 {
                0.0
            } else {
                x / s.steps as f64
            }
        };
        vec![
            Metric::new("match_len", per_step(s.match_len as f64)),
            Metric::new("draft_depth", per_step(s.depth as f64)),
            Metric::new("draft_nodes", per_step(s.nodes as f64)),
            Metric::new("accepted_per_step", per_step(s.accepted as f64)),
            Metric::new("drafted_steps", per_step(s.drafted_steps as f64)),
            Metric::new("occurrences_per_step", per_step(s.occurrences as f64)),
            Metric::new("lookup_us", per_step(s.lookup.as_secs_f64() * 1e6)),
        ]
    }
}
