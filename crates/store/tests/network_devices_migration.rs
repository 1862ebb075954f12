//! Migration 0009 (network devices) on a database that already holds devices, tokens and
//! everything hanging off them, on both backends. On SQLite it rebuilds `devices` and
//! `tokens` with foreign keys on (as the store always runs), so this checks that no child
//! row is lost to a cascade, no live polling token is recorded as removed, no id is handed
//! out twice, and the gateway change counter still follows device writes.

use onramp_store::{DatabaseKind, NewAudit, NewNetworkDevice, Store};
use sqlx::any::AnyPoolOptions;
use sqlx::Executor;

/// Rows of the schema before 0009: a user with two devices (one deleted, so the id
/// sequence is past the highest id left), an address, a token that registered the device
/// with its browser session, a polling token and gateway counters.
const DATA: &[&str] = &[
    "INSERT INTO users (id, username, first_name, last_name, email, created_at, updated_at) VALUES (1, 'ann', 'A', 'A', 'ann@x', 0, 0)",
    "INSERT INTO locations (id, name, addresses, endpoint, port, allowed_ips, created_at, updated_at) VALUES (1, 'office', '10.9.0.1/24', 'h', 1, '10.9.0.0/24', 0, 0)",
    "INSERT INTO devices (user_id, name, pubkey, created_at) VALUES (1, 'laptop', 'k1', 0)",
    "INSERT INTO devices (user_id, name, pubkey, created_at) VALUES (1, 'old', 'k2', 0)",
    "DELETE FROM devices WHERE name = 'old'",
    "INSERT INTO device_addresses (device_id, location_id, address) VALUES (1, 1, '10.9.0.2')",
    "INSERT INTO tokens (hash, kind, user_id, created_at, expires_at, session_deadline, device_id) VALUES ('th', 'desktop_config', 1, 0, 99999999999, 99999999999, 1)",
    "INSERT INTO token_sessions (hash, token_id, expires_at) VALUES ('sh', 1, 99999999999)",
    "INSERT INTO polling_tokens (hash, device_id, created_at) VALUES ('ph', 1, 0)",
    "INSERT INTO peer_stats (device_id, location_id, rx_bytes, tx_bytes, updated_at) VALUES (1, 1, 5, 6, 0)",
];

async fn upgrade(kind: DatabaseKind) {
    let dir = tempfile::tempdir().unwrap();
    let (url, tree) = match kind {
        DatabaseKind::Sqlite => (format!("sqlite://{}", dir.path().join("t.db").display()), "sqlite"),
        DatabaseKind::Postgres => (onramp_testkit::pg::fresh_database_url().await, "postgres"),
    };
    // The schema as it was before 0009, through sqlx's own migrator, on one connection with
    // foreign keys enforced like the store's.
    sqlx::any::install_default_drivers();
    let open = if kind == DatabaseKind::Sqlite { format!("{url}?mode=rwc") } else { url.clone() };
    let pool = AnyPoolOptions::new().max_connections(1).connect(&open).await.unwrap();
    if kind == DatabaseKind::Sqlite {
        pool.execute("PRAGMA foreign_keys = ON").await.unwrap();
    }
    let earlier = dir.path().join("earlier");
    std::fs::create_dir(&earlier).unwrap();
    let tree = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(tree);
    // 0009 and every later migration are still to run.
    let mut pending = 0;
    for f in std::fs::read_dir(tree).unwrap() {
        let f = f.unwrap();
        let name = f.file_name().into_string().unwrap();
        if name.as_str() < "0009" {
            std::fs::copy(f.path(), earlier.join(&name)).unwrap();
        } else {
            pending += 1;
        }
    }
    sqlx::migrate::Migrator::new(earlier.as_path()).await.unwrap().run(&pool).await.unwrap();
    for sql in DATA {
        pool.execute(*sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let epoch_before: i64 = sqlx::query_scalar("SELECT value FROM peer_epoch").fetch_one(&pool).await.unwrap();
    pool.close().await;

    let store = Store::connect(&url, false).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), pending, "0009 and the later migrations ran");
    let device = store.device_by_id(1).await.unwrap();
    assert_eq!((device.user_id, device.pubkey.as_str(), device.location_id), (Some(1), "k1", None));
    assert_eq!(store.device_addresses(1).await.unwrap().len(), 1, "addresses kept");
    let token = store.token_by_hash("th").await.unwrap();
    assert_eq!((token.user_id, token.device_id), (Some(1), Some(1)), "the session's device kept");
    assert_eq!(store.token_by_session("sh").await.unwrap().id, token.id, "browser session kept");
    assert_eq!(store.device_by_polling_hash("ph").await.unwrap().id, 1, "polling token kept");
    assert!(!store.polling_token_removed("ph").await.unwrap(), "a live polling token is not 'removed'");
    assert_eq!(store.location_peer_stats(1).await.unwrap().len(), 1, "counters kept");
    assert_eq!(store.gateway_peers(1).await.unwrap(), vec![("k1".to_owned(), "10.9.0.2".to_owned())]);

    // New rows: ids past the deleted device's, and the triggers still count device writes.
    let epoch = store.peer_epoch().await.unwrap();
    let audit = NewAudit { action: "test".into(), actor: "test".into(), details: "{}".into(), ..NewAudit::default() };
    let new =
        NewNetworkDevice { location_id: 1, name: "router".into(), description: None, addresses: None, created_at: 1 };
    let (router, addresses) = store.create_network_device(&new, &audit).await.unwrap();
    assert_eq!(router.id, 3, "ids are not handed out twice");
    assert_eq!(addresses[0].address, "10.9.0.3");
    assert!(store.peer_epoch().await.unwrap() > epoch, "device writes bump the gateway counter");
    // And record what they touched (0010), on data that predates the change log.
    let (_, touched) = store.peer_changes_since(epoch, 100).await.unwrap();
    assert!(touched.contains(&(Some(router.id), None)), "{touched:?}");
    assert!(epoch >= epoch_before);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_sqlite() {
    upgrade(DatabaseKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_postgres() {
    upgrade(DatabaseKind::Postgres).await
}
