//! The HTTP edge of errors: every failure becomes the spec's JSON body
//! (distribution-spec "Error Codes") with the right status.
//!
//! Handlers return `Result<Response, ApiError>` and use `?`: the `From`
//! conversions below are the single place where storage and parse errors
//! are mapped to codes and statuses.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oci_storage::StorageError;
use oci_types::ErrorCode;
use serde::Serialize;

use crate::telemetry::{self, Limit};

/// An error answer: status, spec code, message, and any extra headers.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with the status the spec gives `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: default_status(code),
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Overrides the status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The spec code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

fn default_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BlobUnknown
        | ErrorCode::BlobUploadUnknown
        | ErrorCode::ManifestUnknown
        | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Denied => StatusCode::FORBIDDEN,
        ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: ErrorCode,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            errors: [Entry {
                code: self.code,
                message: &self.message,
            }],
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"errors\":[]}".to_vec());
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

impl From<oci_types::Error> for ApiError {
    fn from(e: oci_types::Error) -> Self {
        use oci_types::Error as E;
        let code = match &e {
            E::InvalidDigest { .. } => ErrorCode::DigestInvalid,
            E::InvalidName { .. } => ErrorCode::NameInvalid,
            E::InvalidTag { .. } | E::InvalidManifest(_) | E::UnsupportedManifest(_) => {
                ErrorCode::ManifestInvalid
            }
            E::InvalidRange(_) => ErrorCode::BlobUploadInvalid,
            E::InvalidPagination(_) => ErrorCode::Unsupported,
            E::InvalidHashState => ErrorCode::Unknown,
            _ => ErrorCode::Unknown,
        };
        let err = Self::new(code, e.to_string());
        match code {
            ErrorCode::Unsupported => err.with_status(StatusCode::BAD_REQUEST),
            _ => err,
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        use StorageError as S;
        let message = e.to_string();
        match e {
            S::NameUnknown(_) => Self::new(ErrorCode::NameUnknown, message),
            S::BlobUnknown(_) => Self::new(ErrorCode::BlobUnknown, message),
            S::ManifestUnknown(_) => Self::new(ErrorCode::ManifestUnknown, message),
            S::UploadUnknown(_) => Self::new(ErrorCode::BlobUploadUnknown, message),
            S::RangeInvalid { expected, .. } => Self::new(ErrorCode::BlobUploadInvalid, message)
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(header::RANGE, crate::headers::upload_range(expected)),
            S::RangeNotSatisfiable { size } => Self::new(ErrorCode::BlobUnknown, message)
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(
                    header::CONTENT_RANGE,
                    HeaderValue::try_from(format!("bytes */{size}"))
                        .unwrap_or(HeaderValue::from_static("bytes */0")),
                ),
            S::SizeInvalid { .. } => Self::new(ErrorCode::SizeInvalid, message),
            S::DigestMismatch { .. } => Self::new(ErrorCode::DigestInvalid, message),
            S::ManifestInvalid(inner) => inner.into(),
            S::ManifestBlobUnknown(_) => Self::new(ErrorCode::ManifestBlobUnknown, message),
            S::Body(_) => Self::new(ErrorCode::BlobUploadInvalid, message),
            S::ImmutableTag { .. } => Self::new(ErrorCode::Denied, message),
            S::Busy(_) => {
                telemetry::refused(Limit::LockWait);
                crate::limits::too_many(&message)
            }
            S::TooManyUploads { .. } => {
                telemetry::refused(Limit::Uploads);
                crate::limits::too_many(&message)
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                Self::new(ErrorCode::Unknown, "internal storage error")
            }
        }
    }
}
