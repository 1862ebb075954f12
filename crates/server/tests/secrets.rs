//! Secrets at rest (issue 10, items 8 and 14): outbox bodies and attachments encrypted with
//! a key kept outside the database, erased when a message finally fails, the SMTP password
//! encrypted in the settings row, and no token left in the SQLite files. The database is
//! read with a plain SQL connection, not through the store.

mod common;
use common::*;
use onramp_testkit::smtp::SmtpSink;
use sqlx::Row;
use std::time::Duration;

async fn raw_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await.expect("plain SQL connection")
}

/// Every text column of the outbox and the settings, as stored.
async fn raw_rows(url: &str) -> (Vec<(String, String, String, String)>, String) {
    let pool = raw_pool(url).await;
    let rows = sqlx::query("SELECT to_addr, subject, body, attachments FROM mail_outbox ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let settings: String =
        sqlx::query_scalar("SELECT value FROM settings WHERE id = 1").fetch_one(&pool).await.unwrap();
    pool.close().await;
    (rows, settings)
}

async fn configure_smtp(app: &TestApp, sink: &SmtpSink) {
    let smtp =
        json!({"smtp": {"host": "127.0.0.1", "port": sink.port(), "security": "none", "sender": "vpn@example.com"}});
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(smtp)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn invite(app: &TestApp, user: &str) -> String {
    app.create_user(user).await;
    let (s, t) = app
        .call(
            "POST",
            &format!("/api/v1/user/{user}/start_enrollment"),
            Some(json!({"send_enrollment_notification": true, "email": format!("{user}@example.com")})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    t["enrollment_token"].as_str().unwrap().to_owned()
}

async fn wait_status(app: &TestApp, status: &str, n: usize) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = app.call("GET", &format!("/api/v1/mail?status={status}"), None).await;
        if v.as_array().is_some_and(|a| a.len() >= n) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "no {n} message(s) with status {status}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_backends!(outbox_and_smtp_password_are_encrypted_at_rest);

async fn outbox_and_smtp_password_are_encrypted_at_rest(b: Backend) {
    let mut sink = SmtpSink::start().await;
    let app = TestApp::builder(b).config(|c| c.mail_max_attempts = 5).spawn().await;
    configure_smtp(&app, &sink).await;
    sink.stop().await;
    let token = invite(&app, "ann").await;

    // Queued while SMTP is down: nothing in the row gives the token away.
    let (rows, _) = raw_rows(&app.database_url).await;
    assert_eq!(rows.len(), 1);
    let (to, _, body, attachments) = &rows[0];
    assert_eq!(to, "ann@example.com");
    assert!(body.starts_with("enc1:") && attachments.starts_with("enc1:"), "{body} {attachments}");
    for col in [body, attachments] {
        assert!(!col.contains(&token) && !col.contains("onramp://"), "token in clear: {col}");
    }

    // Once SMTP is back the mail goes out intact, token, link and QR code included.
    sink.restart().await;
    let mail = sink.wait_for(1, Duration::from_secs(30)).await.remove(0);
    assert!(mail.text.contains(&token), "{}", mail.text);
    assert_eq!(mail.attachments.len(), 1);
    assert!(mail.attachments[0].2.starts_with(b"\x89PNG"));
    wait_status(&app, "sent", 1).await;

    // A message that finally fails keeps its envelope and error, not its body.
    sink.stop().await;
    let bob_token = invite(&app, "bob").await;
    let failed = wait_status(&app, "failed", 1).await;
    assert!(failed[0]["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{failed}");
    let (rows, _) = raw_rows(&app.database_url).await;
    let bob = rows.iter().find(|r| r.0 == "bob@example.com").expect("bob's row");
    assert!(!bob.1.is_empty(), "subject kept");
    assert_eq!((bob.2.as_str(), bob.3.as_str()), ("", "[]"));
    for r in &rows {
        assert!(!format!("{r:?}").contains(&bob_token) && !format!("{r:?}").contains(&token));
    }
    let id = failed[0]["id"].as_i64().unwrap();
    let (s, v) = app.call("POST", &format!("/api/v1/mail/{id}/retry"), None).await;
    assert_eq!(error_code(s, &v, StatusCode::CONFLICT), "conflict");
    assert!(v["error"].as_str().unwrap().contains("erased"), "{v}");

    // The SMTP password: encrypted in the settings row, never returned, redacted by Debug,
    // and still usable by a core started later with the same key.
    let password = "Sm7p-Pa55word-in-clear";
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(json!({"smtp": {"password": password}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!v.to_string().contains(password));
    let (_, settings_row) = raw_rows(&app.database_url).await;
    assert!(!settings_row.contains(password), "{settings_row}");
    assert!(settings_row.contains("enc1:"), "{settings_row}");
    let smtp = app.core.settings().await.smtp;
    assert!(!format!("{smtp:?}").contains(password));
    let url = app.database_url.clone();
    let keep = app.stop_keep_db().await;
    let again = TestApp::builder(b).database_url(&url).spawn().await;
    assert_eq!(again.core.settings().await.smtp.password.as_deref(), Some(password));
    again.stop().await;
    drop(keep);
}

/// A core with another key refuses to start, naming its key file and the remedy, instead
/// of sending garbage or failing later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_a_clear_startup_error() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(json!({"smtp": {"password": "pw"}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let url = app.database_url.clone();
    let keep = app.stop_keep_db().await;
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("other.key");
    let store = onramp_store::Store::connect(&url, false).await.unwrap();
    let cfg = onramp_core::CoreConfig { secret_key_file: Some(key.clone()), ..Default::default() };
    let err = match onramp_core::Core::new(store, std::sync::Arc::new(onramp_core::SystemClock), cfg).await {
        Ok(_) => panic!("a core with the wrong key started"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&key.display().to_string()) && err.contains("ONRAMP_SECRET_KEY_FILE"), "{err}");
    drop(keep);
}

/// The key file is created owner-only, and the `onramp` binary (serve and the admin CLI
/// alike) finds it at `<data dir>/secret.key` unless ONRAMP_SECRET_KEY_FILE says otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let shared = onramp_testkit::app::shared_key_file();
    assert_eq!(std::fs::metadata(&shared).unwrap().permissions().mode() & 0o777, 0o600);
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Only serve and migrate --create make a database; the admin CLI then makes the key.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onramp"))
        .args(["migrate", "--create"])
        .env("ONRAMP_DATA_DIR", &data)
        .env_remove("ONRAMP_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onramp"))
        .args(["admin", "api-token", "create", "--name", "ci"])
        .env("ONRAMP_DATA_DIR", &data)
        .env_remove("ONRAMP_SECRET_KEY_FILE")
        .env_remove("ONRAMP_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = data.join("secret.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let before = std::fs::read(&key).unwrap();
    let elsewhere = dir.path().join("keys/onramp.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onramp"))
        .args(["admin", "api-token", "create", "--name", "ci2"])
        .env("ONRAMP_DATA_DIR", &data)
        .env("ONRAMP_SECRET_KEY_FILE", &elsewhere)
        .env_remove("ONRAMP_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&elsewhere).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&key).unwrap(), before, "the default file is left alone");
}

/// Item 14: after messages were sent and failed and core stopped, neither the SQLite file
/// nor its WAL holds a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_left_in_the_sqlite_files() {
    let mut sink = SmtpSink::start().await;
    let app = TestApp::builder(Backend::Sqlite).config(|c| c.mail_max_attempts = 2).spawn().await;
    configure_smtp(&app, &sink).await;
    let sent = invite(&app, "ann").await;
    sink.wait_for(1, Duration::from_secs(30)).await;
    wait_status(&app, "sent", 1).await;
    sink.stop().await;
    let failed = invite(&app, "bob").await;
    wait_status(&app, "failed", 1).await;
    let path = app.database_url.strip_prefix("sqlite://").unwrap().to_owned();
    let keep = app.stop_keep_db().await;
    for file in [path.clone(), format!("{path}-wal")] {
        let Ok(bytes) = std::fs::read(&file) else { continue };
        for t in [&sent, &failed] {
            assert!(!bytes.windows(t.len()).any(|w| w == t.as_bytes()), "{file} holds a token");
        }
    }
    drop(keep);
}
