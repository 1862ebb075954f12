//! The admin web UI's directory sync page, driven in headless Chromium against a real
//! server and a real slapd: settings typed in and saved (a bad filter refused at its
//! field), a dry run listing what would change and writing nothing, "Sync now" creating
//! the users, the status card, and the invite switches on the Enrollment settings page.

mod common;
use common::*;
mod chrome;
mod web;
use web::*;

use chrome::start_chromedriver;
use onramp_testkit::ldap::{Slapd, GROUPS_DN, SYNC_DN, SYNC_PASSWORD, USERS_DN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_page_saves_dry_runs_and_syncs() {
    let slapd = Slapd::start();
    slapd.add(
        &(Slapd::person_ldif("ann", "Ann", "Archer")
            + &Slapd::person_ldif("bob", "Bob", "Baker")
            + &Slapd::group_ldif("staff", &[Slapd::user_dn("ann"), Slapd::user_dn("bob")])),
    );
    let tmp = tempfile::tempdir().unwrap();
    let pw = tmp.path().join("bind-pw");
    std::fs::write(&pw, SYNC_PASSWORD).unwrap();
    let app = TestApp::spawn(Backend::Sqlite).await;
    admin_password(&app).await;
    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "admin", ADMIN_PASSWORD).await;

    // Reached from the navigation like any settings page.
    c.goto(&app.url("/users")).await.unwrap();
    click(&c, "nav a[href='/settings/directory']").await;
    assert_eq!(text(&c, "main h1").await, "Directory sync");
    fill(&c, "#f-url", &slapd.url()).await;
    fill(&c, "#f-bind_dn", SYNC_DN).await;
    fill(&c, "#f-password_file", pw.to_str().unwrap()).await;
    fill(&c, "#f-user_base", USERS_DN).await;
    fill(&c, "#f-group_base", GROUPS_DN).await;
    fill(&c, "#f-sync_groups", "staff").await;
    fill(&c, "#f-user_filter", "objectClass=person").await;
    click(&c, "#save-directory").await;
    let err = text(&c, "#f-user_filter-error").await;
    assert!(err.contains("parentheses"), "{err}");
    // The other typed values are kept.
    assert_eq!(wait_for(&c, "#f-sync_groups").await.prop("value").await.unwrap().unwrap(), "staff");
    fill(&c, "#f-user_filter", "(objectClass=inetOrgPerson)").await;
    click(&c, "#save-directory").await;
    assert_eq!(text(&c, "p.notice").await, "Changes saved.");
    let (_, s) = app.call("GET", "/api/v1/settings", None).await;
    assert_eq!(s["directory"]["sync_groups"], json!(["staff"]), "{s}");
    assert_eq!(s["directory"]["user_filter"], "(objectClass=inetOrgPerson)");

    click(&c, "#dry-run").await;
    let report = text(&c, "#sync-report").await;
    assert!(
        report.contains("Dry run: nothing was written") && report.contains("Users would be created (2)"),
        "{report}"
    );
    assert!(report.contains("ann") && report.contains("bob"), "{report}");
    screenshot(&c, "directory-dry-run").await;
    assert_eq!(app.call("GET", "/api/v1/user/ann", None).await.0, StatusCode::NOT_FOUND);

    click(&c, "#sync-now").await;
    let report = text(&c, "#sync-report").await;
    assert!(report.contains("Synced") && report.contains("Users created (2)"), "{report}");
    let status = text(&c, "#directory-status").await;
    assert!(status.contains("2 created"), "{status}");
    screenshot(&c, "directory-synced").await;
    c.goto(&app.url("/users?q=ann")).await.unwrap();
    let row = text(&c, "tr[data-user=ann]").await;
    assert!(row.contains("ann@example.com") && row.contains("directory"), "{row}");

    // A user created in Onramp is linked from their page, like the report's hint says.
    app.create_user("cat").await;
    c.goto(&app.url("/users/cat")).await.unwrap();
    assert!(text(&c, "#directory-link").await.contains("leaves this user alone"));
    // Only LDAP is set up: one button, naming it.
    assert_eq!(text(&c, "#directory-link-ldap").await, "Link to LDAP / Active Directory");
    assert!(c.find(fantoccini::Locator::Css("#directory-link-entra")).await.is_err(), "no Entra ID button");
    click(&c, "#directory-link-ldap").await;
    assert_eq!(text(&c, "p.notice").await, "Changes saved.");
    assert!(text(&c, "#directory-link").await.contains("Managed by the directory sync (LDAP / Active Directory)"));
    c.execute("document.getElementById('directory-link').scrollIntoView()", vec![]).await.unwrap();
    screenshot(&c, "directory-user-linked").await;
    assert_eq!(app.call("GET", "/api/v1/user/cat", None).await.1["source"], "ldap");

    // A refused bind shows why, and changes nothing.
    std::fs::write(&pw, "wrong").unwrap();
    c.goto(&app.url("/settings/directory")).await.unwrap();
    click(&c, "#sync-now").await;
    let report = text(&c, "#sync-report").await;
    assert!(report.contains("nothing was changed") && report.contains("invalid credentials"), "{report}");

    // The invite switches live on the Enrollment settings page.
    c.goto(&app.url("/settings/enrollment")).await.unwrap();
    click(&c, "#f-directory_invite_attribute").await;
    c.execute("document.getElementById('directory-invites').scrollIntoView()", vec![]).await.unwrap();
    screenshot(&c, "directory-invite-switches").await;
    click(&c, "#save-enrollment").await;
    assert_eq!(text(&c, "p.notice").await, "Changes saved.");
    let (_, s) = app.call("GET", "/api/v1/settings", None).await;
    assert_eq!(s["enrollment"]["directory_invite_attribute"], true, "{s}");
    assert_eq!(s["enrollment"]["directory_invite_email"], false);
    c.close().await.unwrap();
    app.stop().await;
}

/// The Entra ID page, reached from the navigation: the app registration typed in and
/// saved (a bad attribute set refused at its field), a dry run, "Sync now" against a
/// Graph-shaped server, and the status card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_page_saves_dry_runs_and_syncs() {
    use onramp_testkit::graph::{FakeGraph, CLIENT_ID, CLIENT_SECRET, TENANT};
    let graph = FakeGraph::start().await;
    let ann = graph.add_user("ann.lee@contoso.com", "Ann", "Lee", Some("ann.lee@contoso.com"));
    let bob = graph.add_user("bob@contoso.com", "Bob", "Baker", Some("bob@contoso.com"));
    graph.add_group("VPN users", &[&ann, &bob]);
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("client-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Graph's address is a setting under "Other clouds"; tests point it at the fake.
    let (s, v) = app
        .call("PATCH", "/api/v1/settings", Some(json!({"entra": {"graph_url": graph.url, "login_url": graph.url}})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    admin_password(&app).await;
    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "admin", ADMIN_PASSWORD).await;

    // Nothing set up yet: a user's page says where to set a directory up, and the link goes there.
    app.create_user("dan").await;
    c.goto(&app.url("/users/dan")).await.unwrap();
    assert!(text(&c, "#directory-none").await.contains("No directory is set up yet"));
    c.execute("document.getElementById('directory-link').scrollIntoView()", vec![]).await.unwrap();
    screenshot(&c, "user-no-directory").await;
    assert!(c.find(fantoccini::Locator::Css("#directory-link-ldap")).await.is_err());
    click(&c, "#directory-none a[href='/settings/entra']").await;
    assert_eq!(text(&c, "main h1").await, "Entra ID sync");
    c.goto(&app.url("/users")).await.unwrap();
    click(&c, "nav a[href='/settings/entra']").await;
    assert_eq!(text(&c, "main h1").await, "Entra ID sync");
    fill(&c, "#f-tenant", TENANT).await;
    fill(&c, "#f-client_id", CLIENT_ID).await;
    fill(&c, "#f-client_secret_file", secret.to_str().unwrap()).await;
    fill(&c, "#f-sync_groups", "VPN users").await;
    fill(&c, "#f-attribute_set", "Defguard Tokens").await;
    click(&c, "#save-entra").await;
    let err = text(&c, "#f-attribute_set-error").await;
    assert!(err.contains("attribute set name"), "{err}");
    assert_eq!(wait_for(&c, "#f-tenant").await.prop("value").await.unwrap().unwrap(), TENANT);
    fill(&c, "#f-attribute_set", "Defguard").await;
    c.execute("document.querySelector('#f-client_id').scrollIntoView()", vec![]).await.unwrap();
    screenshot(&c, "entra-settings").await;
    click(&c, "#save-entra").await;
    assert_eq!(text(&c, "p.notice").await, "Changes saved.");
    let (_, s) = app.call("GET", "/api/v1/settings", None).await;
    assert_eq!(
        (s["entra"]["tenant"].as_str(), s["entra"]["sync_groups"].clone()),
        (Some(TENANT), json!(["VPN users"]))
    );

    click(&c, "#dry-run").await;
    let report = text(&c, "#sync-report").await;
    assert!(
        report.contains("Dry run: nothing was written") && report.contains("Users would be created (2)"),
        "{report}"
    );
    assert!(report.contains("ann.lee") && report.contains("Graph requests"), "{report}");
    assert_eq!(app.call("GET", "/api/v1/user/ann.lee", None).await.0, StatusCode::NOT_FOUND);

    click(&c, "#sync-now").await;
    let report = text(&c, "#sync-report").await;
    assert!(report.contains("Synced") && report.contains("Users created (2)"), "{report}");
    assert!(text(&c, "#directory-status").await.contains("2 created"));
    screenshot(&c, "entra-synced").await;
    let (_, u) = app.call("GET", "/api/v1/user/ann.lee", None).await;
    assert_eq!(u["source"], "entra", "{u}");
    // The LDAP page's status is its own.
    c.goto(&app.url("/settings/directory")).await.unwrap();
    assert!(text(&c, "#directory-status").await.contains("never"));

    // A user created in Onramp is handed to Entra ID, the one directory set up here.
    c.goto(&app.url("/users/dan")).await.unwrap();
    assert!(c.find(fantoccini::Locator::Css("#directory-link-ldap")).await.is_err(), "LDAP is not set up");
    assert_eq!(text(&c, "#directory-link-entra").await, "Link to Entra ID");
    click(&c, "#directory-link-entra").await;
    assert_eq!(text(&c, "p.notice").await, "Changes saved.");
    assert!(text(&c, "#directory-link").await.contains("Managed by the directory sync (Entra ID)"));
    assert_eq!(app.call("GET", "/api/v1/user/dan", None).await.1["source"], "entra");
    click(&c, "#directory-unlink").await;
    assert_eq!(app.call("GET", "/api/v1/user/dan", None).await.1["source"], "local");
}
