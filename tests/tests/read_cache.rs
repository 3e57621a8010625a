//! The in-memory read cache (`[cache]`) over real HTTP, with two replicas
//! on one store: what one replica changes, the other serves at once
//! (filesystem: validated by `stat`; S3: by a conditional GET), unless the
//! operator set `tag_cache_ttl`, which bounds how late it may be seen.

use std::time::{Duration, Instant};

use oci_e2e::{Backend, TestServer};
use reqwest::StatusCode;

/// Past the filesystem's settling time (files are cached once 2 s old).
const SETTLE: Duration = Duration::from_millis(2100);

/// A second replica on `a`'s store, configured by `config`.
async fn replica_of(a: &TestServer, config: &str) -> TestServer {
    let options = oci_storage::StorageOptions::with_backend(a.storage_options());
    TestServer::start_at_with_config(a.storage_url(), options, config).await
}

/// The digest replica `srv` serves for `reference`.
async fn served(srv: &TestServer, reference: &str) -> String {
    let resp = srv.get(&format!("/v2/shared/manifests/{reference}")).await;
    assert_eq!(resp.status(), StatusCode::OK, "{reference}");
    let digest = oci_e2e::header(&resp, "docker-content-digest").unwrap();
    let body = resp.bytes().await.unwrap();
    assert_eq!(
        oci_e2e::sha256_digest(&body),
        digest,
        "bytes of {reference}"
    );
    digest
}

/// The error code of a 404 answer to `path` from `srv`.
async fn unknown(srv: &TestServer, path: &str) -> String {
    let resp = srv.get(path).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    let body: serde_json::Value = resp.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap().to_owned()
}

/// Replica `b` has the tag, the manifest and a blob cached; replica `a`
/// moves the tag, deletes the old manifest and a blob: `b`'s next answers
/// are the store's.
async fn replicas_see_each_others_changes_at_once(backend: Backend) {
    let a = TestServer::start_with_config(backend, "").await;
    let b = replica_of(&a, "").await;
    let first = a.push_image("shared", "t", 1).await;
    tokio::time::sleep(SETTLE).await;
    let layer = format!("/v2/shared/blobs/{}", first.layer_descs[0].digest);
    for _ in 0..3 {
        assert_eq!(served(&b, "t").await, first.digest);
        let resp = b.get(&layer).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap(), first.layers[0].as_slice());
    }
    let second = a.push_image("shared", "t", 2).await;
    assert_eq!(served(&b, "t").await, second.digest);
    let resp = a
        .delete(&format!("/v2/shared/manifests/{}", first.digest))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let path = format!("/v2/shared/manifests/{}", first.digest);
    assert_eq!(unknown(&b, &path).await, "MANIFEST_UNKNOWN");
    assert_eq!(a.delete(&layer).await.status(), StatusCode::ACCEPTED);
    assert_eq!(unknown(&b, &layer).await, "BLOB_UNKNOWN");
    let resp = b.head(&layer).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// With `tag_cache_ttl` on S3, a replica serves a tag another replica
/// moved for at most that long, and its own changes at once.
///
/// The TTL runs from the GET that fetched the tag, so the stale GET must
/// end within the TTL of that GET's start, with the other replica's push
/// in between. A loaded machine that overruns the window proves nothing,
/// and the round is tried again (a replica's own push makes it fetch the
/// tag afresh), a bounded number of times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_cache_ttl_bounds_how_late_a_moved_tag_is_seen() {
    let ttl = Duration::from_secs(5);
    let config = "[cache]\ntag_cache_ttl = \"5s\"\n";
    let a = TestServer::start_with_config(Backend::S3, config).await;
    let b = replica_of(&a, config).await;
    let first = a.push_image("shared", "t", 1).await;
    assert_eq!(served(&b, "t").await, first.digest);
    for round in 0..5 {
        let own = b.push_image("shared", "t", 2 + 2 * round).await;
        let fetch_began = Instant::now();
        assert_eq!(served(&b, "t").await, own.digest, "its own push");
        let moved = a.push_image("shared", "t", 3 + 2 * round).await;
        let got = served(&b, "t").await;
        if fetch_began.elapsed() >= ttl {
            eprintln!("round {round}: the window passed before the stale GET; again");
            continue;
        }
        assert_eq!(got, own.digest, "within the TTL");
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        assert_eq!(served(&b, "t").await, moved.digest, "past the TTL");
        return;
    }
    panic!("every round overran the {ttl:?} window: the machine is too slow to tell");
}

mod replicas_see_each_others_changes_at_once {
    oci_e2e::backend_test!(
        replicas_see_each_others_changes_at_once,
        filesystem,
        Filesystem
    );
    oci_e2e::backend_test!(replicas_see_each_others_changes_at_once, s3, S3);
    oci_e2e::backend_test!(replicas_see_each_others_changes_at_once, azure, Azure);
}
