//! Outboxes: durable, ordered queues of small records (the registry's event
//! notifications), one per named consumer, shared by every replica.
//!
//! ```text
//! _events/<queue>/pending/<key>   a record waiting for delivery (opaque bytes)
//! _events/<queue>/dead/<key>      a record given up on (what the caller wrote)
//! _events/<queue>/failures        JSON: the key at the head that failed, and
//!                                 how many times
//! _events/<queue>/lock            the queue's lock (flock'ed file, or S3 lease)
//! ```
//!
//! A key is `<Unix ms, 15 digits>-<sequence, 12 digits>-<random>`: keys
//! sort in the order records were appended by one process (the sequence
//! breaks ties within a millisecond, and the millisecond never goes back
//! within a process), and by time across processes. An append is one
//! atomic write (on the filesystem, durable once it returns, see
//! [`crate::StorageOptions::fsync`]); a record is never changed, only
//! removed once delivered, or moved to `dead/`.
//!
//! Whoever consumes a queue holds its [`OutboxLock`] (the mechanism of the
//! collector's lock), so one process at a time delivers it, in key order.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{Result, StorageError};
use crate::{SessionLock, Storage};

/// Records read at once by [`Outbox::pending`] at most.
pub const MAX_PENDING_PAGE: usize = 1_000;

/// Concurrent reads of one page's records.
const READ_CONCURRENCY: usize = 16;

/// The name of one queue: 1 to 64 characters of `A-Z a-z 0-9 . _ -`,
/// starting with a letter or digit (it is a path segment in the store).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(String);

impl QueueName {
    /// Longest name.
    pub const MAX_LEN: usize = 64;

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a text is no [`QueueName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a queue name: 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
)]
pub struct InvalidQueueName(pub String);

impl FromStr for QueueName {
    type Err = InvalidQueueName;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let ok = (1..=Self::MAX_LEN).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidQueueName(text.chars().take(80).collect()))
        }
    }
}

/// A record in a queue: its key (its place in the order) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where it sorts in the queue.
    pub key: String,
    /// What was appended.
    pub body: Bytes,
}

/// One queue of the store. Cheap to create: see [`Storage::outbox`].
#[derive(Debug, Clone)]
pub struct Outbox {
    storage: Storage,
    name: QueueName,
}

/// `_events/<queue>/failures`.
#[derive(Debug, Serialize, Deserialize)]
struct Failures {
    key: String,
    attempts: u32,
}

/// The queue's lock, held by the one process consuming it. Released when
/// dropped (a lease then lapses), or with [`OutboxLock::release`].
pub struct OutboxLock(SessionLock);

impl OutboxLock {
    /// True once the lock may have passed to another process (an S3 lease
    /// that could not be renewed): stop consuming.
    pub fn is_lost(&self) -> bool {
        self.0.is_lost()
    }

    /// Frees the lock now.
    pub async fn release(self) {
        self.0.release().await;
    }
}

impl fmt::Debug for OutboxLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxLock")
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl Storage {
    /// The queue `name` (see [`Outbox`]); nothing is read or written yet.
    pub fn outbox(&self, name: &QueueName) -> Outbox {
        Outbox {
            storage: self.clone(),
            name: name.clone(),
        }
    }
}

impl Outbox {
    /// The queue's name.
    pub fn name(&self) -> &QueueName {
        &self.name
    }

    fn dir(&self, sub: &str) -> Path {
        Path::from(format!("_events/{}/{sub}", self.name))
    }

    fn pending_key(&self, key: &str) -> Path {
        self.dir("pending").join(key)
    }

    /// Appends `body` at the end of the queue (one atomic write; durable
    /// on return). Returns its key.
    pub async fn append(&self, body: Bytes) -> Result<String> {
        let key = next_key();
        self.storage
            .write_small(&self.pending_key(&key), body)
            .await?;
        Ok(key)
    }

    /// The first records of the queue, oldest first, at most `limit` (and
    /// at most [`MAX_PENDING_PAGE`]).
    pub async fn pending(&self, limit: usize) -> Result<Vec<Record>> {
        let limit = limit.clamp(1, MAX_PENDING_PAGE);
        let keys = self
            .storage
            .list_names_after(&self.dir("pending"), None, limit)
            .await?;
        let reads = keys.into_iter().map(|key| async move {
            let body = self.storage.read_small(&self.pending_key(&key)).await?;
            Ok::<_, StorageError>(body.map(|body| Record { key, body }))
        });
        let read: Vec<Result<Option<Record>>> = futures::stream::iter(reads)
            .buffered(READ_CONCURRENCY)
            .collect()
            .await;
        // A record removed between listing and reading is simply gone.
        read.into_iter().filter_map(Result::transpose).collect()
    }

    /// Removes a delivered record (absent is no error).
    pub async fn remove(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.storage
            .delete_objects(vec![self.pending_key(key)], false)
            .await
    }

    /// Counts one more failed attempt at the record `key` and returns how
    /// many there were in all (1 for the first). Only the last record that
    /// failed is remembered: the queue is consumed in order, so that is
    /// its head.
    pub async fn record_failure(&self, key: &str) -> Result<u32> {
        check_key(key)?;
        let path = self.dir("failures");
        let previous = match self.storage.read_small(&path).await? {
            Some(bytes) => serde_json::from_slice::<Failures>(&bytes).ok(),
            None => None,
        };
        let attempts = match previous {
            Some(f) if f.key == key => f.attempts.saturating_add(1),
            _ => 1,
        };
        let failures = Failures {
            key: key.to_owned(),
            attempts,
        };
        let json = serde_json::to_vec(&failures).unwrap_or_default();
        self.storage.write_small(&path, json).await?;
        Ok(attempts)
    }

    /// Moves the record `key` to the dead letters, as `letter` (what the
    /// caller wants kept: the record and why it was given up on). The
    /// letter is written before the record is removed, so a crash in
    /// between leaves both, never neither.
    pub async fn dead_letter(&self, key: &str, letter: Bytes) -> Result<()> {
        check_key(key)?;
        self.storage
            .write_small(&self.dir("dead").join(key), letter)
            .await?;
        self.remove(key).await
    }

    /// The dead letters, oldest first, at most `limit` (and at most
    /// [`MAX_PENDING_PAGE`]).
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<Record>> {
        let limit = limit.clamp(1, MAX_PENDING_PAGE);
        let dir = self.dir("dead");
        let keys = self.storage.list_names_after(&dir, None, limit).await?;
        let mut letters = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(body) = self
                .storage
                .read_small(&dir.clone().join(key.as_str()))
                .await?
            {
                letters.push(Record { key, body });
            }
        }
        Ok(letters)
    }

    /// The queue's lock, waited for up to `wait` (then
    /// [`StorageError::Busy`]); `Duration::ZERO` tries once. On S3 a lease
    /// whose holder stopped renewing it is taken over once this process
    /// has seen it unchanged for the store's lease TTL
    /// ([`crate::StorageOptions::lease_ttl`]), over however many tries.
    pub async fn lock(&self, wait: Duration) -> Result<OutboxLock> {
        let deadline = Instant::now() + wait;
        let path = self.dir("lock");
        // This process's mutex first (the only exclusion on the in-memory
        // store), keyed like an upload session by a hash of the path.
        let id = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            path.as_ref().hash(&mut h);
            let high = h.finish();
            "outbox".hash(&mut h);
            uuid::Uuid::from_u64_pair(high, h.finish())
        };
        let local = self.storage.inner.session_locks.lock(&id, deadline).await?;
        let held = self
            .storage
            .inner
            .uploads
            .lock_object(&path, deadline)
            .await?;
        Ok(OutboxLock(held.with_local(local)))
    }
}

/// Keys come from this module; anything else could name another object.
fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StorageError::Corrupt {
            path: key.chars().take(80).collect(),
            reason: "not an outbox key".into(),
        })
    }
}

/// The next key of this process: see the module docs.
fn next_key() -> String {
    /// The last millisecond used and the sequence number after it.
    static LAST: Mutex<(u64, u64)> = Mutex::new((0, 0));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (ms, seq) = {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let ms = now.max(last.0);
        last.1 = if ms == last.0 { last.1 + 1 } else { 0 };
        last.0 = ms;
        (ms, last.1)
    };
    let random = uuid::Uuid::new_v4().as_u64_pair().0;
    format!("{ms:015}-{seq:012}-{random:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_append_order() {
        let keys: Vec<String> = (0..1000).map(|_| next_key()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys.iter().all(|k| check_key(k).is_ok()));
    }

    #[test]
    fn queue_names() {
        for good in ["ci", "CI-hook_2.prod", &"a".repeat(64)] {
            assert!(good.parse::<QueueName>().is_ok(), "{good}");
        }
        for bad in ["", "-x", ".x", "a/b", "..", "a b", &"a".repeat(65), "é"] {
            assert!(bad.parse::<QueueName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn foreign_keys_are_refused() {
        for bad in ["", "../x", "a/b", "a.b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
