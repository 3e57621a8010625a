//! The operator's side of the real binary: HTTPS from the configuration
//! file with a reload on `SIGHUP`, mutual TLS, the metrics listener
//! counting a push and a pull, and readiness that follows the store.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{metrics_base, oci_digest, signal, start, wait_exit};
use oci_e2e::certs::{Ca, Leaf};

fn write_leaf(dir: &Path, leaf: &Leaf) {
    // Written aside, then renamed: a reload never sees half a file.
    for (name, text) in [("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)] {
        let staged = dir.join(format!(".{name}.new"));
        std::fs::write(&staged, text).unwrap();
        std::fs::rename(&staged, dir.join(name)).unwrap();
    }
}

async fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

/// `[server.tls]` in the file serves HTTPS (HTTP/2 over ALPN); `SIGHUP`
/// puts a renewed certificate in service for new connections while an
/// open connection keeps working; a client that does not trust the CA
/// fails.
#[tokio::test]
async fn https_from_the_config_file_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("operations test CA");
    let first = ca.server(1);
    write_leaf(dir.path(), &first);
    let config = dir.path().join("registry.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"{0}/tls.crt\"\nkey = \"{0}/tls.key\"\n\
             [storage]\nurl = \"memory://\"\n[log]\nlevel = \"warn\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut run = start(|cmd| {
        cmd.arg("--config").arg(&config);
    });
    assert!(run.base.starts_with("https://127.0.0.1:"), "{}", run.line);

    let kept = oci_e2e::https_client(ca.pem.as_bytes(), None, &["h2", "http/1.1"]);
    let r = kept.get(format!("{}/v2/", run.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(peer_certificate(&r).await, first.der);

    let stranger = Ca::new("some other CA");
    let untrusting = oci_e2e::https_client(stranger.pem.as_bytes(), None, &["h2"]);
    assert!(
        untrusting
            .get(format!("{}/v2/", run.base))
            .send()
            .await
            .is_err()
    );

    let renewed = ca.server(2);
    write_leaf(dir.path(), &renewed);
    signal(&run.child, "HUP");
    // Polled: a loaded machine may take a while to handle the signal.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fresh = oci_e2e::https_client(ca.pem.as_bytes(), None, &["h2"]);
        let r = fresh.get(format!("{}/v2/", run.base)).send().await.unwrap();
        if peer_certificate(&r).await == renewed.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before the reload is still served, on its
    // original session.
    let r = kept.get(format!("{}/v2/", run.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(peer_certificate(&r).await, first.der);
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop it"
    );
    // The kept HTTP/2 connection stays open and, while this test blocks in
    // `wait_exit`, never answers the GOAWAY's PING: shutdown must not wait
    // for it.
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
}

/// With `client_ca`, a client without a certificate from that CA is
/// refused at the handshake; one with a certificate is served.
#[tokio::test]
async fn client_certificates_are_required_with_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("server CA");
    write_leaf(dir.path(), &ca.server(1));
    let clients = Ca::new("client CA");
    std::fs::write(dir.path().join("clients.pem"), &clients.pem).unwrap();
    let mut run = start(|cmd| {
        cmd.args(["--listen", "127.0.0.1:0", "--storage", "memory://"])
            .env("OCI_REGISTRY_SERVER_TLS_CERT", dir.path().join("tls.crt"))
            .env("OCI_REGISTRY_SERVER_TLS_KEY", dir.path().join("tls.key"))
            .env(
                "OCI_REGISTRY_SERVER_TLS_CLIENT_CA",
                dir.path().join("clients.pem"),
            );
    });
    let anonymous = oci_e2e::https_client(ca.pem.as_bytes(), None, &["h2"]);
    assert!(
        anonymous
            .get(format!("{}/v2/", run.base))
            .send()
            .await
            .is_err()
    );
    let outsider = Ca::new("outsider CA").client(7);
    let forged = oci_e2e::https_client(
        ca.pem.as_bytes(),
        Some((outsider.cert_pem.as_bytes(), outsider.key_pem.as_bytes())),
        &["h2"],
    );
    assert!(
        forged
            .get(format!("{}/v2/", run.base))
            .send()
            .await
            .is_err()
    );
    let member = clients.client(3);
    let client = oci_e2e::https_client(
        ca.pem.as_bytes(),
        Some((member.cert_pem.as_bytes(), member.key_pem.as_bytes())),
        &["h2"],
    );
    let r = client
        .get(format!("{}/v2/", run.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
}

/// A TLS file that cannot be loaded stops the start with a line naming it.
#[test]
fn unreadable_tls_files_fail_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_oci-registry"));
    common::clear_env(&mut cmd);
    let out = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--storage", "memory://"])
        .env("OCI_REGISTRY_SERVER_TLS_CERT", dir.path().join("tls.crt"))
        .env("OCI_REGISTRY_SERVER_TLS_KEY", dir.path().join("tls.key"))
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls.crt"), "{stderr}");
}

/// The value of the series `name{labels}` (labels exactly as rendered,
/// sorted by the exporter), or 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// A push and a pull through the real binary, counted by `/metrics` on the
/// metrics listener: requests by endpoint kind, method and status class,
/// bytes both ways, upload sessions, storage operations; the probes
/// answer.
#[tokio::test]
async fn metrics_count_a_push_and_a_pull() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = start(|cmd| {
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--storage",
        ])
        .arg(dir.path().join("data"));
    });
    let metrics = metrics_base(&run.line);
    let client = reqwest::Client::new();
    let scrape = || async {
        let r = client
            .get(format!("{metrics}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let before = scrape().await;

    let layer = vec![42u8; 100_000];
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    for blob in [&layer, &config] {
        let digest = oci_digest(blob);
        let r = client
            .post(format!(
                "{}/v2/team/app/blobs/uploads/?digest={digest}",
                run.base
            ))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        oci_digest(&config),
        config.len(),
        oci_digest(&layer),
        layer.len()
    );
    let r = client
        .put(format!("{}/v2/team/app/manifests/v1", run.base))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .get(format!("{}/v2/team/app/manifests/v1", run.base))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), manifest);
    let r = client
        .get(format!(
            "{}/v2/team/app/blobs/{}",
            run.base,
            oci_digest(&layer)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), layer.len());
    let r = client
        .get(format!("{}/v2/team/app/manifests/missing", run.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let requests = [
        ("upload_start", "POST", "2xx", 2.0),
        ("manifest", "PUT", "2xx", 1.0),
        ("manifest", "GET", "2xx", 1.0),
        ("manifest", "GET", "4xx", 1.0),
        ("blob", "GET", "2xx", 1.0),
    ]
    .map(|(endpoint, method, status, count)| {
        let series = format!(
            r#"oci_registry_http_requests_total{{endpoint="{endpoint}",method="{method}",status="{status}"}}"#
        );
        (series, count)
    });
    // A response is counted when its body is done, which the server may
    // get to after the client has read it: scraped until every request is
    // counted (a loaded machine may take a while; up to 30 s), then
    // compared exactly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let after = scrape().await;
        let counted = requests
            .iter()
            .all(|(series, count)| sample(&after, series) - sample(&before, series) >= *count);
        if counted || Instant::now() >= deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    for (series, count) in &requests {
        assert_eq!(delta(series), *count, "{series} in {after}");
    }
    let received = delta(r#"oci_registry_http_received_bytes_total{endpoint="upload_start"}"#);
    assert_eq!(received, (layer.len() + config.len()) as f64);
    let sent = delta(r#"oci_registry_http_sent_bytes_total{endpoint="blob"}"#);
    assert_eq!(sent, layer.len() as f64);
    assert_eq!(delta("oci_registry_upload_sessions_opened_total"), 2.0);
    assert_eq!(
        delta(r#"oci_registry_upload_sessions_closed_total{reason="completed"}"#),
        2.0
    );
    assert_eq!(
        delta(r#"oci_registry_http_request_duration_seconds_count{endpoint="manifest"}"#),
        3.0
    );
    assert!(
        delta(r#"oci_registry_storage_operations_total{op="put",result="ok"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        sample(&after, "process_resident_memory_bytes") > 0.0,
        "{after}"
    );
    for name in ["team/app", "v1", &oci_digest(&layer)[7..]] {
        assert!(!after.contains(name), "{name} in the labels");
    }

    for probe in ["healthz", "readyz"] {
        let r = client
            .get(format!("{metrics}/{probe}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{probe}");
    }
    // The operations listener is not the API.
    let r = client.get(format!("{metrics}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
}

/// `/readyz` turns 503 within seconds of the store going away (the
/// in-process S3 server stopped), while `/healthz` stays 200. Two worker
/// threads: the S3 server answers the registry's startup reads while
/// this test waits for the startup line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store() {
    let s3 = oci_test_s3::S3Server::start().await.unwrap();
    let mut run = start(|cmd| {
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--storage",
        ])
        .arg(s3.url("ready"))
        .envs(s3.env());
    });
    let metrics = metrics_base(&run.line);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = client
        .get(format!("{metrics}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s3.stop();
    let stopped = Instant::now();
    loop {
        let r = client
            .get(format!("{metrics}/readyz"))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(8),
            "still ready without a store"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = client
        .get(format!("{metrics}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
}
