//! Request ids, routing and the access log: the one layer every request
//! passes first.
//!
//! Every request gets an id: the client's `X-Request-Id` when it is a
//! plausible id (1 to 128 characters of `A-Z a-z 0-9 . _ - :`), else a new
//! UUID. It is echoed on the response and is in the request's extensions
//! ([`RequestId`]) for the layers inside.
//!
//! One access-log line per request, at `info` on the target
//! `oci_http::access`, written when the response body has been sent (or
//! the client went away): method, path, endpoint kind, status, bytes
//! received and sent, duration, remote address, user agent and request
//! id. The query string is never logged: it can carry secrets.
//!
//! The request metrics (count, duration, bytes) are recorded at that same
//! point, from the same byte counts, whether or not the line is written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Body as AxumBody;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::body::Guarded;
use crate::endpoint::Routed;

/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of a request (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub HeaderValue);

/// The address of the client, put into a request's extensions by the
/// connection loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// Longest client-chosen request id kept.
const MAX_ID_LEN: usize = 128;

/// A new request id: UUID-shaped, a random per-process prefix and a
/// counter (no system call per request, unlike a random v4 UUID).
fn new_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = uuid::Uuid::from_u64_pair(prefix, n);
    let mut buf = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .expect("a UUID is a valid header value")
}

/// The client's id if it is plausible, else a new one.
fn request_id(given: Option<&HeaderValue>) -> HeaderValue {
    let plausible = |v: &&HeaderValue| {
        let b = v.as_bytes();
        (1..=MAX_ID_LEN).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"._-:".contains(c))
    };
    match given.filter(plausible) {
        Some(v) => v.clone(),
        None => new_id(),
    }
}

/// Middleware: assigns the request id, routes the request (see
/// [`crate::endpoint::route`]), and once the response body is done
/// records the request metrics (when the recorder is installed, see
/// [`crate::telemetry`]) and writes the access-log line (when the
/// `oci_http::access` target is enabled at `info`). With neither it costs
/// next to nothing beyond the routing every request needs.
pub async fn log(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers().get(X_REQUEST_ID));
    let routed = crate::endpoint::route(request.method(), request.uri().path());
    let kind = match &routed {
        Routed::To(endpoint) => endpoint.kind(),
        Routed::Answered { kind, .. } => *kind,
    };
    let logged = tracing::enabled!(target: "oci_http::access", tracing::Level::INFO);
    let measured = crate::telemetry::enabled();
    if !logged && !measured {
        let mut response = match routed {
            Routed::To(endpoint) => {
                let extensions = request.extensions_mut();
                extensions.insert(endpoint);
                extensions.insert(RequestId(id.clone()));
                next.run(request).await
            }
            Routed::Answered { response, .. } => response,
        };
        response.headers_mut().insert(X_REQUEST_ID, id);
        return response;
    }
    let received = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let line = logged.then(|| Line {
        path: request.uri().path().to_owned(),
        remote: request.extensions().get::<Peer>().map(|p| p.0),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect()),
        id: id.clone(),
    });
    let mut entry = Entry {
        started,
        method: request.method().clone(),
        kind: kind.0,
        status: StatusCode::OK,
        received: Arc::clone(&received),
        sent: Arc::clone(&sent),
        measured,
        line,
    };
    let mut response = match routed {
        Routed::To(endpoint) => {
            let extensions = request.extensions_mut();
            extensions.insert(endpoint);
            extensions.insert(RequestId(id.clone()));
            let request = request.map(|b| AxumBody::new(Guarded::counted(b, (), received)));
            next.run(request).await
        }
        Routed::Answered { response, .. } => response,
    };
    response.headers_mut().insert(X_REQUEST_ID, id);
    entry.status = response.status();
    response.map(|b| AxumBody::new(Guarded::counted(b, entry, sent)))
}

/// A finished request: recorded in the metrics (when measured) and written
/// as the access-log line (when logged) once dropped, i.e. once the
/// response body is done.
struct Entry {
    started: Instant,
    method: Method,
    kind: &'static str,
    status: StatusCode,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    /// Record the request metrics.
    measured: bool,
    /// What only the access-log line needs, when it is written.
    line: Option<Line>,
}

/// The access-log line's own fields.
struct Line {
    path: String,
    remote: Option<SocketAddr>,
    user_agent: Option<String>,
    id: HeaderValue,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let received = self.received.load(Ordering::Relaxed);
        let sent = self.sent.load(Ordering::Relaxed);
        if self.measured {
            crate::telemetry::request(
                self.kind,
                &self.method,
                self.status,
                received,
                sent,
                elapsed,
            );
        }
        let Some(line) = &self.line else {
            return;
        };
        let remote = line.remote.map(|r| r.to_string());
        tracing::info!(
            target: "oci_http::access",
            method = %self.method,
            path = %line.path,
            endpoint = self.kind,
            status = self.status.as_u16(),
            bytes_in = received,
            bytes_out = sent,
            duration_ms = elapsed.as_secs_f64() * 1e3,
            remote = remote.as_deref().unwrap_or("-"),
            user_agent = line.user_agent.as_deref().unwrap_or("-"),
            request_id = line.id.to_str().unwrap_or("-"),
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_ids_are_kept_others_replaced() {
        let kept = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(request_id(Some(&kept)), kept);
        let mut seen = std::collections::HashSet::new();
        for bad in ["", "has space", "semi;colon", &"x".repeat(129)] {
            let given = HeaderValue::from_str(bad).unwrap();
            let new = request_id(Some(&given));
            assert_ne!(new, given);
            assert!(uuid::Uuid::parse_str(new.to_str().unwrap()).is_ok());
            assert!(seen.insert(new), "ids are unique");
        }
        assert!(uuid::Uuid::parse_str(request_id(None).to_str().unwrap()).is_ok());
    }
}
