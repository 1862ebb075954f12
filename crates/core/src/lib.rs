//! Onramp core use cases: users, groups, locations, devices, tokens, settings, audit and
//! mail. Handlers (REST, CLI, the edge link) call these; none of them touches the store.

mod apitokens;
mod audit;
mod bootstrap;
pub mod clock;
mod devices;
pub mod directory;
pub mod directory_sync;
mod edge_dispatch;
mod enrollment;
pub mod entra_sync;
mod error;
pub mod gateways;
pub mod groups;
mod locations;
pub mod mail;
mod network_devices;
mod passwords;
pub mod schema;
pub mod secrets;
pub mod settings;
mod tokens;
mod users;
pub mod web;

pub use apitokens::{ApiTokenInfo, AuthenticatedAdmin, NewApiToken};
pub use audit::{audit_diff, Actor, AuditEntry, AuditQuery};
pub use clock::{Clock, ManualClock, SystemClock};
pub use devices::{DeviceInfo, DeviceInput};
pub use directory_sync::{DirectoryEnv, DirectorySettings, DirectorySource, SyncReport, SyncStatus};
pub use enrollment::DEVICE_REMOVED;
pub use entra_sync::{EntraEnv, EntraSettings};
pub use error::{CoreError, CoreResult};
pub use gateways::{DevicePeerStats, GatewayInfo, GatewayTokenInfo, LocationPeerStats, LocationStats, NewGatewayToken};
pub use groups::{GroupInfo, GroupInput};
pub use locations::{LocationInfo, LocationInput, StringOrList};
pub use network_devices::{NetworkDeviceInfo, NetworkDeviceInput, StartCliRequest};
pub use onramp_store::UserFilter;
pub use settings::{AdminContact, Settings, SettingsPatch, SmtpSecurity, SmtpSettings};
pub use tokens::{BulkOutcome, BulkRequest, IssuedToken, PendingToken, SessionStart};
pub use users::{TokenActions, UserInfo, UserInput, UserPatch, UserSearch, UserSearchPage};
pub use web::{NewWebLogin, WebSession};

use onramp_store::Store;
use std::sync::Arc;

/// Static configuration of a core process (from the config file, env and flags).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Public edge URL handed out as `enrollment_url`; overrides the stored setting.
    pub public_url: Option<String>,
    /// Base delay of the mail retry backoff (doubles per attempt, capped at one hour).
    pub mail_retry_base_secs: i64,
    /// Attempts before a message is marked failed.
    pub mail_max_attempts: i64,
    /// Argon2 hashes allowed at once (bounds memory: ~19 MiB each).
    pub max_concurrent_hashes: usize,
    /// Key file encrypting secrets at rest (mail bodies, the SMTP password); created 0600 on
    /// first start. Every process sharing the database must use the same file. `None` = a
    /// random key for this process only (tests; nothing encrypted survives a restart).
    pub secret_key_file: Option<std::path::PathBuf>,
    /// A web UI session ends after this long without a request...
    pub web_session_idle_secs: i64,
    /// ...and this long after sign-in, whatever happens.
    pub web_session_max_secs: i64,
    /// `ONRAMP_LDAP_*`: the directory sync's settings from the environment.
    pub directory_env: DirectoryEnv,
    /// `ONRAMP_ENTRA_*`: the Entra ID sync's settings from the environment.
    pub entra_env: EntraEnv,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            mail_retry_base_secs: 30,
            mail_max_attempts: 10,
            max_concurrent_hashes: 2,
            secret_key_file: None,
            web_session_idle_secs: 30 * 60,
            web_session_max_secs: 12 * 3600,
            directory_env: DirectoryEnv::default(),
            entra_env: EntraEnv::default(),
        }
    }
}

/// The core service. Cheap to clone (everything inside is shared).
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    cfg: CoreConfig,
    settings: tokio::sync::RwLock<Settings>,
    /// Version of the stored settings held in `settings`, and when it was last compared
    /// with the store (see `settings::Core::settings`).
    settings_seen: std::sync::Mutex<settings::Seen>,
    key: secrets::SecretKey,
    mail_wakeup: tokio::sync::Notify,
    passwords: passwords::Hasher,
    api_token_touches: std::sync::Mutex<std::collections::HashMap<i64, i64>>,
    /// The change counter gateway sessions wait on (started by the first gateway).
    gateway_epoch: gateways::EpochWatch,
}

impl Core {
    /// Loads (or, on first start, creates) the settings and returns a ready core. The store
    /// must already be migrated.
    pub async fn new(store: Store, clock: Arc<dyn Clock>, cfg: CoreConfig) -> CoreResult<Self> {
        let key = match &cfg.secret_key_file {
            Some(path) => secrets::SecretKey::load_or_create(path).map_err(CoreError::Internal)?,
            None => secrets::SecretKey::ephemeral(),
        };
        let (settings, version) = settings::load_or_init(&store, &key).await?;
        let passwords = passwords::Hasher::new(cfg.max_concurrent_hashes);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                clock,
                cfg,
                settings: tokio::sync::RwLock::new(settings),
                settings_seen: std::sync::Mutex::new(settings::Seen::new(version)),
                key,
                mail_wakeup: tokio::sync::Notify::new(),
                passwords,
                api_token_touches: Default::default(),
                gateway_epoch: Default::default(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// The key encrypting secrets at rest.
    pub(crate) fn key(&self) -> &secrets::SecretKey {
        &self.inner.key
    }

    pub fn config(&self) -> &CoreConfig {
        &self.inner.cfg
    }

    /// The edge URL users enroll at: the configured override, else the stored setting.
    pub async fn public_url(&self) -> String {
        match &self.inner.cfg.public_url {
            Some(u) => u.clone(),
            None => self.settings().await.public_url,
        }
    }

    pub async fn health(&self) -> bool {
        self.inner.store.ping().await
    }
}
