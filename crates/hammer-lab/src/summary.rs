//! Provides the lab's text summary: one table of steps per target, the
//! capacity with its margin, the knee's top functions, the USL fit and the
//! N+1 plan, and the comparison when there are two targets. Printed at the
//! end of `hammer lab` and by `hammer report lab-report/report.json`.

use std::fmt::Write;

use hammer_core::capacity::{Stop, Verdict};

use super::{sweep, LabReport, TargetReport, TopFunction};

/// The whole summary.
pub fn render(report: &LabReport) -> String {
    let mut out = String::new();
    for t in &report.targets {
        target(&mut out, t);
    }
    if let [a, b] = report.targets.as_slice() {
        compare(&mut out, a, b);
    }
    if report.interrupted {
        out.push_str("\ninterrupted: the report holds what ran\n");
    }
    out
}

fn target(out: &mut String, t: &TargetReport) {
    let version = t
        .version
        .as_deref()
        .map_or(String::new(), |v| format!("  version {v}"));
    let _ = writeln!(out, "\n{}  ({})  SLO {}{version}", t.name, t.request, t.slo);
    // The service's own p99 (the bucket of its /metrics histogram it falls
    // in) when the lab read it.
    let served = t.steps.iter().any(|s| s.server.is_some());
    let _ = writeln!(
        out,
        "  {:>9} {:>10} {:>9} {:>9} {}{:>8}  verdict",
        "rate/s",
        "achieved",
        "p50 ms",
        "p99 ms",
        if served { "  own p99 " } else { "" },
        "errors"
    );
    for s in &t.steps {
        let verdict = s.judgement.describe();
        let own = if served {
            s.server
                .as_ref()
                .and_then(|v| v.whole.p99_bucket())
                .map_or(format!("{:>10}", "–"), |p| format!("{p:>10}"))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {:>9} {:>10.1} {:>9.2} {:>9.2}{own} {:>8}  {verdict}{}",
            s.rate,
            s.result.achieved_rate,
            s.result.latency_ms.p50,
            s.result.latency_ms.p99,
            s.result.failed,
            if s.low_confidence {
                " (few requests)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(out, "  capacity: {}", capacity_line(t));
    if let Some(k) = &t.knee {
        let _ = writeln!(
            out,
            "  {} ({} req/s), top functions by CPU self time:",
            k.what(),
            k.rate
        );
        if let Some(line) = busy_line(k) {
            let _ = writeln!(out, "    {line}");
        }
        for f in k.top.iter().take(5) {
            let _ = writeln!(out, "    {:>5.1}%  {}", f.self_pct, f.name);
        }
        if !k.wall_top.is_empty() {
            let _ = writeln!(
                out,
                "  {}, spans by their own wall time (waits included):",
                k.what()
            );
            for f in k.wall_top.iter().take(5) {
                let _ = writeln!(out, "    {:>5.1}%  {}", f.self_pct, f.name);
            }
        }
        if let Some(line) = why_line(k) {
            let _ = writeln!(out, "    {line}");
        }
        for p in &k.problems {
            let _ = writeln!(out, "    ({p})");
        }
    }
    if let Some(line) = sweep_line(t) {
        let _ = writeln!(out, "  {line}");
    }
    if let Some(line) = usl_line(t) {
        let _ = writeln!(out, "  {line}");
    }
    if let Some(p) = &t.plan {
        let _ = writeln!(
            out,
            "  plan: {:.0} req/s at {:.0} req/s per instance needs {} + 1 = {} instances (N+1)",
            p.expected_load,
            p.per_instance,
            p.instances - 1,
            p.instances
        );
    }
    for n in &t.notes {
        let _ = writeln!(out, "  note: {n}");
    }
}

/// "closed-loop sweep, good req/s by connections: 1: 88, 2: 101, 4: 99
/// (31.0% failed), …": goodput at each point, the share that failed where
/// any did, and why the sweep ended.
pub fn sweep_line(t: &TargetReport) -> Option<String> {
    let sw = t.sweep.as_ref()?;
    let points: Vec<String> = sw
        .points
        .iter()
        .map(|p| match p.failed_share() {
            f if f >= 0.0005 => format!(
                "{}: {:.0} ({:.1}% failed)",
                p.connections,
                p.throughput,
                100.0 * f
            ),
            _ => format!("{}: {:.0}", p.connections, p.throughput),
        })
        .collect();
    Some(format!(
        "closed-loop sweep, good req/s by connections: {} ({})",
        points.join(", "),
        sw.stopped
    ))
}

/// "USL fit (closed-loop sweep): λ=…, σ=…, κ=… (R²=…); predicted peak …",
/// when there is a fit. A fit through no more points than it has
/// parameters says so instead of its R² (which is 1 by construction).
pub fn usl_line(t: &TargetReport) -> Option<String> {
    let u = t.usl.as_ref()?;
    let from = if t.sweep.as_ref().is_some_and(|s| s.usl.is_some()) {
        "closed-loop sweep"
    } else {
        "open-loop steps, concurrency by Little's law"
    };
    let peak = u.peak().map_or(
        "no retrograde peak: throughput levels off towards λ/σ".into(),
        |(n, x)| format!("predicted peak {x:.0} req/s at concurrency {n:.1}"),
    );
    let measured = t
        .sweep
        .as_ref()
        .and_then(|s| s.measured_peak)
        .map_or(String::new(), |(n, x)| {
            format!(", measured peak {x:.0} req/s at {n}")
        });
    let r_squared = if t.sweep.as_ref().is_some_and(sweep::Sweep::fit_is_exact) {
        "exact through 3 points: R² says nothing".to_string()
    } else {
        format!("R²={:.3}", u.r_squared)
    };
    Some(format!(
        "USL fit ({from}): λ={:.1} req/s, σ={:.4}, κ={:.6} ({r_squared}); {peak}{measured}",
        u.lambda, u.sigma, u.kappa
    ))
}

/// "137 req/s (150 failed: ±9%)" and why the search ended.
pub fn capacity_line(t: &TargetReport) -> String {
    let why = match t.stopped {
        Some(Stop::Converged) => "bisection converged",
        Some(Stop::MaxRate) => "reached --max-rate; the capacity may be higher",
        Some(Stop::GeneratorLimited) => "hammer was the limit; a lower bound",
        Some(Stop::NothingPassed) => "even the lowest rate failed",
        None => "search incomplete",
    };
    match &t.capacity {
        Some(c) => match c.first_failing {
            Some(f) => format!(
                "{} req/s within {} ({f} req/s failed, margin {:.1}%; {why})",
                c.rate,
                t.slo,
                c.margin() * 100.0
            ),
            None => format!("at least {} req/s within {} ({why})", c.rate, t.slo),
        },
        None => format!("none found ({why})"),
    }
}

fn compare(out: &mut String, a: &TargetReport, b: &TargetReport) {
    let _ = writeln!(out, "\ncompare: A = {}, B = {}", a.name, b.name);
    const W: usize = 44;
    let fit = |s: &str| {
        if s.chars().count() <= W {
            s.to_string()
        } else {
            format!("{}…", s.chars().take(W - 1).collect::<String>())
        }
    };
    let _ = writeln!(out, "  {:<24} {:<W$} B", "", "A");
    for [label, x, y] in comparison(a, b) {
        let _ = writeln!(out, "  {label:<24} {:<W$} {}", fit(&x), fit(&y));
    }
    let cap = |t: &TargetReport| t.capacity.map_or(0.0, |c| c.rate);
    let (ca, cb) = (cap(a), cap(b));
    if ca > 0.0 {
        let _ = writeln!(out, "  capacity B/A: {:.2}x", cb / ca);
    }
    // Latency at the highest rate both passed.
    let common = a
        .steps
        .iter()
        .filter(|s| s.judgement.verdict == Verdict::Pass)
        .filter_map(|s| {
            b.steps
                .iter()
                .find(|o| o.rate == s.rate && o.judgement.verdict == Verdict::Pass)
                .map(|o| (s, o))
        })
        .max_by(|x, y| x.0.rate.total_cmp(&y.0.rate));
    if let Some((sa, sb)) = common {
        let _ = writeln!(
            out,
            "  at {} req/s (both passed): p99 {:.2} vs {:.2} ms, p50 {:.2} vs {:.2} ms",
            sa.rate,
            sa.result.latency_ms.p99,
            sb.result.latency_ms.p99,
            sa.result.latency_ms.p50,
            sb.result.latency_ms.p50
        );
    }
}

/// Spans and functions listed side by side in a comparison.
const COMPARED: usize = 3;

/// Two targets side by side, a row per figure: (what, A, B). The text
/// summary and the page both print these rows: capacity, the rate each was
/// profiled at, how busy it was there and its own p99, then its top spans
/// by wall time and top functions by CPU time.
pub fn comparison(a: &TargetReport, b: &TargetReport) -> Vec<[String; 3]> {
    let both = |f: &dyn Fn(&TargetReport) -> String| [f(a), f(b)];
    let row = |label: &str, [x, y]: [String; 2]| [label.to_string(), x, y];
    let mut rows = vec![
        row(
            "capacity",
            both(&|t| match t.capacity {
                Some(c) => match c.first_failing {
                    Some(f) => format!("{} req/s ({f} failed)", c.rate),
                    None => format!("{} req/s or more (no failure)", c.rate),
                },
                None => "none found".into(),
            }),
        ),
        row(
            "profiled at",
            both(&|t| {
                t.knee.as_ref().map_or("not profiled".into(), |k| {
                    format!("{} req/s ({})", k.rate, k.what())
                })
            }),
        ),
        row(
            "cores busy there",
            both(&|t| {
                t.knee
                    .as_ref()
                    .and_then(|k| k.cores_busy)
                    .map_or("–".into(), |c| format!("{c:.2}"))
            }),
        ),
        row(
            "service's own p99 there",
            both(&|t| {
                t.knee
                    .as_ref()
                    .and_then(|k| k.step.as_ref()?.server.as_ref()?.whole.p99_bucket())
                    .map_or("–".into(), |p| format!("{p} ms"))
            }),
        ),
    ];
    let wall = |t: &TargetReport| t.knee.as_ref().map_or(Vec::new(), |k| k.wall_top.clone());
    let cpu = |t: &TargetReport| t.knee.as_ref().map_or(Vec::new(), |k| k.top.clone());
    type Top<'a> = &'a dyn Fn(&TargetReport) -> Vec<TopFunction>;
    let lists: [(&str, Top<'_>); 2] = [("wall time, span", &wall), ("CPU, function", &cpu)];
    for (label, list) in lists {
        let (la, lb) = (list(a), list(b));
        let at = |l: &[TopFunction], i: usize| {
            l.get(i)
                .map_or(String::new(), |f| format!("{:.0}%  {}", f.self_pct, f.name))
        };
        for i in 0..COMPARED {
            rows.push([format!("{label} #{}", i + 1), at(&la, i), at(&lb, i)]);
        }
    }
    rows
}

/// The sentence that says why the knee is where it is: the span holding
/// most wall time and the function holding most CPU time there.
pub fn why_line(k: &super::Knee) -> Option<String> {
    let wall = k.wall_top.first();
    let cpu = k.top.first();
    let at = k.what();
    match (wall, cpu) {
        (None, None) => None,
        (Some(w), Some(c)) => Some(format!(
            "at {at} requests spend most wall time in `{}` ({:.0}% of it), and the CPU most time in `{}` ({:.0}%)",
            w.name, w.self_pct, c.name, c.self_pct
        )),
        (Some(w), None) => Some(format!(
            "at {at} requests spend most wall time in `{}` ({:.0}% of it)",
            w.name, w.self_pct
        )),
        (None, Some(c)) => Some(format!(
            "at {at} the CPU spends most time in `{}` ({:.0}%)",
            c.name, c.self_pct
        )),
    }
}

/// How busy the service was while profiled, and what that means.
pub fn busy_line(k: &super::Knee) -> Option<String> {
    let busy = k.cores_busy?;
    Some(if busy < 0.5 {
        format!(
            "the service kept only {busy:.2} cores busy: its time at {} goes off the CPU \
             (waiting on a database, locks or I/O), so the CPU flame graph shows the little it computes; \
             the wall flame graph and the trace show the waits",
            k.what()
        )
    } else {
        format!("the service kept {busy:.2} cores busy: the flame graph is where its time goes")
    })
}
