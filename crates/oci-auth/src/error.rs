//! The crate's one error type. The HTTP layer maps [`AuthError::Refused`]
//! to the spec's `UNAUTHORIZED`/`DENIED` and [`AuthError::Throttled`] to
//! `429`; the others are configuration or file problems, reported at start
//! or reload.

use std::path::PathBuf;

/// What can go wrong in access control.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A bad `[auth]` or `[access]` setting.
    #[error("{0}")]
    Config(String),
    /// A file named in the configuration could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file was read but its content is unusable (htpasswd line, key,
    /// JWKS).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line where one applies.
        message: String,
    },
    /// A signing or verification key is unusable.
    #[error("key: {0}")]
    Key(String),
    /// Credentials or a token were refused. The message is for logs at
    /// debug level, never for the client (it could help an attacker).
    #[error("refused: {0}")]
    Refused(String),
    /// Too many failed logins from this client (or for this user from this
    /// client): try again after the given time.
    #[error("too many failed logins; retry in {0:?}")]
    Throttled(std::time::Duration),
    /// An OIDC issuer's keys could not be fetched.
    #[error("fetching keys: {0}")]
    Fetch(String),
}

impl AuthError {
    /// A [`AuthError::Refused`] with `why`.
    pub fn refused(why: impl Into<String>) -> Self {
        Self::Refused(why.into())
    }
}

/// The crate's result type.
pub type Result<T, E = AuthError> = std::result::Result<T, E>;
