//! The public edge API over HTTP (PROTOCOL.md section 3): paths, cookie, status codes and
//! `{"error": ...}` bodies, with core behind the in-process link.

mod common;
use common::*;

async fn edge(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    body: Value,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut req = app
        .client
        .post(format!("{}{path}", app.edge_url))
        .json(&body)
        .header("user-agent", "defguard-desktop/1.3 <b>")
        .header("defguard-client-version", "1.3.0")
        .header("defguard-client-platform", "windows");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let text = r.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }, headers)
}

async fn started(app: &TestApp, token: &str) {
    let (s, v, _) = edge(app, "/api/v1/enrollment/start", None, json!({ "token": token })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn issue(app: &TestApp, user: &str) -> String {
    let (_, v) = app.call("POST", &format!("/api/v1/user/{user}/start_enrollment"), Some(json!({}))).await;
    v["enrollment_token"].as_str().unwrap().to_owned()
}

on_both_backends!(desktop_client_flow_over_http, refusals_over_http);

async fn desktop_client_flow_over_http(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    app.create_location("office", "10.1.0.1/24").await;
    let token = issue(&app, "ann").await;
    let (s, start, h) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": token})).await;
    assert_eq!(s, StatusCode::OK, "{start}");
    for key in ["admin", "user", "deadline_timestamp", "final_page_content", "instance", "settings"] {
        assert!(start.get(key).is_some(), "{key} missing: {start}");
    }
    assert_eq!(start["user"]["login"], "ann");
    assert_eq!(start["user"]["phone_number"], Value::Null);
    let set_cookie = h.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(
        set_cookie.starts_with("defguard_proxy=")
            && set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Strict")
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    // Desktop clients: create_device first (cookie only), activation last.
    let key = pubkey(1);
    let (s, dev, _) =
        edge(&app, "/api/v1/enrollment/create_device", Some(&cookie), json!({"name": "laptop", "pubkey": key})).await;
    assert_eq!(s, StatusCode::OK, "{dev}");
    assert_eq!(dev["configs"][0]["assigned_ip"], "10.1.0.2");
    assert_eq!(dev["configs"][0]["keepalive_interval"], 25);
    assert!(dev["configs"][0]["config"].as_str().unwrap().contains("YOUR_PRIVATE_KEY"));
    let polling = dev["token"].as_str().unwrap().to_owned();
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/create_device", Some(&cookie), json!({"name": "laptop", "pubkey": pubkey(2)}))
            .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "duplicate device name is a 400: {v}");
    assert!(v["error"].as_str().unwrap().contains("laptop"));
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/create_device", Some(&cookie), json!({"name": "x", "pubkey": "bad"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v, _) = edge(&app, "/api/v1/enrollment/activate_user", Some(&cookie), json!({"password": "weak"})).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("password not strong enough")));
    let (s, v, _) = edge(
        &app,
        "/api/v1/enrollment/activate_user",
        Some(&cookie),
        json!({"password": "Str0ng!Pass", "phone_number": null}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The token in the body works as well as the cookie.
    let (s, info, _) =
        edge(&app, "/api/v1/enrollment/network_info", None, json!({"pubkey": key, "token": token})).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    let rotated = info["token"].as_str().unwrap().to_owned();
    let (s, v, _) = edge(&app, "/api/v1/poll", None, json!({"token": polling})).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid token")),
        "old polling token after rotation"
    );
    let (s, v, _) = edge(&app, "/api/v1/poll", None, json!({"token": rotated})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["device_config"]["device"]["pubkey"], key);
    // Audit carries the client address and a sanitised user agent.
    let (_, ev) = app.call("GET", "/api/v1/audit?action=enrollment.completed", None).await;
    assert_eq!(
        (ev[0]["ip"].as_str(), ev[0]["user_agent"].as_str()),
        (Some("127.0.0.1"), Some("defguard-desktop/1.3 b"))
    );
    assert_eq!(ev[0]["details"]["client"], "1.3.0 on windows", "{ev}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_errors_and_bad_requests() {
    let app = TestApp::builder(Backend::Sqlite).manual_clock().spawn().await;
    let clock = app.clock.clone().unwrap();
    app.create_user("ann").await;
    app.create_user("bob").await;
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/start", None, json!({"token": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})).await;
    assert_eq!(
        (s, v["error"].as_str(), v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid token"), Some("invalid_token"))
    );
    let (_, t) =
        app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({"token_expiration_time": "1h"}))).await;
    clock.advance(3600);
    let (s, v, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": t["enrollment_token"]})).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("token expired")));
    assert!(v["detail"].as_str().unwrap().contains("administrator"));
    // Session ends after 10 minutes.
    let t = issue(&app, "bob").await;
    let (s, _, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": t})).await;
    assert_eq!(s, StatusCode::OK);
    clock.advance(601);
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/activate_user", None, json!({"password": "Str0ng!Pass", "token": t})).await;
    assert_eq!(
        (s, v["error"].as_str(), v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid token"), Some("session_expired"))
    );
    // No session at all, malformed bodies, unknown paths.
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/create_device", None, json!({"name": "x", "pubkey": pubkey(3)})).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid token")));
    let r = app
        .client
        .post(format!("{}/api/v1/enrollment/start", app.edge_url))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.unwrap()["error"].as_str().unwrap().starts_with("invalid request"));
    let r = app
        .client
        .post(format!("{}/api/v1/enrollment/start", app.edge_url))
        .json(&json!({"token": "x".repeat(70_000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = app.client.get(format!("{}/api/v1/nope", app.edge_url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Health, info and security headers.
    let r = app.client.get(format!("{}/api/v1/health", app.edge_url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for h in ["content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy"] {
        assert!(r.headers().get(h).is_some(), "{h}");
    }
    let v: Value = app.client.get(format!("{}/api/v1/info", app.edge_url)).send().await.unwrap().json().await.unwrap();
    assert!(v["version"].is_string());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let app = TestApp::builder(Backend::Sqlite).edge_rate_limit(2).spawn().await;
    let mut limited = None;
    for _ in 0..20 {
        let r = app.client.get(format!("{}/api/v1/info", app.edge_url)).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("no 429 after 20 quick requests at 2/s");
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "too many requests; slow down");
    app.stop().await;
}

/// The refusals of PROTOCOL.md section 3 as a client sees them over HTTP: status, the
/// `error` message clients match on, and the machine-readable `code`.
async fn refusals_over_http(b: Backend) {
    let app = TestApp::builder(b).edge_trusted_proxies(&["127.0.0.0/8"]).spawn().await;
    for u in ["ann", "bob", "cid", "dan"] {
        app.create_user(u).await;
    }
    app.create_location("office", "10.1.0.1/24").await;
    let expect = |got: (StatusCode, Value, reqwest::header::HeaderMap), status: StatusCode, code: &str| {
        assert_eq!((got.0, got.1["code"].as_str()), (status, Some(code)), "{}", got.1);
        assert!(got.1["error"].as_str().is_some_and(|m| !m.is_empty()), "{}", got.1);
        got.1
    };
    let (ta, tb) = (issue(&app, "ann").await, issue(&app, "bob").await);
    started(&app, &ta).await;
    started(&app, &tb).await;
    let key = pubkey(11);
    let dev = |t: &str, name: &str, k: &str| json!({"name": name, "pubkey": k, "token": t});
    let (s, v, _) = edge(&app, "/api/v1/enrollment/create_device", None, dev(&ta, "laptop", &key)).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Bob cannot register Ann's public key, nor a key that is not a WireGuard key.
    let r = edge(&app, "/api/v1/enrollment/create_device", None, dev(&tb, "pc", &key)).await;
    let v = expect(r, StatusCode::BAD_REQUEST, "conflict");
    assert!(v["error"].as_str().unwrap().contains("public key"), "{v}");
    for bad in ["", "not-a-key", "AAAA", &"A".repeat(44)] {
        let r = edge(&app, "/api/v1/enrollment/create_device", None, dev(&tb, "pc", bad)).await;
        expect(r, StatusCode::BAD_REQUEST, "invalid_input");
    }
    // network_info with another user's device, and with a key nobody registered.
    let r = edge(&app, "/api/v1/enrollment/network_info", None, json!({"pubkey": key, "token": tb})).await;
    expect(r, StatusCode::FORBIDDEN, "forbidden");
    let r = edge(&app, "/api/v1/enrollment/network_info", None, json!({"pubkey": pubkey(12), "token": tb})).await;
    assert!(r.0.is_client_error(), "{}", r.1);

    // A token that was issued again is revoked: the old one is refused, and says why.
    let old = issue(&app, "cid").await;
    let fresh = issue(&app, "cid").await;
    let r = edge(&app, "/api/v1/enrollment/start", None, json!({ "token": old })).await;
    let v = expect(r, StatusCode::UNAUTHORIZED, "token_revoked");
    assert_eq!(v["error"], "invalid token");
    // A disabled user's session stops at once, and the user cannot start again.
    started(&app, &fresh).await;
    app.call("PUT", "/api/v1/user/cid", Some(json!({"is_active": false}))).await;
    let r = edge(&app, "/api/v1/enrollment/create_device", None, dev(&fresh, "pc", &pubkey(13))).await;
    expect(r, StatusCode::FORBIDDEN, "user_disabled");
    let r = edge(&app, "/api/v1/enrollment/start", None, json!({ "token": fresh })).await;
    expect(r, StatusCode::FORBIDDEN, "user_disabled");

    // Activation, repeated (a client whose answer was lost sends it again: the same
    // password is answered 200, another is refused), then a desktop-configuration token
    // for the enrolled user: no password step (activate_user is refused), a device is
    // registered.
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/activate_user", None, json!({"password": "Str0ng!Pass", "token": ta})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/activate_user", None, json!({"password": "Str0ng!Pass", "token": ta})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = edge(&app, "/api/v1/enrollment/activate_user", None, json!({"password": "Oth3r!Pass", "token": ta})).await;
    expect(r, StatusCode::BAD_REQUEST, "already_activated");
    let (s, d) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let td = d["enrollment_token"].as_str().unwrap().to_owned();
    let (s, v, _) = edge(&app, "/api/v1/enrollment/start", None, json!({ "token": td })).await;
    assert_eq!((s, v["user"]["enrolled"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    let r = edge(&app, "/api/v1/enrollment/activate_user", None, json!({"password": "Other0ne!x", "token": td})).await;
    expect(r, StatusCode::BAD_REQUEST, "already_activated");
    let (s, v, _) = edge(&app, "/api/v1/enrollment/create_device", None, dev(&td, "desktop", &pubkey(14))).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Behind a trusted proxy the audit log records the forwarded client address (the
    // rightmost hop the proxy appended, not what the client claimed on the left).
    let (_, ev) = app.call("GET", "/api/v1/audit?action=enrollment.started", None).await;
    assert!(ev.as_array().unwrap().iter().all(|e| e["ip"] == "127.0.0.1"), "{ev}");
    let tdan = issue(&app, "dan").await;
    let r = app
        .client
        .post(format!("{}/api/v1/enrollment/start", app.edge_url))
        .header("x-forwarded-for", "203.0.113.5, 198.51.100.77")
        .json(&json!({ "token": tdan }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, ev) = app.call("GET", "/api/v1/audit?action=enrollment.started", None).await;
    let dan: Vec<&Value> = ev.as_array().unwrap().iter().filter(|e| e["ip"] == "198.51.100.77").collect();
    assert_eq!(dan.len(), 1, "{ev}");
    app.stop().await;
}
