//! The `gs://` backend on fake-gcs-server (`oci-test-gcs`), which serves
//! the XML API's reads but none of its writes (`oci_test_gcs::LACKS`):
//! the suite's tests all write, so they do not run here
//! (`oci_test_gcs::WRITES_UNSUPPORTED`). Instead a store written on the
//! filesystem is copied into a bucket through the emulator's JSON API,
//! and the engine reading it over `gs://` must answer exactly what the
//! filesystem engine answers: object reads, ranges, listings with a
//! delimiter, pagination.

use oci_storage::{Storage, StorageError};
use oci_types::{Digest, Pagination};

use crate::common::*;

/// Every page of `name`'s tags, `n` at a time.
async fn tag_pages(s: &Storage, name: &oci_types::RepositoryName, n: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut last = None;
    loop {
        let page = Pagination { n: Some(n), last };
        let (tags, more) = s.tags_list(name, &page).await.unwrap();
        let names: Vec<String> = tag_names(&tags).iter().map(|t| t.to_string()).collect();
        last = names.last().cloned();
        pages.push(names);
        if !more {
            return pages;
        }
    }
}

/// Every page of the catalog, `n` at a time.
async fn catalog_pages(s: &Storage, n: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut last = None;
    loop {
        let page = Pagination { n: Some(n), last };
        let (names, more) = s.catalog(&page).await.unwrap();
        let names: Vec<String> = repo_names(&names).iter().map(|t| t.to_string()).collect();
        last = names.last().cloned();
        pages.push(names);
        if !more {
            return pages;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_store_copied_from_the_filesystem() {
    if !oci_test_gcs::available() {
        return oci_test_gcs::skip_note();
    }
    let fs = Fixture::filesystem().await;
    let w = &fs.storage;
    let app = repo("org/app");
    let images = [
        push_image(w, &app, "v1", "one").await,
        push_image(w, &app, "v2", "two").await,
        push_image(w, &app, "latest", "three").await,
    ];
    for n in ["a", "b/c", "b", "z"] {
        push_image(w, &repo(n), "t", n).await;
    }
    let big = bytes_of(7, 300_000);
    let big_digest = push_blob(w, &app, &big).await;
    let mut referrer = prepare_image(w, &app, "sbom").await;
    referrer["subject"] = descriptor(OCI_MANIFEST, &images[0].digest, images[0].body.len());
    referrer["artifactType"] = serde_json::json!("application/spdx+json");
    put_manifest(w, &app, "@digest", &referrer).await;

    let gcs = oci_test_gcs::FakeGcs::start().await.unwrap();
    let copied = gcs
        .seed_from_dir(fs.root().unwrap(), "registry")
        .await
        .unwrap();
    assert!(copied > 20, "{copied} objects");
    let r = Storage::open_with(&gcs.url("registry"), &gcs.options())
        .await
        .unwrap();
    r.probe().await.unwrap();

    // Blobs: stat, whole, ranges, and the repository links.
    assert_eq!(
        r.blob_stat(&app, &big_digest).await.unwrap(),
        w.blob_stat(&app, &big_digest).await.unwrap()
    );
    assert_blob(&r, &app, &big).await;
    for range in [
        "bytes=0-0",
        "bytes=1000-99999",
        "bytes=299990-",
        "bytes=-17",
    ] {
        let got = read_blob(&r, &app, &big_digest, brange(range))
            .await
            .unwrap();
        let want = read_blob(w, &app, &big_digest, brange(range))
            .await
            .unwrap();
        assert!(got == want, "{range}");
    }
    assert_err!(
        read_blob(&r, &repo("a"), &big_digest, None).await,
        StorageError::BlobUnknown(_)
    );
    assert!(r.blob_stored(&big_digest).await.unwrap());
    assert!(!r.blob_stored(&Digest::of(b"never")).await.unwrap());

    // Manifests by tag and by digest, with their media types.
    for (image, tag) in images.iter().zip(["v1", "v2", "latest"]) {
        let by_tag = r.manifest_get(&app, &tag_ref(tag)).await.unwrap();
        assert_eq!(by_tag.body, image.body);
        assert_eq!(
            by_tag.meta,
            w.manifest_get(&app, &tag_ref(tag)).await.unwrap().meta
        );
        let by_digest = r
            .manifest_get(&app, &digest_ref(&image.digest))
            .await
            .unwrap();
        assert_eq!(by_digest.body, image.body);
    }
    assert_err!(
        r.manifest_get(&app, &tag_ref("v3")).await,
        StorageError::ManifestUnknown(_)
    );

    // Listings: tags and the catalog, whole and page by page; referrers.
    for n in [1, 2, 100] {
        assert_eq!(tag_pages(&r, &app, n).await, tag_pages(w, &app, n).await);
        assert_eq!(catalog_pages(&r, n).await, catalog_pages(w, n).await);
    }
    assert_eq!(
        catalog_pages(&r, 100).await,
        [["a", "b", "b/c", "org/app", "z"]]
    );
    let referrers = r.referrers(&app, &images[0].digest, None).await.unwrap();
    assert_eq!(referrers.len(), 1);
    assert_eq!(
        referrers,
        w.referrers(&app, &images[0].digest, None).await.unwrap()
    );
    assert!(r.repository_exists(&repo("b/c")).await.unwrap());
    assert!(!r.repository_exists(&repo("c")).await.unwrap());
}

/// What the emulator lacks reaches the registry as errors of the store,
/// not panics or silent successes: a push fails and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_with_the_emulators_refusal() {
    if !oci_test_gcs::available() {
        return oci_test_gcs::skip_note();
    }
    let gcs = oci_test_gcs::FakeGcs::start().await.unwrap();
    let s = Storage::open_with(&gcs.url("registry"), &gcs.options())
        .await
        .unwrap();
    let name = repo("r");
    let pushed = s.blob_put(&name, &Digest::of(b"data"), body(b"data")).await;
    match pushed {
        Err(StorageError::Backend(e)) if e.to_string().contains("400") => {}
        other => panic!(
            "a blob push on fake-gcs-server should fail with its 400 ({}), got {other:?}",
            oci_test_gcs::WRITES_UNSUPPORTED
        ),
    }
    let started = s
        .upload_start(&name, oci_types::DigestAlgorithm::Sha256)
        .await;
    assert!(started.is_err(), "{started:?}");
    assert!(!s.repository_exists(&name).await.unwrap());
    let (catalog, _) = s.catalog(&Pagination::default()).await.unwrap();
    assert!(catalog.is_empty(), "{catalog:?}");
}
