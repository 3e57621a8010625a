//! Opening a storage backend from a URL.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;

use crate::error::{Result, StorageError};
use crate::local::LocalFiles;
use crate::options::StorageOptions;
use crate::redirect::UrlSigner;
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
    /// Presigns URLs of objects, on the clouds (see [`crate::redirect`]).
    pub(crate) signer: Option<UrlSigner>,
}

/// `store`, its requests counted and timed (see [`crate::telemetry`]).
fn instrumented(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    Arc::new(InstrumentedStore::new(store))
}

/// Parses a storage URL: `memory://`, `file:///abs/path`, a plain path
/// (relative paths are resolved against the current directory),
/// `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`.
/// `options.backend` are object_store configuration keys (`aws_endpoint`,
/// `google_base_url`, `azure_storage_account_name`, ...), applied over the
/// cloud's environment variables; only the clouds take any.
pub(crate) fn open(url: &str, options: &StorageOptions) -> Result<Backend> {
    let invalid = |reason: &str| StorageError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if options.redirect.is_some() && Cloud::of(url).is_none() {
        return Err(invalid(
            "redirects need a store that presigns URLs: s3://, gs:// or az://",
        ));
    }
    if url == "memory://" || url == "memory:" {
        let store = instrumented(Arc::new(InMemory::new()));
        return Ok(Backend {
            uploads: Arc::new(PartsUploadArea::new(Arc::clone(&store))),
            store,
            description: "memory://".into(),
            local: None,
            signer: None,
        });
    }
    if let Some(cloud) = Cloud::of(url) {
        return open_cloud(url, cloud, options);
    }
    if let Some((key, _)) = options.backend.first() {
        return Err(invalid(&format!(
            "option {key:?} applies to s3://, gs:// and az:// URLs only"
        )));
    }
    let path = if url.starts_with("file:") {
        url::Url::parse(url)
            .map_err(|e| invalid(&e.to_string()))?
            .to_file_path()
            .map_err(|()| invalid("file URLs must hold an absolute local path"))?
    } else if url.contains("://") {
        return Err(invalid(
            "unsupported scheme: use memory://, file:///abs/path, s3://bucket/prefix, \
             gs://bucket/prefix, az://container/prefix or a plain path",
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
        signer: None,
    })
}

/// True if `url` names a cloud store (`s3://`, `gs://`, `az://`).
pub(crate) fn is_cloud(url: &str) -> bool {
    Cloud::of(url).is_some()
}

/// An object store with multipart uploads: which one a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cloud {
    /// `s3://bucket/prefix`, configured by `AWS_*` variables and `aws_*`
    /// options.
    S3,
    /// `gs://bucket/prefix`, configured by `GOOGLE_*` variables and
    /// `google_*` options.
    Gcs,
    /// `az://container/prefix`, configured by `AZURE_*` variables and
    /// `azure_*` options.
    Azure,
}

impl Cloud {
    fn of(url: &str) -> Option<Cloud> {
        [
            ("s3://", Cloud::S3),
            ("gs://", Cloud::Gcs),
            ("az://", Cloud::Azure),
        ]
        .into_iter()
        .find_map(|(scheme, cloud)| url.starts_with(scheme).then_some(cloud))
    }

    fn scheme(self) -> &'static str {
        match self {
            Cloud::S3 => "s3",
            Cloud::Gcs => "gs",
            Cloud::Azure => "az",
        }
    }
}

/// One cloud client, seen as a store, as the multipart uploads of upload
/// sessions and as the signer of presigned URLs.
type CloudClient = (
    Arc<dyn ObjectStore>,
    Arc<dyn MultipartStore>,
    Arc<dyn Signer>,
);

/// The client of `cloud`'s `bucket`, from its environment variables, then
/// `options` (object_store configuration keys).
fn cloud_client(
    cloud: Cloud,
    bucket: &str,
    options: &[(String, String)],
) -> std::result::Result<CloudClient, String> {
    let unknown = |key: &str| format!("unknown {} option {key:?}", cloud.scheme());
    fn both<T: ObjectStore + MultipartStore + Signer>(store: T) -> CloudClient {
        let store = Arc::new(store);
        (store.clone(), store.clone(), store)
    }
    Ok(match cloud {
        Cloud::S3 => {
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (key, value) in options {
                let key: AmazonS3ConfigKey = key.parse().map_err(|_| unknown(key))?;
                builder = builder.with_config(key, value);
            }
            both(builder.build().map_err(|e| e.to_string())?)
        }
        Cloud::Gcs => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
            for (key, value) in options {
                let key: GoogleConfigKey = key.parse().map_err(|_| unknown(key))?;
                builder = builder.with_config(key, value);
            }
            both(builder.build().map_err(|e| e.to_string())?)
        }
        Cloud::Azure => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(bucket);
            for (key, value) in options {
                let key: AzureConfigKey = key.parse().map_err(|_| unknown(key))?;
                builder = builder.with_config(key, value);
            }
            both(builder.build().map_err(|e| e.to_string())?)
        }
    })
}

/// `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`:
/// configuration from the cloud's environment variables, then `options`;
/// the prefix is applied with a [`PrefixStore`]. Uploads are the cloud's
/// multipart uploads, sessions are locked with lease objects written
/// conditionally.
fn open_cloud(url: &str, cloud: Cloud, options: &StorageOptions) -> Result<Backend> {
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
    let (client, multipart, signer) =
        cloud_client(cloud, bucket, &options.backend).map_err(invalid)?;
    let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
        client
    } else {
        Arc::new(PrefixStore::new(client, prefix.clone()))
    };
    let store = instrumented(store);
    let locks = LeaseLocks::new(Arc::clone(&store), options.lease_ttl);
    let area = MultipartUploadArea::new(Arc::clone(&store), multipart, prefix.clone(), locks)
        .with_concurrency(options.upload_concurrency);
    Ok(Backend {
        uploads: Arc::new(area),
        store,
        description: format!("{}://{bucket}/{prefix}", cloud.scheme()),
        local: None,
        signer: Some(UrlSigner::new(signer, prefix)),
    })
}
