//! Behaviour of the admin REST API and core use cases, on SQLite and PostgreSQL.

mod common;
use common::*;
use onramp_core::Actor;
use onramp_domain::token::{is_well_formed, TokenSecret};

on_both_backends!(
    users_crud,
    groups_and_membership,
    locations_and_group_access,
    device_address_allocation,
    two_cores_allocate_distinct_addresses,
    start_enrollment_rules,
    start_desktop_rules,
    pending_tokens_and_revocation,
    api_token_lifecycle,
    bulk_provisioning,
    concurrent_session_start_is_atomic,
    concurrent_issuance_keeps_one_token_per_user,
    session_and_expiry_rules,
    settings_and_audit,
    overlapping_location_subnets_are_refused,
    update_audits_say_what_changed,
    issued_tokens_say_when_they_expire,
);

/// A location's VPN subnet may not overlap another location's: refused with the other's
/// name. Overlapping `allowed_ips` are normal.
async fn overlapping_location_subnets_are_refused(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_location("office", "10.1.0.1/24").await;
    let lab = app.create_location("lab", "10.2.0.1/24").await;
    let body = |name: &str, address: &str| {
        json!({"name": name, "address": address, "endpoint": "vpn.example.com", "port": 51820,
               "allowed_ips": ["10.0.0.0/8"]})
    };
    for address in ["10.1.0.129/25", "10.1.0.1/16", "10.1.0.1/24"] {
        let (s, v) = app.call("POST", "/api/v1/location", Some(body("branch", address))).await;
        assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input", "{address}");
        assert_eq!(v["field"], "address");
        assert!(v["error"].as_str().unwrap().contains("\"office\""), "names the other location: {v}");
    }
    // Editing into another's subnet is refused too; keeping its own subnet is fine.
    let id = lab["id"].as_i64().unwrap();
    let (s, v) = app.call("PUT", &format!("/api/v1/location/{id}"), Some(body("lab", "10.1.0.201/29"))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    assert!(v["error"].as_str().unwrap().contains("office"), "{v}");
    let (s, v) = app.call("PUT", &format!("/api/v1/location/{id}"), Some(body("lab", "10.2.0.1/24"))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Separate subnets with overlapping allowed_ips (both 10.0.0.0/8) are accepted.
    let (s, v) = app.call("POST", "/api/v1/location", Some(body("branch", "10.3.0.1/24"))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, all) = app.call("GET", "/api/v1/location", None).await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    app.stop().await;
}

/// Updates are audited with the fields that changed, old and new.
async fn update_audits_say_what_changed(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    let (s, v) =
        app.call("PUT", "/api/v1/user/ann", Some(json!({"email": "ann@new.example.com", "last_name": "Last"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, ev) = app.call("GET", "/api/v1/audit?action=user.updated", None).await;
    assert_eq!(ev[0]["details"], json!({"email": ["ann@example.com", "ann@new.example.com"]}), "{ev}");
    let loc = app.create_location("office", "10.1.0.1/24").await;
    let id = loc["id"].as_i64().unwrap();
    let (s, v) = app
        .call(
            "PUT",
            &format!("/api/v1/location/{id}"),
            Some(json!({"name": "office", "address": "10.1.0.1/24", "endpoint": "vpn2.example.com", "port": 51820})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, ev) = app.call("GET", "/api/v1/audit?action=location.updated", None).await;
    let d = &ev[0]["details"];
    assert_eq!(d["endpoint"], json!([loc["endpoint"], "vpn2.example.com"]), "{d}");
    assert!(d.get("address").is_none() && d.get("name").is_none(), "unchanged fields are left out: {d}");
    let (s, v) = app
        .call(
            "PATCH",
            "/api/v1/settings",
            Some(json!({"instance_name": "ACME", "admin_contact":
        {"name": "IT Desk", "email": "it@example.com"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, ev) = app.call("GET", "/api/v1/audit?action=settings.updated", None).await;
    let d = &ev[0]["details"];
    assert_eq!(d["instance_name"], json!(["Onramp", "ACME"]), "{d}");
    assert_eq!(d["admin_contact"], json!([null, {"name": "IT Desk", "email": "it@example.com", "phone": null}]), "{d}");
    app.stop().await;
}

/// `start_enrollment` / `start_desktop` answer with `expires_at` (RFC 3339) besides the
/// PROTOCOL.md fields.
async fn issued_tokens_say_when_they_expire(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    app.create_location("office", "10.1.0.1/24").await;
    let now = app.core.now();
    let (s, v) =
        app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({"token_expiration_time": "12h"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let at = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).unwrap().timestamp();
    assert!((at - (now + 12 * 3600)).abs() <= 5, "{v}");
    assert!(v["enrollment_token"].is_string() && v["enrollment_url"].is_string());
    app.call("PUT", "/api/v1/user/ann", Some(json!({"is_active": true}))).await;
    let (s, v) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let at = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).unwrap().timestamp();
    assert!((at - (now + 86_400)).abs() <= 5, "default desktop lifetime: {v}");
    app.stop().await;
}

async fn users_crud(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.create_user("jdoe").await;
    assert_eq!(u["enrollment_state"], "pending");
    assert_eq!(u["is_active"], true);
    let (s, v) = app.call("GET", "/api/v1/user/jdoe", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["email"], "jdoe@example.com");
    let (s, v) = app.call("GET", "/api/v1/user", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 2, "admin + jdoe");
    // Duplicates are conflicts naming the field.
    let dup = json!({"username": "jdoe", "first_name": "A", "last_name": "B", "email": "other@example.com"});
    let (s, v) = app.call("POST", "/api/v1/user", Some(dup)).await;
    assert_eq!(error_code(s, &v, StatusCode::CONFLICT), "conflict");
    assert_eq!(v["field"], "username");
    let dup = json!({"username": "other", "first_name": "A", "last_name": "B", "email": "jdoe@example.com"});
    let (s, v) = app.call("POST", "/api/v1/user", Some(dup)).await;
    assert_eq!(v["field"], "email", "{s} {v}");
    let (s, v) =
        app.call("PUT", "/api/v1/user/jdoe", Some(json!({"first_name": "Jane", "phone": "+48 123 456 789"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["first_name"], "Jane");
    assert_eq!(v["phone"], "+48 123 456 789");
    // A user created with a password counts as enrolled.
    let (s, v) = app
        .call(
            "POST",
            "/api/v1/user",
            Some(json!({"username": "pw", "first_name": "P", "last_name": "W", "email": "pw@example.com", "password": "Str0ng!Pass"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["enrolled"], true);
    let (s, v) = app
        .call(
            "POST",
            "/api/v1/user",
            Some(json!({"username": "weak", "first_name": "P", "last_name": "W", "email": "weak@example.com", "password": "weak"})),
        )
        .await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    assert_eq!(v["field"], "password");
    let (s, _) = app.call("DELETE", "/api/v1/user/jdoe", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.call("GET", "/api/v1/user/jdoe", None).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    // The acting admin cannot delete themself.
    let (s, v) = app.call("DELETE", "/api/v1/user/admin", None).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "cannot_delete_self");
    app.stop().await;
}

async fn groups_and_membership(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    app.create_user("bob").await;
    let (s, v) = app.call("POST", "/api/v1/group", Some(json!({"name": "staff", "members": ["ann"]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["members"], json!(["ann"]));
    let (s, v) = app.call("POST", "/api/v1/group/staff/member", Some(json!({"username": "bob"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.call("POST", "/api/v1/group/staff/member", Some(json!({"username": "bob"}))).await;
    assert_eq!(error_code(s, &v, StatusCode::CONFLICT), "conflict");
    app.create_location("office", "10.1.0.1/24").await;
    let (s, v) = app.call("GET", "/api/v1/group/staff", None).await;
    assert_eq!(s, StatusCode::OK);
    // PROTOCOL.md section 4 shape.
    assert_eq!(v["name"], "staff");
    assert_eq!(v["members"], json!(["ann", "bob"]));
    assert_eq!(v["vpn_locations"], json!(["office"]));
    assert_eq!(v["is_admin"], false);
    let (s, v) = app.call("DELETE", "/api/v1/group/staff/member/ann", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["members"], json!(["bob"]));
    let (s, v) = app.call("GET", "/api/v1/user/bob", None).await;
    assert_eq!(v["groups"], json!(["staff"]), "{s}");
    // Unknown initial member: nothing is written.
    let (s, v) = app.call("POST", "/api/v1/group", Some(json!({"name": "ghosts", "members": ["nobody"]}))).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    let (s, _) = app.call("GET", "/api/v1/group/ghosts", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The last admin group cannot go.
    let (s, v) = app.call("DELETE", "/api/v1/group/admin", None).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "last_admin");
    let (s, _) = app.call("DELETE", "/api/v1/group/staff", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.stop().await;
}

async fn locations_and_group_access(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    app.create_user("bob").await;
    app.call("POST", "/api/v1/group", Some(json!({"name": "eng", "members": ["ann"]}))).await;
    let (s, loc) = app
        .call(
            "POST",
            "/api/v1/location",
            Some(json!({"name": "lab", "address": "10.20.0.1/24", "endpoint": "lab.example.com", "port": 51821,
                       "allowed_ips": ["10.20.0.0/24"], "dns": "10.20.0.1", "allowed_groups": ["eng"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{loc}");
    assert_eq!(loc["keepalive_interval"], 25);
    assert_eq!(loc["allowed_groups"], json!(["eng"]));
    app.create_location("hq", "10.30.0.1/24, fd00:30::1/64").await;
    // ann (eng) gets both locations; bob only the open one.
    let (_, d) = app
        .call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "laptop", "pubkey": pubkey(1)})))
        .await;
    let names: Vec<&str> =
        d["configs"].as_array().unwrap().iter().map(|c| c["network_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["lab", "hq"], "{d}");
    let lab = &d["configs"][0];
    assert_eq!(lab["assigned_ip"], "10.20.0.2");
    assert_eq!(lab["endpoint"], "lab.example.com:51821");
    assert_eq!(lab["dns"], "10.20.0.1");
    assert!(lab["config"].as_str().unwrap().contains("PrivateKey = YOUR_PRIVATE_KEY"));
    let hq = &d["configs"][1];
    assert_eq!(hq["assigned_ip"], "10.30.0.2,fd00:30::2", "one address per subnet");
    let (_, d) = app
        .call("POST", "/api/v1/device", Some(json!({"username": "bob", "name": "laptop", "pubkey": pubkey(2)})))
        .await;
    assert_eq!(d["configs"].as_array().unwrap().len(), 1, "{d}");
    // Update and delete.
    let id = loc["id"].as_i64().unwrap();
    let (s, v) = app
        .call(
            "PUT",
            &format!("/api/v1/location/{id}"),
            Some(json!({"name": "lab2", "address": "10.20.0.1/24", "endpoint": "lab.example.com", "port": 51822})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["allowed_groups"], json!([]));
    // Shrinking the subnet below an assigned address is refused, with nothing changed.
    let (s, v) = app
        .call(
            "PUT",
            &format!("/api/v1/location/{id}"),
            Some(json!({"name": "lab2", "address": "10.99.0.1/24", "endpoint": "lab.example.com", "port": 51822})),
        )
        .await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "address_in_use");
    let (s, _) = app.call("DELETE", &format!("/api/v1/location/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.call("GET", &format!("/api/v1/location/{id}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn device_address_allocation(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    // /29 with the gateway in the middle: .1-.4 and .6 are assignable.
    app.create_location("tiny", "10.5.0.5/29").await;
    let mut got = vec![];
    for i in 0..5u8 {
        let (s, d) = app
            .call(
                "POST",
                "/api/v1/device",
                Some(json!({"username": "ann", "name": format!("d{i}"), "pubkey": pubkey(10 + i)})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        got.push(d["configs"][0]["assigned_ip"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, ["10.5.0.1", "10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.6"]);
    let (s, v) = app
        .call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "full", "pubkey": pubkey(20)})))
        .await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "subnet_full");
    // Duplicate key and duplicate name are 409s naming the field.
    let (_, first) = app.call("GET", "/api/v1/device?username=ann", None).await;
    let key = first[0]["pubkey"].as_str().unwrap().to_owned();
    let (s, v) =
        app.call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "other", "pubkey": key}))).await;
    assert_eq!(error_code(s, &v, StatusCode::CONFLICT), "conflict");
    assert_eq!(v["field"], "pubkey");
    let id = first[0]["id"].as_i64().unwrap();
    let (s, _) = app.call("DELETE", &format!("/api/v1/device/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, d) =
        app.call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "d1", "pubkey": pubkey(21)}))).await;
    assert_eq!(error_code(s, &d, StatusCode::CONFLICT), "conflict");
    assert_eq!(d["field"], "name");
    // The freed address is reused.
    let (s, d) = app
        .call("POST", "/api/v1/device", Some(json!({"username": "ann", "name": "again", "pubkey": pubkey(22)})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(d["configs"][0]["assigned_ip"], "10.5.0.1");
    let (s, d) = app.call("PUT", &format!("/api/v1/device/{}", d["id"]), Some(json!({"name": "renamed"}))).await;
    assert_eq!((s, d["name"].as_str()), (StatusCode::OK, Some("renamed")));
    app.stop().await;
}

async fn start_enrollment_rules(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    let (s, v) = app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // PROTOCOL.md's two fields, plus Onramp's `expires_at` (extra fields keep clients working).
    assert_eq!(v.as_object().unwrap().len(), 3, "enrollment_token, enrollment_url, expires_at: {v}");
    assert!(is_well_formed(v["enrollment_token"].as_str().unwrap()));
    assert_eq!(v["enrollment_url"], "https://edge.example.com/");
    // No body at all works too (scripts), and so does a lifetime override.
    let (s, v) = app.call("POST", "/api/v1/user/ann/start_enrollment", None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) =
        app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({"token_expiration_time": "3d"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, pending) = app.call("GET", "/api/v1/user/ann/tokens", None).await;
    let p = pending.as_array().unwrap();
    assert_eq!(p.len(), 1, "a new token revokes the older unused ones: {pending}");
    assert_eq!(p[0]["expires_at"].as_i64().unwrap() - p[0]["created_at"].as_i64().unwrap(), 3 * 86_400);
    assert!(p[0].get("token").is_none() && !pending.to_string().contains("hash"));
    let (s, v) =
        app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({"token_expiration_time": "soon"}))).await;
    assert_eq!(v["field"], "token_expiration_time", "{s}");
    let (s, v) = app
        .call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({"send_enrollment_notification": true})))
        .await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    assert_eq!(v["field"], "email");
    let (s, v) = app
        .call(
            "POST",
            "/api/v1/user/ann/start_enrollment",
            Some(json!({"send_enrollment_notification": true, "email": "ann@example.com"})),
        )
        .await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "smtp_not_configured");
    let (s, v) = app.call("POST", "/api/v1/user/nobody/start_enrollment", Some(json!({}))).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    app.call("PUT", "/api/v1/user/ann", Some(json!({"is_active": false}))).await;
    let (s, v) = app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "user_disabled");
    app.call(
        "POST",
        "/api/v1/user",
        Some(json!({"username": "done", "first_name": "D", "last_name": "O", "email": "done@example.com", "password": "Str0ng!Pass"})),
    )
    .await;
    let (s, v) = app.call("POST", "/api/v1/user/done/start_enrollment", Some(json!({}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "user_enrolled");
    app.stop().await;
}

async fn start_desktop_rules(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    let (s, v) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "no_locations");
    app.create_location("office", "10.1.0.1/24").await;
    let (s, v) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, pending) = app.call("GET", "/api/v1/user/ann/tokens", None).await;
    assert_eq!(pending[0]["kind"], "desktop_config");
    app.call("PUT", "/api/v1/user/ann", Some(json!({"is_active": false}))).await;
    let (s, v) = app.call("POST", "/api/v1/user/ann/start_desktop", Some(json!({}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "user_disabled");
    app.stop().await;
}

async fn pending_tokens_and_revocation(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    let (_, t) = app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    let secret = TokenSecret::from_user(t["enrollment_token"].as_str().unwrap());
    let (_, pending) = app.call("GET", "/api/v1/user/ann/tokens", None).await;
    let id = pending[0]["id"].as_i64().unwrap();
    assert_eq!(pending[0]["issued_by"], "admin");
    let (s, v) = app.call("DELETE", &format!("/api/v1/user/ann/tokens/{id}"), None).await;
    assert_eq!((s, v["revoked"].as_i64()), (StatusCode::OK, Some(1)));
    let (s, v) = app.call("DELETE", &format!("/api/v1/user/ann/tokens/{id}"), None).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    let err = app.core.start_session(&Actor::system("t"), &secret).await.unwrap_err();
    assert_eq!(err.code(), "token_revoked");
    app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    let (s, v) = app.call("DELETE", "/api/v1/user/ann/tokens", None).await;
    assert_eq!((s, v["revoked"].as_i64()), (StatusCode::OK, Some(1)));
    let (_, pending) = app.call("GET", "/api/v1/user/ann/tokens", None).await;
    assert_eq!(pending, json!([]));
    app.stop().await;
}

async fn api_token_lifecycle(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (s, v) = app.call_as(None, "GET", "/api/v1/user", None).await;
    assert_eq!(error_code(s, &v, StatusCode::UNAUTHORIZED), "unauthorized");
    let (s, v) = app.call_as(Some("onramp_not-a-real-token"), "GET", "/api/v1/user", None).await;
    assert_eq!(error_code(s, &v, StatusCode::UNAUTHORIZED), "unauthorized");
    let (s, created) = app.call("POST", "/api/v1/api_token", Some(json!({"name": "ci"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    let (s, _) = app.call_as(Some(&secret), "GET", "/api/v1/user", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = app.call("GET", "/api/v1/api_token", None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&secret), "the secret is shown once only");
    let id = created["id"].as_i64().unwrap();
    let (s, _) = app.call("DELETE", &format!("/api/v1/api_token/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.call_as(Some(&secret), "GET", "/api/v1/user", None).await;
    assert_eq!(error_code(s, &v, StatusCode::UNAUTHORIZED), "unauthorized");
    // Non-admin users cannot get tokens; an admin who loses the role or is disabled is refused.
    app.create_user("ann").await;
    let (s, v) = app.call("POST", "/api/v1/api_token", Some(json!({"name": "x", "username": "ann"}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "not_admin");
    app.call("POST", "/api/v1/group/admin/member", Some(json!({"username": "ann"}))).await;
    let (_, t) = app.call("POST", "/api/v1/api_token", Some(json!({"name": "ann", "username": "ann"}))).await;
    let ann = t["token"].as_str().unwrap().to_owned();
    assert_eq!(app.call_as(Some(&ann), "GET", "/api/v1/user", None).await.0, StatusCode::OK);
    app.call("DELETE", "/api/v1/group/admin/member/ann", None).await;
    let (s, v) = app.call_as(Some(&ann), "GET", "/api/v1/user", None).await;
    assert_eq!(error_code(s, &v, StatusCode::FORBIDDEN), "forbidden");
    app.call("POST", "/api/v1/group/admin/member", Some(json!({"username": "ann"}))).await;
    app.call("PUT", "/api/v1/user/ann", Some(json!({"is_active": false}))).await;
    let (s, v) = app.call_as(Some(&ann), "GET", "/api/v1/user", None).await;
    assert_eq!(error_code(s, &v, StatusCode::FORBIDDEN), "forbidden");
    app.stop().await;
}

async fn bulk_provisioning(b: Backend) {
    let app = TestApp::spawn(b).await;
    for u in ["ann", "bob", "cid"] {
        app.create_user(u).await;
    }
    app.call(
        "POST",
        "/api/v1/user",
        Some(json!({"username": "eve", "first_name": "E", "last_name": "V", "email": "eve@example.com", "password": "Str0ng!Pass"})),
    )
    .await;
    app.call("PUT", "/api/v1/user/cid", Some(json!({"is_active": false}))).await;
    app.call("POST", "/api/v1/group", Some(json!({"name": "rollout", "members": ["ann", "bob", "cid", "eve"]}))).await;
    // Unknown usernames fail the request before anything is written.
    let (s, v) =
        app.call("POST", "/api/v1/provisioning/bulk", Some(json!({"group": "rollout", "usernames": ["ghost"]}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    let (_, pending) = app.call("GET", "/api/v1/user/ann/tokens", None).await;
    assert_eq!(pending, json!([]));
    let (s, v) = app
        .call("POST", "/api/v1/provisioning/bulk", Some(json!({"group": "rollout", "token_expiration_time": "1w"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!((v["issued"].as_i64(), v["skipped"].as_i64()), (Some(3), Some(1)));
    let r = v["results"].as_array().unwrap();
    let by = |n: &str| r.iter().find(|x| x["username"] == n).unwrap().clone();
    assert_eq!(by("ann")["kind"], "enrollment");
    assert_eq!(by("eve")["kind"], "desktop_config", "enrolled users get desktop tokens");
    assert_eq!(by("cid")["skipped"], "user is disabled");
    assert!(is_well_formed(by("bob")["enrollment_token"].as_str().unwrap()));
    assert_eq!(by("bob")["enrollment_url"], "https://edge.example.com/");
    let (s, v) = app.call("POST", "/api/v1/provisioning/bulk", Some(json!({"usernames": ["ann"]}))).await;
    assert_eq!((s, v["issued"].as_i64()), (StatusCode::CREATED, Some(1)));
    let (_, pending) = app.call("GET", "/api/v1/user/ann/tokens", None).await;
    assert_eq!(pending.as_array().unwrap().len(), 1, "re-issuing revoked the bulk token");
    app.stop().await;
}

async fn concurrent_session_start_is_atomic(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    let (_, t) = app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    let secret = TokenSecret::from_user(t["enrollment_token"].as_str().unwrap());
    let starts = (0..100).map(|_| {
        let core = app.core.clone();
        let secret = secret.clone();
        tokio::spawn(async move { core.start_session(&Actor::system("race"), &secret).await })
    });
    let results: Vec<_> = futures::future::join_all(starts).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
    let deadlines: std::collections::HashSet<i64> = results.iter().map(|r| r.deadline).collect();
    assert_eq!(deadlines.len(), 1, "one session, one deadline");
    assert_eq!(results.iter().filter(|r| r.opened).count(), 1, "exactly one start opened the session");
    let (_, events) = app.call("GET", "/api/v1/audit?action=enrollment.started", None).await;
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");

    // The same over HTTP through the edge, then concurrent activations: one wins.
    app.create_user("bob").await;
    let (_, t) = app.call("POST", "/api/v1/user/bob/start_enrollment", Some(json!({}))).await;
    let token = t["enrollment_token"].as_str().unwrap().to_owned();
    let post = |path: &'static str, body: Value| {
        let (client, url) = (app.client.clone(), format!("{}/api/v1/enrollment/{path}", app.edge_url));
        tokio::spawn(async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let starts = (0..100).map(|_| post("start", json!({ "token": token })));
    let results: Vec<_> = futures::future::join_all(starts).await.into_iter().map(Result::unwrap).collect();
    assert!(results.iter().all(|(s, _)| *s == StatusCode::OK), "{results:?}");
    let deadlines: std::collections::HashSet<i64> =
        results.iter().map(|(_, v)| v["deadline_timestamp"].as_i64().unwrap()).collect();
    assert_eq!(deadlines.len(), 1, "one session, one deadline");
    let (_, events) = app.call("GET", "/api/v1/audit?action=enrollment.started", None).await;
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");
    let activations =
        (0..8).map(|i| post("activate_user", json!({ "token": token, "password": format!("Str0ng!Pass{i}") })));
    let results: Vec<_> = futures::future::join_all(activations).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(results.iter().filter(|(s, _)| *s == StatusCode::OK).count(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|(s, _)| *s != StatusCode::OK)
            .all(|(s, v)| *s == StatusCode::BAD_REQUEST && v["code"] == "already_activated"),
        "{results:?}"
    );
    let (_, events) = app.call("GET", "/api/v1/audit?action=enrollment.completed", None).await;
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    app.stop().await;
}

/// Concurrent issuance (group-committed on SQLite) still leaves exactly one usable token
/// per user, and every user gets theirs.
async fn concurrent_issuance_keeps_one_token_per_user(b: Backend) {
    let app = TestApp::spawn(b).await;
    for u in ["ann", "bob", "cid"] {
        app.create_user(u).await;
    }
    let calls = (0..60).map(|i| {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/api/v1/user/{}/start_enrollment", ["ann", "bob", "cid"][i % 3])),
            app.token.clone(),
        );
        tokio::spawn(async move {
            let r = client.post(url).bearer_auth(token).json(&json!({})).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<Value>().await.unwrap()["enrollment_token"].as_str().unwrap().to_owned()
        })
    });
    let tokens: Vec<String> = futures::future::join_all(calls).await.into_iter().map(|r| r.unwrap()).collect();
    for u in ["ann", "bob", "cid"] {
        let (_, pending) = app.call("GET", &format!("/api/v1/user/{u}/tokens"), None).await;
        assert_eq!(pending.as_array().unwrap().len(), 1, "{u}: {pending}");
    }
    let live = futures::future::join_all(tokens.iter().map(|t| {
        let core = app.core.clone();
        let t = TokenSecret::from_user(t);
        async move { core.start_session(&Actor::system("t"), &t).await.is_ok() }
    }))
    .await;
    assert_eq!(live.iter().filter(|ok| **ok).count(), 3, "exactly the newest token of each user works");
    app.stop().await;
}

async fn session_and_expiry_rules(b: Backend) {
    let app = TestApp::builder(b).manual_clock().spawn().await;
    let clock = app.clock.clone().unwrap();
    let actor = Actor::system("t");
    app.create_user("ann").await;
    app.create_user("bob").await;
    // Expired before first use.
    let (_, t) =
        app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({"token_expiration_time": "1h"}))).await;
    let ann = TokenSecret::from_user(t["enrollment_token"].as_str().unwrap());
    clock.advance(3601);
    assert_eq!(app.core.start_session(&actor, &ann).await.unwrap_err().code(), "token_expired");
    assert_eq!(app.core.start_session(&actor, &ann).await.unwrap_err().to_string(), "token expired");
    // A session restarted within its window keeps its deadline, even past token expiry.
    let (_, t) =
        app.call("POST", "/api/v1/user/bob/start_enrollment", Some(json!({"token_expiration_time": "5m"}))).await;
    let bob = TokenSecret::from_user(t["enrollment_token"].as_str().unwrap());
    let first = app.core.start_session(&actor, &bob).await.unwrap();
    assert!(first.opened);
    assert_eq!(first.deadline, clock_now(&app) + 600);
    clock.advance(599);
    let again = app.core.start_session(&actor, &bob).await.unwrap();
    assert_eq!((again.opened, again.deadline), (false, first.deadline));
    clock.advance(1);
    assert_eq!(app.core.start_session(&actor, &bob).await.unwrap_err().code(), "session_expired");
    // Unknown and malformed tokens.
    let unknown = TokenSecret::from_user("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(app.core.start_session(&actor, &unknown).await.unwrap_err().to_string(), "invalid token");
    // Disabled user.
    let (_, t) = app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    app.call("PUT", "/api/v1/user/ann", Some(json!({"is_active": false}))).await;
    let t = TokenSecret::from_user(t["enrollment_token"].as_str().unwrap());
    assert_eq!(app.core.start_session(&actor, &t).await.unwrap_err().code(), "user_disabled");
    app.stop().await;
}

fn clock_now(app: &TestApp) -> i64 {
    app.core.now()
}

async fn settings_and_audit(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (s, v) = app.call("GET", "/api/v1/settings", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["enrollment"]["token_lifetime_secs"], 86_400);
    assert_eq!(v["enrollment"]["session_lifetime_secs"], 600);
    assert!(uuid_like(v["instance_id"].as_str().unwrap()));
    let patch = json!({"instance_name": "ACME VPN", "smtp": {"host": "mail.example.com", "password": "hunter2", "sender": "vpn@example.com"},
                       "enrollment": {"session_lifetime_secs": 900}});
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(patch)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["instance_name"], "ACME VPN");
    assert_eq!(v["smtp"]["password_set"], true);
    assert!(!v.to_string().contains("hunter2"), "the SMTP password is never returned");
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(json!({"enrollment": {"nonsense": 1}}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    let (s, v) = app
        .call("PATCH", "/api/v1/settings", Some(json!({"templates": {"invitation_body": "Hi {{ frist_name }}"}})))
        .await;
    assert_eq!(v["field"], "templates.invitation_body", "{s} {v}");
    let (s, v) =
        app.call("PATCH", "/api/v1/settings", Some(json!({"enrollment": {"session_lifetime_secs": "ten"}}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    let (_, v) = app.call("GET", "/api/v1/settings", None).await;
    assert_eq!(v["enrollment"]["session_lifetime_secs"], 900, "failed patches changed nothing");
    // Audit: who, what, when, IP, user agent.
    app.create_user("ann").await;
    app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    let (s, events) = app.call("GET", "/api/v1/audit?action=enrollment_token.added", None).await;
    assert_eq!(s, StatusCode::OK);
    let e = &events[0];
    assert_eq!((e["actor"].as_str(), e["subject"].as_str()), (Some("admin"), Some("ann")));
    assert_eq!(e["ip"], "127.0.0.1");
    assert!(e["at"].as_i64().unwrap() > 1_700_000_000);
    let (_, all) = app.call("GET", "/api/v1/audit?limit=2", None).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (s, v) = app.call("GET", "/api/v1/audit?limit=abc", None).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_query");
    app.stop().await;
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn health_metrics_and_docs() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (s, v) = app.call_as(None, "GET", "/api/v1/health", None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    app.call("GET", "/api/v1/user", None).await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("onramp_http_requests_total"), "{metrics}");
    let (s, doc) = app.call_as(None, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    for p in
        ["/api/v1/user/{username}/start_enrollment", "/api/v1/location", "/api/v1/provisioning/bulk", "/api/v1/audit"]
    {
        assert!(doc["paths"].get(p).is_some(), "{p} missing from OpenAPI");
    }
    // Every operation has a summary (the docs page lists them by it).
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has no summary");
        }
    }
    assert!(operations > 40, "{operations}");
    assert!(doc["paths"]["/api/v1/mail/test"]["post"].is_object());
    // Modes are named values; the wire keeps PROTOCOL.md's numbers and strings.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["LocationMfaMode"]["enum"], json!([1, 2, 3]), "{}", schemas["LocationMfaMode"]);
    assert_eq!(schemas["LocationMfaMode"]["x-enum-varnames"], json!(["disabled", "internal", "external"]));
    assert_eq!(
        schemas["TokenKind"]["enum"],
        json!(["enrollment", "desktop_config", "password_reset", "network_device"])
    );
    assert!(doc["paths"]["/api/v1/device/network/start_cli"]["post"].is_object());
    assert_eq!(schemas["MailStatus"]["enum"], json!(["pending", "retrying", "sent", "failed", "cancelled"]));
    assert!(schemas["StartEnrollmentResponse"]["properties"]["expires_at"].is_object());
    for docs in ["/api/docs", "/api/docs/"] {
        let r = app.client.get(app.url(docs)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{docs}");
        assert!(r.text().await.unwrap().contains("swagger-ui-bundle.js"), "{docs}");
    }
    let js = app.client.get(app.url("/api/docs/swagger-ui-bundle.js")).send().await.unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.bytes().await.unwrap().len() > 100_000);
    let (s, v) = app.call("GET", "/api/v1/nope", None).await;
    assert_eq!(error_code(s, &v, StatusCode::NOT_FOUND), "not_found");
    let (s, v) = app.call("PATCH", "/api/v1/audit", None).await;
    assert_eq!(error_code(s, &v, StatusCode::METHOD_NOT_ALLOWED), "method_not_allowed");
    app.stop().await;
}

/// Two core replicas on one database, each with its own address cache, register devices
/// concurrently: every address is handed out once, and a deleted device's address returns.
async fn two_cores_allocate_distinct_addresses(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_location("office", "10.9.0.1/24").await;
    // Four users: 24 devices stay under the per-user device cap (10).
    for u in ["u1", "u2", "u3", "u4"] {
        app.create_user(u).await;
    }
    let store = onramp_store::Store::connect(&app.database_url, false).await.unwrap();
    let other =
        onramp_core::Core::new(store, std::sync::Arc::new(onramp_core::SystemClock), Default::default()).await.unwrap();
    let cores = [app.core.clone(), other];
    let jobs = (0..24).map(|i| {
        let core = cores[i % 2].clone();
        async move {
            let input = onramp_core::DeviceInput {
                username: format!("u{}", i % 4 + 1),
                name: format!("d{i}"),
                pubkey: pubkey(i as u8),
            };
            core.add_device(&Actor::system("test"), input).await.unwrap()
        }
    });
    let devices = futures::future::join_all(jobs).await;
    let mut ips: Vec<String> = devices.iter().map(|d| d.configs[0].assigned_ip.clone()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 24, "an address was handed out twice");
    // Delete on one replica, allocate on the same one: the lowest free address is reused.
    let freed = devices.iter().find(|d| d.configs[0].assigned_ip == "10.9.0.2").unwrap();
    cores[0].delete_device(&Actor::system("test"), freed.id).await.unwrap();
    let again = cores[0]
        .add_device(
            &Actor::system("test"),
            onramp_core::DeviceInput { username: "u1".into(), name: "again".into(), pubkey: pubkey(99) },
        )
        .await
        .unwrap();
    assert_eq!(again.configs[0].assigned_ip, "10.9.0.2");
    app.stop().await;
}
