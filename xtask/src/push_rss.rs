//! `cargo xtask push-rss`: peak server memory while large blobs are pushed.

use std::time::Instant;

use bytes::Bytes;
use futures::stream;
use oci_types::{Digest, DigestAlgorithm, DigestHasher};

use crate::server::{Error, Server, build_release};

/// Options of `push-rss`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Blob size in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Storage backend: `filesystem` (a temp dir) or `s3` (the in-process
    /// S3 server the tests use, over loopback).
    #[arg(long, default_value = "filesystem")]
    backend: Backend,
}

/// Where the registry under test stores data.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Backend {
    Filesystem,
    S3,
}

/// Size of each generated chunk handed to the HTTP client.
const CHUNK: usize = 1 << 20;

/// Deterministic incompressible bytes (xorshift64*), chunk `i` of a blob.
fn chunk(seed: u64, i: u64) -> Bytes {
    let mut x = seed ^ (i.wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(CHUNK);
    while out.len() < CHUNK {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    Bytes::from(out)
}

fn digest_of(seed: u64, chunks: u64) -> Digest {
    let mut h = DigestHasher::new(DigestAlgorithm::Sha256);
    for i in 0..chunks {
        h.update(&chunk(seed, i));
    }
    h.finalize()
}

fn body(seed: u64, chunks: u64) -> reqwest::Body {
    reqwest::Body::wrap_stream(stream::iter(
        (0..chunks).map(move |i| Ok::<_, std::io::Error>(chunk(seed, i))),
    ))
}

/// Runs the task.
pub async fn run(args: Args) -> Result<(), Error> {
    let binary = build_release()?;
    let dir = tempfile::tempdir()?;
    let s3 = match args.backend {
        Backend::S3 => Some(oci_test_s3::S3Server::start().await?),
        Backend::Filesystem => None,
    };
    let server = match &s3 {
        Some(s3) => Server::start(&binary, &s3.url("registry"), &s3.env()).await?,
        None => Server::start(&binary, &dir.path().display().to_string(), &[]).await?,
    };
    println!("backend: {:?}", args.backend);
    let client = reqwest::Client::new();
    let chunks = args.size_mib;
    let mib = chunks as f64;
    println!(
        "idle: VmRSS {} KiB, VmHWM {} KiB",
        server.memory_kib("VmRSS")?,
        server.memory_kib("VmHWM")?
    );

    // Monolithic: POST /v2/<name>/blobs/uploads/?digest=<d> with the body.
    let digest = digest_of(1, chunks);
    let t = Instant::now();
    let r = client
        .post(format!(
            "{}/v2/bench/blobs/uploads/?digest={digest}",
            server.base
        ))
        .header("content-length", chunks * CHUNK as u64)
        .body(body(1, chunks))
        .send()
        .await?;
    if r.status() != 201 {
        return Err(format!("monolithic push: {}", r.status()).into());
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "monolithic POST {} MiB: {:.2} s, {:.0} MiB/s, VmHWM {} KiB",
        chunks,
        secs,
        mib / secs,
        server.memory_kib("VmHWM")?
    );

    // Streamed: POST, one PATCH with the whole body, PUT ?digest=.
    let digest = digest_of(2, chunks);
    let t = Instant::now();
    let r = client
        .post(format!("{}/v2/bench/blobs/uploads/", server.base))
        .send()
        .await?;
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Location")?
        .to_owned();
    let r = client
        .patch(format!("{}{location}", server.base))
        .body(body(2, chunks))
        .send()
        .await?;
    if r.status() != 202 {
        return Err(format!("PATCH: {}", r.status()).into());
    }
    let r = client
        .put(format!("{}{location}?digest={digest}", server.base))
        .send()
        .await?;
    if r.status() != 201 {
        return Err(format!("PUT: {}", r.status()).into());
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "streamed PATCH {} MiB: {:.2} s, {:.0} MiB/s, VmHWM {} KiB",
        chunks,
        secs,
        mib / secs,
        server.memory_kib("VmHWM")?
    );
    println!(
        "peak server RSS (VmHWM): {:.1} MiB",
        server.memory_kib("VmHWM")? as f64 / 1024.0
    );
    Ok(())
}
