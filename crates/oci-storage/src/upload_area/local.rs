//! The filesystem upload area.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use oci_types::DigestHasher;
use uuid::Uuid;

use super::{AreaState, BodyStream, SessionLock, UploadArea};
use crate::error::{Result, StorageError};
use crate::layout;

/// Chunks in flight between the request and the writer: bounds memory per
/// upload to this many body frames.
const CHANNEL_DEPTH: usize = 16;

/// Filesystem upload area: `<root>/_uploads/<uuid>/data`, in the same tree as
/// the [`LocalFileSystem`] store so that publishing is a rename on one
/// filesystem.
#[derive(Debug)]
pub struct LocalUploadArea {
    store: Arc<LocalFileSystem>,
}

impl LocalUploadArea {
    /// An upload area inside the tree of `store`.
    pub fn new(store: Arc<LocalFileSystem>) -> Self {
        Self { store }
    }

    fn data_path(&self, id: &Uuid) -> Result<PathBuf> {
        Ok(self.store.path_to_filesystem(&layout::upload_data(id))?)
    }
}

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))?
}

#[async_trait]
impl UploadArea for LocalUploadArea {
    async fn write(
        &self,
        id: &Uuid,
        offset: u64,
        _state: &mut AreaState,
        mut body: BodyStream,
        mut hasher: DigestHasher,
    ) -> Result<(u64, DigestHasher)> {
        let path = self.data_path(id)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        // Hashing and writing run on a blocking thread while this task keeps
        // reading the socket: the two overlap on separate cores.
        let writer = tokio::task::spawn_blocking(move || -> Result<(u64, DigestHasher)> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            let len = file.metadata()?.len();
            if len < offset {
                return Err(StorageError::Corrupt {
                    path: path.display().to_string(),
                    reason: format!("holds {len} bytes, session records {offset}"),
                });
            }
            if len > offset {
                file.set_len(offset)?;
            }
            file.seek(SeekFrom::Start(offset))?;
            let mut written = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
                file.write_all(&chunk)?;
                written += chunk.len() as u64;
            }
            Ok((written, hasher))
        });
        let mut body_error = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) if chunk.is_empty() => {}
                Ok(chunk) => {
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let result = writer
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
        match body_error {
            Some(e) => Err(StorageError::Body(e)),
            None => result,
        }
    }

    async fn read(
        &self,
        id: &Uuid,
        len: u64,
        _state: &AreaState,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        if len == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let file = tokio::fs::File::open(self.data_path(id)?).await?;
        let reader = tokio::io::AsyncReadExt::take(file, len);
        Ok(
            tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)
                .map_err(StorageError::Io)
                .boxed(),
        )
    }

    async fn publish(&self, id: &Uuid, len: u64, _state: &AreaState, dest: &Path) -> Result<()> {
        let src = self.data_path(id)?;
        let dest = self.store.path_to_filesystem(dest)?;
        blocking(move || {
            // A session that never received a body has no file yet.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(len == 0)
                .truncate(false)
                .open(&src)?;
            if file.metadata()?.len() != len {
                file.set_len(len)?;
            }
            drop(file);
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::rename(&src, &dest)?;
            Ok(())
        })
        .await
    }

    async fn remove(&self, id: &Uuid, _state: Option<&AreaState>) -> Result<()> {
        let path = self.data_path(id)?;
        blocking(move || {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_file(dir.join(LOCK_FILE));
                // The session directory, if now empty; anything left is kept.
                let _ = std::fs::remove_dir(dir);
            }
            Ok(())
        })
        .await
    }

    /// An advisory lock (`flock`) on `_uploads/<uuid>/lock`: it spans
    /// processes sharing the directory, and the kernel releases it when a
    /// holder dies, so a crash never leaves a session locked.
    async fn lock(&self, id: &Uuid) -> Result<SessionLock> {
        let path = self.data_path(id)?.with_file_name(LOCK_FILE);
        blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok(SessionLock::new(file))
        })
        .await
    }
}

/// Name of the lock file inside a session directory.
const LOCK_FILE: &str = "lock";
