//! The one error type of the storage engine.
//!
//! Variants say what went wrong in registry terms; the HTTP layer maps each
//! to a spec error code and status. Backend failures stay opaque.

use oci_types::{Digest, RepositoryName, Tag};

/// Everything a storage operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The repository holds nothing.
    #[error("repository {0} is not known")]
    NameUnknown(RepositoryName),
    /// The blob is not held by the repository.
    #[error("blob {0} is not known in this repository")]
    BlobUnknown(Digest),
    /// The manifest (or tag) is not held by the repository.
    #[error("manifest {0} is not known in this repository")]
    ManifestUnknown(String),
    /// A `Range` request lies outside the blob (spec: 416).
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable {
        /// Size of the blob.
        size: u64,
    },
    /// No upload session with that id for this repository.
    #[error("upload session {0} is not known")]
    UploadUnknown(String),
    /// Another request holds the upload session for longer than we wait.
    #[error("upload session {0} is busy")]
    Busy(String),
    /// As many upload sessions are open as the registry allows.
    #[error(
        "{max} upload sessions are open, the most allowed; finish or cancel some, or retry later"
    )]
    TooManyUploads {
        /// The cap.
        max: usize,
    },
    /// A chunk did not start where the session ends (spec: 416).
    #[error("chunk starts at {got} but the upload has {expected} bytes")]
    RangeInvalid {
        /// Bytes the session holds.
        expected: u64,
        /// Where the chunk claimed to start.
        got: u64,
    },
    /// Received bytes do not match the declared length.
    #[error("declared {declared} bytes but received {received}")]
    SizeInvalid {
        /// Length the client declared.
        declared: u64,
        /// Length actually received.
        received: u64,
    },
    /// The content's digest differs from the one the client gave.
    #[error("digest mismatch: expected {expected}, computed {actual}")]
    DigestMismatch {
        /// Digest the client claimed.
        expected: Digest,
        /// Digest of the bytes received.
        actual: Digest,
    },
    /// The manifest is malformed or of an unsupported kind.
    #[error(transparent)]
    ManifestInvalid(#[from] oci_types::Error),
    /// The manifest references a blob or manifest the repository lacks.
    #[error("manifest references {0}, which this repository does not hold")]
    ManifestBlobUnknown(Digest),
    /// The request body failed while it was being read.
    #[error("request body: {0}")]
    Body(std::io::Error),
    /// The storage URL cannot be used.
    #[error("invalid storage URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// Stored metadata could not be read back (manual edits, disk damage).
    #[error("corrupt stored object {path}: {reason}")]
    Corrupt {
        /// Object path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An immutable tag (`[[immutable]]`) would be moved or deleted.
    #[error("tag {tag} of {repository} is immutable: {reason}")]
    ImmutableTag {
        /// The repository.
        repository: RepositoryName,
        /// The tag.
        tag: Tag,
        /// What was refused.
        reason: String,
    },
    /// The object store failed.
    #[error("object store: {0}")]
    Backend(#[from] object_store::Error),
    /// Local file I/O failed (filesystem upload area).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// True when an object store error means "no such object".
pub(crate) fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}
