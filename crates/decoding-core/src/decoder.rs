//! The per-sequence decoding state machine: draft, (model runs), verify, emit, commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2, ArrayView2};

use crate::constraint::{Constraint, ConstraintState};
use crate::error::DecodeError;
use crate::logprobs::{LogprobsConfig, TokenLogprob};
use crate::model::{HeadLogits, HiddenStates, TreeSupport};
use crate::process::LogitsProcessor;
use crate::sampling::{Draw, Sampling};
use crate::stats::{DecodeStats, StepRecord};
use crate::strategy::{DraftContext, StepFeedback, Strategy};
use crate::tree::{NodeId, Token, TokenTree};
use crate::verify::{SequenceParts, Verification, Verifier, VerifyScratch, check_logits_shape};

/// When to stop and how to choose tokens: the stop conditions, the node budget, and the
/// *target* every token is drawn from (logits processors, then a constraint's mask, then the
/// sampling rule), with the logprobs to report. Built with infallible setters; checked once,
/// against the vocabulary, when decoding starts ([`validate`](Self::validate)).
#[derive(Clone, Debug)]
pub struct DecodeConfig {
    max_new_tokens: usize,
    eos_tokens: Vec<Token>,
    stop_sequences: Vec<Vec<Token>>,
    sampling: Sampling,
    processors: Vec<Arc<dyn LogitsProcessor>>,
    constraint: Option<Arc<dyn Constraint>>,
    logprobs: Option<LogprobsConfig>,
    max_nodes: usize,
    speculation: bool,
}

impl DecodeConfig {
    /// Default per-step node budget (root included).
    pub const DEFAULT_MAX_NODES: usize = 64;

    /// Greedy decoding of at most `max_new_tokens` tokens, no EOS, no stop sequences.
    pub fn new(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            eos_tokens: Vec::new(),
            stop_sequences: Vec::new(),
            sampling: Sampling::greedy(),
            processors: Vec::new(),
            constraint: None,
            logprobs: None,
            max_nodes: Self::DEFAULT_MAX_NODES,
            speculation: true,
        }
    }

    /// Stops after emitting any of these tokens (the EOS is emitted).
    pub fn with_eos(mut self, eos: impl IntoIterator<Item = Token>) -> Self {
        self.eos_tokens.extend(eos);
        self
    }

    /// Stops once the generated tokens end with `sequence` (which is emitted).
    pub fn with_stop_sequence(mut self, sequence: impl Into<Vec<Token>>) -> Self {
        self.stop_sequences.push(sequence.into());
        self
    }

    /// Chooses tokens by `sampling` (greedy by default).
    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// Applies `processor` to every row a token is drawn from, after the processors added
    /// before it (see [`crate::process`]).
    pub fn with_processor(mut self, processor: impl LogitsProcessor + 'static) -> Self {
        self.processors.push(Arc::new(processor));
        self
    }

    /// Like [`with_processor`](Self::with_processor), for a shared processor.
    pub fn with_shared_processor(mut self, processor: Arc<dyn LogitsProcessor>) -> Self {
        self.processors.push(processor);
        self
    }

    /// Masks every row a token is drawn from with `constraint`'s state at that point, after
    /// the processors (see [`crate::constraint`]).
    pub fn with_constraint(mut self, constraint: impl Constraint + 'static) -> Self {
        self.constraint = Some(Arc::new(constraint));
        self
    }

    /// Like [`with_constraint`](Self::with_constraint), for a shared constraint.
    pub fn with_shared_constraint(mut self, constraint: Arc<dyn Constraint>) -> Self {
        self.constraint = Some(constraint);
        self
    }

    /// Reports each emitted token's logprob and top alternatives (see [`crate::logprobs`]).
    pub fn with_logprobs(mut self, logprobs: LogprobsConfig) -> Self {
        self.logprobs = Some(logprobs);
        self
    }

    /// At most `max_nodes` tree nodes per forward pass, root included (default 64).
    pub fn with_max_nodes(mut self, max_nodes: usize) -> Self {
        self.max_nodes = max_nodes;
        self
    }

    /// Starts with speculation on (the default) or off: off, every tree is the root alone,
    /// plain decoding at one token per forward pass, whatever the strategy (per-request
    /// control; [`Decoder::set_speculation`] switches it between steps).
    pub fn with_speculation(mut self, on: bool) -> Self {
        self.speculation = on;
        self
    }

    /// Whether decoding starts with speculation on.
    pub fn speculation(&self) -> bool {
        self.speculation
    }

    /// The token limit.
    pub fn max_new_tokens(&self) -> usize {
        self.max_new_tokens
    }

    /// The EOS tokens.
    pub fn eos_tokens(&self) -> &[Token] {
        &self.eos_tokens
    }

    /// The stop sequences.
    pub fn stop_sequences(&self) -> &[Vec<Token>] {
        &self.stop_sequences
    }

    /// The sampling rule.
    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    /// The per-step node budget.
    pub fn max_nodes(&self) -> usize {
        self.max_nodes
    }

    /// The logits processors, in the order they apply.
    pub fn processors(&self) -> &[Arc<dyn LogitsProcessor>] {
        &self.processors
    }

    /// The constraint, if any.
    pub fn constraint(&self) -> Option<&Arc<dyn Constraint>> {
        self.constraint.as_ref()
    }

    /// The logprobs to report, if any.
    pub fn logprobs(&self) -> Option<LogprobsConfig> {
        self.logprobs
    }

    /// Checks the configuration against a vocabulary.
    pub fn validate(&self, vocab_size: usize) -> Result<(), DecodeError> {
        if vocab_size == 0 {
            return Err(DecodeError::config("the vocabulary is empty"));
        }
        if self.max_nodes == 0 {
            return Err(DecodeError::config(
                "max_nodes must be at least 1 (the root)",
            ));
        }
        if self.stop_sequences.iter().any(Vec::is_empty) {
            return Err(DecodeError::config("a stop sequence is empty"));
        }
        self.sampling.validate()?;
        for processor in &self.processors {
            processor.validate(vocab_size)?;
        }
        let stop_tokens = self.stop_sequences.iter().flatten();
        check_tokens(self.eos_tokens.iter().chain(stop_tokens), vocab_size)
    }
}

fn check_tokens<'a>(
    tokens: impl IntoIterator<Item = &'a Token>,
    vocab_size: usize,
) -> Result<(), DecodeError> {
    match tokens.into_iter().find(|&&t| t as usize >= vocab_size) {
        Some(&token) => Err(DecodeError::TokenOutOfVocab { token, vocab_size }),
        None => Ok(()),
    }
}

/// The stop condition that the last of `generated` fires, if any.
pub(crate) fn stop_reason(config: &DecodeConfig, generated: &[Token]) -> Option<StopReason> {
    let &last = generated.last()?;
    if config.eos_tokens.contains(&last) {
        return Some(StopReason::Eos(last));
    }
    if let Some(i) = config
        .stop_sequences
        .iter()
        .position(|s| generated.ends_with(s))
    {
        return Some(StopReason::StopSequence(i));
    }
    (generated.len() >= config.max_new_tokens).then_some(StopReason::MaxNewTokens)
}

/// Why decoding stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// `max_new_tokens` tokens were emitted.
    MaxNewTokens,
    /// This EOS token was emitted.
    Eos(Token),
    /// The stop sequence with this index was emitted.
    StopSequence(usize),
    /// The model's context is full.
    ContextFull,
}

/// Where [`Decoder::advance`] reads the extras a strategy needs beyond logits (the final hidden
/// state or engine-computed head logits at the last accepted node of the current step).
///
/// [`ModelExtras`] reads them from a [`LogitsModel`](crate::LogitsModel); [`NoExtras`] offers
/// none; a batching engine implements it over its per-sequence outputs.
pub trait StepExtras {
    /// Writes the final hidden state of `node` (of the current step's tree) into `out`,
    /// resizing it.
    fn hidden_state(&mut self, node: NodeId, out: &mut Array1<f32>) -> Result<(), DecodeError>;

    /// Writes the head logits of `node` into `out` (one row per head), resizing it.
    fn head_logits(&mut self, node: NodeId, out: &mut Array2<f32>) -> Result<(), DecodeError>;
}

/// The extras of a [`LogitsModel`](crate::LogitsModel), through its
/// [`hidden_states`](crate::LogitsModel::hidden_states) and
/// [`head_logits`](crate::LogitsModel::head_logits).
pub struct ModelExtras<'a>(pub &'a mut dyn crate::LogitsModel);

impl StepExtras for ModelExtras<'_> {
    fn hidden_state(&mut self, node: NodeId, out: &mut Array1<f32>) -> Result<(), DecodeError> {
        let source: &mut dyn HiddenStates = self
            .0
            .hidden_states()
            .ok_or(DecodeError::MissingCapability("final hidden states"))?;
        if out.len() != source.hidden_size() {
            *out = Array1::zeros(source.hidden_size());
        }
        Ok(source.hidden_state(node, out.view_mut())?)
    }

    fn head_logits(&mut self, node: NodeId, out: &mut Array2<f32>) -> Result<(), DecodeError> {
        let vocab_size = self.0.vocab_size();
        let source: &mut dyn HeadLogits = self
            .0
            .head_logits()
            .ok_or(DecodeError::MissingCapability("decoding-head logits"))?;
        let shape = (source.num_heads(), vocab_size);
        if out.dim() != shape {
            *out = Array2::zeros(shape);
        }
        Ok(source.head_logits(node, out.view_mut())?)
    }
}

/// No extras: for strategies that need logits only.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoExtras;

impl StepExtras for NoExtras {
    fn hidden_state(&mut self, _: NodeId, _: &mut Array1<f32>) -> Result<(), DecodeError> {
        Err(DecodeError::MissingCapability("final hidden states"))
    }

    fn head_logits(&mut self, _: NodeId, _: &mut Array2<f32>) -> Result<(), DecodeError> {
        Err(DecodeError::MissingCapability("decoding-head logits"))
    }
}

/// What one step produced.
#[derive(Clone, Copy, Debug)]
pub struct StepOutcome<'a> {
    /// Tokens emitted by this step, in order.
    pub emitted: &'a [Token],
    /// The logprobs of the emitted tokens, if the configuration asks for them.
    pub logprobs: &'a [TokenLogprob],
    /// The path the model must commit (node ids of the tree returned by
    /// [`Decoder::propose`]).
    pub commit_path: &'a [NodeId],
    /// Set when decoding has finished.
    pub stop: Option<StopReason>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Drafting,
    Verifying,
    Finished(StopReason),
}

/// Decodes one sequence with one strategy, without ever calling the model.
///
/// ```text
/// start(prompt) ; loop { tree = propose() ; model.forward(tree) ;
///                        outcome = advance(logits) ; model.commit(outcome.commit_path) ;
///                        check_committed(model.committed_len()) }
/// ```
/// The first step's tree is the prompt (without logits) with the draft hung below its last
/// token, so the prefill forward pass already produces, and verifies, the first tokens.
/// Afterwards the model's cache holds every token but the last emitted one (the pending
/// token, root of the next draft): [`committed_len`](Self::committed_len) tokens, which
/// [`check_committed`](Self::check_committed) compares with what the model reports.
/// [`generate`](crate::generate) runs this loop over a [`LogitsModel`](crate::LogitsModel);
/// a batching engine runs it for many sequences.
///
/// Every method either succeeds or leaves the decoder as it was before the call (the draws
/// a failed step took from the random source are spent, though).
pub struct Decoder<S> {
    strategy: S,
    config: DecodeConfig,
    vocab_size: usize,
    chains_only: bool,
    max_context: Option<usize>,
    speculate: bool,
    node_limit: Option<usize>,
    batch_size: usize,
    tokens: Vec<Token>,
    prompt_len: usize,
    prefix_len: usize,
    constraint: Option<Box<dyn ConstraintState>>,
    logprobs: Vec<TokenLogprob>,
    draft: TokenTree,
    grafted: TokenTree,
    verification: Verification,
    scratch: VerifyScratch,
    emitted_from: usize,
    commit_path: Vec<NodeId>,
    hidden: Array1<f32>,
    heads: Array2<f32>,
    phase: Phase,
    step: StepRecord,
    stats: DecodeStats,
}

impl<S: Strategy> Decoder<S> {
    /// A decoder driving `strategy` under `config`.
    pub fn new(strategy: S, config: DecodeConfig) -> Self {
        Self {
            speculate: config.speculation,
            strategy,
            config,
            vocab_size: 0,
            chains_only: false,
            max_context: None,
            node_limit: None,
            batch_size: 1,
            tokens: Vec::new(),
            prompt_len: 0,
            prefix_len: 0,
            constraint: None,
            logprobs: Vec::new(),
            draft: TokenTree::new(0),
            grafted: TokenTree::new(0),
            verification: Verification::default(),
            scratch: VerifyScratch::default(),
            emitted_from: 0,
            commit_path: Vec::new(),
            hidden: Array1::zeros(0),
            heads: Array2::zeros((0, 0)),
            phase: Phase::Idle,
            step: StepRecord::default(),
            stats: DecodeStats::default(),
        }
    }

    /// Starts decoding `prompt` for a model with this vocabulary, tree support and context
    /// limit, whose cache must be empty (see [`check_committed`](Self::check_committed)).
    /// Resets statistics, the strategy and the constraint's state.
    pub fn start(
        &mut self,
        prompt: &[Token],
        vocab_size: usize,
        tree_support: TreeSupport,
        max_context: Option<usize>,
    ) -> Result<(), DecodeError> {
        self.config.validate(vocab_size)?;
        if prompt.is_empty() {
            return Err(DecodeError::EmptyPrompt);
        }
        check_tokens(prompt, vocab_size)?;
        let constraint = match &self.config.constraint {
            Some(c) => Some(c.start(prompt, vocab_size)?),
            None => None,
        };
        self.strategy.begin(prompt, vocab_size)?;
        self.constraint = constraint;
        self.speculate = self.config.speculation;
        self.vocab_size = vocab_size;
        self.chains_only = tree_support == TreeSupport::ChainsOnly;
        self.max_context = max_context;
        self.tokens.clear();
        self.tokens.extend_from_slice(prompt);
        self.logprobs.clear();
        self.prompt_len = prompt.len();
        self.prefix_len = prompt.len() - 1;
        self.stats = DecodeStats {
            prompt_tokens: prompt.len(),
            ..DecodeStats::default()
        };
        self.phase = Phase::Drafting;
        if self.config.max_new_tokens == 0 {
            self.phase = Phase::Finished(StopReason::MaxNewTokens);
        } else if self.room() == 0 {
            self.phase = Phase::Finished(StopReason::ContextFull);
        }
        Ok(())
    }

    /// Tree depth that still fits the model's context (root at depth 0 needs 1).
    fn room(&self) -> usize {
        match self.max_context {
            Some(max) => max.saturating_sub(self.tokens.len() - 1),
            None => usize::MAX,
        }
    }

    /// Turns speculation off (every tree is the root alone: plain decoding, one token per
    /// forward pass) or back on, from the next [`propose`](Self::propose). The strategy still
    /// sees every step (asked to draft with a budget of one node), so it stays in step with
    /// the sequence; the output is the same either way.
    pub fn set_speculation(&mut self, on: bool) {
        self.speculate = on;
    }

    /// Whether speculation is on.
    pub fn speculation(&self) -> bool {
        self.speculate
    }

    /// Tells the strategy how many sequences share the next forward passes (1 alone; see
    /// [`DraftContext::batch_size`]).
    pub fn set_batch_size(&mut self, batch: usize) {
        self.batch_size = batch.max(1);
    }

    /// Caps the nodes of the next trees below the configuration's `max_nodes` (a batch-aware
    /// budget sets it per step); `None` lifts the cap. A cap of 0 counts as 1.
    pub fn set_node_limit(&mut self, limit: Option<usize>) {
        self.node_limit = limit;
    }

    /// The node budget of the next step.
    pub fn step_budget(&self) -> usize {
        let budget = if self.speculate {
            self.config.max_nodes
        } else {
            1
        };
        budget.min(self.node_limit.unwrap_or(usize::MAX)).max(1)
    }

    /// Drafts this step's tree and returns what the model must evaluate.
    pub fn propose(&mut self) -> Result<&TokenTree, DecodeError> {
        if self.phase != Phase::Drafting {
            return Err(DecodeError::State(
                "propose needs a started, unfinished decoder",
            ));
        }
        let started = Instant::now();
        let generated = self.tokens.len() - self.prompt_len;
        let remaining = self.config.max_new_tokens - generated;
        let max_nodes = self.step_budget();
        let max_depth = (remaining - 1).min(self.room() - 1);
        let ctx = DraftContext::new(
            &self.tokens,
            self.prompt_len,
            max_nodes,
            max_depth,
            self.vocab_size,
        )
        .with_chains_only(self.chains_only)
        .with_batch_size(self.batch_size);
        let pending = ctx.pending();
        self.draft.reset(pending);
        self.strategy.draft(&ctx, &mut self.draft)?;
        self.check_draft(pending, max_nodes)?;
        if self.prefix_len > 0 {
            self.draft
                .graft_below(&self.tokens[..self.prefix_len], &mut self.grafted);
        }
        self.step = StepRecord {
            tree_nodes: self.prefix_len + self.draft.len(),
            draft_nodes: self.draft.len(),
            overhead_time: started.elapsed(),
            ..StepRecord::default()
        };
        self.phase = Phase::Verifying;
        Ok(self.step_tree())
    }

    fn check_draft(&self, pending: Token, max_nodes: usize) -> Result<(), DecodeError> {
        let tree = &self.draft;
        if tree.root_token() != pending || !tree.needs_logits(0) {
            return Err(DecodeError::Contract(
                "a strategy must keep the root: the pending token, with logits",
            ));
        }
        if tree.len() > max_nodes {
            return Err(crate::TreeError::OverBudget {
                nodes: tree.len(),
                budget: max_nodes,
            }
            .into());
        }
        if self.chains_only {
            tree.check_chain()?;
        }
        if tree.max_depth() >= self.room() {
            return Err(DecodeError::config(format!(
                "the draft is {} deep but only {} more positions fit the model's context",
                tree.max_depth(),
                self.room() - 1
            )));
        }
        Ok(tree.check_vocab(self.vocab_size)?)
    }

    /// The tree of the current step (as returned by [`propose`](Self::propose)).
    pub fn step_tree(&self) -> &TokenTree {
        if self.prefix_len > 0 {
            &self.grafted
        } else {
            &self.draft
        }
    }

    /// Verifies the step's tree against `logits` (one row per node that asked for logits),
    /// emits tokens (stopping exactly where a stop condition fires), reads the extras the
    /// strategy needs and lets it learn. The caller then commits `commit_path` in the model.
    ///
    /// On error the decoder is as before the call (the same tree is still proposed, so the
    /// caller may retry with the same logits), except that the draws the failed attempt took
    /// from `draw` are spent and the strategy may have learnt part of the step (drafts never
    /// change what is emitted).
    pub fn advance(
        &mut self,
        logits: ArrayView2<'_, f32>,
        extras: &mut dyn StepExtras,
        draw: &mut dyn Draw,
    ) -> Result<StepOutcome<'_>, DecodeError> {
        if self.phase != Phase::Verifying {
            return Err(DecodeError::State("advance needs a proposed tree"));
        }
        let started = Instant::now();
        check_logits_shape(self.step_tree(), &logits, self.vocab_size)?;
        let mark = (self.tokens.len(), self.logprobs.len());
        let saved = self.constraint.as_ref().map(|c| c.fork());
        let result = self.verify_and_observe(logits, extras, draw);
        let (stop, extras_time) = match result {
            Ok(done) => done,
            Err(error) => {
                self.tokens.truncate(mark.0);
                self.logprobs.truncate(mark.1);
                if saved.is_some() {
                    self.constraint = saved;
                }
                return Err(error);
            }
        };
        let accepted = self.verification.accepted();
        for &node in &self.verification.path[1..] {
            self.stats.credit_sources(self.draft.sources(node));
        }
        self.prefix_len = 0;
        self.step.accepted = accepted;
        self.step.emitted = self.tokens.len() - self.emitted_from;
        self.step.model_time += extras_time;
        self.step.overhead_time += started.elapsed().saturating_sub(extras_time);
        self.stats.steps.push(self.step);
        self.phase = match stop {
            Some(reason) => Phase::Finished(reason),
            None if self.room() == 0 => Phase::Finished(StopReason::ContextFull),
            None => Phase::Drafting,
        };
        Ok(StepOutcome {
            emitted: &self.tokens[self.emitted_from..],
            logprobs: &self.logprobs[mark.1..],
            commit_path: &self.commit_path,
            stop: self.stop_reason(),
        })
    }

    /// The fallible part of [`advance`](Self::advance): verification (which emits), the
    /// extras and the strategy's observation. Returns the stop condition that fired and the
    /// time spent reading extras.
    fn verify_and_observe(
        &mut self,
        logits: ArrayView2<'_, f32>,
        extras: &mut dyn StepExtras,
        draw: &mut dyn Draw,
    ) -> Result<(Option<StopReason>, Duration), DecodeError> {
        self.emitted_from = self.tokens.len();
        let seq = SequenceParts {
            config: &self.config,
            tokens: &mut self.tokens,
            prompt_len: self.prompt_len,
            constraint: self.constraint.as_mut(),
            logprobs: &mut self.logprobs,
            draw,
            scratch: &mut self.scratch,
        };
        let mut verifier = Verifier::new(&self.draft, logits.view(), seq, &mut self.verification);
        let verified = self.strategy.verify(&mut verifier);
        let stop = verified.and_then(|()| verifier.finish())?;
        self.check_verification()?;
        // The model keeps the root and the accepted drafts; the bonus is the new pending token.
        let offset = self.prefix_len;
        self.commit_path.clear();
        self.commit_path.extend(0..offset);
        self.commit_path
            .extend(self.verification.path.iter().map(|&n| n + offset));
        let extras_time = self.read_extras(extras)?;
        let needs = self.strategy.requirements();
        let feedback = StepFeedback {
            tree: &self.draft,
            logits,
            verification: &self.verification,
            emitted: &self.tokens[self.emitted_from..],
            tokens: &self.tokens,
            hidden_state: needs.hidden_state.then(|| self.hidden.view()),
            head_logits: needs.head_logits.then(|| self.heads.view()),
        };
        self.strategy.observe(&feedback)?;
        Ok((stop, extras_time))
    }

    fn check_verification(&self) -> Result<(), DecodeError> {
        let path = &self.verification.path;
        if path.first() != Some(&0) {
            return Err(DecodeError::Contract("verification must start at the root"));
        }
        self.draft.check_path(path)?;
        if self.tokens.len() - self.emitted_from != path.len() {
            return Err(DecodeError::Contract(
                "verification must emit one token per accepted node and the bonus",
            ));
        }
        Ok(())
    }

    /// Reads the hidden state or head logits at the last accepted node, if the strategy
    /// needs them; returns the time spent.
    fn read_extras(&mut self, extras: &mut dyn StepExtras) -> Result<Duration, DecodeError> {
        let started = Instant::now();
        let needs = self.strategy.requirements();
        let node = self.verification.last() + self.prefix_len;
        if needs.hidden_state {
            extras.hidden_state(node, &mut self.hidden)?;
        }
        if needs.head_logits {
            extras.head_logits(node, &mut self.heads)?;
            if self.heads.ncols() != self.vocab_size {
                return Err(DecodeError::VocabMismatch {
                    expected: self.vocab_size,
                    actual: self.heads.ncols(),
                });
            }
        }
        Ok(started.elapsed())
    }

    /// The tokens the model's cache must hold now: every token of the sequence but the
    /// pending one once a step has been committed, none before the first step.
    pub fn committed_len(&self) -> usize {
        if self.stats.steps.is_empty() {
            0
        } else {
            self.tokens.len() - 1
        }
    }

    /// Checks the model's reported committed length against
    /// [`committed_len`](Self::committed_len): call it after `start` (the cache must be
    /// empty) and after each commit. A model whose commit keeps the wrong nodes, or a cache
    /// that was not reset, would otherwise decode wrong tokens silently.
    pub fn check_committed(&self, model_committed: usize) -> Result<(), DecodeError> {
        let expected = self.committed_len();
        if model_committed != expected {
            return Err(DecodeError::CommittedLength {
                expected,
                actual: model_committed,
            });
        }
        Ok(())
    }

    /// Adds time the caller spent in the model for this step (forward and commit).
    pub fn record_model_time(&mut self, time: Duration) {
        if let Some(step) = self.stats.steps.last_mut() {
            step.model_time += time;
        }
    }

    /// Whether decoding has finished.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    /// Why decoding stopped, once it has.
    pub fn stop_reason(&self) -> Option<StopReason> {
        match self.phase {
            Phase::Finished(reason) => Some(reason),
            _ => None,
        }
    }

    /// The logprobs of the tokens generated so far, if the configuration asks for them.
    pub fn logprobs(&self) -> &[TokenLogprob] {
        &self.logprobs
    }

    /// The tokens generated so far.
    pub fn generated(&self) -> &[Token] {
        &self.tokens[self.prompt_len.min(self.tokens.len())..]
    }

    /// The prompt and the generated tokens.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// What the strategy needs from the model beyond logits.
    pub fn requirements(&self) -> crate::Requirements {
        self.strategy.requirements()
    }

    /// Statistics so far.
    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &DecodeConfig {
        &self.config
    }

    /// The strategy.
    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    /// The strategy, mutably.
    pub fn strategy_mut(&mut self) -> &mut S {
        &mut self.strategy
    }

    /// Gives back the strategy.
    pub fn into_strategy(self) -> S {
        self.strategy
    }
}
