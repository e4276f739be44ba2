//! Configuration: the drafting mode, the classic presets, and their validation, written and
//! read as the `key=value` options of a strategy specification (the workspace's one
//! configuration style).

use std::fmt;
use std::str::FromStr;

use decoding_core::{CostCurve, DecodeError};

/// How drafts are made from matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// SuffixDecoding-style: the longest match in the references and the context (prompt and
    /// output), every occurrence of it and of shorter suffixes, and a trie of their
    /// continuations weighted by frequency, cut by probability and the node budget; depth
    /// grows with the match length.
    Suffix,
    /// LLMA (Yang et al., 2023): the last `max_match` down to `min_match` *output* tokens
    /// matched in the references; the continuation of the first occurrence, as a chain.
    Llma,
    /// Prompt lookup decoding (as in Hugging Face transformers): the last `max_match` down to
    /// 1 tokens matched in the prompt and output; the continuation of the first occurrence,
    /// as a chain.
    PromptLookup,
}

impl Mode {
    /// The name used in specifications: `suffix`, `llma` or `pld`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Suffix => "suffix",
            Self::Llma => "llma",
            Self::PromptLookup => "pld",
        }
    }
}

impl FromStr for Mode {
    type Err = ConfigError;

    /// `suffix`, `llma` or `pld`.
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text.trim() {
            "suffix" => Ok(Self::Suffix),
            "llma" => Ok(Self::Llma),
            "pld" => Ok(Self::PromptLookup),
            other => Err(ConfigError::Invalid {
                field: "mode",
                message: format!("`{other}`: expected suffix, llma or pld"),
            }),
        }
    }
}

/// A configuration value out of range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field with an invalid value.
    #[error("invalid reference option `{field}`: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An option the configuration does not have.
    #[error("unknown reference option `{0}` (options: {options})", options = ReferenceConfig::KEYS.join(", "))]
    Unknown(String),
}

impl From<ConfigError> for DecodeError {
    fn from(error: ConfigError) -> Self {
        DecodeError::strategy(error)
    }
}

/// Configuration of a [`ReferenceStrategy`](crate::ReferenceStrategy). Start from a preset
/// ([`suffix`](Self::suffix), [`llma`](Self::llma), [`prompt_lookup`](Self::prompt_lookup))
/// and adjust fields; the strategy validates it.
///
/// Notation: a *match* is a suffix of the context (prompt and output, the pending token
/// last) found earlier; `k` bounds how many tokens are drafted after the pending one.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ReferenceConfig {
    /// The drafting mode.
    pub mode: Mode,
    /// Most tokens drafted below the pending token (tree depth). LLMA's block size `K`
    /// counts the pending token too: its `K = 20` is `k = 19` here.
    pub k: usize,
    /// Shortest match used (LLMA's `n`, the trigger length).
    pub min_match: usize,
    /// First-occurrence modes: longest match tried (prompt lookup's `n`,
    /// `max_matching_ngram_size`; LLMA tries up to 5). The suffix mode ignores it: its
    /// matches have no length cap.
    pub max_match: usize,
    /// Match in the reference documents.
    pub references: bool,
    /// Match in the context (prompt and output so far).
    pub context: bool,
    /// LLMA: match output tokens only (never a suffix reaching into the prompt).
    pub output_only: bool,
    /// Suffix mode: draft a tree (otherwise the single most frequent chain).
    pub tree: bool,
    /// Suffix mode: most tree nodes per step, root included (also capped by the decoder's
    /// budget).
    pub max_nodes: usize,
    /// Suffix mode: drop continuations whose estimated probability is below this.
    pub min_prob: f32,
    /// Suffix mode: draft depth at most `ceil(depth_factor * match length)` (and `k`).
    pub depth_factor: f32,
    /// Suffix mode: most occurrences read per step.
    pub max_occurrences: usize,
    /// Suffix mode: an occurrence matching `l` tokens weighs `l ^ length_weight`.
    pub length_weight: f32,
    /// Continue a context occurrence that runs into the end of the context periodically
    /// (a loop goes on looping), instead of stopping there.
    pub periodic: bool,
    /// Suffix mode: the model's forward cost by tree size. With it, each step keeps the
    /// nodes (up to `max_nodes`) that maximise expected tokens per unit of cost under the
    /// learned acceptance estimates, which may be none; without it, `max_nodes` of them.
    pub cost: Option<CostCurve>,
}

impl ReferenceConfig {
    /// The suffix mode: frequency-weighted trees from every source, no match cap.
    pub fn suffix() -> Self {
        Self {
            mode: Mode::Suffix,
            k: 32,
            min_match: 1,
            max_match: usize::MAX,
            references: true,
            context: true,
            output_only: false,
            tree: true,
            max_nodes: 24,
            min_prob: 0.1,
            depth_factor: 3.0,
            max_occurrences: 64,
            length_weight: 2.0,
            periodic: true,
            cost: None,
        }
    }

    /// LLMA as in its paper's code: match the last 5 down to `n = 1` output tokens in the
    /// references, copy `K - 1 = 19` tokens after the first occurrence.
    pub fn llma() -> Self {
        Self {
            mode: Mode::Llma,
            k: 19,
            min_match: 1,
            max_match: 5,
            references: true,
            context: false,
            output_only: true,
            tree: false,
            periodic: false,
            ..Self::suffix()
        }
    }

    /// Prompt lookup decoding with Hugging Face's parameters: n-grams of `n = 3` down to 1
    /// tokens matched in the prompt and output, `k = 10` tokens copied after the first
    /// occurrence.
    pub fn prompt_lookup() -> Self {
        Self {
            mode: Mode::PromptLookup,
            k: 10,
            min_match: 1,
            max_match: 3,
            references: false,
            context: true,
            output_only: false,
            tree: false,
            periodic: false,
            ..Self::suffix()
        }
    }

    /// The preset of `mode`.
    pub fn preset(mode: Mode) -> Self {
        match mode {
            Mode::Suffix => Self::suffix(),
            Mode::Llma => Self::llma(),
            Mode::PromptLookup => Self::prompt_lookup(),
        }
    }

    /// The options, in the order `Display` writes them. `n` is the shortest match
    /// (`min_match`) in the suffix and LLMA modes, the longest (`max_match`) in prompt
    /// lookup; `alpha` is `depth_factor`, `occ` `max_occurrences`, `weight`
    /// `length_weight`, `refs` `references`, `nodes` `max_nodes`.
    pub const KEYS: &'static [&'static str] = &[
        "mode", "k", "n", "nodes", "tree", "min_prob", "alpha", "occ", "weight", "periodic",
        "refs", "context", "cost",
    ];

    /// Sets the option `key` (one of [`KEYS`](Self::KEYS)) from its text. `mode` resets the
    /// other fields to that mode's preset (keeping a cost curve), so give it first.
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
        let value = value.trim();
        match key {
            "mode" => {
                let cost = self.cost.take();
                *self = Self::preset(value.parse()?);
                self.cost = cost;
            }
            "k" => self.k = parsed("k", value)?,
            "n" if self.mode == Mode::PromptLookup => self.max_match = parsed("n", value)?,
            "n" => {
                self.min_match = parsed("n", value)?;
                self.max_match = self.max_match.max(self.min_match);
            }
            "nodes" => self.max_nodes = parsed("nodes", value)?,
            "tree" => self.tree = parsed("tree", value)?,
            "min_prob" => self.min_prob = parsed("min_prob", value)?,
            "alpha" => self.depth_factor = parsed("alpha", value)?,
            "occ" => self.max_occurrences = parsed("occ", value)?,
            "weight" => self.length_weight = parsed("weight", value)?,
            "periodic" => self.periodic = parsed("periodic", value)?,
            "refs" => self.references = parsed("refs", value)?,
            "context" => self.context = parsed("context", value)?,
            "cost" => {
                let curve = value
                    .parse()
                    .map_err(|e: DecodeError| ConfigError::Invalid {
                        field: "cost",
                        message: e.to_string(),
                    })?;
                self.cost = Some(curve);
            }
            other => return Err(ConfigError::Unknown(other.to_string())),
        }
        Ok(())
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.to_string(),
            })
        };
        if self.k == 0 {
            return invalid("k", "must be at least 1");
        }
        if self.min_match == 0 {
            return invalid("min_match", "must be at least 1");
        }
        if self.max_match < self.min_match {
            return invalid("max_match", "must be at least min_match");
        }
        if !self.references && !self.context {
            return invalid("sources", "search the references, the context, or both");
        }
        if self.max_nodes == 0 {
            return invalid("max_nodes", "must be at least 1 (the root)");
        }
        if !(0.0..=1.0).contains(&self.min_prob) {
            return invalid("min_prob", "must be in [0, 1]");
        }
        if !(self.depth_factor.is_finite() && self.depth_factor > 0.0) {
            return invalid("depth_factor", "must be a positive number");
        }
        if self.max_occurrences == 0 {
            return invalid("max_occurrences", "must be at least 1");
        }
        if !(self.length_weight.is_finite() && self.length_weight >= 0.0) {
            return invalid("length_weight", "must be a non-negative number");
        }
        Ok(())
    }
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        Self::suffix()
    }
}

/// The options of the mode (the suffix mode's tree options only in that mode), then the
/// sources and the cost curve if any: parses back to the same configuration for every
/// configuration made from a preset and options (`output_only`, and `max_match` outside
/// prompt lookup, have no option and keep their preset's value).
impl fmt::Display for ReferenceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = match self.mode {
            Mode::PromptLookup => self.max_match,
            _ => self.min_match,
        };
        write!(f, "mode={},k={},n={n}", self.mode.name(), self.k)?;
        if self.mode == Mode::Suffix {
            write!(
                f,
                ",nodes={},tree={},min_prob={},alpha={},occ={},weight={}",
                self.max_nodes,
                self.tree,
                self.min_prob,
                self.depth_factor,
                self.max_occurrences,
                self.length_weight
            )?;
        }
        write!(
            f,
            ",periodic={},refs={},context={}",
            self.periodic, self.references, self.context
        )?;
        if let Some(curve) = &self.cost {
            write!(f, ",cost={curve}")?;
        }
        Ok(())
    }
}

/// `key=value,...` (the suffix preset, or the one `mode` names, for keys not given),
/// validated.
impl FromStr for ReferenceConfig {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let mut config = Self::suffix();
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
    fn presets_validate_and_bad_values_are_named() {
        for mode in [Mode::Suffix, Mode::Llma, Mode::PromptLookup] {
            let config = ReferenceConfig::preset(mode);
            assert_eq!(config.mode, mode);
            assert_eq!(config.validate(), Ok(()));
        }
        let mut c = ReferenceConfig::suffix();
        c.min_prob = 1.5;
        assert!(c.validate().unwrap_err().to_string().contains("min_prob"));
        let mut c = ReferenceConfig::llma();
        c.context = false;
        c.references = false;
        assert!(c.validate().is_err());
        let mut c = ReferenceConfig::prompt_lookup();
        c.max_match = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn presets_and_options_round_trip() {
        // Readers that go through KEYS in order meet `mode` first.
        assert_eq!(ReferenceConfig::KEYS[0], "mode");
        for mode in [Mode::Suffix, Mode::Llma, Mode::PromptLookup] {
            let config = ReferenceConfig::preset(mode);
            assert_eq!(config.to_string().parse::<ReferenceConfig>(), Ok(config));
        }
        let given: ReferenceConfig = "k=12,n=2,nodes=10,tree=false,alpha=2.5,cost=1:1/4:2"
            .parse()
            .unwrap();
        assert_eq!((given.k, given.min_match, given.max_nodes), (12, 2, 10));
        assert!(!given.tree && given.cost.is_some());
        assert_eq!(
            given.to_string().parse::<ReferenceConfig>(),
            Ok(given.clone())
        );
        // `n` is the longest match in prompt lookup, wherever `mode` stands.
        let pld: ReferenceConfig = "n=5,mode=pld".parse().unwrap();
        assert_eq!(
            (pld.mode, pld.max_match, pld.min_match),
            (Mode::PromptLookup, 5, 1)
        );
        assert_eq!(
            pld.to_string(),
            "mode=pld,k=10,n=5,periodic=false,refs=false,context=true"
        );
    }

    #[test]
    fn bad_options_are_named() {
        for (text, field) in [
            ("mode=all", "`mode`"),
            ("k=x", "`k`"),
            ("min_prob=2", "`min_prob`"),
            ("cost=1", "`cost`"),
            ("refs=false,context=false", "context"),
            ("depth=3", "`depth`"),
            ("k", "`k`"),
        ] {
            let err = text.parse::<ReferenceConfig>().unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }
}
