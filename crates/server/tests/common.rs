//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code, unused_imports)]

pub use onramp_testkit::app::{Backend, TestApp};
pub use reqwest::StatusCode;
pub use serde_json::{json, Value};

/// Runs a test body against SQLite and against a real PostgreSQL server.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A random valid WireGuard public key.
pub fn pubkey(n: u8) -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    b[0] = n;
    b[1..9].copy_from_slice(
        &std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos().to_le_bytes()[..8],
    );
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Asserts the error envelope and returns its code.
pub fn error_code(status: StatusCode, body: &Value, expected: StatusCode) -> String {
    assert_eq!(status, expected, "{body}");
    assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "missing error message: {body}");
    body["code"].as_str().unwrap_or_else(|| panic!("missing code: {body}")).to_owned()
}

/// A location "office" (10.9.0.0/24) open to `group`, and a laptop for `username` in it;
/// returns the location's id and the laptop's key.
pub async fn laptop_in_group_location(app: &TestApp, group: &str, username: &str, seed: u8) -> (i64, String) {
    let (s, loc) = app
        .call(
            "POST",
            "/api/v1/location",
            Some(json!({"name": "office", "address": "10.9.0.1/24", "endpoint": "vpn.example.com", "port": 51820,
                        "allowed_groups": [group]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{loc}");
    let key = pubkey(seed);
    let body = json!({"username": username, "name": "laptop", "pubkey": key});
    let (s, v) = app.call("POST", "/api/v1/device", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (loc["id"].as_i64().unwrap(), key)
}

/// The keys of the location's peers, as its gateway gets them.
pub async fn peer_keys(app: &TestApp, location: i64) -> Vec<String> {
    app.core.store().gateway_peers(location).await.unwrap().into_iter().map(|(k, _)| k).collect()
}

/// A JSON array of strings, sorted.
pub fn sorted_names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect();
    n.sort();
    n
}
