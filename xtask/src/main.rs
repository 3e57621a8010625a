//! Developer tasks, run as `cargo xtask <task>`.
//!
//! - `bench`: builds the release binary and measures push/pull throughput,
//!   request rates and latencies, list paging, memory and startup over
//!   loopback HTTP, optionally side by side with a peer registry (see
//!   [`mod@bench`]).
//! - `conformance`: runs the official OCI distribution-spec conformance
//!   suite against the release binary on every storage backend (see
//!   [`conformance`]); exit 0 passed, 1 failed, 2 suite missing.

mod bench;
mod conformance;
mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `cargo xtask` command line.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Measure the release binary (and optionally a peer registry):
    /// throughput, latency, memory, startup.
    Bench(Box<bench::Args>),
    /// Run the official OCI distribution-spec v1.1.1 conformance suite
    /// against the release binary on each storage backend.
    Conformance(conformance::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Bench(args) => bench::run(*args).await.map(|()| 0),
        Task::Conformance(args) => conformance::run(args).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
