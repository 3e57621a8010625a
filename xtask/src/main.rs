//! Developer tasks, run as `cargo xtask <task>`.
//!
//! - `push-rss`: builds the release binary, starts it on a free loopback port
//!   with fresh filesystem storage, pushes a large incompressible blob the
//!   ways clients do (monolithic POST, one streamed PATCH), and reports
//!   throughput and the server's peak resident memory (`VmHWM`).

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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::PushRss(args) => push_rss::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
