//! VPN location addressing: a location has one or more interface addresses written as
//! `gateway/prefix` (e.g. `10.10.0.1/24`); each device gets one address in every subnet.

use crate::ValidationError;
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;

/// One location subnet with the gateway's own address inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocationSubnet {
    pub gateway: IpAddr,
    pub net: IpNet,
}

/// Whether two networks share an address (one contains the other's network address).
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first of `mine` that overlaps a network of one of `others` (named): (name, theirs, mine).
pub fn first_overlap<'a>(mine: &[IpNet], others: &'a [(String, Vec<IpNet>)]) -> Option<(&'a str, IpNet, IpNet)> {
    mine.iter().find_map(|m| {
        others.iter().find_map(|(name, nets)| nets.iter().find(|n| overlaps(m, n)).map(|n| (name.as_str(), *n, *m)))
    })
}

impl LocationSubnet {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ValidationError> {
        let with_prefix: IpNet = s.trim().parse().map_err(|_| {
            ValidationError::new(field, format!("invalid address {s:?}: expected CIDR like 10.10.0.1/24"))
        })?;
        let net = with_prefix.trunc();
        let gateway = with_prefix.addr();
        let sub = Self { gateway, net };
        if sub.capacity() == 0 {
            return Err(ValidationError::new(
                field,
                format!("subnet {net} has no room for devices; use a prefix of /30 or shorter (IPv6 /126)"),
            ));
        }
        if gateway == net.network() || (matches!(net, IpNet::V4(_)) && gateway == net.broadcast()) {
            return Err(ValidationError::new(
                field,
                format!(
                    "{gateway} is the network or broadcast address of {net}; give the gateway's own address, e.g. {}",
                    first_host(net)
                ),
            ));
        }
        Ok(sub)
    }

    /// Addresses a device could ever get (excludes network, broadcast and gateway).
    pub fn capacity(&self) -> u128 {
        let host_bits = u32::from(self.net.max_prefix_len() - self.net.prefix_len());
        let total: u128 = if host_bits >= 127 { u128::MAX } else { 1u128 << host_bits };
        let reserved = match self.net {
            IpNet::V4(_) => 3, // network, broadcast, gateway
            IpNet::V6(_) => 2, // subnet-router anycast (network), gateway
        };
        total.saturating_sub(reserved)
    }

    /// Text form `10.10.0.1/24` as stored and shown.
    pub fn to_cidr_string(&self) -> String {
        format!("{}/{}", self.gateway, self.net.prefix_len())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.net.contains(&ip)
    }

    fn is_reserved(&self, ip: IpAddr) -> bool {
        ip == self.gateway
            || ip == self.net.network()
            || (matches!(self.net, IpNet::V4(_)) && ip == self.net.broadcast())
    }

    /// Is `ip` a usable device address in this subnet (inside, and not reserved)?
    pub fn is_assignable(&self, ip: IpAddr) -> bool {
        self.contains(ip) && !self.is_reserved(ip)
    }

    /// The lowest assignable address not in `used`; `None` when the subnet is full.
    /// Scans in memory, so allocation costs no query per candidate.
    pub fn allocate(&self, used: &HashSet<IpAddr>) -> Option<IpAddr> {
        self.net.hosts().find(|ip| !self.is_reserved(*ip) && !used.contains(ip))
    }
}

fn first_host(net: IpNet) -> IpAddr {
    net.hosts().next().unwrap_or(net.network())
}

/// Parses a comma-separated (or list of) CIDRs, e.g. allowed IPs `10.0.0.0/8, 0.0.0.0/0`.
pub fn parse_cidr_list(field: &'static str, items: &[String]) -> Result<Vec<IpNet>, ValidationError> {
    items
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ValidationError::new(field, format!("invalid CIDR {s:?}")))
        })
        .collect()
}

/// DNS setting: comma-separated IP addresses and/or search domains.
pub fn parse_dns(field: &'static str, s: &str) -> Result<String, ValidationError> {
    let parts: Vec<&str> = s.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(ValidationError::new(field, "must not be empty when given"));
    }
    for p in &parts {
        let is_ip = p.parse::<IpAddr>().is_ok();
        let is_domain = p.len() <= 253
            && p.split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !is_ip && !is_domain {
            return Err(ValidationError::new(field, format!("{p:?} is neither an IP address nor a search domain")));
        }
    }
    Ok(parts.join(", "))
}

/// Endpoint host: a DNS name or IP address (no scheme, no port).
pub fn parse_host(field: &'static str, s: &str) -> Result<String, ValidationError> {
    let t = s.trim();
    if t.parse::<IpAddr>().is_ok() {
        return Ok(t.to_owned());
    }
    let ok = !t.is_empty()
        && t.len() <= 253
        && t.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(ValidationError::new(
            field,
            format!("invalid host {t:?}: give a DNS name or IP address without scheme or port"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn overlapping_subnets_are_found_with_the_other_name() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        let others = vec![("office".to_owned(), vec![n("10.1.0.0/24")]), ("lab".to_owned(), vec![n("10.2.0.0/16")])];
        assert_eq!(first_overlap(&[n("10.3.0.0/24")], &others), None);
        assert_eq!(
            first_overlap(&[n("10.1.0.128/25")], &others),
            Some(("office", n("10.1.0.0/24"), n("10.1.0.128/25")))
        );
        assert_eq!(first_overlap(&[n("10.0.0.0/8")], &others).map(|o| o.0), Some("office"));
        assert_eq!(first_overlap(&[n("10.2.5.0/24")], &others).map(|o| o.0), Some("lab"));
        assert!(!overlaps(&n("fd00::/64"), &n("10.0.0.0/8")));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_allocate_v4() {
        let s = LocationSubnet::parse("address", "10.10.0.1/24").unwrap();
        assert_eq!(s.net.to_string(), "10.10.0.0/24");
        assert_eq!(s.gateway, ip("10.10.0.1"));
        assert_eq!(s.capacity(), 253);
        let mut used = HashSet::new();
        assert_eq!(s.allocate(&used), Some(ip("10.10.0.2")));
        used.insert(ip("10.10.0.2"));
        assert_eq!(s.allocate(&used), Some(ip("10.10.0.3")));
    }

    #[test]
    fn gateway_in_middle_is_skipped() {
        let s = LocationSubnet::parse("a", "10.0.0.5/29").unwrap();
        let mut used = HashSet::new();
        let mut got = vec![];
        while let Some(a) = s.allocate(&used) {
            used.insert(a);
            got.push(a.to_string());
        }
        assert_eq!(got, ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.6"]);
    }

    #[test]
    fn rejects_bad_subnets() {
        assert!(LocationSubnet::parse("a", "10.0.0.0/24").unwrap_err().message.contains("network"));
        assert!(LocationSubnet::parse("a", "10.0.0.255/24").is_err());
        assert!(LocationSubnet::parse("a", "10.0.0.1/31").is_err());
        assert!(LocationSubnet::parse("a", "10.0.0.1").is_err());
        assert!(LocationSubnet::parse("a", "banana").is_err());
        assert!(LocationSubnet::parse("a", "fd00::1/64").is_ok());
    }

    #[test]
    fn lists() {
        let v = parse_cidr_list("allowed_ips", &["10.0.0.0/8, 192.168.1.1".into()]).unwrap();
        assert_eq!(v.len(), 2);
        assert!(parse_cidr_list("allowed_ips", &["10.0.0.0/33".into()]).is_err());
        assert_eq!(parse_dns("dns", "10.0.0.1,corp.example.com").unwrap(), "10.0.0.1, corp.example.com");
        assert!(parse_dns("dns", "not a host!").is_err());
        assert_eq!(parse_host("endpoint", "VPN.example.com").unwrap(), "vpn.example.com");
        assert!(parse_host("endpoint", "https://vpn.example.com").is_err());
    }

    proptest! {
        /// The allocator never hands out network, broadcast, gateway or used addresses, and
        /// fills the subnet exactly to capacity.
        #[test]
        fn allocator_invariants(prefix in 26u8..=30, gw_off in 1u32..3, pre_used in proptest::collection::vec(0u32..64, 0..20)) {
            let base = u32::from(std::net::Ipv4Addr::new(10, 1, 2, 0));
            let gw = std::net::Ipv4Addr::from(base + gw_off);
            let s = LocationSubnet::parse("a", &format!("{gw}/{prefix}")).unwrap();
            let mut used: HashSet<IpAddr> = pre_used.iter()
                .map(|o| IpAddr::from(std::net::Ipv4Addr::from(base + o)))
                .filter(|a| s.is_assignable(*a))
                .collect();
            let initially = used.len() as u128;
            let mut handed = 0u128;
            while let Some(a) = s.allocate(&used) {
                prop_assert!(s.is_assignable(a));
                prop_assert!(used.insert(a), "handed out a used address");
                handed += 1;
            }
            prop_assert_eq!(handed + initially, s.capacity());
        }
    }
}

/// The client's address behind reverse proxies: the peer, unless the peer is trusted; then
/// the `X-Forwarded-For` hops (in header order) are walked from the right, each proxy
/// having appended the address it saw, past every trusted proxy. A client cannot forge its
/// address by sending the header itself: its own entries are left of the first untrusted hop.
pub fn forwarded_client(trusted: &[IpNet], peer: IpAddr, hops: &[&str]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod forwarded_tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let lb: IpNet = "10.0.0.0/8".parse().unwrap();
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let outside: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(forwarded_client(&[lb], outside, &["1.2.3.4"]), outside);
        assert_eq!(
            forwarded_client(&[lb], peer, &["1.2.3.4", "198.51.100.7"]),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            forwarded_client(&[lb], peer, &["198.51.100.7", "10.0.0.9"]),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(forwarded_client(&[lb], peer, &["junk"]), peer);
        assert_eq!(forwarded_client(&[], peer, &["1.2.3.4"]), peer);
    }
}
