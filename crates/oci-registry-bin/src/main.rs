//! `oci-registry`: see the crate library for what each command does.

use std::process::ExitCode;

use clap::Parser;
use oci_registry_bin::{Cli, Command, ConfigCommand, check_files, config, init_logging, run_serve};

/// The configuration, or the exit code after saying in one line why not.
fn load(sources: &config::Sources) -> Result<config::Config, ExitCode> {
    config::load(sources).map_err(|e| {
        eprintln!("oci-registry: {e}");
        ExitCode::from(2)
    })
}

/// Prints a command's report (exit 0), or its error in one line (exit 1).
fn report(result: Result<String, Box<dyn std::error::Error + Send + Sync>>) -> ExitCode {
    match result {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oci-registry: {e}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match load(&args.sources()) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let _log = match init_logging(&config.log) {
                Ok(guard) => guard,
                Err(e) => {
                    eprintln!("oci-registry: invalid log configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            match run_serve(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("oci-registry: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Fsck(args) => {
            let config = match load(&args.store.sources()) {
                Ok(config) => config,
                Err(code) => return code,
            };
            match oci_registry_bin::run_fsck(&args, &config).await {
                Ok((report, clean)) => {
                    print!("{report}");
                    if clean {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("oci-registry: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Gc(args) => {
            let config = match load(&args.store.sources()) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let _log = init_logging(&config.log).ok();
            report(oci_registry_bin::run_gc(&args, &config).await)
        }
        Command::Du(args) => {
            let config = match load(&args.store.sources()) {
                Ok(config) => config,
                Err(code) => return code,
            };
            report(oci_registry_bin::run_du(&args, &config).await)
        }
        Command::Config(ConfigCommand::Example) => {
            print!("{}", config::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let sources = config::Sources {
                file: Some(file),
                env: true,
                flags: config::Overrides::default(),
            };
            let checked = match config::load(&sources) {
                Ok(config) => check_files(&config).await.map(|()| config),
                Err(e) => Err(e),
            };
            match checked {
                Ok(config) => {
                    print!("{}", config.redacted().to_toml());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("oci-registry: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
