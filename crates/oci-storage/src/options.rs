//! What an operator can tune in the storage engine, with the defaults a
//! production registry wants.

use std::time::Duration;

/// Options of a [`crate::Storage`]. `Default` gives the documented
/// defaults; set fields on it (the struct is `#[non_exhaustive]`, so
/// other crates cannot use struct update syntax):
///
/// ```
/// # use oci_storage::StorageOptions;
/// let mut opts = StorageOptions::default();
/// opts.fsync = false;
/// assert!(!opts.fsync);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageOptions {
    /// object_store configuration keys for the backend (`aws_endpoint`,
    /// `aws_region`, ...), applied over the `AWS_*` environment variables;
    /// S3 only.
    pub backend: Vec<(String, String)>,
    /// Filesystem backend: `fsync` every file and its directory before a
    /// write is acknowledged, so an acknowledged blob, manifest, tag or link
    /// survives power loss. Default `true`.
    pub fsync: bool,
    /// Upload sessions untouched for this long are expired and their bytes
    /// freed. Default 24 h.
    pub upload_ttl: Duration,
    /// At most this many upload sessions may be open at once; starting
    /// another is refused until some finish or expire. Default 10,000.
    pub max_uploads: usize,
    /// How long a request waits for an upload session another request is
    /// using before it is answered "busy" ([`crate::StorageError::Busy`],
    /// HTTP 429). Default 30 s.
    pub lock_wait: Duration,
    /// S3: how long an upload session's lease outlives a holder that stopped
    /// renewing it (a dead replica, or a request whose client stopped
    /// sending; such a holder gives the lease up after half of it). Another
    /// replica takes the session over once it has seen the lease unchanged
    /// for this long. Default 30 s.
    pub lease_ttl: Duration,
    /// S3, Azure, GCS: parts of one upload request sent to the store at
    /// once (each 8 MiB): a request's memory is about this many parts plus
    /// the one being gathered. Default 4; at least 1.
    pub upload_concurrency: usize,
    /// Object stores: bytes of a blob being read that are read from the
    /// store ahead of the client, by a task of their own (see
    /// `read_ahead`); 0 turns read-ahead off. Memory per blob read. Default
    /// 4 MiB.
    pub read_ahead: usize,
    /// Tags that may never be moved or deleted (`[[immutable]]`, see
    /// [`crate::ImmutableRule`]). Default none.
    pub immutable: Vec<crate::ImmutableRule>,
    /// Which tags and untagged manifests garbage collection drops
    /// (`[[retention]]`, see [`crate::RetentionRule`]); a repository
    /// follows the first rule that matches it. Default none: everything is
    /// kept.
    pub retention: Vec<crate::RetentionRule>,
    /// The in-memory read cache of hot manifests, small blobs, tags and
    /// links (`[cache]`, see [`crate::CacheOptions`]).
    pub cache: crate::CacheOptions,
    /// Redirects for pulls: blob `GET`s are answered with a presigned URL
    /// of the store, valid this long ([`crate::Storage::blob_redirect`]),
    /// so bytes flow from the store, not through the registry. Only
    /// stores that presign URLs take it ([`crate::redirect::presigns`]);
    /// at most [`crate::redirect::MAX_REDIRECT_EXPIRY`]. Default `None`:
    /// blobs are streamed.
    pub redirect: Option<Duration>,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            backend: Vec::new(),
            fsync: true,
            upload_ttl: Duration::from_secs(24 * 60 * 60),
            max_uploads: 10_000,
            lock_wait: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(30),
            upload_concurrency: crate::upload_area::DEFAULT_CONCURRENCY,
            read_ahead: 4 << 20,
            immutable: Vec::new(),
            retention: Vec::new(),
            cache: crate::CacheOptions::default(),
            redirect: None,
        }
    }
}

impl StorageOptions {
    /// The defaults with these backend options (object_store keys).
    pub fn with_backend(backend: &[(String, String)]) -> Self {
        Self {
            backend: backend.to_vec(),
            ..Self::default()
        }
    }
}
