//! Request bodies: streamed for blobs, bounded for manifests.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_storage::BodyStream;
use oci_types::ErrorCode;

use crate::error::ApiError;

/// The body as a byte stream for the storage engine; nothing is buffered
/// beyond what the socket delivers.
pub fn stream(body: Body) -> BodyStream {
    body.into_data_stream()
        .map_err(std::io::Error::other)
        .boxed()
}

/// The declared `Content-Length`, if any and well-formed.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The 413 answer to a manifest body over `limit` bytes.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::ManifestInvalid,
        format!("manifest larger than {limit} bytes"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// Reads a body of at most `limit` bytes. A larger declared or actual body
/// is refused with 413 before it is buffered.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || too_large(limit);
    if content_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut buf = bytes::BytesMut::with_capacity(
        content_length(headers).map_or(0, |n| (n as usize).min(limit)),
    );
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let frame = frame
            .map_err(|e| ApiError::new(ErrorCode::ManifestInvalid, format!("reading body: {e}")))?;
        if buf.len() + frame.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&frame);
    }
    Ok(buf.freeze())
}
