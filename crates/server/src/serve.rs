use crate::config::{Config, LogFormat};
use anyhow::Context;
use onramp_core::{Core, CoreConfig, SystemClock};
use onramp_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Logs go to stderr; `ONRAMP_LOG` (tracing filter syntax) sets the level.
pub fn init_tracing(format: LogFormat, serving: bool) {
    let default = if serving { "info,sqlx=warn,tower_http=info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ONRAMP_LOG").unwrap_or_else(|_| default.into());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

/// Creates the data directory owner-only (it holds the database).
fn prepare_data_dir(cfg: &Config) -> anyhow::Result<()> {
    if cfg.database_url.is_some() {
        return Ok(());
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", cfg.data_dir.display()))?;
    }
    Ok(())
}

/// Connects and migrates the configured database.
pub async fn open_store(cfg: &Config, create: bool) -> anyhow::Result<Store> {
    prepare_data_dir(cfg)?;
    let (url, default_location) = cfg.database();
    let store = Store::connect(&url, default_location || create)
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
        ..CoreConfig::default()
    }
}

pub async fn open_core(cfg: &Config, create: bool) -> anyhow::Result<Core> {
    let store = open_store(cfg, create).await?;
    let core = Core::new(store, Arc::new(SystemClock), core_config(cfg)).await?;
    // Persist a configured public URL so that every process (server, CLI, replicas) hands
    // out the same enrollment_url, even one started without the variable.
    if let Some(url) = &cfg.public_url {
        if core.settings().await.public_url != *url {
            let patch = onramp_core::SettingsPatch { public_url: Some(url.clone()), ..Default::default() };
            core.update_settings(&onramp_core::Actor::system("config"), patch).await?;
            tracing::info!(public_url = %url, "stored the configured public URL");
        }
    }
    Ok(core)
}

pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    crate::listener::raise_open_files_limit();
    let core = open_core(&cfg, false).await?;
    if let Some(admin) = core.bootstrap(&cfg.bootstrap_admin_email).await? {
        tracing::info!(
            "empty database: created admin group \"admin\" and admin user {admin:?} (no password). \
             Get an API token with: onramp admin api-token create --name <NAME>"
        );
    }
    if cfg.public_url.is_none() {
        tracing::warn!(public_url = %core.public_url().await, "ONRAMP_PUBLIC_URL not set; enrollment links use the stored public URL");
    }
    // Check the link settings before anything starts listening.
    let link_tls = cfg
        .edge_urls
        .iter()
        .map(|u| Ok((u.clone(), crate::tls::core_link_tls(&cfg, u)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let gateway_tls = crate::tls::gateway_listener_tls(&cfg)?;
    let gateway_control: Arc<dyn onramp_proto::gateway::GatewayControl> = Arc::new(core.clone());
    let gateways = Some(start_gateway_listener(&cfg, gateway_control, gateway_tls).await?);
    let edge = if cfg.edge_enabled {
        let public_url = core.public_url().await;
        let tls = crate::tls::public_tls(&cfg).await?;
        let router = onramp_edge::router(Arc::new(core.clone()), edge_config(&cfg, &public_url, tls.is_some()));
        let listener = tokio::net::TcpListener::bind(cfg.edge_addr)
            .await
            .with_context(|| format!("cannot listen on {} (ONRAMP_EDGE_ADDR; set ONRAMP_EDGE_ENABLED=false to run without the embedded edge)", cfg.edge_addr))?;
        tracing::info!(addr = %listener.local_addr()?, %public_url, https = tls.is_some(), "public enrollment edge listening");
        let cfg = cfg.clone();
        Some(tokio::spawn(async move {
            crate::tls::serve_public(listener, router, tls, &cfg, std::future::pending()).await
        }))
    } else {
        None
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
    let app = onramp_api::router(onramp_api::AppState::new(core.clone()));
    let listener = tokio::net::TcpListener::bind(cfg.http_addr)
        .await
        .with_context(|| format!("cannot listen on {} (ONRAMP_HTTP_ADDR)", cfg.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "admin API listening; docs at /api/docs");
    let admin =
        crate::listener::Listener { name: "admin API", limits: cfg.http_limits.clone(), exempt: vec![], tls: None };
    crate::listener::serve(listener, app, admin, shutdown_signal()).await?;
    worker.abort();
    links.iter().for_each(|l| l.abort());
    if let Some(g) = gateways {
        g.abort();
    }
    if let Some(e) = edge {
        e.abort();
    }
    core.store().close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Core's listener for gateway agents (they dial in; see `onramp gateway`).
async fn start_gateway_listener(
    cfg: &Config,
    control: Arc<dyn onramp_proto::gateway::GatewayControl>,
    tls: Option<onramp_link::PemIdentity>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(cfg.gateway_addr)
        .await
        .with_context(|| format!("cannot listen on {} (ONRAMP_GATEWAY_ADDR)", cfg.gateway_addr))?;
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
