//! The pull-through cache: proxied repositories served from storage, and
//! from upstream on a miss, with what upstream sent stored as ordinary
//! repository content.

use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use oci_storage::{ManifestMeta, Storage, StorageError};
use oci_types::{ByteRange, Digest, Reference, RepositoryName, Tag};

use crate::error::{ProxyError, Result};
use crate::fetch::{ByteStream, Fetches, Job};
use crate::route::{Mirrors, Routed};
use crate::telemetry::{self, CacheResult};

/// The cache over every `[[proxy]]` upstream. Cheap to clone; clones share
/// the fetches in progress.
#[derive(Debug, Clone)]
pub struct PullThrough {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    storage: Storage,
    mirrors: Mirrors,
    fetches: Fetches,
}

/// A manifest served through the cache.
#[derive(Debug, Clone)]
pub struct CachedManifest {
    /// Its metadata.
    pub meta: ManifestMeta,
    /// Its bytes (`None` for a HEAD).
    pub body: Option<Bytes>,
    /// How it was served.
    pub result: CacheResult,
}

/// A blob being fetched from upstream, as a request gets it.
pub struct FetchedBlob {
    /// The blob's length, when known (upstream may not say).
    pub size: Option<u64>,
    /// The part asked for by a `Range` (resolved against `size`).
    pub range: Option<Range<u64>>,
    /// The bytes (`None` for a HEAD): the whole blob as it arrives, or the
    /// range once the whole is verified. Ends with an error, never the
    /// last byte, when upstream's bytes are wrong.
    pub stream: Option<ByteStream>,
}

impl std::fmt::Debug for FetchedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedBlob")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl PullThrough {
    /// The cache of `mirrors`, stored in `storage`.
    pub fn new(storage: Storage, mirrors: Mirrors) -> Self {
        Self {
            inner: Arc::new(Inner {
                storage,
                mirrors,
                fetches: Fetches::default(),
            }),
        }
    }

    /// The upstream serving `name`, if it is proxied.
    pub fn route(&self, name: &RepositoryName) -> Option<Routed> {
        self.inner.mirrors.route(name)
    }

    /// The manifest `reference` names, from the cache or upstream.
    ///
    /// By digest: immutable, so served from the cache when held, else
    /// fetched (verified against the digest) and cached. By tag: served
    /// from the cache while the tag was confirmed less than `tag_ttl` ago;
    /// else upstream is asked with a HEAD (not counted against Docker
    /// Hub's pull limit) and the manifest fetched only when its digest
    /// changed. When upstream is unreachable, failing or throttling, a
    /// cached copy is served (and the log says so).
    pub async fn manifest(
        &self,
        routed: &Routed,
        reference: &Reference,
        head: bool,
    ) -> Result<CachedManifest> {
        let served = match reference {
            Reference::Digest(digest) => match self.local(routed, digest, head).await? {
                Some((meta, body)) => (meta, body, CacheResult::Hit),
                None => {
                    let (meta, body) = self.fetch_manifest(routed, reference).await?;
                    (meta, body, CacheResult::Miss)
                }
            },
            Reference::Tag(tag) => self.tagged(routed, tag, head).await?,
        };
        let (meta, body, result) = served;
        telemetry::cache(false, result);
        Ok(CachedManifest {
            meta,
            body: if head { None } else { Some(body) }.flatten(),
            result,
        })
    }

    async fn tagged(
        &self,
        routed: &Routed,
        tag: &Tag,
        head: bool,
    ) -> Result<(ManifestMeta, Option<Bytes>, CacheResult)> {
        let storage = &self.inner.storage;
        let record = storage.tag_record(&routed.local, tag).await?;
        let cached = match &record {
            Some(r) => self
                .local(routed, &r.digest, head)
                .await?
                .map(|m| (r.clone(), m)),
            None => None,
        };
        let Some((record, (meta, body))) = cached else {
            let (meta, body) = self
                .fetch_manifest(routed, &Reference::Tag(tag.clone()))
                .await?;
            return Ok((meta, body, CacheResult::Miss));
        };
        let age = SystemTime::now()
            .duration_since(record.recorded_at)
            .unwrap_or_default();
        if age < routed.mirror.tag_ttl() {
            return Ok((meta, body, CacheResult::Hit));
        }
        let reference = Reference::Tag(tag.clone());
        match routed
            .mirror
            .upstream()
            .manifest(&routed.remote, &reference, false)
            .await
        {
            Ok(now) if now.digest == record.digest => {
                storage
                    .tag_touch(&routed.local, tag, &record.digest)
                    .await?;
                Ok((meta, body, CacheResult::Revalidated))
            }
            Ok(now) => {
                // Moved upstream: fetch the new manifest by its digest
                // (verified), and point the tag at it.
                let by_digest = Reference::Digest(now.digest);
                let (meta, body) = self
                    .fetch_manifest_as(routed, &by_digest, &reference)
                    .await?;
                Ok((meta, body, CacheResult::Miss))
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    error = %e,
                    repository = %routed.local,
                    tag = %tag,
                    "upstream unavailable: serving the cached tag"
                );
                Ok((meta, body, CacheResult::Stale))
            }
            // A HEAD upstream cannot answer usefully (no digest): a GET.
            Err(e @ ProxyError::BadAnswer(_)) => {
                tracing::debug!(error = %e, "upstream HEAD unusable: fetching the tag");
                let (meta, body) = self.fetch_manifest(routed, &reference).await?;
                Ok((meta, body, CacheResult::Miss))
            }
            Err(e) => Err(e),
        }
    }

    /// The manifest `digest` if `routed.local` holds it (its bytes unless
    /// `head`).
    async fn local(
        &self,
        routed: &Routed,
        digest: &Digest,
        head: bool,
    ) -> Result<Option<(ManifestMeta, Option<Bytes>)>> {
        let storage = &self.inner.storage;
        let reference = Reference::Digest(digest.clone());
        let found = if head {
            storage
                .manifest_head(&routed.local, &reference)
                .await
                .map(|meta| (meta, None))
        } else {
            storage
                .manifest_get(&routed.local, &reference)
                .await
                .map(|m| (m.meta, Some(m.body)))
        };
        match found {
            Ok(found) => Ok(Some(found)),
            Err(StorageError::ManifestUnknown(_) | StorageError::NameUnknown(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn fetch_manifest(
        &self,
        routed: &Routed,
        reference: &Reference,
    ) -> Result<(ManifestMeta, Option<Bytes>)> {
        self.fetch_manifest_as(routed, reference, reference).await
    }

    /// Fetches the manifest `asked` names upstream and stores it under
    /// `stored_as` (the tag it was asked by, or its digest).
    async fn fetch_manifest_as(
        &self,
        routed: &Routed,
        asked: &Reference,
        stored_as: &Reference,
    ) -> Result<(ManifestMeta, Option<Bytes>)> {
        let fetched = routed
            .mirror
            .upstream()
            .manifest(&routed.remote, asked, true)
            .await?;
        let body = fetched.body.unwrap_or_default();
        let content_type = (!fetched.media_type.is_empty()).then_some(fetched.media_type.as_str());
        let meta = self
            .inner
            .storage
            .manifest_cache(&routed.local, stored_as, body.clone(), content_type)
            .await?;
        Ok((meta, Some(body)))
    }

    /// A blob `routed.local` does not hold: linked from bytes stored for
    /// another repository (`None`: serve it from storage now), or fetched
    /// from upstream, sharing a fetch in progress. A HEAD asks upstream
    /// for the length and fetches nothing.
    pub async fn blob(
        &self,
        routed: &Routed,
        digest: &Digest,
        range: Option<ByteRange>,
        head: bool,
    ) -> Result<Option<FetchedBlob>> {
        let fetches = &self.inner.fetches;
        let fetch = match fetches.get(digest) {
            Some(fetch) => fetch,
            None => {
                if self.inner.storage.blob_adopt(&routed.local, digest).await? {
                    telemetry::cache(true, CacheResult::Hit);
                    return Ok(None);
                }
                if head {
                    let size = routed
                        .mirror
                        .upstream()
                        .blob_head(&routed.remote, digest)
                        .await?;
                    telemetry::cache(true, CacheResult::Miss);
                    return Ok(Some(FetchedBlob {
                        size,
                        range: None,
                        stream: None,
                    }));
                }
                let job = Job {
                    upstream: routed.mirror.upstream().clone(),
                    remote: routed.remote.clone(),
                    local: routed.local.clone(),
                    storage: self.inner.storage.clone(),
                };
                fetches.start(digest, job)?
            }
        };
        telemetry::cache(true, CacheResult::Miss);
        let size = fetch.size().await?;
        let Some(range) = range else {
            return Ok(Some(FetchedBlob {
                size,
                range: None,
                stream: (!head).then(|| Arc::clone(&fetch).stream()),
            }));
        };
        // A range is served once the whole is verified: its bytes are
        // never ones that might turn out wrong.
        let size = fetch.verified().await?;
        let range = range
            .resolve(size)
            .ok_or(StorageError::RangeNotSatisfiable { size })?;
        Ok(Some(FetchedBlob {
            size: Some(size),
            range: Some(range.clone()),
            stream: (!head).then(|| fetch.stream_range(range)),
        }))
    }

    /// A page of the repository's tags as upstream lists them (`n` at most
    /// after `last`) and whether more follow; `None` when upstream cannot
    /// answer (down, throttling, or without the repository), so the cached
    /// tags are listed instead.
    pub async fn tags(
        &self,
        routed: &Routed,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Option<(Vec<String>, bool)>> {
        match routed.mirror.upstream().tags(&routed.remote, n, last).await {
            Ok(page) => Ok(Some(page)),
            Err(e) if e.is_transient() || matches!(e, ProxyError::NotFound(_)) => {
                tracing::debug!(error = %e, "upstream tags unavailable: listing the cached ones");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The referrers index of `digest` upstream, and whether upstream
    /// applied the `artifact_type` filter; `None` when upstream cannot
    /// answer (down, or without the referrers API), so the cached
    /// referrers are listed instead.
    pub async fn referrers(
        &self,
        routed: &Routed,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<(Bytes, bool)>> {
        match routed
            .mirror
            .upstream()
            .referrers(&routed.remote, digest, artifact_type)
            .await
        {
            Ok((body, filtered)) => {
                let index = serde_json::from_slice::<serde_json::Value>(&body).ok();
                if index.is_some_and(|i| i.get("manifests").is_some_and(|m| m.is_array())) {
                    Ok(Some((body, filtered)))
                } else {
                    tracing::warn!(repository = %routed.remote, manifest = %digest, "upstream answered referrers with something that is not an index: listing the cached ones");
                    Ok(None)
                }
            }
            Err(e) if e.is_transient() || matches!(e, ProxyError::NotFound(_)) => {
                tracing::debug!(error = %e, "upstream referrers unavailable: listing the cached ones");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
