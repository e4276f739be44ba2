//! Token masks (one bit per token) and a bounded cache of them shared between forks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use decoding_core::Token;

/// The set of tokens allowed in one automaton state, one bit per token of the vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenMask {
    words: Vec<u64>,
    allowed: usize,
}

impl TokenMask {
    /// No token allowed, over `len` tokens.
    pub(crate) fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
            allowed: 0,
        }
    }

    /// Allows `token` (which must be below the length).
    pub(crate) fn insert(&mut self, token: Token) {
        let (word, bit) = (token as usize / 64, token % 64);
        let mask = 1u64 << bit;
        if self.words[word] & mask == 0 {
            self.words[word] |= mask;
            self.allowed += 1;
        }
    }

    /// Forbids `token` again.
    pub(crate) fn remove(&mut self, token: Token) {
        let (word, bit) = (token as usize / 64, token % 64);
        let mask = 1u64 << bit;
        if let Some(w) = self.words.get_mut(word)
            && *w & mask != 0
        {
            *w &= !mask;
            self.allowed -= 1;
        }
    }

    /// Whether `token` is allowed (tokens past the length are not).
    pub(crate) fn contains(&self, token: Token) -> bool {
        let (word, bit) = (token as usize / 64, token % 64);
        self.words.get(word).is_some_and(|w| w >> bit & 1 == 1)
    }

    /// How many tokens are allowed.
    pub(crate) fn allowed(&self) -> usize {
        self.allowed
    }

    /// Sets every logit of a token not allowed to `-inf`.
    pub(crate) fn apply(&self, logits: &mut [f32]) {
        for (chunk, &word) in logits.chunks_mut(64).zip(&self.words) {
            if word == u64::MAX {
                continue;
            }
            if word == 0 {
                chunk.fill(f32::NEG_INFINITY);
                continue;
            }
            // Branch-free, so that it vectorises: masks of tokens are irregular.
            for (bit, x) in chunk.iter_mut().enumerate() {
                let keep = word >> bit & 1 == 1;
                *x = if keep { *x } else { f32::NEG_INFINITY };
            }
        }
        let covered = self.words.len() * 64;
        if logits.len() > covered {
            logits[covered..].fill(f32::NEG_INFINITY);
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.len() * std::mem::size_of::<u64>()
    }
}

/// How a [`RegexConstraint`](crate::RegexConstraint)'s mask cache has been used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Masks found in the cache.
    pub hits: u64,
    /// Masks computed (a state seen for the first time, or again after an eviction).
    pub misses: u64,
    /// Masks held now.
    pub cached: usize,
    /// Masks evicted to stay within the bound.
    pub evictions: u64,
}

/// Masks by automaton state, at most `capacity` of them; when full, the oldest goes.
#[derive(Debug)]
pub(crate) struct MaskCache {
    capacity: usize,
    inner: Mutex<Entries>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
    masks: HashMap<usize, Arc<TokenMask>>,
    order: VecDeque<usize>,
}

impl MaskCache {
    /// A cache of at most `capacity` masks (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Entries::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The mask of state `key`, computed by `compute` if it is not cached. The lock is not
    /// held while computing: two threads may compute the same mask, and the first one kept
    /// wins.
    pub(crate) fn get_or_compute(
        &self,
        key: usize,
        compute: impl FnOnce() -> TokenMask,
    ) -> Arc<TokenMask> {
        if let Some(mask) = self.lock().masks.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Arc::clone(mask);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mask = Arc::new(compute());
        let mut entries = self.lock();
        if let Some(kept) = entries.masks.get(&key) {
            return Arc::clone(kept);
        }
        while entries.masks.len() >= self.capacity {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            entries.masks.remove(&oldest);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        entries.masks.insert(key, Arc::clone(&mask));
        entries.order.push_back(key);
        mask
    }

    /// Forgets every mask (statistics are kept).
    pub(crate) fn clear(&self) {
        let mut entries = self.lock();
        entries.masks.clear();
        entries.order.clear();
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            cached: self.lock().masks.len(),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// The entries; a panic of another thread while it held the lock leaves them consistent
    /// (every update is a whole insert or remove), so a poisoned lock is used as it is.
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_set_and_apply_bits() {
        let mut mask = TokenMask::new(70);
        for t in [0, 3, 64, 69] {
            mask.insert(t);
        }
        mask.insert(3);
        assert_eq!(mask.allowed(), 4);
        mask.remove(3);
        mask.remove(3);
        assert_eq!(mask.allowed(), 3);
        assert!(mask.contains(64) && !mask.contains(3) && !mask.contains(70));
        let mut logits = vec![1.0; 72];
        mask.apply(&mut logits);
        let kept: Vec<usize> = (0..72).filter(|&i| logits[i] == 1.0).collect();
        assert_eq!(kept, [0, 64, 69]);
    }

    #[test]
    fn the_cache_is_bounded_and_counts() {
        let cache = MaskCache::new(2);
        let make = |t: Token| {
            move || {
                let mut m = TokenMask::new(8);
                m.insert(t);
                m
            }
        };
        cache.get_or_compute(1, make(1));
        cache.get_or_compute(2, make(2));
        assert!(cache.get_or_compute(1, make(7)).contains(1));
        cache.get_or_compute(3, make(3));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.cached), (1, 3, 2));
        assert_eq!(stats.evictions, 1);
        // State 1 was the oldest, so it went.
        assert!(cache.get_or_compute(1, make(5)).contains(5));
        cache.clear();
        assert_eq!(cache.stats().cached, 0);
    }
}
