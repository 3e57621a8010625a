//! Requests for repositories under a `[[proxy]]` prefix: reads are served
//! by the pull-through cache ([`oci_proxy::PullThrough`]), writes are
//! refused.
//!
//! A warm blob is served exactly as a local one (the storage read comes
//! first); only a miss goes to the cache. Tags and referrers are asked
//! of upstream, and the cached ones listed when upstream cannot answer.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use oci_proxy::{CacheResult, ProxyError, PullThrough, Routed};
use oci_storage::{Storage, StorageError};
use oci_types::{Digest, ErrorCode, Reference, RepositoryName};

use crate::error::ApiError;
use crate::params::Params;
use crate::{ApiResult, Endpoint, blobs, listing, manifests, referrers};

/// What the request asks of a proxied repository.
pub(crate) struct Request<'a> {
    pub(crate) storage: &'a Storage,
    pub(crate) proxy: &'a PullThrough,
    pub(crate) routed: Routed,
    pub(crate) method: &'a Method,
    pub(crate) params: &'a Params,
    pub(crate) headers: &'a HeaderMap,
}

/// Answers `endpoint` for a proxied repository.
pub(crate) async fn dispatch(request: Request<'_>, endpoint: Endpoint) -> ApiResult {
    let head = *request.method == Method::HEAD;
    let reads = matches!(*request.method, Method::GET | Method::HEAD);
    match endpoint {
        Endpoint::Manifest { reference, .. } if reads => manifest(&request, &reference, head).await,
        Endpoint::Blob { digest, .. } if reads => blob(&request, &digest, head).await,
        Endpoint::Tags { name } => tags(&request, &name).await,
        Endpoint::Referrers { digest, .. } => referrers(&request, &digest).await,
        _ => Err(denied(&request.routed)),
    }
}

/// Pushes, deletes and uploads into a proxied repository.
fn denied(routed: &Routed) -> ApiError {
    let prefix = routed.mirror.prefix();
    let what = if prefix.is_empty() {
        "this registry is a pull-through cache".to_owned()
    } else {
        format!("repositories under {prefix}/ are a pull-through cache")
    };
    ApiError::new(
        ErrorCode::Denied,
        format!("{what} of another registry: pushes and deletes are not accepted"),
    )
}

async fn manifest(request: &Request<'_>, reference: &Reference, head: bool) -> ApiResult {
    let cached = request
        .proxy
        .manifest(&request.routed, reference, head)
        .await
        .map_err(|e| upstream_error(e, ErrorCode::ManifestUnknown))?;
    manifests::found(&cached.meta, cached.body)
}

async fn blob(request: &Request<'_>, digest: &Digest, head: bool) -> ApiResult {
    let (storage, local) = (request.storage, &request.routed.local);
    match blobs::get(storage, local, digest, request.headers, head).await {
        Ok(response) => {
            oci_proxy::telemetry::cache(true, CacheResult::Hit);
            return Ok(response);
        }
        Err(e)
            if matches!(e.code(), ErrorCode::BlobUnknown | ErrorCode::NameUnknown)
                && e.status() == StatusCode::NOT_FOUND => {}
        Err(e) => return Err(e),
    }
    let range = blobs::requested_range(request.headers);
    let fetched = request
        .proxy
        .blob(&request.routed, digest, range, head)
        .await
        .map_err(|e| upstream_error(e, ErrorCode::BlobUnknown))?;
    match fetched {
        // Linked from bytes stored for another repository.
        None => blobs::get(storage, local, digest, request.headers, head).await,
        Some(fetched) => blobs::answer(
            blobs::blob_headers(digest)?,
            fetched.size,
            fetched.range.as_ref(),
            fetched.stream,
        ),
    }
}

/// Tags as upstream lists them (paged as the client asked); the cached
/// ones when upstream cannot answer.
async fn tags(request: &Request<'_>, name: &RepositoryName) -> ApiResult {
    let page = request.params.pagination()?;
    let upstream = request
        .proxy
        .tags(&request.routed, page.n, page.last.as_deref())
        .await
        .map_err(|e| upstream_error(e, ErrorCode::NameUnknown))?;
    match upstream {
        Some((tags, more)) => {
            let tags = tags.iter().map(String::as_str).collect();
            listing::tags_page(name, tags, &page, more)
        }
        None => listing::tags(request.storage, &request.routed.local, request.params).await,
    }
}

async fn referrers(request: &Request<'_>, digest: &Digest) -> ApiResult {
    let artifact_type = request.params.get("artifactType").filter(|t| !t.is_empty());
    let upstream = request
        .proxy
        .referrers(&request.routed, digest, artifact_type)
        .await
        .map_err(|e| upstream_error(e, ErrorCode::ManifestUnknown))?;
    let Some((body, filtered)) = upstream else {
        return referrers::list(
            request.storage,
            &request.routed.local,
            digest,
            request.params,
        )
        .await;
    };
    Ok(referrers::index(body, filtered))
}

/// The answer to a failure of the cache: `not_found` (the manifest or
/// blob code) when upstream does not have it or will not give it to us,
/// 429 with `Retry-After` when it throttles us, 502 (with `not_found`)
/// when it fails or sent wrong bytes; storage failures as any other.
fn upstream_error(e: ProxyError, not_found: ErrorCode) -> ApiError {
    let message = e.to_string();
    match e {
        ProxyError::Storage(shared) => match std::sync::Arc::try_unwrap(shared) {
            Ok(e) => e.into(),
            Err(shared) => StorageError::Io(std::io::Error::other(shared.to_string())).into(),
        },
        ProxyError::NotFound(_) => ApiError::new(not_found, message),
        ProxyError::Unauthorized(_) => ApiError::new(
            not_found,
            format!("upstream refused access (or has no such repository): {message}"),
        )
        .with_status(StatusCode::NOT_FOUND),
        ProxyError::TooManyRequests { retry_after } => {
            let secs = retry_after.map_or(60, |d| d.as_secs().max(1));
            ApiError::new(ErrorCode::TooManyRequests, message)
                .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
        }
        // The spec has no code for a failing upstream: the manifest or
        // blob is unknown here, and 502 tells clients to retry.
        other => {
            tracing::warn!(error = %other, "pull-through cache: upstream failed");
            ApiError::new(not_found, format!("upstream registry failed: {message}"))
                .with_status(StatusCode::BAD_GATEWAY)
        }
    }
}
