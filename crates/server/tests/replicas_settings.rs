//! Settings changed through one core reach every other core on the same database within
//! a few seconds, without a restart (issue 10, item 7).

mod common;
use common::*;
use onramp_testkit::smtp::SmtpSink;
use std::time::{Duration, Instant};

on_both_backends!(a_settings_change_reaches_the_other_core);

/// Polls `core`'s settings API until `pred` holds, failing after a generous deadline.
async fn until_seen(app: &TestApp, what: &str, pred: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = app.call("GET", "/api/v1/settings", None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if pred(&v) {
            return;
        }
        assert!(Instant::now() < deadline, "the other core never saw the new {what}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_settings_change_reaches_the_other_core(b: Backend) {
    let sink = SmtpSink::start().await;
    // Neither core overrides the public URL from its own configuration.
    let a = TestApp::builder(b).config(|c| c.public_url = None).spawn().await;
    let other = TestApp::builder(b).database_url(&a.database_url).config(|c| c.public_url = None).spawn().await;
    // Both have read the settings (and cached them) before the change.
    let (_, before) = other.call("GET", "/api/v1/settings", None).await;
    assert_eq!(before["smtp"]["host"], "");

    let patch = json!({
        "public_url": "https://vpn.example.org/",
        "smtp": {"host": "127.0.0.1", "port": sink.port(), "security": "none", "sender": "vpn@example.com"},
        "templates": {"invitation_subject": "Replica-made subject for {{ first_name }}"}
    });
    let (s, v) = a.call("PATCH", "/api/v1/settings", Some(patch)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Only the other core may send from now on: the change must work there.
    let dir = a.stop_keep_db().await;

    until_seen(&other, "SMTP relay", |v| v["smtp"]["port"] == sink.port()).await;
    until_seen(&other, "public URL", |v| v["public_url"] == "https://vpn.example.org/").await;
    other.create_user("ann").await;
    let (s, t) = other
        .call(
            "POST",
            "/api/v1/user/ann/start_enrollment",
            Some(json!({"send_enrollment_notification": true, "email": "ann@example.com"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["enrollment_url"], "https://vpn.example.org/", "{t}");
    let mail = sink.wait_for(1, Duration::from_secs(30)).await.remove(0);
    assert_eq!(mail.subject, "Replica-made subject for First");
    assert!(mail.text.contains("https://vpn.example.org/"), "{}", mail.text);

    // A later change made by this core is not undone by the stale copy of a third one.
    let third = TestApp::builder(b).database_url(&other.database_url).config(|c| c.public_url = None).spawn().await;
    let (s, _) = other.call("PATCH", "/api/v1/settings", Some(json!({"instance_name": "Renamed"}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = third.call("PATCH", "/api/v1/settings", Some(json!({"enrollment": {"mfa_required": true}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["instance_name"], "Renamed", "{v}");
    until_seen(&other, "enrollment setting", |v| v["enrollment"]["mfa_required"] == true).await;
    third.stop().await;
    other.stop().await;
    drop(dir);
}
