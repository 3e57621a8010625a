//! `oci-registry fsck` on a store a server filled over real HTTP and that
//! was then damaged behind its back (bytes rewritten or removed in the
//! filesystem, or in the S3 bucket directly): every kind of problem is
//! named, `--sample 0` skips re-hashing, `--repair` removes only the
//! dangling links and tags, and the exit status says whether a problem
//! remains.

#[macro_use]
mod common;

use common::on_storage;

use oci_e2e::{Backend, Image, TestServer};

/// Where a blob's bytes live, relative to the storage root.
fn blob_key(digest: &str) -> String {
    let (alg, hex) = digest.split_once(':').unwrap();
    format!("blobs/{alg}/{}/{hex}/data", &hex[..2])
}

/// Writes (or with `None`, removes) an object of the store directly.
fn raw(srv: &TestServer, key: &str, data: Option<&[u8]>) {
    match (srv.s3(), srv.temp_dir()) {
        (Some(s3), _) => match data {
            Some(d) => s3.put(&format!("registry/{key}"), bytes::Bytes::copy_from_slice(d)),
            None => assert!(s3.remove(&format!("registry/{key}")), "{key}"),
        },
        (None, Some(dir)) => {
            let path = dir.join("registry").join(key);
            match data {
                Some(d) => std::fs::write(path, d).unwrap(),
                None => std::fs::remove_file(path).unwrap(),
            }
        }
        _ => panic!("a persistent backend"),
    }
}

fn fsck(srv: &TestServer, extra: &[&str]) -> (bool, String) {
    let mut cmd = on_storage(srv, "fsck");
    cmd.args(extra);
    let out = cmd.output().unwrap();
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(1), "{out:?}");
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

async fn finds_and_repairs(backend: Backend) {
    let srv = TestServer::start(backend).await;
    // Names of different lengths: push_image derives its bytes from them.
    let a: Image = srv.push_image("team/a", "v1", 2).await;
    let b: Image = srv.push_image("team/bb", "v1", 1).await;
    let d: Image = srv.push_image("team/ddd", "v1", 1).await;
    srv.push_blob("team/c", b"an orphan blob").await;
    let (ok, out) = fsck(&srv, &[]);
    assert!(ok, "a healthy store: {out}");
    assert!(out.contains("0 problems"), "{out}");

    let l1 = &a.layer_descs[0].digest;
    let l3 = &b.layer_descs[0].digest;
    raw(&srv, &blob_key(l1), Some(b"not what was pushed"));
    raw(&srv, &blob_key(l3), None);
    raw(
        &srv,
        "repositories/team/a/_tags/ghost",
        Some(b.digest.as_bytes()),
    );
    raw(&srv, &blob_key(&d.digest), None);

    let (ok, out) = fsck(&srv, &[]);
    assert!(!ok, "{out}");
    for line in [
        format!("corrupt blob {l1}"),
        format!(
            "team/bb: manifest {} refers to {l3}, which is gone",
            b.digest
        ),
        format!("team/bb: blob link {l3} without the blob"),
        "team/a: tag ghost names a manifest the repository lacks".to_owned(),
        "team/ddd: tag v1 names a manifest the repository lacks".to_owned(),
        format!("team/ddd: manifest link {} without the manifest", d.digest),
        "6 problems".to_owned(),
    ] {
        assert!(out.contains(&line), "{line:?} not in:\n{out}");
    }
    // The orphan, and what only team/ddd's lost manifest referenced.
    assert!(out.contains("3 referenced by nothing"), "{out}");

    let (_, out) = fsck(&srv, &["--sample", "0"]);
    assert!(!out.contains("corrupt blob"), "{out}");
    assert!(out.contains("0 re-hashed"), "{out}");

    let (ok, out) = fsck(&srv, &["--repair"]);
    assert!(!ok, "corrupt and missing blobs remain: {out}");
    assert!(out.contains("4 repaired"), "{out}");
    assert!(out.contains("(dangling)"), "{out}");
    let (ok, out) = fsck(&srv, &[]);
    assert!(!ok);
    assert!(out.contains("2 problems"), "{out}");
    assert!(
        !out.contains("ghost") && !out.contains("blob link"),
        "{out}"
    );
    // The healthy image is untouched by the repair.
    let resp = srv.get("/v2/team/a/manifests/v1").await;
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
}

on_shared_backends!(finds_and_repairs);

/// Memory cannot be damaged from outside or opened by another process:
/// the engine call on a healthy store finds nothing and hashes every blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_memory() {
    let srv = TestServer::start(Backend::Memory).await;
    srv.push_image("team/a", "v1", 2).await;
    let report = srv
        .storage()
        .fsck(&oci_storage::FsckOptions::default())
        .await
        .unwrap();
    assert_eq!(report.findings, Vec::new());
    assert_eq!((report.blobs, report.hashed, report.orphans), (4, 4, 0));
}
