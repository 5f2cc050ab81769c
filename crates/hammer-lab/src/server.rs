//! Provides the service's own view of a step, as the seed reads it beside
//! the generator's ("the application is registering the intended load"):
//! its `/metrics` scraped once a second while the step runs, turned into
//! the request rate it counted, its latency quantiles from its own
//! histogram (interpolated within buckets, as Prometheus'
//! `histogram_quantile` does) and the cores it kept busy. Where hammer's
//! p99 is far above the service's, the difference was spent outside the
//! handler: in the accept queue, the network or the generator.

use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use serde::{Deserialize, Serialize};

/// The histogram the lab reads by default: hammer-diag's request latency.
pub const DEFAULT_HISTOGRAM: &str = "http_request_duration_seconds";

/// The process CPU counter Go's client and hammer-diag both export.
const CPU_COUNTER: &str = "process_cpu_seconds_total";

/// Shortest span two scrapes must cover for a rate to be worth quoting.
const MIN_SPAN: Duration = Duration::from_millis(500);

/// One scrape of the service's `/metrics`, reduced to what the lab reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// The latency histogram summed over its series: (upper bound in
    /// seconds, cumulative count), ascending, `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    /// CPU seconds the process has used.
    pub cpu_seconds: Option<f64>,
}

impl Sample {
    /// Reads `histogram` and the CPU counter from exposition text; None
    /// when the text has no such histogram.
    pub fn parse(text: &str, histogram: &str, at: Instant) -> Option<Sample> {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).ok()?;
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        let mut found = false;
        let mut cpu_seconds = None;
        for sample in &scrape.samples {
            match &sample.value {
                Value::Histogram(counts) if sample.metric == histogram => {
                    found = true;
                    for c in counts {
                        match buckets.iter_mut().find(|(le, _)| *le == c.less_than) {
                            Some((_, n)) => *n += c.count,
                            None => buckets.push((c.less_than, c.count)),
                        }
                    }
                }
                Value::Counter(v) | Value::Untyped(v) | Value::Gauge(v)
                    if sample.metric == CPU_COUNTER =>
                {
                    cpu_seconds = Some(*v);
                }
                _ => {}
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        found.then_some(Sample {
            at,
            buckets,
            cpu_seconds,
        })
    }

    /// Requests the histogram has counted.
    fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }
}

/// What the service saw between two scrapes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Requests per second it counted (None over less than half a second).
    pub rate: Option<f64>,
    /// Requests it counted.
    pub requests: f64,
    /// Its latency p50 and p99, ms (None when it counted none).
    pub p50_ms: Option<f64>,
    /// See `p50_ms`.
    pub p99_ms: Option<f64>,
    /// The lower bound of the bucket its p99 falls in, ms: the least its
    /// true p99 can be.
    #[serde(default)]
    pub p99_at_least_ms: Option<f64>,
    /// The upper bound of that bucket, ms: the most its true p99 can be
    /// (None in the `+Inf` bucket).
    #[serde(default)]
    pub p99_at_most_ms: Option<f64>,
    /// Cores it kept busy (None without a CPU counter or a long enough span).
    pub cores: Option<f64>,
}

impl Window {
    /// The service's view from `a` to `b`.
    pub fn between(a: &Sample, b: &Sample) -> Window {
        let span = b.at.saturating_duration_since(a.at);
        let per_second = (span >= MIN_SPAN).then_some(span.as_secs_f64());
        // Bucket by bucket: a series that appeared between the scrapes
        // (first request of a new status) counts from zero.
        let delta: Vec<(f64, f64)> = b
            .buckets
            .iter()
            .map(|&(le, n)| {
                let before = a
                    .buckets
                    .iter()
                    .find(|(l, _)| *l == le)
                    .map_or(0.0, |x| x.1);
                (le, (n - before).max(0.0))
            })
            .collect();
        let requests = (b.count() - a.count()).max(0.0);
        let p99 = quantile_bounds(&delta, 0.99);
        Window {
            rate: per_second.map(|s| requests / s),
            requests,
            p50_ms: quantile(&delta, 0.5).map(|s| s * 1e3),
            p99_ms: p99.map(|(estimate, _, _)| estimate * 1e3),
            p99_at_least_ms: p99.map(|(_, lower, _)| lower * 1e3),
            p99_at_most_ms: p99
                .map(|(_, _, upper)| upper * 1e3)
                .filter(|ms| ms.is_finite()),
            cores: match (a.cpu_seconds, b.cpu_seconds, per_second) {
                (Some(x), Some(y), Some(s)) => Some(((y - x) / s).max(0.0)),
                _ => None,
            },
        }
    }
}

/// The `q` quantile of cumulative buckets (upper bound, count), as
/// Prometheus' `histogram_quantile` estimates it: linear within the bucket
/// it falls in (from 0 for the first); in the `+Inf` bucket, the highest
/// finite bound. None when the buckets hold nothing.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    quantile_bounds(buckets, q).map(|(estimate, _, _)| estimate)
}

/// [`quantile`]'s estimate and the bounds of the bucket it falls in: the
/// least and the most the true quantile can be (infinite in `+Inf`).
fn quantile_bounds(buckets: &[(f64, f64)], q: f64) -> Option<(f64, f64, f64)> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some((below.0, below.0, le));
            }
            let share = if count > below.1 {
                (rank - below.1) / (count - below.1)
            } else {
                1.0
            };
            return Some((below.0 + (le - below.0) * share, below.0, le));
        }
        below = (le, count);
    }
    Some((below.0, below.0, f64::INFINITY))
}

/// One second of a step as the service saw it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerTick {
    /// Seconds since the measured part began (end of this interval).
    pub t_s: f64,
    /// What it saw in the interval.
    #[serde(flatten)]
    pub window: Window,
}

/// The service's view of a whole measured step, and second by second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    /// From the first scrape to the last.
    #[serde(flatten)]
    pub whole: Window,
    /// Scrape to scrape.
    pub timeline: Vec<ServerTick>,
}

impl ServerView {
    /// The view from samples taken across a step (the first at the start
    /// of its measured part); None with fewer than two.
    pub fn from_samples(samples: &[Sample]) -> Option<ServerView> {
        let (first, last) = (samples.first()?, samples.last()?);
        if samples.len() < 2 {
            return None;
        }
        let timeline = samples
            .windows(2)
            .map(|w| ServerTick {
                t_s: w[1].at.saturating_duration_since(first.at).as_secs_f64(),
                window: Window::between(&w[0], &w[1]),
            })
            .collect();
        Some(ServerView {
            whole: Window::between(first, last),
            timeline,
        })
    }
}

impl Window {
    /// Its p99 as what its histogram can tell: the bucket it falls in,
    /// `10–25` (ms), or `> 10000` in the last; the interpolated figure
    /// alone would read as a measurement (and may exceed hammer's own).
    pub fn p99_bucket(&self) -> Option<String> {
        let lower = self.p99_at_least_ms?;
        let ms = |v: f64| format!("{}", (v * 1000.0).round() / 1000.0);
        Some(match self.p99_at_most_ms {
            Some(upper) => format!("{}–{}", ms(lower), ms(upper)),
            None => format!("> {}", ms(lower)),
        })
    }
}

/// How far hammer's p99 was above the most the service's own p99 can have
/// been (its bucket's upper bound: the interpolated estimate may be low),
/// when it is far enough above to mean time spent outside the handler:
/// more than 5 ms and more than half of hammer's p99.
pub fn gap_ms(hammer_p99_ms: f64, view: &Window) -> Option<f64> {
    let gap = hammer_p99_ms - view.p99_at_most_ms?;
    (gap > 5.0 && gap > hammer_p99_ms / 2.0).then_some(gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP http_request_duration_seconds Request latency
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route=\"/a\",le=\"0.01\"} 90
http_request_duration_seconds_bucket{route=\"/a\",le=\"0.1\"} 99
http_request_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 100
http_request_duration_seconds_sum{route=\"/a\"} 1.5
http_request_duration_seconds_count{route=\"/a\"} 100
http_request_duration_seconds_bucket{route=\"/b\",le=\"0.01\"} 10
http_request_duration_seconds_bucket{route=\"/b\",le=\"0.1\"} 100
http_request_duration_seconds_bucket{route=\"/b\",le=\"+Inf\"} 100
http_request_duration_seconds_sum{route=\"/b\"} 4
http_request_duration_seconds_count{route=\"/b\"} 100
# HELP process_cpu_seconds_total CPU
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
";

    #[test]
    fn series_are_summed_and_quantiles_interpolated_as_prometheus_does() {
        let s = Sample::parse(TEXT, DEFAULT_HISTOGRAM, Instant::now()).unwrap();
        assert_eq!(
            s.buckets,
            [(0.01, 100.0), (0.1, 199.0), (f64::INFINITY, 200.0)]
        );
        assert_eq!(s.cpu_seconds, Some(12.5));
        // Rank 100 of 200 is the first bucket's top; rank 198 is 98/99 of
        // the way through the second.
        assert!((quantile(&s.buckets, 0.5).unwrap() - 0.01).abs() < 1e-12);
        let p99 = quantile(&s.buckets, 0.99).unwrap();
        assert!((p99 - (0.01 + 0.09 * 98.0 / 99.0)).abs() < 1e-12, "{p99}");
        // In +Inf: the highest finite bound.
        assert_eq!(
            quantile(&[(0.1, 0.0), (f64::INFINITY, 5.0)], 0.5),
            Some(0.1)
        );
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        assert!(Sample::parse(TEXT, "no_such_histogram", Instant::now()).is_none());
    }

    #[test]
    fn a_window_is_the_difference_of_two_scrapes() {
        let t0 = Instant::now();
        let a = Sample {
            at: t0,
            buckets: vec![(0.01, 100.0), (0.1, 100.0), (f64::INFINITY, 100.0)],
            cpu_seconds: Some(10.0),
        };
        let b = Sample {
            at: t0 + Duration::from_secs(2),
            buckets: vec![(0.01, 100.0), (0.1, 300.0), (f64::INFINITY, 300.0)],
            cpu_seconds: Some(11.0),
        };
        let w = Window::between(&a, &b);
        assert_eq!(w.requests, 200.0);
        assert_eq!(w.p99_at_most_ms, Some(100.0));
        assert_eq!(w.p99_bucket().as_deref(), Some("10–100"));
        assert_eq!(w.rate, Some(100.0));
        assert_eq!(w.cores, Some(0.5));
        // All 200 new requests took 10-100 ms: p50 is halfway through.
        assert!((w.p50_ms.unwrap() - 55.0).abs() < 1e-9, "{w:?}");
        let view = ServerView::from_samples(&[a.clone(), b]).unwrap();
        assert_eq!(view.timeline.len(), 1);
        assert_eq!(view.timeline[0].t_s, 2.0);
        // Too short a span for a rate.
        let c = Sample {
            at: t0 + Duration::from_millis(10),
            ..a.clone()
        };
        assert_eq!(Window::between(&a, &c).rate, None);
        assert!(ServerView::from_samples(&[a]).is_none());
    }

    #[test]
    fn a_gap_is_flagged_only_when_large_in_both_senses() {
        let at_most = |ms: Option<f64>| Window {
            rate: None,
            requests: 100.0,
            p50_ms: None,
            p99_ms: ms.map(|ms| ms / 2.0),
            p99_at_least_ms: Some(0.0),
            p99_at_most_ms: ms,
            cores: None,
        };
        assert_eq!(gap_ms(95.0, &at_most(Some(25.0))), Some(70.0));
        assert_eq!(gap_ms(4.0, &at_most(Some(1.0))), None, "3 ms is noise");
        assert_eq!(
            gap_ms(100.0, &at_most(Some(60.0))),
            None,
            "under half of hammer's p99"
        );
        assert_eq!(
            gap_ms(900.0, &at_most(None)),
            None,
            "in +Inf: could be anything"
        );
    }
}
