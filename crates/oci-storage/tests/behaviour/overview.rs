//! What the web UI reads: tags by push time, recorded usage.

use std::time::Duration;

use oci_storage::StorageError;

use crate::common::*;

/// Tags come newest first from two listings; a deleted tag, a tag moved
/// to another manifest and a tag deleted with its manifest are seen as
/// they are now.
pub async fn tag_times_newest_first(f: Fixture) {
    let s = &f.storage;
    let name = repo("team/app");
    let old = push_image(s, &name, "old", "a").await;
    s.manifest_put(&name, &tag_ref("gone"), old.body.clone(), None)
        .await
        .unwrap();
    // Store dates have one-second precision on some backends.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    push_image(s, &name, "new", "b").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // `old` moves to a newer manifest: it is now the newest.
    push_image(s, &name, "old", "c").await;
    s.manifest_delete(&name, &tag_ref("gone")).await.unwrap();
    let times = s.tag_times(&name).await.unwrap();
    let tags: Vec<&str> = times.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(tags, ["old", "new"]);
    assert!(times[0].pushed_at > times[1].pushed_at);
    let unknown = s.tag_times(&repo("nope")).await.unwrap_err();
    assert!(
        matches!(unknown, StorageError::NameUnknown(_)),
        "{unknown:?}"
    );
}

/// `record_usage` records per repository tags, manifests, bytes and last
/// push; `recorded_usage` reads it back; none before the first record.
pub async fn usage_recorded_and_read_back(f: Fixture) {
    let s = &f.storage;
    assert_eq!(s.recorded_usage().await.unwrap(), None);
    let a = repo("a");
    let b = repo("b/c");
    push_image(s, &a, "v1", "one").await;
    push_image(s, &a, "v2", "two").await;
    push_image(s, &b, "latest", "three").await;
    let usage = s.usage(None).await.unwrap();
    let record = s.record_usage(&usage).await.unwrap();
    assert_eq!(s.recorded_usage().await.unwrap().as_ref(), Some(&record));
    let row = record.repository(&a).unwrap();
    assert_eq!((row.tags, row.manifests), (2, 2));
    assert!(row.last_push_ms.is_some());
    assert!(row.referenced_bytes > 0 && row.exclusive_bytes == row.referenced_bytes);
    assert_eq!(record.repository(&b).unwrap().tags, 1);
    assert!(record.repository(&repo("zzz")).is_none());
    assert_eq!(record.stored_blobs, 9);
}
