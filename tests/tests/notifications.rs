//! Event notifications (`[[notifications.endpoints]]`) over real HTTP: a
//! registry on a socket, a webhook receiver (an axum server) in the test.
//!
//! What is checked: the events of a push, a pull and deletes, with their
//! fields, in both envelopes; the `events` and `repositories` filters (and
//! that an unwanted event writes nothing); mounts and blob events; events
//! queue while the receiver is down and arrive in order once it is back;
//! dead letters after `max_attempts`; a receiver that never answers is cut
//! by `timeout`; two replicas on one S3 bucket deliver each event once.
//! (A `kill -9` of the binary is in `crates/oci-registry-bin/tests/notifications.rs`.)

use std::collections::HashMap;
use std::time::Duration;

use oci_e2e::receiver::Receiver;
use oci_e2e::{Backend, OCI_MANIFEST, TestServer};
use oci_storage::QueueName;
use reqwest::StatusCode;
use serde_json::Value;

/// Upper bound for a delivery (or a drained outbox) that comes at once on
/// an idle machine: generous, so a loaded one never fails a correct server.
const WAIT: Duration = Duration::from_secs(60);

/// A configuration with one endpoint `hook` at `url` and `extra` keys.
///
/// Unless `extra` sets one, the delivery timeout is 60 s: with the default
/// 5 s, a loaded machine that held the receiver's answer longer would
/// rightly deliver the event again, and the tests that count events
/// exactly would fail a correct server.
fn config(url: &str, extra: &str) -> String {
    let timeout = if extra.contains("timeout") {
        ""
    } else {
        "timeout = \"60s\"\n"
    };
    format!(
        "[notifications]\npoll = \"50ms\"\n[[notifications.endpoints]]\nname = \"hook\"\nurl = \"{url}\"\nbackoff = \"20ms\"\nmax_backoff = \"100ms\"\n{timeout}{extra}\n"
    )
}

fn queue(name: &str) -> QueueName {
    name.parse().unwrap()
}

async fn pending(srv: &TestServer, name: &str) -> usize {
    srv.storage()
        .outbox(&queue(name))
        .pending(1000)
        .await
        .unwrap()
        .len()
}

/// Waits until the outbox of `name` is empty.
async fn drained(srv: &TestServer, name: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while pending(srv, name).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox never drained"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A push, a pull by tag, a HEAD, a tag delete and a manifest delete: four
/// events, in order, each with distribution's fields.
async fn push_pull_delete(backend: Backend) {
    let receiver = Receiver::start().await;
    let text = config(
        &receiver.url(),
        "events = [\"push\", \"pull\", \"delete\"]\nheaders = { Authorization = \"Bearer s3cret\" }",
    );
    let srv = TestServer::start_with_config(backend, &text).await;
    let image = srv.push_image("team/app", "v1", 2).await;
    let r = srv
        .req(reqwest::Method::GET, "/v2/team/app/manifests/v1")
        .header("user-agent", "notify-test/1")
        .header("x-request-id", "req-pull-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(srv.head("/v2/team/app/manifests/v1").await.status(), 200);
    assert_eq!(srv.delete("/v2/team/app/manifests/v1").await.status(), 202);
    let by_digest = format!("/v2/team/app/manifests/{}", image.digest);
    assert_eq!(srv.delete(&by_digest).await.status(), 202);

    let got = receiver.wait_requests(4, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 4, "{backend:?}: no more than 4");
    for r in &got {
        assert_eq!(
            r.content_type,
            "application/vnd.docker.distribution.events.v2+json"
        );
        assert_eq!(r.headers["authorization"], "Bearer s3cret");
        assert_eq!(r.body["events"].as_array().unwrap().len(), 1);
    }
    let events: Vec<Value> = got.iter().flat_map(|r| r.events()).collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["push", "pull", "delete", "delete"], "{backend:?}");

    let push = &events[0];
    let t = &push["target"];
    assert_eq!(t["mediaType"], OCI_MANIFEST);
    assert_eq!(t["digest"], image.digest.as_str());
    assert_eq!(t["size"], image.manifest.len());
    assert_eq!(t["length"], image.manifest.len());
    assert_eq!(t["repository"], "team/app");
    assert_eq!(t["tag"], "v1");
    assert_eq!(
        t["url"],
        format!(
            "http://{}/v2/team/app/manifests/{}",
            srv.host(),
            image.digest
        )
    );
    assert_eq!(push["request"]["method"], "PUT");
    assert_eq!(push["request"]["host"], srv.host());
    assert!(
        push["request"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(!push["request"]["id"].as_str().unwrap().is_empty());
    assert_eq!(push["actor"], serde_json::json!({}));
    assert!(!push["source"]["instanceID"].as_str().unwrap().is_empty());
    assert!(push["source"]["addr"].as_str().unwrap().contains(':'));
    assert!(push["timestamp"].as_str().unwrap().ends_with('Z'));

    let pull = &events[1];
    assert_eq!(pull["target"]["digest"], image.digest.as_str());
    assert_eq!(pull["target"]["mediaType"], OCI_MANIFEST);
    assert_eq!(pull["target"]["tag"], "v1");
    assert_eq!(pull["target"]["size"], image.manifest.len());
    assert_eq!(pull["request"]["method"], "GET");
    assert_eq!(pull["request"]["useragent"], "notify-test/1");
    assert_eq!(pull["request"]["id"], "req-pull-1");

    assert_eq!(events[2]["target"]["tag"], "v1");
    assert!(events[2]["target"].get("digest").is_none());
    assert_eq!(events[3]["target"]["digest"], image.digest.as_str());
    assert!(events[3]["target"].get("tag").is_none());
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids.len(), 4, "ids are unique");
    drained(&srv, "hook").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_delete_memory() {
    push_pull_delete(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_delete_filesystem() {
    push_pull_delete(Backend::Filesystem).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_delete_s3() {
    push_pull_delete(Backend::S3).await;
}

/// The CloudEvents envelope: one structured-mode event per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_envelope() {
    let receiver = Receiver::start().await;
    let text = config(
        &receiver.url(),
        "format = \"cloudevents\"\nevents = [\"push\", \"pull\", \"delete\"]",
    );
    let srv = TestServer::start_with_config(Backend::Memory, &text).await;
    let image = srv.push_image("app", "latest", 1).await;
    assert_eq!(srv.get("/v2/app/manifests/latest").await.status(), 200);
    let by_digest = format!("/v2/app/manifests/{}", image.digest);
    assert_eq!(srv.delete(&by_digest).await.status(), 202);
    let got = receiver.wait_requests(3, WAIT).await;
    let types: Vec<&str> = got
        .iter()
        .map(|r| r.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "registry.image.pushed",
            "registry.image.pulled",
            "registry.image.deleted"
        ]
    );
    for r in &got {
        assert!(
            r.content_type.starts_with("application/cloudevents+json"),
            "{}",
            r.content_type
        );
        assert_eq!(r.body["specversion"], "1.0");
        assert_eq!(r.body["datacontenttype"], "application/json");
        assert_eq!(r.body["id"], r.body["data"]["id"]);
        assert_eq!(r.body["time"], r.body["data"]["timestamp"]);
        assert!(r.body["source"].as_str().unwrap().starts_with("//"));
    }
    assert_eq!(got[0].body["subject"], "app:latest");
    assert_eq!(got[2].body["subject"], format!("app@{}", image.digest));
    assert_eq!(
        got[0].body["data"]["target"]["digest"],
        image.digest.as_str()
    );
}

/// `repositories` and `events` choose what each endpoint gets; an event
/// no endpoint wants is not even written to storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_choose_what_each_endpoint_gets() {
    let team = Receiver::start().await;
    let deletes = Receiver::start().await;
    let text = format!(
        "[notifications]\npoll = \"50ms\"\n\
         [[notifications.endpoints]]\nname = \"team\"\nurl = \"{}\"\ntimeout = \"60s\"\nevents = [\"push\"]\nrepositories = [\"team/**\"]\n\
         [[notifications.endpoints]]\nname = \"deletes\"\nurl = \"{}\"\ntimeout = \"60s\"\nevents = [\"delete\"]\n",
        team.url(),
        deletes.url()
    );
    let srv = TestServer::start_with_config(Backend::Filesystem, &text).await;
    srv.push_image("team/a", "v1", 1).await;
    srv.push_image("other/b", "v1", 1).await;
    srv.push_image("team/c/d", "v1", 1).await;
    assert_eq!(srv.delete("/v2/other/b/manifests/v1").await.status(), 202);
    // Pulls: nobody wants them.
    for _ in 0..5 {
        assert_eq!(srv.get("/v2/team/a/manifests/v1").await.status(), 200);
    }
    let got = team.wait_requests(2, WAIT).await;
    let repos: Vec<Value> = got
        .iter()
        .flat_map(|r| r.events())
        .map(|e| e["target"]["repository"].clone())
        .collect();
    assert_eq!(repos, ["team/a", "team/c/d"]);
    let got = deletes.wait_requests(1, WAIT).await;
    assert_eq!(got[0].events()[0]["action"], "delete");
    assert_eq!(got[0].events()[0]["target"]["repository"], "other/b");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(team.received().len(), 2);
    assert_eq!(deletes.received().len(), 1);
    // No pull was ever recorded: only the two endpoints' queues exist, and
    // nothing is left in them.
    let root = srv.temp_dir().unwrap().join("registry/_events");
    let mut queues: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    queues.sort();
    assert_eq!(queues, ["deletes", "team"]);
    drained(&srv, "team").await;
}

/// Mounts are events of their own; blob pushes and pulls only with
/// `blobs = true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_and_blob_events() {
    let receiver = Receiver::start().await;
    let text = config(
        &receiver.url(),
        "events = [\"push\", \"pull\", \"mount\"]\nblobs = true",
    );
    let srv = TestServer::start_with_config(Backend::S3, &text).await;
    let digest = srv.push_blob("src", b"layer bytes").await;
    let r = srv
        .req(
            reqwest::Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        srv.get(&format!("/v2/dst/blobs/{digest}")).await.status(),
        200
    );
    let got = receiver.wait_requests(3, WAIT).await;
    let events: Vec<Value> = got.iter().flat_map(|r| r.events()).collect();
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"]["repository"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("push".into(), "src".into()),
            ("mount".into(), "dst".into()),
            ("pull".into(), "dst".into())
        ]
    );
    for e in &events {
        assert_eq!(e["target"]["mediaType"], "application/octet-stream");
        assert_eq!(e["target"]["digest"], digest.as_str());
        assert_eq!(e["target"]["size"], 11);
    }
    assert_eq!(events[1]["target"]["fromRepository"], "src");
    assert!(
        events[0]["target"]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v2/src/blobs/{digest}"))
    );
}

/// With the receiver down, events wait in storage; once it is back they
/// all arrive, in the order they happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_then_back_in_order() {
    let addr = Receiver::free_addr().await;
    let text = config(&format!("http://{addr}/hook"), "max_attempts = 1000");
    let srv = TestServer::start_with_config(Backend::Filesystem, &text).await;
    for i in 0..5 {
        srv.push_image("queued", &format!("t{i}"), 1).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pending(&srv, "hook").await, 5);
    let receiver = Receiver::start_at(addr).await;
    let got = receiver.wait_requests(5, WAIT).await;
    let tags: Vec<Value> = got
        .iter()
        .flat_map(|r| r.events())
        .map(|e| e["target"]["tag"].clone())
        .collect();
    assert_eq!(tags, ["t0", "t1", "t2", "t3", "t4"]);
    drained(&srv, "hook").await;
    assert!(
        srv.storage()
            .outbox(&queue("hook"))
            .dead_letters(10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A receiver that keeps failing: after `max_attempts` the event goes to
/// the dead letters with the last error, and the next event is delivered
/// once the receiver recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_after_max_attempts() {
    let receiver = Receiver::start().await;
    receiver.answer(500);
    let text = config(&receiver.url(), "max_attempts = 3");
    let srv = TestServer::start_with_config(Backend::S3, &text).await;
    let first = srv.push_image("dl", "first", 1).await;
    receiver.wait_requests(3, WAIT).await;
    let outbox = srv.storage().outbox(&queue("hook"));
    let deadline = tokio::time::Instant::now() + WAIT;
    let dead = loop {
        let dead = outbox.dead_letters(10).await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead.len(), 1);
    let letter: Value = serde_json::from_slice(&dead[0].body).unwrap();
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["endpoint"], "hook");
    assert!(
        letter["error"].as_str().unwrap().contains("500"),
        "{letter}"
    );
    assert_eq!(letter["event"]["target"]["digest"], first.digest.as_str());
    assert_eq!(
        receiver.received().len(),
        3,
        "exactly max_attempts attempts"
    );
    receiver.answer(200);
    let second = srv.push_image("dl", "second", 1).await;
    let got = receiver.wait_requests(4, WAIT).await;
    assert_eq!(
        got[3].events()[0]["target"]["digest"],
        second.digest.as_str()
    );
    assert_eq!(receiver.delivered().len(), 1);
}

/// A receiver that never answers holds delivery only for `timeout` per
/// attempt.
///
/// The two attempts end in the dead letters within 8 s of the push's
/// answer (the event was recorded just before it): far above two attempts
/// of 300 ms, even on a loaded machine, and below two of the default 5 s.
/// The push itself, however slow, is not inside that window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_receiver_is_cut_by_the_timeout() {
    let receiver = Receiver::start().await;
    receiver.delay(Duration::from_secs(60));
    let text = config(&receiver.url(), "timeout = \"300ms\"\nmax_attempts = 2");
    let srv = TestServer::start_with_config(Backend::Memory, &text).await;
    let started = std::time::Instant::now();
    srv.push_image("slow", "v1", 1).await;
    let pushed = std::time::Instant::now();
    let outbox = srv.storage().outbox(&queue("hook"));
    let dead = loop {
        let dead = outbox.dead_letters(10).await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(pushed.elapsed() < WAIT, "the timeout did not cut");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    let after_push = pushed.elapsed();
    assert!(after_push < Duration::from_secs(8), "{after_push:?}");
    let letter: Value = serde_json::from_slice(&dead[0].body).unwrap();
    assert!(
        letter["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 300ms"),
        "{letter}"
    );
    // The push itself was not slowed down by the receiver.
    assert_eq!(srv.get("/v2/slow/manifests/v1").await.status(), 200);
}

/// Two replicas on one S3 bucket, both running delivery: each event is
/// delivered exactly once, whichever replica recorded it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_event_once() {
    let receiver = Receiver::start().await;
    let text = config(&receiver.url(), "");
    let a = TestServer::start_with_config(Backend::S3, &text).await;
    let mut options = oci_storage::StorageOptions::default();
    options.backend.extend(a.s3().unwrap().options());
    let b = TestServer::start_at_with_config(a.storage_url(), options, &text).await;
    let mut digests = Vec::new();
    for i in 0..12 {
        let srv = if i % 2 == 0 { &a } else { &b };
        digests.push(srv.push_image("shared", &format!("t{i}"), 1).await.digest);
    }
    receiver.wait_requests(12, WAIT).await;
    // Both replicas had time to deliver anything twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = receiver.delivered();
    assert_eq!(events.len(), 12, "each event once: {events:#?}");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in &events {
        *seen
            .entry(e["target"]["digest"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for d in &digests {
        assert_eq!(seen.get(d.as_str()), Some(&1), "{d}");
    }
    let sources: std::collections::HashSet<_> = events
        .iter()
        .map(|e| e["source"]["instanceID"].clone())
        .collect();
    assert_eq!(sources.len(), 2, "both replicas recorded events");
    assert_eq!(pending(&a, "hook").await, 0);
}

/// A delete through the web UI's form is a `delete` event too, naming
/// the repository and the tag (the UI answers 303, not 202).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_through_the_web_ui_is_an_event() {
    use oci_e2e::ui::{csrf_of, get, post, visit};
    let receiver = Receiver::start().await;
    let srv = TestServer::start_with_config(Backend::Memory, &config(&receiver.url(), "")).await;
    srv.push_image("team/app", "v1", 1).await;
    let got = receiver.wait_requests(1, WAIT).await;
    assert_eq!(got[0].events()[0]["action"], "push");
    let cookie = visit(&srv).await;
    let path = "/ui/r/team/app/-/delete?ref=v1";
    let (status, _, page) = get(&srv, path, &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let token = csrf_of(&page);
    let r = post(&srv, path, &cookie, &[("csrf", &token), ("ref", "v1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let got = receiver.wait_requests(2, WAIT).await;
    let event = &got[1].events()[0];
    assert_eq!(event["action"], "delete");
    assert_eq!(event["target"]["repository"], "team/app");
    assert_eq!(event["target"]["tag"], "v1");
    assert_eq!(event["request"]["method"], "POST");
    drained(&srv, "hook").await;
}
