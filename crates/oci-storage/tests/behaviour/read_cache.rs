//! The in-memory read cache (`[cache]`): what it serves from memory must be
//! what the store holds, whichever replica changed it, unless the operator
//! opted into a staleness bound (`tag_cache_ttl`).

use std::time::Duration;

use oci_storage::{CacheOptions, StorageError, StorageOptions};

use crate::common::*;

/// Past the read cache's settling time on the filesystem (a file is only
/// cached once it is 2 s old), so the reads after it are cache hits.
const SETTLE: Duration = Duration::from_millis(2100);

/// Options with a read cache of `ttl`.
fn with_ttl(ttl: Duration) -> StorageOptions {
    let mut options = StorageOptions::default();
    let mut cache = CacheOptions::default();
    cache.tag_ttl = ttl;
    options.cache = cache;
    options
}

/// A tag moved, a manifest deleted and a blob unlinked through another
/// replica are seen by this one at the next read, although it had them
/// cached (default: no TTL).
pub async fn other_replicas_changes_are_seen_at_once(f: Fixture) {
    let s = &f.storage;
    let name = repo("cached/app");
    let first = push_image(s, &name, "latest", "one").await;
    let blob = push_blob(s, &name, b"a small blob").await;
    tokio::time::sleep(SETTLE).await;
    for _ in 0..3 {
        let got = s.manifest_get(&name, &tag_ref("latest")).await.unwrap();
        assert_eq!((&got.meta.digest, &got.body), (&first.digest, &first.body));
        assert_blob(s, &name, b"a small blob").await;
    }
    // Another replica where there is one; this one otherwise (memory).
    let other = f.other_replica().await.unwrap_or_else(|| s.clone());
    let second = push_image(&other, &name, "latest", "two").await;
    let got = s.manifest_get(&name, &tag_ref("latest")).await.unwrap();
    assert_eq!(
        (&got.meta.digest, &got.body),
        (&second.digest, &second.body)
    );
    other
        .manifest_delete(&name, &digest_ref(&first.digest))
        .await
        .unwrap();
    assert_err!(
        s.manifest_get(&name, &digest_ref(&first.digest)).await,
        StorageError::ManifestUnknown(_)
    );
    other.blob_delete(&name, &blob).await.unwrap();
    assert_err!(
        s.blob_get(&name, &blob, None).await,
        StorageError::BlobUnknown(_)
    );
    assert_err!(
        s.blob_stat(&name, &blob).await,
        StorageError::BlobUnknown(_)
    );
}

/// With `tag_cache_ttl`, object stores may serve another replica's moved
/// tag that long, never longer; this replica's own changes are seen at
/// once. The filesystem ignores the TTL (validation is a `stat`).
///
/// A cached tag's TTL runs from the read that fetched it. The stale read
/// must therefore end within the TTL of that read's start, after the other
/// replica moved the tag in between. Its blobs are stored beforehand, so
/// only the manifest put falls inside the window; if a loaded machine
/// still overruns it, nothing can be concluded and the round is tried
/// again with a fresh fetch, a bounded number of times.
pub async fn tag_cache_ttl_bounds_staleness(f: Fixture) {
    let ttl = Duration::from_secs(4);
    let f = f.with_options(with_ttl(ttl)).await;
    let s = &f.storage;
    let name = repo("cached/ttl");
    let first = push_image(s, &name, "t", "one").await;
    if f.root().is_some() {
        tokio::time::sleep(SETTLE).await;
    }
    let got = s.manifest_get(&name, &tag_ref("t")).await.unwrap();
    assert_eq!(got.meta.digest, first.digest);
    let Some(other) = f.other_replica().await else {
        // One replica (memory): its own move is seen at once.
        let second = push_image(s, &name, "t", "two").await;
        let got = s.manifest_get(&name, &tag_ref("t")).await.unwrap();
        assert_eq!(got.meta.digest, second.digest);
        return;
    };
    if f.root().is_some() {
        let second = push_image(&other, &name, "t", "two").await;
        let got = s.manifest_get(&name, &tag_ref("t")).await.unwrap();
        assert_eq!(got.meta.digest, second.digest, "filesystem: never stale");
        return;
    }
    for round in 0..5 {
        let theirs = prepare_image(&other, &name, &format!("theirs {round}")).await;
        // This replica's own move: seen at once, and fetched afresh.
        let own = push_image(s, &name, "t", &format!("own {round}")).await;
        let fetch_began = tokio::time::Instant::now();
        let got = s.manifest_get(&name, &tag_ref("t")).await.unwrap();
        let fetch_ended = tokio::time::Instant::now();
        assert_eq!(got.meta.digest, own.digest, "own move seen at once");
        let moved = put_manifest(&other, &name, "t", &theirs).await;
        let got = s.manifest_get(&name, &tag_ref("t")).await.unwrap();
        if fetch_began.elapsed() >= ttl {
            eprintln!("round {round}: the window passed before the stale read; again");
            continue;
        }
        assert_eq!(
            got.meta.digest, own.digest,
            "within the TTL: the cached tag"
        );
        tokio::time::sleep_until(fetch_ended + ttl).await;
        let got = s.manifest_get(&name, &tag_ref("t")).await.unwrap();
        assert_eq!(got.meta.digest, moved.digest, "past the TTL: the store's");
        return;
    }
    panic!("every round overran the {ttl:?} window: the machine is too slow to tell");
}

/// Small blobs come from memory whole and by ranges, byte-exact; blobs
/// larger than `max_blob` stream as before; an engine with the cache off
/// reads the same.
pub async fn small_blobs_whole_and_ranged(f: Fixture) {
    let cache_of = |size: u64| {
        let mut options = StorageOptions::default();
        let mut cache = CacheOptions::default();
        cache.size = size;
        cache.max_blob = 4096;
        options.cache = cache;
        options
    };
    let f = f.with_options(cache_of(1 << 20)).await;
    let name = repo("cached/blobs");
    let small = bytes_of(7, 3000);
    let large = bytes_of(8, 10_000);
    let small_digest = push_blob(&f.storage, &name, &small).await;
    let large_digest = push_blob(&f.storage, &name, &large).await;
    let mut engines = vec![f.storage.clone()];
    engines.extend(f.other_replica_with(cache_of(0)).await);
    for s in &engines {
        for _ in 0..2 {
            assert_blob(s, &name, &small).await;
            assert_blob(s, &name, &large).await;
            let meta = s.blob_stat(&name, &small_digest).await.unwrap();
            assert_eq!(meta.size, 3000);
            for (digest, data) in [(&small_digest, &small), (&large_digest, &large)] {
                let got = read_blob(s, &name, digest, brange("bytes=100-199"))
                    .await
                    .unwrap();
                assert_eq!(got, data[100..200]);
                let got = read_blob(s, &name, digest, brange("bytes=-10"))
                    .await
                    .unwrap();
                assert_eq!(got, data[data.len() - 10..]);
            }
            assert_err!(
                s.blob_get(&name, &small_digest, brange("bytes=5000-"))
                    .await,
                StorageError::RangeNotSatisfiable { size: 3000 }
            );
            // Cached content is still only served through a repository
            // that links it.
            assert_err!(
                s.blob_get(&repo("cached/other"), &small_digest, None).await,
                StorageError::BlobUnknown(_)
            );
        }
    }
}

/// A blob `HEAD` (`blob_stat`) answers from the cached size of a blob too
/// large to keep, but only after the repository's link was validated:
/// once another replica unlinks the blob, or unlinks it and collects its
/// bytes, the next `HEAD` is 404, and it stays 404 for that repository
/// when the same bytes are pushed again into another one.
pub async fn cached_blob_size_needs_the_link(f: Fixture) {
    let mut options = StorageOptions::default();
    let mut cache = CacheOptions::default();
    cache.max_blob = 4096;
    options.cache = cache;
    let f = f.with_options(options).await;
    let s = &f.storage;
    let (name, other_name) = (repo("cached/size"), repo("cached/elsewhere"));
    let data = bytes_of(31, 10_000);
    let digest = push_blob(s, &name, &data).await;
    tokio::time::sleep(SETTLE).await;
    for _ in 0..3 {
        assert_eq!(s.blob_stat(&name, &digest).await.unwrap().size, 10_000);
    }
    assert_err!(
        s.blob_stat(&other_name, &digest).await,
        StorageError::BlobUnknown(_)
    );
    // Unlinked through another replica (this one where there is none).
    let other = f.other_replica().await.unwrap_or_else(|| s.clone());
    other.blob_delete(&name, &digest).await.unwrap();
    assert_err!(
        s.blob_stat(&name, &digest).await,
        StorageError::BlobUnknown(_)
    );
    // Linked again, read, then unlinked and collected over there.
    push_blob(&other, &name, &data).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(s.blob_stat(&name, &digest).await.unwrap().size, 10_000);
    other.blob_delete(&name, &digest).await.unwrap();
    let report = other
        .collect_garbage(&oci_storage::GcOptions::with_grace(Duration::ZERO))
        .await
        .unwrap();
    assert!(!s.blob_stored(&digest).await.unwrap(), "{report:?}");
    assert_err!(
        s.blob_stat(&name, &digest).await,
        StorageError::BlobUnknown(_)
    );
    // The same bytes pushed into another repository: still not this one's.
    push_blob(&other, &other_name, &data).await;
    assert_err!(
        s.blob_stat(&name, &digest).await,
        StorageError::BlobUnknown(_)
    );
    assert_eq!(
        s.blob_stat(&other_name, &digest).await.unwrap().size,
        10_000
    );
}
