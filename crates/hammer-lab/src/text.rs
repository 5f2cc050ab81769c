//! Provides the text report: a summary a person reads at a glance.

use std::fmt::Write as _;

use hammer_core::result::{Percentiles, RunResult, GENERATOR_LIMIT_MS};
use hdrhistogram::Histogram;

use crate::format::{fmt_bytes, fmt_ms};

/// Rows in the latency bar chart.
const BARS: usize = 8;
const BAR_WIDTH: f64 = 40.0;

/// Renders the report. `title` names the target and the plan.
pub fn render(run: &RunResult, title: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title}\n");
    if !run.missing_shards.is_empty() {
        let missing: Vec<String> = run.missing_shards.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "  INCOMPLETE: shard(s) {} missing; every figure below lacks their requests\n",
            missing.join(", ")
        );
    }
    let target = run
        .target_rate
        .map(|t| format!(" (target {t:.1}/s)"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  Requests   {} in {:.2}s, achieved {:.1}/s{target}",
        run.requests, run.duration_s, run.achieved_rate
    );
    let _ = writeln!(
        out,
        "  Outcome    {} succeeded, {} failed ({:.2}%)",
        run.succeeded,
        run.failed,
        run.error_rate() * 100.0
    );
    let statuses: Vec<String> = run
        .status_codes
        .iter()
        .map(|(code, n)| format!("{code} ×{n}"))
        .collect();
    if !statuses.is_empty() {
        let _ = writeln!(out, "  Status     {}", statuses.join("   "));
    }
    let errors: Vec<String> = run
        .errors
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(kind, n)| format!("{kind} ×{n}"))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "  Errors     {}", errors.join("   "));
    }
    let _ = writeln!(
        out,
        "  Data       in {}, out {}",
        fmt_bytes(run.bytes_in),
        fmt_bytes(run.bytes_out)
    );
    let _ = writeln!(
        out,
        "  Conns      {} opened, {} open at most\n",
        run.connections.opened, run.connections.peak_open
    );
    let _ = writeln!(
        out,
        "  {:<11}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        "", "min", "mean", "p50", "p90", "p99", "p99.9", "max"
    );
    for (name, p) in [
        ("latency", &run.latency_ms),
        ("service", &run.service_time_ms),
        ("sched lag", &run.schedule_lag_ms),
    ] {
        let _ = writeln!(out, "  {name:<11}{}", row(p));
    }
    for (name, p) in [
        ("connect", &run.connect_ms),
        ("TLS hshake", &run.tls_handshake_ms),
        ("h2 settings", &run.h2_settings_ms),
    ] {
        if let Some(p) = p {
            let _ = writeln!(out, "  {name:<11}{}", row(p));
        }
    }
    let _ = writeln!(out, "\n  Latency distribution (from intended send time)");
    out.push_str(&bar_chart(run.latency_histogram()));
    if let Some(slo) = &run.slo {
        let verdict = if slo.passed { "PASSED" } else { "VIOLATED" };
        let _ = writeln!(out, "\n  SLO {verdict}");
        for c in &slo.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            let actual = if c.check.starts_with("error") {
                format!("{:.3}%", c.actual * 100.0)
            } else {
                fmt_ms(c.actual)
            };
            let _ = writeln!(out, "    {mark} {:<24} measured {actual}", c.check);
        }
    }
    if run.generator_limited {
        let _ = writeln!(
            out,
            "\n  WARNING: schedule lag p99 was {} (> {GENERATOR_LIMIT_MS} ms): the generator, \
             not the target, limited this run. Use more workers or a lower rate.",
            fmt_ms(run.schedule_lag_ms.p99)
        );
    }
    out
}

fn row(p: &Percentiles) -> String {
    [p.min, p.mean, p.p50, p.p90, p.p99, p.p99_9, p.max]
        .iter()
        .map(|&v| format!("{:>9}", fmt_ms(v)))
        .collect()
}

/// A bar per log-spaced latency range between the smallest and largest value.
fn bar_chart(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    if h.is_empty() {
        return out;
    }
    let (lo, hi) = (h.min().max(1) as f64, h.max().max(1) as f64);
    let total = h.len() as f64;
    let ratio = (hi / lo).max(1.0);
    let mut prev = 0u64;
    for i in 1..=BARS {
        let edge = if i == BARS {
            h.max()
        } else {
            (lo * ratio.powf(i as f64 / BARS as f64)) as u64
        };
        if edge <= prev {
            continue;
        }
        let n = h.count_between(prev + u64::from(prev > 0), edge);
        prev = edge;
        let share = n as f64 / total;
        let bar = "█".repeat((share * BAR_WIDTH).round() as usize);
        let _ = writeln!(
            out,
            "    ≤ {:>9}  {bar:<40} {:>6.2}%",
            fmt_ms(edge as f64 / 1000.0),
            share * 100.0
        );
        if edge >= h.max() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hammer_core::recorder::Recorder;
    use hammer_core::result::Pacing;
    use std::time::Duration;

    #[test]
    fn report_shows_rates_codes_and_chart() {
        let mut r = Recorder::new();
        for i in 0..1000u64 {
            let d = Duration::from_micros(100 + i * 10);
            r.record_send(Duration::ZERO, 10);
            r.record_response(if i % 100 == 0 { 503 } else { 200 }, d, d, 20);
        }
        let run =
            RunResult::from_recorder(&r, Pacing::Open { rate: 100.0 }, Duration::from_secs(10));
        let text = render(&run, "title");
        assert!(text.contains("achieved 100.0/s (target 100.0/s)"), "{text}");
        assert!(text.contains("200 ×990"));
        assert!(text.contains("503 ×10"));
        let bars: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with('≤'))
            .collect();
        assert!(bars.len() >= 4, "{text}");
        let total: f64 = bars
            .iter()
            .map(|l| {
                l.trim_end()
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .trim_end_matches('%')
                    .parse::<f64>()
                    .unwrap()
            })
            .sum();
        assert!((total - 100.0).abs() < 0.1, "bars add up to {total}");
    }
}
