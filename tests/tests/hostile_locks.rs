//! Hostile use of upload-session locks over real HTTP: a lock storm of
//! clients that give up must not starve the server, and a request that
//! waits too long for a session is answered `429 TOOMANYREQUESTS`
//! (distribution-spec "Error Codes": code-14).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use oci_e2e::*;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use tokio::sync::mpsc;

const MIB: usize = 1024 * 1024;

/// Bytes the holder sends before the storm: more than loopback socket
/// buffers hold, so the server has read (and so holds the session's lock)
/// once they are all handed to the client.
const HOLDER_HEAD: usize = 24 * MIB;

/// A PATCH whose body the test streams by hand, keeping its session busy.
struct Holder {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    sent: Vec<u8>,
    request: tokio::task::JoinHandle<reqwest::Response>,
}

impl Holder {
    /// Starts the PATCH on `loc` and streams [`HOLDER_HEAD`] bytes into it.
    async fn start(srv: &TestServer, loc: &str) -> Holder {
        let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(1);
        let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let req = srv
            .req(Method::PATCH, loc)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        let request = tokio::spawn(async move { req.send().await.expect("holder PATCH") });
        let mut holder = Holder {
            tx,
            sent: Vec::new(),
            request,
        };
        for seed in 0..(HOLDER_HEAD / MIB) as u64 {
            holder.send(random_blob(MIB, 100 + seed)).await;
        }
        holder
    }

    async fn send(&mut self, chunk: Vec<u8>) {
        self.sent.extend_from_slice(&chunk);
        self.tx
            .send(Ok(Bytes::from(chunk)))
            .await
            .expect("holder body consumed");
    }

    /// Sends the last bytes, ends the body and returns the response and
    /// everything sent.
    async fn finish(mut self) -> (reqwest::Response, Vec<u8>) {
        self.send(random_blob(12345, 99)).await;
        drop(self.tx);
        let resp = tokio::time::timeout(Duration::from_secs(60), self.request)
            .await
            .expect("holder PATCH answered")
            .unwrap();
        (resp, self.sent)
    }
}

/// A PATCH on `loc` whose body starts but never ends, dropped (connection
/// closed) after `patience`. True if it got no answer in that time.
async fn impatient_patch(http: reqwest::Client, url: String, patience: Duration) -> bool {
    let body = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"x")) })
        .chain(futures::stream::pending());
    let req = http
        .request(Method::PATCH, url)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    tokio::time::timeout(patience, req).await.is_err()
}

/// Completes the upload at `loc` with `data` (already sent) and checks the
/// blob pulled back.
async fn complete_and_check(srv: &TestServer, name: &str, loc: &str, data: &[u8]) {
    let digest = sha256_digest(data);
    let resp = srv
        .req(Method::PUT, &with_query(loc, "digest", &digest))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "close the held session");
    let pulled = srv.get(&format!("/v2/{name}/blobs/{digest}")).await;
    assert_eq!(pulled.status(), StatusCode::OK);
    let body = pulled.bytes().await.unwrap();
    assert!(body.as_ref() == data, "the held session's blob differs");
}

/// "Lock storm": hundreds of PATCHes pile onto one busy session and their
/// clients give up. Waiting holds no thread and no lock, so a blob GET and
/// another upload answer at once, and once the holder finishes the session
/// holds exactly the holder's bytes.
///
/// "At once" is within 15 s each (20 s together), room for a loaded
/// machine tearing down 600 connections; waiters that held threads would
/// hold them for `lock_wait` (30 s), past that.
async fn lock_storm_leaves_server_responsive(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "hostile/storm";
    let blob = random_blob(MIB, 1);
    let blob_digest = srv.push_blob(name, &blob).await;
    let loc = srv.start_upload(name).await;
    let holder = Holder::start(&srv, &loc).await;

    let storm: Vec<_> = (0..600)
        .map(|_| {
            tokio::spawn(impatient_patch(
                srv.http().clone(),
                srv.url(&loc),
                Duration::from_secs(2),
            ))
        })
        .collect();
    for waiter in storm {
        assert!(
            waiter.await.unwrap(),
            "a PATCH on a busy session was answered before its client gave up"
        );
    }

    let started = Instant::now();
    let got = tokio::time::timeout(
        Duration::from_secs(15),
        srv.get(&format!("/v2/{name}/blobs/{blob_digest}")),
    )
    .await
    .expect("blob GET answered promptly during the storm");
    assert_eq!(got.status(), StatusCode::OK);
    assert!(got.bytes().await.unwrap().as_ref() == blob.as_slice());
    let other = random_blob(64 * 1024, 2);
    tokio::time::timeout(Duration::from_secs(15), srv.push_blob(name, &other))
        .await
        .expect("an upload on another session answered promptly");
    assert!(started.elapsed() < Duration::from_secs(20));

    let (resp, sent) = holder.finish().await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "holder PATCH");
    assert_eq!(
        header(&resp, "range").as_deref(),
        Some(format!("0-{}", sent.len() - 1).as_str())
    );
    complete_and_check(&srv, name, &loc, &sent).await;
}

/// A request that cannot get a busy session within `lock_wait` is
/// answered `429 Too Many Requests` with the spec's `TOOMANYREQUESTS`
/// error body, and its chunk is not counted.
async fn busy_session_answers_429(backend: Backend) {
    let mut options = oci_storage::StorageOptions::default();
    options.lock_wait = Duration::from_millis(300);
    let srv = TestServer::start_with_options(backend, options).await;
    let name = "hostile/busy";
    let loc = srv.start_upload(name).await;
    let holder = Holder::start(&srv, &loc).await;

    let started = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        srv.req(Method::PATCH, &loc)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(b"late".to_vec())
            .send(),
    )
    .await
    .expect("a waiter is answered after lock_wait")
    .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_error(resp, 429, &["TOOMANYREQUESTS"]).await;

    let (resp, sent) = holder.finish().await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "holder PATCH");
    complete_and_check(&srv, name, &loc, &sent).await;
}

backend_tests!(
    lock_storm_leaves_server_responsive,
    busy_session_answers_429
);
