//! Tags: one small object per tag holding the digest it points to, and a
//! reverse index from digest to tags for deleting a manifest.
//!
//! # Deleting a manifest's tags
//!
//! distribution-spec "Deleting Manifests": deleting by digest removes the
//! manifest and so the tags that name it. Reading every tag to find those
//! would cost O(tags) and, done one by one, could delete a tag that was
//! re-pointed after it was read. Instead:
//!
//! - Writing tag `t` -> `D` first writes the index entry
//!   `_tagged/<D>/<t>`, then the tag. So every tag that points to `D` has
//!   an entry under `_tagged/<D>/` (entries may be stale: the tag may have
//!   moved on since; they are never missing).
//! - Deleting `D` lists only `_tagged/<D>/` and, for each candidate, removes
//!   the tag only if it still points to `D` at that moment, with the
//!   strongest primitive the backend has (see `Storage::remove_small_if`):
//!   an atomic rename-and-compare on the filesystem, a conditional update
//!   (`If-Match` on S3) that leaves an empty tombstone on object stores. A
//!   tag re-pointed at any time before that atomic step is kept; one
//!   re-pointed after it was deleted while it still named `D`, and is then
//!   written anew. Then the entry goes.
//! - Stores written before the index existed lack `_tagged/_complete`: the
//!   first delete by digest in such a repository reads every tag once to
//!   build the index, then writes the marker. A repository created since
//!   has the marker from its first write.
//!
//! Remaining windows: a push of `D` under `t` racing the delete of `D`
//! can see its index entry removed after its tag was written (the tag then
//! outlives the manifest, like any push racing a delete); a process still
//! running older code writes tags without entries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oci_types::{Digest, Pagination, RepositoryName, Tag};

use crate::error::{Result, StorageError};
use crate::upload_area::delete_if_exists;
use crate::{Storage, layout};

/// Page size of a tags list when the client does not give `n`.
pub const DEFAULT_TAGS_PAGE: usize = 1000;

impl Storage {
    /// The repository's tags, sorted lexically, paginated (distribution-spec
    /// "Listing Tags": at most `n` tags after `last`). Without `n`, a page
    /// holds at most [`DEFAULT_TAGS_PAGE`] tags: the spec lets a registry
    /// return fewer than all with a `Link` to the rest, which clients that
    /// list tags (skopeo, crane, oras, regclient) follow. Returns the page
    /// and whether more remain; a page costs O(page) on S3 and memory
    /// (listed from `last`), and a binary search in a kept listing on the
    /// filesystem.
    pub async fn tags_list(
        &self,
        name: &RepositoryName,
        page: &Pagination,
    ) -> Result<(Vec<Tag>, bool)> {
        if !self.repository_exists(name).await? {
            return Err(StorageError::NameUnknown(name.clone()));
        }
        let n = page.n.unwrap_or(DEFAULT_TAGS_PAGE);
        if n == 0 {
            // A zero-sized page never advertises a next page: following it would loop.
            return Ok((Vec::new(), false));
        }
        let last = page.last.as_deref();
        let mut tags = self.tags_after(name, last, n.saturating_add(1)).await?;
        let more = tags.len() > n;
        tags.truncate(n);
        Ok((tags, more))
    }

    /// Up to `limit` tags after `last` (all: `None`), sorted.
    async fn tags_after(
        &self,
        name: &RepositoryName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tag>> {
        // Tag names are object names, so name order is key order; a `last`
        // that is no tag may hold characters the store would escape: list
        // from the start then, and filter.
        let offset = last.filter(|l| l.parse::<Tag>().is_ok());
        let mut tags = Vec::new();
        let mut cursor = offset.map(str::to_owned);
        loop {
            let names = self
                .list_names_after(&layout::tags_dir(name), cursor.as_deref(), limit)
                .await?;
            let exhausted = names.len() < limit;
            cursor = names.last().cloned();
            tags.extend(
                names
                    .iter()
                    .filter(|n| last.is_none_or(|last| n.as_str() > last))
                    .filter_map(|n| n.parse::<Tag>().ok()),
            );
            if exhausted || tags.len() >= limit {
                break;
            }
        }
        tags.truncate(limit);
        Ok(tags)
    }

    /// Every tag of the repository, sorted.
    pub(crate) async fn all_tags(&self, name: &RepositoryName) -> Result<Vec<Tag>> {
        self.tags_after(name, None, usize::MAX).await
    }

    /// The digest `tag` points to, if the tag exists.
    pub(crate) async fn read_tag(
        &self,
        name: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<Digest>> {
        let path = layout::tag(name, tag);
        let Some(bytes) = self.read_metadata(&path).await? else {
            return Ok(None);
        };
        if bytes.is_empty() {
            return Ok(None); // a tombstone: deleted
        }
        let text = String::from_utf8_lossy(&bytes);
        text.trim()
            .parse()
            .map(Some)
            .map_err(|e: oci_types::Error| StorageError::Corrupt {
                path: path.to_string(),
                reason: e.to_string(),
            })
    }

    /// Points `tag` at the manifest `digest`, which `name` must hold
    /// (else [`StorageError::ManifestUnknown`]): tagging without sending
    /// the manifest again.
    pub async fn tag_put(&self, name: &RepositoryName, tag: &Tag, digest: &Digest) -> Result<()> {
        if !self.exists(&layout::manifest_link(name, digest)).await? {
            return Err(self
                .unknown_in(name, StorageError::ManifestUnknown(digest.to_string()))
                .await);
        }
        self.write_tag(name, tag, digest).await
    }

    /// Points `tag` at `digest`: the index entry first, then the tag.
    pub(crate) async fn write_tag(
        &self,
        name: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<()> {
        self.index_tag(name, tag, digest).await?;
        self.write_small(&layout::tag(name, tag), digest.to_string())
            .await
    }

    /// Writes the reverse index entry of `tag` → `digest`: before the tag
    /// itself, so the index may be stale but never misses a tag. It records
    /// when the push happened (for retention's "most recently pushed"), in
    /// the store rather than in object dates, which copies change.
    pub(crate) async fn index_tag(
        &self,
        name: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<()> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        self.write_small(
            &layout::tag_index_entry(name, digest, tag),
            format!("{digest}\n{millis}\n"),
        )
        .await
    }

    /// When `tag` was last pushed as `digest`: the time its index entry
    /// records, or (entries written before times were recorded) the
    /// entry's date in the store; `None` without an entry.
    pub(crate) async fn tag_pushed_at(
        &self,
        name: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<Option<SystemTime>> {
        let entry = layout::tag_index_entry(name, digest, tag);
        let Some((bytes, date)) = self.read_small_dated(&entry).await? else {
            return Ok(None);
        };
        let recorded = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.lines().nth(1))
            .and_then(|line| line.trim().parse::<u64>().ok())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        Ok(Some(recorded.unwrap_or(date)))
    }

    /// Removes every tag that points to `digest` at the moment it is
    /// removed, reading only the digest's index entries (see the module
    /// docs).
    pub(crate) async fn untag_digest(&self, name: &RepositoryName, digest: &Digest) -> Result<()> {
        self.ensure_tag_index(name).await?;
        let expected = digest.to_string();
        let dir = layout::tag_index_dir(name, digest);
        let names = self.list_names_after(&dir, None, usize::MAX).await?;
        // Staging files of entry writes in progress do not parse as tags.
        for tag in names.iter().filter_map(|n| n.parse::<Tag>().ok()) {
            self.remove_small_if(&layout::tag(name, &tag), expected.as_bytes())
                .await?;
            delete_if_exists(self.store(), &layout::tag_index_entry(name, digest, &tag)).await?;
        }
        Ok(())
    }

    /// The tags that name `digest` now (from its reverse index entries,
    /// each confirmed against the tag itself).
    pub(crate) async fn tags_naming(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<Tag>> {
        self.ensure_tag_index(name).await?;
        let dir = layout::tag_index_dir(name, digest);
        let names = self.list_names_after(&dir, None, usize::MAX).await?;
        let mut tags = Vec::new();
        for tag in names.iter().filter_map(|n| n.parse::<Tag>().ok()) {
            if self.read_tag(name, &tag).await?.as_ref() == Some(digest) {
                tags.push(tag);
            }
        }
        Ok(tags)
    }

    /// Builds the reverse tag index of a repository written before it
    /// existed (one read of every tag, once), then marks it complete.
    async fn ensure_tag_index(&self, name: &RepositoryName) -> Result<()> {
        let complete = layout::tag_index_complete(name);
        if self.exists(&complete).await? {
            return Ok(());
        }
        for tag in self.all_tags(name).await? {
            if let Some(digest) = self.read_tag(name, &tag).await? {
                self.index_tag(name, &tag, &digest).await?;
            }
        }
        self.mark_tag_index_complete(name).await
    }

    /// Records that every tag of `name` has its index entry.
    pub(crate) async fn mark_tag_index_complete(&self, name: &RepositoryName) -> Result<()> {
        self.create_small(&layout::tag_index_complete(name), "1")
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    use object_store::path::Path;
    use oci_types::Reference;

    use super::*;
    use crate::recording_store::recorded_storage;

    /// Stores a manifest (distinct per `seed`) under the tags given; returns
    /// its digest.
    async fn push(s: &Storage, name: &RepositoryName, seed: &str, tags: &[String]) -> Digest {
        let config = Bytes::from(format!("{{\"seed\":\"{seed}\"}}"));
        let config_digest = Digest::of(&config);
        let body = futures::stream::iter([Ok(config.clone())]).boxed();
        s.blob_put(name, &config_digest, body).await.unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci_types::media_type::OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.to_string(),
                "size": config.len(),
            },
            "layers": [],
        });
        let body = Bytes::from(serde_json::to_vec(&manifest).unwrap());
        let digest = Digest::of(&body);
        let media_type = Some(oci_types::media_type::OCI_MANIFEST);
        s.manifest_put(
            name,
            &Reference::Digest(digest.clone()),
            body.clone(),
            media_type,
        )
        .await
        .unwrap();
        for tag in tags {
            let tag = Reference::Tag(tag.parse().unwrap());
            s.manifest_put(name, &tag, body.clone(), media_type)
                .await
                .unwrap();
        }
        digest
    }

    fn names(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|i| format!("{prefix}{i}")).collect()
    }

    /// The requests of a delete by digest that touch tags other than
    /// `mine` or list the tags directory.
    fn touching_other_tags(log: &[String], mine: &[String]) -> Vec<String> {
        log.iter()
            .filter(|op| {
                op.contains("/_tags") && !mine.iter().any(|t| op.ends_with(&format!("/_tags/{t}")))
            })
            .cloned()
            .collect()
    }

    #[tokio::test]
    async fn delete_by_digest_reads_only_its_own_tags() {
        let (s, recorded) = recorded_storage();
        let name: RepositoryName = "r".parse().unwrap();
        let mine = names("mine", 3);
        let target = push(&s, &name, "target", &mine).await;
        push(&s, &name, "other", &names("other", 300)).await;
        recorded.take();
        s.manifest_delete(&name, &Reference::Digest(target.clone()))
            .await
            .unwrap();
        let log = recorded.take();
        assert_eq!(touching_other_tags(&log, &mine), Vec::<String>::new());
        let index = format!("repositories/r/_tagged/sha256/{}", target.hex());
        let lists: Vec<_> = log.iter().filter(|op| op.starts_with("list ")).collect();
        assert_eq!(lists, [&format!("list {index}")]);
        let listed: Vec<_> = log.iter().filter(|op| op.starts_with("listed ")).collect();
        assert_eq!(listed.len(), mine.len(), "{listed:?}");
        assert!(
            listed
                .iter()
                .all(|op| op.starts_with(&format!("listed {index}/")))
        );
        let (left, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
        assert_eq!(left.len(), 300);
        assert!(left.iter().all(|t| t.as_str().starts_with("other")));
    }

    #[tokio::test]
    async fn stores_without_the_index_build_it_on_first_delete() {
        let (s, recorded) = recorded_storage();
        let name: RepositoryName = "r".parse().unwrap();
        let first = push(&s, &name, "first", &names("first", 2)).await;
        let second = push(&s, &name, "second", &names("second", 2)).await;
        push(&s, &name, "other", &names("other", 50)).await;
        // What a store written before the index looks like.
        let index: Vec<_> = s
            .store()
            .list(Some(&Path::from("repositories/r/_tagged")))
            .map(|m| m.unwrap().location)
            .collect()
            .await;
        assert_eq!(index.len(), 2 + 2 + 50 + 1, "entries and marker");
        for path in index {
            s.store().delete(&path).await.unwrap();
        }

        recorded.take();
        s.manifest_delete(&name, &Reference::Digest(first))
            .await
            .unwrap();
        let scan = recorded.take();
        assert!(scan.iter().any(|op| op == "list repositories/r/_tags"));
        s.manifest_delete(&name, &Reference::Digest(second))
            .await
            .unwrap();
        let indexed = recorded.take();
        assert_eq!(
            touching_other_tags(&indexed, &names("second", 2)),
            Vec::<String>::new()
        );
        let (left, _) = s.tags_list(&name, &Pagination::default()).await.unwrap();
        assert_eq!(left.len(), 50);
        assert!(left.iter().all(|t| t.as_str().starts_with("other")));
    }

    #[tokio::test]
    async fn a_tag_moved_after_indexing_is_kept() {
        let (s, _) = recorded_storage();
        let name: RepositoryName = "r".parse().unwrap();
        let old = push(&s, &name, "old", &["t".to_owned()]).await;
        let new = push(&s, &name, "new", &["t".to_owned()]).await;
        // `t` has a (now stale) entry under `old`: deleting `old` keeps it.
        s.manifest_delete(&name, &Reference::Digest(old))
            .await
            .unwrap();
        assert_eq!(
            s.read_tag(&name, &"t".parse().unwrap()).await.unwrap(),
            Some(new)
        );
    }

    /// Index entries record their push time; entries written before
    /// times were recorded (the digest alone) fall back to the entry's
    /// date in the store.
    #[tokio::test]
    async fn push_times_recorded_and_read_back() {
        let s = Storage::open("memory://").await.unwrap();
        let name: RepositoryName = "r".parse().unwrap();
        let before = SystemTime::now() - Duration::from_millis(5);
        let d = push(&s, &name, "a", &["t".into()]).await;
        let tag: Tag = "t".parse().unwrap();
        let pushed = s.tag_pushed_at(&name, &tag, &d).await.unwrap().unwrap();
        assert!(
            pushed >= before && pushed <= SystemTime::now(),
            "{pushed:?}"
        );
        // The format of older stores: the digest only.
        let entry = layout::tag_index_entry(&name, &d, &tag);
        s.write_small(&entry, d.to_string()).await.unwrap();
        let dated = s.tag_pushed_at(&name, &tag, &d).await.unwrap().unwrap();
        assert!(dated >= pushed && dated <= SystemTime::now(), "{dated:?}");
        // Unknown tag: none.
        let other: Tag = "u".parse().unwrap();
        assert_eq!(s.tag_pushed_at(&name, &other, &d).await.unwrap(), None);
    }
}
