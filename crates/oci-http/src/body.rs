//! Bodies: request bodies streamed for blobs and bounded for manifests,
//! and [`Guarded`], the one wrapper that ties a value's life (a request's
//! place, a connection's in-flight count, an access-log line) and a byte
//! count to a body being sent or received.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body::{Frame, SizeHint};
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

/// Whether a request declares a body (chunked, or a non-zero length).
pub fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || content_length(headers).is_some_and(|n| n > 0)
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

/// Where a [`Guarded`] body adds the lengths of its data frames.
pub trait ByteCount {
    /// Adds `n` bytes.
    fn add(&self, n: u64);
}

impl ByteCount for Arc<AtomicU64> {
    fn add(&self, n: u64) {
        self.fetch_add(n, Ordering::Relaxed);
    }
}

impl ByteCount for () {
    fn add(&self, _: u64) {}
}

pin_project_lite::pin_project! {
    /// A body that keeps `guard` alive until the body is finished or
    /// dropped, and optionally adds the length of every data frame to a
    /// counter (read when the guard is dropped: all frames are counted).
    pub struct Guarded<B, G, C = ()> {
        #[pin]
        body: B,
        guard: Option<G>,
        count: Option<C>,
    }
}

impl<B, G> Guarded<B, G> {
    /// Wraps `body`, holding `guard` for as long as it is being sent.
    pub fn new(body: B, guard: G) -> Self {
        Self {
            body,
            guard: Some(guard),
            count: None,
        }
    }
}

impl<B, G, C: ByteCount> Guarded<B, G, C> {
    /// Like [`Guarded::new`], also counting the bytes into `count`.
    pub fn counted(body: B, guard: G, count: C) -> Self {
        Self {
            body,
            guard: Some(guard),
            count: Some(count),
        }
    }
}

impl<B: http_body::Body<Data = Bytes>, G, C: ByteCount> http_body::Body for Guarded<B, G, C> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(count), Some(data)) = (this.count.as_ref(), frame.data_ref()) {
                    count.add(data.len() as u64);
                }
            }
            Poll::Ready(None | Some(Err(_))) => {
                this.guard.take();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
