//! Limits that keep the registry answering under hostile or broken
//! clients: how long a client may take, how many connections and requests
//! are served at once, how many manifest bytes are held in memory.
//!
//! Every limit is on by default and set from [`Limits`]. Overload is
//! answered at once (`429 TOOMANYREQUESTS` with `Retry-After` for requests,
//! `503` with `Retry-After` for connections), never by an unbounded queue.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use oci_types::ErrorCode;
use oci_types::manifest::MAX_MANIFEST_SIZE;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::Guarded;
use crate::error::ApiError;
use crate::telemetry::{self, Limit};

/// What the server allows one client and all clients together.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// A client has this long to send a complete request head, counted
    /// from when the connection is ready for it. Default 30 s.
    pub header_timeout: Duration,
    /// An idle keep-alive connection (no request in flight, no byte
    /// received) is closed after this long. Default 60 s; a connection
    /// waiting for the next request head is also bounded by
    /// `header_timeout`.
    pub keepalive_timeout: Duration,
    /// A request body that delivers no byte for this long is aborted; an
    /// upload keeps everything up to its last completed chunk. Default
    /// 60 s.
    pub body_timeout: Duration,
    /// Open connections at most; more are answered `503` and closed.
    /// Default 4,096.
    pub max_connections: usize,
    /// Requests in flight at most (a streaming response counts until it is
    /// sent); more are answered `429`. Default 1,024.
    pub max_requests: usize,
    /// Manifest bytes held in memory by all requests together (each body is
    /// at most 4 MiB); requests that would exceed it wait up to
    /// `body_timeout`, then get `429`. Default 64 MiB.
    pub manifest_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_requests: 1024,
            manifest_budget: 64 << 20,
        }
    }
}

/// `Retry-After` sent with every overload answer, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The `429 TOOMANYREQUESTS` answer, with `Retry-After`.
pub(crate) fn too_many(message: &str) -> ApiError {
    ApiError::new(ErrorCode::TooManyRequests, message)
        .with_header(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS))
}

/// Shared counters behind the request cap and the manifest budget.
#[derive(Debug, Clone)]
pub(crate) struct Budgets {
    requests: Arc<Semaphore>,
    manifest_bytes: Arc<Semaphore>,
    manifest_wait: Duration,
}

impl Budgets {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            requests: Arc::new(Semaphore::new(
                limits.max_requests.clamp(1, Semaphore::MAX_PERMITS),
            )),
            // A budget below one largest manifest could never admit one.
            manifest_bytes: Arc::new(Semaphore::new(
                limits
                    .manifest_budget
                    .clamp(MAX_MANIFEST_SIZE, Semaphore::MAX_PERMITS),
            )),
            manifest_wait: limits.body_timeout,
        }
    }

    /// Reserves room for a manifest body of at most `len` bytes, waiting a
    /// bounded time for other manifests to finish.
    pub(crate) async fn manifest(&self, len: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let permits = u32::try_from(len.min(MAX_MANIFEST_SIZE)).unwrap_or(u32::MAX);
        let acquire = Arc::clone(&self.manifest_bytes).acquire_many_owned(permits);
        match tokio::time::timeout(self.manifest_wait, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                telemetry::refused(Limit::ManifestBudget);
                Err(too_many("too many manifests are being pushed; retry"))
            }
        }
    }
}

/// Middleware: refuses a request beyond [`Limits::max_requests`] with
/// `429`; an admitted request holds its place until its response body is
/// finished or dropped.
pub(crate) async fn request_cap(
    State(budgets): State<Budgets>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(permit) = Arc::clone(&budgets.requests).try_acquire_owned() else {
        telemetry::refused(Limit::Requests);
        let mut response =
            too_many("the registry is serving too many requests; retry").into_response();
        // The request body was not read: the connection cannot be reused.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    };
    next.run(request)
        .await
        .map(|body| axum::body::Body::new(Guarded::new(body, permit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_configured_size_makes_budgets() {
        let mut limits = Limits {
            max_requests: usize::MAX,
            manifest_budget: usize::MAX,
            ..Limits::default()
        };
        let _ = Budgets::new(&limits);
        limits.max_requests = 0;
        limits.manifest_budget = 0;
        let budgets = Budgets::new(&limits);
        assert_eq!(budgets.requests.available_permits(), 1);
        assert_eq!(
            budgets.manifest_bytes.available_permits(),
            MAX_MANIFEST_SIZE
        );
    }
}
