//! What a pull-through cache needs from storage: manifests stored before
//! their references, when a cached tag was last confirmed, and blobs
//! linked from bytes already stored for another repository.
//!
//! Cached content lives in ordinary repositories, so garbage collection,
//! retention, `du` and `fsck` see it as they see pushed content.

use std::time::SystemTime;

use bytes::Bytes;
use oci_types::{Digest, Reference, RepositoryName, Tag};

use crate::Storage;
use crate::error::Result;
use crate::manifests::{ManifestMeta, References};

/// What a tag points to, and when that was last recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    /// The manifest the tag names.
    pub digest: Digest,
    /// When the tag was last pushed, or (a cached tag) last confirmed
    /// upstream.
    pub recorded_at: SystemTime,
}

impl Storage {
    /// Stores a copy of another registry's manifest under `reference`, like
    /// [`Storage::manifest_put`] except that the blobs and child manifests
    /// it references need not be stored yet: a cache fetches them when a
    /// client asks. A tag's push time is recorded as now (see
    /// [`Storage::tag_record`]).
    pub async fn manifest_cache(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<ManifestMeta> {
        self.store_manifest(name, reference, body, content_type, References::Fetched)
            .await
    }

    /// What `tag` points to in `name` and when that was recorded; `None`
    /// when the tag does not exist. Two small reads.
    pub async fn tag_record(&self, name: &RepositoryName, tag: &Tag) -> Result<Option<TagRecord>> {
        let Some(digest) = self.read_tag(name, tag).await? else {
            return Ok(None);
        };
        let recorded_at = self
            .tag_pushed_at(name, tag, &digest)
            .await?
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(Some(TagRecord {
            digest,
            recorded_at,
        }))
    }

    /// Records that `tag` was confirmed to still name `digest` now: its
    /// time moves on (for a cache's staleness bound, and for retention,
    /// which then counts a cached tag from when it was last confirmed).
    pub async fn tag_touch(&self, name: &RepositoryName, tag: &Tag, digest: &Digest) -> Result<()> {
        self.index_tag(name, tag, digest).await
    }

    /// Links the blob `digest` into `name` if its bytes are stored (for
    /// another repository); whether it did.
    pub async fn blob_adopt(&self, name: &RepositoryName, digest: &Digest) -> Result<bool> {
        if !self.blob_data_exists(digest).await? {
            return Ok(false);
        }
        self.link_blob(name, digest).await?;
        Ok(true)
    }
}
