//! The registries under test: ours, started by the bench, and a peer, either
//! started by the bench (Debian's `docker-registry`) or given by URL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use oci_types::Digest;

use crate::server::{self, Error, Server};

/// How to (re)start a registry the bench manages.
struct Managed {
    server: Option<Server>,
    command: Box<dyn Fn() -> Command + Send + Sync>,
    port: u16,
    log: PathBuf,
}

/// Where a registry keeps blob bytes, for the bench to free them between
/// rounds: deleting a blob through the API only unlinks it (the bytes wait
/// for garbage collection), and gigabytes of unreclaimed pushes slow the
/// machine's memory and page cache down for every later figure.
pub enum BlobFiles {
    /// `<root>/blobs/<alg>/<hex[0..2]>/<hex>/data`: our filesystem layout,
    /// and distribution's under `docker/registry/v2`.
    Dir(PathBuf),
    /// The same keys under `prefix` in the bench's S3 store.
    S3(Arc<super::store::S3Store>, String),
}

impl BlobFiles {
    fn remove(&self, digest: &Digest) {
        let (alg, hex) = (digest.algorithm().as_str(), digest.hex());
        let key = format!("blobs/{alg}/{}/{hex}/data", &hex[..2]);
        match self {
            Self::Dir(root) => {
                let _ = std::fs::remove_file(root.join(key));
            }
            Self::S3(store, prefix) => store.remove(&format!("{prefix}/{key}")),
        }
    }
}

/// One registry under test.
pub struct Target {
    /// `ours` or `peer`.
    pub label: &'static str,
    /// `http://host:port`.
    pub base: String,
    pid: Option<u32>,
    managed: Option<Managed>,
    blob_files: Option<BlobFiles>,
    /// The `Authorization` header every request of the bench carries, for
    /// a registry with access control.
    pub authorization: Option<String>,
}

impl Target {
    /// A registry running elsewhere; `pid` (if on this machine) lets the
    /// bench read its memory and CPU time.
    pub fn remote(label: &'static str, base: String, pid: Option<u32>) -> Self {
        Self {
            label,
            base: base.trim_end_matches('/').to_owned(),
            pid,
            managed: None,
            blob_files: None,
            authorization: None,
        }
    }

    /// Starts a registry with `command` (which must make it listen on
    /// `127.0.0.1:port`), logging to `log`.
    pub async fn start(
        label: &'static str,
        port: u16,
        log: PathBuf,
        command: impl Fn() -> Command + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let server = Server::spawn(command(), port, Some(&log), false).await?;
        Ok(Self {
            label,
            base: server.base.clone(),
            pid: Some(server.pid()),
            managed: Some(Managed {
                server: Some(server),
                command: Box::new(command),
                port,
                log,
            }),
            blob_files: None,
            authorization: None,
        })
    }

    /// The same registry under another label (its figures go in that
    /// column), not managed: for workloads that compare two ways of using
    /// one registry.
    pub fn view(&self, label: &'static str) -> Self {
        Self {
            authorization: self.authorization.clone(),
            ..Self::remote(label, self.base.clone(), self.pid)
        }
    }

    /// `request` with this registry's `Authorization` header, if it has
    /// one.
    pub fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        }
    }

    /// Tells the bench where this registry keeps blob bytes.
    pub fn with_blob_files(mut self, files: BlobFiles) -> Self {
        self.blob_files = Some(files);
        self
    }

    /// Frees the bytes of a blob already deleted through the API, when the
    /// bench knows where they are.
    pub fn reclaim(&self, digest: &Digest) {
        if let Some(files) = &self.blob_files {
            files.remove(digest);
        }
    }

    /// Time from spawn to the first `/v2/` 200 of the last (re)start, for a
    /// registry the bench started.
    pub fn startup(&self) -> Option<Duration> {
        self.managed
            .as_ref()
            .and_then(|m| m.server.as_ref())
            .map(|s| s.startup)
    }

    /// Stops and starts again a registry the bench started (same storage,
    /// same port); returns whether it did.
    pub async fn restart(&mut self) -> Result<bool, Error> {
        let Some(managed) = self.managed.as_mut() else {
            return Ok(false);
        };
        if let Some(server) = managed.server.take() {
            server.stop();
        }
        let server = Server::spawn((managed.command)(), managed.port, Some(&managed.log), false)
            .await
            .map_err(|e| {
                format!(
                    "{} restart: {e} (log: {})",
                    self.label,
                    managed.log.display()
                )
            })?;
        self.pid = Some(server.pid());
        managed.server = Some(server);
        Ok(true)
    }

    /// A `/proc/<pid>/status` memory field in KiB, when the pid is known.
    pub fn memory_kib(&self, field: &str) -> Option<u64> {
        server::memory_kib(self.pid?, field).ok()
    }

    /// CPU time used so far, when the pid is known.
    pub fn cpu_time(&self) -> Option<Duration> {
        server::cpu_time(self.pid?).ok()
    }
}

/// What ours runs with beyond the API.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    /// The access log at `info`, into the target's log file.
    pub access_log: bool,
    /// The metrics listener.
    pub metrics: bool,
    /// A configuration file (`--config`): access control.
    pub config: Option<PathBuf>,
}

/// The command that runs our release binary on `storage`, with `telemetry`.
pub fn ours_command(
    binary: PathBuf,
    storage: String,
    env: Vec<(String, String)>,
    port: u16,
    telemetry: Telemetry,
) -> impl Fn() -> Command + Send + Sync + 'static {
    move || {
        let mut cmd = Command::new(&binary);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--storage", &storage])
            .envs(env.iter().map(|(k, v)| (k, v)));
        let level = if telemetry.access_log { "info" } else { "warn" };
        cmd.args(["--log-level", level]);
        if telemetry.metrics {
            cmd.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        if let Some(config) = &telemetry.config {
            cmd.arg("--config").arg(config);
        }
        cmd
    }
}

/// Where distribution's filesystem driver keeps blob bytes, for a peer
/// started by [`distribution_command`] in `dir`.
pub fn distribution_blobs(dir: &Path) -> PathBuf {
    dir.join("storage/docker/registry/v2")
}

/// Writes a configuration for CNCF distribution (Debian's `docker-registry`)
/// listening on `127.0.0.1:port`, deletes enabled and no auth (as ours
/// runs), with `storage` (a `storage:` YAML section) or else filesystem
/// storage under `dir`, and returns the command that serves it.
pub fn distribution_command(
    binary: PathBuf,
    dir: &Path,
    port: u16,
    storage: Option<String>,
) -> Result<impl Fn() -> Command + Send + Sync + 'static, Error> {
    let root = dir.join("storage");
    std::fs::create_dir_all(&root)?;
    let config = dir.join("config.yml");
    let storage = storage.unwrap_or_else(|| filesystem_storage(&root));
    std::fs::write(&config, distribution_config(&storage, port))?;
    Ok(move || {
        let mut cmd = Command::new(&binary);
        // The AWS SDK of distribution 2.8 refuses to start with a custom CA
        // bundle (`LoadCustomCABundleError`); the bench's stores are plain
        // HTTP on loopback.
        cmd.arg("serve").arg(&config).env_remove("AWS_CA_BUNDLE");
        cmd
    })
}

/// distribution's `storage:` section for its filesystem driver in `root`.
pub fn filesystem_storage(root: &Path) -> String {
    format!(
        "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n",
        root.display()
    )
}

/// The distribution configuration `distribution_command` writes.
pub fn distribution_config(storage: &str, port: u16) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: error\n  accesslog:\n    disabled: true\n\
         {storage}\
         http:\n  addr: 127.0.0.1:{port}\n"
    )
}

/// `<binary> --version` (e.g. oha's or docker-registry's), or the binary's
/// path if it will not say.
pub fn version_of(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| binary.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_config_names_root_port_and_delete() {
        let c = distribution_config(&filesystem_storage(Path::new("/d/s")), 5123);
        assert!(c.contains("rootdirectory: /d/s"));
        assert!(c.contains("addr: 127.0.0.1:5123"));
        assert!(c.contains("delete:\n    enabled: true"));
    }

    #[test]
    fn remote_targets_trim_the_slash_and_know_no_startup() {
        let t = Target::remote("peer", "http://h:5000/".into(), None);
        assert_eq!(t.base, "http://h:5000");
        assert_eq!(t.startup(), None);
        assert_eq!(t.memory_kib("VmHWM"), None);
    }
}
