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
//! received and sent, duration, remote address, authenticated user, user
//! agent and request id. The query string is never logged: it can carry secrets.
//!
//! The request metrics (count, duration, bytes) are recorded at that same
//! point, from the same byte counts, whether or not the line is written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Body as AxumBody;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::body::Guarded;
use crate::endpoint::{Routed, Routes};
use axum::extract::State;

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

/// Ids a thread takes from the process's counter at a time.
const ID_BLOCK: u64 = 1 << 16;

/// A new request id: UUID-shaped, a random per-process prefix and a
/// counter (no system call per request, unlike a random v4 UUID). Each
/// thread counts through a block of [`ID_BLOCK`] numbers of its own, so
/// threads on different cores do not contend for one counter.
fn new_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        /// The next number of this thread's block, and the block's end.
        static BLOCK: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    }
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = BLOCK.with(|block| {
        let (mut next, mut end) = block.get();
        if next == end {
            next = COUNTER.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        block.set((next + 1, end));
        next
    });
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
/// [`crate::endpoint::route_in`] with `routes`), and once the response body is done
/// records the request metrics (when the recorder is installed, see
/// [`crate::telemetry`]) and writes the access-log line (when the
/// `oci_http::access` target is enabled at `info`). With neither it costs
/// next to nothing beyond the routing every request needs.
pub async fn log(State(routes): State<Routes>, mut request: Request, next: Next) -> Response {
    let logged = logged();
    let measured = crate::telemetry::enabled();
    // The clock is read only for a request that is recorded.
    let started = (logged || measured).then(Instant::now);
    let id = request_id(request.headers().get(X_REQUEST_ID));
    let routed = crate::endpoint::route_in(&routes, request.method(), request.uri().path());
    let kind = match &routed {
        Routed::To(endpoint) => endpoint.kind(),
        Routed::Answered { kind, .. } => *kind,
    };
    let Some(started) = started else {
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
    };
    let line = logged.then(|| Line {
        // Clones of shared bytes, not copies: the line is formatted only
        // when written.
        uri: request.uri().clone(),
        remote: request.extensions().get::<Peer>().map(|p| p.0),
        user_agent: request.headers().get(header::USER_AGENT).cloned(),
        id: id.clone(),
        user: None,
    });
    let mut entry = Entry {
        started,
        method: request.method().clone(),
        kind,
        status: StatusCode::OK,
        counts: None,
        small_body: 0,
        measured,
        line,
    };
    let mut response = match routed {
        Routed::To(endpoint) => {
            // A request without a body (most GETs and HEADs) is not
            // wrapped: it has nothing to count. Its size hint says so
            // without looking headers up (hyper's is exact: zero without
            // a body, the length with one, unknown when chunked).
            let has_body = http_body::Body::size_hint(request.body()).exact() != Some(0);
            let extensions = request.extensions_mut();
            extensions.insert(endpoint);
            extensions.insert(RequestId(id.clone()));
            if has_body {
                let counts = entry.counts.get_or_insert_default();
                let received = Counter(Arc::clone(counts), Direction::Received);
                let request = request.map(|b| AxumBody::new(Guarded::counted(b, (), received)));
                next.run(request).await
            } else {
                next.run(request).await
            }
        }
        Routed::Answered { response, .. } => response,
    };
    response.headers_mut().insert(X_REQUEST_ID, id);
    entry.status = response.status();
    if let Some(line) = &mut entry.line {
        line.user = crate::auth::user_of(&response);
    }
    // A small body known whole (a manifest, an error, a HEAD's empty body)
    // goes out in one write: record it now instead of wrapping the body to
    // see it finish.
    if let Some(len) = http_body::Body::size_hint(response.body())
        .exact()
        .filter(|&len| len <= SMALL_BODY)
    {
        entry.small_body = len;
        drop(entry);
        return response;
    }
    let sent = Counter(
        Arc::clone(entry.counts.get_or_insert_default()),
        Direction::Sent,
    );
    response.map(|b| AxumBody::new(Guarded::counted(b, entry, sent)))
}

/// Bodies up to this size, of known length, are recorded when the response
/// is handed to the connection rather than when the last byte is sent.
const SMALL_BODY: u64 = 64 * 1024;

/// Bytes received and sent for one request.
#[derive(Debug, Default)]
struct Counts {
    received: AtomicU64,
    sent: AtomicU64,
}

/// Which of [`Counts`] a body adds to.
#[derive(Debug, Clone, Copy)]
enum Direction {
    Received,
    Sent,
}

/// One direction of a request's [`Counts`], for [`Guarded`] to add to.
#[derive(Debug)]
struct Counter(Arc<Counts>, Direction);

impl crate::body::ByteCount for Counter {
    fn add(&self, n: u64) {
        let counter = match self.1 {
            Direction::Received => &self.0.received,
            Direction::Sent => &self.0.sent,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A finished request: recorded in the metrics (when measured) and written
/// as the access-log line (when logged) once dropped, i.e. once the
/// response body is done.
struct Entry {
    started: Instant,
    method: Method,
    kind: crate::EndpointKind,
    status: StatusCode,
    /// The bytes counted by the bodies, when either is wrapped (a request
    /// without a body answered with a small one needs no allocation).
    counts: Option<Arc<Counts>>,
    /// The length of a small response body recorded when the response was
    /// handed over (see [`SMALL_BODY`]).
    small_body: u64,
    /// Record the request metrics.
    measured: bool,
    /// What only the access-log line needs, when it is written.
    line: Option<Line>,
}

/// The access-log line's own fields.
struct Line {
    uri: Uri,
    remote: Option<SocketAddr>,
    user_agent: Option<HeaderValue>,
    id: HeaderValue,
    /// The authenticated user, if any.
    user: Option<Arc<str>>,
}

/// Longest user agent logged, in bytes.
const MAX_USER_AGENT: usize = 256;

impl Drop for Entry {
    fn drop(&mut self) {
        let finished = Instant::now();
        let elapsed = finished.saturating_duration_since(self.started);
        let (received, sent) = match &self.counts {
            Some(counts) => (
                counts.received.load(Ordering::Relaxed),
                counts.sent.load(Ordering::Relaxed) + self.small_body,
            ),
            None => (0, self.small_body),
        };
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
        let record = AccessRecord {
            method: &self.method,
            path: line.uri.path(),
            endpoint: self.kind.as_str(),
            status: self.status.as_u16(),
            bytes_in: received,
            bytes_out: sent,
            duration: elapsed,
            finished,
            remote: line.remote,
            user: line.user.as_deref().unwrap_or("-"),
            user_agent: line
                .user_agent
                .as_ref()
                .and_then(|ua| ua.to_str().ok())
                .map_or("-", |ua| truncate(ua, MAX_USER_AGENT)),
            request_id: line.id.to_str().unwrap_or("-"),
        };
        match WRITER.get() {
            Some(installed) => installed.writer.write(&record),
            None => record.emit(),
        }
    }
}

/// One finished request, as the access log records it.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The path, without the query string (it can carry secrets).
    pub path: &'a str,
    /// The endpoint kind ([`crate::EndpointKind`]).
    pub endpoint: &'static str,
    /// The response status.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// From the request's arrival to the end of the response body.
    pub duration: std::time::Duration,
    /// When the response body ended (the end of `duration`).
    pub finished: Instant,
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The authenticated user, or `-` (anonymous, or no access control).
    pub user: &'a str,
    /// The `User-Agent` (at most 256 bytes), or `-`.
    pub user_agent: &'a str,
    /// The request id.
    pub request_id: &'a str,
}

impl AccessRecord<'_> {
    /// Emits the record as a `tracing` event at `info` on the target
    /// `oci_http::access`: what happens without an [`AccessLogWriter`].
    pub fn emit(&self) {
        tracing::info!(
            target: "oci_http::access",
            method = %self.method,
            path = %self.path,
            endpoint = self.endpoint,
            status = self.status,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            duration_ms = self.duration.as_secs_f64() * 1e3,
            remote = tracing::field::display(Remote(self.remote)),
            user = self.user,
            user_agent = self.user_agent,
            request_id = self.request_id,
            "request"
        );
    }
}

/// Writes access-log lines itself instead of through a `tracing` event: a
/// binary that knows its log format and sink can format the fixed fields
/// of a line far more cheaply than a generic event formatter. Whether
/// lines are written is still decided by the `tracing` filter
/// (`oci_http::access` at `info`), once, when the writer is installed
/// ([`set_access_log_writer`]).
pub trait AccessLogWriter: Send + Sync + 'static {
    /// Writes one line for `record`.
    fn write(&self, record: &AccessRecord<'_>);
}

/// The installed writer, and whether lines are written at all.
struct Installed {
    writer: Box<dyn AccessLogWriter>,
    logged: bool,
}

static WRITER: std::sync::OnceLock<Installed> = std::sync::OnceLock::new();

/// Installs the process's access-log writer (once; a second call returns
/// `writer` back).
///
/// Install it after the global `tracing` subscriber, and keep that
/// subscriber's filter fixed: whether access lines are written is asked
/// of the filter once, here, instead of at every request. Without a
/// writer, every request asks the current subscriber.
pub fn set_access_log_writer(
    writer: Box<dyn AccessLogWriter>,
) -> Result<(), Box<dyn AccessLogWriter>> {
    let logged = tracing::enabled!(target: "oci_http::access", tracing::Level::INFO);
    WRITER
        .set(Installed { writer, logged })
        .map_err(|installed| installed.writer)
}

/// Whether this request's access line is written (see
/// [`set_access_log_writer`]).
fn logged() -> bool {
    match WRITER.get() {
        Some(installed) => installed.logged,
        None => tracing::enabled!(target: "oci_http::access", tracing::Level::INFO),
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The remote address, or `-`.
struct Remote(Option<SocketAddr>);

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
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

    #[test]
    fn new_ids_are_unique_across_threads_and_blocks() {
        let per_thread = usize::try_from(ID_BLOCK).unwrap() + 10;
        let ids: Vec<Vec<HeaderValue>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..3)
                .map(|_| s.spawn(|| (0..per_thread).map(|_| new_id()).collect()))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let all: std::collections::HashSet<_> = ids.iter().flatten().collect();
        assert_eq!(all.len(), 3 * per_thread);
    }
}
