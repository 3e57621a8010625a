//! Garbage-collection workload: the time and peak memory of
//! `oci-registry gc` over a store of N blobs, half of them referenced.
//!
//! Seeded over HTTP into ours: 50 repositories; N/20 images of a config and
//! nine layers each (N/2 referenced blobs); then, before every round, N/2
//! fresh blobs pushed and left unreferenced (each linked in its
//! repository). A round runs the release binary's `oci-registry gc --grace
//! 0s` on ours' storage while ours keeps serving, and checks that it
//! removed exactly the orphans.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use oci_types::{Digest, DigestAlgorithm, DigestHasher};

use super::blob::expect;
use super::report::Better;
use super::target::Target;
use super::{Samples, mib};
use crate::server::Error;

/// Requests in flight while seeding.
const CONCURRENCY: usize = 32;
/// Repositories the blobs spread over.
const REPOSITORIES: usize = 50;
/// Layers per image (plus a config).
const LAYERS: usize = 9;

/// How to run the collector on ours' storage.
pub struct Collector<'a> {
    /// The release binary.
    pub binary: &'a std::path::Path,
    /// Ours' storage URL (or path).
    pub storage: &'a str,
    /// Environment for it (S3 credentials and endpoint).
    pub env: &'a [(String, String)],
}

fn sha256(data: &[u8]) -> Digest {
    let mut h = DigestHasher::new(DigestAlgorithm::Sha256);
    h.update(data);
    h.finalize()
}

/// Pushes `blobs` (repository, bytes) monolithically, a few at a time.
async fn push_blobs(
    client: &reqwest::Client,
    target: &Target,
    blobs: Vec<(String, Vec<u8>)>,
) -> Result<(), Error> {
    stream::iter(blobs)
        .map(|(repo, data)| async move {
            let digest = sha256(&data);
            let r = target
                .authorized(client.post(format!(
                    "{}/v2/{repo}/blobs/uploads/?digest={digest}",
                    target.base
                )))
                .header("content-type", "application/octet-stream")
                .body(data)
                .send()
                .await?;
            expect(r, 201, "POST ?digest=").await.map(drop)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await
}

/// A distinct small blob.
fn blob(kind: &str, round: usize, i: usize) -> Vec<u8> {
    format!("{kind} {round} {i} {}", "x".repeat(200)).into_bytes()
}

/// Seeds N/2 referenced blobs in N/20 images.
async fn seed_images(client: &reqwest::Client, target: &Target, n: usize) -> Result<(), Error> {
    let images = (n / 2).div_ceil(LAYERS + 1);
    let mut blobs = Vec::with_capacity(n / 2);
    let mut manifests = Vec::with_capacity(images);
    for i in 0..images {
        let repo = format!("gc/r{}", i % REPOSITORIES);
        let config = blob("config", n, i);
        let mut layers = Vec::new();
        for l in 0..LAYERS {
            let data = blob("layer", n, i * LAYERS + l);
            layers.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
                sha256(&data),
                data.len()
            ));
            blobs.push((repo.clone(), data));
        }
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
            sha256(&config),
            config.len(),
            layers.join(",")
        );
        blobs.push((repo.clone(), config));
        manifests.push((repo, format!("i{i}"), manifest));
    }
    push_blobs(client, target, blobs).await?;
    stream::iter(manifests)
        .map(|(repo, tag, body)| async move {
            let r = target
                .authorized(client.put(format!("{}/v2/{repo}/manifests/{tag}", target.base)))
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(body)
                .send()
                .await?;
            expect(r, 201, "PUT manifest").await.map(drop)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await
}

/// Peak RSS (`VmHWM`) of a running process, KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The workload, for each store size in `sizes`.
pub async fn run(
    client: &reqwest::Client,
    target: &Target,
    collector: &Collector<'_>,
    sizes: &[usize],
    samples: &mut Samples,
    rounds: usize,
) -> Result<(), Error> {
    let mut seeded = 0;
    for &n in sizes {
        // The referenced half grows with each size: seed the difference.
        if n > seeded {
            let started = Instant::now();
            seed_images(client, target, n - seeded).await?;
            println!(
                "  seeded {} referenced blobs in {:.1}s",
                n / 2 - seeded / 2,
                started.elapsed().as_secs_f64()
            );
            seeded = n;
        }
        for round in 0..rounds {
            let orphans: Vec<_> = (0..n / 2)
                .map(|i| {
                    (
                        format!("gc/r{}", i % REPOSITORIES),
                        blob("orphan", n * 100 + round, i),
                    )
                })
                .collect();
            push_blobs(client, target, orphans).await?;
            let started = Instant::now();
            let mut child = tokio::process::Command::new(collector.binary)
                .args(["gc", "--storage", collector.storage, "--grace", "0s"])
                .envs(collector.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()?;
            let pid = child.id().unwrap_or(0);
            let mut peak = 0;
            let mut stdout = child.stdout.take().ok_or("no stdout")?;
            let read = tokio::spawn(async move {
                let mut text = String::new();
                tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text)
                    .await
                    .map(|_| text)
            });
            let status = loop {
                if let Some(kib) = peak_kib(pid) {
                    peak = peak.max(kib);
                }
                tokio::select! {
                    status = child.wait() => break status?,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            };
            let took = started.elapsed();
            let out = read.await.map_err(|e| e.to_string())??;
            if !status.success() || !out.starts_with(&format!("removed {} blobs", n / 2)) {
                return Err(format!("gc of {n} blobs: {status}: {out}").into());
            }
            let label = format!("{n} blobs");
            samples.add(target, "gc", &label, "s", Better::Lower, took.as_secs_f64());
            samples.add(
                target,
                "gc",
                &format!("{label}, peak RSS"),
                "MiB",
                Better::Lower,
                mib(peak),
            );
        }
    }
    Ok(())
}
