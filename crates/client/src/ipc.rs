//! The local protocol between the unprivileged commands (`connect`, `disconnect`, `status`,
//! the sync daemon) and the privileged `onramp-client service`: one JSON object per line each
//! way, every message carrying `"v": 1`. A line longer than [`MAX_LINE`] is refused.
//!
//! Requests: `{"v":1,"op":"hello"}`, `{"v":1,"op":"connect","tunnel":{...}}`,
//! `{"v":1,"op":"disconnect","instance_id":"..","network_id":1}` (both absent: every tunnel
//! of the caller), `{"v":1,"op":"status"}`.
//! Replies: `{"v":1,"reply":"hello",..}`, `{"v":1,"reply":"connected","interface":..,
//! "change":"created"|"reconfigured"|"unchanged","warnings":[..]}`,
//! `{"v":1,"reply":"disconnected","interfaces":[..]}`, `{"v":1,"reply":"status","tunnels":[..]}`,
//! `{"v":1,"reply":"error","code":..,"message":..}`.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub const VERSION: u32 = 1;
/// The longest request or reply line, in bytes (a connect request is well under 8 KiB).
pub const MAX_LINE: usize = 64 * 1024;
/// Where the service listens unless `ONRAMP_CLIENT_SOCKET` / `--socket` says otherwise.
#[cfg(not(windows))]
pub const DEFAULT_SOCKET: &str = "/run/onramp-client.sock";
/// On Windows a named pipe; a `--socket` without the `\\.\pipe\` prefix names a pipe too.
#[cfg(windows)]
pub const DEFAULT_SOCKET: &str = r"\\.\pipe\onramp-client";
/// The group whose members may use the service, when it exists.
#[cfg(not(windows))]
pub const DEFAULT_GROUP: &str = "onramp";
/// A local group on Windows (`net localgroup "Onramp Users" /add`).
#[cfg(windows)]
pub const DEFAULT_GROUP: &str = "Onramp Users";

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Hello,
    Connect {
        tunnel: TunnelConfig,
    },
    Disconnect {
        #[serde(default)]
        instance_id: Option<String>,
        #[serde(default)]
        network_id: Option<i64>,
    },
    Status,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub v: u32,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Created,
    Reconfigured,
    Unchanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The caller may not use the service.
    Forbidden,
    /// Not a request of this protocol (or too long).
    BadRequest,
    /// A field of the tunnel is not valid.
    Invalid,
    /// The location has no gateway key yet.
    NoGateway,
    /// Setting the tunnel up failed (it was rolled back).
    Failed,
    /// Not available on this platform yet.
    Unsupported,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Body {
    /// `uid`: on Windows the last part (RID) of the caller's user SID, given whole in `sid`.
    Hello {
        uid: u32,
        userspace: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sid: Option<String>,
    },
    Connected {
        interface: String,
        change: Change,
        warnings: Vec<String>,
    },
    Disconnected {
        interfaces: Vec<String>,
    },
    Status {
        tunnels: Vec<TunnelStatus>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Reply {
    pub fn new(body: Body) -> Reply {
        Reply { v: VERSION, body }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::new(Body::Error { code, message: message.into() })
    }
}

/// One live tunnel as the service sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TunnelStatus {
    pub instance_id: String,
    pub network_id: i64,
    pub name: String,
    pub interface: String,
    pub endpoint: String,
    /// Unix seconds of the last handshake with the gateway, if any.
    pub latest_handshake: Option<i64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The structured fields of one location's tunnel, as the caller's own store holds them.
/// The service builds the interface from these fields only, after [`TunnelConfig::validate`].
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct TunnelConfig {
    pub instance_id: String,
    pub network_id: i64,
    /// The location's name (for status and messages).
    pub name: String,
    /// The device's private key, base64.
    pub private_key: String,
    /// The device's addresses: `10.1.0.2` or `10.1.0.2/32`.
    pub addresses: Vec<String>,
    /// The gateway's public key, base64; empty while the location has no gateway.
    pub gateway_key: String,
    /// `host:port` or `[v6]:port`.
    pub endpoint: String,
    pub allowed_ips: Vec<String>,
    /// DNS servers (IP addresses).
    #[serde(default)]
    pub dns: Vec<String>,
    /// DNS search domains.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// Persistent keepalive in seconds; 0 = off.
    pub keepalive: u16,
}

impl std::fmt::Debug for TunnelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelConfig")
            .field("instance_id", &self.instance_id)
            .field("network_id", &self.network_id)
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// An address or network with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `a.b.c.d/n` or `a:b::c/n`; a bare address is a host (/32, /128).
    pub fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => p.parse().ok()?,
            Some(_) => return None,
            None => max,
        };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// The network this prefix covers (host bits cleared), as routes want it.
    pub fn network(self) -> Cidr {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Cidr { addr, prefix: self.prefix }
    }

    pub fn is_default(self) -> bool {
        self.prefix == 0
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A tunnel whose every field was checked; what the service applies.
#[derive(Clone, PartialEq, Eq)]
pub struct ValidTunnel {
    pub private_key: [u8; 32],
    pub gateway_key: [u8; 32],
    pub addresses: Vec<Cidr>,
    pub endpoint_host: String,
    pub endpoint_port: u16,
    pub allowed_ips: Vec<Cidr>,
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub keepalive: u16,
}

impl std::fmt::Debug for ValidTunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidTunnel")
            .field("addresses", &self.addresses)
            .field("endpoint", &(&self.endpoint_host, self.endpoint_port))
            .field("allowed_ips", &self.allowed_ips)
            .finish_non_exhaustive()
    }
}

/// Why a tunnel config was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// The location has no gateway key yet.
    NoGateway(String),
    Field(String),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::NoGateway(name) => write!(
                f,
                "location {name:?} has no gateway yet (its gateway has not reported a key); try again once the administrator has set it up"
            ),
            Invalid::Field(m) => f.write_str(m),
        }
    }
}

fn key(field: &str, s: &str) -> Result<[u8; 32], Invalid> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| Invalid::Field(format!("{field}: not a base64 WireGuard key")))?;
    let k: [u8; 32] = bytes.try_into().map_err(|_| Invalid::Field(format!("{field}: a WireGuard key is 32 bytes")))?;
    if k == [0; 32] {
        return Err(Invalid::Field(format!("{field}: the all-zero key")));
    }
    Ok(k)
}

fn cidrs(field: &str, list: &[String], max: usize) -> Result<Vec<Cidr>, Invalid> {
    if list.len() > max {
        return Err(Invalid::Field(format!("{field}: more than {max} entries")));
    }
    list.iter()
        .map(|s| Cidr::parse(s).ok_or_else(|| Invalid::Field(format!("{field}: {s:?} is not an address with prefix"))))
        .collect()
}

impl TunnelConfig {
    /// Checks every field (keys, CIDRs, endpoint and port, DNS, sizes); no I/O.
    pub fn validate(&self) -> Result<ValidTunnel, Invalid> {
        let printable = |s: &str| s.chars().all(|c| !c.is_control());
        if self.instance_id.is_empty() || self.instance_id.len() > 128 || !printable(&self.instance_id) {
            return Err(Invalid::Field("instance_id: missing or malformed".into()));
        }
        if self.name.len() > 256 || !printable(&self.name) {
            return Err(Invalid::Field("name: too long or not printable".into()));
        }
        if self.gateway_key.trim().is_empty() {
            return Err(Invalid::NoGateway(self.name.clone()));
        }
        let private_key = key("private_key", &self.private_key)?;
        let gateway_key = key("gateway_key", &self.gateway_key)?;
        let addresses = cidrs("addresses", &self.addresses, 16)?;
        if addresses.is_empty() {
            return Err(Invalid::Field("addresses: the device has no address in this location".into()));
        }
        let allowed_ips = cidrs("allowed_ips", &self.allowed_ips, 256)?;
        if allowed_ips.is_empty() {
            return Err(Invalid::Field("allowed_ips: empty".into()));
        }
        let bad_endpoint = || Invalid::Field(format!("endpoint: {:?} is not host:port", self.endpoint));
        let (host, port) = self.endpoint.trim().rsplit_once(':').ok_or_else(bad_endpoint)?;
        let port: u16 = port.parse().map_err(|_| bad_endpoint())?;
        if port == 0 {
            return Err(Invalid::Field("endpoint: port 0".into()));
        }
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let host = onramp_domain::net::parse_host("endpoint", host).map_err(|e| Invalid::Field(e.to_string()))?;
        if self.dns.len() > 16 || self.dns_search.len() > 16 {
            return Err(Invalid::Field("dns: too many entries".into()));
        }
        let dns = self
            .dns
            .iter()
            .map(|d| d.trim().parse::<IpAddr>().map_err(|_| Invalid::Field(format!("dns: {d:?} is not an IP address"))))
            .collect::<Result<Vec<_>, _>>()?;
        for d in &self.dns_search {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !ok {
                return Err(Invalid::Field(format!("dns_search: {d:?} is not a domain")));
            }
        }
        Ok(ValidTunnel {
            private_key,
            gateway_key,
            addresses,
            endpoint_host: host,
            endpoint_port: port,
            allowed_ips,
            dns,
            dns_search: self.dns_search.clone(),
            keepalive: self.keepalive,
        })
    }
}

/// Splits a comma-separated field as the server sends it.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// The tunnel fields of a stored location, with the device's private key.
pub fn tunnel_config(instance_id: &str, c: &onramp_proto::DeviceConfig, private_key: &str) -> TunnelConfig {
    let (dns, dns_search): (Vec<String>, Vec<String>) =
        split_list(c.dns.as_deref().unwrap_or("")).into_iter().partition(|d| d.parse::<IpAddr>().is_ok());
    TunnelConfig {
        instance_id: instance_id.to_owned(),
        network_id: c.network_id,
        name: c.network_name.clone(),
        private_key: private_key.to_owned(),
        addresses: split_list(&c.assigned_ip),
        gateway_key: c.pubkey.trim().to_owned(),
        endpoint: c.endpoint.trim().to_owned(),
        allowed_ips: split_list(&c.allowed_ips),
        dns,
        dns_search,
        // Out-of-range values (the server's i64) turn keepalive off rather than wrap.
        keepalive: u16::try_from(c.keepalive_interval).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TunnelConfig {
        TunnelConfig {
            instance_id: "i1".into(),
            network_id: 1,
            name: "office".into(),
            private_key: crate::keys::generate().private,
            addresses: vec!["10.1.0.2".into()],
            gateway_key: crate::keys::generate().public,
            endpoint: "vpn.example.com:51820".into(),
            allowed_ips: vec!["10.1.0.0/24".into(), "0.0.0.0/0".into()],
            dns: vec!["10.1.0.1".into()],
            dns_search: vec!["corp.example".into()],
            keepalive: 25,
        }
    }

    #[test]
    fn valid_config_parses() {
        let v = config().validate().unwrap();
        assert_eq!(v.addresses, vec![Cidr::parse("10.1.0.2/32").unwrap()]);
        assert_eq!(v.endpoint_port, 51820);
        assert!(v.allowed_ips[1].is_default());
        let mut six = config();
        six.endpoint = "[fd00::1]:51820".into();
        assert_eq!(six.validate().unwrap().endpoint_host, "fd00::1");
    }

    #[test]
    fn each_bad_field_is_named() {
        type Change = fn(&mut TunnelConfig);
        let cases: Vec<(Change, &str)> = vec![
            (|c| c.private_key = "abc".into(), "private_key"),
            (|c| c.private_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(), "private_key"),
            (|c| c.gateway_key = "x\nPostUp = sh".into(), "gateway_key"),
            (|c| c.addresses = vec!["10.1.0.2/33".into()], "addresses"),
            (|c| c.addresses = vec![], "addresses"),
            (|c| c.allowed_ips = vec!["10.0.0.0/8; rm -rf /".into()], "allowed_ips"),
            (|c| c.endpoint = "vpn.example.com:70000".into(), "endpoint"),
            (|c| c.endpoint = "vpn.example.com:0".into(), "endpoint"),
            (|c| c.endpoint = "vpn.example.com".into(), "endpoint"),
            (|c| c.endpoint = "-oProxy=x:1".into(), "endpoint"),
            (|c| c.dns = vec!["ns.example".into()], "dns"),
            (|c| c.dns_search = vec!["a b".into()], "dns_search"),
            (|c| c.instance_id = String::new(), "instance_id"),
        ];
        for (change, field) in cases {
            let mut c = config();
            change(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }

    #[test]
    fn empty_gateway_key_means_no_gateway_yet() {
        let mut c = config();
        c.gateway_key = String::new();
        let e = c.validate().unwrap_err();
        assert_eq!(e, Invalid::NoGateway("office".into()));
        assert!(e.to_string().contains("has no gateway yet"));
    }

    #[test]
    fn networks_and_protocol_lines() {
        assert_eq!(Cidr::parse("10.1.2.3/24").unwrap().network().to_string(), "10.1.0.0/24".replace("1.0", "1.2"));
        assert_eq!(Cidr::parse("fd00::5/64").unwrap().network().to_string(), "fd00::/64");
        assert_eq!(Cidr::parse("1.2.3.4/0").unwrap().network().to_string(), "0.0.0.0/0");
        assert!(Cidr::parse("1.2.3.4/").is_none() && Cidr::parse("1.2.3.4/+1").is_none());
        let line = serde_json::to_string(&Request { v: VERSION, op: Op::Status }).unwrap();
        assert_eq!(line, r#"{"v":1,"op":"status"}"#);
        let r: Reply = serde_json::from_str(r#"{"v":1,"reply":"error","code":"forbidden","message":"no"}"#).unwrap();
        assert!(matches!(r.body, Body::Error { code: ErrorCode::Forbidden, .. }));
        let c = config();
        assert!(!format!("{c:?}").contains(&c.private_key), "Debug keeps the private key out");
        let d: Request = serde_json::from_str(r#"{"v":1,"op":"disconnect"}"#).unwrap();
        assert!(matches!(d.op, Op::Disconnect { instance_id: None, network_id: None }));
    }
}
