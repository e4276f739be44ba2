//! The Jacobi trajectory: guesses for a run of consecutive positions of the sequence.

use decoding_core::Token;

/// Guesses for the consecutive sequence positions `start..start + len`.
///
/// Positions are absolute indices into the sequence (prompt first), so a trajectory stays
/// aligned with the text however many tokens a step accepts: after a step the caller moves
/// the start to the first position still unknown ([`advance_to`](Self::advance_to)), which
/// drops the guesses the accepted tokens replaced and keeps every later guess where it was,
/// then tops the run up again ([`fill`](Self::fill)).
///
/// Jacobi decoding keeps one trajectory (the `k` guesses after the pending token); lookahead
/// decoding keeps one per level of its window.
///
/// ```
/// use jacobi::Trajectory;
///
/// // Guesses for positions 10, 11, 12, 13.
/// let mut t = Trajectory::from_tokens(10, [5, 6, 7, 8]);
/// // The step emitted two tokens: positions 10 and 11 are now known.
/// t.advance_to(12);
/// assert_eq!((t.start(), t.tokens()), (12, &[7, 8][..]));
/// // Top the run up to four guesses, here by repeating the previous one.
/// t.fill(4, |_position, previous| previous.unwrap_or(0));
/// assert_eq!(t.tokens(), &[7, 8, 8, 8]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trajectory {
    start: usize,
    tokens: Vec<Token>,
}

impl Trajectory {
    /// An empty trajectory whose first guess will be for position `start`.
    pub fn new(start: usize) -> Self {
        Self {
            start,
            tokens: Vec::new(),
        }
    }

    /// Guesses `tokens` for positions `start, start + 1, ...`.
    pub fn from_tokens(start: usize, tokens: impl IntoIterator<Item = Token>) -> Self {
        Self {
            start,
            tokens: tokens.into_iter().collect(),
        }
    }

    /// The position of the first guess.
    pub fn start(&self) -> usize {
        self.start
    }

    /// The position just after the last guess.
    pub fn end(&self) -> usize {
        self.start + self.tokens.len()
    }

    /// Number of guesses.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there is no guess.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The guesses, first position first.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The guess for `position`, if the trajectory covers it.
    pub fn get(&self, position: usize) -> Option<Token> {
        position
            .checked_sub(self.start)
            .and_then(|i| self.tokens.get(i).copied())
    }

    /// Forgets every guess; the next one will be for `start`.
    pub fn reset(&mut self, start: usize) {
        self.start = start;
        self.tokens.clear();
    }

    /// Replaces the guesses by `tokens`, starting at `start` (keeps the allocation).
    pub fn assign(&mut self, start: usize, tokens: impl IntoIterator<Item = Token>) {
        self.start = start;
        self.tokens.clear();
        self.tokens.extend(tokens);
    }

    /// Moves the first position to `start`: guesses for earlier positions are dropped and
    /// later ones keep their positions. Moving past the end leaves an empty trajectory at
    /// `start`; moving backwards (positions whose guesses were never kept) empties it too.
    pub fn advance_to(&mut self, start: usize) {
        if start < self.start {
            self.reset(start);
            return;
        }
        let drop = (start - self.start).min(self.tokens.len());
        self.tokens.drain(..drop);
        self.start = start;
    }

    /// Keeps the first `len` guesses.
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    /// Appends a guess for position [`end`](Self::end).
    pub fn push(&mut self, token: Token) {
        self.tokens.push(token);
    }

    /// Appends guesses until there are `len`, asking `next(position, previous guess)` for
    /// each (`previous` is `None` only when the trajectory is empty).
    pub fn fill(&mut self, len: usize, mut next: impl FnMut(usize, Option<Token>) -> Token) {
        while self.tokens.len() < len {
            let token = next(self.end(), self.tokens.last().copied());
            self.tokens.push(token);
        }
    }

    /// Number of leading positions (from [`start`](Self::start)) on which `self` and `other`
    /// hold the same guess; 0 when they start at different positions.
    pub fn agreement(&self, other: &Trajectory) -> usize {
        if self.start != other.start {
            return 0;
        }
        self.tokens
            .iter()
            .zip(&other.tokens)
            .take_while(|(a, b)| a == b)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_keeps_positions() {
        let mut t = Trajectory::from_tokens(3, [1, 2, 3, 4]);
        assert_eq!(t.get(5), Some(3));
        t.advance_to(5);
        assert_eq!(
            (t.start(), t.end(), t.get(5), t.get(4)),
            (5, 7, Some(3), None)
        );
        t.advance_to(9);
        assert!(t.is_empty());
        assert_eq!((t.start(), t.end()), (9, 9));
        t.push(7);
        t.advance_to(2);
        assert_eq!((t.start(), t.len()), (2, 0));
    }

    #[test]
    fn fill_sees_positions_and_previous_guess() {
        let mut t = Trajectory::new(4);
        let mut seen = Vec::new();
        t.fill(3, |pos, prev| {
            seen.push((pos, prev));
            pos as Token
        });
        assert_eq!(t.tokens(), &[4, 5, 6]);
        assert_eq!(seen, vec![(4, None), (5, Some(4)), (6, Some(5))]);
        t.fill(2, |_, _| unreachable!("already long enough"));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn agreement_counts_common_prefix() {
        let a = Trajectory::from_tokens(1, [1, 2, 3]);
        assert_eq!(a.agreement(&Trajectory::from_tokens(1, [1, 2, 9])), 2);
        assert_eq!(a.agreement(&Trajectory::from_tokens(2, [2, 3])), 0);
        assert_eq!(a.agreement(&a), 3);
    }
}
