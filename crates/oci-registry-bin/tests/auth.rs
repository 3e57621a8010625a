//! Access control in the binary: what is logged (the user, never a
//! password, token or `Authorization` header, even at trace level), and
//! the warning about passwords over plain HTTP.

mod common;

use std::process::Stdio;

use base64::Engine as _;
use common::{start, stop_and_read_log};

const PASSWORD: &str = "S3CRET-PASSWORD";
const WRONG: &str = "WR0NG-PASSWORD";

/// A config in `mode`, listening on `listen`, with one account `alice`.
fn config(dir: &std::path::Path, mode: &str, listen: &str) -> std::path::PathBuf {
    let htpasswd = dir.join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"{listen}\"\n[storage]\nurl = {:?}\n[log]\nlevel = \"trace,h2=info,hyper=info,hyper_util=info,tower=info,reqwest=info,rustls=info,object_store=info\"\n[auth]\nmode = \"{mode}\"\nhtpasswd = {htpasswd:?}\n",
            dir.join("data")
        ),
    )
    .unwrap();
    file
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Logins, token requests (GET and POST), bearer requests and failures, at
/// trace level for our crates: the log names `alice` in access lines and
/// holds no password, no token and no `Authorization` value.
#[tokio::test]
async fn secrets_are_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "token", "127.0.0.1:0");
    let mut run = start(|c| {
        c.arg("--config").arg(&file).stderr(Stdio::piped());
    });
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", run.base);
    let resp = client
        .get(url(
            "/auth/token?service=oci-registry&scope=repository:team/app:pull,push",
        ))
        .header("authorization", basic("alice", PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    let resp = client
        .post(url("/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("access_type", "offline"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let resp = client
        .get(url("/v2/team/app/tags/list"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "authorized; nothing pushed yet");
    let resp = client
        .get(url("/v2/other/tags/list"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client
        .get(url("/auth/token?service=oci-registry"))
        .header("authorization", basic("alice", WRONG))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client
        .get(url("/v2/"))
        .bearer_auth("not-a-token-SECRET")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let log = stop_and_read_log(&mut run);
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "verbose logging was on: {log}"
    );
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("oci_http::access"))
        .collect();
    assert!(
        access
            .iter()
            .any(|l| l.contains("path=/v2/team/app/tags/list") && l.contains("user=\"alice\"")),
        "the access line names the user: {log}"
    );
    assert!(
        access
            .iter()
            .any(|l| l.contains("path=/v2/other/tags/list") && l.contains("user=\"alice\"")),
        "a denied request's line names the user too: {log}"
    );
    let encoded_password = basic("alice", PASSWORD);
    for secret in [
        PASSWORD,
        WRONG,
        &encoded_password["Basic ".len()..],
        &token,
        // The signature alone, in case a token were logged in parts.
        token.rsplit('.').next().unwrap(),
        &refresh,
        "not-a-token-SECRET",
    ] {
        assert!(!log.contains(secret), "{secret:?} was logged:\n{log}");
    }
    assert!(
        !log.to_ascii_lowercase().contains("authorization:"),
        "{log}"
    );
}

/// Access control on plain HTTP, listening beyond loopback: a warning at
/// start; on loopback, none.
#[tokio::test]
async fn plain_http_beyond_loopback_warns() {
    for (listen, warned) in [("0.0.0.0:0", true), ("127.0.0.1:0", false)] {
        let dir = tempfile::tempdir().unwrap();
        let file = config(dir.path(), "basic", listen);
        let mut run = start(|c| {
            c.arg("--config").arg(&file).stderr(Stdio::piped());
        });
        let log = stop_and_read_log(&mut run);
        let warning = log
            .lines()
            .any(|l| l.contains("WARN") && l.contains("plain HTTP"));
        assert_eq!(warning, warned, "{listen}: {log}");
    }
}
