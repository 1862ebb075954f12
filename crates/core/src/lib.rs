//! Onramp core use cases: users, groups, locations, devices, tokens, settings, audit and
//! mail. Handlers (REST, CLI, the edge link) call these; none of them touches the store.

mod apitokens;
mod audit;
mod bootstrap;
pub mod clock;
mod devices;
pub mod directory;
mod edge_dispatch;
mod enrollment;
mod error;
pub mod groups;
mod locations;
pub mod mail;
mod passwords;
pub mod settings;
mod tokens;
mod users;

pub use apitokens::{ApiTokenInfo, AuthenticatedAdmin, NewApiToken};
pub use audit::{Actor, AuditEntry, AuditQuery};
pub use clock::{Clock, ManualClock, SystemClock};
pub use devices::{DeviceInfo, DeviceInput};
pub use error::{CoreError, CoreResult};
pub use groups::{GroupInfo, GroupInput};
pub use locations::{LocationInfo, LocationInput};
pub use settings::{Settings, SettingsPatch, SmtpSecurity, SmtpSettings};
pub use tokens::{BulkOutcome, BulkRequest, IssuedToken, PendingToken, SessionStart};
pub use users::{UserInfo, UserInput, UserPatch};

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
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self { public_url: None, mail_retry_base_secs: 30, mail_max_attempts: 10, max_concurrent_hashes: 2 }
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
    mail_wakeup: tokio::sync::Notify,
    passwords: passwords::Hasher,
    api_token_touches: std::sync::Mutex<std::collections::HashMap<i64, i64>>,
}

impl Core {
    /// Loads (or, on first start, creates) the settings and returns a ready core. The store
    /// must already be migrated.
    pub async fn new(store: Store, clock: Arc<dyn Clock>, cfg: CoreConfig) -> CoreResult<Self> {
        let settings = settings::load_or_init(&store).await?;
        let passwords = passwords::Hasher::new(cfg.max_concurrent_hashes);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                clock,
                cfg,
                settings: tokio::sync::RwLock::new(settings),
                mail_wakeup: tokio::sync::Notify::new(),
                passwords,
                api_token_touches: Default::default(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    pub fn config(&self) -> &CoreConfig {
        &self.inner.cfg
    }

    /// The edge URL users enroll at: the configured override, else the stored setting.
    pub async fn public_url(&self) -> String {
        match &self.inner.cfg.public_url {
            Some(u) => u.clone(),
            None => self.inner.settings.read().await.public_url.clone(),
        }
    }

    pub async fn health(&self) -> bool {
        self.inner.store.ping().await
    }
}
