//! Manifests (distribution-spec "Pulling manifests", "Pushing Manifests",
//! "Deleting Manifests").

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use oci_storage::{ManifestMeta, Storage};
use oci_types::manifest::MAX_MANIFEST_SIZE;
use oci_types::{Reference, RepositoryName};

use crate::blobs::accepted;
use crate::headers::{DOCKER_CONTENT_DIGEST, OCI_SUBJECT, value};
use crate::limits::Budgets;
use crate::{ApiResult, body};

/// `GET`/`HEAD /v2/<name>/manifests/<reference>`: the exact bytes pushed,
/// with the media type they were pushed with.
pub async fn get(
    storage: &Storage,
    name: &RepositoryName,
    reference: &Reference,
    head: bool,
) -> ApiResult {
    let (meta, body) = if head {
        (storage.manifest_head(name, reference).await?, None)
    } else {
        let m = storage.manifest_get(name, reference).await?;
        (m.meta, Some(m.body))
    };
    found(&meta, body)
}

/// The answer to a manifest GET (with `body`) or HEAD.
pub(crate) fn found(meta: &ManifestMeta, body: Option<Bytes>) -> ApiResult {
    let headers = [
        (header::CONTENT_TYPE, value(&meta.media_type)?),
        (DOCKER_CONTENT_DIGEST, value(meta.digest.as_str())?),
        (header::ETAG, value(format!("\"{}\"", meta.digest))?),
        (header::CONTENT_LENGTH, HeaderValue::from(meta.size)),
    ];
    Ok(match body {
        Some(body) => (StatusCode::OK, headers, body).into_response(),
        None => (StatusCode::OK, headers).into_response(),
    })
}

/// `PUT /v2/<name>/manifests/<reference>`: 201 with `Location`, the digest,
/// and `OCI-Subject` when the manifest has a subject. Bodies over
/// [`MAX_MANIFEST_SIZE`] are refused with 413 before being buffered, and
/// every body is buffered within the manifest budget of [`crate::Limits`].
pub(crate) async fn put(
    storage: &Storage,
    budgets: &Budgets,
    name: &RepositoryName,
    reference: &Reference,
    headers: &HeaderMap,
    request_body: Body,
) -> ApiResult {
    let declared = body::content_length(headers).map_or(MAX_MANIFEST_SIZE, |n| {
        usize::try_from(n).unwrap_or(usize::MAX)
    });
    if declared > MAX_MANIFEST_SIZE {
        return Err(body::too_large(MAX_MANIFEST_SIZE));
    }
    // Held until the manifest is stored: the body and what parsing it
    // allocates stay within the budget.
    let _budget = budgets.manifest(declared).await?;
    let bytes = body::read_limited(headers, request_body, declared).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let meta = storage
        .manifest_put(name, reference, bytes, content_type)
        .await?;
    let mut response = (
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                value(format!("/v2/{name}/manifests/{}", meta.digest))?,
            ),
            (DOCKER_CONTENT_DIGEST, value(meta.digest.as_str())?),
            (header::CONTENT_LENGTH, HeaderValue::from_static("0")),
        ],
    )
        .into_response();
    if let Some(subject) = &meta.subject {
        response
            .headers_mut()
            .insert(OCI_SUBJECT, value(subject.as_str())?);
    }
    // For the event notification of the push (see `crate::notify`).
    response.extensions_mut().insert(meta);
    Ok(response)
}

/// `DELETE /v2/<name>/manifests/<reference>`: by digest deletes the
/// manifest, by tag only the tag (spec v1.1). 202.
pub async fn delete(storage: &Storage, name: &RepositoryName, reference: &Reference) -> ApiResult {
    storage.manifest_delete(name, reference).await?;
    Ok(accepted())
}
