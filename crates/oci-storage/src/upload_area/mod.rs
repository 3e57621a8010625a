//! Where the bytes of an upload session accumulate until it completes.
//!
//! The engine keeps a session's *state* (offset, hash state, and the area's
//! own [`AreaState`]) as one object in the store, rewritten atomically after
//! each chunk; an [`UploadArea`] keeps its *bytes*, in whatever way the
//! backend makes cheapest to append to and then publish as a blob:
//!
//! - [`LocalUploadArea`] (filesystem): one file per session, appended in
//!   place; publishing is a `rename` into the blob path, never a copy.
//! - [`MultipartUploadArea`] (S3): an S3 multipart upload of equal-sized
//!   parts; bytes short of a part wait in a small tail object, so PATCH
//!   chunks of any size work and any replica can continue the session.
//! - [`PartsUploadArea`] (in-memory store): each chunk becomes an object;
//!   publishing renames a single part or streams the parts into one object.
//!
//! All of them hash the bytes as they pass, buffer a bounded amount, and
//! treat bytes beyond the session's recorded offset as garbage left by an
//! interrupted request: they are discarded and never published.

mod lease;
mod local;
mod multipart;
mod parts;

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use oci_types::DigestHasher;
use uuid::Uuid;

use crate::error::{Result, is_not_found};

pub use lease::LeaseLocks;
pub use local::LocalUploadArea;
pub use multipart::MultipartUploadArea;
pub use parts::PartsUploadArea;

/// A stream of request body bytes.
pub type BodyStream = BoxStream<'static, std::io::Result<Bytes>>;

/// An area's own record of a session's progress (e.g. multipart upload id
/// and part ETags), saved by the engine together with the offset and hash
/// state so that both always agree. `Null` for a new session.
pub type AreaState = serde_json::Value;

/// Storage for the bytes of in-progress uploads. See the module docs.
#[async_trait]
pub trait UploadArea: Send + Sync + Debug + 'static {
    /// Appends `body` at `offset` (the session's committed length), feeding
    /// every byte to `hasher` and updating `state`. Returns the number of
    /// bytes written and the updated hasher. Anything stored past `offset`
    /// by an earlier, failed request is dropped.
    async fn write(
        &self,
        id: &Uuid,
        offset: u64,
        state: &mut AreaState,
        body: BodyStream,
        hasher: DigestHasher,
    ) -> Result<(u64, DigestHasher)>;

    /// Streams the first `len` bytes back (used only to re-hash with another
    /// algorithm than the session's).
    async fn read(
        &self,
        id: &Uuid,
        len: u64,
        state: &AreaState,
    ) -> Result<BoxStream<'static, Result<Bytes>>>;

    /// Makes the first `len` bytes the object at `dest`, atomically.
    async fn publish(&self, id: &Uuid, len: u64, state: &AreaState, dest: &Path) -> Result<()>;

    /// Removes the session's bytes; `state` is `None` when the session's
    /// state is already gone. Missing data is not an error.
    async fn remove(&self, id: &Uuid, state: Option<&AreaState>) -> Result<()>;

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

/// Deletes `path`, treating "already gone" as success.
pub(crate) async fn delete_if_exists(store: &dyn ObjectStore, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Err(e) if !is_not_found(&e) => Err(e.into()),
        _ => Ok(()),
    }
}
