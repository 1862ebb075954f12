//! The edge API of PROTOCOL.md section 3 as the desktop client calls it: the session cookie
//! copied by hand, retries with backoff on network errors, and errors a person can act on.

use onramp_proto::{DeviceConfigResponse, EnrollmentStartResponse};
use serde_json::{json, Value};
use std::time::Duration;

pub const CLIENT_PLATFORM: &str = std::env::consts::OS;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The edge could not be reached (after retries).
    #[error("cannot reach {url}: {message}")]
    Network { url: String, message: String },
    // The token cases carry the contact the server named (see [`ApiError::admin`]).
    #[error("the enrollment token has expired; ask your administrator for a new one")]
    TokenExpired { admin: Option<String> },
    #[error("the enrollment token was already used; ask your administrator for a new one")]
    TokenUsed { admin: Option<String> },
    #[error(
        "the enrollment token was revoked (a newer one was issued); use the newest token or ask your administrator"
    )]
    TokenRevoked { admin: Option<String> },
    #[error(
        "the enrollment session ended (sessions last 10 minutes); start again with a new token from your administrator"
    )]
    SessionExpired { admin: Option<String> },
    #[error("the enrollment token is not known to {url}; check the token and the URL, or ask your administrator")]
    UnknownToken { url: String },
    /// The account is disabled; the server's message names whom to contact.
    #[error("{message}")]
    AccountDisabled { message: String },
    /// The administrator deleted this device: its polling token is dead for good.
    #[error("this device was removed by the administrator")]
    DeviceRemoved,
    /// 401/403 outside enrollment (a polling token no longer accepted).
    #[error("{url} refused the request ({status}): {message}")]
    Unauthorized { url: String, status: u16, message: String },
    /// 402: the server no longer serves this client (the protocol's "stop polling").
    #[error("{url} stopped serving this client (402)")]
    Stopped { url: String },
    /// A request the server judged wrong (400/404/409...), with its message.
    #[error("{message}")]
    Rejected { status: u16, code: Option<String>, message: String },
    #[error("{url} answered {status}: {message}")]
    Server { url: String, status: u16, message: String },
    /// The client follows no redirect: it could send the token and password elsewhere.
    #[error("{url} answered with a redirect ({status}) to {location}; the client follows no redirects: check the enrollment URL")]
    Redirect { url: String, status: u16, location: String },
    /// An answer that is not what the protocol says (too large, or unusable data).
    #[error("{url} sent an unusable answer: {message}")]
    BadAnswer { url: String, message: String },
}

impl ApiError {
    /// Token problems the user must take to their administrator.
    pub fn is_token_problem(&self) -> bool {
        matches!(
            self,
            ApiError::TokenExpired { .. }
                | ApiError::TokenUsed { .. }
                | ApiError::TokenRevoked { .. }
                | ApiError::SessionExpired { .. }
                | ApiError::UnknownToken { .. }
        )
    }

    /// The administrator the server named for a refused token (`Name <email>, phone`).
    pub fn admin(&self) -> Option<&str> {
        match self {
            ApiError::TokenExpired { admin }
            | ApiError::TokenUsed { admin }
            | ApiError::TokenRevoked { admin }
            | ApiError::SessionExpired { admin } => admin.as_deref(),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct EdgeClient {
    http: reqwest::Client,
    base: url::Url,
    cookie: Option<String>,
    retries: u32,
    backoff: Duration,
}

impl EdgeClient {
    /// `base` is the public edge URL (`enrollment_url`). `retries` network attempts after
    /// the first, with doubling backoff.
    pub fn new(base: &url::Url) -> EdgeClient {
        let retries = std::env::var("ONRAMP_CLIENT_RETRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
        let http = crate::http::client();
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        EdgeClient { http, base, cookie: None, retries, backoff: Duration::from_millis(500) }
    }

    pub fn base(&self) -> &url::Url {
        &self.base
    }

    async fn post(&mut self, path: &str, body: Value) -> Result<Value, ApiError> {
        let url = self.base.join(path).map_err(|e| ApiError::Network { url: path.into(), message: e.to_string() })?;
        let mut delay = self.backoff;
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .post(url.clone())
                .header("defguard-client-version", env!("CARGO_PKG_VERSION"))
                .header("defguard-client-platform", CLIENT_PLATFORM)
                .json(&body);
            if let Some(c) = &self.cookie {
                req = req.header(reqwest::header::COOKIE, c);
            }
            let retryable = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if let Some(c) = resp
                        .headers()
                        .get(reqwest::header::SET_COOKIE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split(';').next())
                        .filter(|c| c.starts_with("defguard_proxy="))
                    {
                        self.cookie = Some(c.to_owned());
                    }
                    if (300..400).contains(&status) {
                        let location = resp
                            .headers()
                            .get(reqwest::header::LOCATION)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("an unnamed place")
                            .to_owned();
                        return Err(ApiError::Redirect { url: origin(&url), status, location });
                    }
                    match crate::http::read_json(resp).await {
                        Ok(v) if (200..300).contains(&status) => return Ok(v),
                        Ok(v) => {
                            let err = classify(&url, status, &v);
                            if !matches!(status, 502..=504) || attempt >= self.retries {
                                return Err(err);
                            }
                            err
                        }
                        // A connection lost mid-answer is a lost connection: sent again like
                        // one (the calls that change state are safe to repeat in a session).
                        Err(e @ crate::http::BodyError::Read(_)) if attempt < self.retries => {
                            ApiError::Network { url: url.to_string(), message: e.to_string() }
                        }
                        Err(e) => return Err(ApiError::BadAnswer { url: origin(&url), message: e.to_string() }),
                    }
                }
                Err(e) => {
                    let err = ApiError::Network { url: url.to_string(), message: onramp_proto::error_chain(&e) };
                    if attempt >= self.retries {
                        return Err(err);
                    }
                    err
                }
            };
            attempt += 1;
            // Jitter (half to all of the delay): a fleet that lost the edge at the same
            // moment must not come back in lockstep.
            let wait = jittered(delay);
            tracing::warn!(error = %retryable, retry_in = ?wait, "retrying");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(Duration::from_secs(8));
        }
    }

    /// Opens (or rejoins) the enrollment session; the session cookie is kept for later calls.
    pub async fn start(&mut self, token: &str) -> Result<EnrollmentStartResponse, ApiError> {
        self.cookie = None;
        let v = self.post("api/v1/enrollment/start", json!({ "token": token })).await?;
        decode(v)
    }

    pub async fn activate_user(&mut self, password: &str, phone: Option<&str>) -> Result<(), ApiError> {
        self.post("api/v1/enrollment/activate_user", json!({ "password": password, "phone_number": phone })).await?;
        Ok(())
    }

    pub async fn create_device(&mut self, name: &str, pubkey: &str) -> Result<DeviceConfigResponse, ApiError> {
        let v = self.post("api/v1/enrollment/create_device", json!({ "name": name, "pubkey": pubkey })).await?;
        self.device_config(v)
    }

    pub async fn network_info(&mut self, pubkey: &str) -> Result<DeviceConfigResponse, ApiError> {
        let v = self.post("api/v1/enrollment/network_info", json!({ "pubkey": pubkey })).await?;
        self.device_config(v)
    }

    pub async fn poll(&mut self, polling_token: &str) -> Result<DeviceConfigResponse, ApiError> {
        let v = self.post("api/v1/poll", json!({ "token": polling_token })).await?;
        self.device_config(v["device_config"].clone())
    }

    /// A device configuration whose WireGuard texts are rebuilt from the structured fields
    /// (the server's text could carry hook lines that wg-quick runs as root).
    fn device_config(&self, v: Value) -> Result<DeviceConfigResponse, ApiError> {
        let mut resp: DeviceConfigResponse = decode(v)?;
        crate::wgconf::rebuild(&mut resp)
            .map_err(|message| ApiError::BadAnswer { url: origin(&self.base), message })?;
        Ok(resp)
    }
}

/// A random wait between half of `delay` and all of it.
fn jittered(delay: Duration) -> Duration {
    use rand::Rng;
    delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// `Name <email>, phone`: one line naming an administrator.
pub fn contact_line(a: &onramp_proto::AdminInfo) -> String {
    match &a.phone_number {
        Some(p) if !p.is_empty() => format!("{} <{}>, {}", a.name, a.email, p),
        _ => format!("{} <{}>", a.name, a.email),
    }
}

/// `scheme://host[:port]` of a URL, for messages.
fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::Rejected {
        status: 200,
        code: None,
        message: format!("unexpected answer from the server: {e}"),
    })
}

/// Maps an error answer: PROTOCOL.md's `"token expired"` / `"invalid token"`, refined by
/// Onramp's `code` where the edge sends one.
fn classify(url: &url::Url, status: u16, v: &Value) -> ApiError {
    let message = v["error"].as_str().unwrap_or("").to_owned();
    let code = v["code"].as_str().map(str::to_owned);
    let base = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    let is_enrollment = url.path().contains("/enrollment/");
    let admin = serde_json::from_value::<onramp_proto::AdminInfo>(v["admin"].clone()).ok().map(|a| contact_line(&a));
    match (status, code.as_deref(), message.as_str()) {
        (_, Some("token_expired"), _) | (401, None, "token expired") => ApiError::TokenExpired { admin },
        (_, Some("token_used"), _) => ApiError::TokenUsed { admin },
        (_, Some("token_revoked"), _) => ApiError::TokenRevoked { admin },
        (_, Some("session_expired"), _) => ApiError::SessionExpired { admin },
        (401 | 403, Some("user_disabled"), _) => ApiError::AccountDisabled {
            message: if message.is_empty() {
                "your account is disabled; contact your administrator".into()
            } else {
                message
            },
        },
        (401 | 403, Some("device_removed"), _) => ApiError::DeviceRemoved,
        (401, _, "invalid token") if is_enrollment || url.path().ends_with("/start") => {
            ApiError::UnknownToken { url: base }
        }
        (402, _, _) => ApiError::Stopped { url: base },
        (401 | 403, _, _) => ApiError::Unauthorized { url: base, status, message },
        (400..=499, _, _) => ApiError::Rejected {
            status,
            code,
            message: if message.is_empty() { format!("the server refused the request ({status})") } else { message },
        },
        _ => ApiError::Server {
            url: base,
            status,
            message: if message.is_empty() { "no details".into() } else { message },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_protocol_errors() {
        let u = url::Url::parse("https://edge.example.com/api/v1/enrollment/start").unwrap();
        assert_eq!(classify(&u, 401, &json!({"error": "token expired"})), ApiError::TokenExpired { admin: None });
        let used = json!({"error": "invalid token", "code": "token_used",
            "admin": {"name": "Ada Admin", "email": "ada@example.com", "phone_number": null}});
        assert_eq!(classify(&u, 401, &used), ApiError::TokenUsed { admin: Some("Ada Admin <ada@example.com>".into()) });
        assert!(matches!(classify(&u, 401, &json!({"error": "invalid token"})), ApiError::UnknownToken { .. }));
        let p = url::Url::parse("https://edge.example.com/api/v1/poll").unwrap();
        assert!(matches!(classify(&p, 402, &json!({})), ApiError::Stopped { .. }));
        assert!(matches!(classify(&p, 403, &json!({"error": "x"})), ApiError::Unauthorized { status: 403, .. }));
        assert!(matches!(classify(&p, 500, &json!({})), ApiError::Server { .. }));
    }
}
