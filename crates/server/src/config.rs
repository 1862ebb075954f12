//! Configuration layers: defaults < TOML file (`--config`) < `ONRAMP_*` environment <
//! flags. Secrets also come from `*_FILE` (a file holding the value). Every error names the
//! setting and where it came from.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `Debug` is written by hand below: the database URL may hold a password.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Explicit database URL; `None` = SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub http_addr: SocketAddr,
    /// Public edge listener (served by the edge; reserved and validated here).
    pub edge_addr: SocketAddr,
    /// Serve the public edge in the core process.
    pub edge_enabled: bool,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` the edge believes.
    pub edge_trusted_proxies: Vec<ipnet::IpNet>,
    /// Reverse proxies / load balancers in front of the admin address whose
    /// `X-Forwarded-For` counts (the web UI's sign-in limits and audit log use it).
    pub http_trusted_proxies: Vec<ipnet::IpNet>,
    /// Public API requests per second per client IP (0 = no limit).
    pub edge_rate_limit: u32,
    /// Edges core dials (standalone `onramp edge` processes), e.g. `http://edge1:50051`.
    pub edge_urls: Vec<String>,
    /// Where a standalone edge listens for core's link.
    pub edge_link_addr: SocketAddr,
    /// Link TLS. On core: CA of the edges' certificates; on an edge: CA of core's client
    /// certificate (then only that core gets in).
    pub link_ca_file: Option<PathBuf>,
    /// Link TLS. On an edge: its server certificate and key; on core: its client certificate.
    pub link_cert: Option<(PathBuf, PathBuf)>,
    /// On an edge: the DNS name core's client certificate must carry (subjectAltName), so
    /// that no other certificate from the same CA (the edge's own, say) can pose as core.
    pub link_core_name: Option<String>,
    /// Allow a plaintext or unauthenticated link (a private network or a test).
    pub link_insecure: bool,
    /// The edge serves HTTPS itself with this certificate chain and key.
    pub edge_tls: Option<(PathBuf, PathBuf)>,
    pub public_url: Option<String>,
    pub bootstrap_admin_email: String,
    pub log_format: LogFormat,
    pub mail_retry_base_secs: i64,
    pub mail_poll_interval_secs: u64,
    /// Mark the web UI's cookies `Secure` (the admin address is reached over HTTPS, e.g.
    /// through a reverse proxy).
    pub web_secure_cookies: bool,
    /// Web UI sessions end after this long without a request...
    pub web_session_idle_secs: i64,
    /// ...and this long after sign-in.
    pub web_session_max_secs: i64,
    /// Timeouts and connection caps of every HTTP listener (admin API and public edge).
    pub http_limits: HttpLimits,
    /// Key encrypting secrets at rest (mail bodies, SMTP password); default
    /// `<data_dir>/secret.key`, created 0600 on first start. Replicas sharing one database
    /// need the same file.
    pub secret_key_file: PathBuf,
    /// Where core listens for gateway agents.
    pub gateway_addr: SocketAddr,
    /// Certificate chain and key of the gateway listener.
    pub gateway_tls: Option<(PathBuf, PathBuf)>,
    /// Serve gateways in plaintext on a non-loopback address (a private network or a test).
    pub gateway_insecure: bool,
}

/// What each HTTP listener allows a client, so idle or slow sockets cannot pile up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a request's first byte (or the TLS handshake's) to its complete header.
    pub header_timeout: std::time::Duration,
    /// From the complete header to the end of the request body.
    pub body_timeout: std::time::Duration,
    /// A connection with no request under way: after accept or after an answer.
    pub idle_timeout: std::time::Duration,
    /// Open connections per listener; more are closed right after accept.
    pub max_connections: usize,
    /// Open connections per client address per listener (trusted proxies exempt).
    pub max_connections_per_ip: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where a setting's value came from, so an error names what the user actually wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Env,
    Flag,
}

/// Every setting as text, as each layer supplies it. `Debug` (below) hides the database URL.
/// `Serialize` only lists which fields a layer set (see `set_fields`).
#[derive(Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// Layer of each set field; fields a layer sets without an entry here are flags.
    #[serde(skip)]
    pub origins: BTreeMap<String, Origin>,
    pub data_dir: Option<String>,
    pub database_url: Option<String>,
    pub database_url_file: Option<String>,
    pub http_addr: Option<String>,
    pub edge_addr: Option<String>,
    pub edge_enabled: Option<toml::Value>,
    pub edge_trusted_proxies: Option<String>,
    pub http_trusted_proxies: Option<String>,
    pub edge_rate_limit: Option<toml::Value>,
    pub edge_urls: Option<String>,
    pub edge_link_addr: Option<String>,
    pub link_ca_file: Option<String>,
    pub link_cert_file: Option<String>,
    pub link_key_file: Option<String>,
    pub link_insecure: Option<toml::Value>,
    pub link_core_name: Option<String>,
    pub edge_tls_cert_file: Option<String>,
    pub edge_tls_key_file: Option<String>,
    pub public_url: Option<String>,
    pub bootstrap_admin_email: Option<String>,
    pub log_format: Option<String>,
    pub mail_retry_base_secs: Option<toml::Value>,
    pub web_secure_cookies: Option<toml::Value>,
    pub web_session_idle_secs: Option<toml::Value>,
    pub web_session_max_secs: Option<toml::Value>,
    pub mail_poll_interval_secs: Option<toml::Value>,
    pub http_header_timeout_secs: Option<toml::Value>,
    pub http_body_timeout_secs: Option<toml::Value>,
    pub http_idle_timeout_secs: Option<toml::Value>,
    pub http_max_connections: Option<toml::Value>,
    pub http_max_connections_per_ip: Option<toml::Value>,
    pub secret_key_file: Option<String>,
    pub gateway_addr: Option<String>,
    pub gateway_tls_cert_file: Option<String>,
    pub gateway_tls_key_file: Option<String>,
    pub gateway_insecure: Option<toml::Value>,
}

/// (setting name, environment variable) pairs, in one place so errors can name both.
const ENV: &[(&str, &str)] = &[
    ("data_dir", "ONRAMP_DATA_DIR"),
    ("database_url", "ONRAMP_DATABASE_URL"),
    ("database_url_file", "ONRAMP_DATABASE_URL_FILE"),
    ("http_addr", "ONRAMP_HTTP_ADDR"),
    ("edge_addr", "ONRAMP_EDGE_ADDR"),
    ("edge_enabled", "ONRAMP_EDGE_ENABLED"),
    ("edge_trusted_proxies", "ONRAMP_EDGE_TRUSTED_PROXIES"),
    ("http_trusted_proxies", "ONRAMP_HTTP_TRUSTED_PROXIES"),
    ("edge_rate_limit", "ONRAMP_EDGE_RATE_LIMIT"),
    ("edge_urls", "ONRAMP_EDGE_URLS"),
    ("edge_link_addr", "ONRAMP_EDGE_LINK_ADDR"),
    ("link_ca_file", "ONRAMP_LINK_CA_FILE"),
    ("link_cert_file", "ONRAMP_LINK_CERT_FILE"),
    ("link_key_file", "ONRAMP_LINK_KEY_FILE"),
    ("link_insecure", "ONRAMP_LINK_INSECURE"),
    ("link_core_name", "ONRAMP_LINK_CORE_NAME"),
    ("edge_tls_cert_file", "ONRAMP_EDGE_TLS_CERT_FILE"),
    ("edge_tls_key_file", "ONRAMP_EDGE_TLS_KEY_FILE"),
    ("public_url", "ONRAMP_PUBLIC_URL"),
    ("bootstrap_admin_email", "ONRAMP_BOOTSTRAP_ADMIN_EMAIL"),
    ("log_format", "ONRAMP_LOG_FORMAT"),
    ("mail_retry_base_secs", "ONRAMP_MAIL_RETRY_BASE_SECS"),
    ("web_secure_cookies", "ONRAMP_WEB_SECURE_COOKIES"),
    ("web_session_idle_secs", "ONRAMP_WEB_SESSION_IDLE_SECS"),
    ("web_session_max_secs", "ONRAMP_WEB_SESSION_MAX_SECS"),
    ("mail_poll_interval_secs", "ONRAMP_MAIL_POLL_INTERVAL_SECS"),
    ("http_header_timeout_secs", "ONRAMP_HTTP_HEADER_TIMEOUT_SECS"),
    ("http_body_timeout_secs", "ONRAMP_HTTP_BODY_TIMEOUT_SECS"),
    ("http_idle_timeout_secs", "ONRAMP_HTTP_IDLE_TIMEOUT_SECS"),
    ("http_max_connections", "ONRAMP_HTTP_MAX_CONNECTIONS"),
    ("http_max_connections_per_ip", "ONRAMP_HTTP_MAX_CONNECTIONS_PER_IP"),
    ("secret_key_file", "ONRAMP_SECRET_KEY_FILE"),
    ("gateway_addr", "ONRAMP_GATEWAY_ADDR"),
    ("gateway_tls_cert_file", "ONRAMP_GATEWAY_TLS_CERT_FILE"),
    ("gateway_tls_key_file", "ONRAMP_GATEWAY_TLS_KEY_FILE"),
    ("gateway_insecure", "ONRAMP_GATEWAY_INSECURE"),
];

/// `ONRAMP_*` names read outside `ENV` and outside the clap definitions (which
/// `unknown_env` is also given): the log filter and the client's provisioning helper.
const OTHER_ENV: &[&str] = &[
    "ONRAMP_LOG",
    "ONRAMP_TOKEN",
    "ONRAMP_GRAPH_URL",
    "ONRAMP_ENTRA_TENANT",
    "ONRAMP_ENTRA_CLIENT_ID",
    "ONRAMP_ENTRA_CLIENT_SECRET_FILE",
    "ONRAMP_ENTRA_LOGIN_URL",
    // The Entra ID sync also takes these.
    "ONRAMP_ENTRA_SYNC_GROUPS",
    "ONRAMP_ENTRA_SYNC",
    "ONRAMP_ENTRA_INVITE_ATTRIBUTES",
    // The directory sync (`serve` and `admin directory sync`); provision-directory's flags
    // take the first ones too.
    "ONRAMP_LDAP_URL",
    "ONRAMP_LDAP_BASE_DN",
    "ONRAMP_LDAP_BIND_DN",
    "ONRAMP_LDAP_PASSWORD_FILE",
    "ONRAMP_LDAP_PASSWORD",
    "ONRAMP_LDAP_USER_ATTRIBUTE",
    "ONRAMP_LDAP_SYNC_GROUPS",
    "ONRAMP_LDAP_INVITE_ATTRIBUTE",
    "ONRAMP_LDAP_SYNC",
    "ONRAMP_DIRECTORY_SYNC_TICK_SECS",
];

/// Names of other programs sharing the prefix (the desktop client, the test harness).
const OTHER_PREFIXES: &[&str] = &["ONRAMP_CLIENT_", "ONRAMP_TEST_"];

/// One warning per `ONRAMP_*` variable in `vars` that nothing reads, with the closest
/// known name when there is one: a typo would otherwise be silently ignored.
pub fn unknown_env(vars: impl IntoIterator<Item = String>, extra_known: &[String]) -> Vec<String> {
    let known: Vec<&str> = ENV
        .iter()
        .map(|(_, e)| *e)
        .chain(OTHER_ENV.iter().copied())
        .chain(extra_known.iter().map(String::as_str))
        .collect();
    let mut out: Vec<String> = vars
        .into_iter()
        .filter(|v| v.starts_with("ONRAMP_") && !known.contains(&v.as_str()))
        .filter(|v| !OTHER_PREFIXES.iter().any(|p| v.starts_with(p)))
        .map(|v| match closest(&v, &known) {
            Some(k) => format!("unknown environment variable {v} is ignored; did you mean {k}?"),
            None => format!("unknown environment variable {v} is ignored"),
        })
        .collect();
    out.sort();
    out
}

/// The known name nearest to `name` by edit distance, if near enough to be a typo.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (name.len() / 4).max(2);
    known.iter().map(|k| (edit_distance(name, k), *k)).filter(|(d, _)| *d <= limit).min().map(|(_, k)| k)
}

/// Levenshtein distance over bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn env_name(field: &str) -> &'static str {
    ENV.iter().find(|(f, _)| *f == field).map(|(_, e)| *e).unwrap_or("")
}

/// Turns a field name into the error prefix for where its value came from.
#[derive(Clone, Copy)]
struct Names<'a>(&'a BTreeMap<String, Origin>);

impl Names<'_> {
    fn err(&self, field: &str, msg: impl std::fmt::Display) -> anyhow::Error {
        match self.0.get(field) {
            Some(Origin::File(path)) => anyhow::anyhow!("invalid setting `{field}` in {}: {msg}", path.display()),
            Some(Origin::Env) => anyhow::anyhow!("invalid setting {} ({field}): {msg}", env_name(field)),
            Some(Origin::Flag) => anyhow::anyhow!("invalid --{}: {msg}", field.replace('_', "-")),
            None => anyhow::anyhow!("invalid setting {field} ({}): {msg}", env_name(field)),
        }
    }
}

/// A URL someone typed as `edge.example.com`: say how to write it.
fn url_hint(s: &str) -> &'static str {
    let s = s.trim();
    if !s.contains("://") && !s.is_empty() {
        "; add https:// (or http://) in front"
    } else {
        ""
    }
}

impl Raw {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        let mut raw: Raw = toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
        raw.origins = raw.set_fields().into_iter().map(|f| (f, Origin::File(path.to_owned()))).collect();
        Ok(raw)
    }

    /// Names of the fields this layer sets.
    fn set_fields(&self) -> Vec<String> {
        match toml::Value::try_from(self) {
            Ok(toml::Value::Table(t)) => t.keys().cloned().collect(),
            _ => vec![],
        }
    }

    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Self {
        let v = |f: &str| get(env_name(f)).filter(|s| !s.is_empty());
        let mut raw = Self {
            data_dir: v("data_dir"),
            database_url: v("database_url"),
            database_url_file: v("database_url_file"),
            http_addr: v("http_addr"),
            edge_addr: v("edge_addr"),
            edge_enabled: v("edge_enabled").map(toml::Value::String),
            edge_trusted_proxies: v("edge_trusted_proxies"),
            http_trusted_proxies: v("http_trusted_proxies"),
            edge_rate_limit: v("edge_rate_limit").map(toml::Value::String),
            edge_urls: v("edge_urls"),
            edge_link_addr: v("edge_link_addr"),
            link_ca_file: v("link_ca_file"),
            link_cert_file: v("link_cert_file"),
            link_key_file: v("link_key_file"),
            link_insecure: v("link_insecure").map(toml::Value::String),
            link_core_name: v("link_core_name"),
            edge_tls_cert_file: v("edge_tls_cert_file"),
            edge_tls_key_file: v("edge_tls_key_file"),
            public_url: v("public_url"),
            bootstrap_admin_email: v("bootstrap_admin_email"),
            log_format: v("log_format"),
            mail_retry_base_secs: v("mail_retry_base_secs").map(toml::Value::String),
            web_secure_cookies: v("web_secure_cookies").map(toml::Value::String),
            web_session_idle_secs: v("web_session_idle_secs").map(toml::Value::String),
            web_session_max_secs: v("web_session_max_secs").map(toml::Value::String),
            mail_poll_interval_secs: v("mail_poll_interval_secs").map(toml::Value::String),
            http_header_timeout_secs: v("http_header_timeout_secs").map(toml::Value::String),
            http_body_timeout_secs: v("http_body_timeout_secs").map(toml::Value::String),
            http_idle_timeout_secs: v("http_idle_timeout_secs").map(toml::Value::String),
            http_max_connections: v("http_max_connections").map(toml::Value::String),
            http_max_connections_per_ip: v("http_max_connections_per_ip").map(toml::Value::String),
            secret_key_file: v("secret_key_file"),
            gateway_addr: v("gateway_addr"),
            gateway_tls_cert_file: v("gateway_tls_cert_file"),
            gateway_tls_key_file: v("gateway_tls_key_file"),
            gateway_insecure: v("gateway_insecure").map(toml::Value::String),
            origins: BTreeMap::new(),
        };
        raw.origins = raw.set_fields().into_iter().map(|f| (f, Origin::Env)).collect();
        raw
    }

    /// `other` wins where it has a value.
    pub fn overlay(self, other: Raw) -> Raw {
        // Fields `other` sets take its origin (a layer without origins is the flags).
        let mut origins = self.origins.clone();
        for f in other.set_fields() {
            let origin = other.origins.get(&f).cloned().unwrap_or(Origin::Flag);
            origins.insert(f, origin);
        }
        // A URL given directly in a higher layer beats a _FILE from a lower one, and vice versa.
        let (database_url, database_url_file) = if other.database_url.is_some() || other.database_url_file.is_some() {
            (other.database_url, other.database_url_file)
        } else {
            (self.database_url, self.database_url_file)
        };
        Raw {
            origins,
            data_dir: other.data_dir.or(self.data_dir),
            database_url,
            database_url_file,
            http_addr: other.http_addr.or(self.http_addr),
            edge_addr: other.edge_addr.or(self.edge_addr),
            edge_enabled: other.edge_enabled.or(self.edge_enabled),
            edge_trusted_proxies: other.edge_trusted_proxies.or(self.edge_trusted_proxies),
            http_trusted_proxies: other.http_trusted_proxies.or(self.http_trusted_proxies),
            edge_rate_limit: other.edge_rate_limit.or(self.edge_rate_limit),
            edge_urls: other.edge_urls.or(self.edge_urls),
            edge_link_addr: other.edge_link_addr.or(self.edge_link_addr),
            link_ca_file: other.link_ca_file.or(self.link_ca_file),
            link_cert_file: other.link_cert_file.or(self.link_cert_file),
            link_key_file: other.link_key_file.or(self.link_key_file),
            link_insecure: other.link_insecure.or(self.link_insecure),
            link_core_name: other.link_core_name.or(self.link_core_name),
            edge_tls_cert_file: other.edge_tls_cert_file.or(self.edge_tls_cert_file),
            edge_tls_key_file: other.edge_tls_key_file.or(self.edge_tls_key_file),
            public_url: other.public_url.or(self.public_url),
            bootstrap_admin_email: other.bootstrap_admin_email.or(self.bootstrap_admin_email),
            log_format: other.log_format.or(self.log_format),
            mail_retry_base_secs: other.mail_retry_base_secs.or(self.mail_retry_base_secs),
            web_secure_cookies: other.web_secure_cookies.or(self.web_secure_cookies),
            web_session_idle_secs: other.web_session_idle_secs.or(self.web_session_idle_secs),
            web_session_max_secs: other.web_session_max_secs.or(self.web_session_max_secs),
            mail_poll_interval_secs: other.mail_poll_interval_secs.or(self.mail_poll_interval_secs),
            http_header_timeout_secs: other.http_header_timeout_secs.or(self.http_header_timeout_secs),
            http_body_timeout_secs: other.http_body_timeout_secs.or(self.http_body_timeout_secs),
            http_idle_timeout_secs: other.http_idle_timeout_secs.or(self.http_idle_timeout_secs),
            http_max_connections: other.http_max_connections.or(self.http_max_connections),
            http_max_connections_per_ip: other.http_max_connections_per_ip.or(self.http_max_connections_per_ip),
            secret_key_file: other.secret_key_file.or(self.secret_key_file),
            gateway_addr: other.gateway_addr.or(self.gateway_addr),
            gateway_tls_cert_file: other.gateway_tls_cert_file.or(self.gateway_tls_cert_file),
            gateway_tls_key_file: other.gateway_tls_key_file.or(self.gateway_tls_key_file),
            gateway_insecure: other.gateway_insecure.or(self.gateway_insecure),
        }
    }

    pub fn resolve(mut self) -> anyhow::Result<Config> {
        let origins = std::mem::take(&mut self.origins);
        let names = Names(&origins);
        let addr = |field: &str, v: Option<String>, default: &str| -> anyhow::Result<SocketAddr> {
            let s = v.unwrap_or_else(|| default.to_owned());
            s.parse().map_err(|_| names.err(field, format!("{s:?} is not an address like 127.0.0.1:8000")))
        };
        let int = |field: &str, v: Option<toml::Value>, default: i64, min: i64, max: i64| -> anyhow::Result<i64> {
            let n = match v {
                None => default,
                Some(toml::Value::Integer(i)) => i,
                Some(toml::Value::String(s)) => {
                    s.trim().parse().map_err(|_| names.err(field, format!("{s:?} is not a whole number")))?
                }
                Some(other) => return Err(names.err(field, format!("expected a whole number, got {other}"))),
            };
            if !(min..=max).contains(&n) {
                return Err(names.err(field, format!("{n} is outside {min}..={max}")));
            }
            Ok(n)
        };
        let database_url = match (self.database_url, self.database_url_file) {
            (Some(u), _) => Some(u),
            (None, Some(f)) => Some(
                std::fs::read_to_string(&f)
                    .map_err(|e| names.err("database_url_file", format!("cannot read {f}: {e}")))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if let Some(u) = &database_url {
            if !(u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return Err(names.err("database_url", "must start with sqlite:// or postgres://"));
            }
        }
        let public_url = match self.public_url {
            Some(u) => Some(
                onramp_core::settings::normalize_public_url("public_url", &u)
                    .map_err(|e| names.err("public_url", e))?,
            ),
            None => None,
        };
        let bootstrap_admin_email = self.bootstrap_admin_email.unwrap_or_else(|| "admin@example.com".into());
        onramp_domain::validate::Email::parse("bootstrap_admin_email", &bootstrap_admin_email)
            .map_err(|e| names.err("bootstrap_admin_email", e.message))?;
        let log_format = match self.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(names.err("log_format", format!("{other:?}: use text or json"))),
        };
        let boolean = |field: &str, v: Option<toml::Value>, default: bool| -> anyhow::Result<bool> {
            match v {
                None => Ok(default),
                Some(toml::Value::Boolean(b)) => Ok(b),
                Some(toml::Value::String(s)) => match s.trim() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" => Ok(false),
                    other => Err(names.err(field, format!("{other:?}: use true or false"))),
                },
                Some(other) => Err(names.err(field, format!("expected true or false, got {other}"))),
            }
        };
        let edge_enabled = boolean("edge_enabled", self.edge_enabled, true)?;
        // A certificate goes with its key; one without the other is a mistake.
        let pair = |cert: (&str, Option<String>), key: (&str, Option<String>)| match (cert.1, key.1) {
            (Some(c), Some(k)) => Ok(Some((PathBuf::from(c), PathBuf::from(k)))),
            (None, None) => Ok(None),
            (Some(_), None) => {
                Err(names.err(key.0, format!("missing: {} is set, so its private key is needed", cert.0)))
            }
            (None, Some(_)) => {
                Err(names.err(cert.0, format!("missing: {} is set, so its certificate is needed", key.0)))
            }
        };
        let link_cert = pair(("link_cert_file", self.link_cert_file), ("link_key_file", self.link_key_file))?;
        let edge_tls =
            pair(("edge_tls_cert_file", self.edge_tls_cert_file), ("edge_tls_key_file", self.edge_tls_key_file))?;
        let gateway_tls = pair(
            ("gateway_tls_cert_file", self.gateway_tls_cert_file),
            ("gateway_tls_key_file", self.gateway_tls_key_file),
        )?;
        let proxies = |field: &str, value: &Option<String>| -> anyhow::Result<Vec<ipnet::IpNet>> {
            match value {
                None => Ok(vec![]),
                Some(list) => list
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.parse::<ipnet::IpNet>()
                            .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                            .map_err(|_| names.err(field, format!("{p:?} is not an IP address or CIDR range")))
                    })
                    .collect(),
            }
        };
        let edge_trusted_proxies = proxies("edge_trusted_proxies", &self.edge_trusted_proxies)?;
        let http_trusted_proxies = proxies("http_trusted_proxies", &self.http_trusted_proxies)?;
        let link_core_name = match self.link_core_name.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(n) if rustls::pki_types::DnsName::try_from(n).is_ok() => Some(n.to_owned()),
            Some(n) => return Err(names.err("link_core_name", format!("{n:?} is not a DNS name like onramp-core"))),
        };
        let edge_urls = match &self.edge_urls {
            None => vec![],
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| match url::Url::parse(u) {
                    Ok(p) if matches!(p.scheme(), "http" | "https") && p.host_str().is_some() => Ok(u.to_owned()),
                    _ => Err(names.err(
                        "edge_urls",
                        format!("{u:?} is not an http(s) URL like https://edge.internal:50051{}", url_hint(u)),
                    )),
                })
                .collect::<anyhow::Result<_>>()?,
        };
        let secs = |field: &str, v: Option<toml::Value>, default: i64| -> anyhow::Result<std::time::Duration> {
            Ok(std::time::Duration::from_secs(int(field, v, default, 1, 3600)? as u64))
        };
        let http_limits = HttpLimits {
            header_timeout: secs("http_header_timeout_secs", self.http_header_timeout_secs, 10)?,
            body_timeout: secs("http_body_timeout_secs", self.http_body_timeout_secs, 30)?,
            idle_timeout: secs("http_idle_timeout_secs", self.http_idle_timeout_secs, 60)?,
            max_connections: int("http_max_connections", self.http_max_connections, 1024, 1, 1_000_000)? as usize,
            max_connections_per_ip: int(
                "http_max_connections_per_ip",
                self.http_max_connections_per_ip,
                128,
                1,
                1_000_000,
            )? as usize,
        };
        let data_dir = PathBuf::from(self.data_dir.unwrap_or_else(|| "./onramp-data".into()));
        Ok(Config {
            gateway_addr: addr("gateway_addr", self.gateway_addr, "127.0.0.1:50055")?,
            gateway_tls,
            gateway_insecure: boolean("gateway_insecure", self.gateway_insecure, false)?,
            http_limits,
            edge_urls,
            edge_link_addr: addr("edge_link_addr", self.edge_link_addr.clone(), "0.0.0.0:50051")?,
            link_ca_file: self.link_ca_file.map(PathBuf::from),
            link_cert,
            link_insecure: boolean("link_insecure", self.link_insecure, false)?,
            link_core_name,
            edge_tls,
            edge_enabled,
            edge_trusted_proxies,
            http_trusted_proxies,
            edge_rate_limit: int("edge_rate_limit", self.edge_rate_limit, 30, 0, 1_000_000)? as u32,
            secret_key_file: match self.secret_key_file {
                Some(f) => PathBuf::from(f),
                None => data_dir.join("secret.key"),
            },
            data_dir,
            database_url,
            http_addr: addr("http_addr", self.http_addr, "127.0.0.1:8000")?,
            edge_addr: addr("edge_addr", self.edge_addr, "0.0.0.0:8080")?,
            public_url,
            bootstrap_admin_email,
            log_format,
            mail_retry_base_secs: int("mail_retry_base_secs", self.mail_retry_base_secs, 30, 1, 3600)?,
            web_secure_cookies: boolean("web_secure_cookies", self.web_secure_cookies, false)?,
            web_session_idle_secs: int("web_session_idle_secs", self.web_session_idle_secs, 1800, 60, 86_400)?,
            web_session_max_secs: int("web_session_max_secs", self.web_session_max_secs, 43_200, 300, 2_592_000)?,
            mail_poll_interval_secs: int("mail_poll_interval_secs", self.mail_poll_interval_secs, 5, 1, 3600)? as u64,
        })
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| "<redacted>"))
            .field("http_addr", &self.http_addr)
            .field("edge_addr", &self.edge_addr)
            .field("edge_enabled", &self.edge_enabled)
            .field("edge_trusted_proxies", &self.edge_trusted_proxies)
            .field("http_trusted_proxies", &self.http_trusted_proxies)
            .field("edge_rate_limit", &self.edge_rate_limit)
            .field("edge_urls", &self.edge_urls)
            .field("edge_link_addr", &self.edge_link_addr)
            .field("link_ca_file", &self.link_ca_file)
            .field("link_cert", &self.link_cert)
            .field("link_core_name", &self.link_core_name)
            .field("link_insecure", &self.link_insecure)
            .field("edge_tls", &self.edge_tls)
            .field("public_url", &self.public_url)
            .field("bootstrap_admin_email", &self.bootstrap_admin_email)
            .field("log_format", &self.log_format)
            .field("mail_retry_base_secs", &self.mail_retry_base_secs)
            .field("web_secure_cookies", &self.web_secure_cookies)
            .field("web_session_idle_secs", &self.web_session_idle_secs)
            .field("web_session_max_secs", &self.web_session_max_secs)
            .field("mail_poll_interval_secs", &self.mail_poll_interval_secs)
            .field("secret_key_file", &self.secret_key_file)
            .field("http_limits", &self.http_limits)
            .field("gateway_addr", &self.gateway_addr)
            .field("gateway_tls", &self.gateway_tls)
            .field("gateway_insecure", &self.gateway_insecure)
            .finish()
    }
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raw")
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| "<redacted>"))
            .field("database_url_file", &self.database_url_file)
            .field("http_addr", &self.http_addr)
            .field("edge_addr", &self.edge_addr)
            .field("edge_enabled", &self.edge_enabled)
            .field("edge_trusted_proxies", &self.edge_trusted_proxies)
            .field("http_trusted_proxies", &self.http_trusted_proxies)
            .field("edge_rate_limit", &self.edge_rate_limit)
            .field("edge_urls", &self.edge_urls)
            .field("edge_link_addr", &self.edge_link_addr)
            .field("link_ca_file", &self.link_ca_file)
            .field("link_cert_file", &self.link_cert_file)
            .field("link_key_file", &self.link_key_file)
            .field("link_insecure", &self.link_insecure)
            .field("link_core_name", &self.link_core_name)
            .field("edge_tls_cert_file", &self.edge_tls_cert_file)
            .field("edge_tls_key_file", &self.edge_tls_key_file)
            .field("public_url", &self.public_url)
            .field("bootstrap_admin_email", &self.bootstrap_admin_email)
            .field("log_format", &self.log_format)
            .field("mail_retry_base_secs", &self.mail_retry_base_secs)
            .field("web_secure_cookies", &self.web_secure_cookies)
            .field("web_session_idle_secs", &self.web_session_idle_secs)
            .field("web_session_max_secs", &self.web_session_max_secs)
            .field("mail_poll_interval_secs", &self.mail_poll_interval_secs)
            .field("gateway_addr", &self.gateway_addr)
            .field("gateway_tls_cert_file", &self.gateway_tls_cert_file)
            .field("gateway_tls_key_file", &self.gateway_tls_key_file)
            .field("gateway_insecure", &self.gateway_insecure)
            .finish()
    }
}

impl Config {
    /// The database URL to use and whether a missing SQLite file may be created: only the
    /// default location is created implicitly.
    pub fn database(&self) -> (String, bool) {
        match &self.database_url {
            Some(u) => (u.clone(), false),
            None => (format!("sqlite://{}", self.data_dir.join("onramp.db").display()), true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_database_url() {
        let url = "postgres://onramp:s3cretPW@db/onramp";
        let raw = env(&[("ONRAMP_DATABASE_URL", url), ("ONRAMP_PUBLIC_URL", "https://edge.example.com")]);
        let text = format!("{raw:?}");
        assert!(!text.contains("s3cretPW") && text.contains("<redacted>"), "{text}");
        let cfg = raw.resolve().unwrap();
        assert_eq!(cfg.database_url.as_deref(), Some(url));
        let text = format!("{cfg:?}");
        assert!(!text.contains("s3cretPW") && text.contains("<redacted>"), "{text}");
    }

    fn env(pairs: &[(&str, &str)]) -> Raw {
        let m: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Raw::from_env(|k| m.get(k).cloned())
    }

    #[test]
    fn layers_and_defaults() {
        let file: Raw =
            toml::from_str("http_addr = \"127.0.0.1:9000\"\ndata_dir = \"/srv/x\"\nmail_retry_base_secs = 5").unwrap();
        let c = file.overlay(env(&[("ONRAMP_HTTP_ADDR", "127.0.0.1:9001")])).resolve().unwrap();
        assert_eq!(c.http_addr.port(), 9001);
        assert_eq!(c.data_dir, PathBuf::from("/srv/x"));
        assert_eq!(c.mail_retry_base_secs, 5);
        assert_eq!(c.edge_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.database().0, "sqlite:///srv/x/onramp.db");
        assert!(c.database().1);
        let d = std::time::Duration::from_secs;
        assert_eq!(
            c.http_limits,
            HttpLimits {
                header_timeout: d(10),
                body_timeout: d(30),
                idle_timeout: d(60),
                max_connections: 1024,
                max_connections_per_ip: 128
            }
        );
        let file: Raw = toml::from_str("http_idle_timeout_secs = 5\nhttp_max_connections_per_ip = 3").unwrap();
        let c = file.overlay(env(&[("ONRAMP_HTTP_IDLE_TIMEOUT_SECS", "7")])).resolve().unwrap();
        assert_eq!((c.http_limits.idle_timeout, c.http_limits.max_connections_per_ip), (d(7), 3));
    }

    #[test]
    fn errors_name_the_field() {
        let e = env(&[("ONRAMP_HTTP_ADDR", "nope")]).resolve().unwrap_err().to_string();
        assert!(e.contains("http_addr") && e.contains("ONRAMP_HTTP_ADDR"), "{e}");
        let e = env(&[("ONRAMP_DATABASE_URL", "mysql://x")]).resolve().unwrap_err().to_string();
        assert!(e.contains("database_url"), "{e}");
        let e = env(&[("ONRAMP_PUBLIC_URL", "ftp://x")]).resolve().unwrap_err().to_string();
        assert!(e.contains("public_url"), "{e}");
        let e = env(&[("ONRAMP_LINK_CORE_NAME", "core name!")]).resolve().unwrap_err().to_string();
        assert!(e.contains("link_core_name") && e.contains("ONRAMP_LINK_CORE_NAME"), "{e}");
        let e = env(&[("ONRAMP_EDGE_TRUSTED_PROXIES", "10.0.0.0/8, proxy")]).resolve().unwrap_err().to_string();
        assert!(e.contains("edge_trusted_proxies") && e.contains("\"proxy\""), "{e}");
        let c = env(&[("ONRAMP_EDGE_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")]).resolve().unwrap();
        assert_eq!(c.edge_trusted_proxies, ["10.0.0.0/8".parse().unwrap(), "192.0.2.1/32".parse().unwrap()]);
        let e = env(&[("ONRAMP_HTTP_HEADER_TIMEOUT_SECS", "0")]).resolve().unwrap_err().to_string();
        assert!(e.contains("http_header_timeout_secs") && e.contains("outside 1..=3600"), "{e}");
        let e = env(&[("ONRAMP_HTTP_MAX_CONNECTIONS", "lots")]).resolve().unwrap_err().to_string();
        assert!(e.contains("ONRAMP_HTTP_MAX_CONNECTIONS") && e.contains("not a whole number"), "{e}");
        let e = toml::from_str::<Raw>("htp_addr = \"x\"").unwrap_err().to_string();
        assert!(e.contains("htp_addr"), "{e}");
    }

    #[test]
    fn unknown_env_names_get_the_closest_known_one() {
        assert_eq!(edit_distance("ONRAMP_DATADIR", "ONRAMP_DATA_DIR"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            closest("ONRAMP_PUBLIC_URLS", &["ONRAMP_PUBLIC_URL", "ONRAMP_EDGE_URLS"]),
            Some("ONRAMP_PUBLIC_URL")
        );
        assert_eq!(closest("ONRAMP_SOMETHING_ELSE", &["ONRAMP_PUBLIC_URL"]), None);
        let vars = ["ONRAMP_HTTP_ADR", "ONRAMP_HTTP_ADDR", "ONRAMP_LOG", "ONRAMP_CLIENT_SOCKET", "PATH", "ONRAMP_FROB"];
        let extra = vec!["ONRAMP_GATEWAY_CORE_URL".to_owned()];
        let w = unknown_env(vars.iter().map(|v| v.to_string()).chain(["ONRAMP_GATEWAY_CORE_URL".into()]), &extra);
        assert_eq!(
            w,
            [
                "unknown environment variable ONRAMP_FROB is ignored",
                "unknown environment variable ONRAMP_HTTP_ADR is ignored; did you mean ONRAMP_HTTP_ADDR?",
            ]
        );
    }

    #[test]
    fn errors_name_where_the_value_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("onramp.toml");
        std::fs::write(&f, "http_addr = \"nope\"\n").unwrap();
        let file = Raw::from_file(&f).unwrap();
        let e = file.clone().resolve().unwrap_err().to_string();
        assert!(e.contains("`http_addr`") && e.contains(&f.display().to_string()), "{e}");
        assert!(!e.contains("ONRAMP_HTTP_ADDR"), "{e}");
        // The environment overrides the file: then the variable is named.
        let e = file.clone().overlay(env(&[("ONRAMP_HTTP_ADDR", "bad")])).resolve().unwrap_err().to_string();
        assert!(e.contains("ONRAMP_HTTP_ADDR") && !e.contains("onramp.toml"), "{e}");
        // A flag overrides both: the flag is named.
        let flags = Raw { http_addr: Some("worse".into()), ..Default::default() };
        let e = file.overlay(env(&[])).overlay(flags).resolve().unwrap_err().to_string();
        assert!(e.contains("--http-addr"), "{e}");
        let e = env(&[("ONRAMP_PUBLIC_URL", "edge.example.com")]).resolve().unwrap_err().to_string();
        assert!(e.contains("add https://"), "{e}");
        let e = env(&[("ONRAMP_EDGE_URLS", "edge.internal:50051")]).resolve().unwrap_err().to_string();
        assert!(e.contains("add https://"), "{e}");
    }

    #[test]
    fn gateway_listener_settings() {
        let c = env(&[]).resolve().unwrap();
        assert_eq!(c.gateway_addr.to_string(), "127.0.0.1:50055", "loopback by default");
        assert_eq!((c.gateway_tls.is_none(), c.gateway_insecure), (true, false));
        let file: Raw = toml::from_str("gateway_addr = \"0.0.0.0:50055\"\ngateway_insecure = true").unwrap();
        let c = file.overlay(env(&[("ONRAMP_GATEWAY_ADDR", "10.0.0.5:6000")])).resolve().unwrap();
        assert_eq!((c.gateway_addr.to_string().as_str(), c.gateway_insecure), ("10.0.0.5:6000", true));
        let e = env(&[("ONRAMP_GATEWAY_TLS_CERT_FILE", "/x.pem")]).resolve().unwrap_err().to_string();
        assert!(e.contains("gateway_tls_key_file") && e.contains("ONRAMP_GATEWAY_TLS_KEY_FILE"), "{e}");
        let e = env(&[("ONRAMP_GATEWAY_INSECURE", "perhaps")]).resolve().unwrap_err().to_string();
        assert!(e.contains("ONRAMP_GATEWAY_INSECURE"), "{e}");
    }

    #[test]
    fn database_url_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("url");
        std::fs::write(&f, "postgres://u:secret@db/onramp\n").unwrap();
        let c = env(&[("ONRAMP_DATABASE_URL_FILE", f.to_str().unwrap())]).resolve().unwrap();
        assert_eq!(c.database(), ("postgres://u:secret@db/onramp".into(), false));
    }
}
