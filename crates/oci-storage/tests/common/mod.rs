//! Shared machinery of the behaviour suite: the list of backends, the
//! per-backend fixture, the macros that generate one test per backend, and
//! helpers to build request bodies and manifests.

#![allow(dead_code)] // not every helper is used by every test module

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_storage::{BodyStream, Storage, StorageError};
use oci_types::{ByteRange, ContentRange, Digest, Reference, RepositoryName, Tag};
use serde_json::{Value, json};
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

/// Calls `$callback!(<backend>, args...)` once per backend. **The backend
/// list**: adding a backend is one line here plus its constructor on
/// [`Fixture`] (named like the backend). Azure runs a chosen part of the
/// suite (see `behaviour.rs`).
macro_rules! for_each_backend {
    ($callback:ident ! ($($args:tt)*)) => {
        $callback!(memory, $($args)*);
        $callback!(filesystem, $($args)*);
        $callback!(s3, $($args)*);
    };
}

/// Generates `mod <backend> { mod <module> { #[test] fn <test>() } }`, each
/// test calling `crate::<module>::<test>(Fixture::<backend>().await)`. The
/// runtime is multi-threaded: the S3 backend's server runs in it.
macro_rules! backend_module {
    ($backend:ident, $($module:ident { $($test:ident),* $(,)? })*) => {
        mod $backend {
            $(
                mod $module {
                    $(
                        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                        async fn $test() {
                            if stringify!($backend) == "azure" && !oci_test_azurite::available() {
                                return oci_test_azurite::skip_note();
                            }
                            let fixture = crate::common::Fixture::$backend().await;
                            crate::$module::$test(fixture).await;
                        }
                    )*
                }
            )*
        }
    };
}

/// The whole suite: `behaviour_suite! { blobs { put_get, ... } uploads { ... } }`
/// generates `memory::blobs::put_get`, `filesystem::blobs::put_get`, ...
macro_rules! behaviour_suite {
    ($($args:tt)*) => {
        for_each_backend!(backend_module!($($args)*));
    };
}

/// Asserts that `$result` is `Err` matching `$pattern` (with an optional
/// guard), printing what it was otherwise.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "expected Err({}), got {:?}",
                stringify!($pattern $(if $guard)?),
                other
            ),
        }
    };
}

/// One backend with fresh, empty state, alive as long as the fixture.
pub struct Fixture {
    /// The engine under test.
    pub storage: Storage,
    /// Which backend this is, for messages.
    pub backend: &'static str,
    /// How to open the same state again (`None`: the state lives only in this
    /// process, so "reopening" keeps the same engine).
    reopen_url: Option<String>,
    /// Backend options for reopening (`Storage::open_with`).
    reopen_options: Vec<(String, String)>,
    /// The filesystem root, for on-disk layout checks.
    root: Option<PathBuf>,
    _dir: Option<TempDir>,
    /// The S3 backend's server; stops when the fixture is dropped.
    _s3: Option<oci_test_s3::S3Server>,
}

impl Fixture {
    /// `memory://`.
    pub async fn memory() -> Self {
        Self {
            storage: Storage::open("memory://").await.expect("open memory://"),
            backend: "memory",
            reopen_url: None,
            reopen_options: Vec::new(),
            root: None,
            _dir: None,
            _s3: None,
        }
    }

    /// A fresh temporary directory opened as a `file:///abs/path` URL. Reopened
    /// (see [`Fixture::restart`]) as a plain path, so both forms are covered.
    pub async fn filesystem() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = url::Url::from_file_path(dir.path())
            .expect("absolute temp dir")
            .to_string();
        assert!(url.starts_with("file:///"), "{url}");
        let storage = Storage::open(&url).await.expect("open file:// URL");
        let plain = dir.path().to_str().expect("utf-8 temp dir").to_owned();
        Self {
            storage,
            backend: "filesystem",
            reopen_url: Some(plain),
            reopen_options: Vec::new(),
            root: Some(dir.path().canonicalize().expect("canonical temp dir")),
            _dir: Some(dir),
            _s3: None,
        }
    }

    /// `s3://<bucket>/registry` on a fresh in-process S3 server (see
    /// `oci-test-s3`) of this fixture's own. [`Fixture::restart`] reopens
    /// the same URL with the same options; the server stays up.
    pub async fn s3() -> Self {
        let server = oci_test_s3::S3Server::start()
            .await
            .expect("start S3 server");
        let url = server.url("registry");
        let options = server.options();
        let storage = Storage::open_with(&url, &options)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e:?}"));
        Self {
            storage,
            backend: "s3",
            root: None,
            reopen_url: Some(url),
            reopen_options: options,
            _dir: None,
            _s3: Some(server),
        }
    }

    /// `az://<container>/registry` on a fresh container of the machine's
    /// Azurite (see `oci-test-azurite`), through the Azure Blob protocol.
    /// Without Azurite installed the test panics saying so.
    pub async fn azure() -> Self {
        let azurite = oci_test_azurite::Azurite::start()
            .await
            .unwrap_or_else(|e| panic!("Azure backend: {e}"));
        let url = azurite.url("registry");
        let options = azurite.options();
        let storage = Storage::open_with(&url, &options)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e:?}"));
        Self {
            storage,
            backend: "azure",
            root: None,
            reopen_url: Some(url),
            reopen_options: options,
            _dir: None,
            _s3: None,
        }
    }

    /// Simulates a restart: drops the engine and opens the same stored state
    /// again. For backends whose state lives in the engine (memory), keeps it.
    pub async fn restart(&mut self) {
        if let Some(url) = &self.reopen_url {
            let fresh = Storage::open_with(url, &self.reopen_options)
                .await
                .expect("reopen storage");
            // Replacing drops the old engine: nothing survives but the store.
            self.storage = fresh;
        }
    }

    /// The same (still empty) backend, opened with `options` (its backend
    /// options added): for tests of configured behaviour. Call it first:
    /// a memory store starts over.
    pub async fn with_options(mut self, mut options: oci_storage::StorageOptions) -> Self {
        options.backend.extend(self.reopen_options.iter().cloned());
        self.storage = match &self.reopen_url {
            Some(url) => Storage::open_with_options(url, options).await,
            None => Storage::open_with_options("memory://", options).await,
        }
        .expect("reopen with options");
        self
    }

    /// Another engine on the same store, as another replica would open
    /// it; `None` for the in-memory store (no other process can see it).
    pub async fn other_replica(&self) -> Option<Storage> {
        let url = self.reopen_url.as_ref()?;
        Some(
            Storage::open_with(url, &self.reopen_options)
                .await
                .expect("open a second engine"),
        )
    }

    /// Another engine on the same store opened with `options` (its
    /// backend options added); `None` for the in-memory store.
    pub async fn other_replica_with(
        &self,
        mut options: oci_storage::StorageOptions,
    ) -> Option<Storage> {
        let url = self.reopen_url.as_ref()?;
        options.backend.extend(self.reopen_options.iter().cloned());
        Some(
            Storage::open_with_options(url, options)
                .await
                .expect("open a second engine"),
        )
    }

    /// The on-disk root, for backends that have one.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

/// A repository name.
pub fn repo(s: &str) -> RepositoryName {
    s.parse().expect("valid repository name")
}

/// A tag.
pub fn tag(s: &str) -> Tag {
    s.parse().expect("valid tag")
}

/// A tag reference.
pub fn tag_ref(s: &str) -> Reference {
    Reference::Tag(tag(s))
}

/// A digest reference.
pub fn digest_ref(d: &Digest) -> Reference {
    Reference::Digest(d.clone())
}

/// The inclusive content range `start-end`.
pub fn crange(start: u64, end: u64) -> Option<ContentRange> {
    Some(ContentRange::new(start, end).expect("start <= end"))
}

/// The content range covering `len` bytes from `start`.
pub fn crange_len(start: u64, len: usize) -> Option<ContentRange> {
    crange(start, start + len as u64 - 1)
}

/// A `Range` header value.
pub fn brange(s: &str) -> Option<ByteRange> {
    Some(s.parse().expect("valid Range"))
}

/// Deterministic pseudo-random bytes (so content is not trivially repetitive).
pub fn bytes_of(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

/// A body yielding `chunks` in order.
pub fn body_chunks<I>(chunks: I) -> BodyStream
where
    I: IntoIterator<Item = Bytes>,
    I::IntoIter: Send + 'static,
{
    futures::stream::iter(chunks.into_iter().map(Ok)).boxed()
}

/// A body yielding `data` in frames of at most `frame` bytes.
pub fn body_framed(data: &[u8], frame: usize) -> BodyStream {
    let frames: Vec<Bytes> = data
        .chunks(frame.max(1))
        .map(Bytes::copy_from_slice)
        .collect();
    body_chunks(frames)
}

/// A body yielding `data` as a single frame.
pub fn body(data: &[u8]) -> BodyStream {
    body_chunks([Bytes::copy_from_slice(data)])
}

/// A body that yields `data` in frames of `frame` bytes and then fails, like a
/// client connection dropping mid-request.
pub fn failing_body(data: &[u8], frame: usize) -> BodyStream {
    let frames: Vec<std::io::Result<Bytes>> = data
        .chunks(frame.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .chain(std::iter::once(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        ))))
        .collect();
    futures::stream::iter(frames).boxed()
}

// ---------------------------------------------------------------------------
// Blob helpers
// ---------------------------------------------------------------------------

/// Pushes `data` monolithically into `name`; returns its digest.
pub async fn push_blob(storage: &Storage, name: &RepositoryName, data: &[u8]) -> Digest {
    let digest = Digest::of(data);
    let meta = storage
        .blob_put(name, &digest, body(data))
        .await
        .expect("blob_put");
    assert_eq!(meta.digest, digest);
    assert_eq!(meta.size, data.len() as u64);
    digest
}

/// Reads a blob (or a range of it) whole.
pub async fn read_blob(
    storage: &Storage,
    name: &RepositoryName,
    digest: &Digest,
    range: Option<ByteRange>,
) -> Result<Vec<u8>, StorageError> {
    let read = storage.blob_get(name, digest, range).await?;
    let chunks: Vec<Bytes> = read.stream.try_collect().await?;
    Ok(chunks.concat())
}

/// Asserts `name` holds exactly `data` under its sha256 digest.
pub async fn assert_blob(storage: &Storage, name: &RepositoryName, data: &[u8]) {
    let digest = Digest::of(data);
    let meta = storage.blob_stat(name, &digest).await.expect("blob_stat");
    assert_eq!(meta.size, data.len() as u64, "size of {digest}");
    let got = read_blob(storage, name, &digest, None)
        .await
        .expect("blob_get");
    assert!(got == data, "content of {digest} differs");
}

// ---------------------------------------------------------------------------
// Manifest helpers
// ---------------------------------------------------------------------------

/// Media types used in the suite.
pub const OCI_MANIFEST: &str = oci_types::media_type::OCI_MANIFEST;
/// OCI index.
pub const OCI_INDEX: &str = oci_types::media_type::OCI_INDEX;
/// OCI config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A descriptor as JSON.
pub fn descriptor(media_type: &str, digest: &Digest, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest.to_string(), "size": size })
}

/// An OCI image manifest with the given config and layers.
pub fn image_manifest(config: Value, layers: Vec<Value>) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    })
}

/// An OCI index over `manifests`.
pub fn index_manifest(manifests: Vec<Value>) -> Value {
    json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests })
}

/// Serializes a manifest.
pub fn to_body(manifest: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(manifest).expect("serialize manifest"))
}

/// A stored image: the manifest's bytes and digest.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest bytes.
    pub body: Bytes,
    /// Their digest.
    pub digest: Digest,
}

/// Pushes a config and a layer (distinct per `seed`) into `name` and returns
/// an image manifest over them (not yet pushed).
pub async fn prepare_image(storage: &Storage, name: &RepositoryName, seed: &str) -> Value {
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let layer = format!("layer of {seed}").into_bytes();
    let config_digest = push_blob(storage, name, config.as_bytes()).await;
    let layer_digest = push_blob(storage, name, &layer).await;
    image_manifest(
        descriptor(OCI_CONFIG, &config_digest, config.len()),
        vec![descriptor(OCI_LAYER, &layer_digest, layer.len())],
    )
}

/// Pushes `manifest` under `reference` (a tag or `@digest` for "by digest").
pub async fn put_manifest(
    storage: &Storage,
    name: &RepositoryName,
    reference: &str,
    manifest: &Value,
) -> Image {
    let body = to_body(manifest);
    let digest = Digest::of(&body);
    let reference = if reference == "@digest" {
        digest_ref(&digest)
    } else {
        tag_ref(reference)
    };
    let content_type = manifest.get("mediaType").and_then(Value::as_str);
    let meta = storage
        .manifest_put(name, &reference, body.clone(), content_type)
        .await
        .expect("manifest_put");
    assert_eq!(meta.digest, digest);
    assert_eq!(meta.size, body.len() as u64);
    Image { body, digest }
}

/// Pushes a fresh image (blobs and manifest) under `reference`.
pub async fn push_image(
    storage: &Storage,
    name: &RepositoryName,
    reference: &str,
    seed: &str,
) -> Image {
    let manifest = prepare_image(storage, name, seed).await;
    put_manifest(storage, name, reference, &manifest).await
}

/// Tag names of a page.
pub fn tag_names(tags: &[Tag]) -> Vec<&str> {
    tags.iter().map(Tag::as_str).collect()
}

/// Repository names of a page.
pub fn repo_names(names: &[RepositoryName]) -> Vec<&str> {
    names.iter().map(RepositoryName::as_str).collect()
}
