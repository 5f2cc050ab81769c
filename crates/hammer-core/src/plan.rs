//! Defines rate plans: the request rate a run offers at each instant.
//!
//! A plan is a list of segments, each ramping linearly from a start rate to
//! an end rate over its duration (a constant rate is a ramp with equal ends).
//! Pacers turn a plan into send times by inverting its cumulative count
//! `Λ(t) = ∫ rate`, so arrival `k` is due when `Λ(t) = k`.

use std::time::Duration;

/// Why a rate plan could not be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    /// A rate was zero, negative or not a number where a positive one is needed.
    #[error("rate must be a positive number of requests per second, got {0}")]
    BadRate(String),
    /// A segment duration was missing, zero or unparsable.
    #[error("bad duration {0:?}: use forms like 500ms, 30s, 2m")]
    BadDuration(String),
    /// The plan text did not have the expected shape.
    #[error("bad plan {text:?}: expected {expected}")]
    Syntax {
        /// The text that failed to parse.
        text: String,
        /// What the parser expected instead.
        expected: &'static str,
    },
    /// Only the last segment of a plan may be open-ended.
    #[error("only the last step of a plan may run without a duration")]
    OpenEndedMiddle,
}

/// One piece of a plan: a linear ramp from `start_rate` to `end_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Requests per second at the start of the segment.
    pub start_rate: f64,
    /// Requests per second at the end of the segment.
    pub end_rate: f64,
    /// How long the segment lasts; `None` means until the run is stopped.
    pub duration: Option<Duration>,
}

impl Segment {
    fn len_s(&self) -> f64 {
        self.duration.map_or(f64::INFINITY, |d| d.as_secs_f64())
    }

    /// Requests due within the first `tau` seconds of this segment.
    fn count_within(&self, tau: f64) -> f64 {
        if self.start_rate == self.end_rate || self.duration.is_none() {
            return self.start_rate * tau;
        }
        let slope = (self.end_rate - self.start_rate) / self.len_s();
        self.start_rate * tau + slope * tau * tau / 2.0
    }

    /// The offset within the segment at which `count_within` reaches `y`.
    fn time_for(&self, y: f64) -> f64 {
        if self.start_rate == self.end_rate || self.duration.is_none() {
            return y / self.start_rate;
        }
        let a = (self.end_rate - self.start_rate) / (2.0 * self.len_s());
        let b = self.start_rate;
        // The stable root of a·τ² + b·τ − y = 0, valid for either sign of a.
        2.0 * y / (b + (b * b + 4.0 * a * y).max(0.0).sqrt())
    }
}

/// A sequence of rate segments that together describe an open-loop run.
#[derive(Debug, Clone, PartialEq)]
pub struct RatePlan {
    segments: Vec<Segment>,
}

impl RatePlan {
    /// A constant `rate` for `duration` (or until stopped when `None`).
    pub fn constant(rate: f64, duration: Option<Duration>) -> Result<Self, PlanError> {
        check_rate(rate, false)?;
        Self::new(vec![Segment {
            start_rate: rate,
            end_rate: rate,
            duration,
        }])
    }

    /// Builds a plan from segments, checking rates and durations.
    pub fn new(segments: Vec<Segment>) -> Result<Self, PlanError> {
        if segments.is_empty() {
            return Err(PlanError::Syntax {
                text: String::new(),
                expected: "at least one step",
            });
        }
        for (i, s) in segments.iter().enumerate() {
            check_rate(s.start_rate, true)?;
            check_rate(s.end_rate, true)?;
            if s.duration.is_none() && i + 1 != segments.len() {
                return Err(PlanError::OpenEndedMiddle);
            }
            if s.duration.is_none() && s.start_rate <= 0.0 {
                return Err(PlanError::BadRate(s.start_rate.to_string()));
            }
            if s.duration == Some(Duration::ZERO) {
                return Err(PlanError::BadDuration("0s".into()));
            }
        }
        if segments
            .iter()
            .all(|s| s.start_rate == 0.0 && s.end_rate == 0.0)
        {
            return Err(PlanError::BadRate("0".into()));
        }
        Ok(Self { segments })
    }

    /// Parses `--schedule` text: `RATE:DURATION` steps joined by commas,
    /// e.g. `50:30s,500:30s,1000:30s`.
    pub fn parse_schedule(text: &str) -> Result<Self, PlanError> {
        let steps = text
            .split(',')
            .map(|step| {
                let (rate, dur) = step.trim().split_once(':').ok_or(PlanError::Syntax {
                    text: step.into(),
                    expected: "RATE:DURATION such as 500:30s",
                })?;
                let rate = parse_rate(rate)?;
                Ok(Segment {
                    start_rate: rate,
                    end_rate: rate,
                    duration: Some(parse_duration(dur)?),
                })
            })
            .collect::<Result<Vec<_>, PlanError>>()?;
        Self::new(steps)
    }

    /// Parses `--ramp` text: `FROM..TO:DURATION`, e.g. `0..2000:60s`.
    pub fn parse_ramp(text: &str) -> Result<Self, PlanError> {
        let syntax = || PlanError::Syntax {
            text: text.into(),
            expected: "FROM..TO:DURATION such as 0..2000:60s",
        };
        let (rates, dur) = text.trim().split_once(':').ok_or_else(syntax)?;
        let (from, to) = rates.split_once("..").ok_or_else(syntax)?;
        Self::new(vec![Segment {
            start_rate: parse_rate(from)?,
            end_rate: parse_rate(to)?,
            duration: Some(parse_duration(dur)?),
        }])
    }

    /// Total length, or `None` when the plan runs until stopped.
    pub fn duration(&self) -> Option<Duration> {
        self.segments.iter().map(|s| s.duration).sum()
    }

    /// The mean rate over the plan (the start rate for an open-ended plan).
    pub fn mean_rate(&self) -> f64 {
        match self.duration() {
            Some(d) => self.cumulative(d.as_secs_f64()) / d.as_secs_f64(),
            None => self.segments[0].start_rate,
        }
    }

    /// `λ(t)`: the rate the plan asks for `t` seconds in; 0 past its end.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut start = 0.0;
        for s in &self.segments {
            let len = s.len_s();
            if t < start + len {
                if s.start_rate == s.end_rate || !len.is_finite() {
                    return s.start_rate;
                }
                return s.start_rate + (s.end_rate - s.start_rate) * (t - start) / len;
            }
            start += len;
        }
        0.0
    }

    /// `Λ(t)`: how many requests are due in the first `t` seconds.
    pub fn cumulative(&self, t: f64) -> f64 {
        let mut start = 0.0;
        let mut total = 0.0;
        for s in &self.segments {
            let len = s.len_s();
            if t < start + len {
                return total + s.count_within(t - start);
            }
            total += s.count_within(len);
            start += len;
        }
        total
    }

    /// `Λ⁻¹(x)`: the offset at which the `x`-th request is due, or `None`
    /// when the plan ends first.
    pub fn time_of(&self, x: f64) -> Option<Duration> {
        let mut start = 0.0;
        let mut before = 0.0;
        for s in &self.segments {
            let len = s.len_s();
            let within = s.count_within(len);
            if x < before + within {
                let tau = s.time_for(x - before).clamp(0.0, len);
                return Some(Duration::from_secs_f64(start + tau));
            }
            before += within;
            start += len;
        }
        None
    }
}

fn check_rate(rate: f64, zero_ok: bool) -> Result<(), PlanError> {
    if rate.is_finite() && (rate > 0.0 || (zero_ok && rate == 0.0)) {
        Ok(())
    } else {
        Err(PlanError::BadRate(rate.to_string()))
    }
}

fn parse_rate(text: &str) -> Result<f64, PlanError> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| PlanError::BadRate(text.trim().into()))?;
    check_rate(rate, true)?;
    Ok(rate)
}

/// Parses a human duration such as `500ms`, `30s` or `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, PlanError> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|_| PlanError::BadDuration(text.trim().into()))?;
    if d.is_zero() {
        return Err(PlanError::BadDuration(text.trim().into()));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_rate_spaces_arrivals_evenly() {
        let plan = RatePlan::constant(500.0, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(plan.time_of(0.0), Some(Duration::ZERO));
        assert_eq!(plan.time_of(250.0), Some(Duration::from_millis(500)));
        assert_eq!(plan.time_of(5000.0), None);
        assert!((plan.mean_rate() - 500.0).abs() < 1e-9);
    }

    #[test]
    fn schedule_steps_follow_each_other() {
        let plan = RatePlan::parse_schedule("50:30s, 500:30s,1000:30s").unwrap();
        assert_eq!(plan.duration(), Some(Duration::from_secs(90)));
        assert_eq!(plan.cumulative(30.0), 1500.0);
        assert_eq!(plan.cumulative(60.0), 16500.0);
        // The first request of the second step is due exactly at 30 s.
        assert_eq!(plan.time_of(1500.0), Some(Duration::from_secs(30)));
        // The last step runs at its own rate: 30 s at 1000/s after 16,500.
        assert!((plan.cumulative(90.0) - 46_500.0).abs() < 1e-6);
    }

    #[test]
    fn ramp_from_zero_is_quadratic() {
        let plan = RatePlan::parse_ramp("0..2000:60s").unwrap();
        // Λ(t) = 2000/60 · t²/2, so Λ(60) = 60_000 and half of it at 60/√2.
        assert!((plan.cumulative(60.0) - 60_000.0).abs() < 1e-6);
        let half = plan.time_of(30_000.0).unwrap().as_secs_f64();
        assert!((half - 60.0 / 2f64.sqrt()).abs() < 1e-6, "{half}");
        // λ is Λ's slope: 1000/s halfway, none past the end.
        assert_eq!(plan.rate_at(30.0), 1000.0);
        assert_eq!(plan.rate_at(60.0), 0.0);
        let steps = RatePlan::parse_schedule("50:30s,500:30s").unwrap();
        assert_eq!((steps.rate_at(0.0), steps.rate_at(45.0)), (50.0, 500.0));
    }

    #[test]
    fn bad_plans_are_rejected() {
        assert!(matches!(
            RatePlan::constant(0.0, None),
            Err(PlanError::BadRate(_))
        ));
        assert!(matches!(
            RatePlan::constant(-5.0, None),
            Err(PlanError::BadRate(_))
        ));
        assert!(RatePlan::constant(f64::NAN, None).is_err());
        assert!(matches!(
            RatePlan::parse_schedule("50"),
            Err(PlanError::Syntax { .. })
        ));
        assert!(matches!(
            RatePlan::parse_schedule("50:soon"),
            Err(PlanError::BadDuration(_))
        ));
        assert!(RatePlan::parse_ramp("0..0:10s").is_err());
        assert!(RatePlan::parse_ramp("10-20:10s").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// `--schedule`, `--ramp` and durations from any text, and from text
        /// shaped like them with numbers of any size: a plan or an error,
        /// never a panic; a plan's rates and lengths are finite.
        #[test]
        fn hostile_plans_are_errors(
            any_text in ".{0,80}",
            shaped in "[0-9.e+-]{0,12}(\\.\\.[0-9.e+-]{0,12})?:[0-9.e+-]{0,12}(ns|us|ms|s|m|h|d|y|)(,[0-9.e+-]{0,8}:[0-9]{0,6}s){0,3}",
        ) {
            for text in [any_text.as_str(), shaped.as_str()] {
                for plan in [RatePlan::parse_schedule(text), RatePlan::parse_ramp(text)].into_iter().flatten() {
                    for seg in &plan.segments {
                        prop_assert!(seg.start_rate.is_finite() && seg.end_rate.is_finite(), "{text}");
                    }
                    let _ = (plan.cumulative(1.0), plan.time_of(10.0), plan.mean_rate());
                }
                let _ = parse_duration(text);
            }
        }
    }

    proptest! {
        #[test]
        fn time_of_inverts_cumulative(
            steps in prop::collection::vec((0.0f64..5000.0, 0.0f64..5000.0, 1u64..20_000), 1..5),
            frac in 0.0f64..1.0,
        ) {
            let segments: Vec<Segment> = steps.iter().map(|&(a, b, ms)| Segment {
                start_rate: a, end_rate: b, duration: Some(Duration::from_millis(ms)),
            }).collect();
            prop_assume!(segments.iter().any(|s| s.start_rate > 1.0 || s.end_rate > 1.0));
            let plan = RatePlan::new(segments).unwrap();
            let total = plan.cumulative(plan.duration().unwrap().as_secs_f64());
            let x = frac * total * 0.999;
            let t = plan.time_of(x).unwrap().as_secs_f64();
            prop_assert!((plan.cumulative(t) - x).abs() < 1e-3 * total.max(1.0), "x={x} t={t}");
        }

        #[test]
        fn cumulative_never_decreases(a in 0.0f64..1e4, b in 0.0f64..1e4, t1 in 0.0f64..20.0, dt in 0.0f64..5.0) {
            prop_assume!(a > 0.0 || b > 0.0);
            let plan = RatePlan::new(vec![Segment { start_rate: a, end_rate: b, duration: Some(Duration::from_secs(20)) }]).unwrap();
            prop_assert!(plan.cumulative(t1 + dt) >= plan.cumulative(t1) - 1e-9);
        }
    }
}
