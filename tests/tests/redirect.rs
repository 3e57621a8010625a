//! Redirects for pulls (`[storage] redirect = true`): blob `GET`s answer
//! `307` to a presigned URL of the store, and clients fetch the bytes from
//! the store, not through the registry. Against the in-process S3 server,
//! which verifies presigned signatures and their expiry as AWS does, and
//! counts each object's reads by how they were signed
//! (`S3Server::gets`): that is how these tests see that bytes did not flow
//! through the registry.

use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use oci_e2e::fake_upstream::FakeUpstream;
use oci_e2e::*;
use reqwest::StatusCode;
use reqwest::header::LOCATION;

/// `[storage]` turning redirects on, with URLs valid `expiry`.
fn redirecting(expiry: &str) -> String {
    format!("[storage]\nredirect = true\nredirect_expiry = \"{expiry}\"\n")
}

/// The S3 key of a blob's data under the test server's `registry` prefix.
fn blob_key(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap();
    format!("registry/blobs/sha256/{}/{hex}/data", &hex[..2])
}

/// A plain client that does not follow redirects and holds no registry
/// credentials: what fetching a `Location` by hand looks like.
fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `Location` of a `307` answer to a `GET` of `path`, checked to be a
/// presigned URL of the S3 server carrying `digest`.
async fn redirect_of(srv: &TestServer, path: &str, digest: &str) -> String {
    let resp = srv.get(path).await;
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT, "GET {path}");
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest)
    );
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    let location = header(&resp, LOCATION.as_str()).expect("a Location");
    let s3 = srv.s3().unwrap();
    let object = format!("{}/{}/{}", s3.endpoint(), s3.bucket(), blob_key(digest));
    assert!(
        location.starts_with(&format!("{object}?")),
        "{location} is not a URL of {object}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(resp.bytes().await.unwrap().is_empty());
    location
}

/// oci-client pulls an image from a redirecting registry: every blob
/// arrives byte-exact, and the S3 server served each through a presigned
/// URL only; the registry never read one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pulls_from_the_store() {
    let srv = TestServer::start_with_config(Backend::S3, &redirecting("5m")).await;
    let image = srv.push_image("team/app", "v1", 3).await;
    let pulled = srv
        .oci_client_pull("team/app", "v1", &RegistryAuth::Anonymous)
        .await;
    image.assert_pulled(&pulled);

    let s3 = srv.s3().unwrap();
    let blobs = image.layer_descs.iter().chain([&image.config_desc]);
    for desc in blobs {
        let gets = s3.gets(&blob_key(&desc.digest));
        assert_eq!(gets.signed, 0, "the registry read {}", desc.digest);
        assert!(gets.presigned >= 1, "{} not fetched from S3", desc.digest);
    }
    srv.stop().await;
}

/// The redirect as a client sees it: `307` with `Location` and
/// `Docker-Content-Digest`; the URL serves the blob, and a range of it;
/// `HEAD` answers here; missing, unlinked and unsatisfiable requests get
/// the registry's own errors, never a URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_answers_307_to_a_presigned_url() {
    let srv = TestServer::start_with_config(Backend::S3, &redirecting("5m")).await;
    let data = random_blob(100_000, 7);
    let digest = srv.push_blob("team/app", &data).await;
    let path = format!("/v2/team/app/blobs/{digest}");
    let location = redirect_of(&srv, &path, &digest).await;

    let fetched = bare().get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert!(fetched.bytes().await.unwrap() == data, "bytes differ");

    // A range is checked here, then asked of the store.
    let resp = srv
        .req(reqwest::Method::GET, &path)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = header(&resp, "location").unwrap();
    let part = bare()
        .get(&location)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert!(
        part.bytes().await.unwrap() == data[1000..2000],
        "range differs"
    );
    let resp = srv
        .req(reqwest::Method::GET, &path)
        .header("range", "bytes=200000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert!(header(&resp, "location").is_none());

    // HEAD: existence and size, from the registry.
    let resp = srv.head(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(header(&resp, "location").is_none());
    assert_eq!(header(&resp, "content-length"), Some("100000".into()));
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));

    // Unknown here: 404 BLOB_UNKNOWN, as without redirects.
    let missing = sha256_digest(b"never pushed");
    let resp = srv.get(&format!("/v2/team/app/blobs/{missing}")).await;
    assert!(header(&resp, "location").is_none());
    assert_error(resp, 404, &["BLOB_UNKNOWN"]).await;
    let resp = srv.get(&format!("/v2/team/other/blobs/{digest}")).await;
    assert!(header(&resp, "location").is_none());
    assert_error(resp, 404, &["BLOB_UNKNOWN"]).await;
    // The registry never streamed the blob.
    assert_eq!(srv.s3().unwrap().gets(&blob_key(&digest)).signed, 0);
    srv.stop().await;
}

/// A presigned URL is refused by the store once tampered with or expired
/// (`redirect_expiry = "3s"`); a fresh `GET` gets a fresh URL.
///
/// `X-Amz-Date` has whole seconds, so a URL signed at `t` is valid until
/// somewhere in `(t + 2 s, t + 3 s]`. The checks that need a URL still
/// valid (its fetch, and the altered URL's refusal, which must be for the
/// signature, not the age) must end within two seconds of the start of
/// the `GET` that signed it, measured here; a loaded machine that
/// overruns that window proves nothing, and the round is tried again with
/// a fresh URL, a bounded number of times. The expired check comes more
/// than three seconds after the signing `GET` ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_expire_and_cannot_be_altered() {
    const EXPIRY: Duration = Duration::from_secs(3);
    const VALID: Duration = Duration::from_secs(2);
    const ROUNDS: usize = 5;
    let srv = TestServer::start_with_config(Backend::S3, &redirecting("3s")).await;
    let data = random_blob(5_000, 8);
    let digest = srv.push_blob("team/app", &data).await;
    let other = srv.push_blob("team/app", b"another blob").await;
    let path = format!("/v2/team/app/blobs/{digest}");
    let hex = |d: &str| d.strip_prefix("sha256:").unwrap().to_owned();
    let mut kept = None;
    for round in 0..ROUNDS {
        let asked = Instant::now();
        let location = redirect_of(&srv, &path, &digest).await;
        let signed_by = Instant::now();
        assert!(location.contains("X-Amz-Expires=3&"), "{location}");
        let fetched = bare().get(&location).send().await.unwrap().status();
        // The signature covers the key: it does not open another blob.
        let moved = location.replace(&hex(&digest), &hex(&other)).replace(
            &format!("/{}/", &hex(&digest)[..2]),
            &format!("/{}/", &hex(&other)[..2]),
        );
        assert_ne!(moved, location);
        let altered = bare().get(&moved).send().await.unwrap().status();
        if asked.elapsed() >= VALID {
            eprintln!("round {round}: the window passed before the checks ended; again");
            continue;
        }
        assert_eq!(fetched, StatusCode::OK);
        assert_eq!(altered, StatusCode::FORBIDDEN);
        kept = Some((location, signed_by));
        break;
    }
    let Some((location, signed_by)) = kept else {
        panic!("every round overran the {VALID:?} window: the machine is too slow to tell");
    };

    tokio::time::sleep_until((signed_by + EXPIRY + Duration::from_millis(200)).into()).await;
    let resp = bare().get(&location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap().contains("expired"));

    for round in 0..ROUNDS {
        let asked = Instant::now();
        let fresh = redirect_of(&srv, &path, &digest).await;
        let resp = bare().get(&fresh).send().await.unwrap();
        let status = resp.status();
        let body = resp.bytes().await.unwrap();
        if asked.elapsed() >= VALID {
            eprintln!("round {round}: the fresh URL's window passed; again");
            continue;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(body == data);
        srv.stop().await;
        return;
    }
    panic!("every round overran the {VALID:?} window: the machine is too slow to tell");
}

/// Access control runs first: an anonymous client gets `401`, a user who
/// may not pull the repository `403`, neither a URL. A user who may pull
/// follows the redirect with oci-client, whose credentials are not sent
/// on to the store (another host:port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_readers_get_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let entry =
        |user: &str, password: &str| format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap());
    std::fs::write(
        &htpasswd,
        entry("owner", "ownerpass") + &entry("stranger", "strangerpass"),
    )
    .unwrap();
    let config = format!(
        "{}[auth]\nmode = \"basic\"\nhtpasswd = {htpasswd:?}\n[access]\nadmins = [\"owner\"]\n\
         [[access.rules]]\nrepositories = [\"public/**\"]\nauthenticated = true\nactions = [\"pull\"]\n",
        redirecting("5m")
    );
    let mut srv = TestServer::start_with_config(Backend::S3, &config).await;
    srv.authorize(&format!("Basic {}", base64(b"owner:ownerpass")));
    let image = srv.push_image("team/app", "v1", 1).await;
    let digest = image.layer_descs[0].digest.clone();
    let path = format!("/v2/team/app/blobs/{digest}");
    redirect_of(&srv, &path, &digest).await;

    let anonymous = bare().get(srv.url(&path)).send().await.unwrap();
    assert!(header(&anonymous, "location").is_none());
    assert_error(anonymous, 401, &["UNAUTHORIZED"]).await;
    let stranger = bare()
        .get(srv.url(&path))
        .header(
            "authorization",
            format!("Basic {}", base64(b"stranger:strangerpass")),
        )
        .send()
        .await
        .unwrap();
    assert!(header(&stranger, "location").is_none());
    assert_error(stranger, 403, &["DENIED"]).await;

    let owner = RegistryAuth::Basic("owner".into(), "ownerpass".into());
    let pulled = srv.oci_client_pull("team/app", "v1", &owner).await;
    assert!(pulled.layers[0].data == image.layers[0], "layer differs");
    let gets = srv.s3().unwrap().gets(&blob_key(&digest));
    assert_eq!((gets.signed, gets.presigned), (0, 1));
    srv.stop().await;
}

/// Redirects are off by default: the registry streams the blob itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_the_registry_streams() {
    let srv = TestServer::start(Backend::S3).await;
    let data = random_blob(50_000, 9);
    let digest = srv.push_blob("team/app", &data).await;
    let resp = srv.get(&format!("/v2/team/app/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(header(&resp, "location").is_none());
    assert!(resp.bytes().await.unwrap() == data);
    let gets = srv.s3().unwrap().gets(&blob_key(&digest));
    assert_eq!((gets.signed, gets.presigned), (1, 0));
    srv.stop().await;
}

/// A pull-through cache: a cold blob (being fetched from upstream) is
/// streamed by the registry; once stored, it is redirected like a local
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_blob_is_redirected_once_cached() {
    let fake = FakeUpstream::start().await;
    let (blob, digest) = fake.add_random_blob(300_000, 12);
    let config = format!(
        "{}[[proxy]]\nprefix = \"hub\"\nurl = \"{}\"\n",
        redirecting("5m"),
        fake.url()
    );
    let srv = TestServer::start_with_config(Backend::S3, &config).await;
    let path = format!("/v2/hub/library/app/blobs/{digest}");
    let cold = srv.get(&path).await;
    assert_eq!(cold.status(), StatusCode::OK);
    assert!(header(&cold, "location").is_none());
    assert!(cold.bytes().await.unwrap() == blob, "cold bytes differ");

    // Stored right after it was served; a loaded machine may take a while.
    let digest_parsed = digest.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !srv.storage().blob_stored(&digest_parsed).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "the fetched blob was not cached within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let location = redirect_of(&srv, &path, &digest).await;
    let resp = bare().get(&location).send().await.unwrap();
    assert!(resp.bytes().await.unwrap() == blob, "warm bytes differ");
    srv.stop().await;
}

/// On Azure (Azurite, with the emulator's account key): the `Location` is
/// a service SAS URL of the blob, and oci-client pulls through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_redirects_to_a_sas_url() {
    if !oci_test_azurite::available() {
        return oci_test_azurite::skip_note();
    }
    let srv = TestServer::start_with_config(Backend::Azure, &redirecting("5m")).await;
    let image = srv.push_image("team/app", "v1", 2).await;
    let desc = &image.layer_descs[0];
    let resp = srv
        .get(&format!("/v2/team/app/blobs/{}", desc.digest))
        .await;
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        header(&resp, "docker-content-digest"),
        Some(desc.digest.clone())
    );
    let location = header(&resp, "location").unwrap();
    let hex = desc.digest.strip_prefix("sha256:").unwrap();
    assert!(
        location.contains(&format!("/registry/blobs/sha256/{}/{hex}/data?", &hex[..2])),
        "{location}"
    );
    assert!(location.contains("sig="), "{location}");
    let fetched = bare().get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert!(fetched.bytes().await.unwrap() == image.layers[0]);
    // Signed for that blob only.
    let other = location.replace("/data?", "/data2?");
    let refused = bare().get(&other).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let pulled = srv
        .oci_client_pull("team/app", "v1", &RegistryAuth::Anonymous)
        .await;
    image.assert_pulled(&pulled);
    srv.stop().await;
}

/// A redirected whole-blob `GET` is a blob pull event with the blob's size
/// (as a `200` is); a redirected ranged `GET` is none (as a `206` is not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_pull_is_a_pull_event() {
    let receiver = receiver::Receiver::start().await;
    let config = format!(
        "{}[notifications]\npoll = \"50ms\"\n[[notifications.endpoints]]\nname = \"hook\"\n\
         url = \"{}\"\nevents = [\"pull\"]\nblobs = true\n",
        redirecting("5m"),
        receiver.url()
    );
    let srv = TestServer::start_with_config(Backend::S3, &config).await;
    let digest = srv.push_blob("team/app", b"layer bytes").await;
    let path = format!("/v2/team/app/blobs/{digest}");
    let ranged = srv
        .req(reqwest::Method::GET, &path)
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::TEMPORARY_REDIRECT);
    redirect_of(&srv, &path, &digest).await;
    let got = receiver.wait_requests(1, Duration::from_secs(60)).await;
    let events: Vec<serde_json::Value> = got.iter().flat_map(|r| r.events()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["action"], "pull");
    assert_eq!(events[0]["target"]["digest"], digest.as_str());
    assert_eq!(events[0]["target"]["size"], 11);
    // Nothing else arrives (the ranged GET was no event).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all: usize = receiver.received().iter().map(|r| r.events().len()).sum();
    assert_eq!(all, 1);
    srv.stop().await;
}
