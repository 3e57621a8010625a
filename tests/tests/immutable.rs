//! Immutable tags (`[[immutable]]`) over real HTTP, on every backend: a
//! covered tag, once pushed, is never moved (another manifest under it is
//! `403 DENIED` and nothing is written) nor deleted (by tag, or by the
//! digest it names); pushing the same manifest again is fine; racing
//! first pushes leave exactly one winner; other tags and repositories
//! behave as before.

use oci_e2e::*;
use reqwest::StatusCode;

/// `release/**` tags `v*` are immutable.
async fn server(backend: Backend) -> TestServer {
    let mut options = oci_storage::StorageOptions::default();
    options.immutable = vec![oci_storage::ImmutableRule {
        repositories: vec!["release/**".parse().unwrap()],
        tags: vec!["v*".parse().unwrap()],
    }];
    TestServer::start_with_options(backend, options).await
}

/// An image in `repo` (blobs pushed) whose manifest differs by `seed`;
/// returns the manifest bytes, not yet pushed.
async fn image(srv: &TestServer, repo: &str, seed: u64) -> Vec<u8> {
    let config = config_json(&format!("immutable {seed}"));
    srv.push_blob(repo, &config).await;
    let layer = random_blob(1000, seed);
    srv.push_blob(repo, &layer).await;
    image_manifest(
        &Descriptor::of(OCI_CONFIG, &config),
        &[Descriptor::of(OCI_LAYER_GZIP, &layer)],
        None,
        None,
        None,
    )
}

async fn immutable_tags_never_move(backend: Backend) {
    let srv = server(backend).await;
    let repo = "release/app";
    let a = image(&srv, repo, 1).await;
    let b = image(&srv, repo, 2).await;
    let a_digest = srv.push_manifest(repo, "v1", OCI_MANIFEST, &a).await;
    // The same manifest again: accepted.
    srv.push_manifest(repo, "v1", OCI_MANIFEST, &a).await;
    // Another one: refused, and nothing of it is written.
    let resp = srv.put_manifest(repo, "v1", OCI_MANIFEST, &b).await;
    let body = assert_error(resp, 403, &["DENIED"]).await;
    assert!(
        body.to_string().contains("immutable"),
        "a clear message: {body}"
    );
    let b_digest = sha256_digest(&b);
    let resp = srv.head(&format!("/v2/{repo}/manifests/{b_digest}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "the refused manifest");
    // Deleting the tag, or the manifest it names: refused.
    let resp = srv.delete(&format!("/v2/{repo}/manifests/v1")).await;
    assert_error(resp, 403, &["DENIED"]).await;
    let resp = srv
        .delete(&format!("/v2/{repo}/manifests/{a_digest}"))
        .await;
    assert_error(resp, 403, &["DENIED"]).await;
    let resp = srv.get(&format!("/v2/{repo}/manifests/v1")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), a);

    // Tags the rule does not cover move and go as before.
    srv.push_manifest(repo, "latest", OCI_MANIFEST, &a).await;
    srv.push_manifest(repo, "latest", OCI_MANIFEST, &b).await;
    let resp = srv.delete(&format!("/v2/{repo}/manifests/latest")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // So do `v*` tags of other repositories.
    let other = "dev/app";
    let c = image(&srv, other, 1).await;
    let d = image(&srv, other, 2).await;
    srv.push_manifest(other, "v1", OCI_MANIFEST, &c).await;
    let d_digest = srv.push_manifest(other, "v1", OCI_MANIFEST, &d).await;
    let resp = srv
        .delete(&format!("/v2/{other}/manifests/{d_digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
}

/// Eight clients push eight different manifests as the first `v2` at
/// once: the pushes of exactly one manifest succeed, the others are
/// refused, and the tag names the winner.
async fn racing_first_pushes_have_one_winner(backend: Backend) {
    let srv = server(backend).await;
    let repo = "release/race";
    let mut manifests = Vec::new();
    for seed in 0..8 {
        manifests.push(image(&srv, repo, 100 + seed).await);
    }
    let pushes = manifests.iter().map(|m| async {
        let resp = srv.put_manifest(repo, "v2", OCI_MANIFEST, m).await;
        (resp.status(), sha256_digest(m))
    });
    let results = futures::future::join_all(pushes).await;
    let winners: Vec<&String> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, d)| d)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|(s, _)| *s == StatusCode::CREATED || *s == StatusCode::FORBIDDEN),
        "{results:?}"
    );
    let resp = srv.get(&format!("/v2/{repo}/manifests/v2")).await;
    let body = resp.bytes().await.unwrap();
    assert_eq!(&sha256_digest(&body), winners[0]);
}

backend_tests!(
    immutable_tags_never_move,
    racing_first_pushes_have_one_winner
);
