//! The network link between core and edge. Core dials each edge (the edge never reaches
//! core) and opens one bidirectional gRPC stream: the edge sends requests down it, core
//! answers each by id. Frames carry the JSON of `onramp_proto::link` messages.
//! Gateways dial core the other way round; see [`gateway`].

use onramp_proto::link::{CoreLink, EdgeCall, EdgeReply, EdgeRequest, LinkError, LinkFuture};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

include!(concat!(env!("OUT_DIR"), "/onramp.link.EdgeLink.rs"));
include!(concat!(env!("OUT_DIR"), "/onramp.link.GatewayLink.rs"));

pub mod gateway;
#[cfg(feature = "test-control")]
pub mod test_control;

pub use edge_link_client::EdgeLinkClient;
pub use edge_link_server::EdgeLinkServer;

/// One message on the link: a request (edge to core, `status` 0) or a reply (core to edge).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinkFrame {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint32, tag = "2")]
    pub status: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub body: Vec<u8>,
}

/// How long the edge waits for core's answer to one request, sending included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How many requests core works on at once per edge link. Further frames wait unread, so
/// HTTP/2 flow control pushes back to the edge instead of core spawning without bound.
pub const CORE_CONCURRENCY: usize = 64;

type Outbox = mpsc::Sender<Result<LinkFrame, Status>>;

/// Edge side: accepts the connections of every core replica and spreads requests over
/// them. Implements [`CoreLink`] for the public API. Cheap to clone.
#[derive(Clone)]
pub struct EdgeHub(Arc<HubInner>);

struct HubInner {
    /// Every connected core stream. Replicas share the edge; none displaces another.
    streams: Mutex<Vec<Arc<CoreStream>>>,
    next_stream: AtomicU64,
    /// Rotates the starting point among equally loaded streams.
    rotate: AtomicUsize,
    timeout: Duration,
}

/// One core's stream and the requests it has not answered yet.
struct CoreStream {
    id: u64,
    out: Outbox,
    /// `None` once the stream closed: its waiters were dropped and nothing new may wait.
    pending: Mutex<Option<HashMap<u64, oneshot::Sender<EdgeReply>>>>,
    in_flight: AtomicUsize,
}

impl Default for EdgeHub {
    fn default() -> Self {
        Self::with_timeout(REQUEST_TIMEOUT)
    }
}

/// Whether a call may go to another core after the stream it was sent on closed without
/// an answer. Core may have carried it out already, so only calls whose repetition
/// changes nothing qualify: opening a session (it resumes the same one) and reads.
/// Activating, creating a device, requesting or completing a reset are not sent twice;
/// the client hears that the outcome is unknown.
fn safe_to_resend(call: &EdgeCall) -> bool {
    matches!(
        call,
        EdgeCall::Start { .. }
            | EdgeCall::PasswordResetStart { .. }
            | EdgeCall::NetworkInfo { .. }
            | EdgeCall::Poll { .. }
    )
}

impl EdgeHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// A hub that gives up on a request after `timeout` (sending and answer together).
    pub fn with_timeout(timeout: Duration) -> Self {
        Self(Arc::new(HubInner {
            streams: Mutex::new(Vec::new()),
            next_stream: AtomicU64::new(1),
            rotate: AtomicUsize::new(0),
            timeout,
        }))
    }

    /// How many core streams are connected now.
    pub fn cores(&self) -> usize {
        lock(&self.0.streams).len()
    }

    /// How many core connections this hub has accepted since it started.
    pub fn connections_accepted(&self) -> u64 {
        self.0.next_stream.load(Ordering::Relaxed) - 1
    }

    /// The least busy open stream not yet tried for this request.
    fn pick(&self, tried: &[u64]) -> Option<Arc<CoreStream>> {
        let streams = lock(&self.0.streams);
        let n = streams.len();
        let first = self.0.rotate.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &streams[(first + i) % n])
            .filter(|s| !tried.contains(&s.id))
            .min_by_key(|s| s.in_flight.load(Ordering::Relaxed))
            .cloned()
    }

    fn add(&self, out: Outbox) -> Arc<CoreStream> {
        let id = self.0.next_stream.fetch_add(1, Ordering::Relaxed);
        let stream =
            Arc::new(CoreStream { id, out, pending: Mutex::new(Some(HashMap::new())), in_flight: AtomicUsize::new(0) });
        lock(&self.0.streams).push(stream.clone());
        stream
    }

    /// Forgets a closed stream and drops its waiters, so their requests fail over at once.
    fn remove(&self, stream: &CoreStream) {
        lock(&self.0.streams).retain(|s| s.id != stream.id);
        lock(&stream.pending).take();
    }

    async fn route(&self, req: EdgeRequest) -> Result<EdgeReply, LinkError> {
        let id = req.id;
        let resend = safe_to_resend(&req.call);
        let body = serde_json::to_vec(&req).map_err(|_| LinkError::Disconnected)?;
        let mut tried = Vec::new();
        let mut interrupted = false;
        while let Some(stream) = self.pick(&tried) {
            tried.push(stream.id);
            let Some(waiter) = Waiter::register(&stream, id) else { continue };
            if stream.out.send(Ok(LinkFrame { id, status: 0, body: body.clone() })).await.is_err() {
                // Never left the edge: any call may go to another core.
                continue;
            }
            match waiter.rx.await {
                Ok(reply) => return Ok(reply),
                Err(_) if resend => continue,
                Err(_) => {
                    interrupted = true;
                    break;
                }
            }
        }
        Err(if interrupted { LinkError::Interrupted } else { LinkError::Disconnected })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request waiting on one stream; leaving (answer, failure, timeout, or the caller
/// going away) removes its entry and its share of the stream's load.
struct Waiter {
    rx: oneshot::Receiver<EdgeReply>,
    _guard: WaitGuard,
}

struct WaitGuard {
    stream: Arc<CoreStream>,
    id: u64,
}

impl Waiter {
    fn register(stream: &Arc<CoreStream>, id: u64) -> Option<Waiter> {
        let (tx, rx) = oneshot::channel();
        lock(&stream.pending).as_mut()?.insert(id, tx);
        stream.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Waiter { rx, _guard: WaitGuard { stream: stream.clone(), id } })
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if let Some(p) = lock(&self.stream.pending).as_mut() {
            p.remove(&self.id);
        }
        self.stream.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CoreLink for EdgeHub {
    fn call(&self, req: EdgeRequest) -> LinkFuture<'_> {
        // One deadline for the whole round trip: a core that stops reading fills the
        // stream's buffer, and the send must not then wait for ever.
        Box::pin(async move {
            tokio::time::timeout(self.0.timeout, self.route(req)).await.unwrap_or(Err(LinkError::Timeout))
        })
    }

    fn connected(&self) -> bool {
        self.cores() > 0
    }
}

/// The gRPC service the edge serves to core; with a name, only a client certificate valid
/// for that DNS name may act as core.
#[derive(Clone)]
pub struct EdgeLinkService(pub EdgeHub, pub Option<String>);

/// A peer address for the logs: `Some(..)` and the like are Debug noise there.
pub fn addr_text(addr: Option<std::net::SocketAddr>) -> String {
    addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string())
}

/// A gRPC status as a person reads it. Its `Display` lists details and a `MetadataMap`
/// dump, which say nothing to someone reading the log.
pub fn status_text(status: &Status) -> String {
    let text = format!("{}: {}", status.code().description(), status.message());
    match std::error::Error::source(status).map(onramp_proto::error_chain) {
        Some(causes) if !text.contains(&causes) => format!("{text}: {causes}"),
        _ => text,
    }
}

/// The leaf client certificate must be valid for `name` (its subjectAltName DNS entries).
/// The TLS layer has already checked that the configured CA signed it.
fn check_core_name<T>(request: &Request<T>, name: &str) -> Result<(), String> {
    let certs = request.peer_certs().ok_or("no client certificate")?;
    let leaf = certs.first().ok_or("no client certificate")?;
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("unreadable certificate: {e}"))?;
    let server_name = rustls::pki_types::ServerName::try_from(name).map_err(|e| e.to_string())?;
    cert.verify_is_valid_for_subject_name(&server_name).map_err(|_| format!("certificate is not for {name}"))
}

#[tonic::async_trait]
impl edge_link_server::EdgeLink for EdgeLinkService {
    type LinkStream = ReceiverStream<Result<LinkFrame, Status>>;

    async fn link(&self, request: Request<Streaming<LinkFrame>>) -> Result<Response<Self::LinkStream>, Status> {
        let peer = addr_text(request.remote_addr());
        if let Some(name) = &self.1 {
            if let Err(why) = check_core_name(&request, name) {
                tracing::warn!(%peer, %why, "refused a link client that is not the configured core");
                return Err(Status::permission_denied(format!("not the configured core: {why}")));
            }
        }
        let mut replies = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let hub = self.0.clone();
        let stream = hub.add(tx);
        tracing::info!(%peer, stream = stream.id, cores = hub.cores(), "core connected");
        tokio::spawn(async move {
            while let Some(frame) = replies.next().await {
                let Ok(frame) = frame else { break };
                let body = serde_json::from_slice(&frame.body).unwrap_or(serde_json::Value::Null);
                let waiter = lock(&stream.pending).as_mut().and_then(|p| p.remove(&frame.id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(EdgeReply { id: frame.id, status: frame.status as u16, body });
                }
            }
            hub.remove(&stream);
            tracing::warn!(%peer, stream = stream.id, cores = hub.cores(), "core disconnected");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// PEM certificate chain and private key.
#[derive(Clone)]
pub struct PemIdentity {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for PemIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PemIdentity(..)")
    }
}

/// TLS of the edge's link listener: its own certificate, and the CA that signed core's
/// client certificate. With a CA, only a core holding such a certificate gets in.
#[derive(Clone, Debug)]
pub struct EdgeTls {
    pub identity: PemIdentity,
    pub client_ca: Option<Vec<u8>>,
    /// DNS name core's certificate must carry.
    pub core_name: Option<String>,
}

/// TLS of core's side: the CA that signed the edges' certificates, and core's own client
/// certificate for mutual TLS.
#[derive(Clone, Debug)]
pub struct CoreTls {
    pub ca: Vec<u8>,
    pub identity: Option<PemIdentity>,
}

/// Serves the link endpoint core connects to, until `shutdown` resolves.
pub async fn serve_edge_link(
    addr: std::net::SocketAddr,
    hub: EdgeHub,
    tls: Option<EdgeTls>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    let core_name = tls.as_ref().and_then(|t| t.core_name.clone());
    if let Some(tls) = tls {
        let mut cfg = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(tls.identity.cert, tls.identity.key));
        if let Some(ca) = tls.client_ca {
            cfg = cfg.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        builder = builder.tls_config(cfg).map_err(|e| format!("link TLS: {e}"))?;
    }
    builder
        .add_service(EdgeLinkServer::new(EdgeLinkService(hub, core_name)))
        .serve_with_shutdown(addr, shutdown)
        .await
        .map_err(|e| format!("cannot serve the core link on {addr}: {e}"))
}

/// Core side: keeps a link to one edge open, reconnecting with backoff, and answers each
/// request with `core`. Runs until the task is dropped.
pub async fn run_core_side(edge_url: String, core: Arc<dyn CoreLink>, tls: Option<CoreTls>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match connect_once(&edge_url, core.clone(), tls.as_ref()).await {
            Ok(()) => {
                tracing::warn!(edge = %edge_url, "edge link closed; reconnecting");
                backoff = Duration::from_millis(250);
            }
            Err(e) => {
                tracing::warn!(edge = %edge_url, error = %e, retry_in = ?backoff, "cannot reach edge");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn connect_once(edge_url: &str, core: Arc<dyn CoreLink>, tls: Option<&CoreTls>) -> Result<(), String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(edge_url.to_owned())
        .map_err(|e| format!("invalid edge URL: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        let mut cfg =
            tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca));
        if let Some(id) = &tls.identity {
            cfg = cfg.identity(tonic::transport::Identity::from_pem(&id.cert, &id.key));
        }
        endpoint = endpoint.tls_config(cfg).map_err(|e| format!("link TLS: {e}"))?;
    }
    // The error's source chain says why (refused, certificate unknown, ...).
    let channel = endpoint.connect().await.map_err(|e| onramp_proto::error_chain(&e))?;
    let mut client = EdgeLinkClient::new(channel);
    let (tx, rx) = mpsc::channel::<LinkFrame>(256);
    let mut requests = client.link(ReceiverStream::new(rx)).await.map_err(|e| status_text(&e))?.into_inner();
    tracing::info!(edge = %edge_url, "edge link up");
    let permits = Arc::new(Semaphore::new(CORE_CONCURRENCY));
    while let Some(frame) = requests.next().await {
        let frame = frame.map_err(|e| status_text(&e))?;
        // Wait for a free slot before reading on: backpressure, not unbounded tasks.
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let (core, tx) = (core.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let reply = match serde_json::from_slice::<EdgeRequest>(&frame.body) {
                Ok(req) => match core.call(req).await {
                    Ok(r) => r,
                    Err(_) => {
                        EdgeReply { id: frame.id, status: 503, body: serde_json::json!({"error": "core unavailable"}) }
                    }
                },
                Err(e) => EdgeReply {
                    id: frame.id,
                    status: 400,
                    body: serde_json::json!({"error": format!("bad link frame: {e}")}),
                },
            };
            let body = serde_json::to_vec(&reply.body).unwrap_or_default();
            let _ = tx.send(LinkFrame { id: frame.id, status: u32::from(reply.status), body }).await;
        });
    }
    Ok(())
}
