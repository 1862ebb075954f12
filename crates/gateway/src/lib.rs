//! The WireGuard gateway agent (`onramp gateway`): beside one location's WireGuard
//! interface, it dials core with the location's token, gets the whole peer set and then
//! each change, applies only the differences to the interface, and reports handshakes and
//! byte counters. When core is away it keeps the interface and peers as they are (fail
//! static) and reconnects with backoff; when core refuses it (token revoked, location
//! deleted, its key rotated away) it removes every peer and keeps asking. See DESIGN.md,
//! "gateway".

pub mod config;
pub mod device;
pub mod keys;
pub mod masq;
pub mod wg;

pub use config::{GatewayArgs, GatewayConfig};

use anyhow::Context;
use onramp_link::gateway::{connect_gateway, ConnectError, GatewayConnection};
use onramp_proto::gateway::{GatewayHello, GatewayRefusal, PeerStats, RefusalKind, ToGateway};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A session that lasted this long was healthy: the next reconnect starts at [`MIN_BACKOFF`].
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// Runs the gateway until `shutdown` resolves, then removes the interface (and its NAT
/// rules). Errors only for what retrying cannot fix: settings, key, health address.
pub async fn run(cfg: GatewayConfig, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    if cfg.masquerade {
        masq::check_available().map_err(anyhow::Error::msg)?;
    }
    let userspace = cfg.mode == wg::Mode::Userspace || !wg::kernel_module_loaded();
    if userspace {
        if !std::path::Path::new("/dev/net/tun").exists() {
            anyhow::bail!("userspace WireGuard needs /dev/net/tun (modprobe tun, or pass the device to the container)");
        }
        // Fail at start, not at the first configuration, if another process owns the name.
        wg::clean_stale_socket(&cfg.interface).map_err(anyhow::Error::msg)?;
    }
    let keys = keys::load_or_create(&cfg.data_dir, cfg.rotate_key)?;
    tracing::info!(pubkey = %keys.public, new = keys.new, dir = %cfg.data_dir.display(), "gateway key");
    if cfg.core_url.starts_with("http://") {
        tracing::warn!(core = %cfg.core_url, "the link to core is plaintext (http://): the token and peer set cross the network unencrypted");
    }
    enable_forwarding();
    let linked = Arc::new(AtomicBool::new(false));
    let health = match cfg.health_addr {
        Some(addr) => Some(start_health(addr, linked.clone()).await?),
        None => None,
    };
    let mut interface = wg::Interface::new(&cfg.interface, cfg.mode, keys.private.clone(), cfg.masquerade);
    let (exit_tx, mut device_exit) = tokio::sync::mpsc::unbounded_channel();
    interface.notify_device_exit(exit_tx);
    let iface = Arc::new(Mutex::new(interface));
    let agent = Agent {
        hello: GatewayHello {
            pubkey: keys.public.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
            rotate_key: cfg.rotate_key,
        },
        cfg,
        iface: iface.clone(),
        linked,
    };
    tokio::select! {
        _ = agent.run() => {}
        _ = shutdown => tracing::info!("stopping"),
        // The userspace device failed (its interface was deleted under it, say).
        Some(()) = device_exit.recv() => tracing::error!("stopping: the WireGuard device failed"),
    }
    if let Some(h) = health {
        h.abort();
    }
    // Waits for a configuration change under way, then removes the interface.
    tokio::task::spawn_blocking(move || lock(&iface).remove()).await.context("interface removal panicked")?;
    tracing::info!("interface removed; stopped");
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The gateway routes between the tunnel and the location's networks.
fn enable_forwarding() {
    match std::fs::write("/proc/sys/net/ipv4/ip_forward", "1\n") {
        Ok(()) => tracing::debug!("IPv4 forwarding enabled"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot enable IPv4 forwarding (/proc/sys/net/ipv4/ip_forward): clients reach this host but not the networks behind it")
        }
    }
}

async fn start_health(
    addr: std::net::SocketAddr,
    linked: Arc<AtomicBool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("health_addr (ONRAMP_GATEWAY_HEALTH_ADDR): cannot listen on {addr}"))?;
    tracing::info!(%addr, "health check listening");
    let app = axum::Router::new().fallback(move || {
        let up = linked.load(Ordering::Relaxed);
        async move {
            if up {
                (axum::http::StatusCode::OK, "linked to core\n")
            } else {
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not linked to core\n")
            }
        }
    });
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "health check listener failed");
        }
    }))
}

/// A random wait in [backoff/2, backoff], so gateways cut off together do not return
/// together.
fn jittered(backoff: Duration) -> Duration {
    use rand::Rng;
    let half = backoff / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

struct Agent {
    cfg: GatewayConfig,
    hello: GatewayHello,
    iface: Arc<Mutex<wg::Interface>>,
    linked: Arc<AtomicBool>,
}

impl Agent {
    /// Connects, serves the session, and reconnects, for ever.
    async fn run(mut self) {
        let url = self.cfg.core_url.clone();
        let mut backoff = MIN_BACKOFF;
        // Core refused this gateway and its peers were removed; until core accepts it.
        let mut stopped = false;
        loop {
            match connect_gateway(&url, &self.cfg.token, &self.hello, self.cfg.ca.as_deref()).await {
                Ok(conn) => {
                    stopped = false;
                    // Core holds the new key now; later hellos need not ask again.
                    self.hello.rotate_key = false;
                    tracing::info!(core = %url, "linked to core");
                    let started = std::time::Instant::now();
                    let result = self.session(conn).await;
                    self.linked.store(false, Ordering::Relaxed);
                    // Only a session that held a while starts the backoff afresh, so a
                    // configuration that fails at once is not retried in a tight loop.
                    if started.elapsed() >= STABLE_SESSION {
                        backoff = MIN_BACKOFF;
                    }
                    match result {
                        Ok(()) => tracing::warn!(core = %url, "core ended the session; reconnecting"),
                        Err(e) => {
                            tracing::warn!(core = %url, error = %e, "link to core lost; interface and peers stay as they are")
                        }
                    }
                }
                Err(ConnectError::Refused(r)) => {
                    tracing::error!(core = %url, kind = onramp_link::gateway::kind_name(r.kind), reason = %r.message, retry_in = ?backoff, "core refused this gateway");
                    if !stopped && stops_serving(r.kind) {
                        stopped = true;
                        self.stop_serving(&r).await;
                    }
                }
                Err(ConnectError::Transport(e)) => {
                    tracing::warn!(core = %url, error = %e, retry_in = ?backoff, "cannot reach core; interface and peers stay as they are");
                }
            }
            tokio::time::sleep(jittered(backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Core no longer accepts this gateway: nobody may keep using the peers it gave.
    async fn stop_serving(&self, r: &GatewayRefusal) {
        let iface = self.iface.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let mut i = lock(&iface);
            i.remove_all_peers().map_err(|e| {
                // Removing the interface removes the peers with it.
                tracing::warn!(error = %e, "cannot remove the peers one by one; removing the interface");
                i.remove();
            })
        })
        .await;
        let removed = match removed {
            Ok(Ok(n)) => n.to_string(),
            _ => "all (with the interface)".to_owned(),
        };
        tracing::error!(
            kind = onramp_link::gateway::kind_name(r.kind),
            reason = %r.message,
            peers_removed = %removed,
            "STOPPED SERVING: core refused this gateway, so every peer was removed; retrying with backoff \
             (check the gateway token, the location and the gateway key)"
        );
    }

    /// One session: apply what core sends, report stats every interval. Returns when the
    /// stream ends; an error that leaves the interface out of step with core also ends it,
    /// so the next session's full configuration sets things right.
    async fn session(&self, mut conn: GatewayConnection) -> Result<(), String> {
        // Empty at each session start, so the first report holds every peer.
        let mut sent: HashMap<String, PeerStats> = HashMap::new();
        let mut tick = tokio::time::interval(self.cfg.stats_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = conn.next() => match msg? {
                    None => return Ok(()),
                    Some(msg) => {
                        let full = matches!(msg, ToGateway::Full { .. });
                        self.apply(msg).await?;
                        // Healthy means linked and serving core's configuration.
                        if full {
                            self.linked.store(true, Ordering::Relaxed);
                        }
                    }
                },
                _ = tick.tick() => {
                    let Some(stats) = self.read_stats().await else { continue };
                    let changed = changed_stats(&mut sent, stats);
                    if !changed.is_empty() {
                        conn.send_stats(changed).await?;
                    }
                }
            }
        }
    }

    async fn apply(&self, msg: ToGateway) -> Result<(), String> {
        let iface = self.iface.clone();
        let what = match &msg {
            ToGateway::Full { .. } => "full configuration",
            ToGateway::Upsert { .. } => "peer update",
            ToGateway::Remove { .. } => "peer removal",
        };
        let result = tokio::task::spawn_blocking(move || {
            let mut i = lock(&iface);
            match &msg {
                ToGateway::Full { interface, peers } => i.apply_full(interface, peers),
                ToGateway::Upsert { peer } => i.upsert(peer),
                ToGateway::Remove { pubkey } => i.remove_by_key(pubkey),
            }
        })
        .await
        .map_err(|e| format!("applying the {what} panicked: {e}"))?;
        match result {
            Ok(a) => {
                tracing::info!(interface = %self.cfg.interface, created = a.created, set = a.set, removed = a.removed, skipped = a.skipped, "applied {what}");
                Ok(())
            }
            Err(e) => {
                tracing::error!(interface = %self.cfg.interface, error = %e, "cannot apply {what}");
                Err(format!("cannot apply {what}: {e}"))
            }
        }
    }

    /// The interface's counters, or `None` before it exists.
    async fn read_stats(&self) -> Option<Vec<PeerStats>> {
        let iface = self.iface.clone();
        let result = tokio::task::spawn_blocking(move || {
            let i = lock(&iface);
            i.spec().is_some().then(|| i.stats())
        })
        .await
        .ok()??;
        match result {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read interface stats");
                None
            }
        }
    }
}

/// Whether a refusal means core no longer accepts this gateway (its peers must stop being
/// served) rather than "not now" (fail static, like a transport error). Invalid: core
/// read this gateway's hello and will not take it, which no wait changes either.
pub fn stops_serving(kind: RefusalKind) -> bool {
    match kind {
        RefusalKind::Unauthenticated | RefusalKind::KeyConflict | RefusalKind::Invalid => true,
        RefusalKind::Unavailable => false,
    }
}

/// The peers whose counters, endpoint or handshake changed since last sent, and records
/// them as sent. The interface computes a handshake time from "seconds ago", so it may
/// wobble by a second between reads; that alone is no change.
pub fn changed_stats(sent: &mut HashMap<String, PeerStats>, now: Vec<PeerStats>) -> Vec<PeerStats> {
    let present: std::collections::HashSet<String> = now.iter().map(|p| p.pubkey.clone()).collect();
    sent.retain(|k, _| present.contains(k));
    let mut out = Vec::new();
    for p in now {
        let same = sent.get(&p.pubkey).is_some_and(|old| {
            old.rx_bytes == p.rx_bytes
                && old.tx_bytes == p.tx_bytes
                && old.endpoint == p.endpoint
                && match (old.latest_handshake, p.latest_handshake) {
                    (Some(a), Some(b)) => (a - b).abs() <= 1,
                    (a, b) => a == b,
                }
        });
        if !same {
            sent.insert(p.pubkey.clone(), p.clone());
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(key: &str, rx: u64, hs: Option<i64>) -> PeerStats {
        PeerStats { pubkey: key.into(), endpoint: None, latest_handshake: hs, rx_bytes: rx, tx_bytes: 0 }
    }

    #[test]
    fn stats_reports_only_changes_and_everything_first() {
        let mut sent = HashMap::new();
        let first = changed_stats(&mut sent, vec![st("a", 0, None), st("b", 5, Some(100))]);
        assert_eq!(first.len(), 2, "first report holds every peer");
        assert!(changed_stats(&mut sent, vec![st("a", 0, None), st("b", 5, Some(101))]).is_empty(), "1 s wobble");
        assert_eq!(changed_stats(&mut sent, vec![st("a", 1, None), st("b", 5, Some(100))]), vec![st("a", 1, None)]);
        assert_eq!(
            changed_stats(&mut sent, vec![st("a", 1, None), st("b", 5, Some(200))]),
            vec![st("b", 5, Some(200))]
        );
        // A peer that left and came back is reported again.
        assert!(changed_stats(&mut sent, vec![st("a", 1, None)]).is_empty());
        assert_eq!(changed_stats(&mut sent, vec![st("a", 1, None), st("b", 5, Some(200))]).len(), 1);
    }

    #[test]
    fn only_a_refusal_of_the_gateway_itself_stops_serving() {
        assert!(stops_serving(RefusalKind::Unauthenticated));
        assert!(stops_serving(RefusalKind::KeyConflict));
        assert!(stops_serving(RefusalKind::Invalid));
        assert!(!stops_serving(RefusalKind::Unavailable), "core busy: fail static");
    }

    #[test]
    fn backoff_jitter_stays_in_range() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(2));
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2), "{d:?}");
        }
    }
}
