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

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The service logs what it does to interfaces; the commands only warnings.
    let default = if matches!(cli.command, cli::Command::Service(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ONRAMP_CLIENT_LOG").unwrap_or_else(|_| default.into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
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
