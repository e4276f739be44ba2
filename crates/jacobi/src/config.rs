//! The validated configuration of Jacobi decoding.

use decoding_core::DecodeError;

use crate::init::Init;

/// A configuration value out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The window must hold at least one guess.
    #[error("the jacobi window k must be at least 1, got {0}")]
    ZeroWindow(usize),
}

impl From<ConfigError> for DecodeError {
    fn from(error: ConfigError) -> Self {
        DecodeError::strategy(error)
    }
}

/// How Jacobi decoding runs: the window `k` (guesses per step, the paper's `m`) and where
/// first guesses come from. Validated at construction.
///
/// ```
/// use jacobi::{Init, JacobiConfig};
///
/// let config = JacobiConfig::new(8).unwrap().with_init(Init::RepeatLast);
/// assert_eq!((config.window(), config.init()), (8, Init::RepeatLast));
/// assert!(JacobiConfig::new(0).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JacobiConfig {
    window: usize,
    init: Init,
}

impl JacobiConfig {
    /// Window of `window` guesses (at least 1), initialised by [`Init::default`].
    pub fn new(window: usize) -> Result<Self, ConfigError> {
        if window == 0 {
            return Err(ConfigError::ZeroWindow(window));
        }
        Ok(Self {
            window,
            init: Init::default(),
        })
    }

    /// Sets the initialisation policy.
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// The window `k`: guesses drafted per step (fewer when the node budget or the tokens left
    /// to generate are smaller).
    pub fn window(&self) -> usize {
        self.window
    }

    /// The initialisation policy.
    pub fn init(&self) -> Init {
        self.init
    }
}
