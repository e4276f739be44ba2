//! Errors: malformed trees, invalid configuration, vocabulary mismatches and model failures.

use crate::{NodeId, Token};

/// Why a token tree, or a path through one, is malformed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// A tree needs at least its root.
    #[error("a token tree needs at least one node (its root)")]
    Empty,
    /// The token and parent arrays disagree in length.
    #[error("the tree has {tokens} tokens but {parents} parents")]
    LengthMismatch {
        /// Number of tokens given.
        tokens: usize,
        /// Number of parent entries given.
        parents: usize,
    },
    /// Node 0 is the root; it alone has no parent.
    #[error("node {node} has no parent, but only node 0 (the root) may lack one")]
    SecondRoot {
        /// The offending node.
        node: NodeId,
    },
    /// The root was given a parent.
    #[error("node 0 is the root and cannot have a parent")]
    RootWithParent,
    /// Parents must come before their children.
    #[error("node {node} has parent {parent}, but a parent must come before its children")]
    ParentNotBefore {
        /// The offending node.
        node: NodeId,
        /// Its parent index.
        parent: NodeId,
    },
    /// Two children of one node carry the same token.
    #[error("nodes {first} and {second} are siblings with the same token {token}")]
    DuplicateSibling {
        /// The earlier sibling.
        first: NodeId,
        /// The later sibling.
        second: NodeId,
        /// The token they share.
        token: Token,
    },
    /// A node index past the end of the tree.
    #[error("node {node} is not in the tree, which has {len} nodes")]
    NodeOutOfRange {
        /// The index asked for.
        node: NodeId,
        /// Number of nodes in the tree.
        len: usize,
    },
    /// A commit path that is not a root-to-node path.
    #[error("{0}")]
    InvalidPath(&'static str),
    /// A token outside the model's vocabulary.
    #[error("token {token} at node {node} is outside the vocabulary of {vocab_size} tokens")]
    TokenOutOfVocab {
        /// The node carrying the token.
        node: NodeId,
        /// The token.
        token: Token,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// More nodes than the budget allows.
    #[error("the tree has {nodes} nodes, over the budget of {budget}")]
    OverBudget {
        /// Nodes in the tree.
        nodes: usize,
        /// The budget.
        budget: usize,
    },
    /// The tree branches but the model evaluates chains only.
    #[error("the tree branches at node {node}, but the model evaluates chains only")]
    NotAChain {
        /// A node with more than one child.
        node: NodeId,
    },
    /// A draft score that is NaN or negative.
    #[error("draft score {score} for token {token} is not a non-negative number")]
    InvalidScore {
        /// The token being scored.
        token: Token,
        /// The score given.
        score: f32,
    },
    /// A node budget of zero (the root alone needs one node).
    #[error("a node budget must be at least 1 (the root)")]
    ZeroBudget,
    /// Node indices must fit in 32 bits.
    #[error("a token tree holds at most {max} nodes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
}

/// An error raised by a model implementation, passed through unchanged.
///
/// Engines wrap whatever their backend reports: `ModelError::new(e)` or `e.into()` for any
/// `std::error::Error + Send + Sync`, or [`ModelError::msg`] for a plain message.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ModelError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl ModelError {
    /// Wraps any error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(error.into())
    }

    /// An error carrying only a message.
    pub fn msg(message: impl std::fmt::Display) -> Self {
        Self(message.to_string().into())
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl From<TreeError> for ModelError {
    fn from(error: TreeError) -> Self {
        Self::new(error)
    }
}

/// Everything that can go wrong while decoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A malformed tree or path.
    #[error("invalid token tree: {0}")]
    Tree(#[from] TreeError),
    /// A configuration value out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Two parts disagree on the vocabulary size.
    #[error("vocabulary mismatch: expected {expected} tokens, got {actual}")]
    VocabMismatch {
        /// The size the model reports.
        expected: usize,
        /// The size found elsewhere (logits row, heads, strategy).
        actual: usize,
    },
    /// A prompt or stop token outside the vocabulary.
    #[error("token {token} is outside the vocabulary of {vocab_size} tokens")]
    TokenOutOfVocab {
        /// The token.
        token: Token,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// Logits that cannot define a distribution.
    #[error("invalid logits in row {row}: {reason}")]
    InvalidLogits {
        /// The row index.
        row: usize,
        /// What is wrong with it.
        reason: crate::sampling::InvalidLogits,
    },
    /// The logits array has the wrong shape for the tree.
    #[error("logits have shape {rows}x{cols}, expected {expected_rows}x{expected_cols}")]
    LogitsShape {
        /// Rows given.
        rows: usize,
        /// Columns given.
        cols: usize,
        /// Rows expected (nodes that asked for logits).
        expected_rows: usize,
        /// Columns expected (vocabulary size).
        expected_cols: usize,
    },
    /// Decoding needs at least one prompt token.
    #[error("the prompt is empty; decoding needs at least one token of context")]
    EmptyPrompt,
    /// A method called in the wrong state (for example `advance` before `propose`).
    #[error("decoder used out of order: {0}")]
    State(&'static str),
    /// A strategy, a model or a caller broke its side of a contract (a draft without its
    /// root, a verifier that emitted nothing, a row the model did not write...).
    #[error("contract broken: {0}")]
    Contract(&'static str),
    /// An error of a strategy (its configuration, its own model, its files), with its source.
    #[error("strategy: {0}")]
    Strategy(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The strategy needs something the model does not provide.
    #[error("the strategy needs {0}, which the model does not provide")]
    MissingCapability(&'static str),
    /// The model's committed context is not as long as the decoder expects.
    #[error(
        "the model reports {actual} committed tokens but the decoder expects {expected} (a \
         commit that did not keep its path, or a cache that was not empty at the start)"
    )]
    CommittedLength {
        /// What the decoder expects.
        expected: usize,
        /// What the model reports.
        actual: usize,
    },
    /// A constraint refused (see [`crate::constraint`]).
    #[error("constraint: {0}")]
    Constraint(#[source] crate::constraint::ConstraintError),
    /// A failure inside the model.
    #[error("model error: {0}")]
    Model(#[from] ModelError),
}

impl DecodeError {
    /// Shorthand for [`DecodeError::Config`].
    pub fn config(message: impl std::fmt::Display) -> Self {
        Self::Config(message.to_string())
    }

    /// Shorthand for [`DecodeError::Strategy`]: wraps a strategy's own error, keeping it as
    /// the source.
    pub fn strategy(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Strategy(error.into())
    }
}
