//! The pull-through cache: repositories under a `[[proxy]]` prefix served
//! from another registry (Docker Hub, ghcr.io, another instance of this
//! registry) and cached in storage as ordinary repositories.
//!
//! - [`Mirrors`] ([`route`](crate::Mirrors::route)) maps a repository name
//!   to its upstream and to the names it has here and there (longest
//!   prefix first; `""` mirrors everything else; Docker Hub's `library/`
//!   normalisation).
//! - [`PullThrough`] serves manifests and blobs from storage, and from
//!   upstream on a miss: manifests by tag are trusted for `tag_ttl`, then
//!   checked with a HEAD; cached copies are served when upstream is down;
//!   cold blobs stream to the client while they are written to storage,
//!   one fetch per digest per process (`fetch`), verified before the last
//!   byte is released.
//! - [`Upstream`] is the client of one upstream registry: it follows the
//!   Docker token flow of distribution's `docs/spec/auth/token.md` when
//!   the upstream answers 401 with a `Bearer` challenge (anonymously, or
//!   with the configured credentials), or answers a `Basic` challenge with
//!   them. Tokens are cached per scope until shortly before they expire. A
//!   429 is reported with its `Retry-After`. Manifests are bounded in size
//!   and, fetched by digest, verified against it.
//!
//! The HTTP layer decides which requests go here (reads of proxied
//! repositories) and refuses writes into them. Metrics are in
//! [`telemetry`].

mod cache;
mod challenge;
mod error;
mod fetch;
mod route;
pub mod telemetry;
mod upstream;

pub use cache::{CachedManifest, FetchedBlob, PullThrough};
pub use challenge::Challenge;
pub use error::{ProxyError, Result};
pub use fetch::ByteStream;
pub use route::{DEFAULT_TAG_TTL, Mirror, MirrorOptions, Mirrors, Routed};
pub use telemetry::CacheResult;
pub use upstream::{MANIFEST_LIMIT, Upstream, UpstreamBlob, UpstreamManifest, UpstreamOptions};
