//! Request, connection and refusal metrics, recorded once
//! [`crate::ops::install_recorder`] has installed the Prometheus recorder
//! (before that, recording is off and costs one relaxed atomic load).
//!
//! Labels are bounded: the endpoint kind (a fixed set, see
//! [`crate::EndpointKind`]), the method (the API's methods,
//! else `other`), the status class (`2xx`...) and the limit that refused a
//! request. Never a repository name, tag or digest. A
//! request's counters and latency are kept in static tables sharded by
//! thread ([`FixedCounters`], [`FixedHistogram`]), so a request costs a
//! few uncontended atomic adds; [`render`] appends them to the exporter's
//! text. The rest (connections, refusals) go through the facade.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::metrics::{Counter, Gauge, Unit};
use axum::http::{Method, StatusCode};
use oci_storage::telemetry::{
    FixedCounters, FixedHistogram, combination, render_counter, render_histogram,
};

use crate::EndpointKind;

/// Counter of requests answered, by `endpoint`, `method` and `status`
/// (class: `1xx` ... `5xx`).
pub const REQUESTS: &str = "oci_registry_http_requests_total";
/// Histogram of request duration in seconds (until the response body was
/// sent), by `endpoint`.
pub const REQUEST_DURATION: &str = "oci_registry_http_request_duration_seconds";
/// Counter of request body bytes received, by `endpoint`.
pub const RECEIVED_BYTES: &str = "oci_registry_http_received_bytes_total";
/// Counter of response body bytes sent, by `endpoint`.
pub const SENT_BYTES: &str = "oci_registry_http_sent_bytes_total";
/// Gauge of open connections (all listeners served by
/// [`crate::server::serve`] in the process).
pub const OPEN_CONNECTIONS: &str = "oci_registry_http_open_connections";
/// Counter of requests and connections refused by a limit, by `limit`:
/// `connections`, `requests`, `manifest_budget`, `uploads`, `lock_wait`.
pub const REFUSED: &str = "oci_registry_http_refused_total";

/// Bucket bounds of the latency histograms, in seconds: 250 µs to 5 min
/// (blob uploads take minutes).
pub use oci_storage::telemetry::DURATION_BUCKETS;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// True once the recorder is installed.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Describes the metrics and starts recording (by the installer, once).
pub(crate) fn enable() {
    ::metrics::describe_gauge!(OPEN_CONNECTIONS, Unit::Count, "Open HTTP connections");
    ::metrics::describe_counter!(
        REFUSED,
        Unit::Count,
        "Requests and connections refused by a limit, by limit"
    );
    ENABLED.store(true, Ordering::Release);
}

/// The method label: the API's methods, and `other`.
const METHODS: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "other"];
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

const N_REQUESTS: usize = EndpointKind::ALL.len() * METHODS.len() * CLASSES.len();
static REQUEST_COUNTERS: FixedCounters<N_REQUESTS> = FixedCounters::new();
static DURATIONS: [FixedHistogram; EndpointKind::ALL.len()] =
    [const { FixedHistogram::new() }; EndpointKind::ALL.len()];
static RECEIVED: FixedCounters<{ EndpointKind::ALL.len() }> = FixedCounters::new();
static SENT: FixedCounters<{ EndpointKind::ALL.len() }> = FixedCounters::new();

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::PUT => 2,
        Method::POST => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        _ => 6,
    }
}

fn class_index(status: StatusCode) -> usize {
    match status.as_u16() / 100 {
        c @ 1..=5 => usize::from(c) - 1,
        _ => 5,
    }
}

/// Appends the metrics kept in this crate's own tables rather than the
/// exporter's: requests, bytes and request latency (see
/// [`oci_storage::telemetry::FixedCounters`]).
pub fn render(out: &mut String) {
    let kinds = EndpointKind::ALL.map(|k| k.as_str());
    render_counter(
        out,
        REQUESTS,
        "HTTP requests answered, by endpoint kind, method and status class",
        (0..N_REQUESTS).map(|i| {
            let names = ["endpoint", "method", "status"];
            let labels = combination(names, [&kinds, &METHODS, &CLASSES], i);
            (labels, REQUEST_COUNTERS.get(i))
        }),
    );
    let by_kind = |counters: &'static FixedCounters<{ EndpointKind::ALL.len() }>| {
        (0..kinds.len()).map(move |k| ([("endpoint", kinds[k])], counters.get(k)))
    };
    render_counter(
        out,
        RECEIVED_BYTES,
        "Request body bytes received, by endpoint kind",
        by_kind(&RECEIVED),
    );
    render_counter(
        out,
        SENT_BYTES,
        "Response body bytes sent, by endpoint kind",
        by_kind(&SENT),
    );
    let families: Vec<(&str, &FixedHistogram)> = kinds.into_iter().zip(DURATIONS.iter()).collect();
    render_histogram(
        out,
        REQUEST_DURATION,
        "HTTP request duration until the response body was sent, by endpoint kind",
        "endpoint",
        &families,
    );
}

/// Records one finished request.
pub(crate) fn request(
    kind: EndpointKind,
    method: &Method,
    status: StatusCode,
    received: u64,
    sent: u64,
    elapsed: Duration,
) {
    let k = kind.index();
    let m = method_index(method);
    let c = class_index(status);
    REQUEST_COUNTERS.add((k * METHODS.len() + m) * CLASSES.len() + c, 1);
    DURATIONS[k].record(elapsed);
    if received > 0 {
        RECEIVED.add(k, received);
    }
    if sent > 0 {
        SENT.add(k, sent);
    }
}

/// The limit that refused a request or connection (the `limit` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `max_connections`.
    Connections,
    /// `max_requests`.
    Requests,
    /// `manifest_budget`.
    ManifestBudget,
    /// `max_uploads`.
    Uploads,
    /// `lock_wait` on a busy upload session.
    LockWait,
}

const LIMITS: [&str; 5] = [
    "connections",
    "requests",
    "manifest_budget",
    "uploads",
    "lock_wait",
];
static REFUSALS: [OnceLock<Counter>; LIMITS.len()] = [const { OnceLock::new() }; LIMITS.len()];

/// Counts a refusal by `limit`.
pub(crate) fn refused(limit: Limit) {
    if enabled() {
        let i = limit as usize;
        REFUSALS[i]
            .get_or_init(|| ::metrics::counter!(REFUSED, "limit" => LIMITS[i]))
            .increment(1);
    }
}

static CONNECTIONS: OnceLock<Gauge> = OnceLock::new();

/// An open connection, counted in [`OPEN_CONNECTIONS`] while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection(bool);

impl OpenConnection {
    pub(crate) fn open() -> Self {
        let counted = enabled();
        if counted {
            connections().increment(1.0);
        }
        Self(counted)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.0 {
            connections().decrement(1.0);
        }
    }
}

fn connections() -> &'static Gauge {
    CONNECTIONS.get_or_init(|| ::metrics::gauge!(OPEN_CONNECTIONS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_kind_has_its_own_row() {
        for (i, kind) in EndpointKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        let names: std::collections::HashSet<_> =
            EndpointKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), EndpointKind::ALL.len());
    }

    #[test]
    fn methods_and_statuses_fall_into_fixed_sets() {
        assert_eq!(METHODS[method_index(&Method::PATCH)], "PATCH");
        assert_eq!(METHODS[method_index(&Method::OPTIONS)], "other");
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(METHODS[method_index(&custom)], "other");
        assert_eq!(CLASSES[class_index(StatusCode::OK)], "2xx");
        assert_eq!(CLASSES[class_index(StatusCode::TOO_MANY_REQUESTS)], "4xx");
        assert_eq!(
            CLASSES[class_index(StatusCode::from_u16(999).unwrap())],
            "other"
        );
    }
}
