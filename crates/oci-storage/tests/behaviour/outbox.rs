//! Outboxes (`_events/`): ordered, durable queues consumed under a lock.

use std::time::Duration;

use bytes::Bytes;
use oci_storage::{QueueName, StorageError};

use crate::common::*;

fn queue(name: &str) -> QueueName {
    name.parse().unwrap()
}

/// Records come back in the order they were appended, survive a restart,
/// and are gone once removed; queues are separate.
pub async fn appended_records_come_back_in_order(mut f: Fixture) {
    let a = f.storage.outbox(&queue("a"));
    let mut keys = Vec::new();
    for i in 0..25 {
        keys.push(a.append(Bytes::from(format!("event {i}"))).await.unwrap());
    }
    f.storage
        .outbox(&queue("b"))
        .append(Bytes::from_static(b"other"))
        .await
        .unwrap();
    f.restart().await;
    let a = f.storage.outbox(&queue("a"));
    let page = a.pending(10).await.unwrap();
    assert_eq!(page.len(), 10, "{}", f.backend);
    let bodies: Vec<_> = page.iter().map(|r| r.body.clone()).collect();
    let want: Vec<_> = (0..10).map(|i| Bytes::from(format!("event {i}"))).collect();
    assert_eq!(bodies, want, "{}", f.backend);
    assert_eq!(page[0].key, keys[0]);
    for r in &page {
        a.remove(&r.key).await.unwrap();
    }
    // Removing twice is fine.
    a.remove(&page[0].key).await.unwrap();
    let rest = a.pending(100).await.unwrap();
    assert_eq!(rest.len(), 15);
    assert_eq!(rest[0].body, Bytes::from("event 10"));
    let b = f.storage.outbox(&queue("b")).pending(100).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].body, Bytes::from_static(b"other"));
}

/// Failures are counted per head record, across restarts; a dead letter
/// leaves the queue and is listed with what the caller wrote.
pub async fn failures_counted_and_dead_lettered(mut f: Fixture) {
    let q = f.storage.outbox(&queue("hook"));
    let first = q.append(Bytes::from_static(b"1")).await.unwrap();
    let second = q.append(Bytes::from_static(b"2")).await.unwrap();
    assert_eq!(q.record_failure(&first).await.unwrap(), 1);
    assert_eq!(q.record_failure(&first).await.unwrap(), 2);
    f.restart().await;
    let q = f.storage.outbox(&queue("hook"));
    assert_eq!(q.record_failure(&first).await.unwrap(), 3);
    q.dead_letter(&first, Bytes::from_static(b"{\"why\":\"500\"}"))
        .await
        .unwrap();
    let pending = q.pending(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].key, second);
    // Another head starts counting anew.
    assert_eq!(q.record_failure(&second).await.unwrap(), 1);
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, first);
    assert_eq!(dead[0].body, Bytes::from_static(b"{\"why\":\"500\"}"));
    // Keys that are not the outbox's own are refused.
    assert_err!(q.remove("../../blobs").await, StorageError::Corrupt { .. });
}

/// One holder of a queue's lock at a time, per queue; a released lock is
/// taken by the next.
pub async fn one_consumer_at_a_time(f: Fixture) {
    let q = f.storage.outbox(&queue("ci"));
    let held = q.lock(Duration::ZERO).await.unwrap();
    assert!(!held.is_lost());
    assert_err!(q.lock(Duration::ZERO).await, StorageError::Busy(_));
    assert_err!(
        q.lock(Duration::from_millis(50)).await,
        StorageError::Busy(_)
    );
    // Nor by another replica (another engine on the same store).
    if let Some(other) = f.other_replica().await {
        assert_err!(
            other
                .outbox(&queue("ci"))
                .lock(Duration::from_millis(50))
                .await,
            StorageError::Busy(_)
        );
    }
    // Another queue is not held.
    let other = f
        .storage
        .outbox(&queue("cd"))
        .lock(Duration::ZERO)
        .await
        .unwrap();
    held.release().await;
    let again = match f.other_replica().await {
        Some(other) => {
            other
                .outbox(&queue("ci"))
                .lock(Duration::from_secs(2))
                .await
        }
        None => q.lock(Duration::from_secs(2)).await,
    }
    .unwrap();
    assert!(!again.is_lost());
    again.release().await;
    other.release().await;
}
