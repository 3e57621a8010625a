//! Logging in (the accounts of `[auth]`) and out.

use maud::html;
use oci_auth::AuthError;

use super::{PageResult, shell};
use crate::view::Request;
use crate::{Ctx, UiError, redirect};

/// Where to go after logging in: a path of the UI, never elsewhere.
fn next_of<'a>(ctx: &'a Ctx<'_>, next: Option<&'a String>) -> &'a str {
    next.map(String::as_str)
        .filter(|n| n.starts_with(ctx.base()) && !n.contains("//") && !n.contains('\\'))
        .unwrap_or(ctx.base())
}

pub(crate) fn form(ctx: &Ctx<'_>, request: &Request<'_>, failed: Option<&str>) -> PageResult {
    if !ctx.has_login() {
        return Err(UiError::NotFound);
    }
    let params = request.params();
    let next = next_of(ctx, params.get("next")).to_owned();
    let main = html! {
        h1 { "Log in" }
        @if let Some(failed) = failed { p class="error" role="alert" { (failed) } }
        form method="post" action={ (ctx.base()) "login" } class="login" {
            input type="hidden" name="csrf" value=(ctx.csrf());
            input type="hidden" name="next" value=(next);
            label for="user" { "User" }
            input id="user" name="user" type="text" autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { "Log in" }
        }
    };
    Ok(shell(ctx, "Log in", main))
}

pub(crate) async fn submit(ctx: &mut Ctx<'_>, request: Request<'_>) -> PageResult {
    let Some(authn) = ctx.ui.options.authenticator.clone() else {
        return Err(UiError::NotFound);
    };
    let client = request.client;
    let form = request.form().await?;
    if !form
        .get("csrf")
        .is_some_and(|t| ctx.ui.keys.csrf_ok(&ctx.session, t))
    {
        return Err(UiError::Csrf);
    }
    let user = form.get("user").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    match authn.login(user, password, client).await {
        Ok(principal) => {
            let next = next_of(ctx, form.get("next")).to_owned();
            ctx.renew(principal.user().map(str::to_owned));
            Ok(redirect(&next))
        }
        Err(AuthError::Throttled(_)) => Err(UiError::Throttled),
        Err(e) => {
            tracing::debug!(error = %e, "web UI: login refused");
            let empty = Request {
                method: &axum::http::Method::GET,
                path: "login",
                query: None,
                headers: &axum::http::HeaderMap::new(),
                body: std::sync::Mutex::new(None),
                client,
            };
            let mut page = form_page(ctx, &empty)?;
            *page.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
            Ok(page)
        }
    }
}

fn form_page(ctx: &Ctx<'_>, request: &Request<'_>) -> PageResult {
    form(ctx, request, Some("Wrong user or password."))
}

pub(crate) async fn logout(ctx: &mut Ctx<'_>, request: Request<'_>) -> PageResult {
    let form = request.form().await?;
    if !form
        .get("csrf")
        .is_some_and(|t| ctx.ui.keys.csrf_ok(&ctx.session, t))
    {
        return Err(UiError::Csrf);
    }
    ctx.renew(None);
    Ok(redirect(ctx.base()))
}
