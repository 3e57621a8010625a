//! Where the bytes of an upload session accumulate until it completes.
//!
//! The engine keeps a session's *state* (offset, hash state) as an object in
//! the store; an [`UploadArea`] keeps its *bytes*, in whatever way the backend
//! makes cheapest to append to and then publish as a blob:
//!
//! - [`LocalUploadArea`] (filesystem): one file per session, appended in
//!   place; publishing is a `rename` into the blob path, never a copy.
//! - [`PartsUploadArea`] (any object store): each chunk becomes an object;
//!   publishing renames a single part or streams the parts into one object.
//!
//! Both hash the bytes as they pass, write them with bounded buffering, and
//! treat bytes beyond the session's recorded offset as garbage left by an
//! interrupted request: they are discarded before the next write and never
//! published.

use std::collections::HashMap;
use std::fmt::Debug;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use oci_types::DigestHasher;
use uuid::Uuid;

use crate::error::{Result, StorageError, is_not_found};
use crate::layout;

/// A stream of request body bytes.
pub type BodyStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Chunks in flight between the request and the writer: bounds memory per
/// upload to this many body frames.
const CHANNEL_DEPTH: usize = 16;

/// Part size used when streaming into a multipart object.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Storage for the bytes of in-progress uploads. See the module docs.
#[async_trait]
pub trait UploadArea: Send + Sync + Debug + 'static {
    /// Appends `body` at `offset` (the session's committed length), feeding
    /// every byte to `hasher`. Returns the number of bytes written and the
    /// updated hasher. Anything previously stored past `offset` is dropped.
    async fn write(
        &self,
        id: &Uuid,
        offset: u64,
        body: BodyStream,
        hasher: DigestHasher,
    ) -> Result<(u64, DigestHasher)>;

    /// Streams the first `len` bytes back (used only to re-hash with another
    /// algorithm than the session's).
    async fn read(&self, id: &Uuid, len: u64) -> Result<BoxStream<'static, Result<Bytes>>>;

    /// Makes the first `len` bytes the object at `dest`, atomically.
    async fn publish(&self, id: &Uuid, len: u64, dest: &Path) -> Result<()>;

    /// Removes the session's bytes. Missing data is not an error.
    async fn remove(&self, id: &Uuid) -> Result<()>;

    /// Waits for exclusive use of the session, held until the returned
    /// guard is dropped. Every operation that changes a session runs under
    /// it, so concurrent requests on one session apply one after the other
    /// (the later one then sees the new offset, and a stale `Content-Range`
    /// gets 416) and hash state and bytes never diverge.
    async fn lock(&self, id: &Uuid) -> Result<SessionLock>;
}

/// Exclusive use of one upload session; released on drop.
pub struct SessionLock(#[allow(dead_code)] Box<dyn Send + Sync>);

impl SessionLock {
    /// Wraps whatever value releases the lock when dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self(Box::new(guard))
    }
}

impl Debug for SessionLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionLock")
    }
}

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

    async fn read(&self, id: &Uuid, len: u64) -> Result<BoxStream<'static, Result<Bytes>>> {
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

    async fn publish(&self, id: &Uuid, len: u64, dest: &Path) -> Result<()> {
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

    async fn remove(&self, id: &Uuid) -> Result<()> {
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

/// Generic upload area over any [`ObjectStore`]: chunk `k` of a session is the
/// object `_uploads/<uuid>/parts/<start offset>`.
///
/// Sessions are locked within this process only, which suits the in-memory
/// store it serves; a shared backend brings an area with shared locking.
#[derive(Debug)]
pub struct PartsUploadArea {
    store: Arc<dyn ObjectStore>,
    locks: Arc<std::sync::Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Holds a session's mutex; forgets the session's entry when the last
/// user is done.
struct LocalGuard {
    id: Uuid,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    locks: Arc<std::sync::Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if locks
            .get(&self.id)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.id);
        }
    }
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
        Self {
            store,
            locks: Arc::default(),
        }
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
        mut body: BodyStream,
        mut hasher: DigestHasher,
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

    async fn read(&self, id: &Uuid, len: u64) -> Result<BoxStream<'static, Result<Bytes>>> {
        let chain = self.chain(id, len).await?;
        Ok(self.stream_chain(chain, len))
    }

    async fn publish(&self, id: &Uuid, len: u64, dest: &Path) -> Result<()> {
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

    async fn remove(&self, id: &Uuid) -> Result<()> {
        for part in self.parts(id).await? {
            delete_if_exists(self.store.as_ref(), &part.path).await?;
        }
        Ok(())
    }

    async fn lock(&self, id: &Uuid) -> Result<SessionLock> {
        let mutex = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(locks.entry(*id).or_default())
        };
        let guard = mutex.lock_owned().await;
        Ok(SessionLock::new(LocalGuard {
            id: *id,
            guard: Some(guard),
            locks: Arc::clone(&self.locks),
        }))
    }
}

/// Deletes `path`, treating "already gone" as success.
pub(crate) async fn delete_if_exists(store: &dyn ObjectStore, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Err(e) if !is_not_found(&e) => Err(e.into()),
        _ => Ok(()),
    }
}
