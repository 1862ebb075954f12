//! Entra ID sync through Microsoft Graph (issue 14, part 2), against a Graph-shaped local
//! server (`onramp_testkit::graph`): users of the chosen groups (nested groups included)
//! come in over several pages, changes and leavers follow, the custom security attributes
//! are written, kept and cleared, and Graph's refusals (401, 403, 429 with `Retry-After`)
//! each end the right way.

mod common;
use common::*;
use onramp_testkit::graph::{FakeGraph, CLIENT_ID, CLIENT_SECRET, READ_MEMBERS, TENANT, WRITE_ATTRIBUTES};
use std::path::Path;

on_both_backends!(entra_sync_follows_the_tenant);

/// Points the instance at `graph` with the app's secret in a file; two users per page, so
/// every list is paged.
async fn configure(app: &TestApp, graph: &FakeGraph, dir: &Path, extra: Value) {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let mut e = json!({
        "tenant": TENANT, "client_id": CLIENT_ID, "client_secret_file": secret,
        "graph_url": graph.url, "login_url": graph.url, "sync_groups": ["VPN users"], "page_size": 2
    });
    e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(json!({"entra": e}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn sync(app: &TestApp, dry_run: bool) -> (StatusCode, Value) {
    app.call("POST", &format!("/api/v1/directory/sync?source=entra&dry_run={dry_run}"), None).await
}

async fn synced(app: &TestApp) -> Value {
    let (s, r) = sync(app, false).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["source"], "entra");
    r
}

async fn user(app: &TestApp, name: &str) -> Value {
    let (s, v) = app.call("GET", &format!("/api/v1/user/{name}"), None).await;
    assert_eq!(s, StatusCode::OK, "{name}: {v}");
    v
}

async fn entra_sync_follows_the_tenant(b: Backend) {
    let graph = FakeGraph::start().await;
    let ann = graph.add_user("ann@contoso.com", "Ann", "Archer", Some("ann@contoso.com"));
    let bob = graph.add_user("bob@contoso.com", "Bob", "Baker", Some("bob@contoso.com"));
    let cat = graph.add_user("cat@contoso.com", "Cat", "Cole", Some("cat@contoso.com"));
    let dan = graph.add_user("dan@contoso.com", "Dan", "Dunn", Some("dan@contoso.com"));
    let eve = graph.add_user("eve@contoso.com", "Eve", "Evans", Some("eve@contoso.com"));
    // "VPN users" = ann, dan, eve and the nested group Engineering (bob); cat is in Sales.
    let eng = graph.add_group("Engineering", &[&bob]);
    let vpn = graph.add_group("VPN users", &[&ann, &eng, &dan, &eve]);
    graph.add_group("Sales", &[&cat]);
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(b).await;
    // Dan was created in Onramp by hand: Entra must not take him over.
    app.create_user("dan").await;
    configure(&app, &graph, tmp.path(), json!({})).await;

    // A dry run reads and writes nothing.
    let (s, dry) = sync(&app, true).await;
    assert_eq!(s, StatusCode::OK, "{dry}");
    assert_eq!(sorted_names(&dry["created"]), ["ann", "bob", "eve"], "{dry}");
    assert_eq!(app.call("GET", "/api/v1/user/ann", None).await.0, StatusCode::NOT_FOUND);

    // Only Entra is configured: a sync that names no directory is Entra's.
    let (s, r) = app.call("POST", "/api/v1/directory/sync", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["source"], "entra");
    assert_eq!(sorted_names(&r["created"]), ["ann", "bob", "eve"], "{r}");
    assert_eq!(sorted_names(&r["groups_created"]), ["VPN users"]);
    assert_eq!(r["users_read"], 5, "{r}");
    // Sign-in, the group, its members (2 pages) and the users (3 pages of 2).
    assert!(r["round_trips"].as_u64().unwrap() >= 7, "{r}");
    assert_eq!(r["conflicts"][0]["username"], "dan", "{r}");
    let a = user(&app, "ann").await;
    assert_eq!(
        (a["first_name"].as_str(), a["last_name"].as_str(), a["email"].as_str(), a["source"].as_str()),
        (Some("Ann"), Some("Archer"), Some("ann@contoso.com"), Some("entra"))
    );
    let (_, group) = app.call("GET", "/api/v1/group/VPN users", None).await;
    assert_eq!(sorted_names(&group["members"]), ["ann", "bob", "eve"], "{group}");
    assert_eq!(app.call("GET", "/api/v1/user/cat", None).await.0, StatusCode::NOT_FOUND);
    let again = synced(&app).await;
    assert!(again["created"].as_array().unwrap().is_empty() && again["updated"].as_array().unwrap().is_empty());

    // Bob has a device in a location open to the group: he is one of its peers.
    let (location, key) = laptop_in_group_location(&app, "VPN users", "bob", 11).await;
    let peers = || peer_keys(&app, location);
    assert_eq!(peers().await, vec![key.clone()]);

    // In Entra: Ann's surname and phone change, Bob leaves Engineering, Eve's account is
    // disabled, Cat joins the group, Dan's Onramp account is linked by the admin.
    graph.set(&ann, "surname", json!("Armstrong"));
    graph.set(&ann, "mobilePhone", json!("+48 600 100 200"));
    graph.remove_member(&eng, &bob);
    graph.set(&eve, "accountEnabled", json!(false));
    graph.add_member(&vpn, &cat);
    let (s, v) = app.call("POST", "/api/v1/user/dan/directory_link?source=entra", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["source"], "entra");
    let r = synced(&app).await;
    assert_eq!(
        r["updated"],
        json!([{"username": "dan", "fields": ["first_name", "last_name", "email"]},
               {"username": "ann", "fields": ["last_name", "phone"]}]),
        "Dan, linked, takes his entry's values: {r}"
    );
    assert_eq!(sorted_names(&r["created"]), ["cat"], "{r}");
    let disabled: Vec<(String, String)> = r["disabled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["username"].as_str().unwrap().to_owned(), d["reason"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(disabled.len(), 2, "{r}");
    assert!(disabled.iter().any(|(u, _)| u == "bob") && disabled.iter().any(|(u, _)| u == "eve"), "{r}");
    assert!(!user(&app, "bob").await["is_active"].as_bool().unwrap());
    // Bob's device stays, but is no longer a peer.
    assert!(peers().await.is_empty());
    let (_, devices) = app.call("GET", "/api/v1/device?username=bob", None).await;
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "{devices}");
    assert!(user(&app, "dan").await["source"] == "entra");

    // Ann is deleted from the tenant; Bob comes back.
    graph.remove_user(&ann);
    graph.add_member(&vpn, &bob);
    let r = synced(&app).await;
    assert_eq!(r["disabled"][0]["username"], "ann", "{r}");
    assert_eq!(sorted_names(&r["enabled"]), ["bob"], "{r}");
    assert_eq!(peers().await, vec![key]);
    let (_, audit) = app.call("GET", "/api/v1/audit?action=directory.synced", None).await;
    assert!(audit.as_array().unwrap().iter().all(|e| e["subject"] == "entra"), "{audit}");
    app.stop().await;
}

/// Tokens go into the custom security attributes, stay while they are live, and the
/// attribute holds what the client's helper reads. Writing without the permission is
/// refused per user and stores no token; reading is never refused for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_attributes_are_written_and_a_refused_write_stores_nothing() {
    let graph = FakeGraph::start().await;
    let ann = graph.add_user("ann@contoso.com", "Ann", "Archer", Some("ann@contoso.com"));
    let bob = graph.add_user("bob@contoso.com", "Bob", "Baker", Some("bob@contoso.com"));
    let vpn = graph.add_group("VPN users", &[&ann, &bob]);
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(Backend::Sqlite).await;
    configure(&app, &graph, tmp.path(), json!({})).await;
    let (s, v) =
        app.call("PATCH", "/api/v1/settings", Some(json!({"enrollment": {"directory_invite_attribute": true}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let r = synced(&app).await;
    assert_eq!(sorted_names(&r["attributes_written"]), ["ann", "bob"], "{r}");
    let (token, url) = graph.attributes(&ann).expect("ann's attributes");
    assert!(url.starts_with("https://") && url.ends_with('/'), "{url}");
    // The written token is the one Onramp holds for Ann.
    let (_, tokens) = app.call("GET", "/api/v1/user/ann/tokens", None).await;
    assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
    let r = app.client.post(format!("{}/api/v1/enrollment/start", app.edge_url)).json(&json!({"token": token}));
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the written token starts an enrollment: {}", r.text().await.unwrap());
    // Live tokens are kept: nothing is written again.
    let (_, patches, _, _) = graph.counts();
    let r = synced(&app).await;
    assert!(r["attributes_written"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(graph.counts().1, patches);

    // The app loses the write permission (it still reads): a new user's write is refused,
    // named, and no token is stored for her.
    graph.revoke(WRITE_ATTRIBUTES);
    graph.grant(onramp_testkit::graph::READ_ATTRIBUTES);
    let cat = graph.add_user("cat@contoso.com", "Cat", "Cole", None);
    graph.add_member(&vpn, &cat);
    let r = synced(&app).await;
    assert_eq!(r["created"], json!(["cat"]), "{r}");
    assert_eq!(r["attribute_errors"][0]["username"], "cat", "{r}");
    let reason = r["attribute_errors"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("403") && reason.contains(WRITE_ATTRIBUTES), "{reason}");
    let (_, tokens) = app.call("GET", "/api/v1/user/cat/tokens", None).await;
    assert!(tokens.as_array().unwrap().is_empty(), "{tokens}");
    assert!(graph.attributes(&ann).is_some(), "ann's live token is kept");
    app.stop().await;
}

/// A wrong secret and a missing permission fail the sync loudly and change nothing;
/// throttling is waited out as `Retry-After` says; an access token that expires mid-sync is
/// renewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_refusals_fail_loudly_and_throttling_is_waited_out() {
    let graph = FakeGraph::start().await;
    let ann = graph.add_user("ann@contoso.com", "Ann", "Archer", None);
    graph.add_group("VPN users", &[&ann]);
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(Backend::Sqlite).await;

    // Nothing configured: the error says what to set.
    let (s, v) = sync(&app, false).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "directory_not_configured");
    assert!(v["error"].as_str().unwrap().contains("entra.tenant"), "{v}");

    configure(&app, &graph, tmp.path(), json!({})).await;
    std::fs::write(tmp.path().join("client-secret"), "not-the-secret").unwrap();
    let (s, v) = sync(&app, false).await;
    assert_eq!(error_code(s, &v, StatusCode::SERVICE_UNAVAILABLE), "directory_unavailable");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("invalid_client") && msg.contains("AADSTS7000215"), "{msg}");
    assert!(!msg.contains("not-the-secret"), "the secret is never echoed: {msg}");
    assert_eq!(app.call("GET", "/api/v1/user/ann", None).await.0, StatusCode::NOT_FOUND);
    let (_, st) = app.call("GET", "/api/v1/directory/status?source=entra", None).await;
    assert_eq!((st["source"].as_str(), st["failures_in_a_row"].as_i64()), (Some("entra"), Some(1)), "{st}");
    assert!(st["last_error"].as_str().unwrap().contains("invalid_client"), "{st}");

    // Signed in, but the app may not read group members.
    configure(&app, &graph, tmp.path(), json!({})).await;
    graph.revoke(READ_MEMBERS);
    let (s, v) = sync(&app, false).await;
    assert_eq!(error_code(s, &v, StatusCode::SERVICE_UNAVAILABLE), "directory_unavailable");
    assert!(v["error"].as_str().unwrap().contains("GroupMember.Read.All"), "{v}");
    assert_eq!(app.call("GET", "/api/v1/user/ann", None).await.0, StatusCode::NOT_FOUND);
    graph.grant(READ_MEMBERS);

    // Throttled three times (Retry-After: 1): the sync waits and completes.
    graph.throttle(3);
    let started = std::time::Instant::now();
    let r = synced(&app).await;
    assert_eq!(r["created"], json!(["ann"]), "{r}");
    assert_eq!(graph.counts().3, 3);
    assert!(started.elapsed() >= std::time::Duration::from_secs(3), "Retry-After was not honoured");
    let (_, st) = app.call("GET", "/api/v1/directory/status?source=entra", None).await;
    assert!(st["last_error"].is_null() && st["failures_in_a_row"] == 0, "{st}");

    // The token expires between two requests of one sync: it is renewed once.
    graph.set(&ann, "surname", json!("Armstrong"));
    let (_, _, sign_ins, _) = graph.counts();
    graph.expire_tokens_after(2);
    let r = synced(&app).await;
    assert_eq!(r["updated"][0]["username"], "ann", "{r}");
    assert_eq!(graph.counts().2, sign_ins + 2, "one sign-in per sync, one renewal");
    app.stop().await;
}
