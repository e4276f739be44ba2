//! The token tree: what a strategy drafts and a model evaluates in one forward pass.
//!
//! Node 0 is the root: the *pending* token, sampled at the previous step but not yet in the
//! model's cache. Every other node is a draft token that continues its parent. Parents come
//! before their children, so node order is a topological order, and siblings carry distinct
//! tokens, so a verifier that knows the model's next token finds at most one child to follow.
//!
//! A chain is a tree whose nodes each have at most one child: prefill and plain decoding are
//! trees too.

use crate::error::TreeError;

/// A token id.
pub type Token = u32;

/// The index of a node in a [`TokenTree`]; the root is node 0.
pub type NodeId = usize;

const NONE: u32 = u32::MAX;

/// Largest number of nodes a tree may hold (indices are stored in 32 bits).
pub const MAX_TREE_NODES: usize = (u32::MAX - 1) as usize;

/// Names a draft source inside one tree (0..32), so statistics can say where a node came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(u8);

impl SourceId {
    /// Number of distinct sources a tree can tag.
    pub const MAX: usize = 32;

    /// A source id; `None` when `index >= 32`.
    pub const fn new(index: usize) -> Option<Self> {
        if index < Self::MAX {
            Some(Self(index as u8))
        } else {
            None
        }
    }

    /// The index of this source (0..32).
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The set of draft sources that proposed a node (a node proposed by several sources is
/// stored once, tagged with all of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceSet(u32);

impl SourceSet {
    /// No source: the root, or a node added without a tag.
    pub const EMPTY: Self = Self(0);

    /// The set holding one source.
    pub const fn of(source: SourceId) -> Self {
        Self(1 << source.0)
    }

    /// Both sets together.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether `source` is in the set.
    pub const fn contains(self, source: SourceId) -> bool {
        self.0 & (1 << source.0) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The sources in the set, lowest index first.
    pub fn iter(self) -> impl Iterator<Item = SourceId> {
        (0..SourceId::MAX as u8)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(SourceId)
    }
}

/// A validated token tree, rooted at the pending token.
///
/// Built node by node with [`push`](Self::push) (always valid by construction) or checked from
/// raw arrays with [`from_parents`](Self::from_parents). The tree is a reusable buffer:
/// [`reset`](Self::reset) keeps its allocations.
///
/// Each node says whether the caller needs its logits. The model returns one logits row per
/// such node, in node order; [`logits_row`](Self::logits_row) maps a node to its row. A node
/// without logits can still be attended to by its descendants, but a verifier never accepts
/// it (it could not produce the token that follows it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenTree {
    tokens: Vec<Token>,
    parents: Vec<u32>,
    depths: Vec<u32>,
    rows: Vec<u32>,
    sources: Vec<SourceSet>,
    first_child: Vec<u32>,
    last_child: Vec<u32>,
    next_sibling: Vec<u32>,
    row_count: usize,
    max_depth: usize,
    branches: bool,
}

impl TokenTree {
    /// A tree holding only its root, whose logits are needed.
    pub fn new(root: Token) -> Self {
        let mut tree = Self {
            tokens: Vec::new(),
            parents: Vec::new(),
            depths: Vec::new(),
            rows: Vec::new(),
            sources: Vec::new(),
            first_child: Vec::new(),
            last_child: Vec::new(),
            next_sibling: Vec::new(),
            row_count: 0,
            max_depth: 0,
            branches: false,
        };
        tree.reset(root);
        tree
    }

    /// Empties the tree down to a new root (logits needed), keeping the allocations.
    pub fn reset(&mut self, root: Token) {
        self.tokens.clear();
        self.parents.clear();
        self.depths.clear();
        self.rows.clear();
        self.sources.clear();
        self.first_child.clear();
        self.last_child.clear();
        self.next_sibling.clear();
        self.row_count = 0;
        self.max_depth = 0;
        self.branches = false;
        self.push_node(NONE, 0, root, true, SourceSet::EMPTY);
    }

    /// A chain `tokens[0] -> tokens[1] -> ...`, every node needing logits.
    pub fn from_chain(tokens: &[Token]) -> Result<Self, TreeError> {
        let (&root, rest) = tokens.split_first().ok_or(TreeError::Empty)?;
        let mut tree = Self::new(root);
        tree.extend_chain(0, rest, true, SourceSet::EMPTY)?;
        Ok(tree)
    }

    /// Checks raw arrays and builds the tree: `parents[0]` must be `None`, every other parent
    /// must come before its child, and siblings must carry distinct tokens. `needs_logits`
    /// defaults to every node.
    pub fn from_parents(
        tokens: &[Token],
        parents: &[Option<NodeId>],
        needs_logits: Option<&[bool]>,
    ) -> Result<Self, TreeError> {
        if tokens.len() != parents.len() {
            return Err(TreeError::LengthMismatch {
                tokens: tokens.len(),
                parents: parents.len(),
            });
        }
        if let Some(flags) = needs_logits
            && flags.len() != tokens.len()
        {
            return Err(TreeError::LengthMismatch {
                tokens: tokens.len(),
                parents: flags.len(),
            });
        }
        let (&root, _) = tokens.split_first().ok_or(TreeError::Empty)?;
        if parents[0].is_some() {
            return Err(TreeError::RootWithParent);
        }
        let mut tree = Self::new(root);
        if let Some(flags) = needs_logits {
            tree.set_needs_logits(0, flags[0]);
        }
        for node in 1..tokens.len() {
            let parent = parents[node].ok_or(TreeError::SecondRoot { node })?;
            if parent >= node {
                return Err(TreeError::ParentNotBefore { node, parent });
            }
            if let Some(first) = tree.child_with_token(parent, tokens[node]) {
                return Err(TreeError::DuplicateSibling {
                    first,
                    second: node,
                    token: tokens[node],
                });
            }
            let logits = needs_logits.is_none_or(|flags| flags[node]);
            tree.push_with(parent, tokens[node], logits, SourceSet::EMPTY)?;
        }
        Ok(tree)
    }

    /// Adds `token` below `parent`, needing logits, and returns its node. If `parent` already
    /// has a child with that token, that child is returned instead (trees are deduplicated).
    pub fn push(&mut self, parent: NodeId, token: Token) -> Result<NodeId, TreeError> {
        self.push_with(parent, token, true, SourceSet::EMPTY)
    }

    /// Like [`push`](Self::push), with the logits flag and source tags given. A node that
    /// already exists gets the union of the flags and tags.
    pub fn push_with(
        &mut self,
        parent: NodeId,
        token: Token,
        needs_logits: bool,
        sources: SourceSet,
    ) -> Result<NodeId, TreeError> {
        self.check_node(parent)?;
        if let Some(existing) = self.child_with_token(parent, token) {
            self.sources[existing] = self.sources[existing].union(sources);
            if needs_logits {
                self.set_needs_logits(existing, true);
            }
            return Ok(existing);
        }
        if self.len() >= MAX_TREE_NODES {
            return Err(TreeError::TooLarge {
                max: MAX_TREE_NODES,
            });
        }
        let depth = self.depths[parent] + 1;
        Ok(self.push_node(parent as u32, depth, token, needs_logits, sources))
    }

    /// Appends `tokens` as a chain below `parent` (deduplicating against existing children) and
    /// returns the last node, or `parent` when `tokens` is empty.
    pub fn extend_chain(
        &mut self,
        parent: NodeId,
        tokens: &[Token],
        needs_logits: bool,
        sources: SourceSet,
    ) -> Result<NodeId, TreeError> {
        let mut node = parent;
        for &token in tokens {
            node = self.push_with(node, token, needs_logits, sources)?;
        }
        Ok(node)
    }

    fn push_node(
        &mut self,
        parent: u32,
        depth: u32,
        token: Token,
        needs_logits: bool,
        sources: SourceSet,
    ) -> NodeId {
        let node = self.tokens.len();
        self.tokens.push(token);
        self.parents.push(parent);
        self.depths.push(depth);
        self.sources.push(sources);
        self.first_child.push(NONE);
        self.last_child.push(NONE);
        self.next_sibling.push(NONE);
        if needs_logits {
            self.rows.push(self.row_count as u32);
            self.row_count += 1;
        } else {
            self.rows.push(NONE);
        }
        self.max_depth = self.max_depth.max(depth as usize);
        if parent != NONE {
            let p = parent as usize;
            if self.last_child[p] == NONE {
                self.first_child[p] = node as u32;
            } else {
                self.next_sibling[self.last_child[p] as usize] = node as u32;
                self.branches = true;
            }
            self.last_child[p] = node as u32;
        }
        node
    }

    /// Sets whether `node`'s logits are needed, renumbering the rows after it.
    ///
    /// # Panics
    /// If `node` is out of range.
    pub fn set_needs_logits(&mut self, node: NodeId, needs: bool) {
        if self.needs_logits(node) == needs {
            return;
        }
        self.rows[node] = if needs { 0 } else { NONE };
        let mut next = 0u32;
        for row in &mut self.rows {
            if *row != NONE {
                *row = next;
                next += 1;
            }
        }
        self.row_count = next as usize;
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always false: a tree has at least its root.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The root's token (the pending token).
    pub fn root_token(&self) -> Token {
        self.tokens[0]
    }

    /// All node tokens, in node order.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The token of `node`.
    ///
    /// # Panics
    /// If `node` is out of range (as slice indexing does).
    pub fn token(&self, node: NodeId) -> Token {
        self.tokens[node]
    }

    /// The parent of `node`; `None` for the root.
    ///
    /// # Panics
    /// If `node` is not in the tree (see [`check_node`](Self::check_node)).
    pub fn parent(&self, node: NodeId) -> Option<NodeId> {
        match self.parents[node] {
            NONE => None,
            p => Some(p as usize),
        }
    }

    /// Depth of `node`: 0 for the root. Its position is `committed length + depth`.
    ///
    /// # Panics
    /// If `node` is not in the tree (see [`check_node`](Self::check_node)).
    pub fn depth(&self, node: NodeId) -> usize {
        self.depths[node] as usize
    }

    /// Depth of the deepest node.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// The source tags of `node`.
    ///
    /// # Panics
    /// If `node` is not in the tree (see [`check_node`](Self::check_node)).
    pub fn sources(&self, node: NodeId) -> SourceSet {
        self.sources[node]
    }

    /// Whether the caller needs `node`'s logits.
    ///
    /// # Panics
    /// If `node` is not in the tree (see [`check_node`](Self::check_node)).
    pub fn needs_logits(&self, node: NodeId) -> bool {
        self.rows[node] != NONE
    }

    /// The logits row of `node`, if its logits are needed.
    ///
    /// # Panics
    /// If `node` is not in the tree (see [`check_node`](Self::check_node)).
    pub fn logits_row(&self, node: NodeId) -> Option<usize> {
        match self.rows[node] {
            NONE => None,
            r => Some(r as usize),
        }
    }

    /// Number of nodes whose logits are needed: the rows a forward returns.
    pub fn logits_rows(&self) -> usize {
        self.row_count
    }

    /// The nodes whose logits are needed, in row order.
    pub fn logits_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.len()).filter(|&n| self.needs_logits(n))
    }

    /// Whether every node has at most one child.
    pub fn is_chain(&self) -> bool {
        !self.branches
    }

    /// The children of `node`, in insertion order.
    ///
    /// # Panics
    /// If `node` is not in the tree (see [`check_node`](Self::check_node)).
    pub fn children(&self, node: NodeId) -> Children<'_> {
        Children {
            tree: self,
            next: self.first_child[node],
        }
    }

    /// The child of `node` carrying `token`, if any.
    ///
    /// # Panics
    /// If `node` is not in the tree (see [`check_node`](Self::check_node)).
    pub fn child_with_token(&self, node: NodeId, token: Token) -> Option<NodeId> {
        self.children(node).find(|&c| self.tokens[c] == token)
    }

    /// `node`'s ancestors, its parent first, the root last.
    ///
    /// # Panics
    /// If `node` is not in the tree (see [`check_node`](Self::check_node)).
    pub fn ancestors(&self, node: NodeId) -> Ancestors<'_> {
        Ancestors {
            tree: self,
            next: self.parents[node],
        }
    }

    /// Writes the root-to-`node` path (both ends included) into `path`.
    ///
    /// # Panics
    /// If `node` is not in the tree (see [`check_node`](Self::check_node)).
    pub fn path_to(&self, node: NodeId, path: &mut Vec<NodeId>) {
        path.clear();
        path.push(node);
        path.extend(self.ancestors(node));
        path.reverse();
    }

    /// The tokens along the root-to-`node` path.
    ///
    /// # Panics
    /// If `node` is not in the tree (see [`check_node`](Self::check_node)).
    pub fn path_tokens(&self, node: NodeId) -> Vec<Token> {
        let mut path = Vec::new();
        self.path_to(node, &mut path);
        path.into_iter().map(|n| self.tokens[n]).collect()
    }

    /// Checks that `node` is in the tree.
    pub fn check_node(&self, node: NodeId) -> Result<(), TreeError> {
        if node < self.len() {
            Ok(())
        } else {
            Err(TreeError::NodeOutOfRange {
                node,
                len: self.len(),
            })
        }
    }

    /// Checks a commit path: empty, or the root followed by a child of each previous node.
    pub fn check_path(&self, path: &[NodeId]) -> Result<(), TreeError> {
        let Some((&first, rest)) = path.split_first() else {
            return Ok(());
        };
        if first != 0 {
            return Err(TreeError::InvalidPath(
                "a path must start at the root (node 0)",
            ));
        }
        let mut prev = first;
        for &node in rest {
            self.check_node(node)?;
            if self.parent(node) != Some(prev) {
                return Err(TreeError::InvalidPath(
                    "each node of a path must be a child of the node before it",
                ));
            }
            prev = node;
        }
        Ok(())
    }

    /// Checks that every token is below `vocab_size`.
    pub fn check_vocab(&self, vocab_size: usize) -> Result<(), TreeError> {
        match self.tokens.iter().position(|&t| t as usize >= vocab_size) {
            None => Ok(()),
            Some(node) => Err(TreeError::TokenOutOfVocab {
                node,
                token: self.tokens[node],
                vocab_size,
            }),
        }
    }

    /// Checks that the tree is a chain (for models that evaluate chains only).
    pub fn check_chain(&self) -> Result<(), TreeError> {
        match (0..self.len()).find(|&n| self.children(n).nth(1).is_some()) {
            None => Ok(()),
            Some(node) => Err(TreeError::NotAChain { node }),
        }
    }

    /// Writes into `out` the chain `prefix` (no logits) with this tree hung below its last
    /// token, so `self`'s node `n` becomes `out`'s node `prefix.len() + n`. The first step of
    /// decoding uses it to prefill the prompt and verify the first draft in one forward pass.
    pub fn graft_below(&self, prefix: &[Token], out: &mut TokenTree) {
        let offset = prefix.len();
        match prefix.split_first() {
            Some((&first, rest)) => {
                out.reset(first);
                out.set_needs_logits(0, false);
                for &token in rest {
                    let parent = out.len() - 1;
                    let depth = out.depths[parent] + 1;
                    out.push_node(parent as u32, depth, token, false, SourceSet::EMPTY);
                }
            }
            None => out.reset(self.tokens[0]),
        }
        let start = if offset == 0 { 1 } else { 0 };
        if offset == 0 {
            out.set_needs_logits(0, self.needs_logits(0));
            out.sources[0] = self.sources[0];
        }
        for node in start..self.len() {
            let parent = match self.parents[node] {
                NONE => offset - 1,
                p => p as usize + offset,
            };
            let depth = out.depths[parent] + 1;
            out.push_node(
                parent as u32,
                depth,
                self.tokens[node],
                self.needs_logits(node),
                self.sources[node],
            );
        }
    }
}

/// Iterator over a node's children.
#[derive(Clone, Debug)]
pub struct Children<'a> {
    tree: &'a TokenTree,
    next: u32,
}

impl Iterator for Children<'_> {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        if self.next == NONE {
            return None;
        }
        let node = self.next as usize;
        self.next = self.tree.next_sibling[node];
        Some(node)
    }
}

/// Iterator over a node's ancestors, nearest first.
#[derive(Clone, Debug)]
pub struct Ancestors<'a> {
    tree: &'a TokenTree,
    next: u32,
}

impl Iterator for Ancestors<'_> {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        if self.next == NONE {
            return None;
        }
        let node = self.next as usize;
        self.next = self.tree.parents[node];
        Some(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_deduplicates_siblings_and_tracks_rows() {
        let mut tree = TokenTree::new(7);
        let a = tree.push(0, 1).unwrap();
        let b = tree.push_with(0, 2, false, SourceSet::EMPTY).unwrap();
        let c = tree.push(a, 3).unwrap();
        assert_eq!(tree.push(0, 1).unwrap(), a);
        assert_eq!((tree.len(), tree.logits_rows()), (4, 3));
        assert_eq!(tree.logits_row(b), None);
        assert_eq!(tree.logits_row(c), Some(2));
        assert_eq!(tree.children(0).collect::<Vec<_>>(), vec![a, b]);
        assert!(!tree.is_chain());
        tree.set_needs_logits(b, true);
        assert_eq!(tree.logits_row(b), Some(2));
        assert_eq!(tree.logits_row(c), Some(3));
    }

    #[test]
    fn from_parents_rejects_malformed_trees() {
        let err =
            |t: &[Token], p: &[Option<NodeId>]| TokenTree::from_parents(t, p, None).unwrap_err();
        assert_eq!(err(&[], &[]), TreeError::Empty);
        assert_eq!(
            err(&[1, 2], &[None]),
            TreeError::LengthMismatch {
                tokens: 2,
                parents: 1
            }
        );
        assert_eq!(err(&[1, 2], &[Some(0), Some(0)]), TreeError::RootWithParent);
        assert_eq!(
            err(&[1, 2], &[None, None]),
            TreeError::SecondRoot { node: 1 }
        );
        assert_eq!(
            err(&[1, 2, 3], &[None, Some(2), Some(0)]),
            TreeError::ParentNotBefore { node: 1, parent: 2 }
        );
        assert_eq!(
            err(&[1, 2, 2], &[None, Some(0), Some(0)]),
            TreeError::DuplicateSibling {
                first: 1,
                second: 2,
                token: 2
            }
        );
    }

    #[test]
    fn paths_and_grafting() {
        let tree = TokenTree::from_parents(&[5, 6, 7, 8], &[None, Some(0), Some(0), Some(2)], None)
            .unwrap();
        let mut path = Vec::new();
        tree.path_to(3, &mut path);
        assert_eq!(path, vec![0, 2, 3]);
        assert_eq!(tree.path_tokens(3), vec![5, 7, 8]);
        assert!(tree.check_path(&[0, 2, 3]).is_ok());
        assert!(tree.check_path(&[0, 1, 3]).is_err());
        assert!(tree.check_path(&[2, 3]).is_err());
        let mut out = TokenTree::new(0);
        tree.graft_below(&[1, 2], &mut out);
        assert_eq!(out.tokens(), &[1, 2, 5, 6, 7, 8]);
        assert_eq!(out.depth(5), 4);
        assert_eq!(out.logits_rows(), 4);
        assert_eq!(out.logits_row(2), Some(0));
        assert_eq!(out.parent(2), Some(1));
        assert_eq!(out.parent(5), Some(4));
    }
}
