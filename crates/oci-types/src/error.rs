//! The one error type of this crate.

/// Why a value from a request was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The digest is not `algorithm:encoded` with a known algorithm and a
    /// well-formed encoding.
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest {
        /// The rejected input (truncated).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A saved hash state could not be restored.
    #[error("invalid saved hash state")]
    InvalidHashState,
    /// The repository name does not match the spec's grammar.
    #[error("invalid repository name {value:?}: {reason}")]
    InvalidName {
        /// The rejected input (truncated).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A repository or tag pattern (policy configuration) is malformed.
    #[error("invalid pattern {value:?}: {reason}")]
    InvalidPattern {
        /// The rejected input (truncated).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The tag does not match `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("invalid tag {value:?}")]
    InvalidTag {
        /// The rejected input (truncated).
        value: String,
    },
    /// The manifest is malformed or inconsistent.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// The manifest's media type is not one this registry stores.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedManifest(String),
    /// A `Range` or `Content-Range` header could not be parsed.
    #[error("invalid range {0:?}")]
    InvalidRange(String),
    /// The `n` or `last` pagination parameters are malformed.
    #[error("invalid pagination parameter: {0}")]
    InvalidPagination(String),
}

/// Shortens untrusted input before it is echoed in an error message.
pub(crate) fn clip(value: &str) -> String {
    const MAX: usize = 128;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}
