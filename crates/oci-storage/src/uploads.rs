//! Upload sessions (distribution-spec "Pushing blobs"): start, append
//! chunks, report progress, cancel, complete with digest verification.
//!
//! A session's state is an object (`_uploads/<uuid>/state.json`) holding the
//! repository, the committed length and the serialized hash state; its bytes
//! live in the [`crate::UploadArea`]. Nothing is held in process memory, so a
//! session survives restarts and can move between replicas. The state is
//! rewritten only after a chunk was fully received, so bytes of a failed
//! request are never counted.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use oci_types::{ContentRange, Digest, DigestAlgorithm, DigestHasher, RepositoryName};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::blobs::BlobMeta;
use crate::error::{Result, StorageError};
use crate::upload_area::{AreaState, BodyStream, delete_if_exists};
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
}

impl UploadState {
    fn hasher(&self) -> Result<DigestHasher> {
        let algorithm = match self.algorithm.as_str() {
            "sha512" => DigestAlgorithm::Sha512,
            _ => DigestAlgorithm::Sha256,
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
        };
        state.set_hasher(&DigestHasher::new(algorithm));
        self.save_state(&id, &state).await?;
        Ok(UploadStatus { id, offset: 0 })
    }

    /// Where the session stands.
    pub async fn upload_status(
        &self,
        name: &RepositoryName,
        id: &UploadId,
    ) -> Result<UploadStatus> {
        let state = self.load_state(name, id).await?;
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
        let _lock = self.inner.uploads.lock(id).await?;
        let mut state = self.load_state(name, id).await?;
        self.append(id, &mut state, range, body).await?;
        self.save_state(id, &state).await?;
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
        let _lock = self.inner.uploads.lock(id).await?;
        let mut state = self.load_state(name, id).await?;
        if let Some(body) = body {
            self.append(id, &mut state, range, body).await?;
        }
        let hasher = state.hasher()?;
        let actual = if hasher.algorithm() == digest.algorithm() {
            hasher.finalize()
        } else {
            self.rehash(id, &state, digest.algorithm()).await?
        };
        if &actual != digest {
            self.discard(id, Some(&state)).await?;
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        if !self.blob_data_exists(digest).await? {
            self.inner
                .uploads
                .publish(id, state.offset, &state.area, &layout::blob_data(digest))
                .await?;
        }
        self.link_blob(name, digest).await?;
        self.discard(id, Some(&state)).await?;
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
            if let Ok(state) = self.load_state(name, &status.id).await {
                let _ = self.discard(&status.id, Some(&state)).await;
            }
        }
        result
    }

    /// Abandons the session and frees its bytes.
    pub async fn upload_cancel(&self, name: &RepositoryName, id: &UploadId) -> Result<()> {
        let _lock = self.inner.uploads.lock(id).await?;
        let state = self.load_state(name, id).await?;
        self.discard(id, Some(&state)).await
    }

    async fn append(
        &self,
        id: &UploadId,
        state: &mut UploadState,
        range: Option<ContentRange>,
        body: BodyStream,
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
        let (written, hasher) = self
            .inner
            .uploads
            .write(id, state.offset, &mut area, body, hasher)
            .await?;
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
        state: &UploadState,
        algorithm: DigestAlgorithm,
    ) -> Result<Digest> {
        let mut hasher = DigestHasher::new(algorithm);
        let mut bytes = self
            .inner
            .uploads
            .read(id, state.offset, &state.area)
            .await?;
        while let Some(chunk) = bytes.next().await {
            hasher.update(&chunk?);
        }
        Ok(hasher.finalize())
    }

    /// Deletes the state first, so a half-removed session is never resumed.
    async fn discard(&self, id: &UploadId, state: Option<&UploadState>) -> Result<()> {
        delete_if_exists(self.store(), &layout::upload_state(id)).await?;
        self.inner.uploads.remove(id, state.map(|s| &s.area)).await
    }

    async fn load_state(&self, name: &RepositoryName, id: &UploadId) -> Result<UploadState> {
        let unknown = || StorageError::UploadUnknown(id.to_string());
        let path = layout::upload_state(id);
        let Some(bytes) = self.read_small(&path).await? else {
            // Drop whatever taking the lock created for a session that does
            // not exist (or was just finished by a concurrent request).
            self.inner.uploads.remove(id, None).await?;
            return Err(unknown());
        };
        let state: UploadState =
            serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        if &state.repository != name {
            return Err(unknown());
        }
        Ok(state)
    }

    async fn save_state(&self, id: &UploadId, state: &UploadState) -> Result<()> {
        let json = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        self.write_small(&layout::upload_state(id), json).await
    }
}
