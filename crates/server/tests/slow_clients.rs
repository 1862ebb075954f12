//! Idle and slow clients cannot hold connections for ever, nor exhaust the process's file
//! descriptors (issue 10, item 10). A real `onramp serve` runs with an open-files limit of
//! 256 and short listener timeouts; sockets that send nothing, half a request line, a
//! header or a body one byte at a time are closed within the timeouts, connections past
//! the per-address cap are closed at once, and health on the admin port and on the public
//! edge answers throughout. The standalone edge's HTTPS listener closes idle sockets and
//! stalled TLS handshakes the same way.

mod common;
mod procs;
use common::*;
use procs::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Header, body and idle timeout configured for the server under test.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Slack for a loaded test machine; old code never closes at all.
const SLACK: Duration = Duration::from_millis(2500);
const PER_IP: usize = 20;

/// `onramp` with the listener limits of this test, under an open-files limit of 256.
fn onramp(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("ONRAMP_EDGE_RATE_LIMIT", "0")
        .env("ONRAMP_HTTP_HEADER_TIMEOUT_SECS", TIMEOUT.as_secs().to_string())
        .env("ONRAMP_HTTP_BODY_TIMEOUT_SECS", TIMEOUT.as_secs().to_string())
        .env("ONRAMP_HTTP_IDLE_TIMEOUT_SECS", TIMEOUT.as_secs().to_string())
        .env("ONRAMP_HTTP_MAX_CONNECTIONS", "100")
        .env("ONRAMP_HTTP_MAX_CONNECTIONS_PER_IP", PER_IP.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 256, rlim_max: 256 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

async fn wait_healthy(c: &reqwest::Client, url: &str) {
    for _ in 0..300 {
        if c.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became healthy");
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Connects and sends nothing.
    Idle,
    /// Half a request line, then nothing.
    HalfLine,
    /// A request header, one byte every 400 ms: it never stalls long enough for an idle
    /// check, so only a deadline on the whole header stops it.
    DripHeader,
    /// A full header announcing a body, then the body one byte every 400 ms.
    DripBody,
    /// A few bytes of a TLS ClientHello, then nothing.
    HalfHandshake,
}

/// Opens a socket from `from`, behaves as `kind`, and returns how long the server kept
/// it open (`None`: still open after `give_up`).
async fn slow_client(from: IpAddr, to: SocketAddr, kind: Kind, give_up: Duration) -> Option<Duration> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    let mut s = sock.connect(to).await.unwrap();
    let began = Instant::now();
    let (prefix, drip): (&[u8], &[u8]) = match kind {
        Kind::Idle => (b"", b""),
        Kind::HalfLine => (b"GET /api/v1/hea", b""),
        Kind::DripHeader => (b"", b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"),
        Kind::DripBody => (
            b"POST /api/v1/enrollment/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
            &[b' '; 1000],
        ),
        Kind::HalfHandshake => (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b""),
    };
    if !prefix.is_empty() && s.write_all(prefix).await.is_err() {
        return Some(began.elapsed());
    }
    let mut next = 0;
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_millis(400));
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Some(began.elapsed()),
                Ok(_) => {} // an answer (say, 400 for a body that came too late); closing follows
            },
            _ = tick.tick() => {
                if next < drip.len() {
                    if s.write_all(&drip[next..next + 1]).await.is_err() {
                        return Some(began.elapsed());
                    }
                    next += 1;
                }
            }
            () = tokio::time::sleep_until((began + give_up).into()) => return None,
        }
    }
}

/// Runs `clients` against their targets while polling every health URL every 200 ms;
/// each poll must answer 2xx (or `allowed`) within two seconds. Returns how long each
/// client's socket stayed open.
async fn flood_while_polling(
    clients: Vec<(IpAddr, SocketAddr, Kind)>,
    health: &[(&reqwest::Client, String, StatusCode)],
) -> Vec<(Kind, Option<Duration>)> {
    let give_up = TIMEOUT * 5;
    let mut set = tokio::task::JoinSet::new();
    for (from, to, kind) in clients {
        set.spawn(async move { (kind, slow_client(from, to, kind, give_up).await) });
    }
    let polling = async {
        let end = Instant::now() + TIMEOUT + SLACK + Duration::from_secs(1);
        let mut polls = 0;
        while Instant::now() < end {
            for (c, url, want) in health {
                let r = tokio::time::timeout(Duration::from_secs(2), c.get(url).send()).await;
                match r {
                    Ok(Ok(r)) => assert_eq!(r.status(), *want, "{url}"),
                    Ok(Err(e)) => panic!("{url} failed during the flood: {e}"),
                    Err(_) => panic!("{url} did not answer within 2 s during the flood"),
                }
            }
            polls += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        polls
    };
    let (polls, results) = tokio::join!(polling, async {
        let mut out = vec![];
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    assert!(polls > 5, "health was polled only {polls} times");
    results
}

fn assert_closed_in_time(results: &[(Kind, Option<Duration>)]) {
    for (kind, kept) in results {
        let kept = kept.unwrap_or_else(|| panic!("a {kind:?} socket was never closed"));
        assert!(kept <= TIMEOUT + SLACK, "a {kind:?} socket was kept open {kept:?}");
    }
}

fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_sockets_are_closed_and_health_keeps_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let (http, edge) = (free_port(), free_port());
    let _server = Proc(
        onramp(&["serve"])
            .env("ONRAMP_DATA_DIR", tmp.path())
            .env("ONRAMP_GATEWAY_ADDR", "127.0.0.1:0")
            .env("ONRAMP_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("ONRAMP_EDGE_ADDR", format!("127.0.0.1:{edge}"))
            .spawn()
            .unwrap(),
    );
    let c = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let admin_health = format!("http://127.0.0.1:{http}/api/v1/health");
    let edge_health = format!("http://127.0.0.1:{edge}/api/v1/health");
    wait_healthy(&c, &admin_health).await;
    wait_healthy(&c, &edge_health).await;

    // 260 sockets against the edge from four addresses (more than the descriptor limit
    // allows open at once; the per-address cap keeps most out), and some against the
    // admin port from a fifth. Health is asked from 127.0.0.1, which the flood leaves alone.
    let (edge_addr, admin_addr) = (SocketAddr::from(([127, 0, 0, 1], edge)), SocketAddr::from(([127, 0, 0, 1], http)));
    let kinds = [Kind::Idle, Kind::HalfLine, Kind::DripHeader, Kind::DripBody];
    let mut clients = vec![];
    for i in 0..260 {
        clients.push((loopback(2 + (i % 4) as u8), edge_addr, kinds[i % 4]));
    }
    for i in 0..PER_IP {
        clients.push((loopback(10), admin_addr, kinds[i % 3]));
    }
    let results = flood_while_polling(
        clients,
        &[(&c, admin_health.clone(), StatusCode::OK), (&c, edge_health.clone(), StatusCode::OK)],
    )
    .await;
    assert_closed_in_time(&results);

    // The slots are free again: an address that had filled its share gets in.
    let r = slow_client(loopback(2), edge_addr, Kind::Idle, TIMEOUT * 5).await.expect("closed");
    assert!(r >= TIMEOUT - Duration::from_millis(300), "refused after the flood: closed after {r:?}");
    let r = c.get(&edge_health).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_edge_closes_idle_sockets_and_stalled_handshakes() {
    let pki = Pki::new();
    let (edge, link) = (free_port(), free_port());
    let _edge = Proc(
        onramp(&["edge"])
            .env("ONRAMP_EDGE_ADDR", format!("127.0.0.1:{edge}"))
            .env("ONRAMP_EDGE_LINK_ADDR", format!("127.0.0.1:{link}"))
            .env("ONRAMP_LINK_INSECURE", "true")
            .env("ONRAMP_EDGE_TLS_CERT_FILE", pki.path("edge.pem"))
            .env("ONRAMP_EDGE_TLS_KEY_FILE", pki.path("edge.key"))
            .spawn()
            .unwrap(),
    );
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let c = reqwest::Client::builder().add_root_certificate(ca).pool_max_idle_per_host(0).build().unwrap();
    let health = format!("https://localhost:{edge}/api/v1/health");
    // No core behind this edge: health answers 503, which is an answer.
    for _ in 0..300 {
        if c.get(&health).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let to = SocketAddr::from(([127, 0, 0, 1], edge));
    let mut clients = vec![];
    for i in 0..260 {
        clients.push((loopback(2 + (i % 4) as u8), to, if i % 2 == 0 { Kind::Idle } else { Kind::HalfHandshake }));
    }
    let results = flood_while_polling(clients, &[(&c, health, StatusCode::SERVICE_UNAVAILABLE)]).await;
    assert_closed_in_time(&results);
}
