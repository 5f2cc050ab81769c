//! Provides hammer's latency histograms as values: their bounds, the
//! quantiles and summaries read from them, and their one wire form,
//! HdrHistogram V2 (deflate) in base64, written only where a result meets
//! serde ([`v2`], [`v2_opt`]) and read back with bounds checked
//! ([`decode_histogram`]): a histogram from a file is hostile until proven
//! otherwise.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::recorder::new_histogram;

/// A histogram field that is not valid base64 HdrHistogram V2 data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("histogram field {field} is not a valid HdrHistogram V2 base64 string")]
pub struct HistogramError {
    /// The field that failed.
    pub field: &'static str,
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

/// Encodes a histogram as base64 HdrHistogram V2 (deflate) data.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serializing to memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes [`encode_histogram`] output (or any HdrHistogram V2 data within
/// the bounds a result file's histograms are held to).
pub fn decode_histogram(text: &str, field: &'static str) -> Result<Histogram<u64>, HistogramError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| HistogramError { field })?;
    let plain = checked_v2(&bytes).ok_or(HistogramError { field })?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &plain[..])
        .map_err(|_| HistogramError { field })?;
    // Re-home into hammer's bounds so histograms from any source add up.
    let mut out = new_histogram();
    out.add(&h).map_err(|_| HistogramError { field })?;
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

/// Serde for a histogram field: base64 HdrHistogram V2 (deflate) text.
pub mod v2 {
    use super::*;

    /// Writes `h` as [`encode_histogram`] does.
    pub fn serialize<S: serde::Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode_histogram(h))
    }

    /// Reads a histogram written by [`serialize`], bounds checked.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        decode_histogram(&text, "histogram").map_err(serde::de::Error::custom)
    }
}

/// Serde for an optional histogram field (absent when it has no samples).
pub mod v2_opt {
    use super::*;

    /// Writes `h` as [`encode_histogram`] does.
    pub fn serialize<S: serde::Serializer>(
        h: &Option<Histogram<u64>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match h {
            Some(h) => s.serialize_some(&encode_histogram(h)),
            None => s.serialize_none(),
        }
    }

    /// Reads an optional histogram written by [`serialize`], bounds checked.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Histogram<u64>>, D::Error> {
        <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?
            .map(|text| decode_histogram(&text, "histogram").map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Whatever a result file's histogram holds: an error, never a panic.
        #[test]
        fn hostile_histograms_are_errors(bytes in prop::collection::vec(any::<u8>(), 0..256), flip in any::<(usize, u8)>()) {
            let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
            let _ = decode_histogram(&b64(&bytes), "h");
            // One of hammer's own, with a byte changed.
            let mut h = new_histogram();
            for v in [1, 2, 3, 1000] {
                h.record(v).unwrap();
            }
            let mut ours = base64::engine::general_purpose::STANDARD
                .decode(encode_histogram(&h))
                .unwrap();
            let at = flip.0 % ours.len();
            ours[at] ^= flip.1;
            let _ = decode_histogram(&b64(&ours), "h");
        }
    }
}
