//! The pull-through cache over real HTTP: a registry with `[[proxy]]`
//! sections in front of an upstream that is a second instance of this
//! registry (token auth on, the cache holding credentials), or a fake
//! upstream that lies, stalls or throttles.

use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use oci_e2e::fake_upstream::FakeUpstream;
use oci_e2e::*;
use reqwest::StatusCode;
use serde_json::Value;

/// An upstream in token mode: one account, `puller`, that may do
/// everything (it pushes the test content, and the cache pulls with it);
/// anonymous callers may do nothing.
async fn upstream(repos: &[&str]) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("puller:{}\n", bcrypt::hash("secret", 4).unwrap()),
    )
    .unwrap();
    let config = format!(
        r#"[auth]
mode = "token"
htpasswd = {htpasswd:?}
[auth.token]
service = "upstream.test"
issuer = "upstream.test"
[access]
admins = ["puller"]
"#
    );
    let mut srv = TestServer::start_with_auth(Backend::Memory, &config).await;
    let scopes: String = repos
        .iter()
        .map(|r| format!("&scope=repository:{r}:push,pull,delete"))
        .collect();
    let token: Value = reqwest::Client::new()
        .get(srv.url(&format!("/auth/token?service=upstream.test{scopes}")))
        .header(
            "authorization",
            format!("Basic {}", base64(b"puller:secret")),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    srv.authorize(&format!("Bearer {}", token["token"].as_str().unwrap()));
    (srv, dir)
}

/// A cache of `upstream` under `prefix`, with `tag_ttl` and the default
/// 30 s upstream timeout (the upstream runs in this test process, and a
/// loaded machine can pause it past a shorter one).
async fn cache(backend: Backend, upstream: &str, prefix: &str, tag_ttl: &str) -> TestServer {
    TestServer::start_with_config(
        backend,
        &format!(
            r#"[[proxy]]
prefix = "{prefix}"
url = "{upstream}"
username = "puller"
password = "secret"
library = true
tag_ttl = "{tag_ttl}"
timeout = "30s"
"#
        ),
    )
    .await
}

/// Whether the blob `digest` is stored within 60 s (a fetched blob is
/// served as it arrives and published into storage right after; a loaded
/// machine may take a while).
async fn eventually_stored(srv: &TestServer, digest: &str) -> bool {
    let digest = digest.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if srv.storage().blob_stored(&digest).await.unwrap() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn get_bytes(srv: &TestServer, path: &str) -> (StatusCode, Vec<u8>) {
    let resp = srv.get(path).await;
    let status = resp.status();
    (status, resp.bytes().await.unwrap().to_vec())
}

/// A cold pull, a warm pull with upstream gone, a tag revalidated and
/// then served stale, and an uncached tag failing cleanly: on `backend`.
async fn cold_warm_and_upstream_down(backend: Backend) {
    let (up, _dir) = upstream(&["library/app"]).await;
    let image = up.push_image("library/app", "v1", 2).await;
    let srv = cache(backend, up.base(), "hub", "0s").await;

    // Cold, through Docker Hub style short names (library/ added).
    image.assert_pulled(
        &srv.oci_client_pull("hub/app", "v1", &RegistryAuth::Anonymous)
            .await,
    );
    // The content is stored as an ordinary repository under the prefix.
    let resp = srv.get("/v2/_catalog").await;
    let catalog: Value = resp.json().await.unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["hub/library/app"])
    );
    for layer in &image.layer_descs {
        assert!(
            eventually_stored(&srv, &layer.digest).await,
            "layer {} was not cached",
            layer.digest
        );
    }
    // Warm, by the long name, through the same cache.
    image.assert_pulled(
        &srv.oci_client_pull("hub/library/app", "v1", &RegistryAuth::Anonymous)
            .await,
    );

    // Tags are listed as upstream has them, paged as asked.
    up.push_image("library/app", "v0", 1).await;
    let resp = srv.get("/v2/hub/app/tags/list").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let list: Value = resp.json().await.unwrap();
    assert_eq!(list["tags"], serde_json::json!(["v0", "v1"]));
    let resp = srv.get("/v2/hub/app/tags/list?n=1").await;
    let link = next_link(&resp).expect("a Link to the next page");
    assert!(link.contains("last=v0"), "{link}");
    let list: Value = resp.json().await.unwrap();
    assert_eq!(list["name"], "hub/app");
    assert_eq!(list["tags"], serde_json::json!(["v0"]));

    // Upstream gone: a tag (tag_ttl 0: upstream is asked every time) is
    // served stale, blobs and manifests by digest from the cache.
    up.stop().await;
    image.assert_pulled(
        &srv.oci_client_pull("hub/app", "v1", &RegistryAuth::Anonymous)
            .await,
    );
    let resp = srv
        .get(&format!("/v2/hub/app/manifests/{}", image.digest))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The tags the cache holds.
    let list: Value = srv.get("/v2/hub/app/tags/list").await.json().await.unwrap();
    assert_eq!(list["tags"], serde_json::json!(["v1"]));
    // Something never cached: a clean error naming the upstream.
    let resp = srv.get("/v2/hub/app/manifests/v2").await;
    let body = assert_error(resp, 502, &["MANIFEST_UNKNOWN"]).await;
    assert!(body.to_string().contains("upstream"), "{body}");
    let missing = sha256_digest(b"never pushed");
    let resp = srv.get(&format!("/v2/hub/app/blobs/{missing}")).await;
    assert_error(resp, 502, &["BLOB_UNKNOWN"]).await;

    srv.stop().await;
}

/// A multi-arch index: the index by tag, then each child and its blobs by
/// digest, fetched on demand.
#[tokio::test]
async fn multi_arch_index_and_children() {
    let (up, _dir) = upstream(&["team/multi"]).await;
    let amd = up.push_image("team/multi", "amd64", 1).await;
    let arm = up.push_image("team/multi", "arm64", 2).await;
    let index = image_index(
        &[amd.manifest_desc.clone(), arm.manifest_desc.clone()],
        None,
        None,
        None,
    );
    let index_digest = up
        .push_manifest("team/multi", "latest", OCI_INDEX, &index)
        .await;
    let srv = cache(Backend::Filesystem, up.base(), "up", "5m").await;

    let resp = srv.get("/v2/up/team/multi/manifests/latest").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_INDEX));
    assert_eq!(header(&resp, "docker-content-digest"), Some(index_digest));
    assert_eq!(resp.bytes().await.unwrap().to_vec(), index);
    // A cached index whose children are not fetched yet is not a broken
    // image to fsck: they are fetched when asked for (pushed manifests
    // missing references are reported, see the fsck tests).
    let report = srv
        .storage()
        .fsck(&oci_storage::FsckOptions::default())
        .await
        .unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    for child in [&amd, &arm] {
        let (status, body) = get_bytes(
            &srv,
            &format!("/v2/up/team/multi/manifests/{}", child.digest),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, child.manifest);
        for (desc, data) in child.layer_descs.iter().zip(&child.layers) {
            let (status, body) =
                get_bytes(&srv, &format!("/v2/up/team/multi/blobs/{}", desc.digest)).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body == *data);
        }
    }
    srv.stop().await;
}

/// Referrers are asked of upstream; the referrer itself is fetched by
/// digest; with upstream down, the cached referrers are listed.
#[tokio::test]
async fn referrers_through_the_cache() {
    let (up, _dir) = upstream(&["team/signed"]).await;
    let image = up.push_image("team/signed", "v1", 1).await;
    let empty = b"{}";
    up.push_blob("team/signed", empty).await;
    let empty_desc = Descriptor::of(OCI_EMPTY, empty);
    let signature = image_manifest(
        &empty_desc,
        std::slice::from_ref(&empty_desc),
        Some(&image.manifest_desc),
        Some("application/vnd.example.signature"),
        None,
    );
    let signature_digest = up
        .push_manifest(
            "team/signed",
            &sha256_digest(&signature),
            OCI_MANIFEST,
            &signature,
        )
        .await;
    let srv = cache(Backend::Memory, up.base(), "up", "5m").await;

    let path = format!("/v2/up/team/signed/referrers/{}", image.digest);
    let resp = srv.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let index: Value = resp.json().await.unwrap();
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [signature_digest.as_str()]);
    // The filter is passed on.
    let resp = srv
        .get(&format!("{path}?artifactType=application/vnd.example.sbom"))
        .await;
    assert_eq!(
        header(&resp, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    let filtered: Value = resp.json().await.unwrap();
    assert_eq!(filtered["manifests"], serde_json::json!([]));
    // The referrer, by digest.
    let (status, body) = get_bytes(
        &srv,
        &format!("/v2/up/team/signed/manifests/{signature_digest}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, signature);

    // Upstream down: the referrers the cache holds.
    up.stop().await;
    let resp = srv.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let index: Value = resp.json().await.unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        serde_json::json!(signature_digest)
    );
    srv.stop().await;
}

/// A tag moved upstream is served as cached until `tag_ttl` (2 s), then
/// followed.
///
/// The TTL runs from the `GET` that cached the tag, so the `HEAD` that
/// must still see the cached resolution has to end within 2 s of that
/// `GET`'s start, with the move upstream in between: the new image is
/// pushed upstream beforehand, so only the tag's manifest put falls
/// inside. A loaded machine that overruns the window proves nothing, and
/// the round is tried again with another tag, a bounded number of times.
#[tokio::test]
async fn a_moved_tag_is_followed_after_its_ttl() {
    let ttl = Duration::from_secs(2);
    let (up, _dir) = upstream(&["team/app"]).await;
    let first = up.push_image("team/app", "v1", 1).await;
    let second = up.push_image("team/app", "v2", 2).await;
    let srv = cache(Backend::Filesystem, up.base(), "up", "2s").await;
    let digest_of = |resp: &reqwest::Response| header(resp, "docker-content-digest");

    for round in 0..5 {
        let tag = format!("moving-{round}");
        let path = format!("/v2/up/team/app/manifests/{tag}");
        up.push_manifest("team/app", &tag, OCI_MANIFEST, &first.manifest)
            .await;
        let fetch_began = Instant::now();
        let resp = srv.get(&path).await;
        let fetch_ended = Instant::now();
        assert_eq!(digest_of(&resp).as_deref(), Some(first.digest.as_str()));
        // Move the tag upstream.
        up.push_manifest("team/app", &tag, OCI_MANIFEST, &second.manifest)
            .await;
        // Within the TTL: the cached resolution.
        let resp = srv.head(&path).await;
        if fetch_began.elapsed() >= ttl {
            eprintln!("round {round}: the window passed before the HEAD; again");
            continue;
        }
        assert_eq!(digest_of(&resp).as_deref(), Some(first.digest.as_str()));
        tokio::time::sleep_until((fetch_ended + ttl + Duration::from_millis(200)).into()).await;
        let resp = srv.get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(digest_of(&resp).as_deref(), Some(second.digest.as_str()));
        assert_eq!(resp.bytes().await.unwrap().to_vec(), second.manifest);
        // The cache's tag now points there too.
        let resp = srv.head(&path).await;
        assert_eq!(digest_of(&resp).as_deref(), Some(second.digest.as_str()));
        srv.stop().await;
        return;
    }
    panic!("every round overran the {ttl:?} window: the machine is too slow to tell");
}

/// Pushes, deletes and uploads into a proxied prefix are refused with
/// DENIED; repositories outside every prefix stay local.
#[tokio::test]
async fn writes_into_a_prefix_are_refused() {
    let (up, _dir) = upstream(&["team/app"]).await;
    let image = up.push_image("team/app", "v1", 1).await;
    let srv = cache(Backend::Memory, up.base(), "up", "5m").await;

    let resp = srv
        .put_manifest("up/team/app", "v2", OCI_MANIFEST, &image.manifest)
        .await;
    let body = assert_error(resp, 403, &["DENIED"]).await;
    assert!(body.to_string().contains("pull-through cache"), "{body}");
    let resp = srv
        .req(reqwest::Method::POST, "/v2/up/team/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, &["DENIED"]).await;
    let resp = srv
        .delete(&format!("/v2/up/team/app/manifests/{}", image.digest))
        .await;
    assert_error(resp, 403, &["DENIED"]).await;
    // Nothing of it was written upstream or here.
    let list: Value = srv
        .get("/v2/up/team/app/tags/list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["tags"], serde_json::json!(["v1"]));
    let stored = srv.storage().catalog(&Default::default()).await.unwrap();
    assert!(stored.0.is_empty(), "{:?}", stored.0);

    // Outside the prefix: an ordinary registry.
    let local = srv.push_image("mine/app", "v1", 1).await;
    let resp = srv.get("/v2/mine/app/manifests/v1").await;
    assert_eq!(header(&resp, "docker-content-digest"), Some(local.digest));
    srv.stop().await;
}

/// Mirror mode (`prefix = ""`): docker's `registry-mirrors` asks for
/// `library/<name>`; short names work too; containerd's `?ns=` is
/// ignored; nothing can be pushed.
#[tokio::test]
async fn mirror_mode_answers_docker_style_requests() {
    let (up, _dir) = upstream(&["library/alpine"]).await;
    let image = up.push_image("library/alpine", "3", 1).await;
    let srv = cache(Backend::Filesystem, up.base(), "", "5m").await;

    for path in [
        "/v2/library/alpine/manifests/3",
        "/v2/alpine/manifests/3",
        "/v2/library/alpine/manifests/3?ns=docker.io",
    ] {
        let resp = srv.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&resp, "docker-content-digest"),
            Some(image.digest.clone())
        );
    }
    image.assert_pulled(
        &srv.oci_client_pull("alpine", "3", &RegistryAuth::Anonymous)
            .await,
    );
    let resp = srv.get("/v2/_catalog").await;
    let catalog: Value = resp.json().await.unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["library/alpine"])
    );
    let resp = srv
        .req(reqwest::Method::POST, "/v2/mine/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, &["DENIED"]).await;
    srv.stop().await;
}

/// A cache of the fake upstream under `fake`.
async fn fake_cache(backend: Backend, fake: &FakeUpstream) -> TestServer {
    fake_cache_with(backend, fake, "timeout = \"10s\"").await
}

/// A cache of the fake upstream under `fake`, with `proxy` keys added to
/// its `[[proxy]]` and `before` (other sections) ahead of it.
async fn fake_cache_with(backend: Backend, fake: &FakeUpstream, proxy: &str) -> TestServer {
    fake_cache_after(backend, "", fake, proxy).await
}

async fn fake_cache_after(
    backend: Backend,
    before: &str,
    fake: &FakeUpstream,
    proxy: &str,
) -> TestServer {
    let url = fake.url();
    let text = format!("{before}\n[[proxy]]\nprefix = \"fake\"\nurl = \"{url}\"\n{proxy}\n");
    TestServer::start_with_config(backend, &text).await
}

/// 8 concurrent cold pulls of one 64 MiB blob: one upstream fetch, every
/// client gets the right bytes, and the first bytes reach a client while
/// upstream is still sending (stalled half-way until the test sees them).
async fn one_fetch_streamed_to_all(backend: Backend) {
    let fake = FakeUpstream::start().await;
    let (blob, digest) = fake.add_random_blob(64 << 20, 64);
    let srv = fake_cache(backend, &fake).await;
    let release = fake.stall();
    let path = format!("/v2/fake/big/blobs/{digest}");

    // The first client: its first bytes arrive while upstream is stalled.
    let mut first = srv.get(&path).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        header(&first, "content-length"),
        Some(blob.len().to_string())
    );
    // Upstream sends half and stalls (within a minute, however loaded).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fake.is_stalled() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fake.is_stalled(), "upstream never reached its stall point");
    // ... and the client gets bytes while it is stalled.
    let mut received = Vec::with_capacity(blob.len());
    while received.len() < 1 << 20 {
        let chunk = first
            .chunk()
            .await
            .unwrap()
            .expect("bytes before upstream finished");
        received.extend_from_slice(&chunk);
    }
    // Seven more join the fetch in progress.
    let others: Vec<_> = (0..7)
        .map(|_| {
            let (http, url) = (srv.http().clone(), srv.url(&path));
            tokio::spawn(async move {
                let resp = http.get(url).send().await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                resp.bytes().await.unwrap().to_vec()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    release.notify_one();
    while let Some(chunk) = first.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
    assert!(received == blob, "the first client's bytes differ");
    for other in others {
        assert!(
            other.await.unwrap() == blob,
            "a joining client's bytes differ"
        );
    }
    assert_eq!(fake.blob_gets(), 1, "one upstream fetch for eight pulls");
    // Cached: a ninth pull does not go upstream.
    assert!(eventually_stored(&srv, &digest).await);
    let (status, body) = get_bytes(&srv, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == blob);
    assert_eq!(fake.blob_gets(), 1);
    srv.stop().await;
}

/// A lying upstream: the client streaming its bytes is cut off before the
/// end, a later client gets an error, and nothing is stored.
async fn lying_upstream(backend: Backend) {
    let fake = FakeUpstream::start().await;
    let (blob, digest) = fake.add_random_blob(3 << 20, 7);
    fake.lie(true);
    let srv = fake_cache(backend, &fake).await;
    let path = format!("/v2/fake/liar/blobs/{digest}");

    let resp = srv.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let read = resp.bytes().await;
    assert!(
        read.as_ref().map_or(true, |b| b.len() < blob.len()),
        "a client got the whole of a blob with wrong bytes"
    );
    // Later clients get an error, not bytes.
    let resp = srv.get(&path).await;
    let body = assert_error(resp, 502, &["BLOB_UNKNOWN"]).await;
    assert!(
        body.to_string().contains("wrong") || body.to_string().contains("sent"),
        "{body}"
    );
    let stored = srv.storage().blob_stored(&digest.parse().unwrap()).await;
    assert!(!stored.unwrap(), "wrong bytes were stored");
    let resp = srv.head(&path).await;
    assert_ne!(resp.status(), StatusCode::OK);
    srv.stop().await;
}

/// 429 from upstream with nothing cached: 429 with `Retry-After` to the
/// client, and upstream is left alone until then; cached content is
/// served meanwhile.
#[tokio::test]
async fn throttling_is_passed_on_and_honoured() {
    let fake = FakeUpstream::start().await;
    let (cached, cached_digest) = fake.add_random_blob(1 << 16, 8);
    let (_, digest) = fake.add_random_blob(1 << 20, 9);
    let srv = fake_cache(Backend::Filesystem, &fake).await;
    let (status, _) = get_bytes(&srv, &format!("/v2/fake/x/blobs/{cached_digest}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(eventually_stored(&srv, &cached_digest).await);

    fake.throttle(true);
    let path = format!("/v2/fake/x/blobs/{digest}");
    let resp = srv.get(&path).await;
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("7"));
    assert_error(resp, 429, &["TOOMANYREQUESTS"]).await;
    fake.throttle(false);
    let asked = fake.requests();
    // Within the Retry-After: refused here, not asked upstream...
    let resp = srv.get(&path).await;
    let retry: u64 = header(&resp, "retry-after").unwrap().parse().unwrap();
    assert!((1..=7).contains(&retry), "{retry}");
    assert_error(resp, 429, &["TOOMANYREQUESTS"]).await;
    assert_eq!(
        fake.requests(),
        asked,
        "a throttled upstream was asked again"
    );
    // ... and what is cached is served.
    let (status, body) = get_bytes(&srv, &format!("/v2/fake/x/blobs/{cached_digest}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == cached);
    srv.stop().await;
}

/// An upstream whose HEAD says nothing of the digest: a stale tag is
/// checked with a GET instead.
#[tokio::test]
async fn a_head_without_digest_falls_back_to_a_get() {
    let fake = FakeUpstream::start().await;
    let first = image_manifest(&Descriptor::of(OCI_CONFIG, b"{}"), &[], None, None, None);
    fake.add_manifest("team/app", "v1", OCI_MANIFEST, &first);
    let srv = fake_cache_with(Backend::Memory, &fake, "tag_ttl = \"0s\"").await;
    let (status, body) = get_bytes(&srv, "/v2/fake/team/app/manifests/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, first);
    fake.omit_digest(true);
    let second = image_manifest(&Descriptor::of(OCI_CONFIG, b"{ }"), &[], None, None, None);
    fake.add_manifest("team/app", "v1", OCI_MANIFEST, &second);
    let (status, body) = get_bytes(&srv, "/v2/fake/team/app/manifests/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, second, "the moved tag was not followed");
    srv.stop().await;
}

/// Ranges and HEADs of cold blobs.
#[tokio::test]
async fn ranges_and_heads_of_cold_blobs() {
    let fake = FakeUpstream::start().await;
    let (blob, digest) = fake.add_random_blob(1 << 20, 9);
    let srv = fake_cache(Backend::Filesystem, &fake).await;
    let path = format!("/v2/fake/x/blobs/{digest}");

    // A HEAD asks upstream for the length and fetches nothing.
    let resp = srv.head(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "content-length"),
        Some(blob.len().to_string())
    );
    assert_eq!(fake.blob_gets(), 0);
    // A range of a cold blob.
    let resp = srv
        .req(reqwest::Method::GET, &path)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&resp, "content-range").as_deref(),
        Some(format!("bytes 1000-1999/{}", blob.len()).as_str())
    );
    assert_eq!(resp.bytes().await.unwrap().to_vec(), blob[1000..2000]);
    // ... which cached the whole.
    assert!(eventually_stored(&srv, &digest).await);
    let (status, body) = get_bytes(&srv, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == blob);
    assert_eq!(fake.blob_gets(), 1);
    srv.stop().await;
}

/// Access control applies to proxied repositories as to local ones: an
/// anonymous pull is refused before anything is fetched; a user allowed
/// to pull fills the cache; even an admin cannot push into the prefix.
#[tokio::test]
async fn access_control_applies_to_proxied_repositories() {
    let (up, _dir) = upstream(&["team/app"]).await;
    let image = up.push_image("team/app", "v1", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("dev:{}\n", bcrypt::hash("devpass", 4).unwrap()),
    )
    .unwrap();
    let mut srv = TestServer::start_with_config(
        Backend::Memory,
        &format!(
            r#"[auth]
mode = "basic"
htpasswd = {htpasswd:?}
[access]
admins = ["dev"]
[[proxy]]
prefix = "up"
url = "{}"
username = "puller"
password = "secret"
"#,
            up.base()
        ),
    )
    .await;
    let resp = srv.get("/v2/up/team/app/manifests/v1").await;
    assert_error(resp, 401, &["UNAUTHORIZED"]).await;
    assert_eq!(
        srv.storage()
            .catalog(&Default::default())
            .await
            .unwrap()
            .0
            .len(),
        0,
        "an anonymous request filled the cache"
    );
    srv.authorize(&format!("Basic {}", base64(b"dev:devpass")));
    let resp = srv.get("/v2/up/team/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-content-digest"),
        Some(image.digest.clone())
    );
    let resp = srv
        .put_manifest("up/team/app", "v2", OCI_MANIFEST, &image.manifest)
        .await;
    assert_error(resp, 403, &["DENIED"]).await;
    srv.stop().await;
}

/// An upstream that stalls past the timeout: the streaming client's
/// response is cut short (never completed with missing bytes), nothing is
/// stored, and a later pull fetches again and succeeds.
#[tokio::test]
async fn a_stalled_upstream_times_out_and_is_fetched_again() {
    let fake = FakeUpstream::start().await;
    let (blob, digest) = fake.add_random_blob(2 << 20, 11);
    let srv = fake_cache_with(Backend::Filesystem, &fake, "timeout = \"1s\"").await;
    let path = format!("/v2/fake/slow/blobs/{digest}");
    let _never = fake.stall();
    let resp = srv.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let read = resp.bytes().await;
    assert!(
        read.as_ref().map_or(true, |b| b.len() < blob.len()),
        "a stalled fetch completed"
    );
    let stored = srv.storage().blob_stored(&digest.parse().unwrap()).await;
    assert!(!stored.unwrap());
    // Upstream recovers: the next pull fetches again.
    fake.unstall();
    let (status, body) = get_bytes(&srv, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == blob);
    assert_eq!(fake.blob_gets(), 2);
    srv.stop().await;
}

/// A client that goes away mid-blob does not stop the fetch: the blob is
/// cached, and the next pull is served without going upstream.
#[tokio::test]
async fn a_client_leaving_does_not_stop_the_fetch() {
    let fake = FakeUpstream::start().await;
    let (blob, digest) = fake.add_random_blob(8 << 20, 12);
    let srv = fake_cache(Backend::Filesystem, &fake).await;
    let path = format!("/v2/fake/left/blobs/{digest}");
    let release = fake.stall();
    let mut resp = srv.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let first = resp.chunk().await.unwrap().expect("some bytes");
    assert!(!first.is_empty());
    drop(resp);
    release.notify_one();
    assert!(eventually_stored(&srv, &digest).await, "the fetch stopped");
    fake.unstall();
    let (status, body) = get_bytes(&srv, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == blob);
    assert_eq!(fake.blob_gets(), 1);
    srv.stop().await;
}

/// When storage refuses the upload (here: no upload sessions allowed),
/// clients are still served verified bytes (the spool is hashed instead),
/// nothing is cached, and a lying upstream is still caught.
#[tokio::test]
async fn storage_refusing_the_copy_still_serves_verified_bytes() {
    let fake = FakeUpstream::start().await;
    let (blob, digest) = fake.add_random_blob(1 << 20, 13);
    let srv = fake_cache_after(Backend::Filesystem, "[limits]\nmax_uploads = 0", &fake, "").await;
    let (status, body) = get_bytes(&srv, &format!("/v2/fake/x/blobs/{digest}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == blob);
    let stored = srv.storage().blob_stored(&digest.parse().unwrap()).await;
    assert!(!stored.unwrap());

    let (other, other_digest) = fake.add_random_blob(1 << 20, 14);
    fake.lie(true);
    let resp = srv.get(&format!("/v2/fake/x/blobs/{other_digest}")).await;
    let read = resp.bytes().await;
    assert!(
        read.as_ref().map_or(true, |b| b.len() < other.len()),
        "a client got the whole of a blob with wrong bytes"
    );
    srv.stop().await;
}

/// Two replicas on one S3 store, four concurrent cold pulls of one blob
/// on each: at most one upstream fetch per replica, every client gets the
/// right bytes, and later pulls on either replica are served from the
/// shared cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_fetch_at_most_once_each() {
    let fake = FakeUpstream::start().await;
    let (blob, digest) = fake.add_random_blob(8 << 20, 15);
    let s3 = oci_test_s3::S3Server::start().await.unwrap();
    let url = s3.url("registry");
    let config = format!("[[proxy]]\nprefix = \"fake\"\nurl = \"{}\"\n", fake.url());
    let options = || oci_storage::StorageOptions::with_backend(&s3.options());
    let a = TestServer::start_at_with_config(&url, options(), &config).await;
    let b = TestServer::start_at_with_config(&url, options(), &config).await;
    let path = format!("/v2/fake/shared/blobs/{digest}");
    let pulls: Vec<_> = (0..8)
        .map(|i| {
            let srv = if i % 2 == 0 { &a } else { &b };
            let (http, url) = (srv.http().clone(), srv.url(&path));
            tokio::spawn(async move {
                let resp = http.get(url).send().await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                resp.bytes().await.unwrap().to_vec()
            })
        })
        .collect();
    for pull in pulls {
        assert!(pull.await.unwrap() == blob, "a client's bytes differ");
    }
    let fetched = fake.blob_gets();
    assert!((1..=2).contains(&fetched), "{fetched} upstream fetches");
    assert!(eventually_stored(&a, &digest).await);
    for srv in [&a, &b] {
        let (status, body) = get_bytes(srv, &path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body == blob);
    }
    assert_eq!(fake.blob_gets(), fetched, "a cached blob was fetched again");
    a.stop().await;
    b.stop().await;
}

backend_tests!(one_fetch_streamed_to_all, lying_upstream);

backend_tests_and_azure!(cold_warm_and_upstream_down);
