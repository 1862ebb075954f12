//! Core's side of the gateway protocol: authenticating a gateway, the stream of its
//! location's configuration, and what it reports.
//!
//! Changes reach sessions through the `peer_epoch` counter, which database triggers bump on
//! every write that can change what a gateway serves (whichever replica or code path made
//! it), recording in `peer_changes` which device or user each change touched. One task per
//! core process polls the counter (at once after this process's own audited writes, else
//! every 100 ms) and wakes that process's sessions; each then re-reads only the touched
//! devices' peers and sends the difference. A change to a location, its groups or a token
//! (or a burst too large to list) re-reads the whole peer set, as does every session every
//! 30 s, as a safety net.

use super::peers::{self, PeerSet};
use super::GATEWAY_LIVE_SECS;
use crate::{Actor, Core, CoreError};
use onramp_domain::token::{hash_secret, is_well_formed};
use onramp_domain::validate::WgPublicKey;
use onramp_proto::gateway::{
    GatewayControl, GatewayFuture, GatewayHello, GatewayRefusal, GatewayReporter, GatewaySession, InterfaceSpec,
    PeerStats, RefusalKind, ToGateway, UpdateSource,
};
use onramp_store::{GatewaySeen, LocationRow, PeerCounters, Store, StoreError};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often each core process reads the change counter.
const EPOCH_POLL: Duration = Duration::from_millis(100);
/// A full recompute this often even without a change, as a safety net.
const FULL_RECOMPUTE: Duration = Duration::from_secs(30);
/// More changes than this since the last read: read the whole peer set instead.
const INCREMENTAL_MAX: usize = 2_000;
/// Change records kept (in epochs); a session further behind reads everything.
const CHANGES_KEPT: i64 = 100_000;
/// How often a core process prunes older change records.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often a session refreshes its gateway's `last_seen_at` (well inside
/// `GATEWAY_LIVE_SECS`), so a live connection stays "connected" between reports.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Least time between two recomputes of one session while changes keep arriving (see
/// [`next_gap`]).
const MIN_GAP: Duration = Duration::from_millis(20);
const MAX_GAP: Duration = Duration::from_secs(1);

/// The pause before the next recompute. A change that finds the session idle goes out at
/// once: nothing arrived while the last recompute ran, so there is no burst to batch. When
/// changes did arrive meanwhile (a bulk enrollment), the next recompute waits twice what
/// this one cost (within [`MIN_GAP`], [`MAX_GAP`]), so a burst spends at most about a third
/// of the time reading peer sets instead of one read per change.
fn next_gap(cost: Duration, changed_meanwhile: bool) -> Duration {
    if changed_meanwhile {
        (cost * 2).clamp(MIN_GAP, MAX_GAP)
    } else {
        Duration::ZERO
    }
}
/// Pause before recomputing again after the database failed.
const RETRY: Duration = Duration::from_secs(1);
/// Longest hostname, version or endpoint stored from a gateway.
const MAX_TEXT: usize = 128;

/// The shared epoch watcher of a core process (see the module docs).
#[derive(Default)]
pub(crate) struct EpochWatch {
    rx: std::sync::Mutex<Option<watch::Receiver<i64>>>,
    /// Wakes the watcher at once after this process wrote something (every audited
    /// action), so its own changes do not wait for the next poll.
    poke: Arc<tokio::sync::Notify>,
}

impl EpochWatch {
    pub(crate) fn poke(&self) {
        self.poke.notify_one();
    }
}

impl Core {
    /// A receiver of the change counter, starting the process's watcher on first use.
    async fn peer_epoch_watch(&self) -> Result<watch::Receiver<i64>, StoreError> {
        if let Some(rx) = self.epoch_slot().as_ref().filter(|rx| rx.has_changed().is_ok()) {
            return Ok(rx.clone());
        }
        let first = self.store().peer_epoch().await?;
        let mut slot = self.epoch_slot();
        if let Some(rx) = slot.as_ref().filter(|rx| rx.has_changed().is_ok()) {
            return Ok(rx.clone());
        }
        let (tx, rx) = watch::channel(first);
        tokio::spawn(watch_epoch(self.store().clone(), tx, self.inner.gateway_epoch.poke.clone()));
        *slot = Some(rx.clone());
        Ok(rx)
    }

    fn epoch_slot(&self) -> std::sync::MutexGuard<'_, Option<watch::Receiver<i64>>> {
        self.inner.gateway_epoch.rx.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Authenticates a gateway and opens its session; see [`GatewayControl::open`].
    pub async fn open_gateway(
        &self,
        token: String,
        hello: GatewayHello,
        remote: Option<String>,
    ) -> Result<GatewaySession, GatewayRefusal> {
        let token = token.trim();
        if !is_well_formed(token) {
            return Err(refuse(
                RefusalKind::Unauthenticated,
                "malformed gateway token: expected 32 letters and digits",
            ));
        }
        let t = match self.store().gateway_token_by_hash(&hash_secret(token)).await {
            Ok(t) => t,
            Err(StoreError::NotFound) => {
                return Err(refuse(
                    RefusalKind::Unauthenticated,
                    "unknown gateway token; create one with `onramp admin gateway-token create --location NAME`",
                ))
            }
            Err(e) => return Err(unavailable(e)),
        };
        if t.revoked_at.is_some() {
            return Err(refuse(
                RefusalKind::Unauthenticated,
                format!("gateway token {} was revoked; create a new one for this location", t.id),
            ));
        }
        let key = WgPublicKey::parse("pubkey", &hello.pubkey)
            .map_err(|e| refuse(RefusalKind::Invalid, format!("invalid gateway public key: {}", e.message)))?;
        let hostname = clean(&hello.hostname);
        let version = clean(&hello.version);
        let remote = remote.as_deref().map(clean);
        let actor = Actor {
            name: format!("gateway {hostname}"),
            ip: remote.clone(),
            user_agent: Some(format!("onramp-gateway {version}")),
            ..Actor::default()
        };
        let location = self.register_gateway_key(&actor, t.location_id, key.as_str(), hello.rotate_key).await?;
        let now = self.now();
        self.store().touch_gateway_token(t.id, now).await.map_err(unavailable)?;
        let session_id = uuid::Uuid::new_v4().to_string();
        let seen = GatewaySeen {
            location_id: location.id,
            pubkey: key.as_str().to_owned(),
            version: version.clone(),
            hostname: hostname.clone(),
            remote: remote.clone(),
            session_id: session_id.clone(),
        };
        let gateway_id = self.store().gateway_connected(&seen, now).await.map_err(unavailable)?;
        let mut epoch = self.peer_epoch_watch().await.map_err(unavailable)?;
        epoch.borrow_and_update();
        let mut updates = Updates {
            core: self.clone(),
            location_id: location.id,
            token_id: t.id,
            pubkey: key.as_str().to_owned(),
            gateway_id,
            session_id: session_id.clone(),
            epoch,
            interface: None,
            peers: PeerSet::new(),
            owners: peers::Owners::new(),
            covered: None,
            full_due: true,
            queue: VecDeque::new(),
            dirty: false,
            ended: false,
            next_full: Instant::now() + FULL_RECOMPUTE,
            next_heartbeat: Instant::now() + HEARTBEAT,
            last_recompute: Instant::now(),
            gap: MIN_GAP,
        };
        match updates.recompute().await {
            Ok(true) => {}
            Ok(false) => {
                return Err(refuse(
                    RefusalKind::Unauthenticated,
                    "meanwhile the gateway token was revoked, its location deleted, or the location's key replaced",
                ));
            }
            Err(e) => return Err(unavailable(e)),
        }
        tracing::info!(location = %location.name, %hostname, %version, remote = remote.as_deref().unwrap_or("unknown"), "gateway connected");
        Ok(GatewaySession {
            location: location.name.clone(),
            updates: Box::new(updates),
            reporter: Arc::new(Reporter {
                core: self.clone(),
                location: location.name,
                location_id: location.id,
                gateway_id,
                session_id,
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// Makes `key` the location's gateway key, or checks that it is: records it when the
    /// location has none, replaces a different one only with `rotate` (the compare-and-set
    /// in the store keeps two gateways registering at once from both winning).
    async fn register_gateway_key(
        &self,
        actor: &Actor,
        location_id: i64,
        key: &str,
        rotate: bool,
    ) -> Result<LocationRow, GatewayRefusal> {
        for _ in 0..3 {
            let location = match self.store().location_by_id(location_id).await {
                Ok(l) => l,
                Err(StoreError::NotFound) => {
                    return Err(refuse(RefusalKind::Unauthenticated, "the gateway token's location was deleted"))
                }
                Err(e) => return Err(unavailable(e)),
            };
            let current = location.gateway_pubkey.clone().filter(|k| !k.is_empty());
            let action = match current.as_deref() {
                Some(k) if k == key => return Ok(location),
                Some(k) if !rotate => {
                    let short: String = k.chars().take(8).collect();
                    return Err(refuse(
                        RefusalKind::KeyConflict,
                        format!(
                            "location {} already has gateway key {short}…; start the gateway with --rotate-key to replace it",
                            location.name
                        ),
                    ));
                }
                Some(_) => "gateway.key_rotated",
                None => "gateway.key_registered",
            };
            let now = self.now();
            if self.store().replace_gateway_key(location_id, current.as_deref(), key, now).await.map_err(unavailable)? {
                self.audit(
                    actor,
                    action,
                    Some(location.name.clone()),
                    serde_json::json!({"pubkey": key, "previous": current}),
                )
                .await;
                return Ok(LocationRow { gateway_pubkey: Some(key.to_owned()), ..location });
            }
            // Another gateway (or an admin) changed the key meanwhile: decide again.
        }
        Err(refuse(RefusalKind::Unavailable, "the location's gateway key keeps changing; retrying"))
    }
}

/// The transport calls this; see [`Core::open_gateway`].
impl GatewayControl for Core {
    fn open(
        &self,
        token: String,
        hello: GatewayHello,
        remote: Option<String>,
    ) -> GatewayFuture<'_, Result<GatewaySession, GatewayRefusal>> {
        Box::pin(self.open_gateway(token, hello, remote))
    }
}

fn refuse(kind: RefusalKind, message: impl Into<String>) -> GatewayRefusal {
    GatewayRefusal { kind, message: message.into() }
}

/// The database failed: the gateway should retry (the detail is logged here, not sent).
fn unavailable(e: impl std::fmt::Display) -> GatewayRefusal {
    tracing::warn!(error = %e, "gateway refused: database unavailable");
    refuse(RefusalKind::Unavailable, "core cannot reach its database; retrying later")
}

/// Printable ASCII, bounded: what a gateway says about itself is shown to admins.
fn clean(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(MAX_TEXT).collect::<String>().trim().to_owned()
}

/// Polls the change counter for one core process until nobody listens.
async fn watch_epoch(store: Store, tx: watch::Sender<i64>, poke: Arc<tokio::sync::Notify>) {
    let mut tick = tokio::time::interval(EPOCH_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut next_prune = Instant::now() + PRUNE_EVERY;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = poke.notified() => {}
        }
        if tx.is_closed() || store.is_closed() {
            return;
        }
        if Instant::now() >= next_prune {
            next_prune = Instant::now() + PRUNE_EVERY;
            if let Err(e) = store.prune_peer_changes(CHANGES_KEPT).await {
                tracing::warn!(error = %e, "cannot prune old gateway change records");
            }
        }
        match store.peer_epoch().await {
            Ok(v) => {
                if failing {
                    tracing::info!("gateway change counter readable again");
                }
                failing = false;
                tx.send_if_modified(|cur| std::mem::replace(cur, v) != v);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the gateway change counter; gateways keep their peers");
                }
                failing = true;
            }
        }
    }
}

/// One gateway's stream of configuration messages.
struct Updates {
    core: Core,
    location_id: i64,
    token_id: i64,
    /// The key this gateway connected with; the session ends when the location's differs.
    pubkey: String,
    gateway_id: i64,
    session_id: String,
    epoch: watch::Receiver<i64>,
    /// What the gateway was last sent (`None` before the first `Full`).
    interface: Option<InterfaceSpec>,
    peers: PeerSet,
    /// Which device holds which key in `peers`.
    owners: peers::Owners,
    /// The change counter `peers` reflects (`None`: not read yet).
    covered: Option<i64>,
    /// The next recompute reads the whole peer set.
    full_due: bool,
    queue: VecDeque<ToGateway>,
    /// A recompute is due (kept across a cancelled `next`).
    dirty: bool,
    ended: bool,
    next_full: Instant,
    next_heartbeat: Instant,
    last_recompute: Instant,
    /// Least time before the next recompute (see [`next_gap`]).
    gap: Duration,
}

impl Updates {
    async fn next_message(&mut self) -> Option<ToGateway> {
        loop {
            if let Some(m) = self.queue.pop_front() {
                return Some(m);
            }
            if self.ended {
                return None;
            }
            if !self.dirty {
                tokio::select! {
                    changed = self.epoch.changed() => match changed {
                        Ok(()) => self.dirty = true,
                        // The core shut down.
                        Err(_) => { self.ended = true; continue; }
                    },
                    _ = tokio::time::sleep_until(self.next_full) => {
                        self.dirty = true;
                        self.full_due = true;
                    }
                    _ = tokio::time::sleep_until(self.next_heartbeat) => {
                        self.heartbeat().await;
                        continue;
                    }
                }
            }
            tokio::time::sleep_until(self.last_recompute + self.gap).await;
            // Changes up to here are covered by this recompute.
            self.epoch.borrow_and_update();
            self.last_recompute = Instant::now();
            let outcome = self.recompute().await;
            self.gap = next_gap(self.last_recompute.elapsed(), self.epoch.has_changed().unwrap_or(false));
            match outcome {
                Ok(true) => self.dirty = false,
                Ok(false) => {
                    tracing::info!(
                        location_id = self.location_id,
                        "gateway session ended: token revoked, location deleted or key replaced"
                    );
                    self.ended = true;
                }
                Err(e) => {
                    // The gateway keeps serving what it has; try again shortly.
                    tracing::warn!(error = %e, location_id = self.location_id, "cannot compute gateway peers");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    async fn heartbeat(&mut self) {
        self.next_heartbeat = Instant::now() + HEARTBEAT;
        if let Err(e) = self.core.store().touch_gateway(self.gateway_id, &self.session_id, self.core.now()).await {
            tracing::warn!(error = %e, "cannot refresh the gateway's last contact");
        }
    }

    /// Reads the location and its peers and queues what changed since the last send (a
    /// `Full` first and whenever the interface changed). `Ok(false)`: the session must end.
    async fn recompute(&mut self) -> Result<bool, CoreError> {
        let store = self.core.store();
        let token = match store.gateway_token_by_id(self.token_id).await {
            Ok(t) if t.revoked_at.is_none() => t,
            Ok(_) | Err(StoreError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let location = match store.location_by_id(token.location_id).await {
            Ok(l) => l,
            Err(StoreError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if location.gateway_pubkey.as_deref() != Some(self.pubkey.as_str()) {
            return Ok(false);
        }
        let interface = interface_of(&location);
        let began = std::time::Instant::now();
        if self.interface.as_ref() == Some(&interface) && !self.full_due {
            if let Some(since) = self.covered {
                let (epoch, changes) = store.peer_changes_since(since, INCREMENTAL_MAX as i64 + 1).await?;
                let everything = changes.len() > INCREMENTAL_MAX
                    || epoch - since > CHANGES_KEPT / 2
                    || changes.contains(&(None, None));
                if !everything {
                    let devices: BTreeSet<i64> = changes.iter().filter_map(|c| c.0).collect();
                    let users: BTreeSet<i64> = changes.iter().filter_map(|c| c.1).collect();
                    let d: Vec<i64> = devices.iter().copied().collect();
                    let u: Vec<i64> = users.iter().copied().collect();
                    let rows = store.gateway_peer_rows(location.id, Some((&d, &u))).await?;
                    let messages = peers::apply_changes(&mut self.peers, &mut self.owners, &devices, &users, &rows);
                    tracing::debug!(location = %location.name, changes = changes.len(), rows = rows.len(),
                        messages = messages.len(), ms = began.elapsed().as_millis() as u64, "peer changes read");
                    self.queue.extend(messages);
                    self.covered = Some(epoch);
                    return Ok(true);
                }
            }
        }
        // Everything: the counter first, so that changes made during the read are read again
        // next time (re-reading a device is harmless).
        let epoch = store.peer_epoch().await?;
        let rows = store.gateway_peer_rows(location.id, None).await?;
        let (set, owners) = peers::from_rows(&rows);
        tracing::debug!(location = %location.name, peers = set.len(), ms = began.elapsed().as_millis() as u64, "peer set read");
        self.next_full = Instant::now() + FULL_RECOMPUTE;
        self.full_due = false;
        if self.interface.as_ref() != Some(&interface) {
            self.queue.clear();
            self.queue.push_back(ToGateway::Full { interface: interface.clone(), peers: peers::peer_specs(&set) });
            self.interface = Some(interface);
        } else {
            self.queue.extend(peers::diff(&self.peers, &set));
        }
        self.peers = set;
        self.owners = owners;
        self.covered = Some(epoch);
        Ok(true)
    }
}

impl UpdateSource for Updates {
    fn next(&mut self) -> GatewayFuture<'_, Option<ToGateway>> {
        Box::pin(self.next_message())
    }
}

fn interface_of(l: &LocationRow) -> InterfaceSpec {
    InterfaceSpec {
        location: l.name.clone(),
        addresses: crate::locations::split_csv(&l.addresses),
        listen_port: u16::try_from(l.port).unwrap_or_default(),
    }
}

/// Stores one gateway's reports.
struct Reporter {
    core: Core,
    location: String,
    location_id: i64,
    gateway_id: i64,
    session_id: String,
    closed: std::sync::atomic::AtomicBool,
}

impl Reporter {
    async fn store_stats(&self, peers: Vec<PeerStats>) {
        let counters: Vec<PeerCounters> = peers
            .into_iter()
            .map(|p| PeerCounters {
                pubkey: p.pubkey,
                endpoint: p.endpoint.as_deref().map(clean).filter(|e| !e.is_empty()),
                // WireGuard says 0 for "never".
                latest_handshake: p.latest_handshake.filter(|h| *h > 0),
                rx_bytes: i64::try_from(p.rx_bytes).unwrap_or(i64::MAX),
                tx_bytes: i64::try_from(p.tx_bytes).unwrap_or(i64::MAX),
            })
            .collect();
        match self
            .core
            .store()
            .record_peer_stats(self.location_id, self.gateway_id, &self.session_id, &counters, self.core.now())
            .await
        {
            Ok(n) => tracing::debug!(location = %self.location, reported = counters.len(), stored = n, "gateway stats"),
            Err(e) => tracing::warn!(error = %e, location = %self.location, "cannot store gateway stats"),
        }
    }

    async fn mark_closed(&self) {
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        match self.core.store().gateway_disconnected(self.gateway_id, &self.session_id, self.core.now()).await {
            Ok(()) => tracing::info!(location = %self.location, "gateway disconnected"),
            // The row times out after GATEWAY_LIVE_SECS without a heartbeat anyway.
            Err(e) => tracing::warn!(error = %e, location = %self.location, "cannot record gateway disconnect"),
        }
    }
}

impl GatewayReporter for Reporter {
    fn stats(&self, peers: Vec<PeerStats>) -> GatewayFuture<'_, ()> {
        Box::pin(self.store_stats(peers))
    }

    fn closed(&self) -> GatewayFuture<'_, ()> {
        Box::pin(self.mark_closed())
    }
}

const _: () = assert!(HEARTBEAT.as_secs() * 2 < GATEWAY_LIVE_SECS as u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_change_never_waits_and_a_burst_is_paced_by_the_cost() {
        assert_eq!(next_gap(Duration::from_millis(40), false), Duration::ZERO);
        assert_eq!(next_gap(Duration::from_secs(5), false), Duration::ZERO);
        assert_eq!(next_gap(Duration::from_millis(40), true), Duration::from_millis(80));
        assert_eq!(next_gap(Duration::from_millis(1), true), MIN_GAP);
        assert_eq!(next_gap(Duration::from_secs(5), true), MAX_GAP);
    }
}
