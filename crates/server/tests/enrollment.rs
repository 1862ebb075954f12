//! Core-side enrollment rules behind the edge API (PROTOCOL.md section 3), on both backends.

mod common;
use common::*;
use onramp_core::Actor;
use onramp_domain::token::TokenSecret;

on_both_backends!(
    desktop_order_then_poll,
    browser_order_and_hand_off,
    refusals,
    enrolled_user_desktop_token,
    session_deadline,
    activation_sent_twice_at_once
);

fn actor() -> Actor {
    Actor {
        name: "edge".into(),
        ip: Some("192.0.2.7".into()),
        user_agent: Some("onramp-client/1.0 <x>".into()),
        ..Actor::default()
    }
}

async fn token_for(app: &TestApp, user: &str, endpoint: &str) -> TokenSecret {
    let (s, v) = app.call("POST", &format!("/api/v1/user/{user}/{endpoint}"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    TokenSecret::from_user(v["enrollment_token"].as_str().unwrap())
}

async fn setup(b: Backend) -> TestApp {
    let app = TestApp::builder(b).manual_clock().spawn().await;
    app.call(
        "PUT",
        "/api/v1/user/admin",
        Some(json!({"first_name": "Ada", "last_name": "Admin", "phone": "+1 555 0100"})),
    )
    .await;
    app.create_user("ann").await;
    app.create_user("bob").await;
    app.create_location("office", "10.1.0.1/24").await;
    app.create_location("lab", "10.2.0.1/24").await;
    app
}

/// Existing desktop clients: start, create_device, then activate_user last.
async fn desktop_order_then_poll(b: Backend) {
    let app = setup(b).await;
    let t = token_for(&app, "ann", "start_enrollment").await;
    let start = app.core.enrollment_start(&actor(), &t).await.unwrap();
    assert_eq!(start.user.login, "ann");
    assert!(!start.user.enrolled);
    let admin = start.admin.unwrap();
    assert_eq!(
        (admin.name.as_str(), admin.email.as_str(), admin.phone_number.as_deref()),
        ("Ada Admin", "admin@example.com", Some("+1 555 0100"))
    );
    assert!(start.final_page_content.contains("Welcome, First!"), "{}", start.final_page_content);
    assert!(start.final_page_content.contains("Ada Admin (admin@example.com)"), "{}", start.final_page_content);
    assert_eq!(start.instance.proxy_url, "https://edge.example.com/");
    assert!(!start.settings.smtp_configured);
    let dev = app.core.enrollment_create_device(&actor(), &t, "laptop", &pubkey(1)).await.unwrap();
    assert_eq!(dev.configs.len(), 2);
    assert_eq!(dev.configs[0].assigned_ip, "10.1.0.2");
    assert_eq!(dev.instance.username, "ann");
    let polling = TokenSecret::from_user(dev.token.as_deref().unwrap());
    app.core.activate_user(&actor(), &t, "Str0ng!Pass".into(), Some("+48 600 700 800".into())).await.unwrap();
    let (_, u) = app.call("GET", "/api/v1/user/ann", None).await;
    assert_eq!((u["enrolled"].as_bool(), u["phone"].as_str()), (Some(true), Some("+48 600 700 800")));
    // Poll returns the current config, including a location added later.
    app.create_location("late", "10.3.0.1/24").await;
    let polled = app.core.poll(&polling).await.unwrap();
    assert_eq!(polled.device.name, "laptop");
    let names: Vec<&str> = polled.configs.iter().map(|c| c.network_name.as_str()).collect();
    assert_eq!(names, ["office", "lab", "late"]);
    assert_eq!(polled.configs[2].assigned_ip, "10.3.0.2");
    assert!(polled.token.is_none());
    // network_info rotates the polling token.
    let info = app.core.network_info(&t, &pubkey_of(&dev)).await.unwrap();
    assert_ne!(info.token.as_deref(), Some(polling.expose()));
    assert_eq!(app.core.poll(&polling).await.unwrap_err().to_string(), "invalid token");
    app.core.poll(&TokenSecret::from_user(info.token.as_deref().unwrap())).await.unwrap();
    // Disabled users stop getting configuration.
    app.call("PUT", "/api/v1/user/ann", Some(json!({"is_active": false}))).await;
    let fresh = TokenSecret::from_user(info.token.as_deref().unwrap());
    let e = app.core.poll(&fresh).await.unwrap_err();
    assert_eq!(e.code(), "user_disabled");
    // Named: the admin who issued the token that registered the device.
    let text = e.to_string();
    assert!(text.starts_with("your account is disabled; contact ") && text.contains("<admin@example.com>"), "{text}");
    // Audit: each step with the client's address and a sanitised user agent.
    let (_, ev) = app.call("GET", "/api/v1/audit?action=enrollment.completed", None).await;
    assert_eq!((ev[0]["ip"].as_str(), ev[0]["user_agent"].as_str()), (Some("192.0.2.7"), Some("onramp-client/1.0 x")));
    for action in ["enrollment.started", "device.added"] {
        let (_, ev) = app.call("GET", &format!("/api/v1/audit?action={action}"), None).await;
        assert!(!ev.as_array().unwrap().is_empty(), "{action}");
    }
    app.stop().await;
}

fn pubkey_of(d: &onramp_proto::DeviceConfigResponse) -> String {
    d.device.pubkey.clone()
}

/// Browser flow: activate first, then the device; then the desktop client takes over with
/// the same token inside the session.
async fn browser_order_and_hand_off(b: Backend) {
    let app = setup(b).await;
    let clock = app.clock.clone().unwrap();
    let t = token_for(&app, "ann", "start_enrollment").await;
    let first = app.core.enrollment_start(&actor(), &t).await.unwrap();
    app.core.activate_user(&actor(), &t, "Str0ng!Pass".into(), None).await.unwrap();
    app.core.enrollment_create_device(&actor(), &t, "browser", &pubkey(2)).await.unwrap();
    clock.advance(60);
    let again = app.core.enrollment_start(&actor(), &t).await.unwrap();
    assert_eq!(again.deadline_timestamp, first.deadline_timestamp);
    assert!(again.user.enrolled);
    assert_eq!(again.user.device_names, ["browser"]);
    // One session registers one device (issue 10 item 11): the desktop client taking over
    // the same session cannot add a second one.
    let e = app.core.enrollment_create_device(&actor(), &t, "desktop", &pubkey(3)).await.unwrap_err();
    assert_eq!(e.code(), "session_has_device", "{e}");
    clock.advance(600);
    assert_eq!(app.core.enrollment_start(&actor(), &t).await.unwrap_err().code(), "token_used");
    app.stop().await;
}

async fn refusals(b: Backend) {
    let app = setup(b).await;
    let t = token_for(&app, "ann", "start_enrollment").await;
    app.core.enrollment_start(&actor(), &t).await.unwrap();
    let e = app.core.activate_user(&actor(), &t, "weakpass".into(), None).await.unwrap_err();
    assert_eq!(e.to_string(), "password not strong enough");
    let e = app.core.enrollment_create_device(&actor(), &t, "laptop", "not-a-key").await.unwrap_err();
    assert_eq!(e.field(), Some("pubkey"));
    // Clashes with a device the admin registered (a session registers only one device).
    let input = onramp_core::DeviceInput { username: "ann".into(), name: "laptop".into(), pubkey: pubkey(4) };
    let admin_dev = app.core.add_device(&Actor::system("test"), input).await.unwrap();
    let e = app.core.enrollment_create_device(&actor(), &t, "laptop", &pubkey(5)).await.unwrap_err();
    assert_eq!((e.code(), e.field()), ("conflict", Some("name")));
    assert!(e.to_string().contains("already has a device named \"laptop\""), "{e}");
    let e = app.core.enrollment_create_device(&actor(), &t, "other", &admin_dev.pubkey).await.unwrap_err();
    assert_eq!((e.code(), e.field()), ("conflict", Some("pubkey")));
    // An empty name (headless client) gets a generated one.
    let d = app.core.enrollment_create_device(&actor(), &t, "", &pubkey(6)).await.unwrap();
    assert!(d.device.name.starts_with("device-"));
    // network_info with another user's device.
    let tb = token_for(&app, "bob", "start_enrollment").await;
    app.core.enrollment_start(&actor(), &tb).await.unwrap();
    let e = app.core.network_info(&tb, &pubkey_of(&d)).await.unwrap_err();
    assert_eq!(e.code(), "forbidden");
    app.core.activate_user(&actor(), &t, "Str0ng!Pass".into(), None).await.unwrap();
    // The same activation again (its answer was lost) succeeds and completes nothing
    // twice; another password is refused.
    app.core.activate_user(&actor(), &t, "Str0ng!Pass".into(), None).await.unwrap();
    let (_, done) = app.call("GET", "/api/v1/audit?action=enrollment.completed", None).await;
    assert_eq!(done.as_array().map(Vec::len), Some(1), "{done}");
    let e = app.core.activate_user(&actor(), &t, "Oth3r!Pass".into(), None).await.unwrap_err();
    assert_eq!(e.code(), "already_activated");
    // Unknown tokens.
    let bogus = TokenSecret::from_user("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(
        app.core.enrollment_create_device(&actor(), &bogus, "x", &pubkey(7)).await.unwrap_err().to_string(),
        "invalid token"
    );
    // A disabled user's session stops.
    app.call("PUT", "/api/v1/user/bob", Some(json!({"is_active": false}))).await;
    assert_eq!(
        app.core.enrollment_create_device(&actor(), &tb, "x", &pubkey(8)).await.unwrap_err().code(),
        "user_disabled"
    );
    app.stop().await;
}

/// A client whose connection broke while core was still hashing sends activate_user again:
/// both copies run at once. Both succeed (the loser finds its own password set), the
/// enrollment completes once; a concurrent other password is still refused.
async fn activation_sent_twice_at_once(b: Backend) {
    let app = setup(b).await;
    let t = token_for(&app, "ann", "start_enrollment").await;
    app.core.enrollment_start(&actor(), &t).await.unwrap();
    let a = actor();
    let calls = (0..2).map(|_| app.core.activate_user(&a, &t, "Str0ng!Pass".into(), None));
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    let (_, done) = app.call("GET", "/api/v1/audit?action=enrollment.completed", None).await;
    assert_eq!(done.as_array().map(Vec::len), Some(1), "{done}");
    let tb = token_for(&app, "bob", "start_enrollment").await;
    app.core.enrollment_start(&actor(), &tb).await.unwrap();
    let calls = ["Str0ng!Pass", "Oth3r!Pass"].map(|p| app.core.activate_user(&a, &tb, p.into(), None));
    let results = futures::future::join_all(calls).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    app.stop().await;
}

/// An enrolled user with a desktop-configuration token skips the password step.
async fn enrolled_user_desktop_token(b: Backend) {
    let app = setup(b).await;
    let t = token_for(&app, "ann", "start_enrollment").await;
    app.core.enrollment_start(&actor(), &t).await.unwrap();
    app.core.activate_user(&actor(), &t, "Str0ng!Pass".into(), None).await.unwrap();
    let d = token_for(&app, "ann", "start_desktop").await;
    let start = app.core.enrollment_start(&actor(), &d).await.unwrap();
    assert!(start.user.enrolled, "the client skips the wizard");
    let dev = app.core.enrollment_create_device(&actor(), &d, "second", &pubkey(9)).await.unwrap();
    assert_eq!(dev.configs.len(), 2);
    assert_eq!(
        app.core.activate_user(&actor(), &d, "Str0ng!Pass".into(), None).await.unwrap_err().code(),
        "already_activated"
    );
    app.stop().await;
}

/// Sessions end 10 minutes after the first start (controllable clock, no sleeping).
async fn session_deadline(b: Backend) {
    let app = setup(b).await;
    let clock = app.clock.clone().unwrap();
    let t = token_for(&app, "ann", "start_enrollment").await;
    let start = app.core.enrollment_start(&actor(), &t).await.unwrap();
    assert_eq!(start.deadline_timestamp, app.core.now() + 600);
    clock.advance(600);
    let e = app.core.enrollment_create_device(&actor(), &t, "late", &pubkey(10)).await.unwrap_err();
    assert_eq!(e.code(), "session_expired");
    assert_eq!(
        app.core.activate_user(&actor(), &t, "Str0ng!Pass".into(), None).await.unwrap_err().code(),
        "session_expired"
    );
    app.stop().await;
}
