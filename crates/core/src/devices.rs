use crate::error::OrNotFound;
use crate::locations::{split_csv, subnets};
use crate::mail::MailKind;
use crate::{Actor, Core, CoreError, CoreResult};
use onramp_domain::validate::{parse_name, WgPublicKey};
use onramp_domain::wg;
use onramp_proto::DeviceConfig;
use onramp_store::{DeviceRow, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    pub username: String,
    pub name: String,
    pub pubkey: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceInfo {
    pub id: i64,
    pub name: String,
    pub pubkey: String,
    pub user_id: i64,
    pub username: String,
    pub created_at: i64,
    /// One entry per location the device has addresses in.
    pub configs: Vec<DeviceConfig>,
}

impl Core {
    /// Registers a device: validates name and key, then gives it one free address per
    /// subnet in every location the user may use. Used by the admin API and enrollment.
    pub async fn add_device(&self, actor: &Actor, input: DeviceInput) -> CoreResult<DeviceInfo> {
        let user = self.user_row(&input.username).await?;
        let name = parse_name("name", &input.name, 64)?;
        let pubkey = WgPublicKey::parse("pubkey", &input.pubkey)?;
        let locations = self.store().locations_for_user(user.id).await?;
        let plan: Vec<_> = locations.iter().map(|l| (l.id, subnets(l))).collect();
        let (device, _) =
            self.store().create_device(user.id, &name, pubkey.as_str(), &plan, self.now()).await.map_err(
                |e| match e {
                    StoreError::Conflict { field: "pubkey" } => CoreError::Conflict {
                        field: "pubkey",
                        message: "a device with this public key is already registered".into(),
                    },
                    StoreError::Conflict { field: "name" } => CoreError::Conflict {
                        field: "name",
                        message: format!("user {} already has a device named {name:?}", user.username),
                    },
                    StoreError::Conflict { field: "subnet_full" } => CoreError::refused(
                        "subnet_full",
                        "no free address left in a location subnet; ask the administrator to enlarge it",
                    ),
                    other => other.into(),
                },
            )?;
        self.audit(
            actor,
            "device.added",
            Some(user.username.clone()),
            serde_json::json!({"device": name, "pubkey": device.pubkey}),
        )
        .await;
        // Tell the owner, so a device they did not add is noticed.
        if self.settings().await.smtp.is_configured() {
            let admin = match actor.user_id {
                Some(id) => self.store().user_by_id(id).await.ok(),
                None => None,
            };
            self.enqueue_mail_with(
                MailKind::NewDevice,
                &user.email,
                &user,
                admin.as_ref(),
                None,
                &[("device_name", &name)],
            )
            .await?;
        }
        self.device_info(device, &user.username).await
    }

    pub(crate) async fn device_info(&self, d: DeviceRow, username: &str) -> CoreResult<DeviceInfo> {
        let configs = self.device_configs(&d).await?;
        Ok(DeviceInfo {
            id: d.id,
            name: d.name,
            pubkey: d.pubkey,
            user_id: d.user_id,
            username: username.to_owned(),
            created_at: d.created_at,
            configs,
        })
    }

    /// The wg-quick configs of a device, one per location it holds addresses in.
    /// Locations the user may use but the device has no address in yet (added later, or
    /// opened to the user's group later) get addresses now, so syncing clients see them.
    pub async fn device_configs(&self, d: &DeviceRow) -> CoreResult<Vec<DeviceConfig>> {
        let mut addresses = self.store().device_addresses(d.id).await?;
        let locations = self.store().locations_for_user(d.user_id).await?;
        let missing: Vec<_> = locations
            .iter()
            .filter(|l| !addresses.iter().any(|a| a.location_id == l.id))
            .map(|l| (l.id, subnets(l)))
            .collect();
        if !missing.is_empty() {
            match self.store().add_device_addresses(d.id, &missing).await {
                Ok(rows) => addresses.extend(rows),
                // A full subnet must not break the device's other locations.
                Err(StoreError::Conflict { field: "subnet_full" }) => {
                    tracing::warn!(device_id = d.id, "no free address for a new location; it is left out of the config")
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut out = Vec::new();
        for l in locations {
            let ips: Vec<String> =
                addresses.iter().filter(|a| a.location_id == l.id).map(|a| a.address.clone()).collect();
            if ips.is_empty() {
                continue;
            }
            let allowed = split_csv(&l.allowed_ips);
            let endpoint = wg::endpoint(&l.endpoint, l.port as u16);
            let gw_key = l.gateway_pubkey.clone().unwrap_or_default();
            let config = wg::render_config(&wg::PeerConfig {
                assigned_ips: &ips,
                dns: l.dns.as_deref(),
                gateway_pubkey: &gw_key,
                allowed_ips: &allowed,
                endpoint: &endpoint,
                keepalive: l.keepalive as i32,
            });
            out.push(DeviceConfig {
                network_id: l.id,
                network_name: l.name.clone(),
                config,
                endpoint,
                assigned_ip: ips.join(","),
                pubkey: gw_key,
                allowed_ips: allowed.join(","),
                dns: l.dns.clone(),
                mfa_enabled: l.mfa_mode != 1,
                keepalive_interval: l.keepalive as i32,
                location_mfa_mode: Some(l.mfa_mode as i32),
                service_location_mode: Some(1),
            });
        }
        Ok(out)
    }

    pub async fn get_device(&self, id: i64) -> CoreResult<DeviceInfo> {
        let d = self.store().device_by_id(id).await.or_not_found("device", &id.to_string())?;
        let user = self.store().user_by_id(d.user_id).await?;
        self.device_info(d, &user.username).await
    }

    pub async fn list_devices(&self, username: Option<&str>) -> CoreResult<Vec<DeviceInfo>> {
        let user_id = match username {
            Some(u) => Some(self.user_row(u).await?.id),
            None => None,
        };
        let users: std::collections::HashMap<i64, String> =
            self.store().list_users().await?.into_iter().map(|u| (u.id, u.username)).collect();
        let mut out = Vec::new();
        for d in self.store().list_devices(user_id).await? {
            let name = users.get(&d.user_id).cloned().unwrap_or_default();
            out.push(self.device_info(d, &name).await?);
        }
        Ok(out)
    }

    pub async fn rename_device(&self, actor: &Actor, id: i64, name: &str) -> CoreResult<DeviceInfo> {
        let name = parse_name("name", name, 64)?;
        let d = self.store().rename_device(id, &name).await.map_err(|e| match e {
            StoreError::NotFound => CoreError::not_found("device", id),
            StoreError::Conflict { .. } => {
                CoreError::Conflict { field: "name", message: format!("the user already has a device named {name:?}") }
            }
            other => other.into(),
        })?;
        let user = self.store().user_by_id(d.user_id).await?;
        self.audit(
            actor,
            "device.renamed",
            Some(user.username.clone()),
            serde_json::json!({"device_id": id, "name": name}),
        )
        .await;
        self.device_info(d, &user.username).await
    }

    pub async fn delete_device(&self, actor: &Actor, id: i64) -> CoreResult<()> {
        let d = self.store().device_by_id(id).await.or_not_found("device", &id.to_string())?;
        self.store().delete_device(id).await.or_not_found("device", &id.to_string())?;
        self.audit(actor, "device.deleted", None, serde_json::json!({"device": d.name, "pubkey": d.pubkey})).await;
        Ok(())
    }
}
