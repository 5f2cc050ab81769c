//! Provides the worker: one thread running one poll loop over its share of
//! the connections and of the plan.
//!
//! The loop is the same for every mode; what differs is the [`Pacer`] it is
//! generic over. Each turn it sends every request that is due (opening a
//! connection when none is idle, as the policy below allows), sleeps until
//! the next due time or I/O, then finishes what the I/O allows. A request
//! that finds no connection stays in the pacer and keeps its intended time,
//! so latency still counts from when it should have gone out.
//!
//! Connection policy. Closed loop: its connections, opened at once. Open
//! loop: a due request that finds no idle connection opens one while the
//! pool is below its size, [`FIRST_POOL`] at first; beyond that it waits in
//! the pacer (and fails as a timeout if none frees up within `--timeout`).
//! The size grows by half, every sweep, while the pool is what holds the
//! worker back: for two sweeps in a row, most of the time the worker waited
//! in poll it waited with a due request and no free connection, while
//! responses kept coming. That is the one case more connections help. A
//! target that stalls sends no responses while the worker waits, and a
//! worker that is behind by itself does not wait: neither grows the pool,
//! since more connections would only add connects to a server already
//! behind, or work to a worker already busy — the churn that feeds a storm.
//! Nor does it grow past what Little's law allows ([`HEADROOM`]), nor for
//! [`HOLD`] after the target refused, reset or closed a connection it had
//! not answered on, or after a growth that brought no more responses (the
//! target, not the pool, is the limit). A target that does not keep
//! connections alive needs one per request, and gets them. `-c` caps it
//! all.
//!
//! Schedule lag is the generator grading itself, so a request's lag leaves
//! out the time it was held back because the target held every connection
//! the policy allows (see `Worker::own_lag`): that wait is the target's, and
//! shows in latency (from the intended send time) like a queue at the
//! server would. Waiting at the `-c` cap is the user's limit and stays in
//! the lag.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hammer_core::pacer::{Limited, Next, Pacer};
use hammer_core::recorder::{ErrorKind, Recorder};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{connect_error, Conn, Step};
use super::request::Prepared;
use super::timer::PreciseTimer;

const TIMER: Token = Token(usize::MAX);
/// How often the worker hands its interval measurements to the main thread.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How long in-flight requests may still finish after Ctrl-C.
const GRACE: Duration = Duration::from_secs(1);
/// Most requests started in one turn, so stop checks are never starved.
const MAX_BATCH: usize = 1024;
const SCRATCH: usize = 64 * 1024;
/// Open loop: the pool's size until the first response is measured.
const FIRST_POOL: usize = 4;
/// Open loop: the pool grows when, for two sweeps in a row, more than this
/// share of the worker's waiting in poll was for a connection while
/// responses came in ...
const STARVED: f64 = 0.5;
/// ... and it waited in poll at all for this share of the sweep (a worker
/// busier than that is behind by itself: connections would not help it).
const MIN_IDLE: f64 = 0.2;
/// Open loop: the pool never grows past Little's law with this headroom:
/// `HEADROOM` × the worker's planned rate × the median service time of
/// the last [`RECENT`] responses, plus [`FIRST_POOL`].
const HEADROOM: f64 = 8.0;
/// Open loop: how many responses the median service time is taken over.
const RECENT: usize = 64;
/// Open loop: how long the pool does not grow after the target turned a
/// new connection away.
const HOLD: Duration = Duration::from_secs(1);

/// What a hold of `span` is credited to the target, having waited in poll
/// for `polled` of it (see [`Worker::own_lag`]).
fn credit(span: Duration, polled: Duration) -> Duration {
    if polled * 2 >= span {
        span
    } else {
        polled.min(span)
    }
}

/// The share `part / whole` of `amount`.
fn prorate(amount: Duration, part: Duration, whole: Duration) -> Duration {
    if whole.is_zero() || part >= whole {
        amount
    } else {
        amount.mul_f64(part.as_secs_f64() / whole.as_secs_f64())
    }
}

/// What one worker needs to know.
#[derive(Clone)]
pub struct WorkerConfig {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The prepared requests, sent round robin.
    pub requests: Arc<[Prepared]>,
    /// Most connections this worker may have open.
    pub max_conns: usize,
    /// Whole-request timeout, from actual send.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Reuse connections.
    pub keepalive: bool,
    /// Stop sending at this instant.
    pub deadline: Option<Instant>,
    /// Offset zero of the plan.
    pub start: Instant,
    /// Requests due before this are sent but not measured (a warm-up).
    pub measure_from: Option<Instant>,
    /// Index of this worker's first request in `requests`.
    pub first_request: usize,
}

/// What a worker measured.
pub struct WorkerReport {
    /// Everything recorded.
    pub recorder: Recorder,
    /// When it stopped sending (no earlier than the end of its plan share).
    pub send_stop: Instant,
    /// When its last request ended.
    pub last_done: Instant,
    /// Connections it opened.
    pub opened: u64,
    /// The most connections it had open at once.
    pub peak_open: u64,
}

struct Worker<P> {
    cfg: WorkerConfig,
    pacer: Limited<P>,
    poll: Poll,
    conns: Slab<Conn>,
    /// Idle connections as (slot, generation); stale entries are skipped.
    idle: Vec<(usize, u64)>,
    busy: usize,
    next_generation: u64,
    next_request: usize,
    interval: Recorder,
    total: Recorder,
    /// What the warm-up measured, thrown away at each flush.
    warmup: Recorder,
    timer: PreciseTimer,
    scratch: Box<[u8]>,
    expired: Vec<usize>,
    opened: u64,
    peak_open: usize,
    /// Open loop with keep-alive: the pool is sized (see the module doc).
    paced_growth: bool,
    /// Open loop: the most connections the pool may hold now (see the module doc).
    pool_target: usize,
    /// A due request is waiting for a connection.
    blocked: bool,
    /// A hold under way: since when the policy (not `-c`) has held due
    /// requests back because the target has every connection it allows
    /// busy, and how long the worker has waited in poll since.
    hold: Option<(Instant, Duration)>,
    /// Time credited to the target over finished holds, in all.
    pool_wait: Duration,
    /// The finished holds, back to the oldest request still due, as (start,
    /// `pool_wait` before, end, credited).
    pool_waits: VecDeque<(Instant, Duration, Instant, Duration)>,
    /// Time spent waiting in poll for a connection, while responses came
    /// in, since the pool was last sized.
    starved: Duration,
    /// Time spent waiting in poll, for anything, since then.
    polled: Duration,
    /// Whether the last sweep found the worker starved.
    was_starved: bool,
    /// Open loop: no growth before this (see [`HOLD`]).
    hold_until: Option<Instant>,
    /// Responses completed this sweep, and in the one before (over its span, s).
    answers: u64,
    answers_before: u64,
    span_before: f64,
    /// The response rate when the pool last grew.
    grown_at: Option<f64>,
    /// Open loop: the mean gap between this worker's intended send times (s).
    gap_s: f64,
    last_intended: Option<Instant>,
    /// Service times of the last [`RECENT`] responses (µs), a ring.
    recent: Vec<u32>,
    recent_next: usize,
    last_sized: Instant,
    last_done: Instant,
}

/// Runs one worker until its pacer is done (or `stop` is set) and every
/// request it sent has ended.
pub fn run<P: Pacer>(
    cfg: WorkerConfig,
    pacer: Limited<P>,
    shared: &Mutex<Recorder>,
    stop: &AtomicBool,
) -> io::Result<WorkerReport> {
    let poll = Poll::new()?;
    let paced_growth = cfg.keepalive && pacer.next() != Next::Now;
    let timer = PreciseTimer::new(poll.registry(), TIMER)?;
    let mut w = Worker {
        next_request: cfg.first_request,
        last_done: cfg.start,
        cfg,
        pacer,
        poll,
        conns: Slab::new(),
        idle: Vec::new(),
        busy: 0,
        next_generation: 0,
        interval: Recorder::new(),
        total: Recorder::new(),
        warmup: Recorder::new(),
        timer,
        scratch: vec![0; SCRATCH].into_boxed_slice(),
        expired: Vec::new(),
        opened: 0,
        peak_open: 0,
        paced_growth,
        pool_target: FIRST_POOL,
        blocked: false,
        hold: None,
        pool_wait: Duration::ZERO,
        pool_waits: VecDeque::new(),
        starved: Duration::ZERO,
        polled: Duration::ZERO,
        was_starved: false,
        hold_until: None,
        answers: 0,
        answers_before: 0,
        span_before: 0.0,
        grown_at: None,
        gap_s: 0.0,
        last_intended: None,
        recent: Vec::with_capacity(RECENT),
        recent_next: 0,
        last_sized: Instant::now(),
    };
    let send_stop = w.run_loop(shared, stop)?;
    Ok(WorkerReport {
        recorder: w.total,
        send_stop,
        last_done: w.last_done,
        opened: w.opened,
        peak_open: w.peak_open as u64,
    })
}

impl<P: Pacer> Worker<P> {
    fn run_loop(&mut self, shared: &Mutex<Recorder>, stop: &AtomicBool) -> io::Result<Instant> {
        let mut events = Events::with_capacity(1024);
        let sweep_every = (self.cfg.timeout.min(self.cfg.connect_timeout) / 10)
            .clamp(Duration::from_millis(1), Duration::from_millis(10));
        let now = Instant::now();
        let (mut next_sweep, mut next_flush) = (now + sweep_every, now + FLUSH_EVERY);
        let mut sending = true;
        let mut send_stop = now;
        let mut cancel_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            self.timer.expire(now);
            let stopping = stop.load(Ordering::Relaxed);
            if sending {
                if stopping || self.cfg.deadline.is_some_and(|d| now >= d) {
                    sending = false;
                    send_stop = now;
                } else if let Some(end) = self.dispatch() {
                    sending = false;
                    send_stop = end;
                }
            }
            if stopping && cancel_at.is_none() {
                cancel_at = Some(now + GRACE);
            }
            if !sending && self.busy == 0 {
                break;
            }
            if cancel_at.is_some_and(|t| now >= t) {
                self.cancel_all();
                break;
            }
            if now >= next_sweep {
                self.sweep(now);
                self.size_pool(now);
                next_sweep = now + sweep_every;
            }
            if now >= next_flush {
                self.flush(shared);
                next_flush = now + FLUSH_EVERY;
            }
            let mut wake = next_sweep.min(next_flush);
            if let Some(t) = cancel_at {
                wake = wake.min(t);
            }
            if sending {
                if let Some(d) = self.cfg.deadline {
                    wake = wake.min(d);
                }
                self.arm_timer(now)?;
            }
            let before = Instant::now();
            let polled = self
                .poll
                .poll(&mut events, Some(wake.saturating_duration_since(before)));
            let waited = before.elapsed();
            self.polled += waited;
            if let Some((_, polled)) = &mut self.hold {
                *polled += waited;
            }

            if self.blocked && events.iter().any(|ev| ev.token() != TIMER) {
                self.starved += waited;
            }
            match polled {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() != TIMER {
                    let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                    self.on_event(ev.token().0, readable, ev.is_writable());
                }
            }
        }
        self.flush(shared);
        Ok(send_stop)
    }

    /// Starts every request that is due. Returns when sending ends for good
    /// (the pacer is done), with the instant the send window closes.
    fn dispatch(&mut self) -> Option<Instant> {
        self.blocked = false;
        if let Next::At(t) = self.pacer.next() {
            // Waits before the oldest due request no longer matter.
            let oldest = self.cfg.start + t;
            while self.pool_waits.front().is_some_and(|w| w.2 <= oldest) {
                self.pool_waits.pop_front();
            }
        }
        for _ in 0..MAX_BATCH {
            let next = self.pacer.next();
            let now = Instant::now();
            let intended = match next {
                Next::Done => {
                    self.end_hold(now);
                    let end = self.cfg.start + self.pacer.end().unwrap_or_default();
                    return Some(end.max(now));
                }
                Next::Now => now,
                Next::At(t) if self.cfg.start + t > now => {
                    // Caught up with the schedule: any hold is over.
                    self.end_hold(now);
                    return None;
                }
                Next::At(t) => self.cfg.start + t,
            };
            let slot = match self.pop_idle() {
                Some(slot) => slot,
                None if self.may_open() => match self.open(now) {
                    Ok(slot) => slot,
                    Err(kind) => {
                        self.pacer.take();
                        let lag = self.own_lag(intended, now);
                        let recorder = self.recorder(intended);
                        recorder.record_send(lag, 0);
                        recorder.record_error(kind, None);
                        continue;
                    }
                },
                None => {
                    // Every connection is busy: due requests wait in the
                    // pacer, keeping their intended times, until a connection
                    // frees up or their own timeout has passed.
                    if now.saturating_duration_since(intended) < self.cfg.timeout {
                        self.blocked = true;
                        if self.conns.len() < self.cfg.max_conns {
                            self.hold.get_or_insert((now, Duration::ZERO));
                        } else {
                            // Waiting at `-c` is the user's limit, not the target's.
                            self.end_hold(now);
                        }
                        return None;
                    }
                    self.pacer.take();
                    let lag = self.own_lag(intended, now);
                    self.recorder(intended).record_expired(now - intended, lag);
                    continue;
                }
            };
            self.pacer.take();
            self.start_request(slot, intended, now);
        }
        None
    }

    fn arm_timer(&mut self, now: Instant) -> io::Result<()> {
        let Next::At(t) = self.pacer.next() else {
            return Ok(());
        };
        let due = self.cfg.start + t;
        let at = if due > now {
            if !self.can_send() {
                // No wake-up: a response will come first. If the policy,
                // not `-c`, holds the pool, the request is held from its
                // due time (see [`Worker::own_lag`]).
                if self.conns.len() < self.cfg.max_conns {
                    self.hold.get_or_insert((due, Duration::ZERO));
                }
                return Ok(());
            }
            due
        } else {
            // Due and waiting for a connection: a response will wake us.
            return Ok(());
        };
        if at > now {
            self.timer.arm(at)?;
        }
        Ok(())
    }

    /// The schedule lag of a request due at `intended` and sent (or given
    /// up) at `now`: how late it is, less the time the policy held it back
    /// because the target held every connection the policy allows — that
    /// wait is the target's, and counts in latency only. A hold lasts from
    /// the first due request that found no connection until the worker
    /// catches up with the schedule; it is credited to the target in full
    /// when the worker spent at least half of it waiting in poll, else only
    /// the time it waited (a busy worker is behind by itself). Waits at the
    /// `-c` cap stay in the lag.
    fn own_lag(&self, intended: Instant, now: Instant) -> Duration {
        let late = now.saturating_duration_since(intended);
        if late.is_zero() || (self.pool_wait.is_zero() && self.hold.is_none()) {
            return late;
        }
        let waits = &self.pool_waits;
        let i = waits.partition_point(|w| w.2 <= intended);
        let before = match waits.get(i) {
            Some(&(start, cum, end, credited)) => {
                cum + prorate(
                    credited,
                    intended.saturating_duration_since(start),
                    end - start,
                )
            }
            None => self.pool_wait,
        };
        let mut held = self.pool_wait.saturating_sub(before);
        if let Some((start, polled)) = self.hold {
            let span = now.saturating_duration_since(start);
            let credited = credit(span, polled);
            held += prorate(
                credited,
                now.saturating_duration_since(start.max(intended)),
                span,
            );
        }
        late.saturating_sub(held)
    }

    /// Ends the hold under way, if any, at `now` (see [`Worker::own_lag`]).
    fn end_hold(&mut self, now: Instant) {
        let Some((start, polled)) = self.hold.take() else {
            return;
        };
        if now > start {
            let credited = credit(now - start, polled);
            self.pool_waits
                .push_back((start, self.pool_wait, now, credited));
            self.pool_wait += credited;
        }
    }

    /// Whether a request could go out now: a connection is idle (or may
    /// be: stale entries are skipped later) or another may be opened.
    fn can_send(&self) -> bool {
        !self.idle.is_empty() || self.may_open()
    }

    /// Whether the policy (module doc) allows another connection now.
    fn may_open(&self) -> bool {
        let open = self.conns.len();
        open < self.cfg.max_conns && (!self.paced_growth || open < self.pool_target)
    }

    fn pop_idle(&mut self) -> Option<usize> {
        while let Some((slot, generation)) = self.idle.pop() {
            if self.conns.get(slot).is_some_and(|c| {
                c.generation == generation && c.busy.is_none() && c.connecting_since.is_none()
            }) {
                return Some(slot);
            }
        }
        None
    }

    fn open(&mut self, now: Instant) -> Result<usize, ErrorKind> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut conn =
            Conn::connect(self.cfg.addr, generation, now).map_err(|e| connect_error(&e))?;
        let entry = self.conns.vacant_entry();
        self.poll
            .registry()
            .register(
                &mut conn.stream,
                Token(entry.key()),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|_| ErrorKind::Connect)?;
        self.opened += 1;
        let slot = entry.key();
        entry.insert(conn);
        self.peak_open = self.peak_open.max(self.conns.len());
        Ok(slot)
    }

    fn start_request(&mut self, slot: usize, intended: Instant, sent: Instant) {
        if let Some(last) = self.last_intended.replace(intended) {
            // An average over the last ~64 gaps: the plan's rate, per worker.
            let gap = intended.saturating_duration_since(last).as_secs_f64();
            self.gap_s += (gap - self.gap_s) / 64.0;
        }
        let req = self.next_request;
        self.next_request = (req + 1) % self.cfg.requests.len();
        self.busy += 1;
        let len = self.cfg.requests[req].bytes.len();
        let lag = self.own_lag(intended, sent);
        self.recorder(intended).record_send(lag, len as u64);
        let conn = &mut self.conns[slot];
        conn.busy = Some(super::conn::InFlight {
            req,
            intended,
            sent,
            written: 0,
            bytes_in: 0,
        });
        if conn.connecting_since.is_none() {
            let step = conn.write(&self.cfg.requests);
            self.settle(slot, step);
        }
    }

    fn on_event(&mut self, slot: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let generation = conn.generation;
        if conn.connecting_since.is_some() {
            let step = match conn.finish_connect() {
                Ok(false) => return,
                Ok(true) => conn.write(&self.cfg.requests),
                Err(kind) => Step::Fail(kind),
            };
            self.settle(slot, step);
        } else if writable {
            let step = conn.write(&self.cfg.requests);
            self.settle(slot, step);
        }
        if readable {
            match self.conns.get_mut(slot) {
                Some(conn) if conn.generation == generation => {
                    let step = conn.read(&self.cfg.requests, &mut self.scratch);
                    self.settle(slot, step);
                }
                _ => {}
            }
        }
    }

    /// Records what a step finished and decides the connection's fate.
    fn settle(&mut self, slot: usize, step: Step) {
        let keep = match step {
            Step::Wait => return,
            Step::Drop => false,
            Step::Complete(done) => {
                let now = Instant::now();
                let conn = &mut self.conns[slot];
                if !conn.answered {
                    conn.answered = true;
                    if !done.keep_alive {
                        // The target closes after its first response: every
                        // request needs a connection of its own, so growth
                        // cannot wait for connections to prove themselves.
                        self.paced_growth = false;
                    }
                }
                if let Some(f) = conn.finish() {
                    self.busy -= 1;
                    self.last_done = now;
                    self.answers += 1;
                    let service = now.saturating_duration_since(f.sent).as_micros();
                    let service = u32::try_from(service).unwrap_or(u32::MAX);
                    if self.recent.len() < RECENT {
                        self.recent.push(service);
                    } else {
                        self.recent[self.recent_next] = service;
                        self.recent_next = (self.recent_next + 1) % RECENT;
                    }
                    self.recorder(f.intended).record_response(
                        done.status,
                        now.saturating_duration_since(f.intended),
                        now.saturating_duration_since(f.sent),
                        f.bytes_in,
                    );
                }
                done.keep_alive && self.cfg.keepalive
            }
            Step::Fail(kind) => {
                let now = Instant::now();
                if let Some(f) = self.conns[slot].finish() {
                    self.busy -= 1;
                    self.last_done = now;
                    let timings = (kind == ErrorKind::Timeout).then(|| {
                        (
                            now.saturating_duration_since(f.intended),
                            now.saturating_duration_since(f.sent),
                        )
                    });
                    self.recorder(f.intended).record_error(kind, timings);
                }
                false
            }
        };
        if keep {
            self.idle.push((slot, self.conns[slot].generation));
        } else {
            if !self.conns[slot].answered && self.paced_growth {
                // Turned away: the target is at its limit of connections.
                self.pool_target = self.pool_target.min(self.conns.len()).max(1);
                self.hold_until = Some(Instant::now() + HOLD);
            }
            let generation = self.conns[slot].generation;
            self.idle.retain(|&(s, g)| (s, g) != (slot, generation));
            // Closing the socket also removes it from the poll: no deregister call.
            self.conns.remove(slot);
        }
    }

    /// Where a request due at `intended` is recorded: the interval, or the
    /// discarded warm-up before `measure_from`.
    fn recorder(&mut self, intended: Instant) -> &mut Recorder {
        if self.cfg.measure_from.is_some_and(|t| intended < t) {
            &mut self.warmup
        } else {
            &mut self.interval
        }
    }

    /// Fails requests and connects that have run out of time.
    fn sweep(&mut self, now: Instant) {
        let mut expired = std::mem::take(&mut self.expired);
        expired.extend(self.conns.iter().filter_map(|(slot, c)| {
            let connect_late = c
                .connecting_since
                .is_some_and(|t| now.saturating_duration_since(t) >= self.cfg.connect_timeout);
            let request_late = c
                .busy
                .is_some_and(|f| now.saturating_duration_since(f.sent) >= self.cfg.timeout);
            (connect_late || request_late).then_some(slot)
        }));
        for &slot in &expired {
            let connecting = self.conns[slot].connecting_since;
            let kind = if connecting.is_some() {
                ErrorKind::ConnectTimeout
            } else {
                ErrorKind::Timeout
            };
            self.settle(slot, Step::Fail(kind));
        }
        expired.clear();
        self.expired = expired;
    }

    fn cancel_all(&mut self) {
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.settle(slot, Step::Fail(ErrorKind::Canceled));
        }
    }

    /// Grows the pool when it is what holds the worker back (module doc).
    fn size_pool(&mut self, now: Instant) {
        let span = now.saturating_duration_since(self.last_sized).as_secs_f64();
        let (starved, polled) = (self.starved.as_secs_f64(), self.polled.as_secs_f64());
        let starved = polled > MIN_IDLE * span && starved > STARVED * polled;
        // Responses per second over this sweep and the last.
        let rate =
            (self.answers + self.answers_before) as f64 / (span + self.span_before).max(1e-9);
        (self.answers_before, self.span_before) = (std::mem::take(&mut self.answers), span);
        (self.starved, self.polled) = (Duration::ZERO, Duration::ZERO);
        self.last_sized = now;
        let held = self.hold_until.is_some_and(|t| now < t);
        if !(starved && self.was_starved && !held) {
            self.was_starved = starved;
            return;
        }
        self.was_starved = false;
        if self.grown_at.is_some_and(|before| rate < before * 1.05) {
            // The last growth brought no more responses: the target, not
            // the pool, is the limit.
            (self.hold_until, self.grown_at) = (Some(now + HOLD), None);
            return;
        }
        let size = self.pool_target.max(self.conns.len());
        self.pool_target = (size + (size / 2).max(1)).min(self.little_bound());
        self.grown_at = Some(rate);
    }

    /// The most connections Little's law allows the pool (see [`HEADROOM`]).
    fn little_bound(&self) -> usize {
        if self.recent.is_empty() || self.gap_s <= 0.0 {
            return FIRST_POOL;
        }
        let mut sorted = [0u32; RECENT];
        let sorted = &mut sorted[..self.recent.len()];
        sorted.copy_from_slice(&self.recent);
        let mid = sorted.len() / 2;
        let median_s = f64::from(*sorted.select_nth_unstable(mid).1) / 1e6;
        (HEADROOM * median_s / self.gap_s).ceil() as usize + FIRST_POOL
    }

    fn flush(&mut self, shared: &Mutex<Recorder>) {
        self.warmup.clear();
        self.total.add(&self.interval);
        shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&self.interval);
        self.interval.clear();
    }
}
