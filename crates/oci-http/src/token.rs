//! The built-in token issuer at `/auth/token` (distribution's
//! `docs/spec/auth/token.md` for GET, `oauth.md` for POST).
//!
//! - `GET /auth/token?service=S&scope=A&scope=B[&offline_token=true]`
//!   with optional `Authorization: Basic`: docker, podman, skopeo,
//!   containerd, Kubernetes.
//! - `POST /auth/token` with a form: `grant_type=password` (`username`,
//!   `password`) or `grant_type=refresh_token` (`refresh_token`), plus
//!   `service`, `scope` (space-separated) and `access_type=offline` for a
//!   refresh token: docker and containerd with OAuth.
//!
//! The answer is `{"token", "access_token", "expires_in", "issued_at"}`,
//! with `refresh_token` when one was asked for with a password, and
//! `Cache-Control: no-store`. The token grants the intersection of what
//! was asked and what the policy gives the caller: asking for more is not
//! an error, the token simply lacks it (token.md).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oci_auth::{AuthError, IssuedToken, Login, Scope, TokenRequest};
use oci_types::ErrorCode;
use serde::Serialize;

use crate::auth::{Auth, Presented, client_address};
use crate::error::ApiError;

/// Largest form body accepted by POST.
const MAX_FORM: usize = 64 * 1024;

/// Answers a token request.
pub(crate) async fn serve(auth: &Auth, request: Request) -> Response {
    match issue(auth, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn issue(auth: &Auth, request: Request) -> Result<Response, ApiError> {
    let authenticator = &auth.options().authenticator;
    if !authenticator.issues_tokens() {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "this registry does not issue tokens",
        )
        .with_status(StatusCode::NOT_FOUND));
    }
    let address = client_address(&request);
    let (parts, body) = request.into_parts();
    let unauthorized = || unauthorized(&auth.options().basic_realm);
    let presented = Presented::of(&parts.headers).map_err(|()| unauthorized())?;
    let post = parts.method == Method::POST;
    let form: Vec<(String, String)> = if post {
        let body = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| bad_request("the form is too large or could not be read"))?;
        url::form_urlencoded::parse(&body).into_owned().collect()
    } else {
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    };
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let scopes: Vec<Scope> = form
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').filter_map(Scope::parse))
        .take(oci_auth::authenticator::MAX_SCOPES + 1)
        .collect();
    if scopes.len() > oci_auth::authenticator::MAX_SCOPES {
        return Err(bad_request("too many scopes in one token request"));
    }
    let (login, offline) = if post {
        let login = match get("grant_type") {
            Some("password") => Login::Password {
                user: get("username").unwrap_or(""),
                password: get("password").unwrap_or(""),
            },
            Some("refresh_token") => Login::Refresh(get("refresh_token").unwrap_or("")),
            _ => return Err(bad_request("grant_type must be password or refresh_token")),
        };
        (login, get("access_type") == Some("offline"))
    } else {
        let login = match presented.credentials() {
            oci_auth::Credentials::None => Login::Anonymous,
            oci_auth::Credentials::Basic { user, password } => Login::Password { user, password },
            oci_auth::Credentials::Bearer(_) => return Err(unauthorized()),
        };
        (login, get("offline_token") == Some("true"))
    };
    let issued = authenticator
        .issue(TokenRequest {
            login,
            service: get("service"),
            scopes,
            offline,
            address,
        })
        .await
        .map_err(|e| match e {
            AuthError::Throttled(retry) => crate::auth::throttled_error(retry),
            AuthError::Fetch(_) => {
                tracing::warn!(error = %e, "token request: an OIDC issuer's keys are unreachable");
                ApiError::new(ErrorCode::Unknown, "the identity provider is unreachable")
                    .with_status(StatusCode::SERVICE_UNAVAILABLE)
            }
            e => {
                tracing::debug!(error = %e, "token request refused");
                unauthorized()
            }
        })?;
    Ok(answer(&issued, post))
}

/// The token response body (token.md "Token Response Fields"; oauth.md).
#[derive(Serialize)]
struct Answer<'a> {
    token: &'a str,
    access_token: &'a str,
    expires_in: u64,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

fn answer(issued: &IssuedToken, post: bool) -> Response {
    let body = Answer {
        token: &issued.token,
        access_token: &issued.token,
        expires_in: issued.expires_in,
        issued_at: humantime::format_rfc3339_seconds(issued.issued_at).to_string(),
        refresh_token: issued.refresh_token.as_deref(),
        scope: post.then(|| {
            issued
                .scopes
                .iter()
                .map(Scope::to_challenge)
                .collect::<Vec<_>>()
                .join(" ")
        }),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from(json),
    )
        .into_response()
}

/// 401 for credentials that do not log in (never saying which part was
/// wrong), with a Basic challenge so that a client with credentials
/// knows to send them.
fn unauthorized(realm: &str) -> ApiError {
    crate::auth::basic_challenge(
        ApiError::new(ErrorCode::Unauthorized, "authentication failed"),
        realm,
    )
}

fn bad_request(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unsupported, message.to_owned()).with_status(StatusCode::BAD_REQUEST)
}
