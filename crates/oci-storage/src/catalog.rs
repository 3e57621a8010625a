//! The repository catalog (`GET /v2/_catalog`): one marker object per
//! repository, written the first time a repository receives content.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

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

    /// All repositories, sorted, paginated (`n`, default
    /// [`DEFAULT_CATALOG_PAGE`], after `last`). Returns the page and
    /// whether more remain.
    ///
    /// Costs O(page), not O(repositories): the markers are listed in key
    /// order from `_catalog/<last>` and the listing stops after `n + 1`
    /// names. Key order (`<name>/_repository`) differs from name order only
    /// where one name extends another with `-`, `.` or `/` (`a-b` lists
    /// before `a`): a name listed late can then only be a prefix of a name
    /// already found, so the few prefixes of the largest name found are
    /// checked directly.
    pub async fn catalog(&self, page: &Pagination) -> Result<(Vec<RepositoryName>, bool)> {
        let n = page.n.unwrap_or(DEFAULT_CATALOG_PAGE);
        if n == 0 {
            // A zero-sized page never advertises a next page: following it would loop.
            return Ok((Vec::new(), false));
        }
        let last = page.last.clone();
        // Every name after `last` has its marker's key after `<last>`
        // (for a `last` that is no valid name, list from the start).
        let after = last.clone().filter(|l| l.parse::<RepositoryName>().is_ok());
        let want = n.saturating_add(1);
        let mut found = 0;
        let select = move |key: &str| {
            let name = key.strip_suffix(MARKER_SUFFIX).filter(|name| {
                last.as_deref().is_none_or(|last| *name > last)
                    && name.parse::<RepositoryName>().is_ok()
            });
            if name.is_none() {
                return ControlFlow::Continue(false);
            }
            found += 1;
            if found >= want {
                ControlFlow::Break(true)
            } else {
                ControlFlow::Continue(true)
            }
        };
        let keys = self
            .scan_keys(&layout::catalog_dir(), after, select)
            .await?;
        let mut names: BTreeSet<String> = keys
            .iter()
            .filter_map(|k| k.strip_suffix(MARKER_SUFFIX).map(str::to_owned))
            .collect();
        if names.len() >= want
            && let Some(largest) = names.last().cloned()
        {
            for (i, c) in largest.char_indices() {
                let prefix = &largest[..i];
                if matches!(c, '-' | '.' | '/')
                    && page.last.as_deref().is_none_or(|last| prefix > last)
                    && !names.contains(prefix)
                    && let Ok(name) = prefix.parse::<RepositoryName>()
                    && self.repository_exists(&name).await?
                {
                    names.insert(prefix.to_owned());
                }
            }
        }
        let mut page: Vec<RepositoryName> = names
            .iter()
            .filter_map(|name| name.parse().ok())
            .take(want)
            .collect();
        let more = page.len() > n;
        page.truncate(n);
        Ok((page, more))
    }
}

/// How a marker's key (relative to `_catalog/`) ends.
const MARKER_SUFFIX: &str = "/_repository";

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt;
    use oci_types::Digest;

    use super::*;
    use crate::recording_store::recorded_storage;

    #[tokio::test]
    async fn a_page_reads_about_a_page_of_markers() {
        let (s, recorded) = recorded_storage();
        let blob = Bytes::from_static(b"x");
        let digest = Digest::of(&blob);
        for i in 0..500 {
            let name: RepositoryName = format!("repo{i:03}").parse().unwrap();
            let body = futures::stream::iter([Ok(blob.clone())]).boxed();
            s.blob_put(&name, &digest, body).await.unwrap();
        }
        recorded.take();
        let page = Pagination {
            n: Some(10),
            last: Some("repo250".into()),
        };
        let (names, more) = s.catalog(&page).await.unwrap();
        let names: Vec<_> = names.iter().map(|n| n.as_str().to_owned()).collect();
        let want: Vec<_> = (251..261).map(|i| format!("repo{i}")).collect();
        assert_eq!((names, more), (want, true));
        let listed = recorded
            .take()
            .into_iter()
            .filter(|op| op.starts_with("listed "))
            .count();
        assert!(listed <= 12, "{listed} markers listed for a page of 10");
    }
}
