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
    /// The password prompt was abandoned or could not be read.
    #[error("{0}")]
    Input(String),
}

/// What the enrollment needs from a person (or from flags in unattended runs).
pub trait Interaction {
    /// Shows the user's data, the admin's contact and the session deadline.
    fn show_start(&mut self, start: &EnrollmentStartResponse);
    /// A new password meeting the policy; called only for users not enrolled yet.
    fn password(&mut self) -> Result<String, String>;
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
    start.admin.as_ref().map(|a| match &a.phone_number {
        Some(p) if !p.is_empty() => format!("{} <{}>, {}", a.name, a.email, p),
        _ => format!("{} <{}>", a.name, a.email),
    })
}

/// Enrolls this machine with `token` at `url` (a new instance).
pub async fn enroll(
    store: &Store,
    url: &url::Url,
    token: &str,
    device_name: &str,
    ui: &mut dyn Interaction,
) -> Result<Enrolled, EnrollError> {
    let mut client = EdgeClient::new(url);
    let start = client.start(token).await?;
    if store.instance(&start.instance.id).await?.is_some() {
        return Err(EnrollError::Refused(format!(
            "this machine is already enrolled in {}; use update-instance to apply a new token",
            start.instance.name
        )));
    }
    ui.show_start(&start);
    if !start.user.enrolled {
        let password = ui.password().map_err(EnrollError::Input)?;
        client.activate_user(&password, None).await?;
    }
    let resp = register(store, &mut client, url, device_name).await?;
    finish(store, url, token, &start, resp).await
}

/// Registers the device, or recovers one registered before a crash: the key pair is saved
/// before its public key is sent, so a pair left pending for this URL is asked about first.
async fn register(
    store: &Store,
    client: &mut EdgeClient,
    url: &url::Url,
    device_name: &str,
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
                return Ok(client.create_device(device_name, &k.public).await.map_err(name_hint)?);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let k = crate::keys::generate();
    store.save_pending_key(key_url, &k).await?;
    Ok(client.create_device(device_name, &k.public).await.map_err(name_hint)?)
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
