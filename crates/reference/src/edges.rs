//! Transition storage of one automaton state: a few edges inline, a hash map beyond.
//!
//! Most states of a suffix automaton have one or two outgoing transitions (a text of `n`
//! tokens has at most `2n` states and `3n` transitions), but a few (the root above all) have
//! as many as there are distinct tokens, and tokens range over all of `u32`. So a state keeps
//! up to [`FEW`] edges in a small inline array scanned linearly, and switches to a hash map
//! when it needs more: memory stays near 32 bytes a state, and lookups stay O(1) expected
//! whatever the vocabulary.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use decoding_core::Token;

/// Edges kept inline before switching to a hash map.
const FEW: usize = 3;

/// A multiplicative hash for token keys (tokens are not adversarial input here, and SipHash
/// would dominate the lookup time).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type TokenMap = HashMap<Token, u32, BuildHasherDefault<TokenHasher>>;

/// The outgoing transitions of one state: token -> target state.
#[derive(Clone, Debug)]
pub(crate) enum Edges {
    /// Up to [`FEW`] edges, the first `len` of `items` in use.
    Few { len: u8, items: [(Token, u32); FEW] },
    /// Many edges.
    Many(Box<TokenMap>),
}

impl Default for Edges {
    fn default() -> Self {
        Self::Few {
            len: 0,
            items: [(0, 0); FEW],
        }
    }
}

impl Edges {
    /// The target of the edge labelled `token`.
    #[inline]
    pub(crate) fn get(&self, token: Token) -> Option<u32> {
        match self {
            Self::Few { len, items } => items[..*len as usize]
                .iter()
                .find(|&&(t, _)| t == token)
                .map(|&(_, target)| target),
            Self::Many(map) => map.get(&token).copied(),
        }
    }

    /// Sets (adds or redirects) the edge labelled `token`.
    pub(crate) fn set(&mut self, token: Token, target: u32) {
        match self {
            Self::Few { len, items } => {
                let used = *len as usize;
                if let Some(item) = items[..used].iter_mut().find(|(t, _)| *t == token) {
                    item.1 = target;
                } else if used < FEW {
                    items[used] = (token, target);
                    *len += 1;
                } else {
                    let mut map = TokenMap::with_capacity_and_hasher(2 * FEW, Default::default());
                    map.extend(items.iter().copied());
                    map.insert(token, target);
                    *self = Self::Many(Box::new(map));
                }
            }
            Self::Many(map) => {
                map.insert(token, target);
            }
        }
    }

    /// Number of edges.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Few { len, .. } => *len as usize,
            Self::Many(map) => map.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_from_inline_to_map_and_redirects() {
        let mut edges = Edges::default();
        for t in 0..10u32 {
            assert_eq!(edges.get(t * 7), None);
            edges.set(t * 7, t);
            assert_eq!(edges.len(), t as usize + 1);
        }
        for t in 0..10u32 {
            assert_eq!(edges.get(t * 7), Some(t));
        }
        edges.set(14, 99);
        assert_eq!(edges.get(14), Some(99));
        assert_eq!(edges.len(), 10);
        let mut few = Edges::default();
        few.set(u32::MAX, 1);
        few.set(u32::MAX, 2);
        assert_eq!((few.get(u32::MAX), few.len()), (Some(2), 1));
    }
}
