//! `onramp admin link-certs`: a private CA and the certificates of the core <-> edge link
//! (mutual TLS) and, optionally, of core's gateway listener, so that a split deployment
//! needs no openssl recipe.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct LinkCertsArgs {
    /// Directory to write into (created 0700; keys are 0600). Existing files are never
    /// overwritten.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Name core dials the edge by (the host in ONRAMP_EDGE_URLS); repeat for more names.
    /// An IP address works too.
    #[arg(long = "edge-name", value_name = "HOST", required = true)]
    edge_names: Vec<String>,
    /// Name in core's client certificate, which the edge checks (ONRAMP_LINK_CORE_NAME).
    #[arg(long, value_name = "NAME", default_value = "onramp-core")]
    core_name: String,
    /// Also a server certificate for core's gateway listener, for the name gateways dial
    /// (the host in their ONRAMP_GATEWAY_CORE_URL); repeat for more names.
    #[arg(long = "gateway-name", value_name = "HOST")]
    gateway_names: Vec<String>,
    /// Validity of the certificates, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 825)]
    days: u32,
}

/// What a leaf certificate is for.
#[derive(Clone, Copy)]
enum Usage {
    Server,
    Client,
}

struct Pem {
    cert: String,
    key: String,
}

/// The certificates as PEM, by file stem ("ca", "edge", "core", "gateway").
fn make(args: &LinkCertsArgs) -> anyhow::Result<Vec<(&'static str, Pem)>> {
    use chrono::Datelike;
    let date = |t: chrono::DateTime<chrono::Utc>| rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8);
    let now = chrono::Utc::now();
    // A day of slack for clocks that lag behind the one that issued the certificate.
    let not_before = date(now - chrono::Duration::days(1));
    let not_after = date(now + chrono::Duration::days(i64::from(args.days)));

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "Onramp link CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key)?;
    let mut out = vec![("ca", Pem { cert: ca_cert.pem(), key: ca_key.serialize_pem() })];
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |names: &[String], cn: &str, usage: Usage| -> anyhow::Result<Pem> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(names.to_vec()).with_context(|| format!("{names:?}: not valid names"))?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // One purpose each: the edge's certificate cannot pose as core's client, and
        // core's cannot serve as an edge.
        p.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        p.not_before = not_before;
        p.not_after = not_after;
        let cert = p.signed_by(&key, &issuer)?;
        Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
    };
    out.push(("edge", leaf(&args.edge_names, &args.edge_names[0], Usage::Server)?));
    out.push(("core", leaf(std::slice::from_ref(&args.core_name), &args.core_name, Usage::Client)?));
    if !args.gateway_names.is_empty() {
        out.push(("gateway", leaf(&args.gateway_names, &args.gateway_names[0], Usage::Server)?));
    }
    Ok(out)
}

fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    let ok = name.parse::<std::net::IpAddr>().is_ok() || rustls::pki_types::DnsName::try_from(name).is_ok();
    if !ok {
        anyhow::bail!("{what} {name:?} is not a host name or IP address (a name such as edge.example.com)");
    }
    Ok(())
}

/// Writes `bytes` to a new file only (never replacing one), with `mode` from the start.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = o.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))
}

pub fn run(args: LinkCertsArgs) -> anyhow::Result<()> {
    for n in &args.edge_names {
        check_name("--edge-name", n)?;
    }
    for n in &args.gateway_names {
        check_name("--gateway-name", n)?;
    }
    if rustls::pki_types::DnsName::try_from(args.core_name.as_str()).is_err() {
        anyhow::bail!("--core-name {:?} is not a DNS name (such as onramp-core)", args.core_name);
    }
    if args.days == 0 {
        anyhow::bail!("--days must be at least 1");
    }
    let pems = make(&args)?;
    let dir = &args.out;
    // Check every target first, so a half-written set never mixes with an older one.
    for (stem, _) in &pems {
        for ext in ["pem", "key"] {
            let p = dir.join(format!("{stem}.{ext}"));
            if p.exists() {
                anyhow::bail!("{} already exists; choose another --out directory", p.display());
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    for (stem, pem) in &pems {
        write_new(&dir.join(format!("{stem}.pem")), pem.cert.as_bytes(), 0o644)?;
        write_new(&dir.join(format!("{stem}.key")), pem.key.as_bytes(), 0o600)?;
    }
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    let d = abs.display();
    let edge = &args.edge_names[0];
    println!("Wrote the link CA and certificates to {d}.");
    println!("ca.key signs certificates only: keep it offline; neither side needs it.");
    println!();
    println!("# On the edge host (copy ca.pem, edge.pem, edge.key):");
    println!("ONRAMP_LINK_CERT_FILE={d}/edge.pem");
    println!("ONRAMP_LINK_KEY_FILE={d}/edge.key");
    println!("ONRAMP_LINK_CA_FILE={d}/ca.pem");
    println!("ONRAMP_LINK_CORE_NAME={}", args.core_name);
    println!();
    println!("# On the core host (copy ca.pem, core.pem, core.key):");
    println!("ONRAMP_EDGE_URLS=https://{}:50051", url_host(edge));
    println!("ONRAMP_LINK_CA_FILE={d}/ca.pem");
    println!("ONRAMP_LINK_CERT_FILE={d}/core.pem");
    println!("ONRAMP_LINK_KEY_FILE={d}/core.key");
    if let Some(g) = args.gateway_names.first() {
        println!("ONRAMP_GATEWAY_TLS_CERT_FILE={d}/gateway.pem");
        println!("ONRAMP_GATEWAY_TLS_KEY_FILE={d}/gateway.key");
        println!();
        println!("# On each gateway host (copy ca.pem):");
        println!("ONRAMP_GATEWAY_CORE_URL=https://{}:50055", url_host(g));
        println!("ONRAMP_GATEWAY_CA_FILE={d}/ca.pem");
    }
    Ok(())
}

/// An IPv6 address goes in brackets inside a URL.
fn url_host(h: &str) -> String {
    if h.contains(':') {
        format!("[{h}]")
    } else {
        h.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_the_ca_then_edge_and_core() {
        let args = LinkCertsArgs {
            out: PathBuf::new(),
            edge_names: vec!["edge.example.com".into(), "127.0.0.1".into()],
            core_name: "onramp-core".into(),
            gateway_names: vec![],
            days: 30,
        };
        let pems = make(&args).unwrap();
        let names: Vec<_> = pems.iter().map(|(s, _)| *s).collect();
        assert_eq!(names, ["ca", "edge", "core"]);
        // Whether the link accepts them is the split test's business (tests/split.rs).
        for (_, p) in &pems {
            assert_eq!(p.cert.matches("BEGIN CERTIFICATE").count(), 1);
            assert!(p.key.contains("PRIVATE KEY"));
        }
    }
}
