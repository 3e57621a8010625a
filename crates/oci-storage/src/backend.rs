//! Opening a storage backend from a URL.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use crate::error::{Result, StorageError};
use crate::upload_area::{LocalUploadArea, PartsUploadArea, UploadArea};

/// A backend ready for the engine: the object store and the matching upload
/// area.
pub(crate) struct Backend {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) uploads: Arc<dyn UploadArea>,
    pub(crate) description: String,
}

/// Parses a storage URL: `memory://`, `file:///abs/path`, or a plain path
/// (relative paths are resolved against the current directory).
pub(crate) fn open(url: &str) -> Result<Backend> {
    let invalid = |reason: &str| StorageError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if url == "memory://" || url == "memory:" {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        return Ok(Backend {
            uploads: Arc::new(PartsUploadArea::new(Arc::clone(&store))),
            store,
            description: "memory://".into(),
        });
    }
    let path = if url.starts_with("file:") {
        url::Url::parse(url)
            .map_err(|e| invalid(&e.to_string()))?
            .to_file_path()
            .map_err(|()| invalid("file URLs must hold an absolute local path"))?
    } else if url.contains("://") {
        return Err(invalid(
            "unsupported scheme: use memory://, file:///abs/path or a plain path",
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
        uploads: Arc::new(LocalUploadArea::new(Arc::clone(&local))),
        store: local,
        description: format!("file://{}", path.display()),
    })
}
