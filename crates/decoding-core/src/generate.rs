//! The single-sequence driver: a [`Decoder`] over a [`LogitsModel`].

use std::time::Instant;

use ndarray::ArrayViewMut2;

use crate::decoder::{DecodeConfig, Decoder, ModelExtras, StopReason};
use crate::error::DecodeError;
use crate::logprobs::TokenLogprob;
use crate::model::LogitsModel;
use crate::sampling::Draw;
use crate::stats::DecodeStats;
use crate::strategy::{Metric, Strategy};
use crate::tree::Token;

/// The result of [`generate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The generated tokens (the prompt excluded).
    pub tokens: Vec<Token>,
    /// Why decoding stopped.
    pub stop: StopReason,
    /// Per-step statistics.
    pub stats: DecodeStats,
    /// The strategy's own statistics.
    pub metrics: Vec<Metric>,
    /// One entry per generated token when the configuration asks for logprobs, else empty.
    pub logprobs: Vec<TokenLogprob>,
}

/// Decodes `prompt` with `strategy` until a stop condition of `config` fires.
///
/// The model is reset first, and its committed length is checked after the reset and after
/// every commit ([`Decoder::check_committed`]). `draw` supplies randomness when `config`
/// samples (it is never touched under greedy decoding; one draw per generated token
/// otherwise, as plain sampling). Equivalent to [`generate_streaming`] with no callback.
pub fn generate<S: Strategy>(
    model: &mut dyn LogitsModel,
    strategy: S,
    prompt: &[Token],
    config: &DecodeConfig,
    draw: &mut dyn Draw,
) -> Result<Generation, DecodeError> {
    generate_streaming(model, strategy, prompt, config, draw, &mut |_| {})
}

/// Like [`generate`], calling `on_tokens` with the tokens of each step as soon as they are
/// verified.
pub fn generate_streaming<S: Strategy>(
    model: &mut dyn LogitsModel,
    strategy: S,
    prompt: &[Token],
    config: &DecodeConfig,
    draw: &mut dyn Draw,
    on_tokens: &mut dyn FnMut(&[Token]),
) -> Result<Generation, DecodeError> {
    let mut decoder = Decoder::new(strategy, config.clone());
    model.reset()?;
    let vocab_size = model.vocab_size();
    decoder.start(
        prompt,
        vocab_size,
        model.tree_support(),
        model.max_context(),
    )?;
    decoder.check_committed(model.committed_len())?;
    let mut buffer: Vec<f32> = Vec::new();
    while !decoder.is_finished() {
        let tree = decoder.propose()?;
        let rows = tree.logits_rows();
        buffer.clear();
        // NaN until the model writes a row: a row it forgets is an error, not stale logits.
        buffer.resize(rows * vocab_size, f32::NAN);
        let mut logits = ArrayViewMut2::from_shape((rows, vocab_size), &mut buffer)
            .map_err(|_| DecodeError::Contract("logits buffer shape"))?;
        let started = Instant::now();
        model.forward(tree, logits.view_mut())?;
        let mut model_time = started.elapsed();
        let outcome = decoder.advance(logits.view(), &mut ModelExtras(&mut *model), draw)?;
        on_tokens(outcome.emitted);
        let started = Instant::now();
        model.commit(outcome.commit_path)?;
        model_time += started.elapsed();
        decoder.record_model_time(model_time);
        decoder.check_committed(model.committed_len())?;
    }
    Ok(Generation::from_decoder(&decoder))
}

impl Generation {
    /// The result of a finished decoder (a decoder still running reports
    /// [`StopReason::MaxNewTokens`] until it has a reason of its own).
    pub fn from_decoder<S: Strategy>(decoder: &Decoder<S>) -> Self {
        Self {
            tokens: decoder.generated().to_vec(),
            stop: decoder.stop_reason().unwrap_or(StopReason::MaxNewTokens),
            stats: decoder.stats().clone(),
            metrics: decoder.strategy().metrics(),
            logprobs: decoder.logprobs().to_vec(),
        }
    }
}
