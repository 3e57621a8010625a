//! The referrers index (distribution-spec "Listing Referrers"): for every
//! subject digest, one object per manifest that names it as `subject`.
//! One object per referrer means concurrent pushes never overwrite each
//! other's entries.

use futures::{StreamExt, TryStreamExt};
use oci_types::{Descriptor, Digest, Pagination, RepositoryName};

use crate::error::{Result, StorageError};
use crate::upload_area::delete_if_exists;
use crate::{Storage, layout};

/// How many entries are read at once when listing referrers.
const READ_CONCURRENCY: usize = 16;

/// Entries listed at a time when a filter may skip some.
const READ_BATCH: usize = 1000;

/// Page size of a referrers list when the client does not give `n`.
pub const DEFAULT_REFERRERS_PAGE: usize = 1000;

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
        let all = Pagination {
            n: Some(usize::MAX),
            last: None,
        };
        let (out, _) = self
            .referrers_page(name, subject, artifact_type, &all)
            .await?;
        Ok(out)
    }

    /// One page of [`Storage::referrers`]: at most `n` (default
    /// [`DEFAULT_REFERRERS_PAGE`]) descriptors whose digest sorts after
    /// `last`, and whether more remain. distribution-spec "Listing
    /// Referrers" lets the registry paginate with a `Link` header. Reads
    /// only the entries of the page (and, with a filter, those it skips).
    pub async fn referrers_page(
        &self,
        name: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
        page: &Pagination,
    ) -> Result<(Vec<Descriptor>, bool)> {
        let n = page.n.unwrap_or(DEFAULT_REFERRERS_PAGE);
        if n == 0 {
            return Ok((Vec::new(), false));
        }
        let want = n.saturating_add(1);
        let dir = layout::referrers_dir(name, subject);
        // Entries are named `<alg>-<hex>`: the same order as the digests.
        // A `last` that is no digest is only a filter (listed from the start).
        let last_entry = page.last.as_ref().map(|d| d.replacen(':', "-", 1));
        let is_digest = page
            .last
            .as_deref()
            .is_some_and(|l| l.parse::<Digest>().is_ok());
        let mut cursor = last_entry.clone().filter(|_| is_digest);
        let mut out = Vec::new();
        loop {
            let batch = want.saturating_sub(out.len()).clamp(1, READ_BATCH);
            let names = self
                .list_names_after(&dir, cursor.as_deref(), batch)
                .await?;
            let exhausted = names.len() < batch;
            cursor = names.last().cloned();
            let dir = &dir;
            let read: Vec<Descriptor> = futures::stream::iter(names)
                .filter(|n| {
                    let after = last_entry.as_deref().is_none_or(|l| n.as_str() > l);
                    async move { after }
                })
                .map(|entry| async move {
                    let path = dir.clone().join(entry.as_str());
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
                .buffered(READ_CONCURRENCY)
                .try_filter_map(|d| async move { Ok(d) })
                .try_collect()
                .await?;
            out.extend(
                read.into_iter().filter(|d| {
                    artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t))
                }),
            );
            if exhausted || out.len() >= want {
                break;
            }
        }
        let more = out.len() > n;
        out.truncate(n);
        Ok((out, more))
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
