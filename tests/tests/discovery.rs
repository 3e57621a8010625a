//! Content discovery (distribution-spec v1.1.1 "Content Discovery":
//! "Listing Tags", "Listing Referrers"; "Pushing Manifests with Subject"),
//! and the Docker Registry v2 catalog (`/v2/_catalog`).

use oci_e2e::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A digest that no test ever pushes.
const DUMMY_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000001";

/// Artifact types used by the referrers tests. The `+` checks that the
/// `artifactType` query value is percent-decoded.
const TYPE_SBOM: &str = "application/vnd.example.sbom.v1+json";
const TYPE_SIG: &str = "application/vnd.example.signature.v1";
const TYPE_INDEX: &str = "application/vnd.example.bundle.v1";
const ANNOTATION: &str = "org.opencontainers.conformance.test";

/// Fetches `path` and returns `(status, Link next target, JSON body)`.
async fn get_json(srv: &TestServer, path: &str) -> (StatusCode, Option<String>, Value) {
    let resp = srv.get(path).await;
    let status = resp.status();
    let link = next_link(&resp);
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, link, body)
}

/// The `tags` array of a tags/list body (must be an array).
fn tags_of(body: &Value) -> Vec<String> {
    serde_json::from_value(body["tags"].clone())
        .unwrap_or_else(|_| panic!("tags must be a JSON array of strings: {body}"))
}

/// The `repositories` array of a catalog body.
fn repos_of(body: &Value) -> Vec<String> {
    serde_json::from_value(body["repositories"].clone())
        .unwrap_or_else(|_| panic!("repositories must be a JSON array of strings: {body}"))
}

/// Checks a pagination `Link` target: the given path, with `n` and `last`.
fn check_link(link: &str, path: &str, n: usize, last: &str) {
    assert_eq!(
        location_path(link).split('?').next().unwrap(),
        path,
        "Link path: {link}"
    );
    let params = query_params(link);
    assert!(
        params.contains(&("n".to_owned(), n.to_string())),
        "Link must carry n={n}: {link}"
    );
    assert!(
        params.contains(&("last".to_owned(), last.to_owned())),
        "Link must carry last={last}: {link}"
    );
}

/// Fetches the referrers of `digest` in `name` (with an optional
/// `artifactType` filter), checking the response shape required by "Listing
/// Referrers": 200, `Content-Type: application/vnd.oci.image.index.v1+json`,
/// an image index body. Returns the `manifests` array sorted by digest, and
/// the `OCI-Filters-Applied` header.
async fn referrers(
    srv: &TestServer,
    name: &str,
    digest: &str,
    artifact_type: Option<&str>,
) -> (Vec<Value>, Option<String>) {
    let mut path = format!("/v2/{name}/referrers/{digest}");
    if let Some(at) = artifact_type {
        path = with_query(&path, "artifactType", at);
    }
    let resp = srv.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some(OCI_INDEX),
        "referrers Content-Type"
    );
    let filters = header(&resp, "oci-filters-applied");
    let body: Value = resp.json().await.expect("referrers body must be JSON");
    assert_eq!(
        body["schemaVersion"],
        json!(2),
        "referrers index schemaVersion"
    );
    assert_eq!(
        body["mediaType"],
        json!(OCI_INDEX),
        "referrers index mediaType"
    );
    let mut manifests = body["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("referrers index must have a manifests array: {body}"))
        .clone();
    manifests.sort_by_key(|m| m["digest"].as_str().unwrap_or_default().to_owned());
    (manifests, filters)
}

/// The descriptor the referrers API must return for a referrer.
fn expected_descriptor(
    media_type: &str,
    body: &[u8],
    artifact_type: Option<&str>,
    annotations: &[(&str, &str)],
) -> Value {
    let mut d = json!({
        "mediaType": media_type,
        "digest": sha256_digest(body),
        "size": body.len(),
    });
    if let Some(at) = artifact_type {
        d["artifactType"] = json!(at);
    }
    if !annotations.is_empty() {
        d["annotations"] = Value::Object(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect(),
        );
    }
    d
}

/// Compares returned descriptors with expected ones (sorted by digest).
/// Fields beyond the expected ones (e.g. `urls`) are not allowed to change
/// the expected ones; `artifactType` must be absent when not expected.
fn assert_descriptors(got: &[Value], mut want: Vec<Value>) {
    want.sort_by_key(|m| m["digest"].as_str().unwrap_or_default().to_owned());
    let got_digests: Vec<&str> = got
        .iter()
        .map(|m| m["digest"].as_str().unwrap_or("?"))
        .collect();
    let want_digests: Vec<&str> = want.iter().map(|m| m["digest"].as_str().unwrap()).collect();
    assert_eq!(got_digests, want_digests, "referrer digests");
    for (g, w) in got.iter().zip(&want) {
        for key in ["mediaType", "digest", "size", "artifactType"] {
            assert_eq!(
                g.get(key),
                w.get(key),
                "field {key} of referrer {}",
                w["digest"]
            );
        }
        // No annotations may be spelled as an absent field or as `{}`.
        let empty = json!({});
        let norm = |v: Option<&Value>| v.filter(|a| **a != empty && !a.is_null()).cloned();
        assert_eq!(
            norm(g.get("annotations")),
            norm(w.get("annotations")),
            "annotations of referrer {}",
            w["digest"]
        );
    }
}

/// Everything the referrers tests push.
struct Referrers {
    name: &'static str,
    subject: Image,
    /// Config media type is the artifact type; no `artifactType` field.
    config_typed: Vec<u8>,
    /// `artifactType: TYPE_SIG`, empty config.
    sig: Vec<u8>,
    /// `artifactType: TYPE_SBOM`, empty config.
    sbom: Vec<u8>,
    /// An index with `artifactType: TYPE_INDEX`.
    index_typed: Vec<u8>,
    /// An index without `artifactType`.
    index_untyped: Vec<u8>,
}

/// Pushes a subject image and five referrers to it (as the conformance
/// suite does: config-typed and layer-typed artifacts, and indexes), checking
/// `OCI-Subject` on every push ("Pushing Manifests with Subject").
async fn push_referrers(srv: &TestServer) -> Referrers {
    let name = "refs/app";
    let subject = srv.push_image(name, "v1", 1).await;
    let empty = srv.push_blob(name, b"{}").await;
    assert_eq!(
        empty,
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    let empty_desc = Descriptor::of(OCI_EMPTY, b"{}");
    let blob_a = b"NHL Peanut Butter on my NHL bagel".to_vec();
    let blob_b = b"NBA Strawberry Jam on my NBA croissant".to_vec();
    srv.push_blob(name, &blob_a).await;
    srv.push_blob(name, &blob_b).await;
    let subj = &subject.manifest_desc;

    let config_typed = image_manifest(
        &Descriptor::of(TYPE_SBOM, &blob_a),
        std::slice::from_ref(&empty_desc),
        Some(subj),
        None,
        Some(&[
            (ANNOTATION, "test config a"),
            ("org.example.format", "json"),
        ]),
    );
    let sig = image_manifest(
        &empty_desc,
        &[Descriptor::of(TYPE_SIG, &blob_b)],
        Some(subj),
        Some(TYPE_SIG),
        Some(&[(ANNOTATION, "test layer b")]),
    );
    let sbom = image_manifest(
        &empty_desc,
        &[Descriptor::of(TYPE_SBOM, &blob_a)],
        Some(subj),
        Some(TYPE_SBOM),
        Some(&[(ANNOTATION, "test layer a")]),
    );
    // Pushed by digest, by tag, by digest.
    for (reference, body) in [
        (sha256_digest(&config_typed), &config_typed),
        ("signature".to_owned(), &sig),
        (sha256_digest(&sbom), &sbom),
    ] {
        let resp = srv.put_manifest(name, &reference, OCI_MANIFEST, body).await;
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "push referrer {reference}"
        );
        assert_eq!(
            header(&resp, "oci-subject").as_deref(),
            Some(subject.digest.as_str()),
            "OCI-Subject on the push of a manifest with subject"
        );
    }
    let index_typed = image_index(
        &[
            Descriptor::of(OCI_MANIFEST, &config_typed),
            Descriptor::of(OCI_MANIFEST, &sbom),
        ],
        Some(subj),
        Some(TYPE_INDEX),
        Some(&[(ANNOTATION, "test index")]),
    );
    let index_untyped = image_index(
        &[Descriptor::of(OCI_MANIFEST, &sig)],
        Some(subj),
        None,
        Some(&[(ANNOTATION, "test index untyped")]),
    );
    for body in [&index_typed, &index_untyped] {
        let resp = srv
            .put_manifest(name, &sha256_digest(body), OCI_INDEX, body)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "push index referrer");
        assert_eq!(
            header(&resp, "oci-subject").as_deref(),
            Some(subject.digest.as_str()),
            "OCI-Subject on the push of an index with subject"
        );
    }
    Referrers {
        name,
        subject,
        config_typed,
        sig,
        sbom,
        index_typed,
        index_untyped,
    }
}

/// "Listing Tags": 200, `{"name": ..., "tags": [...]}` in lexical order.
async fn list_tags(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "disc/tags";
    let img = srv.push_image(name, "v2", 1).await;
    for tag in ["alpha", "v10", "beta", "latest", "1.0", "1-rc"] {
        srv.push_manifest(name, tag, OCI_MANIFEST, &img.manifest)
            .await;
    }
    let (status, link, body) = get_json(&srv, &format!("/v2/{name}/tags/list")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], json!(name));
    assert_eq!(
        tags_of(&body),
        ["1-rc", "1.0", "alpha", "beta", "latest", "v10", "v2"]
    );
    assert_eq!(link, None, "no Link when the whole list is returned");
    srv.stop().await;
}

/// Every tag of `name`, following `Link` from `/v2/<name>/tags/list`
/// (no `n`: the server's page size) until there is none; asserts each page
/// is sorted and follows the previous one.
async fn all_tags(srv: &TestServer, name: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    let page_size = oci_storage::DEFAULT_TAGS_PAGE;
    let mut next = Some(format!("/v2/{name}/tags/list?n={page_size}"));
    while let Some(url) = next {
        let resp = srv.get(&url).await;
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        next = next_link(&resp);
        let page = tags_of(&resp.json().await.unwrap());
        assert!(
            page.len() <= oci_storage::DEFAULT_TAGS_PAGE,
            "{} tags in one page",
            page.len()
        );
        assert!(page.windows(2).all(|w| w[0] < w[1]), "page not sorted");
        if let (Some(prev), Some(first)) = (tags.last(), page.first()) {
            assert!(prev < first, "page does not follow the previous one");
        }
        assert!(
            next.is_none() || !page.is_empty(),
            "Link after an empty page"
        );
        tags.extend(page);
    }
    tags
}

/// "Listing Tags" at scale: 100,000 tags (5,000 on S3, where creating them
/// is what takes the time in debug builds: two requests to the in-process
/// S3 server per tag; the listing path is the same from 1,024 tags up)
/// come back in pages of `n`, each with a `Link` to the next, every tag
/// exactly once and in order; without `n`, all of them in one streamed
/// answer with no `Link`. The tags are created through the storage engine
/// (pushing 100,000 manifests over HTTP is too slow).
async fn many_tags_paginate_over_http(backend: Backend) {
    use futures::StreamExt;
    let count = if backend == Backend::S3 {
        5_000
    } else {
        100_000
    };
    let srv = TestServer::start(backend).await;
    let name = "disc/huge";
    let img = srv.push_image(name, "latest", 1).await;
    // The filesystem server fsyncs every write; set up without that.
    let storage = match backend {
        Backend::Filesystem => {
            let mut options = oci_storage::StorageOptions::default();
            options.fsync = false;
            oci_storage::Storage::open_with_options(srv.storage_url(), options)
                .await
                .unwrap()
        }
        _ => srv.storage().clone(),
    };
    let repo: oci_types::RepositoryName = name.parse().unwrap();
    let digest: oci_types::Digest = img.digest.parse().unwrap();
    futures::stream::iter(0..count)
        .map(|i| {
            let (storage, repo, digest) = (&storage, &repo, &digest);
            async move {
                let tag = format!("t{i:06}").parse().unwrap();
                storage.tag_put(repo, &tag, digest).await
            }
        })
        .buffer_unordered(32)
        .for_each(|r| async move { r.expect("tag_put") })
        .await;
    let tags = all_tags(&srv, name).await;
    assert_eq!(tags.len(), count + 1);
    assert_eq!(tags.first().map(String::as_str), Some("latest"));
    assert_eq!(tags.get(1).map(String::as_str), Some("t000000"));
    assert_eq!(tags.last(), Some(&format!("t{:06}", count - 1)));
    let whole = srv.get(&format!("/v2/{name}/tags/list")).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(next_link(&whole), None);
    let whole: Value = whole.json().await.unwrap();
    assert_eq!(whole["name"], name);
    assert_eq!(
        tags_of(&whole),
        tags,
        "the unpaged list is every tag in order"
    );
    let after = srv
        .get(&format!("/v2/{name}/tags/list?last=t{:06}", count - 3))
        .await;
    assert_eq!(
        tags_of(&after.json().await.unwrap()),
        [format!("t{:06}", count - 2), format!("t{:06}", count - 1)]
    );
    // A client-chosen page size is honoured and linked the same way.
    let resp = srv
        .get(&format!("/v2/{name}/tags/list?n=3&last=t000010"))
        .await;
    let link = next_link(&resp).expect("Link to the next page");
    assert_eq!(
        tags_of(&resp.json().await.unwrap()),
        ["t000011", "t000012", "t000013"]
    );
    assert_eq!(
        query_params(&link),
        [
            ("n".to_owned(), "3".to_owned()),
            ("last".into(), "t000013".into())
        ]
    );
    srv.stop().await;
}

/// A large tag list (over the 1,024 names the filesystem backend keeps in
/// memory) read after its directory settled, then changed: every list
/// shows the change at once. Filesystem only: the other backends list
/// their store every time.
async fn large_tag_list_follows_changes(backend: Backend) {
    use futures::StreamExt;
    let srv = TestServer::start(backend).await;
    let name = "disc/many";
    let img = srv.push_image(name, "t0000", 1).await;
    let tags: Vec<String> = (1..1100).map(|i| format!("t{i:04}")).collect();
    futures::stream::iter(&tags)
        .for_each_concurrent(16, |tag| async {
            srv.push_manifest(name, tag, OCI_MANIFEST, &img.manifest)
                .await;
        })
        .await;
    let list = || all_tags(&srv, name);
    // Past the 2 s a directory must stay unchanged for its listing to be kept.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(list().await.len(), 1100);
    assert_eq!(list().await.len(), 1100, "the kept listing");

    srv.push_manifest(name, "zz-new", OCI_MANIFEST, &img.manifest)
        .await;
    let after_push = list().await;
    assert_eq!(after_push.len(), 1101);
    assert_eq!(after_push.last().map(String::as_str), Some("zz-new"));

    let r = srv.delete(&format!("/v2/{name}/manifests/t0500")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let after_delete = list().await;
    assert_eq!(after_delete.len(), 1100);
    assert!(!after_delete.iter().any(|t| t == "t0500"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_tag_list_follows_changes_filesystem() {
    large_tag_list_follows_changes(Backend::Filesystem).await
}

/// "Listing Tags" with `n` and `last`: `n` limits the page, a `Link:
/// <...>; rel="next"` points to the rest while some remains, `last` starts
/// after the given tag, `n=0` is an empty list without `Link`; following
/// the links yields every tag exactly once.
async fn list_tags_paginated(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "disc/paged";
    let img = srv.push_image(name, "v2", 1).await;
    for tag in ["alpha", "v10", "beta", "latest", "1.0", "1-rc"] {
        srv.push_manifest(name, tag, OCI_MANIFEST, &img.manifest)
            .await;
    }
    let all = ["1-rc", "1.0", "alpha", "beta", "latest", "v10", "v2"];
    let list = format!("/v2/{name}/tags/list");

    let (status, link, body) = get_json(&srv, &format!("{list}?n=3")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        tags_of(&body),
        &all[..3],
        "n=3 must return exactly the first 3 tags"
    );
    let link = link.expect("a Link header must point to the remaining tags");
    check_link(&link, &list, 3, "alpha");

    // Follow the links to the end.
    let mut seen = tags_of(&body);
    let mut next = Some(link);
    let mut pages = 1;
    while let Some(l) = next {
        let (status, link, body) = get_json(&srv, &l).await;
        assert_eq!(status, StatusCode::OK, "GET {l}");
        let page = tags_of(&body);
        assert!(page.len() <= 3 && !page.is_empty(), "page {l}: {page:?}");
        seen.extend(page);
        next = link;
        pages += 1;
        assert!(pages < 10, "pagination does not terminate");
    }
    assert_eq!(seen, all, "pages concatenated");
    assert_eq!(pages, 3);

    // n and last together.
    let (_, link, body) = get_json(&srv, &format!("{list}?n=2&last=alpha")).await;
    assert_eq!(tags_of(&body), ["beta", "latest"]);
    check_link(
        &link.expect("more tags remain after latest"),
        &list,
        2,
        "latest",
    );

    // last alone, with an existing tag and with a tag between two others.
    let (_, _, body) = get_json(&srv, &format!("{list}?last=beta")).await;
    assert_eq!(tags_of(&body), ["latest", "v10", "v2"]);
    let (_, _, body) = get_json(&srv, &format!("{list}?last=c")).await;
    assert_eq!(tags_of(&body), ["latest", "v10", "v2"]);
    let (_, link, body) = get_json(&srv, &format!("{list}?last=v2")).await;
    assert!(tags_of(&body).is_empty());
    assert_eq!(link, None);

    // "When n is zero, this endpoint MUST return an empty list, and MUST
    // NOT include a Link header."
    let (status, link, body) = get_json(&srv, &format!("{list}?n=0")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(tags_of(&body).is_empty(), "n=0 must return an empty list");
    assert_eq!(link, None, "n=0 must not include a Link header");

    // n equal to or larger than the count: everything, nothing remains.
    for n in [7, 100] {
        let (_, link, body) = get_json(&srv, &format!("{list}?n={n}")).await;
        assert_eq!(tags_of(&body), all);
        assert_eq!(link, None, "no Link when nothing remains (n={n})");
    }
    srv.stop().await;
}

/// Tags list of a repository that does not exist: 404 `NAME_UNKNOWN`.
async fn list_tags_of_unknown_repository(backend: Backend) {
    let srv = TestServer::start(backend).await;
    srv.push_image("disc/exists", "v1", 1).await;
    let resp = srv.get("/v2/disc/doesnotexist/tags/list").await;
    assert_error(resp, 404, &["NAME_UNKNOWN"]).await;
    srv.stop().await;
}

/// "The list of tags MAY be empty if there are no tags on the
/// repository": a repository holding only an untagged manifest lists no
/// tags.
async fn list_tags_of_untagged_repository(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "disc/untagged";
    let config = config_json("untagged");
    srv.push_blob(name, &config).await;
    let m = image_manifest(&Descriptor::of(OCI_CONFIG, &config), &[], None, None, None);
    srv.push_manifest(name, &sha256_digest(&m), OCI_MANIFEST, &m)
        .await;
    let (status, _, body) = get_json(&srv, &format!("/v2/{name}/tags/list")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], json!(name));
    assert!(tags_of(&body).is_empty());
    srv.stop().await;
}

/// `GET /v2/_catalog` (Docker Registry v2): repositories sorted, paged
/// with `n`/`last` and `Link: </v2/_catalog?n=..&last=..>; rel="next"`.
async fn catalog(backend: Backend) {
    let srv = TestServer::start(backend).await;
    for name in ["zeta", "beta/two", "alpha", "gamma", "beta/one"] {
        srv.push_image(name, "v1", 1).await;
    }
    let all = ["alpha", "beta/one", "beta/two", "gamma", "zeta"];
    let (status, link, body) = get_json(&srv, "/v2/_catalog").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repos_of(&body), all);
    assert_eq!(link, None);

    let (status, link, body) = get_json(&srv, "/v2/_catalog?n=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repos_of(&body), &all[..2]);
    let link = link.expect("Link to the next catalog page");
    check_link(&link, "/v2/_catalog", 2, "beta/one");
    let mut seen = repos_of(&body);
    let mut next = Some(link);
    let mut pages = 1;
    while let Some(l) = next {
        let (status, link, body) = get_json(&srv, &l).await;
        assert_eq!(status, StatusCode::OK, "GET {l}");
        seen.extend(repos_of(&body));
        next = link;
        pages += 1;
        assert!(pages < 10, "catalog pagination does not terminate");
    }
    assert_eq!(seen, all);
    assert_eq!(pages, 3);

    let (_, _, body) = get_json(&srv, "/v2/_catalog?last=beta/two").await;
    assert_eq!(repos_of(&body), ["gamma", "zeta"]);
    let (status, link, body) = get_json(&srv, "/v2/_catalog?n=0").await;
    assert_eq!(status, StatusCode::OK);
    assert!(repos_of(&body).is_empty());
    assert_eq!(link, None);
    srv.stop().await;
}

/// An empty registry has an empty catalog.
async fn empty_catalog(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (status, link, body) = get_json(&srv, "/v2/_catalog").await;
    assert_eq!(status, StatusCode::OK);
    assert!(repos_of(&body).is_empty());
    assert_eq!(link, None);
    srv.stop().await;
}

/// "Listing Referrers": every manifest and index whose `subject` is the
/// digest is listed with `mediaType`, `digest`, `size`, `artifactType`
/// (the manifest's own, else its config `mediaType`; omitted for an index
/// without one) and its annotations.
async fn list_referrers(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let r = push_referrers(&srv).await;
    let (got, _) = referrers(&srv, r.name, &r.subject.digest, None).await;
    assert_descriptors(
        &got,
        vec![
            expected_descriptor(
                OCI_MANIFEST,
                &r.config_typed,
                Some(TYPE_SBOM),
                &[
                    (ANNOTATION, "test config a"),
                    ("org.example.format", "json"),
                ],
            ),
            expected_descriptor(
                OCI_MANIFEST,
                &r.sig,
                Some(TYPE_SIG),
                &[(ANNOTATION, "test layer b")],
            ),
            expected_descriptor(
                OCI_MANIFEST,
                &r.sbom,
                Some(TYPE_SBOM),
                &[(ANNOTATION, "test layer a")],
            ),
            expected_descriptor(
                OCI_INDEX,
                &r.index_typed,
                Some(TYPE_INDEX),
                &[(ANNOTATION, "test index")],
            ),
            expected_descriptor(
                OCI_INDEX,
                &r.index_untyped,
                None,
                &[(ANNOTATION, "test index untyped")],
            ),
        ],
    );
    // Nothing has a referrer as its subject (the untyped index merely
    // lists `sig`), so its referrers list is empty.
    let (got, _) = referrers(&srv, r.name, &sha256_digest(&r.sig), None).await;
    assert!(got.is_empty());
    srv.stop().await;
}

/// "The registry SHOULD support filtering on `artifactType`": only the
/// matching descriptors are returned, with `OCI-Filters-Applied:
/// artifactType`.
async fn list_referrers_filtered(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let r = push_referrers(&srv).await;

    let (got, filters) = referrers(&srv, r.name, &r.subject.digest, Some(TYPE_SBOM)).await;
    assert_eq!(
        filters.as_deref(),
        Some("artifactType"),
        "OCI-Filters-Applied"
    );
    assert_descriptors(
        &got,
        vec![
            expected_descriptor(
                OCI_MANIFEST,
                &r.config_typed,
                Some(TYPE_SBOM),
                &[
                    (ANNOTATION, "test config a"),
                    ("org.example.format", "json"),
                ],
            ),
            expected_descriptor(
                OCI_MANIFEST,
                &r.sbom,
                Some(TYPE_SBOM),
                &[(ANNOTATION, "test layer a")],
            ),
        ],
    );

    let (got, filters) = referrers(&srv, r.name, &r.subject.digest, Some(TYPE_INDEX)).await;
    assert_eq!(filters.as_deref(), Some("artifactType"));
    assert_descriptors(
        &got,
        vec![expected_descriptor(
            OCI_INDEX,
            &r.index_typed,
            Some(TYPE_INDEX),
            &[(ANNOTATION, "test index")],
        )],
    );

    let (got, filters) = referrers(
        &srv,
        r.name,
        &r.subject.digest,
        Some("application/vnd.nothing.matches"),
    )
    .await;
    assert_eq!(filters.as_deref(), Some("artifactType"));
    assert!(got.is_empty(), "no referrer has that type: {got:?}");

    // Without a filter the header is not claimed.
    let (_, filters) = referrers(&srv, r.name, &r.subject.digest, None).await;
    assert_eq!(filters, None, "OCI-Filters-Applied without a filter");
    srv.stop().await;
}

/// "If a query results in no matching referrers, an empty manifest list
/// MUST be returned" (200, not 404), also for a digest the registry has
/// never seen.
async fn referrers_of_unknown_digest(backend: Backend) {
    let srv = TestServer::start(backend).await;
    srv.push_image("refs/empty", "v1", 1).await;
    let (got, _) = referrers(&srv, "refs/empty", DUMMY_DIGEST, None).await;
    assert!(got.is_empty());
    srv.stop().await;
}

/// "If the request is invalid, such as a `<digest>` with an invalid
/// syntax, a `400 Bad Request` MUST be returned."
async fn referrers_with_invalid_digest(backend: Backend) {
    let srv = TestServer::start(backend).await;
    srv.push_image("refs/invalid", "v1", 1).await;
    for bad in ["sha256:nothex", "notadigest", "sha256:abc"] {
        let resp = srv.get(&format!("/v2/refs/invalid/referrers/{bad}")).await;
        assert_error(resp, 400, &[]).await;
    }
    srv.stop().await;
}

/// "A registry MUST initially accept an otherwise valid manifest with a
/// `subject` field that references a manifest that does not exist":
/// 201 with `OCI-Subject`, and the referrer is listed for that digest.
async fn referrer_before_its_subject(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "refs/early";
    srv.push_blob(name, b"{}").await;
    let blob = b"payload".to_vec();
    srv.push_blob(name, &blob).await;
    // The subject is a manifest that is never pushed.
    let absent = image_manifest(
        &Descriptor::of(OCI_CONFIG, b"{\"absent\":true}"),
        &[],
        None,
        None,
        None,
    );
    let absent_desc = Descriptor::of(OCI_MANIFEST, &absent);
    let artifact = image_manifest(
        &Descriptor::of(OCI_EMPTY, b"{}"),
        &[Descriptor::of(TYPE_SIG, &blob)],
        Some(&absent_desc),
        Some(TYPE_SIG),
        None,
    );
    let resp = srv
        .put_manifest(name, &sha256_digest(&artifact), OCI_MANIFEST, &artifact)
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "referrer to a missing subject"
    );
    assert_eq!(
        header(&resp, "oci-subject").as_deref(),
        Some(absent_desc.digest.as_str())
    );
    let (got, _) = referrers(&srv, name, &absent_desc.digest, None).await;
    assert_descriptors(
        &got,
        vec![expected_descriptor(
            OCI_MANIFEST,
            &artifact,
            Some(TYPE_SIG),
            &[],
        )],
    );
    srv.stop().await;
}

/// A deleted referrer disappears from the list; the others stay.
async fn deleted_referrer_disappears(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let r = push_referrers(&srv).await;
    let gone = sha256_digest(&r.sbom);
    let resp = srv
        .delete(&format!("/v2/{}/manifests/{gone}", r.name))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (got, _) = referrers(&srv, r.name, &r.subject.digest, None).await;
    let digests: Vec<&str> = got.iter().map(|m| m["digest"].as_str().unwrap()).collect();
    assert_eq!(digests.len(), 4, "{digests:?}");
    assert!(
        !digests.contains(&gone.as_str()),
        "deleted referrer still listed"
    );
    let (got, _) = referrers(&srv, r.name, &r.subject.digest, Some(TYPE_SBOM)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["digest"], json!(sha256_digest(&r.config_typed)));
    srv.stop().await;
}

/// "Each descriptor is of an image manifest or index in the same `<name>`
/// namespace": a referrer pushed to another repository is not listed.
async fn referrers_are_per_repository(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let a = srv.push_image("refs/one", "v1", 1).await;
    let other = "refs/two";
    srv.push_blob(other, b"{}").await;
    let artifact = image_manifest(
        &Descriptor::of(OCI_EMPTY, b"{}"),
        &[],
        Some(&a.manifest_desc),
        Some(TYPE_SIG),
        None,
    );
    srv.push_manifest(other, "sig", OCI_MANIFEST, &artifact)
        .await;
    let (got, _) = referrers(&srv, "refs/one", &a.digest, None).await;
    assert!(
        got.is_empty(),
        "a referrer from another repository leaked: {got:?}"
    );
    let (got, _) = referrers(&srv, other, &a.digest, None).await;
    assert_eq!(got.len(), 1);
    srv.stop().await;
}

/// The referrers list holds manifests, not pushes or tags: pushing the same
/// referrer under several tags and by digest lists it once; deleting one of
/// its tags keeps it (the manifest still exists); deleting the manifest
/// removes it.
async fn referrer_listed_once_across_tags(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let name = "refs/tags";
    let subject = srv.push_image(name, "v1", 1).await;
    srv.push_blob(name, b"{}").await;
    let artifact = image_manifest(
        &Descriptor::of(OCI_EMPTY, b"{}"),
        &[],
        Some(&subject.manifest_desc),
        Some(TYPE_SIG),
        Some(&[(ANNOTATION, "once")]),
    );
    let digest = sha256_digest(&artifact);
    for reference in ["sig-a", "sig-b", digest.as_str()] {
        srv.push_manifest(name, reference, OCI_MANIFEST, &artifact)
            .await;
    }
    let want = || {
        vec![expected_descriptor(
            OCI_MANIFEST,
            &artifact,
            Some(TYPE_SIG),
            &[(ANNOTATION, "once")],
        )]
    };
    let (got, _) = referrers(&srv, name, &subject.digest, None).await;
    assert_descriptors(&got, want());

    let resp = srv.delete(&format!("/v2/{name}/manifests/sig-a")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (got, _) = referrers(&srv, name, &subject.digest, None).await;
    assert_descriptors(&got, want());

    let resp = srv.delete(&format!("/v2/{name}/manifests/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (got, _) = referrers(&srv, name, &subject.digest, None).await;
    assert!(got.is_empty(), "deleted referrer still listed: {got:?}");
    srv.stop().await;
}

/// "Listing Referrers": "the registry MAY ... return a Link header" to
/// more results. With `n`, pages hold at most `n` descriptors and link to
/// the next (keeping the `artifactType` filter); following the links gives
/// every referrer once, as the unpaged list does.
async fn referrers_paginated_with_link(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let r = push_referrers(&srv).await;
    let subject = &r.subject.digest;
    for filter in [None, Some(TYPE_SBOM)] {
        let (want, _) = referrers(&srv, r.name, subject, filter).await;
        assert!(want.len() >= 2, "{want:?}");
        let mut first = format!("/v2/{}/referrers/{subject}?n=2", r.name);
        if let Some(t) = filter {
            first = with_query(&first, "artifactType", t);
        }
        let mut got: Vec<Value> = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next {
            let resp = srv.get(&url).await;
            assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
            next = next_link(&resp);
            if let Some(link) = &next {
                let params = query_params(link);
                assert!(params.contains(&("n".to_owned(), "2".to_owned())), "{link}");
                if let Some(t) = filter {
                    assert!(params.contains(&("artifactType".to_owned(), t.to_owned())));
                }
            }
            let body: Value = resp.json().await.unwrap();
            let page = body["manifests"].as_array().unwrap().clone();
            assert!(page.len() <= 2);
            got.extend(page);
            pages += 1;
            assert!(
                pages <= want.len(),
                "referrers pagination does not terminate"
            );
        }
        assert_eq!(got, want, "filter {filter:?}");
        assert_eq!(pages, want.len().div_ceil(2), "filter {filter:?}");
    }
    srv.stop().await;
}

backend_tests!(
    many_tags_paginate_over_http,
    referrers_paginated_with_link,
    list_tags,
    list_tags_of_unknown_repository,
    list_tags_of_untagged_repository,
    empty_catalog,
    list_referrers_filtered,
    referrers_of_unknown_digest,
    referrers_with_invalid_digest,
    referrer_before_its_subject,
    deleted_referrer_disappears,
    referrers_are_per_repository,
    referrer_listed_once_across_tags,
);

backend_tests_and_azure!(list_tags_paginated, catalog, list_referrers);
