//! The referrers index (distribution-spec "Listing Referrers"): for every
//! subject digest, one object per manifest that names it as `subject`.
//! One object per referrer means concurrent pushes never overwrite each
//! other's entries.

use futures::{StreamExt, TryStreamExt};
use oci_types::{Descriptor, Digest, RepositoryName};

use crate::error::{Result, StorageError};
use crate::upload_area::delete_if_exists;
use crate::{Storage, layout};

/// How many entries are read at once when listing referrers.
const READ_CONCURRENCY: usize = 16;

impl Storage {
    /// The descriptors of manifests in `name` whose subject is `subject`,
    /// sorted by digest; only those of `artifact_type` when given. An
    /// unknown subject has no referrers (an empty list, not an error).
    pub async fn referrers(
        &self,
        name: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let paths: Vec<_> = self
            .store()
            .list(Some(&layout::referrers_dir(name, subject)))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        let mut out: Vec<Descriptor> = futures::stream::iter(paths)
            .map(|path| async move {
                let Some(bytes) = self.read_small(&path).await? else {
                    return Ok(None); // deleted while we listed
                };
                serde_json::from_slice::<Descriptor>(&bytes)
                    .map(Some)
                    .map_err(|e| StorageError::Corrupt {
                        path: path.to_string(),
                        reason: e.to_string(),
                    })
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_filter_map(|d| async move { Ok(d) })
            .try_collect()
            .await?;
        if let Some(wanted) = artifact_type {
            out.retain(|d| d.artifact_type.as_deref() == Some(wanted));
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    pub(crate) async fn add_referrer(
        &self,
        name: &RepositoryName,
        subject: &Digest,
        descriptor: &Descriptor,
    ) -> Result<()> {
        let json = serde_json::to_vec(descriptor).map_err(std::io::Error::other)?;
        self.write_small(&layout::referrer(name, subject, &descriptor.digest), json)
            .await
    }

    pub(crate) async fn remove_referrer(
        &self,
        name: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<()> {
        delete_if_exists(self.store(), &layout::referrer(name, subject, referrer)).await
    }
}
