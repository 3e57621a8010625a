//! Access control with real clients over HTTP: skopeo with `--src-creds`,
//! `--dest-creds` and `--creds`, and podman's `login`, `push`, `pull` and
//! `logout`, against a registry with `[auth]` in basic mode (HTTP Basic on
//! every request) and in token mode (a `Bearer` challenge pointing at the
//! built-in issuer, `/auth/token`, which the tools call with the user's
//! password). Every test runs in both modes (`<test>::basic`,
//! `<test>::token`).
//!
//! The accounts (bcrypt, cost 4) and rules: `admin` may do everything;
//! `alice` may pull and push `team/**` and only pull `shared/**`; nobody
//! else may do anything. The harness's client pushes the starting image as
//! `admin`.
//!
//! Tool tests skip with a message when the tool is missing, and fail
//! instead when `OCI_E2E_REQUIRE_TOOLS=1` (see [`oci_e2e::tools`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use oci_e2e::tools::{have_tool, push_real_image, run};
use oci_e2e::{Backend, OCI_MANIFEST, TestServer, sha256_digest};
use reqwest::{Method, StatusCode};

const ADMIN: (&str, &str) = ("admin", "admin-secret");
const ALICE: (&str, &str) = ("alice", "alice-secret");

/// The `[auth]` mode of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Basic,
    Token,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Basic => "basic",
            Mode::Token => "token",
        }
    }
}

/// Expands `name(mode)` into a module `name` with the tests `basic` and
/// `token`.
macro_rules! auth_mode_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn basic() {
                    super::$name(super::Mode::Basic).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn token() {
                    super::$name(super::Mode::Token).await
                }
            }
        )*
    };
}

auth_mode_tests!(
    skopeo_copies_in_and_out_with_credentials,
    skopeo_with_wrong_credentials_fails,
    skopeo_push_without_the_right_fails,
    podman_login_push_pull_logout,
    podman_push_without_login_fails,
);

/// A registry on memory storage with access control in `mode`, and the
/// directory holding its htpasswd file.
struct AuthServer {
    srv: TestServer,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    async fn start(mode: Mode) -> AuthServer {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let entries: String = [ADMIN, ALICE]
            .iter()
            .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap()))
            .collect();
        std::fs::write(&htpasswd, entries).unwrap();
        let config = format!(
            r#"
[auth]
mode = "{mode}"
htpasswd = "{htpasswd}"

[access]
admins = ["admin"]

[[access.rules]]
repositories = ["team/**"]
users = ["alice"]
actions = ["pull", "push"]

[[access.rules]]
repositories = ["shared/**"]
users = ["alice"]
actions = ["pull"]
"#,
            mode = mode.name(),
            htpasswd = htpasswd.display(),
        );
        let srv = TestServer::start_with_auth(Backend::Memory, &config).await;
        AuthServer { srv, _dir: dir }
    }

    /// Makes the harness's client act as `admin` on `repositories` (pull,
    /// push): Basic credentials, or a token from `/auth/token` for them.
    async fn act_as_admin(&mut self, mode: Mode, repositories: &[&str]) {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ADMIN.0, ADMIN.1))
        );
        let value = match mode {
            Mode::Basic => basic,
            Mode::Token => {
                let scopes: Vec<(&str, String)> = repositories
                    .iter()
                    .map(|r| ("scope", format!("repository:{r}:pull,push")))
                    .chain([("service", "oci-registry".to_owned())])
                    .collect();
                let resp = self
                    .srv
                    .req(Method::GET, "/auth/token")
                    .query(&scopes)
                    .header("authorization", basic)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK, "admin token");
                let body: serde_json::Value = resp.json().await.unwrap();
                format!("Bearer {}", body["token"].as_str().expect("a token"))
            }
        };
        self.srv.authorize(&value);
    }

    /// The digest of `name:tag` as the registry serves it (as admin), or
    /// `None` when it has no such tag.
    async fn manifest_digest(&self, name: &str, tag: &str) -> Option<String> {
        let resp = self
            .srv
            .req(Method::GET, &format!("/v2/{name}/manifests/{tag}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        match resp.status() {
            StatusCode::OK => Some(sha256_digest(&resp.bytes().await.unwrap())),
            StatusCode::NOT_FOUND => None,
            other => panic!("GET {name}:{tag} as admin: {other}"),
        }
    }

    /// `127.0.0.1:<port>/<name>:<tag>`.
    fn image(&self, name: &str, tag: &str) -> String {
        format!("{}/{name}:{tag}", self.srv.host())
    }
}

/// Starts the server and pushes the starting image, `shared/base:v1`, as
/// admin; the admin's client may also read `team/app` afterwards. Returns
/// the server and the image's digest.
async fn server_with_image(mode: Mode) -> (AuthServer, String) {
    let mut server = AuthServer::start(mode).await;
    server
        .act_as_admin(mode, &["shared/base", "team/app"])
        .await;
    let digest = push_real_image(&server.srv, "shared/base", "v1", b"hello, auth\n").await;
    (server, digest)
}

fn creds((user, password): (&str, &str)) -> String {
    format!("{user}:{password}")
}

/// `skopeo --insecure-policy` with the given arguments.
fn skopeo(args: &[&str]) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy").args(args);
    cmd
}

/// An `oci:` layout reference in `dir`.
fn layout(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.join("layout").display())
}

/// skopeo copies an image out of a repository the user may pull
/// (`--src-creds`), into one the user may push to (`--dest-creds`), and
/// back out of that one with `--creds`-style source credentials; the
/// digest survives the round trip (`--preserve-digests`).
async fn skopeo_copies_in_and_out_with_credentials(mode: Mode) {
    if !have_tool("skopeo", "skopeo_copies_in_and_out_with_credentials") {
        return;
    }
    let (server, digest) = server_with_image(mode).await;
    let work = tempfile::tempdir().unwrap();
    let alice = creds(ALICE);
    let base = format!("docker://{}", server.image("shared/base", "v1"));
    let app = format!("docker://{}", server.image("team/app", "v1"));

    let (ok, _, err) = run(skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        &alice,
        &base,
        &layout(work.path(), "v1"),
    ]))
    .await;
    assert!(ok, "skopeo copy out of shared/base: {err}");

    let (ok, _, err) = run(skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &alice,
        &layout(work.path(), "v1"),
        &app,
    ]))
    .await;
    assert!(ok, "skopeo copy into team/app: {err}");
    assert_eq!(
        server.manifest_digest("team/app", "v1").await.as_deref(),
        Some(digest.as_str())
    );

    let (ok, out, err) = run(skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &alice,
        "--format",
        "{{.Digest}}",
        &app,
    ]))
    .await;
    assert!(ok, "skopeo inspect team/app: {err}");
    assert_eq!(out.trim(), digest);

    let back = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        &alice,
        &app,
        &layout(back.path(), "v1"),
    ]))
    .await;
    assert!(ok, "skopeo copy back out of team/app: {err}");
    server.srv.stop().await;
}

/// A wrong password and an unknown user are refused (401) for reads and
/// writes alike, and anonymous reads are refused; nothing is written.
async fn skopeo_with_wrong_credentials_fails(mode: Mode) {
    if !have_tool("skopeo", "skopeo_with_wrong_credentials_fails") {
        return;
    }
    let (server, _) = server_with_image(mode).await;
    let work = tempfile::tempdir().unwrap();
    let base = format!("docker://{}", server.image("shared/base", "v1"));
    let app = format!("docker://{}", server.image("team/app", "v1"));
    let (ok, _, err) = run(skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds(ADMIN),
        &base,
        &layout(work.path(), "v1"),
    ]))
    .await;
    assert!(ok, "skopeo copy out as admin: {err}");

    for bad in [creds((ALICE.0, "wrong")), creds(("mallory", ALICE.1))] {
        let (ok, _, err) = run(skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &bad,
            &layout(work.path(), "v1"),
            &app,
        ]))
        .await;
        assert!(!ok, "a push with {bad} must fail");
        assert!(refused(&err), "a push with {bad}: {err}");

        let (ok, _, err) = run(skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &bad,
            &base,
        ]))
        .await;
        assert!(!ok, "a pull with {bad} must fail");
        assert!(refused(&err), "a pull with {bad}: {err}");
    }
    let (ok, _, err) = run(skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--no-creds",
        &base,
    ]))
    .await;
    assert!(!ok, "an anonymous pull must fail");
    assert!(refused(&err), "an anonymous pull: {err}");
    assert_eq!(server.manifest_digest("team/app", "v1").await, None);
    server.srv.stop().await;
}

/// With valid credentials, a push to a repository the user may only pull
/// (`shared/base`) or may not touch at all (`other/app`) fails: 403
/// `DENIED` in basic mode, a token without `push` in token mode.
async fn skopeo_push_without_the_right_fails(mode: Mode) {
    if !have_tool("skopeo", "skopeo_push_without_the_right_fails") {
        return;
    }
    let (mut server, _) = server_with_image(mode).await;
    let work = tempfile::tempdir().unwrap();
    let alice = creds(ALICE);
    let (ok, _, err) = run(skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &alice,
        &format!("docker://{}", server.image("shared/base", "v1")),
        &layout(work.path(), "v1"),
    ]))
    .await;
    assert!(ok, "skopeo copy out of shared/base: {err}");

    for (name, tag) in [("shared/base", "v2"), ("other/app", "v1")] {
        let (ok, _, err) = run(skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &alice,
            &layout(work.path(), "v1"),
            &format!("docker://{}", server.image(name, tag)),
        ]))
        .await;
        assert!(!ok, "alice's push to {name} must fail");
        assert!(refused(&err), "alice's push to {name}: {err}");
    }
    server
        .act_as_admin(mode, &["shared/base", "other/app"])
        .await;
    assert_eq!(server.manifest_digest("shared/base", "v2").await, None);
    assert_eq!(server.manifest_digest("other/app", "v1").await, None);
    server.srv.stop().await;
}

/// Whether a tool's error output says the registry refused the caller
/// (401 or 403, in the words skopeo and podman use), not some other
/// failure.
fn refused(err: &str) -> bool {
    let err = err.to_ascii_lowercase();
    [
        "unauthorized",
        "authentication required",
        "invalid username/password",
        "denied",
        "401",
        "403",
    ]
    .iter()
    .any(|w| err.contains(w))
}

/// podman as root with its own vfs storage and an isolated auth file in
/// `dir`; the user's auth files (podman's and docker's) are never read.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    /// Starts with an empty auth file (podman refuses an `--authfile`
    /// that does not exist).
    fn new() -> Podman {
        let podman = Podman {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(podman.authfile(), r#"{"auths":{}}"#).unwrap();
        podman
    }

    fn authfile(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    /// `podman <args> --tls-verify=false --authfile <dir>/auth.json` for a
    /// subcommand that talks to a registry.
    fn remote(&self, subcommand: &str, args: &[&str]) -> Command {
        let mut cmd = self.local(&[subcommand]);
        cmd.arg("--tls-verify=false")
            .arg("--authfile")
            .arg(self.authfile())
            .args(args);
        cmd
    }

    /// `podman <args>` with the storage setup of this test.
    fn local(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"])
            .args(args)
            .env("TMPDIR", self.dir.path())
            .env("REGISTRY_AUTH_FILE", self.authfile())
            .env("DOCKER_CONFIG", self.dir.path());
        cmd
    }
}

/// `podman login` stores the credentials (a wrong password is refused and
/// stores nothing); with them podman pulls from a repository the user may
/// pull, pushes to one the user may push to and pulls that back;
/// `podman logout` removes them.
async fn podman_login_push_pull_logout(mode: Mode) {
    if !have_tool("podman", "podman_login_push_pull_logout") {
        return;
    }
    let (server, digest) = server_with_image(mode).await;
    let podman = Podman::new();
    let host = server.srv.host().to_owned();

    let (ok, _, err) = run(podman.remote(
        "login",
        &["--username", ALICE.0, "--password", "wrong", &host],
    ))
    .await;
    assert!(!ok, "podman login with a wrong password must fail");
    assert!(refused(&err), "podman login with a wrong password: {err}");

    let (ok, _, err) = run(podman.remote(
        "login",
        &["--username", ALICE.0, "--password", ALICE.1, &host],
    ))
    .await;
    assert!(ok, "podman login: {err}");
    let stored = std::fs::read_to_string(podman.authfile()).unwrap();
    assert!(stored.contains(&host), "{stored}");

    let base = server.image("shared/base", "v1");
    let (ok, _, err) = run(podman.remote("pull", &[&base])).await;
    assert!(ok, "podman pull shared/base: {err}");
    let (ok, out, err) =
        run(podman.local(&["image", "inspect", "--format", "{{.Digest}}", &base])).await;
    assert!(ok, "podman image inspect: {err}");
    assert_eq!(out.trim(), digest);

    let app = server.image("team/app", "v1");
    let (ok, _, err) = run(podman.remote("push", &[&base, &app])).await;
    assert!(ok, "podman push to team/app: {err}");
    assert!(server.manifest_digest("team/app", "v1").await.is_some());

    let (ok, _, err) = run(podman.local(&["rmi", "--all", "--force"])).await;
    assert!(ok, "podman rmi: {err}");
    let (ok, _, err) = run(podman.remote("pull", &[&app])).await;
    assert!(ok, "podman pull team/app: {err}");

    let authfile = podman.authfile().display().to_string();
    let (ok, _, err) = run(podman.local(&["logout", "--authfile", &authfile, &host])).await;
    assert!(ok, "podman logout: {err}");
    let stored = std::fs::read_to_string(podman.authfile()).unwrap_or_default();
    assert!(!stored.contains(&host), "{stored}");
    let (ok, _, _) = run(podman.local(&["rmi", "--all", "--force"])).await;
    assert!(ok);
    let (ok, _, err) = run(podman.remote("pull", &[&app])).await;
    assert!(!ok, "a pull after logout must fail");
    assert!(refused(&err), "a pull after logout: {err}");
    server.srv.stop().await;
}

/// Without `podman login` (an empty auth file) a push to a protected
/// repository fails and writes nothing; so does a push after logging in
/// to a repository the user may only pull.
async fn podman_push_without_login_fails(mode: Mode) {
    if !have_tool("podman", "podman_push_without_login_fails") {
        return;
    }
    let (server, _) = server_with_image(mode).await;
    let podman = Podman::new();
    let host = server.srv.host().to_owned();
    let base = server.image("shared/base", "v1");
    // The image comes in with credentials given on the command line only.
    let alice = creds(ALICE);
    let (ok, _, err) = run(podman.remote("pull", &["--creds", &alice, &base])).await;
    assert!(ok, "podman pull --creds: {err}");

    let app = server.image("team/app", "v1");
    let (ok, _, err) = run(podman.remote("push", &[&base, &app])).await;
    assert!(!ok, "a push without login must fail");
    assert!(refused(&err), "a push without login: {err}");
    assert_eq!(server.manifest_digest("team/app", "v1").await, None);

    let (ok, _, err) = run(podman.remote(
        "login",
        &["--username", ALICE.0, "--password", ALICE.1, &host],
    ))
    .await;
    assert!(ok, "podman login: {err}");
    let (ok, _, err) =
        run(podman.remote("push", &[&base, &server.image("shared/base", "v2")])).await;
    assert!(!ok, "a push to a pull-only repository must fail");
    assert!(refused(&err), "a push to shared/base: {err}");
    assert_eq!(server.manifest_digest("shared/base", "v2").await, None);
    server.srv.stop().await;
}
