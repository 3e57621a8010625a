//! A repository: a page of its tags, each with its digest, push time,
//! size, media type and platforms, sorted by name or by push time.

use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};
use maud::html;
use oci_auth::Action;
use oci_types::{Digest, Pagination, Reference, RepositoryName, Tag};
use serde_json::Value;

use super::{PageResult, copyable, shell};
use crate::view::{self, Request};
use crate::{Ctx, UiError, paths};

/// Tags whose details are read at once.
const READ_CONCURRENCY: usize = 8;

/// One row of the tags table.
struct Row {
    tag: Tag,
    digest: Digest,
    pushed: SystemTime,
    /// Of an image: config and layers; of an index: unknown here.
    size: Option<u64>,
    media_type: String,
    platforms: Vec<String>,
}

/// How the tags are sorted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Name,
    Pushed,
}

pub(crate) async fn page(
    ctx: &Ctx<'_>,
    request: &Request<'_>,
    name: &RepositoryName,
) -> PageResult {
    let params = request.params();
    let sort = match params.get("sort").map(String::as_str) {
        Some("pushed") => Sort::Pushed,
        _ => Sort::Name,
    };
    let n = ctx.ui.options.page_size;
    let base = ctx.base();
    // Name order pages through storage; push-time order lists the whole
    // repository once (two listings, no read per tag) and shows a slice.
    let (tags, next, total): (Vec<Tag>, Option<String>, Option<usize>) = match sort {
        Sort::Name => {
            let last = params.get("after").cloned().filter(|a| !a.is_empty());
            let (tags, more) = ctx
                .storage()
                .tags_list(name, &Pagination { n: Some(n), last })
                .await?;
            let next = more.then(|| {
                let last = tags.last().map(|t| t.as_str()).unwrap_or("");
                format!(
                    "{}{}",
                    paths::repo(base, name),
                    paths::query(&[("after", last)])
                )
            });
            (tags, next, None)
        }
        Sort::Pushed => {
            let offset: usize = params
                .get("offset")
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            let times = ctx.storage().tag_times(name).await?;
            let total = times.len();
            let tags = times
                .into_iter()
                .skip(offset)
                .take(n)
                .map(|t| t.tag)
                .collect();
            let next = (offset.saturating_add(n) < total).then(|| {
                let offset = (offset + n).to_string();
                format!(
                    "{}{}",
                    paths::repo(base, name),
                    paths::query(&[("sort", "pushed"), ("offset", &offset)])
                )
            });
            (tags, next, Some(total))
        }
    };
    let rows: Vec<Row> = futures::stream::iter(tags)
        .map(|tag| row(ctx, name, tag))
        .buffered(READ_CONCURRENCY)
        .try_filter_map(|r| async move { Ok(r) })
        .try_collect()
        .await?;
    let usage = ctx.storage().recorded_usage().await?;
    let record = usage.as_ref().and_then(|u| u.repository(name));
    let may_delete = ctx.may(name, Action::Delete);
    let deleted = params.get("deleted");
    let here = paths::repo(base, name);
    let main = html! {
        nav class="crumbs" aria-label="Breadcrumb" {
            a href=(base) { "Repositories" } " / " span aria-current="page" { (name) }
        }
        h1 { (name) }
        @if let Some(deleted) = deleted {
            p class="notice" role="status" { "Deleted " code { (deleted) } "." }
        }
        dl class="facts" {
            @if let Some(total) = total { dt { "Tags" } dd { (total) } }
            @else if let Some(r) = record { dt { "Tags" } dd { (r.tags) } }
            @if let Some(r) = record {
                dt { "Size" } dd { (view::size(r.referenced_bytes)) " (" (view::size(r.exclusive_bytes)) " only here)" }
            }
        }
        (copyable("docker", &format!("docker pull {}/{name}", ctx.host)))
        (copyable("podman", &format!("podman pull {}/{name}", ctx.host)))
        h2 { "Tags" }
        p class="sort" {
            "Sort by: "
            @if sort == Sort::Name { strong { "name" } } @else { a href=(here) { "name" } }
            " · "
            @if sort == Sort::Pushed { strong { "push time" } } @else { a href={ (here) "?sort=pushed" } { "push time" } }
        }
        @if rows.is_empty() {
            p { "No tags." }
        } @else {
            div class="table-wrap" {
                table id="tags" {
                    caption class="visually-hidden" { "Tags of " (name) }
                    thead { tr {
                        th scope="col" { "Tag" }
                        th scope="col" { "Digest" }
                        th scope="col" { "Pushed" }
                        th scope="col" class="num" { "Size" }
                        th scope="col" { "Media type" }
                        th scope="col" { "Platforms" }
                        @if may_delete { th scope="col" { span class="visually-hidden" { "Actions" } } }
                    } }
                    tbody {
                        @for r in &rows {
                            tr {
                                th scope="row" { a href=(paths::manifest(base, name, r.tag.as_str())) { (r.tag) } }
                                td { a href=(paths::manifest(base, name, r.digest.as_str())) title=(r.digest) { code { (view::short(r.digest.as_str())) } } }
                                td { time datetime=(view::time_attr(r.pushed)) { (view::time(r.pushed)) } }
                                td class="num" { (r.size.map_or("-".into(), view::size)) }
                                td { (view::media_type(&r.media_type)) }
                                td { (r.platforms.join(", ")) }
                                @if may_delete {
                                    td { a class="danger" href=(paths::delete(base, name, r.tag.as_str())) { "Delete" span class="visually-hidden" { " tag " (r.tag) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav class="pages" aria-label="Pages" {
            @if params.contains_key("after") || params.get("offset").is_some_and(|o| o != "0") {
                a href={ (here) @if sort == Sort::Pushed { "?sort=pushed" } } { "First page" }
            }
            @if let Some(next) = &next { a href=(next) rel="next" { "Next page" } }
        }
    };
    Ok(shell(ctx, name.as_str(), main))
}

/// A tag's row: what it points to (two small reads) and its manifest
/// (two more); `None` if it went away meanwhile.
async fn row(ctx: &Ctx<'_>, name: &RepositoryName, tag: Tag) -> Result<Option<Row>, UiError> {
    let s = ctx.storage();
    let Some(record) = s.tag_record(name, &tag).await? else {
        return Ok(None);
    };
    let manifest = match s
        .manifest_get(name, &Reference::Digest(record.digest.clone()))
        .await
    {
        Ok(m) => m,
        Err(e) => match UiError::from(e) {
            UiError::NotFound => return Ok(None),
            e => return Err(e),
        },
    };
    let json: Value = serde_json::from_slice(&manifest.body).unwrap_or(Value::Null);
    let summary = super::manifest::Summary::of(&json, manifest.meta.size);
    Ok(Some(Row {
        tag,
        digest: record.digest,
        pushed: record.recorded_at,
        size: summary.size,
        media_type: manifest.meta.media_type,
        platforms: summary.platforms,
    }))
}
