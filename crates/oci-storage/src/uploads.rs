//! Upload sessions (distribution-spec "Pushing blobs"): start, append
//! chunks, report progress, cancel, complete with digest verification.
//!
//! A session's state is an object (`_uploads/<uuid>/state.json`) holding the
//! repository, the committed length and the serialized hash state; its bytes
//! live in the [`crate::UploadArea`]. Nothing is held in process memory, so a
//! session survives restarts and can move between replicas. The state is
//! rewritten only after a chunk was fully received, so bytes of a failed
//! request are never counted.
//!
//! Every change runs under the session's lock ([`Storage::lock_session`]:
//! in-process mutex, then the area's cross-process lock, both bounded by
//! `lock_wait`). On stores that decide `If-Match` (S3, memory) the state is
//! also *fenced*: it is created with `If-None-Match: *` and every later
//! write carries `If-Match` on the ETag it was read (or last written) with,
//! so of two requests that both think they hold the session only the first
//! to commit succeeds, and the other's bytes stay unreferenced; a lock that
//! was lost also refuses the commit. On the filesystem `LocalFileSystem`
//! has no conditional overwrite, and the kernel's `flock`, which cannot be
//! lost while its holder lives, keeps holders apart instead.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use oci_types::{ContentRange, Digest, DigestAlgorithm, DigestHasher, RepositoryName};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::blobs::BlobMeta;
use crate::error::{Result, StorageError};
use crate::telemetry::Closed;
use crate::upload_area::{AreaState, BodyStream, Checkpoint, SessionLock, delete_if_exists};
use crate::{Storage, layout};

/// The identifier of an upload session, as it appears in the `Location` URL.
pub type UploadId = Uuid;

/// Progress of an upload session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadStatus {
    /// The session.
    pub id: UploadId,
    /// Bytes received and committed so far.
    pub offset: u64,
}

/// The stored state of a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UploadState {
    repository: RepositoryName,
    offset: u64,
    /// `sha256` or `sha512`: the algorithm `hash_state` is for.
    algorithm: String,
    /// Hex of [`DigestHasher::save`].
    hash_state: String,
    /// Seconds since the Unix epoch; for expiring abandoned sessions.
    started_at: u64,
    /// The upload area's own progress record.
    #[serde(default)]
    area: AreaState,
    /// The stored version this state was read as or last written as; the
    /// next write is conditional on it (fenced stores).
    #[serde(skip)]
    version: Option<UpdateVersion>,
}

impl UploadState {
    fn hasher(&self) -> Result<DigestHasher> {
        let algorithm = match self.algorithm.as_str() {
            "sha256" => DigestAlgorithm::Sha256,
            "sha512" => DigestAlgorithm::Sha512,
            other => {
                return Err(StorageError::Corrupt {
                    path: "upload state".into(),
                    reason: format!("unknown digest algorithm {other:?}"),
                });
            }
        };
        let bytes = hex::decode(&self.hash_state).map_err(|_| oci_types::Error::InvalidHashState);
        bytes
            .and_then(|b| DigestHasher::restore(algorithm, &b))
            .map_err(|e| StorageError::Corrupt {
                path: "upload state".into(),
                reason: e.to_string(),
            })
    }

    fn set_hasher(&mut self, hasher: &DigestHasher) {
        self.algorithm = hasher.algorithm().as_str().to_owned();
        self.hash_state = hex::encode(hasher.save());
    }
}

impl Storage {
    /// Opens a new session in `name`, hashing with `algorithm` as bytes
    /// arrive (sha256 unless the client announced another digest).
    pub async fn upload_start(
        &self,
        name: &RepositoryName,
        algorithm: DigestAlgorithm,
    ) -> Result<UploadStatus> {
        self.admit_upload()?;
        let id = Uuid::new_v4();
        let mut state = UploadState {
            repository: name.clone(),
            offset: 0,
            algorithm: String::new(),
            hash_state: String::new(),
            started_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            area: AreaState::Null,
            version: None,
        };
        state.set_hasher(&DigestHasher::new(algorithm));
        self.save_state(&id, &mut state, None).await?;
        self.upload_opened();
        Ok(UploadStatus { id, offset: 0 })
    }

    /// Where the session stands.
    pub async fn upload_status(
        &self,
        name: &RepositoryName,
        id: &UploadId,
    ) -> Result<UploadStatus> {
        let state = self.load_state(name, id, None).await?;
        Ok(UploadStatus {
            id: *id,
            offset: state.offset,
        })
    }

    /// Appends a chunk. With `range`, the chunk must start at the session's
    /// current length (else [`StorageError::RangeInvalid`], the spec's 416)
    /// and be exactly that long.
    pub async fn upload_append(
        &self,
        name: &RepositoryName,
        id: &UploadId,
        range: Option<ContentRange>,
        body: BodyStream,
    ) -> Result<UploadStatus> {
        let mut lock = self.lock_session(id).await?;
        let mut state = self.load_state(name, id, Some(&mut lock)).await?;
        let before = state.area.clone();
        self.append(id, &mut state, range, body, &lock).await?;
        self.save_state(id, &mut state, Some(&lock)).await?;
        if let Err(e) = self.inner.uploads.committed(id, &before, &state.area).await {
            tracing::debug!(error = %e, upload = %id, "freeing superseded upload bytes");
        }
        Ok(UploadStatus {
            id: *id,
            offset: state.offset,
        })
    }

    /// Finishes the session: appends the optional last chunk, checks the
    /// content against `digest`, publishes it as a blob of `name` and removes
    /// the session. On a digest mismatch the session is discarded and
    /// nothing is published.
    pub async fn upload_complete(
        &self,
        name: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
        range: Option<ContentRange>,
        body: Option<BodyStream>,
    ) -> Result<BlobMeta> {
        let mut lock = self.lock_session(id).await?;
        let mut state = self.load_state(name, id, Some(&mut lock)).await?;
        if let Some(body) = body {
            self.append(id, &mut state, range, body, &lock).await?;
        }
        let hasher = state.hasher()?;
        let actual = if hasher.algorithm() == digest.algorithm() {
            hasher.finalize()
        } else {
            self.rehash(id, &mut state, digest.algorithm()).await?
        };
        lock.check(id)?;
        if &actual != digest {
            self.discard(id, Some(&state), &mut lock).await?;
            self.upload_closed(Closed::Invalid);
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        if !self.blob_data_exists(digest).await? {
            self.inner
                .uploads
                .publish(
                    id,
                    state.offset,
                    &mut state.area,
                    &layout::blob_data(digest),
                )
                .await?;
        }
        self.link_blob(name, digest).await?;
        self.discard(id, Some(&state), &mut lock).await?;
        self.upload_closed(Closed::Completed);
        Ok(BlobMeta {
            digest: digest.clone(),
            size: state.offset,
        })
    }

    /// Monolithic upload in one request (`POST ?digest=` with a body).
    pub async fn blob_put(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        body: BodyStream,
    ) -> Result<BlobMeta> {
        let status = self.upload_start(name, digest.algorithm()).await?;
        let result = self
            .upload_complete(name, &status.id, digest, None, Some(body))
            .await;
        if result.is_err() {
            // Best effort: the session was private to this request.
            let _ = self.upload_cancel(name, &status.id).await;
        }
        result
    }

    /// Abandons the session and frees its bytes.
    pub async fn upload_cancel(&self, name: &RepositoryName, id: &UploadId) -> Result<()> {
        let mut lock = self.lock_session(id).await?;
        let state = self.load_state(name, id, Some(&mut lock)).await?;
        self.discard(id, Some(&state), &mut lock).await?;
        self.upload_closed(Closed::Cancelled);
        Ok(())
    }

    /// Waits (at most `lock_wait`, then [`StorageError::Busy`]) for
    /// exclusive use of the session: its in-process mutex, then the upload
    /// area's cross-process lock. Cancel-safe.
    async fn lock_session(&self, id: &UploadId) -> Result<SessionLock> {
        let deadline = tokio::time::Instant::now() + self.inner.options.lock_wait;
        self.lock_session_until(id, deadline).await
    }

    /// [`Storage::lock_session`], waiting until `deadline` (`now`: try once).
    pub(crate) async fn lock_session_until(
        &self,
        id: &UploadId,
        deadline: tokio::time::Instant,
    ) -> Result<SessionLock> {
        let local = self.inner.session_locks.lock(id, deadline).await?;
        let shared = self.inner.uploads.lock(id, deadline).await?;
        Ok(shared.with_local(local))
    }

    async fn append(
        &self,
        id: &UploadId,
        state: &mut UploadState,
        range: Option<ContentRange>,
        body: BodyStream,
        lock: &SessionLock,
    ) -> Result<()> {
        if let Some(range) = range
            && range.start() != state.offset
        {
            return Err(StorageError::RangeInvalid {
                expected: state.offset,
                got: range.start(),
            });
        }
        let hasher = state.hasher()?;
        let mut area = state.area.clone();
        let mut checkpoint = StateCheckpoint {
            storage: self,
            id,
            lock,
            state: state.clone(),
        };
        let written = self
            .inner
            .uploads
            .write(
                id,
                state.offset,
                &mut area,
                lock.fence_body(body),
                hasher,
                &mut checkpoint,
            )
            .await;
        // A checkpoint moved the stored version on (and its area state is
        // the committed one until this write is).
        state.version = checkpoint.state.version;
        state.area = checkpoint.state.area;
        let (written, hasher) = match written {
            Err(_) if lock.is_lost() => return Err(StorageError::Busy(id.to_string())),
            w => w?,
        };
        if let Some(range) = range
            && written != range.len()
        {
            return Err(StorageError::SizeInvalid {
                declared: range.len(),
                received: written,
            });
        }
        state.offset += written;
        state.set_hasher(&hasher);
        state.area = area;
        Ok(())
    }

    async fn rehash(
        &self,
        id: &UploadId,
        state: &mut UploadState,
        algorithm: DigestAlgorithm,
    ) -> Result<Digest> {
        let mut hasher = DigestHasher::new(algorithm);
        let mut bytes = self
            .inner
            .uploads
            .read(id, state.offset, &mut state.area)
            .await?;
        while let Some(chunk) = bytes.next().await {
            hasher.update(&chunk?);
        }
        Ok(hasher.finalize())
    }

    /// Deletes the state first, so a half-removed session is never resumed;
    /// the session's lock may then go too.
    pub(crate) async fn discard(
        &self,
        id: &UploadId,
        state: Option<&UploadState>,
        lock: &mut SessionLock,
    ) -> Result<()> {
        lock.check(id)?;
        delete_if_exists(self.store(), &layout::upload_state(id)).await?;
        lock.finish();
        self.inner.uploads.remove(id, state.map(|s| &s.area)).await
    }

    /// Reads the session's state. With the session's lock, a session that
    /// does not exist gets whatever taking the lock created removed.
    async fn load_state(
        &self,
        name: &RepositoryName,
        id: &UploadId,
        lock: Option<&mut SessionLock>,
    ) -> Result<UploadState> {
        let unknown = || StorageError::UploadUnknown(id.to_string());
        let path = layout::upload_state(id);
        let Some((bytes, version)) = self.read_state(&path).await? else {
            if let Some(lock) = lock {
                // Never existed, or just finished by a concurrent request.
                lock.finish();
                self.inner.uploads.remove(id, None).await?;
            }
            return Err(unknown());
        };
        let mut state: UploadState =
            serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        if &state.repository != name {
            return Err(unknown());
        }
        state.version = version;
        Ok(state)
    }

    /// The session's state whatever its repository, if it has one.
    pub(crate) async fn state_of(&self, id: &UploadId) -> Result<Option<UploadState>> {
        let path = layout::upload_state(id);
        let Some((bytes, version)) = self.read_state(&path).await? else {
            return Ok(None);
        };
        let mut state: UploadState =
            serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        state.version = version;
        Ok(Some(state))
    }

    /// The state object and, on fenced stores, the version it was read at.
    async fn read_state(
        &self,
        path: &object_store::path::Path,
    ) -> Result<Option<(bytes::Bytes, Option<UpdateVersion>)>> {
        if !self.inner.fenced_state {
            return Ok(self.read_small(path).await?.map(|b| (b, None)));
        }
        match self.store().get(path).await {
            Ok(got) => {
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                Ok(Some((got.bytes().await?, Some(version))))
            }
            Err(e) if crate::error::is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Commits `state`: on fenced stores created with `If-None-Match: *` or
    /// replaced with `If-Match` on the version it was read at, which it
    /// then records. A refused write, or a lost `lock`, is
    /// [`StorageError::Busy`]: another request took the session over.
    async fn save_state(
        &self,
        id: &UploadId,
        state: &mut UploadState,
        lock: Option<&SessionLock>,
    ) -> Result<()> {
        if let Some(lock) = lock {
            lock.check(id)?;
        }
        let json = serde_json::to_vec(&*state).map_err(std::io::Error::other)?;
        let path = layout::upload_state(id);
        if !self.inner.fenced_state {
            return self.write_small(&path, json).await;
        }
        let mode = match state.version.clone() {
            Some(v) => PutMode::Update(v),
            None => PutMode::Create,
        };
        match self
            .store()
            .put_opts(&path, PutPayload::from(json), PutOptions::from(mode))
            .await
        {
            Ok(put) => {
                state.version = Some(UpdateVersion {
                    e_tag: put.e_tag,
                    version: put.version,
                });
                Ok(())
            }
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => {
                tracing::warn!(upload = %id, "upload state changed under us: lock was lost");
                Err(StorageError::Busy(id.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Commits an area's progress mid-write: the state as last committed, with
/// the area's record replaced (see [`Checkpoint`]).
struct StateCheckpoint<'a> {
    storage: &'a Storage,
    id: &'a UploadId,
    lock: &'a SessionLock,
    state: UploadState,
}

#[async_trait]
impl Checkpoint for StateCheckpoint<'_> {
    async fn save(&mut self, area: &AreaState) -> Result<()> {
        let mut next = self.state.clone();
        next.area = area.clone();
        self.storage
            .save_state(self.id, &mut next, Some(self.lock))
            .await?;
        self.state = next;
        Ok(())
    }
}
