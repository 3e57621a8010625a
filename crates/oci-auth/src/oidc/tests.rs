use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::token::SigningKey;
use crate::token::tests::{NOW, at, ed25519_pem};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "https://registry.example";

fn key() -> SigningKey {
    SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap()
}

fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()}).to_string()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "repo:team/app:ref:refs/heads/main",
        "repository": "team/app",
        "exp": NOW + 300,
        "nbf": NOW - 5,
        "iat": NOW - 5,
    })
}

/// An ID token: `claims` signed by `key` with its kid.
fn id_token(key: &SigningKey, claims: &Value) -> String {
    let header = json!({"alg": key.algorithm().as_str(), "kid": key.kid(), "typ": "JWT"});
    let input = format!(
        "{}.{}",
        jws::b64_encode(header.to_string().as_bytes()),
        jws::b64_encode(claims.to_string().as_bytes())
    );
    let signature = key.sign_bytes(input.as_bytes()).unwrap();
    format!("{input}.{}", jws::b64_encode(&signature))
}

fn options(jwks: JwksSource) -> OidcOptions {
    OidcOptions {
        issuer: ISSUER.into(),
        jwks,
        audience: AUDIENCE.into(),
        user_claim: "repository".into(),
    }
}

async fn refused(issuer: &OidcIssuer, token: &str, now: u64) -> String {
    match issuer.verify(token, at(now)).await {
        Err(AuthError::Refused(why)) => why,
        other => panic!("want Refused, got {other:?}"),
    }
}

#[test]
fn sources_parse() {
    for (text, want) in [
        ("https://issuer.example/jwks", Some(true)),
        ("HTTPS://issuer.example/jwks", Some(true)),
        ("http://127.0.0.1:8080/jwks", Some(true)),
        ("http://localhost/jwks", Some(true)),
        ("http://[::1]:9/jwks", Some(true)),
        ("/etc/registry/jwks.json", Some(false)),
        ("jwks.json", Some(false)),
        ("http://issuer.example/jwks", None),
        ("http://127.0.0.1.evil.example/jwks", None),
        ("https://", None),
        ("ftp://issuer.example/jwks", None),
        ("", None),
    ] {
        match (text.parse::<JwksSource>(), want) {
            (Ok(JwksSource::Url(_)), Some(true)) | (Ok(JwksSource::File(_)), Some(false)) => {}
            (Err(AuthError::Config(_)), None) => {}
            (other, _) => panic!("{text:?}: {other:?}"),
        }
    }
    let options: OidcOptions = serde_json::from_value(json!({
        "issuer": ISSUER, "jwks": "https://issuer.example/jwks", "audience": AUDIENCE,
    }))
    .unwrap();
    assert_eq!(options.user_claim, "sub");
    assert!(
        serde_json::from_value::<OidcOptions>(json!({
            "issuer": ISSUER, "jwks": "http://issuer.example/jwks", "audience": AUDIENCE,
        }))
        .is_err()
    );
}

#[test]
fn peek_issuer_is_cheap_and_total() {
    let token = id_token(&key(), &claims());
    assert_eq!(peek_issuer(&token).as_deref(), Some(ISSUER));
    let no_iss = id_token(&key(), &json!({"sub": "x"}));
    let huge = "e".repeat(1 << 20);
    for text in [
        "",
        "password",
        "a.b",
        "a.b.c",
        "..",
        "a.b.c.d",
        no_iss.as_str(),
        &format!("x.{}.y", jws::b64_encode(br#"{"iss": 5}"#)),
        &format!("x.{huge}.y"),
    ] {
        assert_eq!(peek_issuer(text), None, "{text:.40}");
    }
}

#[tokio::test]
async fn file_source_checks_tokens() {
    let (good, other) = (key(), key());
    let ed = SigningKey::from_pem(&ed25519_pem()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&good, &ed])).unwrap();
    let issuer = OidcIssuer::new(options(JwksSource::File(path.clone()))).unwrap();
    assert_eq!(issuer.issuer(), ISSUER);

    let token = id_token(&good, &claims());
    assert_eq!(issuer.verify(&token, at(NOW)).await.unwrap(), "team/app");
    let token = id_token(&ed, &claims());
    assert_eq!(issuer.verify(&token, at(NOW)).await.unwrap(), "team/app");
    // An audience array that holds ours; nbf absent; float dates.
    let mut c = claims();
    c["aud"] = json!(["sts.amazonaws.com", AUDIENCE]);
    c.as_object_mut().unwrap().remove("nbf");
    c["exp"] = json!((NOW + 60) as f64 + 0.5);
    issuer.verify(&id_token(&good, &c), at(NOW)).await.unwrap();

    let with = |field: &str, value: Value| {
        let mut c = claims();
        c[field] = value;
        id_token(&good, &c)
    };
    let without = |field: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(field);
        id_token(&good, &c)
    };
    let token = id_token(&good, &claims());
    assert!(
        refused(&issuer, &token, NOW + 330)
            .await
            .contains("expired")
    );
    issuer.verify(&token, at(NOW + 320)).await.unwrap();
    assert!(
        refused(&issuer, &with("nbf", json!(NOW + 100)), NOW)
            .await
            .contains("before")
    );
    assert!(
        refused(&issuer, &with("aud", json!("other")), NOW)
            .await
            .contains("aud")
    );
    assert!(
        refused(&issuer, &with("aud", json!(["a", "b"])), NOW)
            .await
            .contains("aud")
    );
    assert!(
        refused(&issuer, &with("iss", json!("https://evil.example")), NOW)
            .await
            .contains("iss")
    );
    assert!(
        refused(&issuer, &with("exp", json!("soon")), NOW)
            .await
            .contains("exp")
    );
    assert!(refused(&issuer, &without("exp"), NOW).await.contains("exp"));
    assert!(refused(&issuer, &without("aud"), NOW).await.contains("aud"));
    assert!(
        refused(&issuer, &without("repository"), NOW)
            .await
            .contains("repository")
    );
    assert!(
        refused(&issuer, &with("repository", json!("")), NOW)
            .await
            .contains("repository")
    );
    assert!(
        refused(&issuer, &with("repository", json!(7)), NOW)
            .await
            .contains("repository")
    );
    // Signed by a key the issuer does not have, under its own kid or ours.
    assert!(
        refused(&issuer, &id_token(&other, &claims()), NOW)
            .await
            .contains("unknown kid")
    );
    let forged = {
        let header = json!({"alg": "ES256", "kid": good.kid()});
        let input = format!(
            "{}.{}",
            jws::b64_encode(header.to_string().as_bytes()),
            jws::b64_encode(claims().to_string().as_bytes())
        );
        let sig = other.sign_bytes(input.as_bytes()).unwrap();
        format!("{input}.{}", jws::b64_encode(&sig))
    };
    assert!(refused(&issuer, &forged, NOW).await.contains("signature"));
    for garbage in ["", "a.b.c", "password", &"A".repeat(100_000)] {
        refused(&issuer, garbage, NOW).await;
    }

    // Reload: a bad file keeps the old keys; a good one replaces them.
    std::fs::write(&path, "{not json").unwrap();
    assert!(matches!(issuer.reload(), Err(AuthError::File { .. })));
    issuer.verify(&token, at(NOW)).await.unwrap();
    std::fs::write(&path, jwks(&[&other])).unwrap();
    issuer.reload().unwrap();
    refused(&issuer, &token, NOW).await;
    issuer
        .verify(&id_token(&other, &claims()), at(NOW))
        .await
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(issuer.reload(), Err(AuthError::Io { .. })));
    assert!(matches!(
        OidcIssuer::new(options(JwksSource::File(path))),
        Err(AuthError::Io { .. })
    ));
}

/// A one-route HTTP/1.1 server answering every request with `body` (200)
/// and counting requests.
struct JwksServer {
    url: String,
    body: Arc<std::sync::Mutex<String>>,
    requests: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let body = Arc::new(std::sync::Mutex::new(body));
        let requests = Arc::new(AtomicUsize::new(0));
        let (b, r) = (Arc::clone(&body), Arc::clone(&requests));
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (b, r) = (Arc::clone(&b), Arc::clone(&r));
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    let body = b.lock().unwrap().clone();
                    let status = if body.is_empty() {
                        "404 Not Found"
                    } else {
                        "200 OK"
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            url,
            body,
            requests,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn serve(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }
}

#[tokio::test]
async fn url_source_fetches_lazily_caches_and_limits_refetches() {
    let (first, rotated) = (key(), key());
    let server = JwksServer::start(jwks(&[&first])).await;
    let issuer = Arc::new(OidcIssuer::new(options(server.url.parse().unwrap())).unwrap());
    assert_eq!(server.requests(), 0, "fetched lazily");

    // Tokens of another issuer fetch nothing.
    let mut c = claims();
    c["iss"] = json!("https://other.example");
    refused(&issuer, &id_token(&first, &c), NOW).await;
    assert_eq!(server.requests(), 0);

    let token = id_token(&first, &claims());
    assert_eq!(issuer.verify(&token, at(NOW)).await.unwrap(), "team/app");
    assert_eq!(server.requests(), 1);
    for _ in 0..3 {
        issuer.verify(&token, at(NOW + 1)).await.unwrap();
    }
    assert_eq!(server.requests(), 1, "cached");

    // The issuer rotates; a token with the new kid within 60 s of the
    // last fetch is refused without a fetch, however often it comes.
    server.serve(jwks(&[&rotated]));
    let new_token = id_token(&rotated, &claims());
    for _ in 0..5 {
        assert!(
            refused(&issuer, &new_token, NOW + 30)
                .await
                .contains("unknown kid")
        );
    }
    assert_eq!(server.requests(), 1, "at most one fetch a minute");

    // After 60 s, one fetch, and the new key works; the old one is gone.
    issuer.verify(&new_token, at(NOW + 61)).await.unwrap();
    assert_eq!(server.requests(), 2);
    refused(&issuer, &token, NOW + 62).await;
    assert_eq!(server.requests(), 2);

    // Concurrent unknown kids past the interval: one fetch between them.
    let stranger = id_token(&key(), &claims());
    let mut tries = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (issuer, stranger) = (Arc::clone(&issuer), stranger.clone());
        tries.spawn(async move { issuer.verify(&stranger, at(NOW + 200)).await });
    }
    while let Some(result) = tries.join_next().await {
        assert!(matches!(result.unwrap(), Err(AuthError::Refused(_))));
    }
    assert_eq!(server.requests(), 3);

    // A failed fetch keeps the old keys; reload marks them stale.
    server.serve(String::new());
    issuer.reload().unwrap();
    issuer.verify(&new_token, at(NOW + 201)).await.unwrap();
    assert_eq!(server.requests(), 4);
    // With no success on record, the next token retries (after 10 s).
    server.serve(jwks(&[&rotated]));
    let mut late = claims();
    late["exp"] = json!(NOW + 10_000);
    let late_token = id_token(&rotated, &late);
    issuer.verify(&late_token, at(NOW + 205)).await.unwrap();
    assert_eq!(server.requests(), 4);
    issuer.verify(&late_token, at(NOW + 300)).await.unwrap();
    assert_eq!(server.requests(), 5);
    // Keys older than an hour are fetched again on use.
    issuer.verify(&late_token, at(NOW + 3_800)).await.unwrap();
    assert_eq!(server.requests(), 5);
    issuer.verify(&late_token, at(NOW + 3_900)).await.unwrap();
    assert_eq!(server.requests(), 6);
}

#[tokio::test]
async fn url_source_failures_are_fetch_errors() {
    let server = JwksServer::start(String::new()).await;
    let issuer = OidcIssuer::new(options(server.url.parse().unwrap())).unwrap();
    let token = id_token(&key(), &claims());
    assert!(matches!(
        issuer.verify(&token, at(NOW)).await,
        Err(AuthError::Fetch(_))
    ));
    assert_eq!(server.requests(), 1);
    // Retried only after a pause, not on every token.
    assert!(matches!(
        issuer.verify(&token, at(NOW + 1)).await,
        Err(AuthError::Fetch(_))
    ));
    assert_eq!(server.requests(), 1);
    let k = key();
    server.serve(jwks(&[&k]));
    issuer
        .verify(&id_token(&k, &claims()), at(NOW + 11))
        .await
        .unwrap();
    assert_eq!(server.requests(), 2);

    // Too large, and not JWKS.
    let big = format!(
        "{{\"keys\": [], \"pad\": \"{}\"}}",
        "x".repeat(fetch::MAX_BODY)
    );
    let server = JwksServer::start(big).await;
    let issuer = OidcIssuer::new(options(server.url.parse().unwrap())).unwrap();
    match issuer.verify(&token, at(NOW)).await {
        Err(AuthError::Fetch(why)) => assert!(why.contains("larger"), "{why}"),
        other => panic!("{other:?}"),
    }
    let server = JwksServer::start("<html>".into()).await;
    let issuer = OidcIssuer::new(options(server.url.parse().unwrap())).unwrap();
    assert!(matches!(
        issuer.verify(&token, at(NOW)).await,
        Err(AuthError::Fetch(_))
    ));

    // Nobody listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let issuer = OidcIssuer::new(options(url.parse().unwrap())).unwrap();
    assert!(matches!(
        issuer.verify(&token, at(NOW)).await,
        Err(AuthError::Fetch(_))
    ));
}

#[tokio::test]
async fn malformed_claims_are_refused() {
    let good = key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&good])).unwrap();
    let issuer = OidcIssuer::new(options(JwksSource::File(path))).unwrap();
    let with = |field: &str, value: Value| {
        let mut c = claims();
        c[field] = value;
        id_token(&good, &c)
    };
    for (field, value) in [
        ("exp", json!(null)),
        ("exp", json!(-5)),
        ("exp", json!(1e300)),
        ("nbf", json!("now")),
        ("iat", json!([1])),
        ("aud", json!(5)),
        ("aud", json!([])),
        ("aud", json!([AUDIENCE, 5])),
        ("iss", json!([ISSUER])),
    ] {
        let why = refused(&issuer, &with(field, value.clone()), NOW).await;
        assert!(why.contains(field), "{field} = {value}: {why}");
    }
    // Times may also be fractions.
    issuer
        .verify(&with("iat", json!(NOW as f64 - 0.5)), at(NOW))
        .await
        .unwrap();
}
