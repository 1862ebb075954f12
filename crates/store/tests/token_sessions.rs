//! Browser session bindings on both backends: binding the same id to the same token twice
//! (a `start` the edge repeated on another core) is one binding; another token is refused.

use onramp_store::{DatabaseKind, NewToken, NewUser, StoreError};

mod common;
use common::store;

async fn rebinding(kind: DatabaseKind) {
    let (s, _dir) = store(kind).await;
    let u = NewUser {
        username: "jdoe".into(),
        first_name: "Jane".into(),
        last_name: "Doe".into(),
        email: "jdoe@example.com".into(),
        phone: None,
        password_hash: None,
        is_active: true,
    };
    let user = s.create_user(&u, 1).await.unwrap();
    let token = |hash: &str| NewToken {
        hash: hash.into(),
        kind: "enrollment".into(),
        user_id: user.id,
        issued_by: None,
        email: None,
        created_at: 1,
        expires_at: 1_000_000,
    };
    s.issue_tokens(&[token("h1"), token("h2")], &[]).await.unwrap();
    let (t1, t2) = (s.token_by_hash("h1").await.unwrap().id, s.token_by_hash("h2").await.unwrap().id);
    s.add_token_session("session", t1, 600, 10).await.unwrap();
    s.add_token_session("session", t1, 600, 11).await.unwrap();
    assert_eq!(s.token_by_session("session").await.unwrap().id, t1);
    let e = s.add_token_session("session", t2, 600, 12).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}");
    assert_eq!(s.token_by_session("session").await.unwrap().id, t1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_sqlite() {
    rebinding(DatabaseKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_postgres() {
    rebinding(DatabaseKind::Postgres).await
}
