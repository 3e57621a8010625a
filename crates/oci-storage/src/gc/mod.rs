//! Garbage collection: removes the blobs nothing references, online, while
//! any number of replicas push.
//!
//! # What a collection does
//!
//! 1. Takes the collector lock `_gc/lock` without waiting long (an `flock`
//!    on the filesystem, a lease object on S3, as upload sessions use): at
//!    most one collection runs at a time across replicas and processes.
//! 2. Starts run `g` = last generation + 1: writes `_gc/state` =
//!    `{generation: g, phase: marking}`.
//! 3. Expires abandoned upload sessions (with their S3 multipart uploads
//!    and tails), as the upload sweeper does.
//! 4. Lists `blobs/`: every stored blob, its size and date.
//! 5. Marks: every manifest every repository links, and everything those
//!    manifests reference (config, layers, index children). Referrers are
//!    linked manifests too, so they and their blobs are kept; a
//!    manifest's `subject` keeps nothing.
//! 6. Candidates: stored blobs not marked and older than the grace period
//!    (by the store's date of the object).
//! 7. Publishes the candidates under `_gc/runs/g/candidates/`, then writes
//!    `{generation: g, phase: sweeping}`: the journal is closed.
//! 8. Reads the journal `_gc/runs/g/journal/` and drops every journaled
//!    digest from the candidates.
//! 9. Sweeps each remaining candidate: first every repository's link to
//!    it, then its bytes; then links to blobs whose bytes are missing
//!    (each re-checked just before). Stops at once if the lock was lost.
//! 10. Writes `{generation: g, phase: none, finished_at}` and removes the
//!     run records.
//!
//! # The race that matters
//!
//! A client HEADs an old blob nothing references (200), skips its upload,
//! and pushes a manifest that references it while a collection runs
//! elsewhere. The collection marked before the manifest existed, so the
//! blob is a candidate. A manifest push (`manifest_put`) therefore does, in
//! this order:
//!
//! - (a) read `_gc/state` as `s0`;
//! - (b) check that every blob and child manifest it references is linked
//!   in the repository *and that its bytes exist*;
//! - (c) write the manifest's bytes and its link;
//! - (d) read `_gc/state` as `s1`.
//!
//! If `s0` and `s1` are equal and idle, no run started between (a) and (d)
//! (runs change the generation when they start), none was running at (a),
//! so nothing was deleted after (b) found the bytes; and every run that
//! starts after (d) lists the link written at (c) and marks the references.
//! The push is done: the common case costs two small reads.
//!
//! Otherwise the push considers the run `s1` names (`refs` = its
//! references and its own digest):
//!
//! - **marking**: it writes a journal entry with `refs`, then reads the
//!   state again. Still marking: the run writes `sweeping` after that
//!   read, then lists the journal, so it sees the entry and spares `refs`
//!   (store writes and lists are linearizable: S3 has strong read-after-
//!   write and list-after-write consistency; a local filesystem too).
//!   Sweeping by now: as below. Idle or a later run: the run is over,
//!   and a later one lists the link.
//! - **sweeping**: the candidates were published before `sweeping` was
//!   written, so the push reads them. If one of `refs` is a candidate the
//!   push is refused with `MANIFEST_BLOB_UNKNOWN` naming it, and its link
//!   is removed: the client uploads the blob again and pushes anew. A run
//!   deletes nothing but its candidates, so otherwise `refs` are safe from
//!   it.
//! - In every case it then checks that the bytes of every digest in `refs`
//!   still exist, for runs that finished between (a) and (d); if one is
//!   gone, the push is refused the same way.
//!
//! So no interleaving lets a push succeed while a blob it references is
//! deleted: every run either lists the push's link while marking, sees its
//! journal entry, or has published candidates the push checks; and runs
//! already over are caught by the final existence check.
//!
//! Blob uploads and mounts need nothing of this: a blob that only a link
//! holds is garbage once older than the grace period, and a manifest
//! referencing it goes through the checks above. The grace period keeps
//! fresh uploads for the manifest that follows them.
//!
//! # Crashes, and the lock
//!
//! Every step removes links before bytes and writes its records before it
//! acts on them, so a collection killed at any moment leaves a consistent
//! store: at worst blobs not yet swept, or the state still naming the dead
//! run. Pushes that need one of a dead run's candidates are refused until
//! the next run (the online schedule starts one within a minute of finding
//! a dead run's state with the lock free), which takes over with the next
//! generation and finishes the work. On S3 a dead collector's lease is
//! taken over after the lease TTL; a collector that lost its lease stops
//! before its next deletion.

mod guard;
mod schedule;
mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::{FutureExt, TryStreamExt};
use oci_types::{Digest, ParsedManifest, RepositoryName};
use tokio::time::Instant;

use crate::concurrent::concurrently;
use crate::error::{Result, StorageError};
use crate::upload_area::{SessionLock, delete_if_exists};
use crate::{BlobMeta, Storage, layout, telemetry};

pub use schedule::{Collector, GcSchedule};
pub use state::{GcState, Phase};

/// What a collection does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcOptions {
    /// Blobs younger than this are kept even if nothing references them
    /// (a push uploads its blobs before its manifest). Default 1 h.
    pub grace: Duration,
    /// Only report what would be removed: nothing is written, and no lock
    /// is taken.
    pub dry_run: bool,
    /// How long to wait for another collection to finish (on S3, to take
    /// over the lease of a dead collector, wait at least the lease TTL).
    /// Default zero: give up at once with [`StorageError::Busy`].
    pub lock_wait: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
            dry_run: false,
            lock_wait: Duration::ZERO,
        }
    }
}

impl GcOptions {
    /// The defaults with this grace period.
    pub fn with_grace(grace: Duration) -> Self {
        Self {
            grace,
            ..Self::default()
        }
    }
}

/// The default grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60 * 60);

/// What a collection found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The run's generation (`None` for a dry run).
    pub generation: Option<u64>,
    /// Repositories walked.
    pub repositories: usize,
    /// Manifests linked, over all repositories.
    pub manifests: usize,
    /// Blobs stored when the run listed them.
    pub stored_blobs: usize,
    /// Blobs reachable from some manifest.
    pub marked_blobs: usize,
    /// Blobs removed (or, in a dry run, that would be), sorted by digest.
    pub swept: Vec<BlobMeta>,
    /// Their bytes.
    pub swept_bytes: u64,
    /// Unreferenced blobs kept because they are younger than the grace.
    pub young: usize,
    /// Candidates spared because a manifest pushed during the run needed
    /// them.
    pub spared: usize,
    /// Per-repository links removed (to swept or missing blobs).
    pub links_removed: usize,
    /// Abandoned upload sessions expired.
    pub uploads_expired: usize,
    /// Wall time of the run.
    pub duration: Duration,
}

/// What the mark phase found.
#[derive(Default)]
struct Mark {
    marked: HashSet<Digest>,
    /// Every repository's blob links, by blob.
    links: HashMap<Digest, Vec<RepositoryName>>,
    repositories: usize,
    manifests: usize,
}

impl Storage {
    /// Runs one garbage collection (see the module docs). Safe while any
    /// number of replicas serve pushes; [`StorageError::Busy`] if another
    /// collection holds the lock past `options.lock_wait`.
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport> {
        if options.dry_run {
            return self.collect_with(options, None, 0).await;
        }
        let lock = self.collector_lock(options.lock_wait).await?;
        let generation = self.gc_state().await?.generation + 1;
        let report = self.collect_with(options, Some(&lock), generation).await;
        lock.release().await;
        report
    }

    /// The collector lock, waited for up to `wait`.
    pub(crate) async fn collector_lock(&self, wait: Duration) -> Result<CollectorLock> {
        let busy = || StorageError::Busy("garbage collection".into());
        let local = tokio::time::timeout(wait, self.inner.collector.clone().lock_owned())
            .await
            .map_err(|_| busy())?;
        let held = self
            .inner
            .uploads
            .lock_object(&layout::gc_lock(), Instant::now() + wait)
            .await
            .map_err(|e| match e {
                StorageError::Busy(_) => busy(),
                e => e,
            })?;
        Ok(CollectorLock {
            held,
            _local: local,
        })
    }

    /// A collection as run `generation`, under `lock` (none: a dry run).
    async fn collect_with(
        &self,
        options: &GcOptions,
        lock: Option<&CollectorLock>,
        generation: u64,
    ) -> Result<GcReport> {
        let started = Instant::now();
        let mut report = GcReport {
            generation: lock.map(|_| generation),
            ..GcReport::default()
        };
        let result = self.run(options, lock, generation, &mut report).await;
        report.duration = started.elapsed();
        if lock.is_some() {
            telemetry::gc_finished(&report, result.is_ok());
        }
        result.map(|()| report)
    }

    async fn run(
        &self,
        options: &GcOptions,
        lock: Option<&CollectorLock>,
        generation: u64,
        report: &mut GcReport,
    ) -> Result<()> {
        if lock.is_some() {
            self.write_gc_state(&GcState {
                generation,
                phase: Some(Phase::Marking),
                finished_at: 0,
            })
            .await?;
            tracing::info!(generation, "garbage collection: marking");
            report.uploads_expired = self.sweep_uploads().await?.expired;
        }
        let stored = self.stored_blobs().await?;
        let mark = self.mark().await?;
        report.stored_blobs = stored.len();
        report.marked_blobs = stored.keys().filter(|d| mark.marked.contains(*d)).count();
        report.repositories = mark.repositories;
        report.manifests = mark.manifests;
        let cutoff = SystemTime::now()
            .checked_sub(options.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut candidates = BTreeMap::new();
        for (digest, (size, date)) in &stored {
            if mark.marked.contains(digest) {
                continue;
            }
            if *date > cutoff {
                report.young += 1;
            } else {
                candidates.insert(digest.clone(), *size);
            }
        }
        tracing::info!(
            generation,
            stored = stored.len(),
            marked = report.marked_blobs,
            candidates = candidates.len(),
            young = report.young,
            "garbage collection: marked"
        );
        let dangling: Vec<(RepositoryName, Digest)> = mark
            .links
            .iter()
            .filter(|(d, _)| !stored.contains_key(*d))
            .flat_map(|(d, repos)| repos.iter().map(move |r| (r.clone(), d.clone())))
            .collect();
        if lock.is_none() {
            report.links_removed = dangling.len()
                + candidates
                    .keys()
                    .map(|d| mark.links.get(d).map_or(0, Vec::len))
                    .sum::<usize>();
            report.swept = candidates
                .into_iter()
                .map(|(digest, size)| BlobMeta { digest, size })
                .collect();
            report.swept_bytes = report.swept.iter().map(|b| b.size).sum();
            return Ok(());
        }
        self.publish_candidates(generation, candidates.keys())
            .await?;
        check_fence(lock)?;
        self.write_gc_state(&GcState {
            generation,
            phase: Some(Phase::Sweeping),
            finished_at: 0,
        })
        .await?;
        for digest in self.journaled(generation).await? {
            if candidates.remove(&digest).is_some() {
                report.spared += 1;
            }
        }
        tracing::info!(
            generation,
            candidates = candidates.len(),
            spared = report.spared,
            "garbage collection: sweeping"
        );
        let swept = self.sweep(candidates, &mark.links, lock).await?;
        let removed = self.remove_dangling_links(dangling, lock).await?;
        report.links_removed = swept.iter().map(|(_, l)| l).sum::<usize>() + removed;
        report.swept = swept.into_iter().map(|(b, _)| b).collect();
        report.swept.sort_by(|a, b| a.digest.cmp(&b.digest));
        report.swept_bytes = report.swept.iter().map(|b| b.size).sum();
        check_fence(lock)?;
        self.write_gc_state(&GcState {
            generation,
            phase: None,
            finished_at: state::unix_now(),
        })
        .await?;
        self.remove_run_records().await?;
        tracing::info!(
            generation,
            blobs = report.swept.len(),
            bytes = report.swept_bytes,
            links = report.links_removed,
            uploads = report.uploads_expired,
            "garbage collection: done"
        );
        Ok(())
    }

    /// Sweeps `candidates` (see [`Storage::sweep_blob`]), a few at a time.
    async fn sweep(
        &self,
        candidates: BTreeMap<Digest, u64>,
        links: &HashMap<Digest, Vec<RepositoryName>>,
        lock: Option<&CollectorLock>,
    ) -> Result<Vec<(BlobMeta, usize)>> {
        concurrently(
            state::CONCURRENCY,
            candidates.into_iter().map(|(digest, size)| {
                let repos = links.get(&digest).map_or(&[][..], Vec::as_slice);
                async move {
                    check_fence(lock)?;
                    let links = self.sweep_blob(&digest, repos).await?;
                    Ok((BlobMeta { digest, size }, links))
                }
                .boxed()
            }),
        )
        .await
    }

    /// Removes the links whose blob's bytes are missing; returns how many.
    async fn remove_dangling_links(
        &self,
        dangling: Vec<(RepositoryName, Digest)>,
        lock: Option<&CollectorLock>,
    ) -> Result<usize> {
        let removed = concurrently(
            state::CONCURRENCY,
            dangling.into_iter().map(|(repo, digest)| {
                async move {
                    check_fence(lock)?;
                    self.remove_dangling_link(&repo, &digest).await
                }
                .boxed()
            }),
        )
        .await?;
        Ok(removed.into_iter().filter(|r| *r).count())
    }

    /// Every stored blob: its size and the store's date of it.
    async fn stored_blobs(&self) -> Result<HashMap<Digest, (u64, SystemTime)>> {
        let mut stored = HashMap::new();
        let mut listing = self.store().list(Some(&layout::blobs_dir()));
        while let Some(meta) = listing.try_next().await? {
            if let Some(digest) = layout::blob_data_digest(&meta.location) {
                stored.insert(digest, (meta.size, meta.last_modified.into()));
            }
        }
        Ok(stored)
    }

    /// Every linked manifest of every repository and what it references,
    /// and every repository's blob links.
    async fn mark(&self) -> Result<Mark> {
        let mut mark = Mark::default();
        let mut parsed: HashMap<Digest, Vec<Digest>> = HashMap::new();
        for name in self.all_repositories().await? {
            mark.repositories += 1;
            let manifests = self
                .links(&layout::manifests_dir(&name), "_manifests")
                .await?;
            mark.manifests += manifests.len();
            let todo: Vec<&Digest> = manifests
                .iter()
                .filter(|d| !parsed.contains_key(*d))
                .collect();
            let name_ref = &name;
            let found = concurrently(
                state::CONCURRENCY,
                todo.into_iter().map(|digest| {
                    async move {
                        let refs = self.manifest_references(name_ref, digest).await?;
                        Ok((digest.clone(), refs))
                    }
                    .boxed()
                }),
            )
            .await?;
            parsed.extend(found);
            for digest in manifests {
                if let Some(refs) = parsed.get(&digest) {
                    mark.marked.extend(refs.iter().cloned());
                }
                mark.marked.insert(digest);
            }
            for digest in self
                .links(&layout::blob_links_dir(&name), "_layers")
                .await?
            {
                mark.links.entry(digest).or_default().push(name.clone());
            }
        }
        Ok(mark)
    }

    /// The blobs and child manifests a linked manifest references (none if
    /// its bytes are gone). A manifest that no longer parses stops the
    /// collection: what it references cannot be known, so nothing may be
    /// swept (`fsck` names it).
    async fn manifest_references(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<Digest>> {
        let Some(body) = self.read_small(&layout::blob_data(digest)).await? else {
            return Ok(Vec::new());
        };
        let media_type = self
            .manifest_meta(name, digest)
            .await?
            .map(|m| m.media_type);
        let parsed = ParsedManifest::parse(&body, media_type.as_deref()).map_err(|e| {
            StorageError::Corrupt {
                path: layout::blob_data(digest).to_string(),
                reason: format!(
                    "manifest {digest} of {name} does not parse ({e}); \
                     garbage collection cannot know what it references"
                ),
            }
        })?;
        Ok(parsed
            .required_blobs()
            .chain(parsed.required_manifests())
            .cloned()
            .collect())
    }

    /// Removes a candidate: every link to it, then its bytes. Returns the
    /// links removed.
    async fn sweep_blob(&self, digest: &Digest, repositories: &[RepositoryName]) -> Result<usize> {
        for repo in repositories {
            delete_if_exists(self.store(), &layout::blob_link(repo, digest)).await?;
        }
        let data = layout::blob_data(digest);
        delete_if_exists(self.store(), &data).await?;
        if let Some(local) = self.local() {
            local.remove_parent_if_empty(&data);
        }
        Ok(repositories.len())
    }

    /// Removes `repo`'s link to `digest` if the blob's bytes are (still)
    /// missing. Returns whether it did.
    async fn remove_dangling_link(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        if self.blob_data_exists(digest).await? {
            return Ok(false);
        }
        delete_if_exists(self.store(), &layout::blob_link(repo, digest)).await?;
        Ok(true)
    }
}

/// `Err(Busy)` once the collector lock was lost: nothing more may be
/// deleted.
fn check_fence(lock: Option<&CollectorLock>) -> Result<()> {
    match lock {
        Some(l) if l.held.is_lost() => Err(StorageError::Busy(
            "garbage collection: the collector lock was lost".into(),
        )),
        _ => Ok(()),
    }
}

/// The collector lock: this process's mutex, then the store's lock.
pub(crate) struct CollectorLock {
    held: SessionLock,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl CollectorLock {
    /// Frees the store's lock, then this process's.
    pub(crate) async fn release(self) {
        self.held.release().await;
    }
}
