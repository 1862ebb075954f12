//! Mail through a real SMTP server process (aiosmtpd): content, outage, restart, failures.

mod common;
use common::*;
use onramp_testkit::smtp::{SinkTls, SmtpSink};
use std::time::Duration;

async fn configure_smtp(app: &TestApp, sink: &SmtpSink) {
    let smtp =
        json!({"smtp": {"host": "127.0.0.1", "port": sink.port(), "security": "none", "sender": "vpn@example.com"}});
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(smtp)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Creates `user` and issues an enrollment token mailed to `email`; returns the token.
async fn invite(app: &TestApp, user: &str, email: &str) -> String {
    app.create_user(user).await;
    let (s, t) = app
        .call(
            "POST",
            &format!("/api/v1/user/{user}/start_enrollment"),
            Some(json!({"send_enrollment_notification": true, "email": email})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    t["enrollment_token"].as_str().unwrap().to_owned()
}

async fn wait_status(app: &TestApp, status: &str, n: usize) -> Value {
    for _ in 0..200 {
        let (_, v) = app.call("GET", &format!("/api/v1/mail?status={status}"), None).await;
        if v.as_array().is_some_and(|a| a.len() >= n) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {n} message(s) with status {status}");
}

on_both_backends!(
    invitation_and_desktop_mail,
    outbox_survives_outage_and_restart,
    failed_messages_are_visible_and_retryable,
    two_cores_send_each_message_once,
    retrying_message_shows_its_attempts_and_retry_sends_it_now,
    invitation_with_a_replaced_token_is_cancelled,
    mail_test_returns_the_servers_answer
);

/// A message that keeps failing is `retrying`, with attempt n of max, the last error and the
/// next try; `retry` makes it due now.
async fn retrying_message_shows_its_attempts_and_retry_sends_it_now(b: Backend) {
    let mut sink = SmtpSink::start().await;
    // A long backoff: the next automatic try is far away, so only `retry` can send it soon.
    let app = TestApp::builder(b).config(|c| c.mail_retry_base_secs = 3000).spawn().await;
    configure_smtp(&app, &sink).await;
    sink.stop().await;
    invite(&app, "ann", "ann@example.com").await;
    let v = wait_status(&app, "retrying", 1).await;
    let m = &v[0];
    assert_eq!(
        (m["status"].as_str(), m["attempts"].as_i64(), m["max_attempts"].as_i64()),
        (Some("retrying"), Some(1), Some(10)),
        "{m}"
    );
    assert!(m["last_error"].as_str().is_some_and(|e| e.contains(&format!("127.0.0.1:{}", sink.port()))), "{m}");
    let next = m["next_attempt_at"].as_i64().unwrap();
    assert!(next >= app.core.now() + 2900, "next try about 50 minutes ahead: {m}");
    let (_, pending) = app.call("GET", "/api/v1/mail?status=pending", None).await;
    assert_eq!(pending, json!([]), "a message that failed is not shown as pending");
    let (_, failed) = app.call("GET", "/api/v1/mail?status=failed", None).await;
    assert_eq!(failed, json!([]));

    sink.restart().await;
    let id = m["id"].as_i64().unwrap();
    let (s, v) = app.call("POST", &format!("/api/v1/mail/{id}/retry"), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let mail = sink.wait_for(1, Duration::from_secs(20)).await.remove(0);
    assert_eq!(mail.to, ["ann@example.com"]);
    let sent = wait_status(&app, "sent", 1).await;
    assert_eq!((sent[0]["attempts"].as_i64(), sent[0]["next_attempt_at"].clone()), (Some(2), Value::Null), "{sent}");
    let (_, ev) = app.call("GET", "/api/v1/audit?action=mail.retried", None).await;
    assert_eq!(ev[0]["details"]["id"], id);
    app.stop().await;
}

/// An invitation whose token was replaced before the relay came back is cancelled, with
/// the reason, and never delivered; the new one is.
async fn invitation_with_a_replaced_token_is_cancelled(b: Backend) {
    let mut sink = SmtpSink::start().await;
    let app = TestApp::spawn(b).await;
    configure_smtp(&app, &sink).await;
    sink.stop().await;
    let old = invite(&app, "ann", "ann@example.com").await;
    wait_status(&app, "retrying", 1).await;
    // A new token (here: mailed too) revokes the first; so does an explicit revocation.
    let (s, t) = app
        .call(
            "POST",
            "/api/v1/user/ann/start_enrollment",
            Some(json!({"send_enrollment_notification": true, "email": "ann@example.com"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let new = t["enrollment_token"].as_str().unwrap().to_owned();
    invite(&app, "bob", "bob@example.com").await;
    let (s, _) = app.call("DELETE", "/api/v1/user/bob/tokens", None).await;
    assert!(s.is_success());
    sink.restart().await;
    let cancelled = wait_status(&app, "cancelled", 2).await;
    for m in cancelled.as_array().unwrap() {
        assert!(m["last_error"].as_str().unwrap().contains("revoked or replaced"), "{m}");
        assert_eq!(m["next_attempt_at"], Value::Null);
    }
    let mut to: Vec<&str> = cancelled.as_array().unwrap().iter().map(|m| m["to"].as_str().unwrap()).collect();
    to.sort();
    assert_eq!(to, ["ann@example.com", "bob@example.com"]);
    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = if got.len() < sink.messages().len() { sink.messages() } else { got };
    assert_eq!(got.len(), 1, "only the live invitation is delivered: {got:?}");
    assert!(got[0].text.contains(&new) && !got[0].text.contains(&old));
    // The cancelled bodies (they held the dead tokens) are erased.
    let rows = app.core.store().list_mail(Some("cancelled"), 10).await.unwrap();
    assert!(rows.iter().all(|r| r.body.is_empty() && r.attachments == "[]"));
    app.stop().await;
}

/// `POST /api/v1/mail/test` sends at once and returns the SMTP server's answer: its
/// acceptance, a refusal with its code, or the connection error.
async fn mail_test_returns_the_servers_answer(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (s, v) = app.call("POST", "/api/v1/mail/test", Some(json!({"to": "ann@example.com"}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "smtp_not_configured");

    let mut sink = SmtpSink::start().await;
    configure_smtp(&app, &sink).await;
    let (s, v) = app.call("POST", "/api/v1/mail/test", Some(json!({"to": "ann@example.com"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["delivered"].as_bool(), v["code"].as_i64()), (Some(true), Some(250)), "{v}");
    assert_eq!(v["reply"], "OK stored", "the sink's own reply text: {v}");
    assert_eq!(v["server"], format!("127.0.0.1:{}", sink.port()));
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        (got[0].to.as_slice(), got[0].subject.as_str()),
        (&["ann@example.com".to_owned()][..], "Onramp test message")
    );
    let (s, v) = app.call("POST", "/api/v1/mail/test", Some(json!({"to": "not an address"}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");

    // A relay that requires a login refuses us: its code and text come back.
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = localhost_pki(dir.path());
    let login = Some(("onramp".to_owned(), "pw".to_owned()));
    let strict = SmtpSink::start_tls(SinkTls { implicit: false, cert_file: cert, key_file: key, login }).await;
    let smtp =
        json!({"smtp": {"host": "127.0.0.1", "port": strict.port(), "security": "none", "sender": "vpn@example.com"}});
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(smtp)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = app.call("POST", "/api/v1/mail/test", Some(json!({"to": "ann@example.com"}))).await;
    assert_eq!(v["delivered"], false, "{v}");
    assert!(v["code"].as_i64().is_some_and(|c| (500..600).contains(&c)), "a permanent SMTP refusal: {v}");
    assert!(!v["reply"].as_str().unwrap().is_empty(), "{v}");

    // Nobody listening: no code, the connection error.
    sink.stop().await;
    configure_smtp(&app, &sink).await;
    let (_, v) = app.call("POST", "/api/v1/mail/test", Some(json!({"to": "ann@example.com"}))).await;
    assert_eq!((v["delivered"].as_bool(), v["code"].clone()), (Some(false), Value::Null), "{v}");
    assert!(v["reply"].as_str().unwrap().to_lowercase().contains("connect"), "{v}");
    let (_, ev) = app.call("GET", "/api/v1/audit?action=mail.test_sent", None).await;
    assert_eq!(ev.as_array().unwrap().len(), 3, "{ev}");
    app.stop().await;
}

/// PATCH with an `smtp` object replaces the stored one: a login saved for one relay does
/// not survive a switch to a relay without authentication; `null` clears a field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_object_replaces_the_stored_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let login = json!({"smtp": {"host": "mx.example.com", "port": 587, "username": "u", "password": "old-secret",
                                "sender": "vpn@example.com", "timeout_secs": 30}});
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(login)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["smtp"]["password_set"], true);
    let relay = json!({"smtp": {"host": "relay.example.com", "port": 25, "security": "none", "sender": "vpn@example.com",
                                "ca_file": null}});
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(relay)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["smtp"]["username"].clone(), v["smtp"]["password_set"].clone()), (Value::Null, json!(false)), "{v}");
    assert_eq!(v["smtp"]["timeout_secs"], 15, "left out: the default again");
    let smtp = app.core.settings().await.smtp;
    assert_eq!((smtp.username, smtp.password), (None, None));
    // The audit entry says what changed, the password only as "changed".
    let (_, ev) = app.call("GET", "/api/v1/audit?action=settings.updated", None).await;
    let d = &ev[0]["details"];
    assert_eq!(d["smtp.host"], json!(["mx.example.com", "relay.example.com"]), "{d}");
    assert_eq!(d["smtp.username"], json!(["u", null]), "{d}");
    assert_eq!(d["smtp.password"], "changed", "{d}");
    assert!(!ev.to_string().contains("old-secret"), "{ev}");
    app.stop().await;
}

/// Two cores on one database both run the outbox worker: every message is delivered once.
async fn two_cores_send_each_message_once(b: Backend) {
    let mut sink = SmtpSink::start().await;
    let a = TestApp::spawn(b).await;
    configure_smtp(&a, &sink).await;
    sink.stop().await;
    let second = TestApp::builder(b).database_url(&a.database_url).spawn().await;
    let users: Vec<String> = (0..24).map(|i| format!("user{i}")).collect();
    for u in &users {
        invite(&a, u, &format!("{u}@example.com")).await;
    }
    // Both workers see every message due at once when the relay comes back.
    sink.restart().await;
    sink.wait_for(users.len(), Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = sink.messages();
    let mut to: Vec<String> = got.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!((got.len(), to.len()), (users.len(), users.len()), "each message delivered exactly once");
    second.stop().await;
    a.stop().await;
}

async fn invitation_and_desktop_mail(b: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn(b).await;
    configure_smtp(&app, &sink).await;
    app.call(
        "PUT",
        "/api/v1/user/admin",
        Some(json!({"first_name": "Ada", "last_name": "Admin", "phone": "+1 555 0100"})),
    )
    .await;
    let token = &invite(&app, "ann", "ann.private@example.org").await;
    let mail = sink.wait_for(1, Duration::from_secs(20)).await.remove(0);
    assert_eq!(mail.to, ["ann.private@example.org"]);
    assert_eq!(mail.from, "vpn@example.com");
    assert_eq!(mail.subject, "Set up your VPN access to Onramp");
    for needle in [
        "Hello First",
        "https://edge.example.com/",
        token,
        &format!("onramp://enroll?url=https%3A%2F%2Fedge.example.com%2F&token={token}"),
        // Phones open the browser wizard (the QR code holds the same URL).
        "On a phone, scan the attached QR code or open:",
        &format!("  https://edge.example.com/?token={token}"),
        "valid for 24 hours",
        "10 minutes",
        "Ada Admin <admin@example.com> +1 555 0100",
    ] {
        assert!(mail.text.contains(needle), "{needle:?} missing from:\n{}", mail.text);
    }
    let (name, ct, png) = &mail.attachments[0];
    assert_eq!((name.as_str(), ct.as_str()), ("enrollment-qr.png", "image/png"));
    assert_eq!(&png[1..4], b"PNG");
    // Delivered messages keep their envelope but not the body (it held the token).
    let sent = wait_status(&app, "sent", 1).await;
    assert_eq!(sent[0]["kind"], "invitation");
    let rows = app.core.store().list_mail(Some("sent"), 10).await.unwrap();
    assert!(rows[0].body.is_empty() && !rows[0].attachments.contains("PNG"));

    // Edited templates apply; desktop configuration mail.
    let (s, v) = app
        .call(
            "PATCH",
            "/api/v1/settings",
            Some(json!({"instance_name": "ACME", "templates": {"desktop_subject": "{{ instance_name }} desktop for {{ username }}"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.create_location("office", "10.1.0.1/24").await;
    let (s, v) = app
        .call(
            "POST",
            "/api/v1/user/ann/start_desktop",
            Some(json!({"send_enrollment_notification": true, "email": "ann@example.com"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mail = sink.wait_for(2, Duration::from_secs(20)).await.remove(1);
    assert_eq!(mail.subject, "ACME desktop for ann");
    assert!(mail.text.contains(v["enrollment_token"].as_str().unwrap()));

    // New device, welcome and admin notification.
    app.call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "laptop", "pubkey": pubkey(1)}))).await;
    let admin_id = app.core.get_user("admin").await.unwrap().id;
    app.core.send_enrollment_completed_mails("ann", Some(admin_id)).await.unwrap();
    let all = sink.wait_for(5, Duration::from_secs(20)).await;
    let by_subject = |s: &str| all.iter().find(|m| m.subject == s).unwrap_or_else(|| panic!("no mail {s:?}"));
    let device = by_subject("New device added to your ACME account");
    assert_eq!(device.to, ["ann@example.com"]);
    assert!(device.text.contains("\"laptop\""));
    assert_eq!(by_subject("Welcome to ACME").to, ["ann@example.com"]);
    assert_eq!(by_subject("First Last completed enrollment").to, ["admin@example.com"]);
    app.stop().await;
}

/// A message queued while SMTP is down survives the outage and a restart of core.
async fn outbox_survives_outage_and_restart(b: Backend) {
    let mut sink = SmtpSink::start().await;
    let app = TestApp::spawn(b).await;
    configure_smtp(&app, &sink).await;
    sink.stop().await;
    invite(&app, "ann", "ann@example.com").await;
    // Wait for a failed attempt to be recorded.
    let mut pending = Value::Null;
    for _ in 0..100 {
        let (_, v) = app.call("GET", "/api/v1/mail?status=retrying", None).await;
        if v[0]["attempts"].as_i64().unwrap_or(0) >= 1 {
            pending = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pending[0]["last_error"].as_str().is_some_and(|e| e.contains("127.0.0.1")), "{pending}");
    let url = app.database_url.clone();
    let _keep = app.stop_keep_db().await;
    sink.restart().await;
    let app = TestApp::builder(b).database_url(&url).spawn().await;
    let mail = sink.wait_for(1, Duration::from_secs(30)).await.remove(0);
    assert_eq!(mail.to, ["ann@example.com"]);
    let sent = wait_status(&app, "sent", 1).await;
    assert!(sent[0]["attempts"].as_i64().unwrap() >= 2, "{sent}");
    app.stop().await;
}

/// After the last attempt a message is marked failed; the admin sees it and can retry,
/// except a message that held a token: its body was erased.
async fn failed_messages_are_visible_and_retryable(b: Backend) {
    let mut sink = SmtpSink::start().await;
    let app = TestApp::builder(b).config(|c| c.mail_max_attempts = 2).spawn().await;
    configure_smtp(&app, &sink).await;
    sink.stop().await;
    invite(&app, "ann", "ann@example.com").await;
    let failed = wait_status(&app, "failed", 1).await;
    assert_eq!(failed[0]["attempts"], 2);
    assert_eq!(failed[0]["to"], "ann@example.com");
    assert!(failed[0]["last_error"].as_str().unwrap().contains("SMTP"), "{failed}");
    let invitation = failed[0]["id"].as_i64().unwrap();
    // A device added by the admin: the owner's notice holds no token.
    let (s, v) = app
        .call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "laptop", "pubkey": pubkey(1)})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let failed = wait_status(&app, "failed", 2).await;
    sink.restart().await;
    let (s, v) = app.call("POST", &format!("/api/v1/mail/{invitation}/retry"), None).await;
    assert_eq!(error_code(s, &v, StatusCode::CONFLICT), "conflict");
    let id = failed.as_array().unwrap().iter().find(|m| m["kind"] == "new_device").unwrap()["id"].as_i64().unwrap();
    let (s, _) = app.call("POST", &format!("/api/v1/mail/{id}/retry"), None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    sink.wait_for(1, Duration::from_secs(20)).await;
    wait_status(&app, "sent", 1).await;
    let (s, v) = app.call("POST", &format!("/api/v1/mail/{id}/retry"), None).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    let (s, v) = app.call("GET", "/api/v1/mail?status=bogus", None).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    app.stop().await;
}

/// Password reset over the public edge: no account enumeration, a mailed token, a
/// session, the new password, and the confirmation mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_over_the_edge() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    configure_smtp(&app, &sink).await;
    app.call(
        "POST",
        "/api/v1/user",
        Some(json!({"username": "ann", "first_name": "Ann", "last_name": "L", "email": "ann@example.com", "password": "Str0ng!Pass"})),
    )
    .await;
    let post = |path: &str, body: Value, cookie: Option<String>| {
        let mut r = app.client.post(format!("{}{path}", app.edge_url)).json(&body);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    // Unknown and known addresses get the same answer; only the known one gets mail.
    let r = post("/api/v1/password-reset/request", json!({"email": "nobody@example.com"}), None).await.unwrap();
    assert_eq!((r.status(), r.text().await.unwrap()), (StatusCode::OK, String::new()));
    let r = post("/api/v1/password-reset/request", json!({"email": "ann@example.com"}), None).await.unwrap();
    assert_eq!((r.status(), r.text().await.unwrap()), (StatusCode::OK, String::new()));
    let mail = sink.wait_for(1, Duration::from_secs(20)).await.remove(0);
    assert_eq!((mail.to[0].as_str(), mail.subject.as_str()), ("ann@example.com", "Reset your Onramp password"));
    let token = mail.text.split("token=").nth(1).unwrap().chars().take(32).collect::<String>();
    assert!(onramp_domain::token::is_well_formed(&token), "{}", mail.text);
    // A reset token cannot start an enrollment.
    let r = post("/api/v1/enrollment/start", json!({"token": token}), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = post("/api/v1/password-reset/start", json!({"token": token}), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert!(r.json::<Value>().await.unwrap()["deadline_timestamp"].as_i64().unwrap() > app.core.now());
    let r = post("/api/v1/password-reset/reset", json!({"password": "short"}), Some(cookie.clone())).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r =
        post("/api/v1/password-reset/reset", json!({"password": "N3w!Password"}), Some(cookie.clone())).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = post("/api/v1/password-reset/reset", json!({"password": "An0ther!Pass"}), Some(cookie)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a reset token works once");
    let all = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(all[1].subject, "Your Onramp password was changed");
    // Both requests are audited (the unknown address too); one reset started and completed.
    for (action, n) in [("password_reset.requested", 2), ("password_reset.started", 1), ("password_reset.completed", 1)]
    {
        let (_, ev) = app.call("GET", &format!("/api/v1/audit?action={action}"), None).await;
        assert_eq!(ev.as_array().unwrap().len(), n, "{action}");
    }
    app.stop().await;
}

/// A test CA and a certificate for "localhost" it signed, as PEM files in `dir`.
fn localhost_pki(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Test mail CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().signed_by(&key, &issuer).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("smtp.pem"), dir.join("smtp.key"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// STARTTLS with a login and implicit TLS against a relay whose certificate a private CA
/// signed (`smtp.ca_file`); the welcome and admin mails come from a real activation over
/// the edge; without the CA the certificate is refused and the message says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_login_and_implicit_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = localhost_pki(dir.path());
    let login = Some(("onramp".to_owned(), "s3cret-pw".to_owned()));
    let starttls =
        SmtpSink::start_tls(SinkTls { implicit: false, cert_file: cert.clone(), key_file: key.clone(), login }).await;
    let app = TestApp::builder(Backend::Sqlite).config(|c| c.mail_max_attempts = 2).spawn().await;
    let smtp = |port: u16, security: &str, login: bool, ca: Option<&std::path::Path>| {
        // Authentication is optional: null clears a login saved before.
        let mut s = json!({"host": "localhost", "port": port, "security": security, "sender": "vpn@example.com",
                           "ca_file": ca.map(|p| p.display().to_string()), "username": null, "password": null});
        if login {
            s["username"] = json!("onramp");
            s["password"] = json!("s3cret-pw");
        }
        json!({ "smtp": s })
    };
    // A CA file that is not one is refused when saved.
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(smtp(25, "starttls", false, Some(&key)))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    assert!(v.to_string().contains("smtp.ca_file"), "{v}");
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(smtp(starttls.port(), "starttls", true, Some(&ca)))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["smtp"].get("password").is_none_or(Value::is_null), "the password is never returned: {v}");

    let token = invite(&app, "ann", "ann@example.com").await;
    let mail = starttls.wait_for(1, Duration::from_secs(20)).await.remove(0);
    assert_eq!(
        (mail.to.as_slice(), mail.subject.as_str()),
        (&["ann@example.com".to_owned()][..], "Set up your VPN access to Onramp")
    );
    assert!(mail.text.contains(&token));
    // The user enrolls over the edge; activation sends the welcome and the admin's notice.
    app.call("PATCH", "/api/v1/settings", Some(json!({"enrollment": {"send_welcome_email": true}}))).await;
    for (path, body) in
        [("start", json!({"token": token})), ("activate_user", json!({"token": token, "password": "Str0ng!Pass"}))]
    {
        let r = app.client.post(format!("{}/api/v1/enrollment/{path}", app.edge_url)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let all = starttls.wait_for(3, Duration::from_secs(20)).await;
    assert!(all.iter().any(|m| m.subject == "Welcome to Onramp" && m.to == ["ann@example.com"]), "{all:?}");
    assert!(
        all.iter().any(|m| m.subject == "First Last completed enrollment" && m.to == ["admin@example.com"]),
        "{all:?}"
    );

    // Implicit TLS (port 465 style), no login.
    let tls = SmtpSink::start_tls(SinkTls { implicit: true, cert_file: cert, key_file: key, login: None }).await;
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(smtp(tls.port(), "tls", false, Some(&ca)))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    invite(&app, "bob", "bob@example.com").await;
    let mail = tls.wait_for(1, Duration::from_secs(20)).await.remove(0);
    assert_eq!(mail.to, ["bob@example.com"]);

    // Without the private CA the relay's certificate is not trusted: nothing is sent in clear.
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(smtp(tls.port(), "tls", false, None))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    invite(&app, "cid", "cid@example.com").await;
    let failed = wait_status(&app, "failed", 1).await;
    assert_eq!(failed[0]["to"], "cid@example.com");
    assert!(failed[0]["last_error"].as_str().unwrap().to_lowercase().contains("certificate"), "{failed}");
    assert_eq!(tls.messages().len(), 1);
    app.stop().await;
}
