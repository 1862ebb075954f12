//! Gateways: per-location tokens, the gateway protocol's core side (`session`), and what
//! admins see of gateways and their peers.

pub mod peers;
mod session;

pub(crate) use session::EpochWatch;

use crate::error::OrNotFound;
use crate::{Actor, Core, CoreResult};
use onramp_domain::token::TokenSecret;
use onramp_store::{GatewayRow, PeerStatsRow};
use serde::Serialize;

/// A gateway counts as connected while its row says so and it was seen this recently (the
/// session refreshes it every `session::HEARTBEAT` and on every report), so the row of a
/// crashed core times out.
pub const GATEWAY_LIVE_SECS: i64 = 30;
/// A peer counts as connected when its last handshake is this recent (WireGuard renews
/// handshakes every two minutes while traffic flows).
pub const PEER_LIVE_SECS: i64 = 180;

/// Returned once at creation; `token` is the secret.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct NewGatewayToken {
    pub id: i64,
    pub location_id: i64,
    pub location: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub token: String,
}

impl std::fmt::Debug for NewGatewayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewGatewayToken")
            .field("id", &self.id)
            .field("location", &self.location)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A gateway token as listed: never the secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GatewayTokenInfo {
    pub id: i64,
    pub location_id: i64,
    pub name: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A device's counters in one location, as its gateway reported them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DevicePeerStats {
    pub location: String,
    pub location_id: i64,
    /// `ip:port` the device's packets last came from.
    pub endpoint: Option<String>,
    /// Unix seconds of the last handshake; null if never.
    pub latest_handshake: Option<i64>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    /// Handshake within the last 180 s.
    pub connected: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GatewayInfo {
    pub pubkey: String,
    pub hostname: String,
    pub version: String,
    /// Connected now: marked connected and seen within the last 30 s.
    pub connected: bool,
    pub connected_at: Option<i64>,
    pub last_seen_at: Option<i64>,
    pub disconnected_at: Option<i64>,
    /// The gateway's address as core's listener saw it.
    pub remote: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LocationPeerStats {
    pub device_id: i64,
    pub device: String,
    pub user: String,
    pub endpoint: Option<String>,
    pub latest_handshake: Option<i64>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub connected: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LocationStats {
    pub location: String,
    pub location_id: i64,
    pub gateways: Vec<GatewayInfo>,
    pub peers: Vec<LocationPeerStats>,
}

impl Core {
    /// The id of the location named `name` (the CLI names locations).
    pub async fn location_id_by_name(&self, name: &str) -> CoreResult<i64> {
        Ok(self.store().location_by_name(name.trim()).await.or_not_found("location", name)?.id)
    }

    /// Creates a token a gateway of location `location_id` authenticates with: 32 random
    /// alphanumeric characters, stored hashed, shown only in the result.
    pub async fn create_gateway_token(
        &self,
        actor: &Actor,
        location_id: i64,
        name: Option<&str>,
    ) -> CoreResult<NewGatewayToken> {
        let location =
            self.store().location_by_id(location_id).await.or_not_found("location", &location_id.to_string())?;
        let name = match name.filter(|n| !n.trim().is_empty()) {
            Some(n) => Some(onramp_domain::validate::parse_name("name", n, 64)?),
            None => None,
        };
        let secret = TokenSecret::generate(&mut rand::rngs::OsRng);
        let row = self
            .store()
            .create_gateway_token(location.id, &secret.hash(), name.as_deref(), &actor.name, self.now())
            .await?;
        self.audit(
            actor,
            "gateway_token.created",
            Some(location.name.clone()),
            serde_json::json!({"id": row.id, "name": name}),
        )
        .await;
        Ok(NewGatewayToken {
            id: row.id,
            location_id: location.id,
            location: location.name,
            name: row.name,
            created_at: row.created_at,
            token: secret.expose().to_owned(),
        })
    }

    pub async fn list_gateway_tokens(&self, location_id: i64) -> CoreResult<Vec<GatewayTokenInfo>> {
        self.store().location_by_id(location_id).await.or_not_found("location", &location_id.to_string())?;
        Ok(self
            .store()
            .list_gateway_tokens(location_id)
            .await?
            .into_iter()
            .map(|t| GatewayTokenInfo {
                id: t.id,
                location_id: t.location_id,
                name: t.name,
                created_at: t.created_at,
                created_by: t.created_by,
                last_used_at: t.last_used_at,
                revoked_at: t.revoked_at,
            })
            .collect())
    }

    /// Revokes a token; gateways connected with it are disconnected (their sessions see
    /// the revocation within a second and end).
    pub async fn revoke_gateway_token(&self, actor: &Actor, location_id: i64, token_id: i64) -> CoreResult<()> {
        let location =
            self.store().location_by_id(location_id).await.or_not_found("location", &location_id.to_string())?;
        self.store()
            .revoke_gateway_token(location_id, token_id, self.now())
            .await
            .or_not_found("active gateway token of this location", &token_id.to_string())?;
        self.audit(actor, "gateway_token.revoked", Some(location.name), serde_json::json!({"id": token_id})).await;
        Ok(())
    }

    /// A location's gateways and the counters of its devices.
    pub async fn location_stats(&self, location_id: i64) -> CoreResult<LocationStats> {
        let location =
            self.store().location_by_id(location_id).await.or_not_found("location", &location_id.to_string())?;
        let now = self.now();
        let gateways =
            self.store().list_gateways(location_id).await?.into_iter().map(|g| gateway_info(g, now)).collect();
        let peers = self
            .store()
            .location_peer_stats(location_id)
            .await?
            .into_iter()
            .map(|s| LocationPeerStats {
                connected: peer_connected(s.latest_handshake, now),
                device_id: s.device_id,
                device: s.device,
                user: s.username,
                endpoint: s.endpoint,
                latest_handshake: s.latest_handshake,
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
            })
            .collect();
        Ok(LocationStats { location: location.name, location_id, gateways, peers })
    }

    /// Counters of the given devices, per device id (one query).
    pub(crate) async fn device_stats(
        &self,
        device_ids: &[i64],
    ) -> CoreResult<std::collections::HashMap<i64, Vec<DevicePeerStats>>> {
        let now = self.now();
        let mut out: std::collections::HashMap<i64, Vec<DevicePeerStats>> = Default::default();
        for s in self.store().device_peer_stats(device_ids).await? {
            out.entry(s.device_id).or_default().push(device_peer_stats(s, now));
        }
        Ok(out)
    }

    /// Ids of the locations with a live gateway now.
    pub(crate) async fn live_gateway_locations(&self) -> CoreResult<std::collections::HashSet<i64>> {
        Ok(self.store().locations_with_live_gateway(self.now() - GATEWAY_LIVE_SECS).await?.into_iter().collect())
    }
}

fn peer_connected(latest_handshake: Option<i64>, now: i64) -> bool {
    latest_handshake.is_some_and(|h| now - h <= PEER_LIVE_SECS)
}

fn device_peer_stats(s: PeerStatsRow, now: i64) -> DevicePeerStats {
    DevicePeerStats {
        connected: peer_connected(s.latest_handshake, now),
        location: s.location,
        location_id: s.location_id,
        endpoint: s.endpoint,
        latest_handshake: s.latest_handshake,
        rx_bytes: s.rx_bytes,
        tx_bytes: s.tx_bytes,
    }
}

fn gateway_info(g: GatewayRow, now: i64) -> GatewayInfo {
    GatewayInfo {
        connected: g.connected && g.last_seen_at.is_some_and(|t| now - t <= GATEWAY_LIVE_SECS),
        pubkey: g.pubkey,
        hostname: g.hostname,
        version: g.version,
        connected_at: g.connected_at,
        last_seen_at: g.last_seen_at,
        disconnected_at: g.disconnected_at,
        remote: g.remote,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_hides_the_token() {
        let t = super::NewGatewayToken {
            id: 1,
            location_id: 2,
            location: "office".into(),
            name: None,
            created_at: 0,
            token: "SecretSecretSecretSecretSecret12".into(),
        };
        let shown = format!("{t:?}");
        assert!(shown.contains("office") && !shown.contains("Secret"), "{shown}");
    }

    #[test]
    fn liveness_windows() {
        assert!(super::peer_connected(Some(1000), 1180));
        assert!(!super::peer_connected(Some(1000), 1181));
        assert!(!super::peer_connected(None, 1000));
    }
}
