//! Stateless replicas: several registry instances (harness servers), each
//! with its own `Storage` (own object-store client, own locks), over one
//! shared backend.
//! Any replica must serve any request: push through one and pull through
//! another, split an upload across them, race them on one tag or blob.
//! Run over S3 (an in-process S3 server, over the S3 HTTP protocol) and over
//! a shared filesystem directory.

use futures::future::join;
use oci_e2e::TestServer;
use oci_test_s3::S3Server;
use oci_types::Digest;
use reqwest::{Client, StatusCode};

/// A shared backend and two replicas on it.
struct Cluster {
    a: TestServer,
    b: TestServer,
    s3: Option<S3Server>,
    _dir: Option<tempfile::TempDir>,
}

impl Cluster {
    async fn s3() -> Self {
        let s3 = S3Server::start().await.unwrap();
        let url = s3.url("registry");
        Self {
            a: TestServer::start_at_with(&url, &s3.options()).await,
            b: TestServer::start_at_with(&url, &s3.options()).await,
            s3: Some(s3),
            _dir: None,
        }
    }

    async fn filesystem() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        Self {
            a: TestServer::start_at(&url).await,
            b: TestServer::start_at(&url).await,
            s3: None,
            _dir: Some(dir),
        }
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
    }
}

fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn push_blob(c: &Client, base: &str, name: &str, data: &[u8]) -> Digest {
    let digest = Digest::of(data);
    let r = c
        .post(format!("{base}/v2/{name}/blobs/uploads/?digest={digest}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    digest
}

fn manifest(
    config: &Digest,
    config_len: usize,
    layer: &Digest,
    layer_len: usize,
    label: &str,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_len}],
        "annotations": {"label": label},
    }))
    .unwrap()
}

async fn put_manifest(
    c: &Client,
    base: &str,
    name: &str,
    reference: &str,
    body: &[u8],
) -> StatusCode {
    c.put(format!("{base}/v2/{name}/manifests/{reference}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

async fn get_bytes(c: &Client, url: String) -> (StatusCode, Vec<u8>) {
    let r = c.get(url).send().await.unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

/// Pushes an image through `a` and pulls it through `b`.
async fn push_on_one_pull_on_other(cluster: Cluster) {
    let c = Client::new();
    let (a, b) = (cluster.a.base(), cluster.b.base());
    let config = b"{}".to_vec();
    let layer = blob(300 * 1024, 1);
    let cd = push_blob(&c, a, "team/app", &config).await;
    let ld = push_blob(&c, a, "team/app", &layer).await;
    let m = manifest(&cd, config.len(), &ld, layer.len(), "one");
    assert_eq!(
        put_manifest(&c, a, "team/app", "v1", &m).await,
        StatusCode::CREATED
    );

    let (status, body) = get_bytes(&c, format!("{b}/v2/team/app/manifests/v1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, m);
    let (status, body) = get_bytes(&c, format!("{b}/v2/team/app/blobs/{ld}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, layer);
    let (_, tags) = get_bytes(&c, format!("{b}/v2/team/app/tags/list")).await;
    let tags: serde_json::Value = serde_json::from_slice(&tags).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    cluster.stop().await;
}

/// POST on `a`, PATCH on `b`, PATCH on `a`, status on `b`, PUT on `b`.
async fn upload_split_across_replicas(cluster: Cluster) {
    let c = Client::new();
    let (a, b) = (cluster.a.base(), cluster.b.base());
    let data = blob(3 * 1024 * 1024 + 17, 2);
    let digest = Digest::of(&data);
    let r = c
        .post(format!("{a}/v2/split/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let cut = [0, 1024 * 1024 + 5, 2 * 1024 * 1024 + 9];
    for (i, replica) in [b, a].into_iter().enumerate() {
        let chunk = &data[cut[i]..cut[i + 1]];
        let r = c
            .patch(format!("{replica}{location}"))
            .header("content-range", format!("{}-{}", cut[i], cut[i + 1] - 1))
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(r.headers()["range"], format!("0-{}", cut[i + 1] - 1));
    }
    let r = c.get(format!("{b}{location}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], format!("0-{}", cut[2] - 1));
    let r = c
        .put(format!("{b}{location}?digest={digest}"))
        .header("content-range", format!("{}-{}", cut[2], data.len() - 1))
        .body(data[cut[2]..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (status, body) = get_bytes(&c, format!("{a}/v2/split/blobs/{digest}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(Digest::of(&body), digest);
    cluster.stop().await;
}

/// Both replicas push a different manifest to one tag at the same time:
/// both succeed, and afterwards both replicas agree on one of them.
async fn concurrent_tag_pushes(cluster: Cluster) {
    let c = Client::new();
    let (a, b) = (cluster.a.base(), cluster.b.base());
    let config = b"{}".to_vec();
    let layer = blob(4096, 3);
    let cd = push_blob(&c, a, "race/tag", &config).await;
    let ld = push_blob(&c, a, "race/tag", &layer).await;
    for round in 0..5 {
        let m1 = manifest(&cd, config.len(), &ld, layer.len(), &format!("a{round}"));
        let m2 = manifest(&cd, config.len(), &ld, layer.len(), &format!("b{round}"));
        let (s1, s2) = join(
            put_manifest(&c, a, "race/tag", "latest", &m1),
            put_manifest(&c, b, "race/tag", "latest", &m2),
        )
        .await;
        assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
        let (_, via_a) = get_bytes(&c, format!("{a}/v2/race/tag/manifests/latest")).await;
        let (_, via_b) = get_bytes(&c, format!("{b}/v2/race/tag/manifests/latest")).await;
        assert_eq!(via_a, via_b, "replicas disagree on the tag");
        assert!(via_a == m1 || via_a == m2, "tag points to neither push");
        for m in [&m1, &m2] {
            let d = Digest::of(m);
            let (status, body) = get_bytes(&c, format!("{b}/v2/race/tag/manifests/{d}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(&body, m);
        }
    }
    cluster.stop().await;
}

/// Both replicas push the same blob at once (chunked sessions).
async fn concurrent_blob_pushes(cluster: Cluster) {
    let c = Client::new();
    let (a, b) = (cluster.a.base().to_owned(), cluster.b.base().to_owned());
    let data = blob(2 * 1024 * 1024 + 3, 4);
    let digest = Digest::of(&data);
    let push = |base: String| {
        let (c, data, digest) = (c.clone(), data.clone(), digest.clone());
        async move {
            let r = c
                .post(format!("{base}/v2/same/blob/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            let r = c
                .patch(format!("{base}{location}"))
                .body(data)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            c.put(format!("{base}{location}?digest={digest}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (s1, s2) = join(push(a.clone()), push(b.clone())).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    for base in [a, b] {
        let (status, body) = get_bytes(&c, format!("{base}/v2/same/blob/blobs/{digest}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, data);
    }
    cluster.stop().await;
}

/// Distribution-spec chunked upload with awkward chunk sizes around S3's
/// 5 MiB part minimum, alternating replicas: 1 B, 100 KiB, 5 MiB - 1,
/// 5 MiB + 1 and 64 MiB.
async fn awkward_chunk_sizes(cluster: Cluster) {
    let c = Client::new();
    let replicas = [cluster.a.base().to_owned(), cluster.b.base().to_owned()];
    const MIB: usize = 1024 * 1024;
    let sizes = [1, 100 * 1024, 5 * MIB - 1, 5 * MIB + 1, 64 * MIB];
    let data = blob(sizes.iter().sum(), 5);
    let digest = Digest::of(&data);
    let r = c
        .post(format!("{}/v2/chunks/blobs/uploads/", replicas[0]))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    patch_chunks(&c, &replicas, &location, &data, 0, &sizes).await;
    let r = c
        .put(format!("{}{location}?digest={digest}", replicas[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .head(format!("{}/v2/chunks/blobs/{digest}", replicas[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-length"],
        data.len().to_string().as_str()
    );
    let (_, body) = get_bytes(&c, format!("{}/v2/chunks/blobs/{digest}", replicas[0])).await;
    assert_eq!(Digest::of(&body), digest);
    cluster.stop().await;
}

/// PATCHes `sizes` chunks of `data` from `offset` to `location`,
/// alternating replicas; returns the offset after them.
async fn patch_chunks(
    c: &Client,
    replicas: &[String],
    location: &str,
    data: &[u8],
    mut offset: usize,
    sizes: &[usize],
) -> usize {
    for (i, &size) in sizes.iter().enumerate() {
        let base = &replicas[i % replicas.len()];
        let r = c
            .patch(format!("{base}{location}"))
            .header("content-range", format!("{offset}-{}", offset + size - 1))
            .body(data[offset..offset + size].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "chunk of {size} bytes");
        offset += size;
        assert_eq!(r.headers()["range"], format!("0-{}", offset - 1));
    }
    offset
}

/// Tail objects (bytes short of a part, see the S3 upload area) in the
/// cluster's bucket.
fn tails(cluster: &Cluster) -> usize {
    let s3 = cluster.s3.as_ref().expect("an S3 cluster");
    let keys = s3.keys("registry/_uploads/");
    keys.iter().filter(|k| k.contains("/tail-")).count()
}

/// Equal 5 MiB chunks (docker's and containerd's usual size), alternating
/// replicas: on S3 each chunk is one part of the multipart upload and no
/// tail object is written; chunks of other sizes after them still work
/// (and do leave a tail), and the blob is exactly the bytes sent.
async fn equal_5mib_chunks_make_no_tails(cluster: Cluster) {
    let c = Client::new();
    let replicas = [cluster.a.base().to_owned(), cluster.b.base().to_owned()];
    const MIB: usize = 1024 * 1024;
    let equal = [5 * MIB; 4];
    let odd = [7 * MIB, 3 * MIB, 1];
    let data = blob(equal.iter().chain(&odd).sum(), 9);
    let digest = Digest::of(&data);
    let r = c
        .post(format!("{}/v2/equal/blobs/uploads/", replicas[0]))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let offset = patch_chunks(&c, &replicas, &location, &data, 0, &equal).await;
    if cluster.s3.is_some() {
        assert_eq!(tails(&cluster), 0, "tail objects after equal 5 MiB chunks");
    }
    let offset = patch_chunks(&c, &replicas, &location, &data, offset, &odd).await;
    assert_eq!(offset, data.len());
    if cluster.s3.is_some() {
        assert_eq!(tails(&cluster), 1, "the odd chunks leave one tail");
    }
    let r = c
        .put(format!("{}{location}?digest={digest}", replicas[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, body) = get_bytes(&c, format!("{}/v2/equal/blobs/{digest}", replicas[0])).await;
    assert!(body == data, "the blob differs from the bytes sent");
    cluster.stop().await;
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn s3() {
                    super::$test(Cluster::s3().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn filesystem() {
                    super::$test(Cluster::filesystem().await).await;
                }
            }
        )*
    };
}

on_both_backends!(
    push_on_one_pull_on_other,
    upload_split_across_replicas,
    concurrent_tag_pushes,
    concurrent_blob_pushes,
    awkward_chunk_sizes,
    equal_5mib_chunks_make_no_tails,
);
