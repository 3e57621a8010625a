//! Metrics and probes over real HTTP: the API on one listener, the
//! operations router (`oci_http::ops`) on another, as the binary serves
//! them.
//!
//! The recorder is process-wide and the tests of this file run in
//! parallel, so the tests that assert counters take [`SERIAL`] and compare
//! scrapes before and after (deltas, exact where the count is known).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use oci_e2e::{Backend, TestServer};
use oci_http::ops::{OpsOptions, install_recorder, ops_router};
use reqwest::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// Held by the tests that compare counters.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The operations router of `srv`'s storage on its own listener; its base
/// URL. Served until the test's runtime ends.
async fn serve_ops(srv: &TestServer, options: &OpsOptions) -> String {
    let handle = install_recorder().expect("install the recorder");
    let router = ops_router(srv.storage().clone(), Some(handle), options);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let limits = oci_http::Limits::default();
        oci_http::server::serve(listener, router, &limits, std::future::pending())
            .await
            .unwrap();
    });
    base
}

/// A scrape: every sample line, `name{labels}` → value.
#[derive(Debug, Default)]
struct Scrape {
    text: String,
    samples: HashMap<String, f64>,
}

impl Scrape {
    async fn of(ops: &str) -> Scrape {
        let resp = reqwest::get(format!("{ops}/metrics")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let text = resp.text().await.unwrap();
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("a sample line");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect();
        Scrape { text, samples }
    }

    /// The sum of the samples of `name` whose labels include every one of
    /// `labels` (`key="value"`).
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                n == name && labels.iter().all(|l| rest.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Series other than the process's own.
    fn series(&self) -> usize {
        self.samples
            .keys()
            .filter(|k| !k.starts_with("process_"))
            .count()
    }
}

/// Scrapes until `check` holds for (before, now) or `within` passed (a
/// request is recorded when its response body is done, which may be a
/// moment after the client read it); returns the last scrape.
async fn settle(
    ops: &str,
    before: &Scrape,
    within: Duration,
    check: impl Fn(&Scrape, &Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + within;
    loop {
        let now = Scrape::of(ops).await;
        if check(before, &now) || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const REQUESTS: &str = "oci_registry_http_requests_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_are_counted() {
    let _serial = SERIAL.lock().await;
    let srv = TestServer::start(Backend::Filesystem).await;
    let ops = serve_ops(&srv, &OpsOptions::default()).await;
    let before = Scrape::of(&ops).await;

    let image = srv.push_image("metrics/app", "v1", 2).await;
    let blobs: Vec<&[u8]> = std::iter::once(image.config.as_slice())
        .chain(image.layers.iter().map(Vec::as_slice))
        .collect();
    let blob_bytes: usize = blobs.iter().map(|b| b.len()).sum();
    let resp = srv.get("/v2/metrics/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), image.manifest);
    for desc in std::iter::once(&image.config_desc).chain(&image.layer_descs) {
        let resp = srv
            .get(&format!("/v2/metrics/app/blobs/{}", desc.digest))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.bytes().await.unwrap();
    }
    let resp = srv.get("/v2/metrics/app/manifests/missing").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let n = blobs.len() as f64;
    let expected: [(&[&str], f64); 6] = [
        (
            &[
                r#"endpoint="manifest""#,
                r#"method="PUT""#,
                r#"status="2xx""#,
            ],
            1.0,
        ),
        (
            &[
                r#"endpoint="manifest""#,
                r#"method="GET""#,
                r#"status="2xx""#,
            ],
            1.0,
        ),
        (
            &[
                r#"endpoint="manifest""#,
                r#"method="GET""#,
                r#"status="4xx""#,
            ],
            1.0,
        ),
        (
            &[r#"endpoint="blob""#, r#"method="GET""#, r#"status="2xx""#],
            n,
        ),
        (
            &[
                r#"endpoint="upload_start""#,
                r#"method="POST""#,
                r#"status="2xx""#,
            ],
            n,
        ),
        (
            &[r#"endpoint="upload""#, r#"method="PUT""#, r#"status="2xx""#],
            n,
        ),
    ];
    let delta = |b: &Scrape, a: &Scrape, name: &str, labels: &[&str]| {
        a.sum(name, labels) - b.sum(name, labels)
    };
    // What is expected shows up at once on a correct server; a loaded
    // machine is given half a minute.
    let after = settle(&ops, &before, Duration::from_secs(30), |b, a| {
        expected
            .iter()
            .all(|(labels, want)| delta(b, a, REQUESTS, labels) == *want)
    })
    .await;
    for (labels, want) in &expected {
        assert_eq!(
            delta(&before, &after, REQUESTS, labels),
            *want,
            "{REQUESTS} {labels:?}\n{}",
            after.text
        );
    }
    // Nothing else was asked of the API.
    assert_eq!(
        delta(&before, &after, REQUESTS, &[]),
        3.0 + 3.0 * n,
        "{}",
        after.text
    );
    let d = |name: &str, labels: &[&str]| delta(&before, &after, name, labels);
    assert_eq!(
        d(
            "oci_registry_http_request_duration_seconds_count",
            &[r#"endpoint="manifest""#]
        ),
        3.0
    );
    assert!(
        d(
            "oci_registry_http_received_bytes_total",
            &[r#"endpoint="upload""#]
        ) >= blob_bytes as f64
    );
    assert!(
        d(
            "oci_registry_http_received_bytes_total",
            &[r#"endpoint="manifest""#]
        ) >= image.manifest.len() as f64
    );
    assert!(
        d(
            "oci_registry_http_sent_bytes_total",
            &[r#"endpoint="blob""#]
        ) >= blob_bytes as f64
    );
    assert!(
        d(
            "oci_registry_http_sent_bytes_total",
            &[r#"endpoint="manifest""#]
        ) >= image.manifest.len() as f64
    );
    assert_eq!(d("oci_registry_upload_sessions_opened_total", &[]), n);
    assert_eq!(
        d(
            "oci_registry_upload_sessions_closed_total",
            &[r#"reason="completed""#]
        ),
        n
    );
    for op in ["get", "head", "put"] {
        let labels = [format!(r#"op="{op}""#)];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert!(
            d("oci_registry_storage_operations_total", &labels) > 0.0,
            "storage {op}\n{}",
            after.text
        );
        assert!(
            d(
                "oci_registry_storage_operation_duration_seconds_count",
                &labels
            ) > 0.0
        );
    }
    assert!(after.sum("oci_registry_http_open_connections", &[]) >= 1.0);
    assert!(
        after
            .samples
            .contains_key("oci_registry_uploads_in_progress"),
        "{}",
        after.text
    );
    assert!(after.sum("process_resident_memory_bytes", &[]) > 0.0);
    assert!(after.sum("process_open_fds", &[]) > 0.0);
    assert!(after.sum("process_start_time_seconds", &[]) > 0.0);
    assert!(
        after
            .text
            .contains("# HELP oci_registry_http_requests_total")
    );
    assert!(
        after
            .text
            .contains("# TYPE oci_registry_http_request_duration_seconds histogram")
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_do_not_grow_with_repositories_or_tags() {
    let _serial = SERIAL.lock().await;
    let srv = TestServer::start(Backend::Memory).await;
    let ops = serve_ops(&srv, &OpsOptions::default()).await;
    let mut digests = Vec::new();
    let mut push = async |round: usize| {
        for i in 0..8 {
            let name = format!("cardinality-{round}-{i}/repo");
            let image = srv.push_image(&name, &format!("tag-{round}-{i}"), 1).await;
            let resp = srv
                .get(&format!("/v2/{name}/manifests/{}", image.digest))
                .await;
            assert_eq!(resp.status(), StatusCode::OK);
            let resp = srv.get(&format!("/v2/{name}/tags/list")).await;
            assert_eq!(resp.status(), StatusCode::OK);
            let resp = srv
                .get(&format!("/v2/{name}/manifests/nope-{round}-{i}"))
                .await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
            digests.push(image.digest);
        }
    };
    push(0).await;
    let first = Scrape::of(&ops).await;
    push(1).await;
    push(2).await;
    // Waits for growth that must not come: 3 s for late records to show
    // (a loaded machine can only make this miss growth, not invent it).
    let last = settle(&ops, &first, Duration::from_secs(3), |a, b| {
        b.series() > a.series()
    })
    .await;
    assert_eq!(first.series(), last.series(), "{}", last.text);
    assert!(!last.text.contains("cardinality-"), "{}", last.text);
    assert!(!last.text.contains("tag-"), "{}", last.text);
    assert!(!last.text.contains("sha256"), "{}", last.text);
    for d in &digests {
        assert!(!last.text.contains(&d[7..19]));
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store() {
    let srv = TestServer::start(Backend::S3).await;
    let mut options = OpsOptions::default();
    options.probe_timeout = Duration::from_secs(1);
    options.probe_cache = Duration::from_millis(200);
    let ops = serve_ops(&srv, &options).await;
    let get = |path: &str| reqwest::get(format!("{ops}{path}"));
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.text().await.unwrap(), "ready\n");

    srv.s3().unwrap().stop();
    let stopped = Instant::now();
    loop {
        let resp = get("/readyz").await.unwrap();
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert!(resp.text().await.unwrap().starts_with("not ready"));
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "/readyz still {} 30 s after the store went away",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Liveness does not depend on the store.
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_handle_metrics_are_not_served() {
    let srv = TestServer::start(Backend::Memory).await;
    let router = ops_router(srv.storage().clone(), None, &OpsOptions::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let limits = oci_http::Limits::default();
        oci_http::server::serve(listener, router, &limits, std::future::pending()).await
    });
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

const CACHE_LOOKUPS: &str = "oci_registry_storage_cache_lookups_total";

/// Hot pulls are served from the in-memory read cache (`[cache]`, on by
/// default): after the image's files settle, every manifest GET by tag
/// finds its tag and link validated in memory and its bytes there, and
/// every small blob GET its link and bytes, byte-exact; the cache's size
/// is exported.
async fn hot_pulls_hit_the_read_cache(backend: Backend) {
    let _serial = SERIAL.lock().await;
    let srv = TestServer::start(backend).await;
    let ops = serve_ops(&srv, &OpsOptions::default()).await;
    let image = srv.push_image("cached/app", "v1", 2).await;
    // The filesystem caches a file once it is 2 s old (see `read_cache`).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = Scrape::of(&ops).await;
    const ROUNDS: usize = 5;
    for _ in 0..ROUNDS {
        let resp = srv.get("/v2/cached/app/manifests/v1").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap(), image.manifest);
        for (desc, data) in image.layer_descs.iter().zip(&image.layers) {
            let path = format!("/v2/cached/app/blobs/{}", desc.digest);
            let resp = srv.get(&path).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.bytes().await.unwrap(), data.as_slice());
        }
    }
    let hits = |s: &Scrape, kind: &str| {
        s.sum(
            CACHE_LOOKUPS,
            &[&format!("kind=\"{kind}\""), r#"result="hit""#],
        )
    };
    let layers = image.layers.len();
    // Per round: tag + manifest link, then a link per blob; the first
    // round may miss each once.
    let metadata = hits(&Scrape::of(&ops).await, "metadata") - hits(&before, "metadata");
    let want = ((ROUNDS - 1) * (2 + layers)) as f64;
    assert!(metadata >= want, "{metadata} metadata hits, want {want}");
    let content = hits(&Scrape::of(&ops).await, "content") - hits(&before, "content");
    let want = ((ROUNDS - 1) * (1 + layers)) as f64;
    assert!(content >= want, "{content} content hits, want {want}");
    let after = Scrape::of(&ops).await;
    assert!(
        after.sum("oci_registry_storage_cache_bytes", &[]) > 0.0,
        "{}",
        after.text
    );
}

/// Blob `HEAD`s answer with the size the read cache learned by the first
/// one, also for a blob too large to keep (after the repository's link is
/// validated, as every time): a hit per `HEAD` after the first; a `HEAD`
/// after the blob was deleted is 404.
async fn blob_heads_hit_the_size_cache(backend: Backend) {
    let _serial = SERIAL.lock().await;
    let srv = TestServer::start(backend).await;
    let ops = serve_ops(&srv, &OpsOptions::default()).await;
    // Larger than `[cache] max_blob` (1 MiB): its bytes are never kept.
    let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let digest = srv.push_blob("cached/heads", &data).await;
    let path = format!("/v2/cached/heads/blobs/{digest}");
    let size_hits = |s: &Scrape| s.sum(CACHE_LOOKUPS, &[r#"kind="size""#, r#"result="hit""#]);
    let before = Scrape::of(&ops).await;
    const ROUNDS: usize = 5;
    for _ in 0..ROUNDS {
        let resp = srv.head(&path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-length"], data.len().to_string());
    }
    let hits = size_hits(&Scrape::of(&ops).await) - size_hits(&before);
    let want = (ROUNDS - 1) as f64;
    assert!(hits >= want, "{hits} size hits, want {want}");
    assert_eq!(srv.delete(&path).await.status(), StatusCode::ACCEPTED);
    assert_eq!(srv.head(&path).await.status(), StatusCode::NOT_FOUND);
}

oci_e2e::backend_tests!(hot_pulls_hit_the_read_cache, blob_heads_hit_the_size_cache);
