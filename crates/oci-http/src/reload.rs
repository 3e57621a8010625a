//! Reloading what the registry reads from files (the TLS certificate, the
//! accounts, token keys) when the files change and on `SIGHUP`.
//!
//! [`watch`] polls the files' metadata: modification and change times,
//! size, inode, and the target of symlinks, so a Kubernetes secret volume
//! swapping its `..data` symlink counts. A change triggers one reload; a
//! reload that fails keeps what is in service, is logged at `error`, and
//! is retried at the next change. [`on_sighup`] reloads everything on
//! each `SIGHUP`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

/// Something read from files that can be read again in place.
pub trait Reload: Send + Sync + 'static {
    /// What is reloaded, for logs (`TLS`, `accounts and keys`).
    fn what(&self) -> &'static str;
    /// The files whose change calls for a reload.
    fn files(&self) -> Vec<PathBuf>;
    /// Reads the files again; on error what is in service stays, and the
    /// message says which file is at fault. Blocking file I/O.
    fn reload(&self) -> Result<(), String>;
}

/// Polls `item`'s files every `interval` and reloads it once per change,
/// until the returned [`Watcher`] is dropped. Needs a tokio runtime.
pub fn watch(item: Arc<dyn Reload>, interval: Duration) -> Watcher {
    // The files as they are now, before this returns: a change made right
    // after is a change.
    let files = item.files();
    let mut seen = Fingerprint::of(&files);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let probe = files.clone();
            let Ok(now) = tokio::task::spawn_blocking(move || Fingerprint::of(&probe)).await else {
                continue;
            };
            if now != seen {
                seen = now;
                reload_logged(&item, "the files changed").await;
            }
        }
    });
    Watcher { task }
}

/// Reloads every item on each `SIGHUP` the process receives, logging each
/// outcome, until the task is aborted. The handler is installed before
/// this returns, so a `SIGHUP` sent afterwards never takes the default
/// action (terminating the process). Needs a tokio runtime.
#[cfg(unix)]
pub fn on_sighup(items: Vec<Arc<dyn Reload>>) -> io::Result<JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if items.is_empty() {
                tracing::info!("SIGHUP: nothing to reload");
            }
            for item in &items {
                reload_logged(item, "SIGHUP").await;
            }
        }
    }))
}

/// [`Reload::reload`] off the async threads, logging the outcome.
pub async fn reload_logged(item: &Arc<dyn Reload>, cause: &'static str) {
    let what = item.what();
    let worker = Arc::clone(item);
    match tokio::task::spawn_blocking(move || worker.reload()).await {
        Ok(Ok(())) => tracing::info!(cause, "{what} reloaded"),
        Ok(Err(e)) => tracing::error!(
            cause,
            error = %e,
            "{what} reload refused; the previous one stays in service"
        ),
        Err(e) => tracing::error!(cause, error = %e, "{what} reload failed"),
    }
}

/// The running file watch of [`watch`]; dropping it stops the watch.
#[derive(Debug)]
#[must_use = "the watch stops when the Watcher is dropped"]
pub struct Watcher {
    task: JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What identifies one version of each file: the symlink-resolved path
/// and its metadata (`None` for a file that cannot be stat'ed).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<Option<FileStamp>>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    target: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    /// Device, inode and change time (ns) on unix.
    unix: (u64, u64, i64, i64),
}

impl Fingerprint {
    fn of(files: &[PathBuf]) -> Fingerprint {
        Fingerprint(files.iter().map(|path| FileStamp::of(path)).collect())
    }
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let target = std::fs::canonicalize(path).ok()?;
        let meta = std::fs::metadata(&target).ok()?;
        #[cfg(unix)]
        let unix = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
        };
        #[cfg(not(unix))]
        let unix = (0, 0, 0, 0);
        Some(FileStamp {
            target,
            len: meta.len(),
            modified: meta.modified().ok(),
            unix,
        })
    }
}
