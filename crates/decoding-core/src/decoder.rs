//! The per-sequence decoding state machine: draft, (model runs), verify, emit, commit.

use std::time::{Duration, Instant};

use ndarray::{Array1, Array2, ArrayView2};

use crate::error::DecodeError;
use crate::model::{HeadLogits, HiddenStates, TreeSupport};
use crate::sampling::{Draw, Sampling};
use crate::stats::{DecodeStats, StepRecord};
use crate::strategy::{DraftContext, StepFeedback, Strategy};
use crate::tree::{NodeId, Token, TokenTree};
use crate::verify::{Verification, check_logits_shape};

/// When to stop and how to choose tokens. Checked against the vocabulary when decoding starts.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeConfig {
    max_new_tokens: usize,
    eos_tokens: Vec<Token>,
    stop_sequences: Vec<Vec<Token>>,
    sampling: Sampling,
    max_nodes: usize,
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
            max_nodes: Self::DEFAULT_MAX_NODES,
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

    /// At most `max_nodes` tree nodes per forward pass, root included (default 64).
    pub fn with_max_nodes(mut self, max_nodes: usize) -> Self {
        self.max_nodes = max_nodes;
        self
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
///                        outcome = advance(logits) ; model.commit(outcome.commit_path) }
/// ```
/// The first step's tree is the prompt (without logits) with the draft hung below its last
/// token, so the prefill forward pass already produces, and verifies, the first tokens.
/// Afterwards the model's cache holds every token but the last emitted one (the pending
/// token, root of the next draft). [`generate`](crate::generate) runs this loop over a
/// [`LogitsModel`](crate::LogitsModel); a batching engine runs it for many sequences.
pub struct Decoder<S> {
    strategy: S,
    config: DecodeConfig,
    vocab_size: usize,
    chains_only: bool,
    max_context: Option<usize>,
    tokens: Vec<Token>,
    prompt_len: usize,
    prefix_len: usize,
    draft: TokenTree,
    grafted: TokenTree,
    verification: Verification,
    scratch: Vec<f64>,
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
            strategy,
            config,
            vocab_size: 0,
            chains_only: false,
            max_context: None,
            tokens: Vec::new(),
            prompt_len: 0,
            prefix_len: 0,
            draft: TokenTree::new(0),
            grafted: TokenTree::new(0),
            verification: Verification::default(),
            scratch: Vec::new(),
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
    /// limit, whose cache must be empty. Resets statistics and the strategy.
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
        self.vocab_size = vocab_size;
        self.chains_only = tree_support == TreeSupport::ChainsOnly;
        self.max_context = max_context;
        self.tokens.clear();
        self.tokens.extend_from_slice(prompt);
        self.prompt_len = prompt.len();
        self.prefix_len = prompt.len() - 1;
        self.stats = DecodeStats {
            prompt_tokens: prompt.len(),
            ..DecodeStats::default()
        };
        self.strategy.begin(prompt, vocab_size)?;
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
        let ctx = DraftContext {
            tokens: &self.tokens,
            prompt_len: self.prompt_len,
            max_nodes: self.config.max_nodes,
            max_depth: (remaining - 1).min(self.room() - 1),
            chains_only: self.chains_only,
            vocab_size: self.vocab_size,
        };
        let pending = ctx.pending();
        self.draft.reset(pending);
        self.strategy.draft(&ctx, &mut self.draft)?;
        self.check_draft(pending)?;
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

    fn check_draft(&self, pending: Token) -> Result<(), DecodeError> {
        let tree = &self.draft;
        if tree.root_token() != pending || !tree.needs_logits(0) {
            return Err(DecodeError::State(
                "a strategy must keep the root: the pending token, with logits",
            ));
        }
        if tree.len() > self.config.max_nodes {
            return Err(crate::TreeError::OverBudget {
                nodes: tree.len(),
                budget: self.config.max_nodes,
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
    /// emits tokens (stopping exactly where a stop condition fires) and lets the strategy
    /// learn. The caller then commits `commit_path` in the model.
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
        self.strategy.verify(
            &self.draft,
            logits.view(),
            &self.config.sampling,
            draw,
            &mut self.scratch,
            &mut self.verification,
        )?;
        self.check_verification()?;
        let stop = self.emit();
        let emitted = self.tokens.len() - self.emitted_from;
        let kept = &self.verification.path[..emitted];
        let offset = self.prefix_len;
        self.commit_path.clear();
        self.commit_path.extend(0..offset);
        self.commit_path.extend(kept.iter().map(|&n| n + offset));
        let accepted = self.verification.accepted().min(emitted);
        for &node in &self.verification.path[1..=accepted] {
            self.stats.credit_sources(self.draft.sources(node));
        }
        let extras_time = self.read_extras(extras)?;
        let feedback = StepFeedback {
            tree: &self.draft,
            logits,
            verification: &self.verification,
            emitted: &self.tokens[self.emitted_from..],
            tokens: &self.tokens,
            hidden_state: self
                .strategy
                .requirements()
                .hidden_state
                .then(|| self.hidden.view()),
            head_logits: self
                .strategy
                .requirements()
                .head_logits
                .then(|| self.heads.view()),
        };
        self.strategy.observe(&feedback)?;
        self.prefix_len = 0;
        self.step.accepted = accepted;
        self.step.emitted = emitted;
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
            commit_path: &self.commit_path,
            stop: self.stop_reason(),
        })
    }

    fn check_verification(&self) -> Result<(), DecodeError> {
        let path = &self.verification.path;
        if path.first() != Some(&0) {
            return Err(DecodeError::State("verification must start at the root"));
        }
        self.draft.check_path(path)?;
        check_tokens([&self.verification.bonus], self.vocab_size)
    }

    /// Appends the accepted drafts and the bonus to the sequence, stopping where a stop
    /// condition fires.
    fn emit(&mut self) -> Option<StopReason> {
        self.emitted_from = self.tokens.len();
        let path = &self.verification.path;
        let drafted = path[1..].iter().map(|&n| self.draft.token(n));
        for token in drafted.chain([self.verification.bonus]) {
            self.tokens.push(token);
            if let Some(reason) = self.stop_after_push() {
                return Some(reason);
            }
        }
        None
    }

    fn stop_after_push(&self) -> Option<StopReason> {
        let generated = &self.tokens[self.prompt_len..];
        let last = generated[generated.len() - 1];
        if self.config.eos_tokens.contains(&last) {
            return Some(StopReason::Eos(last));
        }
        if let Some(i) = self
            .config
            .stop_sequences
            .iter()
            .position(|s| generated.ends_with(s))
        {
            return Some(StopReason::StopSequence(i));
        }
        (generated.len() >= self.config.max_new_tokens).then_some(StopReason::MaxNewTokens)
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
