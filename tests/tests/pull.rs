//! Pull workflow (distribution-spec v1.1.1 "Pull": "Pulling manifests",
//! "Pulling blobs", "Checking if content exists in the registry") and
//! "Determining Support".

use oci_e2e::*;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, RANGE};

/// A digest that no test ever pushes.
const DUMMY_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000001";

/// Checks a successful manifest response: status 200, `Content-Type` equal
/// to the pushed media type, `Docker-Content-Digest` and `Content-Length`
/// matching the stored bytes.
fn check_manifest_headers(resp: &reqwest::Response, media_type: &str, digest: &str, len: usize) {
    assert_eq!(resp.status(), StatusCode::OK, "manifest fetch must be 200");
    assert_eq!(
        header(resp, "content-type").as_deref(),
        Some(media_type),
        "Content-Type must be the pushed manifest's media type, without parameters"
    );
    assert_eq!(
        header(resp, "docker-content-digest").as_deref(),
        Some(digest),
        "Docker-Content-Digest must be the manifest digest"
    );
    assert_eq!(
        header(resp, "content-length").as_deref(),
        Some(len.to_string().as_str()),
        "Content-Length must be the manifest size"
    );
}

/// "Determining Support": `GET /v2/` is 200; the legacy Docker header
/// `Docker-Distribution-API-Version: registry/2.0` is sent.
async fn api_version_check(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let resp = srv.get("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    srv.stop().await;
}

/// "Pulling manifests": GET by tag and by digest returns the exact bytes
/// with the stored media type, digest and length.
async fn get_manifest_by_tag_and_digest(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let img = srv.push_image("pull/manifest", "tagtest0", 2).await;

    for reference in ["tagtest0", img.digest.as_str()] {
        let resp = srv
            .req(
                reqwest::Method::GET,
                &format!("/v2/pull/manifest/manifests/{reference}"),
            )
            .header(ACCEPT, OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        check_manifest_headers(&resp, OCI_MANIFEST, &img.digest, img.manifest.len());
        let body = resp.bytes().await.unwrap();
        assert_eq!(
            body.as_ref(),
            img.manifest.as_slice(),
            "body must be the pushed bytes"
        );
        assert_eq!(sha256_digest(&body), img.digest);
    }
    srv.stop().await;
}

/// "Checking if content exists": HEAD on a manifest by tag and by digest
/// is 200 with `Docker-Content-Digest` and `Content-Length`, no body.
async fn head_manifest_by_tag_and_digest(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let img = srv.push_image("pull/head", "v1", 1).await;
    for reference in ["v1", img.digest.as_str()] {
        let resp = srv
            .req(
                reqwest::Method::HEAD,
                &format!("/v2/pull/head/manifests/{reference}"),
            )
            .header(ACCEPT, OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        check_manifest_headers(&resp, OCI_MANIFEST, &img.digest, img.manifest.len());
        assert!(resp.bytes().await.unwrap().is_empty(), "HEAD has no body");
    }
    srv.stop().await;
}

/// A manifest pushed by digest (no tag) is pullable by that digest
/// (conformance "manifest[1] path (digest)").
async fn manifest_pushed_by_digest_is_pullable(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "pull/bydigest";
    let config = config_json("by-digest");
    srv.push_blob(name, &config).await;
    let layer = random_blob(2048, 11);
    srv.push_blob(name, &layer).await;
    let manifest = image_manifest(
        &Descriptor::of(OCI_CONFIG, &config),
        &[Descriptor::of(OCI_LAYER_GZIP, &layer)],
        None,
        None,
        None,
    );
    let digest = sha256_digest(&manifest);
    srv.push_manifest(name, &digest, OCI_MANIFEST, &manifest)
        .await;

    let resp = srv.head(&format!("/v2/{name}/manifests/{digest}")).await;
    check_manifest_headers(&resp, OCI_MANIFEST, &digest, manifest.len());
    let resp = srv.get(&format!("/v2/{name}/manifests/{digest}")).await;
    check_manifest_headers(&resp, OCI_MANIFEST, &digest, manifest.len());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), manifest.as_slice());
    srv.stop().await;
}

/// "The `Content-Type` header SHOULD match what the client pushed": a
/// Docker schema 2 manifest, an OCI index and a Docker manifest list come
/// back with their own media types.
async fn content_type_is_the_pushed_media_type(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "pull/types";
    let config = config_json("docker");
    srv.push_blob(name, &config).await;
    let layer = random_blob(1024, 12);
    srv.push_blob(name, &layer).await;
    let docker = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": Descriptor::of(DOCKER_CONFIG, &config).to_json(),
        "layers": [Descriptor::of("application/vnd.docker.image.rootfs.diff.tar.gzip", &layer).to_json()],
    }))
    .unwrap();
    let docker_digest = srv
        .push_manifest(name, "docker", DOCKER_MANIFEST, &docker)
        .await;

    let index = image_index(
        &[Descriptor::of(DOCKER_MANIFEST, &docker)],
        None,
        None,
        None,
    );
    let index_digest = srv.push_manifest(name, "index", OCI_INDEX, &index).await;

    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [{
            "mediaType": DOCKER_MANIFEST,
            "digest": docker_digest,
            "size": docker.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }))
    .unwrap();
    let list_digest = srv
        .push_manifest(name, "list", DOCKER_MANIFEST_LIST, &list)
        .await;

    for (tag, mt, digest, body) in [
        ("docker", DOCKER_MANIFEST, &docker_digest, &docker),
        ("index", OCI_INDEX, &index_digest, &index),
        ("list", DOCKER_MANIFEST_LIST, &list_digest, &list),
    ] {
        for reference in [tag, digest.as_str()] {
            let resp = srv.get(&format!("/v2/{name}/manifests/{reference}")).await;
            check_manifest_headers(&resp, mt, digest, body.len());
            assert_eq!(resp.bytes().await.unwrap().as_ref(), body.as_slice());
        }
    }
    srv.stop().await;
}

/// A manifest without a `mediaType` field (allowed by image-spec; the
/// conformance "manifest with no layers" has none) is served with the
/// `Content-Type` it was pushed with.
async fn manifest_without_media_type_field(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "pull/nomediatype";
    let config = config_json("no-media-type");
    srv.push_blob(name, &config).await;
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "config": Descriptor::of(OCI_CONFIG, &config).to_json(),
        "layers": [],
    }))
    .unwrap();
    let digest = srv
        .push_manifest(name, "emptylayer", OCI_MANIFEST, &manifest)
        .await;
    let resp = srv.get(&format!("/v2/{name}/manifests/emptylayer")).await;
    check_manifest_headers(&resp, OCI_MANIFEST, &digest, manifest.len());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), manifest.as_slice());
    srv.stop().await;
}

/// "Pulling blobs" and "Checking if content exists": GET is 200 with the
/// exact bytes, `Docker-Content-Digest` matching the body, and
/// `Content-Length`; HEAD is 200 with the same headers and no body.
async fn get_and_head_blob(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let data = random_blob(300_000, 21);
    let digest = srv.push_blob("pull/blob", &data).await;
    let path = format!("/v2/pull/blob/blobs/{digest}");

    let resp = srv.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        header(&resp, "content-length").as_deref(),
        Some(data.len().to_string().as_str())
    );
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), data.len());
    assert!(
        body.as_ref() == data.as_slice(),
        "blob body differs from the pushed bytes"
    );
    assert_eq!(
        sha256_digest(&body),
        digest,
        "body must match Docker-Content-Digest"
    );

    let resp = srv.head(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        header(&resp, "content-length").as_deref(),
        Some(data.len().to_string().as_str()),
        "HEAD SHOULD carry the blob size in Content-Length"
    );
    assert!(resp.bytes().await.unwrap().is_empty());
    srv.stop().await;
}

/// "A registry SHOULD support the `Range` request header in accordance
/// with RFC 9110": single ranges are answered with 206 and
/// `Content-Range`; an unsatisfiable range with 416.
async fn range_requests_on_blobs(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let data = random_blob(10_000, 22);
    let digest = srv.push_blob("pull/range", &data).await;
    let path = format!("/v2/pull/range/blobs/{digest}");
    let len = data.len();

    let cases: [(String, usize, usize); 4] = [
        ("bytes=0-0".into(), 0, 0),
        ("bytes=100-1099".into(), 100, 1099),
        (format!("bytes={}-", len - 10), len - 10, len - 1),
        ("bytes=-25".into(), len - 25, len - 1),
    ];
    for (range, start, end) in cases {
        let resp = srv
            .req(reqwest::Method::GET, &path)
            .header(RANGE, &range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "Range {range}");
        assert_eq!(
            header(&resp, "content-range"),
            Some(format!("bytes {start}-{end}/{len}")),
            "Content-Range for {range}"
        );
        assert_eq!(
            header(&resp, "content-length"),
            Some((end - start + 1).to_string()),
            "Content-Length for {range}"
        );
        let body = resp.bytes().await.unwrap();
        assert!(body.as_ref() == &data[start..=end], "body for {range}");
    }

    // An end past the last byte is clamped (RFC 9110 §14.1.2).
    let resp = srv
        .req(reqwest::Method::GET, &path)
        .header(RANGE, format!("bytes={}-{}", len - 5, len + 100))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&resp, "content-range"),
        Some(format!("bytes {}-{}/{len}", len - 5, len - 1))
    );
    assert!(resp.bytes().await.unwrap().as_ref() == &data[len - 5..]);

    // A first byte at or past the end is unsatisfiable.
    for range in [
        format!("bytes={len}-"),
        format!("bytes={}-{}", len + 10, len + 20),
    ] {
        let resp = srv
            .req(reqwest::Method::GET, &path)
            .header(RANGE, &range)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "Range {range} must be 416"
        );
        if let Some(cr) = header(&resp, "content-range") {
            assert_eq!(cr, format!("bytes */{len}"), "416 Content-Range");
        }
    }
    srv.stop().await;
}

/// "If the manifest is not found in the repository, the response code
/// MUST be `404 Not Found`", with a `MANIFEST_UNKNOWN` error body on GET.
async fn unknown_manifest_is_404(backend: Backend) {
    let srv = TestServer::start(backend).await;
    srv.push_image("pull/unknown", "present", 1).await;

    let resp = srv.get("/v2/pull/unknown/manifests/absent").await;
    assert_error(resp, 404, &["MANIFEST_UNKNOWN"]).await;
    let resp = srv
        .get(&format!("/v2/pull/unknown/manifests/{DUMMY_DIGEST}"))
        .await;
    assert_error(resp, 404, &["MANIFEST_UNKNOWN"]).await;
    for reference in ["absent", DUMMY_DIGEST] {
        let resp = srv
            .head(&format!("/v2/pull/unknown/manifests/{reference}"))
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "HEAD {reference}");
    }
    // A repository that does not exist at all.
    let resp = srv.get("/v2/pull/nosuchrepo/manifests/latest").await;
    assert_error(resp, 404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]).await;
    srv.stop().await;
}

/// Conformance "HEAD request to nonexistent manifest should return 404"
/// and "GET nonexistent manifest should return 404" use the reference
/// `.INVALID_MANIFEST_NAME` (not even a valid tag) and require 404 for
/// both; "If the manifest is not found in the repository, the response
/// code MUST be `404 Not Found`".
async fn conformance_nonexistent_manifest_reference_is_404(backend: Backend) {
    let srv = TestServer::start(backend).await;
    srv.push_image("pull/conformance", "present", 1).await;
    let path = "/v2/pull/conformance/manifests/.INVALID_MANIFEST_NAME";
    let resp = srv.head(path).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "HEAD {path}");
    let resp = srv.get(path).await;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}: {body}");
    srv.stop().await;
}

/// "If the blob is not found in the repository, the response code MUST
/// be `404 Not Found`", with a `BLOB_UNKNOWN` error body on GET.
async fn unknown_blob_is_404(backend: Backend) {
    let srv = TestServer::start(backend).await;
    srv.push_blob("pull/noblob", b"something").await;
    let path = format!("/v2/pull/noblob/blobs/{DUMMY_DIGEST}");
    assert_error(srv.get(&path).await, 404, &["BLOB_UNKNOWN"]).await;
    assert_eq!(srv.head(&path).await.status(), StatusCode::NOT_FOUND);
    // Unknown repository.
    let path = format!("/v2/pull/nosuchrepo/blobs/{DUMMY_DIGEST}");
    assert_error(srv.get(&path).await, 404, &["BLOB_UNKNOWN", "NAME_UNKNOWN"]).await;
    srv.stop().await;
}

/// Blobs are addressed per repository (`/v2/<name>/blobs/<digest>`): a
/// blob pushed to one repository is not found in another that never
/// received or mounted it.
async fn blob_is_scoped_to_its_repository(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let data = random_blob(1000, 23);
    let digest = srv.push_blob("scope/a", &data).await;
    srv.push_blob("scope/b", b"other content").await;
    let resp = srv.get(&format!("/v2/scope/b/blobs/{digest}")).await;
    assert_error(resp, 404, &["BLOB_UNKNOWN"]).await;
    assert_eq!(
        srv.head(&format!("/v2/scope/b/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    srv.stop().await;
}

/// Conformance "Error codes": a GET with a malformed digest reference is
/// 400 (with a spec error code in a JSON body) or 404.
async fn malformed_digest_reference(backend: Backend) {
    let srv = TestServer::start(backend).await;
    srv.push_image("pull/malformed", "v1", 1).await;
    let resp = srv
        .req(
            reqwest::Method::GET,
            "/v2/pull/malformed/manifests/sha256:totallywrong",
        )
        .header(reqwest::header::CONTENT_TYPE, OCI_MANIFEST)
        .body("blablabla")
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        400 => {
            assert_error(resp, 400, &[]).await;
        }
        404 => {}
        s => panic!("GET manifests/sha256:totallywrong must be 400 or 404, got {s}"),
    }
    // Same for blobs: the path is not a digest.
    let resp = srv
        .get("/v2/pull/malformed/blobs/sha256:totallywrong")
        .await;
    match resp.status().as_u16() {
        400 => {
            assert_error(resp, 400, &["DIGEST_INVALID", "BLOB_UNKNOWN"]).await;
        }
        404 => {}
        s => panic!("GET blobs/sha256:totallywrong must be 400 or 404, got {s}"),
    }
    srv.stop().await;
}

/// The manifest body is served byte for byte even when its JSON is
/// pretty-printed with tabs and carries fields the registry does not
/// know ("The registry MUST store the manifest in the exact byte
/// representation provided by the client"); the conformance manifests
/// carry a config `data` field and an unspecified field.
async fn manifest_bytes_are_preserved(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "pull/exact";
    let config = config_json("exact");
    srv.push_blob(name, &config).await;
    let layer = random_blob(512, 24);
    srv.push_blob(name, &layer).await;
    let mut config_desc = Descriptor::of(OCI_CONFIG, &config).to_json();
    config_desc["data"] = serde_json::json!(base64(&config));
    config_desc["newUnspecifiedField"] = serde_json::json!("aGVsbG8gd29ybGQ=");
    let value = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [Descriptor::of(OCI_LAYER_GZIP, &layer).to_json()],
        "annotations": {"z.last": "1", "a.first": "2"},
    });
    // Tab indentation and a trailing newline: not what a re-serializer
    // would produce.
    let pretty = serde_json::to_string_pretty(&value)
        .unwrap()
        .replace("  ", "\t")
        + "\n";
    let digest = srv
        .push_manifest(name, "exact", OCI_MANIFEST, pretty.as_bytes())
        .await;
    assert_eq!(digest, sha256_digest(pretty.as_bytes()));
    let resp = srv.get(&format!("/v2/{name}/manifests/exact")).await;
    check_manifest_headers(&resp, OCI_MANIFEST, &digest, pretty.len());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), pretty.as_bytes());
    srv.stop().await;
}
/// RFC 9110 §14.2 edge cases of `Range` on a blob: "An origin server MUST
/// ignore a Range header field that contains a range unit it does not
/// understand" (200, whole blob); a valid multi-range request is either
/// ignored (200) or answered with `multipart/byteranges` (206); a
/// zero-length suffix is unsatisfiable (416); an invalid range
/// (last < first) may be ignored (200) or rejected (416).
async fn range_header_edge_cases(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let data = random_blob(4096, 25);
    let digest = srv.push_blob("pull/range2", &data).await;
    let path = format!("/v2/pull/range2/blobs/{digest}");
    let get = |range: &'static str| {
        srv.req(reqwest::Method::GET, &path)
            .header(RANGE, range)
            .send()
    };

    // Every case is checked; the failures are reported together.
    let mut problems: Vec<String> = Vec::new();

    let resp = get("items=0-5").await.unwrap();
    if resp.status() != StatusCode::OK {
        problems.push(format!(
            "Range: items=0-5 (unknown unit) must be ignored (200), got {}",
            resp.status()
        ));
    } else if resp.bytes().await.unwrap().as_ref() != data.as_slice() {
        problems.push("Range: items=0-5 must return the whole blob".into());
    }

    let resp = get("bytes=0-1,10-11").await.unwrap();
    match resp.status() {
        StatusCode::OK => {
            if resp.bytes().await.unwrap().as_ref() != data.as_slice() {
                problems.push("multi-range answered 200 without the whole blob".into());
            }
        }
        StatusCode::PARTIAL_CONTENT => {
            let ct = header(&resp, "content-type").unwrap_or_default();
            if !ct.starts_with("multipart/byteranges") {
                problems.push(format!(
                    "multi-range 206 must be multipart/byteranges, got {ct:?}"
                ));
            }
        }
        s => problems.push(format!(
            "Range: bytes=0-1,10-11: expected 200 or 206, got {s}"
        )),
    }

    let resp = get("bytes=-0").await.unwrap();
    if resp.status() != StatusCode::RANGE_NOT_SATISFIABLE {
        problems.push(format!(
            "Range: bytes=-0 must be 416, got {}",
            resp.status()
        ));
    }

    let resp = get("bytes=20-10").await.unwrap();
    match resp.status() {
        StatusCode::OK => {
            if resp.bytes().await.unwrap().as_ref() != data.as_slice() {
                problems.push("ignored invalid range without the whole blob".into());
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {}
        s => problems.push(format!("Range: bytes=20-10: expected 200 or 416, got {s}")),
    }
    assert!(
        problems.is_empty(),
        "Range edge cases:\n{}",
        problems.join("\n")
    );
    srv.stop().await;
}

/// `<name>` may contain components that look like API path segments
/// (`blobs`, `manifests`, `uploads`, `tags`, `list`, `referrers`); such
/// repositories work like any other.
async fn names_that_look_like_endpoints(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let names = [
        "proj/blobs",
        "proj/blobs/uploads",
        "proj/manifests/latest",
        "proj/tags/list",
        "proj/referrers",
        "v2/manifests",
    ];
    for name in names {
        let img = srv.push_image(name, "v1", 1).await;
        let resp = srv.get(&format!("/v2/{name}/manifests/v1")).await;
        assert_eq!(resp.status(), StatusCode::OK, "manifest of {name}");
        assert_eq!(
            resp.bytes().await.unwrap().as_ref(),
            img.manifest.as_slice()
        );
        let resp = srv
            .get(&format!("/v2/{name}/blobs/{}", img.layer_descs[0].digest))
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "blob of {name}");
        let v: serde_json::Value = srv
            .get(&format!("/v2/{name}/tags/list"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["name"], serde_json::json!(name));
        assert_eq!(v["tags"], serde_json::json!(["v1"]));
        let resp = srv
            .get(&format!("/v2/{name}/referrers/{}", img.digest))
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "referrers of {name}");
    }
    let v: serde_json::Value = srv.get("/v2/_catalog").await.json().await.unwrap();
    let mut want: Vec<&str> = names.to_vec();
    want.sort();
    assert_eq!(v["repositories"], serde_json::json!(want));
    srv.stop().await;
}

backend_tests!(
    api_version_check,
    head_manifest_by_tag_and_digest,
    manifest_pushed_by_digest_is_pullable,
    content_type_is_the_pushed_media_type,
    manifest_without_media_type_field,
    get_and_head_blob,
    unknown_manifest_is_404,
    conformance_nonexistent_manifest_reference_is_404,
    unknown_blob_is_404,
    blob_is_scoped_to_its_repository,
    malformed_digest_reference,
    manifest_bytes_are_preserved,
    range_header_edge_cases,
    names_that_look_like_endpoints,
);

backend_tests_and_azure!(get_manifest_by_tag_and_digest, range_requests_on_blobs);
