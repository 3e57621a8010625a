//! Session locks shared by every replica, as fenced lease objects in the
//! store.
//!
//! `_uploads/<uuid>/lock` holds `{"holder": <token>, "seq": n}`, where the
//! token is a random UUID of one acquisition, or `"holder": null` once
//! released. Every change is a conditional write, so each one is decided by
//! the store against the version its writer saw:
//!
//! - **Acquire**: create it with `PutMode::Create` (S3 `If-None-Match: *`);
//!   or, if it exists and is free, overwrite it with
//!   `PutMode::Update` (`If-Match: <ETag seen>`).
//! - **Take over**: a lease whose ETag this waiter has seen unchanged for
//!   `lease_ttl` *on its own monotonic clock* is expired; it is overwritten
//!   with `If-Match` on that ETag. Two takers both send `If-Match` on the
//!   same ETag: S3 applies one and answers `412 Precondition Failed` to the
//!   other, so exactly one wins. No wall clocks are compared across
//!   replicas.
//! - **Renew**: every `lease_ttl / 4` the holder rewrites it with the next
//!   `seq` (so the ETag changes) and `If-Match` on its own last ETag, while
//!   its request makes progress (a client that stops sending mid-body lets
//!   the lease lapse, so it cannot keep a session from other replicas). A
//!   renewal refused with 412 means another holder took over; no successful
//!   renewal sent within the last `lease_ttl / 2` means one may be about
//!   to. Either way the holder's [`Fence`] is lost: its body stream fails,
//!   it saves no state, and it stops before a taker (who waits a whole
//!   `lease_ttl` after the holder's last renewal arrived) can start.
//! - **Release**: overwrite with `holder: null` and `If-Match` on the
//!   holder's last ETag; if that fails someone else holds it now and it is
//!   left alone. Only a *finished* session's lease (state deleted) is then
//!   deleted: upload ids are random and a deleted state is never recreated,
//!   so whoever holds that lock next finds no session and writes nothing.
//!
//! The lease only keeps well-behaved holders apart; safety does not rest on
//! timing alone. The session state is itself written with `If-Match` on the
//! ETag it was read with (see `crate::uploads`), so a holder that lost its
//! lease and still writes, after a pause the fence could not see, cannot
//! commit anything; and the multipart parts it may have sent are never
//! referenced by a committed state (S3 checks every part's ETag on
//! completion).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, PutResult, UpdateVersion,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::SessionLock;
use super::session_lock::Fence;
use crate::error::{Result, StorageError, is_not_found};
use crate::layout;

/// The content of a lease object.
/// What [`StorageError::Busy`] names for a lease: the session's id for a
/// session lock (`_uploads/<id>/lock`), else the object's key.
fn busy_label(path: &Path) -> String {
    let mut parts = path.parts();
    match (parts.next(), parts.next()) {
        (Some(root), Some(id)) if root.as_ref() == "_uploads" => id.as_ref().to_owned(),
        _ => path.to_string(),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LeaseBody {
    /// Token of the acquisition holding it; `None` when free.
    holder: Option<Uuid>,
    /// Bumped by every write, so that every write changes the ETag.
    seq: u64,
}

impl LeaseBody {
    fn payload(&self) -> PutPayload {
        PutPayload::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Lease-based session locks over a store with conditional writes.
#[derive(Debug, Clone)]
pub struct LeaseLocks {
    store: Arc<dyn ObjectStore>,
    ttl: Duration,
    /// Per lease object: the version this process saw and since when.
    seen: Arc<Mutex<HashMap<Path, Seen>>>,
}

#[derive(Debug)]
struct Seen {
    e_tag: String,
    since: Instant,
}

/// A held lease version.
#[derive(Debug, Clone)]
struct Version {
    update: UpdateVersion,
    seq: u64,
}

impl Version {
    fn of(put: PutResult, seq: u64) -> Self {
        Self {
            update: UpdateVersion {
                e_tag: put.e_tag,
                version: put.version,
            },
            seq,
        }
    }
}

fn is_conflict(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Precondition { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::NotFound { .. }
    )
}

impl LeaseLocks {
    /// Locks in `store` that lapse `ttl` after their last renewal.
    pub fn new(store: Arc<dyn ObjectStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl: ttl.max(Duration::from_millis(40)),
            seen: Arc::default(),
        }
    }

    /// Waits until the session's lease is ours, or `deadline` passes
    /// ([`StorageError::Busy`]). Cancel-safe: a lease acquired by a write
    /// whose answer was lost to cancellation lapses after `ttl`.
    pub async fn lock(&self, id: &Uuid, deadline: Instant) -> Result<SessionLock> {
        self.lock_object(layout::upload_lock(id), deadline).await
    }

    /// Waits until the lease object at `path` is ours, as
    /// [`LeaseLocks::lock`] does for a session's.
    pub async fn lock_object(&self, path: Path, deadline: Instant) -> Result<SessionLock> {
        let token = Uuid::new_v4();
        let mut pause = Duration::from_millis(2);
        let max_pause = (self.ttl / 8).clamp(Duration::from_millis(5), Duration::from_millis(100));
        loop {
            if let Some(version) = self.try_acquire(&path, token).await? {
                self.forget(&path);
                return Ok(SessionLock::lease(self.hold(path, token, version)));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StorageError::Busy(busy_label(&path)));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(max_pause);
        }
    }

    /// One round: create, or take a free or expired lease.
    async fn try_acquire(&self, path: &Path, token: Uuid) -> Result<Option<Version>> {
        let mine = |seq| LeaseBody {
            holder: Some(token),
            seq,
        };
        let created = self
            .store
            .put_opts(path, mine(0).payload(), PutOptions::from(PutMode::Create))
            .await;
        match created {
            Ok(put) => return Ok(Some(Version::of(put, 0))),
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let got = match self.store.get(path).await {
            Ok(got) => got,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let update = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await?;
        let body: Option<LeaseBody> = serde_json::from_slice(&bytes).ok();
        let seq = body.as_ref().map_or(0, |b| b.seq);
        let free = body.as_ref().is_some_and(|b| b.holder.is_none());
        let Some(e_tag) = update.e_tag.clone() else {
            return Err(StorageError::Corrupt {
                path: path.to_string(),
                reason: "the store gave the lease no ETag".into(),
            });
        };
        if !free && !self.expired(path, e_tag) {
            return Ok(None);
        }
        if !free {
            tracing::warn!(lock = %path, "taking over an expired lease");
        }
        let put = self
            .store
            .put_opts(
                path,
                mine(seq + 1).payload(),
                PutOptions::from(PutMode::Update(update)),
            )
            .await;
        match put {
            Ok(put) => Ok(Some(Version::of(put, seq + 1))),
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// True once this process has seen the lease at `e_tag` for `ttl`.
    fn expired(&self, path: &Path, e_tag: String) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(s) = seen.get(path)
            && s.e_tag == e_tag
        {
            return now.duration_since(s.since) >= self.ttl;
        }
        // Forget sessions nobody asked about for a while.
        let stale = self.ttl * 4;
        seen.retain(|_, s| now.duration_since(s.since) < stale);
        seen.insert(path.clone(), Seen { e_tag, since: now });
        false
    }

    fn forget(&self, path: &Path) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path);
    }

    fn hold(&self, path: Path, token: Uuid, version: Version) -> Lease {
        let shared = Arc::new(Shared {
            store: Arc::clone(&self.store),
            path,
            token,
            ttl: self.ttl,
            version: Mutex::new(version),
            fence: Fence::default(),
        });
        let stop = CancellationToken::new();
        let renewer = tokio::spawn(Arc::clone(&shared).renew(stop.clone()));
        Lease {
            shared,
            stop,
            renewer,
        }
    }
}

/// What a held lease shares with its renewal task.
#[derive(Debug)]
struct Shared {
    store: Arc<dyn ObjectStore>,
    path: Path,
    token: Uuid,
    ttl: Duration,
    version: Mutex<Version>,
    fence: Fence,
}

impl Shared {
    fn version(&self) -> Version {
        self.version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Conditionally replaces the lease with `holder`; the new version, or
    /// `None` if it is no longer ours.
    async fn rewrite(&self, holder: Option<Uuid>) -> Result<Option<Version>> {
        let current = self.version();
        let seq = current.seq + 1;
        let put = self
            .store
            .put_opts(
                &self.path,
                LeaseBody { holder, seq }.payload(),
                PutOptions::from(PutMode::Update(current.update)),
            )
            .await;
        match put {
            Ok(put) => Ok(Some(Version::of(put, seq))),
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Renews until stopped or lost (see the module docs).
    async fn renew(self: Arc<Self>, stop: CancellationToken) {
        let mut renewed = Instant::now();
        let mut frames = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.ttl / 4) => {}
            }
            let (seen, waiting) = self.fence.progress();
            let stalled = waiting && frames == Some(seen);
            frames = Some(seen);
            if !stalled {
                let sent = Instant::now();
                match self.rewrite(Some(self.token)).await {
                    Ok(Some(v)) => {
                        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = v;
                        renewed = sent;
                    }
                    Ok(None) => {
                        tracing::warn!(lock = %self.path, "lease taken over");
                        self.fence.lose();
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "renewing a lease failed"),
                }
            }
            if renewed.elapsed() >= self.ttl / 2 {
                tracing::warn!(lock = %self.path, "lease lapsed");
                self.fence.lose();
                return;
            }
        }
    }
}

/// A held lease. Release it with [`Lease::release`]; dropped without, it
/// simply lapses.
pub(crate) struct Lease {
    shared: Arc<Shared>,
    stop: CancellationToken,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    pub(crate) fn fence(&self) -> &Fence {
        &self.shared.fence
    }

    /// Stops renewing and frees the lease if it is still ours (deleting it
    /// if the session is `finished`).
    pub(crate) async fn release(mut self, finished: bool) {
        self.stop.cancel();
        let _ = (&mut self.renewer).await;
        if self.shared.fence.is_lost() {
            return;
        }
        self.shared.fence.lose();
        match self.shared.rewrite(None).await {
            Ok(Some(_)) if finished => {
                if let Err(e) = self.shared.store.delete(&self.shared.path).await
                    && !is_not_found(&e)
                {
                    tracing::warn!(error = %e, "deleting a finished upload lease failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "releasing a lease failed"),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

    fn store(server: &oci_test_s3::S3Server) -> Arc<dyn ObjectStore> {
        let mut builder = AmazonS3Builder::new().with_bucket_name(server.bucket());
        for (k, v) in server.options() {
            builder = builder.with_config(k.parse::<AmazonS3ConfigKey>().unwrap(), v);
        }
        Arc::new(builder.build().unwrap())
    }

    fn within(d: Duration) -> Instant {
        Instant::now() + d
    }

    async fn lease_body(store: &dyn ObjectStore, id: &Uuid) -> Option<LeaseBody> {
        let got = store.get(&layout::upload_lock(id)).await.ok()?;
        serde_json::from_slice(&got.bytes().await.ok()?).ok()
    }

    /// Plants a lease of a holder that died.
    async fn plant_dead(store: &dyn ObjectStore, id: &Uuid) {
        let body = LeaseBody {
            holder: Some(Uuid::new_v4()),
            seq: 7,
        };
        store
            .put(&layout::upload_lock(id), body.payload())
            .await
            .unwrap();
    }

    /// Two replicas race for one expired lease, round after round: never
    /// both hold it, and the winner keeps it while it renews.
    ///
    /// A 1 s lease: the winner renews every 250 ms and counts itself lost
    /// after 500 ms without a renewal, so a loaded machine's pause must
    /// pass half a second to tell (with 200 ms, a 100 ms pause did).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_takers_never_both_win() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let store = store(&server);
        let ttl = Duration::from_secs(1);
        let a = LeaseLocks::new(Arc::clone(&store), ttl);
        let b = LeaseLocks::new(Arc::clone(&store), ttl);
        for _ in 0..4 {
            let id = Uuid::new_v4();
            plant_dead(store.as_ref(), &id).await;
            let wait = ttl * 3;
            let (la, lb) = tokio::join!(a.lock(&id, within(wait)), b.lock(&id, within(wait)));
            let winner = match (la, lb) {
                (Ok(l), Err(StorageError::Busy(_))) | (Err(StorageError::Busy(_)), Ok(l)) => l,
                (la, lb) => panic!("expected exactly one winner: {la:?} / {lb:?}"),
            };
            assert!(!winner.is_lost());
            drop(winner);
        }
    }

    /// A holder that stopped renewing (paused) loses its lease to a taker:
    /// its fence is lost, and a write conditional on its last lease version
    /// fails. Its release then leaves the taker's lease alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn taken_over_holder_is_fenced_and_release_keeps_new_lease() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let store = store(&server);
        let ttl = Duration::from_millis(200);
        let locks = LeaseLocks::new(Arc::clone(&store), ttl);
        let id = Uuid::new_v4();
        let first = locks
            .lock(&id, within(ttl))
            .await
            .unwrap()
            .into_lease()
            .expect("a lease");
        // Pause the holder: its renewal task stops.
        first.stop.cancel();
        let stale = first.shared.version();
        let taker = locks.lock(&id, within(ttl * 10)).await.unwrap();
        let held_by = lease_body(store.as_ref(), &id).await.unwrap().holder;
        assert_ne!(held_by, Some(first.shared.token));
        // The paused holder wakes up: its conditional writes fail.
        assert!(
            first
                .shared
                .rewrite(Some(first.shared.token))
                .await
                .unwrap()
                .is_none()
        );
        let put = store
            .put_opts(
                &layout::upload_lock(&id),
                PutPayload::from("x"),
                PutOptions::from(PutMode::Update(stale.update)),
            )
            .await;
        assert!(matches!(put, Err(object_store::Error::Precondition { .. })));
        // Its release (even as "finished") neither frees nor deletes it.
        first.release(true).await;
        assert_eq!(
            lease_body(store.as_ref(), &id).await.unwrap().holder,
            held_by
        );
        assert!(!taker.is_lost());
        drop(taker);
    }

    /// A released lease is free and taken at once, without waiting out the
    /// TTL; a finished one is deleted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn release_frees_and_finish_deletes() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let store = store(&server);
        let locks = LeaseLocks::new(Arc::clone(&store), Duration::from_secs(30));
        let id = Uuid::new_v4();
        let first = locks
            .lock(&id, within(Duration::from_secs(1)))
            .await
            .unwrap();
        let lease = first.into_lease().expect("a lease");
        lease.release(false).await;
        assert_eq!(lease_body(store.as_ref(), &id).await.unwrap().holder, None);
        let second = tokio::time::timeout(
            Duration::from_secs(2),
            locks.lock(&id, within(Duration::from_secs(1))),
        )
        .await
        .expect("a free lease is taken at once")
        .unwrap();
        let lease = second.into_lease().expect("a lease");
        lease.release(true).await;
        assert!(lease_body(store.as_ref(), &id).await.is_none());
    }
}
