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
