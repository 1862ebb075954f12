use crate::config::{Config, LogFormat};
use anyhow::Context;
use onramp_core::{Core, CoreConfig, SystemClock};
use onramp_store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Logs go to stderr; `ONRAMP_LOG` (tracing filter syntax) sets the level.
pub fn init_tracing(format: LogFormat, serving: bool) {
    use std::io::IsTerminal;
    let default = if serving { "info,sqlx=warn,tower_http=info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ONRAMP_LOG").unwrap_or_else(|_| default.into());
    // Colour codes only for a person at a terminal, not in journald or a log file.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
    // Every command starts here, so a mistyped variable is reported whatever runs.
    warn_unknown_env();
}

/// Warns about `ONRAMP_*` variables nothing reads. Names declared on clap arguments (admin
/// and gateway flags) count as known, so a new flag needs no list kept by hand.
fn warn_unknown_env() {
    use clap::{Args, Subcommand};
    fn env_names(cmd: &clap::Command, out: &mut Vec<String>) {
        out.extend(cmd.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()));
        cmd.get_subcommands().for_each(|c| env_names(c, out));
    }
    let mut known = vec![onramp_gateway::config::TOKEN_ENV.to_owned()];
    env_names(&crate::admin::AdminCommand::augment_subcommands(clap::Command::new("admin")), &mut known);
    env_names(&onramp_gateway::GatewayArgs::augment_args(clap::Command::new("gateway")), &mut known);
    let vars = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    for w in crate::config::unknown_env(vars, &known) {
        tracing::warn!("{w}");
    }
}

/// The path as the user should see it: absolute, since a relative one depends on where
/// the command ran (the reason `onramp admin` once made a second database elsewhere).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// Creates the data directory owner-only (it holds the database).
fn prepare_data_dir(cfg: &Config) -> anyhow::Result<()> {
    if cfg.database_url.is_some() {
        return Ok(());
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data directory {}", absolute(&cfg.data_dir).display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", cfg.data_dir.display()))?;
    }
    Ok(())
}

/// The SQLite file the configuration names, if it names one.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(PathBuf::from(rest.split('?').next().unwrap_or_default()))
}

/// Where the data is, for the start-up log and for errors.
pub fn describe_database(cfg: &Config) -> String {
    let (url, _) = cfg.database();
    match sqlite_file(&url) {
        Some(f) => format!("SQLite database {}", absolute(&f).display()),
        None => format!("database {}", onramp_store_redact(&url)),
    }
}

/// Connects and migrates the configured database. Only `create` lets a missing SQLite
/// file be made (`serve` for its data directory, `migrate --create`); anything else
/// refuses, naming the path it looked at, so a command run from the wrong directory does
/// not quietly start a second, empty installation.
pub async fn open_store(cfg: &Config, create: bool) -> anyhow::Result<Store> {
    let (url, _) = cfg.database();
    if let Some(file) = sqlite_file(&url).filter(|f| !create && !f.as_os_str().is_empty() && !f.exists()) {
        let whence = match &cfg.database_url {
            Some(_) => "named by the database URL".to_owned(),
            None => format!("in the data directory {}", absolute(&cfg.data_dir).display()),
        };
        anyhow::bail!(
            "no database: {} does not exist ({whence}). Run this where the server's data is, or point to it with \
             --data-dir DIR (ONRAMP_DATA_DIR), ONRAMP_DATABASE_URL or --config FILE. \
             `onramp serve` and `onramp migrate --create` create a new database.",
            absolute(&file).display()
        );
    }
    if create {
        prepare_data_dir(cfg)?;
    }
    let store = Store::connect(&url, create)
        .await
        .with_context(|| format!("cannot open database {}", onramp_store_redact(&url)))?;
    let applied = store.migrate().await.context("database migration failed")?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(store)
}

fn onramp_store_redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

pub fn core_config(cfg: &Config) -> CoreConfig {
    CoreConfig {
        public_url: cfg.public_url.clone(),
        mail_retry_base_secs: cfg.mail_retry_base_secs,
        secret_key_file: Some(cfg.secret_key_file.clone()),
        web_session_idle_secs: cfg.web_session_idle_secs,
        web_session_max_secs: cfg.web_session_max_secs,
        directory_env: directory_env(|k| std::env::var(k).ok()),
        entra_env: entra_env(|k| std::env::var(k).ok()),
        ..CoreConfig::default()
    }
}

/// Reads the directory syncs' environment: empty values count as unset.
struct EnvVars<F: Fn(&str) -> Option<String>>(F);

impl<F: Fn(&str) -> Option<String>> EnvVars<F> {
    fn text(&self, k: &str) -> Option<String> {
        (self.0)(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// Comma-separated names.
    fn list(&self, k: &str) -> Option<Vec<String>> {
        self.text(k).map(|v| v.split(',').map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect())
    }

    /// `true`/`false` (also 1/0, yes/no, on/off); anything else is ignored, and said so.
    fn flag(&self, k: &str) -> Option<bool> {
        let v = self.text(k)?;
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => {
                tracing::warn!(variable = k, value = %v, "not true or false; ignored");
                None
            }
        }
    }
}

/// The directory sync's `ONRAMP_LDAP_*` variables (the names `provision-directory` takes).
pub fn directory_env(var: impl Fn(&str) -> Option<String>) -> onramp_core::DirectoryEnv {
    let env = EnvVars(var);
    onramp_core::DirectoryEnv {
        url: env.text("ONRAMP_LDAP_URL"),
        base_dn: env.text("ONRAMP_LDAP_BASE_DN"),
        bind_dn: env.text("ONRAMP_LDAP_BIND_DN"),
        password_file: env.text("ONRAMP_LDAP_PASSWORD_FILE"),
        // Not trimmed: a password may end in a space.
        password: (env.0)("ONRAMP_LDAP_PASSWORD").filter(|v| !v.is_empty()),
        user_attribute: env.text("ONRAMP_LDAP_USER_ATTRIBUTE"),
        sync_groups: env.list("ONRAMP_LDAP_SYNC_GROUPS"),
        invite_attribute: env.text("ONRAMP_LDAP_INVITE_ATTRIBUTE"),
        enabled: env.flag("ONRAMP_LDAP_SYNC"),
    }
}

/// The Entra ID sync's `ONRAMP_ENTRA_*` and `ONRAMP_GRAPH_URL` (the names the client's
/// provisioning helper takes).
pub fn entra_env(var: impl Fn(&str) -> Option<String>) -> onramp_core::EntraEnv {
    let env = EnvVars(var);
    onramp_core::EntraEnv {
        tenant: env.text("ONRAMP_ENTRA_TENANT"),
        client_id: env.text("ONRAMP_ENTRA_CLIENT_ID"),
        client_secret_file: env.text("ONRAMP_ENTRA_CLIENT_SECRET_FILE"),
        graph_url: env.text("ONRAMP_GRAPH_URL"),
        login_url: env.text("ONRAMP_ENTRA_LOGIN_URL"),
        sync_groups: env.list("ONRAMP_ENTRA_SYNC_GROUPS"),
        enabled: env.flag("ONRAMP_ENTRA_SYNC"),
        invite_attributes: env.flag("ONRAMP_ENTRA_INVITE_ATTRIBUTES"),
    }
}

/// How often each core checks whether a scheduled directory sync is due
/// (`ONRAMP_DIRECTORY_SYNC_TICK_SECS`, default 15; the interval itself is a setting).
fn directory_tick() -> Duration {
    let secs = std::env::var("ONRAMP_DIRECTORY_SYNC_TICK_SECS").ok().and_then(|v| v.trim().parse::<u64>().ok());
    Duration::from_secs(secs.unwrap_or(15).clamp(1, 3600))
}

pub async fn open_core(cfg: &Config, create: bool) -> anyhow::Result<Core> {
    let store = open_store(cfg, create).await?;
    let core = Core::new(store, Arc::new(SystemClock), core_config(cfg)).await?;
    // Persist a configured public URL so that every process (server, CLI, replicas) hands
    // out the same enrollment_url, even one started without the variable.
    if let Some(url) = &cfg.public_url {
        let stored = core.settings().await.public_url;
        if stored != *url {
            let patch = onramp_core::SettingsPatch { public_url: Some(url.clone()), ..Default::default() };
            core.update_settings(&onramp_core::Actor::system("config"), patch).await?;
            if stored == onramp_core::Settings::default().public_url {
                tracing::info!("stored the configured public URL {url}");
            } else {
                // Someone may have changed it in the settings on purpose: say which won.
                tracing::warn!(
                    "the configured public URL {url} (ONRAMP_PUBLIC_URL) differs from the stored one {stored}; \
                     the configured one wins and is now stored (unset ONRAMP_PUBLIC_URL to manage it in the settings)"
                );
            }
        }
    }
    Ok(core)
}

/// Binds a listener, naming the setting when the address is taken or not ours.
async fn bind(addr: std::net::SocketAddr, setting: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({setting})"))
}

pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    crate::listener::raise_open_files_limit();
    // Everything a setting can break is checked first (certificates read, every address
    // bound), so a mistake stops here and leaves no new database or data directory behind.
    let link_tls = cfg
        .edge_urls
        .iter()
        .map(|u| Ok((u.clone(), crate::tls::core_link_tls(&cfg, u)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let gateway_tls = crate::tls::gateway_listener_tls(&cfg)?;
    let public_tls = if cfg.edge_enabled { crate::tls::public_tls(&cfg).await? } else { None };
    let admin_listener = bind(cfg.http_addr, "ONRAMP_HTTP_ADDR").await?;
    let gateway_listener = bind(cfg.gateway_addr, "ONRAMP_GATEWAY_ADDR").await?;
    let edge_listener = if cfg.edge_enabled {
        Some(
            bind(cfg.edge_addr, "ONRAMP_EDGE_ADDR; set ONRAMP_EDGE_ENABLED=false to run without the embedded edge")
                .await?,
        )
    } else {
        None
    };
    check_secret_key_dir(&cfg)?;

    tracing::info!("data: {}", describe_database(&cfg));
    let core = open_core(&cfg, cfg.database().1).await?;
    if let Some(admin) = core.bootstrap(&cfg.bootstrap_admin_email).await? {
        tracing::info!(
            "empty database: created admin group \"admin\" and admin user \"{admin}\" (no password). \
             Give it a password for the web UI with: onramp admin set-password {admin} --password-file <FILE> \
             (or on standard input), or get an API token with: onramp admin api-token create --name <NAME>"
        );
    }
    let public_url = core.public_url().await;
    if cfg.public_url.is_none() {
        if public_url == onramp_core::Settings::default().public_url {
            tracing::warn!(
                "no public URL configured: enrollment links point to {public_url}; set ONRAMP_PUBLIC_URL \
                 (or public_url in the settings) to the edge's address"
            );
        } else {
            tracing::info!("public URL (from the settings): {public_url}");
        }
    }
    let gateway_control: Arc<dyn onramp_proto::gateway::GatewayControl> = Arc::new(core.clone());
    let gateways = start_gateway_listener(gateway_listener, gateway_control, gateway_tls)?;
    let edge = match edge_listener {
        Some(listener) => {
            let router =
                onramp_edge::router(Arc::new(core.clone()), edge_config(&cfg, &public_url, public_tls.is_some()));
            tracing::info!(addr = %listener.local_addr()?, %public_url, https = public_tls.is_some(), "public enrollment edge listening");
            let cfg = cfg.clone();
            Some(tokio::spawn(async move {
                crate::tls::serve_public(listener, router, public_tls, &cfg, std::future::pending()).await
            }))
        }
        None => None,
    };
    // Core dials every standalone edge; edges never reach core.
    let links: Vec<_> = link_tls
        .into_iter()
        .map(|(url, tls)| {
            let link: Arc<dyn onramp_proto::link::CoreLink> = Arc::new(core.clone());
            tokio::spawn(onramp_link::run_core_side(url, link, tls))
        })
        .collect();
    let worker = tokio::spawn(core.clone().run_mail_worker(Duration::from_secs(cfg.mail_poll_interval_secs)));
    let directory_sync = tokio::spawn(core.clone().run_directory_sync_loop(directory_tick()));
    let ui = onramp_ui::UiConfig {
        secure_cookies: cfg.web_secure_cookies,
        trusted_proxies: cfg.http_trusted_proxies.clone(),
    };
    let app = onramp_api::router(onramp_api::AppState::new(core.clone())).merge(onramp_ui::router(core.clone(), ui));
    let admin_addr = admin_listener.local_addr()?;
    tracing::info!(addr = %admin_addr, "admin web UI at http://{admin_addr}/, REST API docs at /api/docs");
    let admin =
        crate::listener::Listener { name: "admin API", limits: cfg.http_limits.clone(), exempt: vec![], tls: None };
    crate::listener::serve(admin_listener, app, admin, shutdown_signal()).await?;
    worker.abort();
    directory_sync.abort();
    links.iter().for_each(|l| l.abort());
    gateways.abort();
    if let Some(e) = edge {
        e.abort();
    }
    core.store().close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The secret key is created on first start; a custom path in a missing directory would
/// otherwise fail only after the database was made.
fn check_secret_key_dir(cfg: &Config) -> anyhow::Result<()> {
    let f = &cfg.secret_key_file;
    if f.exists() || f.starts_with(&cfg.data_dir) {
        return Ok(());
    }
    match f.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) if !d.is_dir() => anyhow::bail!(
            "secret_key_file (ONRAMP_SECRET_KEY_FILE): the directory {} does not exist",
            absolute(d).display()
        ),
        _ => Ok(()),
    }
}

/// Core's listener for gateway agents (they dial in; see `onramp gateway`).
fn start_gateway_listener(
    listener: tokio::net::TcpListener,
    control: Arc<dyn onramp_proto::gateway::GatewayControl>,
    tls: Option<onramp_link::PemIdentity>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "gateway listener listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = onramp_link::gateway::serve_gateway_link(listener, control, tls, std::future::pending()).await {
            tracing::error!(error = %e, "gateway listener failed");
        }
    }))
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn edge_config(cfg: &Config, public_url: &str, https: bool) -> onramp_edge::EdgeConfig {
    onramp_edge::EdgeConfig {
        secure_cookies: https || public_url.starts_with("https://"),
        trusted_proxies: cfg.edge_trusted_proxies.clone(),
        rate_limit_per_sec: cfg.edge_rate_limit,
    }
}

/// A standalone public edge: no database; serves the enrollment API and wizard, and waits
/// for core to connect on the link address.
pub async fn edge(cfg: Config) -> anyhow::Result<()> {
    crate::listener::raise_open_files_limit();
    let link_tls = crate::tls::edge_link_tls(&cfg)?;
    let public_tls = crate::tls::public_tls(&cfg).await?;
    let hub = onramp_link::EdgeHub::new();
    let public_url = cfg.public_url.clone().unwrap_or_default();
    let router = onramp_edge::router(Arc::new(hub.clone()), edge_config(&cfg, &public_url, public_tls.is_some()));
    let public = tokio::net::TcpListener::bind(cfg.edge_addr)
        .await
        .with_context(|| format!("cannot listen on {} (ONRAMP_EDGE_ADDR)", cfg.edge_addr))?;
    tracing::info!(addr = %public.local_addr()?, https = public_tls.is_some(), "public enrollment edge listening; waiting for core");
    tracing::info!(addr = %cfg.edge_link_addr, mutual_tls = link_tls.as_ref().is_some_and(|t| t.client_ca.is_some()), "core link listening (ONRAMP_EDGE_LINK_ADDR)");
    let link = onramp_link::serve_edge_link(cfg.edge_link_addr, hub, link_tls, shutdown_signal());
    let http = crate::tls::serve_public(public, router, public_tls, &cfg, shutdown_signal());
    tokio::select! {
        r = link => r.map_err(anyhow::Error::msg)?,
        r = http => r?,
    }
    tracing::info!("stopped");
    Ok(())
}

pub async fn migrate(cfg: Config, create: bool) -> anyhow::Result<()> {
    let store = open_store(&cfg, create).await?;
    println!("database is up to date");
    store.close().await;
    Ok(())
}

pub async fn healthcheck(cfg: Config, url: Option<String>) -> anyhow::Result<()> {
    let url = url.unwrap_or_else(|| {
        let mut addr = cfg.http_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}/api/v1/health")
    });
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} unreachable"))?;
    if !resp.status().is_success() {
        anyhow::bail!("{url} answered {}", resp.status());
    }
    println!("ok");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn directory_environments_read_texts_lists_and_flags() {
        let vars = |k: &str| {
            match k {
                "ONRAMP_ENTRA_TENANT" => Some(" contoso.onmicrosoft.com "),
                "ONRAMP_ENTRA_SYNC_GROUPS" => Some("VPN users, ,Engineering"),
                "ONRAMP_ENTRA_SYNC" => Some("Yes"),
                "ONRAMP_ENTRA_INVITE_ATTRIBUTES" => Some("maybe"),
                "ONRAMP_GRAPH_URL" => Some(""),
                "ONRAMP_LDAP_SYNC" => Some("off"),
                "ONRAMP_LDAP_PASSWORD" => Some("pass word "),
                _ => None,
            }
            .map(str::to_owned)
        };
        let e = super::entra_env(vars);
        assert_eq!(e.tenant.as_deref(), Some("contoso.onmicrosoft.com"));
        assert_eq!(e.sync_groups, Some(vec!["VPN users".to_owned(), "Engineering".to_owned()]));
        assert_eq!((e.enabled, e.invite_attributes, e.graph_url), (Some(true), None, None));
        let l = super::directory_env(vars);
        assert_eq!((l.enabled, l.password.as_deref(), l.url), (Some(false), Some("pass word "), None));
    }
}
