//! Provides the registry of open client connections behind `/connections`:
//! who is connected, for how long, how many requests each has sent, and
//! whether one is in flight (the Uptime talk's "who is currently connected?").
//!
//! It also enforces the header-read and idle timeouts, per connection rather
//! than with a timer per request: a sweeper looks at every open connection a
//! few times per timeout and closes those that have had no request in
//! flight for longer than the limit (a client that sends its head slowly or
//! not at all, an idle keep-alive connection). A request costs two relaxed
//! atomic stores for it, not a timer armed and cancelled.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;
use serde::Serialize;

/// How long a drain keeps idle connections open for a last request.
pub const LAST_CALL: Duration = Duration::from_millis(500);

/// What the sweeper shares with every connection: a coarse clock (ms since
/// the registry began, advanced by the sweeper, so requests never read the
/// system clock for it), the idle limit, and whether a drain has begun.
#[derive(Debug)]
struct Sweep {
    epoch: Instant,
    now_ms: AtomicU64,
    /// Idle this long (ms) and a connection is closed; `u64::MAX`: never.
    close_after_ms: AtomicU64,
    /// A drain has begun: every response says `Connection: close`.
    draining: AtomicBool,
    /// The drain's last call is over: every connection shuts down
    /// gracefully (an idle one closes now, a busy one after its response).
    closing: AtomicBool,
}

impl Sweep {
    fn advance_clock(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.now_ms.store(now, Ordering::Relaxed);
    }
}

/// Counters of one open connection, shared with its request handler.
#[derive(Debug)]
pub struct ConnStats {
    id: u64,
    peer: SocketAddr,
    opened: Instant,
    requests: AtomicU64,
    in_flight: AtomicU64,
    /// The sweep clock's reading when the last request (its response body
    /// included) ended, or when the connection opened.
    idle_since_ms: AtomicU64,
    sweep: Arc<Sweep>,
    /// Set by the sweeper: the connection should see whether it has been
    /// idle too long.
    check_idle: AtomicBool,
    /// Wakes the connection's task for that check.
    waker: Mutex<Option<Waker>>,
}

impl ConnStats {
    /// Marks a request started; the guard marks it finished when dropped
    /// (after its response body, or when the client goes away mid-request).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn wake(&self) {
        if let Some(waker) = &*self.waker.lock().unwrap_or_else(|e| e.into_inner()) {
            waker.wake_by_ref();
        }
    }

    fn idle_too_long(&self) -> bool {
        let limit = self.sweep.close_after_ms.load(Ordering::Relaxed);
        let now = self.sweep.now_ms.load(Ordering::Relaxed);
        self.in_flight.load(Ordering::Relaxed) == 0
            && now.saturating_sub(self.idle_since_ms.load(Ordering::Relaxed)) >= limit
    }
}

/// A request in flight on a connection.
pub struct InFlight(Arc<ConnStats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let stats = &self.0;
        stats.idle_since_ms.store(
            stats.sweep.now_ms.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// A response body that keeps its request counted in flight until the
    /// body has been sent (or dropped).
    pub struct TrackedBody<B> {
        #[pin]
        body: B,
        in_flight: Option<InFlight>,
    }
}

impl<B> TrackedBody<B> {
    /// `body`, with the request's guard.
    pub fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            in_flight: Some(in_flight),
        }
    }
}

impl<B: http_body::Body> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.body.poll_frame(cx));
        if frame.is_none() {
            this.in_flight.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

pin_project! {
    /// A connection's future, watched by the registry: it is closed when
    /// the sweeper finds it idle too long, and shut down gracefully (the
    /// request in flight finishes, then it closes) when a drain begins. Both
    /// are flags read when the connection is polled anyway, so watching
    /// costs a request two relaxed loads.
    pub struct Watched<C> {
        #[pin]
        conn: C,
        stats: Arc<ConnStats>,
        waker_set: bool,
        shutting_down: bool,
    }
}

impl<C> Watched<C> {
    /// Watches `conn`, the connection counted by `stats`.
    pub fn new(conn: C, stats: Arc<ConnStats>) -> Self {
        Self {
            conn,
            stats,
            waker_set: false,
            shutting_down: false,
        }
    }
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = Result<(), C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !*this.waker_set {
            // The future is its task's whole body (it is spawned as is), so
            // the task's waker, kept once, stays the one to wake.
            *this.stats.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            *this.waker_set = true;
        }
        if !*this.shutting_down && this.stats.sweep.closing.load(Ordering::Relaxed) {
            *this.shutting_down = true;
            this.conn.as_mut().graceful_shutdown();
        }
        if this.stats.check_idle.load(Ordering::Relaxed) {
            this.stats.check_idle.store(false, Ordering::Relaxed);
            if this.stats.idle_too_long() {
                tracing::debug!(peer = %this.stats.peer, "closing a connection idle too long");
                return Poll::Ready(Ok(()));
            }
        }
        this.conn.poll(cx)
    }
}

/// All open connections.
#[derive(Debug)]
pub struct Connections {
    next_id: AtomicU64,
    total: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<ConnStats>>>,
    sweep: Arc<Sweep>,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            next_id: AtomicU64::new(0),
            total: AtomicU64::new(0),
            open: Mutex::default(),
            sweep: Arc::new(Sweep {
                epoch: Instant::now(),
                now_ms: AtomicU64::new(0),
                close_after_ms: AtomicU64::new(u64::MAX),
                draining: AtomicBool::new(false),
                closing: AtomicBool::new(false),
            }),
        }
    }
}

/// Keeps a connection listed until dropped.
pub struct Registered {
    registry: Arc<Connections>,
    /// The connection's counters.
    pub stats: Arc<ConnStats>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.stats.id);
    }
}

/// One row of `/connections`.
#[derive(Debug, Serialize)]
pub struct ConnectionInfo {
    /// Connection number since start.
    pub id: u64,
    /// Client address.
    pub peer: String,
    /// Seconds since the connection opened.
    pub age_s: f64,
    /// Requests it has sent.
    pub requests: u64,
    /// `active` with a request in flight, else `idle`.
    pub state: &'static str,
}

/// The `/connections` document.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Connections open now.
    pub open: usize,
    /// Connections accepted since start.
    pub accepted_total: u64,
    /// Each open connection.
    pub connections: Vec<ConnectionInfo>,
}

impl Connections {
    /// Lists a new connection.
    pub fn register(self: &Arc<Self>, peer: SocketAddr) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(ConnStats {
            id,
            peer,
            opened: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(self.sweep.now_ms.load(Ordering::Relaxed)),
            sweep: self.sweep.clone(),
            check_idle: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, stats.clone());
        Registered {
            registry: self.clone(),
            stats,
        }
    }

    /// Closes, until dropped, every connection that has had no request in
    /// flight for `limit` (give or take a quarter): a client slow to send its
    /// request head, or an idle keep-alive connection.
    pub async fn close_idle(&self, limit: Duration) {
        let period = (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        // Idle times are read off a clock up to one period stale: allow for it.
        let close_after = (limit + period).as_millis() as u64;
        self.sweep
            .close_after_ms
            .store(close_after, Ordering::Relaxed);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep.advance_clock();
            let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            for stats in open.values().filter(|s| s.idle_too_long()) {
                stats.check_idle.store(true, Ordering::Relaxed);
                stats.wake();
            }
        }
    }

    /// Closes every connection without racing its client, and resolves
    /// when none is open.
    ///
    /// Closing an idle keep-alive connection at once (as hyper's graceful
    /// shutdown does) races a client that is sending on it: its request
    /// finds the connection closed, unanswered. So a drain first makes a
    /// last call: every response from now on says `Connection: close` and
    /// its connection closes after it, so the request in flight and one more
    /// on each connection are answered and no client sends on a connection
    /// being closed. After [`LAST_CALL`], connections still open shut down
    /// gracefully: idle ones (none sent anything for the whole last call)
    /// close, busy ones after their response.
    pub async fn drain(&self) {
        self.sweep.draining.store(true, Ordering::SeqCst);
        let last_call = Instant::now() + LAST_CALL;
        while self.open_count() > 0 && Instant::now() < last_call {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.sweep.closing.store(true, Ordering::SeqCst);
        for stats in self.open.lock().unwrap_or_else(|e| e.into_inner()).values() {
            stats.wake();
        }
        while self.open_count() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Whether a drain has begun (responses then close their connection).
    pub fn is_draining(&self) -> bool {
        self.sweep.draining.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Connections accepted since start.
    pub fn accepted_total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// What `/connections` shows.
    pub fn snapshot(&self) -> Snapshot {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let connections: Vec<ConnectionInfo> = open
            .values()
            .map(|c| ConnectionInfo {
                id: c.id,
                peer: c.peer.to_string(),
                age_s: c.opened.elapsed().as_secs_f64(),
                requests: c.requests.load(Ordering::Relaxed),
                state: if c.in_flight.load(Ordering::Relaxed) > 0 {
                    "active"
                } else {
                    "idle"
                },
            })
            .collect();
        Snapshot {
            open: connections.len(),
            accepted_total: self.accepted_total(),
            connections,
        }
    }
}
