//! Defines pacers: which request is due next, and when.
//!
//! A pacer is a pure function of how many requests it has handed out, so it
//! is tested without a clock. The engine asks [`Pacer::next`], sends the
//! request when its time comes (or at once if it is already late), then calls
//! [`Pacer::take`]. A run split across worker threads gives each worker its
//! own pacer over a disjoint share of the arrivals, so the union is the plan.

use std::time::Duration;

use rand::{rngs::SmallRng, Rng, SeedableRng};

use crate::plan::RatePlan;

/// What a pacer says about the next request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Due at this offset from the start of the run (open loop).
    At(Duration),
    /// Due as soon as a connection is free (closed loop).
    Now,
    /// No more requests.
    Done,
}

/// How open-loop arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// Evenly spaced: a constant rate `r` sends at `0, 1/r, 2/r, …`.
    Even,
    /// A Poisson process at the plan's rate, reproducible from its seed.
    Poisson {
        /// Seed of the random gaps.
        seed: u64,
    },
}

/// Hands out the send times of a plan, one request at a time. A pacer only
/// paces: count and time limits are applied once, for every pacer, by
/// [`Limited`].
pub trait Pacer: Send {
    /// The next request, without consuming it.
    fn next(&self) -> Next;
    /// Consumes the request that [`Pacer::next`] described.
    fn take(&mut self);
    /// Where the plan ends (`None`: it runs until stopped or unpaced).
    fn plan_end(&self) -> Option<Duration>;
}

/// This worker's share of a run: every `stride`-th arrival starting at `first`.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    /// Index of the first arrival of this share (the worker's index).
    pub first: u64,
    /// Distance between consecutive arrivals of this share (the worker count).
    pub stride: u64,
}

impl Share {
    /// The whole run in one share.
    pub const ALL: Share = Share {
        first: 0,
        stride: 1,
    };

    /// How many of the first `total` arrivals belong to this share.
    pub fn count_of(&self, total: u64) -> u64 {
        if total <= self.first {
            0
        } else {
            (total - self.first).div_ceil(self.stride)
        }
    }

    /// Worker `index` of `workers` within this share (worker i of W in
    /// share s of N takes arrivals s + N·i, mod N·W).
    pub fn split(&self, index: u64, workers: u64) -> Share {
        Share {
            first: self.first + self.stride * index,
            stride: self.stride * workers,
        }
    }
}

/// What ends a run besides its plan: `-n` and `-d`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limit {
    /// Send at most this many requests (over all shares of the run).
    pub requests: Option<u64>,
    /// Send nothing due at or after this offset.
    pub window: Option<Duration>,
}

/// A pacer with the run's [`Limit`] applied to its share: the one place
/// where `-n` and `-d` end a pacer, whatever its arrivals.
#[derive(Debug, Clone)]
pub struct Limited<P> {
    pacer: P,
    left: Option<u64>,
    window: Option<Duration>,
}

impl<P: Pacer> Limited<P> {
    /// `pacer` over `share`, stopped by `limit`.
    pub fn new(pacer: P, limit: Limit, share: Share) -> Self {
        Self {
            pacer,
            left: limit.requests.map(|n| share.count_of(n)),
            window: limit.window,
        }
    }

    /// The next request, without consuming it.
    pub fn next(&self) -> Next {
        if self.left == Some(0) {
            return Next::Done;
        }
        match self.pacer.next() {
            Next::At(t) if self.window.is_some_and(|w| t >= w) => Next::Done,
            next => next,
        }
    }

    /// Consumes the request that [`Limited::next`] described.
    pub fn take(&mut self) {
        self.pacer.take();
        if let Some(left) = &mut self.left {
            *left = left.saturating_sub(1);
        }
    }

    /// Where this share's send window closes once [`Limited::next`] says
    /// `Done`: the due time of the first arrival it did not send, or the
    /// window or the plan's end, whichever is first. `None` when unpaced.
    pub fn end(&self) -> Option<Duration> {
        let unsent = match self.pacer.next() {
            Next::At(t) => Some(t),
            Next::Now => return None,
            Next::Done => self.pacer.plan_end(),
        };
        match (unsent, self.window) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Evenly spaced arrivals: arrival `k` is due when the plan's cumulative
/// count reaches `k`, so a constant rate `r` sends at `0, 1/r, 2/r, …`.
#[derive(Debug, Clone)]
pub struct Even {
    plan: RatePlan,
    share: Share,
    k: u64,
}

impl Even {
    /// Arrivals of `plan` in `share`.
    pub fn new(plan: RatePlan, share: Share) -> Self {
        Self {
            plan,
            share,
            k: share.first,
        }
    }
}

impl Pacer for Even {
    fn next(&self) -> Next {
        self.plan
            .time_of(self.k as f64)
            .map_or(Next::Done, Next::At)
    }

    fn take(&mut self) {
        self.k += self.share.stride;
    }

    fn plan_end(&self) -> Option<Duration> {
        self.plan.duration()
    }
}

/// Poisson arrivals following the plan's rate (an inhomogeneous Poisson
/// process by time rescaling: unit-mean exponential gaps in `Λ` space).
#[derive(Debug, Clone)]
pub struct Poisson {
    plan: RatePlan,
    rng: SmallRng,
    x: f64,
    gap_scale: f64,
}

impl Poisson {
    /// A share of a Poisson run: with `stride` workers each runs a process at
    /// `1/stride` of the rate, whose superposition is the planned process.
    pub fn new(plan: RatePlan, share: Share, seed: u64) -> Self {
        let mut rng =
            SmallRng::seed_from_u64(seed ^ share.first.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let gap_scale = share.stride as f64;
        let x = exp_gap(&mut rng) * gap_scale;
        Self {
            plan,
            rng,
            x,
            gap_scale,
        }
    }
}

fn exp_gap(rng: &mut SmallRng) -> f64 {
    // 1 − U lies in (0, 1], so the logarithm is finite.
    -(1.0 - rng.random::<f64>()).ln()
}

impl Pacer for Poisson {
    fn next(&self) -> Next {
        self.plan.time_of(self.x).map_or(Next::Done, Next::At)
    }

    fn take(&mut self) {
        self.x += exp_gap(&mut self.rng) * self.gap_scale;
    }

    fn plan_end(&self) -> Option<Duration> {
        self.plan.duration()
    }
}

/// Closed loop: a request is due whenever a connection is free.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unpaced;

impl Pacer for Unpaced {
    fn next(&self) -> Next {
        Next::Now
    }

    fn take(&mut self) {}

    fn plan_end(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain<P: Pacer>(p: &mut Limited<P>) -> Vec<Duration> {
        let mut out = Vec::new();
        while let Next::At(t) = p.next() {
            out.push(t);
            p.take();
        }
        out
    }

    fn unlimited<P: Pacer>(pacer: P) -> Limited<P> {
        Limited::new(pacer, Limit::default(), Share::ALL)
    }

    fn constant(rate: f64, secs: Option<u64>) -> RatePlan {
        RatePlan::constant(rate, secs.map(Duration::from_secs)).unwrap()
    }

    #[test]
    fn even_pacer_sends_at_fixed_intervals() {
        let got = drain(&mut unlimited(Even::new(
            constant(4.0, Some(1)),
            Share::ALL,
        )));
        let ms: Vec<u128> = got.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 250, 500, 750]);
    }

    #[test]
    fn count_limit_ends_the_run_and_the_window() {
        let limit = Limit {
            requests: Some(10),
            window: None,
        };
        let mut p = Limited::new(
            Even::new(constant(100.0, None), Share::ALL),
            limit,
            Share::ALL,
        );
        assert_eq!(drain(&mut p).len(), 10);
        assert_eq!(p.next(), Next::Done);
        assert_eq!(p.end(), Some(Duration::from_millis(100)));
    }

    /// Regression: `-r 100 -d 10s -n 50 --arrivals poisson` reported an
    /// achieved rate of 5/s, because Poisson's send window ignored `-n`.
    #[test]
    fn poisson_window_ends_at_the_count_limit() {
        let limit = Limit {
            requests: Some(50),
            window: Some(Duration::from_secs(10)),
        };
        let plan = constant(100.0, Some(10));
        let mut p = Limited::new(Poisson::new(plan, Share::ALL, 1), limit, Share::ALL);
        assert_eq!(drain(&mut p).len(), 50);
        let rate = 50.0 / p.end().unwrap().as_secs_f64();
        assert!((60.0..170.0).contains(&rate), "achieved {rate}/s of 100/s");
    }

    #[test]
    fn unpaced_counts_down() {
        let share = Share {
            first: 1,
            stride: 4,
        };
        let limit = Limit {
            requests: Some(10),
            window: None,
        };
        let mut p = Limited::new(Unpaced, limit, share);
        let mut n = 0;
        while p.next() == Next::Now {
            p.take();
            n += 1;
        }
        // Arrivals 1, 5, 9 of the first ten belong to share 1 of 4.
        assert_eq!(n, 3);
        assert_eq!(p.end(), None);
    }

    #[test]
    fn poisson_mean_rate_matches_plan() {
        let plan = constant(1000.0, Some(20));
        let n = drain(&mut unlimited(Poisson::new(plan, Share::ALL, 7))).len() as f64;
        // 20,000 expected; the standard deviation is √20000 ≈ 141.
        assert!((n - 20_000.0).abs() < 600.0, "{n}");
    }

    fn arrivals(
        plan: &RatePlan,
        arrivals: Arrivals,
        share: Share,
        limit: Limit,
    ) -> (Vec<Duration>, Option<Duration>) {
        fn run<P: Pacer>(p: P, share: Share, limit: Limit) -> (Vec<Duration>, Option<Duration>) {
            let mut p = Limited::new(p, limit, share);
            (drain(&mut p), p.end())
        }
        match arrivals {
            Arrivals::Even => run(Even::new(plan.clone(), share), share, limit),
            Arrivals::Poisson { seed } => {
                run(Poisson::new(plan.clone(), share, seed), share, limit)
            }
        }
    }

    proptest! {
        #[test]
        fn shares_partition_the_plan(rate in 1.0f64..5000.0, workers in 1u64..8, limit in 1u64..3000) {
            let plan = constant(rate, None);
            let limit = Limit { requests: Some(limit), window: None };
            let (whole, end) = arrivals(&plan, Arrivals::Even, Share::ALL, limit);
            let mut parts = Vec::new();
            let mut ends = Vec::new();
            for w in 0..workers {
                let (times, end) = arrivals(&plan, Arrivals::Even, Share::ALL.split(w, workers), limit);
                parts.extend(times);
                ends.extend(end);
            }
            parts.sort();
            prop_assert_eq!(parts, whole);
            // The run's window is the earliest worker's: where arrival n is due.
            prop_assert_eq!(ends.into_iter().min(), end);
        }

        /// Every pacer under every limit: no more than `-n`, nothing due at
        /// or after `-d`, and the send window makes the achieved rate the
        /// planned one.
        #[test]
        fn limits_hold_for_every_pacer(
            rate in 10.0f64..10_000.0,
            poisson in any::<bool>(),
            seed in any::<u64>(),
            count in proptest::option::of(200u64..5000),
            window_ms in proptest::option::of(200u64..3000),
            plan_s in proptest::option::of(1u64..4),
        ) {
            prop_assume!(count.is_some() || window_ms.is_some() || plan_s.is_some());
            let plan = constant(rate, plan_s);
            let limit = Limit { requests: count, window: window_ms.map(Duration::from_millis) };
            let kind = if poisson { Arrivals::Poisson { seed } } else { Arrivals::Even };
            let (times, end) = arrivals(&plan, kind, Share::ALL, limit);
            let end = end.expect("a bounded open-loop run has a window");
            prop_assert!(count.map_or(true, |n| times.len() as u64 <= n));
            prop_assert!(times.iter().all(|&t| t < end));
            prop_assert!(limit.window.map_or(true, |w| end <= w));
            prop_assert!(plan.duration().map_or(true, |d| end <= d));
            let expected = rate * end.as_secs_f64();
            let n = times.len() as f64;
            if poisson {
                // Within 5 standard deviations (plus the one past the end).
                prop_assert!((n - expected).abs() <= 5.0 * expected.sqrt() + 2.0, "{n} vs {expected}");
            } else {
                prop_assert!((n - expected).abs() <= 1.0, "{n} vs {expected}");
            }
        }

        #[test]
        fn arrivals_never_go_back_in_time(seed in any::<u64>(), rate in 1.0f64..10_000.0) {
            let plan = constant(rate, Some(1));
            for kind in [Arrivals::Even, Arrivals::Poisson { seed }] {
                let (times, _) = arrivals(&plan, kind, Share::ALL, Limit::default());
                prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
            }
        }
    }
}
