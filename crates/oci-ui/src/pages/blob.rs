//! A blob (a layer or a config): its size and a download. Downloads are
//! sent as attachments of type `application/octet-stream`, never shown
//! inline: a blob can hold anything, HTML included.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use futures::StreamExt;
use maud::html;
use oci_types::{Digest, RepositoryName};

use super::{PageResult, shell};
use crate::{Ctx, paths, view};

pub(crate) async fn page(ctx: &Ctx<'_>, name: &RepositoryName, digest: &Digest) -> PageResult {
    let meta = ctx.storage().blob_stat(name, digest).await?;
    let base = ctx.base();
    let href = paths::blob(base, name, digest);
    let main = html! {
        nav class="crumbs" aria-label="Breadcrumb" {
            a href=(base) { "Repositories" } " / "
            a href=(paths::repo(base, name)) { (name) } " / "
            span aria-current="page" { (view::short(digest.as_str())) }
        }
        h1 { "Blob " (view::short(digest.as_str())) }
        dl class="facts" {
            dt { "Digest" } dd { code class="digest" { (digest) } }
            dt { "Size" } dd { (view::size(meta.size)) " (" (meta.size) " bytes)" }
        }
        p { a class="button" href={ (href) "/download" } download { "Download" } }
    };
    Ok(shell(
        ctx,
        &format!("Blob {}", view::short(digest.as_str())),
        main,
    ))
}

pub(crate) async fn download(ctx: &Ctx<'_>, name: &RepositoryName, digest: &Digest) -> PageResult {
    let read = ctx.storage().blob_get(name, digest, None).await?;
    let file = format!("attachment; filename=\"{}.bin\"", digest.hex());
    let body = Body::from_stream(read.stream.map(|r| r.map_err(std::io::Error::other)));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::try_from(file).unwrap_or(HeaderValue::from_static("attachment")),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(read.size)),
        ],
        body,
    )
        .into_response())
}
