//! Admin API bearer tokens: `onramp_` + 32 random characters, shown once, stored hashed.

use crate::error::OrNotFound;
use crate::{Actor, Core, CoreError, CoreResult};
use onramp_domain::token::{hash_secret, TokenSecret};
use serde::Serialize;

const PREFIX: &str = "onramp_";

/// Returned once at creation; `token` is the secret.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct NewApiToken {
    pub id: i64,
    pub name: String,
    pub token: String,
    pub username: String,
}

impl std::fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiToken").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiTokenInfo {
    pub id: i64,
    pub name: String,
    /// First characters, to tell tokens apart.
    pub prefix: String,
    pub username: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
}

/// An authenticated admin, ready to act.
#[derive(Debug, Clone)]
pub struct AuthenticatedAdmin {
    pub user_id: i64,
    pub username: String,
    pub token_id: i64,
}

impl Core {
    /// Creates an API token for an admin user (by default the bootstrap `admin`).
    pub async fn create_api_token(&self, actor: &Actor, name: &str, username: &str) -> CoreResult<NewApiToken> {
        let name = onramp_domain::validate::parse_name("name", name, 64)?;
        let user = self.user_row(username).await?;
        if !user.is_active {
            return Err(CoreError::refused("user_disabled", format!("user {username} is disabled")));
        }
        if !self.store().is_admin(user.id).await? {
            return Err(CoreError::refused("not_admin", format!("user {username} is not in an admin group")));
        }
        let secret = format!("{PREFIX}{}", TokenSecret::generate(&mut rand::rngs::OsRng).expose());
        let prefix: String = secret.chars().take(PREFIX.len() + 4).collect();
        let row = self.store().create_api_token(&name, &hash_secret(&secret), &prefix, user.id, self.now()).await?;
        self.audit(
            actor,
            "api_token.created",
            Some(user.username.clone()),
            serde_json::json!({"id": row.id, "name": name}),
        )
        .await;
        Ok(NewApiToken { id: row.id, name, token: secret, username: user.username })
    }

    pub async fn list_api_tokens(&self) -> CoreResult<Vec<ApiTokenInfo>> {
        let tokens = self.store().list_api_tokens().await?;
        let mut ids: Vec<i64> = tokens.iter().map(|t| t.user_id).collect();
        ids.sort_unstable();
        ids.dedup();
        // Only the token owners' names, not every user of the instance.
        let users: std::collections::HashMap<i64, String> = self.store().usernames(&ids).await?.into_iter().collect();
        Ok(tokens
            .into_iter()
            .map(|t| ApiTokenInfo {
                id: t.id,
                name: t.name,
                prefix: t.prefix,
                username: users.get(&t.user_id).cloned().unwrap_or_default(),
                created_at: t.created_at,
                last_used_at: t.last_used_at,
                revoked: t.revoked_at.is_some(),
            })
            .collect())
    }

    pub async fn revoke_api_token(&self, actor: &Actor, id: i64) -> CoreResult<()> {
        self.store().revoke_api_token(id, self.now()).await.or_not_found("active API token", &id.to_string())?;
        self.audit(actor, "api_token.revoked", None, serde_json::json!({"id": id})).await;
        Ok(())
    }

    /// Checks a bearer token: known, not revoked, owner active and an admin. The messages
    /// say which, without revealing anything about other tokens.
    pub async fn authenticate_admin(&self, bearer: &str) -> CoreResult<AuthenticatedAdmin> {
        let t = match self.store().api_token_auth(&hash_secret(bearer.trim())).await {
            Ok(t) => t,
            Err(onramp_store::StoreError::NotFound) => return Err(CoreError::Unauthorized("invalid API token".into())),
            Err(e) => return Err(e.into()),
        };
        if t.revoked {
            return Err(CoreError::Unauthorized("API token revoked".into()));
        }
        if !t.user_active {
            return Err(CoreError::Forbidden("the API token's user is disabled".into()));
        }
        if !t.user_is_admin {
            return Err(CoreError::Forbidden("the API token's user is not an admin".into()));
        }
        self.touch_api_token(t.token_id).await;
        Ok(AuthenticatedAdmin { user_id: t.user_id, username: t.username, token_id: t.token_id })
    }

    /// Records a token's last use, so `last_used_at` is accurate to about a minute: this
    /// process writes at most once a minute per token (remembered in memory; a failed write
    /// is retried on the next request), and the store's condition keeps several processes
    /// from moving it more often than that.
    async fn touch_api_token(&self, id: i64) {
        let now = self.now();
        let previous = {
            let mut m = self.inner.api_token_touches.lock().unwrap_or_else(|p| p.into_inner());
            if m.get(&id).is_some_and(|t| now - t < 60) {
                return;
            }
            m.insert(id, now)
        };
        if let Err(e) = self.store().touch_api_token(id, now).await {
            tracing::warn!(error = %e, "could not record API token use");
            let mut m = self.inner.api_token_touches.lock().unwrap_or_else(|p| p.into_inner());
            match previous {
                Some(t) => m.insert(id, t),
                None => m.remove(&id),
            };
        }
    }
}
