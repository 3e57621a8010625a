//! A storage emulator run as a process of its own for the backend tests:
//! where its executable is, whether tests should run on it, and starting
//! it once for every test process that needs it.
//!
//! An emulator is started in a session of its own (`setsid`), so it
//! outlives the test process that started it and a test runner waiting on
//! the tests' output does not wait on it; `.ci/run` starts and stops the
//! emulators itself.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One emulator: how to find it, how to start it and where it answers.
#[derive(Debug, Clone, Copy)]
pub struct Emulator {
    /// Its name in messages.
    pub name: &'static str,
    /// The environment variable that names its executable, if set.
    pub env: &'static str,
    /// Its executable's file name, looked up on `PATH`.
    pub program: &'static str,
    /// Where `.ci/run` installs it, relative to the workspace root.
    pub installed: &'static str,
    /// How to install it, for the message when it is missing.
    pub install: &'static str,
    /// The address it listens on.
    pub address: &'static str,
    /// Its command-line arguments.
    pub args: &'static [&'static str],
}

impl Emulator {
    /// The executable: `env`, else `program` on `PATH`, else the copy
    /// `.ci/run` installed.
    pub fn executable(&self) -> Option<PathBuf> {
        if let Some(given) = std::env::var_os(self.env) {
            return Some(PathBuf::from(given));
        }
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(self.program))
                .find(|p| p.is_file())
        });
        on_path.or_else(|| {
            let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(self.installed);
            installed.is_file().then_some(installed)
        })
    }

    /// Whether tests should run on it: it is installed or running, or
    /// `OCI_E2E_REQUIRE_TOOLS=1` demands it (then a missing emulator fails
    /// the tests instead of skipping them, as `.ci/run` wants).
    pub fn available(&self) -> bool {
        std::env::var("OCI_E2E_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
            || self.executable().is_some()
            || std::net::TcpStream::connect_timeout(
                &self.address.parse().expect("a socket address"),
                Duration::from_millis(200),
            )
            .is_ok()
    }

    /// Whether something answers on its address.
    pub async fn answers(&self) -> bool {
        tokio::net::TcpStream::connect(self.address).await.is_ok()
    }

    /// Starts it unless something answers on its address already, and
    /// waits (at most 30 s) until it does.
    pub async fn ensure_running(&self) -> Result<(), String> {
        static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        if self.answers().await {
            return Ok(());
        }
        let _one_at_a_time = STARTING.lock().await;
        if self.answers().await {
            return Ok(());
        }
        let exe = self.executable().ok_or_else(|| {
            format!(
                "{} is not installed: {}, or set {} to its executable",
                self.name, self.install, self.env
            )
        })?;
        Command::new("setsid")
            .arg(&exe)
            .args(self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.answers().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "{} did not answer on {}",
            exe.display(),
            self.address
        ))
    }
}
