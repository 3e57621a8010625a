//! HTTPS end to end: the registry served by `oci_http::server::serve_with`
//! with a certificate of a CA generated here (rcgen), reached by curl,
//! reqwest (HTTP/2 and HTTP/1.1 over ALPN), `oci-client` and skopeo;
//! certificate reloads (explicit, on file change, on SIGHUP) under a
//! connected client; bad replacements; client certificates (mTLS); the
//! handshake bounded by the header timeout.
//!
//! Tool tests (curl, skopeo, podman) skip with a message when the tool is
//! missing, and fail instead when `OCI_E2E_REQUIRE_TOOLS=1` (see
//! [`oci_e2e::tools`]).

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use oci_e2e::certs::{Ca, Leaf};
use oci_e2e::tools::{have_tool, push_real_image, run};
use oci_e2e::*;
use oci_http::tls::{Tls, TlsError, TlsFile, TlsFiles};
use reqwest::StatusCode;
use tokio::io::AsyncReadExt;

// ---------------------------------------------------------------------------
// Certificates

/// Files of a server certificate in a temporary directory.
struct CertDir {
    dir: tempfile::TempDir,
}

impl CertDir {
    fn new() -> CertDir {
        CertDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `leaf` to `tls.crt` and `tls.key`, in place.
    fn write(&self, leaf: &Leaf) {
        std::fs::write(self.path("tls.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(self.path("tls.key"), &leaf.key_pem).unwrap();
    }

    fn files(&self) -> TlsFiles {
        TlsFiles::new(self.path("tls.crt"), self.path("tls.key"))
    }
}

/// A server on memory storage with `leaf` (signed by `ca`).
async fn https_server(ca: &Ca, leaf: &Leaf) -> (TestServer, CertDir) {
    let dir = CertDir::new();
    dir.write(leaf);
    let tls = Tls::load(dir.files()).expect("load TLS");
    let srv = TestServer::start_tls(Backend::Memory, tls, ca.pem.as_bytes()).await;
    (srv, dir)
}

/// `GET /v2/` with `client`; returns the server certificate (DER) the
/// connection was made with.
async fn peer_cert(srv: &TestServer, client: &reqwest::Client) -> Vec<u8> {
    let resp = client
        .get(srv.url("/v2/"))
        .send()
        .await
        .expect("GET /v2/ over HTTPS");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("TLS info with the peer certificate")
        .to_vec()
}

/// A fresh client (fresh connections) trusting `ca`.
fn client_of(ca: &Ca) -> reqwest::Client {
    https_client(ca.pem.as_bytes(), None, &["h2", "http/1.1"])
}

/// Waits up to 60 s for a new connection to be served `want`.
async fn wait_for_cert(srv: &TestServer, ca: &Ca, want: &Leaf) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if peer_cert(srv, &client_of(ca)).await == want.der {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still see the old certificate after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Log capture

/// Everything logged at `info` and above by this test process.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("set the log subscriber");
        logs
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits up to 60 s for a log line containing every one of `parts`.
async fn wait_for_log(logs: &Mutex<Vec<u8>>, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        if let Some(line) = text.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?} after 60 s; logs:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Tests

/// reqwest trusting the CA: HTTP/2 when `h2` is offered over ALPN,
/// HTTP/1.1 when only `http/1.1` is; pushes and pulls work on both; a
/// client trusting another CA fails the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_negotiates_h2_and_http1_over_alpn() {
    let ca = Ca::new("registry test CA");
    let leaf = ca.server(1);
    let (srv, _dir) = https_server(&ca, &leaf).await;
    assert!(srv.base().starts_with("https://127.0.0.1:"));

    let resp = srv.get("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "ALPN h2");
    let img = srv.push_image("tls/app", "v1", 2).await;
    let resp = srv
        .get(&format!("/v2/tls/app/blobs/{}", img.layer_descs[1].digest))
        .await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert!(resp.bytes().await.unwrap() == img.layers[1]);

    let http1 = https_client(ca.pem.as_bytes(), None, &["http/1.1"]);
    let resp = http1
        .get(srv.url("/v2/tls/app/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11, "ALPN http/1.1");
    assert!(resp.bytes().await.unwrap() == img.manifest);
    // No ALPN at all: HTTP/1.1.
    let plain = https_client(ca.pem.as_bytes(), None, &[]);
    let resp = plain.get(srv.url("/v2/")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    let stranger = client_of(&Ca::new("another CA"));
    let err = stranger.get(srv.url("/v2/")).send().await.unwrap_err();
    assert!(err.is_connect(), "untrusted server must fail: {err:?}");
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain_http = reqwest::Client::new()
        .get(format!("http://{}/v2/", srv.host()))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain_http.is_err(), "{plain_http:?}");
    srv.stop().await;
}

/// curl with `--cacert` gets the API over HTTP/2 and HTTP/1.1; without
/// the CA it fails certificate verification (exit 60).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_cacert() {
    if !have_tool("curl", "curl_with_cacert") {
        return;
    }
    let ca = Ca::new("registry test CA");
    let (srv, dir) = https_server(&ca, &ca.server(1)).await;
    let ca_file = dir.path("ca.crt");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let url = srv.url("/v2/");
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", flag, "--cacert"])
            .arg(&ca_file)
            .args(["-w", "\n%{http_code} %{http_version}", &url]);
        let (ok, out, err) = run(cmd).await;
        assert!(ok, "curl {flag} failed: {err}");
        assert_eq!(out, format!("{{}}\n200 {version}"), "curl {flag}");
    }
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", &url]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // 60: the peer certificate cannot be authenticated with known CA
    // certificates.
    assert_eq!(out.status.code(), Some(60), "curl without the CA: {err}");
    srv.stop().await;
}

/// A renewed certificate put in place and reloaded with `Tls::reload` (what
/// SIGHUP calls): the connection already open keeps its session and keeps
/// working; a new connection gets the new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_reload_keeps_open_connections() {
    let ca = Ca::new("registry test CA");
    let (old, new) = (ca.server(1), ca.server(2));
    let (srv, dir) = https_server(&ca, &old).await;
    let kept = client_of(&ca);
    assert!(peer_cert(&srv, &kept).await == old.der);

    dir.write(&new);
    srv.tls()
        .unwrap()
        .reload()
        .expect("reload the renewed certificate");
    assert!(
        peer_cert(&srv, &kept).await == old.der,
        "the open connection keeps its session"
    );
    assert!(
        peer_cert(&srv, &client_of(&ca)).await == new.der,
        "a new connection gets the new certificate"
    );
    // The old connection still carries requests, uploads included.
    let resp = kept.get(srv.url("/v2/_catalog")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    srv.push_image("tls/renewed", "v1", 1).await;
    srv.stop().await;
}

/// `Tls::watch` reloads when the files change: in place, and by a
/// Kubernetes-style swap of the `..data` symlink the file names point
/// through. The open connection keeps the old certificate throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_on_file_change_and_symlink_swap() {
    let ca = Ca::new("registry test CA");
    let (first, second, third) = (ca.server(1), ca.server(2), ca.server(3));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let version = |name: &str, leaf: &Leaf| {
        std::fs::create_dir(d.join(name)).unwrap();
        std::fs::write(d.join(name).join("tls.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(d.join(name).join("tls.key"), &leaf.key_pem).unwrap();
    };
    version("..v1", &first);
    std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", d.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", d.join("tls.key")).unwrap();

    let tls = Tls::load(TlsFiles::new(d.join("tls.crt"), d.join("tls.key"))).unwrap();
    let _watch = tls.watch(Duration::from_millis(50));
    let srv = TestServer::start_tls(Backend::Memory, tls, ca.pem.as_bytes()).await;
    let kept = client_of(&ca);
    assert!(peer_cert(&srv, &kept).await == first.der);

    // The atomic swap a Kubernetes secret volume does.
    version("..v2", &second);
    std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    wait_for_cert(&srv, &ca, &second).await;
    assert!(peer_cert(&srv, &kept).await == first.der);

    // Rewritten in place (same inode, same size).
    std::fs::write(d.join("..v2/tls.key"), &third.key_pem).unwrap();
    std::fs::write(d.join("..v2/tls.crt"), &third.cert_pem).unwrap();
    wait_for_cert(&srv, &ca, &third).await;
    assert!(peer_cert(&srv, &kept).await == first.der);
    srv.stop().await;
}

/// A bad replacement is refused, naming the file at fault, and the
/// certificate in service stays: garbage, a missing key, a key of another
/// certificate. Through the watch, the refusal is logged; a good
/// replacement afterwards is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replacement_keeps_the_certificate_in_service() {
    let logs = captured_logs();
    let ca = Ca::new("registry test CA");
    let (good, other) = (ca.server(1), ca.server(2));
    let (srv, dir) = https_server(&ca, &good).await;
    let tls = srv.tls().unwrap().clone();
    let crt = dir.path("tls.crt");
    let key = dir.path("tls.key");

    std::fs::write(&crt, "not a certificate\n").unwrap();
    let e = tls.reload().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("tls.cert {}: no certificate found", crt.display())
    );
    std::fs::write(&crt, &other.cert_pem).unwrap();
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = tls.reload().unwrap_err();
    assert_eq!(e.file(), Some(TlsFile::Key), "{e}");
    assert!(matches!(e, TlsError::Pem { .. }), "{e}");
    std::fs::write(&key, &good.key_pem).unwrap();
    let e = tls.reload().unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "tls.key {}: does not match the certificate in {}",
            key.display(),
            crt.display()
        )
    );
    assert!(peer_cert(&srv, &client_of(&ca)).await == good.der);

    // Through the watch: logged, still the good certificate.
    let _watch = tls.watch(Duration::from_millis(50));
    std::fs::write(&key, "").unwrap();
    let line = wait_for_log(
        &logs,
        &["ERROR", "TLS reload refused", "no private key found"],
    )
    .await;
    assert!(line.contains(&key.display().to_string()), "{line}");
    assert!(peer_cert(&srv, &client_of(&ca)).await == good.der);
    std::fs::write(&key, &other.key_pem).unwrap();
    wait_for_cert(&srv, &ca, &other).await;
    srv.stop().await;
}

/// `reload_on_sighup`: a SIGHUP to this process (its handler is installed
/// before the signal is sent, so the process is not terminated) reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    let ca = Ca::new("registry test CA");
    let (old, new) = (ca.server(1), ca.server(2));
    let (srv, dir) = https_server(&ca, &old).await;
    let handler = oci_http::tls::reload_on_sighup(srv.tls().unwrap().clone()).unwrap();
    dir.write(&new);
    let status = Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    wait_for_cert(&srv, &ca, &new).await;
    handler.abort();
    srv.stop().await;
}

/// mTLS: with `client_ca` set, a client without a certificate, or with one
/// of another CA, is refused at the handshake; one signed by `client_ca`
/// is served. Reloading a new `client_ca` applies to new handshakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates() {
    let ca = Ca::new("registry test CA");
    let clients = Ca::new("clients CA");
    let stranger = Ca::new("another clients CA");
    let dir = CertDir::new();
    dir.write(&ca.server(1));
    std::fs::write(dir.path("clients.pem"), &clients.pem).unwrap();
    let tls = Tls::load(dir.files().with_client_ca(dir.path("clients.pem"))).unwrap();
    let srv = TestServer::start_tls(Backend::Memory, tls, ca.pem.as_bytes()).await;
    let with = |leaf: Option<&Leaf>| {
        let identity = leaf.map(|l| (l.cert_pem.as_bytes(), l.key_pem.as_bytes()));
        https_client(ca.pem.as_bytes(), identity, &["h2", "http/1.1"])
    };

    let anonymous = with(None).get(srv.url("/v2/")).send().await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let foreign = with(Some(&stranger.client(7)))
        .get(srv.url("/v2/"))
        .send()
        .await;
    assert!(foreign.is_err(), "certificate of another CA: {foreign:?}");
    let member = with(Some(&clients.client(8)));
    let resp = member.get(srv.url("/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // The raw handshake: refused before any HTTP.
    let config = rustls_client_config(ca.pem.as_bytes(), None, &["http/1.1"]);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(srv.host()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let refused = match connector.connect(name, tcp).await {
        // TLS 1.3: the client finishes first and reads the alert.
        Ok(mut stream) => {
            let mut byte = [0u8; 1];
            stream.read(&mut byte).await.is_err()
        }
        Err(_) => true,
    };
    assert!(
        refused,
        "a handshake without a client certificate must fail"
    );

    // Swap the client CA: the other CA's clients get in, ours no longer.
    std::fs::write(dir.path("clients.pem"), &stranger.pem).unwrap();
    srv.tls().unwrap().reload().unwrap();
    let resp = with(Some(&stranger.client(9)))
        .get(srv.url("/v2/"))
        .send()
        .await;
    assert_eq!(resp.unwrap().status(), StatusCode::OK);
    let fresh = with(Some(&clients.client(10)))
        .get(srv.url("/v2/"))
        .send()
        .await;
    assert!(fresh.is_err(), "{fresh:?}");
    srv.stop().await;
}

/// A client that opens TCP and sends nothing holds its connection slot
/// only for the header timeout (1 s); while it does, a connection over the
/// cap is answered `503` over TLS.
///
/// The over-cap requests must end within the header timeout of the silent
/// connection's start, measured here, or the slot is free again by then
/// and they are rightly served: a loaded machine that overruns that window
/// proves nothing, and once the silent connection is closed the round is
/// tried again, a bounded number of times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_is_bounded_by_the_header_timeout() {
    const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
    let ca = Ca::new("registry test CA");
    let dir = CertDir::new();
    dir.write(&ca.server(1));
    let mut limits = oci_http::Limits::default();
    limits.header_timeout = HEADER_TIMEOUT;
    limits.max_connections = 1;
    let tls = Tls::load(dir.files()).unwrap();
    let srv = TestServer::start_tls_limited(Backend::Memory, limits, tls, ca.pem.as_bytes()).await;

    for round in 0..5 {
        let started = Instant::now();
        let mut silent = tokio::net::TcpStream::connect(srv.host()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut answers = Vec::new();
        for alpn in [&["h2", "http/1.1"][..], &["http/1.1"]] {
            let resp = https_client(ca.pem.as_bytes(), None, alpn)
                .get(srv.url("/v2/"))
                .send()
                .await
                .expect("an over-cap connection is answered");
            answers.push((alpn, resp));
        }
        let overran = started.elapsed() >= HEADER_TIMEOUT;
        if overran {
            // Served, perhaps: their connections close now.
            drop(answers);
        } else {
            for (alpn, resp) in answers {
                assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{alpn:?}");
                assert_eq!(header(&resp, "retry-after").as_deref(), Some("1"));
                assert_error(resp, 503, &["TOOMANYREQUESTS"]).await;
            }
        }

        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut buf))
            .await
            .expect("a silent connection must be closed by the server");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        let held = started.elapsed();
        assert!(
            held >= Duration::from_millis(900) && held < Duration::from_secs(20),
            "closed after {held:?}"
        );
        if overran {
            eprintln!("round {round}: the over-cap requests ended after the header timeout; again");
            // Whatever connection is left is closed by its own header
            // timeout by then, and the slot is free for the next round.
            tokio::time::sleep(HEADER_TIMEOUT * 2).await;
            continue;
        }
        assert_eq!(srv.get("/v2/").await.status(), StatusCode::OK, "slot freed");
        srv.stop().await;
        return;
    }
    panic!("every round overran the {HEADER_TIMEOUT:?} window: the machine is too slow to tell");
}

/// `oci-client` (rustls) trusting the CA through
/// `extra_root_certificates` pushes and pulls an image over HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_push_and_pull_over_https() {
    use oci_client::client::{
        Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer,
    };
    use oci_client::manifest::{IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
    use oci_client::secrets::RegistryAuth;
    use oci_client::{Client, Reference};

    let ca = Ca::new("registry test CA");
    let (srv, _dir) = https_server(&ca, &ca.server(1)).await;
    let client = |roots: Vec<Certificate>| {
        Client::new(ClientConfig {
            protocol: ClientProtocol::Https,
            extra_root_certificates: roots,
            ..Default::default()
        })
    };
    let trusting = client(vec![Certificate {
        encoding: CertificateEncoding::Pem,
        data: ca.pem.clone().into_bytes(),
    }]);
    let auth = RegistryAuth::Anonymous;
    let reference = Reference::with_tag(srv.host().to_owned(), "tls/oci".into(), "v1".into());
    let layers = vec![
        ImageLayer::oci_v1(random_blob(200_000, 1), None),
        ImageLayer::oci_v1_gzip(random_blob(10_000, 2), None),
    ];
    let config = Config::oci_v1(config_json("tls/oci"), None);
    trusting
        .push(&reference, &layers, config.clone(), &auth, None)
        .await
        .expect("oci-client push over HTTPS");
    let image = trusting
        .pull(
            &reference,
            &auth,
            vec![IMAGE_LAYER_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE],
        )
        .await
        .expect("oci-client pull over HTTPS");
    assert!(image.config.data == config.data);
    let mut pulled: Vec<String> = image.layers.iter().map(|l| l.sha256_digest()).collect();
    let mut pushed: Vec<String> = layers.iter().map(|l| l.sha256_digest()).collect();
    pulled.sort();
    pushed.sort();
    assert_eq!(pulled, pushed);

    let untrusting = client(Vec::new());
    let refused = untrusting
        .pull_manifest_raw(&reference, &auth, &[OCI_MANIFEST])
        .await;
    assert!(refused.is_err(), "a client without the CA must fail");
    srv.stop().await;
}

/// A directory for `--cert-dir` style options: `ca.crt` only.
fn cert_dir(ca: &Ca) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), &ca.pem).unwrap();
    dir
}

/// skopeo copies an image out of and back into the registry over HTTPS
/// with `--src-cert-dir`/`--dest-cert-dir` holding `ca.crt`; without the
/// CA it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_over_https() {
    if !have_tool("skopeo", "skopeo_copy_over_https") {
        return;
    }
    let ca = Ca::new("registry test CA");
    let (srv, _dir) = https_server(&ca, &ca.server(1)).await;
    let img = srv.push_image("tls/skopeo", "v1", 2).await;
    let certs = cert_dir(&ca);
    let work = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:v1", work.path().join("layout").display());
    let skopeo = |args: &[&str]| {
        let mut cmd = Command::new("skopeo");
        cmd.arg("--insecure-policy").args(args);
        cmd
    };
    let host = srv.host().to_owned();
    let source = format!("docker://{host}/tls/skopeo:v1");
    let certs_arg = certs.path().display().to_string();

    let (ok, _, err) = run(skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-cert-dir",
        &certs_arg,
        &source,
        &layout,
    ]))
    .await;
    assert!(ok, "skopeo copy out of the registry: {err}");
    let dest = format!("docker://{host}/tls/skopeo-copy:v1");
    let (ok, _, err) = run(skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-cert-dir",
        &certs_arg,
        &layout,
        &dest,
    ]))
    .await;
    assert!(ok, "skopeo copy into the registry: {err}");
    let resp = srv
        .req(reqwest::Method::GET, "/v2/tls/skopeo-copy/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sha256_digest(&resp.bytes().await.unwrap()), img.digest);

    let (ok, _, err) = run(skopeo(&["inspect", "--raw", &source])).await;
    assert!(!ok, "skopeo without the CA must fail");
    assert!(
        err.contains("certificate") || err.contains("x509"),
        "the failure is about the certificate: {err}"
    );
    srv.stop().await;
}

/// podman (root, vfs storage in a temporary directory) pulls over HTTPS
/// with `--cert-dir` holding `ca.crt` and pushes the image back; without
/// the CA the pull fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pull_and_push_over_https() {
    if !have_tool("podman", "podman_pull_and_push_over_https") {
        return;
    }
    let ca = Ca::new("registry test CA");
    let (srv, _dir) = https_server(&ca, &ca.server(1)).await;
    let digest = push_real_image(&srv, "tls/podman", "v1", b"hello over https\n").await;
    let certs = cert_dir(&ca);
    let store = tempfile::tempdir().unwrap();
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(store.path().join("root"))
            .arg("--runroot")
            .arg(store.path().join("run"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"])
            .args(args);
        cmd
    };
    let certs_arg = certs.path().display().to_string();
    let image = format!("{}/tls/podman:v1", srv.host());

    let (ok, _, err) = run(podman(&["pull", "--cert-dir", &certs_arg, &image])).await;
    assert!(ok, "podman pull over HTTPS: {err}");
    let (ok, out, err) = run(podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Digest}}",
        &image,
    ]))
    .await;
    assert!(ok, "podman image inspect: {err}");
    assert_eq!(out.trim(), digest);

    let copy = format!("{}/tls/podman-copy:v1", srv.host());
    let (ok, _, err) = run(podman(&["push", "--cert-dir", &certs_arg, &image, &copy])).await;
    assert!(ok, "podman push over HTTPS: {err}");
    let resp = srv.get("/v2/tls/podman-copy/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);

    let (ok, _, _) = run(podman(&["rmi", "--all", "--force"])).await;
    assert!(ok);
    let (ok, _, err) = run(podman(&["pull", &image])).await;
    assert!(!ok, "podman without the CA must fail");
    assert!(
        err.contains("certificate") || err.contains("x509"),
        "the failure is about the certificate: {err}"
    );
    srv.stop().await;
}
