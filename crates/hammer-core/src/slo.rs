//! Defines SLO expressions such as `p99<60ms,error-rate<0.1%` and their
//! verdict on a latency histogram and an error rate (a run's, a step's).

use serde::{Deserialize, Serialize};

use crate::plan::parse_duration;
use hdrhistogram::Histogram;

use crate::histogram::{quantile_ms, Percentiles};

/// Why an SLO expression could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("bad SLO check {text:?}: {why} (examples: p99<60ms, p99.9<250ms, mean<20ms, max<1s, error-rate<0.1%)")]
pub struct SloError {
    text: String,
    why: &'static str,
}

/// What a check measures.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    /// Latency at a quantile in `[0, 1]`.
    Quantile(f64),
    Mean,
    Max,
    /// Failed / ended requests.
    ErrorRate,
}

/// One check: a metric that must stay below a limit.
#[derive(Debug, Clone, PartialEq)]
struct Check {
    text: String,
    metric: Metric,
    /// Milliseconds, or a fraction for the error rate.
    limit: f64,
}

/// A parsed SLO: every check must pass. It keeps the text it was parsed
/// from, which is what it serializes as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Slo {
    text: String,
    checks: Vec<Check>,
}

impl std::fmt::Display for Slo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<Slo> for String {
    fn from(slo: Slo) -> String {
        slo.text
    }
}

impl TryFrom<String> for Slo {
    type Error = SloError;
    fn try_from(text: String) -> Result<Slo, SloError> {
        Slo::parse(&text)
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check as written, e.g. `p99<60ms`.
    pub check: String,
    /// Measured value (ms, or a fraction for the error rate).
    pub actual: f64,
    /// The limit (same unit as `actual`).
    pub limit: f64,
    /// Whether `actual < limit`.
    pub passed: bool,
}

/// The verdict of an SLO on a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloReport {
    /// True when every check passed.
    pub passed: bool,
    /// Each check's verdict.
    pub checks: Vec<CheckResult>,
}

impl Slo {
    /// Parses a comma-separated list of `METRIC<LIMIT` checks.
    pub fn parse(text: &str) -> Result<Slo, SloError> {
        let checks = text
            .split(',')
            .map(|part| parse_check(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Slo {
            text: text.to_string(),
            checks,
        })
    }

    /// The latency limit of the first quantile check, e.g. 60 ms for
    /// `p99<60ms`, with its quantile.
    pub fn latency_quantile(&self) -> Option<(f64, f64)> {
        self.checks.iter().find_map(|c| match c.metric {
            Metric::Quantile(q) => Some((q, c.limit)),
            _ => None,
        })
    }

    /// Judges what a run measured: its latency histogram (µs) and the
    /// fraction of its requests that failed.
    pub fn evaluate(&self, latency: &Histogram<u64>, error_rate: f64) -> SloReport {
        let summary = Percentiles::of(latency);
        let checks: Vec<CheckResult> = self
            .checks
            .iter()
            .map(|c| {
                let actual = match c.metric {
                    Metric::Quantile(q) => quantile_ms(latency, q),
                    Metric::Mean => summary.mean,
                    Metric::Max => summary.max,
                    Metric::ErrorRate => error_rate,
                };
                CheckResult {
                    check: c.text.clone(),
                    actual,
                    limit: c.limit,
                    passed: actual < c.limit,
                }
            })
            .collect();
        SloReport {
            passed: checks.iter().all(|c| c.passed),
            checks,
        }
    }
}

fn parse_check(text: &str) -> Result<Check, SloError> {
    let err = |why| SloError {
        text: text.into(),
        why,
    };
    let (name, limit) = text
        .split_once('<')
        .ok_or_else(|| err("expected METRIC<LIMIT"))?;
    let name = name.trim().to_ascii_lowercase();
    let limit = limit.trim_start_matches('=').trim();
    let metric = match name.as_str() {
        "mean" | "avg" => Metric::Mean,
        "max" => Metric::Max,
        "error-rate" | "error_rate" | "errors" => Metric::ErrorRate,
        p if p.starts_with('p') => {
            let q: f64 = p[1..]
                .replace('_', ".")
                .parse()
                .map_err(|_| err("unknown percentile"))?;
            if !(0.0..=100.0).contains(&q) {
                return Err(err("percentile must be between p0 and p100"));
            }
            Metric::Quantile(q / 100.0)
        }
        _ => return Err(err("unknown metric")),
    };
    let limit = if metric == Metric::ErrorRate {
        let (num, scale) = match limit.strip_suffix('%') {
            Some(n) => (n, 0.01),
            None => (limit, 1.0),
        };
        num.trim()
            .parse::<f64>()
            .map_err(|_| err("bad error rate"))?
            * scale
    } else {
        parse_duration(limit)
            .map_err(|_| err("bad latency limit"))?
            .as_secs_f64()
            * 1000.0
    };
    Ok(Check {
        text: text.into(),
        metric,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::Recorder;
    use crate::result::{Pacing, RunResult};
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// `--slo` from any text, and from text shaped like it with numbers
        /// of any size: an SLO or an error, never a panic; a parsed SLO
        /// judges a run.
        #[test]
        fn hostile_slos_are_errors(
            any_text in ".{0,80}",
            shaped in "((p[0-9.e+-]{0,8}|errors|rate) ?[<>]=? ?[0-9.e+-]{0,14}(ms|s|us|%|/s|)( ?, ?)?){1,4}",
        ) {
            let mut r = Recorder::new();
            r.record_send(Duration::ZERO, 10);
            r.record_response(200, Duration::from_millis(5), Duration::from_millis(5), 10);
            let run = RunResult::from_recorder(&r, Pacing::Open { rate: 10.0 }, Duration::from_secs(1));
            for text in [any_text.as_str(), shaped.as_str()] {
                if let Ok(slo) = Slo::parse(text) {
                    let _ = slo.evaluate(run.latency_histogram(), run.error_rate());
                }
            }
        }
    }

    #[test]
    fn parses_the_design_example() {
        let slo = Slo::parse("p99<60ms,error-rate<0.1%").unwrap();
        assert_eq!(slo.checks[0].metric, Metric::Quantile(0.99));
        assert_eq!(slo.checks[0].limit, 60.0);
        assert_eq!(slo.checks[1].metric, Metric::ErrorRate);
        assert!((slo.checks[1].limit - 0.001).abs() < 1e-12);
        let Metric::Quantile(q) = Slo::parse("p99.9<1s").unwrap().checks[0].metric else {
            panic!("p99.9 is a quantile");
        };
        assert!((q - 0.999).abs() < 1e-12);
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "p99>60ms",
            "p101<1s",
            "latency<5ms",
            "p99<fast",
            "error-rate<lots",
        ] {
            assert!(Slo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn judges_a_run() {
        let mut r = Recorder::new();
        for i in 1..=100u64 {
            r.record_send(Duration::ZERO, 1);
            r.record_response(
                if i == 100 { 500 } else { 200 },
                Duration::from_millis(i),
                Duration::from_millis(i),
                1,
            );
        }
        let run =
            RunResult::from_recorder(&r, Pacing::Open { rate: 100.0 }, Duration::from_secs(1));
        let verdict = Slo::parse("p99<60ms,error-rate<2%")
            .unwrap()
            .evaluate(run.latency_histogram(), run.error_rate());
        assert!(!verdict.passed);
        assert!(!verdict.checks[0].passed);
        assert!((verdict.checks[0].actual - 99.0).abs() < 0.1);
        assert!(verdict.checks[1].passed);
    }
}
