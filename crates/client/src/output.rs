//! What the client prints: listings, sync reports, enrollment results. Everything goes
//! through [`say`] / [`warn`], so text from a server reaches the terminal only as printable
//! characters.

use onramp_client::enroll;
use onramp_client::ipc::TunnelStatus;
use onramp_client::store::Instance;
use onramp_client::text::printable;
use onramp_client::tunnel::ServiceError;
use onramp_client::{sync, Store};

/// A line (or lines) on standard output.
pub fn say(text: &str) {
    println!("{}", printable(text));
}

/// A line on standard error.
pub fn warn(text: &str) {
    eprintln!("{}", printable(text));
}

pub fn json(v: &impl serde::Serialize) {
    say(&serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn instances(list: &[Instance], as_json: bool) {
    if as_json {
        json(&list);
    } else if list.is_empty() {
        say("no instances");
    } else {
        for i in list {
            say(&format!(
                "{}  {}  user {}  device {}  edge {}  sync {}",
                i.id, i.name, i.username, i.device_name, i.edge_url, i.sync_state
            ));
        }
    }
}

pub fn locations(all: &[(String, onramp_proto::DeviceConfig)], as_json: bool) {
    if as_json {
        let v: Vec<_> = all.iter().map(|(i, l)| serde_json::json!({"instance": i, "location": l})).collect();
        json(&v);
    } else {
        for (i, l) in all {
            say(&format!("{i}: {}  {}  via {}  allowed {}", l.network_name, l.assigned_ip, l.endpoint, l.allowed_ips));
        }
    }
}

pub fn sync_report(results: &[(Instance, sync::Outcome)], as_json: bool) {
    if as_json {
        let v: Vec<_> = results
            .iter()
            .map(|(i, o)| {
                let (state, detail) = match o {
                    sync::Outcome::Updated(d) => ("updated", serde_json::to_value(d).unwrap_or_default()),
                    sync::Outcome::NeedsToken(m) => ("needs_token", m.clone().into()),
                    sync::Outcome::AccountDisabled(m) => ("account_disabled", m.clone().into()),
                    sync::Outcome::DeviceRemoved => {
                        ("device_removed", "this device was removed by the administrator".into())
                    }
                    sync::Outcome::Stopped => ("stopped", serde_json::Value::Null),
                    sync::Outcome::Skipped(m) => ("skipped", (*m).into()),
                    sync::Outcome::Failed(e) => ("failed", e.to_string().into()),
                };
                serde_json::json!({"instance": i.name, "id": i.id, "state": state, "detail": detail})
            })
            .collect();
        json(&v);
        return;
    }
    for (i, o) in results {
        match o {
            sync::Outcome::Updated(d) if d.is_empty() => say(&format!("{}: up to date", i.name)),
            sync::Outcome::Updated(d) => say(&format!(
                "{}: added [{}] removed [{}] changed [{}]",
                i.name,
                d.added.join(", "),
                d.removed.join(", "),
                d.changed.join(", ")
            )),
            sync::Outcome::NeedsToken(m) => say(&format!(
                "{}: the server no longer accepts this device's token ({m}); ask your administrator{} for a new token and run onramp-client update-instance",
                i.name,
                i.admin_contact.as_deref().map(|a| format!(" ({a})")).unwrap_or_default()
            )),
            sync::Outcome::AccountDisabled(m) => say(&format!("{}: {m}", i.name)),
            sync::Outcome::DeviceRemoved => say(&format!(
                "{}: this device was removed by the administrator; its locations were removed. \
                 To use {} again, ask for a new token and run onramp-client update-instance",
                i.name, i.name
            )),
            sync::Outcome::Stopped => tracing::info!(instance = %i.name, "server stopped serving this client; not polling"),
            sync::Outcome::Skipped(why) => tracing::info!(instance = %i.name, why, "not polled"),
            sync::Outcome::Failed(e) => say(&format!("{}: sync failed: {e}", i.name)),
        }
    }
}

/// The tunnel state the service reported, or why there is none.
pub type Tunnels = Result<Vec<TunnelStatus>, ServiceError>;

/// A tunnel counts as connected while its gateway answers: WireGuard handshakes again every
/// 2 minutes while traffic or keepalives flow, so a handshake older than this means the
/// gateway stopped answering (it dropped the peer, or is down or unreachable).
pub const HANDSHAKE_FRESH_SECS: i64 = 180;

/// Whether a tunnel with this last handshake is connected at `now` (Unix seconds).
pub fn handshake_fresh(latest_handshake: Option<i64>, now: i64) -> bool {
    latest_handshake.is_some_and(|h| now - h <= HANDSHAKE_FRESH_SECS)
}

/// `status`: instances and locations with each tunnel's state. The JSON is a contract for
/// scripts: `{"service": "running"|"not_running"|"refused"|"error", "service_error": text|null,
/// "instances": [{"instance": {...}, "locations": [{"name", "network_id", "connected",
/// "tunnel_up", "latest_handshake", "rx_bytes", "tx_bytes", "endpoint", "interface",
/// "has_gateway"}]}]}`. `tunnel_up`: the service has the tunnel's interface up; `connected`:
/// up and a handshake with the gateway within [`HANDSHAKE_FRESH_SECS`].
pub async fn status(store: &Store, tunnels: &Tunnels, as_json: bool) -> Result<(), onramp_client::store::StoreError> {
    let instances = store.instances().await?;
    let live = tunnels.as_ref().map(Vec::as_slice).unwrap_or(&[]);
    let find = |i: &Instance, id: i64| live.iter().find(|t| t.instance_id == i.id && t.network_id == id);
    let now = onramp_client::now();
    if as_json {
        let (service, error) = match tunnels {
            Ok(_) => ("running", None),
            Err(ServiceError::NotRunning) => ("not_running", None),
            Err(e @ ServiceError::PermissionDenied(_)) => ("refused", Some(e.to_string())),
            Err(e) => ("error", Some(e.to_string())),
        };
        let mut v = vec![];
        for i in &instances {
            let mut locations = vec![];
            for l in store.locations(&i.id).await? {
                let t = find(i, l.network_id);
                locations.push(serde_json::json!({
                    "name": l.network_name,
                    "network_id": l.network_id,
                    "connected": t.is_some_and(|t| handshake_fresh(t.latest_handshake, now)),
                    "tunnel_up": t.is_some(),
                    "latest_handshake": t.and_then(|t| t.latest_handshake),
                    "rx_bytes": t.map(|t| t.rx_bytes).unwrap_or(0),
                    "tx_bytes": t.map(|t| t.tx_bytes).unwrap_or(0),
                    "endpoint": l.endpoint,
                    "interface": t.map(|t| t.interface.clone()),
                    "has_gateway": !l.pubkey.trim().is_empty(),
                }));
            }
            v.push(serde_json::json!({"instance": i, "locations": locations}));
        }
        json(&serde_json::json!({"service": service, "service_error": error, "instances": v}));
        return Ok(());
    }
    for i in &instances {
        let state = match i.sync_state.as_str() {
            "needs_token" => " (needs a new token from the administrator)",
            "account_disabled" => " (your account is disabled)",
            "device_removed" => " (this device was removed by the administrator)",
            "stopped" => " (server stopped serving this client)",
            _ => "",
        };
        say(&format!("Instance {} as {} (device {}){state}", i.name, i.username, i.device_name));
        for l in store.locations(&i.id).await? {
            let tunnel = match find(i, l.network_id) {
                Some(t) => {
                    let state = match t.latest_handshake {
                        Some(h) if handshake_fresh(Some(h), now) => {
                            format!("connected on {}, handshake {} s ago", t.interface, now - h)
                        }
                        Some(h) => format!(
                            "tunnel up on {} but not connected: the gateway has not answered for {} s",
                            t.interface,
                            now - h
                        ),
                        None => {
                            format!("tunnel up on {}, not connected yet: no handshake with the gateway", t.interface)
                        }
                    };
                    format!("{state}, received {} B, sent {} B", t.rx_bytes, t.tx_bytes)
                }
                None if l.pubkey.trim().is_empty() => "no gateway yet".to_owned(),
                None => "not connected".to_owned(),
            };
            say(&format!("  {}  {}  via {}  {tunnel}", l.network_name, l.assigned_ip, l.endpoint));
        }
    }
    match tunnels {
        Ok(_) | Err(ServiceError::NotRunning) if instances.is_empty() => {}
        Ok(_) => {}
        Err(e) => say(&format!("Tunnels: {e}")),
    }
    Ok(())
}

pub fn enrolled(done: &enroll::Enrolled) {
    say(&format!(
        "Enrolled in {} as device {:?} with {} location(s): {}",
        done.instance_name,
        done.device_name,
        done.locations.len(),
        done.locations.join(", ")
    ));
}

pub fn updated(done: &enroll::Enrolled) {
    say(&format!(
        "Updated {}: {} location(s): {}",
        done.instance_name,
        done.locations.len(),
        done.locations.join(", ")
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_needs_a_recent_handshake() {
        let now = 1_000_000;
        assert!(!handshake_fresh(None, now), "no handshake yet");
        assert!(handshake_fresh(Some(now), now));
        assert!(handshake_fresh(Some(now - HANDSHAKE_FRESH_SECS), now));
        assert!(!handshake_fresh(Some(now - HANDSHAKE_FRESH_SECS - 1), now), "the gateway stopped answering");
    }
}
