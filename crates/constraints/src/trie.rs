//! The vocabulary's prefix tree, flattened in preorder, so that a mask is one pass over it that
//! skips every subtree below a byte the automaton refuses.

use decoding_core::Token;

use crate::token_bytes::TokenBytes;

/// One distinct non-empty prefix of the vocabulary's byte strings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrieNode {
    /// The prefix's last byte.
    pub(crate) byte: u8,
    /// The prefix's length (1 for the root's children).
    pub(crate) depth: u32,
    /// One past the last node of this node's subtree (preorder).
    pub(crate) end: u32,
    /// The tokens whose bytes are exactly this prefix: `tokens[first..first + count]`.
    first: u32,
    count: u32,
}

/// Every non-empty token's bytes as a path in a tree of bytes, nodes in preorder (children in
/// byte order), so a subtree is a contiguous range.
#[derive(Clone, Debug)]
pub(crate) struct TokenTrie {
    nodes: Vec<TrieNode>,
    tokens: Vec<Token>,
    max_depth: usize,
}

impl TokenTrie {
    pub(crate) fn new(vocab: &TokenBytes) -> Self {
        // Sorted byte strings are the tree's leaves and inner tokens in preorder: each string
        // adds the nodes past its common prefix with the one before.
        let mut order: Vec<(&[u8], Token)> = vocab
            .iter()
            .zip(0..)
            .filter(|(bytes, _)| !bytes.is_empty())
            .collect();
        order.sort_unstable();
        let mut nodes: Vec<TrieNode> = Vec::new();
        let mut tokens = Vec::with_capacity(order.len());
        // The node of each prefix length of the previous string (path[d - 1]: depth d).
        let mut path: Vec<usize> = Vec::new();
        let mut previous: &[u8] = &[];
        for &(bytes, token) in &order {
            let common = bytes
                .iter()
                .zip(previous)
                .take_while(|(a, b)| a == b)
                .count();
            path.truncate(common);
            for (d, &byte) in bytes.iter().enumerate().skip(common) {
                path.push(nodes.len());
                nodes.push(TrieNode {
                    byte,
                    depth: d as u32 + 1,
                    end: 0,
                    first: 0,
                    count: 0,
                });
            }
            let node = &mut nodes[*path.last().expect("bytes are not empty")];
            if node.count == 0 {
                node.first = tokens.len() as u32;
            }
            node.count += 1;
            tokens.push(token);
            previous = bytes;
        }
        // A subtree ends at the next node no deeper than its root.
        let mut open: Vec<usize> = Vec::new();
        for i in 0..nodes.len() {
            while let Some(&top) = open.last() {
                if nodes[top].depth < nodes[i].depth {
                    break;
                }
                nodes[top].end = i as u32;
                open.pop();
            }
            open.push(i);
        }
        for top in open {
            nodes[top].end = nodes.len() as u32;
        }
        let max_depth = nodes.iter().map(|n| n.depth as usize).max().unwrap_or(0);
        Self {
            nodes,
            tokens,
            max_depth,
        }
    }

    /// The nodes, in preorder.
    pub(crate) fn nodes(&self) -> &[TrieNode] {
        &self.nodes
    }

    /// The tokens whose bytes end at `node`.
    pub(crate) fn tokens_at(&self, node: &TrieNode) -> &[Token] {
        &self.tokens[node.first as usize..(node.first + node.count) as usize]
    }

    /// The longest token, in bytes.
    pub(crate) fn max_depth(&self) -> usize {
        self.max_depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every token's path, read back from the flattened tree.
    #[test]
    fn preorder_paths_spell_every_token() {
        let vocab = TokenBytes::new(["", "ab", "a", "b", "abc", "ab", "ba", "c"]);
        let trie = TokenTrie::new(&vocab);
        let mut spelled: Vec<(Vec<u8>, Token)> = Vec::new();
        let mut prefix: Vec<u8> = Vec::new();
        for node in trie.nodes() {
            prefix.truncate(node.depth as usize - 1);
            prefix.push(node.byte);
            for &t in trie.tokens_at(node) {
                spelled.push((prefix.clone(), t));
            }
        }
        spelled.sort();
        let mut expected: Vec<(Vec<u8>, Token)> = vocab
            .iter()
            .zip(0..)
            .filter(|(b, _)| !b.is_empty())
            .map(|(b, t)| (b.to_vec(), t))
            .collect();
        expected.sort();
        assert_eq!(spelled, expected);
        // Nodes: a, ab, abc, b, ba, c.
        let bytes: Vec<u8> = trie.nodes().iter().map(|n| n.byte).collect();
        assert_eq!(bytes, b"abcbac");
        let ends: Vec<u32> = trie.nodes().iter().map(|n| n.end).collect();
        assert_eq!(ends, [3, 3, 3, 5, 5, 6]);
        assert_eq!(trie.max_depth(), 3);
    }
}
