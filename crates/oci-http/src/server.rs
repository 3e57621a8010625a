//! The connection loop: accepts TCP connections and serves the API on
//! them with hyper-util's HTTP/1 + HTTP/2 connection builder, enforcing the
//! connection-level [`Limits`]:
//!
//! - `TCP_NODELAY` on every socket, so a response head and a small body
//!   written separately are not held back by Nagle's algorithm waiting
//!   for the client's delayed ACK (tens of ms per request on keep-alive
//!   connections);
//! - a cap on open connections: one over it gets a `503` with
//!   `Retry-After` and is closed (in a flood, beyond 256 such answers in
//!   progress, closed without one);
//! - hyper's header-read timeout (a slowloris client sending half a head
//!   is cut off);
//! - a keep-alive idle timeout: a connection with no request in flight
//!   and no byte received for [`Limits::keepalive_timeout`] is closed.
//!
//! With [`ServeOptions::tls`] set, every connection is HTTPS (see
//! [`crate::tls`]): the TLS handshake runs in the connection's own task,
//! holding its connection slot, and must finish within
//! [`Limits::header_timeout`]; a client that connects and sends nothing
//! is dropped then. The protocol follows ALPN (`h2` or `http/1.1`).
//! A TLS connection over the cap is refused with the same `503` after a
//! handshake, both bounded to a second.
//!
//! Graceful shutdown stops accepting, lets requests in flight finish, and
//! closes idle connections at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::access::Peer;
use crate::body::Guarded;
use crate::limits::{Limits, RETRY_AFTER_SECS};
use crate::telemetry::{self, Limit, OpenConnection};
use crate::tls::Tls;

/// How [`serve_with`] serves: the connection limits and, optionally, TLS.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The connection-level limits.
    pub limits: Limits,
    /// Serve HTTPS with this (reloadable) configuration; plain HTTP when
    /// `None`.
    pub tls: Option<Tls>,
}

impl ServeOptions {
    /// Plain HTTP with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self { limits, tls: None }
    }

    /// Serves HTTPS with `tls`.
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// Serves `app` over plain HTTP on `listener` until `shutdown` resolves,
/// then stops accepting, lets requests in flight finish and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, &ServeOptions::new(limits.clone()), shutdown).await
}

/// Like [`serve`], with every option: HTTPS when [`ServeOptions::tls`] is
/// set.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = &options.limits;
    // Within what a semaphore holds and `acquire_many` takes.
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    // Refusals in progress are bounded too: in a flood beyond them, an
    // over-cap socket is closed at once instead of answered.
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_timeout / 2)
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
        }
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                let conn = Connection {
                    builder: Arc::clone(&builder),
                    app: app.clone(),
                    keepalive: limits.keepalive_timeout,
                    handshake_timeout: limits.header_timeout,
                    tls: options.tls.clone(),
                    stop: stop_rx.clone(),
                    _slot: slot,
                    _open: OpenConnection::open(),
                };
                tokio::spawn(conn.run(stream));
            }
            Err(_) => {
                telemetry::refused(Limit::Connections);
                if let Ok(refusal) = Arc::clone(&refusals).try_acquire_owned() {
                    let tls = options.tls.clone();
                    let builder = Arc::clone(&builder);
                    tokio::spawn(async move {
                        match tls {
                            None => refuse(stream).await,
                            Some(tls) => refuse_tls(stream, &tls, &builder).await,
                        }
                        drop(refusal);
                    });
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it is done.
    let _all = slots.acquire_many(max as u32).await;
    Ok(())
}

/// How long a closing connection with no request in flight may take to
/// finish before it is dropped.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// Over-cap connections answered `503` at the same time, at most; each
/// takes at most a second.
const REFUSALS_AT_ONCE: usize = 256;

/// The body of the over-cap `503`.
const REFUSAL_BODY: &str = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"the registry has too many open connections; retry"}]}"#;

/// Answers a connection over the cap with `503` and closes it, without
/// reading the request.
async fn refuse(mut stream: TcpStream) {
    let body = REFUSAL_BODY;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: {RETRY_AFTER_SECS}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// [`refuse`] over TLS: handshake, then answer every request `503` in the
/// protocol ALPN chose, all within a second.
async fn refuse_tls(stream: TcpStream, tls: &Tls, builder: &auto::Builder<TokioExecutor>) {
    let work = async {
        let Ok(stream) = tls.acceptor().accept(stream).await else {
            return;
        };
        let service = hyper::service::service_fn(|_request| async {
            axum::http::Response::builder()
                .status(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .header(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS)
                .header(axum::http::header::CONNECTION, "close")
                .body(axum::body::Body::from(REFUSAL_BODY))
        });
        let _ = builder
            .serve_connection(TokioIo::new(stream), service)
            .await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), work).await;
}

/// One accepted connection and what it needs to be served.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    keepalive: Duration,
    /// A TLS handshake must finish within this.
    handshake_timeout: Duration,
    tls: Option<Tls>,
    stop: watch::Receiver<bool>,
    /// Released when the connection is done (the connection cap).
    _slot: OwnedSemaphorePermit,
    /// Counted as open while it lives.
    _open: OpenConnection,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let peer = stream.peer_addr().ok().map(Peer);
        let Some(tls) = self.tls.take() else {
            return self.serve(stream, peer).await;
        };
        let handshake = tokio::time::timeout(self.handshake_timeout, tls.acceptor().accept(stream));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, ?peer, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(?peer, "TLS handshake timed out");
                    return;
                }
            },
            // Shutting down: a handshake is not a request in flight.
            _ = self.stop.wait_for(|stop| *stop) => return,
        };
        self.serve(stream, peer).await
    }

    /// Serves HTTP on an established (plain or TLS) stream.
    async fn serve<S>(mut self, stream: S, peer: Option<Peer>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            io: stream,
            activity: Arc::clone(&activity),
        });
        let app = self.app.clone();
        let tracker = Arc::clone(&activity);
        let service = tower::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            let guard = InFlight::start(&tracker);
            let app = app.clone();
            if let Some(peer) = peer {
                request.extensions_mut().insert(peer);
            }
            async move {
                let response = app.oneshot(request.map(axum::body::Body::new)).await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| axum::body::Body::new(Guarded::new(body, guard))),
                )
            }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service));
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            // Once closing, a connection with nothing in flight gets
            // CLOSING_GRACE to finish (an HTTP/2 client must answer the
            // GOAWAY's PING), then is dropped: a client that never answers
            // cannot hold shutdown up.
            let wait = if closing {
                CLOSING_GRACE
            } else {
                self.keepalive
            };
            let idle_check = tokio::time::sleep_until(activity.idle_deadline(wait));
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                changed = self.stop.changed(), if !closing => {
                    if changed.is_err() || *self.stop.borrow() {
                        closing = true;
                        activity.touch();
                        conn.as_mut().graceful_shutdown();
                    }
                }
                () = idle_check => {
                    if !activity.is_idle_for(wait) {
                        continue;
                    }
                    if closing {
                        tracing::debug!(?peer, "closing connection did not finish; dropped");
                        return;
                    }
                    closing = true;
                    activity.touch();
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What a connection is doing: requests in flight and when it last did
/// anything (milliseconds since `start`).
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    last_active_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    fn last_active(&self) -> Instant {
        self.start + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed))
    }

    /// When the connection would have been idle for `keepalive`, as far as
    /// is known now.
    fn idle_deadline(&self, keepalive: Duration) -> Instant {
        let now = Instant::now();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return now + keepalive;
        }
        (self.last_active() + keepalive).max(now + Duration::from_millis(1))
    }

    fn is_idle_for(&self, keepalive: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.last_active().elapsed() >= keepalive
    }
}

/// One request in flight on a connection; done when dropped (with the
/// response body).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// The (plain or decrypted) stream, noting when bytes arrive (a
    /// request head in progress is not idle).
    struct Tracked<S> {
        #[pin]
        io: S,
        activity: Arc<Activity>,
    }
}

impl<S: AsyncRead> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}
