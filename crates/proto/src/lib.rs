//! Wire types fixed by PROTOCOL.md: the public edge enrollment API (section 3) and the
//! admin provisioning subset (section 4). Field names are a compatibility contract; change
//! them only together with PROTOCOL.md.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Error body of the edge API: `{"error": "<message>"}`, the message clients match on
/// ("invalid token", "token expired", ...). Onramp adds what a person needs to read.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EdgeError {
    pub error: String,
    /// Onramp: a stable code telling the cases apart (`token_used`, `token_revoked`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Onramp: a sentence for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Onramp: whom to ask for a new token, on a refused start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct AdminInfo {
    pub name: String,
    pub phone_number: Option<String>,
    pub email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct InitialUserInfo {
    pub first_name: String,
    pub last_name: String,
    pub login: String,
    pub email: String,
    pub phone_number: Option<String>,
    pub is_active: bool,
    pub device_names: Vec<String>,
    pub enrolled: bool,
    pub is_admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct EnrollmentSettings {
    pub vpn_setup_optional: bool,
    pub only_client_activation: bool,
    pub admin_device_management: bool,
    pub smtp_configured: bool,
    pub mfa_required: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct InstanceInfo {
    pub id: String,
    pub name: String,
    pub url: String,
    pub proxy_url: String,
    pub username: String,
    pub enterprise_enabled: bool,
    pub disable_all_traffic: bool,
    pub openid_display_name: Option<String>,
    pub client_traffic_policy: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct EnrollmentStartResponse {
    pub admin: Option<AdminInfo>,
    pub user: InitialUserInfo,
    pub deadline_timestamp: i64,
    pub final_page_content: String,
    pub instance: InstanceInfo,
    pub settings: EnrollmentSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Device {
    pub id: i64,
    pub name: String,
    pub pubkey: String,
    pub user_id: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct DeviceConfig {
    pub network_id: i64,
    pub network_name: String,
    pub config: String,
    pub endpoint: String,
    pub assigned_ip: String,
    pub pubkey: String,
    pub allowed_ips: String,
    pub dns: Option<String>,
    pub mfa_enabled: bool,
    pub keepalive_interval: i32,
    pub location_mfa_mode: Option<i32>,
    pub service_location_mode: Option<i32>,
}

/// `Debug` (below) hides the token.
#[derive(Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct DeviceConfigResponse {
    pub device: Device,
    pub configs: Vec<DeviceConfig>,
    pub instance: InstanceInfo,
    pub token: Option<String>,
}

impl std::fmt::Debug for DeviceConfigResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceConfigResponse")
            .field("device", &self.device)
            .field("configs", &self.configs)
            .field("instance", &self.instance)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Body of `start_enrollment` / `start_desktop` (PROTOCOL.md section 4).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct StartEnrollmentRequest {
    #[serde(default)]
    pub send_enrollment_notification: bool,
    #[serde(default)]
    pub email: Option<String>,
    /// Lifetime override such as `12h`, `3d`, `1w`; the setting applies when absent.
    #[serde(default)]
    pub token_expiration_time: Option<String>,
}

/// 201 answer of `start_enrollment` / `start_desktop`. The token is shown only here.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct StartEnrollmentResponse {
    pub enrollment_token: String,
    pub enrollment_url: String,
    /// When the token expires, RFC 3339 UTC (an Onramp addition; absent from older servers).
    #[serde(default)]
    pub expires_at: String,
}

impl std::fmt::Debug for StartEnrollmentResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartEnrollmentResponse")
            .field("enrollment_token", &"<redacted>")
            .field("enrollment_url", &self.enrollment_url)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_request_defaults_and_response_shape() {
        let r: StartEnrollmentRequest = serde_json::from_str("{}").unwrap();
        assert!(!r.send_enrollment_notification && r.email.is_none() && r.token_expiration_time.is_none());
        let resp = StartEnrollmentResponse {
            enrollment_token: "T".into(),
            enrollment_url: "https://e/".into(),
            expires_at: "2026-12-03T08:00:00Z".into(),
        };
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"enrollment_token":"T","enrollment_url":"https://e/","expires_at":"2026-12-03T08:00:00Z"}"#
        );
        assert!(!format!("{resp:?}").contains("\"T\""));
    }

    #[test]
    fn debug_hides_device_config_and_edge_reply_tokens() {
        let secret = "DeviceT0kenSecretXYZ";
        let r: DeviceConfigResponse = serde_json::from_value(serde_json::json!({
            "device": {"id": 1, "name": "d", "pubkey": "k", "user_id": 1, "created_at": 0},
            "configs": [],
            "instance": {"id": "i", "name": "n", "url": "u", "proxy_url": "p", "username": "x",
                         "enterprise_enabled": false, "disable_all_traffic": false,
                         "openid_display_name": null, "client_traffic_policy": null},
            "token": secret,
        }))
        .unwrap();
        let text = format!("{r:?}");
        assert!(!text.contains(secret) && text.contains("<redacted>"), "{text}");
        let reply = link::EdgeReply { id: 1, status: 200, body: serde_json::to_value(&r).unwrap() };
        let text = format!("{reply:?}");
        assert!(!text.contains(secret) && text.contains("200"), "{text}");
    }
}

/// Core <-> edge link messages. The edge turns each public API request into one
/// [`EdgeRequest`]; core answers with one [`EdgeReply`] carrying the same id. The same
/// messages travel in-process or over the network link.
pub mod link {
    use serde::{Deserialize, Serialize};

    /// What the edge knows about the caller, for audit.
    #[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
    pub struct ClientMeta {
        pub ip: Option<String>,
        pub user_agent: Option<String>,
        pub client_version: Option<String>,
        pub client_platform: Option<String>,
    }

    /// One public API call. `token` is the enrollment token (from the body) or the opaque
    /// browser-session id from the session cookie, or the polling token for `Poll`. The
    /// starts carry the new session id the edge put in its cookie (core stores its hash).
    #[derive(Clone, Serialize, Deserialize, PartialEq)]
    #[serde(tag = "call", rename_all = "snake_case")]
    pub enum EdgeCall {
        // A missing `session` (an older edge) deserializes as `None`.
        Start { token: String, session: Option<String> },
        ActivateUser { token: String, password: String, phone_number: Option<String> },
        CreateDevice { token: String, name: String, pubkey: String },
        NetworkInfo { token: String, pubkey: String },
        Poll { token: String },
        PasswordResetRequest { email: String },
        PasswordResetStart { token: String, session: Option<String> },
        PasswordReset { token: String, password: String },
    }

    impl EdgeCall {
        pub fn name(&self) -> &'static str {
            match self {
                Self::Start { .. } => "start",
                Self::ActivateUser { .. } => "activate_user",
                Self::CreateDevice { .. } => "create_device",
                Self::NetworkInfo { .. } => "network_info",
                Self::Poll { .. } => "poll",
                Self::PasswordResetRequest { .. } => "password_reset_request",
                Self::PasswordResetStart { .. } => "password_reset_start",
                Self::PasswordReset { .. } => "password_reset",
            }
        }
    }

    /// Secrets (tokens, passwords) never show in `Debug`.
    impl std::fmt::Debug for EdgeCall {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "EdgeCall::{}(<redacted>)", self.name())
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct EdgeRequest {
        pub id: u64,
        pub call: EdgeCall,
        pub meta: ClientMeta,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum LinkError {
        /// No core is connected to this edge.
        Disconnected,
        /// Core did not answer in time.
        Timeout,
        /// The connection to core closed while core had the request: it may or may not
        /// have been carried out, and it was not safe to send again.
        Interrupted,
    }

    pub type LinkFuture<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<EdgeReply, LinkError>> + Send + 'a>>;

    /// How the edge reaches core: in-process (core implements this directly), or over the
    /// core-initiated network link.
    pub trait CoreLink: Send + Sync + 'static {
        fn call(&self, req: EdgeRequest) -> LinkFuture<'_>;
        fn connected(&self) -> bool;
    }

    /// Core's answer: an HTTP status and the JSON body to send (`{"error": ...}` on failure).
    /// Bodies carry tokens (enrollment sessions, device config), so `Debug` leaves them out.
    #[derive(Clone, Serialize, Deserialize, PartialEq)]
    pub struct EdgeReply {
        pub id: u64,
        pub status: u16,
        pub body: serde_json::Value,
    }

    impl std::fmt::Debug for EdgeReply {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("EdgeReply")
                .field("id", &self.id)
                .field("status", &self.status)
                .field("body", &"<redacted>")
                .finish()
        }
    }
}

/// An error with its causes, one sentence (`a: b: c`), for messages that must say why a
/// connection failed; causes already quoted by their parent are skipped.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cur = s.source();
    }
    msg
}

/// Core <-> gateway messages. A gateway dials core's gateway listener with its token, says
/// [`GatewayHello`], and from then on receives [`ToGateway`] messages (the whole peer set
/// first, then each change) and sends [`PeerStats`] reports. The network transport lives
/// in `onramp-link`; core implements [`GatewayControl`].
pub mod gateway {
    use serde::{Deserialize, Serialize};
    use std::future::Future;
    use std::pin::Pin;

    /// What a gateway says first, after the token (which travels as gRPC metadata).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct GatewayHello {
        /// The gateway's WireGuard public key (base64); it made the pair itself.
        pub pubkey: String,
        /// `onramp` version of the gateway, shown to admins.
        pub version: String,
        pub hostname: String,
        /// Replace a different key already recorded for the location (`--rotate-key`).
        #[serde(default)]
        pub rotate_key: bool,
    }

    /// The WireGuard interface a gateway serves, from its location.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
    pub struct InterfaceSpec {
        pub location: String,
        /// The location's gateway addresses with prefix, e.g. `10.8.0.1/24`.
        pub addresses: Vec<String>,
        pub listen_port: u16,
    }

    /// One device, as the gateway must know it. Every field is structured; the gateway
    /// validates each and skips (and reports) a malformed one.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct PeerSpec {
        /// The device's WireGuard public key (base64).
        pub pubkey: String,
        /// The device's addresses in this location, host routes, e.g. `10.8.0.2/32`.
        pub allowed_ips: Vec<String>,
    }

    /// Core to gateway.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    pub enum ToGateway {
        /// The whole configuration: sent on every (re)connect and when the location's
        /// interface itself changed. The gateway replaces its peer set with this one.
        Full { interface: InterfaceSpec, peers: Vec<PeerSpec> },
        /// Add a peer, or replace the one with this key.
        Upsert { peer: PeerSpec },
        /// Remove the peer with this key.
        Remove { pubkey: String },
    }

    /// One peer's counters as the gateway's interface reports them.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
    pub struct PeerStats {
        pub pubkey: String,
        /// Where the peer's packets last came from, `ip:port`.
        pub endpoint: Option<String>,
        /// Unix seconds of the last completed handshake; `None` if never.
        pub latest_handshake: Option<i64>,
        pub rx_bytes: u64,
        pub tx_bytes: u64,
    }

    /// Gateway to core.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    pub enum FromGateway {
        Hello(GatewayHello),
        /// Peers whose counters changed since the last report (all of them in the first).
        Stats {
            peers: Vec<PeerStats>,
        },
    }

    /// Why core refuses a gateway. The message is shown to the admin in the gateway's log.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
    pub struct GatewayRefusal {
        pub kind: RefusalKind,
        pub message: String,
    }

    #[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(rename_all = "snake_case")]
    pub enum RefusalKind {
        /// Unknown, revoked or malformed token.
        Unauthenticated,
        /// The location already has a gateway with another key (and no `rotate_key`).
        KeyConflict,
        /// A malformed hello (bad key, ...).
        Invalid,
        /// Core cannot serve right now (database down); the gateway retries.
        Unavailable,
    }

    pub type GatewayFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

    /// The changes for one connected gateway, as core produces them.
    pub trait UpdateSource: Send + 'static {
        /// The next message: `Full` first, then changes as they happen. `None` ends the
        /// session (the gateway reconnects). Called in a loop by one task.
        fn next(&mut self) -> GatewayFuture<'_, Option<ToGateway>>;
    }

    /// What core does with a connected gateway's reports. Shared by the transport's tasks.
    pub trait GatewayReporter: Send + Sync + 'static {
        fn stats(&self, peers: Vec<PeerStats>) -> GatewayFuture<'_, ()>;
        /// The gateway's stream ended (it disconnected or the session closed).
        fn closed(&self) -> GatewayFuture<'_, ()>;
    }

    /// An accepted gateway.
    pub struct GatewaySession {
        /// The location's name, for logs.
        pub location: String,
        pub updates: Box<dyn UpdateSource>,
        pub reporter: std::sync::Arc<dyn GatewayReporter>,
    }

    /// Core's side of the gateway protocol, called by the gateway listener.
    pub trait GatewayControl: Send + Sync + 'static {
        /// Authenticates the token, records (or checks) the gateway's key as its location's
        /// key, and opens the session. `remote` is the gateway's address as the listener saw it.
        fn open(
            &self,
            token: String,
            hello: GatewayHello,
            remote: Option<String>,
        ) -> GatewayFuture<'_, Result<GatewaySession, GatewayRefusal>>;
    }
}
