//! Upload sessions do not grow without bound: abandoned ones expire after
//! the upload TTL (state, bytes, tails and S3 multipart uploads), sessions
//! in use never do, and the number open at once is capped.
//!
//! The sweeper runs inside each server as in the binary; the TTL is a
//! second so it sweeps every 125 ms. Waits are bounded by `PATIENCE`, far
//! above what a correct server needs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use oci_e2e::{
    Backend, TestServer, assert_error, backend_tests, backend_tests_and_azure, channel_body,
    header, location, random_blob, sha256_digest, walk, with_query,
};
use reqwest::{Method, StatusCode};

const PATIENCE: Duration = Duration::from_secs(30);

fn options(ttl: Duration) -> oci_storage::StorageOptions {
    let mut options = oci_storage::StorageOptions::default();
    options.upload_ttl = ttl;
    options
}

/// What is left of upload sessions in the server's store, where the test
/// can see it (filesystem and S3); `None` for memory.
fn upload_leftovers(srv: &TestServer) -> Option<Vec<String>> {
    if let Some(s3) = srv.s3() {
        let mut left = s3.keys("registry/_uploads/");
        if s3.open_multipart_uploads() > 0 {
            left.push(format!("{} multipart uploads", s3.open_multipart_uploads()));
        }
        return Some(left);
    }
    let dir = srv.temp_dir()?.join("registry/_uploads");
    Some(walk(&dir).iter().map(|p| p.display().to_string()).collect())
}

/// Waits until `GET` on the session answers 404.
async fn wait_gone(srv: &TestServer, loc: &str) {
    let gone = tokio::time::timeout(PATIENCE, async {
        loop {
            if srv.get(loc).await.status() == StatusCode::NOT_FOUND {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "session {loc} was not expired");
}

/// Abandoned sessions, empty or holding bytes (on S3: a multipart upload
/// with a full part and a tail), are removed after the TTL with everything
/// they stored; the answer for them is then the spec's 404.
async fn abandoned_sessions_expire_with_their_bytes(backend: Backend) {
    let srv = TestServer::start_with_options(backend, options(Duration::from_secs(1))).await;
    let name = "expire/app";
    // More than one 8 MiB S3 part: a multipart upload and a tail. Made
    // before the session starts, which its PATCH must reach within the TTL.
    let data = random_blob(9 << 20, 3);
    let empty = srv.start_upload(name).await;
    let started = srv.start_upload(name).await;
    let resp = srv
        .req(Method::PATCH, &started)
        .header("content-range", format!("0-{}", data.len() - 1))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let started = location(&resp);
    if let Some(s3) = srv.s3() {
        assert_eq!(s3.open_multipart_uploads(), 1);
    }
    wait_gone(&srv, &empty).await;
    wait_gone(&srv, &started).await;
    assert_error(srv.get(&started).await, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    // The sweep finishes removing what it found (the lock goes last).
    let clean = tokio::time::timeout(PATIENCE, async {
        loop {
            match upload_leftovers(&srv) {
                Some(left) if !left.is_empty() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => return,
            }
        }
    })
    .await;
    assert!(clean.is_ok(), "left behind: {:?}", upload_leftovers(&srv));
    // New uploads work as before.
    srv.push_blob(name, b"after the sweep").await;
    srv.stop().await;
}

/// A session a request is using is never removed, however long it stays
/// untouched in the store, and a session touched within the TTL stays.
///
/// The `PATCH` keeps its session busy for three TTLs; the `PUT` that
/// completes it must take the session within the TTL (1 s) of the
/// `PATCH`'s end, which the test measures from the moment it ended the
/// body (before the server's last write). A `PUT` that a loaded machine
/// made that late may rightly find the session expired: that proves
/// nothing, and the round is tried again with a new session, a bounded
/// number of times.
async fn sessions_in_use_are_kept(backend: Backend) {
    const TTL: Duration = Duration::from_secs(1);
    let srv = TestServer::start_with_options(backend, options(TTL)).await;
    let name = "expire/busy";
    let data = random_blob(40_000, 9);
    for round in 0..5 {
        let loc = srv.start_upload(name).await;
        let (tx, body) = channel_body();
        let patch = srv.req(Method::PATCH, &loc).body(body).send();
        let feeder = {
            let data = data.clone();
            tokio::spawn(async move {
                // Three TTLs of slow sending: the sweeper sees it stale.
                for chunk in data.chunks(4000) {
                    tx.send(Bytes::copy_from_slice(chunk)).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                // The body ends as `tx` is dropped.
                Instant::now()
            })
        };
        let resp = patch.await.unwrap();
        let body_ended = feeder.await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let loc = location(&resp);
        assert_eq!(header(&resp, "range").as_deref(), Some("0-39999"));
        // Touched just now: it completes.
        let done = srv
            .req(
                Method::PUT,
                &with_query(&loc, "digest", &sha256_digest(&data)),
            )
            .send()
            .await
            .unwrap();
        if done.status() != StatusCode::CREATED && body_ended.elapsed() >= TTL {
            eprintln!(
                "round {round}: the PUT came {:?} after the PATCH ({}); again",
                body_ended.elapsed(),
                done.status()
            );
            continue;
        }
        assert_eq!(done.status(), StatusCode::CREATED);
        let blob = srv
            .get(&format!("/v2/{name}/blobs/{}", sha256_digest(&data)))
            .await;
        assert_eq!(blob.bytes().await.unwrap().as_ref(), data.as_slice());
        srv.stop().await;
        return;
    }
    panic!("every round overran the {TTL:?} window: the machine is too slow to tell");
}

/// At most `max_uploads` sessions are open; one more is refused with
/// `429 TOOMANYREQUESTS` and writes nothing; closing one makes room.
async fn open_sessions_are_capped(backend: Backend) {
    let mut opts = options(Duration::from_secs(24 * 3600));
    opts.max_uploads = 3;
    let srv = TestServer::start_with_options(backend, opts).await;
    let name = "cap/app";
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(srv.start_upload(name).await);
    }
    let refused = srv
        .req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
    assert_error(refused, 429, &["TOOMANYREQUESTS"]).await;
    // A monolithic upload needs a session too.
    let data = b"monolithic";
    let refused = srv
        .req(
            Method::POST,
            &format!("/v2/{name}/blobs/uploads/?digest={}", sha256_digest(data)),
        )
        .body(&data[..])
        .send()
        .await
        .unwrap();
    assert_error(refused, 429, &["TOOMANYREQUESTS"]).await;
    // Cancel one, finish another: two places free.
    assert_eq!(
        srv.delete(&open.pop().unwrap()).await.status(),
        StatusCode::NO_CONTENT
    );
    let last = open.pop().unwrap();
    let resp = srv
        .req(
            Method::PUT,
            &with_query(&last, "digest", &sha256_digest(b"x")),
        )
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    srv.start_upload(name).await;
    srv.push_blob(name, data).await;
    srv.stop().await;
}

/// Two replicas on one store, both sweeping: abandoned sessions of either
/// expire, a session in use on one is kept by the other, and the sweep
/// markers do not pile up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_take_turns_sweeping() {
    let s3 = oci_test_s3::S3Server::start().await.unwrap();
    let url = s3.url("registry");
    let mut opts = options(Duration::from_secs(1));
    opts.backend = s3.options();
    let a = TestServer::start_at_with_options(&url, opts.clone()).await;
    let b = TestServer::start_at_with_options(&url, opts).await;
    let from_a = a.start_upload("pair/app").await;
    let from_b = b.start_upload("pair/app").await;
    wait_gone(&b, &from_a).await;
    wait_gone(&a, &from_b).await;
    let settled = tokio::time::timeout(PATIENCE, async {
        loop {
            let slots = s3.keys("registry/_sweeps/uploads/slots/");
            if slots.len() <= 2 && s3.keys("registry/_uploads/").is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{:?} {:?}",
        s3.keys("registry/_sweeps/"),
        s3.keys("registry/_uploads/")
    );
    a.stop().await;
    b.stop().await;
}

backend_tests!(sessions_in_use_are_kept, open_sessions_are_capped);

backend_tests_and_azure!(abandoned_sessions_expire_with_their_bytes);
