//! Every route answers bad input with a 4xx and the error envelope, never a 5xx, and
//! writes nothing.

mod common;
use common::*;

/// Routes that take a JSON body, with a valid body for reference.
fn body_routes() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "POST",
            "/api/v1/user",
            json!({"username": "new", "first_name": "N", "last_name": "U", "email": "new@example.com"}),
        ),
        ("PUT", "/api/v1/user/ann", json!({"first_name": "A"})),
        ("POST", "/api/v1/user/ann/start_enrollment", json!({"send_enrollment_notification": false})),
        ("POST", "/api/v1/user/ann/start_desktop", json!({"token_expiration_time": "1d"})),
        ("POST", "/api/v1/provisioning/bulk", json!({"group": "staff"})),
        ("POST", "/api/v1/group", json!({"name": "g2"})),
        ("PUT", "/api/v1/group/staff", json!({"name": "staff2"})),
        ("POST", "/api/v1/group/staff/member", json!({"username": "ann"})),
        (
            "POST",
            "/api/v1/location",
            json!({"name": "l2", "address": "10.9.0.1/24", "endpoint": "vpn.example.com", "port": 51820}),
        ),
        (
            "PUT",
            "/api/v1/location/1",
            json!({"name": "l2", "address": "10.9.0.1/24", "endpoint": "vpn.example.com", "port": 51820}),
        ),
        (
            "POST",
            "/api/v1/device",
            json!({"username": "ann", "name": "d2", "pubkey": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
        ),
        ("PUT", "/api/v1/device/1", json!({"name": "d3"})),
        ("PATCH", "/api/v1/settings", json!({"instance_name": "X"})),
        ("POST", "/api/v1/api_token", json!({"name": "t"})),
    ]
}

/// Everything an admin can read, to prove failed requests changed nothing.
async fn snapshot(app: &TestApp) -> Vec<Value> {
    let mut out = vec![];
    for p in [
        "/api/v1/user",
        "/api/v1/group",
        "/api/v1/location",
        "/api/v1/device",
        "/api/v1/settings",
        "/api/v1/api_token",
        "/api/v1/user/ann/tokens",
        "/api/v1/audit?limit=1000",
        "/api/v1/mail",
    ] {
        let (s, mut v) = app.call("GET", p, None).await;
        assert_eq!(s, StatusCode::OK, "{p}: {v}");
        // last_used_at moves with every authenticated call; it is not a write of the request.
        if let Some(a) = v.as_array_mut() {
            for t in a {
                if let Some(o) = t.as_object_mut() {
                    o.remove("last_used_at");
                }
            }
        }
        out.push(v);
    }
    out
}

on_both_backends!(malformed_bodies_on_every_route, missing_and_unknown_fields, invalid_values_and_unknown_ids);

async fn seeded(b: Backend) -> TestApp {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    app.call("POST", "/api/v1/group", Some(json!({"name": "staff", "members": ["ann"]}))).await;
    app.create_location("office", "10.1.0.1/24").await;
    app.call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "d1", "pubkey": pubkey(1)}))).await;
    app
}

fn assert_4xx(what: &str, s: StatusCode, v: &Value) {
    assert!(s.is_client_error(), "{what}: expected 4xx, got {s}: {v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: no error message: {v}");
    assert!(v["code"].as_str().is_some(), "{what}: no code: {v}");
}

async fn malformed_bodies_on_every_route(b: Backend) {
    let app = seeded(b).await;
    let before = snapshot(&app).await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(300 * 1024));
    for (method, path, valid) in body_routes() {
        let wrong: serde_json::Map<String, Value> = valid
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let w = match v {
                    Value::String(_) => json!(5),
                    Value::Number(_) => json!("x"),
                    Value::Bool(_) => json!("yes"),
                    Value::Array(_) => json!(7),
                    _ => json!([]),
                };
                (k.clone(), w)
            })
            .collect();
        let wrong = serde_json::to_vec(&wrong).unwrap();
        let cases: Vec<(&str, Option<&str>, Vec<u8>, StatusCode)> = vec![
            ("malformed", Some("application/json"), b"{\"name\": ".to_vec(), StatusCode::BAD_REQUEST),
            ("not an object", Some("application/json"), b"[1, 2, 3]".to_vec(), StatusCode::BAD_REQUEST),
            ("wrong types", Some("application/json"), wrong, StatusCode::BAD_REQUEST),
            ("oversized", Some("application/json"), big.clone().into_bytes(), StatusCode::PAYLOAD_TOO_LARGE),
            ("not JSON", Some("text/plain"), b"name=x".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ];
        for (what, ct, body, expected) in cases {
            let (s, v) = app.raw(method, path, ct, body).await;
            assert_4xx(&format!("{method} {path} {what}"), s, &v);
            assert_eq!(s, expected, "{method} {path} {what}: {v}");
        }
    }
    assert_eq!(before, snapshot(&app).await, "a rejected request changed data");
    app.stop().await;
}

/// Required keys per route (the others in `body_routes` are optional).
fn required(path: &str) -> &'static [&'static str] {
    match path {
        "/api/v1/user" => &["username", "first_name", "last_name", "email"],
        "/api/v1/group" => &["name"],
        "/api/v1/group/staff/member" => &["username"],
        "/api/v1/location" | "/api/v1/location/1" => &["name", "address", "endpoint", "port"],
        "/api/v1/device" => &["username", "name", "pubkey"],
        "/api/v1/device/1" => &["name"],
        "/api/v1/api_token" => &["name"],
        _ => &[],
    }
}

async fn missing_and_unknown_fields(b: Backend) {
    let app = seeded(b).await;
    let before = snapshot(&app).await;
    for (method, path, valid) in body_routes() {
        let obj = valid.as_object().unwrap();
        for key in required(path) {
            let mut partial = obj.clone();
            partial.remove(*key);
            let (s, v) = app.call(method, path, Some(Value::Object(partial))).await;
            assert_4xx(&format!("{method} {path} without {key}"), s, &v);
            assert!(v["error"].as_str().unwrap().contains(key), "{method} {path} without {key}: {v}");
        }
        // Unknown fields are refused rather than silently ignored (a typo loses nothing),
        // except on PROTOCOL.md provisioning bodies, which existing scripts may pad.
        if !path.contains("start_") && path != "/api/v1/user" {
            let mut extra = obj.clone();
            extra.insert("surprise".into(), json!(1));
            let (s, v) = app.call(method, path, Some(Value::Object(extra))).await;
            assert_4xx(&format!("{method} {path} with unknown field"), s, &v);
            assert!(v["error"].as_str().unwrap().contains("surprise"), "{v}");
        }
    }
    assert_eq!(before, snapshot(&app).await, "a rejected request changed data");
    app.stop().await;
}

async fn invalid_values_and_unknown_ids(b: Backend) {
    let app = seeded(b).await;
    let before = snapshot(&app).await;
    let user = |k: &str, v: Value| {
        let mut u = json!({"username": "x1", "first_name": "F", "last_name": "L", "email": "x1@example.com"});
        u[k] = v;
        u
    };
    let loc = |k: &str, v: Value| {
        let mut l = json!({"name": "lx", "address": "10.8.0.1/24", "endpoint": "vpn.example.com", "port": 51820});
        l[k] = v;
        l
    };
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        ("POST", "/api/v1/user", user("email", json!("not-an-email")), "email"),
        ("PUT", "/api/v1/user/ann", json!({"email": "ann@"}), "email"),
        ("POST", "/api/v1/user", user("username", json!("Bad Name")), "username"),
        ("POST", "/api/v1/user", user("username", json!("")), "username"),
        ("POST", "/api/v1/user", user("phone", json!("call me")), "phone"),
        ("POST", "/api/v1/user", user("first_name", json!("   ")), "first_name"),
        ("POST", "/api/v1/user", user("username", json!("ann")), "username"),
        ("POST", "/api/v1/location", loc("address", json!("10.8.0.1/33")), "address"),
        ("POST", "/api/v1/location", loc("address", json!("10.8.0.0/24")), "address"),
        ("POST", "/api/v1/location", loc("address", json!("10.8.0.1/24,10.8.0.129/25")), "address"),
        ("POST", "/api/v1/location", loc("allowed_ips", json!(["banana"])), "allowed_ips"),
        ("POST", "/api/v1/location", loc("port", json!(70000)), "port"),
        ("POST", "/api/v1/location", loc("endpoint", json!("https://vpn.example.com:51820")), "endpoint"),
        ("POST", "/api/v1/location", loc("dns", json!("not a host!")), "dns"),
        ("POST", "/api/v1/location", loc("pubkey", json!("short")), "pubkey"),
        ("POST", "/api/v1/location", loc("allowed_groups", json!(["nope"])), "allowed_groups"),
        ("POST", "/api/v1/location", loc("name", json!("office")), "name"),
        ("POST", "/api/v1/device", json!({"username": "ann", "name": "d9", "pubkey": "not-base64!"}), "pubkey"),
        ("POST", "/api/v1/device", json!({"username": "ann", "name": "d9", "pubkey": "AAAA"}), "pubkey"),
        ("POST", "/api/v1/group", json!({"name": "staff"}), "name"),
        ("PATCH", "/api/v1/settings", json!({"public_url": "not a url"}), "public_url"),
        ("PATCH", "/api/v1/settings", json!({"smtp": {"port": 0, "host": "x"}}), "smtp"),
        (
            "PATCH",
            "/api/v1/settings",
            json!({"enrollment": {"token_lifetime_secs": 5}}),
            "enrollment.token_lifetime_secs",
        ),
    ];
    for (method, path, body, field) in cases {
        let (s, v) = app.call(method, path, Some(body.clone())).await;
        assert_4xx(&format!("{method} {path} {body}"), s, &v);
        let named =
            v["field"].as_str().is_some_and(|f| f.starts_with(field)) || v["error"].as_str().unwrap().contains(field);
        assert!(named, "{method} {path} {body}: error does not name {field}: {v}");
    }
    let unknown: Vec<(&str, &str, Option<Value>, StatusCode)> = vec![
        ("GET", "/api/v1/user/ghost", None, StatusCode::NOT_FOUND),
        ("PUT", "/api/v1/user/ghost", Some(json!({"first_name": "G"})), StatusCode::NOT_FOUND),
        ("DELETE", "/api/v1/user/ghost", None, StatusCode::NOT_FOUND),
        ("POST", "/api/v1/user/ghost/start_enrollment", Some(json!({})), StatusCode::NOT_FOUND),
        ("POST", "/api/v1/user/ghost/start_desktop", Some(json!({})), StatusCode::NOT_FOUND),
        ("DELETE", "/api/v1/user/ghost/tokens", None, StatusCode::NOT_FOUND),
        ("GET", "/api/v1/user/ghost/tokens", None, StatusCode::NOT_FOUND),
        ("DELETE", "/api/v1/user/ann/tokens/999", None, StatusCode::NOT_FOUND),
        ("DELETE", "/api/v1/user/ann/tokens/abc", None, StatusCode::BAD_REQUEST),
        ("GET", "/api/v1/group/ghost", None, StatusCode::NOT_FOUND),
        ("DELETE", "/api/v1/group/ghost", None, StatusCode::NOT_FOUND),
        ("POST", "/api/v1/group/ghost/member", Some(json!({"username": "ann"})), StatusCode::NOT_FOUND),
        ("POST", "/api/v1/group/staff/member", Some(json!({"username": "ghost"})), StatusCode::NOT_FOUND),
        ("DELETE", "/api/v1/group/staff/member/ghost", None, StatusCode::NOT_FOUND),
        ("GET", "/api/v1/location/999", None, StatusCode::NOT_FOUND),
        ("GET", "/api/v1/location/abc", None, StatusCode::BAD_REQUEST),
        ("DELETE", "/api/v1/location/999", None, StatusCode::NOT_FOUND),
        ("GET", "/api/v1/device/999", None, StatusCode::NOT_FOUND),
        ("GET", "/api/v1/device?username=ghost", None, StatusCode::NOT_FOUND),
        (
            "POST",
            "/api/v1/device",
            Some(json!({"username": "ghost", "name": "d", "pubkey": pubkey(3)})),
            StatusCode::NOT_FOUND,
        ),
        ("DELETE", "/api/v1/device/999", None, StatusCode::NOT_FOUND),
        ("PUT", "/api/v1/device/999", Some(json!({"name": "x"})), StatusCode::NOT_FOUND),
        ("DELETE", "/api/v1/api_token/999", None, StatusCode::NOT_FOUND),
        ("POST", "/api/v1/mail/999/retry", None, StatusCode::NOT_FOUND),
        ("POST", "/api/v1/provisioning/bulk", Some(json!({"group": "ghost"})), StatusCode::NOT_FOUND),
        ("POST", "/api/v1/provisioning/bulk", Some(json!({})), StatusCode::BAD_REQUEST),
        ("GET", "/api/v1/audit?since=yesterday", None, StatusCode::BAD_REQUEST),
    ];
    for (method, path, body, expected) in unknown {
        let (s, v) = app.call(method, path, body).await;
        assert_4xx(&format!("{method} {path}"), s, &v);
        assert_eq!(s, expected, "{method} {path}: {v}");
    }
    assert_eq!(before, snapshot(&app).await, "a rejected request changed data");
    app.stop().await;
}
