//! The reference documents, indexed once and shared by every sequence that copies from them.

use decoding_core::Token;

use crate::automaton::{ROOT, StateId, SuffixAutomaton};

/// Reference documents and the generalized suffix automaton over them.
///
/// Built once (O(total tokens)), immutable afterwards: wrap it in an
/// [`Arc`](std::sync::Arc) to share a large corpus between sequences and threads. Each
/// sequence keeps its own [`RefCursor`] into it.
///
/// ```
/// use reference::ReferenceIndex;
///
/// let index = ReferenceIndex::new([vec![1, 2, 3, 4], vec![9, 2, 3, 5]]);
/// let mut cursor = index.cursor();
/// for t in [7, 2, 3] {
///     index.advance(&mut cursor, t);
/// }
/// assert_eq!(cursor.len(), 2); // "2 3" occurs in the references
/// ```
#[derive(Clone, Debug, Default)]
pub struct ReferenceIndex {
    automaton: SuffixAutomaton,
    text: Vec<Token>,
    /// Start position of each non-empty document, then the total length.
    bounds: Vec<usize>,
    /// End positions in depth-first order of the suffix-link tree...
    ends: Vec<u32>,
    /// ...and the range of them below each state: its occurrences, contiguous.
    ranges: Vec<(u32, u32)>,
}

/// Where a sequence stands in a [`ReferenceIndex`]: the longest suffix of the tokens fed so
/// far that occurs in the references (matching statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefCursor {
    state: StateId,
    len: u32,
}

impl RefCursor {
    /// Length of the match: the longest suffix of the tokens fed so far that occurs in a
    /// reference document.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing matches.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The automaton state of the match.
    pub fn state(&self) -> StateId {
        self.state
    }
}

impl ReferenceIndex {
    /// Indexes `documents` (empty ones are skipped). No match spans two documents.
    pub fn new<D: AsRef<[Token]>>(documents: impl IntoIterator<Item = D>) -> Self {
        let mut index = Self::default();
        index.bounds.push(0);
        for doc in documents {
            let doc = doc.as_ref();
            if doc.is_empty() {
                continue;
            }
            index.automaton.start_document();
            for &t in doc {
                index.automaton.push(t);
            }
            index.text.extend_from_slice(doc);
            index.bounds.push(index.text.len());
        }
        (index.ends, index.ranges) = index.automaton.euler_tour();
        index
    }

    /// An index with no documents: nothing ever matches.
    pub fn empty() -> Self {
        Self::new(std::iter::empty::<&[Token]>())
    }

    /// Number of (non-empty) documents.
    pub fn documents(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    /// Total tokens indexed.
    pub fn tokens(&self) -> usize {
        self.text.len()
    }

    /// Whether no token is indexed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The automaton over the documents (positions are offsets into the concatenated
    /// documents).
    pub fn automaton(&self) -> &SuffixAutomaton {
        &self.automaton
    }

    /// A cursor matching nothing yet.
    pub fn cursor(&self) -> RefCursor {
        RefCursor {
            state: ROOT,
            len: 0,
        }
    }

    /// Feeds `token` to `cursor`: afterwards it holds the longest suffix of the tokens fed so
    /// far that occurs in the references. Amortised O(1): the match grows by at most one
    /// token per call, and each suffix-link step shortens it.
    #[inline]
    pub fn advance(&self, cursor: &mut RefCursor, token: Token) {
        let sam = &self.automaton;
        loop {
            if let Some(next) = sam.transition(cursor.state, token) {
                cursor.state = next;
                cursor.len += 1;
                return;
            }
            match sam.suffix_link(cursor.state) {
                Some(link) => {
                    cursor.state = link;
                    cursor.len = sam.state_len(link) as u32;
                }
                None => {
                    cursor.len = 0;
                    return;
                }
            }
        }
    }

    /// The tokens that follow position `end` in its document (empty at a document's end).
    pub fn continuation(&self, end: usize) -> &[Token] {
        let doc = self.bounds.partition_point(|&start| start <= end);
        let stop = self.bounds.get(doc).copied().unwrap_or(self.text.len());
        &self.text[(end + 1).min(stop)..stop]
    }

    /// The end positions of every occurrence of `state`'s strings, leaving out those below its
    /// suffix-link child `skip`: at most two contiguous runs.
    pub fn ends(&self, state: StateId, skip: Option<StateId>) -> [&[u32]; 2] {
        let (start, stop) = self.ranges[state as usize];
        match skip {
            Some(child) => {
                let (a, b) = self.ranges[child as usize];
                [
                    &self.ends[start as usize..a as usize],
                    &self.ends[b as usize..stop as usize],
                ]
            }
            None => [&self.ends[start as usize..stop as usize], &[]],
        }
    }

    /// The token at position `pos` (of the concatenated documents).
    pub fn token(&self, pos: usize) -> Token {
        self.text[pos]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_stop_at_document_ends() {
        let index = ReferenceIndex::new([vec![1, 2, 3], vec![], vec![4, 5]]);
        assert_eq!(index.documents(), 2);
        assert_eq!(index.continuation(0), &[2, 3]);
        assert_eq!(index.continuation(2), &[] as &[Token]);
        assert_eq!(index.continuation(3), &[5]);
        assert_eq!(index.continuation(4), &[] as &[Token]);
    }

    #[test]
    fn cursor_never_matches_across_documents() {
        let index = ReferenceIndex::new([vec![1, 2], vec![3, 4]]);
        let mut cursor = index.cursor();
        for t in [1, 2, 3] {
            index.advance(&mut cursor, t);
        }
        assert_eq!(cursor.len(), 1);
        index.advance(&mut cursor, 4);
        assert_eq!(cursor.len(), 2);
        assert_eq!(ReferenceIndex::empty().automaton().transition(0, 1), None);
    }
}
