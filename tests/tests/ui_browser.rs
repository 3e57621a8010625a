//! The web UI in real headless Chromium, driven over WebDriver
//! (chromedriver, started here on a free port): clicking from the
//! repository list to a tag, a layer and a referrer; deleting a tag
//! through the form; a delete refused without the right; logging in and
//! out; hostile content that does not run. Screenshots of the main pages
//! are saved under `target/ui-screenshots/`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use oci_e2e::tools::have_tool;
use oci_e2e::ui::*;
use oci_e2e::*;
use reqwest::{Method, StatusCode};

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver on a free port, or `None` (skipped) without it.
async fn driver(test: &str) -> Option<Driver> {
    if !have_tool("chromedriver", test) || !have_tool("chromium", test) {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let d = Driver { child, port };
    // Up to a minute: a loaded machine starts it slowly.
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(d);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on {port}");
}

/// A headless Chromium session of `width` x `height`.
async fn browser(d: &Driver, width: u32, height: u32) -> Client {
    // The process's TLS provider (the client is built with rustls even
    // for chromedriver's plain HTTP).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", format!("--window-size={width},{height}")]
        }),
    );
    ClientBuilder::rustls()
        .expect("tls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.port))
        .await
        .expect("a WebDriver session")
}

/// Saves a screenshot as `target/ui-screenshots/<name>.png`.
async fn screenshot(c: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Clicks the link whose text is `text`.
async fn click_link(c: &Client, text: &str) {
    c.find(Locator::LinkText(text))
        .await
        .unwrap_or_else(|e| panic!("link {text:?}: {e}"))
        .click()
        .await
        .unwrap();
}

/// The page's `h1` once it is the one `expected` accepts (at most 30 s:
/// a click returns before the next page may have loaded), or the last one
/// seen.
async fn heading(c: &Client, expected: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let h = text_of(c, "h1").await;
        if expected(&h) || std::time::Instant::now() > deadline {
            return h;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The text of the first element `css` selects, waiting (at most 30 s)
/// for it to appear: a click that submits a form returns before the next
/// page has loaded.
async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(std::time::Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Asserts that no hostile string ran on the current page.
async fn assert_not_pwned(c: &Client) {
    let pwned = c
        .execute(
            "return [typeof window.pwned, document.getElementById('pwned') === null]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        pwned,
        serde_json::json!(["undefined", true]),
        "a hostile string ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_click_through_delete_and_hostile_content() {
    let Some(d) = driver("browse_click_through_delete_and_hostile_content").await else {
        return;
    };
    let srv = TestServer::start_with_config(Backend::Memory, "").await;
    let seeded = seed_image(srv.storage(), "team/app", "v1", HOSTILE).await;
    seed_image(srv.storage(), "team/web", "2.0", "a plain label").await;
    seed_image(srv.storage(), "library/alpine", "3.20", "alpine").await;
    let usage = srv.storage().usage(None).await.unwrap();
    srv.storage().record_usage(&usage).await.unwrap();
    let c = browser(&d, 1280, 900).await;
    // `/` lands on the repository list.
    c.goto(&srv.url("/")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/"));
    assert_eq!(heading(&c, |h| h == "Repositories").await, "Repositories");
    screenshot(&c, "repositories").await;
    // The search box filters the shown rows as one types.
    let q = c.find(Locator::Id("q")).await.unwrap();
    q.send_keys("team/w").await.unwrap();
    let hidden = c
        .execute("return [...document.querySelectorAll('#repositories tbody tr')].filter(r => !r.hidden).map(r => r.dataset.name)", vec![])
        .await
        .unwrap();
    assert_eq!(hidden, serde_json::json!(["team/web"]));
    c.refresh().await.unwrap();
    // Repository -> tag -> layer.
    click_link(&c, "team/app").await;
    assert_eq!(heading(&c, |h| h == "team/app").await, "team/app");
    screenshot(&c, "repository").await;
    click_link(&c, "v1").await;
    assert_eq!(heading(&c, |h| h == "team/app:v1").await, "team/app:v1");
    assert_not_pwned(&c).await;
    // The hostile annotation is shown as text.
    let annotations = text_of(&c, "section[aria-labelledby=annotations]").await;
    assert!(
        annotations.contains("<script>window.pwned=1"),
        "{annotations}"
    );
    // Open the manifest JSON before the screenshot of the whole page.
    screenshot(&c, "manifest").await;
    let layer = seeded.layer.to_string();
    let short = format!("sha256:{}", &layer[7..19]);
    click_link(&c, &short).await;
    assert!(
        heading(&c, |h| h.starts_with("Blob sha256:"))
            .await
            .starts_with("Blob sha256:")
    );
    assert!(text_of(&c, "dl.facts").await.contains(&layer));
    screenshot(&c, "blob").await;
    // Back, then the referrer.
    c.back().await.unwrap();
    let referrer = seeded.referrer.to_string();
    click_link(&c, &format!("sha256:{}", &referrer[7..19])).await;
    assert!(
        text_of(&c, "dl.facts")
            .await
            .contains("application/spdx+json")
    );
    assert!(
        text_of(&c, "dl.facts")
            .await
            .contains(&seeded.manifest.to_string())
    );
    // The index: platforms linked to each child.
    c.goto(&srv.url("/ui/r/team/app/-/manifest/v1-multi"))
        .await
        .unwrap();
    assert!(
        text_of(&c, "section[aria-labelledby=platforms]")
            .await
            .contains("linux/arm64/v8")
    );
    screenshot(&c, "index").await;
    // Delete a tag through the form.
    c.goto(&srv.url("/ui/r/team/app/-/manifest/v1"))
        .await
        .unwrap();
    click_link(&c, "Delete tag v1").await;
    assert_eq!(
        heading(&c, |h| h == "Delete the tag v1?").await,
        "Delete the tag v1?"
    );
    screenshot(&c, "delete-confirm").await;
    c.find(Locator::Css("form button.danger"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(text_of(&c, "p.notice").await.contains("Deleted v1"));
    let r = srv
        .req(Method::GET, "/v2/team/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Storage usage.
    c.goto(&srv.url("/ui/usage")).await.unwrap();
    assert!(text_of(&c, "#usage").await.contains("library/alpine"));
    screenshot(&c, "usage").await;
    // A phone-sized viewport: the page does not scroll sideways.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&srv.url("/ui/r/team/app/-/manifest/v1-multi"))
        .await
        .unwrap();
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        serde_json::json!(true),
        "sideways scrolling on a phone"
    );
    screenshot(&c, "phone-manifest").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_logout_and_a_refused_delete() {
    let Some(d) = driver("login_logout_and_a_refused_delete").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_with_config(Backend::Memory, &ui_auth_config(dir.path())).await;
    seed_image(srv.storage(), "team/app", "v1", HOSTILE).await;
    seed_image(srv.storage(), "public/base", "v1", "x").await;
    let c = browser(&d, 1280, 900).await;
    c.goto(&srv.url("/ui/")).await.unwrap();
    let list = text_of(&c, "main").await;
    assert!(list.contains("public/base") && !list.contains("team/app"));
    click_link(&c, "Log in").await;
    screenshot(&c, "login").await;
    c.find(Locator::Id("user"))
        .await
        .unwrap()
        .send_keys("reader")
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("wrong")
        .await
        .unwrap();
    c.find(Locator::Css("form.login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        text_of(&c, "p.error")
            .await
            .contains("Wrong user or password")
    );
    c.find(Locator::Id("user"))
        .await
        .unwrap()
        .send_keys("reader")
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("reader-pw")
        .await
        .unwrap();
    c.find(Locator::Css("form.login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(text_of(&c, "header").await.contains("Signed in as reader"));
    let list = text_of(&c, "main").await;
    assert!(list.contains("team/app"), "{list}");
    // The session cookie is out of reach of scripts.
    let cookies = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(cookies, serde_json::json!(""));
    // No delete button for a reader, and the form's URL refuses.
    click_link(&c, "team/app").await;
    click_link(&c, "v1").await;
    assert_not_pwned(&c).await;
    assert!(c.find(Locator::LinkText("Delete tag v1")).await.is_err());
    c.goto(&srv.url("/ui/r/team/app/-/delete?ref=v1"))
        .await
        .unwrap();
    assert_eq!(heading(&c, |h| h == "Refused").await, "Refused");
    assert!(
        text_of(&c, "main")
            .await
            .contains("reader may not delete in team/app")
    );
    screenshot(&c, "delete-refused").await;
    // Log out: anonymous again.
    c.find(Locator::Css("header form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let header = text_of(&c, "header").await;
    assert!(header.contains("Log in") && !header.contains("reader"));
    assert!(!text_of(&c, "main").await.contains("team/app"));
    c.close().await.unwrap();
}
