//! The pages, one module each, and the shell they share.

mod blob;
mod delete;
mod login;
mod manifest;
mod repositories;
mod repository;
mod usage;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use oci_auth::Action;
use oci_types::{Reference, RepositoryName};

use crate::view::Request;
use crate::{Ctx, UiError, assets};

/// What a page handler returns.
pub(crate) type PageResult = Result<Response, UiError>;

/// Sends a request to its page.
pub(crate) async fn route(ctx: &mut Ctx<'_>, request: Request<'_>) -> PageResult {
    let method = request.method.clone();
    let path = request.path.to_owned();
    match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "") => repositories::page(ctx, &request).await,
        (&Method::GET | &Method::HEAD, "static/app.css") => Ok(asset(assets::CSS, "text/css")),
        (&Method::GET | &Method::HEAD, "static/app.js") => Ok(asset(assets::JS, "text/javascript")),
        (&Method::GET | &Method::HEAD, "usage") => usage::page(ctx, &request).await,
        (&Method::GET | &Method::HEAD, "login") => login::form(ctx, &request, None),
        (&Method::POST, "login") => login::submit(ctx, request).await,
        (&Method::POST, "logout") => login::logout(ctx, request).await,
        (_, p) if p.starts_with("r/") => repository_route(ctx, request, &p[2..]).await,
        _ => Err(UiError::NotFound),
    }
}

/// `r/<name>[/-/<what>/<arg>]`.
async fn repository_route(ctx: &mut Ctx<'_>, request: Request<'_>, rest: &str) -> PageResult {
    let (name, what) = match rest.split_once("/-/") {
        Some((name, what)) => (name, Some(what)),
        None => (rest, None),
    };
    let name: RepositoryName = name.parse().map_err(|_| UiError::NotFound)?;
    // A repository the visitor may not pull is not there, for them.
    if !ctx.may(&name, Action::Pull) {
        return Err(UiError::NotFound);
    }
    let method = request.method.clone();
    let get = method == Method::GET || method == Method::HEAD;
    match what {
        None if get => repository::page(ctx, &request, &name).await,
        Some("delete") if get => delete::confirm(ctx, &request, &name).await,
        Some("delete") if method == Method::POST => delete::submit(ctx, request, &name).await,
        Some(what) if get => {
            let (kind, arg) = what.split_once('/').ok_or(UiError::NotFound)?;
            match kind {
                "manifest" => {
                    let reference = decode(arg)
                        .parse::<Reference>()
                        .map_err(|_| UiError::NotFound)?;
                    manifest::page(ctx, &name, &reference).await
                }
                "blob" => match arg.strip_suffix("/download") {
                    Some(digest) => blob::download(ctx, &name, &parse_digest(digest)?).await,
                    None => blob::page(ctx, &name, &parse_digest(arg)?).await,
                },
                _ => Err(UiError::NotFound),
            }
        }
        _ => Err(UiError::NotFound),
    }
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_digest(text: &str) -> Result<oci_types::Digest, UiError> {
    decode(text).parse().map_err(|_| UiError::NotFound)
}

/// An embedded asset, cacheable for a day.
fn asset(text: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        text,
    )
        .into_response()
}

/// A whole page: the shell around `main`.
pub(crate) fn shell(ctx: &Ctx<'_>, title: &str, main: Markup) -> Response {
    shell_with_status(ctx, StatusCode::OK, title, main)
}

fn shell_with_status(ctx: &Ctx<'_>, status: StatusCode, title: &str, main: Markup) -> Response {
    let base = ctx.base();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · OCI registry" }
                link rel="stylesheet" href={ (base) "static/app.css" };
                script defer src={ (base) "static/app.js" } {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    nav aria-label="Main" {
                        a class="brand" href=(base) { "OCI registry" }
                        a href=(base) { "Repositories" }
                        a href={ (base) "usage" } { "Storage" }
                        span class="grow" {}
                        @if ctx.has_login() {
                            @match ctx.user() {
                                Some(user) => {
                                    span class="who" { "Signed in as " strong { (user) } }
                                    form method="post" action={ (base) "logout" } class="inline" {
                                        input type="hidden" name="csrf" value=(ctx.csrf());
                                        button type="submit" { "Log out" }
                                    }
                                }
                                None => { a href={ (base) "login" } { "Log in" } }
                            }
                        }
                    }
                }
                main id="main" { (main) }
            }
        }
    };
    (status, Html(page.into_string())).into_response()
}

/// The page of an error.
pub(crate) fn error_page(ctx: &Ctx<'_>, e: &UiError) -> Response {
    if let UiError::Storage(e) = e {
        tracing::warn!(error = %e, "web UI: storage failed");
    }
    let (title, text) = match e {
        UiError::NotFound => (
            "Not found",
            "There is nothing here, or nothing you may see.".to_owned(),
        ),
        UiError::Storage(_) => ("Error", "Storage failed; try again later.".to_owned()),
        e => ("Refused", e.to_string()),
    };
    let main = html! {
        h1 { (title) }
        p role="alert" { (text) }
        @if ctx.has_login() && ctx.user().is_none() {
            p { a href={ (ctx.base()) "login" } { "Log in" } " to see more." }
        }
        p { a href=(ctx.base()) { "Back to the repositories" } }
    };
    shell_with_status(ctx, e.status(), title, main)
}

/// The copyable command `text`: a code box and a button the script
/// wires to the clipboard.
pub(crate) fn copyable(label: &str, text: &str) -> Markup {
    html! {
        div class="copy" {
            span class="copy-label" { (label) }
            code { (text) }
            button type="button" class="copy-button" data-copy=(text)
                aria-label={ "Copy: " (label) } { "Copy" }
        }
    }
}
