//! Expiry of abandoned upload sessions, and the cap on open ones.
//!
//! A client that starts an upload and goes away leaves its state, its
//! bytes and (on S3) a multipart upload behind. [`Storage::sweep_uploads`]
//! removes every session untouched for [`StorageOptions::upload_ttl`]:
//! "untouched" means the newest object under `_uploads/<uuid>/` (state,
//! data, tail, lock) is older than that, as the store dates it.
//!
//! Safe on every replica at once, and against requests in flight:
//!
//! - a session is removed only under its session lock, taken without
//!   waiting, so never while a request uses it; once held, the session is
//!   checked again and kept if it was touched in the meantime;
//! - an S3 lease left held by a replica that died is taken over only after
//!   this process has seen it unchanged for the lease TTL (see the lease
//!   module), so sessions found busy are tried once more after that long;
//! - removal goes through the same path as a cancel: state first, then the
//!   bytes and the multipart upload.
//!
//! [`Storage::start_sweeper`] runs a sweep every `upload_ttl / 8` (between
//! 100 ms and 15 min), the first one that long after start. Replicas take turns through the store, not through
//! process state: time is cut into slots of that length, and only the
//! replica whose create of `_sweeps/uploads/<slot>` succeeds sweeps in that
//! slot; the others read the count of open sessions it wrote. Which
//! replica wins does not matter for safety, only for how much listing is
//! done.
//!
//! The cap ([`StorageOptions::max_uploads`]) is checked against the last
//! sweep's count plus the sessions this process opened since that sweep
//! began, less those its requests closed: an estimate that errs high, never
//! low, for sessions opened here (one opened while a sweep lists may count
//! twice until the next sweep), and misses what other replicas opened
//! since the last sweep, so on N replicas the cap can be passed by what
//! they open within one sweep interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{PutMode, PutOptions, PutPayload};
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{Result, StorageError};
use crate::telemetry::{self, Closed};
use crate::{Storage, StorageOptions, layout};

/// What one sweep found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Sessions with a state, left open (including busy ones).
    pub open: usize,
    /// Sessions removed.
    pub expired: usize,
    /// Expired sessions kept because a request was using them.
    pub busy: usize,
}

/// The running sweeper; stops when dropped.
#[derive(Debug)]
pub struct Sweeper(tokio::task::JoinHandle<()>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The estimate of open sessions behind the cap: the last sweep's count,
/// plus the sessions this process opened since that sweep began, less those
/// its requests closed since. Sessions opened while a sweep lists may be
/// counted twice until the next sweep: the estimate errs high, never low.
#[derive(Debug, Default)]
pub(crate) struct OpenUploads {
    /// Sessions opened by this process, ever.
    opened: AtomicUsize,
    /// Sessions closed by requests to this process, ever.
    closed: AtomicUsize,
    /// The count of the last sweep and the two counters when it began.
    baseline: std::sync::Mutex<Baseline>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Baseline {
    swept: usize,
    opened: usize,
    closed: usize,
}

impl OpenUploads {
    fn estimate(&self) -> usize {
        let b = *self.baseline.lock().unwrap_or_else(|e| e.into_inner());
        let opened = self.opened.load(Ordering::Relaxed) - b.opened;
        let closed = self.closed.load(Ordering::Relaxed) - b.closed;
        (b.swept + opened).saturating_sub(closed)
    }

    /// The counters now, to pass to [`OpenUploads::reset`] once a count
    /// that began now is known.
    fn snapshot(&self) -> Baseline {
        Baseline {
            swept: 0,
            opened: self.opened.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
        }
    }

    fn reset(&self, mut at: Baseline, swept: usize) {
        at.swept = swept;
        *self.baseline.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    pub(crate) fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// How often sweeps run for `options`.
fn interval(options: &StorageOptions) -> Duration {
    (options.upload_ttl / 8).clamp(Duration::from_millis(100), Duration::from_secs(15 * 60))
}

/// A session seen in a listing: whether it has a state, and its newest
/// object's date.
struct Seen {
    has_state: bool,
    newest: SystemTime,
}

impl Storage {
    /// `Err` if another upload session may not be opened now (the cap).
    pub(crate) fn admit_upload(&self) -> Result<()> {
        let max = self.inner.options.max_uploads;
        if self.inner.open_uploads.estimate() >= max {
            return Err(StorageError::TooManyUploads { max });
        }
        Ok(())
    }

    /// Notes that a session was opened: once its state is stored, so that a
    /// sweep either lists it or began before it was counted here.
    pub(crate) fn upload_opened(&self) {
        self.inner.open_uploads.opened();
        telemetry::upload_opened();
        telemetry::uploads_in_progress(self.inner.open_uploads.estimate());
    }

    /// Notes that a request closed a session (completed or cancelled it).
    pub(crate) fn upload_closed(&self, reason: Closed) {
        self.inner.open_uploads.closed();
        telemetry::upload_closed(reason);
        telemetry::uploads_in_progress(self.inner.open_uploads.estimate());
    }

    /// One sweep over every upload session: removes those untouched for
    /// `upload_ttl` that no request is using, and counts the rest.
    pub async fn sweep_uploads(&self) -> Result<SweepReport> {
        let ttl = self.inner.options.upload_ttl;
        let began = self.inner.open_uploads.snapshot();
        let mut report = SweepReport::default();
        let mut busy = Vec::new();
        for (id, seen) in self.list_sessions().await? {
            if !is_stale(seen.newest, ttl) {
                report.open += usize::from(seen.has_state);
                continue;
            }
            match self.expire_session(&id, ttl).await? {
                Expiry::Removed => {
                    report.expired += 1;
                    telemetry::upload_closed(Closed::Expired);
                }
                Expiry::Touched => report.open += usize::from(seen.has_state),
                Expiry::Busy => busy.push((id, seen)),
            }
        }
        if !busy.is_empty() {
            // A lease held by a dead replica can be taken over once it was
            // seen unchanged for the lease TTL.
            tokio::time::sleep(self.inner.options.lease_ttl + Duration::from_millis(100)).await;
            for (id, seen) in busy {
                match self.expire_session(&id, ttl).await? {
                    Expiry::Removed => {
                        report.expired += 1;
                        telemetry::upload_closed(Closed::Expired);
                    }
                    Expiry::Touched => report.open += usize::from(seen.has_state),
                    Expiry::Busy => {
                        report.busy += 1;
                        report.open += usize::from(seen.has_state);
                    }
                }
            }
        }
        self.inner.open_uploads.reset(began, report.open);
        telemetry::uploads_in_progress(self.inner.open_uploads.estimate());
        Ok(report)
    }

    /// Starts sweeping in the background, taking turns with other replicas
    /// (see the module docs). Stops when the returned handle is dropped.
    pub fn start_sweeper(&self) -> Sweeper {
        let storage = self.clone();
        Sweeper(tokio::spawn(async move {
            let every = interval(&storage.inner.options);
            // The first sweep one interval after start: nothing can have
            // expired sooner than that since the last one.
            let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = storage.sweep_turn(every).await {
                    tracing::warn!(error = %e, "sweeping upload sessions failed");
                }
            }
        }))
    }

    /// Sweeps if this replica wins the current slot, else takes the count
    /// the winner of the last one wrote.
    async fn sweep_turn(&self, every: Duration) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let slot = now.as_millis() / every.as_millis().max(1);
        let marker = layout::sweep_slot(slot);
        let won = self
            .store()
            .put_opts(
                &marker,
                PutPayload::default(),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match won {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let now = self.inner.open_uploads.snapshot();
                if let Some(count) = self.read_small(&layout::sweep_count()).await?
                    && let Ok(count) = std::str::from_utf8(&count).unwrap_or("").trim().parse()
                {
                    self.inner.open_uploads.reset(now, count);
                    telemetry::uploads_in_progress(self.inner.open_uploads.estimate());
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let report = self.sweep_uploads().await?;
        if report.expired > 0 || report.busy > 0 {
            tracing::info!(
                expired = report.expired,
                busy = report.busy,
                open = report.open,
                "swept upload sessions"
            );
        }
        self.write_small(&layout::sweep_count(), report.open.to_string())
            .await?;
        // Earlier slots' markers are no longer needed.
        let old: Vec<Path> = self
            .store()
            .list(Some(&layout::sweep_slots()))
            .try_filter_map(|m| {
                let older = m
                    .location
                    .filename()
                    .and_then(|f| f.parse::<u128>().ok())
                    .is_some_and(|s| s < slot);
                async move { Ok(older.then_some(m.location)) }
            })
            .try_collect()
            .await?;
        for path in old {
            crate::upload_area::delete_if_exists(self.store(), &path).await?;
        }
        Ok(())
    }

    /// Every session directory under `_uploads/`, by id.
    async fn list_sessions(&self) -> Result<HashMap<Uuid, Seen>> {
        let mut sessions: HashMap<Uuid, Seen> = HashMap::new();
        let mut listing = self.store().list(Some(&layout::uploads_dir()));
        while let Some(meta) = listing.try_next().await? {
            let mut parts = meta.location.parts().skip(1);
            let Some(id) = parts.next().and_then(|p| Uuid::parse_str(p.as_ref()).ok()) else {
                continue;
            };
            let is_state = parts.next().is_some_and(|p| p.as_ref() == "state.json");
            let modified = SystemTime::from(meta.last_modified);
            let seen = sessions.entry(id).or_insert(Seen {
                has_state: false,
                newest: SystemTime::UNIX_EPOCH,
            });
            seen.has_state |= is_state;
            seen.newest = seen.newest.max(modified);
        }
        Ok(sessions)
    }

    /// Removes one session if no request holds it and it is still stale.
    async fn expire_session(&self, id: &Uuid, ttl: Duration) -> Result<Expiry> {
        let mut lock = match self.lock_session_until(id, Instant::now()).await {
            Ok(lock) => lock,
            Err(StorageError::Busy(_)) => return Ok(Expiry::Busy),
            Err(e) => return Err(e),
        };
        // Touched between the listing and the lock?
        let newest = self
            .store()
            .list(Some(&layout::upload_dir(id)))
            .try_fold(SystemTime::UNIX_EPOCH, |newest, m| async move {
                let lock_object = m.location.filename() == Some("lock");
                let modified = SystemTime::from(m.last_modified);
                // Our own lock was just written; it says nothing.
                Ok(if lock_object {
                    newest
                } else {
                    newest.max(modified)
                })
            })
            .await?;
        if newest != SystemTime::UNIX_EPOCH && !is_stale(newest, ttl) {
            return Ok(Expiry::Touched);
        }
        let state = self.state_of(id).await?;
        tracing::debug!(upload = %id, "expiring an abandoned upload session");
        self.discard(id, state.as_ref(), &mut lock).await?;
        Ok(Expiry::Removed)
    }
}

/// What became of an expired session.
enum Expiry {
    Removed,
    /// Used again since it was listed.
    Touched,
    /// A request holds it.
    Busy,
}

fn is_stale(newest: SystemTime, ttl: Duration) -> bool {
    SystemTime::now()
        .duration_since(newest)
        .is_ok_and(|age| age >= ttl)
}
