//! The registry's web UI: server-rendered HTML pages to browse
//! repositories, tags, manifests, layers, configs and referrers, see
//! storage usage, and delete tags and manifests.
//!
//! [`Ui`] answers every request under its path (`/ui/` by default) and
//! the redirect from `/`; the HTTP layer (`oci-http`) routes those
//! requests to [`Ui::handle`] behind the same access log, request cap and
//! limits as the API. Pages are [maud] templates, which escape every value
//! they interpolate; the stylesheet and a little script (search as you
//! type, copy to clipboard) are compiled into the binary ([`assets`]).
//! Every page is sent with a `Content-Security-Policy` that allows only
//! those: no inline script runs, whatever a repository holds.
//!
//! Access: with an [`Authenticator`], visitors log in with the accounts of
//! `[auth]` (htpasswd) and see only the repositories the `[access]` policy
//! lets them pull; delete buttons appear, and deletes succeed, only where
//! it grants `delete`. Sessions and CSRF tokens: [`session`].
//!
//! Scale: a page reads only what it shows. Listings are paginated
//! (catalog and tags pages of [`UiOptions::page_size`]); sorting tags by
//! push time costs two listings of the repository ([`Storage::tag_times`]),
//! no read per tag; tag counts, last pushes and sizes of repositories come
//! from the usage last recorded by `oci-registry du`
//! ([`Storage::recorded_usage`]), one read.

pub mod assets;
mod error;
mod pages;
mod paths;
pub mod session;
mod view;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oci_auth::{Action, Authenticator, Caller, Principal};
use oci_storage::{SharedKey, Storage};
use oci_types::RepositoryName;

pub use error::UiError;

/// In the answer to a delete made through the UI: what was deleted and by
/// whom, for the layers around the UI (event notifications turn it into a
/// `delete` event, as for `DELETE /v2/<name>/manifests/<reference>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The repository.
    pub repository: oci_types::RepositoryName,
    /// The tag or manifest deleted.
    pub reference: oci_types::Reference,
    /// Who was logged in, if anyone.
    pub user: Option<String>,
}

use session::{Keys, Session};

/// The default path of the UI.
pub const DEFAULT_PATH: &str = "/ui/";

/// What the UI is built with.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// Where it is served: starts and ends with `/` (see [`check_path`]).
    pub path: String,
    /// Who visitors are and what they may do; `None`: everyone may do
    /// everything, and there is no login.
    pub authenticator: Option<Arc<Authenticator>>,
    /// Mark the session cookie `Secure` (the registry serves TLS).
    pub secure_cookies: bool,
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// Repositories and tags per page.
    pub page_size: usize,
}

impl Default for UiOptions {
    fn default() -> Self {
        Self {
            path: DEFAULT_PATH.into(),
            authenticator: None,
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            page_size: 50,
        }
    }
}

/// Checks a UI path: `/`-delimited segments of `A-Z a-z 0-9 . _ -`,
/// starting and ending with `/`, other than `/` itself, and outside the
/// API (`/v2/`) and the token endpoint (`/auth/`).
pub fn check_path(path: &str) -> Result<(), String> {
    let ok_chars = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    if path.len() < 3 || !path.starts_with('/') || !path.ends_with('/') || !ok_chars {
        return Err(format!(
            "{path:?} is no UI path: it must look like \"/ui/\" (letters, digits, . _ - between slashes)"
        ));
    }
    if path.contains("//") || path.split('/').any(|s| s == "." || s == "..") {
        return Err(format!("{path:?} has an empty, . or .. segment"));
    }
    if path.starts_with("/v2/") || path.starts_with("/auth/") {
        return Err(format!(
            "{path:?} is under the registry API (/v2/) or the token endpoint (/auth/)"
        ));
    }
    Ok(())
}

/// The web UI. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ui(Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub storage: Storage,
    pub options: UiOptions,
    pub keys: Keys,
}

impl Ui {
    /// The UI over `storage`. Reads (or, the first replica, creates) the
    /// session signing key in storage, so every replica shares it.
    pub async fn new(storage: Storage, options: UiOptions) -> Result<Self, UiError> {
        check_path(&options.path).map_err(UiError::BadRequest)?;
        let secret = storage
            .shared_key(
                SharedKey::UiSession,
                bytes::Bytes::copy_from_slice(&session::random_bytes()),
            )
            .await?;
        Ok(Self(Arc::new(Inner {
            keys: Keys::new(&secret),
            storage,
            options,
        })))
    }

    /// The path it is served at (`/ui/`).
    pub fn path(&self) -> &str {
        &self.0.options.path
    }

    /// True if the UI answers `path`: `/` (a redirect) and everything
    /// under [`Ui::path`] (and that path without its final slash).
    pub fn serves(&self, path: &str) -> bool {
        let base = self.path();
        path == "/" || path.starts_with(base) || path == &base[..base.len() - 1]
    }

    /// Answers a request for a path [`Ui::serves`]; `client` is the
    /// client's address (for login throttling).
    pub async fn handle(&self, request: Request, client: IpAddr) -> Response {
        let inner = &self.0;
        let base = inner.options.path.as_str();
        let path = request.uri().path().to_owned();
        let Some(rest) = path.strip_prefix(base) else {
            return redirect(base);
        };
        let rest = rest.to_owned();
        let (parts, body) = request.into_parts();
        let (session, fresh) = match inner.keys.session(&parts.headers) {
            Some(s) => (s, false),
            None => (Session::new(None, inner.options.session_ttl), true),
        };
        let mut ctx = Ctx {
            ui: inner,
            caller: caller_of(inner, &session),
            session,
            host: host_of(&parts.headers),
            new_session: fresh,
        };
        let request = view::Request {
            method: &parts.method,
            path: &rest,
            query: parts.uri.query(),
            headers: &parts.headers,
            body: std::sync::Mutex::new(Some(body)),
            client,
        };
        let result = pages::route(&mut ctx, request).await;
        let mut response = match result {
            Ok(response) => response,
            Err(e) => pages::error_page(&ctx, &e),
        };
        if ctx.new_session {
            let cookie = inner
                .keys
                .set_cookie(&ctx.session, base, inner.options.secure_cookies);
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        secure_headers(response.headers_mut());
        response
    }
}

/// What every UI response carries: a policy that runs only the UI's own
/// script and style (no inline script, no other origin), no framing, no
/// sniffing, no referrer leaking repository names, no caching of pages.
fn secure_headers(h: &mut HeaderMap) {
    let csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
               connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// `303 See Other` to `to` (a path of the UI).
pub(crate) fn redirect(to: &str) -> Response {
    let location = HeaderValue::try_from(to).unwrap_or(HeaderValue::from_static("/"));
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location)],
        Body::empty(),
    )
        .into_response()
}

/// The caller a session stands for (`None`: no access control).
fn caller_of(inner: &Inner, session: &Session) -> Option<Caller> {
    inner.options.authenticator.as_ref()?;
    let principal = match &session.user {
        Some(user) => Principal::User(user.as_str().into()),
        None => Principal::Anonymous,
    };
    Some(Caller::by_policy(principal))
}

/// The registry's host as the client named it, for pull commands: the
/// `Host` header when it is a plausible host, else `localhost`.
fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .unwrap_or("localhost")
        .to_owned()
}

/// One request's view of the UI: its session and rights.
pub(crate) struct Ctx<'a> {
    pub ui: &'a Inner,
    pub session: Session,
    caller: Option<Caller>,
    /// The registry's host, for pull commands.
    pub host: String,
    /// The session must be (re)sent as a cookie.
    pub new_session: bool,
}

impl Ctx<'_> {
    /// True if the visitor may do `action` in `name`.
    pub fn may(&self, name: &RepositoryName, action: Action) -> bool {
        match (&self.ui.options.authenticator, &self.caller) {
            (Some(authn), Some(caller)) => authn.allowed(caller, name).contains(action),
            _ => true,
        }
    }

    /// True if logging in means anything here.
    pub fn has_login(&self) -> bool {
        self.ui.options.authenticator.is_some()
    }

    /// The logged-in user.
    pub fn user(&self) -> Option<&str> {
        self.session.user.as_deref()
    }

    /// The CSRF token forms carry.
    pub fn csrf(&self) -> String {
        self.ui.keys.csrf(&self.session)
    }

    /// Replaces the session (logging in or out): a new cookie is sent.
    pub fn renew(&mut self, user: Option<String>) {
        self.session = Session::new(user, self.ui.options.session_ttl);
        self.caller = caller_of(self.ui, &self.session);
        self.new_session = true;
    }

    /// The UI's base path.
    pub fn base(&self) -> &str {
        &self.ui.options.path
    }

    /// The storage.
    pub fn storage(&self) -> &Storage {
        &self.ui.storage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_paths_checked() {
        for ok in ["/ui/", "/registry/ui/", "/a-b_c.d/"] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/", "ui/", "/ui", "//", "/v2/ui/", "/auth/x/", "/a//b/", "/../", "/u i/", "/<x>/",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
