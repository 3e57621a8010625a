//! `oci-registry`: see the crate library for what each command does.

use std::process::ExitCode;

use clap::Parser;
use oci_registry_bin::{Cli, Command, init_logging, run_serve};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            if let Err(e) = init_logging(&args.log_level) {
                eprintln!("oci-registry: invalid --log-level: {e}");
                return ExitCode::from(2);
            }
            match run_serve(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("oci-registry: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
