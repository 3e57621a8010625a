//! `oci-registry gc` and the online collector, over real HTTP and the real
//! binary, on the filesystem and S3 (memory's collections are the engine's
//! behaviour suite: a second process cannot open a memory store):
//!
//! - what a collection removes and keeps, read back over HTTP and from the
//!   store itself, and what `--dry-run` prints;
//! - the HEAD-then-reference race, with `oci-registry gc` looping in
//!   another process while several clients push;
//! - two replicas collecting online while clients push through both;
//! - `kill -9` in the middle of a sweep, then a rerun.

#[macro_use]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{on_storage, scrape, signal, start, wait_exit};
use oci_e2e::{
    Backend, Descriptor, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, TestServer, config_json,
    image_manifest, random_blob, sha256_digest,
};

/// `oci-registry gc <args>` on `srv`'s storage.
fn gc_command(srv: &TestServer, args: &[&str]) -> Command {
    let mut cmd = on_storage(srv, "gc");
    cmd.args(args);
    cmd
}

/// Runs `oci-registry gc <args>`, asserts success, returns stdout.
fn gc(srv: &TestServer, args: &[&str]) -> String {
    let out = gc_command(srv, args).output().unwrap();
    assert!(
        out.status.success(),
        "gc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What `fill` pushed.
struct Filled {
    /// Digests that must stay, with the repository that serves them.
    kept: Vec<(&'static str, String)>,
    /// Manifests that must stay, by repository.
    manifests: Vec<(&'static str, String)>,
    /// Digests that must go, with their sizes.
    gone: Vec<(String, u64)>,
}

/// Two images sharing a layer in two repositories, an index over one of
/// them and a second child, a signature (referrer) with its own blob, an
/// image deleted by digest, and a blob no manifest references.
async fn fill(srv: &TestServer) -> Filled {
    let shared = random_blob(20_000, 1);
    let mut kept = Vec::new();
    let mut manifests = Vec::new();
    let image = |repo: &'static str, label: &str, extra: Option<Vec<u8>>| {
        let config = config_json(label);
        let mut layers = vec![shared.clone()];
        layers.extend(extra);
        (repo, config, layers)
    };
    let images = [
        image("team/app", "app", Some(random_blob(9_000, 2))),
        image("team/other", "other", None),
        image("team/app", "child", Some(random_blob(5_000, 3))),
    ];
    let mut pushed = Vec::new();
    for (i, (repo, config, layers)) in images.iter().enumerate() {
        srv.push_blob(repo, config).await;
        kept.push((*repo, sha256_digest(config)));
        for l in layers {
            srv.push_blob(repo, l).await;
            kept.push((*repo, sha256_digest(l)));
        }
        let descs: Vec<Descriptor> = layers
            .iter()
            .map(|l| Descriptor::of(OCI_LAYER_GZIP, l))
            .collect();
        let m = image_manifest(
            &Descriptor::of(OCI_CONFIG, config),
            &descs,
            None,
            None,
            None,
        );
        let reference = if i == 2 {
            sha256_digest(&m)
        } else {
            "v1".to_owned()
        };
        let d = srv.push_manifest(repo, &reference, OCI_MANIFEST, &m).await;
        manifests.push((*repo, d));
        pushed.push(m);
    }
    // An index over the first image and the untagged child.
    let index = oci_e2e::image_index(
        &[
            Descriptor::of(OCI_MANIFEST, &pushed[0]),
            Descriptor::of(OCI_MANIFEST, &pushed[2]),
        ],
        None,
        None,
        None,
    );
    let d = srv
        .push_manifest("team/app", "multi", oci_e2e::OCI_INDEX, &index)
        .await;
    manifests.push(("team/app", d));
    // A signature of the first image, untagged, with a blob of its own.
    let sig = random_blob(700, 4);
    let empty = b"{}".to_vec();
    srv.push_blob("team/app", &sig).await;
    srv.push_blob("team/app", &empty).await;
    kept.push(("team/app", sha256_digest(&sig)));
    kept.push(("team/app", sha256_digest(&empty)));
    let referrer = image_manifest(
        &Descriptor::of("application/vnd.oci.empty.v1+json", &empty),
        &[Descriptor::of("application/vnd.example.signature", &sig)],
        Some(&Descriptor::of(OCI_MANIFEST, &pushed[0])),
        Some("application/vnd.example.signature"),
        None,
    );
    let d = srv
        .push_manifest(
            "team/app",
            &sha256_digest(&referrer),
            OCI_MANIFEST,
            &referrer,
        )
        .await;
    manifests.push(("team/app", d));
    // An image deleted by digest.
    let dead_config = config_json("dead");
    let dead_layer = random_blob(3_000, 5);
    srv.push_blob("team/app", &dead_config).await;
    srv.push_blob("team/app", &dead_layer).await;
    let dead = image_manifest(
        &Descriptor::of(OCI_CONFIG, &dead_config),
        &[Descriptor::of(OCI_LAYER_GZIP, &dead_layer)],
        None,
        None,
        None,
    );
    let dead_digest = srv
        .push_manifest("team/app", "dead", OCI_MANIFEST, &dead)
        .await;
    let r = srv
        .delete(&format!("/v2/team/app/manifests/{dead_digest}"))
        .await;
    assert_eq!(r.status(), 202);
    // A blob nothing references.
    let orphan = random_blob(4_000, 6);
    srv.push_blob("team/other", &orphan).await;
    let size = |b: &[u8]| b.len() as u64;
    Filled {
        kept,
        manifests,
        gone: vec![
            (dead_digest, size(&dead)),
            (sha256_digest(&dead_config), size(&dead_config)),
            (sha256_digest(&dead_layer), size(&dead_layer)),
            (sha256_digest(&orphan), size(&orphan)),
        ],
    }
}

/// The object key of a blob's bytes.
fn blob_key(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("blobs/sha256/{}/{hex}/data", &hex[..2])
}

/// Whether the store holds a blob's bytes, read from the store itself
/// (the directory tree, or the S3 server's objects).
fn stored(srv: &TestServer, digest: &str) -> bool {
    stored_key(srv, &blob_key(digest))
}

async fn sweeps_and_keeps(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let filled = fill(&srv).await;
    for (d, _) in &filled.gone {
        assert!(stored(&srv, d), "{d} missing before collection");
    }
    // A dry run lists exactly what would go, and removes nothing.
    let dry = gc(&srv, &["--grace", "0s", "--dry-run"]);
    for (d, size) in &filled.gone {
        assert!(
            dry.contains(&format!("would remove {d} ({size} bytes)")),
            "{dry}"
        );
    }
    let bytes: u64 = filled.gone.iter().map(|(_, s)| s).sum();
    assert!(
        dry.contains("would remove 4 blobs, ") && dry.contains(&format!("({bytes} bytes)")),
        "{dry}"
    );
    for (d, _) in &filled.gone {
        assert!(stored(&srv, d), "the dry run removed {d}");
    }
    // A grace period keeps everything this young.
    let young = gc(&srv, &["--grace", "1h"]);
    assert!(young.starts_with("removed 0 blobs"), "{young}");
    // The collection.
    let out = gc(&srv, &["--grace", "0s"]);
    assert!(
        out.starts_with("removed 4 blobs, ") && out.contains(&format!("({bytes} bytes)")),
        "{out}"
    );
    assert!(out.contains("and 3 links"), "{out}");
    for (d, _) in &filled.gone {
        assert!(!stored(&srv, d), "{d} still stored");
    }
    for (repo, d) in &filled.kept {
        assert!(stored(&srv, d), "{d} was swept");
        let r = srv.get(&format!("/v2/{repo}/blobs/{d}")).await;
        assert_eq!(r.status(), 200, "{repo} {d}");
        assert_eq!(sha256_digest(&r.bytes().await.unwrap()), *d);
    }
    for (repo, d) in &filled.manifests {
        let r = srv.get(&format!("/v2/{repo}/manifests/{d}")).await;
        assert_eq!(r.status(), 200, "{repo} {d}");
    }
    // The swept blobs are gone from their repositories too.
    let orphan = &filled.gone[3].0;
    let r = srv.head(&format!("/v2/team/other/blobs/{orphan}")).await;
    assert_eq!(r.status(), 404);
    // The referrer is still listed for its subject.
    let subject = &filled.manifests[0].1;
    let r = srv.get(&format!("/v2/team/app/referrers/{subject}")).await;
    let list: serde_json::Value = r.json().await.unwrap();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1, "{list}");
    // Nothing more the second time.
    let again = gc(&srv, &["--grace", "0s"]);
    assert!(again.starts_with("removed 0 blobs"), "{again}");
}

/// One client's rounds of the HEAD-then-reference race: upload a blob,
/// HEAD it (200) as a client checking what to skip, then push a manifest
/// referencing it. Returns the accepted images (manifest, repository,
/// blobs) and the count of refusals, each of which must be
/// `MANIFEST_BLOB_UNKNOWN`.
async fn race_rounds(
    base: Arc<Vec<String>>,
    client: usize,
    rounds: usize,
) -> (Vec<(String, String, Vec<String>)>, usize) {
    let http = reqwest::Client::new();
    let repo = format!("race/c{client}");
    let mut accepted = Vec::new();
    let mut refused = 0;
    for round in 0..rounds {
        // Alternate replicas between the steps when there are several.
        let at = |step: usize| &base[(round + step) % base.len()];
        let orphan = random_blob(2_000, (client * 10_000 + round) as u64);
        let config = config_json(&format!("c{client} r{round}"));
        for (step, blob) in [&orphan, &config].into_iter().enumerate() {
            let d = sha256_digest(blob);
            let r = http
                .post(format!("{}/v2/{repo}/blobs/uploads/?digest={d}", at(step)))
                .header("content-type", "application/octet-stream")
                .body(blob.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "upload {d}");
        }
        let od = sha256_digest(&orphan);
        let r = http
            .head(format!("{}/v2/{repo}/blobs/{od}", at(1)))
            .send()
            .await
            .unwrap();
        // A collection may have taken it already: then a real client
        // uploads it again, and so on; here the push goes on regardless.
        let _ = r.status();
        let m = image_manifest(
            &Descriptor::of(OCI_CONFIG, &config),
            &[Descriptor::of(OCI_LAYER_GZIP, &orphan)],
            None,
            None,
            None,
        );
        let r = http
            .put(format!("{}/v2/{repo}/manifests/r{round}", at(2)))
            .header("content-type", OCI_MANIFEST)
            .body(m.clone())
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            201 => accepted.push((
                sha256_digest(&m),
                repo.clone(),
                vec![od, sha256_digest(&config)],
            )),
            400 => {
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN", "{body}");
                refused += 1;
            }
            s => panic!("manifest push answered {s}: {}", r.text().await.unwrap()),
        }
    }
    (accepted, refused)
}

/// Every accepted image is whole: its manifest and every blob served
/// with the right bytes.
async fn assert_whole(base: &str, images: &[(String, String, Vec<String>)]) {
    let http = reqwest::Client::new();
    for (manifest, repo, blobs) in images {
        let r = http
            .get(format!("{base}/v2/{repo}/manifests/{manifest}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo}@{manifest}");
        for b in blobs {
            let r = http
                .get(format!("{base}/v2/{repo}/blobs/{b}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "blob {b} of accepted {repo}@{manifest}");
            assert_eq!(sha256_digest(&r.bytes().await.unwrap()), *b);
        }
    }
}

/// `oci-registry gc --grace 0s` in a loop in another process while four
/// clients push: no accepted manifest loses a blob.
async fn race_with_gc_process(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let stop = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let looping = {
        let (stop, runs) = (Arc::clone(&stop), Arc::clone(&runs));
        let mut cmd = gc_command(&srv, &["--grace", "0s"]);
        cmd.stderr(Stdio::null());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = cmd.output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                if out.status.success() && text.starts_with("removed") {
                    runs.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let base = Arc::new(vec![srv.base().to_owned()]);
    let rounds = if backend == Backend::S3 { 25 } else { 40 };
    let clients: Vec<_> = (0..4)
        .map(|c| tokio::spawn(race_rounds(Arc::clone(&base), c, rounds)))
        .collect();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for c in clients {
        let (a, r) = c.await.unwrap();
        accepted.extend(a);
        refused += r;
    }
    // At least a few collections overlapped the pushes.
    while runs.load(Ordering::Relaxed) < 3 {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    looping.join().unwrap();
    assert!(!accepted.is_empty(), "every push was refused");
    assert_whole(srv.base(), &accepted).await;
    // And they stay whole through one more collection.
    gc(&srv, &["--grace", "0s"]);
    assert_whole(srv.base(), &accepted).await;
    eprintln!(
        "{}: {} accepted, {refused} refused, {} collections",
        backend.name(),
        accepted.len(),
        runs.load(Ordering::Relaxed)
    );
}

/// Two `oci-registry serve` replicas on one store, each running the
/// online collector every few hundred milliseconds, while clients push
/// through both (each upload, HEAD and manifest on a different replica).
async fn replicas_collect_online(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s3 = match backend {
        Backend::S3 => Some(oci_test_s3::S3Server::start().await.unwrap()),
        _ => None,
    };
    let url = match &s3 {
        Some(s3) => s3.url("registry"),
        None => oci_e2e::file_url(dir.path()),
    };
    let mut replicas: Vec<_> = (0..2)
        .map(|_| {
            start(|cmd| {
                cmd.args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
                    .args(["--storage", &url])
                    .env("OCI_REGISTRY_GC_INTERVAL", "300ms")
                    .env("OCI_REGISTRY_GC_GRACE", "0s")
                    .env("OCI_REGISTRY_STORAGE_LEASE_TTL", "2s");
                if let Some(s3) = &s3 {
                    cmd.envs(s3.env());
                }
            })
        })
        .collect();
    let base = Arc::new(replicas.iter().map(|r| r.base.clone()).collect::<Vec<_>>());
    let storage = match &s3 {
        Some(s3) => oci_storage::Storage::open_with(&url, &s3.options()).await,
        None => oci_storage::Storage::open(&url).await,
    }
    .unwrap();
    let started = Instant::now();
    let generation = storage.gc_state().await.unwrap().generation;
    let clients: Vec<_> = (0..3)
        .map(|c| tokio::spawn(race_rounds(Arc::clone(&base), c, 20)))
        .collect();
    let mut accepted = Vec::new();
    for c in clients {
        accepted.extend(c.await.unwrap().0);
    }
    // Collections ran while the clients pushed, and keep running.
    loop {
        let now = storage.gc_state().await.unwrap().generation;
        if now >= generation + 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the replicas collected only {} times",
            now - generation
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!accepted.is_empty(), "every push was refused");
    for b in base.iter() {
        assert_whole(b, &accepted).await;
    }
    // The collections show in the replicas' metrics.
    let mut runs = 0.0;
    for r in &replicas {
        let text = scrape(r).await;
        runs += text
            .lines()
            .find(|l| l.starts_with("oci_registry_gc_runs_total{result=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse::<f64>().unwrap());
        assert!(
            text.contains("oci_registry_gc_last_run_duration_seconds"),
            "{text}"
        );
    }
    assert!(runs >= 3.0, "{runs} collections in the metrics");
    for r in &mut replicas {
        signal(&r.child, "TERM");
        assert!(wait_exit(&mut r.child).success());
    }
}

/// `kill -9` while a collection sweeps thousands of orphans: the store
/// stays consistent (every image whole, the state naming the dead run)
/// and the next run takes over and finishes the work.
async fn killed_mid_sweep(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let image = srv.push_image("keep/app", "v1", 2).await;
    let orphans = if backend == Backend::S3 { 3_000 } else { 5_000 };
    // Orphans written straight into the store: faster than pushing them.
    let mut keys = Vec::new();
    for i in 0..orphans {
        let data = format!("orphan {i}").into_bytes();
        let key = blob_key(&sha256_digest(&data));
        match (srv.temp_dir(), srv.s3()) {
            (Some(_), _) => {
                let root = srv.storage_url().trim_start_matches("file://");
                let path = Path::new(root).join(&key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, &data).unwrap();
            }
            (_, Some(s3)) => s3.put(&format!("registry/{key}"), data.into()),
            _ => unreachable!(),
        }
        keys.push(key);
    }
    let mut child = gc_command(&srv, &["--grace", "0s"])
        .env("OCI_REGISTRY_STORAGE_LEASE_TTL", "2s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let storage = srv.storage();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = storage.gc_state().await.unwrap();
        if state.phase == Some(oci_storage::GcPhase::Sweeping) {
            break;
        }
        assert!(Instant::now() < deadline, "never saw the sweep: {state:?}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "gc ended before its sweep was seen"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    signal(&child, "KILL");
    child.wait().unwrap();
    let state = storage.gc_state().await.unwrap();
    assert_eq!(
        state.phase,
        Some(oci_storage::GcPhase::Sweeping),
        "{state:?}"
    );
    // A delete the killed process had already sent may still be carried
    // out by the in-process S3 server: count once it has settled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = keys.iter().filter(|k| stored_key(&srv, k)).count();
    assert!(left > 0, "the collection finished before the kill");
    // Consistent: the image is whole and fsck finds no problem.
    assert_whole(
        srv.base(),
        &[(
            image.digest.clone(),
            "keep/app".into(),
            std::iter::once(image.config_desc.digest.clone())
                .chain(image.layer_descs.iter().map(|d| d.digest.clone()))
                .collect(),
        )],
    )
    .await;
    let report = storage
        .fsck(&oci_storage::FsckOptions::default())
        .await
        .unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    // Pushes go on meanwhile (refused only for the dead run's candidates).
    srv.push_image("keep/new", "v1", 1).await;
    // The next run takes over (on S3, once the dead lease expired) and
    // finishes.
    let out = gc(&srv, &["--grace", "0s"]);
    assert!(
        out.starts_with(&format!("removed {left} blobs")),
        "{left} left: {out}"
    );
    let state = storage.gc_state().await.unwrap();
    assert!(state.is_idle(), "{state:?}");
    assert_eq!(keys.iter().filter(|k| stored_key(&srv, k)).count(), 0);
    srv.get(&format!("/v2/keep/app/manifests/{}", image.digest))
        .await;
}

/// Whether the object `key` is stored.
fn stored_key(srv: &TestServer, key: &str) -> bool {
    match (srv.temp_dir(), srv.s3()) {
        (Some(_), _) => {
            let root = srv.storage_url().trim_start_matches("file://");
            Path::new(root).join(key).is_file()
        }
        (_, Some(s3)) => !s3.keys(&format!("registry/{key}")).is_empty(),
        _ => unreachable!(),
    }
}

/// `[[retention]]` from a configuration file, applied by `oci-registry gc
/// --config`: exactly the expected tags remain (read over HTTP), and the
/// dropped manifests are gone.
async fn retention_by_config(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let mut images = Vec::new();
    for tag in ["v1", "t1", "t2", "t3"] {
        images.push(srv.push_image("ci/app", tag, 1).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    srv.push_manifest("ci/app", "latest", OCI_MANIFEST, &images[3].manifest)
        .await;
    let other = srv.push_image("prod/app", "t1", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nurl = \"{}\"\n\n[[retention]]\nrepositories = [\"ci/**\"]\n\
             keep_last = 1\nkeep_tags = [\"v*\"]\ndelete_untagged = true\n",
            srv.storage_url()
        ),
    )
    .unwrap();
    let mut dry = gc_command(&srv, &["--grace", "0s", "--dry-run"]);
    let out = dry
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry = String::from_utf8(out.stdout).unwrap();
    assert!(
        dry.contains("retention: would remove 3 tags and 2 manifests"),
        "{dry}"
    );
    for tag in ["t1", "t2", "t3"] {
        assert!(
            dry.contains(&format!("would remove tag ci/app:{tag}\n")),
            "{dry}"
        );
    }
    let tags = |srv: &TestServer| {
        let url = srv.url("/v2/ci/app/tags/list");
        async move {
            let list: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            list["tags"].clone()
        }
    };
    assert_eq!(tags(&srv).await.as_array().unwrap().len(), 5);
    let out = gc_command(&srv, &["--grace", "0s"])
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("retention: removed 3 tags and 2 manifests"),
        "{text}"
    );
    assert_eq!(tags(&srv).await, serde_json::json!(["latest", "v1"]));
    for (image, kept) in images.iter().zip([true, false, false, true]) {
        let r = srv
            .head(&format!("/v2/ci/app/manifests/{}", image.digest))
            .await;
        assert_eq!(r.status() == 200, kept, "{}", image.digest);
        assert_eq!(stored(&srv, &image.layer_descs[0].digest), kept);
    }
    // Repositories no rule covers keep everything.
    let r = srv.head("/v2/prod/app/manifests/t1").await;
    assert_eq!(r.status(), 200);
    assert!(stored(&srv, &other.layer_descs[0].digest));
}

/// With `[metrics] per_repository`, each collection exports what `du`
/// reports: the store's totals and per repository, the same figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_metrics_follow_collections() {
    let dir = tempfile::tempdir().unwrap();
    let url = oci_e2e::file_url(dir.path());
    let mut run = start(|cmd| {
        cmd.args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--storage", &url])
            .env("OCI_REGISTRY_GC_INTERVAL", "200ms")
            .env("OCI_REGISTRY_METRICS_PER_REPOSITORY", "true");
    });
    let http = reqwest::Client::new();
    for (repo, seed) in [("usage/a", 1), ("usage/b", 2)] {
        let layer = random_blob(10_000 * seed, seed as u64);
        let config = config_json(repo);
        for blob in [&layer, &config] {
            let r = http
                .post(format!(
                    "{}/v2/{repo}/blobs/uploads/?digest={}",
                    run.base,
                    sha256_digest(blob)
                ))
                .body(blob.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        let m = image_manifest(
            &Descriptor::of(OCI_CONFIG, &config),
            &[Descriptor::of(OCI_LAYER_GZIP, &layer)],
            None,
            None,
            None,
        );
        let r = http
            .put(format!("{}/v2/{repo}/manifests/v1", run.base))
            .header("content-type", OCI_MANIFEST)
            .body(m)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // A collection that started after the pushes.
    let storage = oci_storage::Storage::open(&url).await.unwrap();
    let after = storage.gc_state().await.unwrap().generation + 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = storage.gc_state().await.unwrap();
        if state.generation > after && state.is_idle() {
            break;
        }
        assert!(Instant::now() < deadline, "no collection: {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let usage = storage.usage(None).await.unwrap();
    let text = scrape(&run).await;
    let value = |series: &str| {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    };
    assert_eq!(
        value("oci_registry_storage_bytes"),
        usage.stored_bytes as f64
    );
    assert_eq!(
        value("oci_registry_storage_blobs"),
        usage.stored_blobs as f64
    );
    assert_eq!(value("oci_registry_storage_unreferenced_bytes"), 0.0);
    for r in &usage.repositories {
        let label = format!("{{repository=\"{}\"}}", r.name);
        assert_eq!(
            value(&format!("oci_registry_repository_referenced_bytes{label}")),
            r.referenced_bytes as f64
        );
        assert_eq!(
            value(&format!("oci_registry_repository_exclusive_bytes{label}")),
            r.exclusive_bytes as f64
        );
        assert_eq!(
            value(&format!("oci_registry_repository_manifests{label}")),
            1.0
        );
    }
    assert_eq!(usage.repositories.len(), 2);
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
}

// The filesystem and S3 (memory's collections are the engine's tests).
on_shared_backends!(
    sweeps_and_keeps,
    race_with_gc_process,
    replicas_collect_online,
    killed_mid_sweep,
    retention_by_config,
);
