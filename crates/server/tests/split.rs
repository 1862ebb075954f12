//! Split deployment: core and a standalone edge as separate processes, linked by the
//! core-initiated gRPC stream over mutual TLS, the edge serving HTTPS itself. The edge
//! answers 503 without core; restarting the edge or core mid-enrollment loses nothing; a
//! "core" whose certificate the edge's CA did not sign, or that is not for the configured
//! core name (ONRAMP_LINK_CORE_NAME), never gets in.

mod common;
mod procs;
use common::*;
use procs::*;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Ports {
    http: u16,
    edge: u16,
    link: u16,
}

fn spawn_edge(p: &Ports, pki: &Pki) -> Proc {
    Proc(
        Command::new(BIN)
            .arg("edge")
            .env("ONRAMP_EDGE_ADDR", format!("127.0.0.1:{}", p.edge))
            .env("ONRAMP_EDGE_LINK_ADDR", format!("127.0.0.1:{}", p.link))
            .env("ONRAMP_EDGE_RATE_LIMIT", "0")
            .env("ONRAMP_LINK_CERT_FILE", pki.path("edge.pem"))
            .env("ONRAMP_LINK_KEY_FILE", pki.path("edge.key"))
            .env("ONRAMP_LINK_CA_FILE", pki.path("ca.pem"))
            .env("ONRAMP_LINK_CORE_NAME", "onramp-core")
            .env("ONRAMP_EDGE_TLS_CERT_FILE", pki.path("edge.pem"))
            .env("ONRAMP_EDGE_TLS_KEY_FILE", pki.path("edge.key"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn onramp edge"),
    )
}

fn spawn_core_as(p: &Ports, data: &std::path::Path, pki: &Pki, identity: &str) -> Proc {
    Proc(
        Command::new(BIN)
            .arg("serve")
            // Any free port: tests run many cores at once.
            .env("ONRAMP_GATEWAY_ADDR", "127.0.0.1:0")
            .env("ONRAMP_DATA_DIR", data)
            .env("ONRAMP_HTTP_ADDR", format!("127.0.0.1:{}", p.http))
            .env("ONRAMP_EDGE_ENABLED", "false")
            .env("ONRAMP_EDGE_URLS", format!("https://localhost:{}", p.link))
            .env("ONRAMP_LINK_CA_FILE", pki.path("ca.pem"))
            .env("ONRAMP_LINK_CERT_FILE", pki.path(&format!("{identity}.pem")))
            .env("ONRAMP_LINK_KEY_FILE", pki.path(&format!("{identity}.key")))
            .env("ONRAMP_PUBLIC_URL", format!("https://localhost:{}", p.edge))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.with_file_name(format!("{identity}.log"))).unwrap())
            .spawn()
            .expect("spawn onramp serve"),
    )
}

fn spawn_core(p: &Ports, data: &std::path::Path, pki: &Pki) -> Proc {
    spawn_core_as(p, data, pki, "core")
}

/// Waits until the edge's health endpoint answers `want`.
async fn edge_health(c: &reqwest::Client, p: &Ports, want: StatusCode) -> Value {
    for _ in 0..300 {
        if let Ok(r) = c.get(format!("https://localhost:{}/api/v1/health", p.edge)).send().await {
            if r.status() == want {
                let hsts = r.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_owned());
                assert_eq!(hsts.as_deref(), Some("max-age=31536000"), "HTTPS edge without HSTS");
                return r.json().await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("edge health never became {want}");
}

async fn edge_post(
    c: &reqwest::Client,
    p: &Ports,
    path: &str,
    cookie: Option<&str>,
    body: Value,
) -> (StatusCode, Value, Option<String>) {
    let mut r = c.post(format!("https://localhost:{}/api/v1/{path}", p.edge)).json(&body);
    if let Some(ck) = cookie {
        r = r.header("cookie", ck);
    }
    let r = r.send().await.unwrap();
    let set_cookie = r.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    if let Some(sc) = &set_cookie {
        // Served over HTTPS, so the session cookie must not travel in clear.
        assert!(sc.contains("Secure") && sc.contains("HttpOnly") && sc.contains("SameSite=Strict"), "{sc}");
    }
    let cookie = set_cookie.map(|v| v.split(';').next().unwrap().to_owned());
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }, cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_deployment_survives_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let p = Ports { http: free_port(), edge: free_port(), link: free_port() };
    let pki = Pki::new();
    let c = pki.client();

    // An edge without core says so.
    let edge = spawn_edge(&p, &pki);
    let v = edge_health(&c, &p, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(v["core"], "disconnected");
    let (s, v, _) = edge_post(&c, &p, "enrollment/start", None, json!({"token": "x"})).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(v["error"].as_str().unwrap().contains("core is not connected"), "{v}");

    // A "core" whose client certificate another CA signed is refused by the TLS handshake.
    let rogue = spawn_core_as(&p, &data, &pki, "rogue");
    std::thread::sleep(Duration::from_secs(3));
    edge_health(&c, &p, StatusCode::SERVICE_UNAVAILABLE).await;
    rogue.stop();
    // Nor is a certificate from the right CA that is not core's: the edge's own (a server
    // certificate) or a client certificate for another name.
    let impostor = spawn_core_as(&p, &data, &pki, "edge");
    std::thread::sleep(Duration::from_secs(3));
    edge_health(&c, &p, StatusCode::SERVICE_UNAVAILABLE).await;
    impostor.stop();
    let impostor = spawn_core_as(&p, &data, &pki, "impostor");
    std::thread::sleep(Duration::from_secs(3));
    edge_health(&c, &p, StatusCode::SERVICE_UNAVAILABLE).await;
    impostor.stop();
    // Core's log says why in words: the gRPC status, not a Debug dump of it.
    let log = std::fs::read_to_string(data.with_file_name("impostor.log")).unwrap();
    assert!(log.contains("not the configured core"), "{log}");
    assert!(!log.contains("MetadataMap") && !log.contains("Some(") && !log.contains('\u{1b}'), "{log}");

    let core = spawn_core(&p, &data, &pki);
    edge_health(&c, &p, StatusCode::OK).await;
    let out = Command::new(BIN)
        .args(["admin", "api-token", "create", "--name", "t"])
        .env("ONRAMP_DATA_DIR", &data)
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let api = |path: &str| format!("http://127.0.0.1:{}/api/v1/{path}", p.http);
    for (path, body) in [
        ("location", json!({"name": "office", "address": "10.1.0.1/24", "endpoint": "vpn.example.com", "port": 51820})),
        ("user", json!({"username": "ann", "first_name": "Ann", "last_name": "L", "email": "ann@example.com"})),
    ] {
        let r = c.post(api(path)).bearer_auth(&token).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let t: Value = c
        .post(api("user/ann/start_enrollment"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["enrollment_url"], format!("https://localhost:{}/", p.edge));
    let enroll = t["enrollment_token"].as_str().unwrap().to_owned();

    let (s, start, cookie) = edge_post(&c, &p, "enrollment/start", None, json!({"token": enroll})).await;
    assert_eq!(s, StatusCode::OK, "{start}");
    let cookie = cookie.unwrap();

    // Restart the edge mid-flow: core reconnects, the session cookie still works.
    edge.stop();
    let edge = spawn_edge(&p, &pki);
    edge_health(&c, &p, StatusCode::OK).await;
    let (s, dev, _) =
        edge_post(&c, &p, "enrollment/create_device", Some(&cookie), json!({"name": "laptop", "pubkey": pubkey(1)}))
            .await;
    assert_eq!(s, StatusCode::OK, "{dev}");
    assert_eq!(dev["configs"][0]["assigned_ip"], "10.1.0.2");

    // Restart core: the edge reports it gone, then the link comes back.
    core.stop();
    edge_health(&c, &p, StatusCode::SERVICE_UNAVAILABLE).await;
    let core = spawn_core(&p, &data, &pki);
    edge_health(&c, &p, StatusCode::OK).await;
    let (s, v, _) =
        edge_post(&c, &p, "enrollment/activate_user", Some(&cookie), json!({"password": "Str0ng!Pass"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, again, _) = edge_post(&c, &p, "enrollment/start", None, json!({"token": enroll})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["deadline_timestamp"], start["deadline_timestamp"]);
    assert_eq!(again["user"]["enrolled"], true);
    core.stop();
    edge.stop();
}

#[test]
fn insecure_link_needs_an_explicit_opt_in() {
    let p = Ports { http: free_port(), edge: free_port(), link: free_port() };
    let out = Command::new(BIN)
        .arg("edge")
        .env("ONRAMP_EDGE_ADDR", format!("127.0.0.1:{}", p.edge))
        .env("ONRAMP_EDGE_LINK_ADDR", format!("127.0.0.1:{}", p.link))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ONRAMP_LINK_CERT_FILE") && err.contains("ONRAMP_LINK_INSECURE"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        // Any free port: tests run many cores at once.
        .env("ONRAMP_GATEWAY_ADDR", "127.0.0.1:0")
        .env("ONRAMP_DATA_DIR", tmp.path())
        .env("ONRAMP_HTTP_ADDR", format!("127.0.0.1:{}", p.http))
        .env("ONRAMP_EDGE_ENABLED", "false")
        .env("ONRAMP_EDGE_URLS", format!("http://127.0.0.1:{}", p.link))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plaintext link") && err.contains("ONRAMP_LINK_INSECURE"), "{err}");

    // A certificate that is not PEM is named.
    let bogus = tmp.path().join("cert.pem");
    std::fs::write(&bogus, "hello").unwrap();
    let out = Command::new(BIN)
        .arg("edge")
        .env("ONRAMP_EDGE_ADDR", format!("127.0.0.1:{}", p.edge))
        .env("ONRAMP_EDGE_LINK_ADDR", format!("127.0.0.1:{}", p.link))
        .env("ONRAMP_LINK_INSECURE", "true")
        .env("ONRAMP_EDGE_TLS_CERT_FILE", &bogus)
        .env("ONRAMP_EDGE_TLS_KEY_FILE", &bogus)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("edge_tls_cert_file") && err.contains("not a PEM file"), "{err}");
}
