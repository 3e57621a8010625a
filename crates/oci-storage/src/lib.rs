//! The registry's storage engine, over [`object_store`].
//!
//! [`Storage`] implements everything the distribution API needs (blobs,
//! upload sessions, manifests, tags, referrers, the catalog) on top of any
//! object store, and knows nothing of HTTP. Open one with [`Storage::open`]:
//!
//! | URL | backend |
//! |---|---|
//! | `memory://` | in process, lost on exit (tests) |
//! | `file:///abs/path` or a plain path | a directory on local disk |
//! | `s3://bucket/prefix` | S3 or a compatible store (`AWS_*` variables or [`Storage::open_with`] options) |
//!
//! # Object layout
//!
//! All state is in the store, so the tree can be backed up with any file or
//! object copy tool and inspected by hand:
//!
//! ```text
//! blobs/<alg>/<hex[0..2]>/<hex>/data              content, shared by all repositories
//!                                                 (layers, configs and manifests alike)
//! repositories/<name>/_layers/<alg>/<hex>         link: <name> holds this blob (text: digest)
//! repositories/<name>/_manifests/<alg>/<hex>      link: <name> holds this manifest
//!                                                 (JSON: mediaType, size, subject;
//!                                                 fetched: true for a pull-through
//!                                                 cache's copy)
//! repositories/<name>/_tags/<tag>                 text: the digest the tag points to
//!                                                 (S3, memory: empty once deleted by
//!                                                 digest, a tombstone; see `tags`)
//! repositories/<name>/_tagged/<alg>/<hex>/<tag>   reverse tag index: <tag> was pointed
//!                                                 at this digest (written before the
//!                                                 tag; may be stale, never missing).
//!                                                 Text: the digest, then on a second
//!                                                 line when that push happened (Unix
//!                                                 ms; entries written before lack it;
//!                                                 for a cached tag, when upstream last
//!                                                 confirmed it)
//! repositories/<name>/_tagged/_complete           marker: every tag has its index entry
//!                                                 (older stores lack it until their first
//!                                                 delete by digest builds the index)
//! repositories/<name>/_referrers/<alg>/<subject-hex>/<alg>-<hex>
//!                                                 JSON descriptor of a manifest whose
//!                                                 subject is <alg>:<subject-hex>
//! _catalog/<name>/_repository                     marker: the repository exists
//! _uploads/<uuid>/state.json                      upload session: repository, offset,
//!                                                 saved hash state
//! _uploads/<uuid>/data | parts/<offset>           bytes received so far
//!   | tail-<nonce> | blob
//! _uploads/<uuid>/lock                            session lock: flock'ed file, or
//!                                                 S3 lease (owner token, If-Match)
//! _sweeps/uploads/slots/<slot>                    marker: a replica swept upload
//!                                                 sessions in this time slot
//! _sweeps/uploads/count                           text: open sessions it counted
//! _gc/lock                                        the collector's lock (flock'ed file, or
//!                                                 S3 lease)
//! _gc/state                                       JSON: generation and phase of the
//!                                                 collection (read by manifest pushes)
//! _gc/runs/<generation>/candidates/<alg>-<xx>     a running collection's sweep candidates
//! _gc/runs/<generation>/journal/<uuid>            references of manifests pushed while
//!                                                 it marks (see `gc`)
//! _keys/token-signing-key.pem                     the built-in token issuer's key, when
//!                                                 the configuration names none
//! _keys/ui-session-key                            the web UI's session signing key
//! _usage/latest.json                              the last recorded storage usage
//!                                                 (`oci-registry du`), for the web UI
//! _events/<queue>/pending/<key>                   an event notification waiting for
//!                                                 delivery to the endpoint <queue> (JSON;
//!                                                 keys sort in order, see `outbox`)
//! _events/<queue>/dead/<key>                      JSON: an event given up on after its
//!                                                 attempts, and the last error
//! _events/<queue>/failures                        JSON: failed attempts at the queue's head
//! _events/<queue>/lock                            the delivering replica's lock (flock'ed
//!                                                 file, or S3 lease)
//! ```
//!
//! # Guarantees
//!
//! - Every object is written whole or not at all (staged, then renamed; on
//!   S3, one `PUT`).
//! - On the filesystem, with [`StorageOptions::fsync`] (the default), an
//!   acknowledged blob, manifest, tag or link survives power loss: every
//!   file and the directory entry naming it are `fsync`ed before the call
//!   returns (blob data before its rename into `blobs/`, the directory
//!   after). A blob appears under `blobs/` only after its digest was
//!   verified, so a crash at any moment leaves no partial blob, manifest,
//!   tag or link visible; at worst an unreferenced object that garbage
//!   collection can remove.
//! - Writes are ordered so readers never see dangling references: blob data
//!   before links, manifest data before its link, the link before tags and
//!   referrers that point to it.
//! - Concurrent pushes of the same blob or tag both succeed: content is
//!   addressed by digest, and the last tag write wins whole.
//! - Upload sessions live in the store, not in memory: a restart loses no
//!   resumable upload.
//! - Memory does not grow with blob size: bodies stream in and out.

mod backend;
mod blobs;
mod cache;
mod catalog;
mod concurrent;
mod error;
mod fsck;
mod gc;
mod immutable;
mod keys;
mod layout;
mod local;
mod manifests;
mod options;
pub mod outbox;
mod overview;
mod read_ahead;
mod read_cache;
#[cfg(test)]
mod recording_store;
pub mod redirect;
mod referrers;
mod retention;
mod sweeper;
mod tags;
pub mod telemetry;
pub mod upload_area;
mod uploads;
mod usage;

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::path::Path;

pub use blobs::{BlobMeta, BlobRead, MountOutcome};
pub use cache::TagRecord;
pub use catalog::DEFAULT_CATALOG_PAGE;
pub use error::{Result, StorageError};
pub use fsck::{Finding, FsckOptions, FsckReport};
pub use gc::{
    Collector, DEFAULT_GRACE, GcOptions, GcReport, GcSchedule, GcState, Phase as GcPhase,
};
pub use immutable::ImmutableRule;
pub use keys::SharedKey;
pub use manifests::{ManifestMeta, StoredManifest};
pub use options::StorageOptions;
pub use outbox::{Outbox, OutboxLock, QueueName};
pub use overview::{RepositoryRecord, TagTime, UsageRecord};
pub use read_cache::CacheOptions;
pub use redirect::{BlobRedirect, PresignedUrl};
pub use referrers::DEFAULT_REFERRERS_PAGE;
pub use retention::RetentionRule;
pub use sweeper::{SweepReport, Sweeper};
pub use tags::DEFAULT_TAGS_PAGE;
pub use upload_area::{AreaState, BodyStream, Checkpoint, SessionLock, UploadArea};
pub use uploads::{UploadId, UploadStatus};
pub use usage::{RepositoryUsage, Usage};

use error::is_not_found;

/// The object [`Storage::probe`] reads.
const PROBE_KEY: &str = "_probe";

/// The storage engine. Cheap to clone; all clones share the backend.
#[derive(Clone, Debug)]
pub struct Storage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ObjectStore>,
    uploads: Arc<dyn UploadArea>,
    description: String,
    local: Option<local::LocalFiles>,
    /// Presigns blob URLs, on the clouds (see [`redirect`]).
    signer: Option<redirect::UrlSigner>,
    options: StorageOptions,
    /// Upload sessions' in-process mutexes, taken before the area's lock.
    session_locks: upload_area::ProcessLocks,
    /// The store decides `If-Match` on writes (not the filesystem): upload
    /// state is written conditionally on the version read.
    fenced_state: bool,
    /// The estimate of open upload sessions behind `max_uploads`.
    open_uploads: sweeper::OpenUploads,
    /// Hot small objects in memory (`None`: off).
    cache: Option<read_cache::ReadCache>,
    /// Taken before the store's collector lock: one collection per process.
    collector: Arc<tokio::sync::Mutex<()>>,
}

impl Storage {
    /// Opens the backend named by `url` (see the crate docs for the forms)
    /// with the default [`StorageOptions`].
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with_options(url, StorageOptions::default()).await
    }

    /// Opens `url` with backend options: object_store configuration keys
    /// such as `aws_endpoint` or `aws_allow_http` (S3 only), which override
    /// the `AWS_*` environment variables.
    pub async fn open_with(url: &str, backend: &[(String, String)]) -> Result<Self> {
        Self::open_with_options(url, StorageOptions::with_backend(backend)).await
    }

    /// Opens `url` with every option given.
    pub async fn open_with_options(url: &str, options: StorageOptions) -> Result<Self> {
        let backend = backend::open(url, &options)?;
        Ok(Self::from_backend(backend, options))
    }

    fn from_backend(b: backend::Backend, options: StorageOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: b.store,
                uploads: b.uploads,
                description: b.description,
                fenced_state: b.local.is_none(),
                local: b.local,
                cache: read_cache::ReadCache::new(&options.cache),
                signer: b.signer,
                options,
                session_locks: upload_area::ProcessLocks::default(),
                open_uploads: sweeper::OpenUploads::default(),
                collector: Arc::default(),
            }),
        }
    }

    /// The options this engine was opened with.
    pub fn options(&self) -> &StorageOptions {
        &self.inner.options
    }

    /// A human-readable name of the backend, e.g. `file:///srv/registry`.
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// Checks that the backend answers: one small read (the size of the
    /// object `_probe`, which need not exist; absent is a success). For
    /// readiness probes; bound its time with a timeout, since object store
    /// clients retry unreachable stores for a long while.
    pub async fn probe(&self) -> Result<()> {
        self.exists(&Path::from(PROBE_KEY)).await.map(|_| ())
    }

    fn store(&self) -> &dyn ObjectStore {
        self.inner.store.as_ref()
    }

    /// Direct file access, on the filesystem backend.
    fn local(&self) -> Option<&local::LocalFiles> {
        self.inner.local.as_ref()
    }

    /// Reads a small object whole; `None` if it does not exist.
    async fn read_small(&self, path: &Path) -> Result<Option<Bytes>> {
        if let Some(local) = self.local() {
            return local.read(path);
        }
        match self.store().get(path).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a small object whole with the store's date of it; `None` if
    /// it does not exist.
    async fn read_small_dated(
        &self,
        path: &Path,
    ) -> Result<Option<(Bytes, std::time::SystemTime)>> {
        if let Some(local) = self.local() {
            return local.read_dated(path);
        }
        match self.store().get(path).await {
            Ok(r) => {
                let date = r.meta.last_modified.into();
                Ok(Some((r.bytes().await?, date)))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object below `dir` with its size and the store's date of it:
    /// one listing (on the filesystem, a directory walk).
    async fn list_dated(&self, dir: &Path) -> Result<Vec<(Path, u64, std::time::SystemTime)>> {
        if let Some(local) = self.local() {
            return Ok(local
                .walk(dir, true)
                .await?
                .into_iter()
                .filter_map(|f| f.meta.map(|(size, date)| (f.key, size, date)))
                .collect());
        }
        let mut listing = self.store().list(Some(dir));
        let mut found = Vec::new();
        while let Some(meta) = listing.try_next().await? {
            found.push((meta.location, meta.size, meta.last_modified.into()));
        }
        Ok(found)
    }

    /// The keys of every object below `dir` (on the filesystem, a
    /// directory walk without a `stat` per file).
    async fn list_keys(&self, dir: &Path) -> Result<Vec<Path>> {
        if let Some(local) = self.local() {
            return Ok(local
                .walk(dir, false)
                .await?
                .into_iter()
                .map(|f| f.key)
                .collect());
        }
        Ok(self
            .store()
            .list(Some(dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?)
    }

    /// Deletes objects; missing ones are no error. Object stores get bulk
    /// deletes (S3 `DeleteObjects`, 1,000 keys a request); the filesystem
    /// unlinks a batch per blocking task and, with `prune`, removes each
    /// emptied directory (a blob's `<hex>/`).
    async fn delete_objects(&self, paths: Vec<Path>, prune: bool) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        for path in &paths {
            self.forget_cached(path);
        }
        if let Some(local) = self.local() {
            return local.remove_files(paths, prune).await;
        }
        let keys = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut deleted = self.store().delete_stream(keys);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// True if the object exists.
    async fn exists(&self, path: &Path) -> Result<bool> {
        if let Some(local) = self.local() {
            return Ok(local.size(path)?.is_some());
        }
        match self.store().head(path).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Names of the objects directly in `dir`, sorted, that sort after
    /// `after` (all if `None`), at most `limit` of them. Staging files of
    /// writes in progress (`<name>#<digits>`) and empty objects (the
    /// tombstones [`Self::remove_small_if`] leaves) are not listed.
    ///
    /// S3 and memory list from `after` (S3 `start-after`) and read only as
    /// many listing pages as the result needs. The filesystem reads the
    /// directory's entries once and keeps large listings sorted in memory
    /// while the directory is unchanged (see `local`), so a page costs a
    /// `stat` and a binary search.
    async fn list_names_after(
        &self,
        dir: &Path,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        if let Some(local) = self.local() {
            let sorted = local.file_names(dir).await?;
            let start = after.map_or(0, |after| sorted.partition_point(|n| n.as_str() <= after));
            return Ok(sorted[start..]
                .iter()
                .filter(|n| !local::is_staging_name(n))
                .take(limit)
                .cloned()
                .collect());
        }
        let prefix = format!("{dir}/");
        let mut listing = match after {
            Some(after) => self
                .store()
                .list_with_offset(Some(dir), &Path::from(format!("{prefix}{after}"))),
            None => self.store().list(Some(dir)),
        };
        let mut names = Vec::new();
        while names.len() < limit
            && let Some(meta) = listing.try_next().await?
        {
            let name = meta.location.as_ref().strip_prefix(prefix.as_str());
            if let Some(name) = name
                && meta.size > 0
                && !name.contains('/')
                && after.is_none_or(|after| name > after)
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// Removes the small object at `path` only if, at that moment, it holds
    /// `expected` (surrounding whitespace ignored): a compare-and-delete.
    /// Returns true if it was removed.
    ///
    /// - Filesystem: the object is renamed to a staging name (atomic: the
    ///   version there at that instant is taken), compared, and, if it is
    ///   not the expected one, linked back unless a newer write has taken
    ///   its place meanwhile. No write is lost; for the microseconds in
    ///   between, a reader may find the object absent.
    /// - Object stores: object_store has no conditional delete, so the
    ///   object is replaced by an *empty* one (a tombstone) with a
    ///   conditional update on the version read (`If-Match` on S3): a write
    ///   in between makes it fail, and the comparison is redone. Readers
    ///   treat an empty object as absent and [`Self::list_names_after`] skips it;
    ///   the next write of the object replaces it.
    async fn remove_small_if(&self, path: &Path, expected: &[u8]) -> Result<bool> {
        /// Rounds before giving up on an object that keeps changing (it
        /// is then left as it is).
        const ATTEMPTS: usize = 8;
        let _forget = Forget(self, path);
        if let Some(local) = self.local() {
            return local
                .remove_if(path, Bytes::copy_from_slice(expected))
                .await;
        }
        for _ in 0..ATTEMPTS {
            let got = match self.store().get(path).await {
                Ok(got) => got,
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            let version = object_store::UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            if got.bytes().await?.trim_ascii() != expected {
                return Ok(false);
            }
            let opts = object_store::PutOptions::from(object_store::PutMode::Update(version));
            let tombstone = object_store::PutPayload::default();
            match self.store().put_opts(path, tombstone, opts).await {
                Ok(_) => return Ok(true),
                Err(object_store::Error::Precondition { .. }) => continue,
                // Without conditional writes, the best is a plain delete.
                Err(object_store::Error::NotImplemented { .. }) => {
                    upload_area::delete_if_exists(self.store(), path).await?;
                    return Ok(true);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// The keys of the objects below `dir`, relative to it
    /// (`a/b/_repository`), that `select` keeps, in lexical (byte) order,
    /// starting after `after` (a relative key; `None`: from the first).
    /// `select` sees each key in turn and answers whether to keep it:
    /// `Continue(keep)` to go on, `Break(keep)` to stop there.
    ///
    /// S3 and memory list from `after` (S3 `start-after`) and stop reading
    /// pages when told; the filesystem walks its directories in key order,
    /// skipping subtrees that sort before `after` without reading them.
    /// Staging files of writes in progress are seen too (callers parse
    /// keys and skip those).
    async fn scan_keys<F>(
        &self,
        dir: &Path,
        after: Option<String>,
        mut select: F,
    ) -> Result<Vec<String>>
    where
        F: FnMut(&str) -> ControlFlow<bool, bool> + Send + 'static,
    {
        if let Some(local) = self.local() {
            return local.scan_keys(dir, after, select).await;
        }
        let prefix = format!("{dir}/");
        let mut listing = match &after {
            Some(after) => self
                .store()
                .list_with_offset(Some(dir), &Path::from(format!("{prefix}{after}"))),
            None => self.store().list(Some(dir)),
        };
        let mut kept = Vec::new();
        while let Some(meta) = listing.try_next().await? {
            let Some(rel) = meta.location.as_ref().strip_prefix(prefix.as_str()) else {
                continue;
            };
            let answer = select(rel);
            let (ControlFlow::Continue(keep) | ControlFlow::Break(keep)) = answer;
            if keep {
                kept.push(rel.to_owned());
            }
            if answer.is_break() {
                break;
            }
        }
        Ok(kept)
    }

    /// Deletes a small object (a tag or a link); missing is no error.
    async fn delete_small(&self, path: &Path) -> Result<()> {
        let _forget = Forget(self, path);
        upload_area::delete_if_exists(self.store(), path).await
    }

    /// Writes a small object whole, replacing any previous one atomically;
    /// on the filesystem, durably (see [`StorageOptions::fsync`]).
    async fn write_small(&self, path: &Path, bytes: impl Into<Bytes>) -> Result<()> {
        let _forget = Forget(self, path);
        if let Some(local) = self.local() {
            local
                .write(path, bytes.into(), local::WriteMode::Overwrite)
                .await?;
            return Ok(());
        }
        self.store()
            .put(path, object_store::PutPayload::from(bytes.into()))
            .await?;
        Ok(())
    }

    /// Writes a small object only if none exists at `path` (one atomic
    /// conditional write). Returns false if one existed.
    async fn create_small(&self, path: &Path, bytes: impl Into<Bytes>) -> Result<bool> {
        let _forget = Forget(self, path);
        if let Some(local) = self.local() {
            return local
                .write(path, bytes.into(), local::WriteMode::Create)
                .await;
        }
        let payload = object_store::PutPayload::from(bytes.into());
        let opts = object_store::PutOptions::from(object_store::PutMode::Create);
        match self.store().put_opts(path, payload.clone(), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            // Backends without conditional create: check, then put.
            Err(object_store::Error::NotImplemented { .. }) => {
                if self.exists(path).await? {
                    return Ok(false);
                }
                self.store().put(path, payload).await?;
                Ok(true)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Forgets the cached copy of an object this process changes when
/// dropped: after the change, whether it succeeded, failed or was
/// cancelled half-way.
struct Forget<'a>(&'a Storage, &'a Path);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget_cached(self.1);
    }
}
