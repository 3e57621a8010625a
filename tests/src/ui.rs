//! What the web UI tests share: content seeded straight through the
//! storage API (fast, thousands of repositories in seconds), hostile
//! strings, and an `[auth]` setup with a reader and an admin.

use bytes::Bytes;
use futures::StreamExt;
use oci_storage::Storage;
use oci_types::{Digest, Reference, RepositoryName};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::TestServer;

/// A string that runs script wherever a page fails to escape it: it sets
/// `window.pwned` and adds an element with id `pwned`.
pub const HOSTILE: &str = "<script>window.pwned=1;document.body.insertAdjacentHTML('beforeend','<p id=pwned>x</p>')</script><img src=x onerror=\"window.pwned=2\">";

/// Digests of a seeded image.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// The image manifest.
    pub manifest: Digest,
    /// Its only layer.
    pub layer: Digest,
    /// Its config.
    pub config: Digest,
    /// An SBOM referring to it.
    pub referrer: Digest,
    /// An index of it and another platform (tagged `<tag>-multi`).
    pub index: Digest,
}

/// Stores a blob in `name`.
pub async fn put_blob(s: &Storage, name: &RepositoryName, data: &[u8]) -> Digest {
    let digest = Digest::of(data);
    let body = futures::stream::iter([Ok(Bytes::copy_from_slice(data))]).boxed();
    s.blob_put(name, &digest, body).await.expect("blob_put");
    digest
}

/// Stores a manifest under `reference` (a tag, or `None`: by digest).
pub async fn put_manifest(
    s: &Storage,
    name: &RepositoryName,
    tag: Option<&str>,
    manifest: &Value,
) -> Digest {
    let body = Bytes::from(serde_json::to_vec(manifest).unwrap());
    let digest = Digest::of(&body);
    let reference = match tag {
        Some(t) => Reference::Tag(t.parse().unwrap()),
        None => Reference::Digest(digest.clone()),
    };
    let media_type = manifest.get("mediaType").and_then(Value::as_str);
    s.manifest_put(name, &reference, body, media_type)
        .await
        .expect("manifest_put");
    digest
}

fn desc(media_type: &str, digest: &Digest, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";

async fn image(
    s: &Storage,
    name: &RepositoryName,
    tag: Option<&str>,
    arch: &str,
    hostile: &str,
) -> (Digest, Digest, Digest) {
    let config = serde_json::to_vec(&json!({
        "created": "2024-05-01T12:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/app", "--serve"],
            "Cmd": ["--port", "8080"],
            "Env": ["PATH=/usr/bin", format!("EVIL={hostile}")],
            "Labels": {"org.example.team": "platform", "evil": hostile}
        },
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [
            {"created": "2024-05-01T11:00:00Z", "created_by": "ADD rootfs.tar /"},
            {"created": "2024-05-01T12:00:00Z", "created_by": format!("RUN echo {hostile}"), "empty_layer": true}
        ]
    }))
    .unwrap();
    let layer = format!("layer of {name} {arch}").into_bytes();
    let config_digest = put_blob(s, name, &config).await;
    let layer_digest = put_blob(s, name, &layer).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": IMAGE,
        "config": desc("application/vnd.oci.image.config.v1+json", &config_digest, config.len()),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", &layer_digest, layer.len())],
        "annotations": {"org.opencontainers.image.description": hostile}
    });
    let digest = put_manifest(s, name, tag, &manifest).await;
    (digest, layer_digest, config_digest)
}

/// Seeds `name:tag`: an image whose annotation, label, env and history
/// hold `hostile`, an SBOM referring to it, and an index of it and an
/// arm64 image tagged `<tag>-multi`.
pub async fn seed_image(s: &Storage, name: &str, tag: &str, hostile: &str) -> Seeded {
    let name: RepositoryName = name.parse().unwrap();
    let (manifest, layer, config) = image(s, &name, Some(tag), "amd64", hostile).await;
    let (arm, ..) = image(s, &name, None, "arm64", hostile).await;
    let empty = put_blob(s, &name, b"{}").await;
    let sbom = br#"{"spdxVersion":"SPDX-2.3"}"#;
    let sbom_digest = put_blob(s, &name, sbom).await;
    let image_size = s
        .manifest_head(&name, &Reference::Digest(manifest.clone()))
        .await
        .unwrap()
        .size;
    let referrer = put_manifest(
        s,
        &name,
        None,
        &json!({
            "schemaVersion": 2,
            "mediaType": IMAGE,
            "artifactType": "application/spdx+json",
            "config": desc("application/vnd.oci.empty.v1+json", &empty, 2),
            "layers": [desc("application/spdx+json", &sbom_digest, sbom.len())],
            "subject": desc(IMAGE, &manifest, image_size as usize),
            "annotations": {"org.opencontainers.image.created": "2024-05-02T00:00:00Z"}
        }),
    )
    .await;
    let arm_size = s
        .manifest_head(&name, &Reference::Digest(arm.clone()))
        .await
        .unwrap()
        .size;
    let mut amd = desc(IMAGE, &manifest, image_size as usize);
    amd["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut arm_desc = desc(IMAGE, &arm, arm_size as usize);
    arm_desc["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let index = put_manifest(
        s,
        &name,
        Some(&format!("{tag}-multi")),
        &json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [amd, arm_desc]
        }),
    )
    .await;
    Seeded {
        manifest,
        layer,
        config,
        referrer,
        index,
    }
}

/// Accounts of the UI tests: `admin` may do everything, `reader` may
/// pull `team/**`; anonymous visitors may pull `public/**`.
pub const UI_USERS: [(&str, &str); 2] = [("admin", "admin-pw"), ("reader", "reader-pw")];

/// An `[auth]` (basic) and `[access]` configuration of [`UI_USERS`],
/// its htpasswd file written into `dir`.
pub fn ui_auth_config(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for (user, password) in UI_USERS {
        text.push_str(&format!("{user}:{}\n", bcrypt_hash(password)));
    }
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, text).unwrap();
    format!(
        r#"[auth]
mode = "basic"
htpasswd = {htpasswd:?}
[access]
admins = ["admin"]
[[access.rules]]
repositories = ["team/**"]
users = ["reader"]
actions = ["pull"]
[[access.rules]]
repositories = ["public/**"]
anonymous = true
actions = ["pull"]
"#
    )
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// The session cookie (`name=value`) a response sets.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("oci_ui_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// The CSRF token of the first form of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &html[at + 19..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// GETs `path` with `cookie`: status, session cookie set, body.
pub async fn get(
    srv: &TestServer,
    path: &str,
    cookie: &str,
) -> (StatusCode, Option<String>, String) {
    let r = srv
        .req(Method::GET, path)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let set = session_cookie(&r);
    (status, set, r.text().await.unwrap())
}

/// POSTs a form.
pub async fn post(
    srv: &TestServer,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    srv.req(Method::POST, path)
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// A visitor's first page: the anonymous session it is given.
pub async fn visit(srv: &TestServer) -> String {
    let r = srv.req(Method::GET, "/ui/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    session_cookie(&r).expect("a session cookie")
}
