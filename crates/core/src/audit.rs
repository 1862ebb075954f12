//! Audit trail: who did what, when, from where.

use crate::{Core, CoreResult};
use onramp_store::{AuditFilter, NewAudit};
use serde::Serialize;

/// Who performs an action, with request metadata for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub name: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Desktop client version and platform (`defguard-client-version` / `-platform`).
    pub client: Option<String>,
}

impl Actor {
    /// The server itself (bootstrap, background jobs) or the local CLI.
    pub fn system(name: &str) -> Self {
        Self { name: name.to_owned(), ..Self::default() }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub actor_user_id: Option<i64>,
    pub action: String,
    pub subject: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub since: Option<i64>,
    pub before_id: Option<i64>,
    pub limit: Option<i64>,
}

fn client_of(actor: &Actor) -> Option<String> {
    actor.client.as_deref().map(sanitize_user_agent).filter(|c| !c.is_empty())
}

/// Sanitises a user agent for storage: printable ASCII only, no markup, bounded length.
pub fn sanitize_user_agent(ua: &str) -> String {
    ua.chars().filter(|c| c.is_ascii() && !c.is_ascii_control() && !"<>\"'&".contains(*c)).take(256).collect()
}

impl Core {
    pub(crate) fn audit_record(
        &self,
        actor: &Actor,
        action: &str,
        subject: Option<String>,
        mut details: serde_json::Value,
    ) -> NewAudit {
        if let (Some(c), Some(obj)) = (&client_of(actor), details.as_object_mut()) {
            obj.insert("client".into(), serde_json::Value::String(c.clone()));
        }
        NewAudit {
            at: self.now(),
            actor_user_id: actor.user_id,
            actor: actor.name.clone(),
            action: action.to_owned(),
            subject,
            details: details.to_string(),
            ip: actor.ip.clone(),
            user_agent: actor.user_agent.as_deref().map(sanitize_user_agent),
        }
    }

    /// Records an event. An audit failure is logged but does not undo the action it
    /// describes (the action already committed).
    pub(crate) async fn audit(&self, actor: &Actor, action: &str, subject: Option<String>, details: serde_json::Value) {
        let rec = self.audit_record(actor, action, subject, details);
        if let Err(e) = self.store().audit(&rec).await {
            tracing::error!(error = %e, action, "could not write audit event");
        }
        // Every audited action follows a committed write: gateways served by this process
        // may have something new to hear.
        self.inner.gateway_epoch.poke();
    }

    pub async fn list_audit(&self, q: AuditQuery) -> CoreResult<Vec<AuditEntry>> {
        let rows = self
            .store()
            .list_audit(&AuditFilter {
                action: q.action,
                actor: q.actor,
                since: q.since,
                before_id: q.before_id,
                limit: q.limit.unwrap_or(100).clamp(1, 1000),
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                at: r.at,
                actor: r.actor,
                actor_user_id: r.actor_user_id,
                action: r.action,
                subject: r.subject,
                details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
                ip: r.ip,
                user_agent: r.user_agent,
            })
            .collect())
    }
}

/// Field names whose values never go into the audit log: a change shows as "changed".
/// Whole names or `_`-suffixes only, so `token_lifetime_secs` or
/// `password_reset_cooldown_secs` keep their values.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "token", "secret", "private_key", "password_hash"]
        .iter()
        .any(|s| k == *s || k.ends_with(&format!("_{s}")))
}

/// What an update changed, for the audit log: `{"a.b": [old, new]}` per leaf field that
/// differs (dotted paths into objects), with secrets as `"changed"` instead of their values.
pub fn audit_diff(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    diff_into(&mut out, "", old, new, false);
    serde_json::Value::Object(out)
}

fn diff_into(
    out: &mut serde_json::Map<String, serde_json::Value>,
    path: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    secret: bool,
) {
    use serde_json::Value;
    if old == new {
        return;
    }
    if let (Value::Object(a), Value::Object(b)) = (old, new) {
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            let (x, y) = (a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null));
            diff_into(out, &p, x, y, secret || is_secret(k));
        }
        return;
    }
    let entry = if secret { Value::String("changed".into()) } else { serde_json::json!([old, new]) };
    out.insert(path.to_owned(), entry);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn diff_names_changed_fields_with_old_and_new_and_redacts_secrets() {
        let old = json!({"smtp": {"host": "a", "port": 25, "password": "old-pw", "username": null},
                         "instance_name": "X", "same": [1]});
        let new = json!({"smtp": {"host": "b", "port": 25, "password": "new-pw", "username": "u"},
                         "instance_name": "X", "same": [1], "added": true});
        let d = super::audit_diff(&old, &new);
        assert_eq!(
            d,
            json!({"smtp.host": ["a", "b"], "smtp.password": "changed", "smtp.username": [null, "u"],
                   "added": [null, true]})
        );
        assert!(!d.to_string().contains("pw"));
        assert_eq!(super::audit_diff(&old, &old), json!({}));
        // A secret cleared is a change too, still without its value.
        let cleared = super::audit_diff(&json!({"password": "x"}), &json!({"password": null}));
        assert_eq!(cleared, json!({"password": "changed"}));
        // Settings named after a secret but holding none keep their values.
        let lifetimes = super::audit_diff(
            &json!({"token_lifetime_secs": 60, "api_token": "a"}),
            &json!({"token_lifetime_secs": 90, "api_token": "b"}),
        );
        assert_eq!(lifetimes, json!({"token_lifetime_secs": [60, 90], "api_token": "changed"}));
    }

    #[test]
    fn user_agent_is_sanitised() {
        assert_eq!(super::sanitize_user_agent("Mozilla/5.0 <script>\u{7}é"), "Mozilla/5.0 script");
    }
}
