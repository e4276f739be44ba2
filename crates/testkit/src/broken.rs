//! Deliberately broken models, one per classic implementation mistake, to see what each
//! violation looks like (and to test the kit itself).
//!
//! [`BrokenModel`] is a small caching model: its cache holds one `(position, token)` entry
//! per committed token, and a node's logits are a pseudo-random function of every entry it
//! attends to, so any wrong entry, position or visibility changes all of them, as in a
//! transformer. With [`Bug::None`] it is correct; every other [`Bug`] makes one mistake an
//! engine author can make.
//!
//! ```
//! use decoding_testkit::broken::{Bug, BrokenModel};
//! use decoding_testkit::{check_model, CheckConfig, ViolationKind};
//!
//! let config = CheckConfig::default();
//! assert!(check_model(&mut BrokenModel::new(16, Bug::None), &config).is_ok());
//! let error = check_model(&mut BrokenModel::new(16, Bug::WrongPosition), &config).unwrap_err();
//! assert_eq!(error.kind(), Some(ViolationKind::WrongPosition));
//! println!("{error}"); // the node, its path, expected and actual logits, the fix
//! ```

use decoding_core::{HiddenStates, LogitsModel, ModelError, NodeId, Token, TokenTree};
use ndarray::{ArrayViewMut1, ArrayViewMut2};

/// The mistake a [`BrokenModel`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Bug {
    /// No mistake: a correct model.
    None,
    /// Tree nodes attend to every earlier node in node order, the causal mask of a chain
    /// applied to a tree.
    AttentionLeak,
    /// Node `n` sits at position `committed + n` instead of `committed + depth(n)`.
    WrongPosition,
    /// `commit(path)` keeps the first `path.len()` nodes in node order instead of the
    /// path's nodes (right for chains, wrong for trees).
    CommitNotAppended,
    /// `truncate(len)` sets the committed length but leaves the dropped entries in the
    /// cache, where later forwards still see them (`reset` does clear it).
    TruncateWrong,
    /// Every logit shifts by 1e-5 per logits row of the forward, as with kernels whose
    /// reduction order depends on the batch size. Passes with a tolerance of 1e-3.
    TreeComposition,
    /// The last logits row of each forward is not written.
    RowsNotWritten,
    /// `committed_len()` reports one token too many once something is committed.
    CommittedLen,
    /// A second commit of the same forward is accepted (and appends the path again).
    SecondCommitAccepted,
    /// `hidden_state(n)` returns the state of the root for every node.
    HiddenStates,
}

/// One cache entry: a token at a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    position: u64,
    token: Token,
}

/// Width of the hidden states.
const HIDDEN: usize = 3;

/// A small caching model with one optional [`Bug`]; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct BrokenModel {
    vocab: usize,
    bug: Bug,
    /// The cache: committed entries (with [`Bug::TruncateWrong`], stale ones too).
    entries: Vec<Entry>,
    committed: usize,
    /// The last forward's tree, kept until a commit.
    pending: Option<TokenTree>,
    /// Hidden states of the last forward's nodes that asked for logits.
    hidden: Vec<Option<[f32; HIDDEN]>>,
}

impl BrokenModel {
    /// A model over `vocab` tokens (at least 1) with `bug`.
    pub fn new(vocab: usize, bug: Bug) -> Self {
        Self {
            vocab: vocab.max(1),
            bug,
            entries: Vec::new(),
            committed: 0,
            pending: None,
            hidden: Vec::new(),
        }
    }

    /// The mistake it makes.
    pub fn bug(&self) -> Bug {
        self.bug
    }

    /// The position of `node`: `committed + depth` (or `+ index` with the bug).
    fn position(&self, tree: &TokenTree, node: NodeId) -> u64 {
        let offset = if self.bug == Bug::WrongPosition {
            node
        } else {
            tree.depth(node)
        };
        (self.committed + offset) as u64
    }

    /// The entries `node` attends to, beyond the cache: its path, or with the leak every
    /// node up to it.
    fn visible(&self, tree: &TokenTree, node: NodeId) -> Vec<NodeId> {
        if self.bug == Bug::AttentionLeak {
            return (0..=node).collect();
        }
        let mut path = Vec::new();
        tree.path_to(node, &mut path);
        path
    }

    fn state(&self, tree: &TokenTree, node: NodeId) -> u64 {
        let cached = self.entries.iter().copied();
        let fresh = self.visible(tree, node).into_iter().map(|m| Entry {
            position: self.position(tree, m),
            token: tree.token(m),
        });
        cached.chain(fresh).fold(0x6B17_5EED, |h, e| {
            fmix(h ^ fmix(e.position.wrapping_mul(0x1_0001) ^ (u64::from(e.token) << 32)))
        })
    }
}

/// MurmurHash3's 64-bit finaliser.
fn fmix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

/// A value in [0, 4) from a hash.
fn value(hash: u64) -> f32 {
    (hash >> 40) as f32 / (1u64 << 22) as f32
}

impl LogitsModel for BrokenModel {
    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn committed_len(&self) -> usize {
        match self.bug {
            Bug::CommittedLen if self.committed > 0 => self.committed + 1,
            _ => self.committed,
        }
    }

    fn forward(
        &mut self,
        tree: &TokenTree,
        mut logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        tree.check_vocab(self.vocab)?;
        if logits.dim() != (tree.logits_rows(), self.vocab) {
            return Err(ModelError::msg(format!(
                "logits buffer is {:?}, expected ({}, {})",
                logits.dim(),
                tree.logits_rows(),
                self.vocab
            )));
        }
        let shift = if self.bug == Bug::TreeComposition {
            1e-5 * tree.logits_rows() as f32
        } else {
            0.0
        };
        self.hidden.clear();
        let mut root_hidden = None;
        for node in 0..tree.len() {
            let Some(row) = tree.logits_row(node) else {
                self.hidden.push(None);
                continue;
            };
            let h = self.state(tree, node);
            let mut hidden = [0.0; HIDDEN];
            for (i, x) in hidden.iter_mut().enumerate() {
                *x = value(fmix(h ^ (i as u64 + 1) << 48));
            }
            if self.bug == Bug::HiddenStates {
                hidden = *root_hidden.get_or_insert(hidden);
            }
            self.hidden.push(Some(hidden));
            if self.bug == Bug::RowsNotWritten && row + 1 == tree.logits_rows() {
                continue;
            }
            for (v, x) in logits.row_mut(row).iter_mut().enumerate() {
                *x = value(fmix(h ^ (v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))) + shift;
            }
        }
        self.pending = Some(tree.clone());
        Ok(())
    }

    fn commit(&mut self, path: &[NodeId]) -> Result<(), ModelError> {
        let tree = self
            .pending
            .take()
            .ok_or_else(|| ModelError::msg("commit without a forward since the last commit"))?;
        tree.check_path(path)?;
        let kept: Vec<NodeId> = if self.bug == Bug::CommitNotAppended {
            (0..path.len()).collect()
        } else {
            path.to_vec()
        };
        let entries: Vec<Entry> = kept
            .iter()
            .map(|&n| Entry {
                position: self.position(&tree, n),
                token: tree.token(n),
            })
            .collect();
        self.entries.extend(entries);
        self.committed += path.len();
        if self.bug == Bug::SecondCommitAccepted {
            self.pending = Some(tree);
        }
        Ok(())
    }

    fn truncate(&mut self, len: usize) -> Result<(), ModelError> {
        if len > self.committed {
            return Err(ModelError::msg(format!(
                "cannot truncate {} committed tokens to {len}",
                self.committed
            )));
        }
        if self.bug != Bug::TruncateWrong {
            self.entries.truncate(len);
        }
        self.committed = len;
        self.pending = None;
        Ok(())
    }

    fn reset(&mut self) -> Result<(), ModelError> {
        // Even with the truncate bug, reset clears the cache (many engines reallocate it).
        self.entries.clear();
        self.committed = 0;
        self.pending = None;
        Ok(())
    }

    fn hidden_states(&mut self) -> Option<&mut dyn HiddenStates> {
        Some(self)
    }
}

impl HiddenStates for BrokenModel {
    fn hidden_size(&self) -> usize {
        HIDDEN
    }

    fn hidden_state(
        &self,
        node: NodeId,
        mut out: ArrayViewMut1<'_, f32>,
    ) -> Result<(), ModelError> {
        let state = self
            .hidden
            .get(node)
            .copied()
            .flatten()
            .ok_or_else(|| ModelError::msg(format!("node {node} has no hidden state")))?;
        if out.len() != HIDDEN {
            return Err(ModelError::msg("hidden state buffer has the wrong length"));
        }
        out.assign(&ndarray::aview1(&state));
        Ok(())
    }
}
