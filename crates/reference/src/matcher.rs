//! The matcher: the longest suffix of the growing context found in the references and in the
//! context itself, and every occurrence of it.

use std::sync::Arc;

use decoding_core::Token;

use crate::automaton::{NONE, ROOT, StateId, SuffixAutomaton};
use crate::index::{RefCursor, ReferenceIndex};

/// Where a copied span comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// A reference document.
    Reference,
    /// The context: the prompt and the output so far.
    Context,
}

/// One earlier occurrence of a suffix of the context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Occurrence {
    /// Where it occurs.
    pub source: Source,
    /// Position of its last token: an offset into the concatenated reference documents, or
    /// an index into the context.
    pub end: usize,
    /// How many tokens before `end` (inclusive) agree with the end of the context.
    pub match_len: usize,
}

/// What [`Matcher::occurrences`] collects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OccurrenceQuery {
    /// Search the reference documents.
    pub references: bool,
    /// Search the context (prompt and output).
    pub context: bool,
    /// Shortest match worth collecting (at least 1).
    pub min_len: usize,
    /// Most occurrences to collect.
    pub max_occurrences: usize,
}

/// Matches the context (prompt, then output as it grows) against reference documents and
/// against itself.
///
/// Each [`push`](Self::push) costs amortised O(1) (expected, through hashed transitions),
/// whatever the match length: the reference side follows the matching statistics of the
/// reference automaton, the context side is an online suffix automaton of the context whose
/// newest suffix link is the longest earlier repeat. No match length is capped.
///
/// ```
/// use std::sync::Arc;
/// use reference::{Matcher, ReferenceIndex};
///
/// let index = Arc::new(ReferenceIndex::new([vec![1, 2, 3, 4, 5]]));
/// let mut m = Matcher::new(index);
/// m.extend(&[9, 2, 3, 4, 8, 9, 2]);
/// assert_eq!(m.reference_match(), 1); // "2"
/// assert_eq!(m.context_match(), 2); // "9 2" occurred earlier in the context
/// m.push(3);
/// assert_eq!((m.reference_match(), m.context_match(), m.longest_match()), (2, 3, 3));
/// ```
#[derive(Clone, Debug)]
pub struct Matcher {
    index: Arc<ReferenceIndex>,
    cursor: RefCursor,
    live: SuffixAutomaton,
    context: Vec<Token>,
    stack: Vec<u32>,
}

impl Matcher {
    /// A matcher over `index`, with an empty context.
    pub fn new(index: Arc<ReferenceIndex>) -> Self {
        let cursor = index.cursor();
        Self {
            index,
            cursor,
            live: SuffixAutomaton::new(),
            context: Vec::new(),
            stack: Vec::new(),
        }
    }

    /// Forgets the context, keeping the references and the allocations.
    pub fn reset(&mut self) {
        self.cursor = self.index.cursor();
        self.live.clear();
        self.context.clear();
    }

    /// Appends one context token.
    pub fn push(&mut self, token: Token) {
        self.index.advance(&mut self.cursor, token);
        self.live.push(token);
        self.context.push(token);
    }

    /// Appends context tokens.
    pub fn extend(&mut self, tokens: &[Token]) {
        for &t in tokens {
            self.push(t);
        }
    }

    /// The context so far.
    pub fn context(&self) -> &[Token] {
        &self.context
    }

    /// The reference index.
    pub fn index(&self) -> &Arc<ReferenceIndex> {
        &self.index
    }

    /// The automaton of the context.
    pub fn context_automaton(&self) -> &SuffixAutomaton {
        &self.live
    }

    /// Length of the longest suffix of the context that occurs in a reference document.
    pub fn reference_match(&self) -> usize {
        self.cursor.len()
    }

    /// Length of the longest suffix of the context that also ends at an earlier position of
    /// the context.
    pub fn context_match(&self) -> usize {
        self.live.repeated_suffix().1
    }

    /// Length of the longest suffix of the context found in the references or earlier in the
    /// context.
    pub fn longest_match(&self) -> usize {
        self.reference_match().max(self.context_match())
    }

    /// The first occurrence (smallest position) of the context's suffix of length `len` in
    /// `source`, if that suffix occurs there (for the context: ends before its last token).
    pub fn first_occurrence(&self, source: Source, len: usize) -> Option<Occurrence> {
        let (sam, state, matched) = self.side(source);
        if len == 0 || len > matched {
            return None;
        }
        let state = sam.ancestor_with_len(state, len);
        Some(Occurrence {
            source,
            end: sam.first_end(state)?,
            match_len: len,
        })
    }

    fn side(&self, source: Source) -> (&SuffixAutomaton, StateId, usize) {
        match source {
            Source::Reference => (
                self.index.automaton(),
                self.cursor.state(),
                self.cursor.len(),
            ),
            Source::Context => {
                let (state, len) = self.live.repeated_suffix();
                (&self.live, state, len)
            }
        }
    }

    /// Appends to `out` up to `query.max_occurrences` earlier occurrences of suffixes of the
    /// context, longest matches first: every occurrence of the longest match, then those of
    /// the next shorter suffix that has more occurrences, and so on down to
    /// `query.min_len`. Each occurrence is listed once, with its exact match length. Within
    /// one match length the order is unspecified. Costs O(occurrences collected + suffix
    /// lengths visited).
    pub fn occurrences(&mut self, query: &OccurrenceQuery, out: &mut Vec<Occurrence>) {
        let min_len = query.min_len.max(1);
        let live_end = self.context.len().wrapping_sub(1);
        // One cursor per source: (state, exact match length of its new occurrences, the child
        // subtree already listed).
        let mut sides: [Option<(Source, StateId, usize, u32)>; 2] = [
            query.references.then(|| {
                (
                    Source::Reference,
                    self.cursor.state(),
                    self.cursor.len(),
                    NONE,
                )
            }),
            query.context.then(|| {
                let (state, len) = self.live.repeated_suffix();
                (Source::Context, state, len, NONE)
            }),
        ];
        let mut stack = std::mem::take(&mut self.stack);
        let mut taken = 0;
        while taken < query.max_occurrences {
            let Some(side) = sides
                .iter_mut()
                .filter(|s| s.is_some_and(|(_, _, len, _)| len >= min_len))
                .max_by_key(|s| s.map_or(0, |(_, _, len, _)| len))
            else {
                break;
            };
            let Some((source, state, match_len, skip)) = *side else {
                break;
            };
            let skip = (skip != NONE).then_some(skip);
            let mut add = |end: usize| {
                out.push(Occurrence {
                    source,
                    end,
                    match_len,
                });
                taken += 1;
                taken < query.max_occurrences
            };
            let sam = match source {
                Source::Reference => {
                    // The reference index lists each state's occurrences contiguously.
                    let ends = self.index.ends(state, skip).into_iter().flatten();
                    for &end in ends {
                        if !add(end as usize) {
                            break;
                        }
                    }
                    self.index.automaton()
                }
                Source::Context => {
                    self.live
                        .for_each_end(state, skip, &mut stack, |end| end == live_end || add(end));
                    &self.live
                }
            };
            *side = match sam.suffix_link(state) {
                Some(link) if state != ROOT => Some((source, link, sam.state_len(link), state)),
                _ => None,
            };
        }
        self.stack = stack;
    }

    /// The token `depth` places after occurrence `occ` (depth 0 is the token right after
    /// it), or `None` past the end of its document.
    ///
    /// With `periodic`, a context occurrence whose continuation runs into the end of the
    /// context continues with its own predicted tokens: the context repeats with period
    /// `context.len() - 1 - occ.end`, which is how a looping output goes on.
    #[inline]
    pub fn continuation(&self, occ: &Occurrence, depth: usize, periodic: bool) -> Option<Token> {
        match occ.source {
            Source::Reference => self.index.continuation(occ.end).get(depth).copied(),
            Source::Context => {
                let period = self.context.len().checked_sub(occ.end + 1)?;
                if period == 0 {
                    None
                } else if periodic {
                    Some(self.context[occ.end + 1 + depth % period])
                } else {
                    self.context.get(occ.end + 1 + depth).copied()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrences_come_longest_first_with_exact_lengths() {
        let index = Arc::new(ReferenceIndex::new([vec![1, 2, 3, 7], vec![3, 8]]));
        let mut m = Matcher::new(index);
        m.extend(&[5, 2, 3, 9, 1, 2, 3]);
        let mut out = Vec::new();
        let query = OccurrenceQuery {
            references: true,
            context: true,
            min_len: 1,
            max_occurrences: 100,
        };
        m.occurrences(&query, &mut out);
        let lens: Vec<_> = out.iter().map(|o| o.match_len).collect();
        assert!(lens.windows(2).all(|w| w[0] >= w[1]), "{lens:?}");
        assert_eq!(
            out[0],
            Occurrence {
                source: Source::Reference,
                end: 2,
                match_len: 3
            }
        );
        let mut rest: Vec<_> = out[1..]
            .iter()
            .map(|o| (o.source, o.end, o.match_len))
            .collect();
        rest.sort_by_key(|&(s, e, _)| (s == Source::Context, e));
        assert_eq!(
            rest,
            vec![(Source::Reference, 4, 1), (Source::Context, 2, 2)]
        );
        assert_eq!(m.continuation(&out[0], 0, false), Some(7));
        assert_eq!(m.continuation(&out[0], 1, false), None);
        let ctx = Occurrence {
            source: Source::Context,
            end: 2,
            match_len: 2,
        };
        assert_eq!(m.continuation(&ctx, 3, false), Some(3));
        assert_eq!(m.continuation(&ctx, 4, false), None);
        assert_eq!(m.continuation(&ctx, 4, true), Some(9));
    }
}
