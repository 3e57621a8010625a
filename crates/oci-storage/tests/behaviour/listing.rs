//! Listings: tags, referrers, the catalog.

use oci_storage::StorageError;
use oci_types::{Digest, Pagination, RepositoryName};

use crate::common::*;

fn page(n: Option<usize>, last: Option<&str>) -> Pagination {
    Pagination {
        n,
        last: last.map(str::to_owned),
    }
}

/// A page of tags, as strings.
async fn tags_page(
    s: &oci_storage::Storage,
    name: &oci_types::RepositoryName,
    p: Pagination,
) -> (Vec<String>, bool) {
    let (tags, more) = s.tags_list(name, &p).await.unwrap();
    (
        tag_names(&tags).into_iter().map(str::to_owned).collect(),
        more,
    )
}

/// A page of the catalog, as strings.
async fn catalog_page(
    s: &oci_storage::Storage,
    n: Option<usize>,
    last: Option<&str>,
) -> (Vec<String>, bool) {
    let (names, more) = s.catalog(&page(n, last)).await.unwrap();
    (
        repo_names(&names).into_iter().map(str::to_owned).collect(),
        more,
    )
}

// --- tags ------------------------------------------------------------------

pub async fn tags_sorted(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let image = push_image(s, &name, "seed", "x").await;
    for t in ["v2", "latest", "A", "v10", "_x", "1.0", "Latest", "v1"] {
        s.manifest_put(&name, &tag_ref(t), image.body.clone(), None)
            .await
            .unwrap();
    }
    let (tags, more) = s.tags_list(&name, &Pagination::default()).await.unwrap();
    assert!(!more);
    assert_eq!(
        tag_names(&tags),
        vec![
            "1.0", "A", "Latest", "_x", "latest", "seed", "v1", "v10", "v2"
        ]
    );
    // Tags of a nested repository are not those of its parent.
    let nested = repo("r/sub");
    push_image(s, &nested, "only-nested", "n").await;
    let (tags, _) = s.tags_list(&nested, &Pagination::default()).await.unwrap();
    assert_eq!(tag_names(&tags), vec!["only-nested"]);
    let (tags, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
    assert!(!tag_names(&tags).contains(&"only-nested"));
}

pub async fn tags_paginated(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let image = push_image(s, &name, "a", "x").await;
    for t in ["e", "c", "b", "d"] {
        s.manifest_put(&name, &tag_ref(t), image.body.clone(), None)
            .await
            .unwrap();
    }
    let list = |p: Pagination| tags_page(s, &name, p);
    assert_eq!(
        list(page(Some(2), None)).await,
        (vec!["a".into(), "b".into()], true)
    );
    assert_eq!(
        list(page(Some(2), Some("b"))).await,
        (vec!["c".into(), "d".into()], true)
    );
    assert_eq!(
        list(page(Some(2), Some("d"))).await,
        (vec!["e".into()], false)
    );
    assert_eq!(
        list(page(Some(5), None)).await,
        (
            vec!["a".into(), "b".into(), "c".into(), "d".into(), "e".into()],
            false
        )
    );
    assert!(list(page(Some(4), None)).await.1);
    // `last` need not be an existing tag.
    assert_eq!(
        list(page(None, Some("bb"))).await,
        (vec!["c".into(), "d".into(), "e".into()], false)
    );
    assert_eq!(list(page(Some(3), Some("e"))).await, (vec![], false));
    assert_eq!(list(page(Some(0), None)).await, (vec![], false));
}

pub async fn tags_of_unknown_repository(f: Fixture) {
    let s = &f.storage;
    push_image(s, &repo("known"), "t", "x").await;
    let unknown = repo("unknown");
    assert_err!(
        s.tags_list(&unknown, &Pagination::default()).await,
        StorageError::NameUnknown(n) if n == unknown
    );
    // A repository holding only blobs exists, with no tags.
    let blobs_only = repo("blobs-only");
    push_blob(s, &blobs_only, b"b").await;
    let (tags, more) = s
        .tags_list(&blobs_only, &Pagination::default())
        .await
        .unwrap();
    assert!(tags.is_empty() && !more, "{tags:?}");
}

// --- referrers -------------------------------------------------------------

const SBOM: &str = "application/vnd.example.sbom";
const SIG_CONFIG: &str = "application/vnd.example.signature.config.v1+json";

/// Pushes an artifact manifest whose subject is `subject`; `artifact_type`
/// sets `artifactType`, else the config media type is `SIG_CONFIG`.
async fn push_referrer(
    f: &Fixture,
    name: &oci_types::RepositoryName,
    subject: &Digest,
    artifact_type: Option<&str>,
    seed: &str,
) -> Image {
    let s = &f.storage;
    let config = format!("{{\"ref\":\"{seed}\"}}");
    let config_digest = push_blob(s, name, config.as_bytes()).await;
    let config_type = if artifact_type.is_some() {
        "application/vnd.oci.empty.v1+json"
    } else {
        SIG_CONFIG
    };
    let mut manifest = image_manifest(
        descriptor(config_type, &config_digest, config.len()),
        vec![],
    );
    manifest["subject"] = descriptor(OCI_MANIFEST, subject, 123);
    manifest["annotations"] = serde_json::json!({ "seed": seed });
    if let Some(t) = artifact_type {
        manifest["artifactType"] = serde_json::json!(t);
    }
    put_manifest(s, name, "@digest", &manifest).await
}

pub async fn referrers_listed(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let subject = push_image(s, &name, "v1", "subject").await;
    let sbom = push_referrer(&f, &name, &subject.digest, Some(SBOM), "sbom").await;
    let sig = push_referrer(&f, &name, &subject.digest, None, "sig").await;
    let list = s.referrers(&name, &subject.digest, None).await.unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let mut want = vec![sbom.digest.clone(), sig.digest.clone()];
    want.sort();
    assert_eq!(
        list.iter().map(|d| d.digest.clone()).collect::<Vec<_>>(),
        want,
        "sorted by digest"
    );
    for d in &list {
        let (image, artifact_type, seed) = if d.digest == sbom.digest {
            (&sbom, SBOM, "sbom")
        } else {
            (&sig, SIG_CONFIG, "sig")
        };
        assert_eq!(d.media_type, OCI_MANIFEST);
        assert_eq!(d.size, image.body.len() as u64);
        assert_eq!(d.artifact_type.as_deref(), Some(artifact_type));
        assert_eq!(
            d.annotations
                .as_ref()
                .and_then(|a| a.get("seed"))
                .map(String::as_str),
            Some(seed)
        );
    }
    // The referrers are not visible through another repository.
    push_blob(s, &repo("other"), b"x").await;
    assert!(
        s.referrers(&repo("other"), &subject.digest, None)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn referrers_filtered_by_artifact_type(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let subject = push_image(s, &name, "v1", "subject").await;
    let sbom = push_referrer(&f, &name, &subject.digest, Some(SBOM), "sbom").await;
    let sbom2 = push_referrer(&f, &name, &subject.digest, Some(SBOM), "sbom2").await;
    let sig = push_referrer(&f, &name, &subject.digest, None, "sig").await;
    let digests = |l: Vec<oci_types::Descriptor>| {
        let mut v: Vec<Digest> = l.into_iter().map(|d| d.digest).collect();
        v.sort();
        v
    };
    let mut want = vec![sbom.digest, sbom2.digest];
    want.sort();
    let got = s
        .referrers(&name, &subject.digest, Some(SBOM))
        .await
        .unwrap();
    assert_eq!(digests(got), want);
    let got = s
        .referrers(&name, &subject.digest, Some(SIG_CONFIG))
        .await
        .unwrap();
    assert_eq!(digests(got), vec![sig.digest]);
    assert!(
        s.referrers(&name, &subject.digest, Some("application/none"))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn referrers_of_unknown_subject(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let subject = push_image(s, &name, "v1", "subject").await;
    push_referrer(&f, &name, &subject.digest, Some(SBOM), "sbom").await;
    let unknown = Digest::of(b"nothing refers to this");
    assert!(s.referrers(&name, &unknown, None).await.unwrap().is_empty());
    assert!(
        s.referrers(&name, &unknown, Some(SBOM))
            .await
            .unwrap()
            .is_empty()
    );
    // The referrer itself is a subject nobody refers to.
    let of_subject = s.referrers(&name, &subject.digest, None).await.unwrap();
    assert_eq!(of_subject.len(), 1);
    assert!(
        s.referrers(&name, &of_subject[0].digest, None)
            .await
            .unwrap()
            .is_empty()
    );
    // Nor in a repository that does not exist.
    assert!(
        s.referrers(&repo("nowhere"), &subject.digest, None)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn referrers_of_absent_subject_are_indexed(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let absent = Digest::of(b"a subject pushed later, or never");
    let sig = push_referrer(&f, &name, &absent, Some(SBOM), "early").await;
    let list = s.referrers(&name, &absent, None).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].digest, sig.digest);
    assert_eq!(list[0].artifact_type.as_deref(), Some(SBOM));
    assert_err!(
        s.manifest_get(&name, &digest_ref(&absent)).await,
        StorageError::ManifestUnknown(_)
    );
}

// --- catalog ---------------------------------------------------------------

pub async fn catalog_lists_repositories_with_content(f: Fixture) {
    let s = &f.storage;
    let (list, more) = s.catalog(&Pagination::default()).await.unwrap();
    assert!(list.is_empty() && !more, "{list:?}");
    // A started upload is not content yet.
    s.upload_start(&repo("pending"), oci_types::DigestAlgorithm::Sha256)
        .await
        .unwrap();
    assert!(!s.repository_exists(&repo("pending")).await.unwrap());
    // Content of every kind: a blob, a manifest, a mount, a finished upload.
    push_blob(s, &repo("a"), b"blob").await;
    push_image(s, &repo("a/b"), "t", "nested").await;
    let d = Digest::of(b"blob");
    s.blob_mount(&repo("a-b"), &d, Some(&repo("a")))
        .await
        .unwrap();
    let id = s
        .upload_start(&repo("z/y/x"), oci_types::DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    s.upload_complete(&repo("z/y/x"), &id, &d, None, Some(body(b"blob")))
        .await
        .unwrap();
    push_blob(s, &repo("a.b"), b"blob").await;
    let (list, more) = s.catalog(&Pagination::default()).await.unwrap();
    assert!(!more);
    assert_eq!(repo_names(&list), vec!["a", "a-b", "a.b", "a/b", "z/y/x"]);
    for n in ["a", "a-b", "a.b", "a/b", "z/y/x"] {
        assert!(s.repository_exists(&repo(n)).await.unwrap(), "{n}");
    }
    for n in ["b", "z", "z/y", "pending"] {
        assert!(!s.repository_exists(&repo(n)).await.unwrap(), "{n}");
    }
}

pub async fn catalog_paginated(f: Fixture) {
    let s = &f.storage;
    for n in ["d", "b", "a/b", "c", "a"] {
        push_blob(s, &repo(n), n.as_bytes()).await;
    }
    let list = |n, last| catalog_page(s, n, last);
    assert_eq!(
        list(Some(2), None).await,
        (vec!["a".into(), "a/b".into()], true)
    );
    assert_eq!(
        list(Some(2), Some("a/b")).await,
        (vec!["b".into(), "c".into()], true)
    );
    assert_eq!(list(Some(2), Some("c")).await, (vec!["d".into()], false));
    assert_eq!(list(None, Some("a")).await.0.len(), 4);
    assert_eq!(list(Some(10), Some("d")).await, (vec![], false));
    assert_eq!(list(None, None).await.0.len(), 5);
}

/// Names that extend each other with `-`, `.`, `/` and digits sort
/// differently as names and as storage keys: every page must still follow
/// name order, whatever its size.
pub async fn catalog_pages_follow_name_order(f: Fixture) {
    let s = &f.storage;
    let mut all = vec![
        "a", "a-b", "a--c", "a.b", "a/b", "a/0", "a/b/c", "a/b-c", "a0", "a_b", "b", "b/a", "ab",
    ];
    for n in &all {
        push_blob(s, &repo(n), n.as_bytes()).await;
    }
    all.sort_unstable();
    for size in 1..=4 {
        let mut got: Vec<String> = Vec::new();
        let mut last = None;
        loop {
            let (page, more) = catalog_page(s, Some(size), last.as_deref()).await;
            assert!(page.len() <= size);
            got.extend(page.iter().cloned());
            if !more {
                break;
            }
            last = page.last().cloned();
            assert!(got.len() <= all.len(), "pages do not end: {got:?}");
        }
        assert_eq!(got, all, "pages of {size}");
    }
    // A `last` that is no repository name still pages correctly.
    let (page, _) = catalog_page(s, Some(3), Some("a/b/")).await;
    assert_eq!(page, vec!["a/b/c", "a0", "a_b"]);
}

/// Tags the store points at `digest`, `count` of them named `t<5 digits>`,
/// created with `tag_put` (no manifest upload per tag), 32 at a time.
async fn tag_many(s: &oci_storage::Storage, name: &RepositoryName, digest: &Digest, count: usize) {
    use futures::StreamExt;
    futures::stream::iter(0..count)
        .map(|i| async move { s.tag_put(name, &tag(&format!("t{i:05}")), digest).await })
        .buffer_unordered(32)
        .for_each(|r| async move { r.expect("tag_put") })
        .await;
}

/// distribution-spec "Listing Tags": without `n` the registry may return
/// fewer tags than it has, with a `Link` to the rest; pages chained with
/// `last` give every tag once, in order, whatever the page size.
pub async fn tags_many_paginate_by_default(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let image = push_image(s, &name, "z-latest", "x").await;
    let count = oci_storage::DEFAULT_TAGS_PAGE * 2 + 500;
    tag_many(s, &name, &image.digest, count).await;
    let mut want: Vec<String> = (0..count).map(|i| format!("t{i:05}")).collect();
    want.push("z-latest".into());
    for n in [None, Some(700), Some(count + 1)] {
        let mut got = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let (tags, more) = tags_page(s, &name, page(n, last.as_deref())).await;
            assert!(tags.len() <= n.unwrap_or(oci_storage::DEFAULT_TAGS_PAGE));
            got.extend(tags.iter().cloned());
            if !more {
                break;
            }
            assert!(!tags.is_empty(), "more advertised after an empty page");
            last = tags.last().cloned();
        }
        assert_eq!(got.len(), want.len(), "n={n:?}");
        assert!(got == want, "n={n:?}: pages differ from the sorted tags");
    }
    // Tags deleted with their manifest drop out of every page.
    s.manifest_delete(&name, &digest_ref(&image.digest))
        .await
        .unwrap();
    assert_eq!(tags_page(s, &name, page(None, None)).await, (vec![], false));
    assert_eq!(
        tags_page(s, &name, page(Some(5), Some("t00100"))).await,
        (vec![], false)
    );
}

/// distribution-spec "Listing Referrers": the registry may paginate; pages
/// chained with `last` give every referrer once, in digest order, with
/// and without the `artifactType` filter.
pub async fn referrers_paginated(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let subject = push_image(s, &name, "v1", "subject").await;
    let mut sboms = Vec::new();
    for i in 0..7 {
        let kind = if i % 2 == 0 { Some(SBOM) } else { None };
        let image = push_referrer(&f, &name, &subject.digest, kind, &format!("r{i}")).await;
        if kind.is_some() {
            sboms.push(image.digest.clone());
        }
    }
    let all = s.referrers(&name, &subject.digest, None).await.unwrap();
    assert_eq!(all.len(), 7);
    sboms.sort();
    for (filter, want) in [
        (
            None,
            all.iter().map(|d| d.digest.clone()).collect::<Vec<_>>(),
        ),
        (Some(SBOM), sboms),
    ] {
        for n in 1..=3 {
            let mut got = Vec::new();
            let mut last: Option<String> = None;
            loop {
                let (list, more) = s
                    .referrers_page(
                        &name,
                        &subject.digest,
                        filter,
                        &page(Some(n), last.as_deref()),
                    )
                    .await
                    .unwrap();
                assert!(list.len() <= n);
                got.extend(list.iter().map(|d| d.digest.clone()));
                if !more {
                    break;
                }
                last = list.last().map(|d| d.digest.to_string());
            }
            assert_eq!(got, want, "filter {filter:?}, pages of {n}");
        }
    }
    let (list, more) = s
        .referrers_page(&name, &subject.digest, None, &page(Some(0), None))
        .await
        .unwrap();
    assert!(list.is_empty() && !more);
}
