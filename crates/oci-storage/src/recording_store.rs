//! Test support: an object store that records which objects and prefixes
//! each request touched, to assert what an operation costs in requests.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::Storage;
use crate::upload_area::PartsUploadArea;

/// Wraps a store; every request appends `"<op> <path>"` to the log.
#[derive(Debug)]
pub(crate) struct RecordingStore {
    inner: Arc<dyn ObjectStore>,
    log: Arc<Mutex<Vec<String>>>,
}

impl RecordingStore {
    /// A recording wrapper of `inner`.
    pub(crate) fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            log: Arc::default(),
        }
    }

    fn record(&self, op: &str, path: Option<&Path>) {
        let path = path.map_or(String::new(), Path::to_string);
        self.log.lock().unwrap().push(format!("{op} {path}"));
    }

    /// `listing`, logging `"listed <path>"` for each object it yields.
    fn listed(
        &self,
        listing: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let log = Arc::clone(&self.log);
        let listing = listing.inspect(move |m| {
            if let Ok(m) = m {
                log.lock().unwrap().push(format!("listed {}", m.location));
            }
        });
        Box::pin(listing)
    }

    /// The requests recorded so far, and a fresh log.
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl fmt::Display for RecordingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recording({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RecordingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.record("put", Some(location));
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.record("put", Some(location));
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { "head" } else { "get" };
        self.record(op, Some(location));
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let log = Arc::clone(&self.log);
        let locations = locations.inspect(move |p| {
            if let Ok(p) = p {
                log.lock().unwrap().push(format!("delete {p}"));
            }
        });
        self.inner.delete_stream(Box::pin(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.record("list", prefix);
        self.listed(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.record("list", prefix);
        self.listed(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.record("list", prefix);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.record("copy", Some(from));
        self.inner.copy_opts(from, to, options).await
    }
}

/// An in-memory engine whose requests are recorded.
pub(crate) fn recorded_storage() -> (Storage, Arc<RecordingStore>) {
    let recording = Arc::new(RecordingStore::new(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    let store: Arc<dyn ObjectStore> = Arc::clone(&recording) as _;
    let backend = crate::backend::Backend {
        uploads: Arc::new(PartsUploadArea::new(Arc::clone(&store))),
        store,
        description: "recorded memory://".into(),
        local: None,
        signer: None,
    };
    let storage = Storage::from_backend(backend, crate::StorageOptions::default());
    (storage, recording)
}
