//! Blob reads and deletes (distribution-spec "Pulling blobs", "Deleting
//! Blobs").

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use oci_storage::Storage;
use oci_types::{ByteRange, Digest, RepositoryName, media_type};

use crate::ApiResult;
use crate::headers::{DOCKER_CONTENT_DIGEST, value};

/// `GET`/`HEAD /v2/<name>/blobs/<digest>`, honouring a single `Range`.
pub async fn get(
    storage: &Storage,
    name: &RepositoryName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult {
    // RFC 9110 §14.2: a Range the server does not understand (another
    // unit, several ranges, bad syntax) is ignored and the whole blob sent.
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.parse::<ByteRange>().ok());
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media_type::OCTET_STREAM),
    );
    response_headers.insert(DOCKER_CONTENT_DIGEST, value(digest.as_str())?);
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(header::ETAG, value(format!("\"{digest}\""))?);
    if head && range.is_none() {
        let meta = storage.blob_stat(name, digest).await?;
        response_headers.insert(header::CONTENT_LENGTH, meta.size.into());
        return Ok((StatusCode::OK, response_headers).into_response());
    }
    let read = storage.blob_get(name, digest, range).await?;
    let status = match &read.range {
        Some(r) => {
            response_headers.insert(
                header::CONTENT_RANGE,
                value(format!("bytes {}-{}/{}", r.start, r.end - 1, read.size))?,
            );
            response_headers.insert(header::CONTENT_LENGTH, (r.end - r.start).into());
            StatusCode::PARTIAL_CONTENT
        }
        None => {
            response_headers.insert(header::CONTENT_LENGTH, read.size.into());
            StatusCode::OK
        }
    };
    if head {
        return Ok((status, response_headers).into_response());
    }
    let body = Body::from_stream(read.stream.map_err(std::io::Error::other));
    Ok((status, response_headers, body).into_response())
}

/// `DELETE /v2/<name>/blobs/<digest>`: 202 once unlinked.
pub async fn delete(storage: &Storage, name: &RepositoryName, digest: &Digest) -> ApiResult {
    storage.blob_delete(name, digest).await?;
    Ok(accepted())
}

/// An empty 202 answer.
pub(crate) fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_LENGTH, HeaderValue::from_static("0"))],
    )
        .into_response()
}
