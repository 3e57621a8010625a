//! The registry's HTTP API: an axum [`Router`] implementing OCI
//! distribution-spec v1.1 (and the Docker Registry HTTP API v2 it grew
//! from) over [`oci_storage::Storage`].
//!
//! [`app`] is a pure constructor: the binary binds and serves it, tests drive
//! it over a socket or with `tower::ServiceExt::oneshot`. Requests are first
//! parsed into an [`Endpoint`] (routing as data), then handled by the module
//! named for the resource: [`blobs`], [`uploads`], [`manifests`],
//! [`listing`] (tags and catalog) and [`referrers`]. Failures are
//! [`ApiError`]s, rendered as the spec's JSON error body.
//!
//! [`Limits`] bound what clients can make the registry hold: request
//! bodies that stall, requests in flight, manifest bytes in memory (layers
//! here) and connections, header and keep-alive timeouts ([`server`], the
//! connection loop the binary and the end-to-end tests serve with, over
//! plain HTTP or [`tls`]).
//! Access control ([`auth`]) and event notifications ([`notify`]) are
//! layers too. The web UI ([`oci_ui`]), when [`AppOptions::ui`] is set, is
//! routed as [`Endpoint::Ui`] (`/` and its path) and answered behind the
//! same outer layers.
//!
//! Operations: [`ops::install_recorder`] installs the Prometheus recorder
//! once per process (before serving), and [`ops::ops_router`] serves
//! `/metrics`, `/healthz` and `/readyz` on a listener of their own; the
//! metrics recorded are listed in [`telemetry`] and
//! [`oci_storage::telemetry`].

pub mod access;
pub mod auth;
pub mod blobs;
pub mod body;
pub mod endpoint;
pub mod error;
pub mod headers;
pub mod limits;
pub mod listing;
pub mod manifests;
pub mod notify;
pub mod ops;
pub mod params;
mod proxied;
pub mod referrers;
pub mod reload;
pub mod server;
pub mod telemetry;
pub mod tls;
mod token;
pub mod uploads;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use oci_storage::Storage;
use oci_types::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutBody};
use tower_http::trace::TraceLayer;

pub use endpoint::{Endpoint, EndpointKind};
pub use error::ApiError;
pub use limits::Limits;

use params::Params;

/// Shared state of every handler.
#[derive(Clone, Debug)]
struct AppState {
    storage: Storage,
    budgets: limits::Budgets,
    proxy: Option<oci_proxy::PullThrough>,
    ui: Option<oci_ui::Ui>,
}

/// The whole API with the default [`Limits`], ready to serve.
pub fn app(storage: Storage) -> Router {
    app_with(storage, &Limits::default())
}

/// The whole API, enforcing the request-level `limits` (the connection
/// limits are [`server::serve`]'s).
pub fn app_with(storage: Storage, limits: &Limits) -> Router {
    app_with_options(
        storage,
        AppOptions {
            limits: limits.clone(),
            auth: None,
            proxy: None,
            ui: None,
            notifier: None,
        },
    )
}

/// What [`app_with_options`] builds the API with.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// Request-level limits.
    pub limits: Limits,
    /// Access control; `None` lets everyone do everything.
    pub auth: Option<auth::Auth>,
    /// The pull-through cache serving the `[[proxy]]` prefixes, if any.
    pub proxy: Option<oci_proxy::PullThrough>,
    /// The web UI, served at its path (and `/`) behind the same layers
    /// as the API (access log with endpoint `ui`, request cap, body
    /// timeout); `None`: not served.
    pub ui: Option<oci_ui::Ui>,
    /// Event notifications (`[[notifications.endpoints]]`), if any.
    pub notifier: Option<oci_notify::Notifier>,
}

/// The whole API with its limits and access control.
pub fn app_with_options(storage: Storage, options: AppOptions) -> Router {
    let limits = &options.limits;
    let budgets = limits::Budgets::new(limits);
    let routes = match &options.ui {
        Some(ui) => endpoint::Routes::with_ui(ui.path()),
        None => endpoint::Routes::default(),
    };
    let handlers = Router::new().fallback(dispatch).with_state(AppState {
        storage,
        budgets: budgets.clone(),
        proxy: options.proxy,
        ui: options.ui,
    });
    // One concrete stack of layers around the handlers, boxed once as the
    // router's fallback: `Router::layer` boxes each layer's service
    // anew, and every request clones every box (callgrind: ~9 % of a
    // manifest GET's instructions). Listed from the outside in.
    let stack = tower::ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(ErrorCode::Unknown, "internal error").into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetResponseHeaderLayer::overriding(
            headers::DOCKER_API_VERSION,
            HeaderValue::from_static("registry/2.0"),
        ))
        .layer(axum::middleware::from_fn_with_state(routes, access::log))
        .layer(axum::middleware::from_fn_with_state(
            budgets,
            limits::request_cap,
        ))
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .map_request(|request: Request<TimeoutBody<axum::body::Body>>| {
            request.map(axum::body::Body::new)
        })
        // Notifications sit outside auth (they read the user from the
        // response) and inside the request cap (recording is bounded like
        // any storage write).
        .option_layer(
            options
                .notifier
                .map(|notifier| axum::middleware::from_fn_with_state(notifier, notify::emit)),
        )
        // Auth sits inside the request cap (a throttled login still holds
        // a request slot, bounded) and inside routing (it reads the
        // Endpoint).
        .option_layer(
            options
                .auth
                .map(|auth| axum::middleware::from_fn_with_state(auth, auth::guard)),
        )
        .service(handlers);
    Router::new().fallback_service(stack)
}

/// The debug span of a request: method and path, never the query string
/// (it can carry secrets).
fn request_span(request: &Request) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
}

/// The one entry point: hand the routed request to its handler.
async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    if let (Some(Endpoint::Ui), Some(ui)) = (request.extensions().get::<Endpoint>(), &state.ui) {
        let client = auth::client_address(&request);
        return ui.handle(request, client).await;
    }
    let (mut parts, body) = request.into_parts();
    let Some(endpoint) = parts.extensions.remove::<Endpoint>() else {
        // Only reachable if the routing layer is missing: a bug.
        return ApiError::new(ErrorCode::Unknown, "request was not routed").into_response();
    };
    // An error may be answered before the request body was read; the
    // connection then cannot be reused, so say so (RFC 9112 §9.6) instead
    // of letting the client send its next request into a closing socket.
    let has_body = body::declares_body(&parts.headers);
    let params = Params::parse(parts.uri.query());
    let s = &state.storage;
    let h = &parts.headers;
    let routed = match (&state.proxy, endpoint.repository()) {
        (Some(proxy), Some(name)) => proxy.route(name).map(|routed| (proxy, routed)),
        _ => None,
    };
    let result = if let Some((proxy, routed)) = routed {
        let request = proxied::Request {
            storage: s,
            proxy,
            routed,
            method: &parts.method,
            params: &params,
            headers: h,
        };
        proxied::dispatch(request, endpoint).await
    } else {
        local(&state, endpoint, &parts, &params, body).await
    };
    match result {
        Ok(response) => response,
        Err(e) => {
            let mut response = e.into_response();
            if has_body {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

/// Answers a request for a local (not proxied) repository, or for none.
async fn local(
    state: &AppState,
    endpoint: Endpoint,
    parts: &axum::http::request::Parts,
    params: &Params,
    body: axum::body::Body,
) -> ApiResult {
    let s = &state.storage;
    let head = parts.method == Method::HEAD;
    let h = &parts.headers;
    match (endpoint, parts.method.clone()) {
        (Endpoint::Base, _) => Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            "{}",
        )
            .into_response()),
        (Endpoint::Catalog, _) => {
            listing::catalog(s, params, parts.extensions.get::<listing::Visibility>()).await
        }
        // Only the auth layer answers the token endpoint.
        // Only routed when the UI is served (see `dispatch`).
        (Endpoint::Ui, _) => Err(ApiError::new(ErrorCode::Unsupported, "no web UI here")
            .with_status(axum::http::StatusCode::NOT_FOUND)),
        (Endpoint::Token, _) => Err(ApiError::new(
            ErrorCode::Unsupported,
            "this registry does not issue tokens",
        )
        .with_status(axum::http::StatusCode::NOT_FOUND)),
        (Endpoint::Tags { name }, _) => listing::tags(s, &name, params).await,
        (Endpoint::Referrers { name, digest }, _) => {
            referrers::list(s, &name, &digest, params).await
        }
        (Endpoint::Blob { name, digest }, Method::DELETE) => blobs::delete(s, &name, &digest).await,
        (Endpoint::Blob { name, digest }, _) => blobs::get(s, &name, &digest, h, head).await,
        (Endpoint::UploadStart { name }, _) => uploads::start(s, &name, params, body).await,
        (Endpoint::Upload { name, id }, Method::GET) => uploads::status(s, &name, &id).await,
        (Endpoint::Upload { name, id }, Method::PATCH) => {
            uploads::patch(s, &name, &id, h, body).await
        }
        (Endpoint::Upload { name, id }, Method::PUT) => {
            uploads::complete(s, &name, &id, params, h, body).await
        }
        (Endpoint::Upload { name, id }, _) => uploads::cancel(s, &name, &id).await,
        (Endpoint::Manifest { name, reference }, Method::PUT) => {
            manifests::put(s, &state.budgets, &name, &reference, h, body).await
        }
        (Endpoint::Manifest { name, reference }, Method::DELETE) => {
            manifests::delete(s, &name, &reference).await
        }
        (Endpoint::Manifest { name, reference }, _) => {
            manifests::get(s, &name, &reference, head).await
        }
    }
}

/// What every handler returns.
pub type ApiResult = Result<Response, ApiError>;
