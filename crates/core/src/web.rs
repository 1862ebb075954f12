//! Sign-in for the web UI (admins and the self-service portal): password check with
//! per-account and per-address limits, database-held sessions with idle and absolute
//! expiry, password changes.

use crate::{Actor, Core, CoreError, CoreResult};
use onramp_domain::token::{hash_secret, TokenSecret};
use onramp_store::{NewWebSession, StoreError, UserRow};

/// Failed sign-ins counted over this window...
pub const FAILURE_WINDOW_SECS: i64 = 15 * 60;
/// ...after which the account refuses sign-ins until the window has passed.
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
/// ...and after which the address does (it may be guessing many usernames).
pub const MAX_FAILURES_PER_IP: i64 = 30;
/// `last_seen_at` is written at most this often, not on every request.
const TOUCH_EVERY_SECS: i64 = 60;

/// A new sign-in: the cookie secret (shown once) and the session's anti-CSRF token.
pub struct NewWebLogin {
    pub secret: String,
    pub csrf: String,
    pub user: UserRow,
    pub is_admin: bool,
}

impl std::fmt::Debug for NewWebLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewWebLogin").field("user", &self.user.username).finish_non_exhaustive()
    }
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub id: i64,
    pub csrf: String,
    pub user: UserRow,
    pub is_admin: bool,
    pub created_at: i64,
}

impl WebSession {
    /// The signed-in user as the actor of what they do, with the request's metadata.
    pub fn actor(&self, ip: Option<String>, user_agent: Option<String>) -> Actor {
        Actor { user_id: Some(self.user.id), name: self.user.username.clone(), ip, user_agent, client: None }
    }
}

/// Why a sign-in failed. The message is the same for a wrong password and an unknown user.
fn bad_credentials() -> CoreError {
    CoreError::Unauthorized("wrong username or password".into())
}

impl Core {
    /// Checks a username and password and opens a session. Failures are counted per account
    /// and per address (in the database, so every replica sees them) and audited.
    pub async fn web_login(&self, actor: &Actor, username: &str, password: String) -> CoreResult<NewWebLogin> {
        // Long junk must not fill the table: no username is longer than this.
        let username: String = username.trim().chars().take(64).collect();
        let username = username.as_str();
        let ip = actor.ip.clone().unwrap_or_default();
        let now = self.now();
        // The attempt counts as a failure before the password is checked (and is forgotten
        // on success), so parallel guesses cannot all see a count below the limit.
        self.store().record_login_failure(username, &ip, now).await?;
        let (by_user, by_ip) = self.store().login_failures(username, &ip, now - FAILURE_WINDOW_SECS).await?;
        if by_user > MAX_FAILURES_PER_ACCOUNT || by_ip > MAX_FAILURES_PER_IP {
            self.audit(actor, "web.login_throttled", Some(username.to_owned()), serde_json::json!({})).await;
            return Err(CoreError::refused(
                "too_many_attempts",
                format!("too many failed sign-ins; try again in {} minutes", FAILURE_WINDOW_SECS / 60),
            ));
        }
        let user = match self.store().user_by_username(username).await {
            Ok(u) => Some(u),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let ok = self.inner.passwords.verify(password, user.as_ref().and_then(|u| u.password_hash.clone())).await?;
        let user = match user {
            Some(u) if ok && u.is_active => u,
            other => {
                let reason = match other {
                    None => "unknown user",
                    Some(u) if u.password_hash.is_none() => "no password set",
                    Some(u) if ok && !u.is_active => "user disabled",
                    Some(_) => "wrong password",
                };
                self.audit(actor, "web.login_failed", Some(username.to_owned()), serde_json::json!({"reason": reason}))
                    .await;
                return Err(bad_credentials());
            }
        };
        self.store().clear_login_failures(username).await?;
        let secret = TokenSecret::generate(&mut rand::rngs::OsRng).expose().to_owned();
        let csrf = TokenSecret::generate(&mut rand::rngs::OsRng).expose().to_owned();
        self.store()
            .create_web_session(
                &NewWebSession {
                    hash: &hash_secret(&secret),
                    user_id: user.id,
                    csrf: &csrf,
                    ip: actor.ip.as_deref(),
                    user_agent: actor.user_agent.as_deref(),
                },
                now,
            )
            .await?;
        let is_admin = self.store().is_admin(user.id).await?;
        let actor = Actor { user_id: Some(user.id), name: user.username.clone(), ..actor.clone() };
        self.audit(&actor, "web.login", Some(user.username.clone()), serde_json::json!({"admin": is_admin})).await;
        Ok(NewWebLogin { secret, csrf, user, is_admin })
    }

    /// The session a cookie secret opens, if it is alive: not idle for longer than the idle
    /// timeout, not older than the absolute lifetime, and its user still active. An expired
    /// session is deleted.
    pub async fn web_session(&self, secret: &str) -> CoreResult<Option<WebSession>> {
        let (s, user, is_admin) = match self.store().web_session(&hash_secret(secret)).await {
            Ok(found) => found,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let now = self.now();
        let cfg = self.config();
        if now - s.last_seen_at > cfg.web_session_idle_secs || now - s.created_at > cfg.web_session_max_secs {
            self.store().delete_web_session(s.id).await?;
            return Ok(None);
        }
        if !user.is_active {
            return Ok(None);
        }
        if now - s.last_seen_at >= TOUCH_EVERY_SECS {
            self.store().touch_web_session(s.id, now).await?;
            // Housekeeping rides on the same throttle: expired sessions and old failures.
            self.store()
                .prune_web_sessions(
                    now - cfg.web_session_idle_secs,
                    now - cfg.web_session_max_secs,
                    now - FAILURE_WINDOW_SECS,
                )
                .await?;
        }
        Ok(Some(WebSession { id: s.id, csrf: s.csrf, user, is_admin, created_at: s.created_at }))
    }

    pub async fn web_logout(&self, actor: &Actor, session: &WebSession) -> CoreResult<()> {
        self.store().delete_web_session(session.id).await?;
        self.audit(actor, "web.logout", Some(session.user.username.clone()), serde_json::json!({})).await;
        Ok(())
    }

    /// Sets a user's password (the admin CLI's `set-password`): the policy applies, the user
    /// counts as enrolled afterwards, and their web sessions end.
    pub async fn set_password(&self, actor: &Actor, username: &str, password: String) -> CoreResult<()> {
        let user = self.user_row(username).await?;
        self.store_password(actor, &user, password, None).await
    }

    /// A signed-in user changes their own password: the current one is checked first, and
    /// their other sessions end.
    pub async fn change_own_password(
        &self,
        actor: &Actor,
        session: &WebSession,
        current: String,
        new: String,
    ) -> CoreResult<()> {
        let user = self.store().user_by_id(session.user.id).await?;
        // Guesses of the current password (a session left open) count like sign-ins.
        let ip = actor.ip.clone().unwrap_or_default();
        let now = self.now();
        self.store().record_login_failure(&user.username, &ip, now).await?;
        let (by_user, _) = self.store().login_failures(&user.username, &ip, now - FAILURE_WINDOW_SECS).await?;
        if by_user > MAX_FAILURES_PER_ACCOUNT {
            return Err(CoreError::refused(
                "too_many_attempts",
                format!("too many wrong passwords; try again in {} minutes", FAILURE_WINDOW_SECS / 60),
            ));
        }
        if !self.inner.passwords.verify(current, user.password_hash.clone()).await? {
            self.audit(actor, "web.password_check_failed", Some(user.username.clone()), serde_json::json!({})).await;
            return Err(CoreError::invalid("current_password", "the current password is wrong"));
        }
        self.store().clear_login_failures(&user.username).await?;
        self.store_password(actor, &user, new, Some(session.id)).await
    }

    async fn store_password(
        &self,
        actor: &Actor,
        user: &UserRow,
        password: String,
        keep: Option<i64>,
    ) -> CoreResult<()> {
        if let Some(why) = onramp_domain::password::explain(&password) {
            return Err(CoreError::invalid("password", why));
        }
        let hash = self.inner.passwords.hash(password).await?;
        self.store().set_password_hash(user.id, &hash, self.now()).await?;
        let ended = self.store().delete_web_sessions_of_user(user.id, keep).await?;
        self.audit(
            actor,
            "user.password_set",
            Some(user.username.clone()),
            serde_json::json!({"sessions_ended": ended}),
        )
        .await;
        Ok(())
    }
}
