//! Retention within a collection (see [`crate::retention`] for the
//! policy): tags dropped while the run marks, and the manifests a
//! repository keeps.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use futures::FutureExt;
use oci_types::{Digest, RepositoryName, Tag};

use super::state::CONCURRENCY;
use crate::concurrent::concurrently;
use crate::error::Result;
use crate::{RetentionRule, Storage, layout};

/// What a linked manifest's bytes say, for marking.
#[derive(Debug, Clone, Default)]
pub(super) struct Parsed {
    /// Its config, layers and child manifests.
    pub(super) references: Vec<Digest>,
    /// Its child manifests (an index's).
    pub(super) children: Vec<Digest>,
    /// The manifest it refers to as `subject`.
    pub(super) subject: Option<Digest>,
}

impl Storage {
    /// The rule `name` follows, if any.
    pub(crate) fn retention_rule(&self, name: &RepositoryName) -> Option<&RetentionRule> {
        self.options().retention.iter().find(|r| r.covers(name))
    }

    /// Applies the tag rules of retention to every repository a rule
    /// covers: removes the tags it drops (a dry run only lists them).
    /// Returns the tags dropped.
    pub(super) async fn drop_tags(&self, dry_run: bool) -> Result<Vec<(RepositoryName, Tag)>> {
        let mut dropped = Vec::new();
        if self.options().retention.is_empty() {
            return Ok(dropped);
        }
        let now = SystemTime::now();
        for name in self.all_repositories().await? {
            let Some(rule) = self.retention_rule(&name) else {
                continue;
            };
            let tags = self.all_tags(&name).await?;
            let name_ref = &name;
            let dated = concurrently(
                CONCURRENCY,
                tags.into_iter().map(|tag| {
                    async move {
                        let Some(digest) = self.read_tag(name_ref, &tag).await? else {
                            return Ok(None);
                        };
                        let pushed = self
                            .tag_pushed_at(name_ref, &tag, &digest)
                            .await?
                            .unwrap_or(SystemTime::UNIX_EPOCH);
                        Ok(Some((tag, digest, pushed)))
                    }
                    .boxed()
                }),
            )
            .await?;
            let mut dated: Vec<(Tag, Digest, SystemTime)> = dated.into_iter().flatten().collect();
            dated.sort_by(|a, b| a.0.cmp(&b.0));
            let times: Vec<(Tag, SystemTime)> =
                dated.iter().map(|(t, _, p)| (t.clone(), *p)).collect();
            let kept = rule.kept(&times, now, |tag| self.is_immutable(&name, tag));
            for ((tag, digest, pushed), keep) in dated.into_iter().zip(kept) {
                if keep {
                    continue;
                }
                if dry_run
                    || self
                        .remove_tag_if_unchanged(&name, &tag, &digest, pushed)
                        .await?
                {
                    tracing::info!(repository = %name, %tag, %digest, dry_run, "retention: tag dropped");
                    dropped.push((name.clone(), tag));
                }
            }
        }
        Ok(dropped)
    }

    /// Removes `tag` if it still names `digest` and was not pushed again
    /// since `pushed`. Returns whether it did.
    async fn remove_tag_if_unchanged(
        &self,
        name: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
        pushed: SystemTime,
    ) -> Result<bool> {
        let now = self.tag_pushed_at(name, tag, digest).await?;
        if now.is_some_and(|now| now > pushed) {
            return Ok(false);
        }
        self.remove_small_if(&layout::tag(name, tag), digest.to_string().as_bytes())
            .await
    }

    /// The manifests of `name` a `delete_untagged` rule keeps, of `links`
    /// (digest and link date): those tags name (but for `untagged`, tags a
    /// dry run would drop), those younger than `cutoff`, and, recursively,
    /// the children and referrers of kept ones.
    pub(super) async fn kept_manifests(
        &self,
        name: &RepositoryName,
        links: &[(Digest, SystemTime)],
        parsed: &HashMap<Digest, Parsed>,
        cutoff: SystemTime,
        untagged: &HashSet<(RepositoryName, Tag)>,
    ) -> Result<HashSet<Digest>> {
        let tags: Vec<Tag> = self
            .all_tags(name)
            .await?
            .into_iter()
            .filter(|t| !untagged.contains(&(name.clone(), t.clone())))
            .collect();
        let tagged = concurrently(
            CONCURRENCY,
            tags.iter()
                .map(|tag| async move { self.read_tag(name, tag).await }.boxed()),
        )
        .await?;
        let mut kept: HashSet<Digest> = tagged.into_iter().flatten().collect();
        kept.extend(
            links
                .iter()
                .filter(|(_, date)| *date > cutoff)
                .map(|(d, _)| d.clone()),
        );
        let held: HashSet<&Digest> = links.iter().map(|(d, _)| d).collect();
        kept.retain(|d| held.contains(d));
        loop {
            let mut more = Vec::new();
            for (digest, _) in links {
                let Some(p) = parsed.get(digest) else {
                    continue;
                };
                if kept.contains(digest) {
                    more.extend(p.children.iter().filter(|c| !kept.contains(*c)).cloned());
                } else if p.subject.as_ref().is_some_and(|s| kept.contains(s)) {
                    more.push(digest.clone());
                }
            }
            more.retain(|d| held.contains(d));
            if more.is_empty() {
                return Ok(kept);
            }
            kept.extend(more);
        }
    }

    /// Removes a manifest retention dropped, as a delete by digest does:
    /// its tags (pushed since the run judged it), its referrers entry, its
    /// link.
    pub(super) async fn drop_manifest(&self, name: &RepositoryName, digest: &Digest) -> Result<()> {
        let Some(meta) = self.manifest_meta(name, digest).await? else {
            return Ok(());
        };
        self.untag_digest(name, digest).await?;
        if let Some(subject) = &meta.subject {
            self.remove_referrer(name, subject, digest).await?;
        }
        self.delete_small(&layout::manifest_link(name, digest))
            .await
    }
}
