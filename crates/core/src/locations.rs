use crate::error::OrNotFound;
use crate::{Actor, Core, CoreError, CoreResult};
use onramp_domain::net::{parse_cidr_list, parse_dns, parse_host, LocationSubnet};
use onramp_domain::validate::{parse_name, WgPublicKey};
use onramp_store::{LocationData, LocationRow};
use serde::{Deserialize, Serialize};

/// `address` accepts one CIDR string, a comma-separated list, or a JSON array.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => s.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect(),
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationInput {
    pub name: String,
    /// Gateway address(es) with prefix, e.g. `10.10.0.1/24`.
    pub address: StringOrList,
    pub endpoint: String,
    pub port: i64,
    #[serde(default)]
    pub allowed_ips: Option<StringOrList>,
    #[serde(default)]
    pub dns: Option<String>,
    /// Group names; empty or absent = everyone.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// The gateway's WireGuard public key (the gateway generates its own key pair and
    /// registers it when it first connects). On update, absent keeps the current key and
    /// `""` clears it.
    #[serde(default)]
    pub pubkey: Option<String>,
    #[serde(default)]
    pub keepalive_interval: Option<i64>,
    /// 1 disabled, 2 internal, 3 external (PROTOCOL.md `location_mfa_mode`).
    #[serde(default)]
    #[schema(value_type = Option<crate::schema::LocationMfaMode>)]
    pub mfa_mode: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LocationInfo {
    pub id: i64,
    pub name: String,
    pub address: Vec<String>,
    pub endpoint: String,
    pub port: i64,
    pub pubkey: Option<String>,
    pub allowed_ips: Vec<String>,
    pub dns: Option<String>,
    pub keepalive_interval: i64,
    #[schema(value_type = crate::schema::LocationMfaMode)]
    pub mfa_mode: i64,
    pub allowed_groups: Vec<String>,
    pub created_at: i64,
    /// A gateway of this location is connected now.
    pub gateway_connected: bool,
}

/// The networks of a stored `addresses` column (`gateway/prefix,...`).
fn parse_subnets(addresses: &str) -> Vec<ipnet::IpNet> {
    split_csv(addresses).iter().filter_map(|a| a.parse::<ipnet::IpNet>().ok().map(|n| n.trunc())).collect()
}

pub(crate) fn split_csv(s: &str) -> Vec<String> {
    s.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect()
}

impl Core {
    async fn location_data(&self, input: LocationInput) -> CoreResult<LocationData> {
        let name = parse_name("name", &input.name, 64)?;
        let addresses = input.address.into_vec();
        if addresses.is_empty() {
            return Err(CoreError::invalid("address", "at least one address is required, e.g. 10.10.0.1/24"));
        }
        let mut subs: Vec<LocationSubnet> = Vec::new();
        for a in &addresses {
            let s = LocationSubnet::parse("address", a)?;
            if let Some(other) =
                subs.iter().find(|o| o.net.contains(&s.net.network()) || s.net.contains(&o.net.network()))
            {
                return Err(CoreError::invalid("address", format!("{} overlaps {}", s.net, other.net)));
            }
            subs.push(s);
        }
        let endpoint = parse_host("endpoint", &input.endpoint)?;
        if !(1..=65535).contains(&input.port) {
            return Err(CoreError::invalid("port", "must be between 1 and 65535"));
        }
        let allowed = match input.allowed_ips {
            Some(a) => parse_cidr_list("allowed_ips", &a.into_vec())?,
            None => subs.iter().map(|s| s.net).collect(),
        };
        let dns = match input.dns.filter(|d| !d.trim().is_empty()) {
            Some(d) => Some(parse_dns("dns", &d)?),
            None => None,
        };
        // Absent: an update keeps the key the gateway registered; "" clears it.
        let keep_gateway_pubkey = input.pubkey.is_none();
        let gateway_pubkey = match input.pubkey.filter(|k| !k.trim().is_empty()) {
            Some(k) => Some(WgPublicKey::parse("pubkey", &k)?.into_inner()),
            None => None,
        };
        let keepalive = input.keepalive_interval.unwrap_or(25);
        if !(0..=3600).contains(&keepalive) {
            return Err(CoreError::invalid("keepalive_interval", "must be between 0 and 3600 seconds"));
        }
        let mfa_mode = input.mfa_mode.unwrap_or(1);
        if !(1..=3).contains(&mfa_mode) {
            return Err(CoreError::invalid("mfa_mode", "must be 1 (disabled), 2 (internal) or 3 (external)"));
        }
        let mut allowed_groups = Vec::new();
        for g in &input.allowed_groups {
            let row = self.store().group_by_name(g).await.map_err(|e| match e {
                onramp_store::StoreError::NotFound => {
                    CoreError::invalid("allowed_groups", format!("unknown group {g:?}"))
                }
                other => other.into(),
            })?;
            allowed_groups.push(row.id);
        }
        Ok(LocationData {
            name,
            addresses: subs.iter().map(LocationSubnet::to_cidr_string).collect::<Vec<_>>().join(","),
            endpoint,
            port: input.port,
            gateway_pubkey,
            keep_gateway_pubkey,
            allowed_ips: allowed.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            dns,
            keepalive,
            mfa_mode,
            allowed_groups,
        })
    }

    fn name_conflict(name: &str) -> impl Fn(onramp_store::StoreError) -> CoreError + '_ {
        move |e| match e {
            onramp_store::StoreError::Conflict { key: onramp_store::UniqueKey::LocationName } => {
                CoreError::Conflict { field: "name", message: format!("location {name:?} already exists") }
            }
            other => other.into(),
        }
    }

    /// Refuses a VPN subnet that overlaps another location's: devices would get addresses
    /// routed to two gateways. (Overlapping `allowed_ips` are normal and allowed.)
    async fn check_subnet_overlap(&self, data: &LocationData, own_id: Option<i64>) -> CoreResult<()> {
        let mine = parse_subnets(&data.addresses);
        let others: Vec<(String, Vec<ipnet::IpNet>)> = self
            .store()
            .list_locations()
            .await?
            .into_iter()
            .filter(|l| Some(l.id) != own_id)
            .map(|l| (l.name, parse_subnets(&l.addresses)))
            .collect();
        if let Some((name, theirs, ours)) = onramp_domain::net::first_overlap(&mine, &others) {
            return Err(CoreError::invalid(
                "address",
                format!("{ours} overlaps {theirs}, the VPN subnet of location {name:?}; choose a separate subnet"),
            ));
        }
        Ok(())
    }

    pub async fn create_location(&self, actor: &Actor, input: LocationInput) -> CoreResult<LocationInfo> {
        let data = self.location_data(input).await?;
        self.check_subnet_overlap(&data, None).await?;
        let row = self.store().create_location(&data, self.now()).await.map_err(Self::name_conflict(&data.name))?;
        self.audit(actor, "location.created", Some(row.name.clone()), serde_json::json!({"address": row.addresses}))
            .await;
        self.location_info(row).await
    }

    pub async fn update_location(&self, actor: &Actor, id: i64, input: LocationInput) -> CoreResult<LocationInfo> {
        let old = self.store().location_by_id(id).await.or_not_found("location", &id.to_string())?;
        let before = self.location_info(old).await?;
        let data = self.location_data(input).await?;
        self.check_subnet_overlap(&data, Some(id)).await?;
        // The store checks, inside the update's transaction, that every device address
        // still fits, and gives devices addresses in subnets the location gains.
        let row = self.store().update_location(id, &data, self.now()).await.map_err(Self::name_conflict(&data.name))?;
        let after = self.location_info(row).await?;
        let mut changes = crate::audit_diff(
            &serde_json::to_value(&before).unwrap_or_default(),
            &serde_json::to_value(&after).unwrap_or_default(),
        );
        // Live state, not something the update changed.
        if let Some(o) = changes.as_object_mut() {
            o.remove("gateway_connected");
        }
        self.audit(actor, "location.updated", Some(after.name.clone()), changes).await;
        Ok(after)
    }

    pub(crate) async fn location_info(&self, row: LocationRow) -> CoreResult<LocationInfo> {
        let groups = self.store().location_groups(row.id).await?;
        let live = self.live_gateway_locations().await?.contains(&row.id);
        Ok(location_info_of(row, groups.into_iter().map(|g| g.name).collect(), live))
    }

    /// Infos of many locations with one query for all their allowed groups.
    async fn location_infos(&self, rows: Vec<LocationRow>) -> CoreResult<Vec<LocationInfo>> {
        let mut groups: std::collections::HashMap<i64, Vec<String>> = Default::default();
        for (location_id, _, name) in self.store().location_group_links().await? {
            groups.entry(location_id).or_default().push(name);
        }
        let live = self.live_gateway_locations().await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let g = groups.remove(&row.id).unwrap_or_default();
                let connected = live.contains(&row.id);
                location_info_of(row, g, connected)
            })
            .collect())
    }

    /// Whether any location exists (desktop configuration needs one).
    pub async fn has_locations(&self) -> CoreResult<bool> {
        Ok(self.store().count_locations().await? > 0)
    }

    pub async fn get_location(&self, id: i64) -> CoreResult<LocationInfo> {
        let row = self.store().location_by_id(id).await.or_not_found("location", &id.to_string())?;
        self.location_info(row).await
    }

    pub async fn list_locations(&self) -> CoreResult<Vec<LocationInfo>> {
        self.location_infos(self.store().list_locations().await?).await
    }

    /// One page of locations (by name) and how many there are: four queries whatever the
    /// page size.
    pub async fn list_locations_page(&self, limit: i64, offset: i64) -> CoreResult<(Vec<LocationInfo>, i64)> {
        let rows = self.store().list_locations_page(limit, offset).await?;
        let total = self.store().count_locations().await?;
        Ok((self.location_infos(rows).await?, total))
    }

    pub async fn delete_location(&self, actor: &Actor, id: i64) -> CoreResult<()> {
        let row = self.store().location_by_id(id).await.or_not_found("location", &id.to_string())?;
        self.store().delete_location(id).await.or_not_found("location", &id.to_string())?;
        self.audit(actor, "location.deleted", Some(row.name), serde_json::json!({})).await;
        Ok(())
    }
}

fn location_info_of(row: LocationRow, allowed_groups: Vec<String>, gateway_connected: bool) -> LocationInfo {
    LocationInfo {
        gateway_connected,
        id: row.id,
        name: row.name,
        address: split_csv(&row.addresses),
        endpoint: row.endpoint,
        port: row.port,
        pubkey: row.gateway_pubkey,
        allowed_ips: split_csv(&row.allowed_ips),
        dns: row.dns,
        keepalive_interval: row.keepalive,
        mfa_mode: row.mfa_mode,
        allowed_groups,
        created_at: row.created_at,
    }
}
