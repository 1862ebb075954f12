//! `onramp-client provision --source entra` against a local HTTP server that answers like
//! the Microsoft identity platform and Graph (documented shapes: token and device-code
//! endpoints, `users/{id}?$select=customSecurityAttributes`, `/me`, and their errors).

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_onramp-client");
const TOKEN: &str = "DuK8xRes5zYqem0fcAViQPRvIrNkGz7S";

type Reply = (StatusCode, Json<Value>);

async fn token(State(polls): State<Arc<AtomicU32>>, Form(f): Form<HashMap<String, String>>) -> Reply {
    match f.get("grant_type").map(String::as_str) {
        Some("client_credentials") if f.get("client_secret").map(String::as_str) == Some("s3cret") => {
            (StatusCode::OK, Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "app-token"})))
        }
        // Signs in, but Graph will not accept the token (revoked, wrong audience).
        Some("client_credentials") if f.get("client_secret").map(String::as_str) == Some("stale") => {
            (StatusCode::OK, Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "stale-token"})))
        }
        Some("client_credentials") => (
            StatusCode::UNAUTHORIZED,
            Json(
                json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x"}),
            ),
        ),
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            // The person signs in while the client polls: pending once, then done.
            if polls.fetch_add(1, Ordering::SeqCst) == 0 {
                (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "authorization_pending", "error_description": "AADSTS70016: pending"})),
                )
            } else {
                (StatusCode::OK, Json(json!({"token_type": "Bearer", "access_token": "user-token"})))
            }
        }
        _ => (StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type"}))),
    }
}

async fn devicecode() -> Reply {
    (
        StatusCode::OK,
        Json(json!({
            "device_code": "DC-123", "user_code": "ABCD-EFGH", "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": 900, "interval": 1,
            "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-EFGH to authenticate."
        })),
    )
}

fn attributes(set: Value) -> Reply {
    (
        StatusCode::OK,
        Json(
            json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(customSecurityAttributes)/$entity", "customSecurityAttributes": set}),
        ),
    )
}

fn ann() -> Value {
    json!({"Defguard": {"@odata.type": "#microsoft.graph.customSecurityAttributeValue",
                         "EnrollmentToken": TOKEN, "EnrollmentUrl": "https://edge.example.com/"}})
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Reply {
    (status, Json(json!({"error": {"code": code, "message": message, "innerError": {"request-id": "r"}}})))
}

async fn user(Path(id): Path<String>, headers: HeaderMap) -> Reply {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer app-token") {
        return graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", "Access token validation failure.");
    }
    match id.as_str() {
        "ann@contoso.com" => attributes(ann()),
        "noperm@contoso.com" => graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ),
        "noset@contoso.com" => attributes(Value::Null),
        "half@contoso.com" => attributes(json!({"Defguard": {"EnrollmentUrl": "https://edge.example.com/"}})),
        other => graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!("Resource '{other}' does not exist."),
        ),
    }
}

async fn me(headers: HeaderMap) -> Reply {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some("Bearer user-token") => attributes(ann()),
        _ => graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", "Access token validation failure."),
    }
}

async fn server() -> String {
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(devicecode))
        .route("/v1.0/users/{id}", get(user))
        .route("/v1.0/me", get(me))
        .with_state(Arc::new(AtomicU32::new(0)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn provision(base: &str, dir: &std::path::Path, extra: &[&str]) -> Out {
    let mut args: Vec<String> = [
        "provision",
        "--source",
        "entra",
        "--entra-tenant",
        "contoso.onmicrosoft.com",
        "--entra-client-id",
        "app-id",
        "--graph-url",
        base,
        "--entra-login-url",
        base,
        "--user",
        "ann",
        "--output",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(dir.join("provisioning.json").display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).stdin(Stdio::null()).output().unwrap())
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_attributes_to_provisioning_json() {
    let base = server().await;
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "nope").unwrap();
    let stale = tmp.path().join("stale");
    std::fs::write(&stale, "stale").unwrap();
    let s = secret.to_str().unwrap();

    // App sign-in with a client secret, reading a given user.
    let d = tmp.path().join("ok");
    let r = provision(&base, &d, &["--entra-client-secret-file", s, "--entra-user", "ann@contoso.com"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains(TOKEN) && !r.stderr.contains(TOKEN));
    let v: Value = serde_json::from_slice(&std::fs::read(d.join("provisioning.json")).unwrap()).unwrap();
    assert_eq!(v, json!({"enrollment_token": TOKEN, "enrollment_url": "https://edge.example.com/"}));

    // Each failure with its exit code and a message naming the cause.
    let cases: Vec<(&str, &str, i32, &str)> = vec![
        ("ghost@contoso.com", s, 11, "no user ghost@contoso.com"),
        ("noperm@contoso.com", s, 15, "CustomSecAttributeAssignment.Read.All"),
        ("noset@contoso.com", s, 11, "no custom security attributes in the set Defguard"),
        ("half@contoso.com", s, 12, "EnrollmentToken and EnrollmentUrl"),
        ("ann@contoso.com", wrong.to_str().unwrap(), 15, "AADSTS7000215"),
        ("ann@contoso.com", stale.to_str().unwrap(), 15, "refused the sign-in (401)"),
    ];
    for (user, secret_file, code, want) in cases {
        let d = tmp.path().join(user);
        let r = provision(&base, &d, &["--entra-client-secret-file", secret_file, "--entra-user", user]).await;
        assert_eq!(r.code, code, "{user}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{user}: wanted {want:?} in {}", r.stderr);
        assert!(!d.join("provisioning.json").exists());
    }
    // Another attribute set name.
    let r = provision(
        &base,
        &tmp.path().join("set"),
        &["--entra-client-secret-file", s, "--entra-user", "ann@contoso.com", "--entra-attribute-set", "Onramp"],
    )
    .await;
    assert_eq!(r.code, 11, "{}", r.stderr);

    // A person signs in with a device code; the client reads /me.
    let d = tmp.path().join("device");
    let r = provision(&base, &d, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("enter the code ABCD-EFGH"), "{}", r.stderr);
    assert!(d.join("provisioning.json").exists());

    // Graph unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("http://127.0.0.1:{port}");
    let r = provision(
        &dead,
        &tmp.path().join("dead"),
        &["--entra-client-secret-file", s, "--entra-user", "ann@contoso.com"],
    )
    .await;
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("127.0.0.1:{port}")), "{}", r.stderr);
}
