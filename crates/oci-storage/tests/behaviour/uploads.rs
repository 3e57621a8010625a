//! Upload sessions: chunked appends, range checks, failing bodies, completion
//! and digest verification, cancel, repository binding, restarts.

use bytes::Bytes;
use oci_storage::{MountOutcome, StorageError};
use oci_types::{Digest, DigestAlgorithm};

use crate::common::*;

pub async fn chunked_without_range(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = bytes_of(10, 3000);
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    let mut offset = 0;
    for chunk in data.chunks(1024) {
        let st = s
            .upload_append(&name, &id, None, body_framed(chunk, 100))
            .await
            .unwrap();
        offset += chunk.len() as u64;
        assert_eq!((st.id, st.offset), (id, offset));
    }
    assert_eq!(s.upload_status(&name, &id).await.unwrap().offset, 3000);
    let digest = Digest::of(&data);
    let meta = s
        .upload_complete(&name, &id, &digest, None, None)
        .await
        .unwrap();
    assert_eq!((meta.digest, meta.size), (digest, 3000));
    assert_blob(s, &name, &data).await;
    // The session is gone once completed.
    assert_err!(
        s.upload_status(&name, &id).await,
        StorageError::UploadUnknown(_)
    );
}

pub async fn chunked_with_range(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = bytes_of(11, 2500);
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    let mut offset = 0u64;
    for chunk in data.chunks(1000) {
        let st = s
            .upload_append(&name, &id, crange_len(offset, chunk.len()), body(chunk))
            .await
            .unwrap();
        offset += chunk.len() as u64;
        assert_eq!(st.offset, offset);
    }
    s.upload_complete(&name, &id, &Digest::of(&data), None, None)
        .await
        .unwrap();
    assert_blob(s, &name, &data).await;
}

pub async fn out_of_order_range_is_refused(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = bytes_of(12, 30);
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    s.upload_append(&name, &id, crange(0, 9), body(&data[..10]))
        .await
        .unwrap();
    // A chunk from the future, and a replay of the past.
    assert_err!(
        s.upload_append(&name, &id, crange(20, 29), body(&data[20..]))
            .await,
        StorageError::RangeInvalid {
            expected: 10,
            got: 20
        }
    );
    assert_eq!(s.upload_status(&name, &id).await.unwrap().offset, 10);
    assert_err!(
        s.upload_append(&name, &id, crange(0, 9), body(&data[..10]))
            .await,
        StorageError::RangeInvalid {
            expected: 10,
            got: 0
        }
    );
    assert_eq!(s.upload_status(&name, &id).await.unwrap().offset, 10);
    // Also on the final chunk given to complete.
    assert_err!(
        s.upload_complete(
            &name,
            &id,
            &Digest::of(&data),
            crange(15, 29),
            Some(body(&data[15..]))
        )
        .await,
        StorageError::RangeInvalid {
            expected: 10,
            got: 15
        }
    );
    assert_eq!(s.upload_status(&name, &id).await.unwrap().offset, 10);
    s.upload_append(&name, &id, crange(10, 19), body(&data[10..20]))
        .await
        .unwrap();
    s.upload_complete(
        &name,
        &id,
        &Digest::of(&data),
        crange(20, 29),
        Some(body(&data[20..])),
    )
    .await
    .unwrap();
    assert_blob(s, &name, &data).await;
}

pub async fn range_length_mismatch_is_refused(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = bytes_of(13, 30);
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    s.upload_append(&name, &id, crange(0, 9), body(&data[..10]))
        .await
        .unwrap();
    // Fewer bytes than declared.
    assert_err!(
        s.upload_append(&name, &id, crange(10, 19), body(&data[10..15]))
            .await,
        StorageError::SizeInvalid {
            declared: 10,
            received: 5
        }
    );
    assert_eq!(s.upload_status(&name, &id).await.unwrap().offset, 10);
    // More bytes than declared (with garbage that must not end up in the blob).
    let mut longer = data[10..20].to_vec();
    longer.extend_from_slice(b"GARBAGE");
    assert_err!(
        s.upload_append(&name, &id, crange(10, 19), body_framed(&longer, 4))
            .await,
        StorageError::SizeInvalid {
            declared: 10,
            received: 17
        }
    );
    assert_eq!(s.upload_status(&name, &id).await.unwrap().offset, 10);
    // Also on the final chunk given to complete; the session stays.
    assert_err!(
        s.upload_complete(
            &name,
            &id,
            &Digest::of(&data),
            crange(10, 29),
            Some(body(&data[10..25]))
        )
        .await,
        StorageError::SizeInvalid {
            declared: 20,
            received: 15
        }
    );
    assert_eq!(s.upload_status(&name, &id).await.unwrap().offset, 10);
    // The session continues from where it was.
    s.upload_append(&name, &id, crange(10, 19), body(&data[10..20]))
        .await
        .unwrap();
    s.upload_append(&name, &id, None, body(&data[20..]))
        .await
        .unwrap();
    s.upload_complete(&name, &id, &Digest::of(&data), None, None)
        .await
        .unwrap();
    assert_blob(s, &name, &data).await;
}

pub async fn failing_body_leaves_offset(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = bytes_of(14, 4000);
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    s.upload_append(&name, &id, None, body(&data[..1000]))
        .await
        .unwrap();
    // 1500 bytes arrive (mixing good and wrong bytes), then the body fails.
    let mut partial = data[1000..2000].to_vec();
    partial.extend_from_slice(&[0xAA; 500]);
    assert_err!(
        s.upload_append(&name, &id, None, failing_body(&partial, 100))
            .await,
        StorageError::Body(_)
    );
    assert_eq!(s.upload_status(&name, &id).await.unwrap().offset, 1000);
    // Again with a Content-Range.
    assert_err!(
        s.upload_append(&name, &id, crange(1000, 2999), failing_body(&partial, 300))
            .await,
        StorageError::Body(_)
    );
    assert_eq!(s.upload_status(&name, &id).await.unwrap().offset, 1000);
    // The client resumes from the offset it is told.
    let st = s
        .upload_append(
            &name,
            &id,
            crange(1000, 2999),
            body_framed(&data[1000..3000], 250),
        )
        .await
        .unwrap();
    assert_eq!(st.offset, 3000);
    // A failing final chunk in complete keeps the session as it was, too.
    assert_err!(
        s.upload_complete(
            &name,
            &id,
            &Digest::of(&data),
            None,
            Some(failing_body(&data[3000..3500], 100))
        )
        .await,
        StorageError::Body(_)
    );
    assert_eq!(s.upload_status(&name, &id).await.unwrap().offset, 3000);
    let meta = s
        .upload_complete(
            &name,
            &id,
            &Digest::of(&data),
            None,
            Some(body(&data[3000..])),
        )
        .await
        .unwrap();
    assert_eq!((meta.digest, meta.size), (Digest::of(&data), 4000));
    assert_blob(s, &name, &data).await;
}

pub async fn complete_with_final_chunk(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    // Final chunk without a range.
    let data = bytes_of(15, 200);
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    s.upload_append(&name, &id, None, body(&data[..50]))
        .await
        .unwrap();
    let meta = s
        .upload_complete(
            &name,
            &id,
            &Digest::of(&data),
            None,
            Some(body_framed(&data[50..], 7)),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, 200);
    assert_blob(s, &name, &data).await;
    // Final chunk with a range, and a session that only ever gets that chunk.
    let data = bytes_of(16, 120);
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    s.upload_complete(
        &name,
        &id,
        &Digest::of(&data),
        crange(0, 119),
        Some(body(&data)),
    )
    .await
    .unwrap();
    assert_blob(s, &name, &data).await;
}

pub async fn complete_with_wrong_digest(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = bytes_of(17, 100);
    let claimed = Digest::of(b"something else");
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    s.upload_append(&name, &id, None, body(&data[..60]))
        .await
        .unwrap();
    assert_err!(
        s.upload_complete(&name, &id, &claimed, None, Some(body(&data[60..])))
            .await,
        StorageError::DigestMismatch { expected, actual }
            if expected == claimed && actual == Digest::of(&data)
    );
    for d in [&claimed, &Digest::of(&data)] {
        assert_err!(s.blob_stat(&name, d).await, StorageError::BlobUnknown(_));
        assert_eq!(
            s.blob_mount(&repo("elsewhere"), d, None).await.unwrap(),
            MountOutcome::NotFound
        );
    }
    // The session is gone.
    assert_err!(
        s.upload_status(&name, &id).await,
        StorageError::UploadUnknown(_)
    );
    // Claiming the digest of a blob stored elsewhere does not link it.
    let stored = push_blob(s, &repo("holder"), b"stored elsewhere").await;
    let id2 = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    assert_err!(
        s.upload_complete(&name, &id2, &stored, None, Some(body(b"other bytes")))
            .await,
        StorageError::DigestMismatch { .. }
    );
    assert_err!(
        s.blob_stat(&name, &stored).await,
        StorageError::BlobUnknown(_)
    );
    assert_blob(s, &repo("holder"), b"stored elsewhere").await;
    assert_err!(
        s.upload_append(&name, &id, None, body(b"x")).await,
        StorageError::UploadUnknown(_)
    );
    assert_err!(
        s.upload_complete(&name, &id, &Digest::of(&data), None, None)
            .await,
        StorageError::UploadUnknown(_)
    );
}

pub async fn complete_sha512_rehashes(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = bytes_of(18, 5000);
    let d512 = Digest::of_with(DigestAlgorithm::Sha512, &data);
    // The session hashed with sha256; completing with sha512 re-reads it.
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    for chunk in data.chunks(1500) {
        s.upload_append(&name, &id, None, body(chunk))
            .await
            .unwrap();
    }
    let meta = s
        .upload_complete(&name, &id, &d512, None, None)
        .await
        .unwrap();
    assert_eq!((meta.digest.clone(), meta.size), (d512.clone(), 5000));
    assert_eq!(s.blob_stat(&name, &d512).await.unwrap().size, 5000);
    assert_eq!(read_blob(s, &name, &d512, None).await.unwrap(), data);
    // A wrong sha512 digest is refused on the same path.
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    s.upload_append(&name, &id, None, body(b"abc"))
        .await
        .unwrap();
    let wrong = Digest::of_with(DigestAlgorithm::Sha512, b"abd");
    assert_err!(
        s.upload_complete(&name, &id, &wrong, None, None).await,
        StorageError::DigestMismatch { actual, .. }
            if actual == Digest::of_with(DigestAlgorithm::Sha512, b"abc")
    );
    // A session started as sha512, completed as sha512 (no re-read).
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha512)
        .await
        .unwrap()
        .id;
    s.upload_append(&name, &id, None, body(&data[..100]))
        .await
        .unwrap();
    let d = Digest::of_with(DigestAlgorithm::Sha512, &data[..100]);
    s.upload_complete(&name, &id, &d, None, None).await.unwrap();
    assert_eq!(read_blob(s, &name, &d, None).await.unwrap(), &data[..100]);
    // ... and one started as sha512, completed as sha256 (re-read).
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha512)
        .await
        .unwrap()
        .id;
    s.upload_append(&name, &id, None, body(&data[..200]))
        .await
        .unwrap();
    s.upload_complete(&name, &id, &Digest::of(&data[..200]), None, None)
        .await
        .unwrap();
    assert_blob(s, &name, &data[..200]).await;
}

async fn assert_empty_blob(f: &Fixture, name: &oci_types::RepositoryName) {
    let s = &f.storage;
    let empty = Digest::of(b"");
    assert_eq!(s.blob_stat(name, &empty).await.unwrap().size, 0);
    assert_eq!(read_blob(s, name, &empty, None).await.unwrap(), b"");
    assert_err!(
        s.blob_get(name, &empty, brange("bytes=0-")).await,
        StorageError::RangeNotSatisfiable { size: 0 }
    );
}

pub async fn empty_blob_monolithic(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let empty = Digest::of(b"");
    let meta = s.blob_put(&name, &empty, body(b"")).await.unwrap();
    assert_eq!(meta.size, 0);
    assert_empty_blob(&f, &name).await;
    // A body with no frames at all.
    let name = repo("r2");
    s.blob_put(&name, &empty, body_chunks([])).await.unwrap();
    assert_empty_blob(&f, &name).await;
}

pub async fn empty_blob_session_with_empty_final_chunk(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    let meta = s
        .upload_complete(&name, &id, &Digest::of(b""), None, Some(body(b"")))
        .await
        .unwrap();
    assert_eq!(meta.size, 0);
    assert_empty_blob(&f, &name).await;
}

/// `POST` then `PUT ?digest=` with no body at all: the client never sent a
/// byte (distribution-spec allows completing a session with an empty body).
pub async fn empty_blob_session_without_body(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    let meta = s
        .upload_complete(&name, &id, &Digest::of(b""), None, None)
        .await
        .unwrap();
    assert_eq!(meta.size, 0);
    assert_empty_blob(&f, &name).await;
}

/// As [`empty_blob_session_without_body`], completed with a sha512 digest:
/// the session hashed sha256, so the engine re-reads the (absent) bytes.
pub async fn empty_blob_session_without_body_sha512(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    let empty = Digest::of_with(DigestAlgorithm::Sha512, b"");
    let meta = s
        .upload_complete(&name, &id, &empty, None, None)
        .await
        .unwrap();
    assert_eq!(meta.size, 0);
    assert_eq!(s.blob_stat(&name, &empty).await.unwrap().size, 0);
    assert_eq!(read_blob(s, &name, &empty, None).await.unwrap(), b"");
}

/// Bytes of failed appends never reach the blob, even when the session is
/// completed right after the failure (with and without re-hashing).
pub async fn complete_after_failed_append_ignores_garbage(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = bytes_of(23, 100);
    for algorithm in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
        let id = s
            .upload_start(&name, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id;
        s.upload_append(&name, &id, None, body(&data))
            .await
            .unwrap();
        assert_err!(
            s.upload_append(&name, &id, None, failing_body(&[0xEE; 50], 10))
                .await,
            StorageError::Body(_)
        );
        assert_err!(
            s.upload_append(&name, &id, crange(100, 109), body(&[0xDD; 30]))
                .await,
            StorageError::SizeInvalid { .. }
        );
        let digest = Digest::of_with(algorithm, &data);
        let meta = s
            .upload_complete(&name, &id, &digest, None, None)
            .await
            .unwrap();
        assert_eq!(meta.size, 100, "{algorithm}");
        assert_eq!(s.blob_stat(&name, &digest).await.unwrap().size, 100);
        assert_eq!(read_blob(s, &name, &digest, None).await.unwrap(), data);
    }
}

pub async fn status_reports_progress(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let st = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    assert_eq!(st.offset, 0);
    assert_eq!(s.upload_status(&name, &st.id).await.unwrap(), st);
    s.upload_append(&name, &st.id, None, body(&[1; 10]))
        .await
        .unwrap();
    s.upload_append(&name, &st.id, None, body(&[2; 5]))
        .await
        .unwrap();
    let now = s.upload_status(&name, &st.id).await.unwrap();
    assert_eq!((now.id, now.offset), (st.id, 15));
    // Two sessions are independent.
    let other = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    assert_ne!(other.id, st.id);
    assert_eq!(s.upload_status(&name, &other.id).await.unwrap().offset, 0);
    assert_eq!(s.upload_status(&name, &st.id).await.unwrap().offset, 15);
    // An id never issued.
    assert_err!(
        s.upload_status(&name, &uuid::Uuid::new_v4()).await,
        StorageError::UploadUnknown(_)
    );
}

pub async fn cancel_forgets_session(f: Fixture) {
    let s = &f.storage;
    let name = repo("r");
    let data = b"abandoned";
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    s.upload_append(&name, &id, None, body(data)).await.unwrap();
    s.upload_cancel(&name, &id).await.unwrap();
    assert_err!(
        s.upload_status(&name, &id).await,
        StorageError::UploadUnknown(_)
    );
    assert_err!(
        s.upload_append(&name, &id, None, body(b"more")).await,
        StorageError::UploadUnknown(_)
    );
    assert_err!(
        s.upload_complete(&name, &id, &Digest::of(data), None, None)
            .await,
        StorageError::UploadUnknown(_)
    );
    assert_err!(
        s.upload_cancel(&name, &id).await,
        StorageError::UploadUnknown(_)
    );
    assert_err!(
        s.blob_stat(&name, &Digest::of(data)).await,
        StorageError::BlobUnknown(_)
    );
}

pub async fn session_bound_to_repository(f: Fixture) {
    let s = &f.storage;
    let (mine, other) = (repo("mine"), repo("other"));
    let data = bytes_of(19, 40);
    let id = s
        .upload_start(&mine, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    s.upload_append(&mine, &id, None, body(&data[..20]))
        .await
        .unwrap();
    assert_err!(
        s.upload_status(&other, &id).await,
        StorageError::UploadUnknown(_)
    );
    assert_err!(
        s.upload_append(&other, &id, None, body(&data[20..])).await,
        StorageError::UploadUnknown(_)
    );
    assert_err!(
        s.upload_complete(
            &other,
            &id,
            &Digest::of(&data),
            None,
            Some(body(&data[20..]))
        )
        .await,
        StorageError::UploadUnknown(_)
    );
    assert_err!(
        s.upload_cancel(&other, &id).await,
        StorageError::UploadUnknown(_)
    );
    // None of that touched the session.
    assert_eq!(s.upload_status(&mine, &id).await.unwrap().offset, 20);
    s.upload_complete(
        &mine,
        &id,
        &Digest::of(&data),
        None,
        Some(body(&data[20..])),
    )
    .await
    .unwrap();
    assert_blob(s, &mine, &data).await;
    assert_err!(
        s.blob_stat(&other, &Digest::of(&data)).await,
        StorageError::BlobUnknown(_)
    );
    assert!(!s.repository_exists(&other).await.unwrap());
}

pub async fn session_survives_restart(mut f: Fixture) {
    let name = repo("r");
    let data = bytes_of(20, 3000);
    let id = {
        let s = &f.storage;
        let id = s
            .upload_start(&name, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id;
        s.upload_append(&name, &id, crange(0, 999), body(&data[..1000]))
            .await
            .unwrap();
        id
    };
    f.restart().await;
    let s = &f.storage;
    assert_eq!(s.upload_status(&name, &id).await.unwrap().offset, 1000);
    s.upload_append(&name, &id, crange(1000, 1999), body(&data[1000..2000]))
        .await
        .unwrap();
    f.restart().await;
    let s = &f.storage;
    s.upload_complete(
        &name,
        &id,
        &Digest::of(&data),
        crange(2000, 2999),
        Some(body(&data[2000..])),
    )
    .await
    .unwrap();
    assert_blob(s, &name, &data).await;
    // And the blob is there after yet another restart.
    f.restart().await;
    assert_blob(&f.storage, &name, &data).await;
    // A sha512 session resumes its hash state too.
    let id = f
        .storage
        .upload_start(&name, DigestAlgorithm::Sha512)
        .await
        .unwrap()
        .id;
    f.storage
        .upload_append(&name, &id, None, body(&data[..1234]))
        .await
        .unwrap();
    f.restart().await;
    let d512 = Digest::of_with(DigestAlgorithm::Sha512, &data);
    f.storage
        .upload_complete(&name, &id, &d512, None, Some(body(&data[1234..])))
        .await
        .unwrap();
    assert_eq!(
        read_blob(&f.storage, &name, &d512, None).await.unwrap(),
        data
    );
}

pub async fn reupload_of_stored_blob(f: Fixture) {
    let s = &f.storage;
    let (a, b) = (repo("a"), repo("b"));
    let data = bytes_of(21, 2048);
    let digest = push_blob(s, &a, &data).await;
    // Same repository, monolithic.
    assert_eq!(push_blob(s, &a, &data).await, digest);
    // Same repository and another one, chunked.
    for name in [&a, &b] {
        let id = s
            .upload_start(name, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id;
        s.upload_append(name, &id, None, body(&data[..1000]))
            .await
            .unwrap();
        let meta = s
            .upload_complete(name, &id, &digest, None, Some(body(&data[1000..])))
            .await
            .unwrap();
        assert_eq!(meta.size, 2048);
        assert_err!(
            s.upload_status(name, &id).await,
            StorageError::UploadUnknown(_)
        );
    }
    assert_blob(s, &a, &data).await;
    assert_blob(s, &b, &data).await;
}

pub async fn large_blob_streamed(f: Fixture) {
    const MIB: usize = 1024 * 1024;
    let s = &f.storage;
    let name = repo("big");
    let data = Bytes::from(bytes_of(22, 20 * MIB));
    let digest = Digest::of(&data);
    let id = s
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    for (i, _) in data.chunks(MIB).enumerate() {
        let chunk = data.slice(i * MIB..(i + 1) * MIB);
        // Many small frames, as a socket delivers them.
        let frames: Vec<Bytes> = (0..chunk.len())
            .step_by(16 * 1024)
            .map(|o| chunk.slice(o..(o + 16 * 1024).min(chunk.len())))
            .collect();
        let st = s
            .upload_append(
                &name,
                &id,
                crange_len((i * MIB) as u64, MIB),
                body_chunks(frames),
            )
            .await
            .unwrap();
        assert_eq!(st.offset, ((i + 1) * MIB) as u64);
    }
    let meta = s
        .upload_complete(&name, &id, &digest, None, None)
        .await
        .unwrap();
    assert_eq!(
        (meta.digest.clone(), meta.size),
        (digest.clone(), 20 * MIB as u64)
    );
    assert_eq!(
        s.blob_stat(&name, &digest).await.unwrap().size,
        20 * MIB as u64
    );
    let back = read_blob(s, &name, &digest, None).await.unwrap();
    assert_eq!(back.len(), 20 * MIB);
    assert!(back == data, "20 MiB blob reads back differently");
    // A range in the middle, across a chunk boundary.
    let r = read_blob(s, &name, &digest, brange("bytes=1048000-1049999"))
        .await
        .unwrap();
    assert!(r == data[1_048_000..1_050_000]);
}
