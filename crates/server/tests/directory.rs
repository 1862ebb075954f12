//! `onramp admin provision-directory` against a real slapd: tokens issued for the group's
//! members and written into their attribute; members the directory lacks are reported.

use onramp_testkit::ldap::{Slapd, ADMIN_DN, ADMIN_PASSWORD, BASE_DN};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_onramp");

fn onramp(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN)
        .args(args)
        .env("ONRAMP_DATA_DIR", data)
        .env("ONRAMP_PUBLIC_URL", "https://vpn-enroll.example.com/")
        .env("ONRAMP_LDAP_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn provision_directory_writes_each_members_attribute() {
    let slapd = Slapd::start();
    slapd.add_user("ann", "ann-pw", None);
    slapd.add_user("cat", "cat-pw", Some(("extensionAttribute4", "old value")));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    Command::new(BIN).args(["migrate", "--create"]).env("ONRAMP_DATA_DIR", data).output().unwrap();
    for u in ["ann", "bob", "cat"] {
        onramp(
            data,
            &[
                "admin",
                "user",
                "create",
                "--username",
                u,
                "--first-name",
                u,
                "--last-name",
                "X",
                "--email",
                &format!("{u}@example.com"),
            ],
        );
    }
    onramp(data, &["admin", "group", "create", "staff"]);
    for u in ["ann", "bob", "cat"] {
        onramp(data, &["admin", "group", "add-member", "staff", u]);
    }
    let out = onramp(
        data,
        &[
            "admin",
            "provision-directory",
            "--group",
            "staff",
            "--ldap-url",
            &slapd.url(),
            "--base-dn",
            BASE_DN,
            "--bind-dn",
            ADMIN_DN,
            "--attribute",
            "extensionAttribute4",
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes: Vec<(String, String)> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["username"].as_str().unwrap().to_owned(), r["outcome"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        outcomes,
        [("ann".into(), "written".into()), ("bob".into(), "not_in_directory".into()), ("cat".into(), "written".into())]
    );
    for u in ["ann", "cat"] {
        let v: serde_json::Value =
            serde_json::from_str(&slapd.read_attribute(u, "extensionAttribute4").unwrap()).unwrap();
        assert_eq!(v["enrollmentUrl"], "https://vpn-enroll.example.com/");
        let token = v["enrollmentToken"].as_str().unwrap();
        assert!(onramp_domain::token::is_well_formed(token));
        // The secret goes to the directory only, never to the terminal.
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(token)
                && !String::from_utf8_lossy(&out.stderr).contains(token)
        );
    }

    // Wrong credentials: a clear error, no token issued.
    let out = Command::new(BIN)
        .args([
            "admin",
            "provision-directory",
            "--group",
            "staff",
            "--ldap-url",
            &slapd.url(),
            "--base-dn",
            BASE_DN,
            "--bind-dn",
            ADMIN_DN,
        ])
        .env("ONRAMP_DATA_DIR", data)
        .env("ONRAMP_LDAP_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `onramp admin directory sync` configured only by `ONRAMP_LDAP_*`: a dry run prints the
/// plan and writes nothing; the real run creates the users and fills the invite attribute;
/// status shows the run; a bad setting is refused with its name.
#[test]
fn directory_sync_from_the_command_line_and_the_environment() {
    use onramp_testkit::ldap::{GROUPS_DN, SYNC_DN, SYNC_PASSWORD};
    let slapd = Slapd::start();
    slapd.add(
        &(Slapd::person_ldif("ann", "Ann", "Archer")
            + &Slapd::person_ldif("bob", "Bob", "Baker")
            + &Slapd::group_ldif("staff", &[Slapd::user_dn("ann"), Slapd::user_dn("bob")])),
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pw = tmp.path().join("bind-pw");
    std::fs::write(&pw, SYNC_PASSWORD).unwrap();
    Command::new(BIN).args(["migrate", "--create"]).env("ONRAMP_DATA_DIR", &data).output().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("ONRAMP_DATA_DIR", &data)
            .env("ONRAMP_PUBLIC_URL", "https://vpn-enroll.example.com/")
            .env("ONRAMP_LDAP_URL", slapd.url())
            .env("ONRAMP_LDAP_BASE_DN", BASE_DN)
            .env("ONRAMP_LDAP_BIND_DN", SYNC_DN)
            .env("ONRAMP_LDAP_PASSWORD_FILE", &pw)
            .env("ONRAMP_LDAP_USER_ATTRIBUTE", "uid")
            .env("ONRAMP_LDAP_SYNC_GROUPS", "staff")
            .env("ONRAMP_LDAP_INVITE_ATTRIBUTE", "extensionAttribute4")
            .env_remove("ONRAMP_LDAP_PASSWORD")
            .output()
            .unwrap()
    };
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    let out = run(&["admin", "directory", "sync", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("users would be created (2):") && t.contains("  ann") && t.contains("dry run"), "{t}");
    assert!(t.contains("provisioning attributes would be written (2):"), "{t}");
    assert_eq!(slapd.read_attribute("ann", "extensionAttribute4"), None, "a dry run writes nothing");
    let out = run(&["admin", "user", "list", "--json"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"ann\""), "{}", text(&out));

    let out = run(&["admin", "directory", "sync", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["created"], serde_json::json!(["ann", "bob"]), "{r}");
    assert_eq!(r["attributes_written"], serde_json::json!(["ann", "bob"]), "{r}");
    let v: serde_json::Value =
        serde_json::from_str(&slapd.read_attribute("bob", "extensionAttribute4").unwrap()).unwrap();
    assert_eq!(v["enrollmentUrl"], "https://vpn-enroll.example.com/");
    let token = v["enrollmentToken"].as_str().unwrap();
    assert!(!text(&out).contains(token), "the token goes to the directory only");
    // The synced group exists, and the sync is on record.
    let out = run(&["admin", "group", "list", "--json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("staff"), "{}", text(&out));
    let out = run(&["admin", "directory", "status"]);
    assert!(out.status.success() && text(&out).contains("\"created\":2"), "{}", text(&out));
    // Stored settings: a bad filter is refused and named; the group base takes its own value.
    let out = run(&["admin", "settings", "set", "directory.user_filter", "objectClass=person"]);
    assert!(!out.status.success() && text(&out).contains("directory.user_filter"), "{}", text(&out));
    let out = run(&["admin", "settings", "set", "directory.group_base", GROUPS_DN]);
    assert!(out.status.success(), "{}", text(&out));
    // A wrong bind password: the command fails, names the account, changes nothing.
    std::fs::write(&pw, "wrong").unwrap();
    let out = run(&["admin", "directory", "sync"]);
    assert!(!out.status.success() && text(&out).contains("invalid credentials"), "{}", text(&out));
    assert!(text(&out).contains(SYNC_DN), "{}", text(&out));
}

/// `onramp admin directory sync --source entra` configured only by `ONRAMP_ENTRA_*`
/// against a Graph-shaped server: a dry run writes nothing, the run creates the users and
/// fills their custom security attributes, status names the directory, a bad setting is
/// refused with its name, and a wrong secret fails the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_sync_from_the_command_line_and_the_environment() {
    use onramp_testkit::graph::{FakeGraph, CLIENT_ID, CLIENT_SECRET, TENANT};
    let graph = FakeGraph::start().await;
    let ann = graph.add_user("ann@contoso.com", "Ann", "Archer", None);
    let bob = graph.add_user("bob@contoso.com", "Bob", "Baker", None);
    graph.add_group("VPN users", &[&ann, &bob]);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let secret = tmp.path().join("client-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    Command::new(BIN).args(["migrate", "--create"]).env("ONRAMP_DATA_DIR", &data).output().unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("ONRAMP_DATA_DIR", &data)
            .env("ONRAMP_PUBLIC_URL", "https://vpn-enroll.example.com/")
            .env("ONRAMP_ENTRA_TENANT", TENANT)
            .env("ONRAMP_ENTRA_CLIENT_ID", CLIENT_ID)
            .env("ONRAMP_ENTRA_CLIENT_SECRET_FILE", &secret)
            .env("ONRAMP_GRAPH_URL", &graph.url)
            .env("ONRAMP_ENTRA_LOGIN_URL", &graph.url)
            .env("ONRAMP_ENTRA_SYNC_GROUPS", "VPN users")
            .env("ONRAMP_ENTRA_INVITE_ATTRIBUTES", "true")
            .env_remove("ONRAMP_LDAP_URL");
        async move { tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap() }
    };
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    let out = run(&["admin", "directory", "sync", "--source", "entra", "--dry-run"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("users would be created (2):") && t.contains("Graph round trips"), "{t}");
    assert!(t.contains("provisioning attributes would be written (2):"), "{t}");
    assert_eq!(graph.attributes(&ann), None, "a dry run writes nothing");

    // Only Entra is configured: `sync` without --source is Entra's.
    let out = run(&["admin", "directory", "sync", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["source"].as_str(), r["created"].clone()), (Some("entra"), serde_json::json!(["ann", "bob"])), "{r}");
    assert_eq!(r["attributes_written"], serde_json::json!(["ann", "bob"]), "{r}");
    let (token, url) = graph.attributes(&bob).unwrap();
    assert_eq!(url, "https://vpn-enroll.example.com/");
    assert!(!text(&out).contains(&token), "the token goes to Entra only");
    let out = run(&["admin", "directory", "status", "--source", "entra"]).await;
    let t = text(&out);
    assert!(out.status.success() && t.contains("Entra ID") && t.contains("\"created\":2"), "{t}");
    // Stored settings are checked and named.
    let out = run(&["admin", "settings", "set", "entra.username_property", "uid"]).await;
    assert!(!out.status.success() && text(&out).contains("entra.username_property"), "{}", text(&out));
    let out = run(&["admin", "directory", "sync", "--source", "azure-ad"]).await;
    assert!(!out.status.success() && text(&out).contains("ldap or entra"), "{}", text(&out));
    // A wrong secret: the command fails with Entra's reason and changes nothing.
    std::fs::write(&secret, "wrong").unwrap();
    let out = run(&["admin", "directory", "sync", "--source", "entra"]).await;
    let t = text(&out);
    assert!(!out.status.success() && t.contains("invalid_client") && !t.contains("wrong"), "{t}");
}
