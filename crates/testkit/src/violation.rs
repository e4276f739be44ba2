//! What a check reports when a model breaks the contract: the class of the violation, where
//! it happened (seed, episode, step, node), what was seen and what to fix.

use std::fmt;

use decoding_core::{NodeId, Token, TokenTree};

use crate::compare::RowDiff;

/// The class of a contract violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViolationKind {
    /// A node's logits change with the tokens of nodes that are not its ancestors (siblings,
    /// other branches, later nodes).
    AttentionLeak,
    /// A node's logits depend on its index in the tree, not only on its depth: it sits at
    /// `committed + index` (or similar) instead of `committed + depth`.
    WrongPosition,
    /// After a commit the cache does not hold exactly the committed context plus the path,
    /// in order: the path was not kept, kept out of order, or other nodes were kept too.
    CommitNotAppended,
    /// After `truncate(len)` (or `reset`) the model does not behave as the first `len`
    /// tokens.
    TruncateWrong,
    /// The same path gives different logits depending on the tree around it (its size,
    /// shape or logits flags), or on whether the cache was filled by one prefill or by many
    /// commits, with no other class explaining it.
    TreeComposition,
    /// Nodes evaluated on top of a committed context disagree with the same tokens evaluated
    /// from scratch, and no wrong content explains it: the positions of new nodes, or the
    /// committed entries themselves, are off.
    CachedContext,
    /// A row asked for was not written (it still holds the NaN the check filled it with).
    RowsNotWritten,
    /// A row holds the logits of another node.
    RowsMisplaced,
    /// `committed_len()` is not the number of committed tokens.
    CommittedLen,
    /// A misuse that must fail succeeded: a second commit, a commit without a forward, a bad
    /// path, a wrong logits shape, a token outside the vocabulary.
    MissingError,
    /// A call failed, as it should, but changed the committed context.
    ErrorChangedState,
    /// A valid call returned an error.
    UnexpectedError,
    /// A call panicked.
    Panicked,
    /// The same calls gave different results when repeated.
    Nondeterministic,
    /// Final hidden states differ from the recompute's (the logits agree).
    HiddenStates,
    /// Engine-computed decoding-head logits differ from the recompute's.
    HeadLogits,
    /// Batched logits rows are not stacked in item order.
    BatchRowsOrder,
    /// A sequence's logits depend on the other sequences of the batch.
    BatchInterference,
    /// A sequence absent from a batch did not keep its uncommitted nodes until its next
    /// forward.
    AbsentSequence,
    /// `add_sequence` returned the id of a sequence still in use.
    DuplicateSequence,
}

impl ViolationKind {
    /// A short name of the class.
    pub fn title(self) -> &'static str {
        match self {
            Self::AttentionLeak => "attention leak across branches",
            Self::WrongPosition => "wrong position",
            Self::CommitNotAppended => "commit did not append the path",
            Self::TruncateWrong => "truncate or reset kept the wrong context",
            Self::TreeComposition => "logits depend on the tree composition",
            Self::CachedContext => "wrong logits on top of a committed context",
            Self::RowsNotWritten => "logits rows not written",
            Self::RowsMisplaced => "logits written to the wrong row",
            Self::CommittedLen => "committed_len misreported",
            Self::MissingError => "misuse not rejected",
            Self::ErrorChangedState => "a failed call changed the committed context",
            Self::UnexpectedError => "a valid call failed",
            Self::Panicked => "the model panicked",
            Self::Nondeterministic => "the same calls gave different results",
            Self::HiddenStates => "hidden states differ from the recompute",
            Self::HeadLogits => "head logits differ from the recompute",
            Self::BatchRowsOrder => "batch rows not stacked in item order",
            Self::BatchInterference => "a sequence depends on the other sequences of its batch",
            Self::AbsentSequence => "a sequence absent from a batch lost its uncommitted nodes",
            Self::DuplicateSequence => "add_sequence reused a live sequence id",
        }
    }

    /// What the implementation must do instead.
    pub fn fix(self) -> &'static str {
        match self {
            Self::AttentionLeak => {
                "build the attention mask from tree.parent(): node n attends to the committed \
                 context and to its own root-to-n path only, never to siblings, other branches \
                 or later nodes (a causal mask over node indices is wrong for trees)"
            }
            Self::WrongPosition => {
                "give node n the position committed_len() + tree.depth(n) (RoPE or position \
                 embeddings, for its query and its key), not committed_len() + n"
            }
            Self::CommitNotAppended => {
                "commit(path) must append the entries of exactly the path's nodes, in path \
                 order, right after the committed ones, drop every other uncommitted node, and \
                 add path.len() to committed_len(); an empty path, or a forward that is never \
                 committed, keeps nothing"
            }
            Self::TruncateWrong => {
                "truncate(len) must keep exactly the first len committed entries (and drop the \
                 uncommitted nodes), reset() none: later forwards must not see dropped entries"
            }
            Self::TreeComposition => {
                "a node's logits must be a function of its path alone: not of the other nodes \
                 of the tree, the number of rows asked for, or whether the cache was filled by \
                 one prefill or many commits; use batch-invariant kernels (a fixed reduction \
                 order per output element), or, if the engine cannot promise that, check it \
                 with CheckConfig::with_tolerance"
            }
            Self::CachedContext => {
                "new nodes must continue the positions of the committed ones (committed_len() + \
                 depth), and the committed entries must be those of the committed tokens at \
                 their positions, exactly as one forward over the whole context computes them"
            }
            Self::RowsNotWritten | Self::RowsMisplaced => {
                "write the logits of every node with tree.needs_logits(n) into row \
                 tree.logits_row(n), and only those rows (the buffer has tree.logits_rows() \
                 rows)"
            }
            Self::CommittedLen => {
                "committed_len() is the number of committed tokens: commit(path) adds \
                 path.len(), truncate(len) sets len, reset() sets 0; forwards and failed calls \
                 leave it unchanged"
            }
            Self::MissingError => {
                "return a ModelError for a second commit, a commit without a forward since the \
                 last commit, a path that is not root-to-node in the last tree \
                 (TokenTree::check_path), a logits buffer of the wrong shape and a token \
                 outside the vocabulary (TokenTree::check_vocab)"
            }
            Self::ErrorChangedState => {
                "an error must leave the committed context as it was before the call: validate \
                 everything before changing the cache"
            }
            Self::UnexpectedError => {
                "accept every valid call: any tree within max_context (a chain for a \
                 ChainsOnly model), any root-to-node path of the last forward, truncate to at \
                 most committed_len()"
            }
            Self::Panicked => {
                "return a ModelError instead of panicking, and never panic on valid input"
            }
            Self::Nondeterministic => {
                "the same calls on the same state must give the same results: no uninitialised \
                 memory, no data races, no reduction order that changes between runs"
            }
            Self::HiddenStates => {
                "HiddenStates::hidden_state(n) must return the final hidden state (after the \
                 last norm) of node n of the last forward, the vector its logits are projected \
                 from"
            }
            Self::HeadLogits => {
                "HeadLogits::head_logits(n) must return the heads' logits at node n of the last \
                 forward, a function of its path alone like the base logits"
            }
            Self::BatchRowsOrder => {
                "stack the logits rows in item order: items[0]'s rows first (as its \
                 TokenTree::logits_row numbers them), then items[1]'s, and so on"
            }
            Self::BatchInterference => {
                "a sequence attends only to its own committed context and the node's \
                 ancestors; its logits must not depend on which other sequences share the \
                 forward pass, nor on their caches"
            }
            Self::AbsentSequence => {
                "a sequence absent from a forward_batch keeps its uncommitted nodes until its \
                 own next forward, so it can still commit them"
            }
            Self::DuplicateSequence => "add_sequence must return an id no live sequence has",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// The first contract violation a check found, with where it happened and what to fix.
///
/// Its `Display` is the full report: the class, the seed, episode and step, the node and its
/// path, what was expected and seen, what to fix, and the calls of the episode up to the
/// failure. Running the same check with the same configuration replays the same calls.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Violation {
    /// The class of the violation.
    pub kind: ViolationKind,
    /// The seed of the check.
    pub seed: u64,
    /// The episode (0-based) in which it happened.
    pub episode: usize,
    /// The step of the episode (its index in [`history`](Self::history)).
    pub step: usize,
    /// The node concerned, if one is.
    pub node: Option<NodeId>,
    /// The node's root-to-node path (node ids).
    pub path: Vec<NodeId>,
    /// The tokens along that path.
    pub path_tokens: Vec<Token>,
    /// The committed tokens under the tree at that step.
    pub committed: usize,
    /// How the node's row differs from the recompute's, for logits violations.
    pub diff: Option<RowDiff>,
    /// What the check observed, in words.
    pub detail: String,
    /// The calls of the episode up to and including the failing step.
    pub history: Vec<String>,
}

impl Violation {
    pub(crate) fn new(kind: ViolationKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            seed: 0,
            episode: 0,
            step: 0,
            node: None,
            path: Vec::new(),
            path_tokens: Vec::new(),
            committed: 0,
            diff: None,
            detail: detail.into(),
            history: Vec::new(),
        }
    }

    /// Names `node` of `tree`, evaluated on `committed` tokens.
    pub(crate) fn at(mut self, tree: &TokenTree, node: NodeId, committed: usize) -> Self {
        self.node = Some(node);
        tree.path_to(node, &mut self.path);
        self.path_tokens = self.path.iter().map(|&n| tree.token(n)).collect();
        self.committed = committed;
        self
    }

    pub(crate) fn with_diff(mut self, diff: RowDiff) -> Self {
        self.diff = Some(diff);
        self
    }

    /// Appends a sentence to the detail.
    pub(crate) fn note(mut self, note: impl fmt::Display) -> Self {
        self.detail = format!("{}\n{note}", self.detail);
        self
    }

    /// Sets where the violation happened.
    pub(crate) fn located(
        mut self,
        seed: u64,
        episode: usize,
        step: usize,
        history: Vec<String>,
    ) -> Self {
        self.seed = seed;
        self.episode = episode;
        self.step = step;
        self.history = history;
        self
    }

    /// What to fix.
    pub fn fix(&self) -> &'static str {
        self.kind.fix()
    }
}

/// History lines shown in full; earlier ones are summarised.
const HISTORY_SHOWN: usize = 14;

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "contract violation: {}", self.kind.title())?;
        write!(
            f,
            "  where: seed {}, episode {}, step {}",
            self.seed, self.episode, self.step
        )?;
        if let Some(node) = self.node {
            write!(
                f,
                ", node {node} (path {:?}, tokens {:?}) on {} committed tokens",
                self.path, self.path_tokens, self.committed
            )?;
        }
        writeln!(f)?;
        for (i, line) in self.detail.lines().enumerate() {
            let label = if i == 0 { "  seen: " } else { "        " };
            writeln!(f, "{label}{line}")?;
        }
        if let Some(diff) = &self.diff {
            writeln!(f, "  logits: {diff}")?;
        }
        writeln!(f, "  fix: {}", self.kind.fix())?;
        write!(
            f,
            "  reproduce: the same check with seed {}; episode {}'s calls up to step {}:",
            self.seed, self.episode, self.step
        )?;
        let skip = self.history.len().saturating_sub(HISTORY_SHOWN);
        if skip > 0 {
            write!(f, "\n    ({skip} earlier calls)")?;
        }
        for (i, line) in self.history.iter().enumerate().skip(skip) {
            write!(f, "\n    {i}: {line}")?;
        }
        Ok(())
    }
}

/// Why a check did not pass.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The check's configuration is invalid for this model.
    #[error("invalid check configuration: {0}")]
    Config(String),
    /// The model broke the contract.
    #[error("{0}")]
    Violation(Box<Violation>),
}

impl CheckError {
    /// The violation, if the model broke the contract.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Self::Violation(v) => Some(v),
            Self::Config(_) => None,
        }
    }

    /// The class of the violation, if the model broke the contract.
    pub fn kind(&self) -> Option<ViolationKind> {
        self.violation().map(|v| v.kind)
    }
}

/// `Debug` prints the full report, so that `check_model(..).unwrap()` and `?` in a test
/// show it readably.
impl fmt::Debug for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Violation> for CheckError {
    fn from(v: Violation) -> Self {
        Self::Violation(Box::new(v))
    }
}

/// A compact description of a tree for the history: tokens and parents, or a chain's
/// tokens, cut after a few dozen nodes.
pub(crate) fn describe_tree(tree: &TokenTree) -> String {
    const SHOWN: usize = 24;
    let cut = |s: String, n: usize| {
        if n > SHOWN {
            format!("{s} ... ({n} nodes)")
        } else {
            s
        }
    };
    let rows = if tree.logits_rows() == tree.len() {
        "all rows".to_string()
    } else {
        format!(
            "rows for nodes {:?}",
            tree.logits_nodes().take(SHOWN).collect::<Vec<_>>()
        )
    };
    let shown = tree.len().min(SHOWN);
    if tree.is_chain() {
        let tokens = format!("{:?}", &tree.tokens()[..shown]);
        format!("chain {}, {rows}", cut(tokens, tree.len()))
    } else {
        let parents: Vec<String> = (0..shown)
            .map(|n| tree.parent(n).map_or("-".into(), |p| p.to_string()))
            .collect();
        let tokens = format!(
            "tokens {:?} parents [{}]",
            &tree.tokens()[..shown],
            parents.join(", ")
        );
        format!("tree {}, {rows}", cut(tokens, tree.len()))
    }
}
