//! An in-memory [`GatewayControl`] for tests of the gateway link and the gateway agent: it
//! stands in for core (feature `test-control`; never in a release build). It accepts one
//! token, records every hello, stats report and close, and lets the test push messages to
//! each open session.

use onramp_proto::gateway::{
    GatewayControl, GatewayFuture, GatewayHello, GatewayRefusal, GatewayReporter, GatewaySession, PeerStats,
    RefusalKind, ToGateway, UpdateSource,
};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// What the test double has seen; shared with the test.
#[derive(Default)]
pub struct Seen {
    pub hellos: Vec<(GatewayHello, Option<String>)>,
    pub stats: Vec<PeerStats>,
    /// How many peers each stats report held, in arrival order.
    pub reports: Vec<usize>,
    pub closed: usize,
    /// Senders of the open sessions, newest last; a session's messages go through it.
    sessions: Vec<mpsc::UnboundedSender<Option<ToGateway>>>,
}

pub struct TestControl {
    token: String,
    /// The location's recorded key; a hello with another key and no `rotate_key` conflicts.
    key: Mutex<Option<String>>,
    /// Sent as `Full` first on every session.
    pub full: Mutex<ToGateway>,
    pub seen: Mutex<Seen>,
    /// Refuse every hello with this, when set (core "unavailable", say).
    pub refuse: Mutex<Option<GatewayRefusal>>,
    changed: Notify,
}

impl TestControl {
    pub fn new(token: &str, full: ToGateway) -> Arc<Self> {
        Arc::new(TestControl {
            token: token.to_owned(),
            key: Mutex::new(None),
            full: Mutex::new(full),
            seen: Mutex::new(Seen::default()),
            refuse: Mutex::new(None),
            changed: Notify::new(),
        })
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `msg` to the newest open session; false if none is open.
    pub fn send(&self, msg: ToGateway) -> bool {
        let seen = self.seen();
        seen.sessions.last().is_some_and(|s| s.send(Some(msg)).is_ok())
    }

    /// Ends every open session from core's side.
    pub fn end_sessions(&self) {
        for s in self.seen().sessions.drain(..) {
            let _ = s.send(None);
        }
    }

    /// Waits (up to `timeout`) until `cond` holds for what was seen.
    pub async fn wait_for(&self, timeout: std::time::Duration, cond: impl Fn(&Seen) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if cond(&self.seen()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return cond(&self.seen());
            }
        }
    }
}

struct Updates {
    first: Option<ToGateway>,
    rx: mpsc::UnboundedReceiver<Option<ToGateway>>,
}

impl UpdateSource for Updates {
    fn next(&mut self) -> GatewayFuture<'_, Option<ToGateway>> {
        Box::pin(async move {
            if let Some(full) = self.first.take() {
                return Some(full);
            }
            self.rx.recv().await.flatten()
        })
    }
}

struct Reporter(Arc<TestControl>);

impl GatewayReporter for Reporter {
    fn stats(&self, peers: Vec<PeerStats>) -> GatewayFuture<'_, ()> {
        Box::pin(async move {
            let mut seen = self.0.seen();
            seen.reports.push(peers.len());
            seen.stats.extend(peers);
            drop(seen);
            self.0.changed.notify_waiters();
        })
    }

    fn closed(&self) -> GatewayFuture<'_, ()> {
        Box::pin(async move {
            self.0.seen().closed += 1;
            self.0.changed.notify_waiters();
        })
    }
}

/// Implemented on the `Arc` so each session's reporter can hold the control.
#[derive(Clone)]
pub struct SharedControl(pub Arc<TestControl>);

impl GatewayControl for SharedControl {
    fn open(
        &self,
        token: String,
        hello: GatewayHello,
        remote: Option<String>,
    ) -> GatewayFuture<'_, Result<GatewaySession, GatewayRefusal>> {
        Box::pin(async move {
            let c = &self.0;
            if let Some(r) = c.refuse.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                return Err(r);
            }
            if token != c.token {
                return Err(GatewayRefusal { kind: RefusalKind::Unauthenticated, message: "unknown token".into() });
            }
            {
                let mut key = c.key.lock().unwrap_or_else(|p| p.into_inner());
                match key.as_deref() {
                    Some(k) if k != hello.pubkey && !hello.rotate_key => {
                        return Err(GatewayRefusal {
                            kind: RefusalKind::KeyConflict,
                            message: "the location already has a gateway with another key".into(),
                        })
                    }
                    _ => *key = Some(hello.pubkey.clone()),
                }
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let first = Some(c.full.lock().unwrap_or_else(|p| p.into_inner()).clone());
            {
                let mut seen = c.seen();
                seen.hellos.push((hello, remote));
                seen.sessions.push(tx);
            }
            c.changed.notify_waiters();
            Ok(GatewaySession {
                location: "test-location".into(),
                updates: Box::new(Updates { first, rx }),
                reporter: Arc::new(Reporter(c.clone())),
            })
        })
    }
}
