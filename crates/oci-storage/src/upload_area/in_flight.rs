//! Parts of one S3 multipart upload sent concurrently, a bounded number at
//! a time, their ETags gathered in part order whatever order they finish
//! in.
//!
//! Each part is a task of its own (so it progresses while the request body
//! is read, and on another core); dropping a [`PartsInFlight`] aborts the
//! tasks still running, so a failed or cancelled request stops sending.
//! A part that was sent all the same is at a position no committed state
//! names yet, and the next request overwrites it (see `multipart`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use object_store::PutPayload;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use tokio::task::JoinSet;

use crate::error::{Result, StorageError};

/// Bytes gathered for the next part: the request's own frames, never
/// copied into one buffer.
#[derive(Debug, Default)]
pub(super) struct Gathered {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Gathered {
    /// Adds `bytes` at the end.
    pub(super) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.chunks.push(bytes);
        }
    }

    /// Bytes gathered so far.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was gathered.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The gathered bytes as one payload; leaves `self` empty.
    pub(super) fn take(&mut self) -> PutPayload {
        self.len = 0;
        std::mem::take(&mut self.chunks).into_iter().collect()
    }
}

/// The parts of one multipart upload in flight for one request.
pub(super) struct PartsInFlight {
    multipart: Arc<dyn MultipartStore>,
    /// Full key of the upload's target.
    target: Path,
    upload_id: String,
    limit: usize,
    tasks: JoinSet<(usize, Result<String>)>,
    /// ETags of finished parts, by part index, not yet in order.
    done: BTreeMap<usize, String>,
}

impl PartsInFlight {
    /// Sends parts of the upload `upload_id` into `target` (a full key), at
    /// most `limit` (at least 1) at a time.
    pub(super) fn new(
        multipart: Arc<dyn MultipartStore>,
        target: Path,
        upload_id: String,
        limit: usize,
    ) -> Self {
        Self {
            multipart,
            target,
            upload_id,
            limit: limit.max(1),
            tasks: JoinSet::new(),
            done: BTreeMap::new(),
        }
    }

    /// Starts sending `payload` as the part at `index` (0-based), once
    /// fewer than the limit are in flight. Fails with the error of any part
    /// that failed so far.
    pub(super) async fn send(&mut self, index: usize, payload: PutPayload) -> Result<()> {
        while self.tasks.len() >= self.limit {
            self.join_one().await?;
        }
        let multipart = Arc::clone(&self.multipart);
        let (target, upload_id) = (self.target.clone(), self.upload_id.clone());
        self.tasks.spawn(async move {
            let sent = multipart
                .put_part(&target, &upload_id, index, payload)
                .await
                .map(|part| part.content_id)
                .map_err(StorageError::from);
            (index, sent)
        });
        while let Some(joined) = self.tasks.try_join_next() {
            self.record(joined)?;
        }
        Ok(())
    }

    /// Waits for every part, then appends their ETags to `parts` in part
    /// order; `parts` must hold exactly the parts before the first one
    /// sent.
    pub(super) async fn finish(mut self, parts: &mut Vec<String>) -> Result<()> {
        while !self.tasks.is_empty() {
            self.join_one().await?;
        }
        for (index, e_tag) in std::mem::take(&mut self.done) {
            if index != parts.len() {
                return Err(StorageError::Corrupt {
                    path: self.target.to_string(),
                    reason: format!("part {index} finished, part {} missing", parts.len()),
                });
            }
            parts.push(e_tag);
        }
        Ok(())
    }

    async fn join_one(&mut self) -> Result<()> {
        match self.tasks.join_next().await {
            Some(joined) => self.record(joined),
            None => Ok(()),
        }
    }

    fn record(
        &mut self,
        joined: std::result::Result<(usize, Result<String>), tokio::task::JoinError>,
    ) -> Result<()> {
        let (index, sent) = joined.map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
        self.done.insert(index, sent?);
        Ok(())
    }
}
