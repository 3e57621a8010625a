//! The operations endpoints, served on their own listener: Prometheus
//! metrics at `/metrics`, liveness at `/healthz`, readiness at `/readyz`.
//!
//! What the binary does, in this order:
//!
//! ```no_run
//! # async fn run(storage: oci_storage::Storage) -> Result<(), Box<dyn std::error::Error>> {
//! use oci_http::ops::{OpsOptions, install_recorder, ops_router};
//! // Once per process, before the storage is used and the API served:
//! // handles are resolved on first use, and nothing is recorded before.
//! let metrics = install_recorder()?;
//! let ops = ops_router(storage.clone(), Some(metrics), &OpsOptions::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5001").await?;
//! let limits = oci_http::Limits::default(); // or smaller ones
//! oci_http::server::serve(listener, ops, &limits, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! Without [`install_recorder`] nothing is recorded (the `metrics`
//! facade's no-op recorder, and a relaxed atomic load per request), and
//! `/metrics` answers 404 if the router was given no handle.
//!
//! - `/healthz`: `200 ok` while the process serves (liveness).
//! - `/readyz`: `200 ready` if the store answered a small read
//!   ([`Storage::probe`]) within [`OpsOptions::probe_timeout`], else `503`.
//!   At most one probe is in flight, and its verdict is kept for
//!   [`OpsOptions::probe_cache`]: concurrent and frequent calls never
//!   start more store reads than one per `probe_cache`, however slow the
//!   store is.
//! - `/metrics`: the Prometheus text format: this crate's metrics (see
//!   [`crate::telemetry`]), the storage engine's
//!   ([`oci_storage::telemetry`]) and the process's (`process_cpu_seconds_total`,
//!   `process_resident_memory_bytes`, `process_open_fds`,
//!   `process_start_time_seconds` and more, read from `/proc` at each
//!   scrape).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use oci_storage::Storage;

use crate::telemetry;

/// How often the recorder's upkeep runs: it drains the samples of any
/// histogram recorded through the facade into their buckets, so memory
/// stays bounded between scrapes (the crates' own latency histograms,
/// [`oci_storage::telemetry::FixedHistogram`], keep no samples).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The installed Prometheus recorder: renders `/metrics`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    prometheus: PrometheusHandle,
    process: metrics_process::Collector,
}

impl MetricsHandle {
    /// Every metric in the Prometheus text exposition format (process
    /// metrics read now).
    pub fn render(&self) -> String {
        self.process.collect();
        let mut text = self.prometheus.render();
        telemetry::render(&mut text);
        oci_storage::telemetry::render(&mut text);
        oci_proxy::telemetry::render(&mut text);
        text
    }
}

/// Why [`install_recorder`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Another metrics recorder was installed in this process first.
    #[error("another metrics recorder is already installed in this process")]
    OtherRecorder,
    /// The exporter refused its configuration.
    #[error("configuring the Prometheus exporter: {0}")]
    Build(#[from] metrics_exporter_prometheus::BuildError),
    /// The upkeep thread could not be started.
    #[error("starting the metrics upkeep thread: {0}")]
    Upkeep(#[from] std::io::Error),
}

/// Installs the process's Prometheus recorder (the `metrics` facade's
/// global one), describes every metric, starts recording, and starts a
/// thread that runs the recorder's upkeep every 5 s. Idempotent: later
/// calls return the same handle. Call it before serving: handles are
/// resolved on first use.
pub fn install_recorder() -> Result<MetricsHandle, MetricsError> {
    static INSTALLED: Mutex<Option<MetricsHandle>> = Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    // The latency histograms are the crates' own fixed-bucket ones
    // (`render` appends them); the exporter keeps counters and gauges.
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::OtherRecorder)?;
    let upkeep = prometheus.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        })?;
    let process = metrics_process::Collector::default();
    process.describe();
    telemetry::enable();
    oci_storage::telemetry::enable();
    oci_proxy::telemetry::describe();
    oci_notify::telemetry::describe();
    let handle = MetricsHandle {
        prometheus,
        process,
    };
    *installed = Some(handle.clone());
    Ok(handle)
}

/// Settings of the operations endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpsOptions {
    /// A readiness probe slower than this fails (`503`). Default 2 s.
    pub probe_timeout: Duration,
    /// A probe's verdict is reused for this long. Default 1 s.
    pub probe_cache: Duration,
}

impl Default for OpsOptions {
    fn default() -> Self {
        Self {
            probe_timeout: Duration::from_secs(2),
            probe_cache: Duration::from_secs(1),
        }
    }
}

#[derive(Clone)]
struct OpsState {
    metrics: Option<MetricsHandle>,
    readiness: Readiness,
}

/// The operations router: `/metrics` (404 when `metrics` is `None`),
/// `/healthz` and `/readyz` over `storage` (see the module docs). Serve it
/// on its own listener with [`crate::server::serve`].
pub fn ops_router(
    storage: Storage,
    metrics: Option<MetricsHandle>,
    options: &OpsOptions,
) -> Router {
    let probe: ProbeFn = Arc::new(move || {
        let storage = storage.clone();
        async move { storage.probe().await.map_err(|e| e.to_string()) }.boxed()
    });
    let readiness = Readiness::new(probe, options.probe_timeout, options.probe_cache);
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(OpsState { metrics, readiness })
}

async fn render_metrics(State(state): State<OpsState>) -> Response {
    let Some(metrics) = state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response();
    };
    // Reading /proc and formatting: off the async workers.
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn ready(State(state): State<OpsState>) -> Response {
    match state.readiness.check().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: storage: {e}\n"),
        )
            .into_response(),
    }
}

/// A store read for readiness.
type ProbeFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;
/// What a probe found.
type Verdict = Result<(), Arc<str>>;

/// Readiness: runs the probe at most once at a time, and reuses its verdict
/// for `fresh_for`.
#[derive(Clone)]
struct Readiness {
    inner: Arc<ReadinessInner>,
}

struct ReadinessInner {
    probe: ProbeFn,
    timeout: Duration,
    fresh_for: Duration,
    state: Mutex<ProbeState>,
}

#[derive(Default)]
struct ProbeState {
    /// The last verdict and when it was reached.
    last: Option<(Instant, Verdict)>,
    /// The probe in flight, shared by every caller waiting for it.
    running: Option<Shared<BoxFuture<'static, Verdict>>>,
}

impl ReadinessInner {
    fn state(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Readiness {
    fn new(probe: ProbeFn, timeout: Duration, fresh_for: Duration) -> Self {
        Self {
            inner: Arc::new(ReadinessInner {
                probe,
                timeout,
                fresh_for,
                state: Mutex::default(),
            }),
        }
    }

    /// The last verdict if fresh, else the one of the probe in flight (one
    /// is started if none is). The probe runs in its own task, so callers
    /// that go away do not cancel it for the others.
    async fn check(&self) -> Verdict {
        let running = {
            let mut state = self.inner.state();
            if let Some((at, verdict)) = &state.last
                && at.elapsed() < self.inner.fresh_for
            {
                return verdict.clone();
            }
            if let Some(running) = &state.running {
                running.clone()
            } else {
                let inner = Arc::clone(&self.inner);
                let task = tokio::spawn(async move {
                    let verdict = match tokio::time::timeout(inner.timeout, (inner.probe)()).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(Arc::from(e)),
                        Err(_) => Err(Arc::from(format!("no answer within {:?}", inner.timeout))),
                    };
                    let mut state = inner.state();
                    state.last = Some((Instant::now(), verdict.clone()));
                    state.running = None;
                    verdict
                });
                let shared = task
                    .map(|joined| joined.unwrap_or_else(|_| Err(Arc::from("the probe panicked"))))
                    .boxed()
                    .shared();
                state.running = Some(shared.clone());
                shared
            }
        };
        running.await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A probe that counts its runs, takes `delay`, and answers `ok`.
    fn counting(delay: Duration, ok: bool) -> (ProbeFn, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let probe: ProbeFn = Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(delay).await;
                if ok { Ok(()) } else { Err("down".into()) }
            }
            .boxed()
        });
        (probe, runs)
    }

    /// `n` checks of `readiness` started at once, on tasks of their own.
    fn concurrent_checks(readiness: &Readiness, n: usize) -> Vec<tokio::task::JoinHandle<Verdict>> {
        (0..n)
            .map(|_| {
                let r = readiness.clone();
                tokio::spawn(async move { r.check().await })
            })
            .collect()
    }

    /// A verdict is fresh for `fresh_for` from when the probe (200 ms)
    /// answered, so at least 700 ms from the round's start: the checks
    /// that share the probe and the one that reuses its verdict must all
    /// end within that window. A loaded machine that overruns it proves
    /// nothing, and the round is tried again, a bounded number of times.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_share_one_probe_and_reuse_its_verdict() {
        let (delay, fresh_for) = (Duration::from_millis(200), Duration::from_millis(500));
        for round in 0..5 {
            let (probe, runs) = counting(delay, true);
            let readiness = Readiness::new(probe, Duration::from_secs(2), fresh_for);
            let started = Instant::now();
            for check in concurrent_checks(&readiness, 100) {
                assert!(check.await.unwrap().is_ok());
            }
            let shared = runs.load(Ordering::SeqCst);
            // Fresh: reused.
            assert!(readiness.check().await.is_ok());
            let reused = runs.load(Ordering::SeqCst);
            if started.elapsed() >= delay + fresh_for {
                eprintln!("round {round}: the window passed before the checks ended; again");
                continue;
            }
            assert_eq!(shared, 1);
            assert_eq!(reused, 1);
            // Stale: probed again.
            tokio::time::sleep(fresh_for + Duration::from_millis(100)).await;
            assert!(readiness.check().await.is_ok());
            assert_eq!(runs.load(Ordering::SeqCst), 2);
            return;
        }
        panic!("every round overran the window: the machine is too slow to tell");
    }

    /// Every check fails at the 300 ms timeout, not after the hung
    /// probe's hour; the failed verdict is then fresh for 1 s, so at least
    /// until 1.3 s from the round's start, and the caller that gives up
    /// must find it within that window. A round that ends later (a loaded
    /// machine, or checks that did not fail at the timeout) is tried
    /// again, a bounded number of times.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_store_fails_within_the_timeout_without_piling_up_probes() {
        let (timeout, fresh_for) = (Duration::from_millis(300), Duration::from_secs(1));
        for round in 0..5 {
            let (probe, runs) = counting(Duration::from_secs(3600), true);
            let readiness = Readiness::new(probe, timeout, fresh_for);
            let started = Instant::now();
            for check in concurrent_checks(&readiness, 50) {
                let verdict = check.await.unwrap();
                assert!(verdict.unwrap_err().contains("no answer"));
            }
            // A caller that gives up does not cancel the probe for others,
            // nor start another.
            let gave_up =
                tokio::time::timeout(Duration::from_millis(10), readiness.clone().check()).await;
            if started.elapsed() >= timeout + fresh_for {
                eprintln!("round {round}: the window passed before the last check; again");
                continue;
            }
            assert!(gave_up.is_ok(), "the failed verdict is reused at once");
            assert_eq!(runs.load(Ordering::SeqCst), 1);
            return;
        }
        panic!("every round overran the window: the machine is too slow to tell");
    }

    #[tokio::test]
    async fn failures_are_reported() {
        let (probe, _) = counting(Duration::ZERO, false);
        let readiness = Readiness::new(probe, Duration::from_secs(1), Duration::ZERO);
        assert_eq!(readiness.check().await.unwrap_err().as_ref(), "down");
    }
}
