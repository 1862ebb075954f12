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
    /// TOML configuration file (also accepted after the command's name).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run core: migrate, bootstrap an empty database, serve the admin API, deliver mail.
    Serve(ServeArgs),
    /// Run a standalone public edge (no database); core connects to it (ONRAMP_EDGE_URLS).
    Edge(EdgeArgs),
    /// Run a WireGuard gateway for one location: dials core's gateway listener with the
    /// location's token, serves its peers, reports their stats. Needs root (or CAP_NET_ADMIN).
    Gateway(onramp_gateway::GatewayArgs),
    /// Apply database migrations and exit.
    Migrate {
        /// Create the SQLite file named by ONRAMP_DATABASE_URL if it does not exist.
        #[arg(long)]
        create: bool,
        #[command(flatten)]
        db: DatabaseFlags,
    },
    /// Exit 0 if the running server answers its health check, 1 otherwise.
    Healthcheck {
        /// Health URL [default: http://<http_addr>/api/v1/health]
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        config: ConfigFlag,
        /// The admin API address to check [env: ONRAMP_HTTP_ADDR] [default: 127.0.0.1:8000]
        #[arg(long, value_name = "ADDR")]
        http_addr: Option<String>,
    },
    /// Administration on the configured database (works whether or not the server runs).
    Admin {
        #[command(flatten)]
        db: DatabaseFlags,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

#[derive(clap::Args)]
struct ConfigFlag {
    /// TOML configuration file.
    #[arg(long = "config", value_name = "FILE", global = true, help_heading = "Configuration")]
    config_file: Option<PathBuf>,
}

/// Where the database is, for the commands that open it. Global, so that
/// `onramp admin user list --data-dir DIR` works as well as `onramp admin --data-dir DIR ...`.
#[derive(clap::Args)]
struct DatabaseFlags {
    #[command(flatten)]
    config: ConfigFlag,
    /// Directory of the embedded SQLite database [env: ONRAMP_DATA_DIR] [default: ./onramp-data]
    #[arg(long, global = true, value_name = "DIR", help_heading = "Configuration")]
    data_dir: Option<String>,
    /// sqlite://PATH or postgres://... [env: ONRAMP_DATABASE_URL]; prefer the env var or
    /// ONRAMP_DATABASE_URL_FILE when the URL holds a password (argv is visible to others).
    #[arg(long, global = true, value_name = "URL", help_heading = "Configuration")]
    database_url: Option<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DatabaseFlags,
    /// Admin REST API listen address [env: ONRAMP_HTTP_ADDR] [default: 127.0.0.1:8000]
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<String>,
    /// Public edge listen address [env: ONRAMP_EDGE_ADDR] [default: 0.0.0.0:8080]
    #[arg(long, value_name = "ADDR")]
    edge_addr: Option<String>,
    /// Public edge URL handed out as enrollment_url [env: ONRAMP_PUBLIC_URL]
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Listener for gateway agents [env: ONRAMP_GATEWAY_ADDR] [default: 127.0.0.1:50055]
    #[arg(long, value_name = "ADDR")]
    gateway_addr: Option<String>,
}

/// A standalone edge's public listener and its link to core (core dials in).
#[derive(clap::Args)]
struct EdgeArgs {
    #[command(flatten)]
    config: ConfigFlag,
    /// Public listen address [env: ONRAMP_EDGE_ADDR] [default: 0.0.0.0:8080]
    #[arg(long, value_name = "ADDR")]
    edge_addr: Option<String>,
    /// This edge's public URL [env: ONRAMP_PUBLIC_URL]
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Where core's link connects [env: ONRAMP_EDGE_LINK_ADDR] [default: 0.0.0.0:50051]
    #[arg(long, value_name = "ADDR")]
    link_addr: Option<String>,
    /// Link TLS: CA of core's client certificate; then only that core gets in
    /// [env: ONRAMP_LINK_CA_FILE]
    #[arg(long, value_name = "FILE")]
    link_ca_file: Option<String>,
    /// Link TLS: this edge's server certificate [env: ONRAMP_LINK_CERT_FILE]
    #[arg(long, value_name = "FILE")]
    link_cert_file: Option<String>,
    /// Link TLS: the key of --link-cert-file [env: ONRAMP_LINK_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    link_key_file: Option<String>,
    /// DNS name core's client certificate must carry [env: ONRAMP_LINK_CORE_NAME]
    #[arg(long, value_name = "NAME")]
    link_core_name: Option<String>,
    /// Allow a plaintext or unauthenticated link (private network, tests) [env: ONRAMP_LINK_INSECURE]
    #[arg(long)]
    link_insecure: bool,
    /// Serve HTTPS with this certificate chain [env: ONRAMP_EDGE_TLS_CERT_FILE]
    #[arg(long, value_name = "FILE")]
    tls_cert_file: Option<String>,
    /// The key of --tls-cert-file [env: ONRAMP_EDGE_TLS_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    tls_key_file: Option<String>,
}

impl DatabaseFlags {
    fn raw(&self) -> config::Raw {
        config::Raw { data_dir: self.data_dir.clone(), database_url: self.database_url.clone(), ..Default::default() }
    }
}

impl Cli {
    /// The `--config` file and the flags of the command, as one configuration layer.
    fn flags(&self) -> (Option<&PathBuf>, config::Raw) {
        let (file, flags) = match &self.command {
            Command::Serve(a) => (
                a.db.config.config_file.as_ref(),
                config::Raw {
                    http_addr: a.http_addr.clone(),
                    edge_addr: a.edge_addr.clone(),
                    public_url: a.public_url.clone(),
                    gateway_addr: a.gateway_addr.clone(),
                    ..a.db.raw()
                },
            ),
            Command::Edge(a) => (
                a.config.config_file.as_ref(),
                config::Raw {
                    edge_addr: a.edge_addr.clone(),
                    public_url: a.public_url.clone(),
                    edge_link_addr: a.link_addr.clone(),
                    link_ca_file: a.link_ca_file.clone(),
                    link_cert_file: a.link_cert_file.clone(),
                    link_key_file: a.link_key_file.clone(),
                    link_core_name: a.link_core_name.clone(),
                    // Only a given flag overrides: its absence leaves the file's and env's value.
                    link_insecure: a.link_insecure.then_some(toml::Value::Boolean(true)),
                    edge_tls_cert_file: a.tls_cert_file.clone(),
                    edge_tls_key_file: a.tls_key_file.clone(),
                    ..Default::default()
                },
            ),
            Command::Migrate { db, .. } | Command::Admin { db, .. } => (db.config.config_file.as_ref(), db.raw()),
            Command::Healthcheck { config, http_addr, .. } => {
                (config.config_file.as_ref(), config::Raw { http_addr: http_addr.clone(), ..Default::default() })
            }
            Command::Gateway(_) => (None, config::Raw::default()),
        };
        (file.or(self.config.as_ref()), flags)
    }

    fn config(&self) -> anyhow::Result<config::Config> {
        let (file, flags) = self.flags();
        let file = match file {
            Some(p) => config::Raw::from_file(p)?,
            None => config::Raw::default(),
        };
        let env = config::Raw::from_env(|k| std::env::var(k).ok());
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
    serve::init_tracing(cfg.log_format, matches!(cli.command, Command::Serve(_) | Command::Edge(_)));
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(_) => serve::serve(cfg).await,
            Command::Edge(_) => serve::edge(cfg).await,
            Command::Migrate { create, .. } => serve::migrate(cfg, create).await,
            Command::Healthcheck { url, .. } => serve::healthcheck(cfg, url).await,
            Command::Admin { command, .. } => admin::run(cfg, command).await,
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
