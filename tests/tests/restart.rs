//! Persistence across a server restart (filesystem and S3 backends): the spec's
//! "Resumable Push" use case ("The registry notifies the build server that
//! the upload has already been partially attempted. The build server
//! responds by only sending the remaining data"), and content surviving a
//! fresh `Storage::open` of the same directory.

use oci_e2e::*;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

/// Sends `PATCH <loc>` with `Content-Range: start-end`; asserts 202 and
/// `Range: 0-end`; returns the new location as a path (so it survives a port
/// change).
async fn patch(srv: &TestServer, loc: &str, start: usize, chunk: &[u8]) -> String {
    let end = start + chunk.len() - 1;
    let resp = srv
        .req(Method::PATCH, loc)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header("content-range", format!("{start}-{end}"))
        .header(CONTENT_LENGTH, chunk.len())
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "PATCH {start}-{end}");
    assert_eq!(header(&resp, "range"), Some(format!("0-{end}")));
    location_path(&location(&resp))
}

/// The backends whose content survives a restart (filesystem, S3).
fn persistent_backends() -> impl Iterator<Item = Backend> {
    Backend::all().into_iter().filter(|b| b.is_persistent())
}

/// POST + two chunked PATCHes, stop the server, start a new one on the same
/// directory: `GET <location>` reports the same `Range`, the rest is
/// PATCHed, the PUT is 201 and the blob has every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_resumes_after_restart() {
    for backend in persistent_backends() {
        upload_resumes(backend).await;
    }
}

async fn upload_resumes(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "restart/upload";
    let chunk = 64 * 1024;
    let data = random_blob(chunk * 3 + 5, 1);
    let digest = sha256_digest(&data);

    let loc = location_path(&srv.start_upload(name).await);
    let loc = patch(&srv, &loc, 0, &data[..chunk]).await;
    let loc = patch(&srv, &loc, chunk, &data[chunk..2 * chunk]).await;

    let srv = srv.restart().await;

    let resp = srv.get(&loc).await;
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "upload status after restart"
    );
    assert_eq!(
        header(&resp, "range"),
        Some(format!("0-{}", 2 * chunk - 1)),
        "the upload must resume where it stopped"
    );
    let loc = location_path(&location(&resp));
    let loc = patch(&srv, &loc, 2 * chunk, &data[2 * chunk..]).await;
    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &digest))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "closing PUT after restart"
    );

    let resp = srv.get(&format!("/v2/{name}/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), data.len());
    assert_eq!(sha256_digest(&body), digest);
    srv.stop().await;
}

/// Blobs, manifests, tags and referrers written before a restart are all
/// there after it; deletions stay deleted; an open session stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_survives_restart() {
    for backend in persistent_backends() {
        content_survives(backend).await;
    }
}

async fn content_survives(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "restart/content";
    let img = srv.push_image(name, "v1", 2).await;
    srv.push_manifest(name, "v2", OCI_MANIFEST, &img.manifest)
        .await;
    let gone = srv.push_image(name, "gone", 1).await;
    let resp = srv
        .delete(&format!("/v2/{name}/manifests/{}", gone.digest))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    srv.push_blob(name, b"{}").await;
    let artifact = image_manifest(
        &Descriptor::of(OCI_EMPTY, b"{}"),
        &[],
        Some(&img.manifest_desc),
        Some("application/vnd.example.sig"),
        None,
    );
    srv.push_manifest(name, "sig", OCI_MANIFEST, &artifact)
        .await;
    let pending = location_path(&srv.start_upload(name).await);

    let srv = srv.restart().await;

    let resp = srv.get(&format!("/v2/{name}/manifests/v1")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_MANIFEST));
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        img.manifest.as_slice()
    );
    for (desc, data) in img.layer_descs.iter().zip(&img.layers) {
        let resp = srv.get(&format!("/v2/{name}/blobs/{}", desc.digest)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.bytes().await.unwrap().as_ref() == data.as_slice());
    }
    let v: serde_json::Value = srv
        .get(&format!("/v2/{name}/tags/list"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["tags"], serde_json::json!(["sig", "v1", "v2"]));
    let resp = srv
        .get(&format!("/v2/{name}/manifests/{}", gone.digest))
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "a deleted manifest came back"
    );
    let v: serde_json::Value = srv
        .get(&format!("/v2/{name}/referrers/{}", img.digest))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["manifests"].as_array().map(Vec::len),
        Some(1),
        "referrers after restart: {v}"
    );
    let v: serde_json::Value = srv.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!([name]));
    // The empty session opened before the restart is still known.
    assert_eq!(srv.get(&pending).await.status(), StatusCode::NO_CONTENT);
    srv.stop().await;
}

/// `Storage::open` accepts a plain path and `file://` for the same
/// directory, and they see the same content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_path_and_file_url_are_the_same_storage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let plain = root.to_str().unwrap().to_owned();

    let srv = TestServer::start_at(&plain).await;
    let img = srv.push_image("restart/plain", "v1", 1).await;
    srv.stop().await;

    let srv = TestServer::start_at(&file_url(&root)).await;
    let resp = srv.get("/v2/restart/plain/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        img.manifest.as_slice()
    );
    srv.stop().await;
    assert!(root.exists(), "the storage root must be where the URL says");
}
