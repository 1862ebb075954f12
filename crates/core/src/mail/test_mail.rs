//! A test message sent at once, outside the outbox, so an admin checking the SMTP settings
//! sees the server's answer (or its refusal) instead of waiting for a retry.

use super::smtp;
use crate::{Actor, Core, CoreError, CoreResult};
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncTransport, Message};
use onramp_domain::validate::Email;

impl Core {
    /// Sends a short test message to `to` over the configured SMTP server now and returns
    /// the server's answer (e.g. `250 2.0.0 Ok: queued as 1234`). Audited as `mail.test_sent`.
    pub async fn send_test_mail(&self, actor: &Actor, to: &str) -> CoreResult<String> {
        let to = Email::parse("to", to)?.into_inner();
        let s = self.settings().await;
        if !s.smtp.is_configured() {
            return Err(CoreError::refused(
                "smtp_not_configured",
                "cannot send a test message: SMTP is not configured (set smtp.host)",
            ));
        }
        let from: Mailbox = s
            .smtp
            .sender
            .parse()
            .map_err(|e| CoreError::invalid("smtp.sender", format!("{:?}: {e}", s.smtp.sender)))?;
        let rcpt: Mailbox = to.parse().map_err(|e| CoreError::invalid("to", format!("{to:?}: {e}")))?;
        let message = Message::builder()
            .from(from)
            .to(rcpt)
            .subject(format!("{} test message", s.instance_name))
            .header(ContentType::TEXT_PLAIN)
            .body(format!(
                "This is a test message from {} (Onramp {}): mail delivery works.\n",
                s.instance_name,
                env!("CARGO_PKG_VERSION")
            ))
            .map_err(|e| CoreError::Internal(format!("building the test message: {e}")))?;
        let transport = smtp::transport(&s.smtp).map_err(|e| CoreError::refused("smtp_failed", e))?;
        let result = transport.send(message).await;
        let answer = match &result {
            Ok(r) => Ok(format!("{} {}", r.code(), r.message().collect::<Vec<_>>().join(" ")).trim().to_owned()),
            Err(e) => Err(format!("SMTP {}:{}: {e}", s.smtp.host, s.smtp.port)),
        };
        let detail = match &answer {
            Ok(a) => serde_json::json!({"to": to, "answer": a}),
            Err(e) => serde_json::json!({"to": to, "error": e}),
        };
        self.audit(actor, "mail.test_sent", None, detail).await;
        answer.map_err(|e| CoreError::refused("smtp_failed", e))
    }
}
