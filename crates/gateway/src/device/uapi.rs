//! The cross-platform WireGuard configuration protocol (`get=1` / `set=1` on
//! /var/run/wireguard/IFACE.sock, as `wg` and wireguard-go speak it), as pure data: a `set`
//! request parsed and checked whole before anything is applied, and a `get` answer
//! formatted. No I/O here.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// errno values the protocol answers with.
pub const EINVAL: i32 = 22;
pub const EADDRINUSE: i32 = 98;
pub const EPROTO: i32 = 71;

/// A `set=1` request: only what it names changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SetRequest {
    /// `Some(None)`: remove the key (all zeros).
    pub private_key: Option<Option<[u8; 32]>>,
    pub listen_port: Option<u16>,
    pub fwmark: Option<u32>,
    pub replace_peers: bool,
    pub peers: Vec<PeerChange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChange {
    pub key: [u8; 32],
    pub remove: bool,
    pub update_only: bool,
    /// `Some(None)`: remove the preshared key.
    pub preshared_key: Option<Option<[u8; 32]>>,
    pub endpoint: Option<SocketAddr>,
    /// `Some(0)` turns keepalives off.
    pub keepalive: Option<u16>,
    pub replace_allowed_ips: bool,
    pub allowed_ips: Vec<(IpAddr, u8)>,
}

impl PeerChange {
    fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            remove: false,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            keepalive: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
        }
    }
}

/// A request the device refuses: the errno to answer and why (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub errno: i32,
    pub why: String,
}

fn invalid(why: String) -> Refused {
    Refused { errno: EINVAL, why }
}

pub fn parse_key(name: &str, hex: &str) -> Result<[u8; 32], Refused> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).map_err(|_| invalid(format!("{name} is not 64 hex digits")))?;
    Ok(out)
}

fn parse_bool(name: &str, v: &str) -> Result<bool, Refused> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(format!("{name}={v:?}: expected true or false"))),
    }
}

/// `10.0.0.2/32`; the prefix must fit the family. Host bits are kept here (the route
/// table truncates them, as WireGuard does).
pub fn parse_allowed_ip(v: &str) -> Result<(IpAddr, u8), Refused> {
    let bad = || invalid(format!("allowed_ip={v:?}: expected ADDRESS/PREFIX"));
    let (a, p) = v.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok((addr, prefix))
}

/// Parses the lines of a `set=1` request (after `set=1`, up to the empty line).
pub fn parse_set<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<SetRequest, Refused> {
    let mut req = SetRequest::default();
    for line in lines {
        // The line itself is not quoted back: it could hold key material.
        let (k, v) = line.split_once('=').ok_or_else(|| invalid("a line is not KEY=VALUE".into()))?;
        if k == "public_key" {
            req.peers.push(PeerChange::new(parse_key(k, v)?));
            continue;
        }
        match (req.peers.last_mut(), k) {
            (None, "private_key") => {
                let key = parse_key(k, v)?;
                req.private_key = Some((key != [0; 32]).then_some(key));
            }
            (None, "listen_port") => {
                req.listen_port = Some(v.parse().map_err(|_| invalid(format!("listen_port={v:?}")))?);
            }
            (None, "fwmark") => req.fwmark = Some(v.parse().map_err(|_| invalid(format!("fwmark={v:?}")))?),
            (None, "replace_peers") => req.replace_peers = parse_bool(k, v)?,
            (Some(p), "remove") => p.remove = parse_bool(k, v)?,
            (Some(p), "update_only") => p.update_only = parse_bool(k, v)?,
            (Some(p), "preshared_key") => {
                let key = parse_key(k, v)?;
                p.preshared_key = Some((key != [0; 32]).then_some(key));
            }
            (Some(p), "endpoint") => {
                p.endpoint = Some(v.parse().map_err(|_| invalid(format!("endpoint={v:?}: expected IP:PORT")))?);
            }
            (Some(p), "persistent_keepalive_interval") => {
                p.keepalive = Some(v.parse().map_err(|_| invalid(format!("persistent_keepalive_interval={v:?}")))?);
            }
            (Some(p), "replace_allowed_ips") => p.replace_allowed_ips = parse_bool(k, v)?,
            (Some(p), "allowed_ip") => p.allowed_ips.push(parse_allowed_ip(v)?),
            (Some(_), "protocol_version") if v == "1" => {}
            (Some(_), "protocol_version") => {
                return Err(Refused { errno: EPROTO, why: format!("protocol_version={v}") })
            }
            (None, _) => return Err(invalid(format!("unknown interface key {k:?}"))),
            (Some(_), _) => return Err(invalid(format!("unknown peer key {k:?}"))),
        }
    }
    Ok(req)
}

/// One peer as `get=1` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub key: [u8; 32],
    pub preshared_key: Option<[u8; 32]>,
    pub endpoint: Option<SocketAddr>,
    pub keepalive: Option<u16>,
    pub allowed_ips: Vec<(IpAddr, u8)>,
    /// Since the Unix epoch.
    pub last_handshake: Option<std::time::Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Appends one peer's `get=1` lines to `out`.
pub fn write_peer(out: &mut String, p: &PeerInfo) {
    let _ = writeln!(out, "public_key={}", hex::encode(p.key));
    if let Some(k) = p.preshared_key {
        let _ = writeln!(out, "preshared_key={}", hex::encode(k));
    }
    if let Some(e) = p.endpoint {
        let _ = writeln!(out, "endpoint={e}");
    }
    let _ = writeln!(out, "persistent_keepalive_interval={}", p.keepalive.unwrap_or(0));
    for (a, c) in &p.allowed_ips {
        let _ = writeln!(out, "allowed_ip={a}/{c}");
    }
    let h = p.last_handshake.unwrap_or_default();
    let _ = writeln!(out, "last_handshake_time_sec={}", h.as_secs());
    let _ = writeln!(out, "last_handshake_time_nsec={}", h.subsec_nanos());
    let _ = writeln!(out, "rx_bytes={}", p.rx_bytes);
    let _ = writeln!(out, "tx_bytes={}", p.tx_bytes);
    out.push_str("protocol_version=1\n");
}

/// The interface lines of a `get=1` answer.
pub fn write_interface(out: &mut String, private_key: Option<&[u8; 32]>, listen_port: u16, fwmark: u32) {
    if let Some(k) = private_key {
        let _ = writeln!(out, "private_key={}", hex::encode(k));
    }
    let _ = writeln!(out, "listen_port={listen_port}");
    if fwmark != 0 {
        let _ = writeln!(out, "fwmark={fwmark}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn a_whole_request_parses_with_flags_per_peer() {
        let text = format!(
            "private_key={K1}\nlisten_port=51820\nreplace_peers=true\npublic_key={K2}\nremove=true\n\
             public_key={K1}\nendpoint=[fd00::1]:51820\npersistent_keepalive_interval=25\n\
             replace_allowed_ips=true\nallowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\nprotocol_version=1"
        );
        let r = parse_set(text.lines()).unwrap();
        assert_eq!(r.private_key, Some(Some([0x11; 32])));
        assert_eq!(r.listen_port, Some(51820));
        assert!(r.replace_peers);
        assert_eq!(r.peers.len(), 2);
        // `remove` belongs to the first peer only (boringtun carried it over to the next).
        assert!(r.peers[0].remove);
        assert!(!r.peers[1].remove);
        assert_eq!(r.peers[1].endpoint, Some("[fd00::1]:51820".parse().unwrap()));
        assert_eq!(r.peers[1].keepalive, Some(25));
        assert!(r.peers[1].replace_allowed_ips);
        assert_eq!(r.peers[1].allowed_ips, vec![("10.0.0.2".parse().unwrap(), 32), ("fd00::2".parse().unwrap(), 128)]);
    }

    #[test]
    fn zero_keys_mean_removal() {
        let z = "0".repeat(64);
        let r = parse_set(format!("private_key={z}\npublic_key={K1}\npreshared_key={z}").lines()).unwrap();
        assert_eq!(r.private_key, Some(None));
        assert_eq!(r.peers[0].preshared_key, Some(None));
    }

    #[test]
    fn each_bad_line_is_refused_with_a_reason() {
        for (text, errno, needle) in [
            ("listen_port=70000".to_owned(), EINVAL, "listen_port"),
            ("private_key=abc".to_owned(), EINVAL, "64 hex"),
            ("remove=true".to_owned(), EINVAL, "unknown interface key"),
            (format!("public_key={K1}\nallowed_ip=10.0.0.1/33"), EINVAL, "allowed_ip"),
            (format!("public_key={K1}\nallowed_ip=10.0.0.1"), EINVAL, "allowed_ip"),
            (format!("public_key={K1}\nendpoint=host:1"), EINVAL, "endpoint"),
            (format!("public_key={K1}\nremove=yes"), EINVAL, "true or false"),
            (format!("public_key={K1}\nprotocol_version=2"), EPROTO, "protocol_version"),
            (format!("public_key={K1}\nnonsense"), EINVAL, "KEY=VALUE"),
            (format!("public_key={K1}\nlisten_port=1"), EINVAL, "unknown peer key"),
        ] {
            let e = parse_set(text.lines()).unwrap_err();
            assert_eq!(e.errno, errno, "{text}");
            assert!(e.why.contains(needle), "{text}: {}", e.why);
        }
    }

    #[test]
    fn a_peer_is_written_as_wg_reads_it() {
        let mut s = String::new();
        write_interface(&mut s, Some(&[0x11; 32]), 51820, 0);
        write_peer(
            &mut s,
            &PeerInfo {
                key: [0x22; 32],
                preshared_key: None,
                endpoint: Some("10.1.0.2:40000".parse().unwrap()),
                keepalive: None,
                allowed_ips: vec![("10.0.0.2".parse().unwrap(), 32)],
                last_handshake: Some(std::time::Duration::new(1_700_000_000, 5)),
                rx_bytes: 10,
                tx_bytes: 20,
            },
        );
        assert_eq!(
            s,
            format!(
                "private_key={K1}\nlisten_port=51820\npublic_key={K2}\nendpoint=10.1.0.2:40000\n\
                 persistent_keepalive_interval=0\nallowed_ip=10.0.0.2/32\nlast_handshake_time_sec=1700000000\n\
                 last_handshake_time_nsec=5\nrx_bytes=10\ntx_bytes=20\nprotocol_version=1\n"
            )
        );
    }

    proptest! {
        /// Whatever arrives on the socket, parsing answers (never panics).
        #[test]
        fn parsing_never_panics(lines in proptest::collection::vec("[a-z_]{0,12}=?[0-9a-f:./\\[\\]]{0,70}", 0..12)) {
            let _ = parse_set(lines.iter().map(String::as_str));
        }

        /// A peer written by `write_peer` reads back through `parse_set` (the fields both
        /// share).
        #[test]
        fn written_peers_parse_back(key in any::<[u8; 32]>(), port in 1u16.., ka in 0u16..,
                                    ips in proptest::collection::vec((any::<[u8; 4]>(), 0u8..=32), 0..4)) {
            let ips: Vec<(IpAddr, u8)> = ips.into_iter().map(|(a, c)| (IpAddr::from(a), c)).collect();
            let mut s = String::new();
            write_peer(&mut s, &PeerInfo { key, preshared_key: None, endpoint: Some(SocketAddr::from(([10, 0, 0, 1], port))),
                keepalive: Some(ka), allowed_ips: ips.clone(), last_handshake: None, rx_bytes: 0, tx_bytes: 0 });
            let settable = s.lines().filter(|l| !l.starts_with("last_handshake") && !l.starts_with("rx_") && !l.starts_with("tx_"));
            let r = parse_set(settable).unwrap();
            prop_assert_eq!(r.peers.len(), 1);
            prop_assert_eq!(r.peers[0].key, key);
            prop_assert_eq!(r.peers[0].keepalive, Some(ka));
            prop_assert_eq!(&r.peers[0].allowed_ips, &ips);
        }
    }
}
