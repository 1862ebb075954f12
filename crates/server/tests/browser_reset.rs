//! The password-reset page in real headless Chromium (issue 10 item 2): the link is taken
//! from a real mail delivered to the SMTP sink, opened, a new password set with the policy
//! checked as it is typed, and the result pages read. Screenshots land in the target dir.

mod common;
use common::*;
mod chrome;
use chrome::{browser, start_chromedriver, text, visible};
use fantoccini::{Client, Locator};
use onramp_testkit::smtp::SmtpSink;
use std::time::Duration;

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The reset URL in the mail's text, moved to the test edge (only scheme, host and port).
fn link_from_mail(text: &str, edge_url: &str) -> String {
    let at = text.find("/password-reset?token=").unwrap_or_else(|| panic!("no reset link in the mail: {text}"));
    let begin = text[..at].rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let end = text[at..].find(char::is_whitespace).map_or(text.len(), |i| at + i);
    let mut url = reqwest::Url::parse(&text[begin..end]).unwrap();
    let edge = reqwest::Url::parse(edge_url).unwrap();
    url.set_scheme(edge.scheme()).unwrap();
    url.set_host(edge.host_str()).unwrap();
    url.set_port(edge.port()).unwrap();
    url.to_string()
}

fn verify(password: &str, hash: &str) -> bool {
    use argon2::PasswordVerifier;
    let parsed = argon2::PasswordHash::new(hash).unwrap();
    argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_password_reset_from_the_mailed_link() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let smtp =
        json!({"smtp": {"host": "127.0.0.1", "port": sink.port(), "security": "none", "sender": "vpn@example.com"}});
    assert_eq!(app.call("PATCH", "/api/v1/settings", Some(smtp)).await.0, StatusCode::OK);
    let (s, v) = app
        .call(
            "POST",
            "/api/v1/user",
            Some(json!({"username": "ann", "first_name": "Ann", "last_name": "L",
                        "email": "ann@example.com", "password": "0ld!Password"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let r = app
        .client
        .post(format!("{}/api/v1/password-reset/request", app.edge_url))
        .json(&json!({"email": "ann@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mail = sink.wait_for(1, Duration::from_secs(20)).await.remove(0);
    let link = link_from_mail(&mail.text, &app.edge_url);

    let driver = start_chromedriver();
    let c = browser(&driver).await;
    c.goto(&link).await.unwrap();
    visible(&c, "password").await;
    assert!(!c.current_url().await.unwrap().as_str().contains("token="), "token left in the address bar");
    assert!(text(&c, "#countdown").await.starts_with("Time left: "));
    c.find(Locator::Id("password")).await.unwrap().send_keys("weak").await.unwrap();
    let unmet = text(&c, "#rules").await;
    assert!(unmet.contains("an upper-case letter") && unmet.contains("a digit"), "{unmet}");
    assert!(c.find(Locator::Css("#rules li:not(.ok)")).await.is_ok(), "unmet rules are marked as you type");
    let submit = c.find(Locator::Id("password-submit")).await.unwrap();
    assert!(submit.attr("disabled").await.unwrap().is_some(), "a weak password cannot be submitted");
    screenshot(&c, "reset-password-weak").await;
    c.find(Locator::Id("password")).await.unwrap().clear().await.unwrap();
    c.find(Locator::Id("password")).await.unwrap().send_keys("N3w!Passw0rd").await.unwrap();
    c.find(Locator::Id("password2")).await.unwrap().send_keys("N3w!Passw0rd").await.unwrap();
    assert!(c.find(Locator::Css("#rules li:not(.ok)")).await.is_err(), "all rules met");
    assert!(submit.attr("disabled").await.unwrap().is_none());
    submit.click().await.unwrap();
    visible(&c, "done").await;
    assert!(text(&c, "#done-text").await.contains("Your password was changed"));
    screenshot(&c, "reset-done").await;

    let ann = app.core.store().user_by_username("ann").await.unwrap();
    let hash = ann.password_hash.unwrap();
    assert!(verify("N3w!Passw0rd", &hash) && !verify("0ld!Password", &hash), "the new password is stored");

    // The same link again: used.
    c.goto(&link).await.unwrap();
    visible(&c, "error").await;
    assert!(text(&c, "#error-text").await.contains("already used"));
    screenshot(&c, "reset-used").await;
    // A mangled link: invalid.
    c.goto(&format!("{}/password-reset?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", app.edge_url)).await.unwrap();
    visible(&c, "error").await;
    assert!(text(&c, "#error-text").await.contains("is not valid"));
    // Without a token the page offers to request a link.
    c.goto(&format!("{}/password-reset", app.edge_url)).await.unwrap();
    visible(&c, "request").await;
    screenshot(&c, "reset-request").await;
    c.close().await.unwrap();
    app.stop().await;
}
