//! Header names of the distribution API and builders for their values.

use axum::http::{HeaderName, HeaderValue};

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

/// A header value from a string the registry built from validated parts.
/// Such strings are always visible ASCII; anything else becomes empty
/// rather than panicking.
pub fn value(s: impl AsRef<str>) -> HeaderValue {
    HeaderValue::from_str(s.as_ref()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Range` of an upload session holding `offset` bytes: `0-<last>`
/// inclusive, `0-0` when empty (as Docker's registry answers).
pub fn upload_range(offset: u64) -> HeaderValue {
    value(format!("0-{}", offset.saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges() {
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(1), "0-0");
        assert_eq!(upload_range(100), "0-99");
        assert_eq!(value("bad\nvalue"), "");
    }
}
