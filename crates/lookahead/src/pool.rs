//! The n-gram pool: candidate continuations keyed by the token they follow.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use decoding_core::Token;

use crate::config::ConfigError;

/// The n-grams lookahead decoding has collected, keyed by their first token.
///
/// An n-gram `(k, c_1, ..., c_{N-1})` is stored as the *continuation* `c_1..c_{N-1}` under the
/// *key* `k`: when the pending token is `k`, the continuations stored under it are the
/// candidates the verification branch checks. Each key keeps at most `per_key` continuations
/// (the paper's `G`), in least-recently-used order: inserting a continuation that is already
/// there makes it the most recent, and inserting a new one into a full key evicts the least
/// recent. Continuations are order-sensitive token sequences, compared exactly.
///
/// Memory is bounded: at most `max_keys` keys (default: unbounded, so at most the vocabulary),
/// each holding at most `per_key * (N - 1)` tokens; past `max_keys` the key updated least
/// recently is evicted whole.
///
/// To share a pool between sequences (n-grams learnt on one request help the next), wrap it in
/// a [`SharedPool`].
///
/// ```
/// use lookahead::NgramPool;
///
/// let mut pool = NgramPool::new(3, 2).unwrap(); // 3-grams, 2 per key
/// pool.insert(7, &[1, 2]);
/// pool.insert(7, &[3, 4]);
/// pool.insert(7, &[1, 2]); // already there: now the most recent
/// pool.insert(7, &[5, 6]); // key full: evicts the least recent, [3, 4]
/// let got: Vec<&[u32]> = pool.get(7).collect();
/// assert_eq!(got, vec![&[5, 6][..], &[1, 2][..]]); // most recent first
/// ```
#[derive(Clone, Debug)]
pub struct NgramPool {
    continuation: usize,
    per_key: usize,
    max_keys: Option<usize>,
    buckets: HashMap<Token, Bucket>,
    /// Keys by the stamp of their last update: the key-level LRU order.
    recency: BTreeMap<u64, Token>,
    clock: u64,
    grams: usize,
}

/// The continuations of one key, least recent first, flattened, with whether each was seen
/// in real text.
#[derive(Clone, Debug, Default)]
struct Bucket {
    tokens: Vec<Token>,
    seen: Vec<bool>,
    stamp: u64,
}

impl NgramPool {
    /// A pool of `ngram`-grams (`ngram >= 2`: a key and at least one token after it) keeping at
    /// most `per_key` of them per key. `per_key = 0` gives a pool that stores nothing.
    pub fn new(ngram: usize, per_key: usize) -> Result<Self, ConfigError> {
        if ngram < 2 {
            return Err(ConfigError::NgramTooShort(ngram));
        }
        Ok(Self {
            continuation: ngram - 1,
            per_key,
            max_keys: None,
            buckets: HashMap::new(),
            recency: BTreeMap::new(),
            clock: 0,
            grams: 0,
        })
    }

    /// Keeps at most `max_keys` keys (at least 1), evicting the least recently updated one.
    pub fn with_max_keys(mut self, max_keys: usize) -> Result<Self, ConfigError> {
        if max_keys == 0 {
            return Err(ConfigError::ZeroMaxKeys);
        }
        self.max_keys = Some(max_keys);
        self.evict_keys();
        Ok(self)
    }

    /// The n-gram size `N` (key included).
    pub fn ngram(&self) -> usize {
        self.continuation + 1
    }

    /// Tokens per continuation, `N - 1`.
    pub fn continuation_len(&self) -> usize {
        self.continuation
    }

    /// The most continuations kept per key (`G`).
    pub fn per_key(&self) -> usize {
        self.per_key
    }

    /// The most keys kept, if bounded.
    pub fn max_keys(&self) -> Option<usize> {
        self.max_keys
    }

    /// Number of stored n-grams.
    pub fn len(&self) -> usize {
        self.grams
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.grams == 0
    }

    /// Number of keys holding at least one continuation.
    pub fn keys(&self) -> usize {
        self.buckets.len()
    }

    /// Forgets every n-gram.
    pub fn clear(&mut self) {
        self.buckets.clear();
        self.recency.clear();
        self.grams = 0;
    }

    /// The continuations stored under `key`, most recent first.
    pub fn get(&self, key: Token) -> impl ExactSizeIterator<Item = &[Token]> + '_ {
        let tokens = self.buckets.get(&key).map_or(&[][..], |b| &b.tokens[..]);
        tokens.chunks_exact(self.continuation).rev()
    }

    /// The most recent continuation under `key` that starts with `prefix`, if any.
    pub fn find(&self, key: Token, prefix: &[Token]) -> Option<&[Token]> {
        self.get(key).find(|c| c.starts_with(prefix))
    }

    /// Like [`find`](Self::find), preferring n-grams seen in real text (inserted with
    /// [`insert`](Self::insert)) to guesses ([`insert_guess`](Self::insert_guess)).
    pub fn find_seen_first(&self, key: Token, prefix: &[Token]) -> Option<&[Token]> {
        let bucket = self.buckets.get(&key)?;
        let len = self.continuation;
        let mut fallback = None;
        for (i, c) in bucket.tokens.chunks_exact(len).enumerate().rev() {
            if c.starts_with(prefix) {
                if bucket.seen[i] {
                    return Some(c);
                }
                fallback = fallback.or(Some(c));
            }
        }
        fallback
    }

    /// Stores the n-gram `key, continuation...`, seen in real text (the prompt, the output), as
    /// the most recent under `key`. A continuation of the wrong length (not `N - 1` tokens) is
    /// ignored and `false` returned.
    pub fn insert(&mut self, key: Token, continuation: &[Token]) -> bool {
        self.insert_with(key, continuation, true)
    }

    /// Like [`insert`](Self::insert), for an n-gram the model only guessed (a lookahead
    /// window column); it stays marked as seen if it already was.
    pub fn insert_guess(&mut self, key: Token, continuation: &[Token]) -> bool {
        self.insert_with(key, continuation, false)
    }

    fn insert_with(&mut self, key: Token, continuation: &[Token], seen: bool) -> bool {
        let len = self.continuation;
        if continuation.len() != len {
            return false;
        }
        if self.per_key == 0 {
            return true;
        }
        self.clock += 1;
        let stamp = self.clock;
        let bucket = self.buckets.entry(key).or_default();
        if bucket.stamp != 0 {
            self.recency.remove(&bucket.stamp);
        }
        bucket.stamp = stamp;
        self.recency.insert(stamp, key);
        let tokens = &mut bucket.tokens;
        let found = tokens.chunks_exact(len).position(|c| c == continuation);
        match found {
            Some(i) => {
                // Rotate it to the end: the most recent.
                tokens[i * len..].rotate_left(len);
                let was_seen = bucket.seen.remove(i);
                bucket.seen.push(was_seen || seen);
            }
            None => {
                // `len * per_key` may not fit a usize (`G` unbounded): compare counts.
                if tokens.len() / len == self.per_key {
                    tokens.drain(..len);
                    bucket.seen.remove(0);
                    self.grams -= 1;
                }
                tokens.extend_from_slice(continuation);
                bucket.seen.push(seen);
                self.grams += 1;
            }
        }
        self.evict_keys();
        true
    }

    /// Inserts every `N`-gram of `tokens`, in order (so later occurrences are more recent).
    pub fn insert_all(&mut self, tokens: &[Token]) {
        for gram in tokens.windows(self.continuation + 1) {
            self.insert(gram[0], &gram[1..]);
        }
    }

    fn evict_keys(&mut self) {
        let Some(max) = self.max_keys else { return };
        while self.buckets.len() > max {
            let Some((_, key)) = self.recency.pop_first() else {
                break;
            };
            if let Some(bucket) = self.buckets.remove(&key) {
                self.grams -= bucket.tokens.len() / self.continuation;
            }
        }
    }

    /// Checks the internal invariants (for tests): per-key bounds, distinct continuations,
    /// counts and the key order agree.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut grams = 0;
        for (key, bucket) in &self.buckets {
            let n = bucket.tokens.len() / self.continuation;
            if bucket.tokens.len() % self.continuation != 0
                || n == 0
                || n > self.per_key
                || bucket.seen.len() != n
            {
                return Err(format!("key {key} holds {} tokens", bucket.tokens.len()));
            }
            let chunks: Vec<&[Token]> = bucket.tokens.chunks_exact(self.continuation).collect();
            for (i, c) in chunks.iter().enumerate() {
                if chunks[..i].contains(c) {
                    return Err(format!("key {key} holds {c:?} twice"));
                }
            }
            if self.recency.get(&bucket.stamp) != Some(key) {
                return Err(format!("key {key} is missing from the recency order"));
            }
            grams += n;
        }
        if grams != self.grams || self.recency.len() != self.buckets.len() {
            return Err("counts disagree".to_string());
        }
        if self.max_keys.is_some_and(|m| self.buckets.len() > m) {
            return Err("more keys than max_keys".to_string());
        }
        Ok(())
    }
}

/// An [`NgramPool`] shared between sequences (cheap to clone; clones share one pool).
///
/// Strategies built over a shared pool do not clear it when a sequence starts, so n-grams
/// from earlier requests keep serving later ones. A lock is taken per step.
#[derive(Clone, Debug)]
pub struct SharedPool(Arc<Mutex<NgramPool>>);

impl SharedPool {
    /// Shares `pool`.
    pub fn new(pool: NgramPool) -> Self {
        Self(Arc::new(Mutex::new(pool)))
    }

    /// Locks the pool (a poisoned lock is recovered: the pool holds no invariant a panic
    /// elsewhere could break halfway, since every operation completes before returning).
    pub fn lock(&self) -> MutexGuard<'_, NgramPool> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_per_key() {
        let mut pool = NgramPool::new(2, 3).unwrap();
        for t in [1, 2, 3, 1, 4] {
            pool.insert(0, &[t]);
        }
        let got: Vec<Token> = pool.get(0).map(|c| c[0]).collect();
        assert_eq!(got, vec![4, 1, 3]);
        assert_eq!(pool.len(), 3);
        assert!(!pool.insert(0, &[1, 2]));
        assert_eq!(pool.find(0, &[3]), Some(&[3][..]));
        pool.check_invariants().unwrap();
    }

    #[test]
    fn seen_ngrams_are_preferred_when_asked() {
        let mut pool = NgramPool::new(3, 4).unwrap();
        pool.insert(0, &[1, 2]);
        pool.insert_guess(0, &[1, 3]);
        pool.insert_guess(0, &[4, 4]);
        assert_eq!(pool.find(0, &[1]), Some(&[1, 3][..]));
        assert_eq!(pool.find_seen_first(0, &[1]), Some(&[1, 2][..]));
        assert_eq!(pool.find_seen_first(0, &[4]), Some(&[4, 4][..]));
        assert_eq!(pool.find_seen_first(0, &[5]), None);
        pool.insert_guess(0, &[1, 2]);
        assert_eq!(pool.find(0, &[1]), Some(&[1, 2][..]));
        assert_eq!(pool.find_seen_first(0, &[]), Some(&[1, 2][..]));
        pool.check_invariants().unwrap();
    }

    #[test]
    fn max_keys_evicts_least_recent_key() {
        let mut pool = NgramPool::new(3, 2).unwrap().with_max_keys(2).unwrap();
        pool.insert(1, &[1, 1]);
        pool.insert(2, &[2, 2]);
        pool.insert(1, &[1, 2]);
        pool.insert(3, &[3, 3]);
        assert_eq!((pool.keys(), pool.len()), (2, 3));
        assert_eq!(pool.get(2).len(), 0);
        pool.check_invariants().unwrap();
    }

    #[test]
    fn zero_per_key_stores_nothing_and_bad_sizes_fail() {
        let mut pool = NgramPool::new(3, 0).unwrap();
        pool.insert_all(&[1, 2, 3, 4]);
        assert!(pool.is_empty());
        assert!(NgramPool::new(1, 4).is_err());
        assert!(NgramPool::new(2, 4).unwrap().with_max_keys(0).is_err());
    }
}
