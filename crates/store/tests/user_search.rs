//! The web UI's users search on both backends: case-insensitive matches on username, e-mail
//! and full name, wildcards taken literally, state filters, paging and the total.

use onramp_store::{DatabaseKind, NewUser, Store, UserFilter};

mod common;
use common::store;

fn user(name: &str, first: &str, last: &str, email: &str, active: bool) -> NewUser {
    NewUser {
        username: name.into(),
        first_name: first.into(),
        last_name: last.into(),
        email: email.into(),
        phone: None,
        password_hash: None,
        is_active: active,
    }
}

async fn names(s: &Store, q: Option<&str>, f: Option<UserFilter>, limit: i64, offset: i64) -> (Vec<String>, i64) {
    let (rows, total) = s.search_users_page(q, f, limit, offset).await.unwrap();
    (rows.into_iter().map(|r| r.username).collect(), total)
}

async fn search(kind: DatabaseKind) {
    let (s, _dir) = store(kind).await;
    s.create_user(&user("jdoe", "Jane", "Doe", "Jane.Doe@Example.com", true), 1).await.unwrap();
    s.create_user(&user("asmith", "Alex", "Smith", "alex@example.com", true), 1).await.unwrap();
    s.create_user(&user("p100", "Percent", "Sign", "p100%@example.com", false), 1).await.unwrap();
    for i in 0..30 {
        s.create_user(&user(&format!("bulk{i:02}"), "Bulk", "User", &format!("bulk{i:02}@example.com"), true), 1)
            .await
            .unwrap();
    }
    assert_eq!(names(&s, Some("JANE DOE"), None, 50, 0).await, (vec!["jdoe".into()], 1), "full name, any case");
    assert_eq!(names(&s, Some("jane.doe@"), None, 50, 0).await, (vec!["jdoe".into()], 1), "e-mail, any case");
    assert_eq!(names(&s, Some("smi"), None, 50, 0).await, (vec!["asmith".into()], 1));
    assert_eq!(names(&s, Some("%"), None, 50, 0).await, (vec!["p100".into()], 1), "% is literal");
    assert_eq!(names(&s, Some("_"), None, 50, 0).await.1, 0, "_ is literal");
    assert_eq!(names(&s, Some("p100"), Some(UserFilter::Disabled), 50, 0).await.1, 1);
    assert_eq!(names(&s, Some("p100"), Some(UserFilter::Pending), 50, 0).await.1, 0);
    // Paging with a search: the total counts every match, a page past the end keeps it.
    let (page, total) = names(&s, Some("bulk"), Some(UserFilter::Pending), 10, 20).await;
    assert_eq!((page.first().map(String::as_str), page.len(), total), (Some("bulk20"), 10, 30));
    assert_eq!(names(&s, Some("bulk"), None, 10, 40).await, (vec![], 30));
    // Without a search: all users by username.
    let (page, total) = names(&s, None, None, 2, 0).await;
    assert_eq!((page, total), (vec!["asmith".to_string(), "bulk00".into()], 33));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_sqlite() {
    search(DatabaseKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_postgres() {
    search(DatabaseKind::Postgres).await
}
