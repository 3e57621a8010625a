//! Hostile and broken clients against the connection and request limits
//! (`oci_http::Limits`), over real sockets.
//!
//! The connection-level limits do not involve storage and run on the
//! memory backend; what a stalled upload keeps runs on every backend.
//! Timeouts are set to a second or two so the tests are quick; every wait
//! for the server has a generous upper bound, and no assertion depends on
//! how fast the machine is.

use std::time::Duration;

use bytes::Bytes;
use oci_e2e::{
    Backend, RawResponse, TestServer, assert_error, assert_raw_error, backend_tests, channel_body,
    header, location, random_blob, sha256_digest, with_query,
};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for anything the server should do "at once" or "after a
/// one-second timeout": far above either, so a slow machine never fails a
/// correct server.
const PATIENCE: Duration = Duration::from_secs(60);

fn limits() -> oci_http::Limits {
    oci_http::Limits::default()
}

/// Reads until the server closes the connection; returns what it sent.
/// Panics if it is still open after [`PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
    got
}

/// Slowloris: connections that send half a request head are cut off at the
/// header timeout, all of them, and the server still answers others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_at_the_header_timeout() {
    let mut limits = limits();
    limits.header_timeout = Duration::from_secs(1);
    let srv = TestServer::start_limited(Backend::Memory, limits).await;
    let mut loris = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(srv.host()).await.unwrap();
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        loris.push(s);
    }
    // One more byte now and then does not extend the deadline.
    loris[0].write_all(b"a").await.unwrap();
    for s in &mut loris {
        read_until_closed(s).await;
    }
    assert_eq!(srv.get("/v2/").await.status(), StatusCode::OK);
    srv.stop().await;
}

/// An idle keep-alive connection is closed after the keep-alive timeout;
/// a request in flight for longer than that (a slow upload) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_connections_are_closed_but_busy_ones_are_not() {
    let mut limits = limits();
    limits.keepalive_timeout = Duration::from_secs(1);
    limits.header_timeout = Duration::from_secs(60);
    let srv = TestServer::start_limited(Backend::Memory, limits).await;

    let mut idle = TcpStream::connect(srv.host()).await.unwrap();
    idle.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    read_until_closed(&mut idle).await;

    // A PATCH whose body trickles in for three keep-alive periods.
    let loc = srv.start_upload("slow/upload").await;
    let (tx, body) = channel_body();
    let patch = srv.req(Method::PATCH, &loc).body(body).send();
    let feeder = tokio::spawn(async move {
        for _ in 0..10 {
            tx.send(Bytes::from_static(b"0123456789")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let resp = patch.await.expect("a busy connection is not idle");
    feeder.await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-99"));
    srv.stop().await;
}

/// A body that stops sending is aborted after the body timeout; the upload
/// keeps every byte of its completed chunks and nothing of the stalled one,
/// and can go on.
async fn stalled_body_keeps_completed_chunks(backend: Backend) {
    let mut limits = limits();
    limits.body_timeout = Duration::from_secs(1);
    let srv = TestServer::start_limited(backend, limits).await;
    let name = "stall/upload";
    let data = random_blob(64 * 1024, 7);
    let loc = srv.start_upload(name).await;
    let first = srv
        .req(Method::PATCH, &loc)
        .header("content-range", "0-32767")
        .body(data[..32 * 1024].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let loc = location(&first);

    // The second chunk sends a little, then nothing.
    let (tx, body) = channel_body();
    tx.send(Bytes::copy_from_slice(&data[32 * 1024..40 * 1024]))
        .await
        .unwrap();
    let stalled = tokio::time::timeout(
        PATIENCE,
        srv.req(Method::PATCH, &loc)
            .header("content-range", format!("32768-{}", data.len() - 1))
            .body(body)
            .send(),
    )
    .await
    .expect("a stalled body is aborted");
    // The server answers (400) or drops the connection; either way the
    // chunk is not counted.
    if let Ok(resp) = stalled {
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    drop(tx);

    let status = srv.get(&loc).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "range").as_deref(), Some("0-32767"));
    let done = srv
        .req(
            Method::PUT,
            &with_query(&loc, "digest", &sha256_digest(&data)),
        )
        .header("content-range", format!("32768-{}", data.len() - 1))
        .body(data[32 * 1024..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::CREATED);
    let blob = srv
        .get(&format!("/v2/{name}/blobs/{}", sha256_digest(&data)))
        .await;
    assert_eq!(blob.bytes().await.unwrap().as_ref(), data.as_slice());
    srv.stop().await;
}

/// Connections over the cap get `503` with `Retry-After` and the spec's
/// JSON, and are closed; once one closes, a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503() {
    let mut limits = limits();
    limits.max_connections = 4;
    let srv = TestServer::start_limited(Backend::Memory, limits).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(srv.host()).await.unwrap();
        // A complete request, then keep-alive: the connection stays open.
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.unwrap();
        held.push(s);
    }
    let mut over = TcpStream::connect(srv.host()).await.unwrap();
    let _ = over
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut over).await;
    let resp = RawResponse::parse(&answer, false);
    assert_raw_error(&resp, 503, &["TOOMANYREQUESTS"]);
    assert_eq!(resp.header("retry-after"), Some("1"));

    drop(held.pop());
    let served = tokio::time::timeout(PATIENCE, async {
        loop {
            let r = srv.raw_request("GET", "/v2/", &[], b"").await;
            if r.status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "a freed connection slot is reused");
    drop(held);
    srv.stop().await;
}

/// Requests over the in-flight cap get `429 TOOMANYREQUESTS` with
/// `Retry-After` at once, not a place in a queue; a streaming request holds
/// its place until it is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_cap_get_429() {
    let mut limits = limits();
    limits.max_requests = 2;
    let srv = TestServer::start_limited(Backend::Memory, limits).await;
    let mut locs = Vec::new();
    for i in 0..2 {
        locs.push(srv.start_upload(&format!("busy/r{i}")).await);
    }
    // A PATCH whose body stays open: in flight until its feeder is dropped.
    let hold = |loc: &str| {
        let (tx, body) = channel_body();
        let req = srv.req(Method::PATCH, loc).body(body);
        (tx, tokio::spawn(async move { req.send().await.unwrap() }))
    };
    let (mut feeders, mut pending): (Vec<_>, Vec<_>) = locs.iter().map(|l| hold(l)).unzip();
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            let resp = srv.get("/v2/").await;
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                return resp;
            }
            // A PATCH that arrived while a POST's answer was still being
            // sent (its place not yet free) was refused itself: send again.
            for i in 0..pending.len() {
                if pending[i].is_finished() {
                    let (tx, task) = hold(&locs[i]);
                    let done = std::mem::replace(&mut pending[i], task);
                    feeders[i] = tx;
                    assert_eq!(done.await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a third request is refused while two are in flight");
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
    assert_error(refused, 429, &["TOOMANYREQUESTS"]).await;

    drop(feeders);
    for p in pending {
        assert_eq!(p.await.unwrap().status(), StatusCode::ACCEPTED);
    }
    assert_eq!(srv.get("/v2/").await.status(), StatusCode::OK);
    srv.stop().await;
}

/// Manifest bodies share a memory budget: while one fills it, another
/// waits at most the body timeout and then gets `429`, without its body
/// being buffered; once the first is done, the second is accepted.
///
/// The hog holds the budget only while its trickle (a byte per 200 ms)
/// keeps within the body timeout (1 s); one that a loaded machine held up
/// longer is cut off, and a fresh hog replaces it until the other
/// manifest is refused (within `PATIENCE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_over_the_budget_wait_then_get_429() {
    let mut limits = limits();
    limits.manifest_budget = 0; // raised to one largest manifest (4 MiB)
    limits.body_timeout = Duration::from_secs(1);
    let srv = TestServer::start_limited(Backend::Memory, limits).await;
    let name = "budget/app";
    let img = srv.push_image(name, "v1", 1).await;

    // Holds the whole budget: declares 4 MiB, then trickles bytes in.
    let start_hog = || {
        let (tx, body) = channel_body();
        let hog = srv
            .req(Method::PUT, &format!("/v2/{name}/manifests/hog"))
            .header("content-type", oci_e2e::OCI_MANIFEST)
            .header("content-length", (4 << 20).to_string())
            .body(body);
        let hog = tokio::spawn(async move { hog.send().await });
        let trickle = tokio::spawn(async move {
            while tx.send(Bytes::from_static(b" ")).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        (hog, trickle)
    };
    let (mut hog, mut trickle) = start_hog();
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            // A hog whose trickle a loaded machine held up for the body
            // timeout was rightly cut off (or one that came while another
            // manifest held the budget was refused): it holds nothing, so
            // another takes its place.
            if hog.is_finished() {
                trickle.abort();
                (hog, trickle) = start_hog();
            }
            let resp = srv
                .req(Method::PUT, &format!("/v2/{name}/manifests/v2"))
                .header("content-type", oci_e2e::OCI_MANIFEST)
                .body(img.manifest.clone())
                .send()
                .await
                .unwrap();
            if resp.status() != StatusCode::CREATED {
                return resp;
            }
            // The hog's headers had not arrived yet; try again.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a manifest over the budget is refused");
    assert_error(refused, 429, &["TOOMANYREQUESTS"]).await;

    trickle.abort();
    hog.abort();
    let accepted = tokio::time::timeout(PATIENCE, async {
        loop {
            let resp = srv
                .req(Method::PUT, &format!("/v2/{name}/manifests/v3"))
                .header("content-type", oci_e2e::OCI_MANIFEST)
                .body(img.manifest.clone())
                .send()
                .await
                .unwrap();
            if resp.status() == StatusCode::CREATED {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(accepted.is_ok(), "the budget is released with the request");
    srv.stop().await;
}

/// Hostile manifests (4 MiB of half a million empty objects in `layers`,
/// the shape that once took 90 MiB each to parse) are refused with the
/// spec's error, 32 at once, while a normal request in their midst is
/// served. Their memory is measured in `cargo xtask bench` (`hostile`) and
/// bounded per parse in `oci-types/tests/parse_memory.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_manifests_are_refused_and_others_still_served() {
    let srv = TestServer::start(Backend::Memory).await;
    let name = "bomb/app";
    let img = srv.push_image(name, "v1", 1).await;
    let filler = vec!["{}"; 1_398_000].join(",");
    let bomb = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{filler}]}}"#,
        oci_e2e::OCI_MANIFEST,
        img.config_desc.to_json()
    );
    assert!(bomb.len() <= 4 << 20, "{}", bomb.len());
    let bomb = Bytes::from(bomb);
    let sends: Vec<_> = (0..32)
        .map(|i| {
            let req = srv
                .req(Method::PUT, &format!("/v2/{name}/manifests/bomb{i}"))
                .header("content-type", oci_e2e::OCI_MANIFEST)
                .body(bomb.clone());
            tokio::spawn(async move { req.send().await.unwrap() })
        })
        .collect();
    let pull = srv.get(&format!("/v2/{name}/manifests/v1")).await;
    assert_eq!(pull.status(), StatusCode::OK);
    assert_eq!(
        pull.bytes().await.unwrap().as_ref(),
        img.manifest.as_slice()
    );
    for send in sends {
        assert_error(send.await.unwrap(), 400, &["MANIFEST_INVALID"]).await;
    }
    let tags = srv.get(&format!("/v2/{name}/tags/list")).await;
    let tags: serde_json::Value = tags.json().await.unwrap();
    assert_eq!(
        tags["tags"],
        serde_json::json!(["v1"]),
        "nothing was written"
    );
    srv.stop().await;
}

/// Every path outside the API, and every method an endpoint does not
/// answer, gets the spec's JSON error; 405 names the allowed methods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_routes_and_methods_speak_the_spec() {
    let srv = TestServer::start(Backend::Memory).await;
    for path in [
        "/",
        "/nope",
        "/v2x",
        "/v3/a/tags/list",
        "/v2/a/unknown/thing",
        "/v2/a/blobs/uploads/../../etc/passwd",
        "/v2/a/blobs",
        "/v2/a/manifests",
        "/%00",
    ] {
        let resp = srv.raw_request("GET", path, &[], b"").await;
        assert_raw_error(&resp, 404, &["UNSUPPORTED"]);
    }
    for (method, path, allow) in [
        ("POST", "/v2/a/manifests/latest", "GET, HEAD, PUT, DELETE"),
        ("PUT", "/v2/", "GET, HEAD"),
        ("DELETE", "/v2/a/tags/list", "GET, HEAD"),
        ("GET", "/v2/a/blobs/uploads/", "POST"),
        ("PATCH", "/v2/_catalog", "GET, HEAD"),
    ] {
        let resp = srv.raw_request(method, path, &[], b"").await;
        assert_raw_error(&resp, 405, &["UNSUPPORTED"]);
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
    }
    srv.stop().await;
}

/// Range arithmetic is checked: a `Content-Range` whose length overflows,
/// or a `Range` at the end of the number line, is refused or clamped with
/// the spec's answer, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_ranges_are_refused_not_overflowed() {
    let srv = TestServer::start(Backend::Memory).await;
    let loc = srv.start_upload("ranges/x").await;
    for range in ["0-18446744073709551615", "18446744073709551615-0"] {
        let resp = srv
            .req(Method::PATCH, &loc)
            .header("content-range", range)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_error(resp, 416, &["BLOB_UPLOAD_INVALID"]).await;
    }
    let digest = srv.push_blob("ranges/x", b"0123456789").await;
    let blob = format!("/v2/ranges/x/blobs/{digest}");
    for (range, status, body) in [
        ("bytes=0-18446744073709551615", 206, &b"0123456789"[..]),
        ("bytes=9-18446744073709551615", 206, b"9"),
        ("bytes=-18446744073709551615", 206, b"0123456789"),
        ("bytes=18446744073709551615-", 416, b""),
    ] {
        let resp = srv
            .req(Method::GET, &blob)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{range}");
        if status == 206 {
            assert_eq!(resp.bytes().await.unwrap().as_ref(), body, "{range}");
        }
    }
    srv.stop().await;
}

backend_tests!(stalled_body_keeps_completed_chunks);
