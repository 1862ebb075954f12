//! What the client prints: listings, sync reports, enrollment results. Everything goes
//! through [`say`] / [`warn`], so text from a server reaches the terminal only as printable
//! characters.

use onramp_client::enroll;
use onramp_client::store::Instance;
use onramp_client::text::printable;
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
            sync::Outcome::Stopped => tracing::info!(instance = %i.name, "server stopped serving this client; not polling"),
            sync::Outcome::Skipped(why) => tracing::info!(instance = %i.name, why, "not polled"),
            sync::Outcome::Failed(e) => say(&format!("{}: sync failed: {e}", i.name)),
        }
    }
}

pub async fn status(store: &Store, as_json: bool) -> Result<(), onramp_client::store::StoreError> {
    let instances = store.instances().await?;
    if as_json {
        let mut v = vec![];
        for i in &instances {
            v.push(serde_json::json!({"instance": i, "locations": store.locations(&i.id).await?}));
        }
        json(&v);
        return Ok(());
    }
    for i in &instances {
        let state = match i.sync_state.as_str() {
            "needs_token" => " (needs a new token from the administrator)",
            "stopped" => " (server stopped serving this client)",
            _ => "",
        };
        say(&format!("Instance {} as {} (device {}){state}", i.name, i.username, i.device_name));
        for l in store.locations(&i.id).await? {
            say(&format!("  {}  {}  via {}", l.network_name, l.assigned_ip, l.endpoint));
        }
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
