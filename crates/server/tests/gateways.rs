//! The control plane of gateways on both backends: tokens (API and CLI), opening a session
//! (refusals, key registration and rotation), the peer set a gateway is given, changes made
//! on one core reaching a session opened on another core over the same database, and the
//! counters a gateway reports as admins see them.

mod common;
use common::*;
use onramp_core::gateways::peers::{apply, PeerSet};
use onramp_core::{Actor, Core};
use onramp_domain::token::TokenSecret;
use onramp_proto::gateway::{
    GatewayControl, GatewayHello, GatewayReporter, GatewaySession, InterfaceSpec, PeerStats, RefusalKind, ToGateway,
    UpdateSource,
};
use std::sync::Arc;
use std::time::Duration;

on_both_backends!(
    tokens_and_refusals,
    key_registration_and_rotation,
    replicas_see_every_change,
    cli_tokens,
    stale_gateway_rows_time_out,
    database_down_is_unavailable
);

const SOON: Duration = Duration::from_secs(2);

fn hello(key: &str, rotate: bool) -> GatewayHello {
    GatewayHello { pubkey: key.into(), version: "1.2.3".into(), hostname: "gw-office".into(), rotate_key: rotate }
}

async fn open(core: &Core, token: &str, key: &str, rotate: bool) -> Result<GatewaySession, (RefusalKind, String)> {
    core.open(token.into(), hello(key, rotate), Some("192.0.2.10:41000".into())).await.map_err(|r| (r.kind, r.message))
}

async fn gateway_token(app: &TestApp, location_id: i64) -> String {
    let (s, v) = app.call("POST", &format!("/api/v1/location/{location_id}/gateway_token"), None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// What a gateway would hold after the messages it was sent.
struct Mirror {
    updates: Box<dyn UpdateSource>,
    interface: Option<InterfaceSpec>,
    peers: PeerSet,
    fulls: usize,
}

impl Mirror {
    fn new(updates: Box<dyn UpdateSource>) -> Self {
        Self { updates, interface: None, peers: PeerSet::new(), fulls: 0 }
    }

    /// Applies messages until `pred` holds; fails after 2 s.
    async fn until(&mut self, what: &str, pred: impl Fn(&Mirror) -> bool) {
        let deadline = tokio::time::Instant::now() + SOON;
        while !pred(self) {
            match tokio::time::timeout_at(deadline, self.updates.next()).await {
                Ok(Some(m)) => {
                    if let ToGateway::Full { interface, .. } = &m {
                        self.interface = Some(interface.clone());
                        self.fulls += 1;
                    }
                    apply(&mut self.peers, &m);
                }
                Ok(None) => panic!("session ended while waiting for: {what}"),
                Err(_) => panic!("not within 2 s: {what}; gateway holds {:?} {:?}", self.interface, self.peers),
            }
        }
    }

    /// The session ends (`next` answers `None`) within 2 s.
    async fn ends(&mut self, what: &str) {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            match tokio::time::timeout_at(deadline, self.updates.next()).await {
                Ok(Some(_)) => continue,
                Ok(None) => return,
                Err(_) => panic!("session did not end within 2 s: {what}"),
            }
        }
    }
}

async fn tokens_and_refusals(b: Backend) {
    let app = TestApp::spawn(b).await;
    let loc = app.create_location("office", "10.20.0.1/24").await;
    let id = loc["id"].as_i64().unwrap();
    let path = format!("/api/v1/location/{id}/gateway_token");

    let (s, first) = app.call("POST", &path, None).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let secret = first["token"].as_str().unwrap();
    assert!(secret.len() == 32 && secret.chars().all(|c| c.is_ascii_alphanumeric()), "{secret}");
    let (s, second) = app.call("POST", &path, Some(json!({"name": "backup"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_eq!(second["name"], "backup");
    let (s, v) = app.call("POST", &path, Some(json!({"nmae": "typo"}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_body");

    let (s, list) = app.call("GET", &path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(secret), "the list shows a secret: {list}");
    assert!(list[0].get("token").is_none() && list[0]["revoked_at"].is_null(), "{list}");

    // Unknown location and token ids say so.
    let (s, v) = app.call("POST", "/api/v1/location/9999/gateway_token", None).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    assert!(v["error"].as_str().unwrap().contains("location"), "{v}");
    let (s, v) = app.call("DELETE", &format!("{path}/9999"), None).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    assert!(v["error"].as_str().unwrap().contains("gateway token"), "{v}");

    // Refusals: malformed, unknown, invalid key; then revoked.
    let gw_key = pubkey(50);
    let (kind, msg) = open(&app.core, "short", &gw_key, false).await.err().unwrap();
    assert_eq!(kind, RefusalKind::Unauthenticated, "{msg}");
    let (kind, msg) = open(&app.core, "Unknown0Token0Of0Thirty0Two0Char", &gw_key, false).await.err().unwrap();
    assert_eq!(kind, RefusalKind::Unauthenticated);
    assert!(msg.contains("unknown gateway token"), "{msg}");
    let (kind, msg) = open(&app.core, secret, "not-a-key", false).await.err().unwrap();
    assert_eq!(kind, RefusalKind::Invalid, "{msg}");
    assert!(msg.contains("public key"), "{msg}");

    let session = open(&app.core, secret, &gw_key, false).await.expect("valid token opens");
    let mut mirror = Mirror::new(session.updates);
    mirror.until("the first Full", |m| m.fulls == 1).await;
    let (s, list) = app.call("GET", &path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(list[0]["last_used_at"].is_i64(), "use is recorded: {list}");

    let token_id = first["id"].as_i64().unwrap();
    let (s, v) = app.call("DELETE", &format!("{path}/{token_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    mirror.ends("its token was revoked").await;
    let (s, v) = app.call("DELETE", &format!("{path}/{token_id}"), None).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    let (kind, msg) = open(&app.core, secret, &gw_key, false).await.err().unwrap();
    assert_eq!(kind, RefusalKind::Unauthenticated);
    assert!(msg.contains("revoked"), "{msg}");
    // The other token still works.
    assert!(open(&app.core, second["token"].as_str().unwrap(), &gw_key, false).await.is_ok());

    let (_, audit) = app.call("GET", "/api/v1/audit?action=gateway_token.created", None).await;
    assert_eq!(audit.as_array().unwrap().len(), 2, "{audit}");
    let (_, audit) = app.call("GET", "/api/v1/audit?action=gateway_token.revoked", None).await;
    assert_eq!(audit.as_array().unwrap().len(), 1, "{audit}");
    let (_, all) = app.call("GET", "/api/v1/audit?limit=1000", None).await;
    assert!(!all.to_string().contains(secret), "a token reached the audit log");
    app.stop().await;
}

async fn key_registration_and_rotation(b: Backend) {
    let app = TestApp::spawn(b).await;
    let loc = app.create_location("office", "10.20.0.1/24").await;
    let id = loc["id"].as_i64().unwrap();
    assert!(loc["pubkey"].is_null() && loc["gateway_connected"] == false, "{loc}");
    app.create_user("ann").await;
    let (s, dev) =
        app.call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "a1", "pubkey": pubkey(1)}))).await;
    assert_eq!(s, StatusCode::CREATED, "{dev}");
    let token = gateway_token(&app, id).await;

    let (k1, k2) = (pubkey(51), pubkey(52));
    let first = open(&app.core, &token, &k1, false).await.expect("first gateway registers its key");
    let mut first_updates = Mirror::new(first.updates);
    first_updates.until("the first Full", |m| m.fulls == 1).await;
    let (_, loc) = app.call("GET", &format!("/api/v1/location/{id}"), None).await;
    assert_eq!(loc["pubkey"], k1.as_str());
    assert_eq!(loc["gateway_connected"], true, "{loc}");
    // Clients get the key through their normal config.
    let (_, dev) = app.call("GET", &format!("/api/v1/device/{}", dev["id"]), None).await;
    assert_eq!(dev["configs"][0]["pubkey"], k1.as_str(), "{dev}");
    assert!(dev["configs"][0]["config"].as_str().unwrap().contains(&k1), "{dev}");
    // An admin edit that does not mention the key keeps it.
    let (s, loc) = app
        .call(
            "PUT",
            &format!("/api/v1/location/{id}"),
            Some(json!({"name": "office", "address": "10.20.0.1/24", "endpoint": "vpn.example.com", "port": 51820})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{loc}");
    assert_eq!(loc["pubkey"], k1.as_str());

    // The same key again is fine; another key is a conflict unless rotating.
    assert!(open(&app.core, &token, &k1, false).await.is_ok());
    let (kind, msg) = open(&app.core, &token, &k2, false).await.err().unwrap();
    assert_eq!(kind, RefusalKind::KeyConflict);
    assert!(msg.contains("location office") && msg.contains("--rotate-key") && msg.contains(&k1[..8]), "{msg}");

    let second = open(&app.core, &token, &k2, true).await.expect("rotation replaces the key");
    let mut second_updates = Mirror::new(second.updates);
    second_updates.until("the rotated gateway's Full", |m| m.fulls == 1 && m.peers.len() == 1).await;
    first_updates.ends("its key was replaced").await;
    let (_, dev) = app.call("GET", &format!("/api/v1/device/{}", dev["id"]), None).await;
    assert_eq!(dev["configs"][0]["pubkey"], k2.as_str(), "{dev}");
    for action in ["gateway.key_registered", "gateway.key_rotated"] {
        let (_, audit) = app.call("GET", &format!("/api/v1/audit?action={action}"), None).await;
        assert_eq!(audit.as_array().unwrap().len(), 1, "{action}: {audit}");
    }
    let (_, audit) = app.call("GET", "/api/v1/audit?action=gateway.key_rotated", None).await;
    assert_eq!(audit[0]["details"]["previous"], k1.as_str(), "{audit}");
    app.stop().await;
}

fn peer(key: &str, ip: &str) -> (String, Vec<String>) {
    (key.to_owned(), vec![format!("{ip}/32")])
}

/// The address a device holds in a location, from the API's view of it.
fn address_in(device: &Value, location: &str) -> String {
    device["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["network_name"] == location)
        .unwrap_or_else(|| panic!("no config for {location}: {device}"))["assigned_ip"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn replicas_see_every_change(b: Backend) {
    let app = TestApp::spawn(b).await;
    let other = TestApp::builder(b).database_url(&app.database_url).spawn().await;
    let (s, v) = app.call("POST", "/api/v1/group", Some(json!({"name": "staff"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, loc) = app
        .call(
            "POST",
            "/api/v1/location",
            Some(json!({"name": "office", "address": "10.20.0.1/24", "endpoint": "vpn.example.com", "port": 51820,
                        "allowed_groups": ["staff"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{loc}");
    let id = loc["id"].as_i64().unwrap();
    app.create_location("lab", "10.30.0.1/24").await;
    for u in ["ann", "bob", "cat", "dan"] {
        app.create_user(u).await;
    }
    for u in ["ann", "cat", "dan"] {
        let (s, v) = app.call("POST", "/api/v1/group/staff/member", Some(json!({"username": u}))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let mut devices = std::collections::HashMap::new();
    for (user, n) in [("ann", 1), ("bob", 2), ("cat", 3)] {
        let key = pubkey(n);
        let (s, d) =
            app.call("POST", "/api/v1/device", Some(json!({"username": user, "name": "laptop", "pubkey": key}))).await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        devices.insert(user, (key, d));
    }
    let (s, v) = app.call("PATCH", "/api/v1/user/cat", Some(json!({"is_active": false}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (ann_key, ann_dev) = devices["ann"].clone();
    let ann_ip = address_in(&ann_dev, "office");
    // bob is not in staff: no address in office at all.
    assert!(ann_dev["configs"].as_array().unwrap().len() == 2, "{ann_dev}");
    assert!(devices["bob"].1["configs"].as_array().unwrap().iter().all(|c| c["network_name"] != "office"));

    // The gateway connects to the OTHER core.
    let token = gateway_token(&app, id).await;
    let gw_key = pubkey(60);
    let session = open(&other.core, &token, &gw_key, false).await.expect("open");
    assert_eq!(session.location, "office");
    let reporter: Arc<dyn GatewayReporter> = session.reporter.clone();
    let mut gw = Mirror::new(session.updates);
    gw.until("the first Full", |m| m.fulls == 1).await;
    assert_eq!(
        gw.interface,
        Some(InterfaceSpec { location: "office".into(), addresses: vec!["10.20.0.1/24".into()], listen_port: 51820 })
    );
    // Only ann: cat is disabled, bob is not allowed (and has no address here).
    assert_eq!(gw.peers, PeerSet::from([peer(&ann_key, &ann_ip)]));

    // Enrollment on the first core adds dan's device.
    let (s, v) = app.call("POST", "/api/v1/user/dan/start_enrollment", Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let t = TokenSecret::from_user(v["enrollment_token"].as_str().unwrap());
    let actor = Actor::system("edge");
    app.core.enrollment_start(&actor, &t).await.unwrap();
    let dan_key = pubkey(4);
    let dan = app.core.enrollment_create_device(&actor, &t, "dan-laptop", &dan_key).await.unwrap();
    let dan_ip = dan.configs.iter().find(|c| c.network_name == "office").unwrap().assigned_ip.clone();
    gw.until("an enrolled device", |m| m.peers.get(&dan_key) == Some(&vec![format!("{dan_ip}/32")])).await;
    assert_eq!(gw.fulls, 1, "a device is an Upsert, not a Full");

    let (s, v) = app.call("PATCH", "/api/v1/user/ann", Some(json!({"is_active": false}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.until("a disabled user's device removed", |m| !m.peers.contains_key(&ann_key)).await;
    let (s, v) = app.call("PATCH", "/api/v1/user/ann", Some(json!({"is_active": true}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.until("a re-enabled user's device back", |m| m.peers.contains_key(&ann_key)).await;

    let (s, v) = app.call("DELETE", "/api/v1/group/staff/member/ann", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.until("a user who left the allowed group removed", |m| !m.peers.contains_key(&ann_key)).await;

    let dan_id = dan.device.id;
    let (s, v) = app.call("DELETE", &format!("/api/v1/device/{dan_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    gw.until("a deleted device removed", |m| m.peers.is_empty()).await;

    let (s, v) = app.call("POST", "/api/v1/group/staff/member", Some(json!({"username": "ann"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    gw.until("a user who joined the group back", |m| m.peers == PeerSet::from([peer(&ann_key, &ann_ip)])).await;

    let (s, v) = app
        .call(
            "PUT",
            &format!("/api/v1/location/{id}"),
            Some(json!({"name": "office", "address": "10.20.0.1/24", "endpoint": "vpn.example.com", "port": 51999,
                        "allowed_groups": ["staff"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.until("an edited location as a new Full", |m| m.interface.as_ref().is_some_and(|i| i.listen_port == 51999))
        .await;
    assert_eq!(gw.fulls, 2);
    assert_eq!(gw.peers, PeerSet::from([peer(&ann_key, &ann_ip)]));

    // Counters reported through the other core show in the first core's API.
    let handshake = app.core.now() - 5;
    reporter
        .stats(vec![
            PeerStats {
                pubkey: ann_key.clone(),
                endpoint: Some("198.51.100.7:51000".into()),
                latest_handshake: Some(handshake),
                rx_bytes: 1234,
                tx_bytes: 5678,
            },
            PeerStats { pubkey: pubkey(99), endpoint: None, latest_handshake: None, rx_bytes: 1, tx_bytes: 1 },
        ])
        .await;
    let ann_id = ann_dev["id"].as_i64().unwrap();
    let (_, d) = app.call("GET", &format!("/api/v1/device/{ann_id}"), None).await;
    let stats = &d["stats"];
    assert_eq!(stats.as_array().unwrap().len(), 1, "{d}");
    assert_eq!(
        (&stats[0]["location"], &stats[0]["location_id"], &stats[0]["endpoint"]),
        (&json!("office"), &json!(id), &json!("198.51.100.7:51000"))
    );
    assert_eq!((&stats[0]["rx_bytes"], &stats[0]["tx_bytes"]), (&json!(1234), &json!(5678)));
    assert_eq!((&stats[0]["latest_handshake"], &stats[0]["connected"]), (&json!(handshake), &json!(true)));
    let (_, list) = app.call("GET", "/api/v1/device", None).await;
    let listed = list.as_array().unwrap().iter().find(|x| x["id"] == ann_id).unwrap();
    assert_eq!(listed["stats"], *stats);
    let (s, ls) = app.call("GET", &format!("/api/v1/location/{id}/stats"), None).await;
    assert_eq!(s, StatusCode::OK, "{ls}");
    assert_eq!(ls["location"], "office");
    let g = &ls["gateways"][0];
    assert_eq!((&g["pubkey"], &g["hostname"], &g["version"]), (&json!(gw_key), &json!("gw-office"), &json!("1.2.3")));
    assert_eq!((&g["connected"], &g["remote"]), (&json!(true), &json!("192.0.2.10:41000")));
    assert!(g["last_seen_at"].is_i64() && g["connected_at"].is_i64(), "{ls}");
    assert_eq!(ls["peers"].as_array().unwrap().len(), 1, "{ls}");
    let p = &ls["peers"][0];
    assert_eq!((&p["device_id"], &p["device"], &p["user"]), (&json!(ann_id), &json!("laptop"), &json!("ann")));
    assert_eq!((&p["rx_bytes"], &p["connected"]), (&json!(1234), &json!(true)));
    let (_, l) = app.call("GET", &format!("/api/v1/location/{id}"), None).await;
    assert_eq!(l["gateway_connected"], true);

    reporter.closed().await;
    let (_, ls) = app.call("GET", &format!("/api/v1/location/{id}/stats"), None).await;
    assert_eq!(ls["gateways"][0]["connected"], false, "{ls}");
    assert!(ls["gateways"][0]["disconnected_at"].is_i64(), "{ls}");
    let (_, l) = app.call("GET", "/api/v1/location", None).await;
    assert_eq!(l.as_array().unwrap().iter().find(|x| x["id"] == id).unwrap()["gateway_connected"], false);

    // Deleting the location ends the session.
    let (s, v) = app.call("DELETE", &format!("/api/v1/location/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    gw.ends("its location was deleted").await;
    other.stop().await;
    app.stop().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_onramp");

fn cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
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

async fn cli_tokens(b: Backend) {
    let app = TestApp::spawn(b).await;
    let loc = app.create_location("office", "10.20.0.1/24").await;
    let (ok, out, err) = cli(&app, &["gateway-token", "create", "--location", "office", "--name", "gw1"]);
    assert!(ok, "{err}");
    let token = out.lines().last().unwrap().trim().to_owned();
    assert!(token.len() == 32 && token.chars().all(|c| c.is_ascii_alphanumeric()), "{out}");
    assert!(!err.contains(&token), "the token is on stderr too");
    // The printed token works.
    assert!(open(&app.core, &token, &pubkey(70), false).await.is_ok());

    let (ok, out, err) = cli(&app, &["gateway-token", "list", "--location", "office", "--json"]);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!((&list[0]["name"], &list[0]["location_id"]), (&json!("gw1"), &loc["id"]));
    assert!(!out.contains(&token));
    let (ok, out, _) = cli(&app, &["gateway-token", "list", "--location", "office"]);
    assert!(ok && out.contains("gw1") && out.contains("active"), "{out}");

    let tid = list[0]["id"].to_string();
    let (ok, _, err) = cli(&app, &["gateway-token", "revoke", "--location", "office", &tid]);
    assert!(ok, "{err}");
    let (kind, _) = open(&app.core, &token, &pubkey(70), false).await.err().unwrap();
    assert_eq!(kind, RefusalKind::Unauthenticated);
    let (ok, _, err) = cli(&app, &["gateway-token", "revoke", "--location", "office", &tid]);
    assert!(!ok && err.contains("gateway token") && err.contains("not found"), "{err}");
    let (ok, _, err) = cli(&app, &["gateway-token", "create", "--location", "nowhere"]);
    assert!(!ok && err.contains("location") && err.contains("nowhere"), "{err}");
    app.stop().await;
}

/// A core that dies without closing the session leaves its row "connected"; without the
/// session's refreshes it stops counting as connected after 30 s.
async fn stale_gateway_rows_time_out(b: Backend) {
    let app = TestApp::builder(b).manual_clock().spawn().await;
    let loc = app.create_location("office", "10.20.0.1/24").await;
    let id = loc["id"].as_i64().unwrap();
    let token = gateway_token(&app, id).await;
    let session = open(&app.core, &token, &pubkey(80), false).await.expect("open");
    let clock = app.clock.clone().unwrap();
    clock.advance(29);
    let (_, ls) = app.call("GET", &format!("/api/v1/location/{id}/stats"), None).await;
    assert_eq!(ls["gateways"][0]["connected"], true, "{ls}");
    clock.advance(2);
    let (_, ls) = app.call("GET", &format!("/api/v1/location/{id}/stats"), None).await;
    assert_eq!(ls["gateways"][0]["connected"], false, "{ls}");
    let (_, l) = app.call("GET", &format!("/api/v1/location/{id}"), None).await;
    assert_eq!(l["gateway_connected"], false, "{l}");
    // A report counts as contact again.
    session.reporter.stats(vec![]).await;
    let (_, ls) = app.call("GET", &format!("/api/v1/location/{id}/stats"), None).await;
    assert_eq!(ls["gateways"][0]["connected"], true, "{ls}");
    drop(session);
    app.stop().await;
}

async fn database_down_is_unavailable(b: Backend) {
    let app = TestApp::spawn(b).await;
    let loc = app.create_location("office", "10.20.0.1/24").await;
    let token = gateway_token(&app, loc["id"].as_i64().unwrap()).await;
    app.core.store().close().await;
    let (kind, msg) = open(&app.core, &token, &pubkey(81), false).await.err().unwrap();
    assert_eq!(kind, RefusalKind::Unavailable, "{msg}");
    app.stop().await;
}
