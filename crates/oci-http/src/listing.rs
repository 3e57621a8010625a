//! Paginated listings: tags (distribution-spec "Listing Tags") and the
//! catalog (`GET /v2/_catalog`, Docker Registry API).

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use oci_storage::Storage;
use oci_types::{Pagination, RepositoryName};
use serde::Serialize;

use crate::ApiResult;
use crate::headers::value;
use crate::params::Params;

/// `GET /v2/<name>/tags/list?n=&last=`. Without `n`, at most
/// [`oci_storage::DEFAULT_TAGS_PAGE`] tags, with a `Link` to the rest
/// (distribution-spec "Listing Tags"), so no response grows with the
/// repository.
pub async fn tags(storage: &Storage, name: &RepositoryName, params: &Params) -> ApiResult {
    let page = params.pagination()?;
    let (tags, more) = storage.tags_list(name, &page).await?;
    let tags: Vec<&str> = tags.iter().map(|t| t.as_str()).collect();
    let link = more.then(|| next_link(&format!("/v2/{name}/tags/list"), &page, tags.last()));
    Ok(with_link(
        TagList {
            name: name.as_str(),
            tags,
        },
        link,
    ))
}

/// `GET /v2/_catalog?n=&last=`.
pub async fn catalog(storage: &Storage, params: &Params) -> ApiResult {
    let page = params.pagination()?;
    let (names, more) = storage.catalog(&page).await?;
    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    let link = more.then(|| next_link("/v2/_catalog", &page, names.last()));
    Ok(with_link(
        Catalog {
            repositories: names,
        },
        link,
    ))
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

fn with_link(body: impl Serialize, link: Option<String>) -> axum::response::Response {
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, value(link));
    }
    response
}
