//! Provides the open loop's connection policy: how many connections a
//! worker's pool may hold (see `Pool::allows`); the worker opens them as
//! due requests find none idle, and keeps them.
//!
//! [`FIRST_POOL`] at first; beyond its size, due requests wait in the
//! pacer. The size grows by half, every sweep, while the pool is what holds
//! the worker back: for two sweeps in a row, most of the time the worker
//! waited in poll it waited with a due request and no free connection,
//! while responses kept coming. That is the one case more connections help.
//! A target that stalls sends no responses while the worker waits, and a
//! worker that is behind by itself does not wait: neither grows the pool,
//! since more connections would only add connects to a server already
//! behind, or work to a worker already busy — the churn that feeds a storm.
//! Nor does the pool grow past what Little's law allows ([`HEADROOM`]), nor
//! for [`HOLD`] after the target refused, reset or closed a connection it
//! had not answered on, or after a growth that brought no more responses
//! (the target, not the pool, is the limit).
//!
//! Requests due in a pause of the target's therefore wait in the
//! generator, keeping their intended times, and drain through the pool
//! when it ends: a wait that is the target's (see `Holds`). Opening a
//! connection per request due in the pause instead, so that each waits
//! at the target, was measured worse on two cores (bench/accuracy.sh):
//! hundreds of connects in a pause cost the worker its schedule and can
//! overflow the target's accept backlog (a SYN retried after 1 s).

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

    /// Whether a pool of `open` connections may open another.
    pub fn allows(&self, open: usize) -> bool {
        open < self.size
    }

    /// The most connections it may grow to now, and why no more.
    pub fn limit(&self) -> (usize, LimitReason) {
        if self.turned_away {
            (self.size, LimitReason::TurnedAway)
        } else {
            (self.size.max(self.little_bound()), LimitReason::LittlesLaw)
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
    fn its_limit_is_littles_law_until_the_target_refuses() {
        let start = Instant::now();
        let mut pool = Pool::new(start);
        // 1,000 sends/s answered in 5 ms: 8 x 1,000/s x 5 ms + 4 = 44.
        let now = sweeps(&mut pool, start, 3, 10, Duration::from_millis(5));
        assert_eq!(pool.limit(), (44, LimitReason::LittlesLaw));
        pool.turned_away(now, 3);
        assert_eq!(pool.limit(), (3, LimitReason::TurnedAway));
    }

    #[test]
    fn a_turned_away_connection_caps_it_where_it_is() {
        let start = Instant::now();
        let mut pool = Pool::new(start);
        pool.turned_away(start, 2);
        assert!(pool.allows(1) && !pool.allows(2));
        sweeps(&mut pool, start, 10, 20, Duration::from_millis(5));
        assert_eq!(pool.size, 2, "no growth within the hold");
    }
}
