//! Direct access to the filesystem backend's files, for the hot read paths.
//!
//! object_store's `LocalFileSystem` runs every operation on the blocking
//! thread pool. For the small objects read on every request (tags, links,
//! manifests, existence checks) the two thread hand-offs cost more than the
//! read itself: `cargo xtask bench` showed them as most of the server's time
//! for a manifest GET. So, on the filesystem backend only:
//!
//! - small objects are read and stat'ed on the calling task: a page-cache
//!   hit takes microseconds, as a blocking `read(2)` in any HTTP server does;
//! - listings of the tags and the catalog read directory entries (names and
//!   types, no `stat` per entry) in one blocking task; large tag listings
//!   are kept in memory, sorted, while their directory's modification time
//!   stays the same (see [`LocalFiles::file_names`]), so a page of tags is
//!   a binary search; the catalog is walked in key order from the page's
//!   start, each large directory on the way (`_catalog/<namespace>/` with
//!   thousands of repositories) kept the same way and entered by binary
//!   search (see [`LocalFiles::scan_keys`]);
//! - blob data is streamed in large reads with one read ahead, each read
//!   into the buffer that is sent (one copy from the page cache).
//!
//! Small writes (tags, links, manifests, upload state, markers) go through
//! [`LocalFiles::write`] too, because durability needs what object_store's
//! `put` does not do: the new file is written to a staging name in the same
//! directory, `fsync`ed, renamed over the object, and the directory is
//! `fsync`ed so the rename itself survives power loss; directories created
//! on the way are made durable in their parents. With
//! [`crate::StorageOptions::fsync`] off the order is the same, without the
//! `fsync`s. The staging name is `<name>#<digits>`, the form object_store
//! and every listing here skip, so a crash mid-write leaves at worst a
//! staging file, never a partial object.

use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::{ControlFlow, Range};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use oci_types::ByteRange;

use crate::error::{Result, StorageError};
use crate::read_cache::FileVersion;
use crate::telemetry::{Op, Outcome, Timer};

/// Size of each read when streaming a blob file.
const BLOB_READ_CHUNK: u64 = 2 << 20;

/// An opened blob: its size, the range being read (`None`: all of it) and
/// the stream of those bytes.
pub(crate) type Streamed = (u64, Option<Range<u64>>, BoxStream<'static, Result<Bytes>>);

/// Directories with fewer entries are listed afresh every time.
const DIR_CACHE_MIN_NAMES: usize = 1024;
/// Listings kept at most (one per directory): each weighs at least
/// [`DIR_CACHE_BYTES`] / this.
const DIR_CACHE_ENTRIES: usize = 64;
/// Memory all kept listings may take together, as [`listing_bytes`]
/// counts it (a listing of 100,000 tags is about 4 MiB): a listing that
/// would not fit even alone is not kept.
const DIR_CACHE_BYTES: usize = 32 << 20;
/// A listing is kept only if its directory was last modified at least this
/// long before it was read: a later change then gets a later timestamp even
/// on filesystems whose timestamps are coarse.
const DIR_CACHE_SETTLED: Duration = Duration::from_secs(2);

/// Listings kept in memory, by directory and what was listed, in the
/// weight-bounded cache the read cache uses too: at most
/// [`DIR_CACHE_BYTES`] together and [`DIR_CACHE_ENTRIES`] in number.
type ListingCache = quick_cache::sync::Cache<(PathBuf, Listed), CachedNames, ListingWeight>;

/// A kept listing's weight: what [`listing_bytes`] counted when it was
/// read (stored, as the cache asks for it on each eviction and removal),
/// and at least a [`DIR_CACHE_ENTRIES`]th of the budget, which bounds
/// their number.
#[derive(Debug, Clone, Copy)]
struct ListingWeight;

impl quick_cache::Weighter<(PathBuf, Listed), CachedNames> for ListingWeight {
    fn weight(&self, _key: &(PathBuf, Listed), kept: &CachedNames) -> u64 {
        kept.bytes.max(DIR_CACHE_BYTES / DIR_CACHE_ENTRIES) as u64
    }
}

/// An empty listing cache. One shard, so that a single listing may take
/// nearly the whole budget (a sharded cache splits it, and would refuse
/// a 100,000-name listing on a many-core machine).
fn listing_cache() -> ListingCache {
    let options = quick_cache::OptionsBuilder::new()
        .estimated_items_capacity(DIR_CACHE_ENTRIES)
        .weight_capacity(DIR_CACHE_BYTES as u64)
        .shards(1)
        .build()
        .expect("valid listing cache options");
    ListingCache::with_options(
        options,
        ListingWeight,
        quick_cache::DefaultHashBuilder::default(),
        Default::default(),
    )
}

/// What a kept listing of `names` in `dir` takes in memory: the names'
/// bytes and their `String`s, the `Vec`, the key and the map's entry.
fn listing_bytes(dir: &std::path::Path, names: &[String]) -> usize {
    let strings: usize = names
        .iter()
        .map(|n| n.len() + std::mem::size_of::<String>())
        .sum();
    strings + dir.as_os_str().len() + 128
}

/// What a kept listing holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Listed {
    /// The regular files' names ([`LocalFiles::file_names`]).
    Files,
    /// Files and directories, as [`scan_tree`] keys them.
    Entries,
}

/// A directory listing and the modification time it was read at.
#[derive(Debug, Clone)]
struct CachedNames {
    modified: SystemTime,
    names: Arc<Vec<String>>,
    /// What [`listing_bytes`] counted for it.
    bytes: usize,
}

/// The filesystem backend's root, for direct access.
#[derive(Debug, Clone)]
pub(crate) struct LocalFiles {
    store: Arc<LocalFileSystem>,
    /// The directory the store's keys are relative to (its prefix).
    root: PathBuf,
    dir_cache: Arc<ListingCache>,
    /// `fsync` files and directories before a write returns.
    fsync: bool,
}

/// What a write does when the object already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// Replace it atomically.
    Overwrite,
    /// Leave it and report that nothing was written.
    Create,
}

/// True for errors that mean "no such object" on a local path: missing, or
/// a path component that is a file.
fn is_absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// Files one blocking task of [`LocalFiles::remove_files`] unlinks.
const REMOVE_CHUNK: usize = 32;

/// A file [`LocalFiles::walk`] found.
pub(crate) struct Found {
    /// Its key.
    pub(crate) key: Path,
    /// Its size and modification time, when asked for.
    pub(crate) meta: Option<(u64, SystemTime)>,
}

impl LocalFiles {
    /// Direct access to the files of `store`, whose prefix is `root`.
    pub(crate) fn new(store: Arc<LocalFileSystem>, root: PathBuf, fsync: bool) -> Self {
        Self {
            store,
            root,
            dir_cache: Arc::new(listing_cache()),
            fsync,
        }
    }

    /// Writes a small object whole (see the module docs): staging file,
    /// `fsync`, rename (or, for [`WriteMode::Create`], a link that fails if
    /// the object exists), `fsync` of the directory. Returns false only when
    /// `Create` found the object already there. On error nothing is left
    /// but the previous object, if any.
    pub(crate) async fn write(&self, path: &Path, bytes: Bytes, mode: WriteMode) -> Result<bool> {
        let timer = Timer::start(Op::Put);
        let target = self.path(path)?;
        let fsync = self.fsync;
        let result = blocking(move || Ok(write_file(&target, &bytes, mode, fsync)?)).await;
        timer.done(match result {
            Ok(false) => Outcome::Conflict,
            ref other => Outcome::of(other),
        });
        result
    }

    /// The file of `path`. A key without percent-escapes is the same
    /// relative path under the root (object_store keys are `/`-separated,
    /// non-empty parts; `.` and `..` parts arrive escaped), which spares
    /// object_store's URL round trip on every read.
    fn path(&self, path: &Path) -> Result<PathBuf> {
        let key = path.as_ref();
        if !key.is_empty() && !key.contains('%') {
            return Ok(self.root.join(key));
        }
        Ok(self.store.path_to_filesystem(path)?)
    }

    /// Removes the empty directories at and below `dir`, deepest first
    /// (best effort: a directory a concurrent write fills again stays).
    pub(crate) fn remove_empty_dirs(&self, dir: &Path) {
        fn walk(dir: &std::path::Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&entry.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        if let Ok(dir) = self.path(dir) {
            walk(&dir);
        }
    }

    /// The whole object, read on the calling task; `None` if absent.
    pub(crate) fn read(&self, path: &Path) -> Result<Option<Bytes>> {
        Ok(self.read_versioned(path)?.map(|(bytes, _)| bytes))
    }

    /// The whole object and its modification time; `None` if absent.
    pub(crate) fn read_dated(&self, path: &Path) -> Result<Option<(Bytes, SystemTime)>> {
        let file = self.path(path)?;
        let date = match std::fs::metadata(&file) {
            Ok(m) => m.modified()?,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(StorageError::Io(e)),
        };
        Ok(self.read(path)?.map(|bytes| (bytes, date)))
    }

    /// The object's version for the read cache (one `stat` on the calling
    /// task); `None` if absent.
    pub(crate) fn version(&self, path: &Path) -> Result<Option<FileVersion>> {
        let timer = Timer::start(Op::Head);
        let result = match std::fs::metadata(self.path(path)?) {
            Ok(m) if m.is_file() => Ok(Some(FileVersion::of(&m))),
            Ok(_) => Ok(None),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(StorageError::Io(e)),
        };
        timer.done(Outcome::of_option(&result));
        result
    }

    /// The whole object and the version read (its `fstat` after opening,
    /// so the bytes are that version's); `None` if absent.
    pub(crate) fn read_versioned(&self, path: &Path) -> Result<Option<(Bytes, FileVersion)>> {
        let file = self.path(path)?;
        let timer = Timer::start(Op::Get);
        let read = || -> std::io::Result<(Bytes, FileVersion)> {
            let mut file = std::fs::File::open(&file)?;
            let meta = file.metadata()?;
            let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            file.read_to_end(&mut bytes)?;
            Ok((Bytes::from(bytes), FileVersion::of(&meta)))
        };
        let result = match read() {
            Ok(read) => Ok(Some(read)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(StorageError::Io(e)),
        };
        timer.done(Outcome::of_option(&result));
        result
    }

    /// The object's size, stat'ed on the calling task; `None` if absent.
    pub(crate) fn size(&self, path: &Path) -> Result<Option<u64>> {
        let timer = Timer::start(Op::Head);
        let result = match std::fs::metadata(self.path(path)?) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(StorageError::Io(e)),
        };
        timer.done(Outcome::of_option(&result));
        result
    }

    /// Every file below `dir` (staging files of writes in progress left
    /// out), with its size and modification time when `dated`: one
    /// directory walk, one `stat` per file only when dated. What object
    /// stores answer with a listing.
    pub(crate) async fn walk(&self, dir: &Path, dated: bool) -> Result<Vec<Found>> {
        let timer = Timer::start(Op::List);
        let root = self.path(dir)?;
        let prefix = dir.to_string();
        let result = blocking(move || {
            let mut found = Vec::new();
            let mut stack = vec![(root, prefix)];
            while let Some((dir, key)) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if is_absent(&e) => continue,
                    Err(e) => return Err(StorageError::Io(e)),
                };
                for entry in entries {
                    let entry = entry?;
                    let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    let child = format!("{key}/{name}");
                    let kind = entry.file_type()?;
                    if kind.is_dir() {
                        stack.push((entry.path(), child));
                    } else if kind.is_file() && !is_staging_name(&name) {
                        let Ok(key) = Path::parse(&child) else {
                            continue; // an escaped name: never one of ours
                        };
                        let meta = if dated {
                            match entry.metadata() {
                                Ok(m) => Some((m.len(), m.modified()?)),
                                Err(e) if is_absent(&e) => continue,
                                Err(e) => return Err(StorageError::Io(e)),
                            }
                        } else {
                            None
                        };
                        found.push(Found { key, meta });
                    }
                }
            }
            Ok(found)
        })
        .await;
        timer.done(Outcome::of(&result));
        result
    }

    /// Removes files, [`REMOVE_CHUNK`] per blocking task, the tasks in
    /// parallel (an unlink waits on the filesystem's journal: spreading
    /// them over threads is what makes thousands fast); missing ones are
    /// no error. With `prune`, each file's directory goes too once empty.
    pub(crate) async fn remove_files(&self, paths: Vec<Path>, prune: bool) -> Result<()> {
        let files = paths
            .iter()
            .map(|p| self.path(p))
            .collect::<Result<Vec<_>>>()?;
        let timer = Timer::start(Op::Delete);
        let tasks = files.chunks(REMOVE_CHUNK).map(|chunk| {
            let chunk = chunk.to_vec();
            blocking(move || {
                for file in chunk {
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if is_absent(&e) => {}
                        Err(e) => return Err(StorageError::Io(e)),
                    }
                    if prune && let Some(dir) = file.parent() {
                        let _ = std::fs::remove_dir(dir);
                    }
                }
                Ok(())
            })
        });
        let result = futures::future::try_join_all(tasks).await.map(drop);
        timer.done(Outcome::of(&result));
        result
    }

    /// Names of the files directly in `dir`, sorted (staging files of
    /// writes in progress included: see [`is_staging_name`]).
    ///
    /// A listing of at least [`DIR_CACHE_MIN_NAMES`] names is kept in memory
    /// and served again, after one `stat`, while the directory's
    /// modification time is unchanged: creating, renaming into or removing
    /// an entry changes it (POSIX), so a kept listing is never stale on a
    /// local filesystem. Listing 10,000 tags then costs one `stat` instead
    /// of reading 10,000 directory entries.
    pub(crate) async fn file_names(&self, dir: &Path) -> Result<Arc<Vec<String>>> {
        let timer = Timer::start(Op::List);
        let dir = self.path(dir)?;
        let cache = Arc::clone(&self.dir_cache);
        let result = blocking(move || cached_listing(&cache, &dir, Listed::Files)).await;
        timer.done(Outcome::of(&result));
        result
    }

    /// Removes the object only if it holds `expected` (surrounding
    /// whitespace ignored) at that moment; true if removed. A rename to a
    /// staging name takes the current version atomically; a version that
    /// does not match is linked back, unless a newer write has replaced it
    /// meanwhile, so no write is ever lost (a reader may find the object
    /// absent for the few microseconds in between).
    pub(crate) async fn remove_if(&self, path: &Path, expected: Bytes) -> Result<bool> {
        let timer = Timer::start(Op::Delete);
        let target = self.path(path)?;
        let fsync = self.fsync;
        let result = blocking(move || Ok(remove_file_if(&target, &expected, fsync)?)).await;
        timer.done(Outcome::of(&result));
        result
    }

    /// See `Storage::scan_keys`: a depth-first walk of `dir` visiting each
    /// directory's entries sorted as their keys sort (a directory `d` as
    /// `d/`, so the keys come out in the order an object store lists
    /// them). A subtree whose keys all sort at or before `after` is
    /// skipped without being read; each directory read is one pass over
    /// its entries (names and types, no `stat`, no file read).
    pub(crate) async fn scan_keys<F>(
        &self,
        dir: &Path,
        after: Option<String>,
        select: F,
    ) -> Result<Vec<String>>
    where
        F: FnMut(&str) -> ControlFlow<bool, bool> + Send + 'static,
    {
        let timer = Timer::start(Op::List);
        let root = self.path(dir)?;
        let cache = Arc::clone(&self.dir_cache);
        let result = blocking(move || scan_tree(&cache, &root, after.as_deref(), select)).await;
        timer.done(Outcome::of(&result));
        result
    }

    /// Opens a blob file, resolves `range` (if any) against its size, and
    /// returns the size, the resolved range and a stream of it; `None` if
    /// absent. One open and one `fstat`: the size comes from the open file.
    pub(crate) async fn stream(
        &self,
        path: &Path,
        range: Option<ByteRange>,
    ) -> Result<Option<Streamed>> {
        let timer = Timer::start(Op::Get);
        let path = self.path(path)?;
        let opened = blocking(move || match std::fs::File::open(&path) {
            Ok(mut file) => {
                let size = file.metadata()?.len();
                let resolved = match range {
                    None => None,
                    Some(r) => Some(
                        r.resolve(size)
                            .ok_or(StorageError::RangeNotSatisfiable { size })?,
                    ),
                };
                let start = resolved.as_ref().map_or(0, |r| r.start);
                file.seek(SeekFrom::Start(start))?;
                Ok(Some((file, size, resolved)))
            }
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(StorageError::Io(e)),
        })
        .await;
        timer.done(Outcome::of_option(&opened));
        Ok(opened?.map(|(file, size, range)| {
            let len = range.as_ref().map_or(size, |r| r.end - r.start);
            let stream = read_ahead(file, len);
            (size, range, stream)
        }))
    }
}

/// See [`LocalFiles::remove_if`].
pub(crate) fn remove_file_if(
    target: &std::path::Path,
    expected: &[u8],
    fsync: bool,
) -> std::io::Result<bool> {
    let staging = staging_path(target);
    match std::fs::rename(target, &staging) {
        Ok(()) => {}
        Err(e) if is_absent(&e) => return Ok(false),
        Err(e) => return Err(e),
    }
    // From here the version that was current at the rename is ours alone.
    let held = std::fs::read(&staging);
    let matches = matches!(&held, Ok(bytes) if bytes.trim_ascii() == expected.trim_ascii());
    if !matches {
        // Put it back, unless a newer write took its place meanwhile (that
        // one is later, so it wins, as it would have anyway).
        match std::fs::hard_link(&staging, target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            // Linking is not possible: restore by rename rather than lose it.
            Err(_) => {
                std::fs::rename(&staging, target)?;
                held?;
                return Ok(false);
            }
        }
    }
    std::fs::remove_file(&staging)?;
    if fsync && let Some(dir) = target.parent() {
        sync_dir(dir)?;
    }
    held?;
    Ok(matches)
}

/// True for the staging names of writes in progress, `<name>#<digits>`
/// (the form object_store uses too).
pub(crate) fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Attempts at a write whose directory vanished under it (an emptied
/// directory pruned by the collector, an empty upload session directory
/// removed by a concurrent request): see [`in_dir`].
const WRITE_ATTEMPTS: usize = 3;

/// `<target>#<digits>`: a staging name next to `target`, unique, and of
/// the form listings skip.
pub(crate) fn staging_path(target: &std::path::Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(format!("#{}", uuid::Uuid::new_v4().as_u128()));
    name.into()
}

/// See [`LocalFiles::write`].
pub(crate) fn write_file(
    target: &std::path::Path,
    bytes: &[u8],
    mode: WriteMode,
    fsync: bool,
) -> std::io::Result<bool> {
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("object path has no directory"))?;
    let staging = staging_path(target);
    let mut file = in_dir(dir, fsync, || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging)
    })?;
    let published = (|| {
        file.write_all(bytes)?;
        if fsync {
            file.sync_all()?;
        }
        drop(file);
        let written = match mode {
            WriteMode::Overwrite => {
                std::fs::rename(&staging, target)?;
                true
            }
            WriteMode::Create => match std::fs::hard_link(&staging, target) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(e),
            },
        };
        if fsync && written {
            match sync_dir(dir) {
                // The object and its directory were removed right after
                // the rename (a concurrent delete): it was written, then
                // deleted; there is nothing left to make durable.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        Ok(written)
    })();
    // After a rename the staging name is gone already; otherwise (a link,
    // or a failure) it must not be left behind.
    if mode == WriteMode::Create || published.is_err() {
        match std::fs::remove_file(&staging) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound && published.is_ok() => {
                return Err(e);
            }
            _ => {}
        }
    }
    published
}

/// Runs `op`, which creates an entry in `dir`, after creating `dir` and
/// its missing ancestors. The collector removes the directories it empties
/// (a blob's `<hex>/`, a finished run's `_gc/runs/<generation>/`): when a
/// directory vanishes between being found or created and being used, the
/// step fails with `NotFound` and is tried again, [`WRITE_ATTEMPTS`] times
/// in all. `op` must leave nothing behind when it fails.
pub(crate) fn in_dir<T>(
    dir: &std::path::Path,
    fsync: bool,
    mut op: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let mut attempt = 1;
    loop {
        let done = create_dirs(dir, fsync).and_then(|()| {
            interfere(Step::Use);
            op()
        });
        match done {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < WRITE_ATTEMPTS => {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Where a test may act as a concurrent collector between a write's steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Before one missing directory is created.
    Create,
    /// After the directories exist, before the entry is made in them.
    Use,
}

/// What a test runs at each [`Step`] of a write.
#[cfg(test)]
type Interference = Box<dyn FnMut(Step)>;

#[cfg(test)]
thread_local! {
    /// The [`Interference`] of writes on this thread.
    static INTERFERE: std::cell::RefCell<Option<Interference>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg_attr(not(test), allow(unused_variables))]
fn interfere(step: Step) {
    #[cfg(test)]
    INTERFERE.with(|hook| {
        if let Some(hook) = hook.borrow_mut().as_mut() {
            hook(step);
        }
    });
}

/// Creates `dir` and its missing ancestors; with `fsync`, each new
/// directory's entry is made durable in its parent. Fails with `NotFound`
/// when an ancestor it found is removed before it creates the next one
/// (see [`in_dir`]).
pub(crate) fn create_dirs(dir: &std::path::Path, fsync: bool) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir;
    loop {
        match std::fs::metadata(cur) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", cur.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(cur);
                cur = cur.parent().ok_or(e)?;
            }
            Err(e) => return Err(e),
        }
    }
    for new in missing.into_iter().rev() {
        interfere(Step::Create);
        match std::fs::create_dir(new) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if fsync && let Some(parent) = new.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// `fsync` of a directory: makes the entries created, renamed or removed
/// in it durable.
pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The walk of [`LocalFiles::scan_keys`]. Each directory's entries come
/// from [`entry_names`] (kept sorted in memory while a large directory is
/// unchanged), and a level starts at `after` by binary search: a page of
/// a catalog of 100,000 repositories reads no more than its page.
fn scan_tree<F>(
    cache: &ListingCache,
    root: &std::path::Path,
    after: Option<&str>,
    mut select: F,
) -> Result<Vec<String>>
where
    F: FnMut(&str) -> ControlFlow<bool, bool>,
{
    /// A directory being walked: its path relative to the root (empty, or
    /// ending in `/`), its entries (directories with a trailing `/`),
    /// sorted, and the next to visit.
    struct Level {
        rel: String,
        entries: Arc<Vec<String>>,
        next: usize,
    }
    let read_level = |rel: String| -> Result<Level> {
        let entries = cached_listing(cache, &root.join(&rel), Listed::Entries)?;
        // Whole subtrees (and files) at or before `after` are skipped: all
        // keys up to it but the directory on its path, which sorts last
        // among them (no sibling lies between `d/` and `d/...`).
        let next = after.map_or(0, |after| {
            let key = |e: &String| format!("{rel}{e}");
            let start = entries.partition_point(|e| key(e).as_str() <= after);
            match start.checked_sub(1).map(|i| key(&entries[i])) {
                Some(dir) if dir.ends_with('/') && after.starts_with(dir.as_str()) => start - 1,
                _ => start,
            }
        });
        Ok(Level { rel, entries, next })
    };
    let mut kept = Vec::new();
    let mut stack = vec![read_level(String::new())?];
    while let Some(level) = stack.last_mut() {
        let Some(entry) = level.entries.get(level.next) else {
            stack.pop();
            continue;
        };
        level.next += 1;
        let key = format!("{}{entry}", level.rel);
        if key.ends_with('/') {
            let child = read_level(key)?;
            stack.push(child);
            continue;
        }
        let answer = select(&key);
        let (ControlFlow::Continue(keep) | ControlFlow::Break(keep)) = answer;
        if keep {
            kept.push(key);
        }
        if answer.is_break() {
            break;
        }
    }
    Ok(kept)
}

/// The entries of `dir` as [`scan_tree`] keys them: a file's name, a
/// directory's name and `/` (empty if `dir` does not exist).
fn read_entry_names(dir: &std::path::Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::Io(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            names.push(format!("{name}/"));
        } else if kind.is_file() {
            names.push(name);
        }
    }
    Ok(names)
}

/// The names of the regular files in `dir` (empty if it does not exist).
fn read_file_names(dir: &std::path::Path) -> Result<Vec<String>> {
    let mut names = read_entry_names(dir)?;
    names.retain(|name| !name.ends_with('/'));
    Ok(names)
}

/// The sorted listing of `dir` (empty if it does not exist): kept in
/// memory when it has at least [`DIR_CACHE_MIN_NAMES`] names and its
/// directory was last modified at least [`DIR_CACHE_SETTLED`] before, and
/// served again after one `stat` while the directory's modification time
/// is unchanged (creating, renaming into or removing an entry changes it:
/// POSIX), so a kept listing is never stale on a local filesystem.
fn cached_listing(
    cache: &ListingCache,
    dir: &std::path::Path,
    listed: Listed,
) -> Result<Arc<Vec<String>>> {
    let modified = match std::fs::metadata(dir) {
        Ok(m) => m.modified()?,
        Err(e) if is_absent(&e) => return Ok(Arc::default()),
        Err(e) => return Err(StorageError::Io(e)),
    };
    let key = (dir.to_owned(), listed);
    if let Some(kept) = cache.get(&key)
        && kept.modified == modified
    {
        return Ok(kept.names);
    }
    let mut names = match listed {
        Listed::Files => read_file_names(dir)?,
        Listed::Entries => read_entry_names(dir)?,
    };
    names.sort_unstable();
    let names = Arc::new(names);
    let settled = SystemTime::now()
        .duration_since(modified)
        .is_ok_and(|age| age >= DIR_CACHE_SETTLED);
    if settled && names.len() >= DIR_CACHE_MIN_NAMES {
        keep(cache, key, modified, Arc::clone(&names));
    } else {
        cache.remove(&key);
    }
    Ok(names)
}

/// Keeps `names` for `key`, evicting other listings to make room; a
/// listing too large to keep alone is not kept (and drops an older copy).
fn keep(
    cache: &ListingCache,
    key: (PathBuf, Listed),
    modified: SystemTime,
    names: Arc<Vec<String>>,
) {
    let bytes = listing_bytes(&key.0, &names);
    cache.insert(
        key,
        CachedNames {
            modified,
            names,
            bytes,
        },
    );
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))?
}

/// Reads the next `len` bytes of `file` into a new buffer (`read_to_end`
/// fills spare capacity: no zeroing, one copy from the page cache).
fn read_chunk(file: &std::fs::File, len: u64) -> Result<Bytes> {
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf)?;
    if (buf.len() as u64) < len {
        return Err(StorageError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "blob file shorter than its recorded size",
        )));
    }
    Ok(Bytes::from(buf))
}

/// Streams the next `len` bytes of `file` (positioned at their start) in
/// [`BLOB_READ_CHUNK`] reads on the blocking pool. Each read starts as soon as the previous one finished, before that
/// chunk is handed out, so the file read and the socket write overlap; reads
/// never overlap each other, so they share the file position. Memory: two
/// chunks per stream.
fn read_ahead(file: std::fs::File, len: u64) -> BoxStream<'static, Result<Bytes>> {
    type Pending = tokio::task::JoinHandle<Result<Bytes>>;
    let file = Arc::new(file);
    let spawn = |file: &Arc<std::fs::File>, remaining: u64| -> Option<Pending> {
        if remaining == 0 {
            return None;
        }
        let len = BLOB_READ_CHUNK.min(remaining);
        let file = Arc::clone(file);
        Some(tokio::task::spawn_blocking(move || read_chunk(&file, len)))
    };
    let first = spawn(&file, len);
    futures::stream::unfold(
        (file, first, len),
        move |(file, pending, remaining)| async move {
            let chunk = match pending?.await {
                Ok(chunk) => chunk,
                Err(e) => Err(StorageError::Io(std::io::Error::other(e))),
            };
            let (next, remaining) = match &chunk {
                Ok(bytes) => {
                    let remaining = remaining - bytes.len() as u64;
                    (spawn(&file, remaining), remaining)
                }
                // After an error the stream ends.
                Err(_) => (None, 0),
            };
            Some((chunk, (file, next, remaining)))
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    fn files() -> (tempfile::TempDir, LocalFiles) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let root = dir.path().to_path_buf();
        (dir, LocalFiles::new(Arc::new(store), root, true))
    }

    /// The shortcut names the same file as object_store for every kind of
    /// key the engine uses, and defers to it for escaped ones.
    #[test]
    fn file_paths_match_object_stores() {
        let (_dir, files) = files();
        for key in [
            "blobs/sha256/ab/abcdef/data",
            "repositories/team/app/_tags/v1.0-rc_1",
            "repositories/a/b/c/_manifests/sha256/00ff",
            "_uploads/0b3c1e9a-1111-4a4a-8888-000000000000/parts/000000000000001234",
        ] {
            let path = Path::from(key);
            assert_eq!(
                files.path(&path).unwrap(),
                files.store.path_to_filesystem(&path).unwrap(),
                "{key}"
            );
        }
        for odd in [
            Path::from_iter(["a", "..", "b"]),
            Path::from_iter(["a b", "%", "."]),
        ] {
            assert!(odd.as_ref().contains('%'), "{odd}");
            assert_eq!(
                files.path(&odd).unwrap(),
                files.store.path_to_filesystem(&odd).unwrap()
            );
        }
    }

    #[tokio::test]
    async fn streams_ranges_across_chunk_boundaries() {
        let (dir, files) = files();
        let len = (2 * BLOB_READ_CHUNK + 12_345) as usize;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("blob"), &data).unwrap();
        let path = Path::from("blob");
        for range in [
            None,
            Some(0..1),
            Some(BLOB_READ_CHUNK - 3..BLOB_READ_CHUNK + 3),
            Some(1..len as u64),
        ] {
            let header = range
                .as_ref()
                .map(|r: &Range<u64>| format!("bytes={}-{}", r.start, r.end - 1));
            let asked = header.map(|h| h.parse::<ByteRange>().unwrap());
            let (size, resolved, stream) = files.stream(&path, asked).await.unwrap().unwrap();
            assert_eq!(size, len as u64);
            assert_eq!(resolved, range);
            let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
            assert!(chunks.iter().all(|c| c.len() as u64 <= BLOB_READ_CHUNK));
            let got = chunks.concat();
            let want = range.map_or(&data[..], |r| &data[r.start as usize..r.end as usize]);
            assert!(got == want, "range differs");
        }
        assert!(
            files
                .stream(&Path::from("nope"), None)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_file_shorter_than_the_range_is_an_error_not_short_data() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blob"), b"0123456789").unwrap();
        let mut file = std::fs::File::open(dir.path().join("blob")).unwrap();
        file.seek(SeekFrom::Start(5)).unwrap();
        let stream = read_ahead(file, 15);
        let result: Result<Vec<Bytes>> = stream.try_collect().await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn listings_read_names_and_skip_what_is_not_asked_for() {
        let (dir, files) = files();
        let tags = dir.path().join("r/_tags");
        std::fs::create_dir_all(tags.join("subdir")).unwrap();
        for name in ["v1", "v2", "v3#staging"] {
            std::fs::write(tags.join(name), "x").unwrap();
        }
        let names = files.file_names(&Path::from("r/_tags")).await.unwrap();
        assert_eq!(*names, ["v1", "v2", "v3#staging"]);
        assert!(!is_staging_name("v3#staging"));
        assert!(is_staging_name("v3#12"));
        assert!(
            files
                .file_names(&Path::from("missing"))
                .await
                .unwrap()
                .is_empty()
        );

        let catalog = dir.path().join("_catalog");
        for name in ["a", "a/b/c", "d/e"] {
            std::fs::create_dir_all(catalog.join(name)).unwrap();
            std::fs::write(catalog.join(name).join("_repository"), "").unwrap();
        }
        std::fs::create_dir_all(catalog.join("f")).unwrap();
        std::fs::write(catalog.join("f/_repository#1"), "").unwrap();
        let all = |_: &str| ControlFlow::Continue(true);
        let keys = files
            .scan_keys(&Path::from("_catalog"), None, all)
            .await
            .unwrap();
        // Key order: `a-b` < `a/` (`-` < `/`), `_repository` < `b/`.
        let want = [
            "a/_repository",
            "a/b/c/_repository",
            "d/e/_repository",
            "f/_repository#1",
        ];
        assert_eq!(keys, want);
        for (after, from) in [
            ("a/_repository", 1),
            ("a/b", 1),
            ("a/c", 2),
            ("d/", 2),
            ("e", 3),
        ] {
            let keys = files
                .scan_keys(&Path::from("_catalog"), Some(after.into()), all)
                .await
                .unwrap();
            assert_eq!(keys, want[from..], "after {after}");
        }
        let first_two = {
            let mut seen = 0;
            move |_: &str| {
                seen += 1;
                if seen == 2 {
                    ControlFlow::Break(true)
                } else {
                    ControlFlow::Continue(seen == 1)
                }
            }
        };
        let keys = files
            .scan_keys(&Path::from("_catalog"), None, first_two)
            .await
            .unwrap();
        assert_eq!(keys, want[..2]);
    }

    #[tokio::test]
    async fn large_listings_are_kept_until_the_directory_changes() {
        let (dir, files) = files();
        let tags = dir.path().join("r/_tags");
        std::fs::create_dir_all(&tags).unwrap();
        for i in 0..DIR_CACHE_MIN_NAMES {
            std::fs::write(tags.join(format!("t{i}")), "x").unwrap();
        }
        // Backdate the directory so the listing counts as settled.
        let old = SystemTime::now() - DIR_CACHE_SETTLED * 2;
        let set_mtime = |t: SystemTime| {
            std::fs::File::open(&tags).unwrap().set_modified(t).unwrap();
        };
        set_mtime(old);
        let listed = |files: &LocalFiles| {
            let files = files.clone();
            async move { files.file_names(&Path::from("r/_tags")).await.unwrap() }
        };
        let first = listed(&files).await;
        assert_eq!(first.len(), DIR_CACHE_MIN_NAMES);
        let again = listed(&files).await;
        assert!(
            Arc::ptr_eq(&first, &again),
            "unchanged directory is listed from memory"
        );

        // A new entry changes the directory's mtime: the listing is re-read.
        std::fs::write(tags.join("new"), "x").unwrap();
        let after_add = listed(&files).await;
        assert_eq!(after_add.len(), DIR_CACHE_MIN_NAMES + 1);
        assert!(after_add.iter().any(|n| n == "new"));

        // Backdated again, the new listing is kept; a removal re-reads it.
        set_mtime(old - Duration::from_secs(10));
        let kept = listed(&files).await;
        assert!(Arc::ptr_eq(&kept, &listed(&files).await));
        std::fs::remove_file(tags.join("new")).unwrap();
        let after_remove = listed(&files).await;
        assert_eq!(kept.len(), DIR_CACHE_MIN_NAMES + 1);
        assert_eq!(after_remove.len(), DIR_CACHE_MIN_NAMES);
    }

    /// Kept listings stay within [`DIR_CACHE_BYTES`] and
    /// [`DIR_CACHE_ENTRIES`] together, however large the directories: older
    /// listings are evicted to make room, a listing larger than the whole
    /// budget is not kept (and drops its older copy), replacing a listing
    /// counts only the new one, and one of most of the budget is kept.
    #[test]
    fn kept_listings_are_bounded_in_bytes_and_number() {
        let names = |n: usize, len: usize| -> Arc<Vec<String>> {
            Arc::new((0..n).map(|i| format!("{i:0len$}")).collect())
        };
        let key = |i: usize| (PathBuf::from(format!("/r/{i}/_tags")), Listed::Files);
        let check = |l: &ListingCache| {
            let counted: usize = l.iter().map(|(_, c)| c.bytes).sum();
            assert!(counted <= DIR_CACHE_BYTES, "{counted} bytes kept");
            assert!(l.weight() <= DIR_CACHE_BYTES as u64);
            assert!(l.len() <= DIR_CACHE_ENTRIES);
        };
        let now = SystemTime::now();
        let listings = listing_cache();

        // 3 MiB listings: only ten fit in 32 MiB.
        let big = names(50_000, 40);
        let big_bytes = listing_bytes(&key(0).0, &big);
        assert!((3 << 20..4 << 20).contains(&big_bytes), "{big_bytes}");
        for i in 0..30 {
            keep(&listings, key(i), now, Arc::clone(&big));
            check(&listings);
            assert!(listings.get(&key(i)).is_some(), "the newest is kept");
        }
        assert_eq!(listings.len(), DIR_CACHE_BYTES / big_bytes);

        // Small listings: bounded by number (in a cache of their own: in
        // this one the big listings, admitted first, are the ones it keeps
        // and the newcomers take turns in what is left).
        let listings = listing_cache();
        for i in 100..300 {
            keep(&listings, key(i), now, names(1024, 8));
            check(&listings);
        }
        assert_eq!(listings.len(), DIR_CACHE_ENTRIES);

        // Replaced by a newer copy of the same directory: counted once.
        let before = listings.weight();
        keep(&listings, key(299), now, names(1024, 8));
        check(&listings);
        assert_eq!(listings.weight(), before);

        // Larger than the whole budget: not kept, and the old copy goes.
        let huge = names(DIR_CACHE_BYTES / 40, 20);
        keep(&listings, key(299), now, huge);
        check(&listings);
        assert!(listings.get(&key(299)).is_none());
        assert_eq!(listings.len(), DIR_CACHE_ENTRIES - 1);

        // Three quarters of the budget: kept, in place of the others (the
        // budget is not split among shards).
        let large = names(DIR_CACHE_BYTES * 3 / 4 / 40, 16);
        keep(&listings, key(400), now, large);
        check(&listings);
        assert!(listings.get(&key(400)).is_some());
    }

    /// A page of a namespace of thousands of repositories starts at `after`
    /// in the kept listing, and sees a repository created since.
    #[tokio::test]
    async fn scans_of_large_directories_start_at_after() {
        let (dir, files) = files();
        let ns = dir.path().join("_catalog/ns");
        for i in 0..1500 {
            let repo = ns.join(format!("r{i:04}"));
            std::fs::create_dir_all(&repo).unwrap();
            std::fs::write(repo.join("_repository"), "").unwrap();
        }
        std::fs::write(dir.path().join("_catalog/a-file"), "").unwrap();
        let old = SystemTime::now() - DIR_CACHE_SETTLED * 2;
        std::fs::File::open(&ns).unwrap().set_modified(old).unwrap();
        let page = |after: &str| {
            let files = files.clone();
            let after = Some(after.to_owned());
            async move {
                let mut n = 0;
                let select = move |_: &str| {
                    n += 1;
                    if n < 3 {
                        ControlFlow::Continue(true)
                    } else {
                        ControlFlow::Break(true)
                    }
                };
                files
                    .scan_keys(&Path::from("_catalog"), after, select)
                    .await
                    .unwrap()
            }
        };
        let want = [
            "ns/r0701/_repository",
            "ns/r0702/_repository",
            "ns/r0703/_repository",
        ];
        assert_eq!(page("ns/r0700/_repository").await, want);
        assert_eq!(
            page("ns/r0700/_repository").await,
            want,
            "from the kept listing"
        );
        // From inside a repository's directory, and from a name that is none.
        assert_eq!(
            page("ns/r0700/").await,
            ["ns/r0700/_repository", want[0], want[1]]
        );
        assert_eq!(page("ns/r0700x").await, want);
        assert_eq!(
            page("a-file").await,
            [
                "ns/r0000/_repository",
                "ns/r0001/_repository",
                "ns/r0002/_repository"
            ]
        );
        let repo = ns.join("r0700a");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(repo.join("_repository"), "").unwrap();
        assert_eq!(
            page("ns/r0700/_repository").await,
            ["ns/r0700a/_repository", want[0], want[1]],
            "a new repository changes the directory"
        );
    }

    #[tokio::test]
    async fn recently_changed_directories_are_not_kept() {
        let (dir, files) = files();
        let tags = dir.path().join("r/_tags");
        std::fs::create_dir_all(&tags).unwrap();
        for i in 0..DIR_CACHE_MIN_NAMES {
            std::fs::write(tags.join(format!("t{i}")), "x").unwrap();
        }
        let first = files.file_names(&Path::from("r/_tags")).await.unwrap();
        let again = files.file_names(&Path::from("r/_tags")).await.unwrap();
        assert!(
            !Arc::ptr_eq(&first, &again),
            "a just-modified directory is re-read"
        );
    }

    /// Names in `dir` that are staging files (`<name>#<digits>`).
    fn staging_files(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains('#'))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_replace_objects_whole_while_readers_watch() {
        let (dir, files) = files();
        let target = dir.path().join("r/_tags/t");
        let reader = std::thread::spawn({
            let target = target.clone();
            move || {
                let mut seen = 0;
                for _ in 0..2_000 {
                    if let Ok(bytes) = std::fs::read(&target) {
                        assert_eq!(bytes.len(), 64 * 1024, "partial object visible");
                        assert!(bytes.iter().all(|b| *b == bytes[0]), "mixed object visible");
                        seen += 1;
                    }
                }
                seen
            }
        });
        for i in 0..200u8 {
            let bytes = Bytes::from(vec![b'a' + i % 2; 64 * 1024]);
            let written = files
                .write(&Path::from("r/_tags/t"), bytes, WriteMode::Overwrite)
                .await
                .unwrap();
            assert!(written);
        }
        reader.join().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), vec![b'b'; 64 * 1024]);
        assert!(staging_files(target.parent().unwrap()).is_empty());
    }

    #[tokio::test]
    async fn a_failed_write_leaves_no_partial_object() {
        let (dir, files) = files();
        // The target is a non-empty directory: the rename fails.
        std::fs::create_dir_all(dir.path().join("d/obj/x")).unwrap();
        let err = files
            .write(
                &Path::from("d/obj"),
                Bytes::from("new"),
                WriteMode::Overwrite,
            )
            .await;
        assert!(err.is_err());
        assert!(dir.path().join("d/obj").is_dir());
        assert!(staging_files(&dir.path().join("d")).is_empty());
        // A path through a file: nothing is created at all.
        std::fs::write(dir.path().join("f"), b"file").unwrap();
        let err = files
            .write(
                &Path::from("f/obj"),
                Bytes::from("new"),
                WriteMode::Overwrite,
            )
            .await;
        assert!(err.is_err());
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"file");
        assert!(staging_files(dir.path()).is_empty());
    }

    /// Runs `write_file` with `hook` acting at each step on this thread,
    /// as a collector pruning emptied directories would.
    fn write_interfered(
        target: &std::path::Path,
        hook: impl FnMut(Step) + 'static,
    ) -> std::io::Result<bool> {
        INTERFERE.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
        let written = write_file(target, b"bytes", WriteMode::Create, true);
        INTERFERE.with(|h| *h.borrow_mut() = None);
        written
    }

    #[test]
    fn a_directory_pruned_mid_write_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("_gc/runs");
        std::fs::create_dir_all(&runs).unwrap();
        let target = runs.join("0001/journal/entry");

        // A finished run's empty directory is removed after the write
        // created it and before it creates the next level.
        let generation = runs.join("0001");
        let mut removed = 0;
        let written = write_interfered(&target, move |step| {
            if step == Step::Create && removed == 0 && generation.is_dir() {
                std::fs::remove_dir(&generation).unwrap();
                removed += 1;
            }
        });
        assert!(written.unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), b"bytes");
        assert!(staging_files(target.parent().unwrap()).is_empty());

        // The directory is removed after it was found and before the
        // staging file is opened in it, twice.
        let target = dir.path().join("blobs/ab/abcd/data");
        let blob_dir = target.parent().unwrap().to_path_buf();
        let mut removed = 0;
        let written = write_interfered(&target, move |step| {
            if step == Step::Use && removed < 2 {
                std::fs::remove_dir(&blob_dir).unwrap();
                removed += 1;
            }
        });
        assert!(written.unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), b"bytes");

        // Bounded: a directory that keeps vanishing fails the write with
        // NotFound after WRITE_ATTEMPTS, and leaves nothing behind.
        let target = dir.path().join("blobs/cd/cdef/data");
        let blob_dir = target.parent().unwrap().to_path_buf();
        let mut attempts = 0;
        let counted = std::rc::Rc::new(std::cell::Cell::new(0));
        let seen = counted.clone();
        let err = write_interfered(&target, move |step| {
            if step == Step::Use {
                std::fs::remove_dir(&blob_dir).unwrap();
                attempts += 1;
                seen.set(attempts);
            }
        })
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(counted.get(), WRITE_ATTEMPTS);
        assert!(!target.exists());
        assert!(staging_files(&dir.path().join("blobs/cd")).is_empty());
    }

    #[tokio::test]
    async fn create_mode_never_replaces() {
        let (dir, files) = files();
        let path = Path::from("a/b/marker");
        assert!(
            files
                .write(&path, Bytes::from("one"), WriteMode::Create)
                .await
                .unwrap()
        );
        assert!(
            !files
                .write(&path, Bytes::from("two"), WriteMode::Create)
                .await
                .unwrap()
        );
        assert_eq!(
            std::fs::read(dir.path().join("a/b/marker")).unwrap(),
            b"one"
        );
        assert!(staging_files(&dir.path().join("a/b")).is_empty());
    }

    #[tokio::test]
    async fn writes_without_fsync_land_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let files = LocalFiles::new(Arc::new(store), dir.path().to_path_buf(), false);
        let path = Path::from("deep/new/dirs/obj");
        for content in ["first", "second"] {
            files
                .write(&path, Bytes::from(content), WriteMode::Overwrite)
                .await
                .unwrap();
            assert_eq!(
                files.read(&path).unwrap().as_deref(),
                Some(content.as_bytes())
            );
        }
        assert!(staging_files(&dir.path().join("deep/new/dirs")).is_empty());
    }

    #[test]
    fn small_reads_and_sizes_treat_missing_paths_as_absent() {
        let (dir, files) = files();
        std::fs::write(dir.path().join("f"), b"abc").unwrap();
        assert_eq!(
            files.read(&Path::from("f")).unwrap().as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(files.size(&Path::from("f")).unwrap(), Some(3));
        assert_eq!(files.read(&Path::from("g")).unwrap(), None);
        // A path "through" a file is absent, not an error.
        assert_eq!(files.read(&Path::from("f/x")).unwrap(), None);
        assert_eq!(files.size(&Path::from("f/x")).unwrap(), None);
    }
}
