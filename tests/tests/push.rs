//! Push workflow (distribution-spec v1.1.1 "Push": "Pushing blobs",
//! "Pushing a blob monolithically", "Pushing a blob in chunks", "Mounting a
//! blob from another repository", "Pushing Manifests"), plus the error
//! cases of "Error Codes".

use oci_e2e::*;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

/// A digest that no test ever pushes.
const DUMMY_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000001";

/// An upload id no server has handed out.
const UNKNOWN_UPLOAD: &str = "5f0c7a8e-3b1d-4c2a-9e6f-0123456789ab";

/// Asserts the blob at `/v2/<name>/blobs/<digest>` is `data`.
async fn assert_blob(srv: &TestServer, name: &str, digest: &str, data: &[u8]) {
    let resp = srv.get(&format!("/v2/{name}/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET blob {digest} in {name}");
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), data.len(), "size of blob {digest}");
    assert!(body.as_ref() == data, "content of blob {digest}");
}

/// Asserts a closing PUT / single POST / mount response: `201 Created`,
/// `Location` a pullable blob URL serving `data`, and
/// `Docker-Content-Digest` (if present) the blob's digest.
async fn assert_blob_created(srv: &TestServer, resp: reqwest::Response, digest: &str, data: &[u8]) {
    let status = resp.status();
    if status != StatusCode::CREATED {
        let text = resp.text().await.unwrap_or_default();
        panic!("expected 201 Created for blob {digest}, got {status}: {text}");
    }
    if let Some(d) = header(&resp, "docker-content-digest") {
        assert_eq!(d, digest, "Docker-Content-Digest");
    }
    let loc = location(&resp);
    let pulled = srv.get(&loc).await;
    assert_eq!(
        pulled.status(),
        StatusCode::OK,
        "Location {loc} must be a pullable blob URL"
    );
    assert!(
        pulled.bytes().await.unwrap().as_ref() == data,
        "blob at {loc}"
    );
}

/// Sends one chunk: `PATCH <loc>` with `Content-Range: start-end`.
async fn patch_chunk(srv: &TestServer, loc: &str, start: usize, chunk: &[u8]) -> reqwest::Response {
    srv.req(Method::PATCH, loc)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(
            "content-range",
            format!("{}-{}", start, start + chunk.len() - 1),
        )
        .header(CONTENT_LENGTH, chunk.len())
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap()
}

/// Asserts a successful chunk response ("Each successful chunk upload MUST
/// have a `202 Accepted` response code, and MUST have the following headers:
/// Location, Range: 0-<end-of-range>") and returns the new location.
fn assert_chunk_accepted(resp: &reqwest::Response, end: usize, uuid: Option<&str>) -> String {
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "chunk ending at {end} must be 202"
    );
    assert_eq!(
        header(resp, "range"),
        Some(format!("0-{end}")),
        "Range after chunk"
    );
    let loc = location(resp);
    if let Some(uuid) = uuid {
        assert_eq!(
            header(resp, "docker-upload-uuid").as_deref(),
            Some(uuid),
            "Docker-Upload-UUID must stay the session's id"
        );
        assert!(
            loc.contains(uuid),
            "Location {loc} must contain the session id {uuid}"
        );
    }
    loc
}

/// Asserts `GET <loc>` on an upload session is `204 No Content` with
/// `Location` and `Range: 0-<end>` (end-13); returns the location.
async fn assert_upload_status(srv: &TestServer, loc: &str, end: usize) -> String {
    let resp = srv.get(loc).await;
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "upload status must be 204"
    );
    assert_eq!(
        header(&resp, "range"),
        Some(format!("0-{end}")),
        "Range of upload status"
    );
    location(&resp)
}

/// Opens a chunked session (`POST` with `Content-Length: 0`); returns the
/// location, the upload UUID if sent, and the chunk size to use (honouring
/// `OCI-Chunk-Min-Length`).
async fn start_chunked(
    srv: &TestServer,
    name: &str,
    wanted_chunk: usize,
) -> (String, Option<String>, usize) {
    let resp = srv
        .req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "POST uploads must be 202"
    );
    let loc = location(&resp);
    let uuid = header(&resp, "docker-upload-uuid");
    if let Some(u) = &uuid {
        assert!(
            loc.contains(u.as_str()),
            "Location {loc} must contain the session id {u}"
        );
    }
    let min = header(&resp, "oci-chunk-min-length")
        .map(|v| {
            v.parse::<usize>()
                .expect("OCI-Chunk-Min-Length must be an integer")
        })
        .unwrap_or(0);
    (loc, uuid, wanted_chunk.max(min))
}

/// The first substring of `s` shaped like a UUID (8-4-4-4-12 hex digits).
fn find_uuid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(35)).find_map(|i| {
        let cand = &s[i..i + 36];
        let ok = cand.bytes().enumerate().all(|(j, c)| match j {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
        ok.then(|| cand.to_owned())
    })
}

/// A valid manifest whose config and one layer are pushed to `name`.
async fn pushed_manifest(srv: &TestServer, name: &str, label: &str) -> Vec<u8> {
    let config = config_json(label);
    srv.push_blob(name, &config).await;
    let layer = random_blob(1500, label.len() as u64 + 99);
    srv.push_blob(name, &layer).await;
    image_manifest(
        &Descriptor::of(OCI_CONFIG, &config),
        &[Descriptor::of(OCI_LAYER_GZIP, &layer)],
        None,
        None,
        Some(&[("label", label)]),
    )
}

/// Asserts `name:tag` does not exist (404 on GET).
async fn assert_no_manifest(srv: &TestServer, name: &str, reference: &str) {
    let resp = srv.get(&format!("/v2/{name}/manifests/{reference}")).await;
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "{name}:{reference} must not exist after a rejected push"
    );
}

/// A manifest of at least `size` bytes: a valid image manifest padded with
/// an annotation.
fn padded_manifest(config: &Descriptor, size: usize) -> Vec<u8> {
    let base = image_manifest(config, &[], None, None, Some(&[("pad", "")]));
    let pad = "x".repeat(size.saturating_sub(base.len()));
    image_manifest(config, &[], None, None, Some(&[("pad", pad.as_str())]))
}

/// "POST then PUT": POST is 202 with a `Location` containing the session
/// id; the PUT with `?digest=` and the whole body is 201 with a pullable
/// `Location` and `Docker-Content-Digest`.
async fn monolithic_post_then_put(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/monolithic";
    let data = random_blob(200_000, 1);
    let digest = sha256_digest(&data);

    let resp = srv
        .req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = location(&resp);
    assert!(
        location_path(&loc).starts_with(&format!("/v2/{name}/blobs/uploads/")),
        "upload Location {loc} should be under /v2/{name}/blobs/uploads/"
    );
    // "The `<location>` MUST contain a UUID representing a unique session
    // ID for the upload to follow."
    let uuid = find_uuid(&loc).unwrap_or_else(|| panic!("no UUID in upload Location {loc}"));
    if let Some(id) = header(&resp, "docker-upload-uuid") {
        assert_eq!(
            id, uuid,
            "Docker-Upload-UUID must be the session id in Location"
        );
    }

    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &digest))
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, data.len())
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&resp, "location").map(|l| location_path(&l)),
        Some(format!("/v2/{name}/blobs/{digest}")),
        "blob Location"
    );
    assert_blob_created(&srv, resp, &digest, &data).await;
    assert_blob(&srv, name, &digest, &data).await;
    srv.stop().await;
}

/// Two sessions opened on the same repository get distinct locations
/// ("The `<location>` MUST contain a UUID representing a unique session
/// ID").
async fn upload_sessions_are_unique(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let a = srv.start_upload("push/unique").await;
    let b = srv.start_upload("push/unique").await;
    assert_ne!(a, b, "two upload sessions share a location");
    srv.stop().await;
}

/// "Single POST": `POST /v2/<name>/blobs/uploads/?digest=` with the body
/// creates the blob in one request (201 + pullable `Location`).
async fn single_post_with_digest(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/single";
    let data = random_blob(50_000, 2);
    let digest = sha256_digest(&data);
    let resp = srv
        .req(
            Method::POST,
            &with_query(&format!("/v2/{name}/blobs/uploads/"), "digest", &digest),
        )
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, data.len())
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_blob_created(&srv, resp, &digest, &data).await;
    assert_blob(&srv, name, &digest, &data).await;
    srv.stop().await;
}

/// Conformance "Blob Upload Streamed": POST, one PATCH with the whole
/// blob and no `Content-Range`, then PUT with `?digest=` and no body.
async fn streamed_upload(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/streamed";
    let data = random_blob(70_000, 3);
    let digest = sha256_digest(&data);
    let loc = srv.start_upload(name).await;
    let resp = srv
        .req(Method::PATCH, &loc)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let loc = assert_chunk_accepted(&resp, data.len() - 1, None);
    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &digest))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_blob_created(&srv, resp, &digest, &data).await;
    srv.stop().await;
}

/// "Pushing a blob in chunks": several PATCHes with `Content-Range` and
/// `Content-Length`, each 202 with `Range: 0-<end>`, `Location` and the
/// same `Docker-Upload-UUID`; `GET <location>` is 204 with the same
/// `Range`; the closing PUT without body is 201; the session is gone
/// afterwards.
async fn chunked_upload(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/chunked";
    let (mut loc, uuid, chunk) = start_chunked(&srv, name, 64 * 1024).await;
    let data = random_blob(chunk * 3 + 123, 4);
    let digest = sha256_digest(&data);

    let mut start = 0;
    for piece in data.chunks(chunk) {
        let end = start + piece.len() - 1;
        let resp = patch_chunk(&srv, &loc, start, piece).await;
        loc = assert_chunk_accepted(&resp, end, uuid.as_deref());
        loc = assert_upload_status(&srv, &loc, end).await;
        start = end + 1;
    }
    assert_eq!(start, data.len());

    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &digest))
        .header(CONTENT_LENGTH, "0")
        .header(CONTENT_TYPE, "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&resp, "location").map(|l| location_path(&l)),
        Some(format!("/v2/{name}/blobs/{digest}"))
    );
    assert_blob_created(&srv, resp, &digest, &data).await;

    // A closed session is no longer an active upload.
    assert_error(srv.get(&loc).await, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    srv.stop().await;
}

/// Conformance "Blob Upload Chunked": re-sending the first chunk after it
/// was accepted is 416; `GET` on the stale location from the POST is 204
/// with `Range` of the first chunk and a `Location` the next chunk can
/// use.
async fn chunk_retry_and_stale_location(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/retry";
    let (post_loc, _uuid, chunk) = start_chunked(&srv, name, 21).await;
    let data = random_blob(chunk * 2, 5);
    let digest = sha256_digest(&data);
    let (first, second) = data.split_at(chunk);

    let resp = patch_chunk(&srv, &post_loc, 0, first).await;
    assert_chunk_accepted(&resp, chunk - 1, None);

    let resp = patch_chunk(&srv, &post_loc, 0, first).await;
    assert_error(resp, 416, &[]).await;

    let loc = assert_upload_status(&srv, &post_loc, chunk - 1).await;
    let resp = patch_chunk(&srv, &loc, chunk, second).await;
    let loc = assert_chunk_accepted(&resp, data.len() - 1, None);
    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &digest))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_blob_created(&srv, resp, &digest, &data).await;
    srv.stop().await;
}

/// "If a chunk is uploaded out of order, the registry MUST respond with a
/// `416 Requested Range Not Satisfiable` code": a first chunk not
/// starting at 0, a gap and an overlap are all 416, and none of them
/// corrupts the session.
async fn out_of_order_chunk_is_416(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/ooo";
    let (loc, _uuid, chunk) = start_chunked(&srv, name, 1000).await;
    let data = random_blob(chunk * 3, 6);
    let digest = sha256_digest(&data);

    // Second chunk first.
    let resp = patch_chunk(&srv, &loc, chunk, &data[chunk..2 * chunk]).await;
    assert_error(resp, 416, &[]).await;

    let resp = patch_chunk(&srv, &loc, 0, &data[..chunk]).await;
    let loc = assert_chunk_accepted(&resp, chunk - 1, None);

    // A gap.
    let resp = patch_chunk(&srv, &loc, 2 * chunk, &data[2 * chunk..]).await;
    assert_error(resp, 416, &[]).await;
    // An overlap.
    let resp = patch_chunk(&srv, &loc, chunk - 10, &data[chunk - 10..2 * chunk]).await;
    assert_error(resp, 416, &[]).await;

    // The session still holds exactly the first chunk.
    let loc = assert_upload_status(&srv, &loc, chunk - 1).await;
    let resp = patch_chunk(&srv, &loc, chunk, &data[chunk..]).await;
    let loc = assert_chunk_accepted(&resp, data.len() - 1, None);
    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &digest))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_blob_created(&srv, resp, &digest, &data).await;
    srv.stop().await;
}

/// "The final chunk MAY be uploaded using a `PATCH` request or it MAY be
/// uploaded in the closing `PUT` request."
async fn final_chunk_in_put(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/finalput";
    let (loc, _uuid, chunk) = start_chunked(&srv, name, 4096).await;
    let data = random_blob(chunk + 777, 7);
    let digest = sha256_digest(&data);
    let resp = patch_chunk(&srv, &loc, 0, &data[..chunk]).await;
    let loc = assert_chunk_accepted(&resp, chunk - 1, None);
    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &digest))
        .header(CONTENT_TYPE, "application/octet-stream")
        .header("content-range", format!("{}-{}", chunk, data.len() - 1))
        .header(CONTENT_LENGTH, data.len() - chunk)
        .body(data[chunk..].to_vec())
        .send()
        .await
        .unwrap();
    assert_blob_created(&srv, resp, &digest, &data).await;

    // A final chunk in the PUT that leaves a gap is out of order: 416, and
    // no blob is created.
    let (loc, _uuid, _) = start_chunked(&srv, name, chunk).await;
    let resp = patch_chunk(&srv, &loc, 0, &data[..chunk]).await;
    let loc = assert_chunk_accepted(&resp, chunk - 1, None);
    let other = random_blob(chunk + 777, 8);
    let other_digest = sha256_digest(&other);
    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &other_digest))
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(
            "content-range",
            format!("{}-{}", chunk + 10, other.len() + 9),
        )
        .header(CONTENT_LENGTH, other.len() - chunk)
        .body(other[chunk..].to_vec())
        .send()
        .await
        .unwrap();
    assert_error(resp, 416, &[]).await;
    let resp = srv.head(&format!("/v2/{name}/blobs/{other_digest}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    srv.stop().await;
}

/// A chunk whose `Content-Range` does not match its `Content-Length` ("The
/// `<length>` is the content-length, in bytes, of the current chunk") is
/// refused (400 `SIZE_INVALID`/`BLOB_UPLOAD_INVALID`, or 416) and stores
/// nothing: the next correct chunk still starts at 0.
async fn chunk_length_mismatch(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/lengthmismatch";
    let (loc, _uuid, chunk) = start_chunked(&srv, name, 1000).await;
    let data = random_blob(chunk, 9);
    let digest = sha256_digest(&data);
    let resp = srv
        .req(Method::PATCH, &loc)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header("content-range", format!("0-{}", 2 * chunk - 1))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        400 => {
            assert_error(resp, 400, &["SIZE_INVALID", "BLOB_UPLOAD_INVALID"]).await;
        }
        416 => {
            assert_error(resp, 416, &[]).await;
        }
        s => panic!("PATCH with Content-Range longer than the body: expected 400 or 416, got {s}"),
    }
    let resp = patch_chunk(&srv, &loc, 0, &data).await;
    let loc = assert_chunk_accepted(&resp, chunk - 1, None);
    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &digest))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_blob_created(&srv, resp, &digest, &data).await;
    srv.stop().await;
}

/// Docker-style streaming: several PATCHes without `Content-Range` append
/// in order; `Range` grows with each; the closing PUT publishes the whole.
async fn streamed_upload_in_several_patches(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/streamed2";
    let data = random_blob(90_000, 10);
    let digest = sha256_digest(&data);
    let mut loc = srv.start_upload(name).await;
    let mut end = 0;
    for piece in data.chunks(30_000) {
        let resp = srv
            .req(Method::PATCH, &loc)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(piece.to_vec())
            .send()
            .await
            .unwrap();
        end += piece.len();
        loc = assert_chunk_accepted(&resp, end - 1, None);
    }
    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &digest))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_blob_created(&srv, resp, &digest, &data).await;
    srv.stop().await;
}

/// Two clients closing the same complete session at once: at least one
/// gets 201, the other 201 or 404 `BLOB_UPLOAD_UNKNOWN` (the session is
/// gone), never a server error; the blob is intact.
async fn concurrent_close_of_one_session(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "race/close";
    for round in 0..8u64 {
        let (loc, _, chunk) = start_chunked(&srv, name, 128 * 1024).await;
        let data = random_blob(chunk, 600 + round);
        let digest = sha256_digest(&data);
        let resp = patch_chunk(&srv, &loc, 0, &data).await;
        let loc = assert_chunk_accepted(&resp, chunk - 1, None);
        let close = || {
            srv.req(Method::PUT, &with_query(&loc, "digest", &digest))
                .header(CONTENT_LENGTH, "0")
                .send()
        };
        let (r1, r2) = futures::join!(close(), close());
        let (r1, r2) = (r1.unwrap(), r2.unwrap());
        let mut codes = [r1.status().as_u16(), r2.status().as_u16()];
        let bodies = [r1.text().await.unwrap(), r2.text().await.unwrap()];
        codes.sort();
        assert!(
            codes == [201, 201] || codes == [201, 404],
            "round {round}: concurrent closes answered {codes:?}, bodies {bodies:?}"
        );
        assert_blob(&srv, name, &digest, &data).await;
    }
    srv.stop().await;
}

/// A zero-byte blob (digest of the empty string) can be pushed and
/// pulled.
async fn empty_blob(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/empty";
    let digest = sha256_digest(b"");
    let loc = srv.start_upload(name).await;
    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &digest))
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_blob_created(&srv, resp, &digest, b"").await;
    let resp = srv.head(&format!("/v2/{name}/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    srv.stop().await;
}

/// "provided digest did not match uploaded content" (`DIGEST_INVALID`):
/// on a monolithic PUT, a single POST and a chunked close. Nothing is
/// stored under either digest.
async fn digest_mismatch_is_rejected(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/mismatch";
    let data = random_blob(5000, 8);
    let real = sha256_digest(&data);
    let claimed = sha256_digest(b"something else entirely");

    let loc = srv.start_upload(name).await;
    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &claimed))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, &["DIGEST_INVALID"]).await;

    let resp = srv
        .req(
            Method::POST,
            &with_query(&format!("/v2/{name}/blobs/uploads/"), "digest", &claimed),
        )
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, &["DIGEST_INVALID"]).await;

    let (loc, _, _) = start_chunked(&srv, name, 1).await;
    let resp = patch_chunk(&srv, &loc, 0, &data).await;
    let loc = assert_chunk_accepted(&resp, data.len() - 1, None);
    let resp = srv
        .req(Method::PUT, &with_query(&loc, "digest", &claimed))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, &["DIGEST_INVALID"]).await;

    for d in [&claimed, &real] {
        let resp = srv.head(&format!("/v2/{name}/blobs/{d}")).await;
        assert_eq!(
            resp.status(),
            StatusCode::NOT_FOUND,
            "{d} must not be stored"
        );
    }
    srv.stop().await;
}

/// A `digest` parameter that is not a digest is `400 DIGEST_INVALID`; a
/// closing PUT without `digest` is 400 too.
async fn invalid_digest_parameter(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/baddigest";
    let data = b"some bytes".to_vec();
    for bad in [
        "sha256:nothex",
        "notadigest",
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
        "sha256:0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
        "",
    ] {
        let loc = srv.start_upload(name).await;
        let resp = srv
            .req(Method::PUT, &with_query(&loc, "digest", bad))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, &["DIGEST_INVALID"]).await;
    }
    let loc = srv.start_upload(name).await;
    let resp = srv
        .req(Method::PUT, &loc)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, &["DIGEST_INVALID", "BLOB_UPLOAD_INVALID"]).await;
    srv.stop().await;
}

/// An upload id the registry never issued (or issued for another
/// repository) is `404 BLOB_UPLOAD_UNKNOWN` for GET, PATCH, PUT and
/// DELETE.
async fn unknown_upload_is_404(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/unknownupload";
    srv.push_blob(name, b"make the repository exist").await;
    let digest = sha256_digest(b"x");
    let path = format!("/v2/{name}/blobs/uploads/{UNKNOWN_UPLOAD}");
    assert_error(srv.get(&path).await, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    assert_error(
        patch_chunk(&srv, &path, 0, b"x").await,
        404,
        &["BLOB_UPLOAD_UNKNOWN"],
    )
    .await;
    let resp = srv
        .req(Method::PUT, &with_query(&path, "digest", &digest))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(resp, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    assert_error(srv.delete(&path).await, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;

    // A live session of another repository is unknown here.
    let other = srv.start_upload("push/otherrepo").await;
    let id = location_path(&other)
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let foreign = format!("/v2/{name}/blobs/uploads/{id}");
    assert_error(srv.get(&foreign).await, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    let resp = srv
        .req(Method::PUT, &with_query(&foreign, "digest", &digest))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(resp, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    // ... and that session is untouched.
    let resp = srv.get(&other).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    srv.stop().await;
}

/// Cancelling an upload (`DELETE <location>`) is 204; afterwards the
/// session is unknown (404) and cannot be completed.
async fn cancel_upload(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/cancel";
    let (loc, _, chunk) = start_chunked(&srv, name, 100).await;
    let data = random_blob(chunk, 9);
    let resp = patch_chunk(&srv, &loc, 0, &data).await;
    let loc = assert_chunk_accepted(&resp, chunk - 1, None);
    let resp = srv.delete(&loc).await;
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "DELETE upload must be 204"
    );
    assert_error(srv.get(&loc).await, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    let resp = srv
        .req(
            Method::PUT,
            &with_query(&loc, "digest", &sha256_digest(&data)),
        )
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_error(resp, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    assert_error(srv.delete(&loc).await, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    let resp = srv
        .head(&format!("/v2/{name}/blobs/{}", sha256_digest(&data)))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    srv.stop().await;
}

/// "Mounting a blob from another repository": `?mount=&from=` is 201 with
/// `Location: /v2/<name>/blobs/<digest>` and `Docker-Content-Digest`; the
/// blob is then pullable from the target repository.
async fn cross_repository_mount(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let data = random_blob(30_000, 10);
    let digest = srv.push_blob("mount/source", &data).await;
    let resp = srv
        .req(
            Method::POST,
            &format!(
                "/v2/mount/target/blobs/uploads/?mount={}&from={}",
                encode_query_value(&digest),
                encode_query_value("mount/source")
            ),
        )
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "mount of an existing blob"
    );
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        location_path(&location(&resp)),
        format!("/v2/mount/target/blobs/{digest}")
    );
    assert_blob_created(&srv, resp, &digest, &data).await;
    assert_blob(&srv, "mount/target", &digest, &data).await;
    assert_blob(&srv, "mount/source", &digest, &data).await;
    srv.stop().await;
}

/// "The registry MAY treat the `from` parameter as optional, and it MAY
/// cross-mount the blob if it can be found": this registry does (201).
async fn automatic_mount_without_from(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let data = random_blob(3000, 11);
    let digest = srv.push_blob("auto/source", &data).await;
    let resp = srv
        .req(
            Method::POST,
            &format!(
                "/v2/auto/target/blobs/uploads/?mount={}",
                encode_query_value(&digest)
            ),
        )
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "automatic mount");
    assert_eq!(
        location_path(&location(&resp)),
        format!("/v2/auto/target/blobs/{digest}")
    );
    assert_blob_created(&srv, resp, &digest, &data).await;
    srv.stop().await;
}

/// "if a registry ... is unable to mount the requested blob, it SHOULD
/// return a `202`": mounting an unknown blob (with or without `from`)
/// opens an ordinary upload session under the target repository.
async fn mount_of_unknown_blob_falls_back_to_upload(backend: Backend) {
    let srv = TestServer::start(backend).await;
    srv.push_blob("fallback/source", b"unrelated").await;
    for query in [
        format!(
            "mount={}&from=fallback/source",
            encode_query_value(DUMMY_DIGEST)
        ),
        format!("mount={}", encode_query_value(DUMMY_DIGEST)),
        format!(
            "mount={}&from=fallback/nosuchrepo",
            encode_query_value(DUMMY_DIGEST)
        ),
    ] {
        let resp = srv
            .req(
                Method::POST,
                &format!("/v2/fallback/target/blobs/uploads/?{query}"),
            )
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "mount of unknown blob ({query})"
        );
        let loc = location(&resp);
        assert!(
            location_path(&loc).starts_with("/v2/fallback/target/blobs/uploads/"),
            "fallback Location {loc}"
        );
        // The session works.
        let data = random_blob(100, query.len() as u64);
        let digest = sha256_digest(&data);
        let resp = srv
            .req(Method::PUT, &with_query(&loc, "digest", &digest))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_blob_created(&srv, resp, &digest, &data).await;
    }
    srv.stop().await;
}

/// "Pushing Manifests": PUT by tag is 201 with `Location` (a pullable
/// manifest URL) and `Docker-Content-Digest` equal to the body's digest;
/// pushing the same manifest under several tags works (conformance pushes
/// test0..test3).
async fn put_manifest_by_tag(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/manifest";
    let manifest = pushed_manifest(&srv, name, "by-tag").await;
    let digest = sha256_digest(&manifest);
    for i in 0..4 {
        let tag = format!("test{i}");
        let resp = srv.put_manifest(name, &tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "PUT manifest {tag}");
        assert_eq!(
            header(&resp, "docker-content-digest").as_deref(),
            Some(digest.as_str())
        );
        let loc = location(&resp);
        let pulled = srv.get(&loc).await;
        assert_eq!(
            pulled.status(),
            StatusCode::OK,
            "manifest Location {loc} must be pullable"
        );
        assert_eq!(pulled.bytes().await.unwrap().as_ref(), manifest.as_slice());
        let pulled = srv.get(&format!("/v2/{name}/manifests/{tag}")).await;
        assert_eq!(pulled.bytes().await.unwrap().as_ref(), manifest.as_slice());
    }
    srv.stop().await;
}

/// PUT by digest is 201 with `Location` and `Docker-Content-Digest`.
async fn put_manifest_by_digest(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/bydigest";
    let manifest = pushed_manifest(&srv, name, "by-digest").await;
    let digest = sha256_digest(&manifest);
    let resp = srv
        .put_manifest(name, &digest, OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let loc = location(&resp);
    let pulled = srv.get(&loc).await;
    assert_eq!(
        pulled.status(),
        StatusCode::OK,
        "manifest Location {loc} must be pullable"
    );
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), manifest.as_slice());
    srv.stop().await;
}

/// Conformance "Registry should accept a manifest upload with no layers".
async fn manifest_with_no_layers(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/nolayers";
    let config = config_json("no-layers");
    srv.push_blob(name, &config).await;
    let manifest = image_manifest(&Descriptor::of(OCI_CONFIG, &config), &[], None, None, None);
    let resp = srv
        .put_manifest(name, "emptylayer", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(!location(&resp).is_empty());
    srv.stop().await;
}

/// "When a manifest is rejected for this reason [a descriptor references
/// a blob that does not exist], it MUST result in one or more
/// `MANIFEST_BLOB_UNKNOWN` errors": a missing layer and a missing config.
async fn manifest_with_missing_blob(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/missingblob";
    let config = config_json("missing");
    srv.push_blob(name, &config).await;
    let missing = random_blob(100, 12);
    let m = image_manifest(
        &Descriptor::of(OCI_CONFIG, &config),
        &[Descriptor::of(OCI_LAYER_GZIP, &missing)],
        None,
        None,
        None,
    );
    let resp = srv
        .put_manifest(name, "missinglayer", OCI_MANIFEST, &m)
        .await;
    assert_error(resp, 400, &["MANIFEST_BLOB_UNKNOWN"]).await;
    assert_no_manifest(&srv, name, "missinglayer").await;

    let layer = random_blob(100, 13);
    srv.push_blob(name, &layer).await;
    let m = image_manifest(
        &Descriptor::of(OCI_CONFIG, b"{\"not\":\"pushed\"}"),
        &[Descriptor::of(OCI_LAYER_GZIP, &layer)],
        None,
        None,
        None,
    );
    let resp = srv
        .put_manifest(name, "missingconfig", OCI_MANIFEST, &m)
        .await;
    assert_error(resp, 400, &["MANIFEST_BLOB_UNKNOWN"]).await;
    assert_no_manifest(&srv, name, "missingconfig").await;
    let resp = srv
        .put_manifest(name, &sha256_digest(&m), OCI_MANIFEST, &m)
        .await;
    assert_error(resp, 400, &["MANIFEST_BLOB_UNKNOWN"]).await;
    srv.stop().await;
}

/// A blob that exists only in another repository does not satisfy a
/// manifest's reference (the references are "in a repository").
async fn manifest_blob_from_other_repository(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let config = config_json("elsewhere");
    srv.push_blob("push/elsewhere", &config).await;
    let m = image_manifest(&Descriptor::of(OCI_CONFIG, &config), &[], None, None, None);
    let resp = srv.put_manifest("push/here", "v1", OCI_MANIFEST, &m).await;
    assert_error(resp, 400, &["MANIFEST_BLOB_UNKNOWN"]).await;
    srv.stop().await;
}

/// A PUT by digest whose body has another digest is `400
/// DIGEST_INVALID`, and stores nothing.
async fn manifest_digest_mismatch(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/manifestmismatch";
    let manifest = pushed_manifest(&srv, name, "mismatch").await;
    let wrong = sha256_digest(b"not the manifest");
    let resp = srv
        .put_manifest(name, &wrong, OCI_MANIFEST, &manifest)
        .await;
    assert_error(resp, 400, &["DIGEST_INVALID"]).await;
    assert_no_manifest(&srv, name, &wrong).await;
    assert_no_manifest(&srv, name, &sha256_digest(&manifest)).await;
    srv.stop().await;
}

/// Bodies that are not a manifest are `400 MANIFEST_INVALID`.
async fn invalid_manifest_is_rejected(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/invalid";
    srv.push_image(name, "exists", 1).await;
    let config = config_json("invalid");
    srv.push_blob(name, &config).await;
    let cfg = Descriptor::of(OCI_CONFIG, &config).to_json();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"blablabla".to_vec()),
        (
            "truncated json",
            b"{\"schemaVersion\": 2, \"config\": ".to_vec(),
        ),
        ("json array", b"[]".to_vec()),
        (
            "schemaVersion 3",
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 3, "mediaType": OCI_MANIFEST, "config": cfg, "layers": []
            }))
            .unwrap(),
        ),
        (
            "config without digest",
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "size": 2}, "layers": []
            }))
            .unwrap(),
        ),
        (
            "mediaType differs from Content-Type",
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []
            }))
            .unwrap(),
        ),
    ];
    for (what, body) in cases {
        eprintln!("case: {what}");
        let resp = srv.put_manifest(name, "bad", OCI_MANIFEST, &body).await;
        assert_error(resp, 400, &["MANIFEST_INVALID"]).await;
    }
    assert_no_manifest(&srv, name, "bad").await;
    srv.stop().await;
}

/// A Docker schema 1 manifest (legacy, not part of OCI) is refused with a
/// 4xx and a spec error code (`MANIFEST_INVALID` or `UNSUPPORTED`).
async fn schema1_manifest_is_rejected(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/schema1";
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 1,
        "name": name,
        "tag": "old",
        "architecture": "amd64",
        "fsLayers": [],
        "history": [],
        "signatures": [],
    }))
    .unwrap();
    for mt in [
        DOCKER_SCHEMA1_SIGNED,
        "application/vnd.docker.distribution.manifest.v1+json",
    ] {
        let resp = srv.put_manifest(name, "old", mt, &body).await;
        let status = resp.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "schema1 ({mt}) must be refused, got {status}"
        );
        assert_error(resp, status, &["MANIFEST_INVALID", "UNSUPPORTED"]).await;
    }
    assert_no_manifest(&srv, name, "old").await;
    srv.stop().await;
}

/// An index referencing a manifest that is not in the repository is
/// `400 MANIFEST_BLOB_UNKNOWN`; the same index is accepted once the
/// child exists.
async fn index_with_missing_child(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/index";
    let child = pushed_manifest(&srv, name, "child").await;
    let child_desc = Descriptor::of(OCI_MANIFEST, &child);
    let index = image_index(std::slice::from_ref(&child_desc), None, None, None);
    let resp = srv.put_manifest(name, "multi", OCI_INDEX, &index).await;
    assert_error(resp, 400, &["MANIFEST_BLOB_UNKNOWN"]).await;
    assert_no_manifest(&srv, name, "multi").await;

    srv.push_manifest(name, &child_desc.digest, OCI_MANIFEST, &child)
        .await;
    let digest = srv.push_manifest(name, "multi", OCI_INDEX, &index).await;
    let resp = srv.get(&format!("/v2/{name}/manifests/multi")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_INDEX));
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    srv.stop().await;
}

/// `<name>` MUST match the spec's grammar. Invalid names (upper case,
/// empty component, `..` spelled literally or percent-encoded, leading
/// separator) are refused with `400 NAME_INVALID` (or 404), and nothing is
/// written: no repository appears in the catalog and nothing appears
/// outside the storage root.
async fn invalid_repository_names(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let marker = format!("escaped-e2e-{}", std::process::id());
    let manifest_bytes = image_manifest(&Descriptor::of(OCI_EMPTY, b"{}"), &[], None, None, None);
    let manifest: &[u8] = &manifest_bytes;
    let empty_digest = sha256_digest(b"{}");
    let none: &[u8] = b"";
    let json_body: &[u8] = b"{}";
    let requests: Vec<(&str, String, &[u8])> = vec![
        ("POST", "/v2/UPPER/blobs/uploads/".into(), none),
        ("POST", "/v2/a//b/blobs/uploads/".into(), none),
        ("POST", format!("/v2/%2e%2e/{marker}/blobs/uploads/"), none),
        (
            "POST",
            format!("/v2/%2E%2E/%2e%2e/%2e%2e/{marker}/blobs/uploads/"),
            none,
        ),
        (
            "POST",
            format!("/v2/a/../../../{marker}/blobs/uploads/"),
            none,
        ),
        (
            "POST",
            format!("/v2/a/%2e%2e/%2e%2e/{marker}/blobs/uploads/?digest={empty_digest}"),
            json_body,
        ),
        ("POST", "/v2/-a/blobs/uploads/".into(), none),
        (
            "PUT",
            format!("/v2/%2e%2e/{marker}/manifests/latest"),
            manifest,
        ),
        ("PUT", "/v2/Bad_Name/manifests/latest".into(), manifest),
        ("GET", "/v2/UPPER/tags/list".into(), none),
        (
            "GET",
            format!("/v2/%2e%2e/{marker}/blobs/{empty_digest}"),
            none,
        ),
    ];
    for (method, path, body) in &requests {
        let resp = srv
            .raw_request(
                method,
                path,
                &[("Content-Type", "application/octet-stream")],
                body,
            )
            .await;
        match resp.status {
            400 => {
                assert_raw_error(&resp, 400, &["NAME_INVALID"]);
            }
            404 => {}
            s => panic!("{method} {path}: expected 400 NAME_INVALID or 404, got {s}"),
        }
    }
    let resp = srv.get("/v2/_catalog").await;
    if resp.status() == StatusCode::OK {
        let v: serde_json::Value = resp.json().await.unwrap();
        let repos = v["repositories"].as_array().cloned().unwrap_or_default();
        assert!(
            repos.is_empty(),
            "invalid names created repositories: {repos:?}"
        );
    }
    if let Some(tmp) = srv.temp_dir() {
        let entries = dir_entries(tmp);
        assert!(
            entries.iter().all(|e| e == "registry"),
            "something was written next to the storage root: {entries:?}"
        );
        if let Some(parent) = tmp.parent() {
            assert!(
                !dir_entries(parent).contains(&marker),
                "a request escaped the storage root into {}",
                parent.display()
            );
        }
        for p in walk(tmp) {
            let s = p.to_string_lossy();
            assert!(!s.contains(&marker), "invalid name written to disk: {s}");
            assert!(
                !s.contains("UPPER") && !s.contains("Bad_Name"),
                "invalid name written to disk: {s}"
            );
        }
    }
    srv.stop().await;
}

/// A tag must match `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`: PUT with an
/// invalid tag is 400 with a JSON error, and the tag is not listed.
async fn invalid_tag_is_rejected(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/badtag";
    let manifest = pushed_manifest(&srv, name, "bad-tag").await;
    srv.push_manifest(name, "good", OCI_MANIFEST, &manifest)
        .await;
    let long = "a".repeat(129);
    for tag in [
        "-leadingdash",
        ".leadingdot",
        long.as_str(),
        "bad!tag",
        "bad%20tag",
    ] {
        let resp = srv.put_manifest(name, tag, OCI_MANIFEST, &manifest).await;
        assert_error(resp, 400, &[]).await;
    }
    // The longest valid tag is accepted.
    let longest = "b".repeat(128);
    srv.push_manifest(name, &longest, OCI_MANIFEST, &manifest)
        .await;
    let v: serde_json::Value = srv
        .get(&format!("/v2/{name}/tags/list"))
        .await
        .json()
        .await
        .unwrap();
    let mut tags: Vec<String> = serde_json::from_value(v["tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, vec![longest, "good".to_owned()]);
    srv.stop().await;
}

/// "Client and registry implementations SHOULD expect to be able to
/// support manifest pushes of at least 4 megabytes" and "A registry that
/// enforces this limit SHOULD respond ... with a response code `413 Payload
/// Too Large`": just under 4 MiB is accepted; over 4 MiB is refused (413,
/// or 400 with `MANIFEST_INVALID`/`SIZE_INVALID`) and not stored.
async fn manifest_size_limit(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/large";
    let config = config_json("large");
    srv.push_blob(name, &config).await;
    let cfg = Descriptor::of(OCI_CONFIG, &config);

    let ok = padded_manifest(&cfg, 4 * 1024 * 1024 - 1024);
    let digest = srv.push_manifest(name, "big", OCI_MANIFEST, &ok).await;
    let resp = srv.get(&format!("/v2/{name}/manifests/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap().as_ref() == ok.as_slice());

    let too_big = padded_manifest(&cfg, 4 * 1024 * 1024 + 1024);
    let resp = srv
        .raw_request(
            "PUT",
            &format!("/v2/{name}/manifests/toobig"),
            &[("Content-Type", OCI_MANIFEST)],
            &too_big,
        )
        .await;
    match resp.status {
        413 => {
            assert_raw_error(&resp, 413, &["MANIFEST_INVALID", "SIZE_INVALID"]);
        }
        400 => {
            assert_raw_error(&resp, 400, &["MANIFEST_INVALID", "SIZE_INVALID"]);
        }
        s => panic!(
            "manifest of {} bytes: expected 413 or 400, got {s}",
            too_big.len()
        ),
    }
    assert_no_manifest(&srv, name, "toobig").await;
    srv.stop().await;
}

/// "If process A and B upload the same layer at the same time, both
/// operations will proceed": two clients pushing the same blob at once
/// (monolithic and chunked) both get 201 and the blob is intact.
async fn same_blob_pushed_concurrently(backend: Backend) {
    let srv = TestServer::start(backend).await;
    for round in 0..3u64 {
        let name = format!("race/blob{round}");
        let data = random_blob(256 * 1024 + round as usize, 100 + round);
        let digest = sha256_digest(&data);
        let (a, b) = futures::join!(srv.push_blob(&name, &data), srv.push_blob(&name, &data));
        assert_eq!(a, digest);
        assert_eq!(b, digest);
        assert_blob(&srv, &name, &digest, &data).await;

        let chunked = |seed: u64| {
            let srv = &srv;
            let name = name.clone();
            async move {
                let data = random_blob(200_000, 200 + seed);
                let digest = sha256_digest(&data);
                let (loc, _, chunk) = start_chunked(srv, &name, 64 * 1024).await;
                let mut loc = loc;
                let mut start = 0;
                for piece in data.chunks(chunk) {
                    let resp = patch_chunk(srv, &loc, start, piece).await;
                    loc = assert_chunk_accepted(&resp, start + piece.len() - 1, None);
                    start += piece.len();
                }
                let resp = srv
                    .req(Method::PUT, &with_query(&loc, "digest", &digest))
                    .header(CONTENT_LENGTH, "0")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    resp.status(),
                    StatusCode::CREATED,
                    "concurrent chunked close"
                );
                (digest, data)
            }
        };
        let ((d1, data1), (d2, _)) = futures::join!(chunked(round), chunked(round));
        assert_eq!(d1, d2);
        assert_blob(&srv, &name, &d1, &data1).await;
    }
    srv.stop().await;
}

/// Two clients pushing different manifests to the same tag at once: both
/// get 201, and the tag then resolves to exactly one of them, consistent
/// with its `Docker-Content-Digest`; both stay pullable by digest and the
/// tag is listed once.
async fn same_tag_pushed_concurrently(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "race/tag";
    let a = pushed_manifest(&srv, name, "contender-a").await;
    let b = pushed_manifest(&srv, name, "contender-b").await;
    let (da, db) = (sha256_digest(&a), sha256_digest(&b));
    for round in 0..5 {
        let tag = format!("race{round}");
        let (ra, rb) = futures::join!(
            srv.put_manifest(name, &tag, OCI_MANIFEST, &a),
            srv.put_manifest(name, &tag, OCI_MANIFEST, &b)
        );
        assert_eq!(ra.status(), StatusCode::CREATED);
        assert_eq!(rb.status(), StatusCode::CREATED);
        let resp = srv.get(&format!("/v2/{name}/manifests/{tag}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let header_digest = header(&resp, "docker-content-digest");
        let body = resp.bytes().await.unwrap();
        let digest = sha256_digest(&body);
        assert!(
            digest == da || digest == db,
            "tag {tag} resolves to neither pushed manifest"
        );
        if let Some(h) = header_digest {
            assert_eq!(h, digest, "Docker-Content-Digest must match the body");
        }
    }
    for d in [&da, &db] {
        assert_eq!(
            srv.get(&format!("/v2/{name}/manifests/{d}")).await.status(),
            StatusCode::OK
        );
    }
    let v: serde_json::Value = srv
        .get(&format!("/v2/{name}/tags/list"))
        .await
        .json()
        .await
        .unwrap();
    let tags: Vec<String> = serde_json::from_value(v["tags"].clone()).unwrap();
    assert_eq!(tags, (0..5).map(|r| format!("race{r}")).collect::<Vec<_>>());
    srv.stop().await;
}
/// "The registry SHOULD ignore parameters on the `Content-Type` header"
/// of a manifest PUT, and "SHOULD NOT include parameters on the
/// `Content-Type` header" when serving it.
async fn content_type_parameters_are_ignored(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/ctparams";
    let manifest = pushed_manifest(&srv, name, "ct-params").await;
    let ct = format!("{OCI_MANIFEST}; charset=utf-8");
    let digest = srv.push_manifest(name, "v1", &ct, &manifest).await;
    let resp = srv.get(&format!("/v2/{name}/manifests/v1")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_MANIFEST));
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest));
    srv.stop().await;
}

/// Pushing another manifest to an existing tag moves the tag; the old
/// manifest stays pullable by digest.
async fn retag_moves_the_tag(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "push/retag";
    let a = pushed_manifest(&srv, name, "first").await;
    let b = pushed_manifest(&srv, name, "second").await;
    let da = srv.push_manifest(name, "latest", OCI_MANIFEST, &a).await;
    let db = srv.push_manifest(name, "latest", OCI_MANIFEST, &b).await;
    let resp = srv.get(&format!("/v2/{name}/manifests/latest")).await;
    assert_eq!(header(&resp, "docker-content-digest"), Some(db));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b.as_slice());
    let resp = srv.get(&format!("/v2/{name}/manifests/{da}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), a.as_slice());
    srv.stop().await;
}

/// Two clients sending the same first chunk to one session at once:
/// "Chunks MUST be uploaded in order", so exactly one is accepted (202)
/// and the other is out of order (416); the session holds the chunk once
/// and completes with the right digest.
async fn concurrent_patches_on_one_session(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "race/session";
    for round in 0..3u64 {
        let (loc, _, chunk) = start_chunked(&srv, name, 128 * 1024).await;
        let data = random_blob(chunk * 2, 300 + round);
        let digest = sha256_digest(&data);
        let (r1, r2) = futures::join!(
            patch_chunk(&srv, &loc, 0, &data[..chunk]),
            patch_chunk(&srv, &loc, 0, &data[..chunk])
        );
        let mut codes = [r1.status().as_u16(), r2.status().as_u16()];
        codes.sort();
        let status = srv.get(&loc).await;
        let range = header(&status, "range");
        assert_eq!(
            (codes, range.as_deref()),
            ([202, 416], Some(format!("0-{}", chunk - 1)).as_deref()),
            "two identical first chunks at once: (statuses, Range of the session afterwards)"
        );
        let loc = assert_upload_status(&srv, &loc, chunk - 1).await;
        let resp = patch_chunk(&srv, &loc, chunk, &data[chunk..]).await;
        let loc = assert_chunk_accepted(&resp, data.len() - 1, None);
        let resp = srv
            .req(Method::PUT, &with_query(&loc, "digest", &digest))
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .unwrap();
        assert_blob_created(&srv, resp, &digest, &data).await;
    }
    srv.stop().await;
}
/// Two clients racing different first chunks into one session must
/// never produce a blob whose content does not match its digest: when
/// the closing PUT with the digest of one client's bytes succeeds, the
/// stored blob is exactly those bytes ("Clients SHOULD verify that the
/// response body matches the requested digest" must hold for a
/// consistent registry).
async fn concurrent_different_chunks_keep_integrity(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "race/integrity";
    let mut problems = Vec::new();
    for round in 0..8u64 {
        let (loc, _, chunk) = start_chunked(&srv, name, 256 * 1024).await;
        let a = random_blob(chunk, 400 + round);
        let b = random_blob(chunk, 500 + round);
        let (ra, rb) = futures::join!(
            patch_chunk(&srv, &loc, 0, &a),
            patch_chunk(&srv, &loc, 0, &b)
        );
        let (sa, sb) = (ra.status().as_u16(), rb.status().as_u16());
        // Close with the digest of the bytes of a client told 202.
        let (winner, expect) = if sa == 202 { (&a, "a") } else { (&b, "b") };
        let digest = sha256_digest(winner);
        let resp = srv
            .req(Method::PUT, &with_query(&loc, "digest", &digest))
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .unwrap();
        let put = resp.status().as_u16();
        if put == 201 {
            let body = srv
                .get(&format!("/v2/{name}/blobs/{digest}"))
                .await
                .bytes()
                .await
                .unwrap();
            if sha256_digest(&body) != digest {
                problems.push(format!(
                    "round {round}: PATCH statuses ({sa}, {sb}); blob {digest} (client {expect}) published with content hashing to {}",
                    sha256_digest(&body)
                ));
            }
        } else if sa == 202 && sb == 202 {
            problems.push(format!(
                "round {round}: both racing PATCHes got 202 but closing with client {expect}'s digest gave {put}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    srv.stop().await;
}

backend_tests!(
    monolithic_post_then_put,
    upload_sessions_are_unique,
    single_post_with_digest,
    streamed_upload,
    chunk_retry_and_stale_location,
    out_of_order_chunk_is_416,
    final_chunk_in_put,
    chunk_length_mismatch,
    empty_blob,
    digest_mismatch_is_rejected,
    invalid_digest_parameter,
    unknown_upload_is_404,
    cancel_upload,
    automatic_mount_without_from,
    mount_of_unknown_blob_falls_back_to_upload,
    put_manifest_by_tag,
    put_manifest_by_digest,
    manifest_with_no_layers,
    manifest_with_missing_blob,
    manifest_blob_from_other_repository,
    manifest_digest_mismatch,
    invalid_manifest_is_rejected,
    schema1_manifest_is_rejected,
    index_with_missing_child,
    invalid_repository_names,
    invalid_tag_is_rejected,
    manifest_size_limit,
    same_blob_pushed_concurrently,
    content_type_parameters_are_ignored,
    retag_moves_the_tag,
    concurrent_patches_on_one_session,
    concurrent_different_chunks_keep_integrity,
);

backend_tests_and_azure!(
    chunked_upload,
    streamed_upload_in_several_patches,
    concurrent_close_of_one_session,
    cross_repository_mount,
    same_tag_pushed_concurrently,
);
