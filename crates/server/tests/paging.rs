//! Issue 10, item 17: the admin lists of users, groups and locations are paged
//! (`?limit=&offset=`, the total in `X-Total-Count`), the pages are disjoint and complete,
//! and a page costs the same number of SQL statements whatever its size.

mod common;
mod statements;
use common::*;
use statements::statement_counter;
use std::sync::atomic::Ordering;

on_both_backends!(users_groups_and_locations_are_paged);

/// Walks `path` in pages of `limit`; returns the `key` of every entry, in order.
async fn walk(app: &TestApp, path: &str, limit: usize, key: &str, total: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for offset in (0..total + limit).step_by(limit) {
        let r = app
            .client
            .get(app.url(&format!("{path}?limit={limit}&offset={offset}")))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["x-total-count"], total.to_string().as_str(), "{path}");
        let page: Vec<Value> = r.json().await.unwrap();
        assert_eq!(page.len(), limit.min(total.saturating_sub(offset)), "{path} at {offset}");
        seen.extend(page.iter().map(|v| v[key].as_str().unwrap().to_owned()));
    }
    seen
}

async fn users_groups_and_locations_are_paged(b: Backend) {
    let count = statement_counter();
    let app = TestApp::spawn(b).await;
    for i in 0..11 {
        app.create_user(&format!("u{i:02}")).await;
        let (s, v) = app
            .call("POST", "/api/v1/group", Some(json!({"name": format!("g{i:02}"), "members": [format!("u{i:02}")]})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    for i in 0..7 {
        let (s, v) = app
            .call(
                "POST",
                "/api/v1/location",
                Some(json!({"name": format!("l{i}"), "address": format!("10.{}.0.1/24", 40 + i),
                    "endpoint": "vpn.example.com", "port": 51820, "allowed_groups": [format!("g{i:02}")]})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    // 12 users (with the bootstrap admin), 12 groups (with `admin`), 7 locations.
    let users = walk(&app, "/api/v1/user", 5, "username", 12).await;
    let mut sorted = users.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((users.len(), &users), (12, &sorted), "user pages are disjoint, complete and in order");
    let groups = walk(&app, "/api/v1/group", 4, "name", 12).await;
    assert_eq!(groups.iter().collect::<std::collections::BTreeSet<_>>().len(), 12, "{groups:?}");
    let locations = walk(&app, "/api/v1/location", 3, "name", 7).await;
    assert_eq!(locations, (0..7).map(|i| format!("l{i}")).collect::<Vec<_>>());

    // What the pages carry is what the single reads carry.
    let (_, page) = app.call("GET", "/api/v1/group?limit=1&offset=1", None).await;
    let (_, one) = app.call("GET", &format!("/api/v1/group/{}", page[0]["name"].as_str().unwrap()), None).await;
    assert_eq!(page[0], one);
    assert_eq!(one["members"], json!(["u00"]));
    assert_eq!(one["vpn_locations"], json!(["l0"]), "only the location of its own group");
    let (_, page) = app.call("GET", "/api/v1/user?limit=1&offset=1", None).await;
    assert_eq!(page[0]["groups"], json!(["g00"]), "{page}");

    for path in ["/api/v1/user", "/api/v1/group", "/api/v1/location"] {
        for bad in ["limit=0", "limit=1001", "offset=-1", "limit=x"] {
            let (s, v) = app.call("GET", &format!("{path}?{bad}"), None).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{path}?{bad}: {v}");
        }
    }

    // Statements per page: the same for a page of 1 as for a page of 10. Each size is
    // measured three times and the least count kept: a call that happens to open a pool
    // connection also runs its setup statements (PRAGMAs), which say nothing about paging,
    // while a page that queried per row would cost more every time.
    let mut per_page = std::collections::BTreeMap::new();
    for limit in [1i64, 1, 1, 10, 10, 10] {
        let measure = |what: &'static str| {
            let span = tracing::info_span!("count_queries");
            let before = count.load(Ordering::SeqCst);
            (what, span, before)
        };
        let (w, span, before) = measure("users");
        let (page, total) = tracing::Instrument::instrument(app.core.list_users_page(limit, 0), span).await.unwrap();
        assert_eq!((page.len() as i64, total), (limit, 12));
        per_page.entry(w).or_insert_with(Vec::new).push(count.load(Ordering::SeqCst) - before);
        let (w, span, before) = measure("groups");
        let (page, _) = tracing::Instrument::instrument(app.core.list_groups_page(limit, 0), span).await.unwrap();
        assert_eq!(page.len() as i64, limit);
        per_page.entry(w).or_insert_with(Vec::new).push(count.load(Ordering::SeqCst) - before);
        let (w, span, before) = measure("locations");
        let (page, _) =
            tracing::Instrument::instrument(app.core.list_locations_page(limit.min(7), 0), span).await.unwrap();
        assert_eq!(page.len() as i64, limit.min(7));
        per_page.entry(w).or_insert_with(Vec::new).push(count.load(Ordering::SeqCst) - before);
    }
    for (what, counts) in &per_page {
        let (one, ten) = (counts[..3].iter().min().unwrap(), counts[3..].iter().min().unwrap());
        assert!(*one > 0, "the counter sees statements for {what}: {counts:?}");
        assert_eq!(one, ten, "statements for a page of 1 and of 10 {what}: {counts:?}");
    }
    app.stop().await;
}
