//! A test-only upstream registry that can misbehave, for the pull-through
//! cache's tests: it serves manifests and blobs it was given (anonymous,
//! no auth), counts blob fetches, and can lie (send other bytes than the
//! digest asked), stall a blob after its first part until released, or
//! answer 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The fake upstream. Dropping it stops it.
pub struct FakeUpstream {
    base: String,
    state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    /// Manifests by `<name>/<reference>` (tag or digest): media type, bytes.
    manifests: Mutex<HashMap<String, (String, Bytes)>>,
    /// Blobs by digest.
    blobs: Mutex<HashMap<String, Bytes>>,
    /// Blob GETs answered (HEADs not counted).
    blob_gets: AtomicUsize,
    /// Requests received.
    requests: AtomicUsize,
    /// Send other bytes than asked (same length).
    lie: AtomicBool,
    /// Answer everything 429.
    throttle: AtomicBool,
    /// Leave `Docker-Content-Digest` out of manifest answers.
    omit_digest: AtomicBool,
    /// While set, blob bodies stop after their first half until notified.
    stall: Mutex<Option<Arc<Notify>>>,
    /// Whether a stalled body reached its stall point.
    stalled: AtomicBool,
}

impl FakeUpstream {
    /// Starts an empty fake upstream on a random local port.
    pub async fn start() -> FakeUpstream {
        let state = Arc::new(Shared::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeUpstream { base, state, task }
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Serves `bytes` as the blob `digest` (which may be a lie).
    pub fn add_blob(&self, digest: &str, bytes: impl Into<Bytes>) {
        let mut blobs = self.state.blobs.lock().unwrap();
        blobs.insert(digest.to_owned(), bytes.into());
    }

    /// Serves `len` random bytes (from `seed`) as a blob: them and their
    /// digest.
    pub fn add_random_blob(&self, len: usize, seed: u64) -> (Vec<u8>, String) {
        let blob = crate::random_blob(len, seed);
        let digest = crate::sha256_digest(&blob);
        self.add_blob(&digest, blob.clone());
        (blob, digest)
    }

    /// Serves the manifest `bytes` as `name:reference` and by its digest.
    pub fn add_manifest(&self, name: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let digest = crate::sha256_digest(bytes);
        let mut manifests = self.state.manifests.lock().unwrap();
        let entry = (media_type.to_owned(), Bytes::copy_from_slice(bytes));
        manifests.insert(format!("{name}/{reference}"), entry.clone());
        manifests.insert(format!("{name}/{digest}"), entry);
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Blob GETs answered so far.
    pub fn blob_gets(&self) -> usize {
        self.state.blob_gets.load(Ordering::SeqCst)
    }

    /// Sends other bytes (of the same length) for every blob.
    pub fn lie(&self, on: bool) {
        self.state.lie.store(on, Ordering::SeqCst);
    }

    /// Leaves `Docker-Content-Digest` out of manifest answers (HEADs then
    /// say nothing of the digest).
    pub fn omit_digest(&self, on: bool) {
        self.state.omit_digest.store(on, Ordering::SeqCst);
    }

    /// Answers every request 429 with `Retry-After: 7`.
    pub fn throttle(&self, on: bool) {
        self.state.throttle.store(on, Ordering::SeqCst);
    }

    /// From now on, blob bodies send their first half, then wait for the
    /// returned notification before sending the rest.
    pub fn stall(&self) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        *self.state.stall.lock().unwrap() = Some(Arc::clone(&notify));
        self.state.stalled.store(false, Ordering::SeqCst);
        notify
    }

    /// Blob bodies are sent whole again.
    pub fn unstall(&self) {
        *self.state.stall.lock().unwrap() = None;
    }

    /// Whether a stalled body has sent its first half and is waiting.
    pub fn is_stalled(&self) -> bool {
        self.state.stalled.load(Ordering::SeqCst)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(state): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    _headers: HeaderMap,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if state.throttle.load(Ordering::SeqCst) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "7")],
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        )
            .into_response();
    }
    let path = uri.path();
    if path == "/v2/" {
        return StatusCode::OK.into_response();
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let found = state
            .manifests
            .lock()
            .unwrap()
            .get(&format!("{name}/{reference}"))
            .cloned();
        let Some((media_type, bytes)) = found else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, media_type.parse().unwrap());
        headers.insert(header::CONTENT_LENGTH, bytes.len().into());
        if !state.omit_digest.load(Ordering::SeqCst) {
            let digest = crate::sha256_digest(&bytes).parse().unwrap();
            headers.insert("docker-content-digest", digest);
        }
        return match method {
            Method::HEAD => headers.into_response(),
            _ => (headers, bytes).into_response(),
        };
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        let Some(bytes) = state.blobs.lock().unwrap().get(digest).cloned() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let len = bytes.len();
        if method == Method::HEAD {
            return [(header::CONTENT_LENGTH, len.to_string())].into_response();
        }
        state.blob_gets.fetch_add(1, Ordering::SeqCst);
        let bytes = if state.lie.load(Ordering::SeqCst) {
            let mut other = bytes.to_vec();
            if let Some(last) = other.last_mut() {
                *last ^= 0xff;
            }
            Bytes::from(other)
        } else {
            bytes
        };
        let stall = state.stall.lock().unwrap().clone();
        let body = match stall {
            None => Body::from(bytes),
            Some(notify) => {
                let half = bytes.slice(..len / 2);
                let rest = bytes.slice(len / 2..);
                let state = Arc::clone(&state);
                let stream = futures::stream::unfold(0u8, move |step| {
                    let (half, rest, notify, state) = (
                        half.clone(),
                        rest.clone(),
                        Arc::clone(&notify),
                        Arc::clone(&state),
                    );
                    async move {
                        match step {
                            0 => Some((Ok::<_, std::io::Error>(half), 1)),
                            1 => {
                                state.stalled.store(true, Ordering::SeqCst);
                                notify.notified().await;
                                Some((Ok(rest), 2))
                            }
                            _ => None,
                        }
                    }
                });
                Body::from_stream(stream)
            }
        };
        return ([(header::CONTENT_LENGTH, len.to_string())], body).into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}
