//! Access control over real HTTP (`[auth]` and `[access]`, built as
//! `oci-registry serve` builds them): basic and token mode, the denial
//! matrix of every endpoint for anonymous, read-only, push-only and admin
//! callers, hostile tokens, the filtered catalog, mounts, brute-force
//! throttling, OIDC workload identity, refresh tokens, the signing key
//! shared through storage, and `oci-client` logging in.
//!
//! Expectations come from distribution's `docs/spec/auth/token.md` (the
//! challenge, the token response, `insufficient_scope`) and the
//! distribution-spec's `UNAUTHORIZED`/`DENIED` codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use oci_auth::{AccessEntry, SigningKey, TokenClaims};
use oci_e2e::*;
use oci_http::reload::Reload;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Setup

/// Accounts of the tests and their passwords.
const USERS: [(&str, &str); 4] = [
    ("admin", "admin-pw"),
    ("reader", "reader-pw"),
    ("pusher", "pusher-pw"),
    ("mounter", "mounter-pw"),
];

/// The policy: `reader` may pull `team/**`, `pusher` may only push there,
/// `mounter` may pull `src/**` and push `team/**`; everyone may pull
/// `public/**`.
const ACCESS: &str = r#"
[access]
admins = ["admin"]
[[access.rules]]
repositories = ["team/**"]
users = ["reader"]
actions = ["pull"]
[[access.rules]]
repositories = ["team/**"]
users = ["pusher", "mounter"]
actions = ["push"]
[[access.rules]]
repositories = ["src/**"]
users = ["mounter"]
actions = ["pull"]
[[access.rules]]
repositories = ["public/**"]
anonymous = true
actions = ["pull"]
"#;

/// Files a configuration names, in a temporary directory.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    /// The htpasswd file of [`USERS`] (bcrypt, cost 4 to keep tests fast).
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for (user, password) in USERS {
            text.push_str(&format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap()));
        }
        std::fs::write(dir.path().join("htpasswd"), text).unwrap();
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

/// Which mode a test runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Basic,
    Token,
}

/// `[auth]` for `mode` with the accounts of `files` and `extra` lines
/// (more `[auth.token]` keys), then [`ACCESS`].
fn config(mode: Mode, files: &Files, extra: &str) -> String {
    let mode = match mode {
        Mode::Basic => "basic",
        Mode::Token => "token",
    };
    format!(
        "[auth]\nmode = \"{mode}\"\nhtpasswd = {:?}\n[auth.token]\nservice = \"registry.test\"\nissuer = \"issuer.test\"\n{extra}\n{ACCESS}",
        files.path("htpasswd")
    )
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn password(user: &str) -> &'static str {
    USERS.iter().find(|(u, _)| *u == user).unwrap().1
}

/// A token from the built-in issuer for `user` (`None`: anonymous) and
/// `scopes`.
async fn token(srv: &TestServer, user: Option<&str>, scopes: &[&str]) -> String {
    let resp = token_request(srv, user.map(|u| basic(u, password(u))), scopes).await;
    assert_eq!(resp.status(), StatusCode::OK, "token for {user:?}");
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn token_request(
    srv: &TestServer,
    authorization: Option<String>,
    scopes: &[&str],
) -> reqwest::Response {
    let mut query: Vec<(&str, &str)> = vec![("service", "registry.test")];
    query.extend(scopes.iter().map(|s| ("scope", *s)));
    let mut req = reqwest::Client::new()
        .get(srv.url("/auth/token"))
        .query(&query);
    if let Some(authorization) = authorization {
        req = req.header("authorization", authorization);
    }
    req.send().await.unwrap()
}

/// The `Authorization` header `who` sends in `mode` for requests on
/// `scopes` (token mode fetches a token first; anonymous callers of token
/// mode fetch an anonymous one, as clients do).
async fn credentials(srv: &TestServer, mode: Mode, who: Who, scopes: &[&str]) -> Option<String> {
    match (mode, who.user()) {
        (Mode::Basic, None) => None,
        (Mode::Basic, Some(user)) => Some(basic(user, password(user))),
        (Mode::Token, user) => Some(format!("Bearer {}", token(srv, user, scopes).await)),
    }
}

/// A server in `mode` with an admin-pushed image at `team/app:v1`, an
/// upload session per caller, and an image per caller to delete.
async fn server(mode: Mode, files: &Files) -> TestServer {
    let mut srv = TestServer::start_with_auth(Backend::Memory, &config(mode, files, "")).await;
    let scopes: Vec<String> = std::iter::once("team/app".to_owned())
        .chain((0..4).map(|i| format!("team/del-{i}")))
        .map(|repo| format!("repository:{repo}:pull,push,delete"))
        .collect();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let admin = credentials(&srv, mode, Who::Admin, &scopes).await.unwrap();
    srv.authorize(&admin);
    srv.push_image("team/app", "v1", 1).await;
    srv
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Reader,
    Pusher,
    Admin,
}

impl Who {
    const ALL: [Who; 4] = [Who::Anonymous, Who::Reader, Who::Pusher, Who::Admin];

    fn user(self) -> Option<&'static str> {
        match self {
            Who::Anonymous => None,
            Who::Reader => Some("reader"),
            Who::Pusher => Some("pusher"),
            Who::Admin => Some("admin"),
        }
    }

    /// What the policy gives this caller on `team/**`.
    fn may(self, need: &str) -> bool {
        match (self, need) {
            (Who::Admin, _) => true,
            (Who::Reader, "pull") | (Who::Pusher, "push") => true,
            (Who::Anonymous, "login") => false,
            (_, "login") => true,
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------
// The denial matrix

/// One request of the matrix: what it needs, and the request.
struct Case {
    need: &'static str,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    content_type: Option<&'static str>,
}

/// Every endpoint of the API × anonymous, read-only, push-only and admin
/// callers, in `mode`. Allowed requests succeed (2xx); denied ones get 401
/// `UNAUTHORIZED` with a challenge (anonymous callers, and tokens lacking
/// the scope: `error="insufficient_scope"`) or, in basic mode, 403 `DENIED`
/// for a logged-in user; nothing denied changes what is stored.
async fn denial_matrix(mode: Mode) {
    let files = Files::new();
    let srv = server(mode, &files).await;
    let admin = srv.http().clone();
    let scope = "repository:team/app:pull,push,delete";
    let img = {
        let resp = admin
            .get(srv.url("/v2/team/app/manifests/v1"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.bytes().await.unwrap().to_vec()
    };
    let digest = sha256_digest(&img);
    let layer = {
        let m: Value = serde_json::from_slice(&img).unwrap();
        m["layers"][0]["digest"].as_str().unwrap().to_owned()
    };
    let mut findings = Vec::new();
    for who in Who::ALL {
        let auth = credentials(&srv, mode, who, &[scope]).await;
        // A session of the admin's for the session endpoints; content of
        // its own for the deletes.
        let session = srv.start_upload("team/app").await;
        let blob = random_blob(100, who as u64);
        let blob_digest = sha256_digest(&blob);
        let own = format!("team/del-{}", who as u8);
        let own_img = srv.push_image(&own, "v1", 1).await;
        let own_layer = own_img.layer_descs[0].digest.clone();
        let cases = [
            Case::get("login", "/v2/"),
            Case::get("pull", "/v2/team/app/manifests/v1"),
            Case::head("pull", "/v2/team/app/manifests/v1"),
            Case::get("pull", &format!("/v2/team/app/manifests/{digest}")),
            Case::get("pull", &format!("/v2/team/app/blobs/{layer}")),
            Case::head("pull", &format!("/v2/team/app/blobs/{layer}")),
            Case::get("pull", "/v2/team/app/tags/list"),
            Case::get("pull", &format!("/v2/team/app/referrers/{digest}")),
            Case::put_manifest("/v2/team/app/manifests/v2", &img),
            Case {
                need: "push",
                method: Method::POST,
                path: format!("/v2/team/app/blobs/uploads/?digest={blob_digest}"),
                body: Some(blob),
                content_type: Some("application/octet-stream"),
            },
            Case::new("push", Method::POST, "/v2/team/app/blobs/uploads/"),
            Case::get("push", &session),
            Case {
                need: "push",
                method: Method::PATCH,
                path: session.clone(),
                body: Some(b"abc".to_vec()),
                content_type: Some("application/octet-stream"),
            },
            Case::new("push", Method::DELETE, &session),
            Case::new("delete", Method::DELETE, &format!("/v2/{own}/manifests/v1")),
            Case::new(
                "delete",
                Method::DELETE,
                &format!("/v2/{own}/manifests/{}", own_img.digest),
            ),
            Case::new(
                "delete",
                Method::DELETE,
                &format!("/v2/{own}/blobs/{own_layer}"),
            ),
        ];
        for case in cases {
            // In token mode, a caller's token covers team/app; the deletes
            // of their own repository need a token for it.
            let auth = if mode == Mode::Token && case.path.contains("/del-") {
                let scope = format!("repository:{own}:pull,push,delete");
                credentials(&srv, mode, who, &[&scope]).await
            } else {
                auth.clone()
            };
            let mut req = reqwest::Client::new().request(case.method.clone(), srv.url(&case.path));
            if let Some(auth) = &auth {
                req = req.header("authorization", auth);
            }
            if let Some(ct) = case.content_type {
                req = req.header("content-type", ct);
            }
            if let Some(body) = case.body.clone() {
                req = req.body(body);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let label = format!("{mode:?} {who:?} {} {}", case.method, case.path);
            let allowed = who.may(case.need) || (mode == Mode::Token && case.need == "login");
            if allowed {
                if !status.is_success() {
                    findings.push(format!("{label}: {status}, expected success"));
                }
                continue;
            }
            let challenge = header(&resp, "www-authenticate");
            let logged_in = who != Who::Anonymous || mode == Mode::Token;
            let expected = match (mode, logged_in) {
                (Mode::Basic, true) => (403, "DENIED"),
                _ => (401, "UNAUTHORIZED"),
            };
            if status.as_u16() != expected.0 {
                findings.push(format!("{label}: {status}, expected {}", expected.0));
                continue;
            }
            if case.method != Method::HEAD {
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                if body["errors"][0]["code"] != expected.1 {
                    findings.push(format!("{label}: body {body}"));
                }
            }
            let basic_challenge = "Basic realm=\"oci-registry\",charset=\"UTF-8\"";
            let token_challenge = format!(
                "Bearer realm=\"{}/auth/token\",service=\"registry.test\"",
                srv.base()
            );
            let good_challenge = match (mode, expected.0) {
                (Mode::Basic, 401) => challenge.as_deref() == Some(basic_challenge),
                (Mode::Basic, _) => true,
                (Mode::Token, _) => challenge.as_deref().is_some_and(|c| {
                    c.starts_with(&token_challenge)
                        && c.contains("scope=\"repository:team/")
                        && c.contains("error=\"insufficient_scope\"")
                }),
            };
            if !good_challenge {
                findings.push(format!("{label}: challenge {challenge:?}"));
            }
        }
    }
    assert!(
        findings.is_empty(),
        "{} deviations:\n{}",
        findings.len(),
        findings.join("\n")
    );
    // Nothing denied was written: the tag `v2` exists only if someone
    // allowed pushed it, and the image is intact.
    let resp = admin
        .get(srv.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().to_vec(), img);
}

impl Case {
    fn new(need: &'static str, method: Method, path: &str) -> Case {
        Case {
            need,
            method,
            path: path.to_owned(),
            body: None,
            content_type: None,
        }
    }

    fn get(need: &'static str, path: &str) -> Case {
        Case::new(need, Method::GET, path)
    }

    fn head(need: &'static str, path: &str) -> Case {
        Case::new(need, Method::HEAD, path)
    }

    fn put_manifest(path: &str, manifest: &[u8]) -> Case {
        Case {
            need: "push",
            method: Method::PUT,
            path: path.to_owned(),
            body: Some(manifest.to_vec()),
            content_type: Some(OCI_MANIFEST),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denial_matrix_basic() {
    denial_matrix(Mode::Basic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denial_matrix_token() {
    denial_matrix(Mode::Token).await;
}

/// Without credentials, `/v2/` answers 401 with the mode's challenge, as
/// clients expect before they log in (token.md: "the registry will
/// respond with a 401 ... WWW-Authenticate").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_challenged_to_log_in() {
    let files = Files::new();
    for (mode, challenge) in [
        (
            Mode::Basic,
            "Basic realm=\"oci-registry\",charset=\"UTF-8\"".to_owned(),
        ),
        (Mode::Token, String::new()),
    ] {
        let srv = TestServer::start_with_auth(Backend::Memory, &config(mode, &files, "")).await;
        let resp = reqwest::get(srv.url("/v2/")).await.unwrap();
        let got = header(&resp, "www-authenticate").unwrap();
        let want = match mode {
            Mode::Basic => challenge,
            Mode::Token => format!(
                "Bearer realm=\"{}/auth/token\",service=\"registry.test\"",
                srv.base()
            ),
        };
        assert_eq!(got, want);
        assert_error(resp, 401, &["UNAUTHORIZED"]).await;
        // Wrong passwords and unknown users are refused alike.
        for auth in [basic("admin", "nope"), basic("nobody", "admin-pw")] {
            let resp = reqwest::Client::new()
                .get(srv.url("/v2/"))
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{mode:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Hostile tokens

/// Signs `claims` with `key` (a registry token as an attacker or a broken
/// issuer would make it).
fn sign(key: &SigningKey, claims: &TokenClaims) -> String {
    key.sign(claims).unwrap()
}

fn claims(scope_name: &str, actions: &[&str]) -> TokenClaims {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    TokenClaims {
        iss: "issuer.test".into(),
        sub: "admin".into(),
        aud: "registry.test".into(),
        exp: now + 300,
        nbf: now,
        iat: now,
        jti: "t".into(),
        access: vec![AccessEntry {
            kind: "repository".into(),
            name: scope_name.into(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }],
    }
}

/// Tokens that are expired, not yet valid, for another audience, from
/// another issuer, signed by another key, with `alg: none`, with tampered
/// claims, or for another repository are all refused with 401; a good
/// token signed by the configured key works (so the refusals are not an
/// accident of setup), and so does one within the clock-skew allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_are_refused() {
    let files = Files::new();
    let pem = SigningKey::generate_pem().unwrap();
    let key_file = files.write("token.pem", &pem);
    let extra = format!("signing_key = {key_file:?}");
    let mut srv =
        TestServer::start_with_auth(Backend::Memory, &config(Mode::Token, &files, &extra)).await;
    let key = SigningKey::from_pem(&pem).unwrap();
    let other = SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap();
    srv.authorize(&format!(
        "Bearer {}",
        sign(&key, &claims("team/app", &["pull", "push"]))
    ));
    srv.push_image("team/app", "v1", 1).await;
    let path = "/v2/team/app/manifests/v1";

    let good = claims("team/app", &["pull"]);
    let skewed = TokenClaims {
        nbf: good.nbf + 10,
        iat: good.iat + 10,
        ..good.clone()
    };
    let ok = [sign(&key, &good), sign(&key, &skewed)];
    for t in &ok {
        let resp = get_with(&srv, path, &format!("Bearer {t}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    let tampered = {
        let t = sign(&key, &good);
        let parts: Vec<&str> = t.split('.').collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["access"][0]["name"] = json!("team/other");
        payload["sub"] = json!("admin2");
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let none = {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good).unwrap());
        format!("{header}.{payload}.")
    };
    let now = good.iat;
    let hostile = [
        (
            "expired",
            sign(
                &key,
                &TokenClaims {
                    exp: now - 120,
                    nbf: now - 600,
                    iat: now - 600,
                    ..good.clone()
                },
            ),
        ),
        (
            "not yet valid",
            sign(
                &key,
                &TokenClaims {
                    nbf: now + 600,
                    iat: now,
                    ..good.clone()
                },
            ),
        ),
        (
            "other audience",
            sign(
                &key,
                &TokenClaims {
                    aud: "elsewhere".into(),
                    ..good.clone()
                },
            ),
        ),
        (
            "other issuer",
            sign(
                &key,
                &TokenClaims {
                    iss: "evil".into(),
                    ..good.clone()
                },
            ),
        ),
        ("other key", sign(&other, &good)),
        ("alg none", none),
        ("tampered", tampered),
        (
            "other repository",
            sign(&key, &claims("team/other", &["pull"])),
        ),
        ("garbage", "not.a.token".into()),
    ];
    for (what, t) in hostile {
        let resp = get_with(&srv, path, &format!("Bearer {t}")).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
        let challenge = header(&resp, "www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm="),
            "{what}: {challenge}"
        );
        assert_error(resp, 401, &["UNAUTHORIZED"]).await;
    }
    // The refresh-token audience is not an access token.
    let refresh = sign(
        &key,
        &TokenClaims {
            aud: "registry.test#refresh".into(),
            ..good.clone()
        },
    );
    let resp = get_with(&srv, path, &format!("Bearer {refresh}")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

async fn get_with(srv: &TestServer, path: &str, authorization: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(srv.url(path))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// The token endpoint

/// The token response (token.md): `token`, `access_token`, `expires_in`,
/// `issued_at`; the claims hold only the intersection of what was asked
/// and what the policy grants; anonymous callers get what anonymous may
/// do; unknown scopes are ignored; another service is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_hold_what_was_asked_and_granted() {
    let files = Files::new();
    let srv = TestServer::start_with_auth(Backend::Memory, &config(Mode::Token, &files, "")).await;
    let resp = token_request(
        &srv,
        Some(basic("reader", "reader-pw")),
        &[
            "repository:team/app:pull,push",
            "repository:public/x:pull",
            "repository:secret/x:pull",
            "registry:catalog:*",
            "frobnicate:x:y",
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    assert!(body.get("refresh_token").is_none());
    let claims = payload(body["token"].as_str().unwrap());
    assert_eq!(claims["sub"], "reader");
    assert_eq!(claims["aud"], "registry.test");
    assert_eq!(claims["iss"], "issuer.test");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(
        claims["access"],
        json!([
            {"type": "repository", "name": "team/app", "actions": ["pull"]},
            {"type": "repository", "name": "public/x", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );
    let header = token_header(body["token"].as_str().unwrap());
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()));

    let anon = token(
        &srv,
        None,
        &["repository:team/app:pull", "repository:public/x:pull"],
    )
    .await;
    let claims = payload(&anon);
    assert_eq!(claims["sub"], "");
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "public/x", "actions": ["pull"]}])
    );

    let resp = reqwest::Client::new()
        .get(srv.url("/auth/token?service=elsewhere&scope=repository:public/x:pull"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = token_request(&srv, Some(basic("reader", "wrong")), &[]).await;
    assert_error(resp, 401, &["UNAUTHORIZED"]).await;
    // A request for thousands of scopes is refused, not signed.
    let many: Vec<String> = (0..1000)
        .map(|i| format!("repository:public/r{i}:pull"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let resp = token_request(&srv, None, &many).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn token_header(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// OAuth2 (distribution's `oauth.md`): `POST /auth/token` with
/// `grant_type=password` and `access_type=offline` returns a refresh
/// token; `grant_type=refresh_token` trades it for a new access token;
/// a refresh token is no access token, and a deleted account's refresh
/// token stops working once the accounts reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_refresh_grants() {
    let files = Files::new();
    let srv = TestServer::start_with_auth(Backend::Memory, &config(Mode::Token, &files, "")).await;
    let post = |form: Vec<(&'static str, String)>| {
        let url = srv.url("/auth/token");
        async move {
            reqwest::Client::new()
                .post(url)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    let resp = post(vec![
        ("grant_type", "password".into()),
        ("username", "reader".into()),
        ("password", "reader-pw".into()),
        ("service", "registry.test".into()),
        (
            "scope",
            "repository:team/app:pull repository:public/x:pull".into(),
        ),
        ("access_type", "offline".into()),
        ("client_id", "test".into()),
    ])
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["scope"],
        "repository:team/app:pull repository:public/x:pull"
    );
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(payload(&refresh)["aud"], "registry.test#refresh");
    let resp = get_with(&srv, "/v2/", &format!("Bearer {refresh}")).await;
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "a refresh token is no access token"
    );

    let resp = post(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh.clone()),
        ("service", "registry.test".into()),
        ("scope", "repository:team/app:pull,push".into()),
    ])
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let claims = payload(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "reader");
    assert_eq!(claims["access"][0]["actions"], json!(["pull"]));

    for bad in [
        vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", "x.y.z".into()),
        ],
        vec![
            ("grant_type", "password".into()),
            ("username", "reader".into()),
            ("password", "no".into()),
        ],
        vec![("grant_type", "client_credentials".into())],
    ] {
        let resp = post(bad).await;
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }

    // The account goes away: its refresh token stops working.
    let mut text = String::new();
    for (user, pw) in USERS.iter().filter(|(u, _)| *u != "reader") {
        text.push_str(&format!("{user}:{}\n", bcrypt::hash(pw, 4).unwrap()));
    }
    std::fs::write(files.path("htpasswd"), text).unwrap();
    srv.auth()
        .unwrap()
        .options()
        .authenticator
        .reload()
        .unwrap();
    let resp = post(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh),
    ])
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------
// Catalog and mounts

/// The catalog lists only the repositories the caller may pull from, with
/// pagination over what they see; an anonymous caller sees the public
/// ones; a push-only user sees what everyone sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_filtered() {
    let files = Files::new();
    for mode in [Mode::Basic, Mode::Token] {
        let mut srv = TestServer::start_with_auth(Backend::Memory, &config(mode, &files, "")).await;
        let repos = [
            "a/secret",
            "public/one",
            "public/two",
            "src/lib",
            "team/app",
            "team/web",
            "zz/other",
        ];
        let scopes: Vec<String> = repos
            .iter()
            .map(|r| format!("repository:{r}:pull,push"))
            .collect();
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let admin = credentials(&srv, mode, Who::Admin, &scopes).await.unwrap();
        srv.authorize(&admin);
        for repo in repos {
            srv.push_blob(repo, repo.as_bytes()).await;
        }
        for (who, want) in [
            (Some("admin"), repos.to_vec()),
            (
                Some("reader"),
                vec!["public/one", "public/two", "team/app", "team/web"],
            ),
            (Some("mounter"), vec!["public/one", "public/two", "src/lib"]),
            (Some("pusher"), vec!["public/one", "public/two"]),
            (None, vec!["public/one", "public/two"]),
        ] {
            let auth = match (mode, who) {
                (Mode::Basic, Some(u)) => Some(basic(u, password(u))),
                (Mode::Basic, None) => None,
                (Mode::Token, u) => Some(format!(
                    "Bearer {}",
                    token(&srv, u, &["registry:catalog:*"]).await
                )),
            };
            let list = |path: String| {
                let mut req = reqwest::Client::new().get(srv.url(&path));
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                async move { req.send().await.unwrap() }
            };
            let resp = list("/v2/_catalog".into()).await;
            assert_eq!(resp.status(), StatusCode::OK, "{mode:?} {who:?}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["repositories"], json!(want), "{mode:?} {who:?}");
            // Page by page: n=1 walks exactly the visible names.
            let mut seen = Vec::new();
            let mut path = "/v2/_catalog?n=1".to_owned();
            loop {
                let resp = list(path.clone()).await;
                let next = next_link(&resp);
                let body: Value = resp.json().await.unwrap();
                seen.extend(
                    body["repositories"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_owned()),
                );
                match next {
                    Some(next) => path = next,
                    None => break,
                }
                assert!(
                    seen.len() <= want.len(),
                    "{mode:?} {who:?}: runaway pagination {seen:?}"
                );
            }
            assert_eq!(seen, want, "{mode:?} {who:?} paginated");
        }
        // Token mode: a token without the catalog scope may not list.
        if mode == Mode::Token {
            let t = token(&srv, Some("reader"), &["repository:team/app:pull"]).await;
            let resp = get_with(&srv, "/v2/_catalog", &format!("Bearer {t}")).await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            let c = header(&resp, "www-authenticate").unwrap();
            assert!(c.contains("scope=\"registry:catalog:*\""), "{c}");
        }
    }
}

/// A mount with `from` needs pull on `from`: `pusher` (push on `team/**`,
/// no pull) mounting from `src/lib` gets a plain upload session (202) and
/// nothing is linked; `mounter` (pull on `src/**`) mounts (201). An
/// automatic mount (no `from`) by a caller who cannot read everywhere
/// falls back to an upload too; the admin's mounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_need_pull_on_the_source() {
    let files = Files::new();
    for mode in [Mode::Basic, Mode::Token] {
        let mut srv = TestServer::start_with_auth(Backend::Memory, &config(mode, &files, "")).await;
        let all = [
            "repository:src/lib:pull,push",
            "repository:team/a:pull,push",
            "repository:team/b:pull,push",
        ];
        let admin = credentials(&srv, mode, Who::Admin, &all).await.unwrap();
        srv.authorize(&admin);
        let digest = srv.push_blob("src/lib", b"secret layer").await;
        let mount = |repo: &str, from: Option<&str>| match from {
            Some(from) => format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
            None => format!("/v2/{repo}/blobs/uploads/?mount={digest}"),
        };
        let as_user = |user: &'static str| {
            let srv = &srv;
            async move {
                match mode {
                    Mode::Basic => basic(user, password(user)),
                    Mode::Token => format!(
                        "Bearer {}",
                        token(
                            srv,
                            Some(user),
                            &["repository:team/a:pull,push", "repository:src/lib:pull"]
                        )
                        .await
                    ),
                }
            }
        };
        for (user, repo, from, status) in [
            ("pusher", "team/a", Some("src/lib"), 202),
            ("pusher", "team/a", None, 202),
            ("mounter", "team/a", None, 202),
            ("mounter", "team/a", Some("src/lib"), 201),
        ] {
            let resp = reqwest::Client::new()
                .post(srv.url(&mount(repo, from)))
                .header("authorization", as_user(user).await)
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status().as_u16(),
                status,
                "{mode:?} {user} from {from:?}"
            );
            let linked = srv
                .head(&format!("/v2/{repo}/blobs/{digest}"))
                .await
                .status();
            let want = if status == 201 {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(linked, want, "{mode:?} {user} from {from:?}: linked?");
            if status == 201 {
                srv.delete(&format!("/v2/{repo}/blobs/{digest}")).await;
            }
        }
        // The admin reads everywhere: an automatic mount links.
        let resp = srv
            .req(Method::POST, &mount("team/b", None))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "{mode:?} admin automatic mount"
        );
    }
}

// ---------------------------------------------------------------------------
// Throttling

/// Failed logins slow down, then get 429 with `Retry-After`; the right
/// password from the same address is refused while throttled, but the same
/// user from another address logs in at once (an attacker cannot lock a
/// user out), and so does another user from the attacker's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_is_throttled_per_user_and_address() {
    let files = Files::new();
    let srv = TestServer::start_with_auth(Backend::Memory, &config(Mode::Basic, &files, "")).await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let attacker = from([127, 0, 0, 1]);
    let elsewhere = from([127, 0, 0, 2]);
    let login = |client: &reqwest::Client, user: &str, pw: &str| {
        client
            .get(srv.url("/v2/"))
            .header("authorization", basic(user, pw))
            .send()
    };
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let resp = login(&attacker, "reader", &format!("guess{i}"))
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(header(&resp, "retry-after").is_some_and(|s| s.parse::<u64>().unwrap() > 0));
            assert_error(resp, 429, &["TOOMANYREQUESTS"]).await;
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| *s == 401),
        "{statuses:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "failures were not slowed down"
    );
    let resp = login(&attacker, "reader", "reader-pw").await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "throttled even with the password"
    );
    let resp = login(&elsewhere, "reader", "reader-pw").await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the user logs in from elsewhere"
    );
    let resp = login(&attacker, "admin", "admin-pw").await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "other users from that address"
    );
}

// ---------------------------------------------------------------------------
// OIDC workload identity

/// A CI job pushes with an ID token of a configured OIDC issuer as its
/// password: the token endpoint checks it against the issuer's JWKS (a
/// local file here) and names the user by `user_claim`; expired tokens and
/// tokens for another audience are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_id_tokens_log_in() {
    let files = Files::new();
    let idp = SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap();
    let jwks = files.write(
        "jwks.json",
        &serde_json::to_vec(&json!({"keys": [idp.public_jwk()]})).unwrap(),
    );
    let oidc = format!(
        "[[auth.oidc]]\nissuer = \"https://ci.test\"\njwks = {:?}\naudience = \"registry.test\"\nuser_claim = \"sub\"\n",
        jwks
    );
    let mut text = config(Mode::Token, &files, "");
    text = text.replace("[access]", &format!("{oidc}\n[access]"));
    text.push_str("[[access.rules]]\nrepositories = [\"ci/**\"]\nusers = [\"ci-bot\"]\nactions = [\"pull\", \"push\"]\n");
    let srv = TestServer::start_with_auth(Backend::Memory, &text).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let id_token = |aud: &str, exp: u64| {
        idp.sign(&TokenClaims {
            iss: "https://ci.test".into(),
            sub: "ci-bot".into(),
            aud: aud.into(),
            exp,
            nbf: now - 10,
            iat: now - 10,
            jti: "id".into(),
            access: Vec::new(),
        })
        .unwrap()
    };
    let good = id_token("registry.test", now + 300);
    let resp = token_request(
        &srv,
        Some(basic("oidc", &good)),
        &["repository:ci/app:pull,push"],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let access = body["token"].as_str().unwrap().to_owned();
    assert_eq!(payload(&access)["sub"], "ci-bot");
    let mut srv = srv;
    srv.authorize(&format!("Bearer {access}"));
    srv.push_image("ci/app", "v1", 1).await;

    for (what, bad) in [
        ("expired", id_token("registry.test", now - 120)),
        ("other audience", id_token("someone-else", now + 300)),
    ] {
        let resp =
            token_request(&srv, Some(basic("oidc", &bad)), &["repository:ci/app:pull"]).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
    }
}

// ---------------------------------------------------------------------------
// The signing key in storage

/// With no `signing_key`, the first server generates one and keeps it in
/// storage; a second server on the same storage (a replica, or a restart)
/// verifies the first one's tokens, and issues tokens the first accepts.
/// On every backend, S3 included.
async fn replicas_share_the_signing_key(backend: Backend) {
    let files = Files::new();
    let text = config(Mode::Token, &files, "");
    let one = TestServer::start_with_auth(backend, &text).await;
    let config_of_two: oci_registry_bin::config::Config = toml::from_str(&text).unwrap();
    // A second opening of the same storage (memory: the same store, as it
    // cannot be opened twice).
    let storage = if backend.is_persistent() {
        oci_storage::Storage::open_with(one.storage_url(), one.storage_options())
            .await
            .unwrap()
    } else {
        one.storage().clone()
    };
    let two = oci_registry_bin::auth::build(&config_of_two, Some(&storage))
        .await
        .unwrap()
        .unwrap();
    let t1 = token(&one, Some("reader"), &["repository:team/app:pull"]).await;
    let caller = two
        .options()
        .authenticator
        .identify(
            oci_auth::Credentials::Bearer(&t1),
            std::net::Ipv4Addr::LOCALHOST.into(),
        )
        .await
        .expect("the second replica verifies the first one's token");
    assert_eq!(caller.principal.user(), Some("reader"));
    let t2 = two
        .options()
        .authenticator
        .issue(oci_auth::TokenRequest {
            login: oci_auth::Login::Password {
                user: "reader",
                password: "reader-pw",
            },
            service: None,
            scopes: vec![oci_auth::Scope::parse("repository:team/app:pull").unwrap()],
            offline: false,
            address: std::net::Ipv4Addr::LOCALHOST.into(),
        })
        .await
        .unwrap();
    let resp = get_with(
        &one,
        "/v2/team/app/tags/list",
        &format!("Bearer {}", t2.token),
    )
    .await;
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "authorized; the repository is empty"
    );
    assert_eq!(
        token_header(&t1)["kid"],
        token_header(&t2.token)["kid"],
        "one key"
    );
}

backend_tests!(replicas_share_the_signing_key);

// ---------------------------------------------------------------------------
// oci-client

/// The whole login flow of an independent client, the `oci-client` crate:
/// anonymous pulls of a public repository, and basic credentials pushing
/// and pulling, in basic and in token mode (where it follows the Bearer
/// challenge to `/auth/token`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_logs_in() {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    use oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE;
    use oci_client::secrets::RegistryAuth;
    use oci_client::{Client, Reference};

    let files = Files::new();
    for mode in [Mode::Basic, Mode::Token] {
        let srv = TestServer::start_with_auth(Backend::Memory, &config(mode, &files, "")).await;
        let client = || {
            Client::new(ClientConfig {
                protocol: ClientProtocol::Http,
                ..Default::default()
            })
        };
        let admin = RegistryAuth::Basic("admin".into(), "admin-pw".into());
        let reader = RegistryAuth::Basic("reader".into(), "reader-pw".into());
        let layers = vec![ImageLayer::oci_v1(random_blob(5000, 7), None)];
        let config = Config::oci_v1(config_json("auth"), None);
        let reference =
            |repo: &str| Reference::with_tag(srv.host().to_owned(), repo.to_owned(), "v1".into());
        for repo in ["public/app", "team/app"] {
            client()
                .push(&reference(repo), &layers, config.clone(), &admin, None)
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: admin push to {repo}: {e}"));
        }
        let pulled = client()
            .pull(
                &reference("public/app"),
                &RegistryAuth::Anonymous,
                vec![IMAGE_LAYER_MEDIA_TYPE],
            )
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: anonymous pull of public/app: {e}"));
        assert_eq!(pulled.layers[0].data, layers[0].data);
        let pulled = client()
            .pull(
                &reference("team/app"),
                &reader,
                vec![IMAGE_LAYER_MEDIA_TYPE],
            )
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: reader pull of team/app: {e}"));
        assert_eq!(pulled.layers[0].data, layers[0].data);
        assert!(
            client()
                .pull(
                    &reference("team/app"),
                    &RegistryAuth::Anonymous,
                    vec![IMAGE_LAYER_MEDIA_TYPE]
                )
                .await
                .is_err(),
            "{mode:?}: anonymous pull of team/app"
        );
        assert!(
            client()
                .push(
                    &reference("team/app2"),
                    &layers,
                    config.clone(),
                    &reader,
                    None
                )
                .await
                .is_err(),
            "{mode:?}: reader push"
        );
        assert!(
            client()
                .pull(
                    &reference("team/app"),
                    &RegistryAuth::Basic("reader".into(), "wrong".into()),
                    vec![IMAGE_LAYER_MEDIA_TYPE]
                )
                .await
                .is_err(),
            "{mode:?}: wrong password"
        );
    }
}

/// Reloading: a changed htpasswd takes effect without a restart (a new
/// user logs in, a changed password stops working at once), and a broken
/// one is refused while the accounts in service stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_reload_on_change() {
    let files = Files::new();
    let srv = TestServer::start_with_auth(Backend::Memory, &config(Mode::Basic, &files, "")).await;
    // Each attempt from another loopback address: polling with a password
    // that is not valid yet must not trip the failed-login throttle.
    let attempts = std::sync::atomic::AtomicU8::new(1);
    let status = |user: &'static str, pw: &'static str| {
        let url = srv.url("/v2/");
        let n = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 1, n]))
                .build()
                .unwrap()
                .get(url)
                .header("authorization", basic(user, pw))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status("admin", "admin-pw").await, StatusCode::OK);
    let htpasswd = files.path("htpasswd");
    let authenticator = &srv.auth().unwrap().options().authenticator;
    let counted = Arc::new(Counted {
        inner: authenticator.clone(),
        refused: AtomicUsize::new(0),
    });
    let watch = oci_http::reload::watch(counted.clone(), Duration::from_millis(50));
    // Each version of the file replaces the last whole (written aside,
    // then renamed): a watch that polled between a plain write's truncate
    // and its bytes, which a loaded machine can hold apart, would load an
    // empty file, which is valid (no accounts).
    let replace = |text: &str| {
        let aside = files.path("htpasswd.new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, &htpasswd).unwrap();
    };
    replace(&format!("admin:{}\n", bcrypt::hash("new-pw", 4).unwrap()));
    wait_until(|| async { status("admin", "new-pw").await == StatusCode::OK }).await;
    assert_eq!(status("admin", "admin-pw").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status("reader", "reader-pw").await,
        StatusCode::UNAUTHORIZED
    );
    replace("admin:{SHA}plain\n");
    wait_until(|| async { counted.refused.load(Ordering::SeqCst) >= 1 }).await;
    assert_eq!(
        status("admin", "new-pw").await,
        StatusCode::OK,
        "a broken file is refused"
    );
    drop(watch);
    assert!(Path::new(&htpasswd).exists());
}

/// The accounts as the watch reloads them, counting the reloads refused,
/// so the test knows the watch has read the broken file.
struct Counted {
    inner: Arc<dyn Reload>,
    refused: AtomicUsize,
}

impl Reload for Counted {
    fn what(&self) -> &'static str {
        self.inner.what()
    }
    fn files(&self) -> Vec<PathBuf> {
        self.inner.files()
    }
    fn reload(&self) -> Result<(), String> {
        let result = self.inner.reload();
        if result.is_err() {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
