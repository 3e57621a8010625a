//! The referrers API (distribution-spec "Listing Referrers").

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oci_storage::Storage;
use oci_types::{Digest, RepositoryName, media_type};
use serde_json::json;

use oci_types::ErrorCode;

use crate::ApiResult;
use crate::error::ApiError;
use crate::headers::{OCI_FILTERS_APPLIED, value};
use crate::params::Params;

/// `GET /v2/<name>/referrers/<digest>?artifactType=&n=&last=`: an image
/// index of the manifests whose subject is `digest`, sorted by digest.
/// Always 200, empty when there are none; `OCI-Filters-Applied:
/// artifactType` when the filter was used.
///
/// distribution-spec "Listing Referrers": "the registry MAY ... return a
/// Link header" to the next page. A page holds at most `n` descriptors
/// (default [`oci_storage::DEFAULT_REFERRERS_PAGE`]) after the digest
/// `last`; `Link: <...?n=&last=&artifactType=>; rel="next"` when more
/// remain.
pub async fn list(
    storage: &Storage,
    name: &RepositoryName,
    digest: &Digest,
    params: &Params,
) -> ApiResult {
    let artifact_type = params.get("artifactType").filter(|t| !t.is_empty());
    let page = params.pagination()?;
    let (manifests, more) = storage
        .referrers_page(name, digest, artifact_type, &page)
        .await?;
    let link = more.then(|| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(n) = page.n {
            query.append_pair("n", &n.to_string());
        }
        if let Some(last) = manifests.last() {
            query.append_pair("last", &last.digest.to_string());
        }
        if let Some(t) = artifact_type {
            query.append_pair("artifactType", t);
        }
        format!(
            "</v2/{name}/referrers/{digest}?{}>; rel=\"next\"",
            query.finish()
        )
    });
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    });
    // Descriptors always serialise; if one ever did not, an empty 200
    // would tell the client "no referrers": answer 500 instead.
    let body = serde_json::to_vec(&body).map_err(|e| {
        tracing::error!(error = %e, "referrers index did not serialise");
        ApiError::new(
            ErrorCode::Unknown,
            "referrers index could not be serialised",
        )
        .with_status(StatusCode::INTERNAL_SERVER_ERROR)
    })?;
    let mut response = index(body, artifact_type.is_some());
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, value(link)?);
    }
    Ok(response)
}

/// A 200 with the referrers index `body`, saying whether the
/// `artifactType` filter was applied.
pub(crate) fn index(body: impl Into<axum::body::Body>, filtered: bool) -> Response {
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media_type::OCI_INDEX),
        )],
        body.into(),
    )
        .into_response();
    if filtered {
        response.headers_mut().insert(
            OCI_FILTERS_APPLIED,
            HeaderValue::from_static("artifactType"),
        );
    }
    response
}
