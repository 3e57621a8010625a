//! The filesystem upload area.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use oci_types::DigestHasher;
use tokio::time::Instant;
use uuid::Uuid;

use super::{AreaState, BodyStream, Checkpoint, SessionLock, UploadArea};
use crate::error::{Result, StorageError};
use crate::layout;

/// Batches in flight between the request and the writer.
const CHANNEL_DEPTH: usize = 4;

/// Body frames already received are handed to the writer together, up to
/// this many bytes: one wake-up of the writer thread per batch instead of
/// one per socket read (perf showed the wake-ups as a large share of a push
/// on tmpfs). Memory per upload: `CHANNEL_DEPTH` + 1 batches.
const BATCH_BYTES: usize = 1 << 20;

/// Filesystem upload area: `<root>/_uploads/<uuid>/data`, in the same tree as
/// the [`LocalFileSystem`] store so that publishing is a rename on one
/// filesystem.
#[derive(Debug)]
pub struct LocalUploadArea {
    store: Arc<LocalFileSystem>,
    fsync: bool,
}

impl LocalUploadArea {
    /// An upload area inside the tree of `store`, `fsync`ing as
    /// [`crate::StorageOptions::fsync`] describes.
    pub fn new(store: Arc<LocalFileSystem>) -> Self {
        Self { store, fsync: true }
    }

    /// With `fsync` off, received bytes and published blobs are not forced
    /// to disk before the request is answered (faster; lost on power loss).
    pub fn with_fsync(self, fsync: bool) -> Self {
        Self { fsync, ..self }
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
        _checkpoint: &mut dyn Checkpoint,
    ) -> Result<(u64, DigestHasher)> {
        let path = self.data_path(id)?;
        let fsync = self.fsync;
        let (write_tx, mut write_rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(CHANNEL_DEPTH);
        let (hash_tx, mut hash_rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(CHANNEL_DEPTH);
        // Hashing and writing run on two blocking threads while this task
        // keeps reading the socket: SHA-256 alone takes most of a core at
        // network speed, so it gets a thread of its own (the buffers are
        // shared, not copied).
        let hashing = tokio::task::spawn_blocking(move || {
            while let Some(batch) = hash_rx.blocking_recv() {
                for chunk in &batch {
                    hasher.update(chunk);
                }
            }
            hasher
        });
        let writer = tokio::task::spawn_blocking(move || -> Result<u64> {
            let dir = path.parent().ok_or_else(|| not_in_dir(&path))?;
            crate::local::create_dirs(dir, fsync)?;
            let created = !path.exists();
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
            while let Some(batch) = write_rx.blocking_recv() {
                for chunk in batch {
                    file.write_all(&chunk)?;
                    written += chunk.len() as u64;
                }
            }
            // The engine records the new offset once this returns: the
            // bytes (and a new file's name) must be on disk first.
            if fsync {
                file.sync_data()?;
                if created {
                    crate::local::sync_dir(dir)?;
                }
            }
            Ok(written)
        });
        let mut body_error = None;
        let mut ended = false;
        while !ended {
            let Some(first) = body.next().await else {
                break;
            };
            let mut batch = Vec::new();
            let mut batch_len = 0;
            // This frame and every frame already waiting, up to a batch.
            let mut frame = Some(first);
            while let Some(f) = frame.take() {
                match f {
                    Ok(chunk) => {
                        batch_len += chunk.len();
                        if !chunk.is_empty() {
                            batch.push(chunk);
                        }
                    }
                    Err(e) => {
                        body_error = Some(e);
                        break;
                    }
                }
                if batch_len >= BATCH_BYTES {
                    break;
                }
                match body.next().now_or_never() {
                    Some(Some(f)) => frame = Some(f),
                    Some(None) => ended = true,
                    None => {}
                }
            }
            if body_error.is_some() {
                break;
            }
            if !batch.is_empty()
                && (write_tx.send(batch.clone()).await.is_err()
                    || hash_tx.send(batch).await.is_err())
            {
                break; // the writer failed; its error is reported below
            }
        }
        drop((write_tx, hash_tx));
        let joined = |e: tokio::task::JoinError| StorageError::Io(std::io::Error::other(e));
        let written = writer.await.map_err(joined)?;
        let hasher = hashing.await.map_err(joined)?;
        match body_error {
            Some(e) => Err(StorageError::Body(e)),
            None => written.map(|written| (written, hasher)),
        }
    }

    async fn read(
        &self,
        id: &Uuid,
        len: u64,
        _state: &mut AreaState,
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

    async fn publish(
        &self,
        id: &Uuid,
        len: u64,
        _state: &mut AreaState,
        dest: &Path,
    ) -> Result<()> {
        let src = self.data_path(id)?;
        let dest = self.store.path_to_filesystem(dest)?;
        let fsync = self.fsync;
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
            // Data before name: after power loss the blob path holds all
            // of the verified bytes or does not exist.
            if fsync {
                file.sync_all()?;
            }
            drop(file);
            let dir = dest.parent().ok_or_else(|| not_in_dir(&dest))?;
            // The garbage collector removes a blob's emptied directory: if
            // it went between creating and renaming, create it again.
            crate::local::in_dir(dir, fsync, || std::fs::rename(&src, &dest))?;
            if fsync {
                crate::local::sync_dir(dir)?;
            }
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
    /// holder dies, so a crash never leaves a session locked. It is only
    /// ever *tried* (`LOCK_NB`), with short async sleeps in between: a
    /// waiter holds no thread, and dropping it gives up the wait.
    async fn lock(&self, id: &Uuid, deadline: Instant) -> Result<SessionLock> {
        let path = self.data_path(id)?.with_file_name(LOCK_FILE);
        flock(path, &id.to_string(), deadline).await
    }

    /// An `flock` on the file at `path`, as for sessions.
    async fn lock_object(&self, path: &Path, deadline: Instant) -> Result<SessionLock> {
        let file = self.store.path_to_filesystem(path)?;
        flock(file, path.as_ref(), deadline).await
    }
}

/// Waits for an `flock` on `path` (created if missing) until `deadline`;
/// `label` names it in the [`StorageError::Busy`] error.
async fn flock(path: PathBuf, label: &str, deadline: Instant) -> Result<SessionLock> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // Opened anew each round: a concurrent `remove` may have
        // unlinked the file we tried, and a lock on an unlinked file
        // would exclude nobody.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => return Ok(SessionLock::new(file)),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        drop(file);
        let now = Instant::now();
        if now >= deadline {
            return Err(StorageError::Busy(label.to_owned()));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_LOCK_PAUSE);
    }
}

/// The error for a path without a parent directory (never one of ours).
fn not_in_dir(path: &std::path::Path) -> StorageError {
    StorageError::Io(std::io::Error::other(format!(
        "{} has no parent directory",
        path.display()
    )))
}

/// Name of the lock file inside a session directory.
const LOCK_FILE: &str = "lock";

/// Longest sleep between two tries of a held `flock`.
const MAX_LOCK_PAUSE: Duration = Duration::from_millis(20);
