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
    pub user_id: i64,
    pub name: String,
    pub pubkey: String,
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
    pub user_id: i64,
    pub issued_by: Option<i64>,
    pub email: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub session_deadline: Option<i64>,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
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
}
