//! Provides the capacity maths of `hammer lab`, free of I/O so it is tested
//! without a clock: the verdict on one constant-rate step ([`judge`]), the
//! search for the highest rate that keeps an SLO ([`Search`]: geometric
//! steps up, then bisection to a stated precision), the N+1 capacity plan
//! ([`instances_needed`]) and a Universal Scalability Law fit of the steps
//! ([`Usl::fit`]).

use serde::{Deserialize, Serialize};

use crate::result::{RunResult, GENERATOR_LIMIT_MS};
use crate::slo::SloReport;

/// What one step says about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The SLO held and the error rate stayed under its limit.
    Pass,
    /// The SLO broke or errors appeared: the target's failure.
    Fail,
    /// The step failed, but hammer could not keep its own schedule, so it
    /// says nothing about the target.
    GeneratorLimited,
}

impl Verdict {
    /// The word every report uses for it.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::GeneratorLimited => "hammer-limited",
        }
    }
}

/// The verdict on a step and the reason, in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// Pass, fail, or not the target's fault.
    pub verdict: Verdict,
    /// Why, e.g. "p99 83.7 ms > 60 ms".
    pub reason: String,
    /// The generator's schedule lag p99 exceeded [`GENERATOR_LIMIT_MS`] (a passing
    /// step may carry this flag too: its latency is, if anything, overstated).
    pub generator_lagged: bool,
}

impl Judgement {
    /// The verdict and, unless it passed, why: "FAIL: p99 83.7 ms > 60 ms".
    pub fn describe(&self) -> String {
        match self.verdict {
            Verdict::Pass => self.verdict.word().into(),
            v => format!("{}: {}", v.word(), self.reason),
        }
    }
}

/// Judges one step from the SLO's verdict on it (`slo`, see
/// [`RunResult::judge`]), then the error rate against `max_error_rate` (a
/// fraction), then whether hammer itself lagged.
pub fn judge(result: &RunResult, slo: &SloReport, max_error_rate: f64) -> Judgement {
    let lag = result.schedule_lag_ms.p99;
    let generator_lagged = lag > GENERATOR_LIMIT_MS;
    let mut broken: Vec<String> = slo
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} failed (was {:.2})", c.check, c.actual))
        .collect();
    let error_rate = result.error_rate();
    if error_rate > max_error_rate {
        broken.push(format!(
            "{:.2}% of requests failed ({} of {})",
            error_rate * 100.0,
            result.failed,
            result.requests
        ));
    }
    // Short of the offered rate by hammer's doing only if hammer fell that
    // far behind its schedule: sending 12% short over 5 s means lagging
    // ~0.6 s by the end. Short with little lag means the requests waited
    // in hammer for an overloaded target's busy connections (that wait is
    // the target's, and its latency says so).
    let short = result.target_rate.is_some_and(|t| {
        let shortfall_ms = (1.0 - result.achieved_rate / t) * result.duration_s * 1e3;
        result.achieved_rate < 0.95 * t && result.schedule_lag_ms.max >= 0.5 * shortfall_ms
    });
    if broken.is_empty() {
        return Judgement {
            verdict: Verdict::Pass,
            reason: "SLO held".into(),
            generator_lagged,
        };
    }
    // The target's fault unless hammer's own lag makes up a large part of
    // the latency it reports, or hammer could not send the offered rate.
    let own_share = lag / result.latency_ms.p99.max(f64::MIN_POSITIVE);
    let verdict = if generator_lagged && (own_share > 0.25 || short) {
        broken.push(format!("hammer's schedule lag p99 was {lag:.1} ms"));
        Verdict::GeneratorLimited
    } else {
        Verdict::Fail
    };
    Judgement {
        verdict,
        reason: broken.join("; "),
        generator_lagged,
    }
}

/// The highest rate that kept the SLO, with the margin the search leaves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// Highest passing rate, requests/s.
    pub rate: f64,
    /// Lowest failing rate above it (the true capacity lies in between);
    /// None when the search stopped at `--max-rate` or at hammer's limit.
    pub first_failing: Option<f64>,
}

impl Capacity {
    /// The margin of error as a fraction of the rate (0 when unbounded).
    pub fn margin(&self) -> f64 {
        self.first_failing
            .map_or(0.0, |f| (f - self.rate) / self.rate)
    }
}

/// Why a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Bisection reached the precision asked for.
    Converged,
    /// The next step would exceed `--max-rate` and the cap passed.
    MaxRate,
    /// hammer, not the target, was the limit.
    GeneratorLimited,
    /// Even the lowest rate tried failed.
    NothingPassed,
}

/// The capacity search: steps grow geometrically from `start` until one
/// fails, then bisect between the highest passing and the lowest failing
/// rate until they are within `precision` of each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Search {
    start: f64,
    growth: f64,
    precision: f64,
    max_rate: f64,
    min_rate: f64,
    highest_pass: Option<f64>,
    lowest_fail: Option<f64>,
    stopped: Option<Stop>,
}

impl Search {
    /// A search from `start` req/s, multiplying by `growth` (> 1) while
    /// steps pass, never above `max_rate`, to a relative `precision`.
    pub fn new(start: f64, growth: f64, precision: f64, max_rate: f64) -> Search {
        let start = start.min(max_rate);
        Search {
            start,
            growth: growth.max(1.1),
            precision: precision.max(0.001),
            max_rate,
            min_rate: (start / 64.0).max(0.5),
            highest_pass: None,
            lowest_fail: None,
            stopped: None,
        }
    }

    /// The rate of the next step, or None when the search is over.
    pub fn next_rate(&self) -> Option<f64> {
        if self.stopped.is_some() {
            return None;
        }
        Some(match (self.highest_pass, self.lowest_fail) {
            (None, None) => self.start,
            (Some(p), None) => (p * self.growth).min(self.max_rate),
            (None, Some(f)) => f / self.growth,
            (Some(p), Some(f)) => (p + f) / 2.0,
        })
    }

    /// Takes in the verdict of a step at `rate`.
    pub fn record(&mut self, rate: f64, verdict: Verdict) {
        match verdict {
            Verdict::Pass => {
                self.highest_pass = Some(self.highest_pass.map_or(rate, |p| p.max(rate)));
            }
            Verdict::Fail => {
                self.lowest_fail = Some(self.lowest_fail.map_or(rate, |f| f.min(rate)));
            }
            Verdict::GeneratorLimited => {
                self.stopped = Some(Stop::GeneratorLimited);
                return;
            }
        }
        self.stopped = match (self.highest_pass, self.lowest_fail) {
            (Some(p), None) if p >= self.max_rate => Some(Stop::MaxRate),
            (None, Some(f)) if f / self.growth < self.min_rate => Some(Stop::NothingPassed),
            (Some(p), Some(f)) if (f - p) / p <= self.precision => Some(Stop::Converged),
            _ => None,
        };
    }

    /// Why the search ended, once it has.
    pub fn stopped(&self) -> Option<Stop> {
        self.stopped
    }

    /// The answer so far: the highest passing rate and the failing rate above it.
    pub fn capacity(&self) -> Option<Capacity> {
        self.highest_pass.map(|rate| Capacity {
            rate,
            first_failing: self.lowest_fail,
        })
    }
}

/// Instances needed to serve `expected` req/s when one serves `capacity`
/// within the SLO, plus one so that losing any one still serves it (N+1).
pub fn instances_needed(expected: f64, capacity: f64) -> u64 {
    if capacity <= 0.0 || !capacity.is_finite() {
        return 0;
    }
    // A tiny tolerance so 10,000 / 2,000 is 5, not 6 from rounding.
    (expected / capacity - 1e-9).ceil().max(1.0) as u64 + 1
}

/// A Universal Scalability Law model, X(N) = λN / (1 + σ(N−1) + κN(N−1)):
/// throughput X at concurrency N, with contention σ and coherency κ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usl {
    /// Throughput of one unit of concurrency without contention, req/s.
    pub lambda: f64,
    /// Contention (serial fraction).
    pub sigma: f64,
    /// Coherency (crosstalk) penalty.
    pub kappa: f64,
    /// How well the fit explains the throughput (coefficient of determination).
    pub r_squared: f64,
}

impl Usl {
    /// Fits the model to (concurrency, throughput) points by least squares
    /// on its linear form N/X = a + b(N−1) + cN(N−1), with λ = 1/a, σ = b/a,
    /// κ = c/a, each point's equation divided by its N/X so that the
    /// residuals are relative errors in throughput (unweighted, N/X grows
    /// with N and the widest concurrency alone sets the fit: a plateau of
    /// 66, 70, 66, 62, 68 req/s at 1-16 connections fitted worse than its
    /// mean, R² −1.7). Needs at least three points with N and X positive and
    /// a well-posed system; negative σ or κ are clamped to 0 and refitted.
    pub fn fit(points: &[(f64, f64)]) -> Option<Usl> {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|&(n, x)| n > 0.0 && x > 0.0 && n.is_finite() && x.is_finite())
            .collect();
        if pts.len() < 3 {
            return None;
        }
        let rows: Vec<([f64; 3], f64)> = pts
            .iter()
            .map(|&(n, x)| {
                let y = n / x;
                ([1.0 / y, (n - 1.0) / y, n * (n - 1.0) / y], 1.0)
            })
            .collect();
        let mut coef = least_squares(&rows, [true, true, true])?;
        if coef[1] < 0.0 || coef[2] < 0.0 {
            let keep = [true, coef[1] >= 0.0, coef[2] >= 0.0];
            coef = least_squares(&rows, keep)?;
        }
        let a = coef[0];
        if a <= 0.0 {
            return None;
        }
        let mut model = Usl {
            lambda: 1.0 / a,
            sigma: (coef[1] / a).max(0.0),
            kappa: (coef[2] / a).max(0.0),
            r_squared: 0.0,
        };
        let mean = pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64;
        let total: f64 = pts.iter().map(|p| (p.1 - mean).powi(2)).sum();
        let residual: f64 = pts
            .iter()
            .map(|&(n, x)| (x - model.throughput(n)).powi(2))
            .sum();
        model.r_squared = if total > 0.0 {
            1.0 - residual / total
        } else {
            1.0
        };
        Some(model)
    }

    /// Predicted throughput at concurrency `n`.
    pub fn throughput(&self, n: f64) -> f64 {
        self.lambda * n / (1.0 + self.sigma * (n - 1.0) + self.kappa * n * (n - 1.0))
    }

    /// The concurrency at which throughput peaks and that peak; None when
    /// κ is 0 (throughput then only levels off towards λ/σ).
    pub fn peak(&self) -> Option<(f64, f64)> {
        (self.kappa > 0.0).then(|| {
            let n = ((1.0 - self.sigma) / self.kappa).sqrt();
            (n, self.throughput(n))
        })
    }
}

/// Least squares over the columns marked `keep` (the others fixed at 0),
/// by the normal equations and Gaussian elimination.
fn least_squares(rows: &[([f64; 3], f64)], keep: [bool; 3]) -> Option<[f64; 3]> {
    let cols: Vec<usize> = (0..3).filter(|&i| keep[i]).collect();
    let k = cols.len();
    let mut m = vec![vec![0.0; k + 1]; k];
    for (x, y) in rows {
        for (i, &ci) in cols.iter().enumerate() {
            for (j, &cj) in cols.iter().enumerate() {
                m[i][j] += x[ci] * x[cj];
            }
            m[i][k] += x[ci] * y;
        }
    }
    for i in 0..k {
        let pivot = (i..k).max_by(|&a, &b| m[a][i].abs().total_cmp(&m[b][i].abs()))?;
        m.swap(i, pivot);
        if m[i][i].abs() < 1e-12 * (1.0 + m[i][k].abs()) {
            return None;
        }
        let pivot_row = m[i].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != i {
                let f = row[i] / pivot_row[i];
                for (cell, p) in row.iter_mut().zip(&pivot_row).skip(i) {
                    *cell -= f * p;
                }
            }
        }
    }
    let mut out = [0.0; 3];
    for (i, &ci) in cols.iter().enumerate() {
        out[ci] = m[i][k] / m[i][i];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::recorder::{ErrorKind, Recorder};
    use crate::result::Pacing;
    use crate::slo::Slo;

    /// 1000 requests at 100/s with this latency, lag and failures.
    fn step(latency_ms: u64, lag_ms: u64, failures: u64) -> RunResult {
        let mut rec = Recorder::new();
        let ms = Duration::from_millis;
        for i in 0..1000 {
            rec.record_send(ms(lag_ms), 100);
            if i < failures {
                rec.record_error(ErrorKind::Refused, None);
            } else {
                rec.record_response(200, ms(latency_ms), ms(latency_ms - lag_ms), 100);
            }
        }
        RunResult::from_recorder(&rec, Pacing::Open { rate: 100.0 }, Duration::from_secs(10))
    }

    #[test]
    fn judge_blames_the_target_only_for_its_own_failures() {
        let slo = Slo::parse("p99<60ms").unwrap();
        let j = {
            let s = step(10, 0, 0);
            judge(&s, &s.judge(&slo), 0.001)
        };
        assert_eq!((j.verdict, j.generator_lagged), (Verdict::Pass, false));
        let j = {
            let s = step(80, 0, 0);
            judge(&s, &s.judge(&slo), 0.001)
        };
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reason.contains("p99<60ms"), "{}", j.reason);
        let j = {
            let s = step(10, 0, 5);
            judge(&s, &s.judge(&slo), 0.001)
        };
        assert_eq!(j.verdict, Verdict::Fail, "0.5% errors > 0.1%");
        assert!(j.reason.contains("failed (5 of 1000)"), "{}", j.reason);
        // 70 ms of the 80 ms is hammer's own lag.
        let j = {
            let s = step(80, 70, 0);
            judge(&s, &s.judge(&slo), 0.001)
        };
        assert_eq!(j.verdict, Verdict::GeneratorLimited, "{}", j.reason);
        // Lagging 2 ms while the target takes 500 ms: still the target.
        let j = {
            let s = step(500, 2, 0);
            judge(&s, &s.judge(&slo), 0.001)
        };
        assert_eq!((j.verdict, j.generator_lagged), (Verdict::Fail, true));
        // An overloaded target: 12% of the offered rate still waiting for
        // its busy connections when the step ended, hammer lagging 2 ms.
        // Short, but not by hammer's doing.
        let j = {
            let mut s = step(2800, 2, 0);
            s.achieved_rate = 0.878 * s.target_rate.unwrap();
            judge(&s, &s.judge(&slo), 0.001)
        };
        assert_eq!((j.verdict, j.generator_lagged), (Verdict::Fail, true));
        // Short because hammer fell behind by the shortfall: hammer's.
        let j = {
            let mut s = step(2800, 2, 0);
            s.achieved_rate = 0.878 * s.target_rate.unwrap();
            s.schedule_lag_ms.max = 0.122 * s.duration_s * 1e3;
            judge(&s, &s.judge(&slo), 0.001)
        };
        assert_eq!(j.verdict, Verdict::GeneratorLimited, "{}", j.reason);
    }

    /// The seed's capacity plan: 10,000 req/s over each measured capacity.
    #[test]
    fn instances_match_the_seed() {
        for (capacity, n) in [
            (50.0, 201),
            (500.0, 21),
            (1000.0, 11),
            (2000.0, 6),
            (3000.0, 5),
        ] {
            assert_eq!(instances_needed(10_000.0, capacity), n, "at {capacity}");
        }
        assert_eq!(instances_needed(10.0, 3000.0), 2, "one plus a spare");
        assert_eq!(instances_needed(10.0, 0.0), 0);
    }

    fn run_search(true_capacity: f64, start: f64, max: f64) -> Search {
        let mut s = Search::new(start, 2.0, 0.05, max);
        let mut steps = 0;
        while let Some(rate) = s.next_rate() {
            let v = if rate <= true_capacity {
                Verdict::Pass
            } else {
                Verdict::Fail
            };
            s.record(rate, v);
            steps += 1;
            assert!(steps < 40, "the search ends");
        }
        s
    }

    #[test]
    fn search_brackets_the_capacity_to_the_precision() {
        for cap in [3.0, 75.0, 149.0, 1000.0, 12_345.0] {
            let s = run_search(cap, 50.0, 1e9);
            let c = s.capacity().expect("something passed");
            assert_eq!(s.stopped(), Some(Stop::Converged), "cap {cap}");
            assert!(
                c.rate <= cap && cap < c.first_failing.unwrap(),
                "{c:?} vs {cap}"
            );
            assert!(c.margin() <= 0.05, "{c:?}");
        }
    }

    #[test]
    fn search_never_exceeds_the_cap_and_says_so() {
        let mut s = Search::new(50.0, 2.0, 0.05, 300.0);
        let mut rates = vec![];
        while let Some(r) = s.next_rate() {
            rates.push(r);
            s.record(r, Verdict::Pass);
        }
        assert_eq!(rates, vec![50.0, 100.0, 200.0, 300.0]);
        assert_eq!(s.stopped(), Some(Stop::MaxRate));
    }

    #[test]
    fn search_stops_at_the_generator_limit_and_when_nothing_passes() {
        let mut s = Search::new(50.0, 2.0, 0.05, 1e6);
        s.record(50.0, Verdict::Pass);
        s.record(100.0, Verdict::GeneratorLimited);
        assert_eq!(s.next_rate(), None);
        assert_eq!(s.stopped(), Some(Stop::GeneratorLimited));
        assert_eq!(s.capacity().unwrap().first_failing, None);

        let s = run_search(0.1, 50.0, 1e6);
        assert_eq!(s.stopped(), Some(Stop::NothingPassed));
        assert!(s.capacity().is_none());
    }

    /// Schwartz's book example (also the usl crates' test data): the
    /// nonlinear fit gives σ ≈ 0.0277, κ ≈ 0.000104, λ ≈ 995.6.
    #[test]
    fn usl_fit_recovers_a_known_model() {
        let truth = Usl {
            lambda: 995.6,
            sigma: 0.0277,
            kappa: 0.000104,
            r_squared: 1.0,
        };
        let pts: Vec<(f64, f64)> = [1.0, 5.0, 10.0, 20.0, 40.0, 80.0, 120.0]
            .iter()
            .map(|&n| (n, truth.throughput(n)))
            .collect();
        let fit = Usl::fit(&pts).unwrap();
        assert!((fit.lambda - 995.6).abs() < 0.01, "{fit:?}");
        assert!((fit.sigma - 0.0277).abs() < 1e-6, "{fit:?}");
        assert!((fit.kappa - 0.000104).abs() < 1e-8, "{fit:?}");
        assert!(fit.r_squared > 0.999_999);
        let (n, x) = fit.peak().unwrap();
        assert!(
            (n - 96.7).abs() < 0.5 && x > truth.throughput(60.0),
            "{n} {x}"
        );
    }

    #[test]
    fn usl_fit_on_measured_book_data_is_close() {
        let pts = [
            (1.0, 955.16),
            (5.0, 4315.54),
            (10.0, 7867.61),
            (15.0, 9645.37),
            (20.0, 10798.52),
            (25.0, 12075.41),
            (30.0, 12118.04),
        ];
        let fit = Usl::fit(&pts).unwrap();
        assert!(fit.r_squared > 0.99, "{fit:?}");
        assert!((fit.throughput(30.0) - 12118.0).abs() / 12118.0 < 0.05);
        assert!(Usl::fit(&pts[..2]).is_none(), "three points at least");
    }

    /// A service saturated from one connection on (each request takes
    /// every core), measured with noise: the fit is flat near the points'
    /// level, σ near 1 (all serial), and explains the points no worse than
    /// their mean.
    #[test]
    fn usl_fit_on_a_plateau_is_flat_and_no_worse_than_the_mean() {
        let pts = [
            (1.0, 66.0),
            (2.0, 70.0),
            (4.0, 66.0),
            (8.0, 62.0),
            (16.0, 68.0),
        ];
        let fit = Usl::fit(&pts).unwrap();
        for &(n, x) in &pts {
            assert!((fit.throughput(n) - x).abs() / x < 0.1, "{n}: {fit:?}");
        }
        assert!(fit.sigma > 0.8, "{fit:?}");
        assert!(fit.r_squared > -0.1, "{fit:?}");
    }
}
