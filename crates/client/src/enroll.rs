//! Enrollment as the desktop client runs it: start the session, show the user their data
//! and the admin's contact, set a password when the account needs one, register the device
//! with a key pair made here, and store the instance only once the server accepted it all.

use crate::api::{ApiError, EdgeClient};
use crate::store::{Store, StoreError, SyncDiff};
use onramp_proto::{DeviceConfigResponse, EnrollmentStartResponse};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(String),
    /// The token's instance is already on this machine: the token is for update-instance.
    #[error("this machine is already enrolled in {instance}; use update-instance to apply a new token")]
    AlreadyEnrolled { instance: String },
    /// The password prompt was abandoned or could not be read.
    #[error("{0}")]
    Input(String),
}

/// What the enrollment needs from a person (or from flags in unattended runs). `Send`, so
/// an enrollment can run as a task of a multi-threaded runtime (the fleet simulation runs
/// thousands).
pub trait Interaction: Send {
    /// Shows the user's data, the admin's contact and the session deadline.
    fn show_start(&mut self, start: &EnrollmentStartResponse);
    /// A new password meeting the policy; called only for users not enrolled yet.
    fn password(&mut self) -> Result<String, String>;
    /// A first start found a provisioning pointing at `url` and is about to enroll.
    fn found(&mut self, _source: &crate::provision::Found, _url: &url::Url) {}
}

#[derive(Debug)]
pub struct Enrolled {
    pub instance_name: String,
    pub instance_id: String,
    pub device_name: String,
    pub locations: Vec<String>,
    /// The session said who to contact (for messages after the fact).
    pub admin_contact: Option<String>,
    pub diff: SyncDiff,
}

pub fn admin_contact(start: &EnrollmentStartResponse) -> Option<String> {
    start.admin.as_ref().map(crate::api::contact_line)
}

/// The longest device name the server accepts (characters).
pub const MAX_DEVICE_NAME: usize = 64;

/// The name the device registers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceName {
    /// The user chose it (`--device-name`): a clash with their other devices is an error.
    Chosen(String),
    /// Not chosen by the user (the host name): a clash must never stop a zero-touch first
    /// start, so the next free `name-2`, `name-3`, ... is taken instead.
    Default(String),
}

impl DeviceName {
    /// A network device (a headless machine the administrator created with its name): the
    /// empty name is sent, and the server keeps the device's own.
    pub fn network_device() -> DeviceName {
        DeviceName::Chosen(String::new())
    }

    /// The default: this machine's host name.
    pub fn from_host() -> DeviceName {
        let host = hostname::get().map(|h| h.to_string_lossy().trim().to_owned()).unwrap_or_default();
        DeviceName::Default(if host.is_empty() { "device".into() } else { host })
    }
}

/// `base` with suffix `n` (`n` = 1: `base` itself), shortened so that it fits the server's limit.
pub fn numbered(base: &str, n: u32) -> String {
    if n <= 1 {
        return base.chars().take(MAX_DEVICE_NAME).collect();
    }
    let suffix = format!("-{n}");
    let stem: String = base.chars().take(MAX_DEVICE_NAME - suffix.len()).collect();
    format!("{stem}{suffix}")
}

/// The first of `base`, `base-2`, `base-3`, ... from the `n`th on that is not in `taken`
/// (compared ignoring case), with its number.
pub fn free_name(base: &str, taken: &[String], from: u32) -> (String, u32) {
    let mut n = from.max(1);
    loop {
        let name = numbered(base, n);
        if !taken.iter().any(|t| t.eq_ignore_ascii_case(&name)) {
            return (name, n);
        }
        n += 1;
    }
}

/// Enrolls this machine with `token` at `url` (a new instance).
pub async fn enroll(
    store: &Store,
    url: &url::Url,
    token: &str,
    device_name: &DeviceName,
    ui: &mut dyn Interaction,
) -> Result<Enrolled, EnrollError> {
    let mut session = Session::open(store, url, token).await?;
    ui.show_start(&session.start);
    if session.needs_password() {
        let password = ui.password().map_err(EnrollError::Input)?;
        session.set_password(&password).await?;
    }
    session.register(store, device_name).await
}

/// An enrollment in steps, for a front end that shows each one (the desktop app): open the
/// session, set the password when the account needs one, register the device.
pub struct Session {
    client: EdgeClient,
    url: url::Url,
    token: String,
    /// What the server sent at the start: the user's data, the admin, the deadline.
    pub start: EnrollmentStartResponse,
    /// The password was accepted (a retried registration does not send it again).
    password_set: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("url", &self.url.as_str()).field("user", &self.start.user.login).finish()
    }
}

impl Session {
    /// Starts the session; refuses an instance this machine already has.
    pub async fn open(store: &Store, url: &url::Url, token: &str) -> Result<Session, EnrollError> {
        let mut client = EdgeClient::new(url);
        let start = client.start(token).await?;
        if store.instance(&start.instance.id).await?.is_some() {
            return Err(EnrollError::AlreadyEnrolled { instance: start.instance.name });
        }
        Ok(Session { client, url: url.clone(), token: token.to_owned(), start, password_set: false })
    }

    /// A user who has not enrolled yet sets a password; an enrolled one (desktop token) not.
    pub fn needs_password(&self) -> bool {
        !self.start.user.enrolled && !self.password_set
    }

    pub fn admin_contact(&self) -> Option<String> {
        admin_contact(&self.start)
    }

    /// The name a default registration would take: `base` or its first free suffix.
    pub fn suggested_name(&self, base: &str) -> String {
        free_name(base, &self.start.user.device_names, 1).0
    }

    pub async fn set_password(&mut self, password: &str) -> Result<(), EnrollError> {
        self.client.activate_user(password, None).await?;
        self.password_set = true;
        Ok(())
    }

    /// Registers this device and stores the instance. After a refusal (a name already taken)
    /// the session can register again with another name.
    pub async fn register(&mut self, store: &Store, device_name: &DeviceName) -> Result<Enrolled, EnrollError> {
        let resp = register(store, &mut self.client, &self.url, device_name, &self.start.user.device_names).await?;
        finish(store, &self.url, &self.token, &self.start, resp).await
    }
}

/// Registers the device, or recovers one registered before a crash: the key pair is saved
/// before its public key is sent, so a pair left pending for this URL is asked about first.
async fn register(
    store: &Store,
    client: &mut EdgeClient,
    url: &url::Url,
    device_name: &DeviceName,
    taken: &[String],
) -> Result<DeviceConfigResponse, EnrollError> {
    let key_url = url.as_str();
    if let Some(k) = store.pending_key(key_url).await? {
        match client.network_info(&k.public).await {
            Ok(resp) => {
                tracing::info!("recovered the device registered before an interruption");
                return Ok(resp);
            }
            Err(ApiError::Rejected { .. }) | Err(ApiError::Unauthorized { .. }) => {
                // Never registered: send this same key now.
                return create(client, device_name, taken, &k.public).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let k = crate::keys::generate();
    store.save_pending_key(key_url, &k).await?;
    create(client, device_name, taken, &k.public).await
}

/// Tries for a free name this many times when the user did not choose one.
const NAME_TRIES: u32 = 20;

/// Registers the key; a default name moves on past the names the session listed and past
/// any the server still finds taken (another device registered meanwhile).
async fn create(
    client: &mut EdgeClient,
    device_name: &DeviceName,
    taken: &[String],
    pubkey: &str,
) -> Result<DeviceConfigResponse, EnrollError> {
    let base = match device_name {
        DeviceName::Chosen(name) => return Ok(client.create_device(name, pubkey).await.map_err(name_hint)?),
        DeviceName::Default(base) => base,
    };
    let (mut name, mut n) = free_name(base, taken, 1);
    for _ in 1..NAME_TRIES {
        match client.create_device(&name, pubkey).await {
            Err(e) if is_name_clash(&e) => (name, n) = free_name(base, taken, n + 1),
            other => return Ok(other?),
        }
    }
    Ok(client.create_device(&name, pubkey).await.map_err(name_hint)?)
}

fn is_name_clash(e: &ApiError) -> bool {
    matches!(e, ApiError::Rejected { message, .. } if message.contains("already has a device named"))
}

fn name_hint(e: ApiError) -> ApiError {
    match e {
        ApiError::Rejected { status, code, message } if message.contains("already has a device named") => {
            ApiError::Rejected { status, code, message: format!("{message}; choose another with --device-name") }
        }
        other => other,
    }
}

async fn finish(
    store: &Store,
    url: &url::Url,
    token: &str,
    start: &EnrollmentStartResponse,
    resp: DeviceConfigResponse,
) -> Result<Enrolled, EnrollError> {
    let admin = admin_contact(start);
    let spent = onramp_domain::token::hash_secret(token);
    let diff = store.save_instance(url.as_str(), &resp, resp.token.as_deref(), admin.as_deref(), Some(&spent)).await?;
    Ok(Enrolled {
        instance_name: resp.instance.name.clone(),
        instance_id: resp.instance.id.clone(),
        device_name: resp.device.name.clone(),
        locations: resp.configs.iter().map(|c| c.network_name.clone()).collect(),
        admin_contact: admin,
        diff,
    })
}

/// Applies a new token from the admin to an instance this machine already has: start, then
/// network_info with the stored public key (no new device, no password).
pub async fn update_instance(store: &Store, url: &url::Url, token: &str) -> Result<Enrolled, EnrollError> {
    let mut client = EdgeClient::new(url);
    let start = client.start(token).await?;
    let Some(existing) = store.instance(&start.instance.id).await? else {
        let known: Vec<String> = store.instances().await?.into_iter().map(|i| i.name).collect();
        return Err(EnrollError::Refused(format!(
            "this token belongs to instance {:?}, which this machine is not enrolled in (enrolled: {}); use add-instance",
            start.instance.name,
            if known.is_empty() { "none".into() } else { known.join(", ") }
        )));
    };
    let resp = client.network_info(&existing.pubkey).await?;
    finish(store, url, token, &start, resp).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_move_to_the_next_free_number() {
        let taken = vec!["vm".to_string(), "VM-2".to_string(), "vm-4".to_string()];
        assert_eq!(free_name("vm", &[], 1), ("vm".into(), 1));
        assert_eq!(free_name("vm", &taken, 1), ("vm-3".into(), 3));
        assert_eq!(free_name("vm", &taken, 4), ("vm-5".into(), 5));
        let long = "h".repeat(70);
        assert_eq!(numbered(&long, 1).chars().count(), MAX_DEVICE_NAME);
        let tenth = numbered(&long, 10);
        assert_eq!(tenth.chars().count(), MAX_DEVICE_NAME);
        assert!(tenth.ends_with("h-10"));
    }
}
