//! The `hostile` workload: what clients that do not play fair cost.
//!
//! - slowloris: connections that send half a request head and then
//!   nothing; how many are still open after the header timeout;
//! - manifest bomb: concurrent 4 MiB manifests whose `layers` hold over a
//!   million empty objects; the server's peak RSS, and how long a normal
//!   manifest GET takes in their midst;
//! - small blob GETs one after another on one keep-alive connection (the
//!   way containerd fetches configs and signatures): requests per second.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::seed::{ACCEPT, Image, MANIFEST_TYPE};
use super::target::Target;
use crate::server::Error;

/// Opens `count` connections to `target` that each send half a request
/// head, waits `wait`, and returns how many the server still holds open.
pub async fn slowloris(target: &Target, count: usize, wait: Duration) -> Result<usize, Error> {
    let addr = target.base.trim_start_matches("http://").to_owned();
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        let Ok(mut s) = TcpStream::connect(&addr).await else {
            break; // the server (or this process) ran out of descriptors
        };
        if s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .is_ok()
        {
            open.push(s);
        }
    }
    tokio::time::sleep(wait).await;
    let still_open = join_all(open.iter_mut().map(|s| async move {
        let mut buf = [0u8; 1];
        // Closed: EOF or an error now. Open: nothing to read yet.
        tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf))
            .await
            .is_err()
    }))
    .await;
    Ok(still_open.into_iter().filter(|open| *open).count())
}

/// What the manifest bomb did to a registry.
pub struct Bomb {
    /// Answers that were not a 4xx (a registry must refuse every one).
    pub accepted: usize,
    /// Time of one normal manifest GET sent while the bomb was in flight.
    pub normal_get: Duration,
}

/// Sends `concurrency` hostile 4 MiB manifests at once to `repo` (which
/// holds `image` as `latest`), and one normal manifest GET in their midst.
pub async fn manifest_bomb(
    client: &reqwest::Client,
    target: &Target,
    repo: &str,
    image: &Image,
    concurrency: usize,
) -> Result<Bomb, Error> {
    let filler = vec!["{}"; 1_398_000].join(",");
    let bomb = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[{filler}]}}"#,
        image.blob
    ));
    let sends: Vec<_> = (0..concurrency)
        .map(|i| {
            let req = client
                .put(format!("{}/v2/{repo}/manifests/bomb{i}", target.base))
                .header("content-type", MANIFEST_TYPE)
                .body(bomb.clone());
            tokio::spawn(async move { req.send().await.map(|r| r.status()) })
        })
        .collect();
    // Let the bodies start arriving, then time a normal request.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let normal = client
        .get(format!("{}/v2/{repo}/manifests/latest", target.base))
        .header("accept", ACCEPT)
        .send()
        .await?;
    let ok = normal.status().is_success();
    normal.bytes().await?;
    let normal_get = started.elapsed();
    if !ok {
        return Err("the normal manifest GET failed during the bomb".into());
    }
    let mut accepted = 0;
    for send in sends {
        match send.await? {
            Ok(status) if status.is_client_error() => {}
            // A reset connection is a refusal too.
            Err(_) => {}
            Ok(_) => accepted += 1,
        }
    }
    Ok(Bomb {
        accepted,
        normal_get,
    })
}

/// GETs the blob at `path` one request after another on one keep-alive
/// connection for `duration`; returns requests per second.
pub async fn keepalive_gets(target: &Target, path: &str, duration: Duration) -> Result<f64, Error> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let url = format!("{}{path}", target.base);
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < duration {
        let r = client.get(&url).send().await?;
        if !r.status().is_success() {
            return Err(format!("GET {path}: {}", r.status()).into());
        }
        r.bytes().await?;
        done += 1;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}
