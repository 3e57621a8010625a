//! Blobs: monolithic put, stat, get (whole and ranges), visibility per
//! repository, unlink, cross-repository mounts.

use oci_storage::{MountOutcome, StorageError};
use oci_types::{Digest, DigestAlgorithm};

use crate::common::*;

pub async fn put_then_stat_and_get(f: Fixture) {
    let s = &f.storage;
    let name = repo("library/alpine");
    let data = bytes_of(1, 1000);
    let digest = Digest::of(&data);
    let meta = s
        .blob_put(&name, &digest, body_framed(&data, 100))
        .await
        .unwrap();
    assert_eq!(meta.digest, digest);
    assert_eq!(meta.size, 1000);
    let stat = s.blob_stat(&name, &digest).await.unwrap();
    assert_eq!((stat.digest.clone(), stat.size), (digest.clone(), 1000));
    let read = s.blob_get(&name, &digest, None).await.unwrap();
    assert_eq!(read.size, 1000);
    assert_eq!(read.range, None);
    let got = read_blob(s, &name, &digest, None).await.unwrap();
    assert_eq!(got, data);
    assert!(s.repository_exists(&name).await.unwrap());
}

pub async fn put_with_wrong_digest_is_rejected(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = b"actual bytes";
    let claimed = Digest::of(b"other bytes");
    assert_err!(
        s.blob_put(&name, &claimed, body(data)).await,
        StorageError::DigestMismatch { expected, actual }
            if expected == claimed && actual == Digest::of(data)
    );
    assert_err!(
        s.blob_stat(&name, &claimed).await,
        StorageError::BlobUnknown(_)
    );
    assert_err!(
        s.blob_stat(&name, &Digest::of(data)).await,
        StorageError::BlobUnknown(_)
    );
    // Nor stored for anyone: an automatic mount finds nothing.
    assert_eq!(
        s.blob_mount(&name, &Digest::of(data), None).await.unwrap(),
        MountOutcome::NotFound
    );
}

pub async fn put_sha512(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = bytes_of(2, 300);
    let digest = Digest::of_with(DigestAlgorithm::Sha512, &data);
    let meta = s.blob_put(&name, &digest, body(&data)).await.unwrap();
    assert_eq!((meta.digest, meta.size), (digest.clone(), 300));
    assert_eq!(read_blob(s, &name, &digest, None).await.unwrap(), data);
    // The sha256 address of the same bytes is a different blob.
    assert_err!(
        s.blob_stat(&name, &Digest::of(&data)).await,
        StorageError::BlobUnknown(_)
    );
}

pub async fn get_byte_ranges(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = bytes_of(3, 100);
    let digest = push_blob(s, &name, &data).await;
    for (range, want) in [
        ("bytes=0-9", 0..10),
        ("bytes=10-19", 10..20),
        ("bytes=99-99", 99..100),
        ("bytes=90-", 90..100),
        ("bytes=90-500", 90..100),
        ("bytes=-10", 90..100),
        ("bytes=-500", 0..100),
        ("bytes=0-", 0..100),
    ] {
        let read = s.blob_get(&name, &digest, brange(range)).await.unwrap();
        assert_eq!(read.size, 100, "{range}");
        assert_eq!(read.range, Some(want.clone()), "{range}");
        let got = read_blob(s, &name, &digest, brange(range)).await.unwrap();
        let (a, b) = (want.start as usize, want.end as usize);
        assert_eq!(got, &data[a..b], "{range}");
    }
    for range in ["bytes=100-", "bytes=100-200", "bytes=5000-", "bytes=-0"] {
        assert_err!(
            s.blob_get(&name, &digest, brange(range)).await,
            StorageError::RangeNotSatisfiable { size: 100 }
        );
    }
}

pub async fn not_visible_through_other_repository(f: Fixture) {
    let s = &f.storage;
    let owner = repo("owner");
    let other = repo("other");
    push_blob(s, &other, b"makes other exist").await;
    let digest = push_blob(s, &owner, b"private to owner").await;
    assert_err!(
        s.blob_stat(&other, &digest).await,
        StorageError::BlobUnknown(d) if d == digest
    );
    assert_err!(
        s.blob_get(&other, &digest, None).await,
        StorageError::BlobUnknown(_)
    );
    assert_err!(
        s.blob_get(&other, &digest, brange("bytes=0-1")).await,
        StorageError::BlobUnknown(_)
    );
    assert_err!(
        s.blob_delete(&other, &digest).await,
        StorageError::BlobUnknown(_)
    );
    // Nor through a repository that does not exist at all.
    assert_err!(
        s.blob_stat(&repo("nobody"), &digest).await,
        StorageError::BlobUnknown(_) | StorageError::NameUnknown(_)
    );
    // The failed delete did not touch the owner's link.
    assert_blob(s, &owner, b"private to owner").await;
}

pub async fn delete_unlinks(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let digest = push_blob(s, &name, b"to be deleted").await;
    s.blob_delete(&name, &digest).await.unwrap();
    assert_err!(
        s.blob_stat(&name, &digest).await,
        StorageError::BlobUnknown(d) if d == digest
    );
    assert_err!(
        s.blob_get(&name, &digest, None).await,
        StorageError::BlobUnknown(_)
    );
    assert_err!(
        s.blob_delete(&name, &digest).await,
        StorageError::BlobUnknown(_)
    );
    // A manifest can no longer reference it.
    let manifest = image_manifest(descriptor(OCI_CONFIG, &digest, 13), vec![]);
    assert_err!(
        s.manifest_put(&name, &tag_ref("t"), to_body(&manifest), None)
            .await,
        StorageError::ManifestBlobUnknown(d) if d == digest
    );
    // Pushing it again makes it visible again.
    push_blob(s, &name, b"to be deleted").await;
    assert_blob(s, &name, b"to be deleted").await;
}

pub async fn same_bytes_in_two_repositories(f: Fixture) {
    let s = &f.storage;
    let (a, b) = (repo("a"), repo("b"));
    let data = bytes_of(4, 777);
    let da = push_blob(s, &a, &data).await;
    let db = push_blob(s, &b, &data).await;
    assert_eq!(da, db);
    assert_blob(s, &a, &data).await;
    assert_blob(s, &b, &data).await;
    // Unlinking from one leaves the other intact.
    s.blob_delete(&a, &da).await.unwrap();
    assert_err!(s.blob_stat(&a, &da).await, StorageError::BlobUnknown(_));
    assert_blob(s, &b, &data).await;
}

pub async fn mount_from_source(f: Fixture) {
    let s = &f.storage;
    let (src, dst) = (repo("src"), repo("team/dst"));
    let data = bytes_of(5, 500);
    let digest = push_blob(s, &src, &data).await;
    assert!(!s.repository_exists(&dst).await.unwrap());
    assert_eq!(
        s.blob_mount(&dst, &digest, Some(&src)).await.unwrap(),
        MountOutcome::Mounted
    );
    assert_blob(s, &dst, &data).await;
    assert!(s.repository_exists(&dst).await.unwrap());
    // Mounting again is harmless.
    assert_eq!(
        s.blob_mount(&dst, &digest, Some(&src)).await.unwrap(),
        MountOutcome::Mounted
    );
    // The two links are independent.
    s.blob_delete(&src, &digest).await.unwrap();
    assert_blob(s, &dst, &data).await;
}

pub async fn mount_from_repository_lacking_blob(f: Fixture) {
    let s = &f.storage;
    let (holder, lacking, dst) = (repo("holder"), repo("lacking"), repo("dst"));
    let digest = push_blob(s, &holder, b"stored, but not in lacking").await;
    push_blob(s, &lacking, b"something else").await;
    for from in [&lacking, &repo("does-not-exist")] {
        assert_eq!(
            s.blob_mount(&dst, &digest, Some(from)).await.unwrap(),
            MountOutcome::NotFound,
            "from {from}"
        );
    }
    assert_err!(
        s.blob_stat(&dst, &digest).await,
        StorageError::BlobUnknown(_)
    );
    // A blob the source unlinked cannot be mounted from it either.
    s.blob_delete(&holder, &digest).await.unwrap();
    assert_eq!(
        s.blob_mount(&dst, &digest, Some(&holder)).await.unwrap(),
        MountOutcome::NotFound
    );
    assert_err!(
        s.blob_stat(&dst, &digest).await,
        StorageError::BlobUnknown(_)
    );
}

pub async fn mount_without_from(f: Fixture) {
    let s = &f.storage;
    let (holder, dst) = (repo("holder"), repo("dst"));
    let data = bytes_of(6, 64);
    let digest = push_blob(s, &holder, &data).await;
    assert_eq!(
        s.blob_mount(&dst, &digest, None).await.unwrap(),
        MountOutcome::Mounted
    );
    assert_blob(s, &dst, &data).await;
}

pub async fn mount_unknown_digest(f: Fixture) {
    let s = &f.storage;
    let (src, dst) = (repo("src"), repo("dst"));
    push_blob(s, &src, b"present").await;
    let unknown = Digest::of(b"never pushed");
    assert_eq!(
        s.blob_mount(&dst, &unknown, None).await.unwrap(),
        MountOutcome::NotFound
    );
    assert_eq!(
        s.blob_mount(&dst, &unknown, Some(&src)).await.unwrap(),
        MountOutcome::NotFound
    );
    assert_err!(
        s.blob_stat(&dst, &unknown).await,
        StorageError::BlobUnknown(_)
    );
    // A failed mount does not create the target repository.
    assert!(!s.repository_exists(&dst).await.unwrap());
}
