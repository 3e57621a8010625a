//! The registry on `gs://`, against fake-gcs-server (`oci_test_gcs`).
//! The emulator implements none of the XML API's writes
//! (`oci_test_gcs::LACKS`), so no push test runs on it
//! (`oci_test_gcs::WRITES_UNSUPPORTED`): a store pushed to the
//! filesystem is copied into a bucket ([`TestServer::start_gcs_copy`]) and
//! pulled over HTTP from a server on `gs://`, as clients pull: the
//! distribution spec's pull workflow ("Pulling manifests", "Pulling
//! blobs"), content discovery and redirects.

use oci_client::secrets::RegistryAuth;
use oci_e2e::*;
use reqwest::StatusCode;

/// The servers' configuration: the web UI off, as it stores its session
/// signing key when it starts (`_keys/ui-session-key`), a write.
const NO_UI: &str = "[ui]\nenabled = false\n";

/// Manifests and blobs by tag and digest, `HEAD`s, ranges, tag lists and
/// the catalog page by page, byte for byte what was pushed; a push fails
/// with a server error and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_a_store_copied_into_gcs() {
    if !oci_test_gcs::available() {
        return oci_test_gcs::skip_note();
    }
    let writer = TestServer::start(Backend::Filesystem).await;
    let image = writer.push_image("team/app", "v1", 3).await;
    writer
        .push_manifest("team/app", "v2", OCI_MANIFEST, &image.manifest)
        .await;
    let other = writer.push_image("team/other", "latest", 1).await;
    let (srv, _gcs) = TestServer::start_gcs_copy(writer, NO_UI).await;

    for reference in ["v1", "v2", image.digest.as_str()] {
        let path = format!("/v2/team/app/manifests/{reference}");
        let resp = srv
            .req(reqwest::Method::GET, &path)
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_MANIFEST));
        assert_eq!(
            header(&resp, "docker-content-digest").as_deref(),
            Some(image.digest.as_str())
        );
        assert!(resp.bytes().await.unwrap() == image.manifest, "{path}");
        let head = srv.head(&path).await;
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        assert_eq!(
            header(&head, "content-length"),
            Some(image.manifest.len().to_string())
        );
    }
    for (desc, data) in image.layer_descs.iter().zip(&image.layers) {
        let path = format!("/v2/team/app/blobs/{}", desc.digest);
        let resp = srv.get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        assert!(resp.bytes().await.unwrap() == *data, "{path}");
        let head = srv.head(&path).await;
        assert_eq!(
            header(&head, "content-length"),
            Some(data.len().to_string())
        );
        let ranged = srv
            .req(reqwest::Method::GET, &path)
            .header("range", "bytes=100-1099")
            .send()
            .await
            .unwrap();
        assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            header(&ranged, "content-range"),
            Some(format!("bytes 100-1099/{}", data.len()))
        );
        assert!(ranged.bytes().await.unwrap() == data[100..1100]);
    }
    // Linked to its repository only.
    let elsewhere = srv
        .get(&format!(
            "/v2/team/other/blobs/{}",
            image.layer_descs[0].digest
        ))
        .await;
    assert_error(elsewhere, 404, &["BLOB_UNKNOWN"]).await;
    let unknown = srv.get("/v2/team/app/manifests/v3").await;
    assert_error(unknown, 404, &["MANIFEST_UNKNOWN"]).await;

    // Content discovery, page by page.
    let page = srv.get("/v2/team/app/tags/list?n=1").await;
    assert_eq!(page.status(), StatusCode::OK);
    let next = next_link(&page).expect("a Link to the next page");
    let body: serde_json::Value = page.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["v1"]));
    let body: serde_json::Value = srv.get(&next).await.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["v2"]));
    let body: serde_json::Value = srv.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(
        body["repositories"],
        serde_json::json!(["team/app", "team/other"])
    );

    image.assert_pulled(
        &srv.oci_client_pull("team/app", "v1", &RegistryAuth::Anonymous)
            .await,
    );
    other.assert_pulled(
        &srv.oci_client_pull("team/other", "latest", &RegistryAuth::Anonymous)
            .await,
    );

    // A push needs the writes the emulator lacks: a server error, and
    // nothing stored.
    let refused = srv
        .req(
            reqwest::Method::POST,
            &format!("/v2/team/new/blobs/uploads/?digest={}", sha256_digest(b"x")),
        )
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(
        refused.status().is_server_error(),
        "{}: {}",
        refused.status(),
        oci_test_gcs::WRITES_UNSUPPORTED
    );
    let tags = srv.get("/v2/team/new/tags/list").await;
    assert_error(tags, 404, &["NAME_UNKNOWN"]).await;
    srv.stop().await;
}

/// With `[storage] redirect = true`, a blob `GET` answers `307` to a V4
/// signed URL of the object on the emulator (signed with the service
/// account's key, as on GCS), which serves the bytes and ranges; oci-client
/// pulls through it. (The emulator does not check signatures: that URLs
/// are signed right is tested against GCS's documented form only.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_a_signed_url_of_the_bucket() {
    if !oci_test_gcs::available() {
        return oci_test_gcs::skip_note();
    }
    let writer = TestServer::start(Backend::Filesystem).await;
    let image = writer.push_image("team/app", "v1", 2).await;
    let config = format!("{NO_UI}[storage]\nredirect = true\nredirect_expiry = \"2m\"\n");
    let (srv, gcs) = TestServer::start_gcs_copy(writer, &config).await;
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let desc = &image.layer_descs[0];
    let resp = srv
        .get(&format!("/v2/team/app/blobs/{}", desc.digest))
        .await;
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        header(&resp, "docker-content-digest"),
        Some(desc.digest.clone())
    );
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    let location = header(&resp, "location").unwrap();
    let hex = desc.digest.strip_prefix("sha256:").unwrap();
    let object = format!(
        "{}/{}/registry/blobs/sha256/{}/{hex}/data?",
        oci_test_gcs::base_url(),
        gcs.bucket(),
        &hex[..2]
    );
    assert!(location.starts_with(&object), "{location} is not {object}");
    let params = query_params(&location);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{name} missing from {location}"))
    };
    assert_eq!(param("X-Goog-Algorithm"), "GOOG4-RSA-SHA256");
    assert_eq!(param("X-Goog-Expires"), "120");
    assert_eq!(param("X-Goog-SignedHeaders"), "host");
    assert!(
        param("X-Goog-Credential").starts_with("registry@oci-test.iam.gserviceaccount.com/"),
        "{location}"
    );
    // RSA-SHA256 with a 2048-bit key: 256 bytes, hex.
    assert_eq!(param("X-Goog-Signature").len(), 512, "{location}");

    let fetched = bare.get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert!(fetched.bytes().await.unwrap() == image.layers[0]);
    let ranged = bare
        .get(&location)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert!(ranged.bytes().await.unwrap() == image.layers[0][10..20]);

    image.assert_pulled(
        &srv.oci_client_pull("team/app", "v1", &RegistryAuth::Anonymous)
            .await,
    );
    srv.stop().await;
}
