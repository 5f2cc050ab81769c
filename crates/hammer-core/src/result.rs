//! Defines the result of a run: the JSON contract of DESIGN.md, built from a
//! [`Recorder`], and the exact merge of several results (shards of one run).
//!
//! Each result carries its histograms, serialized in the HdrHistogram V2
//! compressed format and base64 encoded, so merging adds histograms rather
//! than averaging percentiles.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use crate::histogram::Percentiles;
use crate::recorder::{ErrorKind, Parts, Recorder};
use crate::slo::{Slo, SloReport};

/// Why results could not be read or merged.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// There was nothing to merge.
    #[error("no results to merge")]
    Empty,
    /// Shard results that do not belong to one run: different shard
    /// counts, a shard given twice, or shards mixed with whole runs.
    #[error("{0}")]
    Shards(String),
    /// A status code or error kind that hammer does not write.
    #[error("unknown {field} key {key:?}")]
    Key {
        /// `status_codes` or `errors`.
        field: &'static str,
        /// The key found.
        key: String,
    },
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

/// How a run was paced, as its result says (`mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loop {
    /// Paced by a rate plan, whatever the target does.
    #[default]
    Open,
    /// N connections, each sending its next request when the last ends.
    Closed,
}

/// How a run was paced, with the planned rate of an open loop: what the
/// engine knows of the run it ran, and its result states.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Open loop at this planned mean rate (requests/s).
    Open {
        /// Requests per second, on average over the plan.
        rate: f64,
    },
    /// Closed loop.
    Closed,
}

impl Pacing {
    /// The planned mean rate (open loop only).
    pub fn target_rate(self) -> Option<f64> {
        match self {
            Pacing::Open { rate } => Some(rate),
            Pacing::Closed => None,
        }
    }
}

/// What a run did with connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    /// Connections opened over the run.
    pub opened: u64,
    /// The most open at once (per worker, summed: an upper bound).
    pub peak_open: u64,
    /// The most the connection policy allowed at the end of the run, and
    /// why no more (absent in files from before it was reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<PoolLimit>,
}

impl Connections {
    /// Adds what another worker or shard of the same run did: counts and
    /// bounds add, and the tighter reason wins (the target's, then the
    /// pool's, then `-c`).
    pub fn add(&mut self, other: &Connections) {
        self.opened += other.opened;
        self.peak_open += other.peak_open;
        self.limit = match (self.limit, other.limit) {
            (None, l) | (l, None) => l,
            (Some(a), Some(b)) => Some(PoolLimit {
                most: a.most + b.most,
                reason: a.reason.max(b.reason),
            }),
        };
    }
}

/// The connection policy's bound (summed over workers) and its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolLimit {
    /// The most connections it allowed open at once.
    pub most: u64,
    /// What set it.
    pub reason: LimitReason,
}

/// What bounds the connections a run may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitReason {
    /// `-c` (the closed loop's connections, or the open loop's cap).
    Cap,
    /// Open loop: the pool grows while it is what holds the generator
    /// back, up to Little's law with headroom (8 x the planned rate x the
    /// median service time, plus 4); requests beyond it wait in the
    /// generator, keeping their intended times.
    LittlesLaw,
    /// The target refused, reset or closed a new connection it had not
    /// answered on: the pool stays where it was.
    TurnedAway,
}

/// The full result of a run, with stable field names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Always [`Kind::Run`] (absent in files from before it existed).
    #[serde(default)]
    pub kind: Kind,
    /// `"open"` (paced by rate) or `"closed"` (N connections, one request each).
    pub mode: Loop,
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
    /// Latency histogram (µs); in JSON HdrHistogram V2 compressed, base64.
    #[serde(with = "crate::histogram::v2")]
    pub histogram: Histogram<u64>,
    /// Service time histogram, same encoding.
    #[serde(with = "crate::histogram::v2")]
    pub service_time_histogram: Histogram<u64>,
    /// Schedule lag histogram, same encoding.
    #[serde(with = "crate::histogram::v2")]
    pub schedule_lag_histogram: Histogram<u64>,
    /// TCP connect times (absent when no connect was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<Percentiles>,
    /// TLS handshake times, from connected to done (https only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshake_ms: Option<Percentiles>,
    /// Connect time histogram, same encoding.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::histogram::v2_opt"
    )]
    pub connect_histogram: Option<Histogram<u64>>,
    /// TLS handshake time histogram, same encoding.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::histogram::v2_opt"
    )]
    pub tls_handshake_histogram: Option<Histogram<u64>>,
    /// HTTP/2: from connection ready to the server's first SETTINGS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_settings_ms: Option<Percentiles>,
    /// Its histogram, same encoding.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::histogram::v2_opt"
    )]
    pub h2_settings_histogram: Option<Histogram<u64>>,
    /// Which shard of a sharded run this is (`hammer attack --shard I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardOf>,
    /// A merge of shards: the shards of the run that were not given (their
    /// requests are missing from every figure).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<u64>,
}

/// One shard of a run that N generators share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardOf {
    /// Which one, from 0.
    pub index: u64,
    /// How many share the run.
    pub count: u64,
}

/// Percentiles and histogram of a set-up time, when it has samples.
fn setup_times(h: &Histogram<u64>) -> (Option<Percentiles>, Option<Histogram<u64>>) {
    if h.is_empty() {
        return (None, None);
    }
    (Some(Percentiles::of(h)), Some(h.clone()))
}

impl RunResult {
    /// Builds the result of a run from what was recorded.
    pub fn from_recorder(rec: &Recorder, pacing: Pacing, window: Duration) -> Self {
        let target_rate = pacing.target_rate();
        let duration_s = window.as_secs_f64();
        let lag = Percentiles::of(rec.schedule_lag());
        let (connect_ms, connect_histogram) = setup_times(rec.connect_time());
        let (tls_handshake_ms, tls_handshake_histogram) = setup_times(rec.handshake_time());
        let (h2_settings_ms, h2_settings_histogram) = setup_times(rec.settings_time());
        Self {
            kind: Kind::Run,
            mode: match pacing {
                Pacing::Open { .. } => Loop::Open,
                Pacing::Closed => Loop::Closed,
            },
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
            shard: None,
            missing_shards: Vec::new(),
            histogram: rec.latency().clone(),
            service_time_histogram: rec.service_time().clone(),
            schedule_lag_histogram: rec.schedule_lag().clone(),
            connect_ms,
            tls_handshake_ms,
            connect_histogram,
            tls_handshake_histogram,
            h2_settings_ms,
            h2_settings_histogram,
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
    pub fn latency_histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// `slo`'s verdict on this run.
    pub fn judge(&self, slo: &Slo) -> SloReport {
        slo.evaluate(&self.histogram, self.error_rate())
    }

    /// Fraction of requests that failed (0 when none ended).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failed as f64 / self.requests as f64
        }
    }

    /// What this result measured, as a recorder: the inverse of
    /// [`RunResult::from_recorder`] (the requests sent come back from the
    /// achieved rate and the window).
    pub fn to_recorder(&self) -> Result<Recorder, ResultError> {
        let status = self
            .status_codes
            .iter()
            .map(|(k, &n)| match k.parse::<u16>() {
                Ok(code) => Ok((code, n)),
                Err(_) => Err(ResultError::Key {
                    field: "status_codes",
                    key: k.clone(),
                }),
            })
            .collect::<Result<_, _>>()?;
        let errors = self
            .errors
            .iter()
            .map(|(k, &n)| match ErrorKind::from_name(k) {
                Some(kind) => Ok((kind, n)),
                None => Err(ResultError::Key {
                    field: "errors",
                    key: k.clone(),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Recorder::from_parts(Parts {
            latency: self.histogram.clone(),
            service: self.service_time_histogram.clone(),
            lag: self.schedule_lag_histogram.clone(),
            connect: self.connect_histogram.clone(),
            handshake: self.tls_handshake_histogram.clone(),
            settings: self.h2_settings_histogram.clone(),
            status,
            errors,
            sent: (self.achieved_rate * self.duration_s).round() as u64,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        }))
    }

    /// Merges results of shards that ran side by side: what they recorded
    /// adds up exactly (histograms, counts, requests sent), planned rates
    /// add, and the window is the longest. The summary comes from
    /// [`RunResult::from_recorder`], the one place that derives it.
    pub fn merge(results: &[RunResult]) -> Result<RunResult, ResultError> {
        let first = results.first().ok_or(ResultError::Empty)?;
        let mut recorder = Recorder::new();
        let (mut target, mut window) = (None::<f64>, 0.0f64);
        let mut connections = Connections::default();
        for r in results {
            recorder.add(&r.to_recorder()?);
            if let Some(t) = r.target_rate {
                target = Some(target.unwrap_or(0.0) + t);
            }
            window = window.max(r.duration_s);
            connections.add(&r.connections);
        }
        // Shards of one run share its mode; open-loop shards' rates add.
        let pacing = match (first.mode, target) {
            (Loop::Open, Some(rate)) => Pacing::Open { rate },
            _ => Pacing::Closed,
        };
        let mut merged =
            RunResult::from_recorder(&recorder, pacing, Duration::from_secs_f64(window))
                .with_connections(connections);
        merged.mode = first.mode;
        merged.missing_shards = missing_shards(results)?;
        Ok(merged)
    }
}

/// The shards of the run `results` belong to that are not among them;
/// an error when they cannot be one run's shards.
fn missing_shards(results: &[RunResult]) -> Result<Vec<u64>, ResultError> {
    let shards: Vec<ShardOf> = results.iter().filter_map(|r| r.shard).collect();
    let Some(first) = shards.first() else {
        return Ok(Vec::new());
    };
    if shards.len() != results.len() {
        return Err(ResultError::Shards(
            "some files are shards (--shard) and some whole runs: merge the shards of one run"
                .into(),
        ));
    }
    if let Some(other) = shards.iter().find(|s| s.count != first.count) {
        return Err(ResultError::Shards(format!(
            "shards of different runs: {}/{} and {}/{}",
            first.index, first.count, other.index, other.count
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &shards {
        if !seen.insert(s.index) {
            return Err(ResultError::Shards(format!(
                "shard {}/{} is given twice",
                s.index, s.count
            )));
        }
    }
    Ok((0..first.count).filter(|i| !seen.contains(i)).collect())
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
        RunResult::from_recorder(&r, Pacing::Open { rate }, Duration::from_secs(1))
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

    #[test]
    fn a_merge_of_shards_names_the_missing_ones_and_refuses_strangers() {
        let shard = |index, count| RunResult {
            shard: Some(ShardOf { index, count }),
            ..result_of(&[100, 200], 10.0)
        };
        let merged = RunResult::merge(&[shard(0, 4), shard(3, 4), shard(1, 4)]).unwrap();
        assert_eq!(merged.missing_shards, [2]);
        assert_eq!(merged.shard, None);
        assert_eq!(merged.requests, 6);
        let all = RunResult::merge(&[shard(1, 2), shard(0, 2)]).unwrap();
        assert!(all.missing_shards.is_empty());
        let err = |r: &[RunResult]| RunResult::merge(r).unwrap_err().to_string();
        assert!(err(&[shard(0, 2), shard(0, 2)]).contains("given twice"));
        assert!(err(&[shard(0, 2), shard(1, 3)]).contains("different runs"));
        assert!(err(&[shard(0, 2), result_of(&[1], 1.0)]).contains("whole runs"));
        // Whole runs merge as before.
        assert!(
            RunResult::merge(&[result_of(&[1], 1.0), result_of(&[2], 1.0)])
                .unwrap()
                .missing_shards
                .is_empty()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// A result file with any byte changed: it does not parse, or it
        /// merges (with itself) and is judged by an SLO, without a panic.
        #[test]
        fn hostile_result_files_are_errors(flips in prop::collection::vec(any::<(usize, u8)>(), 1..4)) {
            let mut text = serde_json::to_string(&result_of(&[1, 20, 300, 4000], 10.0)).unwrap().into_bytes();
            for (at, x) in flips {
                let at = at % text.len();
                text[at] ^= x;
            }
            if let Ok(r) = serde_json::from_slice::<RunResult>(&text) {
                if let Ok(merged) = RunResult::merge(&[r.clone(), r]) {
                    let slo = crate::slo::Slo::parse("p99<60ms,errors<1%").unwrap();
                    let _ = merged.judge(&slo);
                }
            }
        }
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
            // One path to every summary field: the merge and a run that
            // recorded everything at once agree on all of them.
            prop_assert_eq!(&merged.status_codes, &whole.status_codes);
            prop_assert_eq!(&merged.errors, &whole.errors);
            prop_assert_eq!(merged.service_time_ms, whole.service_time_ms);
            prop_assert_eq!(merged.schedule_lag_ms, whole.schedule_lag_ms);
            prop_assert_eq!((merged.bytes_in, merged.bytes_out), (whole.bytes_in, whole.bytes_out));
            prop_assert!((merged.achieved_rate - whole.achieved_rate).abs() < 1e-6);
            // Round trip through JSON keeps the histogram.
            let back: RunResult = serde_json::from_str(&serde_json::to_string(&merged).unwrap()).unwrap();
            prop_assert_eq!(back.latency_histogram(), whole.latency_histogram());
        }
    }
}
