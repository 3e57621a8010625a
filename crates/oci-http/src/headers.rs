//! Header names of the distribution API and builders for their values.

use axum::http::{HeaderName, HeaderValue};
use oci_types::ErrorCode;

use crate::error::ApiError;

/// `Docker-Content-Digest`: the digest of the content in the response.
pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
/// `Docker-Upload-UUID`: the upload session id.
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
/// `Docker-Distribution-API-Version`, sent on every response.
pub const DOCKER_API_VERSION: HeaderName =
    HeaderName::from_static("docker-distribution-api-version");
/// `OCI-Subject`: the subject of a pushed referrer (spec "Pushing Manifests
/// with Subject").
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
/// `OCI-Filters-Applied`: filters applied to a referrers listing.
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// A header value from a string the registry built from validated parts
/// (digests, names, tags, numbers: visible ASCII by construction). Anything
/// else is a bug upstream, answered `500 UNKNOWN` rather than sent as a
/// header that silently lost its value.
pub fn value(s: impl AsRef<str>) -> Result<HeaderValue, ApiError> {
    let s = s.as_ref();
    HeaderValue::from_str(s).map_err(|_| {
        tracing::error!(value = ?s, "a header value built by the registry is not visible ASCII");
        ApiError::new(
            ErrorCode::Unknown,
            "internal error building a response header",
        )
    })
}

/// The `Range` of an upload session holding `offset` bytes: `0-<last>`
/// inclusive, `0-0` when empty (as Docker's registry answers).
pub fn upload_range(offset: u64) -> HeaderValue {
    HeaderValue::try_from(format!("0-{}", offset.saturating_sub(1)))
        .expect("digits and a dash are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges() {
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(1), "0-0");
        assert_eq!(upload_range(100), "0-99");
    }

    #[test]
    fn an_unencodable_value_is_an_error_not_an_empty_header() {
        assert_eq!(value("bad\nvalue").unwrap_err().code(), ErrorCode::Unknown);
        assert_eq!(value("ok").unwrap(), "ok");
    }
}
