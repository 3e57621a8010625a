//! Tags: one small object per tag holding the digest it points to.

use oci_types::{Digest, Pagination, RepositoryName, Tag};

use crate::error::{Result, StorageError};
use crate::{Storage, layout};

impl Storage {
    /// The repository's tags, sorted lexically, paginated (distribution-spec
    /// "Listing Tags"). Returns the page and whether more remain.
    pub async fn tags_list(
        &self,
        name: &RepositoryName,
        page: &Pagination,
    ) -> Result<(Vec<Tag>, bool)> {
        if !self.repository_exists(name).await? {
            return Err(StorageError::NameUnknown(name.clone()));
        }
        let tags = self.all_tags(name).await?;
        Ok(page.apply(tags, usize::MAX))
    }

    /// Every tag of the repository, sorted.
    async fn all_tags(&self, name: &RepositoryName) -> Result<Vec<Tag>> {
        // Staging files of tag writes in progress (`<tag>#<n>`) are not
        // valid tags and drop out here.
        let mut tags: Vec<Tag> = self
            .list_names(&layout::tags_dir(name))
            .await?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        tags.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        tags.dedup();
        Ok(tags)
    }

    /// The digest `tag` points to, if the tag exists.
    pub(crate) async fn read_tag(
        &self,
        name: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<Digest>> {
        let path = layout::tag(name, tag);
        let Some(bytes) = self.read_small(&path).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        text.trim()
            .parse()
            .map(Some)
            .map_err(|e: oci_types::Error| StorageError::Corrupt {
                path: path.to_string(),
                reason: e.to_string(),
            })
    }

    /// Tags currently pointing to `digest`.
    pub(crate) async fn tags_pointing_to(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<Tag>> {
        let mut out = Vec::new();
        for tag in self.all_tags(name).await? {
            if self.read_tag(name, &tag).await?.as_ref() == Some(digest) {
                out.push(tag);
            }
        }
        Ok(out)
    }
}
