//! The repository catalog (`GET /v2/_catalog`): one marker object per
//! repository, written the first time a repository receives content.

use oci_types::{Pagination, RepositoryName};

use crate::error::Result;
use crate::{Storage, layout};

/// Page size when the client does not give `n`.
pub const DEFAULT_CATALOG_PAGE: usize = 1000;

impl Storage {
    /// Records that `name` exists. Idempotent; one conditional write. A new
    /// repository's tags were all written with their reverse index entries,
    /// so its index is marked complete (see `tags`).
    pub(crate) async fn ensure_repository(&self, name: &RepositoryName) -> Result<()> {
        if self.create_small(&layout::catalog_marker(name), "").await? {
            self.mark_tag_index_complete(name).await?;
        }
        Ok(())
    }

    /// True if the repository has ever held content.
    pub async fn repository_exists(&self, name: &RepositoryName) -> Result<bool> {
        self.exists(&layout::catalog_marker(name)).await
    }

    /// All repositories, sorted, paginated. Returns the page and whether
    /// more remain.
    pub async fn catalog(&self, page: &Pagination) -> Result<(Vec<RepositoryName>, bool)> {
        let mut names: Vec<RepositoryName> = self
            .dirs_with(&layout::catalog_dir(), layout::CATALOG_MARKER)
            .await?
            .into_iter()
            .filter_map(|rel| rel.parse().ok())
            .collect();
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        Ok(page.apply(names, DEFAULT_CATALOG_PAGE))
    }
}
