//! SMTP delivery through lettre: plain, STARTTLS or implicit TLS; authentication optional.

use super::Attachment;
use crate::settings::{SmtpSecurity, SmtpSettings};
use lettre::message::{header::ContentType, Attachment as LAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use onramp_store::OutboxRow;
use std::time::Duration;

pub(super) type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// The CA certificates of `path` (a PEM bundle), with an error that says what is wrong.
pub(crate) fn read_ca(path: &str) -> Result<Certificate, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // An empty bundle parses fine but trusts nothing: say so instead.
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Certificate::from_pem(&pem).map_err(|e| format!("{path}: {e}"))
}

fn tls_parameters(s: &SmtpSettings) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(s.host.clone());
    if let Some(ca) = &s.ca_file {
        b = b.add_root_certificate(read_ca(ca).map_err(|e| format!("SMTP ca_file: {e}"))?);
    }
    b.build_rustls().map_err(|e| format!("SMTP TLS setup: {e}"))
}

pub(super) fn transport(s: &SmtpSettings) -> Result<Transport, String> {
    let builder = match s.security {
        SmtpSecurity::None => Transport::builder_dangerous(&s.host),
        // STARTTLS is required, never opportunistic: credentials and tokens must not go in clear.
        SmtpSecurity::Starttls => Transport::builder_dangerous(&s.host).tls(Tls::Required(tls_parameters(s)?)),
        SmtpSecurity::Tls => Transport::builder_dangerous(&s.host).tls(Tls::Wrapper(tls_parameters(s)?)),
    };
    let mut builder = builder.port(s.port).timeout(Some(Duration::from_secs(s.timeout_secs.max(1))));
    if let (Some(user), Some(pass)) = (&s.username, &s.password) {
        builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
    }
    Ok(builder.build())
}

pub(super) async fn send(t: &Transport, s: &SmtpSettings, m: &OutboxRow) -> Result<(), String> {
    let from: Mailbox = s.sender.parse().map_err(|e| format!("sender {:?}: {e}", s.sender))?;
    let to: Mailbox = m.to_addr.parse().map_err(|e| format!("recipient {:?}: {e}", m.to_addr))?;
    let attachments: Vec<Attachment> =
        serde_json::from_str(&m.attachments).map_err(|e| format!("stored attachments: {e}"))?;
    let builder = Message::builder().from(from).to(to).subject(m.subject.clone());
    let message = if attachments.is_empty() {
        builder.header(ContentType::TEXT_PLAIN).body(m.body.clone())
    } else {
        let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(m.body.clone()));
        for a in attachments {
            let data = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &a.data)
                .map_err(|e| e.to_string())?;
            let ct = ContentType::parse(&a.content_type).map_err(|e| e.to_string())?;
            parts = parts.singlepart(LAttachment::new(a.filename).body(data, ct));
        }
        builder.multipart(parts)
    }
    .map_err(|e| format!("building message: {e}"))?;
    t.send(message).await.map(|_| ()).map_err(|e| format!("SMTP {}:{}: {e}", s.host, s.port))
}

/// An SMTP failure: the server's reply code when it answered with one, and the message.
#[derive(Debug)]
pub(super) struct Refusal {
    pub code: Option<u16>,
    pub message: String,
}

/// Sends one plain-text message and returns the server's final reply (code, text).
pub(super) async fn send_plain(
    t: &Transport,
    s: &SmtpSettings,
    to: &str,
    subject: &str,
    body: &str,
) -> Result<(u16, String), Refusal> {
    let refusal = |message: String| Refusal { code: None, message };
    let from: Mailbox = s.sender.parse().map_err(|e| refusal(format!("sender {:?}: {e}", s.sender)))?;
    let to: Mailbox = to.parse().map_err(|e| refusal(format!("recipient {to:?}: {e}")))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())
        .map_err(|e| refusal(format!("building message: {e}")))?;
    match t.send(message).await {
        Ok(r) => Ok((u16::from(r.code()), r.message().collect::<Vec<_>>().join(" "))),
        Err(e) => Err(Refusal { code: e.status().map(u16::from), message: onramp_proto::error_chain(&e) }),
    }
}
