//! The client's local SQLite store: instances, their locations, and key pairs. The only
//! SQL of the client lives here.

use onramp_proto::{DeviceConfig, DeviceConfigResponse};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use std::path::Path;

pub const DB_FILE: &str = "client.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("local database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("local database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("local database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// An instance as stored. `Debug` leaves out the polling token.
#[derive(Clone, serde::Serialize)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub url: String,
    pub proxy_url: String,
    pub edge_url: String,
    pub username: String,
    #[serde(skip)]
    pub polling_token: Option<String>,
    pub disable_all_traffic: bool,
    pub enterprise_enabled: bool,
    pub client_traffic_policy: Option<i32>,
    pub device_id: i64,
    pub device_name: String,
    pub pubkey: String,
    pub sync_state: String,
    pub last_sync_at: Option<i64>,
    /// "Name <e-mail>, phone" of the administrator, from the last enrollment start.
    pub admin_contact: Option<String>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

/// What a config update changed, by location name.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl SyncDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

const INSTANCE_COLS: &str =
    "id, name, url, proxy_url, edge_url, username, polling_token, disable_all_traffic, enterprise_enabled, \
    client_traffic_policy, device_id, device_name, pubkey, sync_state, last_sync_at, admin_contact";
const LOCATION_COLS: &str = "network_id, network_name, config, endpoint, assigned_ip, pubkey, allowed_ips, dns, \
    mfa_enabled, keepalive_interval, location_mfa_mode, service_location_mode";

fn instance_row(r: &sqlx::sqlite::SqliteRow) -> Instance {
    Instance {
        id: r.get("id"),
        name: r.get("name"),
        url: r.get("url"),
        proxy_url: r.get("proxy_url"),
        edge_url: r.get("edge_url"),
        username: r.get("username"),
        polling_token: r.get("polling_token"),
        disable_all_traffic: r.get("disable_all_traffic"),
        enterprise_enabled: r.get("enterprise_enabled"),
        client_traffic_policy: r.get("client_traffic_policy"),
        device_id: r.get("device_id"),
        device_name: r.get("device_name"),
        pubkey: r.get("pubkey"),
        sync_state: r.get("sync_state"),
        last_sync_at: r.get("last_sync_at"),
        admin_contact: r.get("admin_contact"),
    }
}

fn location_row(r: &sqlx::sqlite::SqliteRow) -> DeviceConfig {
    DeviceConfig {
        network_id: r.get("network_id"),
        network_name: r.get("network_name"),
        config: r.get("config"),
        endpoint: r.get("endpoint"),
        assigned_ip: r.get("assigned_ip"),
        pubkey: r.get("pubkey"),
        allowed_ips: r.get("allowed_ips"),
        dns: r.get("dns"),
        mfa_enabled: r.get("mfa_enabled"),
        keepalive_interval: r.get("keepalive_interval"),
        location_mfa_mode: r.get("location_mfa_mode"),
        service_location_mode: r.get("service_location_mode"),
    }
}

impl Store {
    /// Opens (creating owner-only) `client.db` in `dir` and applies migrations.
    pub async fn open(dir: &Path) -> StoreResult<Store> {
        let path = dir.join(DB_FILE);
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        if !path.exists() {
            // Created 0600 before SQLite opens it: it will hold private keys.
            crate::dirs::write_private(&path, b"").map_err(|e| open_err(sqlx::Error::Io(e)))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5))
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(opts).await.map_err(open_err)?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Initialized = at least one instance (PROTOCOL.md 1.1).
    pub async fn is_initialized(&self) -> StoreResult<bool> {
        Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM instances").fetch_one(&self.pool).await? > 0)
    }

    pub async fn instances(&self) -> StoreResult<Vec<Instance>> {
        let rows = sqlx::query(&format!("SELECT {INSTANCE_COLS} FROM instances ORDER BY name, id"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(instance_row).collect())
    }

    /// Whether this token (by SHA-256) enrolled or last updated one of the instances.
    pub async fn token_spent(&self, token_sha256: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE spent_token_sha256 = ?1")
            .bind(token_sha256)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    pub async fn instance(&self, id: &str) -> StoreResult<Option<Instance>> {
        let row = sqlx::query(&format!("SELECT {INSTANCE_COLS} FROM instances WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(instance_row))
    }

    pub async fn locations(&self, instance_id: &str) -> StoreResult<Vec<DeviceConfig>> {
        let rows = sqlx::query(&format!(
            "SELECT {LOCATION_COLS} FROM locations WHERE instance_id = ?1 ORDER BY network_name, network_id"
        ))
        .bind(instance_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(location_row).collect())
    }

    /// Saves a key pair made for `enrollment_url` before its public key is sent.
    pub async fn save_pending_key(&self, enrollment_url: &str, k: &crate::keys::KeyPair) -> StoreResult<()> {
        sqlx::query("INSERT INTO keys (pubkey, private_key, enrollment_url, created_at) VALUES (?1, ?2, ?3, ?4)")
            .bind(&k.public)
            .bind(&k.private)
            .bind(enrollment_url)
            .bind(crate::now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The newest key pair made for `enrollment_url` that no instance owns yet.
    pub async fn pending_key(&self, enrollment_url: &str) -> StoreResult<Option<crate::keys::KeyPair>> {
        let row = sqlx::query(
            "SELECT pubkey, private_key FROM keys WHERE enrollment_url = ?1 AND instance_id IS NULL \
             ORDER BY created_at DESC, rowid DESC LIMIT 1",
        )
        .bind(enrollment_url)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| crate::keys::KeyPair { public: r.get("pubkey"), private: r.get("private_key") }))
    }

    pub async fn private_key(&self, pubkey: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT private_key FROM keys WHERE pubkey = ?1")
            .bind(pubkey)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Stores an enrolled (or updated) instance with its device, key and every location, in
    /// one transaction. Returns what changed in its locations.
    pub async fn save_instance(
        &self,
        edge_url: &str,
        resp: &DeviceConfigResponse,
        polling_token: Option<&str>,
        admin_contact: Option<&str>,
        spent_token_sha256: Option<&str>,
    ) -> StoreResult<SyncDiff> {
        let i = &resp.instance;
        let now = crate::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO instances (id, name, url, proxy_url, username, polling_token, disable_all_traffic, enterprise_enabled, \
             client_traffic_policy, device_id, device_name, pubkey, sync_state, last_sync_at, created_at, updated_at, edge_url, \
             admin_contact, spent_token_sha256) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'ok', ?13, ?13, ?13, ?14, ?15, ?16) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, url = excluded.url, proxy_url = excluded.proxy_url, \
             edge_url = excluded.edge_url, \
             username = excluded.username, polling_token = COALESCE(excluded.polling_token, instances.polling_token), \
             disable_all_traffic = excluded.disable_all_traffic, enterprise_enabled = excluded.enterprise_enabled, \
             client_traffic_policy = excluded.client_traffic_policy, device_id = excluded.device_id, \
             device_name = excluded.device_name, pubkey = excluded.pubkey, sync_state = 'ok', \
             last_sync_at = excluded.last_sync_at, updated_at = excluded.updated_at, \
             admin_contact = COALESCE(excluded.admin_contact, instances.admin_contact), \
             spent_token_sha256 = COALESCE(excluded.spent_token_sha256, instances.spent_token_sha256)",
        )
        .bind(&i.id)
        .bind(&i.name)
        .bind(&i.url)
        .bind(&i.proxy_url)
        .bind(&i.username)
        .bind(polling_token)
        .bind(i.disable_all_traffic)
        .bind(i.enterprise_enabled)
        .bind(i.client_traffic_policy)
        .bind(resp.device.id)
        .bind(&resp.device.name)
        .bind(&resp.device.pubkey)
        .bind(now)
        .bind(edge_url)
        .bind(admin_contact)
        .bind(spent_token_sha256)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE keys SET instance_id = ?1 WHERE pubkey = ?2")
            .bind(&i.id)
            .bind(&resp.device.pubkey)
            .execute(&mut *tx)
            .await?;
        let diff = replace_locations(&mut tx, &i.id, &resp.configs).await?;
        tx.commit().await?;
        Ok(diff)
    }

    /// Applies a polled configuration to a known instance.
    pub async fn apply_poll(&self, instance_id: &str, resp: &DeviceConfigResponse) -> StoreResult<SyncDiff> {
        let mut tx = self.pool.begin().await?;
        let i = &resp.instance;
        sqlx::query(
            "UPDATE instances SET name = ?2, url = ?3, proxy_url = ?4, disable_all_traffic = ?5, enterprise_enabled = ?6, \
             client_traffic_policy = ?7, sync_state = 'ok', last_sync_at = ?8, updated_at = ?8 WHERE id = ?1",
        )
        .bind(instance_id)
        .bind(&i.name)
        .bind(&i.url)
        .bind(&i.proxy_url)
        .bind(i.disable_all_traffic)
        .bind(i.enterprise_enabled)
        .bind(i.client_traffic_policy)
        .bind(crate::now())
        .execute(&mut *tx)
        .await?;
        let diff = replace_locations(&mut tx, instance_id, &resp.configs).await?;
        tx.commit().await?;
        Ok(diff)
    }

    pub async fn set_sync_state(&self, instance_id: &str, state: &str) -> StoreResult<()> {
        sqlx::query("UPDATE instances SET sync_state = ?2, updated_at = ?3 WHERE id = ?1")
            .bind(instance_id)
            .bind(state)
            .bind(crate::now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The server deleted this instance's device: its locations go, the dead polling token
    /// too, and the instance stays (marked) so the user sees what happened.
    pub async fn device_removed(&self, instance_id: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM locations WHERE instance_id = ?1").bind(instance_id).execute(&mut *tx).await?;
        sqlx::query(
            "UPDATE instances SET sync_state = 'device_removed', polling_token = NULL, updated_at = ?2 WHERE id = ?1",
        )
        .bind(instance_id)
        .bind(crate::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes an instance with its locations and keys; false when unknown.
    pub async fn remove_instance(&self, id: &str) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM instances WHERE id = ?1").bind(id).execute(&self.pool).await?.rows_affected();
        Ok(n > 0)
    }
}

async fn replace_locations(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    instance_id: &str,
    configs: &[DeviceConfig],
) -> StoreResult<SyncDiff> {
    let old: Vec<DeviceConfig> = sqlx::query(&format!("SELECT {LOCATION_COLS} FROM locations WHERE instance_id = ?1"))
        .bind(instance_id)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(location_row)
        .collect();
    let diff = diff_locations(&old, configs);
    sqlx::query("DELETE FROM locations WHERE instance_id = ?1").bind(instance_id).execute(&mut **tx).await?;
    for c in configs {
        sqlx::query(&format!(
            "INSERT INTO locations (instance_id, {LOCATION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ))
        .bind(instance_id)
        .bind(c.network_id)
        .bind(&c.network_name)
        .bind(&c.config)
        .bind(&c.endpoint)
        .bind(&c.assigned_ip)
        .bind(&c.pubkey)
        .bind(&c.allowed_ips)
        .bind(&c.dns)
        .bind(c.mfa_enabled)
        .bind(c.keepalive_interval)
        .bind(c.location_mfa_mode)
        .bind(c.service_location_mode)
        .execute(&mut **tx)
        .await?;
    }
    Ok(diff)
}

/// Added, removed and changed locations, matched by network id.
pub fn diff_locations(old: &[DeviceConfig], new: &[DeviceConfig]) -> SyncDiff {
    let mut d = SyncDiff::default();
    for n in new {
        match old.iter().find(|o| o.network_id == n.network_id) {
            None => d.added.push(n.network_name.clone()),
            Some(o) if o != n => d.changed.push(n.network_name.clone()),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| n.network_id == o.network_id) {
            d.removed.push(o.network_name.clone());
        }
    }
    d
}
