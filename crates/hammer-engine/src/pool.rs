//! Provides the open loop's connection policy: how many connections a
//! worker's pool may hold (see `Pool::allows`); the worker opens them as
//! due requests find none idle, and keeps them.
//!
//! A due request that finds every connection busy gets a new one at once,
//! so it reaches the target at its intended time: when the target pauses
//! (a GC pause, a lock convoy, a slow flush), the requests due in the pause
//! wait *at the target*, where a server measuring its own residence sees
//! them, not in the generator. The pool is bounded by what a pause of
//! [`PAUSE_COVER`] needs at the planned rate, beyond its steady size: a
//! longer stall waits in the generator (credited to the target, which is
//! what is slow; see `Holds`), so a target that stalls for seconds gets a
//! bounded number of connections, each opened once, not one per request.
//! Connections are kept, so the next pause finds them ready.
//!
//! The steady size starts at [`FIRST_POOL`] and grows by half, every sweep,
//! while the pool is what holds the worker back: for two sweeps in a row,
//! most of the time the worker waited in poll it waited with a due request
//! and no free connection, while responses kept coming — never past what
//! Little's law allows ([`HEADROOM`]). Neither grows for [`HOLD`] after
//! the target refused, reset or closed a connection it had not answered
//! on (the pool stays where it was), nor after a growth that brought no
//! more responses (the target, not the pool, is the limit).

use std::time::{Duration, Instant};

use hammer_core::result::LimitReason;

/// The pool's size until it is measured.
pub const FIRST_POOL: usize = 4;
/// The pool grows when, for two sweeps in a row, more than this share of
/// the worker's waiting in poll was for a connection while responses came
/// in ...
const STARVED: f64 = 0.5;
/// ... and it waited in poll at all for this share of the sweep (a worker
/// busier than that is behind by itself: connections would not help it).
const MIN_IDLE: f64 = 0.2;
/// The pool never grows past Little's law with this headroom: `HEADROOM`
/// × the worker's planned rate × the median service time of the last
/// [`RECENT`] responses, plus [`FIRST_POOL`].
const HEADROOM: f64 = 8.0;
/// How many responses the median service time is taken over.
const RECENT: usize = 64;
/// Beyond its steady size, the pool opens enough connections for the
/// requests due in a pause of the target's this long, at the planned rate.
pub const PAUSE_COVER: Duration = Duration::from_millis(100);
/// How long the pool does not grow after the target turned a new
/// connection away, or after a growth that brought no more responses.
const HOLD: Duration = Duration::from_secs(1);

/// One worker's pool size and what it is decided from.
#[derive(Debug)]
pub struct Pool {
    /// The most connections the pool may hold now.
    size: usize,
    /// Time spent waiting in poll for a connection, while responses came
    /// in, since the pool was last sized; and waiting in poll at all.
    starved: Duration,
    polled: Duration,
    /// Whether the last sweep found the worker starved.
    was_starved: bool,
    last_sized: Instant,
    /// No growth before this (see [`HOLD`]).
    hold_until: Option<Instant>,
    /// The target turned a connection away (the pool stays where it was).
    turned_away: bool,
    /// Responses completed this sweep, and in the one before (over its span, s).
    answers: u64,
    answers_before: u64,
    span_before: f64,
    /// The response rate when the pool last grew.
    grown_at: Option<f64>,
    /// The mean gap between this worker's intended send times (s).
    gap_s: f64,
    last_intended: Option<Instant>,
    /// Service times of the last [`RECENT`] responses (µs), a ring.
    recent: Vec<u32>,
    recent_next: usize,
}

impl Pool {
    /// A pool of [`FIRST_POOL`], sized from `now` on.
    pub fn new(now: Instant) -> Pool {
        Pool {
            size: FIRST_POOL,
            starved: Duration::ZERO,
            polled: Duration::ZERO,
            was_starved: false,
            last_sized: now,
            hold_until: None,
            turned_away: false,
            answers: 0,
            answers_before: 0,
            span_before: 0.0,
            grown_at: None,
            gap_s: 0.0,
            last_intended: None,
            recent: Vec::with_capacity(RECENT),
            recent_next: 0,
        }
    }

    /// Whether a pool of `open` connections may open another now.
    pub fn allows(&self, open: usize, now: Instant) -> bool {
        if open < self.size {
            return true;
        }
        let held = self.hold_until.is_some_and(|t| now < t);
        !held && !self.turned_away && open < self.size + self.cover()
    }

    /// The most connections it may hold, and why no more.
    pub fn limit(&self) -> (usize, LimitReason) {
        if self.turned_away {
            (self.size, LimitReason::TurnedAway)
        } else {
            (self.size + self.cover(), LimitReason::PauseCover)
        }
    }

    /// Connections beyond the steady size for a pause of [`PAUSE_COVER`]
    /// at the planned rate (none until the rate is known).
    fn cover(&self) -> usize {
        if self.gap_s <= 0.0 {
            return 0;
        }
        (PAUSE_COVER.as_secs_f64() / self.gap_s).ceil() as usize
    }

    /// How long a request may be in flight before the target counts as
    /// slow: well past the median of recent service times.
    pub fn overdue_after(&self) -> Duration {
        const FLOOR: Duration = Duration::from_micros(500);
        match self.median_service() {
            Some(median) => median * 2 + FLOOR,
            None => FLOOR * 2,
        }
    }

    fn median_service(&self) -> Option<Duration> {
        if self.recent.is_empty() {
            return None;
        }
        let mut sorted = [0u32; RECENT];
        let sorted = &mut sorted[..self.recent.len()];
        sorted.copy_from_slice(&self.recent);
        let mid = sorted.len() / 2;
        Some(Duration::from_micros(u64::from(
            *sorted.select_nth_unstable(mid).1,
        )))
    }

    /// A request due at `intended` went out.
    pub fn sent(&mut self, intended: Instant) {
        if let Some(last) = self.last_intended.replace(intended) {
            // An average over the last ~64 gaps: the plan's rate, per worker.
            let gap = intended.saturating_duration_since(last).as_secs_f64();
            if self.gap_s == 0.0 {
                self.gap_s = gap;
            } else {
                self.gap_s += (gap - self.gap_s) / 64.0;
            }
        }
    }

    /// A response came back after `service`.
    pub fn answered(&mut self, service: Duration) {
        self.answers += 1;
        let us = u32::try_from(service.as_micros()).unwrap_or(u32::MAX);
        if self.recent.len() < RECENT {
            self.recent.push(us);
        } else {
            self.recent[self.recent_next] = us;
            self.recent_next = (self.recent_next + 1) % RECENT;
        }
    }

    /// The worker waited in poll for `waited`; `starving` when it waited
    /// with a due request and no free connection, and responses came in.
    pub fn polled(&mut self, waited: Duration, starving: bool) {
        self.polled += waited;
        if starving {
            self.starved += waited;
        }
    }

    /// The target turned away a new connection: it is at its limit, with
    /// `open` connections.
    pub fn turned_away(&mut self, now: Instant, open: usize) {
        self.size = self.size.min(open).max(1);
        self.turned_away = true;
        self.hold_until = Some(now + HOLD);
    }

    /// Grows the pool when it is what holds the worker back (module doc);
    /// called every sweep with the connections `open` now.
    pub fn resize(&mut self, now: Instant, open: usize) {
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
        let size = self.size.max(open);
        self.size = (size + (size / 2).max(1)).min(self.little_bound());
        self.grown_at = Some(rate);
    }

    /// The most connections Little's law allows the pool (see [`HEADROOM`]).
    fn little_bound(&self) -> usize {
        let Some(median) = self.median_service() else {
            return FIRST_POOL;
        };
        if self.gap_s <= 0.0 {
            return FIRST_POOL;
        }
        (HEADROOM * median.as_secs_f64() / self.gap_s).ceil() as usize + FIRST_POOL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWEEP: Duration = Duration::from_millis(10);

    /// Sweeps with the worker idle 80% of each, all of it starved, and
    /// `answers` responses of `service` each at 1,000 sends/s.
    fn sweeps(pool: &mut Pool, start: Instant, n: u32, answers: u32, service: Duration) -> Instant {
        let mut now = start;
        for _ in 0..n {
            for _ in 0..answers {
                now += SWEEP / answers;
                pool.sent(now);
                pool.answered(service);
            }
            pool.polled(SWEEP * 8 / 10, true);
            pool.resize(now, 0);
        }
        now
    }

    #[test]
    fn a_starved_pool_grows_while_growth_brings_responses() {
        let start = Instant::now();
        let mut pool = Pool::new(start);
        // More answers each round: growth helps, so it goes on.
        let mut now = start;
        for round in 1..6 {
            now = sweeps(&mut pool, now, 2, 5 * round, Duration::from_millis(20));
        }
        assert!(pool.size > FIRST_POOL, "{pool:?}");
        // The same answers whatever the size: growth stops and holds.
        let size = pool.size;
        sweeps(&mut pool, now, 10, 25, Duration::from_millis(20));
        assert!(pool.size <= size + size / 2 + 1, "{pool:?}");
        assert!(pool.hold_until.is_some());
    }

    #[test]
    fn a_stall_or_a_busy_worker_does_not_grow_it() {
        let start = Instant::now();
        let mut pool = Pool::new(start);
        let mut now = start;
        for _ in 0..20 {
            now += SWEEP;
            // Stalled target: waiting, but no responses (not starving).
            pool.polled(SWEEP * 9 / 10, false);
            pool.resize(now, FIRST_POOL);
        }
        for _ in 0..20 {
            now += SWEEP;
            // Busy worker: starving, but hardly ever in poll.
            pool.polled(SWEEP / 20, true);
            pool.resize(now, FIRST_POOL);
        }
        assert_eq!(pool.size, FIRST_POOL);
    }

    #[test]
    fn a_pause_at_the_planned_rate_gets_connections_and_no_more() {
        let start = Instant::now();
        let mut pool = Pool::new(start);
        // 1,000 sends/s: a 100 ms pause has 100 requests due.
        let now = sweeps(&mut pool, start, 3, 10, Duration::from_millis(1));
        let size = pool.size;
        assert!(pool.allows(size + 98, now), "{pool:?}");
        assert!(!pool.allows(size + 102, now), "{pool:?}");
        assert_eq!(pool.limit().1, LimitReason::PauseCover);
        // Not a connection beyond the steady size once the target refused one.
        pool.turned_away(now, size);
        assert!(!pool.allows(size, now + HOLD * 2));
        assert_eq!(pool.limit(), (size, LimitReason::TurnedAway));
    }

    #[test]
    fn a_turned_away_connection_caps_it_where_it_is() {
        let start = Instant::now();
        let mut pool = Pool::new(start);
        pool.turned_away(start, 2);
        assert!(pool.allows(1, start) && !pool.allows(2, start));
        sweeps(&mut pool, start, 10, 20, Duration::from_millis(5));
        assert_eq!(pool.size, 2, "no growth within the hold");
    }
}
