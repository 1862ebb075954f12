//! Mail: messages are rendered from the settings' templates and written to a durable
//! outbox in the database; a worker delivers them over SMTP with retry and backoff, so a
//! message survives an SMTP outage and a restart of core.

mod qr;
pub(crate) mod smtp;

use crate::tokens::IssuedToken;
use crate::{Core, CoreError, CoreResult};
use onramp_domain::duration::humanize;
use onramp_domain::template::{self, Vars};
use onramp_store::{NewOutbox, OutboxRow, UserRow};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub use qr::qr_png;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    Invitation,
    DesktopConfig,
    Welcome,
    AdminEnrolled,
    NewDevice,
    PasswordReset,
    PasswordResetDone,
}

impl MailKind {
    /// Kinds whose body, link and QR code hold a token (see `enqueue_mail_with`).
    pub fn carries_token(kind: &str) -> bool {
        [Self::Invitation, Self::DesktopConfig, Self::PasswordReset].iter().any(|k| k.as_str() == kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::DesktopConfig => "desktop_config",
            Self::Welcome => "welcome",
            Self::AdminEnrolled => "admin_enrolled",
            Self::NewDevice => "new_device",
            Self::PasswordReset => "password_reset",
            Self::PasswordResetDone => "password_reset_done",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Attachment {
    pub filename: String,
    pub content_type: String,
    /// Standard base64.
    pub data: String,
}

/// Associated data of the encrypted outbox columns.
const BODY: &str = "mail_outbox.body";
const ATTACHMENTS: &str = "mail_outbox.attachments";

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MailStatus {
    /// Queued, not tried yet.
    Pending,
    /// Tried and failed; tried again at `next_attempt_at` (attempt `attempts` of `max_attempts`).
    Retrying,
    Sent,
    /// Every attempt failed; `last_error` says why.
    Failed,
    /// Not sent on purpose: the token it carried was revoked, replaced, used or expired first
    /// (`last_error` says which).
    Cancelled,
}

impl MailStatus {
    pub const ALL: [MailStatus; 5] = [Self::Pending, Self::Retrying, Self::Sent, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for MailStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// An outbox entry as admins see it (no body: it may hold a token).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OutboxEntry {
    pub id: i64,
    pub kind: String,
    pub to: String,
    pub subject: String,
    pub status: MailStatus,
    /// Attempts made so far...
    pub attempts: i64,
    /// ...of this many before the message is marked failed.
    pub max_attempts: i64,
    /// Unix seconds of the next attempt; null unless pending or retrying.
    pub next_attempt_at: Option<i64>,
    /// The last SMTP error, or why the message was cancelled.
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

impl OutboxEntry {
    fn from_row(r: OutboxRow, max_attempts: i64) -> Self {
        let status = MailStatus::parse(&r.status).unwrap_or(MailStatus::Failed);
        let queued = matches!(status, MailStatus::Pending | MailStatus::Retrying);
        Self {
            id: r.id,
            kind: r.kind,
            to: r.to_addr,
            subject: r.subject,
            status,
            attempts: r.attempts,
            max_attempts,
            next_attempt_at: queued.then_some(r.next_attempt_at),
            last_error: r.last_error,
            created_at: r.created_at,
            sent_at: r.sent_at,
        }
    }
}

/// What the SMTP server answered to `mail test`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MailTestOutcome {
    /// True when the server accepted the message.
    pub delivered: bool,
    /// `host:port` of the SMTP server tried.
    pub server: String,
    /// The server's reply code (e.g. 250, 530), when it answered with one.
    pub code: Option<u16>,
    /// The server's reply text, or the error (connection, TLS, authentication).
    pub reply: String,
}

/// Why a queued message whose token is no longer usable must not go out, or `None`.
pub(crate) fn dead_token_reason(t: Option<&onramp_store::TokenRow>, now: i64) -> Option<&'static str> {
    let Some(t) = t else { return Some("cancelled: its token no longer exists (the user was deleted)") };
    if t.revoked_at.is_some() {
        Some("cancelled: its token was revoked or replaced by a newer one before the message was sent")
    } else if t.used_at.is_some() {
        Some("cancelled: its token was already used before the message was sent")
    } else if t.expires_at <= now {
        Some("cancelled: its token expired before the message could be sent")
    } else {
        None
    }
}

/// `<enrollment url>?token=...`: the browser wizard with the token filled in. A phone
/// opens this (it cannot open the desktop deep link), so the invitation's QR code holds it.
pub fn wizard_link(url: &str, token: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair("token", token);
            u.to_string()
        }
        Err(_) => format!("{url}?token={token}"),
    }
}

/// `onramp://enroll?url=...&token=...`: opens the desktop client on the enrollment.
pub fn deep_link(url: &str, token: &str) -> String {
    let mut u = url::Url::parse("onramp://enroll").expect("static URL");
    u.query_pairs_mut().append_pair("url", url).append_pair("token", token);
    u.to_string()
}

/// Who a user is told to contact.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Contact {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: Option<String>,
}

impl Contact {
    pub fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name).trim().to_owned()
    }

    /// `Name <email>, phone`: one line for messages.
    pub fn line(&self) -> String {
        let mut s = format!("{} <{}>", self.name(), self.email);
        if let Some(p) = self.phone.as_deref().filter(|p| !p.trim().is_empty()) {
            s.push_str(&format!(", {p}"));
        }
        s
    }
}

impl Core {
    /// The contact shown to enrolling users: the `admin_contact` setting when set, else the
    /// admin who issued their token (`issuer`).
    pub(crate) async fn contact(&self, issuer: Option<&UserRow>) -> Option<Contact> {
        if let Some(c) = self.settings().await.admin_contact {
            return Some(Contact { first_name: c.name, last_name: String::new(), email: c.email, phone: c.phone });
        }
        issuer.map(|a| Contact {
            first_name: a.first_name.clone(),
            last_name: a.last_name.clone(),
            email: a.email.clone(),
            phone: a.phone.clone(),
        })
    }

    /// Variables of PROTOCOL.md section 5 for `user`, with the contact for `admin` (see
    /// [`Core::contact`]).
    pub(crate) async fn template_vars(&self, user: &UserRow, admin: Option<&UserRow>) -> Vars {
        let s = self.settings().await;
        let url = self.public_url().await;
        let mut v = Vars::new();
        let mut put = |k: &str, val: &str| {
            v.insert(k.to_owned(), val.to_owned());
        };
        put("first_name", &user.first_name);
        put("last_name", &user.last_name);
        put("username", &user.username);
        put("email", &user.email);
        put("instance_name", &s.instance_name);
        put("onramp_url", &url);
        put("defguard_url", &url);
        put("onramp_version", env!("CARGO_PKG_VERSION"));
        put("defguard_version", env!("CARGO_PKG_VERSION"));
        put("enrollment_url", &url);
        put("token_lifetime", &humanize(s.enrollment.token_lifetime_secs));
        put("session_lifetime", &humanize(s.enrollment.session_lifetime_secs));
        if let Some(a) = self.contact(admin).await {
            v.insert("admin_first_name".into(), a.first_name.clone());
            v.insert("admin_last_name".into(), a.last_name.clone());
            v.insert("admin_email".into(), a.email.clone());
            v.insert("admin_phone".into(), a.phone.clone().unwrap_or_default());
        }
        v
    }

    /// Renders and queues one message. `token` fills the token, link and QR code.
    pub(crate) async fn enqueue_mail(
        &self,
        kind: MailKind,
        to: &str,
        user: &UserRow,
        admin: Option<&UserRow>,
        token: Option<&IssuedToken>,
    ) -> CoreResult<()> {
        self.enqueue_mail_with(kind, to, user, admin, token, &[]).await
    }

    pub(crate) async fn enqueue_mail_with(
        &self,
        kind: MailKind,
        to: &str,
        user: &UserRow,
        admin: Option<&UserRow>,
        token: Option<&IssuedToken>,
        extra: &[(&str, &str)],
    ) -> CoreResult<()> {
        let s = self.settings().await;
        let mut vars = self.template_vars(user, admin).await;
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let mut attachments = Vec::new();
        let mut token_id = None;
        if let Some(t) = token {
            token_id = Some(self.store().token_by_hash(&t.token.hash()).await?.id);
            let link = deep_link(&t.enrollment_url, t.token.expose());
            let wizard = wizard_link(&t.enrollment_url, t.token.expose());
            vars.insert("token".into(), t.token.expose().to_owned());
            vars.insert("deep_link".into(), link.clone());
            vars.insert("wizard_link".into(), wizard.clone());
            vars.insert("token_lifetime".into(), humanize(t.expires_at - self.now()));
            if kind == MailKind::Invitation || kind == MailKind::DesktopConfig {
                // The QR code is for phones: the wizard URL, which a phone's browser opens.
                let png = qr_png(&wizard).map_err(CoreError::Internal)?;
                attachments.push(Attachment {
                    filename: "enrollment-qr.png".into(),
                    content_type: "image/png".into(),
                    data: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, png),
                });
            }
        }
        let t = &s.templates;
        let e = &s.enrollment;
        let (subject, body) = match kind {
            MailKind::Invitation => (&t.invitation_subject, &t.invitation_body),
            MailKind::DesktopConfig => (&t.desktop_subject, &t.desktop_body),
            MailKind::Welcome => (
                &e.welcome_email_subject,
                if e.use_welcome_message_as_email { &e.welcome_message } else { &t.welcome_body },
            ),
            MailKind::AdminEnrolled => (&t.admin_enrolled_subject, &t.admin_enrolled_body),
            MailKind::NewDevice => (&t.new_device_subject, &t.new_device_body),
            MailKind::PasswordReset => (&t.password_reset_subject, &t.password_reset_body),
            MailKind::PasswordResetDone => (&t.password_reset_done_subject, &t.password_reset_done_body),
        };
        // Subjects are one line: drop any newline a variable could smuggle in.
        let subject = template::render(subject, &vars, template::plain).replace(['\r', '\n'], " ");
        let body = template::render(body, &vars, template::plain);
        // Body and attachments (token, deep link, QR code) are encrypted at rest.
        let attachments = serde_json::to_string(&attachments).map_err(|e| CoreError::Internal(e.to_string()))?;
        self.store()
            .enqueue_mail(&NewOutbox {
                kind: kind.as_str().to_owned(),
                to_addr: to.to_owned(),
                subject,
                body: self.key().seal(BODY, &body),
                attachments: self.key().seal(ATTACHMENTS, &attachments),
                created_at: self.now(),
                token_id,
            })
            .await?;
        metrics::counter!("onramp_mail_queued_total", "kind" => kind.as_str()).increment(1);
        self.inner.mail_wakeup.notify_one();
        Ok(())
    }

    /// After a user completes enrollment: the welcome e-mail (when enabled) and the
    /// notification to the admin who issued their token (when enabled).
    pub async fn send_enrollment_completed_mails(&self, username: &str, issuer_id: Option<i64>) -> CoreResult<()> {
        let s = self.settings().await;
        if !s.smtp.is_configured() {
            return Ok(());
        }
        let user = self.user_row(username).await?;
        let admin = match issuer_id {
            Some(id) => self.store().user_by_id(id).await.ok(),
            None => None,
        };
        if s.enrollment.send_welcome_email {
            self.enqueue_mail(MailKind::Welcome, &user.email, &user, admin.as_ref(), None).await?;
        }
        if let (true, Some(a)) = (s.enrollment.notify_admin_on_completion, &admin) {
            self.enqueue_mail(MailKind::AdminEnrolled, &a.email, &user, Some(a), None).await?;
        }
        Ok(())
    }

    /// The outbox, newest first; `status` one of pending, retrying, sent, failed, cancelled.
    pub async fn list_mail(&self, status: Option<&str>, limit: i64) -> CoreResult<Vec<OutboxEntry>> {
        if let Some(s) = status {
            if MailStatus::parse(s).is_none() {
                return Err(CoreError::invalid("status", "must be pending, retrying, sent, failed or cancelled"));
            }
        }
        let max = self.config().mail_max_attempts;
        let rows = self.store().list_mail(status, limit.clamp(1, 1000)).await?;
        Ok(rows.into_iter().map(|r| OutboxEntry::from_row(r, max)).collect())
    }

    /// Makes a failed or retrying message due now (a failed one gets one more attempt). A
    /// message whose body was erased when it failed (its token must not linger) cannot be
    /// re-sent.
    pub async fn retry_mail(&self, actor: &crate::Actor, id: i64) -> CoreResult<()> {
        self.store().retry_mail(id, self.now()).await.map_err(|e| match e {
            onramp_store::StoreError::NotFound => CoreError::not_found("failed or retrying message", id),
            onramp_store::StoreError::MailErased => CoreError::Conflict {
                field: "id",
                message: format!(
                    "message {id} was erased when it failed (it may have held a token); issue a new token or send it again"
                ),
            },
            other => other.into(),
        })?;
        self.audit(actor, "mail.retried", None, serde_json::json!({"id": id})).await;
        self.inner.mail_wakeup.notify_one();
        Ok(())
    }

    /// Sends a test message to `to` now, bypassing the outbox, with the stored SMTP settings,
    /// and returns what the server answered (also when it refused).
    pub async fn send_test_mail(&self, actor: &crate::Actor, to: &str) -> CoreResult<MailTestOutcome> {
        let to = onramp_domain::validate::Email::parse("to", to)?.into_inner();
        let settings = self.settings().await;
        if !settings.smtp.is_configured() {
            return Err(CoreError::refused("smtp_not_configured", "SMTP is not configured (settings smtp.host)"));
        }
        let s = &settings.smtp;
        let server = format!("{}:{}", s.host, s.port);
        let subject = format!("{} test message", settings.instance_name);
        let body = format!(
            "This is a test message from {} ({}), sent by {}.\nIf you can read it, mail delivery works.\n",
            settings.instance_name,
            self.public_url().await,
            actor.name
        );
        let outcome = match smtp::transport(s) {
            Ok(t) => smtp::send_plain(&t, s, &to, &subject, &body).await,
            Err(e) => Err(smtp::Refusal { code: None, message: e }),
        };
        let outcome = match outcome {
            Ok((code, reply)) => MailTestOutcome { delivered: true, server, code: Some(code), reply },
            Err(r) => MailTestOutcome { delivered: false, server, code: r.code, reply: r.message },
        };
        self.audit(
            actor,
            "mail.test_sent",
            None,
            serde_json::json!({"to": to, "delivered": outcome.delivered, "code": outcome.code}),
        )
        .await;
        Ok(outcome)
    }

    /// Delivers due messages until the task is dropped. Wakes on new mail, on the next
    /// retry time, and at least every `poll` (other processes may queue mail too).
    pub async fn run_mail_worker(self, poll: Duration) {
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(error = %e, "mail delivery round failed");
            }
            let wait = match self.store().next_mail_attempt().await {
                Ok(Some(t)) => Duration::from_secs((t - self.now()).clamp(0, 3600) as u64).min(poll),
                _ => poll,
            };
            tokio::select! {
                _ = self.inner.mail_wakeup.notified() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(100))) => {}
            }
        }
    }

    /// One delivery round; returns how many messages were sent.
    pub async fn deliver_due(&self) -> CoreResult<usize> {
        let settings = self.settings().await;
        if !settings.smtp.is_configured() {
            return Ok(0);
        }
        // Claimed for long enough to try every message of the batch with the SMTP timeout.
        const BATCH: i64 = 10;
        let lease = (settings.smtp.timeout_secs.max(1) as i64).saturating_mul(BATCH + 1).max(60);
        let now = self.now();
        let due = self.store().claim_due_mail(now, now + lease, BATCH).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let transport = smtp::transport(&settings.smtp).map_err(CoreError::Internal)?;
        let mut sent = 0;
        for mut m in due {
            // Checked at send time: the token may have been revoked or replaced while the
            // message waited (e.g. for an SMTP outage to end).
            if let Some(id) = m.token_id {
                let token = match self.store().token_by_id(id).await {
                    Ok(t) => Some(t),
                    Err(onramp_store::StoreError::NotFound) => None,
                    Err(e) => return Err(e.into()),
                };
                if let Some(reason) = dead_token_reason(token.as_ref(), self.now()) {
                    self.store().cancel_mail(m.id, reason).await?;
                    metrics::counter!("onramp_mail_cancelled_total").increment(1);
                    tracing::info!(id = m.id, kind = %m.kind, reason, "mail cancelled");
                    continue;
                }
            }
            let opened = self.key().open(BODY, &m.body).and_then(|body| {
                m.body = body;
                m.attachments = self.key().open(ATTACHMENTS, &m.attachments)?;
                Ok(())
            });
            let result = match opened {
                Ok(()) => smtp::send(&transport, &settings.smtp, &m).await,
                Err(e) => {
                    tracing::error!(id = m.id, error = %e, "cannot decrypt a queued message");
                    Err(e)
                }
            };
            match result {
                Ok(()) => {
                    self.store().mark_mail_sent(m.id, self.now()).await?;
                    metrics::counter!("onramp_mail_sent_total").increment(1);
                    tracing::info!(id = m.id, kind = %m.kind, "mail delivered");
                    sent += 1;
                }
                Err(err) => {
                    let attempts = m.attempts + 1;
                    let next = (attempts < self.config().mail_max_attempts).then(|| {
                        let backoff =
                            self.config().mail_retry_base_secs.max(1).saturating_mul(1 << (attempts - 1).min(20));
                        self.now() + backoff.min(3600)
                    });
                    tracing::warn!(id = m.id, attempts, error = %err, will_retry = next.is_some(), "mail delivery failed");
                    metrics::counter!("onramp_mail_failures_total").increment(1);
                    // A message that finally failed loses its body if it holds a token.
                    let erase = MailKind::carries_token(&m.kind);
                    self.store().mark_mail_attempt_failed(m.id, &err, next, erase).await?;
                }
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wizard_link_carries_the_token_for_phones() {
        assert_eq!(wizard_link("https://edge.example.com/", "Ab1"), "https://edge.example.com/?token=Ab1");
        assert_eq!(wizard_link("https://e.example.com/vpn/", "x"), "https://e.example.com/vpn/?token=x");
    }

    #[test]
    fn a_dead_token_cancels_its_message_with_the_reason() {
        let live = onramp_store::TokenRow {
            id: 1,
            kind: "enrollment".into(),
            user_id: Some(1),
            issued_by: None,
            email: None,
            created_at: 0,
            expires_at: 100,
            session_deadline: None,
            used_at: None,
            revoked_at: None,
            device_id: None,
        };
        assert_eq!(dead_token_reason(Some(&live), 50), None);
        let revoked = onramp_store::TokenRow { revoked_at: Some(10), ..live.clone() };
        assert!(dead_token_reason(Some(&revoked), 50).unwrap().contains("revoked or replaced"));
        let used = onramp_store::TokenRow { used_at: Some(10), ..live.clone() };
        assert!(dead_token_reason(Some(&used), 50).unwrap().contains("used"));
        assert!(dead_token_reason(Some(&live), 100).unwrap().contains("expired"));
        assert!(dead_token_reason(None, 50).unwrap().contains("no longer exists"));
        assert_eq!(MailStatus::parse("retrying"), Some(MailStatus::Retrying));
        assert_eq!(MailStatus::parse("bogus"), None);
    }
}
