//! The web UI over plain HTTP: the redirect from `/`, escaping of hostile
//! content, security headers, cookie flags, CSRF refusals, login, delete
//! rights, pagination at scale, and the API left as it was.

use oci_e2e::ui::*;
use oci_e2e::*;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn pages_escape_hostile_content_and_send_security_headers() {
    let srv = TestServer::start_with_config(Backend::Memory, "").await;
    let seeded = seed_image(srv.storage(), "team/app", "v1", HOSTILE).await;
    // `/` redirects to the UI; the API is unaffected.
    let r = srv.req(Method::GET, "/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/");
    let r = srv
        .req(Method::GET, "/v2/team/app/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let r = srv.req(Method::GET, "/ui/").send().await.unwrap();
    let h = r.headers();
    let cookie = h["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let list = r.text().await.unwrap();
    assert!(list.contains("href=\"/ui/r/team/app\""), "{list}");
    // The manifest page shows the hostile strings as text only.
    let path = "/ui/r/team/app/-/manifest/v1";
    let (status, _, page) = get(&srv, path, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !page.contains("<script>window"),
        "unescaped script in {page}"
    );
    assert!(!page.contains("<img src=x"), "unescaped img in {page}");
    assert!(page.contains("&lt;script&gt;window.pwned=1"), "{page}");
    assert!(page.contains(&seeded.layer.to_string()[..19]));
    assert!(page.contains(&format!("/ui/r/team/app/-/manifest/{}", seeded.referrer)));
    assert!(page.contains("application/spdx+json"));
    assert!(page.contains("docker pull "));
    assert!(page.contains("linux/amd64") && page.contains("/bin/app"));
    // The only scripts are the UI's own file.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    // The index lists its platforms, linked.
    let (_, _, index) = get(&srv, "/ui/r/team/app/-/manifest/v1-multi", "").await;
    assert!(index.contains("linux/arm64/v8"), "{index}");
    assert!(index.contains(&format!("/ui/r/team/app/-/manifest/{}", seeded.manifest)));
    // A blob downloads as an attachment, never as a page.
    let r = srv
        .req(
            Method::GET,
            &format!("/ui/r/team/app/-/blob/{}/download", seeded.config),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    // Unknown things are 404 pages.
    for missing in [
        "/ui/r/team/nope",
        "/ui/r/team/app/-/manifest/nope",
        "/ui/r/UPPER",
        "/ui/zzz",
    ] {
        let (status, ..) = get(&srv, missing, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }
}

#[tokio::test]
async fn deletes_need_the_sessions_csrf_token() {
    let srv = TestServer::start_with_config(Backend::Memory, "").await;
    seed_image(srv.storage(), "team/app", "v1", "x").await;
    let cookie = visit(&srv).await;
    let (status, _, confirm) = get(&srv, "/ui/r/team/app/-/delete?ref=v1", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let token = csrf_of(&confirm);
    let path = "/ui/r/team/app/-/delete?ref=v1";
    // No token, a wrong token, another session's token, no cookie, a
    // cross-site browser request: refused, nothing deleted.
    let other = visit(&srv).await;
    let (_, _, other_page) = get(&srv, "/ui/r/team/app/-/delete?ref=v1", &other).await;
    let other_token = csrf_of(&other_page);
    for (cookie, token) in [
        (cookie.as_str(), ""),
        (cookie.as_str(), "forged"),
        (cookie.as_str(), other_token.as_str()),
        ("", token.as_str()),
    ] {
        let r = post(&srv, path, cookie, &[("csrf", token), ("ref", "v1")]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let r = srv
        .req(Method::POST, path)
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", token.as_str()), ("ref", "v1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = srv
        .req(Method::GET, "/v2/team/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "still there");
    // With the token: deleted, and back to the repository.
    let r = post(&srv, path, &cookie, &[("csrf", &token), ("ref", "v1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/r/team/app?deleted=v1");
    let r = srv
        .req(Method::GET, "/v2/team/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn login_rights_and_logout() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_with_config(Backend::Memory, &ui_auth_config(dir.path())).await;
    seed_image(srv.storage(), "team/app", "v1", "x").await;
    seed_image(srv.storage(), "public/base", "v1", "x").await;
    seed_image(srv.storage(), "secret/thing", "v1", "x").await;
    // Anonymous: only public/**; no delete.
    let anon = visit(&srv).await;
    let (_, _, list) = get(&srv, "/ui/", &anon).await;
    assert!(list.contains("public/base") && !list.contains("team/app") && !list.contains("secret"));
    let (status, ..) = get(&srv, "/ui/r/secret/thing", &anon).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A wrong password: 401, still anonymous.
    let (_, _, form) = get(&srv, "/ui/login", &anon).await;
    let token = csrf_of(&form);
    let r = post(
        &srv,
        "/ui/login",
        &anon,
        &[("csrf", &token), ("user", "reader"), ("password", "nope")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Without the CSRF token: refused (login CSRF).
    let r = post(
        &srv,
        "/ui/login",
        &anon,
        &[("user", "reader"), ("password", "reader-pw")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The reader logs in: a new session, team/** visible, no delete.
    let r = post(
        &srv,
        "/ui/login",
        &anon,
        &[
            ("csrf", &token),
            ("user", "reader"),
            ("password", "reader-pw"),
            ("next", "/ui/r/team/app"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/r/team/app");
    let reader = session_cookie(&r).expect("a new session");
    assert_ne!(reader, anon);
    let (_, _, list) = get(&srv, "/ui/", &reader).await;
    assert!(
        list.contains("Signed in as")
            && list.contains("team/app")
            && !list.contains("secret/thing")
    );
    let (_, _, page) = get(&srv, "/ui/r/team/app/-/manifest/v1", &reader).await;
    assert!(!page.contains("Delete"), "no delete button for a reader");
    let (status, _, refused) = get(&srv, "/ui/r/team/app/-/delete?ref=v1", &reader).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        refused.contains("reader may not delete in team/app"),
        "{refused}"
    );
    let reader_token = csrf_of(&list);
    let r = post(
        &srv,
        "/ui/r/team/app/-/delete",
        &reader,
        &[("csrf", &reader_token), ("ref", "v1")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // An open redirect after login is not followed.
    let (_, _, form) = get(&srv, "/ui/login", &anon).await;
    let r = post(
        &srv,
        "/ui/login",
        &anon,
        &[
            ("csrf", &csrf_of(&form)),
            ("user", "admin"),
            ("password", "admin-pw"),
            ("next", "https://evil.example/"),
        ],
    )
    .await;
    assert_eq!(r.headers()["location"], "/ui/");
    let admin = session_cookie(&r).unwrap();
    let (_, _, page) = get(&srv, "/ui/r/secret/thing/-/manifest/v1", &admin).await;
    assert!(page.contains("Delete tag v1"));
    // Logging out: a new anonymous session.
    let (_, _, list) = get(&srv, "/ui/", &reader).await;
    let r = post(&srv, "/ui/logout", &reader, &[("csrf", &csrf_of(&list))]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let after = session_cookie(&r).unwrap();
    let (_, _, list) = get(&srv, "/ui/", &after).await;
    assert!(!list.contains("team/app") && list.contains("Log in"));
    // A forged session (another key) is anonymous.
    let (_, set, list) = get(
        &srv,
        "/ui/",
        "oci_ui_session=eyJ1IjoiYWRtaW4iLCJlIjo5OTk5OTk5OTk5LCJuIjoiMDAifQ.AAAA",
    )
    .await;
    assert!(set.is_some() && !list.contains("secret/thing"));
    // The API still asks for credentials.
    let r = srv
        .req(Method::GET, "/v2/team/app/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// 2,000 repositories and 1,500 tags: pages of 50, followed by their
/// links; sorting by push time; a search by prefix.
#[tokio::test]
async fn pagination_at_scale() {
    let srv = TestServer::start_with_config(Backend::Memory, "").await;
    let s = srv.storage();
    let blob = b"x";
    for i in 0..2000 {
        let name = format!("scale/r{i:04}").parse().unwrap();
        put_blob(s, &name, blob).await;
    }
    let seeded = seed_image(s, "scale/r0001", "base", "x").await;
    let name: oci_types::RepositoryName = "scale/r0001".parse().unwrap();
    for i in 0..1500 {
        let tag = format!("t{i:04}").parse().unwrap();
        s.tag_put(&name, &tag, &seeded.manifest).await.unwrap();
    }
    let count_rows = |html: &str| html.matches("<tr data-name=").count();
    let started = std::time::Instant::now();
    let (_, _, first) = get(&srv, "/ui/", "").await;
    assert_eq!(count_rows(&first), 50);
    assert!(
        first.contains("scale/r0000")
            && first.contains("scale/r0049")
            && !first.contains("scale/r0050")
    );
    let next = first.split("rel=\"next\"").next().unwrap();
    let href = &next[next.rfind("href=\"").unwrap() + 6..];
    let href = href[..href.find('"').unwrap()].replace("&amp;", "&");
    assert_eq!(href, "/ui/?after=scale%2Fr0049");
    let (_, _, second) = get(&srv, &href, "").await;
    assert!(second.contains("scale/r0050") && second.contains("scale/r0099"));
    let (_, _, found) = get(&srv, "/ui/?q=scale%2Fr19", "").await;
    assert_eq!(count_rows(&found), 50);
    assert!(found.contains("scale/r1900") && !found.contains("scale/r1899"));
    let (_, _, found) = get(&srv, "/ui/?q=scale%2Fr1999", "").await;
    assert_eq!(count_rows(&found), 1);
    // Tags: by name, 50 a page; by push time, newest first.
    let (_, _, tags) = get(&srv, "/ui/r/scale/r0001", "").await;
    assert_eq!(tags.matches("/-/delete?ref=").count(), 50);
    let (_, _, by_time) = get(&srv, "/ui/r/scale/r0001?sort=pushed", "").await;
    assert!(by_time.contains("<dd>1502</dd>"), "total shown");
    let first_tag = by_time.split("/-/manifest/").nth(1).unwrap();
    assert!(
        first_tag.starts_with("t1499"),
        "newest first: {}",
        &first_tag[..20]
    );
    let (_, _, page2) = get(&srv, "/ui/r/scale/r0001?sort=pushed&offset=1450", "").await;
    assert_eq!(page2.matches("/-/delete?ref=").count(), 50);
    assert!(page2.contains("rel=\"next\""));
    let (_, _, page2) = get(&srv, "/ui/r/scale/r0001?sort=pushed&offset=1500", "").await;
    assert_eq!(page2.matches("/-/delete?ref=").count(), 2);
    assert!(!page2.contains("rel=\"next\""));
    eprintln!("pages at scale took {:?}", started.elapsed());
}
