//! Errors of upstream requests.

use std::sync::Arc;
use std::time::Duration;

use oci_storage::StorageError;

/// What went wrong talking to an upstream registry, or caching what it
/// sent. Cloneable: a failed blob fetch reports its error to every request
/// that shared it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The configuration is unusable (a URL that does not parse, no TLS
    /// roots).
    #[error("upstream configuration: {0}")]
    Config(String),
    /// The upstream could not be reached, or the connection failed.
    #[error("upstream {url} unreachable: {reason}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The upstream does not have it (404).
    #[error("not found upstream: {0}")]
    NotFound(String),
    /// The upstream refused our credentials (or has none for us).
    #[error("upstream refused access to {0}")]
    Unauthorized(String),
    /// The upstream is rate-limiting us (429).
    #[error("upstream rate limit: retry after {retry_after:?}")]
    TooManyRequests {
        /// What `Retry-After` asked for, if anything.
        retry_after: Option<Duration>,
    },
    /// Any other status.
    #[error("upstream answered {status} for {url}")]
    Status {
        /// The status.
        status: u16,
        /// What was asked.
        url: String,
    },
    /// An answer that is not what was asked for: a HEAD without the
    /// digest, a tag list that is not one.
    #[error("upstream answer unusable: {0}")]
    BadAnswer(String),
    /// A challenge or token answer that makes no sense.
    #[error("upstream auth: {0}")]
    BadAuth(String),
    /// A manifest bigger than [`crate::MANIFEST_LIMIT`].
    #[error("upstream manifest larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Bytes that are not the digest they were asked by.
    #[error("upstream sent {actual} for {expected}")]
    DigestMismatch {
        /// What was asked.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// A blob of another length than upstream announced.
    #[error("upstream sent {actual} bytes of {digest}, announced {expected}")]
    SizeMismatch {
        /// The blob.
        digest: String,
        /// The announced length.
        expected: u64,
        /// What arrived (so far).
        actual: u64,
    },
    /// Upstream's bytes could not be spooled for the requests sharing a
    /// fetch.
    #[error("spooling an upstream blob: {0}")]
    Spool(String),
    /// The cache's storage failed.
    #[error(transparent)]
    Storage(Arc<StorageError>),
}

impl From<StorageError> for ProxyError {
    fn from(e: StorageError) -> Self {
        ProxyError::Storage(Arc::new(e))
    }
}

impl ProxyError {
    /// Whether upstream is down or throttling (rather than saying no):
    /// the cache then serves what it holds.
    pub fn is_transient(&self) -> bool {
        match self {
            ProxyError::Unreachable { .. } | ProxyError::TooManyRequests { .. } => true,
            ProxyError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, ProxyError>;
