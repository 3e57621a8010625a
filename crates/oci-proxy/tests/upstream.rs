//! The upstream client against this registry as the upstream, over real
//! HTTP: anonymous and authenticated token flows, Basic, cached tokens,
//! manifests by tag and digest (verified), streamed blobs, and the errors
//! a cache must tell apart.

use futures::TryStreamExt;
use oci_e2e::{Backend, OCI_MANIFEST, TestServer};
use oci_proxy::{ProxyError, Upstream, UpstreamOptions};
use oci_types::{Digest, Reference, RepositoryName};

/// `[auth]` in `mode`, one account (`puller`), anonymous pulls of
/// `public/**`, `puller` pulls of `private/**`.
fn auth(mode: &str, dir: &tempfile::TempDir) -> String {
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("puller:{}\n", bcrypt::hash("secret", 4).unwrap()),
    )
    .unwrap();
    format!(
        r#"[auth]
mode = "{mode}"
htpasswd = {htpasswd:?}
[auth.token]
service = "upstream.test"
issuer = "upstream.test"
[access]
admins = ["puller"]
[[access.rules]]
repositories = ["public/**"]
anonymous = true
actions = ["pull"]
"#
    )
}

fn repo(s: &str) -> RepositoryName {
    s.parse().unwrap()
}

fn tag(s: &str) -> Reference {
    Reference::Tag(s.parse().unwrap())
}

/// An upstream with access control, holding `public/app:v1` and
/// `private/app:v1` (pushed by the admin account).
async fn upstream(mode: &str) -> (TestServer, oci_e2e::Image, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = TestServer::start_with_auth(Backend::Memory, &auth(mode, &dir)).await;
    let basic = format!("Basic {}", oci_e2e::base64(b"puller:secret"));
    if mode == "token" {
        let token: serde_json::Value = reqwest::Client::new()
            .get(srv.url("/auth/token?service=upstream.test&scope=repository:public/app:push,pull&scope=repository:private/app:push,pull"))
            .header("authorization", &basic)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        srv.authorize(&format!("Bearer {}", token["token"].as_str().unwrap()));
    } else {
        srv.authorize(&basic);
    }
    let image = srv.push_image("public/app", "v1", 2).await;
    srv.push_image("private/app", "v1", 1).await;
    (srv, image, dir)
}

async fn fetch_all(up: &Upstream, image: &oci_e2e::Image) {
    let name = repo("public/app");
    let head = up.manifest(&name, &tag("v1"), false).await.unwrap();
    assert_eq!(head.digest.to_string(), image.digest);
    assert_eq!(head.media_type, OCI_MANIFEST);
    assert!(head.body.is_none());
    let got = up.manifest(&name, &tag("v1"), true).await.unwrap();
    assert_eq!(got.body.as_deref(), Some(&image.manifest[..]));
    let by_digest: Digest = image.digest.parse().unwrap();
    let got = up
        .manifest(&name, &Reference::Digest(by_digest), true)
        .await
        .unwrap();
    assert_eq!(got.digest.to_string(), image.digest);
    for (desc, data) in image.layer_descs.iter().zip(&image.layers) {
        let blob = up.blob(&name, &desc.digest.parse().unwrap()).await.unwrap();
        assert_eq!(blob.size, Some(data.len() as u64));
        let bytes: Vec<bytes::Bytes> = blob.stream.try_collect().await.unwrap();
        assert_eq!(bytes.concat(), *data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_token_flow_and_cache() {
    let (srv, image, _dir) = upstream("token").await;
    let up = Upstream::new(&UpstreamOptions::new(srv.base())).unwrap();
    fetch_all(&up, &image).await;
    // One token for the repository's pull scope, reused by every request.
    assert_eq!(up.tokens_fetched(), 1);
    fetch_all(&up, &image).await;
    assert_eq!(up.tokens_fetched(), 1);
    // Anonymous callers get nothing of private/**.
    let err = up
        .manifest(&repo("private/app"), &tag("v1"), true)
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::Unauthorized(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_token_and_basic_mode() {
    for mode in ["token", "basic"] {
        let (srv, image, _dir) = upstream(mode).await;
        let options = UpstreamOptions::new(srv.base()).with_credentials("puller", "secret");
        let up = Upstream::new(&options).unwrap();
        fetch_all(&up, &image).await;
        let private = up.manifest(&repo("private/app"), &tag("v1"), true).await;
        assert!(private.is_ok(), "{mode}: {private:?}");
        // Wrong credentials are refused, not retried forever.
        let wrong = UpstreamOptions::new(srv.base()).with_credentials("puller", "wrong");
        let err = Upstream::new(&wrong)
            .unwrap()
            .manifest(&repo("private/app"), &tag("v1"), true)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProxyError::Unauthorized(_)),
            "{mode}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_a_cache_tells_apart() {
    let (srv, _image, _dir) = upstream("token").await;
    let up = Upstream::new(&UpstreamOptions::new(srv.base())).unwrap();
    let name = repo("public/app");
    let err = up.manifest(&name, &tag("nope"), true).await.unwrap_err();
    assert!(matches!(err, ProxyError::NotFound(_)), "{err:?}");
    let missing = Digest::of(b"never pushed");
    let err = up.blob(&name, &missing).await.unwrap_err();
    assert!(matches!(err, ProxyError::NotFound(_)), "{err:?}");
    // Nobody listening.
    let dead = Upstream::new(&UpstreamOptions::new("http://127.0.0.1:9")).unwrap();
    let err = dead.manifest(&name, &tag("v1"), false).await.unwrap_err();
    assert!(matches!(err, ProxyError::Unreachable { .. }), "{err:?}");
    // Unusable configurations.
    for url in ["ftp://x", "not a url"] {
        assert!(matches!(
            Upstream::new(&UpstreamOptions::new(url)),
            Err(ProxyError::Config(_))
        ));
    }
}

/// A hostile upstream: serves the same bytes for every manifest, answers
/// `/v2/limited/...` with 429 and `Retry-After: 7`, and a manifest of
/// 5 MiB under `/v2/big/...`.
async fn hostile() -> String {
    use axum::http::{HeaderMap, StatusCode, Uri};
    async fn any(uri: Uri) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut headers = HeaderMap::new();
        let path = uri.path();
        if path.starts_with("/v2/limited/") {
            headers.insert("retry-after", "7".parse().unwrap());
            return (StatusCode::TOO_MANY_REQUESTS, headers, Vec::new());
        }
        headers.insert("content-type", OCI_MANIFEST.parse().unwrap());
        if path.starts_with("/v2/big/") {
            return (StatusCode::OK, headers, vec![b' '; 5 << 20]);
        }
        (
            StatusCode::OK,
            headers,
            b"{\"not\":\"what you asked for\"}".to_vec(),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(any))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_upstreams_are_caught() {
    let up = Upstream::new(&UpstreamOptions::new(hostile().await)).unwrap();
    // Bytes that are not the digest asked for are refused.
    let asked = Digest::of(b"what I asked for");
    let err = up
        .manifest(&repo("any/app"), &Reference::Digest(asked.clone()), true)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProxyError::DigestMismatch { expected, .. } if *expected == asked.to_string()),
        "{err:?}"
    );
    // Rate limits carry their Retry-After, and are honoured: until it
    // passes, nothing more is asked of that upstream (a request that
    // went would get the mismatching bytes above, not a 429).
    let limited = Upstream::new(&UpstreamOptions::new(hostile().await)).unwrap();
    let err = limited
        .manifest(&repo("limited/app"), &tag("v1"), false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProxyError::TooManyRequests { retry_after: Some(d) } if d.as_secs() == 7),
        "{err:?}"
    );
    let err = limited
        .manifest(&repo("any/app"), &Reference::Digest(asked.clone()), true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProxyError::TooManyRequests { retry_after: Some(d) } if (1..=7).contains(&d.as_secs())),
        "{err:?}"
    );
    // Manifests past the limit are refused without being held whole.
    let err = up
        .manifest(&repo("big/app"), &tag("v1"), true)
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::TooLarge { .. }), "{err:?}");
}
