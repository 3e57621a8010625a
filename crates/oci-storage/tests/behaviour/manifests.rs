//! Manifests: put by tag and digest, exact reads, reference checks, deletes.

use bytes::Bytes;
use oci_storage::StorageError;
use oci_types::{Digest, DigestAlgorithm, Pagination};
use serde_json::json;

use crate::common::*;

pub async fn put_by_tag_then_get_and_head(f: Fixture) {
    let s = &f.storage;
    let name = repo("library/app");
    let manifest = prepare_image(s, &name, "app").await;
    // Unusual formatting and key order: the bytes must come back untouched.
    let text = serde_json::to_string_pretty(&manifest).unwrap() + "\n\n";
    let body = Bytes::from(text);
    let digest = Digest::of(&body);
    let meta = s
        .manifest_put(&name, &tag_ref("v1"), body.clone(), Some(OCI_MANIFEST))
        .await
        .unwrap();
    assert_eq!(meta.digest, digest);
    assert_eq!(meta.media_type, OCI_MANIFEST);
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(meta.subject, None);
    for reference in [tag_ref("v1"), digest_ref(&digest)] {
        let head = s.manifest_head(&name, &reference).await.unwrap();
        assert_eq!(head, meta, "{reference}");
        let got = s.manifest_get(&name, &reference).await.unwrap();
        assert_eq!(got.meta, meta, "{reference}");
        assert_eq!(got.body, body, "{reference}");
    }
    let (tags, more) = s.tags_list(&name, &Pagination::default()).await.unwrap();
    assert_eq!((tag_names(&tags), more), (vec!["v1"], false));
}

pub async fn put_by_digest(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let manifest = prepare_image(s, &name, "by-digest").await;
    let body = to_body(&manifest);
    let digest = Digest::of(&body);
    let meta = s
        .manifest_put(&name, &digest_ref(&digest), body.clone(), None)
        .await
        .unwrap();
    assert_eq!(
        (meta.digest.clone(), meta.size),
        (digest.clone(), body.len() as u64)
    );
    assert_eq!(meta.media_type, OCI_MANIFEST);
    let got = s.manifest_get(&name, &digest_ref(&digest)).await.unwrap();
    assert_eq!(got.body, body);
    // No tag was created.
    let (tags, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
    assert!(tags.is_empty(), "{tags:?}");
    // sha512 references are honoured too.
    let manifest = prepare_image(s, &name, "sha512").await;
    let body = to_body(&manifest);
    let d512 = Digest::of_with(DigestAlgorithm::Sha512, &body);
    let meta = s
        .manifest_put(&name, &digest_ref(&d512), body.clone(), Some(OCI_MANIFEST))
        .await
        .unwrap();
    assert_eq!(meta.digest, d512);
    let got = s.manifest_get(&name, &digest_ref(&d512)).await.unwrap();
    assert_eq!((got.meta.digest, got.body), (d512, body));
}

pub async fn media_type_as_pushed(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let config = push_blob(s, &name, b"{}").await;
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": docker,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": config.to_string(),
            "size": 2
        },
        "layers": []
    });
    let image = put_manifest(s, &name, "docker", &manifest).await;
    let head = s.manifest_head(&name, &tag_ref("docker")).await.unwrap();
    assert_eq!(head.media_type, docker);
    assert_eq!(head.digest, image.digest);
    // Without a mediaType field, the Content-Type decides.
    let mut untyped = prepare_image(s, &name, "untyped").await;
    untyped.as_object_mut().unwrap().remove("mediaType");
    let body = to_body(&untyped);
    let meta = s
        .manifest_put(&name, &tag_ref("untyped"), body, Some(OCI_MANIFEST))
        .await
        .unwrap();
    assert_eq!(meta.media_type, OCI_MANIFEST);
}

pub async fn digest_reference_mismatch(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let manifest = prepare_image(s, &name, "m").await;
    let body = to_body(&manifest);
    let actual = Digest::of(&body);
    let claimed = Digest::of(b"not the manifest");
    assert_err!(
        s.manifest_put(&name, &digest_ref(&claimed), body.clone(), None)
            .await,
        StorageError::DigestMismatch { expected, actual: a }
            if expected == claimed && a == actual
    );
    for d in [&claimed, &actual] {
        assert_err!(
            s.manifest_get(&name, &digest_ref(d)).await,
            StorageError::ManifestUnknown(_)
        );
    }
    // sha512 reference, wrong value.
    let wrong512 = Digest::of_with(DigestAlgorithm::Sha512, b"nope");
    assert_err!(
        s.manifest_put(&name, &digest_ref(&wrong512), body, None)
            .await,
        StorageError::DigestMismatch { .. }
    );
}

pub async fn missing_blob_is_refused_and_nothing_written(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let elsewhere = repo("elsewhere");
    let config = push_blob(s, &name, b"{\"config\":1}").await;
    let layer = push_blob(s, &name, b"layer").await;
    // Held by another repository only: still unknown here.
    let foreign = push_blob(s, &elsewhere, b"foreign layer").await;
    let missing = Digest::of(b"never pushed");
    let cases = [
        (
            missing.clone(),
            image_manifest(
                descriptor(OCI_CONFIG, &missing, 12),
                vec![descriptor(OCI_LAYER, &layer, 5)],
            ),
        ),
        (
            missing.clone(),
            image_manifest(
                descriptor(OCI_CONFIG, &config, 12),
                vec![
                    descriptor(OCI_LAYER, &layer, 5),
                    descriptor(OCI_LAYER, &missing, 12),
                ],
            ),
        ),
        (
            foreign.clone(),
            image_manifest(
                descriptor(OCI_CONFIG, &config, 12),
                vec![descriptor(OCI_LAYER, &foreign, 13)],
            ),
        ),
    ];
    for (i, (lacking, manifest)) in cases.iter().enumerate() {
        let body = to_body(manifest);
        let digest = Digest::of(&body);
        let t = format!("t{i}");
        assert_err!(
            s.manifest_put(&name, &tag_ref(&t), body.clone(), Some(OCI_MANIFEST))
                .await,
            StorageError::ManifestBlobUnknown(d) if &d == lacking
        );
        assert_err!(
            s.manifest_put(&name, &digest_ref(&digest), body, Some(OCI_MANIFEST))
                .await,
            StorageError::ManifestBlobUnknown(d) if &d == lacking
        );
        assert_err!(
            s.manifest_get(&name, &tag_ref(&t)).await,
            StorageError::ManifestUnknown(_)
        );
        assert_err!(
            s.manifest_head(&name, &digest_ref(&digest)).await,
            StorageError::ManifestUnknown(_)
        );
        assert_err!(
            s.manifest_get(&name, &digest_ref(&digest)).await,
            StorageError::ManifestUnknown(_)
        );
    }
    let (tags, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
    assert!(tags.is_empty(), "{tags:?}");
    if let Some(root) = f.root() {
        // Not even the manifest bytes were stored.
        for (_, manifest) in &cases {
            let hex = Digest::of(&to_body(manifest)).hex().to_owned();
            let data = root.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]));
            assert!(!data.exists(), "{} was written", data.display());
        }
    }
}

pub async fn index_with_missing_child_is_refused(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let child_manifest = prepare_image(s, &name, "child").await;
    let child_body = to_body(&child_manifest);
    let child = Digest::of(&child_body);
    let index = index_manifest(vec![descriptor(OCI_MANIFEST, &child, child_body.len())]);
    assert_err!(
        s.manifest_put(&name, &tag_ref("multi"), to_body(&index), Some(OCI_INDEX))
            .await,
        StorageError::ManifestBlobUnknown(d) if d == child
    );
    assert_err!(
        s.manifest_get(&name, &tag_ref("multi")).await,
        StorageError::ManifestUnknown(_)
    );
    // A child pushed to another repository does not count.
    let other = repo("other");
    prepare_image(s, &other, "child").await;
    put_manifest(s, &other, "@digest", &child_manifest).await;
    assert_err!(
        s.manifest_put(&name, &tag_ref("multi"), to_body(&index), Some(OCI_INDEX))
            .await,
        StorageError::ManifestBlobUnknown(d) if d == child
    );
    // Once the child is here, the index is accepted.
    put_manifest(s, &name, "@digest", &child_manifest).await;
    let image = put_manifest(s, &name, "multi", &index).await;
    let got = s.manifest_get(&name, &tag_ref("multi")).await.unwrap();
    assert_eq!(got.meta.media_type, OCI_INDEX);
    assert_eq!((got.meta.digest, got.body), (image.digest, image.body));
}

pub async fn invalid_manifest_is_refused(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let valid = prepare_image(s, &name, "x").await;
    let cases: Vec<(Bytes, Option<&str>)> = vec![
        (Bytes::from_static(b"not json"), None),
        (
            Bytes::from_static(b"{\"schemaVersion\":2,"),
            Some(OCI_MANIFEST),
        ),
        (Bytes::from_static(b"[]"), None),
        (Bytes::new(), Some(OCI_MANIFEST)),
        // mediaType contradicts Content-Type.
        (to_body(&valid), Some(OCI_INDEX)),
        // Wrong schemaVersion.
        (
            to_body(&{
                let mut m = valid.clone();
                m["schemaVersion"] = json!(3);
                m
            }),
            None,
        ),
    ];
    for (body, ct) in cases {
        let digest = Digest::of(&body);
        assert_err!(
            s.manifest_put(&name, &tag_ref("bad"), body.clone(), ct)
                .await,
            StorageError::ManifestInvalid(_)
        );
        assert_err!(
            s.manifest_get(&name, &digest_ref(&digest)).await,
            StorageError::ManifestUnknown(_)
        );
    }
    assert_err!(
        s.manifest_get(&name, &tag_ref("bad")).await,
        StorageError::ManifestUnknown(_)
    );
}

pub async fn unknown_repository(f: Fixture) {
    let s = &f.storage;
    // Another repository exists, so the store is not simply empty.
    push_image(s, &repo("known"), "latest", "k").await;
    let name = repo("unknown");
    assert_err!(
        s.manifest_get(&name, &tag_ref("latest")).await,
        StorageError::NameUnknown(n) if n == name
    );
    assert_err!(
        s.manifest_head(&name, &tag_ref("latest")).await,
        StorageError::NameUnknown(_)
    );
    assert_err!(
        s.manifest_delete(&name, &tag_ref("latest")).await,
        StorageError::NameUnknown(_)
    );
    assert_err!(
        s.manifest_delete(&name, &digest_ref(&Digest::of(b"m")))
            .await,
        StorageError::NameUnknown(_)
    );
    // A known repository without that manifest: ManifestUnknown instead.
    let known = repo("known");
    assert_err!(
        s.manifest_get(&known, &tag_ref("nope")).await,
        StorageError::ManifestUnknown(_)
    );
    assert_err!(
        s.manifest_get(&known, &digest_ref(&Digest::of(b"m"))).await,
        StorageError::ManifestUnknown(_)
    );
    assert_err!(
        s.manifest_delete(&known, &tag_ref("nope")).await,
        StorageError::ManifestUnknown(_)
    );
}

/// Reading by digest from a repository that does not exist reports the
/// repository, as reading by tag and deleting by digest do.
pub async fn unknown_repository_by_digest(f: Fixture) {
    let s = &f.storage;
    // The manifest exists, in another repository.
    let image = push_image(s, &repo("known"), "latest", "k").await;
    let name = repo("unknown");
    assert_err!(
        s.manifest_head(&name, &digest_ref(&image.digest)).await,
        StorageError::NameUnknown(_)
    );
    assert_err!(
        s.manifest_get(&name, &digest_ref(&image.digest)).await,
        StorageError::NameUnknown(_)
    );
}

pub async fn delete_tag_leaves_manifest(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let image = push_image(s, &name, "v1", "a").await;
    s.manifest_delete(&name, &tag_ref("v1")).await.unwrap();
    assert_err!(
        s.manifest_get(&name, &tag_ref("v1")).await,
        StorageError::ManifestUnknown(_)
    );
    assert_err!(
        s.manifest_delete(&name, &tag_ref("v1")).await,
        StorageError::ManifestUnknown(_)
    );
    let got = s
        .manifest_get(&name, &digest_ref(&image.digest))
        .await
        .unwrap();
    assert_eq!(got.body, image.body);
    let (tags, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
    assert!(tags.is_empty(), "{tags:?}");
}

pub async fn delete_by_digest_removes_tags_and_referrer(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let subject = push_image(s, &name, "subject", "s").await;
    let mut manifest = prepare_image(s, &name, "sig").await;
    manifest["subject"] = descriptor(OCI_MANIFEST, &subject.digest, subject.body.len());
    let referrer = put_manifest(s, &name, "sig1", &manifest).await;
    s.manifest_put(&name, &tag_ref("sig2"), referrer.body.clone(), None)
        .await
        .unwrap();
    assert_eq!(
        s.manifest_head(&name, &digest_ref(&referrer.digest))
            .await
            .unwrap()
            .subject,
        Some(subject.digest.clone())
    );
    assert_eq!(
        s.referrers(&name, &subject.digest, None)
            .await
            .unwrap()
            .len(),
        1
    );
    s.manifest_delete(&name, &digest_ref(&referrer.digest))
        .await
        .unwrap();
    for t in ["sig1", "sig2"] {
        assert_err!(
            s.manifest_get(&name, &tag_ref(t)).await,
            StorageError::ManifestUnknown(_)
        );
    }
    assert_err!(
        s.manifest_get(&name, &digest_ref(&referrer.digest)).await,
        StorageError::ManifestUnknown(_)
    );
    assert_err!(
        s.manifest_delete(&name, &digest_ref(&referrer.digest))
            .await,
        StorageError::ManifestUnknown(_)
    );
    assert!(
        s.referrers(&name, &subject.digest, None)
            .await
            .unwrap()
            .is_empty()
    );
    // Other tags and the subject are untouched.
    let (tags, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
    assert_eq!(tag_names(&tags), vec!["subject"]);
    let got = s.manifest_get(&name, &tag_ref("subject")).await.unwrap();
    assert_eq!(got.body, subject.body);
}

pub async fn retag_moves_tag(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let first = push_image(s, &name, "latest", "one").await;
    let second = push_image(s, &name, "latest", "two").await;
    assert_ne!(first.digest, second.digest);
    let got = s.manifest_get(&name, &tag_ref("latest")).await.unwrap();
    assert_eq!((got.meta.digest, got.body), (second.digest, second.body));
    let old = s
        .manifest_get(&name, &digest_ref(&first.digest))
        .await
        .unwrap();
    assert_eq!(old.body, first.body);
    let (tags, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
    assert_eq!(tag_names(&tags), vec!["latest"]);
    // Deleting the old manifest by digest leaves the moved tag alone.
    s.manifest_delete(&name, &digest_ref(&first.digest))
        .await
        .unwrap();
    let got = s.manifest_get(&name, &tag_ref("latest")).await.unwrap();
    assert_eq!(got.meta.digest, Digest::of(&got.body));
    assert_ne!(got.meta.digest, first.digest);
}

pub async fn tag_reused_after_delete_by_digest(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let first = push_image(s, &name, "t", "one").await;
    push_image(s, &name, "keep", "two").await;
    s.manifest_delete(&name, &digest_ref(&first.digest))
        .await
        .unwrap();
    assert_err!(
        s.manifest_delete(&name, &tag_ref("t")).await,
        StorageError::ManifestUnknown(_)
    );
    let (tags, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
    assert_eq!(tag_names(&tags), vec!["keep"]);
    let again = push_image(s, &name, "t", "three").await;
    let got = s.manifest_get(&name, &tag_ref("t")).await.unwrap();
    assert_eq!(got.meta.digest, again.digest);
    let (tags, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
    assert_eq!(tag_names(&tags), vec!["keep", "t"]);
}
