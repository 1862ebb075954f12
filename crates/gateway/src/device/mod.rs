//! The gateway's userspace WireGuard device: boringtun's Noise protocol (`noise::Tunn`),
//! driven by our own loop over /dev/net/tun and UDP, configured through the usual socket
//! (/var/run/wireguard/IFACE.sock: `wg show` and `wg set` work on it).
//!
//! Why not boringtun's own device: it builds a `Tunn` (eight inline sessions and a 256-slot
//! queue, ~14 KB) and two routing tries (~8 KB) for every configured peer, so a location of
//! 10,000 devices cost ~230 MB before a single one connected. Here a configured peer is its
//! key, addresses and counters (a few hundred bytes) plus its routes in one shared table; its
//! `Tunn` exists only from its first handshake (or first packet to send) until its session
//! expires, as a kernel peer's keys are zeroed then. Most of a large location is idle at any
//! time, and idle peers cost almost nothing.
//!
//! Threads: one reads the tunnel, one per UDP socket reads the network, one runs timers, one
//! serves the configuration socket. Locks are taken in one order: the state, then a peer.

pub mod uapi;

use defguard_boringtun::device::tun::TunSocket;
use defguard_boringtun::noise::errors::WireGuardError;
use defguard_boringtun::noise::handshake::parse_handshake_anon;
use defguard_boringtun::noise::rate_limiter::RateLimiter;
use defguard_boringtun::noise::{Packet, Tunn, TunnResult};
use defguard_boringtun::x25519::{PublicKey, StaticSecret};
use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use uapi::{PeerInfo, Refused, SetRequest};

/// Handshake messages per second before the device answers with cookies instead (the
/// protocol's DoS defence). Each initiation is counted twice (once to find its peer, once in
/// the peer's `Tunn`), so this is 100 a second.
const HANDSHAKE_LIMIT: u64 = 200;
/// How often session timers run (WireGuard's timers have this resolution).
const TICK: Duration = Duration::from_millis(250);
/// How long a blocking wait lasts before its thread checks whether to stop.
const WAKE: Duration = Duration::from_millis(500);
/// The largest datagram or tunnel packet, and room for the encryption overhead.
const BUF: usize = 65_536 + 64;
/// How long one configuration client may stay silent. Connections are served one at a
/// time (changes are serialized anyway), so a client that connects and says nothing holds
/// up the others this long; local tools send their request at once.
const UAPI_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the configuration socket of `iface` is.
pub fn socket_path(iface: &str) -> PathBuf {
    PathBuf::from(crate::wg::SOCKET_DIR).join(format!("{iface}.sock"))
}

struct Keys {
    secret: StaticSecret,
    public: PublicKey,
    limiter: Arc<RateLimiter>,
}

struct Peer {
    key: [u8; 32],
    /// The `Tunn` index (24 bits), fixed for the peer's life so that finding a peer by
    /// index never needs the state's write lock.
    index: u32,
    s: Mutex<PeerState>,
}

#[derive(Default)]
struct PeerState {
    /// Normalised (host bits cleared).
    allowed: Vec<(IpAddr, u8)>,
    psk: Option<[u8; 32]>,
    keepalive: Option<u16>,
    endpoint: Option<SocketAddr>,
    /// Only while a handshake or session is live (see the module docs).
    tunn: Option<Box<Tunn>>,
    /// Bytes of retired sessions.
    rx: u64,
    tx: u64,
    /// Since the Unix epoch, as of the last retired or observed session.
    last_handshake: Option<Duration>,
}

impl PeerState {
    fn tunn(&mut self, keys: &Keys, key: &[u8; 32], index: u32) -> &mut Tunn {
        let (psk, keepalive) = (self.psk, self.keepalive);
        self.tunn.get_or_insert_with(|| {
            Box::new(Tunn::new(
                keys.secret.clone(),
                PublicKey::from(*key),
                psk,
                keepalive,
                index,
                Some(keys.limiter.clone()),
            ))
        })
    }

    /// Drops the session state and keeps its counters: the next handshake starts afresh.
    fn retire(&mut self) {
        if let Some(t) = self.tunn.take() {
            let (_, tx, rx, ..) = t.stats();
            self.tx += tx as u64;
            self.rx += rx as u64;
            if let Some(h) = t.last_handshake_time() {
                self.last_handshake = Some(h);
            }
        }
    }

    fn allows(&self, src: IpAddr) -> bool {
        self.allowed.iter().any(|&(a, c)| net(a, c).is_some_and(|n| n.contains(src)))
    }

    fn info(&self, key: [u8; 32]) -> PeerInfo {
        let (mut rx, mut tx, mut last) = (self.rx, self.tx, self.last_handshake);
        if let Some(t) = &self.tunn {
            let (_, t_tx, t_rx, ..) = t.stats();
            rx += t_rx as u64;
            tx += t_tx as u64;
            last = t.last_handshake_time().or(last);
        }
        PeerInfo {
            key,
            preshared_key: self.psk,
            endpoint: self.endpoint,
            keepalive: self.keepalive,
            allowed_ips: self.allowed.clone(),
            last_handshake: last,
            rx_bytes: rx,
            tx_bytes: tx,
        }
    }
}

fn net(addr: IpAddr, cidr: u8) -> Option<IpNetwork> {
    IpNetwork::new_truncate(addr, cidr).ok()
}

struct State {
    keys: Option<Keys>,
    listen_port: u16,
    fwmark: u32,
    peers: HashMap<[u8; 32], Arc<Peer>>,
    by_index: HashMap<u32, Arc<Peer>>,
    routes: IpNetworkTable<Arc<Peer>>,
    next_index: u32,
}

impl Default for State {
    fn default() -> Self {
        Self {
            keys: None,
            listen_port: 0,
            fwmark: 0,
            peers: HashMap::new(),
            by_index: HashMap::new(),
            routes: IpNetworkTable::new(),
            next_index: 0,
        }
    }
}

impl State {
    fn alloc_index(&mut self) -> u32 {
        loop {
            self.next_index = (self.next_index + 1) & 0x00ff_ffff;
            if self.next_index != 0 && !self.by_index.contains_key(&self.next_index) {
                return self.next_index;
            }
        }
    }

    fn unroute(&mut self, peer: &Arc<Peer>, allowed: &[(IpAddr, u8)]) {
        for &(a, c) in allowed {
            if let Some(n) = net(a, c) {
                if self.routes.exact_match(n).is_some_and(|p| Arc::ptr_eq(p, peer)) {
                    self.routes.remove(n);
                }
            }
        }
    }

    fn remove_peer(&mut self, key: &[u8; 32]) {
        if let Some(p) = self.peers.remove(key) {
            let allowed = std::mem::take(&mut lock(&p.s).allowed);
            self.unroute(&p, &allowed);
            self.by_index.remove(&p.index);
        }
    }
}

/// The device's UDP sockets for one listen port.
struct Udp {
    v4: UdpSocket,
    v6: Option<UdpSocket>,
    port: u16,
    generation: u64,
}

impl Udp {
    fn bind(port: u16, fwmark: u32, generation: u64) -> std::io::Result<Udp> {
        let v4 = bind_one(SocketAddr::from(([0, 0, 0, 0], port)), fwmark)?;
        let port = v4.local_addr()?.port();
        // IPv6 may be off on the host; IPv4 alone still serves.
        let v6 = match bind_one(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)), fwmark) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(error = %e, "no IPv6 socket for WireGuard");
                None
            }
        };
        Ok(Udp { v4, v6, port, generation })
    }

    fn send(&self, to: SocketAddr, data: &[u8]) {
        let sock = match to {
            SocketAddr::V4(_) => Some(&self.v4),
            SocketAddr::V6(_) => self.v6.as_ref(),
        };
        if let Some(s) = sock {
            if let Err(e) = s.send_to(data, to) {
                tracing::trace!(error = %e, %to, "WireGuard send failed");
            }
        }
    }

    fn set_mark(&self, mark: u32) {
        for s in std::iter::once(&self.v4).chain(self.v6.as_ref()) {
            if let Err(e) = socket2::SockRef::from(s).set_mark(mark) {
                tracing::warn!(error = %e, "cannot set fwmark on the WireGuard socket");
            }
        }
    }
}

fn bind_one(addr: SocketAddr, fwmark: u32) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if fwmark != 0 {
        s.set_mark(fwmark)?;
    }
    s.bind(&addr.into())?;
    s.set_read_timeout(Some(WAKE))?;
    Ok(s.into())
}

struct Inner {
    name: String,
    tun: TunSocket,
    state: RwLock<State>,
    udp: RwLock<Option<Arc<Udp>>>,
    generation: AtomicU64,
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn udp(&self) -> Option<Arc<Udp>> {
        self.udp.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn spawn(self: &Arc<Self>, what: &str, f: impl FnOnce(Arc<Inner>) + Send + 'static) -> std::io::Result<()> {
        let me = self.clone();
        let h = std::thread::Builder::new().name(format!("wg-{what}")).spawn(move || f(me))?;
        lock(&self.threads).push(h);
        Ok(())
    }

    /// A datagram from the network.
    fn on_datagram(&self, udp: &Udp, data: &[u8], from: SocketAddr, out: &mut [u8]) {
        let st = self.read();
        let Some(keys) = &st.keys else { return };
        let (peer, is_init) = match Tunn::parse_incoming_packet(data) {
            Ok(Packet::HandshakeInit(_)) => {
                // The MAC (and, under load, the cookie) before any Diffie-Hellman.
                let init = match keys.limiter.verify_packet(Some(from.ip()), data, out) {
                    Ok(Packet::HandshakeInit(p)) => p,
                    Err(TunnResult::WriteToNetwork(cookie)) => return udp.send(from, cookie),
                    _ => return,
                };
                let Ok(half) = parse_handshake_anon(&keys.secret, &keys.public, &init) else { return };
                (st.peers.get(&half.peer_static_public), true)
            }
            Ok(Packet::HandshakeResponse(p)) => (st.by_index.get(&(p.receiver_idx >> 8)), false),
            Ok(Packet::PacketCookieReply(p)) => (st.by_index.get(&(p.receiver_idx >> 8)), false),
            Ok(Packet::PacketData(p)) => (st.by_index.get(&(p.receiver_idx >> 8)), false),
            Err(_) => return,
        };
        let Some(peer) = peer else { return };
        let mut ps = lock(&peer.s);
        if ps.tunn.is_none() && !is_init {
            // A session from before this peer's state was retired: nothing to decrypt with.
            return;
        }
        let tunn = ps.tunn(keys, &peer.key, peer.index);
        let mut wrote = None;
        let mut accepted = true;
        match tunn.decapsulate(Some(from.ip()), data, out) {
            TunnResult::Done => {}
            TunnResult::Err(e) => {
                tracing::trace!(error = ?e, %from, "WireGuard packet dropped");
                accepted = false;
            }
            TunnResult::WriteToNetwork(p) => {
                udp.send(from, p);
                // Packets queued while the handshake ran go out now.
                while let TunnResult::WriteToNetwork(p) = tunn.decapsulate(None, &[], out) {
                    udp.send(from, p);
                }
            }
            TunnResult::WriteToTunnelV4(p, src) => wrote = Some((p.len(), IpAddr::V4(src))),
            TunnResult::WriteToTunnelV6(p, src) => wrote = Some((p.len(), IpAddr::V6(src))),
        }
        if accepted {
            // Roaming: the peer is wherever its last authenticated packet came from.
            ps.endpoint = Some(from);
        }
        if let Some((len, src)) = wrote {
            // A peer may only send from its own addresses.
            if ps.allows(src) {
                let _ = if src.is_ipv4() { self.tun.write4(&out[..len]) } else { self.tun.write6(&out[..len]) };
            }
        }
    }

    /// A packet from the tunnel interface, to be sent to the peer that owns its destination.
    fn on_tun_packet(&self, packet: &[u8], out: &mut [u8]) {
        let Some(dst) = Tunn::dst_address(packet) else { return };
        let st = self.read();
        let Some(keys) = &st.keys else { return };
        let Some((_, peer)) = st.routes.longest_match(dst) else { return };
        let mut ps = lock(&peer.s);
        // Without an endpoint there is nowhere to send; the peer has to reach us first.
        let Some(to) = ps.endpoint else { return };
        let tunn = ps.tunn(keys, &peer.key, peer.index);
        if let TunnResult::WriteToNetwork(p) = tunn.encapsulate(packet, out) {
            if let Some(udp) = self.udp() {
                udp.send(to, p);
            }
        }
    }

    /// Runs every live session's timers; retires sessions that expired.
    fn on_tick(&self, out: &mut [u8], reset_limiter: bool) {
        let st = self.read();
        let Some(keys) = &st.keys else { return };
        if reset_limiter {
            keys.limiter.reset_count();
        }
        let udp = self.udp();
        for peer in st.peers.values() {
            let mut ps = lock(&peer.s);
            let to = ps.endpoint;
            let keepalive = ps.keepalive;
            let Some(t) = ps.tunn.as_mut() else { continue };
            match t.update_timers(out) {
                TunnResult::WriteToNetwork(p) => {
                    if let (Some(udp), Some(to)) = (&udp, to) {
                        udp.send(to, p);
                    }
                }
                // A peer with keepalives keeps trying, as it was told to.
                TunnResult::Err(WireGuardError::ConnectionExpired) if keepalive.is_none() => ps.retire(),
                _ => {}
            }
        }
    }

    fn get(&self) -> String {
        let st = self.read();
        let mut out = String::with_capacity(64 + st.peers.len() * 300);
        let private = st.keys.as_ref().map(|k| k.secret.to_bytes());
        uapi::write_interface(&mut out, private.as_ref(), st.listen_port, st.fwmark);
        for p in st.peers.values() {
            uapi::write_peer(&mut out, &lock(&p.s).info(p.key));
        }
        out
    }

    /// Applies a parsed `set=1` request. A new listen port is bound first, so a port in use
    /// refuses the whole request before anything changed.
    fn set(self: &Arc<Self>, req: SetRequest) -> Result<(), Refused> {
        let fwmark = req.fwmark.unwrap_or_else(|| self.read().fwmark);
        let current_port = self.udp().map(|u| u.port);
        // A device with a key and no port listens on a random one, as WireGuard does.
        let keyed = matches!(req.private_key, Some(Some(_))) || self.read().keys.is_some();
        let port = req.listen_port.or((keyed && current_port.is_none()).then_some(0));
        let new_udp = match port {
            Some(p) if current_port.is_none() || (p != 0 && Some(p) != current_port) => {
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                Some(Udp::bind(p, fwmark, generation).map_err(|e| Refused {
                    errno: e.raw_os_error().unwrap_or(uapi::EADDRINUSE),
                    why: format!("cannot listen on UDP port {p}: {e}"),
                })?)
            }
            _ => None,
        };
        let mut st = self.write();
        if let Some(key) = req.private_key {
            st.keys = key.map(|k| {
                let secret = StaticSecret::from(k);
                let public = PublicKey::from(&secret);
                let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_LIMIT));
                Keys { secret, public, limiter }
            });
            // Sessions were made with the old key.
            for p in st.peers.values() {
                lock(&p.s).retire();
            }
        }
        if let Some(m) = req.fwmark {
            st.fwmark = m;
            if let Some(u) = self.udp() {
                u.set_mark(m);
            }
        }
        if let Some(udp) = new_udp {
            st.listen_port = udp.port;
            let udp = Arc::new(udp);
            *self.udp.write().unwrap_or_else(|p| p.into_inner()) = Some(udp.clone());
            // The old sockets' threads see the new generation and end.
            let v6 = udp.v6.is_some();
            let u = udp.clone();
            self.spawn("udp4", move |me| me.udp_loop(u, false)).map_err(thread_refused)?;
            if v6 {
                self.spawn("udp6", move |me| me.udp_loop(udp, true)).map_err(thread_refused)?;
            }
        }
        if req.replace_peers {
            for p in st.peers.values() {
                lock(&p.s).retire();
            }
            st.peers.clear();
            st.by_index.clear();
            st.routes = IpNetworkTable::new();
        }
        for pc in req.peers {
            if pc.remove {
                st.remove_peer(&pc.key);
                continue;
            }
            let peer = match st.peers.get(&pc.key) {
                Some(p) => p.clone(),
                None if pc.update_only => continue,
                None => {
                    let index = st.alloc_index();
                    let p = Arc::new(Peer { key: pc.key, index, s: Mutex::new(PeerState::default()) });
                    st.peers.insert(pc.key, p.clone());
                    st.by_index.insert(index, p.clone());
                    p
                }
            };
            let mut ps = lock(&peer.s);
            let mut fresh_session = false;
            if let Some(psk) = pc.preshared_key {
                fresh_session |= ps.psk != psk;
                ps.psk = psk;
            }
            if let Some(ka) = pc.keepalive {
                let ka = (ka != 0).then_some(ka);
                fresh_session |= ps.keepalive != ka;
                ps.keepalive = ka;
            }
            if let Some(e) = pc.endpoint {
                ps.endpoint = Some(e);
            }
            if fresh_session {
                // A `Tunn` takes these at creation; the next packet builds one with them.
                ps.retire();
            }
            if pc.replace_allowed_ips {
                let old = std::mem::take(&mut ps.allowed);
                st.unroute(&peer, &old);
            }
            for (a, c) in pc.allowed_ips {
                let Some(n) = net(a, c) else { continue };
                let entry = (n.network_address(), n.netmask());
                // An address belongs to one peer: giving it here takes it from another.
                if let Some(prev) = st.routes.insert(n, peer.clone()) {
                    if !Arc::ptr_eq(&prev, &peer) {
                        lock(&prev.s).allowed.retain(|x| *x != entry);
                    }
                }
                if !ps.allowed.contains(&entry) {
                    ps.allowed.push(entry);
                }
            }
            // A peer told to keep the link alive starts its handshake without waiting for
            // traffic, as WireGuard does.
            if ps.keepalive.is_some() && ps.endpoint.is_some() && ps.tunn.is_none() {
                if let Some(keys) = &st.keys {
                    ps.tunn(keys, &peer.key, peer.index);
                }
            }
        }
        Ok(())
    }

    fn udp_loop(self: Arc<Self>, udp: Arc<Udp>, v6: bool) {
        let mut buf = vec![0u8; BUF];
        let mut out = vec![0u8; BUF];
        let sock = if v6 { udp.v6.as_ref() } else { Some(&udp.v4) };
        let Some(sock) = sock else { return };
        while !self.stop.load(Ordering::Relaxed) && self.generation.load(Ordering::SeqCst) == udp.generation {
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => self.on_datagram(&udp, &buf[..n], from, &mut out),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // ICMP errors surface here (ECONNREFUSED); they concern one peer, not the socket.
                Err(e) => tracing::trace!(error = %e, "WireGuard receive"),
            }
        }
    }

    fn tun_loop(self: Arc<Self>, on_failure: Option<Box<dyn FnOnce(String) + Send>>) {
        let mut buf = vec![0u8; BUF];
        let mut out = vec![0u8; BUF];
        let fd = self.tun.as_raw_fd();
        while !self.stop.load(Ordering::Relaxed) {
            if !readable(fd, WAKE) {
                continue;
            }
            match self.tun.read(&mut buf) {
                Ok(p) => {
                    let n = p.len();
                    self.on_tun_packet(&buf[..n], &mut out);
                }
                Err(e) => {
                    let text = format!("{e:?}");
                    if text.contains("WouldBlock") || text.contains("Interrupted") {
                        continue;
                    }
                    if !self.stop.load(Ordering::Relaxed) {
                        tracing::error!(interface = %self.name, error = %text, "the tunnel interface failed");
                        if let Some(f) = on_failure {
                            f(text);
                        }
                    }
                    return;
                }
            }
        }
    }

    fn timer_loop(self: Arc<Self>) {
        let mut out = vec![0u8; BUF];
        let mut last_reset = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            let reset = last_reset.elapsed() >= Duration::from_secs(1);
            if reset {
                last_reset = Instant::now();
            }
            self.on_tick(&mut out, reset);
        }
    }

    fn uapi_loop(self: Arc<Self>, listener: UnixListener) {
        let fd = listener.as_raw_fd();
        while !self.stop.load(Ordering::Relaxed) {
            if !readable(fd, WAKE) {
                continue;
            }
            if let Ok((stream, _)) = listener.accept() {
                if let Err(e) = self.serve_uapi(stream) {
                    tracing::debug!(error = %e, "configuration client");
                }
            }
        }
    }

    /// Answers requests on one connection until it closes.
    fn serve_uapi(self: &Arc<Self>, stream: UnixStream) -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(UAPI_TIMEOUT))?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let answer = match line.trim_end_matches('\n') {
                "get=1" => {
                    read_request(&mut reader)?;
                    let mut a = self.get();
                    a.push_str("errno=0\n\n");
                    a
                }
                "set=1" => {
                    let lines = read_request(&mut reader)?;
                    let errno = match uapi::parse_set(lines.iter().map(String::as_str)).and_then(|r| self.set(r)) {
                        Ok(()) => 0,
                        Err(r) => {
                            tracing::warn!(interface = %self.name, why = %r.why, "refused a configuration change");
                            r.errno
                        }
                    };
                    format!("errno={errno}\n\n")
                }
                "" => continue,
                _ => format!("errno={}\n\n", uapi::EINVAL),
            };
            writer.write_all(answer.as_bytes())?;
        }
    }
}

/// The lines of one request, up to the empty line.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = l.trim_end_matches('\n');
        if l.is_empty() {
            return Ok(lines);
        }
        lines.push(l.to_owned());
    }
}

fn thread_refused(e: std::io::Error) -> Refused {
    Refused { errno: e.raw_os_error().unwrap_or(uapi::EINVAL), why: format!("cannot start a device thread: {e}") }
}

/// Waits up to `wait` for `fd` to be readable.
fn readable(fd: i32, wait: Duration) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the call's duration.
    let n = unsafe { libc::poll(&mut p, 1, wait.as_millis() as i32) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// A running device. Dropping it (or [`Device::stop`]) ends its threads and removes its
/// configuration socket; the tunnel interface goes when its file descriptor closes.
pub struct Device {
    inner: Arc<Inner>,
    socket: PathBuf,
}

impl Device {
    /// Creates the tunnel interface `name` and its configuration socket. `on_failure` hears
    /// when the interface fails on its own (it was deleted, say).
    pub fn start(name: &str, on_failure: Option<Box<dyn FnOnce(String) + Send>>) -> Result<Device, String> {
        let tun = TunSocket::new(name).map_err(|e| {
            format!("cannot create tunnel interface {name}: {e:?} (is /dev/net/tun there, and are we root?)")
        })?;
        let socket = socket_path(name);
        std::fs::create_dir_all(crate::wg::SOCKET_DIR)
            .map_err(|e| format!("cannot create {}: {e}", crate::wg::SOCKET_DIR))?;
        // A socket left by a dead device would refuse the bind.
        let _ = std::fs::remove_file(&socket);
        let listener =
            UnixListener::bind(&socket).map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            tun,
            state: RwLock::new(State::default()),
            udp: RwLock::new(None),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let device = Device { inner: inner.clone(), socket };
        let started = inner
            .spawn("tun", move |me| me.tun_loop(on_failure))
            .and_then(|_| inner.spawn("timers", |me| me.timer_loop()))
            .and_then(|_| inner.spawn("config", move |me| me.uapi_loop(listener)));
        started.map_err(|e| format!("cannot start the device threads: {e}"))?;
        Ok(device)
    }

    /// Ends the device's threads and removes its socket. Idempotent.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        // A configuration change under way may start socket threads meanwhile: drain again.
        loop {
            let threads: Vec<_> = lock(&self.inner.threads).drain(..).collect();
            if threads.is_empty() {
                break;
            }
            for t in threads {
                let _ = t.join();
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Peers configured, and peers with a live session (for tests and benchmarks).
    pub fn peer_counts(&self) -> (usize, usize) {
        let st = self.inner.read();
        let live = st.peers.values().filter(|p| lock(&p.s).tunn.is_some()).count();
        (st.peers.len(), live)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop();
    }
}
