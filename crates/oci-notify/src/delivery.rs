//! Delivering outboxes to their endpoints, on every replica, each endpoint
//! by one replica at a time.
//!
//! Every replica runs one task per endpoint. The task takes the endpoint
//! outbox's lock (see [`oci_storage::Outbox::lock`]; an S3 lease taken over
//! from a replica that stopped renewing it) and, while it holds it,
//! delivers the outbox in order: the oldest record first, one request per
//! event, the record removed only after a 2xx answer. A failed attempt is
//! counted in storage, waits `backoff` (doubling, up to `max_backoff`),
//! and is retried before anything behind it (per-endpoint order); after
//! `max_attempts` the event is moved to the dead letters and the next one
//! goes. A replica without the lock tries again every two polls.
//!
//! Delivery is at least once: a replica that dies (or loses its lease)
//! after the endpoint accepted an event and before the record was removed
//! leaves it to be sent again; receivers deduplicate on the event `id`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oci_storage::outbox::Record;
use oci_storage::{Outbox, OutboxLock, StorageError};
use reqwest::header::CONTENT_TYPE;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::event::Event;
use crate::notifier::{Endpoint, Notifier};
use crate::telemetry;

/// Records read from an outbox at once: memory held by delivery is at
/// most this many events per endpoint.
const PAGE: usize = 100;

/// The delivery tasks of this process; dropping it stops them (each
/// releases its lock).
#[derive(Debug)]
pub struct Delivery {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Delivery {
    pub(crate) fn start(notifier: &Notifier) -> Self {
        let stop = CancellationToken::new();
        let tasks = notifier
            .inner
            .endpoints
            .iter()
            .map(|endpoint| {
                let worker = Worker {
                    outbox: notifier.inner.storage.outbox(&endpoint.options.name),
                    endpoint: Arc::clone(endpoint),
                    poll: notifier.inner.poll,
                    stop: stop.clone(),
                };
                tokio::spawn(worker.run())
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops delivering and waits until every lock is released.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One endpoint's delivery on this replica.
struct Worker {
    outbox: Outbox,
    endpoint: Arc<Endpoint>,
    poll: Duration,
    stop: CancellationToken,
}

/// Why delivering stopped.
enum Stopped {
    /// Asked to.
    Stop,
    /// The lock may be another replica's now.
    LockLost,
}

impl Worker {
    fn name(&self) -> &str {
        self.endpoint.options.name.as_str()
    }

    async fn run(self) {
        let standby = (self.poll * 2).max(Duration::from_secs(1));
        while !self.stop.is_cancelled() {
            let lock = match self.outbox.lock(Duration::ZERO).await {
                Ok(lock) => lock,
                Err(StorageError::Busy(_)) => {
                    self.pause(standby).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(endpoint = self.name(), error = %e, "notifications: taking the delivery lock failed");
                    self.pause(standby).await;
                    continue;
                }
            };
            tracing::debug!(endpoint = self.name(), "notifications: delivering");
            telemetry::delivering(self.name(), true);
            let stopped = self.deliver(&lock).await;
            telemetry::delivering(self.name(), false);
            if let Stopped::LockLost = stopped {
                tracing::warn!(
                    endpoint = self.name(),
                    "notifications: the delivery lock was lost"
                );
            }
            lock.release().await;
        }
    }

    /// Sleeps `d`, or less if stopped.
    async fn pause(&self, d: Duration) {
        tokio::select! {
            () = self.stop.cancelled() => {}
            () = tokio::time::sleep(d) => {}
        }
    }

    /// Delivers while the lock is held.
    async fn deliver(&self, lock: &OutboxLock) -> Stopped {
        loop {
            if self.stop.is_cancelled() {
                return Stopped::Stop;
            }
            if lock.is_lost() {
                return Stopped::LockLost;
            }
            let page = match self.outbox.pending(PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(endpoint = self.name(), error = %e, "notifications: reading the outbox failed");
                    self.pause(self.poll).await;
                    continue;
                }
            };
            if page.is_empty() {
                tokio::select! {
                    () = self.stop.cancelled() => {}
                    () = self.endpoint.wake.notified() => {}
                    () = tokio::time::sleep(self.poll) => {}
                }
                continue;
            }
            for record in page {
                if self.stop.is_cancelled() {
                    return Stopped::Stop;
                }
                if lock.is_lost() {
                    return Stopped::LockLost;
                }
                if !self.one(&record).await {
                    // Retry the head (after its backoff) before anything
                    // behind it.
                    break;
                }
            }
        }
    }

    /// Delivers one record; false if it stays at the head (to be retried).
    async fn one(&self, record: &Record) -> bool {
        let options = &self.endpoint.options;
        let event = match serde_json::from_slice::<Event>(&record.body) {
            Ok(event) => event,
            Err(e) => {
                // Nothing this registry wrote: never deliverable.
                return self
                    .bury(record, 0, &format!("unreadable record: {e}"))
                    .await;
            }
        };
        let error = match self.send(&event).await {
            Ok(()) => {
                telemetry::count(telemetry::DELIVERED, self.name());
                if let Err(e) = self.outbox.remove(&record.key).await {
                    tracing::warn!(endpoint = self.name(), error = %e, "notifications: removing a delivered event failed");
                    self.pause(self.poll).await;
                    return false;
                }
                return true;
            }
            Err(error) => error,
        };
        telemetry::count(telemetry::FAILED, self.name());
        let attempts = match self.outbox.record_failure(&record.key).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(endpoint = self.name(), error = %e, "notifications: counting a failed attempt failed");
                self.pause(options.backoff_after(1)).await;
                return false;
            }
        };
        if attempts >= options.max_attempts {
            return self.bury(record, attempts, &error).await;
        }
        let wait = options.backoff_after(attempts);
        tracing::warn!(
            endpoint = self.name(),
            event = %event.id,
            attempts,
            retry_in = %humantime::format_duration(wait),
            error = %error,
            "notifications: delivery failed"
        );
        self.pause(wait).await;
        false
    }

    /// One request; a readable reason when it failed.
    async fn send(&self, event: &Event) -> Result<(), String> {
        let options = &self.endpoint.options;
        let request = self
            .endpoint
            .client
            .post(options.url.clone())
            .headers(self.endpoint.headers.clone())
            .header(CONTENT_TYPE, options.format.content_type())
            .body(options.format.body(event));
        // The answer's body is never read: a hostile receiver cannot make
        // delivery hold more than the answer's head.
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("the endpoint answered {}", response.status())),
            Err(e) if e.is_timeout() => Err(format!(
                "no answer within {}",
                humantime::format_duration(options.timeout)
            )),
            Err(e) => Err(format!("request failed: {}", error_chain(&e))),
        }
    }

    /// Moves `record` to the dead letters with why; true once it is off
    /// the queue.
    async fn bury(&self, record: &Record, attempts: u32, error: &str) -> bool {
        let event = serde_json::from_slice::<serde_json::Value>(&record.body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&record.body).into());
        let letter = serde_json::json!({
            "endpoint": self.name(),
            "attempts": attempts,
            "error": error,
            "deadLetteredAt": crate::event::now(),
            "event": event,
        });
        let letter = Bytes::from(serde_json::to_vec(&letter).unwrap_or_default());
        match self.outbox.dead_letter(&record.key, letter).await {
            Ok(()) => {
                telemetry::count(telemetry::DEAD_LETTERED, self.name());
                tracing::error!(
                    endpoint = self.name(),
                    key = %record.key,
                    attempts,
                    error,
                    "notifications: event dead-lettered after its last attempt"
                );
                true
            }
            Err(e) => {
                tracing::warn!(endpoint = self.name(), error = %e, "notifications: dead-lettering failed");
                self.pause(self.poll).await;
                false
            }
        }
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
