//! What the store's integration tests share: a fresh, migrated store on either backend.

use onramp_store::{DatabaseKind, Store};

/// A migrated store on a new SQLite file (kept alive by the returned directory) or a new
/// PostgreSQL database of the shared test server.
pub async fn store(kind: DatabaseKind) -> (Store, Option<tempfile::TempDir>) {
    match kind {
        DatabaseKind::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()), true).await.unwrap();
            s.migrate().await.unwrap();
            (s, Some(dir))
        }
        DatabaseKind::Postgres => {
            let s = Store::connect(&onramp_testkit::pg::fresh_database_url().await, false).await.unwrap();
            s.migrate().await.unwrap();
            (s, None)
        }
    }
}
