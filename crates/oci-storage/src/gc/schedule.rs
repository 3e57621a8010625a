//! The online collector: every replica checks, now and then, whether a
//! collection is due, and the one that takes the collector lock runs it.
//! Which replica collects is decided by the lock and the state in the
//! store, never by process state.

use std::time::Duration;

use super::state::unix_now;
use super::{GcOptions, GcReport, GcState};
use crate::Storage;
use crate::error::{Result, StorageError};

/// When the online collector runs, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcSchedule {
    /// A collection is due this long after the last one finished (on any
    /// replica).
    pub interval: Duration,
    /// How each collection runs (`dry_run` and `lock_wait` are ignored).
    pub options: GcOptions,
}

/// The running online collector; stops when dropped.
#[derive(Debug)]
pub struct Collector(tokio::task::JoinHandle<()>);

impl Drop for Collector {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// True when `state` calls for a collection: the last one finished
/// `interval` ago, or one died before finishing.
fn due(state: &GcState, interval: Duration) -> bool {
    !state.is_idle() || unix_now() >= state.finished_at.saturating_add(interval.as_secs())
}

impl Storage {
    /// Starts the online collector: checks every `interval / 4` (at least
    /// every minute) whether a collection is due and, if this replica
    /// takes the lock, runs it. Stops when the handle is dropped.
    pub fn start_collector(&self, schedule: GcSchedule) -> Collector {
        let storage = self.clone();
        Collector(tokio::spawn(async move {
            let every =
                (schedule.interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
            loop {
                tokio::time::sleep(every).await;
                match storage.collect_if_due(&schedule).await {
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
                }
            }
        }))
    }

    /// Runs a collection if one is due and no other replica runs it.
    pub async fn collect_if_due(&self, schedule: &GcSchedule) -> Result<Option<GcReport>> {
        if !due(&self.gc_state().await?, schedule.interval) {
            return Ok(None);
        }
        // On S3, a dead collector's lease is taken over once seen unchanged
        // for the lease TTL; the filesystem's lock dies with its holder.
        let wait = if self.local().is_some() {
            Duration::ZERO
        } else {
            self.options().lease_ttl + Duration::from_secs(1)
        };
        let lock = match self.collector_lock(wait).await {
            Ok(lock) => lock,
            Err(StorageError::Busy(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let state = self.gc_state().await?;
        if !due(&state, schedule.interval) {
            lock.release().await;
            return Ok(None); // another replica just collected
        }
        let options = GcOptions {
            dry_run: false,
            lock_wait: Duration::ZERO,
            ..schedule.options.clone()
        };
        let report = self
            .collect_with(&options, Some(&lock), state.generation + 1)
            .await;
        lock.release().await;
        report.map(Some)
    }
}
