//! Directory-driven provisioning against a real slapd: core writes each member's
//! attribute (`provision_directory`, what `onramp admin provision-directory` runs), the
//! client's helper turns it into provisioning.json, and the client enrolls. Then every way
//! the helper can fail, each with its exit code.

use onramp_core::Actor;
use onramp_testkit::app::{Backend, TestApp};
use onramp_testkit::ldap::{Slapd, ADMIN_DN, ADMIN_PASSWORD, BASE_DN, USERS_DN};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_onramp-client");
const ATTR: &str = "defguardProvisioningConfig";
const TOKEN: &str = "DuK8xRes5zYqem0fcAViQPRvIrNkGz7S";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn client(args: Vec<String>, env: Vec<(&'static str, String)>) -> Out {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .envs(env)
            .env("ONRAMP_CLIENT_ALLOW_HTTP", "1")
            .env("ONRAMP_CLIENT_RETRIES", "1")
            .env_remove("ONRAMP_LDAP_URL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ldap_args(url: &str, user: &str, output: &Path) -> Vec<String> {
    [
        "provision",
        "--source",
        "ldap",
        "--ldap-url",
        url,
        "--ldap-base-dn",
        BASE_DN,
        "--ldap-bind-dn",
        &format!("uid={user},{USERS_DN}"),
        "--user",
        user,
        "--output",
        output.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The first start in `data` (provisioning.json placed there), with a password from a file
/// in `dir`: it must enroll into the location "office".
async fn first_start(dir: &Path, data: &Path) {
    let pw = dir.join("pw");
    std::fs::write(&pw, "Str0ng!Pass\n").unwrap();
    let r = client(
        vec!["start".into(), "--password-file".into(), pw.display().to_string()],
        vec![("ONRAMP_CLIENT_DATA_DIR", data.display().to_string())],
    )
    .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Enrolled") && r.stdout.contains("office"), "{}", r.stdout);
}

/// Only the sync and the enrollment acted on `user`: no admin step.
async fn assert_no_admin_step(app: &TestApp, user: &str) {
    let (_, audit) = app.call("GET", "/api/v1/audit?limit=1000", None).await;
    for e in audit.as_array().unwrap() {
        if e["subject"] == user {
            assert!(e["actor"] == "directory sync" || e["actor"] == "enrollment", "an admin step for {user}: {e}");
        }
    }
}

/// The user's own password, as the logged-on user would bind.
fn password_env(user: &str) -> Vec<(&'static str, String)> {
    vec![("ONRAMP_LDAP_PASSWORD", format!("{user}-pw"))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_writes_attribute_client_provisions_and_enrolls() {
    let slapd = Slapd::start();
    slapd.add_user("ann", "ann-pw", None);
    // The URL handed out is the stored setting (the harness's configured one is a placeholder).
    let app = TestApp::builder(Backend::Sqlite).config(|c| c.public_url = None).spawn().await;
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(json!({"public_url": format!("{}/", app.edge_url)}))).await;
    assert!(s.is_success(), "{v}");
    app.create_location("office", "10.1.0.1/24").await;
    app.create_user("ann").await;
    app.create_user("bob").await; // not in the directory
    let (s, v) = app.call("POST", "/api/v1/group", Some(json!({"name": "staff", "members": ["ann", "bob"]}))).await;
    assert!(s.is_success(), "{v}");

    let ldap = onramp_directory::LdapConfig {
        url: slapd.url(),
        bind_dn: Some(ADMIN_DN.into()),
        password: Some(ADMIN_PASSWORD.into()),
        base_dn: BASE_DN.into(),
        user_attribute: "uid".into(),
        kerberos: false,
    };
    let report = app.core.provision_directory(&Actor::system("test"), "staff", &ldap, ATTR, None).await.unwrap();
    let outcomes: Vec<(&str, &str)> = report.iter().map(|r| (r.username.as_str(), r.outcome.as_str())).collect();
    assert_eq!(outcomes, [("ann", "written"), ("bob", "not_in_directory")]);
    let (_, bob_tokens) = app.call("GET", "/api/v1/user/bob/tokens", None).await;
    assert_eq!(bob_tokens.as_array().unwrap().len(), 0, "no token stranded for a user the directory lacks");
    // The value in the directory, read with ldapsearch: camelCase JSON of PROTOCOL.md 1.2.
    let value: Value = serde_json::from_str(&slapd.read_attribute("ann", ATTR).unwrap()).unwrap();
    assert_eq!(value["enrollmentUrl"], format!("{}/", app.edge_url));
    let token = value["enrollmentToken"].as_str().unwrap().to_owned();

    // The helper, binding as ann, writes provisioning.json (snake_case, no BOM, 0600).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = data.join("provisioning.json");
    let r = client(ldap_args(&slapd.url(), "ann", &file), password_env("ann")).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains(&token) && !r.stderr.contains(&token));
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes[0], b'{', "no BOM");
    let written: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(written, json!({"enrollment_token": token, "enrollment_url": format!("{}/", app.edge_url)}));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Without --force an existing file stays.
    let r = client(ldap_args(&slapd.url(), "ann", &file), password_env("ann")).await;
    assert_eq!(r.code, 14, "{}", r.stderr);
    assert!(r.stderr.contains("--force"));

    // First start of the client enrolls from it.
    first_start(dir.path(), &data).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_failures_have_their_own_exit_codes() {
    let slapd = Slapd::start();
    let good = format!(r#"{{"enrollmentUrl":"https://edge.example.com/","enrollmentToken":"{TOKEN}"}}"#);
    slapd.add_user("ann", "ann-pw", Some((ATTR, &good)));
    slapd.add_user("carol", "carol-pw", None);
    slapd.add_user("dave", "dave-pw", Some((ATTR, "{not json")));
    let snake = format!(r#"{{"enrollment_url":"https://edge.example.com/","enrollment_token":"{TOKEN}"}}"#);
    slapd.add_user("erin", "erin-pw", Some((ATTR, &snake)));
    slapd.add_user("finn", "finn-pw", Some(("extensionAttribute4", &good)));
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| -> PathBuf { dir.path().join(name).join("provisioning.json") };

    let cases: Vec<(&str, &str, i32, &str)> = vec![
        ("carol", "carol-pw", 11, "no value in defguardProvisioningConfig"),
        ("dave", "dave-pw", 12, "not valid JSON"),
        ("erin", "erin-pw", 12, "\"enrollmentToken\" is missing"),
        ("ann", "wrong-pw", 15, "invalid credentials"),
    ];
    for (user, password, code, want) in cases {
        let r =
            client(ldap_args(&slapd.url(), user, &out(user)), vec![("ONRAMP_LDAP_PASSWORD", password.into())]).await;
        assert_eq!(r.code, code, "{user}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{user}: wanted {want:?} in {}", r.stderr);
        assert!(!out(user).exists(), "{user}: nothing written");
        assert!(!r.stderr.contains(TOKEN));
    }
    // A user the directory does not have (searching anonymously).
    let mut args = ldap_args(&slapd.url(), "zoe", &out("zoe"));
    let bind = args.iter().position(|a| a == "--ldap-bind-dn").unwrap();
    args.drain(bind..bind + 2);
    let r = client(args, vec![]).await;
    assert_eq!(r.code, 11, "{}", r.stderr);
    assert!(r.stderr.contains("no directory entry with uid=zoe"), "{}", r.stderr);
    // Another attribute name (installer's ADAttribute="extensionAttribute4").
    let mut args = ldap_args(&slapd.url(), "finn", &out("finn"));
    args.extend(["--ad-attribute".into(), "extensionAttribute4".into()]);
    let r = client(args, password_env("finn")).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(out("finn").exists());
    // --dry-run reads and checks, writes nothing.
    let mut args = ldap_args(&slapd.url(), "ann", &out("dry"));
    args.push("--dry-run".into());
    let r = client(args, password_env("ann")).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("would write") && !r.stdout.contains(TOKEN));
    assert!(!out("dry").exists());
    // Target not writable: its folder would be inside a file.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "x").unwrap();
    let r = client(ldap_args(&slapd.url(), "ann", &blocker.join("provisioning.json")), password_env("ann")).await;
    assert_eq!(r.code, 13, "{}", r.stderr);
    assert!(r.stderr.contains("cannot write"), "{}", r.stderr);
    // --force replaces.
    std::fs::create_dir_all(dir.path().join("force")).unwrap();
    std::fs::write(out("force"), "old").unwrap();
    let mut args = ldap_args(&slapd.url(), "ann", &out("force"));
    args.push("--force".into());
    assert_eq!(client(args, password_env("ann")).await.code, 0);
    assert!(std::fs::read_to_string(out("force")).unwrap().contains(TOKEN));

    // The AD flow without credentials binds as the logged-on user: Kerberos, Windows only.
    let mut args = ldap_args(&slapd.url(), "ann", &out("ad"));
    let bind = args.iter().position(|a| a == "--ldap-bind-dn").unwrap();
    args.drain(bind..bind + 2);
    args[2] = "ad".into();
    let r = client(args, vec![]).await;
    assert_eq!(r.code, 15, "{}", r.stderr);
    assert!(r.stderr.contains("Kerberos bind is available on Windows only"), "{}", r.stderr);

    // The directory down.
    let url = slapd.url();
    drop(slapd);
    let r = client(ldap_args(&url, "ann", &out("down")), password_env("ann")).await;
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(r.stderr.contains("cannot reach the directory"), "{}", r.stderr);

    // No directory configured: nothing to do, success; the installer's log says so.
    let log = dir.path().join("provision.log");
    let r = client(
        vec!["provision".into(), "--user".into(), "ann".into(), "--log-file".into(), log.display().to_string()],
        vec![],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("not joined"), "{}", r.stdout);
    let r = client(
        ldap_args(&url, "ann", &out("down2"))
            .into_iter()
            .chain(["--log-file".into(), log.display().to_string()])
            .collect(),
        vec![],
    )
    .await;
    assert_eq!(r.code, 10);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("done (exit 0)") && text.contains("(exit 10)"), "{text}");
    // Each line starts with ISO 8601 local time and offset, e.g. 2026-12-02T14:03:11+01:00.
    for line in text.lines() {
        let stamp = line.split(' ').next().unwrap();
        let b = stamp.as_bytes();
        assert!(stamp.len() == 25 || (stamp.len() == 20 && stamp.ends_with('Z')), "{line}");
        assert!(b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':', "{line}");
        assert!(stamp.len() == 20 || (matches!(b[19], b'+' | b'-') && b[22] == b':'), "{line}");
    }
}

/// The zero-touch chain (issue 14): a person added to the directory is synced, gets an
/// invitation mail and a token in their attribute (refreshed before it expires), the
/// helper turns it into provisioning.json and the first start enrolls; the next sync clears
/// the attribute. Nothing here calls the admin API for that user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_added_to_the_directory_enrolls_with_no_admin_step() {
    use onramp_testkit::ldap::{GROUPS_DN, SYNC_DN, SYNC_PASSWORD};
    let slapd = Slapd::start();
    let sink = onramp_testkit::smtp::SmtpSink::start().await;
    let app = TestApp::builder(Backend::Sqlite).config(|c| c.public_url = None).manual_clock().spawn().await;
    let clock = app.clock.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bind_pw = dir.path().join("bind-pw");
    std::fs::write(&bind_pw, SYNC_PASSWORD).unwrap();
    // The admin's one-time setup: the edge, a location for staff, SMTP and the sync.
    app.create_location("office", "10.1.0.1/24").await;
    let (s, v) = app
        .call(
            "PATCH",
            "/api/v1/settings",
            Some(json!({
                "public_url": format!("{}/", app.edge_url),
                "smtp": {"host": "127.0.0.1", "port": sink.port(), "security": "none", "sender": "vpn@example.com"},
                "enrollment": {"directory_invite_email": true, "directory_invite_attribute": true},
                "directory": {"url": slapd.url(), "bind_dn": SYNC_DN, "password_file": bind_pw, "user_base": USERS_DN,
                              "group_base": GROUPS_DN, "sync_groups": ["staff"], "enabled": true, "interval_secs": 300}
            })),
        )
        .await;
    assert!(s.is_success(), "{v}");
    // The schedule, not an admin, runs every sync below: each waits for the next due run
    // (the clock moves on by `secs` first) and returns its counts.
    let looping = tokio::spawn(app.core.clone().run_directory_sync_loop(std::time::Duration::from_millis(50)));
    let scheduled = |secs: i64| {
        let (app, clock) = (&app, clock.clone());
        async move {
            let before = app.core.directory_sync_status(None).await.unwrap().last_finished;
            clock.advance(secs);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let st = app.core.directory_sync_status(None).await.unwrap();
                if st.last_finished != before {
                    assert!(st.last_error.is_none(), "{st:?}");
                    return st.last_summary.unwrap();
                }
                assert!(std::time::Instant::now() < deadline, "no scheduled sync ran");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };

    // 1. HR adds Zoe to the directory.
    slapd.add(&(Slapd::person_ldif("zoe", "Zoe", "Zimmer") + &Slapd::group_ldif("staff", &[Slapd::user_dn("zoe")])));
    // 2. The sync creates her, mails her invitation and fills her attribute.
    let r = scheduled(0).await;
    assert_eq!(
        (&r["created"], &r["invitations_mailed"], &r["attributes_written"]),
        (&json!(1), &json!(1), &json!(1)),
        "{r}"
    );
    let first: Value = serde_json::from_str(&slapd.read_attribute("zoe", ATTR).unwrap()).unwrap();
    let mail = sink.wait_for(1, std::time::Duration::from_secs(30)).await.remove(0);
    assert!(mail.text.contains(first["enrollmentToken"].as_str().unwrap()), "one token, mailed and written");
    // Nothing changed: nothing written.
    let r = scheduled(300).await;
    assert_eq!(r["attributes_written"], 0, "{r}");

    // Her laptop is installed 19 hours later: a sync has already put a fresh token in.
    let r = scheduled(19 * 3600).await;
    assert_eq!((&r["attributes_written"], &r["invitations_mailed"]), (&json!(1), &json!(0)), "{r}");
    let fresh: Value = serde_json::from_str(&slapd.read_attribute("zoe", ATTR).unwrap()).unwrap();
    assert_ne!(fresh["enrollmentToken"], first["enrollmentToken"]);

    // 3. The installer's helper, as Zoe, writes provisioning.json; 4. the first start enrolls.
    let data = dir.path().join("data");
    let file = data.join("provisioning.json");
    let r = client(ldap_args(&slapd.url(), "zoe", &file), password_env("zoe")).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    first_start(dir.path(), &data).await;

    // Enrolled: the next sync clears her attribute, and only one mail ever went out.
    let r = scheduled(300).await;
    assert_eq!(r["attributes_cleared"], 1, "{r}");
    assert_eq!(slapd.read_attribute("zoe", ATTR), None);
    assert_eq!(sink.messages().iter().filter(|m| m.subject.starts_with("Set up your VPN")).count(), 1);
    // No step above was an admin call for Zoe.
    assert_no_admin_step(&app, "zoe").await;
    looping.abort();
    app.stop().await;
}

/// The same chain with Entra ID (issue 14, part 2): a person added to a synced Entra group is
/// synced, their custom security attributes get a token, the helper reads them through
/// Graph into provisioning.json, the first start enrolls, and the next sync clears them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_added_to_entra_enrolls_with_no_admin_step() {
    use onramp_testkit::graph::{FakeGraph, CLIENT_ID, CLIENT_SECRET, TENANT};
    let graph = FakeGraph::start().await;
    let app = TestApp::builder(Backend::Sqlite).config(|c| c.public_url = None).manual_clock().spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    app.create_location("office", "10.1.0.1/24").await;
    let (s, v) = app
        .call(
            "PATCH",
            "/api/v1/settings",
            Some(json!({
                "public_url": format!("{}/", app.edge_url),
                "enrollment": {"directory_invite_attribute": true},
                "entra": {"tenant": TENANT, "client_id": CLIENT_ID, "client_secret_file": secret,
                          "graph_url": graph.url, "login_url": graph.url, "sync_groups": ["VPN users"],
                          "enabled": true, "interval_secs": 60}
            })),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let looping = tokio::spawn(app.core.clone().run_directory_sync_loop(std::time::Duration::from_millis(50)));
    // Waits for the scheduled sync that `done` accepts.
    let wait_for = |done: fn(&FakeGraph, &str) -> bool, zoe: String| {
        let graph = graph.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !done(&graph, &zoe) {
                assert!(std::time::Instant::now() < deadline, "no scheduled Entra sync did it");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };

    // 1. HR adds Zoe to Entra ID and to the group. 2. The scheduled sync creates her and
    // fills her attributes.
    let zoe = graph.add_user("zoe@contoso.com", "Zoe", "Zimmer", Some("zoe@contoso.com"));
    graph.add_group("VPN users", &[&zoe]);
    wait_for(|g, z| g.attributes(z).is_some(), zoe.clone()).await;
    let (token, _) = graph.attributes(&zoe).unwrap();

    // 3. The installer's helper reads them through Graph; 4. the first start enrolls.
    let data = dir.path().join("data");
    let file = data.join("provisioning.json");
    let args: Vec<String> = [
        "provision",
        "--source",
        "entra",
        "--entra-tenant",
        TENANT,
        "--entra-client-id",
        CLIENT_ID,
        "--entra-client-secret-file",
        secret.to_str().unwrap(),
        "--graph-url",
        &graph.url,
        "--entra-login-url",
        &graph.url,
        "--entra-user",
        "zoe@contoso.com",
        "--output",
        file.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = client(args, vec![]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(std::fs::read_to_string(&file).unwrap().contains(&token));
    first_start(dir.path(), &data).await;

    // Enrolled: the next due sync clears her attributes.
    app.clock.clone().unwrap().advance(61);
    wait_for(|g, z| g.attributes(z).is_none(), zoe).await;
    assert_no_admin_step(&app, "zoe").await;
    looping.abort();
    app.stop().await;
}
