//! Developer tasks, run as `cargo xtask <task>`.
//!
//! - `push-rss`: builds the release binary, starts it on a free loopback port
//!   with fresh filesystem storage, pushes a large incompressible blob the
//!   ways clients do (monolithic POST, one streamed PATCH), and reports
//!   throughput and the server's peak resident memory (`VmHWM`).
//! - `conformance`: runs the official OCI distribution-spec conformance
//!   suite against the release binary on every storage backend (see
//!   [`conformance`]); exit 0 passed, 1 failed, 2 suite missing.

mod conformance;
mod push_rss;
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
    /// Push a large blob to a release build and report peak server RSS.
    PushRss(push_rss::Args),
    /// Run the official OCI distribution-spec v1.1.1 conformance suite
    /// against the release binary on each storage backend.
    Conformance(conformance::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::PushRss(args) => push_rss::run(args).await.map(|()| 0),
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
