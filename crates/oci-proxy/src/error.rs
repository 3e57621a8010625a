//! Errors of upstream requests.

use std::time::Duration;

/// What went wrong talking to an upstream registry.
#[derive(Debug, thiserror::Error)]
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
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, ProxyError>;
