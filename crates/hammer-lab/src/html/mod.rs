//! Provides the lab's HTML report: one self-contained `index.html` (charts
//! as inline SVG drawn by plotters, flame graphs by inferno embedded as
//! documents of their own, no network needed) with latency percentiles
//! against offered rate and the SLO line, latency over time per step,
//! achieved against offered rate, errors, the capacity table and plan,
//! the knee's top functions, and the machine it ran on. The page is
//! here; the charts are the `charts` module's.

use std::fmt::Write;
use std::path::Path;

use hammer_core::capacity::Verdict;

use super::summary::capacity_line;
use super::{Knee, LabError, LabReport, TargetReport};

mod charts;

type Result<T> = std::result::Result<T, LabError>;

/// Writes `index.html` into `dir` (flame graph files must already be there).
pub fn write(report: &LabReport, dir: &Path) -> Result<()> {
    let html = render(report, dir)?;
    let path = dir.join("index.html");
    std::fs::write(&path, html).map_err(LabError::write(path))
}

fn render(report: &LabReport, dir: &Path) -> Result<String> {
    let mut h = String::new();
    h.push_str(HEAD);
    let title = match report.targets.as_slice() {
        [a, b] => format!("hammer lab: {} vs {}", esc(&a.name), esc(&b.name)),
        [a] => format!("hammer lab: {}", esc(&a.name)),
        _ => "hammer lab".into(),
    };
    let _ = write!(h, "<h1>{title}</h1>");
    if let Some(r) = &report.rationale {
        let _ = write!(h, "<p class=note>{}</p>", esc(r));
    }
    if report.interrupted {
        h.push_str("<p class=warn>Interrupted: this report holds what ran.</p>");
    }
    h.push_str("<h2>Capacity</h2><table><tr><th>target</th><th>request</th><th>SLO</th><th>capacity</th><th>plan (N+1)</th></tr>");
    for t in &report.targets {
        let plan = t.plan.map_or("–".into(), |p| {
            format!(
                "{:.0} req/s → {} + 1 = <b>{}</b> instances",
                p.expected_load,
                p.instances - 1,
                p.instances
            )
        });
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{plan}</td></tr>",
            esc(&t.name),
            esc(&t.request),
            esc(&t.slo.to_string()),
            esc(&capacity_line(t))
        );
    }
    h.push_str("</table>");
    if let [a, b] = report.targets.as_slice() {
        let _ = write!(
            h,
            "<h2>Side by side</h2><table class=compare><tr><th></th><th>A: {}</th><th>B: {}</th></tr>",
            esc(&a.name),
            esc(&b.name)
        );
        for [label, x, y] in super::summary::comparison(a, b) {
            let _ = write!(
                h,
                "<tr><th>{}</th><td><code>{}</code></td><td><code>{}</code></td></tr>",
                esc(&label),
                esc(&x),
                esc(&y)
            );
        }
        h.push_str("</table>");
    }
    for t in &report.targets {
        target(&mut h, t, dir)?;
    }
    let m = &report.machine;
    let _ = write!(
        h,
        "<h2>Machine</h2><p>{} logical CPUs, {}; Linux {}; hammer {}; started at Unix time {:.0}, took {:.0} s.</p>",
        m.cpus,
        esc(&m.cpu_model),
        esc(&m.kernel),
        esc(&m.hammer_version),
        report.started_unix,
        report.elapsed_s
    );
    h.push_str("<p class=note>Raw per-step results: <code>report.json</code> (<code>hammer report report.json</code> prints them again).</p></body></html>\n");
    Ok(h)
}

fn target(h: &mut String, t: &TargetReport, dir: &Path) -> Result<()> {
    let _ = write!(h, "<h2>{}</h2>", esc(&t.name));
    if let Some(v) = &t.version {
        let _ = write!(
            h,
            "<p class=note>Target version (from its /info): <code>{}</code></p>",
            esc(v)
        );
    }
    charts::all(h, t)?;
    steps_table(h, t);
    usl_paragraph(h, t);
    if let Some(k) = &t.knee {
        knee(h, k, dir)?;
    }
    for n in &t.notes {
        let _ = write!(h, "<p class=note>{}</p>", esc(n));
    }
    Ok(())
}

/// The table of steps, a row each, with the service's view when scraped.
fn steps_table(h: &mut String, t: &TargetReport) {
    let served = t.steps.iter().any(|s| s.server.is_some());
    let _ = write!(
        h,
        "<table><tr><th>#</th><th>offered req/s</th><th>achieved</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th><th>failed</th><th>hammer lag p99 ms</th>{}<th>verdict</th></tr>",
        if served {
            "<th title='from its /metrics histogram'>service req/s</th><th title='the bucket of its /metrics histogram that its p99 falls in'>service p99 ms</th><th>service cores</th>"
        } else {
            ""
        }
    );
    for (i, s) in t.steps.iter().enumerate() {
        let r = &s.result;
        let (class, reason) = match s.judgement.verdict {
            Verdict::Pass => ("pass", String::new()),
            Verdict::Fail => ("fail", esc(&s.judgement.reason)),
            Verdict::GeneratorLimited => ("warn", esc(&s.judgement.reason)),
        };
        let verdict = format!(
            "<span class={class}>{}</span> {reason}",
            s.judgement.verdict.word()
        );
        let service = if served {
            let w = s.server.as_ref().map(|v| v.whole);
            let cell = |v: Option<f64>, digits: usize| {
                v.map_or("<td>–</td>".to_string(), |v| {
                    format!("<td>{v:.digits$}</td>")
                })
            };
            let own = w.and_then(|w| w.p99_bucket()).unwrap_or("–".into());
            // Hammer's p99 far above the service's: time outside the handler.
            let gap = w.and_then(|w| crate::server::gap_ms(r.latency_ms.p99, &w));
            format!(
                "{}{}{}",
                cell(w.and_then(|w| w.rate), 1),
                match gap {
                    Some(gap) => format!(
                        "<td class=warn title='at least {gap:.1} ms outside the handler'>{own}</td>"
                    ),
                    None => format!("<td>{own}</td>"),
                },
                cell(w.and_then(|w| w.cores), 2),
            )
        } else {
            String::new()
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{:.3}</td>{service}<td>{verdict}{}</td></tr>",
            i + 1,
            s.rate,
            r.achieved_rate,
            r.latency_ms.p50,
            r.latency_ms.p90,
            r.latency_ms.p99,
            r.latency_ms.max,
            r.failed,
            r.schedule_lag_ms.p99,
            if s.low_confidence { " (few requests)" } else { "" }
        );
    }
    h.push_str("</table>");
}

/// The USL fit in words, and where it came from.
fn usl_paragraph(h: &mut String, t: &TargetReport) {
    let Some(u) = &t.usl else { return };
    let peak = u.peak().map_or(
        "no retrograde peak: throughput levels off towards λ/σ".to_string(),
        |(n, x)| format!("the fit puts the peak at {x:.0} req/s with {n:.1} requests in flight"),
    );
    let (from, measured) = match t.sweep.as_ref().filter(|s| s.usl.is_some()) {
        Some(sw) => (
            format!(
                "a closed-loop sweep ({} to {} connections; {})",
                sw.points.first().map_or(0, |p| p.connections),
                sw.points.last().map_or(0, |p| p.connections),
                esc(&sw.stopped)
            ),
            sw.measured_peak.map_or(String::new(), |(n, x)| {
                format!(", measured peak {x:.0} req/s at {n} connections")
            }),
        ),
        None => (
            "the open-loop steps (concurrency by Little's law: throughput × mean latency)".into(),
            String::new(),
        ),
    };
    let r_squared = if t
        .sweep
        .as_ref()
        .is_some_and(crate::sweep::Sweep::fit_is_exact)
    {
        "exact through 3 points, so R² says nothing".to_string()
    } else {
        format!("R² = {:.3}", u.r_squared)
    };
    let _ = write!(
        h,
        "<p>Universal Scalability Law fit of throughput against concurrency, from {from}: \
         λ = {:.1} req/s, contention σ = {:.4}, coherency κ = {:.6}, {r_squared}; {peak}{measured}. \
         σ is the serial share that caps gains from more cores or instances; κ the crosstalk that turns them into losses.</p>",
        u.lambda, u.sigma, u.kappa
    );
}

/// The knee (or the highest rate tested): flame graphs, why, top functions, files.
fn knee(h: &mut String, k: &Knee, dir: &Path) -> Result<()> {
    if k.passed {
        let _ = write!(
            h,
            "<h3>At the highest rate tested: {} req/s</h3><p class=note>It passed: the search reached --max-rate without a knee. \
             Profiled all the same, so that it can be read beside another target's knee.</p>",
            k.rate
        );
    } else {
        let _ = write!(h, "<h3>At the knee: {} req/s</h3>", k.rate);
    }
    if let Some(f) = &k.flamegraph_file {
        embed_svg(h, dir, f, "flame graph")?;
    }
    if let Some(line) = super::summary::why_line(k) {
        let _ = write!(h, "<p><b>Why:</b> {}.</p>", esc(&line));
    }
    if let Some(line) = super::summary::busy_line(k) {
        let _ = write!(h, "<p>{}.</p>", esc(&line));
    }
    let graphs = [
        (
            &k.wall_flamegraph_file,
            "wall flame graph",
            "Wall time by span (where requests wait as well as where they compute):".to_string(),
        ),
        (
            &k.diff_flamegraph_file,
            "differential CPU flame graph",
            format!(
                "What grew on the CPU from the last passing rate ({} req/s) to the knee: red grew, blue shrank.",
                k.last_pass_rate.unwrap_or_default()
            ),
        ),
        (
            &k.wall_diff_flamegraph_file,
            "differential wall flame graph",
            "What grew in wall time, by span, from the last passing rate to the knee:".to_string(),
        ),
    ];
    for (file, title, caption) in graphs {
        let Some(f) = file else { continue };
        let _ = write!(h, "<p>{}</p>", esc(&caption));
        embed_svg(h, dir, f, title)?;
    }
    if !k.top.is_empty() {
        h.push_str("<table><tr><th>self %</th><th>total %</th><th>function</th></tr>");
        for f in &k.top {
            let _ = write!(
                h,
                "<tr><td>{:.1}</td><td>{:.1}</td><td><code>{}</code></td></tr>",
                f.self_pct,
                f.total_pct,
                esc(&f.name)
            );
        }
        h.push_str("</table>");
    }
    let files: Vec<String> = [
        &k.profile_file,
        &k.flamegraph_file,
        &k.wall_flamegraph_file,
        &k.diff_flamegraph_file,
        &k.wall_diff_flamegraph_file,
        &k.trace_file,
    ]
    .iter()
    .filter_map(|f| f.as_ref().map(|f| format!("<code>{}</code>", esc(f))))
    .collect();
    if !files.is_empty() {
        let _ = write!(
            h,
            "<p class=note>Files: {} (the profile opens with <code>go tool pprof</code>, the trace in Perfetto UI or chrome://tracing).</p>",
            files.join(", ")
        );
    }
    for p in &k.problems {
        let _ = write!(h, "<p class=warn>{}</p>", esc(p));
    }
    Ok(())
}

fn embed_svg(h: &mut String, dir: &Path, name: &str, title: &str) -> Result<()> {
    let svg = std::fs::read_to_string(dir.join(name)).map_err(|source| LabError::Read {
        path: dir.join(name),
        source,
    })?;
    let doc = format!("<style>body{{margin:0}}svg{{width:100%;height:auto}}</style>{svg}");
    let _ = write!(
        h,
        "<iframe class=flame title=\"{title}\" srcdoc=\"{}\"></iframe>",
        esc(&doc)
    );
    Ok(())
}

/// The series' names in a box at the top left.
/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const HEAD: &str = "<!doctype html><html><head><meta charset=utf-8><title>hammer lab report</title><style>\
body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:last-child,th:last-child{text-align:left}code{font-size:12px}\
.charts{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}\
.flame{width:1220px;height:700px;border:1px solid #ccc}\
.pass{color:#080;font-weight:bold}.fail{color:#c00;font-weight:bold}.warn{color:#b60}.note{color:#555}\
</style></head><body>";
