//! Network devices: headless machines (servers, routers) that belong to one location and
//! to no user. An admin creates one (addresses chosen or allocated), then issues a
//! `network_device` token with which the machine enrolls through the edge's enrollment API
//! (`start`, then `create_device` with its own public key, then `poll`). Gateways serve
//! them like user devices, without user or group rules.

use crate::error::OrNotFound;
use crate::tokens::rfc3339;
use crate::{Actor, Core, CoreError, CoreResult};
use onramp_domain::net::LocationSubnet;
use onramp_domain::token::TokenSecret;
use onramp_domain::validate::{parse_name, WgPublicKey};
use onramp_proto::{
    AdminInfo, DeviceConfigResponse, EnrollmentSettings, EnrollmentStartResponse, InitialUserInfo,
    StartEnrollmentResponse,
};
use onramp_store::{
    DeviceRow, LocationRow, NetworkEnrollment, NewNetworkDevice, NewNetworkDeviceToken, StoreError, TokenRow,
    UniqueKey, UserRow,
};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `POST /api/v1/device/network`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkDeviceInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub location_id: i64,
    /// Addresses to give the device, each inside a subnet of the location and free.
    /// Absent (or empty): one free address per subnet of the location is allocated.
    #[serde(default)]
    pub assigned_ips: Option<Vec<String>>,
}

/// `POST /api/v1/device/network/start_cli`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartCliRequest {
    pub device_id: i64,
    /// Token lifetime like `12h`, `3d`, `1w`; default: the enrollment token lifetime setting.
    #[serde(default)]
    pub token_expiration_time: Option<String>,
}

/// A network device as admins see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NetworkDeviceInfo {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub location_id: i64,
    pub location_name: String,
    /// The device's addresses in its location.
    pub assigned_ips: Vec<String>,
    /// Its WireGuard public key; `null` until the machine enrolled.
    pub pubkey: Option<String>,
    /// True once the machine enrolled (its key is known, the gateway serves it).
    pub configured: bool,
    pub created_at: i64,
}

const DESCRIPTION_MAX: usize = 256;

impl Core {
    /// Creates a network device of one location: the given addresses (inside the
    /// location's subnets, free) or one free address per subnet. Audited.
    pub async fn create_network_device(
        &self,
        actor: &Actor,
        input: NetworkDeviceInput,
    ) -> CoreResult<NetworkDeviceInfo> {
        let name = parse_name("name", &input.name, 64)?;
        let description = match input.description.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            Some(d) if d.chars().count() > DESCRIPTION_MAX => {
                return Err(CoreError::invalid("description", format!("at most {DESCRIPTION_MAX} characters")));
            }
            Some(d) if d.chars().any(char::is_control) => {
                return Err(CoreError::invalid("description", "control characters are not allowed"));
            }
            other => other.map(str::to_owned),
        };
        let location = self
            .store()
            .location_by_id(input.location_id)
            .await
            .or_not_found("location", &input.location_id.to_string())?;
        let addresses = match input.assigned_ips.filter(|ips| !ips.is_empty()) {
            None => None,
            Some(ips) => Some(parse_assigned_ips(&location, &ips)?),
        };
        let audit = self.audit_record(
            actor,
            "network_device.added",
            Some(name.clone()),
            serde_json::json!({"location": location.name, "assigned_ips": addresses.as_ref().map(|a| a.iter().map(ToString::to_string).collect::<Vec<_>>())}),
        );
        let new = NewNetworkDevice {
            location_id: location.id,
            name: name.clone(),
            description,
            addresses,
            created_at: self.now(),
        };
        let (device, _) = self.store().create_network_device(&new, &audit).await.map_err(|e| match e {
            StoreError::Conflict { key: UniqueKey::DeviceName } => CoreError::Conflict {
                field: "name",
                message: format!("location {} already has a network device named {name:?}", location.name),
            },
            StoreError::Conflict { key: UniqueKey::DeviceAddress } => CoreError::invalid(
                "assigned_ips",
                format!("an address in assigned_ips is already used by another device in location {}", location.name),
            ),
            StoreError::AddressOutsideSubnets { address, .. } => CoreError::invalid(
                "assigned_ips",
                format!(
                    "{address} is not an assignable address of location {} ({})",
                    location.name, location.addresses
                ),
            ),
            StoreError::NotFound => CoreError::not_found("location", location.id),
            other => other.into(),
        })?;
        self.inner.gateway_epoch.poke();
        self.network_device_info(device).await
    }

    /// Every network device (or those of one location), oldest first.
    pub async fn list_network_devices(&self, location: Option<&str>) -> CoreResult<Vec<NetworkDeviceInfo>> {
        let location_id = match location {
            Some(name) => Some(self.store().location_by_name(name).await.or_not_found("location", name)?.id),
            None => None,
        };
        let rows = self.store().list_network_devices(location_id).await?;
        let mut out = Vec::with_capacity(rows.len());
        for d in rows {
            out.push(self.network_device_info(d).await?);
        }
        Ok(out)
    }

    pub async fn get_network_device(&self, id: i64) -> CoreResult<NetworkDeviceInfo> {
        let d = self.network_device_row(id).await?;
        self.network_device_info(d).await
    }

    /// Deletes a network device: its addresses go, its gateway drops the peer, its unused
    /// tokens are revoked. Audited.
    pub async fn delete_network_device(&self, actor: &Actor, id: i64) -> CoreResult<()> {
        let d = self.network_device_row(id).await?;
        let audit = self.audit_record(
            actor,
            "network_device.deleted",
            Some(d.name.clone()),
            serde_json::json!({"device_id": d.id, "pubkey": d.pubkey}),
        );
        self.store()
            .delete_network_device(id, self.now(), &audit)
            .await
            .or_not_found("network device", &id.to_string())?;
        self.inner.gateway_epoch.poke();
        Ok(())
    }

    /// `POST /api/v1/device/network/start_cli`: a `network_device` token (shown once,
    /// stored hashed) with which a headless client enrolls the device. Revokes the
    /// device's earlier unused tokens, never a user's. Audited.
    pub async fn start_network_device_cli(
        &self,
        actor: &Actor,
        req: StartCliRequest,
    ) -> CoreResult<StartEnrollmentResponse> {
        let d = self.network_device_row(req.device_id).await?;
        let default = self.settings().await.enrollment.token_lifetime_secs;
        let lifetime = match req.token_expiration_time.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(s) => onramp_domain::duration::parse_lifetime("token_expiration_time", s)?,
            None => default,
        };
        let now = self.now();
        let secret = TokenSecret::generate(&mut rand::rngs::OsRng);
        let row = NewNetworkDeviceToken {
            hash: secret.hash(),
            issued_by: actor.user_id,
            created_at: now,
            expires_at: now + lifetime,
        };
        let audit = self.audit_record(
            actor,
            "network_device_token.added",
            Some(d.name.clone()),
            serde_json::json!({"device_id": d.id, "expires_at": now + lifetime}),
        );
        self.store()
            .issue_network_device_token(d.id, &row, &audit)
            .await
            .or_not_found("network device", &d.id.to_string())?;
        metrics::counter!("onramp_tokens_issued_total").increment(1);
        Ok(StartEnrollmentResponse {
            enrollment_token: secret.expose().to_owned(),
            enrollment_url: self.public_url().await,
            expires_at: rfc3339(now + lifetime),
        })
    }

    /// Revokes the device's unused enrollment tokens; returns how many. Audited.
    pub async fn revoke_network_device_tokens(&self, actor: &Actor, id: i64) -> CoreResult<u64> {
        let d = self.network_device_row(id).await?;
        let audit = self.audit_record(
            actor,
            "network_device_token.revoked",
            Some(d.name.clone()),
            serde_json::json!({"device_id": d.id}),
        );
        Ok(self.store().revoke_network_device_tokens(d.id, self.now(), &audit).await?)
    }

    /// `enrollment/start` with a network device's token: the user fields describe the
    /// device; `enrolled` is true, so clients skip the password step.
    pub(crate) async fn network_start_response(
        &self,
        device: &DeviceRow,
        admin: Option<&UserRow>,
        deadline: i64,
    ) -> CoreResult<EnrollmentStartResponse> {
        let settings = self.settings().await;
        let contact = self.contact(admin).await;
        Ok(EnrollmentStartResponse {
            admin: contact.map(|a| AdminInfo { name: a.name(), phone_number: a.phone, email: a.email }),
            user: InitialUserInfo {
                first_name: device.name.clone(),
                last_name: String::new(),
                login: device.name.clone(),
                email: String::new(),
                phone_number: None,
                is_active: true,
                device_names: Vec::new(),
                enrolled: true,
                is_admin: false,
            },
            deadline_timestamp: deadline,
            final_page_content: String::new(),
            instance: self.instance_info(&device.name).await,
            settings: EnrollmentSettings {
                vpn_setup_optional: false,
                only_client_activation: false,
                admin_device_management: settings.enrollment.admin_device_management,
                smtp_configured: settings.smtp.is_configured(),
                mfa_required: false,
            },
        })
    }

    /// `enrollment/create_device` with a network device's token: sets the pre-created
    /// device's public key (the name sent is ignored; headless clients send none) and uses
    /// the token, so a second registration is refused. Returns its location's config and a
    /// polling token.
    pub(crate) async fn enroll_network_device(
        &self,
        actor: &Actor,
        token: &TokenRow,
        device: &DeviceRow,
        _name: &str,
        pubkey: &str,
    ) -> CoreResult<DeviceConfigResponse> {
        let key = WgPublicKey::parse("pubkey", pubkey)?;
        if token.used_at.is_some() {
            return Err(already_enrolled(&device.name));
        }
        let audit = self.audit_record(
            actor,
            "network_device.enrolled",
            Some(device.name.clone()),
            serde_json::json!({"device_id": device.id, "token_id": token.id, "pubkey": key.as_str()}),
        );
        let outcome =
            self.store().enroll_network_device(token.id, device.id, key.as_str(), self.now(), &audit).await.map_err(
                |e| match e {
                    StoreError::Conflict { key: UniqueKey::DevicePubkey } => CoreError::Conflict {
                        field: "pubkey",
                        message: "a device with this public key is already registered".into(),
                    },
                    StoreError::NotFound => CoreError::not_found("network device", device.id),
                    other => other.into(),
                },
            )?;
        if outcome == NetworkEnrollment::TokenSpent {
            // Lost to a concurrent registration, or the token changed meanwhile: say what it is.
            let now_row = self.store().token_by_id(token.id).await?;
            onramp_domain::token::check_session(&crate::tokens::times(&now_row), self.now())
                .map_err(CoreError::Token)?;
            return Err(already_enrolled(&device.name));
        }
        self.inner.gateway_epoch.poke();
        let device = self.store().device_by_id(device.id).await?;
        self.network_config_response(&device, true).await
    }

    async fn network_device_row(&self, id: i64) -> CoreResult<DeviceRow> {
        self.store()
            .device_by_id(id)
            .await
            .ok()
            .filter(DeviceRow::is_network)
            .ok_or_else(|| CoreError::not_found("network device", id))
    }

    async fn network_device_info(&self, d: DeviceRow) -> CoreResult<NetworkDeviceInfo> {
        let location_id = d.location_id.unwrap_or_default();
        let location = self.store().location_by_id(location_id).await?;
        let assigned_ips = self.store().device_addresses(d.id).await?.into_iter().map(|a| a.address).collect();
        let configured = !d.pubkey.is_empty();
        Ok(NetworkDeviceInfo {
            id: d.id,
            name: d.name,
            description: d.description,
            location_id,
            location_name: location.name,
            assigned_ips,
            pubkey: configured.then_some(d.pubkey),
            configured,
            created_at: d.created_at,
        })
    }
}

/// A second `create_device` in a network device's session.
fn already_enrolled(name: &str) -> CoreError {
    CoreError::refused(
        "session_has_device",
        format!(
            "this token already enrolled network device {name:?}; to enroll it again (a new key), \
             ask your administrator for a new token"
        ),
    )
}

/// Parses the admin's addresses: each an IP address (a `/32` or `/128` suffix is
/// accepted) assignable in one of the location's subnets, none twice.
fn parse_assigned_ips(location: &LocationRow, ips: &[String]) -> CoreResult<Vec<IpAddr>> {
    let subnets: Vec<LocationSubnet> = location
        .addresses
        .split(',')
        .filter(|a| !a.trim().is_empty())
        .filter_map(|a| LocationSubnet::parse("address", a.trim()).ok())
        .collect();
    let mut out: Vec<IpAddr> = Vec::new();
    for raw in ips {
        let text = raw.trim();
        let bare = text.strip_suffix("/32").or_else(|| text.strip_suffix("/128")).unwrap_or(text);
        let ip: IpAddr =
            bare.parse().map_err(|_| CoreError::invalid("assigned_ips", format!("{text:?} is not an IP address")))?;
        if !subnets.iter().any(|s| s.is_assignable(ip)) {
            let cidrs: Vec<String> = subnets.iter().map(LocationSubnet::to_cidr_string).collect();
            return Err(CoreError::invalid(
                "assigned_ips",
                format!(
                    "{ip} is outside the subnets of location {} ({}), or is its gateway, network or broadcast address",
                    location.name,
                    cidrs.join(", ")
                ),
            ));
        }
        if out.contains(&ip) {
            return Err(CoreError::invalid("assigned_ips", format!("{ip} is listed twice")));
        }
        out.push(ip);
    }
    Ok(out)
}
