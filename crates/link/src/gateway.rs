//! The network link between core and its gateways. A gateway dials core's gateway listener
//! (it needs no inbound port), sends its token as `authorization: Bearer ...` metadata and a
//! [`FromGateway::Hello`] as the first frame, and keeps one bidirectional stream open: core
//! sends [`ToGateway`] messages down it, the gateway sends stats up. Frames carry the JSON
//! of `onramp_proto::gateway` messages.

use crate::PemIdentity;
use onramp_proto::gateway::{
    FromGateway, GatewayControl, GatewayHello, GatewayRefusal, PeerStats, RefusalKind, ToGateway,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

pub use crate::gateway_link_client::GatewayLinkClient;
pub use crate::gateway_link_server::GatewayLinkServer;

/// One message on the gateway link, either direction: JSON of [`ToGateway`] or [`FromGateway`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct GatewayFrame {
    #[prost(bytes = "vec", tag = "1")]
    pub body: Vec<u8>,
}

impl GatewayFrame {
    fn of<T: serde::Serialize>(msg: &T) -> Self {
        // These types are plain structs and strings: serialising cannot fail.
        GatewayFrame { body: serde_json::to_vec(msg).unwrap_or_default() }
    }
}

/// How long core waits for the gateway's hello after the stream opens.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings on both sides, so a peer that vanished (power cut, cable) is noticed
/// within interval + timeout instead of when TCP gives up.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest frame either side sends or accepts. gRPC's default of 4 MiB would refuse a
/// `Full` of about 45,000 peers (or a first stats report of about 25,000); the gateway also
/// sends stats in chunks of [`STATS_CHUNK`] peers.
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;
/// The most peers the gateway puts in one stats report.
pub const STATS_CHUNK: usize = 2_000;

/// Marks a status as core's deliberate refusal (value: the [`RefusalKind`] in snake_case),
/// so the gateway can tell "core said no" from a transport failure with the same code.
const REFUSAL_HEADER: &str = "onramp-refusal";

pub fn kind_name(kind: RefusalKind) -> &'static str {
    match kind {
        RefusalKind::Unauthenticated => "unauthenticated",
        RefusalKind::KeyConflict => "key_conflict",
        RefusalKind::Invalid => "invalid",
        RefusalKind::Unavailable => "unavailable",
    }
}

/// The gRPC status that carries a refusal: its message is the refusal's message.
pub fn refusal_status(refusal: &GatewayRefusal) -> Status {
    let code = match refusal.kind {
        RefusalKind::Unauthenticated => tonic::Code::Unauthenticated,
        RefusalKind::KeyConflict => tonic::Code::FailedPrecondition,
        RefusalKind::Invalid => tonic::Code::InvalidArgument,
        RefusalKind::Unavailable => tonic::Code::Unavailable,
    };
    let mut meta = tonic::metadata::MetadataMap::new();
    meta.insert(REFUSAL_HEADER, tonic::metadata::MetadataValue::from_static(kind_name(refusal.kind)));
    Status::with_metadata(code, refusal.message.clone(), meta)
}

/// The refusal a status carries, if core sent it as one.
fn status_refusal(status: &Status) -> Option<GatewayRefusal> {
    let marker = status.metadata().get(REFUSAL_HEADER)?.to_str().ok()?;
    let kind = [RefusalKind::Unauthenticated, RefusalKind::KeyConflict, RefusalKind::Invalid, RefusalKind::Unavailable]
        .into_iter()
        .find(|k| kind_name(*k) == marker)?;
    Some(GatewayRefusal { kind, message: status.message().to_owned() })
}

/// How a public key from an unauthenticated hello appears in the log: itself if it is a
/// WireGuard key (44 characters of base64 for 32 bytes), else its length and at most its
/// first 64 characters, escaped (no newlines or control characters reach the log).
pub fn loggable_key(key: &str) -> String {
    const LAST: &str = "AEIMQUYcgkosw048"; // a 43rd character that leaves no stray bits
    let b = key.as_bytes();
    let is_key = b.len() == 44
        && b[43] == b'='
        && b[..42].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        && LAST.as_bytes().contains(&b[42]);
    if is_key {
        return key.to_owned();
    }
    let head: String = key.chars().take(64).collect();
    let more = if head.len() < key.len() { "..." } else { "" };
    format!("<not a key, {} bytes: {}{more}>", key.len(), head.escape_default())
}

fn refuse(kind: RefusalKind, message: impl Into<String>) -> Status {
    refusal_status(&GatewayRefusal { kind, message: message.into() })
}

/// Core's gRPC service for gateways: authenticates each stream through [`GatewayControl`]
/// and relays updates down and stats up.
#[derive(Clone)]
pub struct GatewayLinkService {
    control: Arc<dyn GatewayControl>,
    hello_timeout: Duration,
}

impl GatewayLinkService {
    pub fn new(control: Arc<dyn GatewayControl>) -> Self {
        Self { control, hello_timeout: HELLO_TIMEOUT }
    }

    pub fn with_hello_timeout(mut self, timeout: Duration) -> Self {
        self.hello_timeout = timeout;
        self
    }

    pub fn into_server(self) -> GatewayLinkServer<Self> {
        GatewayLinkServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

/// The token from `authorization: Bearer <token>`, or why there is none.
fn bearer_token<T>(request: &Request<T>) -> Result<String, &'static str> {
    let value = request.metadata().get("authorization").ok_or("no gateway token (authorization metadata missing)")?;
    let text = value.to_str().map_err(|_| "gateway token is not printable ASCII")?;
    match text.strip_prefix("Bearer ").map(str::trim) {
        Some(t) if !t.is_empty() => Ok(t.to_owned()),
        _ => Err("authorization metadata must be \"Bearer <token>\""),
    }
}

#[tonic::async_trait]
impl crate::gateway_link_server::GatewayLink for GatewayLinkService {
    type SessionStream = ReceiverStream<Result<GatewayFrame, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<GatewayFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let remote = request.remote_addr();
        let token = bearer_token(&request).map_err(|why| refuse(RefusalKind::Unauthenticated, why))?;
        let mut incoming = request.into_inner();
        let first = match tokio::time::timeout(self.hello_timeout, incoming.next()).await {
            Err(_) => return Err(refuse(RefusalKind::Invalid, "no hello within the timeout")),
            Ok(None) => return Err(refuse(RefusalKind::Invalid, "stream closed before the hello")),
            Ok(Some(Err(e))) => return Err(Status::cancelled(format!("stream failed before the hello: {e}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        let hello = match serde_json::from_slice::<FromGateway>(&first.body) {
            Ok(FromGateway::Hello(h)) => h,
            Ok(_) => return Err(refuse(RefusalKind::Invalid, "the first frame must be a hello")),
            Err(e) => return Err(refuse(RefusalKind::Invalid, format!("unreadable hello: {e}"))),
        };
        // Unauthenticated input: logged as itself only once it has a key's shape.
        let pubkey = loggable_key(&hello.pubkey);
        let session = match self.control.open(token, hello, remote.map(|a| a.to_string())).await {
            Ok(s) => s,
            Err(refusal) => {
                tracing::warn!(remote = %crate::addr_text(remote), %pubkey, kind = kind_name(refusal.kind), reason = %refusal.message, "gateway refused");
                return Err(refusal_status(&refusal));
            }
        };
        let location = session.location.clone();
        tracing::info!(remote = %crate::addr_text(remote), %location, %pubkey, "gateway connected");
        let (tx, rx) = mpsc::channel(64);
        let mut updates = session.updates;
        let reporter = session.reporter;
        tokio::spawn(async move {
            let down = async {
                while let Some(msg) = updates.next().await {
                    if tx.send(Ok(GatewayFrame::of(&msg))).await.is_err() {
                        break;
                    }
                }
            };
            let up = async {
                while let Some(frame) = incoming.next().await {
                    let Ok(frame) = frame else { break };
                    match serde_json::from_slice::<FromGateway>(&frame.body) {
                        Ok(FromGateway::Stats { peers }) => reporter.stats(peers).await,
                        Ok(FromGateway::Hello(_)) => tracing::warn!(%location, "ignored a second hello"),
                        Err(e) => tracing::warn!(%location, error = %e, "ignored an unreadable gateway frame"),
                    }
                }
            };
            // Either side ending ends the session; dropping `tx` closes the gateway's stream.
            tokio::select! {
                _ = down => {}
                _ = up => {}
            }
            reporter.closed().await;
            tracing::info!(remote = %crate::addr_text(remote), %location, "gateway disconnected");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Serves the gateway listener on `listener`, with TLS when an identity is given, until
/// `shutdown` resolves.
pub async fn serve_gateway_link(
    listener: tokio::net::TcpListener,
    control: Arc<dyn GatewayControl>,
    tls: Option<PemIdentity>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(id) = tls {
        let cfg =
            tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(id.cert, id.key));
        builder = builder.tls_config(cfg).map_err(|e| format!("gateway listener TLS: {e}"))?;
    }
    let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, None)
        .map_err(|e| format!("gateway listener on {addr}: {e}"))?;
    builder
        .add_service(GatewayLinkService::new(control).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| format!("cannot serve gateways on {addr}: {e}"))
}

/// Why a gateway could not open a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Core answered and said no (bad token, key conflict, ...).
    Refused(GatewayRefusal),
    /// Core was not reached or the stream failed: unreachable, TLS, protocol.
    Transport(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused(r) => write!(f, "core refused this gateway ({}): {}", kind_name(r.kind), r.message),
            ConnectError::Transport(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// The gateway's token. `Debug` never shows it.
#[derive(Clone)]
pub struct GatewayToken(String);

impl GatewayToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl std::fmt::Debug for GatewayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayToken(<redacted>)")
    }
}

/// An open session, gateway side.
pub struct GatewayConnection {
    updates: Streaming<GatewayFrame>,
    reports: mpsc::Sender<GatewayFrame>,
}

impl GatewayConnection {
    /// The next message from core. `Ok(None)`: core ended the session. A frame that does
    /// not parse is an error: the two sides disagree about the protocol.
    pub async fn next(&mut self) -> Result<Option<ToGateway>, String> {
        match self.updates.next().await {
            None => Ok(None),
            Some(Err(status)) => Err(format!("link failed: {}", crate::status_text(&status))),
            Some(Ok(frame)) => {
                serde_json::from_slice(&frame.body).map(Some).map_err(|e| format!("unreadable message from core: {e}"))
            }
        }
    }

    /// Sends one stats report, as frames of at most [`STATS_CHUNK`] peers. Fails once the
    /// stream is gone.
    pub async fn send_stats(&self, peers: Vec<PeerStats>) -> Result<(), String> {
        for chunk in peers.chunks(STATS_CHUNK) {
            let frame = GatewayFrame::of(&FromGateway::Stats { peers: chunk.to_vec() });
            self.reports.send(frame).await.map_err(|_| "link closed".to_owned())?;
        }
        Ok(())
    }
}

/// Dials core at `url` (`https://` needs `ca_pem`, the CA of core's certificate; `http://`
/// is plaintext), presents `token` and `hello`, and returns the open session.
pub async fn connect_gateway(
    url: &str,
    token: &GatewayToken,
    hello: &GatewayHello,
    ca_pem: Option<&[u8]>,
) -> Result<GatewayConnection, ConnectError> {
    let transport = |e: String| ConnectError::Transport(e);
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| transport(format!("invalid core URL {url}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    if url.starts_with("https://") {
        let ca = ca_pem.ok_or_else(|| transport(format!("{url} uses TLS: the CA of core's certificate is needed")))?;
        let cfg = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca));
        endpoint = endpoint.tls_config(cfg).map_err(|e| transport(format!("TLS: {e}")))?;
    }
    let channel = endpoint.connect().await.map_err(|e| transport(onramp_proto::error_chain(&e)))?;
    let (tx, rx) = mpsc::channel::<GatewayFrame>(16);
    // The hello is queued before the call, so core reads it as the first frame.
    tx.send(GatewayFrame::of(&FromGateway::Hello(hello.clone()))).await.map_err(|_| transport("link closed".into()))?;
    let mut request = Request::new(ReceiverStream::new(rx));
    let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = format!("Bearer {}", token.0)
        .parse()
        .map_err(|_| ConnectError::Transport("the gateway token holds characters not allowed in a header".into()))?;
    // Kept out of HTTP/2 header compression tables.
    value.set_sensitive(true);
    request.metadata_mut().insert("authorization", value);
    let mut client = GatewayLinkClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    match client.session(request).await {
        Ok(resp) => Ok(GatewayConnection { updates: resp.into_inner(), reports: tx }),
        Err(status) => Err(match status_refusal(&status) {
            Some(r) => ConnectError::Refused(r),
            None => transport(crate::status_text(&status)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_key_is_logged_as_itself() {
        let key = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
        assert_eq!(loggable_key(key), key);
        let zeros = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert_eq!(loggable_key(zeros), zeros);
        // Stray bits in the last character, a wrong length, a wrong alphabet: not keys.
        for bad in
            ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=", "AAAA", "", "yAnz5TF-lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="]
        {
            let shown = loggable_key(bad);
            assert!(shown.starts_with("<not a key, "), "{shown}");
        }
        // Megabytes with newlines: one short line.
        let evil = format!("x\nFAKE LOG LINE level=error\n{}", "y".repeat(4 << 20));
        let shown = loggable_key(&evil);
        assert!(shown.len() < 120 && !shown.contains('\n'), "{shown}");
        assert!(shown.contains(&format!("{} bytes", evil.len())) && shown.ends_with("...>"), "{shown}");
        assert!(shown.contains("x\\nFAKE"), "escaped: {shown}");
        assert_eq!(loggable_key("a\u{1b}[31m"), "<not a key, 6 bytes: a\\u{1b}[31m>");
    }
}
