//! What the collector publishes for manifest pushes to read, and what
//! pushes leave for it: the state object, the candidate shards, the
//! journal (see the module docs of [`crate::gc`] for the protocol).

use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{FutureExt, TryStreamExt};
use oci_types::Digest;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::concurrent::concurrently;
use crate::error::{Result, StorageError};
use crate::{Storage, layout};

/// Requests in flight while the collector writes or reads its records.
pub(super) const CONCURRENCY: usize = 32;

/// `_gc/state`: how many collections started, and where the current one
/// is. Absent in a store never collected: generation 0, idle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcState {
    /// Collections started so far; the current (or last) run's number.
    pub generation: u64,
    /// Where the current run is; `None` when no run is in progress (or
    /// the last one died before it finished: the state then still names
    /// its phase, and the next run takes over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// When the last run finished, in seconds since the Unix epoch (what
    /// the online schedule counts its interval from).
    #[serde(default)]
    pub finished_at: u64,
}

/// A run's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Listing what is stored and what is reachable; pushes journal their
    /// references, and the run spares them.
    Marking,
    /// The candidates are final and published; pushes that need one of
    /// them are refused.
    Sweeping,
}

impl GcState {
    /// True when no run is in progress.
    pub fn is_idle(&self) -> bool {
        self.phase.is_none()
    }
}

/// `digests` grouped by the candidate shard of run `generation` each
/// falls in.
fn shards<'a>(
    generation: u64,
    digests: impl IntoIterator<Item = &'a Digest>,
) -> BTreeMap<object_store::path::Path, Vec<&'a Digest>> {
    let mut shards: BTreeMap<_, Vec<&Digest>> = BTreeMap::new();
    for d in digests {
        shards
            .entry(layout::gc_candidates(generation, d))
            .or_default()
            .push(d);
    }
    shards
}

/// Seconds since the Unix epoch now.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Digests as text, one per line.
fn lines<'a>(digests: impl IntoIterator<Item = &'a Digest>) -> String {
    let mut text = String::new();
    for d in digests {
        text.push_str(d.as_str());
        text.push('\n');
    }
    text
}

/// The digests of a text written by [`lines`]; others are skipped.
fn parse_lines(bytes: &[u8]) -> impl Iterator<Item = Digest> + '_ {
    std::str::from_utf8(bytes)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
}

impl Storage {
    /// The collector's state (see [`GcState`]).
    pub async fn gc_state(&self) -> Result<GcState> {
        let path = layout::gc_state();
        match self.read_small(&path).await? {
            None => Ok(GcState::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                path: path.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    pub(super) async fn write_gc_state(&self, state: &GcState) -> Result<()> {
        let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        self.write_small(&layout::gc_state(), bytes).await
    }

    /// Publishes run `generation`'s candidates, sharded by digest prefix,
    /// so a push reads only the shards of the digests it needs.
    pub(super) async fn publish_candidates<'a>(
        &self,
        generation: u64,
        candidates: impl IntoIterator<Item = &'a Digest>,
    ) -> Result<()> {
        let text: Vec<_> = shards(generation, candidates)
            .into_iter()
            .map(|(path, digests)| (path, lines(digests)))
            .collect();
        concurrently(
            CONCURRENCY,
            text.into_iter()
                .map(|(path, text)| async move { self.write_small(&path, text).await }.boxed()),
        )
        .await
        .map(drop)
    }

    /// The first of `digests` that run `generation` published as a
    /// candidate, if any.
    pub(super) async fn first_candidate(
        &self,
        generation: u64,
        digests: &[Digest],
    ) -> Result<Option<Digest>> {
        for (path, wanted) in shards(generation, digests) {
            let Some(bytes) = self.read_small(&path).await? else {
                continue;
            };
            let listed: HashSet<Digest> = parse_lines(&bytes).collect();
            if let Some(d) = wanted.into_iter().find(|d| listed.contains(*d)) {
                return Ok(Some(d.clone()));
            }
        }
        Ok(None)
    }

    /// Records that a manifest referencing `digests` was pushed while run
    /// `generation` marks.
    pub(super) async fn journal(&self, generation: u64, digests: &[Digest]) -> Result<()> {
        let entry = layout::gc_journal_entry(generation, &Uuid::new_v4());
        self.write_small(&entry, lines(digests)).await
    }

    /// Every digest journaled for run `generation`.
    pub(super) async fn journaled(&self, generation: u64) -> Result<HashSet<Digest>> {
        let dir = layout::gc_journal(generation);
        let entries: Vec<_> = self.store().list(Some(&dir)).try_collect().await?;
        let texts = concurrently(
            CONCURRENCY,
            entries
                .into_iter()
                .map(|meta| async move { self.read_small(&meta.location).await }.boxed()),
        )
        .await?;
        Ok(texts
            .iter()
            .flatten()
            .flat_map(|bytes| parse_lines(bytes))
            .collect())
    }

    /// Removes the records of every run (the finished one, and any that
    /// died before finishing).
    pub(super) async fn remove_run_records(&self) -> Result<()> {
        let keys = self.list_keys(&layout::gc_runs()).await?;
        self.delete_objects(keys, false).await?;
        if let Some(local) = self.local() {
            local.remove_empty_dirs(&layout::gc_runs());
        }
        Ok(())
    }
}
