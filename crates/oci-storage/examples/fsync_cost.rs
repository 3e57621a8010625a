//! What durability costs on the filesystem backend: times 1,000 tag writes
//! with `StorageOptions::fsync` on and off, in a temporary directory (or
//! under the directory given as the first argument, to measure a
//! particular disk): `tag_put` (reverse index entry and tag, each written
//! whole) and `manifest_put` by tag of one stored manifest (also its data,
//! link and catalog marker), as a push does.
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
        let media_type = Some(oci_types::media_type::OCI_MANIFEST);
        let digest = Digest::of(&manifest);
        let by_digest = Reference::Digest(digest.clone());
        storage
            .manifest_put(&name, &by_digest, manifest.clone(), media_type)
            .await?;
        let started = Instant::now();
        for i in 0..WRITES {
            storage
                .tag_put(&name, &format!("p{i}").parse()?, &digest)
                .await?;
        }
        report(fsync, "tag_put", started.elapsed());
        let started = Instant::now();
        for i in 0..WRITES {
            let tag = Reference::Tag(format!("t{i}").parse()?);
            storage
                .manifest_put(&name, &tag, manifest.clone(), media_type)
                .await?;
        }
        report(fsync, "manifest_put by tag", started.elapsed());
    }
    Ok(())
}

fn report(fsync: bool, what: &str, took: std::time::Duration) {
    println!(
        "fsync={fsync}: {WRITES} x {what} in {took:.2?} ({:.0} µs each)",
        took.as_secs_f64() * 1e6 / WRITES as f64
    );
}
