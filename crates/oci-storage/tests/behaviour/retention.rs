//! Retention within garbage collection: exactly the expected tags and
//! manifests remain, by push time, names and immutability; index
//! children and referrers of kept manifests stay; dry runs change nothing.

use std::time::Duration;

use oci_storage::{GcOptions, ImmutableRule, RetentionRule, StorageError, StorageOptions};
use oci_types::{Digest, Pagination, RepositoryName};
use serde_json::json;

use crate::common::*;

fn now() -> GcOptions {
    GcOptions::with_grace(Duration::ZERO)
}

fn rule(value: serde_json::Value) -> RetentionRule {
    serde_json::from_value(value).expect("a retention rule")
}

/// Push times are recorded in milliseconds: keep pushes apart.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

async fn tags_of(f: &Fixture, name: &RepositoryName) -> Vec<String> {
    let (tags, _) = f
        .storage
        .tags_list(name, &Pagination::default())
        .await
        .unwrap();
    tag_names(&tags).iter().map(|t| t.to_string()).collect()
}

/// A referrer of `subject` (untagged), with a blob of its own.
async fn push_referrer(f: &Fixture, name: &RepositoryName, subject: &Image, seed: &str) -> Image {
    let s = &f.storage;
    let sig = push_blob(s, name, seed.as_bytes()).await;
    let empty = push_blob(s, name, b"{}").await;
    let mut m = image_manifest(
        descriptor("application/vnd.oci.empty.v1+json", &empty, 2),
        vec![descriptor("application/vnd.example.sig", &sig, seed.len())],
    );
    m["subject"] = descriptor(OCI_MANIFEST, &subject.digest, subject.body.len());
    put_manifest(s, name, "@digest", &m).await
}

async fn exists(f: &Fixture, name: &RepositoryName, d: &Digest) -> bool {
    match f.storage.manifest_head(name, &digest_ref(d)).await {
        Ok(_) => true,
        Err(StorageError::ManifestUnknown(_)) => false,
        Err(e) => panic!("{e}"),
    }
}

/// The store of the main test: `ci/app` pushed in this order (push time):
/// release-1 (immutable), v1, t1, t2, t3, t4, then `latest` onto t1's
/// manifest; a referrer of t2's manifest and one of t4's; and `keep/app`
/// (no rule) with an untagged manifest.
struct Store {
    m: Vec<Image>,
    ref2: Image,
    ref4: Image,
    other: Image,
}

async fn fill(f: &Fixture) -> Store {
    let s = &f.storage;
    let name = repo("ci/app");
    let mut m = Vec::new();
    for (i, tag) in ["release-1", "v1", "t1", "t2", "t3", "t4"]
        .iter()
        .enumerate()
    {
        m.push(push_image(s, &name, tag, &format!("image {i}")).await);
        tick().await;
    }
    s.manifest_put(
        &name,
        &tag_ref("latest"),
        m[2].body.clone(),
        Some(OCI_MANIFEST),
    )
    .await
    .unwrap();
    let ref2 = push_referrer(f, &name, &m[3], "signature of t2").await;
    let ref4 = push_referrer(f, &name, &m[5], "signature of t4").await;
    let other = push_image(s, &repo("keep/app"), "@digest", "untagged elsewhere").await;
    Store {
        m,
        ref2,
        ref4,
        other,
    }
}

fn policy() -> StorageOptions {
    let mut options = StorageOptions::default();
    options.retention = vec![rule(json!({
        "repositories": ["ci/**"],
        "keep_last": 2,
        "keep_tags": ["latest", "v*"],
        "delete_untagged": true,
    }))];
    options.immutable = vec![
        serde_json::from_value::<ImmutableRule>(json!({
            "repositories": ["ci/**"],
            "tags": ["release-*"],
        }))
        .unwrap(),
    ];
    options
}

pub async fn keeps_expected_tags_and_manifests(f: Fixture) {
    let f = f.with_options(policy()).await;
    let s = &f.storage;
    let store = fill(&f).await;
    let name = repo("ci/app");
    let report = s.collect_garbage(&now()).await.unwrap();
    // Last two pushed: latest, t4; by name: latest, v1; immutable:
    // release-1.
    assert_eq!(
        tags_of(&f, &name).await,
        ["latest", "release-1", "t4", "v1"]
    );
    let mut dropped: Vec<String> = report
        .tags_removed
        .iter()
        .map(|(r, t)| format!("{r}:{t}"))
        .collect();
    dropped.sort();
    assert_eq!(dropped, ["ci/app:t1", "ci/app:t2", "ci/app:t3"]);
    // t2's and t3's manifests go, with t2's referrer; t1's stays under
    // latest; t4's referrer stays with its subject.
    let gone = [&store.m[3], &store.m[4], &store.ref2];
    let mut want: Vec<&Digest> = gone.iter().map(|i| &i.digest).collect();
    want.sort();
    let mut got: Vec<&Digest> = report.manifests_removed.iter().map(|(_, d)| d).collect();
    got.sort();
    assert_eq!(got, want);
    for image in gone {
        assert!(!exists(&f, &name, &image.digest).await);
        assert!(!s.blob_stored(&image.digest).await.unwrap());
    }
    for image in [
        &store.m[0],
        &store.m[1],
        &store.m[2],
        &store.m[5],
        &store.ref4,
    ] {
        assert!(exists(&f, &name, &image.digest).await, "{}", image.digest);
    }
    // Their exclusive blobs went too; the kept ones' stay.
    for (seed, kept) in [("image 3", false), ("image 4", false), ("image 2", true)] {
        let layer = Digest::of(format!("layer of {seed}").as_bytes());
        assert_eq!(s.blob_stored(&layer).await.unwrap(), kept, "{seed}");
    }
    assert!(
        !s.blob_stored(&Digest::of(b"signature of t2"))
            .await
            .unwrap()
    );
    assert!(
        s.blob_stored(&Digest::of(b"signature of t4"))
            .await
            .unwrap()
    );
    let listed = s.referrers(&name, &store.m[5].digest, None).await.unwrap();
    assert_eq!(listed.len(), 1);
    // No rule: untagged manifests elsewhere stay.
    assert!(exists(&f, &repo("keep/app"), &store.other.digest).await);
    // A second run drops nothing more.
    let again = s.collect_garbage(&now()).await.unwrap();
    assert!(again.tags_removed.is_empty() && again.manifests_removed.is_empty());
}

pub async fn dry_run_lists_and_keeps(f: Fixture) {
    let f = f.with_options(policy()).await;
    let s = &f.storage;
    let store = fill(&f).await;
    let name = repo("ci/app");
    let before = tags_of(&f, &name).await;
    let mut options = now();
    options.dry_run = true;
    let report = s.collect_garbage(&options).await.unwrap();
    assert_eq!(report.tags_removed.len(), 3);
    assert_eq!(report.manifests_removed.len(), 3);
    assert_eq!(tags_of(&f, &name).await, before);
    for image in &store.m {
        assert!(exists(&f, &name, &image.digest).await);
    }
    // The real run removes what the dry run listed.
    let real = s.collect_garbage(&now()).await.unwrap();
    let mut a = report.manifests_removed.clone();
    let mut b = real.manifests_removed.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

/// `keep_within` counts from each tag's recorded push time.
///
/// Tags pushed more than `keep_within` before the collection go, however
/// late it runs; the one pushed just before it must stay if the
/// collection ends within `keep_within` of that manifest put's start (its
/// blobs are stored beforehand). A loaded machine that overruns that
/// window proves nothing: the round is tried again in a fresh repository,
/// a bounded number of times.
pub async fn keep_within_by_push_time(f: Fixture) {
    let within = Duration::from_millis(1500);
    let mut options = StorageOptions::default();
    options.retention = vec![rule(json!({
        "repositories": ["**"],
        "keep_within": "1500ms",
    }))];
    let f = f.with_options(options).await;
    let s = &f.storage;
    for round in 0..5 {
        let name = repo(&format!("team/app{round}"));
        let a = push_image(s, &name, "a", &format!("a{round}")).await;
        push_image(s, &name, "b", &format!("b{round}")).await;
        tokio::time::sleep(within + Duration::from_millis(100)).await;
        // Its blobs first: only the manifest put falls inside the window.
        let c = prepare_image(s, &name, &format!("c{round}")).await;
        let began = tokio::time::Instant::now();
        put_manifest(s, &name, "c", &c).await;
        s.collect_garbage(&now()).await.unwrap();
        if began.elapsed() >= within {
            eprintln!("round {round}: the push and collection overran {within:?}; again");
            continue;
        }
        assert_eq!(tags_of(&f, &name).await, ["c"]);
        // Without delete_untagged the untagged manifests stay, blobs and all.
        assert!(exists(&f, &name, &a.digest).await);
        let layer = format!("layer of a{round}");
        assert!(s.blob_stored(&Digest::of(layer.as_bytes())).await.unwrap());
        return;
    }
    panic!("every round overran the {within:?} window: the machine is too slow to tell");
}

/// An index kept by its tag keeps its untagged children.
pub async fn index_children_of_kept_stay(f: Fixture) {
    let mut options = StorageOptions::default();
    options.retention = vec![rule(json!({
        "repositories": ["**"],
        "keep_last": 1,
        "delete_untagged": true,
    }))];
    let f = f.with_options(options).await;
    let s = &f.storage;
    let name = repo("team/multi");
    let old = push_image(s, &name, "old", "old").await;
    tick().await;
    let c1 = push_image(s, &name, "@digest", "child 1").await;
    let c2 = push_image(s, &name, "@digest", "child 2").await;
    let index = index_manifest(vec![
        descriptor(OCI_MANIFEST, &c1.digest, c1.body.len()),
        descriptor(OCI_MANIFEST, &c2.digest, c2.body.len()),
    ]);
    let index = put_manifest(s, &name, "multi", &index).await;
    s.collect_garbage(&now()).await.unwrap();
    assert_eq!(tags_of(&f, &name).await, ["multi"]);
    for d in [&index.digest, &c1.digest, &c2.digest] {
        assert!(exists(&f, &name, d).await);
    }
    assert!(!exists(&f, &name, &old.digest).await);
    assert!(!s.blob_stored(&Digest::of(b"layer of old")).await.unwrap());
    assert!(
        s.blob_stored(&Digest::of(b"layer of child 2"))
            .await
            .unwrap()
    );
}

/// Collections with retention loop while a client pushes images under
/// recycled tags and signs them: whatever retention drops, no tag is left
/// naming a broken image, and fsck finds nothing wrong.
pub async fn racing_pushes_leave_no_broken_image(f: Fixture) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut options = StorageOptions::default();
    options.retention = vec![rule(json!({
        "repositories": ["**"],
        "keep_last": 3,
        "delete_untagged": true,
    }))];
    let f = f.with_options(options).await;
    let s = f.storage.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (s, stop) = (s.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                match s.collect_garbage(&now()).await {
                    Ok(_) => runs += 1,
                    Err(StorageError::Busy(_)) => {}
                    Err(e) => panic!("collection failed: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            runs
        })
    };
    let name = repo("ci/race");
    let rounds = if matches!(f.backend, "s3" | "azure") {
        30
    } else {
        80
    };
    for round in 0..rounds {
        let tag = format!("t{}", round % 7);
        let manifest = prepare_image(&s, &name, &format!("round {round}")).await;
        let body = to_body(&manifest);
        let pushed = s
            .manifest_put(&name, &tag_ref(&tag), body, Some(OCI_MANIFEST))
            .await;
        let Ok(meta) = pushed else {
            assert_err!(pushed, StorageError::ManifestBlobUnknown(_));
            continue;
        };
        let subject = Image {
            body: to_body(&manifest),
            digest: meta.digest,
        };
        let sig = format!("signature {round}");
        let sig_digest = push_blob(&s, &name, sig.as_bytes()).await;
        let empty = push_blob(&s, &name, b"{}").await;
        let mut m = image_manifest(
            descriptor("application/vnd.oci.empty.v1+json", &empty, 2),
            vec![descriptor(
                "application/vnd.example.sig",
                &sig_digest,
                sig.len(),
            )],
        );
        m["subject"] = descriptor(OCI_MANIFEST, &subject.digest, subject.body.len());
        let body = to_body(&m);
        let digest = Digest::of(&body);
        let r = s
            .manifest_put(&name, &digest_ref(&digest), body, Some(OCI_MANIFEST))
            .await;
        if !matches!(r, Ok(_) | Err(StorageError::ManifestBlobUnknown(_))) {
            panic!("{r:?}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let runs = collector.await.unwrap();
    assert!(runs >= 3, "only {runs} collections");
    // Without a grace period, a collection running between an image's
    // blob pushes and its manifest refuses the push; on a loaded machine
    // every racing push may be refused. One more push, with no collection
    // running, must succeed and be kept: the newest tag.
    let last = prepare_image(&s, &name, "after the race").await;
    s.manifest_put(&name, &tag_ref("last"), to_body(&last), Some(OCI_MANIFEST))
        .await
        .unwrap();
    s.collect_garbage(&now()).await.unwrap();
    let report = s.fsck(&oci_storage::FsckOptions::default()).await.unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    let tags = tags_of(&f, &name).await;
    assert!(
        tags.iter().any(|t| t == "last") && tags.len() <= 3,
        "{tags:?}"
    );
    for tag in tags {
        let got = s.manifest_get(&name, &tag_ref(&tag)).await.unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        for d in std::iter::once(&parsed["config"]).chain(parsed["layers"].as_array().unwrap()) {
            let d: Digest = d["digest"].as_str().unwrap().parse().unwrap();
            assert!(s.blob_stored(&d).await.unwrap(), "{tag}: {d}");
        }
    }
}
