//! Paginated listings: tags (distribution-spec "Listing Tags") and the
//! catalog (`GET /v2/_catalog`, Docker Registry API).

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use futures::StreamExt;
use oci_storage::Storage;
use oci_types::{Pagination, RepositoryName};
use serde::Serialize;

use crate::ApiResult;
use crate::headers::value;
use crate::params::Params;

/// `GET /v2/<name>/tags/list?n=&last=`: with `n`, one page and a `Link` to
/// the next (distribution-spec "Listing Tags"). Without `n`, every tag, as
/// clients that do not page expect (as distribution answers): the body is
/// streamed, read [`oci_storage::DEFAULT_TAGS_PAGE`] tags at a time, so its
/// memory does not grow with the repository.
pub async fn tags(storage: &Storage, name: &RepositoryName, params: &Params) -> ApiResult {
    let page = params.pagination()?;
    if page.n.is_none() {
        return all_tags(storage, name, page.last).await;
    }
    let (tags, more) = storage.tags_list(name, &page).await?;
    let tags: Vec<&str> = tags.iter().map(|t| t.as_str()).collect();
    tags_page(name, tags, &page, more)
}

/// One page of `name`'s tags, with a `Link` to the next when `more`.
pub(crate) fn tags_page(
    name: &RepositoryName,
    tags: Vec<&str>,
    page: &Pagination,
    more: bool,
) -> ApiResult {
    let link = more.then(|| next_link(&format!("/v2/{name}/tags/list"), page, tags.last()));
    with_link(
        TagList {
            name: name.as_str(),
            tags,
        },
        link,
    )
}

/// Every tag after `last`, as one streamed `{"name":..,"tags":[..]}`. The
/// first page is read before the answer starts, so an unknown repository
/// is still a `404`; a storage failure later cuts the body short, which
/// the client sees as a broken response rather than a short list.
async fn all_tags(storage: &Storage, name: &RepositoryName, last: Option<String>) -> ApiResult {
    let page_of = |last: Option<String>| Pagination {
        n: Some(oci_storage::DEFAULT_TAGS_PAGE),
        last,
    };
    let first = storage.tags_list(name, &page_of(last)).await?;
    let head = format!(r#"{{"name":{},"tags":["#, json_string(name.as_str()));
    let state = (storage.clone(), name.clone(), Some(Ok(first)), true);
    let pages =
        futures::stream::unfold(state, move |(storage, name, page, first_item)| async move {
            let (tags, more) = match page? {
                Ok(page) => page,
                Err(e) => {
                    return Some((Err(std::io::Error::other(e)), (storage, name, None, false)));
                }
            };
            let mut chunk = String::with_capacity(tags.len() * 24);
            for (i, tag) in tags.iter().enumerate() {
                if i > 0 || !first_item {
                    chunk.push(',');
                }
                chunk.push_str(&json_string(tag.as_str()));
            }
            let next = if more {
                let last = tags.last().map(|t| t.as_str().to_owned());
                Some(storage.tags_list(&name, &page_of(last)).await)
            } else {
                None
            };
            let first_item = first_item && tags.is_empty();
            Some((
                Ok(bytes::Bytes::from(chunk)),
                (storage, name, next, first_item),
            ))
        });
    let body = futures::stream::once(async move { Ok(bytes::Bytes::from(head)) })
        .chain(pages)
        .chain(futures::stream::once(async {
            Ok(bytes::Bytes::from_static(b"]}"))
        }));
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from_stream(body),
    )
        .into_response())
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a str always serialises")
}

/// Which repositories a caller may see in the catalog. The auth layer puts
/// one into the request's extensions; without one, every repository is
/// listed.
#[derive(Clone)]
pub struct Visibility(pub std::sync::Arc<dyn Fn(&RepositoryName) -> bool + Send + Sync>);

impl std::fmt::Debug for Visibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Visibility")
    }
}

/// `GET /v2/_catalog?n=&last=`: a page of the repositories `visible`
/// lets the caller see.
pub async fn catalog(
    storage: &Storage,
    params: &Params,
    visible: Option<&Visibility>,
) -> ApiResult {
    let page = params.pagination()?;
    let (names, more) = match visible {
        None => storage.catalog(&page).await?,
        Some(visible) => visible_page(storage, &page, visible).await?,
    };
    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    let link = more.then(|| next_link("/v2/_catalog", &page, names.last()));
    with_link(
        Catalog {
            repositories: names,
        },
        link,
    )
}

/// A page of `n` visible repositories after `last`: storage pages are read
/// until enough are visible (a caller who sees few repositories among
/// many costs more reads, never more memory than a page).
async fn visible_page(
    storage: &Storage,
    page: &Pagination,
    visible: &Visibility,
) -> Result<(Vec<RepositoryName>, bool), crate::ApiError> {
    let want = page.n.unwrap_or(oci_storage::DEFAULT_CATALOG_PAGE);
    if want == 0 {
        // As unfiltered: a zero-sized page never advertises a next page.
        return Ok((Vec::new(), false));
    }
    let mut shown = Vec::new();
    let mut last = page.last.clone();
    loop {
        let scan = Pagination {
            n: Some(oci_storage::DEFAULT_CATALOG_PAGE),
            last: last.clone(),
        };
        let (names, more) = storage.catalog(&scan).await?;
        last = names.last().map(|n| n.as_str().to_owned());
        for name in names {
            if !(visible.0)(&name) {
                continue;
            }
            if shown.len() == want {
                // One more visible name exists: there is a next page.
                return Ok((shown, true));
            }
            shown.push(name);
        }
        if !more || last.is_none() {
            return Ok((shown, false));
        }
    }
}

/// `Link: <path?n=N&last=L>; rel="next"` (RFC 8288), as the spec shows.
fn next_link(path: &str, page: &Pagination, last: Option<&&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(n) = page.n {
        query.append_pair("n", &n.to_string());
    }
    if let Some(last) = last {
        query.append_pair("last", last);
    }
    format!("<{path}?{}>; rel=\"next\"", query.finish())
}

/// The tags list body (serialized straight from borrowed names).
#[derive(Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: Vec<&'a str>,
}

/// The catalog body.
#[derive(Serialize)]
struct Catalog<'a> {
    repositories: Vec<&'a str>,
}

fn with_link(body: impl Serialize, link: Option<String>) -> ApiResult {
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, value(link)?);
    }
    Ok(response)
}
