//! The validated configuration of lookahead decoding.

use decoding_core::DecodeError;
use jacobi::Init;

/// A configuration value out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The window needs at least one column.
    #[error("the lookahead window W must be at least 1, got {0}")]
    ZeroWindow(usize),
    /// A window of more cells than [`LookaheadConfig::MAX_WINDOW_CELLS`].
    #[error(
        "a window of W = {window} columns and N - 1 = {levels} levels has more than {max} cells",
        max = LookaheadConfig::MAX_WINDOW_CELLS
    )]
    WindowTooLarge {
        /// `W`.
        window: usize,
        /// `N - 1`.
        levels: usize,
    },
    /// An n-gram needs a key and at least one token after it.
    #[error("the n-gram size N must be at least 2, got {0}")]
    NgramTooShort(usize),
    /// A pool bounded to no key at all.
    #[error("a pool's max_keys must be at least 1")]
    ZeroMaxKeys,
    /// A shared pool built for another n-gram size.
    #[error("the pool holds {pool}-grams but the strategy uses N = {config}")]
    PoolMismatch {
        /// The pool's n-gram size.
        pool: usize,
        /// The configuration's `N`.
        config: usize,
    },
}

impl From<ConfigError> for DecodeError {
    fn from(error: ConfigError) -> Self {
        DecodeError::strategy(error)
    }
}

/// Which window nodes ask the model for logits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowLogits {
    /// Only the top level, whose predictions extend the trajectories (the paper's choice; the
    /// lower levels are context only and cost no output projection).
    #[default]
    Top,
    /// Every window node, so the verifier may also accept along the window's own paths (the
    /// level-0 chain, a column); costs one logits row per window node.
    All,
}

/// How the window's new cells are first guessed (see [`LookaheadConfig::with_fill`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fill {
    /// From the pool when it holds an n-gram that fits the cell's column (its key and the
    /// cells below), else from the [`Init`] policy.
    #[default]
    Pool,
    /// From the [`Init`] policy only (the reference implementation's behaviour).
    Init,
}

/// Lookahead decoding's parameters: the window `W`, the n-gram size `N`, the guess set size
/// `G` (Fu et al.'s notation), where the pool learns from, and how new window cells are
/// guessed. Validated at construction.
///
/// A full step drafts at most `(W + G) * (N - 1)` nodes: `W * (N - 1)` for the window (the
/// root included) and `G * (N - 1)` for the candidates; shared prefixes are stored once.
///
/// ```
/// use lookahead::LookaheadConfig;
///
/// let config = LookaheadConfig::new(15, 5, 15).unwrap().with_prompt_pool(true);
/// assert_eq!(config.max_nodes(), 120);
/// assert!(LookaheadConfig::new(0, 5, 15).is_err());
/// assert!(LookaheadConfig::new(15, 1, 15).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookaheadConfig {
    window: usize,
    ngram: usize,
    guesses: usize,
    prompt_pool: bool,
    output_pool: bool,
    init: Init,
    window_logits: WindowLogits,
    fill: Fill,
    extension: usize,
}

impl LookaheadConfig {
    /// Default [`extension`](Self::extension): up to 16 tokens past a candidate's `N - 1`.
    pub const DEFAULT_EXTENSION: usize = 16;

    /// The most cells a window may hold, `W * (N - 1)` (the window keeps every cell's
    /// trajectory, so an unbounded `W` or `N` would be an unbounded allocation). Far above
    /// any useful window: the paper's largest, (15, 5), has 60 cells.
    pub const MAX_WINDOW_CELLS: usize = 1 << 16;

    /// `W >= 1` columns, `N >= 2` (n-gram size: `N - 1` window levels), up to `G`
    /// candidates verified per step (`G = 0` turns the verification branch off; any `G` is
    /// accepted, `usize::MAX` meaning no limit). The window may hold at most
    /// [`MAX_WINDOW_CELLS`](Self::MAX_WINDOW_CELLS) cells. The pool learns from the window and
    /// the output, not the prompt; first guesses come from [`Init::default`].
    pub fn new(window: usize, ngram: usize, guesses: usize) -> Result<Self, ConfigError> {
        if window == 0 {
            return Err(ConfigError::ZeroWindow(window));
        }
        if ngram < 2 {
            return Err(ConfigError::NgramTooShort(ngram));
        }
        let levels = ngram - 1;
        if window
            .checked_mul(levels)
            .is_none_or(|cells| cells > Self::MAX_WINDOW_CELLS)
        {
            return Err(ConfigError::WindowTooLarge { window, levels });
        }
        Ok(Self {
            window,
            ngram,
            guesses,
            prompt_pool: false,
            output_pool: true,
            init: Init::default(),
            window_logits: WindowLogits::default(),
            fill: Fill::default(),
            extension: Self::DEFAULT_EXTENSION,
        })
    }

    /// Also seeds the pool with every n-gram of the prompt (the paper's "prompt as reference"
    /// variant). Off by default.
    pub fn with_prompt_pool(mut self, on: bool) -> Self {
        self.prompt_pool = on;
        self
    }

    /// Feeds the pool every n-gram of the output as it is emitted (verified n-grams). On by
    /// default.
    pub fn with_output_pool(mut self, on: bool) -> Self {
        self.output_pool = on;
        self
    }

    /// The policy for first guesses (window cells the pool has nothing for).
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Which window nodes ask for logits.
    pub fn with_window_logits(mut self, logits: WindowLogits) -> Self {
        self.window_logits = logits;
        self
    }

    /// How new window cells are guessed.
    pub fn with_fill(mut self, fill: Fill) -> Self {
        self.fill = fill;
        self
    }

    /// Lets each candidate run up to `extra` tokens past its `N - 1`, by walking the pool:
    /// the token after a draft's last `N - 1` tokens is the last token of the most recent
    /// pool n-gram that starts with them. Extensions only use the node budget the window and
    /// the candidates leave (at most [`max_nodes`](Self::max_nodes) unless the decoder gives
    /// more). `0` keeps the paper's fixed `N - 1`; any value is accepted (`usize::MAX`: as far
    /// as the pool and the budget allow).
    pub fn with_extension(mut self, extra: usize) -> Self {
        self.extension = extra;
        self
    }

    /// `W`: columns of the window.
    pub fn window(&self) -> usize {
        self.window
    }

    /// `N`: the n-gram size; the window has `N - 1` levels.
    pub fn ngram(&self) -> usize {
        self.ngram
    }

    /// `G`: candidates verified per step, and n-grams the pool keeps per key.
    pub fn guesses(&self) -> usize {
        self.guesses
    }

    /// Whether the pool is seeded from the prompt.
    pub fn prompt_pool(&self) -> bool {
        self.prompt_pool
    }

    /// Whether the pool learns the output's n-grams.
    pub fn output_pool(&self) -> bool {
        self.output_pool
    }

    /// The first-guess policy.
    pub fn init(&self) -> Init {
        self.init
    }

    /// Which window nodes ask for logits.
    pub fn window_logits(&self) -> WindowLogits {
        self.window_logits
    }

    /// How new window cells are guessed.
    pub fn fill(&self) -> Fill {
        self.fill
    }

    /// The most tokens a candidate may run past its `N - 1`.
    pub fn extension(&self) -> usize {
        self.extension
    }

    /// The paper's node count, `(W + G) * (N - 1)`: the whole window and `G` candidates of
    /// `N - 1` tokens. Size
    /// [`DecodeConfig::with_max_nodes`](decoding_core::DecodeConfig::with_max_nodes) to it to
    /// run the full algorithm (a smaller budget shrinks both branches in proportion; what
    /// deduplication saves goes to candidate extensions). Saturates at `usize::MAX` for an
    /// unbounded `G`.
    pub fn max_nodes(&self) -> usize {
        self.window
            .saturating_add(self.guesses)
            .saturating_mul(self.ngram - 1)
    }
}
