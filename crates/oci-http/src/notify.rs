//! Event notifications: the layer that records an event for each
//! successful request an endpoint wants (see [`oci_notify`]), before the
//! response goes back, so an acknowledged push never loses its event.
//!
//! Which requests are events (as distribution emits them, blobs only with
//! an endpoint's `blobs = true`):
//!
//! | request | answer | event |
//! |---|---|---|
//! | `PUT /v2/<name>/manifests/<ref>` | 201 | `push` |
//! | `DELETE /v2/<name>/manifests/<ref>` | 202 | `delete` (a tag delete names the tag, a manifest delete the digest) |
//! | `GET /v2/<name>/manifests/<ref>` | 200 | `pull` |
//! | `POST /v2/<name>/blobs/uploads/?mount=` | 201 | `mount` |
//! | `PUT` of an upload, `POST ?digest=` | 201 | `push` of a blob |
//! | `GET /v2/<name>/blobs/<digest>` | 200, or 307 to the store for the whole blob (`[storage] redirect`) | `pull` of a blob |
//! | a delete through the web UI (its form's `POST`) | 303 | `delete` |
//!
//! `HEAD` requests are not events. A request no endpoint wants costs one
//! bit test (no storage access); when recording fails the client gets a
//! 500 (`UNKNOWN`) instead of its success, and can retry: every event
//! request is idempotent.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use oci_notify::event::{BLOB_MEDIA_TYPE, clip};
use oci_notify::{Action, Actor, Event, Notifier, RequestInfo, Target};
use oci_storage::ManifestMeta;
use oci_types::{Digest, ErrorCode, Reference, RepositoryName};

use crate::access::{Peer, RequestId};
use crate::auth::user_of;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::headers::DOCKER_CONTENT_DIGEST;

/// In a blob upload's 201: the blob was mounted from another repository
/// (`from`, if the client named one), not uploaded.
#[derive(Debug, Clone)]
pub(crate) struct Mounted {
    pub(crate) from: Option<RepositoryName>,
}

/// What a request may turn into, decided before it runs.
enum Candidate {
    ManifestPush(RepositoryName, Reference),
    ManifestDelete(RepositoryName, Reference),
    ManifestPull(RepositoryName, Reference),
    BlobPull(RepositoryName, Digest),
    /// A form posted to the web UI, which may be a delete (the answer
    /// says: [`oci_ui::Deleted`]).
    UiPost,
    /// An upload's end or a mount: `mount` and `push` say which events are
    /// wanted.
    BlobStored {
        name: RepositoryName,
        mount: bool,
        push: bool,
    },
}

impl Candidate {
    fn of(notifier: &Notifier, request: &Request) -> Option<Self> {
        let endpoint = request.extensions().get::<Endpoint>()?;
        let method = request.method();
        let wants = |action, name: &RepositoryName, blob| notifier.wants(action, name, blob);
        match (endpoint, method) {
            (Endpoint::Manifest { name, reference }, &Method::PUT) => {
                wants(Action::Push, name, false)
                    .then(|| Self::ManifestPush(name.clone(), reference.clone()))
            }
            (Endpoint::Manifest { name, reference }, &Method::DELETE) => {
                wants(Action::Delete, name, false)
                    .then(|| Self::ManifestDelete(name.clone(), reference.clone()))
            }
            (Endpoint::Manifest { name, reference }, &Method::GET) => {
                wants(Action::Pull, name, false)
                    .then(|| Self::ManifestPull(name.clone(), reference.clone()))
            }
            (Endpoint::Blob { name, digest }, &Method::GET) => wants(Action::Pull, name, true)
                .then(|| Self::BlobPull(name.clone(), digest.clone())),
            (Endpoint::UploadStart { name }, &Method::POST)
            | (Endpoint::Upload { name, .. }, &Method::PUT) => {
                let mount = matches!(endpoint, Endpoint::UploadStart { .. })
                    && wants(Action::Mount, name, true);
                let push = wants(Action::Push, name, true);
                (mount || push).then(|| Self::BlobStored {
                    name: name.clone(),
                    mount,
                    push,
                })
            }
            (Endpoint::Ui, &Method::POST) => notifier
                .endpoints()
                .any(|e| e.events.contains(&Action::Delete))
                .then_some(Self::UiPost),
            _ => None,
        }
    }
}

/// Middleware: records the event of a successful request some endpoint
/// wants (see the module docs). Sits outside the auth layer (it reads the
/// user from the response) and inside routing (it reads the
/// [`Endpoint`]).
pub async fn emit(State(notifier): State<Notifier>, request: Request, next: Next) -> Response {
    let Some(candidate) = Candidate::of(&notifier, &request) else {
        return next.run(request).await;
    };
    let info = request_info(&request);
    let response = next.run(request).await;
    let answer = Answer::of(&response);
    let Some((repository, event)) = event(&notifier, candidate, info, answer).await else {
        return response;
    };
    match notifier.record(&repository, &event).await {
        Ok(_) => response,
        Err(e) => {
            tracing::error!(error = %e, event = %event.id, "notifications: recording an event failed; answering 500");
            ApiError::new(
                ErrorCode::Unknown,
                "the request's event notification could not be recorded; retry",
            )
            .with_status(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response()
        }
    }
}

/// The request's part of an event, taken before the request runs.
fn request_info(request: &Request) -> RequestInfo {
    let text = |h: &HeaderMap, name| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(clip)
            .unwrap_or_default()
    };
    let headers = request.headers();
    let host = match request.uri().authority() {
        Some(authority) => clip(authority.as_str()),
        None => text(headers, header::HOST),
    };
    RequestInfo {
        id: request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.0.to_str().ok())
            .map(clip)
            .unwrap_or_default(),
        addr: request
            .extensions()
            .get::<Peer>()
            .map(|p| p.0.to_string())
            .unwrap_or_default(),
        host,
        method: request.method().as_str().to_owned(),
        useragent: text(headers, header::USER_AGENT),
    }
}

/// What the event of a request needs from its response, read before any
/// await (a response is not `Sync`).
struct Answer {
    status: StatusCode,
    digest: Option<Digest>,
    media_type: Option<String>,
    size: Option<u64>,
    /// A whole blob's `GET` answered with a redirect to the store.
    redirected: bool,
    pushed: Option<ManifestMeta>,
    mounted: Option<Mounted>,
    deleted: Option<oci_ui::Deleted>,
    user: Option<String>,
}

impl Answer {
    fn of(response: &Response) -> Self {
        let headers = response.headers();
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let redirected = response.extensions().get::<crate::blobs::Redirected>();
        Self {
            status: response.status(),
            digest: text(DOCKER_CONTENT_DIGEST).and_then(|v| v.parse().ok()),
            media_type: text(header::CONTENT_TYPE).map(clip),
            size: match redirected {
                Some(redirected) => Some(redirected.size),
                None => text(header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            },
            redirected: redirected.is_some(),
            pushed: response.extensions().get::<ManifestMeta>().cloned(),
            mounted: response.extensions().get::<Mounted>().cloned(),
            deleted: response.extensions().get::<oci_ui::Deleted>().cloned(),
            user: user_of(response).map(|u| u.to_string()),
        }
    }
}

/// The event of a finished request, if it is one.
async fn event(
    notifier: &Notifier,
    candidate: Candidate,
    request: RequestInfo,
    answer: Answer,
) -> Option<(RepositoryName, Event)> {
    let status = answer.status;
    let tag_of = |r: &Reference| match r {
        Reference::Tag(t) => Some(t.to_string()),
        Reference::Digest(_) => None,
    };
    let (action, name, mut target) = match candidate {
        Candidate::ManifestPush(name, reference) if status == StatusCode::CREATED => {
            let meta = answer.pushed?;
            let target = Target {
                media_type: Some(meta.media_type),
                digest: Some(meta.digest.to_string()),
                size: Some(meta.size),
                tag: tag_of(&reference),
                ..Target::default()
            };
            (Action::Push, name, target)
        }
        Candidate::ManifestDelete(name, reference) if status == StatusCode::ACCEPTED => {
            (Action::Delete, name, delete_target(&reference))
        }
        Candidate::UiPost => {
            let deleted = answer.deleted.clone()?;
            if !notifier.wants(Action::Delete, &deleted.repository, false) {
                return None;
            }
            let target = delete_target(&deleted.reference);
            (Action::Delete, deleted.repository, target)
        }
        Candidate::ManifestPull(name, reference) if status == StatusCode::OK => {
            let target = Target {
                media_type: answer.media_type,
                digest: answer.digest.map(|d| d.to_string()),
                size: answer.size,
                tag: tag_of(&reference),
                ..Target::default()
            };
            (Action::Pull, name, target)
        }
        Candidate::BlobPull(name, digest) if status == StatusCode::OK || answer.redirected => {
            let target = Target {
                media_type: Some(BLOB_MEDIA_TYPE.into()),
                digest: Some(digest.to_string()),
                size: answer.size,
                ..Target::default()
            };
            (Action::Pull, name, target)
        }
        Candidate::BlobStored { name, mount, push } if status == StatusCode::CREATED => {
            let action = match &answer.mounted {
                Some(_) if mount => Action::Mount,
                None if push => Action::Push,
                _ => return None,
            };
            let digest = answer.digest?;
            // One small read, only when an endpoint wants the event.
            let size = match notifier.storage().blob_stat(&name, &digest).await {
                Ok(meta) => Some(meta.size),
                Err(_) => None,
            };
            let target = Target {
                media_type: Some(BLOB_MEDIA_TYPE.into()),
                digest: Some(digest.to_string()),
                size,
                from_repository: answer.mounted.and_then(|m| m.from).map(|f| f.to_string()),
                ..Target::default()
            };
            (action, name, target)
        }
        _ => return None,
    };
    target.repository = name.to_string();
    target.length = target.size;
    if let Some(digest) = &target.digest {
        let kind = if target.media_type.as_deref() == Some(BLOB_MEDIA_TYPE) {
            "blobs"
        } else {
            "manifests"
        };
        target.url = Some(format!(
            "{}://{}/v2/{name}/{kind}/{digest}",
            notifier.url_scheme(),
            request.host
        ));
    }
    let user = answer.user.or_else(|| answer.deleted.and_then(|d| d.user));
    let event = Event {
        id: uuid::Uuid::new_v4().to_string(),
        timestamp: oci_notify::event::now(),
        action,
        target,
        request,
        actor: Actor { name: user },
        source: notifier.source().clone(),
    };
    Some((name, event))
}

/// The target of a delete: the tag, or the manifest's digest.
fn delete_target(reference: &Reference) -> Target {
    match reference {
        Reference::Tag(t) => Target {
            tag: Some(t.to_string()),
            ..Target::default()
        },
        Reference::Digest(d) => Target {
            digest: Some(d.to_string()),
            ..Target::default()
        },
    }
}
