//! Logits processors: edits of a node's logits that depend on the tokens before it.
//!
//! Penalties, biases and bans are functions of a node's *history*: the committed context
//! (prompt and generated tokens) followed by the node's own ancestors in the tree. The decoder
//! applies the processors of a [`DecodeConfig`](crate::DecodeConfig) to each row it draws a
//! token from, with that row's own history, before the constraint's mask and the
//! [`Sampling`](crate::Sampling) rule; plain decoding does exactly the same at every step, so
//! a processed distribution is the same under every strategy. Because verification only draws
//! along the path it accepts, a row is processed only when a token is drawn from it.
//!
//! | processor | definition | history it reads |
//! | --- | --- | --- |
//! | [`RepetitionPenalty`] | Keskar et al. (CTRL) as Hugging Face: a logit `x` of a token seen before becomes `x / r` if `x > 0`, else `x * r` | prompt and generated tokens |
//! | [`FrequencyPenalty`] | OpenAI: `x - f * count` | generated tokens |
//! | [`PresencePenalty`] | OpenAI: `x - p` if the token occurred | generated tokens |
//! | [`LogitBias`] | OpenAI: `x + bias[token]` (`-inf` bans) | none |
//! | [`NoRepeatNgram`] | Hugging Face: ban a token that would repeat an `n`-gram | prompt and generated tokens |
//!
//! "Generated" counts every token after the prompt, the pending one and the node's ancestors
//! included. Implement [`LogitsProcessor`] for anything else.

use std::collections::HashMap;
use std::fmt;

use crate::error::DecodeError;
use crate::tree::Token;

/// The tokens before the position whose logits are processed: the committed context, then the
/// drafted tokens on the node's path (its ancestors below the tree's root, and the node).
#[derive(Clone, Copy, Debug)]
pub struct History<'a> {
    committed: &'a [Token],
    path: &'a [Token],
    prompt_len: usize,
}

impl<'a> History<'a> {
    /// `committed` (its first `prompt_len` tokens are the prompt) followed by `path`.
    pub fn new(committed: &'a [Token], path: &'a [Token], prompt_len: usize) -> Self {
        Self {
            committed,
            path,
            prompt_len: prompt_len.min(committed.len()),
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.committed.len() + self.path.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many of the first tokens are the prompt.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// Token `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<Token> {
        match i.checked_sub(self.committed.len()) {
            None => Some(self.committed[i]),
            Some(j) => self.path.get(j).copied(),
        }
    }

    /// The last token.
    pub fn last(&self) -> Option<Token> {
        self.path.last().or(self.committed.last()).copied()
    }

    /// Every token, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Token> + 'a {
        self.committed.iter().chain(self.path).copied()
    }

    /// The tokens after the prompt, oldest first.
    pub fn generated(&self) -> impl Iterator<Item = Token> + 'a {
        self.committed[self.prompt_len..]
            .iter()
            .chain(self.path)
            .copied()
    }

    /// The last `n` tokens (fewer if the history is shorter), oldest first.
    pub fn suffix(&self, n: usize) -> Vec<Token> {
        let skip = self.len().saturating_sub(n);
        self.iter().skip(skip).collect()
    }
}

/// An edit of a logits row that depends on the tokens before it.
///
/// # Contract
///
/// [`process`](Self::process) must be a pure function of `history` and the row: the decoder
/// calls it for rows of tree nodes in any order, some never, and plain decoding calls it once
/// per step, so any state that depended on the call sequence would make speculation change
/// the output. It may set logits to any value but NaN (`-inf` bans a token).
/// [`validate`](Self::validate) is called once when a sequence starts.
pub trait LogitsProcessor: fmt::Debug + Send + Sync {
    /// A short name for reports.
    fn name(&self) -> &str;

    /// Edits `logits` (one per token) for the position after `history`.
    fn process(&self, history: &History<'_>, logits: &mut [f32]);

    /// Checks the processor against the vocabulary size.
    fn validate(&self, vocab_size: usize) -> Result<(), DecodeError> {
        let _ = vocab_size;
        Ok(())
    }
}

fn check_factor(name: &str, value: f32, at_least: f32) -> Result<(), DecodeError> {
    if value.is_finite() && value >= at_least {
        Ok(())
    } else {
        Err(DecodeError::config(format!(
            "{name} must be finite and >= {at_least}, got {value}"
        )))
    }
}

/// Occurrences of each token.
fn counts(tokens: impl Iterator<Item = Token>) -> HashMap<Token, u32> {
    let mut counts = HashMap::new();
    for token in tokens {
        *counts.entry(token).or_insert(0) += 1;
    }
    counts
}

/// Divides positive logits of seen tokens by `r` and multiplies the others by it (Keskar et
/// al., 2019; Hugging Face's `repetition_penalty`). `r > 1` discourages repetition; `1` is
/// no-op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RepetitionPenalty(pub f32);

impl LogitsProcessor for RepetitionPenalty {
    fn name(&self) -> &str {
        "repetition_penalty"
    }

    fn process(&self, history: &History<'_>, logits: &mut [f32]) {
        let r = self.0;
        for token in counts(history.iter()).into_keys() {
            if let Some(x) = logits.get_mut(token as usize) {
                *x = if *x > 0.0 { *x / r } else { *x * r };
            }
        }
    }

    fn validate(&self, _vocab_size: usize) -> Result<(), DecodeError> {
        if self.0.is_finite() && self.0 > 0.0 {
            Ok(())
        } else {
            Err(DecodeError::config(format!(
                "the repetition penalty must be finite and > 0, got {}",
                self.0
            )))
        }
    }
}

/// Subtracts `f` times a token's number of occurrences among the generated tokens (OpenAI's
/// `frequency_penalty`; negative values encourage repetition).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrequencyPenalty(pub f32);

impl LogitsProcessor for FrequencyPenalty {
    fn name(&self) -> &str {
        "frequency_penalty"
    }

    fn process(&self, history: &History<'_>, logits: &mut [f32]) {
        for (token, count) in counts(history.generated()) {
            if let Some(x) = logits.get_mut(token as usize) {
                *x -= self.0 * count as f32;
            }
        }
    }

    fn validate(&self, _vocab_size: usize) -> Result<(), DecodeError> {
        check_factor("the frequency penalty", self.0, f32::MIN)
    }
}

/// Subtracts `p` from the logit of every token that occurs among the generated tokens
/// (OpenAI's `presence_penalty`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PresencePenalty(pub f32);

impl LogitsProcessor for PresencePenalty {
    fn name(&self) -> &str {
        "presence_penalty"
    }

    fn process(&self, history: &History<'_>, logits: &mut [f32]) {
        for token in counts(history.generated()).into_keys() {
            if let Some(x) = logits.get_mut(token as usize) {
                *x -= self.0;
            }
        }
    }

    fn validate(&self, _vocab_size: usize) -> Result<(), DecodeError> {
        check_factor("the presence penalty", self.0, f32::MIN)
    }
}

/// Adds a bias to chosen tokens' logits (OpenAI's `logit_bias`); a bias of `-inf` bans the
/// token.
#[derive(Clone, Debug, PartialEq)]
pub struct LogitBias(pub Vec<(Token, f32)>);

impl LogitsProcessor for LogitBias {
    fn name(&self) -> &str {
        "logit_bias"
    }

    fn process(&self, _history: &History<'_>, logits: &mut [f32]) {
        for &(token, bias) in &self.0 {
            if let Some(x) = logits.get_mut(token as usize) {
                *x += bias;
            }
        }
    }

    fn validate(&self, vocab_size: usize) -> Result<(), DecodeError> {
        for &(token, bias) in &self.0 {
            if token as usize >= vocab_size {
                return Err(DecodeError::TokenOutOfVocab { token, vocab_size });
            }
            if bias.is_nan() || bias == f32::INFINITY {
                return Err(DecodeError::config(format!(
                    "the logit bias of token {token} must be a number or -inf, got {bias}"
                )));
            }
        }
        Ok(())
    }
}

/// Bans every token that would complete an `n`-gram already present in the history (Hugging
/// Face's `no_repeat_ngram_size`; `n >= 1`, `n = 1` bans every token seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoRepeatNgram(pub usize);

impl LogitsProcessor for NoRepeatNgram {
    fn name(&self) -> &str {
        "no_repeat_ngram"
    }

    fn process(&self, history: &History<'_>, logits: &mut [f32]) {
        let n = self.0;
        let len = history.len();
        // An n-gram to repeat needs n tokens of history.
        if n == 0 || len < n {
            return;
        }
        let tokens: Vec<Token> = history.iter().collect();
        let prefix = &tokens[len + 1 - n..];
        for start in 0..=len - n {
            if tokens[start..start + n - 1] == *prefix
                && let Some(x) = logits.get_mut(tokens[start + n - 1] as usize)
            {
                *x = f32::NEG_INFINITY;
            }
        }
    }

    fn validate(&self, _vocab_size: usize) -> Result<(), DecodeError> {
        if self.0 == 0 {
            return Err(DecodeError::config("no_repeat_ngram needs n >= 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        p: &dyn LogitsProcessor,
        committed: &[Token],
        path: &[Token],
        prompt: usize,
    ) -> Vec<f32> {
        let mut logits = vec![1.0, -1.0, 2.0, 0.0, 0.5];
        p.process(&History::new(committed, path, prompt), &mut logits);
        logits
    }

    #[test]
    fn history_joins_committed_and_path() {
        let h = History::new(&[1, 2, 3], &[4, 5], 2);
        assert_eq!(h.iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(h.generated().collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(
            (h.len(), h.get(3), h.get(5), h.last()),
            (5, Some(4), None, Some(5))
        );
        assert_eq!(h.suffix(2), [4, 5]);
        assert_eq!(h.suffix(9), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn penalties_follow_their_definitions() {
        // Prompt [0], generated [1, 1, 2] (the last two on the path).
        let (committed, path) = (&[0, 1][..], &[1, 2][..]);
        assert_eq!(
            run(&RepetitionPenalty(2.0), committed, path, 1),
            [0.5, -2.0, 1.0, 0.0, 0.5]
        );
        assert_eq!(
            run(&FrequencyPenalty(0.5), committed, path, 1),
            [1.0, -2.0, 1.5, 0.0, 0.5]
        );
        assert_eq!(
            run(&PresencePenalty(0.5), committed, path, 1),
            [1.0, -1.5, 1.5, 0.0, 0.5]
        );
        let bias = LogitBias(vec![(3, 1.0), (0, f32::NEG_INFINITY)]);
        assert_eq!(
            run(&bias, committed, path, 1),
            [f32::NEG_INFINITY, -1.0, 2.0, 1.0, 0.5]
        );
    }

    #[test]
    fn no_repeat_ngram_bans_completions() {
        // History 1 2 3 1 2: the 3-gram "1 2 3" exists, so after "1 2" token 3 is banned.
        let out = run(&NoRepeatNgram(3), &[1, 2, 3, 1], &[2], 0);
        assert_eq!(out[3], f32::NEG_INFINITY);
        assert_eq!(out[..3], [1.0, -1.0, 2.0]);
        let seen = run(&NoRepeatNgram(1), &[4, 2], &[], 0);
        assert_eq!(
            (seen[4], seen[2], seen[0]),
            (f32::NEG_INFINITY, f32::NEG_INFINITY, 1.0)
        );
        assert_eq!(
            run(&NoRepeatNgram(4), &[1], &[], 0),
            [1.0, -1.0, 2.0, 0.0, 0.5]
        );
    }

    #[test]
    fn invalid_parameters_are_errors() {
        assert!(RepetitionPenalty(0.0).validate(5).is_err());
        assert!(RepetitionPenalty(f32::NAN).validate(5).is_err());
        assert!(FrequencyPenalty(f32::INFINITY).validate(5).is_err());
        assert!(PresencePenalty(-0.5).validate(5).is_ok());
        assert!(LogitBias(vec![(5, 1.0)]).validate(5).is_err());
        assert!(LogitBias(vec![(1, f32::NAN)]).validate(5).is_err());
        assert!(NoRepeatNgram(0).validate(5).is_err());
    }
}
