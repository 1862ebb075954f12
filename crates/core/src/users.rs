use crate::error::OrNotFound;
use crate::{Actor, Core, CoreError, CoreResult};
use onramp_domain::validate::{parse_name, parse_phone, Email, Username};
use onramp_store::{NewUser, UserRow};
use serde::{Deserialize, Serialize};

/// `Debug` (below) hides the password.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
pub struct UserInput {
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    #[serde(default, alias = "phone_number")]
    pub phone: Option<String>,
    /// Optional initial password; a user created with one counts as enrolled.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

impl std::fmt::Debug for UserInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserInput")
            .field("username", &self.username)
            .field("first_name", &self.first_name)
            .field("last_name", &self.last_name)
            .field("email", &self.email)
            .field("phone", &self.phone)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("is_active", &self.is_active)
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    #[serde(default, alias = "phone_number")]
    pub phone: Option<Option<String>>,
    pub is_active: Option<bool>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub id: i64,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub is_active: bool,
    pub enrolled: bool,
    /// `enrolled` or `pending`.
    pub enrollment_state: &'static str,
    pub groups: Vec<String>,
    pub is_admin: bool,
    pub created_at: i64,
    /// `local` (managed in Onramp) or `ldap` (the directory sync is authoritative).
    pub source: String,
}

/// Whether a user's token actions are possible now, and if not, why (the web UI greys them
/// out with the reason; the use cases refuse them with the same rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenActions {
    pub enrollment: Option<&'static str>,
    pub desktop: Option<&'static str>,
}

impl UserInfo {
    pub fn token_actions(&self, has_locations: bool) -> TokenActions {
        let disabled = "The user is disabled; enable them first.";
        TokenActions {
            enrollment: if !self.is_active {
                Some(disabled)
            } else if self.enrolled {
                Some("Already enrolled: use Configure desktop client.")
            } else {
                None
            },
            desktop: if !self.is_active {
                Some(disabled)
            } else if !has_locations {
                Some("No VPN location exists yet; create one first.")
            } else {
                None
            },
        }
    }
}

/// A users-list query (web UI).
#[derive(Debug, Clone, Default)]
pub struct UserSearch {
    pub text: Option<String>,
    pub filter: Option<onramp_store::UserFilter>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone)]
pub struct UserSearchPage {
    pub users: Vec<(UserInfo, Vec<crate::PendingToken>)>,
    pub total: i64,
}

/// The fields a user update can change, for the audit log's diff (no password hash).
fn profile(r: &UserRow) -> serde_json::Value {
    serde_json::json!({"first_name": r.first_name, "last_name": r.last_name, "email": r.email,
                       "phone": r.phone, "is_active": r.is_active})
}

impl UserInfo {
    pub(crate) fn from_row(r: UserRow, groups: Vec<String>, is_admin: bool) -> Self {
        Self {
            id: r.id,
            username: r.username,
            first_name: r.first_name,
            last_name: r.last_name,
            email: r.email,
            phone: r.phone,
            is_active: r.is_active,
            enrolled: r.enrolled,
            enrollment_state: if r.enrolled { "enrolled" } else { "pending" },
            groups,
            is_admin,
            created_at: r.created_at,
            source: r.source,
        }
    }
}

/// The refusal of a change that would leave no enabled user in an admin group: nobody could
/// then hold an admin API token, and only `onramp admin` on the server could recover.
pub(crate) fn last_admin(change: String) -> CoreError {
    CoreError::refused(
        "last_admin",
        format!(
            "{change} would leave no active admin (an enabled user in an admin group); \
             make another user an active admin first"
        ),
    )
}

fn optional_phone(p: Option<String>) -> CoreResult<Option<String>> {
    Ok(match p.filter(|p| !p.trim().is_empty()) {
        Some(p) => Some(parse_phone("phone", &p)?),
        None => None,
    })
}

impl Core {
    pub async fn create_user(&self, actor: &Actor, input: UserInput) -> CoreResult<UserInfo> {
        let username = Username::parse("username", &input.username)?;
        let first_name = parse_name("first_name", &input.first_name, 128)?;
        let last_name = parse_name("last_name", &input.last_name, 128)?;
        let email = Email::parse("email", &input.email)?;
        let phone = optional_phone(input.phone)?;
        let password_hash = match input.password {
            Some(p) => {
                if let Some(why) = onramp_domain::password::explain(&p) {
                    return Err(CoreError::invalid("password", why));
                }
                Some(self.inner.passwords.hash(p).await?)
            }
            None => None,
        };
        let row = self
            .store()
            .create_user(
                &NewUser {
                    username: username.into_inner(),
                    first_name,
                    last_name,
                    email: email.into_inner(),
                    phone,
                    password_hash,
                    is_active: input.is_active.unwrap_or(true),
                },
                self.now(),
            )
            .await
            .map_err(user_conflict)?;
        self.audit(actor, "user.created", Some(row.username.clone()), serde_json::json!({})).await;
        Ok(UserInfo::from_row(row, vec![], false))
    }

    pub(crate) async fn user_row(&self, username: &str) -> CoreResult<UserRow> {
        self.store().user_by_username(username).await.or_not_found("user", username)
    }

    pub async fn get_user(&self, username: &str) -> CoreResult<UserInfo> {
        let row = self.user_row(username).await?;
        self.user_info(row).await
    }

    pub(crate) async fn user_info(&self, row: UserRow) -> CoreResult<UserInfo> {
        let groups = self.store().user_groups(row.id).await?;
        let is_admin = groups.iter().any(|g| g.is_admin);
        Ok(UserInfo::from_row(row, groups.into_iter().map(|g| g.name).collect(), is_admin))
    }

    pub async fn list_users(&self) -> CoreResult<Vec<UserInfo>> {
        let rows = self.store().list_users().await?;
        let memberships = self.store().all_memberships().await?;
        let admin_groups: std::collections::HashSet<String> =
            self.store().list_groups().await?.into_iter().filter(|g| g.is_admin).map(|g| g.name).collect();
        let mut by_user: std::collections::HashMap<i64, Vec<String>> = Default::default();
        for (uid, g) in memberships {
            by_user.entry(uid).or_default().push(g);
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let groups = by_user.remove(&r.id).unwrap_or_default();
                let is_admin = groups.iter().any(|g| admin_groups.contains(g));
                UserInfo::from_row(r, groups, is_admin)
            })
            .collect())
    }

    /// One page of users (by username) and how many there are: three queries whatever the
    /// page size.
    pub async fn list_users_page(&self, limit: i64, offset: i64) -> CoreResult<(Vec<UserInfo>, i64)> {
        let rows = self.store().list_users_page(limit, offset).await?;
        let total = self.store().count_users().await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut by_user: std::collections::HashMap<i64, (Vec<String>, bool)> = Default::default();
        for (user_id, group, admin) in self.store().groups_of_users(&ids).await? {
            let e = by_user.entry(user_id).or_default();
            e.0.push(group);
            e.1 |= admin;
        }
        let page = rows
            .into_iter()
            .map(|r| {
                let (groups, is_admin) = by_user.remove(&r.id).unwrap_or_default();
                UserInfo::from_row(r, groups, is_admin)
            })
            .collect();
        Ok((page, total))
    }

    /// The web UI's users list: one page of a search (username, name or e-mail) with a
    /// state filter, each user with their usable tokens, and the number of matches. Four
    /// queries whatever the page size.
    pub async fn search_users(&self, q: &UserSearch) -> CoreResult<UserSearchPage> {
        let (rows, total) =
            self.store().search_users_page(q.text.as_deref(), q.filter, q.limit.clamp(1, 500), q.offset.max(0)).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut groups: std::collections::HashMap<i64, (Vec<String>, bool)> = Default::default();
        for (user_id, group, admin) in self.store().groups_of_users(&ids).await? {
            let e = groups.entry(user_id).or_default();
            e.0.push(group);
            e.1 |= admin;
        }
        let mut tokens: std::collections::HashMap<i64, Vec<crate::PendingToken>> = Default::default();
        for t in self.store().pending_tokens_of_users(&ids, self.now()).await? {
            tokens.entry(t.user_id.unwrap_or_default()).or_default().push(crate::tokens::pending_of(t, None));
        }
        let users = rows
            .into_iter()
            .map(|r| {
                let id = r.id;
                let (g, admin) = groups.remove(&id).unwrap_or_default();
                (UserInfo::from_row(r, g, admin), tokens.remove(&id).unwrap_or_default())
            })
            .collect();
        Ok(UserSearchPage { users, total })
    }

    pub async fn update_user(&self, actor: &Actor, username: &str, patch: UserPatch) -> CoreResult<UserInfo> {
        let mut row = self.user_row(username).await?;
        let before = profile(&row);
        if let Some(v) = patch.first_name {
            row.first_name = parse_name("first_name", &v, 128)?;
        }
        if let Some(v) = patch.last_name {
            row.last_name = parse_name("last_name", &v, 128)?;
        }
        if let Some(v) = patch.email {
            row.email = Email::parse("email", &v)?.into_inner();
        }
        if let Some(v) = patch.phone {
            row.phone = optional_phone(v)?;
        }
        if let Some(v) = patch.is_active {
            row.is_active = v;
        }
        let row = self
            .store()
            .update_user_keeping_admin(&row, self.now())
            .await
            .map_err(user_conflict)?
            .ok_or_else(|| last_admin(format!("disabling {username}")))?;
        if !row.is_active {
            // A disabled user is signed out of the web UI everywhere (re-enabling them
            // must not bring an old session back).
            self.store().delete_web_sessions_of_user(row.id, None).await?;
        }
        let changes = crate::audit_diff(&before, &profile(&row));
        self.audit(actor, "user.updated", Some(row.username.clone()), changes).await;
        self.user_info(row).await
    }

    pub async fn delete_user(&self, actor: &Actor, username: &str) -> CoreResult<()> {
        let row = self.user_row(username).await?;
        if actor.user_id == Some(row.id) {
            return Err(CoreError::refused("cannot_delete_self", "you cannot delete your own account"));
        }
        if !self.store().delete_user_keeping_admin(row.id).await.or_not_found("user", username)? {
            return Err(last_admin(format!("deleting {username}")));
        }
        self.audit(actor, "user.deleted", Some(row.username), serde_json::json!({})).await;
        Ok(())
    }
}

/// A unique clash on a user's username or e-mail, said in words.
fn user_conflict(e: onramp_store::StoreError) -> CoreError {
    match e {
        onramp_store::StoreError::Conflict { key } => CoreError::Conflict {
            field: key.field(),
            message: format!("a user with this {} already exists", key.field()),
        },
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_hides_the_password() {
        let u = super::UserInput {
            username: "jdoe".into(),
            first_name: "J".into(),
            last_name: "D".into(),
            email: "j@example.com".into(),
            phone: None,
            password: Some("Sup3r$ecretPW".into()),
            is_active: None,
        };
        let text = format!("{u:?}");
        assert!(!text.contains("Sup3r$ecretPW") && text.contains("<redacted>") && text.contains("jdoe"), "{text}");
    }
}

#[cfg(test)]
mod token_action_tests {
    use super::*;

    fn user(is_active: bool, enrolled: bool) -> UserInfo {
        UserInfo {
            id: 1,
            username: "jdoe".into(),
            first_name: "Jane".into(),
            last_name: "Doe".into(),
            email: "jdoe@example.com".into(),
            phone: None,
            is_active,
            enrolled,
            enrollment_state: if enrolled { "enrolled" } else { "pending" },
            groups: vec![],
            is_admin: false,
            created_at: 0,
            source: "local".into(),
        }
    }

    #[test]
    fn token_actions_say_why_they_are_unavailable() {
        let a = user(true, false).token_actions(true);
        assert_eq!((a.enrollment, a.desktop), (None, None));
        assert!(user(true, true).token_actions(true).enrollment.unwrap().contains("Already enrolled"));
        assert!(user(true, false).token_actions(false).desktop.unwrap().contains("No VPN location"));
        let off = user(false, true).token_actions(false);
        assert!(off.enrollment.unwrap().contains("disabled") && off.desktop.unwrap().contains("disabled"));
    }
}
