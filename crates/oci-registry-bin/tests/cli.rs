//! The `oci-registry` binary as users run it: flags, environment, the
//! startup line, and graceful shutdown on SIGTERM/SIGINT.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::{hold_upload, oci_digest, signal, start, stop_and_read_log, wait_exit};

#[tokio::test]
async fn flags_startup_line_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    let mut run = start(|c| {
        c.args(["--listen", "127.0.0.1:0", "--storage"])
            .arg(&storage)
            .args(["--log-level", "warn"]);
    });
    assert!(
        run.line
            .starts_with("oci-registry listening on http://127.0.0.1:")
    );
    assert!(
        run.line.contains(&format!("file://{}", storage.display())),
        "{}",
        run.line
    );
    let r = reqwest::get(format!("{}/v2/", run.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
    assert!(storage.is_dir(), "storage directory created");
}

#[tokio::test]
async fn environment_variables_configure_it() {
    let mut run = start(|c| {
        c.env("OCI_REGISTRY_LISTEN", "127.0.0.1:0")
            .env("OCI_REGISTRY_STORAGE", "memory://")
            .env("OCI_REGISTRY_LOG", "error");
    });
    assert!(run.line.contains("memory://"), "{}", run.line);
    let r = reqwest::get(format!("{}/v2/_catalog", run.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    signal(&run.child, "INT");
    assert!(wait_exit(&mut run.child).success());
}

/// `--fsync false` turns durability off (faster writes); storing still works.
#[tokio::test]
async fn fsync_false_still_stores() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    let mut run = start(|c| {
        c.args(["--listen", "127.0.0.1:0", "--fsync", "false", "--storage"])
            .arg(&storage);
    });
    let blob = b"stored without fsync";
    let digest = oci_digest(blob);
    let r = reqwest::Client::new()
        .post(format!("{}/v2/r/blobs/uploads/?digest={digest}", run.base))
        .body(blob.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let hex = digest.trim_start_matches("sha256:");
    let data = storage.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]));
    assert_eq!(std::fs::read(data).unwrap(), blob);
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
}

/// One access-log line per request at `info`, written when the response
/// is done: method, path, endpoint kind, status, bytes in and out,
/// duration, remote address, user agent, request id; never the query
/// string (it can carry secrets).
#[tokio::test]
async fn access_log_has_one_line_per_request_and_no_query() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = start(|c| {
        c.args([
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "info",
            "--storage",
        ])
        .arg(dir.path().join("data"))
        .stderr(Stdio::piped());
    });
    let client = reqwest::Client::builder()
        .user_agent("access-test/1.0")
        .build()
        .unwrap();
    let blob = b"logged blob";
    let digest = oci_digest(blob);
    let pushed = client
        .post(format!(
            "{}/v2/logs/app/blobs/uploads/?digest={digest}",
            run.base
        ))
        .header("x-request-id", "push-1")
        .body(blob.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    let pulled = client
        .get(format!("{}/v2/logs/app/blobs/{digest}", run.base))
        .header("x-request-id", "pull-1")
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), blob);
    let missing = client
        .get(format!("{}/nope?token=SECRET-TOKEN", run.base))
        .header("x-request-id", "miss-1")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let log = stop_and_read_log(&mut run);
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("oci_http::access"))
        .collect();
    assert_eq!(access.len(), 3, "{log}");
    let line = |id: &str| {
        *access
            .iter()
            .find(|l| {
                l.contains(&format!("request_id=\"{id}\""))
                    || l.contains(&format!("request_id={id}"))
            })
            .unwrap_or_else(|| panic!("no line for {id}: {log}"))
    };
    let push = line("push-1");
    for field in [
        "method=POST",
        "path=/v2/logs/app/blobs/uploads/",
        "upload_start",
        "status=201",
        &format!("bytes_in={}", blob.len()),
        "bytes_out=0",
        "duration_ms=",
        "remote=",
        "127.0.0.1",
        "access-test/1.0",
    ] {
        assert!(push.contains(field), "{field:?} not in {push}");
    }
    let pull = line("pull-1");
    for field in [
        "method=GET",
        "status=200",
        "\"blob\"",
        &format!("bytes_out={}", blob.len()),
    ] {
        assert!(pull.contains(field), "{field:?} not in {pull}");
    }
    let miss = line("miss-1");
    assert!(
        miss.contains("status=404") && miss.contains("path=/nope"),
        "{miss}"
    );
    assert!(
        !log.contains("SECRET-TOKEN"),
        "the query string was logged: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is no terminal"
    );
}

#[test]
fn bad_storage_url_fails_cleanly() {
    let out = Command::new(env!("CARGO_BIN_EXE_oci-registry"))
        .args(["serve", "--listen", "127.0.0.1:0", "--storage", "ftp://x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid storage URL"));
}

/// SIGTERM while an upload is streaming: the request completes, then the
/// process exits 0.
///
/// The signal comes once the upload is known to be in the server: with
/// `max_requests = 1`, when a `GET /v2/` beside it is refused with 429
/// (polled, up to 60 s; see `hold_upload`), not after a fixed pause a
/// loaded machine may spend before the upload arrives.
#[tokio::test]
async fn in_flight_requests_finish_after_sigterm() {
    let mut run = start(|c| {
        c.args(["--listen", "127.0.0.1:0", "--storage", "memory://"])
            .env("OCI_REGISTRY_LIMITS_MAX_REQUESTS", "1");
    });
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v2/slow/blobs/uploads/", run.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let (tx, patch) = hold_upload(
        &client,
        &run.base,
        &location,
        Bytes::from_static(b"first half, "),
        Duration::from_secs(60),
    )
    .await
    .expect("the upload never reached the server");
    signal(&run.child, "TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    tx.unbounded_send(Ok(Bytes::from_static(b"second half")))
        .unwrap();
    drop(tx);
    let r = patch.await.unwrap().unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-22");
    assert!(wait_exit(&mut run.child).success());
}

/// `kill -9` in the middle of a streamed upload: after a restart on the same
/// directory nothing partial is visible, the session reports only what was
/// committed before the crash, and the upload can be finished.
#[tokio::test]
async fn kill_9_mid_upload_leaves_nothing_partial() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_path_buf();
    let serve = |c: &mut Command| {
        c.args(["--listen", "127.0.0.1:0", "--storage"])
            .arg(&storage);
    };
    let mut run = start(serve);
    let client = reqwest::Client::new();
    let first = Bytes::from(vec![7u8; 64 * 1024]);
    let rest = Bytes::from(vec![9u8; 64 * 1024]);
    let whole: Vec<u8> = [first.as_ref(), rest.as_ref()].concat();
    let digest = oci_digest(&whole);

    let r = client
        .post(format!("{}/v2/crash/blobs/uploads/", run.base))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let r = client
        .patch(format!("{}{location}", run.base))
        .header("content-range", format!("0-{}", first.len() - 1))
        .body(first.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // A second chunk is half sent when the process dies.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    tx.unbounded_send(Ok(rest.slice(..1000))).unwrap();
    let url = format!("{}{location}", run.base);
    let pending = tokio::spawn(
        client
            .patch(url)
            .body(reqwest::Body::wrap_stream(rx))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    assert!(pending.await.unwrap().is_err(), "the cut request must fail");
    drop(tx);

    let mut run = start(serve);
    let r = client
        .head(format!("{}/v2/crash/blobs/{digest}", run.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no partial blob is visible");
    let r = client
        .get(format!("{}{location}", run.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], format!("0-{}", first.len() - 1));
    let r = client
        .put(format!("{}{location}?digest={digest}", run.base))
        .header(
            "content-range",
            format!("{}-{}", first.len(), whole.len() - 1),
        )
        .body(rest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .get(format!("{}/v2/crash/blobs/{digest}", run.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), whole.as_slice());
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
}
