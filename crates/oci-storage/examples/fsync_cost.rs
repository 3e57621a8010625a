//! What durability costs on the filesystem backend: times 1,000 tag writes
//! (`manifest_put` by tag of one stored manifest: data, link, tag and
//! catalog marker each written whole) with `StorageOptions::fsync` on and
//! off, in a temporary directory (or under the directory given as the first
//! argument, to measure a particular disk).
//!
//! `cargo run --release -p oci-storage --example fsync_cost [dir]`

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use oci_storage::{Storage, StorageOptions};
use oci_types::{Digest, Reference, RepositoryName};

const WRITES: usize = 1_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args().nth(1).map(std::path::PathBuf::from);
    for fsync in [true, false] {
        let dir = match &base {
            Some(b) => tempfile::tempdir_in(b)?,
            None => tempfile::tempdir()?,
        };
        let mut options = StorageOptions::default();
        options.fsync = fsync;
        let storage = Storage::open_with_options(dir.path().to_str().unwrap(), options).await?;
        let name: RepositoryName = "bench/tags".parse()?;
        let config = Bytes::from_static(b"{}");
        let config_digest = Digest::of(&config);
        let body = futures::stream::iter([Ok(config.clone())]).boxed();
        storage.blob_put(&name, &config_digest, body).await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci_types::media_type::OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.to_string(),
                "size": config.len(),
            },
            "layers": [],
        });
        let manifest = Bytes::from(serde_json::to_vec(&manifest)?);
        let started = Instant::now();
        for i in 0..WRITES {
            let tag = Reference::Tag(format!("t{i}").parse()?);
            storage
                .manifest_put(
                    &name,
                    &tag,
                    manifest.clone(),
                    Some(oci_types::media_type::OCI_MANIFEST),
                )
                .await?;
        }
        let took = started.elapsed();
        println!(
            "fsync={fsync}: {WRITES} tag writes in {:.2?} ({:.0} µs each)",
            took,
            took.as_secs_f64() * 1e6 / WRITES as f64
        );
    }
    Ok(())
}
