//! The pull-through cache's side facing upstream registries.
//!
//! [`Upstream`] is a client of one upstream registry (Docker Hub, ghcr.io,
//! another instance of this registry): it fetches manifests (HEAD or GET,
//! by tag or digest) and streams blobs, following the Docker token flow of
//! distribution's `docs/spec/auth/token.md` when the upstream answers 401
//! with a `Bearer` challenge (anonymously, or with the configured
//! credentials), or answering a `Basic` challenge with them. Tokens are
//! cached per scope until shortly before they expire. A 429 is reported
//! with its `Retry-After`. Manifests are bounded in size and, fetched by
//! digest, verified against it.
//!
//! Serving proxied repositories from storage and caching what this client
//! fetches is the next layer's work (see issue 13); this crate does no I/O
//! but upstream HTTP.

mod challenge;
mod error;
mod upstream;

pub use challenge::Challenge;
pub use error::{ProxyError, Result};
pub use upstream::{MANIFEST_LIMIT, Upstream, UpstreamBlob, UpstreamManifest, UpstreamOptions};
