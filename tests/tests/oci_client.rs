//! Interoperability with an independent client implementation: the
//! `oci-client` crate pushes and pulls through the registry over plain HTTP.

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_e2e::*;
use reqwest::StatusCode;

/// An `oci-client` speaking plain HTTP, pushing chunked or monolithically.
fn client(monolithic: bool) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: monolithic,
        ..Default::default()
    })
}

/// Pushes a two-layer image with `oci-client`, pulls it back with
/// `oci-client`, and checks bytes and digests against what the registry
/// serves to a plain HTTP client.
async fn push_and_pull(srv: &TestServer, monolithic: bool) {
    let repo = if monolithic {
        "ociclient/mono"
    } else {
        "ociclient/chunked"
    };
    let c = client(monolithic);
    let auth = RegistryAuth::Anonymous;
    let reference = Reference::with_tag(srv.host().to_owned(), repo.to_owned(), "v1".to_owned());

    let seed = u64::from(monolithic);
    let layers = vec![
        ImageLayer::oci_v1(random_blob(300_000, 10 + seed), None),
        ImageLayer::oci_v1_gzip(random_blob(20_000, 20 + seed), None),
    ];
    let config = Config::oci_v1(config_json(repo), None);
    c.push(&reference, &layers, config.clone(), &auth, None)
        .await
        .expect("oci-client push");

    // What a plain HTTP client sees.
    let resp = srv.get(&format!("/v2/{repo}/manifests/v1")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some(OCI_IMAGE_MEDIA_TYPE)
    );
    let raw = resp.bytes().await.unwrap();
    let manifest_digest = sha256_digest(&raw);
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        manifest["config"]["digest"],
        serde_json::json!(config.sha256_digest())
    );
    for (desc, layer) in manifest["layers"].as_array().unwrap().iter().zip(&layers) {
        assert_eq!(desc["digest"], serde_json::json!(layer.sha256_digest()));
        let resp = srv
            .get(&format!("/v2/{repo}/blobs/{}", layer.sha256_digest()))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.bytes().await.unwrap();
        assert!(
            body == layer.data,
            "layer {} bytes differ",
            layer.sha256_digest()
        );
    }

    // What oci-client pulls.
    let image = c
        .pull(
            &reference,
            &auth,
            vec![IMAGE_LAYER_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE],
        )
        .await
        .expect("oci-client pull");
    assert_eq!(image.digest.as_deref(), Some(manifest_digest.as_str()));
    assert!(image.config.data == config.data, "pulled config differs");
    // oci-client downloads layers concurrently and returns them in
    // completion order, so match them up by digest.
    let mut pulled: Vec<(String, String, usize)> = image
        .layers
        .iter()
        .map(|l| (l.sha256_digest(), l.media_type.clone(), l.data.len()))
        .collect();
    let mut pushed: Vec<(String, String, usize)> = layers
        .iter()
        .map(|l| (l.sha256_digest(), l.media_type.clone(), l.data.len()))
        .collect();
    pulled.sort();
    pushed.sort();
    assert_eq!(pulled, pushed, "pulled layers (digest, media type, size)");

    let (raw2, digest2) = c
        .pull_manifest_raw(&reference, &auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .expect("oci-client pull_manifest_raw");
    assert_eq!(raw2, raw);
    assert_eq!(digest2, manifest_digest);

    // By digest.
    let by_digest = Reference::with_digest(
        srv.host().to_owned(),
        repo.to_owned(),
        manifest_digest.clone(),
    );
    let (raw3, _) = c
        .pull_manifest_raw(&by_digest, &auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .expect("pull by digest");
    assert_eq!(raw3, raw);

    let tags = c
        .list_tags(&reference, &auth, None, None)
        .await
        .expect("list_tags");
    assert_eq!(tags.name, repo);
    assert_eq!(tags.tags, vec!["v1".to_owned()]);
}

/// Chunked push (oci-client's default) and pull.
async fn oci_client_chunked_push_and_pull(backend: Backend) {
    let srv = TestServer::start(backend).await;
    push_and_pull(&srv, false).await;
    srv.stop().await;
}

/// Monolithic push and pull.
async fn oci_client_monolithic_push_and_pull(backend: Backend) {
    let srv = TestServer::start(backend).await;
    push_and_pull(&srv, true).await;
    srv.stop().await;
}

/// `oci-client`'s referrers call sees an artifact pushed with `subject`,
/// and its blob existence check agrees with the registry.
async fn oci_client_referrers_and_blob_exists(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "ociclient/refs";
    let img = srv.push_image(name, "v1", 1).await;
    srv.push_blob(name, b"{}").await;
    let artifact = image_manifest(
        &Descriptor::of(OCI_EMPTY, b"{}"),
        &[],
        Some(&img.manifest_desc),
        Some("application/vnd.example.sig"),
        Some(&[("org.example.k", "v")]),
    );
    let artifact_digest = srv
        .push_manifest(name, "sig", OCI_MANIFEST, &artifact)
        .await;

    let c = client(false);
    let subject =
        Reference::with_digest(srv.host().to_owned(), name.to_owned(), img.digest.clone());
    let index = c
        .pull_referrers(&subject, None)
        .await
        .expect("pull_referrers");
    assert_eq!(index.manifests.len(), 1);
    let entry = &index.manifests[0];
    assert_eq!(entry.digest, artifact_digest);
    assert_eq!(entry.size, artifact.len() as i64);
    assert_eq!(entry.media_type, OCI_MANIFEST);

    let r = Reference::with_tag(srv.host().to_owned(), name.to_owned(), "v1".to_owned());
    assert!(c.blob_exists(&r, &img.config_desc.digest).await.unwrap());
    assert!(
        !c.blob_exists(
            &r,
            "sha256:0000000000000000000000000000000000000000000000000000000000000001"
        )
        .await
        .unwrap()
    );
    srv.stop().await;
}

backend_tests!(
    oci_client_monolithic_push_and_pull,
    oci_client_referrers_and_blob_exists,
);

backend_tests_and_azure!(oci_client_chunked_push_and_pull);
