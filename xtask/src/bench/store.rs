//! The S3 store of `--backend s3`: the in-process S3 server (`--s3
//! inprocess`, the default: s3s over memory, on threads of its own named
//! `s3-server` so that its CPU time is told apart from the bench's), or
//! moto (`--s3 moto`, and always with `--peer-distribution`: the Python
//! `moto_server` of `pip install 'moto[server]'`, started by the bench on a
//! free port), which distribution's S3 driver can use too.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::{self, Error, free_port};

use super::target::BlobFiles;

/// The bucket the bench creates in moto.
const MOTO_BUCKET: &str = "oci-bench";

/// Which S3 implementation `--backend s3` runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum S3Kind {
    /// The in-process S3 server (tests/s3-server).
    Inprocess,
    /// moto_server, started by the bench.
    Moto,
}

/// A running S3 store.
pub enum S3Store {
    /// The in-process server and the runtime whose threads serve it.
    InProcess {
        server: Arc<oci_test_s3::S3Server>,
        runtime: Option<tokio::runtime::Runtime>,
    },
    /// A moto_server child process.
    Moto { child: Child, endpoint: String },
}

/// Name of the threads of the in-process server.
const THREAD_NAME: &str = "s3-server";

impl S3Store {
    /// Starts the store of `kind`; moto logs to `dir/moto.log`.
    pub async fn start(kind: S3Kind, dir: &Path) -> Result<Self, Error> {
        match kind {
            S3Kind::Inprocess => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(THREAD_NAME)
                    .enable_all()
                    .build()?;
                let server = runtime.spawn(oci_test_s3::S3Server::start()).await??;
                Ok(Self::InProcess {
                    server: Arc::new(server),
                    runtime: Some(runtime),
                })
            }
            S3Kind::Moto => Self::moto(dir).await,
        }
    }

    async fn moto(dir: &Path) -> Result<Self, Error> {
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("moto.log"))?;
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting moto_server (pip install 'moto[server]'): {e}"))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let store = Self::Moto { child, endpoint };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // moto checks no signature: a plain PUT creates the bucket.
            let url = format!("{}/{MOTO_BUCKET}", store.endpoint());
            if let Ok(r) = client.put(&url).send().await
                && r.status().is_success()
            {
                return Ok(store);
            }
            if Instant::now() > deadline {
                return Err("moto_server did not create the bucket within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        match self {
            Self::InProcess { server, .. } => server.endpoint(),
            Self::Moto { endpoint, .. } => endpoint.clone(),
        }
    }

    fn bucket(&self) -> &str {
        match self {
            Self::InProcess { server, .. } => server.bucket(),
            Self::Moto { .. } => MOTO_BUCKET,
        }
    }

    /// What the report calls it.
    pub fn label(&self) -> String {
        match self {
            Self::InProcess { .. } => "the in-process S3 server".into(),
            Self::Moto { .. } => {
                let version = Command::new("python3")
                    .args(["-c", "import moto; print(moto.__version__)"])
                    .output()
                    .ok()
                    .and_then(|o| String::from_utf8(o.stdout).ok())
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty());
                format!(
                    "moto_server {} at {}",
                    version.unwrap_or_default(),
                    self.endpoint()
                )
            }
        }
    }

    /// The storage URL of `prefix` for ours.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket())
    }

    /// The `AWS_*` variables that point ours at the store, then `extra`
    /// (`[storage.options]` keys, as variables).
    pub fn env(&self, extra: &[(String, String)]) -> Vec<(String, String)> {
        let mut env = match self {
            Self::InProcess { server, .. } => server.env(),
            Self::Moto { .. } => [
                ("AWS_ENDPOINT", self.endpoint()),
                ("AWS_ALLOW_HTTP", "true".into()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        };
        env.extend(
            extra
                .iter()
                .map(|(k, v)| (k.to_ascii_uppercase(), v.clone())),
        );
        env
    }

    /// Where blobs stored under `prefix` are, for the bench to free them.
    pub fn blob_files(self: &Arc<Self>, prefix: &str) -> BlobFiles {
        BlobFiles::S3(Arc::clone(self), prefix.to_owned())
    }

    /// Removes the object `key` directly (in-process) or with an
    /// unsigned `DELETE` (moto checks no signature).
    pub fn remove(&self, key: &str) {
        match self {
            Self::InProcess { server, .. } => {
                server.remove(key);
            }
            Self::Moto { .. } => {
                let url = format!("{}/{}/{key}", self.endpoint(), self.bucket());
                let _ = Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "-X", "DELETE", &url])
                    .status();
            }
        }
    }

    /// CPU time the store used so far: the in-process server's threads,
    /// or moto's process.
    pub fn cpu_time(&self) -> Option<Duration> {
        match self {
            Self::InProcess { .. } => threads_cpu_time(THREAD_NAME),
            Self::Moto { child, .. } => server::cpu_time(child.id()).ok(),
        }
    }

    /// distribution's `storage:` section for its S3 driver on this store
    /// (moto), under `root` in the bucket, with blob GETs served by
    /// distribution itself (no redirects to the store), as ours serves
    /// them.
    pub fn distribution_storage(&self, root: &str) -> String {
        format!(
            "storage:\n  s3:\n    accesskey: test\n    secretkey: test\n    region: us-east-1\n    \
             regionendpoint: {}\n    bucket: {}\n    rootdirectory: {root}\n    \
             forcepathstyle: true\n    secure: false\n    v4auth: true\n  \
             redirect:\n    disable: true\n  delete:\n    enabled: true\n",
            self.endpoint(),
            self.bucket(),
        )
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        match self {
            Self::InProcess { runtime, .. } => {
                if let Some(runtime) = runtime.take() {
                    runtime.shutdown_background();
                }
            }
            Self::Moto { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// CPU time of this process's threads named `name`.
fn threads_cpu_time(name: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            total += server::stat_cpu_time(&stat).ok()?;
        }
    }
    Some(total)
}
