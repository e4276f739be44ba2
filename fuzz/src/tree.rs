//! Token trees: invariants checked from scratch, arbitrary trees, naive lookups.

use arbitrary::{Result, Unstructured};
use decoding_core::{NodeId, Token, TokenTree, TreeError};

/// Checks every documented invariant of `tree` from its public accessors alone: parents
/// before children, depths, children lists in node order, distinct sibling tokens, logits
/// rows numbered in node order, `is_chain`, `max_depth`, and that rebuilding it from raw
/// arrays gives the same tree.
pub fn check_invariants(tree: &TokenTree) {
    let n = tree.len();
    assert!(n >= 1 && !tree.is_empty());
    assert_eq!(tree.parent(0), None);
    assert_eq!(tree.depth(0), 0);
    assert_eq!(tree.tokens().len(), n);
    let mut rows = 0;
    let mut branches = false;
    let mut max_depth = 0;
    for node in 0..n {
        assert_eq!(tree.token(node), tree.tokens()[node]);
        if node > 0 {
            let parent = tree.parent(node).expect("non-root node without parent");
            assert!(parent < node, "parent {parent} of {node} comes after it");
            assert_eq!(tree.depth(node), tree.depth(parent) + 1);
        }
        max_depth = max_depth.max(tree.depth(node));
        let children: Vec<NodeId> = tree.children(node).collect();
        let expected: Vec<NodeId> = (node + 1..n)
            .filter(|&c| tree.parent(c) == Some(node))
            .collect();
        assert_eq!(children, expected, "children of {node}");
        branches |= children.len() > 1;
        for (i, &a) in children.iter().enumerate() {
            for &b in &children[i + 1..] {
                assert_ne!(
                    tree.token(a),
                    tree.token(b),
                    "duplicate siblings {a} and {b}"
                );
            }
            assert_eq!(tree.child_with_token(node, tree.token(a)), Some(a));
        }
        match tree.logits_row(node) {
            Some(row) => {
                assert!(tree.needs_logits(node));
                assert_eq!(row, rows, "logits rows follow node order");
                rows += 1;
            }
            None => assert!(!tree.needs_logits(node)),
        }
        let mut path = Vec::new();
        tree.path_to(node, &mut path);
        assert_eq!(path.len(), tree.depth(node) + 1);
        assert_eq!(path[0], 0);
        assert_eq!(*path.last().unwrap(), node);
        tree.check_path(&path).unwrap();
        let tokens: Vec<Token> = path.iter().map(|&p| tree.token(p)).collect();
        assert_eq!(tree.path_tokens(node), tokens);
    }
    assert_eq!(tree.logits_rows(), rows);
    assert_eq!(tree.logits_nodes().count(), rows);
    assert_eq!(tree.is_chain(), !branches);
    assert_eq!(tree.check_chain().is_ok(), !branches);
    assert_eq!(tree.max_depth(), max_depth);
    let parents: Vec<Option<NodeId>> = (0..n).map(|c| tree.parent(c)).collect();
    let flags: Vec<bool> = (0..n).map(|c| tree.needs_logits(c)).collect();
    let rebuilt = TokenTree::from_parents(tree.tokens(), &parents, Some(&flags)).unwrap();
    assert_eq!(rebuilt.tokens(), tree.tokens());
    for node in 0..n {
        assert_eq!(rebuilt.parent(node), tree.parent(node));
        assert_eq!(rebuilt.logits_row(node), tree.logits_row(node));
    }
}

/// The node whose root path carries exactly `tokens` (root token first), found by scanning
/// every node: the definition [`TokenTree::child_with_token`] walks must agree with.
pub fn node_with_path(tree: &TokenTree, tokens: &[Token]) -> Option<NodeId> {
    (0..tree.len()).find(|&n| tree.path_tokens(n) == tokens)
}

/// Plain decoding walked through `tree` from `start`: `next(node)` is the token plain decoding
/// emits after `node`'s path (`None` when its logits are invalid); the walk moves to the node
/// carrying that token (found by its token path) while it asks for logits. Returns the path
/// and the bonus token, or the node whose logits were invalid.
pub fn plain_walk(
    tree: &TokenTree,
    start: NodeId,
    mut next: impl FnMut(NodeId) -> Option<Token>,
) -> Result<(Vec<NodeId>, Token), NodeId> {
    let mut path = vec![start];
    let mut tokens = tree.path_tokens(start);
    loop {
        let node = *path.last().unwrap();
        let token = next(node).ok_or(node)?;
        tokens.push(token);
        match node_with_path(tree, &tokens) {
            Some(child) if tree.needs_logits(child) => path.push(child),
            _ => return Ok((path, token)),
        }
    }
}

/// An arbitrary valid tree of at most `max_nodes` nodes over tokens `0..=vocab` (one past the
/// vocabulary, so out-of-vocabulary drafts occur), most nodes asking for logits.
///
/// Also feeds `TokenTree::from_parents` a duplicate sibling now and then and checks that it
/// is rejected with an error.
pub fn arbitrary_tree(
    u: &mut Unstructured<'_>,
    max_nodes: usize,
    vocab: usize,
) -> Result<TokenTree> {
    let tokens_range = vocab as Token;
    let nodes = u.int_in_range(1..=max_nodes)?;
    let mut tokens: Vec<Token> = vec![u.int_in_range(0..=tokens_range)?];
    let mut parents = vec![None];
    let mut flags = vec![u.ratio(15, 16)?];
    while tokens.len() < nodes && !u.is_empty() {
        let parent = u.choose_index(tokens.len())?;
        let mut token = u.int_in_range(0..=tokens_range)?;
        let taken = |t: Token, tokens: &[Token], parents: &[Option<NodeId>]| {
            (0..tokens.len()).any(|s| parents[s] == Some(parent) && tokens[s] == t)
        };
        // Move to the next free token; skip the node if every token is taken.
        let mut tries = 0;
        while taken(token, &tokens, &parents) && tries <= tokens_range {
            token = (token + 1) % (tokens_range + 1);
            tries += 1;
        }
        if taken(token, &tokens, &parents) {
            continue;
        }
        tokens.push(token);
        parents.push(Some(parent));
        flags.push(u.ratio(7, 8)?);
    }
    if tokens.len() > 1 && u.ratio(1, 16)? {
        // A malformed tree: a copy of an existing non-root node under the same parent.
        let dup = u.int_in_range(1..=tokens.len() - 1)?;
        let mut bad_tokens = tokens.clone();
        let mut bad_parents = parents.clone();
        bad_tokens.push(tokens[dup]);
        bad_parents.push(parents[dup]);
        let err = TokenTree::from_parents(&bad_tokens, &bad_parents, None).unwrap_err();
        assert!(matches!(err, TreeError::DuplicateSibling { .. }), "{err:?}");
    }
    let tree = TokenTree::from_parents(&tokens, &parents, Some(&flags)).unwrap();
    check_invariants(&tree);
    Ok(tree)
}
