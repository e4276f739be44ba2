//! Configuration of lookahead decoding: infallible setters, one validation when the strategy
//! is built, written and read as the `key=value` options of a strategy specification (the
//! workspace's one configuration style, as `jacobi::JacobiConfig` and `draft::DraftConfig`).

use std::fmt;
use std::str::FromStr;

use decoding_core::DecodeError;
use jacobi::Init;

/// A configuration value out of range, or an option that does not parse.
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
    /// An option whose text does not parse.
    #[error("invalid lookahead option `{field}`: {message}")]
    Invalid {
        /// The option.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An option the configuration does not have.
    #[error("unknown lookahead option `{0}` (options: {options})", options = LookaheadConfig::KEYS.join(", "))]
    Unknown(String),
}

impl ConfigError {
    /// The option a value error is about (`w`, `n`, ...), if any.
    pub fn option(&self) -> Option<&'static str> {
        match self {
            Self::ZeroWindow(_) => Some("w"),
            Self::WindowTooLarge { .. } => Some("w"),
            Self::NgramTooShort(_) => Some("n"),
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
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

/// How the window's new cells are first guessed (see [`LookaheadConfig::fill`]).
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
/// guessed. Set the fields (or use the `with_` setters); [`Lookahead::new`] validates.
///
/// A full step drafts at most `(W + G) * (N - 1)` nodes: `W * (N - 1)` for the window (the
/// root included) and `G * (N - 1)` for the candidates; shared prefixes are stored once.
///
/// Written (`Display`) and read (`FromStr`) as the options of a specification,
/// `w=15,n=5,g=15,pool=none,output=true,ext=16,init=prompt:0,logits=top,fill=pool` (every
/// field).
///
/// ```
/// use lookahead::{Lookahead, LookaheadConfig};
///
/// let config = LookaheadConfig::new(15, 5, 15).with_prompt_pool(true);
/// assert_eq!(config.max_nodes(), 120);
/// assert_eq!("pool=prompt".parse::<LookaheadConfig>(), Ok(config));
/// assert!(Lookahead::new(LookaheadConfig::new(0, 5, 15)).is_err());
/// assert!(Lookahead::new(LookaheadConfig::new(15, 1, 15)).is_err());
/// ```
///
/// [`Lookahead::new`]: crate::Lookahead::new
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LookaheadConfig {
    /// `W`: columns of the window, at least 1. Option `w`.
    pub window: usize,
    /// `N`: the n-gram size, at least 2; the window has `N - 1` levels. Option `n`.
    pub ngram: usize,
    /// `G`: candidates verified per step, and n-grams the pool keeps per key (`0` turns the
    /// verification branch off; any value is accepted, `usize::MAX` meaning no limit).
    /// Option `g`.
    pub guesses: usize,
    /// Whether the pool is also seeded with every n-gram of the prompt (the paper's "prompt
    /// as reference" variant; off by default). Option `pool=prompt|none`.
    pub prompt_pool: bool,
    /// Whether the pool learns every n-gram of the output as it is emitted (verified
    /// n-grams; on by default). Option `output`.
    pub output_pool: bool,
    /// The policy for first guesses (window cells the pool has nothing for). Option `init`.
    pub init: Init,
    /// Which window nodes ask for logits. Option `logits=top|all`.
    pub window_logits: WindowLogits,
    /// How new window cells are guessed. Option `fill=pool|init`.
    pub fill: Fill,
    /// The most tokens a candidate may run past its `N - 1`, by walking the pool: the token
    /// after a draft's last `N - 1` tokens is the last token of the most recent pool n-gram
    /// that starts with them. Extensions only use the node budget the window and the
    /// candidates leave (at most [`max_nodes`](Self::max_nodes) unless the decoder gives
    /// more). `0` keeps the paper's fixed `N - 1`; any value is accepted (`usize::MAX`: as far
    /// as the pool and the budget allow). Option `ext`.
    pub extension: usize,
}

impl LookaheadConfig {
    /// The options, in the order `Display` writes them.
    pub const KEYS: &'static [&'static str] = &[
        "w", "n", "g", "pool", "output", "ext", "init", "logits", "fill",
    ];

    /// Default [`extension`](Self::extension): up to 16 tokens past a candidate's `N - 1`.
    pub const DEFAULT_EXTENSION: usize = 16;

    /// The most cells a window may hold, `W * (N - 1)` (the window keeps every cell's
    /// trajectory, so an unbounded `W` or `N` would be an unbounded allocation). Far above
    /// any useful window: the paper's largest, (15, 5), has 60 cells.
    pub const MAX_WINDOW_CELLS: usize = 1 << 16;

    /// `W` columns, n-grams of `N`, up to `G` candidates a step; the pool learns from the
    /// window and the output, not the prompt; first guesses come from [`Init::default`].
    pub fn new(window: usize, ngram: usize, guesses: usize) -> Self {
        Self {
            window,
            ngram,
            guesses,
            prompt_pool: false,
            output_pool: true,
            init: Init::default(),
            window_logits: WindowLogits::default(),
            fill: Fill::default(),
            extension: Self::DEFAULT_EXTENSION,
        }
    }

    /// Sets [`prompt_pool`](Self::prompt_pool).
    pub fn with_prompt_pool(mut self, on: bool) -> Self {
        self.prompt_pool = on;
        self
    }

    /// Sets [`output_pool`](Self::output_pool).
    pub fn with_output_pool(mut self, on: bool) -> Self {
        self.output_pool = on;
        self
    }

    /// Sets [`init`](Self::init).
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Sets [`window_logits`](Self::window_logits).
    pub fn with_window_logits(mut self, logits: WindowLogits) -> Self {
        self.window_logits = logits;
        self
    }

    /// Sets [`fill`](Self::fill).
    pub fn with_fill(mut self, fill: Fill) -> Self {
        self.fill = fill;
        self
    }

    /// Sets [`extension`](Self::extension).
    pub fn with_extension(mut self, extra: usize) -> Self {
        self.extension = extra;
        self
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
            .saturating_mul(self.ngram.saturating_sub(1))
    }

    /// Sets the option `key` (one of [`KEYS`](Self::KEYS)) from its text.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        fn parsed<T: FromStr>(field: &'static str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: fmt::Display,
        {
            value.parse().map_err(|e| ConfigError::Invalid {
                field,
                message: format!("`{value}`: {e}"),
            })
        }
        fn choice<T: Copy>(
            field: &'static str,
            value: &str,
            names: &[(&str, T)],
        ) -> Result<T, ConfigError> {
            names
                .iter()
                .find(|(name, _)| *name == value)
                .map(|&(_, choice)| choice)
                .ok_or_else(|| ConfigError::Invalid {
                    field,
                    message: format!(
                        "`{value}`: expected {}",
                        names
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                })
        }
        let value = value.trim();
        match key {
            "w" => self.window = parsed("w", value)?,
            "n" => self.ngram = parsed("n", value)?,
            "g" => self.guesses = parsed("g", value)?,
            "pool" => {
                self.prompt_pool = choice("pool", value, &[("prompt", true), ("none", false)])?
            }
            "output" => self.output_pool = parsed("output", value)?,
            "ext" => self.extension = parsed("ext", value)?,
            "init" => self.init = parsed("init", value)?,
            "logits" => {
                self.window_logits = choice(
                    "logits",
                    value,
                    &[("top", WindowLogits::Top), ("all", WindowLogits::All)],
                )?;
            }
            "fill" => {
                self.fill = choice("fill", value, &[("pool", Fill::Pool), ("init", Fill::Init)])?
            }
            other => return Err(ConfigError::Unknown(other.to_string())),
        }
        Ok(())
    }

    /// Checks every field: `W >= 1`, `N >= 2`, at most
    /// [`MAX_WINDOW_CELLS`](Self::MAX_WINDOW_CELLS) window cells.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window == 0 {
            return Err(ConfigError::ZeroWindow(self.window));
        }
        if self.ngram < 2 {
            return Err(ConfigError::NgramTooShort(self.ngram));
        }
        let levels = self.ngram - 1;
        if self
            .window
            .checked_mul(levels)
            .is_none_or(|cells| cells > Self::MAX_WINDOW_CELLS)
        {
            return Err(ConfigError::WindowTooLarge {
                window: self.window,
                levels,
            });
        }
        Ok(())
    }
}

/// The paper's defaults: `W = 15`, `N = 5`, `G = 15`.
impl Default for LookaheadConfig {
    fn default() -> Self {
        Self::new(15, 5, 15)
    }
}

/// Every option: parses back to the same configuration.
impl fmt::Display for LookaheadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "w={},n={},g={},pool={},output={},ext={},init={},logits={},fill={}",
            self.window,
            self.ngram,
            self.guesses,
            if self.prompt_pool { "prompt" } else { "none" },
            self.output_pool,
            self.extension,
            self.init,
            match self.window_logits {
                WindowLogits::All => "all",
                WindowLogits::Top => "top",
            },
            match self.fill {
                Fill::Init => "init",
                Fill::Pool => "pool",
            },
        )
    }
}

/// `key=value,...` (the [defaults](Self::default) for keys not given), validated.
impl FromStr for LookaheadConfig {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let unknown = |piece: &str| ConfigError::Unknown(piece.to_string());
        decoding_core::apply_options(&mut config, text, None, unknown, Self::set)?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_round_trip() {
        let configs = [
            LookaheadConfig::default(),
            LookaheadConfig::new(7, 3, 0)
                .with_prompt_pool(true)
                .with_output_pool(false)
                .with_init(Init::Ngram)
                .with_window_logits(WindowLogits::All)
                .with_fill(Fill::Init)
                .with_extension(usize::MAX),
            LookaheadConfig::new(1, 2, usize::MAX).with_init(Init::Pad(4)),
        ];
        for config in configs {
            assert_eq!(config.validate(), Ok(()));
            assert_eq!(config.to_string().parse::<LookaheadConfig>(), Ok(config));
        }
        assert_eq!(
            LookaheadConfig::default().to_string(),
            "w=15,n=5,g=15,pool=none,output=true,ext=16,init=prompt:0,logits=top,fill=pool"
        );
        assert_eq!(
            "".parse::<LookaheadConfig>(),
            Ok(LookaheadConfig::default())
        );
    }

    #[test]
    fn bad_options_are_named() {
        for (text, option) in [
            ("w=0", "w"),
            ("w=x", "w"),
            ("n=1", "n"),
            ("w=100000000", "w"),
            ("g=-1", "g"),
            ("pool=all", "pool"),
            ("output=maybe", "output"),
            ("ext=x", "ext"),
            ("init=random", "init"),
            ("logits=some", "logits"),
            ("fill=zero", "fill"),
        ] {
            let err = text.parse::<LookaheadConfig>().unwrap_err();
            assert_eq!(err.option(), Some(option), "{text}: {err}");
        }
        for text in ["depth=3", "w"] {
            let err = text.parse::<LookaheadConfig>().unwrap_err();
            assert!(matches!(err, ConfigError::Unknown(_)), "{text}: {err}");
        }
    }
}
