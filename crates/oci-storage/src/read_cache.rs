//! The in-memory read cache: the small objects a pull reads on every
//! request, kept in a bounded amount of memory ([`CacheOptions`]).
//!
//! Three kinds of entries share one budget (least recently and least often
//! used go first):
//!
//! - **Content by digest** (`blobs/.../data` of manifests and small blobs):
//!   immutable, served without asking the store. It is only ever served
//!   after the repository's link to it was found (validated as below), and
//!   garbage collection removes links before bytes, so a cached copy never
//!   outlives the repository's claim to it.
//! - **Sizes of content by digest**, of blobs of any size, learned by a
//!   `HEAD` or a `GET` of their bytes: immutable too, and served by the same
//!   rule (only after the repository's validated link), so a blob `HEAD`
//!   costs one validated link read. This process forgets both when it
//!   deletes the bytes.
//! - **Tags and links** (`_tags/<tag>`, `_manifests/...`, `_layers/...`):
//!   mutable, so every read validates the cached copy against the store:
//!   - on the filesystem, with one `stat`: the file's inode, size, and
//!     modification and change times must be those of the cached copy.
//!     Writes replace files by rename (a new inode), and a copy is only
//!     cached once its file is at least [`SETTLED`] old, so a later write
//!     always differs in its times even where timestamps are coarse or an
//!     inode number is reused. A stale tag is never served.
//!   - on object stores, with a conditional GET (`If-None-Match` on the
//!     ETag): `304 Not Modified` carries no body; any change is seen at
//!     once, by every replica. With [`CacheOptions::tag_ttl`]
//!     (`tag_cache_ttl`, default 0: off) a copy validated less than that
//!     long ago is served without asking: an explicit staleness bound for
//!     changes made by *other* replicas (this one forgets what it writes or
//!     deletes at once).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use object_store::GetOptions;
use object_store::path::Path;
use quick_cache::Weighter;

use crate::Storage;
use crate::error::{Result, is_not_found};
use crate::telemetry::{self, Cached};

/// A file must be at least this old (by its modification time) before a
/// copy of it is cached: see the module docs.
pub(crate) const SETTLED: Duration = Duration::from_secs(2);

/// Memory every entry is charged beyond its bytes (key, version, the
/// cache's own bookkeeping), so that millions of tiny tags cannot exceed
/// the budget.
const ENTRY_OVERHEAD: u64 = 160;

/// What the in-memory read cache may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheOptions {
    /// Memory for cached content, tags and links, in bytes (`[cache]
    /// size`); 0 turns the cache off. Default 32 MiB.
    pub size: u64,
    /// Blobs and manifests larger than this are never cached (`[cache]
    /// max_blob`). Default 1 MiB.
    pub max_blob: u64,
    /// Object stores only: how long a tag or link validated with the store
    /// is served again without asking (`[cache] tag_cache_ttl`). A tag
    /// moved or a manifest deleted through *another* replica may be served
    /// this long. Default zero: every read asks the store (a conditional
    /// GET). Ignored on the filesystem, where validation is a `stat`.
    pub tag_ttl: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            size: 32 << 20,
            max_blob: 1 << 20,
            tag_ttl: Duration::ZERO,
        }
    }
}

/// Which version of an object a cached copy is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Version {
    /// Content addressed by its digest: it never changes.
    Immutable,
    /// A local file, as `stat` sees it.
    File(FileVersion),
    /// An object store's ETag.
    ETag(Arc<str>),
}

/// A local file's identity and times: they change with every write (see
/// the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileVersion {
    pub(crate) inode: u64,
    pub(crate) size: u64,
    pub(crate) modified: (i64, i64),
    pub(crate) changed: (i64, i64),
}

impl FileVersion {
    /// The version `stat` (or `fstat`) gave.
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            inode: meta.ino(),
            size: meta.size(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// True once the file is old enough to be cached ([`SETTLED`]).
    pub(crate) fn settled(&self) -> bool {
        let modified = SystemTime::UNIX_EPOCH
            + Duration::new(
                u64::try_from(self.modified.0).unwrap_or(0),
                u32::try_from(self.modified.1).unwrap_or(0),
            );
        SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age >= SETTLED)
    }
}

/// A cached copy.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) bytes: Bytes,
    pub(crate) version: Version,
    /// When the store last confirmed it (object stores).
    pub(crate) checked: Instant,
}

/// What an entry is of: an object's copy, or only the size of content by
/// digest (keyed by its data path).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Copy(Path),
    Size(Path),
}

/// A [`Key`] by reference, to look entries up without cloning the path.
/// Its derived `Hash` equals the `Key`'s: the same variants in the same
/// order, and a `&Path` hashes as its `Path`.
#[derive(Hash)]
enum KeyRef<'a> {
    Copy(&'a Path),
    Size(&'a Path),
}

impl quick_cache::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        match (self, key) {
            (KeyRef::Copy(a), Key::Copy(b)) | (KeyRef::Size(a), Key::Size(b)) => *a == b,
            _ => false,
        }
    }
}

/// A cached copy or size.
#[derive(Debug, Clone)]
enum Value {
    Copy(Entry),
    Size(u64),
}

#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl Weighter<Key, Value> for ByBytes {
    fn weight(&self, key: &Key, value: &Value) -> u64 {
        let (Key::Copy(path) | Key::Size(path)) = key;
        let bytes = match value {
            Value::Copy(entry) => entry.bytes.len() as u64,
            Value::Size(_) => 0,
        };
        bytes + path.as_ref().len() as u64 + ENTRY_OVERHEAD
    }
}

/// The cache itself (see the module docs).
pub(crate) struct ReadCache {
    entries: quick_cache::sync::Cache<Key, Value, ByBytes>,
    options: CacheOptions,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("options", &self.options)
            .field("weight", &self.entries.weight())
            .finish_non_exhaustive()
    }
}

/// A cache hit or miss (the `result` label of the cache metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Served from memory (validated, or within the TTL, or immutable).
    Hit,
    /// Read from the store.
    Miss,
}

impl ReadCache {
    /// A cache with these options; `None` when its size is zero.
    pub(crate) fn new(options: &CacheOptions) -> Option<Self> {
        if options.size == 0 {
            return None;
        }
        // Tags and links are ~200 bytes with overhead; content KiBs.
        let estimated_items = usize::try_from(options.size / 1024).unwrap_or(usize::MAX);
        Some(Self {
            entries: quick_cache::sync::Cache::with_weighter(
                estimated_items.max(16),
                options.size,
                ByBytes,
            ),
            options: options.clone(),
        })
    }

    /// The options it was made with.
    pub(crate) fn options(&self) -> &CacheOptions {
        &self.options
    }

    /// The cached copy of `path`, if any (not validated).
    pub(crate) fn get(&self, path: &Path) -> Option<Entry> {
        match self.entries.get(&KeyRef::Copy(path))? {
            Value::Copy(entry) => Some(entry),
            Value::Size(_) => None,
        }
    }

    /// The cached size of the content by digest at `path`, if any.
    pub(crate) fn size(&self, path: &Path) -> Option<u64> {
        match self.entries.get(&KeyRef::Size(path))? {
            Value::Size(size) => Some(size),
            Value::Copy(_) => None,
        }
    }

    /// Keeps the size of the content by digest at `path`.
    pub(crate) fn insert_size(&self, path: &Path, size: u64) {
        self.entries
            .insert(Key::Size(path.clone()), Value::Size(size));
    }

    /// Whether an object-store copy may be served without asking the store.
    pub(crate) fn fresh(&self, entry: &Entry) -> bool {
        entry.version == Version::Immutable
            || (!self.options.tag_ttl.is_zero() && entry.checked.elapsed() < self.options.tag_ttl)
    }

    /// Keeps a copy of `path` (if it is not too large).
    pub(crate) fn insert(&self, path: &Path, bytes: Bytes, version: Version) {
        if bytes.len() as u64 > self.options.max_blob {
            return;
        }
        let entry = Entry {
            bytes,
            version,
            checked: Instant::now(),
        };
        self.entries
            .insert(Key::Copy(path.clone()), Value::Copy(entry));
    }

    /// Records that the store confirmed the cached copy of `path` now.
    pub(crate) fn confirmed(&self, path: &Path, mut entry: Entry) {
        entry.checked = Instant::now();
        self.entries
            .insert(Key::Copy(path.clone()), Value::Copy(entry));
    }

    /// Forgets `path`, its copy and its size (written or deleted by this
    /// process).
    pub(crate) fn forget(&self, path: &Path) {
        self.entries.remove(&KeyRef::Copy(path));
        self.entries.remove(&KeyRef::Size(path));
    }

    /// Bytes held, as the budget counts them.
    pub(crate) fn weight(&self) -> u64 {
        self.entries.weight()
    }
}

impl Storage {
    /// The read cache, unless it is off.
    fn cache(&self) -> Option<&ReadCache> {
        self.inner.cache.as_ref()
    }

    /// Reads a tag or a link whole, through the read cache: the cached
    /// copy once the store confirmed it is current (see the module docs);
    /// `None` if the object does not exist.
    pub(crate) async fn read_metadata(&self, path: &Path) -> Result<Option<Bytes>> {
        let Some(cache) = self.cache() else {
            return self.read_small(path).await;
        };
        let cached = cache.get(path);
        let count = |result| telemetry::cache_lookup(Cached::Metadata, result, || cache.weight());
        if let Some(local) = self.local() {
            let Some(version) = local.version(path)? else {
                if cached.is_some() {
                    cache.forget(path);
                }
                return Ok(None);
            };
            if let Some(entry) = cached
                && entry.version == Version::File(version)
            {
                count(Lookup::Hit);
                return Ok(Some(entry.bytes));
            }
            let Some((bytes, version)) = local.read_versioned(path)? else {
                return Ok(None);
            };
            if version.settled() {
                cache.insert(path, bytes.clone(), Version::File(version));
            }
            count(Lookup::Miss);
            return Ok(Some(bytes));
        }
        if let Some(entry) = &cached
            && cache.fresh(entry)
        {
            count(Lookup::Hit);
            return Ok(Some(entry.bytes.clone()));
        }
        let if_none_match = cached.as_ref().and_then(|entry| match &entry.version {
            Version::ETag(tag) => Some(tag.to_string()),
            _ => None,
        });
        let opts = GetOptions {
            if_none_match,
            ..GetOptions::default()
        };
        match self.store().get_opts(path, opts).await {
            Ok(got) => {
                let e_tag = got.meta.e_tag.clone();
                let bytes = got.bytes().await?;
                if let Some(e_tag) = e_tag {
                    cache.insert(path, bytes.clone(), Version::ETag(e_tag.into()));
                }
                count(Lookup::Miss);
                Ok(Some(bytes))
            }
            Err(object_store::Error::NotModified { .. }) => match cached {
                Some(entry) => {
                    let bytes = entry.bytes.clone();
                    cache.confirmed(path, entry);
                    count(Lookup::Hit);
                    Ok(Some(bytes))
                }
                // Not asked conditionally: a store's oddity, read again.
                None => self.read_small(path).await,
            },
            Err(e) if is_not_found(&e) => {
                cache.forget(path);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads content by digest (`blobs/.../data`) whole, through the read
    /// cache; `None` if it is not stored. Callers have checked the
    /// repository's link first.
    pub(crate) async fn read_content(&self, path: &Path) -> Result<Option<Bytes>> {
        if let Some(bytes) = self.cached_content(path) {
            return Ok(Some(bytes));
        }
        let read = self.read_small(path).await?;
        if let Some(bytes) = &read {
            self.keep_content(path, bytes.clone());
        }
        Ok(read)
    }

    /// The cached copy of content by digest, if any (counted as a hit).
    pub(crate) fn cached_content(&self, path: &Path) -> Option<Bytes> {
        let cache = self.cache()?;
        let entry = cache.get(path)?;
        telemetry::cache_lookup(Cached::Content, Lookup::Hit, || cache.weight());
        Some(entry.bytes)
    }

    /// Keeps a copy of content by digest just read (counted as a miss),
    /// if it is small enough.
    pub(crate) fn keep_content(&self, path: &Path, bytes: Bytes) {
        if let Some(cache) = self.cache() {
            cache.insert(path, bytes, Version::Immutable);
            telemetry::cache_lookup(Cached::Content, Lookup::Miss, || cache.weight());
        }
    }

    /// The size of content by digest (`blobs/.../data`) from the read
    /// cache: of its cached copy, or as last learned (counted as a hit).
    /// Callers have checked the repository's link first.
    pub(crate) fn cached_size(&self, path: &Path) -> Option<u64> {
        let cache = self.cache()?;
        let size = cache
            .size(path)
            .or_else(|| cache.get(path).map(|entry| entry.bytes.len() as u64))?;
        telemetry::cache_lookup(Cached::Size, Lookup::Hit, || cache.weight());
        Some(size)
    }

    /// Keeps the size of content by digest just learned from the store
    /// (counted as a miss).
    pub(crate) fn keep_size(&self, path: &Path, size: u64) {
        if let Some(cache) = self.cache() {
            cache.insert_size(path, size);
            telemetry::cache_lookup(Cached::Size, Lookup::Miss, || cache.weight());
        }
    }

    /// The largest content the read cache keeps (0 without a cache).
    pub(crate) fn cacheable_size(&self) -> u64 {
        self.cache().map_or(0, |c| c.options().max_blob)
    }

    /// Forgets this process's cached copy of an object it writes or
    /// deletes, so that it reads its own changes at once.
    pub(crate) fn forget_cached(&self, path: &Path) {
        if let Some(cache) = self.cache() {
            cache.forget(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_what_is_kept() {
        let options = CacheOptions {
            size: 64 << 10,
            max_blob: 8 << 10,
            tag_ttl: Duration::ZERO,
        };
        let cache = ReadCache::new(&options).unwrap();
        for i in 0..1000 {
            let path = Path::from(format!("blobs/{i}"));
            cache.insert(&path, Bytes::from(vec![0u8; 4096]), Version::Immutable);
        }
        assert!(cache.weight() <= 64 << 10, "{} kept", cache.weight());
        let large = Path::from("blobs/large");
        cache.insert(&large, Bytes::from(vec![0u8; 9000]), Version::Immutable);
        assert!(cache.get(&large).is_none(), "larger than max_blob");
    }

    #[test]
    fn object_store_copies_are_fresh_only_within_the_ttl() {
        let mut options = CacheOptions::default();
        let etag = Version::ETag("\"1\"".into());
        let cache = ReadCache::new(&options).unwrap();
        let path = Path::from("repositories/a/_tags/t");
        cache.insert(&path, Bytes::from_static(b"x"), etag.clone());
        assert!(!cache.fresh(&cache.get(&path).unwrap()), "ttl 0: ask");
        options.tag_ttl = Duration::from_secs(60);
        let cache = ReadCache::new(&options).unwrap();
        cache.insert(&path, Bytes::from_static(b"x"), etag);
        assert!(cache.fresh(&cache.get(&path).unwrap()));
        cache.forget(&path);
        assert!(cache.get(&path).is_none());
    }

    #[test]
    fn copies_and_sizes_are_found_by_reference_and_kept_apart() {
        use std::hash::BuildHasher;
        let hasher = quick_cache::DefaultHashBuilder::default();
        let path = Path::from("blobs/sha256/ab/abc/data");
        assert_eq!(
            hasher.hash_one(KeyRef::Copy(&path)),
            hasher.hash_one(Key::Copy(path.clone()))
        );
        assert_eq!(
            hasher.hash_one(KeyRef::Size(&path)),
            hasher.hash_one(Key::Size(path.clone()))
        );
        let cache = ReadCache::new(&CacheOptions::default()).unwrap();
        cache.insert_size(&path, 7);
        assert_eq!(cache.size(&path), Some(7));
        assert!(cache.get(&path).is_none(), "a size is no copy");
        cache.insert(&path, Bytes::from_static(b"1234567"), Version::Immutable);
        assert_eq!(cache.get(&path).map(|e| e.bytes.len()), Some(7));
        cache.forget(&path);
        assert!(cache.get(&path).is_none() && cache.size(&path).is_none());
    }

    #[test]
    fn zero_size_is_no_cache() {
        let options = CacheOptions {
            size: 0,
            ..CacheOptions::default()
        };
        assert!(ReadCache::new(&options).is_none());
    }
}
