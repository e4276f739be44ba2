//! What a check runs: its seed and size, the tolerance of the comparisons, and which extras
//! it compares.

use decoding_core::Token;

/// The settings of [`check_model`](crate::check_model) and
/// [`check_batch_model`](crate::check_batch_model).
///
/// Setters are infallible; the configuration is validated once, when a check starts (an
/// invalid one gives [`CheckError::Config`](crate::CheckError::Config)). The default is
/// small enough for CI on a real model and exact: every logits row, hidden state and head
/// logit must be bit-identical (`==`) to the recompute.
///
/// ```
/// use decoding_testkit::CheckConfig;
///
/// // An engine whose kernels are not batch invariant: logits within 1e-3 of the recompute,
/// // argmax flips tolerated only at near-ties (reported in the `CheckReport`).
/// let config = CheckConfig::default().with_tolerance(1e-3).with_seed(7);
/// assert_eq!(config.abs_tolerance(), 1e-3);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CheckConfig {
    seed: u64,
    episodes: usize,
    rounds: usize,
    max_nodes: usize,
    max_context: usize,
    tokens: Option<Vec<Token>>,
    abs_tolerance: f32,
    rel_tolerance: f32,
    tie_margin: Option<f32>,
    hidden_states: bool,
    head_logits: bool,
    error_checks: bool,
    sequences: usize,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            episodes: 3,
            rounds: 16,
            max_nodes: 10,
            max_context: 64,
            tokens: None,
            abs_tolerance: 0.0,
            rel_tolerance: 0.0,
            tie_margin: None,
            hidden_states: true,
            head_logits: true,
            error_checks: true,
            sequences: 3,
        }
    }
}

impl CheckConfig {
    /// The default configuration (exact comparisons).
    pub fn new() -> Self {
        Self::default()
    }

    /// The seed of every random choice (trees, tokens, commits, truncations). Every
    /// violation names it with the episode and step, and the same seed replays the same
    /// calls.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Number of episodes: each starts from an empty context (after `reset`) and is checked
    /// against the recompute at its end. Default 3.
    pub fn with_episodes(mut self, episodes: usize) -> Self {
        self.episodes = episodes;
        self
    }

    /// Calls per episode: forwards with their commits, truncations, resets and misuse
    /// checks (for the batch check: batched forward passes). Default 16.
    pub fn with_rounds(mut self, rounds: usize) -> Self {
        self.rounds = rounds;
        self
    }

    /// Largest random tree, in nodes (a prefill chain may be twice as long). Default 10.
    pub fn with_max_nodes(mut self, nodes: usize) -> Self {
        self.max_nodes = nodes;
        self
    }

    /// Longest context the check builds (committed tokens plus tree depth); the model's own
    /// [`max_context`](decoding_core::LogitsModel::max_context) lowers it further. Longer
    /// contexts make each recompute slower. Default 64.
    pub fn with_max_context(mut self, tokens: usize) -> Self {
        self.max_context = tokens;
        self
    }

    /// Draws the trees' tokens from `tokens` only (default: the whole vocabulary). Useful to
    /// keep away from special tokens, or to make a tiny alphabet that repeats.
    pub fn with_tokens(mut self, tokens: impl IntoIterator<Item = Token>) -> Self {
        self.tokens = Some(tokens.into_iter().collect());
        self
    }

    /// Accepts logits (and hidden states and head logits) within `abs` of the recompute,
    /// element by element, for engines that are not bit-exact across batch shapes. An argmax
    /// that differs from the recompute's is accepted only at a near-tie (see
    /// [`with_tie_margin`](Self::with_tie_margin)) and listed in the report.
    pub fn with_tolerance(mut self, abs: f32) -> Self {
        self.abs_tolerance = abs;
        self
    }

    /// Also accepts a difference up to `rel` times the recompute's magnitude (an element
    /// passes when `|actual - expected| <= abs + rel * |expected|`).
    pub fn with_relative_tolerance(mut self, rel: f32) -> Self {
        self.rel_tolerance = rel;
        self
    }

    /// An argmax flip is a near-tie, not a violation, when the recompute's logits of the two
    /// tokens are within `margin`. Default: the sum of the two tokens' tolerances (the most
    /// a flip can need when every element is within tolerance). A large tolerance with a
    /// small margin checks the argmax only: `with_tolerance(f32::INFINITY).with_tie_margin(0.05)`.
    pub fn with_tie_margin(mut self, margin: f32) -> Self {
        self.tie_margin = Some(margin);
        self
    }

    /// Requires bit-identical results again (undoes the tolerance setters).
    pub fn exact(mut self) -> Self {
        self.abs_tolerance = 0.0;
        self.rel_tolerance = 0.0;
        self.tie_margin = None;
        self
    }

    /// Whether to compare the final hidden states of nodes that asked for logits with the
    /// recompute's, when the model exposes them. Default true.
    pub fn with_hidden_states(mut self, check: bool) -> Self {
        self.hidden_states = check;
        self
    }

    /// Whether to compare engine-computed decoding-head logits with the recompute's, when
    /// the model has them. Default true.
    pub fn with_head_logits(mut self, check: bool) -> Self {
        self.head_logits = check;
        self
    }

    /// Whether to check that misuse is rejected with an error that leaves the committed
    /// context unchanged: a second commit, a commit without a forward, a path that is not
    /// root-to-node, a logits buffer of the wrong shape, a token outside the vocabulary.
    /// Default true.
    pub fn with_error_checks(mut self, check: bool) -> Self {
        self.error_checks = check;
        self
    }

    /// Most sequences in flight in the batch check. Default 3.
    pub fn with_sequences(mut self, sequences: usize) -> Self {
        self.sequences = sequences;
        self
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Episodes per check.
    pub fn episodes(&self) -> usize {
        self.episodes
    }

    /// Calls per episode.
    pub fn rounds(&self) -> usize {
        self.rounds
    }

    /// Largest random tree.
    pub fn max_nodes(&self) -> usize {
        self.max_nodes
    }

    /// Longest context built.
    pub fn max_context(&self) -> usize {
        self.max_context
    }

    /// The tokens drawn, if restricted.
    pub fn tokens(&self) -> Option<&[Token]> {
        self.tokens.as_deref()
    }

    /// The absolute tolerance (0: exact).
    pub fn abs_tolerance(&self) -> f32 {
        self.abs_tolerance
    }

    /// The relative tolerance (0: none).
    pub fn rel_tolerance(&self) -> f32 {
        self.rel_tolerance
    }

    /// The tie margin, if set.
    pub fn tie_margin(&self) -> Option<f32> {
        self.tie_margin
    }

    /// Whether every comparison must be bit-identical.
    pub fn is_exact(&self) -> bool {
        self.abs_tolerance == 0.0 && self.rel_tolerance == 0.0
    }

    /// Whether hidden states are compared.
    pub fn checks_hidden_states(&self) -> bool {
        self.hidden_states
    }

    /// Whether head logits are compared.
    pub fn checks_head_logits(&self) -> bool {
        self.head_logits
    }

    /// Whether misuse checks run.
    pub fn checks_errors(&self) -> bool {
        self.error_checks
    }

    /// Most sequences in flight in the batch check.
    pub fn sequences(&self) -> usize {
        self.sequences
    }

    /// Checks the configuration against a model with `vocab_size` tokens.
    pub(crate) fn validate(&self, vocab_size: usize) -> Result<(), String> {
        if vocab_size == 0 {
            return Err("the model reports an empty vocabulary".into());
        }
        if self.episodes == 0 || self.rounds == 0 {
            return Err(format!(
                "episodes and rounds must be at least 1 (got {} and {})",
                self.episodes, self.rounds
            ));
        }
        if self.max_nodes == 0 {
            return Err("max_nodes must be at least 1".into());
        }
        if self.max_context < 2 {
            return Err(format!(
                "max_context must be at least 2 tokens (got {})",
                self.max_context
            ));
        }
        if self.sequences == 0 {
            return Err("sequences must be at least 1".into());
        }
        for (name, value) in [
            ("absolute tolerance", self.abs_tolerance),
            ("relative tolerance", self.rel_tolerance),
            ("tie margin", self.tie_margin.unwrap_or(0.0)),
        ] {
            if value.is_nan() || value < 0.0 {
                return Err(format!(
                    "the {name} must be a non-negative number, got {value}"
                ));
            }
        }
        if let Some(tokens) = &self.tokens {
            if tokens.is_empty() {
                return Err("the token set is empty".into());
            }
            if let Some(&t) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
                return Err(format!(
                    "token {t} of the token set is outside the model's vocabulary of {vocab_size}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_are_named() {
        let ok = CheckConfig::default();
        assert!(ok.validate(4).is_ok());
        assert!(ok.validate(0).unwrap_err().contains("empty vocabulary"));
        let bad = |c: CheckConfig| c.validate(4).unwrap_err();
        assert!(bad(ok.clone().with_rounds(0)).contains("rounds"));
        assert!(bad(ok.clone().with_max_nodes(0)).contains("max_nodes"));
        assert!(bad(ok.clone().with_max_context(1)).contains("max_context"));
        assert!(bad(ok.clone().with_tolerance(-1.0)).contains("absolute tolerance"));
        assert!(bad(ok.clone().with_relative_tolerance(f32::NAN)).contains("relative"));
        assert!(bad(ok.clone().with_tokens([1, 9])).contains("token 9"));
        assert!(bad(ok.clone().with_tokens([])).contains("empty"));
        assert!(ok.clone().with_tolerance(1e-3).exact().is_exact());
    }
}
