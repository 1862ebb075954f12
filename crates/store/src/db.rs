use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; `key` says which one.
    #[error("conflict on {}", key.field())]
    Conflict { key: UniqueKey },
    /// No free address is left in a subnet of this location.
    #[error("no free address left in location {location}")]
    SubnetFull { location: i64 },
    /// A location's new subnets would leave a device's address outside them (or on a
    /// network or broadcast address).
    #[error("device {device:?} uses {address}, outside the new subnets")]
    AddressOutsideSubnets { device: String, address: String },
    /// The enrollment session already registered another device.
    #[error("the session already registered device {device_id}")]
    SessionHasDevice { device_id: i64 },
    /// The user already has the maximum number of devices.
    #[error("the user already has {max} devices")]
    DeviceLimit { max: i64 },
    /// The failed message's body was erased (it held a token), so it cannot be sent again.
    #[error("the message body was erased")]
    MailErased,
    #[error("database configuration: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The unique constraints of the schema, told apart by the database's own report of the
/// constraint (PostgreSQL: its name; SQLite: `table.column, ...`), never by loose substrings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UniqueKey {
    Username,
    Email,
    GroupName,
    GroupMember,
    LocationName,
    LocationGroup,
    DevicePubkey,
    /// A user's device names.
    DeviceName,
    /// An address of a location.
    DeviceAddress,
    TokenHash,
    PollingTokenHash,
    PollingTokenDevice,
    ApiTokenHash,
    GatewayTokenHash,
    /// A gateway key of a location (one `gateways` row each).
    GatewayKey,
    Setting,
    /// A unique constraint not in the table below (a schema change that forgot it).
    Other,
}

impl UniqueKey {
    /// The input field a clash is reported against.
    pub fn field(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Email => "email",
            Self::GroupName | Self::LocationName | Self::DeviceName => "name",
            Self::GroupMember => "member",
            Self::LocationGroup => "group",
            Self::DevicePubkey => "pubkey",
            Self::DeviceAddress => "address",
            Self::TokenHash | Self::PollingTokenHash | Self::ApiTokenHash | Self::GatewayTokenHash => "token",
            Self::GatewayKey => "pubkey",
            Self::PollingTokenDevice => "device",
            Self::Setting => "setting",
            Self::Other => "unique value",
        }
    }
}

/// (PostgreSQL constraint name, SQLite column list, key). PostgreSQL names are the defaults
/// it gives the constraints in migrations/postgres; SQLite reports the constrained columns.
pub(crate) const UNIQUE_KEYS: &[(&str, &str, UniqueKey)] = &[
    ("users_username_key", "users.username", UniqueKey::Username),
    ("users_email_key", "users.email", UniqueKey::Email),
    ("groups_name_key", "groups.name", UniqueKey::GroupName),
    ("group_members_pkey", "group_members.group_id, group_members.user_id", UniqueKey::GroupMember),
    ("locations_name_key", "locations.name", UniqueKey::LocationName),
    ("location_groups_pkey", "location_groups.location_id, location_groups.group_id", UniqueKey::LocationGroup),
    ("devices_pubkey_key", "devices.pubkey", UniqueKey::DevicePubkey),
    ("devices_user_id_name_key", "devices.user_id, devices.name", UniqueKey::DeviceName),
    ("devices_location_name", "devices.location_id, devices.name", UniqueKey::DeviceName),
    (
        "device_addresses_location_id_address_key",
        "device_addresses.location_id, device_addresses.address",
        UniqueKey::DeviceAddress,
    ),
    (
        "device_addresses_pkey",
        "device_addresses.device_id, device_addresses.location_id, device_addresses.address",
        UniqueKey::DeviceAddress,
    ),
    ("tokens_hash_key", "tokens.hash", UniqueKey::TokenHash),
    ("polling_tokens_hash_key", "polling_tokens.hash", UniqueKey::PollingTokenHash),
    ("polling_tokens_device_id_key", "polling_tokens.device_id", UniqueKey::PollingTokenDevice),
    ("api_tokens_hash_key", "api_tokens.hash", UniqueKey::ApiTokenHash),
    ("gateway_tokens_hash_key", "gateway_tokens.hash", UniqueKey::GatewayTokenHash),
    ("gateways_location_id_pubkey_key", "gateways.location_id, gateways.pubkey", UniqueKey::GatewayKey),
    ("settings_pkey", "settings.id", UniqueKey::Setting),
];

/// SQLSTATE unique_violation (PostgreSQL); SQLITE_CONSTRAINT_UNIQUE and _PRIMARYKEY.
const UNIQUE_CODES: &[&str] = &["23505", "2067", "1555"];

fn unique_key(db: &dyn sqlx::error::DatabaseError) -> Option<UniqueKey> {
    let code = db.code()?;
    if !UNIQUE_CODES.contains(&code.as_ref()) {
        return None;
    }
    let key = match db.constraint() {
        Some(name) => UNIQUE_KEYS.iter().find(|(pg, _, _)| *pg == name),
        None => {
            // SQLite: "UNIQUE constraint failed: t.a, t.b" names exactly the columns.
            let cols = db.message().split_once(": ").map(|(_, c)| c.trim()).unwrap_or_default();
            UNIQUE_KEYS.iter().find(|(_, sqlite, _)| *sqlite == cols)
        }
    };
    Some(key.map(|(_, _, k)| *k).unwrap_or_else(|| {
        tracing::warn!(
            constraint = db.constraint().unwrap_or("unnamed"),
            message = db.message(),
            "unique constraint missing from UNIQUE_KEYS"
        );
        UniqueKey::Other
    }))
}

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if let Some(key) = unique_key(db.as_ref()) {
            return StoreError::Conflict { key };
        }
    }
    if matches!(e, sqlx::Error::RowNotFound) {
        return StoreError::NotFound;
    }
    StoreError::Db(e)
}

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    kind: DatabaseKind,
    /// SQLite allows one writer; serialising writers in-process avoids SQLITE_BUSY storms
    /// under concurrent requests (other processes are covered by busy_timeout).
    pub(crate) write_lock: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Group-commit queue for small token issuances (see `batch`).
    pub(crate) token_batches: Option<tokio::sync::mpsc::Sender<crate::batch::Job>>,
    /// Addresses in use per location, so allocation does not read every address of a
    /// location per device (see `queries::allocate_addresses`).
    pub(crate) address_cache: Arc<crate::queries::AddressCache>,
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://...`). A SQLite file is created only
    /// when `create_if_missing` is set, so a mistyped path fails instead of silently starting
    /// an empty database.
    pub async fn connect(url: &str, create_if_missing: bool) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let kind = if url.starts_with("sqlite:") {
            DatabaseKind::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DatabaseKind::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "unsupported database URL scheme in {:?}: use sqlite://PATH or postgres://USER@HOST/DB",
                redact_url(url)
            )));
        };
        let pool = match kind {
            DatabaseKind::Sqlite => {
                let path = sqlite_path(url)?;
                if !create_if_missing && !std::path::Path::new(&path).exists() {
                    return Err(StoreError::Config(format!(
                        "SQLite database {path} does not exist; check ONRAMP_DATABASE_URL, or create it with `onramp migrate --create`"
                    )));
                }
                if create_if_missing {
                    create_private_file(&path)?;
                }
                let opts = AnyConnectOptions::from_str(&format!("sqlite://{path}?mode=rw"))?;
                AnyPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    // secure_delete: erased mail bodies and tokens are overwritten with zeros
                    // in the file instead of lingering in free pages.
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                                 PRAGMA secure_delete = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await?
            }
            DatabaseKind::Postgres => {
                let opts = AnyConnectOptions::from_str(url)?;
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await?
            }
        };
        let write_lock = (kind == DatabaseKind::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        let mut store = Self { pool, kind, write_lock, token_batches: None, address_cache: Default::default() };
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(crate::batch::run(store.clone(), rx));
        store.token_batches = Some(tx);
        Ok(store)
    }

    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// Applies pending embedded migrations; returns how many ran.
    pub async fn migrate(&self) -> StoreResult<usize> {
        let migrator = match self.kind {
            DatabaseKind::Sqlite => &SQLITE_MIGRATIONS,
            DatabaseKind::Postgres => &POSTGRES_MIGRATIONS,
        };
        let before = self.applied_migrations().await.unwrap_or(0);
        migrator.run(&self.pool).await?;
        let after = self.applied_migrations().await?;
        Ok(after.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> StoreResult<usize> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(n as usize)
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        // Fold the WAL into the database and empty it: older page versions in the WAL
        // would still hold erased bodies (secure_delete only scrubs the database pages).
        if self.kind == DatabaseKind::Sqlite {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await;
        }
        self.pool.close().await;
    }

    /// Inserts tokens (each revoking its user's earlier unused enrollment and desktop
    /// tokens) and their audit events atomically. Small requests are group-committed with
    /// concurrent ones; large ones run as their own batched transaction.
    pub async fn issue_tokens(&self, tokens: &[crate::NewToken], audits: &[crate::NewAudit]) -> StoreResult<()> {
        if let (Some(q), true) = (&self.token_batches, tokens.len() <= crate::batch::MAX_BATCHED_TOKENS) {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = crate::batch::Job { tokens: tokens.to_vec(), audits: audits.to_vec(), reply };
            if q.send(job).await.is_ok() {
                if let Ok(result) = answer.await {
                    return result;
                }
            }
        }
        self.write_tokens(tokens, audits).await
    }

    /// Begins a write transaction, holding the in-process SQLite writer lock for its life.
    pub(crate) async fn write_tx(&self) -> StoreResult<WriteTx<'_>> {
        let guard = match &self.write_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let tx = self.pool.begin().await.map_err(map_err)?;
        Ok(WriteTx { tx, _guard: guard })
    }
}

pub(crate) struct WriteTx<'a> {
    pub tx: sqlx::Transaction<'static, sqlx::Any>,
    _guard: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    pub async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await.map_err(map_err)
    }
}

fn sqlite_path(url: &str) -> StoreResult<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or_default();
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Config(
            "ONRAMP_DATABASE_URL: give a SQLite file path, e.g. sqlite:///var/lib/onramp/onramp.db".into(),
        ));
    }
    Ok(path.to_owned())
}

/// Creates the SQLite file owner-only (0600) before SQLite does, so it is never
/// world-readable even briefly.
fn create_private_file(path: &str) -> StoreResult<()> {
    let p = std::path::Path::new(path);
    if p.exists() {
        return Ok(());
    }
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(p).map_err(|e| StoreError::Config(format!("cannot create {path}: {e}")))?;
    Ok(())
}

/// Hides a password in a database URL before it is shown.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
