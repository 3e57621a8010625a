//! Deleting a tag or a manifest: a confirmation page, then a POST with
//! the session's CSRF token. Both ask the access policy for `delete`.

use maud::html;
use oci_auth::Action;
use oci_types::{Reference, RepositoryName};

use super::{PageResult, shell};
use crate::view::Request;
use crate::{Ctx, UiError, paths, redirect};

fn reference_of(text: Option<&String>) -> Result<Reference, UiError> {
    text.and_then(|r| r.parse().ok())
        .ok_or_else(|| UiError::BadRequest("no tag or digest to delete".into()))
}

fn check_allowed(ctx: &Ctx<'_>, name: &RepositoryName) -> Result<(), UiError> {
    if ctx.may(name, Action::Delete) {
        return Ok(());
    }
    let who = ctx.user().unwrap_or("an anonymous visitor");
    Err(UiError::Forbidden(format!(
        "{who} may not delete in {name}"
    )))
}

pub(crate) async fn confirm(
    ctx: &Ctx<'_>,
    request: &Request<'_>,
    name: &RepositoryName,
) -> PageResult {
    let reference = reference_of(request.params().get("ref"))?;
    check_allowed(ctx, name)?;
    // 404 for what is not there.
    let meta = ctx.storage().manifest_head(name, &reference).await?;
    let base = ctx.base();
    let (what, detail) = match &reference {
        Reference::Tag(t) => (
            format!("the tag {t}"),
            "The manifest it points to stays, as do its other tags.".to_owned(),
        ),
        Reference::Digest(d) => (
            format!("the manifest {d}"),
            "Every tag pointing to it goes with it.".to_owned(),
        ),
    };
    let main = html! {
        h1 { "Delete " (what) "?" }
        p { "In " strong { (name) } ": " (detail) " Digest: " code { (meta.digest) } }
        form method="post" action=(paths::delete(base, name, &reference.to_string())) {
            input type="hidden" name="csrf" value=(ctx.csrf());
            input type="hidden" name="ref" value=(reference.to_string());
            button type="submit" class="danger" { "Delete" }
            " "
            a href=(paths::manifest(base, name, &reference.to_string())) { "Cancel" }
        }
    };
    Ok(shell(ctx, &format!("Delete {what}"), main))
}

pub(crate) async fn submit(
    ctx: &Ctx<'_>,
    request: Request<'_>,
    name: &RepositoryName,
) -> PageResult {
    let form = request.form().await?;
    if !form
        .get("csrf")
        .is_some_and(|t| ctx.ui.keys.csrf_ok(&ctx.session, t))
    {
        return Err(UiError::Csrf);
    }
    check_allowed(ctx, name)?;
    let reference = reference_of(form.get("ref"))?;
    ctx.storage().manifest_delete(name, &reference).await?;
    tracing::info!(repository = %name, reference = %reference, user = ctx.user().unwrap_or("-"), "web UI: deleted");
    let to = format!(
        "{}{}",
        paths::repo(ctx.base(), name),
        paths::query(&[("deleted", &reference.to_string())])
    );
    let mut response = redirect(&to);
    response.extensions_mut().insert(crate::Deleted {
        repository: name.clone(),
        reference,
        user: ctx.user().map(str::to_owned),
    });
    Ok(response)
}
