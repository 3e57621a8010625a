//! The cache's metrics (Prometheus names below): hits and misses, upstream
//! requests by outcome with their latency, and bytes fetched. Labels are
//! bounded: kinds and outcomes, never repositories or digests.

use std::time::Duration;

use oci_storage::telemetry::{FixedHistogram, render_histogram};

use crate::error::ProxyError;

/// Counter: requests for proxied content, by `kind` (`manifest`, `blob`)
/// and `result`: `hit` (served from the cache), `miss` (fetched
/// upstream), `revalidated` (a cached tag confirmed upstream), `stale`
/// (served from the cache because upstream failed).
pub const CACHE_REQUESTS: &str = "oci_registry_proxy_cache_requests_total";
/// Counter: requests to upstream registries, by `kind` (`manifest`,
/// `blob`, `token`, `referrers`, `tags`) and `outcome` (`ok`, `not_found`,
/// `denied`, `throttled`, `error`).
pub const UPSTREAM_REQUESTS: &str = "oci_registry_proxy_upstream_requests_total";
/// Histogram: time until an upstream answered (its head), by `kind`.
pub const UPSTREAM_DURATION: &str = "oci_registry_proxy_upstream_duration_seconds";
/// Counter: blob bytes fetched from upstream registries.
pub const UPSTREAM_BYTES: &str = "oci_registry_proxy_upstream_bytes_total";
/// Gauge: blob fetches from upstream in progress.
pub const FETCHES_IN_PROGRESS: &str = "oci_registry_proxy_fetches_in_progress";

/// What was asked of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Manifest,
    Blob,
    Token,
    Referrers,
    Tags,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Manifest,
        Kind::Blob,
        Kind::Token,
        Kind::Referrers,
        Kind::Tags,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::Blob => "blob",
            Kind::Token => "token",
            Kind::Referrers => "referrers",
            Kind::Tags => "tags",
        }
    }
}

/// How a cached request was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// From the cache.
    Hit,
    /// Fetched upstream.
    Miss,
    /// A cached tag, confirmed upstream.
    Revalidated,
    /// From the cache because upstream failed.
    Stale,
}

impl CacheResult {
    fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Revalidated => "revalidated",
            CacheResult::Stale => "stale",
        }
    }
}

static DURATIONS: [FixedHistogram; Kind::ALL.len()] =
    [const { FixedHistogram::new() }; Kind::ALL.len()];

/// Counts one request for a cached manifest (`blob` false) or blob.
pub fn cache(blob: bool, result: CacheResult) {
    let kind = if blob { "blob" } else { "manifest" };
    metrics::counter!(CACHE_REQUESTS, "kind" => kind, "result" => result.as_str()).increment(1);
}

/// Records one upstream request and how long its answer took.
pub(crate) fn upstream<T>(kind: Kind, took: Duration, result: &Result<T, ProxyError>) {
    DURATIONS[kind as usize].record(took);
    let outcome = match result {
        Ok(_) => "ok",
        Err(ProxyError::NotFound(_)) => "not_found",
        Err(ProxyError::Unauthorized(_)) => "denied",
        Err(ProxyError::TooManyRequests { .. }) => "throttled",
        Err(_) => "error",
    };
    metrics::counter!(UPSTREAM_REQUESTS, "kind" => kind.as_str(), "outcome" => outcome)
        .increment(1);
}

/// Counts blob bytes fetched.
pub(crate) fn fetched(bytes: u64) {
    metrics::counter!(UPSTREAM_BYTES).increment(bytes);
}

/// One blob fetch in progress, counted in [`FETCHES_IN_PROGRESS`] while it
/// lives.
pub(crate) struct InProgress(());

impl InProgress {
    pub(crate) fn start() -> Self {
        metrics::gauge!(FETCHES_IN_PROGRESS).increment(1.0);
        Self(())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        metrics::gauge!(FETCHES_IN_PROGRESS).decrement(1.0);
    }
}

/// Describes the metrics to the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        CACHE_REQUESTS,
        "Requests for proxied content, by kind and how they were served"
    );
    metrics::describe_counter!(
        UPSTREAM_REQUESTS,
        "Requests to upstream registries, by kind and outcome"
    );
    metrics::describe_counter!(
        UPSTREAM_BYTES,
        "Blob bytes fetched from upstream registries"
    );
    metrics::describe_gauge!(
        FETCHES_IN_PROGRESS,
        "Blob fetches from upstream in progress"
    );
}

/// Appends the metrics kept in this crate's own tables rather than the
/// exporter's: the upstream latency histogram (see
/// [`oci_storage::telemetry::render_histogram`]).
pub fn render(out: &mut String) {
    let families: Vec<(&str, &FixedHistogram)> = Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .zip(DURATIONS.iter())
        .collect();
    render_histogram(
        out,
        UPSTREAM_DURATION,
        "Time until an upstream registry answered, by kind of request",
        "kind",
        &families,
    );
}
