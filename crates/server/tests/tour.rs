//! The README's tour, run as written: every shell block the README marks with
//! `<!-- tour -->` runs, in order, in one bash script (`set -euo pipefail`) against a fresh
//! server started from the block marked `<!-- tour: server -->`. A README change that
//! breaks the tour fails this test.
//!
//! The tour runs in a network namespace of its own, so its fixed addresses (127.0.0.1:8000,
//! :8080, :50055) meet no other test, in a temporary directory with its own HOME. `cargo`
//! there is a small script that runs the binaries this test was built with
//! (`cargo run -q --release --bin NAME -- ARGS` → `NAME ARGS`; `cargo build` does nothing),
//! and `./target/release/` holds the same binaries. Needs root (network namespaces),
//! curl and jq: it fails, never skips, without them.

mod netns;
mod procs;
use procs::BIN;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A process group started by the test: ended whole on drop, even after a panic.
struct Group(std::process::Child, bool);

impl Group {
    fn end(&mut self, signal: i32) {
        if !std::mem::replace(&mut self.1, true) {
            // libc, not the `kill` program: procps-ng 4.0.2's kill reads `-KILL -1234` as
            // kill(-1), which ends every process on the machine.
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(-(self.0.id() as i32), signal) };
            let _ = self.0.wait();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.end(libc::SIGKILL);
    }
}

#[derive(Debug, PartialEq)]
enum Block {
    Server(String),
    Run(String),
}

/// The marked ```sh blocks of `readme`, in order. A marker applies to the next fenced block;
/// a marker with no block after it is an error, so a misplaced marker cannot hide a step.
fn tour_blocks(readme: &str) -> Result<Vec<Block>, String> {
    let mut blocks = vec![];
    let mut pending: Option<(usize, bool)> = None;
    let mut body: Option<(bool, String)> = None;
    for (n, line) in readme.lines().enumerate() {
        let t = line.trim();
        if let Some((server, text)) = &mut body {
            if t == "```" {
                let text = std::mem::take(text);
                blocks.push(if *server { Block::Server(text) } else { Block::Run(text) });
                body = None;
            } else {
                text.push_str(line);
                text.push('\n');
            }
            continue;
        }
        match t {
            "<!-- tour -->" | "<!-- tour: server -->" => {
                if let Some((at, _)) = pending {
                    return Err(format!("README line {}: a tour marker with no ```sh block after it", at + 1));
                }
                pending = Some((n, t.contains("server")));
            }
            _ if t.starts_with("```") => {
                if let Some((at, server)) = pending.take() {
                    if t != "```sh" {
                        return Err(format!("README line {}: the tour block is `{t}`, not ```sh", at + 1));
                    }
                    body = Some((server, String::new()));
                }
            }
            _ if pending.is_some() && !t.is_empty() => {
                let (at, _) = pending.unwrap();
                return Err(format!("README line {}: a tour marker must be followed by its ```sh block", at + 1));
            }
            _ => {}
        }
    }
    if let Some((at, _)) = pending {
        return Err(format!("README line {}: a tour marker with no ```sh block after it", at + 1));
    }
    if body.is_some() {
        return Err("README: a tour block is not closed".into());
    }
    Ok(blocks)
}

#[test]
fn markers_pick_blocks_in_order_and_misplaced_markers_are_errors() {
    let md =
        "text\n<!-- tour: server -->\n```sh\nserve\n```\n```sh\nnot marked\n```\n<!-- tour -->\n\n```sh\na\nb\n```\n";
    assert_eq!(tour_blocks(md).unwrap(), vec![Block::Server("serve\n".into()), Block::Run("a\nb\n".into())]);
    assert!(tour_blocks("<!-- tour -->\nsome words\n```sh\nx\n```\n").unwrap_err().contains("line 1"));
    assert!(tour_blocks("<!-- tour -->\n```toml\nx\n```\n").unwrap_err().contains("not ```sh"));
    assert!(tour_blocks("x\n<!-- tour -->\n").unwrap_err().contains("line 2"));
    assert!(tour_blocks("<!-- tour -->\n```sh\nx\n").unwrap_err().contains("not closed"));
}

/// `cargo` inside the tour: the README's `cargo run ... --bin NAME -- ARGS` runs NAME from
/// the binaries under test, and `cargo build` has nothing to do.
const FAKE_CARGO: &str = r#"#!/bin/sh
set -e
case "$1" in
  build) exit 0 ;;
  run) shift ;;
  *) echo "the tour test's cargo knows only run and build, not: $*" >&2; exit 2 ;;
esac
bin=
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    --bin) bin="$2"; shift 2 ;;
    -q|--release) shift ;;
    *) echo "the tour test's cargo does not know $1" >&2; exit 2 ;;
  esac
done
[ -n "$bin" ] || { echo "cargo run without --bin" >&2; exit 2; }
exec "$TOUR_BIN_DIR/$bin" "$@"
"#;

fn require_tools() {
    netns::require_root_and_tun();
    for (tool, package) in [("curl", "curl"), ("jq", "jq")] {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap();
        assert!(found.status.success(), "the README tour uses `{tool}`: apt-get install -y {package}");
    }
}

#[test]
fn the_readme_tour_runs_as_written() {
    require_tools();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let blocks = tour_blocks(&readme).unwrap_or_else(|e| panic!("{e}"));
    let servers: Vec<&String> =
        blocks.iter().filter_map(|b| if let Block::Server(s) = b { Some(s) } else { None }).collect();
    let steps: Vec<&String> =
        blocks.iter().filter_map(|b| if let Block::Run(s) = b { Some(s) } else { None }).collect();
    assert_eq!(servers.len(), 1, "the README marks exactly one server block");
    assert!(steps.len() >= 3, "the README marks the tour's blocks ({} found)", steps.len());

    let bin_dir = Path::new(BIN).parent().unwrap().to_path_buf();
    let client = bin_dir.join("onramp-client");
    assert!(client.exists(), "{} is missing: build it with cargo build -p onramp-client", client.display());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let tools = root.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::write(tools.join("cargo"), FAKE_CARGO).unwrap();
    std::fs::set_permissions(tools.join("cargo"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let release = root.join("work/target/release");
    std::fs::create_dir_all(&release).unwrap();
    for name in ["onramp", "onramp-client"] {
        std::os::unix::fs::symlink(bin_dir.join(name), release.join(name)).unwrap();
    }
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let work = root.join("work");
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());

    let ns = netns::Netns::new("tour");
    // `timeout` ends a step that hangs; each shell is its own process group, ended whole.
    let shell = |script: &str, limit: &str| {
        let mut c = ns.command("timeout");
        c.args([limit, "bash", "-c"])
            .arg(script)
            .process_group(0)
            .current_dir(&work)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", &home)
            .env("TOUR_BIN_DIR", &bin_dir)
            .env("LANG", "C.UTF-8");
        c
    };

    let server_log = root.join("server.log");
    let log_file = std::fs::File::create(&server_log).unwrap();
    let mut server = Group(
        shell(servers[0], "600")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap(),
        false,
    );
    let began = Instant::now();
    loop {
        let up = ns.command("curl").args(["-sf", "http://127.0.0.1:8000/api/v1/health"]).output().unwrap();
        if up.status.success() {
            break;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("the tour's server exited ({status}):\n{}", std::fs::read_to_string(&server_log).unwrap());
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "the tour's server did not answer within 60 s:\n{}",
            std::fs::read_to_string(&server_log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut script = String::from("set -euo pipefail\n");
    for (n, step) in steps.iter().enumerate() {
        script.push_str(&format!("echo '>>> tour block {}' >&2\n{step}", n + 1));
    }
    let out = shell(&script, "300").stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = || {
        format!(
            "--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log\n{}",
            std::fs::read_to_string(&server_log).unwrap_or_default()
        )
    };
    assert!(out.status.success(), "the README tour failed ({}):\n{}", out.status, report());
    // curl without --fail prints an API error and goes on: no step may have answered one.
    assert!(!stdout.contains("\"error\""), "a tour step answered an error:\n{}", report());
    // The client enrolled and stored the tour's location.
    assert!(stdout.contains("office"), "the client's locations are missing from the output:\n{}", report());
    // The admin signs in to the web UI with the password the tour set, and sees Jane.
    let sign_in = r#"set -e; jar=$(mktemp)
page=$(curl -sf -c "$jar" http://127.0.0.1:8000/login)
csrf=$(printf '%s' "$page" | sed -n 's/.*name="_csrf" value="\([^"]*\)".*/\1/p' | head -n 1)
curl -s -o /dev/null -w '%{http_code}\n' -b "$jar" -c "$jar" --data-urlencode "_csrf=$csrf" \
  --data-urlencode username=admin --data-urlencode 'password=Adm1n!Passw0rd' http://127.0.0.1:8000/login
curl -sf -b "$jar" http://127.0.0.1:8000/users | grep -c 'data-user="jdoe"'"#;
    let out = ns.command("bash").args(["-c", sign_in]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().collect::<Vec<_>>(), ["303", "1"], "web UI sign-in after the tour: {text}");
    server.end(libc::SIGTERM);
    // No password or token the tour handled reached the server's log.
    let log = std::fs::read_to_string(&server_log).unwrap();
    assert!(!log.contains("Str0ng!Pass"), "the server log holds the tour's password");
    assert!(!log.contains("Adm1n!Passw0rd"), "the server log holds the admin's web UI password");
    for token in stdout.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| w.len() >= 32) {
        assert!(!log.contains(token), "the server log holds a token the tour printed");
    }
}
