//! Enrollment use cases behind the public edge API (PROTOCOL.md section 3): start,
//! activate_user, create_device, network_info and poll. The session is bound to the
//! enrollment token; every call re-checks it against the deadline.

use crate::tokens::times;
use crate::SessionStart;
use crate::{Actor, Core, CoreError, CoreResult, DeviceInput};
use onramp_domain::template::{self, Vars};
use onramp_domain::token::{check_session, TokenKind, TokenSecret};
use onramp_proto::{
    AdminInfo, DeviceConfigResponse, EnrollmentSettings, EnrollmentStartResponse, InitialUserInfo, InstanceInfo,
};
use onramp_store::{DeviceRow, ResetRequest, StoreError, TokenRow, UserRow};

/// A validated, open enrollment session of a user's token.
struct Session {
    token: TokenRow,
    user: UserRow,
}

/// An open session of either kind: a user's, or a network device's (no user).
enum AnySession {
    User(Session),
    Network { token: TokenRow, device: DeviceRow },
}

/// `activate_user` with a network device's token.
fn no_account_to_activate() -> CoreError {
    CoreError::refused(
        "network_device",
        "this token enrolls a network device, which has no user account to activate; \
         register the device with create_device instead",
    )
}

/// Code of a poll with the polling token of a deleted device (the edge keeps PROTOCOL.md's
/// 401 "invalid token" for existing clients; `code` tells Onramp's client what happened).
pub const DEVICE_REMOVED: &str = "device_removed";

impl Core {
    async fn session(&self, token: &TokenSecret) -> CoreResult<AnySession> {
        self.any_session_of(token, TokenKind::starts_enrollment).await
    }

    /// The open session of `token` for a user's token only.
    async fn session_of(&self, token: &TokenSecret, accepts: fn(TokenKind) -> bool) -> CoreResult<Session> {
        match self.any_session_of(token, accepts).await? {
            AnySession::User(s) => Ok(s),
            AnySession::Network { .. } => Err(CoreError::UnknownToken),
        }
    }

    /// The open session of `token`: a token itself (body field, desktop clients) or a
    /// browser session id from the edge's cookie, bound to its token at start.
    async fn any_session_of(&self, token: &TokenSecret, accepts: fn(TokenKind) -> bool) -> CoreResult<AnySession> {
        let hash = token.hash();
        let found = match self.store().token_by_hash(&hash).await {
            Err(StoreError::NotFound) => self.store().token_by_session(&hash).await,
            other => other,
        };
        let row = match found {
            Ok(r) if TokenKind::parse(&r.kind).is_some_and(accepts) => r,
            Ok(_) | Err(StoreError::NotFound) => return Err(CoreError::UnknownToken),
            Err(e) => return Err(e.into()),
        };
        check_session(&times(&row), self.now()).map_err(CoreError::Token)?;
        let Some(user_id) = row.user_id else {
            let device = match row.device_id {
                Some(id) => self.store().device_by_id(id).await.ok().filter(DeviceRow::is_network),
                None => None,
            };
            let Some(device) = device else {
                return Err(CoreError::Token(onramp_domain::token::TokenRejection::Revoked));
            };
            return Ok(AnySession::Network { token: row, device });
        };
        let user = self.store().user_by_id(user_id).await?;
        if !user.is_active {
            return Err(CoreError::refused("user_disabled", "this account is disabled; contact your administrator"));
        }
        Ok(AnySession::User(Session { token: row, user }))
    }

    /// Binds the edge's opaque browser-session id (only its hash is stored) to the started
    /// token until the session deadline. Stored in the database, so every edge and core
    /// replica behind a load balancer resolves the cookie.
    async fn bind_browser_session(&self, started: &SessionStart, id: Option<&TokenSecret>) -> CoreResult<()> {
        let Some(id) = id else { return Ok(()) };
        if !onramp_domain::token::is_well_formed(id.expose()) {
            return Err(CoreError::invalid("session", "malformed session id"));
        }
        self.store().add_token_session(&id.hash(), started.token.id, started.deadline, self.now()).await?;
        Ok(())
    }

    pub async fn instance_info(&self, username: &str) -> InstanceInfo {
        let s = self.settings().await;
        let url = self.public_url().await;
        InstanceInfo {
            id: s.instance_id,
            name: s.instance_name,
            url: url.clone(),
            proxy_url: url,
            username: username.to_owned(),
            enterprise_enabled: false,
            disable_all_traffic: false,
            openid_display_name: None,
            client_traffic_policy: Some(0),
        }
    }

    /// `enrollment/start`: opens or resumes the session and describes it.
    pub async fn enrollment_start(&self, actor: &Actor, token: &TokenSecret) -> CoreResult<EnrollmentStartResponse> {
        self.enrollment_start_in(actor, token, None).await
    }

    /// Whom to ask for a new token, for a token this server knows but refuses (expired,
    /// used, revoked): the holder had a real invitation, so the contact it came with is
    /// theirs to see. Unknown tokens get no contact.
    pub async fn contact_for_token(&self, token: &TokenSecret) -> Option<AdminInfo> {
        let row = self.store().token_by_hash(&token.hash()).await.ok()?;
        let issuer = match row.issued_by {
            Some(id) => self.store().user_by_id(id).await.ok(),
            None => None,
        };
        let c = self.contact(issuer.as_ref()).await?;
        Some(AdminInfo { name: c.name(), phone_number: c.phone, email: c.email })
    }

    /// `enrollment/start` from the edge, binding its browser-session id to the session.
    pub async fn enrollment_start_in(
        &self,
        actor: &Actor,
        token: &TokenSecret,
        browser_session: Option<&TokenSecret>,
    ) -> CoreResult<EnrollmentStartResponse> {
        let started = self.start_session(actor, token).await?;
        self.bind_browser_session(&started, browser_session).await?;
        let admin = match started.token.issued_by {
            Some(id) => self.store().user_by_id(id).await.ok(),
            None => None,
        };
        let user = match (started.user, started.device) {
            (Some(user), _) => user,
            (None, Some(device)) => {
                return self.network_start_response(&device, admin.as_ref(), started.deadline).await
            }
            (None, None) => return Err(CoreError::UnknownToken),
        };
        let settings = self.settings().await;
        let devices = self.store().list_devices(Some(user.id)).await?;
        let is_admin = self.store().is_admin(user.id).await?;
        let vars: Vars = self.template_vars(&user, admin.as_ref()).await;
        let contact = self.contact(admin.as_ref()).await;
        Ok(EnrollmentStartResponse {
            admin: contact.map(|a| AdminInfo { name: a.name(), phone_number: a.phone, email: a.email }),
            user: InitialUserInfo {
                first_name: user.first_name.clone(),
                last_name: user.last_name.clone(),
                login: user.username.clone(),
                email: user.email.clone(),
                phone_number: user.phone.clone(),
                is_active: user.is_active,
                device_names: devices.into_iter().map(|d| d.name).collect(),
                enrolled: user.enrolled,
                is_admin,
            },
            deadline_timestamp: started.deadline,
            final_page_content: if settings.enrollment.show_welcome_message {
                template::render(&settings.enrollment.welcome_message, &vars, template::plain)
            } else {
                String::new()
            },
            instance: self.instance_info(&user.username).await,
            settings: EnrollmentSettings {
                vpn_setup_optional: settings.enrollment.vpn_setup_optional,
                only_client_activation: settings.enrollment.only_client_activation,
                admin_device_management: settings.enrollment.admin_device_management,
                smtp_configured: settings.smtp.is_configured(),
                mfa_required: settings.enrollment.mfa_required,
            },
        })
    }

    /// `enrollment/activate_user`: sets the password of a not yet enrolled user and
    /// completes the enrollment (welcome and admin e-mails).
    pub async fn activate_user(
        &self,
        actor: &Actor,
        token: &TokenSecret,
        password: String,
        phone: Option<String>,
    ) -> CoreResult<()> {
        let Session { token: t, mut user } = match self.session(token).await? {
            AnySession::User(s) => s,
            AnySession::Network { .. } => return Err(no_account_to_activate()),
        };
        if user.enrolled || user.password_hash.is_some() {
            return self.repeated_activation(&t, &user, password).await;
        }
        if onramp_domain::password::explain(&password).is_some() {
            return Err(CoreError::refused("weak_password", "password not strong enough"));
        }
        if let Some(p) = phone.filter(|p| !p.trim().is_empty()) {
            user.phone = Some(onramp_domain::validate::parse_phone("phone_number", &p)?);
        }
        user.password_hash = Some(self.inner.passwords.hash(password.clone()).await?);
        // Conditional on "no password yet": of two concurrent activations one wins, and
        // only it audits and mails.
        let Some(user) = self.store().activate_user(&user, t.id, self.now()).await? else {
            // The winner may be this same call sent twice (the client's connection broke
            // while core was still hashing, and it sent the call again).
            let (t, user) = (self.store().token_by_id(t.id).await?, self.store().user_by_id(user.id).await?);
            return self.repeated_activation(&t, &user, password).await;
        };
        self.audit(actor, "enrollment.completed", Some(user.username.clone()), serde_json::json!({"token_id": t.id}))
            .await;
        self.send_enrollment_completed_mails(&user.username, t.issued_by).await
    }

    /// `activate_user` for a user who has a password: a repeat of this session's own
    /// activation (its answer was lost: a core died or the connection broke after the
    /// commit) succeeds again, changing nothing, when the password is the one set; the
    /// client cannot tell a lost answer from a refusal otherwise. Anything else is refused.
    async fn repeated_activation(&self, t: &TokenRow, user: &UserRow, password: String) -> CoreResult<()> {
        // The activation marks the session's token used; an enrolled user's desktop token
        // never activates. The token may have been read just before the first copy
        // committed (and the user just after), so an unused one is read again.
        let used = t.used_at.is_some() || self.store().token_by_id(t.id).await?.used_at.is_some();
        let this_session = t.kind == TokenKind::Enrollment.as_str() && used;
        if this_session && self.inner.passwords.verify(password, user.password_hash.clone()).await? {
            return Ok(());
        }
        Err(CoreError::refused("already_activated", "this account is already activated"))
    }

    /// `enrollment/create_device`: registers a device for the session's user with an
    /// address in every location they may use, and hands out its polling token.
    pub async fn enrollment_create_device(
        &self,
        actor: &Actor,
        token: &TokenSecret,
        name: &str,
        pubkey: &str,
    ) -> CoreResult<DeviceConfigResponse> {
        let Session { token: t, user } = match self.session(token).await? {
            AnySession::User(s) => s,
            AnySession::Network { token: t, device } => {
                return self.enroll_network_device(actor, &t, &device, name, pubkey).await;
            }
        };
        // One session registers one device. A retry of that same registration (same key,
        // e.g. after a lost answer) gets the device again instead of an error it cannot
        // recover from.
        if let Some(id) = self.store().session_device(t.id).await? {
            let device = self.store().device_by_id(id).await?;
            let key = onramp_domain::validate::WgPublicKey::parse("pubkey", pubkey)?;
            if device.pubkey != key.as_str() {
                return Err(session_has_device(&device.name));
            }
            return self.device_config_response(&device, &user, true).await;
        }
        // Headless clients enroll machines without naming them.
        let name = if name.trim().is_empty() { default_device_name(pubkey) } else { name.to_owned() };
        let input = DeviceInput { username: user.username.clone(), name, pubkey: pubkey.to_owned() };
        let info = self.register_device(actor, input, Some(t.id)).await?;
        // Desktop-configuration tokens complete with the device.
        if t.kind == TokenKind::DesktopConfig.as_str() || user.enrolled {
            self.store().mark_token_used(t.id, self.now()).await?;
        }
        let device = self.store().device_by_id(info.id).await?;
        self.device_config_response(&device, &user, true).await
    }

    /// `enrollment/network_info`: the full configuration of one of the session user's
    /// devices, with a rotated polling token (used to update an existing instance).
    pub async fn network_info(&self, token: &TokenSecret, pubkey: &str) -> CoreResult<DeviceConfigResponse> {
        let key = onramp_domain::validate::WgPublicKey::parse("pubkey", pubkey)?;
        let user = match self.session(token).await? {
            AnySession::User(s) => s.user,
            AnySession::Network { device, .. } => {
                if device.pubkey.is_empty() {
                    // Not enrolled yet (a client recovering a registration that never arrived).
                    return Err(CoreError::not_found("device", key.as_str()));
                }
                if device.pubkey != key.as_str() {
                    return Err(CoreError::Forbidden("this token belongs to another device".into()));
                }
                return self.network_config_response(&device, true).await;
            }
        };
        let device = match self.store().device_by_pubkey(key.as_str()).await {
            Ok(d) if d.user_id == Some(user.id) => d,
            Ok(_) => return Err(CoreError::Forbidden("this device belongs to another user".into())),
            Err(StoreError::NotFound) => return Err(CoreError::not_found("device", key.as_str())),
            Err(e) => return Err(e.into()),
        };
        self.device_config_response(&device, &user, true).await
    }

    /// "your account is disabled; contact NAME", naming the contact (see [`Core::contact`]).
    pub(crate) async fn account_disabled(&self, issuer: Option<&UserRow>) -> CoreError {
        let who = self.contact(issuer).await.map(|c| c.line()).unwrap_or_else(|| "your administrator".into());
        CoreError::refused("user_disabled", format!("your account is disabled; contact {who}"))
    }

    /// `poll`: the current configuration for a polling token.
    pub async fn poll(&self, polling_token: &TokenSecret) -> CoreResult<DeviceConfigResponse> {
        let hash = polling_token.hash();
        let device = match self.store().device_by_polling_hash(&hash).await {
            Ok(d) => d,
            Err(StoreError::NotFound) if self.store().polling_token_removed(&hash).await? => {
                return Err(CoreError::refused(DEVICE_REMOVED, "this device was removed by the administrator"));
            }
            Err(StoreError::NotFound) => return Err(CoreError::UnknownToken),
            Err(e) => return Err(e.into()),
        };
        // Network devices have no user: no active or group rule applies.
        let Some(user_id) = device.user_id else {
            return self.network_config_response(&device, false).await;
        };
        let user = self.store().user_by_id(user_id).await?;
        if !user.is_active {
            let issuer = match self.store().device_token_issuer(device.id).await? {
                Some(id) => self.store().user_by_id(id).await.ok(),
                None => None,
            };
            return Err(self.account_disabled(issuer.as_ref()).await);
        }
        self.device_config_response(&device, &user, false).await
    }

    async fn device_config_response(
        &self,
        d: &DeviceRow,
        user: &UserRow,
        new_polling_token: bool,
    ) -> CoreResult<DeviceConfigResponse> {
        self.config_response(d, &user.username, new_polling_token).await
    }

    /// The configuration of a network device; the instance's `username` is the device's name.
    pub(crate) async fn network_config_response(
        &self,
        d: &DeviceRow,
        new_polling_token: bool,
    ) -> CoreResult<DeviceConfigResponse> {
        self.config_response(d, &d.name, new_polling_token).await
    }

    async fn config_response(
        &self,
        d: &DeviceRow,
        username: &str,
        new_polling_token: bool,
    ) -> CoreResult<DeviceConfigResponse> {
        let token = if new_polling_token {
            let secret = TokenSecret::generate(&mut rand::rngs::OsRng);
            self.store().set_polling_token(d.id, &secret.hash(), self.now()).await?;
            Some(secret.expose().to_owned())
        } else {
            None
        };
        Ok(DeviceConfigResponse {
            device: onramp_proto::Device {
                id: d.id,
                name: d.name.clone(),
                pubkey: d.pubkey.clone(),
                // PROTOCOL.md has a number here; a network device has no user.
                user_id: d.user_id.unwrap_or(0),
                created_at: d.created_at,
            },
            configs: self.device_configs(d).await?,
            instance: self.instance_info(username).await,
            token,
        })
    }
}

impl Core {
    /// `password-reset/request`: e-mails a reset link to an active, enrolled user with that
    /// address. Answers the same whether or not the address is known (no enumeration), and
    /// does the same work up to the mail: a token is generated and hashed and one store
    /// transaction runs either way. Within the cooldown nothing is sent again.
    pub async fn request_password_reset(&self, actor: &Actor, email: &str) -> CoreResult<()> {
        let settings = self.settings().await;
        if !settings.smtp.is_configured() {
            tracing::info!("password reset requested while SMTP is not configured");
            return Ok(());
        }
        let now = self.now();
        let lifetime = settings.enrollment.password_reset_lifetime_secs;
        let secret = TokenSecret::generate(&mut rand::rngs::OsRng);
        let row = onramp_store::NewToken {
            hash: secret.hash(),
            kind: TokenKind::PasswordReset.as_str().to_owned(),
            user_id: 0,
            issued_by: None,
            email: None,
            created_at: now,
            expires_at: now + lifetime,
        };
        let audit = self.audit_record(actor, "password_reset.requested", None, serde_json::json!({}));
        let cooldown_since = now - settings.enrollment.password_reset_cooldown_secs.max(0);
        let user = match self.store().request_reset_token(email.trim(), &row, cooldown_since, &audit).await? {
            ResetRequest::Issued(u) => u,
            ResetRequest::Cooldown => {
                tracing::info!("password reset requested again within the cooldown; no mail sent");
                return Ok(());
            }
            ResetRequest::NoUser => {
                tracing::info!("password reset requested for an address that cannot reset");
                return Ok(());
            }
        };
        // The mail is rendered and queued after the answer: only a known address has one,
        // so doing it inside the request would make known addresses answer slower. At most
        // one per account and cooldown, so these tasks are bounded by the accounts.
        let core = self.clone();
        tokio::spawn(async move {
            let issued = crate::IssuedToken {
                username: user.username.clone(),
                email: user.email.clone(),
                kind: TokenKind::PasswordReset,
                token: secret,
                enrollment_url: core.public_url().await,
                expires_at: now + lifetime,
            };
            let kind = crate::mail::MailKind::PasswordReset;
            if let Err(e) = core.enqueue_mail(kind, &user.email, &user, None, Some(&issued)).await {
                tracing::error!(error = %e, "could not queue the password-reset mail");
            }
        });
        Ok(())
    }

    /// `password-reset/start`: opens the reset session; returns its deadline.
    pub async fn start_password_reset(&self, actor: &Actor, token: &TokenSecret) -> CoreResult<i64> {
        self.start_password_reset_in(actor, token, None).await
    }

    /// `password-reset/start` from the edge, binding its browser-session id to the session.
    pub async fn start_password_reset_in(
        &self,
        actor: &Actor,
        token: &TokenSecret,
        browser_session: Option<&TokenSecret>,
    ) -> CoreResult<i64> {
        let is_reset = |k: TokenKind| k == TokenKind::PasswordReset;
        let started = self.start_session_of(actor, token, is_reset, "password_reset.started").await?;
        self.bind_browser_session(&started, browser_session).await?;
        Ok(started.deadline)
    }

    /// `password-reset/reset`: sets the new password inside the reset session. The password
    /// and the token's use are one conditional store update: of concurrent resets with one
    /// token exactly one succeeds, the others find the token used.
    pub async fn reset_password(&self, actor: &Actor, token: &TokenSecret, password: String) -> CoreResult<()> {
        let Session { token: t, user } = self.session_of(token, |k| k == TokenKind::PasswordReset).await?;
        if onramp_domain::password::explain(&password).is_some() {
            return Err(CoreError::refused("weak_password", "password not strong enough"));
        }
        let hash = self.inner.passwords.hash(password).await?;
        if !self.store().redeem_reset_token(t.id, user.id, &hash, self.now()).await? {
            // Lost to a concurrent reset, or the token changed meanwhile: say what it is now.
            let now_row = self.store().token_by_id(t.id).await?;
            check_session(&times(&now_row), self.now()).map_err(CoreError::Token)?;
            return Err(CoreError::Token(onramp_domain::token::TokenRejection::Used));
        }
        self.audit(actor, "password_reset.completed", Some(user.username.clone()), serde_json::json!({})).await;
        self.enqueue_mail(crate::mail::MailKind::PasswordResetDone, &user.email, &user, None, None).await
    }
}

/// A second device in one enrollment session; `name` of the first when known.
pub(crate) fn session_has_device(name: &str) -> CoreError {
    let which = if name.is_empty() { String::new() } else { format!(" ({name:?})") };
    CoreError::refused(
        "session_has_device",
        format!(
            "this enrollment session already registered a device{which}; one session registers one device, \
             so ask your administrator for a new enrollment link to add another"
        ),
    )
}

fn default_device_name(pubkey: &str) -> String {
    let short: String = pubkey.chars().filter(|c| c.is_ascii_alphanumeric()).take(8).collect();
    format!("device-{short}")
}
