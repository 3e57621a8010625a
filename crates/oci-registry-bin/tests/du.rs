//! `oci-registry du` against a store a server filled over real HTTP: per
//! repository the referenced and exclusive bytes (a shared layer counts for
//! both repositories but is exclusive to neither), and the stored and
//! unreferenced totals. Filesystem and S3 through the binary (as an
//! operator runs it next to a live server); memory through the same
//! engine call, as a second process cannot open a memory store.

#[macro_use]
mod common;

use std::process::Command;

use common::on_storage;

use oci_e2e::{
    Backend, Descriptor, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, TestServer, config_json,
    image_manifest, random_blob,
};

/// The store's expected figures.
struct Expected {
    a_referenced: u64,
    a_exclusive: u64,
    b_referenced: u64,
    b_exclusive: u64,
    stored_blobs: u64,
    stored_bytes: u64,
    unreferenced: u64,
}

/// Pushes `team/a` (config, layers L1 L2) and `team/b` (config, layers L1
/// L3: L1 shared) and an orphan blob into `team/c`.
async fn fill(srv: &TestServer) -> Expected {
    let l1 = random_blob(30_000, 1);
    let l2 = random_blob(20_000, 2);
    let l3 = random_blob(10_000, 3);
    let orphan = random_blob(7_000, 4);
    let mut manifests = Vec::new();
    for (repo, layers) in [("team/a", [&l1, &l2]), ("team/b", [&l1, &l3])] {
        let config = config_json(repo);
        srv.push_blob(repo, &config).await;
        for l in layers {
            srv.push_blob(repo, l).await;
        }
        let descs: Vec<Descriptor> = layers
            .iter()
            .map(|l| Descriptor::of(OCI_LAYER_GZIP, l))
            .collect();
        let m = image_manifest(
            &Descriptor::of(OCI_CONFIG, &config),
            &descs,
            None,
            None,
            None,
        );
        srv.push_manifest(repo, "v1", OCI_MANIFEST, &m).await;
        manifests.push((m.len() as u64, config.len() as u64));
    }
    srv.push_blob("team/c", &orphan).await;
    let len = |b: &Vec<u8>| b.len() as u64;
    let [(ma, ca), (mb, cb)] = [manifests[0], manifests[1]];
    Expected {
        a_referenced: ma + ca + len(&l1) + len(&l2),
        a_exclusive: ma + ca + len(&l2),
        b_referenced: mb + cb + len(&l1) + len(&l3),
        b_exclusive: mb + cb + len(&l3),
        stored_blobs: 8,
        stored_bytes: ma + ca + mb + cb + len(&l1) + len(&l2) + len(&l3) + len(&orphan),
        unreferenced: len(&orphan),
    }
}

fn check(report: &serde_json::Value, want: &Expected) {
    let row = |name: &str| {
        report["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["repository"] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {report}"))
            .clone()
    };
    let (a, b, c) = (row("team/a"), row("team/b"), row("team/c"));
    assert_eq!(a["referenced_bytes"], want.a_referenced, "{report}");
    assert_eq!(a["exclusive_bytes"], want.a_exclusive, "{report}");
    assert_eq!(b["referenced_bytes"], want.b_referenced, "{report}");
    assert_eq!(b["exclusive_bytes"], want.b_exclusive, "{report}");
    assert_eq!(a["manifests"], 1);
    assert_eq!(c["manifests"], 0);
    assert_eq!(c["referenced_bytes"], 0, "a blob no manifest references");
    assert_eq!(report["stored_blobs"], want.stored_blobs, "{report}");
    assert_eq!(report["stored_bytes"], want.stored_bytes, "{report}");
    assert_eq!(report["unreferenced_bytes"], want.unreferenced, "{report}");
}

/// `oci-registry du --json` (and the table) on the server's storage.
fn du(srv: &TestServer, extra: &[&str]) -> String {
    let mut cmd = on_storage(srv, "du");
    cmd.args(extra);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn binary_reports_usage(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let want = fill(&srv).await;
    let report: serde_json::Value = serde_json::from_str(&du(&srv, &["--json"])).unwrap();
    check(&report, &want);
    // A glob limits the rows, not the accounting.
    let report: serde_json::Value =
        serde_json::from_str(&du(&srv, &["--json", "--repository", "team/a"])).unwrap();
    assert_eq!(report["repositories"].as_array().unwrap().len(), 1);
    assert_eq!(
        report["repositories"][0]["exclusive_bytes"],
        want.a_exclusive
    );
    let table = du(&srv, &[]);
    assert!(table.starts_with("REPOSITORY"), "{table}");
    assert!(table.contains("team/b"), "{table}");
    assert!(
        table.contains(&format!("({} bytes)", want.stored_bytes)),
        "{table}"
    );
}

on_shared_backends!(binary_reports_usage);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn du_memory() {
    let srv = TestServer::start(Backend::Memory).await;
    let want = fill(&srv).await;
    let usage = srv.storage().usage(None).await.unwrap();
    let report = serde_json::json!({
        "repositories": usage.repositories.iter().map(|r| serde_json::json!({
            "repository": r.name.as_str(),
            "manifests": r.manifests,
            "referenced_bytes": r.referenced_bytes,
            "exclusive_bytes": r.exclusive_bytes,
        })).collect::<Vec<_>>(),
        "stored_blobs": usage.stored_blobs,
        "stored_bytes": usage.stored_bytes,
        "unreferenced_bytes": usage.unreferenced_bytes,
    });
    check(&report, &want);
}

/// A bad glob is one line and exit 1.
#[test]
fn a_bad_glob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oci-registry"))
        .args(["du", "--repository", "Team/**", "--storage"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("Team/**"), "{err}");
}
