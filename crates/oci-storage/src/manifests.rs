//! Manifests: put (with reference checks), get/head by tag or digest, delete.

use bytes::Bytes;
use futures::FutureExt;
use oci_types::{Digest, ParsedManifest, Reference, RepositoryName};
use serde::{Deserialize, Serialize};

use crate::concurrent::concurrently;
use crate::error::{Result, StorageError};
use crate::{Storage, layout};

/// Reference checks in flight for one manifest push.
const CHECK_CONCURRENCY: usize = 16;

/// What a repository records about a manifest it holds (the link object).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestLink {
    pub(crate) media_type: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Digest>,
    /// A cached copy of another registry's manifest
    /// ([`Storage::manifest_cache`]): its references are fetched when
    /// asked for, so missing ones are expected (`fsck` does not report
    /// them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) fetched: bool,
}

/// Whether a stored manifest's references must already be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum References {
    /// A push: every blob and child must be in the repository, and the
    /// collection protocol guards them (see the `gc` module docs).
    Required,
    /// A cached copy of another registry's manifest: its references are
    /// fetched from there when asked for, so none need be here yet, and
    /// one a collection removes is fetched again.
    Fetched,
}

/// A stored manifest's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestMeta {
    /// Its digest.
    pub digest: Digest,
    /// The media type it was pushed with and is served with.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The manifest it refers to, if it has a `subject`.
    pub subject: Option<Digest>,
}

/// A manifest and its exact bytes.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Metadata.
    pub meta: ManifestMeta,
    /// The bytes as pushed.
    pub body: Bytes,
}

impl Storage {
    /// Stores a manifest under `reference` (a tag, or the digest it must
    /// have).
    ///
    /// Distribution-spec "Pushing Manifests": every blob and child manifest
    /// it references must already be in `name` (else
    /// [`StorageError::ManifestBlobUnknown`]); its `subject` need not exist.
    /// Writes data, then the link, then the referrers entry, then the tag.
    pub async fn manifest_put(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<ManifestMeta> {
        self.store_manifest(name, reference, body, content_type, References::Required)
            .await
    }

    /// [`Storage::manifest_put`], with `references` saying whether what
    /// the manifest references must be in `name` already.
    pub(crate) async fn store_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        body: Bytes,
        content_type: Option<&str>,
        references: References,
    ) -> Result<ManifestMeta> {
        let parsed = ParsedManifest::parse(&body, content_type)?;
        let digest = match reference {
            Reference::Digest(d) => {
                let actual = Digest::of_with(d.algorithm(), &body);
                if &actual != d {
                    return Err(StorageError::DigestMismatch {
                        expected: d.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => parsed.digest.clone(),
        };
        if let Reference::Tag(tag) = reference {
            self.check_immutable_push(name, tag, &digest).await?;
        }
        // Read before the references are checked, for the collector (see
        // the `gc` module docs: step (a)).
        let gc = match references {
            References::Required => Some(self.gc_state().await?),
            References::Fetched => None,
        };
        // Whether the push creates the link (for the collector's guard),
        // read alongside the reference checks.
        let link_path = layout::manifest_link(name, &digest);
        let (existed, checked) = tokio::join!(self.exists(&link_path), async {
            match references {
                References::Required => self.check_references(name, &parsed).await,
                References::Fetched => Ok(()),
            }
        });
        let created = !existed?;
        checked?;
        let meta = ManifestMeta {
            digest: digest.clone(),
            media_type: parsed.media_type.clone(),
            size: parsed.size,
            subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
        };
        let link = ManifestLink {
            media_type: meta.media_type.clone(),
            size: meta.size,
            subject: meta.subject.clone(),
            fetched: references == References::Fetched,
        };
        self.write_small(&layout::blob_data(&digest), body).await?;
        let link = serde_json::to_vec(&link).map_err(std::io::Error::other)?;
        self.write_small(&link_path, link).await?;
        if let Some(gc) = &gc {
            let references: Vec<Digest> = parsed
                .required_blobs()
                .chain(parsed.required_manifests())
                .cloned()
                .collect();
            self.guard_references(name, &digest, &references, gc, created)
                .await?;
        }
        if let Some(subject) = &parsed.subject {
            let mut descriptor = parsed.referrer_descriptor();
            descriptor.digest = digest.clone();
            self.add_referrer(name, &subject.digest, &descriptor)
                .await?;
        }
        if let Reference::Tag(tag) = reference {
            if self.is_immutable(name, tag) {
                self.write_immutable_tag(name, tag, &digest).await?;
            } else {
                self.write_tag(name, tag, &digest).await?;
            }
        }
        self.ensure_repository(name).await?;
        Ok(meta)
    }

    /// distribution-spec "Pushing Manifests": every blob and child
    /// manifest must be in `name`; and, for garbage collection, its bytes
    /// must be stored (a link may outlive bytes a collection removed).
    /// Checked concurrently.
    async fn check_references(&self, name: &RepositoryName, parsed: &ParsedManifest) -> Result<()> {
        let blobs = parsed.required_blobs().map(|d| (d, true));
        let children = parsed.required_manifests().map(|d| (d, false));
        let missing = concurrently(
            CHECK_CONCURRENCY,
            blobs.chain(children).map(|(digest, is_blob)| {
                async move {
                    let link = if is_blob {
                        layout::blob_link(name, digest)
                    } else {
                        layout::manifest_link(name, digest)
                    };
                    let present =
                        self.exists(&link).await? && self.blob_data_exists(digest).await?;
                    Ok((!present).then(|| digest.clone()))
                }
                .boxed()
            }),
        )
        .await?;
        match missing.into_iter().flatten().next() {
            Some(digest) => Err(StorageError::ManifestBlobUnknown(digest)),
            None => Ok(()),
        }
    }

    /// Metadata of the manifest `reference` names in `name`.
    pub async fn manifest_head(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestMeta> {
        let digest = self.resolve(name, reference).await?;
        match self.manifest_meta(name, &digest).await? {
            Some(meta) => Ok(meta),
            None => Err(self
                .unknown_in(name, StorageError::ManifestUnknown(reference.to_string()))
                .await),
        }
    }

    /// The manifest `reference` names in `name`, with its bytes.
    pub async fn manifest_get(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        let meta = self.manifest_head(name, reference).await?;
        let body = self
            .read_content(&layout::blob_data(&meta.digest))
            .await?
            .ok_or_else(|| StorageError::ManifestUnknown(reference.to_string()))?;
        Ok(StoredManifest { meta, body })
    }

    /// Deletes a tag (`reference` is a tag) or a manifest (`reference` is a
    /// digest; its tags and its referrers entry go with it: distribution-spec
    /// "Deleting Manifests"). Deleting by digest reads only that digest's
    /// reverse tag index, and never removes a tag that points elsewhere at
    /// the moment of removal (see the `tags` module).
    pub async fn manifest_delete(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<()> {
        let unknown = || StorageError::ManifestUnknown(reference.to_string());
        match reference {
            Reference::Tag(tag) => {
                if self.read_tag(name, tag).await?.is_none() {
                    return Err(self.unknown_in(name, unknown()).await);
                }
                self.check_immutable_delete(name, tag)?;
                self.delete_small(&layout::tag(name, tag)).await
            }
            Reference::Digest(digest) => {
                let Some(meta) = self.manifest_meta(name, digest).await? else {
                    return Err(self.unknown_in(name, unknown()).await);
                };
                if !self.options().immutable.is_empty() {
                    for tag in self.tags_naming(name, digest).await? {
                        self.check_immutable_delete(name, &tag)?;
                    }
                }
                self.untag_digest(name, digest).await?;
                if let Some(subject) = &meta.subject {
                    self.remove_referrer(name, subject, digest).await?;
                }
                self.delete_small(&layout::manifest_link(name, digest))
                    .await
            }
        }
    }

    /// The digest a reference stands for in `name`.
    async fn resolve(&self, name: &RepositoryName, reference: &Reference) -> Result<Digest> {
        match reference {
            Reference::Digest(d) => Ok(d.clone()),
            Reference::Tag(tag) => match self.read_tag(name, tag).await? {
                Some(d) => Ok(d),
                None => Err(self
                    .unknown_in(name, StorageError::ManifestUnknown(tag.to_string()))
                    .await),
            },
        }
    }

    /// The metadata of a manifest, if `name` holds it.
    pub(crate) async fn manifest_meta(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<ManifestMeta>> {
        Ok(self
            .manifest_link(name, digest)
            .await?
            .map(|link| ManifestMeta {
                digest: digest.clone(),
                media_type: link.media_type,
                size: link.size,
                subject: link.subject,
            }))
    }

    /// The link record of a manifest, if `name` holds it.
    pub(crate) async fn manifest_link(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<ManifestLink>> {
        let path = layout::manifest_link(name, digest);
        let Some(bytes) = self.read_metadata(&path).await? else {
            return Ok(None);
        };
        let link = serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some(link))
    }

    /// `err`, or [`StorageError::NameUnknown`] when the whole repository is
    /// unknown.
    pub(crate) async fn unknown_in(
        &self,
        name: &RepositoryName,
        err: StorageError,
    ) -> StorageError {
        match self.repository_exists(name).await {
            Ok(false) => StorageError::NameUnknown(name.clone()),
            Ok(true) => err,
            Err(e) => e,
        }
    }
}
