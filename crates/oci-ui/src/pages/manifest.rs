//! A manifest (by tag or digest): platforms of an index, layers and config
//! of an image, annotations, referrers grouped by artifact type, pull
//! commands and the manifest itself, pretty-printed.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use maud::{Markup, html};
use oci_auth::Action;
use oci_types::{Descriptor, Digest, Pagination, Reference, RepositoryName};
use serde_json::Value;

use super::{PageResult, copyable, shell};
use crate::view;
use crate::{Ctx, UiError, paths};

/// Largest config blob read for its summary.
const MAX_CONFIG: u64 = 1024 * 1024;

/// Referrers shown per subject (and per level of the tree).
const MAX_REFERRERS: usize = 100;

/// How deep the referrers tree goes (a signature of an SBOM of an image
/// is two levels).
const REFERRER_DEPTH: usize = 2;

/// What a manifest's JSON says at a glance.
pub(crate) struct Summary {
    /// Config and layers (image); `None` for an index.
    pub size: Option<u64>,
    /// `os/arch[/variant]` of each child (index).
    pub platforms: Vec<String>,
}

impl Summary {
    /// The summary of a manifest's JSON.
    pub(crate) fn of(json: &Value, _manifest_size: u64) -> Self {
        if let Some(children) = json.get("manifests").and_then(Value::as_array) {
            let platforms = children
                .iter()
                .filter_map(|c| c.get("platform").map(platform))
                .collect();
            return Self {
                size: None,
                platforms,
            };
        }
        let size = json
            .get("config")
            .into_iter()
            .chain(
                json.get("layers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            )
            .filter_map(|d| d.get("size").and_then(Value::as_u64))
            .sum();
        Self {
            size: Some(size),
            platforms: Vec::new(),
        }
    }
}

/// `os/architecture[/variant]`.
fn platform(p: &Value) -> String {
    let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
    let mut text = format!("{}/{}", field("os"), field("architecture"));
    if !field("variant").is_empty() {
        text.push('/');
        text.push_str(field("variant"));
    }
    text
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

pub(crate) async fn page(
    ctx: &Ctx<'_>,
    name: &RepositoryName,
    reference: &Reference,
) -> PageResult {
    let s = ctx.storage();
    let manifest = s.manifest_get(name, reference).await?;
    let digest = manifest.meta.digest.clone();
    let json: Value = serde_json::from_slice(&manifest.body).unwrap_or(Value::Null);
    let pretty = serde_json::to_string_pretty(&json)
        .unwrap_or_else(|_| String::from_utf8_lossy(&manifest.body).into_owned());
    let base = ctx.base();
    let tag = match reference {
        Reference::Tag(t) => Some(t.as_str()),
        Reference::Digest(_) => None,
    };
    let title = match tag {
        Some(tag) => format!("{name}:{tag}"),
        None => format!("{name}@{}", view::short(digest.as_str())),
    };
    let config = match json.get("config") {
        Some(d) => read_config(ctx, name, d).await?,
        None => None,
    };
    let referrers = referrer_tree(ctx, name, &digest, REFERRER_DEPTH).await?;
    let may_delete = ctx.may(name, Action::Delete);
    let host = &ctx.host;
    let main = html! {
        nav class="crumbs" aria-label="Breadcrumb" {
            a href=(base) { "Repositories" } " / "
            a href=(paths::repo(base, name)) { (name) } " / "
            span aria-current="page" { (tag.map_or_else(|| view::short(digest.as_str()), str::to_owned)) }
        }
        h1 { (title) }
        dl class="facts" {
            dt { "Digest" } dd { code class="digest" { (digest) } }
            dt { "Media type" } dd { code { (manifest.meta.media_type) } }
            dt { "Manifest size" } dd { (view::size(manifest.meta.size)) }
            @if let Some(size) = Summary::of(&json, manifest.meta.size).size {
                dt { "Image size" } dd { (view::size(size)) " (config and layers, compressed)" }
            }
            @if let Some(t) = str_of(&json, "artifactType") { dt { "Artifact type" } dd { code { (t) } } }
            @if let Some(subject) = json.get("subject").and_then(|s| str_of(s, "digest")) {
                dt { "Subject" } dd { a href=(paths::manifest(base, name, subject)) { code { (subject) } } }
            }
        }
        section aria-labelledby="pull" {
            h2 id="pull" { "Pull" }
            @if let Some(tag) = tag {
                (copyable("docker, by tag", &format!("docker pull {host}/{name}:{tag}")))
                (copyable("podman, by tag", &format!("podman pull {host}/{name}:{tag}")))
            }
            (copyable("docker, by digest", &format!("docker pull {host}/{name}@{digest}")))
            (copyable("podman, by digest", &format!("podman pull {host}/{name}@{digest}")))
        }
        @if may_delete {
            p class="actions" {
                @if let Some(tag) = tag {
                    a class="button danger" href=(paths::delete(base, name, tag)) { "Delete tag " (tag) }
                    " "
                }
                a class="button danger" href=(paths::delete(base, name, digest.as_str())) { "Delete manifest" }
            }
        }
        @if let Some(children) = json.get("manifests").and_then(Value::as_array) {
            section aria-labelledby="platforms" {
                h2 id="platforms" { "Platforms" }
                div class="table-wrap" { table {
                    thead { tr { th scope="col" { "Platform" } th scope="col" { "Manifest" } th scope="col" { "Media type" } th scope="col" class="num" { "Size" } } }
                    tbody { @for c in children {
                        @let d = str_of(c, "digest").unwrap_or("");
                        tr {
                            th scope="row" { (c.get("platform").map_or_else(|| "-".to_owned(), platform)) }
                            td { @if d.parse::<Digest>().is_ok() { a href=(paths::manifest(base, name, d)) { code { (view::short(d)) } } } @else { code { (d) } } }
                            td { (view::media_type(str_of(c, "mediaType").unwrap_or(""))) }
                            td class="num" { (c.get("size").and_then(Value::as_u64).map_or("-".into(), view::size)) }
                        }
                    } }
                } }
            }
        }
        @if let Some(layers) = json.get("layers").and_then(Value::as_array) {
            section aria-labelledby="layers" {
                h2 id="layers" { "Layers" }
                div class="table-wrap" { table id="layer-table" {
                    thead { tr { th scope="col" { "#" } th scope="col" { "Digest" } th scope="col" { "Media type" } th scope="col" class="num" { "Size" } } }
                    tbody { @for (i, l) in layers.iter().enumerate() {
                        @let d = str_of(l, "digest").unwrap_or("");
                        tr {
                            td { (i + 1) }
                            td { @match d.parse::<Digest>() {
                                Ok(d) => a href=(paths::blob(base, name, &d)) title=(d) { code { (view::short(d.as_str())) } },
                                Err(_) => code { (d) },
                            } }
                            td { (view::media_type(str_of(l, "mediaType").unwrap_or(""))) }
                            td class="num" { (l.get("size").and_then(Value::as_u64).map_or("-".into(), view::size)) }
                        }
                    } }
                } }
            }
        }
        @if let Some(d) = json.get("config") {
            section aria-labelledby="config" {
                h2 id="config" { "Config" }
                p {
                    (view::media_type(str_of(d, "mediaType").unwrap_or(""))) " · "
                    @match str_of(d, "digest").and_then(|d| d.parse::<Digest>().ok()) {
                        Some(d) => a href=(paths::blob(base, name, &d)) { code { (view::short(d.as_str())) } },
                        None => "no digest",
                    }
                }
                @if let Some(c) = &config { (config_summary(c)) }
            }
        }
        @if let Some(a) = json.get("annotations").and_then(Value::as_object).filter(|a| !a.is_empty()) {
            section aria-labelledby="annotations" {
                h2 id="annotations" { "Annotations" }
                (key_values(a.iter().map(|(k, v)| (k.as_str(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))))
            }
        }
        section aria-labelledby="referrers" {
            h2 id="referrers" { "Referrers" }
            @if referrers.is_empty() { p { "None: no signature, SBOM or attestation refers to this manifest." } }
            @else { (referrers_markup(base, name, &referrers)) }
        }
        section aria-labelledby="raw" {
            h2 id="raw" { "Manifest JSON" }
            details {
                summary { "Show the manifest as stored (" (view::size(manifest.meta.size)) ")" }
                pre class="json" { code { (pretty) } }
            }
        }
    };
    Ok(shell(ctx, &title, main))
}

/// The config blob, parsed, when it is JSON of reasonable size.
async fn read_config(
    ctx: &Ctx<'_>,
    name: &RepositoryName,
    descriptor: &Value,
) -> Result<Option<Value>, UiError> {
    let Some(digest) = str_of(descriptor, "digest").and_then(|d| d.parse::<Digest>().ok()) else {
        return Ok(None);
    };
    let size = descriptor.get("size").and_then(Value::as_u64).unwrap_or(0);
    if size > MAX_CONFIG || size == 0 {
        return Ok(None);
    }
    let read = match ctx.storage().blob_get(name, &digest, None).await {
        Ok(read) => read,
        Err(e) => match UiError::from(e) {
            UiError::NotFound => return Ok(None),
            e => return Err(e),
        },
    };
    if read.size > MAX_CONFIG {
        return Ok(None);
    }
    let chunks: Vec<bytes::Bytes> = read.stream.try_collect().await?;
    Ok(serde_json::from_slice(&chunks.concat()).ok())
}

/// os/arch, created, entrypoint, cmd, env, labels and history of an
/// image config (OCI image-spec "Image Configuration").
fn config_summary(c: &Value) -> Markup {
    let inner = c.get("config").unwrap_or(&Value::Null);
    let list = |v: Option<&Value>| -> Option<String> {
        let items: Vec<String> = v?
            .as_array()?
            .iter()
            .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_owned))
            .collect();
        Some(serde_json::to_string(&items).unwrap_or_default())
    };
    html! {
        dl class="facts" {
            @if let (Some(os), Some(arch)) = (str_of(c, "os"), str_of(c, "architecture")) {
                dt { "Platform" } dd { (os) "/" (arch) @if let Some(v) = str_of(c, "variant") { "/" (v) } }
            }
            @if let Some(created) = str_of(c, "created") { dt { "Created" } dd { (created) } }
            @if let Some(e) = list(inner.get("Entrypoint")) { dt { "Entrypoint" } dd { code { (e) } } }
            @if let Some(cmd) = list(inner.get("Cmd")) { dt { "Cmd" } dd { code { (cmd) } } }
            @if let Some(u) = str_of(inner, "User").filter(|u| !u.is_empty()) { dt { "User" } dd { code { (u) } } }
            @if let Some(w) = str_of(inner, "WorkingDir").filter(|w| !w.is_empty()) { dt { "Working directory" } dd { code { (w) } } }
        }
        @if let Some(env) = inner.get("Env").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            h3 { "Environment" }
            ul class="plain" { @for e in env { li { code { (e.as_str().unwrap_or("")) } } } }
        }
        @if let Some(labels) = inner.get("Labels").and_then(Value::as_object).filter(|l| !l.is_empty()) {
            h3 { "Labels" }
            (key_values(labels.iter().map(|(k, v)| (k.as_str(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))))
        }
        @if let Some(history) = c.get("history").and_then(Value::as_array).filter(|h| !h.is_empty()) {
            h3 { "History" }
            div class="table-wrap" { table class="history" {
                thead { tr { th scope="col" { "Created" } th scope="col" { "Step" } th scope="col" { "Layer" } } }
                tbody { @for h in history {
                    tr {
                        td { (str_of(h, "created").unwrap_or("")) }
                        td { code { (str_of(h, "created_by").unwrap_or("")) } }
                        td { @if h.get("empty_layer").and_then(Value::as_bool) == Some(true) { "empty" } @else { "yes" } }
                    }
                } }
            } }
        }
    }
}

/// A two-column table of keys and values.
fn key_values<'a>(pairs: impl Iterator<Item = (&'a str, String)>) -> Markup {
    html! {
        div class="table-wrap" { table class="kv" {
            thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } } }
            tbody { @for (k, v) in pairs { tr { th scope="row" { code { (k) } } td { (v) } } } }
        } }
    }
}

/// A referrer and its own referrers.
struct Node {
    descriptor: Descriptor,
    children: Vec<Node>,
}

/// The referrers of `subject`, `depth` levels deep, at most
/// [`MAX_REFERRERS`] per subject.
fn referrer_tree<'a>(
    ctx: &'a Ctx<'_>,
    name: &'a RepositoryName,
    subject: &'a Digest,
    depth: usize,
) -> futures::future::BoxFuture<'a, Result<Vec<Node>, UiError>> {
    Box::pin(async move {
        if depth == 0 {
            return Ok(Vec::new());
        }
        let page = Pagination {
            n: Some(MAX_REFERRERS),
            last: None,
        };
        let (found, _) = ctx
            .storage()
            .referrers_page(name, subject, None, &page)
            .await?;
        let mut nodes = Vec::with_capacity(found.len());
        for descriptor in found {
            let children = referrer_tree(ctx, name, &descriptor.digest, depth - 1).await?;
            nodes.push(Node {
                descriptor,
                children,
            });
        }
        Ok(nodes)
    })
}

/// Referrers grouped by artifact type, each linked, with their own
/// referrers nested.
fn referrers_markup(base: &str, name: &RepositoryName, nodes: &[Node]) -> Markup {
    let mut groups: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    for n in nodes {
        let t = n
            .descriptor
            .artifact_type
            .as_deref()
            .unwrap_or(n.descriptor.media_type.as_str());
        groups.entry(t).or_default().push(n);
    }
    html! {
        ul class="tree" {
            @for (t, nodes) in &groups {
                li {
                    span class="group" { code { (t) } " (" (nodes.len()) ")" }
                    ul { @for n in nodes {
                        @let d = &n.descriptor;
                        li {
                            a href=(paths::manifest(base, name, d.digest.as_str())) { code { (view::short(d.digest.as_str())) } }
                            " · " (view::size(d.size))
                            @if let Some(created) = d.annotations.as_ref().and_then(|a| a.get("org.opencontainers.image.created")) {
                                " · " (created)
                            }
                            @if !n.children.is_empty() { (referrers_markup(base, name, &n.children)) }
                        }
                    } }
                }
            }
        }
    }
}
