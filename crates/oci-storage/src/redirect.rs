//! Redirects for pulls: a blob's bytes fetched by the client straight from
//! the object store, through a presigned URL (S3 SigV4 query, Azure SAS,
//! GCS V4 signature), instead of streamed through the registry.
//!
//! On when [`crate::StorageOptions::redirect`] is set, on backends whose
//! store signs URLs (`s3://`, `gs://`, `az://`; see [`presigns`]). The
//! signer is built with the store (`backend::open_cloud`), so callers never
//! branch on the backend: [`Storage::blob_redirect`] answers `None` where
//! there is nothing to redirect to.
//!
//! A presigned URL is a credential until it expires: [`PresignedUrl`] shows
//! its query only through [`PresignedUrl::as_str`] (for the `Location`
//! header), never in `Debug` or `Display`.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::signer::{Method, Signer};
use oci_types::{ByteRange, Digest, RepositoryName};

use crate::error::{Result, StorageError};
use crate::{Storage, layout};

/// The longest expiry a presigned URL may have: S3's and GCS's limit
/// (seven days).
pub const MAX_REDIRECT_EXPIRY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// True if the store at `url` presigns URLs, so that
/// [`crate::StorageOptions::redirect`] can be on: `s3://`, `gs://` and
/// `az://` (Azure with an access key or Entra ID credentials; a SAS token
/// cannot sign another SAS). The filesystem and memory cannot.
pub fn presigns(url: &str) -> bool {
    crate::backend::is_cloud(url)
}

/// Signs URLs of the objects of one store, below its prefix.
#[derive(Debug, Clone)]
pub(crate) struct UrlSigner {
    signer: Arc<dyn Signer>,
    /// The storage URL's prefix in the bucket (the store itself is a
    /// `PrefixStore`; the signer is the bare client).
    prefix: Path,
}

impl UrlSigner {
    pub(crate) fn new(signer: Arc<dyn Signer>, prefix: Path) -> Self {
        Self { signer, prefix }
    }

    /// A URL that lets its bearer `GET` the object `key` for `expiry`.
    async fn get_url(&self, key: &Path, expiry: Duration) -> object_store::Result<PresignedUrl> {
        let full: Path = self.prefix.parts().chain(key.parts()).collect();
        let url = self.signer.signed_url(Method::GET, &full, expiry).await?;
        Ok(PresignedUrl(url))
    }
}

/// A presigned URL. Its query holds a signature (a credential until it
/// expires): `Debug` and `Display` show the URL without it.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedUrl(url::Url);

impl PresignedUrl {
    /// The whole URL, signature included: for the `Location` header only.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The URL without its query (what may be logged).
    fn redacted(&self) -> String {
        let mut url = self.0.clone();
        url.set_query(None);
        url.to_string()
    }
}

impl std::fmt::Debug for PresignedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PresignedUrl({}?<redacted>)", self.redacted())
    }
}

impl std::fmt::Display for PresignedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}?<redacted>", self.redacted())
    }
}

/// Where a client fetches a blob's bytes from: see
/// [`Storage::blob_redirect`].
#[derive(Debug, Clone)]
pub struct BlobRedirect {
    /// The presigned `GET` of the blob's data.
    pub url: PresignedUrl,
    /// The blob's size in bytes.
    pub size: u64,
}

impl Storage {
    /// A presigned URL of the blob's bytes, valid for
    /// [`crate::StorageOptions::redirect`], if redirects are on and the
    /// store signs URLs; `None` otherwise (stream it with
    /// [`Storage::blob_get`]).
    ///
    /// Only a blob `name` holds and whose bytes are stored gets one (else
    /// [`StorageError::BlobUnknown`], as [`Storage::blob_get`]): a client is
    /// never sent to a URL that answers 404 in the store's own words. A
    /// `range` is checked against the size here
    /// ([`StorageError::RangeNotSatisfiable`]), then sent by the client to
    /// the store, which honours `Range` on a presigned `GET`.
    ///
    /// When signing fails (e.g. credentials the store cannot sign with),
    /// the failure is logged and `None` returned: the blob is streamed.
    pub async fn blob_redirect(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobRedirect>> {
        let (Some(signer), Some(expiry)) = (&self.inner.signer, self.inner.options.redirect) else {
            return Ok(None);
        };
        let meta = self.blob_stat(name, digest).await?;
        if let Some(range) = range
            && range.resolve(meta.size).is_none()
        {
            return Err(StorageError::RangeNotSatisfiable { size: meta.size });
        }
        match signer.get_url(&layout::blob_data(digest), expiry).await {
            Ok(url) => Ok(Some(BlobRedirect {
                url,
                size: meta.size,
            })),
            Err(e) => {
                tracing::warn!(error = %e, %digest, "cannot presign a blob URL: streaming it instead");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StorageOptions;

    #[test]
    fn printing_a_url_hides_its_signature() {
        let url = PresignedUrl(
            "http://s3.test/b/blobs/data?X-Amz-Credential=k&X-Amz-Signature=abc"
                .parse()
                .unwrap(),
        );
        for printed in [format!("{url}"), format!("{url:?}")] {
            assert!(!printed.contains("abc"), "{printed}");
            assert!(!printed.contains("X-Amz"), "{printed}");
            assert!(printed.contains("http://s3.test/b/blobs/data"), "{printed}");
        }
        assert!(url.as_str().ends_with("X-Amz-Signature=abc"));
    }

    #[tokio::test]
    async fn only_stores_that_presign_take_redirects() {
        let options = StorageOptions {
            redirect: Some(Duration::from_secs(60)),
            ..StorageOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        for url in ["memory://", path.as_str()] {
            let e = Storage::open_with_options(url, options.clone())
                .await
                .unwrap_err();
            assert!(e.to_string().contains("presigns URLs"), "{e}");
            assert!(!presigns(url));
        }
        assert!(presigns("s3://b/p") && presigns("gs://b") && presigns("az://c/p"));
        // Off: nothing to redirect to, on any backend.
        let s = Storage::open("memory://").await.unwrap();
        let name: RepositoryName = "r".parse().unwrap();
        let digest = Digest::of(b"x");
        assert!(
            s.blob_redirect(&name, &digest, None)
                .await
                .unwrap()
                .is_none()
        );
    }
}
