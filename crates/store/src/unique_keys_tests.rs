//! Each unique constraint of the schema, violated on a real database, maps to its typed
//! `UniqueKey` (SQLite and PostgreSQL).

use crate::db::{map_err, DatabaseKind, Store, StoreError, UniqueKey, UNIQUE_KEYS};

/// Rows every violation below builds on (ids above what the sequences hand out, so a
/// violation never trips a primary key first), then one statement per constraint that repeats
/// an existing value.
const SETUP: &[&str] = &[
    "INSERT INTO users (id, username, first_name, last_name, email, created_at, updated_at) VALUES (101, 'ann', 'A', 'A', 'ann@x', 0, 0)",
    "INSERT INTO groups (id, name, created_at) VALUES (101, 'g', 0)",
    "INSERT INTO group_members (group_id, user_id) VALUES (101, 101)",
    "INSERT INTO locations (id, name, addresses, endpoint, port, allowed_ips, created_at, updated_at) VALUES (101, 'l', '10.0.0.1/24', 'h', 1, '10.0.0.0/24', 0, 0)",
    "INSERT INTO location_groups (location_id, group_id) VALUES (101, 101)",
    "INSERT INTO devices (id, user_id, name, pubkey, created_at) VALUES (101, 101, 'd', 'k1', 0)",
    "INSERT INTO devices (id, user_id, name, pubkey, created_at) VALUES (102, 101, 'd2', 'k2', 0)",
    "INSERT INTO device_addresses (device_id, location_id, address) VALUES (101, 101, '10.0.0.2')",
    "INSERT INTO devices (id, location_id, name, created_at) VALUES (103, 101, 'router', 0)",
    "INSERT INTO tokens (hash, kind, user_id, created_at, expires_at) VALUES ('h1', 'enrollment', 101, 0, 0)",
    "INSERT INTO polling_tokens (hash, device_id, created_at) VALUES ('p1', 101, 0)",
    "INSERT INTO api_tokens (name, hash, prefix, user_id, created_at) VALUES ('t', 'a1', 'x', 101, 0)",
    "INSERT INTO settings (id, value) VALUES (1, '{}')",
    "INSERT INTO gateway_tokens (location_id, hash, created_at, created_by) VALUES (101, 'g1', 0, 'x')",
    "INSERT INTO gateways (location_id, pubkey, version, hostname) VALUES (101, 'gk', 'v', 'h')",
];

const VIOLATIONS: &[(&str, UniqueKey)] = &[
    ("INSERT INTO users (username, first_name, last_name, email, created_at, updated_at) VALUES ('ann', 'A', 'A', 'other@x', 0, 0)", UniqueKey::Username),
    ("INSERT INTO users (username, first_name, last_name, email, created_at, updated_at) VALUES ('bob', 'A', 'A', 'ann@x', 0, 0)", UniqueKey::Email),
    ("INSERT INTO groups (name, created_at) VALUES ('g', 0)", UniqueKey::GroupName),
    ("INSERT INTO group_members (group_id, user_id) VALUES (101, 101)", UniqueKey::GroupMember),
    ("INSERT INTO locations (name, addresses, endpoint, port, allowed_ips, created_at, updated_at) VALUES ('l', 'a', 'h', 1, 'a', 0, 0)", UniqueKey::LocationName),
    ("INSERT INTO location_groups (location_id, group_id) VALUES (101, 101)", UniqueKey::LocationGroup),
    ("INSERT INTO devices (user_id, name, pubkey, created_at) VALUES (101, 'other', 'k1', 0)", UniqueKey::DevicePubkey),
    ("INSERT INTO devices (user_id, name, pubkey, created_at) VALUES (101, 'd', 'k3', 0)", UniqueKey::DeviceName),
    ("INSERT INTO devices (location_id, name, created_at) VALUES (101, 'router', 0)", UniqueKey::DeviceName),
    ("INSERT INTO device_addresses (device_id, location_id, address) VALUES (102, 101, '10.0.0.2')", UniqueKey::DeviceAddress),
    ("INSERT INTO device_addresses (device_id, location_id, address) VALUES (101, 101, '10.0.0.2')", UniqueKey::DeviceAddress),
    ("INSERT INTO tokens (hash, kind, user_id, created_at, expires_at) VALUES ('h1', 'enrollment', 101, 0, 0)", UniqueKey::TokenHash),
    ("INSERT INTO polling_tokens (hash, device_id, created_at) VALUES ('p1', 102, 0)", UniqueKey::PollingTokenHash),
    ("INSERT INTO polling_tokens (hash, device_id, created_at) VALUES ('p2', 101, 0)", UniqueKey::PollingTokenDevice),
    ("INSERT INTO api_tokens (name, hash, prefix, user_id, created_at) VALUES ('t', 'a1', 'x', 101, 0)", UniqueKey::ApiTokenHash),
    ("INSERT INTO settings (id, value) VALUES (1, '{}')", UniqueKey::Setting),
    ("INSERT INTO gateway_tokens (location_id, hash, created_at, created_by) VALUES (101, 'g1', 0, 'y')", UniqueKey::GatewayTokenHash),
    ("INSERT INTO gateways (location_id, pubkey, version, hostname) VALUES (101, 'gk', 'v2', 'h2')", UniqueKey::GatewayKey),
];

async fn every_unique_constraint_maps_to_its_key(kind: DatabaseKind) {
    let dir = tempfile::tempdir().unwrap();
    let url = match kind {
        DatabaseKind::Sqlite => format!("sqlite://{}", dir.path().join("t.db").display()),
        DatabaseKind::Postgres => onramp_testkit::pg::fresh_database_url().await,
    };
    let store = Store::connect(&url, true).await.unwrap();
    store.migrate().await.unwrap();
    for sql in SETUP {
        sqlx::query(sql).execute(&store.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Every entry of the table is exercised (a constraint added to it needs a case here).
    let covered: std::collections::HashSet<_> = VIOLATIONS.iter().map(|(_, k)| *k).collect();
    for (_, _, key) in UNIQUE_KEYS {
        assert!(covered.contains(key), "{key:?} has no violation case");
    }
    for (sql, want) in VIOLATIONS {
        let e = sqlx::query(sql).execute(&store.pool).await.expect_err(sql);
        match map_err(e) {
            StoreError::Conflict { key } => assert_eq!(key, *want, "{sql}"),
            other => panic!("{sql}: {other:?}"),
        }
    }
    // Not a unique violation: stays a database error, not a fake conflict.
    let e = sqlx::query("INSERT INTO devices (user_id, name, pubkey, created_at) VALUES (99, 'x', 'k9', 0)")
        .execute(&store.pool)
        .await
        .unwrap_err();
    let mapped = map_err(e);
    assert!(matches!(mapped, StoreError::Db(_)), "{mapped:?}");
    store.close().await;
}

#[tokio::test]
async fn sqlite() {
    every_unique_constraint_maps_to_its_key(DatabaseKind::Sqlite).await
}

#[tokio::test]
async fn postgres() {
    every_unique_constraint_maps_to_its_key(DatabaseKind::Postgres).await
}
