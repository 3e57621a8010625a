//! The emulator's contract: which of the XML API operations
//! object_store's GCS client sends fake-gcs-server implements, driven
//! through object_store itself with the options the registry's tests use.
//! What works is what the `gs://` tests rely on; what does not is
//! [`oci_test_gcs::LACKS`], each asserted here, so an emulator version
//! that gains one fails this test and names the tests to turn on.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use oci_test_gcs::{FakeGcs, LACKS};

/// The bucket's client, configured as the registry configures it.
fn client(gcs: &FakeGcs) -> GoogleCloudStorage {
    let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(gcs.bucket());
    for (key, value) in gcs.options() {
        let key: GoogleConfigKey = key.parse().unwrap();
        builder = builder.with_config(key, value);
    }
    builder.build().unwrap()
}

/// Fails with what the emulator now does that [`LACKS`] says it does not.
fn gained(index: usize, what: String) -> ! {
    let lack = LACKS[index];
    panic!(
        "fake-gcs-server now implements {:?} (LACKS says: {}): {what}. Remove it from \
         oci_test_gcs::LACKS and run the gs:// tests that need it",
        lack.operation, lack.behaviour
    );
}

/// Asserts `result` failed with the emulator's 400 for XML writes.
fn assert_refused<T: std::fmt::Debug>(index: usize, result: object_store::Result<T>) {
    match result {
        Err(e) if e.to_string().contains("400 Bad Request") => {}
        other => gained(index, format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_fake_gcs_server_implements() {
    if !oci_test_gcs::available() {
        return oci_test_gcs::skip_note();
    }
    let gcs = FakeGcs::start().await.unwrap();
    let store = client(&gcs);
    let data = b"0123456789abcdef".to_vec();
    gcs.upload("p/a/one", data.clone()).await.unwrap();
    gcs.upload("p/a/two", b"2".to_vec()).await.unwrap();
    gcs.upload("p/b", b"b".to_vec()).await.unwrap();
    let one = Path::from("p/a/one");

    // Implemented: get, range get, head (with the ETag, Last-Modified and
    // x-goog-generation object_store requires).
    let got = store.get(&one).await.unwrap();
    let meta = got.meta.clone();
    assert_eq!(got.bytes().await.unwrap(), Bytes::from(data.clone()));
    assert_eq!(meta.size, 16);
    assert!(meta.e_tag.is_some() && meta.version.is_some(), "{meta:?}");
    assert_eq!(
        store.get_range(&one, 3..7).await.unwrap(),
        Bytes::from_static(b"3456")
    );
    assert_eq!(store.head(&one).await.unwrap().size, 16);
    let missing = store.head(&Path::from("p/none")).await;
    assert!(
        matches!(missing, Err(object_store::Error::NotFound { .. })),
        "{missing:?}"
    );

    // Listing, recursive and with a delimiter.
    let mut all: Vec<String> = store
        .list(Some(&Path::from("p")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    all.sort();
    assert_eq!(all, ["p/a/one", "p/a/two", "p/b"]);
    let listed = store
        .list_with_delimiter(Some(&Path::from("p")))
        .await
        .unwrap();
    let dirs: Vec<String> = listed
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    let objects: Vec<String> = listed
        .objects
        .iter()
        .map(|m| m.location.to_string())
        .collect();
    assert_eq!(dirs, ["p/a"]);
    assert_eq!(objects, ["p/b"]);

    // Lacking: list pages. start-after is ignored: the keys up to the
    // offset come back too.
    let after: Vec<String> = store
        .list_with_offset(Some(&Path::from("p")), &Path::from("p/a/one"))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    if !after.contains(&"p/a/one".to_owned()) {
        gained(4, format!("list after p/a/one gave {after:?}"));
    }

    // Implemented: delete.
    store.delete(&Path::from("p/b")).await.unwrap();
    assert!(store.head(&Path::from("p/b")).await.is_err());

    // Implemented: V4 signed URLs (the registry's redirects), signed
    // locally with the service-account key and served by the emulator,
    // which does not check signatures.
    let signed = store
        .signed_url(http::Method::GET, &one, std::time::Duration::from_secs(300))
        .await
        .unwrap();
    let prefix = format!("{}/{}/p/a/one?", oci_test_gcs::base_url(), gcs.bucket());
    assert!(signed.as_str().starts_with(&prefix), "{signed}");
    assert!(signed.as_str().contains("X-Goog-Signature="), "{signed}");
    let fetched = reqwest::get(signed.clone()).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap(), Bytes::from(data.clone()));

    // Lacking: every XML write.
    assert_refused(
        0,
        store.put(&Path::from("p/new"), b"x".to_vec().into()).await,
    );
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    assert_refused(
        1,
        store
            .put_opts(&Path::from("p/created"), b"x".to_vec().into(), create)
            .await,
    );
    // The signed-URL upload it does take ignores generation preconditions:
    // "create only if absent" overwrites.
    let overwrite = reqwest::Client::new()
        .put(format!(
            "{}/{}/p/a/two?X-Goog-Algorithm=GOOG4-RSA-SHA256",
            oci_test_gcs::base_url(),
            gcs.bucket()
        ))
        .header("x-goog-if-generation-match", "0")
        .body("overwritten")
        .send()
        .await
        .unwrap();
    let two = store.get(&Path::from("p/a/two")).await.unwrap();
    if overwrite.status() != 200 || two.bytes().await.unwrap() != "overwritten" {
        gained(
            1,
            "a signed-URL PUT honours x-goog-if-generation-match".into(),
        );
    }
    assert_refused(2, store.copy(&one, &Path::from("p/copy")).await);
    assert_refused(3, store.put_multipart(&Path::from("p/multi")).await);
}
