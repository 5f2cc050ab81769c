//! Provides the lab's HTML report: one self-contained `index.html` (charts
//! as inline SVG drawn by plotters, flame graphs by inferno embedded as
//! documents of their own, no network needed) with latency percentiles
//! against offered rate and the SLO line, latency over time per step,
//! achieved against offered rate, errors, the capacity table and plan,
//! the knee's top functions, and the machine it ran on.

use std::fmt::Write;
use std::path::Path;

use hammer_core::capacity::Verdict;
use hammer_core::slo::Slo;
use plotters::prelude::*;

use super::summary::capacity_line;
use super::{LabError, LabReport, StepRecord, TargetReport};

type Result<T> = std::result::Result<T, LabError>;

const W: u32 = 640;
const H: u32 = 360;
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

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
            esc(&t.slo),
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
    let slo_limit = Slo::parse(&t.slo).ok().and_then(|s| s.latency_quantile());
    let mut steps: Vec<&StepRecord> = t.steps.iter().collect();
    steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    h.push_str("<div class=charts>");
    chart(h, "latency percentiles vs offered rate", |b| {
        latency_vs_rate(b, &steps, slo_limit)
    })?;
    chart(h, "achieved vs offered rate", |b| {
        achieved_vs_offered(b, &steps)
    })?;
    chart(h, "latency p99 over time, per step", |b| {
        latency_over_time(b, &t.steps, slo_limit)
    })?;
    chart(h, "failed requests vs offered rate", |b| {
        errors_vs_rate(b, &steps)
    })?;
    if let Some(sw) = t.sweep.as_ref().filter(|s| !s.points.is_empty()) {
        chart(
            h,
            "closed-loop sweep: throughput vs connections, with the USL fit",
            |b| usl_curve(b, sw),
        )?;
    }
    h.push_str("</div>");
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
    if let Some(u) = &t.usl {
        let peak = u.peak().map_or(
            "no retrograde peak: throughput levels off towards λ/σ".to_string(),
            |(n, x)| {
                format!("the fit puts the peak at {x:.0} req/s with {n:.1} requests in flight")
            },
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
                "the open-loop steps (concurrency by Little's law: throughput × mean latency)"
                    .into(),
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
    if let Some(k) = &t.knee {
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
    }
    for n in &t.notes {
        let _ = write!(h, "<p class=note>{}</p>", esc(n));
    }
    Ok(())
}

type Backend<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn chart(
    h: &mut String,
    caption: &str,
    draw: impl FnOnce(&Backend<'_>) -> Result<()>,
) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let area = root.titled(caption, ("sans-serif", 16)).map_err(plot_err)?;
        draw(&area)?;
        root.present().map_err(plot_err)?;
    }
    let _ = write!(h, "<figure>{svg}</figure>");
    Ok(())
}

/// Embeds the SVG file `name` of the report directory as a document of its
/// own inside the page (srcdoc: data: URLs are capped at 2 MB), so a flame
/// graph's script and ids cannot clash with the page's (two with --compare).
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
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
) -> Result<()> {
    legend_at(c, SeriesLabelPosition::UpperLeft)
}

/// The series' names in a box at `position`.
fn legend_at<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(plot_err)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> LabError {
    LabError::Draw {
        what: "a chart".into(),
        reason: format!("{e:?}"),
    }
}

fn rate_range(steps: &[&StepRecord]) -> std::ops::Range<f64> {
    let max = steps.iter().map(|s| s.rate).fold(1.0, f64::max);
    0.0..max * 1.05
}

fn latency_vs_rate(
    area: &Backend<'_>,
    steps: &[&StepRecord],
    slo: Option<(f64, f64)>,
) -> Result<()> {
    let lats = steps
        .iter()
        .flat_map(|s| [s.result.latency_ms.p50, s.result.latency_ms.p99])
        .chain(slo.map(|(_, l)| l));
    let (lo, hi) = lats.fold((f64::MAX, 0.01f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = (lo.min(hi) * 0.5).max(0.001);
    let mut c = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(rate_range(steps), (lo..hi * 2.0).log_scale())
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("offered rate, req/s")
        .y_desc("latency, ms (log)")
        .draw()
        .map_err(plot_err)?;
    type Pick = fn(&StepRecord) -> f64;
    let series: [(&str, Pick); 3] = [
        ("p50", |s| s.result.latency_ms.p50),
        ("p90", |s| s.result.latency_ms.p90),
        ("p99", |s| s.result.latency_ms.p99),
    ];
    for (i, (name, f)) in series.iter().enumerate() {
        let color = PALETTE[i];
        let pts: Vec<(f64, f64)> = steps.iter().map(|s| (s.rate, f(s).max(lo))).collect();
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(plot_err)?;
    }
    let own: Vec<(f64, f64)> = steps
        .iter()
        .filter_map(|s| {
            // Within its bucket, and no higher than hammer's (the
            // service's time is part of hammer's).
            let own = s
                .server
                .as_ref()?
                .whole
                .p99_ms?
                .min(s.result.latency_ms.p99);
            Some((s.rate, own.max(lo)))
        })
        .collect();
    if !own.is_empty() {
        let color = PALETTE[4];
        c.draw_series(LineSeries::new(
            own.clone(),
            ShapeStyle::from(color).stroke_width(2),
        ))
        .map_err(plot_err)?
        .label("p99, the service's own (its histogram)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        c.draw_series(
            own.iter()
                .map(|&p| TriangleMarker::new(p, 4, color.filled())),
        )
        .map_err(plot_err)?;
    }
    if let Some((q, limit)) = slo {
        let r = rate_range(steps);
        c.draw_series(LineSeries::new(
            vec![(r.start, limit), (r.end, limit)],
            RED.stroke_width(2),
        ))
        .map_err(plot_err)?
        .label(format!("SLO p{} < {limit} ms", q * 100.0))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
    }
    legend(&mut c)
}

fn achieved_vs_offered(area: &Backend<'_>, steps: &[&StepRecord]) -> Result<()> {
    let r = rate_range(steps);
    let mut c = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(r.clone(), r.clone())
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("offered rate, req/s")
        .y_desc("achieved, req/s")
        .draw()
        .map_err(plot_err)?;
    c.draw_series(LineSeries::new(
        vec![(r.start, r.start), (r.end, r.end)],
        BLACK.mix(0.3),
    ))
    .map_err(plot_err)?;
    let ok = |s: &StepRecord| s.result.succeeded as f64 / s.result.duration_s.max(1e-9);
    let pts: Vec<(f64, f64)> = steps.iter().map(|s| (s.rate, ok(s))).collect();
    let color = PALETTE[0];
    c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
        .map_err(plot_err)?
        .label("answered, hammer")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
        .map_err(plot_err)?;
    // The rate the service counted, from its /metrics.
    let own: Vec<(f64, f64)> = steps
        .iter()
        .filter_map(|s| Some((s.rate, s.server.as_ref()?.whole.rate?)))
        .collect();
    if own.is_empty() {
        return Ok(());
    }
    let color = PALETTE[4];
    c.draw_series(
        own.iter()
            .map(|&p| TriangleMarker::new(p, 5, color.filled())),
    )
    .map_err(plot_err)?
    .label("counted by the service")
    .legend(move |(x, y)| TriangleMarker::new((x + 7, y), 5, color.filled()));
    legend(&mut c)
}

fn errors_vs_rate(area: &Backend<'_>, steps: &[&StepRecord]) -> Result<()> {
    let pct = |s: &StepRecord| 100.0 * s.result.error_rate();
    let top = steps.iter().map(|s| pct(s)).fold(1.0, f64::max);
    let mut c = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(rate_range(steps), 0.0..top * 1.1)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("offered rate, req/s")
        .y_desc("failed, %")
        .draw()
        .map_err(plot_err)?;
    let pts: Vec<(f64, f64)> = steps.iter().map(|s| (s.rate, pct(s))).collect();
    c.draw_series(LineSeries::new(pts.clone(), PALETTE[3].stroke_width(2)))
        .map_err(plot_err)?;
    c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, PALETTE[3].filled())))
        .map_err(plot_err)?;
    Ok(())
}

fn latency_over_time(
    area: &Backend<'_>,
    steps: &[StepRecord],
    slo: Option<(f64, f64)>,
) -> Result<()> {
    let t_max = steps
        .iter()
        .flat_map(|s| s.timeline.iter().map(|t| t.t_s))
        .fold(1.0, f64::max);
    let hi = steps
        .iter()
        .flat_map(|s| s.timeline.iter().map(|t| t.p99_ms))
        .chain(slo.map(|(_, l)| l))
        .fold(0.01, f64::max);
    let lo = steps
        .iter()
        .flat_map(|s| s.timeline.iter().map(|t| t.p99_ms))
        .fold(hi, f64::min)
        .max(0.001)
        * 0.5;
    let mut c = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..t_max, (lo..hi * 2.0).log_scale())
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("seconds into the step")
        .y_desc("p99 per second, ms (log)")
        .draw()
        .map_err(plot_err)?;
    for (i, s) in steps.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = s
            .timeline
            .iter()
            .map(|t| (t.t_s, t.p99_ms.max(lo)))
            .collect();
        c.draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(plot_err)?
            .label(format!("{} req/s", s.rate))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    if let Some((_, limit)) = slo {
        c.draw_series(LineSeries::new(vec![(0.0, limit), (t_max, limit)], RED))
            .map_err(plot_err)?;
    }
    legend(&mut c)
}

fn usl_curve(area: &Backend<'_>, sw: &crate::sweep::Sweep) -> Result<()> {
    let n_max = sw
        .points
        .iter()
        .map(|p| p.connections as f64)
        .fold(1.0, f64::max)
        * 1.3;
    let fitted = |n: f64| sw.usl.map_or(0.0, |u| u.throughput(n));
    let curve: Vec<(f64, f64)> = (0..=200)
        .map(|i| {
            let n = 1.0 + (n_max - 1.0) * f64::from(i) / 200.0;
            (n, fitted(n))
        })
        .collect();
    let x_max = sw
        .points
        .iter()
        .map(|p| p.throughput)
        .chain(curve.iter().map(|c| c.1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut c = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..n_max, 0.0..x_max)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("connections (requests in flight)")
        .y_desc("throughput, req/s")
        .draw()
        .map_err(plot_err)?;
    if let Some(u) = sw.usl {
        let color = PALETTE[1];
        c.draw_series(LineSeries::new(curve, color.stroke_width(2)))
            .map_err(plot_err)?
            .label(format!(
                "USL: σ={:.3} κ={:.5} R²={:.2}",
                u.sigma, u.kappa, u.r_squared
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    let color = PALETTE[0];
    c.draw_series(LineSeries::new(
        sw.points
            .iter()
            .map(|p| (p.connections as f64, p.throughput)),
        color.mix(0.4),
    ))
    .map_err(plot_err)?;
    c.draw_series(
        sw.points
            .iter()
            .map(|p| Circle::new((p.connections as f64, p.throughput), 4, color.filled())),
    )
    .map_err(plot_err)?
    .label("measured")
    .legend(move |(x, y)| Circle::new((x + 7, y), 4, color.filled()));
    // The points rise from the left: the legend goes below them.
    legend_at(&mut c, SeriesLabelPosition::LowerRight)
}

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
