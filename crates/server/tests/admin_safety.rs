//! Admin safety: no change through the API may leave no active admin (issue 10 item 12),
//! `onramp admin user enable` recovers a locked-out database, every non-public route
//! needs a token, and zero / low-order WireGuard keys are refused.

mod common;
use common::*;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_onramp");

on_both_backends!(
    last_admin_cannot_be_disabled_or_deleted,
    last_admin_group_cannot_be_deleted_or_demoted,
    last_admin_cannot_leave_the_admin_group,
    concurrent_demotions_leave_an_admin,
    cli_enable_recovers_a_locked_out_database,
    every_non_public_route_needs_a_token,
    zero_and_low_order_device_keys_are_refused,
);

/// A second admin, `root2`, with their own token.
async fn second_admin(app: &TestApp) -> String {
    app.create_user("root2").await;
    let (s, v) = app.call("POST", "/api/v1/group/admin/member", Some(json!({"username": "root2"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    app.core.create_api_token(&onramp_core::Actor::system("test"), "t2", "root2").await.expect("token").token
}

async fn assert_admin_works(app: &TestApp, token: &str) {
    let (s, v) = app.call_as(Some(token), "GET", "/api/v1/user", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn last_admin_cannot_be_disabled_or_deleted(b: Backend) {
    let app = TestApp::spawn(b).await;
    // Disabling your own account as the only admin.
    let (s, v) = app.call("PUT", "/api/v1/user/admin", Some(json!({"is_active": false}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "last_admin");
    assert!(v["error"].as_str().unwrap().contains("no active admin"), "{v}");
    assert_admin_works(&app, &app.token).await;

    // With a second admin, one may be disabled, but then not the other.
    let t2 = second_admin(&app).await;
    let (s, v) = app.call_as(Some(&t2), "PUT", "/api/v1/user/admin", Some(json!({"is_active": false}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.call_as(Some(&t2), "PATCH", "/api/v1/user/root2", Some(json!({"is_active": false}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "last_admin");
    // Deleting the last active admin (not oneself: a disabled admin's token is refused, so
    // we re-enable admin to do it) is refused too.
    let (s, v) = app.call_as(Some(&t2), "PUT", "/api/v1/user/admin", Some(json!({"is_active": true}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.call("PUT", "/api/v1/user/root2", Some(json!({"is_active": false}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // root2 is disabled; admin is the only active admin. A fresh admin deleting it:
    app.create_user("root3").await;
    app.call("POST", "/api/v1/group/admin/member", Some(json!({"username": "root3"}))).await;
    let t3 = app.core.create_api_token(&onramp_core::Actor::system("test"), "t3", "root3").await.unwrap().token;
    let (s, _) = app.call_as(Some(&t3), "DELETE", "/api/v1/user/admin", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "two active admins: deleting one is fine");
    let (s, v) = app.call_as(Some(&t3), "PUT", "/api/v1/user/root3", Some(json!({"is_active": false}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "last_admin");
    assert_admin_works(&app, &t3).await;
    app.stop().await;
}

async fn last_admin_group_cannot_be_deleted_or_demoted(b: Backend) {
    let app = TestApp::spawn(b).await;
    // Another admin group exists but has no active member: the old guard counted groups
    // and let the real one go.
    let (s, v) = app.call("POST", "/api/v1/group", Some(json!({"name": "ops", "is_admin": true}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.call("DELETE", "/api/v1/group/admin", None).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "last_admin");
    let (s, v) = app.call("PUT", "/api/v1/group/admin", Some(json!({"is_admin": false}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "last_admin");
    assert!(v["error"].as_str().unwrap().contains("group admin"), "{v}");
    // A disabled member does not count.
    app.create_user("off").await;
    app.call("POST", "/api/v1/group/ops/member", Some(json!({"username": "off"}))).await;
    app.call("PUT", "/api/v1/user/off", Some(json!({"is_active": false}))).await;
    let (s, v) = app.call("DELETE", "/api/v1/group/admin", None).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "last_admin");
    // Renaming is no demotion.
    let (s, v) = app.call("PUT", "/api/v1/group/admin", Some(json!({"name": "admins"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Once an active admin is in ops, the first group may go.
    app.call("PUT", "/api/v1/user/off", Some(json!({"is_active": true}))).await;
    let (s, v) = app.call("PUT", "/api/v1/group/admins", Some(json!({"is_admin": false}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.call("GET", "/api/v1/user", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "admin is no admin any more: {v}");
    app.stop().await;
}

async fn last_admin_cannot_leave_the_admin_group(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t2 = second_admin(&app).await;
    // root2 removes admin from the group (allowed: root2 remains) ...
    let (s, v) = app.call_as(Some(&t2), "DELETE", "/api/v1/group/admin/member/admin", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // ... a disabled member of another admin group does not count ...
    app.call_as(
        Some(&t2),
        "POST",
        "/api/v1/group",
        Some(json!({"name": "ops", "is_admin": true, "members": ["admin"]})),
    )
    .await;
    let (s, v) = app.call_as(Some(&t2), "PUT", "/api/v1/user/admin", Some(json!({"is_active": false}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // ... so root2 may not be removed from admin, neither by themself nor by anyone else
    // (here the CLI's actor, which goes through the same use case).
    let (s, v) = app.call_as(Some(&t2), "DELETE", "/api/v1/group/admin/member/root2", None).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "cannot_remove_self");
    let cli = onramp_core::Actor::system("cli");
    let e = app.core.remove_group_member(&cli, "admin", "root2").await.unwrap_err();
    assert_eq!(e.code(), "last_admin", "{e}");
    assert!(e.to_string().contains("removing root2 from admin"), "{e}");
    // Nor may root2 be deleted, nor their only admin group.
    let e = app.core.delete_user(&cli, "root2").await.unwrap_err();
    assert_eq!(e.code(), "last_admin", "{e}");
    let e = app.core.delete_group(&cli, "admin").await.unwrap_err();
    assert_eq!(e.code(), "last_admin", "{e}");
    assert_admin_works(&app, &t2).await;
    app.stop().await;
}

/// Two admins disable each other at the same moment: the check and the change share one
/// transaction under a lock, so one of them must be refused.
async fn concurrent_demotions_leave_an_admin(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t2 = second_admin(&app).await;
    for round in 0..5 {
        let a = app.call("PUT", "/api/v1/user/root2", Some(json!({"is_active": false})));
        let c = app.call_as(Some(&t2), "PUT", "/api/v1/user/admin", Some(json!({"is_active": false})));
        let ((s1, v1), (s2, v2)) = tokio::join!(a, c);
        let ok = [s1, s2].iter().filter(|s| **s == StatusCode::OK).count();
        assert!(ok <= 1, "round {round}: both demotions passed: {v1} {v2}");
        let n = app.core.store().count_active_admins().await.unwrap();
        assert_eq!(n, 1, "round {round}: {s1} {v1} / {s2} {v2}");
        // Back to two active admins for the next round.
        app.core
            .update_user(
                &onramp_core::Actor::system("test"),
                "admin",
                onramp_core::UserPatch { is_active: Some(true), ..Default::default() },
            )
            .await
            .unwrap();
        app.core
            .update_user(
                &onramp_core::Actor::system("test"),
                "root2",
                onramp_core::UserPatch { is_active: Some(true), ..Default::default() },
            )
            .await
            .unwrap();
    }
    app.stop().await;
}

fn cli(db_url: &str, args: &[&str]) -> std::process::Output {
    let data = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .args(args)
        .env("ONRAMP_DATA_DIR", data.path())
        .env("ONRAMP_DATABASE_URL", db_url)
        .env("ONRAMP_PUBLIC_URL", "https://edge.example.com")
        .output()
        .unwrap()
}

async fn cli_enable_recovers_a_locked_out_database(b: Backend) {
    let app = TestApp::spawn(b).await;
    // Lock-out as it can still happen behind the API's back: straight in the database.
    let store = app.core.store();
    let mut row = store.user_by_username("admin").await.unwrap();
    row.is_active = false;
    store.update_user(&row, 0).await.unwrap();
    let (s, v) = app.call("GET", "/api/v1/user", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    let out = cli(&app.database_url, &["admin", "user", "enable", "admin"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("user admin enabled"), "{err}");
    assert_admin_works(&app, &app.token).await;

    // `disable` follows the same rule as the API.
    let out = cli(&app.database_url, &["admin", "user", "disable", "admin"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "disabling the last admin must fail");
    assert!(err.contains("no active admin"), "{err}");
    app.create_user("plain").await;
    let out = cli(&app.database_url, &["admin", "user", "disable", "plain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, v) = app.call("GET", "/api/v1/user/plain", None).await;
    assert_eq!(v["is_active"], false);
    let out = cli(&app.database_url, &["admin", "user", "enable", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    app.stop().await;
}

/// Public without a token: exactly these (method, path) pairs.
const PUBLIC: &[(&str, &str)] = &[("GET", "/api/v1/health"), ("GET", "/api/v1/openapi.json")];

/// Walks every operation of the OpenAPI document and calls it without a token (and with a
/// wrong one): every non-public route must answer 401, so a new handler that forgets its
/// `Admin` extractor is caught.
async fn every_non_public_route_needs_a_token(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (s, doc) = app.call_as(None, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK, "the OpenAPI document is public");
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, ops) in paths {
        let concrete =
            path.split('/').map(|seg| if seg.starts_with('{') { "1" } else { seg }).collect::<Vec<_>>().join("/");
        let url = if concrete.starts_with("/api/") { concrete.clone() } else { format!("/api/v1{concrete}") };
        for method in ops.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            let public = PUBLIC.iter().any(|(m, p)| *m == method && *p == url);
            for token in [None, Some("onramp_wrongwrongwrongwrongwrongwrongwr")] {
                let body = (method != "GET" && method != "DELETE").then(|| json!({}));
                let (s, v) = app.call_as(token, &method, &url, body).await;
                if public {
                    assert_eq!(s, StatusCode::OK, "{method} {url} is public: {v}");
                } else {
                    assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {url} without a valid token: {v}");
                    assert_eq!(v["code"], "unauthorized", "{method} {url}: {v}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations in the document");
    // Unknown paths: 401 too (no probing of which routes exist) ...
    let (s, _) = app.call_as(None, "GET", "/api/v1/nope", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // ... and the documented public pages outside the API stay public.
    for path in ["/metrics", "/api/docs"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    app.stop().await;
}

async fn zero_and_low_order_device_keys_are_refused(b: Backend) {
    use base64::Engine;
    let app = TestApp::spawn(b).await;
    app.create_user("kim").await;
    app.create_location("office", "10.9.0.1/24").await;
    let zero = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    let mut one = [0u8; 32];
    one[0] = 1;
    let one = base64::engine::general_purpose::STANDARD.encode(one);
    for key in [zero, one] {
        let (s, v) =
            app.call("POST", "/api/v1/device", Some(json!({"username": "kim", "name": "laptop", "pubkey": key}))).await;
        assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input", "{key}");
        assert!(v["error"].as_str().unwrap().contains("low-order"), "{v}");
    }
    let (s, v) = app
        .call("POST", "/api/v1/device", Some(json!({"username": "kim", "name": "laptop", "pubkey": pubkey(7)})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "a good key still works: {v}");
    app.stop().await;
}
