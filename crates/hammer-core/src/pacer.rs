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

/// Hands out the send times of a run, one request at a time.
pub trait Pacer: Send {
    /// The next request, without consuming it.
    fn next(&self) -> Next;
    /// Consumes the request that [`Pacer::next`] described.
    fn take(&mut self);
    /// The offset at which this pacer's share of the plan ends, once known:
    /// the plan's end, or the due time of the first request past a count
    /// limit. Used to measure the send window honestly.
    fn end(&self) -> Option<Duration>;
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
}

/// Evenly spaced arrivals: arrival `k` is due when the plan's cumulative
/// count reaches `k`, so a constant rate `r` sends at `0, 1/r, 2/r, …`.
#[derive(Debug, Clone)]
pub struct Even {
    plan: RatePlan,
    share: Share,
    k: u64,
    limit: Option<u64>,
}

impl Even {
    /// Arrivals of `plan` in `share`, stopping before global arrival `limit`.
    pub fn new(plan: RatePlan, share: Share, limit: Option<u64>) -> Self {
        Self {
            plan,
            share,
            k: share.first,
            limit,
        }
    }
}

impl Pacer for Even {
    fn next(&self) -> Next {
        if self.limit.is_some_and(|n| self.k >= n) {
            return Next::Done;
        }
        self.plan
            .time_of(self.k as f64)
            .map_or(Next::Done, Next::At)
    }

    fn take(&mut self) {
        self.k += self.share.stride;
    }

    fn end(&self) -> Option<Duration> {
        let by_count = self.limit.and_then(|n| self.plan.time_of(n as f64));
        match (by_count, self.plan.duration()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
    left: Option<u64>,
}

impl Poisson {
    /// A share of a Poisson run: with `stride` workers each runs a process at
    /// `1/stride` of the rate, whose superposition is the planned process.
    pub fn new(plan: RatePlan, share: Share, limit: Option<u64>, seed: u64) -> Self {
        let mut rng =
            SmallRng::seed_from_u64(seed ^ share.first.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let gap_scale = share.stride as f64;
        let x = exp_gap(&mut rng) * gap_scale;
        Self {
            plan,
            rng,
            x,
            gap_scale,
            left: limit.map(|n| share.count_of(n)),
        }
    }
}

fn exp_gap(rng: &mut SmallRng) -> f64 {
    // 1 − U lies in (0, 1], so the logarithm is finite.
    -(1.0 - rng.random::<f64>()).ln()
}

impl Pacer for Poisson {
    fn next(&self) -> Next {
        if self.left == Some(0) {
            return Next::Done;
        }
        self.plan.time_of(self.x).map_or(Next::Done, Next::At)
    }

    fn take(&mut self) {
        self.x += exp_gap(&mut self.rng) * self.gap_scale;
        if let Some(left) = &mut self.left {
            *left = left.saturating_sub(1);
        }
    }

    fn end(&self) -> Option<Duration> {
        self.plan.duration()
    }
}

/// Closed loop: a request is due whenever a connection is free, up to an
/// optional count.
#[derive(Debug, Clone)]
pub struct Unpaced {
    left: Option<u64>,
}

impl Unpaced {
    /// This share's part of at most `limit` requests (unbounded when `None`).
    pub fn new(share: Share, limit: Option<u64>) -> Self {
        Self {
            left: limit.map(|n| share.count_of(n)),
        }
    }
}

impl Pacer for Unpaced {
    fn next(&self) -> Next {
        if self.left == Some(0) {
            Next::Done
        } else {
            Next::Now
        }
    }

    fn take(&mut self) {
        if let Some(left) = &mut self.left {
            *left = left.saturating_sub(1);
        }
    }

    fn end(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(p: &mut dyn Pacer) -> Vec<Duration> {
        let mut out = Vec::new();
        while let Next::At(t) = p.next() {
            out.push(t);
            p.take();
        }
        out
    }

    #[test]
    fn even_pacer_sends_at_fixed_intervals() {
        let plan = RatePlan::constant(4.0, Some(Duration::from_secs(1))).unwrap();
        let got = drain(&mut Even::new(plan, Share::ALL, None));
        let ms: Vec<u128> = got.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 250, 500, 750]);
    }

    #[test]
    fn count_limit_ends_the_run_and_the_window() {
        let plan = RatePlan::constant(100.0, None).unwrap();
        let mut p = Even::new(plan, Share::ALL, Some(10));
        assert_eq!(drain(&mut p).len(), 10);
        assert_eq!(p.next(), Next::Done);
        assert_eq!(p.end(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn unpaced_counts_down() {
        let mut p = Unpaced::new(
            Share {
                first: 1,
                stride: 4,
            },
            Some(10),
        );
        let mut n = 0;
        while p.next() == Next::Now {
            p.take();
            n += 1;
        }
        // Arrivals 1, 5, 9 of the first ten belong to share 1 of 4.
        assert_eq!(n, 3);
    }

    #[test]
    fn poisson_mean_rate_matches_plan() {
        let plan = RatePlan::constant(1000.0, Some(Duration::from_secs(20))).unwrap();
        let n = drain(&mut Poisson::new(plan, Share::ALL, None, 7)).len() as f64;
        // 20,000 expected; the standard deviation is √20000 ≈ 141.
        assert!((n - 20_000.0).abs() < 600.0, "{n}");
    }

    proptest! {
        #[test]
        fn shares_partition_the_plan(rate in 1.0f64..5000.0, workers in 1u64..8, limit in 1u64..3000) {
            let plan = RatePlan::constant(rate, None).unwrap();
            let whole = drain(&mut Even::new(plan.clone(), Share::ALL, Some(limit)));
            let mut parts: Vec<Duration> = (0..workers)
                .flat_map(|w| drain(&mut Even::new(plan.clone(), Share { first: w, stride: workers }, Some(limit))))
                .collect();
            parts.sort();
            prop_assert_eq!(parts, whole);
        }

        #[test]
        fn arrivals_never_go_back_in_time(seed in any::<u64>(), rate in 1.0f64..10_000.0) {
            let plan = RatePlan::constant(rate, Some(Duration::from_secs(1))).unwrap();
            for times in [
                drain(&mut Even::new(plan.clone(), Share::ALL, None)),
                drain(&mut Poisson::new(plan, Share::ALL, None, seed)),
            ] {
                prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
            }
        }
    }
}
