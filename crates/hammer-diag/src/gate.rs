//! Provides load shedding in front of a service's scarce resource (a
//! renderer that takes every core, a connection pool): a [`Gate`] of N
//! slots whose queue is bounded by *time*, not length, and which sheds only
//! the requests that could not have met their deadline.
//!
//! The gate is given a *budget*: how long an admitted request may spend
//! waiting for a slot and holding it. It learns how long a slot is held (a
//! moving average), so the wait a request may afford is `budget − hold`. A
//! request that finds every slot busy queues; one still waiting when its
//! affordable wait runs out is refused then, with a 503 and
//! `Retry-After: 1`, having cost no work. So admitted requests finish
//! within about the budget however long the work takes today (a slower
//! render leaves less time to wait, not more latency), a burst that can be
//! served in time is served, and while any request waits every slot is
//! busy, so goodput stays at capacity.
//!
//! The queue is served first in, first out while it keeps emptying, and
//! last in, first out once it has stood for [`STANDING`] (Facebook's
//! "adaptive LIFO" with CoDel's notion of a standing queue, from Maurer,
//! *Fail at Scale*, ACM Queue 2015): under sustained overload the freshest
//! request gets the free slot and is answered quickly, while the oldest,
//! which would meet its deadline only by a hair, is refused when its wait
//! runs out.
//!
//! Why no refusal *at once* on a predicted wait (this gate's first
//! version): a prediction from the average hold refuses requests that
//! would have fitted (four closed-loop clients on two render slots, three
//! renders of queue, got 99.7% 503s), and an instant 503 invites an
//! instant retry: a client retrying at once turned every refusal into
//! another request, 27,000 503s a second that took the renderer's CPU
//! (goodput fell by a third). A refusal that comes at the end of the wait
//! bounds that storm by itself: each retrying client costs one cheap 503
//! per affordable wait. Only a queue past [`MAX_WAITING`] per slot is
//! refused at once, to bound memory.
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use tokio::sync::oneshot;

/// The weight of the newest hold time in the moving average (1/8).
const EWMA_SHIFT: u32 = 3;

/// How long the queue must have stood (never emptied) before the newest
/// waiter is served first: CoDel's interval.
pub const STANDING: Duration = Duration::from_millis(100);

/// Waiters per slot beyond which a request is refused at once (a bound on
/// memory; the time bound refuses long before it at any sane budget).
pub const MAX_WAITING: usize = 1024;

/// A bounded-wait gate in front of `slots` units of a resource.
pub struct Gate {
    name: &'static str,
    slots: usize,
    budget: Duration,
    queue: Mutex<Queue>,
    /// Moving average of how long a slot is held, nanoseconds (0: unknown).
    hold_ns: AtomicU64,
    /// Refused since the last warning, and the second it was logged in.
    unlogged: AtomicU64,
    logged_at: AtomicU64,
}

/// The slots and the requests waiting for one.
struct Queue {
    free: usize,
    waiters: VecDeque<Waiter>,
    next_id: u64,
    /// The last moment no request was waiting.
    empty_at: Instant,
    closed: bool,
}

/// A queued request: a slot is handed to it through `grant`.
struct Waiter {
    id: u64,
    grant: oneshot::Sender<()>,
}

/// A held slot; dropping it frees the slot and teaches the gate its hold time.
pub struct Slot<'a> {
    gate: &'a Gate,
    since: Instant,
}

/// A refused request: answers 503 with `Retry-After: 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its wait ran past what the budget leaves (or the queue is full).
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
            budget,
            queue: Mutex::new(Queue {
                free: slots,
                waiters: VecDeque::new(),
                next_id: 0,
                empty_at: Instant::now(),
                closed: false,
            }),
            hold_ns: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
            logged_at: AtomicU64::new(0),
        }
    }

    /// Takes a slot, waiting at most what the budget leaves after the work.
    pub async fn enter(&self) -> Result<Slot<'_>, Refused> {
        let affordable = self
            .budget
            .saturating_sub(Duration::from_nanos(self.hold_ns.load(Ordering::Relaxed)));
        let (id, grant) = {
            let mut q = self.lock();
            if q.closed {
                return Err(Refused::Closed);
            }
            if q.free > 0 {
                q.free -= 1;
                return Ok(self.slot());
            }
            if affordable.is_zero() || q.waiters.len() >= MAX_WAITING * self.slots {
                drop(q);
                return Err(self.refuse());
            }
            if q.waiters.is_empty() {
                q.empty_at = Instant::now();
            }
            let (tx, rx) = oneshot::channel();
            let id = q.next_id;
            q.next_id += 1;
            q.waiters.push_back(Waiter { id, grant: tx });
            (id, rx)
        };
        let mut ticket = Ticket {
            gate: self,
            id,
            grant: Some(grant),
        };
        let grant = ticket.grant.as_mut().expect("a fresh ticket");
        match tokio::time::timeout(affordable, grant).await {
            Ok(Ok(())) => {
                ticket.grant = None;
                Ok(self.slot())
            }
            Ok(Err(_)) => {
                ticket.grant = None;
                Err(Refused::Closed)
            }
            Err(_) => {
                let withdrawn = ticket.withdraw();
                let granted = ticket
                    .grant
                    .take()
                    .is_some_and(|mut g| g.try_recv().is_ok());
                if withdrawn {
                    Err(self.refuse())
                } else if granted {
                    // Granted as the wait ran out: the slot is its.
                    Ok(self.slot())
                } else {
                    // Out of the queue without a grant: the gate closed.
                    Err(Refused::Closed)
                }
            }
        }
    }

    /// Closes the gate: waiting and later requests are refused.
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        // Dropping the grants wakes every waiter with `Closed`.
        q.waiters.clear();
    }

    /// The gate's metrics, for [`crate::Diag::register`].
    pub fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        Box::new(GateMetrics::new(self.clone()))
    }

    /// Requests refused since start.
    pub fn shed(&self) -> u64 {
        shed_counter().with_label_values(&[self.name]).get()
    }

    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self) -> Slot<'_> {
        Slot {
            gate: self,
            since: Instant::now(),
        }
    }

    /// Hands a freed slot to a waiter: the oldest while the queue keeps
    /// emptying, the newest once it has stood for [`STANDING`].
    fn release(&self) {
        let mut q = self.lock();
        let now = Instant::now();
        let standing = now.saturating_duration_since(q.empty_at) >= STANDING;
        loop {
            let next = if standing {
                q.waiters.pop_back()
            } else {
                q.waiters.pop_front()
            };
            if q.waiters.is_empty() {
                q.empty_at = now;
            }
            let Some(waiter) = next else {
                q.free += 1;
                return;
            };
            // A waiter whose request is gone has withdrawn under this lock,
            // so a send fails only on a race with its timeout: next one.
            if waiter.grant.send(()).is_ok() {
                return;
            }
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

/// A request's place in the queue. Dropped while still queued (its
/// request timed out or its client left) it leaves the queue; dropped
/// holding a grant it never took, it passes the slot on.
struct Ticket<'a> {
    gate: &'a Gate,
    id: u64,
    /// Some until the wait is settled.
    grant: Option<oneshot::Receiver<()>>,
}

impl Ticket<'_> {
    /// Leaves the queue; false when a slot was granted first.
    fn withdraw(&self) -> bool {
        let mut q = self.gate.lock();
        let Some(at) = q.waiters.iter().position(|w| w.id == self.id) else {
            return false;
        };
        q.waiters.remove(at);
        if q.waiters.is_empty() {
            q.empty_at = Instant::now();
        }
        true
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let Some(mut grant) = self.grant.take() else {
            return;
        };
        if !self.withdraw() && grant.try_recv().is_ok() {
            self.gate.release();
        }
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
        gate.release();
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
            .set(i64::try_from(self.gate.waiting()).unwrap_or(i64::MAX));
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

    /// Holds a slot of `gate` for `hold`, `times` times in a row.
    async fn teach(gate: &Gate, hold: Duration, times: usize) {
        for _ in 0..times {
            let _s = gate.enter().await.unwrap();
            tokio::time::sleep(hold).await;
        }
    }

    /// Waiters 0, 1, 2 queued on `gate` 1 ms apart, each holding its slot
    /// for `hold`, and the order in which they got one.
    struct Queued {
        order: Arc<Mutex<Vec<usize>>>,
        waiters: Vec<tokio::task::JoinHandle<Result<(), Refused>>>,
    }

    async fn queue_three(gate: &Arc<Gate>, hold: Duration) -> Queued {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..3 {
            let (g, order) = (gate.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _s = g.enter().await?;
                order.lock().unwrap().push(i);
                tokio::time::sleep(hold).await;
                Ok(())
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Queued { order, waiters }
    }

    /// Waits for every waiter, each served, and returns the order served.
    async fn served_order(queued: Queued) -> Vec<usize> {
        for w in queued.waiters {
            assert_eq!(w.await.unwrap(), Ok(()));
        }
        let order = queued.order.lock().unwrap().clone();
        order
    }

    #[test]
    fn a_wait_past_what_the_budget_leaves_is_refused_then_and_not_before() {
        runtime().block_on(async {
            let gate = Gate::new("test-a", 1, Duration::from_millis(60));
            let held = gate.enter().await.unwrap();
            // Nothing known about hold times yet: it waits the whole
            // budget, then is refused.
            let t0 = Instant::now();
            assert_eq!(gate.enter().await.err(), Some(Refused::Overloaded));
            assert!(t0.elapsed() >= Duration::from_millis(60));
            drop(held);
            // Slots held 40 ms: a waiter may wait what the budget leaves
            // (20 ms), not the whole budget.
            teach(&gate, Duration::from_millis(40), 10).await;
            let _held = gate.enter().await.unwrap();
            let hold = Duration::from_nanos(gate.hold_ns.load(Ordering::Relaxed));
            let left = Duration::from_millis(60) - hold;
            let t0 = Instant::now();
            assert_eq!(gate.enter().await.err(), Some(Refused::Overloaded));
            let waited = t0.elapsed();
            assert!(
                waited >= left && waited < left + Duration::from_millis(5),
                "waited {waited:?}, the budget leaves {left:?} after holds of {hold:?}"
            );
            assert_eq!(gate.shed(), 2);
            assert_eq!(gate.waiting(), 0);
        });
    }

    #[test]
    fn a_burst_that_fits_is_served_in_order_and_none_is_refused() {
        runtime().block_on(async {
            // Three waiters on one slot held 10 ms, budget 100 ms: the
            // last waits about 30 ms, well inside what is left (90 ms).
            let gate = Arc::new(Gate::new("test-b", 1, Duration::from_millis(100)));
            teach(&gate, Duration::from_millis(10), 8).await;
            let held = gate.enter().await.unwrap();
            let waiters = queue_three(&gate, Duration::from_millis(10)).await;
            assert_eq!(gate.waiting(), 3);
            drop(held);
            let order = served_order(waiters).await;
            assert_eq!(order, [0, 1, 2], "first in, first out");
            assert_eq!(gate.shed(), 0);
        });
    }

    #[test]
    fn a_standing_queue_serves_the_newest_first() {
        runtime().block_on(async {
            let gate = Arc::new(Gate::new("test-c", 1, Duration::from_millis(500)));
            let held = gate.enter().await.unwrap();
            let waiters = queue_three(&gate, Duration::ZERO).await;
            // The queue has not emptied for longer than STANDING.
            tokio::time::sleep(STANDING + Duration::from_millis(20)).await;
            drop(held);
            let order = served_order(waiters).await;
            assert_eq!(order, [2, 1, 0], "last in, first out");
        });
    }

    #[test]
    fn a_waiter_that_leaves_frees_its_place_and_a_closed_gate_refuses() {
        runtime().block_on(async {
            let gate = Arc::new(Gate::new("test-d", 1, Duration::from_millis(500)));
            let held = gate.enter().await.unwrap();
            let g = gate.clone();
            let gone = tokio::spawn(async move { g.enter().await.map(|_| ()) });
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(gate.waiting(), 1);
            // Its client left: the request's future is dropped.
            gone.abort();
            let _ = gone.await;
            assert_eq!(gate.waiting(), 0);
            drop(held);
            // The slot is free again, not lost to the waiter that left.
            let again = gate.enter().await.unwrap();
            let g = gate.clone();
            let waiter = tokio::spawn(async move { g.enter().await.map(|_| ()) });
            tokio::time::sleep(Duration::from_millis(10)).await;
            gate.close();
            assert_eq!(waiter.await.unwrap(), Err(Refused::Closed));
            assert_eq!(gate.enter().await.err(), Some(Refused::Closed));
            drop(again);
            assert_eq!(gate.shed(), 0);
        });
    }
}
