//! Blobs as a repository sees them: stat, read (whole or a range), mount,
//! unlink. A blob is visible through a repository only while the repository
//! links it, even if its bytes are stored for another repository.

use std::ops::Range;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::{GetOptions, ObjectStoreExt};
use oci_types::{ByteRange, Digest, RepositoryName};

use crate::error::{Result, StorageError, is_not_found};
use crate::read_ahead::read_ahead;
use crate::{Storage, layout};

/// What is known of a stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A blob being read: the stream of its bytes and what they are.
pub struct BlobRead {
    /// The whole blob's size.
    pub size: u64,
    /// The byte range the stream covers, when a range was asked for.
    pub range: Option<Range<u64>>,
    /// The bytes.
    pub stream: BoxStream<'static, Result<Bytes>>,
}

impl BlobRead {
    /// A read of a blob held in memory, or of the part `range` selects.
    fn of_bytes(bytes: Bytes, range: Option<ByteRange>) -> Result<Self> {
        let size = bytes.len() as u64;
        let range = match range {
            None => None,
            Some(r) => Some(
                r.resolve(size)
                    .ok_or(StorageError::RangeNotSatisfiable { size })?,
            ),
        };
        let part = match &range {
            // A resolved range lies within the blob, whose length fits in usize.
            Some(r) => bytes.slice(r.start as usize..r.end as usize),
            None => bytes,
        };
        Ok(Self {
            size,
            range,
            stream: futures::stream::once(async move { Ok(part) }).boxed(),
        })
    }
}

impl std::fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRead")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// Result of a cross-repository mount request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOutcome {
    /// The blob is now linked into the target repository.
    Mounted,
    /// The source does not hold the blob; the client must upload it.
    NotFound,
}

impl Storage {
    /// Size of the blob, if `name` holds it.
    pub async fn blob_stat(&self, name: &RepositoryName, digest: &Digest) -> Result<BlobMeta> {
        self.require_linked(name, digest).await?;
        let size = match self.cached_size(&layout::blob_data(digest)) {
            Some(size) => size,
            None => self.blob_size(digest).await?,
        };
        Ok(BlobMeta {
            digest: digest.clone(),
            size,
        })
    }

    /// Streams the blob, or the part of it `range` selects.
    pub async fn blob_get(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobRead> {
        self.require_linked(name, digest).await?;
        let data = layout::blob_data(digest);
        if let Some(bytes) = self.cached_content(&data) {
            return BlobRead::of_bytes(bytes, range);
        }
        if let Some(local) = self.local() {
            // Small enough to keep: read whole (one `stat` more than a
            // stream; a blob too large to keep pays it once per read).
            if range.is_none()
                && local
                    .size(&data)?
                    .is_some_and(|size| size <= self.cacheable_size())
                && let Some(bytes) = local.read(&data)?
            {
                self.keep_content(&data, bytes.clone());
                return BlobRead::of_bytes(bytes, None);
            }
            let (size, range, stream) = local
                .stream(&layout::blob_data(digest), range)
                .await?
                .ok_or_else(|| StorageError::BlobUnknown(digest.clone()))?;
            return Ok(BlobRead {
                size,
                range,
                stream,
            });
        }
        // A whole read learns the size from the GET itself; only a range
        // needs it first, to be resolved.
        let range = match range {
            None => None,
            Some(r) => {
                let size = match self.cached_size(&data) {
                    Some(size) => size,
                    None => self.blob_size(digest).await?,
                };
                Some(
                    r.resolve(size)
                        .ok_or(StorageError::RangeNotSatisfiable { size })?,
                )
            }
        };
        let opts = GetOptions::new().with_range(range.clone());
        let result = match self.store().get_opts(&data, opts).await {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Err(StorageError::BlobUnknown(digest.clone())),
            Err(e) => return Err(e.into()),
        };
        let size = result.meta.size;
        if range.is_none() && size <= self.cacheable_size() {
            let bytes = result.bytes().await?;
            self.keep_content(&data, bytes.clone());
            return BlobRead::of_bytes(bytes, None);
        }
        let stream = read_ahead(
            result.into_stream().map_err(StorageError::from).boxed(),
            self.inner.options.read_ahead,
        );
        Ok(BlobRead {
            size,
            range,
            stream,
        })
    }

    /// Removes the blob from `name`. The bytes stay while other repositories
    /// (or manifests) may use them; garbage collection reclaims them.
    pub async fn blob_delete(&self, name: &RepositoryName, digest: &Digest) -> Result<()> {
        self.require_linked(name, digest).await?;
        self.delete_small(&layout::blob_link(name, digest)).await
    }

    /// Links a blob held elsewhere into `name` (distribution-spec "Mounting
    /// a blob from another repository"). With `from`, only a blob that `from`
    /// holds is mounted; without it, any blob stored in the registry is
    /// (spec v1.1: automatic content discovery).
    pub async fn blob_mount(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<MountOutcome> {
        let source_holds = match from {
            Some(from) => self.blob_linked(from, digest).await?,
            None => true,
        };
        if !source_holds || !self.blob_data_exists(digest).await? {
            return Ok(MountOutcome::NotFound);
        }
        self.link_blob(name, digest).await?;
        Ok(MountOutcome::Mounted)
    }

    /// [`StorageError::BlobUnknown`] unless `name` links the blob.
    async fn require_linked(&self, name: &RepositoryName, digest: &Digest) -> Result<()> {
        if self.blob_linked(name, digest).await? {
            Ok(())
        } else {
            Err(StorageError::BlobUnknown(digest.clone()))
        }
    }

    /// Size of the stored bytes of a blob, asked of the store and kept in
    /// the read cache.
    async fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let data = layout::blob_data(digest);
        let size = if let Some(local) = self.local() {
            local
                .size(&data)?
                .ok_or_else(|| StorageError::BlobUnknown(digest.clone()))?
        } else {
            match self.store().head(&data).await {
                Ok(meta) => meta.size,
                Err(e) if is_not_found(&e) => {
                    return Err(StorageError::BlobUnknown(digest.clone()));
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.keep_size(&data, size);
        Ok(size)
    }

    /// True if the blob's bytes are stored, whichever repositories link
    /// them (for checks and tests; serving goes through a repository).
    pub async fn blob_stored(&self, digest: &Digest) -> Result<bool> {
        self.blob_data_exists(digest).await
    }

    /// True if `name` links the blob (through the read cache: validated).
    pub(crate) async fn blob_linked(&self, name: &RepositoryName, digest: &Digest) -> Result<bool> {
        Ok(self
            .read_metadata(&layout::blob_link(name, digest))
            .await?
            .is_some())
    }

    /// True if the blob's bytes are stored (for any repository).
    pub(crate) async fn blob_data_exists(&self, digest: &Digest) -> Result<bool> {
        self.exists(&layout::blob_data(digest)).await
    }

    /// Makes `name` hold the blob. The data must already be stored.
    pub(crate) async fn link_blob(&self, name: &RepositoryName, digest: &Digest) -> Result<()> {
        self.write_small(&layout::blob_link(name, digest), digest.to_string())
            .await?;
        self.ensure_repository(name).await
    }
}
