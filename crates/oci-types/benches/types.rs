//! Hot paths of the data model: hashing uploaded bytes, parsing digests and
//! names from every request path, and validating pushed manifests.
//!
//! Run with `cargo bench -p oci-types`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use oci_types::{Digest, DigestAlgorithm, DigestHasher, ParsedManifest, RepositoryName, Tag};

fn hashing(c: &mut Criterion) {
    let data = vec![0x5au8; 1 << 20];
    let mut group = c.benchmark_group("digest_hasher");
    group.throughput(Throughput::Bytes(data.len() as u64));
    for algorithm in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
        group.bench_function(format!("{algorithm}_1MiB"), |b| {
            b.iter(|| {
                let mut h = DigestHasher::new(algorithm);
                h.update(black_box(&data));
                h.finalize()
            })
        });
    }
    group.finish();
    c.bench_function("digest_hasher/save_restore", |b| {
        let mut h = DigestHasher::new(DigestAlgorithm::Sha256);
        h.update(&data[..1000]);
        b.iter(|| DigestHasher::restore(DigestAlgorithm::Sha256, &black_box(&h).save()))
    });
}

fn parsing(c: &mut Criterion) {
    let digest = Digest::of(b"x").to_string();
    c.bench_function("parse/digest", |b| {
        b.iter(|| black_box(digest.as_str()).parse::<Digest>())
    });
    c.bench_function("parse/repository_name", |b| {
        b.iter(|| black_box("library/some-team/app_server.v2").parse::<RepositoryName>())
    });
    c.bench_function("parse/tag", |b| {
        b.iter(|| black_box("v1.2.3-alpine_amd64").parse::<Tag>())
    });
}

fn manifest(layers: usize) -> String {
    let layer = |i: usize| {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
            Digest::of(format!("layer{i}").as_bytes()),
            1000 + i
        )
    };
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1469}},"layers":[{}],"annotations":{{"org.opencontainers.image.created":"2026-11-22T00:00:00Z"}}}}"#,
        Digest::of(b"config"),
        (0..layers).map(layer).collect::<Vec<_>>().join(",")
    )
}

fn index(children: usize) -> String {
    let child = |i: usize| {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"arch{i}","os":"linux"}}}}"#,
            Digest::of(format!("child{i}").as_bytes()),
            500 + i
        )
    };
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        (0..children).map(child).collect::<Vec<_>>().join(",")
    )
}

fn manifests(c: &mut Criterion) {
    for (name, body) in [
        ("image_5_layers", manifest(5)),
        ("image_50_layers", manifest(50)),
        ("index_10_platforms", index(10)),
    ] {
        c.bench_function(&format!("manifest_parse/{name}"), |b| {
            b.iter_batched(
                || body.clone().into_bytes(),
                |bytes| ParsedManifest::parse(black_box(&bytes), None).map(|m| m.size),
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, hashing, parsing, manifests);
criterion_main!(benches);
