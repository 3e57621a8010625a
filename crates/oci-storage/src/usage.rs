//! Storage usage (`oci-registry du`): per repository, the bytes it
//! references and the bytes only it references, and the unique bytes the
//! store holds.
//!
//! A repository references each manifest it holds and, through them, their
//! config, layers and child manifests (as its manifests declare them).
//! Sizes are the stored sizes, from one listing of `blobs/`, never the
//! sizes a manifest claims. Reads everything once: O(manifests + blobs)
//! requests on S3 (one list page per 1,000 blobs), nothing written.

use std::collections::{HashMap, HashSet};

use object_store::path::Path;
use oci_types::{Digest, Pagination, ParsedManifest, RepositoryName, RepositoryPattern};

use crate::error::Result;
use crate::{Storage, layout};

/// What one repository uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryUsage {
    /// The repository.
    pub name: RepositoryName,
    /// Manifests it holds.
    pub manifests: usize,
    /// Stored bytes of every blob and manifest it references.
    pub referenced_bytes: u64,
    /// Stored bytes of what no other repository references: what deleting
    /// the repository would free.
    pub exclusive_bytes: u64,
}

/// The store's usage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    /// The repositories asked for, sorted by name.
    pub repositories: Vec<RepositoryUsage>,
    /// Blobs (and manifests) stored, referenced or not.
    pub stored_blobs: usize,
    /// Their bytes: each stored once, however many repositories use it.
    pub stored_bytes: u64,
    /// Bytes of stored blobs no repository references (garbage collection
    /// would reclaim them once older than its grace period).
    pub unreferenced_bytes: u64,
}

impl Usage {
    /// The usage of repositories holding `per_repo` (name, manifests, every
    /// digest referenced), blobs sized by `sizes`; rows only for those
    /// `filter` matches (the exclusive figures account for all).
    pub(crate) fn tally(
        sizes: &HashMap<Digest, u64>,
        per_repo: &[(RepositoryName, usize, HashSet<Digest>)],
        filter: Option<&RepositoryPattern>,
    ) -> Usage {
        let mut referenced_by: HashMap<&Digest, u32> = HashMap::new();
        for (_, _, digests) in per_repo {
            for d in digests {
                *referenced_by.entry(d).or_default() += 1;
            }
        }
        let size = |d: &Digest| sizes.get(d).copied().unwrap_or(0);
        let repositories = per_repo
            .iter()
            .filter(|(name, ..)| filter.is_none_or(|p| p.matches(name)))
            .map(|(name, manifests, digests)| RepositoryUsage {
                name: name.clone(),
                manifests: *manifests,
                referenced_bytes: digests.iter().map(size).sum(),
                exclusive_bytes: digests
                    .iter()
                    .filter(|d| referenced_by.get(*d) == Some(&1))
                    .map(size)
                    .sum(),
            })
            .collect();
        Usage {
            repositories,
            stored_blobs: sizes.len(),
            stored_bytes: sizes.values().sum(),
            unreferenced_bytes: sizes
                .iter()
                .filter(|(d, _)| !referenced_by.contains_key(*d))
                .map(|(_, s)| s)
                .sum(),
        }
    }
}

impl Storage {
    /// Computes usage; `repositories` limits the per-repository rows (the
    /// exclusive figures still account for every repository).
    pub async fn usage(&self, repositories: Option<&RepositoryPattern>) -> Result<Usage> {
        let sizes = self.blob_sizes().await?;
        let mut per_repo = Vec::new();
        for name in self.all_repositories().await? {
            let (manifests, digests) = self.references(&name).await?;
            per_repo.push((name, manifests, digests));
        }
        Ok(Usage::tally(&sizes, &per_repo, repositories))
    }

    /// Every stored blob's size, from one listing of `blobs/`.
    pub(crate) async fn blob_sizes(&self) -> Result<HashMap<Digest, u64>> {
        Ok(self
            .list_dated(&layout::blobs_dir())
            .await?
            .into_iter()
            .filter_map(|(key, size, _)| layout::blob_data_digest(&key).map(|d| (d, size)))
            .collect())
    }

    /// Every repository, through the catalog's pages.
    pub(crate) async fn all_repositories(&self) -> Result<Vec<RepositoryName>> {
        let mut all = Vec::new();
        let mut last = None;
        loop {
            let page = Pagination {
                n: Some(crate::DEFAULT_CATALOG_PAGE),
                last: last.clone(),
            };
            let (names, more) = self.catalog(&page).await?;
            last = names.last().map(|n| n.as_str().to_owned());
            all.extend(names);
            if !more || last.is_none() {
                return Ok(all);
            }
        }
    }

    /// The manifests `name` holds and every digest they reference (the
    /// manifests included).
    async fn references(&self, name: &RepositoryName) -> Result<(usize, HashSet<Digest>)> {
        let held = self.held_manifests(name).await?;
        let mut digests = HashSet::new();
        for (digest, contents) in &held {
            if let Contents::References { refs, .. } = contents {
                digests.extend(refs.iter().cloned());
            }
            digests.insert(digest.clone());
        }
        Ok((held.len(), digests))
    }

    /// Every manifest `name` links, with what its stored bytes say: the
    /// one walk `du` and `fsck` share.
    pub(crate) async fn held_manifests(
        &self,
        name: &RepositoryName,
    ) -> Result<Vec<(Digest, Contents)>> {
        let links = self
            .links(&layout::manifests_dir(name), "_manifests")
            .await?;
        let mut held = Vec::with_capacity(links.len());
        for digest in links {
            let link = self.manifest_link(name, &digest).await?;
            let media_type = link.as_ref().map(|l| l.media_type.as_str());
            let fetched = link.as_ref().is_some_and(|l| l.fetched);
            let contents = match self.read_small(&layout::blob_data(&digest)).await? {
                None => Contents::Missing,
                Some(body) => match ParsedManifest::parse(&body, media_type) {
                    Ok(parsed) => Contents::References {
                        refs: parsed
                            .required_blobs()
                            .chain(parsed.required_manifests())
                            .cloned()
                            .collect(),
                        fetched,
                    },
                    Err(_) => Contents::Unreadable,
                },
            };
            held.push((digest, contents));
        }
        Ok(held)
    }

    /// The digests of the links under `dir` (`_layers` or `_manifests`).
    pub(crate) async fn links(&self, dir: &Path, dir_name: &str) -> Result<Vec<Digest>> {
        Ok(self
            .list_keys(dir)
            .await?
            .iter()
            .filter_map(|key| layout::link_digest(key, dir_name))
            .collect())
    }
}

/// What a linked manifest's stored bytes say.
#[derive(Debug)]
pub(crate) enum Contents {
    /// Its bytes are gone.
    Missing,
    /// Its bytes do not parse as the manifest it was pushed as.
    Unreadable,
    /// The blobs and child manifests it refers to.
    References {
        /// Their digests.
        refs: Vec<Digest>,
        /// A cached copy of another registry's manifest, whose references
        /// are fetched when asked for.
        fetched: bool,
    },
}
