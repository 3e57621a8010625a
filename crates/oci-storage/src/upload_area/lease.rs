//! Session locks shared by every replica, as lease objects in the store.
//!
//! `_uploads/<uuid>/lock` is created with a conditional put
//! (`PutMode::Create`: S3 `If-None-Match: *`), so exactly one holder wins.
//! It records an expiry time; the holder renews it while it works, and a
//! lock whose holder died is taken over once it has expired. Releasing
//! deletes it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use uuid::Uuid;

use super::{SessionLock, delete_if_exists};
use crate::error::{Result, StorageError, is_not_found};
use crate::layout;

/// Lease-based session locks over a store with conditional create.
#[derive(Debug, Clone)]
pub struct LeaseLocks {
    store: Arc<dyn ObjectStore>,
    ttl: Duration,
    wait: Duration,
}

impl LeaseLocks {
    /// Locks in `store` that expire `ttl` after their last renewal; a waiter
    /// gives up after `wait`.
    pub fn new(store: Arc<dyn ObjectStore>, ttl: Duration, wait: Duration) -> Self {
        Self { store, ttl, wait }
    }

    fn now_ms() -> u128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    }

    fn lease_body(&self) -> PutPayload {
        PutPayload::from((Self::now_ms() + self.ttl.as_millis()).to_string())
    }

    /// Waits until the session's lease is ours.
    pub async fn lock(&self, id: &Uuid) -> Result<SessionLock> {
        let path = layout::upload_lock(id);
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let put = self
                .store
                .put_opts(&path, self.lease_body(), PutOptions::from(PutMode::Create))
                .await;
            match put {
                Ok(_) => break,
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            // Held by someone: take it over if its lease ran out.
            match self.store.get(&path).await {
                Ok(held) => {
                    let bytes = held.bytes().await?;
                    let expiry: u128 = std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0);
                    if expiry < Self::now_ms() {
                        tracing::warn!(upload = %id, "taking over an expired upload lock");
                        delete_if_exists(self.store.as_ref(), &path).await?;
                        continue;
                    }
                }
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e.into()),
            }
            if started.elapsed() > self.wait {
                return Err(StorageError::Busy(id.to_string()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
        let renewer = {
            let this = self.clone();
            let path = path.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(this.ttl / 3).await;
                    if let Err(e) = this.store.put(&path, this.lease_body()).await {
                        tracing::warn!(error = %e, "renewing an upload lock failed");
                    }
                }
            })
        };
        Ok(SessionLock::new(Lease {
            store: Arc::clone(&self.store),
            path,
            renewer,
        }))
    }
}

/// A held lease; dropping it stops renewal and deletes the lock object.
struct Lease {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        let store = Arc::clone(&self.store);
        let path = self.path.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = delete_if_exists(store.as_ref(), &path).await {
                    tracing::warn!(error = %e, "releasing an upload lock failed");
                }
            });
        }
    }
}
