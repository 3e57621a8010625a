//! The large-blob workload: pushes the ways clients do, pulls whole and by
//! range.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, stream};
use oci_types::{Digest, DigestAlgorithm, DigestHasher};

use super::target::Target;
use crate::server::Error;

/// Size of the slices a body is handed to the HTTP client in (no copies:
/// each is a view of the shared buffer).
const SLICE: usize = 1 << 20;

/// Size of the part of a blob that differs between pushes, so that no push
/// finds its blob already stored.
const HEAD: usize = 1 << 20;

/// The ways a blob is pushed (distribution-spec "Pushing blobs").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    /// POST for a session, then one PUT `?digest=` carrying the whole body
    /// ("Pushing a blob monolithically", the POST-then-PUT form).
    Monolithic,
    /// POST, one PATCH streaming the whole body without a length, then an
    /// empty PUT `?digest=` (what docker and containerd do).
    Streamed,
    /// POST, PATCHes of this many bytes with `Content-Range`, then an empty
    /// PUT ("Pushing a blob in chunks").
    Chunked(usize),
}

impl PushKind {
    /// The short label used in reports.
    pub fn label(self) -> String {
        match self {
            Self::Monolithic => "monolithic PUT".into(),
            Self::Streamed => "streamed PATCH + PUT".into(),
            Self::Chunked(n) => format!("chunked PATCH {} MiB", n >> 20),
        }
    }
}

/// Deterministic incompressible bytes (xorshift64*).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A blob to push: a small head unique to the blob, then a large tail shared
/// by every blob of the run (generated once).
#[derive(Clone)]
pub struct Blob {
    head: Bytes,
    tail: Bytes,
    /// Digest of head + tail.
    pub digest: Digest,
}

impl Blob {
    /// The blob with head `seed` and the shared `tail`.
    pub fn new(seed: u64, tail: &Bytes) -> Self {
        let head = Bytes::from(random_bytes(seed, HEAD));
        let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        hasher.update(&head);
        hasher.update(tail);
        Self {
            head,
            tail: tail.clone(),
            digest: hasher.finalize(),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        (self.head.len() + self.tail.len()) as u64
    }

    /// Bytes `start..end` as slices of at most [`SLICE`] bytes.
    fn slices(&self, start: usize, end: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut pos = start;
        while pos < end {
            let (part, offset) = if pos < self.head.len() {
                (&self.head, pos)
            } else {
                (&self.tail, pos - self.head.len())
            };
            let n = (part.len() - offset).min(end - pos).min(SLICE);
            out.push(part.slice(offset..offset + n));
            pos += n;
        }
        out
    }

    /// A streaming request body of bytes `start..end`.
    fn body(&self, start: usize, end: usize) -> reqwest::Body {
        let slices = self.slices(start, end);
        reqwest::Body::wrap_stream(stream::iter(
            slices.into_iter().map(Ok::<_, std::io::Error>),
        ))
    }
}

/// Resolves an upload `Location` (relative or absolute) and adds a query
/// parameter.
pub fn with_query(target: &Target, location: &str, query: &str) -> String {
    let url = if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{}{location}", target.base)
    };
    if query.is_empty() {
        url
    } else if url.contains('?') {
        format!("{url}&{query}")
    } else {
        format!("{url}?{query}")
    }
}

pub fn location(r: &reqwest::Response, what: &str) -> Result<String, Error> {
    Ok(r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("{what}: no Location"))?
        .to_owned())
}

pub async fn expect(
    r: reqwest::Response,
    status: u16,
    what: &str,
) -> Result<reqwest::Response, Error> {
    if r.status().as_u16() == status {
        Ok(r)
    } else {
        let got = r.status();
        let body = r.text().await.unwrap_or_default();
        Err(format!("{what}: expected {status}, got {got}: {body}").into())
    }
}

/// Pushes `blob` to `repo` the `kind` way; returns the time from the POST to
/// the 201 of the final PUT.
pub async fn push(
    client: &reqwest::Client,
    target: &Target,
    repo: &str,
    blob: &Blob,
    kind: PushKind,
) -> Result<Duration, Error> {
    let len = blob.len() as usize;
    let digest = format!("digest={}", blob.digest);
    let started = Instant::now();
    let r = client
        .post(format!("{}/v2/{repo}/blobs/uploads/", target.base))
        .send()
        .await?;
    let r = expect(r, 202, "POST upload").await?;
    let mut loc = location(&r, "POST upload")?;
    let r = match kind {
        PushKind::Monolithic => {
            client
                .put(with_query(target, &loc, &digest))
                .header("content-type", "application/octet-stream")
                .header("content-length", len)
                .body(blob.body(0, len))
                .send()
                .await?
        }
        PushKind::Streamed => {
            let r = client
                .patch(with_query(target, &loc, ""))
                .header("content-type", "application/octet-stream")
                .body(blob.body(0, len))
                .send()
                .await?;
            loc = location(&expect(r, 202, "PATCH").await?, "PATCH")?;
            client.put(with_query(target, &loc, &digest)).send().await?
        }
        PushKind::Chunked(size) => {
            let mut start = 0;
            while start < len {
                let end = (start + size).min(len);
                let r = client
                    .patch(with_query(target, &loc, ""))
                    .header("content-type", "application/octet-stream")
                    .header("content-range", format!("{start}-{}", end - 1))
                    .header("content-length", end - start)
                    .body(blob.body(start, end))
                    .send()
                    .await?;
                loc = location(&expect(r, 202, "PATCH chunk").await?, "PATCH chunk")?;
                start = end;
            }
            client.put(with_query(target, &loc, &digest)).send().await?
        }
    };
    let r = expect(r, 201, "PUT ?digest=").await?;
    let elapsed = started.elapsed();
    let echoed = r
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok());
    if echoed.is_some_and(|d| d != blob.digest.to_string()) {
        return Err(format!("push answered digest {echoed:?}, pushed {}", blob.digest).into());
    }
    Ok(elapsed)
}

/// Deletes a pushed blob (between rounds, to keep the disk from filling).
pub async fn delete(
    client: &reqwest::Client,
    target: &Target,
    repo: &str,
    digest: &Digest,
) -> Result<(), Error> {
    let r = client
        .delete(format!("{}/v2/{repo}/blobs/{digest}", target.base))
        .send()
        .await?;
    expect(r, 202, "DELETE blob").await.map(drop)
}

/// Pulls the blob with curl, whole or by consecutive `Range` requests of
/// `range` bytes on one connection, into /dev/null; checks status codes and
/// byte counts; returns the time from starting curl to its exit.
///
/// curl, not this process's HTTP client: reading a blob through reqwest or
/// hyper took about three times the CPU curl takes, and on a 2-core machine
/// that capped pulls at ~1.6 GB/s, a figure of the client, not the registry.
pub async fn pull(
    target: &Target,
    repo: &str,
    blob: &Blob,
    range: Option<u64>,
) -> Result<Duration, Error> {
    pull_timed(target, repo, blob, range).await.map(|p| p.took)
}

/// The times of one [`pull_timed`].
#[derive(Debug, Clone, Copy)]
pub struct Pulled {
    /// From starting curl to its exit.
    pub took: Duration,
    /// From starting curl to the first byte of the first response (curl's
    /// `time_starttransfer`: the connection, the request and the server's
    /// wait for its answer).
    pub first_byte: Duration,
}

/// [`pull`], also giving the time to the first byte.
pub async fn pull_timed(
    target: &Target,
    repo: &str,
    blob: &Blob,
    range: Option<u64>,
) -> Result<Pulled, Error> {
    let url = format!("{}/v2/{repo}/blobs/{}", target.base, blob.digest);
    let len = blob.len();
    let ranges: Vec<Option<(u64, u64)>> = match range {
        None => vec![None],
        Some(size) => (0..len.div_ceil(size))
            .map(|i| Some((i * size, ((i + 1) * size).min(len))))
            .collect(),
    };
    let mut cmd = tokio::process::Command::new("curl");
    for (i, r) in ranges.iter().enumerate() {
        if i > 0 {
            cmd.arg("--next");
        }
        cmd.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{time_starttransfer}\\n",
        ]);
        if let Some((start, end)) = r {
            cmd.args(["-r", &format!("{start}-{}", end - 1)]);
        }
        cmd.arg(&url);
    }
    let started = Instant::now();
    let output = cmd
        .output()
        .await
        .map_err(|e| format!("running curl (Debian package curl): {e}"))?;
    let elapsed = started.elapsed();
    let report = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = report.lines().collect();
    if !output.status.success() || lines.len() != ranges.len() {
        return Err(format!("curl GET {url}: {} {report}", output.status).into());
    }
    let mut first_byte = None;
    for (line, r) in lines.iter().zip(&ranges) {
        let (status, expected) = match r {
            None => ("200", len),
            Some((start, end)) => ("206", end - start),
        };
        let (counts, starttransfer) = line.rsplit_once(' ').unwrap_or((line, ""));
        if counts != format!("{status} {expected}") {
            return Err(format!(
                "curl GET {url} {r:?}: got {line:?}, expected {status} {expected}"
            )
            .into());
        }
        if first_byte.is_none() {
            let seconds: f64 = starttransfer
                .parse()
                .map_err(|e| format!("curl GET {url}: time_starttransfer {line:?}: {e}"))?;
            first_byte = Some(Duration::from_secs_f64(seconds));
        }
    }
    Ok(Pulled {
        took: elapsed,
        first_byte: first_byte.unwrap_or_default(),
    })
}

/// Pulls the whole blob through this process's client and checks it
/// against its digest (untimed).
pub async fn verify(
    client: &reqwest::Client,
    target: &Target,
    repo: &str,
    blob: &Blob,
) -> Result<(), Error> {
    let url = format!("{}/v2/{repo}/blobs/{}", target.base, blob.digest);
    let r = expect(client.get(&url).send().await?, 200, "GET blob").await?;
    let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
    let mut body = r.bytes_stream();
    let mut got = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        got += chunk.len() as u64;
    }
    if got != blob.len() || hasher.finalize() != blob.digest {
        return Err(format!("GET {url}: {got} bytes that do not match the digest").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_deterministic_and_sized() {
        assert_eq!(random_bytes(7, 1000), random_bytes(7, 1000));
        assert_ne!(random_bytes(7, 64), random_bytes(8, 64));
        assert_eq!(random_bytes(1, 13).len(), 13);
    }

    #[test]
    fn slices_cover_the_range_across_head_and_tail() {
        let tail = Bytes::from(random_bytes(0, 3 * SLICE + 5));
        let blob = Blob::new(1, &tail);
        let whole: Vec<u8> = blob.head.iter().chain(tail.iter()).copied().collect();
        for (start, end) in [
            (0, whole.len()),
            (HEAD - 3, HEAD + 7),
            (5, 5),
            (SLICE + 1, 3 * SLICE),
        ] {
            let joined: Vec<u8> = blob.slices(start, end).concat();
            assert_eq!(joined, whole[start..end], "{start}..{end}");
            assert!(blob.slices(start, end).iter().all(|s| s.len() <= SLICE));
        }
        let mut h = DigestHasher::new(DigestAlgorithm::Sha256);
        h.update(&whole);
        assert_eq!(h.finalize(), blob.digest);
    }

    #[test]
    fn locations_get_the_query_appended() {
        let t = Target::remote("peer", "http://h:1".into(), None);
        assert_eq!(
            with_query(&t, "/v2/a/blobs/uploads/x", "digest=d"),
            "http://h:1/v2/a/blobs/uploads/x?digest=d"
        );
        assert_eq!(
            with_query(&t, "http://o/u?_state=s", "digest=d"),
            "http://o/u?_state=s&digest=d"
        );
        assert_eq!(with_query(&t, "/u", ""), "http://h:1/u");
    }
}
