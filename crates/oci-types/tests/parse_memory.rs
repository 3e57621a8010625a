//! The heap a manifest parse takes is bounded by the body's size, whatever
//! the body's shape: hostile manifests (half a million tiny objects, deep
//! nesting, huge annotation maps) are refused without building them.
//!
//! Measured with a peak-tracking global allocator, so this file holds one
//! test that runs the cases one after another.

use oci_types::ParsedManifest;
use oci_types::manifest::{MAX_ANNOTATIONS, MAX_DESCRIPTORS, MAX_MANIFEST_SIZE};
use peak_alloc::PeakAlloc;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn digest(i: usize) -> String {
    format!("sha256:{i:064x}")
}

fn descriptor(i: usize, extra: &str) -> String {
    format!(
        r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{i}{extra}}}"#,
        digest(i)
    )
}

/// An image manifest with `layers` as given and `extra` top-level fields.
fn manifest(layers: &str, extra: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{layers}]{extra}}}"#,
        descriptor(0, "")
    )
    .into_bytes()
}

/// Fills a JSON array with `item` (comma-separated) up to about `bytes`.
fn repeat(item: &str, bytes: usize) -> String {
    let n = bytes / (item.len() + 1);
    vec![item; n].join(",")
}

/// Peak heap growth while `f` runs, in bytes.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let out = f();
    (out, HEAP.peak_usage().saturating_sub(before))
}

#[test]
fn parsing_takes_memory_bounded_by_the_body() {
    let near_max = MAX_MANIFEST_SIZE - 4096;
    let many = |n: usize, extra: &str| {
        (1..=n)
            .map(|i| descriptor(i, extra))
            .collect::<Vec<_>>()
            .join(",")
    };
    let tiny_annotations = format!(
        r#","annotations":{{{}}}"#,
        (0..MAX_ANNOTATIONS + 1)
            .map(|i| format!(r#""{i}":"""#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let nested = format!(
        r#","x":{}{}"#,
        "[".repeat(near_max / 2),
        "]".repeat(near_max / 2)
    );
    let per_layer_annotations = format!(
        r#","annotations":{{{}}}"#,
        repeat(r#""a":"b""#, 300).replace(r#""a""#, r#""k""#)
    );
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("empty objects", manifest(&repeat("{}", near_max), "")),
        (
            "tiny descriptors",
            manifest(
                &repeat(r#"{"mediaType":"","digest":"sha256:0","size":0}"#, near_max),
                "",
            ),
        ),
        (
            "too many descriptors",
            manifest(&many(MAX_DESCRIPTORS + 1, ""), ""),
        ),
        ("too many annotations", manifest("", &tiny_annotations)),
    ];
    let accepted: Vec<(&str, Vec<u8>)> = vec![
        (
            "unknown fields",
            manifest(
                &many(2000, &format!(r#","x":[{}]"#, repeat("{}", 1500))),
                "",
            ),
        ),
        (
            "strings in urls",
            manifest(
                &descriptor(1, &format!(r#","urls":[{}]"#, repeat(r#""""#, near_max))),
                "",
            ),
        ),
        (
            "numbers",
            manifest("", &format!(r#","x":[{}]"#, repeat("1", near_max))),
        ),
        // Unknown fields are valid JSON the spec allows; they are skipped
        // without recursion or allocation, however deep.
        ("deep nesting in an unknown field", manifest("", &nested)),
        ("most descriptors", manifest(&many(MAX_DESCRIPTORS, ""), "")),
        (
            "annotated layers",
            manifest(&many(5000, &per_layer_annotations), ""),
        ),
    ];
    let mut report = Vec::new();
    for (what, body) in hostile.iter().chain(&accepted) {
        assert!(
            body.len() <= MAX_MANIFEST_SIZE,
            "{what}: {} bytes",
            body.len()
        );
        let (parsed, peak) = peak_during(|| ParsedManifest::parse(body, Some(OCI_MANIFEST)));
        let (dom, dom_peak) =
            peak_during(|| serde_json::from_slice::<serde_json::Value>(body).ok());
        drop(dom);
        let should_accept = accepted.iter().any(|(w, _)| w == what);
        assert_eq!(parsed.is_ok(), should_accept, "{what}: {:?}", parsed.err());
        report.push(format!(
            "{what}: body {} KiB, parse peak {} KiB, a JSON DOM {} KiB",
            body.len() >> 10,
            peak >> 10,
            dom_peak >> 10
        ));
        // A parsed manifest keeps about what its descriptors say; nothing
        // else grows faster than the body.
        let bound = 3 * body.len() + (1 << 20);
        assert!(
            peak <= bound,
            "{what}: peak {peak} > {bound}\n{}",
            report.join("\n")
        );
    }
    // The bound discriminates: a DOM of the hostile bodies exceeds it.
    let (dom, dom_peak) =
        peak_during(|| serde_json::from_slice::<serde_json::Value>(&hostile[0].1));
    drop(dom);
    assert!(
        dom_peak > 3 * hostile[0].1.len() + (1 << 20),
        "{}",
        report.join("\n")
    );
    println!("{}", report.join("\n"));
}
