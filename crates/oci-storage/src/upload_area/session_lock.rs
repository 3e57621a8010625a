//! Exclusive use of one upload session, and the fence that stops a holder
//! whose shared lease was lost.
//!
//! A [`SessionLock`] is two locks taken in order: the session's in-process
//! async mutex ([`ProcessLocks`], shared by every request of this engine),
//! then whatever the upload area uses across processes (`flock`, a lease
//! object, or nothing). Waiting for either is bounded by one deadline and
//! is cancel-safe: a request dropped while it waits (its client went away)
//! leaves the queue and holds nothing. Waiting never occupies a thread.
//!
//! The in-process mutex is released only after the cross-process part was
//! released, so requests of one process hand the session over in order and
//! never race their own release.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::BodyStream;
use super::lease::Lease;
use crate::error::{Result, StorageError};

/// Exclusive use of one upload session; released when dropped.
pub struct SessionLock {
    /// The session's in-process mutex; released last.
    local: Option<LocalGuard>,
    held: Option<Held>,
    /// The session's state is gone: the lease object can go too.
    finished: bool,
}

/// The cross-process part of a [`SessionLock`].
enum Held {
    /// A guard released on drop (e.g. an `flock`ed file), or nothing.
    Guard(#[allow(dead_code)] Box<dyn Send + Sync>),
    /// A lease object in a shared store.
    Lease(Lease),
}

impl SessionLock {
    /// A lock whose cross-process part is released when `guard` drops
    /// (`()` when the process is the only user of the store).
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self {
            local: None,
            held: Some(Held::Guard(Box::new(guard))),
            finished: false,
        }
    }

    pub(crate) fn lease(lease: Lease) -> Self {
        Self {
            local: None,
            held: Some(Held::Lease(lease)),
            finished: false,
        }
    }

    /// Adds the in-process mutex, released after everything else.
    pub(crate) fn with_local(mut self, local: LocalGuard) -> Self {
        self.local = Some(local);
        self
    }

    /// Marks the session as gone (its state was deleted or never existed).
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }

    /// Releases the lock now, and waits until a lease it rests on is free
    /// (dropping it releases in the background instead).
    pub(crate) async fn release(mut self) {
        if let Some(Held::Lease(lease)) = self.held.take() {
            lease.release(self.finished).await;
        }
    }

    /// Takes the lease out, to drive it by hand in tests.
    #[cfg(test)]
    pub(crate) fn into_lease(mut self) -> Option<Lease> {
        match self.held.take() {
            Some(Held::Lease(l)) => Some(l),
            _ => None,
        }
    }

    fn fence(&self) -> Option<&Fence> {
        match &self.held {
            Some(Held::Lease(l)) => Some(l.fence()),
            _ => None,
        }
    }

    /// True once a lease this lock rests on may have passed to another
    /// holder: nothing may be written for the session any more.
    pub fn is_lost(&self) -> bool {
        self.fence().is_some_and(Fence::is_lost)
    }

    /// `Err(Busy)` if the lock was lost (see [`SessionLock::is_lost`]).
    pub fn check(&self, id: &Uuid) -> Result<()> {
        if self.is_lost() {
            return Err(StorageError::Busy(id.to_string()));
        }
        Ok(())
    }

    /// Wraps a request body so that it fails as soon as the lock is lost,
    /// and so that the lease sees whether the client is still sending.
    pub fn fence_body(&self, body: BodyStream) -> BodyStream {
        match self.fence() {
            Some(fence) => FencedBody {
                inner: body,
                fence: fence.clone(),
            }
            .boxed(),
            None => body,
        }
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        let local = self.local.take();
        match self.held.take() {
            Some(Held::Lease(lease)) => {
                let finished = self.finished;
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => {
                        handle.spawn(async move {
                            lease.release(finished).await;
                            drop(local);
                        });
                    }
                    Err(_) => drop((lease, local)),
                }
            }
            held => drop((held, local)),
        }
    }
}

impl std::fmt::Debug for SessionLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLock")
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

/// What a lease shares with the request that holds it: whether the lease
/// is lost, and whether the client is still sending.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fence {
    lost: CancellationToken,
    activity: Arc<Activity>,
}

#[derive(Debug, Default)]
struct Activity {
    /// Body frames received so far.
    frames: AtomicU64,
    /// The request is waiting for its client to send more.
    waiting: AtomicBool,
}

impl Fence {
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    pub(crate) fn lose(&self) {
        self.lost.cancel();
    }

    /// Frames received so far, and whether the request now waits on its
    /// client.
    pub(crate) fn progress(&self) -> (u64, bool) {
        (
            self.activity.frames.load(Ordering::Relaxed),
            self.activity.waiting.load(Ordering::Relaxed),
        )
    }
}

/// A body that fails once its fence is lost.
struct FencedBody {
    inner: BodyStream,
    fence: Fence,
}

impl Stream for FencedBody {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.fence.is_lost() {
            return Poll::Ready(Some(Err(std::io::Error::other(
                "the upload session's lease was lost",
            ))));
        }
        let polled = self.inner.poll_next_unpin(cx);
        let activity = &self.fence.activity;
        match polled {
            Poll::Pending => activity.waiting.store(true, Ordering::Relaxed),
            Poll::Ready(_) => {
                activity.waiting.store(false, Ordering::Relaxed);
                activity.frames.fetch_add(1, Ordering::Relaxed);
            }
        }
        polled
    }
}

/// One async mutex per upload session in use, shared by every request of
/// an engine; an entry lives while someone holds or waits for it.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProcessLocks {
    slots: Arc<Mutex<HashMap<Uuid, Slot>>>,
}

#[derive(Debug)]
struct Slot {
    mutex: Arc<tokio::sync::Mutex<()>>,
    /// Holders and waiters.
    users: usize,
}

/// A held in-process session mutex.
pub(crate) struct LocalGuard {
    // Fields drop in order: the mutex is unlocked before the entry may go.
    _guard: OwnedMutexGuard<()>,
    _user: User,
}

/// Counts as a user of a slot until dropped.
struct User {
    id: Uuid,
    slots: Arc<Mutex<HashMap<Uuid, Slot>>>,
}

impl Drop for User {
    fn drop(&mut self) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(&self.id) {
            slot.users -= 1;
            if slot.users == 0 {
                slots.remove(&self.id);
            }
        }
    }
}

impl ProcessLocks {
    /// Waits for the session's mutex until `deadline`, then gives up with
    /// [`StorageError::Busy`]. Cancel-safe.
    pub(crate) async fn lock(&self, id: &Uuid, deadline: Instant) -> Result<LocalGuard> {
        let (user, mutex) = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.entry(*id).or_insert_with(|| Slot {
                mutex: Arc::default(),
                users: 0,
            });
            slot.users += 1;
            let user = User {
                id: *id,
                slots: Arc::clone(&self.slots),
            };
            (user, Arc::clone(&slot.mutex))
        };
        match tokio::time::timeout_at(deadline, mutex.lock_owned()).await {
            Ok(guard) => Ok(LocalGuard {
                _guard: guard,
                _user: user,
            }),
            Err(_) => Err(StorageError::Busy(id.to_string())),
        }
    }

    /// Sessions with a holder or a waiter.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    /// Waiters that give up (timeout) or are dropped (client gone) hold
    /// nothing and leave no entry; the next request gets the lock at once.
    #[tokio::test]
    async fn dropped_waiters_hold_nothing() {
        let locks = ProcessLocks::default();
        let id = Uuid::new_v4();
        let held = locks.lock(&id, soon(1000)).await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..200 {
            let locks = locks.clone();
            waiters.push(tokio::spawn(async move {
                locks.lock(&id, soon(60_000)).await.map(|_| ())
            }));
        }
        let timed_out = locks.lock(&id, soon(20)).await;
        assert!(matches!(timed_out, Err(StorageError::Busy(_))));
        tokio::task::yield_now().await;
        for w in &waiters {
            assert!(!w.is_finished(), "a waiter got a held lock");
            w.abort();
        }
        for w in waiters {
            assert!(w.await.unwrap_err().is_cancelled());
        }
        drop(held);
        assert_eq!(locks.in_use(), 0);
        let again = tokio::time::timeout(Duration::from_millis(100), locks.lock(&id, soon(50)))
            .await
            .expect("lock granted at once");
        assert!(again.is_ok());
        drop(again);
        assert_eq!(locks.in_use(), 0);
    }

    /// Sessions do not block each other.
    #[tokio::test]
    async fn sessions_are_independent() {
        let locks = ProcessLocks::default();
        let _a = locks.lock(&Uuid::new_v4(), soon(100)).await.unwrap();
        let b = locks.lock(&Uuid::new_v4(), soon(100)).await;
        assert!(b.is_ok());
    }
}
