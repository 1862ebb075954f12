//! What a gateway serves, as pure data: the peer set of a location and the messages that
//! take a gateway from one peer set to the next. No I/O here.

use onramp_proto::gateway::{PeerSpec, ToGateway};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Device public key -> its host routes in the location, sorted.
pub type PeerSet = BTreeMap<String, Vec<String>>;

/// `10.0.0.2` -> `10.0.0.2/32`, `fd00::2` -> `fd00::2/128`; `None` for a malformed address.
pub fn host_route(address: &str) -> Option<String> {
    match address.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(ip) => Some(format!("{ip}/32")),
        IpAddr::V6(ip) => Some(format!("{ip}/128")),
    }
}

/// The peer set of (device key, address) rows. Malformed addresses are dropped (the store
/// only holds validated ones); a key with no usable address is no peer.
pub fn peer_set(rows: impl IntoIterator<Item = (String, String)>) -> PeerSet {
    let mut set = PeerSet::new();
    for (key, address) in rows {
        if let Some(route) = host_route(&address) {
            set.entry(key).or_default().push(route);
        }
    }
    for routes in set.values_mut() {
        routes.sort();
        routes.dedup();
    }
    set
}

pub fn peer_specs(set: &PeerSet) -> Vec<PeerSpec> {
    set.iter().map(|(k, ips)| PeerSpec { pubkey: k.clone(), allowed_ips: ips.clone() }).collect()
}

/// The messages that turn `old` into `new`: one `Remove` per key gone, then one `Upsert`
/// per key added or changed, each in key order. Removals come first so an address freed by
/// a deleted device and reused by a new one is never claimed by two peers at once.
pub fn diff(old: &PeerSet, new: &PeerSet) -> Vec<ToGateway> {
    let removed = old.keys().filter(|k| !new.contains_key(*k)).map(|k| ToGateway::Remove { pubkey: k.clone() });
    let upserted = new
        .iter()
        .filter(|(k, ips)| old.get(*k) != Some(*ips))
        .map(|(k, ips)| ToGateway::Upsert { peer: PeerSpec { pubkey: k.clone(), allowed_ips: ips.clone() } });
    removed.chain(upserted).collect()
}

/// Applies one message to a peer set, as a gateway does (`Full` replaces everything).
pub fn apply(set: &mut PeerSet, msg: &ToGateway) {
    match msg {
        ToGateway::Full { peers, .. } => {
            *set = peers.iter().map(|p| (p.pubkey.clone(), p.allowed_ips.clone())).collect();
        }
        ToGateway::Upsert { peer } => {
            set.insert(peer.pubkey.clone(), peer.allowed_ips.clone());
        }
        ToGateway::Remove { pubkey } => {
            set.remove(pubkey);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(entries: &[(&str, &[&str])]) -> PeerSet {
        entries.iter().map(|(k, ips)| (k.to_string(), ips.iter().map(|s| s.to_string()).collect())).collect()
    }

    #[test]
    fn routes_are_host_routes_per_family() {
        assert_eq!(host_route("10.1.2.3").as_deref(), Some("10.1.2.3/32"));
        assert_eq!(host_route("fd00::2").as_deref(), Some("fd00::2/128"));
        assert_eq!(host_route("10.1.2.3/24"), None);
        assert_eq!(host_route("nonsense"), None);
    }

    #[test]
    fn rows_group_by_key_sorted_and_skip_bad_addresses() {
        let s = peer_set(vec![
            ("b".into(), "10.0.0.3".into()),
            ("a".into(), "fd00::2".into()),
            ("a".into(), "10.0.0.2".into()),
            ("c".into(), "garbage".into()),
        ]);
        assert_eq!(s, set(&[("a", &["10.0.0.2/32", "fd00::2/128"]), ("b", &["10.0.0.3/32"])]));
        assert_eq!(
            peer_specs(&s)[0],
            PeerSpec { pubkey: "a".into(), allowed_ips: vec!["10.0.0.2/32".into(), "fd00::2/128".into()] }
        );
    }

    #[test]
    fn diff_removes_first_then_upserts_changes_only() {
        let old = set(&[("a", &["10.0.0.2/32"]), ("b", &["10.0.0.3/32"]), ("c", &["10.0.0.4/32"])]);
        let new = set(&[("a", &["10.0.0.2/32"]), ("c", &["10.0.0.5/32"]), ("d", &["10.0.0.3/32"])]);
        assert_eq!(
            diff(&old, &new),
            vec![
                ToGateway::Remove { pubkey: "b".into() },
                ToGateway::Upsert { peer: PeerSpec { pubkey: "c".into(), allowed_ips: vec!["10.0.0.5/32".into()] } },
                ToGateway::Upsert { peer: PeerSpec { pubkey: "d".into(), allowed_ips: vec!["10.0.0.3/32".into()] } },
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }

    fn arb_set() -> impl Strategy<Value = PeerSet> {
        // Few keys and addresses, so that sets overlap often.
        proptest::collection::btree_map(
            "[a-f]",
            proptest::collection::btree_set(0u8..6, 1..3)
                .prop_map(|s| s.into_iter().map(|n| format!("10.0.0.{n}/32")).collect::<Vec<_>>()),
            0..6,
        )
    }

    proptest! {
        #[test]
        fn applying_the_diff_yields_the_new_set(old in arb_set(), new in arb_set()) {
            let msgs = diff(&old, &new);
            let mut s = old.clone();
            for m in &msgs {
                apply(&mut s, m);
            }
            prop_assert_eq!(&s, &new);
            // Minimal: one message per key that differs, none for equal keys.
            let differing = old.keys().chain(new.keys()).collect::<std::collections::BTreeSet<_>>()
                .into_iter().filter(|k| old.get(*k) != new.get(*k)).count();
            prop_assert_eq!(msgs.len(), differing);
            // Every removal precedes every upsert.
            let first_upsert = msgs.iter().position(|m| matches!(m, ToGateway::Upsert { .. })).unwrap_or(msgs.len());
            let ordered = msgs[first_upsert..].iter().all(|m| matches!(m, ToGateway::Upsert { .. }));
            prop_assert!(ordered, "a removal after an upsert: {:?}", msgs);
        }

        #[test]
        fn a_full_message_replaces_everything(old in arb_set(), new in arb_set()) {
            let mut s = old;
            let full = ToGateway::Full {
                interface: onramp_proto::gateway::InterfaceSpec { location: "l".into(), addresses: vec![], listen_port: 1 },
                peers: peer_specs(&new),
            };
            apply(&mut s, &full);
            prop_assert_eq!(s, new);
        }
    }
}
