//! An online generalized suffix automaton over token documents.
//!
//! The suffix automaton of a text (Blumer et al., 1985) is the smallest automaton accepting
//! its substrings. Each state stands for a set of substrings that end at exactly the same
//! positions (their *end set*); `len` is the longest of them, and the *suffix link* points to
//! the state of the longest suffix that ends at more positions. It is built online, one token
//! at a time, in amortised O(1) per token (with O(1) expected transitions), and has at most
//! `2n` states.
//!
//! Two properties carry the whole crate:
//!
//! * **Longest repeated suffix.** After a token is appended, the suffix link of the new state
//!   is the state of the longest suffix of the text that also occurs *earlier*: the match of
//!   the output against itself, for free (see [`SuffixAutomaton::repeated_suffix`]).
//! * **Every occurrence.** The suffix links form a tree whose subtree below a state holds the
//!   end positions of all its occurrences; a state with no position of its own has at least
//!   two children, so enumerating `m` occurrences visits O(m) states
//!   ([`SuffixAutomaton::for_each_end`]).
//!
//! Several documents share one automaton (a *generalized* suffix automaton): each document
//! restarts from the root, and the construction checks for transitions that already exist, so
//! no match ever crosses a document boundary and no separator token is needed (all of `u32`
//! stays available to tokens).

use decoding_core::Token;

use crate::edges::Edges;

/// "No state" / "no position".
pub(crate) const NONE: u32 = u32::MAX;

/// The root state: the empty string.
pub(crate) const ROOT: u32 = 0;

/// A state of a [`SuffixAutomaton`].
pub type StateId = u32;

/// A state's place in the suffix-link tree, and the first position attached to it (a
/// position whose whole document prefix is the state's longest string; more are chained
/// through `pos_next`).
#[derive(Clone, Copy, Debug)]
struct TreeNode {
    pos_head: u32,
    first_child: u32,
    next_sibling: u32,
    prev_sibling: u32,
}

impl TreeNode {
    const EMPTY: Self = Self {
        pos_head: NONE,
        first_child: NONE,
        next_sibling: NONE,
        prev_sibling: NONE,
    };
}

/// An online generalized suffix automaton over documents of tokens.
///
/// Positions are numbered globally, in insertion order across documents: the `i`-th token
/// pushed (counting every document) is at position `i`.
///
/// ```
/// use reference::SuffixAutomaton;
///
/// let mut sam = SuffixAutomaton::new();
/// for &t in &[1, 2, 3, 1, 2] {
///     sam.push(t);
/// }
/// // "1 2" is the longest suffix that occurred before.
/// assert_eq!(sam.repeated_suffix().1, 2);
/// let mut ends = Vec::new();
/// sam.for_each_end(sam.repeated_suffix().0, None, &mut Vec::new(), |p| {
///     ends.push(p);
///     true
/// });
/// ends.sort();
/// assert_eq!(ends, vec![1, 4]); // "1 2" ends at positions 1 and 4
/// ```
#[derive(Clone, Debug)]
pub struct SuffixAutomaton {
    len: Vec<u32>,
    link: Vec<u32>,
    first_end: Vec<u32>,
    edges: Vec<Edges>,
    /// Suffix-link tree and attached positions, one record per state (read together when
    /// occurrences are listed, so one cache line per state visited).
    tree: Vec<TreeNode>,
    /// Per position: the next position attached to the same state.
    pos_next: Vec<u32>,
    last: u32,
    repeated: (u32, u32),
}

impl Default for SuffixAutomaton {
    fn default() -> Self {
        Self::new()
    }
}

impl SuffixAutomaton {
    /// An empty automaton: the root alone, ready for a first document.
    pub fn new() -> Self {
        let mut sam = Self {
            len: Vec::new(),
            link: Vec::new(),
            first_end: Vec::new(),
            edges: Vec::new(),
            tree: Vec::new(),
            pos_next: Vec::new(),
            last: ROOT,
            repeated: (ROOT, 0),
        };
        sam.clear();
        sam
    }

    /// An empty automaton with room for `tokens` tokens.
    pub fn with_capacity(tokens: usize) -> Self {
        let mut sam = Self::new();
        let states = 2 * tokens + 1;
        sam.len.reserve(states);
        sam.link.reserve(states);
        sam.first_end.reserve(states);
        sam.edges.reserve(states);
        sam.tree.reserve(states);
        sam.pos_next.reserve(tokens);
        sam
    }

    /// Forgets every document, keeping the allocations.
    pub fn clear(&mut self) {
        self.len.clear();
        self.link.clear();
        self.first_end.clear();
        self.edges.clear();
        self.tree.clear();
        self.pos_next.clear();
        self.new_state(0, NONE);
        self.last = ROOT;
        self.repeated = (ROOT, 0);
    }

    /// Ends the current document: the next token starts a new one, and no match will span
    /// the boundary.
    pub fn start_document(&mut self) {
        self.last = ROOT;
        self.repeated = (ROOT, 0);
    }

    /// Number of tokens pushed, over all documents (the next position).
    pub fn positions(&self) -> usize {
        self.pos_next.len()
    }

    /// Number of states, the root included.
    pub fn states(&self) -> usize {
        self.len.len()
    }

    /// Number of transitions.
    pub fn transitions(&self) -> usize {
        self.edges.iter().map(Edges::len).sum()
    }

    /// Length of the longest string of `state`.
    pub fn state_len(&self, state: StateId) -> usize {
        self.len[state as usize] as usize
    }

    /// The suffix link of `state` (`None` for the root).
    pub fn suffix_link(&self, state: StateId) -> Option<StateId> {
        match self.link[state as usize] {
            NONE => None,
            link => Some(link),
        }
    }

    /// The smallest end position of the strings of `state` (their first occurrence); `None`
    /// for the root.
    pub fn first_end(&self, state: StateId) -> Option<usize> {
        match self.first_end[state as usize] {
            NONE => None,
            end => Some(end as usize),
        }
    }

    /// The state reached from `state` by `token`.
    #[inline]
    pub fn transition(&self, state: StateId, token: Token) -> Option<StateId> {
        self.edges[state as usize].get(token)
    }

    /// The state holding the suffix of length `len` of the strings of `state`: `state`
    /// itself or one of its suffix-link ancestors. `len` must not exceed `state`'s length.
    pub fn ancestor_with_len(&self, mut state: StateId, len: usize) -> StateId {
        while state != ROOT && self.len[self.link[state as usize] as usize] as usize >= len {
            state = self.link[state as usize];
        }
        state
    }

    /// Appends `token` to the current document.
    pub fn push(&mut self, token: Token) {
        let pos = self.pos_next.len() as u32;
        let last = self.last;
        let new_last = match self.edges[last as usize].get(token) {
            // The whole document prefix already occurs elsewhere (another document).
            Some(q) if self.len[q as usize] == self.len[last as usize] + 1 => {
                self.repeated = (q, self.len[q as usize]);
                q
            }
            Some(q) => {
                let clone = self.split(last, token, q);
                self.repeated = (clone, self.len[clone as usize]);
                clone
            }
            None => {
                let cur = self.new_state(self.len[last as usize] + 1, pos);
                let mut p = last;
                while p != NONE && self.edges[p as usize].get(token).is_none() {
                    self.edges[p as usize].set(token, cur);
                    p = self.link[p as usize];
                }
                let link = if p == NONE {
                    ROOT
                } else {
                    let q = self.edges[p as usize].get(token).unwrap_or(ROOT);
                    if self.len[p as usize] + 1 == self.len[q as usize] {
                        q
                    } else {
                        self.split(p, token, q)
                    }
                };
                self.set_link(cur, link);
                self.repeated = (link, self.len[link as usize]);
                cur
            }
        };
        self.pos_next.push(self.tree[new_last as usize].pos_head);
        self.tree[new_last as usize].pos_head = pos;
        self.last = new_last;
    }

    /// The longest suffix of the current document that also occurs elsewhere (ending at an
    /// earlier position, or in another document): its state and length. The root and 0 when
    /// none does, and right after [`start_document`](Self::start_document).
    pub fn repeated_suffix(&self) -> (StateId, usize) {
        (self.repeated.0, self.repeated.1 as usize)
    }

    /// The state of the whole current document (the state of the last position).
    pub fn last_state(&self) -> StateId {
        self.last
    }

    /// Calls `f` with the end positions of the occurrences of `state`'s strings, skipping the
    /// subtree of `skip` (a suffix-link child of `state` whose occurrences were already
    /// seen), until `f` returns `false`. Returns `false` if stopped early. `stack` is scratch.
    pub fn for_each_end(
        &self,
        state: StateId,
        skip: Option<StateId>,
        stack: &mut Vec<u32>,
        mut f: impl FnMut(usize) -> bool,
    ) -> bool {
        let skip = skip.unwrap_or(NONE);
        // The stack holds sibling-list cursors, so a state with thousands of children costs
        // nothing until they are visited.
        let next = |v: u32| {
            let mut v = v;
            while v != NONE && v == skip {
                v = self.tree[v as usize].next_sibling;
            }
            v
        };
        stack.clear();
        let mut v = state;
        loop {
            let node = self.tree[v as usize];
            let mut pos = node.pos_head;
            while pos != NONE {
                if !f(pos as usize) {
                    return false;
                }
                pos = self.pos_next[pos as usize];
            }
            let child = next(node.first_child);
            if v != state {
                let sibling = next(node.next_sibling);
                if sibling != NONE {
                    stack.push(sibling);
                }
            }
            v = if child != NONE {
                child
            } else if let Some(up) = stack.pop() {
                up
            } else {
                return true;
            };
        }
    }

    /// Lays the suffix-link tree out in depth-first order: returns the attached positions in
    /// that order and, per state, the range of them that lies in its subtree (the end
    /// positions of all its occurrences, contiguous). For automata that no longer grow.
    pub(crate) fn euler_tour(&self) -> (Vec<u32>, Vec<(u32, u32)>) {
        let mut order = Vec::with_capacity(self.positions());
        let mut ranges = vec![(0, 0); self.states()];
        let mut stack = vec![(ROOT, false)];
        while let Some((v, exit)) = stack.pop() {
            let node = self.tree[v as usize];
            if exit {
                ranges[v as usize].1 = order.len() as u32;
                continue;
            }
            ranges[v as usize].0 = order.len() as u32;
            let mut pos = node.pos_head;
            while pos != NONE {
                order.push(pos);
                pos = self.pos_next[pos as usize];
            }
            stack.push((v, true));
            let mut child = node.first_child;
            while child != NONE {
                stack.push((child, false));
                child = self.tree[child as usize].next_sibling;
            }
        }
        (order, ranges)
    }

    fn new_state(&mut self, len: u32, first_end: u32) -> u32 {
        let id = self.len.len() as u32;
        self.len.push(len);
        self.link.push(NONE);
        self.first_end.push(first_end);
        self.edges.push(Edges::default());
        self.tree.push(TreeNode::EMPTY);
        id
    }

    /// Splits `q` so that the strings up to `len(p) + 1` get their own state (the clone),
    /// redirecting `p` and its suffix-link ancestors that led to `q` by `token`.
    fn split(&mut self, p: u32, token: Token, q: u32) -> u32 {
        let clone = self.new_state(self.len[p as usize] + 1, self.first_end[q as usize]);
        self.edges[clone as usize] = self.edges[q as usize].clone();
        self.set_link(clone, self.link[q as usize]);
        self.set_link(q, clone);
        let mut p = p;
        while p != NONE && self.edges[p as usize].get(token) == Some(q) {
            self.edges[p as usize].set(token, clone);
            p = self.link[p as usize];
        }
        clone
    }

    /// Sets `v`'s suffix link, keeping the suffix-link tree's child lists in step.
    fn set_link(&mut self, v: u32, parent: u32) {
        let (vi, old) = (v as usize, self.link[v as usize]);
        let tree = &mut self.tree;
        if old != NONE {
            let (prev, next) = (tree[vi].prev_sibling, tree[vi].next_sibling);
            if prev == NONE {
                tree[old as usize].first_child = next;
            } else {
                tree[prev as usize].next_sibling = next;
            }
            if next != NONE {
                tree[next as usize].prev_sibling = prev;
            }
        }
        self.link[vi] = parent;
        let head = tree[parent as usize].first_child;
        tree[vi].prev_sibling = NONE;
        tree[vi].next_sibling = head;
        if head != NONE {
            tree[head as usize].prev_sibling = v;
        }
        tree[parent as usize].first_child = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(docs: &[&[Token]]) -> SuffixAutomaton {
        let mut sam = SuffixAutomaton::new();
        for doc in docs {
            sam.start_document();
            for &t in *doc {
                sam.push(t);
            }
        }
        sam
    }

    /// Walks `pattern` from the root.
    fn find(sam: &SuffixAutomaton, pattern: &[Token]) -> Option<StateId> {
        pattern
            .iter()
            .try_fold(ROOT, |state, &t| sam.transition(state, t))
    }

    fn ends(sam: &SuffixAutomaton, state: StateId) -> Vec<usize> {
        let mut out = Vec::new();
        sam.for_each_end(state, None, &mut Vec::new(), |p| {
            out.push(p);
            true
        });
        out.sort_unstable();
        out
    }

    #[test]
    fn accepts_exactly_the_substrings_and_lists_their_ends() {
        let docs: [&[Token]; 3] = [&[1, 2, 1, 2, 3], &[2, 1, 2], &[3, 3, 3]];
        let sam = build(&docs);
        let text: Vec<Token> = docs.concat();
        let starts = [0usize, 5, 8, 11];
        for len in 1..=5 {
            for a in [1, 2, 3, 4] {
                for pattern in [vec![a; len], [1, 2, 3].repeat(len)[..len].to_vec()] {
                    let mut expected = Vec::new();
                    for d in 0..3 {
                        for end in starts[d] + len - 1..starts[d + 1] {
                            if text[end + 1 - len..=end] == pattern[..] {
                                expected.push(end);
                            }
                        }
                    }
                    match find(&sam, &pattern) {
                        None => assert!(expected.is_empty(), "{pattern:?}"),
                        Some(state) => {
                            assert_eq!(ends(&sam, state), expected, "{pattern:?}");
                            assert_eq!(sam.first_end(state), expected.first().copied());
                        }
                    }
                }
            }
        }
        assert!(sam.states() <= 2 * text.len() + 1);
    }

    #[test]
    fn repeated_suffix_of_the_current_document() {
        let mut sam = build(&[&[5, 6, 7]]);
        sam.start_document();
        let expected = [1, 2, 3, 0, 1, 2];
        for (&t, &len) in [5, 6, 7, 9, 5, 6].iter().zip(&expected) {
            sam.push(t);
            assert_eq!(sam.repeated_suffix().1, len);
        }
        let mut single = build(&[&[4, 4, 4]]);
        assert_eq!(single.repeated_suffix().1, 2);
        single.push(4);
        assert_eq!(single.repeated_suffix().1, 3);
        assert_eq!(single.ancestor_with_len(single.repeated_suffix().0, 1), 1);
    }
}
