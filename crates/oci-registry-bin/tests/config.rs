//! The configuration as operators use it: a TOML file, `OCI_REGISTRY_*`
//! variables over it, flags over both; `config check` and `config
//! example`; JSON logs.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{clear_env, hold_upload, oci_digest, signal, start, stop_and_read_log, wait_exit};

fn oci_registry(args: &[&str], configure: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-registry"));
    cmd.args(args);
    clear_env(&mut cmd);
    configure(&mut cmd);
    cmd.output().expect("run oci-registry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The storage each layer names wins over the one below: file < env <
/// flag. The startup line says which storage was opened.
#[tokio::test]
async fn file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let file = write(
        dir.path(),
        "registry.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nurl = \"{}\"\n[log]\nlevel = \"warn\"\n",
            a.display()
        ),
    );

    let mut run = start(|cmd| {
        cmd.arg("--config").arg(&file);
    });
    assert!(
        run.line.contains(&format!("file://{}", a.display())),
        "{}",
        run.line
    );
    let r = reqwest::get(format!("{}/v2/", run.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());

    // The file named by the variable, the storage by the sectioned variable.
    let mut run = start(|cmd| {
        cmd.env("OCI_REGISTRY_CONFIG", &file)
            .env("OCI_REGISTRY_STORAGE_URL", &b);
    });
    assert!(
        run.line.contains(&format!("file://{}", b.display())),
        "{}",
        run.line
    );
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());

    let mut run = start(|cmd| {
        cmd.arg("--config")
            .arg(&file)
            .env("OCI_REGISTRY_STORAGE_URL", &b)
            .arg("--storage")
            .arg(&c);
    });
    assert!(
        run.line.contains(&format!("file://{}", c.display())),
        "{}",
        run.line
    );
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
    assert!(a.is_dir() && b.is_dir() && c.is_dir());
}

/// A limit from the file holds, and the environment overrides it: with
/// `max_requests = 1`, from the file or from the variable over a file's
/// 100, a request beside one held upload is refused with 429.
#[tokio::test]
async fn limits_from_the_file_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let limit = |n: usize| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nurl = \"memory://\"\n[limits]\nmax_requests = {n}\n"
        )
    };
    let one = write(dir.path(), "one.toml", &limit(1));
    let refused = refused_beside_a_held_upload(|cmd| {
        cmd.arg("--config").arg(&one);
    })
    .await;
    assert!(refused, "the file's max_requests = 1 holds");
    let hundred = write(dir.path(), "hundred.toml", &limit(100));
    let refused = refused_beside_a_held_upload(|cmd| {
        cmd.arg("--config")
            .arg(&hundred)
            .env("OCI_REGISTRY_LIMITS_MAX_REQUESTS", "1");
    })
    .await;
    assert!(refused, "the variable overrides the file");
}

/// Starts the binary as `configure` says and holds one upload in flight
/// (a PATCH whose body does not end): whether a `GET /v2/` beside it was
/// refused with 429. Polled (see `hold_upload`), as a fixed pause may
/// pass on a loaded machine before the upload arrives; a server that
/// admits more requests never refuses, and is given up on after 30 s.
/// The held upload then completes.
async fn refused_beside_a_held_upload(configure: impl FnOnce(&mut Command)) -> bool {
    let mut run = start(configure);
    let client = reqwest::Client::new();
    let upload = client
        .post(format!("{}/v2/held/blobs/uploads/", run.base))
        .send()
        .await
        .unwrap();
    let location = upload.headers()["location"].to_str().unwrap().to_owned();
    let held = hold_upload(
        &client,
        &run.base,
        &location,
        bytes::Bytes::from_static(b"x"),
        std::time::Duration::from_secs(30),
    )
    .await;
    let refused = held.is_some();
    if let Some((body, patch)) = held {
        drop(body);
        assert_eq!(patch.await.unwrap().unwrap().status(), 202);
    }
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child).success());
    refused
}

#[test]
fn config_check_prints_the_effective_configuration_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "registry.toml",
        "[server]\nlisten = \"0.0.0.0:5000\"\n\
         [storage]\nurl = \"s3://bucket/prefix\"\n\
         [storage.options]\naws_region = \"eu-west-1\"\naws_secret_access_key = \"VERY-SECRET\"\n\
         [limits]\nmax_requests = 10\n\
         [[proxy]]\nprefix = \"hub\"\nurl = \"https://registry-1.docker.io\"\n\
         username = \"me\"\npassword = \"HUB-SECRET\"\n",
    );
    let out = oci_registry(&["config", "check"], |cmd| {
        cmd.arg(&file)
            .env("OCI_REGISTRY_LIMITS_MAX_REQUESTS", "20")
            .env("OCI_REGISTRY_LOG_FORMAT", "json")
            .env(
                "OCI_REGISTRY_STORAGE_OPTIONS_AWS_SESSION_TOKEN",
                "ALSO-SECRET",
            )
            // What Kubernetes adds for a Service named oci-registry.
            .env("OCI_REGISTRY_SERVICE_HOST", "10.0.0.7")
            .env("OCI_REGISTRY_SERVICE_PORT", "5000")
            .env("OCI_REGISTRY_PORT", "tcp://10.0.0.7:5000")
            .env("OCI_REGISTRY_PORT_5000_TCP_ADDR", "10.0.0.7");
    });
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", text(&out.stderr));
    let effective: toml::Value = toml::from_str(&stdout).expect("TOML out");
    assert_eq!(effective["server"]["listen"].as_str(), Some("0.0.0.0:5000"));
    assert_eq!(effective["limits"]["max_requests"].as_integer(), Some(20));
    assert_eq!(effective["log"]["format"].as_str(), Some("json"));
    assert_eq!(
        effective["storage"]["options"]["aws_region"].as_str(),
        Some("eu-west-1")
    );
    assert!(
        !stdout.contains("VERY-SECRET")
            && !stdout.contains("ALSO-SECRET")
            && !stdout.contains("HUB-SECRET"),
        "{stdout}"
    );
    assert_eq!(
        effective["storage"]["options"]["aws_session_token"].as_str(),
        Some("<redacted>")
    );
    let proxy = &effective["proxy"][0];
    assert_eq!(proxy["prefix"].as_str(), Some("hub"));
    assert_eq!(proxy["password"].as_str(), Some("<redacted>"));
    assert_eq!(proxy["tag_ttl"].as_str(), Some("5m"));
}

#[test]
fn config_check_names_the_key_and_line_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[server]\nlisten = \"127.0.0.1:5000\"\n\n[limits]\nbody_timout = \"5s\"\n",
            &["line 5", "limits.body_timout", "unknown field"][..],
        ),
        (
            "[server]\nlisten = \"not an address\"\n",
            &["line 2", "server.listen"],
        ),
        ("[log]\nformat = \"xml\"\n", &["line 2", "log.format"]),
        (
            "[auth]\nmode = \"basic\"\nhtpasswd = \"/nonexistent/htpasswd\"\n",
            &["auth.htpasswd", "/nonexistent/htpasswd"],
        ),
        ("[auth]\nmode = \"basic\"\n", &["auth", "htpasswd"]),
        ("[auth]\nmodes = \"basic\"\n", &["line 2", "auth.modes"]),
        (
            "[[access.rules]]\nrepositories = [\"a\"]\ngroups = [\"nobody\"]\nactions = [\"pull\"]\n",
            &["access", "nobody"],
        ),
        ("[log]\nlevel = \"info,=[\"\n", &["log.level"]),
        ("[server\nlisten = 1\n", &["line 1"]),
        (
            "[server.tls]\ncert = \"/nonexistent/tls.crt\"\nkey = \"/nonexistent/tls.key\"\n",
            &["server.tls.cert", "/nonexistent/tls.crt"],
        ),
        (
            "[[proxy]]\nprefix = \"Hub\"\nurl = \"https://example.com\"\n",
            &["proxy", "\"Hub\"", "not a repository name"],
        ),
        (
            "[[proxy]]\nprefix = \"a\"\nurl = \"ftp://example.com\"\n",
            &["proxy", "http or https"],
        ),
        (
            "[[proxy]]\nprefix = \"a\"\nurl = \"https://a.example\"\n\
             [[proxy]]\nprefix = \"a\"\nurl = \"https://b.example\"\n",
            &["proxy", "twice"],
        ),
        (
            "[[proxy]]\nprefix = \"a\"\nurl = \"https://a.example\"\nusername = \"u\"\n",
            &["proxy[0].password", "needs a password"],
        ),
        (
            "[[proxy]]\nprefix = \"a\"\nurl = \"https://a.example\"\nusername = \"u\"\n\
             password_file = \"/nonexistent/pw\"\n",
            &["proxy[0].password_file", "/nonexistent/pw"],
        ),
        (
            "[[proxy]]\nprefix = \"a\"\nurl = \"https://a.example\"\ntag_tll = \"1m\"\n",
            &["line 4", "tag_tll"],
        ),
        ("[[proxy]]\nprefix = \"a\"\n", &["url"]),
        // Redirects need a store that presigns URLs.
        (
            "[storage]\nurl = \"file:///srv/registry\"\nredirect = true\n",
            &["storage.redirect", "file:///srv/registry", "s3://"],
        ),
        (
            "[storage]\nurl = \"memory://\"\nredirect = true\n",
            &["storage.redirect", "memory://"],
        ),
        (
            "[storage]\nurl = \"s3://b/p\"\nredirect = true\nredirect_expiry = \"8d\"\n",
            &["storage.redirect_expiry", "8days", "7d"],
        ),
        (
            "[storage]\nredirect_expiry = \"0s\"\n",
            &["storage.redirect_expiry", "1s"],
        ),
    ];
    for (i, (contents, expected)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("bad-{i}.toml"), contents);
        let out = oci_registry(&["config", "check"], |cmd| {
            cmd.arg(&file);
        });
        assert!(!out.status.success(), "{contents:?} was accepted");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        for part in *expected {
            assert!(
                stderr.contains(part),
                "{part:?} not in {stderr:?} for {contents:?}"
            );
        }
        assert!(out.stdout.is_empty());
    }
    // The environment is checked too, and named.
    let good = write(
        dir.path(),
        "good.toml",
        "[server]\nlisten = \"127.0.0.1:5000\"\n",
    );
    for (name, value) in [
        ("OCI_REGISTRY_LIMITS_MAX_UPLOADS", "lots"),
        ("OCI_REGISTRY_AUTH_MODE", "tokens"),
        ("OCI_REGISTRY_GC_GRAECE", "1h"),
        ("OCI_REGISTRY_GC_INTERVAL", "often"),
    ] {
        let out = oci_registry(&["config", "check"], |cmd| {
            cmd.arg(&good).env(name, value);
        });
        assert!(!out.status.success(), "{name}={value} accepted");
        assert!(text(&out.stderr).contains(name), "{}", text(&out.stderr));
    }
    // And serve refuses to start on the same faults.
    let bad = write(dir.path(), "serve.toml", "[limits]\nmax_request = 5\n");
    let out = oci_registry(&["serve", "--config"], |cmd| {
        cmd.arg(&bad).stdout(Stdio::null());
    });
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("limits.max_request"),
        "{}",
        text(&out.stderr)
    );
}

/// `config example` prints every key with its default, and is itself a
/// valid configuration that checks to the defaults.
#[test]
fn config_example_checks_clean() {
    let out = oci_registry(&["config", "example"], |_| {});
    assert!(out.status.success());
    let example = text(&out.stdout);
    for section in [
        "[server]",
        "[server.tls]",
        "[storage]",
        "[log]",
        "[metrics]",
        "[limits]",
    ] {
        assert!(example.contains(section), "{section} missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "example.toml", &example);
    let out = oci_registry(&["config", "check"], |cmd| {
        cmd.arg(&file);
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    let effective: toml::Value = toml::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(
        effective["server"]["listen"].as_str(),
        Some("127.0.0.1:5000")
    );
    assert_eq!(
        effective["limits"]["max_connections"].as_integer(),
        Some(4096)
    );
}

/// The README's configuration reference is `config example`, verbatim.
#[test]
fn readme_shows_the_example() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let example = text(&oci_registry(&["config", "example"], |_| {}).stdout);
    assert!(
        readme.contains(&format!("```toml\n{example}```")),
        "README.md's configuration reference differs from `oci-registry config example`; \
         paste its output into the README"
    );
}

/// `--log-format json`: every line is one JSON object; one access line per
/// request with its fields at the top level; no credential or query
/// string in any line.
#[tokio::test]
async fn json_logs_parse_and_hold_no_secrets() {
    let mut run = start(|cmd| {
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--storage",
            "memory://",
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ])
        .stderr(Stdio::piped());
    });
    let client = reqwest::Client::builder()
        .user_agent("json-test/1.0")
        .build()
        .unwrap();
    let blob = b"json logged";
    let digest = oci_digest(blob);
    let r = client
        .post(format!(
            "{}/v2/logs/json/blobs/uploads/?digest={digest}",
            run.base
        ))
        .header("x-request-id", "json-push")
        .header("authorization", "Basic dXNlcjpQQVNTV09SRC1TRUNSRVQ=")
        .body(blob.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-request-id"], "json-push");
    let r = client
        .get(format!(
            "{}/v2/logs/json/blobs/{digest}?token=QUERY-SECRET",
            run.base
        ))
        .header("x-request-id", "json-pull")
        .header("authorization", "Bearer BEARER-SECRET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), blob);
    let r = client
        .get(format!("{}/v2/", run.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let log = stop_and_read_log(&mut run);

    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "oci_http::access")
        .collect();
    assert_eq!(access.len(), 3, "{log}");
    let push = access
        .iter()
        .find(|l| l["request_id"] == "json-push")
        .expect("push line");
    assert_eq!(push["method"], "POST");
    assert_eq!(push["path"], "/v2/logs/json/blobs/uploads/");
    assert_eq!(push["endpoint"], "upload_start");
    assert_eq!(push["status"], 201);
    assert_eq!(push["bytes_in"], blob.len());
    assert_eq!(push["level"], "INFO");
    assert_eq!(push["user_agent"], "json-test/1.0");
    assert!(push["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(push["duration_ms"].as_f64().is_some());
    let pull = access
        .iter()
        .find(|l| l["request_id"] == "json-pull")
        .expect("pull line");
    assert_eq!(pull["bytes_out"], blob.len());
    assert_eq!(pull["path"], format!("/v2/logs/json/blobs/{digest}"));
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"),
        "debug lines are logged too"
    );
    for secret in [
        "PASSWORD-SECRET",
        "dXNlcjpQQVNTV09SRC1TRUNSRVQ",
        "QUERY-SECRET",
        "BEARER-SECRET",
    ] {
        assert!(!log.contains(secret), "{secret} logged: {log}");
    }
}
