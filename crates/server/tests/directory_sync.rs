//! Directory sync against a real slapd (issue 14, part 1): users and nested groups come in,
//! changes and leavers follow, a group removal takes a user's device off the location's
//! peers, local users are left alone until linked, a directory that is down or refuses the
//! bind changes nothing and is retried, paging gets past the server's size limit, and two
//! cores on one database sync one at a time.

mod common;
use common::*;
use onramp_testkit::ldap::{Slapd, GROUPS_DN, SYNC_DN, SYNC_PASSWORD, USERS_DN};
use std::path::Path;
use std::time::{Duration, Instant};

on_both_backends!(sync_follows_the_directory, a_failing_directory_changes_nothing_and_is_retried);

/// Points the instance at `slapd` as the sync account, syncing the group `staff`.
async fn configure(app: &TestApp, slapd: &Slapd, dir: &Path, extra: Value) {
    let pw = dir.join("bind-password");
    std::fs::write(&pw, format!("{SYNC_PASSWORD}\n")).unwrap();
    let mut d = json!({
        "url": slapd.url(), "bind_dn": SYNC_DN, "password_file": pw, "user_base": USERS_DN,
        "group_base": GROUPS_DN, "sync_groups": ["staff"]
    });
    d.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(json!({"directory": d}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn sync(app: &TestApp, dry_run: bool) -> (StatusCode, Value) {
    app.call("POST", &format!("/api/v1/directory/sync?dry_run={dry_run}"), None).await
}

async fn synced(app: &TestApp) -> Value {
    let (s, r) = sync(app, false).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    r
}

async fn user(app: &TestApp, name: &str) -> Value {
    let (s, v) = app.call("GET", &format!("/api/v1/user/{name}"), None).await;
    assert_eq!(s, StatusCode::OK, "{name}: {v}");
    v
}

async fn sync_follows_the_directory(b: Backend) {
    let slapd = Slapd::start();
    let tmp = tempfile::tempdir().unwrap();
    // staff = ann + the nested group eng (bob); sales (cat) is not synced.
    let mut ldif = String::new();
    for (u, g, s) in [("ann", "Ann", "Archer"), ("bob", "Bob", "Baker"), ("cat", "Cat", "Cole"), ("dan", "Dan", "Dunn")]
    {
        ldif.push_str(&Slapd::person_ldif(u, g, s));
    }
    ldif.push_str(&Slapd::group_ldif("eng", &[Slapd::user_dn("bob")]));
    ldif.push_str(&Slapd::group_ldif("staff", &[Slapd::user_dn("ann"), Slapd::group_dn("eng"), Slapd::user_dn("dan")]));
    ldif.push_str(&Slapd::group_ldif("sales", &[Slapd::user_dn("cat")]));
    slapd.add(&ldif);

    let app = TestApp::spawn(b).await;
    // Dan was created in Onramp by hand: the directory must not take him over.
    app.create_user("dan").await;
    configure(&app, &slapd, tmp.path(), json!({})).await;

    // A dry run says what would change and writes nothing.
    let (s, dry) = sync(&app, true).await;
    assert_eq!(s, StatusCode::OK, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(sorted_names(&dry["created"]), ["ann", "bob"], "{dry}");
    assert_eq!(app.call("GET", "/api/v1/user/ann", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.call("GET", "/api/v1/group/staff", None).await.0, StatusCode::NOT_FOUND);

    let r = synced(&app).await;
    assert_eq!(sorted_names(&r["created"]), ["ann", "bob"], "{r}");
    assert_eq!(sorted_names(&r["groups_created"]), ["staff"]);
    assert!(r["round_trips"].as_u64().unwrap() >= 3, "{r}");
    let conflicts = r["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{r}");
    assert_eq!(conflicts[0]["username"], "dan");
    assert!(conflicts[0]["reason"].as_str().unwrap().contains("onramp admin directory link dan"), "{r}");
    let ann = user(&app, "ann").await;
    assert_eq!(
        (ann["first_name"].as_str(), ann["last_name"].as_str(), ann["email"].as_str(), ann["source"].as_str()),
        (Some("Ann"), Some("Archer"), Some("ann@example.com"), Some("ldap"))
    );
    let (_, staff) = app.call("GET", "/api/v1/group/staff", None).await;
    assert_eq!(sorted_names(&staff["members"]), ["ann", "bob"], "nested eng counts, dan is local: {staff}");
    assert_eq!(app.call("GET", "/api/v1/user/cat", None).await.0, StatusCode::NOT_FOUND);
    // Nothing changed: a second sync writes nothing.
    let again = synced(&app).await;
    assert!(again["created"].as_array().unwrap().is_empty() && again["updated"].as_array().unwrap().is_empty());

    // Bob gets a device in a location open to staff: he is one of its peers.
    let (location, key) = laptop_in_group_location(&app, "staff", "bob", 7).await;
    let peers = || peer_keys(&app, location);
    assert_eq!(peers().await, vec![key.clone()]);

    // In the directory: Ann's surname and phone change, Bob leaves eng (so staff; eng keeps
    // the sync account as a member, since groupOfNames needs one), Cat joins
    // staff but is disabled there, Dan's Onramp account is linked by the admin.
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: sn\nsn: Armstrong\n-\nadd: telephoneNumber\ntelephoneNumber: +48 600 100 200\n\n\
         dn: {}\nchangetype: modify\nadd: member\nmember: {SYNC_DN}\n-\ndelete: member\nmember: {}\n\n\
         dn: {}\nchangetype: modify\nadd: member\nmember: {}\n\n\
         dn: {}\nchangetype: modify\nadd: userAccountControl\nuserAccountControl: 514\n",
        Slapd::user_dn("ann"),
        Slapd::group_dn("eng"),
        Slapd::user_dn("bob"),
        Slapd::group_dn("staff"),
        Slapd::user_dn("cat"),
        Slapd::user_dn("cat"),
    ));
    let (s, v) = app.call("POST", "/api/v1/user/dan/directory_link", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = synced(&app).await;
    assert_eq!(
        r["updated"],
        json!([{"username": "ann", "fields": ["last_name", "phone"]}, {"username": "dan", "fields": ["first_name", "last_name"]}]),
        "{r}"
    );
    assert_eq!(r["disabled"], json!([{"username": "bob", "reason": "no longer in the directory's synced groups"}]));
    assert!(r["created"].as_array().unwrap().is_empty(), "a user disabled in the directory is not created: {r}");
    assert!(r["conflicts"].as_array().unwrap().is_empty(), "{r}");
    let dan = user(&app, "dan").await;
    assert_eq!((dan["first_name"].as_str(), dan["last_name"].as_str()), (Some("Dan"), Some("Dunn")), "linked: {dan}");
    assert_eq!(sorted_names(&app.call("GET", "/api/v1/group/staff", None).await.1["members"]), ["ann", "dan"]);
    assert_eq!(user(&app, "ann").await["phone"], "+48 600 100 200");
    let bob = user(&app, "bob").await;
    assert_eq!(bob["is_active"], false);
    // Bob's device stays (never deleted silently) but is no peer any more.
    let (_, devices) = app.call("GET", "/api/v1/device?username=bob", None).await;
    assert!(devices.to_string().contains(&key), "{devices}");
    assert!(peers().await.is_empty());

    // Ann is disabled in the directory, then enabled again; an admin's own disable holds.
    let uac = |v: i32| {
        format!(
            "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: {v}\n",
            Slapd::user_dn("ann")
        )
    };
    slapd.modify(&uac(514));
    let r = synced(&app).await;
    assert_eq!(r["disabled"], json!([{"username": "ann", "reason": "disabled in the directory"}]), "{r}");
    slapd.modify(&uac(512));
    let r = synced(&app).await;
    assert_eq!(r["enabled"], json!(["ann"]), "{r}");
    let (s, v) = app.call("PATCH", "/api/v1/user/ann", Some(json!({"is_active": false}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = synced(&app).await;
    assert!(r["enabled"].as_array().unwrap().is_empty(), "the admin disabled ann: {r}");
    assert_eq!(user(&app, "ann").await["is_active"], false);

    // Ann's entry is deleted: still disabled, still there, and off staff.
    let out = std::process::Command::new("ldapdelete")
        .args([
            "-x",
            "-H",
            &slapd.url(),
            "-D",
            onramp_testkit::ldap::ADMIN_DN,
            "-w",
            onramp_testkit::ldap::ADMIN_PASSWORD,
        ])
        .arg(Slapd::user_dn("ann"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = synced(&app).await;
    assert_eq!(r["memberships_removed"], json!([{"group": "staff", "username": "ann"}]), "{r}");
    assert_eq!(user(&app, "ann").await["is_active"], false);

    // Every change is in the audit log, with the sync as the actor.
    for action in
        ["directory.user_created", "directory.user_updated", "directory.user_disabled", "directory.member_removed"]
    {
        let (_, a) = app.call("GET", &format!("/api/v1/audit?action={action}"), None).await;
        assert!(!a.as_array().unwrap().is_empty(), "no {action} in the audit log");
    }
    let (_, status) = app.call("GET", "/api/v1/directory/status", None).await;
    assert_eq!(status["configured"], true, "{status}");
    assert!(status["last_error"].is_null() && status["last_summary"]["users_read"].as_u64().is_some(), "{status}");
    app.stop().await;
}

async fn a_failing_directory_changes_nothing_and_is_retried(b: Backend) {
    let slapd = Slapd::start();
    slapd.add(&(Slapd::person_ldif("ann", "Ann", "Archer") + &Slapd::group_ldif("staff", &[Slapd::user_dn("ann")])));
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::builder(b).manual_clock().spawn().await;
    let clock = app.clock.clone().unwrap();
    configure(&app, &slapd, tmp.path(), json!({})).await;
    // A wrong bind password: 503, named, nothing created.
    std::fs::write(tmp.path().join("bind-password"), "wrong\n").unwrap();
    let (s, v) = sync(&app, false).await;
    assert_eq!(error_code(s, &v, StatusCode::SERVICE_UNAVAILABLE), "directory_unavailable");
    assert!(
        v["error"].as_str().unwrap().contains("invalid credentials") && v["error"].as_str().unwrap().contains(SYNC_DN),
        "{v}"
    );
    assert_eq!(app.call("GET", "/api/v1/user/ann", None).await.0, StatusCode::NOT_FOUND);
    // A directory nobody answers at.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("ldap://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(json!({"directory": {"url": dead_url}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = sync(&app, false).await;
    assert_eq!(error_code(s, &v, StatusCode::SERVICE_UNAVAILABLE), "directory_unavailable");
    assert!(v["error"].as_str().unwrap().contains("cannot reach the directory"), "{v}");
    let (_, st) = app.call("GET", "/api/v1/directory/status", None).await;
    assert_eq!(st["failures_in_a_row"], 2, "{st}");
    assert!(st["last_error"].as_str().unwrap().contains("cannot reach"), "{st}");
    assert_eq!(app.call("GET", "/api/v1/user/ann", None).await.0, StatusCode::NOT_FOUND);

    // The schedule retries by itself with backoff once the directory is back.
    let (s, v) =
        app.call("PATCH", "/api/v1/settings", Some(json!({"directory": {"url": slapd.url(), "enabled": true}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    std::fs::write(tmp.path().join("bind-password"), SYNC_PASSWORD).unwrap();
    let next = st["next_run_at"].as_i64().unwrap();
    assert!(next > st["last_finished"].as_i64().unwrap(), "a failed run is retried later, not at once: {st}");
    let looping = tokio::spawn(app.core.clone().run_directory_sync_loop(Duration::from_millis(100)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.call("GET", "/api/v1/user/ann", None).await.0, StatusCode::NOT_FOUND, "not before the backoff");
    clock.advance(next - app.core.now() + 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.call("GET", "/api/v1/user/ann", None).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "the scheduled retry never synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, st) = app.call("GET", "/api/v1/directory/status", None).await;
    assert_eq!(st["failures_in_a_row"], 0, "{st}");
    assert!(st["last_error"].is_null(), "{st}");
    looping.abort();
    app.stop().await;
}

/// 5,000 users in nested groups through a service account limited to 1,000 entries per
/// search: only paging gets them all. A page larger than the limit fails loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_users_in_nested_groups_are_read_in_pages() {
    let slapd = Slapd::start();
    let mut ldif = String::new();
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..5000 {
        let u = format!("user{i:04}");
        ldif.push_str(&Slapd::person_ldif(&u, "User", &format!("N{i}")));
        if i % 2 == 0 {
            a.push(Slapd::user_dn(&u))
        } else {
            b.push(Slapd::user_dn(&u))
        }
    }
    // staff holds team-a and team-b; team-b sits inside team-a too (a diamond).
    b.push(Slapd::group_dn("team-a"));
    ldif.push_str(&Slapd::group_ldif("team-a", &a));
    ldif.push_str(&Slapd::group_ldif("team-b", &b));
    ldif.push_str(&Slapd::group_ldif("staff", &[Slapd::group_dn("team-a"), Slapd::group_dn("team-b")]));
    slapd.add(&ldif);
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(Backend::Sqlite).await;
    // The account's plain search stops at 1,000 entries, as Active Directory's does.
    let plain = std::process::Command::new("ldapsearch")
        .args(["-x", "-LLL", "-H", &slapd.url(), "-D", SYNC_DN, "-w", SYNC_PASSWORD, "-b", USERS_DN, "(uid=*)", "uid"])
        .output()
        .unwrap();
    assert_eq!(
        plain.status.code(),
        Some(4),
        "size limit exceeded expected: {}",
        String::from_utf8_lossy(&plain.stderr)
    );

    configure(&app, &slapd, tmp.path(), json!({"page_size": 500})).await;
    let r = synced(&app).await;
    assert_eq!(r["created"].as_array().unwrap().len(), 5000, "{}", r["conflicts"]);
    assert_eq!(r["users_read"], 5000);
    // 1 bind + 1 group page + 10 user pages.
    assert_eq!(r["round_trips"], 12, "{}", r["round_trips"]);
    let (_, staff) = app.call("GET", "/api/v1/group/staff", None).await;
    assert_eq!(staff["members"].as_array().unwrap().len(), 5000);
    let r = synced(&app).await;
    assert!(r["created"].as_array().unwrap().is_empty() && r["disabled"].as_array().unwrap().is_empty());
    app.stop().await;
}

/// Two cores on one PostgreSQL: a sync on one makes the other's wait (409), and with both
/// schedules running a due sync runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cores_sync_one_at_a_time() {
    let slapd = Slapd::start();
    let mut ldif = String::new();
    let mut members = Vec::new();
    for i in 0..50 {
        let u = format!("p{i:02}");
        ldif.push_str(&Slapd::person_ldif(&u, "P", "Q"));
        members.push(Slapd::user_dn(&u));
    }
    ldif.push_str(&Slapd::group_ldif("staff", &members));
    slapd.add(&ldif);
    let tmp = tempfile::tempdir().unwrap();
    let one = TestApp::spawn(Backend::Postgres).await;
    let two = TestApp::builder(Backend::Postgres).database_url(&one.database_url).spawn().await;
    configure(&one, &slapd, tmp.path(), json!({})).await;
    // The other core notices the settings change within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Someone else holds the lease: both cores refuse to start a second sync.
    let now = one.core.now();
    assert!(one.core.store().directory_lease_acquire("ldap", "test holder", now, now + 60, false).await.unwrap());
    for app in [&one, &two] {
        let (s, v) = sync(app, false).await;
        assert_eq!(error_code(s, &v, StatusCode::CONFLICT), "sync_running");
        assert!(v["error"].as_str().unwrap().contains("test holder"), "{v}");
    }
    one.core.store().directory_lease_finish("ldap", "test holder", now, 0, Ok("{}")).await.unwrap();

    // Both schedules on: the first due run happens once, on one of them.
    let (s, v) = one.call("PATCH", "/api/v1/settings", Some(json!({"directory": {"enabled": true}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let loops = [
        tokio::spawn(one.core.clone().run_directory_sync_loop(Duration::from_millis(50))),
        tokio::spawn(two.core.clone().run_directory_sync_loop(Duration::from_millis(50))),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, st) = one.call("GET", "/api/v1/directory/status", None).await;
        if st["last_summary"]["created"] == 50 {
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled sync: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, runs) = one.call("GET", "/api/v1/audit?action=directory.synced", None).await;
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let (_, created) = one.call("GET", "/api/v1/audit?action=directory.user_created&limit=1000", None).await;
    assert_eq!(created.as_array().unwrap().len(), 50);
    let (_, st) = two.call("GET", "/api/v1/directory/status", None).await;
    assert!(st["last_error"].is_null(), "{st}");
    loops.iter().for_each(|l| l.abort());
    two.stop().await;
    one.stop().await;
}

/// StartTLS to a directory whose certificate a private CA signed (`directory.ca_file`);
/// without the CA the certificate is refused, and the sync says so and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_a_private_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Test directory CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().signed_by(&key, &issuer).unwrap();
    let (ca_file, cert_file, key_file) =
        (tmp.path().join("ca.pem"), tmp.path().join("ldap.pem"), tmp.path().join("ldap.key"));
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let slapd = Slapd::start_tls(&cert_file, &key_file);
    slapd.add(&(Slapd::person_ldif("ann", "Ann", "Archer") + &Slapd::group_ldif("staff", &[Slapd::user_dn("ann")])));
    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = format!("ldap://localhost:{}", slapd.port);
    configure(&app, &slapd, tmp.path(), json!({"url": url, "starttls": true})).await;
    let (s, v) = sync(&app, false).await;
    assert_eq!(error_code(s, &v, StatusCode::SERVICE_UNAVAILABLE), "directory_unavailable");
    assert!(v["error"].as_str().unwrap().to_lowercase().contains("certificate"), "{v}");
    assert_eq!(app.call("GET", "/api/v1/user/ann", None).await.0, StatusCode::NOT_FOUND);
    configure(&app, &slapd, tmp.path(), json!({"url": url, "starttls": true, "ca_file": ca_file})).await;
    let r = synced(&app).await;
    assert_eq!(r["created"], json!(["ann"]), "{r}");
    // A missing CA file is refused when the sync runs, named.
    configure(&app, &slapd, tmp.path(), json!({"url": url, "starttls": true, "ca_file": "/nonexistent/ca.pem"})).await;
    let (s, v) = sync(&app, false).await;
    assert_eq!(error_code(s, &v, StatusCode::SERVICE_UNAVAILABLE), "directory_unavailable");
    assert!(v["error"].as_str().unwrap().contains("/nonexistent/ca.pem"), "{v}");
    app.stop().await;
}

/// The directory refuses the attribute write (here: an attribute its schema lacks): the
/// failure is reported per user, and no sync revokes the token the invitation mail carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_attribute_write_keeps_the_mailed_token() {
    let slapd = Slapd::start();
    slapd.add(&(Slapd::person_ldif("ann", "Ann", "Archer") + &Slapd::group_ldif("staff", &[Slapd::user_dn("ann")])));
    let sink = onramp_testkit::smtp::SmtpSink::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (s, v) = app
        .call(
            "PATCH",
            "/api/v1/settings",
            Some(json!({
                "smtp": {"host": "127.0.0.1", "port": sink.port(), "security": "none", "sender": "vpn@example.com"},
                "enrollment": {"directory_invite_email": true, "directory_invite_attribute": true}
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    configure(&app, &slapd, tmp.path(), json!({"provisioning_attribute": "onrampNoSuchAttribute"})).await;
    let r = synced(&app).await;
    assert_eq!((r["created"].clone(), r["invitations_mailed"].clone()), (json!(["ann"]), json!(["ann"])), "{r}");
    assert_eq!(r["attribute_errors"][0]["username"], "ann", "{r}");
    assert!(r["attribute_errors"][0]["reason"].as_str().unwrap().contains("onrampNoSuchAttribute"), "{r}");
    let tokens = || async { app.call("GET", "/api/v1/user/ann/tokens", None).await.1 };
    let before = tokens().await;
    assert_eq!(before.as_array().unwrap().len(), 1, "{before}");
    // Later syncs try again and fail again, but never replace the mailed token.
    for _ in 0..2 {
        let r = synced(&app).await;
        assert!(r["attributes_written"].as_array().unwrap().is_empty(), "{r}");
        assert_eq!(r["attribute_errors"].as_array().unwrap().len(), 1, "{r}");
    }
    assert_eq!(tokens().await, before, "the mailed token is still the pending one");
    assert_eq!(sink.wait_for(1, std::time::Duration::from_secs(30)).await.len(), 1);
    app.stop().await;
}
