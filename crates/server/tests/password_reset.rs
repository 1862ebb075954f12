//! Password reset over the public edge (issue 10 items 1 and 9): a reset request leaves
//! provisioning tokens alone, has a per-account cooldown, supersedes earlier reset links,
//! redeems exactly once under concurrency; the edge's cookies carry opaque session ids and
//! an enrollment and a reset in one browser do not disturb each other.

mod common;
use common::*;
use onramp_testkit::smtp::{ReceivedMail, SmtpSink};
use std::collections::BTreeMap;
use std::time::Duration;

on_both_backends!(
    reset_request_keeps_provisioning_tokens,
    reset_requests_have_a_cooldown,
    newer_reset_link_supersedes_older,
    concurrent_resets_one_wins,
    cookie_is_opaque_and_flows_do_not_collide,
);

async fn configure_smtp(app: &TestApp, sink: &SmtpSink, cooldown: Option<i64>) {
    let mut patch =
        json!({"smtp": {"host": "127.0.0.1", "port": sink.port(), "security": "none", "sender": "vpn@example.com"}});
    if let Some(c) = cooldown {
        patch["enrollment"] = json!({ "password_reset_cooldown_secs": c });
    }
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(patch)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// An enrolled user (has a password), so they may reset it.
async fn enrolled_user(app: &TestApp, name: &str) {
    let (s, v) = app
        .call(
            "POST",
            "/api/v1/user",
            Some(json!({"username": name, "first_name": "F", "last_name": "L",
                        "email": format!("{name}@example.com"), "password": "Str0ng!Pass"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// POST to the edge; returns status, body text and the `Set-Cookie` headers.
async fn edge(app: &TestApp, path: &str, body: Value, cookie: Option<&str>) -> (StatusCode, String, Vec<String>) {
    let mut r = app.client.post(format!("{}{path}", app.edge_url)).json(&body);
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let cookies = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    (status, r.text().await.unwrap(), cookies)
}

async fn request_reset(app: &TestApp, email: &str) -> (StatusCode, String) {
    let (s, t, _) = edge(app, "/api/v1/password-reset/request", json!({ "email": email }), None).await;
    (s, t)
}

fn link_token(mail: &ReceivedMail) -> String {
    let t: String = mail.text.split("token=").nth(1).unwrap().chars().take(32).collect();
    assert!(onramp_domain::token::is_well_formed(&t), "{}", mail.text);
    t
}

/// `name=value` of a `Set-Cookie` header.
fn cookie_pair(set_cookie: &str) -> (String, String) {
    let (k, v) = set_cookie.split(';').next().unwrap().split_once('=').unwrap();
    (k.to_owned(), v.to_owned())
}

async fn pending_kinds(app: &TestApp, user: &str) -> Vec<String> {
    let (s, v) = app.call("GET", &format!("/api/v1/user/{user}/tokens"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().iter().map(|t| t["kind"].as_str().unwrap().to_owned()).collect()
}

/// The reproduction: a desktop token, then an anonymous reset request for the
/// user's address. The desktop token must stay listed and still enroll; and an admin's
/// new desktop token must not kill the user's pending reset link either.
async fn reset_request_keeps_provisioning_tokens(b: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn(b).await;
    enrolled_user(&app, "ann").await;
    app.create_location("office", "10.7.0.1/24").await;
    let (s, v) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let desktop = v["enrollment_token"].as_str().unwrap().to_owned();
    configure_smtp(&app, &sink, None).await;
    assert_eq!(request_reset(&app, "ann@example.com").await.0, StatusCode::OK);
    let mail = sink.wait_for(1, Duration::from_secs(20)).await.remove(0);
    let reset = link_token(&mail);
    let mut kinds = pending_kinds(&app, "ann").await;
    kinds.sort();
    assert_eq!(kinds, ["desktop_config", "password_reset"], "the reset request revoked the desktop token");
    // A reset link lives an hour (enrollment.password_reset_lifetime_secs), not a day.
    let (_, tokens) = app.call("GET", "/api/v1/user/ann/tokens", None).await;
    let reset_row = tokens.as_array().unwrap().iter().find(|t| t["kind"] == "password_reset").unwrap().clone();
    let created = reset_row["created_at"].as_i64().unwrap_or_else(|| panic!("{reset_row}"));
    assert_eq!(reset_row["expires_at"].as_i64().unwrap() - created, 3600, "{reset_row}");
    let (s, t, _) = edge(&app, "/api/v1/enrollment/start", json!({ "token": desktop }), None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (s, t, _) = edge(
        &app,
        "/api/v1/enrollment/create_device",
        json!({"token": desktop, "name": "laptop", "pubkey": pubkey(1)}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "the desktop token still enrolls: {t}");
    // The other way round: a new desktop token leaves the pending reset link alone.
    let (s, v) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, t, _) = edge(&app, "/api/v1/password-reset/start", json!({ "token": reset }), None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    // Enrollment and desktop tokens still supersede each other (PROTOCOL.md section 2).
    let (_, v) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    let newest = v["enrollment_token"].as_str().unwrap().to_owned();
    let mut kinds = pending_kinds(&app, "ann").await;
    kinds.sort();
    assert_eq!(kinds, ["desktop_config", "password_reset"]);
    let (s, _, _) = edge(&app, "/api/v1/enrollment/start", json!({ "token": newest }), None).await;
    assert_eq!(s, StatusCode::OK);
    app.stop().await;
}

/// Two requests within the cooldown: one mail, the same answer; after it, a new mail.
async fn reset_requests_have_a_cooldown(b: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder(b).manual_clock().spawn().await;
    let clock = app.clock.clone().unwrap();
    enrolled_user(&app, "ann").await;
    enrolled_user(&app, "bob").await;
    configure_smtp(&app, &sink, Some(60)).await;
    let first = request_reset(&app, "ann@example.com").await;
    // Delivered before anything below replaces its token: a mail whose reset link was
    // superseded before it went out is cancelled, not sent with a dead link.
    sink.wait_for(1, Duration::from_secs(30)).await;
    clock.advance(30);
    let second = request_reset(&app, "ann@example.com").await;
    assert_eq!(first, (StatusCode::OK, String::new()));
    assert_eq!(second, first, "the answer within the cooldown is the same");
    let unknown = request_reset(&app, "nobody@example.com").await;
    assert_eq!(unknown, first);
    assert_eq!(pending_kinds(&app, "ann").await, ["password_reset"]);
    // Past the cooldown a new request sends again; bob's cooldown is his own.
    assert_eq!(request_reset(&app, "bob@example.com").await, first);
    sink.wait_for(2, Duration::from_secs(30)).await;
    clock.advance(31);
    assert_eq!(request_reset(&app, "ann@example.com").await, first);
    sink.wait_for(3, Duration::from_secs(30)).await;
    let (_, outbox) = app.call("GET", "/api/v1/mail", None).await;
    let mut to: Vec<&str> = outbox.as_array().unwrap().iter().map(|m| m["to"].as_str().unwrap()).collect();
    to.sort();
    assert_eq!(to, ["ann@example.com", "ann@example.com", "bob@example.com"], "{outbox}");
    // Every request is audited with what came of it; only three sent a mail.
    let (_, ev) = app.call("GET", "/api/v1/audit?action=password_reset.requested", None).await;
    let mut outcomes: Vec<String> =
        ev.as_array().unwrap().iter().map(|e| e["details"]["outcome"].as_str().unwrap_or("?").to_owned()).collect();
    outcomes.sort();
    assert_eq!(outcomes, ["cooldown", "no_such_account", "sent", "sent", "sent"], "{ev}");
    app.stop().await;
}

/// A later reset link supersedes the earlier one.
async fn newer_reset_link_supersedes_older(b: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder(b).manual_clock().spawn().await;
    let clock = app.clock.clone().unwrap();
    enrolled_user(&app, "ann").await;
    configure_smtp(&app, &sink, Some(60)).await;
    request_reset(&app, "ann@example.com").await;
    let old = link_token(&sink.wait_for(1, Duration::from_secs(20)).await[0]);
    clock.advance(61);
    request_reset(&app, "ann@example.com").await;
    let all = sink.wait_for(2, Duration::from_secs(20)).await;
    let new = all.iter().map(link_token).find(|t| *t != old).unwrap();
    let (s, t, _) = edge(&app, "/api/v1/password-reset/start", json!({ "token": old }), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the superseded link is refused: {t}");
    let v: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["code"], "token_revoked", "{v}");
    let (s, t, _) = edge(&app, "/api/v1/password-reset/start", json!({ "token": new }), None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (s, t, _) =
        edge(&app, "/api/v1/password-reset/reset", json!({"token": new, "password": "N3w!Passw0rd"}), None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    app.stop().await;
}

/// Many concurrent resets in one session: exactly one succeeds, and its password is stored.
async fn concurrent_resets_one_wins(b: Backend) {
    const N: usize = 8;
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn(b).await;
    enrolled_user(&app, "ann").await;
    configure_smtp(&app, &sink, None).await;
    request_reset(&app, "ann@example.com").await;
    let token = link_token(&sink.wait_for(1, Duration::from_secs(20)).await[0]);
    let (s, _, cookies) = edge(&app, "/api/v1/password-reset/start", json!({ "token": token }), None).await;
    assert_eq!(s, StatusCode::OK);
    let (name, value) = cookie_pair(&cookies[0]);
    let cookie = format!("{name}={value}");
    let passwords: Vec<String> = (0..N).map(|i| format!("N3w!Passw0rd-{i}")).collect();
    let app_ref = &app;
    let results = futures::future::join_all(passwords.iter().map(|p| {
        let cookie = cookie.clone();
        async move { edge(app_ref, "/api/v1/password-reset/reset", json!({ "password": p }), Some(&cookie)).await }
    }))
    .await;
    let winners: Vec<usize> = (0..N).filter(|i| results[*i].0 == StatusCode::OK).collect();
    assert_eq!(winners.len(), 1, "exactly one reset wins: {:?}", results.iter().map(|r| r.0).collect::<Vec<_>>());
    for (i, r) in results.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{}", r.1);
            assert!(r.1.contains("token_used"), "{}", r.1);
        }
    }
    let user = app.core.store().user_by_username("ann").await.unwrap();
    assert!(verify(&passwords[winners[0]], user.password_hash.as_deref().unwrap()), "the winner's password is stored");
    let (_, ev) = app.call("GET", "/api/v1/audit?action=password_reset.completed", None).await;
    assert_eq!(ev.as_array().unwrap().len(), 1, "{ev}");
    app.stop().await;
}

fn verify(password: &str, hash: &str) -> bool {
    use argon2::PasswordVerifier;
    let parsed = argon2::PasswordHash::new(hash).unwrap();
    argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// A cookie jar as a browser keeps it: the latest value per name, all sent back.
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn store(&mut self, set_cookies: &[String]) {
        for c in set_cookies {
            let (k, v) = cookie_pair(c);
            self.0.insert(k, v);
        }
    }
    fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }
}

/// The session cookies carry no token, work for the follow-up calls, and an enrollment and
/// a password reset in one browser keep their own sessions.
async fn cookie_is_opaque_and_flows_do_not_collide(b: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn(b).await;
    configure_smtp(&app, &sink, None).await;
    app.create_location("office", "10.8.0.1/24").await;
    app.create_user("newbie").await;
    enrolled_user(&app, "ann").await;
    let (_, v) = app.call("POST", "/api/v1/user/newbie/start_enrollment", Some(json!({}))).await;
    let enroll = v["enrollment_token"].as_str().unwrap().to_owned();
    request_reset(&app, "ann@example.com").await;
    let reset = link_token(&sink.wait_for(1, Duration::from_secs(20)).await[0]);

    let mut jar = Jar::default();
    let (s, _, set) = edge(&app, "/api/v1/enrollment/start", json!({ "token": enroll }), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(set.len(), 1);
    let (name, value) = cookie_pair(&set[0]);
    assert_eq!(name, "defguard_proxy");
    assert!(!set[0].contains(&enroll), "the cookie must not carry the token: {}", set[0]);
    assert!(onramp_domain::token::is_well_formed(&value), "an opaque id: {value}");
    jar.store(&set);
    // Starting again (browser -> desktop hand-off) gives a new id; both stay valid.
    let (s, _, set2) = edge(&app, "/api/v1/enrollment/start", json!({ "token": enroll }), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(cookie_pair(&set2[0]).1, value);
    let desktop_cookie = set2[0].split(';').next().unwrap().to_owned();

    let (s, _, set) = edge(&app, "/api/v1/password-reset/start", json!({ "token": reset }), Some(&jar.header())).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!set[0].contains(&reset), "the cookie must not carry the token: {}", set[0]);
    assert_ne!(cookie_pair(&set[0]).0, "defguard_proxy", "the reset has its own cookie");
    jar.store(&set);

    // Both flows finish with the same jar.
    let (s, t, _) = edge(
        &app,
        "/api/v1/enrollment/create_device",
        json!({"name": "laptop", "pubkey": pubkey(3)}),
        Some(&jar.header()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (s, t, _) =
        edge(&app, "/api/v1/password-reset/reset", json!({"password": "N3w!Passw0rd"}), Some(&jar.header())).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (s, t, _) =
        edge(&app, "/api/v1/enrollment/activate_user", json!({"password": "Newb!e-Passw0rd"}), Some(&jar.header()))
            .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    // The other session id of the same token works too, a made-up one does not.
    let (s, t, _) =
        edge(&app, "/api/v1/enrollment/network_info", json!({"pubkey": pubkey(9)}), Some(&desktop_cookie)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "resolved the session, then no such device: {t}");
    let (s, _, _) = edge(
        &app,
        "/api/v1/enrollment/network_info",
        json!({"pubkey": pubkey(9)}),
        Some("defguard_proxy=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let ann = app.core.store().user_by_username("ann").await.unwrap();
    assert!(verify("N3w!Passw0rd", ann.password_hash.as_deref().unwrap()));
    app.stop().await;
}

/// Item 17's figures, measured on demand (`--run-ignored only`), never asserted: the
/// median answer time of reset requests for a known and an unknown address, interleaved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run with `cargo nextest run --run-ignored only`"]
async fn measure_reset_request_timing() {
    for b in [Backend::Sqlite, Backend::Postgres] {
        let sink = SmtpSink::start().await;
        let app = TestApp::spawn(b).await;
        enrolled_user(&app, "ann").await;
        configure_smtp(&app, &sink, Some(0)).await;
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for i in 0..400 {
            let (list, email) =
                if i % 2 == 0 { (&mut known, "ann@example.com") } else { (&mut unknown, "nobody@example.com") };
            let t = std::time::Instant::now();
            assert_eq!(request_reset(&app, email).await.0, StatusCode::OK);
            list.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "{b:?}: known {:.3} ms, unknown {:.3} ms (median of 200 each)",
            median(&mut known),
            median(&mut unknown)
        );
        app.stop().await;
    }
}
