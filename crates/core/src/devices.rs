use crate::error::OrNotFound;
use crate::locations::split_csv;
use crate::mail::MailKind;
use crate::{Actor, Core, CoreError, CoreResult};
use onramp_domain::validate::{parse_name, WgPublicKey};
use onramp_domain::wg;
use onramp_proto::DeviceConfig;
use onramp_store::{DeviceAddressRow, DeviceLimits, DeviceRow, LocationRow, StoreError, UniqueKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
    /// Empty for a network device that has not enrolled yet.
    pub pubkey: String,
    /// `null` for a network device (a headless machine of one location, no user).
    pub user_id: Option<i64>,
    /// Empty for a network device.
    pub username: String,
    pub created_at: i64,
    /// One entry per location the device has addresses in.
    pub configs: Vec<DeviceConfig>,
    /// Per location, the counters its gateway last reported for this device.
    pub stats: Vec<crate::DevicePeerStats>,
}

impl Core {
    /// Registers a device: validates name and key, then gives it one free address per
    /// subnet in every location the user may use. Used by the admin API and enrollment.
    pub async fn add_device(&self, actor: &Actor, input: DeviceInput) -> CoreResult<DeviceInfo> {
        self.register_device(actor, input, None).await
    }

    /// `add_device`, optionally inside an enrollment session (`session_token`), which may
    /// register one device.
    pub(crate) async fn register_device(
        &self,
        actor: &Actor,
        input: DeviceInput,
        session_token: Option<i64>,
    ) -> CoreResult<DeviceInfo> {
        let user = self.user_row(&input.username).await?;
        let name = parse_name("name", &input.name, 64)?;
        let pubkey = WgPublicKey::parse("pubkey", &input.pubkey)?;
        let locations: Vec<i64> = self.store().locations_for_user(user.id).await?.iter().map(|l| l.id).collect();
        let limits =
            DeviceLimits { max_per_user: self.settings().await.enrollment.max_devices_per_user, session_token };
        let (device, _) =
            self.store().create_device(user.id, &name, pubkey.as_str(), &locations, limits, self.now()).await.map_err(
                |e| match e {
                    StoreError::Conflict { key: UniqueKey::DevicePubkey } => CoreError::Conflict {
                        field: "pubkey",
                        message: "a device with this public key is already registered".into(),
                    },
                    StoreError::Conflict { key: UniqueKey::DeviceName } => CoreError::Conflict {
                        field: "name",
                        message: format!("user {} already has a device named {name:?}", user.username),
                    },
                    StoreError::DeviceLimit { max } => CoreError::refused(
                        "device_limit",
                        format!(
                            "user {} already has {max} devices, the most allowed; delete one first, \
                         or ask the administrator to raise enrollment.max_devices_per_user",
                            user.username
                        ),
                    ),
                    // A concurrent second registration in the same session.
                    StoreError::SessionHasDevice { .. } => crate::enrollment::session_has_device(""),
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
        let stats = self.device_stats(&[d.id]).await?.remove(&d.id).unwrap_or_default();
        Ok(DeviceInfo {
            stats,
            id: d.id,
            name: d.name,
            pubkey: d.pubkey,
            user_id: d.user_id,
            username: username.to_owned(),
            created_at: d.created_at,
            configs,
        })
    }

    /// The wg-quick configs of a device, one per location it holds addresses in. A pure
    /// read: addresses in locations opened to the device later are allocated by the write
    /// paths that open them (`Store::allocate_missing_addresses`).
    pub async fn device_configs(&self, d: &DeviceRow) -> CoreResult<Vec<DeviceConfig>> {
        let addresses = self.store().device_addresses(d.id).await?;
        let locations = self.device_locations(d).await?;
        Ok(render_configs(&addresses, locations.iter()))
    }

    /// The locations a device may be in: its user's (by groups), or a network device's one.
    async fn device_locations(&self, d: &DeviceRow) -> CoreResult<Vec<LocationRow>> {
        Ok(match (d.user_id, d.location_id) {
            (Some(uid), _) => self.store().locations_for_user(uid).await?,
            (None, Some(lid)) => vec![self.store().location_by_id(lid).await?],
            (None, None) => Vec::new(),
        })
    }

    /// The name of a device's owner; empty for a network device.
    async fn owner_name(&self, d: &DeviceRow) -> CoreResult<String> {
        Ok(match d.user_id {
            Some(uid) => self.store().user_by_id(uid).await?.username,
            None => String::new(),
        })
    }

    pub async fn get_device(&self, id: i64) -> CoreResult<DeviceInfo> {
        let d = self.store().device_by_id(id).await.or_not_found("device", &id.to_string())?;
        let owner = self.owner_name(&d).await?;
        self.device_info(d, &owner).await
    }

    /// All devices (optionally of one user); see [`Core::list_devices_page`].
    pub async fn list_devices(&self, username: Option<&str>) -> CoreResult<Vec<DeviceInfo>> {
        Ok(self.list_devices_page(username, i64::MAX, 0).await?.0)
    }

    /// One page of devices, oldest first, and the total. A fixed number of queries per page
    /// (the page and its count, its users' names, their locations, the page's addresses
    /// and counters),
    /// whatever its size; nothing is written.
    pub async fn list_devices_page(
        &self,
        username: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> CoreResult<(Vec<DeviceInfo>, i64)> {
        let user_id = match username {
            Some(u) => Some(self.user_row(u).await?.id),
            None => None,
        };
        let (devices, total) = self.store().list_devices_page(user_id, limit, offset).await?;
        let mut user_ids: Vec<i64> = devices.iter().filter_map(|d| d.user_id).collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        let names: HashMap<i64, String> = self.store().usernames(&user_ids).await?.into_iter().collect();
        let mut allowed: HashMap<i64, Vec<i64>> = HashMap::new();
        for (uid, lid) in self.store().user_locations(&user_ids).await? {
            allowed.entry(uid).or_default().push(lid);
        }
        let locations: HashMap<i64, LocationRow> = if allowed.is_empty() && devices.iter().all(|d| d.user_id.is_some())
        {
            HashMap::new()
        } else {
            self.store().list_locations().await?.into_iter().map(|l| (l.id, l)).collect()
        };
        let ids: Vec<i64> = devices.iter().map(|d| d.id).collect();
        let mut addresses: HashMap<i64, Vec<DeviceAddressRow>> = HashMap::new();
        for a in self.store().addresses_of_devices(&ids).await? {
            addresses.entry(a.device_id).or_default().push(a);
        }
        let mut stats = self.device_stats(&ids).await?;
        let out = devices
            .into_iter()
            .map(|d| {
                let own = addresses.remove(&d.id).unwrap_or_default();
                // A network device's one location, or the locations its user may use.
                let own_location = d.location_id.map(|l| vec![l]).unwrap_or_default();
                let ids = match d.user_id {
                    Some(uid) => allowed.get(&uid).cloned().unwrap_or_default(),
                    None => own_location,
                };
                let locs = ids.iter().filter_map(|id| locations.get(id)).collect::<Vec<_>>().into_iter();
                DeviceInfo {
                    id: d.id,
                    stats: stats.remove(&d.id).unwrap_or_default(),
                    configs: render_configs(&own, locs),
                    name: d.name,
                    pubkey: d.pubkey,
                    user_id: d.user_id,
                    username: d.user_id.and_then(|u| names.get(&u).cloned()).unwrap_or_default(),
                    created_at: d.created_at,
                }
            })
            .collect();
        Ok((out, total))
    }

    pub async fn rename_device(&self, actor: &Actor, id: i64, name: &str) -> CoreResult<DeviceInfo> {
        let name = parse_name("name", name, 64)?;
        let d = self.store().rename_device(id, &name).await.map_err(|e| match e {
            StoreError::NotFound => CoreError::not_found("device", id),
            StoreError::Conflict { key: UniqueKey::DeviceName } => {
                CoreError::Conflict { field: "name", message: format!("the user already has a device named {name:?}") }
            }
            other => other.into(),
        })?;
        let owner = self.owner_name(&d).await?;
        self.audit(actor, "device.renamed", Some(owner.clone()), serde_json::json!({"device_id": id, "name": name}))
            .await;
        self.device_info(d, &owner).await
    }

    /// Deletes a device only if it belongs to `username` (the web UI's per-user pages and
    /// the self-service portal, where a device id from another user must not work).
    pub async fn delete_device_of(&self, actor: &Actor, username: &str, id: i64) -> CoreResult<()> {
        let user = self.user_row(username).await?;
        let d = self.store().device_by_id(id).await.or_not_found("device", &id.to_string())?;
        if d.user_id != Some(user.id) {
            return Err(CoreError::not_found("device", id));
        }
        self.delete_device(actor, id).await
    }

    pub async fn delete_device(&self, actor: &Actor, id: i64) -> CoreResult<()> {
        let d = self.store().device_by_id(id).await.or_not_found("device", &id.to_string())?;
        self.store().delete_device(id).await.or_not_found("device", &id.to_string())?;
        self.audit(actor, "device.deleted", None, serde_json::json!({"device": d.name, "pubkey": d.pubkey})).await;
        Ok(())
    }
}

/// The configs of a device from its addresses, one per location (of `locations`, in order)
/// it holds addresses in.
fn render_configs<'a>(
    addresses: &[DeviceAddressRow],
    locations: impl Iterator<Item = &'a LocationRow>,
) -> Vec<DeviceConfig> {
    let mut out = Vec::new();
    for l in locations {
        let ips: Vec<String> = addresses.iter().filter(|a| a.location_id == l.id).map(|a| a.address.clone()).collect();
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
    out
}
