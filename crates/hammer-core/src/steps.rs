//! Provides the arithmetic of the lab's constant-rate steps: the rates
//! shown (three significant figures), how long a step must run to rest on
//! enough requests, and the (concurrency, throughput) point a step gives
//! the USL fit.

use std::time::Duration;

use crate::result::RunResult;

/// `rate` to three significant figures (bisection makes 137.5, not
/// 137.4999), at most one decimal place.
pub fn round_rate(rate: f64) -> f64 {
    if rate <= 0.0 || !rate.is_finite() {
        return rate;
    }
    let digits = (rate.log10().floor() as i32 - 2).max(-1);
    // Divide by a power of ten rather than multiply by its inverse: 46 / 10
    // is exactly the double nearest 4.6, 46 * 0.1 is not.
    if digits >= 0 {
        let unit = 10f64.powi(digits);
        (rate / unit).round() * unit
    } else {
        let per = 10f64.powi(-digits);
        (rate * per).round() / per
    }
}

/// How long a step at `rate` is measured: `step`, or longer to send
/// `min_requests`, but never past `max_step` (nor below `step`).
pub fn step_length(rate: f64, step: Duration, min_requests: u64, max_step: Duration) -> Duration {
    let for_requests = Duration::from_secs_f64(min_requests as f64 / rate.max(1e-3));
    step.max(for_requests).min(max_step.max(step))
}

/// A step's (concurrency, throughput): throughput X in successful responses
/// per second, concurrency by Little's law, the mean number in the system
/// N = X × mean latency. None for a step with no success or no length.
pub fn usl_point(result: &RunResult) -> Option<(f64, f64)> {
    if result.duration_s <= 0.0 || result.succeeded == 0 {
        return None;
    }
    let x = result.succeeded as f64 / result.duration_s;
    Some((x * result.latency_ms.mean / 1000.0, x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::Recorder;
    use crate::result::Pacing;

    #[test]
    fn rates_are_rounded_to_three_figures() {
        assert_eq!(round_rate(137.4999), 137.0);
        assert_eq!(round_rate(12_345.6), 12_300.0);
        assert_eq!(round_rate(4.5678), 4.6);
        assert_eq!(round_rate(50.0), 50.0);
        assert_eq!(round_rate(0.0), 0.0);
    }

    #[test]
    fn a_step_runs_long_enough_for_its_requests_within_the_cap() {
        let s = Duration::from_secs;
        // 1,000 requests at 50/s take 20 s, capped at 15 s.
        assert_eq!(step_length(50.0, s(5), 1000, s(15)), s(15));
        // At 500/s, 2 s would do: the step's own 5 s stand.
        assert_eq!(step_length(500.0, s(5), 1000, s(15)), s(5));
        // At 100/s: 10 s.
        assert_eq!(step_length(100.0, s(5), 1000, s(15)), s(10));
        // A cap below the step does not shorten it.
        assert_eq!(step_length(1.0, s(5), 1000, s(2)), s(5));
    }

    #[test]
    fn usl_point_is_littles_law() {
        let mut r = Recorder::new();
        for _ in 0..200 {
            r.record_send(Duration::ZERO, 100);
            r.record_response(
                200,
                Duration::from_millis(50),
                Duration::from_millis(50),
                100,
            );
        }
        let result =
            RunResult::from_recorder(&r, Pacing::Open { rate: 100.0 }, Duration::from_secs(2));
        let (n, x) = usl_point(&result).unwrap();
        assert_eq!(x, 100.0);
        assert!((n - 5.0).abs() < 0.1, "{n}");
        let empty =
            RunResult::from_recorder(&Recorder::new(), Pacing::Closed, Duration::from_secs(2));
        assert_eq!(usl_point(&empty), None);
    }
}
