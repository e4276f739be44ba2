//! Where first guesses come from: the initialisation policies of a trajectory.

use std::collections::HashMap;

use decoding_core::{DecodeError, Token};

use crate::trajectory::Trajectory;

/// How a guess is made for a position nothing has predicted yet (the start of decoding, and
/// the positions a step uncovers at the end of the window).
///
/// Every policy is deterministic: the same prompt and output give the same guesses, so seeded
/// runs are reproducible (and, under sampling, token-identical to plain sampling with the same
/// seed, since drafts never consume randomness).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Init {
    /// A prompt token chosen by a hash of `seed` and the position: the reference lookahead
    /// implementation's "random copy from the prompt", made reproducible.
    Prompt {
        /// The seed, chosen by the caller.
        seed: u64,
    },
    /// Repeat the previous token (the last guess, or the pending token).
    RepeatLast,
    /// A fixed token (a pad or space token, say).
    Pad(Token),
    /// The token that followed the most recent earlier occurrence of the previous two tokens
    /// in the prompt and output (backing off to the previous token alone, then to
    /// [`RepeatLast`](Self::RepeatLast)): a tiny n-gram source built as decoding goes.
    Ngram,
}

impl Default for Init {
    fn default() -> Self {
        Self::Prompt { seed: 0 }
    }
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Prompt { seed } => write!(f, "prompt:{seed}"),
            Self::RepeatLast => write!(f, "last"),
            Self::Pad(token) => write!(f, "pad:{token}"),
            Self::Ngram => write!(f, "ngram"),
        }
    }
}

impl std::str::FromStr for Init {
    type Err = String;

    /// Parses `prompt`, `prompt:SEED`, `last`, `pad:TOKEN` or `ngram`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let number = |what: &str| -> Result<u64, String> {
            arg.parse()
                .map_err(|_| format!("`{s}`: expected {what} after `{name}:`"))
        };
        match (name, arg.is_empty()) {
            ("prompt", true) => Ok(Self::Prompt { seed: 0 }),
            ("prompt", false) => Ok(Self::Prompt {
                seed: number("a seed")?,
            }),
            ("last", true) => Ok(Self::RepeatLast),
            ("pad", false) => Token::try_from(number("a token id")?)
                .map(Self::Pad)
                .map_err(|_| format!("`{s}`: token id out of range")),
            ("ngram", true) => Ok(Self::Ngram),
            _ => Err(format!(
                "`{s}`: expected prompt[:SEED], last, pad:TOKEN or ngram"
            )),
        }
    }
}

/// For each context of one or two tokens, the token that followed its most recent
/// occurrence; updated in O(1) per new token.
#[derive(Clone, Debug, Default)]
pub struct SuccessorIndex {
    unigram: HashMap<Token, Token>,
    bigram: HashMap<(Token, Token), Token>,
    indexed: usize,
}

impl SuccessorIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.unigram.clear();
        self.bigram.clear();
        self.indexed = 0;
    }

    /// Indexes the tokens of `sequence` not seen yet. `sequence` must extend the sequence of
    /// the previous call (decoding only appends); a shorter one restarts the index.
    pub fn extend(&mut self, sequence: &[Token]) {
        if sequence.len() < self.indexed {
            self.clear();
        }
        for q in self.indexed.max(1)..sequence.len() {
            self.unigram.insert(sequence[q - 1], sequence[q]);
            if q >= 2 {
                self.bigram
                    .insert((sequence[q - 2], sequence[q - 1]), sequence[q]);
            }
        }
        self.indexed = sequence.len();
    }

    /// The token that followed the most recent occurrence of the last two tokens of
    /// `recent` (or, failing that, of its last token).
    pub fn successor(&self, recent: &[Token]) -> Option<Token> {
        let n = recent.len();
        let by_bigram = (n >= 2)
            .then(|| self.bigram.get(&(recent[n - 2], recent[n - 1])))
            .flatten();
        by_bigram
            .or_else(|| recent.last().and_then(|t| self.unigram.get(t)))
            .copied()
    }
}

/// An [`Init`] policy with the state it needs (the prompt, a [`SuccessorIndex`]).
#[derive(Clone, Debug, Default)]
pub struct Initializer {
    init: Init,
    prompt: Vec<Token>,
    index: SuccessorIndex,
}

impl Initializer {
    /// A policy, to be started with [`begin`](Self::begin).
    pub fn new(init: Init) -> Self {
        Self {
            init,
            prompt: Vec::new(),
            index: SuccessorIndex::new(),
        }
    }

    /// The policy.
    pub fn init(&self) -> Init {
        self.init
    }

    /// Starts a sequence: remembers the prompt and checks the pad token against the vocabulary.
    pub fn begin(&mut self, prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        if let Init::Pad(token) = self.init
            && token as usize >= vocab_size
        {
            return Err(DecodeError::TokenOutOfVocab { token, vocab_size });
        }
        self.prompt.clear();
        self.prompt.extend_from_slice(prompt);
        self.index.clear();
        if self.init == Init::Ngram {
            self.index.extend(prompt);
        }
        Ok(())
    }

    /// Learns the sequence so far (prompt and output); only the n-gram policy uses it.
    pub fn observe(&mut self, sequence: &[Token]) {
        if self.init == Init::Ngram {
            self.index.extend(sequence);
        }
    }

    /// Tops `trajectory` up to `len` guesses. Positions below `known.len()` are known tokens
    /// (the sequence so far); each new guess sees the two tokens before it, guessed or known.
    pub fn fill(&self, trajectory: &mut Trajectory, len: usize, known: &[Token]) {
        while trajectory.len() < len {
            let position = trajectory.end();
            let at = |q: Option<usize>| {
                q.and_then(|q| trajectory.get(q).or_else(|| known.get(q).copied()))
            };
            let token = match (at(position.checked_sub(2)), at(position.checked_sub(1))) {
                (Some(a), Some(b)) => self.guess(position, &[a, b]),
                (_, Some(b)) => self.guess(position, &[b]),
                _ => self.guess(position, &[]),
            };
            trajectory.push(token);
        }
    }

    /// A guess for `position`, whose preceding tokens end with `recent` (guesses or known
    /// tokens, at least one).
    pub fn guess(&self, position: usize, recent: &[Token]) -> Token {
        let last = recent.last().copied().unwrap_or(0);
        match self.init {
            Init::Prompt { seed } if !self.prompt.is_empty() => {
                let i = mix(seed ^ mix(position as u64)) % self.prompt.len() as u64;
                self.prompt[i as usize]
            }
            Init::Prompt { .. } | Init::RepeatLast => last,
            Init::Pad(token) => token,
            Init::Ngram => self.index.successor(recent).unwrap_or(last),
        }
    }
}

/// SplitMix64's finaliser: a cheap, well-mixed, portable hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_index_prefers_longer_recent_context() {
        let mut index = SuccessorIndex::new();
        index.extend(&[1, 2, 3, 9, 2, 4]);
        assert_eq!(index.successor(&[1, 2]), Some(3));
        assert_eq!(index.successor(&[7, 2]), Some(4));
        assert_eq!(index.successor(&[5]), None);
        index.extend(&[1, 2, 3, 9, 2, 4, 1, 2, 8]);
        assert_eq!(index.successor(&[1, 2]), Some(8));
        index.extend(&[6, 6]);
        assert_eq!(index.successor(&[6]), Some(6));
        assert_eq!(index.successor(&[2]), None);
    }

    #[test]
    fn policies_are_deterministic() {
        let mut a = Initializer::new(Init::Prompt { seed: 3 });
        a.begin(&[10, 11, 12, 13], 20).unwrap();
        let first: Vec<Token> = (0..8).map(|p| a.guess(p, &[1])).collect();
        assert!(first.iter().all(|t| (10..14).contains(t)));
        assert_eq!(first, (0..8).map(|p| a.guess(p, &[1])).collect::<Vec<_>>());
        let mut pad = Initializer::new(Init::Pad(7));
        assert!(pad.begin(&[1], 5).is_err());
        pad.begin(&[1], 8).unwrap();
        assert_eq!(pad.guess(0, &[1]), 7);
        let mut last = Initializer::new(Init::RepeatLast);
        last.begin(&[1], 8).unwrap();
        assert_eq!(last.guess(0, &[1, 4]), 4);
        let mut ngram = Initializer::new(Init::Ngram);
        ngram.begin(&[1, 2, 3, 1], 8).unwrap();
        assert_eq!(ngram.guess(9, &[1]), 2);
        assert_eq!(ngram.guess(9, &[5]), 5);
    }

    #[test]
    fn init_parses_and_prints() {
        for s in ["prompt:0", "last", "pad:5", "ngram", "prompt:42"] {
            let init: Init = s.parse().unwrap();
            assert_eq!(init.to_string(), s);
        }
        assert_eq!("prompt".parse::<Init>(), Ok(Init::Prompt { seed: 0 }));
        for bad in ["pad", "pad:x", "last:1", "nope", "prompt:-1"] {
            assert!(bad.parse::<Init>().is_err(), "{bad}");
        }
    }
}
