//! `cargo xtask conformance`: the official OCI distribution-spec conformance
//! suite (v1.1.1) against the release binary, once per storage backend.
//!
//! For each backend it starts `oci-registry` on a free loopback port with
//! fresh storage (`memory://`; a temp directory; a prefix of the in-process
//! S3 server the tests use), runs the suite with every variable it reads,
//! reads the junit report the suite writes, stops the server and prints one
//! line per backend and workflow. Without a suite (see [`suite`] for the
//! search order) it runs the project's own e2e suite instead ([`own`]) and
//! says so.
//!
//! With `--auth basic|token` the registry runs with access control (see
//! [`auth`]) and the suite logs in; report directories and summary lines
//! are then named `<backend>-<mode>`. Without the official suite nothing
//! stands in for it: the own suite has no auth mode.
//!
//! Exit codes: [`EXIT_PASSED`], [`EXIT_FAILED`], [`EXIT_SUITE_MISSING`].

mod auth;
pub mod junit;
mod own;
mod suite;

use std::path::{Path, PathBuf};
use std::time::Duration;

use auth::{AuthMode, AuthSetup};
use junit::{Case, Status};
use suite::{Found, Origin};

use crate::server::{Error, Server, build_release, target_dir};

/// Every test that ran passed.
pub const EXIT_PASSED: u8 = 0;
/// A test failed, or the run could not be completed (build, server, suite
/// crash, no report).
pub const EXIT_FAILED: u8 = 1;
/// The official suite was not found or could not be run, the project's own
/// suite ran instead and passed, and `--allow-missing-suite` was not given.
pub const EXIT_SUITE_MISSING: u8 = 2;

/// How long the suite may take against one backend.
const SUITE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Options of `conformance`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Backends to test (repeat or comma-separate). Default: all three.
    #[arg(long, value_enum, value_delimiter = ',')]
    backend: Vec<Backend>,
    /// Leave each server running and its storage in place for inspection,
    /// and print where they are.
    #[arg(long)]
    keep: bool,
    /// Where reports go: `<DIR>/<backend>/junit.xml`, `report.html`,
    /// `suite-output.txt`, `registry.log`. Default: `target/conformance`.
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// A prebuilt `conformance.test` of distribution-spec v1.1.1 (else
    /// `OCI_CONFORMANCE_BIN`, else podman or docker with the official image).
    #[arg(long, value_name = "PATH")]
    suite_bin: Option<PathBuf>,
    /// When the official suite is missing, exit 0 if the project's own suite
    /// passes (instead of 2).
    #[arg(long)]
    allow_missing_suite: bool,
    /// Serve with access control in this mode (an htpasswd account
    /// `conformance` with a random password, admin of everything) and run
    /// the suite with `OCI_USERNAME`/`OCI_PASSWORD` set to it.
    #[arg(long, value_enum, value_name = "MODE")]
    auth: Option<AuthMode>,
}

/// A storage backend of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// `memory://`.
    Memory,
    /// A fresh temporary directory.
    Filesystem,
    /// A prefix of an in-process S3-compatible server (`oci-test-s3`).
    S3,
}

impl Backend {
    /// All backends, in the order they run.
    pub const ALL: [Backend; 3] = [Backend::Memory, Backend::Filesystem, Backend::S3];

    /// Its name in summaries, report directories and e2e test names.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Filesystem => "filesystem",
            Backend::S3 => "s3",
        }
    }

    /// The backend an e2e test name ends with (`chunked_upload::s3`).
    pub fn from_test_suffix(suffix: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == suffix)
    }
}

/// How the official suite is run.
#[derive(Debug, Clone)]
enum Runner {
    /// A `conformance.test` binary.
    Binary(PathBuf),
    /// The official image with this container runtime.
    Container(PathBuf),
}

/// What happened on one backend.
#[derive(Debug, Default)]
struct BackendRun {
    cases: Vec<Case>,
    /// Why the run is not trustworthy, when it is not (counts as failed).
    errors: Vec<String>,
}

impl BackendRun {
    fn failed(&self) -> bool {
        !self.errors.is_empty() || self.cases.iter().any(|c| c.status == Status::Failed)
    }
}

/// The exit code: failures first (the registry is known not to conform, or
/// the run is not trustworthy), then a missing official suite unless
/// allowed.
pub fn exit_code(any_failure: bool, official_suite_ran: bool, allow_missing_suite: bool) -> u8 {
    if any_failure {
        EXIT_FAILED
    } else if !official_suite_ran && !allow_missing_suite {
        EXIT_SUITE_MISSING
    } else {
        EXIT_PASSED
    }
}

/// The checks that make a run trustworthy: a report with at least one
/// passed test, and a suite exit status that agrees with it.
fn check_run(cases: &[Case], exit_ok: bool) -> Vec<String> {
    let mut errors = Vec::new();
    if !cases.iter().any(|c| c.status == Status::Passed) {
        errors.push("no test passed: the suite did not run against the registry".to_owned());
    }
    if !exit_ok && !cases.iter().any(|c| c.status == Status::Failed) {
        errors.push("the suite exited with an error but its report shows no failed test".into());
    }
    errors
}

/// Runs the task; returns the process exit code.
pub async fn run(args: Args) -> Result<u8, Error> {
    let backends: Vec<Backend> = if args.backend.is_empty() {
        Backend::ALL.to_vec()
    } else {
        Backend::ALL
            .into_iter()
            .filter(|b| args.backend.contains(b))
            .collect()
    };
    let report_root = args
        .report_dir
        .clone()
        .unwrap_or_else(|| target_dir().join("conformance"));
    std::fs::create_dir_all(&report_root)?;
    let report_root = report_root.canonicalize()?;

    let found = suite::discover(
        args.suite_bin.clone(),
        std::env::var_os(suite::BIN_ENV),
        std::env::var_os("PATH").as_deref(),
    );
    let mut runtime_failures = Vec::new();
    let runner = match found {
        Found::Binary(path, origin) => {
            let from = match origin {
                Origin::Flag => "--suite-bin",
                Origin::Env => suite::BIN_ENV,
            };
            if !suite::is_executable(&path) {
                eprintln!(
                    "conformance: the suite binary {} (from {from}) is not an executable file",
                    path.display()
                );
                return Ok(EXIT_SUITE_MISSING);
            }
            let path = path.canonicalize()?;
            println!(
                "conformance: official suite {}: {} (from {from})",
                suite::VERSION,
                path.display()
            );
            Some(Runner::Binary(path))
        }
        Found::Runtimes(runtimes) => {
            let mut chosen = None;
            for rt in runtimes {
                match suite::ensure_image(&rt, &report_root).await {
                    Ok(()) => {
                        chosen = Some(rt);
                        break;
                    }
                    Err(why) => {
                        println!("conformance: cannot run the official image: {why}");
                        runtime_failures.push(rt.display().to_string());
                    }
                }
            }
            chosen.map(|rt| {
                println!(
                    "conformance: official suite {}: {} with {}",
                    suite::VERSION,
                    suite::IMAGE,
                    rt.display()
                );
                Runner::Container(rt)
            })
        }
        Found::Missing => None,
    };

    let mut kept_s3 = Vec::new();
    let (results, official) = match runner {
        Some(runner) => {
            let binary = build_release()?;
            let mut results = Vec::new();
            for &backend in &backends {
                let (run, s3) = run_backend(
                    &binary,
                    &runner,
                    backend,
                    args.auth,
                    &report_root,
                    args.keep,
                )
                .await;
                kept_s3.extend(s3);
                results.push((backend, run));
            }
            (results, true)
        }
        None if args.auth.is_some() => {
            println!(
                "conformance: OFFICIAL SUITE MISSING; --auth needs it (the project's own suite \
                 has no auth mode; its access-control tests are `cargo test -p oci-e2e --test \
                 auth_tools`). See README \"Conformance\" for the suite."
            );
            return Ok(EXIT_SUITE_MISSING);
        }
        None => {
            let why = if runtime_failures.is_empty() {
                format!(
                    "no --suite-bin, no {}, and neither podman nor docker on PATH",
                    suite::BIN_ENV
                )
            } else {
                format!(
                    "{} could not provide {}",
                    runtime_failures.join(" and "),
                    suite::IMAGE
                )
            };
            println!(
                "conformance: OFFICIAL SUITE MISSING ({why}); running the project's own \
                 spec-derived e2e suite (oci-e2e) instead, which is not the official \
                 conformance suite"
            );
            if args.keep {
                println!(
                    "conformance: --keep has nothing to keep: the own suite starts its own servers"
                );
            }
            let results = match own::run(&backends, &report_root).await {
                Ok(per_backend) => backends
                    .iter()
                    .copied()
                    .zip(per_backend)
                    .map(|(b, cases)| {
                        let errors = if cases.iter().any(|c| c.status == Status::Passed) {
                            Vec::new()
                        } else {
                            vec!["no test of this backend passed".to_owned()]
                        };
                        (b, BackendRun { cases, errors })
                    })
                    .collect(),
                Err(e) => backends
                    .iter()
                    .map(|&b| {
                        let errors = vec![format!("the own suite did not run: {e}")];
                        (
                            b,
                            BackendRun {
                                cases: Vec::new(),
                                errors,
                            },
                        )
                    })
                    .collect(),
            };
            (results, false)
        }
    };

    println!();
    if official {
        println!(
            "Official OCI distribution-spec {} conformance suite (reports in {}):",
            suite::VERSION,
            report_root.display()
        );
    } else {
        println!(
            "Project's own e2e suite (oci-e2e), NOT the official conformance suite \
             (output in {}):",
            report_root.display()
        );
    }
    let any_failure = results.iter().any(|(_, r)| r.failed());
    let results: Vec<(String, BackendRun)> = results
        .into_iter()
        .map(|(b, r)| (label(b, args.auth), r))
        .collect();
    print!("{}", summary(&results));
    let code = exit_code(any_failure, official, args.allow_missing_suite);
    match code {
        EXIT_PASSED if official => println!("conformance: PASSED"),
        EXIT_PASSED => println!(
            "conformance: own suite passed; the official suite did not run \
             (accepted by --allow-missing-suite)"
        ),
        EXIT_FAILED => println!("conformance: FAILED"),
        _ => println!(
            "conformance: the official suite did not run, so conformance is not proven \
             (exit {EXIT_SUITE_MISSING}; see README \"Conformance\" for the suite, or pass \
             --allow-missing-suite)"
        ),
    }

    if !kept_s3.is_empty() {
        println!(
            "conformance: --keep: the S3 server lives in this process; press Ctrl-C to stop it \
             (and the registry on it)"
        );
        tokio::signal::ctrl_c().await?;
        drop(kept_s3);
    }
    Ok(code)
}

/// The name of a run in summaries and report directories: the backend's,
/// with `-<mode>` under `--auth` (`memory-token`).
fn label(backend: Backend, auth: Option<AuthMode>) -> String {
    match auth {
        None => backend.name().to_owned(),
        Some(mode) => format!("{}-{}", backend.name(), mode.name()),
    }
}

/// The summary: one line per run (see [`label`]) and workflow, then each
/// failed test with its message and each error.
fn summary(results: &[(String, BackendRun)]) -> String {
    let mut out = String::new();
    for (name, run) in results {
        for (workflow, counts) in junit::counts(&run.cases) {
            out += &junit::summary_line(name, workflow, counts);
            out.push('\n');
        }
    }
    for (name, run) in results {
        for case in run.cases.iter().filter(|c| c.status == Status::Failed) {
            out += &format!("FAILED {name} [{}]: {}\n", case.workflow, case.name);
            for line in case.message.lines().filter(|l| !l.trim().is_empty()) {
                out += &format!("    {line}\n");
            }
        }
        for e in &run.errors {
            out += &format!("ERROR {name}: {e}\n");
        }
    }
    out
}

/// A kept S3 server and the registry on it: alive until Ctrl-C.
type KeptS3 = (oci_test_s3::S3Server, Server);

/// Runs the suite against a fresh server on `backend`, with access
/// control in `auth` mode if given. Never fails: what goes wrong is
/// recorded in the result.
async fn run_backend(
    binary: &Path,
    runner: &Runner,
    backend: Backend,
    auth: Option<AuthMode>,
    report_root: &Path,
    keep: bool,
) -> (BackendRun, Option<KeptS3>) {
    let name = label(backend, auth);
    let mut run = BackendRun::default();
    match try_run_backend(binary, runner, backend, auth, report_root, keep, &mut run).await {
        Ok(kept) => (run, kept),
        Err(e) => {
            run.errors.push(e.to_string());
            println!("{name}: error: {e}");
            (run, None)
        }
    }
}

async fn try_run_backend(
    binary: &Path,
    runner: &Runner,
    backend: Backend,
    auth: Option<AuthMode>,
    report_root: &Path,
    keep: bool,
    run: &mut BackendRun,
) -> Result<Option<KeptS3>, Error> {
    let name = &label(backend, auth);
    let dir = report_root.join(name);
    std::fs::create_dir_all(&dir)?;
    // Never read a report of an earlier run.
    for f in [
        "junit.xml",
        "report.html",
        "suite-output.txt",
        "registry.log",
    ] {
        match std::fs::remove_file(dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }

    let s3 = match backend {
        Backend::S3 => Some(oci_test_s3::S3Server::start().await?),
        _ => None,
    };
    let tmp = match backend {
        Backend::Filesystem => Some(
            tempfile::Builder::new()
                .prefix("oci-conformance-")
                .tempdir()?,
        ),
        _ => None,
    };
    let (storage, mut env) = match (&s3, &tmp) {
        (Some(s3), _) => (s3.url("conformance"), s3.env()),
        (None, Some(tmp)) => (tmp.path().display().to_string(), Vec::new()),
        (None, None) => ("memory://".to_owned(), Vec::new()),
    };
    let auth = auth.map(AuthSetup::create).transpose()?;
    if let Some(auth) = &auth {
        env.push(auth.registry_env());
    }
    let log = dir.join("registry.log");
    let own_group = keep && s3.is_none();
    let server = Server::start_logged(binary, &storage, &env, Some(&log), own_group).await?;
    let access = auth.as_ref().map_or(String::new(), |a| {
        format!(", auth {} as user {}", a.mode.name(), auth::USER)
    });
    println!(
        "{name}: registry at {} (storage {storage}{access}); running the suite",
        server.base
    );

    // Under --auth the suite logs in as the generated account, whatever
    // the caller's environment holds.
    let credentials = auth.as_ref().map(AuthSetup::suite_credentials);
    let host = |k: &str| {
        credentials
            .iter()
            .flatten()
            .find(|(var, _)| *var == k)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(k).ok())
    };
    let cmd = match runner {
        Runner::Binary(bin) => {
            let env = suite::suite_env(&server.base, &dir.display().to_string(), host);
            suite::binary_command(bin, &env, &dir)
        }
        Runner::Container(rt) => {
            let env = suite::suite_env(&server.base, suite::container_report_dir(), host);
            suite::container_command(rt, &env, &dir)
        }
    };
    let output = dir.join("suite-output.txt");
    let status = suite::run_logged(cmd, &output, SUITE_TIMEOUT).await?;

    let kept = if keep {
        let pid = server.pid();
        let where_ = match (&s3, tmp) {
            (Some(s3), _) => format!(
                "{storage} on the S3 server at {} in this process (client settings: {})",
                s3.endpoint(),
                s3.env()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            // Not deleted: left for inspection.
            (None, Some(tmp)) => tmp.keep().display().to_string(),
            (None, None) => "memory:// (inside the server process)".to_owned(),
        };
        let files = auth.map_or(String::new(), |a| {
            let password = a.password.clone();
            let dir = a.keep();
            format!(
                ", auth files {} (user {}, password {password})",
                dir.display(),
                auth::USER
            )
        });
        let stop = if s3.is_some() {
            "stopped by Ctrl-C below".to_owned()
        } else {
            format!("stop it with `kill {pid}`")
        };
        println!(
            "{name}: --keep: registry {} pid {pid}, storage {where_}, log {}{files}; {stop}",
            server.base,
            log.display(),
        );
        match s3 {
            Some(s3) => Some((s3, server)),
            None => {
                server.keep();
                None
            }
        }
    } else {
        server.stop();
        drop(s3);
        drop(tmp);
        drop(auth);
        None
    };

    let Some(status) = status else {
        return Err(format!(
            "the suite did not finish within {} min; see {}",
            SUITE_TIMEOUT.as_secs() / 60,
            output.display()
        )
        .into());
    };
    let junit_path = dir.join("junit.xml");
    let xml = match std::fs::read_to_string(&junit_path) {
        Ok(xml) => xml,
        Err(e) => {
            return Err(format!(
                "the suite ({status}) wrote no {}: {e}; see {}",
                junit_path.display(),
                output.display()
            )
            .into());
        }
    };
    run.cases = junit::parse(&xml).map_err(|e| format!("{}: {e}", junit_path.display()))?;
    run.errors.extend(check_run(&run.cases, status.success()));
    let c = junit::counts(&run.cases);
    let total = |f: fn(&junit::Counts) -> usize| c.values().map(f).sum::<usize>();
    println!(
        "{name}: suite finished ({status}): {} passed, {} failed, {} skipped",
        total(|c| c.passed),
        total(|c| c.failed),
        total(|c| c.skipped)
    );
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use crate::server::testing::debug_registry;
    use std::os::unix::fs::PermissionsExt;

    use super::junit::Workflow;
    use super::*;

    #[test]
    fn exit_codes() {
        // (any failure, official suite ran, --allow-missing-suite)
        assert_eq!(exit_code(false, true, false), EXIT_PASSED);
        assert_eq!(exit_code(false, true, true), EXIT_PASSED);
        assert_eq!(exit_code(true, true, false), EXIT_FAILED);
        assert_eq!(exit_code(true, true, true), EXIT_FAILED);
        assert_eq!(exit_code(false, false, false), EXIT_SUITE_MISSING);
        assert_eq!(exit_code(false, false, true), EXIT_PASSED);
        assert_eq!(exit_code(true, false, false), EXIT_FAILED);
        assert_eq!(exit_code(true, false, true), EXIT_FAILED);
    }

    fn case(workflow: Workflow, status: Status) -> Case {
        Case {
            name: format!("OCI Distribution Conformance Tests {workflow} x"),
            workflow,
            status,
            message: "Expected\n    <int>: 202\nto equal\n    <int>: 416".into(),
        }
    }

    #[test]
    fn a_pass_must_be_seen() {
        assert!(
            check_run(&[], true)
                .iter()
                .any(|e| e.contains("no test passed"))
        );
        let skipped = [case(Workflow::Pull, Status::Skipped)];
        assert!(!check_run(&skipped, true).is_empty());
        let passed = [case(Workflow::Pull, Status::Passed)];
        assert!(check_run(&passed, true).is_empty());
        // Exit status and report disagree.
        assert!(!check_run(&passed, false).is_empty());
        let failed = [passed[0].clone(), case(Workflow::Push, Status::Failed)];
        assert!(check_run(&failed, false).is_empty());
    }

    #[test]
    fn summary_has_a_line_per_backend_and_workflow_and_the_failures() {
        let memory = BackendRun {
            cases: vec![
                case(Workflow::Pull, Status::Passed),
                case(Workflow::Push, Status::Failed),
            ],
            errors: vec![],
        };
        let s3 = BackendRun {
            cases: vec![],
            errors: vec!["the suite wrote no junit.xml".into()],
        };
        assert!(memory.failed() && s3.failed());
        let out = summary(&[("memory".into(), memory), ("s3".into(), s3)]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 8 + 1 + 4 + 1, "{out}");
        assert_eq!(
            lines[0],
            "memory      pull                1 passed  0 failed  0 skipped"
        );
        assert_eq!(
            lines[1],
            "memory      push                0 passed  1 failed  0 skipped"
        );
        assert!(lines[4].starts_with("s3          pull                0 passed"));
        assert_eq!(
            lines[8],
            "FAILED memory [push]: OCI Distribution Conformance Tests push x"
        );
        assert_eq!(lines[10], "        <int>: 202");
        assert_eq!(lines[13], "ERROR s3: the suite wrote no junit.xml");
    }

    #[test]
    fn auth_runs_are_labelled_with_the_mode() {
        assert_eq!(label(Backend::Memory, None), "memory");
        assert_eq!(
            label(Backend::Filesystem, Some(AuthMode::Token)),
            "filesystem-token"
        );
        let run = BackendRun {
            cases: vec![case(Workflow::Pull, Status::Passed)],
            errors: vec![],
        };
        let out = summary(&[(label(Backend::S3, Some(AuthMode::Basic)), run)]);
        assert!(out.starts_with("s3-basic    pull "), "{out}");
    }

    fn alive(pid: u32) -> bool {
        // A reaped child has no /proc entry; a zombie shows state Z.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| !r.starts_with('Z')))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_starts_answers_and_stops() {
        let bin = debug_registry();
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("registry.log");
        let data = tmp.path().join("data");
        let server =
            Server::start_logged(&bin, &data.display().to_string(), &[], Some(&log), false)
                .await
                .unwrap();
        let r = reqwest::get(format!("{}/v2/", server.base)).await.unwrap();
        assert_eq!(r.status(), 200);
        let pid = server.pid();
        assert!(alive(pid));
        server.stop();
        assert!(!alive(pid), "pid {pid} still running after stop");

        // Kept: survives the value, in its own process group.
        let server = Server::start_logged(&bin, "memory://", &[], Some(&log), true)
            .await
            .unwrap();
        let base = server.base.clone();
        let pid = server.keep();
        assert!(alive(pid));
        let r = reqwest::get(format!("{base}/v2/")).await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
        for _ in 0..100 {
            if !alive(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!alive(pid), "kept server {pid} did not stop on SIGTERM");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_that_cannot_start_is_an_error() {
        let bin = debug_registry();
        let tmp = tempfile::tempdir().unwrap();
        let err = Server::start_logged(
            &bin,
            "nosuch://x",
            &[],
            Some(&tmp.path().join("log")),
            false,
        )
        .await
        .err()
        .expect("a bad storage URL must fail");
        assert!(err.to_string().contains("exited"), "{err}");
    }

    fn fake_suite(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("conformance.test");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// A fake suite that checks the registry answers at `OCI_ROOT_URL`
    /// (with the real suite's tool, not needed: it records the URL and the
    /// test reads it) and writes a report with one failure.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backend_run_reads_the_report_and_stops_the_server() {
        let bin = debug_registry();
        let tmp = tempfile::tempdir().unwrap();
        let junit = r#"<testsuites><testsuite name="conformance tests">
<testcase name="OCI Distribution Conformance Tests Pull Pull blobs GET" status="passed"></testcase>
<testcase name="OCI Distribution Conformance Tests Push Manifest Upload PUT" status="failed"><failure message="Expected 201" type="failed">[FAILED] Expected 201</failure></testcase>
</testsuite></testsuites>"#;
        let suite = fake_suite(
            tmp.path(),
            &format!(
                "echo \"$OCI_ROOT_URL $OCI_NAMESPACE $OCI_TEST_CONTENT_MANAGEMENT\" > \"$OCI_REPORT_DIR/seen\"\n\
                 cat > \"$OCI_REPORT_DIR/junit.xml\" <<'EOF'\n{junit}\nEOF\nexit 1"
            ),
        );
        let reports = tmp.path().join("reports");
        let (run, kept) = run_backend(
            &bin,
            &Runner::Binary(suite),
            Backend::Filesystem,
            None,
            &reports,
            false,
        )
        .await;
        assert!(kept.is_none());
        assert!(run.errors.is_empty(), "{:?}", run.errors);
        assert!(run.failed());
        let counts = junit::counts(&run.cases);
        assert_eq!(counts[&Workflow::Pull].passed, 1);
        assert_eq!(counts[&Workflow::Push].failed, 1);
        let seen = std::fs::read_to_string(reports.join("filesystem/seen")).unwrap();
        let mut seen = seen.split_whitespace();
        let url = seen.next().unwrap().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert_eq!(seen.next(), Some("conformance/repo"));
        assert_eq!(seen.next(), Some("1"));
        // Stopped: the port no longer answers.
        assert!(reqwest::get(format!("{url}/v2/")).await.is_err());
    }

    /// Under `--auth basic` the registry refuses anonymous callers and
    /// admits the suite's `OCI_USERNAME`/`OCI_PASSWORD`, whatever the
    /// caller's environment says; the report goes to `<backend>-<mode>`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn auth_run_gives_the_suite_an_admin_account() {
        let bin = debug_registry();
        let tmp = tempfile::tempdir().unwrap();
        let junit = r#"<testsuites><testsuite name="conformance tests">
<testcase name="OCI Distribution Conformance Tests Pull a" status="passed"></testcase>
</testsuite></testsuites>"#;
        let suite = fake_suite(
            tmp.path(),
            &format!(
                "v2=\"$OCI_ROOT_URL/v2/\"\n\
                 anon=$(curl -s -o /dev/null -w '%{{http_code}}' \"$v2\")\n\
                 user=$(curl -s -o /dev/null -w '%{{http_code}}' -u \"$OCI_USERNAME:$OCI_PASSWORD\" \"$v2\")\n\
                 echo \"$anon $user $OCI_USERNAME\" > \"$OCI_REPORT_DIR/seen\"\n\
                 cat > \"$OCI_REPORT_DIR/junit.xml\" <<'EOF'\n{junit}\nEOF\nexit 0"
            ),
        );
        let reports = tmp.path().join("reports");
        let (run, _) = run_backend(
            &bin,
            &Runner::Binary(suite),
            Backend::Memory,
            Some(AuthMode::Basic),
            &reports,
            false,
        )
        .await;
        assert!(!run.failed(), "{:?}", run.errors);
        let seen = std::fs::read_to_string(reports.join("memory-basic/seen")).unwrap();
        assert_eq!(seen.trim(), "401 200 conformance");
        assert!(reports.join("memory-basic/registry.log").is_file());
    }

    /// A suite that exits 0 without writing a report is not a pass; a
    /// stale report from an earlier run is not read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_report_is_not_a_pass() {
        let bin = debug_registry();
        let tmp = tempfile::tempdir().unwrap();
        let reports = tmp.path().join("reports");
        std::fs::create_dir_all(reports.join("memory")).unwrap();
        std::fs::write(
            reports.join("memory/junit.xml"),
            r#"<testsuite><testcase name="OCI Distribution Conformance Tests Pull a" status="passed"/></testsuite>"#,
        )
        .unwrap();
        let suite = fake_suite(tmp.path(), "exit 0");
        let (run, _) = run_backend(
            &bin,
            &Runner::Binary(suite),
            Backend::Memory,
            None,
            &reports,
            false,
        )
        .await;
        assert!(run.failed());
        assert!(run.errors[0].contains("wrote no"), "{:?}", run.errors);
        assert_eq!(exit_code(run.failed(), true, false), EXIT_FAILED);
    }
}
