//! Request routing as data: a method and a path become an [`Endpoint`]
//! before any handler runs.
//!
//! Repository names contain slashes (`library/ubuntu`) and may even contain
//! path words such as `blobs`, so the path is read from the right: the last
//! one to three segments say which endpoint it is, everything before them is
//! the name. Every component is parsed into its type here; handlers never
//! see raw strings.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oci_types::{Digest, ErrorCode, Reference, RepositoryName};
use uuid::Uuid;

use crate::error::ApiError;

/// A distribution-spec endpoint, with its typed path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// end-1 `GET /v2/`: API version check.
    Base,
    /// `GET /v2/_catalog`: list repositories.
    Catalog,
    /// end-2, end-10 `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`.
    Blob {
        /// Repository.
        name: RepositoryName,
        /// Blob digest.
        digest: Digest,
    },
    /// end-4a/4b/11 `POST /v2/<name>/blobs/uploads/`: start, monolithic
    /// upload or mount.
    UploadStart {
        /// Repository.
        name: RepositoryName,
    },
    /// end-5, end-6, end-13 `GET|PATCH|PUT|DELETE /v2/<name>/blobs/uploads/<id>`.
    Upload {
        /// Repository.
        name: RepositoryName,
        /// Session id.
        id: Uuid,
    },
    /// end-3, end-7, end-9 `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`.
    Manifest {
        /// Repository.
        name: RepositoryName,
        /// Tag or digest.
        reference: Reference,
    },
    /// end-8a/8b `GET /v2/<name>/tags/list`.
    Tags {
        /// Repository.
        name: RepositoryName,
    },
    /// end-12a/12b `GET /v2/<name>/referrers/<digest>`.
    Referrers {
        /// Repository.
        name: RepositoryName,
        /// Subject digest.
        digest: Digest,
    },
    /// `GET|POST /auth/token`: the built-in token issuer (distribution's
    /// `docs/spec/auth/token.md` and `oauth.md`), answered by the auth
    /// layer; 404 when the registry does not issue tokens.
    Token,
    /// `GET|HEAD|POST` `/` and the web UI's pages (under its path, see
    /// [`Routes`]): answered by [`oci_ui::Ui`], which does its own access
    /// control (sessions), so the auth layer lets these through.
    Ui,
}

impl Endpoint {
    /// The repository the request is about, if any.
    pub fn repository(&self) -> Option<&RepositoryName> {
        match self {
            Endpoint::Blob { name, .. }
            | Endpoint::UploadStart { name }
            | Endpoint::Upload { name, .. }
            | Endpoint::Manifest { name, .. }
            | Endpoint::Tags { name }
            | Endpoint::Referrers { name, .. } => Some(name),
            Endpoint::Base | Endpoint::Catalog | Endpoint::Token | Endpoint::Ui => None,
        }
    }

    /// Parses a request path. Paths outside the API give `Ok(None)` (404);
    /// paths of the API with malformed parameters give the spec's error.
    pub fn parse(method: &Method, path: &str) -> Result<Option<Self>, ApiError> {
        if path == TOKEN_PATH {
            return Ok(Some(Self::Token));
        }
        let Some(rest) = path.strip_prefix("/v2") else {
            return Ok(None);
        };
        if rest.is_empty() || rest == "/" {
            return Ok(Some(Self::Base));
        }
        let Some(rest) = rest.strip_prefix('/') else {
            return Ok(None);
        };
        if rest == "_catalog" {
            return Ok(Some(Self::Catalog));
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        let name_of = |k: usize| -> Result<RepositoryName, ApiError> {
            if k == 0 {
                return Err(ApiError::new(
                    ErrorCode::NameInvalid,
                    "empty repository name",
                ));
            }
            Ok(segs[..k].join("/").parse()?)
        };
        let tail = |i: usize| segs.get(n.wrapping_sub(i)).copied();
        let endpoint = match (tail(3), tail(2), tail(1)) {
            (Some("blobs"), Some("uploads"), Some("")) => Self::UploadStart {
                name: name_of(n - 3)?,
            },
            (Some("blobs"), Some("uploads"), Some(id)) => Self::Upload {
                name: name_of(n - 3)?,
                id: Uuid::parse_str(id).map_err(|_| {
                    ApiError::new(ErrorCode::BlobUploadUnknown, "no such upload session")
                })?,
            },
            (_, Some("blobs"), Some("uploads")) => Self::UploadStart {
                name: name_of(n - 2)?,
            },
            (_, Some("blobs"), Some(digest)) => Self::Blob {
                name: name_of(n - 2)?,
                digest: decode(digest).parse()?,
            },
            (_, Some("manifests"), Some(reference)) => Self::Manifest {
                name: name_of(n - 2)?,
                reference: parse_reference(&decode(reference), method)?,
            },
            (_, Some("tags"), Some("list")) => Self::Tags {
                name: name_of(n - 2)?,
            },
            (_, Some("referrers"), Some(digest)) => Self::Referrers {
                name: name_of(n - 2)?,
                digest: decode(digest).parse()?,
            },
            _ => return Ok(None),
        };
        Ok(Some(endpoint))
    }

    /// A short name of the kind of endpoint (`manifest`, `blob`, ...), for
    /// logs and metrics: never a repository name, tag or digest.
    pub fn kind(&self) -> EndpointKind {
        match self {
            Self::Base => EndpointKind::Base,
            Self::Catalog => EndpointKind::Catalog,
            Self::Blob { .. } => EndpointKind::Blob,
            Self::UploadStart { .. } => EndpointKind::UploadStart,
            Self::Upload { .. } => EndpointKind::Upload,
            Self::Manifest { .. } => EndpointKind::Manifest,
            Self::Tags { .. } => EndpointKind::Tags,
            Self::Referrers { .. } => EndpointKind::Referrers,
            Self::Token => EndpointKind::Token,
            Self::Ui => EndpointKind::Ui,
        }
    }

    /// The methods this endpoint answers.
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Self::Base | Self::Catalog | Self::Tags { .. } | Self::Referrers { .. } => {
                &[Method::GET, Method::HEAD]
            }
            Self::Blob { .. } => &[Method::GET, Method::HEAD, Method::DELETE],
            Self::UploadStart { .. } => &[Method::POST],
            Self::Upload { .. } => &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE],
            Self::Manifest { .. } => &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
            Self::Token => &[Method::GET, Method::POST],
            Self::Ui => &[Method::GET, Method::HEAD, Method::POST],
        }
    }

    /// True if the endpoint answers `method` (else 405).
    pub fn allows(&self, method: &Method) -> bool {
        self.methods().contains(method)
    }

    /// The `Allow` header value of a 405 answer, e.g. `GET, HEAD, DELETE`.
    pub fn allowed(&self) -> HeaderValue {
        let names: Vec<&str> = self.methods().iter().map(Method::as_str).collect();
        HeaderValue::try_from(names.join(", ")).expect("method names are valid header values")
    }
}

/// The path of the built-in token issuer.
pub const TOKEN_PATH: &str = "/auth/token";

/// The kind of endpoint a request was routed to (see [`Endpoint::kind`]),
/// for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// `/v2/`.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// A blob.
    Blob,
    /// Starting an upload (or a mount).
    UploadStart,
    /// An upload session.
    Upload,
    /// A manifest.
    Manifest,
    /// A tag list.
    Tags,
    /// A referrers list.
    Referrers,
    /// The token issuer.
    Token,
    /// The web UI.
    Ui,
    /// A path outside the API.
    None,
    /// An API path with malformed parts.
    Invalid,
}

impl EndpointKind {
    /// Every kind, in declaration order ([`EndpointKind::index`]).
    pub const ALL: [EndpointKind; 12] = [
        Self::Base,
        Self::Catalog,
        Self::Blob,
        Self::UploadStart,
        Self::Upload,
        Self::Manifest,
        Self::Tags,
        Self::Referrers,
        Self::Token,
        Self::Ui,
        Self::None,
        Self::Invalid,
    ];

    /// The name in logs and in the `endpoint` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Catalog => "catalog",
            Self::Blob => "blob",
            Self::UploadStart => "upload_start",
            Self::Upload => "upload",
            Self::Manifest => "manifest",
            Self::Tags => "tags",
            Self::Referrers => "referrers",
            Self::Token => "token",
            Self::Ui => "ui",
            Self::None => "none",
            Self::Invalid => "invalid",
        }
    }

    /// The kind's position in [`EndpointKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Parses the request into its [`Endpoint`] once (the access layer calls
/// this and puts the endpoint into the request's extensions, where the
/// handlers, and later auth, read it). Paths outside the API (404),
/// malformed parts (the spec's error) and methods the endpoint does not
/// answer (405 with `Allow`) are answered here, with the kind to log.
pub fn route(method: &Method, path: &str) -> Routed {
    route_in(&Routes::default(), method, path)
}

/// What routing knows beyond the API's own paths: where the web UI is.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// The UI's path (`/ui/`), if it is served.
    ui: Option<std::sync::Arc<str>>,
}

impl Routes {
    /// Routes with the web UI at `path` (`/ui/`): it answers `/`, that
    /// path without its final slash, and everything under it.
    pub fn with_ui(path: &str) -> Self {
        Self {
            ui: Some(path.into()),
        }
    }

    /// True if `path` is the UI's.
    fn is_ui(&self, path: &str) -> bool {
        let Some(base) = self.ui.as_deref() else {
            return false;
        };
        path == "/" || path.starts_with(base) || base.strip_suffix('/') == Some(path)
    }
}

/// [`route`], with the web UI's paths (see [`Routes`]).
pub fn route_in(routes: &Routes, method: &Method, path: &str) -> Routed {
    let answered = |kind, response| Routed::Answered { kind, response };
    let parsed = if routes.is_ui(path) {
        Ok(Some(Endpoint::Ui))
    } else {
        Endpoint::parse(method, path)
    };
    match parsed {
        Ok(Some(endpoint)) if endpoint.allows(method) => Routed::To(endpoint),
        // RFC 9110 §15.5.6: a 405 lists the methods the resource supports.
        Ok(Some(endpoint)) => answered(
            endpoint.kind(),
            ApiError::new(
                ErrorCode::Unsupported,
                format!("{method} is not supported here"),
            )
            .with_header(header::ALLOW, endpoint.allowed())
            .into_response(),
        ),
        // Not a route of the API: the spec's JSON all the same, with the
        // one code that fits ("the operation is unsupported").
        Ok(None) => answered(
            EndpointKind::None,
            ApiError::new(
                ErrorCode::Unsupported,
                "no such endpoint of the registry API",
            )
            .with_status(StatusCode::NOT_FOUND)
            .into_response(),
        ),
        Err(e) => answered(EndpointKind::Invalid, e.into_response()),
    }
}

/// Where [`route`] sends a request.
#[derive(Debug)]
pub enum Routed {
    /// To this endpoint's handler.
    To(Endpoint),
    /// Nowhere: this is the answer.
    Answered {
        /// What to log as the endpoint.
        kind: EndpointKind,
        /// The error answer.
        response: Response,
    },
}

/// A manifest reference. A malformed tag cannot name a stored manifest, so
/// reads and deletes of one are 404 MANIFEST_UNKNOWN (as the conformance
/// suite expects); pushing to one is 400 MANIFEST_INVALID.
fn parse_reference(text: &str, method: &Method) -> Result<Reference, ApiError> {
    match text.parse::<Reference>() {
        Err(oci_types::Error::InvalidTag { .. }) if method != Method::PUT => Err(ApiError::new(
            ErrorCode::ManifestUnknown,
            format!("no manifest is tagged {text:?}"),
        )),
        other => Ok(other?),
    }
}

/// Percent-decodes a digest or reference segment (`sha256%3A…`). Names are
/// not decoded: a `%` in a name is simply invalid.
fn decode(segment: &str) -> std::borrow::Cow<'_, str> {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(path: &str) -> Option<Endpoint> {
        Endpoint::parse(&Method::GET, path).unwrap()
    }

    fn name(s: &str) -> RepositoryName {
        s.parse().unwrap()
    }

    #[test]
    fn routes_every_endpoint() {
        let d = Digest::of(b"x");
        assert_eq!(ep("/v2/"), Some(Endpoint::Base));
        assert_eq!(ep("/v2"), Some(Endpoint::Base));
        assert_eq!(ep("/v2/_catalog"), Some(Endpoint::Catalog));
        assert_eq!(
            ep(&format!("/v2/a/b/blobs/{d}")),
            Some(Endpoint::Blob {
                name: name("a/b"),
                digest: d.clone()
            })
        );
        assert_eq!(
            ep("/v2/a/b/blobs/uploads/"),
            Some(Endpoint::UploadStart { name: name("a/b") })
        );
        assert_eq!(
            ep("/v2/a/blobs/uploads"),
            Some(Endpoint::UploadStart { name: name("a") })
        );
        let id = Uuid::new_v4();
        assert_eq!(
            ep(&format!("/v2/x/blobs/uploads/{id}")),
            Some(Endpoint::Upload {
                name: name("x"),
                id
            })
        );
        assert_eq!(
            ep("/v2/x/manifests/latest"),
            Some(Endpoint::Manifest {
                name: name("x"),
                reference: "latest".parse().unwrap()
            })
        );
        assert_eq!(
            ep(&format!(
                "/v2/x/manifests/{}",
                d.as_str().replace(':', "%3A")
            )),
            Some(Endpoint::Manifest {
                name: name("x"),
                reference: Reference::Digest(d.clone())
            })
        );
        assert_eq!(
            ep("/v2/x/y/tags/list"),
            Some(Endpoint::Tags { name: name("x/y") })
        );
        assert_eq!(
            ep(&format!("/v2/x/referrers/{d}")),
            Some(Endpoint::Referrers {
                name: name("x"),
                digest: d
            })
        );
    }

    #[test]
    fn names_may_contain_path_words() {
        assert_eq!(
            ep("/v2/blobs/manifests/manifests/v1"),
            Some(Endpoint::Manifest {
                name: name("blobs/manifests"),
                reference: "v1".parse().unwrap()
            })
        );
        assert_eq!(
            ep("/v2/tags/list/tags/list"),
            Some(Endpoint::Tags {
                name: name("tags/list")
            })
        );
    }

    #[test]
    fn rejects_bad_components() {
        let code = |p: &str| Endpoint::parse(&Method::PUT, p).unwrap_err().code();
        assert_eq!(code("/v2/UPPER/tags/list"), ErrorCode::NameInvalid);
        assert_eq!(code("/v2/a//b/tags/list"), ErrorCode::NameInvalid);
        assert_eq!(code("/v2/%2e%2e/x/tags/list"), ErrorCode::NameInvalid);
        assert_eq!(code("/v2/../x/tags/list"), ErrorCode::NameInvalid);
        assert_eq!(code("/v2/tags/list"), ErrorCode::NameInvalid);
        assert_eq!(code("/v2/a/blobs/sha256:zz"), ErrorCode::DigestInvalid);
        assert_eq!(code("/v2/a/referrers/nope:1"), ErrorCode::DigestInvalid);
        assert_eq!(code("/v2/a/manifests/-bad"), ErrorCode::ManifestInvalid);
        assert_eq!(
            code("/v2/a/blobs/uploads/not-a-uuid"),
            ErrorCode::BlobUploadUnknown
        );
        assert_eq!(
            Endpoint::parse(&Method::GET, "/v2/a/manifests/.INVALID_MANIFEST_NAME")
                .unwrap_err()
                .code(),
            ErrorCode::ManifestUnknown
        );
        assert_eq!(ep("/v3/a/tags/list"), None);
        assert_eq!(ep("/v2x"), None);
        assert_eq!(ep("/v2/a/unknown/thing"), None);
    }
}
