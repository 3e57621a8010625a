//! Opening a storage backend from a URL.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;

use crate::error::{Result, StorageError};
use crate::local::LocalFiles;
use crate::options::StorageOptions;
use crate::telemetry::InstrumentedStore;
use crate::upload_area::{
    LeaseLocks, LocalUploadArea, MultipartUploadArea, PartsUploadArea, UploadArea,
};

/// A backend ready for the engine: the object store and the matching upload
/// area.
pub(crate) struct Backend {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) uploads: Arc<dyn UploadArea>,
    pub(crate) description: String,
    /// Direct file access, on the filesystem backend.
    pub(crate) local: Option<LocalFiles>,
}

/// `store`, its requests counted and timed (see [`crate::telemetry`]).
fn instrumented(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    Arc::new(InstrumentedStore::new(store))
}

/// Parses a storage URL: `memory://`, `file:///abs/path`, a plain path
/// (relative paths are resolved against the current directory), or
/// `s3://bucket/prefix`. `options.backend` are object_store configuration
/// keys (`aws_endpoint`, `aws_region`, ...), applied over the `AWS_*`
/// environment variables; only S3 takes any.
pub(crate) fn open(url: &str, options: &StorageOptions) -> Result<Backend> {
    let invalid = |reason: &str| StorageError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if url == "memory://" || url == "memory:" {
        let store = instrumented(Arc::new(InMemory::new()));
        return Ok(Backend {
            uploads: Arc::new(PartsUploadArea::new(Arc::clone(&store))),
            store,
            description: "memory://".into(),
            local: None,
        });
    }
    if url.starts_with("s3://") {
        return open_s3(url, options);
    }
    if let Some((key, _)) = options.backend.first() {
        return Err(invalid(&format!(
            "option {key:?} applies to s3:// URLs only"
        )));
    }
    let path = if url.starts_with("file:") {
        url::Url::parse(url)
            .map_err(|e| invalid(&e.to_string()))?
            .to_file_path()
            .map_err(|()| invalid("file URLs must hold an absolute local path"))?
    } else if url.contains("://") {
        return Err(invalid(
            "unsupported scheme: use memory://, file:///abs/path, s3://bucket/prefix or a plain path",
        ));
    } else if url.is_empty() {
        return Err(invalid("empty"));
    } else {
        std::path::absolute(PathBuf::from(url)).map_err(StorageError::Io)?
    };
    std::fs::create_dir_all(&path)?;
    let path = path.canonicalize()?;
    let local = Arc::new(LocalFileSystem::new_with_prefix(&path)?);
    Ok(Backend {
        uploads: Arc::new(LocalUploadArea::new(Arc::clone(&local)).with_fsync(options.fsync)),
        store: instrumented(Arc::clone(&local) as Arc<dyn ObjectStore>),
        description: format!("file://{}", path.display()),
        local: Some(LocalFiles::new(local, path, options.fsync)),
    })
}

/// `s3://bucket/prefix`: configuration from `AWS_*` variables, then
/// `options`; the prefix is applied with a [`PrefixStore`].
fn open_s3(url: &str, options: &StorageOptions) -> Result<Backend> {
    let invalid = |reason: String| StorageError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    let bucket = parsed
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| invalid("no bucket".into()))?;
    let prefix = Path::from(parsed.path().trim_matches('/'));
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in &options.backend {
        let key: AmazonS3ConfigKey = key
            .parse()
            .map_err(|_| invalid(format!("unknown S3 option {key:?}")))?;
        builder = builder.with_config(key, value);
    }
    let s3 = Arc::new(builder.build()?);
    let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
        s3.clone()
    } else {
        Arc::new(PrefixStore::new(Arc::clone(&s3), prefix.clone()))
    };
    let store = instrumented(store);
    let locks = LeaseLocks::new(Arc::clone(&store), options.lease_ttl);
    let area = MultipartUploadArea::new(Arc::clone(&store), s3, prefix.clone(), locks);
    Ok(Backend {
        uploads: Arc::new(area),
        store,
        description: format!("s3://{bucket}/{prefix}"),
        local: None,
    })
}
