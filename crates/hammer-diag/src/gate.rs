//! Provides load shedding in front of a service's scarce resource (a
//! renderer that takes every core, a connection pool): a [`Gate`] of N
//! slots whose queue is bounded by *time*, not length.
//!
//! The gate is given a *budget*: how long an admitted request may spend
//! waiting for a slot and holding it. It learns how long a slot is held (a
//! moving average), so the wait a request may afford is `budget − hold`,
//! and it knows a newcomer's wait before it queues — `(waiting + 1) × hold
//! / slots`. A request whose wait would not fit is refused at once, in
//! microseconds, with a 503 and `Retry-After: 1`: a fast, cheap answer the
//! client can act on, instead of a slow one that misses its deadline
//! anyway; one that queued and still waits when its affordable wait runs
//! out is refused then. So admitted requests finish within about the
//! budget, however long the work takes today (a slower render leaves less
//! time to wait, not more latency); and while any request waits, every
//! slot is busy, so goodput stays at capacity.
//!
//! Why a bound on waiting time rather than on queue length, or an adaptive
//! concurrency limit (Netflix's concurrency-limits, Envoy's adaptive
//! concurrency): a length bound needs the service time, which changes with
//! the request (a 64×64 render or a 1024×1024 one); a time bound adapts by
//! itself (CoDel's insight: bound the sojourn time). Adaptive concurrency
//! limiters search for the concurrency at which latency starts to grow —
//! the right tool when the bottleneck is unknown (a downstream service).
//! Here the bottleneck is known and sized (renders use every core), so the
//! slots are fixed and only the queue needs a bound.
//!
//! Overload shows in `/metrics` as `http_requests_shed_total{gate}` (and
//! `http_gate_waiting{gate}`), and in the log as one warning a second with
//! the count, never one per refused request.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The weight of the newest hold time in the moving average (1/8).
const EWMA_SHIFT: u32 = 3;

/// A bounded-wait gate in front of `slots` units of a resource.
pub struct Gate {
    name: &'static str,
    slots: usize,
    semaphore: Semaphore,
    budget: Duration,
    waiting: AtomicUsize,
    /// Moving average of how long a slot is held, nanoseconds (0: unknown).
    hold_ns: AtomicU64,
    /// Refused since the last warning, and the second it was logged in.
    unlogged: AtomicU64,
    logged_at: AtomicU64,
}

/// A held slot; dropping it frees the slot and teaches the gate its hold time.
pub struct Slot<'a> {
    gate: &'a Gate,
    since: Instant,
    _permit: SemaphorePermit<'a>,
}

/// A refused request: answers 503 with `Retry-After: 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The wait would exceed (or did exceed) what the budget leaves.
    Overloaded,
    /// The gate is closed: the service is draining.
    Closed,
}

impl Gate {
    /// A gate of `slots` (at least 1) whose admitted requests should wait
    /// and work within `budget` together.
    pub fn new(name: &'static str, slots: usize, budget: Duration) -> Gate {
        let slots = slots.max(1);
        Gate {
            name,
            slots,
            semaphore: Semaphore::new(slots),
            budget,
            waiting: AtomicUsize::new(0),
            hold_ns: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
            logged_at: AtomicU64::new(0),
        }
    }

    /// Takes a slot, waiting at most what the budget leaves after the work;
    /// refuses at once when the expected wait is already longer.
    pub async fn enter(&self) -> Result<Slot<'_>, Refused> {
        if let Ok(permit) = self.semaphore.try_acquire() {
            return Ok(self.slot(permit));
        }
        let hold = self.hold_ns.load(Ordering::Relaxed);
        let affordable = self.budget.saturating_sub(Duration::from_nanos(hold));
        let ahead = self.waiting.load(Ordering::Relaxed) as u64 + 1;
        let expected = Duration::from_nanos(hold.saturating_mul(ahead) / self.slots as u64);
        if expected > affordable || affordable.is_zero() {
            return Err(self.refuse());
        }
        let _waiting = Waiting::new(&self.waiting);
        match tokio::time::timeout(affordable, self.semaphore.acquire()).await {
            Ok(Ok(permit)) => Ok(self.slot(permit)),
            Ok(Err(_)) => Err(Refused::Closed),
            Err(_) => Err(self.refuse()),
        }
    }

    /// Closes the gate: waiting and later requests are refused.
    pub fn close(&self) {
        self.semaphore.close();
    }

    /// The gate's metrics, for [`crate::Diag::register`].
    pub fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        Box::new(GateMetrics::new(self.clone()))
    }

    /// Requests refused since start.
    pub fn shed(&self) -> u64 {
        shed_counter().with_label_values(&[self.name]).get()
    }

    fn slot<'a>(&'a self, permit: SemaphorePermit<'a>) -> Slot<'a> {
        Slot {
            gate: self,
            since: Instant::now(),
            _permit: permit,
        }
    }

    fn refuse(&self) -> Refused {
        shed_counter().with_label_values(&[self.name]).inc();
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        // One warning a second, with the count since the last one.
        let second = started().elapsed().as_secs() + 1;
        let last = self.logged_at.load(Ordering::Relaxed);
        if second > last
            && self
                .logged_at
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let refused = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                gate = self.name,
                refused,
                budget_ms = self.budget.as_secs_f64() * 1e3,
                hold_ms = self.hold_ns.load(Ordering::Relaxed) as f64 / 1e6,
                "overloaded: requests refused with 503 rather than queued past their budget"
            );
        }
        Refused::Overloaded
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let held = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let gate = self.gate;
        let _ = gate
            .hold_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    held
                } else {
                    // old + (held − old) / 8, in integers.
                    let (old, held) = (old as i128, held as i128);
                    (old + ((held - old) >> EWMA_SHIFT)) as u64
                })
            });
    }
}

/// Counts a waiter while it waits, also when its request is dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let message = match self {
            Refused::Overloaded => "overloaded: try again shortly",
            Refused::Closed => "shutting down",
        };
        let mut response = crate::reply::error_response(StatusCode::SERVICE_UNAVAILABLE, message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

fn started() -> &'static Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    STARTED.get_or_init(Instant::now)
}

/// One counter for every gate of the process, labelled by gate.
fn shed_counter() -> &'static IntCounterVec {
    static SHED: OnceLock<IntCounterVec> = OnceLock::new();
    SHED.get_or_init(|| {
        IntCounterVec::new(
            Opts::new(
                "http_requests_shed_total",
                "Requests refused with 503 because their wait for the gate would pass its bound",
            ),
            &["gate"],
        )
        .expect("a valid metric")
    })
}

/// A gate's series in `/metrics`, read at scrape time.
struct GateMetrics {
    gate: Arc<Gate>,
    waiting: IntGaugeVec,
}

impl GateMetrics {
    fn new(gate: Arc<Gate>) -> Self {
        // The series exists from the start, at 0.
        shed_counter().with_label_values(&[gate.name]);
        GateMetrics {
            gate,
            waiting: IntGaugeVec::new(
                Opts::new("http_gate_waiting", "Requests waiting for a gate's slot"),
                &["gate"],
            )
            .expect("a valid metric"),
        }
    }
}

impl Collector for GateMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = shed_counter().desc();
        d.extend(self.waiting.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.waiting
            .with_label_values(&[self.gate.name])
            .set(i64::try_from(self.gate.waiting.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        let mut f = shed_counter().collect();
        f.extend(self.waiting.collect());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn a_wait_past_the_bound_is_refused_and_a_known_long_one_at_once() {
        runtime().block_on(async {
            let gate = Gate::new("test-a", 1, Duration::from_millis(60));
            let held = gate.enter().await.unwrap();
            // Nothing known about hold times yet: it waits the whole
            // budget, then is refused.
            let t0 = Instant::now();
            assert_eq!(gate.enter().await.err(), Some(Refused::Overloaded));
            assert!(t0.elapsed() >= Duration::from_millis(60));
            drop(held);
            // Slots held 40 ms: a wait of a whole hold does not fit in
            // what the budget leaves (20 ms).
            for _ in 0..10 {
                let _s = gate.enter().await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            let _held = gate.enter().await.unwrap();
            let t0 = Instant::now();
            assert_eq!(gate.enter().await.err(), Some(Refused::Overloaded));
            assert!(
                t0.elapsed() < Duration::from_millis(5),
                "{:?}",
                t0.elapsed()
            );
            assert_eq!(gate.shed(), 2);
        });
    }

    #[test]
    fn a_short_wait_is_admitted_and_a_closed_gate_refuses() {
        runtime().block_on(async {
            let gate = Arc::new(Gate::new("test-b", 1, Duration::from_millis(200)));
            let held = gate.enter().await.unwrap();
            let g = gate.clone();
            let waiter = tokio::spawn(async move { g.enter().await.map(|_| ()) });
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(gate.waiting.load(Ordering::Relaxed), 1);
            drop(held);
            assert_eq!(waiter.await.unwrap(), Ok(()));
            assert_eq!(gate.waiting.load(Ordering::Relaxed), 0);
            gate.close();
            assert_eq!(gate.enter().await.err(), Some(Refused::Closed));
            assert_eq!(gate.shed(), 0);
        });
    }
}
