//! The OCI distribution data model: everything the registry parses from a
//! request, validated once, with no I/O and no async.
//!
//! - [`Digest`] and [`DigestHasher`]: content addresses (image-spec
//!   "Digests"), sha256 and sha512, with a streaming hasher whose state can be
//!   saved and restored so an upload survives a restart.
//! - [`RepositoryName`], [`Tag`], [`Reference`]: the `<name>` and
//!   `<reference>` path components of distribution-spec.
//! - [`manifest`]: classification and validation of OCI image manifests and
//!   indexes, Docker schema2 manifests and manifest lists.
//! - [`ErrorCode`]: the spec's error codes with their wire strings.
//! - [`ContentRange`], [`ByteRange`], [`Pagination`]: request parameters.
//!
//! Every parser returns [`Error`]; the HTTP layer maps it to a spec error code.

mod digest;
mod error;
mod error_code;
pub mod manifest;
pub mod media_type;
mod name;
mod pagination;
mod pattern;
mod range;
mod reference;
mod tag;

pub use crate::digest::{Digest, DigestAlgorithm, DigestHasher};
pub use error::Error;
pub use error_code::ErrorCode;
pub use manifest::{Descriptor, ManifestKind, ParsedManifest};
pub use name::RepositoryName;
pub use pagination::Pagination;
pub use pattern::{RepositoryPattern, TagPattern};
pub use range::{ByteRange, ContentRange};
pub use reference::Reference;
pub use tag::Tag;
