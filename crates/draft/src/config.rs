//! Configuration: the drafting mode and its sizes, validated once, written and read as the
//! `key=value` options of a strategy specification.

use std::fmt;
use std::str::FromStr;

use decoding_core::{CostCurve, DecodeError};

/// How the drafter proposes tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Classic speculative decoding: `k` greedy steps of the drafter, one chain.
    Chain,
    /// EAGLE-2's dynamic tree: per depth, the `width` nodes of highest cumulative drafter
    /// probability are expanded (one drafter forward over all of them), each into its
    /// `width` likeliest children; the `max_nodes` best nodes of all depths make the tree.
    Tree,
}

impl Mode {
    /// The name used in specifications: `chain` or `tree`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Chain => "chain",
            Self::Tree => "tree",
        }
    }
}

impl FromStr for Mode {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text {
            "chain" => Ok(Self::Chain),
            "tree" => Ok(Self::Tree),
            other => Err(ConfigError::invalid(
                "mode",
                format!("`{other}`: expected chain or tree"),
            )),
        }
    }
}

/// A configuration value out of range, or an option that does not parse.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field with an invalid value.
    #[error("invalid draft option `{field}`: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An option the configuration does not have.
    #[error("unknown draft option `{0}` (options: {options})", options = DraftConfig::KEYS.join(", "))]
    Unknown(String),
    /// The drafter cannot serve this configuration.
    #[error("{0}")]
    Drafter(String),
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
        DecodeError::config(error)
    }
}

/// Configuration of a [`DraftStrategy`](crate::DraftStrategy). Start from
/// [`chain`](Self::chain) or [`tree`](Self::tree) and adjust fields; the strategy validates
/// it.
///
/// Written (`Display`) and read (`FromStr`) as the options of a specification,
/// `mode=tree,k=6,width=4,nodes=24,min_prob=0,cost=1:1/2:1.5,dcost=0.3` (every field; `cost`
/// and `dcost` only when a cost curve is set).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DraftConfig {
    /// Chain or dynamic tree.
    pub mode: Mode,
    /// Most tokens drafted below the pending one (the chain length, the tree depth; the
    /// papers' `gamma` or `K`). Each costs one drafter forward, except the deepest.
    pub k: usize,
    /// Tree mode: nodes expanded per depth, and children per expanded node (EAGLE-2's
    /// top-`k`).
    pub width: usize,
    /// Most nodes of the drafted tree, root included (EAGLE-2's total tokens; also capped by
    /// the decoder's node budget). A chain has at most `k + 1`.
    pub max_nodes: usize,
    /// A node whose drafter probability given its parent is below this is not expanded
    /// further (the confidence threshold of dynamic draft lengths); 0 expands to depth `k`.
    pub min_prob: f32,
    /// The target's forward cost by tree size. With it, each step drafts only as deep as
    /// the next drafter forward is expected to pay for itself, and keeps the nodes that
    /// maximise expected tokens per unit of cost (the drafter's time included); without it,
    /// `k` levels and `max_nodes` nodes.
    pub cost: Option<CostCurve>,
    /// The cost of a drafter forward relative to a target forward over as many nodes (for
    /// an early exit after `L` of `N` layers, somewhat above `L / N`: the output projection
    /// is the same). Used only with `cost`.
    pub drafter_cost: f64,
}

impl DraftConfig {
    /// The option names, as [`set`](Self::set) and `Display` spell them.
    pub const KEYS: &'static [&'static str] =
        &["mode", "k", "width", "nodes", "min_prob", "cost", "dcost"];

    /// Chain mode: 4 greedy drafter steps.
    pub fn chain() -> Self {
        Self {
            mode: Mode::Chain,
            k: 4,
            width: 1,
            max_nodes: 64,
            min_prob: 0.0,
            cost: None,
            drafter_cost: 0.0,
        }
    }

    /// Tree mode: depth 5, 4 nodes expanded per depth into 4 children each, 24 nodes kept.
    pub fn tree() -> Self {
        Self {
            mode: Mode::Tree,
            k: 5,
            width: 4,
            max_nodes: 24,
            ..Self::chain()
        }
    }

    /// The preset of `mode`.
    pub fn preset(mode: Mode) -> Self {
        match mode {
            Mode::Chain => Self::chain(),
            Mode::Tree => Self::tree(),
        }
    }

    /// Sizes steps by the target's forward `cost` and the drafter's relative cost (see the
    /// fields).
    pub fn with_cost(mut self, cost: CostCurve, drafter_cost: f64) -> Self {
        self.cost = Some(cost);
        self.drafter_cost = drafter_cost;
        self
    }

    /// Sets the option `key` (one of [`KEYS`](Self::KEYS)) from its text. `mode` resets the
    /// other fields to that mode's preset, so give it first.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        fn number<T: FromStr>(field: &'static str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: fmt::Display,
        {
            value
                .trim()
                .parse()
                .map_err(|e| ConfigError::invalid(field, format!("`{value}`: {e}")))
        }
        match key {
            "mode" => {
                let cost = (self.cost.take(), self.drafter_cost);
                *self = Self::preset(value.trim().parse()?);
                (self.cost, self.drafter_cost) = cost;
            }
            "k" => self.k = number("k", value)?,
            "width" => self.width = number("width", value)?,
            "nodes" => self.max_nodes = number("nodes", value)?,
            "min_prob" => self.min_prob = number("min_prob", value)?,
            "cost" => {
                let curve = value
                    .trim()
                    .parse()
                    .map_err(|e: DecodeError| ConfigError::invalid("cost", e.to_string()))?;
                self.cost = Some(curve);
            }
            "dcost" => self.drafter_cost = number("dcost", value)?,
            other => return Err(ConfigError::Unknown(other.to_string())),
        }
        Ok(())
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.k == 0 {
            return Err(ConfigError::invalid("k", "must be at least 1"));
        }
        if self.width == 0 {
            return Err(ConfigError::invalid("width", "must be at least 1"));
        }
        if self.mode == Mode::Chain && self.width != 1 {
            return Err(ConfigError::invalid("width", "a chain has width 1"));
        }
        if self.max_nodes < 2 {
            return Err(ConfigError::invalid(
                "nodes",
                "must be at least 2 (the root and one draft)",
            ));
        }
        if !(0.0..=1.0).contains(&self.min_prob) {
            return Err(ConfigError::invalid("min_prob", "must be in [0, 1]"));
        }
        if !(self.drafter_cost.is_finite() && self.drafter_cost >= 0.0) {
            return Err(ConfigError::invalid(
                "dcost",
                "must be a non-negative number",
            ));
        }
        Ok(())
    }
}

impl Default for DraftConfig {
    fn default() -> Self {
        Self::chain()
    }
}

/// Every option, `mode` first: parses back to the same configuration.
impl fmt::Display for DraftConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mode={},k={},width={},nodes={},min_prob={}",
            self.mode.name(),
            self.k,
            self.width,
            self.max_nodes,
            self.min_prob
        )?;
        if let Some(curve) = &self.cost {
            write!(f, ",cost={curve},dcost={}", self.drafter_cost)?;
        }
        Ok(())
    }
}

/// `key=value,...` (the chain preset for keys not given; `mode` picks the preset), validated.
impl FromStr for DraftConfig {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let mut config = Self::chain();
        let unknown = |piece: &str| ConfigError::Unknown(piece.to_string());
        // The mode first: it picks the preset the other options adjust.
        decoding_core::apply_options(&mut config, text, Some("mode"), unknown, Self::set)?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_round_trip() {
        for mode in [Mode::Chain, Mode::Tree] {
            let config = DraftConfig::preset(mode);
            assert_eq!(config.validate(), Ok(()));
            assert_eq!(config.to_string().parse::<DraftConfig>(), Ok(config));
        }
        let costed =
            DraftConfig::tree().with_cost(CostCurve::new(vec![(1, 1.0), (4, 2.0)]).unwrap(), 0.25);
        let text = costed.to_string();
        assert_eq!(
            text,
            "mode=tree,k=5,width=4,nodes=24,min_prob=0,cost=1:1/4:2,dcost=0.25"
        );
        assert_eq!(text.parse::<DraftConfig>(), Ok(costed));
    }

    #[test]
    fn options_adjust_the_preset_of_their_mode() {
        let c: DraftConfig = "k=7,mode=tree".parse().unwrap();
        assert_eq!((c.mode, c.k, c.width), (Mode::Tree, 7, 4));
        let c: DraftConfig = "".parse().unwrap();
        assert_eq!(c, DraftConfig::chain());
    }

    #[test]
    fn bad_options_are_named() {
        for (text, field) in [
            ("k=0", "`k`"),
            ("mode=chain,width=2", "`width`"),
            ("mode=tree,width=0", "`width`"),
            ("nodes=1", "`nodes`"),
            ("min_prob=2", "`min_prob`"),
            ("dcost=-1", "`dcost`"),
            ("dcost=x", "`dcost`"),
            ("cost=1", "`cost`"),
            ("mode=bush", "`mode`"),
            ("depth=3", "`depth`"),
            ("k", "`k`"),
        ] {
            let err = text.parse::<DraftConfig>().unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }
}
