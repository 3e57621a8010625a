//! What a browsing client (the web UI) reads beyond the distribution API:
//! every tag of a repository with its push time from two listings (no read
//! per tag), and the last recorded storage usage.
//!
//! Usage is costly to compute (it reads every manifest of the store, see
//! `usage`), so it is computed offline (`oci-registry du`) and recorded in
//! `_usage/latest.json`; pages show that record and its date, one read
//! per page whatever the number of repositories.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oci_types::{RepositoryName, Tag};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::{Storage, Usage, layout};

/// A tag and when it was last pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTime {
    /// The tag.
    pub tag: Tag,
    /// When it was last pushed (or, a cached tag, confirmed upstream): the
    /// store's date of its newest reverse-index entry; the Unix epoch for
    /// a tag without one (stores older than the index).
    pub pushed_at: SystemTime,
}

/// One repository's row of a [`UsageRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryRecord {
    /// The repository.
    pub name: RepositoryName,
    /// Tags it had.
    pub tags: usize,
    /// Manifests it held.
    pub manifests: usize,
    /// When its newest tag was pushed (Unix ms), if it had tags.
    pub last_push_ms: Option<u64>,
    /// Stored bytes of everything it referenced.
    pub referenced_bytes: u64,
    /// Stored bytes only it referenced.
    pub exclusive_bytes: u64,
}

/// Storage usage as last recorded ([`Storage::record_usage`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// When it was computed (Unix ms).
    pub computed_ms: u64,
    /// Every repository, sorted by name.
    pub repositories: Vec<RepositoryRecord>,
    /// Blobs (and manifests) stored.
    pub stored_blobs: usize,
    /// Their bytes, each counted once.
    pub stored_bytes: u64,
    /// Bytes no repository referenced.
    pub unreferenced_bytes: u64,
}

impl UsageRecord {
    /// When it was computed.
    pub fn computed_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.computed_ms)
    }

    /// The row of `name`, if it was recorded (binary search).
    pub fn repository(&self, name: &RepositoryName) -> Option<&RepositoryRecord> {
        self.repositories
            .binary_search_by(|r| r.name.as_str().cmp(name.as_str()))
            .ok()
            .map(|i| &self.repositories[i])
    }
}

/// Unix milliseconds of `t` (0 before the epoch).
fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Storage {
    /// Every tag of `name` with its push time, newest first (ties by
    /// name). Two listings (`_tags/` and the reverse index `_tagged/`),
    /// no read per tag: O(tags) listed entries, about one request per
    /// 1,000 on S3. Push times are the store's dates of the index entries,
    /// which copies of the store change; [`Storage::tag_record`] reads
    /// the time recorded inside one entry.
    pub async fn tag_times(&self, name: &RepositoryName) -> Result<Vec<TagTime>> {
        if !self.repository_exists(name).await? {
            return Err(StorageError::NameUnknown(name.clone()));
        }
        let tags_dir = layout::tags_dir(name);
        let prefix = format!("{tags_dir}/");
        // Tombstones (empty objects) and staging files are no tags.
        let mut latest: HashMap<Tag, SystemTime> = self
            .list_dated(&tags_dir)
            .await?
            .into_iter()
            .filter(|(_, size, _)| *size > 0)
            .filter_map(|(key, ..)| {
                let rel = key.as_ref().strip_prefix(prefix.as_str())?;
                let tag = rel.parse::<Tag>().ok()?;
                Some((tag, UNIX_EPOCH))
            })
            .collect();
        let index_dir = layout::tag_index_root(name);
        let prefix = format!("{index_dir}/");
        for (key, _, date) in self.list_dated(&index_dir).await? {
            // `<alg>/<hex>/<tag>`; stale entries of moved or deleted tags
            // only count for tags that exist, and the newest entry wins.
            let Some(rel) = key.as_ref().strip_prefix(prefix.as_str()) else {
                continue;
            };
            let Some(tag) = rel.rsplit('/').next().and_then(|t| t.parse::<Tag>().ok()) else {
                continue;
            };
            if let Some(t) = latest.get_mut(&tag)
                && date > *t
            {
                *t = date;
            }
        }
        let mut out: Vec<TagTime> = latest
            .into_iter()
            .map(|(tag, pushed_at)| TagTime { tag, pushed_at })
            .collect();
        out.sort_by(|a, b| {
            b.pushed_at
                .cmp(&a.pushed_at)
                .then_with(|| a.tag.as_str().cmp(b.tag.as_str()))
        });
        Ok(out)
    }

    /// Records `usage` (all repositories: [`Storage::usage`] without a
    /// filter) with each repository's tag count and last push
    /// (`_usage/latest.json`, replacing the previous record) for
    /// [`Storage::recorded_usage`]. Costs two listings per repository.
    pub async fn record_usage(&self, usage: &Usage) -> Result<UsageRecord> {
        let mut repositories = Vec::with_capacity(usage.repositories.len());
        for r in usage.repositories.iter().cloned() {
            let (tags, last) = match self.tag_times(&r.name).await {
                Ok(times) => (times.len(), times.first().map(|t| millis(t.pushed_at))),
                // Deleted meanwhile: recorded without tags.
                Err(StorageError::NameUnknown(_)) => (0, None),
                Err(e) => return Err(e),
            };
            repositories.push(RepositoryRecord {
                name: r.name,
                tags,
                manifests: r.manifests,
                last_push_ms: last,
                referenced_bytes: r.referenced_bytes,
                exclusive_bytes: r.exclusive_bytes,
            });
        }
        repositories.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        let record = UsageRecord {
            computed_ms: millis(SystemTime::now()),
            repositories,
            stored_blobs: usage.stored_blobs,
            stored_bytes: usage.stored_bytes,
            unreferenced_bytes: usage.unreferenced_bytes,
        };
        let json = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        self.write_small(&layout::usage_record(), json).await?;
        Ok(record)
    }

    /// The usage [`Storage::record_usage`] last recorded, if any: one read.
    pub async fn recorded_usage(&self) -> Result<Option<UsageRecord>> {
        let path = layout::usage_record();
        let Some(bytes) = self.read_small(&path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Corrupt {
                path: path.to_string(),
                reason: e.to_string(),
            })
    }
}
