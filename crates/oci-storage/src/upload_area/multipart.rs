//! The S3 upload area: one S3 multipart upload per session.
//!
//! S3 wants every part but the last to be at least 5 MiB, and R2 wants them
//! all the same size, while clients PATCH chunks of any size (1 byte to
//! GiBs). So bytes are cut into parts of exactly the session's part size as
//! they arrive; what is left over after a request, less than a part, is
//! saved as a small *tail* object and put in front of the next request's
//! bytes.
//!
//! The session's part size is [`MultipartUploadArea`]'s (the most a request
//! gathers in memory) unless the first request that ends with at least
//! [`MIN_PART_SIZE`] bytes and no part sent ends with fewer than that: then
//! those bytes are the first part, and their length the session's part
//! size. Clients that push in equal chunks of at least 5 MiB (docker,
//! containerd and skopeo often send 5 MiB, distribution's minimum) so make
//! one part of each chunk and never a tail but after the last. The part
//! size is saved with the session (so every replica cuts the same parts)
//! and never changes once a part was sent; a client whose chunks then vary
//! gets tails as before, and memory stays bounded by the area's part size
//! whatever it sends. Full parts are sent while the body is still arriving,
//! up to [`MultipartUploadArea::with_concurrency`] of them at once (see
//! `in_flight`), each made of the request's own frames, not copied: memory
//! per uploading request is that many parts plus the one being gathered.
//! A request commits the ETags of its parts in part order only once every
//! one of them succeeded; if one fails, the request fails and the session
//! resumes from its last committed offset (the parts already sent are
//! overwritten by the next request, their positions being the same).
//!
//! The upload id, the part ETags and the tail's key are [`AreaState`] and are
//! saved with the session, so any replica can continue or finish it. The
//! upload id is committed (fenced, through the write's [`Checkpoint`]) as
//! soon as the upload is created, before any part is sent, so an upload of
//! a request that then fails is still aborted when the session is
//! cancelled, completed or expired ([`UploadArea::remove`]). A tail is
//! written under a new key each time and the one it replaces is deleted
//! only after the state naming the new one was committed
//! ([`UploadArea::committed`]).
//!
//! On completion exactly the parts the committed state names (by ETag,
//! which S3 checks) plus its tail are completed into `_uploads/<uuid>/blob`
//! (the digest is unknown when the upload starts); nothing found there is
//! ever trusted. The ETag the completion returned is kept in the request's
//! in-memory state, and reading back (to re-hash) and publishing use the
//! object only if it still has that ETag. The object is then copied
//! server-side to its blob path; above the backend's single-request copy
//! limit (5 GiB on S3) it is streamed into a new multipart object instead.
//!
//! Parts are numbered by their position, so a holder that lost its lease
//! and still sends a part overwrites at most a part no committed state
//! names, or makes the completion of a state that names it fail on the
//! ETag check: a clean error, never a blob of unhashed bytes.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use oci_types::DigestHasher;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use super::in_flight::{Gathered, PartsInFlight};
use super::{
    AreaState, BodyStream, Checkpoint, LeaseLocks, SessionLock, UploadArea, delete_if_exists,
};
use crate::error::{Result, StorageError};
use crate::layout;

/// Default part size: above S3's 5 MiB minimum, small enough to bound memory.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// S3's smallest part but the last; a session's part size is never less.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Default number of parts of one request in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Largest object S3 copies in one request.
pub const DEFAULT_COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// The multipart progress of one session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    /// S3's id of the multipart upload, once the first part was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload_id: Option<String>,
    /// The session's part size, once chosen (see the module docs); `None`
    /// means the area's own (a state saved before sessions chose theirs, or
    /// one with no part yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    part_size: Option<u64>,
    /// ETags of parts 1..=n, each exactly one part size long.
    #[serde(default)]
    parts: Vec<String>,
    /// Bytes after the last full part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<Tail>,
    /// ETag of `_uploads/<uuid>/blob` as this request's completion made it.
    /// Carried between `read` and `publish` of one request; the engine
    /// never commits a state after either, and `write` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completed: Option<String>,
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
        let progress: Self =
            serde_json::from_value(state.clone()).map_err(|e| StorageError::Corrupt {
                path: "upload state (multipart)".into(),
                reason: e.to_string(),
            })?;
        if progress.part_size == Some(0) {
            return Err(StorageError::Corrupt {
                path: "upload state (multipart)".into(),
                reason: "part size 0".into(),
            });
        }
        Ok(progress)
    }

    /// The session's part size, `default` (the area's) until it chose one.
    fn part_size(&self, default: usize) -> usize {
        self.part_size
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(default)
    }

    fn committed(&self, default_part_size: usize) -> u64 {
        self.parts.len() as u64 * self.part_size(default_part_size) as u64
            + self.tail.as_ref().map_or(0, |t| t.len)
    }
}

/// Upload area for S3 and compatible stores. See the module docs.
pub struct MultipartUploadArea {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    prefix: Path,
    part_size: usize,
    copy_limit: u64,
    concurrency: usize,
    locks: LeaseLocks,
}

impl std::fmt::Debug for MultipartUploadArea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultipartUploadArea")
            .field("store", &self.store)
            .field("prefix", &self.prefix)
            .field("part_size", &self.part_size)
            .field("copy_limit", &self.copy_limit)
            .field("concurrency", &self.concurrency)
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
            concurrency: DEFAULT_CONCURRENCY,
            locks,
        }
    }

    /// Sets the part size (at least 5 MiB on S3).
    pub fn with_part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size.max(1);
        self
    }

    /// Sets how many parts of one request are sent at once (at least 1):
    /// memory per uploading request is about this many parts, plus the
    /// one being gathered.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
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

    fn to_state(progress: &Progress) -> Result<AreaState> {
        Ok(serde_json::to_value(progress).map_err(std::io::Error::other)?)
    }

    /// Creates the session's multipart upload if it has none, and commits
    /// its id before anything is sent to it.
    async fn ensure_upload(
        &self,
        id: &Uuid,
        progress: &mut Progress,
        checkpoint: &mut dyn Checkpoint,
    ) -> Result<String> {
        if let Some(upload_id) = &progress.upload_id {
            return Ok(upload_id.clone());
        }
        let target = self.full(&layout::upload_multipart_target(id));
        let upload_id = self.multipart.create_multipart(&target).await?;
        progress.upload_id = Some(upload_id.clone());
        if let Err(e) = checkpoint.save(&Self::to_state(progress)?).await {
            progress.upload_id = None;
            if let Err(abort) = self.multipart.abort_multipart(&target, &upload_id).await {
                tracing::warn!(error = %abort, "aborting an unrecorded multipart upload");
            }
            return Err(e);
        }
        Ok(upload_id)
    }

    /// Parts of the session's multipart upload (created and committed
    /// first if it has none) to send from this request.
    async fn start_parts(
        &self,
        id: &Uuid,
        progress: &mut Progress,
        checkpoint: &mut dyn Checkpoint,
    ) -> Result<PartsInFlight> {
        let upload_id = self.ensure_upload(id, progress, checkpoint).await?;
        Ok(PartsInFlight::new(
            Arc::clone(&self.multipart),
            self.full(&layout::upload_multipart_target(id)),
            upload_id,
            self.concurrency,
        ))
    }

    /// Sends `part` as the next part of the session's multipart upload.
    async fn put_part(&self, id: &Uuid, progress: &mut Progress, part: Bytes) -> Result<()> {
        let target = self.full(&layout::upload_multipart_target(id));
        let upload_id = progress
            .upload_id
            .clone()
            .ok_or_else(|| StorageError::Corrupt {
                path: target.to_string(),
                reason: "no multipart upload".into(),
            })?;
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

    /// Completes the multipart upload into `_uploads/<uuid>/blob` with
    /// exactly the parts `progress` names (the tail becomes the last part),
    /// once per request: the ETag of the result is kept in `progress`.
    async fn complete(&self, id: &Uuid, progress: &mut Progress) -> Result<(Path, String)> {
        let target = layout::upload_multipart_target(id);
        if let Some(e_tag) = &progress.completed {
            return Ok((target, e_tag.clone()));
        }
        let mut parts = progress.clone();
        let tail = self.tail_bytes(&parts).await?;
        if !tail.is_empty() {
            self.put_part(id, &mut parts, tail).await?;
        }
        let upload_id = parts
            .upload_id
            .clone()
            .ok_or_else(|| StorageError::Corrupt {
                path: target.to_string(),
                reason: "no multipart upload to complete".into(),
            })?;
        let parts = parts
            .parts
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        let done = self
            .multipart
            .complete_multipart(&self.full(&target), &upload_id, parts)
            .await?;
        let e_tag = done.e_tag.ok_or_else(|| StorageError::Corrupt {
            path: target.to_string(),
            reason: "the store gave the completed upload no ETag".into(),
        })?;
        progress.completed = Some(e_tag.clone());
        Ok((target, e_tag))
    }

    /// The completed object's first `len` bytes, if it still is the one
    /// this request's completion made.
    async fn completed_bytes(
        &self,
        target: &Path,
        e_tag: String,
        len: u64,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let opts = GetOptions {
            if_match: Some(e_tag),
            ..GetOptions::new().with_range(Some(0..len))
        };
        let get = self.store.get_opts(target, opts).await?;
        Ok(get.into_stream().map_err(StorageError::from).boxed())
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
        checkpoint: &mut dyn Checkpoint,
    ) -> Result<(u64, DigestHasher)> {
        let mut progress = Progress::from_state(state)?;
        progress.completed = None;
        if progress.committed(self.part_size) != offset {
            return Err(StorageError::Corrupt {
                path: layout::upload_dir(id).to_string(),
                reason: format!(
                    "parts hold {} bytes, session records {offset}",
                    progress.committed(self.part_size)
                ),
            });
        }
        let part_size = progress.part_size(self.part_size);
        let mut buf = Gathered::default();
        buf.push(self.tail_bytes(&progress).await?);
        let mut in_flight: Option<PartsInFlight> = None;
        let mut next_part = progress.parts.len();
        let mut written = 0u64;
        while let Some(frame) = body.next().await {
            let mut frame = frame.map_err(StorageError::Body)?;
            hasher.update(&frame);
            written += frame.len() as u64;
            while !frame.is_empty() {
                let take = (part_size - buf.len()).min(frame.len());
                buf.push(frame.split_to(take));
                if buf.len() == part_size {
                    progress.part_size = Some(part_size as u64);
                    let parts = match &mut in_flight {
                        Some(parts) => parts,
                        None => {
                            in_flight.insert(self.start_parts(id, &mut progress, checkpoint).await?)
                        }
                    };
                    parts.send(next_part, buf.take()).await?;
                    next_part += 1;
                }
            }
        }
        if progress.parts.is_empty() && in_flight.is_none() && buf.len() >= MIN_PART_SIZE {
            // No part yet and a part's worth, but less than the area's part
            // size: these bytes are the first part, and their length the
            // session's part size (see the module docs).
            progress.part_size = Some(buf.len() as u64);
            let mut parts = self.start_parts(id, &mut progress, checkpoint).await?;
            parts.send(next_part, buf.take()).await?;
            in_flight = Some(parts);
        }
        if let Some(parts) = in_flight {
            parts.finish(&mut progress.parts).await?;
        }
        progress.tail = if buf.is_empty() {
            None
        } else {
            // A new key each time: the saved state keeps naming the old tail
            // until the engine commits this write (then `committed` deletes
            // the old one).
            let key = layout::upload_tail(id, &Uuid::new_v4());
            let len = buf.len() as u64;
            self.store.put(&key, buf.take()).await?;
            Some(Tail {
                key: key.to_string(),
                len,
            })
        };
        *state = Self::to_state(&progress)?;
        Ok((written, hasher))
    }

    async fn read(
        &self,
        id: &Uuid,
        len: u64,
        state: &mut AreaState,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let mut progress = Progress::from_state(state)?;
        if progress.upload_id.is_none() {
            let tail = self.tail_bytes(&progress).await?;
            return Ok(futures::stream::once(async move { Ok(tail) }).boxed());
        }
        let (target, e_tag) = self.complete(id, &mut progress).await?;
        *state = Self::to_state(&progress)?;
        self.completed_bytes(&target, e_tag, len).await
    }

    async fn publish(&self, id: &Uuid, len: u64, state: &mut AreaState, dest: &Path) -> Result<()> {
        let mut progress = Progress::from_state(state)?;
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
        let (target, e_tag) = self.complete(id, &mut progress).await?;
        *state = Self::to_state(&progress)?;
        if len <= self.copy_limit {
            // object_store's copy takes no source condition: check first.
            // Only a holder of the session lock completes into `target`.
            let meta = self.store.head(&target).await?;
            if meta.e_tag.as_deref() != Some(e_tag.as_str()) || meta.size != len {
                return Err(StorageError::Corrupt {
                    path: target.to_string(),
                    reason: "the completed upload changed before it was published".into(),
                });
            }
            self.store.copy(&target, dest).await?;
            return Ok(());
        }
        let mut writer = WriteMultipart::new_with_chunk_size(
            self.store.put_multipart(dest).await?,
            self.part_size,
        );
        let mut bytes = self.completed_bytes(&target, e_tag, len).await?;
        while let Some(chunk) = bytes.next().await {
            match chunk {
                Ok(chunk) => {
                    writer.wait_for_capacity(self.concurrency).await?;
                    writer.put(chunk);
                }
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
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

    async fn committed(&self, _id: &Uuid, before: &AreaState, after: &AreaState) -> Result<()> {
        let (before, after) = (Progress::from_state(before)?, Progress::from_state(after)?);
        if let Some(old) = before.tail
            && after.tail.as_ref().is_none_or(|t| t.key != old.key)
        {
            delete_if_exists(self.store.as_ref(), &Path::from(old.key.as_str())).await?;
        }
        Ok(())
    }

    async fn lock(&self, id: &Uuid, deadline: Instant) -> Result<SessionLock> {
        self.locks.lock(id, deadline).await
    }

    async fn lock_object(&self, path: &Path, deadline: Instant) -> Result<SessionLock> {
        self.locks.lock_object(path.clone(), deadline).await
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
        let locks = LeaseLocks::new(Arc::clone(&store), Duration::from_millis(500));
        MultipartUploadArea::new(store, s3, prefix, locks)
            .with_part_size(5 * MIB)
            .with_copy_limit(copy_limit)
    }

    /// The in-process server's multipart API, with part `slow` held back
    /// (so the parts after it finish first) and part `fail` failing.
    struct Unruly {
        inner: Arc<dyn MultipartStore>,
        slow: Option<usize>,
        fail: Option<usize>,
        in_flight: std::sync::atomic::AtomicUsize,
        most_in_flight: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl MultipartStore for Unruly {
        async fn create_multipart(&self, path: &Path) -> object_store::Result<String> {
            self.inner.create_multipart(path).await
        }

        async fn put_part(
            &self,
            path: &Path,
            id: &String,
            part_idx: usize,
            data: PutPayload,
        ) -> object_store::Result<PartId> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.most_in_flight.fetch_max(now, SeqCst);
            if self.slow == Some(part_idx) {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let sent = if self.fail == Some(part_idx) {
                Err(object_store::Error::Generic {
                    store: "unruly",
                    source: "part failed".into(),
                })
            } else {
                self.inner.put_part(path, id, part_idx, data).await
            };
            self.in_flight.fetch_sub(1, SeqCst);
            sent
        }

        async fn complete_multipart(
            &self,
            path: &Path,
            id: &String,
            parts: Vec<PartId>,
        ) -> object_store::Result<object_store::PutResult> {
            self.inner.complete_multipart(path, id, parts).await
        }

        async fn abort_multipart(&self, path: &Path, id: &String) -> object_store::Result<()> {
            self.inner.abort_multipart(path, id).await
        }
    }

    /// `area`'s store with an [`Unruly`] multipart API: another replica
    /// of the same bucket, sending `concurrency` parts at once.
    fn unruly(
        area: &MultipartUploadArea,
        slow: Option<usize>,
        fail: Option<usize>,
        concurrency: usize,
    ) -> (MultipartUploadArea, Arc<Unruly>) {
        let multipart = Arc::new(Unruly {
            inner: Arc::clone(&area.multipart),
            slow,
            fail,
            in_flight: Default::default(),
            most_in_flight: Default::default(),
        });
        let locks = LeaseLocks::new(Arc::clone(&area.store), Duration::from_millis(500));
        let replica = MultipartUploadArea::new(
            Arc::clone(&area.store),
            Arc::clone(&multipart) as Arc<dyn MultipartStore>,
            area.prefix.clone(),
            locks,
        )
        .with_part_size(area.part_size)
        .with_concurrency(concurrency);
        (replica, multipart)
    }

    fn blob(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    /// Parts sent at once finish out of order (the first one last); the
    /// committed ETags are in part order, and the published blob is right.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_parts_finish_out_of_order() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let plain = area(&server, MIB as u64).await;
        let (area, unruly) = unruly(&plain, Some(0), None, 3);
        let data = blob(4 * 5 * MIB + 3);
        let id = Uuid::new_v4();
        let mut state = AreaState::Null;
        let hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        let (written, hasher) = area
            .write(
                &id,
                0,
                &mut state,
                body(data.clone()),
                hasher,
                &mut Saved::default(),
            )
            .await
            .unwrap();
        assert_eq!(written, data.len() as u64);
        assert_eq!(hasher.finalize(), Digest::of(&data));
        let most = unruly
            .most_in_flight
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(most, 3, "parts in flight at once");
        let progress = Progress::from_state(&state).unwrap();
        assert_eq!(progress.parts.len(), 4);
        assert_eq!(progress.committed(5 * MIB), data.len() as u64);
        let dest = Path::from("blobs/ooo/data");
        area.publish(&id, data.len() as u64, &mut state, &dest)
            .await
            .unwrap();
        let stored = area.store.get(&dest).await.unwrap().bytes().await.unwrap();
        assert!(stored.as_ref() == data.as_slice());
    }

    /// A part failing while others are in flight fails the request and
    /// leaves the committed state as it was; another replica resumes the
    /// session from its last committed offset and completes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_part_resumes_from_the_committed_offset() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let plain = area(&server, MIB as u64).await;
        let data = blob(6 * 5 * MIB + 11);
        let id = Uuid::new_v4();
        let mut state = AreaState::Null;
        // First request: 2 parts and a bit, committed.
        let first = 2 * 5 * MIB + 100;
        let hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        let (_, hasher) = plain
            .write(
                &id,
                0,
                &mut state,
                body(data[..first].to_vec()),
                hasher,
                &mut Saved::default(),
            )
            .await
            .unwrap();
        let committed = state.clone();
        // Second request, on a replica whose part 3 (0-based) fails while
        // parts 2 and 4 are in flight.
        let (replica, _) = unruly(&plain, Some(2), Some(3), 3);
        let mut attempt = committed.clone();
        let failed = replica
            .write(
                &id,
                first as u64,
                &mut attempt,
                body(data[first..].to_vec()),
                hasher.clone(),
                &mut Saved::default(),
            )
            .await;
        assert!(failed.is_err(), "a failed part fails the request");
        assert_eq!(attempt, committed, "the failed request changed the state");
        // The session resumes from the committed offset, on the first
        // replica, and the blob is exactly the bytes sent.
        let (written, hasher) = plain
            .write(
                &id,
                first as u64,
                &mut state,
                body(data[first..].to_vec()),
                hasher,
                &mut Saved::default(),
            )
            .await
            .unwrap();
        assert_eq!(written, (data.len() - first) as u64);
        assert_eq!(hasher.finalize(), Digest::of(&data));
        let dest = Path::from("blobs/resumed/data");
        plain
            .publish(&id, data.len() as u64, &mut state, &dest)
            .await
            .unwrap();
        let stored = plain.store.get(&dest).await.unwrap().bytes().await.unwrap();
        assert!(stored.as_ref() == data.as_slice());
        plain.remove(&id, Some(&state)).await.unwrap();
        assert_eq!(server.open_multipart_uploads(), 0);
    }

    /// Records what a write commits mid-way.
    #[derive(Default)]
    struct Saved(Vec<AreaState>);

    #[async_trait]
    impl Checkpoint for Saved {
        async fn save(&mut self, area: &AreaState) -> Result<()> {
            self.0.push(area.clone());
            Ok(())
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
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
            let mut saved = Saved::default();
            let (written, h) = area
                .write(
                    &id,
                    offset as u64,
                    &mut state,
                    body(chunk),
                    hasher,
                    &mut saved,
                )
                .await
                .unwrap();
            // The upload id is committed before the first part is sent.
            let first_part = offset < 5 * MIB && offset + size >= 5 * MIB;
            assert_eq!(saved.0.len(), usize::from(first_part));
            if let Some(cp) = saved.0.first() {
                let cp = Progress::from_state(cp).unwrap();
                assert!(cp.upload_id.is_some() && cp.parts.is_empty());
            }
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
        area.publish(&id, data.len() as u64, &mut state, &dest)
            .await
            .unwrap();
        let stored = area.store.get(&dest).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.as_ref(), data.as_slice());
        // Rehash path: reading back completes nothing twice.
        let mut back = Vec::new();
        let mut s = area.read(&id, data.len() as u64, &mut state).await.unwrap();
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

    /// Writes `sizes` chunks of `data` one request each, alternating
    /// between `areas` (replicas); returns the states after each request.
    async fn write_chunks(
        areas: &[&MultipartUploadArea],
        id: &Uuid,
        data: &[u8],
        sizes: &[usize],
        state: &mut AreaState,
        hasher: &mut DigestHasher,
    ) -> Vec<Progress> {
        let mut offset = 0;
        let mut after = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let chunk = data[offset..offset + size].to_vec();
            let (written, h) = areas[i % areas.len()]
                .write(
                    id,
                    offset as u64,
                    state,
                    body(chunk),
                    hasher.clone(),
                    &mut Saved::default(),
                )
                .await
                .unwrap();
            assert_eq!(written, size as u64);
            *hasher = h;
            offset += size;
            let progress = Progress::from_state(state).unwrap();
            assert_eq!(progress.committed(areas[0].part_size), offset as u64);
            after.push(progress);
        }
        after
    }

    /// Equal 5 MiB chunks to an area of 8 MiB parts: each chunk is one
    /// part (the session's part size is the first chunk's, saved with it,
    /// so the other replica cuts the same parts) and no tail is written;
    /// chunks of other sizes after that are cut into 5 MiB parts and a
    /// tail, and the blob is exactly the bytes sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn equal_chunks_are_parts() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let a = area(&server, MIB as u64).await.with_part_size(8 * MIB);
        let (b, _) = unruly(&a, None, None, 2);
        let sizes = [5 * MIB, 5 * MIB, 5 * MIB, 7 * MIB, 3 * MIB, 12 * MIB, 1];
        let data = blob(sizes.iter().sum());
        let id = Uuid::new_v4();
        let mut state = AreaState::Null;
        let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        let after = write_chunks(&[&a, &b], &id, &data, &sizes, &mut state, &mut hasher).await;
        let tails: Vec<_> = after
            .iter()
            .map(|p| p.tail.as_ref().map(|t| t.len))
            .collect();
        let parts: Vec<_> = after.iter().map(|p| p.parts.len()).collect();
        let m = MIB as u64;
        assert_eq!(
            tails,
            [
                None,
                None,
                None,
                Some(2 * m),
                None,
                Some(2 * m),
                Some(2 * m + 1)
            ]
        );
        assert_eq!(parts, [1, 2, 3, 4, 5, 7, 7]);
        assert!(after.iter().all(|p| p.part_size == Some(5 * m)));
        assert_eq!(hasher.finalize(), Digest::of(&data));
        let dest = Path::from("blobs/equal/data");
        b.publish(&id, data.len() as u64, &mut state, &dest)
            .await
            .unwrap();
        let stored = a.store.get(&dest).await.unwrap().bytes().await.unwrap();
        assert!(stored.as_ref() == data.as_slice());
        a.remove(&id, Some(&state)).await.unwrap();
        assert_eq!(server.open_multipart_uploads(), 0);
    }

    /// The part size is chosen only while no part was sent, and only
    /// between S3's minimum and the area's: a first chunk under 5 MiB is a
    /// tail, the first request ending with 5 to 8 MiB chooses its length,
    /// and a first chunk above the area's part size is cut into parts of
    /// that size (memory per request is bounded by the area, not by the
    /// client).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn part_size_is_chosen_once_and_bounded() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let a = area(&server, MIB as u64).await.with_part_size(8 * MIB);
        let m = MIB as u64;
        for (sizes, part_size) in [
            (vec![MIB, 5 * MIB, 6 * MIB, 4 * MIB], 6 * m),
            (vec![3 * MIB, 5 * MIB, 5 * MIB], 8 * m),
            (vec![40 * MIB + 5, 5 * MIB], 8 * m),
            (vec![MIB, MIB, MIB], 8 * m),
        ] {
            let data = blob(sizes.iter().sum());
            let id = Uuid::new_v4();
            let mut state = AreaState::Null;
            let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
            let after = write_chunks(&[&a], &id, &data, &sizes, &mut state, &mut hasher).await;
            let last = after.last().unwrap();
            assert_eq!(last.part_size(a.part_size) as u64, part_size, "{sizes:?}");
            let dest = Path::from(format!("blobs/{id}/data").as_str());
            a.publish(&id, data.len() as u64, &mut state, &dest)
                .await
                .unwrap();
            let stored = a.store.get(&dest).await.unwrap().bytes().await.unwrap();
            assert!(stored.as_ref() == data.as_slice(), "{sizes:?}");
            a.remove(&id, Some(&state)).await.unwrap();
        }
    }

    /// A state saved before sessions chose their part size (no
    /// `part_size`) is read with the area's part size.
    #[test]
    fn state_without_part_size_uses_the_area_part_size() {
        let state = serde_json::json!({"upload_id": "u", "parts": ["a", "b"]});
        let progress = Progress::from_state(&state).unwrap();
        assert_eq!(progress.committed(8 * MIB), 16 * MIB as u64);
        let zero = serde_json::json!({"upload_id": "u", "parts": ["a"], "part_size": 0});
        assert!(Progress::from_state(&zero).is_err());
    }

    /// A blob smaller than one part never starts a multipart upload.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_blob_is_its_tail() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let area = area(&server, MIB as u64).await;
        let id = Uuid::new_v4();
        let mut state = AreaState::Null;
        let hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        let mut saved = Saved::default();
        let (written, _) = area
            .write(
                &id,
                0,
                &mut state,
                body(b"small".to_vec()),
                hasher,
                &mut saved,
            )
            .await
            .unwrap();
        assert!(saved.0.is_empty());
        assert_eq!(written, 5);
        assert!(Progress::from_state(&state).unwrap().upload_id.is_none());
        let dest = Path::from("blobs/small/data");
        area.publish(&id, 5, &mut state, &dest).await.unwrap();
        let stored = area.store.get(&dest).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.as_ref(), b"small");
    }

    /// A second holder waits until the first releases the lease.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lease_is_exclusive() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let area = Arc::new(area(&server, MIB as u64).await);
        let id = Uuid::new_v4();
        let first = area.lock(&id, soon()).await.unwrap();
        let second = {
            let area = Arc::clone(&area);
            tokio::spawn(async move { area.lock(&id, soon()).await.map(|_| ()) })
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
        area.store
            .put(&layout::upload_lock(&id), PutPayload::from("1"))
            .await
            .unwrap();
        let lock = tokio::time::timeout(Duration::from_secs(5), area.lock(&id, soon())).await;
        assert!(matches!(lock, Ok(Ok(_))), "expired lease not taken over");
    }
}
