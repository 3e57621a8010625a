//! Request routing: every request's path is parsed into a typed endpoint.
//!
//! Run with `cargo bench -p oci-http`.

use std::hint::black_box;

use axum::http::Method;
use criterion::{Criterion, criterion_group, criterion_main};
use oci_http::Endpoint;
use oci_types::Digest;

fn routing(c: &mut Criterion) {
    let digest = Digest::of(b"blob");
    let paths = [
        ("base", "/v2/".to_owned()),
        (
            "manifest_tag",
            "/v2/library/ubuntu/manifests/22.04".to_owned(),
        ),
        (
            "manifest_digest",
            format!("/v2/team/app/manifests/{digest}"),
        ),
        ("blob", format!("/v2/org/team/app/blobs/{digest}")),
        (
            "upload",
            "/v2/team/app/blobs/uploads/8d2f4c2e-5b8a-4f4e-9a61-0a9d0b3f2c11".to_owned(),
        ),
        ("tags", "/v2/a/b/c/d/tags/list".to_owned()),
    ];
    for (name, path) in paths {
        c.bench_function(&format!("endpoint_parse/{name}"), |b| {
            b.iter(|| Endpoint::parse(&Method::GET, black_box(&path)))
        });
    }
}

criterion_group!(benches, routing);
criterion_main!(benches);
