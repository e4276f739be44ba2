//! A constraint that keeps the generated text a prefix of a full match of a regular
//! expression, walked byte by byte through a dense DFA.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use decoding_core::{Constraint, ConstraintError, ConstraintState, Token};
use regex_automata::dfa::{Automaton, StartError, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

use crate::mask::{CacheStats, MaskCache, TokenMask};
use crate::token_bytes::TokenBytes;

/// Limits of a [`RegexConstraint`]: how large its automaton may grow and how much memory its
/// mask cache may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegexOptions {
    size_limit: usize,
    cache_bytes: usize,
}

impl RegexOptions {
    /// Default [`size_limit`](Self::with_size_limit): 16 MiB.
    pub const DEFAULT_SIZE_LIMIT: usize = 16 << 20;
    /// Default [`cache_bytes`](Self::with_cache_bytes): 32 MiB (32,768 masks of an
    /// 8,192-token vocabulary, 2,048 of a 128k one).
    pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

    /// At most `bytes` of memory for each of the pattern's NFA, the DFA under construction
    /// and the finished DFA; a pattern that needs more is [`RegexError::TooLarge`].
    pub fn with_size_limit(mut self, bytes: usize) -> Self {
        self.size_limit = bytes;
        self
    }

    /// At most `bytes` of cached masks (one bit per token each, at least one mask); past it
    /// the oldest mask is dropped and recomputed if its state comes back.
    pub fn with_cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// The automaton size limit.
    pub fn size_limit(&self) -> usize {
        self.size_limit
    }

    /// The mask cache bound.
    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes
    }
}

impl Default for RegexOptions {
    fn default() -> Self {
        Self {
            size_limit: Self::DEFAULT_SIZE_LIMIT,
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
        }
    }
}

/// Why a [`RegexConstraint`] could not be built or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegexError {
    /// The pattern is not a regular expression the DFA supports.
    #[error("cannot compile the regular expression {pattern:?}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        #[source]
        source: Box<dense::BuildError>,
    },
    /// The pattern's automaton exceeds [`RegexOptions::size_limit`].
    #[error("the regular expression {pattern:?} needs an automaton larger than {limit} bytes")]
    TooLarge {
        /// The pattern.
        pattern: String,
        /// The limit.
        limit: usize,
        /// Which limit.
        #[source]
        source: Box<dense::BuildError>,
    },
    /// The automaton has no anchored start state.
    #[error("the regular expression's automaton cannot start an anchored match")]
    Start(#[source] StartError),
    /// The automaton's state identifiers are not laid out as regex-automata documents
    /// (premultiplied by the stride), so states cannot be indexed.
    #[error("the automaton's state identifiers are not premultiplied indices")]
    StateLayout,
    /// An EOS token has no entry in the token bytes.
    #[error("eos token {token} is outside the vocabulary of {vocab_size} tokens")]
    EosOutOfVocab {
        /// The token.
        token: Token,
        /// The number of tokens with bytes.
        vocab_size: usize,
    },
    /// A row to mask does not have one logit per token of the vocabulary.
    #[error("a logits row of {actual} entries was given to a constraint started for {expected}")]
    RowLength {
        /// The row's length.
        actual: usize,
        /// The vocabulary size the state was started with.
        expected: usize,
    },
}

/// The generated text (the bytes of the tokens after the prompt, one after the other) must
/// stay a prefix of a string that fully matches a regular expression, anchored at the start
/// of the generated text; an EOS token is allowed exactly when the text so far is a full
/// match, and ends it (only EOS may follow).
///
/// A token is allowed when the text extended by its bytes can still be completed into a full
/// match. Tokens with no bytes other than the EOS tokens are never allowed (they would leave
/// the text unchanged, so a constrained sampler could loop on them). A state that allows no
/// token at all (no token's bytes lead on towards a match, and the text is not complete or
/// there is no EOS) is a dead end: masking there fails with
/// [`ConstraintError::NothingAllowed`].
///
/// The pattern uses [regex-automata's syntax](https://docs.rs/regex-syntax) and matches
/// bytes: Unicode classes match the UTF-8 encoding of their characters, so a token that ends
/// inside a multi-byte character is allowed when the character can still be completed.
/// Unicode word boundaries (`\b` with Unicode on) are not supported by the DFA; `(?-u:\b)`
/// is. `^` and `$` hold at the start and end of the generated text.
///
/// Build it once (the DFA is determinised up front) and share it: every state started from
/// it shares one cache of masks by DFA state, so a mask costs one pass over the vocabulary's
/// prefix tree the first time its state is seen and a lookup afterwards, whichever sequence
/// or tree branch reaches it.
pub struct RegexConstraint {
    shared: Arc<Shared>,
}

struct Shared {
    pattern: String,
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
    stride2: usize,
    /// Per DFA state index: [`LIVE`] and [`ACCEPTING`] bits.
    flags: Vec<u8>,
    tokens: Arc<TokenBytes>,
    eos: Vec<Token>,
    /// The mask after an EOS: the EOS tokens alone.
    ended: Arc<TokenMask>,
    cache: MaskCache,
}

/// A full match can still be reached from the state.
const LIVE: u8 = 1;
/// The text read so far is a full match.
const ACCEPTING: u8 = 2;

impl RegexConstraint {
    /// The constraint of `pattern` over the vocabulary `tokens`, ended by any of
    /// `eos_tokens`, with the default [`RegexOptions`].
    pub fn new(
        pattern: &str,
        tokens: Arc<TokenBytes>,
        eos_tokens: impl IntoIterator<Item = Token>,
    ) -> Result<Self, RegexError> {
        Self::with_options(pattern, tokens, eos_tokens, RegexOptions::default())
    }

    /// The text must be exactly one of `choices` (taken literally, not as patterns); no
    /// choices allow nothing.
    pub fn one_of<S: AsRef<str>>(
        choices: impl IntoIterator<Item = S>,
        tokens: Arc<TokenBytes>,
        eos_tokens: impl IntoIterator<Item = Token>,
    ) -> Result<Self, RegexError> {
        let alternatives: Vec<String> = choices
            .into_iter()
            .map(|c| regex_syntax::escape(c.as_ref()))
            .collect();
        let pattern = if alternatives.is_empty() {
            // The empty class: no text matches.
            r"[^\x00-\x{10FFFF}]".to_string()
        } else {
            alternatives.join("|")
        };
        Self::new(&pattern, tokens, eos_tokens)
    }

    /// Like [`new`](Self::new), with explicit limits.
    pub fn with_options(
        pattern: &str,
        tokens: Arc<TokenBytes>,
        eos_tokens: impl IntoIterator<Item = Token>,
        options: RegexOptions,
    ) -> Result<Self, RegexError> {
        let mut eos: Vec<Token> = eos_tokens.into_iter().collect();
        eos.sort_unstable();
        eos.dedup();
        if let Some(&token) = eos.iter().find(|&&t| t as usize >= tokens.len()) {
            return Err(RegexError::EosOutOfVocab {
                token,
                vocab_size: tokens.len(),
            });
        }
        let dfa = build_dfa(pattern, options.size_limit)?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(RegexError::Start)?;
        let flags = state_flags(&dfa, start)?;
        // Built now, once per vocabulary, rather than inside the first step's mask.
        tokens.trie();
        let mut ended = TokenMask::new(tokens.len());
        for &t in &eos {
            ended.insert(t);
        }
        let capacity = options.cache_bytes / ended.heap_bytes().max(1);
        Ok(Self {
            shared: Arc::new(Shared {
                pattern: pattern.to_string(),
                stride2: dfa.stride2(),
                dfa,
                start,
                flags,
                tokens,
                eos,
                ended: Arc::new(ended),
                cache: MaskCache::new(capacity),
            }),
        })
    }

    /// The pattern.
    pub fn pattern(&self) -> &str {
        &self.shared.pattern
    }

    /// The EOS tokens (sorted, without duplicates).
    pub fn eos_tokens(&self) -> &[Token] {
        &self.shared.eos
    }

    /// The vocabulary's bytes.
    pub fn token_bytes(&self) -> &Arc<TokenBytes> {
        &self.shared.tokens
    }

    /// Whether `text` fully matches the pattern.
    pub fn is_match(&self, text: &[u8]) -> bool {
        self.shared
            .walk(self.shared.start, text)
            .is_some_and(|s| self.shared.flag(s, ACCEPTING))
    }

    /// Whether `text` is a prefix of a full match (a full match included).
    pub fn is_prefix(&self, text: &[u8]) -> bool {
        self.shared
            .walk(self.shared.start, text)
            .is_some_and(|s| self.shared.flag(s, LIVE))
    }

    /// Bytes of memory the DFA uses.
    pub fn dfa_bytes(&self) -> usize {
        self.shared.dfa.memory_usage()
    }

    /// How the mask cache (shared by every state of this constraint) has been used.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.cache.stats()
    }

    /// Empties the mask cache (masks are recomputed as their states come back).
    pub fn clear_cache(&self) {
        self.shared.cache.clear();
    }

    /// The state at the start of the generated text, for a model of `vocab_size` tokens
    /// (the same as [`Constraint::start`] without the boxing).
    pub fn start_state(&self, vocab_size: usize) -> Result<RegexState, ConstraintError> {
        let known = self.shared.tokens.len();
        if vocab_size < known {
            return Err(ConstraintError::Start(format!(
                "the model has {vocab_size} tokens but the token bytes describe {known}"
            )));
        }
        Ok(RegexState {
            shared: Arc::clone(&self.shared),
            at: At::Text(self.shared.start),
            vocab_size,
            mask: None,
        })
    }
}

impl fmt::Debug for RegexConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegexConstraint")
            .field("pattern", &self.shared.pattern)
            .field("eos", &self.shared.eos)
            .field("tokens", &self.shared.tokens.len())
            .finish()
    }
}

impl Constraint for RegexConstraint {
    fn name(&self) -> &str {
        "regex"
    }

    /// The prompt is context: the text to match starts after it.
    fn start(
        &self,
        _prompt: &[Token],
        vocab_size: usize,
    ) -> Result<Box<dyn ConstraintState>, ConstraintError> {
        Ok(Box::new(self.start_state(vocab_size)?))
    }
}

/// Where the text stands in the automaton.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// The DFA state after the text so far.
    Text(StateID),
    /// An EOS was emitted.
    Ended,
}

/// The state of one sequence (or tree branch) under a [`RegexConstraint`]: a DFA state and a
/// handle on the shared automaton and cache, so [`fork`](ConstraintState::fork) is a copy of
/// a state id and two reference counts.
#[derive(Clone)]
pub struct RegexState {
    shared: Arc<Shared>,
    at: At,
    vocab_size: usize,
    /// The mask of `at`, once looked up.
    mask: Option<Arc<TokenMask>>,
}

impl RegexState {
    /// Whether the text so far fully matches (an EOS would be allowed), or an EOS has
    /// already ended it.
    pub fn is_complete(&self) -> bool {
        match self.at {
            At::Text(s) => self.shared.flag(s, ACCEPTING),
            At::Ended => true,
        }
    }

    /// Whether an EOS has been advanced over.
    pub fn is_ended(&self) -> bool {
        self.at == At::Ended
    }

    /// The number of tokens allowed next.
    pub fn allowed_count(&mut self) -> usize {
        self.current_mask().allowed()
    }

    /// Where `token` leads, if it is allowed.
    fn step(&self, token: Token) -> Option<At> {
        let shared = &*self.shared;
        let eos = shared.eos.binary_search(&token).is_ok();
        match self.at {
            At::Ended => eos.then_some(At::Ended),
            At::Text(s) if eos => shared.flag(s, ACCEPTING).then_some(At::Ended),
            At::Text(s) => {
                let bytes = shared.tokens.get(token).filter(|b| !b.is_empty())?;
                let next = shared.walk(s, bytes)?;
                shared.flag(next, LIVE).then_some(At::Text(next))
            }
        }
    }

    fn current_mask(&mut self) -> &TokenMask {
        let shared = &self.shared;
        let at = self.at;
        self.mask.get_or_insert_with(|| match at {
            At::Ended => Arc::clone(&shared.ended),
            At::Text(s) => shared
                .cache
                .get_or_compute(shared.index(s), || shared.compute_mask(s)),
        })
    }
}

impl fmt::Debug for RegexState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegexState")
            .field("pattern", &self.shared.pattern)
            .field("at", &self.at)
            .finish()
    }
}

impl ConstraintState for RegexState {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        if logits.len() != self.vocab_size {
            return Err(ConstraintError::Other(Box::new(RegexError::RowLength {
                actual: logits.len(),
                expected: self.vocab_size,
            })));
        }
        let mask = self.current_mask();
        if mask.allowed() == 0 {
            return Err(ConstraintError::NothingAllowed);
        }
        mask.apply(logits);
        Ok(())
    }

    fn allows(&mut self, token: Token) -> bool {
        match &self.mask {
            Some(mask) => mask.contains(token),
            None => self.step(token).is_some(),
        }
    }

    fn advance(&mut self, token: Token) -> Result<(), ConstraintError> {
        let next = self
            .step(token)
            .ok_or(ConstraintError::NotAllowed { token })?;
        if next != self.at {
            self.at = next;
            self.mask = None;
        }
        Ok(())
    }

    fn fork(&self) -> Box<dyn ConstraintState> {
        Box::new(self.clone())
    }
}

impl Shared {
    fn index(&self, state: StateID) -> usize {
        state.as_usize() >> self.stride2
    }

    fn flag(&self, state: StateID, flag: u8) -> bool {
        self.flags
            .get(self.index(state))
            .is_some_and(|f| f & flag != 0)
    }

    /// The state after `bytes` from `state`, or `None` once the DFA is dead.
    fn walk(&self, mut state: StateID, bytes: &[u8]) -> Option<StateID> {
        for &b in bytes {
            state = self.dfa.next_state(state, b);
            if self.dfa.is_dead_state(state) {
                return None;
            }
        }
        Some(state)
    }

    /// The allowed tokens in DFA state `state`: one preorder pass over the vocabulary's
    /// prefix tree, skipping the subtree of every prefix after which no match is reachable.
    fn compute_mask(&self, state: StateID) -> TokenMask {
        let trie = self.tokens.trie();
        let mut mask = TokenMask::new(self.tokens.len());
        // after[d]: the DFA state after the first d bytes of the current path.
        let mut after = vec![state; trie.max_depth() + 1];
        let nodes = trie.nodes();
        let mut i = 0;
        while let Some(node) = nodes.get(i) {
            let depth = node.depth as usize;
            let next = self.dfa.next_state(after[depth - 1], node.byte);
            if !self.flag(next, LIVE) {
                i = node.end as usize;
                continue;
            }
            after[depth] = next;
            for &token in trie.tokens_at(node) {
                mask.insert(token);
            }
            i += 1;
        }
        let accepting = self.flag(state, ACCEPTING);
        for &token in &self.eos {
            mask.remove(token);
            if accepting {
                mask.insert(token);
            }
        }
        mask
    }
}

/// An anchored DFA reporting every match (so that a longer full match is never cut off by a
/// shorter one, as leftmost-first semantics would), within `limit` bytes.
fn build_dfa(pattern: &str, limit: usize) -> Result<dense::DFA<Vec<u32>>, RegexError> {
    let config = dense::Config::new()
        .match_kind(MatchKind::All)
        .start_kind(StartKind::Anchored)
        .accelerate(false)
        .dfa_size_limit(Some(limit))
        .determinize_size_limit(Some(limit));
    dense::Builder::new()
        .configure(config)
        .thompson(thompson::Config::new().nfa_size_limit(Some(limit)))
        .build(pattern)
        .map_err(|source| {
            let nfa_limit = std::error::Error::source(&source)
                .and_then(|e| e.downcast_ref::<thompson::BuildError>())
                .is_some_and(|e| e.size_limit().is_some());
            if source.is_size_limit_exceeded() || nfa_limit {
                RegexError::TooLarge {
                    pattern: pattern.to_string(),
                    limit,
                    source: Box::new(source),
                }
            } else {
                RegexError::Pattern {
                    pattern: pattern.to_string(),
                    source: Box::new(source),
                }
            }
        })
}

/// [`LIVE`] and [`ACCEPTING`] for every state reachable from `start`: a state accepts when
/// its end-of-input transition reports a match (DFA matches are delayed by one byte), and is
/// live when an accepting state can be reached from it. A state that is neither dead nor live
/// is common: after a complete match of a pattern that cannot go on, one more byte leads to a
/// state that still reports that match but can never match again.
fn state_flags(dfa: &dense::DFA<Vec<u32>>, start: StateID) -> Result<Vec<u8>, RegexError> {
    let stride2 = dfa.stride2();
    let index = |s: StateID| s.as_usize() >> stride2;
    let classes: Vec<u8> = dfa
        .byte_classes()
        .representatives(..)
        .filter_map(|unit| unit.as_u8())
        .collect();
    let mut flags: Vec<u8> = Vec::new();
    let mut seen: Vec<bool> = Vec::new();
    // Edges into each reachable state, by index.
    let mut into: Vec<Vec<u32>> = Vec::new();
    let mut queue = VecDeque::from([start]);
    let grow = |v: &mut Vec<bool>, into: &mut Vec<Vec<u32>>, flags: &mut Vec<u8>, i: usize| {
        if v.len() <= i {
            v.resize(i + 1, false);
            into.resize(i + 1, Vec::new());
            flags.resize(i + 1, 0);
        }
    };
    let check = |s: StateID| {
        if index(s) << stride2 == s.as_usize() {
            Ok(index(s))
        } else {
            Err(RegexError::StateLayout)
        }
    };
    let first = check(start)?;
    grow(&mut seen, &mut into, &mut flags, first);
    seen[first] = true;
    while let Some(state) = queue.pop_front() {
        let from = index(state);
        if dfa.is_match_state(dfa.next_eoi_state(state)) {
            flags[from] |= ACCEPTING;
        }
        for &byte in &classes {
            let next = dfa.next_state(state, byte);
            let to = check(next)?;
            grow(&mut seen, &mut into, &mut flags, to);
            into[to].push(from as u32);
            if !seen[to] {
                seen[to] = true;
                queue.push_back(next);
            }
        }
    }
    let mut live: Vec<usize> = (0..flags.len())
        .filter(|&i| flags[i] & ACCEPTING != 0)
        .collect();
    for &i in &live {
        flags[i] |= LIVE;
    }
    while let Some(i) = live.pop() {
        for &j in &into[i] {
            let j = j as usize;
            if flags[j] & LIVE == 0 {
                flags[j] |= LIVE;
                live.push(j);
            }
        }
    }
    Ok(flags)
}
