//! The generic upload area, for the in-memory store.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use oci_types::DigestHasher;
use tokio::time::Instant;
use uuid::Uuid;

use super::{AreaState, BodyStream, Checkpoint, SessionLock, UploadArea, delete_if_exists};
use crate::error::{Result, StorageError};
use crate::layout;

/// Part size used when streaming into a multipart object.
const PART_SIZE: usize = super::multipart::DEFAULT_PART_SIZE;

/// Generic upload area over any [`ObjectStore`]: chunk `k` of a session is the
/// object `_uploads/<uuid>/parts/<start offset>`.
///
/// Sessions are locked by the engine's in-process mutex only, which suits
/// the in-memory store it serves; a shared backend brings an area with
/// shared locking.
#[derive(Debug)]
pub struct PartsUploadArea {
    store: Arc<dyn ObjectStore>,
}

/// One stored part: where it starts and how long it is.
struct Part {
    start: u64,
    size: u64,
    path: Path,
}

impl PartsUploadArea {
    /// An upload area in `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Stored parts, sorted by start offset.
    async fn parts(&self, id: &Uuid) -> Result<Vec<Part>> {
        let prefix = layout::upload_dir(id).join("parts");
        let mut parts: Vec<Part> = self
            .store
            .list(Some(&prefix))
            .try_filter_map(|meta| async move {
                let start = meta.location.filename().and_then(|f| f.parse().ok());
                Ok(start.map(|start| Part {
                    start,
                    size: meta.size,
                    path: meta.location,
                }))
            })
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.start);
        Ok(parts)
    }

    /// The parts that make up the first `len` bytes, checked to be contiguous.
    async fn chain(&self, id: &Uuid, len: u64) -> Result<Vec<Part>> {
        let mut chain = Vec::new();
        let mut next = 0;
        for part in self.parts(id).await? {
            if next >= len {
                break;
            }
            if part.start != next {
                return Err(StorageError::Corrupt {
                    path: part.path.to_string(),
                    reason: format!("expected a part starting at {next}"),
                });
            }
            next = part.start + part.size;
            chain.push(part);
        }
        if next < len {
            return Err(StorageError::Corrupt {
                path: layout::upload_dir(id).to_string(),
                reason: format!("parts hold {next} bytes, session records {len}"),
            });
        }
        Ok(chain)
    }

    fn stream_chain(&self, chain: Vec<Part>, len: u64) -> BoxStream<'static, Result<Bytes>> {
        let store = Arc::clone(&self.store);
        futures::stream::iter(chain)
            .then(move |part| {
                let store = Arc::clone(&store);
                async move {
                    let take = part.size.min(len.saturating_sub(part.start));
                    let get = store
                        .get_opts(
                            &part.path,
                            object_store::GetOptions::new().with_range(Some(0..take)),
                        )
                        .await?;
                    Ok::<_, StorageError>(get.into_stream().map_err(StorageError::from))
                }
            })
            .try_flatten()
            .boxed()
    }
}

#[async_trait]
impl UploadArea for PartsUploadArea {
    async fn write(
        &self,
        id: &Uuid,
        offset: u64,
        _state: &mut AreaState,
        mut body: BodyStream,
        mut hasher: DigestHasher,
        _checkpoint: &mut dyn Checkpoint,
    ) -> Result<(u64, DigestHasher)> {
        // Parts at or beyond `offset` were never committed: drop them.
        for stale in self
            .parts(id)
            .await?
            .into_iter()
            .filter(|p| p.start >= offset)
        {
            delete_if_exists(self.store.as_ref(), &stale.path).await?;
        }
        let path = layout::upload_part(id, offset);
        let mut upload: Option<WriteMultipart> = None;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    if let Some(u) = upload {
                        let _ = u.abort().await;
                    }
                    return Err(StorageError::Body(e));
                }
            };
            if chunk.is_empty() {
                continue;
            }
            hasher.update(&chunk);
            written += chunk.len() as u64;
            let writer = match &mut upload {
                Some(w) => w,
                None => upload.insert(WriteMultipart::new_with_chunk_size(
                    self.store.put_multipart(&path).await?,
                    PART_SIZE,
                )),
            };
            writer.wait_for_capacity(2).await?;
            writer.put(chunk);
        }
        if let Some(writer) = upload {
            writer.finish().await?;
        }
        Ok((written, hasher))
    }

    async fn read(
        &self,
        id: &Uuid,
        len: u64,
        _state: &mut AreaState,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let chain = self.chain(id, len).await?;
        Ok(self.stream_chain(chain, len))
    }

    async fn publish(
        &self,
        id: &Uuid,
        len: u64,
        _state: &mut AreaState,
        dest: &Path,
    ) -> Result<()> {
        let chain = self.chain(id, len).await?;
        if let [only] = chain.as_slice()
            && only.size == len
        {
            self.store.rename(&only.path, dest).await?;
            return Ok(());
        }
        let mut writer =
            WriteMultipart::new_with_chunk_size(self.store.put_multipart(dest).await?, PART_SIZE);
        let mut bytes = self.stream_chain(chain, len);
        while let Some(chunk) = bytes.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            writer.wait_for_capacity(2).await?;
            writer.put(chunk);
        }
        writer.finish().await?;
        Ok(())
    }

    async fn remove(&self, id: &Uuid, _state: Option<&AreaState>) -> Result<()> {
        for part in self.parts(id).await? {
            delete_if_exists(self.store.as_ref(), &part.path).await?;
        }
        Ok(())
    }

    async fn lock(&self, _id: &Uuid, _deadline: Instant) -> Result<SessionLock> {
        Ok(SessionLock::new(()))
    }
}
