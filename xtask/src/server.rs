//! Building and running the `oci-registry` binary for a task.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Boxed error for tasks.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `target/`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The `cargo` running this task (`CARGO`), else `cargo` from `PATH`.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Builds the release binary and returns its path.
pub fn build_release() -> Result<PathBuf, Error> {
    let status = cargo()
        .current_dir(workspace_root())
        .args(["build", "--release", "--quiet", "-p", "oci-registry-bin"])
        .status()?;
    if !status.success() {
        return Err("cargo build --release failed".into());
    }
    Ok(target_dir().join("release/oci-registry"))
}

/// A running registry process, killed on drop unless [`Server::keep`] is
/// called.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Time from spawning the process to its first `GET /v2/` 200.
    pub startup: Duration,
}

/// A port that was free a moment ago on the loopback interface.
pub fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Server {
    /// Starts `binary` on a free port with `storage` and waits until
    /// `GET /v2/` answers 200 (or 401, with access control), with the
    /// server's output (its log) going to `log` instead of this process's
    /// stderr, and with `own_group` in a process group of its own, so a
    /// Ctrl-C at the terminal does not reach it (for servers left running
    /// with [`Server::keep`]). `env` is added to the server's environment
    /// (`OCI_REGISTRY_CONFIG` names a configuration file).
    pub async fn start_logged(
        binary: &Path,
        storage: &str,
        env: &[(String, String)],
        log: Option<&Path>,
        own_group: bool,
    ) -> Result<Self, Error> {
        let port = free_port()?;
        let mut cmd = Command::new(binary);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--storage", storage, "--log-level", "warn"])
            .envs(env.iter().map(|(k, v)| (k, v)));
        Self::spawn(cmd, port, log, own_group).await
    }

    /// Spawns `cmd`, a registry that will listen on `127.0.0.1:port`, and
    /// waits until `GET /v2/` answers 200 (or 401, with access control);
    /// [`Server::startup`] is how long that took. Output goes to `log` (else stdout is dropped and stderr
    /// inherited); `own_group` as in [`Server::start_logged`].
    pub async fn spawn(
        mut cmd: Command,
        port: u16,
        log: Option<&Path>,
        own_group: bool,
    ) -> Result<Self, Error> {
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        if own_group {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        if let Some(log) = log {
            let file = std::fs::File::create(log)?;
            cmd.stdout(file.try_clone()?).stderr(file);
        }
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let child = cmd.spawn()?;
        let mut server = Self {
            child: Some(child),
            base,
            startup: Duration::ZERO,
        };
        let deadline = started + Duration::from_secs(30);
        loop {
            // 401: up, with access control (`/v2/` needs credentials).
            if let Ok(r) = client.get(format!("{}/v2/", server.base)).send().await
                && matches!(r.status().as_u16(), 200 | 401)
            {
                server.startup = started.elapsed();
                return Ok(server);
            }
            if let Some(child) = server.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(format!("the registry exited before answering /v2/ ({status})").into());
            }
            if Instant::now() > deadline {
                return Err("the registry did not answer /v2/ within 30 s".into());
            }
            // Short polls: startup time is one of the figures `bench` reports.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Leaves the server running after this value (and this process) is
    /// gone; returns its process id.
    pub fn keep(mut self) -> u32 {
        self.child.take().map_or(0, |c| c.id())
    }

    /// Stops the server (kill) and waits for it to exit.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`) of any process.
pub fn memory_kib(pid: u32, field: &str) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status").into())
}

/// CPU time (user + system) a process has used so far, from
/// `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration, Error> {
    stat_cpu_time(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// User and system time of a `/proc/<pid>/stat` (or `.../task/<tid>/stat`)
/// line.
pub fn stat_cpu_time(stat: &str) -> Result<Duration, Error> {
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks =
        |i: usize| -> Result<u64, Error> { Ok(fields.get(i).ok_or("short /proc stat")?.parse()?) };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_millis(total * 1000 / CLOCK_TICKS_PER_SEC))
}

/// `USER_HZ`, the unit of `/proc/<pid>/stat` times: 100 on every Linux
/// architecture Rust supports.
const CLOCK_TICKS_PER_SEC: u64 = 100;

/// Test support shared by the tasks' tests.
#[cfg(test)]
pub mod testing {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use super::{cargo, target_dir, workspace_root};

    /// The debug `oci-registry`, built once per test run (a no-op when up
    /// to date); an existing binary is used if the build fails.
    pub fn debug_registry() -> PathBuf {
        static BIN: OnceLock<PathBuf> = OnceLock::new();
        BIN.get_or_init(|| {
            let built = cargo()
                .current_dir(workspace_root())
                .args(["build", "--quiet", "-p", "oci-registry-bin"])
                .status()
                .is_ok_and(|s| s.success());
            let bin = target_dir().join("debug/oci-registry");
            assert!(
                bin.is_file(),
                "no {} (build ok: {built}); run `cargo build -p oci-registry-bin`",
                bin.display()
            );
            bin
        })
        .clone()
    }
}
