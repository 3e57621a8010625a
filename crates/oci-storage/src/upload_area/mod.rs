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
//! interrupted request: they are discarded and never published. Publishing
//! uses only what the committed state names and the engine hashed.
//!
//! # Locking and fencing
//!
//! Every request that changes a session holds its [`SessionLock`] (see
//! `session_lock`): the in-process async mutex, then the area's
//! cross-process lock ([`UploadArea::lock`]): `flock` on the filesystem
//! (freed by the kernel if the holder dies), a fenced lease object on S3
//! (see `lease`), nothing more for the in-memory store. Under it the order
//! of writes is: read the state (and its ETag); write bytes to objects no
//! committed state names yet (new parts, a new tail key, or past the
//! committed length of the local file); commit the state with `If-Match`
//! on the ETag read (where the store supports it); only then delete what
//! the new state no longer names ([`UploadArea::committed`]). A request
//! that fails or loses its lock anywhere before the commit leaves the
//! previous state intact and consistent with its bytes, and one that lost
//! its lease cannot commit at all, so no interleaving loses acknowledged
//! bytes or publishes bytes that were not hashed.

mod in_flight;
mod lease;
mod local;
mod multipart;
mod parts;
mod session_lock;

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use oci_types::DigestHasher;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{Result, is_not_found};

pub use lease::LeaseLocks;
pub use local::LocalUploadArea;
pub use multipart::{DEFAULT_CONCURRENCY, MultipartUploadArea};
pub use parts::PartsUploadArea;
pub(crate) use session_lock::ProcessLocks;
pub use session_lock::SessionLock;

/// A stream of request body bytes.
pub type BodyStream = BoxStream<'static, std::io::Result<Bytes>>;

/// An area's own record of a session's progress (e.g. multipart upload id
/// and part ETags), saved by the engine together with the offset and hash
/// state so that both always agree. `Null` for a new session.
pub type AreaState = serde_json::Value;

/// Commits an area's progress in the middle of a write: the session's
/// state as last committed, with the area's part replaced. Fenced like
/// every state write (see the module docs).
#[async_trait]
pub trait Checkpoint: Send {
    /// Saves `area` as the session's area state, offset and hash unchanged.
    async fn save(&mut self, area: &AreaState) -> Result<()>;
}

/// Storage for the bytes of in-progress uploads. See the module docs.
#[async_trait]
pub trait UploadArea: Send + Sync + Debug + 'static {
    /// Appends `body` at `offset` (the session's committed length), feeding
    /// every byte to `hasher` and updating `state`. Returns the number of
    /// bytes written and the updated hasher. Anything stored past `offset`
    /// by an earlier, failed request is dropped. Resources that must be
    /// freed even if this request fails (an S3 multipart upload id) are
    /// recorded with `checkpoint` before they are used.
    async fn write(
        &self,
        id: &Uuid,
        offset: u64,
        state: &mut AreaState,
        body: BodyStream,
        hasher: DigestHasher,
        checkpoint: &mut dyn Checkpoint,
    ) -> Result<(u64, DigestHasher)>;

    /// Streams the first `len` bytes back (used only to re-hash with another
    /// algorithm than the session's). May record in `state` what a later
    /// [`UploadArea::publish`] of the same request reuses.
    async fn read(
        &self,
        id: &Uuid,
        len: u64,
        state: &mut AreaState,
    ) -> Result<BoxStream<'static, Result<Bytes>>>;

    /// Makes the first `len` bytes the object at `dest`, atomically.
    async fn publish(&self, id: &Uuid, len: u64, state: &mut AreaState, dest: &Path) -> Result<()>;

    /// Removes the session's bytes, and frees what `state` names (e.g.
    /// aborts its multipart upload); `state` is `None` when the session's
    /// state is already gone. Missing data is not an error.
    async fn remove(&self, id: &Uuid, state: Option<&AreaState>) -> Result<()>;

    /// Called once a state with `after` replaced one with `before`: frees
    /// what only `before` named. Best effort; leftovers go with the session.
    async fn committed(&self, _id: &Uuid, _before: &AreaState, _after: &AreaState) -> Result<()> {
        Ok(())
    }

    /// The cross-process part of a session lock, waited for until
    /// `deadline` (then [`crate::StorageError::Busy`]); the engine holds the
    /// session's in-process mutex around it. Every operation that changes a
    /// session runs under it, so concurrent requests on one session apply
    /// one after the other (the later one then sees the new offset, and a
    /// stale `Content-Range` gets 416) and hash state and bytes never
    /// diverge. Must be cancel-safe and must not block a thread.
    async fn lock(&self, id: &Uuid, deadline: Instant) -> Result<SessionLock>;

    /// Exclusive use of the object `path` across every process sharing the
    /// store, waited for until `deadline` (then
    /// [`crate::StorageError::Busy`]): the same mechanism as
    /// [`UploadArea::lock`], for a lock that belongs to no session (the
    /// garbage collector's). The default excludes nobody: right only for a
    /// store no other process can see.
    async fn lock_object(&self, _path: &Path, _deadline: Instant) -> Result<SessionLock> {
        Ok(SessionLock::new(()))
    }
}

/// Deletes `path`, treating "already gone" as success.
pub(crate) async fn delete_if_exists(store: &dyn ObjectStore, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Err(e) if !is_not_found(&e) => Err(e.into()),
        _ => Ok(()),
    }
}
