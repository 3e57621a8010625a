//! The referrers API (distribution-spec "Listing Referrers").

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use oci_storage::Storage;
use oci_types::{Digest, RepositoryName, media_type};
use serde_json::json;

use crate::ApiResult;
use crate::headers::OCI_FILTERS_APPLIED;
use crate::params::Params;

/// `GET /v2/<name>/referrers/<digest>?artifactType=`: an image index of
/// the manifests whose subject is `digest`. Always 200, empty when there
/// are none; `OCI-Filters-Applied: artifactType` when the filter was used.
pub async fn list(
    storage: &Storage,
    name: &RepositoryName,
    digest: &Digest,
    params: &Params,
) -> ApiResult {
    let artifact_type = params.get("artifactType").filter(|t| !t.is_empty());
    let manifests = storage.referrers(name, digest, artifact_type).await?;
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media_type::OCI_INDEX),
        )],
        body,
    )
        .into_response();
    if artifact_type.is_some() {
        response.headers_mut().insert(
            OCI_FILTERS_APPLIED,
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}
