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
//! pool allows ([`Pool`]), else waits
//! in the pacer (and fails as a timeout if none frees up within
//! `--timeout`). Such a wait is credited to the target, not to the
//! schedule lag ([`Holds`]), but only for time the worker spent waiting in
//! poll no longer than it asked to: a worker thread that did not run (a
//! stop, a busy machine) was not waiting on the target. A target
//! that does not keep connections alive needs one per request, and gets
//! them. `-c` caps it all.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hammer_core::pacer::{Limited, Next, Pacer};
use hammer_core::recorder::ErrorKind;
use hammer_core::result::LimitReason;
use mio::{Events, Poll, Token};

use super::assignment::{WorkerConfig, WorkerReport};
use super::conn::{connect_error, Conn, Step};
use super::exchange::{Ended, InFlight};
use super::holds::Holds;
use super::pool::Pool;
use super::table::Table;
use super::tally::{Shared, Tally, FLUSH_EVERY};
use super::timer::PreciseTimer;

const TIMER: Token = Token(usize::MAX);
/// How often the worker hands its interval measurements to the main thread.
/// How long in-flight requests may still finish after Ctrl-C.
const GRACE: Duration = Duration::from_secs(1);
/// A poll that returns later than it asked by more than this was a thread
/// that did not run; the excess is never credited to the target.
const POLL_SLACK: Duration = Duration::from_millis(1);
/// Most requests started in one turn, so stop checks are never starved.
const MAX_BATCH: usize = 1024;
const SCRATCH: usize = 64 * 1024;
struct Worker<P> {
    cfg: WorkerConfig,
    pacer: Limited<P>,
    poll: Poll,
    conns: Table,
    busy: usize,
    next_request: usize,
    tally: Tally,
    timer: PreciseTimer,
    scratch: Box<[u8]>,
    expired: Vec<usize>,
    /// Open loop with keep-alive: the pool is sized (see the module doc).
    paced_growth: bool,
    /// Open loop: how many connections the pool may hold.
    pool: Pool,
    /// A due request is waiting for a connection.
    blocked: bool,
    /// Open loop: waits for a connection that are the target's.
    holds: Holds,
    last_done: Instant,
}

/// Runs one worker until its pacer is done (or `stop` is set) and every
/// request it sent has ended.
pub fn run<P: Pacer>(
    cfg: WorkerConfig,
    pacer: Limited<P>,
    shared: &Shared,
    stop: &AtomicBool,
) -> io::Result<WorkerReport> {
    let poll = Poll::new()?;
    let paced_growth = cfg.keepalive && pacer.next() != Next::Now;
    let timer = PreciseTimer::new(poll.registry(), TIMER)?;
    let tally = Tally::new(cfg.measure_from);
    let mut w = Worker {
        next_request: cfg.first_request,
        last_done: cfg.start,
        cfg,
        pacer,
        poll,
        conns: Table::default(),
        busy: 0,
        tally,
        timer,
        scratch: vec![0; SCRATCH].into_boxed_slice(),
        expired: Vec::new(),
        paced_growth,
        pool: Pool::new(Instant::now()),
        blocked: false,
        holds: Holds::default(),
    };
    let send_stop = w.run_loop(shared, stop)?;
    let limit = w.limit();
    // Its connections close as it returns.
    shared.publish(0, 0, w.conns.opened);
    Ok(WorkerReport {
        send_stop,
        last_done: w.last_done,
        opened: w.conns.opened,
        peak_open: w.conns.peak_open as u64,
        limit,
        recorder: w.tally.into_total(),
    })
}

impl<P: Pacer> Worker<P> {
    fn run_loop(&mut self, shared: &Shared, stop: &AtomicBool) -> io::Result<Instant> {
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
                self.flush_h2();
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
                self.pool.resize(now, self.conns.len());
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
            let asked = wake.saturating_duration_since(before);
            let polled = self.poll.poll(&mut events, Some(asked));
            let waited = before.elapsed();
            let starving = self.blocked && events.iter().any(|ev| ev.token() != TIMER);
            self.pool.polled(waited, starving);
            // Past what it asked for (a timer event wakes it earlier, never
            // later), the thread was not running.
            self.holds.polled(waited.min(asked + POLL_SLACK));
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
            // Holds before the oldest due request no longer matter.
            self.holds.forget_before(self.cfg.start + t);
        }
        for _ in 0..MAX_BATCH {
            let next = self.pacer.next();
            let now = Instant::now();
            let intended = match next {
                Next::Done => {
                    self.holds.end(now);
                    let end = self.cfg.start + self.pacer.end().unwrap_or_default();
                    return Some(end.max(now));
                }
                Next::Now => now,
                Next::At(t) if self.cfg.start + t > now => {
                    // Caught up with the schedule: any hold is over.
                    self.holds.end(now);
                    return None;
                }
                Next::At(t) => self.cfg.start + t,
            };
            let slot = match self.conns.pop_idle() {
                Some(slot) => slot,
                None if self.may_open() => match self.open(now) {
                    Ok(slot) => slot,
                    Err(kind) => {
                        self.pacer.take();
                        let lag = self.holds.own_lag(intended, now);
                        let recorder = self.tally.at(intended);
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
                            self.holds.begin(now);
                        } else {
                            // Waiting at `-c` is the user's limit, not the target's.
                            self.holds.end(now);
                        }
                        return None;
                    }
                    self.pacer.take();
                    let lag = self.holds.own_lag(intended, now);
                    self.tally.at(intended).record_expired(now - intended, lag);
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
                // due time (see [`Holds`]).
                if self.conns.len() < self.cfg.max_conns {
                    self.holds.begin(due);
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

    /// Whether a request could go out now: a connection is idle (or may
    /// be: stale entries are skipped later) or another may be opened.
    fn can_send(&self) -> bool {
        self.conns.any_idle() || self.may_open()
    }

    /// Whether the policy (module doc) allows another connection now.
    fn may_open(&self) -> bool {
        let open = self.conns.len();
        open < self.cfg.max_conns && (!self.paced_growth || self.pool.allows(open))
    }

    /// The most connections the policy allows now, and why no more.
    fn limit(&self) -> (usize, LimitReason) {
        let cap = (self.cfg.max_conns, LimitReason::Cap);
        if !self.paced_growth {
            return cap;
        }
        let (most, reason) = self.pool.limit();
        if most >= self.cfg.max_conns {
            cap
        } else {
            (most, reason)
        }
    }

    fn open(&mut self, now: Instant) -> Result<usize, ErrorKind> {
        let cfg = &self.cfg;
        self.conns.open(self.poll.registry(), |generation| {
            Conn::connect(cfg.addr, cfg.tls.as_ref(), cfg.h2_streams, generation, now)
                .map_err(|e| connect_error(&e))
        })
    }

    fn start_request(&mut self, slot: usize, intended: Instant, sent: Instant) {
        self.pool.sent(intended);
        let req = self.next_request;
        self.next_request = (req + 1) % self.cfg.requests.len();
        self.busy += 1;
        let prepared = &self.cfg.requests[req];
        let len = match self.cfg.h2_streams {
            // A HEADERS frame and the body's DATA frames.
            Some(_) => 9 + prepared.h2_block.len() + prepared.body().len(),
            None => prepared.bytes.len(),
        };
        let lag = self.holds.own_lag(intended, sent);
        self.tally.at(intended).record_send(lag, len as u64);
        let flight = InFlight {
            req,
            intended,
            sent,
            written: 0,
            bytes_in: 0,
        };
        let conn = &mut self.conns[slot];
        conn.start(flight, &self.cfg.requests);
        if self.cfg.h2_streams.is_some() {
            self.conns.queue_flush(slot);
            // It may still have a free stream for the next due request.
            self.conns.list(slot);
        } else if conn.connecting_since.is_none() {
            let step = conn.write(&self.cfg.requests);
            self.settle(slot, step);
        }
    }

    /// Writes the frames this turn's requests queued, a write per connection.
    fn flush_h2(&mut self) {
        let unflushed = self.conns.take_unflushed();
        for &(slot, generation) in &unflushed {
            if let Some(conn) = self.conns.current(slot, generation) {
                conn.unflushed = false;
                let step = conn.write(&self.cfg.requests);
                self.settle(slot, step);
            }
        }
        self.conns.flushed(unflushed);
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
                    self.record_setup(slot, generation);
                    self.settle(slot, step);
                }
                _ => {}
            }
        }
        self.record_setup(slot, generation);
    }

    /// Records a connection's connect and handshake times once known.
    fn record_setup(&mut self, slot: usize, generation: u64) {
        let Some(conn) = self.conns.current(slot, generation) else {
            return;
        };
        let setup = std::mem::take(&mut conn.setup);
        if setup.connect.is_none() && setup.handshake.is_none() && setup.settings.is_none() {
            return;
        }
        let recorder = self.tally.at(Instant::now());
        if let Some(d) = setup.connect {
            recorder.record_connect(d);
        }
        if let Some(d) = setup.handshake {
            recorder.record_handshake(d);
        }
        if let Some(d) = setup.settings {
            recorder.record_settings(d);
        }
    }

    /// Records what an HTTP/2 connection's requests ended with.
    fn drain_ended(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.ended.is_empty() {
            return;
        }
        let mut ended = std::mem::take(&mut conn.ended);
        if ended.iter().any(|e| matches!(e, Ended::Response(..))) {
            conn.answered = true;
        }
        let now = Instant::now();
        for e in ended.drain(..) {
            match e {
                Ended::Response(f, done) => self.record_response(f, done.status, now),
                Ended::Failed(f, kind) => self.record_failure(f, kind, now),
            }
        }
        // Keep the buffer's capacity for the next time.
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.ended = ended;
        }
    }

    fn record_response(&mut self, f: InFlight, status: u16, now: Instant) {
        self.busy -= 1;
        self.last_done = now;
        self.pool.answered(now.saturating_duration_since(f.sent));
        self.tally.at(f.intended).record_response(
            status,
            now.saturating_duration_since(f.intended),
            now.saturating_duration_since(f.sent),
            f.bytes_in,
        );
    }

    fn record_failure(&mut self, f: InFlight, kind: ErrorKind, now: Instant) {
        self.busy -= 1;
        self.last_done = now;
        let timings = (kind == ErrorKind::Timeout).then(|| {
            (
                now.saturating_duration_since(f.intended),
                now.saturating_duration_since(f.sent),
            )
        });
        self.tally.at(f.intended).record_error(kind, timings);
    }

    /// Records what a step finished and decides the connection's fate.
    fn settle(&mut self, slot: usize, step: Step) {
        let h2 = self.cfg.h2_streams.is_some();
        if h2 {
            self.drain_ended(slot);
        }
        let keep = match step {
            // HTTP/1.1: nothing ended, the request is still on it.
            Step::Wait if !h2 => return,
            Step::Wait => match self.conns.get(slot) {
                // HTTP/2 after GOAWAY, its last request done.
                Some(c) if c.spent() => false,
                _ => {
                    self.conns.list(slot);
                    return;
                }
            },
            Step::Drop => {
                self.conns[slot].fail_all(ErrorKind::Closed);
                self.drain_ended(slot);
                false
            }
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
                    self.record_response(f, done.status, now);
                }
                done.keep_alive && self.cfg.keepalive
            }
            Step::Fail(kind) => {
                let now = Instant::now();
                if let Some(f) = self.conns[slot].finish() {
                    self.record_failure(f, kind, now);
                }
                self.conns[slot].fail_all(kind);
                self.drain_ended(slot);
                false
            }
        };
        if keep {
            self.conns.list(slot);
        } else {
            if !self.conns[slot].answered && self.paced_growth {
                // Turned away: the target is at its limit of connections.
                self.pool.turned_away(Instant::now(), self.conns.len());
            }
            self.conns.remove(slot);
        }
    }

    /// Fails requests and connects that have run out of time.
    fn sweep(&mut self, now: Instant) {
        let mut expired = std::mem::take(&mut self.expired);
        expired.extend(self.conns.iter().filter_map(|(slot, c)| {
            let connect_late = c
                .connecting_since
                .or(c.handshaking_since)
                .is_some_and(|t| now.saturating_duration_since(t) >= self.cfg.connect_timeout);
            let request_late = c.late(now, self.cfg.timeout);
            (connect_late || request_late).then_some(slot)
        }));
        for &slot in &expired {
            let conn = &mut self.conns[slot];
            let setting_up = conn.connecting_since.is_some() || conn.handshaking_since.is_some();
            if self.cfg.h2_streams.is_some() && !setting_up {
                // HTTP/2: only the late requests end; the connection stays.
                conn.expire(now, self.cfg.timeout);
                let step = conn.write(&self.cfg.requests);
                self.settle(slot, step);
                continue;
            }
            let kind = if conn.connecting_since.is_some() {
                ErrorKind::ConnectTimeout
            } else if conn.handshaking_since.is_some() {
                ErrorKind::TlsHandshake
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

    fn flush(&mut self, shared: &Shared) {
        self.tally.hand_over(shared);
        shared.publish(self.conns.len() as u64, self.busy as u64, self.conns.opened);
    }
}
