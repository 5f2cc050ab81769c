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

use crate::recorder::{new_histogram, ErrorKind, Parts, Recorder};
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
    /// TCP connect times (absent when no connect was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<Percentiles>,
    /// TLS handshake times, from connected to done (https only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshake_ms: Option<Percentiles>,
    /// Connect time histogram, same encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_histogram: Option<String>,
    /// TLS handshake time histogram, same encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshake_histogram: Option<String>,
    /// HTTP/2: from connection ready to the server's first SETTINGS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_settings_ms: Option<Percentiles>,
    /// Its histogram, same encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_settings_histogram: Option<String>,
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

/// Percentiles and encoded histogram of a set-up time, when it has samples.
fn setup_times(h: &Histogram<u64>) -> (Option<Percentiles>, Option<String>) {
    if h.is_empty() {
        return (None, None);
    }
    (Some(Percentiles::of(h)), Some(encode_histogram(h)))
}

/// Encodes a histogram as base64 HdrHistogram V2 (deflate) data.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serializing to memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes [`encode_histogram`] output (or any HdrHistogram V2 data within
/// [`checked_v2`]'s bounds).
pub fn decode_histogram(text: &str, field: &'static str) -> Result<Histogram<u64>, ResultError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| ResultError::Histogram { field })?;
    let plain = checked_v2(&bytes).ok_or(ResultError::Histogram { field })?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &plain[..])
        .map_err(|_| ResultError::Histogram { field })?;
    // Re-home into hammer's bounds so histograms from any source add up.
    let mut out = new_histogram();
    out.add(&h).map_err(|_| ResultError::Histogram { field })?;
    Ok(out)
}

/// HdrHistogram V2 cookies (uncompressed, and deflate-compressed).
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;
/// Largest decompressed histogram accepted (hammer's own are a few KiB).
const MAX_HISTOGRAM_BYTES: u64 = 4 << 20;
/// Bounds a histogram read from a file may declare: its counts array is
/// sized by them (at these, about 3 MiB).
const MAX_HIGHEST: u64 = 1 << 40;
const MAX_DIGITS: u32 = 4;

/// `bytes` as uncompressed HdrHistogram V2 data whose header is safe to
/// hand to the deserializer, which trusts it: it sizes a buffer by the
/// declared payload length (a 40-byte input declaring 4 GiB gets 4 GiB)
/// and the counts by the declared bounds. None when the header does not
/// fit the data or the bounds are beyond any latency histogram's; the
/// compressed form is inflated here, at most 4 MiB of it.
fn checked_v2(bytes: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::io::Read as _;
    let be32 = |b: &[u8], at: usize| Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let be64 = |b: &[u8], at: usize| Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let plain: std::borrow::Cow<'_, [u8]> = match be32(bytes, 0)? {
        V2_COOKIE => bytes.into(),
        V2_COMPRESSED_COOKIE => {
            let len = usize::try_from(be32(bytes, 4)?).ok()?;
            let deflated = bytes.get(8..8usize.checked_add(len)?)?;
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(deflated)
                .take(MAX_HISTOGRAM_BYTES + 1)
                .read_to_end(&mut out)
                .ok()?;
            if out.len() as u64 > MAX_HISTOGRAM_BYTES {
                return None;
            }
            out.into()
        }
        _ => return None,
    };
    // cookie, payload length, normalizing offset, digits (u32 each), lowest,
    // highest (u64), integer-to-double ratio (f64): 40 bytes, then the payload.
    let header_ok = be32(&plain, 0)? == V2_COOKIE
        && usize::try_from(be32(&plain, 4)?).ok()? <= plain.len().checked_sub(40)?
        && be32(&plain, 12)? <= MAX_DIGITS
        && be64(&plain, 24)? <= MAX_HIGHEST;
    header_ok.then_some(plain)
}

impl RunResult {
    /// Builds the result of a run from what was recorded.
    pub fn from_recorder(rec: &Recorder, target_rate: Option<f64>, window: Duration) -> Self {
        let duration_s = window.as_secs_f64();
        let lag = Percentiles::of(rec.schedule_lag());
        let (connect_ms, connect_histogram) = setup_times(rec.connect_time());
        let (tls_handshake_ms, tls_handshake_histogram) = setup_times(rec.handshake_time());
        let (h2_settings_ms, h2_settings_histogram) = setup_times(rec.settings_time());
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
            shard: None,
            missing_shards: Vec::new(),
            histogram: encode_histogram(rec.latency()),
            service_time_histogram: encode_histogram(rec.service_time()),
            schedule_lag_histogram: encode_histogram(rec.schedule_lag()),
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
            latency: decode_histogram(&self.histogram, "histogram")?,
            service: decode_histogram(&self.service_time_histogram, "service_time_histogram")?,
            lag: decode_histogram(&self.schedule_lag_histogram, "schedule_lag_histogram")?,
            connect: self
                .connect_histogram
                .as_deref()
                .map(|h| decode_histogram(h, "connect_histogram"))
                .transpose()?,
            handshake: self
                .tls_handshake_histogram
                .as_deref()
                .map(|h| decode_histogram(h, "tls_handshake_histogram"))
                .transpose()?,
            settings: self
                .h2_settings_histogram
                .as_deref()
                .map(|h| decode_histogram(h, "h2_settings_histogram"))
                .transpose()?,
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
            connections.opened += r.connections.opened;
            connections.peak_open += r.connections.peak_open;
        }
        let mut merged =
            RunResult::from_recorder(&recorder, target, Duration::from_secs_f64(window))
                .with_connections(connections);
        merged.mode = first.mode.clone();
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

        /// Whatever a result file's histogram holds: an error, never a panic.
        #[test]
        fn hostile_histograms_are_errors(bytes in prop::collection::vec(any::<u8>(), 0..256), flip in any::<(usize, u8)>()) {
            let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
            let _ = decode_histogram(&b64(&bytes), "h");
            // One of hammer's own, with a byte changed.
            let mut ours = base64::engine::general_purpose::STANDARD
                .decode(result_of(&[1, 2, 3, 1000], 10.0).histogram)
                .unwrap();
            let at = flip.0 % ours.len();
            ours[at] ^= flip.1;
            let _ = decode_histogram(&b64(&ours), "h");
        }

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
                    let _ = slo.evaluate(&merged);
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
            prop_assert_eq!(back.latency_histogram().unwrap(), whole.latency_histogram().unwrap());
        }
    }
}
