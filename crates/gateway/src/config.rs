//! `onramp gateway` settings: each a flag and an `ONRAMP_GATEWAY_*` environment variable
//! (flags win). The token comes only from a file or the environment, never from argv,
//! which every local user can read.

use crate::wg::Mode;
use anyhow::{bail, Context};
use onramp_link::gateway::GatewayToken;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const TOKEN_ENV: &str = "ONRAMP_GATEWAY_TOKEN";

#[derive(clap::Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Core's gateway listener: https://core.internal:50055, or http:// on a trusted network
    #[arg(long, env = "ONRAMP_GATEWAY_CORE_URL", value_name = "URL")]
    pub core_url: String,
    /// File holding the location's gateway token (or set ONRAMP_GATEWAY_TOKEN; the token
    /// itself is never accepted on the command line)
    #[arg(long, env = "ONRAMP_GATEWAY_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// WireGuard interface name (at most 15 characters)
    #[arg(long, env = "ONRAMP_GATEWAY_INTERFACE", value_name = "NAME", default_value = "onramp0")]
    pub interface: String,
    /// Directory of the gateway's key pair (0700; key file 0600)
    /// (`--data-dir` belongs to core, hence the longer name.)
    #[arg(long, env = "ONRAMP_GATEWAY_DATA_DIR", value_name = "DIR", default_value = "./onramp-gateway")]
    pub gateway_data_dir: PathBuf,
    /// Use userspace WireGuard even where the kernel module exists
    #[arg(long, env = "ONRAMP_GATEWAY_USERSPACE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub userspace: bool,
    /// Serve a health check here: 200 while linked to core with its configuration applied, 503 otherwise
    #[arg(long, env = "ONRAMP_GATEWAY_HEALTH_ADDR", value_name = "ADDR")]
    pub health_addr: Option<SocketAddr>,
    /// CA certificate (PEM) that signed core's gateway listener certificate; needed for https://
    #[arg(long, env = "ONRAMP_GATEWAY_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Make a new key pair and have core replace the location's recorded gateway key
    #[arg(long)]
    pub rotate_key: bool,
    /// NAT traffic from the tunnel networks leaving by other interfaces (iptables
    /// MASQUERADE; removed on exit)
    #[arg(long, env = "ONRAMP_GATEWAY_MASQUERADE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub masquerade: bool,
    /// Seconds between stats reports to core
    #[arg(long, env = "ONRAMP_GATEWAY_STATS_INTERVAL", value_name = "SECS", default_value_t = 5)]
    pub stats_interval: u64,
}

/// Resolved settings. `Debug` shows no secret (the token type redacts itself).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub core_url: String,
    pub token: GatewayToken,
    pub interface: String,
    pub data_dir: PathBuf,
    pub mode: Mode,
    pub health_addr: Option<SocketAddr>,
    /// PEM of the CA that signed core's certificate.
    pub ca: Option<Vec<u8>>,
    pub rotate_key: bool,
    pub masquerade: bool,
    pub stats_interval: Duration,
}

/// Linux interface names: 1..=15 bytes, no '/', no whitespace; kept to a plain charset.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("{name:?} must be 1 to 15 characters long"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) || name == "." || name == ".." {
        return Err(format!("{name:?} may hold only letters, digits, '_', '.' and '-'"));
    }
    Ok(())
}

impl GatewayArgs {
    /// Resolves the settings; `env_token` is `ONRAMP_GATEWAY_TOKEN` as the caller read it.
    pub fn resolve(&self, env_token: Option<String>) -> anyhow::Result<GatewayConfig> {
        let url = url::Url::parse(&self.core_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .with_context(|| {
                format!(
                    "core_url (ONRAMP_GATEWAY_CORE_URL): {:?} is not a URL like https://core.internal:50055{}",
                    self.core_url,
                    // Without a scheme, "core:50055" would parse with the scheme "core".
                    if self.core_url.contains("://") { "" } else { "; add https:// in front" }
                )
            })?;
        let token = match (&self.token_file, env_token.filter(|t| !t.trim().is_empty())) {
            (Some(_), Some(_)) => {
                bail!("token: both ONRAMP_GATEWAY_TOKEN_FILE (--token-file) and {TOKEN_ENV} are set; keep one")
            }
            (None, None) => bail!(
                "token: set ONRAMP_GATEWAY_TOKEN_FILE (--token-file) to a file holding the location's gateway \
                 token, or {TOKEN_ENV} (create one with: onramp admin gateway-token)"
            ),
            (None, Some(t)) => t.trim().to_owned(),
            (Some(f), None) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("token_file (ONRAMP_GATEWAY_TOKEN_FILE): cannot read {}", f.display()))?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(f).map(|m| m.permissions().mode()).unwrap_or(0);
                    if mode & 0o077 != 0 {
                        tracing::warn!(file = %f.display(), "the gateway token file is readable by others; chmod 600 it");
                    }
                }
                let t = text.trim();
                if t.is_empty() {
                    bail!("token_file (ONRAMP_GATEWAY_TOKEN_FILE): {} is empty", f.display());
                }
                t.to_owned()
            }
        };
        if token.chars().any(|c| !c.is_ascii_graphic()) {
            bail!("token: the gateway token may hold only printable ASCII without spaces");
        }
        check_interface_name(&self.interface)
            .map_err(|e| anyhow::anyhow!("interface (ONRAMP_GATEWAY_INTERFACE): {e}"))?;
        let ca = match &self.ca_file {
            Some(f) => {
                let pem = std::fs::read(f)
                    .with_context(|| format!("ca_file (ONRAMP_GATEWAY_CA_FILE): cannot read {}", f.display()))?;
                if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
                    bail!("ca_file (ONRAMP_GATEWAY_CA_FILE): {} is not a PEM file", f.display());
                }
                Some(pem)
            }
            None => None,
        };
        if url.scheme() == "https" && ca.is_none() {
            bail!("ca_file (ONRAMP_GATEWAY_CA_FILE): needed to verify core's certificate at {}", self.core_url);
        }
        if !(1..=3600).contains(&self.stats_interval) {
            bail!("stats_interval (ONRAMP_GATEWAY_STATS_INTERVAL): {} is outside 1..=3600", self.stats_interval);
        }
        Ok(GatewayConfig {
            core_url: self.core_url.trim_end_matches('/').to_owned(),
            token: GatewayToken::new(token),
            interface: self.interface.clone(),
            data_dir: self.gateway_data_dir.clone(),
            mode: if self.userspace { Mode::Userspace } else { Mode::Auto },
            health_addr: self.health_addr,
            ca,
            rotate_key: self.rotate_key,
            masquerade: self.masquerade,
            stats_interval: Duration::from_secs(self.stats_interval),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: GatewayArgs,
    }

    fn args(argv: &[&str]) -> GatewayArgs {
        let mut v = vec!["gw"];
        v.extend_from_slice(argv);
        Cli::try_parse_from(v).unwrap().args
    }

    #[test]
    fn token_from_file_or_env_never_both() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("token");
        std::fs::write(&f, "abc123\n").unwrap();
        let a = args(&["--core-url", "http://core:50055", "--token-file", f.to_str().unwrap()]);
        let c = a.resolve(None).unwrap();
        assert!(!format!("{c:?}").contains("abc123"), "Debug hides the token");
        assert_eq!(c.interface, "onramp0");
        assert_eq!(c.mode, Mode::Auto);
        assert_eq!(c.stats_interval, Duration::from_secs(5));
        let e = a.resolve(Some("envtok".into())).unwrap_err().to_string();
        assert!(e.contains("keep one"), "{e}");
        let a = args(&["--core-url", "http://core:50055"]);
        assert!(a.resolve(Some("envtok".into())).is_ok());
        let e = a.resolve(None).unwrap_err().to_string();
        assert!(e.contains("ONRAMP_GATEWAY_TOKEN_FILE") && e.contains("ONRAMP_GATEWAY_TOKEN"), "{e}");
        std::fs::write(&f, "  \n").unwrap();
        let a = args(&["--core-url", "http://core:50055", "--token-file", f.to_str().unwrap()]);
        assert!(a.resolve(None).unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn errors_name_the_setting() {
        let bad = |argv: &[&str], needle: &str| {
            let e = args(argv).resolve(Some("t".into())).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        bad(&["--core-url", "core:50055"], "ONRAMP_GATEWAY_CORE_URL");
        bad(&["--core-url", "https://core:50055"], "ONRAMP_GATEWAY_CA_FILE");
        bad(&["--core-url", "http://c:1", "--interface", "much-too-long-name0"], "ONRAMP_GATEWAY_INTERFACE");
        bad(&["--core-url", "http://c:1", "--interface", "a/b"], "ONRAMP_GATEWAY_INTERFACE");
        bad(&["--core-url", "http://c:1", "--stats-interval", "0"], "ONRAMP_GATEWAY_STATS_INTERVAL");
        bad(&["--core-url", "http://c:1", "--ca-file", "/nonexistent/ca.pem"], "ONRAMP_GATEWAY_CA_FILE");
        let c = args(&["--core-url", "http://c:1", "--userspace", "--masquerade", "--stats-interval", "1"])
            .resolve(Some("t".into()))
            .unwrap();
        assert_eq!((c.mode, c.masquerade, c.stats_interval), (Mode::Userspace, true, Duration::from_secs(1)));
    }
}
