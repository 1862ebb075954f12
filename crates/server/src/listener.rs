//! The HTTP listeners (admin API, public edge, plain or HTTPS) with limits, so that idle
//! and slow clients cannot pile up until the process runs out of file descriptors:
//!
//! - a connection with no request under way is closed after the idle timeout;
//! - a request's header must arrive within the header timeout of its first byte (the TLS
//!   handshake included), however slowly it drips;
//! - its body must arrive within the body timeout of the header;
//! - each listener holds at most `max_connections`, and `max_connections_per_ip` per client
//!   address; connections past a cap are closed at once. Each listener has its own caps,
//!   so a flood on the public edge leaves the admin API reachable.
//!
//! HTTP/1.1 only: every timeout above is defined for it, and the API needs nothing more.

use crate::config::HttpLimits;
use axum::extract::ConnectInfo;
use hyper::body::{Bytes, Incoming};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

/// How long open connections may finish their request once shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// One listener's settings.
#[derive(Clone)]
pub struct Listener {
    /// Names the listener in logs ("admin API", "public edge").
    pub name: &'static str,
    pub limits: HttpLimits,
    /// Peers exempt from the per-IP cap: trusted reverse proxies carry many clients.
    pub exempt: Vec<ipnet::IpNet>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish
/// for a few seconds.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    cfg: Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let max = cfg.limits.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let per_ip: PerIp = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let refusals = Throttle::default();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, say: pause rather than spin; open connections go on.
                    if refusals.due() {
                        tracing::warn!(listener = cfg.name, error = %e, "cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refusals.due() {
                tracing::warn!(listener = cfg.name, max, "connection limit reached; closing new connections");
            }
            continue;
        };
        let exempt = cfg.exempt.iter().any(|n| n.contains(&peer.ip()));
        let Some(ip_slot) = IpSlot::take(&per_ip, peer.ip(), cfg.limits.max_connections_per_ip, exempt) else {
            if refusals.due() {
                tracing::warn!(listener = cfg.name, ip = %peer.ip(), "per-address connection limit reached");
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (cfg, router, stop) = (cfg.clone(), router.clone(), stop_rx.clone());
        tokio::spawn(async move {
            connection(tcp, peer, router, &cfg, stop).await;
            drop((slot, ip_slot));
        });
    }
    let _ = stop_tx.send(true);
    // Every connection holds a slot: all slots back means all connections ended.
    let _ = tokio::time::timeout(DRAIN + Duration::from_secs(1), slots.acquire_many(max as u32)).await;
    Ok(())
}

/// Logs a refusal at most once every ten seconds, so a flood does not flood the log too.
#[derive(Default)]
struct Throttle(AtomicU64);

impl Throttle {
    fn due(&self) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.0.load(Ordering::Relaxed);
        now >= last + 10 && self.0.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One connection's place in the per-address count; given back on drop.
struct IpSlot {
    map: PerIp,
    ip: Option<IpAddr>,
}

impl IpSlot {
    fn take(map: &PerIp, ip: IpAddr, max: usize, exempt: bool) -> Option<IpSlot> {
        if exempt {
            return Some(IpSlot { map: map.clone(), ip: None });
        }
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { map: map.clone(), ip: Some(ip) })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Where a connection stands, and since when.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// No request under way (just accepted, or answered).
    Idle,
    /// Bytes of a request (or of the TLS handshake) arrived; its header is not complete.
    Header,
    /// The application has the request.
    Busy,
}

#[derive(Clone, Copy)]
struct Phase {
    stage: Stage,
    since: Instant,
}

type PhaseTx = Arc<watch::Sender<Phase>>;

fn set(phase: &PhaseTx, stage: Stage) {
    phase.send_replace(Phase { stage, since: Instant::now() });
}

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    cfg: &Listener,
    stop: watch::Receiver<bool>,
) {
    let phase: PhaseTx = Arc::new(watch::channel(Phase { stage: Stage::Idle, since: Instant::now() }).0);
    let io = Watched { inner: tcp, phase: phase.clone() };
    match &cfg.tls {
        None => http(io, peer, router, cfg, phase, stop).await,
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            // The handshake counts as header time (or idle time until its first byte).
            let handshake = acceptor.accept(io);
            let stream = tokio::select! {
                r = handshake => r,
                () = expired(&phase, &cfg.limits) => return,
            };
            let Ok(stream) = stream else { return };
            http(stream, peer, router, cfg, phase, stop).await
        }
    }
}

async fn http<I>(
    io: I,
    peer: SocketAddr,
    router: axum::Router,
    cfg: &Listener,
    phase: PhaseTx,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let body_timeout = cfg.limits.body_timeout;
    let svc_phase = phase.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = BusyGuard(svc_phase.clone());
        set(&busy.0, Stage::Busy);
        let mut req = req.map(|b| axum::body::Body::new(DeadlineBody::new(b, body_timeout)));
        req.extensions_mut().insert(ConnectInfo(peer));
        let call = router.clone().oneshot(req);
        async move {
            let resp = call.await;
            drop(busy);
            resp
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    tokio::pin!(conn);
    let stopping = async move {
        // Only the signal matters, not the guard it comes with (which cannot cross an await).
        let _ = stop.wait_for(|s| *s).await.is_ok();
    };
    let shut_down = tokio::select! {
        _ = conn.as_mut() => false,
        () = expired(&phase, &cfg.limits) => false,
        () = stopping => true,
    };
    if shut_down {
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(DRAIN, conn).await;
    }
}

/// Marks the answer given (or the request abandoned): the connection is idle again.
struct BusyGuard(PhaseTx);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        set(&self.0, Stage::Idle);
    }
}

/// Resolves when the connection has stayed idle, or in one header, for too long.
async fn expired(phase: &PhaseTx, limits: &HttpLimits) {
    let mut rx = phase.subscribe();
    loop {
        let now = *rx.borrow_and_update();
        let limit = match now.stage {
            Stage::Idle => limits.idle_timeout,
            Stage::Header => limits.header_timeout,
            // The body has its own deadline, the application its own.
            Stage::Busy => {
                let _ = rx.changed().await;
                continue;
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(now.since + limit) => return,
            _ = rx.changed() => {}
        }
    }
}

/// The socket, noting when bytes arrive on an idle connection: a request (or handshake)
/// has begun and the header clock starts.
struct Watched<T> {
    inner: T,
    phase: PhaseTx,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.send_if_modified(|p| {
                let begun = p.stage == Stage::Idle;
                if begun {
                    *p = Phase { stage: Stage::Header, since: Instant::now() };
                }
                begun
            });
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that must be complete by a deadline; past it, reading fails (the
/// handler answers with an error and the connection closes).
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Self { inner, deadline: Box::pin(tokio::time::sleep(limit)), limit }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|f| f.map_err(std::io::Error::other))),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("request body not received within {} s", self.limit.as_secs()),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Raises the soft open-files limit to the hard one (as many runtimes do), so the
/// connection caps, not the descriptor limit, decide when connections are refused.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
                tracing::debug!("cannot raise the open-files limit");
            }
        }
    }
}
