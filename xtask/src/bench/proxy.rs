//! Pull-through cache workload: a second instance of the release binary,
//! configured with a `[[proxy]]` of prefix `up` whose upstream is ours,
//! pulled from with curl.
//!
//! Each round pushes a fresh incompressible blob of `--size-mib` MiB to
//! ours (the upstream), so the cache has never seen it, then:
//! - pulls it directly from the upstream and, cold, through the cache
//!   (`up/…`; the cache streams it from the upstream while it stores it):
//!   throughput, time to the first byte and the CPU of the process serving
//!   the client (the cache; the upstream), the cache in the ours column,
//!   the direct pull in the peer column;
//! - once the cache stored it, checks its bytes there against the digest,
//!   pushes the same blob into a local repository of the cache, and pulls
//!   it warm through the cache and from the local repository: throughput
//!   and server CPU, warm in the ours column, local in the peer column
//!   (the same stored bytes: the difference is the cost of the proxied
//!   path).
//!
//! The cache's storage (filesystem) and its spool (`TMPDIR`) are fresh
//! directories under the run's data dir; its peak RSS is reported after the
//! rounds, and it is stopped at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oci_types::Digest;

use super::blob::{self, Blob, PushKind};
use super::report::Better;
use super::target::{BlobFiles, Target};
use super::{Samples, cpu_per_gb, megabytes_per_sec, mib};
use crate::server::{Error, free_port};

/// The cache's proxy prefix: `up/<name>` is `<name>` upstream.
const PREFIX: &str = "up";
/// The repository pushed to upstream and pulled through the cache.
const UPSTREAM_REPO: &str = "proxy-bench";
/// The cache's own repository (outside the prefix), for the local pull.
const LOCAL_REPO: &str = "local/bench";

/// Row groups.
const COLD: &str = "proxy: cold pull (ours: through the cache, peer: direct from the upstream)";
const WARM: &str =
    "proxy: warm pull (ours: through the cache, peer: a local repository of the cache)";
const MEMORY: &str = "proxy: memory";

/// What the ratio column means in the rows of this workload, for the
/// report's peer description.
pub const PEER_NOTE: &str = "in the proxy rows, the peer column is the upstream (ours) pulled \
     directly, or a local repository of the cache (see each group)";

/// How long the cache may take to store a blob it has served.
const STORE_TIMEOUT: Duration = Duration::from_secs(60);

/// The cache's configuration file: `listen` on `port`, filesystem storage
/// in `root`, `up/` proxied to `upstream`.
pub fn config(port: u16, root: &Path, upstream: &str) -> String {
    format!(
        "[server]\n\
         listen = \"127.0.0.1:{port}\"\n\
         \n\
         [storage]\n\
         url = \"file://{}\"\n\
         \n\
         [[proxy]]\n\
         prefix = \"{PREFIX}\"\n\
         url = \"{upstream}\"\n\
         tag_ttl = \"5m\"\n",
        root.display()
    )
}

/// Starts the cache in `dir` (its storage, spool, configuration and log),
/// proxying `up/` to `upstream`.
async fn start_cache(binary: &Path, dir: &Path, upstream: &Target) -> Result<Target, Error> {
    let root = dir.join("cache");
    let spool = dir.join("cache-spool");
    std::fs::create_dir_all(&root)?;
    std::fs::create_dir_all(&spool)?;
    let port = free_port()?;
    let config_file = dir.join("cache.toml");
    std::fs::write(&config_file, config(port, &root, &upstream.base))?;
    let binary = binary.to_path_buf();
    let command = move || {
        let mut cmd = Command::new(&binary);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_file)
            .args(["--log-level", "warn"])
            .env("TMPDIR", &spool);
        cmd
    };
    let log = dir.join("cache.log");
    let cache = Target::start("ours", port, log.clone(), command)
        .await
        .map_err(|e| format!("starting the cache: {e} (log: {})", log.display()))?;
    Ok(cache.with_blob_files(BlobFiles::Dir(root)))
}

/// Where the cache's filesystem storage keeps the bytes of `digest`.
fn data_file(root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    root.join(format!(
        "blobs/{}/{}/{hex}/data",
        digest.algorithm().as_str(),
        &hex[..2]
    ))
}

/// Waits until the cache has stored `digest` (the fetch publishes it after
/// the client got the last byte).
async fn stored(root: &Path, digest: &Digest, log: &Path) -> Result<(), Error> {
    let file = data_file(root, digest);
    let started = Instant::now();
    while !file.is_file() {
        if started.elapsed() > STORE_TIMEOUT {
            return Err(format!(
                "the cache served {digest} but did not store it within {} s (no {}; log: {})",
                STORE_TIMEOUT.as_secs(),
                file.display(),
                log.display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The workload, with ours (`upstream`) as the upstream of a cache started
/// from `binary` in `dir`, with blobs of `size` bytes.
pub async fn run(
    client: &reqwest::Client,
    binary: &Path,
    dir: &Path,
    upstream: &Target,
    samples: &mut Samples,
    rounds: usize,
    size: u64,
) -> Result<(), Error> {
    let cache = start_cache(binary, dir, upstream).await?;
    println!(
        "bench: pull-through cache {} ({PREFIX}/ proxied to ours, {}), {} MiB blobs",
        cache.base,
        upstream.base,
        size >> 20
    );
    let outcome = rounds_of(client, dir, upstream, &cache, samples, rounds, size).await;
    if let Some(hwm) = cache.memory_kib("VmHWM") {
        let name = "cache peak RSS (VmHWM) after the pulls";
        samples.add(&cache, MEMORY, name, "MiB", Better::Lower, mib(hwm));
    }
    drop(cache);
    outcome
}

async fn rounds_of(
    client: &reqwest::Client,
    dir: &Path,
    upstream: &Target,
    cache: &Target,
    samples: &mut Samples,
    rounds: usize,
    size: u64,
) -> Result<(), Error> {
    let root = dir.join("cache");
    let log = dir.join("cache.log");
    // Figures of the upstream pulled directly, and of the cache's local
    // repository, go in the peer column.
    let direct = upstream.view("peer");
    let local = cache.view("peer");
    let proxied = format!("{PREFIX}/{UPSTREAM_REPO}");
    let tail = Bytes::from(blob::random_bytes(u64::MAX - 1, size as usize - (1 << 20)));
    for round in 0..rounds {
        let blob = Blob::new(1_000_000 + round as u64, &tail);
        blob::push(client, upstream, UPSTREAM_REPO, &blob, PushKind::Monolithic).await?;

        // Cold: the direct pull and the pull through the cache, in turns
        // first.
        let mut cold = [
            (&direct, UPSTREAM_REPO, upstream),
            (cache, proxied.as_str(), cache),
        ];
        if round % 2 == 1 {
            cold.reverse();
        }
        for (column, repo, server) in cold {
            let cpu_before = column.cpu_time();
            let pulled = blob::pull_timed(server, repo, &blob, None).await?;
            let rate = megabytes_per_sec(blob.len(), pulled.took);
            samples.add(column, COLD, "whole blob", "MB/s", Better::Higher, rate);
            let ms = pulled.first_byte.as_secs_f64() * 1e3;
            samples.add(column, COLD, "time to first byte", "ms", Better::Lower, ms);
            // The cache's CPU (not the upstream's, serving it) against the
            // upstream's serving the direct pull.
            cpu_per_gb(samples, column, COLD, "whole blob", cpu_before, blob.len());
        }

        // Warm: the cached copy, checked once, then timed against the
        // same bytes pushed into a local repository.
        stored(&root, &blob.digest, &log).await?;
        blob::verify(client, cache, &proxied, &blob).await?;
        blob::push(client, cache, LOCAL_REPO, &blob, PushKind::Monolithic).await?;
        let mut warm = [(cache, proxied.as_str()), (&local, LOCAL_REPO)];
        if round % 2 == 1 {
            warm.reverse();
        }
        for (column, repo) in warm {
            let cpu_before = column.cpu_time();
            let pulled = blob::pull_timed(cache, repo, &blob, None).await?;
            let rate = megabytes_per_sec(blob.len(), pulled.took);
            samples.add(column, WARM, "whole blob", "MB/s", Better::Higher, rate);
            cpu_per_gb(samples, column, WARM, "whole blob", cpu_before, blob.len());
        }

        // Free the bytes: upstream's, and the cache's (its proxied
        // repository cannot be deleted from, and links the bytes only).
        blob::delete(client, upstream, UPSTREAM_REPO, &blob.digest).await?;
        upstream.reclaim(&blob.digest);
        blob::delete(client, cache, LOCAL_REPO, &blob.digest).await?;
        cache.reclaim(&blob.digest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::debug_registry;

    #[test]
    fn the_config_is_toml_with_a_proxy_section() {
        let text = config(5123, Path::new("/d/cache"), "http://127.0.0.1:5000");
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(value["server"]["listen"].as_str(), Some("127.0.0.1:5123"));
        assert_eq!(value["storage"]["url"].as_str(), Some("file:///d/cache"));
        let proxy = &value["proxy"][0];
        assert_eq!(proxy["prefix"].as_str(), Some("up"));
        assert_eq!(proxy["url"].as_str(), Some("http://127.0.0.1:5000"));
    }

    /// The workload against the debug registry as upstream and cache, at a
    /// small size: every figure is recorded, in the right column.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_workload_runs_through_a_cache() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("upstream");
        let port = free_port().unwrap();
        let command = super::super::target::ours_command(
            debug_registry(),
            root.display().to_string(),
            Vec::new(),
            port,
            super::super::target::Telemetry::default(),
        );
        let upstream = Target::start("ours", port, dir.path().join("log"), command)
            .await
            .unwrap()
            .with_blob_files(BlobFiles::Dir(root));
        let client = reqwest::Client::new();
        let mut samples = Samples::default();
        run(
            &client,
            &debug_registry(),
            dir.path(),
            &upstream,
            &mut samples,
            2,
            3 << 20,
        )
        .await
        .unwrap();
        let find = |group: &str, name: &str| {
            samples
                .rows
                .iter()
                .find(|s| s.group == group && s.name == name)
                .unwrap_or_else(|| panic!("no {group} / {name}"))
        };
        for (group, name) in [
            (COLD, "whole blob"),
            (COLD, "time to first byte"),
            (COLD, "whole blob: server CPU"),
            (WARM, "whole blob"),
            (WARM, "whole blob: server CPU"),
        ] {
            let series = find(group, name);
            assert_eq!((series.ours.len(), series.peer.len()), (2, 2), "{name}");
        }
        let rss = find(MEMORY, "cache peak RSS (VmHWM) after the pulls");
        assert_eq!((rss.ours.len(), rss.peer.len()), (1, 0));
        // Reclaimed: neither keeps the bytes of a round.
        let cache_blobs = dir.path().join("cache/blobs/sha256");
        let left = std::fs::read_dir(&cache_blobs)
            .map(|d| {
                d.flatten()
                    .flat_map(|p| std::fs::read_dir(p.path()).into_iter().flatten().flatten())
                    .filter(|b| b.path().join("data").exists())
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(left, 0, "cache blobs left in {}", cache_blobs.display());
    }
}
