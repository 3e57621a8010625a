//! An S3 server for tests: [s3s] (the S3 protocol: routing, signature v4,
//! XML) over objects kept in memory, served in-process over real HTTP on
//! `127.0.0.1`.
//!
//! Tests of the registry's S3 backend start one [`S3Server`] each, point the
//! engine (or the `oci-registry` binary) at it, and drop it at the end:
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! let s3 = oci_test_s3::S3Server::start().await?;
//! let url = s3.url("registry"); // s3://oci-test/registry
//! let options = s3.options(); // object_store config keys for the client
//! // oci_storage::Storage::open_with(&url, &options).await ...
//! // Command::new(registry_bin).envs(s3.env()).arg("--storage").arg(&url) ...
//! # Ok(()) }
//! ```
//!
//! What the server is:
//!
//! - one bucket ([`S3Server::bucket`]), empty at start; everything is in
//!   memory and gone when the server is dropped;
//! - path-style requests only (`http://127.0.0.1:<port>/<bucket>/<key>`),
//!   signature v4 with fixed credentials, region `us-east-1`;
//! - conditional writes (`If-None-Match: *`, `If-Match: <etag>` on
//!   `PutObject` and `CompleteMultipartUpload`) decided atomically, as on
//!   AWS S3;
//! - presigned URLs (signature v4 in the query) verified as AWS does:
//!   signature, then expiry (`X-Amz-Expires`, whole seconds);
//!   [`S3Server::gets`] counts each object's reads by how they were
//!   signed;
//! - multipart uploads with AWS's rules (every part but the last at least
//!   5 MiB, else `EntityTooSmall` on completion); a part's ETag is a
//!   CRC-64 of its bytes rather than their MD5 (ETags are opaque; MD5
//!   would make this server the bottleneck of upload benchmarks), and a
//!   completed upload keeps its parts' buffers rather than joining them;
//! - keys up to any length (AWS: 1024 bytes), and `a` and `a/b` can both be
//!   objects.
//!
//! The operations implemented are listed in `memory.rs`; they cover what
//! `object_store`'s `AmazonS3` sends and what `aws s3` needs for `ls`,
//! `cp` and `rm`.
//!
//! Runs in the caller's tokio runtime; use `#[tokio::test(flavor =
//! "multi_thread")]`. Dropping the [`S3Server`] stops it: no new connections
//! are accepted and open ones are closed.
//!
//! The `oci-test-s3` binary of this crate runs the same server standalone,
//! for trying the S3 backend by hand.
//!
//! [s3s]: https://docs.rs/s3s

mod memory;

pub use memory::ObjectGets;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The access key id the server accepts.
pub const ACCESS_KEY_ID: &str = "oci-test-access-key";
/// The secret access key the server accepts.
pub const SECRET_ACCESS_KEY: &str = "oci-test-secret-key";
/// The name of the server's only bucket.
pub const BUCKET: &str = "oci-test";
/// The region clients should sign for (the server accepts any).
pub const REGION: &str = "us-east-1";

/// An S3 server running in the current tokio runtime. See the crate
/// documentation.
///
/// Dropping it stops the server and frees its objects.
#[derive(Debug)]
pub struct S3Server {
    addr: SocketAddr,
    accept_task: JoinHandle<()>,
    objects: memory::MemoryS3,
}

impl S3Server {
    /// Starts a server on `127.0.0.1:<free port>` with one empty bucket.
    pub async fn start() -> std::io::Result<S3Server> {
        Self::serve((Ipv4Addr::LOCALHOST, 0).into()).await
    }

    /// Starts a server listening on `listen` with one empty bucket.
    ///
    /// Tests want [`S3Server::start`]; this is for the standalone binary.
    pub async fn serve(listen: SocketAddr) -> std::io::Result<S3Server> {
        let s3 = memory::MemoryS3::with_buckets([BUCKET]);
        let objects = s3.clone();
        let mut builder = S3ServiceBuilder::new(s3);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY_ID, SECRET_ACCESS_KEY));
        // No `set_host`: path-style requests only.
        let service = builder.build();

        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let accept_task = tokio::spawn(async move {
            let http = Arc::new(ConnBuilder::new(TokioExecutor::new()));
            // Owned by this task, so aborting it closes every connection too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((sock, _)) => {
                            let _ = sock.set_nodelay(true);
                            let (http, service) = (Arc::clone(&http), service.clone());
                            connections.spawn(async move {
                                let _ = http.serve_connection(TokioIo::new(sock), service).await;
                            });
                        }
                        // E.g. out of file descriptors: back off, don't spin.
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(S3Server {
            addr,
            accept_task,
            objects,
        })
    }

    /// Stops serving: the listener and every open connection are closed,
    /// so requests fail as against a store that went away. The objects are
    /// kept (until the server is dropped); there is no restart.
    pub fn stop(&self) {
        self.accept_task.abort();
    }

    /// Removes the object `key` of the bucket directly, without a request
    /// (e.g. to free memory between benchmark rounds); returns whether it
    /// existed.
    pub fn remove(&self, key: &str) -> bool {
        self.objects.remove_object(BUCKET, key)
    }

    /// Writes the object `key` of the bucket directly, without a request
    /// (e.g. to corrupt a stored blob in a test).
    pub fn put(&self, key: &str, data: bytes::Bytes) {
        self.objects.put_object_bytes(BUCKET, key, data);
    }

    /// The `GetObject`s served for the object `key` of the bucket (that
    /// existed), by how each was authenticated: tells the registry's own
    /// reads from clients following a presigned URL.
    pub fn gets(&self, key: &str) -> ObjectGets {
        self.objects.gets(BUCKET, key)
    }

    /// Multipart uploads created and neither completed nor aborted (read
    /// directly, not through the S3 protocol).
    pub fn open_multipart_uploads(&self) -> usize {
        self.objects.open_multipart_uploads()
    }

    /// Keys of the bucket's objects that start with `prefix` (read
    /// directly).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.objects.keys(BUCKET, prefix)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` (an unspecified listen address such as
    /// `0.0.0.0` is given as `127.0.0.1`), without a trailing slash.
    pub fn endpoint(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }

    /// The name of the server's bucket.
    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// The storage URL of `prefix` in the bucket: `s3://<bucket>/<prefix>`,
    /// or `s3://<bucket>` for an empty prefix. Leading and trailing slashes
    /// of `prefix` are dropped.
    pub fn url(&self, prefix: &str) -> String {
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("s3://{BUCKET}")
        } else {
            format!("s3://{BUCKET}/{prefix}")
        }
    }

    /// How to reach the server, as `object_store` configuration
    /// (`AmazonS3ConfigKey` names, for `AmazonS3Builder::with_config` or
    /// `object_store::parse_url_opts`): endpoint, plain HTTP allowed,
    /// credentials, region, path-style requests. The bucket is not included:
    /// it is part of [`S3Server::url`].
    pub fn options(&self) -> Vec<(String, String)> {
        self.pairs()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect()
    }

    /// The same settings as [`S3Server::options`], as the `AWS_*`
    /// environment variables `object_store` reads (`AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`), e.g. for
    /// `Command::envs` when starting the `oci-registry` binary.
    pub fn env(&self) -> Vec<(String, String)> {
        self.pairs()
            .into_iter()
            .map(|(key, value)| (key.to_ascii_uppercase(), value))
            .collect()
    }

    fn pairs(&self) -> [(&'static str, String); 6] {
        [
            ("aws_endpoint", self.endpoint()),
            ("aws_allow_http", "true".to_owned()),
            ("aws_access_key_id", ACCESS_KEY_ID.to_owned()),
            ("aws_secret_access_key", SECRET_ACCESS_KEY.to_owned()),
            ("aws_region", REGION.to_owned()),
            ("aws_virtual_hosted_style_request", "false".to_owned()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::TryStreamExt;
    use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
    use object_store::path::Path as ObjectPath;
    use object_store::{
        Error as StoreError, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
        UpdateVersion,
    };

    use super::*;

    const MIB: usize = 1024 * 1024;

    /// A client configured only from `options()` and the URL's bucket.
    fn client(server: &S3Server) -> AmazonS3 {
        let mut builder = AmazonS3Builder::new().with_bucket_name(server.bucket());
        for (key, value) in server.options() {
            let key: AmazonS3ConfigKey = key.parse().expect("a known config key");
            builder = builder.with_config(key, value);
        }
        builder.build().expect("build client")
    }

    fn payload(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_get_list_delete() {
        let server = S3Server::start().await.unwrap();
        let s3 = client(&server);
        let a = ObjectPath::from("registry/blobs/a/data");
        let b = ObjectPath::from("registry/repositories/r/_tags/v1");
        s3.put(&a, PutPayload::from_static(b"hello world"))
            .await
            .unwrap();
        s3.put(&b, PutPayload::from_static(b"sha256:x"))
            .await
            .unwrap();
        let got = s3.get(&a).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"hello world");
        assert_eq!(&s3.get_range(&a, 6..11).await.unwrap()[..], b"world");
        assert_eq!(s3.head(&a).await.unwrap().size, 11);

        let mut listed: Vec<String> = s3
            .list(Some(&ObjectPath::from("registry")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        listed.sort();
        assert_eq!(listed, vec![a.to_string(), b.to_string()]);
        let level = s3
            .list_with_delimiter(Some(&ObjectPath::from("registry")))
            .await
            .unwrap();
        let prefixes: Vec<String> = level
            .common_prefixes
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(prefixes, vec!["registry/blobs", "registry/repositories"]);

        s3.delete(&a).await.unwrap();
        assert!(matches!(s3.get(&a).await, Err(StoreError::NotFound { .. })));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_secret_is_refused() {
        let server = S3Server::start().await.unwrap();
        let bad = AmazonS3Builder::new()
            .with_bucket_name(server.bucket())
            .with_endpoint(server.endpoint())
            .with_allow_http(true)
            .with_region(REGION)
            .with_access_key_id(ACCESS_KEY_ID)
            .with_secret_access_key("wrong")
            .build()
            .unwrap();
        let err = bad
            .put(&ObjectPath::from("x"), PutPayload::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::PermissionDenied { .. }),
            "{err:?}"
        );
    }

    /// A presigned GET works without credentials, honours `Range`, and is
    /// refused once tampered with or expired; reads are counted by how
    /// they were signed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn presigned_urls_are_verified() {
        use object_store::signer::Signer;
        let server = S3Server::start().await.unwrap();
        let s3 = client(&server);
        let key = ObjectPath::from("r/blob");
        s3.put(&key, PutPayload::from_static(b"hello world"))
            .await
            .unwrap();
        let http = reqwest::Client::new();
        // X-Amz-Date has whole seconds: the URL is valid for more than two
        // seconds after signing, and expired three seconds after.
        let url = s3
            .signed_url(reqwest::Method::GET, &key, Duration::from_secs(3))
            .await
            .unwrap();
        let signed_by = tokio::time::Instant::now();
        let got = http.get(url.clone()).send().await.unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(&got.bytes().await.unwrap()[..], b"hello world");
        let part = http
            .get(url.clone())
            .header("range", "bytes=6-")
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), 206);
        assert_eq!(&part.bytes().await.unwrap()[..], b"world");
        let signed = s3.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&signed[..], b"hello world");
        assert_eq!(
            server.gets("r/blob"),
            ObjectGets {
                signed: 1,
                presigned: 2
            }
        );

        // Another key under the same signature, no signature, and a
        // wrong one are all refused.
        let other = url.as_str().replace("/r/blob?", "/r/blob2?");
        let unsigned = url.as_str().split('?').next().unwrap().to_owned();
        let mut forged = url.clone();
        let query: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| match &*k {
                "X-Amz-Signature" => (k.into_owned(), "0".repeat(64)),
                _ => (k.into_owned(), v.into_owned()),
            })
            .collect();
        forged.query_pairs_mut().clear().extend_pairs(query);
        for bad in [other, unsigned, forged.to_string()] {
            let status = http.get(&bad).send().await.unwrap().status();
            assert_eq!(status, 403, "{bad}");
        }

        tokio::time::sleep_until(signed_by + Duration::from_millis(3200)).await;
        let expired = http.get(url).send().await.unwrap();
        assert_eq!(expired.status(), 403);
        assert!(expired.text().await.unwrap().contains("expired"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conditional_puts() {
        let server = S3Server::start().await.unwrap();
        let s3 = client(&server);
        let path = ObjectPath::from("cond");
        let opts = |mode| PutOptions {
            mode,
            ..Default::default()
        };
        let v1 = s3
            .put_opts(&path, PutPayload::from_static(b"v1"), opts(PutMode::Create))
            .await
            .unwrap();
        let again = s3
            .put_opts(&path, PutPayload::from_static(b"v1"), opts(PutMode::Create))
            .await;
        assert!(
            matches!(again, Err(StoreError::AlreadyExists { .. })),
            "{again:?}"
        );
        let update = |e_tag: Option<String>| {
            opts(PutMode::Update(UpdateVersion {
                e_tag,
                version: None,
            }))
        };
        s3.put_opts(
            &path,
            PutPayload::from_static(b"v2"),
            update(v1.e_tag.clone()),
        )
        .await
        .unwrap();
        let stale = s3
            .put_opts(&path, PutPayload::from_static(b"v3"), update(v1.e_tag))
            .await;
        assert!(
            matches!(stale, Err(StoreError::Precondition { .. })),
            "{stale:?}"
        );
        let got = s3.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"v2");
    }

    /// 16 racing `PutMode::Create` on one key: exactly one wins, and the
    /// object holds the winner's bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_creates_have_one_winner() {
        let server = S3Server::start().await.unwrap();
        let s3 = Arc::new(client(&server));
        for round in 0..3 {
            let path = ObjectPath::from(format!("race/{round}"));
            let mut tasks = JoinSet::new();
            for i in 0..16u8 {
                let (s3, path) = (Arc::clone(&s3), path.clone());
                tasks.spawn(async move {
                    let opts = PutOptions {
                        mode: PutMode::Create,
                        ..Default::default()
                    };
                    match s3.put_opts(&path, vec![i; 64 * 1024].into(), opts).await {
                        Ok(_) => Some(i),
                        Err(StoreError::AlreadyExists { .. }) => None,
                        Err(e) => panic!("unexpected error: {e:?}"),
                    }
                });
            }
            let winners: Vec<u8> = tasks.join_all().await.into_iter().flatten().collect();
            assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
            let got = s3.get(&path).await.unwrap().bytes().await.unwrap();
            assert!(got.iter().all(|&b| b == winners[0]));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multipart_upload() {
        let server = S3Server::start().await.unwrap();
        let s3 = client(&server);
        let path = ObjectPath::from("uploads/mp");
        let parts = [
            payload(5 * MIB + 1, 1),
            payload(5 * MIB + 1, 2),
            payload(7, 3),
        ];
        let mut upload = s3.put_multipart(&path).await.unwrap();
        for part in &parts {
            upload
                .put_part(PutPayload::from(part.clone()))
                .await
                .unwrap();
        }
        upload.complete().await.unwrap();
        let got = s3.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.len(), parts.iter().map(Vec::len).sum::<usize>());
        let all = parts.concat();
        assert!(got[..] == all[..]);
        // The object keeps its parts' buffers: ranges within one, across
        // two and three of them, and copies, read the right bytes.
        let n = all.len() as u64;
        for range in [
            0..1,
            5..9,
            5 * MIB as u64 - 3..5 * MIB as u64 + 4,
            1..n - 1,
            n - 2..n,
        ] {
            let got = s3.get_range(&path, range.clone()).await.unwrap();
            assert!(
                got[..] == all[range.start as usize..range.end as usize],
                "{range:?}"
            );
        }
        let copy = ObjectPath::from("uploads/mp-copy");
        s3.copy(&path, &copy).await.unwrap();
        let got = s3.get(&copy).await.unwrap().bytes().await.unwrap();
        assert!(got[..] == all[..]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn accessors() {
        let server = S3Server::start().await.unwrap();
        let endpoint = server.endpoint();
        assert_eq!(
            endpoint,
            format!("http://127.0.0.1:{}", server.addr().port())
        );
        assert_eq!(server.url("registry"), "s3://oci-test/registry");
        assert_eq!(server.url("/a/b/"), "s3://oci-test/a/b");
        assert_eq!(server.url(""), "s3://oci-test");
        let options = server.options();
        let env = server.env();
        assert_eq!(options.len(), env.len());
        for ((ok, ov), (ek, ev)) in options.iter().zip(&env) {
            assert!(ok.parse::<AmazonS3ConfigKey>().is_ok(), "{ok}");
            assert_eq!(ek, &ok.to_ascii_uppercase());
            assert_eq!(ov, ev);
        }
        assert!(env.contains(&("AWS_ENDPOINT".to_owned(), endpoint)));
        assert!(env.contains(&("AWS_ALLOW_HTTP".to_owned(), "true".to_owned())));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_stops_the_server() {
        let server = S3Server::start().await.unwrap();
        let addr = server.addr();
        drop(server);
        // The accept task is aborted asynchronously; give it a moment.
        let mut refused = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "still accepting on {addr}");
    }

    /// Keys as long as S3 allows, and keys that are both an object and a
    /// "directory" of others (a filesystem-backed server fails both).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn long_and_nested_keys() {
        let server = S3Server::start().await.unwrap();
        let s3 = client(&server);
        let long = ObjectPath::from(format!("r/_referrers/sha512/{}/x", "a".repeat(990)));
        s3.put(&long, PutPayload::from_static(b"long"))
            .await
            .unwrap();
        let got = s3.get(&long).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"long");
        s3.put(&ObjectPath::from("n"), PutPayload::from_static(b"1"))
            .await
            .unwrap();
        s3.put(&ObjectPath::from("n/c"), PutPayload::from_static(b"2"))
            .await
            .unwrap();
        let level = s3.list_with_delimiter(None).await.unwrap();
        let objects: Vec<String> = level
            .objects
            .iter()
            .map(|m| m.location.to_string())
            .collect();
        let prefixes: Vec<String> = level
            .common_prefixes
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(objects, vec!["n"]);
        assert_eq!(prefixes, vec!["n", "r"]);
    }

    /// Listings longer than one page (1000 keys) are continued correctly,
    /// with and without a delimiter.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listing_is_paginated() {
        let server = S3Server::start().await.unwrap();
        let s3 = Arc::new(client(&server));
        let mut tasks = JoinSet::new();
        for i in 0..1100 {
            let s3 = Arc::clone(&s3);
            tasks.spawn(async move {
                let path = ObjectPath::from(format!("p/{:02}/{i:04}", i % 7));
                s3.put(&path, PutPayload::from_static(b"x")).await.unwrap();
            });
        }
        tasks.join_all().await;
        s3.put(&ObjectPath::from("p/top"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        let all: Vec<String> = s3
            .list(Some(&ObjectPath::from("p")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all.len(), 1101);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        let level = s3
            .list_with_delimiter(Some(&ObjectPath::from("p")))
            .await
            .unwrap();
        assert_eq!(level.common_prefixes.len(), 7);
        assert_eq!(level.objects.len(), 1);
    }
}
