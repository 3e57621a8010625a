//! Finding and running the official conformance suite.
//!
//! Order: `--suite-bin PATH`, then `OCI_CONFORMANCE_BIN` (a prebuilt
//! `conformance.test`), then a container runtime on `PATH` (`podman`, then
//! `docker`) running [`IMAGE`]; otherwise the suite is missing.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::server::Error;

/// The pinned version of opencontainers/distribution-spec.
pub const VERSION: &str = "v1.1.1";
/// The official conformance image of [`VERSION`].
pub const IMAGE: &str = "ghcr.io/opencontainers/distribution-spec/conformance:v1.1.1";
/// Environment variable naming a prebuilt suite binary.
pub const BIN_ENV: &str = "OCI_CONFORMANCE_BIN";
/// Container runtimes tried, in order.
pub const RUNTIMES: [&str; 2] = ["podman", "docker"];
/// Where the report directory is mounted in the container.
const CONTAINER_REPORT_DIR: &str = "/report";

/// Where the suite binary came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--suite-bin`.
    Flag,
    /// `OCI_CONFORMANCE_BIN`.
    Env,
}

/// What [`discover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A prebuilt `conformance.test`.
    Binary(PathBuf, Origin),
    /// Container runtimes on `PATH`, in the order to try them.
    Runtimes(Vec<PathBuf>),
    /// Nothing: no binary given, no runtime on `PATH`.
    Missing,
}

/// Decides where the suite comes from: `flag`, then `env_bin` (the value of
/// `OCI_CONFORMANCE_BIN`; empty counts as unset), then the runtimes found
/// on `path` (a `PATH` value).
pub fn discover(flag: Option<PathBuf>, env_bin: Option<OsString>, path: Option<&OsStr>) -> Found {
    if let Some(p) = flag {
        return Found::Binary(p, Origin::Flag);
    }
    if let Some(p) = env_bin.filter(|p| !p.is_empty()) {
        return Found::Binary(PathBuf::from(p), Origin::Env);
    }
    let runtimes: Vec<PathBuf> = RUNTIMES
        .iter()
        .filter_map(|name| find_on_path(name, path))
        .collect();
    if runtimes.is_empty() {
        Found::Missing
    } else {
        Found::Runtimes(runtimes)
    }
}

/// The first executable file `name` in the directories of `path`.
pub fn find_on_path(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// A regular file with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Variables the suite reads that describe pre-existing content; a fresh
/// registry has none, so they are removed from the suite's environment.
const PRESET_CONTENT_VARS: [&str; 5] = [
    "OCI_BLOB_DIGEST",
    "OCI_MANIFEST_DIGEST",
    "OCI_TAG_NAME",
    "OCI_TAG_LIST",
    "OCI_SKIP_EMPTY_LAYER_PUSH_TEST",
];

/// Passed through from the caller's environment when set (auth, debug).
const PASS_THROUGH_VARS: [&str; 4] = [
    "OCI_USERNAME",
    "OCI_PASSWORD",
    "OCI_AUTH_SCOPE",
    "OCI_DEBUG",
];

/// The suite's environment for a registry at `root_url` writing its report
/// to `report_dir` (as the suite sees it). `host` reads the caller's
/// environment.
pub fn suite_env(
    root_url: &str,
    report_dir: &str,
    host: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("OCI_ROOT_URL", root_url),
        ("OCI_NAMESPACE", "conformance/repo"),
        ("OCI_CROSSMOUNT_NAMESPACE", "conformance/other"),
        ("OCI_TEST_PULL", "1"),
        ("OCI_TEST_PUSH", "1"),
        ("OCI_TEST_CONTENT_DISCOVERY", "1"),
        ("OCI_TEST_CONTENT_MANAGEMENT", "1"),
        // The registry mounts a blob it has without `from` (201).
        ("OCI_AUTOMATIC_CROSSMOUNT", "1"),
        ("OCI_DELETE_MANIFEST_BEFORE_BLOBS", "1"),
        ("OCI_HIDE_SKIPPED_WORKFLOWS", "0"),
        ("OCI_REPORT_DIR", report_dir),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // The delete order may be overridden, as the suite allows.
    if let Some(v) = host("OCI_DELETE_MANIFEST_BEFORE_BLOBS") {
        for (k, old) in &mut env {
            if k == "OCI_DELETE_MANIFEST_BEFORE_BLOBS" {
                *old = v.clone();
            }
        }
    }
    for k in PASS_THROUGH_VARS {
        if let Some(v) = host(k) {
            env.push((k.to_owned(), v));
        }
    }
    env
}

/// The command running the suite binary `bin` with `env`.
pub fn binary_command(bin: &Path, env: &[(String, String)], cwd: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("-test.v").current_dir(cwd);
    for k in PRESET_CONTENT_VARS.iter().chain(&PASS_THROUGH_VARS) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// The suite's report directory inside the container.
pub fn container_report_dir() -> &'static str {
    CONTAINER_REPORT_DIR
}

/// The command running [`IMAGE`] with `runtime`: host network (the
/// registry listens on loopback), `report_dir` mounted at `/report`, and
/// every variable of `env` passed by name (values stay out of the command
/// line).
pub fn container_command(runtime: &Path, env: &[(String, String)], report_dir: &Path) -> Command {
    let mut cmd = Command::new(runtime);
    cmd.args(["run", "--rm", "--network", "host", "--pull", "never"]);
    cmd.arg("--volume")
        .arg(format!("{}:{CONTAINER_REPORT_DIR}:Z", report_dir.display()));
    if runtime.file_name() == Some(OsStr::new("docker")) {
        // Rootful docker would write the report as root.
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(report_dir) {
            cmd.arg("--user").arg(format!("{}:{}", m.uid(), m.gid()));
        }
    }
    for (k, _) in env {
        cmd.arg("--env").arg(k);
    }
    cmd.arg(IMAGE);
    for k in PRESET_CONTENT_VARS.iter().chain(&PASS_THROUGH_VARS) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Makes sure `runtime` has [`IMAGE`], pulling it if needed. The error is
/// one line saying why not.
pub async fn ensure_image(runtime: &Path, scratch: &Path) -> Result<(), String> {
    let mut inspect = Command::new(runtime);
    inspect.args(["image", "inspect", IMAGE]);
    let log = scratch.join("image-inspect.txt");
    if let Ok(Some(status)) = run_logged(inspect, &log, Duration::from_secs(60)).await
        && status.success()
    {
        return Ok(());
    }
    let mut pull = Command::new(runtime);
    pull.args(["pull", IMAGE]);
    let log = scratch.join("image-pull.txt");
    let name = runtime.display();
    match run_logged(pull, &log, Duration::from_secs(300)).await {
        Ok(Some(status)) if status.success() => Ok(()),
        Ok(Some(status)) => {
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            let why = out
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no output");
            Err(format!("`{name} pull {IMAGE}` failed ({status}): {why}"))
        }
        Ok(None) => Err(format!("`{name} pull {IMAGE}` timed out")),
        Err(e) => Err(format!("cannot run `{name}`: {e}")),
    }
}

/// Runs `cmd` with stdout and stderr appended to `log`, killing it after
/// `timeout` (then `Ok(None)`). Polls, so it never blocks the runtime.
pub async fn run_logged(
    mut cmd: Command,
    log: &Path,
    timeout: Duration,
) -> Result<Option<ExitStatus>, Error> {
    let out = File::create(log)?;
    let err = out.try_clone()?;
    let mut child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn fake_exe(dir: &Path, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn discovery_order_flag_env_runtime_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let docker = fake_exe(&a, "docker");
        let podman = fake_exe(&b, "podman");
        // Not executable: ignored.
        std::fs::write(a.join("podman"), "").unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();

        let flag = PathBuf::from("/x/conformance.test");
        let env = OsString::from("/y/conformance.test");
        assert_eq!(
            discover(Some(flag.clone()), Some(env.clone()), Some(&path)),
            Found::Binary(flag, Origin::Flag)
        );
        assert_eq!(
            discover(None, Some(env.clone()), Some(&path)),
            Found::Binary(env.into(), Origin::Env)
        );
        assert_eq!(
            discover(None, Some(OsString::new()), Some(&path)),
            Found::Runtimes(vec![podman.clone(), docker])
        );
        let only_b = b.clone().into_os_string();
        assert_eq!(
            discover(None, None, Some(&only_b)),
            Found::Runtimes(vec![podman])
        );
        let empty = tmp.path().join("empty").into_os_string();
        assert_eq!(discover(None, None, Some(&empty)), Found::Missing);
        assert_eq!(discover(None, None, None), Found::Missing);
    }

    #[test]
    fn env_sets_every_variable_and_passes_auth_through() {
        let host: HashMap<&str, &str> = [
            ("OCI_USERNAME", "u"),
            ("OCI_PASSWORD", "p"),
            ("OCI_DELETE_MANIFEST_BEFORE_BLOBS", "0"),
        ]
        .into();
        let env = suite_env("http://127.0.0.1:1", "/r", |k| {
            host.get(k).map(|v| v.to_string())
        });
        let env: HashMap<_, _> = env.into_iter().collect();
        for k in [
            "OCI_ROOT_URL",
            "OCI_NAMESPACE",
            "OCI_CROSSMOUNT_NAMESPACE",
            "OCI_TEST_PULL",
            "OCI_TEST_PUSH",
            "OCI_TEST_CONTENT_DISCOVERY",
            "OCI_TEST_CONTENT_MANAGEMENT",
            "OCI_AUTOMATIC_CROSSMOUNT",
            "OCI_DELETE_MANIFEST_BEFORE_BLOBS",
            "OCI_REPORT_DIR",
            "OCI_USERNAME",
            "OCI_PASSWORD",
        ] {
            assert!(env.contains_key(k), "{k} missing");
        }
        assert_eq!(env["OCI_ROOT_URL"], "http://127.0.0.1:1");
        assert_eq!(env["OCI_REPORT_DIR"], "/r");
        assert_eq!(env["OCI_DELETE_MANIFEST_BEFORE_BLOBS"], "0");
        assert_eq!(env["OCI_PASSWORD"], "p");

        let bare = suite_env("u", "r", |_| None);
        assert!(!bare.iter().any(|(k, _)| k == "OCI_USERNAME"));
    }

    #[test]
    fn container_command_mounts_report_and_hides_values() {
        let tmp = tempfile::tempdir().unwrap();
        let env = vec![("OCI_PASSWORD".to_owned(), "secret".to_owned())];
        let cmd = container_command(Path::new("/usr/bin/podman"), &env, tmp.path());
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.windows(2).any(|w| w == ["--network", "host"]));
        assert!(args.iter().any(|a| a.ends_with(":/report:Z")));
        assert!(args.windows(2).any(|w| w == ["--env", "OCI_PASSWORD"]));
        assert!(!args.iter().any(|a| a.contains("secret")));
        assert_eq!(args.last().map(String::as_str), Some(IMAGE));
    }

    #[tokio::test]
    async fn failing_pull_is_one_clear_line() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = tmp.path().join("podman");
        std::fs::write(
            &rt,
            "#!/bin/sh\necho 'Trying to pull...' >&2\necho 'Error: dial tcp: lookup ghcr.io: no such host' >&2\nexit 125\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_image(&rt, tmp.path()).await.unwrap_err();
        assert!(
            err.contains("pull ghcr.io/opencontainers/distribution-spec/conformance:v1.1.1"),
            "{err}"
        );
        assert!(
            err.ends_with("Error: dial tcp: lookup ghcr.io: no such host"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }
}
