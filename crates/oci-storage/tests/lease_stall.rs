//! Fencing of S3 upload sessions across replicas: a holder that pauses past
//! its lease while another replica continues the same session must never
//! get its bytes published, and what is published must be what was hashed.

#[allow(unused_macros)] // the behaviour suite's macros
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{body_framed, bytes_of, read_blob, repo};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use oci_storage::{BodyStream, Storage, StorageError, StorageOptions};
use oci_types::{Digest, DigestAlgorithm};
use tokio::sync::oneshot;

const MIB: usize = 1024 * 1024;

/// Two replicas (engines) on one bucket, with a short lease.
///
/// The holder must keep its lease while it sends the head of its body,
/// up to the stall: it renews every `lease_ttl / 4` and counts itself
/// fenced without a renewal within `lease_ttl / 2`. At 2 s that tolerates
/// a second of a loaded machine's pause (at 300 ms, a 150 ms one could
/// fence it before the stall, ending the test early); the taker then
/// waits about `lease_ttl` after the holder stalls.
async fn replicas(server: &oci_test_s3::S3Server) -> (Storage, Storage) {
    let mut options = StorageOptions::with_backend(&server.options());
    options.lease_ttl = Duration::from_secs(2);
    options.lock_wait = Duration::from_secs(10);
    let url = server.url("reg");
    let a = Storage::open_with_options(&url, options.clone())
        .await
        .unwrap();
    let b = Storage::open_with_options(&url, options).await.unwrap();
    (a, b)
}

/// A body that sends `head`, tells `stalled`, waits for `resume`, then
/// sends `rest`.
fn stalling_body(
    head: Vec<u8>,
    rest: Vec<u8>,
    stalled: oneshot::Sender<()>,
    resume: oneshot::Receiver<()>,
) -> BodyStream {
    let pause = futures::stream::once(async move {
        let _ = stalled.send(());
        let _ = resume.await;
        Ok(Bytes::from(rest))
    });
    body_framed(&head, 256 * 1024).chain(pause).boxed()
}

/// Every object under `blobs/`: its bytes hash to the digest its path
/// names, and none holds `forbidden` (or is its digest).
async fn assert_blobs_are_hashed(server: &oci_test_s3::S3Server, forbidden: &[u8]) {
    let mut builder = AmazonS3Builder::new().with_bucket_name(server.bucket());
    for (k, v) in server.options() {
        builder = builder.with_config(k.parse::<AmazonS3ConfigKey>().unwrap(), v);
    }
    let s3 = builder.build().unwrap();
    let blobs: Vec<_> = s3
        .list(Some(&Path::from("reg/blobs")))
        .try_collect()
        .await
        .unwrap();
    let forbidden_hex = Digest::of(forbidden).hex().to_owned();
    for meta in blobs {
        let key = meta.location.to_string();
        let parts: Vec<&str> = key.split('/').collect();
        // reg/blobs/<alg>/<xx>/<hex>/data
        let [_, _, alg, _, hex, "data"] = parts.as_slice() else {
            panic!("unexpected object {key}");
        };
        assert_eq!(*alg, "sha256", "{key}");
        assert_ne!(
            *hex, forbidden_hex,
            "the stalled holder's blob was published"
        );
        let data = s3.get(&meta.location).await.unwrap().bytes().await.unwrap();
        assert_eq!(Digest::of(&data).hex(), *hex, "{key} holds other bytes");
        assert!(
            !data.windows(64).any(|w| forbidden.starts_with(w)),
            "{key} holds the stalled holder's bytes"
        );
    }
}

/// Replica A stalls mid-body (after one multipart part was sent and the
/// upload id committed) for longer than its lease; replica B takes the
/// session over and completes it with other bytes. B's blob is correct;
/// A's request fails cleanly when it wakes up, and its bytes appear under
/// no digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_holder_is_fenced_out() {
    let server = oci_test_s3::S3Server::start().await.unwrap();
    let (a, b) = replicas(&server).await;
    let name = repo("stall/test");
    let id = a
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;

    let a_bytes = bytes_of(1, 9 * MIB);
    let (stalled_tx, stalled_rx) = oneshot::channel();
    let (resume_tx, resume_rx) = oneshot::channel();
    let a_body = stalling_body(
        a_bytes[..9 * MIB - 10].to_vec(),
        a_bytes[9 * MIB - 10..].to_vec(),
        stalled_tx,
        resume_rx,
    );
    let holder = {
        let (a, name) = (a.clone(), name.clone());
        tokio::spawn(async move { a.upload_append(&name, &id, None, a_body).await })
    };
    stalled_rx.await.unwrap();

    // B continues the session while A is paused (it waits out A's lease).
    let b_bytes = bytes_of(2, 9 * MIB + 5);
    let b_digest = Digest::of(&b_bytes);
    let completed = tokio::time::timeout(
        Duration::from_secs(20),
        b.upload_complete(
            &name,
            &id,
            &b_digest,
            None,
            Some(body_framed(&b_bytes, 256 * 1024)),
        ),
    )
    .await
    .expect("B is not starved by a paused holder");

    // A wakes up.
    resume_tx.send(()).unwrap();
    let a_result = holder.await.unwrap();
    assert!(
        matches!(a_result, Err(StorageError::Busy(_))),
        "the stalled holder must fail cleanly: {a_result:?}"
    );

    let meta = completed.expect("B completes the session");
    assert_eq!(meta.digest, b_digest);
    let got = read_blob(&b, &name, &b_digest, None).await.unwrap();
    assert!(got == b_bytes, "B's blob holds other bytes");
    assert!(matches!(
        b.blob_stat(&name, &Digest::of(&a_bytes)).await,
        Err(StorageError::BlobUnknown(_))
    ));
    assert!(matches!(
        a.upload_status(&name, &id).await,
        Err(StorageError::UploadUnknown(_))
    ));
    assert_blobs_are_hashed(&server, &a_bytes).await;
}

/// A replica that appended to a session behind a stalled holder's back
/// keeps its chunk: the holder's later commit is refused (its state write
/// is conditional on the version it read), and the session goes on from
/// the taker's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taker_chunk_survives_stalled_holder() {
    let server = oci_test_s3::S3Server::start().await.unwrap();
    let (a, b) = replicas(&server).await;
    let name = repo("stall/chunks");
    let id = a
        .upload_start(&name, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id;
    let a_bytes = bytes_of(3, 2 * MIB);
    let (stalled_tx, stalled_rx) = oneshot::channel();
    let (resume_tx, resume_rx) = oneshot::channel();
    let a_body = stalling_body(
        a_bytes[..MIB].to_vec(),
        a_bytes[MIB..].to_vec(),
        stalled_tx,
        resume_rx,
    );
    let holder = {
        let (a, name) = (a.clone(), name.clone());
        tokio::spawn(async move { a.upload_append(&name, &id, None, a_body).await })
    };
    stalled_rx.await.unwrap();

    let first = bytes_of(4, 6 * MIB + 3);
    let status = b
        .upload_append(&name, &id, None, body_framed(&first, 256 * 1024))
        .await
        .expect("B appends while A is paused");
    assert_eq!(status.offset, first.len() as u64);
    resume_tx.send(()).unwrap();
    let a_result = holder.await.unwrap();
    assert!(
        matches!(a_result, Err(StorageError::Busy(_))),
        "{a_result:?}"
    );

    // The session is B's: it finishes with B's bytes only.
    let second = bytes_of(5, 3 * MIB);
    let whole = [first.as_slice(), second.as_slice()].concat();
    let digest = Digest::of(&whole);
    let meta = a
        .upload_complete(
            &name,
            &id,
            &digest,
            None,
            Some(body_framed(&second, 256 * 1024)),
        )
        .await
        .expect("complete after the takeover");
    assert_eq!(meta.size, whole.len() as u64);
    let got = read_blob(&a, &name, &digest, None).await.unwrap();
    assert!(got == whole);
    assert_blobs_are_hashed(&server, &a_bytes).await;
}
