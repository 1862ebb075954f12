//! Closing the loop with the directory (PROTOCOL.md 1.2): issue tokens for a group and write
//! each user's `{"enrollmentUrl","enrollmentToken"}` into their directory attribute, where
//! the Windows installer's helper (or `onramp-client provision`) reads it.

use crate::{Actor, BulkOutcome, BulkRequest, Core, CoreError, CoreResult};
use onramp_directory::{Directory, DirectoryError, LdapConfig};
use onramp_domain::provisioning::DirectoryAttribute;

/// What happened for one member of the group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirectoryWrite {
    pub username: String,
    /// `written`, `not_in_directory`, `skipped` (disabled user) or `failed`.
    pub outcome: String,
    pub detail: Option<String>,
}

impl Core {
    /// Looks every member up first, so tokens are issued only for users the directory has
    /// (a new token revokes the old one: issuing one that cannot be delivered would strand
    /// the user). The directory being unreachable fails the whole call before any token.
    pub async fn provision_directory(
        &self,
        actor: &Actor,
        group: &str,
        ldap: &LdapConfig,
        attribute: &str,
        token_expiration_time: Option<String>,
    ) -> CoreResult<Vec<DirectoryWrite>> {
        let members = self.get_group(group).await?.members;
        let mut dir =
            Directory::connect(ldap).await.map_err(|e| CoreError::refused("directory_unavailable", e.to_string()))?;
        let mut report = Vec::new();
        let mut found = Vec::new();
        for m in members {
            match dir.read_attribute(&m, attribute).await {
                Ok(_) => found.push(m),
                Err(DirectoryError::UserNotFound { .. }) => {
                    report.push(DirectoryWrite { username: m, outcome: "not_in_directory".into(), detail: None })
                }
                Err(e) => {
                    dir.close().await;
                    return Err(CoreError::refused("directory_unavailable", e.to_string()));
                }
            }
        }
        let outcomes = if found.is_empty() {
            vec![]
        } else {
            self.issue_bulk(
                actor,
                BulkRequest {
                    group: None,
                    usernames: found,
                    token_expiration_time,
                    send_enrollment_notification: false,
                },
            )
            .await?
        };
        for o in outcomes {
            match o {
                BulkOutcome::Issued(t) => {
                    let value = serde_json::to_string(&DirectoryAttribute {
                        enrollment_url: t.enrollment_url.clone(),
                        enrollment_token: t.token.expose().to_owned(),
                    })
                    .map_err(|e| CoreError::Internal(e.to_string()))?;
                    let (outcome, detail) = match dir.write_attribute(&t.username, attribute, &value).await {
                        Ok(()) => ("written", Some(format!("{} token", t.kind.as_str()))),
                        Err(e) => ("failed", Some(e.to_string())),
                    };
                    report.push(DirectoryWrite { username: t.username, outcome: outcome.into(), detail });
                }
                BulkOutcome::Skipped { username, reason, .. } => {
                    report.push(DirectoryWrite { username, outcome: "skipped".into(), detail: Some(reason) })
                }
            }
        }
        dir.close().await;
        report.sort_by(|a, b| a.username.cmp(&b.username));
        self.audit(
            actor,
            "directory.provisioned",
            Some(group.to_owned()),
            serde_json::json!({"written": report.iter().filter(|r| r.outcome == "written").count(), "attribute": attribute}),
        )
        .await;
        Ok(report)
    }
}
