//! The edge's hub over the real gRPC link (plaintext on loopback): several cores share one
//! edge and take over each other's requests (issue 10, item 6); a round trip is bounded
//! including the send, and core works on a bounded number of requests per link (item 17).

use onramp_link::{run_core_side, serve_edge_link, EdgeHub, EdgeLinkClient, LinkFrame, CORE_CONCURRENCY};
use onramp_proto::link::{ClientMeta, CoreLink, EdgeCall, EdgeReply, EdgeRequest, LinkError, LinkFuture};
use serde_json::json;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Serves the edge side of the link on a fresh port; returns the URL core dials.
fn start_edge(hub: &EdgeHub) -> String {
    let port = free_port();
    tokio::spawn(serve_edge_link(([127, 0, 0, 1], port).into(), hub.clone(), None, std::future::pending()));
    format!("http://127.0.0.1:{port}")
}

/// A core behind the link: answers with its name, and holds every call while its gate is
/// shut. Counts what it is working on.
struct TestCore {
    name: &'static str,
    gate: tokio::sync::watch::Sender<bool>,
    now: AtomicUsize,
    max: AtomicUsize,
    received: Mutex<Vec<&'static str>>,
}

impl TestCore {
    fn new(name: &'static str, open: bool) -> Arc<Self> {
        Arc::new(TestCore {
            name,
            gate: tokio::sync::watch::channel(open).0,
            now: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
            received: Mutex::new(vec![]),
        })
    }

    fn open(&self, open: bool) {
        self.gate.send_replace(open);
    }

    fn received(&self, call: &str) -> usize {
        self.received.lock().unwrap().iter().filter(|c| **c == call).count()
    }
}

impl CoreLink for TestCore {
    fn call(&self, req: EdgeRequest) -> LinkFuture<'_> {
        Box::pin(async move {
            self.received.lock().unwrap().push(req.call.name());
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(n, Ordering::SeqCst);
            let mut gate = self.gate.subscribe();
            let _ = gate.wait_for(|open| *open).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(EdgeReply { id: req.id, status: 200, body: json!({ "core": self.name }) })
        })
    }

    fn connected(&self) -> bool {
        true
    }
}

/// A core in its own runtime, so that it can die the way a killed process does: every
/// task and socket at once.
fn spawn_core(url: &str, core: Arc<TestCore>) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.spawn(run_core_side(url.to_owned(), core, None));
    rt
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

static IDS: AtomicU64 = AtomicU64::new(1);

fn request(call: EdgeCall) -> EdgeRequest {
    EdgeRequest { id: IDS.fetch_add(1, Ordering::Relaxed), call, meta: ClientMeta::default() }
}

fn start(token: &str) -> EdgeCall {
    EdgeCall::Start { token: token.into(), session: None }
}

fn create_device() -> EdgeCall {
    EdgeCall::CreateDevice { token: "t".into(), name: "laptop".into(), pubkey: "k".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_edge_and_take_over_when_one_dies() {
    let hub = EdgeHub::with_timeout(Duration::from_secs(10));
    let url = start_edge(&hub);
    let (a, b) = (TestCore::new("a", true), TestCore::new("b", true));
    let rt_a = spawn_core(&url, a.clone());
    let rt_b = spawn_core(&url, b.clone());
    wait_for("both cores", || hub.cores() == 2).await;

    // Both stay: neither displaces the other, so nobody reconnects.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!((hub.cores(), hub.connections_accepted()), (2, 2), "cores displaced each other");

    // Requests are spread over both.
    for _ in 0..40 {
        let r = hub.call(request(EdgeCall::Poll { token: "p".into() })).await.unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(a.received("poll") >= 10 && b.received("poll") >= 10, "a {} b {}", a.received("poll"), b.received("poll"));

    // Both busy, calls of both kinds in flight and spread over both cores. They are sent one
    // at a time (each in flight before the next), so their order is known; the kinds follow
    // a period of three, so however the hub alternates, each core holds both kinds.
    a.open(false);
    b.open(false);
    let mut calls = tokio::task::JoinSet::new();
    let (mut starts, mut creates) = (0, 0);
    for i in 0..21 {
        let call = if i % 3 == 2 {
            creates += 1;
            create_device()
        } else {
            starts += 1;
            start(&format!("s{i}"))
        };
        let hub = hub.clone();
        calls.spawn(async move {
            let kind = call.name();
            (kind, hub.call(request(call)).await)
        });
        wait_for("the call in flight", || a.now.load(Ordering::SeqCst) + b.now.load(Ordering::SeqCst) == i + 1).await;
    }
    let (starts_on_a, creates_on_a) = (a.received("start"), a.received("create_device"));
    assert!(starts_on_a > 0 && creates_on_a > 0, "a got {starts_on_a} starts and {creates_on_a} creates");

    // Core a dies. Its session starts are sent again to b; its device creations, which a
    // may have carried out, fail at once as interrupted. Nothing waits for the timeout.
    b.open(true);
    let killed = Instant::now();
    rt_a.shutdown_background();
    let (mut started, mut created, mut interrupted) = (0, 0, 0);
    while let Some(r) = calls.join_next().await {
        match r.unwrap() {
            ("start", Ok(r)) => {
                assert_eq!(r.body["core"], "b");
                started += 1;
            }
            ("create_device", Ok(r)) => {
                assert_eq!(r.body["core"], "b");
                created += 1;
            }
            ("create_device", Err(LinkError::Interrupted)) => interrupted += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(killed.elapsed() < Duration::from_secs(3), "fail-over took {:?}", killed.elapsed());
    assert_eq!((started, created, interrupted), (starts, creates - creates_on_a, creates_on_a));
    assert_eq!(hub.cores(), 1);
    let r = hub.call(request(start("after"))).await.unwrap();
    assert_eq!(r.body["core"], "b");
    rt_b.shutdown_background();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_works_on_a_bounded_number_of_requests_per_link() {
    let hub = EdgeHub::with_timeout(Duration::from_secs(30));
    let url = start_edge(&hub);
    let core = TestCore::new("a", false);
    let rt = spawn_core(&url, core.clone());
    wait_for("core", || hub.cores() == 1).await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..(CORE_CONCURRENCY * 3) {
        let hub = hub.clone();
        calls.spawn(async move { hub.call(request(EdgeCall::Poll { token: "p".into() })).await });
    }
    wait_for("the limit reached", || core.now.load(Ordering::SeqCst) >= CORE_CONCURRENCY).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(core.max.load(Ordering::SeqCst), CORE_CONCURRENCY, "core took on more than its limit");
    core.open(true);
    while let Some(r) = calls.join_next().await {
        assert_eq!(r.unwrap().unwrap().status, 200);
    }
    rt.shutdown_background();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_that_stops_reading_cannot_hold_requests_past_the_timeout() {
    let hub = EdgeHub::with_timeout(Duration::from_secs(1));
    let url = start_edge(&hub);
    // A "core" that opens the stream and never reads it: the edge's buffers fill up.
    let endpoint = tonic::transport::Endpoint::from_shared(url).unwrap();
    let mut client = loop {
        match endpoint.connect().await {
            Ok(c) => break EdgeLinkClient::new(c),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let (_tx, rx) = tokio::sync::mpsc::channel::<LinkFrame>(1);
    let _unread = client.link(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap();
    wait_for("the stream", || hub.cores() == 1).await;

    let token = "x".repeat(16 * 1024);
    let began = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (hub, token) = (hub.clone(), token.clone());
        calls.spawn(async move { hub.call(request(start(&token))).await });
    }
    let all = async {
        while let Some(r) = calls.join_next().await {
            assert_eq!(r.unwrap(), Err(LinkError::Timeout));
        }
    };
    tokio::time::timeout(Duration::from_secs(8), all).await.expect("requests hung beyond the link timeout");
    assert!(began.elapsed() < Duration::from_secs(4), "took {:?}", began.elapsed());
}
