//! Blob reads and deletes (distribution-spec "Pulling blobs", "Deleting
//! Blobs").

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use oci_storage::Storage;
use oci_types::{ByteRange, Digest, ErrorCode, RepositoryName, media_type};

use crate::headers::{DOCKER_CONTENT_DIGEST, value};
use crate::{ApiError, ApiResult};

/// `GET`/`HEAD /v2/<name>/blobs/<digest>`, honouring a single `Range`.
///
/// With redirects on (`[storage] redirect`), a `GET` of a blob the
/// repository holds is answered `307` to a presigned URL of the store
/// ([`Storage::blob_redirect`]); a `HEAD` is always answered here.
pub async fn get(
    storage: &Storage,
    name: &RepositoryName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult {
    // RFC 9110 §14.2: a Range the server does not understand (another
    // unit, several ranges, bad syntax) is ignored and the whole blob sent.
    let range = requested_range(headers);
    let mut response_headers = blob_headers(digest)?;
    if head && range.is_none() {
        let meta = storage.blob_stat(name, digest).await?;
        response_headers.insert(header::CONTENT_LENGTH, meta.size.into());
        return Ok((StatusCode::OK, response_headers).into_response());
    }
    if !head && let Some(to) = storage.blob_redirect(name, digest, range).await? {
        return redirect(digest, &to, range.is_none());
    }
    let read = storage.blob_get(name, digest, range).await?;
    let stream = (!head).then(|| read.stream.map_err(std::io::Error::other).boxed());
    answer(
        response_headers,
        Some(read.size),
        read.range.as_ref(),
        stream,
    )
}

/// The size of a blob whose whole `GET` (no `Range`) was redirected, in
/// the response's extensions: the pull event's (a `307` has no body to
/// measure; a ranged `GET` is no pull, redirected or not).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Redirected {
    /// The blob's size in bytes.
    pub(crate) size: u64,
}

/// `307 Temporary Redirect` to the blob's presigned URL, with its
/// `Docker-Content-Digest`. The URL is a credential until it expires: it is
/// written to the `Location` header only, never logged.
///
/// distribution-spec, "API": "Registries MAY respond to any request with a
/// redirect per RFC 9110 (section 15.4); clients SHOULD follow such
/// redirects, and MUST NOT forward `Authorization` headers across host
/// boundaries unless explicitly configured to do so. The status codes
/// documented in this specification are those returned after any
/// redirects have been followed." Docker Registry HTTP API v2, "Pulling a
/// Layer": "This endpoint may issue a 307 (302 for <HTTP 1.1) redirect to
/// another service for downloading the layer and clients should be
/// prepared to handle redirects." A client's `Range` goes along with it:
/// the store honours it on the presigned `GET`.
fn redirect(digest: &Digest, to: &oci_storage::BlobRedirect, whole: bool) -> ApiResult {
    let mut headers = HeaderMap::new();
    // Not `value`, which logs a value it refuses (a URL is ASCII anyway).
    let location = HeaderValue::from_str(to.url.as_str())
        .map_err(|_| ApiError::new(ErrorCode::Unknown, "presigned URL is not a header value"))?;
    headers.insert(header::LOCATION, location);
    headers.insert(DOCKER_CONTENT_DIGEST, value(digest.as_str())?);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    // Each answer carries a fresh, short-lived URL: not for caches.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let mut response = (StatusCode::TEMPORARY_REDIRECT, headers).into_response();
    if whole {
        response
            .extensions_mut()
            .insert(Redirected { size: to.size });
    }
    Ok(response)
}

/// The `Range` a blob request asks for. RFC 9110 §14.2: one the server
/// does not understand (another unit, several ranges, bad syntax) is
/// ignored and the whole blob sent.
pub(crate) fn requested_range(headers: &HeaderMap) -> Option<ByteRange> {
    headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.parse::<ByteRange>().ok())
}

/// The headers every blob answer carries.
pub(crate) fn blob_headers(digest: &Digest) -> Result<HeaderMap, ApiError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media_type::OCTET_STREAM),
    );
    headers.insert(DOCKER_CONTENT_DIGEST, value(digest.as_str())?);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, value(format!("\"{digest}\""))?);
    Ok(headers)
}

/// A blob answer: 206 with `Content-Range` for a range of a blob of
/// `size` bytes, else 200; `Content-Length` when the length is known; the
/// bytes unless a HEAD (`stream` `None`).
pub(crate) fn answer(
    mut headers: HeaderMap,
    size: Option<u64>,
    range: Option<&std::ops::Range<u64>>,
    stream: Option<BoxStream<'static, std::io::Result<Bytes>>>,
) -> Result<Response, ApiError> {
    let status = match (range, size) {
        (Some(r), Some(size)) => {
            headers.insert(
                header::CONTENT_RANGE,
                value(format!("bytes {}-{}/{size}", r.start, r.end - 1))?,
            );
            headers.insert(header::CONTENT_LENGTH, (r.end - r.start).into());
            StatusCode::PARTIAL_CONTENT
        }
        _ => {
            if let Some(size) = size {
                headers.insert(header::CONTENT_LENGTH, size.into());
            }
            StatusCode::OK
        }
    };
    Ok(match stream {
        Some(stream) => (status, headers, Body::from_stream(stream)).into_response(),
        None => (status, headers).into_response(),
    })
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
