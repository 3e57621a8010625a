//! The S3 upload area: one S3 multipart upload per session.
//!
//! S3 wants every part but the last to be at least 5 MiB, and R2 wants them
//! all the same size, while clients PATCH chunks of any size (1 byte to
//! GiBs). So bytes are cut into parts of exactly [`MultipartUploadArea`]'s
//! part size as they arrive; what is left over after a request, less than a
//! part, is saved as a small *tail* object and put in front of the next
//! request's bytes. Memory per upload is one part.
//!
//! The upload id, the part ETags and the tail's key are [`AreaState`] and are
//! saved with the session, so any replica can continue or finish it. On
//! completion the multipart object (at `_uploads/<uuid>/blob`, since the
//! digest is unknown when the upload starts) is copied server-side to its
//! blob path; above the backend's single-request copy limit (5 GiB on S3) it
//! is streamed into a new multipart object instead.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use oci_types::DigestHasher;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AreaState, BodyStream, LeaseLocks, SessionLock, UploadArea, delete_if_exists};
use crate::error::{Result, StorageError, is_not_found};
use crate::layout;

/// Default part size: above S3's 5 MiB minimum, small enough to bound memory.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// Largest object S3 copies in one request.
pub const DEFAULT_COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// The multipart progress of one session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    /// S3's id of the multipart upload, once the first part was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload_id: Option<String>,
    /// ETags of parts 1..=n, each exactly one part size long.
    #[serde(default)]
    parts: Vec<String>,
    /// Bytes after the last full part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<Tail>,
}

/// A tail object: its key (relative to the store) and length.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tail {
    key: String,
    len: u64,
}

impl Progress {
    fn from_state(state: &AreaState) -> Result<Self> {
        if state.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(state.clone()).map_err(|e| StorageError::Corrupt {
            path: "upload state (multipart)".into(),
            reason: e.to_string(),
        })
    }

    fn committed(&self, part_size: usize) -> u64 {
        self.parts.len() as u64 * part_size as u64 + self.tail.as_ref().map_or(0, |t| t.len)
    }
}

/// Upload area for S3 and compatible stores. See the module docs.
pub struct MultipartUploadArea {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    prefix: Path,
    part_size: usize,
    copy_limit: u64,
    locks: LeaseLocks,
}

impl std::fmt::Debug for MultipartUploadArea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultipartUploadArea")
            .field("store", &self.store)
            .field("prefix", &self.prefix)
            .field("part_size", &self.part_size)
            .field("copy_limit", &self.copy_limit)
            .finish_non_exhaustive()
    }
}

impl MultipartUploadArea {
    /// An area in `store`, whose objects are `multipart`'s under `prefix`
    /// (the multipart API takes full keys).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        multipart: Arc<dyn MultipartStore>,
        prefix: Path,
        locks: LeaseLocks,
    ) -> Self {
        Self {
            store,
            multipart,
            prefix,
            part_size: DEFAULT_PART_SIZE,
            copy_limit: DEFAULT_COPY_LIMIT,
            locks,
        }
    }

    /// Sets the part size (at least 5 MiB on S3).
    pub fn with_part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size.max(1);
        self
    }

    /// Sets the size above which publishing streams instead of copying.
    pub fn with_copy_limit(mut self, copy_limit: u64) -> Self {
        self.copy_limit = copy_limit;
        self
    }

    /// The full key of a store-relative path, for the multipart API.
    fn full(&self, path: &Path) -> Path {
        self.prefix.parts().chain(path.parts()).collect()
    }

    async fn put_part(&self, id: &Uuid, progress: &mut Progress, part: Bytes) -> Result<()> {
        let target = self.full(&layout::upload_multipart_target(id));
        let upload_id = match &progress.upload_id {
            Some(u) => u.clone(),
            None => {
                let u = self.multipart.create_multipart(&target).await?;
                progress.upload_id = Some(u.clone());
                u
            }
        };
        let part_id = self
            .multipart
            .put_part(
                &target,
                &upload_id,
                progress.parts.len(),
                PutPayload::from(part),
            )
            .await?;
        progress.parts.push(part_id.content_id);
        Ok(())
    }

    async fn tail_bytes(&self, progress: &Progress) -> Result<Bytes> {
        match &progress.tail {
            None => Ok(Bytes::new()),
            Some(t) => Ok(self
                .store
                .get(&Path::from(t.key.as_str()))
                .await?
                .bytes()
                .await?),
        }
    }

    /// Completes the multipart upload into `_uploads/<uuid>/blob` (the tail
    /// becomes the last part). Idempotent: a completed target is kept.
    async fn complete(&self, id: &Uuid, len: u64, progress: &Progress) -> Result<Path> {
        let target = layout::upload_multipart_target(id);
        match self.store.head(&target).await {
            Ok(meta) if meta.size == len => return Ok(target),
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let mut progress = progress.clone();
        let tail = self.tail_bytes(&progress).await?;
        if !tail.is_empty() {
            self.put_part(id, &mut progress, tail).await?;
        }
        let upload_id = progress
            .upload_id
            .clone()
            .ok_or_else(|| StorageError::Corrupt {
                path: target.to_string(),
                reason: "no multipart upload to complete".into(),
            })?;
        let parts = progress
            .parts
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        self.multipart
            .complete_multipart(&self.full(&target), &upload_id, parts)
            .await?;
        Ok(target)
    }
}

#[async_trait]
impl UploadArea for MultipartUploadArea {
    async fn write(
        &self,
        id: &Uuid,
        offset: u64,
        state: &mut AreaState,
        mut body: BodyStream,
        mut hasher: DigestHasher,
    ) -> Result<(u64, DigestHasher)> {
        let mut progress = Progress::from_state(state)?;
        if progress.committed(self.part_size) != offset {
            return Err(StorageError::Corrupt {
                path: layout::upload_dir(id).to_string(),
                reason: format!(
                    "parts hold {} bytes, session records {offset}",
                    progress.committed(self.part_size)
                ),
            });
        }
        let mut buf = BytesMut::with_capacity(self.part_size);
        buf.extend_from_slice(&self.tail_bytes(&progress).await?);
        let mut written = 0u64;
        while let Some(frame) = body.next().await {
            let mut frame = frame.map_err(StorageError::Body)?;
            hasher.update(&frame);
            written += frame.len() as u64;
            while frame.has_remaining() {
                let take = (self.part_size - buf.len()).min(frame.len());
                buf.extend_from_slice(&frame[..take]);
                frame.advance(take);
                if buf.len() == self.part_size {
                    let part = buf.split().freeze();
                    self.put_part(id, &mut progress, part).await?;
                }
            }
        }
        progress.tail = if buf.is_empty() {
            None
        } else {
            // A new key each time: the saved state keeps naming the old tail
            // until the engine commits this write.
            let key = layout::upload_tail(id, &Uuid::new_v4());
            let len = buf.len() as u64;
            self.store.put(&key, PutPayload::from(buf.freeze())).await?;
            Some(Tail {
                key: key.to_string(),
                len,
            })
        };
        *state = serde_json::to_value(&progress).map_err(std::io::Error::other)?;
        Ok((written, hasher))
    }

    async fn read(
        &self,
        id: &Uuid,
        len: u64,
        state: &AreaState,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let progress = Progress::from_state(state)?;
        if progress.upload_id.is_none() {
            let tail = self.tail_bytes(&progress).await?;
            return Ok(futures::stream::once(async move { Ok(tail) }).boxed());
        }
        let target = self.complete(id, len, &progress).await?;
        let get = self
            .store
            .get_opts(&target, GetOptions::new().with_range(Some(0..len)))
            .await?;
        Ok(get.into_stream().map_err(StorageError::from).boxed())
    }

    async fn publish(&self, id: &Uuid, len: u64, state: &AreaState, dest: &Path) -> Result<()> {
        let progress = Progress::from_state(state)?;
        if progress.upload_id.is_none() {
            // Smaller than one part: the tail is the whole blob.
            match &progress.tail {
                Some(t) => self.store.copy(&Path::from(t.key.as_str()), dest).await?,
                None => {
                    self.store.put(dest, PutPayload::default()).await?;
                }
            }
            return Ok(());
        }
        let target = self.complete(id, len, &progress).await?;
        if len <= self.copy_limit {
            self.store.copy(&target, dest).await?;
            return Ok(());
        }
        let mut writer = WriteMultipart::new_with_chunk_size(
            self.store.put_multipart(dest).await?,
            self.part_size,
        );
        let mut bytes = self.store.get(&target).await?.into_stream();
        while let Some(chunk) = bytes.next().await {
            match chunk {
                Ok(chunk) => {
                    writer.wait_for_capacity(2).await?;
                    writer.put(chunk);
                }
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e.into());
                }
            }
        }
        writer.finish().await?;
        Ok(())
    }

    async fn remove(&self, id: &Uuid, state: Option<&AreaState>) -> Result<()> {
        if let Some(upload_id) = state
            .and_then(|s| Progress::from_state(s).ok())
            .and_then(|p| p.upload_id)
        {
            let target = self.full(&layout::upload_multipart_target(id));
            if let Err(e) = self.multipart.abort_multipart(&target, &upload_id).await {
                tracing::debug!(error = %e, "aborting a multipart upload");
            }
        }
        // The lock object belongs to its holder, who deletes it on release.
        let lock = layout::upload_lock(id);
        let objects: Vec<Path> = self
            .store
            .list(Some(&layout::upload_dir(id)))
            .map_ok(|m| m.location)
            .try_filter(|p| futures::future::ready(*p != lock))
            .try_collect()
            .await?;
        for path in objects {
            delete_if_exists(self.store.as_ref(), &path).await?;
        }
        Ok(())
    }

    async fn lock(&self, id: &Uuid) -> Result<SessionLock> {
        self.locks.lock(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use oci_types::{Digest, DigestAlgorithm};
    use std::time::Duration;

    const MIB: usize = 1024 * 1024;

    async fn area(server: &oci_test_s3::S3Server, copy_limit: u64) -> MultipartUploadArea {
        let mut builder = AmazonS3Builder::new().with_bucket_name(server.bucket());
        for (k, v) in server.options() {
            builder = builder.with_config(k.parse::<AmazonS3ConfigKey>().unwrap(), v);
        }
        let s3 = Arc::new(builder.build().unwrap());
        let prefix = Path::from("reg");
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::prefix::PrefixStore::new(
            Arc::clone(&s3),
            prefix.clone(),
        ));
        let locks = LeaseLocks::new(
            Arc::clone(&store),
            Duration::from_secs(30),
            Duration::from_secs(5),
        );
        MultipartUploadArea::new(store, s3, prefix, locks)
            .with_part_size(5 * MIB)
            .with_copy_limit(copy_limit)
    }

    fn body(bytes: Vec<u8>) -> BodyStream {
        futures::stream::iter(
            bytes
                .chunks(64 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    /// Odd chunk sizes become equal 5 MiB parts plus a tail, and a blob
    /// above the copy limit is published by streaming, not by one copy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn equal_parts_and_streamed_publish() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let area = area(&server, MIB as u64).await;
        let data: Vec<u8> = (0..13 * MIB + 11).map(|i| (i * 31 % 251) as u8).collect();
        let id = Uuid::new_v4();
        let mut state = AreaState::Null;
        let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        let mut offset = 0;
        for size in [1, 3 * MIB, 5 * MIB + 7, 5 * MIB + 3] {
            let chunk = data[offset..offset + size].to_vec();
            let (written, h) = area
                .write(&id, offset as u64, &mut state, body(chunk), hasher)
                .await
                .unwrap();
            assert_eq!(written, size as u64);
            hasher = h;
            offset += size;
            let progress = Progress::from_state(&state).unwrap();
            assert_eq!(progress.parts.len(), offset / (5 * MIB));
            assert_eq!(progress.committed(5 * MIB), offset as u64);
        }
        assert_eq!(offset, data.len());
        assert_eq!(hasher.finalize(), Digest::of(&data));
        let dest = Path::from("blobs/test/data");
        area.publish(&id, data.len() as u64, &state, &dest)
            .await
            .unwrap();
        let stored = area.store.get(&dest).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.as_ref(), data.as_slice());
        // Rehash path: reading back completes nothing twice.
        let mut back = Vec::new();
        let mut s = area.read(&id, data.len() as u64, &state).await.unwrap();
        while let Some(c) = s.next().await {
            back.extend_from_slice(&c.unwrap());
        }
        assert_eq!(back, data);
        area.remove(&id, Some(&state)).await.unwrap();
        let left: Vec<_> = area
            .store
            .list(Some(&layout::upload_dir(&id)))
            .try_collect()
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    }

    /// A blob smaller than one part never starts a multipart upload.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_blob_is_its_tail() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let area = area(&server, MIB as u64).await;
        let id = Uuid::new_v4();
        let mut state = AreaState::Null;
        let hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        let (written, _) = area
            .write(&id, 0, &mut state, body(b"small".to_vec()), hasher)
            .await
            .unwrap();
        assert_eq!(written, 5);
        assert!(Progress::from_state(&state).unwrap().upload_id.is_none());
        let dest = Path::from("blobs/small/data");
        area.publish(&id, 5, &state, &dest).await.unwrap();
        let stored = area.store.get(&dest).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.as_ref(), b"small");
    }

    /// A second holder waits until the first releases the lease.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lease_is_exclusive() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let area = Arc::new(area(&server, MIB as u64).await);
        let id = Uuid::new_v4();
        let first = area.lock(&id).await.unwrap();
        let second = {
            let area = Arc::clone(&area);
            tokio::spawn(async move { area.lock(&id).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "second lock granted while held");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("released lock is granted")
            .unwrap()
            .unwrap();
    }

    /// A lease left by a holder that died is taken over once expired.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_lease_is_taken_over() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let area = area(&server, MIB as u64).await;
        let id = Uuid::new_v4();
        let stale = Duration::from_secs(1);
        area.store
            .put(&layout::upload_lock(&id), PutPayload::from("1"))
            .await
            .unwrap();
        let lock = tokio::time::timeout(stale * 5, area.lock(&id)).await;
        assert!(matches!(lock, Ok(Ok(_))), "expired lease not taken over");
    }
}
