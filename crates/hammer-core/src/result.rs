//! Defines the result of a run: the JSON contract of DESIGN.md, built from a
//! [`Recorder`], and the exact merge of several results (shards of one run).
//!
//! Each result carries its histograms, serialized in the HdrHistogram V2
//! compressed format and base64 encoded, so merging adds histograms rather
//! than averaging percentiles.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::recorder::{is_success, new_histogram, ErrorKind, Recorder};
use crate::slo::SloReport;

/// Why results could not be read or merged.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// A histogram field was not valid base64 HdrHistogram data.
    #[error("histogram field {field} is not a valid HdrHistogram V2 base64 string")]
    Histogram {
        /// The field that failed.
        field: &'static str,
    },
    /// There was nothing to merge.
    #[error("no results to merge")]
    Empty,
}

/// Summary statistics of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Percentiles {
    /// Smallest value.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest value.
    pub max: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The value at quantile `q` of a µs histogram, in ms (0 when empty).
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        ms(h.value_at_quantile(q))
    }
}

impl Percentiles {
    /// Summarizes a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: quantile_ms(h, 0.50),
            p90: quantile_ms(h, 0.90),
            p99: quantile_ms(h, 0.99),
            p99_9: quantile_ms(h, 0.999),
            max: ms(h.max()),
        }
    }
}

/// Schedule lag p99 above this means the generator, not the target, limited the run.
pub const GENERATOR_LIMIT_MS: f64 = 1.0;

/// What a hammer JSON file holds, its first field, so a reader tells a
/// run's result from a lab's report without guessing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A [`RunResult`] (`hammer attack -o`, `--format json`, `hammer report`).
    #[default]
    Run,
    /// A `hammer lab` report.json.
    Lab,
}

/// What a run did with connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    /// Connections opened over the run.
    pub opened: u64,
    /// The most open at once (per worker, summed: an upper bound).
    pub peak_open: u64,
}

/// The full result of a run, with stable field names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Always [`Kind::Run`] (absent in files from before it existed).
    #[serde(default)]
    pub kind: Kind,
    /// `"open"` (paced by rate) or `"closed"` (N connections, one request each).
    pub mode: String,
    /// Planned mean rate in requests/s (open loop only).
    pub target_rate: Option<f64>,
    /// Requests sent per second over the send window.
    pub achieved_rate: f64,
    /// Length of the send window in seconds.
    pub duration_s: f64,
    /// Requests that ended (succeeded + failed).
    pub requests: u64,
    /// Requests answered 2xx or 3xx.
    pub succeeded: u64,
    /// Requests that failed: error or other status.
    pub failed: u64,
    /// Count per HTTP status code.
    pub status_codes: BTreeMap<String, u64>,
    /// Count per error kind (every kind listed, zeros included).
    pub errors: BTreeMap<String, u64>,
    /// Response complete − intended send time.
    pub latency_ms: Percentiles,
    /// Response complete − actual send time.
    pub service_time_ms: Percentiles,
    /// Actual − intended send time.
    pub schedule_lag_ms: Percentiles,
    /// True when schedule lag p99 exceeded [`GENERATOR_LIMIT_MS`]: the
    /// generator was the limit.
    pub generator_limited: bool,
    /// Connections opened, and the most open at once.
    #[serde(default)]
    pub connections: Connections,
    /// Response bytes received.
    pub bytes_in: u64,
    /// Request bytes sent.
    pub bytes_out: u64,
    /// SLO verdict, when an SLO was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloReport>,
    /// Latency histogram (µs), HdrHistogram V2 compressed, base64.
    pub histogram: String,
    /// Service time histogram, same encoding.
    pub service_time_histogram: String,
    /// Schedule lag histogram, same encoding.
    pub schedule_lag_histogram: String,
}

/// Encodes a histogram as base64 HdrHistogram V2 (deflate) data.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serializing to memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes [`encode_histogram`] output.
pub fn decode_histogram(text: &str, field: &'static str) -> Result<Histogram<u64>, ResultError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| ResultError::Histogram { field })?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|_| ResultError::Histogram { field })?;
    // Re-home into hammer's bounds so histograms from any source add up.
    let mut out = new_histogram();
    out.add(&h).map_err(|_| ResultError::Histogram { field })?;
    Ok(out)
}

impl RunResult {
    /// Builds the result of a run from what was recorded.
    pub fn from_recorder(rec: &Recorder, target_rate: Option<f64>, window: Duration) -> Self {
        let duration_s = window.as_secs_f64();
        let lag = Percentiles::of(rec.schedule_lag());
        Self {
            kind: Kind::Run,
            mode: if target_rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .into(),
            target_rate,
            achieved_rate: if duration_s > 0.0 {
                rec.sent() as f64 / duration_s
            } else {
                0.0
            },
            duration_s,
            requests: rec.completed(),
            succeeded: rec.succeeded(),
            failed: rec.failed(),
            status_codes: rec
                .status_counts()
                .map(|(c, n)| (c.to_string(), n))
                .collect(),
            errors: rec
                .error_counts()
                .map(|(k, n)| (k.name().to_string(), n))
                .collect(),
            latency_ms: Percentiles::of(rec.latency()),
            service_time_ms: Percentiles::of(rec.service_time()),
            generator_limited: target_rate.is_some() && lag.p99 > GENERATOR_LIMIT_MS,
            schedule_lag_ms: lag,
            connections: Connections::default(),
            bytes_in: rec.bytes_in(),
            bytes_out: rec.bytes_out(),
            slo: None,
            histogram: encode_histogram(rec.latency()),
            service_time_histogram: encode_histogram(rec.service_time()),
            schedule_lag_histogram: encode_histogram(rec.schedule_lag()),
        }
    }

    /// The same result, saying what the run did with connections.
    pub fn with_connections(self, connections: Connections) -> Self {
        Self {
            connections,
            ..self
        }
    }

    /// The latency histogram (µs).
    pub fn latency_histogram(&self) -> Result<Histogram<u64>, ResultError> {
        decode_histogram(&self.histogram, "histogram")
    }

    /// Fraction of requests that failed (0 when none ended).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failed as f64 / self.requests as f64
        }
    }

    /// Merges results of shards that ran side by side: counts and
    /// histograms add, rates add, the window is the longest.
    pub fn merge(results: &[RunResult]) -> Result<RunResult, ResultError> {
        let first = results.first().ok_or(ResultError::Empty)?;
        let mut lat = new_histogram();
        let mut svc = new_histogram();
        let mut lag = new_histogram();
        let mut status: BTreeMap<String, u64> = BTreeMap::new();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut target: Option<f64> = None;
        let (mut achieved, mut duration, mut bytes_in, mut bytes_out) = (0.0, 0.0f64, 0, 0);
        let mut connections = Connections::default();
        for r in results {
            let add = |h: &mut Histogram<u64>, text: &str, field| -> Result<(), ResultError> {
                h.add(decode_histogram(text, field)?)
                    .map_err(|_| ResultError::Histogram { field })
            };
            add(&mut lat, &r.histogram, "histogram")?;
            add(
                &mut svc,
                &r.service_time_histogram,
                "service_time_histogram",
            )?;
            add(
                &mut lag,
                &r.schedule_lag_histogram,
                "schedule_lag_histogram",
            )?;
            for (k, v) in &r.status_codes {
                *status.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &r.errors {
                *errors.entry(k.clone()).or_default() += v;
            }
            if let Some(t) = r.target_rate {
                target = Some(target.unwrap_or(0.0) + t);
            }
            achieved += r.achieved_rate;
            duration = duration.max(r.duration_s);
            bytes_in += r.bytes_in;
            bytes_out += r.bytes_out;
            connections.opened += r.connections.opened;
            connections.peak_open += r.connections.peak_open;
        }
        let requests = status.values().sum::<u64>() + errors.values().sum::<u64>();
        let succeeded = status
            .iter()
            .filter(|(k, _)| k.parse::<u16>().is_ok_and(is_success))
            .map(|(_, v)| v)
            .sum();
        let lag_p = Percentiles::of(&lag);
        for kind in ErrorKind::ALL {
            errors.entry(kind.name().into()).or_default();
        }
        Ok(RunResult {
            kind: Kind::Run,
            mode: first.mode.clone(),
            target_rate: target,
            achieved_rate: achieved,
            duration_s: duration,
            requests,
            succeeded,
            failed: requests - succeeded,
            status_codes: status,
            errors,
            latency_ms: Percentiles::of(&lat),
            service_time_ms: Percentiles::of(&svc),
            generator_limited: target.is_some() && lag_p.p99 > GENERATOR_LIMIT_MS,
            schedule_lag_ms: lag_p,
            connections,
            bytes_in,
            bytes_out,
            slo: None,
            histogram: encode_histogram(&lat),
            service_time_histogram: encode_histogram(&svc),
            schedule_lag_histogram: encode_histogram(&lag),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn result_of(latencies_us: &[u64], rate: f64) -> RunResult {
        let mut r = Recorder::new();
        for &us in latencies_us {
            let d = Duration::from_micros(us);
            r.record_send(Duration::ZERO, 10);
            r.record_response(200, d, d, 20);
        }
        RunResult::from_recorder(&r, Some(rate), Duration::from_secs(1))
    }

    #[test]
    fn json_has_the_contract_fields() {
        let v = serde_json::to_value(result_of(&[1000, 2000, 3000], 3.0)).unwrap();
        for key in [
            "target_rate",
            "achieved_rate",
            "duration_s",
            "requests",
            "succeeded",
            "failed",
            "status_codes",
            "errors",
            "latency_ms",
            "service_time_ms",
            "schedule_lag_ms",
            "bytes_in",
            "bytes_out",
            "histogram",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in ["min", "mean", "p50", "p90", "p99", "p99_9", "max"] {
            assert!(
                v["latency_ms"].get(key).is_some(),
                "missing latency_ms.{key}"
            );
        }
        assert_eq!(v["status_codes"]["200"], 3);
        assert_eq!(v["errors"]["timeout"], 0);
        // HDR resolution at 3 significant digits: within 0.1%.
        assert!((v["latency_ms"]["max"].as_f64().unwrap() - 3.0).abs() < 0.004);
    }

    proptest! {
        #[test]
        fn merge_is_exact(a in prop::collection::vec(1u64..5_000_000, 1..200), b in prop::collection::vec(1u64..5_000_000, 1..200)) {
            let merged = RunResult::merge(&[result_of(&a, 100.0), result_of(&b, 50.0)]).unwrap();
            let all: Vec<u64> = a.iter().chain(&b).copied().collect();
            let whole = result_of(&all, 150.0);
            prop_assert_eq!(merged.latency_ms, whole.latency_ms);
            prop_assert_eq!(merged.requests, whole.requests);
            prop_assert_eq!(merged.target_rate, Some(150.0));
            // Round trip through JSON keeps the histogram.
            let back: RunResult = serde_json::from_str(&serde_json::to_string(&merged).unwrap()).unwrap();
            prop_assert_eq!(back.latency_histogram().unwrap(), whole.latency_histogram().unwrap());
        }
    }
}
