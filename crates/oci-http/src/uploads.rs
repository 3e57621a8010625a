//! Blob upload sessions (distribution-spec "Pushing blobs": monolithic,
//! chunked and streamed uploads, and mounts).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use oci_storage::{MountOutcome, Storage, UploadStatus};
use oci_types::{ContentRange, Digest, DigestAlgorithm, ErrorCode, RepositoryName};
use uuid::Uuid;

use crate::error::ApiError;
use crate::headers::{DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, upload_range, value};
use crate::params::Params;
use crate::{ApiResult, body};

/// `POST /v2/<name>/blobs/uploads/`: with `mount` (and optionally `from`) a
/// cross-repository mount; with `digest` a monolithic upload of the body;
/// otherwise a new session (202).
pub async fn start(
    storage: &Storage,
    name: &RepositoryName,
    params: &Params,
    request_body: Body,
) -> ApiResult {
    if let Some(mount) = params.get("mount") {
        let digest: Digest = mount.parse()?;
        let from = params
            .get("from")
            .map(str::parse::<RepositoryName>)
            .transpose()?;
        if storage.blob_mount(name, &digest, from.as_ref()).await? == MountOutcome::Mounted {
            let mut response = created(name, &digest)?;
            // For the event notification of the mount (see `crate::notify`).
            response
                .extensions_mut()
                .insert(crate::notify::Mounted { from });
            return Ok(response);
        }
        // Spec: a registry unable to mount answers as for a new session.
        let status = storage.upload_start(name, DigestAlgorithm::Sha256).await?;
        return session(name, status, StatusCode::ACCEPTED);
    }
    if let Some(digest) = params.get("digest") {
        let digest: Digest = digest.parse()?;
        let meta = storage
            .blob_put(name, &digest, body::stream(request_body))
            .await?;
        return created(name, &meta.digest);
    }
    let status = storage.upload_start(name, DigestAlgorithm::Sha256).await?;
    session(name, status, StatusCode::ACCEPTED)
}

/// `GET /v2/<name>/blobs/uploads/<id>`: 204 with the received `Range`.
pub async fn status(storage: &Storage, name: &RepositoryName, id: &Uuid) -> ApiResult {
    let status = storage.upload_status(name, id).await?;
    session(name, status, StatusCode::NO_CONTENT)
}

/// `PATCH /v2/<name>/blobs/uploads/<id>`: append a chunk (with
/// `Content-Range`) or stream the rest of the blob (without).
pub async fn patch(
    storage: &Storage,
    name: &RepositoryName,
    id: &Uuid,
    headers: &HeaderMap,
    request_body: Body,
) -> ApiResult {
    let range = content_range(headers)?;
    check_length(headers, range)?;
    let status = storage
        .upload_append(name, id, range, body::stream(request_body))
        .await?;
    session(name, status, StatusCode::ACCEPTED)
}

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: the optional last chunk,
/// then verification and publication (201).
pub async fn complete(
    storage: &Storage,
    name: &RepositoryName,
    id: &Uuid,
    params: &Params,
    headers: &HeaderMap,
    request_body: Body,
) -> ApiResult {
    let digest: Digest = params
        .get("digest")
        .ok_or_else(|| ApiError::new(ErrorCode::DigestInvalid, "the digest parameter is required"))?
        .parse()?;
    let range = content_range(headers)?;
    check_length(headers, range)?;
    let meta = storage
        .upload_complete(name, id, &digest, range, Some(body::stream(request_body)))
        .await?;
    created(name, &meta.digest)
}

/// `DELETE /v2/<name>/blobs/uploads/<id>`: 204.
pub async fn cancel(storage: &Storage, name: &RepositoryName, id: &Uuid) -> ApiResult {
    storage.upload_cancel(name, id).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::CONTENT_LENGTH, HeaderValue::from_static("0"))],
    )
        .into_response())
}

fn content_range(headers: &HeaderMap) -> Result<Option<ContentRange>, ApiError> {
    match headers.get(header::CONTENT_RANGE) {
        None => Ok(None),
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                ApiError::new(ErrorCode::BlobUploadInvalid, "Content-Range is not ASCII")
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            })?;
            text.parse().map(Some).map_err(|e: oci_types::Error| {
                ApiError::new(ErrorCode::BlobUploadInvalid, e.to_string())
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            })
        }
    }
}

/// A `Content-Length` that contradicts `Content-Range` is refused before
/// any byte is stored.
fn check_length(headers: &HeaderMap, range: Option<ContentRange>) -> Result<(), ApiError> {
    if let (Some(range), Some(len)) = (range, body::content_length(headers))
        && range.len() != len
    {
        return Err(ApiError::new(
            ErrorCode::SizeInvalid,
            format!(
                "Content-Range covers {} bytes, Content-Length is {len}",
                range.len()
            ),
        ));
    }
    Ok(())
}

/// The 202/204 answer describing a session.
fn session(name: &RepositoryName, status: UploadStatus, code: StatusCode) -> ApiResult {
    Ok((
        code,
        [
            (
                header::LOCATION,
                value(format!("/v2/{name}/blobs/uploads/{}", status.id))?,
            ),
            (header::RANGE, upload_range(status.offset)),
            (DOCKER_UPLOAD_UUID, value(status.id.to_string())?),
            (header::CONTENT_LENGTH, HeaderValue::from_static("0")),
        ],
    )
        .into_response())
}

/// The 201 answer for a blob now in the repository.
fn created(name: &RepositoryName, digest: &Digest) -> ApiResult {
    Ok((
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                value(format!("/v2/{name}/blobs/{digest}"))?,
            ),
            (DOCKER_CONTENT_DIGEST, value(digest.as_str())?),
            (header::CONTENT_LENGTH, HeaderValue::from_static("0")),
        ],
    )
        .into_response())
}
