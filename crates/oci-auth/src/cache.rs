//! A small bounded cache of verified credentials, so that a bcrypt check
//! or a token signature check is paid once per credential, not once per
//! request. Keys are SHA-256 digests of the credential: the secrets
//! themselves are not kept.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Instant;

use sha2::{Digest as _, Sha256};

/// A credential's key in a [`VerifiedCache`].
pub(crate) type CacheKey = [u8; 32];

/// The key of the parts of a credential (separated unambiguously).
pub(crate) fn key(parts: &[&[u8]]) -> CacheKey {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Verified credentials and what they proved, until they expire.
#[derive(Debug)]
pub(crate) struct VerifiedCache<V> {
    entries: RwLock<HashMap<CacheKey, (V, Instant)>>,
    capacity: usize,
}

impl<V: Clone> VerifiedCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    /// The value, if the credential was verified and has not expired.
    pub(crate) fn get(&self, key: &CacheKey, now: Instant) -> Option<V> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(v, _)| v.clone())
    }

    /// Remembers a verified credential until `until`. When full, expired
    /// entries are dropped, and if that is not enough, all of them (they
    /// are only a cache).
    pub(crate) fn insert(&self, key: CacheKey, value: V, until: Instant, now: Instant) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, u)| now < *u);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, until));
    }

    /// Forgets everything (accounts or keys were reloaded).
    pub(crate) fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn entries_expire_and_memory_is_bounded() {
        let cache = VerifiedCache::new(4);
        let now = Instant::now();
        let k = key(&[b"alice", b"secret"]);
        assert_ne!(k, key(&[b"alices", b"ecret"]));
        cache.insert(k, 1, now + Duration::from_secs(1), now);
        assert_eq!(cache.get(&k, now), Some(1));
        assert_eq!(cache.get(&k, now + Duration::from_secs(1)), None);
        for i in 0..100u8 {
            cache.insert(key(&[&[i]]), 2, now + Duration::from_secs(9), now);
        }
        assert!(cache.entries.read().unwrap().len() <= 4);
    }
}
