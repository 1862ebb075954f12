//! The gateway link over real gRPC on loopback, against the in-memory stand-in for core:
//! token and hello checks, refusals as statuses, updates down, stats up, one `closed` per
//! session whichever side ends it.

use onramp_link::gateway::{
    connect_gateway, serve_gateway_link, ConnectError, GatewayFrame, GatewayLinkClient, GatewayLinkService,
    GatewayToken,
};
use onramp_link::test_control::{SharedControl, TestControl};
use onramp_proto::gateway::{GatewayHello, GatewayRefusal, InterfaceSpec, PeerSpec, PeerStats, RefusalKind, ToGateway};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn full() -> ToGateway {
    ToGateway::Full {
        interface: InterfaceSpec { location: "hq".into(), addresses: vec!["10.8.0.1/24".into()], listen_port: 51820 },
        peers: vec![PeerSpec { pubkey: "a".repeat(43) + "=", allowed_ips: vec!["10.8.0.2/32".into()] }],
    }
}

fn hello(key: &str) -> GatewayHello {
    GatewayHello { pubkey: key.into(), version: "test".into(), hostname: "gw1".into(), rotate_key: false }
}

async fn start(control: &Arc<TestControl>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let c: Arc<dyn onramp_proto::gateway::GatewayControl> = Arc::new(SharedControl(control.clone()));
    tokio::spawn(serve_gateway_link(listener, c, None, std::future::pending()));
    url
}

#[tokio::test]
async fn session_carries_updates_down_and_stats_up() {
    let control = TestControl::new("tok-1", full());
    let url = start(&control).await;
    let mut conn = connect_gateway(&url, &GatewayToken::new("tok-1"), &hello("K1"), None).await.unwrap();
    assert_eq!(conn.next().await.unwrap(), Some(full()), "Full comes first");
    {
        let seen = control.seen();
        assert_eq!(seen.hellos.len(), 1);
        assert_eq!(seen.hellos[0].0, hello("K1"));
        let remote = seen.hellos[0].1.as_deref().expect("the listener passes the remote address");
        assert!(remote.starts_with("127.0.0.1:"), "{remote}");
    }
    let upsert = ToGateway::Upsert { peer: PeerSpec { pubkey: "b".into(), allowed_ips: vec!["10.8.0.3/32".into()] } };
    assert!(control.send(upsert.clone()));
    assert_eq!(conn.next().await.unwrap(), Some(upsert));
    control.send(ToGateway::Remove { pubkey: "b".into() });
    assert_eq!(conn.next().await.unwrap(), Some(ToGateway::Remove { pubkey: "b".into() }));

    let stats = PeerStats {
        pubkey: "b".into(),
        endpoint: Some("192.0.2.1:5555".into()),
        latest_handshake: Some(1_700_000_000),
        rx_bytes: 10,
        tx_bytes: 20,
    };
    conn.send_stats(vec![stats.clone()]).await.unwrap();
    assert!(control.wait_for(WAIT, |s| s.stats == [stats.clone()]).await, "stats reach the reporter");
    assert_eq!(control.seen().closed, 0);

    // The gateway goes away: core hears `closed` once.
    drop(conn);
    assert!(control.wait_for(WAIT, |s| s.closed == 1).await, "closed after the gateway left");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(control.seen().closed, 1, "closed exactly once");
}

#[tokio::test]
async fn core_ending_the_session_ends_the_gateway_stream() {
    let control = TestControl::new("tok-1", full());
    let url = start(&control).await;
    let mut conn = connect_gateway(&url, &GatewayToken::new("tok-1"), &hello("K1"), None).await.unwrap();
    assert!(matches!(conn.next().await, Ok(Some(ToGateway::Full { .. }))));
    control.end_sessions();
    assert_eq!(conn.next().await, Ok(None), "the gateway sees the end and can reconnect");
    assert!(control.wait_for(WAIT, |s| s.closed == 1).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(control.seen().closed, 1, "closed exactly once");
}

#[tokio::test]
async fn refusals_arrive_as_refusals_with_their_message() {
    let control = TestControl::new("tok-1", full());
    let url = start(&control).await;
    let refused = |r: Result<_, ConnectError>| match r {
        Err(ConnectError::Refused(r)) => r,
        Err(other) => panic!("expected a refusal, got {other:?}"),
        Ok(_) => panic!("expected a refusal, got a session"),
    };
    let r = refused(connect_gateway(&url, &GatewayToken::new("wrong"), &hello("K1"), None).await);
    assert_eq!(r, GatewayRefusal { kind: RefusalKind::Unauthenticated, message: "unknown token".into() });

    connect_gateway(&url, &GatewayToken::new("tok-1"), &hello("K1"), None).await.unwrap();
    let r = refused(connect_gateway(&url, &GatewayToken::new("tok-1"), &hello("K2"), None).await);
    assert_eq!(r.kind, RefusalKind::KeyConflict);
    assert!(r.message.contains("another key"), "{}", r.message);
    let rotate = GatewayHello { rotate_key: true, ..hello("K2") };
    connect_gateway(&url, &GatewayToken::new("tok-1"), &rotate, None).await.expect("rotate_key replaces the key");

    *control.refuse.lock().unwrap() =
        Some(GatewayRefusal { kind: RefusalKind::Unavailable, message: "database down".into() });
    let r = refused(connect_gateway(&url, &GatewayToken::new("tok-1"), &hello("K2"), None).await);
    assert_eq!(r, GatewayRefusal { kind: RefusalKind::Unavailable, message: "database down".into() });
    // Only the two accepted gateways had sessions (both dropped by now).
    assert!(control.wait_for(WAIT, |s| s.closed == 2).await);
    assert_eq!(control.seen().hellos.len(), 2, "refused hellos open nothing");
}

#[tokio::test]
async fn unreachable_core_is_a_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let r = connect_gateway(&format!("http://127.0.0.1:{port}"), &GatewayToken::new("t"), &hello("K"), None).await;
    assert!(matches!(r, Err(ConnectError::Transport(_))), "{:?}", r.err());
    let r = connect_gateway("https://127.0.0.1:1", &GatewayToken::new("t"), &hello("K"), None).await;
    match r {
        Err(ConnectError::Transport(e)) => assert!(e.contains("CA"), "{e}"),
        other => panic!("{:?}", other.err()),
    }
}

/// A raw client: no token, or a stream that never says hello.
#[tokio::test]
async fn missing_token_and_missing_hello_are_refused() {
    let control = TestControl::new("tok-1", full());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let service = GatewayLinkService::new(Arc::new(SharedControl(control.clone())))
        .with_hello_timeout(Duration::from_millis(300))
        .into_server();
    let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, None).unwrap();
    tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));

    let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
    let mut client = GatewayLinkClient::new(channel);
    let (_tx, rx) = tokio::sync::mpsc::channel::<GatewayFrame>(1);
    let status = client.session(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    let (_tx, rx) = tokio::sync::mpsc::channel::<GatewayFrame>(1);
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert("authorization", "Bearer tok-1".parse().unwrap());
    let status = client.session(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("hello"), "{status:?}");

    // A first frame that is not a hello.
    let (tx, rx) = tokio::sync::mpsc::channel::<GatewayFrame>(1);
    tx.send(GatewayFrame { body: br#"{"kind":"stats","peers":[]}"#.to_vec() }).await.unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert("authorization", "Bearer tok-1".parse().unwrap());
    let status = client.session(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(control.seen().hellos.is_empty());
}

/// A CA and a certificate for "localhost" it signed: (CA PEM, identity).
fn localhost_pki(name: &str) -> (String, onramp_link::PemIdentity) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
    ca.distinguished_name.push(rcgen::DnType::CommonName, name);
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), onramp_link::PemIdentity { cert: cert.pem().into_bytes(), key: key.serialize_pem().into_bytes() })
}

/// The production path: TLS on the listener, the gateway trusting core's CA. A gateway
/// trusting another CA never gets to send its token.
#[tokio::test]
async fn tls_session_and_wrong_ca_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca, identity) = localhost_pki("Test core CA");
    let (other_ca, _) = localhost_pki("Another CA");
    let control = TestControl::new("tok-1", full());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    let c: Arc<dyn onramp_proto::gateway::GatewayControl> = Arc::new(SharedControl(control.clone()));
    tokio::spawn(serve_gateway_link(listener, c, Some(identity), std::future::pending()));

    let mut conn = connect_gateway(&url, &GatewayToken::new("tok-1"), &hello("K1"), Some(ca.as_bytes())).await.unwrap();
    assert_eq!(conn.next().await.unwrap(), Some(full()));

    let r = connect_gateway(&url, &GatewayToken::new("tok-1"), &hello("K1"), Some(other_ca.as_bytes())).await;
    match r {
        Err(ConnectError::Transport(e)) => assert!(e.to_lowercase().contains("certificate"), "{e}"),
        other => panic!("expected a TLS failure, got {:?}", other.err()),
    }
    assert_eq!(control.seen().hellos.len(), 1, "the untrusting gateway never reached core's control");
}

fn many_peers(n: usize) -> Vec<PeerSpec> {
    (0..n)
        .map(|i| PeerSpec {
            pubkey: format!("{:0>43}=", i),
            allowed_ips: vec![format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255)],
        })
        .collect()
}

/// Far above gRPC's 4 MiB default: a Full of 60,000 peers down, a report about as many up
/// (sent in chunks), and one unchunked 60,000-peer report from a raw client up.
#[tokio::test]
async fn large_configurations_and_reports_cross_the_link() {
    let interface = InterfaceSpec { location: "big".into(), addresses: vec!["10.0.0.1/8".into()], listen_port: 51820 };
    let big = ToGateway::Full { interface, peers: many_peers(60_000) };
    let size = serde_json::to_vec(&big).unwrap().len();
    assert!(size > 4 << 20, "the Full must exceed the default limit to prove anything ({size} bytes)");
    let control = TestControl::new("tok-1", big.clone());
    let url = start(&control).await;
    let mut conn = connect_gateway(&url, &GatewayToken::new("tok-1"), &hello("K1"), None).await.unwrap();
    assert_eq!(conn.next().await.unwrap(), Some(big), "the whole Full arrives");

    let stats: Vec<PeerStats> = many_peers(60_000)
        .into_iter()
        .map(|p| PeerStats {
            pubkey: p.pubkey,
            endpoint: Some("198.51.100.200:65000".into()),
            latest_handshake: Some(1_700_000_000),
            rx_bytes: u64::MAX,
            tx_bytes: u64::MAX,
        })
        .collect();
    conn.send_stats(stats.clone()).await.unwrap();
    assert!(control.wait_for(WAIT, |s| s.stats.len() == 60_000).await, "every peer's stats arrive");
    {
        let seen = control.seen();
        assert_eq!(seen.stats, stats, "in order");
        assert_eq!(seen.reports.len(), 30, "{:?}", seen.reports);
        assert!(seen.reports.iter().all(|n| *n == onramp_link::gateway::STATS_CHUNK));
    }

    // A gateway that does not chunk (an older one): core still takes the report whole.
    let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
    let mut client = GatewayLinkClient::new(channel)
        .max_decoding_message_size(onramp_link::gateway::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(onramp_link::gateway::MAX_MESSAGE_SIZE);
    let (tx, rx) = tokio::sync::mpsc::channel::<GatewayFrame>(4);
    let frame = |v: serde_json::Value| GatewayFrame { body: serde_json::to_vec(&v).unwrap() };
    tx.send(frame(serde_json::json!({"kind": "hello", "pubkey": "K1", "version": "old", "hostname": "gw1"})))
        .await
        .unwrap();
    let whole = serde_json::json!({"kind": "stats", "peers": stats});
    assert!(serde_json::to_vec(&whole).unwrap().len() > 4 << 20);
    tx.send(frame(whole)).await.unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert("authorization", "Bearer tok-1".parse().unwrap());
    let _stream = client.session(req).await.unwrap();
    assert!(
        control.wait_for(WAIT, |s| s.reports.last() == Some(&60_000)).await,
        "an unchunked report arrives: {:?}",
        control.seen().reports.len()
    );
}
