//! Gateway tables on both backends: the triggers that bump the peer epoch (and only those
//! writes), the peer set query, and stored counters.

use onramp_store::{DatabaseKind, DeviceLimits, GatewaySeen, LocationData, NewUser, PeerCounters};

mod common;
use common::store;

fn location(name: &str, addresses: &str, groups: Vec<i64>) -> LocationData {
    LocationData {
        name: name.into(),
        addresses: addresses.into(),
        endpoint: "vpn.example.com".into(),
        port: 51820,
        gateway_pubkey: None,
        keep_gateway_pubkey: false,
        allowed_ips: "10.0.0.0/8".into(),
        dns: None,
        keepalive: 25,
        mfa_mode: 1,
        allowed_groups: groups,
    }
}

fn user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        first_name: "F".into(),
        last_name: "L".into(),
        email: format!("{name}@example.com"),
        phone: None,
        password_hash: None,
        is_active: true,
    }
}

const LIMITS: DeviceLimits = DeviceLimits { max_per_user: 10, session_token: None };

fn key(n: u8) -> String {
    use std::fmt::Write;
    // Distinct 44-character strings; the store does not validate keys.
    let mut s = String::new();
    let _ = write!(s, "{n:03}");
    format!("{s:A<43}=")
}

/// Runs `step` and asserts whether it moved the epoch.
macro_rules! bumps {
    ($store:expr, $moves:expr, $what:expr, $step:expr) => {{
        let before = $store.peer_epoch().await.unwrap();
        let out = $step;
        let after = $store.peer_epoch().await.unwrap();
        if $moves {
            assert!(after > before, "{} must move the peer epoch ({before} -> {after})", $what);
        } else {
            assert_eq!(after, before, "{} must not move the peer epoch", $what);
        }
        out
    }};
}

async fn epoch_moves_on_peer_affecting_writes_only(kind: DatabaseKind) {
    let (s, _dir) = store(kind).await;
    let ann = bumps!(s, false, "a new user", s.create_user(&user("ann"), 1).await.unwrap());
    let g = bumps!(s, false, "a new group", s.create_group("staff", false, 1).await.unwrap());
    let (d1, _) = bumps!(s, true, "a device", s.create_device(ann.id, "d1", &key(1), &[], LIMITS, 1).await.unwrap());
    s.create_device(ann.id, "d2", &key(2), &[], LIMITS, 1).await.unwrap();
    s.create_device(ann.id, "d3", &key(3), &[], LIMITS, 1).await.unwrap();
    // One transaction giving three devices an address: PostgreSQL bumps once per transaction.
    let before = s.peer_epoch().await.unwrap();
    let l = s.create_location(&location("office", "10.1.0.1/24", vec![]), 1).await.unwrap();
    let after = s.peer_epoch().await.unwrap();
    assert!(after > before, "a location");
    if kind == DatabaseKind::Postgres {
        assert_eq!(after, before + 1, "one bump per transaction");
    }
    let mut renamed = ann.clone();
    renamed.first_name = "Other".into();
    let ann = bumps!(s, false, "a name change", s.update_user(&renamed, 2).await.unwrap());
    let mut disabled = ann.clone();
    disabled.is_active = false;
    bumps!(s, true, "disabling a user", s.update_user(&disabled, 2).await.unwrap());
    bumps!(s, true, "joining a group", s.add_member(g.id, ann.id).await.unwrap());
    bumps!(s, true, "leaving a group", s.remove_member(g.id, ann.id).await.unwrap());
    let t = bumps!(s, false, "a gateway token", s.create_gateway_token(l.id, "h", None, "test", 3).await.unwrap());
    bumps!(s, false, "a token's use", s.touch_gateway_token(t.id, 4).await.unwrap());
    let seen = GatewaySeen {
        location_id: l.id,
        pubkey: key(9),
        version: "1".into(),
        hostname: "gw".into(),
        remote: None,
        session_id: "s1".into(),
    };
    let gw = bumps!(s, false, "a gateway connecting", s.gateway_connected(&seen, 5).await.unwrap());
    let counters = PeerCounters { pubkey: key(1), endpoint: None, latest_handshake: Some(5), rx_bytes: 1, tx_bytes: 2 };
    bumps!(s, false, "a stats report", s.record_peer_stats(l.id, gw, "s1", &[counters], 6).await.unwrap());
    bumps!(s, false, "a heartbeat", s.touch_gateway(gw, "s1", 7).await.unwrap());
    bumps!(s, true, "a gateway key", s.replace_gateway_key(l.id, None, &key(9), 8).await.unwrap());
    bumps!(s, true, "a token's revocation", s.revoke_gateway_token(l.id, t.id, 9).await.unwrap());
    bumps!(s, true, "deleting a device", s.delete_device(d1.id).await.unwrap());
    bumps!(
        s,
        true,
        "editing a location",
        s.update_location(l.id, &location("office2", "10.1.0.1/24", vec![g.id]), 9).await.unwrap()
    );
    bumps!(s, true, "deleting a location", s.delete_location(l.id).await.unwrap());
    bumps!(s, true, "deleting a group", s.delete_group(g.id).await.unwrap());
    bumps!(s, true, "deleting a user", s.delete_user(ann.id).await.unwrap());
    s.close().await;
}

/// What each write records in the change log, the rows of only some devices and users,
/// and pruning.
async fn changes_name_what_they_touched(kind: DatabaseKind) {
    let (s, _dir) = store(kind).await;
    let touched = |since: i64| {
        let s = s.clone();
        async move {
            let (now, mut rows) = s.peer_changes_since(since, 1000).await.unwrap();
            rows.sort();
            rows.dedup();
            (now, rows)
        }
    };
    let ann = s.create_user(&user("ann"), 1).await.unwrap();
    let bob = s.create_user(&user("bob"), 1).await.unwrap();
    let g = s.create_group("staff", false, 1).await.unwrap();
    let e = s.peer_epoch().await.unwrap();
    let l = s.create_location(&location("office", "10.4.0.1/24", vec![]), 1).await.unwrap();
    let (e, rows) = touched(e).await;
    assert_eq!(rows, vec![(None, None)], "a location may change anything");

    let (d1, _) = s.create_device(ann.id, "d1", &key(1), &[l.id], LIMITS, 1).await.unwrap();
    let (e, rows) = touched(e).await;
    assert_eq!(rows, vec![(Some(d1.id), None)], "a device and its address name the device");
    let (b1, _) = s.create_device(bob.id, "b1", &key(2), &[l.id], LIMITS, 1).await.unwrap();

    let (e, _) = touched(e).await;
    let mut off = ann.clone();
    off.is_active = false;
    s.update_user(&off, 2).await.unwrap();
    let (e, rows) = touched(e).await;
    assert_eq!(rows, vec![(None, Some(ann.id))], "disabling names the user");
    s.add_member(g.id, bob.id).await.unwrap();
    let (e, rows) = touched(e).await;
    assert_eq!(rows, vec![(None, Some(bob.id))], "a membership names the user");
    s.delete_device(b1.id).await.unwrap();
    let (e, rows) = touched(e).await;
    assert!(rows.contains(&(Some(b1.id), None)) && rows.iter().all(|r| r.0 == Some(b1.id)), "{rows:?}");
    let (_, rows) = touched(e).await;
    assert!(rows.is_empty(), "nothing since");

    // Only some rows: by device, by user, or none.
    s.update_user(&ann, 3).await.unwrap();
    let (b2, _) = s.create_device(bob.id, "b2", &key(3), &[l.id], LIMITS, 1).await.unwrap();
    let ids = |rows: Vec<onramp_store::GatewayPeerRow>| rows.into_iter().map(|r| r.device_id).collect::<Vec<_>>();
    assert_eq!(ids(s.gateway_peer_rows(l.id, Some((&[d1.id], &[]))).await.unwrap()), vec![d1.id]);
    assert_eq!(ids(s.gateway_peer_rows(l.id, Some((&[], &[bob.id]))).await.unwrap()), vec![b2.id]);
    assert!(s.gateway_peer_rows(l.id, Some((&[], &[]))).await.unwrap().is_empty());
    assert_eq!(s.gateway_peer_rows(l.id, None).await.unwrap().len(), 2);

    // Pruning keeps the recent records only.
    let (_, all) = s.peer_changes_since(0, 1000).await.unwrap();
    assert!(s.prune_peer_changes(1).await.unwrap() > 0);
    let (_, kept) = s.peer_changes_since(0, 1000).await.unwrap();
    assert!(kept.len() < all.len() && !kept.is_empty(), "{} of {}", kept.len(), all.len());
    s.close().await;
}

async fn peers_and_counters(kind: DatabaseKind) {
    let (s, _dir) = store(kind).await;
    let g = s.create_group("staff", false, 1).await.unwrap();
    let l = s.create_location(&location("office", "10.2.0.1/24", vec![g.id]), 1).await.unwrap();
    let other = s.create_location(&location("lab", "10.3.0.1/24", vec![]), 1).await.unwrap();
    let ann = s.create_user(&user("ann"), 1).await.unwrap();
    let bob = s.create_user(&user("bob"), 1).await.unwrap();
    let cat = s.create_user(&user("cat"), 1).await.unwrap();
    s.add_member(g.id, ann.id).await.unwrap();
    s.add_member(g.id, cat.id).await.unwrap();
    let (a1, a1_addr) = s.create_device(ann.id, "a1", &key(1), &[l.id], LIMITS, 1).await.unwrap();
    s.create_device(ann.id, "a2", &key(2), &[other.id], LIMITS, 1).await.unwrap();
    // An address left from before bob was out of the group: not served.
    let (b1, _) = s.create_device(bob.id, "b1", &key(3), &[l.id], LIMITS, 1).await.unwrap();
    s.create_device(cat.id, "c1", &key(4), &[l.id], LIMITS, 1).await.unwrap();
    let mut cat_off = cat.clone();
    cat_off.is_active = false;
    s.update_user(&cat_off, 2).await.unwrap();
    let peers = s.gateway_peers(l.id).await.unwrap();
    assert_eq!(peers, vec![(key(1), a1_addr[0].address.clone())]);

    let seen = GatewaySeen {
        location_id: l.id,
        pubkey: key(9),
        version: "1.0".into(),
        hostname: "gw".into(),
        remote: Some("192.0.2.1:5000".into()),
        session_id: "s1".into(),
    };
    let gw = s.gateway_connected(&seen, 10).await.unwrap();
    let report = |k: u8, rx: i64| PeerCounters {
        pubkey: key(k),
        endpoint: Some("198.51.100.7:40000".into()),
        latest_handshake: Some(9),
        rx_bytes: rx,
        tx_bytes: rx * 2,
    };
    // Unknown key 7 and ann's a2 (no address here) are skipped; bob's b1 has an address here.
    let n = s
        .record_peer_stats(l.id, gw, "s1", &[report(1, 10), report(2, 1), report(3, 5), report(7, 1)], 20)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let n = s.record_peer_stats(l.id, gw, "s1", &[report(1, 30)], 25).await.unwrap();
    assert_eq!(n, 1);
    let stats = s.location_peer_stats(l.id).await.unwrap();
    assert_eq!(
        stats.iter().map(|r| (r.device_id, r.rx_bytes, r.tx_bytes)).collect::<Vec<_>>(),
        vec![(a1.id, 30, 60), (b1.id, 5, 10)]
    );
    assert_eq!(stats[0].username, "ann");
    assert_eq!(stats[0].location, "office");
    let mine = s.device_peer_stats(&[a1.id]).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].updated_at, 25);

    let g_rows = s.list_gateways(l.id).await.unwrap();
    assert_eq!((g_rows[0].connected, g_rows[0].last_seen_at), (true, Some(25)));
    assert_eq!(s.locations_with_live_gateway(20).await.unwrap(), vec![l.id]);
    // A stale session's close leaves the row of the session that took over alone.
    let again = GatewaySeen { session_id: "s2".into(), ..seen };
    assert_eq!(s.gateway_connected(&again, 30).await.unwrap(), gw);
    s.gateway_disconnected(gw, "s1", 31).await.unwrap();
    assert!(s.list_gateways(l.id).await.unwrap()[0].connected);
    assert!(!s.touch_gateway(gw, "s1", 32).await.unwrap());
    // The stale session's stats are stored but do not keep the row alive; the live one's do.
    assert_eq!(s.record_peer_stats(l.id, gw, "s1", &[report(1, 40)], 32).await.unwrap(), 1);
    assert_eq!(s.list_gateways(l.id).await.unwrap()[0].last_seen_at, Some(30));
    s.record_peer_stats(l.id, gw, "s2", &[report(1, 41)], 33).await.unwrap();
    assert_eq!(s.list_gateways(l.id).await.unwrap()[0].last_seen_at, Some(33));
    s.gateway_disconnected(gw, "s2", 34).await.unwrap();
    let row = &s.list_gateways(l.id).await.unwrap()[0];
    assert_eq!((row.connected, row.disconnected_at), (false, Some(34)));
    assert!(s.locations_with_live_gateway(0).await.unwrap().is_empty());
    s.close().await;
}

macro_rules! both {
    ($($name:ident),*) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(onramp_store::DatabaseKind::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(onramp_store::DatabaseKind::Postgres).await }
        }
    )*};
}

both!(epoch_moves_on_peer_affecting_writes_only, peers_and_counters, changes_name_what_they_touched);
