//! [`ReviewCache`]: the bounded cache of callers already authenticated and allowed, keyed by the
//! SHA-256 of their token, each entry good for a fixed time after its review. Pure: the caller
//! passes the time in, so the tests choose it.
//!
//! Only positive answers are kept: a refused or unknown token is reviewed again at its next
//! call, so a token fixed (or an allow-list widened) works at once, and an entry lives at most
//! `ttl` after the review that admitted it, which bounds how long a revoked token still works.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The SHA-256 of a token: what the cache keeps instead of the token.
pub type TokenDigest = [u8; 32];

/// The digest of `token`.
pub fn digest(token: &str) -> TokenDigest {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Callers admitted recently, by token digest.
#[derive(Debug)]
pub struct ReviewCache<V> {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<TokenDigest, (V, Instant)>,
}

impl<V: Clone> ReviewCache<V> {
    /// An empty cache whose entries live `ttl` and which holds at most `capacity` (at least 1).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        ReviewCache {
            ttl,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    /// The caller admitted with this digest, if its entry is still good at `now`.
    pub fn get(&self, key: &TokenDigest, now: Instant) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(_, expires)| now < *expires)
            .map(|(v, _)| v.clone())
    }

    /// Remembers `value` for `key` from `now` on. When full, expired entries go first, then
    /// the one closest to expiry.
    pub fn insert(&mut self, key: TokenDigest, value: V, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, expires)| now < *expires);
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (value, now + self.ttl));
    }

    /// Entries held (expired ones included until they are pushed out).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_exactly_its_ttl() {
        let t0 = Instant::now();
        let mut cache = ReviewCache::new(Duration::from_secs(60), 8);
        let key = digest("token");
        assert_eq!(cache.get(&key, t0), None);
        cache.insert(key, "sa", t0);
        assert_eq!(cache.get(&key, t0 + Duration::from_secs(59)), Some("sa"));
        assert_eq!(cache.get(&key, t0 + Duration::from_secs(60)), None);
        assert_eq!(cache.get(&digest("other"), t0), None);
    }

    #[test]
    fn the_cache_stays_bounded_and_drops_the_stalest_first() {
        let t0 = Instant::now();
        let mut cache = ReviewCache::new(Duration::from_secs(60), 3);
        for i in 0..3u64 {
            cache.insert(digest(&i.to_string()), i, t0 + Duration::from_secs(i));
        }
        let later = t0 + Duration::from_secs(10);
        cache.insert(digest("new"), 99, later);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&digest("0"), later), None, "the stalest went");
        assert_eq!(cache.get(&digest("1"), later), Some(1));
        assert_eq!(cache.get(&digest("new"), later), Some(99));
        // expired entries make room before any live one is dropped
        let much_later = t0 + Duration::from_secs(65);
        cache.insert(digest("newer"), 100, much_later);
        assert_eq!(cache.get(&digest("new"), much_later), Some(99));
        assert_eq!(cache.get(&digest("newer"), much_later), Some(100));
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let mut cache = ReviewCache::new(Duration::ZERO, 3);
        cache.insert(digest("t"), 1, Instant::now());
        assert!(cache.is_empty());
    }

    #[test]
    fn digests_differ_per_token() {
        assert_ne!(digest("a"), digest("b"));
        assert_eq!(digest("a"), digest("a"));
    }
}
