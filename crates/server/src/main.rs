//! `onramp`: the Onramp server binary (core control plane, admin CLI).

mod admin;
mod certs;
mod config;
mod listener;
mod serve;
mod tls;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "onramp", version, about = "Zero-touch WireGuard enrollment: core server and admin tools")]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of the embedded SQLite database [env: ONRAMP_DATA_DIR] [default: ./onramp-data]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<String>,
    /// sqlite://PATH or postgres://... [env: ONRAMP_DATABASE_URL]; prefer the env var or
    /// ONRAMP_DATABASE_URL_FILE when the URL holds a password (argv is visible to others).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Admin REST API listen address [env: ONRAMP_HTTP_ADDR] [default: 127.0.0.1:8000]
    #[arg(long, global = true, value_name = "ADDR")]
    http_addr: Option<String>,
    /// Public edge listen address [env: ONRAMP_EDGE_ADDR] [default: 0.0.0.0:8080]
    #[arg(long, global = true, value_name = "ADDR")]
    edge_addr: Option<String>,
    /// Public edge URL handed out as enrollment_url [env: ONRAMP_PUBLIC_URL]
    #[arg(long, global = true, value_name = "URL")]
    public_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run core: migrate, bootstrap an empty database, serve the admin API, deliver mail.
    Serve,
    /// Run a standalone public edge (no database); core connects to it (ONRAMP_EDGE_URLS).
    Edge,
    /// Run a WireGuard gateway for one location: dials core's gateway listener with the
    /// location's token, serves its peers, reports their stats. Needs root (or CAP_NET_ADMIN).
    Gateway(onramp_gateway::GatewayArgs),
    /// Apply database migrations and exit.
    Migrate {
        /// Create the SQLite file named by ONRAMP_DATABASE_URL if it does not exist.
        #[arg(long)]
        create: bool,
    },
    /// Exit 0 if the running server answers its health check, 1 otherwise.
    Healthcheck {
        /// Health URL [default: http://<http_addr>/api/v1/health]
        #[arg(long)]
        url: Option<String>,
    },
    /// Administration on the configured database (works whether or not the server runs).
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

impl Cli {
    fn config(&self) -> anyhow::Result<config::Config> {
        let file = match &self.config {
            Some(p) => config::Raw::from_file(p)?,
            None => config::Raw::default(),
        };
        let env = config::Raw::from_env(|k| std::env::var(k).ok());
        let flags = config::Raw {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            http_addr: self.http_addr.clone(),
            edge_addr: self.edge_addr.clone(),
            public_url: self.public_url.clone(),
            ..Default::default()
        };
        file.overlay(env).overlay(flags).resolve()
    }
}

fn main() -> std::process::ExitCode {
    // One TLS crypto provider for every rustls user in the process (link, HTTPS, SMTP).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // The gateway runs beside WireGuard, not beside core: none of core's settings apply.
    if let Command::Gateway(args) = &cli.command {
        return gateway(args);
    }
    let cfg = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    serve::init_tracing(cfg.log_format, matches!(cli.command, Command::Serve | Command::Edge));
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve => serve::serve(cfg).await,
            Command::Edge => serve::edge(cfg).await,
            Command::Migrate { create } => serve::migrate(cfg, create).await,
            Command::Healthcheck { url } => serve::healthcheck(cfg, url).await,
            Command::Admin { command } => admin::run(cfg, command).await,
            Command::Gateway(_) => unreachable!("handled before the core configuration"),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn gateway(args: &onramp_gateway::GatewayArgs) -> std::process::ExitCode {
    let format = match std::env::var("ONRAMP_LOG_FORMAT").as_deref() {
        Ok("json") => config::LogFormat::Json,
        _ => config::LogFormat::Text,
    };
    serve::init_tracing(format, true);
    let token = std::env::var(onramp_gateway::config::TOKEN_ENV).ok();
    let cfg = match args.resolve(token) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    // Read once; children (iptables) need not inherit it. No other thread runs yet.
    std::env::remove_var(onramp_gateway::config::TOKEN_ENV);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(onramp_gateway::run(cfg, serve::shutdown_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
