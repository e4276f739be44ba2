//! Errors: malformed head files, candidate trees that do not fit the heads, bad settings.

use decoding_core::DecodeError;

/// Everything that can go wrong when loading heads, building candidate trees or configuring
/// the strategy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MedusaError {
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not a valid safetensors file.
    #[error("not a valid safetensors file: {0}")]
    Safetensors(String),
    /// The file holds no `medusa_head.0.0.linear.weight`.
    #[error("no Medusa heads found (expected tensors named medusa_head.{{k}}.{{l}}.linear.weight)")]
    NoHeads,
    /// A tensor the layout requires is missing.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// A tensor the layout does not know (a gap in the head numbering, a typo, ...).
    #[error("unexpected tensor `{0}` (heads must be numbered 0, 1, 2, ... without gaps)")]
    UnexpectedTensor(String),
    /// A tensor with the wrong shape.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    Shape {
        /// The tensor.
        name: String,
        /// Its shape.
        actual: Vec<usize>,
        /// The shape the layout needs.
        expected: Vec<usize>,
    },
    /// A tensor whose element type is not f16, bf16 or f32.
    #[error("tensor `{name}` has dtype {dtype}, expected f16, bf16 or f32")]
    Dtype {
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// A weight that is NaN or infinite.
    #[error("tensor `{0}` holds a NaN or infinite value")]
    NonFinite(String),
    /// A head has no output projection and no shared lm_head was given.
    #[error(
        "head {0} has no output projection (medusa_head.{0}.L.weight); pass the base lm_head to share it"
    )]
    MissingOutput(usize),
    /// A candidate tree deeper than the number of heads that fill it.
    #[error(
        "the candidate tree is {depth} deep but there are only {heads} heads (depth d needs head d - 1)"
    )]
    TreeTooDeep {
        /// The depth of the tree.
        depth: usize,
        /// Heads available.
        heads: usize,
    },
    /// A malformed candidate tree specification.
    #[error("invalid candidate tree: {0}")]
    InvalidTree(String),
    /// Malformed rank accuracies.
    #[error("invalid rank accuracies: {0}")]
    InvalidAccuracies(String),
    /// A configuration value out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The heads and the model disagree.
    #[error("heads mismatch: {0}")]
    Mismatch(String),
    /// A failure while running the model.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl MedusaError {
    pub(crate) fn config(message: impl std::fmt::Display) -> Self {
        Self::Config(message.to_string())
    }

    pub(crate) fn tree(message: impl std::fmt::Display) -> Self {
        Self::InvalidTree(message.to_string())
    }
}

impl From<MedusaError> for DecodeError {
    fn from(error: MedusaError) -> Self {
        match error {
            MedusaError::Decode(e) => e,
            other => DecodeError::strategy(other),
        }
    }
}
