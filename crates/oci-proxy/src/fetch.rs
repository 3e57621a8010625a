//! Blob fetches from upstream, one per digest per process, shared by every
//! request that wants the blob while it arrives.
//!
//! A fetch is a task of its own: it streams the blob from upstream into a
//! spool (an unlinked temporary file, so a crash leaves nothing behind)
//! and, at the same time, into storage as a monolithic upload
//! ([`Storage::blob_put`]), which hashes the bytes as they pass and
//! publishes only a blob that matches its digest. Requests
//! subscribe to its progress and read the spool up to what has arrived,
//! so the first byte reaches a client as soon as upstream sends it, and a
//! client that goes away does not stop the fetch (the next pull finds the
//! blob cached).
//!
//! Subscribers are never given the blob's last byte before the whole was
//! verified against the digest (by storage's upload; by hashing the spool
//! when storage failed otherwise) and the announced length. When the
//! bytes are wrong, nothing is published (a length past the announced one
//! aborts the upload at once), and every subscriber's stream ends with an
//! error: the HTTP response is cut short and the client
//! fails loudly instead of accepting a truncated or altered blob. A fetch
//! that found wrong bytes stays known for [`POISONED_FOR`], so requests in
//! that time get an error at once instead of another stream of bad bytes.
//!
//! Memory per fetch is bounded: the feed into storage holds
//! [`FEED_DEPTH`] chunks, and subscribers read the spool
//! [`READ_CHUNK`] bytes at a time.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use oci_storage::{Storage, StorageError};
use oci_types::{Digest, DigestHasher, RepositoryName};
use tokio::sync::watch;

use crate::error::{ProxyError, Result};
use crate::telemetry;
use crate::upstream::Upstream;

/// Chunks waiting to be written into storage, at most.
const FEED_DEPTH: usize = 16;

/// Bytes a subscriber reads from the spool at once, at most.
const READ_CHUNK: u64 = 256 << 10;

/// How long a fetch that found wrong bytes answers later requests with its
/// error instead of fetching again.
pub(crate) const POISONED_FOR: Duration = Duration::from_secs(30);

/// The bytes a subscriber streams.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Where a fetch stands.
#[derive(Debug, Clone)]
struct Progress {
    /// The length upstream announced: `None` until it answered, then
    /// `Some(None)` if it did not say.
    size: Option<Option<u64>>,
    /// Bytes in the spool.
    written: u64,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    Running,
    /// Every byte arrived and matched the digest.
    Verified,
    Failed(ProxyError),
}

/// One blob being fetched.
#[derive(Debug)]
pub(crate) struct Fetch {
    spool: Arc<std::fs::File>,
    progress: watch::Receiver<Progress>,
}

/// What a fetch needs to run.
pub(crate) struct Job {
    pub(crate) upstream: Upstream,
    pub(crate) remote: RepositoryName,
    pub(crate) local: RepositoryName,
    pub(crate) storage: Storage,
}

/// The fetches in progress in this process, by digest.
#[derive(Debug, Default)]
pub(crate) struct Fetches {
    inflight: Arc<Mutex<HashMap<Digest, Arc<Fetch>>>>,
}

impl Fetches {
    /// The fetch of `digest` in progress (or recently failed), if any.
    pub(crate) fn get(&self, digest: &Digest) -> Option<Arc<Fetch>> {
        self.lock().get(digest).cloned()
    }

    /// Joins the fetch of `digest` in progress, or starts one with `job`.
    pub(crate) fn start(&self, digest: &Digest, job: Job) -> Result<Arc<Fetch>> {
        let mut inflight = self.lock();
        if let Some(fetch) = inflight.get(digest) {
            return Ok(Arc::clone(fetch));
        }
        let spool = tempfile::tempfile().map_err(|e| ProxyError::Spool(e.to_string()))?;
        let (tx, rx) = watch::channel(Progress {
            size: None,
            written: 0,
            state: State::Running,
        });
        let fetch = Arc::new(Fetch {
            spool: Arc::new(spool),
            progress: rx,
        });
        inflight.insert(digest.clone(), Arc::clone(&fetch));
        let done = Done {
            inflight: Arc::downgrade(&self.inflight),
            digest: digest.clone(),
            fetch: Arc::downgrade(&fetch),
        };
        let spool = Arc::clone(&fetch.spool);
        tokio::spawn(run(job, digest.clone(), tx, spool, done));
        Ok(fetch)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Fetch>>> {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a finished fetch from the map (only that fetch).
struct Done {
    inflight: Weak<Mutex<HashMap<Digest, Arc<Fetch>>>>,
    digest: Digest,
    fetch: Weak<Fetch>,
}

impl Drop for Done {
    fn drop(&mut self) {
        let Some(inflight) = self.inflight.upgrade() else {
            return;
        };
        let mut inflight = inflight.lock().unwrap_or_else(PoisonError::into_inner);
        let ours = inflight
            .get(&self.digest)
            .is_some_and(|f| Weak::ptr_eq(&Arc::downgrade(f), &self.fetch));
        if ours {
            inflight.remove(&self.digest);
        }
    }
}

/// The fetch task: transfer, then keep the fetch known while storage
/// publishes (or while a poisoned fetch answers with its error).
async fn run(
    job: Job,
    digest: Digest,
    tx: watch::Sender<Progress>,
    spool: Arc<std::fs::File>,
    done: Done,
) {
    let _counted = telemetry::InProgress::start();
    match transfer(&job, &digest, &tx, spool).await {
        Ok(()) => tx.send_modify(|p| p.state = State::Verified),
        Err(e) => {
            let poisoned = matches!(
                e,
                ProxyError::DigestMismatch { .. } | ProxyError::SizeMismatch { .. }
            );
            if poisoned {
                tracing::error!(error = %e, blob = %digest, repository = %job.remote, "upstream sent wrong bytes: not cached, not served");
            } else {
                tracing::warn!(error = %e, blob = %digest, repository = %job.remote, "fetching a blob from upstream failed");
            }
            tx.send_modify(|p| p.state = State::Failed(e));
            if poisoned {
                tokio::time::sleep(POISONED_FOR).await;
            }
        }
    }
    drop(done);
}

type Stored = tokio::task::JoinHandle<oci_storage::Result<oci_storage::BlobMeta>>;

/// Streams the blob from upstream into the spool and into storage, and
/// verifies it: storage's upload hashes every byte and publishes only a
/// blob that matches, so its verdict is the fetch's (one hash per byte,
/// not two). Only when storage failed for another reason is the spool
/// hashed instead, so clients still get verified bytes.
async fn transfer(
    job: &Job,
    digest: &Digest,
    tx: &watch::Sender<Progress>,
    spool: Arc<std::fs::File>,
) -> Result<()> {
    let blob = job.upstream.blob(&job.remote, digest).await?;
    tx.send_modify(|p| p.size = Some(blob.size));
    let (mut feed, body) = mpsc::channel::<io::Result<Bytes>>(FEED_DEPTH);
    let stored: Stored = {
        let (storage, local, digest) = (job.storage.clone(), job.local.clone(), digest.clone());
        tokio::spawn(async move { storage.blob_put(&local, &digest, body.boxed()).await })
    };
    let copied = async {
        let mut written = 0u64;
        let mut feeding = true;
        let mut batches = blob.stream.ready_chunks(64);
        while let Some(batch) = batches.next().await {
            let batch = batch.into_iter().collect::<Result<Vec<Bytes>>>()?;
            let len: u64 = batch.iter().map(|c| c.len() as u64).sum();
            if let Some(expected) = blob.size
                && written + len > expected
            {
                return Err(ProxyError::SizeMismatch {
                    digest: digest.to_string(),
                    expected,
                    actual: written + len,
                });
            }
            write_at(&spool, batch.clone(), written).await?;
            written += len;
            telemetry::fetched(len);
            tx.send_modify(|p| p.written = written);
            for chunk in batch {
                // Storage gone (its upload failed): serve the clients on.
                if feeding && feed.send(Ok(chunk)).await.is_err() {
                    feeding = false;
                }
            }
        }
        match blob.size {
            Some(expected) if written != expected => Err(ProxyError::SizeMismatch {
                digest: digest.to_string(),
                expected,
                actual: written,
            }),
            _ => Ok(written),
        }
    }
    .await;
    let written = match copied {
        Ok(written) => written,
        Err(e) => {
            // The upload must not complete: end its body with an error.
            let _ = feed
                .send(Err(io::Error::other("the upstream fetch failed")))
                .await;
            drop(feed);
            let _ = stored.await;
            return Err(e);
        }
    };
    drop(feed);
    let failed = match stored.await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(StorageError::DigestMismatch { expected, actual })) => {
            return Err(ProxyError::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(error = %failed, blob = %digest, repository = %job.local, "caching a fetched blob failed; it is fetched again next time");
    verify_spool(&spool, digest, written).await
}

/// Hashes the first `len` bytes of the spool against `digest`.
async fn verify_spool(spool: &Arc<std::fs::File>, digest: &Digest, len: u64) -> Result<()> {
    let (spool, expected) = (Arc::clone(spool), digest.clone());
    let actual = tokio::task::spawn_blocking(move || {
        let mut hasher = DigestHasher::new(expected.algorithm());
        let mut buf = vec![0; READ_CHUNK as usize];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(READ_CHUNK) as usize;
            spool.read_exact_at(&mut buf[..n], at)?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok::<_, io::Error>(hasher.finalize())
    })
    .await
    .map_err(|e| ProxyError::Spool(e.to_string()))?
    .map_err(|e| ProxyError::Spool(e.to_string()))?;
    if &actual == digest {
        Ok(())
    } else {
        Err(ProxyError::DigestMismatch {
            expected: digest.to_string(),
            actual: actual.to_string(),
        })
    }
}

/// Writes `chunks` at `offset` in the spool, off the async workers.
async fn write_at(spool: &Arc<std::fs::File>, chunks: Vec<Bytes>, offset: u64) -> Result<()> {
    let spool = Arc::clone(spool);
    tokio::task::spawn_blocking(move || {
        let mut at = offset;
        for chunk in chunks {
            spool.write_all_at(&chunk, at)?;
            at += chunk.len() as u64;
        }
        Ok::<_, io::Error>(())
    })
    .await
    .map_err(|e| ProxyError::Spool(e.to_string()))?
    .map_err(|e| ProxyError::Spool(e.to_string()))
}

impl Fetch {
    /// Waits until upstream answered: the blob's length, if it said.
    pub(crate) async fn size(&self) -> Result<Option<u64>> {
        let mut rx = self.progress.clone();
        loop {
            {
                let p = rx.borrow_and_update();
                if let State::Failed(e) = &p.state {
                    return Err(e.clone());
                }
                if let Some(size) = p.size {
                    return Ok(size);
                }
            }
            if rx.changed().await.is_err() {
                return Err(ended());
            }
        }
    }

    /// Waits until every byte arrived and was verified: the blob's length.
    pub(crate) async fn verified(&self) -> Result<u64> {
        let mut rx = self.progress.clone();
        loop {
            {
                let p = rx.borrow_and_update();
                match &p.state {
                    State::Failed(e) => return Err(e.clone()),
                    State::Verified => return Ok(p.written),
                    State::Running => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err(ended());
            }
        }
    }

    /// The whole blob as it arrives; the last byte only once verified,
    /// and an error instead when it is not.
    pub(crate) fn stream(self: Arc<Self>) -> ByteStream {
        self.read(None)
    }

    /// `range` of the blob, which must be verified already.
    pub(crate) fn stream_range(self: Arc<Self>, range: Range<u64>) -> ByteStream {
        self.read(Some(range))
    }

    fn read(self: Arc<Self>, range: Option<Range<u64>>) -> ByteStream {
        let rx = self.progress.clone();
        let start = range.as_ref().map_or(0, |r| r.start);
        let reader = Reader {
            fetch: self,
            rx,
            offset: start,
            end: range.map(|r| r.end),
            closed: false,
        };
        futures::stream::unfold(Some(reader), |reader| async move {
            let mut reader = reader?;
            match reader.next().await {
                Ok(Some(bytes)) => Some((Ok(bytes), Some(reader))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed()
    }
}

/// A subscriber's position in a fetch.
struct Reader {
    fetch: Arc<Fetch>,
    rx: watch::Receiver<Progress>,
    offset: u64,
    /// Where a range ends (`None`: the whole blob).
    end: Option<u64>,
    /// The fetch task ended (its progress can no longer change).
    closed: bool,
}

impl Reader {
    /// The next bytes, `None` at the end.
    async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let (readable, finished) = {
                let p = self.rx.borrow_and_update();
                match &p.state {
                    State::Failed(e) => return Err(io::Error::other(e.to_string())),
                    State::Verified => (p.written, true),
                    // Hold the last byte back until the whole is verified.
                    State::Running => (p.written.saturating_sub(1), false),
                }
            };
            let readable = self.end.map_or(readable, |end| readable.min(end));
            if self.offset < readable {
                let len = (readable - self.offset).min(READ_CHUNK);
                let bytes = read_at(&self.fetch.spool, self.offset, len).await?;
                self.offset += len;
                return Ok(Some(bytes));
            }
            if finished {
                return Ok(None);
            }
            if self.closed {
                return Err(io::Error::other(ended().to_string()));
            }
            if self.rx.changed().await.is_err() {
                self.closed = true;
            }
        }
    }
}

/// The fetch task went away without a verdict (it panicked).
fn ended() -> ProxyError {
    ProxyError::Spool("the upstream fetch ended unexpectedly".into())
}

/// Reads `len` bytes at `offset` of the spool, off the async workers.
async fn read_at(spool: &Arc<std::fs::File>, offset: u64, len: u64) -> io::Result<Bytes> {
    let spool = Arc::clone(spool);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
        spool.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(io::Error::other)?
}
