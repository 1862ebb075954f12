//! The admin web UI's settings and operations pages, driven in headless Chromium against a
//! real server: enrollment settings (round trip, validation, the welcome-mail switch seen at
//! a real SMTP sink after real enrollments, the live Markdown preview), SMTP settings and
//! the test message, API tokens, the audit log and the mail outbox.

mod common;
use common::*;
mod chrome;
mod web;
use web::*;

use chrome::start_chromedriver;
use fantoccini::{Client, Locator};
use onramp_testkit::smtp::SmtpSink;
use std::time::Duration;

async fn value(c: &Client, css: &str) -> String {
    wait_for(c, css).await.prop("value").await.unwrap().unwrap_or_default()
}

async fn checked(c: &Client, css: &str) -> bool {
    wait_for(c, css).await.is_selected().await.unwrap()
}

async fn set_checked(c: &Client, css: &str, on: bool) {
    if checked(c, css).await != on {
        click(c, css).await;
    }
    assert_eq!(checked(c, css).await, on, "{css}");
}

async fn configure_smtp(app: &TestApp, sink: &SmtpSink) {
    let smtp =
        json!({"smtp": {"host": "127.0.0.1", "port": sink.port(), "security": "none", "sender": "vpn@example.com"}});
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(smtp)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Creates `user`, issues a token (not mailed) and completes the enrollment over the
/// public edge API as the wizard does; returns the `final_page_content` the user saw.
async fn enroll_over_edge(app: &TestApp, user: &str) -> String {
    app.create_user(user).await;
    let (s, t) = app.call("POST", &format!("/api/v1/user/{user}/start_enrollment"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let token = t["enrollment_token"].as_str().unwrap().to_owned();
    let post = |path: &str, body: Value| {
        app.client.post(format!("{}/api/v1/enrollment/{path}", app.edge_url)).json(&body).send()
    };
    let r = post("start", json!({"token": token})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let start: Value = r.json().await.unwrap();
    let r = post("activate_user", json!({"token": token, "password": "Str0ng!Pass"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    start["final_page_content"].as_str().unwrap().to_owned()
}

async fn save_enrollment_settings(c: &Client) {
    click(c, "#save-enrollment").await;
    let notice = text(c, "p.notice").await;
    assert_eq!(notice, "Changes saved.");
}

/// Enrollment settings: values survive a save and a reload (and reach core), bad input is
/// refused next to its field with the typed text kept, and the switches decide what a real
/// enrollment shows and mails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_settings_round_trip_and_the_welcome_mail_switch() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    admin_password(&app).await;
    let sink = SmtpSink::start().await;
    configure_smtp(&app, &sink).await;
    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "admin", ADMIN_PASSWORD).await;

    c.goto(&app.url("/settings/enrollment")).await.unwrap();
    assert_eq!(text(&c, "main h1").await, "Enrollment settings");
    // Lifetimes read as people write them.
    assert_eq!(value(&c, "#f-token_lifetime").await, "24h");
    assert_eq!(value(&c, "#f-desktop_token_lifetime").await, "24h");
    assert_eq!(value(&c, "#f-session_lifetime").await, "10m");
    assert!(checked(&c, "#f-send_welcome_email").await, "welcome e-mails are on by default");
    assert!(checked(&c, "#f-show_welcome_message").await);
    // In a closed disclosure: read its text content.
    let vars = wait_for(&c, "#template-variables").await.prop("textContent").await.unwrap().unwrap_or_default();
    assert!(vars.contains("{{ first_name }}") && vars.contains("{{ admin_email }}"), "{vars}");

    // A bad lifetime: refused at its field; everything typed stays.
    fill(&c, "#f-welcome_message", "# Hello {{ first_name }}\n\nRead **the guide**.").await;
    fill(&c, "#f-welcome_email_subject", "Hi {{ first_name }}, welcome aboard").await;
    fill(&c, "#f-token_lifetime", "forever").await;
    click(&c, "#save-enrollment").await;
    let err = text(&c, "#f-token_lifetime-error").await;
    assert!(err.contains("invalid duration"), "{err}");
    assert_eq!(value(&c, "#f-token_lifetime").await, "forever");
    assert_eq!(value(&c, "#f-welcome_message").await, "# Hello {{ first_name }}\n\nRead **the guide**.");
    assert_eq!(value(&c, "#f-welcome_email_subject").await, "Hi {{ first_name }}, welcome aboard");
    assert_eq!(app.core.settings().await.enrollment.token_lifetime_secs, 86_400, "nothing saved");
    // An unknown template variable: core's message, at the field.
    fill(&c, "#f-token_lifetime", "3d").await;
    fill(&c, "#f-welcome_email_subject", "Hi {{ nickname }}").await;
    click(&c, "#save-enrollment").await;
    let err = text(&c, "#f-welcome_email_subject-error").await;
    assert!(err.contains("unknown template variable") && err.contains("nickname"), "{err}");
    // A half-filled contact.
    fill(&c, "#f-welcome_email_subject", "Hi {{ first_name }}, welcome aboard").await;
    fill(&c, "#f-contact_name", "IT Service Desk").await;
    click(&c, "#save-enrollment").await;
    assert!(text(&c, "#f-contact_email-error").await.contains("admin_contact.email"));

    // Valid: saved, and the switch for the welcome e-mail off.
    fill(&c, "#f-contact_email", "desk@example.com").await;
    fill(&c, "#f-contact_phone", "+1 555 0199").await;
    fill(&c, "#f-session_lifetime", "15m").await;
    set_checked(&c, "#f-send_welcome_email", false).await;
    set_checked(&c, "#f-vpn_setup_optional", true).await;
    save_enrollment_settings(&c).await;

    c.goto(&app.url("/settings/enrollment")).await.unwrap();
    assert_eq!(value(&c, "#f-welcome_message").await, "# Hello {{ first_name }}\n\nRead **the guide**.");
    assert_eq!(value(&c, "#f-welcome_email_subject").await, "Hi {{ first_name }}, welcome aboard");
    assert_eq!(value(&c, "#f-token_lifetime").await, "3d");
    assert_eq!(value(&c, "#f-session_lifetime").await, "15m");
    assert_eq!(value(&c, "#f-contact_name").await, "IT Service Desk");
    assert!(!checked(&c, "#f-send_welcome_email").await);
    assert!(checked(&c, "#f-vpn_setup_optional").await);
    let s = app.core.settings().await;
    assert_eq!(
        (s.enrollment.token_lifetime_secs, s.enrollment.session_lifetime_secs, s.enrollment.send_welcome_email),
        (3 * 86_400, 900, false)
    );
    assert_eq!(s.admin_contact.as_ref().map(|a| a.email.as_str()), Some("desk@example.com"));
    assert_eq!(s.enrollment.welcome_message, "# Hello {{ first_name }}\n\nRead **the guide**.", "LF, not CRLF");

    // Welcome e-mail off: an enrollment mails only the admin's notice.
    let final_page = enroll_over_edge(&app, "ann").await;
    assert_eq!(final_page, "# Hello First\n\nRead **the guide**.");
    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = if sink.messages().len() > got.len() { sink.messages() } else { got };
    assert_eq!(got.len(), 1, "no welcome e-mail: {got:?}");
    assert_eq!(
        (got[0].to.as_slice(), got[0].subject.as_str()),
        (&["admin@example.com".to_owned()][..], "First Last completed enrollment")
    );

    // On again, and the message no longer displayed at the end of enrollment.
    c.goto(&app.url("/settings/enrollment")).await.unwrap();
    set_checked(&c, "#f-send_welcome_email", true).await;
    set_checked(&c, "#f-show_welcome_message", false).await;
    save_enrollment_settings(&c).await;
    let final_page = enroll_over_edge(&app, "bob").await;
    assert_eq!(final_page, "", "the welcome message is not displayed");
    let got = sink.wait_for(3, Duration::from_secs(20)).await;
    let welcome = got.iter().find(|m| m.to == ["bob@example.com"]).unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(welcome.subject, "Hi First, welcome aboard");
    assert!(welcome.text.contains("your account bob"), "{}", welcome.text);

    // The change is in the audit log.
    let (_, ev) = app.call("GET", "/api/v1/audit?action=settings.updated", None).await;
    assert!(ev.as_array().is_some_and(|a| a.iter().any(|e| e["actor"] == "admin")), "{ev}");
    c.close().await.unwrap();
    app.stop().await;
}

/// The welcome message's live preview renders Markdown with the wizard's renderer (loaded
/// as a file: the CSP allows no inline script), escaping markup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_message_live_preview() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    admin_password(&app).await;
    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "admin", ADMIN_PASSWORD).await;
    c.goto(&app.url("/settings/enrollment")).await.unwrap();
    // The stored default ("# Welcome, ...") is rendered on load.
    assert!(text(&c, "#welcome-preview h3").await.starts_with("Welcome, {{ first_name }}"));
    fill(
        &c,
        "#f-welcome_message",
        "# Getting started\n\nUse **bold** words, *this* and <b>not this</b>.\n\n- one\n- two",
    )
    .await;
    assert_eq!(text(&c, "#welcome-preview strong").await, "bold");
    assert_eq!(text(&c, "#welcome-preview h3").await, "Getting started");
    assert_eq!(c.find_all(Locator::Css("#welcome-preview li")).await.unwrap().len(), 2);
    assert!(c.find(Locator::Css("#welcome-preview b")).await.is_err(), "raw HTML is escaped");
    assert!(text(&c, "#welcome-preview").await.contains("<b>not this</b>"));
    c.execute("document.getElementById('welcome-preview').closest('section').scrollIntoView()", vec![]).await.unwrap();
    screenshot(&c, "enrollment-settings").await;
    c.close().await.unwrap();
    app.stop().await;
}

/// SMTP settings: saved through the form (a write-only password, kept when left empty),
/// and "send a test e-mail" shows the server's answer, delivered or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_settings_and_test_mail() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    admin_password(&app).await;
    let mut sink = SmtpSink::start().await;
    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "admin", ADMIN_PASSWORD).await;

    c.goto(&app.url("/settings/smtp")).await.unwrap();
    wait_for(&c, "#smtp-unconfigured").await;
    assert_eq!(wait_for(&c, "#send-test").await.attr("disabled").await.unwrap().as_deref(), Some("true"));
    fill(&c, "#f-host", "127.0.0.1").await;
    fill(&c, "#f-port", "99999").await;
    fill(&c, "#f-sender", "vpn@example.com").await;
    wait_for(&c, "#f-security").await.select_by_value("none").await.unwrap();
    fill(&c, "#f-username", "mailer").await;
    fill(&c, "#f-password", "Sm7p-secret").await;
    click(&c, "#save-smtp").await;
    assert!(text(&c, "#f-port-error").await.contains("65535"));
    assert_eq!(value(&c, "#f-host").await, "127.0.0.1", "what was typed stays");
    fill(&c, "#f-port", &sink.port().to_string()).await;
    fill(&c, "#f-password", "Sm7p-secret").await;
    click(&c, "#save-smtp").await;
    assert_eq!(text(&c, "p.notice").await, "Changes saved.");
    let s = app.core.settings().await.smtp;
    assert_eq!(
        (s.port, s.username.as_deref(), s.password.as_deref()),
        (sink.port(), Some("mailer"), Some("Sm7p-secret"))
    );

    // The password is never shown; an empty field keeps it.
    c.goto(&app.url("/settings/smtp")).await.unwrap();
    assert_eq!(value(&c, "#f-password").await, "");
    assert!(!c.source().await.unwrap().contains("Sm7p-secret"));
    assert!(text(&c, "#f-password-hint").await.contains("A password is stored"));
    assert_eq!(value(&c, "#f-security").await, "none");
    fill(&c, "#f-timeout", "7").await;
    click(&c, "#save-smtp").await;
    assert_eq!(text(&c, "p.notice").await, "Changes saved.");
    let s = app.core.settings().await.smtp;
    assert_eq!((s.timeout_secs, s.password.as_deref()), (7, Some("Sm7p-secret")));
    // Removed on request (the sink takes no login over plain SMTP).
    c.goto(&app.url("/settings/smtp")).await.unwrap();
    fill(&c, "#f-username", "").await;
    set_checked(&c, "#f-clear_password", true).await;
    click(&c, "#save-smtp").await;
    assert_eq!(text(&c, "p.notice").await, "Changes saved.");
    let s = app.core.settings().await.smtp;
    assert_eq!((s.username, s.password), (None, None));

    // A test message: the server's own answer, and the mail at the sink.
    c.goto(&app.url("/settings/smtp")).await.unwrap();
    assert_eq!(value(&c, "#test-to").await, "admin@example.com", "defaults to my address");
    fill(&c, "#test-to", "ann@example.com").await;
    click(&c, "#send-test").await;
    let result = text(&c, "#smtp-test-result").await;
    assert!(result.contains("Delivered") && result.contains("250 OK stored"), "{result}");
    assert!(result.contains(&format!("127.0.0.1:{}", sink.port())), "{result}");
    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(
        (got[0].to.as_slice(), got[0].subject.as_str()),
        (&["ann@example.com".to_owned()][..], "Onramp test message")
    );
    screenshot(&c, "smtp-settings").await;

    // The relay down: the page says so, with the connection error.
    sink.stop().await;
    c.goto(&app.url("/settings/smtp")).await.unwrap();
    click(&c, "#send-test").await;
    let result = text(&c, "#smtp-test-result").await;
    assert!(result.contains("Not delivered"), "{result}");
    // A bad address: the use case's message.
    c.goto(&app.url("/settings/smtp")).await.unwrap();
    c.execute("document.getElementById('test-to').type = 'text'", vec![]).await.unwrap();
    fill(&c, "#test-to", "not an address").await;
    click(&c, "#send-test").await;
    assert!(text(&c, "#smtp-test-result .error").await.contains("to:"));
    c.close().await.unwrap();
    app.stop().await;
}

/// API tokens: created for the signed-in admin, shown once, authenticate the REST API until
/// revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_create_use_and_revoke() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    admin_password(&app).await;
    app.create_user("ann").await;
    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "admin", ADMIN_PASSWORD).await;
    c.goto(&app.url("/api-tokens")).await.unwrap();
    assert_eq!(value(&c, "#f-username").await, "admin", "the signed-in admin by default");

    // Not for a user outside the admin group.
    fill(&c, "#f-name", "ci script").await;
    fill(&c, "#f-username", "ann").await;
    click(&c, "#create-token").await;
    assert!(text(&c, "#create-api-token .error").await.contains("not in an admin group"));
    assert!(c.find(Locator::Css("#new-api-token")).await.is_err());

    fill(&c, "#f-username", "admin").await;
    click(&c, "#create-token").await;
    let token = value(&c, "#new-api-token").await;
    assert!(token.starts_with("onramp_") && token.len() == 39, "{token}");
    wait_for(&c, "button.copy[data-copy=new-api-token]").await;
    screenshot(&c, "api-tokens").await;
    let get = |t: String| {
        let app = &app;
        async move { app.client.get(app.url("/api/v1/user")).bearer_auth(t).send().await.unwrap().status() }
    };
    assert_eq!(get(token.clone()).await, StatusCode::OK);

    // Shown once: not on the list page.
    c.goto(&app.url("/api-tokens")).await.unwrap();
    assert!(c.find(Locator::Css("#new-api-token")).await.is_err());
    assert!(!c.source().await.unwrap().contains(&token));
    let id = app.core.list_api_tokens().await.unwrap().into_iter().find(|t| t.name == "ci script").unwrap().id;
    let row = text(&c, &format!("tr[data-token-id=\"{id}\"]")).await;
    assert!(row.contains("ci script") && row.contains(&token[..11]) && row.contains("active"), "{row}");
    click(&c, &format!("tr[data-token-id=\"{id}\"] button.danger")).await;
    assert!(text(&c, "p.notice").await.contains("API token revoked"));
    assert!(text(&c, &format!("tr[data-token-id=\"{id}\"]")).await.contains("revoked"));
    assert!(c.find(Locator::Css(&format!("tr[data-token-id=\"{id}\"] button.danger"))).await.is_err());
    assert_eq!(get(token).await, StatusCode::UNAUTHORIZED);
    c.close().await.unwrap();
    app.stop().await;
}

/// The audit log: filters by action and by user, and pages to older events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_filter_and_paging() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    admin_password(&app).await;
    for i in 0..53 {
        app.create_user(&format!("user{i:02}")).await;
    }
    app.call("PATCH", "/api/v1/settings", Some(json!({"instance_name": "Acme VPN"}))).await;
    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "admin", ADMIN_PASSWORD).await;
    c.goto(&app.url("/audit")).await.unwrap();
    let actions = |c: &Client| {
        let c = c.clone();
        async move {
            let mut out = Vec::new();
            for e in c.find_all(Locator::Css("table.audit tbody td.action")).await.unwrap() {
                out.push(e.text().await.unwrap());
            }
            out
        }
    };
    let all = actions(&c).await;
    assert_eq!(all.len(), 50, "one page");
    assert!(all.contains(&"settings.updated".to_owned()), "{all:?}");

    fill(&c, "#f-action", "settings.updated").await;
    click(&c, "#audit-apply").await;
    wait_url_contains(&c, "action=settings.updated").await;
    assert_eq!(actions(&c).await, ["settings.updated"]);
    let row = text(&c, "table.audit tbody tr").await;
    assert!(row.contains("Acme VPN") && row.contains("instance_name") && row.contains("admin"), "{row}");
    screenshot(&c, "audit-log").await;

    // 54 users created (53 + the bootstrap admin): 50 on the first page, 4 older.
    c.goto(&app.url("/audit?action=user.created")).await.unwrap();
    assert_eq!(actions(&c).await.len(), 50);
    assert!(text(&c, "table.audit tbody tr").await.contains("user52"), "newest first");
    click(&c, "#audit-older").await;
    wait_for(&c, "#audit-newest").await;
    let older = actions(&c).await;
    assert_eq!(older, ["user.created"; 4]);
    assert!(text(&c, "table.audit tbody tr:last-child").await.contains("bootstrap"));
    assert!(c.find(Locator::Css("#audit-older")).await.is_err());
    assert_eq!(value(&c, "#f-action").await, "user.created", "the filter stays on older pages");

    // By user (the actor).
    c.goto(&app.url("/audit")).await.unwrap();
    fill(&c, "#f-actor", "bootstrap").await;
    click(&c, "#audit-apply").await;
    wait_url_contains(&c, "actor=bootstrap").await;
    assert_eq!(actions(&c).await, ["user.created"]);
    assert!(text(&c, "table.audit tbody tr").await.contains("{\"bootstrap\":true}"), "compact JSON details");
    fill(&c, "#f-actor", "nobody").await;
    click(&c, "#audit-apply").await;
    wait_url_contains(&c, "actor=nobody").await;
    assert_eq!(text(&c, "table.audit tbody").await, "No event matches.");
    // A future "since" leaves nothing; a past one everything.
    c.goto(&app.url("/audit?action=settings.updated&since=2999-01-01T00:00")).await.unwrap();
    assert_eq!(text(&c, "table.audit tbody").await, "No event matches.");
    c.goto(&app.url("/audit?action=settings.updated&since=2000-01-01")).await.unwrap();
    assert_eq!(actions(&c).await, ["settings.updated"]);
    c.goto(&app.url("/audit?since=yesterday")).await.unwrap();
    assert!(text(&c, "main p.error").await.contains("not a date"));
    c.close().await.unwrap();
    app.stop().await;
}

async fn wait_url_contains(c: &Client, part: &str) {
    for _ in 0..200 {
        if c.current_url().await.unwrap().as_str().contains(part) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the address never contained {part}");
}

/// The mail outbox: a message that failed at a closed port is listed with its error;
/// Retry sends it once the relay is back; a failed message that held a token cannot be
/// re-sent, and the page says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_outbox_lists_failures_and_retries() {
    let mut sink = SmtpSink::start().await;
    let app = TestApp::builder(Backend::Sqlite).config(|c| c.mail_max_attempts = 2).spawn().await;
    admin_password(&app).await;
    configure_smtp(&app, &sink).await;
    sink.stop().await;
    app.create_user("ann").await;
    let (s, v) = app
        .call(
            "POST",
            "/api/v1/user/ann/start_enrollment",
            Some(json!({"send_enrollment_notification": true, "email": "ann@example.com"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // A device added by the admin: the owner's notice holds no token, so it can be re-sent.
    let (s, v) = app
        .call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "laptop", "pubkey": pubkey(1)})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut failed = Vec::new();
    for _ in 0..300 {
        failed = app.core.list_mail(Some("failed"), 10).await.unwrap();
        if failed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(failed.len(), 2, "{failed:?}");
    let notice = failed.iter().find(|m| m.kind == "new_device").unwrap().id;
    let invitation = failed.iter().find(|m| m.kind == "invitation").unwrap().id;

    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "admin", ADMIN_PASSWORD).await;
    c.goto(&app.url("/mail")).await.unwrap();
    let row = text(&c, &format!("tr[data-mail-id=\"{notice}\"]")).await;
    assert!(row.contains("new_device") && row.contains("ann@example.com") && row.contains("failed"), "{row}");
    assert!(row.contains("2 of 2") && row.contains(&format!("127.0.0.1:{}", sink.port())), "{row}");
    screenshot(&c, "mail-outbox").await;

    // The status filter.
    wait_for(&c, "#status").await.select_by_value("sent").await.unwrap();
    click(&c, "#mail-filter button").await;
    assert_eq!(text(&c, "table.mail tbody").await, "No message.");
    wait_for(&c, "#status").await.select_by_value("failed").await.unwrap();
    click(&c, "#mail-filter button").await;
    wait_for(&c, &format!("tr[data-mail-id=\"{invitation}\"]")).await;
    assert_eq!(c.find_all(Locator::Css("table.mail tbody tr")).await.unwrap().len(), 2);

    // The invitation's body (its token) was erased when it failed: refused, with the reason.
    click(&c, &format!("tr[data-mail-id=\"{invitation}\"] button.retry")).await;
    assert!(text(&c, "main p.error").await.contains("erased"));

    sink.restart().await;
    c.goto(&app.url("/mail?status=failed")).await.unwrap();
    click(&c, &format!("tr[data-mail-id=\"{notice}\"] button.retry")).await;
    assert_eq!(text(&c, "p.notice").await, "The message is queued again.");
    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].to, ["ann@example.com"]);
    for _ in 0..100 {
        c.goto(&app.url("/mail")).await.unwrap();
        if wait_for(&c, &format!("tr[data-mail-id=\"{notice}\"]")).await.attr("data-status").await.unwrap().as_deref()
            == Some("sent")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let row = text(&c, &format!("tr[data-mail-id=\"{notice}\"]")).await;
    assert!(row.contains("sent"), "{row}");
    assert!(c.find(Locator::Css(&format!("tr[data-mail-id=\"{notice}\"] button.retry"))).await.is_err());
    let (_, ev) = app.call("GET", "/api/v1/audit?action=mail.retried", None).await;
    assert_eq!(ev[0]["details"]["id"], notice);
    c.close().await.unwrap();
    app.stop().await;
}
