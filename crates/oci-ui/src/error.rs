//! The UI's error: what a page could not show, and the status it answers.

use axum::http::StatusCode;

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    /// Nothing here, or nothing the visitor may see (404 either way: a
    /// hidden repository is not told apart from an absent one).
    #[error("not found")]
    NotFound,
    /// The visitor may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request makes no sense.
    #[error("{0}")]
    BadRequest(String),
    /// A form without its CSRF token, or with another session's.
    #[error("this form expired or did not come from this site: reload the page and try again")]
    Csrf,
    /// Too many failed logins.
    #[error("too many failed logins; try again later")]
    Throttled,
    /// Storage failed.
    #[error(transparent)]
    Storage(oci_storage::StorageError),
}

impl From<oci_storage::StorageError> for UiError {
    fn from(e: oci_storage::StorageError) -> Self {
        use oci_storage::StorageError as S;
        match e {
            S::NameUnknown(_) | S::ManifestUnknown(_) | S::BlobUnknown(_) => Self::NotFound,
            e => Self::Storage(e),
        }
    }
}

impl UiError {
    /// The HTTP status it answers.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Forbidden(_) | Self::Csrf => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Self::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
