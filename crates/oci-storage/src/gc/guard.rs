//! The push side of the collection protocol (steps (a) to (d) and what
//! follows, in the [`crate::gc`] module docs).

use futures::FutureExt;
use oci_types::{Digest, RepositoryName};

use super::state::{CONCURRENCY, GcState, Phase};
use crate::concurrent::concurrently;
use crate::error::{Result, StorageError};
use crate::{Storage, layout};

impl Storage {
    /// After a manifest push wrote the manifest `digest` and its link in
    /// `name` (step (c)), given the state read before its references were
    /// checked (step (a)): makes sure no collection deletes what it
    /// references, or refuses the push and removes the link. `created`:
    /// the push wrote a link that did not exist before.
    pub(crate) async fn guard_references(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        references: &[Digest],
        before: &GcState,
        created: bool,
    ) -> Result<()> {
        let checked = self.check_with_collector(digest, references, before).await;
        let lost = match checked {
            Ok(lost) => lost,
            Err(e) => {
                // Unsure whether a collection spares what it references:
                // leave no new link behind for a push the client sees fail
                // (a manifest the repository held before stays).
                if created {
                    let link = layout::manifest_link(name, digest);
                    if let Err(undo) = self.delete_small(&link).await {
                        tracing::warn!(error = %undo, manifest = %digest, "removing the link of a failed push");
                    }
                }
                return Err(e);
            }
        };
        match lost {
            None => Ok(()),
            Some(missing) => {
                tracing::info!(
                    repository = %name,
                    manifest = %digest,
                    blob = %missing,
                    "manifest push refused: a blob it references is being garbage collected"
                );
                if created {
                    self.delete_small(&layout::manifest_link(name, digest))
                        .await?;
                }
                Err(StorageError::ManifestBlobUnknown(missing))
            }
        }
    }

    /// The first of the manifest's references (or itself) that a
    /// collection may have deleted or may delete, if any (`None` also in
    /// the common case: no collection ran since `before`).
    async fn check_with_collector(
        &self,
        digest: &Digest,
        references: &[Digest],
        before: &GcState,
    ) -> Result<Option<Digest>> {
        let after = self.gc_state().await?;
        if before.is_idle() && after.is_idle() && after.generation == before.generation {
            return Ok(None);
        }
        let mut needed = references.to_vec();
        needed.push(digest.clone());
        match self.at_risk(&after, &needed).await? {
            Some(lost) => Ok(Some(lost)),
            None => self.first_missing(&needed).await,
        }
    }

    /// The first of `needed` the run `state` names may delete, if any.
    async fn at_risk(&self, state: &GcState, needed: &[Digest]) -> Result<Option<Digest>> {
        match state.phase {
            None => Ok(None),
            Some(Phase::Sweeping) => self.first_candidate(state.generation, needed).await,
            Some(Phase::Marking) => {
                self.journal(state.generation, needed).await?;
                let now = self.gc_state().await?;
                if now.generation == state.generation && now.phase == Some(Phase::Sweeping) {
                    self.first_candidate(state.generation, needed).await
                } else {
                    // Still marking: the run reads the journal after it
                    // stops marking. Over: a later run lists the link.
                    Ok(None)
                }
            }
        }
    }

    /// The first of `digests` whose bytes are not stored, if any.
    async fn first_missing(&self, digests: &[Digest]) -> Result<Option<Digest>> {
        let found = concurrently(
            CONCURRENCY,
            digests.iter().map(|d| {
                async move { Ok((!self.blob_data_exists(d).await?).then(|| d.clone())) }.boxed()
            }),
        )
        .await?;
        Ok(found.into_iter().flatten().next())
    }
}
