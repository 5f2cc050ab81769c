//! Provides the bookkeeping that keeps schedule lag the generator's own:
//! time a due request was held back because the target stalled with every
//! connection the pool policy allows busy is the target's, and counts in
//! latency only (like a queue at the server would).
//!
//! A hold lasts from the first due request that found no connection (the
//! pool below `-c`) until the worker catches up with the schedule. The
//! worker reports its waits in poll, cut to what it asked for (a thread
//! that did not run was not waiting on the target: see the worker); the
//! hold is credited to the target in full when those make at least half of
//! it, else only those waits (a busy worker is behind by itself). Waits at
//! the `-c` cap are the user's limit and are no hold.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One worker's holds.
#[derive(Debug, Default)]
pub struct Holds {
    /// The hold under way: since when, and how long the worker has waited
    /// in poll since.
    current: Option<(Instant, Duration)>,
    /// Time credited to the target over finished holds, in all.
    total: Duration,
    /// The finished holds, back to the oldest request still due, as (start,
    /// `total` before, end, credited).
    past: VecDeque<(Instant, Duration, Instant, Duration)>,
}

impl Holds {
    /// Due requests are held back from `at` on (no-op while held already).
    pub fn begin(&mut self, at: Instant) {
        self.current.get_or_insert((at, Duration::ZERO));
    }

    /// The worker waited in poll for `waited`, on the target.
    pub fn polled(&mut self, waited: Duration) {
        if let Some((_, polled)) = &mut self.current {
            *polled += waited;
        }
    }

    /// The hold under way, if any, ends at `now`.
    pub fn end(&mut self, now: Instant) {
        let Some((start, polled)) = self.current.take() else {
            return;
        };
        if now > start {
            let credited = credit(now - start, polled);
            self.past.push_back((start, self.total, now, credited));
            self.total += credited;
        }
    }

    /// Forgets holds that ended before `oldest`, the oldest due request.
    pub fn forget_before(&mut self, oldest: Instant) {
        while self.past.front().is_some_and(|h| h.2 <= oldest) {
            self.past.pop_front();
        }
    }

    /// The schedule lag of a request due at `intended` and sent (or given
    /// up) at `now`: how late it is, less what holds since then credit to
    /// the target.
    pub fn own_lag(&self, intended: Instant, now: Instant) -> Duration {
        let late = now.saturating_duration_since(intended);
        if late.is_zero() || (self.total.is_zero() && self.current.is_none()) {
            return late;
        }
        let i = self.past.partition_point(|h| h.2 <= intended);
        let before = match self.past.get(i) {
            Some(&(start, total, end, credited)) => {
                total
                    + prorate(
                        credited,
                        intended.saturating_duration_since(start),
                        end - start,
                    )
            }
            None => self.total,
        };
        let mut held = self.total.saturating_sub(before);
        if let Some((start, polled)) = self.current {
            let span = now.saturating_duration_since(start);
            let part = now.saturating_duration_since(start.max(intended));
            held += prorate(credit(span, polled), part, span);
        }
        late.saturating_sub(held)
    }
}

/// What a hold of `span` is credited to the target, having waited in poll
/// for `polled` of it.
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_hold_spent_waiting_is_the_targets() {
        let t0 = Instant::now();
        let mut holds = Holds::default();
        holds.begin(t0 + 2 * MS);
        holds.polled(8 * MS);
        holds.end(t0 + 12 * MS);
        // Due at t0, sent at 13 ms: 2 ms late before the hold, 1 ms after.
        assert_eq!(holds.own_lag(t0, t0 + 13 * MS), 3 * MS);
        // Due in the middle of the hold: only the time after it counts.
        assert_eq!(holds.own_lag(t0 + 7 * MS, t0 + 12 * MS), Duration::ZERO);
    }

    #[test]
    fn a_busy_worker_gets_credit_for_its_waits_only() {
        let t0 = Instant::now();
        let mut holds = Holds::default();
        holds.begin(t0);
        holds.polled(2 * MS);
        // Still under way: 10 ms held, 2 of them waiting in poll.
        assert_eq!(holds.own_lag(t0, t0 + 10 * MS), 8 * MS);
        holds.end(t0 + 10 * MS);
        assert_eq!(holds.own_lag(t0, t0 + 10 * MS), 8 * MS);
    }

    #[test]
    fn no_hold_no_credit() {
        let t0 = Instant::now();
        let mut holds = Holds::default();
        assert_eq!(holds.own_lag(t0, t0 + 5 * MS), 5 * MS);
        holds.begin(t0);
        holds.polled(10 * MS);
        holds.end(t0 + 10 * MS);
        holds.forget_before(t0 + 20 * MS);
        // A request due after the hold ended owns all of its lateness.
        assert_eq!(holds.own_lag(t0 + 20 * MS, t0 + 21 * MS), MS);
    }
}
