//! `onramp-client`: the command-line Onramp client. Exit codes (named in
//! [`onramp_client::exit::Exit`]): 0 success (also "nothing to do"); 1 other errors; 2
//! usage; 3 unusable provisioning file; 4 token problem (expired, used, revoked, unknown:
//! contact the administrator); 5 the edge cannot be reached; 6 the tunnel service is not running
//! or refused this user; 7 the account is disabled; 8 the administrator removed this device;
//! 10-15 the `provision` helper's.

mod cli;
mod commands;
mod output;
mod prompt;

use clap::Parser;
use commands::Failure;
use onramp_client::exit::Exit;
use std::process::ExitCode;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};

/// Under the Service Control Manager the service's standard error goes nowhere: on Windows
/// `service` (not `--console`) also appends to service.log beside the exe. That folder
/// (Program Files) only administrators can write to, so no user can plant a link there for
/// LocalSystem to write through.
#[cfg(windows)]
fn service_log(cli: &cli::Cli) -> Option<std::fs::File> {
    let cli::Command::Service(args) = &cli.command else { return None };
    if args.console {
        return None;
    }
    let path = std::env::current_exe().ok()?.parent()?.join("service.log");
    std::fs::OpenOptions::new().create(true).append(true).open(path).ok()
}

#[cfg(not(windows))]
fn service_log(_cli: &cli::Cli) -> Option<std::fs::File> {
    None
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The service logs what it does to interfaces; the commands only warnings.
    let default = if matches!(cli.command, cli::Command::Service(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ONRAMP_CLIENT_LOG").unwrap_or_else(|_| default.into());
    let (writer, ansi) = match service_log(&cli) {
        // No colour codes in a file.
        Some(file) => (BoxMakeWriter::new(std::io::stderr.and(std::sync::Mutex::new(file))), false),
        None => (BoxMakeWriter::new(std::io::stderr), true),
    };
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi).try_init();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            output::warn(&format!("error: cannot start: {e}"));
            return Exit::Failed.into();
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(()) => Exit::Success.into(),
        Err(Failure(code, msg)) => {
            // An empty message: the command already said what happened.
            if !msg.is_empty() {
                output::warn(&format!("error: {msg}"));
            }
            code.into()
        }
    }
}
