//! Processes and certificates for the tests that run `onramp` binaries (included with
//! `mod procs;`).
#![allow(dead_code)]

use std::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_onramp");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn stop(mut self) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// A test PKI made the way the README tells an administrator to: `onramp admin
/// link-certs` (ca, edge, core), plus certificates no real core holds: "rogue" from
/// another CA, and "impostor", a client certificate from the same CA for another name.
pub struct Pki {
    dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        link_certs(dir.path(), "onramp-core");
        let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        // A client certificate from a CA the edge does not trust: another run's core.
        let other = dir.path().join("other");
        link_certs(&other, "onramp-core");
        for ext in ["pem", "key"] {
            std::fs::copy(other.join(format!("core.{ext}")), dir.path().join(format!("rogue.{ext}"))).unwrap();
        }
        Self::impostor(dir.path());
        Pki { dir, ca_pem }
    }

    /// A client certificate signed by the link CA but not for onramp-core. The issuer is
    /// rebuilt from ca.key with the subject link-certs gives its CA.
    fn impostor(dir: &std::path::Path) {
        let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
        let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
        ca.distinguished_name.push(rcgen::DnType::CommonName, "Onramp link CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["not-core".to_owned()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("impostor.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("impostor.key"), key.serialize_pem()).unwrap();
    }

    pub fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.path().join(file)
    }

    pub fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap();
        reqwest::Client::builder().add_root_certificate(ca).build().unwrap()
    }
}

/// Runs `onramp admin link-certs` into `out` for an edge reached as localhost / 127.0.0.1,
/// and checks what it promises: key files 0600, settings printed for both sides.
pub fn link_certs(out: &std::path::Path, core_name: &str) -> String {
    let cwd = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["admin", "link-certs", "--out"])
        .arg(out)
        .args(["--edge-name", "localhost", "--edge-name", "127.0.0.1", "--core-name", core_name])
        .args(["--gateway-name", "localhost"])
        // No database is needed, and none may be made: run it somewhere with no data.
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(o.status.success(), "link-certs: {}{stdout}", String::from_utf8_lossy(&o.stderr));
    use std::os::unix::fs::PermissionsExt;
    for key in ["ca.key", "edge.key", "core.key", "gateway.key"] {
        let mode = std::fs::metadata(out.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    for setting in ["ONRAMP_LINK_CORE_NAME=", "ONRAMP_EDGE_URLS=https://localhost:", "ONRAMP_GATEWAY_CA_FILE="] {
        assert!(stdout.contains(setting), "{setting} missing from:\n{stdout}");
    }
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0, "link-certs wrote into the working directory");
    stdout
}
