//! The lookahead strategy: the window and the candidates in one tree; learning after each step.

use std::ops::{Deref, DerefMut};
use std::sync::MutexGuard;

use decoding_core::{
    DecodeError, DraftContext, Metric, NodeId, SourceId, SourceSet, StepFeedback, Strategy, Token,
    TokenTree, TreeError,
};
use jacobi::Initializer;

use crate::config::{ConfigError, Fill, LookaheadConfig};
use crate::pool::{NgramPool, SharedPool};
use crate::window::{LookaheadWindow, WINDOW_SOURCE};

/// The source tag of verification-branch candidates (pool n-grams) in the drafted tree.
pub const POOL_SOURCE: SourceId = match SourceId::new(1) {
    Some(id) => id,
    None => unreachable!(),
};

/// Counters of a lookahead run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookaheadStats {
    /// Steps (forward passes) observed.
    pub steps: usize,
    /// Drafted tokens accepted.
    pub accepted: usize,
    /// Accepted tokens that a pool candidate proposed.
    pub accepted_from_pool: usize,
    /// Accepted tokens that the window proposed.
    pub accepted_from_window: usize,
    /// Candidates put into trees.
    pub candidates: usize,
    /// Steps whose pending token had at least one candidate in the pool.
    pub pool_hits: usize,
    /// Window columns drafted.
    pub window_columns: usize,
    /// N-grams the window handed to the pool.
    pub harvested: usize,
}

impl LookaheadStats {
    /// Mean drafted tokens accepted per step.
    pub fn accepted_per_step(&self) -> f64 {
        ratio(self.accepted, self.steps)
    }

    /// Share of steps whose pending token had candidates in the pool.
    pub fn pool_hit_rate(&self) -> f64 {
        ratio(self.pool_hits, self.steps)
    }

    /// Mean candidates verified per step.
    pub fn candidates_per_step(&self) -> f64 {
        ratio(self.candidates, self.steps)
    }
}

/// Appends `tokens` below `parent` while the tree has room (a token already there costs
/// nothing); returns the last node reached and whether every token went in.
fn push_chain(
    tree: &mut TokenTree,
    parent: NodeId,
    tokens: &[Token],
    max_nodes: usize,
    tag: SourceSet,
) -> Result<(NodeId, bool), TreeError> {
    let mut node = parent;
    for &token in tokens {
        if tree.child_with_token(node, token).is_none() && tree.len() >= max_nodes {
            return Ok((node, false));
        }
        node = tree.push_with(node, token, true, tag)?;
    }
    Ok((node, true))
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The pool a strategy learns into: its own, or one shared between sequences.
#[derive(Clone, Debug)]
enum PoolHandle {
    Owned(NgramPool),
    Shared(SharedPool),
}

enum PoolGuard<'a> {
    Owned(&'a mut NgramPool),
    Shared(MutexGuard<'a, NgramPool>),
}

impl PoolHandle {
    fn lock(&mut self) -> PoolGuard<'_> {
        match self {
            Self::Owned(pool) => PoolGuard::Owned(pool),
            Self::Shared(shared) => PoolGuard::Shared(shared.lock()),
        }
    }
}

impl Deref for PoolGuard<'_> {
    type Target = NgramPool;

    fn deref(&self) -> &NgramPool {
        match self {
            Self::Owned(pool) => pool,
            Self::Shared(guard) => guard,
        }
    }
}

impl DerefMut for PoolGuard<'_> {
    fn deref_mut(&mut self) -> &mut NgramPool {
        match self {
            Self::Owned(pool) => pool,
            Self::Shared(guard) => guard,
        }
    }
}

/// Lookahead decoding (Fu et al., 2024) as a sans-IO [`Strategy`].
///
/// Each step drafts one tree: the lookahead window (see [`LookaheadWindow`]) and up to `G`
/// candidate n-grams from the pool, keyed by the pending token, each a chain from the root.
/// `decoding_core` verifies it (greedy: exact; sampling: the lossless residual rule) and emits
/// the accepted tokens and the bonus token. The strategy then harvests one n-gram per window
/// column into the pool, moves the window on, and adds the output's new n-grams to the pool.
///
/// ```
/// use decoding_core::{generate, DecodeConfig, Plain};
/// use decoding_testkit::toy::InductionModel;
/// use lookahead::{Lookahead, LookaheadConfig};
/// # use rand::SeedableRng;
///
/// let mut model = InductionModel::induction(32, 1);
/// let prompt = [5, 6, 7, 8, 9, 5, 6];
/// let la = LookaheadConfig::new(5, 3, 5).with_prompt_pool(true);
/// let config = DecodeConfig::new(40).with_max_nodes(la.max_nodes());
/// let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
/// let plain = generate(&mut model, Plain, &prompt, &config, &mut rng).unwrap();
/// let out = generate(&mut model, Lookahead::new(la).unwrap(), &prompt, &config, &mut rng).unwrap();
/// assert_eq!(out.tokens, plain.tokens);
/// assert!(out.stats.forward_passes() <= plain.stats.forward_passes());
/// ```
#[derive(Clone, Debug)]
pub struct Lookahead {
    config: LookaheadConfig,
    pool: PoolHandle,
    init: Initializer,
    window: LookaheadWindow,
    /// This step's candidates, flattened: `N - 1` tokens (fewer near the end) and their
    /// extension.
    candidates: Vec<Token>,
    /// Where each candidate ends in `candidates`, and where its un-extended part ends.
    candidate_ends: Vec<(usize, usize)>,
    candidate_nodes: Vec<Option<NodeId>>,
    pending_position: usize,
    stats: LookaheadStats,
}

impl Lookahead {
    /// Lookahead decoding with its own pool (cleared when a sequence starts), once the
    /// configuration is validated.
    pub fn new(config: LookaheadConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let pool = NgramPool::new(config.ngram, config.guesses)?;
        Ok(Self::with_pool(config, PoolHandle::Owned(pool)))
    }

    /// Lookahead decoding over a pool shared with other sequences (never cleared by this
    /// strategy). The pool must hold `N`-grams.
    pub fn with_shared_pool(
        config: LookaheadConfig,
        pool: SharedPool,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let ngram = pool.lock().ngram();
        if ngram != config.ngram {
            return Err(ConfigError::PoolMismatch {
                pool: ngram,
                config: config.ngram,
            });
        }
        Ok(Self::with_pool(config, PoolHandle::Shared(pool)))
    }

    fn with_pool(config: LookaheadConfig, pool: PoolHandle) -> Self {
        Self {
            config,
            pool,
            init: Initializer::new(config.init),
            window: LookaheadWindow::new(config.window, config.ngram - 1),
            candidates: Vec::new(),
            candidate_ends: Vec::new(),
            candidate_nodes: Vec::new(),
            pending_position: 0,
            stats: LookaheadStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LookaheadConfig {
        &self.config
    }

    /// The window.
    pub fn window(&self) -> &LookaheadWindow {
        &self.window
    }

    /// Counters of the current sequence.
    pub fn stats(&self) -> &LookaheadStats {
        &self.stats
    }

    /// Number of n-grams in the pool.
    pub fn pool_len(&mut self) -> usize {
        self.pool.lock().len()
    }

    /// Runs `f` on the pool (for inspection).
    pub fn with_pool_ref<R>(&mut self, f: impl FnOnce(&NgramPool) -> R) -> R {
        f(&self.pool.lock())
    }

    /// Collects this step's candidates: the pool's continuations of `pending`, most recent
    /// first, at most `G`, each cut to `max_depth` and, when whole, extended by walking the
    /// pool.
    fn collect_candidates(&mut self, pending: Token, max_depth: usize) {
        self.candidates.clear();
        self.candidate_ends.clear();
        if max_depth == 0 {
            return;
        }
        let pool = self.pool.lock();
        let context = pool.continuation_len();
        let cap = context.saturating_add(self.config.extension).min(max_depth);
        for continuation in pool.get(pending).take(self.config.guesses) {
            let start = self.candidates.len();
            let base = continuation.len().min(max_depth);
            self.candidates.extend_from_slice(&continuation[..base]);
            if base == context {
                while self.candidates.len() - start < cap {
                    let tail = &self.candidates[self.candidates.len() - context..];
                    match pool.find_seen_first(tail[0], &tail[1..]) {
                        Some(next) => self.candidates.push(next[context - 1]),
                        None => break,
                    }
                }
            }
            self.candidate_ends
                .push((self.candidates.len(), start + base));
        }
    }

    /// Candidate `i`: its un-extended part and its extension.
    fn candidate(&self, i: usize) -> (&[Token], &[Token]) {
        let start = if i == 0 {
            0
        } else {
            self.candidate_ends[i - 1].0
        };
        let (end, base) = self.candidate_ends[i];
        (&self.candidates[start..base], &self.candidates[base..end])
    }

    /// Adds the candidates as chains from the root while the tree has room (the un-extended
    /// parts of all, then the extensions); returns how many went in, whole or cut.
    fn draft_candidates(
        &mut self,
        tree: &mut TokenTree,
        max_nodes: usize,
        limit: usize,
    ) -> Result<usize, TreeError> {
        let tag = SourceSet::of(POOL_SOURCE);
        let count = self.candidate_ends.len().min(limit);
        let mut nodes = std::mem::take(&mut self.candidate_nodes);
        nodes.clear();
        let mut added = 0;
        for i in 0..count {
            let (base, _) = self.candidate(i);
            let (end, whole) = push_chain(tree, 0, base, max_nodes, tag)?;
            added += usize::from(end != 0);
            nodes.push(whole.then_some(end));
        }
        for (i, node) in nodes.iter().enumerate() {
            if let &Some(node) = node {
                push_chain(tree, node, self.candidate(i).1, max_nodes, tag)?;
            }
        }
        self.candidate_nodes = nodes;
        Ok(added)
    }

    /// Window nodes needed for every column that fits `max_depth`.
    fn window_need(&self, max_depth: usize) -> usize {
        let top = self.window.levels().len() - 1;
        if max_depth < top {
            return 0;
        }
        let columns = self.config.window.min(max_depth - top + 1);
        columns * (top + 1) - 1
    }
}

impl Strategy for Lookahead {
    fn name(&self) -> &str {
        "lookahead"
    }

    fn begin(&mut self, prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        self.init.begin(prompt, vocab_size)?;
        let mut pool = self.pool.lock();
        if let PoolGuard::Owned(pool) = &mut pool {
            pool.clear();
        }
        if self.config.prompt_pool {
            pool.insert_all(prompt);
        }
        drop(pool);
        let last = prompt.len().saturating_sub(1);
        self.window
            .reset(last, prompt.get(last).copied().unwrap_or(0));
        self.stats = LookaheadStats::default();
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        let position = ctx.tokens.len() - 1;
        let pending = ctx.pending();
        self.pending_position = position;
        self.window.align(position, pending);
        {
            let Self {
                pool,
                init,
                window,
                config,
                ..
            } = self;
            let pool = pool.lock();
            let use_pool = config.fill == Fill::Pool;
            window.fill(|cell| {
                use_pool
                    .then(|| pool.find(cell.key, cell.prefix))
                    .flatten()
                    .and_then(|c| c.get(cell.prefix.len()).copied())
                    .unwrap_or_else(|| init.guess(cell.position, cell.recent))
            });
        }
        self.collect_candidates(pending, ctx.max_depth);
        let have = self.candidate_ends.len();
        self.stats.pool_hits += usize::from(have > 0);
        if ctx.chains_only {
            // One chain: the freshest candidate, else a Jacobi step on the window's level 0.
            if have > 0 {
                self.window.skip();
                self.stats.candidates += self.draft_candidates(tree, ctx.max_nodes, 1)?;
            } else {
                self.window
                    .draft_chain(tree, ctx.max_depth, ctx.max_nodes)?;
            }
            return Ok(());
        }
        let available = ctx.max_nodes.saturating_sub(1);
        let window_need = self.window_need(ctx.max_depth);
        let candidate_need =
            self.candidate_ends
                .iter()
                .enumerate()
                .fold(0, |sum, (i, &(_, base))| {
                    sum + base
                        - if i == 0 {
                            0
                        } else {
                            self.candidate_ends[i - 1].0
                        }
                });
        let window_budget = if window_need + candidate_need <= available {
            ctx.max_nodes
        } else {
            1 + available * window_need / (window_need + candidate_need)
        };
        let columns = self.window.draft(
            tree,
            ctx.max_depth,
            window_budget,
            self.config.window_logits,
        )?;
        self.stats.window_columns += columns;
        self.stats.candidates += self.draft_candidates(tree, ctx.max_nodes, have)?;
        Ok(())
    }

    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        let tree = feedback.tree;
        let verification = feedback.verification;
        self.stats.steps += 1;
        self.stats.accepted += verification.accepted();
        for &node in verification.path.iter().skip(1) {
            let sources = tree.sources(node);
            self.stats.accepted_from_pool += usize::from(sources.contains(POOL_SOURCE));
            self.stats.accepted_from_window += usize::from(sources.contains(WINDOW_SOURCE));
        }
        let Self {
            pool,
            window,
            config,
            stats,
            ..
        } = self;
        let mut pool = pool.lock();
        window.observe(tree, feedback.logits, feedback.tokens, |key, gram| {
            stats.harvested += 1;
            pool.insert_guess(key, gram);
        })?;
        if config.output_pool {
            let tokens = feedback.tokens;
            let n = config.ngram;
            let first = (self.pending_position + 1).max(n - 1);
            for q in first..tokens.len() {
                let start = q + 1 - n;
                pool.insert(tokens[start], &tokens[start + 1..=q]);
            }
        }
        drop(pool);
        self.init.observe(feedback.tokens);
        Ok(())
    }

    fn metrics(&self) -> Vec<Metric> {
        let s = &self.stats;
        vec![
            Metric::new("accepted_per_step", s.accepted_per_step()),
            Metric::new("pool_hit_rate", s.pool_hit_rate()),
            Metric::new("candidates_per_step", s.candidates_per_step()),
            Metric::new("accepted_from_pool", s.accepted_from_pool as f64),
            Metric::new("accepted_from_window", s.accepted_from_window as f64),
            Metric::new("window_columns_per_step", ratio(s.window_columns, s.steps)),
            Metric::new("harvested_per_step", ratio(s.harvested, s.steps)),
        ]
    }
}
