//! The JSON of a manifest as it arrives, deserialised straight into typed
//! values with bounded memory.
//!
//! A manifest body is up to 4 MiB of untrusted JSON. Parsing it into a DOM
//! (`serde_json::Value`) first costs tens of bytes per JSON value: half a
//! million `{}` in a `layers` array took 90 MiB. Here nothing is built that
//! the registry does not keep:
//!
//! - descriptor lists hold at most [`MAX_DESCRIPTORS`] entries and the
//!   manifest's own annotations at most [`MAX_ANNOTATIONS`]; the first
//!   entry over a limit ends parsing;
//! - what is only validated (a descriptor's `urls`, `annotations`,
//!   `platform`, `data`) is checked as it streams past and never stored;
//! - unknown fields are skipped without being built;
//! - nesting is bounded by serde_json's recursion limit (128).
//!
//! So the memory a parse takes is at most a small multiple of the body's
//! size, whatever its shape (`tests/parse_memory.rs` measures it).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::digest::Digest;

/// Most descriptors in one list (`layers`, `manifests`): far above any
/// real image (Docker caps layers at 127) or index.
pub const MAX_DESCRIPTORS: usize = 10_000;

/// Most entries in a manifest's top-level `annotations`.
pub const MAX_ANNOTATIONS: usize = 4_096;

/// The fields of any supported manifest; which must be present depends on
/// the kind and is checked by the caller.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Document {
    pub(super) schema_version: Option<u64>,
    pub(super) media_type: Option<String>,
    pub(super) artifact_type: Option<String>,
    pub(super) config: Option<WireDescriptor>,
    pub(super) layers: Option<Descriptors>,
    pub(super) manifests: Option<Descriptors>,
    pub(super) subject: Option<WireDescriptor>,
    pub(super) annotations: Option<Annotations>,
}

/// A descriptor (image-spec "Descriptor Properties"): what the registry
/// keeps of it, with the rest validated in passing.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireDescriptor {
    pub(super) media_type: String,
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) artifact_type: Option<String>,
    #[serde(default, rename = "urls")]
    _urls: Option<Strings>,
    #[serde(default, rename = "annotations")]
    _annotations: Option<StringMap>,
    #[serde(default, rename = "data")]
    _data: Option<Str>,
    #[serde(default, rename = "platform")]
    _platform: Option<Platform>,
}

/// image-index "platform": `architecture` and `os` are required strings.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Platform {
    #[serde(rename = "architecture")]
    _architecture: Str,
    #[serde(rename = "os")]
    _os: Str,
    #[serde(default, rename = "os.version")]
    _os_version: Option<Str>,
    #[serde(default, rename = "os.features")]
    _os_features: Option<Strings>,
    #[serde(default, rename = "variant")]
    _variant: Option<Str>,
    #[serde(default, rename = "features")]
    _features: Option<Strings>,
}

/// A descriptor list of at most [`MAX_DESCRIPTORS`] entries.
#[derive(Debug)]
pub(super) struct Descriptors(pub(super) Vec<WireDescriptor>);

impl<'de> Deserialize<'de> for Descriptors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Descriptors;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of at most {MAX_DESCRIPTORS} descriptors")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Descriptors, A::Error> {
                // Never trust a size hint for an allocation.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(d) = seq.next_element()? {
                    if out.len() == MAX_DESCRIPTORS {
                        return Err(de::Error::custom(format!(
                            "more than {MAX_DESCRIPTORS} descriptors"
                        )));
                    }
                    out.push(d);
                }
                Ok(Descriptors(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A manifest's own annotations: string to string, at most
/// [`MAX_ANNOTATIONS`] entries.
#[derive(Debug)]
pub(super) struct Annotations(pub(super) BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Annotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Annotations;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an object of at most {MAX_ANNOTATIONS} string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Annotations, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if out.len() == MAX_ANNOTATIONS {
                        return Err(de::Error::custom(format!(
                            "more than {MAX_ANNOTATIONS} annotations"
                        )));
                    }
                    out.insert(k, v);
                }
                Ok(Annotations(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON string, checked and not kept.
#[derive(Debug)]
struct Str;

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Str, E> {
                Ok(Str)
            }
        }
        d.deserialize_str(V)
    }
}

/// An array of strings, checked and not kept.
#[derive(Debug)]
struct Strings;

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
                while seq.next_element::<Str>()?.is_some() {}
                Ok(Strings)
            }
        }
        d.deserialize_seq(V)
    }
}

/// An object of string values, checked and not kept.
#[derive(Debug)]
struct StringMap;

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringMap, A::Error> {
                while map.next_entry::<Str, Str>()?.is_some() {}
                Ok(StringMap)
            }
        }
        d.deserialize_map(V)
    }
}
