//! Manifest classification and validation.
//!
//! A manifest PUT carries a body and a `Content-Type`. [`ParsedManifest::parse`]
//! decides which of the four supported formats it is, checks it is
//! well-formed, and extracts what the registry needs: the blobs and child
//! manifests it references, its `subject`, and the artifact type it reports
//! to the referrers API. The body is deserialised straight into typed
//! values with bounded memory (the private `wire` module holds the limits).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, clip};
use crate::media_type::{self, essence};

mod wire;

pub use wire::{MAX_ANNOTATIONS, MAX_DESCRIPTORS};

/// Largest manifest the registry accepts (distribution-spec "Pushing
/// Manifests": registries SHOULD accept at least 4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// The manifest formats the registry stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ManifestKind {
    /// `application/vnd.oci.image.manifest.v1+json`
    OciImage,
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.docker.distribution.manifest.v2+json`
    DockerImage,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerList,
}

impl ManifestKind {
    /// The kind's canonical media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::OciImage => media_type::OCI_MANIFEST,
            Self::OciIndex => media_type::OCI_INDEX,
            Self::DockerImage => media_type::DOCKER_MANIFEST,
            Self::DockerList => media_type::DOCKER_MANIFEST_LIST,
        }
    }

    /// The kind for a media type, if it is one of the four.
    pub fn from_media_type(mt: &str) -> Option<Self> {
        match essence(mt) {
            media_type::OCI_MANIFEST => Some(Self::OciImage),
            media_type::OCI_INDEX => Some(Self::OciIndex),
            media_type::DOCKER_MANIFEST => Some(Self::DockerImage),
            media_type::DOCKER_MANIFEST_LIST => Some(Self::DockerList),
            _ => None,
        }
    }

    /// True for the kinds that list other manifests.
    pub fn is_index(self) -> bool {
        matches!(self, Self::OciIndex | Self::DockerList)
    }
}

/// A content descriptor with a validated digest (image-spec "Descriptors").
/// Serialized as the spec's JSON, as the referrers API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Artifact type, for descriptors of artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations, sorted by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl From<wire::WireDescriptor> for Descriptor {
    fn from(d: wire::WireDescriptor) -> Self {
        Self {
            media_type: d.media_type,
            digest: d.digest,
            size: d.size,
            artifact_type: d.artifact_type,
            annotations: None,
        }
    }
}

/// A validated manifest and what the registry needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    /// Which format it is.
    pub kind: ManifestKind,
    /// The media type it is stored and served with.
    pub media_type: String,
    /// The sha256 digest of the exact bytes.
    pub digest: Digest,
    /// Size of the exact bytes.
    pub size: u64,
    /// `artifactType`, if the manifest sets one.
    pub artifact_type: Option<String>,
    /// The config descriptor (image manifests only). Descriptors inside a
    /// manifest carry media type, digest, size and artifact type; their
    /// `urls`, `annotations`, `platform` and `data` are validated, not kept.
    pub config: Option<Descriptor>,
    /// The layers (image manifests only).
    pub layers: Vec<Descriptor>,
    /// The child manifests (indexes only).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to, for the referrers API.
    pub subject: Option<Descriptor>,
    /// Top-level annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Content types that say nothing about the manifest format; the body then
/// decides.
fn is_generic(ct: &str) -> bool {
    matches!(ct, "" | "application/json" | "application/octet-stream")
}

impl ParsedManifest {
    /// Classifies and validates `body`, sent with `content_type`.
    ///
    /// Distribution-spec "Pushing Manifests": when the manifest has a
    /// `mediaType` field it must match the `Content-Type`. Schema 1 manifests
    /// are refused.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Self, Error> {
        if body.len() > MAX_MANIFEST_SIZE {
            return Err(Error::InvalidManifest(format!(
                "larger than {MAX_MANIFEST_SIZE} bytes"
            )));
        }
        let doc: wire::Document = serde_json::from_slice(body)
            .map_err(|e| Error::InvalidManifest(format!("not a manifest: {e}")))?;
        let body_type = doc.media_type.as_deref();
        let header_type = content_type.map(essence).filter(|ct| !is_generic(ct));
        let schema1 = [
            media_type::DOCKER_SCHEMA1,
            media_type::DOCKER_SCHEMA1_SIGNED,
        ];
        if doc.schema_version == Some(1)
            || [body_type, header_type]
                .iter()
                .flatten()
                .any(|t| schema1.contains(t))
        {
            return Err(Error::UnsupportedManifest(
                "Docker schema 1 manifests are not supported; push schema 2 or OCI".into(),
            ));
        }
        if let (Some(b), Some(h)) = (body_type, header_type)
            && b != h
        {
            return Err(Error::InvalidManifest(format!(
                "mediaType {:?} does not match Content-Type {:?}",
                clip(b),
                clip(h)
            )));
        }
        let kind = match body_type.or(header_type) {
            Some(mt) => ManifestKind::from_media_type(mt)
                .ok_or_else(|| Error::UnsupportedManifest(clip(mt)))?,
            None if doc.manifests.is_some() => ManifestKind::OciIndex,
            None if doc.config.is_some() => ManifestKind::OciImage,
            None => {
                return Err(Error::InvalidManifest(
                    "no mediaType and neither config nor manifests".into(),
                ));
            }
        };
        if doc.schema_version != Some(2) {
            return Err(Error::InvalidManifest("schemaVersion must be 2".into()));
        }
        let missing = |field: &str| Error::InvalidManifest(format!("{field} is required"));
        let (config, layers, manifests) = if kind.is_index() {
            let manifests = doc.manifests.ok_or_else(|| missing("manifests"))?;
            (None, Vec::new(), manifests.0)
        } else {
            let config = doc.config.ok_or_else(|| missing("config"))?;
            let layers = doc.layers.ok_or_else(|| missing("layers"))?;
            (Some(config.into()), layers.0, Vec::new())
        };
        Ok(Self {
            kind,
            media_type: kind.media_type().to_owned(),
            digest: Digest::of(body),
            size: body.len() as u64,
            artifact_type: doc.artifact_type,
            config,
            layers: layers.into_iter().map(Descriptor::from).collect(),
            manifests: manifests.into_iter().map(Descriptor::from).collect(),
            subject: doc.subject.map(Descriptor::from),
            annotations: doc.annotations.map(|a| a.0),
        })
    }

    /// Blobs that must exist in the repository before this manifest is
    /// accepted: the config and every distributable layer.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Digest> {
        self.config
            .iter()
            .chain(
                self.layers
                    .iter()
                    .filter(|l| !media_type::is_non_distributable(&l.media_type)),
            )
            .map(|d| &d.digest)
    }

    /// Manifests that must exist in the repository before this index is
    /// accepted.
    pub fn required_manifests(&self) -> impl Iterator<Item = &Digest> {
        self.manifests.iter().map(|d| &d.digest)
    }

    /// The artifact type the referrers API reports for this manifest:
    /// `artifactType`, else the config's media type (distribution-spec
    /// "Listing Referrers").
    pub fn referrer_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }

    /// The descriptor of this manifest as it appears in a referrers list.
    pub fn referrer_descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            artifact_type: self.referrer_artifact_type().map(str::to_owned),
            annotations: self.annotations.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> String {
        Digest::of(s.as_bytes()).to_string()
    }

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":3}},{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"{}","size":3,"urls":["https://x"]}}]{extra}}}"#,
            media_type::OCI_MANIFEST,
            d("config"),
            d("layer"),
            d("foreign"),
        )
    }

    #[test]
    fn parses_oci_image_manifest() {
        let body = image("");
        let m = ParsedManifest::parse(body.as_bytes(), Some(media_type::OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::OciImage);
        assert_eq!(m.digest, Digest::of(body.as_bytes()));
        let blobs: Vec<_> = m.required_blobs().map(ToString::to_string).collect();
        assert_eq!(blobs, vec![d("config"), d("layer")]);
        assert_eq!(
            m.referrer_artifact_type(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(m.subject.is_none());
    }

    #[test]
    fn subject_and_artifact_type() {
        let extra = format!(
            r#","artifactType":"application/vnd.example.sbom","subject":{{"mediaType":"{}","digest":"{}","size":10}},"annotations":{{"a":"b"}}"#,
            media_type::OCI_MANIFEST,
            d("subject")
        );
        let m = ParsedManifest::parse(image(&extra).as_bytes(), None).unwrap();
        assert_eq!(m.subject.as_ref().unwrap().digest.to_string(), d("subject"));
        let r = m.referrer_descriptor();
        assert_eq!(
            r.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(r.annotations.unwrap()["a"], "b");
    }

    #[test]
    fn parses_index_and_docker_list() {
        for (mt, kind) in [
            (media_type::OCI_INDEX, ManifestKind::OciIndex),
            (media_type::DOCKER_MANIFEST_LIST, ManifestKind::DockerList),
        ] {
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{mt}","manifests":[{{"mediaType":"{}","digest":"{}","size":5,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
                media_type::OCI_MANIFEST,
                d("child")
            );
            let m = ParsedManifest::parse(body.as_bytes(), Some(mt)).unwrap();
            assert_eq!(m.kind, kind);
            assert_eq!(m.required_manifests().count(), 1);
            assert_eq!(m.required_blobs().count(), 0);
        }
    }

    #[test]
    fn docker_schema2_image() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":2}},"layers":[]}}"#,
            media_type::DOCKER_MANIFEST,
            d("c")
        );
        let m = ParsedManifest::parse(body.as_bytes(), Some(media_type::DOCKER_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::DockerImage);
        assert_eq!(m.media_type, media_type::DOCKER_MANIFEST);
    }

    #[test]
    fn detects_kind_without_media_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","digest":"{}","size":2}},"layers":[]}}"#,
            d("c")
        );
        let m = ParsedManifest::parse(body.as_bytes(), Some("application/json")).unwrap();
        assert_eq!(m.kind, ManifestKind::OciImage);
        let m = ParsedManifest::parse(body.as_bytes(), Some(media_type::DOCKER_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::DockerImage);
    }

    #[test]
    fn rejects_bad_manifests() {
        let good = image("");
        let cases: Vec<(String, Option<&str>)> =
            vec![
            ("not json".into(), None),
            ("[]".into(), None),
            (good.clone(), Some(media_type::OCI_INDEX)),
            (good.replace("\"schemaVersion\":2", "\"schemaVersion\":3"), None),
            (good.replace(&d("layer"), "sha256:1234"), None),
            (good.replace(&d("layer"), &format!("md5:{}", "0".repeat(32))), None),
            (good.replace("\"size\":3", "\"size\":-3"), None),
            (r#"{"schemaVersion":2}"#.into(), None),
            (r#"{"schemaVersion":2,"mediaType":7}"#.into(), None),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
                    .into(),
                None,
            ),
        ];
        for (body, ct) in cases {
            assert!(
                matches!(
                    ParsedManifest::parse(body.as_bytes(), ct),
                    Err(Error::InvalidManifest(_))
                ),
                "{body} / {ct:?} should be invalid"
            );
        }
        let schema1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(
            ParsedManifest::parse(schema1.as_bytes(), Some(media_type::DOCKER_SCHEMA1_SIGNED)),
            Err(Error::UnsupportedManifest(_))
        ));
        assert!(matches!(
            ParsedManifest::parse(good.as_bytes(), Some("text/plain")),
            Err(Error::InvalidManifest(_))
        ));
        let big = vec![b' '; MAX_MANIFEST_SIZE + 1];
        assert!(ParsedManifest::parse(&big, None).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), ct in proptest::option::of("\\PC*")) {
            let _ = ParsedManifest::parse(&body, ct.as_deref());
        }

        #[test]
        fn json_shaped_input_never_panics(s in r#"\{("[a-zA-Z]{1,12}":("[^"]{0,20}"|[0-9]{1,3}|\[\]|\{\}),?){0,6}\}"#) {
            let _ = ParsedManifest::parse(s.as_bytes(), None);
        }
    }
}
