//! Concurrent pushes: same blob, same tag, many referrers.

use std::sync::Arc;

use oci_storage::StorageError;
use oci_types::{Digest, DigestAlgorithm, Pagination};
use tokio::sync::Barrier;

use crate::common::*;

pub async fn same_blob_pushed_twice_at_once(f: Fixture) {
    let name = repo("r");
    let data = Arc::new(bytes_of(30, 256 * 1024));
    let digest = Digest::of(&data);
    for round in 0..4 {
        let barrier = Arc::new(Barrier::new(2));
        // Round 0 and 2 in the same repository, 1 and 3 in two.
        let names = if round % 2 == 0 {
            [name.clone(), name.clone()]
        } else {
            [repo(&format!("x{round}")), repo(&format!("y{round}"))]
        };
        let tasks: Vec<_> = names
            .iter()
            .cloned()
            .map(|n| {
                let s = f.storage.clone();
                let (data, digest, barrier) = (data.clone(), digest.clone(), barrier.clone());
                tokio::spawn(async move {
                    let id = s.upload_start(&n, DigestAlgorithm::Sha256).await?.id;
                    barrier.wait().await;
                    for (i, chunk) in data.chunks(64 * 1024).enumerate() {
                        let start = (i * 64 * 1024) as u64;
                        s.upload_append(&n, &id, crange_len(start, chunk.len()), body(chunk))
                            .await?;
                        tokio::task::yield_now().await;
                    }
                    s.upload_complete(&n, &id, &digest, None, None).await
                })
            })
            .collect();
        for t in tasks {
            let meta = t.await.unwrap().expect("concurrent push succeeds");
            assert_eq!(meta.size, data.len() as u64);
        }
        for n in &names {
            assert_blob(&f.storage, n, &data).await;
        }
    }
}

pub async fn same_tag_put_twice_at_once(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let mut images = Vec::new();
    for seed in ["left", "right"] {
        let manifest = prepare_image(s, &name, seed).await;
        images.push(to_body(&manifest));
    }
    for _round in 0..8 {
        let barrier = Arc::new(Barrier::new(2));
        let tasks: Vec<_> = images
            .iter()
            .cloned()
            .map(|body| {
                let (s, name, barrier) = (f.storage.clone(), name.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    s.manifest_put(&name, &tag_ref("latest"), body, Some(OCI_MANIFEST))
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().expect("concurrent tag push succeeds");
        }
        let got = s.manifest_get(&name, &tag_ref("latest")).await.unwrap();
        assert!(
            images.contains(&got.body),
            "tag resolves to neither manifest"
        );
        assert_eq!(got.meta.digest, Digest::of(&got.body));
        assert_eq!(got.meta.size, got.body.len() as u64);
        for body in &images {
            let by_digest = s
                .manifest_get(&name, &digest_ref(&Digest::of(body)))
                .await
                .unwrap();
            assert_eq!(&by_digest.body, body);
        }
        let (tags, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
        assert_eq!(tag_names(&tags), vec!["latest"]);
    }
}

pub async fn many_referrers_at_once(f: Fixture) {
    const N: usize = 24;
    let s = &f.storage;
    let name = repo("r");
    let subject = push_image(s, &name, "v1", "subject").await;
    let config = push_blob(s, &name, b"{}").await;
    let barrier = Arc::new(Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (s, name, barrier) = (f.storage.clone(), name.clone(), barrier.clone());
            let mut manifest = image_manifest(
                descriptor("application/vnd.oci.empty.v1+json", &config, 2),
                vec![],
            );
            manifest["artifactType"] = serde_json::json!(format!("application/vnd.example.{i}"));
            manifest["subject"] = descriptor(OCI_MANIFEST, &subject.digest, subject.body.len());
            let body = to_body(&manifest);
            tokio::spawn(async move {
                barrier.wait().await;
                s.manifest_put(&name, &digest_ref(&Digest::of(&body)), body.clone(), None)
                    .await
                    .map(|m| m.digest)
            })
        })
        .collect();
    let mut pushed = Vec::new();
    for t in tasks {
        pushed.push(t.await.unwrap().expect("concurrent referrer push succeeds"));
    }
    pushed.sort();
    let list = s.referrers(&name, &subject.digest, None).await.unwrap();
    let listed: Vec<Digest> = list.iter().map(|d| d.digest.clone()).collect();
    assert_eq!(listed, pushed);
    for i in [0, N - 1] {
        let t = format!("application/vnd.example.{i}");
        assert_eq!(
            s.referrers(&name, &subject.digest, Some(&t))
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

/// distribution-spec "Deleting Manifests": deleting by digest removes the
/// tags that point to that manifest, never one that was re-pointed
/// elsewhere while the delete ran.
pub async fn delete_by_digest_racing_retag_keeps_retag(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let old = to_body(&prepare_image(s, &name, "old").await);
    let new = to_body(&prepare_image(s, &name, "new").await);
    let (old_digest, new_digest) = (Digest::of(&old), Digest::of(&new));
    for round in 0..16 {
        s.manifest_put(&name, &tag_ref("t"), old.clone(), Some(OCI_MANIFEST))
            .await
            .unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let delete = tokio::spawn({
            let (s, name, barrier) = (s.clone(), name.clone(), barrier.clone());
            let reference = digest_ref(&old_digest);
            async move {
                barrier.wait().await;
                s.manifest_delete(&name, &reference).await
            }
        });
        let retag = tokio::spawn({
            let (s, name, barrier, new) = (s.clone(), name.clone(), barrier.clone(), new.clone());
            async move {
                barrier.wait().await;
                // Vary who goes first a little.
                for _ in 0..round % 4 {
                    tokio::task::yield_now().await;
                }
                s.manifest_put(&name, &tag_ref("t"), new, Some(OCI_MANIFEST))
                    .await
            }
        });
        delete.await.unwrap().expect("delete by digest");
        retag.await.unwrap().expect("re-tag");
        let got = s.manifest_get(&name, &tag_ref("t")).await;
        let got = got.unwrap_or_else(|e| panic!("round {round}: re-tag lost: {e}"));
        assert_eq!(got.meta.digest, new_digest, "round {round}");
        assert_err!(
            s.manifest_get(&name, &digest_ref(&old_digest)).await,
            StorageError::ManifestUnknown(_)
        );
        let (tags, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
        assert_eq!(tag_names(&tags), vec!["t"], "round {round}");
    }
}
