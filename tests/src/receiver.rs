//! A webhook receiver for the notification tests: a small axum server on
//! `127.0.0.1` that keeps every request it gets, and answers with a
//! status (and after a delay) the test chooses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its `Content-Type`.
    pub content_type: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, as JSON (`Null` if it was not JSON).
    pub body: Value,
}

impl Received {
    /// The events it carried: a distribution envelope's `events`, or a
    /// CloudEvent's `data`.
    pub fn events(&self) -> Vec<Value> {
        match self.body.get("events").and_then(Value::as_array) {
            Some(events) => events.clone(),
            None => vec![self.body["data"].clone()],
        }
    }
}

#[derive(Default)]
struct Shared {
    got: Mutex<Vec<Received>>,
    /// Requests answered with `status` (counted even when they fail).
    status: AtomicU16,
    delay_ms: AtomicU64,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    /// A receiver on a free port, answering 200.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener, Arc::default())
    }

    /// A free address nothing listens on yet: events sent there fail until
    /// [`Receiver::start_at`] listens on it.
    pub async fn free_addr() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    }

    /// A receiver at `addr`, answering 200.
    pub async fn start_at(addr: SocketAddr) -> Receiver {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind the receiver's address");
        Self::serve(listener, Arc::default())
    }

    fn serve(listener: TcpListener, shared: Arc<Shared>) -> Receiver {
        shared.status.store(200, Ordering::Relaxed);
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            shared,
            task: Some(task),
        }
    }

    /// The URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers `status` from now on.
    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::Relaxed);
    }

    /// Waits `delay` before answering from now on.
    pub fn delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.got.lock().unwrap().clone()
    }

    /// Every event of the requests answered 2xx so far, in order.
    pub fn delivered(&self) -> Vec<Value> {
        self.received()
            .iter()
            .filter(|r| r.headers.get("x-answered").is_none())
            .flat_map(Received::events)
            .collect()
    }

    /// Waits until `n` requests arrived (panics after `within`).
    pub async fn wait_requests(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} notification requests arrived within {within:?}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops listening (events sent now fail to connect).
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delay = shared.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status =
        StatusCode::from_u16(shared.status.load(Ordering::Relaxed)).unwrap_or(StatusCode::OK);
    let mut headers = headers;
    if !status.is_success() {
        // Marks requests that were refused, for `delivered`.
        headers.insert("x-answered", status.as_str().parse().unwrap());
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    shared.got.lock().unwrap().push(Received {
        content_type,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    status
}
