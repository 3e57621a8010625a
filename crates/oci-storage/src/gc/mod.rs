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
//! 4. Retention (see [`crate::RetentionRule`]): removes the tags its rules
//!    drop, each with a compare-and-delete.
//! 5. Lists `blobs/`: every stored blob, its size and date.
//! 6. Marks: every manifest a repository keeps (every one it links, but
//!    for the untagged ones a `delete_untagged` rule drops), and
//!    everything those reference (config, layers, index children).
//!    Referrers are manifests of their own, so they and their blobs are
//!    kept while they are (a `delete_untagged` rule keeps referrers of kept
//!    manifests); a manifest's `subject` keeps nothing.
//! 7. Candidates: stored blobs not marked and older than the grace period
//!    (by the store's date of the object).
//! 8. Publishes the candidates and the dropped manifests under
//!    `_gc/runs/g/candidates/`, then writes `{generation: g, phase:
//!    sweeping}`: the journal is closed.
//! 9. Reads the journal `_gc/runs/g/journal/` and spares every journaled
//!    digest (candidate or dropped manifest).
//! 10. Removes the dropped manifests (as a delete by digest would), then
//!     sweeps each remaining candidate: first every repository's link to
//!     it, then its bytes; then links to blobs whose bytes are missing
//!     (each re-checked just before). Stops at once if the lock was lost.
//! 11. Writes `{generation: g, phase: none, finished_at}` and removes the
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
//!   written, so the push reads them. If one of `refs` is a candidate (or
//!   a manifest retention drops) the
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
mod retain;
mod schedule;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use oci_types::{Digest, ParsedManifest, RepositoryName};
use tokio::time::Instant;

use crate::concurrent::concurrently;
use crate::error::{Result, StorageError};
use crate::upload_area::SessionLock;
use crate::{BlobMeta, Storage, Usage, layout, telemetry};
use retain::Parsed;

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

/// Candidates swept per batch (and per S3 bulk delete).
const SWEEP_BATCH: usize = 1000;

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
    /// Unreferenced blobs kept because they are younger than the grace.
    pub young: usize,
    /// Candidates spared because a manifest pushed during the run needed
    /// them.
    pub spared: usize,
    /// Per-repository links removed (to swept or missing blobs).
    pub links_removed: usize,
    /// Abandoned upload sessions expired.
    pub uploads_expired: usize,
    /// Tags retention removed (or, in a dry run, would).
    pub tags_removed: Vec<(RepositoryName, oci_types::Tag)>,
    /// Untagged manifests retention removed (or would), by repository.
    pub manifests_removed: Vec<(RepositoryName, Digest)>,
    /// The store's usage once the run finished (as `oci-registry du`
    /// reports it; `None` for a dry run).
    pub usage: Option<Usage>,
    /// Wall time of the run.
    pub duration: Duration,
}

impl GcReport {
    /// The bytes of the blobs swept.
    pub fn swept_bytes(&self) -> u64 {
        self.swept.iter().map(|b| b.size).sum()
    }
}

/// What the mark phase found.
#[derive(Default)]
struct Mark {
    marked: HashSet<Digest>,
    /// Every repository's blob links, by blob.
    links: HashMap<Digest, Vec<RepositoryName>>,
    /// Manifests retention drops.
    dropped: Vec<(RepositoryName, Digest)>,
    /// Per repository: manifests kept, and every digest they reference
    /// (themselves included), for the usage figures.
    per_repo: Vec<(RepositoryName, usize, HashSet<Digest>)>,
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
        let dropped_tags = self.drop_tags(lock.is_none()).await?;
        let untagged: HashSet<_> = if lock.is_none() {
            dropped_tags.iter().cloned().collect()
        } else {
            HashSet::new() // really removed: the mark reads the tags left
        };
        report.tags_removed = dropped_tags;
        let cutoff = SystemTime::now()
            .checked_sub(options.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let stored = self.stored_blobs().await?;
        let mut mark = self.mark(cutoff, &untagged).await?;
        report.stored_blobs = stored.len();
        report.marked_blobs = stored.keys().filter(|d| mark.marked.contains(*d)).count();
        report.repositories = mark.repositories;
        report.manifests = mark.manifests;
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
            report.manifests_removed = std::mem::take(&mut mark.dropped);
            report.links_removed = dangling.len()
                + candidates
                    .keys()
                    .map(|d| mark.links.get(d).map_or(0, Vec::len))
                    .sum::<usize>();
            report.swept = candidates
                .into_iter()
                .map(|(digest, size)| BlobMeta { digest, size })
                .collect();
            return Ok(());
        }
        let dropped_digests: BTreeSet<&Digest> = mark.dropped.iter().map(|(_, d)| d).collect();
        self.publish_candidates(generation, candidates.keys().chain(dropped_digests))
            .await?;
        check_fence(lock)?;
        self.write_gc_state(&GcState {
            generation,
            phase: Some(Phase::Sweeping),
            finished_at: 0,
        })
        .await?;
        let journaled = self.journaled(generation).await?;
        for digest in &journaled {
            if candidates.remove(digest).is_some() {
                report.spared += 1;
            }
        }
        let mut dropped = std::mem::take(&mut mark.dropped);
        dropped.retain(|(_, d)| !journaled.contains(d));
        for (name, digest) in &dropped {
            check_fence(lock)?;
            self.drop_manifest(name, digest).await?;
            tracing::info!(repository = %name, manifest = %digest, "retention: manifest dropped");
        }
        report.manifests_removed = dropped;
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
        let swept_digests: HashSet<&Digest> = report.swept.iter().map(|b| &b.digest).collect();
        let sizes: HashMap<Digest, u64> = stored
            .iter()
            .filter(|(d, _)| !swept_digests.contains(d))
            .map(|(d, (size, _))| (d.clone(), *size))
            .collect();
        report.usage = Some(Usage::tally(&sizes, &mark.per_repo, None));
        report.swept.sort_by(|a, b| a.digest.cmp(&b.digest));
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
            bytes = report.swept_bytes(),
            links = report.links_removed,
            uploads = report.uploads_expired,
            "garbage collection: done"
        );
        Ok(())
    }

    /// Sweeps `candidates` a batch at a time: every repository's links to
    /// the batch's blobs, then their bytes (bulk deletes). Checks the
    /// collector lock before each batch.
    async fn sweep(
        &self,
        candidates: BTreeMap<Digest, u64>,
        links: &HashMap<Digest, Vec<RepositoryName>>,
        lock: Option<&CollectorLock>,
    ) -> Result<Vec<(BlobMeta, usize)>> {
        let candidates: Vec<(Digest, u64)> = candidates.into_iter().collect();
        let mut swept = Vec::with_capacity(candidates.len());
        for batch in candidates.chunks(SWEEP_BATCH) {
            check_fence(lock)?;
            let mut link_keys = Vec::new();
            for (digest, _) in batch {
                for repo in links.get(digest).map_or(&[][..], Vec::as_slice) {
                    link_keys.push(layout::blob_link(repo, digest));
                }
            }
            self.delete_objects(link_keys, false).await?;
            let data = batch.iter().map(|(d, _)| layout::blob_data(d)).collect();
            self.delete_objects(data, true).await?;
            swept.extend(batch.iter().map(|(digest, size)| {
                let links = links.get(digest).map_or(0, Vec::len);
                (
                    BlobMeta {
                        digest: digest.clone(),
                        size: *size,
                    },
                    links,
                )
            }));
        }
        Ok(swept)
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
        Ok(self
            .list_dated(&layout::blobs_dir())
            .await?
            .into_iter()
            .filter_map(|(key, size, date)| {
                layout::blob_data_digest(&key).map(|d| (d, (size, date)))
            })
            .collect())
    }

    /// Every manifest every repository keeps (all it links, unless a
    /// `delete_untagged` retention rule drops some) and what they
    /// reference, and every repository's blob links. `untagged`: tags a
    /// dry run drops, counted as gone.
    async fn mark(
        &self,
        cutoff: SystemTime,
        untagged: &HashSet<(RepositoryName, oci_types::Tag)>,
    ) -> Result<Mark> {
        let mut mark = Mark::default();
        let mut parsed: HashMap<Digest, Parsed> = HashMap::new();
        for name in self.all_repositories().await? {
            mark.repositories += 1;
            let links = self.dated_links(&layout::manifests_dir(&name)).await?;
            mark.manifests += links.len();
            let todo: Vec<&Digest> = links
                .iter()
                .map(|(d, _)| d)
                .filter(|d| !parsed.contains_key(*d))
                .collect();
            let name_ref = &name;
            let found = concurrently(
                state::CONCURRENCY,
                todo.into_iter().map(|digest| {
                    async move {
                        let p = self.parse_held(name_ref, digest).await?;
                        Ok((digest.clone(), p))
                    }
                    .boxed()
                }),
            )
            .await?;
            parsed.extend(found);
            let kept = match self.retention_rule(&name) {
                Some(rule) if rule.delete_untagged => {
                    self.kept_manifests(&name, &links, &parsed, cutoff, untagged)
                        .await?
                }
                _ => links.iter().map(|(d, _)| d.clone()).collect(),
            };
            let mut referenced = HashSet::new();
            for (digest, _) in links {
                if !kept.contains(&digest) {
                    mark.dropped.push((name.clone(), digest));
                    continue;
                }
                if let Some(p) = parsed.get(&digest) {
                    referenced.extend(p.references.iter().cloned());
                }
                referenced.insert(digest);
            }
            mark.marked.extend(referenced.iter().cloned());
            mark.per_repo.push((name.clone(), kept.len(), referenced));
            for digest in self
                .links(&layout::blob_links_dir(&name), "_layers")
                .await?
            {
                mark.links.entry(digest).or_default().push(name.clone());
            }
        }
        Ok(mark)
    }

    /// The digests of the links under `dir` with the store's dates of them.
    async fn dated_links(
        &self,
        dir: &object_store::path::Path,
    ) -> Result<Vec<(Digest, SystemTime)>> {
        Ok(self
            .list_dated(dir)
            .await?
            .into_iter()
            .filter_map(|(key, _, date)| layout::link_digest(&key, "_manifests").map(|d| (d, date)))
            .collect())
    }

    /// What a linked manifest references (nothing if its bytes are gone).
    /// A manifest that no longer parses stops the collection: what it
    /// references cannot be known, so nothing may be swept (`fsck` names
    /// it).
    async fn parse_held(&self, name: &RepositoryName, digest: &Digest) -> Result<Parsed> {
        let Some(body) = self.read_small(&layout::blob_data(digest)).await? else {
            return Ok(Parsed::default());
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
        Ok(Parsed {
            references: parsed
                .required_blobs()
                .chain(parsed.required_manifests())
                .cloned()
                .collect(),
            children: parsed.required_manifests().cloned().collect(),
            subject: parsed.subject.map(|s| s.digest),
        })
    }

    /// Removes `repo`'s link to `digest` if the blob's bytes are (still)
    /// missing. Returns whether it did.
    async fn remove_dangling_link(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        if self.blob_data_exists(digest).await? {
            return Ok(false);
        }
        self.delete_small(&layout::blob_link(repo, digest)).await?;
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
