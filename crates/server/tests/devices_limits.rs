//! Issue 10 items 11, 13 and 17 (GET /device): one device per enrollment session, a
//! per-user device cap, subnet changes that cannot race device creation, and address
//! allocation only on write paths. Both backends.

mod common;
mod statements;
use common::*;
use onramp_core::{Actor, DeviceInput, LocationInput};
use onramp_domain::net::LocationSubnet;
use onramp_domain::token::TokenSecret;
use statements::statement_counter;

on_both_backends!(
    one_device_per_session,
    device_cap,
    shrink_races_create,
    gained_subnet_and_later_locations,
    get_device_never_writes,
    device_pages
);

fn system() -> Actor {
    Actor::system("test")
}

async fn token_for(app: &TestApp, user: &str, endpoint: &str) -> TokenSecret {
    let (s, v) = app.call("POST", &format!("/api/v1/user/{user}/{endpoint}"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    TokenSecret::from_user(v["enrollment_token"].as_str().unwrap())
}

fn device(user: &str, name: &str, key: String) -> DeviceInput {
    DeviceInput { username: user.into(), name: name.into(), pubkey: key }
}

/// A second store handle on the app's database: reads what is stored, with no core in
/// between that could allocate.
async fn store_of(app: &TestApp) -> onramp_store::Store {
    onramp_store::Store::connect(&app.database_url, false).await.unwrap()
}

/// Item 11: an enrollment or desktop session registers one device, in the order existing
/// clients use (create_device before activate_user); a retry of that registration with the
/// same key gets the same device back.
async fn one_device_per_session(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("ann").await;
    app.create_location("office", "10.3.0.1/24").await;
    let t = token_for(&app, "ann", "start_enrollment").await;
    app.core.enrollment_start(&system(), &t).await.unwrap();
    let key = pubkey(1);
    let first = app.core.enrollment_create_device(&system(), &t, "laptop", &key).await.unwrap();
    let retry = app.core.enrollment_create_device(&system(), &t, "laptop", &key).await.unwrap();
    assert_eq!(retry.device.id, first.device.id);
    assert_eq!(retry.configs[0].assigned_ip, first.configs[0].assigned_ip);
    assert!(retry.token.is_some(), "the retry hands out a (rotated) polling token");
    let e = app.core.enrollment_create_device(&system(), &t, "second", &pubkey(2)).await.unwrap_err();
    assert_eq!(e.code(), "session_has_device");
    assert!(e.to_string().contains("already registered a device (\"laptop\")"), "{e}");
    // Many attempts in one session (the reported 1,000-device flood) add nothing.
    for i in 3..23 {
        let e = app.core.enrollment_create_device(&system(), &t, &format!("d{i}"), &pubkey(i)).await.unwrap_err();
        assert_eq!(e.code(), "session_has_device");
    }
    app.core.activate_user(&system(), &t, "Str0ng!Pass".into(), None).await.unwrap();
    assert_eq!(app.core.list_devices(Some("ann")).await.unwrap().len(), 1);
    // A desktop-configuration session: one more device, and only one.
    let d = token_for(&app, "ann", "start_desktop").await;
    app.core.enrollment_start(&system(), &d).await.unwrap();
    app.core.enrollment_create_device(&system(), &d, "desktop", &pubkey(30)).await.unwrap();
    let e = app.core.enrollment_create_device(&system(), &d, "desktop2", &pubkey(31)).await.unwrap_err();
    assert_eq!(e.code(), "session_has_device");
    // Concurrent second registrations in a fresh session: exactly one wins.
    let t2 = token_for(&app, "ann", "start_desktop").await;
    app.core.enrollment_start(&system(), &t2).await.unwrap();
    let jobs = (40..46u8).map(|i| {
        let core = app.core.clone();
        let t2 = TokenSecret::from_user(t2.expose());
        tokio::spawn(async move { core.enrollment_create_device(&system(), &t2, &format!("c{i}"), &pubkey(i)).await })
    });
    let results: Vec<_> = futures::future::join_all(jobs).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), "session_has_device", "{r}");
    }
    assert_eq!(app.core.list_devices(Some("ann")).await.unwrap().len(), 3);
    app.stop().await;
}

/// Item 11: a per-user device cap (setting, default 10) with a clear 4xx, for admin-created
/// devices and enrollment alike.
async fn device_cap(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.create_user("bob").await;
    let (_, v) = app.call("GET", "/api/v1/settings", None).await;
    assert_eq!(v["enrollment"]["max_devices_per_user"], 10, "{v}");
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(json!({"enrollment": {"max_devices_per_user": 0}}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(json!({"enrollment": {"max_devices_per_user": 3}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for i in 0..3u8 {
        let body = json!({"username": "bob", "name": format!("d{i}"), "pubkey": pubkey(i)});
        let (s, v) = app.call("POST", "/api/v1/device", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, v) =
        app.call("POST", "/api/v1/device", Some(json!({"username": "bob", "name": "d3", "pubkey": pubkey(3)}))).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "device_limit");
    assert!(v["error"].as_str().unwrap().contains("already has 3 devices"), "{v}");
    // Enrollment counts the same devices.
    let t = token_for(&app, "bob", "start_enrollment").await;
    app.core.enrollment_start(&system(), &t).await.unwrap();
    let e = app.core.enrollment_create_device(&system(), &t, "d4", &pubkey(4)).await.unwrap_err();
    assert_eq!(e.code(), "device_limit");
    // Concurrent creates never pass the cap.
    app.call("PATCH", "/api/v1/settings", Some(json!({"enrollment": {"max_devices_per_user": 6}}))).await;
    let jobs = (10..20u8).map(|i| {
        let core = app.core.clone();
        tokio::spawn(async move { core.add_device(&system(), device("bob", &format!("c{i}"), pubkey(i))).await })
    });
    let ok = futures::future::join_all(jobs).await.into_iter().filter(|r| r.as_ref().unwrap().is_ok()).count();
    assert_eq!(ok, 3);
    assert_eq!(app.core.list_devices(Some("bob")).await.unwrap().len(), 6);
    app.stop().await;
}

fn location_input(name: &str, address: &str, group: &str) -> LocationInput {
    serde_json::from_value(json!({
        "name": name, "address": address, "endpoint": "vpn.example.com", "port": 51820, "allowed_groups": [group]
    }))
    .unwrap()
}

/// Every address a location holds is assignable in its current subnets.
async fn assert_addresses_fit(store: &onramp_store::Store, location_id: i64, round: usize) {
    let loc = store.location_by_id(location_id).await.unwrap();
    let subnets: Vec<LocationSubnet> =
        loc.addresses.split(',').map(|a| LocationSubnet::parse("address", a).unwrap()).collect();
    let mut held = 0;
    for d in store.list_devices(None).await.unwrap() {
        for a in store.device_addresses(d.id).await.unwrap().into_iter().filter(|a| a.location_id == location_id) {
            let ip = a.address.parse().unwrap();
            held += 1;
            assert!(
                subnets.iter().any(|s| s.is_assignable(ip)),
                "round {round}: device {} holds {ip}, not assignable in {}",
                d.name,
                loc.addresses
            );
        }
    }
    assert!(held <= 1 || !loc.addresses.ends_with("/30"), "round {round}: a /30 has one device address");
}

/// Item 13: shrinking a location's subnet while devices are being created never leaves an
/// address outside the new subnet, nor on its network or broadcast address.
async fn shrink_races_create(b: Backend) {
    let app = TestApp::spawn(b).await;
    let store = store_of(&app).await;
    for round in 0..6 {
        let group = format!("g{round}");
        let users: Vec<String> = (0..8).map(|i| format!("r{round}u{i}")).collect();
        for u in &users {
            app.create_user(u).await;
        }
        let (s, v) = app.call("POST", "/api/v1/group", Some(json!({"name": group, "members": users}))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let net = 60 + round;
        let loc = app
            .core
            .create_location(&system(), location_input(&format!("l{round}"), &format!("10.{net}.0.1/24"), &group))
            .await
            .unwrap();
        let mut jobs = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let core = app.core.clone();
            let input = device(u, "d", pubkey(i as u8));
            jobs.push(tokio::spawn(async move { core.add_device(&system(), input).await.map(|_| ()) }));
        }
        let core = app.core.clone();
        let shrink = location_input(&format!("l{round}"), &format!("10.{net}.0.1/30"), &group);
        let id = loc.id;
        jobs.push(tokio::spawn(async move { core.update_location(&system(), id, shrink).await.map(|_| ()) }));
        for r in futures::future::join_all(jobs).await {
            if let Err(e) = r.unwrap() {
                assert!(["subnet_full", "address_in_use"].contains(&e.code()), "round {round}: {e}");
            }
        }
        assert_addresses_fit(&store, loc.id, round).await;
    }
    store.close().await;
    app.stop().await;
}

/// Item 13 / 17: a location that gains a subnet gives existing devices an address in it,
/// and a location created later (or opened to a user's group later) gives them one at
/// once, on that write, not on a later read.
async fn gained_subnet_and_later_locations(b: Backend) {
    let app = TestApp::spawn(b).await;
    let store = store_of(&app).await;
    app.create_user("cy").await;
    app.create_user("di").await;
    let (s, v) = app.call("POST", "/api/v1/group", Some(json!({"name": "ops", "members": ["cy"]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let office = app.core.create_location(&system(), location_input("office", "10.7.0.1/24", "ops")).await.unwrap();
    let cy = app.core.add_device(&system(), device("cy", "a", pubkey(1))).await.unwrap();
    let di = app.core.add_device(&system(), device("di", "b", pubkey(2))).await.unwrap();
    let addrs = |id| {
        let store = store.clone();
        async move { store.device_addresses(id).await.unwrap().into_iter().map(|a| a.address).collect::<Vec<_>>() }
    };
    assert_eq!(addrs(cy.id).await, ["10.7.0.2"]);
    app.core
        .update_location(&system(), office.id, location_input("office", "10.7.0.1/24,10.8.0.1/24", "ops"))
        .await
        .unwrap();
    assert_eq!(addrs(cy.id).await, ["10.7.0.2", "10.8.0.2"]);
    assert!(addrs(di.id).await.is_empty(), "di is not in ops");
    // Opened to di by group membership.
    let (s, v) = app.call("POST", "/api/v1/group/ops/member", Some(json!({"username": "di"}))).await;
    assert!(s.is_success(), "{s} {v}");
    assert_eq!(addrs(di.id).await, ["10.7.0.3", "10.8.0.3"]);
    // A location for everyone, created after the devices.
    app.create_location("lab", "10.9.0.1/24").await;
    assert_eq!(addrs(cy.id).await, ["10.7.0.2", "10.8.0.2", "10.9.0.2"]);
    assert_eq!(addrs(di.id).await.len(), 3);
    // Shrinking away from a held address is refused with the device named.
    let e = app
        .core
        .update_location(&system(), office.id, location_input("office", "10.7.0.1/24", "ops"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "address_in_use");
    assert!(e.to_string().contains("10.8.0."), "{e}");
    store.close().await;
    app.stop().await;
}

/// A snapshot of every stored device address.
async fn all_addresses(store: &onramp_store::Store) -> Vec<onramp_store::DeviceAddressRow> {
    let mut out = Vec::new();
    for d in store.list_devices(None).await.unwrap() {
        out.extend(store.device_addresses(d.id).await.unwrap());
    }
    out
}

/// Item 17: `GET /device` (and one device) leaves the database unchanged, also right after
/// a location was added that the devices did not have addresses in.
async fn get_device_never_writes(b: Backend) {
    let app = TestApp::spawn(b).await;
    let store = store_of(&app).await;
    app.create_user("eve").await;
    let d = app.core.add_device(&system(), device("eve", "e", pubkey(1))).await.unwrap();
    app.create_location("late", "10.11.0.1/24").await;
    let before = all_addresses(&store).await;
    let (s, v) = app.call("GET", "/api/v1/device", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = app.call("GET", &format!("/api/v1/device/{}", d.id), None).await;
    assert_eq!(s, StatusCode::OK);
    let after = all_addresses(&store).await;
    assert_eq!(format!("{before:?}"), format!("{after:?}"), "a GET changed device addresses");
    // And the write path did give the device its address in the new location.
    assert_eq!(after.len(), 1, "{after:?}");
    store.close().await;
    app.stop().await;
}

/// Item 17: `GET /device` pages (`limit`, `offset`, total in `X-Total-Count`) are disjoint
/// and complete, and a page costs the same number of statements whatever its size.
async fn device_pages(b: Backend) {
    let count = statement_counter();
    let app = TestApp::spawn(b).await;
    app.create_location("office", "10.12.0.1/24").await;
    let mut all = Vec::new();
    for u in 0..4u8 {
        app.create_user(&format!("p{u}")).await;
        for d in 0..3u8 {
            let dev =
                app.core.add_device(&system(), device(&format!("p{u}"), &format!("d{d}"), pubkey(u * 10 + d))).await;
            all.push(dev.unwrap().id);
        }
    }
    let mut seen = Vec::new();
    for offset in [0, 5, 10] {
        let r = app
            .client
            .get(app.url(&format!("/api/v1/device?limit=5&offset={offset}")))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-total-count"], "12");
        let page: Vec<Value> = r.json().await.unwrap();
        assert_eq!(page.len(), if offset == 10 { 2 } else { 5 });
        assert!(page
            .iter()
            .all(|d| d["configs"][0]["assigned_ip"].as_str().is_some_and(|ip| ip.starts_with("10.12.0."))));
        seen.extend(page.iter().map(|d| d["id"].as_i64().unwrap()));
    }
    assert_eq!(seen, all, "pages are disjoint, complete and oldest first");
    let (s, v) = app.call("GET", "/api/v1/device?limit=0", None).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    let (s, v) = app.call("GET", "/api/v1/device?limit=1001", None).await;
    assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
    // Statements per page: the same for 1 device as for 12.
    let mut per_page = Vec::new();
    for limit in [1, 12] {
        let before = count.load(std::sync::atomic::Ordering::SeqCst);
        let span = tracing::info_span!("count_queries");
        let (page, total) =
            tracing::Instrument::instrument(app.core.list_devices_page(None, limit, 0), span).await.unwrap();
        assert_eq!((page.len() as i64, total), (limit, 12));
        per_page.push(count.load(std::sync::atomic::Ordering::SeqCst) - before);
    }
    assert!(per_page[0] > 0, "the counter sees statements: {per_page:?}");
    assert_eq!(per_page[0], per_page[1], "statements for a page of 1 and of 12");
    app.stop().await;
}
