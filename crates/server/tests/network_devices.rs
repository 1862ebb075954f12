//! Network devices (headless machines of one location, no user) on both backends: the
//! admin API and CLI, the `network_device` token, enrollment through the real edge HTTP
//! API exactly as a foreign headless CLI does it (start, create_device with an empty name,
//! poll), enrollment with the real `onramp-client` binary, token errors, the gateway peer
//! set, and tokens of users and devices that leave each other alone.

mod common;
use common::*;
use onramp_core::gateways::peers::{apply, PeerSet};
use onramp_core::Core;
use onramp_proto::gateway::{GatewayControl, GatewayHello, UpdateSource};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_onramp");

on_both_backends!(
    create_list_delete_and_bad_input,
    foreign_headless_cli_enrolls_over_http,
    onramp_client_enrolls_a_network_device,
    token_errors_match_user_tokens,
    gateway_serves_network_devices,
    user_and_device_tokens_do_not_revoke_each_other,
    admin_cli_commands
);

/// POSTs to the public edge as a client does; returns status, JSON body and headers.
async fn edge(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    body: Value,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut req = app.client.post(format!("{}{path}", app.edge_url)).json(&body).header("user-agent", "dg/1.4");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let text = r.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }, headers)
}

/// `enrollment/start` that must succeed; returns the answer and the `defguard_proxy=...`
/// cookie, copied by hand as headless clients do.
async fn start(app: &TestApp, token: &str) -> (Value, String) {
    let (s, v, h) = edge(app, "/api/v1/enrollment/start", None, json!({ "token": token })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let set_cookie = h.get("set-cookie").expect("start sets the session cookie").to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("defguard_proxy="), "{set_cookie}");
    (v, cookie)
}

async fn create_device(app: &TestApp, body: Value) -> Value {
    let (s, v) = app.call("POST", "/api/v1/device/network", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn start_cli(app: &TestApp, device_id: i64) -> String {
    let (s, v) = app.call("POST", "/api/v1/device/network/start_cli", Some(json!({ "device_id": device_id }))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["enrollment_url"], "https://edge.example.com/", "{v}");
    let token = v["enrollment_token"].as_str().unwrap().to_owned();
    assert!(token.len() == 32 && token.chars().all(|c| c.is_ascii_alphanumeric()), "{token}");
    token
}

async fn create_device_and_token(app: &TestApp, location_id: i64, name: &str) -> (i64, String) {
    let d = create_device(app, json!({"name": name, "description": "rack 3", "location_id": location_id})).await;
    let id = d["id"].as_i64().unwrap();
    (id, start_cli(app, id).await)
}

async fn create_list_delete_and_bad_input(b: Backend) {
    let app = TestApp::spawn(b).await;
    let loc = app.create_location("office", "10.40.0.1/24").await;
    let lid = loc["id"].as_i64().unwrap();
    // A user device first, so allocation has something to step over.
    app.create_user("ann").await;
    let (s, v) = app
        .call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "laptop", "pubkey": pubkey(1)})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["configs"][0]["assigned_ip"], "10.40.0.2");

    // Without assigned_ips: the next free address of the location, allocated like a user device's.
    let router = create_device(&app, json!({"name": "router", "description": "edge router", "location_id": lid})).await;
    assert_eq!(router["assigned_ips"], json!(["10.40.0.3"]), "{router}");
    assert_eq!((&router["location_name"], &router["description"]), (&json!("office"), &json!("edge router")));
    assert_eq!((&router["configured"], &router["pubkey"]), (&json!(false), &Value::Null), "{router}");
    // With assigned_ips: exactly those.
    let nas = create_device(&app, json!({"name": "nas", "location_id": lid, "assigned_ips": ["10.40.0.50"]})).await;
    assert_eq!(nas["assigned_ips"], json!(["10.40.0.50"]), "{nas}");
    // The allocator steps over the chosen address too.
    let (s, dev) = app
        .call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "phone", "pubkey": pubkey(2)})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dev}");
    assert_eq!(dev["configs"][0]["assigned_ip"], "10.40.0.4");

    // Bad input: each a clear 400 (or 404, 409) that names the problem, and nothing is stored.
    let bad = [
        (json!({"name": "x1", "location_id": lid, "assigned_ips": ["10.99.0.5"]}), "outside the subnets"),
        (json!({"name": "x2", "location_id": lid, "assigned_ips": ["10.40.0.1"]}), "gateway"),
        (json!({"name": "x3", "location_id": lid, "assigned_ips": ["10.40.0.50"]}), "already used"),
        (json!({"name": "x4", "location_id": lid, "assigned_ips": ["10.40.0.2"]}), "already used"),
        (json!({"name": "x5", "location_id": lid, "assigned_ips": ["not-an-ip"]}), "not an IP address"),
        (json!({"name": "x6", "location_id": lid, "assigned_ips": ["10.40.0.9", "10.40.0.9"]}), "twice"),
    ];
    for (body, words) in bad {
        let (s, v) = app.call("POST", "/api/v1/device/network", Some(body.clone())).await;
        assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input", "{body}");
        assert_eq!(v["field"], "assigned_ips", "{v}");
        assert!(v["error"].as_str().unwrap().contains(words), "{body}: {v}");
    }
    let (s, v) = app.call("POST", "/api/v1/device/network", Some(json!({"name": "x", "location_id": 9999}))).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    assert!(v["error"].as_str().unwrap().contains("location"), "{v}");
    let (s, v) = app.call("POST", "/api/v1/device/network", Some(json!({"name": "router", "location_id": lid}))).await;
    assert_eq!(error_code(s, &v, StatusCode::CONFLICT), "conflict");
    assert!(v["error"].as_str().unwrap().contains("router"), "{v}");
    let (s, v) = app.call("POST", "/api/v1/device/network", Some(json!({"name": "", "location_id": lid}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    let (s, v) = app.call("POST", "/api/v1/device/network", Some(json!({"name": "y", "location": "office"}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_body");

    let (s, list) = app.call("GET", "/api/v1/device/network", None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["router", "nas"]);
    let (s, one) = app.call("GET", &format!("/api/v1/device/network/{}", nas["id"]), None).await;
    assert_eq!((s, &one["name"]), (StatusCode::OK, &json!("nas")));
    // A user device is not a network device.
    let (s, v) = app.call("GET", &format!("/api/v1/device/network/{}", dev["id"]), None).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");

    // The admin device listing shows network devices too, without a user, and does not break.
    let (s, all) = app.call("GET", "/api/v1/device", None).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    let listed = all.as_array().unwrap().iter().find(|d| d["name"] == "router").expect("router listed").clone();
    assert_eq!((&listed["user_id"], &listed["username"]), (&Value::Null, &json!("")), "{listed}");
    assert_eq!(listed["configs"][0]["assigned_ip"], "10.40.0.3", "{listed}");
    let (s, v) = app.call("GET", &format!("/api/v1/device/{}", router["id"]), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let (s, v) = app.call("DELETE", &format!("/api/v1/device/network/{}", nas["id"]), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = app.call("DELETE", &format!("/api/v1/device/network/{}", nas["id"]), None).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    // Its address is free again.
    let again = create_device(&app, json!({"name": "nas2", "location_id": lid, "assigned_ips": ["10.40.0.50"]})).await;
    assert_eq!(again["assigned_ips"], json!(["10.40.0.50"]));

    for action in ["network_device.added", "network_device.deleted"] {
        let (_, audit) = app.call("GET", &format!("/api/v1/audit?action={action}"), None).await;
        assert!(!audit.as_array().unwrap().is_empty(), "{action} audited: {audit}");
    }
    // Deleting the location deletes its network devices.
    let (s, v) = app.call("DELETE", &format!("/api/v1/location/{lid}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (_, list) = app.call("GET", "/api/v1/device/network", None).await;
    assert_eq!(list, json!([]));
    app.stop().await;
}

/// Exactly what a foreign headless CLI sends: `start` with the token, `create_device` with
/// an EMPTY name and its own key (cookie copied by hand), then `poll` with the polling token.
async fn foreign_headless_cli_enrolls_over_http(b: Backend) {
    let app = TestApp::spawn(b).await;
    let loc = app.create_location("office", "10.41.0.1/24").await;
    let lid = loc["id"].as_i64().unwrap();
    let (device_id, token) = create_device_and_token(&app, lid, "router").await;

    let (st, cookie) = start(&app, &token).await;
    for key in ["admin", "user", "deadline_timestamp", "final_page_content", "instance", "settings"] {
        assert!(st.get(key).is_some(), "{key} missing: {st}");
    }
    assert_eq!(st["user"]["login"], "router", "{st}");
    assert_eq!(st["user"]["first_name"], "router");
    assert_eq!(st["user"]["enrolled"], true, "no password step: {st}");
    assert_eq!(st["user"]["is_active"], true);
    assert_eq!(st["user"]["device_names"], json!([]));
    assert_eq!(st["instance"]["username"], "router");
    assert_eq!(st["admin"]["email"], "admin@example.com", "the issuing admin is the contact: {st}");
    assert!(st["deadline_timestamp"].as_i64().unwrap() > 0);
    // Starting again inside the session is fine (same deadline).
    let (again, _) = start(&app, &token).await;
    assert_eq!(again["deadline_timestamp"], st["deadline_timestamp"]);

    // A network device has no account to activate.
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/activate_user", Some(&cookie), json!({"password": "Str0ng!Pass"})).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("network_device")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("no user account"), "{v}");
    // Before it enrolled, network_info knows no device (a client recovering a lost
    // registration then registers).
    let (s, v, _) = edge(&app, "/api/v1/enrollment/network_info", Some(&cookie), json!({"pubkey": pubkey(6)})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // A bad key is refused and spends nothing.
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/create_device", Some(&cookie), json!({"name": "", "pubkey": "bad"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    let key = pubkey(7);
    let (s, dev, _) =
        edge(&app, "/api/v1/enrollment/create_device", Some(&cookie), json!({"name": "", "pubkey": key})).await;
    assert_eq!(s, StatusCode::OK, "{dev}");
    assert_eq!((&dev["device"]["id"], &dev["device"]["name"]), (&json!(device_id), &json!("router")), "{dev}");
    assert_eq!(dev["device"]["pubkey"], key.as_str());
    assert_eq!(dev["device"]["user_id"], 0, "a number, as PROTOCOL.md has it");
    assert_eq!(dev["configs"].as_array().unwrap().len(), 1, "{dev}");
    assert_eq!(dev["configs"][0]["network_name"], "office");
    assert_eq!(dev["configs"][0]["assigned_ip"], "10.41.0.2");
    assert!(
        dev["configs"][0]["config"].as_str().unwrap().contains("YOUR_PRIVATE_KEY"),
        "the key never left the machine"
    );
    assert_eq!(dev["instance"]["username"], "router");
    let polling = dev["token"].as_str().expect("a polling token").to_owned();

    // A second create_device in that session, with the token in the body or the cookie, is refused.
    for (cookie, body) in [
        (Some(cookie.as_str()), json!({"name": "", "pubkey": pubkey(8)})),
        (None, json!({"name": "", "pubkey": pubkey(9), "token": token})),
        (Some(cookie.as_str()), json!({"name": "", "pubkey": key})),
    ] {
        let (s, v, _) = edge(&app, "/api/v1/enrollment/create_device", cookie, body).await;
        assert_eq!((s, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("session_has_device")), "{v}");
        assert!(v["error"].as_str().unwrap().contains("already enrolled network device \"router\""), "{v}");
    }
    // network_info with its own key works (a client recovering), another key does not.
    let (s, info, _) = edge(&app, "/api/v1/enrollment/network_info", Some(&cookie), json!({"pubkey": key})).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    let polling = info["token"].as_str().map(str::to_owned).unwrap_or(polling);
    let (s, v, _) = edge(&app, "/api/v1/enrollment/network_info", Some(&cookie), json!({"pubkey": pubkey(10)})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    let (s, v, _) = edge(&app, "/api/v1/poll", None, json!({"token": polling})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["device_config"]["device"]["pubkey"], key.as_str());
    assert_eq!(v["device_config"]["configs"][0]["assigned_ip"], "10.41.0.2");

    let (_, d) = app.call("GET", &format!("/api/v1/device/network/{device_id}"), None).await;
    assert_eq!((&d["configured"], &d["pubkey"]), (&json!(true), &json!(key)), "{d}");
    for action in ["network_device_token.added", "enrollment.started", "network_device.enrolled"] {
        let (_, audit) = app.call("GET", &format!("/api/v1/audit?action={action}"), None).await;
        assert_eq!(audit.as_array().unwrap().len(), 1, "{action}: {audit}");
        assert_eq!(audit[0]["subject"], "router", "{audit}");
    }
    let (_, all) = app.call("GET", "/api/v1/audit?limit=1000", None).await;
    assert!(!all.to_string().contains(&token), "a token reached the audit log");

    // Deleting the device ends its polling.
    let (s, _) = app.call("DELETE", &format!("/api/v1/device/network/{device_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v, _) = edge(&app, "/api/v1/poll", None, json!({"token": polling})).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("device_removed")), "{v}");
    app.stop().await;
}

/// The client binary is built by the same `cargo nextest run --workspace` as `onramp`.
fn client_bin() -> PathBuf {
    let p = Path::new(BIN).with_file_name("onramp-client");
    assert!(p.exists(), "{} is missing: build it with `cargo build -p onramp-client`", p.display());
    p
}

/// Runs `onramp-client` with its own data directory, off the async threads.
async fn client(data: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(client_bin());
    c.args(args)
        .env("ONRAMP_CLIENT_DATA_DIR", data)
        .env("ONRAMP_CLIENT_ALLOW_HTTP", "1")
        .env("ONRAMP_CLIENT_RETRIES", "1")
        .env("ONRAMP_CLIENT_SYSTEM_DIR", data.join("no-etc"))
        .env("ONRAMP_CLIENT_SOCKET", data.join("no-service.sock"))
        .env_remove("ONRAMP_TOKEN")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn onramp_client_enrolls_a_network_device(b: Backend) {
    let app = TestApp::spawn(b).await;
    let loc = app.create_location("office", "10.42.0.1/24").await;
    let lid = loc["id"].as_i64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Token from a file (0600), never argv.
    let (device_id, token) = create_device_and_token(&app, lid, "backup-server").await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let file = token_file.to_str().unwrap();
    let (code, out, err) =
        client(&data, &["add-instance", "--url", &app.edge_url, "--token-file", file, "--network-device"], &[]).await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(!out.contains(&token) && !err.contains(&token), "the token was printed");
    let (_, d) = app.call("GET", &format!("/api/v1/device/network/{device_id}"), None).await;
    assert_eq!(d["configured"], true, "{d}");
    assert_eq!(d["name"], "backup-server", "the empty name kept the device's own: {d}");
    let key = d["pubkey"].as_str().unwrap().to_owned();

    // Stored like a user device's instance: status, locations and sync work.
    let (code, out, err) = client(&data, &["status", "--json"], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let status: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let text = status.to_string();
    assert!(text.contains("office") && text.contains("backup-server"), "{status}");
    let (code, out, err) = client(&data, &["locations", "--json"], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("10.42.0.2"), "{out}");
    let (code, out, err) = client(&data, &["sync", "--json"], &[]).await;
    assert_eq!(code, 0, "sync works for a network device: {out}{err}");
    // The key on the server is the one the client made (its private half never left).
    let (code, out, err) = client(&data, &["instances", "--json"], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let instances: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(instances.as_array().unwrap().len(), 1, "{instances}");
    assert_eq!(instances[0]["pubkey"], key.as_str(), "{instances}");
    assert_eq!(
        (&instances[0]["device_name"], &instances[0]["device_id"]),
        (&json!("backup-server"), &json!(device_id))
    );

    // The same token again (from ONRAMP_TOKEN this time) on another machine: refused clearly.
    let other = dir.path().join("other");
    let (code, out, err) =
        client(&other, &["add-instance", "--url", &app.edge_url, "--network-device"], &[("ONRAMP_TOKEN", &token)])
            .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("this token already enrolled network device \"backup-server\""), "{err}");

    // A second device through standard input.
    let (second, token2) = create_device_and_token(&app, lid, "printer").await;
    let mut c = Command::new(client_bin());
    c.args(["add-instance", "--url", &app.edge_url, "--network-device"])
        .env("ONRAMP_CLIENT_DATA_DIR", dir.path().join("third"))
        .env("ONRAMP_CLIENT_ALLOW_HTTP", "1")
        .env("ONRAMP_CLIENT_SYSTEM_DIR", dir.path().join("no-etc"))
        .env("ONRAMP_CLIENT_SOCKET", dir.path().join("no-service.sock"))
        .env_remove("ONRAMP_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(format!("{token2}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, d) = app.call("GET", &format!("/api/v1/device/network/{second}"), None).await;
    assert_eq!((&d["configured"], &d["name"]), (&json!(true), &json!("printer")), "{d}");
    app.stop().await;
}

/// Expired, used, revoked and unknown tokens give the same answers as user tokens.
async fn token_errors_match_user_tokens(b: Backend) {
    let app = TestApp::builder(b).manual_clock().spawn().await;
    let clock = app.clock.clone().unwrap();
    let loc = app.create_location("office", "10.43.0.1/24").await;
    let lid = loc["id"].as_i64().unwrap();
    app.create_user("ann").await;
    let user_token = |v: Value| v["enrollment_token"].as_str().unwrap().to_owned();

    // Expired: the same status, message and detail as a user's expired token.
    let d = create_device(&app, json!({"name": "r1", "location_id": lid})).await;
    let (s, t) = app
        .call(
            "POST",
            "/api/v1/device/network/start_cli",
            Some(json!({"device_id": d["id"], "token_expiration_time": "1h"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let expired_dev = t["enrollment_token"].as_str().unwrap().to_owned();
    let (_, u) =
        app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({"token_expiration_time": "1h"}))).await;
    let expired_user = user_token(u);
    clock.advance(3600);
    let (sd, vd, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": expired_dev})).await;
    let (su, vu, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": expired_user})).await;
    assert_eq!(
        (sd, vd["error"].as_str(), vd["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token expired"), Some("token_expired"))
    );
    assert_eq!((su, &vu["error"], &vu["code"], &vu["detail"]), (sd, &vd["error"], &vd["code"], &vd["detail"]));

    // Used: after the session ended, a used token says so, like a user's.
    let (_, used_dev) = create_device_and_token(&app, lid, "r2").await;
    let (_, cookie) = start(&app, &used_dev).await;
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/create_device", Some(&cookie), json!({"name": "", "pubkey": pubkey(20)})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, u) = app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    let used_user = user_token(u);
    let (_, ucookie) = start(&app, &used_user).await;
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/create_device", Some(&ucookie), json!({"name": "pc", "pubkey": pubkey(21)}))
            .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/activate_user", Some(&ucookie), json!({"password": "Str0ng!Pass"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    clock.advance(601);
    let (sd, vd, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": used_dev})).await;
    let (su, vu, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": used_user})).await;
    assert_eq!(
        (sd, vd["error"].as_str(), vd["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid token"), Some("token_used"))
    );
    assert_eq!((su, &vu["error"], &vu["code"], &vu["detail"]), (sd, &vd["error"], &vd["code"], &vd["detail"]));
    // A used token's session that ended: create_device says the session ended.
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/create_device", Some(&cookie), json!({"name": "", "pubkey": pubkey(22)})).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid token")), "{v}");

    // Revoked: a newer token of the same device revokes the older, as for a user.
    let d3 = create_device(&app, json!({"name": "r3", "location_id": lid})).await;
    let id3 = d3["id"].as_i64().unwrap();
    let old_dev = start_cli(&app, id3).await;
    let _new_dev = start_cli(&app, id3).await;
    let (_, u) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    let old_user = user_token(u);
    let (_, _) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    let (sd, vd, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": old_dev})).await;
    let (su, vu, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": old_user})).await;
    assert_eq!(
        (sd, vd["error"].as_str(), vd["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid token"), Some("token_revoked"))
    );
    assert_eq!((su, &vu["error"], &vu["code"], &vu["detail"]), (sd, &vd["error"], &vd["code"], &vd["detail"]));
    // Revoked by hand (API, then CLI), with the same answer.
    let by_hand = start_cli(&app, id3).await;
    let (s, v) = app.call("DELETE", &format!("/api/v1/device/network/{id3}/tokens"), None).await;
    assert_eq!((s, &v["revoked"]), (StatusCode::OK, &json!(1)), "{v}");
    let (s, v, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": by_hand})).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("token_revoked")), "{v}");
    let (s, v) = app.call("DELETE", "/api/v1/device/network/9999/tokens", None).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    let (_, audit) = app.call("GET", "/api/v1/audit?action=network_device_token.revoked", None).await;
    assert_eq!(audit.as_array().unwrap().len(), 1, "{audit}");
    // Deleting the device revokes its token.
    let live = start_cli(&app, id3).await;
    app.call("DELETE", &format!("/api/v1/device/network/{id3}"), None).await;
    let (s, v, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": live})).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("token_revoked")), "{v}");

    // Unknown, and start_cli for something that is not a network device.
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/start", None, json!({"token": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")));
    let (s, v) = app.call("POST", "/api/v1/device/network/start_cli", Some(json!({"device_id": 9999}))).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    let (s, v) = app.call("POST", "/api/v1/device/network/start_cli", Some(json!({"device_id": id3, "x": 1}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_body");
    app.stop().await;
}

const SOON: Duration = Duration::from_secs(3);

/// What a gateway holds after the messages it was sent.
struct Mirror {
    updates: Box<dyn UpdateSource>,
    peers: PeerSet,
}

impl Mirror {
    async fn until(&mut self, what: &str, pred: impl Fn(&PeerSet) -> bool) {
        let deadline = tokio::time::Instant::now() + SOON;
        while !pred(&self.peers) {
            match tokio::time::timeout_at(deadline, self.updates.next()).await {
                Ok(Some(m)) => apply(&mut self.peers, &m),
                Ok(None) => panic!("session ended while waiting for: {what}"),
                Err(_) => panic!("not within {SOON:?}: {what}; gateway holds {:?}", self.peers),
            }
        }
    }
}

async fn gateway(core: &Core, app: &TestApp, location_id: i64) -> Mirror {
    let (s, v) = app.call("POST", &format!("/api/v1/location/{location_id}/gateway_token"), None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let hello = GatewayHello { pubkey: pubkey(90), version: "1".into(), hostname: "gw".into(), rotate_key: false };
    let session = core.open(v["token"].as_str().unwrap().into(), hello, None).await.map_err(|r| r.message).unwrap();
    Mirror { updates: session.updates, peers: PeerSet::new() }
}

fn has(peers: &PeerSet, key: &str, ip: &str) -> bool {
    peers.get(key).is_some_and(|ips| ips == &vec![format!("{ip}/32")])
}

/// Network devices are peers of their location's gateway once enrolled, whatever users and
/// groups do; deleting one removes the peer; another location's gateway never has them.
async fn gateway_serves_network_devices(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (s, v) = app.call("POST", "/api/v1/group", Some(json!({"name": "staff"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // A location limited to a group: its user rules must not hide a network device.
    let (s, loc) = app
        .call(
            "POST",
            "/api/v1/location",
            Some(json!({"name": "office", "address": "10.44.0.1/24", "endpoint": "vpn.example.com", "port": 51820,
                        "allowed_groups": ["staff"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{loc}");
    let lid = loc["id"].as_i64().unwrap();
    let lab = app.create_location("lab", "10.45.0.1/24").await;
    let mut office = gateway(&app.core, &app, lid).await;

    // Created but not enrolled: no key, no peer.
    let (device_id, token) = create_device_and_token(&app, lid, "router").await;
    let (_, cookie) = start(&app, &token).await;
    assert!(app.core.store().gateway_peers(lid).await.unwrap().is_empty());

    let key = pubkey(30);
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/create_device", Some(&cookie), json!({"name": "", "pubkey": key})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    office.until("the enrolled network device", |p| has(p, &key, "10.44.0.2")).await;
    assert_eq!(app.core.store().gateway_peers(lid).await.unwrap(), vec![(key.clone(), "10.44.0.2".to_owned())]);

    // A location change (another subnet) reaches it too: it gets an address there as well.
    let (s, v) = app
        .call(
            "PUT",
            &format!("/api/v1/location/{lid}"),
            Some(json!({"name": "office", "address": ["10.44.0.1/24", "10.46.0.1/24"], "endpoint": "vpn.example.com",
                        "port": 51820, "allowed_groups": ["staff"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    office.until("both addresses", |p| p.get(&key).is_some_and(|ips| ips.len() == 2)).await;
    // The other location's gateway never serves it.
    assert!(app.core.store().gateway_peers(lab["id"].as_i64().unwrap()).await.unwrap().is_empty());

    // Deleting it removes the peer.
    let (s, _) = app.call("DELETE", &format!("/api/v1/device/network/{device_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    office.until("the peer removed", |p| p.get(&key).is_none()).await;
    app.stop().await;
}

/// Issuing a user's token leaves a device's alone and the other way round.
async fn user_and_device_tokens_do_not_revoke_each_other(b: Backend) {
    let app = TestApp::spawn(b).await;
    let loc = app.create_location("office", "10.47.0.1/24").await;
    let lid = loc["id"].as_i64().unwrap();
    app.create_user("ann").await;
    let (_, u) = app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    let user_token = u["enrollment_token"].as_str().unwrap().to_owned();
    // The admin who issues device tokens is a user too: their own tokens stay as well.
    let (_, a) = app.call("POST", "/api/v1/user/admin/start_desktop", Some(json!({}))).await;
    let admin_token = a["enrollment_token"].as_str().unwrap().to_owned();
    let (d1, dev_token) = create_device_and_token(&app, lid, "r1").await;
    let (_, other_dev_token) = create_device_and_token(&app, lid, "r2").await;
    // A new user token after the device tokens.
    let (s, v) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let user_token2 = v["enrollment_token"].as_str().unwrap().to_owned();

    // Both device tokens live (another device's token does not revoke them either) ...
    for t in [&dev_token, &other_dev_token] {
        start(&app, t).await;
    }
    // ... the admin's own token too; ann's first token was replaced by her second only.
    start(&app, &admin_token).await;
    start(&app, &user_token2).await;
    let (s, v, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": user_token})).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("token_revoked")), "{v}");
    // Revoking all of ann's tokens leaves the devices' alone; a new device token keeps ann's.
    let (s, v) = app.call("DELETE", "/api/v1/user/ann/tokens", None).await;
    assert!(s.is_success(), "{v}");
    start(&app, &dev_token).await;
    let (_, u) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    let user_token3 = u["enrollment_token"].as_str().unwrap().to_owned();
    start_cli(&app, d1).await;
    start(&app, &user_token3).await;
    app.stop().await;
}

fn admin(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("admin")
        .args(args)
        .env("ONRAMP_DATABASE_URL", &app.database_url)
        .env("ONRAMP_DATA_DIR", data.path())
        .env("ONRAMP_SECRET_KEY_FILE", onramp_testkit::app::shared_key_file())
        .env("ONRAMP_PUBLIC_URL", "https://edge.example.com/")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn admin_cli_commands(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_location("office", "10.48.0.1/24").await;
    let (ok, out, err) = admin(
        &app,
        &["network-device", "create", "--location", "office", "--name", "nas", "--description", "storage", "--json"],
    );
    assert!(ok, "{err}");
    let nas: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(nas["assigned_ips"], json!(["10.48.0.2"]), "{nas}");
    let (ok, out, err) = admin(
        &app,
        &[
            "network-device",
            "create",
            "--location",
            "office",
            "--name",
            "fw",
            "--ip",
            "10.48.0.20",
            "--ip",
            "10.48.0.21",
        ],
    );
    assert!(ok, "{err}");
    let fw_id = out.trim().to_owned();
    assert!(err.contains("10.48.0.20, 10.48.0.21"), "{err}");
    let (ok, _, err) =
        admin(&app, &["network-device", "create", "--location", "office", "--name", "x", "--ip", "10.1.0.9"]);
    assert!(!ok && err.contains("--ip") && err.contains("outside the subnets"), "{err}");
    let (ok, _, err) = admin(&app, &["network-device", "create", "--location", "nowhere", "--name", "x"]);
    assert!(!ok && err.contains("nowhere"), "{err}");

    let (ok, out, err) = admin(&app, &["network-device", "list", "--json"]);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let (ok, out, _) = admin(&app, &["network-device", "list"]);
    assert!(ok && out.contains("nas") && out.contains("waiting") && out.contains("storage"), "{out}");

    // start-cli: the token is the last line of stdout, and it enrolls the device.
    let (ok, out, err) = admin(&app, &["network-device", "start-cli", &fw_id]);
    assert!(ok, "{err}");
    let token = out.lines().last().unwrap().trim().to_owned();
    assert!(token.len() == 32 && token.chars().all(|c| c.is_ascii_alphanumeric()), "{out}");
    assert!(!err.contains(&token), "the token is on stderr too");
    let (_, cookie) = start(&app, &token).await;
    let (s, v, _) =
        edge(&app, "/api/v1/enrollment/create_device", Some(&cookie), json!({"name": "", "pubkey": pubkey(40)})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["configs"][0]["assigned_ip"], "10.48.0.20,10.48.0.21");
    let (ok, out, err) = admin(&app, &["network-device", "start-cli", &nas["id"].to_string(), "--json"]);
    assert!(ok, "{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    assert!(t["enrollment_token"].as_str().is_some_and(|t| t.len() == 32), "{t}");
    assert_eq!(t["enrollment_url"], "https://edge.example.com/");
    let (_, audit) = app.call("GET", "/api/v1/audit?action=network_device_token.added", None).await;
    assert_eq!(audit[0]["actor"], "admin", "{audit}");

    let (ok, _, err) = admin(&app, &["network-device", "revoke-tokens", &nas["id"].to_string()]);
    assert!(ok && err.contains("1 unused token(s)"), "{err}");
    let (s, v, _) = edge(&app, "/api/v1/enrollment/start", None, json!({"token": t["enrollment_token"]})).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("token_revoked")), "{v}");

    let (ok, _, err) = admin(&app, &["network-device", "delete", &fw_id]);
    assert!(ok, "{err}");
    let (ok, _, err) = admin(&app, &["network-device", "delete", &fw_id]);
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, out, _) = admin(&app, &["network-device", "--help"]);
    assert!(ok && out.contains("start-cli"), "{out}");
    app.stop().await;
}
