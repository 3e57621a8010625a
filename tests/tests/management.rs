//! Content management (distribution-spec v1.1.1 "Content Management":
//! "Deleting tags", "Deleting Manifests", "Deleting Blobs").

use oci_e2e::*;
use reqwest::StatusCode;
use serde_json::Value;

/// A digest that no test ever pushes.
const DUMMY_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000001";

/// The tags of `name`, or `None` if the tags list is 404 (the spec lets a
/// repository whose last manifest is gone be unknown).
async fn tags(srv: &TestServer, name: &str) -> Option<Vec<String>> {
    let resp = srv.get(&format!("/v2/{name}/tags/list")).await;
    match resp.status() {
        StatusCode::OK => {
            let v: Value = resp.json().await.unwrap();
            let mut t: Vec<String> = serde_json::from_value(v["tags"].clone())
                .unwrap_or_else(|_| panic!("tags must be an array: {v}"));
            t.sort();
            Some(t)
        }
        StatusCode::NOT_FOUND => None,
        s => panic!("tags/list of {name}: unexpected {s}"),
    }
}

/// "Deleting tags": `DELETE /v2/<name>/manifests/<tag>` is 202; the tag
/// is then 404, while the manifest stays reachable by digest and by its
/// other tags, and the tags list loses exactly that tag.
async fn delete_tag(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "mgmt/tag";
    let img = srv.push_image(name, "tagtest0", 1).await;
    srv.push_manifest(name, "keep", OCI_MANIFEST, &img.manifest)
        .await;
    assert_eq!(
        tags(&srv, name).await,
        Some(vec!["keep".into(), "tagtest0".into()])
    );

    let resp = srv.delete(&format!("/v2/{name}/manifests/tagtest0")).await;
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "DELETE tag must be 202"
    );

    let resp = srv.get(&format!("/v2/{name}/manifests/tagtest0")).await;
    assert_error(resp, 404, &["MANIFEST_UNKNOWN"]).await;
    assert_eq!(
        srv.head(&format!("/v2/{name}/manifests/tagtest0"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    for reference in [img.digest.as_str(), "keep"] {
        let resp = srv.get(&format!("/v2/{name}/manifests/{reference}")).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{reference} must survive the tag deletion"
        );
        assert_eq!(
            resp.bytes().await.unwrap().as_ref(),
            img.manifest.as_slice()
        );
    }
    assert_eq!(tags(&srv, name).await, Some(vec!["keep".into()]));
    // The blobs are untouched.
    let resp = srv
        .get(&format!("/v2/{name}/blobs/{}", img.config_desc.digest))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    srv.stop().await;
}

/// "Deleting Manifests": `DELETE /v2/<name>/manifests/<digest>` is 202;
/// "Once deleted, a `GET` to `/v2/<name>/manifests/<digest>` and any tag
/// pointing to that digest will return a 404."
async fn delete_manifest_by_digest(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "mgmt/manifest";
    let img = srv.push_image(name, "a", 1).await;
    srv.push_manifest(name, "b", OCI_MANIFEST, &img.manifest)
        .await;
    let other = srv.push_image(name, "other", 1).await;

    let resp = srv
        .delete(&format!("/v2/{name}/manifests/{}", img.digest))
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "DELETE manifest must be 202"
    );

    for reference in [img.digest.as_str(), "a", "b"] {
        let resp = srv.get(&format!("/v2/{name}/manifests/{reference}")).await;
        assert_error(resp, 404, &["MANIFEST_UNKNOWN"]).await;
        let resp = srv.head(&format!("/v2/{name}/manifests/{reference}")).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "HEAD {reference}");
    }
    // Conformance "GET request to tags list should reflect manifest deletion".
    assert_eq!(tags(&srv, name).await, Some(vec!["other".into()]));
    let resp = srv.get(&format!("/v2/{name}/manifests/other")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        other.manifest.as_slice()
    );

    // Deleting again: it is unknown now.
    let resp = srv
        .delete(&format!("/v2/{name}/manifests/{}", img.digest))
        .await;
    assert_error(resp, 404, &["MANIFEST_UNKNOWN"]).await;

    // The same bytes can be pushed again afterwards.
    srv.push_manifest(name, "a", OCI_MANIFEST, &img.manifest)
        .await;
    assert_eq!(
        srv.get(&format!("/v2/{name}/manifests/{}", img.digest))
            .await
            .status(),
        StatusCode::OK
    );
    srv.stop().await;
}

/// Conformance "Manifest delete" sequence: delete the tag, then the
/// manifest by digest (202, or 404 if the tag deletion removed it), then
/// GET by digest is 404 and the tags list shrank by one.
async fn delete_tag_then_manifest(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "mgmt/sequence";
    let img = srv.push_image(name, "tagtest0", 1).await;
    srv.push_image(name, "unrelated", 1).await;
    let before = tags(&srv, name).await.unwrap().len();

    let resp = srv.delete(&format!("/v2/{name}/manifests/tagtest0")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = srv
        .delete(&format!("/v2/{name}/manifests/{}", img.digest))
        .await;
    assert!(
        resp.status() == StatusCode::ACCEPTED || resp.status() == StatusCode::NOT_FOUND,
        "DELETE by digest after tag deletion: {}",
        resp.status()
    );
    let resp = srv
        .get(&format!("/v2/{name}/manifests/{}", img.digest))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(tags(&srv, name).await.map(|t| t.len()), Some(before - 1));
    srv.stop().await;
}

/// "Deleting Blobs": `DELETE /v2/<name>/blobs/<digest>` is 202, then GET
/// and HEAD are 404 and a second DELETE is 404 ("If the blob is not
/// found, a `404 Not Found` code MUST be returned").
async fn delete_blob(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "mgmt/blob";
    let data = random_blob(20_000, 1);
    let digest = srv.push_blob(name, &data).await;
    let keep = srv.push_blob(name, b"another blob").await;

    let resp = srv.delete(&format!("/v2/{name}/blobs/{digest}")).await;
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "DELETE blob must be 202"
    );
    let resp = srv.get(&format!("/v2/{name}/blobs/{digest}")).await;
    assert_error(resp, 404, &["BLOB_UNKNOWN"]).await;
    assert_eq!(
        srv.head(&format!("/v2/{name}/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let resp = srv.delete(&format!("/v2/{name}/blobs/{digest}")).await;
    assert_error(resp, 404, &["BLOB_UNKNOWN"]).await;

    assert_eq!(
        srv.get(&format!("/v2/{name}/blobs/{keep}")).await.status(),
        StatusCode::OK
    );
    // It can be pushed again.
    srv.push_blob(name, &data).await;
    let resp = srv.get(&format!("/v2/{name}/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap().as_ref() == data.as_slice());
    srv.stop().await;
}

/// Deleting a blob from one repository leaves it in another repository
/// that mounted it (deletion is per `<name>`).
async fn delete_blob_is_per_repository(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let data = random_blob(5000, 2);
    let digest = srv.push_blob("mgmt/src", &data).await;
    let resp = srv
        .req(
            reqwest::Method::POST,
            &format!(
                "/v2/mgmt/dst/blobs/uploads/?mount={}&from=mgmt/src",
                encode_query_value(&digest)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "mount");
    let resp = srv.delete(&format!("/v2/mgmt/src/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        srv.get(&format!("/v2/mgmt/src/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let resp = srv.get(&format!("/v2/mgmt/dst/blobs/{digest}")).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the mounted copy must survive"
    );
    assert!(resp.bytes().await.unwrap().as_ref() == data.as_slice());
    srv.stop().await;
}

/// Deleting what does not exist is 404: an unknown manifest digest, an
/// unknown tag, an unknown blob, and anything in an unknown repository
/// ("If the repository does not exist, the response MUST return `404 Not
/// Found`").
async fn delete_unknown_is_404(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "mgmt/unknown";
    srv.push_image(name, "v1", 1).await;
    let resp = srv
        .delete(&format!("/v2/{name}/manifests/{DUMMY_DIGEST}"))
        .await;
    assert_error(resp, 404, &["MANIFEST_UNKNOWN"]).await;
    let resp = srv.delete(&format!("/v2/{name}/manifests/nosuchtag")).await;
    assert_error(resp, 404, &["MANIFEST_UNKNOWN"]).await;
    let resp = srv
        .delete(&format!("/v2/{name}/blobs/{DUMMY_DIGEST}"))
        .await;
    assert_error(resp, 404, &["BLOB_UNKNOWN"]).await;

    let resp = srv
        .delete(&format!("/v2/mgmt/nosuchrepo/manifests/{DUMMY_DIGEST}"))
        .await;
    assert_error(resp, 404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]).await;
    let resp = srv.delete("/v2/mgmt/nosuchrepo/manifests/latest").await;
    assert_error(resp, 404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]).await;
    let resp = srv
        .delete(&format!("/v2/mgmt/nosuchrepo/blobs/{DUMMY_DIGEST}"))
        .await;
    assert_error(resp, 404, &["BLOB_UNKNOWN", "NAME_UNKNOWN"]).await;

    // Nothing else was affected.
    assert_eq!(
        srv.get(&format!("/v2/{name}/manifests/v1")).await.status(),
        StatusCode::OK
    );
    srv.stop().await;
}

/// "Deleting Manifests" removes the tags pointing to the manifest, never
/// one re-pointed elsewhere meanwhile: a `DELETE` by digest racing a `PUT`
/// that moves the tag to another manifest always leaves the tag on the new
/// manifest.
async fn delete_by_digest_racing_retag_keeps_retag(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "mgmt/race";
    let old = srv.push_image(name, "t", 1).await;
    let new = srv.push_image(name, "other", 1).await;
    for round in 0..10 {
        srv.push_manifest(name, "t", OCI_MANIFEST, &old.manifest)
            .await;
        let path = format!("/v2/{name}/manifests/{}", old.digest);
        let delete = srv.delete(&path);
        let retag = srv.put_manifest(name, "t", OCI_MANIFEST, &new.manifest);
        let (deleted, retagged) = tokio::join!(delete, retag);
        assert_eq!(deleted.status(), StatusCode::ACCEPTED, "round {round}");
        assert_eq!(retagged.status(), StatusCode::CREATED, "round {round}");
        let resp = srv.get(&format!("/v2/{name}/manifests/t")).await;
        assert_eq!(resp.status(), StatusCode::OK, "round {round}: re-tag lost");
        assert_eq!(
            header(&resp, "docker-content-digest").as_deref(),
            Some(new.digest.as_str()),
            "round {round}"
        );
    }
    assert_eq!(
        tags(&srv, name).await,
        Some(vec!["other".into(), "t".into()])
    );
    srv.stop().await;
}

backend_tests!(
    delete_tag,
    delete_tag_then_manifest,
    delete_blob,
    delete_blob_is_per_repository,
    delete_unknown_is_404,
);

backend_tests_and_azure!(
    delete_by_digest_racing_retag_keeps_retag,
    delete_manifest_by_digest,
);
