//! Provides the closed-loop sweep, Gunther's way of fitting the Universal
//! Scalability Law: goodput (successful responses a second) measured at 1,
//! 2, 4, … connections, each sending its next request when the last one
//! ends, until goodput stops growing; then X(N) = λN / (1 + σ(N−1) +
//! κN(N−1)) fitted to the points. A service that sheds load (503s) past
//! some concurrency keeps its goodput flat there: the sweep goes on past the
//! first shedding point, so the fit sees the plateau, not three points.
//! Concurrency is set, not inferred: the open-loop steps' Little's-law
//! points crowd together below the knee and fit poorly (R² 0.6–0.9 on one
//! instance), while a sweep spreads them from one request in flight to
//! past the peak.

use hammer_core::capacity::Usl;
use hammer_core::result::RunResult;
use serde::{Deserialize, Serialize};

/// Growth per doubling below which throughput counts as no longer growing.
const GROWING: f64 = 1.05;

/// Doublings in a row without growth that end the sweep: one may be noise,
/// and the fit needs points past the peak to find κ.
const FLAT_POINTS: usize = 2;

/// One point of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Connections, each with one request in flight.
    pub connections: usize,
    /// Successful responses per second.
    pub throughput: f64,
    /// Mean and p99 latency, ms.
    pub mean_ms: f64,
    /// See `mean_ms`.
    pub p99_ms: f64,
    /// Failed requests.
    pub failed: u64,
    /// Requests answered or failed (0 in reports from before it was kept).
    #[serde(default)]
    pub requests: u64,
}

impl SweepPoint {
    /// The point a closed-loop run at `connections` gave.
    pub fn of(connections: usize, result: &RunResult) -> SweepPoint {
        SweepPoint {
            connections,
            throughput: result.succeeded as f64 / result.duration_s.max(1e-9),
            mean_ms: result.latency_ms.mean,
            p99_ms: result.latency_ms.p99,
            failed: result.failed,
            requests: result.requests,
        }
    }

    /// The share of its requests that failed (0 when none were counted).
    pub fn failed_share(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failed as f64 / self.requests as f64
        }
    }
}

/// The sweep, its fit, and the peak it predicts beside the one measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// In the order run (connections doubling).
    pub points: Vec<SweepPoint>,
    /// The USL fitted to (connections, throughput).
    pub usl: Option<Usl>,
    /// The highest throughput measured, and at how many connections.
    pub measured_peak: Option<(usize, f64)>,
    /// Where the fit puts the peak: connections and throughput (None when
    /// κ is 0: throughput levels off towards λ/σ instead).
    pub predicted_peak: Option<(f64, f64)>,
    /// Why the sweep ended.
    pub stopped: String,
}

impl Sweep {
    /// The fit and peaks of `points`; `stopped` says why no more were run.
    pub fn conclude(points: Vec<SweepPoint>, stopped: String) -> Sweep {
        let usl = Usl::fit(
            &points
                .iter()
                .map(|p| (p.connections as f64, p.throughput))
                .collect::<Vec<_>>(),
        );
        let measured_peak = points
            .iter()
            .max_by(|a, b| a.throughput.total_cmp(&b.throughput))
            .map(|p| (p.connections, p.throughput));
        Sweep {
            predicted_peak: usl.and_then(|u| u.peak()),
            usl,
            measured_peak,
            points,
            stopped,
        }
    }
}

/// Parameters of the USL fit (λ, σ, κ): with no more points than this the
/// curve passes through every point, whatever the service does.
pub const FIT_PARAMETERS: usize = 3;

impl Sweep {
    /// Whether the fit is exact by construction (too few points for R² or
    /// the predicted peak to mean anything).
    pub fn fit_is_exact(&self) -> bool {
        self.usl.is_some() && self.points.len() <= FIT_PARAMETERS
    }
}

/// Points a sweep runs before it may stop for want of growth: two more
/// than the fit's parameters, so R² has something to say.
pub const MIN_POINTS: usize = FIT_PARAMETERS + 2;

/// Whether the sweep should stop after `points`: it has [`MIN_POINTS`],
/// and the last two doublings each failed to beat the best before them by
/// 5%.
pub fn stopped_growing(points: &[SweepPoint]) -> bool {
    if points.len() < MIN_POINTS {
        return false;
    }
    let (before, last) = points.split_at(points.len() - FLAT_POINTS);
    let best = before.iter().map(|p| p.throughput).fold(0.0, f64::max);
    last.iter().all(|p| p.throughput < best * GROWING)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(connections: usize, throughput: f64) -> SweepPoint {
        SweepPoint {
            connections,
            throughput,
            mean_ms: 1.0,
            p99_ms: 2.0,
            failed: 0,
            requests: 100,
        }
    }

    #[test]
    fn the_sweep_stops_two_doublings_after_growth_ends_with_five_points_at_least() {
        let grow = [
            point(1, 100.0),
            point(2, 190.0),
            point(4, 350.0),
            point(8, 600.0),
            point(16, 900.0),
        ];
        assert!(!stopped_growing(&grow));
        let one_flat = [
            point(1, 100.0),
            point(2, 190.0),
            point(4, 350.0),
            point(8, 600.0),
            point(16, 610.0),
        ];
        assert!(!stopped_growing(&one_flat), "one flat point may be noise");
        let two_flat = [
            point(1, 100.0),
            point(2, 190.0),
            point(4, 350.0),
            point(8, 360.0),
            point(16, 340.0),
        ];
        assert!(stopped_growing(&two_flat));
        assert!(
            !stopped_growing(&two_flat[..4]),
            "four points are too few for a fit worth its R²"
        );
        let regrow = [
            point(1, 100.0),
            point(2, 190.0),
            point(4, 195.0),
            point(8, 180.0),
            point(16, 260.0),
        ];
        assert!(!stopped_growing(&regrow));
    }
}
