//! Configuration of Jacobi decoding: infallible setters, one validation when the strategy is
//! built, written and read as the `key=value` options of a strategy specification (the style
//! of every configuration in this workspace, after `draft::DraftConfig`).

use std::fmt;
use std::str::FromStr;

use decoding_core::DecodeError;

use crate::init::Init;

/// A configuration value out of range, or an option that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field with an invalid value.
    #[error("invalid jacobi option `{field}`: {message}")]
    Invalid {
        /// The field (its option name).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An option the configuration does not have.
    #[error("unknown jacobi option `{0}` (options: {options})", options = JacobiConfig::KEYS.join(", "))]
    Unknown(String),
}

impl ConfigError {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<ConfigError> for DecodeError {
    fn from(error: ConfigError) -> Self {
        DecodeError::strategy(error)
    }
}

/// How Jacobi decoding runs: the window `k` (guesses per step, the paper's `m`) and where
/// first guesses come from. Set the fields (or use the `with_` setters); [`Jacobi::new`]
/// validates.
///
/// Written (`Display`) and read (`FromStr`) as the options of a specification, `k=8,init=ngram`
/// (every field).
///
/// ```
/// use jacobi::{Init, Jacobi, JacobiConfig};
///
/// let config = JacobiConfig::new(8).with_init(Init::RepeatLast);
/// assert_eq!((config.window, config.init), (8, Init::RepeatLast));
/// assert_eq!(config.to_string(), "k=8,init=last");
/// assert_eq!("init=last".parse::<JacobiConfig>(), Ok(config));
/// assert!(Jacobi::new(JacobiConfig::new(0)).is_err());
/// ```
///
/// [`Jacobi::new`]: crate::Jacobi::new
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JacobiConfig {
    /// Guesses drafted per step (at least 1; fewer when the node budget or the tokens left to
    /// generate are smaller). Option `k`.
    pub window: usize,
    /// Where first guesses come from. Option `init`.
    pub init: Init,
}

impl JacobiConfig {
    /// The options, in the order `Display` writes them.
    pub const KEYS: &'static [&'static str] = &["k", "init"];

    /// The window when none is given.
    pub const DEFAULT_WINDOW: usize = 8;

    /// A window of `window` guesses, initialised by [`Init::default`].
    pub fn new(window: usize) -> Self {
        Self {
            window,
            init: Init::default(),
        }
    }

    /// Sets the initialisation policy.
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Sets the option `key` (one of [`KEYS`](Self::KEYS)) from its text.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let value = value.trim();
        match key {
            "k" => {
                self.window = value
                    .parse()
                    .map_err(|e| ConfigError::invalid("k", format!("`{value}`: {e}")))?;
            }
            "init" => self.init = value.parse().map_err(|e| ConfigError::invalid("init", e))?,
            other => return Err(ConfigError::Unknown(other.to_string())),
        }
        Ok(())
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window == 0 {
            return Err(ConfigError::invalid(
                "k",
                "the window must hold at least 1 guess",
            ));
        }
        Ok(())
    }
}

impl Default for JacobiConfig {
    fn default() -> Self {
        Self::new(Self::DEFAULT_WINDOW)
    }
}

/// Every option: parses back to the same configuration.
impl fmt::Display for JacobiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "k={},init={}", self.window, self.init)
    }
}

/// `key=value,...` (the defaults for keys not given), validated.
impl FromStr for JacobiConfig {
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
    fn every_configuration_round_trips() {
        for init in [
            Init::default(),
            Init::Prompt { seed: 7 },
            Init::RepeatLast,
            Init::Pad(3),
            Init::Ngram,
        ] {
            for window in [1, 8, 100] {
                let config = JacobiConfig::new(window).with_init(init);
                assert_eq!(config.to_string().parse::<JacobiConfig>(), Ok(config));
            }
        }
        assert_eq!("".parse::<JacobiConfig>(), Ok(JacobiConfig::default()));
    }

    #[test]
    fn bad_options_are_named() {
        for (text, field) in [
            ("k=0", "`k`"),
            ("k=x", "`k`"),
            ("k=-1", "`k`"),
            ("init=pad:x", "`init`"),
            ("init=random", "`init`"),
            ("window=3", "`window`"),
            ("k", "`k`"),
        ] {
            let err = text.parse::<JacobiConfig>().unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }
}
