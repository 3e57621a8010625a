//! The built-in token issuer at `/auth/token` (distribution's
//! `docs/spec/auth/token.md` for GET, `oauth.md` for POST).

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oci_types::ErrorCode;

use crate::auth::Auth;
use crate::error::ApiError;

/// Answers a token request.
pub(crate) async fn serve(_auth: &Auth, _request: Request) -> Response {
    ApiError::new(
        ErrorCode::Unsupported,
        "this registry does not issue tokens",
    )
    .with_status(StatusCode::NOT_FOUND)
    .into_response()
}
