//! `onramp-client provision` run as root (installers, systemd units) for a real local user
//! made for the test: it never writes through a link the user planted, refuses a data
//! directory that is a link or not the user's, and leaves everything outside the user's
//! folder as it was. Without `$USER` it finds the user from the OS, and a machine joined to
//! nothing is still "nothing to do".

#![cfg(unix)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_onramp-client");
const TOKEN: &str = "DuK8xRes5zYqem0fcAViQPRvIrNkGz7S";

/// A local user for this test only, removed again afterwards.
struct TestUser {
    name: String,
    home: PathBuf,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn create(home: PathBuf) -> TestUser {
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test checks what root does and must run as root");
        let name = format!("onr{}x{:x}", std::process::id(), rand_suffix());
        // useradd takes a lock on /etc/passwd; another test's useradd may hold it briefly.
        let mut tries = 0;
        loop {
            let st = Command::new("useradd")
                .args(["--no-create-home", "--home-dir", home.to_str().unwrap(), "--shell", "/usr/sbin/nologin"])
                .args(["--user-group", &name])
                .status()
                .expect("useradd");
            if st.success() {
                break;
            }
            tries += 1;
            assert!(tries < 20, "useradd {name} failed: {st}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        std::fs::create_dir_all(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        TestUser { name, home, uid, gid }
    }

    fn data_dir(&self) -> PathBuf {
        self.home.join(".local/share/onramp-client")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn client(args: &[&str], home: &Path) -> Out {
    let out = Command::new(BIN)
        .args(args)
        // As a systemd unit or an installer runs it: no $USER, $LOGNAME or $USERNAME.
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("USERNAME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("ONRAMP_CLIENT_DATA_DIR")
        .env_remove("ONRAMP_LDAP_URL")
        .env_remove("ONRAMP_ENTRA_TENANT")
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Owner, group, mode and content of a file or folder (for "nothing changed").
fn snapshot(p: &Path) -> (u32, u32, u32, Vec<String>, Option<String>) {
    let m = std::fs::symlink_metadata(p).unwrap();
    let entries = if m.is_dir() {
        let mut e: Vec<String> =
            std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        e.sort();
        e
    } else {
        vec![]
    };
    let content = if m.is_file() { Some(std::fs::read_to_string(p).unwrap()) } else { None };
    (m.uid(), m.gid(), m.mode() & 0o7777, entries, content)
}

#[test]
fn root_never_writes_through_the_users_links() {
    let tmp = tempfile::tempdir().unwrap();
    let user = TestUser::create(tmp.path().join("home"));
    let prepared = tmp.path().join("prepared.json");
    std::fs::write(
        &prepared,
        format!(r#"{{"enrollmentUrl":"https://edge.example.com/","enrollmentToken":"{TOKEN}"}}"#),
    )
    .unwrap();
    // Root's files the user would like root to overwrite or hand over.
    let victim_dir = tmp.path().join("victim");
    std::fs::create_dir(&victim_dir).unwrap();
    std::fs::set_permissions(&victim_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = victim_dir.join("provisioning.json");
    std::fs::write(&victim, "root's own file").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let empty_victim = tmp.path().join("empty-victim");
    std::fs::create_dir(&empty_victim).unwrap();
    let before = (snapshot(&victim_dir), snapshot(&victim), snapshot(&empty_victim));
    let unchanged = |what: &str| {
        assert_eq!((snapshot(&victim_dir), snapshot(&victim), snapshot(&empty_victim)), before, "{what}");
    };
    let args = ["provision", "--source", "file", "--from", prepared.to_str().unwrap(), "--user", &user.name];
    let forced: Vec<&str> = args.iter().copied().chain(["--force"]).collect();
    let data = user.data_dir();
    let file = data.join("provisioning.json");

    // The data directory is a link to root's folder.
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim_dir, &data).unwrap();
    let r = client(&forced, &user.home);
    assert_eq!(r.code, 13, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("onramp-client") && r.stderr.contains("symbolic link"), "{}", r.stderr);
    unchanged("a linked data directory");
    std::fs::remove_file(&data).unwrap();

    // A folder above it is a link (~/.local -> elsewhere).
    std::fs::remove_dir_all(user.home.join(".local")).unwrap();
    std::os::unix::fs::symlink(&empty_victim, user.home.join(".local")).unwrap();
    let r = client(&args, &user.home);
    assert_eq!(r.code, 13, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(".local") && r.stderr.contains("symbolic link"), "{}", r.stderr);
    unchanged("a linked folder above the data directory");
    std::fs::remove_file(user.home.join(".local")).unwrap();

    // A data directory that is not the user's (root's, inside their home).
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = client(&args, &user.home);
    assert_eq!(r.code, 13, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!("not to {}", user.name)), "{}", r.stderr);
    assert_eq!(snapshot(&data), (0, 0, 0o755, vec![], None), "left as it was");
    std::fs::remove_dir(&data).unwrap();

    // A link planted at the temporary file's name.
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(user.uid), Some(user.gid)).unwrap();
    let planted = data.join(".provisioning.json.tmp");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let r = client(&forced, &user.home);
    assert_eq!(r.code, 13, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(".provisioning.json.tmp") && r.stderr.contains("already exists"), "{}", r.stderr);
    unchanged("a planted temporary-file link");
    assert!(!file.exists());
    assert_eq!(std::fs::read_link(&planted).unwrap(), victim);
    std::fs::remove_file(&planted).unwrap();

    // The target itself a link: --force replaces the link, not what it points to.
    std::os::unix::fs::symlink(&victim, &file).unwrap();
    let r = client(&forced, &user.home);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    unchanged("a linked target file");

    // The file the user gets: theirs, private, in their own folder.
    let m = std::fs::symlink_metadata(&file).unwrap();
    assert!(m.file_type().is_file());
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (user.uid, user.gid, 0o600));
    let d = std::fs::symlink_metadata(&data).unwrap();
    assert_eq!((d.uid(), d.mode() & 0o777), (user.uid, 0o700));
    assert!(std::fs::read_to_string(&file).unwrap().contains(TOKEN));
    assert!(!r.stdout.contains(TOKEN) && !r.stderr.contains(TOKEN));

    // From scratch: every folder it creates belongs to the user.
    std::fs::remove_dir_all(user.home.join(".local")).unwrap();
    let r = client(&args, &user.home);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for p in [user.home.join(".local"), user.home.join(".local/share"), data.clone(), file.clone()] {
        assert_eq!(std::fs::symlink_metadata(&p).unwrap().uid(), user.uid, "{}", p.display());
    }
}

/// Root without `$USER` on a machine joined to nothing: nothing to do, nothing written.
#[test]
fn root_without_user_env_on_an_unjoined_machine() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test checks what root does and must run as root");
    let home = tempfile::tempdir().unwrap();
    let r = client(&["provision"], home.path());
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("not joined"), "{}", r.stdout);
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0, "nothing written");

    // A source that needs the user: the OS names it (root), not the environment.
    let prepared = home.path().join("prepared.json");
    std::fs::write(
        &prepared,
        format!(r#"{{"enrollmentUrl":"https://edge.example.com/","enrollmentToken":"{TOKEN}"}}"#),
    )
    .unwrap();
    let out = home.path().join("out/provisioning.json");
    let r = client(
        &[
            "provision",
            "--source",
            "file",
            "--from",
            prepared.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--dry-run",
        ],
        home.path(),
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("for root:"), "{}", r.stdout);
    assert!(!out.exists());
}
