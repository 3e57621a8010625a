//! Immutable tags (`[[immutable]]`): tags that, once pushed, are never
//! moved to another manifest or deleted.
//!
//! - A manifest PUT by such a tag is accepted when the tag does not exist
//!   yet (then it is written with a conditional create, so of two first
//!   pushes racing with different manifests exactly one wins) or already
//!   names the same manifest (re-pushing is idempotent); otherwise it is
//!   refused before anything is written.
//! - Deleting the tag, or the manifest it names (which would untag it), is
//!   refused.
//!
//! Refusals are [`StorageError::ImmutableTag`] (HTTP: `DENIED`). Tags of a
//! repository that no rule covers behave as before.

use oci_types::{Digest, RepositoryName, RepositoryPattern, Tag, TagPattern};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::{Storage, layout};

/// One `[[immutable]]` rule: these tags of these repositories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutableRule {
    /// Repository patterns (as in the access policy).
    pub repositories: Vec<RepositoryPattern>,
    /// Tag patterns (`v*`, `latest`).
    pub tags: Vec<TagPattern>,
}

impl ImmutableRule {
    /// True if the rule covers `tag` in `name`.
    pub fn covers(&self, name: &RepositoryName, tag: &Tag) -> bool {
        self.repositories.iter().any(|r| r.matches(name))
            && self.tags.iter().any(|t| t.matches(tag))
    }
}

impl Storage {
    /// True if a rule makes `tag` of `name` immutable.
    pub fn is_immutable(&self, name: &RepositoryName, tag: &Tag) -> bool {
        self.options().immutable.iter().any(|r| r.covers(name, tag))
    }

    /// Refuses a push of `digest` under an immutable `tag` that already
    /// names another manifest.
    pub(crate) async fn check_immutable_push(
        &self,
        name: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<()> {
        if !self.is_immutable(name, tag) {
            return Ok(());
        }
        match self.read_tag(name, tag).await? {
            Some(current) if &current != digest => Err(immutable(name, tag, &current)),
            _ => Ok(()),
        }
    }

    /// Writes an immutable tag: created if absent (conditionally: of racing
    /// first pushes one wins), else it must already name `digest`.
    pub(crate) async fn write_immutable_tag(
        &self,
        name: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<()> {
        self.index_tag(name, tag, digest).await?;
        if self
            .create_small(&layout::tag(name, tag), digest.to_string())
            .await?
        {
            return Ok(());
        }
        match self.read_tag(name, tag).await? {
            Some(current) if &current == digest => Ok(()),
            Some(current) => Err(immutable(name, tag, &current)),
            // A tombstone (a tag deleted before the rule was configured):
            // the tag is free; write it.
            None => self.write_tag(name, tag, digest).await,
        }
    }

    /// Refuses to delete an immutable tag.
    pub(crate) fn check_immutable_delete(&self, name: &RepositoryName, tag: &Tag) -> Result<()> {
        if self.is_immutable(name, tag) {
            return Err(StorageError::ImmutableTag {
                repository: name.clone(),
                tag: tag.clone(),
                reason: "it may not be deleted".into(),
            });
        }
        Ok(())
    }
}

fn immutable(name: &RepositoryName, tag: &Tag, current: &Digest) -> StorageError {
    StorageError::ImmutableTag {
        repository: name.clone(),
        tag: tag.clone(),
        reason: format!("it names {current} and may not be moved"),
    }
}
