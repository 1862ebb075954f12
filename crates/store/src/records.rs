//! Rows as the store hands them out. Plain data; validation happens before a write.

use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

/// Booleans are stored as 0/1 integers (see the migrations).
fn flag(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

impl FromRow<'_, AnyRow> for UserRow {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: r.try_get("id")?,
            username: r.try_get("username")?,
            first_name: r.try_get("first_name")?,
            last_name: r.try_get("last_name")?,
            email: r.try_get("email")?,
            phone: r.try_get("phone")?,
            is_active: flag(r, "is_active")?,
            enrolled: flag(r, "enrolled")?,
            password_hash: r.try_get("password_hash")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            source: r.try_get("source")?,
            directory_disabled: flag(r, "directory_disabled")?,
        })
    }
}

impl FromRow<'_, AnyRow> for GroupRow {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            is_admin: flag(r, "is_admin")?,
            created_at: r.try_get("created_at")?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub is_active: bool,
    pub enrolled: bool,
    pub password_hash: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// `local` (the admin's) or `ldap` (the directory sync is authoritative).
    pub source: String,
    /// Disabled by the directory sync (which may enable them again).
    pub directory_disabled: bool,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub password_hash: Option<String>,
    pub is_active: bool,
}

#[derive(Debug, Clone)]
pub struct GroupRow {
    pub id: i64,
    pub name: String,
    pub is_admin: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LocationRow {
    pub id: i64,
    pub name: String,
    /// Comma-separated `gateway/prefix` entries.
    pub addresses: String,
    pub endpoint: String,
    pub port: i64,
    pub gateway_pubkey: Option<String>,
    /// Comma-separated CIDRs.
    pub allowed_ips: String,
    pub dns: Option<String>,
    pub keepalive: i64,
    pub mfa_mode: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct LocationData {
    pub name: String,
    pub addresses: String,
    pub endpoint: String,
    pub port: i64,
    pub gateway_pubkey: Option<String>,
    /// On update: leave the stored gateway key as it is (the gateway registers its own key;
    /// an edit that does not mention it must not wipe it) and ignore `gateway_pubkey`.
    pub keep_gateway_pubkey: bool,
    pub allowed_ips: String,
    pub dns: Option<String>,
    pub keepalive: i64,
    pub mfa_mode: i64,
    /// Group ids allowed to use the location; empty = everyone.
    pub allowed_groups: Vec<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRow {
    pub id: i64,
    /// The owner of a user device; `None` for a network device.
    pub user_id: Option<i64>,
    pub name: String,
    /// Empty for a network device that has not enrolled yet (stored as NULL).
    pub pubkey: String,
    pub created_at: i64,
    /// The one location of a network device; `None` for a user device.
    pub location_id: Option<i64>,
    pub description: Option<String>,
}

impl DeviceRow {
    /// A network device: a headless machine of one location, with no user.
    pub fn is_network(&self) -> bool {
        self.user_id.is_none()
    }
}

/// A network device to create: its location, and optionally the addresses the admin chose
/// (otherwise one free address per subnet of the location is allocated).
#[derive(Debug, Clone)]
pub struct NewNetworkDevice {
    pub location_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub addresses: Option<Vec<std::net::IpAddr>>,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceAddressRow {
    pub device_id: i64,
    pub location_id: i64,
    pub address: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: i64,
    pub kind: String,
    /// `None` for a network-device token (its device is `device_id`).
    pub user_id: Option<i64>,
    pub issued_by: Option<i64>,
    pub email: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub session_deadline: Option<i64>,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The device the session registered; for a network-device token, its device from the start.
    pub device_id: Option<i64>,
}

/// A token to insert: only its hash is ever stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub hash: String,
    pub kind: String,
    pub user_id: i64,
    pub issued_by: Option<i64>,
    pub email: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A `network_device` token to insert: no user; its device is passed beside it. Only the
/// hash is ever stored.
#[derive(Debug, Clone)]
pub struct NewNetworkDeviceToken {
    pub hash: String,
    /// The admin who issued it (the contact the enrolling machine is shown).
    pub issued_by: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub user_id: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ApiTokenAuth {
    pub token_id: i64,
    pub revoked: bool,
    pub user_id: i64,
    pub username: String,
    pub user_active: bool,
    pub user_is_admin: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor_user_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub details: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NewAudit {
    pub at: i64,
    pub actor_user_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub details: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub since: Option<i64>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub to_addr: String,
    pub subject: String,
    pub body: String,
    pub attachments: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// The token the message carries, checked at send time.
    pub token_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewOutbox {
    pub kind: String,
    pub to_addr: String,
    pub subject: String,
    pub body: String,
    /// JSON array of attachments.
    pub attachments: String,
    pub created_at: i64,
    /// The token the message carries: a message whose token is revoked before it is sent
    /// is cancelled rather than delivered with a dead link.
    pub token_id: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GatewayTokenRow {
    pub id: i64,
    pub location_id: i64,
    pub name: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// A gateway as last seen. `connected` is the stored flag; whether it is live also needs a
/// recent `last_seen_at` (see the migration).
#[derive(Debug, Clone)]
pub struct GatewayRow {
    pub id: i64,
    pub location_id: i64,
    pub pubkey: String,
    pub version: String,
    pub hostname: String,
    pub remote: Option<String>,
    pub connected: bool,
    pub connected_at: Option<i64>,
    pub last_seen_at: Option<i64>,
    pub disconnected_at: Option<i64>,
}

impl FromRow<'_, AnyRow> for GatewayRow {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: r.try_get("id")?,
            location_id: r.try_get("location_id")?,
            pubkey: r.try_get("pubkey")?,
            version: r.try_get("version")?,
            hostname: r.try_get("hostname")?,
            remote: r.try_get("remote")?,
            connected: flag(r, "connected")?,
            connected_at: r.try_get("connected_at")?,
            last_seen_at: r.try_get("last_seen_at")?,
            disconnected_at: r.try_get("disconnected_at")?,
        })
    }
}

/// What a gateway connecting records about itself.
#[derive(Debug, Clone)]
pub struct GatewaySeen {
    pub location_id: i64,
    pub pubkey: String,
    pub version: String,
    pub hostname: String,
    pub remote: Option<String>,
    /// Identifies the session holding the connection.
    pub session_id: String,
}

/// One address of one device a location's gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPeerRow {
    pub device_id: i64,
    /// None for a network device.
    pub user_id: Option<i64>,
    pub pubkey: String,
    pub address: String,
}

/// One peer's counters as a gateway reported them, keyed by the device's public key.
#[derive(Debug, Clone)]
pub struct PeerCounters {
    pub pubkey: String,
    pub endpoint: Option<String>,
    pub latest_handshake: Option<i64>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
}

/// A device's counters in one location, with the names an admin reads.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PeerStatsRow {
    pub device_id: i64,
    pub device: String,
    pub username: String,
    pub location_id: i64,
    pub location: String,
    pub endpoint: Option<String>,
    pub latest_handshake: Option<i64>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub updated_at: i64,
}

/// A web UI session as stored (the secret itself is only in the user's cookie).
#[derive(Debug, Clone)]
pub struct WebSessionRow {
    pub id: i64,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

pub struct NewWebSession<'a> {
    pub hash: &'a str,
    pub user_id: i64,
    pub csrf: &'a str,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}
