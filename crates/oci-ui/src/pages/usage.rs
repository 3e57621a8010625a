//! Storage usage per repository, as `oci-registry du` last recorded it
//! (computing it reads every manifest of the store: not for a page view).

use std::time::{Duration, UNIX_EPOCH};

use maud::html;
use oci_auth::Action;

use super::{PageResult, shell};
use crate::view::{self, Request};
use crate::{Ctx, paths};

pub(crate) async fn page(ctx: &Ctx<'_>, request: &Request<'_>) -> PageResult {
    let record = ctx.storage().recorded_usage().await?;
    let params = request.params();
    let offset: usize = params
        .get("offset")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let n = ctx.ui.options.page_size;
    let base = ctx.base();
    let main = html! {
        h1 { "Storage" }
        @match &record {
            None => p { "No usage recorded yet: run " code { "oci-registry du" } " (it records what it computes)." },
            Some(u) => {
                p class="note" { "As of " (view::time(u.computed_at())) ", recorded by " code { "oci-registry du" } "." }
                dl class="facts" {
                    dt { "Stored" } dd { (u.stored_blobs) " blobs, " (view::size(u.stored_bytes)) }
                    dt { "Referenced by no repository" } dd { (view::size(u.unreferenced_bytes)) " (garbage collection reclaims it)" }
                }
                @let visible: Vec<_> = u.repositories.iter().filter(|r| ctx.may(&r.name, Action::Pull)).collect();
                div class="table-wrap" { table id="usage" {
                    caption class="visually-hidden" { "Usage per repository" }
                    thead { tr {
                        th scope="col" { "Repository" }
                        th scope="col" class="num" { "Tags" }
                        th scope="col" class="num" { "Manifests" }
                        th scope="col" class="num" { "Referenced" }
                        th scope="col" class="num" { "Only here" }
                        th scope="col" { "Last push" }
                    } }
                    tbody { @for r in visible.iter().skip(offset).take(n) {
                        tr {
                            th scope="row" { a href=(paths::repo(base, &r.name)) { (r.name) } }
                            td class="num" { (r.tags) }
                            td class="num" { (r.manifests) }
                            td class="num" { (view::size(r.referenced_bytes)) }
                            td class="num" { (view::size(r.exclusive_bytes)) }
                            td { (r.last_push_ms.map_or("-".into(), |ms| view::time(UNIX_EPOCH + Duration::from_millis(ms)))) }
                        }
                    } }
                } }
                @if offset + n < visible.len() {
                    nav class="pages" aria-label="Pages" {
                        a href={ (base) "usage" (paths::query(&[("offset", &(offset + n).to_string())])) } rel="next" { "Next page" }
                    }
                }
            }
        }
    };
    Ok(shell(ctx, "Storage", main))
}
