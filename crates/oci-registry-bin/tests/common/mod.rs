//! What the binary's tests share: starting `oci-registry serve`, signals.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `on_shared_backends!(a, b)`: for each `async fn a(backend: Backend)`,
/// a module `a` with a `#[tokio::test]` per shared backend (`filesystem`,
/// `s3`).
#[allow(unused_macros)] // used by some of the test files that include this module
macro_rules! on_shared_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn filesystem() {
                super::$name(oci_e2e::Backend::Filesystem).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                super::$name(oci_e2e::Backend::S3).await;
            }
        }
    )*};
}

/// A started binary and the address it printed.
pub struct Running {
    pub child: Child,
    pub line: String,
    pub base: String,
}

/// A test that fails before it stops its server leaves no process behind
/// (one still running would hold the port and the test's output pipe).
impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn start(configure: impl FnOnce(&mut Command)) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-registry"));
    cmd.arg("serve");
    clear_env(&mut cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    configure(&mut cmd);
    let mut child = cmd.spawn().expect("spawn oci-registry");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("startup line");
    let base = line
        .split_whitespace()
        .find(|word| word.starts_with("http://") || word.starts_with("https://"))
        .unwrap_or_else(|| panic!("no address in startup line {line:?}"))
        .to_owned();
    Running { child, line, base }
}

/// Removes every `OCI_REGISTRY_*` variable of the test's environment.
pub fn clear_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OCI_REGISTRY_") {
            cmd.env_remove(name);
        }
    }
}

pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("oci-registry did not exit within 10 s");
}

/// Stops a binary started with its stderr piped (SIGTERM, a clean exit)
/// and returns everything it logged.
pub fn stop_and_read_log(run: &mut Running) -> String {
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
    let mut log = String::new();
    std::io::Read::read_to_string(
        &mut run.child.stderr.take().expect("stderr piped"),
        &mut log,
    )
    .expect("read the log");
    log
}

pub fn oci_digest(bytes: &[u8]) -> String {
    oci_types::Digest::of(bytes).to_string()
}

/// `oci-registry <command> --storage <srv's storage>`, with the backend
/// options as `OCI_REGISTRY_STORAGE_OPTIONS_*` variables: an offline
/// command run next to a live server, as an operator runs it.
pub fn on_storage(srv: &oci_e2e::TestServer, command: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-registry"));
    clear_env(&mut cmd);
    cmd.args([command, "--storage", srv.storage_url()]);
    for (k, v) in srv.storage_options() {
        cmd.env(
            format!("OCI_REGISTRY_STORAGE_OPTIONS_{}", k.to_ascii_uppercase()),
            v,
        );
    }
    cmd
}

/// The metrics listener's base URL from a startup line.
pub fn metrics_base(line: &str) -> String {
    line.split("metrics and probes on ")
        .nth(1)
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"))
}

/// `/metrics` of a binary started with `--metrics-listen`.
pub async fn scrape(run: &Running) -> String {
    reqwest::get(format!("{}/metrics", metrics_base(&run.line)))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The sender of a held request body, and the request.
pub type HeldUpload = (
    futures::channel::mpsc::UnboundedSender<Result<bytes::Bytes, std::io::Error>>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
);

/// Holds an upload in flight on a server that admits one request at a
/// time (`max_requests = 1`): a PATCH of `first` to `location` whose body
/// does not end. It is known to be in the server once a `GET /v2/` beside
/// it is refused with 429 (a fixed pause may pass on a loaded machine
/// before it arrives), polled until `patience` runs out (then `None`, the
/// upload ended and answered). A PATCH refused because a poll held the
/// place is sent again.
pub async fn hold_upload(
    client: &reqwest::Client,
    base: &str,
    location: &str,
    first: bytes::Bytes,
    patience: Duration,
) -> Option<HeldUpload> {
    let send = || {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        tx.unbounded_send(Ok(first.clone())).unwrap();
        let patch = tokio::spawn(
            client
                .patch(format!("{base}{location}"))
                .body(reqwest::Body::wrap_stream(rx))
                .send(),
        );
        (tx, patch)
    };
    let mut held = send();
    let deadline = std::time::Instant::now() + patience;
    loop {
        if held.1.is_finished() {
            match (&mut held.1).await.unwrap() {
                Ok(r) if r.status() != 429 => panic!("the held upload answered {}", r.status()),
                _ => held = send(),
            }
        }
        let r = client.get(format!("{base}/v2/")).send().await.unwrap();
        if r.status() == 429 {
            return Some(held);
        }
        assert_eq!(r.status(), 200);
        if std::time::Instant::now() >= deadline {
            // Its body ends, and it is answered before the caller goes on.
            drop(held.0);
            let _ = held.1.await;
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
