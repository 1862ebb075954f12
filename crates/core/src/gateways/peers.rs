//! What a gateway serves, as pure data: the peer set of a location and the messages that
//! take a gateway from one peer set to the next. No I/O here.

use onramp_proto::gateway::{PeerSpec, ToGateway};
use onramp_store::GatewayPeerRow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// Device public key -> its host routes in the location, sorted.
pub type PeerSet = BTreeMap<String, Vec<String>>;

/// Device id -> (its user, its key), for every device in a session's peer set: what a
/// change to a device or a user touches.
pub type Owners = HashMap<i64, (Option<i64>, String)>;

/// The peer set and owners of a location's whole set of rows.
pub fn from_rows(rows: &[GatewayPeerRow]) -> (PeerSet, Owners) {
    let set = peer_set(rows.iter().map(|r| (r.pubkey.clone(), r.address.clone())));
    let owners = rows.iter().map(|r| (r.device_id, (r.user_id, r.pubkey.clone()))).collect();
    (set, owners)
}

/// Brings `set` up to date after changes that touched `devices` and `users`: `rows` are
/// the current rows of those devices and of every device of those users (none when they
/// no longer qualify). Only the touched devices' peers are looked at. Returns the messages
/// that take a gateway from the old set to the new, as [`diff`] would.
pub fn apply_changes(
    set: &mut PeerSet,
    owners: &mut Owners,
    devices: &BTreeSet<i64>,
    users: &BTreeSet<i64>,
    rows: &[GatewayPeerRow],
) -> Vec<ToGateway> {
    let mut touched: BTreeSet<i64> = devices.clone();
    touched.extend(owners.iter().filter(|(_, (u, _))| u.is_some_and(|u| users.contains(&u))).map(|(d, _)| *d));
    touched.extend(rows.iter().map(|r| r.device_id));
    let mut before = PeerSet::new();
    for d in &touched {
        if let Some((_, key)) = owners.remove(d) {
            if let Some(routes) = set.remove(&key) {
                before.insert(key, routes);
            }
        }
    }
    let (after, now_owned) = from_rows(rows);
    owners.extend(now_owned);
    let messages = diff(&before, &after);
    set.extend(after);
    messages
}

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

    /// A toy database: devices (id, user, key, address); users active or not.
    #[derive(Debug, Clone)]
    struct World {
        devices: BTreeMap<i64, (Option<i64>, String, String)>,
        inactive: BTreeSet<i64>,
    }

    impl World {
        /// The rows a gateway serves, as the store's query gives them.
        fn rows(&self, only: Option<(&BTreeSet<i64>, &BTreeSet<i64>)>) -> Vec<GatewayPeerRow> {
            self.devices
                .iter()
                .filter(|(_, (u, ..))| u.is_none_or(|u| !self.inactive.contains(&u)))
                .filter(|(d, (u, ..))| only.is_none_or(|(ds, us)| ds.contains(d) || u.is_some_and(|u| us.contains(&u))))
                .map(|(d, (u, k, a))| GatewayPeerRow {
                    device_id: *d,
                    user_id: *u,
                    pubkey: k.clone(),
                    address: a.clone(),
                })
                .collect()
        }
    }

    #[derive(Debug, Clone)]
    enum Change {
        /// Add or replace device `d` of user `u` (None: a network device) with key `k`, address `a`.
        Put(i64, Option<i64>, u8, u8),
        Delete(i64),
        Toggle(i64),
    }

    fn arb_change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (0i64..8, proptest::option::of(0i64..3), 0u8..10, 0u8..6).prop_map(|(d, u, k, a)| Change::Put(d, u, k, a)),
            (0i64..8).prop_map(Change::Delete),
            (0i64..3).prop_map(Change::Toggle),
        ]
    }

    proptest! {
        /// Re-reading only what changes touched gives the same peer set, and the same
        /// messages, as re-reading everything.
        #[test]
        fn incremental_updates_match_a_full_read(batches in proptest::collection::vec(proptest::collection::vec(arb_change(), 1..5), 1..8)) {
            let mut world = World { devices: BTreeMap::new(), inactive: BTreeSet::new() };
            let (mut set, mut owners) = from_rows(&world.rows(None));
            for batch in batches {
                let (mut devices, mut users) = (BTreeSet::new(), BTreeSet::new());
                for c in batch {
                    match c {
                        Change::Put(d, u, k, a) => {
                            // Keys are unique per device in the database: derive it from the id.
                            world.devices.insert(d, (u, format!("key{d}-{k}"), format!("10.0.0.{a}")));
                            devices.insert(d);
                        }
                        Change::Delete(d) => {
                            world.devices.remove(&d);
                            devices.insert(d);
                        }
                        Change::Toggle(u) => {
                            if !world.inactive.remove(&u) {
                                world.inactive.insert(u);
                            }
                            users.insert(u);
                        }
                    }
                }
                let before = set.clone();
                let rows = world.rows(Some((&devices, &users)));
                let msgs = apply_changes(&mut set, &mut owners, &devices, &users, &rows);
                let (full, full_owners) = from_rows(&world.rows(None));
                prop_assert_eq!(&set, &full);
                prop_assert_eq!(&owners, &full_owners);
                prop_assert_eq!(msgs, diff(&before, &full));
            }
        }

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
