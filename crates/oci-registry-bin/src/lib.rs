//! The `oci-registry` program: command line, logging and serving.
//!
//! Kept as a library so tests can start exactly what the binary starts:
//! [`serve`] takes a bound listener and a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use oci_http::Limits;
use oci_storage::{Storage, StorageOptions};
use tokio::net::TcpListener;

/// Command line of `oci-registry`.
#[derive(Debug, Parser)]
#[command(name = "oci-registry", version, about = "An OCI distribution registry")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the registry API.
    Serve(ServeArgs),
}

/// Options of `oci-registry serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "OCI_REGISTRY_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// Storage: `file:///abs/path`, a plain path, `memory://`, or
    /// `s3://bucket/prefix` (configured by the `AWS_*` variables).
    #[arg(long, env = "OCI_REGISTRY_STORAGE", default_value = "./registry-data")]
    pub storage: String,
    /// Log filter: `error`, `warn`, `info`, `debug`, `trace`, or a
    /// `tracing` filter such as `oci_http=debug,info`.
    #[arg(long = "log-level", env = "OCI_REGISTRY_LOG", default_value = "info")]
    pub log_level: String,
    /// Filesystem storage: fsync files and directories before acknowledging
    /// a write (survives power loss). `false` trades that for speed.
    #[arg(long, env = "OCI_REGISTRY_STORAGE_FSYNC", default_value = "true",
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub fsync: bool,
    /// Limits on clients.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The `[limits]` of `oci-registry serve`: every one on by default.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Time a client has to send a whole request head (e.g. `30s`).
    #[arg(long, env = "OCI_REGISTRY_LIMITS_HEADER_TIMEOUT", default_value = "30s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    #[arg(long, env = "OCI_REGISTRY_LIMITS_KEEPALIVE_TIMEOUT", default_value = "60s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub keepalive_timeout: Duration,
    /// A request body that sends nothing for this long is aborted.
    #[arg(long, env = "OCI_REGISTRY_LIMITS_BODY_TIMEOUT", default_value = "60s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub body_timeout: Duration,
    /// Open connections at most; more get 503.
    #[arg(
        long,
        env = "OCI_REGISTRY_LIMITS_MAX_CONNECTIONS",
        default_value = "4096"
    )]
    pub max_connections: usize,
    /// Requests in flight at most; more get 429.
    #[arg(long, env = "OCI_REGISTRY_LIMITS_MAX_REQUESTS", default_value = "1024")]
    pub max_requests: usize,
    /// Manifest bytes held in memory at once by all requests (e.g. `64MiB`).
    #[arg(long, env = "OCI_REGISTRY_LIMITS_MANIFEST_BUDGET", default_value = "64MiB",
          value_parser = parse_bytes, value_name = "BYTES")]
    pub manifest_budget: usize,
    /// Upload sessions untouched for this long expire (e.g. `24h`).
    #[arg(long, env = "OCI_REGISTRY_LIMITS_UPLOAD_TTL", default_value = "24h",
          value_parser = parse_duration, value_name = "DURATION")]
    pub upload_ttl: Duration,
    /// Upload sessions open at most; starting another gets 429.
    #[arg(long, env = "OCI_REGISTRY_LIMITS_MAX_UPLOADS", default_value = "10000")]
    pub max_uploads: usize,
    /// How long a request waits for an upload session in use by another.
    #[arg(long, env = "OCI_REGISTRY_LIMITS_LOCK_WAIT", default_value = "30s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub lock_wait: Duration,
}

impl ServeArgs {
    /// The HTTP limits these arguments set.
    pub fn http_limits(&self) -> Limits {
        let l = &self.limits;
        let mut limits = Limits::default();
        limits.header_timeout = l.header_timeout;
        limits.keepalive_timeout = l.keepalive_timeout;
        limits.body_timeout = l.body_timeout;
        limits.max_connections = l.max_connections;
        limits.max_requests = l.max_requests;
        limits.manifest_budget = l.manifest_budget;
        limits
    }

    /// The storage options these arguments set.
    pub fn storage_options(&self) -> StorageOptions {
        let l = &self.limits;
        let mut options = StorageOptions::default();
        options.fsync = self.fsync;
        options.upload_ttl = l.upload_ttl;
        options.max_uploads = l.max_uploads;
        options.lock_wait = l.lock_wait;
        options
    }
}

/// `30s`, `5m`, `24h`, `1h 30m` (humantime's format).
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

/// `1048576`, `512KiB`, `64MiB`, `1GiB`, `64MB` (bytesize's format).
fn parse_bytes(text: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = text.trim().parse()?;
    usize::try_from(size.as_u64()).map_err(|e| e.to_string())
}

/// Installs the log subscriber (stderr) with `filter`.
pub fn init_logging(filter: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    // Colours only on a terminal: escape codes in a log file or a
    // collector's input are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init()
}

/// Serves the API on `listener` with `limits` until `shutdown` resolves,
/// then lets in-flight requests finish; expires abandoned upload sessions
/// meanwhile.
pub async fn serve(
    listener: TcpListener,
    storage: Storage,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _sweeper = storage.start_sweeper();
    let app = oci_http::app_with(storage, limits);
    oci_http::server::serve(listener, app, limits, shutdown).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

/// Runs `serve` as the binary does: open storage, bind, print the startup
/// line, serve until a signal.
pub async fn run_serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let storage = Storage::open_with_options(&args.storage, args.storage_options()).await?;
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!(
        "oci-registry listening on http://{addr} with storage {}",
        storage.description()
    );
    serve(listener, storage, &args.http_limits(), shutdown_signal()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_defaults_are_the_documented_defaults() {
        let cli = Cli::try_parse_from(["oci-registry", "serve"]).unwrap();
        let Command::Serve(args) = cli.command;
        assert_eq!(args.http_limits(), Limits::default());
        assert_eq!(args.storage_options(), StorageOptions::default());
    }

    #[test]
    fn limits_take_units() {
        let cli = Cli::try_parse_from([
            "oci-registry",
            "serve",
            "--header-timeout",
            "5s",
            "--manifest-budget",
            "8MiB",
            "--upload-ttl",
            "1h 30m",
            "--fsync",
            "false",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command;
        assert_eq!(args.http_limits().header_timeout, Duration::from_secs(5));
        assert_eq!(args.http_limits().manifest_budget, 8 << 20);
        assert_eq!(args.storage_options().upload_ttl, Duration::from_secs(5400));
        assert!(!args.storage_options().fsync);
        assert!(Cli::try_parse_from(["oci-registry", "serve", "--body-timeout", "soon"]).is_err());
    }
}
