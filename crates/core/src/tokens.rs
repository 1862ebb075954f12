//! Enrollment and desktop-configuration tokens (PROTOCOL.md sections 2 and 4).

use crate::error::OrNotFound;
use crate::mail::MailKind;
use crate::{Actor, Core, CoreError, CoreResult};
use onramp_domain::duration::parse_lifetime;
use onramp_domain::token::{decide_start, StartDecision, TokenKind, TokenSecret, TokenTimes};
use onramp_domain::validate::Email;
use onramp_proto::{StartEnrollmentRequest, StartEnrollmentResponse};
use onramp_store::{NewToken, TokenRow, UserRow};
use serde::{Deserialize, Serialize};

/// A freshly issued token. The secret is here once, to hand to the user.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub username: String,
    pub email: String,
    pub kind: TokenKind,
    pub token: TokenSecret,
    pub enrollment_url: String,
    pub expires_at: i64,
}

/// Tokens made but not stored (see `Core::prepare_tokens`); each `issued` matches its row.
pub(crate) struct PreparedTokens {
    rows: Vec<NewToken>,
    audits: Vec<onramp_store::NewAudit>,
    pub issued: Vec<IssuedToken>,
}

/// A pending token as admins see it: everything but the secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PendingToken {
    pub id: i64,
    #[schema(value_type = crate::schema::TokenKindName)]
    pub kind: &'static str,
    pub created_at: i64,
    pub expires_at: i64,
    pub session_deadline: Option<i64>,
    pub issued_by: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// Issue for every member of this group...
    #[serde(default)]
    pub group: Option<String>,
    /// ...and/or for these usernames.
    #[serde(default)]
    pub usernames: Vec<String>,
    #[serde(default)]
    pub token_expiration_time: Option<String>,
    #[serde(default)]
    pub send_enrollment_notification: bool,
}

/// Per-user result of a bulk issue: a token, or why the user was skipped.
#[derive(Debug, Clone)]
pub enum BulkOutcome {
    Issued(IssuedToken),
    Skipped { username: String, email: String, reason: String },
}

impl BulkOutcome {
    /// Columns of the bulk summary CSV (`provisioning.csv`), without and with the token.
    pub fn csv_header(include_token: bool) -> Vec<&'static str> {
        let mut h = vec!["username", "email", "kind", "enrollment_url", "expires_at", "note"];
        if include_token {
            h.push("enrollment_token");
        }
        h
    }

    /// This outcome as a row of the bulk summary CSV.
    pub fn csv_record(&self, include_token: bool) -> Vec<String> {
        let mut rec = match self {
            Self::Issued(t) => vec![
                t.username.clone(),
                t.email.clone(),
                t.kind.as_str().to_owned(),
                t.enrollment_url.clone(),
                chrono::DateTime::from_timestamp(t.expires_at, 0).map(|d| d.to_rfc3339()).unwrap_or_default(),
                String::new(),
            ],
            Self::Skipped { username, email, reason } => {
                vec![
                    username.clone(),
                    email.clone(),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("skipped: {reason}"),
                ]
            }
        };
        if include_token {
            rec.push(match self {
                Self::Issued(t) => t.token.expose().to_owned(),
                Self::Skipped { .. } => String::new(),
            });
        }
        rec
    }

    /// The `provisioning.json` of an issued token.
    pub fn provisioning_file(&self) -> Option<onramp_domain::provisioning::ProvisioningFile> {
        match self {
            Self::Issued(t) => Some(onramp_domain::provisioning::ProvisioningFile {
                enrollment_token: t.token.expose().to_owned(),
                enrollment_url: t.enrollment_url.clone(),
            }),
            Self::Skipped { .. } => None,
        }
    }
}

/// Result of `enrollment/start`.
#[derive(Debug, Clone)]
pub struct SessionStart {
    pub token: TokenRow,
    /// The token's user; `None` for a network-device token.
    pub user: Option<UserRow>,
    /// The network device a `network_device` token enrolls.
    pub device: Option<onramp_store::DeviceRow>,
    pub deadline: i64,
    /// True for the call that opened the session, false for a resumed one.
    pub opened: bool,
}

pub(crate) fn pending_of(r: TokenRow, issued_by: Option<String>) -> PendingToken {
    PendingToken {
        id: r.id,
        kind: TokenKind::parse(&r.kind).map(TokenKind::as_str).unwrap_or("unknown"),
        created_at: r.created_at,
        expires_at: r.expires_at,
        session_deadline: r.session_deadline,
        issued_by,
        email: r.email,
    }
}

impl Core {
    fn lifetime(&self, req: Option<&str>, default: i64) -> CoreResult<i64> {
        match req.filter(|s| !s.trim().is_empty()) {
            Some(s) => Ok(parse_lifetime("token_expiration_time", s)?),
            None => Ok(default),
        }
    }

    async fn check_notification(&self, req: &StartEnrollmentRequest) -> CoreResult<Option<String>> {
        let email = match &req.email {
            Some(e) => Some(Email::parse("email", e)?.into_inner()),
            None => None,
        };
        if req.send_enrollment_notification {
            if email.is_none() {
                return Err(CoreError::invalid("email", "required when send_enrollment_notification is true"));
            }
            if !self.settings().await.smtp.is_configured() {
                return Err(CoreError::refused(
                    "smtp_not_configured",
                    "cannot send the notification: SMTP is not configured",
                ));
            }
        }
        Ok(email)
    }

    /// `POST /api/v1/user/{username}/start_enrollment`.
    pub async fn start_enrollment(
        &self,
        actor: &Actor,
        username: &str,
        req: StartEnrollmentRequest,
    ) -> CoreResult<StartEnrollmentResponse> {
        let user = self.user_row(username).await?;
        if !user.is_active {
            return Err(CoreError::refused("user_disabled", format!("user {username} is disabled")));
        }
        if user.enrolled {
            return Err(CoreError::refused(
                "user_enrolled",
                format!("user {username} is already enrolled; use start_desktop to configure a desktop client"),
            ));
        }
        let email = self.check_notification(&req).await?;
        let lifetime =
            self.lifetime(req.token_expiration_time.as_deref(), self.settings().await.enrollment.token_lifetime_secs)?;
        self.issue_one(actor, &user, TokenKind::Enrollment, lifetime, email, req.send_enrollment_notification).await
    }

    /// `POST /api/v1/user/{username}/start_desktop`, by an admin, for any active user.
    /// PROTOCOL.md section 4 also allows a user to do this for themself, but the admin API
    /// authenticates only admin API tokens (non-admins cannot hold one), so there is no such
    /// path yet.
    pub async fn start_desktop(
        &self,
        actor: &Actor,
        username: &str,
        req: StartEnrollmentRequest,
    ) -> CoreResult<StartEnrollmentResponse> {
        let user = self.user_row(username).await?;
        if !user.is_active {
            return Err(CoreError::refused("user_disabled", format!("user {username} is disabled")));
        }
        if self.store().count_locations().await? == 0 {
            return Err(CoreError::refused("no_locations", "no VPN location exists yet; create one first"));
        }
        let email = self.check_notification(&req).await?;
        let lifetime = self.lifetime(
            req.token_expiration_time.as_deref(),
            self.settings().await.enrollment.desktop_token_lifetime_secs,
        )?;
        self.issue_one(actor, &user, TokenKind::DesktopConfig, lifetime, email, req.send_enrollment_notification).await
    }

    async fn issue_one(
        &self,
        actor: &Actor,
        user: &UserRow,
        kind: TokenKind,
        lifetime: i64,
        email: Option<String>,
        notify: bool,
    ) -> CoreResult<StartEnrollmentResponse> {
        let issued = self.issue(actor, std::slice::from_ref(user), kind, lifetime, email.clone()).await?.remove(0);
        if notify {
            let to = email.unwrap_or_else(|| user.email.clone());
            self.send_token_mail(actor, user, &issued, &to).await?;
        }
        Ok(StartEnrollmentResponse {
            enrollment_token: issued.token.expose().to_owned(),
            enrollment_url: issued.enrollment_url,
            expires_at: rfc3339(issued.expires_at),
        })
    }

    /// Generates and stores one token per user in a single transaction.
    async fn issue(
        &self,
        actor: &Actor,
        users: &[UserRow],
        kind: TokenKind,
        lifetime: i64,
        email: Option<String>,
    ) -> CoreResult<Vec<IssuedToken>> {
        self.issue_kinds(actor, &users.iter().map(|u| (u.clone(), kind)).collect::<Vec<_>>(), lifetime, email).await
    }

    async fn issue_kinds(
        &self,
        actor: &Actor,
        users: &[(UserRow, TokenKind)],
        lifetime: i64,
        email: Option<String>,
    ) -> CoreResult<Vec<IssuedToken>> {
        let prepared = self.prepare_tokens(actor, users, lifetime, email).await;
        self.commit_tokens(prepared, |_| true).await
    }

    /// New tokens for `users`, not stored yet: the directory sync delivers each before it
    /// commits it, so a token that could not be delivered never revokes a user's older one.
    pub(crate) async fn prepare_tokens(
        &self,
        actor: &Actor,
        users: &[(UserRow, TokenKind)],
        lifetime: i64,
        email: Option<String>,
    ) -> PreparedTokens {
        let now = self.now();
        let url = self.public_url().await;
        let mut rng = rand::rngs::OsRng;
        let mut rows = Vec::with_capacity(users.len());
        let mut audits = Vec::with_capacity(users.len());
        let mut issued = Vec::with_capacity(users.len());
        for (u, kind) in users {
            let secret = TokenSecret::generate(&mut rng);
            rows.push(NewToken {
                hash: secret.hash(),
                kind: kind.as_str().to_owned(),
                user_id: u.id,
                issued_by: actor.user_id,
                email: email.clone(),
                created_at: now,
                expires_at: now + lifetime,
            });
            let action = match kind {
                TokenKind::DesktopConfig => "desktop_token.added",
                _ => "enrollment_token.added",
            };
            audits.push(self.audit_record(
                actor,
                action,
                Some(u.username.clone()),
                serde_json::json!({"expires_at": now + lifetime}),
            ));
            issued.push(IssuedToken {
                username: u.username.clone(),
                email: u.email.clone(),
                kind: *kind,
                token: secret,
                enrollment_url: url.clone(),
                expires_at: now + lifetime,
            });
        }
        PreparedTokens { rows, audits, issued }
    }

    /// Stores the prepared tokens that `keep` accepts (revoking each user's older unused ones
    /// of the same kind) and returns them.
    pub(crate) async fn commit_tokens(
        &self,
        p: PreparedTokens,
        keep: impl Fn(&IssuedToken) -> bool,
    ) -> CoreResult<Vec<IssuedToken>> {
        let mut rows = Vec::new();
        let mut audits = Vec::new();
        let mut issued = Vec::new();
        for ((row, audit), t) in p.rows.into_iter().zip(p.audits).zip(p.issued) {
            if keep(&t) {
                rows.push(row);
                audits.push(audit);
                issued.push(t);
            }
        }
        if rows.is_empty() {
            return Ok(issued);
        }
        self.store().issue_tokens(&rows, &audits).await?;
        metrics::counter!("onramp_tokens_issued_total").increment(issued.len() as u64);
        Ok(issued)
    }

    async fn send_token_mail(&self, actor: &Actor, user: &UserRow, t: &IssuedToken, to: &str) -> CoreResult<()> {
        let kind = match t.kind {
            TokenKind::DesktopConfig => MailKind::DesktopConfig,
            _ => MailKind::Invitation,
        };
        let issuer = match actor.user_id {
            Some(id) => self.store().user_by_id(id).await.ok(),
            None => None,
        };
        self.enqueue_mail(kind, to, user, issuer.as_ref(), Some(t)).await
    }

    /// Bulk path: one token per member of `group` and per listed username, in one
    /// transaction. Pending users get enrollment tokens, enrolled users desktop tokens,
    /// disabled users are skipped. Unknown names fail the whole request before any write.
    pub async fn issue_bulk(&self, actor: &Actor, req: BulkRequest) -> CoreResult<Vec<BulkOutcome>> {
        let mut users: Vec<UserRow> = Vec::new();
        if let Some(g) = &req.group {
            let group = self.store().group_by_name(g).await.or_not_found("group", g)?;
            users.extend(self.store().group_members(group.id).await?);
        }
        let mut unknown = Vec::new();
        for name in &req.usernames {
            match self.store().user_by_username(name).await {
                Ok(u) => users.push(u),
                Err(onramp_store::StoreError::NotFound) => unknown.push(name.clone()),
                Err(e) => return Err(e.into()),
            }
        }
        if !unknown.is_empty() {
            return Err(CoreError::invalid("usernames", format!("unknown user(s): {}", unknown.join(", "))));
        }
        if req.group.is_none() && req.usernames.is_empty() {
            return Err(CoreError::invalid("group", "give a group or a list of usernames"));
        }
        let mut seen = std::collections::HashSet::new();
        users.retain(|u| seen.insert(u.id));
        let settings = self.settings().await;
        if req.send_enrollment_notification && !settings.smtp.is_configured() {
            return Err(CoreError::refused("smtp_not_configured", "cannot send notifications: SMTP is not configured"));
        }
        let lifetime = self.lifetime(req.token_expiration_time.as_deref(), settings.enrollment.token_lifetime_secs)?;
        let mut targets = Vec::new();
        let mut outcomes = Vec::new();
        for u in users {
            if !u.is_active {
                outcomes.push(BulkOutcome::Skipped {
                    username: u.username,
                    email: u.email,
                    reason: "user is disabled".into(),
                });
            } else {
                let kind = if u.enrolled { TokenKind::DesktopConfig } else { TokenKind::Enrollment };
                targets.push((u, kind));
            }
        }
        let issued = self.issue_kinds(actor, &targets, lifetime, None).await?;
        for ((user, _), t) in targets.iter().zip(issued) {
            if req.send_enrollment_notification {
                self.send_token_mail(actor, user, &t, &user.email).await?;
            }
            outcomes.push(BulkOutcome::Issued(t));
        }
        outcomes.sort_by(|a, b| bulk_name(a).cmp(bulk_name(b)));
        Ok(outcomes)
    }

    pub async fn pending_tokens(&self, username: &str) -> CoreResult<Vec<PendingToken>> {
        let user = self.user_row(username).await?;
        let rows = self.store().pending_tokens(user.id, self.now()).await?;
        let mut out = Vec::new();
        for r in rows {
            let issued_by = match r.issued_by {
                Some(id) => self.store().user_by_id(id).await.ok().map(|u| u.username),
                None => None,
            };
            out.push(pending_of(r, issued_by));
        }
        Ok(out)
    }

    /// Revokes one pending token of a user, or all of them; returns how many.
    pub async fn revoke_tokens(&self, actor: &Actor, username: &str, token_id: Option<i64>) -> CoreResult<u64> {
        let user = self.user_row(username).await?;
        let audit = self.audit_record(
            actor,
            "token.revoked",
            Some(user.username.clone()),
            serde_json::json!({"token_id": token_id}),
        );
        let n = self.store().revoke_tokens(user.id, token_id, self.now(), &audit).await?;
        if n == 0 && token_id.is_some() {
            return Err(CoreError::not_found("pending token", token_id.unwrap_or_default()));
        }
        Ok(n)
    }

    /// `enrollment/start`: opens (or resumes) the 10-minute session bound to a token. The
    /// open is a conditional UPDATE, so concurrent starts of one token yield one session.
    pub async fn start_session(&self, actor: &Actor, token: &TokenSecret) -> CoreResult<SessionStart> {
        self.start_session_of(actor, token, TokenKind::starts_enrollment, "enrollment.started").await
    }

    /// Opens or resumes the session of a token whose kind `accepts`; other kinds are
    /// unknown here (a reset token cannot start an enrollment and vice versa).
    pub(crate) async fn start_session_of(
        &self,
        actor: &Actor,
        token: &TokenSecret,
        accepts: fn(TokenKind) -> bool,
        audit_action: &str,
    ) -> CoreResult<SessionStart> {
        let row = match self.store().token_by_hash(&token.hash()).await {
            Ok(r) => r,
            Err(onramp_store::StoreError::NotFound) => return Err(CoreError::UnknownToken),
            Err(e) => return Err(e.into()),
        };
        if !TokenKind::parse(&row.kind).is_some_and(accepts) {
            return Err(CoreError::UnknownToken);
        }
        // A reset link works once: used, it does not resume its session (an enrollment
        // session does, for the browser -> desktop hand-off).
        if row.kind == TokenKind::PasswordReset.as_str() && row.used_at.is_some() {
            return Err(CoreError::Token(onramp_domain::token::TokenRejection::Used));
        }
        // A user's token, or a network device's (which has no user to check).
        let (user, device, subject) = match row.user_id {
            Some(uid) => {
                let user = self.store().user_by_id(uid).await?;
                if !user.is_active {
                    let issuer = match row.issued_by {
                        Some(id) => self.store().user_by_id(id).await.ok(),
                        None => None,
                    };
                    return Err(self.account_disabled(issuer.as_ref()).await);
                }
                let subject = user.username.clone();
                (Some(user), None, subject)
            }
            None => {
                // A deleted device revoked its tokens; a token without one is dead too.
                let device = match row.device_id {
                    Some(id) => self.store().device_by_id(id).await.ok(),
                    None => None,
                };
                let Some(device) = device.filter(|d| d.is_network()) else {
                    return Err(CoreError::Token(onramp_domain::token::TokenRejection::Revoked));
                };
                let subject = device.name.clone();
                (None, Some(device), subject)
            }
        };
        let session_secs = self.settings().await.enrollment.session_lifetime_secs;
        let now = self.now();
        let mut current = row;
        for _ in 0..3 {
            let times = times(&current);
            match decide_start(&times, now, session_secs).map_err(CoreError::Token)? {
                StartDecision::Resume { deadline } => {
                    return Ok(SessionStart { token: current, user, device, deadline, opened: false });
                }
                StartDecision::Open { deadline } => {
                    let audit = self.audit_record(
                        actor,
                        audit_action,
                        Some(subject.clone()),
                        serde_json::json!({"token_id": current.id}),
                    );
                    if self.store().open_session(current.id, deadline, &audit).await? {
                        current.session_deadline = Some(deadline);
                        return Ok(SessionStart { token: current, user, device, deadline, opened: true });
                    }
                    // Lost the race: someone else opened it; re-read and resume.
                    current = self.store().token_by_id(current.id).await?;
                }
            }
        }
        Err(CoreError::Internal("token state kept changing".into()))
    }
}

/// Unix seconds as RFC 3339 UTC, e.g. `2025-01-31T12:00:00Z`.
pub(crate) fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn bulk_name(o: &BulkOutcome) -> &str {
    match o {
        BulkOutcome::Issued(t) => &t.username,
        BulkOutcome::Skipped { username, .. } => username,
    }
}

pub(crate) fn times(r: &TokenRow) -> TokenTimes {
    TokenTimes {
        expires_at: r.expires_at,
        session_deadline: r.session_deadline,
        used_at: r.used_at,
        revoked_at: r.revoked_at,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn expiry_is_rfc3339_utc() {
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
