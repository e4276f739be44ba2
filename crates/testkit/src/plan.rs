//! The calls of an episode, drawn in advance from the seed: forwards of random trees and
//! chains with their commits, truncations, resets, and misuse that must fail.

use decoding_core::{NodeId, SourceSet, Token, TokenTree};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::run::Settings;
use crate::violation::describe_tree;

/// What follows a forward.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// Commit this root-to-node path.
    Commit(Vec<NodeId>),
    /// Commit the empty path (keep nothing).
    Drop,
    /// No commit: the next forward drops the nodes.
    Leave,
}

/// A call that must fail, leaving the committed context as it was.
#[derive(Clone, Debug)]
pub(crate) enum Misuse {
    /// `commit([0])` with no forward since the last commit, truncate or reset.
    CommitWithoutForward,
    /// A forward, a valid commit of `path`, then the same commit again.
    SecondCommit { tree: TokenTree, path: Vec<NodeId> },
    /// A forward, then a commit of a path that is not root-to-node.
    BadPath { tree: TokenTree, path: Vec<NodeId> },
    /// A forward into a logits buffer with one row too many.
    WrongShape { tree: TokenTree },
    /// A forward of a tree holding a token outside the vocabulary.
    OutOfVocab { tree: TokenTree },
}

/// One step of an episode.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// `reset()`.
    Reset,
    /// A forward of `tree`, then `action`.
    Round { tree: TokenTree, action: Action },
    /// `truncate(len)`.
    Truncate(usize),
    /// A call that must fail.
    Misuse(Misuse),
}

impl Op {
    /// The tree whose logits this step observes, if it forwards one successfully.
    pub(crate) fn tree(&self) -> Option<&TokenTree> {
        match self {
            Op::Round { tree, .. }
            | Op::Misuse(Misuse::SecondCommit { tree, .. } | Misuse::BadPath { tree, .. }) => {
                Some(tree)
            }
            _ => None,
        }
    }

    /// The committed context after this step, from the one before.
    pub(crate) fn apply(&self, committed: &mut Vec<Token>) {
        match self {
            Op::Reset => committed.clear(),
            Op::Truncate(len) => committed.truncate(*len),
            Op::Round {
                tree,
                action: Action::Commit(path),
            }
            | Op::Misuse(Misuse::SecondCommit { tree, path }) => {
                committed.extend(path.iter().map(|&n| tree.token(n)));
            }
            Op::Round { .. } | Op::Misuse(_) => {}
        }
    }

    /// The step, in words, for a violation's history.
    pub(crate) fn describe(&self) -> String {
        match self {
            Op::Reset => "reset()".into(),
            Op::Truncate(len) => format!("truncate({len})"),
            Op::Round { tree, action } => {
                let then = match action {
                    Action::Commit(path) => format!("commit({path:?})"),
                    Action::Drop => "commit([])".into(),
                    Action::Leave => "no commit".into(),
                };
                format!("forward {}; {then}", describe_tree(tree))
            }
            Op::Misuse(m) => match m {
                Misuse::CommitWithoutForward => "commit([0]) without a forward (must fail)".into(),
                Misuse::SecondCommit { tree, path } => format!(
                    "forward {}; commit({path:?}); commit({path:?}) again (must fail)",
                    describe_tree(tree)
                ),
                Misuse::BadPath { tree, path } => format!(
                    "forward {}; commit({path:?}), not a root-to-node path (must fail)",
                    describe_tree(tree)
                ),
                Misuse::WrongShape { tree } => format!(
                    "forward {} into a buffer of {} rows instead of {} (must fail)",
                    describe_tree(tree),
                    tree.logits_rows() + 1,
                    tree.logits_rows()
                ),
                Misuse::OutOfVocab { tree } => format!(
                    "forward {} holding a token outside the vocabulary (must fail)",
                    describe_tree(tree)
                ),
            },
        }
    }
}

/// The committed context after `ops`, from an empty one.
pub(crate) fn committed_after(ops: &[Op]) -> Vec<Token> {
    let mut committed = Vec::new();
    for op in ops {
        op.apply(&mut committed);
    }
    committed
}

/// Whether the model holds uncommitted nodes a commit could keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    Some,
    /// After a failed call: the contract does not say.
    Unknown,
}

/// Number of [`Misuse`] kinds.
const MISUSE_KINDS: usize = 5;

/// Draws the calls of episodes.
pub(crate) struct Planner<'a> {
    rng: Xoshiro256PlusPlus,
    settings: &'a Settings,
    /// Misuse kinds are taken in turn, so that a few episodes try each of them.
    misuse_turn: usize,
}

impl<'a> Planner<'a> {
    /// The planner of one stream (an episode, or a batch schedule) of the seed.
    pub(crate) fn new(settings: &'a Settings, stream: u64) -> Self {
        let seed = settings
            .config
            .seed()
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
            ^ 0x7E57;
        Self {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            settings,
            misuse_turn: (stream.wrapping_mul(2) % MISUSE_KINDS as u64) as usize,
        }
    }

    pub(crate) fn rng(&mut self) -> &mut Xoshiro256PlusPlus {
        &mut self.rng
    }

    /// A random token of the configured set.
    pub(crate) fn token(&mut self) -> Token {
        match self.settings.config.tokens() {
            Some(tokens) => tokens[self.rng.random_range(0..tokens.len())],
            None => self.rng.random_range(0..self.settings.token_bound()),
        }
    }

    /// A random tree of up to `size` nodes and depth at most `max_depth` (a chain when
    /// `chain`), each node asking for logits with probability 0.8 (the root 0.9).
    pub(crate) fn tree(&mut self, size: usize, max_depth: usize, chain: bool) -> TokenTree {
        let mut tree = TokenTree::new(self.token());
        tree.set_needs_logits(0, self.rng.random_bool(0.9));
        for _attempt in 0..4 * size {
            if tree.len() >= size {
                break;
            }
            let parent = if chain {
                tree.len() - 1
            } else {
                self.rng.random_range(0..tree.len())
            };
            if tree.depth(parent) >= max_depth {
                if chain {
                    break;
                }
                continue;
            }
            let token = self.token();
            let logits = self.rng.random_bool(0.8);
            // A parent in the tree and fewer than 2^32 nodes: push cannot fail.
            let _ = tree.push_with(parent, token, logits, SourceSet::EMPTY);
        }
        tree
    }

    /// A random root-to-node path of `tree`; most of the time, when there is one, a path
    /// that is not the first nodes in node order (those tell a commit that keeps the path
    /// from one that keeps a prefix of the nodes).
    pub(crate) fn path(&mut self, tree: &TokenTree) -> Vec<NodeId> {
        let telling: Vec<NodeId> = (1..tree.len()).filter(|&n| tree.depth(n) != n).collect();
        let node = if !telling.is_empty() && self.rng.random_bool(0.75) {
            telling[self.rng.random_range(0..telling.len())]
        } else {
            self.rng.random_range(0..tree.len())
        };
        let mut path = Vec::new();
        tree.path_to(node, &mut path);
        path
    }

    /// A random tree for a context of `committed` tokens: a long chain (a prefill) now and
    /// then, otherwise a chain or a branching tree.
    pub(crate) fn round_tree(&mut self, committed: usize) -> TokenTree {
        let room = self.settings.max_context - committed;
        let max_nodes = self.settings.config.max_nodes();
        let chain = self.settings.chains_only || self.rng.random_bool(0.25);
        let size = if chain && self.rng.random_bool(0.3) {
            self.rng.random_range(1..=2 * max_nodes)
        } else {
            self.rng.random_range(1..=max_nodes)
        };
        self.tree(size, room - 1, chain)
    }

    /// The calls of one episode: a reset, a prefill, then `rounds` random steps.
    pub(crate) fn episode(&mut self, rounds: usize) -> Vec<Op> {
        let settings = self.settings;
        let mut ops = vec![Op::Reset];
        let mut len = 0;
        let mut pending = Pending::None;
        // Every episode truncates for real at least once (when it can), with a forward after.
        let mut truncated = !settings.can_truncate;
        let mut force_round = false;
        // And tries at least two misuses (the kinds rotate between episodes).
        let mut misuses = 0;
        while ops.len() <= rounds {
            let room = settings.max_context - len;
            let op = if !truncated && len > 0 && 3 * ops.len() >= 2 * rounds {
                Op::Truncate(self.rng.random_range(0..len))
            } else if misuses < 2
                && room >= 2
                && pending != Pending::Unknown
                && settings.config.checks_errors()
                && 3 * ops.len() >= rounds * (misuses + 1)
            {
                self.misuse(len, pending)
            } else if room < 2 {
                if settings.can_truncate && self.rng.random_bool(0.8) {
                    Op::Truncate(self.rng.random_range(0..len))
                } else {
                    Op::Reset
                }
            } else if ops.len() == 1 {
                self.prefill(len)
            } else if pending == Pending::Unknown || force_round {
                self.round(len)
            } else {
                match self.rng.random_range(0..100) {
                    0..60 => self.round(len),
                    60..72 if settings.can_truncate && len > 0 => {
                        Op::Truncate(self.rng.random_range(0..=len))
                    }
                    72..75 => Op::Reset,
                    75..92 if settings.config.checks_errors() => self.misuse(len, pending),
                    _ => self.prefill(len),
                }
            };
            pending = match &op {
                Op::Round {
                    action: Action::Leave,
                    ..
                } => Pending::Some,
                Op::Misuse(
                    Misuse::BadPath { .. } | Misuse::WrongShape { .. } | Misuse::OutOfVocab { .. },
                ) => Pending::Unknown,
                Op::Misuse(Misuse::CommitWithoutForward) => pending,
                _ => Pending::None,
            };
            force_round = matches!(op, Op::Truncate(l) if l < len);
            misuses += usize::from(matches!(op, Op::Misuse(_)));
            truncated |= force_round;
            let mut committed = vec![0; len];
            op.apply(&mut committed);
            len = committed.len();
            ops.push(op);
        }
        ops
    }

    /// A forward of a random tree and what follows it.
    fn round(&mut self, len: usize) -> Op {
        let tree = self.round_tree(len);
        let action = match self.rng.random_range(0..100) {
            0..70 => Action::Commit(self.path(&tree)),
            70..80 => Action::Drop,
            _ => Action::Leave,
        };
        Op::Round { tree, action }
    }

    /// A chain committed whole or in part, as a prompt is.
    fn prefill(&mut self, len: usize) -> Op {
        let room = self.settings.max_context - len;
        let longest = (2 * self.settings.config.max_nodes()).min(room - 1).max(1);
        let size = self.rng.random_range(1..=longest);
        let tree = self.tree(size, room - 1, true);
        let path = if self.rng.random_bool(0.8) {
            (0..tree.len()).collect()
        } else {
            self.path(&tree)
        };
        Op::Round {
            tree,
            action: Action::Commit(path),
        }
    }

    /// A call that must fail.
    fn misuse(&mut self, len: usize, pending: Pending) -> Op {
        let room = self.settings.max_context - len;
        let chain = self.settings.chains_only;
        let size = self.rng.random_range(1..=4);
        let tree = self.tree(size, room - 1, chain);
        let mut kind = self.misuse_turn % MISUSE_KINDS;
        self.misuse_turn += 1;
        if kind == 0 && pending != Pending::None {
            kind = 1;
        }
        Op::Misuse(match kind {
            0 => Misuse::CommitWithoutForward,
            1 => {
                let path = self.path(&tree);
                Misuse::SecondCommit { tree, path }
            }
            2 => {
                let path = self.bad_path(&tree);
                Misuse::BadPath { tree, path }
            }
            3 => Misuse::WrongShape { tree },
            _ => match out_of_vocab(&tree, self.settings.vocab) {
                Some(tree) => Misuse::OutOfVocab { tree },
                None => Misuse::WrongShape { tree },
            },
        })
    }

    /// A path that [`TokenTree::check_path`] rejects.
    fn bad_path(&mut self, tree: &TokenTree) -> Vec<NodeId> {
        let len = tree.len();
        let not_child_of_root = (1..len).find(|&n| tree.parent(n) != Some(0));
        let path = match (self.rng.random_range(0..3), not_child_of_root) {
            (0, _) if len > 1 => vec![1],
            (1, Some(n)) => vec![0, n],
            _ => vec![0, len],
        };
        debug_assert!(tree.check_path(&path).is_err());
        path
    }
}

/// `tree` with its last node's token replaced by `vocab` (just outside the vocabulary).
fn out_of_vocab(tree: &TokenTree, vocab: usize) -> Option<TokenTree> {
    let bad = Token::try_from(vocab).ok()?;
    let mut tokens = tree.tokens().to_vec();
    *tokens.last_mut()? = bad;
    let parents: Vec<Option<NodeId>> = (0..tree.len()).map(|n| tree.parent(n)).collect();
    let flags: Vec<bool> = (0..tree.len()).map(|n| tree.needs_logits(n)).collect();
    TokenTree::from_parents(&tokens, &parents, Some(&flags)).ok()
}
