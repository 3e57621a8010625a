//! Event notifications of the binary: `kill -9` loses no event of an
//! acknowledged push, and `config check` validates and redacts
//! `[[notifications.endpoints]]`.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use oci_e2e::receiver::Receiver;
use reqwest::Client;
use serde_json::json;

/// Pushes a one-layer image `name:tag` (monolithic blob uploads, then the
/// manifest); true if the manifest push was acknowledged (201).
async fn push(client: &Client, base: &str, name: &str, tag: &str) -> bool {
    let config = format!("{{\"tag\":\"{tag}\"}}").into_bytes();
    let layer = format!("layer of {tag}").into_bytes();
    for blob in [&config, &layer] {
        let r = client
            .post(format!(
                "{base}/v2/{name}/blobs/uploads/?digest={}",
                oci_digest(blob)
            ))
            .body(blob.clone())
            .send()
            .await;
        if !matches!(r, Ok(r) if r.status() == 201) {
            return false;
        }
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": oci_digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": oci_digest(&layer), "size": layer.len()}],
    });
    let r = client
        .put(format!("{base}/v2/{name}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(serde_json::to_vec(&manifest).unwrap())
        .send()
        .await;
    matches!(r, Ok(r) if r.status() == 201)
}

/// Pushes race a `kill -9` while the receiver is down; after a restart
/// with the receiver back, every acknowledged push's event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("registry");
    let addr = Receiver::free_addr().await;
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        format!(
            "[notifications]\npoll = \"50ms\"\n[[notifications.endpoints]]\nname = \"ci\"\nurl = \"http://{addr}/hook\"\nbackoff = \"20ms\"\nmax_backoff = \"100ms\"\nmax_attempts = 100000\n"
        ),
    )
    .unwrap();
    let serve = |c: &mut Command| {
        c.args(["--listen", "127.0.0.1:0", "--storage"])
            .arg(&storage)
            .arg("--config")
            .arg(&file);
    };
    let mut run = start(serve);
    let client = Client::new();
    // Some pushes finish before the kill, some are cut by it: the kill
    // comes as soon as one is acknowledged (not after a fixed time, which a
    // loaded machine may spend before any push finishes), while the later
    // ones are still starting, 15 ms apart.
    let finished = Arc::new(AtomicUsize::new(0));
    let pushes: Vec<_> = (0..40)
        .map(|i| {
            let (client, base) = (client.clone(), run.base.clone());
            let finished = Arc::clone(&finished);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 15)).await;
                let tag = format!("t{i}");
                let pushed = push(&client, &base, "crash/app", &tag).await;
                if pushed {
                    finished.fetch_add(1, Ordering::SeqCst);
                }
                pushed.then_some(tag)
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while finished.load(Ordering::SeqCst) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    let mut acknowledged = Vec::new();
    for p in pushes {
        if let Some(tag) = p.await.unwrap() {
            acknowledged.push(tag);
        }
    }
    assert!(!acknowledged.is_empty(), "no push finished before the kill");
    assert!(
        acknowledged.len() < 40,
        "every push finished before the kill"
    );

    let receiver = Receiver::start_at(addr).await;
    let mut run = start(serve);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let tags: Vec<String> = receiver
            .delivered()
            .iter()
            .filter_map(|e| e["target"]["tag"].as_str().map(str::to_owned))
            .collect();
        let missing: Vec<_> = acknowledged.iter().filter(|t| !tags.contains(t)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events of acknowledged pushes missing: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
}

/// `config check` refuses a bad endpoint, naming the key, and prints a
/// good one with its secret header redacted.
#[test]
fn config_check_validates_and_redacts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-registry"));
        clear_env(&mut cmd);
        cmd.args(["config", "check"]).arg(&file);
        cmd.output().unwrap()
    };
    let bad =
        check("[[notifications.endpoints]]\nname = \"ci/x\"\nurl = \"http://ci.example/hook\"\n");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("notifications.endpoints[0].name"), "{err}");
    let bad = check(
        "[[notifications.endpoints]]\nname = \"ci\"\nurl = \"http://x/\"\nevents = [\"poke\"]\n",
    );
    assert!(!bad.status.success());
    let good = check(
        "[[notifications.endpoints]]\nname = \"ci\"\nurl = \"https://ci.example/hook\"\nheaders = { Authorization = \"Bearer S3CR3T\" }\nformat = \"cloudevents\"\n",
    );
    let out = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(!out.contains("S3CR3T"), "{out}");
    assert!(out.contains("<redacted>"), "{out}");
    assert!(out.contains("cloudevents"), "{out}");
}

/// The metrics: an event queued and delivered, a failed attempt, a dead
/// letter, and the replica delivering, per endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_events_per_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.answer(503);
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        format!(
            "[notifications]\npoll = \"50ms\"\n\
             [[notifications.endpoints]]\nname = \"ok\"\nurl = \"{}\"\n\
             [[notifications.endpoints]]\nname = \"failing\"\nurl = \"{}\"\nmax_attempts = 2\nbackoff = \"10ms\"\n",
            ok.url(),
            failing.url()
        ),
    )
    .unwrap();
    let mut run = start(|c| {
        c.args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--storage",
        ])
        .arg(dir.path().join("registry"))
        .arg("--config")
        .arg(&file);
    });
    let client = Client::new();
    assert!(push(&client, &run.base, "m/app", "v1").await);
    ok.wait_requests(1, Duration::from_secs(60)).await;
    failing.wait_requests(2, Duration::from_secs(60)).await;
    let want = [
        "oci_registry_notifications_queued_total{endpoint=\"ok\"} 1",
        "oci_registry_notifications_delivered_total{endpoint=\"ok\"} 1",
        "oci_registry_notifications_queued_total{endpoint=\"failing\"} 1",
        "oci_registry_notifications_failed_total{endpoint=\"failing\"} 2",
        "oci_registry_notifications_dead_lettered_total{endpoint=\"failing\"} 1",
        "oci_registry_notifications_delivering{endpoint=\"ok\"} 1",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(&run).await;
        let missing: Vec<_> = want.iter().filter(|w| !text.contains(*w)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing:?} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
}
