//! Integrity checks (`oci-registry fsck`): what refers to what is missing,
//! and whether stored blobs still hash to their digests.
//!
//! Found, per repository:
//! - manifests whose config, layers or child manifests are gone (broken
//!   images: reported, never "repaired" by deleting the manifest), except
//!   a pull-through cache's copies, whose references are fetched when
//!   asked for;
//! - manifest links whose manifest bytes are gone (dangling);
//! - blob links whose blob bytes are gone (dangling);
//! - tags naming a manifest the repository does not hold, or whose bytes
//!   are gone (dangling).
//!
//! And in `blobs/`: blobs whose bytes no longer hash to their digest
//! (corrupt; all of them, or a sample), and blobs nothing references
//! (orphans, for garbage collection; counted).
//!
//! With `repair`, only what is provably dangling is removed: links and
//! tags that point at nothing can serve no request but an error. Each is
//! checked again right before it goes, so content pushed again since the
//! scan is kept. Corrupt
//! blobs and broken manifests are reported, not removed: deleting them
//! loses the evidence and may not be what the operator wants.

use std::collections::HashSet;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use oci_types::{Digest, DigestHasher, RepositoryName, Tag};

use crate::error::Result;
use crate::upload_area::delete_if_exists;
use crate::usage::Contents;
use crate::{Storage, layout};

/// What `fsck` does.
#[derive(Debug, Clone, PartialEq)]
pub struct FsckOptions {
    /// Fraction of blobs to re-hash, 0.0 to 1.0 (a deterministic choice by
    /// digest, so reruns check the same ones). Default 1.0: all.
    pub sample: f64,
    /// Remove what is provably dangling.
    pub repair: bool,
}

impl Default for FsckOptions {
    fn default() -> Self {
        Self {
            sample: 1.0,
            repair: false,
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A blob whose bytes hash to something else.
    CorruptBlob(Digest),
    /// A manifest of `repository` refers to a blob or manifest whose bytes
    /// are gone.
    MissingReference {
        /// The repository.
        repository: RepositoryName,
        /// The manifest.
        manifest: Digest,
        /// What it refers to.
        missing: Digest,
    },
    /// A manifest link without manifest bytes.
    DanglingManifest(RepositoryName, Digest),
    /// A blob link without blob bytes.
    DanglingBlobLink(RepositoryName, Digest),
    /// A tag naming a manifest the repository does not hold.
    DanglingTag(RepositoryName, Tag),
}

impl Finding {
    /// True for what `repair` removes.
    pub fn is_dangling(&self) -> bool {
        matches!(
            self,
            Self::DanglingManifest(..) | Self::DanglingBlobLink(..) | Self::DanglingTag(..)
        )
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CorruptBlob(d) => write!(f, "corrupt blob {d}: its bytes hash to another digest"),
            Self::MissingReference {
                repository,
                manifest,
                missing,
            } => write!(
                f,
                "{repository}: manifest {manifest} refers to {missing}, which is gone"
            ),
            Self::DanglingManifest(r, d) => {
                write!(f, "{r}: manifest link {d} without the manifest")
            }
            Self::DanglingBlobLink(r, d) => write!(f, "{r}: blob link {d} without the blob"),
            Self::DanglingTag(r, t) => {
                write!(f, "{r}: tag {t} names a manifest the repository lacks")
            }
        }
    }
}

/// What `fsck` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FsckReport {
    /// Stored blobs.
    pub blobs: usize,
    /// Blobs re-hashed.
    pub hashed: usize,
    /// Stored blobs nothing references.
    pub orphans: usize,
    /// Every problem, in the order found.
    pub findings: Vec<Finding>,
    /// Findings removed by `repair`.
    pub repaired: usize,
}

impl Storage {
    /// Checks the store (see the module docs).
    pub async fn fsck(&self, options: &FsckOptions) -> Result<FsckReport> {
        let stored: HashSet<Digest> = self.blob_sizes().await?.into_keys().collect();
        let mut report = FsckReport {
            blobs: stored.len(),
            ..FsckReport::default()
        };
        let mut referenced: HashSet<Digest> = HashSet::new();
        for name in self.all_repositories().await? {
            self.check_repository(&name, &stored, &mut referenced, &mut report)
                .await?;
        }
        report.orphans = stored.difference(&referenced).count();
        let sample = options.sample.clamp(0.0, 1.0);
        for digest in stored.iter().filter(|d| sampled(d, sample)) {
            report.hashed += 1;
            if !self.hashes_to(digest).await? {
                report.findings.push(Finding::CorruptBlob(digest.clone()));
            }
        }
        if options.repair {
            for finding in report.findings.iter().filter(|f| f.is_dangling()) {
                if self.remove_dangling(finding).await? {
                    report.repaired += 1;
                }
            }
        }
        Ok(report)
    }

    async fn check_repository(
        &self,
        name: &RepositoryName,
        stored: &HashSet<Digest>,
        referenced: &mut HashSet<Digest>,
        report: &mut FsckReport,
    ) -> Result<()> {
        for digest in self.links(&layout::blob_links_dir(name), "_layers").await? {
            if !stored.contains(&digest) {
                report
                    .findings
                    .push(Finding::DanglingBlobLink(name.clone(), digest));
            }
        }
        let manifests = self.held_manifests(name).await?;
        // A tag is served only if its manifest is linked and stored.
        let held: HashSet<&Digest> = manifests
            .iter()
            .filter(|(_, c)| !matches!(c, Contents::Missing))
            .map(|(d, _)| d)
            .collect();
        for (digest, contents) in &manifests {
            referenced.insert(digest.clone());
            let refs = match contents {
                Contents::Missing => {
                    report
                        .findings
                        .push(Finding::DanglingManifest(name.clone(), digest.clone()));
                    continue;
                }
                Contents::Unreadable => continue,
                Contents::References { refs, fetched } => {
                    referenced.extend(refs.iter().cloned());
                    if *fetched {
                        continue;
                    }
                    refs
                }
            };
            for missing in refs.iter().filter(|r| !stored.contains(*r)) {
                report.findings.push(Finding::MissingReference {
                    repository: name.clone(),
                    manifest: digest.clone(),
                    missing: missing.clone(),
                });
            }
        }
        for tag in self.all_tags(name).await? {
            if let Some(digest) = self.read_tag(name, &tag).await?
                && !held.contains(&digest)
            {
                report
                    .findings
                    .push(Finding::DanglingTag(name.clone(), tag));
            }
        }
        Ok(())
    }

    /// True if the stored bytes of `digest` hash to it (streamed).
    async fn hashes_to(&self, digest: &Digest) -> Result<bool> {
        let mut stream = match self.store().get(&layout::blob_data(digest)).await {
            Ok(got) => got.into_stream(),
            Err(e) if crate::error::is_not_found(&e) => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        let mut hasher = DigestHasher::new(digest.algorithm());
        while let Some(chunk) = stream.next().await {
            let chunk: bytes::Bytes = chunk?;
            hasher.update(&chunk);
        }
        Ok(&hasher.finalize() == digest)
    }

    /// Removes a dangling link or tag if it is still dangling now (a
    /// client may have pushed the missing content again since the scan);
    /// returns whether it did.
    async fn remove_dangling(&self, finding: &Finding) -> Result<bool> {
        let (path, still) = match finding {
            Finding::DanglingBlobLink(name, digest) => (
                layout::blob_link(name, digest),
                !self.blob_data_exists(digest).await?,
            ),
            Finding::DanglingManifest(name, digest) => (
                layout::manifest_link(name, digest),
                !self.blob_data_exists(digest).await?,
            ),
            Finding::DanglingTag(name, tag) => {
                let held = match self.read_tag(name, tag).await? {
                    Some(digest) => {
                        self.exists(&layout::manifest_link(name, &digest)).await?
                            && self.blob_data_exists(&digest).await?
                    }
                    None => true,
                };
                (layout::tag(name, tag), !held)
            }
            _ => return Ok(false),
        };
        if still {
            delete_if_exists(self.store(), &path).await?;
        }
        Ok(still)
    }
}

/// Whether `digest` is in a `fraction` sample: its first two bytes, as a
/// fraction of 65,536, fall below it (digests are uniform).
fn sampled(digest: &Digest, fraction: f64) -> bool {
    if fraction >= 1.0 {
        return true;
    }
    let hex = digest.hex();
    let head = u16::from_str_radix(&hex[..4.min(hex.len())], 16).unwrap_or(0);
    f64::from(head) / 65_536.0 < fraction
}
