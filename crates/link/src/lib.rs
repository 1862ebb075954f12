//! The network link between core and edge. Core dials each edge (the edge never reaches
//! core) and opens one bidirectional gRPC stream: the edge sends requests down it, core
//! answers each by id. Frames carry the JSON of `onramp_proto::link` messages.

use onramp_proto::link::{CoreLink, EdgeReply, EdgeRequest, LinkError, LinkFuture};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

include!(concat!(env!("OUT_DIR"), "/onramp.link.EdgeLink.rs"));

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

/// How long the edge waits for core's answer to one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

type Outbox = mpsc::Sender<Result<LinkFrame, Status>>;

/// Edge side: accepts core's connection and routes requests to it. Implements
/// [`CoreLink`] for the public API. Cheap to clone.
#[derive(Clone, Default)]
pub struct EdgeHub(Arc<HubInner>);

#[derive(Default)]
struct HubInner {
    /// The connected core's stream (the newest connection wins), with its generation.
    current: Mutex<Option<(u64, Outbox)>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<EdgeReply>>>,
    generation: AtomicU64,
}

impl EdgeHub {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CoreLink for EdgeHub {
    fn call(&self, req: EdgeRequest) -> LinkFuture<'_> {
        Box::pin(async move {
            let Some((_, out)) = EdgeHub::lock(&self.0.current).clone() else {
                return Err(LinkError::Disconnected);
            };
            let id = req.id;
            let body = serde_json::to_vec(&req).map_err(|_| LinkError::Disconnected)?;
            let (tx, rx) = oneshot::channel();
            EdgeHub::lock(&self.0.pending).insert(id, tx);
            if out.send(Ok(LinkFrame { id, status: 0, body })).await.is_err() {
                EdgeHub::lock(&self.0.pending).remove(&id);
                return Err(LinkError::Disconnected);
            }
            match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(LinkError::Disconnected),
                Err(_) => {
                    EdgeHub::lock(&self.0.pending).remove(&id);
                    Err(LinkError::Timeout)
                }
            }
        })
    }

    fn connected(&self) -> bool {
        EdgeHub::lock(&self.0.current).is_some()
    }
}

/// The gRPC service the edge serves to core; with a name, only a client certificate valid
/// for that DNS name may act as core.
#[derive(Clone)]
pub struct EdgeLinkService(pub EdgeHub, pub Option<String>);

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
        let peer = request.remote_addr();
        if let Some(name) = &self.1 {
            if let Err(why) = check_core_name(&request, name) {
                tracing::warn!(?peer, %why, "refused a link client that is not the configured core");
                return Err(Status::permission_denied(format!("not the configured core: {why}")));
            }
        }
        let mut replies = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let generation = self.0 .0.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *EdgeHub::lock(&self.0 .0.current) = Some((generation, tx));
        tracing::info!(?peer, "core connected");
        let hub = self.0.clone();
        tokio::spawn(async move {
            while let Some(frame) = replies.next().await {
                let Ok(frame) = frame else { break };
                let body = serde_json::from_slice(&frame.body).unwrap_or(serde_json::Value::Null);
                if let Some(waiter) = EdgeHub::lock(&hub.0.pending).remove(&frame.id) {
                    let _ = waiter.send(EdgeReply { id: frame.id, status: frame.status as u16, body });
                }
            }
            let mut current = EdgeHub::lock(&hub.0.current);
            if current.as_ref().is_some_and(|(g, _)| *g == generation) {
                *current = None;
                // Requests in flight on this connection will not be answered.
                EdgeHub::lock(&hub.0.pending).clear();
            }
            tracing::warn!(?peer, "core disconnected");
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
    let mut requests =
        client.link(ReceiverStream::new(rx)).await.map_err(|e| onramp_proto::error_chain(&e))?.into_inner();
    tracing::info!(edge = %edge_url, "edge link up");
    while let Some(frame) = requests.next().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let (core, tx) = (core.clone(), tx.clone());
        tokio::spawn(async move {
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
