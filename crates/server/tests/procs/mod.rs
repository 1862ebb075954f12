//! Processes and certificates for the tests that run `onramp` binaries (included with
//! `mod procs;`).
#![allow(dead_code)]

use std::process::Child;

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

/// A test PKI: one CA for the link and the edge's HTTPS, certificates written as files.
pub struct Pki {
    dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca, ca_pem) = Self::ca(dir.path(), "ca");
        Self::leaf(dir.path(), "edge", &ca, vec!["localhost".into(), "127.0.0.1".into()]);
        Self::leaf(dir.path(), "core", &ca, vec!["onramp-core".into()]);
        // A client certificate from a CA the edge does not trust.
        let (rogue_ca, _) = Self::ca(dir.path(), "rogue-ca");
        Self::leaf(dir.path(), "rogue", &rogue_ca, vec!["onramp-core".into()]);
        Pki { dir, ca_pem }
    }

    fn write(dir: &std::path::Path, name: &str, cert: &rcgen::Certificate, key: &rcgen::KeyPair) {
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    /// A self-signed CA written as NAME.pem/NAME.key; returns it as an issuer and its PEM.
    fn ca(dir: &std::path::Path, name: &str) -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Self::write(dir, name, &cert, &key);
        (rcgen::Issuer::new(params, key), cert.pem())
    }

    fn leaf(dir: &std::path::Path, name: &str, ca: &rcgen::Issuer<'static, rcgen::KeyPair>, sans: Vec<String>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, ca).unwrap();
        Self::write(dir, name, &cert, &key);
    }

    pub fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.path().join(file)
    }

    pub fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap();
        reqwest::Client::builder().add_root_certificate(ca).build().unwrap()
    }
}
