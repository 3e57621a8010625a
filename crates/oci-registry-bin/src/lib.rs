//! The `oci-registry` program: command line, logging and serving.
//!
//! Kept as a library so tests can start exactly what the binary starts:
//! [`serve`] takes a bound listener and a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;

use clap::{Parser, Subcommand};
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
    /// Storage: `file:///abs/path`, a plain path, or `memory://`.
    #[arg(long, env = "OCI_REGISTRY_STORAGE", default_value = "./registry-data")]
    pub storage: String,
    /// Log filter: `error`, `warn`, `info`, `debug`, `trace`, or a
    /// `tracing` filter such as `oci_http=debug,info`.
    #[arg(long = "log-level", env = "OCI_REGISTRY_LOG", default_value = "info")]
    pub log_level: String,
    /// Filesystem storage: do not `fsync` files and directories before
    /// acknowledging a write (faster; acknowledged pushes can be lost on
    /// power loss).
    #[arg(long = "no-fsync", env = "OCI_REGISTRY_NO_FSYNC")]
    pub no_fsync: bool,
}

/// Installs the log subscriber (stderr) with `filter`.
pub fn init_logging(filter: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
}

/// Serves the API on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    storage: Storage,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, oci_http::app(storage))
        .with_graceful_shutdown(shutdown)
        .await
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
    let mut options = StorageOptions::default();
    options.fsync = !args.no_fsync;
    let storage = Storage::open_with_options(&args.storage, options).await?;
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!(
        "oci-registry listening on http://{addr} with storage {}",
        storage.description()
    );
    serve(listener, storage, shutdown_signal()).await?;
    Ok(())
}
