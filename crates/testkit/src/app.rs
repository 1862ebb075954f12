//! `TestApp`: a real core + admin API on 127.0.0.1:0 over a fresh database (a temporary
//! SQLite file or a new database on the shared test PostgreSQL server).

use onramp_core::{Actor, Core, CoreConfig, ManualClock, SystemClock};
use onramp_store::Store;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, migrated store of the given kind. The guard keeps a SQLite directory alive.
pub async fn fresh_store(backend: Backend) -> (Store, String, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("onramp.db").display());
            let store = Store::connect(&url, true).await.expect("open SQLite");
            store.migrate().await.expect("migrate SQLite");
            (store, url, Some(dir))
        }
        Backend::Postgres => {
            let url = crate::pg::fresh_database_url().await;
            let store = Store::connect(&url, false).await.expect("connect PostgreSQL");
            store.migrate().await.expect("migrate PostgreSQL");
            (store, url, None)
        }
    }
}

pub struct TestApp {
    pub base_url: String,
    /// The public enrollment edge (in-process link), as a browser or client reaches it.
    pub edge_url: String,
    /// The database this app runs on; reuse it with [`TestAppBuilder::database_url`].
    pub database_url: String,
    pub token: String,
    pub core: Core,
    /// Set when built with a manual clock.
    pub clock: Option<ManualClock>,
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    edge: tokio::task::JoinHandle<()>,
    worker: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

pub struct TestAppBuilder {
    backend: Backend,
    manual_clock: bool,
    cfg: CoreConfig,
    reuse: Option<String>,
    edge_rate_limit: u32,
    edge_trusted_proxies: Vec<ipnet::IpNet>,
}

impl TestApp {
    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder {
            backend,
            manual_clock: false,
            reuse: None,
            edge_rate_limit: 0,
            edge_trusted_proxies: vec![],
            cfg: CoreConfig {
                public_url: Some("https://edge.example.com/".into()),
                mail_retry_base_secs: 1,
                secret_key_file: Some(shared_key_file()),
                ..CoreConfig::default()
            },
        }
    }

    pub async fn spawn(backend: Backend) -> TestApp {
        Self::builder(backend).spawn().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Sends a request with the admin token; returns status and JSON body (Null if empty).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Some(&self.token), method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method.parse().expect("method"), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let json =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, json)
    }

    /// Raw request for bad-input tests.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method.parse().expect("method"), self.url(path)).bearer_auth(&self.token);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.body(body).send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn create_user(&self, username: &str) -> Value {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/user",
                Some(serde_json::json!({
                    "username": username, "first_name": "First", "last_name": "Last",
                    "email": format!("{username}@example.com")
                })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    pub async fn create_location(&self, name: &str, address: &str) -> Value {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/location",
                Some(serde_json::json!({
                    "name": name, "address": address, "endpoint": "vpn.example.com", "port": 51820,
                    "allowed_ips": ["10.0.0.0/8"]
                })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    pub async fn stop(self) {
        self.server.abort();
        self.edge.abort();
        self.worker.abort();
        let _ = self.server.await;
        let _ = self.edge.await;
        let _ = self.worker.await;
        self.core.store().close().await;
    }

    /// Stops core but keeps the database (a SQLite directory stays alive in the guard).
    pub async fn stop_keep_db(mut self) -> Option<tempfile::TempDir> {
        let dir = self._dir.take();
        self.stop().await;
        dir
    }
}

impl TestAppBuilder {
    pub fn manual_clock(mut self) -> Self {
        self.manual_clock = true;
        self
    }

    /// Per-IP request limit of the edge (tests default to none).
    pub fn edge_rate_limit(mut self, per_sec: u32) -> Self {
        self.edge_rate_limit = per_sec;
        self
    }

    /// Reverse proxies whose `X-Forwarded-For` the edge believes.
    pub fn edge_trusted_proxies(mut self, nets: &[&str]) -> Self {
        self.edge_trusted_proxies = nets.iter().map(|n| n.parse().expect("CIDR")).collect();
        self
    }

    /// Runs on an existing database (e.g. to restart core) instead of a fresh one.
    pub fn database_url(mut self, url: &str) -> Self {
        self.reuse = Some(url.to_owned());
        self
    }

    pub fn config(mut self, f: impl FnOnce(&mut CoreConfig)) -> Self {
        f(&mut self.cfg);
        self
    }

    pub async fn spawn(self) -> TestApp {
        let (store, database_url, dir) = match self.reuse {
            Some(url) => (Store::connect(&url, false).await.expect("reopen database"), url, None),
            None => fresh_store(self.backend).await,
        };
        let (clock, manual): (Arc<dyn onramp_core::Clock>, _) = if self.manual_clock {
            let c = ManualClock::new(SystemClock.now_secs());
            (Arc::new(c.clone()), Some(c))
        } else {
            (Arc::new(SystemClock), None)
        };
        let core = Core::new(store, clock, self.cfg).await.expect("core");
        core.bootstrap("admin@example.com").await.expect("bootstrap");
        let token = core.create_api_token(&Actor::system("test"), "test", "admin").await.expect("api token").token;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = onramp_api::router(onramp_api::AppState::new(core.clone()))
            .merge(onramp_ui::router(core.clone(), onramp_ui::UiConfig::default()));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
        });
        let edge_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind edge");
        let edge_addr = edge_listener.local_addr().expect("edge addr");
        let edge_cfg = onramp_edge::EdgeConfig {
            rate_limit_per_sec: self.edge_rate_limit,
            trusted_proxies: self.edge_trusted_proxies,
            ..Default::default()
        };
        let edge_app = onramp_edge::router(Arc::new(core.clone()), edge_cfg);
        let edge = tokio::spawn(async move {
            let _ = axum::serve(edge_listener, edge_app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await;
        });
        let worker = tokio::spawn(core.clone().run_mail_worker(Duration::from_millis(200)));
        TestApp {
            base_url: format!("http://{addr}"),
            edge_url: format!("http://{edge_addr}"),
            database_url,
            token,
            core,
            clock: manual,
            client: reqwest::Client::new(),
            server,
            edge,
            worker,
            _dir: dir,
        }
    }
}

/// One secret key file for every app of this test process, so that apps sharing a database
/// (replicas, restarts) decrypt each other's data as real replicas given the same
/// `ONRAMP_SECRET_KEY_FILE` do.
pub fn shared_key_file() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("key dir")).path().join("secret.key")
}

trait NowSecs {
    fn now_secs(&self) -> i64;
}

impl NowSecs for SystemClock {
    fn now_secs(&self) -> i64 {
        onramp_core::Clock::now(self)
    }
}
