//! The repositories: a page of the catalog (only those the visitor may
//! pull), searchable by name prefix, with each one's tags, last push and
//! size from the last recorded usage.

use maud::html;
use oci_auth::Action;
use oci_types::{Pagination, RepositoryName};

use super::{PageResult, shell};
use crate::view::{self, Request};
use crate::{Ctx, UiError, paths};

/// Catalog entries read per storage page while filtering.
const SCAN: usize = 1000;

/// Longest search text.
const MAX_QUERY: usize = 256;

pub(crate) async fn page(ctx: &Ctx<'_>, request: &Request<'_>) -> PageResult {
    let params = request.params();
    let q = params.get("q").map(|q| q.trim()).unwrap_or("").to_owned();
    if q.len() > MAX_QUERY {
        return Err(UiError::BadRequest("the search is too long".into()));
    }
    let after = params.get("after").cloned().filter(|a| !a.is_empty());
    let (names, more) = visible_page(ctx, &q, after.clone()).await?;
    let usage = ctx.storage().recorded_usage().await?;
    let base = ctx.base();
    let next = more.then(|| {
        let last = names.last().map(|n| n.as_str()).unwrap_or("");
        let mut pairs = vec![("after", last)];
        if !q.is_empty() {
            pairs.push(("q", q.as_str()));
        }
        format!("{base}{}", paths::query(&pairs))
    });
    let main = html! {
        h1 { "Repositories" }
        form method="get" action=(base) class="search" role="search" {
            label for="q" { "Search by name prefix" }
            input id="q" name="q" type="search" value=(q) autocomplete="off"
                data-filter="#repositories" placeholder="name prefix";
            button type="submit" { "Search" }
        }
        @if names.is_empty() {
            p { @if q.is_empty() { "No repositories yet." } @else { "No repository starts with " code { (q) } "." } }
        } @else {
            div class="table-wrap" {
                table id="repositories" {
                    caption class="visually-hidden" { "Repositories" }
                    thead { tr {
                        th scope="col" { "Name" }
                        th scope="col" class="num" { "Tags" }
                        th scope="col" { "Last push" }
                        th scope="col" class="num" { "Size" }
                    } }
                    tbody {
                        @for name in &names {
                            @let row = usage.as_ref().and_then(|u| u.repository(name));
                            tr data-name=(name) {
                                th scope="row" { a href=(paths::repo(base, name)) { (name) } }
                                td class="num" { (row.map_or("-".into(), |r| r.tags.to_string())) }
                                td { (row.and_then(|r| r.last_push_ms).map_or("-".into(), |ms| view::time(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)))) }
                                td class="num" { (row.map_or("-".into(), |r| view::size(r.referenced_bytes))) }
                            }
                        }
                    }
                }
            }
        }
        nav class="pages" aria-label="Pages" {
            @if after.is_some() {
                a href={ (base) (paths::query(&if q.is_empty() { vec![] } else { vec![("q", q.as_str())] })) } { "First page" }
            }
            @if let Some(next) = &next { a href=(next) rel="next" { "Next page" } }
        }
        p class="note" {
            @match &usage {
                Some(u) => { "Tags, last push and size as of " (view::time(u.computed_at())) " (" code { "oci-registry du" } " records them)." }
                None => { "Tags, last push and size appear once " code { "oci-registry du" } " has recorded usage." }
            }
        }
    };
    Ok(shell(ctx, "Repositories", main))
}

/// A page of the repositories the visitor may pull whose names start
/// with `prefix`, after `after`, and whether more follow. Storage pages
/// are read until the page is full (a visitor who sees few repositories
/// among many costs more reads, never more memory than a page).
async fn visible_page(
    ctx: &Ctx<'_>,
    prefix: &str,
    after: Option<String>,
) -> Result<(Vec<RepositoryName>, bool), UiError> {
    let want = ctx.ui.options.page_size;
    let mut shown = Vec::new();
    let mut last = after.clone();
    if after.is_none() && !prefix.is_empty() {
        // Names with the prefix sort after the prefix itself, which may
        // be a repository too.
        if let Ok(name) = prefix.parse::<RepositoryName>()
            && ctx.storage().repository_exists(&name).await?
            && ctx.may(&name, Action::Pull)
        {
            shown.push(name);
        }
        last = Some(prefix.to_owned());
    }
    loop {
        let scan = Pagination {
            n: Some(SCAN),
            last: last.clone(),
        };
        let (names, more) = ctx.storage().catalog(&scan).await?;
        last = names.last().map(|n| n.as_str().to_owned());
        for name in names {
            if !name.as_str().starts_with(prefix) {
                // Names are sorted: past the prefix, nothing more matches.
                return Ok((shown, false));
            }
            if !ctx.may(&name, Action::Pull) {
                continue;
            }
            if shown.len() == want {
                return Ok((shown, true));
            }
            shown.push(name);
        }
        if !more || last.is_none() {
            return Ok((shown, false));
        }
    }
}
