//! Manifest parsing: never panics; what is accepted has a digest of the
//! exact bytes, a kind matching its media type, and bounded descriptor
//! lists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_types::manifest::{MAX_ANNOTATIONS, MAX_DESCRIPTORS};
use oci_types::{Digest, ManifestKind, ParsedManifest};

const TYPES: [Option<&str>; 6] = [
    None,
    Some("application/json"),
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
];

fuzz_target!(|input: (u8, &[u8])| {
    let (t, body) = input;
    let content_type = TYPES[usize::from(t) % TYPES.len()];
    if let Ok(m) = ParsedManifest::parse(body, content_type) {
        assert_eq!(m.digest, Digest::of(body));
        assert_eq!(m.size, body.len() as u64);
        assert_eq!(ManifestKind::from_media_type(&m.media_type), Some(m.kind));
        assert!(m.layers.len() <= MAX_DESCRIPTORS && m.manifests.len() <= MAX_DESCRIPTORS);
        assert!(m.annotations.as_ref().is_none_or(|a| a.len() <= MAX_ANNOTATIONS));
        if m.kind.is_index() {
            assert!(m.config.is_none() && m.layers.is_empty());
        } else {
            assert!(m.config.is_some() && m.manifests.is_empty());
        }
        let _ = m.referrer_descriptor();
    }
});
