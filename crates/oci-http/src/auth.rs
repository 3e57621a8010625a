//! Access control as one layer in front of the handlers.
//!
//! The layer reads the typed [`Endpoint`] the routing layer put into the
//! request's extensions (it never parses paths), asks the
//! [`Authenticator`] who the caller is and what they may do, and either
//! lets the request through or answers the spec's `UNAUTHORIZED` (401,
//! with a `WWW-Authenticate` challenge), `DENIED` (403) or
//! `TOOMANYREQUESTS` (429). Handlers know nothing of auth; the two places
//! where rights shape an answer are handed over as data:
//!
//! - the catalog lists only what the caller may pull (a
//!   [`Visibility`] in the request's extensions);
//! - a mount the caller may not read from becomes a plain upload: the
//!   layer drops `mount` and `from` from the query, and the handler opens
//!   a session (202) as the spec says a registry unable to mount does.
//!
//! What each request needs:
//! - `pull`: manifest, blob, tag list and referrers GET and HEAD;
//! - `push`: every upload request (start, chunk, status, finish, cancel)
//!   and manifest PUT;
//! - `delete`: manifest and blob DELETE;
//! - `/v2/`: valid credentials of any kind (anonymous tokens included);
//! - `/v2/_catalog`: the catalog right (basic mode: anyone the policy gives
//!   anything; token mode: `registry:catalog:*` in the token).
//!
//! The user's name goes into the response's extensions
//! ([`AuthenticatedUser`]) for the access log. No password, token or
//! `Authorization` header is ever logged.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use oci_auth::{Action, AuthError, Authenticator, Caller, Credentials, Mode, Principal};
use oci_types::{ErrorCode, RepositoryName};

use crate::access::Peer;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::listing::Visibility;

/// The name of an authenticated caller, in the response's extensions for
/// the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser(pub Arc<str>);

/// How the layer challenges clients, and who decides.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// Who callers are and what they may do.
    pub authenticator: Arc<Authenticator>,
    /// The realm of `Basic` challenges (basic mode).
    pub basic_realm: String,
    /// The token realm: where clients get tokens (token mode). `None`:
    /// the built-in issuer, at `/auth/token` on the host the client asked
    /// for.
    pub token_realm: Option<String>,
    /// The token service (token mode): the `aud` of tokens.
    pub service: String,
    /// The registry serves HTTPS (for the built-in realm's scheme).
    pub https: bool,
}

/// The layer's state.
#[derive(Debug, Clone)]
pub struct Auth(Arc<AuthOptions>);

impl Auth {
    /// The layer's state from its options.
    pub fn new(options: AuthOptions) -> Self {
        Self(Arc::new(options))
    }

    /// The options.
    pub fn options(&self) -> &AuthOptions {
        &self.0
    }

    fn authenticator(&self) -> &Authenticator {
        &self.0.authenticator
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need<'a> {
    /// Valid credentials of any kind.
    Login,
    /// The catalog right.
    Catalog,
    /// An action on a repository.
    On(&'a RepositoryName, Action),
}

impl<'a> Need<'a> {
    fn of(endpoint: &'a Endpoint, method: &Method) -> Option<Need<'a>> {
        let on = |name: &'a RepositoryName, action| Some(Need::On(name, action));
        match endpoint {
            Endpoint::Base => Some(Need::Login),
            Endpoint::Catalog => Some(Need::Catalog),
            Endpoint::Token | Endpoint::Ui => None,
            Endpoint::UploadStart { name } | Endpoint::Upload { name, .. } => {
                on(name, Action::Push)
            }
            Endpoint::Tags { name } | Endpoint::Referrers { name, .. } => on(name, Action::Pull),
            Endpoint::Blob { name, .. } | Endpoint::Manifest { name, .. } => match *method {
                Method::PUT => on(name, Action::Push),
                Method::DELETE => on(name, Action::Delete),
                _ => on(name, Action::Pull),
            },
        }
    }

    /// The token scope a client should ask for, e.g.
    /// `repository:a/b:pull,push` (a push also reads: blob HEADs).
    fn scope(&self) -> Option<String> {
        match self {
            Need::Login => None,
            Need::Catalog => Some("registry:catalog:*".into()),
            Need::On(name, Action::Push) => Some(format!("repository:{name}:pull,push")),
            Need::On(name, action) => Some(format!("repository:{name}:{action}")),
        }
    }
}

/// Middleware: see the module docs.
pub async fn guard(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let Some(endpoint) = request
        .extensions()
        .get::<Endpoint>()
        .filter(|e| **e != Endpoint::Ui)
    else {
        // Nothing routed, or the web UI, which has its own sessions.
        return next.run(request).await;
    };
    let Some(need) = Need::of(endpoint, request.method()) else {
        return crate::token::serve(&auth, request).await;
    };
    let address = client_address(&request);
    let presented = match Presented::of(request.headers()) {
        Ok(presented) => presented,
        Err(()) => return challenge(&auth, &request, &need, Some("invalid_request")),
    };
    let credentials = presented.credentials();
    let has_credentials = !matches!(credentials, Credentials::None);
    let caller = match auth.authenticator().identify(credentials, address).await {
        Ok(caller) => caller,
        Err(AuthError::Throttled(retry)) => return throttled(retry),
        Err(e) => {
            tracing::debug!(error = %e, "credentials refused");
            return challenge(&auth, &request, &need, Some("invalid_token"));
        }
    };
    let allowed = match &need {
        Need::Login => has_credentials,
        Need::Catalog => auth.authenticator().catalog_allowed(&caller),
        Need::On(name, action) => auth
            .authenticator()
            .allowed(&caller, name)
            .contains(*action),
    };
    if !allowed {
        return deny(&auth, &request, &need, &caller, has_credentials);
    }
    let (catalog, upload_start) = (
        need == Need::Catalog,
        matches!(endpoint, Endpoint::UploadStart { .. }),
    );
    match () {
        () if catalog => {
            let (auth, caller) = (auth.clone(), caller.clone());
            let visible = move |name: &RepositoryName| auth.authenticator().visible(&caller, name);
            request
                .extensions_mut()
                .insert(Visibility(Arc::new(visible)));
        }
        () if upload_start => check_mount(&auth, &caller, &mut request),
        () => {}
    }
    let user = caller.principal.shared_user();
    let mut response = next.run(request).await;
    if let Some(user) = user {
        response.extensions_mut().insert(AuthenticatedUser(user));
    }
    response
}

/// A mount needs `pull` on `from`; an automatic mount (no `from`) needs
/// `pull` everywhere (the blob could be anywhere). Otherwise `mount` and
/// `from` are dropped and the request starts a plain upload (spec: "the
/// registry ... falls back to a standard upload session").
fn check_mount(auth: &Auth, caller: &Caller, request: &mut Request) {
    let params = crate::params::Params::parse(request.uri().query());
    if params.get("mount").is_none() {
        return;
    }
    let may_mount = match params.get("from") {
        Some(from) => from.parse::<RepositoryName>().is_ok_and(|from| {
            auth.authenticator()
                .allowed(caller, &from)
                .contains(Action::Pull)
        }),
        None => auth.authenticator().reads_everywhere(caller),
    };
    if !may_mount {
        *request.uri_mut() = without_mount(request.uri());
    }
}

/// `uri` with the `mount` and `from` parameters removed.
fn without_mount(uri: &Uri) -> Uri {
    let kept = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k != "mount" && k != "from");
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish();
    let path_and_query = if query.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{query}", uri.path())
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// The client's address (unspecified when served without the connection
/// loop, as in router tests).
pub(crate) fn client_address(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<Peer>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip())
}

/// Credentials as the request carried them, decoded (a token borrowed
/// from the header).
pub(crate) enum Presented<'a> {
    None,
    Basic(String, String),
    Bearer(&'a str),
}

impl<'a> Presented<'a> {
    /// Reads the `Authorization` header. `Err` for one that cannot be
    /// read; a scheme we do not know counts as none.
    pub(crate) fn of(headers: &'a HeaderMap) -> Result<Presented<'a>, ()> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Presented::None);
        };
        let text = value.to_str().map_err(|_| ())?;
        let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return match rest {
                "" => Err(()),
                token => Ok(Presented::Bearer(token)),
            };
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| ())?;
            let decoded = String::from_utf8(decoded).map_err(|_| ())?;
            let (user, password) = decoded.split_once(':').ok_or(())?;
            return Ok(Presented::Basic(user.to_owned(), password.to_owned()));
        }
        Ok(Presented::None)
    }

    pub(crate) fn credentials(&self) -> Credentials<'_> {
        match self {
            Presented::None => Credentials::None,
            Presented::Basic(user, password) => Credentials::Basic { user, password },
            Presented::Bearer(token) => Credentials::Bearer(token),
        }
    }
}

fn throttled(retry: std::time::Duration) -> Response {
    throttled_error(retry).into_response()
}

/// 429 `TOOMANYREQUESTS` with `Retry-After`.
pub(crate) fn throttled_error(retry: std::time::Duration) -> ApiError {
    let secs = retry.as_secs().max(1);
    ApiError::new(
        ErrorCode::TooManyRequests,
        "too many failed logins; try again later",
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
}

/// 401 with a challenge for an anonymous caller or a token that lacks the
/// scope; 403 `DENIED` for a user in basic mode (more credentials would
/// not help).
fn deny(auth: &Auth, request: &Request, need: &Need, caller: &Caller, presented: bool) -> Response {
    let mut response = refusal(auth, request, need, caller, presented);
    if let Some(user) = caller.principal.shared_user() {
        response.extensions_mut().insert(AuthenticatedUser(user));
    }
    response
}

fn refusal(
    auth: &Auth,
    request: &Request,
    need: &Need,
    caller: &Caller,
    presented: bool,
) -> Response {
    match (auth.authenticator().mode(), &caller.principal) {
        (Mode::Token, _) if presented => challenge(auth, request, need, Some("insufficient_scope")),
        (_, Principal::User(user)) => ApiError::new(
            ErrorCode::Denied,
            format!("{user} may not {}", need_text(need)),
        )
        .into_response(),
        _ => challenge(auth, request, need, None),
    }
}

fn need_text(need: &Need) -> String {
    match need {
        Need::Login => "use the registry".into(),
        Need::Catalog => "list the catalog".into(),
        Need::On(name, action) => format!("{action} {name}"),
    }
}

/// 401 `UNAUTHORIZED` with `WWW-Authenticate`.
fn challenge(auth: &Auth, request: &Request, need: &Need, error: Option<&str>) -> Response {
    let o = auth.options();
    let value = match o.authenticator.mode() {
        Mode::Token => {
            let realm = match &o.token_realm {
                Some(realm) => realm.clone(),
                None => built_in_realm(request.headers(), o.https),
            };
            let mut v = format!("Bearer realm=\"{realm}\",service=\"{}\"", o.service);
            if let Some(scope) = challenge_scope(need, request) {
                v.push_str(&format!(",scope=\"{scope}\""));
            }
            if let Some(error) = error {
                v.push_str(&format!(",error=\"{error}\""));
            }
            v
        }
        _ => basic_challenge_value(&o.basic_realm),
    };
    let message = match need {
        Need::Login => "authentication required".to_owned(),
        need => format!("authentication required to {}", need_text(need)),
    };
    let mut error = ApiError::new(ErrorCode::Unauthorized, message);
    if let Ok(value) = HeaderValue::try_from(value) {
        error = error.with_header(header::WWW_AUTHENTICATE, value);
    }
    error.into_response()
}

/// `Basic realm="<realm>",charset="UTF-8"` (RFC 7617).
fn basic_challenge_value(realm: &str) -> String {
    format!("Basic realm=\"{realm}\",charset=\"UTF-8\"")
}

/// `error` with a `Basic` challenge for `realm` (the token endpoint's
/// answer to credentials that do not log in).
pub(crate) fn basic_challenge(error: ApiError, realm: &str) -> ApiError {
    match HeaderValue::try_from(basic_challenge_value(realm)) {
        Ok(value) => error.with_header(header::WWW_AUTHENTICATE, value),
        Err(_) => error,
    }
}

/// The scope a challenge asks for: what `need` takes, and for a mount
/// (`POST .../blobs/uploads/?mount=D&from=R`) also `repository:R:pull`,
/// since the mount needs it (see [`check_mount`]). As distribution does, so
/// a client that asks for exactly the challenge's scope (the conformance
/// suite does) gets a token that can mount rather than one that silently
/// falls back to a plain upload. Scopes are space-separated (token.md).
fn challenge_scope(need: &Need, request: &Request) -> Option<String> {
    let scope = need.scope()?;
    if !matches!(
        request.extensions().get::<Endpoint>(),
        Some(Endpoint::UploadStart { .. })
    ) {
        return Some(scope);
    }
    let params = crate::params::Params::parse(request.uri().query());
    let from = params
        .get("mount")
        .and(params.get("from"))
        .and_then(|from| from.parse::<RepositoryName>().ok());
    Some(match from {
        Some(from) => format!("{scope} repository:{from}:pull"),
        None => scope,
    })
}

/// `http(s)://<Host>/auth/token`, from the request's `Host` when it is a
/// plausible host name (never a client's arbitrary bytes in a header we
/// send back), else `localhost`.
pub(crate) fn built_in_realm(headers: &HeaderMap, https: bool) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{host}{}", crate::endpoint::TOKEN_PATH)
}

/// The user of a response, for the access log.
pub(crate) fn user_of(response: &Response) -> Option<Arc<str>> {
    response
        .extensions()
        .get::<AuthenticatedUser>()
        .map(|u| Arc::clone(&u.0))
}

/// The accounts (and keys) reload when their files change and on
/// `SIGHUP` (see [`crate::reload`]).
impl crate::reload::Reload for Authenticator {
    fn what(&self) -> &'static str {
        "accounts and keys"
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        Authenticator::files(self)
    }

    fn reload(&self) -> Result<(), String> {
        Authenticator::reload(self).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload_start(query: &str) -> Request {
        let name: RepositoryName = "team/app".parse().unwrap();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("/v2/team/app/blobs/uploads/{query}"))
            .body(axum::body::Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(Endpoint::UploadStart { name });
        request
    }

    fn need_of(request: &Request) -> Need<'_> {
        Need::of(
            request.extensions().get::<Endpoint>().unwrap(),
            request.method(),
        )
        .unwrap()
    }

    /// A mount's challenge also asks for `pull` on `from`; a plain upload's,
    /// an automatic mount's (no `from`) and one with an invalid `from` only
    /// for the target.
    #[test]
    fn a_mount_challenge_asks_for_pull_on_the_source() {
        let request = upload_start("?mount=sha256:abc&from=shared/base");
        assert_eq!(
            challenge_scope(&need_of(&request), &request).as_deref(),
            Some("repository:team/app:pull,push repository:shared/base:pull")
        );
        for query in [
            "",
            "?mount=sha256:abc",
            "?mount=sha256:abc&from=Bad..Name",
            "?from=shared/base",
        ] {
            let request = upload_start(query);
            assert_eq!(
                challenge_scope(&need_of(&request), &request).as_deref(),
                Some("repository:team/app:pull,push"),
                "{query}"
            );
        }
        assert_eq!(challenge_scope(&Need::Login, &upload_start("")), None);
    }
}
